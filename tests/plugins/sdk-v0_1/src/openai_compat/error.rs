//! Mapping OpenAI-style failures onto the contract's error variants.

use crate::http::Headers;
use crate::ratelimit::{rate_limit_reset_ms, retry_after_ms};
use crate::types::{ErrorDetail, ProviderError};
use serde_json::Value;

/// Codes that mean money ran out: permanent, never retried.
const QUOTA_CODES: &[&str] = &[
    "insufficient_quota",
    "billing_hard_limit_reached",
    "insufficient_balance",
    "billing_not_active",
];

/// Maps an HTTP error response (status, headers, body) to a typed error.
pub fn map_error(status: u16, headers: &Headers, body: &[u8]) -> ProviderError {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let object = parsed.as_ref().and_then(|v| v.get("error"));
    let (message, kind, mut code) = match object {
        Some(error) => fields(error),
        None => (None, None, None),
    };
    // xAI sends `{"code": "<status sentence>", "error": "<message>"}`: with a
    // string `error`, its code stands beside it.
    if code.is_none() && object.is_some_and(Value::is_string) {
        code = parsed
            .as_ref()
            .and_then(|v| v.get("code"))
            .and_then(field_text);
    }
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
        vendor_code: code.clone().or_else(|| kind.clone()),
        request_id: headers
            .get("x-request-id")
            .or_else(|| headers.get("request-id"))
            .map(str::to_owned),
        retry_after_ms: retry_after_ms(headers).or_else(|| {
            (status == 429)
                .then(|| rate_limit_reset_ms(headers))
                .flatten()
        }),
    };
    let is = |wanted: &[&str]| {
        [code.as_deref(), kind.as_deref()]
            .into_iter()
            .flatten()
            .any(|c| wanted.contains(&c))
    };
    match status {
        _ if is(QUOTA_CODES) => ProviderError::QuotaExhausted(detail),
        _ if is(&["context_length_exceeded", "string_above_max_length"]) => {
            ProviderError::TokenLimitExceeded(detail)
        }
        401 | 403 => ProviderError::Authentication(detail),
        402 => ProviderError::QuotaExhausted(detail),
        404 if is(&["model_not_found"]) || detail.message.contains("model") => {
            ProviderError::ModelNotSupported(detail)
        }
        413 => ProviderError::TokenLimitExceeded(detail),
        429 => ProviderError::RateLimited(detail),
        503 | 529 => ProviderError::Overloaded(detail),
        400..=499 if status != 408 && status != 409 => ProviderError::InvalidRequest(detail),
        _ => ProviderError::ServerError(detail),
    }
}

/// Maps an `{"error": {...}}` object that arrived inside a stream, where no
/// status code tells what it was.
pub fn map_error_object(error: &Value) -> ProviderError {
    let (message, kind, code) = fields(error);
    let detail = ErrorDetail {
        message: message.unwrap_or_else(|| "error event in the stream".into()),
        status: None,
        vendor_code: code.clone().or_else(|| kind.clone()),
        request_id: None,
        retry_after_ms: None,
    };
    let is = |wanted: &[&str]| {
        [code.as_deref(), kind.as_deref()]
            .into_iter()
            .flatten()
            .any(|c| wanted.contains(&c))
    };
    if is(QUOTA_CODES) {
        ProviderError::QuotaExhausted(detail)
    } else if is(&["context_length_exceeded"]) {
        ProviderError::TokenLimitExceeded(detail)
    } else if is(&[
        "rate_limit_exceeded",
        "rate_limit_error",
        "requests",
        "tokens",
    ]) {
        ProviderError::RateLimited(detail)
    } else if is(&["overloaded_error", "overloaded", "server_overloaded"]) {
        ProviderError::Overloaded(detail)
    } else if is(&["invalid_request_error"]) {
        ProviderError::InvalidRequest(detail)
    } else if is(&["authentication_error", "invalid_api_key"]) {
        ProviderError::Authentication(detail)
    } else {
        ProviderError::ServerError(detail)
    }
}

/// Moves a typed error carrying vendor detail to the variant `refine`
/// picks from that detail (typically from the message, for vendors whose
/// status codes and codes say less than their messages); errors without
/// detail, and those `refine` leaves (`None`), are returned unchanged.
pub fn refine_error(
    error: ProviderError,
    refine: impl FnOnce(&ErrorDetail) -> Option<fn(ErrorDetail) -> ProviderError>,
) -> ProviderError {
    let (detail, kind): (ErrorDetail, fn(ErrorDetail) -> ProviderError) = match error {
        ProviderError::Authentication(d) => (d, ProviderError::Authentication),
        ProviderError::RateLimited(d) => (d, ProviderError::RateLimited),
        ProviderError::QuotaExhausted(d) => (d, ProviderError::QuotaExhausted),
        ProviderError::TokenLimitExceeded(d) => (d, ProviderError::TokenLimitExceeded),
        ProviderError::ModelNotSupported(d) => (d, ProviderError::ModelNotSupported),
        ProviderError::InvalidRequest(d) => (d, ProviderError::InvalidRequest),
        ProviderError::Overloaded(d) => (d, ProviderError::Overloaded),
        ProviderError::ServerError(d) => (d, ProviderError::ServerError),
        other => return other,
    };
    match refine(&detail) {
        Some(refined) => refined(detail),
        None => kind(detail),
    }
}

/// Message, type and code of an error object; codes may be numbers.
fn fields(error: &Value) -> (Option<String>, Option<String>, Option<String>) {
    let text = |key: &str| error.get(key).and_then(field_text);
    match error {
        Value::String(message) => (Some(message.clone()), None, None),
        _ => (text("message"), text("type"), text("code")),
    }
}

/// A non-empty string or a number as text.
fn field_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}
