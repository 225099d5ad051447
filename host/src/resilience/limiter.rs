//! Client-side rate limits: token buckets per provider, model and key, for
//! requests and tokens per minute. A call reserves its share at once and
//! waits until the bucket covers it, so concurrent callers are served in
//! the order they asked; a wait that would pass the call's deadline is not
//! taken and the call fails with when to come back.
//!
//! Time is tokio's, so tests can run it on a paused clock.
//!
//! With shared state ([`crate::shared`]) the buckets are in Redis, one per
//! provider, model and key for every replica (the same reserve-and-wait
//! rule, run by a script on Redis's clock); the in-process buckets serve
//! only when Redis is unavailable and `on_unavailable = "open"`.

use crate::error::Error;
use crate::shared::{BucketSpec, OnUnavailable, Redis};
use llmhost_registry::RateLimits;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Which bucket a call draws from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketKey {
    pub provider: String,
    pub model: String,
    /// A fingerprint of the API key (never the key), or empty.
    pub key_id: String,
}

#[derive(Debug)]
struct Bucket {
    /// Most units that can accumulate (the burst).
    capacity: f64,
    per_second: f64,
    /// May go negative: reserved by callers still waiting.
    level: f64,
    updated: Instant,
}

impl Bucket {
    fn new(per_minute: u64, now: Instant) -> Self {
        let per_second = per_minute as f64 / 60.0;
        let capacity = per_second.max(1.0);
        Self {
            capacity,
            per_second,
            level: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
    }

    /// How long until `amount` more can be taken.
    fn wait_for(&self, amount: f64) -> Duration {
        let short = amount - self.level;
        if short <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(short / self.per_second)
        }
    }
}

#[derive(Debug, Default)]
struct Buckets {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

/// A call's place in the buckets, to be settled with the tokens it really
/// used.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    key: BucketKey,
    tokens: u64,
    /// The Redis bucket the tokens came from, when shared.
    shared: Option<BucketSpec>,
}

/// Why [`RateLimiter::acquire`] reserved nothing.
#[derive(Debug)]
pub enum Refusal {
    /// The limits would delay the call past its deadline by this much.
    Wait(Duration),
    /// The shared buckets cannot be reached and the limiter fails closed.
    Unavailable(Error),
}

/// The limits of every provider, model and key seen.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<BucketKey, Buckets>>,
    shared: Option<Arc<Redis>>,
    /// With shared buckets: until when each bucket was last seen spent
    /// (a call had to wait or was refused), for [`RateLimiter::is_spent`].
    spent_until: Mutex<HashMap<BucketKey, Instant>>,
}

/// The Redis bucket of `key`'s `unit` (`rpm`, `tpm`).
fn shared_bucket(key: &BucketKey, unit: &str, per_minute: u64, amount: f64) -> BucketSpec {
    let per_second = per_minute as f64 / 60.0;
    let capacity = per_second.max(1.0);
    BucketSpec {
        key: format!(
            "llmhost:rate:provider:{}|{}|{}:{unit}",
            key.provider, key.model, key.key_id
        ),
        capacity,
        per_second,
        amount: amount.min(capacity),
    }
}

impl RateLimiter {
    /// Buckets in Redis when `shared` is given, else in this process.
    pub fn new(shared: Option<Arc<Redis>>) -> Self {
        Self {
            buckets: Mutex::default(),
            shared,
            spent_until: Mutex::default(),
        }
    }

    /// The shared state the buckets are kept in, if any.
    pub fn shared(&self) -> Option<Arc<Redis>> {
        self.shared.clone()
    }

