//! Encryption keys across processes that share one database: the database
//! names the active key, a rotation by one process is picked up by the
//! others at their next write, and nothing is written under a retired key
//! by any of them.
//!
//! Each "replica" is a service over a store opened on its own from the
//! same database, with the keys its operator gave it: what separate
//! `llmhost serve` processes are.

mod common;

use llmhost::secrets::{Binding, EncryptionKey, Keyring};
use llmhost::service::{NewVirtualKey, VirtualKeys};
use llmhost::{ConfigService, NewConfig, Store};
use llmhost_simulator::{Simulator, Vendor};
use secrecy::SecretString;
use std::path::{Path, PathBuf};

async fn replica(db: &Path, keyring: Keyring) -> (ConfigService, VirtualKeys) {
    let store = Store::open(db).await.expect("store opens");
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

fn ciphertexts(db: &PathBuf) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn
        .prepare("SELECT api_key_encrypted FROM agent_llm_configs ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn under(ciphertext: &str) -> &str {
    ciphertext.split(':').nth(2).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_by_one_replica_is_picked_up_by_the_others_and_retired_keys_write_nothing() {
    let sim = Simulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("llmhost.db");
    let old = EncryptionKey::generate();
    let new = EncryptionKey::generate();

    // Two replicas given the same key.
    let (a, _) = replica(&db, Keyring::new(old.clone())).await;
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
    let (b, b_keys) = replica(&db, Keyring::new(old.clone()).with_previous([new.clone()])).await;
    // Before the rotation B writes under the old key, as A does.
    b.create_config("bot", config(&sim, "sk-second-0123456789"))
        .await
        .unwrap();
    assert!(ciphertexts(&db).iter().all(|c| under(c) == old.id()));

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
        ciphertexts(&db).iter().all(|c| under(c) == new.id()),
        "{:?}",
        ciphertexts(&db)
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
    let (c, c_keys) = replica(&db, Keyring::new(old.clone())).await;
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
    assert_eq!(ciphertexts(&db).len(), 3);
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
    let before = ciphertexts(&db);
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
    assert_eq!(ciphertexts(&db), before);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let refused = conn.execute(
        "UPDATE agent_llm_configs SET api_key_encrypted = ?1 WHERE id = ?2",
        rusqlite::params![format!("llmhost:v2:{}:AAAA", old.id()), third.id],
    );
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("retired encryption key"),
        "the database took a value under the retired key"
    );

    // A rotation to the key already active is refused.
    let err = a.rotate_keys(new.clone(), |_| Ok(())).await.unwrap_err();
    assert_eq!(err.kind(), "key_reused", "{err}");
}
