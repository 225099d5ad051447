//! `GET /metrics`: the gateway's figures in the Prometheus (OpenMetrics)
//! text format.
//!
//! Attempt-level figures (attempts and their errors by kind, retries,
//! fallbacks, tokens, cost, latency, time to first token) come from the
//! usage events, through a sink that counts each event before handing it
//! on: one source for the usage table and the metrics. Request-level
//! figures (requests by protocol, route and status, and their latency) are
//! counted by the server. Breaker states and instance-pool use are read
//! when scraped.
//!
//! Label values are bounded: routes are counted only once resolved to a
//! loaded provider or an agent (anything else is `-`), and models as the
//! router names them.

use crate::router::{FlushFuture, UsageSink};
use crate::store::{UsageEvent, UsageOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    protocol: &'static str,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    protocol: &'static str,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    provider: String,
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    provider: String,
    model: String,
    route: String,
    /// `ok`, or the error kind (`rate_limited`, `timeout`, …).
    outcome: String,
    streamed: bool,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    provider: String,
    model: String,
    /// `input`, `output`, `cache_read`, `cache_write`, `reasoning`.
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChoiceLabels {
    agent: String,
    provider: String,
    model: String,
    /// `weighted`, `least_in_flight`, `lowest_latency`, `context_window`.
    strategy: String,
    /// See [`crate::router::reason_label`].
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    provider: String,
    base_url: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SharedLabels {
    /// `rate_limit`, `budget_reserve`, `budget_seed`, `budget_settle`,
    /// `revocations`, `ping`.
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    /// `hit`, `miss` or `bypass`.
    result: &'static str,
}

/// Seconds: 1 ms to about 2 minutes.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        120.0,
    ]
    .into_iter()
}

