//! End-to-end latency over loopback: `Host::chat` through the OpenAI
//! component against the vendor simulator, side by side with a plain
//! reqwest call to the same simulator endpoint, at several concurrency
//! levels. The difference between the two is what the host adds.
//!
//! The simulator runs in its own process (`llmhost simulate`), so its work
//! does not share a runtime with the side being measured. Both sides send
//! the same body and parse the answer's JSON. They take turns in rounds, so
//! the machine's drift lands on both.
//!
//! Run: `cargo bench -p llmhost --bench e2e`. Environment:
//! `BENCH_E2E_REQUESTS` (requests per side per round, default 2000),
//! `BENCH_E2E_ROUNDS` (default 3), `BENCH_E2E_CONCURRENCY` (default
//! `1,16,64`), `BENCH_CURRENT_THREAD=1` (a single-threaded runtime for
//! both sides instead of the multi-threaded one).

#[path = "support/mod.rs"]
mod support;

use llmhost::types::ChatRequest;
use llmhost::{Host, Limits, Target};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Percentiles, SimulatorProcess, env_number};

const MODEL: &str = "gpt-4o-mini";

/// What the OpenAI component sends for `request()`.
fn native_body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"},
        ],
    }))
    .expect("json")
}

#[derive(Clone, Copy)]
enum Side {
    Host,
    /// The host through the contract 0.1 fixture: the "before".
    HostV0_1,
    Reqwest,
}

struct Setup {
    host: Host,
    target: Target,
    /// The 0.1 fixture's target, when the fixture is built.
    legacy: Option<Target>,
    client: reqwest::Client,
    url: String,
    request: ChatRequest,
    body: bytes::Bytes,
}

impl Setup {
    async fn once(&self, side: Side) {
        match side {
            Side::Host | Side::HostV0_1 => {
                let target = match side {
                    Side::HostV0_1 => self.legacy.as_ref().expect("the 0.1 fixture"),
                    _ => &self.target,
                };
                let outcome = self.host.chat(target, &self.request).await.expect("chat");
                assert!(outcome.response.usage.output_tokens > 0);
            }
            Side::Reqwest => {
                let response = self
                    .client
                    .post(&self.url)
                    .header("authorization", "Bearer sk-bench")
                    .header("content-type", "application/json")
                    .body(self.body.clone())
                    .send()
                    .await
                    .expect("send");
                assert!(response.status().is_success());
                let bytes = response.bytes().await.expect("body");
                let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
                assert!(value["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0);
            }
        }
    }
}

/// Sends `total` requests from `concurrency` workers; returns each one's
/// latency and the wall time of the whole batch.
async fn batch(
    setup: &Arc<Setup>,
    side: Side,
    concurrency: usize,
    total: usize,
) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let per_worker = total.div_ceil(concurrency);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let setup = Arc::clone(setup);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_worker);
                for _ in 0..per_worker {
                    let sent = Instant::now();
                    setup.once(side).await;
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    (latencies, started.elapsed())
}

fn main() {
    // `cargo bench` passes `--bench`; this binary takes no arguments.
    support::raise_open_file_limit();
    let requests = env_number("BENCH_E2E_REQUESTS", 2000);
    let rounds = env_number("BENCH_E2E_ROUNDS", 3);
    let levels: Vec<usize> = std::env::var("BENCH_E2E_CONCURRENCY")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .map(|n| n.trim().parse().expect("BENCH_E2E_CONCURRENCY: numbers"))
        .collect();

    let simulator = SimulatorProcess::start();
    let runtime = support::runtime();
    let cache = tempfile::tempdir().expect("cache dir");
    let max = levels.iter().copied().max().unwrap_or(1);
    let fixture = support::v0_1_fixture_dir(&runtime);
    let mut builder = Host::builder()
        .ignore_plugin_env()
        .cache_dir(Some(cache.path().to_path_buf()));
    if let Some(dir) = &fixture {
        builder = builder.plugin_dir(dir.path());
    }
    let host = runtime
        .block_on(
            builder
                .limits(Limits {
                    max_concurrent_instances: u32::try_from(max.max(256)).expect("levels"),
                    ..Limits::default()
                })
                .build(),
        )
        .expect("host");
    let base = simulator.base_url("openai/v1");
    let mut target = Target::new("openai").base_url(&base).api_key("sk-bench");
    target.use_env = false;
    let legacy = fixture.as_ref().map(|_| {
        let mut legacy = Target::new("openai-v01")
            .base_url(&base)
            .api_key("sk-bench");
        legacy.use_env = false;
        legacy
    });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .expect("reqwest");
    let setup = Arc::new(Setup {
        host,
        target,
        legacy,
        client,
        url: format!("{base}/chat/completions"),
        request: support::request(MODEL, "Hello!"),
        body: native_body().into(),
    });

    println!(
        "e2e: Host::chat (openai component, contract 0.2) vs reqwest, and the contract 0.1 \
         fixture where built, {requests} requests per side per round, {rounds} rounds, \
         simulator in its own process"
    );
    println!();
    println!(
        "| concurrency | reqwest p50 | host p50 | added p50 | reqwest p99 | host p99 | added p99 | 0.1 p99 | added p99, 0.1 | reqwest req/s | host req/s | host / reqwest | 0.1 req/s |"
    );
    println!(
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let mut sides = vec![Side::Reqwest, Side::Host];
    if setup.legacy.is_some() {
        sides.push(Side::HostV0_1);
    }
    for &concurrency in &levels {
        // Warm every side: connections opened, pool slots touched.
        for &side in &sides {
            runtime.block_on(batch(&setup, side, concurrency, concurrency * 20));
        }
        let mut measured: Vec<(Vec<Duration>, Duration)> =
            sides.iter().map(|_| (Vec::new(), Duration::ZERO)).collect();
        for _ in 0..rounds {
            for (&side, into) in sides.iter().zip(measured.iter_mut()) {
                let (latencies, wall) =
                    runtime.block_on(batch(&setup, side, concurrency, requests));
                into.0.extend(latencies);
                into.1 += wall;
            }
        }
        let rate = |(latencies, wall): &(Vec<Duration>, Duration)| {
            latencies.len() as f64 / wall.as_secs_f64()
        };
        let rates: Vec<f64> = measured.iter().map(rate).collect();
        let mut percentiles: Vec<Percentiles> = measured
            .iter_mut()
            .map(|(latencies, _)| Percentiles::of(latencies))
            .collect();
        let old = (percentiles.len() > 2).then(|| percentiles.remove(2));
        let (n, h) = (&percentiles[0], &percentiles[1]);
        println!(
            "| {concurrency} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.2} | {} |",
            support::micros(n.p50),
            support::micros(h.p50),
            support::signed_micros(h.p50, n.p50),
            support::micros(n.p99),
            support::micros(h.p99),
            support::signed_micros(h.p99, n.p99),
            old.as_ref().map_or("–".into(), |o| support::micros(o.p99)),
            old.as_ref()
                .map_or("–".into(), |o| support::signed_micros(o.p99, n.p99)),
            rates[0],
            rates[1],
            rates[1] / rates[0],
            rates.get(2).map_or("–".into(), |r| format!("{r:.0}")),
        );
    }
    drop(simulator);
}
