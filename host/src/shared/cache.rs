//! The response cache in Redis: one key per answer (its cache key in hex),
//! the answer as JSON, the policy's TTL as the key's lifetime.

use super::Redis;
use crate::error::Error;
use std::sync::Arc;
use std::time::Duration;

fn key_of(key: &[u8; 32]) -> String {
    format!("llmhost:cache:{}", hex::encode(key))
}

/// The stored answer under `key`, if any.
pub(crate) async fn get(redis: &Redis, key: &[u8; 32]) -> Result<Option<Vec<u8>>, Error> {
    let name = key_of(key);
    redis
        .run("response_cache", |mut conn| async move {
            redis::cmd("GET")
                .arg(&name)
                .query_async::<Option<Vec<u8>>>(&mut conn)
                .await
        })
        .await
}

/// Stores `answer` under `key` for `ttl`, off the caller's path.
pub(crate) fn put(redis: Arc<Redis>, key: [u8; 32], answer: Vec<u8>, ttl: Duration) {
    let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let name = key_of(&key);
    runtime.spawn(async move {
        let _ = redis
            .run("response_cache", |mut conn| async move {
                redis::cmd("SET")
                    .arg(&name)
                    .arg(answer)
                    .arg("PX")
                    .arg(millis)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
    });
}