fn histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// Every figure the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    attempts: Family<AttemptLabels, Counter>,
    retries: Family<ModelLabels, Counter>,
    fallbacks: Family<ModelLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<ModelLabels, Counter<f64, AtomicU64>>,
    attempt_seconds: Family<ModelLabels, Histogram, fn() -> Histogram>,
    first_token_seconds: Family<ModelLabels, Histogram, fn() -> Histogram>,
    breakers: Family<BreakerLabels, Gauge>,
    choices: Family<ChoiceLabels, Counter>,
    instances_in_use: Gauge,
    instances_max: Gauge,
    cache_lookups: Family<CacheLabels, Counter>,
    cache_evictions: Counter,
    cache_bytes: Gauge,
    cache_entries: Gauge,
    cache_max_bytes: Gauge,
    shared_unavailable: Family<SharedLabels, Counter>,
    shared_up: Gauge,
    shared: std::sync::OnceLock<Arc<crate::shared::Redis>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Empty figures, registered under `llmhost_`.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("llmhost");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "gateway_requests",
            "Gateway requests by protocol, route (PROVIDER/MODEL or agent:NAME) and HTTP status",
            requests.clone(),
        );
        let request_seconds = Family::new_with_constructor(histogram as fn() -> Histogram);
        registry.register(
            "gateway_request_duration_seconds",
            "Time to the response head (for streams, to the first chunk)",
            request_seconds.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "attempts",
            "Provider attempts by outcome: ok or the error kind",
            attempts.clone(),
        );
        let retries = Family::<ModelLabels, Counter>::default();
        registry.register(
            "retries",
            "Attempts after the first of a call",
            retries.clone(),
        );
        let fallbacks = Family::<ModelLabels, Counter>::default();
        registry.register(
            "fallbacks",
            "Calls answered by a route other than their first",
            fallbacks.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register("tokens", "Tokens by kind", tokens.clone());
        let cost = Family::<ModelLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "cost_usd",
            "Cost in USD (exact in the usage table; a float here)",
            cost.clone(),
        );
        let attempt_seconds = Family::new_with_constructor(histogram as fn() -> Histogram);
        registry.register(
            "attempt_duration_seconds",
            "Duration of each provider attempt (streams: to their end)",
            attempt_seconds.clone(),
        );
        let first_token_seconds = Family::new_with_constructor(histogram as fn() -> Histogram);
        registry.register(
            "time_to_first_token_seconds",
            "Time from a streamed attempt's request to its first content chunk",
            first_token_seconds.clone(),
        );
        let breakers = Family::<BreakerLabels, Gauge>::default();
        registry.register(
            "circuit_breaker_state",
            "1 for the state each provider and base URL's circuit is in",
            breakers.clone(),
        );
        let choices = Family::<ChoiceLabels, Counter>::default();
        registry.register(
            "route_choices",
            "Attempts on a route a balancing strategy or the context window chose, by agent, provider, model, strategy and reason",
            choices.clone(),
        );
        let instances_in_use = Gauge::default();
        registry.register(
            "plugin_instances_in_use",
            "Plugin instances running now",
            instances_in_use.clone(),
        );
        let instances_max = Gauge::default();
        registry.register(
            "plugin_instances_max",
            "Most plugin instances that may run at once",
            instances_max.clone(),
        );
        let cache_lookups = Family::<CacheLabels, Counter>::default();
        registry.register(
            "response_cache_requests",
            "Calls with a response cache policy by result: hit, miss or bypass",
            cache_lookups.clone(),
        );
        let cache_evictions = Counter::default();
        registry.register(
            "response_cache_evictions",
            "Answers removed from the response cache to make room",
            cache_evictions.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "response_cache_bytes",
            "Bytes of answers the response cache holds",
            cache_bytes.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "response_cache_entries",
            "Answers the response cache holds",
            cache_entries.clone(),
        );
        let cache_max_bytes = Gauge::default();
        registry.register(
            "response_cache_max_bytes",
            "The bound of the response cache's bytes",
            cache_max_bytes.clone(),
        );
        let shared_unavailable = Family::<SharedLabels, Counter>::default();
        registry.register(
            "shared_state_unavailable",
            "Operations on the shared state (Redis) that failed because it could not be reached, \
             by operation",
            shared_unavailable.clone(),
        );
        let shared_up = Gauge::default();
        registry.register(
            "shared_state_up",
            "Whether the last operation on the shared state (Redis) reached it (1) or not (0)",
            shared_up.clone(),
        );
        Arc::new(Self {
            registry,
            requests,
            request_seconds,
            attempts,
            retries,
            fallbacks,
            tokens,
            cost,
            attempt_seconds,
            first_token_seconds,
            breakers,
            choices,
            instances_in_use,
            instances_max,
            cache_lookups,
            cache_evictions,
            cache_bytes,
            cache_entries,
            cache_max_bytes,
            shared_unavailable,
            shared_up,
            shared: std::sync::OnceLock::new(),
        })
    }

    /// Reports the shared state's availability (when scraped) from
    /// `redis`.
    pub fn watch_shared(&self, redis: Arc<crate::shared::Redis>) {
        let _ = self.shared.set(redis);
    }

    /// A sink counting each usage event, then handing it to `inner`.
    pub fn sink(self: &Arc<Self>, inner: Arc<dyn UsageSink>) -> Arc<dyn UsageSink> {
        Arc::new(MeteredSink {
            metrics: self.clone(),
            inner,
        })
    }

    /// Counts one answered request.
    pub(crate) fn request(
        &self,
        protocol: &'static str,
        route: Option<&str>,
        status: u16,
        seconds: f64,
    ) {
        let route = route.unwrap_or("-").to_owned();
        self.requests
            .get_or_create(&RequestLabels {
                protocol,
                route: route.clone(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels { protocol, route })
            .observe(seconds);
    }

    fn observe(&self, event: &UsageEvent) {
        if event.served.cache_hit {
            // Not a provider attempt: counted by the response cache's
            // figures, read when scraped.
            return;
        }
        let model = ModelLabels {
            provider: event.provider.clone(),
            model: event.model.clone(),
        };
        let outcome = match &event.outcome {
            UsageOutcome::Ok => "ok".to_owned(),
            UsageOutcome::Error(kind) => kind.as_str().to_owned(),
        };
        let ok = matches!(event.outcome, UsageOutcome::Ok);
        self.attempts
            .get_or_create(&AttemptLabels {
                provider: event.provider.clone(),
                model: event.model.clone(),
                route: event.route.clone().unwrap_or_else(|| "-".to_owned()),
                outcome,
                streamed: event.streamed,
            })
            .inc();
        if let (Some(strategy), Some(reason)) = (&event.served.choice, &event.served.choice_reason)
        {
            self.choices
                .get_or_create(&ChoiceLabels {
                    agent: event.agent_name.clone().unwrap_or_else(|| "-".to_owned()),
                    provider: event.provider.clone(),
                    model: event.model.clone(),
                    strategy: strategy.clone(),
                    reason: crate::router::reason_label(strategy, reason),
                })
                .inc();
        }
        if event.attempt > 1 {
            self.retries.get_or_create(&model).inc();
        }
        if ok && event.fallback {
            self.fallbacks.get_or_create(&model).inc();
        }
        for (kind, count) in [
            ("input", event.input_tokens),
            ("output", event.output_tokens),
            ("cache_read", event.cache_read_tokens),
            ("cache_write", event.cache_write_tokens),
            ("reasoning", event.reasoning_tokens),
        ] {
            if count > 0 {
                self.tokens
                    .get_or_create(&TokenLabels {
                        provider: event.provider.clone(),
                        model: event.model.clone(),
                        kind,
                    })
                    .inc_by(count);
            }
        }
        if let Some(cost) = event.cost_usd {
            use llmhost_registry::rust_decimal::prelude::ToPrimitive;
            self.cost
                .get_or_create(&model)
                .inc_by(cost.to_f64().unwrap_or(0.0));
        }
        self.attempt_seconds
            .get_or_create(&model)
            .observe(event.latency.as_secs_f64());
        if let Some(ttft) = event.time_to_first_token {
            self.first_token_seconds
                .get_or_create(&model)
                .observe(ttft.as_secs_f64());
        }
    }

    /// The text exposition, with the gauges read now from `router`.
    pub(crate) fn render(&self, router: &crate::router::Router) -> String {
        self.breakers.clear();
        for (provider, base_url, state) in router.breakers().states() {
            self.breakers
                .get_or_create(&BreakerLabels {
                    provider,
                    base_url,
                    state,
                })
                .set(1);
        }
        let (in_use, max) = router.host().instances();
        self.instances_in_use
            .set(i64::try_from(in_use).unwrap_or(i64::MAX));
        self.instances_max
            .set(i64::try_from(max).unwrap_or(i64::MAX));
        let cache = router.cache_stats();
        for (result, count) in [
            ("hit", cache.hits),
            ("miss", cache.misses),
            ("bypass", cache.bypasses),
        ] {
            let counter = self.cache_lookups.get_or_create(&CacheLabels { result });
            counter.inc_by(count.saturating_sub(counter.get()));
        }
        self.cache_evictions
            .inc_by(cache.evictions.saturating_sub(self.cache_evictions.get()));
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.cache_bytes.set(gauge(cache.bytes));
        self.cache_entries.set(gauge(cache.entries));
        self.cache_max_bytes.set(gauge(cache.max_bytes));
        if let Some(redis) = self.shared.get() {
            self.shared_up.set(i64::from(redis.is_up()));
            for (operation, count) in redis.failures() {
                let counter = self
                    .shared_unavailable
                    .get_or_create(&SharedLabels { operation });
                counter.inc_by(count.saturating_sub(counter.get()));
            }
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// Counts, then forwards.
struct MeteredSink {
    metrics: Arc<Metrics>,
    inner: Arc<dyn UsageSink>,
}

impl UsageSink for MeteredSink {
    fn record(&self, event: UsageEvent) {
        self.metrics.observe(&event);
        self.inner.record(event);
    }

    fn flush(&self) -> FlushFuture<'_> {
        self.inner.flush()
    }
}
