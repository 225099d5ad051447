//! `llmhost virtual-keys`, `agents budget` and `usage --virtual-key` as
//! operators run them: real processes and a real database file; the
//! gateway's side (authenticating a key) through the library against the
//! same file, as the server process would.

mod common;

use common::{json_of, run};
use llmhost::secrets::{self, Keyring};
use llmhost::store::{Store, UsageEvent, UsageOutcome};
use llmhost::{VirtualKeyStatus, VirtualKeys};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// Runs the binary with the database and key file in `dir`, keeping
/// everything it printed in `seen`.
struct Session {
    dir: PathBuf,
    env: Vec<(String, String)>,
    seen: String,
}

impl Session {
    fn new(dir: &Path) -> Self {
        let shared = Path::new(env!("CARGO_TARGET_TMPDIR"));
        Self {
            dir: dir.to_owned(),
            env: vec![
                ("LLMHOST_DB".into(), dir.join("gw.db").display().to_string()),
                (
                    "LLMHOST_KEY_FILE".into(),
                    dir.join("keys/encryption.key").display().to_string(),
                ),
                // The component cache's MAC key lives here; one shared by
                // the tests keeps them from recompiling every component.
                (
                    "XDG_CONFIG_HOME".into(),
                    shared.join("cli-config").display().to_string(),
                ),
                // Everything llmhost logs, so no key can hide in a log line.
                (
                    "LLMHOST_LOG".into(),
                    "trace,cranelift=warn,regalloc2=warn,wasmtime=warn,wasmparser=warn".into(),
                ),
            ],
            seen: String::new(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("gw.db")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("keys/encryption.key")
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

    async fn ok(&mut self, args: &[&str]) -> Value {
        self.ok_with(args, &[]).await
    }

    async fn ok_with(&mut self, args: &[&str], extra: &[(&str, &str)]) -> Value {
        let output = self.run(args, extra).await;
        assert!(
            output.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        json_of(&output)
    }

    /// Runs a command that must fail with exit code `code` and error
    /// `kind`; returns the message.
    async fn fails(&mut self, args: &[&str], code: i32, kind: &str) -> String {
        self.fails_with(args, &[], code, kind).await
    }

    async fn fails_with(
        &mut self,
        args: &[&str],
        extra: &[(&str, &str)],
        code: i32,
        kind: &str,
    ) -> String {
        let output = self.run(args, extra).await;
        assert_eq!(output.status.code(), Some(code), "{args:?}");
        let v = json_of(&output);
        assert_eq!(v["error"]["kind"], kind, "{args:?}: {v}");
        let message = v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(!message.is_empty(), "{args:?}");
        message
    }

    /// The keyring the CLI uses, from the key file.
    fn keyring(&self) -> Keyring {
        secrets::load_keyring(&|_| None, &self.key_file())
            .unwrap()
            .unwrap()
            .0
    }

    /// The gateway process's view of the keys: its own store handle and
    /// keyring, opened now.
    async fn gateway(&self) -> VirtualKeys {
        let store = Store::open(self.db()).await.unwrap();
        VirtualKeys::new(store, Some(&self.keyring()))
    }
}

fn file_contains(path: &Path, needle: &str) -> bool {
    ["", "-wal", "-shm"].iter().any(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        std::fs::read(name)
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
    })
}

fn now() -> String {
    // The store's format, from SQLite itself.
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| {
        r.get(0)
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_is_shown_once_stored_as_a_hash_and_revoked_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());
    s.ok(&["init", "--json"]).await;
    s.ok(&["agents", "create", "bot", "--json"]).await;

    let created = s
        .ok(&[
            "virtual-keys",
            "create",
            "ci",
            "--agent",
            "bot",
            "--allow-models",
            "openai/gpt-4o-mini, anthropic/claude-haiku-4-5",
            "--budget-usd",
            "12.50",
            "--rpm",
            "60",
            "--tpm",
            "100000",
            "--expires-in",
            "30d",
            "--cache-ttl",
            "10m",
            "--json",
        ])
        .await;
    assert_eq!(
        (&created["cache_ttl_secs"], &created["cache_shared"]),
        (&serde_json::json!(600), &serde_json::json!(false))
    );
    let mut fields: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "agent",
            "budget_period",
            "budget_usd",
            "cache_shared",
            "cache_ttl_secs",
            "created_at",
            "expires_at",
            "id",
            "key",
            "key_hint",
            "models",
            "name",
            "rpm",
            "tpm"
        ]
    );
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 47, "{key}");
    assert!(key.starts_with("lhk-"));
    assert_eq!(created["key_hint"], format!("{}…", &key[..8]));
    assert_eq!(created["agent"], "bot");
    assert_eq!(
        created["models"],
        serde_json::json!(["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"])
    );
    assert_eq!(created["budget_usd"], "12.5");
    assert_eq!(created["budget_period"], "month", "the default period");
    assert_eq!(
        (created["rpm"].as_u64(), created["tpm"].as_u64()),
        (Some(60), Some(100_000))
    );
    let created_at = created["created_at"].as_str().unwrap();
    let expires_at = created["expires_at"].as_str().unwrap();
    assert!(
        expires_at > created_at && expires_at.ends_with('Z'),
        "{expires_at}"
    );

