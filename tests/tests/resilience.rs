//! Fault injection: retries, fallbacks, deadlines, client-side rate
//! limits, circuit breakers and usage accounting, over every provider,
//! through the vendor simulator. The retry, breaker and rate-limit cases
//! run once for each [`Caller`]: an agent (a plan of its configs) and a
//! plain target (a plan of one route, as `Host::chat` and the gateway make
//! it), each expecting what is right for it (where an agent falls back, a
//! plain target fails). The config fallback pair and the two hundred
//! concurrent calls are the agent's alone. Each case asserts the requests
//! the simulator saw, the time taken, the typed outcome and the usage rows
//! written.

mod common;
#[path = "conformance/wire.rs"]
#[allow(dead_code)]
mod wire;

use llmhost::registry::ModelOverrides;
use llmhost::resilience::{BreakerPolicy, Resilience, RetryPolicy};
use llmhost::router::{CallTags, StoreSink};
use llmhost::store::UsageRecord;
use llmhost::types::{ChatRequest, Chunk};
use llmhost::{ConfigService, Error, NewConfig, Plan, Route, RoutedStream, Router, Store, Target};
use llmhost_simulator::{Reply, Simulator, Vendor};
use secrecy::SecretString;
use std::fmt;
use std::time::{Duration, Instant};
use wire::{PROVIDERS, Provider, Wire, error_reply, is_terminator, usage_stream};

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
const API_KEY: &str = "sk-fault-injection";

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

/// Who makes a case's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// `ConfigService` for an agent whose first config is the provider
    /// under test and whose second is the next provider.
    Agent,
    /// The host's router with the provider's target as the one route,
    /// tagged with a route name as the gateway tags it.
    Plain,
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Caller::Agent => "agent",
            Caller::Plain => "plain",
        })
    }
}

/// For each case, written as `async fn case(caller: Caller)`, a module of
/// that name with one test per caller: `case::agent` and `case::plain`.
macro_rules! for_each_caller {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread")]
            async fn agent() {
                super::$case(super::Caller::Agent).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn plain() {
                super::$case(super::Caller::Plain).await
            }
        }
    )*};
}

for_each_caller!(
    rate_limited_with_retry_after_waits_then_succeeds,
    rate_limit_reset_headers_set_the_wait_when_retry_after_is_missing,
    permanent_errors_are_neither_retried_nor_fallen_back,
    a_server_error_is_retried_once,
    overloaded_three_times_falls_back_or_fails_without_another_route,
    a_stall_before_the_first_byte_times_out_and_is_retried,
    a_stall_mid_stream_ends_it_with_a_timeout_and_no_retry,
    a_reset_after_the_first_chunk_is_an_error_with_partial_usage,
    a_stream_is_retried_before_its_first_chunk_then_falls_back_or_fails,
    the_deadline_bounds_retries_and_fallbacks_together,
    an_open_circuit_skips_the_provider_until_its_cooldown,
    a_half_open_probe_cancelled_mid_flight_does_not_wedge_the_circuit,
    a_half_open_probe_stream_dropped_before_its_first_chunk_does_not_wedge_the_circuit,
    a_half_open_probe_stream_dropped_after_its_first_chunk_closes_the_circuit,
    client_side_rate_limits_space_calls_and_refuse_past_the_deadline,
);

/// How a callee is reached.
#[derive(Debug, Clone)]
enum Via {
    /// The agent of this name.
    Agent(String),
    /// This plan of one route.
    Plain(Box<Plan>),
}

/// What a case calls for `provider`: an agent, or a plain target. Its name
/// is the agent's, or the route tag of the plain target's plan.
#[derive(Debug, Clone)]
struct Callee {
    provider: &'static Provider,
    name: String,
    via: Via,
}

impl Callee {
    fn caller(&self) -> Caller {
        match self.via {
            Via::Agent(_) => Caller::Agent,
            Via::Plain(_) => Caller::Plain,
        }
    }
}

impl fmt::Display for Callee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.caller())
    }
}

/// What either caller learns of a call that was answered.
#[derive(Debug)]
struct Answer {
    provider: String,
    model: String,
    fallback: bool,
    attempts: u32,
    request_id: String,
}

/// The two ways to call, recording to one store: the service for agents,
/// the host's router for plain targets. Clones share breakers, rate limits
/// and usage sinks.
#[derive(Clone)]
struct Client {
    service: ConfigService,
    plain: Router,
}

impl Client {
    /// Both callers with `resilience`, and fresh breakers and rate limits.
    fn with_resilience(&self, resilience: Resilience) -> Self {
        Self {
            service: self.service.clone().with_resilience(resilience),
            plain: self.plain.with_resilience(resilience),
        }
    }

    async fn chat(&self, callee: &Callee) -> Result<Answer, Error> {
        match &callee.via {
            Via::Agent(name) => self.service.chat(name, request()).await.map(|a| Answer {
                provider: a.provider,
                model: a.model,
                fallback: a.fallback,
                attempts: a.attempts,
                request_id: a.request_id,
            }),
            Via::Plain(plan) => self.plain.chat(plan, &request()).await.map(|r| Answer {
                provider: r.provider,
                model: r.model,
                fallback: r.fallback,
                attempts: r.attempts,
                request_id: r.request_id,
            }),
        }
    }

