//! The routing engine every call goes through: `Host::chat`, agent calls
//! and the gateway alike.
//!
//! A call is a [`Plan`]: the routes it may take, in order (a plain
//! provider/model target is one route; an agent's configs with their
//! fallback pairs are several), an attempt budget per route and a deadline
//! for the whole. The router applies the retry policy, the client-side
//! rate limits and the circuit breakers to each attempt, and hands every
//! attempt's usage event to a [`UsageSink`] without waiting for it to be
//! stored.

mod balance;
pub mod cache;
mod fit;
mod sink;

pub use balance::{EWMA_WEIGHT, Group, MEASURE_AGAIN_AFTER, Member, Strategy, reason_label};
pub use cache::{CachePolicy, CacheStats, CacheStatus};
pub use fit::DEFAULT_OUTPUT_RESERVATION;
pub use sink::{DiscardSink, FlushFuture, StoreSink, UsageSink};

use crate::error::{Error, ErrorKind};
use crate::host::{ChatOutcome, ChatStream, Host, Target};
use crate::resilience::{
    BreakerPolicy, Breakers, BucketKey, Next, Permit, RateLimiter, Reservation, Resilience,
    next_step,
};
use crate::store::{UsageEvent, UsageOutcome};
use crate::types::{ChatRequest, Chunk, ErrorDetail, ProviderError, Usage};
use llmhost_registry::Prices;
use llmhost_registry::rust_decimal::Decimal;
use secrecy::ExposeSecret;
use sha2::Digest;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Request fields a route fills in where the request leaves them unset.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RouteDefaults {
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub top_p: Option<f32>,
}

/// One place a call can go.
#[derive(Debug, Clone)]
pub struct Route {
    /// Provider, key, base URL and headers. Its `timeout`, when set, bounds
    /// each attempt (else the router's attempt timeout).
    pub target: Target,
    /// Replaces the request's model.
    pub model: String,
    pub defaults: RouteDefaults,
    /// Prices that bill this route instead of the catalogue's (an agent
    /// config's custom prices, cache prices resolved).
    pub prices: Option<Prices>,
    /// The agent config this route comes from.
    pub config_id: Option<i64>,
    /// Not the call's first choice.
    pub fallback: bool,
    /// How the planner put this route where it is: the strategy
    /// (`weighted`, `least_in_flight`, …) and why; recorded in its usage
    /// rows. `None`: the plan's own order.
    pub choice: Option<(String, String)>,
    /// Taken instead of this route when the request does not fit its
    /// model's context window (see the `fit` module).
    pub context_fallback: Option<Box<Route>>,
}

impl Route {
    /// The route of a plain target: `target` with `model`.
    pub fn new(target: Target, model: impl Into<String>) -> Self {
        Self {
            target,
            model: model.into(),
            defaults: RouteDefaults::default(),
            prices: None,
            config_id: None,
            fallback: false,
            choice: None,
            context_fallback: None,
        }
    }
}

/// Who a call is made for, copied into each of its usage events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallTags {
    /// The agent's id and name.
    pub agent: Option<(i64, String)>,
    /// The gateway's virtual key: id and name.
    pub virtual_key: Option<(i64, String)>,
    /// The id the caller sees; one is made when unset.
    pub request_id: Option<String>,
    /// What the caller asked for (`openai/gpt-4o-mini`, `agent:NAME`).
    pub route: Option<String>,
    /// The experiment the call is part of and its variant.
    pub experiment: Option<(String, String)>,
}

/// A call: routes in the order they are tried, and its limits.
#[derive(Debug, Clone)]
pub struct Plan {
    pub routes: Vec<Route>,
    /// Attempts per route; `None`: the retry policy's.
    pub max_attempts: Option<u32>,
    /// Budget of the whole call; `None`: the retry policy's.
    pub deadline: Option<Duration>,
    pub tags: CallTags,
    /// Groups of routes of one priority that the router orders by their
    /// strategy when the call starts; empty: the routes' own order.
    pub balance: Vec<Group>,
    /// Whether and how the response cache serves and stores the call;
    /// `None`: it does not.
    pub cache: Option<CachePolicy>,
}

impl Plan {
    /// A plan of one route.
    pub fn single(route: Route) -> Self {
        Self {
            routes: vec![route],
            max_attempts: None,
            deadline: None,
            tags: CallTags::default(),
            balance: Vec::new(),
            cache: None,
        }
    }

    /// Sets the tags.
    pub fn tags(mut self, tags: CallTags) -> Self {
        self.tags = tags;
        self
    }
}

