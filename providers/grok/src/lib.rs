//! xAI Grok provider for llmhost, built as a WebAssembly component
//! (`wasm32-wasip2`).
//!
//! xAI speaks OpenAI's chat-completions protocol, so the protocol is the
//! SDK's OpenAI-compatible core with xAI's settings (`DIALECT`):
//!
//! - `max_completion_tokens`: xAI's API reference marks `max_tokens`
//!   deprecated in its favour, for every model.
//! - `reasoning_content` (grok-3-mini's visible thinking) surfaced beside
//!   the answer.
//! - `reasoning_effort` sent, but fitted per model in the body
//!   (`quirks::fit_reasoning_effort`): only grok-3-mini takes it.
//!
//! The core also keeps the usage xAI sends in the second-to-last stream
//! chunk (an empty chunk follows it) and counts xAI's reasoning tokens,
//! reported beside `completion_tokens` rather than inside, as output.
//! xAI's error messages refine the error mapping, in answers and in
//! streams (`quirks::refine_error`). The host sends every request with
//! the key as a bearer token; the plugin never sees it. xAI's tokenizer is
//! not tiktoken's, so token counts are estimates.

mod models;
mod quirks;

use llmhost_provider_sdk::openai_compat::{self, Dialect};
use llmhost_provider_sdk::types::{
    AuthScheme, ChatRequest, ChatStep, CountStep, HealthStep, HttpRequest, HttpResponse,
    ProviderConfig, ProviderError, ProviderInfo, StreamFormat, TokenInput,
};
use llmhost_provider_sdk::{Provider, StreamDecode, export_provider, tokens};

/// xAI's differences from OpenAI that the core handles itself.
static DIALECT: Dialect = Dialect {
    reasoning_field: Some("reasoning_content"),
    estimate_encoding: models::encoding_for,
    ..Dialect::openai("grok")
};

struct Grok;

impl Provider for Grok {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: DIALECT.provider.into(),
            name: "xAI Grok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            default_base_url: "https://api.x.ai/v1".into(),
            api_key_env: vec!["XAI_API_KEY".into(), "GROK_API_KEY".into()],
            base_url_env: vec!["XAI_BASE_URL".into()],
            hosts: vec!["api.x.ai".into()],
            auth: AuthScheme::Bearer,
            key_optional: false,
            stream_format: StreamFormat::Sse,
            models: models::catalogue(),
        }
    }

    fn prepare_chat(
        _config: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<HttpRequest, ProviderError> {
        let body = quirks::request_body(&DIALECT, request, false)?;
        openai_compat::prepare_chat_with_body(&DIALECT, request, body)
    }

    fn parse_chat(
        request: &ChatRequest,
        response: HttpResponse,
    ) -> Result<ChatStep, ProviderError> {
        openai_compat::parse_chat(&DIALECT, request, response).map_err(quirks::refine_error)
    }

    fn prepare_stream(
        _config: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<HttpRequest, ProviderError> {
        let body = quirks::request_body(&DIALECT, request, true)?;
        openai_compat::prepare_stream_with_body(&DIALECT, request, body)
    }

    fn open_stream(
        request: &ChatRequest,
        response: HttpResponse,
    ) -> Result<Box<dyn StreamDecode>, ProviderError> {
        let decoder = openai_compat::open_stream(&DIALECT, request, response)
            .map_err(quirks::refine_error)?;
        Ok(Box::new(quirks::GrokDecoder(decoder)))
    }

    fn prepare_count_tokens(
        _config: &ProviderConfig,
        model: &str,
        input: &TokenInput,
    ) -> Result<CountStep, ProviderError> {
        tokens::count(models::encoding_for(model), input, false).map(CountStep::Done)
    }

    fn prepare_health_check(config: &ProviderConfig) -> Result<HttpRequest, ProviderError> {
        openai_compat::prepare_health_check(&DIALECT, config)
    }

    fn parse_health_check(response: HttpResponse) -> Result<HealthStep, ProviderError> {
        openai_compat::parse_health_check(&DIALECT, response).map_err(quirks::refine_error)
    }
}

export_provider!(Grok);

#[cfg(test)]
mod tests;
