//! The host's error type: every failure a caller can meet, typed, with a
//! stable snake_case kind for scripts and metrics.

use crate::types::{ErrorDetail, ProviderError};
use serde::{Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Declares [`ErrorKind`] from one list: variant, stable name and a
/// one-line description, so the three cannot drift apart.
macro_rules! error_kinds {
    ($($variant:ident => $name:literal: $description:literal,)+) => {
        /// The stable snake_case kind of every failure the host reports: in
        /// `--json` output, gateway metrics, usage records and API errors.
        /// New kinds may be added; existing names never change.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $(#[doc = $description] $variant,)+
        }

        impl ErrorKind {
            /// Every kind, in the order the README lists them.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant,)+];

            /// The stable name (`rate_limited`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => $name,)+
                }
            }

            /// What the kind means, in one line.
            pub const fn description(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => $description,)+
                }
            }
        }
    };
}

error_kinds! {
    ApiKeyMissing => "api_key_missing": "no API key: none stored for the config and the provider's environment variable is unset",
    Authentication => "authentication": "the vendor refused the API key",
    RateLimited => "rate_limited": "the vendor asked to slow down (see `retry_after_ms`)",
    QuotaExhausted => "quota_exhausted": "the vendor account's quota or credit is spent",
    TokenLimitExceeded => "token_limit_exceeded": "the prompt and answer do not fit the model's context",
    ModelNotSupported => "model_not_supported": "the vendor does not serve this model",
    InvalidRequest => "invalid_request": "the vendor refused the request as malformed",
    Overloaded => "overloaded": "the vendor is over capacity for now",
    ServerError => "server_error": "the vendor failed on its side",
    Timeout => "timeout": "no answer within the time budget",
    Network => "network": "the vendor could not be reached",
    Protocol => "protocol": "the vendor's answer could not be understood",
    HostDenied => "host_denied": "the plugin tried to reach a host it is not approved for",
    CpuLimitExceeded => "cpu_limit_exceeded": "the plugin used more CPU time than one request may",
    MemoryLimitExceeded => "memory_limit_exceeded": "the plugin used more memory than one request may",
    RequestLimitExceeded => "request_limit_exceeded": "the plugin sent more HTTP requests than one call may",
    TokenizerLimitExceeded => "tokenizer_limit_exceeded": "the plugin gave the tokenizer more text than one call may",
    ResponseTooLarge => "response_too_large": "the answer exceeded the response size limit",
    PluginTrap => "plugin_trap": "the plugin crashed",
    PluginLoad => "plugin_load": "a plugin file could not be loaded",
    CircuitOpen => "circuit_open": "skipped after repeated failures of the provider",
    Cancelled => "cancelled": "the caller went away before the answer (usage records only)",
    UnknownProvider => "unknown_provider": "no loaded provider has this id",
    UnknownModel => "unknown_model": "the model is not in the catalogue and strict model mode is on",
    InvalidConfig => "invalid_config": "invalid settings or arguments",
    Usage => "usage": "bad command-line arguments (CLI only)",
    Validation => "validation": "a field of an agent, config or key has a bad value",
    NotFound => "not_found": "the named record does not exist",
    Conflict => "conflict": "the record clashes with another, or changed since it was read",
    Unauthorized => "unauthorized": "no or unknown credentials",
    Forbidden => "forbidden": "the credentials may not do this",
    Database => "database": "the database could not be opened, migrated, read or written",
    EncryptionKeyMissing => "encryption_key_missing": "no encryption key is configured, so API keys cannot be stored or read",
    EncryptionKeyInvalid => "encryption_key_invalid": "the encryption key or key file is not valid",
    KeyReused => "key_reused": "rotation to a key that is already in the keyring",
    UnknownKey => "unknown_key": "a stored API key was encrypted with a key not in the keyring",
    RetiredKey => "retired_key": "a value was encrypted under a key that is no longer the database's active key",
    DecryptionFailed => "decryption_failed": "a stored API key does not decrypt for this config: give the key again",
    MalformedCiphertext => "malformed_ciphertext": "a stored API key is not in llmhost's format",
    UnsupportedCiphertextVersion => "unsupported_ciphertext_version": "a stored API key was written by a newer llmhost",
    EncryptionFailed => "encryption_failed": "an API key could not be encrypted",
    BudgetExceeded => "budget_exceeded": "the call does not fit a budget of its virtual key or agent",
    BudgetUnpriced => "budget_unpriced": "a USD budget cannot be kept on a model without a known price",
    SharedStateUnavailable => "shared_state_unavailable": "Redis, which holds the budgets and rate limits shared by the replicas, cannot be reached (fail closed)",
    Internal => "internal": "a failure inside llmhost itself",
}

