//! Virtual keys: the gateway's own API keys, handed to its callers
//! instead of vendors' keys, each with an optional agent, model list,
//! budget, rate limits and expiry.
//!
//! A key is `lhk-` and 43 characters of URL-safe base64 (32 random bytes).
//! It is shown once, when created; the store keeps only its BLAKE3 keyed
//! hash, under a hash key derived from the active encryption key, and the
//! id of that encryption key. After a rotation a key is looked up under the
//! hash key of every encryption key of the keyring, so keys made before it
//! keep working while their encryption key stays in the keyring.
//!
//! No key, hash key or hash appears in a log line, error, `Debug` output or
//! view; views carry the key's first 8 characters (`lhk-AbCd…`) at most.

use super::check_name;
use crate::error::{Error, ErrorKind};
use crate::secrets::Keyring;
use crate::store::{
    BudgetPeriod, MAX_EXPIRY, NewVirtualKeyRow, Store, VirtualKeyRow, utc_timestamp,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use llmhost_registry::rust_decimal::Decimal;
use secrecy::SecretString;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use zeroize::Zeroizing;

/// What every virtual key starts with.
pub const KEY_PREFIX: &str = "lhk-";
/// Random bytes in a key.
const KEY_BYTES: usize = 32;
/// Characters in a key: the prefix and unpadded base64 of 32 bytes.
const KEY_CHARS: usize = KEY_PREFIX.len() + 43;
/// Characters of a key its hint shows.
const HINT_CHARS: usize = 8;
/// BLAKE3 key-derivation context of the hash key; changing it invalidates
/// every stored key.
const HASH_KEY_CONTEXT: &str = "llmhost 2026-11-01 virtual-key hash";
/// Longest model id of a key's model list, and most entries.
const MAX_MODEL_LEN: usize = 256;
const MAX_MODELS: usize = 256;

/// How long [`VirtualKeys::authenticate`] trusts a lookup by default: a
/// revocation or expiry made by another process takes effect within this
/// time (plus one query).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_millis(500);
/// How long a lookup is trusted when revocations are signalled through the
/// shared state ([`VirtualKeys::with_shared`]).
pub const SHARED_CACHE_TTL: Duration = Duration::from_secs(10);
/// How many keys [`VirtualKeys::authenticate`] remembers by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Whether a key can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VirtualKeyStatus {
    Active,
    Revoked,
    Expired,
}

impl VirtualKeyStatus {
    /// `active`, `revoked` or `expired`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// A virtual key as shown to callers: everything but the key, of which
/// only the hint is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VirtualKey {
    /// What usage rows name it by (`virtual_key_id`).
    pub id: i64,
    pub name: String,
    /// The key's first 8 characters and `…`.
    pub key_hint: String,
    /// The agent the key is scoped to.
    pub agent: Option<String>,
    /// Model ids the key may use (`openai/gpt-4o-mini`); `None`: any.
    pub models: Option<Vec<String>>,
    /// Most USD to spend per `budget_period` (a decimal string in JSON).
    #[schema(value_type = Option<String>)]
    pub budget_usd: Option<Decimal>,
    /// Set exactly when `budget_usd` is.
    pub budget_period: Option<BudgetPeriod>,
    /// Requests per minute allowed.
    pub rpm: Option<u32>,
    /// Tokens per minute allowed.
    pub tpm: Option<u32>,
    /// UTC RFC 3339 with milliseconds, like every time of the store; the
    /// key stops working at this instant.
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub created_at: String,
    /// As of when the view was made.
    pub status: VirtualKeyStatus,
    /// How long the response cache keeps the key's answers; `None`: the
    /// key's calls are not cached (unless their agent's are).
    pub cache_ttl_secs: Option<u32>,
    /// Whether the key's cached answers serve other keys too.
    pub cache_shared: bool,
}