/// What a routed call returns besides the answer.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The answer; its `cost_usd` uses the route's own prices when it has
    /// them.
    pub outcome: ChatOutcome,
    /// Index into the plan's routes of the one that answered.
    pub route: usize,
    pub provider: String,
    pub model: String,
    pub config_id: Option<i64>,
    /// Whether a route other than the first answered.
    pub fallback: bool,
    /// Attempts made, failed ones included.
    pub attempts: u32,
    /// The call's request id (also in its usage events).
    pub request_id: String,
    /// What the response cache did; `None` when the plan has no policy.
    pub cache: Option<CacheStatus>,
}

impl Routed {
    /// What the call used and cost, for budgets and rate limits: the
    /// answer's usage, or nothing for a cache hit.
    pub fn spent(&self) -> (Usage, Option<Decimal>) {
        if self.cache == Some(CacheStatus::Hit) {
            return (Usage::default(), Some(Decimal::ZERO));
        }
        (self.outcome.response.usage, self.outcome.cost_usd)
    }
}

/// Retry policy, rate limits, breakers and the usage sink: the state
/// routed calls share.
pub(crate) struct RoutingState {
    resilience: Resilience,
    limiter: RateLimiter,
    breakers: Arc<Breakers>,
    sink: Arc<dyn UsageSink>,
    loads: balance::Loads,
    cache: Arc<cache::ResponseCache>,
}

impl RoutingState {
    pub(crate) fn new(
        resilience: Resilience,
        sink: Arc<dyn UsageSink>,
        cache: Arc<cache::ResponseCache>,
    ) -> Arc<Self> {
        Self::with_shared(resilience, sink, cache, None)
    }

    /// [`RoutingState::new`] with the rate limits kept in `shared`
    /// (Redis) when given.
    pub(crate) fn with_shared(
        resilience: Resilience,
        sink: Arc<dyn UsageSink>,
        cache: Arc<cache::ResponseCache>,
        shared: Option<Arc<crate::shared::Redis>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            resilience,
            limiter: RateLimiter::new(shared.clone()),
            breakers: Arc::new(Breakers::with_shared(resilience.breaker, shared)),
            sink,
            loads: balance::Loads::default(),
            cache,
        })
    }
}

/// Routes calls over a [`Host`]. Cheap to clone; clones share breakers,
/// rate limits and the usage sink.
#[derive(Clone)]
pub struct Router {
    host: Host,
    state: Arc<RoutingState>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("resilience", &self.state.resilience)
            .finish()
    }
}

impl Router {
    /// A router with its own breakers, rate limits and response cache (of
    /// [`cache::DEFAULT_MAX_BYTES`]), recording to `sink`.
    pub fn new(host: Host, resilience: Resilience, sink: Arc<dyn UsageSink>) -> Self {
        let cache = cache::ResponseCache::in_memory(cache::DEFAULT_MAX_BYTES);
        Self {
            host,
            state: RoutingState::new(resilience, sink, cache),
        }
    }

    pub(crate) fn with_state(host: Host, state: Arc<RoutingState>) -> Self {
        Self { host, state }
    }

    /// The host whose plugins serve the calls.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The retry, breaker and timeout policy.
    pub fn resilience(&self) -> Resilience {
        self.state.resilience
    }

    /// The breaker policy.
    pub fn breaker_policy(&self) -> BreakerPolicy {
        self.state.resilience.breaker
    }

    /// The circuit breakers, for reports.
    pub fn breakers(&self) -> &Breakers {
        &self.state.breakers
    }

    /// The same host, sink and response cache with another policy, and
    /// fresh breakers and rate limits.
    pub fn with_resilience(&self, resilience: Resilience) -> Self {
        let state = RoutingState::with_shared(
            resilience,
            self.state.sink.clone(),
            self.state.cache.clone(),
            self.state.limiter.shared(),
        );
        Self::with_state(self.host.clone(), state)
    }

    /// The same host, policy and response cache writing usage to `sink`,
    /// with fresh breakers and rate limits.
    pub fn with_sink(&self, sink: Arc<dyn UsageSink>) -> Self {
        let state = RoutingState::with_shared(
            self.state.resilience,
            sink,
            self.state.cache.clone(),
            self.state.limiter.shared(),
        );
        Self::with_state(self.host.clone(), state)
    }

    /// What the response cache has done and holds.
    pub fn cache_stats(&self) -> CacheStats {
        self.state.cache.stats()
    }

    /// Waits until every usage event recorded so far is stored.
    pub async fn flush_usage(&self) -> Result<(), Error> {
        self.state.sink.flush().await
    }

