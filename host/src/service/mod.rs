//! The config service: agents and their LLM configs, validated against
//! the loaded providers and the model catalogue, with API keys encrypted
//! at rest; and calls made on an agent's behalf, each recorded as a usage
//! event. Beside it, the gateway's virtual keys ([`VirtualKeys`]), the
//! budgets of keys and agents ([`Budgets`]) and the agents' A/B
//! experiments ([`Experiment`]).
//!
//! No response, log line, error or `Debug` output of this module carries an
//! API key: views say `has_api_key` and give at most a masked hint.

mod admin_tokens;
mod agent_call;
mod budgets;
mod experiments;
pub(crate) mod ledger;
mod virtual_keys;

pub use crate::store::{AgentBudget, BudgetPeriod, Spend};
pub use admin_tokens::{ADMIN_TOKEN_PREFIX, AdminToken, AdminTokens};
pub use agent_call::{AgentOutcome, AgentStream};
pub use budgets::{BudgetUsage, Budgets};
pub use experiments::{
    Comparison, Difference, Experiment, ExperimentReport, ExperimentStatus, NewExperiment, Sticky,
    Variant, VariantReport, assign,
};
pub use virtual_keys::{
    DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL, KEY_PREFIX, NewVirtualKey, VirtualKey,
    VirtualKeyStatus, VirtualKeys,
};

use crate::error::{Error, ErrorKind};
use crate::host::{HealthOutcome, Host, Target};
use crate::resilience::Resilience;
use crate::router::{Router, StoreSink, Strategy};
use crate::secrets::{Binding, CryptoError, EncryptionKey, Keyring};
pub use crate::store::{ConfigFields, ConfigPatch, ConfigPrices};

use crate::store::{Agent, ConfigRow, NewConfigRow, Store};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::{Arc, RwLock};

/// Longest agent name.
const MAX_NAME_LEN: usize = 64;
/// Longest API key accepted.
const MAX_KEY_LEN: usize = 4096;

/// A config as shown to callers: everything but the key, which is only
/// `has_api_key` and a masked hint. In JSON the fields are inline:
/// `{"id", "agent_id", "agent", "provider", "model", …, "prices",
/// "has_api_key", "api_key_hint", "created_at", "updated_at"}`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LlmConfig {
    pub id: i64,
    pub agent_id: i64,
    /// The agent's name.
    pub agent: String,
    #[serde(flatten)]
    pub fields: ConfigFields,
    pub has_api_key: bool,
    pub api_key_hint: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl LlmConfig {
    fn from_row(row: &ConfigRow, agent: &str) -> Self {
        Self {
            id: row.id,
            agent_id: row.agent_id,
            agent: agent.to_owned(),
            fields: row.fields.clone(),
            has_api_key: row.api_key_encrypted.is_some(),
            api_key_hint: row.api_key_hint.clone(),
            created_at: row.created_at.clone(),
            updated_at: row.updated_at.clone(),
        }
    }
}

/// `Some(key)` for a string, `None` for `null` or an absent field.
fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SecretString>, D::Error> {
    Option::<String>::deserialize(deserializer).map(|key| key.map(SecretString::from))
}

/// `Some(Some(key))` for a string, `Some(None)` for `null`; with
/// `#[serde(default)]`, `None` for an absent field.
fn nullable_secret<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<SecretString>>, D::Error> {
    secret(deserializer).map(Some)
}

/// A new config: its fields, and the API key to store encrypted (without
/// one, the provider's environment variable is used at call time). In
/// JSON, the fields with `"api_key"` beside them.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewConfig {
    #[serde(flatten)]
    pub fields: ConfigFields,
    /// Write-only: stored encrypted, never returned.
    #[serde(default, deserialize_with = "secret")]
    #[schema(value_type = Option<String>)]
    pub api_key: Option<SecretString>,
}

impl NewConfig {
    /// An enabled config of `provider` and `model` with nothing else set.
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            fields: ConfigFields::new(provider, model),
            api_key: None,
        }
    }
}

impl From<ConfigFields> for NewConfig {
    fn from(fields: ConfigFields) -> Self {
        Self {
            fields,
            api_key: None,
        }
    }
}