    // For people: the key alone on stdout, the warning beside it.
    let output = s.run(&["virtual-keys", "create", "human"], &[]).await;
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let human_key = stdout.trim().to_owned();
    assert!(
        human_key.starts_with("lhk-") && human_key.len() == 47 && stdout.lines().count() == 1,
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("shown only now"), "{stderr}");

    // Listed with its hint, never the key; the database holds no key.
    let list = s.ok(&["virtual-keys", "list", "--json"]).await;
    let listed = &list["virtual_keys"];
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["name"], "ci");
    assert_eq!(listed[0]["key_hint"], created["key_hint"]);
    assert_eq!(listed[0]["status"], "active");
    assert_eq!(listed[0]["revoked_at"], Value::Null);
    assert!(listed[0].get("key").is_none());
    let output = s.run(&["virtual-keys", "list"], &[]).await;
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains(&format!("{}…", &key[..8])), "{table}");
    assert!(table.contains("$12.5/month"), "{table}");
    for secret in [&key, &human_key] {
        assert!(!file_contains(&s.db(), secret), "the database holds a key");
        assert!(!file_contains(&s.db(), &secret[8..]));
    }

    // The gateway accepts the key, then the CLI revokes it: refused
    // within a second although the gateway had just looked it up.
    let gateway = s.gateway().await;
    let found = gateway
        .authenticate(&key)
        .await
        .unwrap()
        .expect("a valid key");
    assert_eq!(
        (found.name.as_str(), found.agent.as_deref()),
        ("ci", Some("bot"))
    );
    assert!(found.allows_model("openai/gpt-4o-mini") && !found.allows_model("openai/gpt-4o"));
    assert!(gateway.authenticate(&key).await.unwrap().is_some());
    let revoked = s.ok(&["virtual-keys", "revoke", "ci", "--json"]).await;
    let revoked_at = Instant::now();
    assert_eq!(revoked["status"], "revoked");
    loop {
        if gateway.authenticate(&key).await.unwrap().is_none() {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still accepted a second after the revocation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Revoking again changes nothing.
    let again = s.ok(&["virtual-keys", "revoke", "ci", "--json"]).await;
    assert_eq!(again["revoked_at"], revoked["revoked_at"]);
    let output = s.run(&["virtual-keys", "revoke", "ci"], &[]).await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("already revoked"));
    // Unknown and malformed keys are refused alike; the other key works.
    assert!(gateway.authenticate(&human_key).await.unwrap().is_some());
    let mut unknown = human_key.clone();
    unknown.replace_range(10..11, if &human_key[10..11] == "A" { "B" } else { "A" });
    for bad in [unknown.as_str(), "lhk-short", "sk-not-ours", ""] {
        assert_eq!(gateway.authenticate(bad).await.unwrap(), None, "{bad}");
    }
    assert!(format!("{gateway:?}").contains(s.keyring().active().id()));

    assert!(
        s.seen.contains("TRACE") || s.seen.contains("DEBUG"),
        "logs were on"
    );
    let printed = s.seen.replace(&key, "").replace(&human_key, "");
    assert!(
        !printed.contains(&key[8..]) && !printed.contains(&human_key[8..]),
        "a key was printed where it should not be:\n{}",
        s.seen
    );
    assert_eq!(
        s.seen.matches(&key).count(),
        1,
        "the key is printed once, when it is created"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());
    s.ok(&["init", "--json"]).await;
    let created = s
        .ok(&[
            "virtual-keys",
            "create",
            "brief",
            "--expires-in",
            "1s",
            "--json",
        ])
        .await;
    let key = created["key"].as_str().unwrap();
    let expires_at = created["expires_at"].as_str().unwrap().to_owned();
    let gateway = s.gateway().await;
    let before = now();
    let early = gateway.authenticate(key).await.unwrap();
    assert!(
        early.is_some() || before >= expires_at,
        "refused at {before}, before it expired at {expires_at}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(now() >= expires_at);
    assert_eq!(gateway.authenticate(key).await.unwrap(), None);
    assert_eq!(s.gateway().await.authenticate(key).await.unwrap(), None);
    let list = s.ok(&["virtual-keys", "list", "--json"]).await;
    assert_eq!(list["virtual_keys"][0]["status"], "expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_survive_rotation_while_they_need_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());
    let init = s.ok(&["init", "--json"]).await;
    let first_id = init["key_id"].as_str().unwrap().to_owned();
    let old = s.ok(&["virtual-keys", "create", "old", "--json"]).await;
    let old_key = old["key"].as_str().unwrap().to_owned();

    // A key file rotation keeps the key the virtual key was hashed with.
    let rotated = s.ok(&["keys", "rotate", "--json"]).await;
    let second_id = rotated["key_id"].as_str().unwrap().to_owned();
    assert_eq!(rotated["kept_key_ids"], serde_json::json!([first_id]));
    let ids = |s: &Session| -> Vec<String> {
        secrets::read_key_file(&s.key_file())
            .unwrap()
            .iter()
            .map(|k| k.id().to_owned())
            .collect()
    };
    assert_eq!(ids(&s), [second_id.clone(), first_id.clone()]);
    let gateway = s.gateway().await;
    assert_eq!(
        gateway.authenticate(&old_key).await.unwrap().unwrap().name,
        "old"
    );
    let new = s.ok(&["virtual-keys", "create", "new", "--json"]).await;
    let new_key = new["key"].as_str().unwrap().to_owned();
    assert!(
        s.gateway()
            .await
            .authenticate(&new_key)
            .await
            .unwrap()
            .is_some()
    );

    // Once the old key's virtual keys are revoked, the next rotation
    // retires it.
    s.ok(&["virtual-keys", "revoke", "old", "--json"]).await;
    let rotated = s.ok(&["keys", "rotate", "--json"]).await;
    let third_id = rotated["key_id"].as_str().unwrap().to_owned();
    assert_eq!(rotated["kept_key_ids"], serde_json::json!([second_id]));
    assert_eq!(ids(&s), [third_id, second_id]);
    let gateway = s.gateway().await;
    assert!(gateway.authenticate(&new_key).await.unwrap().is_some());
    assert_eq!(gateway.authenticate(&old_key).await.unwrap(), None);

    // A key in the environment: the rotation says which keys to keep as
    // previous keys.
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());
    let old_env = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let env_old = [("LLMHOST_ENCRYPTION_KEY", old_env)];
    s.ok_with(&["init", "--json"], &env_old).await;
    let created = s
        .ok_with(&["virtual-keys", "create", "env", "--json"], &env_old)
        .await;
    let key = created["key"].as_str().unwrap();
    let rotated = s.ok_with(&["keys", "rotate", "--json"], &env_old).await;
    let old_id = secrets::EncryptionKey::from_base64(old_env)
        .unwrap()
        .id()
        .to_owned();
    assert_eq!(rotated["previous_keys_needed"], serde_json::json!([old_id]));
    let new_env = rotated["new_key"].as_str().unwrap().to_owned();
    let gateway_with = |vars: HashMap<&'static str, String>| {
        let keyring = secrets::load_keyring(&|name| vars.get(name).cloned(), &s.key_file())
            .unwrap()
            .unwrap()
            .0;
        let db = s.db();
        async move { VirtualKeys::new(Store::open(db).await.unwrap(), Some(&keyring)) }
    };
    let with_previous = gateway_with(HashMap::from([
        ("LLMHOST_ENCRYPTION_KEY", new_env.clone()),
        ("LLMHOST_PREVIOUS_ENCRYPTION_KEYS", old_env.to_owned()),
    ]))
    .await;
    assert!(with_previous.authenticate(key).await.unwrap().is_some());
    let without = gateway_with(HashMap::from([("LLMHOST_ENCRYPTION_KEY", new_env)])).await;
    assert_eq!(without.authenticate(key).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());

    // No encryption key yet: the message says what to do.
    let message = s
        .fails(
            &["virtual-keys", "create", "early", "--json"],
            1,
            "encryption_key_missing",
        )
        .await;
    assert!(message.contains("llmhost init"), "{message}");
    let output = s.run(&["virtual-keys", "create", "early"], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("llmhost init"));
    // Listing needs no key.
    let list = s.ok(&["virtual-keys", "list", "--json"]).await;
    assert_eq!(list["virtual_keys"], serde_json::json!([]));

    s.ok(&["init", "--json"]).await;
    for (args, kind, says) in [
        (vec!["has space"], "validation", "may only contain"),
        (vec![""], "validation", "1 to 64"),
        (
            vec!["k", "--agent", "nobody"],
            "validation",
            "no agent named `nobody`",
        ),
        (
            vec!["k", "--budget-usd", "-5"],
            "validation",
            "not more than 0",
        ),
        (
            vec!["k", "--budget-usd", "0"],
            "validation",
            "not more than 0",
        ),
        (
            vec!["k", "--budget-usd", "ten"],
            "validation",
            "not a decimal",
        ),
        (
            vec!["k", "--budget-usd", "5", "--budget-period", "yearly"],
            "usage",
            "yearly",
        ),
        (vec!["k", "--budget-period", "day"], "usage", "required"),
        (
            vec!["k", "--expires-in", "soon"],
            "validation",
            "30d, 12h, 90m, 3600s",
        ),
        (
            vec!["k", "--expires-in", "1.5h"],
            "validation",
            "not a duration",
        ),
        (vec!["k", "--expires-in", "0s"], "validation", "more than 0"),
        (vec!["k", "--rpm", "0"], "validation", "rpm"),
        (
            vec!["k", "--cache-ttl", "0s"],
            "validation",
            "not between 1 second and 30 days",
        ),
        (
            vec!["k", "--cache-ttl", "31d"],
            "validation",
            "not between 1 second and 30 days",
        ),
        (vec!["k", "--tpm", "-1"], "usage", "-1"),
        (
            vec!["k", "--allow-models", ","],
            "validation",
            "empty model id",
        ),
    ] {
        let mut full = vec!["virtual-keys", "create"];
        full.extend(&args);
        full.push("--json");
        let message = s.fails(&full, 2, kind).await;
        assert!(message.contains(says), "{args:?}: {message}");
        // People get the message on stderr.
        full.pop();
        let output = s.run(&full, &[]).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(says),
            "{args:?}"
        );
    }
    let list = s.ok(&["virtual-keys", "list", "--json"]).await;
    assert_eq!(
        list["virtual_keys"],
        serde_json::json!([]),
        "nothing was stored"
    );

    s.ok(&["virtual-keys", "create", "taken", "--json"]).await;
    let message = s
        .fails(
            &["virtual-keys", "create", "taken", "--json"],
            2,
            "conflict",
        )
        .await;
    assert!(message.contains("taken"), "{message}");
    s.fails(
        &["virtual-keys", "revoke", "nobody", "--json"],
        2,
        "not_found",
    )
    .await;
    s.fails(
        &["usage", "--virtual-key", "nobody", "--json"],
        2,
        "not_found",
    )
    .await;

    let output = s.run(&["virtual-keys", "create", "--help"], &[]).await;
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--agent <NAME>",
        "--allow-models <LIST>",
        "--budget-usd <USD>",
        "--budget-period <PERIOD>",
        "--rpm <N>",
        "--tpm <N>",
        "--expires-in <DURATION>",
        "30d, 12h, 90m, 3600s",
        "shown this once",
        "ISO week",
    ] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_budgets_are_set_changed_and_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());
    s.ok(&["init", "--json"]).await;
    s.ok(&["agents", "create", "bot", "--json"]).await;

    let shown = s.ok(&["agents", "budget", "bot", "--json"]).await;
    assert_eq!(shown["budget_period"], Value::Null);
    let set = s
        .ok(&["agents", "budget", "bot", "--usd", "5.00", "--json"])
        .await;
    assert_eq!(
        (
            &set["budget_usd"],
            &set["budget_tokens"],
            &set["budget_period"]
        ),
        (&Value::from("5"), &Value::Null, &Value::from("month"))
    );
    // Flags not given keep their value.
    let changed = s
        .ok(&[
            "agents", "budget", "bot", "--tokens", "1000", "--period", "week", "--json",
        ])
        .await;
    assert_eq!(
        (
            &changed["budget_usd"],
            &changed["budget_tokens"],
            &changed["budget_period"]
        ),
        (&Value::from("5"), &Value::from(1000), &Value::from("week"))
    );
    let output = s.run(&["agents", "budget", "bot"], &[]).await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("budget $5 and 1000 tokens per week"));
    let listed = s.ok(&["agents", "list", "--json"]).await;
    assert_eq!(listed["agents"][0]["budget_tokens"], 1000);

    for (args, code, kind) in [
        (vec!["--usd", "0"], 2, "validation"),
        (vec!["--usd", "-1"], 2, "validation"),
        (vec!["--tokens", "0"], 2, "validation"),
        (vec!["--period", "fortnight"], 2, "usage"),
        (vec!["--clear", "--usd", "1"], 2, "usage"),
    ] {
        let mut full = vec!["agents", "budget", "bot"];
        full.extend(&args);
        full.push("--json");
        s.fails(&full, code, kind).await;
    }
    s.fails(
        &["agents", "budget", "nobody", "--usd", "1", "--json"],
        2,
        "not_found",
    )
    .await;

    let cleared = s
        .ok(&["agents", "budget", "bot", "--clear", "--json"])
        .await;
    assert_eq!(
        (
            &cleared["budget_usd"],
            &cleared["budget_tokens"],
            &cleared["budget_period"]
        ),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    // A period alone is no budget.
    let message = s
        .fails(
            &["agents", "budget", "bot", "--period", "day", "--json"],
            2,
            "validation",
        )
        .await;
    assert!(message.contains("USD amount, a token count"), "{message}");
}

