//! Helpers shared by the integration tests: a plain HTTP client and an SSE
//! splitter, so the tests see exactly what a vendor client would.

#![allow(dead_code)]

use serde_json::Value;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("build HTTP client")
}

pub async fn post_chat(
    client: &reqwest::Client,
    base: &str,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = client
        .post(format!("{base}/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("send chat request")
}

/// Splits an SSE body into its events' `data:` payloads, checking that each
/// event is exactly `data: ...\n\n`.
pub fn sse_payloads(body: &str) -> Vec<String> {
    assert!(
        body.ends_with("\n\n"),
        "stream must end with a blank line: {body:?}"
    );
    body.split_terminator("\n\n")
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event without data prefix: {event:?}"))
                .to_owned()
        })
        .collect()
}

/// The JSON chunks of a chat stream, checking it ends with `[DONE]`.
pub fn stream_chunks(body: &str) -> Vec<Value> {
    let mut payloads = sse_payloads(body);
    assert_eq!(payloads.pop().as_deref(), Some("[DONE]"));
    payloads
        .iter()
        .map(|p| serde_json::from_str(p).expect("chunk is JSON"))
        .collect()
}

pub fn o200k(text: &str) -> u64 {
    tiktoken_rs::o200k_base_singleton()
        .encode_ordinary(text)
        .len() as u64
}

/// Posts `body` to `{base}{path}` with the headers Anthropic requires.
pub async fn post_anthropic(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    client
        .post(format!("{base}{path}"))
        .header("x-api-key", "sk-ant-test-123")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("send Anthropic request")
}

/// Splits a named-event SSE body into `(event name, data)` pairs, checking
/// each event is exactly `event: NAME\ndata: {json}\n\n` and that the name
/// matches the data's `type`.
pub fn named_events(body: &str) -> Vec<(String, Value)> {
    assert!(body.ends_with("\n\n"), "stream must end with a blank line");
    body.split_terminator("\n\n")
        .map(|event| {
            let (name_line, data_line) = event
                .split_once('\n')
                .unwrap_or_else(|| panic!("event without two lines: {event:?}"));
            let name = name_line
                .strip_prefix("event: ")
                .unwrap_or_else(|| panic!("event without a name: {event:?}"));
            let data = data_line
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event without data: {event:?}"));
            let data: Value = serde_json::from_str(data).expect("event data is JSON");
            assert_eq!(data["type"], name, "{event}");
            (name.to_owned(), data)
        })
        .collect()
}
