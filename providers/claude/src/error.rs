//! Mapping Anthropic's failures onto the contract's error variants.
//!
//! Anthropic answers errors with `{"type": "error", "error": {"type",
//! "message"}}`, over HTTP (with a status) or inside a stream after a 200
//! (without one). The error `type` decides the variant; a few messages
//! refine it where the type alone is too coarse (billing and context-length
//! failures are both `invalid_request_error`).

use llmhost_provider_sdk::http::Headers;
use llmhost_provider_sdk::ratelimit::retry_after_ms;
use llmhost_provider_sdk::types::{ErrorDetail, ProviderError};
use serde_json::Value;

/// Phrases of Anthropic's messages that mean the account is out of credit
/// or over its spend limit: permanent, never worth a retry.
const BILLING_PHRASES: &[&str] = &[
    "credit balance",
    "billing",
    "specified api usage limits",
    "spend limit",
];

/// Phrases that mean the prompt (plus `max_tokens`) does not fit the
/// model's context window.
const CONTEXT_PHRASES: &[&str] = &[
    "prompt is too long",
    "exceed context limit",
    "context window",
    "context length",
    "input is too long",
    "too many tokens",
];

/// Maps an HTTP error response (status, headers, body) to a typed error.
pub fn map_error(status: u16, headers: &Headers, body: &[u8]) -> ProviderError {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let (kind, message) = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .map(fields)
        .unwrap_or_default();
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", truncate(text, 300))
        }
    });
    let detail = ErrorDetail {
        message,
        status: Some(status),
        vendor_code: kind.clone(),
        request_id: headers
            .get("request-id")
            .or_else(|| headers.get("x-request-id"))
            .map(str::to_owned),
        retry_after_ms: retry_after_ms(headers),
    };
    let kind = kind.as_deref().unwrap_or_default();
    let billing = kind == "billing_error" || mentions(&detail.message, BILLING_PHRASES);
    match status {
        _ if billing && status != 401 && status < 500 => ProviderError::QuotaExhausted(detail),
        _ if kind == "overloaded_error" => ProviderError::Overloaded(detail),
        400 if mentions(&detail.message, CONTEXT_PHRASES) => {
            ProviderError::TokenLimitExceeded(detail)
        }
        401 | 403 => ProviderError::Authentication(detail),
        402 => ProviderError::QuotaExhausted(detail),
        404 if kind == "not_found_error" || mentions(&detail.message, &["model"]) => {
            ProviderError::ModelNotSupported(detail)
        }
        413 => ProviderError::TokenLimitExceeded(detail),
        429 => ProviderError::RateLimited(detail),
        503 | 529 => ProviderError::Overloaded(detail),
        408 | 409 => ProviderError::ServerError(detail),
        400..=499 => ProviderError::InvalidRequest(detail),
        _ => ProviderError::ServerError(detail),
    }
}

/// Maps an `error` object that arrived without a status: an `error` event
/// inside a stream, or an error body sent with a success status.
pub fn map_error_object(error: &Value) -> ProviderError {
    let (kind, message) = fields(error);
    let detail = ErrorDetail {
        message: message.unwrap_or_else(|| "Anthropic reported an error in the stream".into()),
        status: None,
        vendor_code: kind.clone(),
        request_id: None,
        retry_after_ms: None,
    };
    match kind.as_deref().unwrap_or_default() {
        "billing_error" => ProviderError::QuotaExhausted(detail),
        "invalid_request_error" if mentions(&detail.message, BILLING_PHRASES) => {
            ProviderError::QuotaExhausted(detail)
        }
        "invalid_request_error" if mentions(&detail.message, CONTEXT_PHRASES) => {
            ProviderError::TokenLimitExceeded(detail)
        }
        "invalid_request_error" => ProviderError::InvalidRequest(detail),
        "authentication_error" | "permission_error" => ProviderError::Authentication(detail),
        "not_found_error" => ProviderError::ModelNotSupported(detail),
        "request_too_large" => ProviderError::TokenLimitExceeded(detail),
        "rate_limit_error" => ProviderError::RateLimited(detail),
        "overloaded_error" => ProviderError::Overloaded(detail),
        _ => ProviderError::ServerError(detail),
    }
}

