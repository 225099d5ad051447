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
