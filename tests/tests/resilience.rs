//! Fault injection: retries, fallbacks, deadlines and usage accounting of
//! calls made for agents, over every provider, through the vendor
//! simulator. Each case asserts the requests the simulator saw, the time
//! taken, the typed outcome and the usage rows written.

mod common;
#[path = "conformance/wire.rs"]
#[allow(dead_code)]
mod wire;

use llmhost::registry::ModelOverrides;
use llmhost::resilience::{BreakerPolicy, Resilience, RetryPolicy};
use llmhost::store::UsageRecord;
use llmhost::types::{ChatRequest, Chunk};
use llmhost::{ConfigService, Error, NewConfig, Store};
use llmhost_simulator::{Reply, Simulator, Vendor};
use secrecy::SecretString;
use std::time::{Duration, Instant};
use wire::{PROVIDERS, Provider, Wire, error_reply, is_terminator, usage_stream};

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

fn resilience() -> Resilience {
    Resilience {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            deadline: Duration::from_secs(20),
        },
        breaker: BreakerPolicy {
            threshold: 0,
            ..BreakerPolicy::default()
        },
        attempt_timeout: Some(ATTEMPT_TIMEOUT),
    }
}

/// The provider after `p`, as the fallback config.
fn other(p: &Provider) -> &'static Provider {
    let i = PROVIDERS.iter().position(|x| x.id == p.id).unwrap();
    &PROVIDERS[(i + 1) % PROVIDERS.len()]
}

struct Bench {
    _dir: tempfile::TempDir,
    sim: Simulator,
    service: ConfigService,
}

impl Bench {
    async fn new(resilience: Resilience, overrides: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = common::builder();
        if let Some(text) = overrides {
            builder = builder.model_overrides(ModelOverrides::from_toml(text).unwrap());
        }
        let host = builder.build().await.unwrap();
        let store = Store::open(dir.path().join("usage.db")).await.unwrap();
        let service = ConfigService::new(
            host,
            store,
            Some(llmhost::secrets::Keyring::new(
                llmhost::secrets::EncryptionKey::generate(),
            )),
        )
        .with_resilience(resilience);
        Self {
            _dir: dir,
            sim: Simulator::start().await.unwrap(),
            service,
        }
    }

    fn config(&self, p: &Provider, priority: i64) -> NewConfig {
        let mut config = NewConfig::new(p.id, p.model);
        config.api_key = Some(SecretString::from("sk-fault-injection".to_owned()));
        config.base_url = Some(self.sim.base_url(p.vendor));
        config.priority = priority;
        config
    }

    /// An agent named after `p` whose first config is `p` and second the
    /// next provider.
    async fn agent(&self, p: &Provider) -> String {
        self.agent_named(p, &format!("agent-{}", p.id)).await
    }

    async fn agent_named(&self, p: &Provider, name: &str) -> String {
        let name = name.to_owned();
        self.service.create_agent(&name, None).await.unwrap();
        self.service
            .create_config(&name, self.config(p, 0))
            .await
            .unwrap();
        self.service
            .create_config(&name, self.config(other(p), 1))
            .await
            .unwrap();
        name
    }

    fn requests(&self, vendor: Vendor) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.vendor == Some(vendor) && r.method == "POST")
            .count()
    }

    async fn rows(&self, agent: &str) -> Vec<UsageRecord> {
        self.service.flush_usage().await.unwrap();
        self.service
            .store()
            .usage_events(Some(agent))
            .await
            .unwrap()
    }
}

fn request() -> ChatRequest {
    ChatRequest::simple("", "Hello there")
}

/// (status, error kind, attempt, fallback) of each row.
fn shape(rows: &[UsageRecord]) -> Vec<(String, Option<String>, u32, bool)> {
    rows.iter()
        .map(|r| {
            (
                r.status.clone(),
                r.error_kind.clone(),
                r.attempt,
                r.fallback,
            )
        })
        .collect()
}

fn ok(attempt: u32, fallback: bool) -> (String, Option<String>, u32, bool) {
    ("ok".into(), None, attempt, fallback)
}

