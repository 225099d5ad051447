//! A provider plugin for llmhost: a vendor whose API speaks the OpenAI
//! chat-completions protocol. Start here and change what differs for your
//! vendor (see docs/plugin-guide.md in the llmhost repository).
//!
//! The plugin does no I/O: it prepares each HTTP request, the host sends
//! it (with the API key as a bearer token: the plugin never sees the key)
//! and hands back the answer, or the stream's events, to parse.

use llmhost_provider_sdk::openai_compat::{self, Dialect};
use llmhost_provider_sdk::pricing::{self, prices};
use llmhost_provider_sdk::types::{
    AuthScheme, Capabilities, ChatRequest, ChatStep, CountStep, HealthStep, HttpRequest,
    HttpResponse, ModelInfo, ProviderConfig, ProviderError, ProviderInfo, StreamFormat, TokenInput,
};
use llmhost_provider_sdk::{Provider, StreamDecode, export_provider, tokens, usd};

/// The provider id: what users pass as `--provider`. Letters, digits, `-`.
const ID: &str = "my-provider";

/// How this vendor's dialect of the protocol differs from OpenAI's.
static DIALECT: Dialect = Dialect {
    max_tokens_field: "max_tokens",
    reasoning_effort: false,
    estimate_encoding: |_model| "cl100k_base",
    ..Dialect::openai(ID)
};

/// The vendor's models and their prices (US dollars per million tokens:
/// input, output, cache reads, cache writes).
fn models() -> Vec<ModelInfo> {
    vec![ModelInfo {
        id: "my-model-small".into(),
        display_name: "My Model Small".into(),
        context_window: 128_000,
        max_output_tokens: 8_192,
        pricing: pricing::flat(prices(usd(0, 200_000), usd(0, 800_000), None, None)),
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
            // Every host the plugin's requests go to: HTTPS, public
            // addresses only.
            hosts: vec!["api.my-provider.example".into()],
            // The host sends the key as `authorization: Bearer <key>`.
            auth: AuthScheme::Bearer,
            key_optional: false,
            // The host frames the stream's server-sent events.
            stream_format: StreamFormat::Sse,
            models: models(),
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
        _model: &str,
        input: &TokenInput,
    ) -> Result<CountStep, ProviderError> {
        // Counted by the host's tokenizer, without a request; flagged as an
        // estimate because cl100k_base is not this vendor's own tokenizer.
        tokens::count("cl100k_base", input, false).map(CountStep::Done)
    }

    fn prepare_health_check(config: &ProviderConfig) -> Result<HttpRequest, ProviderError> {
        openai_compat::prepare_health_check(&DIALECT, config)
    }

    fn parse_health_check(response: HttpResponse) -> Result<HealthStep, ProviderError> {
        openai_compat::parse_health_check(&DIALECT, response)
    }
}

export_provider!(MyProvider);

/// The plugin is pure, so its tests run natively: `cargo test`.
#[cfg(test)]
mod tests {
    use super::*;
    use llmhost_provider_sdk::types::{ContentPart, Message, Role, SseEvent, StreamInput};

    fn request() -> ChatRequest {
        ChatRequest {
            model: "my-model-small".into(),
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentPart::Text("Hello".into())],
                name: None,
                cache_breakpoint: false,
            }],
            temperature: None,
            max_tokens: Some(64),
            top_p: None,
            stop: Vec::new(),
            tools: Vec::new(),
            tool_choice: None,
            response_format: None,
            reasoning: None,
            user: None,
            vendor_params: None,
        }
    }

    fn config() -> ProviderConfig {
        ProviderConfig {
            base_url: "https://api.my-provider.example/v1".into(),
            key_configured: true,
            api_key: None,
            request_id: "req-1".into(),
            idempotency_key: "idem-1".into(),
        }
    }

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_chat_is_prepared_and_its_answer_parsed() {
        let prepared = MyProvider::prepare_chat(&config(), &request()).expect("prepares");
        assert_eq!(prepared.path, "/chat/completions");
        let body: serde_json::Value = serde_json::from_slice(&prepared.body).expect("JSON");
        assert_eq!(body["max_tokens"], 64);
        let answer = r#"{"id":"c1","model":"my-model-small","choices":[{"index":0,
            "message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
        let Ok(ChatStep::Done(chat)) = MyProvider::parse_chat(&request(), response(200, answer))
        else {
            panic!("expected an answer");
        };
        assert_eq!(chat.content, "Hi");
        assert!(matches!(
            MyProvider::parse_chat(&request(), response(401, "{}")),
            Err(ProviderError::Authentication(_))
        ));
    }

    #[test]
    fn a_stream_decodes_the_events_the_host_frames() {
        let mut decoder = MyProvider::open_stream(&request(), response(200, "")).expect("opens");
        let events = [
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}"#,
            r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#,
            "[DONE]",
        ]
        .map(|data| SseEvent {
            event: None,
            data: data.into(),
            id: None,
        });
        let chunks = decoder
            .feed(StreamInput::Events(events.to_vec()))
            .expect("decodes");
        assert_eq!(chunks.len(), 4, "start, text, finish, usage: {chunks:?}");
        assert_eq!(decoder.finish(), Ok(Vec::new()));
    }
}
