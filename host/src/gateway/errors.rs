//! Failures as the gateway answers them: an HTTP status, a class each
//! protocol names in its own words, and the headers that tell the official
//! SDKs whether and when to retry.
//!
//! A host [`Error`] maps onto one [`ApiError`] here, once; the OpenAI and
//! Anthropic renderers only choose the wording (and OpenAI's status for
//! overload, see [`super::openai::status`]).

use crate::Error;
use crate::error::ErrorKind;
use crate::types::ProviderError;
use std::time::Duration;

/// What kind of failure an [`ApiError`] is, independent of protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The request is malformed or asks for something impossible.
    InvalidRequest,
    /// The client's key is missing or wrong.
    Authentication,
    /// The client's key may not do this.
    Permission,
    NotFound,
    /// The request body is over the size limit.
    RequestTooLarge,
    /// Too many requests, or a quota or budget is spent.
    RateLimit,
    /// A failure on the gateway's side or upstream of it.
    Api,
    /// The gateway or the upstream is over capacity for now.
    Overloaded,
    /// No answer in time.
    Timeout,
}

/// One failure to send to a client: status, class, message and the hints
/// the SDKs act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub class: ErrorClass,
    pub message: String,
    /// The request field at fault (`messages[2].content`), when one is.
    pub param: Option<String>,
    /// A stable machine-readable code (`context_length_exceeded`).
    pub code: Option<String>,
    /// How long the client should wait before retrying.
    pub retry_after: Option<Duration>,
    /// Whether a retry can succeed (`x-should-retry`); `None` leaves it to
    /// the SDK's rules for the status.
    pub should_retry: Option<bool>,
}

impl ApiError {
    /// An error with a status, a class and a message, and no hints.
    pub fn new(status: u16, class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            status,
            class,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
            should_retry: None,
        }
    }

    /// 400: the request is malformed.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, ErrorClass::InvalidRequest, message)
    }

    /// 401: the client's key is missing or unknown.
    pub fn authentication(message: impl Into<String>) -> Self {
        Self::new(401, ErrorClass::Authentication, message)
    }

    /// 403: the client's key may not use this route or model.
    pub fn permission(message: impl Into<String>) -> Self {
        Self::new(403, ErrorClass::Permission, message)
    }

    /// 404: no such model or route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, ErrorClass::NotFound, message)
    }

    /// 413: the request body is over the size limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, ErrorClass::RequestTooLarge, message)
    }

    /// 429 with code `budget_exceeded`: a spend budget is used up, so a
    /// retry cannot succeed until it is raised or renewed.
    pub fn budget_exceeded(message: impl Into<String>) -> Self {
        Self::new(429, ErrorClass::RateLimit, message)
            .code(ErrorKind::BudgetExceeded.as_str())
            .should_retry(false)
    }

    /// 500: a failure inside the gateway.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, ErrorClass::Api, message)
    }

    /// The same error naming the request field at fault.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The same error with a machine-readable code.
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// The same error asking the client to wait this long before retrying.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// The same error saying whether a retry can succeed.
    pub fn should_retry(mut self, retry: bool) -> Self {
        self.should_retry = Some(retry);
        self
    }

    /// The response headers the SDKs read: `retry-after` (whole seconds,
    /// rounded up) and `retry-after-ms` when there is a wait, and
    /// `x-should-retry` when the error says whether to retry.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if let Some(wait) = self.retry_after {
            let millis = wait.as_nanos().div_ceil(1_000_000);
            headers.push(("retry-after", millis.div_ceil(1000).to_string()));
            headers.push(("retry-after-ms", millis.to_string()));
        }
        if let Some(retry) = self.should_retry {
            headers.push(("x-should-retry", retry.to_string()));
        }
        headers
    }
}

