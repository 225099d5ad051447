//! The store of agents, their LLM configs, virtual keys and usage events,
//! on SQLite (the default: one file, zero set-up) or PostgreSQL (several
//! replicas on one database), as the `database` setting names it.
//!
//! Every query is written once, over the portable layer of [`sql`]; both
//! engines get the same typed errors.
//!
//! SQLite: one file, created with mode 0600 on Unix (its `-wal` and `-shm` side
//! files too), WAL mode, foreign keys on, schema migrated on open. Every
//! call runs on tokio's blocking pool, never on an async worker. Writes go
//! through one connection in `BEGIN IMMEDIATE` transactions (SQLite allows
//! one writer at a time anyway; a second process waits on the busy
//! timeout); reads use a small pool of their own connections, which WAL
//! lets run beside a write.
//!
//! PostgreSQL: a pool of connections (the `database_pool_size` setting),
//! with TLS as the URL's `sslmode` asks and certificates always verified
//! (`store/pg_tls.rs`), each call on tokio's blocking pool too; writes
//! are transactions at READ COMMITTED, whose compare-and-set updates
//! (`WHERE updated_at = ?`) re-check the row under its lock. The schema is not migrated on open:
//! `llmhost migrate` does it once, under an advisory lock, and an
//! out-of-date database is refused with an error that says so.
//!
//! The store checks shapes (types, foreign keys, uniqueness); what a valid
//! config is (a loaded provider, a known model, ranges) is the config
//! service's business.

mod admin_tokens;
mod calendar;
mod config;
mod database;
mod experiments;
mod keyring;
mod migrations;
mod migrations_pg;
mod pg_tls;
mod postgres;
mod records;
mod rollup;
pub mod sql;
mod status;
mod virtual_keys;

pub use admin_tokens::AdminTokenRow;
pub use calendar::BudgetPeriod;
pub(crate) use calendar::{MAX_EXPIRY, parse_utc_timestamp, utc_timestamp};
pub use config::{Column, ConfigFields, ConfigPatch, ConfigPrices, nullable};
pub use database::{DEFAULT_POOL_SIZE, Database, PostgresUrl, redact_url};
pub use experiments::{Experiment, ExperimentCall, ExperimentStatus, Sticky, Variant};
pub use migrations::SCHEMA_VERSION;
pub use pg_tls::SslMode;
pub use records::{
    Agent, AgentCache, ConfigRow, NewConfigRow, Served, UsageEvent, UsageFilter, UsageOutcome,
    UsageRecord, UsageSummary,
};
pub use rollup::spawn_usage_retention;
pub use status::UsagePoint;
pub use virtual_keys::{AgentBudget, NewVirtualKeyRow, Spend, VirtualKeyRow};

use crate::error::Error;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use sql::{Conn, SqlError, SqlResult};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Default database file, relative to the working directory.
pub const DEFAULT_DB: &str = "llmhost.db";
/// How long a write waits for another process's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 4;

/// A handle to the database. Cheap to clone; calls run in parallel.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    database: Database,
    /// How errors name the database: the path, or the URL without its
    /// password.
    label: String,
    backend: Backend,
}

enum Backend {
    Sqlite {
        path: PathBuf,
        writer: Mutex<Connection>,
        readers: Mutex<Vec<Connection>>,
    },
    Postgres(postgres::Pool),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("database", &self.inner.database)
            .finish()
    }
}

/// Maps a statement's error to [`Error::Database`], naming the database
/// by `label` (never a password); a write the active-key triggers refused
/// becomes [`ErrorKind::RetiredKey`](crate::error::ErrorKind::RetiredKey).
pub(crate) fn db_error(label: &str) -> impl Fn(SqlError) -> Error + '_ {
    move |err| {
        keyring::retired_key(&err).unwrap_or_else(|| Error::Database(format!("{label}: {err}")))
    }
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |err| Error::Database(format!("{}: {err}", path.display()))
}

/// Migrates `conn` up or down to `version`. Foreign keys are off meanwhile,
/// as SQLite requires for rebuilding a table others refer to (its DROP
/// would otherwise act on their rows); the migrations that rebuild check
/// the keys before they commit.
fn migrate(conn: &mut Connection, path: &Path, version: u32) -> Result<(), Error> {
    conn.pragma_update(None, "foreign_keys", false)
        .map_err(sqlite_error(path))?;
    let migrated = migrations::migrations()
        .to_version(conn, version as usize)
        .map_err(|err| Error::Database(format!("{}: migration failed: {err}", path.display())));
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(sqlite_error(path))?;
    migrated
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// How [`Store`] opens a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnOpen {
    /// SQLite: migrate to [`SCHEMA_VERSION`]; PostgreSQL: refuse any
    /// other version.
    Ready,
    /// Neither migrate nor check (for `llmhost migrate`); a newer schema
    /// is still refused.
    AsIs,
    /// Migrate to [`SCHEMA_VERSION`] on either engine.
    Migrate,
}

