//! DeepSeek provider for llmhost, built as a WebAssembly component
//! (`wasm32-wasip2`).
//!
//! DeepSeek speaks OpenAI's chat-completions protocol, so the protocol is
//! the SDK's OpenAI-compatible core with DeepSeek's settings (`DIALECT`):
//! `max_tokens` rather than `max_completion_tokens`, no
//! `reasoning_effort`, and the thinking mode's `reasoning_content`
//! surfaced beside the answer, never inside it. The core already copes
//! with DeepSeek's `: keep-alive` comments and zero-usage placeholders in
//! streams, blank lines before a non-streamed body, and its 402
//! "Insufficient Balance" (a permanent quota error). What the core's
//! settings cannot say lives in [`quirks`]. DeepSeek's tokenizer is not
//! tiktoken's, so token counts are estimates.

mod models;
mod quirks;

use llmhost_provider_sdk::openai_compat::{self, Dialect};
use llmhost_provider_sdk::types::{
    ChatRequest, ChatResponse, HealthReport, ProviderConfig, ProviderError, ProviderInfo,
    TokenCount, TokenInput,
};
use llmhost_provider_sdk::{ChunkSource, Provider, export_provider, tokens};

/// DeepSeek's differences from OpenAI that the core handles itself.
static DIALECT: Dialect = Dialect {
    provider: "deepseek",
    chat_path: "/chat/completions",
    models_path: "/models",
    max_tokens_field: "max_tokens",
    reasoning_field: Some("reasoning_content"),
    stream_usage: true,
    reasoning_effort: false,
    estimate_encoding: models::encoding_for,
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
            models: models::catalogue(),
        }
    }

    fn chat(config: ProviderConfig, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let body = quirks::request_body(&DIALECT, &request, false)?;
        openai_compat::chat_with_body(&DIALECT, &config, &request, &body)
            .map_err(quirks::refine_error)
    }

    fn stream(
        config: ProviderConfig,
        request: ChatRequest,
    ) -> Result<Box<dyn ChunkSource>, ProviderError> {
        let body = quirks::request_body(&DIALECT, &request, true)?;
        let stream = openai_compat::stream_with_body(&DIALECT, &config, &request, &body)
            .map_err(quirks::refine_error)?;
        Ok(Box::new(stream))
    }

    fn count_tokens(
        _config: ProviderConfig,
        model: String,
        input: TokenInput,
    ) -> Result<TokenCount, ProviderError> {
        tokens::count(models::encoding_for(&model), &input, false)
    }

    fn health_check(config: ProviderConfig) -> Result<HealthReport, ProviderError> {
        openai_compat::health_check(&DIALECT, &config).map_err(quirks::refine_error)
    }
}

export_provider!(DeepSeek);

#[cfg(test)]
mod tests;