    /// One answer, along the plan's routes with retries and fallbacks.
    pub async fn chat(&self, plan: &Plan, request: &ChatRequest) -> Result<Routed, Error> {
        let plan = self.arrange(plan, false);
        let mut call = Call::start(self, &plan, request, false)?;
        let lookup = cache::Lookup::new(&self.state.cache, &plan, request, false).await;
        if let Some(routed) = lookup.serve(&self.state, &call.tags) {
            return Ok(routed);
        }
        loop {
            let ready = call.next_attempt().await?;
            // Dropped with the call's future while the vendor works on it
            // (a client that left), the attempt still gets its row.
            let in_flight = InFlight {
                state: &self.state,
                attempt: Some(ready.attempt.clone()),
            };
            let answered = self.host.chat_once(&ready.target, &ready.request).await;
            in_flight.landed();
            let mut outcome = match answered {
                Ok(outcome) => outcome,
                Err(err) => {
                    call.failed(ready, err).await?;
                    continue;
                }
            };
            ready.load.answered(ready.attempt.started.elapsed());
            let route = ready.route;
            let attempt = call.settle(ready, Some(&outcome.response.usage), None);
            outcome.cost_usd = attempt.cost(&outcome.response.usage, outcome.cost_usd);
            self.state.sink.record(attempt.event(
                Some(&outcome.response.usage),
                outcome.cost_usd,
                None,
                UsageOutcome::Ok,
            ));
            let routed = Routed {
                outcome,
                route,
                provider: attempt.provider,
                model: attempt.model,
                config_id: attempt.config_id,
                fallback: attempt.fallback,
                attempts: call.attempts,
                request_id: attempt.tags.request_id.clone().unwrap_or_default(),
                cache: lookup.status,
            };
            lookup.keep(&self.state.cache, &routed);
            return Ok(routed);
        }
    }

    /// A streamed answer, with the same routes, retries and fallbacks as
    /// [`Router::chat`] up to the first chunk with content; once a chunk
    /// reached the caller a failure ends the stream with its error. The
    /// serving attempt's usage event is recorded when the stream ends,
    /// fails or is dropped.
    pub async fn stream(&self, plan: &Plan, request: &ChatRequest) -> Result<RoutedStream, Error> {
        let plan = self.arrange(plan, true);
        let mut call = Call::start(self, &plan, request, true)?;
        let lookup = cache::Lookup::new(&self.state.cache, &plan, request, true).await;
        if let Some(stream) = self.replay(&lookup, &call.tags) {
            return Ok(stream);
        }
        loop {
            let ready = call.next_attempt().await?;
            let (stream, buffered) = match first_chunk(&self.host, &ready).await {
                Ok(started) => started,
                Err(err) => {
                    call.failed(ready, err).await?;
                    continue;
                }
            };
            ready.load.first_token(
                stream
                    .time_to_first_token()
                    .unwrap_or_else(|| ready.attempt.started.elapsed()),
            );
            let Ready {
                attempt,
                reservation,
                mut permit,
                route,
                load,
                ..
            } = ready;
            // The vendor is answering: a probe closes its circuit now
            // rather than holding every other call off for the length of
            // the stream. The stream's end still settles the permit.
            permit.answered();
            return Ok(RoutedStream {
                state: self.state.clone(),
                stream: cache::Source::Live(stream),
                buffered,
                attempt,
                reservation,
                permit: Some(permit),
                recorded: false,
                text: String::new(),
                route,
                attempts: call.attempts,
                on_end: Vec::new(),
                load: Some(load),
                cache: lookup.status,
                recorder: lookup.recorder(&self.state.cache),
            });
        }
    }

    /// The stored stream that serves the call, its usage row recorded.
    fn replay(&self, lookup: &cache::Lookup, tags: &CallTags) -> Option<RoutedStream> {
        let (stored, attempt) = lookup.hit(tags, true)?;
        let (replay, chunks) = cache::Replay::of(&stored, attempt.started)?;
        self.state.sink.record(attempt.event(
            Some(&Usage::default()),
            Some(Decimal::ZERO),
            None,
            UsageOutcome::Ok,
        ));
        Some(RoutedStream {
            state: self.state.clone(),
            stream: cache::Source::Replay(replay),
            buffered: chunks.into(),
            attempt,
            reservation: None,
            permit: None,
            recorded: true,
            text: String::new(),
            route: 0,
            attempts: 0,
            on_end: Vec::new(),
            cache: Some(CacheStatus::Hit),
            recorder: None,
            load: None,
        })
    }
}

/// An attempt on its way: recorded as `cancelled` if dropped before it
/// lands.
struct InFlight<'a> {
    state: &'a RoutingState,
    attempt: Option<Attempt>,
}

impl InFlight<'_> {
    fn landed(mut self) {
        self.attempt = None;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(attempt) = self.attempt.take() {
            let sent = Usage {
                input_tokens: u32::try_from(attempt.input_estimate).unwrap_or(u32::MAX),
                ..Usage::unreported()
            };
            self.state.sink.record(attempt.event(
                Some(&sent),
                None,
                None,
                UsageOutcome::Error(ErrorKind::Cancelled),
            ));
        }
    }
}

