//! Test fixture: the OpenAI provider exactly as it was written for
//! contract 0.1, when plugins did their own HTTP over `wasi:http` and were
//! handed the API key. Frozen (with the 0.1 SDK beside it) so the host's
//! 0.1 path stays tested while the built-ins speak 0.2. Served under the
//! id `openai-v01`.

mod models;

use llmhost_provider_sdk::openai_compat::{self, Dialect};
use llmhost_provider_sdk::types::{
    ChatRequest, ChatResponse, HealthReport, ProviderConfig, ProviderError, ProviderInfo,
    TokenCount, TokenInput,
};
use llmhost_provider_sdk::{ChunkSource, Provider, export_provider, tokens};

const ID: &str = "openai-v01";

static DIALECT: Dialect = Dialect {
    provider: ID,
    chat_path: "/chat/completions",
    models_path: "/models",
    max_tokens_field: "max_completion_tokens",
    reasoning_field: None,
    stream_usage: true,
    reasoning_effort: true,
    estimate_encoding: models::encoding_for,
};

struct OpenAi;

impl Provider for OpenAi {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: ID.into(),
            name: "OpenAI (contract 0.1)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            default_base_url: "https://api.openai.com/v1".into(),
            api_key_env: vec!["OPENAI_API_KEY".into()],
            base_url_env: vec!["OPENAI_BASE_URL".into()],
            hosts: vec!["api.openai.com".into()],
            models: models::catalogue(),
        }
    }

    fn chat(config: ProviderConfig, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        openai_compat::chat(&DIALECT, &config, &request)
    }

    fn stream(
        config: ProviderConfig,
        request: ChatRequest,
    ) -> Result<Box<dyn ChunkSource>, ProviderError> {
        Ok(Box::new(openai_compat::stream(
            &DIALECT, &config, &request,
        )?))
    }

    fn count_tokens(
        _config: ProviderConfig,
        model: String,
        input: TokenInput,
    ) -> Result<TokenCount, ProviderError> {
        tokens::count(models::encoding_for(&model), &input, true)
    }

    fn health_check(config: ProviderConfig) -> Result<HealthReport, ProviderError> {
        openai_compat::health_check(&DIALECT, &config)
    }
}

export_provider!(OpenAi);
