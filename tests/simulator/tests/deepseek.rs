//! The DeepSeek protocol over real HTTP: both path styles, reasoning, usage
//! extras, the keep-alive / blank-line / zero-usage quirks and errors.

mod common;

use common::{client, o200k, post_chat, stream_chunks};
use llmhost_simulator::{
    DeepSeekQuirks, Reply, Simulator, Vendor, deepseek_completion, deepseek_models,
    deepseek_stream_events,
};
use serde_json::{Value, json};

const KEY: Option<&str> = Some("sk-deepseek-test-abcd");
const REASONING: &str = "The user greeted me; I should answer briefly.";

async fn sim() -> (Simulator, String) {
    let sim = Simulator::start().await.expect("start simulator");
    let base = sim.base_url(Vendor::DeepSeek);
    (sim, base)
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn streamed(model: &str, text: &str) -> Value {
    json!({
        "model": model,
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": text}]
    })
}

/// Removes the keep-alive comments a DeepSeek stream may start with,
/// returning how many there were.
fn strip_keepalives(body: &str) -> (usize, &str) {
    let mut rest = body;
    let mut count = 0;
    while let Some(tail) = rest.strip_prefix(": keep-alive\n\n") {
        rest = tail;
        count += 1;
    }
    (count, rest)
}

#[tokio::test]
async fn base_url_has_no_v1_and_both_path_styles_answer() {
    let (sim, base) = sim().await;
    assert_eq!(base, format!("http://{}/deepseek", sim.addr()));
    let http = client();
    for root in [base.clone(), format!("{base}/v1")] {
        let response = post_chat(&http, &root, KEY, &chat("deepseek-chat", "hi")).await;
        assert_eq!(response.status(), 200, "{root}");
        let models: Value = http
            .get(format!("{root}/models"))
            .bearer_auth("k")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            models,
            json!({"object": "list", "data": [
                {"id": "deepseek-chat", "object": "model", "owned_by": "deepseek"},
                {"id": "deepseek-reasoner", "object": "model", "owned_by": "deepseek"},
                {"id": "deepseek-flash", "object": "model", "owned_by": "deepseek"},
                {"id": "deepseek-v4-pro", "object": "model", "owned_by": "deepseek"}
            ]})
        );
    }
    assert_eq!(
        deepseek_models(),
        [
            "deepseek-chat",
            "deepseek-reasoner",
            "deepseek-flash",
            "deepseek-v4-pro"
        ]
    );
}

#[tokio::test]
async fn chat_answer_has_cache_usage_and_no_rate_limit_headers() {
    let (_sim, base) = sim().await;
    let response = post_chat(&client(), &base, KEY, &chat("deepseek-chat", "Bonjour")).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-ds-trace-id"].len(), 32);
    assert!(
        !headers
            .keys()
            .any(|name| name.as_str().starts_with("x-ratelimit")),
        "DeepSeek sends no rate-limit headers: {headers:?}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"].as_str().unwrap().len(), 36, "a UUID");
    assert_eq!(body["object"], "chat.completion");
    let answer = "Hello from the llmhost simulator. You said: Bonjour";
    assert_eq!(
        body["choices"][0],
        json!({
            "index": 0,
            "message": {"role": "assistant", "content": answer},
            "logprobs": null,
            "finish_reason": "stop"
        })
    );
    let prompt = o200k("Bonjour") + 3 + 3;
    let completion = o200k(answer);
    assert_eq!(
        body["usage"],
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "prompt_cache_hit_tokens": 0,
            "prompt_cache_miss_tokens": prompt
        })
    );
}

#[tokio::test]
async fn reasoner_shows_reasoning_beside_content_and_ignores_temperature() {
    let (_sim, base) = sim().await;
    let mut request = chat("deepseek-reasoner", "hi");
    request["temperature"] = json!(7.5);
    request["top_p"] = json!(3);
    let response = post_chat(&client(), &base, KEY, &request).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let message = &body["choices"][0]["message"];
    let answer = "Hello from the llmhost simulator. You said: hi";
    assert_eq!(message["content"], answer);
    assert_eq!(message["reasoning_content"], REASONING);
    let usage = &body["usage"];
    assert_eq!(
        usage["completion_tokens_details"],
        json!({"reasoning_tokens": o200k(REASONING)})
    );
    assert_eq!(
        usage["completion_tokens"],
        o200k(REASONING) + o200k(answer),
        "reasoning counts as completion"
    );

    // The chat model does check its sampling parameters.
    let mut request = chat("deepseek-chat", "hi");
    request["temperature"] = json!(7.5);
    let response = post_chat(&client(), &base, KEY, &request).await;
    assert_eq!(response.status(), 422);
}

