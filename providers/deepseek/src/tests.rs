//! DeepSeek's wire behaviour through the core: request bodies, responses,
//! streams and errors, fed as DeepSeek sends them.

use super::{DIALECT, DeepSeek, quirks};
use llmhost_provider_sdk::Provider;
use llmhost_provider_sdk::http::Headers;
use llmhost_provider_sdk::openai_compat;
use llmhost_provider_sdk::types::{
    AuthScheme, ChatRequest, ChatStep, Chunk, ContentPart, FinishReason, HttpResponse, Message,
    ProviderConfig, ProviderError, ReasoningConfig, ReasoningEffort, Role, SseEvent, StreamFormat,
    StreamInput, Thinking, ToolCall, ToolResult,
};
use serde_json::{Value, json};

fn message(role: Role, content: Vec<ContentPart>) -> Message {
    Message {
        role,
        content,
        name: None,
        cache_breakpoint: false,
    }
}

fn text(role: Role, text: &str) -> Message {
    message(role, vec![ContentPart::Text(text.into())])
}

fn thinking(text: &str) -> ContentPart {
    ContentPart::Thinking(Thinking {
        text: text.into(),
        signature: None,
    })
}

fn request(model: &str, messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages,
        temperature: None,
        max_tokens: None,
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
        base_url: "https://api.deepseek.com".into(),
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

fn body(request: &ChatRequest, stream: bool) -> Value {
    quirks::request_body(&DIALECT, request, stream).expect("body builds")
}

#[test]
fn body_uses_max_tokens_and_sends_no_reasoning_effort() {
    let mut request = request("deepseek-reasoner", vec![text(Role::User, "hi")]);
    request.max_tokens = Some(2048);
    request.temperature = Some(0.7);
    request.top_p = Some(0.9);
    request.reasoning = Some(ReasoningConfig {
        budget_tokens: None,
        effort: Some(ReasoningEffort::High),
    });
    let body = body(&request, true);
    assert_eq!(body["max_tokens"], 2048);
    assert!(body.get("max_completion_tokens").is_none());
    assert!(body.get("reasoning_effort").is_none());
    // Thinking mode ignores these without an error: they are sent as given.
    assert_eq!(body["temperature"], json!(0.7));
    assert_eq!(body["top_p"], json!(0.9));
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
}

#[test]
fn reasoning_of_plain_turns_is_not_sent_back() {
    let request = request(
        "deepseek-reasoner",
        vec![
            text(Role::User, "9.11 or 9.8?"),
            message(
                Role::Assistant,
                vec![
                    thinking("compare decimals"),
                    ContentPart::Text("9.8".into()),
                ],
            ),
            text(Role::User, "why?"),
        ],
    );
    let body = body(&request, false);
    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1], json!({"role": "assistant", "content": "9.8"}));
    assert!(!body.to_string().contains("compare decimals"));
}

#[test]
fn reasoning_of_tool_call_turns_is_sent_back() {
    let call = |id: &str| {
        ContentPart::ToolUse(ToolCall {
            id: id.into(),
            name: "weather".into(),
            arguments: "{}".into(),
        })
    };
    let result = |id: &str| {
        ContentPart::ToolResult(ToolResult {
            tool_call_id: id.into(),
            content: "sunny".into(),
            is_error: false,
        })
    };
    let request = request(
        "deepseek-reasoner",
        vec![
            text(Role::User, "weather?"),
            message(
                Role::Assistant,
                vec![thinking("need the "), thinking("date"), call("c1")],
            ),
            message(Role::Tool, vec![result("c1")]),
            // A tool turn whose reasoning the caller did not keep.
            message(Role::Assistant, vec![call("c2")]),
            message(Role::Tool, vec![result("c2")]),
            message(
                Role::Assistant,
                vec![thinking("done"), ContentPart::Text("Sunny".into())],
            ),
            text(Role::User, "thanks"),
        ],
    );
    let body = body(&request, false);
    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 7);
    assert_eq!(messages[1]["reasoning_content"], "need the date");
    assert_eq!(messages[1]["tool_calls"][0]["id"], "c1");
    assert!(messages[3].get("reasoning_content").is_none());
    assert!(messages[5].get("reasoning_content").is_none());
    assert_eq!(messages[5]["content"], "Sunny");
}

