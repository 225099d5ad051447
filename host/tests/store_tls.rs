//! PostgreSQL over TLS, on real servers: `llmhost_test_services::postgres_tls()`
//! takes TLS connections only, with a certificate of a throwaway CA;
//! `postgres()` offers no TLS. The URL's `sslmode` and the CA setting
//! decide, the server's `pg_stat_ssl` tells what the session is, and
//! `llmhost migrate` and `llmhost serve` answer a chat over TLS.

mod common;

use common::gateway::Setup;
use llmhost::store::{Database, SCHEMA_VERSION, Store, UsageFilter};
use llmhost_simulator::Simulator;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// In the URLs: never to be shown (the test servers trust loopback, so it
/// is accepted and ignored).
const SECRET: &str = "Tls-Secret-0123456789";

/// How long usage rows may take to reach the database (they are written
/// in batches, off the request path).
const USAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh database on `server`, with [`SECRET`] as password and `query`
/// added.
fn database_on(server: &llmhost_test_services::Postgres, query: &str) -> String {
    let url = server.database().replacen(
        "postgres://llmhost@",
        &format!("postgres://llmhost:{SECRET}@"),
        1,
    );
    format!("{url}?{query}")
}

fn tls_server() -> &'static llmhost_test_services::Postgres {
    llmhost_test_services::postgres_tls()
}

fn ca() -> &'static Path {
    tls_server().ca_file().expect("the TLS server's CA")
}

