//! The OpenAI-compatible operations end to end, as the host drives them:
//! a prepared request, then the vendor's answer parsed.

use super::*;
use crate::types::{
    ContentPart, FinishReason, Message, Method, ReasoningConfig, ReasoningEffort, Role,
};
use serde_json::json;

static DIALECT: Dialect = Dialect {
    reasoning_field: Some("reasoning_content"),
    ..Dialect::openai("test")
};

fn config() -> ProviderConfig {
    ProviderConfig {
        base_url: "https://api.test.example/v1".into(),
        key_configured: true,
        api_key: None,
        request_id: "req-host-1".into(),
        idempotency_key: "idem-1".into(),
    }
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        messages: vec![Message {
            role: Role::User,
            content: vec![ContentPart::Text("hi".into())],
            name: None,
            cache_breakpoint: false,
        }],
        temperature: Some(0.7),
        max_tokens: Some(100),
        top_p: None,
        stop: Vec::new(),
        tools: Vec::new(),
        tool_choice: None,
        response_format: None,
        reasoning: Some(ReasoningConfig {
            budget_tokens: None,
            effort: Some(ReasoningEffort::Low),
        }),
        user: None,
        vendor_params: None,
    }
}

fn body_of(request: &HttpRequest) -> Value {
    serde_json::from_slice(&request.body).expect("the body is JSON")
}

fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn a_chat_is_a_json_post_to_the_chat_path() {
    let prepared = prepare_chat(&DIALECT, &config(), &request()).expect("prepares");
    assert_eq!(prepared.method, Method::Post);
    assert_eq!(prepared.path, "/chat/completions");
    assert_eq!(
        prepared.headers,
        vec![("content-type".to_string(), "application/json".to_string())]
    );
    assert_eq!(
        body_of(&prepared),
        json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.7,
            "max_completion_tokens": 100,
            "reasoning_effort": "low",
        })
    );
}

#[test]
fn no_key_or_host_detail_reaches_the_prepared_request() {
    let config = config();
    for prepared in [
        prepare_chat(&DIALECT, &config, &request()).expect("prepares"),
        prepare_stream(&DIALECT, &config, &request()).expect("prepares"),
        prepare_health_check(&DIALECT, &config).expect("prepares"),
    ] {
        assert!(prepared.path.starts_with('/'), "{}", prepared.path);
        let names: Vec<&str> = prepared.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert!(!names.contains(&"authorization"), "{names:?}");
        let text = String::from_utf8_lossy(&prepared.body);
        assert!(!text.contains(&config.base_url));
    }
}

#[test]
fn a_stream_asks_for_events_and_usage() {
    let prepared = prepare_stream(&DIALECT, &config(), &request()).expect("prepares");
    assert!(
        prepared
            .headers
            .contains(&("accept".to_string(), "text/event-stream".to_string()))
    );
    let body = body_of(&prepared);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
}

#[test]
fn vendor_params_reach_the_body_and_win() {
    let mut request = request();
    request.vendor_params = Some(r#"{"temperature": 0.1, "seed": 42, "stream": false}"#.into());
    let body = body_of(&prepare_chat(&DIALECT, &config(), &request).expect("prepares"));
    assert_eq!(
        (body["temperature"].clone(), body["seed"].clone()),
        (json!(0.1), json!(42))
    );
    let body = body_of(&prepare_stream(&DIALECT, &config(), &request).expect("prepares"));
    assert_eq!(body["stream"], false, "the caller's parameters win");
    request.vendor_params = Some("not json".into());
    assert!(matches!(
        prepare_chat(&DIALECT, &config(), &request),
        Err(ProviderError::InvalidRequest(_))
    ));
}

#[test]
fn an_invalid_request_is_refused_before_anything_is_sent() {
    let mut request = request();
    request.messages.clear();
    assert!(matches!(
        prepare_chat(&DIALECT, &config(), &request),
        Err(ProviderError::InvalidRequest(detail)) if detail.message.contains("no messages")
    ));
}

#[test]
fn a_successful_answer_is_parsed_with_its_headers() {
    let body = json!({
        "id": "c1", "model": "m-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello",
            "reasoning_content": "think"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    });
    let answer = response(
        200,
        &[
            ("x-request-id", "req_9"),
            ("x-ratelimit-remaining-requests", "41"),
        ],
        &body.to_string(),
    );
    let Ok(ChatStep::Done(chat)) = parse_chat(&DIALECT, &request(), answer) else {
        panic!("expected a parsed answer");
    };
    assert_eq!((chat.id.as_str(), chat.model.as_str()), ("c1", "m-1"));
    assert_eq!(chat.content, "Hello");
    assert_eq!(chat.reasoning_content.as_deref(), Some("think"));
    assert_eq!(chat.finish_reason, FinishReason::Stop);
    assert_eq!((chat.usage.input_tokens, chat.usage.output_tokens), (9, 2));
    assert_eq!(chat.request_id.as_deref(), Some("req_9"));
    assert_eq!(
        chat.rate_limits.and_then(|l| l.requests_remaining),
        Some(41)
    );
    assert_eq!(chat.parts.len(), 2);
}

#[test]
fn an_error_status_is_mapped_from_its_body() {
    let body =
        r#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#;
    let answer = response(429, &[("retry-after", "2"), ("x-request-id", "r")], body);
    let Err(ProviderError::RateLimited(detail)) = parse_chat(&DIALECT, &request(), answer) else {
        panic!("expected rate limited");
    };
    assert_eq!(detail.message, "slow down");
    assert_eq!(detail.retry_after_ms, Some(2000));
    assert_eq!(detail.request_id.as_deref(), Some("r"));
}

#[test]
fn a_broken_answer_is_a_protocol_error() {
    for body in ["<html>", "{\"choices\": []}", ""] {
        assert!(
            matches!(
                parse_chat(&DIALECT, &request(), response(200, &[], body)),
                Err(ProviderError::Protocol(_))
            ),
            "{body:?}"
        );
    }
}

#[test]
fn a_stream_opens_on_success_and_fails_with_the_mapped_error() {
    let head = response(200, &[("x-request-id", "req_s")], "");
    assert!(open_stream(&DIALECT, &request(), head).is_ok());
    let refused = response(
        401,
        &[],
        r#"{"error":{"message":"bad key","code":"invalid_api_key"}}"#,
    );
    assert!(matches!(
        open_stream(&DIALECT, &request(), refused),
        Err(ProviderError::Authentication(detail)) if detail.status == Some(401)
    ));
}

#[test]
fn the_health_check_lists_models() {
    let prepared = prepare_health_check(&DIALECT, &config()).expect("prepares");
    assert_eq!(
        (prepared.method, prepared.path.as_str()),
        (Method::Get, "/models")
    );
    assert!(prepared.body.is_empty());
    let listed = response(200, &[], r#"{"data":[{"id":"a"},{"id":"b"}]}"#);
    let Ok(HealthStep::Done(report)) = parse_health_check(&DIALECT, listed) else {
        panic!("expected a report");
    };
    assert_eq!(report.models_available, Some(2));
    assert_eq!(report.detail, "test answered; 2 models listed");
    let unlisted = response(200, &[], "ok");
    assert!(matches!(
        parse_health_check(&DIALECT, unlisted),
        Ok(HealthStep::Done(HealthReport {
            models_available: None,
            ..
        }))
    ));
    assert!(matches!(
        parse_health_check(&DIALECT, response(403, &[], "{}")),
        Err(ProviderError::Authentication(_))
    ));
}
