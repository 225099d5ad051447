//! `llmhost init`, `agents`, `configs`, `keys`, `usage` and `chat --agent`
//! as operators run them: real processes, a real database file, real
//! encryption, the vendor simulator on loopback.

mod common;

use common::{json_of, llmhost, run};
use llmhost_simulator::{Simulator, Vendor};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

const KEY: &str = "sk-RECOGNISABLE-cli-key-0123456789";

/// Runs the binary with the database and key file in `dir`, appending
/// everything it printed to `seen`.
struct Session<'a> {
    dir: &'a Path,
    env: Vec<(String, String)>,
    seen: String,
}

impl<'a> Session<'a> {
    fn new(dir: &'a Path) -> Self {
        Self {
            dir,
            env: vec![
                (
                    "LLMHOST_DB".into(),
                    dir.join("agents.db").display().to_string(),
                ),
                (
                    "LLMHOST_KEY_FILE".into(),
                    dir.join("keys/encryption.key").display().to_string(),
                ),
                // Not the machine's config directory, but one shared by the
                // tests: the component cache's MAC key lives there, and a
                // key per session would make every run recompile every
                // component, logging gigabytes at trace level.
                (
                    "XDG_CONFIG_HOME".into(),
                    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                        .join("cli-config")
                        .display()
                        .to_string(),
                ),
                // Everything llmhost and its HTTP stack log, so no secret
                // can hide in a log line; the compiler's own trace output
                // (gigabytes for a cold compile) says nothing of keys.
                (
                    "LLMHOST_LOG".into(),
                    "trace,cranelift=warn,regalloc2=warn,wasmtime=warn,wasmparser=warn".into(),
                ),
            ],
            seen: String::new(),
        }
    }

    async fn run(&mut self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        let output = run(args, &env).await;
        self.seen.push_str(&String::from_utf8_lossy(&output.stdout));
        self.seen.push_str(&String::from_utf8_lossy(&output.stderr));
        output
    }

