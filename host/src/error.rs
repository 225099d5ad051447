//! The host's error type: every failure a caller can meet, typed, with a
//! stable snake_case kind for scripts and metrics.

use crate::types::{ErrorDetail, ProviderError};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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
    /// The database could not be opened, migrated, read or written.
    #[error("database: {0}")]
    Database(String),
    /// An API key could not be encrypted or decrypted, or no encryption
    /// key is configured.
    #[error("{message}")]
    Encryption { kind: &'static str, message: String },
    /// A budget refused the call: `budget_exceeded` (spent, reserved by
    /// calls in flight and this call's worst case do not fit) or
    /// `budget_unpriced` (a USD budget cannot be kept on a model without
    /// a price).
    #[error("{message}")]
    Budget { kind: &'static str, message: String },
    /// A failure inside the host itself (I/O, engine set-up).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Stable snake_case name of the error kind (`rate_limited`,
    /// `host_denied`, …), as printed in `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Provider { error, .. } => provider_error_kind(error),
            Error::HostDenied { .. } => "host_denied",
            Error::UnknownProvider(_) => "unknown_provider",
            Error::UnknownModel { .. } => "unknown_model",
            Error::Timeout { .. } => "timeout",
            Error::CircuitOpen { .. } => "circuit_open",
            Error::CpuLimitExceeded { .. } => "cpu_limit_exceeded",
            Error::MemoryLimitExceeded { .. } => "memory_limit_exceeded",
            Error::PluginTrap { .. } => "plugin_trap",
            Error::RequestLimitExceeded { .. } => "request_limit_exceeded",
            Error::TokenizerLimitExceeded { .. } => "tokenizer_limit_exceeded",
            Error::ResponseTooLarge { .. } => "response_too_large",
            Error::PluginLoad { .. } => "plugin_load",
            Error::InvalidConfig(_) => "invalid_config",
            Error::Validation { .. } => "validation",
            Error::NotFound { .. } => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Database(_) => "database",
            Error::Encryption { kind, .. } => kind,
            Error::Budget { kind, .. } => kind,
            Error::Internal(_) => "internal",
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
        self.detail()
            .and_then(|d| d.retry_after_ms)
            .map(Duration::from_millis)
    }
}

/// Snake_case name of a provider error variant.
pub fn provider_error_kind(error: &ProviderError) -> &'static str {
    match error {
        ProviderError::ApiKeyMissing(_) => "api_key_missing",
        ProviderError::Authentication(_) => "authentication",
        ProviderError::RateLimited(_) => "rate_limited",
        ProviderError::QuotaExhausted(_) => "quota_exhausted",
        ProviderError::TokenLimitExceeded(_) => "token_limit_exceeded",
        ProviderError::ModelNotSupported(_) => "model_not_supported",
        ProviderError::InvalidRequest(_) => "invalid_request",
        ProviderError::Overloaded(_) => "overloaded",
        ProviderError::ServerError(_) => "server_error",
        ProviderError::Timeout(_) => "timeout",
        ProviderError::Network(_) => "network",
        ProviderError::Protocol(_) => "protocol",
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
