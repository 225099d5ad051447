//! Anthropic's Messages API over real HTTP: required headers and fields,
//! role rules, tools, thinking, token counting, models and errors.

mod common;

use common::{client, o200k, post_anthropic};
use llmhost_simulator::{Reply, Simulator, Vendor, anthropic_models};
use serde_json::{Value, json};

async fn sim() -> (Simulator, String) {
    let sim = Simulator::start().await.expect("start simulator");
    let base = sim.base_url(Vendor::Anthropic);
    (sim, base)
}

fn hello() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Hello, Claude"}]
    })
}

/// Sends `body` and returns the status and the error object, checking the
/// envelope and that the body's request id matches the header.
async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let header_id = response.headers()["request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["request_id"], header_id.as_str());
    assert!(body["error"]["message"].is_string(), "{body}");
    (status, body["error"].clone())
}

async fn invalid(base: &str, body: &Value) -> String {
    let (status, error) =
        error_of(post_anthropic(&client(), base, "/v1/messages", body).await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error["type"], "invalid_request_error", "{body}");
    error["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn default_answer_has_anthropic_shape_usage_and_headers() {
    let (sim, base) = sim().await;
    assert_eq!(base, format!("http://{}/anthropic", sim.addr()));
    let response = post_anthropic(&client(), &base, "/v1/messages", &hello()).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(headers["request-id"].to_str().unwrap().starts_with("req_"));
    for kind in ["requests", "tokens", "input-tokens", "output-tokens"] {
        let limit: u64 = headers[format!("anthropic-ratelimit-{kind}-limit").as_str()]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let remaining: u64 = headers[format!("anthropic-ratelimit-{kind}-remaining").as_str()]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(remaining < limit, "{kind}");
        let reset = headers[format!("anthropic-ratelimit-{kind}-reset").as_str()]
            .to_str()
            .unwrap();
        // RFC 3339 in UTC: 2025-11-26T00:57:03Z
        let b = reset.as_bytes();
        assert_eq!(reset.len(), 20, "{reset}");
        assert_eq!(
            (b[4], b[7], b[10], b[13], b[16], b[19]),
            (b'-', b'-', b'T', b':', b':', b'Z')
        );
    }

    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("msg_01"), "{id}");
    let answer = "Hello from the llmhost simulator. You said: Hello, Claude";
    let input = o200k("You are terse.") + o200k("Hello, Claude");
    assert_eq!(
        body,
        json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": answer}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {
                "input_tokens": input,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": o200k(answer)
            }
        })
    );
}