    async fn stream(&self, callee: &Callee) -> Result<RoutedStream, Error> {
        match &callee.via {
            Via::Agent(name) => self.service.stream(name, request()).await,
            Via::Plain(plan) => self.plain.stream(plan, &request()).await,
        }
    }

    /// Waits until both callers' usage events are stored.
    async fn flush(&self) {
        self.service.flush_usage().await.unwrap();
        self.plain.flush_usage().await.unwrap();
    }
}

struct Bench {
    _dir: tempfile::TempDir,
    sim: Simulator,
    store: Store,
    client: Client,
}

impl Bench {
    /// One host with `resilience`, whose router records to the store the
    /// service records to.
    async fn new(resilience: Resilience, overrides: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("usage.db")).await.unwrap();
        let mut builder = common::builder()
            .resilience(resilience)
            .usage_sink(StoreSink::new(store.clone()));
        if let Some(text) = overrides {
            builder = builder.model_overrides(ModelOverrides::from_toml(text).unwrap());
        }
        let host = builder.build().await.unwrap();
        let plain = host.router();
        let service = ConfigService::new(
            host,
            store.clone(),
            Some(llmhost::secrets::Keyring::new(
                llmhost::secrets::EncryptionKey::generate(),
            )),
        )
        .with_resilience(resilience);
        Self {
            _dir: dir,
            sim: Simulator::start().await.unwrap(),
            store,
            client: Client { service, plain },
        }
    }

    fn config(&self, p: &Provider, priority: i64) -> NewConfig {
        let mut config = NewConfig::new(p.id, p.model);
        config.api_key = Some(SecretString::from(API_KEY.to_owned()));
        config.fields.base_url = Some(self.sim.base_url(p.vendor));
        config.fields.priority = priority;
        config
    }

    /// `p` at the simulator, with the key agents' configs have.
    fn target(&self, p: &Provider) -> Target {
        let mut target = Target::new(p.id)
            .base_url(self.sim.base_url(p.vendor))
            .api_key(API_KEY);
        target.use_env = false;
        target
    }

    /// The callee `caller` calls for `p`, named after both.
    async fn callee(&self, caller: Caller, p: &'static Provider) -> Callee {
        self.callee_named(caller, p, &format!("{caller}-{}", p.id))
            .await
    }

    /// For an agent, creates it: its first config is `p` and its second
    /// the next provider. For a plain target, tags its route `name`.
    async fn callee_named(&self, caller: Caller, p: &'static Provider, name: &str) -> Callee {
        let name = name.to_owned();
        let via = match caller {
            Caller::Agent => {
                self.client.service.create_agent(&name, None).await.unwrap();
                for (i, q) in [p, other(p)].into_iter().enumerate() {
                    self.client
                        .service
                        .create_config(&name, self.config(q, i as i64))
                        .await
                        .unwrap();
                }
                Via::Agent(name.clone())
            }
            Caller::Plain => {
                let tags = CallTags {
                    route: Some(name.clone()),
                    ..CallTags::default()
                };
                Via::Plain(Box::new(
                    Plan::single(Route::new(self.target(p), p.model)).tags(tags),
                ))
            }
        };
        Callee {
            provider: p,
            name,
            via,
        }
    }

    async fn chat(&self, callee: &Callee) -> Result<Answer, Error> {
        self.client.chat(callee).await
    }

    async fn stream(&self, callee: &Callee) -> Result<RoutedStream, Error> {
        self.client.stream(callee).await
    }

    fn requests(&self, vendor: Vendor) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.vendor == Some(vendor) && r.method == "POST")
            .count()
    }

    /// The callee's usage rows, oldest first, once everything recorded is
    /// stored; checks what every row of the callee has in common.
    async fn rows(&self, callee: &Callee) -> Vec<UsageRecord> {
        self.client.flush().await;
        let rows = match &callee.via {
            Via::Agent(name) => self.store.usage_events(Some(name)).await.unwrap(),
            Via::Plain(_) => self
                .store
                .usage_events(None)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.route.as_deref() == Some(callee.name.as_str()))
                .collect(),
        };
        for row in &rows {
            assert!(row.request_id.is_some(), "{callee}: {row:?}");
            match &callee.via {
                Via::Agent(name) => {
                    assert_eq!(row.route, Some(format!("agent:{name}")), "{callee}");
                    assert!(row.config_id.is_some(), "{callee}: {row:?}");
                }
                Via::Plain(_) => assert_eq!(
                    (
                        row.agent_name.as_deref(),
                        row.config_id,
                        row.provider.as_str(),
                        row.model.as_str(),
                        row.fallback
                    ),
                    (None, None, callee.provider.id, callee.provider.model, false),
                    "{callee}"
                ),
            }
        }
        rows
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
    failed_on(kind, attempt, false)
}