/// What is recorded for each attempt, fixed when it starts.
#[derive(Debug, Clone)]
struct Attempt {
    tags: CallTags,
    config_id: Option<i64>,
    provider: String,
    model: String,
    custom_prices: Option<Prices>,
    started: Instant,
    number: u32,
    fallback: bool,
    streamed: bool,
    /// Input tokens estimated from the request, for failures.
    input_estimate: u64,
    choice: Option<(String, String)>,
    /// A cache hit, with what the stored answer cost.
    cache_hit: Option<Option<Decimal>>,
}

impl Attempt {
    /// The route's own prices when it has them, else the catalogue's cost;
    /// nothing for a cache hit.
    fn cost(&self, usage: &Usage, catalogue: Option<Decimal>) -> Option<Decimal> {
        if self.cache_hit.is_some() {
            return Some(Decimal::ZERO);
        }
        match &self.custom_prices {
            Some(prices) => Some(prices.cost(&usage.billed())),
            None => catalogue,
        }
    }

    fn event(
        &self,
        usage: Option<&Usage>,
        cost: Option<Decimal>,
        ttft: Option<Duration>,
        outcome: UsageOutcome,
    ) -> UsageEvent {
        let usage = usage.copied().unwrap_or_else(Usage::unreported);
        let (agent_id, agent_name) = match &self.tags.agent {
            Some((id, name)) => (Some(*id), Some(name.clone())),
            None => (None, None),
        };
        let (virtual_key_id, virtual_key_name) = match &self.tags.virtual_key {
            Some((id, name)) => (Some(*id), Some(name.clone())),
            None => (None, None),
        };
        UsageEvent {
            agent_id,
            agent_name,
            config_id: self.config_id,
            virtual_key_id,
            virtual_key_name,
            request_id: self.tags.request_id.clone(),
            route: self.tags.route.clone(),
            provider: self.provider.clone(),
            model: self.model.clone(),
            input_tokens: u64::from(usage.input_tokens),
            output_tokens: u64::from(usage.output_tokens),
            cache_read_tokens: u64::from(usage.cache_read_tokens),
            cache_write_tokens: u64::from(usage.cache_write_tokens),
            cache_write_hour_tokens: u64::from(usage.cache_write_hour_tokens),
            reasoning_tokens: u64::from(usage.reasoning_tokens),
            estimated: usage.estimated,
            cost_usd: cost,
            latency: self.started.elapsed(),
            time_to_first_token: ttft,
            outcome,
            attempt: self.number,
            fallback: self.fallback,
            streamed: self.streamed,
            served: crate::store::Served {
                choice: self.choice.as_ref().map(|c| c.0.clone()),
                choice_reason: self.choice.as_ref().map(|c| c.1.clone()),
                experiment: self.tags.experiment.as_ref().map(|e| e.0.clone()),
                variant: self.tags.experiment.as_ref().map(|e| e.1.clone()),
                cache_hit: self.cache_hit.is_some(),
                saved_usd: self.cache_hit.flatten(),
            },
        }
    }

    fn failed(&self, error: &Error) -> UsageEvent {
        self.event(None, None, None, UsageOutcome::Error(error.kind()))
    }
}

/// The request as a route shapes it: the route's model always; its
/// defaults where the request sets none.
fn shape(route: &Route, request: &ChatRequest) -> ChatRequest {
    let mut request = request.clone();
    request.model.clone_from(&route.model);
    request.temperature = request.temperature.or(route.defaults.temperature);
    request.max_tokens = request.max_tokens.or(route.defaults.max_tokens);
    request.top_p = request.top_p.or(route.defaults.top_p);
    request
}

/// A rough count of the request's input tokens (four bytes a token), for
/// rate limits and for failures that report no usage.
pub(crate) fn estimate_input(request: &ChatRequest) -> u64 {
    let bytes: usize = request
        .messages
        .iter()
        .map(|m| m.text_content().len() + 4)
        .sum();
    (bytes as u64).div_ceil(4)
}

fn client_rate_limited(provider: &str, wait: Duration) -> Error {
    Error::Provider {
        provider: provider.to_owned(),
        error: Box::new(ProviderError::RateLimited(ErrorDetail {
            message: format!(
                "the configured rate limit would delay this call past its deadline (free in {:.1}s)",
                wait.as_secs_f64()
            ),
            status: None,
            vendor_code: Some("client_rate_limit".into()),
            request_id: None,
            retry_after_ms: Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
        })),
    }
}