#[test]
fn response_keeps_reasoning_apart_after_keep_alive_blank_lines() {
    let body = b"\n\n\n\n{\"id\":\"d1\",\"object\":\"chat.completion\",\"model\":\"deepseek-reasoner\",\
        \"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"9.8 is greater.\",\
        \"reasoning_content\":\"Compare 9.11 and 9.80.\"},\"finish_reason\":\"stop\"}],\
        \"usage\":{\"prompt_tokens\":17,\"completion_tokens\":120,\"total_tokens\":137,\
        \"prompt_cache_hit_tokens\":0,\"prompt_cache_miss_tokens\":17,\
        \"completion_tokens_details\":{\"reasoning_tokens\":100}}}";
    let request = request("deepseek-reasoner", vec![text(Role::User, "9.11 or 9.8?")]);
    let response = openai_compat::parse_response(&DIALECT, &request, &Headers::default(), body)
        .expect("parses");
    assert_eq!(response.content, "9.8 is greater.");
    assert_eq!(
        response.reasoning_content.as_deref(),
        Some("Compare 9.11 and 9.80.")
    );
    assert!(matches!(response.finish_reason, FinishReason::Stop));
    let usage = response.usage;
    assert_eq!((usage.input_tokens, usage.output_tokens), (17, 120));
    assert_eq!(usage.reasoning_tokens, 100);
    assert!(!usage.estimated);
}

/// A thinking-mode stream as DeepSeek sends it under load, as the host
/// frames it (its `: keep-alive` comments are no events): a placeholder
/// usage on every chunk, reasoning deltas with a null `content`, then the
/// answer and the real usage.
const REASONER_STREAM: &[&str] = &[
    r#"{"id":"d2","object":"chat.completion.chunk","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":""},"finish_reason":null}],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}"#,
    r#"{"id":"d2","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"Compare "},"finish_reason":null}],"usage":null}"#,
    r#"{"id":"d2","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"decimals."},"finish_reason":null}],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}"#,
    r#"{"id":"d2","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":"9.8","reasoning_content":null},"finish_reason":null}],"usage":null}"#,
    r#"{"id":"d2","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":"","reasoning_content":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":40,"total_tokens":52,"prompt_cache_hit_tokens":8,"prompt_cache_miss_tokens":4,"completion_tokens_details":{"reasoning_tokens":38}}}"#,
    r#"{"id":"d2","model":"deepseek-reasoner","choices":[],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}"#,
    "[DONE]",
];

fn events(data: &[&str]) -> Vec<SseEvent> {
    data.iter()
        .map(|data| SseEvent {
            event: None,
            data: (*data).to_owned(),
            id: None,
        })
        .collect()
}

/// What the decoder's `finish` said.
type Finish = Result<Vec<Chunk>, ProviderError>;

/// Every chunk of `stream`, fed through DeepSeek's decoder `group` events
/// at a time, and what `finish` said.
fn decode(stream: &[&str], group: usize) -> Result<(Vec<Chunk>, Finish), ProviderError> {
    let request = request("deepseek-reasoner", vec![text(Role::User, "9.11 or 9.8?")]);
    let mut decoder = DeepSeek::open_stream(&request, response(200, ""))?;
    let mut chunks = Vec::new();
    for events in events(stream).chunks(group) {
        chunks.extend(decoder.feed(StreamInput::Events(events.to_vec()))?);
    }
    Ok((chunks, decoder.finish()))
}

#[test]
fn stream_separates_reasoning_and_keeps_the_real_usage() {
    for group in [1, 3, REASONER_STREAM.len()] {
        let (chunks, finish) = decode(REASONER_STREAM, group).expect("decodes");
        assert_eq!(finish, Ok(Vec::new()), "group {group}");
        let reasoning: String = chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Reasoning(r) => Some(r.as_str()),
                _ => None,
            })
            .collect();
        let content: String = chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(reasoning, "Compare decimals.", "group {group}");
        assert_eq!(content, "9.8", "group {group}");
        assert!(matches!(chunks.first(), Some(Chunk::Start(s)) if s.id == "d2"));
        let usages: Vec<_> = chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Usage(u) => Some(u),
                _ => None,
            })
            .collect();
        assert_eq!(usages.len(), 1, "one usage chunk, group {group}");
        let usage = usages[0];
        assert_eq!((usage.input_tokens, usage.output_tokens), (12, 40));
        assert_eq!((usage.cache_read_tokens, usage.reasoning_tokens), (8, 38));
        assert!(!usage.estimated);
        assert_eq!(
            chunks
                .iter()
                .filter(|c| matches!(c, Chunk::Finish(FinishReason::Stop)))
                .count(),
            1
        );
    }
}

#[test]
fn a_stream_that_ends_before_done_is_cut() {
    // Under load DeepSeek may hold the connection with keep-alives only,
    // and then drop it: no event reached the decoder.
    let (chunks, finish) = decode(&[], 1).expect("decodes");
    assert!(chunks.is_empty());
    assert!(matches!(finish, Err(ProviderError::Protocol(m)) if m.contains("deepseek")));
    let (_, finish) = decode(&REASONER_STREAM[..4], 2).expect("decodes");
    assert!(matches!(finish, Err(ProviderError::Protocol(_))));
}

#[test]
fn the_manifest_asks_for_a_bearer_key_and_frames_sse() {
    let info = DeepSeek::info();
    assert_eq!(
        (info.id.as_str(), info.auth),
        ("deepseek", AuthScheme::Bearer)
    );
    assert_eq!(info.stream_format, StreamFormat::Sse);
    assert_eq!(info.hosts, vec!["api.deepseek.com".to_string()]);
}

