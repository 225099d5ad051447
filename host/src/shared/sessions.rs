//! Console sessions in Redis, so that a session signed in through one
//! replica is honoured by every replica behind the load balancer. A
//! session is one string key (the blake3 of its id, never the id) holding
//! what the in-process table holds, with the session's lifetime as the
//! key's; signing out deletes it.

use super::Redis;
use crate::error::Error;
use std::time::Duration;

fn key_of(id_hash: &[u8; 32]) -> String {
    format!("llmhost:session:{}", hex::encode(id_hash))
}

/// Stores `value` for `ttl`.
pub(crate) async fn put(
    redis: &Redis,
    id_hash: &[u8; 32],
    value: String,
    ttl: Duration,
) -> Result<(), Error> {
    let key = key_of(id_hash);
    let secs = ttl.as_secs().max(1);
    redis
        .run("session", |mut conn| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("EX")
                .arg(secs)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
}

/// The stored value, while it lives.
pub(crate) async fn get(redis: &Redis, id_hash: &[u8; 32]) -> Result<Option<String>, Error> {
    let key = key_of(id_hash);
    redis
        .run("session", |mut conn| async move {
            redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<String>>(&mut conn)
                .await
        })
        .await
}

/// Ends the session.
pub(crate) async fn delete(redis: &Redis, id_hash: &[u8; 32]) -> Result<(), Error> {
    let key = key_of(id_hash);
    redis
        .run("session", |mut conn| async move {
            redis::cmd("DEL")
                .arg(&key)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
}
