//! Contract versions side by side, and the host's HTTP on the wire: the
//! 0.1 fixture (a plugin doing its own HTTP) serves beside the 0.2
//! built-ins (the host doing it), and every request the host sends is
//! framed as the vendors' own SDKs frame theirs: a `content-length`, never
//! chunked, and a `user-agent`.

mod common;

use common::{builder, installed_dir};
use llmhost::types::{ChatRequest, Chunk};
use llmhost::{Host, Target};
use llmhost_simulator::{RecordedRequest, Simulator, Vendor};
use llmhost_tests::plugins;
use std::path::Path;
use std::time::Duration;

/// The built-ins, each with its simulated vendor and a model it serves.
const BUILTINS: &[(&str, Vendor, &str)] = &[
    ("openai", Vendor::OpenAi, "gpt-4o-mini"),
    ("deepseek", Vendor::DeepSeek, "deepseek-chat"),
    ("grok", Vendor::XAi, "grok-3"),
    ("claude", Vendor::Anthropic, "claude-sonnet-4-5"),
];

fn target(id: &str, sim: &Simulator, vendor: Vendor) -> Target {
    let mut target = Target::new(id)
        .base_url(sim.base_url(vendor))
        .api_key("sk-contract-test")
        .timeout(Duration::from_secs(20));
    target.use_env = false;
    target
}

/// The 0.1 fixture, installed with the key granted (a 0.1 plugin sends
/// its own requests, so it must see the key).
async fn fixture_dir() -> tempfile::TempDir {
    installed_dir(&[(plugins::OPENAI_V0_1, common::key_grant())]).await
}

/// A chat and a stream; the stream's text.
async fn chat_and_stream(host: &Host, target: &Target, model: &str) -> String {
    let request = ChatRequest::simple(model, "Say hello");
    let answer = host.chat(target, &request).await.expect("chat");
    assert!(!answer.response.content.is_empty());
    assert!(answer.cost_usd.is_some(), "priced from the catalogue");
    let mut stream = host.stream(target, &request).await.expect("stream");
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        if let Chunk::Text(piece) = chunk.expect("chunk") {
            text.push_str(&piece);
        }
    }
    assert!(stream.usage().is_some());
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_0_1_plugin_serves_chat_and_stream_beside_0_2_plugins() {
    let sim = Simulator::start().await.expect("simulator");
    let dir = fixture_dir().await;
    let host = builder()
        .plugin_dir(dir.path())
        .build()
        .await
        .expect("host");
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());

    let versions: Vec<(String, String)> = host
        .plugins()
        .into_iter()
        .map(|p| (p.id, p.wit_version))
        .collect();
    let version_of = |id: &str| {
        versions
            .iter()
            .find(|(plugin, _)| plugin == id)
            .map(|(_, v)| v.clone())
            .expect("loaded")
    };
    assert_eq!(version_of("openai-v01"), "0.1.0");
    for (id, _, _) in BUILTINS {
        assert_eq!(version_of(id), "0.2.0", "{id}");
    }
    let (_, inspected, _) = host
        .inspect(Path::new(plugins::OPENAI_V0_1))
        .await
        .expect("inspect");
    assert_eq!(inspected, "0.1.0");

    // Both at once, against the same simulated vendor.
    let old = target("openai-v01", &sim, Vendor::OpenAi);
    let new = target("openai", &sim, Vendor::OpenAi);
    let (old_text, new_text) = tokio::join!(
        chat_and_stream(&host, &old, "gpt-4o-mini"),
        chat_and_stream(&host, &new, "gpt-4o-mini"),
    );
    assert_eq!(old_text, new_text, "the same vendor answers both the same");
    assert_eq!(sim.requests().len(), 4);

    // Vendor parameters need 0.2: a 0.1 plugin refuses them rather than
    // dropping them, and sends nothing.
    let mut request = ChatRequest::simple("gpt-4o-mini", "Say hello");
    request.vendor_params = Some(r#"{"seed": 7}"#.into());
    let refused = host.chat(&old, &request).await.expect_err("refused");
    assert_eq!(refused.kind(), "invalid_config");
    assert!(refused.to_string().contains("0.2"), "{refused}");
    assert_eq!(sim.requests().len(), 4);
    let answer = host.chat(&new, &request).await.expect("0.2 takes them");
    assert!(!answer.response.content.is_empty());
    let body = sim.requests().pop().expect("sent").json().expect("json");
    assert_eq!(body["seed"], 7);
}

/// Asserts a request was framed as the vendors' SDKs frame theirs.
fn framed_like_an_sdk(request: &RecordedRequest) {
    assert!(
        request.header("transfer-encoding").is_none(),
        "{} {}: chunked",
        request.method,
        request.path
    );
    if request.method == "POST" {
        assert_eq!(
            request.header("content-length"),
            Some(request.body.len().to_string().as_str()),
            "{}",
            request.path
        );
    }
    let agent = request.header("user-agent").expect("a user-agent");
    assert!(agent.starts_with("llmhost/"), "{agent}");
    assert!(request.header("x-client-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_built_in_frames_requests_with_a_length_and_a_user_agent() {
    let sim = Simulator::start().await.expect("simulator");
    // As strict servers and proxies do: a chunked body is refused.
    sim.set_reject_chunked(true);
    let dir = fixture_dir().await;
    let host = builder()
        .plugin_dir(dir.path())
        .build()
        .await
        .expect("host");
    for (id, vendor, model) in BUILTINS {
        let target = target(id, &sim, *vendor);
        chat_and_stream(&host, &target, model).await;
        host.health(&target).await.expect("health");
    }
    let recorded = sim.requests();
    assert_eq!(recorded.len(), BUILTINS.len() * 3);
    for request in &recorded {
        framed_like_an_sdk(request);
    }
    // Each call had its own id.
    let mut ids: Vec<&str> = recorded
        .iter()
        .filter_map(|r| r.header("x-client-request-id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), recorded.len());

    // The 0.1 fixture streams its body out chunked, which the strict
    // server refuses: what the host's own HTTP fixed.
    let refused = host
        .chat(
            &target("openai-v01", &sim, Vendor::OpenAi),
            &ChatRequest::simple("gpt-4o-mini", "Say hello"),
        )
        .await
        .expect_err("a strict server refuses a chunked body");
    assert_eq!(
        refused.detail().and_then(|d| d.status),
        Some(411),
        "{refused}"
    );
    let last = sim.requests().pop().expect("recorded");
    assert_eq!(last.header("transfer-encoding"), Some("chunked"));
}