fn spend(key: Option<(i64, &str)>, agent: Option<(i64, &str)>, cost: Option<&str>) -> UsageEvent {
    UsageEvent {
        agent_id: agent.map(|a| a.0),
        agent_name: agent.map(|a| a.1.to_owned()),
        config_id: None,
        virtual_key_id: key.map(|k| k.0),
        virtual_key_name: key.map(|k| k.1.to_owned()),
        request_id: None,
        route: Some("openai/gpt-4o-mini".into()),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        input_tokens: 100,
        output_tokens: 20,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cache_write_hour_tokens: 0,
        reasoning_tokens: 0,
        estimated: false,
        cost_usd: cost.map(|c| c.parse().unwrap()),
        latency: Duration::from_millis(12),
        time_to_first_token: None,
        outcome: UsageOutcome::Ok,
        attempt: 1,
        fallback: false,
        streamed: false,
        served: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_reports_the_spend_of_the_window_against_the_budget_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path());
    s.ok(&["init", "--json"]).await;
    let agent = s.ok(&["agents", "create", "bot", "--json"]).await;
    let agent = (agent["id"].as_i64().unwrap(), "bot");
    let created = s
        .ok(&[
            "virtual-keys",
            "create",
            "ci",
            "--budget-usd",
            "1",
            "--budget-period",
            "day",
            "--json",
        ])
        .await;
    let key = (created["id"].as_i64().unwrap(), "ci");
    s.ok(&[
        "agents", "budget", "bot", "--usd", "0.6", "--tokens", "1000", "--json",
    ])
    .await;

    let store = Store::open(s.db()).await.unwrap();
    let yesterday = store
        .record_usage(spend(Some(key), Some(agent), Some("0.5")))
        .await
        .unwrap();
    store
        .record_usage_many(vec![
            spend(Some(key), Some(agent), Some("0.1")),
            spend(Some(key), None, Some("0.2")),
            spend(Some(key), None, None),
            spend(None, Some(agent), Some("0.000000001")),
        ])
        .await
        .unwrap();
    // One row from before today's window (and this month's).
    store
        .backdate_usage(yesterday, "2001-01-01T00:00:00.000Z")
        .await
        .unwrap();

    let report = s.ok(&["usage", "--virtual-key", "ci", "--json"]).await;
    assert_eq!(report["virtual_key"], "ci");
    assert_eq!(report["status"], "active");
    let budget = &report["budget"];
    assert_eq!(budget["period"], "day");
    let today = format!("{}T00:00:00.000Z", &now()[..10]);
    assert_eq!(budget["window_start"], today.as_str());
    assert_eq!(budget["spent_usd"], "0.3", "0.1 + 0.2, exactly");
    assert_eq!(budget["budget_usd"], "1");
    assert_eq!(budget["remaining_usd"], "0.7");
    assert_eq!(budget["requests"], 3);
    assert_eq!(budget["unpriced"], 1);
    assert_eq!(
        (
            budget["input_tokens"].as_u64(),
            budget["output_tokens"].as_u64()
        ),
        (Some(300), Some(60))
    );
    assert_eq!(budget["exhausted"], false);
    let output = s.run(&["usage", "--virtual-key", "ci"], &[]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("virtual key ci, today (since")
            && text.contains("$0.3 of $1 spent, $0.7 left"),
        "{text}"
    );

    // Reaching the budget spends it: 0.3 + 0.7 = 1 of 1.
    store
        .record_usage(spend(Some(key), None, Some("0.7")))
        .await
        .unwrap();
    let report = s.ok(&["usage", "--virtual-key", "ci", "--json"]).await;
    assert_eq!(report["budget"]["spent_usd"], "1");
    assert_eq!(report["budget"]["remaining_usd"], "0");
    assert_eq!(report["budget"]["exhausted"], true);
    let output = s.run(&["usage", "--virtual-key", "ci"], &[]).await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("the budget is spent"));

    // The agent's budget counts the calls made for it, by any key, in its
    // window (a month): 0.1 + 0.000000001 of 0.6; the old row is outside.
    let report = s.ok(&["usage", "--agent", "bot", "--json"]).await;
    assert_eq!(report["agent"], "bot");
    let budget = &report["budget"];
    assert_eq!(budget["period"], "month");
    assert_eq!(
        budget["window_start"],
        format!("{}-01T00:00:00.000Z", &now()[..7]).as_str()
    );
    assert_eq!(budget["spent_usd"], "0.100000001");
    assert_eq!(budget["remaining_usd"], "0.499999999");
    assert_eq!(
        (
            budget["spent_tokens"].as_u64(),
            budget["remaining_tokens"].as_u64()
        ),
        (Some(240), Some(760))
    );
    assert_eq!(budget["exhausted"], false);
    // The usage table is still there, over all time.
    assert_eq!(report["usage"][0]["attempts"], 3);
    assert_eq!(report["total_cost_usd"], "0.600000001");

    // A key without a budget reports everything it spent.
    let plain = s.ok(&["virtual-keys", "create", "plain", "--json"]).await;
    store
        .record_usage(spend(
            Some((plain["id"].as_i64().unwrap(), "plain")),
            None,
            Some("2.25"),
        ))
        .await
        .unwrap();
    let report = s.ok(&["usage", "--virtual-key", "plain", "--json"]).await;
    assert_eq!(report["budget"]["period"], Value::Null);
    assert_eq!(report["budget"]["window_start"], Value::Null);
    assert_eq!(report["budget"]["spent_usd"], "2.25");
    assert_eq!(report["budget"]["remaining_usd"], Value::Null);
    assert_eq!(report["budget"]["exhausted"], false);

    let revoked = s.ok(&["virtual-keys", "revoke", "ci", "--json"]).await;
    assert_eq!(revoked["status"], "revoked");
    let report = s.ok(&["usage", "--virtual-key", "ci", "--json"]).await;
    assert_eq!(report["status"], VirtualKeyStatus::Revoked.as_str());
    s.fails(
        &["usage", "--virtual-key", "ci", "--agent", "bot", "--json"],
        2,
        "usage",
    )
    .await;
}
