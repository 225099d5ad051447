//! The `llmhost` command as users and scripts meet it: real processes,
//! talking to the vendor simulator over loopback.

mod common;

use common::{json_of, llmhost, run, run_ok};
use llmhost_simulator::{Reply, Simulator, Vendor};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

#[tokio::test(flavor = "multi_thread")]
async fn chat_json_has_the_documented_fields() {
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    for stream in [false, true] {
        let mut args = vec![
            "chat",
            "--provider",
            "openai",
            "--model",
            "gpt-4o-mini",
            "--base-url",
            &base,
            "--api-key",
            "sk-x",
            "--system",
            "Be brief.",
            "--json",
        ];
        if stream {
            args.push("--stream");
        }
        args.push("Hello CLI");
        let output = run(&args, &[]).await;
        assert!(
            output.status.success(),
            "stream={stream}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let v = json_of(&output);
        assert_eq!(v["provider"], "openai");
        assert_eq!(v["model"], "gpt-4o-mini");
        assert!(
            v["content"]
                .as_str()
                .expect("content")
                .contains("You said: Hello CLI")
        );
        assert!(v["reasoning_content"].is_null());
        assert_eq!(v["finish_reason"], "stop");
        let input = v["usage"]["input_tokens"].as_u64().expect("input tokens");
        let output_tokens = v["usage"]["output_tokens"].as_u64().expect("output tokens");
        assert!(input > 0 && output_tokens > 0);
        assert_eq!(v["usage"]["estimated"], false);
        // $0.15 / $0.60 per million tokens, to the last digit.
        let expected = rust_decimal::Decimal::from(input) * rust_decimal::Decimal::new(15, 8)
            + rust_decimal::Decimal::from(output_tokens) * rust_decimal::Decimal::new(60, 8);
        assert_eq!(v["cost_usd"], expected.normalize().to_string());
        assert!(v["latency_ms"].is_u64());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_prints_text_and_reads_key_and_base_url_from_the_environment() {
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    for stream in [false, true] {
        let mut args = vec!["chat", "-p", "openai", "-m", "gpt-4.1-mini"];
        if stream {
            args.push("--stream");
        }
        args.push("plain text please");
        let output = run(
            &args,
            &[("OPENAI_API_KEY", "sk-env"), ("OPENAI_BASE_URL", &base)],
        )
        .await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("You said: plain text please"), "{stdout}");
    }
    assert!(
        sim.requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer sk-env"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_exit_non_zero_with_a_typed_json_error() {
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    sim.enqueue(
        Vendor::OpenAi,
        Reply::openai_error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided",
        ),
    );
    // Retried three times (the default attempts), then reported.
    for _ in 0..3 {
        sim.enqueue(
            Vendor::OpenAi,
            Reply::openai_error(500, "server_error", None, "boom"),
        );
    }
    for (model, kind) in [
        ("gpt-4o", "authentication"),
        ("gpt-4o", "server_error"),
        ("no-such-model", "model_not_supported"),
    ] {
        let output = run(
            &[
                "chat",
                "-p",
                "openai",
                "-m",
                model,
                "--base-url",
                &base,
                "--api-key",
                "k",
                "--json",
                "hi",
            ],
            &[],
        )
        .await;
        assert!(!output.status.success());
        let v = json_of(&output);
        assert_eq!(v["error"]["kind"], kind, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let output = run(
        &[
            "chat",
            "-p",
            "openai",
            "-m",
            "gpt-4o",
            "--base-url",
            &base,
            "--json",
            "hi",
        ],
        &[],
    )
    .await;
    assert_eq!(json_of(&output)["error"]["kind"], "api_key_missing");
    let output = run(&["chat", "-p", "nobody", "-m", "x", "--json", "hi"], &[]).await;
    assert_eq!(json_of(&output)["error"]["kind"], "unknown_provider");
    let output = run(
        &[
            "chat",
            "-p",
            "openai",
            "-m",
            "gpt-4o",
            "--base-url",
            "ftp://x",
            "--json",
            "hi",
        ],
        &[],
    )
    .await;
    assert_eq!(json_of(&output)["error"]["kind"], "invalid_config");
    // Without --json the error goes to stderr.
    let output = run(
        &[
            "chat",
            "-p",
            "openai",
            "-m",
            "gpt-4o",
            "--base-url",
            &base,
            "hi",
        ],
        &[],
    )
    .await;
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("OPENAI_API_KEY"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_chat_waits_out_retry_after_and_is_retried() {
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    sim.enqueue(
        Vendor::OpenAi,
        Reply::openai_error(429, "requests", Some("rate_limit_exceeded"), "slow down")
            .header("retry-after", "1"),
    );
    let started = std::time::Instant::now();
    let output = run(
        &[
            "chat",
            "-p",
            "openai",
            "-m",
            "gpt-4o",
            "--base-url",
            &base,
            "--api-key",
            "k",
            "--json",
            "hi",
        ],
        &[],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(950));
    let posts = sim.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 2, "the 429, then the retry");
    // With retries spent, the rate limit is reported with its wait.
    for _ in 0..3 {
        sim.enqueue(
            Vendor::OpenAi,
            Reply::openai_error(429, "requests", Some("rate_limit_exceeded"), "slow down")
                .header("retry-after-ms", "50"),
        );
    }
    let output = run(
        &[
            "chat",
            "-p",
            "openai",
            "-m",
            "gpt-4o",
            "--base-url",
            &base,
            "--api-key",
            "k",
            "--json",
            "hi",
        ],
        &[],
    )
    .await;
    assert!(!output.status.success());
    let v = json_of(&output);
    assert_eq!(v["error"]["kind"], "rate_limited", "{v}");
    assert_eq!(v["error"]["retry_after_ms"], 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_models_and_health() {
    let output = run(
        &[
            "tokens",
            "-p",
            "openai",
            "-m",
            "gpt-4o",
            "--json",
            "Hello, world!",
        ],
        &[],
    )
    .await;
    assert!(output.status.success());
    let v = json_of(&output);
    assert_eq!(v["tokens"], 4);
    assert_eq!(v["estimated"], false);
    assert_eq!(v["encoding"], "o200k_base");

    let output = run(&["models", "--provider", "openai", "--json"], &[]).await;
    let models = json_of(&output);
    let gpt4o = models
        .as_array()
        .expect("list")
        .iter()
        .find(|m| m["model"] == "gpt-4o")
        .expect("gpt-4o listed");
    assert_eq!(gpt4o["context_window"], 128000);
    assert_eq!(gpt4o["input_usd_per_mtok"], "2.5");
    assert_eq!(gpt4o["output_usd_per_mtok"], "10");
    assert!(
        gpt4o["capabilities"]
            .as_array()
            .expect("caps")
            .iter()
            .any(|c| c == "tools")
    );

    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    let output = run(
        &[
            "health",
            "-p",
            "openai",
            "--base-url",
            &base,
            "--api-key",
            "k",
            "--json",
        ],
        &[],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json_of(&output)["healthy"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_runs_offline_and_simulate_serves_the_protocol() {
    let output = run(&["demo"], &[("OPENAI_BASE_URL", "http://127.0.0.1:9")]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("openai") && stdout.contains("gpt-4o-mini"),
        "{stdout}"
    );

    /// Stops the simulator process even when an assertion fails.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        llmhost(&["simulate", "--listen", "127.0.0.1:0"], &[])
            .stdout(Stdio::piped())
            .spawn()
            .expect("simulate starts"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (found, base) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.split_whitespace().find(|w| w.ends_with("/openai/v1")) {
                let _ = found.send(url.to_owned());
            }
        }
    });
    let openai_base =
        tokio::task::spawn_blocking(move || base.recv_timeout(std::time::Duration::from_secs(60)))
            .await
            .expect("join")
            .expect("simulate prints the OpenAI base URL");
    let output = run(
        &[
            "chat",
            "-p",
            "openai",
            "-m",
            "gpt-4o",
            "--base-url",
            &openai_base,
            "--api-key",
            "k",
            "--json",
            "hi",
        ],
        &[],
    )
    .await;
    drop(child);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        json_of(&output)["content"]
            .as_str()
            .expect("content")
            .contains("You said: hi")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn model_overrides_file_and_strict_mode() {
    let dir = std::env::temp_dir().join(format!("llmhost-cli-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("models.toml");
    std::fs::write(
        &file,
        "[[model]]\nprovider = \"openai\"\nid = \"gpt-4o\"\ninput_usd_per_mtok = \"2.25\"\n\n[[model]]\nprovider = \"openai\"\nid = \"gpt-7\"\ninput_usd_per_mtok = \"1\"\noutput_usd_per_mtok = \"3\"\n",
    )
    .expect("write");
    let path = file.display().to_string();
    let output = run(
        &["models", "-p", "openai", "--json", "--models", &path],
        &[],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let models = json_of(&output);
    let find = |id: &str| {
        models
            .as_array()
            .expect("list")
            .iter()
            .find(|m| m["model"] == id)
            .cloned()
    };
    assert_eq!(
        find("gpt-4o").expect("gpt-4o")["input_usd_per_mtok"],
        "2.25"
    );
    assert_eq!(find("gpt-7").expect("added")["output_usd_per_mtok"], "3");

    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    let output = run(
        &[
            "chat",
            "-p",
            "openai",
            "-m",
            "gpt-99",
            "--base-url",
            &base,
            "--api-key",
            "k",
            "--json",
            "hi",
        ],
        &[("LLMHOST_STRICT_MODELS", "1"), ("LLMHOST_MODELS", &path)],
    )
    .await;
    assert_eq!(json_of(&output)["error"]["kind"], "unknown_model");
    assert!(sim.requests().is_empty());

    std::fs::write(
        &file,
        "[[model]]\nprovider = \"openai\"\nid = \"gpt-4o\"\ninput_usd_per_mtok = \"a lot\"\n",
    )
    .expect("write");
    let output = run(&["models", "--json", "--models", &path], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    let error = json_of(&output);
    assert_eq!(error["error"]["kind"], "invalid_config");
    assert!(
        error["error"]["message"]
            .as_str()
            .expect("message")
            .contains("a lot")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// (provider, simulator vendor, model, input $/Mtok, output $/Mtok).
const FOUR: &[(&str, Vendor, &str, &str, &str)] = &[
    ("openai", Vendor::OpenAi, "gpt-4o-mini", "0.15", "0.60"),
    (
        "deepseek",
        Vendor::DeepSeek,
        "deepseek-chat",
        "0.28",
        "0.42",
    ),
    ("grok", Vendor::XAi, "grok-3", "3", "15"),
    ("claude", Vendor::Anthropic, "claude-sonnet-4-5", "3", "15"),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_provider_chats_and_streams_with_exact_cost() {
    let sim = Simulator::start().await.expect("sim");
    for (provider, vendor, model, input_price, output_price) in FOUR {
        let base = sim.base_url(*vendor);
        for stream in [false, true] {
            let mut args = vec![
                "chat",
                "-p",
                provider,
                "-m",
                model,
                "--base-url",
                &base,
                "--api-key",
                "k",
                "--json",
            ];
            if stream {
                args.push("--stream");
            }
            args.push("Hello from every provider");
            let output = run(&args, &[]).await;
            assert!(
                output.status.success(),
                "{provider} stream={stream}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let v = json_of(&output);
            assert_eq!(v["provider"], *provider);
            assert!(
                v["content"]
                    .as_str()
                    .expect("content")
                    .contains("You said: Hello from every provider"),
                "{provider}: {v}"
            );
            let input = v["usage"]["input_tokens"].as_u64().expect("input");
            let output_tokens = v["usage"]["output_tokens"].as_u64().expect("output");
            assert!(input > 0 && output_tokens > 0, "{provider}");
            assert_eq!(v["usage"]["estimated"], false, "{provider}");
            let per_token = |price: &str| {
                rust_decimal::Decimal::from_str_exact(price).expect("price")
                    / rust_decimal::Decimal::from(1_000_000)
            };
            let expected = rust_decimal::Decimal::from(input) * per_token(input_price)
                + rust_decimal::Decimal::from(output_tokens) * per_token(output_price);
            assert_eq!(
                v["cost_usd"],
                expected.normalize().to_string(),
                "{provider} stream={stream}: cost to the last digit"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn models_lists_all_four_providers() {
    let output = run(&["models", "--json"], &[]).await;
    assert!(output.status.success());
    let models = json_of(&output);
    let list = models.as_array().expect("list");
    for (provider, _, model, input_price, output_price) in FOUR {
        let entry = list
            .iter()
            .find(|m| m["provider"] == *provider && m["model"] == *model)
            .unwrap_or_else(|| panic!("{provider}/{model} listed"));
        assert!(
            entry["context_window"]
                .as_u64()
                .is_some_and(|n| n >= 100_000),
            "{entry}"
        );
        let normal = |p: &str| {
            rust_decimal::Decimal::from_str_exact(p)
                .expect("price")
                .normalize()
                .to_string()
        };
        assert_eq!(
            entry["input_usd_per_mtok"],
            normal(input_price),
            "{provider}/{model}"
        );
        assert_eq!(
            entry["output_usd_per_mtok"],
            normal(output_price),
            "{provider}/{model}"
        );
    }
    for provider in ["openai", "deepseek", "grok", "claude"] {
        assert!(
            list.iter().filter(|m| m["provider"] == provider).count() >= 2,
            "{provider} has its models"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_show_and_prune_keep_what_the_loaded_plugins_use() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let env = [("LLMHOST_CACHE_DIR", cache.to_str().unwrap())];

    // The first start compiles the four built-ins into the empty cache.
    let shown = json_of(&run(&["cache", "--json"], &env).await);
    assert_eq!(shown["dir"], cache.to_str().unwrap());
    assert_eq!(shown["artifacts"].as_array().unwrap().len(), 4, "{shown}");
    assert_eq!(shown["in_use"], 4);

    // An artifact of some older build, and a file that is not an artifact.
    std::fs::write(cache.join("0123abcd.cwasm"), vec![7u8; 1000]).unwrap();
    std::fs::write(cache.join("notes.txt"), "keep me").unwrap();
    let shown = json_of(&run(&["cache", "show", "--json"], &env).await);
    let artifacts = shown["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 5, "{shown}");
    let stale: Vec<_> = artifacts.iter().filter(|a| a["in_use"] == false).collect();
    assert_eq!(stale.len(), 1);
    assert!(
        stale[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("0123abcd.cwasm")
    );
    let text = run(&["cache"], &env).await;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("5 compiled components") && text.contains("4 used"),
        "{text}"
    );
    assert!(
        text.contains("0123abcd.cwasm") && text.contains("unused"),
        "{text}"
    );

    let pruned = json_of(&run(&["cache", "prune", "--json"], &env).await);
    let removed = pruned["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{pruned}");
    assert!(
        removed[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("0123abcd.cwasm")
    );
    assert_eq!(pruned["freed_bytes"], 1000);
    assert!(!cache.join("0123abcd.cwasm").exists());
    assert!(cache.join("notes.txt").exists());
    let shown = json_of(&run(&["cache", "--json"], &env).await);
    assert_eq!(shown["artifacts"].as_array().unwrap().len(), 4);

    // --all empties it of artifacts, and only of artifacts.
    let pruned = json_of(&run(&["cache", "prune", "--all", "--json"], &env).await);
    assert_eq!(pruned["removed"].as_array().unwrap().len(), 4, "{pruned}");
    let left: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["notes.txt"]);

    // With the cache off there is nothing to prune, and it says so.
    let off = run(&["--no-cache", "cache", "prune", "--json"], &env).await;
    assert_eq!(off.status.code(), Some(2));
    let v = json_of(&off);
    assert_eq!(v["error"]["kind"], "invalid_config");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cache is off")
    );
    let off = run(&["--no-cache", "cache"], &env).await;
    assert!(String::from_utf8_lossy(&off.stdout).contains("cache is off"));
}

/// Runs the binary with `input` on its standard input.
async fn run_with_stdin(args: &[&str], input: &str) -> std::process::Output {
    let mut command = llmhost(args, &[]);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = input.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = command.spawn().expect("llmhost starts");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(input.as_bytes()).expect("stdin written");
        drop(stdin);
        child.wait_with_output().expect("llmhost runs")
    })
    .await
    .expect("join")
}

/// `--api-key -`: the key comes from standard input, so it never shows in
/// the process list (`ps`), which every user of the machine can read.
#[tokio::test(flavor = "multi_thread")]
async fn chat_reads_the_api_key_from_standard_input() {
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    let key = "sk-piped-RECOGNISABLE-0123456789";
    for stream in [false, true] {
        let mut args = vec![
            "chat",
            "-p",
            "openai",
            "-m",
            "gpt-4o-mini",
            "--base-url",
            &base,
            "--api-key",
            "-",
            "--json",
        ];
        if stream {
            args.push("--stream");
        }
        args.push("from a pipe");
        let output = run_with_stdin(&args, &format!("{key}\n")).await;
        assert!(
            output.status.success(),
            "stream={stream}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            json_of(&output)["content"]
                .as_str()
                .is_some_and(|c| c.contains("from a pipe"))
        );
        assert_eq!(
            sim.requests()
                .last()
                .expect("a request")
                .header("authorization"),
            Some(format!("Bearer {key}").as_str()),
            "the simulator got the piped key, trimmed"
        );
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!printed.contains("RECOGNISABLE"), "{printed}");
    }

    // Nothing piped in: a usage-level validation error, nothing sent.
    let before = sim.requests().len();
    let output = run_with_stdin(
        &[
            "chat",
            "-p",
            "openai",
            "-m",
            "gpt-4o-mini",
            "--base-url",
            &base,
            "--api-key",
            "-",
            "--json",
            "x",
        ],
        "\n",
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    let v = json_of(&output);
    assert_eq!(v["error"]["kind"], "validation", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("standard input")),
        "{v}"
    );
    assert_eq!(sim.requests().len(), before);

    // The help recommends it.
    let output = run(&["chat", "--help"], &[]).await;
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--api-key <KEY|->"), "{help}");
    assert!(help.contains("standard input"), "{help}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_inspect_shows_what_a_file_asks_for_and_install_records_the_grant() {
    let work = tempfile::tempdir().expect("dir");
    let file = work.path().join("openai-copy.wasm");
    std::fs::write(
        &file,
        llmhost::builtin_component("openai").expect("built in"),
    )
    .expect("write");
    let file = file.display().to_string();
    let plugins = work.path().join("plugins").display().to_string();

    // What it asks for, judged: its key variable is another provider's
    // (the built-in it would replace), granted only by name.
    let inspected = run_ok(&["plugins", "inspect", &file, "--json"], &[]).await;
    assert_eq!(inspected["asks"]["replaces_builtin"], "openai");
    assert_eq!(inspected["asks"]["key_env"][0]["name"], "OPENAI_API_KEY");
    assert_eq!(inspected["asks"]["key_env"][0]["status"], "by_name");
    assert_eq!(inspected["asks"]["hosts"][0]["host"], "api.openai.com");
    let text = run(&["plugins", "inspect", &file], &[]).await;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("asks for:"), "{text}");
    assert!(
        text.contains(
            "OPENAI_API_KEY (the key of the built-in provider `openai`; only with --allow-env)"
        ),
        "{text}"
    );
    assert!(text.contains("needs --replace"), "{text}");

    // A built-in's id needs --replace; the grant it records is shown.
    let refused = run(
        &[
            "--plugins",
            &plugins,
            "plugins",
            "install",
            &file,
            "--yes",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(json_of(&refused)["error"]["kind"], "conflict");
    let installed = run(
        &[
            "--plugins",
            &plugins,
            "plugins",
            "install",
            &file,
            "--yes",
            "--replace",
        ],
        &[],
    )
    .await;
    assert!(installed.status.success());
    let shown = String::from_utf8_lossy(&installed.stdout);
    assert!(shown.contains("granted:"), "{shown}");
    assert!(shown.contains("hosts         api.openai.com"), "{shown}");
    assert!(
        shown.contains("environment   LLMHOST_OPENAI_API_KEY, LLMHOST_OPENAI_BASE_URL"),
        "{shown}"
    );
    let record = std::fs::read_to_string(work.path().join("plugins").join("openai.toml"))
        .expect("the record beside it");
    assert!(record.contains("replaces_builtin = true"), "{record}");
    assert!(record.contains("blake3 = "), "{record}");

    // Loaded, it holds exactly that: OPENAI_API_KEY is not read for it.
    let listed = run_ok(&["--plugins", &plugins, "plugins", "--json"], &[]).await;
    let openai = listed["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .find(|p| p["id"] == "openai")
        .expect("listed")
        .clone();
    assert!(
        openai["origin"]
            .as_str()
            .expect("path")
            .ends_with("openai.wasm")
    );
    assert_eq!(openai["installed"], true);
    assert_eq!(
        openai["env"],
        serde_json::json!(["LLMHOST_OPENAI_API_KEY", "LLMHOST_OPENAI_BASE_URL"])
    );
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    let chat = [
        "--plugins",
        &plugins,
        "chat",
        "-p",
        "openai",
        "-m",
        "gpt-4o-mini",
        "--base-url",
        &base,
        "--json",
        "hi",
    ];
    let missing = run(&chat, &[("OPENAI_API_KEY", "sk-not-granted")]).await;
    assert_eq!(json_of(&missing)["error"]["kind"], "api_key_missing");
    assert!(
        sim.requests()
            .iter()
            .all(|r| !format!("{r:?}").contains("sk-not-granted"))
    );
    let served = run_ok(&chat, &[("LLMHOST_OPENAI_API_KEY", "sk-granted")]).await;
    assert!(!served["content"].as_str().expect("content").is_empty());
}

/// Runs `command` on a pseudo-terminal (`script` gives it one), typing
/// `reply` at it.
fn on_a_terminal(command: &str, cache: &std::path::Path, reply: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env("LLMHOST_CACHE_DIR", cache)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(reply)
        .expect("answer");
    child.wait_with_output().expect("finishes")
}

/// `plugins install` on a terminal asks before granting hosts.
#[tokio::test(flavor = "multi_thread")]
async fn plugins_install_on_a_terminal_asks_before_granting_hosts() {
    let work = tempfile::tempdir().expect("dir");
    let file = work.path().join("openai-copy.wasm");
    std::fs::write(
        &file,
        llmhost::builtin_component("openai").expect("built in"),
    )
    .expect("write");
    let plugins = work.path().join("plugins");
    let command = format!(
        "{} --plugins {} plugins install {} --replace",
        env!("CARGO_BIN_EXE_llmhost"),
        plugins.display(),
        file.display()
    );
    let cache = work.path().join("cache");
    let declined = tokio::task::spawn_blocking({
        let (command, cache) = (command.clone(), cache.clone());
        move || on_a_terminal(&command, &cache, b"n\n")
    })
    .await
    .expect("join");
    let shown = String::from_utf8_lossy(&declined.stdout);
    assert!(!declined.status.success(), "{shown}");
    assert!(
        shown.contains("Grant `openai` the hosts api.openai.com? [y/N]"),
        "{shown}"
    );
    assert!(shown.contains("declined"), "{shown}");
    assert!(!plugins.join("openai.wasm").exists());

    let accepted = tokio::task::spawn_blocking(move || on_a_terminal(&command, &cache, b"y\n"))
        .await
        .expect("join");
    let shown = String::from_utf8_lossy(&accepted.stdout);
    assert!(accepted.status.success(), "{shown}");
    assert!(shown.contains("hosts         api.openai.com"), "{shown}");
    let record = std::fs::read_to_string(plugins.join("openai.toml")).expect("recorded");
    assert!(record.contains("hosts = [\"api.openai.com\"]"), "{record}");
}

/// A service without a home directory names its cache key file.
#[tokio::test(flavor = "multi_thread")]
async fn the_cache_key_file_can_be_named_in_the_environment() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().expect("dir");
    let key = work.path().join("secrets").join("cache.key");
    let (key_text, cache) = (
        key.display().to_string(),
        work.path().join("cache").display().to_string(),
    );
    let env = [
        ("LLMHOST_CACHE_KEY_FILE", key_text.as_str()),
        ("LLMHOST_CACHE_DIR", cache.as_str()),
        ("HOME", ""),
        ("XDG_CONFIG_HOME", ""),
    ];
    let sources = |listed: &serde_json::Value| -> Vec<String> {
        listed["plugins"]
            .as_array()
            .expect("plugins")
            .iter()
            .map(|p| p["loaded_from"].as_str().expect("source").to_owned())
            .collect()
    };
    let first = run_ok(&["plugins", "--json"], &env).await;
    assert!(sources(&first).iter().all(|s| s == "compiled"), "{first}");
    let mode = std::fs::metadata(&key)
        .expect("created there")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let second = run_ok(&["plugins", "--json"], &env).await;
    assert!(sources(&second).iter().all(|s| s == "cache"), "{second}");
}

#[tokio::test(flavor = "multi_thread")]
async fn vendor_params_reach_the_body_and_bad_ones_are_refused() {
    let sim = Simulator::start().await.expect("sim");
    let base = sim.base_url(Vendor::OpenAi);
    let chat = |params: &'static str| {
        let base = base.clone();
        async move {
            run(
                &[
                    "chat",
                    "-p",
                    "openai",
                    "-m",
                    "gpt-4o-mini",
                    "--base-url",
                    &base,
                    "--api-key",
                    "sk-x",
                    "--vendor-params",
                    params,
                    "--json",
                    "Hi",
                ],
                &[],
            )
            .await
        }
    };
    let output = chat(r#"{"seed": 7, "temperature": 0.25}"#).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let body = sim.requests().pop().expect("sent").json().expect("json");
    assert_eq!(body["seed"], 7);
    assert_eq!(body["temperature"], 0.25);
    // Not an object, not JSON: refused before anything is sent.
    for bad in ["[1, 2]", "{seed"] {
        let output = chat(bad).await;
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(said.contains("--vendor-params"), "{said}");
    }
    assert_eq!(sim.requests().len(), 1);
}
