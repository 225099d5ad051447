//! Anthropic Claude provider for llmhost (the Messages API), built as a
//! WebAssembly component (`wasm32-wasip2`).
//!
//! The plugin translates; the host does the I/O. It prepares Messages API
//! requests (the host sends them, adding the key as `x-api-key` and the
//! operator's extra headers) and reads the answers back. The protocol is
//! Anthropic's own, not the OpenAI-compatible core: `request` lifts system
//! prompts into the top-level field and merges turns so roles alternate,
//! `response` and `stream` read content blocks and named SSE events (framed
//! by the host), `error` maps Anthropic's error types, and `limits` reads
//! its `anthropic-ratelimit-*` headers. Token counts come from Anthropic's
//! `count_tokens` endpoint when a key is configured, else from a local
//! estimate: Claude's tokenizer is not public.

mod error;
mod limits;
mod models;
mod request;
mod response;
mod stream;

use llmhost_provider_sdk::http::{self, Headers};
use llmhost_provider_sdk::types::{
    AuthScheme, ChatRequest, ChatStep, CountStep, HealthReport, HealthStep, HttpRequest,
    HttpResponse, ProviderConfig, ProviderError, ProviderInfo, StreamFormat, TokenCount,
    TokenInput,
};
use llmhost_provider_sdk::{Provider, StreamDecode, export_provider, tokens};
use serde_json::Value;

const ID: &str = "claude";
/// The Messages API version this plugin speaks; an operator's configured
/// `anthropic-version` header replaces it.
const API_VERSION: &str = "2023-06-01";
const MESSAGES_PATH: &str = "/v1/messages";
const COUNT_TOKENS_PATH: &str = "/v1/messages/count_tokens";
/// Asks for the largest page Anthropic serves, so the health check's count
/// is the whole list.
const MODELS_PATH: &str = "/v1/models?limit=1000";
/// The encoding name reported for counts Anthropic made itself.
const VENDOR_ENCODING: &str = "anthropic";

/// A request with the API version header every Messages API call carries.
fn versioned(request: HttpRequest) -> HttpRequest {
    http::with_header(request, "anthropic-version", API_VERSION)
}

/// The request for `POST /v1/messages`; `stream` asks for SSE.
fn messages_request(request: &ChatRequest, stream: bool) -> Result<HttpRequest, ProviderError> {
    let body = request::build_body(request, stream)?;
    let prepared = versioned(http::post_json(MESSAGES_PATH, &body));
    Ok(if stream {
        http::with_header(prepared, "accept", "text/event-stream")
    } else {
        prepared
    })
}

/// The response's headers, or its status and body mapped to an error when
/// the status is not a success.
fn checked(response: &HttpResponse) -> Result<Headers, ProviderError> {
    let headers = Headers::from_response(response);
    if !http::is_success(response.status) {
        return Err(error::map_error(response.status, &headers, &response.body));
    }
    Ok(headers)
}

/// Reads the count in a `count_tokens` answer.
fn parse_count(response: &HttpResponse) -> Result<TokenCount, ProviderError> {
    checked(response)?;
    let counted = serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|v| v.get("input_tokens").and_then(Value::as_u64))
        .ok_or_else(|| {
            ProviderError::Protocol(
                "Claude's count_tokens answer has no input_tokens number".into(),
            )
        })?;
    Ok(TokenCount {
        tokens: u32::try_from(counted).unwrap_or(u32::MAX),
        estimated: false,
        encoding: VENDOR_ENCODING.into(),
    })
}

/// Reads the model list the health check asked for.
fn parse_health(response: &HttpResponse) -> Result<HealthReport, ProviderError> {
    checked(response)?;
    let listed = serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|v| v.get("data").and_then(Value::as_array).map(Vec::len))
        .and_then(|n| u32::try_from(n).ok());
    Ok(HealthReport {
        models_available: listed,
        detail: match listed {
            Some(n) => format!("{ID} answered; {n} models listed"),
            None => format!("{ID} answered"),
        },
    })
}

/// The Claude provider.
struct Claude;