#[tokio::test]
async fn key_and_version_headers_are_required() {
    let (_sim, base) = sim().await;
    let http = client();
    let send = |key: Option<&str>, version: Option<&str>| {
        let mut request = http
            .post(format!("{base}/v1/messages"))
            .body(hello().to_string());
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if let Some(version) = version {
            request = request.header("anthropic-version", version);
        }
        request.send()
    };
    for key in [None, Some("")] {
        let (status, error) = error_of(send(key, Some("2023-06-01")).await.unwrap()).await;
        assert_eq!(status, 401);
        assert_eq!(
            error,
            json!({"type": "authentication_error", "message": "invalid x-api-key"})
        );
    }
    let (status, error) = error_of(send(Some("k"), None).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(
        error,
        json!({"type": "invalid_request_error", "message": "anthropic-version: header is required"})
    );
    let (status, _) = error_of(send(Some("k"), Some("2024-13-01")).await.unwrap()).await;
    assert_eq!(status, 400);
    // The key as a bearer token, as the official Python SDK (2.x) sends
    // it, with the version that SDK sends.
    let response = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth("k")
        .header("anthropic-version", "2026-10-21")
        .body(hello().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn required_and_unknown_fields_are_400() {
    let (_sim, base) = sim().await;
    let mut body = hello();
    body.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(invalid(&base, &body).await, "max_tokens: Field required");
    let mut body = hello();
    body.as_object_mut().unwrap().remove("model");
    assert_eq!(invalid(&base, &body).await, "model: Field required");
    let mut body = hello();
    body["messages"] = json!([]);
    assert_eq!(
        invalid(&base, &body).await,
        "messages: at least one message is required"
    );
    let mut body = hello();
    body["stream_options"] = json!({"include_usage": true});
    assert_eq!(
        invalid(&base, &body).await,
        "stream_options: Extra inputs are not permitted"
    );
    let mut body = hello();
    body["max_tokens"] = json!(0);
    assert!(invalid(&base, &body).await.starts_with("max_tokens:"));
    let mut body = hello();
    body["temperature"] = json!(1.5);
    assert!(invalid(&base, &body).await.starts_with("temperature:"));
    let mut body = hello();
    body["system"] = json!([{"type": "image", "text": "x"}]);
    assert!(invalid(&base, &body).await.starts_with("system.0.type"));
    let mut body = hello();
    body["messages"][0]["content"] = json!([{"type": "video", "url": "x"}]);
    assert!(
        invalid(&base, &body)
            .await
            .starts_with("messages.0.content.0: Input tag 'video'")
    );
    let mut body = hello();
    body["messages"][0]["content"] = json!([{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AA"}}]);
    assert!(invalid(&base, &body).await.contains("media_type"));

    let malformed = client()
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .body("{\"model\":")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(malformed).await.0, 400);
}

#[tokio::test]
async fn roles_must_alternate_starting_with_user() {
    let (_sim, base) = sim().await;
    let with = |messages: Value| {
        let mut body = hello();
        body["messages"] = messages;
        body
    };
    let cases = [
        (
            json!([{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]),
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            json!([{"role": "assistant", "content": "hi"}, {"role": "user", "content": "hi"}]),
            "messages: first message must use the \"user\" role",
        ),
        (
            json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
            "messages: roles must alternate between \"user\" and \"assistant\", but found \
             multiple \"user\" roles in a row",
        ),
        (
            json!([
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "assistant", "content": "c"}
            ]),
            "messages: roles must alternate between \"user\" and \"assistant\", but found \
             multiple \"assistant\" roles in a row",
        ),
        (
            json!([{"role": "user", "content": ""}]),
            "messages.0: all messages must have non-empty content except for the optional \
             final assistant message",
        ),
        (
            json!([{"role": "user", "content": [{"type": "text", "text": ""}]}]),
            "messages: text content blocks must be non-empty",
        ),
        (
            json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b "}]),
            "messages: final assistant content cannot end with trailing whitespace",
        ),
    ];
    for (messages, expected) in cases {
        assert_eq!(
            invalid(&base, &with(messages.clone())).await,
            expected,
            "{messages}"
        );
    }

    // A final assistant message is a prefill: allowed, even empty.
    let body =
        with(json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}]));
    let response = post_anthropic(&client(), &base, "/v1/messages", &body).await;
    assert_eq!(response.status(), 200);
}

fn tools() -> Value {
    json!([
        {"name": "search", "description": "Search the web", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}},
        {"name": "other", "input_schema": {"type": "object"}}
    ])
}

#[tokio::test]
async fn tools_get_a_tool_use_then_results_are_quoted() {
    let (_sim, base) = sim().await;
    let http = client();
    let mut body = hello();
    body["tools"] = tools();
    body["messages"] = json!([{"role": "user", "content": "weather in \"Paris\""}]);
    let reply: Value = post_anthropic(&http, &base, "/v1/messages", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["stop_reason"], "tool_use");
    let block = &reply["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_01"));
    assert_eq!(block["name"], "search");
    assert_eq!(block["input"], json!({"query": "weather in \"Paris\""}));
    assert_eq!(
        reply["usage"]["output_tokens"],
        o200k(&block["input"].to_string())
    );

    let id = block["id"].clone();
    body["messages"] = json!([
        {"role": "user", "content": "weather in Paris"},
        {"role": "assistant", "content": [block]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": [{"type": "text", "text": "sunny"}]}
        ]}
    ]);
    let follow_up: Value = post_anthropic(&http, &base, "/v1/messages", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(follow_up["stop_reason"], "end_turn");
    assert_eq!(follow_up["content"][0]["text"], "Tool said: sunny");

    for (choice, expect_tool) in [
        (json!({"type": "none"}), None),
        (json!({"type": "tool", "name": "other"}), Some("other")),
        (json!({"type": "any"}), Some("search")),
    ] {
        let mut body = hello();
        body["tools"] = tools();
        body["tool_choice"] = choice;
        let reply: Value = post_anthropic(&http, &base, "/v1/messages", &body)
            .await
            .json()
            .await
            .unwrap();
        match expect_tool {
            Some(name) => assert_eq!(reply["content"][0]["name"], name),
            None => assert_eq!(reply["content"][0]["type"], "text"),
        }
    }
}

