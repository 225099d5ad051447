//! The plugin author guide (docs/plugin-guide.md), followed step by step:
//! copy the template out of the repository, point it at the SDK, build it
//! for wasm32-wasip2 with plain cargo, inspect and install it with the CLI,
//! and chat through it against the vendor simulator.

mod common;

use common::{json_of, run, run_ok};
use llmhost_simulator::{Simulator, Vendor};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The toolchain the repository pins, for a build outside it.
fn pinned_toolchain() -> String {
    let text = std::fs::read_to_string(repo().join("rust-toolchain.toml")).unwrap();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("channel = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("rust-toolchain.toml names a channel")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Steps 1 to 3 of the guide; returns the built component.
fn build_template(work: &Path) -> PathBuf {
    let crate_dir = work.join("my-provider");
    copy_dir(&repo().join("providers/template"), &crate_dir);
    let manifest = crate_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let sdk = repo().join("providers/sdk");
    let edited = text.replace(
        r#"path = "../sdk""#,
        &format!("path = {:?}", sdk.display().to_string()),
    );
    assert_ne!(text, edited, "the template names the SDK path to edit");
    std::fs::write(&manifest, edited).unwrap();
    // Step 2, describing the vendor: here one whose model the simulator
    // serves, at the template's prices.
    let lib = crate_dir.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    let edited = text.replace(
        r#"id: "my-model-small".into()"#,
        r#"id: "gpt-4o-mini".into()"#,
    );
    assert_ne!(text, edited, "the template has a model to rename");
    std::fs::write(&lib, edited).unwrap();
    // Kept between runs so a rerun is incremental.
    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("template-target");
    let status = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&crate_dir)
        .env("RUSTUP_TOOLCHAIN", pinned_toolchain())
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the template builds");
    let wasm = target_dir.join("wasm32-wasip2/release/my_provider.wasm");
    assert!(wasm.is_file(), "{} was built", wasm.display());
    wasm
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guide_turns_the_template_into_a_working_plugin() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_owned();
    let wasm = tokio::task::spawn_blocking(move || build_template(&dir))
        .await
        .unwrap();
    let wasm = wasm.display().to_string();
    let plugins = work.path().join("plugins").display().to_string();

    // Step 4: inspect and install.
    let inspected = json_of(&run(&["plugins", "inspect", &wasm, "--json"], &[]).await);
    assert_eq!(inspected["id"], "my-provider");
    assert_eq!(
        inspected["hosts"],
        serde_json::json!(["api.my-provider.example"])
    );
    // Not on a terminal, installing needs the operator's word for the
    // host it asks for.
    let unconfirmed = run(
        &["--plugins", &plugins, "plugins", "install", &wasm, "--json"],
        &[],
    )
    .await;
    assert!(!unconfirmed.status.success());
    assert!(
        json_of(&unconfirmed)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--yes")
    );
    let installed = run_ok(
        &[
            "--plugins",
            &plugins,
            "plugins",
            "install",
            &wasm,
            "--yes",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(
        installed["granted"]["hosts"],
        serde_json::json!(["api.my-provider.example"])
    );
    assert!(
        installed["installed"]
            .as_str()
            .unwrap()
            .ends_with("my-provider.wasm")
    );

    // Step 5: use it.
    let sim = Simulator::start().await.unwrap();
    let base = sim.base_url(Vendor::OpenAi);
    let v = run_ok(
        &[
            "--plugins",
            &plugins,
            "chat",
            "-p",
            "my-provider",
            "-m",
            "gpt-4o-mini",
            "--base-url",
            &base,
            "--api-key",
            "test",
            "--json",
            "Hello template",
        ],
        &[],
    )
    .await;
    assert!(
        v["content"]
            .as_str()
            .unwrap()
            .contains("You said: Hello template")
    );
    // Its own price list: $0.20 / $0.80 per million tokens.
    let (input, output) = (
        v["usage"]["input_tokens"].as_u64().unwrap(),
        v["usage"]["output_tokens"].as_u64().unwrap(),
    );
    let expected = (input as f64 * 0.20 + output as f64 * 0.80) / 1e6;
    let cost: f64 = v["cost_usd"].as_str().unwrap().parse().unwrap();
    assert!((cost - expected).abs() < 1e-15, "{cost} vs {expected}");
    let body = sim.requests().last().unwrap().json().unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");
}