impl ErrorKind {
    /// The kind named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// In the OpenAPI document: a string, one of the kinds.
impl utoipa::PartialSchema for ErrorKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("The stable kind of the failure."))
            .enum_values(Some(ErrorKind::ALL.iter().map(|kind| kind.as_str())))
            .build()
            .into()
    }
}

impl utoipa::ToSchema for ErrorKind {
    fn name() -> std::borrow::Cow<'static, str> {
        "ErrorKind".into()
    }
}

impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for ErrorKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// Everything that can go wrong serving a request or loading plugins.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The provider plugin reported a vendor failure.
    #[error("{provider}: {}", describe_provider_error(.error))]
    Provider {
        provider: String,
        error: Box<ProviderError>,
    },
    /// The plugin tried to reach a host it is not approved for; no
    /// connection was made.
    #[error(
        "{provider}: request to `{destination}` denied: the plugin is not approved for that host (approved: {approved})"
    )]
    HostDenied {
        provider: String,
        destination: String,
        approved: String,
    },
    /// No loaded plugin has this id.
    #[error("unknown provider `{0}` (see `llmhost models` for the loaded providers)")]
    UnknownProvider(String),
    /// Strict mode: the model is not in the catalogue, so its cost could
    /// not be accounted; nothing was sent.
    #[error(
        "{provider}: model `{model}` is not in the catalogue and strict model mode is on (add it to the model overrides file)"
    )]
    UnknownModel { provider: String, model: String },
    /// The provider's circuit breaker is open after repeated failures;
    /// nothing was sent.
    #[error(
        "{provider}: skipped after repeated failures at {base_url} (probed again in {:.1}s)",
        .retry_after.as_secs_f64()
    )]
    CircuitOpen {
        provider: String,
        base_url: String,
        retry_after: Duration,
    },
    /// The request took longer than its time budget.
    #[error("{provider}: no answer within {:.1}s", .after.as_secs_f64())]
    Timeout { provider: String, after: Duration },
    /// The plugin used more CPU time than one request may.
    #[error("{provider}: the plugin exceeded its CPU time limit of {:.1}s and was stopped", .limit.as_secs_f64())]
    CpuLimitExceeded { provider: String, limit: Duration },
    /// The plugin tried to use more memory than one request may.
    #[error(
        "{provider}: the plugin exceeded its memory limit of {limit_bytes} bytes and was stopped"
    )]
    MemoryLimitExceeded {
        provider: String,
        limit_bytes: usize,
    },
    /// The plugin tried to send more HTTP requests in one call than it
    /// may; the extra ones were not sent.
    #[error("{provider}: the plugin tried to send more than {limit} HTTP requests in one call")]
    RequestLimitExceeded { provider: String, limit: u32 },
    /// The plugin gave the host's tokenizer more text than one call (or
    /// one request) may count.
    #[error(
        "{provider}: the plugin sent the tokenizer more than {limit_bytes} bytes in one {scope} and was stopped"
    )]
    TokenizerLimitExceeded {
        provider: String,
        limit_bytes: usize,
        /// `call` or `request`.
        scope: &'static str,
    },
    /// The answer grew beyond the response size limit (a stream's text
    /// collected so far, or a complete answer).
    #[error("{provider}: the answer exceeded the response size limit of {limit_bytes} bytes")]
    ResponseTooLarge {
        provider: String,
        limit_bytes: usize,
    },
    /// The plugin crashed (a WebAssembly trap).
    #[error("{provider}: the plugin crashed: {message}")]
    PluginTrap { provider: String, message: String },
    /// A plugin file could not be loaded.
    #[error("cannot load plugin {}: {message}", .path.display())]
    PluginLoad { path: PathBuf, message: String },
    /// Invalid configuration or arguments.
    #[error("{0}")]
    InvalidConfig(String),
    /// A field of a stored record (agent, LLM config) has a bad value.
    #[error("invalid {field}: {message}")]
    Validation {
        field: &'static str,
        message: String,
    },
    /// The named record does not exist.
    #[error("{what} `{key}` not found")]
    NotFound { what: &'static str, key: String },
    /// The record clashes with one that exists (a duplicate name).
    #[error("{0}")]
    Conflict(String),
    /// No credentials, or ones nobody issued.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The credentials are known but may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The database could not be opened, migrated, read or written.
    #[error("database: {0}")]
    Database(String),
    /// An API key could not be encrypted or decrypted, or no encryption
    /// key is configured.
    #[error("{message}")]
    Encryption { kind: ErrorKind, message: String },
    /// A budget refused the call: `budget_exceeded` (spent, reserved by
    /// calls in flight and this call's worst case do not fit) or
    /// `budget_unpriced` (a USD budget cannot be kept on a model without
    /// a price).
    #[error("{message}")]
    Budget { kind: ErrorKind, message: String },
    /// Redis, which holds the state shared by the replicas (budgets,
    /// rate limits, revocations), cannot be reached and the gateway fails
    /// closed; the message names the server with its password redacted.
    #[error("{message}")]
    SharedUnavailable { message: String },
    /// A failure inside the host itself (I/O, engine set-up).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Stable snake_case name of the error kind (`rate_limited`,
    /// `host_denied`, …), as printed in `--json` output.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Provider { error, .. } => provider_error_kind(error),
            Error::HostDenied { .. } => ErrorKind::HostDenied,
            Error::UnknownProvider(_) => ErrorKind::UnknownProvider,
            Error::UnknownModel { .. } => ErrorKind::UnknownModel,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::CircuitOpen { .. } => ErrorKind::CircuitOpen,
            Error::CpuLimitExceeded { .. } => ErrorKind::CpuLimitExceeded,
            Error::MemoryLimitExceeded { .. } => ErrorKind::MemoryLimitExceeded,
            Error::PluginTrap { .. } => ErrorKind::PluginTrap,
            Error::RequestLimitExceeded { .. } => ErrorKind::RequestLimitExceeded,
            Error::TokenizerLimitExceeded { .. } => ErrorKind::TokenizerLimitExceeded,
            Error::ResponseTooLarge { .. } => ErrorKind::ResponseTooLarge,
            Error::PluginLoad { .. } => ErrorKind::PluginLoad,
            Error::InvalidConfig(_) => ErrorKind::InvalidConfig,
            Error::Validation { .. } => ErrorKind::Validation,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Unauthorized(_) => ErrorKind::Unauthorized,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::Database(_) => ErrorKind::Database,
            Error::Encryption { kind, .. } => *kind,
            Error::Budget { kind, .. } => *kind,
            Error::SharedUnavailable { .. } => ErrorKind::SharedStateUnavailable,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The vendor's failure details, when the vendor reported one.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        match self {
            Error::Provider { error, .. } => match error.as_ref() {
                ProviderError::Authentication(d)
                | ProviderError::RateLimited(d)
                | ProviderError::QuotaExhausted(d)
                | ProviderError::TokenLimitExceeded(d)
                | ProviderError::ModelNotSupported(d)
                | ProviderError::InvalidRequest(d)
                | ProviderError::Overloaded(d)
                | ProviderError::ServerError(d) => Some(d),
                ProviderError::ApiKeyMissing(_)
                | ProviderError::Timeout(_)
                | ProviderError::Network(_)
                | ProviderError::Protocol(_) => None,
            },
            _ => None,
        }
    }

    /// How long the vendor asked to wait before retrying, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        if let Error::CircuitOpen { retry_after, .. } = self {
            return Some(*retry_after);
        }
        if let Error::SharedUnavailable { .. } = self {
            return Some(Duration::from_secs(1));
        }
        self.detail()
            .and_then(|d| d.retry_after_ms)
            .map(Duration::from_millis)
    }
}

