//! Anthropic Claude provider for llmhost (the Messages API), built as a
//! WebAssembly component (`wasm32-wasip2`).
//!
//! The protocol is Anthropic's own, not the OpenAI-compatible core:
//! `request` lifts system prompts into the top-level field and merges
//! turns so roles alternate, `response` and `stream` read content
//! blocks and named SSE events, `error` maps Anthropic's error types, and
//! `limits` reads its `anthropic-ratelimit-*` headers. Token counts come
//! from Anthropic's `count_tokens` endpoint when a key is configured, else
//! from a local estimate: Claude's tokenizer is not public.

mod error;
mod limits;
mod models;
mod request;
mod response;
mod stream;

use llmhost_provider_sdk::http::{self, Request, Response, join_url};
use llmhost_provider_sdk::types::{
    ChatRequest, ChatResponse, HealthReport, ProviderConfig, ProviderError, ProviderInfo,
    TokenCount, TokenInput,
};
use llmhost_provider_sdk::{ChunkSource, Provider, export_provider, tokens};
use serde_json::Value;
use std::time::Duration;

const ID: &str = "claude";
/// The Messages API version this plugin speaks.
const API_VERSION: &str = "2023-06-01";
const MESSAGES_PATH: &str = "/v1/messages";
const COUNT_TOKENS_PATH: &str = "/v1/messages/count_tokens";
/// Asks for the largest page Anthropic serves, so the health check's count
/// is the whole list.
const MODELS_PATH: &str = "/v1/models?limit=1000";
/// Largest non-streamed response body accepted.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// The encoding name reported for counts Anthropic made itself.
const VENDOR_ENCODING: &str = "anthropic";

/// The configured API key, if any.
fn api_key(config: &ProviderConfig) -> Option<&str> {
    config
        .api_key
        .as_deref()
        .map(str::trim)
        .filter(|key| !key.is_empty())
}

/// Adds authentication, the API version, the timeout and the configured
/// extra headers; an extra header replaces a default of the same name
/// (a newer `anthropic-version`, say).
fn authorized(config: &ProviderConfig, request: Request) -> Result<Request, ProviderError> {
    let key = api_key(config).ok_or_else(|| {
        ProviderError::ApiKeyMissing(
            "no API key configured for claude (set ANTHROPIC_API_KEY)".into(),
        )
    })?;
    let overridden = |name: &str| {
        config
            .extra_headers
            .iter()
            .any(|(extra, _)| extra.eq_ignore_ascii_case(name))
    };
    let mut request = request.timeout(Duration::from_millis(u64::from(config.timeout_ms.max(1))));
    request.headers.retain(|(name, _)| !overridden(name));
    for (name, value) in [("x-api-key", key), ("anthropic-version", API_VERSION)] {
        if !overridden(name) {
            request = request.header(name, value);
        }
    }
    for (name, value) in &config.extra_headers {
        request = request.header(name.clone(), value.clone());
    }
    Ok(request)
}

/// Sends a request and returns the response if its status is a success.
fn send(config: &ProviderConfig, request: Request) -> Result<Response, ProviderError> {
    let mut response = http::send(authorized(config, request)?)?;
    if !(200..300).contains(&response.status) {
        let bytes = response.body.read_to_end(MAX_RESPONSE_BYTES)?;
        return Err(error::map_error(response.status, &response.headers, &bytes));
    }
    Ok(response)
}

/// POSTs a JSON body and reads the whole answer.
fn post(
    config: &ProviderConfig,
    path: &str,
    body: &Value,
) -> Result<(Response, Vec<u8>), ProviderError> {
    let url = join_url(&config.base_url, path);
    let mut response = send(config, Request::post_json(url, body))?;
    let bytes = response.body.read_to_end(MAX_RESPONSE_BYTES)?;
    Ok((response, bytes))
}

struct Claude;

