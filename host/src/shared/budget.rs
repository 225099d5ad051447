//! Budgets in Redis: per budget window, one hash of what is spent and
//! what is reserved by calls in flight (integer micro-dollars and tokens),
//! and a sorted set of the reservations themselves by when they lapse. One
//! script checks and reserves under every budget of a call at once; one
//! settles. A reservation left by a replica that died lapses after
//! [`RESERVATION_LIFETIME`] and is released by the next reservation.
//!
//! Amounts are rounded so that rounding can never let a budget be
//! overspent: budgets down to the micro-dollar, reservations and spend up.
//!
//! A window whose hash is missing (first use, or Redis restarted without
//! its data) is seeded from the usage rows in the database, the durable
//! record, with a set-if-absent: when replicas seed at once, the first
//! wins and the others' seeds change nothing.

use super::Redis;
use crate::error::Error;
use crate::service::ledger::{Exceeded, Limit, Scope, Worst, spend_in};
use crate::store::{BudgetPeriod, Store};
use llmhost_registry::rust_decimal::Decimal;
use llmhost_registry::rust_decimal::prelude::ToPrimitive;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

/// How long a reservation holds before it lapses (a call that never
/// settles: its replica died).
pub(crate) const RESERVATION_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// How long the hash of a dated window is kept (past the longest window).
const WINDOW_TTL_SECS: u64 = 40 * 86_400;
/// How long a settlement is retried while Redis is unavailable.
const SETTLE_RETRIES: u32 = 30;

static RESERVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local worst_usd = ARGV[2]
local worst_tokens = ARGV[3]
local lifetime = tonumber(ARGV[4])
local n = #KEYS / 2
for i = 1, n do
  if redis.call('HEXISTS', KEYS[2 * i - 1], 'seeded') == 0 then
    return {'unseeded', tostring(i)}
  end
end
for i = 1, n do
  local hash = KEYS[2 * i - 1]
  local held = KEYS[2 * i]
  local lapsed = redis.call('ZRANGEBYSCORE', held, '-inf', now)
  for _, old in ipairs(lapsed) do
    local usd, tokens = string.match(old, '^[^:]+:(%d+):(%d+)$')
    if usd then
      redis.call('HINCRBY', hash, 'reserved_usd', '-' .. usd)
      redis.call('HINCRBY', hash, 'reserved_tokens', '-' .. tokens)
    end
  end
  if #lapsed > 0 then
    redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
  end
end
for i = 1, n do
  local f = redis.call('HMGET', KEYS[2 * i - 1], 'usd', 'tokens', 'reserved_usd', 'reserved_tokens')
  local usd = tonumber(f[1]) or 0
  local tokens = tonumber(f[2]) or 0
  local reserved_usd = tonumber(f[3]) or 0
  local reserved_tokens = tonumber(f[4]) or 0
  local budget_usd = tonumber(ARGV[3 + 2 * i])
  local budget_tokens = tonumber(ARGV[4 + 2 * i])
  if budget_usd >= 0 and usd + reserved_usd + tonumber(worst_usd) > budget_usd then
    return {'usd', tostring(i), f[1] or '0', f[3] or '0'}
  end
  if budget_tokens >= 0 and tokens + reserved_tokens + tonumber(worst_tokens) > budget_tokens then
    return {'tokens', tostring(i), f[2] or '0', f[4] or '0'}
  end
end
local entry = member .. ':' .. worst_usd .. ':' .. worst_tokens
for i = 1, n do
  redis.call('HINCRBY', KEYS[2 * i - 1], 'reserved_usd', worst_usd)
  redis.call('HINCRBY', KEYS[2 * i - 1], 'reserved_tokens', worst_tokens)
  redis.call('ZADD', KEYS[2 * i], now + lifetime, entry)
  local ttl = redis.call('TTL', KEYS[2 * i - 1])
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[2 * i], ttl)
  end