impl Store {
    /// Opens the database: a SQLite file at a path, created (with its
    /// directory) if missing and migrated to [`SCHEMA_VERSION`]; or a
    /// PostgreSQL URL, whose schema must be at [`SCHEMA_VERSION`] already
    /// (`llmhost migrate` puts it there). Refuses a database written by a
    /// newer llmhost.
    pub async fn open(database: impl Into<Database>) -> Result<Self, Error> {
        Self::open_with(database.into(), OnOpen::Ready).await
    }

    /// Opens the database without migrating it or checking its version
    /// (beyond refusing a newer one): for `llmhost migrate`, which then
    /// calls [`Store::migrate_to`].
    pub async fn open_unmigrated(database: impl Into<Database>) -> Result<Self, Error> {
        Self::open_with(database.into(), OnOpen::AsIs).await
    }

    /// Opens the database and migrates it to [`SCHEMA_VERSION`], on
    /// PostgreSQL too (under the migration lock): for tests and tools.
    pub async fn open_migrated(database: impl Into<Database>) -> Result<Self, Error> {
        Self::open_with(database.into(), OnOpen::Migrate).await
    }

    async fn open_with(database: Database, on_open: OnOpen) -> Result<Self, Error> {
        let store = tokio::task::spawn_blocking(move || Self::open_blocking(database, on_open))
            .await
            .map_err(|err| Error::Internal(format!("database task failed: {err}")))??;
        Ok(store)
    }

    fn open_blocking(database: Database, on_open: OnOpen) -> Result<Self, Error> {
        let label = database.to_string();
        let backend = match &database {
            Database::Sqlite(path) => Self::open_sqlite(path.clone(), on_open)?,
            Database::Postgres(url) => {
                let pool = postgres::Pool::connect(url, &label)?;
                let version = pool.schema_version(&label)?;
                if version > SCHEMA_VERSION {
                    return Err(newer_schema(&label, version));
                }
                match on_open {
                    OnOpen::Ready if version != SCHEMA_VERSION => {
                        return Err(Error::Database(format!(
                            "{label} has schema version {version}; this llmhost needs version {SCHEMA_VERSION}: run `llmhost migrate` first (once, not by every replica)"
                        )));
                    }
                    OnOpen::Migrate => pool.migrate(&label, SCHEMA_VERSION)?,
                    _ => {}
                }
                Backend::Postgres(pool)
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                database,
                label,
                backend,
            }),
        })
    }

    fn open_sqlite(path: PathBuf, on_open: OnOpen) -> Result<Backend, Error> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| {
                Error::Database(format!("cannot create {}: {err}", parent.display()))
            })?;
        }
        create_private(&path)?;
        let mut conn = Connection::open(&path).map_err(sqlite_error(&path))?;
        configure(&conn).map_err(sqlite_error(&path))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sqlite_error(&path))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "database is not in WAL mode");
        }
        let version = sqlite_schema_version(&conn).map_err(sqlite_error(&path))?;
        if version > SCHEMA_VERSION {
            return Err(newer_schema(&path.display().to_string(), version));
        }
        if on_open != OnOpen::AsIs {
            migrate(&mut conn, &path, SCHEMA_VERSION)?;
        }
        Ok(Backend::Sqlite {
            path,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// The database, as configured (its `Display` hides a password).
    pub fn database(&self) -> &Database {
        &self.inner.database
    }

    /// The database file of a SQLite store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.database.sqlite_path()
    }

    /// How errors name the database (no password).
    pub(crate) fn label(&self) -> String {
        self.inner.label.clone()
    }

    /// The engine.
    pub fn dialect(&self) -> sql::Dialect {
        match self.inner.backend {
            Backend::Sqlite { .. } => sql::Dialect::Sqlite,
            Backend::Postgres(_) => sql::Dialect::Postgres,
        }
    }

    /// The schema version of the database.
    pub async fn schema_version(&self) -> Result<u32, Error> {
        self.blocking(|inner| match &inner.backend {
            Backend::Sqlite { .. } => with_sqlite_reader(inner, |conn| {
                sqlite_schema_version(conn).map_err(sql::from_sqlite)
            }),
            Backend::Postgres(pool) => pool.schema_version(&inner.label),
        })
        .await
    }

    /// Migrates up or down to `version` (0 is an empty database): what
    /// `llmhost migrate` does, and tests, and going back to an older
    /// llmhost. On PostgreSQL, under an advisory lock, so that two at
    /// once are safe.
    pub async fn migrate_to(&self, version: u32) -> Result<(), Error> {
        if version > SCHEMA_VERSION {
            return Err(Error::InvalidConfig(format!(
                "schema version {version} does not exist; this llmhost knows versions 0 to {SCHEMA_VERSION}"
            )));
        }
        self.blocking(move |inner| match &inner.backend {
            Backend::Sqlite { path, writer, .. } => {
                let mut conn = writer.lock().unwrap_or_else(|e| e.into_inner());
                migrate(&mut conn, path, version)
            }
            Backend::Postgres(pool) => pool.migrate(&inner.label, version),
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|err| Error::Internal(format!("database task failed: {err}")))?
    }

    /// Runs `work` on a read connection (outside a transaction).
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Conn<'_>) -> SqlResult<T> + Send + 'static,
    ) -> Result<T, Error> {
        self.blocking(move |inner| match &inner.backend {
            Backend::Sqlite { .. } => {
                with_sqlite_reader(inner, |conn| work(&mut Conn::sqlite(conn)))
            }
            Backend::Postgres(pool) => pool.read(&inner.label, work),
        })
        .await
    }

    /// Runs `work` in one transaction (SQLite: an immediate one on the
    /// write connection); commits when it returns `Ok`, rolls back
    /// otherwise.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Conn<'_>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.blocking(move |inner| match &inner.backend {
            Backend::Sqlite { path, writer, .. } => {
                let mut conn = writer.lock().unwrap_or_else(|e| e.into_inner());
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error(path))?;
                let value = work(&mut Conn::sqlite(&tx))?;
                tx.commit().map_err(sqlite_error(path))?;
                Ok(value)
            }
            Backend::Postgres(pool) => pool.write(&inner.label, work),
        })
        .await
    }

    /// Runs one statement of the caller's, in a transaction of its own;
    /// returns the rows changed. For tests and tools that look under the
    /// store (`?N` placeholders on both engines).
    pub async fn execute_sql(&self, sql: &str, params: Vec<sql::Value>) -> Result<u64, Error> {
        let sql = sql.to_owned();
        let label = self.label();
        self.write(move |conn| conn.execute(&sql, &params).map_err(db_error(&label)))
            .await
    }

    /// Runs one query of the caller's; returns its rows. See
    /// [`Store::execute_sql`].
    pub async fn query_sql(
        &self,
        sql: &str,
        params: Vec<sql::Value>,
    ) -> Result<Vec<sql::Row>, Error> {
        let sql = sql.to_owned();
        self.read(move |conn| conn.query(&sql, &params)).await
    }

    /// The names of the store's tables, sorted (the migration bookkeeping
    /// left out).
    pub async fn table_names(&self) -> Result<Vec<String>, Error> {
        let sql = match self.dialect() {
            sql::Dialect::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            }
            sql::Dialect::Postgres => {
                "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name <> 'llmhost_schema' \
                 ORDER BY 1"
            }
        };
        self.read(move |conn| conn.query_map(sql, &[], |row| row.get(0)))
            .await
    }
}

