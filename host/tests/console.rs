//! The web console at `/ui` as a person meets it: `llmhost serve` in front
//! of the vendor simulator, and Debian's headless Chromium driven through
//! playwright-core by `tests/console/console.mjs` (both installed by
//! `scripts/browser`). One browser runs every scenario in order; each
//! saves a screenshot under `target/console-screenshots/`.

mod common;

use common::gateway::{MASTER_KEY, Setup};
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
    let mut scenarios = result["scenarios"].as_object().cloned().unwrap_or_default();
    for (name, outcome) in &mut scenarios {
        assert_eq!(outcome["ok"], true, "scenario {name}: {outcome}");
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

#[tokio::test]
async fn the_console_signs_in_and_shows_the_sign_in_page() {
    let sim = Simulator::start().await.expect("simulator");
    sim.set_stream_delay(Duration::from_millis(15));
    let gateway = Setup::new(&sim).start().await;
    let seen = browse(&gateway.url(), MASTER_KEY, &["sign_in_page"]).await;
    let page = &seen["sign_in_page"];
    assert_eq!(page["status"], 200, "{page}");
    assert_eq!(page["token_label"], true, "{page}");
    assert_eq!(page["title"], "Sign in · llmhost console", "{page}");
}