/// A partial update: the fields `patch` sets, and the key. In JSON, the
/// patch's fields with `"api_key"` beside them (absent: kept, `null`:
/// cleared).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct ConfigUpdate {
    #[serde(flatten)]
    pub patch: ConfigPatch,
    /// A stored key is bound to the config's provider and base URL:
    /// changing either while a key is stored requires `Some(Some(key))`
    /// (the key again) or `Some(None)` (cleared) here.
    #[serde(default, deserialize_with = "nullable_secret")]
    #[schema(value_type = Option<String>)]
    pub api_key: Option<Option<SecretString>>,
}

impl From<ConfigPatch> for ConfigUpdate {
    fn from(patch: ConfigPatch) -> Self {
        Self {
            patch,
            api_key: None,
        }
    }
}

/// The encryption keys and what they encrypt; never a key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EncryptionStatus {
    /// The id of the key new API keys are encrypted under: the one the
    /// database names (see [`Store::active_key_id`]), else this process's
    /// active key; `None`: no key is configured.
    pub active_key: Option<String>,
    /// Every key id of the keyring, the active one first.
    pub keys: Vec<String>,
    /// Stored API keys per encryption key id.
    pub api_keys_by_key: std::collections::BTreeMap<String, u64>,
    /// Whether every stored API key is under the active key.
    pub rotation_complete: bool,
}

/// The result of `validate`: the config, and what the provider's health
/// check said with the resolved key.
#[derive(Debug)]
pub struct Validation {
    pub config: LlmConfig,
    pub health: Result<HealthOutcome, Error>,
}

/// Agents and LLM configs over a [`Store`], checked against a [`Host`].
/// Cheap to clone.
#[derive(Clone)]
pub struct ConfigService {
    host: Host,
    store: Store,
    keyring: Arc<RwLock<Option<Arc<Keyring>>>>,
    router: Router,
    /// Budgets of agents (and, at the gateway, of virtual keys).
    ledger: Arc<ledger::Ledger>,
}

impl std::fmt::Debug for ConfigService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigService")
            .field("store", &self.store)
            .field(
                "keyring",
                &self.keyring().map(|k| k.active().id().to_owned()),
            )
            .finish()
    }
}

pub(crate) fn crypto_error(err: CryptoError) -> Error {
    Error::Encryption {
        kind: err.kind(),
        message: err.to_string(),
    }
}

/// `keyring` with the key `active` (the database's active key) active, or
/// a clear error when this process was not given that key.
pub(crate) fn active_keyring(keyring: &Arc<Keyring>, active: &str) -> Result<Arc<Keyring>, Error> {
    if keyring.active().id() == active {
        return Ok(keyring.clone());
    }
    keyring
        .with_active(active)
        .map(Arc::new)
        .ok_or_else(|| active_key_missing(active, keyring.keys().map(|k| k.id())))
}

/// The database's active key `active` is not among the `held` key ids.
pub(crate) fn active_key_missing<'a>(active: &str, held: impl Iterator<Item = &'a str>) -> Error {
    let held: Vec<&str> = held.collect();
    Error::Encryption {
        kind: ErrorKind::UnknownKey,
        message: format!(
            "the database's active encryption key is {active}, which this process was not given \
             (it holds {}): add that key to LLMHOST_PREVIOUS_ENCRYPTION_KEYS or the key file and \
             restart",
            held.join(", ")
        ),
    }
}

fn no_keyring() -> Error {
    Error::Encryption {
        kind: ErrorKind::EncryptionKeyMissing,
        message: "no encryption key is configured, so API keys cannot be stored or read: run \
                  `llmhost init`, or set LLMHOST_ENCRYPTION_KEY to base64 of 32 random bytes"
            .into(),
    }
}

/// `…wxyz` for keys long enough that four characters reveal little, else
/// `…`.
fn key_hint(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() >= 20 {
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("…{tail}")
    } else {
        "…".to_owned()
    }
}

/// Checks an agent or virtual-key name: 1 to 64 letters, digits, `-`,
/// `_`, `.`.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(invalid(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(
            "name",
            format!("`{name}` may only contain letters, digits, `-`, `_` and `.`"),
        ));
    }
    Ok(())
}

/// A base URL without its trailing slashes.
fn normalize(fields: &mut ConfigFields) {
    if let Some(url) = &mut fields.base_url {
        let trimmed = url.trim_end_matches('/').len();
        url.truncate(trimmed);
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Validation {
        field,
        message: message.into(),
    }
}

/// What the stored key of `row` is bound to.
fn binding_of(row: &ConfigRow) -> Binding<'_> {
    Binding {
        agent_id: row.agent_id,
        provider: &row.fields.provider,
        base_url: row.fields.base_url.as_deref(),
    }
}

