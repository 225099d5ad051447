//! The host runtime: plugins loaded at run time, limits that stop
//! misbehaving plugins, the HTTP gate, and the compiled-component cache.

mod common;

use common::{builder, installed_dir, key_grant, no_grant};
use llmhost::types::{ChatRequest, Message};
use llmhost::{CompileSource, PluginOrigin, Target};
use llmhost_simulator::{Simulator, Vendor};
use llmhost_tests::plugins;
use std::time::{Duration, Instant};

fn plugin_dir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).expect("write plugin");
    }
    dir
}

/// A host with the misbehaving test plugin loaded from a plugin directory
/// (kept alive by the returned guard).
async fn misbehave_host() -> (tempfile::TempDir, llmhost::Host) {
    let dir = installed_dir(&[(plugins::MISBEHAVE, key_grant())]).await;
    let host = builder()
        .plugin_dir(dir.path())
        .build()
        .await
        .expect("host");
    (dir, host)
}

/// Asserts that the host still serves after a plugin was stopped.
async fn still_serves(host: &llmhost::Host) {
    let ok = host
        .chat(&misbehave_target(), &ChatRequest::simple("ok", "go"))
        .await
        .expect("next request works");
    assert_eq!(ok.response.content, "ok");
}

fn misbehave_target() -> Target {
    let mut target = Target::new("misbehave")
        .api_key("k")
        .timeout(Duration::from_secs(20));
    target.use_env = false;
    target
}

#[tokio::test]
async fn a_component_in_the_plugin_directory_is_loaded_without_rebuilding_the_host() {
    let dir = installed_dir(&[(plugins::OPENAI_RENAMED, no_grant())]).await;
    std::fs::write(dir.path().join("notes.txt"), "not a plugin").expect("write");
    let host = builder()
        .plugin_dir(dir.path())
        .build()
        .await
        .expect("host");
    let summary = host.plugins();
    let acme = summary
        .iter()
        .find(|p| p.id == "acme-openai")
        .expect("acme-openai loaded");
    assert_eq!(
        acme.origin,
        PluginOrigin::File(dir.path().join("acme-openai.wasm"))
    );
    assert!(
        summary
            .iter()
            .any(|p| p.id == "openai" && p.origin == PluginOrigin::BuiltIn)
    );
    assert!(host.load_errors().is_empty());

    // It serves requests like any provider, and its models are priced.
    let sim = Simulator::start().await.expect("sim");
    let mut target = Target::new("acme-openai")
        .base_url(sim.base_url(Vendor::OpenAi))
        .api_key("k");
    target.use_env = false;
    let outcome = host
        .chat(&target, &ChatRequest::simple("gpt-4.1", "hi"))
        .await
        .expect("chat");
    assert_eq!(outcome.provider, "acme-openai");
    assert!(outcome.cost_usd.is_some());
    assert!(host.catalogue().get("acme-openai", "gpt-4.1").is_some());
}

#[tokio::test]
async fn a_plugin_installed_with_replace_replaces_the_built_in() {
    let openai = llmhost::builtin_component("openai").expect("built in");
    let source = plugin_dir(&[("openai.wasm", openai)]);
    let source = source.path().join("openai.wasm");
    let replace = llmhost::Grant {
        replace_builtin: true,
        ..no_grant()
    };
    let dir = installed_dir(&[(source.to_str().expect("utf-8"), replace)]).await;
    let host = builder()
        .plugin_dir(dir.path())
        .build()
        .await
        .expect("host");
    let openai = host
        .plugins()
        .into_iter()
        .find(|p| p.id == "openai")
        .expect("openai");
    assert_eq!(
        openai.origin,
        PluginOrigin::File(dir.path().join("openai.wasm"))
    );
    assert_eq!(
        host.plugins().iter().filter(|p| p.id == "openai").count(),
        1
    );
}

