//! The store, the config service and key encryption, on real SQLite files
//! and on a real PostgreSQL (each test runs on both: see [`both!`]), with
//! calls made for agents through the host against the simulator.

mod common;

use llmhost::registry::rust_decimal::Decimal;
use llmhost::secrets::{EncryptionKey, Keyring};
use llmhost::settings::ProviderSettings;
use llmhost::store::sql::{FromValue, Value};
use llmhost::store::{Database, SCHEMA_VERSION, UsageEvent, UsageOutcome};
use llmhost::types::{ChatRequest, Chunk};
use llmhost::{
    ConfigFields, ConfigPatch, ConfigPrices, ConfigService, ConfigUpdate, Error, NewConfig, Store,
};
use llmhost_simulator::{RecordedRequest, Reply, Simulator, Vendor};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const KEY: &str = "sk-RECOGNISABLE-test-key-0123456789";

/// The engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A new, empty database of this engine, in `dir` for SQLite, on the
    /// test process's PostgreSQL server otherwise.
    fn database(self, dir: &Path, name: &str) -> Database {
        match self {
            Self::Sqlite => Database::Sqlite(dir.join(name)),
            Self::Postgres => Database::parse(&llmhost_test_services::postgres().database()),
        }
    }
}

/// `both!(name, …)`: each `async fn name(backend: Backend)` becomes two
/// tests, `name::sqlite` and `name::postgres`.
macro_rules! both {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )+};
}

both!(
    migrations_go_up_down_and_up_again,
    configs_crud_through_the_service,
    every_bad_field_gets_a_validation_error,
    deleting_an_agent_cascades_to_configs_and_keeps_usage,
    concurrent_writers_lose_nothing,
    keys_are_encrypted_bound_to_their_row_and_rotate,
    agent_calls_use_the_stored_config_and_record_usage,
    a_base_url_changed_in_the_database_gets_no_key,
    update_config_moves_a_key_only_when_given_it_again,
    keys_stored_before_base_urls_were_bound,
    updates_compare_and_set_and_configs_are_reordered_at_once,
    both_engines_give_the_same_typed_errors,
    usage_rolls_up_exactly_with_replicas_writing_at_once,
    a_large_batch_is_stored_in_order,
    retention_deletes_raw_rows_and_keeps_their_sums,
    experiments_tokens_and_keys_on_both_engines,
    a_new_agent_does_not_inherit_a_deleted_ones_spend,
);

struct Fixture {
    _dir: tempfile::TempDir,
    db: Database,
    service: ConfigService,
    key: EncryptionKey,
}

impl Fixture {
    fn store(&self) -> &Store {
        self.service.store()
    }
}

async fn fixture(backend: Backend) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.database(dir.path(), "llmhost.db");
    let store = Store::open_migrated(&db).await.expect("store opens");
    let key = EncryptionKey::generate();
    let service = ConfigService::new(common::host().await, store, Some(Keyring::new(key.clone())));
    Fixture {
        _dir: dir,
        db,
        service,
        key,
    }
}

/// Runs a statement of the test's own under the store.
async fn exec(store: &Store, sql: &str, params: Vec<Value>) {
    store.execute_sql(sql, params).await.unwrap();
}

/// The first column of the first row of a query of the test's own.
async fn scalar<T: FromValue>(store: &Store, sql: &str, params: Vec<Value>) -> T {
    let rows = store.query_sql(sql, params).await.unwrap();
    rows.first().expect("a row").get(0).unwrap()
}

async fn tables(store: &Store) -> Vec<String> {
    store.table_names().await.unwrap()
}

fn with_key(provider: &str, model: &str, key: &str) -> NewConfig {
    let mut config = NewConfig::new(provider, model);
    config.api_key = Some(SecretString::from(key.to_owned()));
    config
}

async fn migrations_go_up_down_and_up_again(backend: Backend) {
    let f = fixture(backend).await;
    let store = f.service.store();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(
        tables(f.store()).await,
        [
            "admin_tokens",
            "agent_llm_configs",
            "agents",
            "encryption_state",
            "experiment_variants",
            "experiments",
            "usage_events",
            "usage_rollup",
            "virtual_keys"
        ]
    );
    let keeper = f.service.create_agent("keeper", None).await.unwrap();
    store
        .record_usage(event(Some(keeper.id), "keeper", None))
        .await
        .unwrap();
    let mut plain = event(None, "none", None);
    plain.agent_name = None;
    store.record_usage(plain).await.unwrap();

    // Down to 3: the agent's row stays, the plain call's cannot.
    store.migrate_to(3).await.unwrap();
    assert_eq!(
        tables(f.store()).await,
        ["agent_llm_configs", "agents", "usage_events"]
    );
    let kept: i64 = scalar(store, "SELECT count(*) FROM usage_events", vec![]).await;
    assert_eq!(kept, 1);

    store.migrate_to(1).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 1);
    assert_eq!(tables(f.store()).await, ["agent_llm_configs", "agents"]);
    // This build reads only its own schema; the rows are counted raw.
    let agents: i64 = scalar(store, "SELECT count(*) FROM agents", vec![]).await;
    assert_eq!(agents, 1, "data of v1 kept");

    store.migrate_to(0).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 0);
    assert!(tables(f.store()).await.is_empty());

    store.migrate_to(SCHEMA_VERSION).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(
        tables(f.store()).await,
        [
            "admin_tokens",
            "agent_llm_configs",
            "agents",
            "encryption_state",
            "experiment_variants",
            "experiments",
            "usage_events",
            "usage_rollup",
            "virtual_keys"
        ]
    );
    if backend == Backend::Sqlite {
        // WAL mode and foreign keys are on.
        let mode: String = scalar(store, "PRAGMA journal_mode", vec![]).await;
        assert_eq!(mode, "wal");
    }
    f.service.create_agent("again", None).await.unwrap();

    // A database from a newer llmhost is refused, not damaged.
    match backend {
        Backend::Sqlite => rusqlite::Connection::open(f.db.sqlite_path().unwrap())
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap(),
        Backend::Postgres => exec(store, "UPDATE llmhost_schema SET version = 99", vec![]).await,
    }
    for err in [
        Store::open(&f.db).await.unwrap_err(),
        Store::open_migrated(&f.db).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), "database");
        assert!(err.to_string().contains("newer"), "{err}");
    }
    let err = Store::open(&f.db).await.unwrap_err();
    assert_eq!(err.kind(), "database");
    assert!(err.to_string().contains("newer"), "{err}");
}

