//! The hostile-plugin suite: a third-party plugin gets nothing the
//! operator did not grant, and the sandbox's limits hold against it. Each
//! case runs the hostile test plugin (`tests/plugins/hostile`, provider id
//! `tinyllm`) through the host, checks that nothing leaked, and then
//! checks that a normal request to a normal plugin still succeeds.

mod common;

use common::{builder, installed_dir, key_grant, no_grant};
use llmhost::types::{ChatRequest, Message};
use llmhost::{Grant, Host, Limits, PluginOrigin, Target};
use llmhost_simulator::{Simulator, Vendor};
use llmhost_tests::plugins;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Held by the cases that measure or use much memory, so one's
/// allocations do not count in another's bound.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const OPENAI_SECRET: &str = "sk-openai-secret-0123456789";
const ENCRYPTION_SECRET: &str = "c2VjcmV0LWVuY3J5cHRpb24ta2V5LWJ5dGVzLTAxMjM=";

fn hostile_target() -> Target {
    Target::new("tinyllm").timeout(Duration::from_secs(30))
}

fn ask(model: &str, text: impl Into<String>) -> ChatRequest {
    ChatRequest::new(model, vec![Message::user(text.into())])
}

/// A normal request to a built-in provider succeeds on `host`.
async fn normal_request_succeeds(host: &Host) {
    let sim = Simulator::start().await.expect("simulator");
    let mut target = Target::new("openai")
        .base_url(sim.base_url(Vendor::OpenAi))
        .api_key("sk-normal")
        .timeout(Duration::from_secs(20));
    target.use_env = false;
    let outcome = host
        .chat(&target, &ChatRequest::simple("gpt-4o-mini", "hello"))
        .await
        .expect("a normal request succeeds");
    assert!(!outcome.response.content.is_empty());
}

/// A host with the built-ins and the plugins in `dir`.
async fn host_on(dir: &Path) -> Host {
    builder().plugin_dir(dir).build().await.expect("host")
}

/// What `host` says of its plugin `id`.
fn plugin_summary(host: &Host, id: &str) -> llmhost::PluginSummary {
    host.plugins()
        .into_iter()
        .find(|p| p.id == id)
        .expect("the plugin is loaded")
}

/// Every secret of the test environment, as strings to look for.
fn secrets() -> [&'static str; 2] {
    [OPENAI_SECRET, ENCRYPTION_SECRET]
}

/// Asserts that no request the simulator recorded carries a secret.
fn saw_no_secret(sim: &Simulator) {
    for request in sim.requests() {
        let text = format!("{request:?}");
        for secret in secrets() {
            assert!(!text.contains(secret), "a secret reached {}", sim.addr());
        }
    }
}