end
return {'ok', entry}
",
    )
});

static SEED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('HSETNX', KEYS[1], 'seeded', '1') == 1 then
  redis.call('HSET', KEYS[1], 'usd', ARGV[1], 'tokens', ARGV[2], 'reserved_usd', '0', 'reserved_tokens', '0')
  if tonumber(ARGV[3]) > 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[3])
  end
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
",
    )
});

static SETTLE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local entry = ARGV[1]
local usd, tokens = string.match(entry, '^[^:]+:(%d+):(%d+)$')
for i = 1, #KEYS / 2 do
  local hash = KEYS[2 * i - 1]
  local seeded = redis.call('HEXISTS', hash, 'seeded') == 1
  if redis.call('ZREM', KEYS[2 * i], entry) == 1 and seeded then
    redis.call('HINCRBY', hash, 'reserved_usd', '-' .. usd)
    redis.call('HINCRBY', hash, 'reserved_tokens', '-' .. tokens)
  end
  if seeded then
    redis.call('HINCRBY', hash, 'usd', ARGV[2])
    redis.call('HINCRBY', hash, 'tokens', ARGV[3])
  end
end
return 1
",
    )
});

/// Micro-dollars, rounded up.
fn micros_up(usd: Decimal) -> i64 {
    (usd.max(Decimal::ZERO) * Decimal::from(1_000_000))
        .ceil()
        .to_i64()
        .unwrap_or(i64::MAX)
}

/// Micro-dollars, rounded down.
fn micros_down(usd: Decimal) -> i64 {
    (usd * Decimal::from(1_000_000))
        .floor()
        .to_i64()
        .unwrap_or(i64::MAX)
}

fn dollars(micros: &str) -> Decimal {
    micros
        .parse::<i64>()
        .map(|m| Decimal::new(m, 6).normalize())
        .unwrap_or_default()
}

/// The hash and reservation-set keys of `scope`'s window at `start`.
fn keys_of(scope: Scope, start: Option<&str>) -> (String, String) {
    let who = match scope {
        Scope::VirtualKey(id) => format!("vk:{id}"),
        Scope::Agent(id) => format!("agent:{id}"),
    };
    let window = start.unwrap_or("total");
    let hash = format!("llmhost:budget:{who}:{window}");
    let held = format!("{hash}:held");
    (hash, held)
}

fn random_id() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        // Unique enough within this process.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        return format!("{nanos:x}{:x}", std::process::id());
    }
    hex::encode(bytes)
}

/// A call's reservation in Redis: settled once (dropped unsettled, it
/// releases and charges nothing).
pub(crate) struct BudgetHold {
    redis: Arc<Redis>,
    keys: Vec<String>,
    entry: String,
}