/// The rate-limit bucket of `route` reached with `target`'s key.
fn bucket_key(route: &Route, target: &Target) -> BucketKey {
    let key_id = target
        .api_key
        .as_ref()
        .map(|k| hex::encode(&sha2::Sha256::digest(k.expose_secret().as_bytes())[..8]))
        .unwrap_or_default();
    BucketKey {
        provider: route.target.provider.clone(),
        model: route.model.clone(),
        key_id,
    }
}

/// Whether an error says the vendor is unwell (counts for its breaker).
fn unwell(error: &Error) -> bool {
    match error {
        Error::Provider { error, .. } => matches!(
            error.as_ref(),
            ProviderError::Overloaded(_)
                | ProviderError::ServerError(_)
                | ProviderError::Timeout(_)
                | ProviderError::Network(_)
        ),
        Error::Timeout { .. } => true,
        _ => false,
    }
}

/// A call in progress: its routes, deadline and attempt count.
struct Call<'a> {
    router: &'a Router,
    plan: &'a Plan,
    tags: CallTags,
    request: &'a ChatRequest,
    deadline: Instant,
    max_attempts: u32,
    /// Attempts made so far, on all routes.
    attempts: u32,
    streamed: bool,
    /// The route being tried and the attempts made on it.
    route_index: usize,
    tries_on_route: u32,
    /// The failure of the last route given up, returned if none is left.
    last_error: Option<Error>,
    /// Sent as the idempotency key of every attempt of the call.
    idempotency_key: String,
    /// The request's input tokens, counted once for the context windows.
    input_counts: fit::InputCounts,
}

/// An attempt ready to go: its target, shaped request and accounting.
/// Dropped unused (the call's future was cancelled), its breaker permit
/// settles itself.
struct Ready {
    route: usize,
    target: Target,
    request: ChatRequest,
    attempt: Attempt,
    reservation: Option<Reservation>,
    permit: Permit,
    /// Counts the attempt in flight on its route until dropped.
    load: balance::Load,
}

/// Opens a stream and reads up to its first chunk with content; what came
/// before it (the start) is kept for the caller.
async fn first_chunk(host: &Host, ready: &Ready) -> Result<(ChatStream, VecDeque<Chunk>), Error> {
    let mut stream = host.stream_once(&ready.target, &ready.request).await?;
    let mut buffered = VecDeque::new();
    loop {
        match stream.next().await {
            Some(Ok(chunk)) => {
                let content = !matches!(chunk, Chunk::Start(_));
                buffered.push_back(chunk);
                if content {
                    break;
                }
            }
            Some(Err(err)) => return Err(err),
            None => break,
        }
    }
    Ok((stream, buffered))
}

/// Why an attempt could not start.
enum Skip {
    NextRoute(Error),
    Fail(Error),
}

/// What follows a failed attempt.
enum AfterFailure {
    Retry,
    NextRoute(Error),
    Fail(Error),
}

impl<'a> Call<'a> {
    fn start(
        router: &'a Router,
        plan: &'a Plan,
        request: &'a ChatRequest,
        streamed: bool,
    ) -> Result<Self, Error> {
        if plan.routes.is_empty() {
            return Err(Error::Validation {
                field: "routes",
                message: "a call needs at least one route".into(),
            });
        }
        let policy = router.state.resilience.retry;
        let mut tags = plan.tags.clone();
        let request_id = tags
            .request_id
            .get_or_insert_with(crate::host::new_request_id)
            .clone();
        let idempotency_key = plan.routes[0]
            .target
            .idempotency_key
            .clone()
            .unwrap_or(request_id);
        Ok(Self {
            router,
            plan,
            tags,
            request,
            deadline: Instant::now() + plan.deadline.unwrap_or(policy.deadline),
            max_attempts: plan.max_attempts.unwrap_or(policy.max_attempts).max(1),
            attempts: 0,
            streamed,
            route_index: 0,
            tries_on_route: 0,
            last_error: None,
            idempotency_key,
            input_counts: fit::InputCounts::default(),
        })
    }

    /// The next attempt to make, on the current route or the next one
    /// that can take it; the call's error once no route is left.
    async fn next_attempt(&mut self) -> Result<Ready, Error> {
        loop {
            let Some(route) = self.plan.routes.get(self.route_index) else {
                let last = self.last_error.take();
                return Err(self.exhausted(last));
            };
            if self.tries_on_route >= self.max_attempts {
                self.next_route();
                continue;
            }
            match self.prepare(self.route_index, route).await {
                Ok(ready) => {
                    self.tries_on_route += 1;
                    return Ok(ready);
                }
                Err(Skip::NextRoute(err)) => {
                    self.last_error = Some(err);
                    self.next_route();
                }
                Err(Skip::Fail(err)) => return Err(err),
            }
        }
    }