/// Runs `work` on a pooled read-only SQLite connection.
fn with_sqlite_reader<T>(
    inner: &Inner,
    work: impl FnOnce(&Connection) -> SqlResult<T>,
) -> Result<T, Error> {
    let Backend::Sqlite { path, readers, .. } = &inner.backend else {
        return Err(Error::Internal("not a SQLite store".into()));
    };
    let pooled = readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let conn = match pooled {
        Some(conn) => conn,
        None => {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )
            .map_err(sqlite_error(path))?;
            configure(&conn).map_err(sqlite_error(path))?;
            conn
        }
    };
    let result = work(&conn).map_err(db_error(&inner.label));
    let mut idle = readers.lock().unwrap_or_else(|e| e.into_inner());
    if idle.len() < MAX_IDLE_READERS {
        idle.push(conn);
    }
    result
}

fn newer_schema(label: &str, version: u32) -> Error {
    Error::Database(format!(
        "{label} has schema version {version}, newer than this llmhost supports ({SCHEMA_VERSION}); use a newer llmhost"
    ))
}

/// Creates the database file, empty and with mode 0600 on Unix, if it does
/// not exist yet, so that SQLite opens a file only its owner can read.
/// SQLite gives the `-wal`, `-shm` and journal files it creates the
/// permissions of the database file, so they are 0600 too.
///
/// An existing file is left as it is: its permissions may have been chosen
/// on purpose (a group that shares the database), and its stored keys are
/// encrypted under a key kept elsewhere.
fn create_private(path: &Path) -> Result<(), Error> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        // Also a second process that created it first.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(Error::Database(format!(
            "cannot create {}: {err}",
            path.display()
        ))),
    }
}

fn sqlite_schema_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Stores of both engines for the store's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Database, Store};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Backend {
        Sqlite,
        Postgres,
    }

    /// A new database of `backend` at the current schema; SQLite's in
    /// `dir`.
    pub(crate) async fn store(backend: Backend, dir: &std::path::Path) -> Store {
        Store::open_migrated(database(backend, dir)).await.unwrap()
    }

    /// A new, empty database of `backend`.
    pub(crate) fn database(backend: Backend, dir: &std::path::Path) -> Database {
        match backend {
            Backend::Sqlite => Database::Sqlite(dir.join("test.db")),
            Backend::Postgres => Database::parse(&llmhost_test_services::postgres().database()),
        }
    }

    /// `both!(name, …)`: each `async fn name(backend: Backend)` becomes
    /// the tests `name::sqlite` and `name::postgres`.
    macro_rules! both {
        ($($name:ident),+ $(,)?) => {$(
            mod $name {
                #[tokio::test(flavor = "multi_thread")]
                async fn sqlite() {
                    super::$name($crate::store::testing::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread")]
                async fn postgres() {
                    super::$name($crate::store::testing::Backend::Postgres).await
                }
            }
        )+};
    }
    pub(crate) use both;
}
