//! `llmhost migrate`, and `llmhost serve` on PostgreSQL: the schema is
//! migrated once by the command (safely when two run at once), never by a
//! replica at start, which refuses an out-of-date database instead; a
//! chat through the gateway lands its usage row in PostgreSQL.

mod common;

use common::gateway::Setup;
use llmhost::store::{SCHEMA_VERSION, Store, UsageFilter};
use llmhost_simulator::Simulator;
use serde_json::json;
use std::time::{Duration, Instant};

/// How long usage rows may take to reach the database (they are written
/// in batches, off the request path).
const USAGE_TIMEOUT: Duration = Duration::from_secs(30);

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_then_serve_on_postgres_answers_a_chat_and_stores_usage() {
    let sim = Simulator::start().await.unwrap();
    let url = llmhost_test_services::postgres().database();
    let setup = Setup::new(&sim).database(&url);

    // Not migrated: serve and the other commands refuse, naming the fix.
    let refused = setup
        .run_briefly(
            &["serve", "--listen", "127.0.0.1:0"],
            Duration::from_secs(120),
        )
        .await;
    assert!(!refused.status.success());
    let why = stderr_of(&refused);
    assert!(why.contains("llmhost migrate"), "{why}");
    assert!(why.contains("schema version 0"), "{why}");
    let listed = setup.run(&["agents", "list", "--json"]).await;
    assert!(!listed.status.success());
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("llmhost migrate"),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );

    let migrated = setup.cli(&["migrate", "--json"]).await;
    assert_eq!(
        (&migrated["engine"], &migrated["from"], &migrated["to"]),
        (&json!("postgres"), &json!(0), &json!(SCHEMA_VERSION))
    );
    let again = setup.cli(&["migrate", "--json"]).await;
    assert_eq!(
        (&again["from"], &again["to"]),
        (&json!(SCHEMA_VERSION), &json!(SCHEMA_VERSION))
    );
    let text = setup.run(&["migrate"]).await;
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("nothing to do"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );

    let gateway = setup.start().await;
    let (request_id, _) = gateway.chat_ok("hello from postgres").await;

    let store = Store::open(url.as_str()).await.unwrap();
    let started = Instant::now();
    let rows = loop {
        let rows = store
            .usage_records(UsageFilter {
                request_id: Some(request_id.clone()),
                ..UsageFilter::default()
            })
            .await
            .unwrap();
        if !rows.is_empty() {
            break rows;
        }
        assert!(
            started.elapsed() < USAGE_TIMEOUT,
            "no usage row of {request_id} in PostgreSQL within {USAGE_TIMEOUT:?}:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(
        (row.provider.as_str(), row.model.as_str()),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(row.status, "ok");
    assert_eq!(row.route.as_deref(), Some("openai/gpt-4o-mini"));
    assert!(row.input_tokens > 0 && row.output_tokens > 0, "{row:?}");
    assert!(row.cost_usd.is_some(), "{row:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_migrations_at_once_are_safe_and_down_goes_down() {
    let sim = Simulator::start().await.unwrap();
    let url = llmhost_test_services::postgres().database();
    let setup = Setup::new(&sim).database(&url);
    let (one, two) = tokio::join!(
        setup.run(&["migrate", "--json"]),
        setup.run(&["migrate", "--json"])
    );
    for output in [&one, &two] {
        assert!(output.status.success(), "{}", stderr_of(output));
        assert_eq!(common::json_of(output)["to"], json!(SCHEMA_VERSION));
    }
    let store = Store::open(url.as_str()).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);

    let down = setup.cli(&["migrate", "--to", "3", "--json"]).await;
    assert_eq!(
        (&down["from"], &down["to"]),
        (&json!(SCHEMA_VERSION), &json!(3))
    );
    assert_eq!(store.schema_version().await.unwrap(), 3);
    let err = Store::open(url.as_str()).await.unwrap_err();
    assert!(err.to_string().contains("llmhost migrate"), "{err}");

    let beyond = setup.run(&["migrate", "--to", "99", "--json"]).await;
    assert!(!beyond.status.success());
    assert_eq!(
        common::json_of(&beyond)["error"]["kind"],
        json!("invalid_config")
    );
    assert_eq!(store.schema_version().await.unwrap(), 3);
    let up = setup.run(&["migrate"]).await;
    let said = String::from_utf8_lossy(&up.stdout);
    assert!(
        said.contains(&format!("from schema version 3 to {SCHEMA_VERSION}")),
        "{said}"
    );
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_works_on_sqlite_too() {
    let sim = Simulator::start().await.unwrap();
    let setup = Setup::new(&sim);
    let first = setup.cli(&["migrate", "--json"]).await;
    assert_eq!(
        (&first["engine"], &first["from"], &first["to"]),
        (&json!("sqlite"), &json!(0), &json!(SCHEMA_VERSION))
    );
    let down = setup.cli(&["migrate", "--to", "9", "--json"]).await;
    assert_eq!(down["to"], json!(9));
    // SQLite migrates on open: the other commands need no migrate.
    setup.cli(&["agents", "list", "--json"]).await;
    let up = setup.cli(&["migrate", "--json"]).await;
    assert_eq!(
        (&up["from"], &up["to"]),
        (&json!(SCHEMA_VERSION), &json!(SCHEMA_VERSION))
    );
}
