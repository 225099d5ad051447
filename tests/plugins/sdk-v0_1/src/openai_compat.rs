//! The OpenAI chat-completions protocol, written once for every vendor that
//! speaks it (OpenAI, DeepSeek, xAI, local servers). Vendor quirks are
//! named fields of a [`Dialect`], not forks of this code.

mod error;
mod request;
mod response;
mod stream;

pub use error::{map_error, map_error_object, refine_error};
pub use request::build_body;
pub use response::{parse_finish_reason, parse_response, parse_usage};
pub use stream::{CompatStream, StreamDecoder};

use crate::http::{self, Request, join_url};
use crate::types::{ChatRequest, ChatResponse, HealthReport, ProviderConfig, ProviderError};
use serde_json::Value;
use std::time::Duration;

/// Largest non-streamed response body accepted.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// How one vendor's OpenAI-compatible API differs from OpenAI's own.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// Provider id, used in messages.
    pub provider: &'static str,
    /// Path of the chat endpoint below the base URL.
    pub chat_path: &'static str,
    /// Path of the model list below the base URL (health checks).
    pub models_path: &'static str,
    /// Field carrying the output-token limit: `max_completion_tokens`
    /// (OpenAI, newer models) or `max_tokens`.
    pub max_tokens_field: &'static str,
    /// Field carrying reasoning text beside `content` (DeepSeek's
    /// `reasoning_content`), if the vendor has one.
    pub reasoning_field: Option<&'static str>,
    /// Whether to ask for the usage chunk with `stream_options`.
    pub stream_usage: bool,
    /// Whether the vendor accepts `reasoning_effort`.
    pub reasoning_effort: bool,
    /// tiktoken encoding used to estimate usage the vendor did not report.
    pub estimate_encoding: fn(model: &str) -> &'static str,
}

/// Builds an authorized request to `path` below the configured base URL.
pub fn authorized(
    dialect: &Dialect,
    config: &ProviderConfig,
    request: Request,
) -> Result<Request, ProviderError> {
    let key = config
        .api_key
        .as_deref()
        .filter(|key| !key.trim().is_empty())
        .ok_or_else(|| {
            ProviderError::ApiKeyMissing(format!("no API key configured for {}", dialect.provider))
        })?;
    let mut request = request
        .header("authorization", format!("Bearer {}", key.trim()))
        .timeout(Duration::from_millis(u64::from(config.timeout_ms.max(1))));
    for (name, value) in &config.extra_headers {
        request = request.header(name.clone(), value.clone());
    }
    Ok(request)
}

/// Sends a chat request and returns the whole answer.
pub fn chat(
    dialect: &Dialect,
    config: &ProviderConfig,
    request: &ChatRequest,
) -> Result<ChatResponse, ProviderError> {
    let body = build_body(dialect, request, false)?;
    chat_with_body(dialect, config, request, &body)
}

/// Like [`chat`], with a body the caller built with [`build_body`] and then
/// adjusted, for vendor quirks that touch the body itself.
pub fn chat_with_body(
    dialect: &Dialect,
    config: &ProviderConfig,
    request: &ChatRequest,
    body: &Value,
) -> Result<ChatResponse, ProviderError> {
    let url = join_url(&config.base_url, dialect.chat_path);
    let outgoing = authorized(dialect, config, Request::post_json(url, body))?;
    let mut response = http::send(outgoing)?;
    let bytes = response.body.read_to_end(MAX_RESPONSE_BYTES)?;
    if !(200..300).contains(&response.status) {
        return Err(map_error(response.status, &response.headers, &bytes));
    }
    parse_response(dialect, request, &response.headers, &bytes)
}

/// Starts a streamed chat request.
pub fn stream(
    dialect: &'static Dialect,
    config: &ProviderConfig,
    request: &ChatRequest,
) -> Result<CompatStream, ProviderError> {
    let body = build_body(dialect, request, true)?;
    stream_with_body(dialect, config, request, &body)
}

/// Like [`stream`], with a body the caller built with [`build_body`] (with
/// `stream` set) and then adjusted.
pub fn stream_with_body(
    dialect: &'static Dialect,
    config: &ProviderConfig,
    request: &ChatRequest,
    body: &Value,
) -> Result<CompatStream, ProviderError> {
    let url = join_url(&config.base_url, dialect.chat_path);
    let outgoing = authorized(dialect, config, Request::post_json(url, body))?
        .header("accept", "text/event-stream");
    let mut response = http::send(outgoing)?;
    if !(200..300).contains(&response.status) {
        let bytes = response.body.read_to_end(MAX_RESPONSE_BYTES)?;
        return Err(map_error(response.status, &response.headers, &bytes));
    }
    Ok(CompatStream::new(dialect, request, response))
}

/// Lists the vendor's models to check that it answers and accepts the key.
pub fn health_check(
    dialect: &Dialect,
    config: &ProviderConfig,
) -> Result<HealthReport, ProviderError> {
    let url = join_url(&config.base_url, dialect.models_path);
    let outgoing = authorized(dialect, config, Request::get(url))?;
    let mut response = http::send(outgoing)?;
    let bytes = response.body.read_to_end(MAX_RESPONSE_BYTES)?;
    if !(200..300).contains(&response.status) {
        return Err(map_error(response.status, &response.headers, &bytes));
    }
    let listed = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("data").and_then(|d| d.as_array()).map(Vec::len))
        .and_then(|n| u32::try_from(n).ok());
    Ok(HealthReport {
        models_available: listed,
        detail: match listed {
            Some(n) => format!("{} answered; {n} models listed", dialect.provider),
            None => format!("{} answered", dialect.provider),
        },
    })
}
