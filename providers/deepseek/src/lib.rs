//! DeepSeek provider for llmhost, built as a WebAssembly component
//! (`wasm32-wasip2`).
//!
//! DeepSeek speaks OpenAI's chat-completions protocol, so the protocol is
//! the SDK's OpenAI-compatible core with DeepSeek's settings (`DIALECT`):
//! `max_tokens` rather than `max_completion_tokens`, no
//! `reasoning_effort`, and the thinking mode's `reasoning_content`
//! surfaced beside the answer, never inside it. The core already copes
//! with DeepSeek's zero-usage placeholders in streams (its `: keep-alive`
//! comments never reach the plugin: the host frames the events), blank
//! lines before a non-streamed body, and its 402 "Insufficient Balance" (a
//! permanent quota error). What the core's settings cannot say lives in
//! `quirks`. The host sends every request with the key as a bearer
//! token; the plugin never sees it. DeepSeek's tokenizer is not tiktoken's,
//! so token counts are estimates.

mod models;
mod quirks;

use llmhost_provider_sdk::openai_compat::{self, Dialect};
use llmhost_provider_sdk::types::{
    AuthScheme, ChatRequest, ChatStep, CountStep, HealthStep, HttpRequest, HttpResponse,
    ProviderConfig, ProviderError, ProviderInfo, StreamFormat, TokenInput,
};
use llmhost_provider_sdk::{Provider, StreamDecode, export_provider, tokens};

/// DeepSeek's differences from OpenAI that the core handles itself.
static DIALECT: Dialect = Dialect {
    max_tokens_field: "max_tokens",
    reasoning_field: Some("reasoning_content"),
    reasoning_effort: false,
    estimate_encoding: models::encoding_for,
    ..Dialect::openai("deepseek")
};

struct DeepSeek;

impl Provider for DeepSeek {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: DIALECT.provider.into(),
            name: "DeepSeek".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            default_base_url: "https://api.deepseek.com".into(),
            api_key_env: vec!["DEEPSEEK_API_KEY".into()],
            base_url_env: vec!["DEEPSEEK_BASE_URL".into()],
            hosts: vec!["api.deepseek.com".into()],
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
        Ok(Box::new(decoder))
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

export_provider!(DeepSeek);

#[cfg(test)]
mod tests;