impl VirtualKey {
    /// The view of `row` at `now` (a store timestamp).
    fn from_row(row: &VirtualKeyRow, now: &str) -> Self {
        let status = if row.revoked_at.is_some() {
            VirtualKeyStatus::Revoked
        } else if row.expires_at.as_deref().is_some_and(|at| at <= now) {
            VirtualKeyStatus::Expired
        } else {
            VirtualKeyStatus::Active
        };
        Self {
            id: row.id,
            name: row.name.clone(),
            key_hint: row.key_hint.clone(),
            agent: row.agent_name.clone(),
            models: row.models.clone(),
            budget_usd: row.budget_usd,
            budget_period: row.budget_period,
            rpm: row.rpm,
            tpm: row.tpm,
            expires_at: row.expires_at.clone(),
            revoked_at: row.revoked_at.clone(),
            created_at: row.created_at.clone(),
            status,
            cache_ttl_secs: row.cache_ttl_secs,
            cache_shared: row.cache_shared,
        }
    }

    /// Whether the key may use `model` (a model id as its list holds
    /// them, like `openai/gpt-4o-mini`): a key without a list may use any.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == model))
    }
}

/// A key to create. `new` gives a key with nothing but a name: any model,
/// no budget, no limits, no expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVirtualKey {
    /// 1 to 64 letters, digits, `-`, `_` or `.`; unique.
    pub name: String,
    /// An existing agent to scope the key to.
    pub agent: Option<String>,
    /// Model ids the key may use; at least one when given.
    pub models: Option<Vec<String>>,
    /// Most USD (more than 0) to spend per period.
    pub budget: Option<(Decimal, BudgetPeriod)>,
    /// Requests per minute, more than 0.
    pub rpm: Option<u32>,
    /// Tokens per minute, more than 0.
    pub tpm: Option<u32>,
    /// How long from now the key works (at most 100 years).
    pub expires_in: Option<Duration>,
    /// How long the response cache keeps the key's answers (1 second to
    /// 30 days); `None`: not cached.
    pub cache_ttl: Option<Duration>,
    /// Whether the key's cached answers serve other keys too.
    pub cache_shared: bool,
}

impl NewVirtualKey {
    /// A key named `name` with nothing else set.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            agent: None,
            models: None,
            budget: None,
            rpm: None,
            tpm: None,
            expires_in: None,
            cache_ttl: None,
            cache_shared: false,
        }
    }
}

/// A hash key and the id of the encryption key it comes from. `Debug`
/// shows the id only.
struct HashKey {
    key_id: String,
    key: Zeroizing<[u8; blake3::KEY_LEN]>,
}

impl HashKey {
    fn hash(&self, presented: &str) -> blake3::Hash {
        blake3::keyed_hash(&self.key, presented.as_bytes())
    }
}

/// A key found by [`VirtualKeys::authenticate`], and when.
struct Cached {
    fetched: Instant,
    row: VirtualKeyRow,
}

/// Recent lookups by hash: bounded, and trusted for a short time only.
struct Cache {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<[u8; blake3::OUT_LEN], Cached>,
}

impl Cache {
    fn get(&self, hash: &blake3::Hash, now: Instant) -> Option<&VirtualKeyRow> {
        self.entries
            .get(hash.as_bytes())
            .filter(|c| now.duration_since(c.fetched) < self.ttl)
            .map(|c| &c.row)
    }

    fn put(&mut self, hash: &blake3::Hash, row: VirtualKeyRow, fetched: Instant) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        if self.entries.len() >= self.capacity {
            let ttl = self.ttl;
            self.entries
                .retain(|_, c| fetched.duration_since(c.fetched) < ttl);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries
            .insert(*hash.as_bytes(), Cached { fetched, row });
    }
}

/// Virtual keys over a [`Store`], hashed with hash keys derived from a
/// [`Keyring`]. Cheap to clone; clones share the lookup cache.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), llmhost::Error> {
/// use llmhost::secrets::{EncryptionKey, Keyring};
/// use llmhost::{NewVirtualKey, Store, VirtualKeys};
/// use secrecy::ExposeSecret;
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path().join("gateway.db")).await?;
/// let keyring = Keyring::new(EncryptionKey::generate());
/// let keys = VirtualKeys::new(store, Some(&keyring));
///
/// let (view, key) = keys.create(NewVirtualKey::new("ci")).await?;
/// // Hand `key` to the caller now: it is not stored.
/// assert_eq!(keys.authenticate(key.expose_secret()).await?, Some(view));
/// keys.revoke("ci").await?;
/// assert_eq!(keys.authenticate(key.expose_secret()).await?, None);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct VirtualKeys {
    store: Store,
    /// The active encryption key's first; empty without a keyring.
    hash_keys: Arc<[HashKey]>,
    cache: Arc<Mutex<Cache>>,
    /// The revocation signal shared with other replicas, and the epoch of
    /// it that the cache was last cleared for.
    shared: Option<(Arc<crate::shared::Redis>, Arc<std::sync::atomic::AtomicI64>)>,
}

