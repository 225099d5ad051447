//! The OpenAI chat-completions protocol, written once for every vendor that
//! speaks it (OpenAI, DeepSeek, xAI, local servers), as pure functions:
//! requests are prepared, answers parsed, streams decoded from the events
//! the host frames. Vendor quirks are named fields of a [`Dialect`], not
//! forks of this code; vendors whose quirks touch the body build it with
//! [`build_body`], adjust it and finish with [`prepare_chat_with_body`] or
//! [`prepare_stream_with_body`].

mod error;
mod request;
mod response;
mod stream;

pub use error::{map_error, map_error_object, refine_error};
pub use request::build_body;
pub use response::{parse_finish_reason, parse_response, parse_usage};
pub use stream::StreamDecoder;

use crate::http::{self, Headers};
use crate::types::{
    ChatRequest, ChatStep, HealthReport, HealthStep, HttpRequest, HttpResponse, ProviderConfig,
    ProviderError,
};
use serde_json::Value;

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

impl Dialect {
    /// OpenAI's own dialect under the id `provider`: `/chat/completions`
    /// and `/models`, `max_completion_tokens`, no reasoning field, usage in
    /// streams, `reasoning_effort`, estimates with `o200k_base`. Vendors
    /// change the fields that differ.
    pub const fn openai(provider: &'static str) -> Self {
        Self {
            provider,
            chat_path: "/chat/completions",
            models_path: "/models",
            max_tokens_field: "max_completion_tokens",
            reasoning_field: None,
            stream_usage: true,
            reasoning_effort: true,
            estimate_encoding: o200k_base,
        }
    }
}

fn o200k_base(_model: &str) -> &'static str {
    "o200k_base"
}

/// The request for one complete answer to `request`: its body from
/// [`build_body`] with the request's `vendor-params` merged in.
pub fn prepare_chat(
    dialect: &Dialect,
    _config: &ProviderConfig,
    request: &ChatRequest,
) -> Result<HttpRequest, ProviderError> {
    prepare_chat_with_body(dialect, request, build_body(dialect, request, false)?)
}

/// Like [`prepare_chat`], with a body the caller built with [`build_body`]
/// and then adjusted, for vendor quirks that touch the body itself. The
/// request's `vendor-params` are merged in last, so they win.
pub fn prepare_chat_with_body(
    dialect: &Dialect,
    request: &ChatRequest,
    mut body: Value,
) -> Result<HttpRequest, ProviderError> {
    crate::vendor_params::merge(&mut body, request)?;
    Ok(http::post_json(dialect.chat_path, &body))
}

/// The answer to [`prepare_chat`]: the parsed response on a success, the
/// mapped error ([`map_error`]) otherwise.
pub fn parse_chat(
    dialect: &Dialect,
    request: &ChatRequest,
    response: HttpResponse,
) -> Result<ChatStep, ProviderError> {
    let headers = Headers::from_response(&response);
    if !http::is_success(response.status) {
        return Err(map_error(response.status, &headers, &response.body));
    }
    parse_response(dialect, request, &headers, &response.body).map(ChatStep::Done)
}

/// The request for a streamed answer to `request`: its body from
/// [`build_body`] (with `stream` set) and the request's `vendor-params`.
pub fn prepare_stream(
    dialect: &Dialect,
    _config: &ProviderConfig,
    request: &ChatRequest,
) -> Result<HttpRequest, ProviderError> {
    prepare_stream_with_body(dialect, request, build_body(dialect, request, true)?)
}

/// Like [`prepare_stream`], with a body the caller built with
/// [`build_body`] (with `stream` set) and then adjusted.
pub fn prepare_stream_with_body(
    dialect: &Dialect,
    request: &ChatRequest,
    mut body: Value,
) -> Result<HttpRequest, ProviderError> {
    crate::vendor_params::merge(&mut body, request)?;
    Ok(http::with_header(
        http::post_json(dialect.chat_path, &body),
        "accept",
        "text/event-stream",
    ))
}

/// Opens the decoder of the answer to [`prepare_stream`]: on a success,
/// a [`StreamDecoder`] that takes the response's rate limits and request
/// id into its start chunk; otherwise the mapped error of the body.
pub fn open_stream(
    dialect: &'static Dialect,
    request: &ChatRequest,
    response: HttpResponse,
) -> Result<StreamDecoder, ProviderError> {
    let headers = Headers::from_response(&response);
    if !http::is_success(response.status) {
        return Err(map_error(response.status, &headers, &response.body));
    }
    Ok(StreamDecoder::new(dialect, request, &headers))
}

/// The health check: a list of the vendor's models, which needs a valid
/// key.
pub fn prepare_health_check(
    dialect: &Dialect,
    _config: &ProviderConfig,
) -> Result<HttpRequest, ProviderError> {
    Ok(http::get(dialect.models_path))
}

/// The answer to [`prepare_health_check`]: how many models the vendor
/// listed, or the mapped error.
pub fn parse_health_check(
    dialect: &Dialect,
    response: HttpResponse,
) -> Result<HealthStep, ProviderError> {
    if !http::is_success(response.status) {
        let headers = Headers::from_response(&response);
        return Err(map_error(response.status, &headers, &response.body));
    }
    let listed = serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|v| v.get("data").and_then(Value::as_array).map(Vec::len))
        .and_then(|n| u32::try_from(n).ok());
    Ok(HealthStep::Done(HealthReport {
        models_available: listed,
        detail: match listed {
            Some(n) => format!("{} answered; {n} models listed", dialect.provider),
            None => format!("{} answered", dialect.provider),
        },
    }))
}

#[cfg(test)]
mod tests;
