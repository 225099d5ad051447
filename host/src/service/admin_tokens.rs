//! Admin tokens: who may use the admin API and the web console besides
//! the master key. A token is 256 random bits; the store keeps its blake3
//! hash (a token that strong needs no key or salt) and a hint.

use super::check_name;
use crate::error::Error;
use crate::store::{AdminTokenRow, Store};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use serde::Serialize;
use zeroize::Zeroizing;

/// What every admin token starts with.
pub const ADMIN_TOKEN_PREFIX: &str = "llmhost-admin-";
const TOKEN_BYTES: usize = 32;
/// Prefix plus base64 of the random bytes, unpadded.
const TOKEN_CHARS: usize = ADMIN_TOKEN_PREFIX.len() + 43;
/// Characters of the token kept as its hint.
const HINT_CHARS: usize = ADMIN_TOKEN_PREFIX.len() + 4;

/// An admin token as shown: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AdminToken {
    pub id: i64,
    pub name: String,
    /// The token's first characters, to tell tokens apart.
    pub hint: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<AdminTokenRow> for AdminToken {
    fn from(row: AdminTokenRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            hint: row.hint,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// The admin tokens in a store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AdminTokens {
    store: Store,
}

fn hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

impl AdminTokens {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Creates a token named `name`; the token is returned here only.
    pub async fn create(&self, name: &str) -> Result<(AdminToken, SecretString), Error> {
        check_name(name)?;
        let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
        getrandom::fill(&mut bytes[..])
            .map_err(|err| Error::Internal(format!("cannot draw random bytes: {err}")))?;
        let mut token = Zeroizing::new(String::with_capacity(TOKEN_CHARS));
        token.push_str(ADMIN_TOKEN_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&bytes[..], &mut token);
        let hint: String = token.chars().take(HINT_CHARS).chain(['…']).collect();
        let row = self
            .store
            .insert_admin_token(name, hash(&token), &hint)
            .await?;
        Ok((row.into(), SecretString::from(token.as_str())))
    }

    /// Every token, revoked ones included, by name.
    pub async fn list(&self) -> Result<Vec<AdminToken>, Error> {
        Ok(self
            .store
            .admin_tokens()
            .await?
            .into_iter()
            .map(AdminToken::from)
            .collect())
    }

    /// Revokes the token named `name`: it stops working at once.
    pub async fn revoke(&self, name: &str) -> Result<AdminToken, Error> {
        self.store
            .revoke_admin_token(name)
            .await?
            .map(AdminToken::from)
            .ok_or_else(|| Error::NotFound {
                what: "admin token",
                key: name.to_owned(),
            })
    }

    /// The live token `presented` is, if any. Anything without a token's
    /// shape is refused before the store is asked.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<AdminToken>, Error> {
        if presented.len() != TOKEN_CHARS || !presented.starts_with(ADMIN_TOKEN_PREFIX) {
            return Ok(None);
        }
        Ok(self
            .store
            .live_admin_token_by_hash(hash(presented))
            .await?
            .map(AdminToken::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[tokio::test]
    async fn tokens_work_until_revoked_and_only_their_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let tokens = AdminTokens::new(Store::open(&path).await.unwrap());
        let (shown, token) = tokens.create("ops").await.unwrap();
        let token = token.expose_secret().to_owned();
        assert_eq!(token.len(), TOKEN_CHARS);
        assert!(shown.hint.starts_with(ADMIN_TOKEN_PREFIX) && shown.hint.ends_with('…'));
        assert_eq!(
            tokens.authenticate(&token).await.unwrap().map(|t| t.name),
            Some("ops".to_owned())
        );
        let mut wrong = token.clone();
        wrong.pop();
        wrong.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(tokens.authenticate(&wrong).await.unwrap(), None);
        assert!(matches!(
            tokens.create("ops").await.unwrap_err(),
            Error::Conflict(_)
        ));
        tokens.revoke("ops").await.unwrap();
        assert_eq!(tokens.authenticate(&token).await.unwrap(), None);
        assert!(matches!(
            tokens.revoke("nobody").await.unwrap_err(),
            Error::NotFound { .. }
        ));
        let body = &token[ADMIN_TOKEN_PREFIX.len()..];
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let file = file.unwrap().path();
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(body.len()).any(|w| w == body.as_bytes()),
                "the token itself is in {}",
                file.display()
            );
        }
    }
}
