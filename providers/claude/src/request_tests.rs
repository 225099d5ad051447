use super::*;
use llmhost_provider_sdk::types::{
    Base64Image, JsonSchemaFormat, ReasoningConfig, Thinking, ToolCall, ToolDefinition, ToolResult,
};

fn message(role: Role, content: Vec<ContentPart>) -> Message {
    Message {
        role,
        content,
        name: None,
        cache_breakpoint: false,
    }
}

fn text(role: Role, t: &str) -> Message {
    message(role, vec![ContentPart::Text(t.into())])
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

fn body(request: &ChatRequest) -> Value {
    build_body(request, false).unwrap_or_else(|err| panic!("body builds: {err:?}"))
}

fn rejection(request: &ChatRequest) -> String {
    match build_body(request, false) {
        Err(ProviderError::InvalidRequest(detail)) => detail.message,
        other => panic!("expected invalid request, got {other:?}"),
    }
}

fn tool_call(id: &str, arguments: &str) -> ContentPart {
    ContentPart::ToolUse(ToolCall {
        id: id.into(),
        name: "lookup".into(),
        arguments: arguments.into(),
    })
}

fn tool_result(id: &str, content: &str) -> ContentPart {
    ContentPart::ToolResult(ToolResult {
        tool_call_id: id.into(),
        content: content.into(),
        is_error: false,
    })
}

#[test]
fn minimal_request() {
    let b = body(&request("claude-sonnet-4-5", vec![text(Role::User, "Hi")]));
    assert_eq!(
        b,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 64000,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        })
    );
    let streamed = build_body(&request("m", vec![text(Role::User, "Hi")]), true).expect("body");
    assert_eq!(streamed["stream"], json!(true));
}

#[test]
fn every_system_message_is_lifted_and_joined() {
    let b = body(&request(
        "claude-haiku-4-5",
        vec![
            text(Role::System, "Be brief."),
            text(Role::User, "Hi"),
            text(Role::Assistant, "Hello"),
            text(Role::System, "Answer in French."),
            text(Role::User, "Why?"),
            text(Role::System, ""),
        ],
    ));
    assert_eq!(b["system"], json!("Be brief.\n\nAnswer in French."));
    let roles: Vec<&str> = b["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().expect("role"))
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
}

#[test]
fn cached_system_messages_become_blocks() {
    let mut cached = text(Role::System, "Long instructions");
    cached.cache_breakpoint = true;
    let b = body(&request(
        "m",
        vec![cached, text(Role::System, "Tail"), text(Role::User, "Hi")],
    ));
    assert_eq!(
        b["system"],
        json!([
            {"type": "text", "text": "Long instructions", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Tail"},
        ])
    );
    assert!(b.get("system").is_some());
    let no_system = body(&request("m", vec![text(Role::User, "Hi")]));
    assert!(no_system.get("system").is_none());
}

#[test]
fn same_role_messages_merge_and_tool_results_become_user_blocks() {
    let b = body(&request(
        "m",
        vec![
            text(Role::User, "What is the weather?"),
            text(Role::User, "In Paris."),
            message(
                Role::Assistant,
                vec![
                    ContentPart::Text("Checking.".into()),
                    tool_call("toolu_1", r#"{"city":"Paris"}"#),
                ],
            ),
            message(Role::Tool, vec![tool_result("toolu_1", "18°C")]),
            text(Role::User, "Thanks"),
        ],
    ));
    assert_eq!(
        b["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "text", "text": "What is the weather?"},
                {"type": "text", "text": "In Paris."},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C", "is_error": false},
                {"type": "text", "text": "Thanks"},
            ]},
        ])
    );
}

#[test]
fn tool_results_move_ahead_of_text_in_a_merged_user_turn() {
    let b = body(&request(
        "m",
        vec![
            text(Role::User, "Go"),
            message(Role::Assistant, vec![tool_call("toolu_1", "")]),
            text(Role::User, "Here you are:"),
            message(Role::Tool, vec![tool_result("toolu_1", "done")]),
        ],
    ));
    assert_eq!(b["messages"][1]["content"][0]["input"], json!({}));
    let turn = &b["messages"][2]["content"];
    assert_eq!(turn[0]["type"], "tool_result");
    assert_eq!(turn[1]["text"], "Here you are:");
}