/// Whether the store's own session is TLS, as the server reports it.
async fn session_ssl(store: &Store) -> (bool, String) {
    let rows = store
        .query_sql(
            "SELECT ssl, COALESCE(version, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    (rows[0].get(0).unwrap(), rows[0].get(1).unwrap())
}

fn assert_hidden(text: &str) {
    assert!(!text.contains(SECRET), "the password shows: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_ca_the_store_opens_migrates_writes_and_reads_over_tls() {
    // The CA from the URL (libpq's `sslrootcert=`).
    let url = database_on(
        tls_server(),
        &format!("sslmode=require&sslrootcert={}", ca().display()),
    );
    let store = Store::open_migrated(url.as_str()).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    let agent = store
        .create_agent("over-tls", Some("sealed"))
        .await
        .unwrap();
    let read = store.agent("over-tls").await.unwrap().expect("the agent");
    assert_eq!(
        (read.id, read.description.as_deref()),
        (agent.id, Some("sealed"))
    );
    let (ssl, version) = session_ssl(&store).await;
    assert!(ssl, "the server does not see TLS");
    assert!(version.starts_with("TLSv1."), "{version}");
    // Every session the pool opened is TLS (the server takes no other).
    let plain = store
        .query_sql(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE datname = current_database() AND application_name = 'llmhost' AND NOT ssl",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(plain[0].get::<_, i64>(0).unwrap(), 0);
    assert_hidden(&format!("{store:?} {}", store.database()));
    drop(store);

    // The CA from the setting, `verify-full`, and the host by name: a
    // second store of the same database sees what the first wrote.
    let by_name = url.replacen("@127.0.0.1:", "@localhost:", 1).replacen(
        &format!("sslmode=require&sslrootcert={}", ca().display()),
        "sslmode=verify-full",
        1,
    );
    let mut database = Database::parse(&by_name);
    database.set_ca_file(Some(ca().to_path_buf()));
    let store = Store::open(database).await.unwrap();
    assert_eq!(
        store.agent("over-tls").await.unwrap().map(|a| a.id),
        Some(agent.id)
    );
    assert!(session_ssl(&store).await.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_ca_the_certificate_is_refused() {
    for mode in ["require", "verify-ca", "prefer"] {
        let url = database_on(tls_server(), &format!("sslmode={mode}"));
        let err = Store::open(url.as_str()).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert_eq!(err.kind(), "database", "{text}");
        assert!(
            text.contains("not signed by a trusted CA"),
            "{mode}: {text}"
        );
        assert!(text.contains("UnknownIssuer"), "{mode}: {text}");
        assert!(text.contains("LLMHOST_DB_CA_FILE"), "{mode}: {text}");
        assert!(text.contains("no CA file given"), "{mode}: {text}");
        assert_hidden(&text);
    }

    // A CA file of another CA: still refused, and the message names the
    // file.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, OTHER_CA).unwrap();
    let mut database = Database::parse(&database_on(tls_server(), "sslmode=require"));
    database.set_ca_file(Some(other.clone()));
    let err = Store::open(database).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("not signed by a trusted CA"), "{text}");
    assert!(text.contains(&other.display().to_string()), "{text}");
    assert!(text.contains("database_ca_file"), "{text}");

    // A CA file that is not there: refused before connecting.
    let mut database = Database::parse(&database_on(tls_server(), "sslmode=require"));
    database.set_ca_file(Some(dir.path().join("missing.pem")));
    let err = Store::open(database).await.unwrap_err();
    assert_eq!(err.kind(), "invalid_config", "{err}");
    assert!(err.to_string().contains("cannot read it"), "{err}");
    assert_hidden(&format!("{err} {err:?}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_server_restart_the_pool_connects_over_tls_again() {
    // A server of this test's own, to restart.
    let mut server = llmhost_test_services::Service::start("postgres-tls");
    let ca = server.ca_file().expect("a CA").to_path_buf();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        server.url(),
        ca.display()
    );
    let store = Store::open_migrated(url.as_str()).await.unwrap();
    store.create_agent("before", None).await.unwrap();
    server.stop();
    server.resume();
    // The pool's connection died with the server: the next call checks
    // it, drops it and opens another through the same TLS set-up.
    store.create_agent("after", None).await.unwrap();
    assert!(session_ssl(&store).await.0);
    assert_eq!(store.agents().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_for_another_host_name_is_refused() {
    // TCP to the test server, TLS checked for a name its certificate
    // does not hold (the driver's `hostaddr`).
    let url = database_on(
        tls_server(),
        &format!(
            "sslmode=verify-full&sslrootcert={}&hostaddr=127.0.0.1",
            ca().display()
        ),
    )
    .replacen("@127.0.0.1:", "@db.elsewhere.example:", 1);
    let err = Store::open(url.as_str()).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert_eq!(err.kind(), "database", "{text}");
    assert!(
        text.contains("does not name the host connected to"),
        "{text}"
    );
    assert!(text.contains("db.elsewhere.example"), "{text}");
    assert_hidden(&text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_only_server_refuses_sslmode_disable_with_a_hint() {
    let url = database_on(tls_server(), "sslmode=disable");
    let err = Store::open(url.as_str()).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert_eq!(err.kind(), "database", "{text}");
    assert!(text.contains("no encryption"), "{text}");
    assert!(text.contains("connect with sslmode=require"), "{text}");
    assert_hidden(&text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_tls_refuses_require_and_takes_prefer_and_disable() {
    let plain = llmhost_test_services::postgres();
    for mode in ["require", "verify-full"] {
        let mut database = Database::parse(&database_on(plain, &format!("sslmode={mode}")));
        database.set_ca_file(Some(ca().to_path_buf()));
        let err = Store::open(database).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert_eq!(err.kind(), "database", "{text}");
        assert!(
            text.contains(&format!(
                "the server does not offer TLS and sslmode={mode} needs it"
            )),
            "{text}"
        );
        assert_hidden(&text);
    }
    for mode in ["prefer", "disable"] {
        let url = database_on(plain, &format!("sslmode={mode}"));
        let store = Store::open_migrated(url.as_str()).await.unwrap();
        store.create_agent("plain", None).await.unwrap();
        assert!(store.agent("plain").await.unwrap().is_some());
        assert_eq!(session_ssl(&store).await, (false, String::new()), "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_and_serve_over_tls_answer_a_chat() {
    let sim = Simulator::start().await.unwrap();
    let url = database_on(tls_server(), "sslmode=require");
    let ca_file = ca().display().to_string();

    // Without the CA: refused, saying what to set.
    let refused = Setup::new(&sim)
        .database(&url)
        .run(&["migrate", "--json"])
        .await;
    assert!(!refused.status.success());
    let why = common::json_of(&refused);
    assert_eq!(why["error"]["kind"], json!("database"), "{why}");
    let message = why["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("LLMHOST_DB_CA_FILE"), "{message}");
    assert_hidden(&format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    ));

    let setup = Setup::new(&sim)
        .database(&url)
        .env("LLMHOST_DB_CA_FILE", &ca_file);
    let migrated = setup.cli(&["migrate", "--json"]).await;
    assert_eq!(
        (&migrated["engine"], &migrated["from"], &migrated["to"]),
        (&json!("postgres"), &json!(0), &json!(SCHEMA_VERSION))
    );
    // The flag does what the variable does.
    let flagged = Setup::new(&sim)
        .database(&url)
        .cli(&["migrate", "--json", "--db-ca-file", &ca_file])
        .await;
    assert_eq!(flagged["from"], json!(SCHEMA_VERSION));

    let gateway = setup.start().await;
    let (request_id, _) = gateway.chat_ok("hello over TLS").await;

    // The usage row reached the database, over TLS.
    let mut database = Database::parse(&url);
    database.set_ca_file(Some(ca().to_path_buf()));
    let store = Store::open(database).await.unwrap();
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
            "no usage row of {request_id} within {USAGE_TIMEOUT:?}:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].status, "ok");
    // The gateway's own sessions are TLS (the server takes no other).
    let gateway_sessions = store
        .query_sql(
            "SELECT count(*) FILTER (WHERE ssl), count(*) FILTER (WHERE NOT ssl) \
             FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE datname = current_database() AND application_name = 'llmhost' \
             AND pid <> pg_backend_pid()",
            vec![],
        )
        .await
        .unwrap();
    let (tls, plain): (i64, i64) = (
        gateway_sessions[0].get(0).unwrap(),
        gateway_sessions[0].get(1).unwrap(),
    );
    assert!(tls >= 1, "no TLS session of the gateway");
    assert_eq!(plain, 0);
    assert_hidden(&gateway.log());
}

/// A CA certificate made once with openssl for this test (its key thrown
/// away): usable as a root, but it signed nothing the test servers show.
const OTHER_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBrjCCAVOgAwIBAgIUFptVuUoOryqimym0hFSsytQNs9wwCgYIKoZIzj0EAwIw
IzEhMB8GA1UEAwwYbGxtaG9zdCB0ZXN0LCBhbm90aGVyIENBMCAXDTI2MTIwMjE2
MjUwMFoYDzIxMjYxMTA4MTYyNTAwWjAjMSEwHwYDVQQDDBhsbG1ob3N0IHRlc3Qs
IGFub3RoZXIgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT5KvHdSFeNnIcS
l+Hbn5yJI+3hBhaRRcNMjEJlB6FFuL6bZfiTKP09QYoIvuZ+Ox1YbGoyeRYWLgD/
mRCplJdco2MwYTAdBgNVHQ4EFgQU1YIdrCvFxlRVjC8q3dnyIruMVY0wHwYDVR0j
BBgwFoAU1YIdrCvFxlRVjC8q3dnyIruMVY0wDwYDVR0TAQH/BAUwAwEB/zAOBgNV
HQ8BAf8EBAMCAQYwCgYIKoZIzj0EAwIDSQAwRgIhANIOW6SseOvz53qaiF0BMzZe
ab4qNcAoIIUbf/3bX9uoAiEAxakb0KNdIbTf4Osg7U1pVgVUAGaQ3AQ3wiqG8XeO
dC0=
-----END CERTIFICATE-----
";