fn failed_on(kind: &str, attempt: u32, fallback: bool) -> (String, Option<String>, u32, bool) {
    ("error".into(), Some(kind.into()), attempt, fallback)
}

/// Whether all `rows` are attempts of the call `request_id`.
fn of_call(rows: &[UsageRecord], request_id: &str) -> bool {
    rows.iter()
        .all(|r| r.request_id.as_deref() == Some(request_id))
}

async fn rate_limited_with_retry_after_waits_then_succeeds(caller: Caller) {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let callee = b.callee(caller, p).await;
        b.sim.enqueue(
            p.vendor,
            error_reply(p, 429, "rate_limit_error", "Too many requests").header("retry-after", "1"),
        );
        let before = b.requests(p.vendor);
        let started = Instant::now();
        let answer = b.chat(&callee).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_secs(3),
            "{callee}: {took:?}"
        );
        assert_eq!(
            (answer.provider.as_str(), answer.fallback, answer.attempts),
            (p.id, false, 2),
            "{callee}"
        );
        assert_eq!(b.requests(p.vendor) - before, 2, "{callee}");
        let rows = b.rows(&callee).await;
        assert_eq!(
            shape(&rows),
            [failed("rate_limited", 1), ok(2, false)],
            "{callee}"
        );
        assert!(of_call(&rows, &answer.request_id), "{callee}: {rows:?}");
        assert!(rows[1].cost_usd.is_some(), "{callee}");
    }
}

async fn rate_limit_reset_headers_set_the_wait_when_retry_after_is_missing(caller: Caller) {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS.iter().filter(|p| p.wire != Wire::Anthropic) {
        let callee = b.callee(caller, p).await;
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
        let before = b.requests(p.vendor);
        let started = Instant::now();
        let answer = b.chat(&callee).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(780) && took < Duration::from_millis(2500),
            "{callee}: {took:?}"
        );
        assert_eq!(
            (answer.provider.as_str(), answer.attempts),
            (p.id, 2),
            "{callee}"
        );
        assert_eq!(b.requests(p.vendor) - before, 2, "{callee}");
        assert_eq!(
            shape(&b.rows(&callee).await),
            [failed("rate_limited", 1), ok(2, false)],
            "{callee}"
        );
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

async fn permanent_errors_are_neither_retried_nor_fallen_back(caller: Caller) {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        for (reply, kind) in [
            (quota_reply(p), "quota_exhausted"),
            (
                error_reply(p, 401, "authentication_error", "invalid x-api-key"),
                "authentication",
            ),
        ] {
            let callee = b
                .callee_named(caller, p, &format!("{caller}-{}-{kind}", p.id))
                .await;
            let fallback_before = b.requests(other(p).vendor);
            let before = b.requests(p.vendor);
            b.sim.enqueue(p.vendor, reply);
            let started = Instant::now();
            let err = b.chat(&callee).await.unwrap_err();
            assert_eq!(err.kind(), kind, "{callee}: {err}");
            assert!(started.elapsed() < Duration::from_secs(2), "{callee}");
            assert_eq!(b.requests(p.vendor) - before, 1, "{callee}: no retry");
            assert_eq!(
                b.requests(other(p).vendor),
                fallback_before,
                "{callee}: nothing sent elsewhere"
            );
            assert_eq!(shape(&b.rows(&callee).await), [failed(kind, 1)], "{callee}");
        }
    }
}

async fn a_server_error_is_retried_once(caller: Caller) {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let callee = b.callee(caller, p).await;
        b.sim.enqueue(
            p.vendor,
            error_reply(p, 500, "api_error", "Internal server error"),
        );
        let before = b.requests(p.vendor);
        let started = Instant::now();
        let answer = b.chat(&callee).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "{callee}");
        assert_eq!(
            (answer.provider.as_str(), answer.fallback, answer.attempts),
            (p.id, false, 2),
            "{callee}"
        );
        assert_eq!(b.requests(p.vendor) - before, 2, "{callee}");
        let rows = b.rows(&callee).await;
        assert_eq!(
            shape(&rows),
            [failed("server_error", 1), ok(2, false)],
            "{callee}"
        );
        assert!(of_call(&rows, &answer.request_id), "{callee}: {rows:?}");
    }
}