/// The `type` and `message` of an error object.
fn fields(error: &Value) -> (Option<String>, Option<String>) {
    let text = |key: &str| {
        error
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    match error {
        Value::String(message) => (None, Some(message.clone())),
        _ => (text("type"), text("message")),
    }
}

fn mentions(message: &str, phrases: &[&str]) -> bool {
    let message = message.to_ascii_lowercase();
    phrases.iter().any(|phrase| message.contains(phrase))
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(kind: &str, message: &str) -> String {
        serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
            .to_string()
    }

    fn map(status: u16, kind: &str, message: &str) -> ProviderError {
        map_error(status, &Headers::default(), body(kind, message).as_bytes())
    }

    fn variant(error: &ProviderError) -> &'static str {
        match error {
            ProviderError::ApiKeyMissing(_) => "api-key-missing",
            ProviderError::Authentication(_) => "authentication",
            ProviderError::RateLimited(_) => "rate-limited",
            ProviderError::QuotaExhausted(_) => "quota-exhausted",
            ProviderError::TokenLimitExceeded(_) => "token-limit-exceeded",
            ProviderError::ModelNotSupported(_) => "model-not-supported",
            ProviderError::InvalidRequest(_) => "invalid-request",
            ProviderError::Overloaded(_) => "overloaded",
            ProviderError::ServerError(_) => "server-error",
            ProviderError::Timeout(_) => "timeout",
            ProviderError::Network(_) => "network",
            ProviderError::Protocol(_) => "protocol",
        }
    }

    #[test]
    fn status_and_type_table() {
        let table = [
            (
                400,
                "invalid_request_error",
                "max_tokens: Field required",
                "invalid-request",
            ),
            (
                400,
                "invalid_request_error",
                "prompt is too long: 208310 tokens > 200000 maximum",
                "token-limit-exceeded",
            ),
            (
                400,
                "invalid_request_error",
                "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000",
                "token-limit-exceeded",
            ),
            (
                400,
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API.",
                "quota-exhausted",
            ),
            (
                401,
                "authentication_error",
                "invalid x-api-key",
                "authentication",
            ),
            (402, "billing_error", "payment required", "quota-exhausted"),
            (
                403,
                "permission_error",
                "no access to this model",
                "authentication",
            ),
            (
                404,
                "not_found_error",
                "model: claude-nope",
                "model-not-supported",
            ),
            (
                413,
                "request_too_large",
                "Request exceeds the maximum size",
                "token-limit-exceeded",
            ),
            (
                429,
                "rate_limit_error",
                "Number of requests has exceeded",
                "rate-limited",
            ),
            (500, "api_error", "Internal server error", "server-error"),
            (502, "api_error", "bad gateway", "server-error"),
            (503, "api_error", "unavailable", "overloaded"),
            (504, "timeout_error", "Request timed out", "server-error"),
            (529, "overloaded_error", "Overloaded", "overloaded"),
            (
                422,
                "invalid_request_error",
                "unprocessable",
                "invalid-request",
            ),
            (408, "api_error", "timeout", "server-error"),
        ];
        for (status, kind, message, expected) in table {
            assert_eq!(
                variant(&map(status, kind, message)),
                expected,
                "{status} {kind} {message}"
            );
        }
    }

    #[test]
    fn detail_keeps_what_callers_need() {
        let headers = Headers::from_pairs([("request-id", "req_011CQ"), ("retry-after", "12")]);
        let error = map_error(
            429,
            &headers,
            body("rate_limit_error", "slow down").as_bytes(),
        );
        let ProviderError::RateLimited(detail) = error else {
            panic!("expected rate limited, got {error:?}");
        };
        assert_eq!(detail.status, Some(429));
        assert_eq!(detail.vendor_code.as_deref(), Some("rate_limit_error"));
        assert_eq!(detail.request_id.as_deref(), Some("req_011CQ"));
        assert_eq!(detail.retry_after_ms, Some(12_000));
        assert_eq!(detail.message, "slow down");
    }

    #[test]
    fn bodies_that_are_not_anthropic_errors() {
        let error = map_error(502, &Headers::default(), b"<html>bad gateway</html>");
        let ProviderError::ServerError(detail) = error else {
            panic!("expected server error, got {error:?}");
        };
        assert_eq!(detail.message, "HTTP 502: <html>bad gateway</html>");
        assert_eq!(detail.vendor_code, None);
        assert_eq!(
            variant(&map_error(529, &Headers::default(), b"")),
            "overloaded"
        );
        assert_eq!(
            variant(&map_error(404, &Headers::default(), b"Not Found")),
            "invalid-request",
            "a 404 that is not Anthropic's is a wrong base URL, not a missing model"
        );
    }

    #[test]
    fn errors_inside_a_stream() {
        let table = [
            ("overloaded_error", "Overloaded", "overloaded"),
            ("rate_limit_error", "slow down", "rate-limited"),
            ("api_error", "Internal server error", "server-error"),
            ("invalid_request_error", "bad", "invalid-request"),
            (
                "invalid_request_error",
                "prompt is too long",
                "token-limit-exceeded",
            ),
            ("authentication_error", "bad key", "authentication"),
            ("permission_error", "denied", "authentication"),
            ("not_found_error", "model: x", "model-not-supported"),
            ("request_too_large", "too big", "token-limit-exceeded"),
            ("billing_error", "pay up", "quota-exhausted"),
            ("something_new", "?", "server-error"),
        ];
        for (kind, message, expected) in table {
            let error = serde_json::json!({"type": kind, "message": message});
            assert_eq!(variant(&map_error_object(&error)), expected, "{kind}");
        }
        let ProviderError::Overloaded(detail) = map_error_object(
            &serde_json::json!({"type": "overloaded_error", "message": "Overloaded"}),
        ) else {
            panic!("expected overloaded");
        };
        assert_eq!(detail.status, None);
        assert_eq!(detail.vendor_code.as_deref(), Some("overloaded_error"));
        assert_eq!(detail.message, "Overloaded");
    }
}