#[test]
fn prepared_requests_carry_the_quirks_and_the_vendor_params() {
    let mut request = request(
        "deepseek-reasoner",
        vec![
            text(Role::User, "weather?"),
            message(
                Role::Assistant,
                vec![
                    thinking("look it up"),
                    ContentPart::ToolUse(ToolCall {
                        id: "c1".into(),
                        name: "weather".into(),
                        arguments: "{}".into(),
                    }),
                ],
            ),
            message(
                Role::Tool,
                vec![ContentPart::ToolResult(ToolResult {
                    tool_call_id: "c1".into(),
                    content: "sunny".into(),
                    is_error: false,
                })],
            ),
        ],
    );
    request.vendor_params = Some(r#"{"thinking": {"type": "enabled"}}"#.into());
    for (prepared, stream) in [
        (DeepSeek::prepare_chat(&config(), &request), false),
        (DeepSeek::prepare_stream(&config(), &request), true),
    ] {
        let prepared = prepared.expect("prepares");
        assert_eq!(prepared.path, "/chat/completions");
        let body: Value = serde_json::from_slice(&prepared.body).expect("JSON");
        assert_eq!(body["messages"][1]["reasoning_content"], "look it up");
        assert_eq!(body["thinking"], json!({"type": "enabled"}));
        assert_eq!(body.get("stream").is_some(), stream);
    }
}

#[test]
fn parsed_errors_are_refined_by_the_message() {
    let too_long = deepseek_error("This model's maximum context length is 131072 tokens.");
    assert!(matches!(
        DeepSeek::parse_chat(
            &request("deepseek-chat", Vec::new()),
            response(400, &too_long)
        ),
        Err(ProviderError::TokenLimitExceeded(_))
    ));
    let unknown = deepseek_error("Model Not Exist");
    assert!(matches!(
        DeepSeek::open_stream(&request("deepseek-x", Vec::new()), response(400, &unknown)),
        Err(ProviderError::ModelNotSupported(_))
    ));
    let answer = r#"{"id":"d","choices":[{"index":0,"message":{"content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
    assert!(matches!(
        DeepSeek::parse_chat(&request("deepseek-chat", Vec::new()), response(200, answer)),
        Ok(ChatStep::Done(chat)) if chat.content == "ok"
    ));
}

fn error(status: u16, body: &str) -> ProviderError {
    quirks::refine_error(openai_compat::map_error(
        status,
        &Headers::default(),
        body.as_bytes(),
    ))
}

fn deepseek_error(message: &str) -> String {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null,
        "code": "invalid_request_error"}})
    .to_string()
}

#[test]
fn insufficient_balance_is_a_permanent_quota_error() {
    let body = r#"{"error":{"message":"Insufficient Balance","type":"unknown_error","param":null,"code":"invalid_request_error"}}"#;
    let ProviderError::QuotaExhausted(detail) = error(402, body) else {
        panic!("402 must be quota exhausted");
    };
    assert_eq!(detail.message, "Insufficient Balance");
    assert_eq!(detail.status, Some(402));
    assert_eq!(detail.vendor_code.as_deref(), Some("invalid_request_error"));
}

#[test]
fn statuses_map_to_their_variants() {
    let unprocessable =
        json!({"error": {"message": "Invalid parameters", "type": "invalid_request_error"}});
    assert!(matches!(
        error(422, &unprocessable.to_string()),
        ProviderError::InvalidRequest(_)
    ));
    let overloaded = json!({"error": {"message": "Server overloaded", "type": "server_error"}});
    assert!(matches!(
        error(503, &overloaded.to_string()),
        ProviderError::Overloaded(_)
    ));
    let auth = json!({"error": {"message": "Authentication Fails (no such user)", "type": "authentication_error", "code": "invalid_request_error"}});
    assert!(matches!(
        error(401, &auth.to_string()),
        ProviderError::Authentication(_)
    ));
    assert!(matches!(
        error(429, &deepseek_error("Rate Limit Reached")),
        ProviderError::RateLimited(_)
    ));
    assert!(matches!(
        error(500, &deepseek_error("Server Error")),
        ProviderError::ServerError(_)
    ));
    assert!(matches!(
        error(400, &deepseek_error("Invalid tool schema")),
        ProviderError::InvalidRequest(_)
    ));
}

#[test]
fn messages_tell_what_deepseek_codes_do_not() {
    let too_long = deepseek_error(
        "This model's maximum context length is 131072 tokens. However, you requested \
         140000 tokens (131808 in the messages, 8192 in the completion).",
    );
    assert!(matches!(
        error(400, &too_long),
        ProviderError::TokenLimitExceeded(_)
    ));
    assert!(matches!(
        error(400, &deepseek_error("Model Not Exist")),
        ProviderError::ModelNotSupported(_)
    ));
}