impl std::fmt::Debug for VirtualKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualKeys")
            .field("store", &self.store)
            .field(
                "hash_keys_of",
                &self.hash_keys.iter().map(|k| &k.key_id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Validation {
        field,
        message: message.into(),
    }
}

/// The longest a cached answer is kept.
const MAX_CACHE_TTL: Duration = Duration::from_secs(30 * 86_400);

/// A response cache time to live as whole seconds: 1 second to 30 days.
pub(crate) fn cache_ttl_secs(ttl: Duration) -> Result<u32, Error> {
    if ttl < Duration::from_secs(1) || ttl > MAX_CACHE_TTL {
        return Err(invalid(
            "cache_ttl",
            format!("{}s is not between 1 second and 30 days", ttl.as_secs_f64()),
        ));
    }
    Ok(u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX))
}

fn no_keyring() -> Error {
    Error::Encryption {
        kind: ErrorKind::EncryptionKeyMissing,
        message: "no encryption key is configured, so virtual keys cannot be created or \
                  checked: run `llmhost init`, or set LLMHOST_ENCRYPTION_KEY to base64 of 32 \
                  random bytes"
            .into(),
    }
}

/// The model list trimmed and without repeats, or why it is refused.
fn check_models(models: Vec<String>) -> Result<Vec<String>, Error> {
    if models.is_empty() {
        return Err(invalid(
            "models",
            "is empty: give at least one model id, or none to allow every model",
        ));
    }
    if models.len() > MAX_MODELS {
        return Err(invalid(
            "models",
            format!("more than {MAX_MODELS} model ids"),
        ));
    }
    let mut checked: Vec<String> = Vec::with_capacity(models.len());
    for model in models {
        let model = model.trim();
        if model.is_empty() {
            return Err(invalid("models", "holds an empty model id"));
        }
        if model.len() > MAX_MODEL_LEN || model.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "models",
                format!(
                    "`{}` is not a model id (like openai/gpt-4o-mini)",
                    model.chars().take(MAX_MODEL_LEN).collect::<String>()
                ),
            ));
        }
        if !checked.iter().any(|m| m == model) {
            checked.push(model.to_owned());
        }
    }
    Ok(checked)
}

/// Whether `presented` has a key's shape; checked before hashing so that
/// junk costs no query. The shape is public, so refusing it early tells a
/// caller nothing about any stored key.
fn has_key_shape(presented: &str) -> bool {
    presented.len() == KEY_CHARS && presented.starts_with(KEY_PREFIX)
}

fn generate_key() -> Result<SecretString, Error> {
    let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
    getrandom::fill(&mut bytes[..])
        .map_err(|err| Error::Internal(format!("cannot draw random bytes: {err}")))?;
    let mut key = Zeroizing::new(String::with_capacity(KEY_CHARS));
    key.push_str(KEY_PREFIX);
    URL_SAFE_NO_PAD.encode_string(&bytes[..], &mut key);
    Ok(SecretString::from(key.as_str()))
}

fn hint_of(key: &str) -> String {
    let start: String = key.chars().take(HINT_CHARS).collect();
    format!("{start}…")
}

impl VirtualKeys {
    /// Keys in `store`, hashed with hash keys derived from `keyring`'s
    /// encryption keys. Without a keyring, keys can be listed and revoked
    /// but not created or checked.
    pub fn new(store: Store, keyring: Option<&Keyring>) -> Self {
        let hash_keys: Vec<HashKey> = keyring
            .into_iter()
            .flat_map(Keyring::keys)
            .map(|key| HashKey {
                key_id: key.id().to_owned(),
                key: key.derive_subkey(HASH_KEY_CONTEXT),
            })
            .collect();
        Self {
            store,
            hash_keys: hash_keys.into(),
            cache: Arc::new(Mutex::new(Cache {
                ttl: DEFAULT_CACHE_TTL,
                capacity: DEFAULT_CACHE_CAPACITY,
                entries: HashMap::new(),
            })),
            shared: None,
        }
    }

