//! The web console at `/ui` as a person meets it: `llmhost serve` in front
//! of the vendor simulator, and Debian's headless Chromium driven through
//! playwright-core by `tests/console/console.mjs` (both installed by
//! `scripts/browser`). One browser runs every scenario in order; each
//! saves a screenshot under `target/console-screenshots/`.

mod common;

use common::gateway::Setup;
use llmhost_simulator::Simulator;
use reqwest::header;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn target_dir() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
}

/// Where playwright-core is, installed by `scripts/browser` once per run
/// (with Chromium, when missing), into the build's target directory unless
/// `LLMHOST_BROWSER_NODE` names another place.
fn node_modules() -> &'static PathBuf {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    MODULES.get_or_init(|| {
        let mut command = Command::new("bash");
        command.arg(repo().join("scripts/browser"));
        if std::env::var_os("LLMHOST_BROWSER_NODE").is_none() {
            command.env("LLMHOST_BROWSER_NODE", target_dir().join("browser-node"));
        }
        let output = command.output().expect("bash runs");
        assert!(
            output.status.success(),
            "scripts/browser failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8(output.stdout).expect("a path").trim())
    })
}

/// Runs `scenarios` of `tests/console/console.mjs` (all when empty) against
/// the gateway at `url`, signed in with `token`; what each saw, by name.
async fn browse(url: &str, token: &str, scenarios: &[&str]) -> serde_json::Map<String, Value> {
    let mut command = Command::new("node");
    command
        .arg(repo().join("tests/console/console.mjs"))
        .env("CONSOLE_URL", url)
        .env("CONSOLE_TOKEN", token)
        .env("CONSOLE_SCENARIOS", scenarios.join(","))
        .env(
            "CONSOLE_SCREENSHOTS",
            target_dir().join("console-screenshots"),
        )
        .env("CONSOLE_NODE_MODULES", node_modules())
        .env("NO_PROXY", "127.0.0.1,localhost");
    let output = tokio::task::spawn_blocking(move || command.output().expect("node runs"))
        .await
        .expect("join");
    assert!(
        output.status.success(),
        "console.mjs: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "console.mjs printed no JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let scenarios = result["scenarios"].as_object().cloned().unwrap_or_default();
    let failed: Vec<String> = scenarios
        .iter()
        .filter(|(_, outcome)| outcome["ok"] != true)
        .map(|(name, outcome)| format!("{name}: {outcome}"))
        .collect();
    assert!(
        failed.is_empty(),
        "scenarios failed:\n{}",
        failed.join("\n")
    );
    for (name, outcome) in &scenarios {
        let page_errors: Vec<&Value> = outcome["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|problem| {
                let text = problem.as_str().unwrap_or_default();
                text.starts_with("page error") || text.contains("Content Security Policy")
            })
            .collect();
        assert!(page_errors.is_empty(), "scenario {name}: {page_errors:?}");
    }
    scenarios
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy() {
    let sim = Simulator::start().await.expect("simulator");
    let gateway = Setup::new(&sim).start().await;
    let client = reqwest::Client::new();
    for path in ["/ui", "/ui/", "/ui/assets/app.js", "/ui/assets/style.css"] {
        let response = client
            .get(format!("{}{path}", gateway.url()))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        let text = |name: header::HeaderName| {
            headers
                .get(&name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let policy = text(header::CONTENT_SECURITY_POLICY);
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
        assert_eq!(text(header::X_FRAME_OPTIONS), "DENY", "{path}");
        assert_eq!(text(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{path}");
        assert_eq!(text(header::REFERRER_POLICY), "no-referrer", "{path}");
        assert_eq!(text(header::CACHE_CONTROL), "no-cache", "{path}");
        let expected = match path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            _ => "text/html; charset=utf-8",
        };
        assert_eq!(text(header::CONTENT_TYPE), expected, "{path}");

        // The browser's copy is current: 304, with the same policy.
        let etag = text(header::ETAG);
        assert!(etag.starts_with('"'), "{path}: {etag:?}");
        let again = client
            .get(format!("{}{path}", gateway.url()))
            .header(header::IF_NONE_MATCH, &etag)
            .send()
            .await
            .expect("GET");
        assert_eq!(again.status(), 304, "{path}");
        assert!(
            again
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY)
        );
    }
    let page = client
        .get(format!("{}/ui/", gateway.url()))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(
        page.contains(r#"<script type="module" src="/ui/assets/app.js"></script>"#),
        "{page}"
    );
    for missing in ["/ui/assets/nope.js", "/ui/assets/..%2Fmod.rs"] {
        let response = client
            .get(format!("{}{missing}", gateway.url()))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 404, "{missing}");
    }
}

/// Every scenario in one browser, signed in with an admin token made by
/// the CLI: agents and configs, a virtual key shown once, a streamed chat
/// in the playground and the overview that counts it.
#[tokio::test]
async fn the_console_manages_the_gateway_in_a_browser() {
    let sim = Simulator::start().await.expect("simulator");
    // Pieces of the answer arrive apart, as from a real model.
    sim.set_stream_delay(Duration::from_millis(15));
    let setup = Setup::new(&sim);
    let created = setup
        .cli(&["admin-tokens", "create", "console", "--json"])
        .await;
    let token = created["token"].as_str().expect("the token").to_owned();
    let gateway = setup.start().await;
    let seen = browse(&gateway.url(), &token, &[]).await;
    let scenario = |name: &str| -> &Value {
        seen.get(name)
            .unwrap_or_else(|| panic!("scenario {name} did not run: {seen:?}"))
    };

    let page = scenario("sign_in_page");
    assert_eq!(page["status"], 200, "{page}");
    assert_eq!(page["token_label"], true, "{page}");
    assert_eq!(page["title"], "Sign in · llmhost console", "{page}");

    let wrong = scenario("wrong_token");
    let message = wrong["message"].as_str().unwrap_or_default();
    assert!(message.contains("not valid"), "{wrong}");
    assert_eq!(wrong["still_signing_in"], true, "{wrong}");

    let signed_in = scenario("sign_in");
    assert_eq!(signed_in["signed_in_as"], "console", "{signed_in}");
    assert_eq!(signed_in["cookie"]["http_only"], true, "{signed_in}");
    assert_eq!(signed_in["cookie"]["same_site"], "Strict", "{signed_in}");
    assert_eq!(signed_in["token_in_page"], false, "{signed_in}");
    assert_eq!(signed_in["web_storage_items"], 0, "{signed_in}");
    assert_eq!(signed_in["skip_link"]["focus"], "main", "{signed_in}");
    assert_eq!(signed_in["skip_link"]["hash"], "", "{signed_in}");

    let config = scenario("agent_and_config");
    let error = config["error"].as_str().unwrap_or_default();
    assert!(error.contains("temperature"), "{config}");
    assert_eq!(config["error_beside"], "config-temperature", "{config}");
    assert_eq!(config["aria_invalid"], "true", "{config}");
    assert_eq!(config["configs"], 1, "{config}");
    assert_eq!(config["shows_config"], true, "{config}");
    // The config's API key is write-only: stored, shown as a hint only.
    assert_eq!(config["api_key_in_page"], false, "{config}");
    let key_cell = config["key_cell"].as_str().unwrap_or_default();
    assert!(key_cell.starts_with("stored"), "{config}");
    let validated = config["validated"].as_str().unwrap_or_default();
    assert!(validated.starts_with("Healthy"), "{config}");

    let stale = scenario("stale_edit");
    assert_eq!(stale["patch_status"], 200, "{stale}");
    let conflict = stale["conflict"].as_str().unwrap_or_default();
    assert!(conflict.contains("changed by someone else"), "{stale}");
    assert_eq!(stale["saved"], true, "{stale}");

    let key = scenario("virtual_key");
    assert_eq!(key["key_matches_hint"], true, "{key}");
    assert!(key["key_length"].as_u64() > Some(20), "{key}");
    assert_eq!(key["shown_once"], true, "{key}");
    assert_eq!(key["after_reload"], false, "{key}");
    assert_eq!(key["after_navigation"], false, "{key}");
    assert_eq!(key["budget_bar"], true, "{key}");
    assert_eq!(key["status_after_revoke"], "revoked", "{key}");
    assert_eq!(key["stored"], 0, "{key}");

    let chat = scenario("playground");
    assert!(
        !chat["text"].as_str().unwrap_or_default().is_empty(),
        "{chat}"
    );
    assert!(
        chat["distinct_lengths"].as_u64() >= Some(3),
        "the answer arrived in too few pieces: {chat}"
    );
    let request_id = chat["request_id"].as_str().expect("a request id");
    let rows = gateway.usage_of(request_id, 1).await;
    let row = rows.last().expect("a usage row");
    assert_eq!(
        (row.provider.as_str(), row.model.as_str(), row.streamed),
        ("openai", "gpt-4o-mini", true),
        "{rows:?}"
    );
    assert_eq!(
        chat["output_tokens"].as_str(),
        Some(row.output_tokens.to_string().as_str()),
        "{chat}"
    );
    assert_eq!(
        chat["input_tokens"].as_str(),
        Some(row.input_tokens.to_string().as_str()),
        "{chat}"
    );

    let through_agent = scenario("playground_agent");
    assert_eq!(
        through_agent["served_by"], "openai/gpt-4o-mini",
        "{through_agent}"
    );
    let request_id = through_agent["request_id"].as_str().expect("a request id");
    let rows = gateway.usage_of(request_id, 1).await;
    assert_eq!(rows[0].route.as_deref(), Some("agent:support"), "{rows:?}");

    let overview = scenario("overview");
    assert!(overview["agent_requests"].as_u64() >= Some(1), "{overview}");
    assert!(overview["requests"].as_u64() >= Some(1), "{overview}");
    assert!(overview["point_requests"].as_u64() >= Some(1), "{overview}");
    assert_eq!(
        overview["week_requests"], overview["requests"],
        "{overview}"
    );
    assert_eq!(overview["agent_section"], true, "{overview}");

    let plugins = scenario("plugins");
    assert_eq!(plugins["plugins"], 4, "{plugins}");
    assert_eq!(plugins["health"], 4, "{plugins}");

    let signed_out = scenario("sign_out");
    assert_eq!(signed_out["admin_status_after"], 401, "{signed_out}");
}