impl Provider for Claude {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: ID.into(),
            name: "Anthropic Claude".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            default_base_url: "https://api.anthropic.com".into(),
            api_key_env: vec!["ANTHROPIC_API_KEY".into()],
            base_url_env: vec!["ANTHROPIC_BASE_URL".into()],
            hosts: vec!["api.anthropic.com".into()],
            auth: AuthScheme::Header("x-api-key".into()),
            key_optional: false,
            stream_format: StreamFormat::Sse,
            models: models::catalogue(),
        }
    }

    fn prepare_chat(
        _config: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<HttpRequest, ProviderError> {
        messages_request(request, false)
    }

    fn parse_chat(
        request: &ChatRequest,
        response: HttpResponse,
    ) -> Result<ChatStep, ProviderError> {
        let headers = checked(&response)?;
        response::parse_response(&request.model, &request.messages, &headers, &response.body)
            .map(ChatStep::Done)
    }

    fn prepare_stream(
        _config: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<HttpRequest, ProviderError> {
        messages_request(request, true)
    }

    fn open_stream(
        request: &ChatRequest,
        response: HttpResponse,
    ) -> Result<Box<dyn StreamDecode>, ProviderError> {
        let headers = checked(&response)?;
        Ok(Box::new(stream::StreamState::new(
            &request.model,
            request.messages.clone(),
            &headers,
        )))
    }

    fn prepare_count_tokens(
        config: &ProviderConfig,
        model: &str,
        input: &TokenInput,
    ) -> Result<CountStep, ProviderError> {
        if !config.key_configured {
            return tokens::count(models::ESTIMATE_ENCODING, input, false).map(CountStep::Done);
        }
        let body = request::count_tokens_body(model, input)?;
        Ok(CountStep::Send(versioned(http::post_json(
            COUNT_TOKENS_PATH,
            &body,
        ))))
    }

    fn parse_count_tokens(
        _model: &str,
        _input: &TokenInput,
        response: HttpResponse,
    ) -> Result<CountStep, ProviderError> {
        parse_count(&response).map(CountStep::Done)
    }

    fn prepare_health_check(_config: &ProviderConfig) -> Result<HttpRequest, ProviderError> {
        Ok(versioned(http::get(MODELS_PATH)))
    }

    fn parse_health_check(response: HttpResponse) -> Result<HealthStep, ProviderError> {
        parse_health(&response).map(HealthStep::Done)
    }
}

export_provider!(Claude);

#[cfg(test)]
mod tests {
    use super::*;
    use llmhost_provider_sdk::types::{ContentPart, Message, Method, Role, SseEvent, StreamInput};
    use serde_json::json;

    const SECRET: &str = "sk-ant-secret-0123456789";

    /// A configuration as the host hands it over; `api_key` is set although
    /// Claude's scheme never grants it, to show nothing reads it.
    fn config(key_configured: bool) -> ProviderConfig {
        ProviderConfig {
            base_url: "https://api.anthropic.com".into(),
            key_configured,
            api_key: Some(SECRET.into()),
            request_id: "req-host-1".into(),
            idempotency_key: "idem-1".into(),
        }
    }

    fn chat_request() -> ChatRequest {
        ChatRequest {
            model: "claude-haiku-4-5".into(),
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentPart::Text("Hi".into())],
                name: None,
                cache_breakpoint: false,
            }],
            temperature: None,
            max_tokens: Some(100),
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

    fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }
    }

    fn header<'a>(request: &'a HttpRequest, name: &str) -> Vec<&'a str> {
        request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn body(request: &HttpRequest) -> Value {
        serde_json::from_slice(&request.body).expect("the body is JSON")
    }

    /// Fails if the key shows up anywhere in what the plugin prepared.
    fn assert_keyless(request: &HttpRequest) {
        assert!(!request.path.contains(SECRET));
        for (name, value) in &request.headers {
            assert!(!value.contains(SECRET), "{name}");
            assert!(!name.eq_ignore_ascii_case("x-api-key"), "{name}");
        }
        assert!(!String::from_utf8_lossy(&request.body).contains(SECRET));
    }

    #[test]
    fn chat_request_is_described_for_the_host_to_send() {
        let prepared = Claude::prepare_chat(&config(true), &chat_request()).expect("prepared");
        assert_eq!(prepared.method, Method::Post);
        assert_eq!(prepared.path, "/v1/messages");
        assert_eq!(header(&prepared, "anthropic-version"), [API_VERSION]);
        assert_eq!(header(&prepared, "content-type"), ["application/json"]);
        assert!(header(&prepared, "accept").is_empty());
        assert_eq!(
            body(&prepared),
            json!({
                "model": "claude-haiku-4-5",
                "max_tokens": 100,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            })
        );
        assert_keyless(&prepared);
    }

    #[test]
    fn stream_request_asks_for_events() {
        let prepared = Claude::prepare_stream(&config(true), &chat_request()).expect("prepared");
        assert_eq!(prepared.path, "/v1/messages");
        assert_eq!(header(&prepared, "accept"), ["text/event-stream"]);
        assert_eq!(header(&prepared, "anthropic-version"), [API_VERSION]);
        assert_eq!(body(&prepared)["stream"], json!(true));
        assert_keyless(&prepared);
    }

    #[test]
    fn invalid_requests_are_refused_before_anything_is_sent() {
        let mut request = chat_request();
        request.model = " ".into();
        assert!(matches!(
            Claude::prepare_chat(&config(true), &request),
            Err(ProviderError::InvalidRequest(_))
        ));
        assert!(matches!(
            Claude::prepare_stream(&config(true), &request),
            Err(ProviderError::InvalidRequest(_))
        ));
    }

    #[test]
    fn chat_answer_is_parsed_with_its_request_id() {
        let answer = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "Hello"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 8, "output_tokens": 2},
        });
        let step = Claude::parse_chat(
            &chat_request(),
            response(
                200,
                &[("request-id", "req_abc")],
                answer.to_string().as_bytes(),
            ),
        )
        .expect("parsed");
        let ChatStep::Done(answer) = step else {
            panic!("expected an answer, got {step:?}");
        };
        assert_eq!(answer.content, "Hello");
        assert_eq!(answer.request_id.as_deref(), Some("req_abc"));
        assert_eq!(answer.usage.input_tokens, 8);
    }

    #[test]
    fn chat_failures_are_mapped_with_status_and_retry_after() {
        let error = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        let result = Claude::parse_chat(
            &chat_request(),
            response(
                529,
                &[("request-id", "req_x"), ("retry-after", "3")],
                error.to_string().as_bytes(),
            ),
        );
        let Err(ProviderError::Overloaded(detail)) = result else {
            panic!("expected overloaded, got {result:?}");
        };
        assert_eq!(detail.status, Some(529));
        assert_eq!(detail.request_id.as_deref(), Some("req_x"));
        assert_eq!(detail.retry_after_ms, Some(3_000));
    }

    #[test]
    fn stream_opens_on_success_and_maps_failures() {
        let error = json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}});
        let refused = Claude::open_stream(
            &chat_request(),
            response(401, &[], error.to_string().as_bytes()),
        );
        assert!(matches!(refused, Err(ProviderError::Authentication(_))));

        let mut decoder = Claude::open_stream(
            &chat_request(),
            response(200, &[("request-id", "req_s")], b""),
        )
        .expect("opened");
        let event = |name: &str, data: Value| SseEvent {
            event: Some(name.into()),
            data: data.to_string(),
            id: None,
        };
        let chunks = decoder
            .feed(StreamInput::Events(vec![
                event(
                    "message_start",
                    json!({"type": "message_start", "message": {"id": "msg_s", "model": "claude-haiku-4-5",
                        "usage": {"input_tokens": 3, "output_tokens": 1}}}),
                ),
                event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
                event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
                ),
            ]))
            .expect("decoded");
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        assert!(
            matches!(&chunks[0], llmhost_provider_sdk::types::Chunk::Start(s) if s.request_id.as_deref() == Some("req_s"))
        );
        assert!(matches!(
            decoder.finish(),
            Err(ProviderError::Protocol(m)) if m.contains("message_stop")
        ));
    }

    #[test]
    fn tokens_are_counted_by_anthropic_when_a_key_is_configured() {
        let input = TokenInput::Text("hello".into());
        let step = Claude::prepare_count_tokens(&config(true), "claude-haiku-4-5", &input)
            .expect("prepared");
        let CountStep::Send(prepared) = step else {
            panic!("expected a request to Anthropic, got {step:?}");
        };
        assert_eq!(prepared.method, Method::Post);
        assert_eq!(prepared.path, "/v1/messages/count_tokens");
        assert_eq!(header(&prepared, "anthropic-version"), [API_VERSION]);
        assert_eq!(body(&prepared)["model"], "claude-haiku-4-5");
        assert_keyless(&prepared);

        let counted = Claude::parse_count_tokens(
            "claude-haiku-4-5",
            &input,
            response(200, &[], br#"{"input_tokens": 42}"#),
        )
        .expect("parsed");
        let CountStep::Done(count) = counted else {
            panic!("expected a count, got {counted:?}");
        };
        assert_eq!(count.tokens, 42);
        assert!(!count.estimated);
        assert_eq!(count.encoding, "anthropic");
    }

    #[test]
    fn count_tokens_failures() {
        let input = TokenInput::Text("hello".into());
        let parse = |status, body: &[u8]| {
            Claude::parse_count_tokens("claude-haiku-4-5", &input, response(status, &[], body))
        };
        assert!(matches!(
            parse(200, br#"{"tokens": 42}"#),
            Err(ProviderError::Protocol(_))
        ));
        assert!(matches!(
            parse(200, b"not json"),
            Err(ProviderError::Protocol(_))
        ));
        let error =
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}});
        assert!(matches!(
            parse(429, error.to_string().as_bytes()),
            Err(ProviderError::RateLimited(_))
        ));
        assert!(matches!(
            Claude::prepare_count_tokens(&config(true), "", &input),
            Err(ProviderError::InvalidRequest(_))
        ));
    }

    #[test]
    fn health_check_lists_models() {
        let prepared = Claude::prepare_health_check(&config(true)).expect("prepared");
        assert_eq!(prepared.method, Method::Get);
        assert_eq!(prepared.path, "/v1/models?limit=1000");
        assert_eq!(header(&prepared, "anthropic-version"), [API_VERSION]);
        assert!(prepared.body.is_empty());
        assert_keyless(&prepared);

        let listed = json!({"data": [{"id": "a"}, {"id": "b"}], "has_more": false});
        let step = Claude::parse_health_check(response(200, &[], listed.to_string().as_bytes()))
            .expect("healthy");
        let HealthStep::Done(report) = step else {
            panic!("expected a report, got {step:?}");
        };
        assert_eq!(report.models_available, Some(2));
        assert_eq!(report.detail, "claude answered; 2 models listed");

        let step = Claude::parse_health_check(response(200, &[], b"{}")).expect("healthy");
        assert!(matches!(
            step,
            HealthStep::Done(HealthReport {
                models_available: None,
                ..
            })
        ));

        let error = json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}});
        assert!(matches!(
            Claude::parse_health_check(response(401, &[], error.to_string().as_bytes())),
            Err(ProviderError::Authentication(_))
        ));
    }

    #[test]
    fn manifest() {
        let info = Claude::info();
        assert_eq!(info.id, "claude");
        assert_eq!(info.name, "Anthropic Claude");
        assert_eq!(info.default_base_url, "https://api.anthropic.com");
        assert_eq!(info.api_key_env, ["ANTHROPIC_API_KEY"]);
        assert_eq!(info.base_url_env, ["ANTHROPIC_BASE_URL"]);
        assert_eq!(info.hosts, ["api.anthropic.com"]);
        assert!(matches!(&info.auth, AuthScheme::Header(name) if name == "x-api-key"));
        assert!(matches!(info.stream_format, StreamFormat::Sse));
        let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "claude-opus-5-5",
                "claude-sonnet-5-5",
                "claude-haiku-5-5",
                "claude-opus-4-5",
                "claude-opus-4-1",
                "claude-sonnet-4-5",
                "claude-sonnet-4",
                "claude-haiku-4-5",
                "claude-3-5-haiku-latest",
            ]
        );
    }
}
