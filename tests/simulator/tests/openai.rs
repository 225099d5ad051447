//! The OpenAI protocol over real HTTP: default answers, streams and errors.

mod common;

use common::{client, o200k, post_chat, stream_chunks};
use llmhost_simulator::{Simulator, Vendor, openai_models};
use serde_json::{Value, json};

const KEY: Option<&str> = Some("sk-test-123456789");

async fn sim() -> (Simulator, String) {
    let sim = Simulator::start().await.expect("start simulator");
    let base = sim.base_url(Vendor::OpenAi);
    (sim, base)
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/json");
    let body: Value = response.json().await.expect("error body is JSON");
    let error = body["error"].clone();
    assert!(error["message"].is_string(), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{body}"
    );
    (status, error)
}

#[tokio::test]
async fn base_url_points_at_the_openai_prefix() {
    let (sim, base) = sim().await;
    assert_eq!(base, format!("http://{}/openai/v1", sim.addr()));
}

#[tokio::test]
async fn default_answer_has_openai_shape_headers_and_usage() {
    let (_sim, base) = sim().await;
    let request = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"}
        ]
    });
    let response = post_chat(&client(), &base, KEY, &request).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    let request_id = headers["x-request-id"].to_str().unwrap();
    assert!(request_id.starts_with("req_") && request_id.len() > 10);
    for name in [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "openai-processing-ms",
    ] {
        let value = headers[name].to_str().unwrap();
        assert!(value.parse::<u64>().is_ok(), "{name}: {value}");
    }
    for name in ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"] {
        let value = headers[name].to_str().unwrap();
        assert!(value.ends_with('s'), "{name}: {value}");
    }

    let body: Value = response.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(body["model"], "gpt-4o-mini");
    assert!(
        body["system_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("fp_")
    );
    let answer = "Hello from the llmhost simulator. You said: What is the capital of France?";
    assert_eq!(
        body["choices"],
        json!([{
            "index": 0,
            "message": {"role": "assistant", "content": answer, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }])
    );
    let prompt = o200k("You are terse.") + o200k("What is the capital of France?") + 3 * 2 + 3;
    let completion = o200k(answer);
    assert_eq!(
        body["usage"],
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion
        })
    );
}

#[tokio::test]
async fn content_parts_and_long_text_are_echoed_truncated() {
    let (_sim, base) = sim().await;
    let long = "word ".repeat(40);
    let request = json!({
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": long},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
        ]}]
    });
    let body: Value = post_chat(&client(), &base, KEY, &request)
        .await
        .json()
        .await
        .unwrap();
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    let echoed = content
        .strip_prefix("Hello from the llmhost simulator. You said: ")
        .unwrap();
    assert_eq!(echoed, format!("{}...", &long[..80]));
    assert_eq!(body["usage"]["prompt_tokens"], o200k(&long) + 3 + 3);
}

#[tokio::test]
async fn stream_without_usage_sends_pieces_then_stop_then_done() {
    let (_sim, base) = sim().await;
    let request = json!({
        "model": "gpt-5",
        "stream": true,
        "messages": [{"role": "user", "content": "stream me please"}]
    });
    let response = post_chat(&client(), &base, KEY, &request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(response.headers().contains_key("x-request-id"));
    let chunks = stream_chunks(&response.text().await.unwrap());

    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for chunk in &chunks {
        assert_eq!(chunk["id"], id);
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-5");
        assert!(chunk["created"].is_u64());
        assert!(chunk["system_fingerprint"].is_string());
        assert!(
            chunk.get("usage").is_none(),
            "no usage without include_usage"
        );
        assert_eq!(chunk["choices"][0]["index"], 0);
        assert!(chunk["choices"][0]["logprobs"].is_null());
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");

    let pieces: Vec<&str> = chunks[1..chunks.len() - 1]
        .iter()
        .map(|c| {
            assert!(c["choices"][0]["finish_reason"].is_null());
            c["choices"][0]["delta"]["content"].as_str().unwrap()
        })
        .collect();
    assert!(pieces.len() > 3, "answer comes in several pieces");
    assert_eq!(
        pieces.concat(),
        "Hello from the llmhost simulator. You said: stream me please"
    );
    assert_eq!(pieces[0], "Hello ");
}

#[tokio::test]
async fn stream_with_include_usage_ends_with_a_usage_chunk() {
    let (_sim, base) = sim().await;
    let request = json!({
        "model": "gpt-4o",
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "count me"}]
    });
    let response = post_chat(&client(), &base, KEY, &request).await;
    let chunks = stream_chunks(&response.text().await.unwrap());
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    for chunk in rest {
        assert!(chunk["usage"].is_null() && chunk.get("usage").is_some());
        assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
    assert_eq!(usage_chunk["choices"], json!([]));
    let prompt = o200k("count me") + 3 + 3;
    let completion = o200k("Hello from the llmhost simulator. You said: count me");
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
    );
}