/// Three overloads spend the route's attempts: an agent goes on to its
/// next provider; a plain target has none and fails with the last error.
async fn overloaded_three_times_falls_back_or_fails_without_another_route(caller: Caller) {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let callee = b.callee(caller, p).await;
        let q = other(p);
        for _ in 0..3 {
            b.sim.enqueue(
                p.vendor,
                error_reply(p, 529, "overloaded_error", "Overloaded"),
            );
        }
        let (before_p, before_q) = (b.requests(p.vendor), b.requests(q.vendor));
        let started = Instant::now();
        let outcome = b.chat(&callee).await;
        assert!(started.elapsed() < Duration::from_secs(3), "{callee}");
        assert_eq!(b.requests(p.vendor) - before_p, 3, "{callee}");
        let overloaded = [
            failed("overloaded", 1),
            failed("overloaded", 2),
            failed("overloaded", 3),
        ];
        let rows = b.rows(&callee).await;
        match caller {
            Caller::Agent => {
                let answer = outcome.unwrap();
                assert_eq!(answer.provider, q.id, "{callee}: served by the fallback");
                assert_eq!(answer.model, q.model);
                assert!(answer.fallback);
                assert_eq!(answer.attempts, 4);
                assert_eq!(b.requests(q.vendor) - before_q, 1, "{callee}");
                assert_eq!(shape(&rows[..3]), overloaded, "{callee}");
                assert_eq!(shape(&rows[3..]), [ok(4, true)], "{callee}");
                assert_eq!(rows[3].provider, q.id);
            }
            Caller::Plain => {
                let err = outcome.unwrap_err();
                assert_eq!(err.kind(), "overloaded", "{callee}: {err}");
                assert_eq!(b.requests(q.vendor), before_q, "{callee}: no fallback");
                assert_eq!(shape(&rows), overloaded, "{callee}");
            }
        }
    }
}

async fn a_stall_before_the_first_byte_times_out_and_is_retried(caller: Caller) {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let callee = b.callee(caller, p).await;
        b.sim.enqueue(
            p.vendor,
            Reply::raw(200, Vec::new()).delay_headers(Duration::from_secs(10)),
        );
        let before = b.requests(p.vendor);
        let started = Instant::now();
        let answer = b.chat(&callee).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= ATTEMPT_TIMEOUT && took < ATTEMPT_TIMEOUT * 3,
            "{callee}: {took:?}"
        );
        assert_eq!(
            (answer.provider.as_str(), answer.attempts),
            (p.id, 2),
            "{callee}"
        );
        assert_eq!(b.requests(p.vendor) - before, 2, "{callee}");
        let rows = b.rows(&callee).await;
        assert_eq!(
            shape(&rows),
            [failed("timeout", 1), ok(2, false)],
            "{callee}"
        );
        assert!(of_call(&rows, &answer.request_id), "{callee}: {rows:?}");
    }
}

/// Reads a stream to its end: the text, then the error if it failed.
async fn drain(stream: &mut RoutedStream) -> (String, Option<Error>) {
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

async fn a_stall_mid_stream_ends_it_with_a_timeout_and_no_retry(caller: Caller) {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let callee = b.callee(caller, p).await;
        let events = usage_stream(p, &["Hel", "lo"]);
        // Everything up to the first piece of text, then silence.
        let cut = events.iter().position(|e| e.contains("Hel")).unwrap() + 1;
        b.sim
            .enqueue(p.vendor, Reply::sse(events[..cut].to_vec()).hang());
        let before = b.requests(p.vendor);
        let started = Instant::now();
        let mut stream = b.stream(&callee).await.unwrap();
        let (text, err) = drain(&mut stream).await;
        let took = started.elapsed();
        assert_eq!(text, "Hel", "{callee}");
        assert_eq!(err.expect("fails").kind(), "timeout", "{callee}");
        assert!(
            took >= ATTEMPT_TIMEOUT && took < ATTEMPT_TIMEOUT * 3,
            "{callee}: {took:?}"
        );
        assert_eq!(b.requests(p.vendor) - before, 1, "{callee}: no retry");
        let rows = b.rows(&callee).await;
        assert_eq!(shape(&rows), [failed("timeout", 1)], "{callee}");
        assert!(
            rows[0].streamed && rows[0].estimated && rows[0].output_tokens > 0,
            "{callee}: {:?}",
            rows[0]
        );
        assert!(of_call(&rows, stream.request_id()), "{callee}: {rows:?}");
    }
}

async fn a_reset_after_the_first_chunk_is_an_error_with_partial_usage(caller: Caller) {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let callee = b.callee(caller, p).await;
        let events: Vec<String> = usage_stream(p, &["Partial ", "answer"])
            .into_iter()
            .filter(|e| !is_terminator(p, e))
            .collect();
        b.sim.enqueue(p.vendor, Reply::sse(events));
        let before = b.requests(p.vendor);
        let mut stream = b.stream(&callee).await.unwrap();
        let (text, err) = drain(&mut stream).await;
        assert_eq!(text, "Partial answer", "{callee}");
        assert_eq!(err.expect("fails").kind(), "protocol", "{callee}");
        assert_eq!(b.requests(p.vendor) - before, 1, "{callee}: no retry");
        let rows = b.rows(&callee).await;
        assert_eq!(shape(&rows), [failed("protocol", 1)], "{callee}");
        let row = &rows[0];
        assert!(
            row.input_tokens > 0 && row.output_tokens > 0,
            "{callee}: {row:?}"
        );
        assert!(row.streamed, "{callee}");
    }
}