#[tokio::test]
async fn broken_plugin_files_are_reported_and_do_not_stop_the_host() {
    let dir = plugin_dir(&[
        ("garbage.wasm", b"\0asm not really"),
        ("core.wasm", b"\0asm\x01\0\0\0"),
    ]);
    let host = builder()
        .plugin_dir(dir.path())
        .build()
        .await
        .expect("host still starts");
    assert_eq!(host.load_errors().len(), 2);
    assert!(host.load_errors().iter().all(|e| e.kind() == "plugin_load"));
    assert!(host.plugins().iter().any(|p| p.id == "openai"));
}

#[tokio::test]
async fn an_endless_loop_is_stopped_by_the_cpu_limit_and_the_host_keeps_serving() {
    let (_dir, host) = misbehave_host().await;
    let started = Instant::now();
    let err = host
        .chat(&misbehave_target(), &ChatRequest::simple("spin", "go"))
        .await
        .expect_err("stopped");
    assert_eq!(err.kind(), "cpu_limit_exceeded", "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped promptly: {:?}",
        started.elapsed()
    );
    still_serves(&host).await;
}

#[tokio::test]
async fn unbounded_allocation_is_stopped_by_the_memory_limit_and_the_host_keeps_serving() {
    let (_dir, host) = misbehave_host().await;
    let err = host
        .chat(&misbehave_target(), &ChatRequest::simple("hog", "go"))
        .await
        .expect_err("stopped");
    assert_eq!(err.kind(), "memory_limit_exceeded", "{err}");
    still_serves(&host).await;
}

#[tokio::test]
async fn a_panicking_plugin_is_a_typed_trap() {
    let (_dir, host) = misbehave_host().await;
    let err = host
        .chat(&misbehave_target(), &ChatRequest::simple("panic", "go"))
        .await
        .expect_err("trap");
    assert_eq!(err.kind(), "plugin_trap", "{err}");
    let mut stream = host
        .stream(&misbehave_target(), &ChatRequest::simple("ok", "go"))
        .await
        .expect("stream");
    assert!(stream.next().await.expect("chunk").is_ok());
}

#[tokio::test]
async fn a_plugin_may_send_only_so_many_requests_in_one_call() {
    let dir = installed_dir(&[(plugins::MISBEHAVE, key_grant())]).await;
    let host = builder()
        .plugin_dir(dir.path())
        .limits(llmhost::Limits {
            max_outbound_requests: 4,
            ..common::test_limits()
        })
        .build()
        .await
        .expect("host");
    let sim = Simulator::start().await.expect("sim");
    let target = misbehave_target().base_url(sim.base_url(Vendor::OpenAi));
    let url = format!("{}/models", sim.base_url(Vendor::OpenAi));
    let err = host
        .chat(
            &target,
            &ChatRequest::new("fetch-loop", vec![Message::user(url)]),
        )
        .await
        .expect_err("stopped");
    assert_eq!(err.kind(), "request_limit_exceeded", "{err}");
    assert_eq!(sim.requests().len(), 4, "the fifth request was not sent");
    still_serves(&host).await;
}

#[tokio::test]
async fn a_trap_inside_a_stream_is_a_typed_error_and_the_host_keeps_serving() {
    let (_dir, host) = misbehave_host().await;
    let mut stream = host
        .stream_once(
            &misbehave_target(),
            &ChatRequest::simple("panic-next", "go"),
        )
        .await
        .expect("the stream starts");
    let err = stream
        .next()
        .await
        .expect("an item")
        .expect_err("the trap surfaces");
    assert_eq!(err.kind(), "plugin_trap", "{err}");
    assert!(stream.next().await.is_none(), "the stream is over");
    still_serves(&host).await;
}