#[tokio::test]
async fn missing_or_empty_key_is_401() {
    let (sim, base) = sim().await;
    let request = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    for key in [None, Some(""), Some("   ")] {
        let response = post_chat(&client(), &base, key, &request).await;
        let (status, error) = error_of(response).await;
        assert_eq!(status, 401);
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(error["code"], "invalid_api_key");
        assert!(error["param"].is_null());
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("Incorrect API key provided:"),
            "{message}"
        );
    }
    let response = client().get(format!("{base}/models")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    // Error replies carry a request id too, as OpenAI's do.
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(sim.requests().len(), 4);
}

#[tokio::test]
async fn unknown_model_is_404_model_not_found() {
    let (_sim, base) = sim().await;
    let request = json!({"model": "gpt-9-ultra", "messages": [{"role": "user", "content": "hi"}]});
    let (status, error) = error_of(post_chat(&client(), &base, KEY, &request).await).await;
    assert_eq!(status, 404);
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(
        error["message"],
        "The model `gpt-9-ultra` does not exist or you do not have access to it."
    );
}

#[tokio::test]
async fn invalid_bodies_are_400_invalid_request_error() {
    let (_sim, base) = sim().await;
    let http = client();
    let malformed = http
        .post(format!("{base}/chat/completions"))
        .bearer_auth("sk-x")
        .header("content-type", "application/json")
        .body("{\"model\": \"gpt-4o\", \"messages\": [")
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(malformed).await;
    assert_eq!(status, 400);
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("could not parse the JSON body")
    );

    let cases = [
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            Value::Null,
        ),
        (
            json!({"model": "gpt-4o", "messages": []}),
            json!("messages"),
        ),
        (json!({"model": "gpt-4o"}), json!("messages")),
        (
            json!({"model": "gpt-4o", "messages": [{"content": "hi"}]}),
            json!("messages[0].role"),
        ),
        (
            json!({"model": "gpt-4o", "messages": [{"role": "robot", "content": "hi"}]}),
            json!("messages[0].role"),
        ),
        (
            json!({"model": "gpt-4o", "messages": "hi"}),
            json!("messages"),
        ),
        (
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}),
            json!("max_tokens"),
        ),
        (
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": true}}),
            json!("stream_options"),
        ),
        (
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": []}),
            json!("tools"),
        ),
        (json!([1, 2, 3]), Value::Null),
    ];
    for (body, param) in cases {
        let (status, error) = error_of(post_chat(&http, &base, KEY, &body).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert_eq!(error["param"], param, "{body}");
    }
}

#[tokio::test]
async fn tools_get_a_tool_call_then_the_tool_output_is_quoted() {
    let (_sim, base) = sim().await;
    let tools = json!([
        {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}
    ]);
    let request = json!({
        "model": "gpt-4.1-mini",
        "tools": tools,
        "messages": [{"role": "user", "content": "weather in \"Paris\""}]
    });
    let body: Value = post_chat(&client(), &base, KEY, &request)
        .await
        .json()
        .await
        .unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let message = &choice["message"];
    assert!(message["content"].is_null());
    let call = &message["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "search");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"query": "weather in \"Paris\""}));

    let follow_up = json!({
        "model": "gpt-4.1-mini",
        "tools": tools,
        "messages": [
            {"role": "user", "content": "weather in Paris"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21C"}
        ]
    });
    let body: Value = post_chat(&client(), &base, KEY, &follow_up)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Tool said: sunny, 21C"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    for choice in [
        json!("none"),
        json!({"type": "function", "function": {"name": "other"}}),
    ] {
        let request = json!({
            "model": "gpt-4.1-mini", "tools": tools, "tool_choice": choice,
            "messages": [{"role": "user", "content": "hi"}]
        });
        let body: Value = post_chat(&client(), &base, KEY, &request)
            .await
            .json()
            .await
            .unwrap();
        let message = &body["choices"][0]["message"];
        if choice == "none" {
            assert!(message["content"].is_string() && message.get("tool_calls").is_none());
        } else {
            assert_eq!(message["tool_calls"][0]["function"]["name"], "other");
        }
    }
}

