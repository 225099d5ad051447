//! Per-virtual-key rate limits (`--rpm`, `--tpm`): a token bucket per key
//! and unit that holds a minute's worth and refills continuously, so a key
//! may burst up to its per-minute figure and then goes at its average
//! rate. A request that does not fit is refused at once with the time
//! until it would (the SDKs wait `retry-after` and retry); it never queues
//! in the gateway.
//!
//! With shared state ([`crate::shared`]) the buckets are in Redis, one per
//! key and unit for every replica; the in-process buckets serve only when
//! Redis is unavailable and `on_unavailable = "open"`.

use crate::error::Error;
use crate::shared::{BucketSpec, OnUnavailable, Redis};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
struct Bucket {
    per_minute: f64,
    level: f64,
    updated: Instant,
}

impl Bucket {
    fn new(per_minute: u32, now: Instant) -> Self {
        let per_minute = f64::from(per_minute);
        Self {
            per_minute,
            level: per_minute,
            updated: now,
        }
    }

    /// Brings the level to `now`, following a changed limit.
    fn refill(&mut self, per_minute: u32, now: Instant) {
        let per_minute = f64::from(per_minute);
        if per_minute != self.per_minute {
            self.level = self.level.min(per_minute);
            self.per_minute = per_minute;
        }
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + elapsed * self.per_minute / 60.0).min(self.per_minute);
        self.updated = now;
    }

    /// How long until `amount` fits (a request larger than the whole
    /// bucket fits a full one).
    fn wait_for(&self, amount: f64) -> Duration {
        let amount = amount.min(self.per_minute);
        let short = amount - self.level;
        if short <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(short * 60.0 / self.per_minute)
        }
    }
}

#[derive(Debug, Default)]
struct KeyBuckets {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

/// The buckets of every virtual key with limits.
#[derive(Debug, Default)]
pub(crate) struct KeyLimiter {
    keys: Mutex<HashMap<i64, KeyBuckets>>,
    shared: Option<Arc<Redis>>,
}

/// What a request took from its key's token bucket, charged again with
/// the real count when it ends.
#[derive(Debug)]
pub(crate) struct Taken {
    key: i64,
    tokens: u64,
    /// The Redis bucket the tokens came from, when shared.
    shared: Option<BucketSpec>,
}

/// The Redis bucket of key `id`'s `unit` (`rpm`, `tpm`).
fn shared_bucket(id: i64, unit: &str, per_minute: u32, amount: f64) -> BucketSpec {
    let per_minute = f64::from(per_minute);
    BucketSpec {
        key: format!("llmhost:rate:virtual_key:{id}:{unit}"),
        capacity: per_minute,
        per_second: per_minute / 60.0,
        amount: amount.min(per_minute),
    }
}

impl KeyLimiter {
    /// Buckets in Redis when `shared` is given, else in this process.
    pub(crate) fn new(shared: Option<Arc<Redis>>) -> Self {
        Self {
            keys: Mutex::default(),
            shared,
        }
    }

    /// [`KeyLimiter::take`] from the buckets shared by every replica when
    /// there are; an [`Error::SharedUnavailable`] when Redis cannot be
    /// reached and the gateway fails closed.
    pub(crate) async fn take_shared(
        &self,
        id: i64,
        rpm: Option<u32>,
        tpm: Option<u32>,
        tokens: u64,
    ) -> Result<Result<Taken, Duration>, Error> {
        let Some(redis) = &self.shared else {
            return Ok(self.take(id, rpm, tpm, tokens));
        };
        let requests = rpm.map(|n| shared_bucket(id, "rpm", n, 1.0));
        let token_bucket = tpm.map(|n| shared_bucket(id, "tpm", n, tokens as f64));
        let buckets: Vec<BucketSpec> = requests.into_iter().chain(token_bucket.clone()).collect();
        match crate::shared::take_buckets(redis, &buckets, Duration::ZERO).await {
            Ok(Ok(_)) => Ok(Ok(Taken {
                key: id,
                tokens: token_bucket.as_ref().map_or(0, |b| b.amount as u64),
                shared: token_bucket,
            })),
            Ok(Err(wait)) => Ok(Err(wait)),
            Err(Error::SharedUnavailable { .. })
                if redis.on_unavailable() == OnUnavailable::Open =>
            {
                Ok(self.take(id, rpm, tpm, tokens))
            }
            Err(err) => Err(err),
        }
    }

