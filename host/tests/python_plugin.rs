//! A provider written in Python, built with componentize-py by the
//! project's script, installed with `llmhost plugins install` and served by
//! the unchanged `llmhost` binary: chat, stream, health and token counts
//! against the vendor simulator, with usage and cost. It speaks contract
//! 0.2: it only prepares requests and parses answers, and the host sends
//! them (with `content-length`, never chunked), adds the key when one is
//! configured and holds its network access to the configured base URL.
//! Also `plugins inspect` on every built-in and its refusals.

mod common;

use common::{json_of, run, run_ok};
use llmhost_simulator::{Reply, Simulator, Vendor, sse_data};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A chat through the Python provider, answered as JSON.
const CHAT: &[&str] = &[
    "chat",
    "-p",
    "selfhosted",
    "-m",
    "gpt-4o-mini",
    "--json",
    "x",
];

/// Builds the Python provider into `dir` with the repository's script.
fn build_python_plugin(dir: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../providers/python-selfhosted/build.sh")
        .canonicalize()
        .expect("the build script exists");
    let out = dir.join("selfhosted.wasm");
    let status = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .status()
        .expect("bash runs");
    assert!(status.success(), "building the Python provider failed");
    out
}

/// A component of an unrelated world, built with the same componentize-py
/// the script installed.
fn build_other_world(dir: &Path) -> PathBuf {
    let tool =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python-venv/bin/componentize-py");
    let src = dir.join("other");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("other.wit"),
        "package example:other@1.0.0;\n\nworld greeter {\n    export greet: func(name: string) -> string;\n}\n",
    )
    .unwrap();
    std::fs::write(
        src.join("app.py"),
        "from wit_world import WitWorld as Base\n\n\nclass WitWorld(Base):\n    def greet(self, name: str) -> str:\n        return 'hello ' + name\n",
    )
    .unwrap();
    let out = dir.join("greeter.wasm");
    let status = Command::new(tool)
        .args([
            "-d",
            "other.wit",
            "-w",
            "greeter",
            "componentize",
            "app",
            "-o",
        ])
        .arg(&out)
        .current_dir(&src)
        .status()
        .expect("componentize-py runs");
    assert!(status.success());
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_provider_serves_chat_and_stream_without_rebuilding_the_host() {
    let plugins = tempfile::tempdir().unwrap();
    let build = tempfile::tempdir().unwrap();
    let dir = build.path().to_owned();
    let built = tokio::task::spawn_blocking(move || build_python_plugin(&dir))
        .await
        .unwrap();
    assert!(std::fs::metadata(&built).unwrap().len() > 1_000_000);
    let built = built.display().to_string();
    let plugin_dir = plugins.path().display().to_string();

    // Inspect runs nothing but info(); install checks and copies.
    let inspected = json_of(&run(&["plugins", "inspect", &built, "--json"], &[]).await);
    assert_eq!(inspected["id"], "selfhosted");
    assert_eq!(inspected["wit_version"], "llmhost:provider@0.2.0");
    assert!(inspected["models"].as_array().unwrap().len() >= 4);
    // The host adds the key; the plugin never sees it, so installing it
    // needs no key grant, and offering one is refused.
    assert_eq!(inspected["auth"], "bearer");
    assert_eq!(inspected["stream_format"], "sse");
    assert_eq!(inspected["asks"]["sees_key"], false);
    let refused = run(
        &[
            "--plugins",
            &plugin_dir,
            "plugins",
            "install",
            &built,
            "--allow-key",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(json_of(&refused)["error"]["kind"], "invalid_config");
    // It asks for no host, so none can be granted to it.
    let refused = run(
        &[
            "--plugins",
            &plugin_dir,
            "plugins",
            "install",
            &built,
            "--allow-host",
            "models.example.com",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(json_of(&refused)["error"]["kind"], "invalid_config");
    let installed = run_ok(
        &[
            "--plugins",
            &plugin_dir,
            "plugins",
            "install",
            &built,
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(installed["granted"]["hosts"], serde_json::json!([]));
    assert_eq!(
        installed["granted"]["own_env"],
        serde_json::json!(["LLMHOST_SELFHOSTED_API_KEY", "LLMHOST_SELFHOSTED_BASE_URL"])
    );
    assert!(
        installed["installed"]
            .as_str()
            .unwrap()
            .ends_with("selfhosted.wasm")
    );
    // A component of another world is refused, saying what it exports.
    let other = tokio::task::spawn_blocking({
        let dir = build.path().to_owned();
        move || build_other_world(&dir)
    })
    .await
    .unwrap();
    let refused = run(
        &["plugins", "inspect", other.to_str().unwrap(), "--json"],
        &[],
    )
    .await;
    assert!(!refused.status.success());
    let refused = json_of(&refused);
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("greet")
            && message.contains("not the llm-provider world")
            && message.contains("llmhost:provider/provider")
            && message.contains("0.1.x, 0.2.x"),
        "{message}"
    );
    let refused = run(
        &[
            "--plugins",
            &plugin_dir,
            "plugins",
            "install",
            other.to_str().unwrap(),
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(json_of(&refused)["error"]["kind"], "plugin_load");
    assert!(!plugins.path().join("greet.wasm").exists());

    let again = run(
        &[
            "--plugins",
            &plugin_dir,
            "plugins",
            "install",
            &built,
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(json_of(&again)["error"]["kind"], "conflict");

    let sim = Simulator::start().await.expect("sim");
    // As strict servers do: a chunked request body would be refused.
    sim.set_reject_chunked(true);
    let base = sim.base_url(Vendor::OpenAi);
    // Self-hosted models are free unless priced: price the one the
    // simulator serves, so cost is checked too.
    let models = plugins.path().join("models.toml");
    std::fs::write(
        &models,
        r#"
[[model]]
provider = "selfhosted"
id = "gpt-4o-mini"
display_name = "simulated"
input_usd_per_mtok = "0.15"
output_usd_per_mtok = "0.60"
context_window = 128000
max_output_tokens = 16384
"#,
    )
    .unwrap();
    let models = models.display().to_string();
    let env = [
        ("LLMHOST_PLUGINS", plugin_dir.as_str()),
        ("LLMHOST_MODELS", models.as_str()),
        ("LLMHOST_SELFHOSTED_BASE_URL", base.as_str()),
        ("LLMHOST_SELFHOSTED_API_KEY", "local-key"),
    ];

    let listed = run(&["plugins", "list", "--json"], &env).await;
    let listed = json_of(&listed);
    let python = listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "selfhosted")
        .unwrap_or_else(|| panic!("the Python plugin is loaded: {listed}"));
    assert!(
        python["origin"]
            .as_str()
            .unwrap()
            .ends_with("selfhosted.wasm")
    );

    for stream in [false, true] {
        let mut args = vec!["chat", "-p", "selfhosted", "-m", "gpt-4o-mini", "--json"];
        if stream {
            args.push("--stream");
        }
        args.push("Hello from Python");
        let output = run(&args, &env).await;
        assert!(
            output.status.success(),
            "stream={stream}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let v = json_of(&output);
        assert_eq!(v["provider"], "selfhosted");
        assert!(
            v["content"]
                .as_str()
                .unwrap()
                .contains("You said: Hello from Python"),
            "{v}"
        );
        let (input, output_tokens) = (
            v["usage"]["input_tokens"].as_u64().unwrap(),
            v["usage"]["output_tokens"].as_u64().unwrap(),
        );
        assert!(input > 0 && output_tokens > 0, "{v}");
        assert_eq!(v["usage"]["estimated"], false);
        let micro = input as u128 * 150_000 + output_tokens as u128 * 600_000;
        let expected: f64 = micro as f64 / 1e12;
        let cost: f64 = v["cost_usd"].as_str().unwrap().parse().unwrap();
        assert!((cost - expected).abs() < 1e-15, "{cost} vs {expected}");
    }
    let last = sim.requests().last().unwrap().clone();
    assert_eq!(last.header("authorization"), Some("Bearer local-key"));
    let body = last.json().unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);

    // The server's failures keep what a caller acts on; a stream cut
    // before its `[DONE]` is a protocol error, not a short answer.
    // (`llmhost chat` retries a 429 after its wait, three attempts in all.)
    for _ in 0..3 {
        sim.enqueue(
            Vendor::OpenAi,
            Reply::openai_error(429, "requests", Some("rate_limit_exceeded"), "slow down")
                .header("retry-after", "1"),
        );
    }
    let limited = json_of(&run(CHAT, &env).await);
    assert_eq!(limited["error"]["kind"], "rate_limited", "{limited}");
    assert_eq!(limited["error"]["retry_after_ms"], 1000);
    sim.enqueue(
        Vendor::OpenAi,
        Reply::sse([sse_data(&serde_json::json!({
            "id": "chatcmpl-cut",
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": "Half an ans"}}],
        }))]),
    );
    let cut = json_of(&run(&[CHAT, &["--stream"]].concat(), &env).await);
    assert_eq!(
        cut["error"]["kind"],
        "protocol",
        "{cut}: {:?}",
        sim.requests().len()
    );
    assert!(
        cut["error"]["message"].as_str().unwrap().contains("[DONE]"),
        "{cut}"
    );

    // Most self-hosted servers take no key: without one configured the
    // request still goes out, with no authorization header (this server
    // wants one, and its refusal comes back as such).
    let keyless = [
        ("LLMHOST_PLUGINS", plugin_dir.as_str()),
        ("LLMHOST_MODELS", models.as_str()),
        ("LLMHOST_SELFHOSTED_BASE_URL", base.as_str()),
    ];
    let sent = sim.requests().len();
    let refused = json_of(&run(CHAT, &keyless).await);
    assert_eq!(refused["error"]["kind"], "authentication", "{refused}");
    let requests = sim.requests();
    assert_eq!(requests.len(), sent + 1);
    assert_eq!(requests[sent].header("authorization"), None);

    let health = json_of(&run(&["health", "-p", "selfhosted", "--json"], &env).await);
    assert_eq!(health["healthy"], true);
    assert!(health["models_available"].as_u64().unwrap() > 0);
    let tokens = json_of(
        &run(
            &[
                "tokens",
                "-p",
                "selfhosted",
                "-m",
                "gpt-4o-mini",
                "--json",
                "Hello, world",
            ],
            &env,
        )
        .await,
    );
    assert_eq!(
        tokens["estimated"], true,
        "the host tokenizer, as an estimate"
    );
    assert_eq!(tokens["tokens"], 3);

    // Every request the host sent for it: a body with its length, the
    // host's user agent and request id.
    let requests = sim.requests();
    assert!(requests.len() >= 6);
    for request in &requests {
        assert_eq!(request.header("transfer-encoding"), None, "{request:?}");
        if !request.body.is_empty() {
            let length = request.body.len().to_string();
            assert_eq!(
                request.header("content-length"),
                Some(length.as_str()),
                "{request:?}"
            );
        }
        assert!(
            request
                .header("user-agent")
                .is_some_and(|agent| agent.starts_with("llmhost/")),
            "{request:?}"
        );
        assert!(
            request.header("x-client-request-id").is_some(),
            "{request:?}"
        );
    }

    // Without a configured base URL it would reach its default,
    // localhost:11434, which nobody approved: denied, not crashed.
    let denied = run(
        CHAT,
        &[
            ("LLMHOST_PLUGINS", plugin_dir.as_str()),
            ("LLMHOST_SELFHOSTED_API_KEY", "local-key"),
        ],
    )
    .await;
    assert!(!denied.status.success());
    let err = json_of(&denied);
    assert_eq!(err["error"]["kind"], "host_denied", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("localhost:11434")
    );

    // Removed again; built-ins cannot be removed.
    let removed = json_of(
        &run(
            &[
                "--plugins",
                &plugin_dir,
                "plugins",
                "remove",
                "selfhosted",
                "--json",
            ],
            &[],
        )
        .await,
    );
    assert_eq!(removed["removed"], "selfhosted");
    assert!(!plugins.path().join("selfhosted.wasm").exists());
    assert!(!plugins.path().join("selfhosted.toml").exists());
    let gone = run(
        &[
            "--plugins",
            &plugin_dir,
            "plugins",
            "remove",
            "selfhosted",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(json_of(&gone)["error"]["kind"], "not_found");
    let builtin = run(
        &[
            "--plugins",
            &plugin_dir,
            "plugins",
            "remove",
            "openai",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(json_of(&builtin)["error"]["kind"], "invalid_config");
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_shows_every_builtin_and_refuses_what_is_not_a_provider() {
    let dir = tempfile::tempdir().unwrap();
    for id in llmhost::builtin_provider_ids() {
        let path = dir.path().join(format!("{id}.wasm"));
        std::fs::write(&path, llmhost::builtin_component(id).unwrap()).unwrap();
        let v = json_of(
            &run(
                &["plugins", "inspect", path.to_str().unwrap(), "--json"],
                &[],
            )
            .await,
        );
        assert_eq!(v["id"], id);
        assert_eq!(v["wit_version"], "llmhost:provider@0.2.0");
        assert!(
            !v["hosts"].as_array().unwrap().is_empty(),
            "{id} declares its hosts"
        );
        let text = run(&["plugins", "inspect", path.to_str().unwrap()], &[]).await;
        assert!(
            String::from_utf8_lossy(&text.stdout)
                .contains("contract        llmhost:provider@0.2.0")
        );
    }
    // The contract version: the OpenAI component with its export renamed in
    // place (same length, so the binary stays well formed). A later 0.2.x
    // is served, as the compatibility promise says; 0.3.0 is refused with
    // what it exports and what the host serves.
    let openai = llmhost::builtin_component("openai").unwrap();
    let exported = b"llmhost:provider/provider@0.2.0";
    assert!(openai.windows(exported.len()).any(|w| w == exported));
    for (version, accepted) in [("0.2.7", true), ("0.3.0", false)] {
        let renamed = format!("llmhost:provider/provider@{version}");
        let mut bytes = openai.to_vec();
        let mut at = 0;
        while let Some(found) = bytes[at..]
            .windows(exported.len())
            .position(|w| w == exported)
        {
            let start = at + found;
            bytes[start..start + exported.len()].copy_from_slice(renamed.as_bytes());
            at = start + exported.len();
        }
        let path = dir.path().join(format!("openai-{version}.wasm"));
        std::fs::write(&path, &bytes).unwrap();
        let output = run(
            &["plugins", "inspect", path.to_str().unwrap(), "--json"],
            &[],
        )
        .await;
        let v = json_of(&output);
        if accepted {
            assert!(output.status.success(), "{v}");
            assert_eq!(v["id"], "openai");
            assert_eq!(v["wit_version"], format!("llmhost:provider@{version}"));
        } else {
            assert!(!output.status.success());
            assert_eq!(v["error"]["kind"], "plugin_load");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("exports llmhost:provider/provider@0.3.0")
                    && message.contains("serves llmhost:provider 0.1.x, 0.2.x"),
                "{v}"
            );
        }
    }
    for (name, bytes, says) in [
        (
            "notes.wasm",
            b"hello, not wasm".to_vec(),
            "not a WebAssembly file",
        ),
        (
            "core.wasm",
            vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
            "a core WebAssembly module, not a component",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let output = run(
            &["plugins", "inspect", path.to_str().unwrap(), "--json"],
            &[],
        )
        .await;
        assert!(!output.status.success());
        let v = json_of(&output);
        assert_eq!(v["error"]["kind"], "plugin_load");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
}