/// Refuses an update that keeps the stored key of `current` but would send
/// it to another provider or base URL (`next`).
fn refuse_moving_the_key(current: &ConfigRow, next: &ConfigFields) -> Result<(), Error> {
    let provider_changed = next.provider != current.fields.provider;
    let base_url_changed = next.base_url != current.fields.base_url;
    let (field, what) = match (provider_changed, base_url_changed) {
        (false, false) => return Ok(()),
        (true, false) => ("provider", "provider"),
        (false, true) => ("base_url", "base_url"),
        (true, true) => ("provider", "provider and base_url"),
    };
    Err(invalid(
        field,
        format!(
            "changing {what} would send the stored API key to another destination: give the \
             key again in the same update (--api-key KEY, or --api-key - to read it from \
             standard input), or clear it (--clear api-key)"
        ),
    ))
}

impl ConfigService {
    /// A service over `store`, validating against `host`'s providers and
    /// catalogue, encrypting keys with `keyring` (without one, configs
    /// without keys still work). Agent calls go through a router with the
    /// host's policy that records usage to `store` in batches; see
    /// [`ConfigService::with_router`] to share one router with other
    /// calls, and [`ConfigService::flush_usage`].
    pub fn new(host: Host, store: Store, keyring: Option<Keyring>) -> Self {
        let router = host.router().with_sink(StoreSink::new(store.clone()));
        let ledger = ledger::Ledger::new(store.clone());
        Self {
            host,
            store,
            keyring: Arc::new(RwLock::new(keyring.map(Arc::new))),
            router,
            ledger,
        }
    }

    /// Uses `resilience` for calls made for agents: retries, attempt
    /// timeout, breakers (which start afresh).
    pub fn with_resilience(mut self, resilience: Resilience) -> Self {
        self.router = self.router.with_resilience(resilience);
        self
    }

    /// Keeps budgets (spend and reservations) in `shared` (Redis), for
    /// every replica at once, when given.
    pub fn with_shared(mut self, shared: Option<Arc<crate::shared::Redis>>) -> Self {
        self.ledger = ledger::Ledger::with_shared(self.store.clone(), shared);
        self
    }

