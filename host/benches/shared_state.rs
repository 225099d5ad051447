//! The per-request cost of the state replicas share in Redis against the
//! in-process state of a single gateway, side by side in one run:
//!
//! - `budget`: a virtual key's budget reserved and settled (the ledger; in
//!   Redis, two Lua scripts).
//! - `bucket`: one request taken from a provider's rate-limit buckets
//!   (requests and tokens a minute; in Redis, one Lua script) and settled.
//! - `revocation_epoch`: what an authentication reads to know whether
//!   another replica revoked a key (in Redis, one `GET`); in process there
//!   is nothing to read, the revocation clears the cache itself, so that
//!   side is the atomic load that stands for it.
//!
//! Redis is a real Redis 7 on loopback (`llmhost_test_services::redis()`),
//! one call at a time, so each figure is one round trip plus the script.
//!
//! Run: `cargo bench -p llmhost --bench shared_state` (`scripts/bench
//! shared` passes `--warm-up-time 1 --measurement-time 3`).

use criterion::{Criterion, criterion_group, criterion_main};
use llmhost::registry::RateLimits;
use llmhost::resilience::{BucketKey, RateLimiter};
use llmhost::shared::probe::{BudgetProbe, revocation_epoch};
use llmhost::shared::{OnUnavailable, Redis, RedisUrl};
use llmhost::store::{NewVirtualKeyRow, Store};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = llmhost_test_services::redis();
    let redis = runtime.block_on(async {
        let redis =
            Redis::open(&RedisUrl::new(server.url()), None, OnUnavailable::Closed).expect("redis");
        redis.ping().await.expect("Redis answers");
        redis
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, key) = runtime.block_on(async {
        let store = Store::open(dir.path().join("bench.db"))
            .await
            .expect("store");
        let key = store
            .insert_virtual_key(NewVirtualKeyRow {
                name: "bench".into(),
                key_hash: "hash-of-bench".into(),
                hash_key_id: "k00000000".into(),
                key_hint: "lhk-abcd…".into(),
                agent_name: None,
                models: None,
                budget: None,
                rpm: None,
                tpm: None,
                expires_at: None,
                cache_ttl_secs: None,
                cache_shared: false,
            })
            .await
            .expect("virtual key");
        (store, key.id)
    });

    let mut group = c.benchmark_group("shared_state");
    let budgets = [
        (
            "budget/in_process",
            BudgetProbe::new(store.clone(), None, key),
        ),
        (
            "budget/redis",
            BudgetProbe::new(store.clone(), Some(redis.clone()), key),
        ),
    ];
    for (name, probe) in &budgets {
        group.bench_function(*name, |b| {
            b.to_async(&runtime)
                .iter(|| async { probe.reserve_and_settle().await.expect("reserved") });
        });
    }

    // Limits far above what the run takes, so no call waits.
    let limits = RateLimits {
        requests_per_minute: Some(1_000_000_000),
        tokens_per_minute: Some(1_000_000_000_000),
    };
    let bucket = BucketKey {
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        key_id: "bench".into(),
    };
    let limiters = [
        ("bucket/in_process", RateLimiter::new(None)),
        ("bucket/redis", RateLimiter::new(Some(redis.clone()))),
    ];
    for (name, limiter) in &limiters {
        group.bench_function(*name, |b| {
            b.to_async(&runtime).iter(|| async {
                let deadline = Instant::now() + Duration::from_secs(5);
                let reservation = limiter
                    .acquire_shared(&bucket, limits, 100, deadline)
                    .await
                    .unwrap_or_else(|_| panic!("{name}: refused"));
                limiter.settle(&reservation, 40);
            });
        });
    }

    let seen = AtomicI64::new(0);
    group.bench_function("revocation_epoch/in_process", |b| {
        b.iter(|| std::hint::black_box(seen.load(Ordering::Relaxed)));
    });
    group.bench_function("revocation_epoch/redis", |b| {
        b.to_async(&runtime)
            .iter(|| async { revocation_epoch(&redis).await.expect("epoch") });
    });
    group.finish();
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
