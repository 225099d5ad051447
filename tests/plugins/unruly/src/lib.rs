//! A contract 0.2 plugin that misbehaves on request, for the host's tests
//! of the 0.2 path. The request's model selects what it does:
//!
//! - `spin`: loops forever in `prepare-chat` (the CPU limit must stop it);
//! - `hog`: allocates without bound in `prepare-chat` (the memory limit);
//! - `panic-parse`: panics in `parse-chat`, after the host sent the request;
//! - `panic-feed`: its stream decoder panics on the first events;
//! - `path`: prepares a request for the path given as the last message's
//!   text (the host must refuse one that names another host);
//! - `again`: asks for another request from every `parse-chat`, forever
//!   (the per-call request limit must stop it);
//! - anything else: answers `ok` from the vendor's status.

use llmhost_provider_sdk::types::{
    AuthScheme, Capabilities, ChatRequest, ChatResponse, ChatStep, Chunk, CountStep, FinishReason,
    HealthReport, HealthStep, HttpRequest, HttpResponse, ModelInfo, ProviderConfig, ProviderError,
    ProviderInfo, StreamFormat, StreamInput, TokenCount, TokenInput, Usage,
};
use llmhost_provider_sdk::{Provider, StreamDecode, export_provider, http, message_text, pricing};
use std::hint::black_box;

struct Unruly;

const MODELS: &[&str] = &[
    "ok",
    "spin",
    "hog",
    "panic-parse",
    "panic-feed",
    "path",
    "again",
];

fn models() -> Vec<ModelInfo> {
    MODELS
        .iter()
        .map(|id| ModelInfo {
            id: (*id).into(),
            display_name: (*id).into(),
            context_window: 1000,
            max_output_tokens: 100,
            pricing: pricing::flat(pricing::prices(1_000_000, 2_000_000, None, None)),
            capabilities: Capabilities::STREAMING,
            tokenizer: "o200k_base".into(),
            tokenizer_exact: false,
        })
        .collect()
}

/// A valid OpenAI chat request to the simulator, for the well-behaved
/// paths.
fn chat_request(stream: bool) -> HttpRequest {
    let body = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
    );
    HttpRequest {
        method: llmhost_provider_sdk::types::Method::Post,
        path: "/chat/completions".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into_bytes(),
    }
}

fn prepare(request: &ChatRequest, stream: bool) -> Result<HttpRequest, ProviderError> {
    match request.model.as_str() {
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        "hog" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(black_box(vec![1u8; 1 << 20]));
            }
        }
        "path" => {
            let path = request
                .messages
                .last()
                .map(message_text)
                .unwrap_or_default();
            Ok(http::get(&path))
        }
        _ => Ok(chat_request(stream)),
    }
}

fn answer(content: String) -> ChatResponse {
    ChatResponse {
        id: "unruly-1".into(),
        model: "ok".into(),
        content,
        reasoning_content: None,
        tool_calls: Vec::new(),
        parts: Vec::new(),
        finish_reason: FinishReason::Stop,
        usage: Usage {
            input_tokens: 1,
            output_tokens: 1,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            cache_write_hour_tokens: 0,
            reasoning_tokens: 0,
            estimated: false,
        },
        rate_limits: None,
        request_id: None,
    }
}

/// Text from each event's data; panics on input when asked to.
struct Decoder {
    panic: bool,
}

impl StreamDecode for Decoder {
    fn feed(&mut self, input: StreamInput) -> Result<Vec<Chunk>, ProviderError> {
        if self.panic {
            panic!("this decoder panics on the first events");
        }
        Ok(match input {
            StreamInput::Events(events) => events
                .into_iter()
                .filter(|e| e.data != "[DONE]")
                .map(|_| Chunk::Text("x".into()))
                .collect(),
            StreamInput::Bytes(_) => Vec::new(),
        })
    }

    fn finish(&mut self) -> Result<Vec<Chunk>, ProviderError> {
        Ok(vec![Chunk::Finish(FinishReason::Stop)])
    }
}

impl Provider for Unruly {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "unruly".into(),
            name: "Unruly test plugin".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            default_base_url: "https://unruly.invalid/v1".into(),
            api_key_env: Vec::new(),
            base_url_env: Vec::new(),
            hosts: vec!["unruly.invalid".into()],
            auth: AuthScheme::Bearer,
            key_optional: false,
            stream_format: StreamFormat::Sse,
            models: models(),
        }
    }

    fn prepare_chat(
        _config: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<HttpRequest, ProviderError> {
        prepare(request, false)
    }

    fn parse_chat(
        request: &ChatRequest,
        response: HttpResponse,
    ) -> Result<ChatStep, ProviderError> {
        match request.model.as_str() {
            "panic-parse" => panic!("this plugin panics while parsing"),
            "again" => Ok(ChatStep::Send(chat_request(false))),
            _ => Ok(ChatStep::Done(answer(format!(
                "status {}",
                response.status
            )))),
        }
    }

    fn prepare_stream(
        _config: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<HttpRequest, ProviderError> {
        prepare(request, true)
    }

    fn open_stream(
        request: &ChatRequest,
        _response: HttpResponse,
    ) -> Result<Box<dyn StreamDecode>, ProviderError> {
        Ok(Box::new(Decoder {
            panic: request.model == "panic-feed",
        }))
    }

    fn prepare_count_tokens(
        _config: &ProviderConfig,
        _model: &str,
        _input: &TokenInput,
    ) -> Result<CountStep, ProviderError> {
        Ok(CountStep::Done(TokenCount {
            tokens: 0,
            estimated: true,
            encoding: "none".into(),
        }))
    }

    fn prepare_health_check(_config: &ProviderConfig) -> Result<HttpRequest, ProviderError> {
        Ok(http::get("/models"))
    }

    fn parse_health_check(response: HttpResponse) -> Result<HealthStep, ProviderError> {
        Ok(HealthStep::Done(HealthReport {
            models_available: None,
            detail: format!("status {}", response.status),
        }))
    }
}

export_provider!(Unruly);