    /// Routes agent calls through `router` (its policy, breakers, rate
    /// limits and usage sink), shared with whatever else uses it.
    pub fn with_router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }

    /// The router of agent calls.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The budget ledger: spend per budget window, and the reservations
    /// of calls in flight.
    pub(crate) fn ledger(&self) -> &Arc<ledger::Ledger> {
        &self.ledger
    }

    /// Waits until the usage of every call made so far is stored.
    pub async fn flush_usage(&self) -> Result<(), Error> {
        self.router.flush_usage().await
    }

    /// The host that serves the calls.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn keyring(&self) -> Option<Arc<Keyring>> {
        self.keyring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn require_keyring(&self) -> Result<Arc<Keyring>, Error> {
        self.keyring().ok_or_else(no_keyring)
    }

    // ----- agents -----

    /// Creates an agent. Names are 1 to 64 letters, digits, `-`, `_` or `.`.
    pub async fn create_agent(
        &self,
        name: &str,
        description: Option<&str>,
    ) -> Result<Agent, Error> {
        self.create_balanced_agent(name, description, Strategy::Priority)
            .await
    }

    /// [`ConfigService::create_agent`] with the strategy its calls pick
    /// among its configs of one priority by.
    pub async fn create_balanced_agent(
        &self,
        name: &str,
        description: Option<&str>,
        balance: Strategy,
    ) -> Result<Agent, Error> {
        check_name(name)?;
        if description.is_some_and(|d| d.len() > 4096) {
            return Err(invalid("description", "longer than 4096 bytes"));
        }
        self.store
            .create_balanced_agent(name, description, balance)
            .await
    }

    /// The agent named `name`.
    pub async fn agent(&self, name: &str) -> Result<Agent, Error> {
        self.store
            .agent(name)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "agent",
                key: name.to_owned(),
            })
    }

    /// Every agent, by name.
    pub async fn agents(&self) -> Result<Vec<Agent>, Error> {
        self.store.agents().await
    }

    /// Deletes an agent and its configs; its usage history stays.
    pub async fn delete_agent(&self, name: &str) -> Result<(), Error> {
        if self.store.delete_agent(name).await? {
            Ok(())
        } else {
            Err(Error::NotFound {
                what: "agent",
                key: name.to_owned(),
            })
        }
    }

    /// Sets the agent's description when `description` is `Some`
    /// (`Some(None)` clears it) and its strategy when `balance` is. With
    /// `expected_updated_at`, only if the agent's `updated_at` is still
    /// that (else [`Error::Conflict`]).
    pub async fn update_agent(
        &self,
        name: &str,
        expected_updated_at: Option<&str>,
        description: Option<Option<String>>,
        balance: Option<Strategy>,
    ) -> Result<Agent, Error> {
        if let Some(Some(d)) = &description
            && d.len() > 4096
        {
            return Err(invalid("description", "longer than 4096 bytes"));
        }
        self.store
            .update_agent(name, expected_updated_at, description, balance)
            .await
    }

    /// Sets the agent's response cache: answers served for `ttl` (1
    /// second to 30 days), sampled requests too when `sampled`; `None`
    /// turns the cache off for the agent.
    pub async fn set_agent_cache(
        &self,
        name: &str,
        cache: Option<(std::time::Duration, bool)>,
    ) -> Result<Agent, Error> {
        let cache = match cache {
            Some((ttl, sampled)) => Some(crate::store::AgentCache {
                ttl_secs: virtual_keys::cache_ttl_secs(ttl)?,
                sampled,
            }),
            None => None,
        };
        self.store
            .set_agent_cache(name, cache)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "agent",
                key: name.to_owned(),
            })
    }

    // ----- configs -----

    async fn row(&self, id: i64) -> Result<(ConfigRow, Agent), Error> {
        let row = self
            .store
            .config(id)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "config",
                key: id.to_string(),
            })?;
        let agent = self
            .store
            .agent_by_id(row.agent_id)
            .await?
            .ok_or_else(|| Error::Internal(format!("config {id} has no agent")))?;
        Ok((row, agent))
    }

    /// Checks every field of a row about to be written.
    fn check(&self, row: &ConfigFields) -> Result<(), Error> {
        let host = &self.host;
        if host.provider_info(&row.provider).is_none() {
            return Err(invalid(
                "provider",
                format!(
                    "no loaded provider `{}` (loaded: {})",
                    row.provider,
                    host.plugins()
                        .iter()
                        .map(|p| p.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let Some(model) = host.catalogue().get(&row.provider, &row.model) else {
            return Err(invalid(
                "model",
                format!(
                    "`{}` is not a known model of `{}` (see `llmhost models -p {}`, or add it to the model overrides file)",
                    row.model, row.provider, row.provider
                ),
            ));
        };
        if let Some(t) = row.temperature
            && !(t.is_finite() && (0.0..=2.0).contains(&t))
        {
            return Err(invalid("temperature", format!("{t} is outside 0 to 2")));
        }
        if let Some(p) = row.top_p
            && !(p.is_finite() && (0.0..=1.0).contains(&p))
        {
            return Err(invalid("top_p", format!("{p} is outside 0 to 1")));
        }
        if let Some(n) = row.max_tokens {
            if n == 0 {
                return Err(invalid("max_tokens", "must be at least 1"));
            }
            if model.max_output_tokens > 0 && n > model.max_output_tokens {
                return Err(invalid(
                    "max_tokens",
                    format!(
                        "{n} is more than `{}` can produce ({})",
                        model.id, model.max_output_tokens
                    ),
                ));
            }
        }
        match (&row.fallback_provider, &row.fallback_model) {
            (None, None) => {}
            (Some(provider), Some(model)) => {
                if host.provider_info(provider).is_none() {
                    return Err(invalid(
                        "fallback_provider",
                        format!("no loaded provider `{provider}`"),
                    ));
                }
                if host.catalogue().get(provider, model).is_none() {
                    return Err(invalid(
                        "fallback_model",
                        format!("`{model}` is not a known model of `{provider}`"),
                    ));
                }
                if *provider == row.provider && *model == row.model {
                    return Err(invalid(
                        "fallback_model",
                        "the fallback is the config's own provider and model",
                    ));
                }
            }
            _ => {
                return Err(invalid(
                    "fallback",
                    "fallback provider and fallback model go together: give both or neither",
                ));
            }
        }
        if row.weight == 0 {
            return Err(invalid("weight", "must be at least 1"));
        }
        match (&row.context_fallback_provider, &row.context_fallback_model) {
            (None, None) => {}
            (Some(provider), Some(fallback)) => {
                if host.provider_info(provider).is_none() {
                    return Err(invalid(
                        "context_fallback_provider",
                        format!("no loaded provider `{provider}`"),
                    ));
                }
                let Some(larger) = host.catalogue().get(provider, fallback) else {
                    return Err(invalid(
                        "context_fallback_model",
                        format!("`{fallback}` is not a known model of `{provider}`"),
                    ));
                };
                if model.context_window > 0 && larger.context_window <= model.context_window {
                    return Err(invalid(
                        "context_fallback_model",
                        format!(
                            "`{fallback}` has a context window of {} tokens, not larger than the {} of `{}`",
                            larger.context_window, model.context_window, model.id
                        ),
                    ));
                }
            }
            _ => {
                return Err(invalid(
                    "context_fallback",
                    "context fallback provider and model go together: give both or neither",
                ));
            }
        }
        if let Some(url) = &row.base_url {
            crate::host::authority_of(url).map_err(|err| invalid("base_url", err.to_string()))?;
        }
        if let Some(n) = row.max_attempts
            && !(1..=10).contains(&n)
        {
            return Err(invalid("max_attempts", format!("{n} is outside 1 to 10")));
        }
        if let Some(ms) = row.deadline_ms
            && !(1..=86_400_000).contains(&ms)
        {
            return Err(invalid("deadline", "must be between 1 ms and 24 hours"));
        }
        Ok(())
    }

    fn check_key(key: &SecretString) -> Result<(), Error> {
        let key = key.expose_secret();
        if key.trim().is_empty() {
            return Err(invalid("api_key", "is empty"));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(invalid(
                "api_key",
                format!("longer than {MAX_KEY_LEN} bytes"),
            ));
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "api_key",
                "contains whitespace or control characters",
            ));
        }
        Ok(())
    }

    /// The keyring new values are encrypted with: this process's keys,
    /// with the key the database names active (see
    /// [`Store::active_key_id`]), so that every process sharing the
    /// database encrypts under the same key.
    async fn encrypting_keyring(&self) -> Result<Arc<Keyring>, Error> {
        let keyring = self.require_keyring()?;
        let active = match self.store.active_key_id().await? {
            Some(active) => active,
            None => self.store.claim_active_key(keyring.active().id()).await?,
        };
        active_keyring(&keyring, &active)
    }

    /// Encrypts `key` bound to agent `agent_id` and to the provider and
    /// base URL `row` will be stored with.
    async fn encrypt(
        &self,
        key: &SecretString,
        agent_id: i64,
        row: &ConfigFields,
    ) -> Result<(String, String), Error> {
        Self::check_key(key)?;
        let keyring = self.encrypting_keyring().await?;
        let binding = Binding {
            agent_id,
            provider: &row.provider,
            base_url: row.base_url.as_deref(),
        };
        let ciphertext = keyring.encrypt(key, &binding).map_err(crypto_error)?;
        Ok((ciphertext, key_hint(key.expose_secret())))
    }

    /// Creates a config for the agent named `agent`.
    pub async fn create_config(&self, agent: &str, config: NewConfig) -> Result<LlmConfig, Error> {
        let agent = self.agent(agent).await?;
        let mut fields = config.fields;
        normalize(&mut fields);
        self.check(&fields)?;
        let mut row = NewConfigRow {
            fields,
            api_key_encrypted: None,
            api_key_hint: None,
        };
        if let Some(key) = &config.api_key {
            let (ciphertext, hint) = self.encrypt(key, agent.id, &row.fields).await?;
            row.api_key_encrypted = Some(ciphertext);
            row.api_key_hint = Some(hint);
        }
        let stored = self.store.insert_config(agent.id, row).await?;
        Ok(LlmConfig::from_row(&stored, &agent.name))
    }

    /// Config `id`.
    pub async fn config(&self, id: i64) -> Result<LlmConfig, Error> {
        let (row, agent) = self.row(id).await?;
        Ok(LlmConfig::from_row(&row, &agent.name))
    }

    /// Changes the fields `update` sets and checks the result as a whole.
    /// With `expected_updated_at`, only if the config's `updated_at` is
    /// still that (it was not changed since the caller read it; else
    /// [`Error::Conflict`]).
    ///
    /// A stored key is bound to its provider and base URL, so changing
    /// either requires the same update to give the key again or clear it;
    /// otherwise the update is refused with a validation error naming the
    /// field. The stored key is never decrypted and re-encrypted for a new
    /// destination: that would let whoever may update a config send its key
    /// to a server of their choosing without knowing the key.
    pub async fn update_config(
        &self,
        id: i64,
        expected_updated_at: Option<&str>,
        update: ConfigUpdate,
    ) -> Result<LlmConfig, Error> {
        let (current, agent) = self.row(id).await?;
        if let Some(expected) = expected_updated_at
            && expected != current.updated_at
        {
            return Err(Error::Conflict(format!(
                "config {id} was changed at {} (you read it at {expected}); read it again and retry",
                current.updated_at
            )));
        }
        let mut row = current.to_new();
        update.patch.apply(&mut row.fields);
        normalize(&mut row.fields);
        self.check(&row.fields)?;
        match update.api_key {
            Some(Some(key)) => {
                let (ciphertext, hint) = self.encrypt(&key, agent.id, &row.fields).await?;
                row.api_key_encrypted = Some(ciphertext);
                row.api_key_hint = Some(hint);
            }
            Some(None) => {
                row.api_key_encrypted = None;
                row.api_key_hint = None;
            }
            None if current.api_key_encrypted.is_some() => {
                refuse_moving_the_key(&current, &row.fields)?;
            }
            None => {}
        }
        let stored = self
            .store
            .update_config(id, &current.updated_at, row)
            .await?;
        Ok(LlmConfig::from_row(&stored, &agent.name))
    }

    /// Sets the priorities of the agent's configs to 0, 1, … in the order
    /// of `ids`, in one transaction; `ids` must list each of the agent's
    /// configs once (else a validation error of field `ids`). Returns the
    /// configs in their new order.
    pub async fn reorder_configs(&self, agent: &str, ids: &[i64]) -> Result<Vec<LlmConfig>, Error> {
        let agent = self.agent(agent).await?;
        let rows = self.store.reorder_configs(agent.id, ids.to_vec()).await?;
        Ok(rows
            .iter()
            .map(|row| LlmConfig::from_row(row, &agent.name))
            .collect())
    }

    /// Deletes config `id`.
    pub async fn delete_config(&self, id: i64) -> Result<(), Error> {
        if self.store.delete_config(id).await? {
            Ok(())
        } else {
            Err(Error::NotFound {
                what: "config",
                key: id.to_string(),
            })
        }
    }

    /// The agent's configs in the order they are tried.
    pub async fn configs(&self, agent: &str) -> Result<Vec<LlmConfig>, Error> {
        let agent = self.agent(agent).await?;
        let rows = self.store.configs(agent.id, false).await?;
        Ok(rows
            .iter()
            .map(|row| LlmConfig::from_row(row, &agent.name))
            .collect())
    }

    /// The agent's enabled configs in the order they are tried.
    pub async fn enabled_configs(&self, agent: &str) -> Result<Vec<LlmConfig>, Error> {
        let agent = self.agent(agent).await?;
        let rows = self.store.configs(agent.id, true).await?;
        Ok(rows
            .iter()
            .map(|row| LlmConfig::from_row(row, &agent.name))
            .collect())
    }

    /// The config tried first: enabled, lowest priority, oldest.
    pub async fn primary_config(&self, agent: &str) -> Result<LlmConfig, Error> {
        let (row, agent) = self.primary_row(agent).await?;
        Ok(LlmConfig::from_row(&row, &agent.name))
    }

    pub(crate) async fn primary_row(&self, agent: &str) -> Result<(ConfigRow, Agent), Error> {
        let agent = self.agent(agent).await?;
        let row = self
            .store
            .primary_config(agent.id)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "enabled config of agent",
                key: agent.name.clone(),
            })?;
        Ok((row, agent))
    }

    /// The call target of a config: its provider, base URL and key
    /// (the stored one, else the provider's environment variable, else the
    /// call fails with `api_key_missing`). The stored key only decrypts for
    /// the provider and base URL of the row, so a row whose base URL was
    /// changed outside llmhost fails here, before anything is sent.
    pub(crate) fn target(&self, row: &ConfigRow) -> Result<Target, Error> {
        let mut target = Target::new(&row.fields.provider);
        if let Some(url) = &row.fields.base_url {
            target = target.base_url(url);
        }
        if let Some(ciphertext) = &row.api_key_encrypted {
            let keyring = self.require_keyring()?;
            let key = keyring
                .decrypt(ciphertext, &binding_of(row))
                .map_err(crypto_error)?;
            target.api_key = Some(key);
        }
        Ok(target)
    }

    /// Runs the provider's health check for config `id` with its resolved
    /// key and base URL.
    pub async fn validate_config(&self, id: i64) -> Result<Validation, Error> {
        let (row, agent) = self.row(id).await?;
        let config = LlmConfig::from_row(&row, &agent.name);
        let target = self.target(&row)?;
        let health = self.host.health(&target).await;
        Ok(Validation { config, health })
    }

    // ----- keys -----

    /// Which encryption keys are configured and which of them the stored
    /// API keys are encrypted under: a rotation is complete when every
    /// row is under the active key.
    pub async fn encryption_status(&self) -> Result<EncryptionStatus, Error> {
        let keyring = self.keyring();
        let rows = self.store.api_keys_by_encryption_key().await?;
        // The database names the key every process encrypts under.
        let active = match self.store.active_key_id().await? {
            Some(active) => Some(active),
            None => keyring.as_ref().map(|k| k.active().id().to_owned()),
        };
        let complete = rows
            .iter()
            .all(|(id, _)| active.as_deref() == Some(id.as_str()));
        Ok(EncryptionStatus {
            keys: keyring
                .map(|k| k.keys().map(|key| key.id().to_owned()).collect())
                .unwrap_or_default(),
            active_key: active,
            api_keys_by_key: rows.into_iter().collect(),
            rotation_complete: complete,
        })
    }

    /// Refuses a rotation to the key `id` when it is in use: the
    /// database's active key, or one any stored value is under. A key
    /// this process holds as a previous key but nothing is under yet is
    /// a key handed to every replica ahead of the rotation, and may
    /// become active.
    pub async fn check_new_key(&self, id: &str) -> Result<(), Error> {
        let keyring = self.require_keyring()?;
        let active = self.store.active_key_id().await?;
        let reused = match active.as_deref() {
            Some(active) => active == id,
            None => keyring.active().id() == id,
        } || (keyring.keys().any(|k| k.id() == id)
            && self.store.key_in_use(id).await?);
        if reused {
            return Err(Error::Encryption {
                kind: ErrorKind::KeyReused,
                message: format!("key {id} is already in use; rotate to a new key"),
            });
        }
        Ok(())
    }

    /// Re-encrypts every stored API key under `new_key` in one
    /// transaction; afterwards the service uses `new_key` (the old keys
    /// still decrypt, for other databases that share them). If any row
    /// fails to decrypt, or `before_commit` (given the number of rows)
    /// fails, nothing changes. Returns the rows rewritten.
    pub async fn rotate_keys(
        &self,
        new_key: EncryptionKey,
        before_commit: impl FnOnce(usize) -> Result<(), Error> + Send + 'static,
    ) -> Result<usize, Error> {
        let old = self.require_keyring()?;
        self.check_new_key(new_key.id()).await?;
        let new_id = new_key.id().to_owned();
        let next =
            Keyring::new(new_key).with_previous(old.keys().filter(|k| k.id() != new_id).cloned());
        let next = Arc::new(next);
        let writer = next.clone();
        let count =
            self.store
                .rewrite_api_keys(
                    move |row, ciphertext| {
                        // Rewritten in the current format, bound to the
                        // same destination; a v1 row with a base URL does
                        // not decrypt, so it stops the rotation rather
                        // than have its URL blessed.
                        let binding = binding_of(row);
                        let key = writer.decrypt(ciphertext, &binding).map_err(|err| {
                            Error::Encryption {
                                kind: err.kind(),
                                message: format!("config {}: {err}; nothing was changed", row.id),
                            }
                        })?;
                        writer.encrypt(&key, &binding).map_err(crypto_error)
                    },
                    new_id,
                    before_commit,
                )
                .await?;
        *self.keyring.write().unwrap_or_else(|e| e.into_inner()) = Some(next);
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_reveal_little() {
        assert_eq!(key_hint("sk-0123456789abcdefWXYZ"), "…WXYZ");
        assert_eq!(key_hint("short-key"), "…");
    }
}