impl BudgetHold {
    /// Charges `usd` (rounded up) and `tokens`, releasing the reservation;
    /// retried in the background while Redis is unavailable.
    pub(crate) fn settle(self, usd: Decimal, tokens: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            for attempt in 0..SETTLE_RETRIES {
                match self.send(usd, tokens).await {
                    Ok(()) => return,
                    Err(_) if attempt + 1 < SETTLE_RETRIES => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(err) => {
                        tracing::warn!(
                            error = %err,
                            "shared state: a budget settlement was given up; the usage row \
                             stands and the reservation lapses by itself"
                        );
                    }
                }
            }
        });
    }

    async fn send(&self, usd: Decimal, tokens: u64) -> Result<(), Error> {
        let mut invocation = SETTLE.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        invocation.arg(&self.entry).arg(micros_up(usd)).arg(tokens);
        self.redis
            .run("budget_settle", |mut conn| async move {
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await
            .map(drop)
    }
}

/// Reserves `worst` under every limit in Redis, seeding a window from
/// `store`'s usage rows the first time it is seen.
pub(crate) async fn reserve(
    redis: &Arc<Redis>,
    store: &Store,
    limits: &[Limit],
    worst: Worst,
    now: SystemTime,
) -> Result<Result<BudgetHold, Exceeded>, Error> {
    reserve_for(redis, store, limits, worst, now, RESERVATION_LIFETIME).await
}

/// [`reserve`], the reservation lapsing after `lifetime`.
pub(crate) async fn reserve_for(
    redis: &Arc<Redis>,
    store: &Store,
    limits: &[Limit],
    worst: Worst,
    now: SystemTime,
    lifetime: Duration,
) -> Result<Result<BudgetHold, Exceeded>, Error> {
    let starts: Vec<Option<String>> = limits.iter().map(|l| l.period.window_start(now)).collect();
    let mut keys = Vec::with_capacity(limits.len() * 2);
    for (limit, start) in limits.iter().zip(&starts) {
        let (hash, held) = keys_of(limit.scope, start.as_deref());
        keys.push(hash);
        keys.push(held);
    }
    let worst_usd = micros_up(worst.usd);
    let member = random_id();
    // Seeding makes one more window known each round.
    for _ in 0..=limits.len() {
        let mut invocation = RESERVE.prepare_invoke();
        for key in &keys {
            invocation.key(key);
        }
        invocation
            .arg(&member)
            .arg(worst_usd)
            .arg(worst.tokens)
            .arg(u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX));
        for limit in limits {
            invocation.arg(limit.usd.map_or(-1, micros_down)).arg(
                limit
                    .tokens
                    .map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX)),
            );
        }
        let answer: Vec<String> = redis
            .run("budget_reserve", |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        let index = |n: Option<&String>| {
            n.and_then(|n| n.parse::<usize>().ok())
                .and_then(|i| i.checked_sub(1))
                .filter(|i| *i < limits.len())
        };
        match answer.first().map(String::as_str) {
            Some("ok") => {
                let entry = answer.get(1).cloned().unwrap_or_default();
                return Ok(Ok(BudgetHold {
                    redis: redis.clone(),
                    keys,
                    entry,
                }));
            }
            Some("unseeded") => {
                let Some(i) = index(answer.get(1)) else { break };
                let (usd, tokens) = spend_in(store, limits[i].scope, starts[i].clone()).await?;
                let ttl = if limits[i].period == BudgetPeriod::Total {
                    0
                } else {
                    WINDOW_TTL_SECS
                };
                let mut invocation = SEED.prepare_invoke();
                invocation
                    .key(&keys[2 * i])
                    .key(&keys[2 * i + 1])
                    .arg(micros_up(usd))
                    .arg(tokens)
                    .arg(ttl);
                redis
                    .run("budget_seed", |mut conn| async move {
                        invocation.invoke_async::<i64>(&mut conn).await
                    })
                    .await?;
            }
            Some(which @ ("usd" | "tokens")) => {
                let Some(i) = index(answer.get(1)) else { break };
                let limit = &limits[i];
                let spent = answer.get(2).map_or("0", String::as_str);
                let reserved = answer.get(3).map_or("0", String::as_str);
                let message = if which == "usd" {
                    format!(
                        "budget exceeded: ${} of ${} per {} spent, ${} reserved by requests in \
                         flight (on every replica), and this request may cost up to ${}",
                        dollars(spent),
                        limit.usd.unwrap_or_default(),
                        limit.period.as_str(),
                        dollars(reserved),
                        worst.usd.normalize()
                    )
                } else {
                    format!(
                        "token budget exceeded: {spent} of {} tokens per {} used, {reserved} \
                         reserved by requests in flight (on every replica), and this request may \
                         use up to {}",
                        limit.tokens.unwrap_or_default(),
                        limit.period.as_str(),
                        worst.tokens
                    )
                };
                return Ok(Err(Exceeded {
                    scope: limit.scope,
                    message,
                }));
            }
            _ => break,
        }
    }
    Err(Error::Internal(
        "the shared budget script gave an unexpected answer".into(),
    ))
}