#[tokio::test]
async fn a_request_to_an_unapproved_host_is_denied_without_a_connection() {
    let (_dir, host) = misbehave_host().await;
    let sim = Simulator::start().await.expect("sim");
    let elsewhere = Simulator::start().await.expect("second sim");
    // Approved: the explicitly configured base URL (the first simulator).
    let target = misbehave_target().base_url(sim.base_url(Vendor::OpenAi));
    let fetch = |url: String| ChatRequest::new("fetch", vec![Message::user(url)]);

    let ok = host
        .chat(
            &target,
            &fetch(format!("{}/models", sim.base_url(Vendor::OpenAi))),
        )
        .await
        .expect("approved host");
    assert!(
        ok.response.content.starts_with("status "),
        "{}",
        ok.response.content
    );

    for url in [
        format!("{}/models", elsewhere.base_url(Vendor::OpenAi)),
        format!("http://localhost:{}/openai/v1/models", sim.addr().port()),
        "https://misbehave.invalid:8443/".to_string(),
        "http://misbehave.invalid/".to_string(),
    ] {
        let err = host
            .chat(&target, &fetch(url.clone()))
            .await
            .expect_err("denied");
        assert_eq!(err.kind(), "host_denied", "{url}: {err}");
    }
    assert_eq!(
        elsewhere.connections(),
        0,
        "no connection was made to the unapproved host"
    );
    assert_eq!(sim.connections(), 1, "only the approved request connected");
}

#[tokio::test]
async fn the_second_start_loads_compiled_components_from_the_cache() {
    let cache = tempfile::tempdir().expect("cache dir");
    let first = builder()
        .cache_dir(Some(cache.path().to_path_buf()))
        .build()
        .await
        .expect("first start");
    assert!(
        first
            .plugins()
            .iter()
            .all(|p| p.compile == CompileSource::Compiled)
    );
    let compiled: Duration = first.plugins().iter().map(|p| p.load_time).sum();
    drop(first);
    let second = builder()
        .cache_dir(Some(cache.path().to_path_buf()))
        .build()
        .await
        .expect("second start");
    assert!(
        second
            .plugins()
            .iter()
            .all(|p| p.compile == CompileSource::Cache)
    );
    let cached: Duration = second.plugins().iter().map(|p| p.load_time).sum();
    assert!(
        cached < compiled,
        "cache {cached:?} vs compile {compiled:?}"
    );

    // A tampered artifact is not trusted: it is recompiled, not loaded.
    for entry in std::fs::read_dir(cache.path()).expect("list") {
        let path = entry.expect("entry").path();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        }
    }
    let third = builder()
        .cache_dir(Some(cache.path().to_path_buf()))
        .build()
        .await
        .expect("third start");
    assert!(
        third
            .plugins()
            .iter()
            .all(|p| p.compile == CompileSource::Compiled)
    );
}

#[tokio::test]
async fn waiting_on_a_slow_stream_does_not_count_as_cpu_time() {
    // 80 chunks 15 ms apart: 1.2 s of waiting, far above the 500 ms CPU
    // budget of the test limits, but almost no guest CPU.
    let host = builder().build().await.expect("host");
    let sim = Simulator::start().await.expect("sim");
    let mut events: Vec<String> = (0..80)
        .map(|i| {
            llmhost_simulator::sse_data(&serde_json::json!({
                "id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {"content": format!("{i} ")}, "finish_reason": null}]
            }))
        })
        .collect();
    events.push("data: [DONE]\n\n".into());
    sim.enqueue(
        Vendor::OpenAi,
        llmhost_simulator::Reply::sse(events).delay_each(Duration::from_millis(15)),
    );
    let mut target = Target::new("openai")
        .base_url(sim.base_url(Vendor::OpenAi))
        .api_key("k");
    target.use_env = false;
    let mut stream = host
        .stream(&target, &ChatRequest::simple("gpt-4o-mini", "slow"))
        .await
        .expect("stream");
    let mut pieces = 0;
    while let Some(chunk) = stream.next().await {
        if let llmhost::types::Chunk::Text(_) = chunk.expect("no CPU limit for waiting") {
            pieces += 1;
        }
    }
    assert_eq!(pieces, 80);
}