    /// Gives up the current route; past the deadline, all of them.
    fn next_route(&mut self) {
        self.tries_on_route = 0;
        self.route_index = if self.deadline <= Instant::now() {
            self.plan.routes.len()
        } else {
            self.route_index + 1
        };
    }

    /// Accounts for a failed attempt (rate limit, breaker, usage event) and
    /// decides: `Ok` to go on (after waiting for a retry), or the call's
    /// error.
    async fn failed(&mut self, ready: Ready, err: Error) -> Result<(), Error> {
        let attempt = self.settle(ready, None, Some(&err));
        self.router.state.sink.record(attempt.failed(&err));
        match self.after_failure(err, self.tries_on_route).await {
            AfterFailure::Retry => Ok(()),
            AfterFailure::NextRoute(err) => {
                self.last_error = Some(err);
                self.next_route();
                Ok(())
            }
            AfterFailure::Fail(err) => Err(err),
        }
    }

    /// Checks the breaker, the deadline and the rate limit, and builds the
    /// attempt.
    async fn prepare(&mut self, index: usize, route: &'a Route) -> Result<Ready, Skip> {
        let state = &self.router.state;
        let host = &self.router.host;
        let route =
            fit::fit(host, route, self.request, &mut self.input_counts).map_err(Skip::NextRoute)?;
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let provider = &route.target.provider;
        if remaining.is_zero() {
            return Err(Skip::NextRoute(Error::Timeout {
                provider: provider.clone(),
                after: Duration::ZERO,
            }));
        }
        let mut target = route.target.clone();
        target.idempotency_key = Some(self.idempotency_key.clone());
        let attempt_timeout = route
            .target
            .timeout
            .or(state.resilience.attempt_timeout)
            .unwrap_or_else(|| host.default_timeout());
        target.timeout = Some(attempt_timeout.min(remaining));
        let base_url = host.base_url_of(&target).map_err(Skip::Fail)?;
        // Held from here until the attempt's outcome is known; every early
        // return below settles or drops it.
        let permit = match state.breakers.admit(provider, &base_url) {
            Ok(permit) => permit,
            Err(wait) => {
                return Err(Skip::NextRoute(Error::CircuitOpen {
                    provider: provider.clone(),
                    base_url,
                    retry_after: wait,
                }));
            }
        };
        let request = shape(&route, self.request);
        let input_estimate = estimate_input(&request);
        let limits = host
            .catalogue()
            .get(provider, &route.model)
            .map(|m| m.rate_limits)
            .unwrap_or_default();
        let reservation =
            if limits.requests_per_minute.is_some() || limits.tokens_per_minute.is_some() {
                let key = bucket_key(&route, &target);
                let tokens = input_estimate + u64::from(request.max_tokens.unwrap_or(0));
                match state
                    .limiter
                    .acquire_shared(&key, limits, tokens, self.deadline)
                    .await
                {
                    Ok(reservation) => Some(reservation),
                    Err(refusal) => {
                        // Nothing was sent: a probe is released for the
                        // next call rather than reopening the circuit.
                        permit.neutral();
                        return Err(match refusal {
                            crate::resilience::Refusal::Wait(wait) => {
                                Skip::NextRoute(client_rate_limited(provider, wait))
                            }
                            crate::resilience::Refusal::Unavailable(err) => Skip::Fail(err),
                        });
                    }
                }
            } else {
                None
            };
        // The wait for the limiter counts against the deadline.
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        target.timeout = Some(attempt_timeout.min(remaining).max(Duration::from_millis(1)));
        self.attempts += 1;
        let attempt = Attempt {
            tags: self.tags.clone(),
            config_id: route.config_id,
            provider: provider.clone(),
            model: route.model.clone(),
            custom_prices: route.prices,
            started: Instant::now(),
            number: self.attempts,
            fallback: route.fallback,
            streamed: self.streamed,
            input_estimate,
            choice: route.choice.clone(),
            cache_hit: None,
        };
        let load = state.loads.start(provider, &base_url, &route.model);
        Ok(Ready {
            route: index,
            target,
            request,
            attempt,
            reservation,
            permit,
            load,
        })
    }

    /// Settles the rate limit and the breaker after an attempt; what is
    /// left is its accounting.
    fn settle(&self, ready: Ready, usage: Option<&Usage>, error: Option<&Error>) -> Attempt {
        settle_limit(
            &self.router.state,
            ready.reservation.as_ref(),
            &ready.attempt,
            usage,
        );
        settle_breaker(ready.permit, error);
        ready.attempt
    }