impl Provider for Claude {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: ID.into(),
            name: "Anthropic Claude".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            default_base_url: "https://api.anthropic.com".into(),
            api_key_env: vec!["ANTHROPIC_API_KEY".into()],
            base_url_env: vec!["ANTHROPIC_BASE_URL".into()],
            hosts: vec!["api.anthropic.com".into()],
            models: models::catalogue(),
        }
    }

    fn chat(config: ProviderConfig, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let body = request::build_body(&request, false)?;
        let (response, bytes) = post(&config, MESSAGES_PATH, &body)?;
        response::parse_response(&request.model, &request.messages, &response.headers, &bytes)
    }

    fn stream(
        config: ProviderConfig,
        request: ChatRequest,
    ) -> Result<Box<dyn ChunkSource>, ProviderError> {
        let body = request::build_body(&request, true)?;
        let url = join_url(&config.base_url, MESSAGES_PATH);
        let outgoing = Request::post_json(url, &body).header("accept", "text/event-stream");
        let response = send(&config, outgoing)?;
        Ok(Box::new(stream::ClaudeStream::new(
            &request.model,
            request.messages,
            response,
        )))
    }

    fn count_tokens(
        config: ProviderConfig,
        model: String,
        input: TokenInput,
    ) -> Result<TokenCount, ProviderError> {
        if api_key(&config).is_none() {
            return tokens::count(models::ESTIMATE_ENCODING, &input, false);
        }
        let body = request::count_tokens_body(&model, &input)?;
        let (_, bytes) = post(&config, COUNT_TOKENS_PATH, &body)?;
        let counted = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("input_tokens").and_then(Value::as_u64))
            .ok_or_else(|| {
                ProviderError::Protocol(
                    "Claude's count_tokens answer has no input_tokens number".into(),
                )
            })?;
        Ok(TokenCount {
            tokens: u32::try_from(counted).unwrap_or(u32::MAX),
            estimated: false,
            encoding: VENDOR_ENCODING.into(),
        })
    }

    fn health_check(config: ProviderConfig) -> Result<HealthReport, ProviderError> {
        let url = join_url(&config.base_url, MODELS_PATH);
        let mut response = send(&config, Request::get(url))?;
        let bytes = response.body.read_to_end(MAX_RESPONSE_BYTES)?;
        let listed = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("data").and_then(Value::as_array).map(Vec::len))
            .and_then(|n| u32::try_from(n).ok());
        Ok(HealthReport {
            models_available: listed,
            detail: match listed {
                Some(n) => format!("{ID} answered; {n} models listed"),
                None => format!("{ID} answered"),
            },
        })
    }
}

export_provider!(Claude);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(key: Option<&str>, extra: &[(&str, &str)]) -> ProviderConfig {
        ProviderConfig {
            api_key: key.map(str::to_owned),
            base_url: "https://api.anthropic.com".into(),
            timeout_ms: 30_000,
            extra_headers: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn header<'a>(request: &'a Request, name: &str) -> Vec<&'a str> {
        request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn requests_carry_key_version_and_extra_headers() {
        let url = join_url("https://api.anthropic.com/", MESSAGES_PATH);
        assert_eq!(url, "https://api.anthropic.com/v1/messages");
        let request = authorized(
            &config(
                Some(" sk-ant-1 "),
                &[("anthropic-beta", "context-1m-2025-08-07")],
            ),
            Request::post_json(url, &serde_json::json!({})),
        )
        .expect("authorized");
        assert_eq!(header(&request, "x-api-key"), ["sk-ant-1"]);
        assert_eq!(header(&request, "anthropic-version"), [API_VERSION]);
        assert_eq!(header(&request, "content-type"), ["application/json"]);
        assert_eq!(
            header(&request, "anthropic-beta"),
            ["context-1m-2025-08-07"]
        );
        assert_eq!(request.timeout, Some(Duration::from_secs(30)));
    }

    #[test]
    fn extra_headers_replace_defaults() {
        let request = authorized(
            &config(Some("k"), &[("Anthropic-Version", "2099-01-01")]),
            Request::get("https://api.anthropic.com/v1/models".into()),
        )
        .expect("authorized");
        assert_eq!(header(&request, "anthropic-version"), ["2099-01-01"]);
    }

    #[test]
    fn missing_key_is_reported() {
        for key in [None, Some(""), Some("  ")] {
            let result = authorized(&config(key, &[]), Request::get("https://x/".into()));
            assert!(
                matches!(result, Err(ProviderError::ApiKeyMissing(ref m)) if m.contains("ANTHROPIC_API_KEY")),
                "{key:?}"
            );
        }
    }

    #[test]
    fn manifest() {
        let info = Claude::info();
        assert_eq!(info.id, "claude");
        assert_eq!(info.name, "Anthropic Claude");
        assert_eq!(info.default_base_url, "https://api.anthropic.com");
        assert_eq!(info.api_key_env, ["ANTHROPIC_API_KEY"]);
        assert_eq!(info.base_url_env, ["ANTHROPIC_BASE_URL"]);
        assert_eq!(info.hosts, ["api.anthropic.com"]);
        let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "claude-opus-5-5",
                "claude-sonnet-5-5",
                "claude-haiku-5-5",
                "claude-opus-4-5",
                "claude-opus-4-1",
                "claude-sonnet-4-5",
                "claude-sonnet-4",
                "claude-haiku-4-5",
                "claude-3-5-haiku-latest",
            ]
        );
    }
}
