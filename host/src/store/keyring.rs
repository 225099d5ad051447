//! The active encryption key as the database names it.
//!
//! Key material never enters the database: every process holds the keys it
//! was given (key file or environment). The database names which of them
//! new values are encrypted under, so that replicas agree: the first
//! process to store a value names its active key; `keys rotate` names the
//! new key in the transaction that re-encrypts every API key under it; and
//! triggers refuse a value written under any other key, by whichever
//! process, so no replica writes under a retired key even while it has
//! not yet seen the rotation.

use super::sql::{Conn, OptionalExt, SqlError, SqlResult, params};
use super::{Store, db_error};
use crate::error::{Error, ErrorKind};

/// The message of the triggers that refuse a value under another key.
const RETIRED: &str = "llmhost: retired encryption key";

/// The typed error for a write the triggers refused.
pub(crate) fn retired_key(err: &SqlError) -> Option<Error> {
    err.to_string()
        .contains(RETIRED)
        .then(|| Error::Encryption {
            kind: ErrorKind::RetiredKey,
            message: "the value was encrypted under a key that is no longer the database's active \
                  encryption key (another process rotated the keys); try again"
                .into(),
        })
}

/// Names `key_id` as the active key, in the caller's transaction.
pub(crate) fn set_active_key(tx: &mut Conn<'_>, key_id: &str) -> SqlResult<()> {
    let now = tx.dialect().now();
    tx.execute(
        &format!(
            "INSERT INTO encryption_state (id, active_key_id) VALUES (1, ?1) \
             ON CONFLICT (id) DO UPDATE SET active_key_id = excluded.active_key_id, \
             changed_at = {now}"
        ),
        params![key_id],
    )?;
    Ok(())
}

impl Store {
    /// The key the database says new values are encrypted under; `None`
    /// before anything was encrypted.
    pub async fn active_key_id(&self) -> Result<Option<String>, Error> {
        self.read(|conn| {
            conn.query_row(
                "SELECT active_key_id FROM encryption_state WHERE id = 1",
                params![],
                |row| row.get(0),
            )
            .optional()
        })
        .await
    }

    /// The database's active key, naming `candidate` first if none is
    /// named yet.
    pub async fn claim_active_key(&self, candidate: &str) -> Result<String, Error> {
        let path = self.label();
        let candidate = candidate.to_owned();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO encryption_state (id, active_key_id) VALUES (1, ?1) \
                 ON CONFLICT (id) DO NOTHING",
                params![candidate],
            )
            .map_err(db_error(&path))?;
            tx.query_row(
                "SELECT active_key_id FROM encryption_state WHERE id = 1",
                params![],
                |row| row.get(0),
            )
            .map_err(db_error(&path))
        })
        .await
    }

    /// Whether any stored API key or virtual key is under `key_id`.
    pub async fn key_in_use(&self, key_id: &str) -> Result<bool, Error> {
        let prefixes = [
            format!("llmhost:v1:{key_id}:"),
            format!("llmhost:v2:{key_id}:"),
        ];
        let key_id = key_id.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM agent_llm_configs \
                     WHERE substr(api_key_encrypted, 1, length(CAST(?1 AS TEXT))) IN (?1, ?2)) \
                 OR EXISTS (SELECT 1 FROM virtual_keys WHERE hash_key_id = ?3) \
                 THEN 1 ELSE 0 END",
                params![prefixes[0].clone(), prefixes[1].clone(), key_id],
                |row| {
                    let found: i64 = row.get(0)?;
                    Ok(found != 0)
                },
            )
        })
        .await
    }
}
