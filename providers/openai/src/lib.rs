//! OpenAI chat-completions provider for llmhost, built as a WebAssembly
//! component (`wasm32-wasip2`).
//!
//! The protocol is the SDK's OpenAI-compatible core; this crate adds
//! OpenAI's model catalogue and its token-counting rules. The host sends
//! every request with the key as a bearer token; the plugin never sees it.
//! Built with `LLMHOST_OPENAI_PROVIDER_ID=<id>` set, the same component
//! serves under another provider id, for a second OpenAI-compatible
//! endpoint (a proxy, an Azure deployment, a local server) configured
//! beside the real one.

mod models;

use llmhost_provider_sdk::openai_compat::{self, Dialect};
use llmhost_provider_sdk::types::{
    AuthScheme, ChatRequest, ChatStep, CountStep, HealthStep, HttpRequest, HttpResponse,
    ProviderConfig, ProviderError, ProviderInfo, StreamFormat, TokenInput,
};
use llmhost_provider_sdk::{Provider, StreamDecode, export_provider, tokens};

/// The provider id, overridable at build time.
const ID: &str = match option_env!("LLMHOST_OPENAI_PROVIDER_ID") {
    Some(id) => id,
    None => "openai",
};

static DIALECT: Dialect = Dialect {
    estimate_encoding: models::encoding_for,
    ..Dialect::openai(ID)
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
            auth: AuthScheme::Bearer,
            key_optional: false,
            stream_format: StreamFormat::Sse,
            models: models::catalogue(),
        }
    }

    fn prepare_chat(
        config: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<HttpRequest, ProviderError> {
        openai_compat::prepare_chat(&DIALECT, config, request)
    }

    fn parse_chat(
        request: &ChatRequest,
        response: HttpResponse,
    ) -> Result<ChatStep, ProviderError> {
        openai_compat::parse_chat(&DIALECT, request, response)
    }

    fn prepare_stream(
        config: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<HttpRequest, ProviderError> {
        openai_compat::prepare_stream(&DIALECT, config, request)
    }

    fn open_stream(
        request: &ChatRequest,
        response: HttpResponse,
    ) -> Result<Box<dyn StreamDecode>, ProviderError> {
        Ok(Box::new(openai_compat::open_stream(
            &DIALECT, request, response,
        )?))
    }

    fn prepare_count_tokens(
        _config: &ProviderConfig,
        model: &str,
        input: &TokenInput,
    ) -> Result<CountStep, ProviderError> {
        tokens::count(models::encoding_for(model), input, true).map(CountStep::Done)
    }

    fn prepare_health_check(config: &ProviderConfig) -> Result<HttpRequest, ProviderError> {
        openai_compat::prepare_health_check(&DIALECT, config)
    }

    fn parse_health_check(response: HttpResponse) -> Result<HealthStep, ProviderError> {
        openai_compat::parse_health_check(&DIALECT, response)
    }
}

export_provider!(OpenAi);

#[cfg(test)]
mod tests;
