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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{TransportDetail, TransportPhase};

    fn map(status: u16, body: &str) -> ProviderError {
        map_error(status, &Headers::default(), body.as_bytes())
    }

    fn error_body(kind: &str, code: &str) -> String {
        format!(r#"{{"error":{{"message":"m","type":"{kind}","param":null,"code":"{code}"}}}}"#)
    }

    #[test]
    fn statuses_and_codes() {
        assert!(matches!(
            map(401, &error_body("invalid_request_error", "invalid_api_key")),
            ProviderError::Authentication(_)
        ));
        assert!(matches!(
            map(404, &error_body("invalid_request_error", "model_not_found")),
            ProviderError::ModelNotSupported(_)
        ));
        assert!(matches!(
            map(
                400,
                &error_body("invalid_request_error", "context_length_exceeded")
            ),
            ProviderError::TokenLimitExceeded(_)
        ));
        assert!(matches!(
            map(429, &error_body("insufficient_quota", "insufficient_quota")),
            ProviderError::QuotaExhausted(_)
        ));
        assert!(matches!(
            map(429, &error_body("requests", "rate_limit_exceeded")),
            ProviderError::RateLimited(_)
        ));
        assert!(matches!(map(402, "{}"), ProviderError::QuotaExhausted(_)));
        assert!(matches!(map(503, "busy"), ProviderError::Overloaded(_)));
        assert!(matches!(map(500, ""), ProviderError::ServerError(_)));
        assert!(matches!(map(408, ""), ProviderError::ServerError(_)));
        assert!(matches!(map(422, "{}"), ProviderError::InvalidRequest(_)));
    }

    #[test]
    fn detail_keeps_what_callers_need() {
        let headers = Headers::from_pairs([("x-request-id", "req_1"), ("retry-after", "3")]);
        let ProviderError::RateLimited(detail) = map_error(
            429,
            &headers,
            error_body("requests", "rate_limit_exceeded").as_bytes(),
        ) else {
            panic!("expected rate limited");
        };
        assert_eq!(detail.status, Some(429));
        assert_eq!(detail.vendor_code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(detail.request_id.as_deref(), Some("req_1"));
        assert_eq!(detail.retry_after_ms, Some(3000));
    }

    #[test]
    fn a_429_without_retry_after_waits_for_the_spent_budget() {
        let headers = Headers::from_pairs([
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "850ms"),
        ]);
        let ProviderError::RateLimited(detail) = map_error(
            429,
            &headers,
            error_body("tokens", "rate_limit_exceeded").as_bytes(),
        ) else {
            panic!("expected rate limited");
        };
        assert_eq!(detail.retry_after_ms, Some(850));
    }

    #[test]
    fn code_beside_a_string_error_is_kept() {
        let body = r#"{"code":"Some requested entity was not found","error":"The model grok-x does not exist"}"#;
        let ProviderError::ModelNotSupported(detail) = map(404, body) else {
            panic!("expected model not supported");
        };
        assert_eq!(detail.message, "The model grok-x does not exist");
        assert_eq!(
            detail.vendor_code.as_deref(),
            Some("Some requested entity was not found")
        );
    }

    #[test]
    fn refine_error_moves_detail_or_keeps_the_error() {
        let refined = refine_error(map(400, r#"{"error":"Incorrect API key"}"#), |d| {
            d.message
                .contains("API key")
                .then_some(ProviderError::Authentication as fn(_) -> _)
        });
        let ProviderError::Authentication(detail) = refined else {
            panic!("expected authentication, got {refined:?}");
        };
        assert_eq!(detail.status, Some(400));
        assert!(matches!(
            refine_error(map(400, "{}"), |_| None),
            ProviderError::InvalidRequest(_)
        ));
        assert!(matches!(
            refine_error(
                ProviderError::Timeout(TransportDetail {
                    message: "t".into(),
                    phase: TransportPhase::Request,
                    elapsed_ms: None,
                }),
                |_| Some(ProviderError::ServerError as fn(_) -> _)
            ),
            ProviderError::Timeout(_)
        ));
    }

    #[test]
    fn non_json_body_is_quoted() {
        let ProviderError::ServerError(detail) = map(502, "<html>bad gateway</html>") else {
            panic!("expected server error");
        };
        assert_eq!(detail.message, "HTTP 502: <html>bad gateway</html>");
    }
}