#[test]
fn conversation_must_open_with_the_user() {
    let message = rejection(&request(
        "m",
        vec![text(Role::System, "S"), text(Role::Assistant, "Hello")],
    ));
    assert!(message.contains("start with a user message"), "{message}");
    let message = rejection(&request("m", vec![text(Role::System, "S")]));
    assert!(
        message.contains("no user or assistant messages"),
        "{message}"
    );
}

#[test]
fn max_tokens_defaults_to_the_models_limit() {
    let mut r = request("claude-opus-4-1", vec![text(Role::User, "Hi")]);
    assert_eq!(body(&r)["max_tokens"], json!(32000));
    r.model = "claude-3-5-haiku-20241022".into();
    assert_eq!(body(&r)["max_tokens"], json!(8192));
    r.model = "claude-unknown".into();
    assert_eq!(body(&r)["max_tokens"], json!(DEFAULT_MAX_TOKENS));
    r.max_tokens = Some(77);
    assert_eq!(body(&r)["max_tokens"], json!(77));
}

#[test]
fn sampling_parameters_keep_the_decimals_written() {
    let mut r = request("m", vec![text(Role::User, "Hi")]);
    r.temperature = Some(0.7);
    r.top_p = Some(0.95);
    r.stop = vec!["END".into()];
    r.user = Some("user-42".into());
    let b = body(&r);
    assert_eq!(b["temperature"].to_string(), "0.7");
    assert_eq!(b["top_p"].to_string(), "0.95");
    assert_eq!(b["stop_sequences"], json!(["END"]));
    assert_eq!(b["metadata"], json!({"user_id": "user-42"}));
}

#[test]
fn tools_and_tool_choice() {
    let mut r = request("m", vec![text(Role::User, "Hi")]);
    r.tools = vec![ToolDefinition {
        name: "lookup".into(),
        description: "Looks things up".into(),
        input_schema: r#"{"type":"object","properties":{"q":{"type":"string"}}}"#.into(),
    }];
    let cases = [
        (ToolChoice::Auto, json!({"type": "auto"})),
        (ToolChoice::Required, json!({"type": "any"})),
        (ToolChoice::None, json!({"type": "none"})),
        (
            ToolChoice::Named("lookup".into()),
            json!({"type": "tool", "name": "lookup"}),
        ),
    ];
    for (choice, expected) in cases {
        r.tool_choice = Some(choice);
        let b = body(&r);
        assert_eq!(b["tool_choice"], expected);
        assert_eq!(
            b["tools"],
            json!([{
                "name": "lookup",
                "description": "Looks things up",
                "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
            }])
        );
    }
    r.tools[0].input_schema = "{nope".into();
    assert!(rejection(&r).contains("input schema of tool `lookup`"));
    r.tools.clear();
    r.tool_choice = Some(ToolChoice::None);
    assert!(body(&r).get("tool_choice").is_none());
    r.tool_choice = Some(ToolChoice::Required);
    assert!(rejection(&r).contains("defines no tools"));
}

#[test]
fn thinking_budget() {
    let mut r = request("claude-sonnet-4-5", vec![text(Role::User, "Hi")]);
    r.reasoning = Some(ReasoningConfig {
        budget_tokens: Some(2048),
        effort: None,
    });
    assert_eq!(
        body(&r)["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    r.reasoning = Some(ReasoningConfig {
        budget_tokens: Some(1000),
        effort: None,
    });
    assert!(rejection(&r).contains("at least 1024"));
    r.reasoning = Some(ReasoningConfig {
        budget_tokens: None,
        effort: None,
    });
    assert!(body(&r).get("thinking").is_none());
}

#[test]
fn json_response_formats_are_refused() {
    let mut r = request("m", vec![text(Role::User, "Hi")]);
    r.response_format = Some(ResponseFormat::Text);
    assert!(body(&r).get("response_format").is_none());
    r.response_format = Some(ResponseFormat::JsonObject);
    assert!(rejection(&r).contains("no JSON response format"));
    r.response_format = Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
        name: "x".into(),
        schema: "{}".into(),
        strict: true,
    }));
    assert!(rejection(&r).contains("use a tool"));
}