#[tokio::test]
async fn tool_use_and_tool_result_must_pair_up() {
    let (_sim, base) = sim().await;
    let use_block = json!({"type": "tool_use", "id": "toolu_1", "name": "search", "input": {}});
    let mut body = hello();
    body["tools"] = tools();
    body["messages"] = json!([
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [use_block]},
        {"role": "user", "content": "no result here"}
    ]);
    let message = invalid(&base, &body).await;
    assert!(
        message.starts_with("messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1."),
        "{message}"
    );
    body["messages"] = json!([
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [use_block]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "y"}
        ]}
    ]);
    let message = invalid(&base, &body).await;
    assert!(
        message.starts_with(
            "messages.2.content.1: unexpected `tool_use_id` found in `tool_result` blocks: toolu_2."
        ),
        "{message}"
    );
    body["messages"] = hello()["messages"].clone();
    body["tools"] = json!([{"name": "no schema"}]);
    assert!(
        invalid(&base, &body)
            .await
            .starts_with("tools.0.custom.name")
    );
    body["tools"] = json!([{"name": "search"}]);
    assert_eq!(
        invalid(&base, &body).await,
        "tools.0.custom.input_schema: Field required"
    );
}

#[tokio::test]
async fn thinking_block_comes_first_with_a_signature() {
    let (_sim, base) = sim().await;
    let mut body = hello();
    body["max_tokens"] = json!(2048);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let reply: Value = post_anthropic(&client(), &base, "/v1/messages", &body)
        .await
        .json()
        .await
        .unwrap();
    let thinking = &reply["content"][0];
    assert_eq!(thinking["type"], "thinking");
    let text = "The user greeted me; I should answer briefly.";
    assert_eq!(thinking["thinking"], text);
    assert!(thinking["signature"].as_str().unwrap().len() > 50);
    let answer = "Hello from the llmhost simulator. You said: Hello, Claude";
    assert_eq!(reply["content"][1], json!({"type": "text", "text": answer}));
    assert_eq!(reply["usage"]["output_tokens"], o200k(text) + o200k(answer));

    body["thinking"] = json!({"type": "enabled", "budget_tokens": 512});
    assert!(
        invalid(&base, &body)
            .await
            .starts_with("thinking.enabled.budget_tokens")
    );
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 4096});
    assert!(
        invalid(&base, &body)
            .await
            .starts_with("`max_tokens` must be greater")
    );
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    body["temperature"] = json!(0.5);
    assert!(
        invalid(&base, &body)
            .await
            .starts_with("`temperature` may only be set to 1")
    );
}

#[tokio::test]
async fn stop_sequences_and_max_tokens_set_the_stop_reason() {
    let (_sim, base) = sim().await;
    let mut body = hello();
    body["stop_sequences"] = json!(["simulator", "llmhost"]);
    let reply: Value = post_anthropic(&client(), &base, "/v1/messages", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["content"][0]["text"], "Hello from the ");
    assert_eq!(reply["stop_reason"], "stop_sequence");
    assert_eq!(reply["stop_sequence"], "llmhost");

    let mut body = hello();
    body["max_tokens"] = json!(3);
    let reply: Value = post_anthropic(&client(), &base, "/v1/messages", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["stop_reason"], "max_tokens");
    assert_eq!(reply["usage"]["output_tokens"], 3);
    assert!(reply["stop_sequence"].is_null());
}

