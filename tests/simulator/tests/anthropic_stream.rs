//! Anthropic's named-event streams over real HTTP: event order, cumulative
//! usage, tool input fragments, thinking, and errors inside a 200 stream.

mod common;

use common::{client, named_events, o200k, post_anthropic};
use llmhost_simulator::{
    Reply, Simulator, Vendor, anthropic_error_event, anthropic_stream_events, sse_event,
};
use serde_json::{Value, json};

async fn sim() -> (Simulator, String) {
    let sim = Simulator::start().await.expect("start simulator");
    let base = sim.base_url(Vendor::Anthropic);
    (sim, base)
}

fn request(text: &str) -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 2048,
        "stream": true,
        "messages": [{"role": "user", "content": text}]
    })
}

async fn stream(base: &str, body: &Value) -> Vec<(String, Value)> {
    let response = post_anthropic(&client(), base, "/v1/messages", body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(response.headers().contains_key("request-id"));
    named_events(&response.text().await.unwrap())
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

/// The concatenated `field` of every delta of `delta_type` in block `index`.
fn deltas(events: &[(String, Value)], index: u64, delta_type: &str, field: &str) -> Vec<String> {
    events
        .iter()
        .filter(|(name, data)| {
            name == "content_block_delta"
                && data["index"] == index
                && data["delta"]["type"] == delta_type
        })
        .map(|(_, data)| data["delta"][field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn text_stream_follows_the_event_sequence_with_cumulative_usage() {
    let (_sim, base) = sim().await;
    let events = stream(&base, &request("stream me")).await;
    let answer = "Hello from the llmhost simulator. You said: stream me";
    let pieces = deltas(&events, 0, "text_delta", "text");
    assert!(pieces.len() > 3);
    assert_eq!(pieces.concat(), answer);

    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", pieces.len()));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names(&events), expected);

    let start = &events[0].1["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_01"));
    assert_eq!(start["type"], "message");
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["model"], "claude-haiku-4-5");
    assert_eq!(start["content"], json!([]));
    assert!(start["stop_reason"].is_null());
    assert_eq!(start["usage"]["input_tokens"], o200k("stream me"));
    assert_eq!(start["usage"]["output_tokens"], 1);

    assert_eq!(
        events[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(events[2].1, json!({"type": "ping"}));
    let stop = &events[events.len() - 3].1;
    assert_eq!(stop, &json!({"type": "content_block_stop", "index": 0}));
    // output_tokens is the running total, not an increment on message_start's 1.
    assert_eq!(
        events[events.len() - 2].1,
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": o200k(answer)}
        })
    );
    assert_eq!(events[events.len() - 1].1, json!({"type": "message_stop"}));

    // The same body without streaming reports the same usage.
    let mut body = request("stream me");
    body["stream"] = json!(false);
    let whole: Value = post_anthropic(&client(), &base, "/v1/messages", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(whole["usage"]["output_tokens"], o200k(answer));
    assert_eq!(
        whole["usage"]["input_tokens"],
        start["usage"]["input_tokens"]
    );
}

#[tokio::test]
async fn tool_input_arrives_as_json_fragments_that_reassemble() {
    let (_sim, base) = sim().await;
    let mut body = request("find the llmhost docs");
    body["tools"] = json!([{"name": "lookup", "input_schema": {"type": "object"}}]);
    let events = stream(&base, &body).await;
    let start = &events[1].1;
    assert_eq!(start["type"], "content_block_start");
    let block = &start["content_block"];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_01"));
    assert_eq!(block["name"], "lookup");
    assert_eq!(block["input"], json!({}));

    let fragments = deltas(&events, 0, "input_json_delta", "partial_json");
    assert_eq!(fragments[0], "", "Anthropic opens with an empty fragment");
    assert!(fragments.len() > 3, "{fragments:?}");
    let input: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(input, json!({"query": "find the llmhost docs"}));

    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        delta["usage"]["output_tokens"],
        o200k(&json!({"query": "find the llmhost docs"}).to_string())
    );
}

#[tokio::test]
async fn thinking_streams_first_then_its_signature_then_text() {
    let (_sim, base) = sim().await;
    let mut body = request("hi");
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let events = stream(&base, &body).await;
    assert_eq!(
        events[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}})
    );
    assert_eq!(events[2].0, "ping");
    let thought = "The user greeted me; I should answer briefly.";
    assert_eq!(
        deltas(&events, 0, "thinking_delta", "thinking").concat(),
        thought
    );
    let signatures = deltas(&events, 0, "signature_delta", "signature");
    assert_eq!(signatures.len(), 1);
    assert!(signatures[0].len() > 50);

    // The signature closes the thinking block, and text follows as block 1.
    let signature_at = events
        .iter()
        .position(|(_, d)| d["delta"]["type"] == "signature_delta")
        .unwrap();
    assert_eq!(
        events[signature_at + 1].1,
        json!({"type": "content_block_stop", "index": 0})
    );
    assert_eq!(
        events[signature_at + 2].1,
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})
    );
    let answer = "Hello from the llmhost simulator. You said: hi";
    assert_eq!(deltas(&events, 1, "text_delta", "text").concat(), answer);
    assert_eq!(
        events[events.len() - 2].1["usage"]["output_tokens"],
        o200k(thought) + o200k(answer)
    );
}

#[tokio::test]
async fn recipes_script_an_error_inside_a_200_stream() {
    let (sim, base) = sim().await;
    let mut events = anthropic_stream_events("claude-sonnet-4-5", "hi");
    let full = named_events(&events.concat());
    assert_eq!(full.first().unwrap().0, "message_start");
    assert_eq!(full.last().unwrap().0, "message_stop");
    assert_eq!(full[0].1["message"]["model"], "claude-sonnet-4-5");

    events.truncate(5);
    events.push(anthropic_error_event("overloaded_error", "Overloaded"));
    sim.enqueue(Vendor::Anthropic, Reply::sse(events));

    // Scripted replies are sent as-is: a 200 with no request-id of its own.
    let response = post_anthropic(&client(), &base, "/v1/messages", &request("ignored")).await;
    assert_eq!(response.status(), 200);
    let got = named_events(&response.text().await.unwrap());
    assert_eq!(
        names(&got),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        got[5].1,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    assert!(!names(&got).contains(&"message_stop"));
}

#[test]
fn sse_event_formats_a_named_event() {
    assert_eq!(
        sse_event("ping", &json!({"type": "ping"})),
        "event: ping\ndata: {\"type\":\"ping\"}\n\n"
    );
    assert_eq!(
        anthropic_error_event("api_error", "boom"),
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"boom\"}}\n\n"
    );
}