    /// Takes one request and `tokens` (an estimate) from key `id`'s
    /// buckets, or says how long until they would be there.
    pub(crate) fn take(
        &self,
        id: i64,
        rpm: Option<u32>,
        tpm: Option<u32>,
        tokens: u64,
    ) -> Result<Taken, Duration> {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = keys.entry(id).or_default();
        sync(&mut buckets.requests, rpm, now);
        sync(&mut buckets.tokens, tpm, now);
        let amount = tokens as f64;
        let wait = [
            buckets.requests.as_ref().map(|b| b.wait_for(1.0)),
            buckets.tokens.as_ref().map(|b| b.wait_for(amount)),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(Duration::ZERO);
        if !wait.is_zero() {
            return Err(wait);
        }
        if let Some(bucket) = buckets.requests.as_mut() {
            bucket.level -= 1.0;
        }
        let mut taken = 0;
        if let Some(bucket) = buckets.tokens.as_mut() {
            let amount = amount.min(bucket.per_minute);
            bucket.level -= amount;
            taken = amount as u64;
        }
        Ok(Taken {
            key: id,
            tokens: taken,
            shared: None,
        })
    }

    /// Charges the difference between the estimate taken and `used`.
    pub(crate) fn settle(&self, taken: Taken, used: u64) {
        if let (Some(redis), Some(bucket)) = (&self.shared, &taken.shared) {
            let delta = used as f64 - taken.tokens as f64;
            if delta != 0.0
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                let (redis, bucket) = (redis.clone(), bucket.clone());
                runtime.spawn(async move {
                    // Unavailable: the bucket refills by itself.
                    let _ = crate::shared::adjust_bucket(&redis, &bucket, delta).await;
                });
            }
            return;
        }
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = keys.get_mut(&taken.key).and_then(|b| b.tokens.as_mut()) {
            bucket.level =
                (bucket.level - (used as f64 - taken.tokens as f64)).min(bucket.per_minute);
        }
    }
}

fn sync(bucket: &mut Option<Bucket>, limit: Option<u32>, now: Instant) {
    match (bucket.as_mut(), limit) {
        (_, None) => *bucket = None,
        (None, Some(limit)) => *bucket = Some(Bucket::new(limit, now)),
        (Some(existing), Some(limit)) => existing.refill(limit, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_bursts_its_minute_then_goes_at_its_rate() {
        let limiter = KeyLimiter::default();
        for _ in 0..3 {
            limiter.take(1, Some(3), None, 0).expect("within the burst");
        }
        let wait = limiter.take(1, Some(3), None, 0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
        // Another key has buckets of its own.
        limiter.take(2, Some(3), None, 0).expect("another key");
        tokio::time::advance(Duration::from_secs(20)).await;
        limiter.take(1, Some(3), None, 0).expect("refilled");
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_charged_with_what_was_used() {
        let limiter = KeyLimiter::default();
        let taken = limiter.take(1, None, Some(1000), 800).unwrap();
        assert!(limiter.take(1, None, Some(1000), 800).is_err());
        // It used only 100: 900 are back.
        limiter.settle(taken, 100);
        let taken = limiter.take(1, None, Some(1000), 800).unwrap();
        limiter.settle(taken, 800);
        let wait = limiter.take(1, None, Some(1000), 800).unwrap_err();
        // 700 short at 1000 a minute.
        assert_eq!(wait.as_secs(), 42);
    }
}
