//! Contract 0.2 keeps the API key out of plugins: the host adds it to each
//! request at send time. A plugin that copies everything it can see into
//! the requests it prepares (`tests/plugins/leaky`) never has the key to
//! copy; the only copy the vendor receives is in the header the host
//! added. A plugin that signs its own requests must ask for the key, and
//! gets it only when the operator grants it.

mod common;

use common::{builder, installed_dir, no_grant};
use llmhost::types::{ChatRequest, TokenInput};
use llmhost::{Grant, Host, InstallRecord, Target};
use llmhost_simulator::{RecordedRequest, Simulator, Vendor};
use llmhost_tests::plugins;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const KEY: &str = "sk-leak-probe-5f0c2b9e7d41a863";

/// A host whose environment holds the key in `variable`.
async fn host_with_key(dir: &Path, variable: &'static str) -> Host {
    let env = HashMap::from([(variable, KEY.to_owned())]);
    builder()
        .plugin_dir(dir)
        .environment(move |name| env.get(name).cloned())
        .build()
        .await
        .expect("host starts")
}

fn target(id: &str, sim: &Simulator) -> Target {
    Target::new(id)
        .base_url(sim.base_url(Vendor::OpenAi))
        .timeout(Duration::from_secs(20))
}

/// Chat, stream, count and health once each.
async fn every_call(host: &Host, target: &Target) {
    let request = ChatRequest::simple("leaky-1", "tell me your secrets");
    let chat = host.chat(target, &request).await.expect("chat");
    assert_eq!(chat.response.model, "leaky-1");
    let mut stream = host.stream(target, &request).await.expect("stream");
    while let Some(chunk) = stream.next().await {
        chunk.expect("chunk");
    }
    host.count_tokens(target, "leaky-1", &TokenInput::Text("count me".into()))
        .await
        .expect("count");
    host.health(target).await.expect("health");
}

/// Everything of a recorded request but the named header, as text.
fn all_but(request: &RecordedRequest, header: &str) -> String {
    let headers: Vec<&(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case(header))
        .collect();
    format!(
        "{} {}?{} {:?} {}",
        request.method,
        request.path,
        request.query.as_deref().unwrap_or(""),
        headers,
        String::from_utf8_lossy(&request.body)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_reaches_the_vendor_only_in_the_header_the_host_adds() {
    let sim = Simulator::start().await.expect("simulator");
    let dir = installed_dir(&[(plugins::LEAKY, no_grant())]).await;
    let host = host_with_key(dir.path(), "LLMHOST_LEAKY_API_KEY").await;
    every_call(&host, &target("leaky", &sim)).await;

    let requests = sim.requests();
    assert_eq!(
        requests.len(),
        4,
        "chat, stream, count and health each sent one request"
    );
    for request in &requests {
        // The plugin set `authorization` to what it collected; the host
        // replaced it with the key.
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        let rest = all_but(request, "authorization");
        assert!(
            !rest.contains(KEY),
            "the key leaked outside its header: {rest}"
        );
        // The plugin did copy what it saw: its config (with the request id
        // the host sent) is in the body and in its own header.
        let loot = request.header("x-loot").expect("the plugin's header");
        assert!(loot.contains("key-configured__true"), "{loot}");
        let query = request.query.as_deref().expect("the plugin's query");
        assert!(query.starts_with("loot="), "{query}");
        let body = String::from_utf8_lossy(&request.body);
        assert!(body.contains("api_key\":null"), "it saw no key: {body}");
        let id = request.header("x-client-request-id").expect("request id");
        assert!(
            body.contains(id),
            "the plugin saw the request id the host sent"
        );
    }
    assert!(
        String::from_utf8_lossy(&requests[0].body).contains("tell me your secrets"),
        "the request reached the plugin"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_signs_its_requests_sees_the_key_only_when_granted() {
    let installer = builder().build().await.expect("host");
    let (_, version, asks) = installer
        .inspect(Path::new(plugins::LEAKY_SIGNER))
        .await
        .expect("inspect");
    assert_eq!(version, "0.2.0");
    assert!(asks.sees_key, "it asks to see the key");

    // Refused at install without the grant.
    let dir = tempfile::tempdir().expect("dir");
    let refused = installer
        .install_plugin(dir.path(), Path::new(plugins::LEAKY_SIGNER), &no_grant())
        .await
        .expect_err("the key must be granted");
    assert_eq!(refused.kind(), "invalid_config");
    assert!(refused.to_string().contains("--allow-key"), "{refused}");
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "nothing was installed"
    );

    // Granted: it sees the key and can put it anywhere. This is the
    // control that shows the leak check above would catch a leak.
    let granted = Grant {
        key: true,
        ..no_grant()
    };
    let installed = installer
        .install_plugin(dir.path(), Path::new(plugins::LEAKY_SIGNER), &granted)
        .await
        .expect("installs with the key granted");
    assert!(installed.record.key);
    let sim = Simulator::start().await.expect("simulator");
    let host = host_with_key(dir.path(), "LLMHOST_LEAKY_SIGNER_API_KEY").await;
    let request = ChatRequest::simple("leaky-1", "sign this");
    host.chat(&target("leaky-signer", &sim), &request)
        .await
        .expect("chat");
    let sent = sim.requests();
    assert_eq!(sent.len(), 1);
    assert!(
        String::from_utf8_lossy(&sent[0].body).contains(KEY),
        "a granted plugin saw the key"
    );
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str()),
        "it signed the request itself"
    );
    // Its streams take the raw body (`stream-format: bytes`): the text it
    // streams back is the vendor's SSE, unframed.
    let mut stream = host
        .stream(&target("leaky-signer", &sim), &request)
        .await
        .expect("stream");
    let mut raw = String::new();
    while let Some(chunk) = stream.next().await {
        if let llmhost::types::Chunk::Text(text) = chunk.expect("chunk") {
            raw.push_str(&text);
        }
    }
    assert!(raw.contains("data: ") && raw.contains("[DONE]"), "{raw}");

    // A record that does not grant the key is refused at load.
    let record_path = InstallRecord::path_for(&installed.path);
    let record = std::fs::read_to_string(&record_path).expect("record");
    assert!(record.contains("key = true"), "{record}");
    std::fs::write(&record_path, record.replace("key = true", "key = false")).expect("edit");
    let host = host_with_key(dir.path(), "LLMHOST_LEAKY_SIGNER_API_KEY").await;
    assert!(host.provider_info("leaky-signer").is_none(), "not loaded");
    let error = host
        .load_errors()
        .iter()
        .find(|e| e.to_string().contains("leaky-signer"))
        .expect("a load error names it");
    assert_eq!(error.kind(), "plugin_load");
    assert!(error.to_string().contains("--allow-key"), "{error}");
}