/// Failures before a stream's first chunk are retried like a chat's: an
/// agent whose first route is spent is served by its next provider; a
/// plain target's stream fails to start with the last error.
async fn a_stream_is_retried_before_its_first_chunk_then_falls_back_or_fails(caller: Caller) {
    let b = Bench::new(resilience(), None).await;
    for p in PROVIDERS {
        let callee = b.callee(caller, p).await;
        let q = other(p);
        for _ in 0..3 {
            b.sim.enqueue(
                p.vendor,
                error_reply(p, 503, "overloaded", "Service unavailable"),
            );
        }
        let (before_p, before_q) = (b.requests(p.vendor), b.requests(q.vendor));
        let overloaded = [
            failed("overloaded", 1),
            failed("overloaded", 2),
            failed("overloaded", 3),
        ];
        match (caller, b.stream(&callee).await) {
            (Caller::Agent, Ok(mut stream)) => {
                let (text, err) = drain(&mut stream).await;
                assert!(err.is_none(), "{callee}: {err:?}");
                assert!(text.contains("Hello there"), "{callee}: {text}");
                assert_eq!(
                    (stream.provider(), stream.fallback(), stream.attempts()),
                    (q.id, true, 4),
                    "{callee}"
                );
                drop(stream);
                assert_eq!(b.requests(q.vendor) - before_q, 1, "{callee}");
                let rows = b.rows(&callee).await;
                assert_eq!(shape(&rows[..3]), overloaded, "{callee}");
                assert_eq!(shape(&rows[3..]), [ok(4, true)], "{callee}");
                assert!(rows[3].cost_usd.is_some() && !rows[3].estimated);
            }
            (Caller::Plain, Err(err)) => {
                assert_eq!(err.kind(), "overloaded", "{callee}: {err}");
                assert_eq!(b.requests(q.vendor), before_q, "{callee}: no fallback");
                let rows = b.rows(&callee).await;
                assert_eq!(shape(&rows), overloaded, "{callee}");
                assert!(rows.iter().all(|r| r.streamed), "{callee}");
            }
            (_, outcome) => panic!("{callee}: started: {}", outcome.is_ok()),
        }
        assert_eq!(b.requests(p.vendor) - before_p, 3, "{callee}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_fallback_pair_is_tried_before_the_next_config() {
    let b = Bench::new(resilience(), None).await;
    let service = &b.client.service;
    let p = &PROVIDERS[0];
    service.create_agent("pair", None).await.unwrap();
    let mut config = b.config(p, 0);
    config.fields.fallback_provider = Some(p.id.into());
    config.fields.fallback_model = Some("gpt-4o".into());
    service.create_config("pair", config).await.unwrap();
    for _ in 0..3 {
        b.sim
            .enqueue(p.vendor, error_reply(p, 500, "server_error", "boom"));
    }
    let answer = service.chat("pair", request()).await.unwrap();
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

async fn the_deadline_bounds_retries_and_fallbacks_together(caller: Caller) {
    let mut policy = resilience();
    policy.retry.deadline = Duration::from_millis(1500);
    policy.attempt_timeout = Some(Duration::from_secs(5));
    let b = Bench::new(policy, None).await;
    let p = &PROVIDERS[0];
    let q = other(p);
    let callee = b.callee(caller, p).await;
    let stall = || Reply::raw(200, Vec::new()).delay_headers(Duration::from_secs(10));
    // The vendor asks for 5 s; the call has 1.5 s.
    b.sim.enqueue(
        p.vendor,
        error_reply(p, 429, "rate_limit_exceeded", "slow down").header("retry-after", "5"),
    );
    let started = Instant::now();
    match caller {
        Caller::Agent => {
            // It goes to the fallback instead of waiting, which stalls
            // until the deadline.
            b.sim.enqueue(q.vendor, stall());
            let err = b.chat(&callee).await.unwrap_err();
            let took = started.elapsed();
            assert_eq!(err.kind(), "timeout", "{err}");
            assert!(
                took >= Duration::from_millis(1400) && took < Duration::from_millis(2500),
                "{took:?}"
            );
            assert_eq!((b.requests(p.vendor), b.requests(q.vendor)), (1, 1));
            let rows = b.rows(&callee).await;
            assert_eq!(
                shape(&rows),
                [failed("rate_limited", 1), failed_on("timeout", 2, true)]
            );
        }
        Caller::Plain => {
            // With nowhere else to go it fails at once, with the vendor's
            // error and when to come back.
            let err = b.chat(&callee).await.unwrap_err();
            let took = started.elapsed();
            assert_eq!(err.kind(), "rate_limited", "{err}");
            assert_eq!(err.retry_after(), Some(Duration::from_secs(5)), "{err}");
            assert!(took < Duration::from_millis(1300), "{took:?}");
            assert_eq!(b.requests(p.vendor), 1);
            // A retry that stalls is cut at the deadline.
            b.sim
                .enqueue(p.vendor, error_reply(p, 500, "server_error", "boom"));
            b.sim.enqueue(p.vendor, stall());
            let started = Instant::now();
            let err = b.chat(&callee).await.unwrap_err();
            let took = started.elapsed();
            assert_eq!(err.kind(), "timeout", "{err}");
            assert!(
                took >= Duration::from_millis(1400) && took < Duration::from_millis(2500),
                "{took:?}"
            );
            assert_eq!(b.requests(p.vendor), 3, "no third attempt");
            assert_eq!(b.requests(q.vendor), 0, "no fallback");
            let rows = b.rows(&callee).await;
            assert_eq!(
                shape(&rows),
                [
                    failed("rate_limited", 1),
                    failed("server_error", 1),
                    failed("timeout", 2)
                ]
            );
        }
    }
}

/// Asserts the outcome of a call to `callee` while its provider's circuit
/// is open: an agent is served by its next provider, a plain target gets
/// `circuit_open` with when to come back.
fn assert_skipped(callee: &Callee, outcome: Result<Answer, Error>, cooldown: Duration) {
    match callee.caller() {
        Caller::Agent => {
            let answer = outcome.unwrap();
            assert_eq!(
                (answer.provider.as_str(), answer.fallback, answer.attempts),
                (other(callee.provider).id, true, 1),
                "{callee}: served by the fallback"
            );
        }
        Caller::Plain => {
            let err = outcome.unwrap_err();
            assert_eq!(err.kind(), "circuit_open", "{callee}: {err}");
            let wait = err.retry_after().expect("when to come back");
            assert!(
                wait > Duration::ZERO && wait <= cooldown,
                "{callee}: {wait:?}"
            );
        }
    }
}

/// Asserts the outcome of a call to `callee` whose first route failed with
/// `overloaded` in its only attempt.
fn assert_overloaded(callee: &Callee, outcome: Result<Answer, Error>) {
    match callee.caller() {
        Caller::Agent => assert_eq!(
            outcome.unwrap().provider,
            other(callee.provider).id,
            "{callee}: served by the fallback"
        ),
        Caller::Plain => assert_eq!(outcome.unwrap_err().kind(), "overloaded", "{callee}"),
    }
}

async fn an_open_circuit_skips_the_provider_until_its_cooldown(caller: Caller) {
    let cooldown = Duration::from_millis(600);
    let mut policy = resilience();
    policy.retry.max_attempts = 1;
    policy.breaker = BreakerPolicy {
        threshold: 2,
        cooldown,
    };
    let b = Bench::new(policy, None).await;
    let p = &PROVIDERS[0];
    let callee = b.callee(caller, p).await;
    for _ in 0..2 {
        b.sim
            .enqueue(p.vendor, error_reply(p, 503, "overloaded", "unavailable"));
        assert_overloaded(&callee, b.chat(&callee).await);
    }
    // Open: p is skipped without a request.
    let before = b.requests(p.vendor);
    assert_skipped(&callee, b.chat(&callee).await, cooldown);
    assert_eq!(b.requests(p.vendor), before, "{callee}");
    // After the cooldown one probe goes through and closes it.
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    let answer = b.chat(&callee).await.unwrap();
    assert_eq!(
        (answer.provider.as_str(), answer.fallback, answer.attempts),
        (p.id, false, 1),
        "{callee}"
    );
    assert_eq!(b.requests(p.vendor), before + 1, "{callee}");
    let rows = b.rows(&callee).await;
    match caller {
        Caller::Agent => assert_eq!(
            shape(&rows),
            [
                failed("overloaded", 1),
                ok(2, true),
                failed("overloaded", 1),
                ok(2, true),
                ok(1, true),
                ok(1, false),
            ]
        ),
        // The skipped call made no attempt, so has no row.
        Caller::Plain => assert_eq!(
            shape(&rows),
            [
                failed("overloaded", 1),
                failed("overloaded", 1),
                ok(1, false)
            ]
        ),
    }
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

/// A callee whose first route, `p`, has an open circuit whose cool-down has
/// passed: the next call to it is the half-open probe.
async fn circuit_ready_to_probe(b: &Bench, caller: Caller, p: &'static Provider) -> Callee {
    let callee = b.callee(caller, p).await;
    for _ in 0..2 {
        b.sim
            .enqueue(p.vendor, error_reply(p, 503, "overloaded", "unavailable"));
        assert_overloaded(&callee, b.chat(&callee).await);
    }
    // Sleeping never ends early, so this is past the cool-down however
    // busy the machine is.
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    callee
}

/// After a probe was dropped unsettled: calls made within the cool-down
/// skip `p` (the drop reopened the circuit), and the first call after it
/// probes `p` and is served by it.
async fn recovers_after_the_cooldown(b: &Bench, callee: &Callee, dropped: Instant) {
    let p = callee.provider;
    let sent = b.requests(p.vendor);
    let outcome = b.chat(callee).await;
    // Only checkable if this call was admitted within the cool-down; on a
    // busy machine it may not have been, and then it was the probe.
    if dropped.elapsed() < COOLDOWN {
        assert_skipped(callee, outcome, COOLDOWN);
        assert_eq!(b.requests(p.vendor), sent, "{callee}: skipped while open");
    }
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    let sent = b.requests(p.vendor);
    let answer = b.chat(callee).await.unwrap();
    assert_eq!(
        (answer.provider.as_str(), answer.fallback, answer.attempts),
        (p.id, false, 1),
        "{callee}: the circuit was probed again and closed"
    );
    assert_eq!(b.requests(p.vendor), sent + 1, "{callee}");
    // Closed: the next call goes to `p` too.
    let answer = b.chat(callee).await.unwrap();
    assert_eq!(answer.provider, p.id, "{callee}");
}

async fn a_half_open_probe_cancelled_mid_flight_does_not_wedge_the_circuit(caller: Caller) {
    let b = Bench::new(breaker_policy(), None).await;
    for p in PROVIDERS {
        let callee = circuit_ready_to_probe(&b, caller, p).await;
        // The probe: a vendor slow to answer, and a caller that gives up
        // first (a client timeout, a disconnect, a `select!`).
        b.sim.enqueue(
            p.vendor,
            Reply::raw(200, Vec::new()).delay_headers(Duration::from_secs(30)),
        );
        let sent = b.requests(p.vendor);
        let probe = b.chat(&callee);
        tokio::select! {
            answer = probe => panic!("{callee}: the probe was answered: {answer:?}"),
            () = until("the probe to reach the vendor", || b.requests(p.vendor) > sent) => {}
        }
        // `select!` dropped the probe's future, mid-flight.
        recovers_after_the_cooldown(&b, &callee, Instant::now()).await;
    }
}

async fn a_half_open_probe_stream_dropped_before_its_first_chunk_does_not_wedge_the_circuit(
    caller: Caller,
) {
    let b = Bench::new(breaker_policy(), None).await;
    for p in PROVIDERS {
        let callee = circuit_ready_to_probe(&b, caller, p).await;
        b.sim.enqueue(
            p.vendor,
            Reply::sse(usage_stream(p, &["Hel", "lo"])).delay_headers(Duration::from_secs(30)),
        );
        let sent = b.requests(p.vendor);
        let probe = b.stream(&callee);
        tokio::select! {
            started = probe => panic!("{callee}: the probe started: {}", started.is_ok()),
            () = until("the probe to reach the vendor", || b.requests(p.vendor) > sent) => {}
        }
        recovers_after_the_cooldown(&b, &callee, Instant::now()).await;
    }
}

async fn a_half_open_probe_stream_dropped_after_its_first_chunk_closes_the_circuit(caller: Caller) {
    let b = Bench::new(breaker_policy(), None).await;
    for p in PROVIDERS {
        let callee = circuit_ready_to_probe(&b, caller, p).await;
        // The probe's vendor answers, sends some text, then goes quiet;
        // the caller reads the first chunk and drops the stream.
        let events = usage_stream(p, &["Hel", "lo"]);
        let cut = events.iter().position(|e| e.contains("Hel")).unwrap() + 1;
        b.sim
            .enqueue(p.vendor, Reply::sse(events[..cut].to_vec()).hang());
        let mut stream = b.stream(&callee).await.unwrap();
        assert_eq!(stream.provider(), p.id, "{callee}: the probe went to p");
        let first = stream.next().await.expect("a chunk").unwrap();
        assert!(
            matches!(first, Chunk::Start(_) | Chunk::Text(_)),
            "{callee}: {first:?}"
        );
        let probe_id = stream.request_id().to_owned();
        drop(stream);
        // The vendor answered: the circuit is closed, at once.
        let sent = b.requests(p.vendor);
        let answer = b.chat(&callee).await.unwrap();
        assert_eq!(
            (answer.provider.as_str(), answer.fallback),
            (p.id, false),
            "{callee}: closed by the probe's first chunk"
        );
        assert_eq!(b.requests(p.vendor), sent + 1, "{callee}");
        // The dropped stream's row is written in the background.
        let started = Instant::now();
        let cancelled = loop {
            let rows = b.rows(&callee).await;
            if let Some(row) = rows
                .into_iter()
                .find(|r| r.error_kind.as_deref() == Some("cancelled"))
            {
                break row;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{callee}: no row"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(
            (
                cancelled.provider.as_str(),
                cancelled.streamed,
                cancelled.request_id.as_deref()
            ),
            (p.id, true, Some(probe_id.as_str())),
            "{callee}"
        );
    }
}

/// Fills the rate limit of `callee`'s first route as `client` sees it, then
/// checks that the next call fails with `rate_limited` and when to come
/// back, having sent and recorded nothing.
async fn assert_refused_unsent(b: &Bench, client: &Client, callee: &Callee) {
    for _ in 0..3 {
        let _ = client.chat(callee).await;
    }
    let sent = b.requests(callee.provider.vendor);
    let rows = b.rows(callee).await.len();
    let err = client.chat(callee).await.unwrap_err();
    assert_eq!(err.kind(), "rate_limited", "{callee}: {err}");
    let wait = err.retry_after().expect("when to come back");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(1),
        "{callee}: {wait:?}"
    );
    assert_eq!(
        b.requests(callee.provider.vendor),
        sent,
        "{callee}: nothing sent"
    );
    assert_eq!(b.rows(callee).await.len(), rows, "{callee}: no attempt");
}

async fn client_side_rate_limits_space_calls_and_refuse_past_the_deadline(caller: Caller) {
    // 120 requests a minute: 2 a second, a burst of 2.
    let overrides = r#"
[[model]]
provider = "openai"
id = "gpt-4o-mini"
requests_per_minute = 120
"#;
    let b = Bench::new(resilience(), Some(overrides)).await;
    let p = &PROVIDERS[0];
    let callee = b.callee(caller, p).await;
    let started = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let client = b.client.clone();
            let callee = callee.clone();
            tokio::spawn(async move { client.chat(&callee).await })
        })
        .collect();
    for call in calls {
        let answer = call.await.unwrap().unwrap();
        assert_eq!((answer.provider.as_str(), answer.attempts), ("openai", 1));
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{callee}: {took:?}"
    );
    assert_eq!(b.requests(p.vendor), 6, "{callee}");
    assert_eq!(
        shape(&b.rows(&callee).await),
        vec![ok(1, false); 6],
        "{callee}"
    );

    // A call whose deadline is shorter than the wait is refused, with when
    // to come back.
    let mut tight = resilience();
    tight.retry.deadline = Duration::from_millis(100);
    let client = b.client.with_resilience(tight);
    match caller {
        Caller::Agent => {
            // Its fallback has no limit and serves it.
            for _ in 0..3 {
                let _ = client.chat(&callee).await;
            }
            let rows_before = b.rows(&callee).await.len();
            let answer = client.chat(&callee).await.unwrap();
            assert_eq!(
                answer.provider,
                other(p).id,
                "the limited route was skipped"
            );
            assert_eq!(
                b.rows(&callee).await.len(),
                rows_before + 1,
                "no attempt on the limited route"
            );
            // With no other route, the call fails.
            let service = &b.client.service;
            service.create_agent("limited-only", None).await.unwrap();
            service
                .create_config("limited-only", b.config(p, 0))
                .await
                .unwrap();
            let only = Callee {
                provider: p,
                name: "limited-only".into(),
                via: Via::Agent("limited-only".into()),
            };
            assert_refused_unsent(&b, &client, &only).await;
        }
        Caller::Plain => assert_refused_unsent(&b, &client, &callee).await,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bare_host_calls_are_retried_and_recorded_untagged() {
    let b = Bench::new(resilience(), None).await;
    let host = b.client.plain.host();
    for p in PROVIDERS {
        let target = b.target(p);
        let request = ChatRequest::simple(p.model, "Hello there");
        let before = b.requests(p.vendor);
        b.sim.enqueue(
            p.vendor,
            error_reply(p, 500, "api_error", "Internal server error"),
        );
        let answer = host.chat(&target, &request).await.unwrap();
        assert_eq!(answer.provider, p.id);
        assert_eq!(b.requests(p.vendor) - before, 2, "{}: retried", p.id);
        b.sim.enqueue(
            p.vendor,
            error_reply(p, 500, "api_error", "Internal server error"),
        );
        let mut stream = host.stream(&target, &request).await.unwrap();
        let (text, err) = drain(&mut stream).await;
        assert!(err.is_none(), "{}: {err:?}", p.id);
        assert!(text.contains("Hello there"), "{}: {text}", p.id);
        assert_eq!(stream.attempts(), 2, "{}", p.id);
        assert_eq!(b.requests(p.vendor) - before, 4, "{}: retried", p.id);
        b.client.flush().await;
        let rows: Vec<_> = b
            .store
            .usage_events(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.provider == p.id)
            .collect();
        assert_eq!(
            shape(&rows),
            [
                failed("server_error", 1),
                ok(2, false),
                failed("server_error", 1),
                ok(2, false)
            ],
            "{}",
            p.id
        );
        assert!(
            rows.iter()
                .all(|r| r.agent_name.is_none() && r.route.is_none() && r.config_id.is_none()),
            "{}: {rows:?}",
            p.id
        );
        let chat_id = rows[0].request_id.clone().expect("a request id");
        assert!(of_call(&rows[..2], &chat_id), "{}: {rows:?}", p.id);
        assert!(
            of_call(&rows[2..], stream.request_id()),
            "{}: {rows:?}",
            p.id
        );
        assert_ne!(chat_id, stream.request_id(), "{}", p.id);
        let streamed: Vec<bool> = rows.iter().map(|r| r.streamed).collect();
        assert_eq!(streamed, [false, false, true, true], "{}", p.id);
    }
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
    let callee = b.callee(Caller::Agent, p).await;
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
            let client = b.client.clone();
            let callee = callee.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    client.chat(&callee).await.map(|a| a.attempts)
                } else {
                    let mut stream = client.stream(&callee).await?;
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
    let rows = b.rows(&callee).await;
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