#[tokio::test]
async fn reasoner_streams_reasoning_pieces_then_content_pieces() {
    let (_sim, base) = sim().await;
    let response = post_chat(&client(), &base, KEY, &streamed("deepseek-reasoner", "hi")).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let chunks = stream_chunks(&response.text().await.unwrap());

    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"]["completion_tokens_details"]["reasoning_tokens"],
        o200k(REASONING)
    );
    for chunk in rest {
        assert!(chunk.get("usage").is_some() && chunk["usage"].is_null());
    }
    let deltas: Vec<&Value> = rest.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(
        deltas[0],
        &json!({"role": "assistant", "content": null, "reasoning_content": ""})
    );
    let (thinking, answering): (Vec<&Value>, Vec<&Value>) = deltas[1..deltas.len() - 1]
        .iter()
        .partition(|d| d["reasoning_content"].is_string());
    assert!(thinking.len() > 1 && answering.len() > 1);
    let first_answer = deltas
        .iter()
        .position(|d| d["content"].is_string())
        .unwrap();
    assert!(
        deltas[1..first_answer]
            .iter()
            .all(|d| d["reasoning_content"].is_string()),
        "all reasoning comes before the content"
    );
    for delta in &thinking {
        assert!(delta.get("content").is_some() && delta["content"].is_null());
    }
    for delta in &answering {
        assert!(delta.get("reasoning_content").is_some() && delta["reasoning_content"].is_null());
    }
    let text = |pieces: &[&Value], key: &str| -> String {
        pieces.iter().map(|d| d[key].as_str().unwrap()).collect()
    };
    assert_eq!(text(&thinking, "reasoning_content"), REASONING);
    assert_eq!(
        text(&answering, "content"),
        "Hello from the llmhost simulator. You said: hi"
    );
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn quirks_apply_to_default_answers() {
    let (sim, base) = sim().await;
    sim.set_deepseek_quirks(
        DeepSeekQuirks::new()
            .keepalives(3)
            .blank_lines(4)
            .zero_usage_placeholders(true),
    );
    let http = client();

    let body = post_chat(&http, &base, KEY, &streamed("deepseek-chat", "hi"))
        .await
        .text()
        .await
        .unwrap();
    let (keepalives, rest) = strip_keepalives(&body);
    assert_eq!(keepalives, 3);
    let chunks = stream_chunks(rest);
    let (usage_chunk, early) = chunks.split_last().unwrap();
    for chunk in early {
        assert_eq!(
            chunk["usage"],
            json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        );
    }
    assert!(usage_chunk["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let response = post_chat(&http, &base, KEY, &chat("deepseek-chat", "hi")).await;
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.text().await.unwrap();
    assert!(body.starts_with("\n\n\n\n{"), "{body:?}");
    let parsed: Value = serde_json::from_str(&body).expect("JSON after blank lines");
    assert_eq!(parsed["object"], "chat.completion");

    // Back to plain framing.
    sim.set_deepseek_quirks(DeepSeekQuirks::default());
    let body = post_chat(&http, &base, KEY, &streamed("deepseek-chat", "hi"))
        .await
        .text()
        .await
        .unwrap();
    assert!(body.starts_with("data: "));
    assert!(stream_chunks(&body)[0]["usage"].is_null());
}

#[tokio::test]
async fn recipes_script_one_quirky_answer() {
    let (sim, base) = sim().await;
    let quirks = DeepSeekQuirks::new()
        .keepalives(2)
        .zero_usage_placeholders(true);
    let events = deepseek_stream_events("deepseek-reasoner", "ping", &quirks);
    assert_eq!(events[..2], [": keep-alive\n\n", ": keep-alive\n\n"]);
    sim.enqueue(Vendor::DeepSeek, Reply::sse(events));
    sim.enqueue(
        Vendor::DeepSeek,
        deepseek_completion(
            "deepseek-chat",
            "ping",
            &DeepSeekQuirks::new().blank_lines(2),
        ),
    );
    let http = client();

    // Scripted replies stand in for the chat endpoint under either path.
    let body = post_chat(&http, &base, KEY, &chat("deepseek-chat", "other"))
        .await
        .text()
        .await
        .unwrap();
    let (keepalives, rest) = strip_keepalives(&body);
    assert_eq!(keepalives, 2);
    let chunks = stream_chunks(rest);
    assert_eq!(chunks[1]["usage"]["total_tokens"], 0);
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["delta"]["reasoning_content"].is_string())
    );
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], o200k("ping") + 3 + 3);

    let response = post_chat(
        &http,
        &format!("{base}/v1"),
        KEY,
        &chat("deepseek-chat", "x"),
    )
    .await;
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.text().await.unwrap();
    assert!(body.starts_with("\n\n{"));
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        parsed["choices"][0]["message"]["content"],
        "Hello from the llmhost simulator. You said: ping"
    );
    assert_eq!(sim.pending(Vendor::DeepSeek), 0);
}

#[tokio::test]
async fn errors_have_deepseek_bodies() {
    let (_sim, base) = sim().await;
    let http = client();
    let response = post_chat(&http, &base, None, &chat("deepseek-chat", "hi")).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"error": {
            "message": "Authentication Fails, Your api key: **** is invalid",
            "type": "authentication_error", "param": null, "code": "invalid_request_error"
        }})
    );

    let response = post_chat(&http, &base, KEY, &chat("deepseek-v9", "hi")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"error": {
            "message": "Model Not Exist", "type": "invalid_request_error",
            "param": null, "code": "invalid_request_error"
        }})
    );

    let malformed = http
        .post(format!("{base}/chat/completions"))
        .bearer_auth("k")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let invalid = post_chat(
        &http,
        &base,
        KEY,
        &json!({"model": "deepseek-chat", "messages": []}),
    )
    .await;
    assert_eq!(invalid.status(), 422);
    let body: Value = invalid.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request_error");
}

#[tokio::test]
async fn scripted_errors_use_the_deepseek_shape() {
    let (sim, base) = sim().await;
    sim.enqueue(
        Vendor::DeepSeek,
        Reply::deepseek_error(402, "unknown_error", "Insufficient Balance"),
    );
    sim.enqueue(
        Vendor::DeepSeek,
        Reply::deepseek_error(503, "unknown_error", "Server Overloaded"),
    );
    let http = client();
    let response = post_chat(&http, &base, KEY, &chat("deepseek-chat", "hi")).await;
    assert_eq!(response.status(), 402);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"error":{"message":"Insufficient Balance","type":"unknown_error","param":null,"code":"invalid_request_error"}}"#
    );
    let response = post_chat(&http, &base, KEY, &chat("deepseek-chat", "hi")).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Server Overloaded");
}