    /// Decides what follows a failure, waiting before a retry.
    async fn after_failure(&self, err: Error, try_number: u32) -> AfterFailure {
        match next_step(&err, false) {
            Next::Stop => AfterFailure::Fail(err),
            Next::Fallback => AfterFailure::NextRoute(err),
            Next::Retry if try_number >= self.max_attempts => AfterFailure::NextRoute(err),
            Next::Retry => {
                let wait = self.router.state.resilience.retry.delay(try_number, &err);
                if Instant::now() + wait >= self.deadline {
                    return AfterFailure::NextRoute(err);
                }
                tracing::info!(error = %err, wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
                AfterFailure::Retry
            }
        }
    }

    /// The error of a call whose routes are all spent.
    fn exhausted(&self, last: Option<Error>) -> Error {
        last.unwrap_or_else(|| Error::Timeout {
            provider: self.plan.routes[0].target.provider.clone(),
            after: Duration::ZERO,
        })
    }
}

/// Charges the rate limit with the tokens an attempt used.
fn settle_limit(
    state: &RoutingState,
    reservation: Option<&Reservation>,
    attempt: &Attempt,
    usage: Option<&Usage>,
) {
    if let Some(reservation) = reservation {
        let used = usage
            .map(|u| u64::from(u.input_tokens) + u64::from(u.output_tokens))
            .unwrap_or(attempt.input_estimate);
        state.limiter.settle(reservation, used);
    }
}

/// Settles an attempt's breaker permit with how it ended.
fn settle_breaker(permit: Permit, error: Option<&Error>) {
    match error {
        None => permit.success(),
        Some(err) if unwell(err) => permit.failure(),
        Some(_) => permit.neutral(),
    }
}

/// A routed, streamed answer. Read it like a [`ChatStream`]; its usage
/// event is recorded when it ends (before `next` returns `None` or the
/// error), or when it is dropped unfinished (as a `cancelled` error with
/// the usage seen so far). A stream cut after its first chunk is not
/// retried; its event holds an estimate of what was received.
pub struct RoutedStream {
    state: Arc<RoutingState>,
    stream: cache::Source,
    buffered: VecDeque<Chunk>,
    attempt: Attempt,
    reservation: Option<Reservation>,
    /// Settled when the stream ends; `None` after. Dropped with the
    /// stream, it records nothing (the vendor had answered its first
    /// chunk, which already closed a probed circuit).
    permit: Option<Permit>,
    recorded: bool,
    /// Text received, for an estimate when no usage arrives.
    text: String,
    route: usize,
    attempts: u32,
    /// Run once with what the stream used, when it ends or is dropped.
    on_end: Vec<EndHook>,
    /// Counts the stream in flight on its route until it ends or is
    /// dropped.
    load: Option<balance::Load>,
    cache: Option<CacheStatus>,
    /// Keeps the chunks for the response cache until the stream ends.
    recorder: Option<cache::Recorder>,
}

/// Told what a stream used (see [`RoutedStream::spent`]) when it ends.
pub(crate) type EndHook = Box<dyn FnOnce(&Usage, Option<Decimal>) + Send>;

impl RoutedStream {
    /// Runs `hook` with what the stream used when it ends, fails or is
    /// dropped (at once for a replay from the cache, which costs
    /// nothing).
    pub(crate) fn on_end(&mut self, hook: EndHook) {
        if self.cache == Some(CacheStatus::Hit) {
            let (usage, cost) = self.spent();
            hook(&usage, cost);
            return;
        }
        self.on_end.push(hook);
    }

    /// What the response cache did; `None` when the plan has no policy.
    pub fn cache_status(&self) -> Option<CacheStatus> {
        self.cache
    }

    fn run_end_hooks(&mut self) {
        if self.on_end.is_empty() {
            return;
        }
        let (usage, cost) = self.spent();
        for hook in self.on_end.drain(..) {
            hook(&usage, cost);
        }
    }

    /// The next chunk; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Chunk, Error>> {
        if let Some(chunk) = self.buffered.pop_front() {
            self.note(&chunk);
            return Some(Ok(chunk));
        }
        if self.recorded {
            return None;
        }
        match self.stream.next().await {
            Some(Ok(chunk)) => {
                self.note(&chunk);
                Some(Ok(chunk))
            }
            Some(Err(err)) => {
                self.finish(Some(&err));
                Some(Err(err))
            }
            None => {
                self.finish(None);
                None
            }
        }
    }

    fn note(&mut self, chunk: &Chunk) {
        if let Chunk::Text(text) | Chunk::Reasoning(text) = chunk {
            self.text.push_str(text);
        }
        if let Some(recorder) = &mut self.recorder
            && !recorder.note(chunk)
        {
            self.recorder = None;
        }
    }