#[tokio::test]
async fn count_tokens_matches_messages_input_tokens() {
    let (_sim, base) = sim().await;
    let http = client();
    let mut with_tools = hello();
    with_tools["tools"] = tools();
    with_tools["system"] =
        json!([{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}]);
    with_tools["messages"] = json!([
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_9", "name": "search", "input": {"query": "cat"}}
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_9", "content": "a cat", "is_error": false}
        ]}
    ]);
    for body in [hello(), with_tools] {
        let reply: Value = post_anthropic(&http, &base, "/v1/messages", &body)
            .await
            .json()
            .await
            .unwrap();
        let mut counted = body.clone();
        counted.as_object_mut().unwrap().remove("max_tokens");
        let response = post_anthropic(&http, &base, "/v1/messages/count_tokens", &counted).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("request-id"));
        let count: Value = response.json().await.unwrap();
        assert_eq!(
            count,
            json!({"input_tokens": reply["usage"]["input_tokens"]})
        );
        assert!(count["input_tokens"].as_u64().unwrap() > 0);
    }
    let mut body = hello();
    body["model"] = json!("claude-0");
    let response = post_anthropic(&http, &base, "/v1/messages/count_tokens", &body).await;
    assert_eq!(error_of(response).await.0, 404);
}

#[tokio::test]
async fn unknown_model_is_404_and_models_are_listed() {
    let (_sim, base) = sim().await;
    let http = client();
    let mut body = hello();
    body["model"] = json!("claude-9-ultra");
    let (status, error) = error_of(post_anthropic(&http, &base, "/v1/messages", &body).await).await;
    assert_eq!(status, 404);
    assert_eq!(
        error,
        json!({"type": "not_found_error", "message": "model: claude-9-ultra"})
    );
    body["model"] = json!("claude-sonnet-4-20250514");
    let response = post_anthropic(&http, &base, "/v1/messages", &body).await;
    assert_eq!(response.status(), 200, "snapshot ids are accepted");

    let list: Value = http
        .get(format!("{base}/v1/models"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = list["data"].as_array().unwrap();
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, anthropic_models());
    assert_eq!(anthropic_models().len(), 9);
    assert!(anthropic_models().contains(&"claude-3-5-haiku-latest"));
    for model in data {
        assert_eq!(model["type"], "model");
        assert!(
            model["display_name"]
                .as_str()
                .unwrap()
                .starts_with("Claude")
        );
        assert!(model["created_at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], ids[0]);
    assert_eq!(list["last_id"], ids[ids.len() - 1]);
}

#[tokio::test]
async fn scripted_errors_use_the_anthropic_shape() {
    let (sim, base) = sim().await;
    sim.enqueue(
        Vendor::Anthropic,
        Reply::anthropic_error(529, "overloaded_error", "Overloaded"),
    );
    sim.enqueue(
        Vendor::Anthropic,
        Reply::anthropic_error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        )
        .header("retry-after", "7"),
    );
    let http = client();
    let (status, error) =
        error_of(post_anthropic(&http, &base, "/v1/messages", &hello()).await).await;
    assert_eq!(status, 529);
    assert_eq!(
        error,
        json!({"type": "overloaded_error", "message": "Overloaded"})
    );
    let response = post_anthropic(&http, &base, "/v1/messages", &hello()).await;
    assert_eq!(response.headers()["retry-after"], "7");
    let (status, error) = error_of(response).await;
    assert_eq!(status, 429);
    assert_eq!(error["type"], "rate_limit_error");
    // count_tokens is not the chat endpoint: scripted replies do not touch it.
    sim.enqueue(
        Vendor::Anthropic,
        Reply::anthropic_error(500, "api_error", "x"),
    );
    let response = post_anthropic(&http, &base, "/v1/messages/count_tokens", &hello()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(sim.pending(Vendor::Anthropic), 1);
}

#[tokio::test]
async fn oversized_bodies_are_413_and_unknown_paths_404() {
    let (_sim, base) = sim().await;
    let http = client();
    // Just over Anthropic's 32 MB limit, yet under the simulator's own.
    let big = format!(
        "{{\"model\":\"claude-haiku-4-5\",\"max_tokens\":1,\"pad\":\"{}\"}}",
        "x".repeat(32 * 1024 * 1024)
    );
    let response = http
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .body(big)
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 413);
    assert_eq!(error["type"], "request_too_large");

    let response = post_anthropic(&http, &base, "/v1/complete/nope", &hello()).await;
    let (status, error) = error_of(response).await;
    assert_eq!(status, 404);
    assert_eq!(error["type"], "not_found_error");
}