    async fn ok(&mut self, args: &[&str], extra: &[(&str, &str)]) -> Value {
        let output = self.run(args, extra).await;
        assert!(
            output.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        json_of(&output)
    }

    async fn fails(&mut self, args: &[&str], extra: &[(&str, &str)], kind: &str) -> Value {
        let output = self.run(args, extra).await;
        assert!(!output.status.success(), "{args:?} should fail");
        let v = json_of(&output);
        assert_eq!(v["error"]["kind"], kind, "{args:?}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        v
    }

    fn key_file(&self) -> std::path::PathBuf {
        self.dir.join("keys/encryption.key")
    }

    /// Runs the binary with `input` on its standard input.
    async fn run_with_stdin(
        &mut self,
        args: &[&str],
        extra: &[(&str, &str)],
        input: &str,
    ) -> Output {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        let mut command = llmhost(args, &env);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let input = input.to_owned();
        let output = tokio::task::spawn_blocking(move || {
            let mut child = command.spawn().expect("llmhost starts");
            let mut stdin = child.stdin.take().expect("stdin is piped");
            stdin.write_all(input.as_bytes()).expect("stdin written");
            drop(stdin);
            child.wait_with_output().expect("llmhost runs")
        })
        .await
        .expect("join");
        self.seen.push_str(&String::from_utf8_lossy(&output.stdout));
        self.seen.push_str(&String::from_utf8_lossy(&output.stderr));
        output
    }
}

fn file_contains(path: &Path, needle: &str) -> bool {
    let mut found = false;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        if let Ok(bytes) = std::fs::read(name) {
            found |= bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_manage_agents_and_chat_as_them_without_leaking_keys() {
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());

    let init = s.ok(&["init", "--json"], &[]).await;
    assert_eq!(init["schema_version"], llmhost::store::SCHEMA_VERSION);
    assert_eq!(init["key_created"], true);
    assert_eq!(init["key_source"]["kind"], "file");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.key_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The database too: only its owner may read it.
    let mode = std::fs::metadata(dir.path().join("agents.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A second init keeps the key.
    let again = s.ok(&["init", "--json"], &[]).await;
    assert_eq!(again["key_created"], false);
    assert_eq!(again["key_id"], init["key_id"]);

    let agent = s
        .ok(
            &[
                "agents",
                "create",
                "bot",
                "--description",
                "helps",
                "--json",
            ],
            &[],
        )
        .await;
    assert_eq!(agent["name"], "bot");
    s.fails(&["agents", "create", "bot", "--json"], &[], "conflict")
        .await;

    let added = s
        .ok(
            &[
                "configs",
                "add",
                "--agent",
                "bot",
                "--provider",
                "openai",
                "--model",
                "gpt-4o-mini",
                "--api-key",
                KEY,
                "--base-url",
                &base,
                "--temperature",
                "0.5",
                "--max-tokens",
                "200",
                "--json",
            ],
            &[],
        )
        .await;
    let id = added["id"].as_i64().unwrap().to_string();
    assert_eq!(added["has_api_key"], true);
    assert_eq!(added["base_url"], base.as_str());
    assert_eq!(added["model"], "gpt-4o-mini");
    assert_eq!(
        added["prices"],
        serde_json::Value::Null,
        "the catalogue's prices"
    );
    assert!(!file_contains(
        &dir.path().join("agents.db"),
        "RECOGNISABLE"
    ));

    // Bad input: one clear typed error, exit 2, nothing stored.
    for (args, kind) in [
        (vec!["--temperature", "2.5"], "validation"),
        (vec!["--top-p", "-1"], "validation"),
        (vec!["--max-tokens", "99999999"], "validation"),
        (vec!["--base-url", "ftp://x"], "validation"),
    ] {
        let mut full = vec![
            "configs",
            "add",
            "--agent",
            "bot",
            "--provider",
            "openai",
            "--model",
            "gpt-4o-mini",
            "--json",
        ];
        full.extend(args);
        let output = s.run(&full, &[]).await;
        assert_eq!(output.status.code(), Some(2));
        assert_eq!(json_of(&output)["error"]["kind"], kind);
    }
    s.fails(&["agents", "show", "nobody", "--json"], &[], "not_found")
        .await;
    s.fails(&["configs", "show", "999", "--json"], &[], "not_found")
        .await;
    let list = s
        .ok(&["configs", "list", "--agent", "bot", "--json"], &[])
        .await;
    assert_eq!(list["configs"].as_array().unwrap().len(), 1);

    let updated = s
        .ok(
            &["configs", "update", &id, "--temperature", "0.75", "--json"],
            &[],
        )
        .await;
    assert_eq!(updated["temperature"], 0.75);
    assert_eq!(updated["max_tokens"], 200);
    let shown = s.ok(&["configs", "show", &id, "--json"], &[]).await;
    assert_eq!(shown["temperature"], 0.75);
    let validated = s.ok(&["configs", "validate", &id, "--json"], &[]).await;
    assert_eq!(validated["valid"], true);

    // Chat as the agent: its key, model and parameters; usage recorded.
    let answer = s
        .ok(&["chat", "--agent", "bot", "--json", "Hello agent"], &[])
        .await;
    assert_eq!(answer["model"], "gpt-4o-mini");
    assert_eq!(answer["agent"], "bot");
    assert_eq!(
        (answer["fallback"].as_bool(), answer["attempts"].as_u64()),
        (Some(false), Some(1))
    );
    let last = sim.requests().last().unwrap().clone();
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let body: Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(body["temperature"], 0.75);
    assert_eq!(
        body["max_tokens"]
            .as_u64()
            .or(body["max_completion_tokens"].as_u64()),
        Some(200)
    );
    let streamed = s
        .ok(
            &["chat", "--agent", "bot", "--stream", "--json", "Stream it"],
            &[],
        )
        .await;
    assert!(streamed["content"].as_str().unwrap().contains("Stream it"));

    let usage = s.ok(&["usage", "--agent", "bot", "--json"], &[]).await;
    let row = &usage["usage"][0];
    assert_eq!(row["attempts"], 2);
    let tokens = |v: &Value, k: &str| v["usage"][k].as_u64().unwrap();
    assert_eq!(
        row["input_tokens"].as_u64().unwrap(),
        tokens(&answer, "input_tokens") + tokens(&streamed, "input_tokens")
    );
    assert_eq!(
        row["output_tokens"].as_u64().unwrap(),
        tokens(&answer, "output_tokens") + tokens(&streamed, "output_tokens")
    );
    // $0.15 / $0.60 per Mtok, exact.
    let expected = |v: &Value| {
        tokens(v, "input_tokens") as u128 * 150_000 + tokens(v, "output_tokens") as u128 * 600_000
    };
    let micro_micro = expected(&answer) + expected(&streamed);
    let cost: f64 = row["cost_usd"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        row["cost_usd"].as_str().unwrap(),
        usage["total_cost_usd"].as_str().unwrap()
    );
    assert!((cost - micro_micro as f64 / 1e12).abs() < 1e-15, "{cost}");
    assert_eq!(
        answer["cost_usd"],
        format!("{}", rust_decimal_str(expected(&answer)))
    );

    // A key given on stdin.
    let mut command = llmhost(
        &["configs", "update", &id, "--api-key", "-", "--json"],
        &s.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    );
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{KEY}-stdin\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    s.seen.push_str(&String::from_utf8_lossy(&output.stdout));
    s.seen.push_str(&String::from_utf8_lossy(&output.stderr));
    s.ok(&["chat", "--agent", "bot", "--json", "stdin key"], &[])
        .await;
    assert_eq!(
        sim.requests().last().unwrap().header("authorization"),
        Some(format!("Bearer {KEY}-stdin").as_str())
    );

    // Rotation with a key file: the file changes, the keys still work.
    let before = std::fs::read_to_string(s.key_file()).unwrap();
    let rotated = s.ok(&["keys", "rotate", "--json"], &[]).await;
    assert_eq!(rotated["rotated"], 1);
    assert_ne!(rotated["key_id"], init["key_id"]);
    assert!(
        rotated.get("new_key").is_none(),
        "a key file rotation prints no key"
    );
    assert_ne!(std::fs::read_to_string(s.key_file()).unwrap(), before);
    s.ok(&["chat", "--agent", "bot", "--json", "after rotation"], &[])
        .await;

    // Human output too, then everything printed is searched for the key.
    for args in [
        vec!["agents", "list"],
        vec!["agents", "show", "bot"],
        vec!["configs", "list", "--agent", "bot"],
        vec!["configs", "show", &id],
        vec!["usage"],
        vec!["-vv", "chat", "--agent", "bot", "human"],
    ] {
        let output = s.run(&args, &[]).await;
        assert!(output.status.success(), "{args:?}");
    }
    s.fails(&["configs", "delete", "999", "--json"], &[], "not_found")
        .await;
    s.ok(&["agents", "delete", "bot", "--json"], &[]).await;
    let usage = s.ok(&["usage", "--json"], &[]).await;
    assert_eq!(
        usage["usage"][0]["agent"], "bot",
        "history outlives the agent"
    );
    assert!(
        s.seen.contains("TRACE") || s.seen.contains("DEBUG"),
        "logs were on"
    );
    assert!(
        !s.seen.contains("RECOGNISABLE"),
        "a key leaked:\n{}",
        s.seen
    );
    assert!(!file_contains(
        &dir.path().join("agents.db"),
        "RECOGNISABLE"
    ));
}

/// The decimal text of `micro_micro` × 1e-12 USD, as the CLI prints it.
fn rust_decimal_str(micro_micro: u128) -> String {
    let text = format!("{micro_micro:013}");
    let (int, frac) = text.split_at(text.len() - 12);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn env_keys_rotate_by_printing_the_new_key_once() {
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());
    let old = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    let env_old = [("LLMHOST_ENCRYPTION_KEY", old)];

    let init = s.ok(&["init", "--json"], &env_old).await;
    assert_eq!(init["key_created"], false);
    assert_eq!(init["key_source"]["name"], "LLMHOST_ENCRYPTION_KEY");
    assert!(
        !s.key_file().exists(),
        "no key file when the key is in the environment"
    );

    // The other accepted variable name works the same.
    s.ok(
        &["agents", "create", "envbot", "--json"],
        &[("ENCRYPTION_KEY", old)],
    )
    .await;
    s.ok(
        &[
            "configs",
            "add",
            "--agent",
            "envbot",
            "--provider",
            "openai",
            "--model",
            "gpt-4o-mini",
            "--api-key",
            KEY,
            "--base-url",
            &base,
            "--json",
        ],
        &[("ENCRYPTION_KEY", old)],
    )
    .await;

    // Without any key, stored keys cannot be used: a clear error.
    let err = s
        .fails(
            &["chat", "--agent", "envbot", "--json", "x"],
            &[],
            "encryption_key_missing",
        )
        .await;
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("LLMHOST_ENCRYPTION_KEY")
    );
    s.fails(
        &["chat", "--agent", "envbot", "--json", "x"],
        &[("LLMHOST_ENCRYPTION_KEY", "not-base64!")],
        "encryption_key_invalid",
    )
    .await;

    let rotated = s.ok(&["keys", "rotate", "--json"], &env_old).await;
    assert_eq!(rotated["rotated"], 1);
    let new = rotated["new_key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let err = s
        .fails(
            &["chat", "--agent", "envbot", "--json", "x"],
            &env_old,
            "unknown_key",
        )
        .await;
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains(rotated["key_id"].as_str().unwrap())
    );
    s.ok(
        &["chat", "--agent", "envbot", "--json", "new key"],
        &[("LLMHOST_ENCRYPTION_KEY", &new)],
    )
    .await;
    assert_eq!(
        sim.requests().last().unwrap().header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    // A chosen key, and the human form.
    let chosen = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let output = s
        .run(
            &["keys", "rotate", "--new-key", chosen],
            &[("LLMHOST_ENCRYPTION_KEY", &new)],
        )
        .await;
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(chosen) && text.contains("LLMHOST_ENCRYPTION_KEY"),
        "{text}"
    );
    s.ok(
        &["chat", "--agent", "envbot", "--json", "chosen"],
        &[("LLMHOST_ENCRYPTION_KEY", chosen)],
    )
    .await;
    assert!(!s.seen.contains("RECOGNISABLE"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_without_a_key_uses_the_provider_environment_variable() {
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());
    s.ok(&["agents", "create", "plain", "--json"], &[]).await;
    let added = s
        .ok(
            &[
                "configs",
                "add",
                "--agent",
                "plain",
                "--provider",
                "openai",
                "--model",
                "gpt-4o-mini",
                "--base-url",
                &base,
                "--json",
            ],
            &[],
        )
        .await;
    assert_eq!(added["has_api_key"], false);
    s.fails(
        &["chat", "--agent", "plain", "--json", "x"],
        &[],
        "api_key_missing",
    )
    .await;
    s.ok(
        &["chat", "--agent", "plain", "--json", "x"],
        &[("OPENAI_API_KEY", "sk-from-env")],
    )
    .await;
    assert_eq!(
        sim.requests().last().unwrap().header("authorization"),
        Some("Bearer sk-from-env")
    );
    // Both attempts are in the usage history, the failure typed.
    let usage = s.ok(&["usage", "--json"], &[]).await;
    assert_eq!(usage["usage"][0]["attempts"], 2);
    assert_eq!(usage["usage"][0]["errors"], 1);
    // An agent with no enabled config says so.
    s.ok(
        &[
            "configs",
            "update",
            &added["id"].to_string(),
            "--disabled",
            "--json",
        ],
        &[],
    )
    .await;
    s.fails(
        &["chat", "--agent", "plain", "--json", "x"],
        &[],
        "not_found",
    )
    .await;
}

/// `keys rotate --new-key -`: the new encryption key is piped in, not put
/// on the command line where `ps` shows it to every user.
#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_reads_the_new_key_from_standard_input() {
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());
    s.ok(&["init", "--json"], &[]).await;
    s.ok(&["agents", "create", "piped", "--json"], &[]).await;
    s.ok(
        &[
            "configs",
            "add",
            "--agent",
            "piped",
            "--provider",
            "openai",
            "--model",
            "gpt-4o-mini",
            "--api-key",
            KEY,
            "--base-url",
            &base,
            "--json",
        ],
        &[],
    )
    .await;

    // Key file: the piped key becomes the file's only key.
    let chosen = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let chosen_id = llmhost::secrets::EncryptionKey::from_base64(chosen)
        .unwrap()
        .id()
        .to_owned();
    let output = s
        .run_with_stdin(
            &["keys", "rotate", "--new-key", "-", "--json"],
            &[],
            &format!("{chosen}\n"),
        )
        .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rotated = json_of(&output);
    assert_eq!(rotated["rotated"], 1);
    assert_eq!(rotated["key_id"], chosen_id.as_str());
    let keys = llmhost::secrets::read_key_file(&s.key_file()).unwrap();
    assert_eq!(
        keys.iter().map(|k| k.id()).collect::<Vec<_>>(),
        [chosen_id.as_str()]
    );
    s.ok(&["chat", "--agent", "piped", "--json", "after"], &[])
        .await;
    assert_eq!(
        sim.requests().last().unwrap().header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    // Environment key: the piped key is the one to put in the variable.
    let chosen_env = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let output = s
        .run_with_stdin(
            &["keys", "rotate", "--new-key", "-", "--json"],
            &[("LLMHOST_ENCRYPTION_KEY", chosen)],
            chosen_env,
        )
        .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json_of(&output)["new_key"], chosen_env);
    s.ok(
        &["chat", "--agent", "piped", "--json", "env"],
        &[("LLMHOST_ENCRYPTION_KEY", chosen_env)],
    )
    .await;

    // Bad or missing input: refused, nothing rotated.
    let before = std::fs::read_to_string(s.key_file()).unwrap();
    for (input, kind) in [
        ("", "validation"),
        ("not a key\n", "encryption_key_invalid"),
    ] {
        let output = s
            .run_with_stdin(&["keys", "rotate", "--new-key", "-", "--json"], &[], input)
            .await;
        assert!(!output.status.success());
        assert_eq!(json_of(&output)["error"]["kind"], kind, "{input:?}");
    }
    assert_eq!(std::fs::read_to_string(s.key_file()).unwrap(), before);

    let output = s.run(&["keys", "rotate", "--help"], &[]).await;
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--new-key <BASE64|->"), "{help}");
    assert!(help.contains("standard input"), "{help}");
    assert!(!s.seen.contains("RECOGNISABLE"));
}

/// `configs update` refuses to move a stored key to another base URL or
/// provider unless it is given again (here piped in) or cleared.
#[tokio::test(flavor = "multi_thread")]
async fn configs_update_needs_the_key_again_to_move_it() {
    let sim = Simulator::start().await.expect("sim");
    let other = Simulator::start().await.expect("other");
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());
    s.ok(&["init", "--json"], &[]).await;
    s.ok(&["agents", "create", "mover", "--json"], &[]).await;
    let added = s
        .ok(
            &[
                "configs",
                "add",
                "--agent",
                "mover",
                "--provider",
                "openai",
                "--model",
                "gpt-4o-mini",
                "--api-key",
                KEY,
                "--base-url",
                &sim.base_url(Vendor::OpenAi),
                "--json",
            ],
            &[],
        )
        .await;
    let id = added["id"].to_string();
    let elsewhere = other.base_url(Vendor::OpenAi);
    let output = s
        .run(
            &["configs", "update", &id, "--base-url", &elsewhere, "--json"],
            &[],
        )
        .await;
    assert_eq!(output.status.code(), Some(2));
    let err = json_of(&output);
    assert_eq!(err["error"]["kind"], "validation");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("base_url") && message.contains("--api-key"),
        "{message}"
    );

    let output = s
        .run_with_stdin(
            &[
                "configs",
                "update",
                &id,
                "--base-url",
                &elsewhere,
                "--api-key",
                "-",
                "--json",
            ],
            &[],
            &format!("{KEY}-moved\n"),
        )
        .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json_of(&output)["base_url"], elsewhere.as_str());
    s.ok(&["chat", "--agent", "mover", "--json", "moved"], &[])
        .await;
    assert_eq!(
        other.requests().last().unwrap().header("authorization"),
        Some(format!("Bearer {KEY}-moved").as_str())
    );
    assert!(!s.seen.contains("RECOGNISABLE"));
}

/// An OpenAI chat completion with the given usage, as the vendor sends it.
fn completion(model: &str, prompt: u64, cached: u64, completion: u64) -> Value {
    serde_json::json!({
        "id": "chatcmpl-tiered",
        "object": "chat.completion",
        "created": 1_790_000_000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "priced"},
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_prompt_is_charged_at_its_tier_in_the_answer_and_the_usage_rows() {
    use llmhost_simulator::Reply;
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());
    s.ok(&["init", "--json"], &[]).await;
    s.ok(&["agents", "create", "long", "--json"], &[]).await;
    let model = "gpt-6-sol";
    s.ok(
        &[
            "configs",
            "add",
            "--agent",
            "long",
            "--provider",
            "openai",
            "--model",
            model,
            "--api-key",
            KEY,
            "--base-url",
            &base,
            "--json",
        ],
        &[],
    )
    .await;
    // Its catalogue entry says so: $2 / $10 / $0.20 cached per Mtok, and
    // above 272K input tokens $4 / $15 / $0.40.
    let models = s.ok(&["models", "--json"], &[]).await;
    let entry = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["provider"] == "openai" && m["model"] == model)
        .expect("listed");
    assert_eq!(entry["input_usd_per_mtok"], "2");
    assert_eq!(entry["tiers"][0]["above_input_tokens"], 272_000);
    assert_eq!(entry["tiers"][0]["prices"]["input_usd_per_mtok"], "4");
    assert_eq!(entry["tiers"][0]["prices"]["output_usd_per_mtok"], "15");
    assert_eq!(
        entry["tiers"][0]["prices"]["cache_read_usd_per_mtok"],
        "0.4"
    );

    let agent_chat = ["chat", "--agent", "long", "--json", "prompt"];
    let direct_chat = [
        "chat",
        "--provider",
        "openai",
        "--model",
        model,
        "--base-url",
        &base,
        "--api-key",
        KEY,
        "--json",
        "prompt",
    ];
    // Each case: the usage the vendor reports (prompt, cached, output),
    // how the call is made, the exact cost expected.
    type Case<'a> = ((u64, u64, u64), &'a [&'a str], &'a str);
    let cases: [Case; 3] = [
        // 300K in (100K cached), 1K out: above the threshold.
        // 200_000 x $4 + 100_000 x $0.40 + 1_000 x $15, per million.
        ((300_000, 100_000, 1_000), &agent_chat, "0.855"),
        // Exactly at the threshold is not above it: 272_000 x $2 +
        // 1_000 x $10.
        ((272_000, 0, 1_000), &agent_chat, "0.554"),
        // Without an agent, the same rule: 400_000 x $4 + 2_000 x $15.
        ((400_000, 0, 2_000), &direct_chat, "1.63"),
    ];
    for ((prompt, cached, output), args, cost) in cases {
        sim.enqueue(
            Vendor::OpenAi,
            Reply::json(200, completion(model, prompt, cached, output)),
        );
        let answer = s.ok(args, &[]).await;
        assert_eq!(answer["cost_usd"], cost, "{prompt} in, {cached} cached");
    }

    // The usage rows hold the tiered costs: 0.855 + 0.554.
    let usage = s.ok(&["usage", "--agent", "long", "--json"], &[]).await;
    assert_eq!(usage["usage"][0]["attempts"], 2);
    assert_eq!(usage["usage"][0]["input_tokens"], 572_000);
    assert_eq!(usage["usage"][0]["cost_usd"], "1.409");
    assert_eq!(usage["total_cost_usd"], "1.409");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agents_budget_stops_its_calls_from_the_cli_too() {
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());
    s.ok(&["agents", "create", "thrifty", "--json"], &[]).await;
    s.ok(
        &[
            "configs",
            "add",
            "--agent",
            "thrifty",
            "--provider",
            "openai",
            "--model",
            "gpt-4o-mini",
            "--base-url",
            &base,
            "--max-tokens",
            "20",
            "--json",
        ],
        &[],
    )
    .await;
    let env = [("OPENAI_API_KEY", "sk-from-env")];
    // One answer's worth, about: 7 tokens in and 12 out cost 0.00000825.
    s.ok(
        &[
            "agents", "budget", "thrifty", "--usd", "0.00002", "--period", "day", "--json",
        ],
        &[],
    )
    .await;
    let first = s
        .ok(&["chat", "--agent", "thrifty", "--json", "hello"], &env)
        .await;
    assert!(first["cost_usd"].is_string(), "{first}");
    let refused = s
        .fails(
            &["chat", "--agent", "thrifty", "--json", "hello"],
            &env,
            "budget_exceeded",
        )
        .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("budget exceeded")),
        "{refused}"
    );
    let posts = sim.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1, "the refused call never went out");
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_prices_bill_cached_tokens_at_a_cache_price() {
    use llmhost_simulator::Reply;
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());
    s.ok(&["init", "--json"], &[]).await;
    s.ok(&["agents", "create", "priced", "--json"], &[]).await;
    // gpt-6-sol's catalogue: $2 in, $0.20 cache reads (10 %), $10 out.
    let args = [
        "configs",
        "add",
        "--agent",
        "priced",
        "--provider",
        "openai",
        "--model",
        "gpt-6-sol",
        "--api-key",
        KEY,
        "--base-url",
        base.as_str(),
        "--price-input",
        "1",
        "--price-output",
        "4",
        "--json",
    ];
    let first = s.ok(&args, &[]).await;
    assert_eq!(first["prices"]["input"], "1", "{first}");
    assert_eq!(first["prices"]["cache_read"], Value::Null, "{first}");
    let chat = ["chat", "--agent", "priced", "--json", "prompt"];
    // 100K in of which 50K cached, 1K out. Without a cache price of its
    // own, the custom input price at the catalogue's 10 %: 50_000 x $1 +
    // 50_000 x $0.10 + 1_000 x $4, per million.
    sim.enqueue(
        Vendor::OpenAi,
        Reply::json(200, completion("gpt-6-sol", 100_000, 50_000, 1_000)),
    );
    let answer = s.ok(&chat, &[]).await;
    assert_eq!(answer["cost_usd"], "0.059", "{answer}");

    // With its own cache price: 50_000 x $1 + 50_000 x $0.50 + 1_000 x $4.
    let id = first["id"].as_i64().unwrap().to_string();
    s.ok(
        &[
            "configs",
            "update",
            &id,
            "--price-input",
            "1",
            "--price-output",
            "4",
            "--price-cache-read",
            "0.5",
            "--json",
        ],
        &[],
    )
    .await;
    sim.enqueue(
        Vendor::OpenAi,
        Reply::json(200, completion("gpt-6-sol", 100_000, 50_000, 1_000)),
    );
    let answer = s.ok(&chat, &[]).await;
    assert_eq!(answer["cost_usd"], "0.079", "{answer}");
    let usage = s.ok(&["usage", "--agent", "priced", "--json"], &[]).await;
    assert_eq!(usage["total_cost_usd"], "0.138", "{usage}");

    // Any field by name, as the admin API takes it; a flag of its own wins.
    let set = s
        .ok(
            &[
                "configs",
                "update",
                &id,
                "--set",
                "top_p=0.5",
                "--set",
                "max_attempts=2",
                "--set",
                "temperature=0.1",
                "--temperature",
                "0.2",
                "--json",
            ],
            &[],
        )
        .await;
    assert_eq!(
        (&set["top_p"], &set["max_attempts"], &set["temperature"]),
        (&Value::from(0.5), &Value::from(2), &Value::from(0.2)),
        "{set}"
    );
    let refused = s
        .fails(
            &["configs", "update", &id, "--set", "colour=red", "--json"],
            &[],
            "invalid_config",
        )
        .await;
    assert!(refused.to_string().contains("colour"), "{refused}");
    let refused = s
        .fails(
            &["configs", "update", &id, "--set", "top_p=high", "--json"],
            &[],
            "invalid_config",
        )
        .await;
    assert!(refused.to_string().contains("top_p"), "{refused}");
}
