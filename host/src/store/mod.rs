//! The SQLite store of agents, their LLM configs, virtual keys and usage
//! events.
//!
//! One file, created with mode 0600 on Unix (its `-wal` and `-shm` side
//! files too), WAL mode, foreign keys on, schema migrated on open. Every
//! call runs on tokio's blocking pool, never on an async worker. Writes go
//! through one connection in `BEGIN IMMEDIATE` transactions (SQLite allows
//! one writer at a time anyway; a second process waits on the busy
//! timeout); reads use a small pool of their own connections, which WAL
//! lets run beside a write.
//!
//! The store checks shapes (types, foreign keys, uniqueness); what a valid
//! config is (a loaded provider, a known model, ranges) is the config
//! service's business.

mod admin_tokens;
mod calendar;
mod config;
mod experiments;
mod keyring;
mod migrations;
mod records;
mod status;
mod virtual_keys;

pub use admin_tokens::AdminTokenRow;
pub use calendar::BudgetPeriod;
pub(crate) use calendar::{MAX_EXPIRY, parse_utc_timestamp, utc_timestamp};
pub use config::{Column, ConfigFields, ConfigPatch, ConfigPrices, nullable};
pub use experiments::{Experiment, ExperimentCall, ExperimentStatus, Sticky, Variant};
pub use migrations::SCHEMA_VERSION;
pub use records::{
    Agent, AgentCache, ConfigRow, NewConfigRow, Served, UsageEvent, UsageFilter, UsageOutcome,
    UsageRecord, UsageSummary,
};
pub use status::UsagePoint;
pub use virtual_keys::{AgentBudget, NewVirtualKeyRow, Spend, VirtualKeyRow};

use crate::error::Error;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
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
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

pub(crate) fn db_error(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |err| {
        keyring::retired_key(&err)
            .unwrap_or_else(|| Error::Database(format!("{}: {err}", path.display())))
    }
}

/// Migrates `conn` up or down to `version`. Foreign keys are off meanwhile,
/// as SQLite requires for rebuilding a table others refer to (its DROP
/// would otherwise act on their rows); the migrations that rebuild check
/// the keys before they commit.
fn migrate(conn: &mut Connection, path: &Path, version: u32) -> Result<(), Error> {
    conn.pragma_update(None, "foreign_keys", false)
        .map_err(db_error(path))?;
    let migrated = migrations::migrations()
        .to_version(conn, version as usize)
        .map_err(|err| Error::Database(format!("{}: migration failed: {err}", path.display())));
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(db_error(path))?;
    migrated
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

impl Store {
    /// Opens the database at `path`, creating it (and its directory) if
    /// missing, and migrates it to [`SCHEMA_VERSION`]. Refuses a database
    /// written by a newer llmhost.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(|err| Error::Internal(format!("database task failed: {err}")))?
    }

    fn open_blocking(path: PathBuf) -> Result<Self, Error> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| {
                Error::Database(format!("cannot create {}: {err}", parent.display()))
            })?;
        }
        create_private(&path)?;
        let mut conn = Connection::open(&path).map_err(db_error(&path))?;
        configure(&conn).map_err(db_error(&path))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(db_error(&path))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "database is not in WAL mode");
        }
        let version = schema_version_of(&conn).map_err(db_error(&path))?;
        if version > SCHEMA_VERSION {
            return Err(Error::Database(format!(
                "{} has schema version {version}, newer than this llmhost supports ({SCHEMA_VERSION}); use a newer llmhost",
                path.display()
            )));
        }
        migrate(&mut conn, &path, SCHEMA_VERSION)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version of the database.
    pub async fn schema_version(&self) -> Result<u32, Error> {
        self.read(schema_version_of).await
    }

    /// Migrates up or down to `version` (0 is an empty database). For
    /// tests and for going back to an older llmhost.
    pub async fn migrate_to(&self, version: u32) -> Result<(), Error> {
        let path = self.inner.path.clone();
        self.blocking(move |inner| {
            let mut conn = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
            migrate(&mut conn, &path, version)
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

    /// Runs `work` on a read connection.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        self.blocking(move |inner| {
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY
                            | OpenFlags::SQLITE_OPEN_NO_MUTEX
                            | OpenFlags::SQLITE_OPEN_URI,
                    )
                    .map_err(db_error(&inner.path))?;
                    configure(&conn).map_err(db_error(&inner.path))?;
                    conn
                }
            };
            let result = work(&conn).map_err(db_error(&inner.path));
            let mut idle = inner.readers.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            result
        })
        .await
    }

    /// Runs `work` in one immediate transaction on the write connection;
    /// commits when it returns `Ok`, rolls back otherwise.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.blocking(move |inner| {
            let mut conn = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_error(&inner.path))?;
            let value = work(&tx)?;
            tx.commit().map_err(db_error(&inner.path))?;
            Ok(value)
        })
        .await
    }
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

fn schema_version_of(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}