#[tokio::test]
async fn streamed_tool_call_sends_header_then_argument_fragments() {
    let (_sim, base) = sim().await;
    let request = json!({
        "model": "o4-mini",
        "stream": true,
        "tools": [{"type": "function", "function": {"name": "lookup"}}],
        "messages": [{"role": "user", "content": "find the llmhost docs"}]
    });
    let response = post_chat(&client(), &base, KEY, &request).await;
    let chunks = stream_chunks(&response.text().await.unwrap());
    let first = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(first["index"], 0);
    assert!(first["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(first["type"], "function");
    assert_eq!(
        first["function"],
        json!({"name": "lookup", "arguments": ""})
    );

    let fragments: Vec<&str> = chunks[1..chunks.len() - 1]
        .iter()
        .map(|c| {
            let call = &c["choices"][0]["delta"]["tool_calls"][0];
            assert_eq!(call["index"], 0);
            assert!(call.get("id").is_none());
            call["function"]["arguments"].as_str().unwrap()
        })
        .collect();
    assert!(fragments.len() > 1);
    let arguments: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(arguments, json!({"query": "find the llmhost docs"}));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn max_tokens_truncates_with_finish_reason_length() {
    let (_sim, base) = sim().await;
    for field in ["max_tokens", "max_completion_tokens"] {
        let request = json!({
            "model": "gpt-4o",
            field: 4,
            "messages": [{"role": "user", "content": "tell me a long story"}]
        });
        let body: Value = post_chat(&client(), &base, KEY, &request)
            .await
            .json()
            .await
            .unwrap();
        let content = body["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(o200k(content), 4);
        assert!("Hello from the llmhost simulator.".starts_with(content));
        assert_eq!(body["usage"]["completion_tokens"], 4);
    }
    let request = json!({
        "model": "gpt-4o", "stream": true, "max_tokens": 3,
        "messages": [{"role": "user", "content": "hi"}]
    });
    let response = post_chat(&client(), &base, KEY, &request).await;
    let chunks = stream_chunks(&response.text().await.unwrap());
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
}

#[tokio::test]
async fn models_are_listed_and_retrievable() {
    let (_sim, base) = sim().await;
    let http = client();
    let response = http
        .get(format!("{base}/models"))
        .bearer_auth("sk-x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, openai_models());
    for model in data {
        assert_eq!(model["object"], "model");
        assert_eq!(model["owned_by"], "openai");
        assert!(model["created"].as_u64().unwrap() > 1_600_000_000);
    }
    assert!(openai_models().contains(&"gpt-4o-mini") && openai_models().len() == 18);

    let one: Value = http
        .get(format!("{base}/models/o3"))
        .bearer_auth("sk-x")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], "o3");
    let missing = http
        .get(format!("{base}/models/nope"))
        .bearer_auth("sk-x")
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(missing).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("model_not_found"))
    );
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let (sim, base) = sim().await;
    let http = client();
    let response = http
        .post(format!("{base}/completions/nope"))
        .bearer_auth("sk-x")
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 404);
    assert_eq!(error["message"], "Invalid URL (POST /v1/completions/nope)");

    let response = http
        .get(format!("http://{}/nobody/v1/models", sim.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let recorded = sim.requests();
    assert_eq!(recorded[0].vendor, Some(Vendor::OpenAi));
    assert_eq!(recorded[1].vendor, None);
}