/// The kind of a provider error variant.
pub fn provider_error_kind(error: &ProviderError) -> ErrorKind {
    match error {
        ProviderError::ApiKeyMissing(_) => ErrorKind::ApiKeyMissing,
        ProviderError::Authentication(_) => ErrorKind::Authentication,
        ProviderError::RateLimited(_) => ErrorKind::RateLimited,
        ProviderError::QuotaExhausted(_) => ErrorKind::QuotaExhausted,
        ProviderError::TokenLimitExceeded(_) => ErrorKind::TokenLimitExceeded,
        ProviderError::ModelNotSupported(_) => ErrorKind::ModelNotSupported,
        ProviderError::InvalidRequest(_) => ErrorKind::InvalidRequest,
        ProviderError::Overloaded(_) => ErrorKind::Overloaded,
        ProviderError::ServerError(_) => ErrorKind::ServerError,
        ProviderError::Timeout(_) => ErrorKind::Timeout,
        ProviderError::Network(_) => ErrorKind::Network,
        ProviderError::Protocol(_) => ErrorKind::Protocol,
    }
}

fn describe_provider_error(error: &ProviderError) -> String {
    struct Detail<'a>(&'a ErrorDetail);
    impl fmt::Display for Detail<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let d = self.0;
            if let Some(status) = d.status {
                write!(f, "HTTP {status}: ")?;
            }
            f.write_str(&d.message)?;
            if let Some(code) = &d.vendor_code {
                write!(f, " [{code}]")?;
            }
            if let Some(ms) = d.retry_after_ms {
                write!(f, " (retry after {:.1}s)", ms as f64 / 1000.0)?;
            }
            if let Some(id) = &d.request_id {
                write!(f, " (request id {id})")?;
            }
            Ok(())
        }
    }
    match error {
        ProviderError::ApiKeyMissing(m) => format!("API key missing: {m}"),
        ProviderError::Authentication(d) => format!("authentication failed: {}", Detail(d)),
        ProviderError::RateLimited(d) => format!("rate limited: {}", Detail(d)),
        ProviderError::QuotaExhausted(d) => format!("quota exhausted: {}", Detail(d)),
        ProviderError::TokenLimitExceeded(d) => format!("token limit exceeded: {}", Detail(d)),
        ProviderError::ModelNotSupported(d) => format!("model not supported: {}", Detail(d)),
        ProviderError::InvalidRequest(d) => format!("invalid request: {}", Detail(d)),
        ProviderError::Overloaded(d) => format!("overloaded: {}", Detail(d)),
        ProviderError::ServerError(d) => format!("server error: {}", Detail(d)),
        ProviderError::Timeout(m) => format!("timeout: {m}"),
        ProviderError::Network(m) => format!("network error: {m}"),
        ProviderError::Protocol(m) => format!("protocol error: {m}"),
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind;
    use std::collections::HashSet;

    /// The README's list of error kinds, between its markers.
    fn readme_kinds() -> Vec<String> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("<!-- error-kinds -->")
            .expect("README marks its error kinds");
        let end = readme
            .find("<!-- /error-kinds -->")
            .expect("README closes its error kinds");
        readme[start..end]
            .lines()
            .skip(1)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_readme_lists_every_kind_with_its_description() {
        let expected: Vec<String> = ErrorKind::ALL
            .iter()
            .map(|kind| format!("- `{kind}`: {}", kind.description()))
            .collect();
        assert_eq!(
            readme_kinds(),
            expected,
            "README.md's error kinds differ from ErrorKind::ALL; paste the expected lines between the markers"
        );
    }

    #[test]
    fn kinds_are_unique_snake_case_and_serialize_as_their_name() {
        let mut seen = HashSet::new();
        for &kind in ErrorKind::ALL {
            let name = kind.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert_eq!(ErrorKind::from_name(name), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            assert!(!kind.description().is_empty());
        }
    }
}