impl From<&Error> for ApiError {
    /// The answer to a client for a failed call. The message is the host
    /// error's text, which names the provider but never carries a key.
    fn from(err: &Error) -> Self {
        let message = err.to_string();
        let mapped = match err {
            Error::Provider { error, .. } => from_provider(error, message),
            Error::Timeout { .. } => ApiError::new(504, ErrorClass::Timeout, message),
            Error::CircuitOpen { .. } => ApiError::new(503, ErrorClass::Overloaded, message),
            Error::SharedUnavailable { .. } => ApiError::new(503, ErrorClass::Overloaded, message)
                .code(ErrorKind::SharedStateUnavailable.as_str()),
            Error::Budget {
                kind: ErrorKind::BudgetUnpriced,
                ..
            } => ApiError::permission(message).param("model"),
            Error::Budget { .. } => ApiError::budget_exceeded(message),
            Error::HostDenied { .. }
            | Error::CpuLimitExceeded { .. }
            | Error::MemoryLimitExceeded { .. }
            | Error::RequestLimitExceeded { .. }
            | Error::TokenizerLimitExceeded { .. }
            | Error::ResponseTooLarge { .. }
            | Error::PluginTrap { .. } => ApiError::new(502, ErrorClass::Api, message),
            Error::UnknownProvider(_) | Error::UnknownModel { .. } => model_not_found(message),
            Error::Validation { field, .. } => ApiError::invalid_request(message).param(*field),
            Error::NotFound { .. } => ApiError::not_found(message),
            Error::Conflict(_) => ApiError::new(409, ErrorClass::InvalidRequest, message),
            Error::Unauthorized(_) => ApiError::authentication(message),
            Error::Forbidden(_) => ApiError::permission(message),
            Error::InvalidConfig(_) => ApiError::invalid_request(message),
            Error::Database(_)
            | Error::Encryption { .. }
            | Error::Internal(_)
            | Error::PluginLoad { .. } => ApiError::internal(message),
        };
        ApiError {
            retry_after: err.retry_after(),
            ..mapped
        }
    }
}

fn from_provider(error: &ProviderError, message: String) -> ApiError {
    match error {
        ProviderError::InvalidRequest(_) => ApiError::invalid_request(message),
        ProviderError::TokenLimitExceeded(_) => ApiError::invalid_request(message)
            .param("messages")
            .code("context_length_exceeded"),
        ProviderError::ModelNotSupported(_) => model_not_found(message),
        ProviderError::RateLimited(detail) => ApiError::new(429, ErrorClass::RateLimit, message)
            .code(
                detail
                    .vendor_code
                    .as_deref()
                    .unwrap_or("rate_limit_exceeded"),
            ),
        ProviderError::QuotaExhausted(_) => ApiError::new(429, ErrorClass::RateLimit, message)
            .code("insufficient_quota")
            .should_retry(false),
        // The upstream refused the operator's key: the client did nothing
        // wrong, and retrying will not help until the operator acts.
        ProviderError::Authentication(_) => ApiError::new(502, ErrorClass::Api, message)
            .code("upstream_authentication")
            .should_retry(false),
        ProviderError::ApiKeyMissing(_) => ApiError::internal(message)
            .code("api_key_missing")
            .should_retry(false),
        ProviderError::Overloaded(_) => ApiError::new(529, ErrorClass::Overloaded, message),
        ProviderError::ServerError(_) | ProviderError::Network(_) | ProviderError::Protocol(_) => {
            ApiError::new(502, ErrorClass::Api, message)
        }
        ProviderError::Timeout(_) => ApiError::new(504, ErrorClass::Timeout, message),
    }
}

