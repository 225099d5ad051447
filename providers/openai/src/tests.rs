//! OpenAI's settings through the core: the manifest, the prepared
//! requests and a streamed answer, as the host drives them.

use super::{DIALECT, OpenAi};
use llmhost_provider_sdk::Provider;
use llmhost_provider_sdk::types::{
    AuthScheme, ChatRequest, ChatStep, Chunk, ContentPart, FinishReason, HttpResponse, Message,
    Method, ProviderConfig, ProviderError, ReasoningConfig, ReasoningEffort, Role, SseEvent,
    StreamFormat, StreamInput,
};
use serde_json::{Value, json};

fn config() -> ProviderConfig {
    ProviderConfig {
        base_url: "https://api.openai.com/v1".into(),
        key_configured: true,
        api_key: None,
        request_id: "req-1".into(),
        idempotency_key: "idem-1".into(),
    }
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "gpt-5-mini".into(),
        messages: vec![Message {
            role: Role::User,
            content: vec![ContentPart::Text("Hello".into())],
            name: None,
            cache_breakpoint: false,
        }],
        temperature: None,
        max_tokens: Some(256),
        top_p: None,
        stop: Vec::new(),
        tools: Vec::new(),
        tool_choice: None,
        response_format: None,
        reasoning: Some(ReasoningConfig {
            budget_tokens: None,
            effort: Some(ReasoningEffort::Minimal),
        }),
        user: Some("u-1".into()),
        vendor_params: Some(r#"{"service_tier": "flex"}"#.into()),
    }
}

fn response(status: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("x-request-id".into(), "req_abc".into())],
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn the_manifest_asks_for_a_bearer_key_and_frames_sse() {
    let info = OpenAi::info();
    assert_eq!(info.id, "openai");
    assert_eq!(info.auth, AuthScheme::Bearer);
    assert_eq!(info.stream_format, StreamFormat::Sse);
    assert_eq!(info.hosts, vec!["api.openai.com".to_string()]);
    assert_eq!(info.default_base_url, "https://api.openai.com/v1");
    assert!(info.models.iter().any(|m| m.id == "gpt-4o-mini"));
}

#[test]
fn a_chat_body_speaks_openai() {
    let prepared = OpenAi::prepare_chat(&config(), &request()).expect("prepares");
    assert_eq!(
        (prepared.method, prepared.path.as_str()),
        (Method::Post, "/chat/completions")
    );
    let body: Value = serde_json::from_slice(&prepared.body).expect("JSON");
    assert_eq!(
        body,
        json!({
            "model": "gpt-5-mini",
            "messages": [{"role": "user", "content": "Hello"}],
            "max_completion_tokens": 256,
            "reasoning_effort": "minimal",
            "user": "u-1",
            "service_tier": "flex",
        })
    );
}

#[test]
fn a_chat_answer_and_an_error_are_parsed() {
    let answer = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-5-mini-2025-08-07",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!", "refusal": null},
            "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 40, "total_tokens": 48,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 32}}
    });
    let Ok(ChatStep::Done(chat)) =
        OpenAi::parse_chat(&request(), response(200, &answer.to_string()))
    else {
        panic!("expected an answer");
    };
    assert_eq!(chat.content, "Hi!");
    assert_eq!(
        (chat.usage.output_tokens, chat.usage.reasoning_tokens),
        (40, 32)
    );
    assert_eq!(chat.request_id.as_deref(), Some("req_abc"));
    let quota = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
    assert!(matches!(
        OpenAi::parse_chat(&request(), response(429, quota)),
        Err(ProviderError::QuotaExhausted(detail)) if detail.request_id.as_deref() == Some("req_abc")
    ));
}

#[test]
fn a_stream_is_prepared_opened_and_decoded() {
    let prepared = OpenAi::prepare_stream(&config(), &request()).expect("prepares");
    let body: Value = serde_json::from_slice(&prepared.body).expect("JSON");
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    let mut decoder = OpenAi::open_stream(&request(), response(200, "")).expect("opens");
    let events = [
        r#"{"id":"c","model":"gpt-5-mini","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}],"usage":null}"#,
        r#"{"id":"c","choices":[],"usage":{"prompt_tokens":8,"completion_tokens":1,"total_tokens":9}}"#,
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
    assert!(
        matches!(&chunks[..], [
            Chunk::Start(start),
            Chunk::Text(text),
            Chunk::Finish(FinishReason::Stop),
            Chunk::Usage(usage),
        ] if start.request_id.as_deref() == Some("req_abc") && text == "Hi" && usage.input_tokens == 8),
        "{chunks:?}"
    );
    assert_eq!(decoder.finish(), Ok(Vec::new()));
    assert!(matches!(
        OpenAi::open_stream(&request(), response(500, "oops")),
        Err(ProviderError::ServerError(_))
    ));
}

#[test]
fn legacy_models_count_with_cl100k() {
    assert_eq!(super::models::encoding_for("gpt-4-turbo"), "cl100k_base");
    assert_eq!(super::models::encoding_for("gpt-3.5-turbo"), "cl100k_base");
    assert_eq!(super::models::encoding_for("gpt-4o"), "o200k_base");
    assert_eq!(super::models::encoding_for("gpt-6-sol"), "o200k_base");
    assert_eq!((DIALECT.estimate_encoding)("gpt-4"), "cl100k_base");
}