    /// Shares revocations with other replicas through `redis`: a revoke
    /// here raises Redis's revocation epoch, and every authentication first
    /// reads it, clearing this process's cache when it moved. A key revoked
    /// through any replica is then refused by all at once. While Redis is
    /// unavailable, every authentication reads the database (which records
    /// revocations) instead of the cache, so revocations still hold. As
    /// revocations are signalled, lookups are then trusted for
    /// [`SHARED_CACHE_TTL`] (expiry is checked on every call regardless).
    pub fn with_shared(mut self, redis: Option<Arc<crate::shared::Redis>>) -> Self {
        if redis.is_some() {
            self.cache.lock().unwrap_or_else(|e| e.into_inner()).ttl = SHARED_CACHE_TTL;
        }
        self.shared = redis.map(|redis| (redis, Arc::new(std::sync::atomic::AtomicI64::new(-1))));
        self
    }

    /// Trusts a lookup for at most `ttl` (zero: never caches) and
    /// remembers at most `capacity` keys. A revocation or expiry made by
    /// another process is seen within `ttl`.
    pub fn with_cache(self, ttl: Duration, capacity: usize) -> Self {
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.ttl = ttl;
            cache.capacity = capacity;
            cache.entries.clear();
        }
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates a key and returns its view and the key itself, which is
    /// never available again.
    pub async fn create(&self, new: NewVirtualKey) -> Result<(VirtualKey, SecretString), Error> {
        let first = self.hash_keys.first().ok_or_else(no_keyring)?;
        check_name(&new.name)?;
        // Hashed under the database's active key, as every process
        // sharing the database does.
        let active = match self.store.active_key_id().await? {
            Some(active) => active,
            None => self.store.claim_active_key(&first.key_id).await?,
        };
        let hash_key = self
            .hash_keys
            .iter()
            .find(|k| k.key_id == active)
            .ok_or_else(|| {
                super::active_key_missing(&active, self.hash_keys.iter().map(|k| k.key_id.as_str()))
            })?;
        if let Some(agent) = &new.agent
            && self.store.agent(agent).await?.is_none()
        {
            return Err(invalid(
                "agent",
                format!("no agent named `{agent}` (see `llmhost agents list`)"),
            ));
        }
        let models = new.models.map(check_models).transpose()?;
        if let Some((usd, _)) = new.budget
            && usd <= Decimal::ZERO
        {
            return Err(invalid("budget_usd", format!("{usd} is not more than 0")));
        }
        for (field, limit) in [("rpm", new.rpm), ("tpm", new.tpm)] {
            if limit == Some(0) {
                return Err(invalid(field, "must be more than 0"));
            }
        }
        let now = SystemTime::now();
        let expires_at = match new.expires_in {
            Some(d) if d.is_zero() => return Err(invalid("expires_in", "must be more than 0")),
            Some(d) if d > MAX_EXPIRY => {
                return Err(invalid("expires_in", "must be at most 100 years"));
            }
            Some(d) => Some(utc_timestamp(now + d)),
            None => None,
        };
        let cache_ttl_secs = new.cache_ttl.map(cache_ttl_secs).transpose()?;
        let key = generate_key()?;
        let exposed = secrecy::ExposeSecret::expose_secret(&key);
        let row = NewVirtualKeyRow {
            name: new.name,
            key_hash: hash_key.hash(exposed).to_hex().to_string(),
            hash_key_id: hash_key.key_id.clone(),
            key_hint: hint_of(exposed),
            agent_name: new.agent,
            models,
            budget: new.budget.map(|(usd, period)| (usd.normalize(), period)),
            rpm: new.rpm,
            tpm: new.tpm,
            expires_at,
            cache_ttl_secs,
            cache_shared: new.cache_shared,
        };
        let stored = self.store.insert_virtual_key(row).await?;
        Ok((VirtualKey::from_row(&stored, &utc_timestamp(now)), key))
    }

    /// Every key, by name.
    pub async fn list(&self) -> Result<Vec<VirtualKey>, Error> {
        let now = utc_timestamp(SystemTime::now());
        let rows = self.store.virtual_keys().await?;
        Ok(rows.iter().map(|r| VirtualKey::from_row(r, &now)).collect())
    }