fn model_not_found(message: String) -> ApiError {
    ApiError::not_found(message)
        .param("model")
        .code("model_not_found")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ErrorDetail, TransportDetail};
    use std::path::PathBuf;

    fn provider(error: ProviderError) -> Error {
        Error::Provider {
            provider: "openai".into(),
            error: Box::new(error),
        }
    }

    fn detail_waiting(ms: Option<u64>, code: Option<&str>) -> ErrorDetail {
        ErrorDetail {
            status: Some(429),
            vendor_code: code.map(str::to_owned),
            retry_after_ms: ms,
            ..ErrorDetail::new("slow down")
        }
    }

    /// (error, status, class, code, param, should_retry)
    type Row = (
        Error,
        u16,
        ErrorClass,
        Option<&'static str>,
        Option<&'static str>,
        Option<bool>,
    );

    fn table() -> Vec<Row> {
        use ErrorClass::*;
        let d = || ErrorDetail::new("vendor said no");
        let t = || TransportDetail::from("connection reset");
        vec![
            (
                provider(ProviderError::InvalidRequest(d())),
                400,
                InvalidRequest,
                None,
                None,
                None,
            ),
            (
                provider(ProviderError::TokenLimitExceeded(d())),
                400,
                InvalidRequest,
                Some("context_length_exceeded"),
                Some("messages"),
                None,
            ),
            (
                provider(ProviderError::ModelNotSupported(d())),
                404,
                NotFound,
                Some("model_not_found"),
                Some("model"),
                None,
            ),
            (
                provider(ProviderError::RateLimited(detail_waiting(None, None))),
                429,
                RateLimit,
                Some("rate_limit_exceeded"),
                None,
                None,
            ),
            (
                provider(ProviderError::RateLimited(detail_waiting(
                    None,
                    Some("tokens"),
                ))),
                429,
                RateLimit,
                Some("tokens"),
                None,
                None,
            ),
            (
                provider(ProviderError::QuotaExhausted(d())),
                429,
                RateLimit,
                Some("insufficient_quota"),
                None,
                Some(false),
            ),
            (
                provider(ProviderError::Authentication(d())),
                502,
                Api,
                Some("upstream_authentication"),
                None,
                Some(false),
            ),
            (
                provider(ProviderError::ApiKeyMissing("set OPENAI_API_KEY".into())),
                500,
                Api,
                Some("api_key_missing"),
                None,
                Some(false),
            ),
            (
                provider(ProviderError::Overloaded(d())),
                529,
                Overloaded,
                None,
                None,
                None,
            ),
            (
                provider(ProviderError::ServerError(d())),
                502,
                Api,
                None,
                None,
                None,
            ),
            (
                provider(ProviderError::Network(t())),
                502,
                Api,
                None,
                None,
                None,
            ),
            (
                provider(ProviderError::Protocol("bad SSE".into())),
                502,
                Api,
                None,
                None,
                None,
            ),
            (
                provider(ProviderError::Timeout(t())),
                504,
                Timeout,
                None,
                None,
                None,
            ),
            (
                Error::Timeout {
                    provider: "openai".into(),
                    after: Duration::from_secs(30),
                },
                504,
                Timeout,
                None,
                None,
                None,
            ),
            (
                Error::CircuitOpen {
                    provider: "openai".into(),
                    base_url: "https://api.openai.com/v1".into(),
                    retry_after: Duration::from_millis(2500),
                },
                503,
                Overloaded,
                None,
                None,
                None,
            ),
            (
                Error::HostDenied {
                    provider: "p".into(),
                    destination: "evil.example".into(),
                    approved: "api.openai.com".into(),
                },
                502,
                Api,
                None,
                None,
                None,
            ),
            (
                Error::CpuLimitExceeded {
                    provider: "p".into(),
                    limit: Duration::from_secs(1),
                },
                502,
                Api,
                None,
                None,
                None,
            ),
            (
                Error::MemoryLimitExceeded {
                    provider: "p".into(),
                    limit_bytes: 1 << 20,
                },
                502,
                Api,
                None,
                None,
                None,
            ),
            (
                Error::RequestLimitExceeded {
                    provider: "p".into(),
                    limit: 4,
                },
                502,
                Api,
                None,
                None,
                None,
            ),
            (
                Error::TokenizerLimitExceeded {
                    provider: "p".into(),
                    limit_bytes: 10,
                    scope: "call",
                },
                502,
                Api,
                None,
                None,
                None,
            ),
            (
                Error::ResponseTooLarge {
                    provider: "p".into(),
                    limit_bytes: 10,
                },
                502,
                Api,
                None,
                None,
                None,
            ),
            (
                Error::PluginTrap {
                    provider: "p".into(),
                    message: "unreachable".into(),
                },
                502,
                Api,
                None,
                None,
                None,
            ),
            (
                Error::UnknownProvider("nope".into()),
                404,
                NotFound,
                Some("model_not_found"),
                Some("model"),
                None,
            ),
            (
                Error::UnknownModel {
                    provider: "openai".into(),
                    model: "gpt-9".into(),
                },
                404,
                NotFound,
                Some("model_not_found"),
                Some("model"),
                None,
            ),
            (
                Error::Validation {
                    field: "temperature",
                    message: "too hot".into(),
                },
                400,
                InvalidRequest,
                None,
                Some("temperature"),
                None,
            ),
            (
                Error::NotFound {
                    what: "agent",
                    key: "a".into(),
                },
                404,
                NotFound,
                None,
                None,
                None,
            ),
            (
                Error::Conflict("exists".into()),
                409,
                InvalidRequest,
                None,
                None,
                None,
            ),
            (
                Error::Unauthorized("no key".into()),
                401,
                Authentication,
                None,
                None,
                None,
            ),
            (
                Error::Forbidden("not yours".into()),
                403,
                Permission,
                None,
                None,
                None,
            ),
            (
                Error::InvalidConfig("bad".into()),
                400,
                InvalidRequest,
                None,
                None,
                None,
            ),
            (Error::Database("locked".into()), 500, Api, None, None, None),
            (
                Error::Encryption {
                    kind: ErrorKind::EncryptionKeyMissing,
                    message: "no key".into(),
                },
                500,
                Api,
                None,
                None,
                None,
            ),
            (Error::Internal("io".into()), 500, Api, None, None, None),
            (
                Error::PluginLoad {
                    path: PathBuf::from("/plugins/x.wasm"),
                    message: "bad magic".into(),
                },
                500,
                Api,
                None,
                None,
                None,
            ),
        ]
    }

    #[test]
    fn every_host_error_maps_to_its_status_class_and_hints() {
        for (err, status, class, code, param, should_retry) in table() {
            let api = ApiError::from(&err);
            let kind = err.kind();
            assert_eq!(api.status, status, "{kind}");
            assert_eq!(api.class, class, "{kind}");
            assert_eq!(api.code.as_deref(), code, "{kind}");
            assert_eq!(api.param.as_deref(), param, "{kind}");
            assert_eq!(api.should_retry, should_retry, "{kind}");
            assert_eq!(api.message, err.to_string(), "{kind}");
        }
    }

    #[test]
    fn waits_the_upstream_or_the_breaker_asked_for_reach_the_client() {
        let limited = provider(ProviderError::RateLimited(detail_waiting(Some(1500), None)));
        let api = ApiError::from(&limited);
        assert_eq!(api.retry_after, Some(Duration::from_millis(1500)));
        assert_eq!(
            api.headers(),
            vec![
                ("retry-after", "2".to_owned()),
                ("retry-after-ms", "1500".to_owned())
            ]
        );

        let open = Error::CircuitOpen {
            provider: "openai".into(),
            base_url: "https://api.openai.com/v1".into(),
            retry_after: Duration::from_secs(3),
        };
        assert_eq!(
            ApiError::from(&open).retry_after,
            Some(Duration::from_secs(3))
        );

        let busy = provider(ProviderError::Overloaded(detail_waiting(Some(40), None)));
        assert_eq!(
            ApiError::from(&busy).retry_after,
            Some(Duration::from_millis(40))
        );
    }

    #[test]
    fn headers_round_waits_up_and_say_whether_to_retry() {
        assert!(ApiError::invalid_request("x").headers().is_empty());
        let api = ApiError::internal("x")
            .retry_after(Duration::from_micros(1_000_001))
            .should_retry(true);
        assert_eq!(
            api.headers(),
            vec![
                ("retry-after", "2".to_owned()),
                ("retry-after-ms", "1001".to_owned()),
                ("x-should-retry", "true".to_owned()),
            ]
        );
        let exact = ApiError::internal("x").retry_after(Duration::from_secs(2));
        assert_eq!(exact.headers()[0], ("retry-after", "2".to_owned()));
        assert_eq!(exact.headers()[1], ("retry-after-ms", "2000".to_owned()));
    }

    #[test]
    fn constructors_set_status_class_and_hints() {
        use ErrorClass::*;
        let cases = [
            (ApiError::invalid_request("m"), 400, InvalidRequest),
            (ApiError::authentication("m"), 401, Authentication),
            (ApiError::permission("m"), 403, Permission),
            (ApiError::not_found("m"), 404, NotFound),
            (ApiError::too_large("m"), 413, RequestTooLarge),
            (ApiError::budget_exceeded("m"), 429, RateLimit),
            (ApiError::internal("m"), 500, Api),
        ];
        for (api, status, class) in cases {
            assert_eq!((api.status, api.class), (status, class));
            assert_eq!(api.message, "m");
        }
        let budget = ApiError::budget_exceeded("spent");
        assert_eq!(budget.code.as_deref(), Some("budget_exceeded"));
        assert_eq!(
            budget.headers(),
            vec![("x-should-retry", "false".to_owned())]
        );
        let param = ApiError::invalid_request("m").param("model");
        assert_eq!(param.param.as_deref(), Some("model"));
    }

    #[test]
    fn a_rejected_upstream_key_is_not_blamed_on_the_client() {
        let api = ApiError::from(&provider(ProviderError::Authentication(ErrorDetail {
            status: Some(401),
            ..ErrorDetail::new("Incorrect API key provided")
        })));
        assert_ne!(api.status, 401);
        assert_ne!(api.class, ErrorClass::Authentication);
    }
}
