//! The PostgreSQL side of the store: a pool of connections (r2d2 over the
//! synchronous `postgres` client, used on tokio's blocking pool like
//! SQLite), transactions, and the migrations with their version kept in
//! the database.

use super::database::PostgresUrl;
use super::migrations;
use super::pg_tls::Connector;
use super::sql::{Conn, PgSession, SqlError, SqlResult, from_postgres};
use super::{SCHEMA_VERSION, db_error};
use crate::error::Error;
use std::time::Duration;

/// How long a call waits for a free connection of the pool.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);
/// The advisory lock `llmhost migrate` holds (any constant of our own).
const MIGRATION_LOCK: i64 = 0x6c6c_6d68_6f73_7401;

/// Opens connections for r2d2.
#[derive(Debug)]
struct Manager {
    connector: Connector,
}

/// Why the pool could not open or check a connection, explained as at
/// open (TLS failures say what to do); never holds the password.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ConnectFailure(String);

impl r2d2::ManageConnection for Manager {
    type Connection = PgSession;
    type Error = ConnectFailure;

    fn connect(&self) -> Result<PgSession, ConnectFailure> {
        self.connector
            .connect()
            .map(PgSession::new)
            .map_err(|err| ConnectFailure(self.connector.explain(&err)))
    }

    fn is_valid(&self, session: &mut PgSession) -> Result<(), ConnectFailure> {
        session
            .client
            .simple_query("")
            .map(drop)
            .map_err(|err| ConnectFailure(self.connector.explain(&err)))
    }

    fn has_broken(&self, session: &mut PgSession) -> bool {
        session.client.is_closed()
    }
}

/// A pool of connections to one database.
pub(crate) struct Pool {
    /// `Some` until dropped.
    pool: Option<r2d2::Pool<Manager>>,
}

/// The last handle of a pool closes its connections, and the `postgres`
/// client blocks on a runtime of its own to close one, which tokio
/// forbids on an async worker: they are closed on a thread of their own.
impl Drop for Pool {
    fn drop(&mut self) {
        let pool = self.pool.take();
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::spawn(move || drop(pool));
        }
    }
}

/// The error r2d2 gives when it cannot connect: the driver's, which never
/// holds the password, after the database's label.
fn pool_error(label: &str, err: &r2d2::Error) -> Error {
    Error::Database(format!("{label}: cannot connect: {err}"))
}

impl Pool {
    /// Connects (at least once, to fail early) to `url`, with TLS as its
    /// `sslmode` asks.
    pub(crate) fn connect(url: &PostgresUrl, label: &str) -> Result<Self, Error> {
        let mut connector = Connector::new(url, label)?;
        let config = connector.config_mut();
        if config.get_application_name().is_none() {
            config.application_name("llmhost");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // One connection now, so that a wrong URL or a server that is down
        // fails at open with the driver's reason (the pool would retry
        // until its checkout timeout).
        let first = connector.connect().map_err(|err| {
            Error::Database(format!(
                "{label}: cannot connect: {}",
                connector.explain(&err)
            ))
        })?;
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(url.pool_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(CHECKOUT_TIMEOUT)
            // r2d2 logs connection errors itself; ours carry the label.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(Manager { connector });
        Ok(Self { pool: Some(pool) })
    }

    fn session(&self, label: &str) -> Result<r2d2::PooledConnection<Manager>, Error> {
        match &self.pool {
            Some(pool) => pool.get().map_err(|err| pool_error(label, &err)),
            None => Err(Error::Internal(format!("{label}: the pool is closed"))),
        }
    }

    /// Runs `work` outside a transaction.
    pub(crate) fn read<T>(
        &self,
        label: &str,
        work: impl FnOnce(&mut Conn<'_>) -> SqlResult<T>,
    ) -> Result<T, Error> {
        let mut session = self.session(label)?;
        work(&mut Conn::postgres(&mut session)).map_err(db_error(label))
    }

    /// Runs `work` in a transaction: committed when it returns `Ok`,
    /// rolled back otherwise.
    pub(crate) fn write<T>(
        &self,
        label: &str,
        work: impl FnOnce(&mut Conn<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut session = self.session(label)?;
        transaction(&mut session, label, work)
    }

    /// The schema version: 0 for a database llmhost never migrated.
    pub(crate) fn schema_version(&self, label: &str) -> Result<u32, Error> {
        let mut session = self.session(label)?;
        version_of(&mut Conn::postgres(&mut session)).map_err(db_error(label))
    }

    /// Migrates up or down to `version`, each step in a transaction of its
    /// own, under a session advisory lock: a second `llmhost migrate`
    /// waits, then finds the work done.
    pub(crate) fn migrate(&self, label: &str, version: u32) -> Result<(), Error> {
        let mut session = self.session(label)?;
        let failed = |err: SqlError| Error::Database(format!("{label}: migration failed: {err}"));
        session
            .client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .map_err(|err| failed(from_postgres(&err)))?;
        let result = migrate_locked(&mut session, label, version);
        let unlocked = session
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .map_err(|err| failed(from_postgres(&err)));
        result.and(unlocked.map(drop))
    }
}

fn transaction<T>(
    session: &mut PgSession,
    label: &str,
    work: impl FnOnce(&mut Conn<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let fail = |err: postgres::Error| db_error(label)(from_postgres(&err));
    session.client.batch_execute("BEGIN").map_err(fail)?;
    match work(&mut Conn::postgres(session)) {
        Ok(value) => {
            session.client.batch_execute("COMMIT").map_err(fail)?;
            Ok(value)
        }
        Err(err) => {
            // A broken connection is dropped by the pool (`has_broken`).
            let _ = session.client.batch_execute("ROLLBACK");
            Err(err)
        }
    }
}

fn version_of(conn: &mut Conn<'_>) -> SqlResult<u32> {
    let exists: bool = conn.query_row(
        "SELECT to_regclass('llmhost_schema') IS NOT NULL",
        &[],
        |row| row.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    conn.query_row("SELECT version FROM llmhost_schema", &[], |row| row.get(0))
        .or_else(|err| match err {
            SqlError::NoRows => Ok(0),
            other => Err(other),
        })
}

fn migrate_locked(session: &mut PgSession, label: &str, target: u32) -> Result<(), Error> {
    let failed = |err: SqlError| Error::Database(format!("{label}: migration failed: {err}"));
    let steps = migrations::postgres();
    debug_assert_eq!(steps.len(), SCHEMA_VERSION as usize);
    loop {
        let current = version_of(&mut Conn::postgres(session)).map_err(failed)?;
        if current > SCHEMA_VERSION {
            return Err(super::newer_schema(label, current));
        }
        if current == target {
            return Ok(());
        }
        let (sql, next) = if current < target {
            (steps[current as usize].0, current + 1)
        } else {
            (steps[current as usize - 1].1, current - 1)
        };
        transaction(session, label, |conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS llmhost_schema (version BIGINT NOT NULL); \
                 LOCK TABLE llmhost_schema IN EXCLUSIVE MODE;",
            )
            .map_err(failed)?;
            conn.execute_batch(sql).map_err(failed)?;
            if next == migrations::USAGE_ROLLUP && next > current {
                super::rollup::backfill(conn).map_err(failed)?;
            }
            conn.execute("DELETE FROM llmhost_schema", &[])
                .map_err(failed)?;
            conn.execute(
                "INSERT INTO llmhost_schema (version) VALUES (?1)",
                super::sql::params![next],
            )
            .map_err(failed)?;
            Ok(())
        })?;
        tracing::info!(database = label, from = current, to = next, "migrated");
    }
}
