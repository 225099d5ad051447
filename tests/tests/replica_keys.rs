//! Encryption keys across processes that share one database: the database
//! names the active key, a rotation by one process is picked up by the
//! others at their next write, and nothing is written under a retired key
//! by any of them. On SQLite and on PostgreSQL.
//!
//! Each "replica" is a service over a store opened on its own from the
//! same database, with the keys its operator gave it: what separate
//! `llmhost serve` processes are.

mod common;

use llmhost::secrets::{Binding, EncryptionKey, Keyring};
use llmhost::service::{NewVirtualKey, VirtualKeys};
use llmhost::store::Database;
use llmhost::{ConfigService, NewConfig, Store};
use llmhost_simulator::{Simulator, Vendor};
use secrecy::SecretString;

async fn replica(db: &str, keyring: Keyring) -> (ConfigService, VirtualKeys) {
    let store = Store::open(Database::parse(db)).await.expect("store opens");
    let keys = VirtualKeys::new(store.clone(), Some(&keyring));
    let service = ConfigService::new(common::host().await, store, Some(keyring));
    (service, keys)
}

fn config(sim: &Simulator, key: &str) -> NewConfig {
    let mut config = NewConfig::new("openai", "gpt-4o-mini");
    config.api_key = Some(SecretString::from(key.to_owned()));
    config.fields.base_url = Some(sim.base_url(Vendor::OpenAi));
    config
}

async fn ciphertexts(store: &Store) -> Vec<String> {
    let agent = store.agent("bot").await.unwrap().unwrap();
    store
        .configs(agent.id, false)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|row| row.api_key_encrypted)
        .collect()
}

/// Runs `sql` on `db` beside llmhost, as a process that skips its checks
/// would; the database's error text if it refuses.
async fn raw_execute(db: &str, sql: String) -> Result<(), String> {
    let db = db.to_owned();
    tokio::task::spawn_blocking(move || {
        if db.starts_with("postgres://") {
            let mut client = postgres::Client::connect(&db, postgres::NoTls).unwrap();
            client.batch_execute(&sql).map_err(|err| format!("{err:?}"))
        } else {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch(&sql).map_err(|err| err.to_string())
        }
    })
    .await
    .unwrap()
}

fn under(ciphertext: &str) -> &str {
    ciphertext.split(':').nth(2).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("llmhost.db");
    a_rotation_by_one_replica_is_picked_up_by_the_others(&db.display().to_string()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres() {
    let db = llmhost_test_services::postgres().database();
    // Migrated once, as `llmhost migrate` does; replicas do not migrate it.
    Store::open_migrated(Database::parse(&db)).await.unwrap();
    a_rotation_by_one_replica_is_picked_up_by_the_others(&db).await;
}

/// Replicas A, B, C and a stray writer on database `db`.
async fn a_rotation_by_one_replica_is_picked_up_by_the_others(db: &str) {
    let sim = Simulator::start().await.unwrap();
    let old = EncryptionKey::generate();
    let new = EncryptionKey::generate();

    // Two replicas given the same key.
    let (a, _) = replica(db, Keyring::new(old.clone())).await;
    a.create_agent("bot", None).await.unwrap();
    a.create_config("bot", config(&sim, "sk-first-0123456789"))
        .await
        .unwrap();
    assert_eq!(
        a.store().active_key_id().await.unwrap().as_deref(),
        Some(old.id())
    );

    // The operator hands the new key to replica B ahead of the rotation
    // (as a previous key: B still names the old key as its own active).
    let (b, b_keys) = replica(db, Keyring::new(old.clone()).with_previous([new.clone()])).await;
    // Before the rotation B writes under the old key, as A does.
    b.create_config("bot", config(&sim, "sk-second-0123456789"))
        .await
        .unwrap();
    assert!(
        ciphertexts(a.store())
            .await
            .iter()
            .all(|c| under(c) == old.id())
    );

    // A rotates to the new key: every row is re-encrypted and the database
    // names the new key.
    assert_eq!(a.rotate_keys(new.clone(), |_| Ok(())).await.unwrap(), 2);
    assert_eq!(
        a.store().active_key_id().await.unwrap().as_deref(),
        Some(new.id())
    );

    // B picks it up at its next write, without a restart: its config and
    // its virtual key are under the new key, and it reads every row.
    let third = b
        .create_config("bot", config(&sim, "sk-third-0123456789"))
        .await
        .unwrap();
    assert!(
        ciphertexts(a.store())
            .await
            .iter()
            .all(|c| under(c) == new.id()),
        "{:?}",
        ciphertexts(a.store()).await
    );
    for config in b.configs("bot").await.unwrap() {
        b.validate_config(config.id).await.unwrap().health.unwrap();
    }
    let (made, _) = b_keys.create(NewVirtualKey::new("ci")).await.unwrap();
    let rows = b.store().virtual_keys().await.unwrap();
    assert_eq!(
        rows.iter()
            .find(|r| r.name == made.name)
            .unwrap()
            .hash_key_id,
        new.id()
    );

    // A replica that was never given the new key writes nothing under
    // the retired one, and says which key it lacks.
    let (c, c_keys) = replica(db, Keyring::new(old.clone())).await;
    let err = c
        .create_config("bot", config(&sim, "sk-fourth-0123456789"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "unknown_key", "{err}");
    assert!(err.to_string().contains(new.id()), "{err}");
    let err = c_keys
        .create(NewVirtualKey::new("stale"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "unknown_key", "{err}");
    assert_eq!(ciphertexts(a.store()).await.len(), 3);
    assert_eq!(c.store().virtual_keys().await.unwrap().len(), 1);

    // Even a writer that read the active key before the rotation (a
    // ciphertext made under the old key, written afterwards) is refused
    // by the database itself, with a typed error, and nothing changes.
    let stale = Keyring::new(old.clone())
        .encrypt(
            &SecretString::from("sk-stale-0123456789".to_owned()),
            &Binding {
                agent_id: third.agent_id,
                provider: "openai",
                base_url: None,
            },
        )
        .unwrap();
    let before = ciphertexts(a.store()).await;
    let err = c
        .store()
        .rewrite_api_keys(
            move |_, _| Ok(stale.clone()),
            new.id().to_owned(),
            |_| Ok(()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "retired_key", "{err}");
    assert_eq!(ciphertexts(a.store()).await, before);
    let refused = raw_execute(
        db,
        format!(
            "UPDATE agent_llm_configs SET api_key_encrypted = 'llmhost:v2:{}:AAAA' WHERE id = {}",
            old.id(),
            third.id
        ),
    )
    .await;
    assert!(
        refused.unwrap_err().contains("retired encryption key"),
        "the database took a value under the retired key"
    );
    assert_eq!(ciphertexts(a.store()).await, before);

    // A rotation to the key already active is refused.
    let err = a.rotate_keys(new.clone(), |_| Ok(())).await.unwrap_err();
    assert_eq!(err.kind(), "key_reused", "{err}");
}