    /// The reported usage, else an estimate of what was sent and received;
    /// nothing for a replay from the cache.
    fn accounted_usage(&self) -> Usage {
        if self.attempt.cache_hit.is_some() {
            return Usage::default();
        }
        self.stream.usage().unwrap_or_else(|| {
            let output = crate::runtime::tokenizer::count("o200k_base", &self.text)
                .unwrap_or_else(|_| u32::try_from(self.text.len().div_ceil(4)).unwrap_or(u32::MAX));
            Usage {
                input_tokens: u32::try_from(self.attempt.input_estimate).unwrap_or(u32::MAX),
                output_tokens: output,
                ..Usage::unreported()
            }
        })
    }

    /// What the stream has used so far and its cost: the reported usage,
    /// else an estimate (flagged `estimated`) of what was sent and
    /// received, priced like a reported one. Its usage event records the
    /// same.
    pub fn spent(&self) -> (Usage, Option<Decimal>) {
        let usage = self.accounted_usage();
        let catalogue = if usage.estimated {
            self.stream.price(&usage)
        } else {
            self.stream.cost_usd()
        };
        let cost = self.attempt.cost(&usage, catalogue);
        (usage, cost)
    }

    fn event(&self, outcome: UsageOutcome) -> UsageEvent {
        let (usage, cost) = self.spent();
        self.attempt.event(
            Some(&usage),
            cost,
            self.stream.time_to_first_token(),
            outcome,
        )
    }

    fn finish(&mut self, error: Option<&Error>) {
        self.recorded = true;
        self.load = None;
        let outcome = match error {
            Some(err) => UsageOutcome::Error(err.kind()),
            None => UsageOutcome::Ok,
        };
        let usage = self.accounted_usage();
        settle_limit(
            &self.state,
            self.reservation.as_ref(),
            &self.attempt,
            Some(&usage),
        );
        if let Some(permit) = self.permit.take() {
            settle_breaker(permit, error);
        }
        let event = self.event(outcome);
        self.state.sink.record(event);
        if let (None, Some(recorder)) = (error, self.recorder.take()) {
            recorder.keep(&self.attempt, self.cost_usd());
        }
        self.run_end_hooks();
    }

    /// Reads the stream to its end and returns the whole answer, as
    /// [`Router::chat`] would. A plugin that reported no usage gets zero
    /// counts flagged as estimates.
    pub async fn collect(mut self) -> Result<ChatOutcome, Error> {
        let mut collector = crate::StreamCollector::default();
        while let Some(chunk) = self.next().await {
            collector.add(chunk?);
        }
        let usage = self.usage().unwrap_or_else(Usage::unreported);
        Ok(ChatOutcome {
            provider: self.attempt.provider.clone(),
            response: collector.into_response(&self.attempt.model, usage),
            cost_usd: self.cost_usd(),
            latency: self.elapsed(),
        })
    }

    /// The usage reported at the end of the stream.
    pub fn usage(&self) -> Option<Usage> {
        self.stream.usage()
    }

    /// Why the answer ended.
    pub fn finish_reason(&self) -> Option<&crate::types::FinishReason> {
        self.stream.finish_reason()
    }

    /// Time from the serving attempt's request to its first content chunk.
    pub fn time_to_first_token(&self) -> Option<Duration> {
        self.stream.time_to_first_token()
    }

    /// Time since the serving attempt started.
    pub fn elapsed(&self) -> Duration {
        self.stream.elapsed()
    }

    /// Index into the plan's routes of the one serving the stream.
    pub fn route(&self) -> usize {
        self.route
    }

    /// The agent config whose route serves the stream.
    pub fn config_id(&self) -> Option<i64> {
        self.attempt.config_id
    }

    /// The provider answering.
    pub fn provider(&self) -> &str {
        &self.attempt.provider
    }

    /// The model answering.
    pub fn model(&self) -> &str {
        &self.attempt.model
    }

    /// Whether a fallback route serves the stream.
    pub fn fallback(&self) -> bool {
        self.attempt.fallback
    }

    /// Attempts made before the stream started, this one included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The call's request id.
    pub fn request_id(&self) -> &str {
        self.attempt.tags.request_id.as_deref().unwrap_or_default()
    }

    /// The experiment the call is part of and its variant.
    pub fn experiment(&self) -> Option<&(String, String)> {
        self.attempt.tags.experiment.as_ref()
    }

    /// Exact cost of the reported usage, at the route's own prices when it
    /// has them.
    pub fn cost_usd(&self) -> Option<Decimal> {
        self.stream
            .usage()
            .as_ref()
            .and_then(|u| self.attempt.cost(u, self.stream.cost_usd()))
    }
}

impl Drop for RoutedStream {
    fn drop(&mut self) {
        if !self.recorded {
            self.state
                .sink
                .record(self.event(UsageOutcome::Error(ErrorKind::Cancelled)));
            self.run_end_hooks();
        }
    }
}
