//! A strict simulator refuses chunked request bodies with 411, as servers
//! and proxies in front of vendor APIs do, and records the refused request.

mod common;

use common::{client, post_chat};
use llmhost_simulator::{Reply, Simulator, Vendor};
use serde_json::{Value, json};

fn chat_body() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hi"}]
    })
}

/// Posts `body` to `url` as a stream of pieces of unknown length, which
/// HTTP/1.1 clients frame as `transfer-encoding: chunked`.
async fn post_chunked(url: &str, key_header: (&str, &str), body: &Value) -> reqwest::Response {
    let text = body.to_string();
    let (head, tail) = text.split_at(text.len() / 2);
    let pieces: Vec<Result<String, std::io::Error>> =
        vec![Ok(head.to_owned()), Ok(tail.to_owned())];
    client()
        .post(url)
        .header(key_header.0, key_header.1)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .expect("send chunked request")
}

async fn post_openai_chunked(sim: &Simulator) -> reqwest::Response {
    let url = format!("{}/chat/completions", sim.base_url(Vendor::OpenAi));
    post_chunked(&url, ("authorization", "Bearer sk-test-1"), &chat_body()).await
}

#[tokio::test]
async fn a_strict_simulator_answers_a_chunked_body_with_411_and_records_it() {
    let sim = Simulator::start().await.expect("start simulator");
    sim.set_reject_chunked(true);
    let response = post_openai_chunked(&sim).await;
    assert_eq!(response.status(), 411);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(
        body,
        json!({"error": {
            "message": "A request body must be sent with Content-Length; chunked transfer encoding is not accepted.",
            "type": "invalid_request_error",
            "param": null,
            "code": "length_required",
        }})
    );

    let recorded = sim.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].vendor, Some(Vendor::OpenAi));
    assert_eq!(recorded[0].path, "/openai/v1/chat/completions");
    assert_eq!(recorded[0].header("transfer-encoding"), Some("chunked"));
    assert_eq!(recorded[0].header("content-length"), None);
    assert_eq!(recorded[0].json(), Some(chat_body()));
}

#[tokio::test]
async fn a_strict_simulator_serves_sized_bodies_as_usual() {
    let sim = Simulator::start().await.expect("start simulator");
    sim.set_reject_chunked(true);
    let response = post_chat(
        &client(),
        &sim.base_url(Vendor::OpenAi),
        Some("sk-test-1"),
        &chat_body(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let recorded = sim.requests();
    let length = chat_body().to_string().len().to_string();
    assert_eq!(recorded[0].header("content-length"), Some(&*length));
}

#[tokio::test]
async fn chunked_bodies_are_served_until_strictness_is_turned_on_and_after_it_is_off() {
    let sim = Simulator::start().await.expect("start simulator");
    assert_eq!(post_openai_chunked(&sim).await.status(), 200);
    sim.set_reject_chunked(true);
    assert_eq!(post_openai_chunked(&sim).await.status(), 411);
    sim.set_reject_chunked(false);
    assert_eq!(post_openai_chunked(&sim).await.status(), 200);
    assert_eq!(sim.requests().len(), 3);
}

#[tokio::test]
async fn every_vendor_prefix_is_strict_and_a_refusal_leaves_scripted_replies_queued() {
    let sim = Simulator::start().await.expect("start simulator");
    sim.set_reject_chunked(true);
    sim.enqueue(
        Vendor::Anthropic,
        Reply::anthropic_error(529, "overloaded_error", "Overloaded"),
    );
    let url = format!("{}/v1/messages", sim.base_url(Vendor::Anthropic));
    let body = json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Hi"}]
    });
    let response = post_chunked(&url, ("x-api-key", "sk-ant-test-1"), &body).await;
    assert_eq!(response.status(), 411);
    let error: Value = response.json().await.expect("error body is JSON");
    assert_eq!(error["error"]["code"], "length_required");
    assert_eq!(sim.pending(Vendor::Anthropic), 1);
}
