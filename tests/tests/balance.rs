//! Load balancing among an agent's configs of one priority and the
//! context-window fallback, end to end: agents and configs in a real
//! SQLite store, calls through the OpenAI component to two vendor
//! simulators on loopback (one per config, so each route has its own
//! base URL, breaker and latency).

mod common;

use llmhost::registry::ModelOverrides;
use llmhost::resilience::{BreakerPolicy, Resilience, RetryPolicy};
use llmhost::router::Strategy;
use llmhost::store::UsageRecord;
use llmhost::types::{ChatRequest, Chunk};
use llmhost::{ConfigService, NewConfig, Store};
use llmhost_simulator::{Reply, Simulator, Vendor};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

const KEY: &str = "sk-balance-test";
/// Config `a`'s model, at simulator `a`.
const MODEL_A: &str = "gpt-4o-mini";
/// Config `b`'s model, at simulator `b`: another model, so that the two
/// routes have their own rate-limit buckets too.
const MODEL_B: &str = "gpt-4o";

struct Bench {
    _dir: tempfile::TempDir,
    a: Simulator,
    b: Simulator,
    store: Store,
    service: Arc<ConfigService>,
}

fn resilience(breaker_threshold: u32) -> Resilience {
    Resilience {
        retry: RetryPolicy {
            max_attempts: 1,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            deadline: Duration::from_secs(30),
        },
        breaker: BreakerPolicy {
            threshold: breaker_threshold,
            cooldown: Duration::from_secs(600),
        },
        attempt_timeout: Some(Duration::from_secs(10)),
    }
}

impl Bench {
    async fn new(resilience: Resilience, overrides: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("llmhost.db")).await.unwrap();
        let mut builder = common::builder();
        if let Some(text) = overrides {
            builder = builder.model_overrides(ModelOverrides::from_toml(text).unwrap());
        }
        let host = builder.build().await.unwrap();
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
            a: Simulator::start().await.unwrap(),
            b: Simulator::start().await.unwrap(),
            store,
            service: Arc::new(service),
        }
    }

    fn config(&self, sim: &Simulator, model: &str, weight: u32) -> NewConfig {
        let mut config = NewConfig::new("openai", model);
        config.api_key = Some(SecretString::from(KEY.to_owned()));
        config.fields.base_url = Some(sim.base_url(Vendor::OpenAi));
        config.fields.weight = weight;
        config
    }

    /// An agent balancing by `strategy` over config `a` (weight `wa`) and
    /// config `b` (weight `wb`), both of priority 0.
    async fn agent(&self, name: &str, strategy: Strategy, wa: u32, wb: u32) {
        self.service
            .create_balanced_agent(name, None, strategy)
            .await
            .unwrap();
        for config in [
            self.config(&self.a, MODEL_A, wa),
            self.config(&self.b, MODEL_B, wb),
        ] {
            self.service.create_config(name, config).await.unwrap();
        }
    }

    async fn rows(&self, agent: &str) -> Vec<UsageRecord> {
        self.service.router().flush_usage().await.unwrap();
        self.store.usage_events(Some(agent)).await.unwrap()
    }
}

fn chats(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/chat/completions"))
        .count()
}

fn request() -> ChatRequest {
    ChatRequest::simple("", "Hello there")
}

