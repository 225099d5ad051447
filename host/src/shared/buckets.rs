//! Token buckets in Redis: one hash per bucket (`level`, `at` in
//! milliseconds of Redis's own clock), taken from and refilled by one
//! script, so every replica draws from the same bucket and none can take
//! what another has.

use super::Redis;
use crate::error::Error;
use std::sync::LazyLock;
use std::time::Duration;

/// One bucket a call draws from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BucketSpec {
    /// The bucket's Redis key.
    pub key: String,
    /// Most units it holds (the burst).
    pub capacity: f64,
    /// Units it regains per second.
    pub per_second: f64,
    /// Units this call takes (already capped at the capacity).
    pub amount: f64,
}

/// Takes `amount` from every bucket, all or none. The buckets are brought
/// to Redis's now; if the longest wait until all cover their amount is at
/// most `max_wait`, the amounts are taken (a bucket may go below zero:
/// reserved by a caller that waits) and the wait is returned, for the
/// caller to sleep; otherwise nothing is taken and the wait is returned as
/// `Err`.
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max_wait = tonumber(ARGV[1])
local levels = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[3 * i - 1])
  local rate = tonumber(ARGV[3 * i]) / 1000
  local amount = tonumber(ARGV[3 * i + 1])
  local state = redis.call('HMGET', key, 'level', 'at')
  local level = tonumber(state[1])
  local at = tonumber(state[2])
  if level == nil or at == nil then
    level = capacity
    at = now
  end
  if level > capacity then level = capacity end
  level = math.min(capacity, level + math.max(0, now - at) * rate)
  levels[i] = level
  local short = amount - level
  if short > 0 then
    local w = math.ceil(short / rate)
    if w > wait then wait = w end
  end
end
if wait > max_wait then
  return {0, wait}
end
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[3 * i - 1])
  local rate = tonumber(ARGV[3 * i]) / 1000
  local amount = tonumber(ARGV[3 * i + 1])
  redis.call('HSET', key, 'level', tostring(levels[i] - amount), 'at', now)
  redis.call('PEXPIRE', key, math.ceil(capacity / rate) + 60000)
end
return {1, wait}
",
    )
});

/// Charges `delta` more (negative: gives back) to one bucket, never above
/// its capacity.
static ADJUST: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2]) / 1000
local delta = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = tonumber(state[1])
local at = tonumber(state[2])
if level == nil or at == nil then
  level = capacity
  at = now
end
level = math.min(capacity, level + math.max(0, now - at) * rate)
level = math.min(capacity, level - delta)
redis.call('HSET', KEYS[1], 'level', tostring(level), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate) + 60000)
return 1
",
    )
});

/// See [`TAKE`]: `Ok(Ok(wait))` taken (sleep `wait` first), `Ok(Err(wait))`
/// not taken.
pub(crate) async fn take(
    redis: &Redis,
    buckets: &[BucketSpec],
    max_wait: Duration,
) -> Result<Result<Duration, Duration>, Error> {
    if buckets.is_empty() {
        return Ok(Ok(Duration::ZERO));
    }
    let mut invocation = TAKE.prepare_invoke();
    invocation.arg(u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX));
    for bucket in buckets {
        invocation
            .key(&bucket.key)
            .arg(bucket.capacity)
            .arg(bucket.per_second)
            .arg(bucket.amount);
    }
    let (taken, wait): (i64, i64) = redis
        .run("rate_limit", |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await?;
    let wait = Duration::from_millis(u64::try_from(wait).unwrap_or(0));
    Ok(if taken == 1 { Ok(wait) } else { Err(wait) })
}

/// See [`ADJUST`].
pub(crate) async fn adjust(redis: &Redis, bucket: &BucketSpec, delta: f64) -> Result<(), Error> {
    let mut invocation = ADJUST.prepare_invoke();
    invocation
        .key(&bucket.key)
        .arg(bucket.capacity)
        .arg(bucket.per_second)
        .arg(delta);
    redis
        .run("rate_limit", |mut conn| async move {
            invocation.invoke_async::<i64>(&mut conn).await
        })
        .await
        .map(drop)
}
