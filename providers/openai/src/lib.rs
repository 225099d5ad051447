//! OpenAI chat-completions provider for llmhost, built as a WebAssembly
//! component (`wasm32-wasip2`).
//!
//! The protocol is the SDK's OpenAI-compatible core; this crate adds
//! OpenAI's model catalogue and its token-counting rules. Built with
//! `LLMHOST_OPENAI_PROVIDER_ID=<id>` set, the same component serves under
//! another provider id, for a second OpenAI-compatible endpoint (a proxy,
//! an Azure deployment, a local server) configured beside the real one.

mod models;

use llmhost_provider_sdk::openai_compat::{self, Dialect};
use llmhost_provider_sdk::types::{
    ChatRequest, ChatResponse, HealthReport, ProviderConfig, ProviderError, ProviderInfo,
    TokenCount, TokenInput,
};
use llmhost_provider_sdk::{ChunkSource, Provider, export_provider, tokens};

/// The provider id, overridable at build time.
const ID: &str = match option_env!("LLMHOST_OPENAI_PROVIDER_ID") {
    Some(id) => id,
    None => "openai",
};

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
            name: if ID == "openai" {
                "OpenAI".into()
            } else {
                format!("OpenAI-compatible ({ID})")
            },
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