fn failed(kind: &str, attempt: u32) -> (String, Option<String>, u32, bool) {
    ("error".into(), Some(kind.into()), attempt, false)
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_with_retry_after_waits_then_succeeds() {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let agent = b.agent(p).await;
        b.sim.enqueue(
            p.vendor,
            error_reply(p, 429, "rate_limit_error", "Too many requests").header("retry-after", "1"),
        );
        let before = b.requests(p.vendor);
        let started = Instant::now();
        let answer = b.service.chat(&agent, request()).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_secs(3),
            "{}: {took:?}",
            p.id
        );
        assert_eq!(
            (answer.provider.as_str(), answer.fallback, answer.attempts),
            (p.id, false, 2)
        );
        assert_eq!(b.requests(p.vendor) - before, 2, "{}", p.id);
        let rows = b.rows(&agent).await;
        assert_eq!(
            shape(&rows),
            [failed("rate_limited", 1), ok(2, false)],
            "{}",
            p.id
        );
        assert!(rows[1].cost_usd.is_some());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_reset_headers_set_the_wait_when_retry_after_is_missing() {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS.iter().filter(|p| p.wire != Wire::Anthropic) {
        let agent = b.agent(p).await;
        b.sim.enqueue(
            p.vendor,
            error_reply(
                p,
                429,
                "rate_limit_exceeded",
                "Rate limit reached for requests",
            )
            .header("x-ratelimit-remaining-requests", "0")
            .header("x-ratelimit-reset-requests", "800ms")
            .header("x-ratelimit-remaining-tokens", "39000")
            .header("x-ratelimit-reset-tokens", "6m0s"),
        );
        let started = Instant::now();
        let answer = b.service.chat(&agent, request()).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(780) && took < Duration::from_millis(2500),
            "{}: {took:?}",
            p.id
        );
        assert_eq!(answer.attempts, 2, "{}", p.id);
    }
}