    /// The key named `name`.
    pub async fn get(&self, name: &str) -> Result<VirtualKey, Error> {
        let row = self
            .store
            .virtual_key(name)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "virtual key",
                key: name.to_owned(),
            })?;
        Ok(VirtualKey::from_row(
            &row,
            &utc_timestamp(SystemTime::now()),
        ))
    }

    /// Revokes the key named `name` for good and returns its view.
    /// Revoking a revoked key changes nothing (its `revoked_at` stays).
    /// This process stops accepting it at once; others within their cache
    /// time.
    pub async fn revoke(&self, name: &str) -> Result<VirtualKey, Error> {
        let row = self
            .store
            .revoke_virtual_key(name)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "virtual key",
                key: name.to_owned(),
            })?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .retain(|_, c| c.row.id != row.id);
        if let Some((redis, _)) = &self.shared
            && let Err(err) = redis.announce_revocation().await
        {
            tracing::warn!(
                error = %err,
                key = name,
                "the key is revoked in the database, but other replicas could not be told: \
                 they refuse it once their cache entry expires"
            );
        }
        Ok(VirtualKey::from_row(
            &row,
            &utc_timestamp(SystemTime::now()),
        ))
    }

    /// The active key `presented` is, or `None` when it is unknown,
    /// revoked or expired (callers answer all three alike). Lookups are
    /// cached for the cache time, so a revocation or expiry by another
    /// process is seen within it; expiry is checked on every call.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<VirtualKey>, Error> {
        let Some(active) = self.hash_keys.first() else {
            return Err(no_keyring());
        };
        if !has_key_shape(presented) {
            return Ok(None);
        }
        // Without the revocation signal the cache cannot be trusted: the
        // database, which records revocations, is asked directly.
        let mut bypass = false;
        if let Some((redis, seen)) = &self.shared {
            use std::sync::atomic::Ordering;
            match redis.revocation_epoch().await {
                Ok(epoch) => {
                    if seen.swap(epoch, Ordering::Relaxed) != epoch {
                        self.cache
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entries
                            .clear();
                    }
                }
                Err(_) => {
                    // Cleared once the signal is read again.
                    seen.store(-1, Ordering::Relaxed);
                    bypass = true;
                }
            }
        }
        let hash = active.hash(presented);
        let started = Instant::now();
        let now = utc_timestamp(SystemTime::now());
        let usable = |row: &VirtualKeyRow| {
            Some(VirtualKey::from_row(row, &now))
                .filter(|key| key.status == VirtualKeyStatus::Active)
        };
        if !bypass
            && let Some(row) = self
                .cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&hash, started)
        {
            return Ok(usable(row));
        }
        let candidates = self
            .hash_keys
            .iter()
            .map(|k| {
                let hash = if k.key_id == active.key_id {
                    hash
                } else {
                    k.hash(presented)
                };
                (k.key_id.clone(), hash.to_hex().to_string())
            })
            .collect();
        let Some(row) = self.store.virtual_key_by_hash(candidates).await? else {
            return Ok(None);
        };
        let key = usable(&row);
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(&hash, row, started);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::EncryptionKey;
    use secrecy::ExposeSecret;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("vk.db")).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn keys_have_their_shape_and_only_a_hint_is_kept() {
        let (_dir, store) = store().await;
        let keyring = Keyring::new(EncryptionKey::generate());
        let keys = VirtualKeys::new(store, Some(&keyring));
        let (view, key) = keys.create(NewVirtualKey::new("ci")).await.unwrap();
        let key = key.expose_secret();
        assert_eq!(key.len(), 47);
        assert!(key.starts_with("lhk-"));
        assert!(
            key[4..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(view.key_hint, format!("{}…", &key[..8]));
        assert_eq!(view.status, VirtualKeyStatus::Active);
        let shown = format!(
            "{view:?} {keys:?} {}",
            serde_json::to_string(&view).unwrap()
        );
        assert!(!shown.contains(&key[8..]), "{shown}");

        let (_, other) = keys.create(NewVirtualKey::new("ci2")).await.unwrap();
        assert_ne!(other.expose_secret(), key);
        assert_eq!(keys.authenticate(key).await.unwrap().unwrap().name, "ci");
        // One character changed, a prefix, or junk: unknown.
        let mut wrong = key.to_owned();
        wrong.replace_range(46.., if key.ends_with('A') { "B" } else { "A" });
        for bad in [wrong.as_str(), &key[..46], "", "lhk-", "Bearer x"] {
            assert_eq!(keys.authenticate(bad).await.unwrap(), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn create_checks_every_field() {
        let (_dir, store) = store().await;
        store.create_agent("bot", None).await.unwrap();
        let keyring = Keyring::new(EncryptionKey::generate());
        let keys = VirtualKeys::new(store.clone(), Some(&keyring));
        let base = || NewVirtualKey::new("k");
        let cases: Vec<(NewVirtualKey, &str)> = vec![
            (NewVirtualKey::new(""), "name"),
            (NewVirtualKey::new("has space"), "name"),
            (NewVirtualKey::new("x".repeat(65)), "name"),
            (
                NewVirtualKey {
                    agent: Some("nobody".into()),
                    ..base()
                },
                "agent",
            ),
            (
                NewVirtualKey {
                    models: Some(vec![]),
                    ..base()
                },
                "models",
            ),
            (
                NewVirtualKey {
                    models: Some(vec!["openai/gpt-4o".into(), " ".into()]),
                    ..base()
                },
                "models",
            ),
            (
                NewVirtualKey {
                    budget: Some((Decimal::ZERO, BudgetPeriod::Day)),
                    ..base()
                },
                "budget_usd",
            ),
            (
                NewVirtualKey {
                    budget: Some((Decimal::NEGATIVE_ONE, BudgetPeriod::Day)),
                    ..base()
                },
                "budget_usd",
            ),
            (
                NewVirtualKey {
                    rpm: Some(0),
                    ..base()
                },
                "rpm",
            ),
            (
                NewVirtualKey {
                    tpm: Some(0),
                    ..base()
                },
                "tpm",
            ),
            (
                NewVirtualKey {
                    expires_in: Some(Duration::ZERO),
                    ..base()
                },
                "expires_in",
            ),
            (
                NewVirtualKey {
                    expires_in: Some(MAX_EXPIRY + Duration::from_secs(1)),
                    ..base()
                },
                "expires_in",
            ),
        ];
        for (new, expected) in cases {
            match keys.create(new.clone()).await {
                Err(Error::Validation { field, .. }) => assert_eq!(field, expected, "{new:?}"),
                other => panic!("{new:?}: {other:?}"),
            }
        }
        assert!(keys.list().await.unwrap().is_empty());

        let (view, _) = keys
            .create(NewVirtualKey {
                agent: Some("bot".into()),
                models: Some(vec![
                    " openai/gpt-4o-mini".into(),
                    "openai/gpt-4o-mini".into(),
                    "anthropic/claude-haiku-4-5".into(),
                ]),
                budget: Some(("2.50".parse().unwrap(), BudgetPeriod::Week)),
                rpm: Some(60),
                tpm: Some(100_000),
                expires_in: Some(Duration::from_secs(3600)),
                ..base()
            })
            .await
            .unwrap();
        assert_eq!(
            view.models.as_deref().unwrap(),
            ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"]
        );
        assert!(view.allows_model("openai/gpt-4o-mini"));
        assert!(!view.allows_model("openai/gpt-4o"));
        assert_eq!(view.budget_usd.unwrap().to_string(), "2.5");
        assert!(view.expires_at.as_deref().unwrap() > view.created_at.as_str());
        assert_eq!(keys.list().await.unwrap(), [view]);
        match keys.create(base()).await {
            Err(Error::Conflict(message)) => assert!(message.contains("`k`"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn without_a_keyring_keys_are_listed_and_revoked_but_not_made_or_checked() {
        let (_dir, store) = store().await;
        let keyring = Keyring::new(EncryptionKey::generate());
        let (_, key) = VirtualKeys::new(store.clone(), Some(&keyring))
            .create(NewVirtualKey::new("k"))
            .await
            .unwrap();
        let keys = VirtualKeys::new(store, None);
        assert_eq!(keys.list().await.unwrap().len(), 1);
        let err = keys.create(NewVirtualKey::new("k2")).await.unwrap_err();
        assert_eq!(err.kind(), "encryption_key_missing");
        assert!(err.to_string().contains("llmhost init"), "{err}");
        let err = keys.authenticate(key.expose_secret()).await.unwrap_err();
        assert_eq!(err.kind(), "encryption_key_missing");
        assert_eq!(
            keys.revoke("k").await.unwrap().status,
            VirtualKeyStatus::Revoked
        );
        match keys.revoke("nope").await {
            Err(Error::NotFound { what, .. }) => assert_eq!(what, "virtual key"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn revoking_twice_keeps_the_first_time_and_this_process_stops_at_once() {
        let (_dir, store) = store().await;
        let keyring = Keyring::new(EncryptionKey::generate());
        let keys = VirtualKeys::new(store, Some(&keyring)).with_cache(Duration::from_secs(60), 8);
        let (_, key) = keys.create(NewVirtualKey::new("k")).await.unwrap();
        assert!(
            keys.authenticate(key.expose_secret())
                .await
                .unwrap()
                .is_some()
        );
        let first = keys.revoke("k").await.unwrap();
        assert_eq!(keys.authenticate(key.expose_secret()).await.unwrap(), None);
        let second = keys.revoke("k").await.unwrap();
        assert_eq!(first.revoked_at, second.revoked_at);
        assert!(first.revoked_at.is_some());
    }

    #[tokio::test]
    async fn keys_made_before_a_rotation_still_work_while_their_key_is_in_the_keyring() {
        let (_dir, store) = store().await;
        let old = EncryptionKey::generate();
        let before = VirtualKeys::new(store.clone(), Some(&Keyring::new(old.clone())));
        let (_, key) = before.create(NewVirtualKey::new("old")).await.unwrap();

        let new = EncryptionKey::generate();
        let rotated = Keyring::new(new.clone()).with_previous([old.clone()]);
        let after = VirtualKeys::new(store.clone(), Some(&rotated));
        assert_eq!(
            after
                .authenticate(key.expose_secret())
                .await
                .unwrap()
                .unwrap()
                .name,
            "old"
        );
        // Until the database names the new key, new keys stay under the
        // old one, as every other process's do.
        after.create(NewVirtualKey::new("early")).await.unwrap();
        // `keys rotate` names the new key in the database.
        store
            .rewrite_api_keys(|_, c| Ok(c.to_owned()), new.id().to_owned(), |_| Ok(()))
            .await
            .unwrap();
        let (_, fresh) = after.create(NewVirtualKey::new("new")).await.unwrap();
        assert!(
            after
                .authenticate(fresh.expose_secret())
                .await
                .unwrap()
                .is_some()
        );
        let hashed_under = |rows: &[VirtualKeyRow], name: &str| {
            rows.iter()
                .find(|r| r.name == name)
                .map(|r| r.hash_key_id.clone())
                .unwrap()
        };
        let rows = store.virtual_keys().await.unwrap();
        assert_eq!(hashed_under(&rows, "old"), old.id());
        assert_eq!(hashed_under(&rows, "early"), old.id());
        assert_eq!(hashed_under(&rows, "new"), new.id());

        // A process that was not given the new key makes no key under the
        // retired one, and says why.
        let err = before
            .create(NewVirtualKey::new("stale"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownKey);
        assert!(err.to_string().contains(new.id()), "{err}");
        assert_eq!(store.virtual_keys().await.unwrap().len(), 3);

        // Once the old key leaves the keyring, its virtual keys stop.
        let only_new = VirtualKeys::new(store, Some(&Keyring::new(new)));
        assert_eq!(
            only_new.authenticate(key.expose_secret()).await.unwrap(),
            None
        );
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let row = VirtualKeyRow {
            id: 1,
            name: "k".into(),
            hash_key_id: "k0".into(),
            key_hint: "lhk-abcd…".into(),
            agent_name: None,
            models: None,
            budget_usd: None,
            budget_period: None,
            rpm: None,
            tpm: None,
            expires_at: None,
            revoked_at: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            cache_ttl_secs: None,
            cache_shared: false,
        };
        let mut cache = Cache {
            ttl: Duration::from_secs(1),
            capacity: 3,
            entries: HashMap::new(),
        };
        let now = Instant::now();
        for i in 0..10u8 {
            cache.put(&blake3::hash(&[i]), row.clone(), now);
            assert!(cache.entries.len() <= 3);
        }
        let last = blake3::hash(&[9]);
        assert!(cache.get(&last, now).is_some());
        assert!(cache.get(&last, now + Duration::from_secs(1)).is_none());
    }
}
