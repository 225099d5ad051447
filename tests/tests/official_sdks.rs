//! The vendor simulator as the vendors' official Python SDKs (`openai`,
//! `anthropic`, installed by `scripts/sdk-clients` into a private virtual
//! environment) see it: chat, streams with usage, tool calls, and each
//! error status reaching the caller as the SDK's own exception class. The
//! simulator stands in for the vendors in every other test, so what these
//! clients accept is the protocol the providers are tested against; the
//! gateway's tests will drive `llmhost serve` with the same harness.

use llmhost_simulator::{Reply, Simulator, Vendor};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The interpreter with the official SDKs, installed once per run.
fn sdk_python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let output = Command::new("bash")
            .arg(repo().join("scripts/sdk-clients"))
            .output()
            .expect("bash runs");
        assert!(
            output.status.success(),
            "scripts/sdk-clients failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8(output.stdout).expect("a path").trim())
    })
}

/// Runs one case of `tests/sdk_clients/drive.py` against `base_url`.
async fn drive(case: &str, base_url: String) -> Value {
    let case = case.to_owned();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(sdk_python())
            .arg(repo().join("tests/sdk_clients/drive.py"))
            .arg(&case)
            .arg(&base_url)
            .output()
            .expect("python runs");
        assert!(
            output.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("one JSON object")
    })
    .await
    .expect("join")
}

fn assert_answered(case: &str, answer: &Value, said: &str) {
    let content = answer["content"].as_str().expect("content");
    assert!(content.contains(said), "{case}: {answer}");
    assert!(
        answer["prompt_tokens"].as_u64().is_some_and(|n| n > 0),
        "{case}: {answer}"
    );
    assert!(
        answer["completion_tokens"].as_u64().is_some_and(|n| n > 0),
        "{case}: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_openai_sdk_reads_chat_streams_tools_and_errors() {
    let sim = Simulator::start().await.expect("simulator");
    let base = sim.base_url(Vendor::OpenAi);
    let chat = drive("openai-chat", base.clone()).await;
    assert_answered("openai-chat", &chat, "Hello SDK");
    assert_eq!(chat["finish_reason"], "stop");
    let stream = drive("openai-stream", base.clone()).await;
    assert_answered("openai-stream", &stream, "Stream SDK");
    assert_eq!(stream["finish_reason"], "stop");
    let tools = drive("openai-tools", base.clone()).await;
    assert_eq!(tools["finish_reason"], "tool_calls", "{tools}");
    assert_eq!(tools["tool"], "get_weather");
    assert!(tools["arguments"].is_object(), "{tools}");

    for (status, kind, class) in [
        (400, "invalid_request_error", "BadRequestError"),
        (401, "invalid_request_error", "AuthenticationError"),
        (403, "permission_denied", "PermissionDeniedError"),
        (429, "rate_limit_exceeded", "RateLimitError"),
    ] {
        sim.enqueue(
            Vendor::OpenAi,
            Reply::openai_error(status, kind, None, "scripted").header("retry-after", "1"),
        );
        let error = drive("openai-error", base.clone()).await;
        assert_eq!(error["error"], class, "{status}: {error}");
        assert_eq!(error["status"], status);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_anthropic_sdk_reads_messages_streams_and_errors() {
    let sim = Simulator::start().await.expect("simulator");
    let base = sim.base_url(Vendor::Anthropic);
    let chat = drive("anthropic-chat", base.clone()).await;
    assert_answered("anthropic-chat", &chat, "Hello SDK");
    assert_eq!(chat["finish_reason"], "end_turn");
    let stream = drive("anthropic-stream", base.clone()).await;
    assert_answered("anthropic-stream", &stream, "Stream SDK");
    assert_eq!(stream["finish_reason"], "end_turn");

    for (status, kind, class) in [
        (400, "invalid_request_error", "BadRequestError"),
        (401, "authentication_error", "AuthenticationError"),
        (403, "permission_error", "PermissionDeniedError"),
        (429, "rate_limit_error", "RateLimitError"),
        (529, "overloaded_error", "OverloadedError"),
    ] {
        sim.enqueue(
            Vendor::Anthropic,
            Reply::anthropic_error(status, kind, "scripted"),
        );
        let error = drive("anthropic-error", base.clone()).await;
        assert_eq!(error["error"], class, "{status}: {error}");
        assert_eq!(error["status"], status);
    }
}