async fn configs_crud_through_the_service(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.service;
    let agent = s
        .create_agent("analyst", Some("reads filings"))
        .await
        .unwrap();
    assert_eq!(s.agent("analyst").await.unwrap(), agent);
    let err = s.create_agent("analyst", None).await.unwrap_err();
    assert_eq!(err.kind(), "conflict");

    let mut first = with_key("openai", "gpt-4o-mini", KEY);
    first.fields.temperature = Some(0.3);
    first.fields.max_tokens = Some(1000);
    first.fields.priority = 5;
    let first = s.create_config("analyst", first).await.unwrap();
    assert!(first.has_api_key);
    assert_eq!(first.api_key_hint.as_deref(), Some("…6789"));
    // No custom prices: the catalogue's are used.
    assert_eq!(first.fields.prices, None);

    let mut second = NewConfig::new("claude", "claude-sonnet-4-5");
    second.fields.priority = 1;
    second.fields.fallback_provider = Some("openai".into());
    second.fields.fallback_model = Some("gpt-4o".into());
    second.fields.prices = Some(ConfigPrices::new(2_000_000, 8_000_000));
    let second = s.create_config("analyst", second).await.unwrap();
    assert!(!second.has_api_key);
    assert_eq!(
        serde_json::to_value(&second).unwrap()["prices"],
        serde_json::json!({"input": "2", "output": "8", "cache_read": null,
                           "cache_write": null, "cache_write_hour": null})
    );

    let mut disabled = NewConfig::new("grok", "grok-3-mini");
    disabled.fields.enabled = false;
    let disabled = s.create_config("analyst", disabled).await.unwrap();

    let ids = |list: Vec<llmhost::LlmConfig>| list.iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.configs("analyst").await.unwrap()),
        [disabled.id, second.id, first.id]
    );
    assert_eq!(
        ids(s.enabled_configs("analyst").await.unwrap()),
        [second.id, first.id]
    );
    assert_eq!(s.primary_config("analyst").await.unwrap().id, second.id);

    // A partial update changes only what it names.
    let updated = s
        .update_config(
            first.id,
            None,
            ConfigUpdate {
                patch: ConfigPatch {
                    temperature: Some(Some(1.1)),
                    priority: Some(0),
                    ..ConfigPatch::default()
                },
                ..ConfigUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.fields.temperature, Some(1.1));
    assert_eq!(updated.fields.max_tokens, Some(1000));
    assert!(updated.has_api_key);
    assert_ne!(updated.updated_at, first.updated_at);
    assert_eq!(s.primary_config("analyst").await.unwrap().id, first.id);

    // Changing the model refreshes registry prices; clearing works.
    let updated = s
        .update_config(
            first.id,
            None,
            ConfigUpdate {
                patch: ConfigPatch {
                    model: Some("gpt-4o".into()),
                    max_tokens: Some(None),
                    ..ConfigPatch::default()
                },
                ..ConfigUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.fields.model, "gpt-4o");
    assert_eq!(updated.fields.max_tokens, None);

    s.delete_config(disabled.id).await.unwrap();
    assert_eq!(s.config(disabled.id).await.unwrap_err().kind(), "not_found");
    assert_eq!(
        s.delete_config(disabled.id).await.unwrap_err().kind(),
        "not_found"
    );
    assert_eq!(s.configs("nobody").await.unwrap_err().kind(), "not_found");
}

async fn every_bad_field_gets_a_validation_error(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.service;
    s.create_agent("v", None).await.unwrap();
    let base = || ConfigFields::new("openai", "gpt-4o-mini");
    let cases: Vec<(&str, NewConfig)> = vec![
        ("provider", NewConfig::new("nosuch", "gpt-4o-mini")),
        ("model", NewConfig::new("openai", "gpt-nonexistent")),
        (
            "temperature",
            NewConfig::from(ConfigFields {
                temperature: Some(2.5),
                ..base()
            }),
        ),
        (
            "temperature",
            NewConfig::from(ConfigFields {
                temperature: Some(-0.1),
                ..base()
            }),
        ),
        (
            "temperature",
            NewConfig::from(ConfigFields {
                temperature: Some(f64::NAN),
                ..base()
            }),
        ),
        (
            "top_p",
            NewConfig::from(ConfigFields {
                top_p: Some(1.5),
                ..base()
            }),
        ),
        (
            "max_tokens",
            NewConfig::from(ConfigFields {
                max_tokens: Some(0),
                ..base()
            }),
        ),
        (
            "max_tokens",
            NewConfig::from(ConfigFields {
                max_tokens: Some(10_000_000),
                ..base()
            }),
        ),
        (
            "fallback",
            NewConfig::from(ConfigFields {
                fallback_provider: Some("claude".into()),
                ..base()
            }),
        ),
        (
            "fallback_provider",
            NewConfig::from(ConfigFields {
                fallback_provider: Some("nosuch".into()),
                fallback_model: Some("x".into()),
                ..base()
            }),
        ),
        (
            "fallback_model",
            NewConfig::from(ConfigFields {
                fallback_provider: Some("claude".into()),
                fallback_model: Some("claude-nonexistent".into()),
                ..base()
            }),
        ),
        (
            "fallback_model",
            NewConfig::from(ConfigFields {
                fallback_provider: Some("openai".into()),
                fallback_model: Some("gpt-4o-mini".into()),
                ..base()
            }),
        ),
        (
            "base_url",
            NewConfig::from(ConfigFields {
                base_url: Some("ftp://example.com".into()),
                ..base()
            }),
        ),
        (
            "base_url",
            NewConfig::from(ConfigFields {
                base_url: Some("https://user:pw@example.com".into()),
                ..base()
            }),
        ),
        ("api_key", with_key("openai", "gpt-4o-mini", "   ")),
        (
            "api_key",
            with_key("openai", "gpt-4o-mini", "sk-with space"),
        ),
    ];
    // Prices and metadata of the wrong shape are refused as they are read;
    // a bad price is named (serde names no field of a flattened map).
    for (json, field) in [
        (
            serde_json::json!({"prices": {"input": "-1", "output": "1"}}),
            "prices.input",
        ),
        (
            serde_json::json!({"prices": {"input": "1", "output": "lots"}}),
            "prices.output",
        ),
        (serde_json::json!({"metadata": [1, 2]}), "expected a map"),
    ] {
        let mut config = serde_json::json!({"provider": "openai", "model": "gpt-4o-mini"});
        config
            .as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        let err = serde_json::from_value::<NewConfig>(config).unwrap_err();
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    for (field, config) in cases {
        let err = s.create_config("v", config).await.unwrap_err();
        match &err {
            Error::Validation { field: got, .. } => assert_eq!(*got, field, "{err}"),
            other => panic!("{field}: expected a validation error, got {other:?}"),
        }
        assert!(err.to_string().contains(field), "{err}");
    }
    for bad in ["", "has space", "semi;colon", &"x".repeat(65)] {
        let err = s.create_agent(bad, None).await.unwrap_err();
        assert_eq!(err.kind(), "validation", "{bad:?}");
    }
    // Updates are checked as a whole too.
    let ok = s.create_config("v", base().into()).await.unwrap();
    let err = s
        .update_config(
            ok.id,
            None,
            ConfigUpdate {
                patch: ConfigPatch {
                    top_p: Some(Some(-1.0)),
                    ..ConfigPatch::default()
                },
                ..ConfigUpdate::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "validation");
    assert!(s.configs("v").await.unwrap().len() == 1, "nothing stored");
}

async fn deleting_an_agent_cascades_to_configs_and_keeps_usage(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.service;
    let agent = s.create_agent("temp", None).await.unwrap();
    let a = s
        .create_config("temp", NewConfig::new("openai", "gpt-4o-mini"))
        .await
        .unwrap();
    let b = s
        .create_config("temp", NewConfig::new("deepseek", "deepseek-chat"))
        .await
        .unwrap();
    s.store()
        .record_usage(event(Some(agent.id), "temp", Some(a.id)))
        .await
        .unwrap();
    s.delete_agent("temp").await.unwrap();
    assert!(s.store().config(a.id).await.unwrap().is_none());
    assert!(s.store().config(b.id).await.unwrap().is_none());
    let usage = s.store().usage_events(Some("temp")).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].agent_id, None);
    assert_eq!(usage[0].config_id, None);
    assert_eq!(
        s.delete_agent("temp").await.unwrap_err().kind(),
        "not_found"
    );
}

fn event(agent_id: Option<i64>, agent: &str, config_id: Option<i64>) -> UsageEvent {
    UsageEvent {
        agent_id,
        agent_name: Some(agent.to_owned()),
        config_id,
        virtual_key_id: None,
        virtual_key_name: None,
        request_id: Some("req-test".into()),
        route: Some(format!("agent:{agent}")),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        input_tokens: 10,
        output_tokens: 20,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cache_write_hour_tokens: 0,
        reasoning_tokens: 0,
        estimated: false,
        cost_usd: Some(Decimal::new(15, 6)),
        latency: Duration::from_millis(12),
        time_to_first_token: None,
        outcome: UsageOutcome::Ok,
        attempt: 1,
        fallback: false,
        streamed: false,
        served: Default::default(),
    }
}

async fn concurrent_writers_lose_nothing(backend: Backend) {
    let f = fixture(backend).await;
    // A second handle on the same file: another process, as far as
    // SQLite is concerned.
    let other = Store::open(&f.db).await.unwrap();
    let s = f.service.clone();
    let mut agents = Vec::new();
    for i in 0..4 {
        agents.push(s.create_agent(&format!("a{i}"), None).await.unwrap());
    }
    let mut tasks = Vec::new();
    for (i, agent) in agents.iter().enumerate() {
        let service = s.clone();
        let name = agent.name.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..25 {
                let mut config = with_key("openai", "gpt-4o-mini", &format!("{KEY}-{i}-{j}"));
                config.fields.priority = j;
                service.create_config(&name, config).await.unwrap();
            }
        }));
        for store in [s.store().clone(), other.clone()] {
            let agent = agent.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    store
                        .record_usage(event(Some(agent.id), &agent.name, None))
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    for agent in &agents {
        assert_eq!(s.configs(&agent.name).await.unwrap().len(), 25);
        assert_eq!(
            s.store()
                .usage_events(Some(&agent.name))
                .await
                .unwrap()
                .len(),
            100
        );
    }
    let summary = s.store().usage_summary(None).await.unwrap();
    let total: Decimal = summary.iter().map(|r| r.cost_usd).sum();
    assert_eq!(total, Decimal::new(15, 6) * Decimal::from(400));
    assert_eq!(summary.iter().map(|r| r.attempts).sum::<u64>(), 400);
}