fn quota_reply(p: &Provider) -> Reply {
    match p.wire {
        Wire::OpenAi => Reply::openai_error(
            429,
            "insufficient_quota",
            Some("insufficient_quota"),
            "You exceeded your current quota, please check your plan and billing details.",
        ),
        Wire::XAi => Reply::xai_error(
            429,
            "Too many requests",
            "Your team has used all available credits or reached its monthly spending limit.",
        ),
        Wire::Anthropic => Reply::anthropic_error(
            429,
            "billing_error",
            "Your credit balance is too low to access the Anthropic API.",
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_errors_are_neither_retried_nor_fallen_back() {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        for (reply, kind) in [
            (quota_reply(p), "quota_exhausted"),
            (
                error_reply(p, 401, "authentication_error", "invalid x-api-key"),
                "authentication",
            ),
        ] {
            let agent = b.agent_named(p, &format!("{}-{kind}", p.id)).await;
            let fallback_before = b.requests(other(p).vendor);
            let before = b.requests(p.vendor);
            b.sim.enqueue(p.vendor, reply);
            let started = Instant::now();
            let err = b.service.chat(&agent, request()).await.unwrap_err();
            assert_eq!(err.kind(), kind, "{}: {err}", p.id);
            assert!(started.elapsed() < Duration::from_secs(2));
            assert_eq!(b.requests(p.vendor) - before, 1, "{}: no retry", p.id);
            assert_eq!(
                b.requests(other(p).vendor),
                fallback_before,
                "{}: no fallback",
                p.id
            );
            assert_eq!(shape(&b.rows(&agent).await), [failed(kind, 1)]);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_is_retried_once() {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let agent = b.agent(p).await;
        b.sim.enqueue(
            p.vendor,
            error_reply(p, 500, "api_error", "Internal server error"),
        );
        let before = b.requests(p.vendor);
        let started = Instant::now();
        let answer = b.service.chat(&agent, request()).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(answer.attempts, 2);
        assert_eq!(b.requests(p.vendor) - before, 2);
        assert_eq!(
            shape(&b.rows(&agent).await),
            [failed("server_error", 1), ok(2, false)]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn overloaded_three_times_falls_back_to_another_provider() {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let agent = b.agent(p).await;
        let q = other(p);
        for _ in 0..3 {
            b.sim.enqueue(
                p.vendor,
                error_reply(p, 529, "overloaded_error", "Overloaded"),
            );
        }
        let (before_p, before_q) = (b.requests(p.vendor), b.requests(q.vendor));
        let started = Instant::now();
        let answer = b.service.chat(&agent, request()).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(answer.provider, q.id, "served by the fallback");
        assert_eq!(answer.model, q.model);
        assert!(answer.fallback);
        assert_eq!(answer.attempts, 4);
        assert_eq!(b.requests(p.vendor) - before_p, 3);
        assert_eq!(b.requests(q.vendor) - before_q, 1);
        let rows = b.rows(&agent).await;
        assert_eq!(
            shape(&rows),
            [
                failed("overloaded", 1),
                failed("overloaded", 2),
                failed("overloaded", 3),
                ok(4, true)
            ]
        );
        assert_eq!(rows[3].provider, q.id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stall_before_the_first_byte_times_out_and_is_retried() {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let agent = b.agent(p).await;
        b.sim.enqueue(
            p.vendor,
            Reply::raw(200, Vec::new()).delay_headers(Duration::from_secs(10)),
        );
        let before = b.requests(p.vendor);
        let started = Instant::now();
        let answer = b.service.chat(&agent, request()).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= ATTEMPT_TIMEOUT && took < ATTEMPT_TIMEOUT * 3,
            "{}: {took:?}",
            p.id
        );
        assert_eq!(answer.attempts, 2);
        assert_eq!(b.requests(p.vendor) - before, 2);
        assert_eq!(
            shape(&b.rows(&agent).await),
            [failed("timeout", 1), ok(2, false)]
        );
    }
}

/// Reads a stream to its end: the text, then the error if it failed.
async fn drain(stream: &mut llmhost::AgentStream) -> (String, Option<Error>) {
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(Chunk::Text(t)) => text.push_str(&t),
            Ok(_) => {}
            Err(err) => return (text, Some(err)),
        }
    }
    (text, None)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stall_mid_stream_ends_it_with_a_timeout_and_no_retry() {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let agent = b.agent(p).await;
        let events = usage_stream(p, &["Hel", "lo"]);
        // Everything up to the first piece of text, then silence.
        let cut = events.iter().position(|e| e.contains("Hel")).unwrap() + 1;
        b.sim
            .enqueue(p.vendor, Reply::sse(events[..cut].to_vec()).hang());
        let before = b.requests(p.vendor);
        let started = Instant::now();
        let mut stream = b.service.stream(&agent, request()).await.unwrap();
        let (text, err) = drain(&mut stream).await;
        let took = started.elapsed();
        assert_eq!(text, "Hel", "{}", p.id);
        assert_eq!(err.expect("fails").kind(), "timeout", "{}", p.id);
        assert!(
            took >= ATTEMPT_TIMEOUT && took < ATTEMPT_TIMEOUT * 3,
            "{took:?}"
        );
        assert_eq!(b.requests(p.vendor) - before, 1, "{}: no retry", p.id);
        let rows = b.rows(&agent).await;
        assert_eq!(shape(&rows), [failed("timeout", 1)]);
        assert!(rows[0].streamed && rows[0].estimated && rows[0].output_tokens > 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_after_the_first_chunk_is_an_error_with_partial_usage() {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let agent = b.agent(p).await;
        let events: Vec<String> = usage_stream(p, &["Partial ", "answer"])
            .into_iter()
            .filter(|e| !is_terminator(p, e))
            .collect();
        b.sim.enqueue(p.vendor, Reply::sse(events));
        let before = b.requests(p.vendor);
        let mut stream = b.service.stream(&agent, request()).await.unwrap();
        let (text, err) = drain(&mut stream).await;
        assert_eq!(text, "Partial answer");
        assert_eq!(err.expect("fails").kind(), "protocol", "{}", p.id);
        assert_eq!(b.requests(p.vendor) - before, 1, "{}: no retry", p.id);
        let rows = b.rows(&agent).await;
        assert_eq!(shape(&rows), [failed("protocol", 1)]);
        let row = &rows[0];
        assert!(row.input_tokens > 0 && row.output_tokens > 0, "{row:?}");
        assert!(row.streamed);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_is_retried_and_falls_back_before_its_first_chunk() {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let agent = b.agent(p).await;
        let q = other(p);
        for _ in 0..3 {
            b.sim.enqueue(
                p.vendor,
                error_reply(p, 503, "overloaded", "Service unavailable"),
            );
        }
        let mut stream = b.service.stream(&agent, request()).await.unwrap();
        let (text, err) = drain(&mut stream).await;
        assert!(err.is_none(), "{err:?}");
        assert!(text.contains("Hello there"), "{text}");
        assert_eq!(
            (stream.provider(), stream.fallback(), stream.attempts()),
            (q.id, true, 4)
        );
        drop(stream);
        let rows = b.rows(&agent).await;
        assert_eq!(
            shape(&rows),
            [
                failed("overloaded", 1),
                failed("overloaded", 2),
                failed("overloaded", 3),
                ok(4, true)
            ]
        );
        assert!(rows[3].cost_usd.is_some() && !rows[3].estimated);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_fallback_pair_is_tried_before_the_next_config() {
    let b = Bench::new(resilience(), None).await;
    let p = &PROVIDERS[0];
    b.service.create_agent("pair", None).await.unwrap();
    let mut config = b.config(p, 0);
    config.fallback_provider = Some(p.id.into());
    config.fallback_model = Some("gpt-4o".into());
    b.service.create_config("pair", config).await.unwrap();
    for _ in 0..3 {
        b.sim
            .enqueue(p.vendor, error_reply(p, 500, "server_error", "boom"));
    }
    let answer = b.service.chat("pair", request()).await.unwrap();
    assert_eq!(
        (
            answer.provider.as_str(),
            answer.model.as_str(),
            answer.fallback
        ),
        ("openai", "gpt-4o", true)
    );
    let last = b.sim.requests().last().unwrap().json().unwrap();
    assert_eq!(last["model"], "gpt-4o");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deadline_bounds_retries_and_fallbacks_together() {
    let mut policy = resilience();
    policy.retry.deadline = Duration::from_millis(1500);
    policy.attempt_timeout = Some(Duration::from_secs(5));
    let b = Bench::new(policy, None).await;
    let p = &PROVIDERS[0];
    let agent = b.agent(p).await;
    // The vendor asks for 5 s; the call has 1.5 s: it goes to the
    // fallback instead of waiting, which stalls until the deadline.
    b.sim.enqueue(
        p.vendor,
        error_reply(p, 429, "rate_limit_exceeded", "slow down").header("retry-after", "5"),
    );
    b.sim.enqueue(
        other(p).vendor,
        Reply::raw(200, Vec::new()).delay_headers(Duration::from_secs(10)),
    );
    let started = Instant::now();
    let err = b.service.chat(&agent, request()).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), "timeout", "{err}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    let rows = b.rows(&agent).await;
    assert_eq!(rows.len(), 2, "{:?}", shape(&rows));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_circuit_skips_the_provider_until_its_cooldown() {
    let mut policy = resilience();
    policy.retry.max_attempts = 1;
    policy.breaker = BreakerPolicy {
        threshold: 2,
        cooldown: Duration::from_millis(600),
    };
    let b = Bench::new(policy, None).await;
    let p = &PROVIDERS[0];
    let q = other(p);
    let agent = b.agent(p).await;
    for _ in 0..2 {
        b.sim
            .enqueue(p.vendor, error_reply(p, 503, "overloaded", "unavailable"));
        let answer = b.service.chat(&agent, request()).await.unwrap();
        assert_eq!(answer.provider, q.id);
    }
    // Open: p is skipped without a request.
    let before = b.requests(p.vendor);
    let answer = b.service.chat(&agent, request()).await.unwrap();
    assert_eq!((answer.provider.as_str(), answer.attempts), (q.id, 1));
    assert_eq!(b.requests(p.vendor), before);
    // After the cooldown one probe goes through and closes it.
    tokio::time::sleep(Duration::from_millis(650)).await;
    let answer = b.service.chat(&agent, request()).await.unwrap();
    assert_eq!(answer.provider, p.id);
    assert_eq!(b.requests(p.vendor), before + 1);
}

const COOLDOWN: Duration = Duration::from_millis(200);

/// Breakers that open after two failures for [`COOLDOWN`]; one attempt a
/// route, and attempts long enough that only the test ends a probe.
fn breaker_policy() -> Resilience {
    let mut policy = resilience();
    policy.retry.max_attempts = 1;
    policy.attempt_timeout = Some(Duration::from_secs(10));
    policy.breaker = BreakerPolicy {
        threshold: 2,
        cooldown: COOLDOWN,
    };
    policy
}

/// Waits, polling, until `done`; fails the test after a generous limit.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An agent whose first route, `p`, has an open circuit whose cool-down
/// has passed: the next call to it is the half-open probe.
async fn circuit_ready_to_probe(b: &Bench, p: &Provider) -> String {
    let agent = b.agent(p).await;
    for _ in 0..2 {
        b.sim
            .enqueue(p.vendor, error_reply(p, 503, "overloaded", "unavailable"));
        let answer = b.service.chat(&agent, request()).await.unwrap();
        assert_eq!(answer.provider, other(p).id, "{}", p.id);
    }
    // Sleeping never ends early, so this is past the cool-down however
    // busy the machine is.
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    agent
}

/// After a probe was dropped unsettled: calls made within the cool-down
/// skip `p` (the drop reopened the circuit), and the first call after it
/// probes `p` and is served by it.
async fn recovers_after_the_cooldown(b: &Bench, p: &Provider, agent: &str, dropped: Instant) {
    let sent = b.requests(p.vendor);
    let answer = b.service.chat(agent, request()).await.unwrap();
    // Only checkable if this call was admitted within the cool-down; on a
    // busy machine it may not have been.
    if dropped.elapsed() < COOLDOWN {
        assert_eq!(answer.provider, other(p).id, "{}: reopened", p.id);
        assert_eq!(b.requests(p.vendor), sent, "{}: skipped while open", p.id);
    }
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    let sent = b.requests(p.vendor);
    let answer = b.service.chat(agent, request()).await.unwrap();
    assert_eq!(
        (answer.provider.as_str(), answer.fallback, answer.attempts),
        (p.id, false, 1),
        "{}: the circuit was probed again and closed",
        p.id
    );
    assert_eq!(b.requests(p.vendor), sent + 1, "{}", p.id);
    // Closed: the next call goes to `p` too.
    let answer = b.service.chat(agent, request()).await.unwrap();
    assert_eq!(answer.provider, p.id, "{}", p.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_open_probe_cancelled_mid_flight_does_not_wedge_the_circuit() {
    let b = Bench::new(breaker_policy(), None).await;
    for p in PROVIDERS {
        let agent = circuit_ready_to_probe(&b, p).await;
        // The probe: a vendor slow to answer, and a caller that gives up
        // first (a client timeout, a disconnect, a `select!`).
        b.sim.enqueue(
            p.vendor,
            Reply::raw(200, Vec::new()).delay_headers(Duration::from_secs(30)),
        );
        let sent = b.requests(p.vendor);
        let probe = b.service.chat(&agent, request());
        tokio::select! {
            answer = probe => panic!("{}: the probe was answered: {answer:?}", p.id),
            () = until("the probe to reach the vendor", || b.requests(p.vendor) > sent) => {}
        }
        // `select!` dropped the probe's future, mid-flight.
        recovers_after_the_cooldown(&b, p, &agent, Instant::now()).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_open_probe_stream_dropped_before_its_first_chunk_does_not_wedge_the_circuit() {
    let b = Bench::new(breaker_policy(), None).await;
    for p in PROVIDERS {
        let agent = circuit_ready_to_probe(&b, p).await;
        b.sim.enqueue(
            p.vendor,
            Reply::sse(usage_stream(p, &["Hel", "lo"])).delay_headers(Duration::from_secs(30)),
        );
        let sent = b.requests(p.vendor);
        let probe = b.service.stream(&agent, request());
        tokio::select! {
            started = probe => panic!("{}: the probe started: {}", p.id, started.is_ok()),
            () = until("the probe to reach the vendor", || b.requests(p.vendor) > sent) => {}
        }
        recovers_after_the_cooldown(&b, p, &agent, Instant::now()).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_open_probe_stream_dropped_after_its_first_chunk_closes_the_circuit() {
    let b = Bench::new(breaker_policy(), None).await;
    for p in PROVIDERS {
        let agent = circuit_ready_to_probe(&b, p).await;
        // The probe's vendor answers, sends some text, then goes quiet;
        // the caller reads the first chunk and drops the stream.
        let events = usage_stream(p, &["Hel", "lo"]);
        let cut = events.iter().position(|e| e.contains("Hel")).unwrap() + 1;
        b.sim
            .enqueue(p.vendor, Reply::sse(events[..cut].to_vec()).hang());
        let mut stream = b.service.stream(&agent, request()).await.unwrap();
        assert_eq!(stream.provider(), p.id, "{}: the probe went to p", p.id);
        let first = stream.next().await.expect("a chunk").unwrap();
        assert!(
            matches!(first, Chunk::Start(_) | Chunk::Text(_)),
            "{first:?}"
        );
        drop(stream);
        // The vendor answered: the circuit is closed, at once.
        let sent = b.requests(p.vendor);
        let answer = b.service.chat(&agent, request()).await.unwrap();
        assert_eq!(
            (answer.provider.as_str(), answer.fallback),
            (p.id, false),
            "{}: closed by the probe's first chunk",
            p.id
        );
        assert_eq!(b.requests(p.vendor), sent + 1, "{}", p.id);
        // The dropped stream's row is written in the background.
        let started = Instant::now();
        while !b
            .rows(&agent)
            .await
            .iter()
            .any(|r| r.error_kind.as_deref() == Some("cancelled"))
        {
            assert!(started.elapsed() < Duration::from_secs(10), "no row");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_side_rate_limits_space_calls_and_refuse_past_the_deadline() {
    // 120 requests a minute: 2 a second, a burst of 2.
    let overrides = r#"
[[model]]
provider = "openai"
id = "gpt-4o-mini"
requests_per_minute = 120
"#;
    let b = Bench::new(resilience(), Some(overrides)).await;
    let p = &PROVIDERS[0];
    let agent = b.agent(p).await;
    let started = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let service = b.service.clone();
            let agent = agent.clone();
            tokio::spawn(async move { service.chat(&agent, request()).await })
        })
        .collect();
    for call in calls {
        let answer = call.await.unwrap().unwrap();
        assert_eq!(answer.provider, "openai");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );

    // A call whose deadline is shorter than the wait is refused, with when
    // to come back (its fallback has no limit and serves it).
    let mut tight = resilience();
    tight.retry.deadline = Duration::from_millis(100);
    let service = b.service.clone().with_resilience(tight);
    for _ in 0..3 {
        let _ = service.chat(&agent, request()).await;
    }
    let rows_before = b.rows(&agent).await.len();
    let answer = service.chat(&agent, request()).await.unwrap();
    assert_eq!(
        answer.provider,
        other(p).id,
        "the limited route was skipped"
    );
    assert_eq!(
        b.rows(&agent).await.len(),
        rows_before + 1,
        "no attempt on the limited route"
    );

    // With no other route, the call fails with rate_limited and when to
    // come back, without sending anything.
    b.service.create_agent("limited-only", None).await.unwrap();
    b.service
        .create_config("limited-only", b.config(p, 0))
        .await
        .unwrap();
    for _ in 0..3 {
        let _ = service.chat("limited-only", request()).await;
    }
    let sent = b.requests(p.vendor);
    let err = service.chat("limited-only", request()).await.unwrap_err();
    assert_eq!(err.kind(), "rate_limited", "{err}");
    let wait = err.retry_after().expect("when to come back");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    assert_eq!(b.requests(p.vendor), sent);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_calls_with_faults_are_all_accounted_for() {
    // Two hundred calls at once queue for the host on a small machine; a
    // short attempt timeout would add timeouts that were never scripted
    // (attempts that time out before they reach the simulator, so rows
    // outnumber its requests).
    let mut policy = resilience();
    policy.attempt_timeout = Some(Duration::from_secs(15));
    let b = Bench::new(policy, None).await;
    let p = &PROVIDERS[0];
    let agent = b.agent(p).await;
    for i in 0..120 {
        let reply = match i % 4 {
            0 => error_reply(p, 500, "server_error", "boom"),
            1 => error_reply(p, 429, "rate_limit_exceeded", "slow").header("retry-after-ms", "10"),
            2 => error_reply(p, 401, "invalid_api_key", "bad key"),
            _ => error_reply(p, 529, "overloaded", "busy"),
        };
        b.sim.enqueue(p.vendor, reply);
    }
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let service = b.service.clone();
            let agent = agent.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    service.chat(&agent, request()).await.map(|a| a.attempts)
                } else {
                    let mut stream = service.stream(&agent, request()).await?;
                    let (_, err) = drain(&mut stream).await;
                    match err {
                        Some(err) => Err(err),
                        None => Ok(stream.attempts()),
                    }
                }
            })
        })
        .collect();
    let mut outcomes = 0;
    let mut failures = 0;
    for call in calls {
        match call.await.expect("no panic") {
            Ok(_) => outcomes += 1,
            Err(err) => {
                assert_eq!(err.kind(), "authentication", "{err}");
                failures += 1;
            }
        }
    }
    assert_eq!(outcomes + failures, 200);
    // Streams record when they end; all ended above.
    let rows = b.rows(&agent).await;
    let posts = b.requests(p.vendor) + b.requests(other(p).vendor);
    assert_eq!(rows.len(), posts, "one usage row per attempt");
    assert_eq!(rows.iter().filter(|r| r.status == "ok").count(), outcomes);
    assert_eq!(
        rows.iter()
            .filter(|r| r.error_kind.as_deref() == Some("authentication"))
            .count(),
        failures
    );
    assert_eq!(failures, 30, "each 401 ends one call");
}