#[test]
fn content_parts_and_cache_breakpoints() {
    let mut assistant = message(
        Role::Assistant,
        vec![
            ContentPart::Thinking(Thinking {
                text: "hmm".into(),
                signature: Some("sig".into()),
            }),
            ContentPart::Thinking(Thinking {
                text: "unsigned".into(),
                signature: None,
            }),
            ContentPart::RedactedThinking("opaque".into()),
            ContentPart::Text("Answer".into()),
        ],
    );
    assistant.cache_breakpoint = true;
    let user = message(
        Role::User,
        vec![
            ContentPart::Image(ImageSource::Base64(Base64Image {
                media_type: "image/png".into(),
                data: "iVBOR".into(),
            })),
            ContentPart::Image(ImageSource::Url("https://x.test/a.jpg".into())),
            ContentPart::Text(String::new()),
        ],
    );
    let b = body(&request("m", vec![user, assistant]));
    assert_eq!(
        b["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Answer", "cache_control": {"type": "ephemeral"}},
            ]},
        ])
    );
}

#[test]
fn malformed_tool_calls_are_refused() {
    let r = request(
        "m",
        vec![
            text(Role::User, "Hi"),
            message(Role::Assistant, vec![tool_call("toolu_1", "{not json")]),
        ],
    );
    assert!(rejection(&r).contains("not valid JSON"));
    let r = request(
        "m",
        vec![
            text(Role::User, "Hi"),
            message(Role::Assistant, vec![tool_call("toolu_1", "[1]")]),
        ],
    );
    assert!(rejection(&r).contains("JSON object"));
    let r = request(
        "m",
        vec![message(Role::User, vec![tool_call("toolu_1", "{}")])],
    );
    assert!(rejection(&r).contains("only assistant messages"));
}

#[test]
fn count_tokens_bodies() {
    let text_body =
        count_tokens_body("claude-haiku-4-5", &TokenInput::Text("hello".into())).expect("body");
    assert_eq!(
        text_body,
        json!({
            "model": "claude-haiku-4-5",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
        })
    );
    let messages = TokenInput::Messages(vec![text(Role::System, "Sys"), text(Role::User, "Hi")]);
    let b = count_tokens_body("claude-haiku-4-5", &messages).expect("body");
    assert_eq!(b["system"], json!("Sys"));
    assert!(b.get("max_tokens").is_none());
    assert!(b.get("stream").is_none());
}

#[test]
fn vendor_params_reach_the_body_and_replace_members() {
    let mut r = request("claude-sonnet-5-5", vec![text(Role::User, "Hi")]);
    r.max_tokens = Some(500);
    r.vendor_params = Some(
        r#"{"top_k": 40, "max_tokens": 10, "thinking": {"type": "adaptive"}, "service_tier": "auto"}"#
            .into(),
    );
    let b = body(&r);
    assert_eq!(b["top_k"], json!(40));
    assert_eq!(b["max_tokens"], json!(10), "a vendor parameter wins");
    assert_eq!(b["thinking"], json!({"type": "adaptive"}));
    assert_eq!(b["service_tier"], json!("auto"));
    assert_eq!(b["model"], json!("claude-sonnet-5-5"));
}

#[test]
fn vendor_params_cannot_change_how_the_answer_is_read() {
    let mut r = request("m", vec![text(Role::User, "Hi")]);
    r.vendor_params = Some(r#"{"stream": false}"#.into());
    assert_eq!(build_body(&r, true).expect("body")["stream"], json!(true));
    r.vendor_params = Some(r#"{"stream": true}"#.into());
    assert!(build_body(&r, false).expect("body").get("stream").is_none());
}

#[test]
fn vendor_params_that_are_not_an_object_are_refused() {
    let mut r = request("m", vec![text(Role::User, "Hi")]);
    r.vendor_params = Some("[1]".into());
    assert!(rejection(&r).contains("vendor-params must be a JSON object"));
    r.vendor_params = Some("{\"top_k\": ".into());
    assert!(rejection(&r).contains("not valid JSON"));
}
