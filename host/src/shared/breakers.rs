//! Circuit-breaker state in Redis: a circuit that opens on one replica is
//! open on all. Opening is one `SET key PX cooldown` (the key's lifetime is
//! the open time, so it ends by itself), a probe that succeeds closes it
//! everywhere with one `DEL`. Each replica reads the open circuits (a
//! `SCAN` of their keys) every [`REFRESH`] in the background, so admission
//! stays a local,
//! synchronous check; failures in a row are counted per replica. While
//! Redis is unavailable each replica's breakers go on alone (breakers only
//! save calls to an unwell vendor; nothing is overspent without them).

use super::Redis;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How often the open circuits are read.
pub(crate) const REFRESH: Duration = Duration::from_millis(250);

type Key = (String, String);

const PREFIX: &str = "llmhost:breaker:";

fn redis_key(key: &Key) -> String {
    format!("{PREFIX}{}|{}", key.0, key.1)
}

/// The circuit of a Redis key (provider ids have no `|`).
fn circuit_of(name: &str) -> Option<Key> {
    let (provider, base_url) = name.strip_prefix(PREFIX)?.split_once('|')?;
    Some((provider.to_owned(), base_url.to_owned()))
}

/// The circuits open on some replica, as last read from Redis.
pub(crate) struct SharedCircuits {
    redis: Arc<Redis>,
    open: Mutex<HashMap<Key, Instant>>,
    started: std::sync::Once,
}

impl std::fmt::Debug for SharedCircuits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedCircuits")
    }
}

impl SharedCircuits {
    pub(crate) fn new(redis: Arc<Redis>) -> Arc<Self> {
        Arc::new(Self {
            redis,
            open: Mutex::default(),
            started: std::sync::Once::new(),
        })
    }

    /// Until when another replica has `key` open, if it has; starts the
    /// background reads on first use.
    pub(crate) fn open_until(self: &Arc<Self>, key: &Key) -> Option<Instant> {
        self.start();
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(key)
            .copied()
            .filter(|until| *until > Instant::now())
    }

    /// Opens `key` on every replica for `cooldown`.
    pub(crate) fn opened(self: &Arc<Self>, key: &Key, cooldown: Duration) {
        let (redis, name) = (self.redis.clone(), redis_key(key));
        let millis = u64::try_from(cooldown.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        spawn(async move {
            let _ = redis
                .run("breaker", |mut conn| async move {
                    redis::cmd("SET")
                        .arg(&name)
                        .arg(1)
                        .arg("PX")
                        .arg(millis)
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await;
        });
    }

    /// Closes `key` on every replica (a probe succeeded).
    pub(crate) fn closed(self: &Arc<Self>, key: &Key) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let (redis, name) = (self.redis.clone(), redis_key(key));
        spawn(async move {
            let _ = redis
                .run("breaker", |mut conn| async move {
                    redis::cmd("DEL")
                        .arg(&name)
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await;
        });
    }

    fn start(self: &Arc<Self>) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.started.call_once(|| {
            let weak = Arc::downgrade(self);
            spawn(refresh(weak));
        });
    }
}

fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}

/// Reads the remaining open time of every open circuit, until the
/// breakers are dropped.
async fn refresh(circuits: Weak<SharedCircuits>) {
    loop {
        tokio::time::sleep(REFRESH).await;
        let Some(circuits) = circuits.upgrade() else {
            return;
        };
        let read = circuits
            .redis
            .run("breaker", |mut conn| async move {
                let mut names = Vec::new();
                let mut cursor = 0u64;
                loop {
                    let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{PREFIX}*"))
                        .arg("COUNT")
                        .arg(200)
                        .query_async(&mut conn)
                        .await?;
                    names.extend(batch);
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
                let mut pipe = redis::pipe();
                for name in &names {
                    pipe.cmd("PTTL").arg(name);
                }
                let ttls: Vec<i64> = if names.is_empty() {
                    Vec::new()
                } else {
                    pipe.query_async(&mut conn).await?
                };
                Ok(names.into_iter().zip(ttls).collect::<Vec<_>>())
            })
            .await;
        // Unavailable: what was read last ends by itself.
        let Ok(read) = read else { continue };
        let now = Instant::now();
        let open: HashMap<Key, Instant> = read
            .into_iter()
            .filter_map(|(name, ttl)| {
                let ms = u64::try_from(ttl).ok().filter(|ms| *ms > 0)?;
                Some((circuit_of(&name)?, now + Duration::from_millis(ms)))
            })
            .collect();
        *circuits.open.lock().unwrap_or_else(|e| e.into_inner()) = open;
    }
}
