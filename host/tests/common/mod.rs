//! Running the `llmhost` binary in tests.

#![allow(dead_code)]

pub mod gateway;

use serde_json::Value;
use std::process::{Command, Output};

/// The binary with a clean environment: no keys, database or settings of
/// the machine's, and a component cache of the tests'.
pub fn llmhost(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_llmhost"));
    command
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("LLMHOST_PLUGINS")
        .env_remove("LLMHOST_ENCRYPTION_KEY")
        .env_remove("ENCRYPTION_KEY")
        .env_remove("LLMHOST_PREVIOUS_ENCRYPTION_KEYS")
        .env_remove("LLMHOST_DB")
        .env_remove("LLMHOST_KEY_FILE")
        .env_remove("LLMHOST_CONFIG")
        .env_remove("LLMHOST_LOG")
        .env(
            "LLMHOST_CACHE_DIR",
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"),
        );
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

pub async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = llmhost(args, env);
    tokio::task::spawn_blocking(move || command.output().expect("llmhost runs"))
        .await
        .expect("join")
}

pub fn json_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|err| {
        panic!(
            "stdout is one JSON object ({err}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Runs the binary, asserts it succeeded (showing its stderr if not) and
/// returns its one JSON object.
pub async fn run_ok(args: &[&str], env: &[(&str, &str)]) -> Value {
    let output = run(args, env).await;
    assert!(
        output.status.success(),
        "llmhost {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    json_of(&output)
}