/// Everything the database holds, as bytes: the SQLite file and its side
/// files, or PostgreSQL's config rows as text.
async fn stored_bytes(f: &Fixture) -> Vec<u8> {
    match &f.db {
        Database::Sqlite(path) => file_bytes(path),
        Database::Postgres(_) => {
            let rows = f
                .store()
                .query_sql("SELECT CAST(t AS TEXT) FROM agent_llm_configs t", vec![])
                .await
                .unwrap();
            let mut all = Vec::new();
            for row in rows {
                all.extend(row.get::<_, String>(0).unwrap().into_bytes());
            }
            assert!(!all.is_empty());
            all
        }
    }
}

fn file_bytes(db: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        if let Ok(bytes) = std::fs::read(PathBuf::from(name)) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn keys_are_encrypted_bound_to_their_row_and_rotate(backend: Backend) {
    let sim = Simulator::start().await.unwrap();
    let f = fixture(backend).await;
    let s = &f.service;
    s.create_agent("one", None).await.unwrap();
    s.create_agent("two", None).await.unwrap();
    let mut config = with_key("openai", "gpt-4o-mini", KEY);
    config.fields.base_url = Some(sim.base_url(Vendor::OpenAi));
    let one = s.create_config("one", config.clone()).await.unwrap();
    config.api_key = Some(SecretString::from(format!("{KEY}-two")));
    let two = s.create_config("two", config).await.unwrap();

    // The file holds no plaintext key.
    assert!(!contains(&stored_bytes(&f).await, "RECOGNISABLE"));

    // The stored key is used for the call.
    let validation = s.validate_config(one.id).await.unwrap();
    validation.health.expect("healthy");
    let auth = sim
        .requests()
        .last()
        .unwrap()
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone());
    assert_eq!(auth.as_deref(), Some(format!("Bearer {KEY}").as_str()));

    let ciphertext = async |id: i64| -> String { stored_key(f.store(), id).await.unwrap() };
    let set_ciphertext = async |id: i64, value: &str| {
        exec(
            f.store(),
            "UPDATE agent_llm_configs SET api_key_encrypted = ?2 WHERE id = ?1",
            vec![id.into(), value.into()],
        )
        .await
    };
    let original_two = ciphertext(two.id).await;
    assert!(original_two.starts_with(&format!("llmhost:v2:{}:", f.key.id())));

    // A ciphertext moved to another row does not decrypt there.
    set_ciphertext(two.id, &ciphertext(one.id).await).await;
    let err = s.validate_config(two.id).await.unwrap_err();
    assert_eq!(err.kind(), "decryption_failed", "{err}");
    assert!(!err.to_string().contains("RECOGNISABLE"));

    // A flipped bit does not decrypt.
    // (A character well inside the base64: any letter there is valid
    // base64, so only the authentication tag can catch it.)
    let mut flipped = original_two.clone().into_bytes();
    let inside = flipped.len() - 20;
    flipped[inside] = if flipped[inside] == b'A' { b'B' } else { b'A' };
    set_ciphertext(two.id, std::str::from_utf8(&flipped).unwrap()).await;
    let err = s.validate_config(two.id).await.unwrap_err();
    assert_eq!(err.kind(), "decryption_failed", "{err}");
    set_ciphertext(two.id, &original_two).await;

    // The wrong key says so clearly.
    let stranger = ConfigService::new(
        s.host().clone(),
        s.store().clone(),
        Some(Keyring::new(EncryptionKey::generate())),
    );
    let err = stranger.validate_config(one.id).await.unwrap_err();
    assert_eq!(err.kind(), "unknown_key", "{err}");
    assert!(err.to_string().contains(f.key.id()), "{err}");

    // Rotation: every row decrypts under the new key alone, and not under
    // the old one.
    let new_key = EncryptionKey::generate();
    let rotated = s.rotate_keys(new_key.clone(), |_| Ok(())).await.unwrap();
    assert_eq!(rotated, 2);
    let only_new = ConfigService::new(
        s.host().clone(),
        s.store().clone(),
        Some(Keyring::new(new_key.clone())),
    );
    let only_old = ConfigService::new(
        s.host().clone(),
        s.store().clone(),
        Some(Keyring::new(f.key.clone())),
    );
    for id in [one.id, two.id] {
        assert!(
            ciphertext(id)
                .await
                .starts_with(&format!("llmhost:v2:{}:", new_key.id()))
        );
        only_new.validate_config(id).await.unwrap().health.unwrap();
        assert_eq!(
            only_old.validate_config(id).await.unwrap_err().kind(),
            "unknown_key"
        );
    }
    // A rotation that fails before commit changes nothing.
    let before = ciphertext(one.id).await;
    let err = only_new
        .rotate_keys(EncryptionKey::generate(), |_| {
            Err(Error::Internal("refused".into()))
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "internal");
    assert_eq!(ciphertext(one.id).await, before);
    assert!(!contains(&stored_bytes(&f).await, "RECOGNISABLE"));
}

async fn agent_calls_use_the_stored_config_and_record_usage(backend: Backend) {
    let sim = Simulator::start().await.unwrap();
    let f = fixture(backend).await;
    let s = &f.service;
    s.create_agent("writer", None).await.unwrap();
    let mut config = with_key("openai", "gpt-4o-mini", KEY);
    config.fields.base_url = Some(sim.base_url(Vendor::OpenAi));
    config.fields.temperature = Some(0.25);
    let config = s.create_config("writer", config).await.unwrap();

    let answer = s
        .chat("writer", ChatRequest::simple("ignored", "Hello agent"))
        .await
        .unwrap();
    assert_eq!(answer.model, "gpt-4o-mini");
    assert_eq!(answer.config_id, config.id);
    let request = sim.requests().last().unwrap().clone();
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["temperature"], 0.25);
    let usage = answer.outcome.response.usage;
    let expected_cost = s
        .host()
        .cost("openai", "gpt-4o-mini", &usage)
        .expect("priced");
    assert_eq!(answer.outcome.cost_usd, Some(expected_cost));

    let mut stream = s
        .stream("writer", ChatRequest::simple("ignored", "Stream please"))
        .await
        .unwrap();
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        if let Chunk::Text(t) = chunk.unwrap() {
            text.push_str(&t);
        }
    }
    assert!(text.contains("Stream please"));
    let stream_usage = stream.usage().expect("usage reported");

    sim.enqueue(
        Vendor::OpenAi,
        Reply::openai_error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided",
        ),
    );
    let err = s
        .chat("writer", ChatRequest::simple("ignored", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "authentication");

    // Usage is written off the request path; a flush waits for it.
    s.flush_usage().await.unwrap();
    let events = s.store().usage_events(Some("writer")).await.unwrap();
    assert_eq!(events.len(), 3);
    let (chat, streamed, failed) = (&events[0], &events[1], &events[2]);
    assert_eq!(chat.request_id.as_deref(), Some(answer.request_id.as_str()));
    assert_eq!(chat.route.as_deref(), Some("agent:writer"));
    assert_eq!(chat.config_id, Some(config.id));
    assert_eq!(
        (chat.input_tokens, chat.output_tokens),
        (
            u64::from(usage.input_tokens),
            u64::from(usage.output_tokens)
        )
    );
    assert_eq!(chat.cost_usd, Some(expected_cost));
    assert_eq!(
        (chat.status.as_str(), chat.attempt, chat.fallback),
        ("ok", 1, false)
    );
    assert!(streamed.streamed && streamed.ttft_ms.is_some());
    assert_eq!(
        streamed.output_tokens,
        u64::from(stream_usage.output_tokens)
    );
    assert_eq!(
        streamed.cost_usd,
        s.host().cost("openai", "gpt-4o-mini", &stream_usage)
    );
    assert_eq!(failed.status, "error");
    assert_eq!(failed.error_kind.as_deref(), Some("authentication"));
    assert_eq!(failed.cost_usd, None);

    // Custom prices price the config's usage.
    s.update_config(
        config.id,
        None,
        ConfigUpdate {
            patch: ConfigPatch {
                // $1 and $2 per 1,000 tokens.
                prices: Some(Some(ConfigPrices::new(1_000_000_000, 2_000_000_000))),
                ..ConfigPatch::default()
            },
            ..ConfigUpdate::default()
        },
    )
    .await
    .unwrap();
    let answer = s
        .chat("writer", ChatRequest::simple("ignored", "Priced"))
        .await
        .unwrap();
    let u = answer.outcome.response.usage;
    let expected = (Decimal::from(u.input_tokens)
        + Decimal::from(u.output_tokens) * Decimal::from(2))
        / Decimal::from(1000);
    assert_eq!(answer.outcome.cost_usd, Some(expected));

    // A dropped stream is still recorded.
    let mut stream = s
        .stream("writer", ChatRequest::simple("ignored", "Stop early"))
        .await
        .unwrap();
    let _ = stream.next().await;
    drop(stream);
    for _ in 0..100 {
        if s.store().usage_events(Some("writer")).await.unwrap().len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = s.store().usage_events(Some("writer")).await.unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(events[4].error_kind.as_deref(), Some("cancelled"));
}

/// Whether any of `requests` carries `key` anywhere: a header (whatever its
/// name: `authorization`, `x-api-key`, …), the path or the body.
fn key_seen_in(requests: &[RecordedRequest], key: &str) -> bool {
    requests.iter().any(|r| {
        r.path.contains(key)
            || r.headers
                .iter()
                .any(|(name, value)| name.contains(key) || value.contains(key))
            || contains(&r.body, key)
    })
}

async fn set_base_url(store: &Store, id: i64, url: Option<&str>) {
    exec(
        store,
        "UPDATE agent_llm_configs SET base_url = ?2 WHERE id = ?1",
        vec![id.into(), url.into()],
    )
    .await
}

async fn stored_key(store: &Store, id: i64) -> Option<String> {
    scalar(
        store,
        "SELECT api_key_encrypted FROM agent_llm_configs WHERE id = ?1",
        vec![id.into()],
    )
    .await
}

/// The attack: whoever can write the database points a config with a
/// stored key at their own server with raw SQL, and waits for the next
/// call. The key must not reach them.
async fn a_base_url_changed_in_the_database_gets_no_key(backend: Backend) {
    let sim = Simulator::start().await.unwrap();
    let evil = Simulator::start().await.unwrap();
    let f = fixture(backend).await;
    let s = &f.service;
    s.create_agent("victim", None).await.unwrap();
    let mut config = with_key("openai", "gpt-4o-mini", KEY);
    config.fields.base_url = Some(sim.base_url(Vendor::OpenAi));
    let config = s.create_config("victim", config).await.unwrap();
    s.chat("victim", ChatRequest::simple("ignored", "before"))
        .await
        .unwrap();
    assert!(key_seen_in(&sim.requests(), KEY), "the real server got it");

    let evil_url = evil.base_url(Vendor::OpenAi);
    set_base_url(f.store(), config.id, Some(&evil_url)).await;
    assert_eq!(
        s.config(config.id)
            .await
            .unwrap()
            .fields
            .base_url
            .as_deref(),
        Some(evil_url.as_str())
    );
    let chat = s
        .chat("victim", ChatRequest::simple("ignored", "after"))
        .await
        .unwrap_err();
    let stream = s
        .stream("victim", ChatRequest::simple("ignored", "after"))
        .await
        .err()
        .expect("the stream does not start");
    let validate = s.validate_config(config.id).await.unwrap_err();
    for err in [&chat, &stream, &validate] {
        assert_eq!(err.kind(), "decryption_failed", "{err}");
        let message = format!("{err} {err:?}");
        assert!(!message.contains("RECOGNISABLE"), "{message}");
        assert!(message.contains("base URL"), "{message}");
    }
    assert!(
        evil.requests().is_empty(),
        "nothing at all is sent to the new URL: {:?}",
        evil.requests()
    );
    assert!(!key_seen_in(&evil.requests(), KEY));

    // Moving the provider too (with a base URL of that provider's shape)
    // fails the same way.
    exec(
        f.store(),
        "UPDATE agent_llm_configs SET provider = 'deepseek', model_name = 'deepseek-chat', \
             base_url = ?2 WHERE id = ?1",
        vec![config.id.into(), evil.base_url(Vendor::DeepSeek).into()],
    )
    .await;
    let err = s.validate_config(config.id).await.unwrap_err();
    assert_eq!(err.kind(), "decryption_failed", "{err}");
    assert!(evil.requests().is_empty());

    // Put back, the key works again: the value itself was never damaged.
    exec(
        f.store(),
        "UPDATE agent_llm_configs SET provider = 'openai', model_name = 'gpt-4o-mini', \
             base_url = ?2 WHERE id = ?1",
        vec![config.id.into(), sim.base_url(Vendor::OpenAi).into()],
    )
    .await;
    s.validate_config(config.id).await.unwrap().health.unwrap();
}

async fn update_config_moves_a_key_only_when_given_it_again(backend: Backend) {
    let sim = Simulator::start().await.unwrap();
    let other = Simulator::start().await.unwrap();
    let f = fixture(backend).await;
    let s = &f.service;
    s.create_agent("mover", None).await.unwrap();
    let here = sim.base_url(Vendor::OpenAi);
    let mut config = with_key("openai", "gpt-4o-mini", KEY);
    config.fields.base_url = Some(here.clone());
    let config = s.create_config("mover", config).await.unwrap();
    let before = stored_key(f.store(), config.id).await;

    let refused = [
        (
            "base_url",
            ConfigUpdate {
                patch: ConfigPatch {
                    base_url: Some(Some(other.base_url(Vendor::OpenAi))),
                    ..ConfigPatch::default()
                },
                ..ConfigUpdate::default()
            },
        ),
        (
            "base_url",
            ConfigUpdate {
                patch: ConfigPatch {
                    base_url: Some(None),
                    ..ConfigPatch::default()
                },
                ..ConfigUpdate::default()
            },
        ),
        (
            "provider",
            ConfigUpdate {
                patch: ConfigPatch {
                    provider: Some("deepseek".into()),
                    model: Some("deepseek-chat".into()),
                    ..ConfigPatch::default()
                },
                ..ConfigUpdate::default()
            },
        ),
        (
            "provider",
            ConfigUpdate {
                patch: ConfigPatch {
                    provider: Some("deepseek".into()),
                    model: Some("deepseek-chat".into()),
                    base_url: Some(Some(other.base_url(Vendor::DeepSeek))),
                    ..ConfigPatch::default()
                },
                ..ConfigUpdate::default()
            },
        ),
    ];
    for (field, update) in refused {
        let err = s.update_config(config.id, None, update).await.unwrap_err();
        match &err {
            Error::Validation {
                field: got,
                message,
            } => {
                assert_eq!(*got, field, "{err}");
                assert!(message.contains("--api-key"), "{err}");
                assert!(message.contains("clear"), "{err}");
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }
    let unchanged = s.config(config.id).await.unwrap();
    assert_eq!(
        (
            unchanged.fields.provider.as_str(),
            unchanged.fields.base_url.as_deref()
        ),
        ("openai", Some(here.as_str()))
    );
    assert_eq!(
        stored_key(f.store(), config.id).await,
        before,
        "key untouched"
    );

    // The same destination written differently is no move.
    s.update_config(
        config.id,
        None,
        ConfigUpdate {
            patch: ConfigPatch {
                base_url: Some(Some(format!("{here}/"))),
                ..ConfigPatch::default()
            },
            ..ConfigUpdate::default()
        },
    )
    .await
    .unwrap();

    // With the key given again the move is made, bound to the new place.
    let other_key = format!("{KEY}-other");
    let moved = s
        .update_config(
            config.id,
            None,
            ConfigUpdate {
                patch: ConfigPatch {
                    base_url: Some(Some(other.base_url(Vendor::OpenAi))),
                    ..ConfigPatch::default()
                },
                api_key: Some(Some(SecretString::from(other_key.clone()))),
            },
        )
        .await
        .unwrap();
    assert!(moved.has_api_key);
    s.validate_config(config.id).await.unwrap().health.unwrap();
    assert!(key_seen_in(&other.requests(), &other_key));
    assert!(!key_seen_in(&sim.requests(), &other_key));

    // A provider change with the key again works too.
    let deepseek_key = format!("{KEY}-deepseek");
    s.update_config(
        config.id,
        None,
        ConfigUpdate {
            patch: ConfigPatch {
                provider: Some("deepseek".into()),
                model: Some("deepseek-chat".into()),
                base_url: Some(Some(sim.base_url(Vendor::DeepSeek))),
                ..ConfigPatch::default()
            },
            api_key: Some(Some(SecretString::from(deepseek_key.clone()))),
        },
    )
    .await
    .unwrap();
    s.chat("mover", ChatRequest::simple("ignored", "to deepseek"))
        .await
        .unwrap();
    let last = sim.requests().last().unwrap().clone();
    assert_eq!(last.vendor, Some(Vendor::DeepSeek));
    assert!(key_seen_in(&[last], &deepseek_key));

    // Or the key is cleared with the move; without a stored key any move
    // is free.
    let cleared = s
        .update_config(
            config.id,
            None,
            ConfigUpdate {
                patch: ConfigPatch {
                    base_url: Some(None),
                    ..ConfigPatch::default()
                },
                api_key: Some(None),
            },
        )
        .await
        .unwrap();
    assert!(!cleared.has_api_key && cleared.fields.base_url.is_none());
    let free = s
        .update_config(
            config.id,
            None,
            ConfigUpdate {
                patch: ConfigPatch {
                    provider: Some("openai".into()),
                    model: Some("gpt-4o-mini".into()),
                    base_url: Some(Some(here.clone())),
                    ..ConfigPatch::default()
                },
                ..ConfigUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(free.fields.base_url.as_deref(), Some(here.as_str()));
    assert!(
        !stored_bytes(&f).await.is_empty() && !contains(&stored_bytes(&f).await, "RECOGNISABLE")
    );
}

/// A key stored by llmhost before keys were bound to base URLs (format
/// v1, written for agent 1 and provider `openai` under `V1_KEY`; the same
/// value the unit tests of `llmhost::secrets` read).
const V1_KEY: &str = "bGxtaG9zdC12MS1maXh0dXJlLWtleS0zMi1ieXRlcyE=";
const V1_VALUE: &str = "llmhost:v1:ka2a8fd30:AAECAwQFBgcICQoLIGQGGTQ0xzd2B8gDq/5KRtv2ECwNe29oRWai7Ymn1WI9KZi9elcbcaM2qTGNjBp6m1DN";

async fn keys_stored_before_base_urls_were_bound(backend: Backend) {
    let sim = Simulator::start().await.unwrap();
    let evil = Simulator::start().await.unwrap();
    // The provider's default base URL, as an operator sets it in
    // llmhost.toml: here the simulator, so that a config without a base
    // URL can be called.
    let host = common::builder()
        .provider_settings(BTreeMap::from([(
            "openai".to_owned(),
            ProviderSettings {
                base_url: Some(sim.base_url(Vendor::OpenAi)),
                ..ProviderSettings::default()
            },
        )]))
        .build()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = backend.database(dir.path(), "old.db");
    let key = EncryptionKey::from_base64(V1_KEY).unwrap();
    let s = ConfigService::new(
        host,
        Store::open_migrated(&db).await.unwrap(),
        Some(Keyring::new(key.clone())),
    );
    let agent = s.create_agent("veteran", None).await.unwrap();
    assert_eq!(agent.id, 1, "the fixture was written for agent 1");
    let config = s
        .create_config("veteran", NewConfig::new("openai", "gpt-4o-mini"))
        .await
        .unwrap();
    exec(
        s.store(),
        "UPDATE agent_llm_configs SET api_key_encrypted = ?2, api_key_hint = '…6789' \
             WHERE id = ?1",
        vec![config.id.into(), V1_VALUE.into()],
    )
    .await;

    // Without a base URL the old value is read as it is.
    s.chat("veteran", ChatRequest::simple("ignored", "old key"))
        .await
        .unwrap();
    assert!(key_seen_in(&sim.requests(), KEY));

    // A base URL set on it in the database: the key is not used, and the
    // error says how to give it again.
    set_base_url(s.store(), config.id, Some(&evil.base_url(Vendor::OpenAi))).await;
    let err = s
        .chat("veteran", ChatRequest::simple("ignored", "steal"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "decryption_failed", "{err}");
    assert!(err.to_string().contains("--api-key"), "{err}");
    assert!(!err.to_string().contains("RECOGNISABLE"), "{err}");
    assert!(evil.requests().is_empty());
    // Nor does a rotation bless that URL: it stops, changing nothing.
    let err = s
        .rotate_keys(EncryptionKey::generate(), |_| Ok(()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "decryption_failed", "{err}");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert_eq!(
        stored_key(s.store(), config.id).await.as_deref(),
        Some(V1_VALUE)
    );

    // Rotation rewrites it as v2, bound to "no base URL".
    set_base_url(s.store(), config.id, None).await;
    let new_key = EncryptionKey::generate();
    assert_eq!(s.rotate_keys(new_key.clone(), |_| Ok(())).await.unwrap(), 1);
    let rewritten = stored_key(s.store(), config.id).await.unwrap();
    assert!(
        rewritten.starts_with(&format!("llmhost:v2:{}:", new_key.id())),
        "{rewritten}"
    );
    s.chat("veteran", ChatRequest::simple("ignored", "rotated"))
        .await
        .unwrap();
    set_base_url(s.store(), config.id, Some(&evil.base_url(Vendor::OpenAi))).await;
    let err = s
        .chat("veteran", ChatRequest::simple("ignored", "steal again"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "decryption_failed", "{err}");
    assert!(evil.requests().is_empty());
    assert!(!key_seen_in(&evil.requests(), KEY));
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn the_database_and_its_side_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let side = |db: &Path, suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let dir = tempfile::tempdir().unwrap();
    // What the process's umask gives a file created without care, which
    // is what SQLite used to create: usually 0644, readable by everyone.
    let careless = dir.path().join("careless");
    std::fs::write(&careless, b"").unwrap();
    eprintln!("a file created without care: {:o}", mode(&careless));

    let db = dir.path().join("new/llmhost.db");
    let store = Store::open(&db).await.unwrap();
    let agent = store.create_agent("private", None).await.unwrap();
    store
        .record_usage(event(Some(agent.id), "private", None))
        .await
        .unwrap();
    assert_eq!(mode(&db), 0o600);
    // SQLite keeps -wal and -shm while a connection is open.
    for suffix in ["-wal", "-shm"] {
        let path = side(&db, suffix);
        assert!(path.exists(), "{} exists", path.display());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    drop(store);

    // A database created with other permissions on purpose keeps them.
    let shared = dir.path().join("shared.db");
    std::fs::write(&shared, b"").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
    let store = Store::open(&shared).await.unwrap();
    store.create_agent("group", None).await.unwrap();
    assert_eq!(mode(&shared), 0o640);
    assert_eq!(mode(&side(&shared, "-wal")), 0o640);
}

async fn updates_compare_and_set_and_configs_are_reordered_at_once(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.service;
    let agent = s.create_agent("ordered", Some("first")).await.unwrap();
    let mut ids = Vec::new();
    for model in ["gpt-4o-mini", "gpt-4o", "gpt-4.1"] {
        let config = s
            .create_config("ordered", NewConfig::new("openai", model))
            .await
            .unwrap();
        ids.push(config.id);
    }

    // An update made against what was read succeeds once; the second,
    // against the same (now stale) read, is a conflict.
    let read = s.config(ids[0]).await.unwrap();
    let update = || {
        ConfigUpdate::from(ConfigPatch {
            temperature: Some(Some(0.2)),
            ..ConfigPatch::default()
        })
    };
    s.update_config(ids[0], Some(&read.updated_at), update())
        .await
        .unwrap();
    let err = s
        .update_config(ids[0], Some(&read.updated_at), update())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "conflict", "{err}");

    // Reordering sets priorities 0.. in the order given.
    let order = [ids[2], ids[0], ids[1]];
    let reordered = s.reorder_configs("ordered", &order).await.unwrap();
    let got: Vec<(i64, i64)> = reordered
        .iter()
        .map(|c| (c.id, c.fields.priority))
        .collect();
    assert_eq!(got, [(ids[2], 0), (ids[0], 1), (ids[1], 2)]);
    assert_eq!(s.primary_config("ordered").await.unwrap().id, ids[2]);
    for bad in [
        &[ids[0], ids[1]][..],
        &[ids[0], ids[0], ids[1]],
        &[ids[0], ids[1], ids[2], 999],
    ] {
        match s.reorder_configs("ordered", bad).await.unwrap_err() {
            Error::Validation { field, .. } => assert_eq!(field, "ids"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }

    // Agents: the description changes, or is cleared, under the same rule.
    let changed = s
        .update_agent(
            "ordered",
            Some(&agent.updated_at),
            Some(Some("second".into())),
            None,
        )
        .await
        .unwrap();
    assert_eq!(changed.description.as_deref(), Some("second"));
    let err = s
        .update_agent("ordered", Some(&agent.updated_at), Some(None), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "conflict");
    let cleared = s
        .update_agent("ordered", None, Some(None), None)
        .await
        .unwrap();
    assert_eq!(cleared.description, None);
    assert_eq!(cleared.balance, llmhost::router::Strategy::Priority);
    // The strategy changes alone, the description kept.
    let balanced = s
        .update_agent(
            "ordered",
            None,
            None,
            Some(llmhost::router::Strategy::LeastInFlight),
        )
        .await
        .unwrap();
    assert_eq!(
        (balanced.balance, balanced.description),
        (llmhost::router::Strategy::LeastInFlight, None)
    );
    let err = s
        .update_agent("nobody", None, None, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "not_found");
}

/// Unique, foreign-key and check violations, a missing row and a stale
/// compare-and-set are the same errors on both engines.
async fn both_engines_give_the_same_typed_errors(backend: Backend) {
    let f = fixture(backend).await;
    let store = f.store();
    let agent = store.create_agent("taken", None).await.unwrap();
    let err = store.create_agent("taken", None).await.unwrap_err();
    assert_eq!(err.kind(), "conflict", "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");

    let row = llmhost::store::NewConfigRow {
        fields: ConfigFields::new("openai", "gpt-4o-mini"),
        api_key_encrypted: None,
        api_key_hint: None,
    };
    let err = store.insert_config(9_999, row.clone()).await.unwrap_err();
    assert_eq!(err.kind(), "database", "{err}");
    assert!(err.to_string().contains("foreign key"), "{err}");

    let mut bad = row.clone();
    bad.fields.max_attempts = Some(99);
    let err = store.insert_config(agent.id, bad).await.unwrap_err();
    assert_eq!(err.kind(), "database", "{err}");
    assert!(err.to_string().contains("check constraint"), "{err}");

    let config = store.insert_config(agent.id, row.clone()).await.unwrap();
    let updated = store
        .update_config(config.id, &config.updated_at, row.clone())
        .await
        .unwrap();
    assert!(updated.updated_at > config.updated_at);
    let err = store
        .update_config(config.id, &config.updated_at, row.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "conflict", "stale compare-and-set: {err}");
    let err = store
        .update_config(9_999, &config.updated_at, row)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "not_found", "{err}");
    let err = store
        .update_agent("nobody", None, Some(None), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "not_found", "{err}");
    // A statement's error names the database, never a password.
    let err = store
        .execute_sql("INSERT INTO nowhere VALUES (1)", vec![])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "database", "{err}");
    assert!(err.to_string().contains(&f.db.to_string()), "{err}");
}

/// A password in a PostgreSQL URL shows neither in errors nor in `Debug`
/// output of the store or its settings.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_passwords_never_show() {
    const SECRET: &str = "Pg-Secret-0123456789";
    // Nothing listens on port 1: the connection fails.
    let unreachable = format!("postgres://llmhost:{SECRET}@127.0.0.1:1/llmhost");
    let err = Store::open(unreachable.as_str()).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert_eq!(err.kind(), "database", "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("llmhost:***@127.0.0.1:1"), "{shown}");

    // The test server trusts loopback, so a password is accepted and
    // ignored: the store opens, and still never shows it.
    let url = llmhost_test_services::postgres().database().replacen(
        "postgres://llmhost@",
        &format!("postgres://llmhost:{SECRET}@"),
        1,
    );
    let err = Store::open(url.as_str()).await.unwrap_err();
    assert!(err.to_string().contains("llmhost migrate"), "{err}");
    assert!(!format!("{err} {err:?}").contains(SECRET));
    let store = Store::open_migrated(url.as_str()).await.unwrap();
    let shown = format!("{store:?} {} {:?}", store.database(), store.database());
    assert!(!shown.contains(SECRET), "{shown}");
    let err = store
        .execute_sql("SELECT * FROM nowhere", vec![])
        .await
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains(SECRET), "{err}");
}

/// An event of virtual key `key` (and maybe agent `agent`) costing `cost`.
fn keyed(key: i64, agent: Option<(i64, &str)>, cost: Option<&str>, ok: bool) -> UsageEvent {
    let mut e = event(agent.map(|a| a.0), agent.map_or("none", |a| a.1), None);
    if agent.is_none() {
        e.agent_name = None;
    }
    e.virtual_key_id = Some(key);
    e.virtual_key_name = Some(format!("k{key}"));
    e.cost_usd = cost.map(|c| c.parse().unwrap());
    if !ok {
        e.outcome = UsageOutcome::Error(llmhost::ErrorKind::RateLimited);
    }
    e
}

/// Stores virtual keys named `k1`, `k2`, … and returns their ids.
async fn virtual_keys(store: &Store, count: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for n in 1..=count {
        let row = llmhost::store::NewVirtualKeyRow {
            name: format!("k{n}"),
            key_hash: format!("hash-{n}"),
            hash_key_id: "k00000000".into(),
            key_hint: "lhk-…".into(),
            agent_name: None,
            models: None,
            budget: None,
            rpm: None,
            tpm: None,
            expires_at: None,
            cache_ttl_secs: None,
            cache_shared: false,
        };
        ids.push(store.insert_virtual_key(row).await.unwrap().id);
    }
    ids
}

/// The spend of key `id` summed from its raw rows, exactly.
async fn raw_spend(store: &Store, id: i64) -> (Decimal, u64, u64) {
    let rows = store
        .query_sql(
            "SELECT cost_usd, input_tokens FROM usage_events WHERE virtual_key_id = ?1",
            vec![id.into()],
        )
        .await
        .unwrap();
    let mut cost = Decimal::ZERO;
    let mut input = 0;
    for row in &rows {
        if let Some(c) = row.get::<_, Option<String>>(0).unwrap() {
            cost += c.parse::<Decimal>().unwrap();
        }
        input += row.get::<_, u64>(1).unwrap();
    }
    (cost, rows.len() as u64, input)
}

/// Three replicas (store handles of their own: pools, or SQLite
/// connections) write batches for the same keys at once: the rollup's
/// sums equal those of the raw rows, to the last digit.
async fn usage_rolls_up_exactly_with_replicas_writing_at_once(backend: Backend) {
    let f = fixture(backend).await;
    let agent = f.store().create_agent("bot", None).await.unwrap();
    let keys = virtual_keys(f.store(), 3).await;
    let mut replicas = vec![f.store().clone()];
    for _ in 0..2 {
        replicas.push(Store::open(&f.db).await.unwrap());
    }
    let costs = ["0.1", "0.000000000000000001", "12.345678901", "0.0000015"];
    let mut tasks = Vec::new();
    for (r, store) in replicas.iter().enumerate() {
        let store = store.clone();
        let name = agent.name.clone();
        let id = agent.id;
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..15 {
                let events: Vec<UsageEvent> = (0..40)
                    .map(|i| {
                        let n = r * 1000 + batch * 40 + i;
                        let key = keys[n % 3];
                        let agent = (n % 2 == 0).then_some((id, name.as_str()));
                        let cost = (n % 5 != 0).then_some(costs[n % costs.len()]);
                        keyed(key, agent, cost, n % 7 != 0)
                    })
                    .collect();
                store.record_usage_many(events).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let store = f.store();
    let mut all_requests = 0;
    for &key in &keys {
        let (cost, requests, input) = raw_spend(store, key).await;
        let spend = store.spend_of_virtual_key(key, None).await.unwrap();
        assert_eq!(spend.cost_usd, cost, "key {key}: the rollup sums exactly");
        assert_eq!((spend.requests, spend.input_tokens), (requests, input));
        all_requests += requests;
    }
    assert_eq!(all_requests, 3 * 15 * 40);
    let summary = store.usage_summary(None).await.unwrap();
    assert_eq!(
        summary.iter().map(|s| s.attempts).sum::<u64>(),
        all_requests
    );
    let errors: u64 = summary.iter().map(|s| s.errors).sum();
    let raw_errors: i64 = scalar(
        store,
        "SELECT count(*) FROM usage_events WHERE status = 'error'",
        vec![],
    )
    .await;
    assert_eq!(errors, raw_errors as u64);
    let agent_total: Decimal = summary
        .iter()
        .filter(|s| s.agent_name.as_deref() == Some("bot"))
        .map(|s| s.cost_usd)
        .sum();
    let spend = store.spend_of_agent(agent.id, None).await.unwrap();
    assert_eq!(spend.cost_usd, agent_total);
}

/// More rows than one INSERT holds: several multi-row INSERTs in one
/// transaction, the ids in the order given.
async fn a_large_batch_is_stored_in_order(backend: Backend) {
    let f = fixture(backend).await;
    let store = f.store();
    let key = virtual_keys(store, 1).await[0];
    let count = 1_234;
    let events: Vec<UsageEvent> = (0..count)
        .map(|i| {
            let mut e = keyed(key, None, Some("0.001"), true);
            e.request_id = Some(format!("req-{i}"));
            e
        })
        .collect();
    let ids = store.record_usage_many(events).await.unwrap();
    assert_eq!(ids.len(), count);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order");
    let records = store
        .usage_records(llmhost::store::UsageFilter::default())
        .await
        .unwrap();
    assert_eq!(records.len(), count);
    for (i, (record, id)) in records.iter().zip(&ids).enumerate() {
        assert_eq!(record.id, *id);
        assert_eq!(
            record.request_id.as_deref(),
            Some(format!("req-{i}").as_str())
        );
    }
    let spend = store.spend_of_virtual_key(key, None).await.unwrap();
    assert_eq!(spend.cost_usd, "1.234".parse::<Decimal>().unwrap());
}

async fn retention_deletes_raw_rows_and_keeps_their_sums(backend: Backend) {
    let f = fixture(backend).await;
    let store = f.store();
    let k = virtual_keys(store, 1).await[0];
    let ids = store
        .record_usage_many(vec![
            keyed(k, None, Some("0.5"), true),
            keyed(k, None, Some("0.25"), true),
            keyed(k, None, None, true),
            keyed(k, None, Some("1"), false),
        ])
        .await
        .unwrap();
    store
        .backdate_usage(ids[0], "2001-01-01T00:00:00.000Z")
        .await
        .unwrap();
    store
        .backdate_usage(ids[2], "2001-06-01T12:30:00.000Z")
        .await
        .unwrap();
    let before = store.spend_of_virtual_key(k, None).await.unwrap();
    let summary = store.usage_summary(None).await.unwrap();
    assert_eq!(before.cost_usd, "1.75".parse::<Decimal>().unwrap());
    assert_eq!((before.requests, before.unpriced), (4, 1));
    let since_2002 = store
        .spend_of_virtual_key(k, Some("2002-01-01T00:00:00.000Z".into()))
        .await
        .unwrap();
    assert_eq!(since_2002.cost_usd, "1.25".parse::<Decimal>().unwrap());
    // A window that starts inside an hour: the rollup's later hours and
    // that hour's raw rows from the window's start on.
    let inside = |at: &str| store.spend_of_virtual_key(k, Some(at.to_owned()));
    assert_eq!(
        inside("2001-06-01T12:15:00.000Z").await.unwrap().requests,
        3
    );
    assert_eq!(
        inside("2001-06-01T12:45:00.000Z").await.unwrap().requests,
        2
    );

    let cutoff = std::time::UNIX_EPOCH + Duration::from_secs(1_009_843_200); // 2002-01-01
    assert_eq!(store.delete_usage_before(cutoff).await.unwrap(), 2);
    let left = store
        .usage_records(llmhost::store::UsageFilter::default())
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[1], ids[3]]
    );
    assert_eq!(store.spend_of_virtual_key(k, None).await.unwrap(), before);
    assert_eq!(store.usage_summary(None).await.unwrap(), summary);
    assert_eq!(store.delete_usage_before(cutoff).await.unwrap(), 0);

    // What `[usage] retain_days` runs in `llmhost serve`: at once, then
    // hourly. (Timing: the first pass is immediate; 30 s is a wide margin.)
    let old = store
        .record_usage(keyed(k, None, Some("3"), true))
        .await
        .unwrap();
    store
        .backdate_usage(old, "2001-01-01T00:00:00.000Z")
        .await
        .unwrap();
    let task = llmhost::store::spawn_usage_retention(store.clone(), 1);
    let started = std::time::Instant::now();
    while store
        .usage_records(llmhost::store::UsageFilter::default())
        .await
        .unwrap()
        .iter()
        .any(|r| r.id == old)
    {
        assert!(started.elapsed() < Duration::from_secs(30), "not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    let spend = store.spend_of_virtual_key(k, None).await.unwrap();
    assert_eq!(spend.cost_usd, "4.75".parse::<Decimal>().unwrap());
}

/// The store's other tables through their own calls: experiments and
/// their calls, admin tokens (a binary hash), virtual keys by hash and
/// revoked, key counts and usage points.
async fn experiments_tokens_and_keys_on_both_engines(backend: Backend) {
    use llmhost::store::{ExperimentStatus, Sticky, Variant};
    let f = fixture(backend).await;
    let store = f.store();
    let agent = store.create_agent("tested", None).await.unwrap();
    let variant = |name: &str, weight: u32| Variant {
        name: name.into(),
        weight,
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        temperature: Some(0.5),
        max_tokens: Some(100),
        top_p: None,
    };
    let twice = store
        .create_experiment(
            agent.id,
            "dup",
            Sticky::User,
            vec![variant("a", 1), variant("a", 2)],
        )
        .await
        .unwrap_err();
    assert_eq!(twice.kind(), "validation", "{twice}");
    let experiment = store
        .create_experiment(
            agent.id,
            "ab",
            Sticky::Request,
            vec![variant("control", 80), variant("treatment", 20)],
        )
        .await
        .unwrap();
    assert_eq!(experiment.variants.len(), 2);
    assert_eq!(experiment.variants[0].temperature, Some(0.5));
    let second = store
        .create_experiment(agent.id, "other", Sticky::User, vec![variant("x", 1)])
        .await
        .unwrap_err();
    assert_eq!(second.kind(), "conflict", "{second}");
    assert_eq!(store.experiments().await.unwrap().len(), 1);
    assert_eq!(
        store
            .active_experiment(agent.id)
            .await
            .unwrap()
            .unwrap()
            .name,
        "ab"
    );
    let mut calls = Vec::new();
    for (i, name) in ["control", "treatment", "control"].iter().enumerate() {
        let mut e = event(Some(agent.id), "tested", None);
        e.request_id = Some(format!("call-{i}"));
        e.served.experiment = Some("ab".into());
        e.served.variant = Some((*name).into());
        calls.push(e.clone());
        // A retry of the first call: only its last row counts.
        if i == 0 {
            calls.push(e);
        }
    }
    calls.push({
        let mut e = event(Some(agent.id), "tested", None);
        e.request_id = None;
        e.served.experiment = Some("ab".into());
        e.served.variant = Some("treatment".into());
        e
    });
    store.record_usage_many(calls).await.unwrap();
    let seen = store
        .experiment_calls("ab", "2000-01-01T00:00:00.000Z")
        .await
        .unwrap();
    let variants: Vec<&str> = seen.iter().map(|c| c.variant.as_str()).collect();
    assert_eq!(variants, ["control", "treatment", "control", "treatment"]);
    let stopped = store.stop_experiment("ab").await.unwrap();
    assert_eq!(stopped.status, ExperimentStatus::Stopped);
    assert!(stopped.stopped_at.is_some());
    assert_eq!(
        store.stop_experiment("ab").await.unwrap_err().kind(),
        "conflict"
    );
    assert_eq!(
        store.stop_experiment("none").await.unwrap_err().kind(),
        "not_found"
    );

    let hash = [7u8; 32];
    let token = store
        .insert_admin_token("ops", hash, "lht-ab")
        .await
        .unwrap();
    assert_eq!(
        store
            .insert_admin_token("ops", [8u8; 32], "lht-cd")
            .await
            .unwrap_err()
            .kind(),
        "conflict"
    );
    assert_eq!(
        store.live_admin_token_by_hash(hash).await.unwrap(),
        Some(token)
    );
    let revoked = store.revoke_admin_token("ops").await.unwrap().unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(store.live_admin_token_by_hash(hash).await.unwrap(), None);
    assert_eq!(store.admin_tokens().await.unwrap().len(), 1);

    let keys = virtual_keys(store, 2).await;
    let found = store
        .virtual_key_by_hash(vec![
            ("kffffffff".into(), "nothing".into()),
            ("k00000000".into(), "hash-2".into()),
        ])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, keys[1]);
    let live = store
        .live_virtual_keys_by_hash_key(std::time::SystemTime::now())
        .await
        .unwrap();
    assert_eq!(live, [("k00000000".to_owned(), 2)]);
    let revoked = store.revoke_virtual_key("k1").await.unwrap().unwrap();
    let again = store.revoke_virtual_key("k1").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, again.revoked_at, "the first time stays");
    assert_eq!(store.revoke_virtual_key("none").await.unwrap(), None);
    assert_eq!(store.virtual_keys().await.unwrap().len(), 2);

    let points = store
        .usage_points(
            "2000-01-01T00:00:00.000Z".into(),
            "2999-01-01T00:00:00.000Z".into(),
        )
        .await
        .unwrap();
    assert_eq!(points.len(), 5);
    assert!(points.iter().all(|p| p.ok && p.cost_usd.is_some()));
    assert!(store.api_keys_by_encryption_key().await.unwrap().is_empty());
}

/// SQLite gives a new row the highest id plus one, so an agent created
/// after the last one was deleted may get its id: its budget must start
/// from nothing, while the reports keep the old agent's usage by name.
async fn a_new_agent_does_not_inherit_a_deleted_ones_spend(backend: Backend) {
    let f = fixture(backend).await;
    let store = f.store();
    let old = store.create_agent("old", None).await.unwrap();
    store
        .record_usage(event(Some(old.id), "old", None))
        .await
        .unwrap();
    assert_eq!(
        store.spend_of_agent(old.id, None).await.unwrap().requests,
        1
    );
    assert!(store.delete_agent("old").await.unwrap());
    let new = store.create_agent("new", None).await.unwrap();
    if backend == Backend::Sqlite {
        assert_eq!(new.id, old.id, "SQLite reuses the id");
    }
    let spend = store.spend_of_agent(new.id, None).await.unwrap();
    assert_eq!((spend.requests, spend.cost_usd), (0, Decimal::ZERO));
    let summary = store.usage_summary(Some("old")).await.unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].attempts, 1);
}