fn hostile_grant(hosts: &[&str], env: &[&str]) -> Grant {
    Grant {
        hosts: hosts.iter().map(|s| s.to_string()).collect(),
        env: env.iter().map(|s| s.to_string()).collect(),
        ..key_grant()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_asking_for_other_keys_and_llmhost_secrets_gets_none_and_no_loopback() {
    let listener = Simulator::start().await.expect("listener");
    let bystander = Simulator::start().await.expect("simulator");
    let trap = format!("{}/collect", listener.base_url(Vendor::OpenAi));
    let env: HashMap<&str, String> = HashMap::from([
        ("OPENAI_API_KEY", OPENAI_SECRET.to_owned()),
        ("LLMHOST_ENCRYPTION_KEY", ENCRYPTION_SECRET.to_owned()),
        ("ENCRYPTION_KEY", ENCRYPTION_SECRET.to_owned()),
        ("TINYLLM_BASE_URL", listener.base_url(Vendor::OpenAi)),
    ]);

    // What it asks for is shown, judged: another provider's key only by
    // name, llmhost's secrets never, address literals never.
    let reviewer = builder().build().await.expect("host");
    let (info, _, asks) = reviewer
        .inspect(Path::new(plugins::HOSTILE))
        .await
        .expect("inspect");
    assert_eq!(info.id, "tinyllm");
    let status = |name: &str| {
        asks.key_env
            .iter()
            .chain(&asks.base_url_env)
            .find(|e| e.name == name)
            .map(|e| (e.status, e.note.clone().unwrap_or_default()))
            .expect("asked")
    };
    assert_eq!(status("OPENAI_API_KEY").0, "by_name");
    assert!(status("OPENAI_API_KEY").1.contains("openai"));
    assert_eq!(status("LLMHOST_ENCRYPTION_KEY").0, "never");
    assert_eq!(status("ENCRYPTION_KEY").0, "never");
    assert_eq!(asks.grantable_hosts(), ["collect.invalid", "other.invalid"]);

    // llmhost's own secret cannot be granted, even by name.
    let plugin_dir = tempfile::tempdir().expect("dir");
    let refused = reviewer
        .install_plugin(
            plugin_dir.path(),
            Path::new(plugins::HOSTILE),
            &hostile_grant(&[], &["LLMHOST_ENCRYPTION_KEY"]),
        )
        .await
        .expect_err("never grantable");
    assert_eq!(refused.kind(), "invalid_config");
    assert!(!refused.to_string().contains(ENCRYPTION_SECRET));

    // The operator grants the hosts it asks for and its base-URL
    // variable, but no key variable.
    let dir = installed_dir(&[(
        plugins::HOSTILE,
        hostile_grant(&["collect.invalid", "other.invalid"], &["TINYLLM_BASE_URL"]),
    )])
    .await;
    let lookup = env.clone();
    let host = builder()
        .plugin_dir(dir.path())
        .environment(move |name| lookup.get(name).cloned())
        .build()
        .await
        .expect("host");
    let outcome = host
        .chat(
            &hostile_target(),
            &ask(
                "exfiltrate",
                format!("{trap} {}", bystander.base_url(Vendor::OpenAi)),
            ),
        )
        .await
        .expect("the plugin answers");
    let report: serde_json::Value =
        serde_json::from_str(&outcome.response.content).expect("a JSON report");
    assert_eq!(report["key"], serde_json::Value::Null, "{report}");
    assert_eq!(report["env"], serde_json::json!([]), "{report}");
    // Its base URL did come from its variable, but that opened nothing.
    assert_eq!(report["base_url"], listener.base_url(Vendor::OpenAi));
    for sent in report["sent"].as_array().expect("sends") {
        let outcome = sent["outcome"].as_str().expect("outcome");
        assert!(!outcome.starts_with("status"), "{sent}");
    }
    for secret in secrets() {
        assert!(!outcome.response.content.contains(secret));
    }
    assert_eq!(
        listener.connections(),
        0,
        "the loopback listener saw nothing"
    );
    assert_eq!(bystander.connections(), 0, "the simulator saw nothing");

    // A plugin-named base-URL variable is not an operator's base URL: the
    // gate refuses loopback for it.
    let err = host
        .chat(&hostile_target(), &ask("fetch", trap.clone()))
        .await
        .expect_err("loopback refused");
    assert_eq!(err.kind(), "host_denied", "{err}");
    assert_eq!(listener.connections(), 0);

    // Its own variables are granted: the key arrives from there.
    let mut own = env.clone();
    own.insert("LLMHOST_TINYLLM_API_KEY", "tiny-own-key".into());
    let host = builder()
        .plugin_dir(dir.path())
        .environment(move |name| own.get(name).cloned())
        .build()
        .await
        .expect("host");
    let outcome = host
        .chat(&hostile_target(), &ask("exfiltrate", ""))
        .await
        .expect("answers");
    let report: serde_json::Value = serde_json::from_str(&outcome.response.content).expect("json");
    assert_eq!(report["key"], "tiny-own-key");
    saw_no_secret(&listener);
    saw_no_secret(&bystander);
    normal_request_succeeds(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_reaches_only_granted_hosts_and_nothing_without_an_install_record() {
    let sim = Simulator::start().await.expect("simulator");
    // One of the two hosts it asks for is granted.
    let dir = installed_dir(&[(plugins::HOSTILE, hostile_grant(&["collect.invalid"], &[]))]).await;
    let host = host_on(dir.path()).await;
    let summary = plugin_summary(&host, "tinyllm");
    assert!(summary.installed);
    assert_eq!(summary.hosts, ["collect.invalid"]);

    // The granted host passes the gate (and then fails to resolve: .invalid
    // names never do); the other is refused before any connection.
    let granted = host
        .chat(
            &hostile_target(),
            &ask("fetch", "https://collect.invalid/v1"),
        )
        .await
        .expect_err("no such host");
    assert_ne!(granted.kind(), "host_denied", "{granted}");
    for url in [
        "https://other.invalid/v1",
        "https://127.0.0.1/v1",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/v1",
    ] {
        let err = host
            .chat(&hostile_target(), &ask("fetch", url))
            .await
            .expect_err("denied");
        assert_eq!(err.kind(), "host_denied", "{url}: {err}");
    }

    // The same file dropped in without an install record reaches nothing,
    // not even a base URL given explicitly for the call.
    let dropped = tempfile::tempdir().expect("dir");
    std::fs::copy(plugins::HOSTILE, dropped.path().join("tinyllm.wasm")).expect("copy");
    let host = host_on(dropped.path()).await;
    let summary = plugin_summary(&host, "tinyllm");
    assert!(!summary.installed && summary.hosts.is_empty() && summary.env.is_empty());
    let explicit = hostile_target().base_url(sim.base_url(Vendor::OpenAi));
    for url in [
        "https://collect.invalid/v1".to_owned(),
        format!("{}/models", sim.base_url(Vendor::OpenAi)),
    ] {
        let err = host
            .chat(&explicit, &ask("fetch", url.clone()))
            .await
            .expect_err("denied");
        assert_eq!(err.kind(), "host_denied", "{url}: {err}");
        assert!(err.to_string().contains("no install record"), "{err}");
    }
    assert_eq!(sim.connections(), 0);
    normal_request_succeeds(&host).await;
}

/// Appends a custom section: the same component, different bytes.
fn changed(component: &[u8]) -> Vec<u8> {
    let mut bytes = component.to_vec();
    let name = b"changed-after-install";
    let payload = b"a different build";
    let mut content = leb(name.len() as u32);
    content.extend_from_slice(name);
    content.extend_from_slice(payload);
    bytes.push(0);
    bytes.extend(leb(content.len() as u32));
    bytes.extend(content);
    bytes
}

fn leb(mut value: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_file_and_a_built_in_id_are_refused_until_approved() {
    let dir = installed_dir(&[(plugins::HOSTILE, key_grant())]).await;
    let installed = dir.path().join("tinyllm.wasm");
    let original = std::fs::read(&installed).expect("read");
    std::fs::write(&installed, changed(&original)).expect("change the file");
    let host = host_on(dir.path()).await;
    assert!(host.provider_info("tinyllm").is_none(), "refused");
    let error = host
        .load_errors()
        .iter()
        .find(|e| e.to_string().contains("changed since it was installed"))
        .expect("the refusal is reported");
    assert_eq!(error.kind(), "plugin_load");

    // Approving the changed file again (install --force) serves it.
    let source = tempfile::tempdir().expect("dir");
    let changed_file = source.path().join("tinyllm.wasm");
    std::fs::write(&changed_file, changed(&original)).expect("write");
    let again = host
        .install_plugin(dir.path(), &changed_file, &key_grant())
        .await
        .expect_err("installed already: needs --force");
    assert_eq!(again.kind(), "conflict");
    let force = Grant {
        force: true,
        ..key_grant()
    };
    host.install_plugin(dir.path(), &changed_file, &force)
        .await
        .expect("re-approved");
    let host = host_on(dir.path()).await;
    assert!(host.provider_info("tinyllm").is_some());

    // A built-in's id dropped in, or installed without --replace, does not
    // replace the built-in.
    let openai = llmhost::builtin_component("openai").expect("built in");
    let dropped = tempfile::tempdir().expect("dir");
    std::fs::write(dropped.path().join("openai.wasm"), openai).expect("write");
    let host = host_on(dropped.path()).await;
    let served = plugin_summary(&host, "openai");
    assert_eq!(served.origin, PluginOrigin::BuiltIn);
    assert!(
        host.load_errors()
            .iter()
            .any(|e| e.to_string().contains("--replace"))
    );
    let refused = host
        .install_plugin(
            tempfile::tempdir().expect("dir").path(),
            &dropped.path().join("openai.wasm"),
            &no_grant(),
        )
        .await
        .expect_err("needs --replace");
    assert_eq!(refused.kind(), "conflict");
    normal_request_succeeds(&host).await;
}

/// The component with `count` extra core instances appended, each holding
/// a 100 MiB linear memory (1600 pages): no single memory is over a
/// 128 MiB limit, together they are.
fn with_extra_memories(component: &[u8], count: u32) -> Vec<u8> {
    // Count the top-level core modules: the new one gets the next index.
    let mut modules = 0;
    let mut at = 8;
    while at < component.len() {
        let id = component[at];
        at += 1;
        let (size, read) = read_leb(&component[at..]);
        at += read + size as usize;
        if id == 1 {
            modules += 1;
        }
    }
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    // Memory section: one memory, no maximum, 1600 pages minimum.
    module.extend([5, 4, 1, 0]);
    module.extend(leb(1600));
    module[9] = (module.len() - 10) as u8;
    let mut bytes = component.to_vec();
    bytes.push(1);
    bytes.extend(leb(module.len() as u32));
    bytes.extend(&module);
    let mut instances = leb(count);
    for _ in 0..count {
        instances.push(0);
        instances.extend(leb(modules));
        instances.push(0);
    }
    bytes.push(2);
    bytes.extend(leb(instances.len() as u32));
    bytes.extend(instances);
    bytes
}

fn read_leb(bytes: &[u8]) -> (u32, usize) {
    let mut value = 0u32;
    for (i, byte) in bytes.iter().enumerate() {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (value, i + 1);
        }
    }
    panic!("truncated LEB128")
}

#[tokio::test(flavor = "multi_thread")]
async fn three_memories_share_one_budget() {
    let _heavy = HEAVY.lock().await;
    let source = tempfile::tempdir().expect("dir");
    let path = source.path().join("tinyllm.wasm");
    let hostile = std::fs::read(plugins::HOSTILE).expect("built");
    std::fs::write(&path, with_extra_memories(&hostile, 3)).expect("write");

    let limited = builder()
        .limits(Limits {
            memory_bytes: 128 << 20,
            ..common::test_limits()
        })
        .build()
        .await
        .expect("host");
    let err = limited.inspect(&path).await.expect_err("over the budget");
    assert_eq!(err.kind(), "memory_limit_exceeded", "{err}");

    // The same component fits a budget that holds all its memories: the
    // refusal above was the sum, not one memory.
    let roomy = builder()
        .limits(Limits {
            memory_bytes: 512 << 20,
            ..common::test_limits()
        })
        .build()
        .await
        .expect("host");
    let (info, _, _) = roomy.inspect(&path).await.expect("fits");
    assert_eq!(info.id, "tinyllm");
    normal_request_succeeds(&limited).await;
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunk_flood_is_a_typed_size_error_with_host_memory_bounded() {
    let _heavy = HEAVY.lock().await;
    let dir = installed_dir(&[(plugins::HOSTILE, key_grant())]).await;
    let host = host_on(dir.path()).await;
    let before = rss_bytes();
    // 16 MiB from every chunk, without end: collecting it would take all
    // the memory there is; the response limit (32 MiB) stops it.
    let stream = host
        .stream(&hostile_target(), &ask("flood", "go"))
        .await
        .expect("the stream starts");
    let err = stream.collect().await.expect_err("stopped");
    assert_eq!(err.kind(), "response_too_large", "{err}");
    let mut stream = host
        .stream(&hostile_target(), &ask("flood", "go"))
        .await
        .expect("the stream starts");
    let mut chunks = 0;
    while let Some(item) = stream.next().await {
        match item {
            Ok(_) => chunks += 1,
            Err(err) => {
                assert_eq!(err.kind(), "response_too_large", "{err}");
                break;
            }
        }
    }
    assert!(chunks <= 2, "stopped after {chunks} chunks");
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 512 << 20, "host RSS grew by {} MiB", grown >> 20);
    normal_request_succeeds(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tokenizer_loop_is_stopped_by_the_cpu_budget_while_others_are_served() {
    let _heavy = HEAVY.lock().await;
    let dir = installed_dir(&[(plugins::HOSTILE, key_grant())]).await;
    let budget = Duration::from_secs(2);
    let host = builder()
        .plugin_dir(dir.path())
        .limits(Limits {
            cpu_time: budget,
            memory_bytes: 128 << 20,
            // The CPU budget, not the size cap, is what this loop meets.
            max_tokenizer_bytes_per_request: usize::MAX,
            ..common::test_limits()
        })
        .build()
        .await
        .expect("host");
    let started = Instant::now();
    let looping = tokio::spawn({
        let host = host.clone();
        async move {
            host.chat(&hostile_target(), &ask("tokenize-loop", "go"))
                .await
                .map(|o| o.response.content)
        }
    });
    // Other requests are served while it runs.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        normal_request_succeeds(&host).await;
    }
    assert!(
        !looping.is_finished(),
        "the loop was still running while the others were served"
    );
    let err = looping.await.expect("joined").expect_err("stopped");
    assert_eq!(err.kind(), "cpu_limit_exceeded", "{err}");
    let took = started.elapsed();
    assert!(
        took < budget * 4,
        "stopped within about its budget: {took:?}"
    );

    // One call over the per-call cap is refused outright.
    let err = host
        .chat(&hostile_target(), &ask("tokenize-huge", "go"))
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), "tokenizer_limit_exceeded", "{err}");
    normal_request_succeeds(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_base_url_variable_holding_a_secret_is_not_echoed() {
    let dir = installed_dir(&[(plugins::HOSTILE, key_grant())]).await;
    let host = builder()
        .plugin_dir(dir.path())
        .environment(|name| (name == "LLMHOST_TINYLLM_BASE_URL").then(|| OPENAI_SECRET.to_owned()))
        .build()
        .await
        .expect("host");
    let err = host
        .chat(&hostile_target(), &ask("ok", "go"))
        .await
        .expect_err("not a URL");
    assert_eq!(err.kind(), "invalid_config", "{err}");
    assert!(
        err.to_string().contains("LLMHOST_TINYLLM_BASE_URL"),
        "{err}"
    );
    assert!(!err.to_string().contains(OPENAI_SECRET), "{err}");
    normal_request_succeeds(&host).await;
}
