//! The xAI protocol over real HTTP: usage position in streams, reasoning
//! accounting and xAI's string error bodies.

mod common;

use common::{client, o200k, post_chat, stream_chunks};
use llmhost_simulator::{Reply, Simulator, Vendor, xai_models};
use serde_json::{Value, json};

const KEY: Option<&str> = Some("xai-test-key-abc");

async fn sim() -> (Simulator, String) {
    let sim = Simulator::start().await.expect("start simulator");
    let base = sim.base_url(Vendor::XAi);
    (sim, base)
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn streamed(model: &str, include_usage: bool) -> Value {
    let mut request = json!({
        "model": model,
        "stream": true,
        "messages": [{"role": "user", "content": "stream please"}]
    });
    if include_usage {
        request["stream_options"] = json!({"include_usage": true});
    }
    request
}

#[tokio::test]
async fn default_answer_has_xai_usage_and_rate_limit_headers() {
    let (sim, base) = sim().await;
    assert_eq!(base, format!("http://{}/xai/v1", sim.addr()));
    let response = post_chat(&client(), &base, KEY, &chat("grok-3", "hello grok")).await;
    assert_eq!(response.status(), 200);
    for name in [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
    ] {
        assert!(response.headers().contains_key(name), "{name}");
    }
    let body: Value = response.json().await.unwrap();
    let answer = "Hello from the llmhost simulator. You said: hello grok";
    assert_eq!(
        body["choices"][0]["message"],
        json!({"role": "assistant", "content": answer})
    );
    let prompt = o200k("hello grok") + 3 + 3;
    let completion = o200k(answer);
    assert_eq!(
        body["usage"],
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {
                "text_tokens": prompt, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 0
            },
            "completion_tokens_details": {
                "reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
            },
            "num_sources_used": 0
        })
    );
}

#[tokio::test]
async fn streamed_usage_is_second_to_last_followed_by_an_empty_chunk() {
    let (_sim, base) = sim().await;
    let response = post_chat(
        &client(),
        &base,
        KEY,
        &streamed("grok-4-fast-non-reasoning", true),
    )
    .await;
    let chunks = stream_chunks(&response.text().await.unwrap());
    let n = chunks.len();
    assert!(n > 4);

    let finish = chunks
        .iter()
        .position(|c| c["choices"][0]["finish_reason"].is_string())
        .unwrap();
    assert_eq!(chunks[finish]["choices"][0]["finish_reason"], "stop");
    let with_usage: Vec<usize> = (0..n)
        .filter(|&i| chunks[i].get("usage").is_some())
        .collect();
    assert_eq!(
        with_usage,
        [n - 2],
        "usage only in the second-to-last chunk"
    );
    assert!(finish < n - 2, "usage comes after the finish reason");
    assert!(chunks[n - 2]["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let last = &chunks[n - 1];
    assert!(last.get("usage").is_none());
    let choices = last["choices"].as_array().unwrap();
    assert!(choices.is_empty(), "{last}");

    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        "Hello from the llmhost simulator. You said: stream please"
    );
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_and_no_trailing_chunk() {
    let (_sim, base) = sim().await;
    let response = post_chat(&client(), &base, KEY, &streamed("grok-3", false)).await;
    let chunks = stream_chunks(&response.text().await.unwrap());
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[tokio::test]
async fn grok_3_mini_shows_reasoning_counted_apart_from_completion() {
    let (_sim, base) = sim().await;
    let reasoning = "The user greeted me; I should answer briefly.";
    let body: Value = post_chat(&client(), &base, KEY, &chat("grok-3-mini", "hi"))
        .await
        .json()
        .await
        .unwrap();
    let message = &body["choices"][0]["message"];
    assert_eq!(message["reasoning_content"], reasoning);
    let usage = &body["usage"];
    let answer = o200k("Hello from the llmhost simulator. You said: hi");
    assert_eq!(usage["completion_tokens"], answer);
    assert_eq!(
        usage["completion_tokens_details"]["reasoning_tokens"],
        o200k(reasoning)
    );
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + answer + o200k(reasoning)
    );

    let response = post_chat(&client(), &base, KEY, &streamed("grok-3-mini", true)).await;
    let chunks = stream_chunks(&response.text().await.unwrap());
    let thought: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(thought, reasoning);

    // grok-4 reasons without showing it.
    let body: Value = post_chat(&client(), &base, KEY, &chat("grok-4", "hi"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["choices"][0]["message"]
            .get("reasoning_content")
            .is_none()
    );
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        o200k(reasoning)
    );
}

#[tokio::test]
async fn bad_key_is_a_400_with_a_string_error() {
    let (_sim, base) = sim().await;
    let http = client();
    let response = post_chat(&http, &base, None, &chat("grok-3", "hi")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({
            "code": "Client specified an invalid argument",
            "error": "Incorrect API key provided: ***. You can obtain an API key from https://console.x.ai."
        })
    );
    let response = http
        .post(format!("{base}/chat/completions"))
        .header("authorization", "Token xai-abcdefbc")
        .body(chat("grok-3", "hi").to_string())
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("Incorrect API key provided: xa***bc.")
    );
}

#[tokio::test]
async fn unknown_model_is_404_and_models_are_listed() {
    let (_sim, base) = sim().await;
    let http = client();
    let response = post_chat(&http, &base, KEY, &chat("grok-99", "hi")).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "Some requested entity was not found");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.starts_with("The model grok-99 does not exist or your team"),
        "{message}"
    );

    let list: Value = http
        .get(format!("{base}/models"))
        .bearer_auth("k")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["owned_by"], "xai");
            m["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids, xai_models());
    assert_eq!(
        xai_models(),
        [
            "grok-4.5",
            "grok-4.3",
            "grok-4.20-0309-reasoning",
            "grok-4",
            "grok-4-fast-reasoning",
            "grok-4-fast-non-reasoning",
            "grok-code-fast-1",
            "grok-3",
            "grok-3-mini"
        ]
    );
    let missing = http
        .get(format!("{base}/models/grok-0"))
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn invalid_bodies_and_scripted_errors_use_the_xai_shape() {
    let (sim, base) = sim().await;
    let http = client();
    let response = post_chat(&http, &base, KEY, &json!({"model": "grok-3"})).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "Client specified an invalid argument");
    assert!(body["error"].is_string());

    sim.enqueue(
        Vendor::XAi,
        Reply::xai_error(429, "Too many requests", "Rate limit exceeded")
            .header("retry-after", "3"),
    );
    let response = post_chat(&http, &base, KEY, &chat("grok-3", "hi")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"code":"Too many requests","error":"Rate limit exceeded"}"#
    );
}
