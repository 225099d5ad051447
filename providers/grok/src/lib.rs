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
//! - `reasoning_effort` sent, but fitted per model first
//!   ([`quirks::fit_reasoning_effort`]): only grok-3-mini takes it.
//!
//! The core also keeps the usage xAI sends in the second-to-last stream
//! chunk (an empty chunk follows it) and counts xAI's reasoning tokens,
//! reported beside `completion_tokens` rather than inside, as output.
//! xAI's error messages refine the error mapping
//! ([`quirks::refine_error`]). xAI's tokenizer is not tiktoken's, so token
//! counts are estimates.

mod models;
mod quirks;

use llmhost_provider_sdk::openai_compat::{self, Dialect};
use llmhost_provider_sdk::types::{
    ChatRequest, ChatResponse, HealthReport, ProviderConfig, ProviderError, ProviderInfo,
    TokenCount, TokenInput,
};
use llmhost_provider_sdk::{ChunkSource, Provider, export_provider, tokens};

/// xAI's differences from OpenAI that the core handles itself.
static DIALECT: Dialect = Dialect {
    provider: "grok",
    chat_path: "/chat/completions",
    models_path: "/models",
    max_tokens_field: "max_completion_tokens",
    reasoning_field: Some("reasoning_content"),
    stream_usage: true,
    reasoning_effort: true,
    estimate_encoding: models::encoding_for,
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
            models: models::catalogue(),
        }
    }

    fn chat(config: ProviderConfig, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let request = quirks::fit_reasoning_effort(request);
        openai_compat::chat(&DIALECT, &config, &request).map_err(quirks::refine_error)
    }

    fn stream(
        config: ProviderConfig,
        request: ChatRequest,
    ) -> Result<Box<dyn ChunkSource>, ProviderError> {
        let request = quirks::fit_reasoning_effort(request);
        let stream =
            openai_compat::stream(&DIALECT, &config, &request).map_err(quirks::refine_error)?;
        Ok(Box::new(quirks::GrokStream(stream)))
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

export_provider!(Grok);

#[cfg(test)]
mod tests;
