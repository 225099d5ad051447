//! The response cache's hit path against a provider call, side by side in
//! one run: `Router::chat` through the OpenAI component to the vendor
//! simulator (its own process, over loopback). `provider`: no cache
//! policy, a new question every call. `miss`: a policy and a new question
//! every call, so a provider call plus the lookup and the store of its
//! answer. `hit`: a policy and the same question, whose answer is stored,
//! so no provider call; it still computes the key (the request serialised
//! and hashed), looks it up and records its usage event. Each side runs
//! one call at a time, and 16 at once.
//!
//! Run: `cargo bench -p llmhost --bench cache` (criterion; `scripts/bench`
//! passes `--warm-up-time 1 --measurement-time 3`).

#[path = "support/mod.rs"]
mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use llmhost::router::{CachePolicy, CacheStatus, Plan, Route, Router};
use llmhost::types::{ChatRequest, Message};
use llmhost::{Host, Limits, Target};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::SimulatorProcess;

const MODEL: &str = "gpt-4o-mini";
const CONCURRENCY: usize = 16;

struct Side {
    router: Router,
    plan: Plan,
    request: ChatRequest,
    /// What every call of the side must report.
    expected: Option<CacheStatus>,
    /// Whether each call asks something new (a miss every time).
    unique: Option<AtomicU64>,
}

impl Side {
    async fn once(&self) {
        let fresh;
        let request = match &self.unique {
            Some(counter) => {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let mut request = self.request.clone();
                request.messages[1] = Message::user(format!("Hello {n:08}!"));
                fresh = request;
                &fresh
            }
            None => &self.request,
        };
        let routed = self.router.chat(&self.plan, request).await.expect("chat");
        assert_eq!(routed.cache, self.expected);
        assert!(!routed.outcome.response.content.is_empty());
    }
}

/// `iters` rounds of `concurrency` calls at once; the time of them all.
async fn rounds(side: &Arc<Side>, iters: u64, concurrency: usize) -> Duration {
    let started = Instant::now();
    for _ in 0..iters {
        let calls: Vec<_> = (0..concurrency)
            .map(|_| {
                let side = side.clone();
                tokio::spawn(async move { side.once().await })
            })
            .collect();
        for call in calls {
            call.await.expect("call");
        }
    }
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    let simulator = SimulatorProcess::start();
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("cache dir");
    let host = runtime
        .block_on(
            Host::builder()
                .ignore_plugin_env()
                .cache_dir(Some(dir.path().to_path_buf()))
                .limits(Limits {
                    max_concurrent_instances: 64,
                    ..Limits::default()
                })
                .build(),
        )
        .expect("host");
    let mut target = Target::new("openai")
        .base_url(simulator.base_url("openai/v1"))
        .api_key("sk-bench");
    target.use_env = false;
    let mut request = support::request(MODEL, "Hello!");
    request.temperature = Some(0.0);
    let plan = Plan::single(Route::new(target, MODEL));
    let provider = Arc::new(Side {
        router: host.router(),
        plan: plan.clone(),
        request: request.clone(),
        expected: None,
        unique: Some(AtomicU64::new(0)),
    });
    let mut cached_plan = plan;
    cached_plan.cache = Some(CachePolicy::new(Duration::from_secs(3600)));
    let miss = Arc::new(Side {
        router: host.router(),
        plan: cached_plan.clone(),
        request: request.clone(),
        expected: Some(CacheStatus::Miss),
        unique: Some(AtomicU64::new(0)),
    });
    let hit = Arc::new(Side {
        router: host.router(),
        plan: cached_plan,
        request,
        expected: Some(CacheStatus::Hit),
        unique: None,
    });
    // The first call of the cached side stores the answer.
    let first = runtime
        .block_on(hit.router.chat(&hit.plan, &hit.request))
        .expect("chat");
    assert_eq!(first.cache, Some(CacheStatus::Miss));

    let mut group = c.benchmark_group("cache");
    for concurrency in [1, CONCURRENCY] {
        group.throughput(Throughput::Elements(concurrency as u64));
        for (name, side) in [("provider", &provider), ("miss", &miss), ("hit", &hit)] {
            group.bench_function(BenchmarkId::new(name, concurrency), |b| {
                b.iter_custom(|iters| runtime.block_on(rounds(side, iters, concurrency)))
            });
        }
    }
    group.finish();
    drop(simulator);
}

criterion_group!(benches, bench);
criterion_main!(benches);
