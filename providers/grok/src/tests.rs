//! xAI's wire behaviour through the core: request bodies, responses,
//! streams and errors, fed as xAI sends them.

use super::{DIALECT, Grok, quirks};
use llmhost_provider_sdk::Provider;
use llmhost_provider_sdk::http::Headers;
use llmhost_provider_sdk::openai_compat;
use llmhost_provider_sdk::types::{
    AuthScheme, ChatRequest, ChatStep, Chunk, ContentPart, FinishReason, HttpResponse, Message,
    ProviderConfig, ProviderError, ReasoningConfig, ReasoningEffort, Role, SseEvent, StreamFormat,
    StreamInput,
};
use serde_json::{Value, json};

fn request(model: &str, effort: Option<ReasoningEffort>) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message {
            role: Role::User,
            content: vec![ContentPart::Text("What is 101*3?".into())],
            name: None,
            cache_breakpoint: false,
        }],
        temperature: None,
        max_tokens: Some(1000),
        top_p: None,
        stop: Vec::new(),
        tools: Vec::new(),
        tool_choice: None,
        response_format: None,
        reasoning: effort.map(|effort| ReasoningConfig {
            budget_tokens: None,
            effort: Some(effort),
        }),
        user: None,
        vendor_params: None,
    }
}

fn config() -> ProviderConfig {
    ProviderConfig {
        base_url: "https://api.x.ai/v1".into(),
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

/// The body Grok prepares for `request`.
fn prepared_body(request: &ChatRequest) -> Value {
    let prepared = Grok::prepare_chat(&config(), request).expect("prepares");
    assert_eq!(prepared.path, "/chat/completions");
    serde_json::from_slice(&prepared.body).expect("JSON")
}

/// The body sent for `model` with `effort`, through the Grok quirks.
fn body(model: &str, effort: Option<ReasoningEffort>) -> Value {
    prepared_body(&request(model, effort))
}

#[test]
fn the_manifest_asks_for_a_bearer_key_and_frames_sse() {
    let info = Grok::info();
    assert_eq!((info.id.as_str(), info.auth), ("grok", AuthScheme::Bearer));
    assert_eq!(info.stream_format, StreamFormat::Sse);
    assert_eq!(info.hosts, vec!["api.x.ai".to_string()]);
}

#[test]
fn body_uses_max_completion_tokens() {
    let body = body("grok-4", None);
    assert_eq!(body["max_completion_tokens"], 1000);
    assert!(body.get("max_tokens").is_none());
}

#[test]
fn reasoning_effort_is_dropped_where_xai_rejects_it() {
    for model in [
        "grok-4",
        "grok-4-0709",
        "grok-4-fast-reasoning",
        "grok-4-fast-non-reasoning",
        "grok-code-fast-1",
        "grok-3",
    ] {
        for effort in [ReasoningEffort::Low, ReasoningEffort::High] {
            let body = body(model, Some(effort));
            assert!(
                body.get("reasoning_effort").is_none(),
                "{model} {effort:?}: {body}"
            );
        }
    }
}

#[test]
fn grok_3_mini_gets_low_or_high() {
    let cases = [
        (ReasoningEffort::Minimal, "low"),
        (ReasoningEffort::Low, "low"),
        (ReasoningEffort::Medium, "high"),
        (ReasoningEffort::High, "high"),
    ];
    for model in ["grok-3-mini", "grok-3-mini-fast"] {
        for (effort, sent) in cases {
            assert_eq!(
                body(model, Some(effort))["reasoning_effort"],
                sent,
                "{model} {effort:?}"
            );
        }
        assert!(body(model, None).get("reasoning_effort").is_none());
    }
}

#[test]
fn vendor_params_can_send_an_effort_the_fit_would_drop() {
    let mut request = request("grok-4", Some(ReasoningEffort::High));
    request.vendor_params = Some(r#"{"reasoning_effort": "medium"}"#.into());
    assert_eq!(prepared_body(&request)["reasoning_effort"], "medium");
    let prepared = Grok::prepare_stream(&config(), &request).expect("prepares");
    let body: Value = serde_json::from_slice(&prepared.body).expect("JSON");
    assert_eq!(
        (body["reasoning_effort"].clone(), body["stream"].clone()),
        (json!("medium"), json!(true))
    );
}

#[test]
fn grok_3_mini_response_keeps_reasoning_apart_and_counts_it_as_output() {
    let body = json!({
        "id": "x1", "object": "chat.completion", "model": "grok-3-mini",
        "choices": [{"index": 0, "message": {"role": "assistant",
            "content": "101 multiplied by 3 is 303.",
            "reasoning_content": "101 * 3 = 303. Check: 300 + 3."},
            "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 32, "completion_tokens": 9, "total_tokens": 135,
            "prompt_tokens_details": {"text_tokens": 32, "cached_tokens": 6},
            "completion_tokens_details": {"reasoning_tokens": 94}}
    });
    let request = request("grok-3-mini", Some(ReasoningEffort::High));
    let response = openai_compat::parse_response(
        &DIALECT,
        &request,
        &Headers::default(),
        body.to_string().as_bytes(),
    )
    .expect("parses");
    assert_eq!(response.content, "101 multiplied by 3 is 303.");
    assert_eq!(
        response.reasoning_content.as_deref(),
        Some("101 * 3 = 303. Check: 300 + 3.")
    );
    let usage = response.usage;
    assert_eq!(usage.input_tokens, 32);
    assert_eq!(usage.output_tokens, 9 + 94);
    assert_eq!(usage.reasoning_tokens, 94);
    assert_eq!(usage.cache_read_tokens, 6);
}

/// A grok-3-mini stream as xAI sends it: reasoning deltas, the answer, the
/// usage in the second-to-last chunk and an empty final chunk.
const MINI_STREAM: &[&str] = &[
    r#"{"id":"x2","object":"chat.completion.chunk","model":"grok-3-mini","choices":[{"index":0,"delta":{"role":"assistant","reasoning_content":"101 * 3"}}]}"#,
    r#"{"id":"x2","model":"grok-3-mini","choices":[{"index":0,"delta":{"reasoning_content":" = 303"}}]}"#,
    r#"{"id":"x2","model":"grok-3-mini","choices":[{"index":0,"delta":{"content":"303"}}]}"#,
    r#"{"id":"x2","model":"grok-3-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":1,"total_tokens":325,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":310}}}"#,
    r#"{"id":"x2","model":"grok-3-mini","choices":[{"index":0,"delta":{}}]}"#,
    "[DONE]",
];

/// Every chunk of `stream`, fed through Grok's decoder `group` events at
/// a time, then `finish`.
fn decode(stream: &[&str], group: usize) -> Result<Vec<Chunk>, ProviderError> {
    let request = request("grok-3-mini", None);
    let mut decoder = Grok::open_stream(&request, response(200, ""))?;
    let events: Vec<SseEvent> = stream
        .iter()
        .map(|data| SseEvent {
            event: None,
            data: (*data).to_owned(),
            id: None,
        })
        .collect();
    let mut chunks = Vec::new();
    for events in events.chunks(group) {
        chunks.extend(decoder.feed(StreamInput::Events(events.to_vec()))?);
    }
    chunks.extend(decoder.finish()?);
    Ok(chunks)
}

#[test]
fn usage_before_the_empty_final_chunk_is_kept() {
    for group in [1, 4, MINI_STREAM.len()] {
        let chunks = decode(MINI_STREAM, group).expect("decodes");
        assert!(
            matches!(&chunks[..], [
                Chunk::Start(start),
                Chunk::Reasoning(r1),
                Chunk::Reasoning(r2),
                Chunk::Text(text),
                Chunk::Finish(FinishReason::Stop),
                Chunk::Usage(usage),
            ] if start.id == "x2" && start.model == "grok-3-mini"
                && r1 == "101 * 3" && r2 == " = 303" && text == "303"
                && usage.input_tokens == 14 && usage.output_tokens == 311
                && usage.reasoning_tokens == 310 && !usage.estimated),
            "group {group}: {chunks:?}"
        );
    }
}

#[test]
fn a_final_chunk_with_zero_usage_does_not_erase_the_real_one() {
    let mut stream = MINI_STREAM.to_vec();
    stream[4] = r#"{"id":"x2","model":"grok-3-mini","choices":[{"index":0,"delta":{}}],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}"#;
    let chunks = decode(&stream, 2).expect("decodes");
    let Some(Chunk::Usage(usage)) = chunks.last() else {
        panic!("usage last: {chunks:?}");
    };
    assert_eq!((usage.input_tokens, usage.output_tokens), (14, 311));
}

#[test]
fn a_string_error_in_the_stream_is_refined() {
    let stream = [
        r#"{"code":"Client specified an invalid argument","error":"This model's maximum prompt length is 131072 but the request contains 140000 tokens."}"#,
    ];
    assert!(matches!(
        decode(&stream, 1),
        Err(ProviderError::TokenLimitExceeded(_))
    ));
}

#[test]
fn a_stream_cut_before_done_fails_at_finish() {
    assert!(matches!(
        decode(&MINI_STREAM[..5], 5),
        Err(ProviderError::Protocol(message)) if message.contains("grok")
    ));
}

#[test]
fn parsed_answers_and_errors_go_through_the_quirks() {
    let bad_key = json!({"code": INVALID_ARGUMENT, "error": BAD_KEY}).to_string();
    let request = request("grok-4", None);
    assert!(matches!(
        Grok::parse_chat(&request, response(400, &bad_key)),
        Err(ProviderError::Authentication(_))
    ));
    assert!(matches!(
        Grok::open_stream(&request, response(400, &bad_key)),
        Err(ProviderError::Authentication(_))
    ));
    assert!(matches!(
        Grok::parse_health_check(response(400, &bad_key)),
        Err(ProviderError::Authentication(_))
    ));
    let answer = r#"{"id":"x","choices":[{"index":0,"message":{"content":"303"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#;
    assert!(matches!(
        Grok::parse_chat(&request, response(200, answer)),
        Ok(ChatStep::Done(chat)) if chat.content == "303"
    ));
}

fn error(status: u16, code: &str, message: &str) -> ProviderError {
    let body = json!({"code": code, "error": message}).to_string();
    quirks::refine_error(openai_compat::map_error(
        status,
        &Headers::default(),
        body.as_bytes(),
    ))
}

const INVALID_ARGUMENT: &str = "Client specified an invalid argument";
const BAD_KEY: &str =
    "Incorrect API key provided: xa***bc. You can obtain an API key from https://console.x.ai.";

#[test]
fn a_wrong_key_is_an_authentication_error_whatever_the_status() {
    for status in [400, 401, 403] {
        let ProviderError::Authentication(detail) = error(status, INVALID_ARGUMENT, BAD_KEY) else {
            panic!("{status} with a wrong key must be authentication");
        };
        assert_eq!(detail.message, BAD_KEY);
        assert_eq!(detail.status, Some(status));
        assert_eq!(detail.vendor_code.as_deref(), Some(INVALID_ARGUMENT));
    }
}

#[test]
fn an_unknown_model_is_not_supported() {
    let missing = "The model grok-x does not exist or your team does not have access to it.";
    for status in [400, 404] {
        assert!(
            matches!(
                error(status, "Some requested entity was not found", missing),
                ProviderError::ModelNotSupported(_)
            ),
            "{status}"
        );
    }
}

#[test]
fn spent_credits_are_a_permanent_quota_error() {
    let spent = "Your team 16f2 has either used all available credits or reached its monthly \
                 spending limit. To continue making API requests, please purchase more credits \
                 or raise your spending limit.";
    assert!(matches!(
        error(429, "Too many requests", spent),
        ProviderError::QuotaExhausted(_)
    ));
    assert!(matches!(
        error(403, "The caller does not have permission", spent),
        ProviderError::QuotaExhausted(_)
    ));
    let new_team = "Your newly created team doesn't have any credits or licenses yet.";
    assert!(matches!(
        error(403, "The caller does not have permission", new_team),
        ProviderError::QuotaExhausted(_)
    ));
}

#[test]
fn other_errors_keep_the_core_mapping() {
    assert!(matches!(
        error(
            429,
            "Too many requests",
            "Rate limit exceeded. Retry later."
        ),
        ProviderError::RateLimited(_)
    ));
    assert!(matches!(
        error(
            400,
            INVALID_ARGUMENT,
            "Argument not supported on this model: reasoningEffort"
        ),
        ProviderError::InvalidRequest(_)
    ));
    assert!(matches!(
        error(
            400,
            INVALID_ARGUMENT,
            "This model's maximum prompt length is 131072 but the request contains 140000 tokens."
        ),
        ProviderError::TokenLimitExceeded(_)
    ));
    assert!(matches!(
        error(
            503,
            "Service unavailable",
            "The service is currently unavailable"
        ),
        ProviderError::Overloaded(_)
    ));
    assert!(matches!(
        error(500, "Internal error", "Internal server error"),
        ProviderError::ServerError(_)
    ));
}