    /// [`RateLimiter::acquire`] from the buckets shared by every replica
    /// when there are.
    pub async fn acquire_shared(
        &self,
        key: &BucketKey,
        limits: RateLimits,
        tokens: u64,
        deadline: Instant,
    ) -> Result<Reservation, Refusal> {
        let Some(redis) = &self.shared else {
            return self
                .acquire(key, limits, tokens, deadline)
                .await
                .map_err(Refusal::Wait);
        };
        let requests = limits
            .requests_per_minute
            .filter(|n| *n > 0)
            .map(|n| shared_bucket(key, "rpm", n, 1.0));
        let token_bucket = limits
            .tokens_per_minute
            .filter(|n| *n > 0)
            .map(|n| shared_bucket(key, "tpm", n, tokens as f64));
        let buckets: Vec<BucketSpec> = requests.into_iter().chain(token_bucket.clone()).collect();
        let max_wait = deadline.saturating_duration_since(Instant::now());
        let outcome = crate::shared::take_buckets(redis, &buckets, max_wait).await;
        if let Ok(Ok(wait) | Err(wait)) = &outcome
            && !wait.is_zero()
        {
            self.spent_until
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), Instant::now() + *wait);
        }
        match outcome {
            Ok(Ok(wait)) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok(Reservation {
                    key: key.clone(),
                    tokens: token_bucket.as_ref().map_or(0, |b| b.amount as u64),
                    shared: token_bucket,
                })
            }
            Ok(Err(wait)) => Err(Refusal::Wait(wait)),
            Err(Error::SharedUnavailable { .. })
                if redis.on_unavailable() == OnUnavailable::Open =>
            {
                self.acquire(key, limits, tokens, deadline)
                    .await
                    .map_err(Refusal::Wait)
            }
            Err(err) => Err(Refusal::Unavailable(err)),
        }
    }

    /// Reserves one request and `tokens` tokens under `limits`, waiting
    /// until they are available. If that would be after `deadline`,
    /// nothing is reserved and the error says how long until they would
    /// be.
    pub async fn acquire(
        &self,
        key: &BucketKey,
        limits: RateLimits,
        tokens: u64,
        deadline: Instant,
    ) -> Result<Reservation, Duration> {
        let wait = {
            let now = Instant::now();
            let mut all = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            let buckets = all.entry(key.clone()).or_default();
            sync(&mut buckets.requests, limits.requests_per_minute, now);
            sync(&mut buckets.tokens, limits.tokens_per_minute, now);
            // A request larger than the whole burst waits for a full bucket.
            let token_amount = buckets
                .tokens
                .as_ref()
                .map(|b| (tokens as f64).min(b.capacity))
                .unwrap_or(0.0);
            let wait = [
                buckets.requests.as_ref().map(|b| b.wait_for(1.0)),
                buckets.tokens.as_ref().map(|b| b.wait_for(token_amount)),
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(Duration::ZERO);
            if now + wait > deadline {
                return Err(wait);
            }
            if let Some(b) = buckets.requests.as_mut() {
                b.level -= 1.0;
            }
            if let Some(b) = buckets.tokens.as_mut() {
                b.level -= token_amount;
            }
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(Reservation {
            key: key.clone(),
            tokens,
            shared: None,
        })
    }

    /// Whether a call under `limits` would have to wait now: the bucket's
    /// requests or tokens are spent. Reserves nothing; a bucket not used
    /// yet is full. With shared buckets, whether this process last saw the
    /// bucket spent until later than now (asking Redis would cost a round
    /// trip per candidate route).
    pub fn is_spent(&self, key: &BucketKey, limits: RateLimits) -> bool {
        if limits.requests_per_minute.is_none() && limits.tokens_per_minute.is_none() {
            return false;
        }
        if self.shared.is_some() {
            let spent = self.spent_until.lock().unwrap_or_else(|e| e.into_inner());
            if spent.get(key).is_some_and(|until| *until > Instant::now()) {
                return true;
            }
        }
        let now = Instant::now();
        let mut all = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(buckets) = all.get_mut(key) else {
            return false;
        };
        sync(&mut buckets.requests, limits.requests_per_minute, now);
        sync(&mut buckets.tokens, limits.tokens_per_minute, now);
        [&buckets.requests, &buckets.tokens]
            .into_iter()
            .flatten()
            .any(|b| !b.wait_for(1.0).is_zero())
    }

    /// Charges the difference between the tokens reserved and those used.
    pub fn settle(&self, reservation: &Reservation, used_tokens: u64) {
        if let (Some(redis), Some(bucket)) = (&self.shared, &reservation.shared) {
            let delta = used_tokens as f64 - reservation.tokens as f64;
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
        let mut all = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = all
            .get_mut(&reservation.key)
            .and_then(|b| b.tokens.as_mut())
        {
            bucket.refill(Instant::now());
            bucket.level -= used_tokens as f64 - reservation.tokens as f64;
            bucket.level = bucket.level.min(bucket.capacity);
        }
    }
}

/// Creates, updates or drops a bucket to match the configured limit.
fn sync(bucket: &mut Option<Bucket>, per_minute: Option<u64>, now: Instant) {
    match (per_minute.filter(|n| *n > 0), bucket.as_mut()) {
        (None, _) => *bucket = None,
        (Some(n), Some(b)) if (b.per_second - n as f64 / 60.0).abs() < f64::EPSILON => {
            b.refill(now)
        }
        (Some(n), _) => *bucket = Some(Bucket::new(n, now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key() -> BucketKey {
        BucketKey {
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            key_id: "k".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hundred_calls_at_ten_per_second_spread_over_ten_seconds() {
        let limiter = Arc::new(RateLimiter::default());
        let limits = RateLimits {
            requests_per_minute: Some(600),
            tokens_per_minute: None,
        };
        let start = Instant::now();
        let deadline = start + Duration::from_secs(60);
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                limiter.acquire(&key(), limits, 0, deadline).await.unwrap();
                Instant::now() - start
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        times.sort();
        // A burst of one second's worth, then ten a second.
        assert_eq!(times.iter().filter(|t| t.is_zero()).count(), 10);
        let last = times.last().unwrap().as_secs_f64();
        assert!((8.9..=9.1).contains(&last), "last call at {last}s");
        for (i, t) in times.iter().enumerate().skip(10) {
            let expected = (i as f64 - 9.0) / 10.0;
            assert!(
                (t.as_secs_f64() - expected).abs() < 0.01,
                "call {i} at {t:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_bucket_says_so_without_reserving() {
        let limiter = RateLimiter::default();
        let limits = RateLimits {
            requests_per_minute: Some(60),
            tokens_per_minute: None,
        };
        assert!(
            !limiter.is_spent(&key(), limits),
            "an unused bucket is full"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        limiter.acquire(&key(), limits, 0, deadline).await.unwrap();
        assert!(limiter.is_spent(&key(), limits));
        assert!(limiter.is_spent(&key(), limits), "asking reserves nothing");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!limiter.is_spent(&key(), limits));
        assert!(!limiter.is_spent(&key(), RateLimits::default()), "no limit");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_deadline_fails_with_when_to_come_back() {
        let limiter = RateLimiter::default();
        let limits = RateLimits {
            requests_per_minute: Some(60),
            tokens_per_minute: None,
        };
        let deadline = Instant::now() + Duration::from_millis(500);
        limiter.acquire(&key(), limits, 0, deadline).await.unwrap();
        let wait = limiter
            .acquire(&key(), limits, 0, deadline)
            .await
            .unwrap_err();
        assert!(wait > Duration::from_millis(900), "{wait:?}");
        // Nothing was reserved by the refusal: a second later it passes.
        tokio::time::advance(Duration::from_secs(1)).await;
        let later = Instant::now() + Duration::from_millis(10);
        limiter.acquire(&key(), limits, 0, later).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_per_minute_are_settled_with_what_was_used() {
        let limiter = RateLimiter::default();
        let limits = RateLimits {
            requests_per_minute: None,
            tokens_per_minute: Some(6000), // 100 a second, burst 100
        };
        let far = Instant::now() + Duration::from_secs(60);
        let r = limiter.acquire(&key(), limits, 50, far).await.unwrap();
        limiter.settle(&r, 150); // used 100 more than reserved: level 50 - 100
        let start = Instant::now();
        limiter.acquire(&key(), limits, 50, far).await.unwrap();
        let waited = (Instant::now() - start).as_secs_f64();
        assert!((0.99..=1.01).contains(&waited), "waited {waited}s");
    }
}
