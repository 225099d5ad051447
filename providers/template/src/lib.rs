//! A provider plugin for llmhost: a vendor whose API speaks the OpenAI
//! chat-completions protocol. Start here and change what differs for your
//! vendor (see docs/plugin-guide.md in the llmhost repository).

use llmhost_provider_sdk::openai_compat::{self, Dialect};
use llmhost_provider_sdk::types::{
    Capabilities, ChatRequest, ChatResponse, HealthReport, ModelInfo, Pricing, ProviderConfig,
    ProviderError, ProviderInfo, TokenCount, TokenInput,
};
use llmhost_provider_sdk::{ChunkSource, Provider, export_provider, tokens, usd};

/// The provider id: what users pass as `--provider`. Letters, digits, `-`.
const ID: &str = "my-provider";

/// How this vendor's dialect of the protocol differs.
static DIALECT: Dialect = Dialect {
    provider: ID,
    chat_path: "/chat/completions",
    models_path: "/models",
    max_tokens_field: "max_tokens",
    reasoning_field: None,
    stream_usage: true,
    reasoning_effort: false,
    estimate_encoding: |_model| "cl100k_base",
};

/// The vendor's models and their prices (US dollars per million tokens).
fn models() -> Vec<ModelInfo> {
    vec![ModelInfo {
        id: "my-model-small".into(),
        display_name: "My Model Small".into(),
        context_window: 128_000,
        max_output_tokens: 8_192,
        pricing: Pricing {
            input: usd(0, 200_000),
            output: usd(0, 800_000),
            cache_read: None,
            cache_write: None,
        },
        capabilities: Capabilities::STREAMING | Capabilities::TEMPERATURE,
        tokenizer: "cl100k_base".into(),
        tokenizer_exact: false,
    }]
}

struct MyProvider;

impl Provider for MyProvider {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: ID.into(),
            name: "My Provider".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            default_base_url: "https://api.my-provider.example/v1".into(),
            // Where the key and base URL come from. Every installed plugin
            // may read its own LLMHOST_<ID>_API_KEY / _BASE_URL; any other
            // variable named here is granted only if the operator names it
            // at install (`--allow-env`), and llmhost's own never are.
            api_key_env: vec!["LLMHOST_MY_PROVIDER_API_KEY".into()],
            base_url_env: vec!["LLMHOST_MY_PROVIDER_BASE_URL".into()],
            // Every host the plugin calls: HTTPS, public addresses only.
            hosts: vec!["api.my-provider.example".into()],
            models: models(),
        }
    }

    fn chat(config: ProviderConfig, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        openai_compat::chat(&DIALECT, &config, &request)
    }

    fn stream(
        config: ProviderConfig,
        request: ChatRequest,
    ) -> Result<Box<dyn ChunkSource>, ProviderError> {
        Ok(Box::new(openai_compat::stream(&DIALECT, &config, &request)?))
    }

    fn count_tokens(
        _config: ProviderConfig,
        _model: String,
        input: TokenInput,
    ) -> Result<TokenCount, ProviderError> {
        // Counted by the host's tokenizer; flagged as an estimate because
        // cl100k_base is not this vendor's own tokenizer.
        tokens::count("cl100k_base", &input, false)
    }

    fn health_check(config: ProviderConfig) -> Result<HealthReport, ProviderError> {
        openai_compat::health_check(&DIALECT, &config)
    }
}

export_provider!(MyProvider);
