//! Admin tokens: the bearer credentials of the admin API and the web
//! console. Only a hash and a short hint are stored.

use super::sql::{OptionalExt, Row, SqlResult, params};
use super::{Store, db_error};
use crate::error::Error;

/// A stored admin token (its hash stays in the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTokenRow {
    pub id: i64,
    pub name: String,
    /// The token's first characters, to tell tokens apart.
    pub hint: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

const COLUMNS: &str = "id, name, hint, created_at, revoked_at";

fn token_from(row: &Row) -> SqlResult<AdminTokenRow> {
    Ok(AdminTokenRow {
        id: row.get("id")?,
        name: row.get("name")?,
        hint: row.get("hint")?,
        created_at: row.get("created_at")?,
        revoked_at: row.get("revoked_at")?,
    })
}

impl Store {
    /// Inserts an admin token; a taken name is a [`Error::Conflict`].
    pub async fn insert_admin_token(
        &self,
        name: &str,
        hash: [u8; 32],
        hint: &str,
    ) -> Result<AdminTokenRow, Error> {
        let (name, hint) = (name.to_owned(), hint.to_owned());
        let path = self.label();
        self.write(move |tx| {
            let inserted = tx.query_row(
                &format!(
                    "INSERT INTO admin_tokens (name, token_hash, hint) VALUES (?1, ?2, ?3) \
                     RETURNING {COLUMNS}"
                ),
                params![name, &hash[..], hint],
                token_from,
            );
            match inserted {
                Ok(row) => Ok(row),
                Err(err) if err.is_unique() => Err(Error::Conflict(format!(
                    "an admin token named `{name}` already exists"
                ))),
                Err(err) => Err(db_error(&path)(err)),
            }
        })
        .await
    }

    /// Every admin token, by name.
    pub async fn admin_tokens(&self) -> Result<Vec<AdminTokenRow>, Error> {
        self.read(|conn| {
            conn.query_map(
                &format!("SELECT {COLUMNS} FROM admin_tokens ORDER BY name"),
                params![],
                token_from,
            )
        })
        .await
    }

    /// The unrevoked admin token with this hash.
    pub async fn live_admin_token_by_hash(
        &self,
        hash: [u8; 32],
    ) -> Result<Option<AdminTokenRow>, Error> {
        self.read(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM admin_tokens WHERE token_hash = ?1 AND revoked_at IS NULL"
                ),
                params![&hash[..]],
                token_from,
            )
            .optional()
        })
        .await
    }

    /// Marks the token named `name` revoked (keeping an earlier revocation
    /// time). `None` if there is no such token.
    pub async fn revoke_admin_token(&self, name: &str) -> Result<Option<AdminTokenRow>, Error> {
        let name = name.to_owned();
        let path = self.label();
        self.write(move |tx| {
            let now = tx.dialect().now();
            tx.execute(
                &format!(
                    "UPDATE admin_tokens SET revoked_at = {now} WHERE name = ?1 AND revoked_at IS NULL"
                ),
                params![&name],
            )
            .map_err(db_error(&path))?;
            tx.query_row(
                &format!("SELECT {COLUMNS} FROM admin_tokens WHERE name = ?1"),
                params![&name],
                token_from,
            )
            .optional()
            .map_err(db_error(&path))
        })
        .await
    }
}
