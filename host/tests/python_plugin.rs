//! A provider written in Python, built with componentize-py by the
//! project's script, served by the unchanged `llmhost` binary from a
//! plugin directory: chat, stream, health and token counts against the
//! vendor simulator, with usage and cost, and its network access held to
//! the configured base URL.

mod common;

use common::{json_of, run};
use llmhost_simulator::{Simulator, Vendor};
use std::path::{Path, PathBuf};
use std::process::Command;

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

#[tokio::test(flavor = "multi_thread")]
async fn a_python_provider_serves_chat_and_stream_without_rebuilding_the_host() {
    let plugins = tempfile::tempdir().unwrap();
    let dir = plugins.path().to_owned();
    let wasm = tokio::task::spawn_blocking(move || build_python_plugin(&dir))
        .await
        .unwrap();
    assert!(std::fs::metadata(&wasm).unwrap().len() > 1_000_000);

    let sim = Simulator::start().await.expect("sim");
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
    let plugin_dir = plugins.path().display().to_string();
    let models = models.display().to_string();
    let env = [
        ("LLMHOST_PLUGINS", plugin_dir.as_str()),
        ("LLMHOST_MODELS", models.as_str()),
        ("SELFHOSTED_BASE_URL", base.as_str()),
        ("SELFHOSTED_API_KEY", "local-key"),
    ];

    let listed = run(&["plugins", "--json"], &env).await;
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

    // Without a configured base URL it would reach its default,
    // localhost:11434, which nobody approved: denied, not crashed.
    let denied = run(
        &[
            "chat",
            "-p",
            "selfhosted",
            "-m",
            "gpt-4o-mini",
            "--json",
            "x",
        ],
        &[
            ("LLMHOST_PLUGINS", plugin_dir.as_str()),
            ("SELFHOSTED_API_KEY", "local-key"),
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
}