/// (model, choice, reason) of a row.
fn choice(row: &UsageRecord) -> (String, Option<String>, Option<String>) {
    (
        row.model.clone(),
        row.served.choice.clone(),
        row.served.choice_reason.clone(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_three_to_one_holds_over_a_thousand_calls() {
    let b = Bench::new(resilience(5), None).await;
    b.agent("weighted", Strategy::Weighted, 3, 1).await;
    const CALLS: usize = 1000;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let service = b.service.clone();
            tokio::spawn(async move {
                let mut on_a = 0;
                for _ in 0..CALLS / 8 {
                    let answer = service.chat("weighted", request()).await.unwrap();
                    assert!(!answer.fallback, "{answer:?}");
                    on_a += usize::from(answer.model == MODEL_A);
                }
                on_a
            })
        })
        .collect();
    let mut on_a = 0;
    for task in tasks {
        on_a += task.await.unwrap();
    }
    // Each call picks `a` with p = 3/4, independently. Hoeffding:
    // P(|X - 750| >= t) <= 2 exp(-2 t^2 / n); t = 86, n = 1000 gives
    // 2 exp(-14.79) < 7.7e-7: the false-failure probability is below 1e-6.
    assert!(
        (750 - 86..=750 + 86).contains(&on_a),
        "{on_a} of {CALLS} on the weight-3 config"
    );
    assert_eq!((chats(&b.a), chats(&b.b)), (on_a, CALLS - on_a));
    let rows = b.rows("weighted").await;
    assert_eq!(rows.len(), CALLS);
    for row in &rows {
        let (model, choice, reason) = choice(row);
        let expected = if model == MODEL_A {
            "weight 3 of 4"
        } else {
            "weight 1 of 4"
        };
        assert_eq!(
            (choice.as_deref(), reason.as_deref()),
            (Some("weighted"), Some(expected))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn least_in_flight_spreads_concurrent_calls() {
    let b = Bench::new(resilience(5), None).await;
    b.agent("spread", Strategy::LeastInFlight, 1, 1).await;
    b.a.set_answer_delay(Duration::from_millis(1500));
    b.b.set_answer_delay(Duration::from_millis(1500));
    // Each call starts once the one before reached its vendor, so it
    // sees the calls in flight.
    let mut calls = Vec::new();
    for n in 1..=4 {
        let service = b.service.clone();
        calls.push(tokio::spawn(async move {
            service.chat("spread", request()).await
        }));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while chats(&b.a) + chats(&b.b) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "call {n} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!((chats(&b.a), chats(&b.b)), (2, 2));
    let mut reasons: Vec<_> = b.rows("spread").await.iter().map(choice).collect();
    reasons.sort();
    let row = |model: &str, reason: &str| {
        (
            model.to_owned(),
            Some("least_in_flight".to_owned()),
            Some(reason.to_owned()),
        )
    };
    // Ties keep the configs' order: a, then b, then a, then b.
    assert_eq!(
        reasons,
        [
            row(MODEL_B, "0 in flight, the fewest"),
            row(MODEL_B, "1 in flight, the fewest"),
            row(MODEL_A, "0 in flight, the fewest"),
            row(MODEL_A, "1 in flight, the fewest"),
        ]
    );
}

/// Streams a call for `agent` to its end; the model that served it.
async fn stream_once(service: &ConfigService, agent: &str) -> String {
    let mut stream = service.stream(agent, request()).await.unwrap();
    while let Some(chunk) = stream.next().await {
        if let Err(err) = chunk {
            panic!("{err}");
        }
        let _: Chunk = chunk.unwrap();
    }
    stream.model().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn lowest_latency_moves_streams_away_from_a_slowed_route() {
    let b = Bench::new(resilience(5), None).await;
    b.agent("quick", Strategy::LowestLatency, 1, 1).await;
    // Both unmeasured: each is probed once, in the configs' order.
    assert_eq!(stream_once(&b.service, "quick").await, MODEL_A);
    assert_eq!(stream_once(&b.service, "quick").await, MODEL_B);
    // `a` becomes slow: at most a few calls more find it out, then every
    // call goes to `b`.
    b.a.set_answer_delay(Duration::from_millis(400));
    let mut served = Vec::new();
    for _ in 0..12 {
        served.push(stream_once(&b.service, "quick").await);
    }
    let on_a = served.iter().filter(|m| *m == MODEL_A).count();
    assert!(on_a <= 2, "{served:?}");
    assert!(served[4..].iter().all(|m| m == MODEL_B), "{served:?}");
    let rows = b.rows("quick").await;
    let (_, strategy, reason) = choice(rows.last().unwrap());
    assert_eq!(strategy.as_deref(), Some("lowest_latency"));
    let reason = reason.unwrap();
    assert!(
        reason.starts_with("ttft ") && reason.contains("the lowest (others "),
        "{reason}"
    );
    assert_eq!(
        choice(&rows[0]).2.as_deref(),
        Some("ttft not measured yet: tried first")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_circuit_takes_a_route_out() {
    let b = Bench::new(resilience(3), None).await;
    b.agent("tripped", Strategy::LeastInFlight, 1, 1).await;
    for _ in 0..10 {
        b.a.enqueue(
            Vendor::OpenAi,
            Reply::openai_error(500, "server_error", None, "internal error"),
        );
    }
    // Calls one at a time: `a` is first (a tie keeps the configs' order)
    // until three failures open its circuit; `b` serves each as fallback.
    for _ in 0..8 {
        let answer = b.service.chat("tripped", request()).await.unwrap();
        assert_eq!(answer.model, MODEL_B);
    }
    assert_eq!(chats(&b.a), 3, "the open circuit sent nothing more");
    assert_eq!(chats(&b.b), 8);
    let rows = b.rows("tripped").await;
    let served: Vec<_> = rows.iter().filter(|r| r.model == MODEL_B).collect();
    let skipped = format!(
        "0 in flight, the fewest; openai/{MODEL_A} at {} skipped: circuit open",
        b.a.base_url(Vendor::OpenAi)
    );
    assert_eq!(
        served
            .iter()
            .map(|r| r.served.choice_reason.as_deref().unwrap())
            .filter(|reason| *reason == skipped)
            .count(),
        5,
        "{served:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_rate_limit_takes_a_route_out() {
    // One request a minute on `a`'s model: its bucket is spent after one
    // call for far longer than the test takes.
    let overrides =
        format!("[[model]]\nprovider = \"openai\"\nid = \"{MODEL_A}\"\nrequests_per_minute = 1\n");
    let b = Bench::new(resilience(5), Some(&overrides)).await;
    b.agent("limited", Strategy::LeastInFlight, 1, 1).await;
    let models: Vec<String> = {
        let mut models = Vec::new();
        for _ in 0..4 {
            models.push(b.service.chat("limited", request()).await.unwrap().model);
        }
        models
    };
    assert_eq!(models, [MODEL_A, MODEL_B, MODEL_B, MODEL_B]);
    assert_eq!((chats(&b.a), chats(&b.b)), (1, 3));
    let rows = b.rows("limited").await;
    let reason = rows[1].served.choice_reason.clone().unwrap();
    assert_eq!(
        reason,
        format!(
            "0 in flight, the fewest; openai/{MODEL_A} at {} skipped: rate limit spent",
            b.a.base_url(Vendor::OpenAi)
        )
    );
    assert!(!rows[1].fallback, "chosen first, not a fallback");
}

/// A request of about 3,000 tokens, asking for 100 more.
fn long_request() -> ChatRequest {
    let mut request = ChatRequest::simple("", "lorem ipsum dolor sit amet ".repeat(600));
    request.max_tokens = Some(100);
    request
}

const SMALL_WINDOW: &str = r#"
[[model]]
provider = "openai"
id = "gpt-4o-mini"
context_window = 1000
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_request_too_large_for_the_window_goes_to_the_context_fallback() {
    let b = Bench::new(resilience(5), Some(SMALL_WINDOW)).await;
    b.service.create_agent("roomy", None).await.unwrap();
    let mut config = b.config(&b.a, MODEL_A, 1);
    config.fields.context_fallback_provider = Some("openai".into());
    config.fields.context_fallback_model = Some(MODEL_B.into());
    b.service.create_config("roomy", config).await.unwrap();

    // A short request fits the small window. (Without max_tokens it would
    // not: 4,096 tokens are reserved for the answer.)
    let mut short = request();
    short.max_tokens = Some(100);
    let answer = b.service.chat("roomy", short).await.unwrap();
    assert_eq!((answer.model.as_str(), answer.fallback), (MODEL_A, false));
    // A long one goes to the larger model, same key and base URL.
    let answer = b.service.chat("roomy", long_request()).await.unwrap();
    assert_eq!((answer.model.as_str(), answer.fallback), (MODEL_B, true));
    let sent = b.a.requests();
    let last: serde_json::Value = serde_json::from_slice(&sent.last().unwrap().body).unwrap();
    assert_eq!(last["model"], MODEL_B);
    assert_eq!(chats(&b.a), 2);

    let rows = b.rows("roomy").await;
    assert_eq!(choice(&rows[0]), (MODEL_A.to_owned(), None, None));
    let (model, strategy, reason) = choice(&rows[1]);
    assert_eq!(
        (model.as_str(), strategy.as_deref()),
        (MODEL_B, Some("context_window"))
    );
    let reason = reason.unwrap();
    assert!(
        reason.contains(" input + 100 max_tokens > 1,000 context window of openai/gpt-4o-mini")
            && reason.ends_with("; openai/gpt-4o has 128,000"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_too_large_without_a_context_fallback_fails_before_sending() {
    let b = Bench::new(resilience(5), Some(SMALL_WINDOW)).await;
    b.service.create_agent("cramped", None).await.unwrap();
    b.service
        .create_config("cramped", b.config(&b.a, MODEL_A, 1))
        .await
        .unwrap();
    let err = b
        .service
        .chat("cramped", long_request())
        .await
        .expect_err("does not fit");
    assert_eq!(err.kind(), "token_limit_exceeded", "{err}");
    let message = err.to_string();
    assert!(
        message.contains(" input + 100 max_tokens > 1,000 context window of openai/gpt-4o-mini")
            && message.contains("nothing was sent"),
        "{message}"
    );
    let input: u64 = message
        .split(" input + ")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .map(|n| n.replace(',', "").parse().unwrap())
        .unwrap();
    assert!((2_000..5_000).contains(&input), "{message}");
    assert!(b.a.requests().is_empty(), "the simulator saw no request");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_whose_window_is_unknown_is_sent_as_it_is() {
    let unknown = "[[model]]\nprovider = \"openai\"\nid = \"gpt-4o-mini\"\ncontext_window = 0\n";
    let b = Bench::new(resilience(5), Some(unknown)).await;
    b.service.create_agent("unknowing", None).await.unwrap();
    b.service
        .create_config("unknowing", b.config(&b.a, MODEL_A, 1))
        .await
        .unwrap();
    let answer = b.service.chat("unknowing", long_request()).await.unwrap();
    assert_eq!(answer.model, MODEL_A);
    assert_eq!(chats(&b.a), 1);
}
