//! Calls made on an agent's behalf. The agent's enabled configs, in
//! priority order, each followed by its fallback pair, are the routes a
//! call may take. Each route gets its own attempt budget; the call's total
//! deadline covers them all. Every attempt is recorded as a usage event.

use super::ConfigService;
use crate::error::Error;
use crate::host::{ChatOutcome, ChatStream, Target};
use crate::resilience::{BucketKey, Next, Permit, Reservation, next_step};
use crate::store::{Agent, ConfigRow, UsageEvent, UsageOutcome};
use crate::types::{ChatRequest, Chunk, ErrorDetail, ProviderError, Usage};
use llmhost_registry::rust_decimal::Decimal;
use secrecy::ExposeSecret;
use sha2::Digest;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// An agent's answer: the host's outcome, which route served it and the
/// usage event recorded for it.
#[derive(Debug, Clone)]
pub struct AgentOutcome {
    pub agent: String,
    /// The config whose route served the call.
    pub config_id: i64,
    /// The provider and model that answered.
    pub provider: String,
    pub model: String,
    /// Whether a route other than the first (a fallback) answered.
    pub fallback: bool,
    /// Attempts made, failed ones included.
    pub attempts: u32,
    /// The answer; its `cost_usd` uses the config's custom prices when it
    /// has them.
    pub outcome: ChatOutcome,
    /// The id of the usage row, `None` if it could not be written (the
    /// failure is logged; the answer is not thrown away for it).
    pub usage_event: Option<i64>,
}

/// One place a call can go.
#[derive(Debug, Clone)]
struct Route {
    config: ConfigRow,
    provider: String,
    model: String,
    /// Not the call's first choice.
    fallback: bool,
    /// Whether this is the config's own pair (its key, base URL and
    /// custom prices apply) rather than its fallback pair.
    primary_pair: bool,
}

/// What is recorded for each attempt, fixed when it starts.
#[derive(Debug, Clone)]
struct Attempt {
    agent_id: i64,
    agent_name: String,
    config_id: i64,
    provider: String,
    model: String,
    custom_prices: Option<(Decimal, Decimal)>,
    started: Instant,
    number: u32,
    fallback: bool,
    streamed: bool,
    /// Input tokens estimated from the request, for failures.
    input_estimate: u64,
}

impl Attempt {
    /// The config's prices when it has its own, else the registry's cost.
    fn cost(&self, usage: &Usage, registry: Option<Decimal>) -> Option<Decimal> {
        match self.custom_prices {
            Some((input, output)) => {
                let thousand = Decimal::from(1000u32);
                Some(
                    (Decimal::from(usage.input_tokens) * input
                        + Decimal::from(usage.output_tokens) * output)
                        / thousand,
                )
            }
            None => registry,
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
        UsageEvent {
            agent_id: Some(self.agent_id),
            agent_name: Some(self.agent_name.clone()),
            config_id: Some(self.config_id),
            virtual_key_id: None,
            virtual_key_name: None,
            request_id: None,
            route: Some(format!("agent:{}", self.agent_name)),
            cache_write_hour_tokens: u64::from(usage.cache_write_hour_tokens),
            provider: self.provider.clone(),
            model: self.model.clone(),
            input_tokens: u64::from(usage.input_tokens),
            output_tokens: u64::from(usage.output_tokens),
            cache_read_tokens: u64::from(usage.cache_read_tokens),
            cache_write_tokens: u64::from(usage.cache_write_tokens),
            reasoning_tokens: u64::from(usage.reasoning_tokens),
            estimated: usage.estimated,
            cost_usd: cost,
            latency: self.started.elapsed(),
            time_to_first_token: ttft,
            outcome,
            attempt: self.number,
            fallback: self.fallback,
            streamed: self.streamed,
        }
    }

    fn failed(&self, error: &Error) -> UsageEvent {
        self.event(
            None,
            None,
            None,
            UsageOutcome::Error(error.kind().to_owned()),
        )
    }
}

/// The request as a route shapes it: the route's model always; the
/// config's temperature, max tokens and top-p where the request sets none.
fn shape(route: &Route, request: &ChatRequest) -> ChatRequest {
    let mut request = request.clone();
    request.model = route.model.clone();
    let row = &route.config;
    if request.temperature.is_none() {
        request.temperature = row.temperature.map(|t| t as f32);
    }
    if request.max_tokens.is_none() {
        request.max_tokens = row.max_tokens;
    }
    if request.top_p.is_none() {
        request.top_p = row.top_p.map(|p| p as f32);
    }
    request
}

/// A rough count of the request's input tokens (four bytes a token), for
/// rate limits and for failures that report no usage.
fn estimate_input(request: &ChatRequest) -> u64 {
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
    service: &'a ConfigService,
    agent: Agent,
    routes: Vec<Route>,
    request: ChatRequest,
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
}

/// An attempt ready to go: its target, shaped request and accounting.
/// Dropped unused (the call's future was cancelled), its breaker permit
/// settles itself.
struct Ready {
    target: Target,
    request: ChatRequest,
    attempt: Attempt,
    reservation: Option<Reservation>,
    permit: Permit,
}

impl ConfigService {
    /// The routes of an agent's call, in the order they are tried.
    async fn routes(&self, agent: &str) -> Result<(Agent, Vec<Route>), Error> {
        let agent = self.agent(agent).await?;
        let configs = self.store.configs(agent.id, true).await?;
        if configs.is_empty() {
            return Err(Error::NotFound {
                what: "enabled config of agent",
                key: agent.name.clone(),
            });
        }
        let mut routes = Vec::new();
        for config in configs {
            routes.push(Route {
                provider: config.provider.clone(),
                model: config.model_name.clone(),
                fallback: !routes.is_empty(),
                primary_pair: true,
                config: config.clone(),
            });
            if let (Some(provider), Some(model)) =
                (&config.fallback_provider, &config.fallback_model)
            {
                routes.push(Route {
                    provider: provider.clone(),
                    model: model.clone(),
                    fallback: true,
                    primary_pair: false,
                    config: config.clone(),
                });
            }
        }
        Ok((agent, routes))
    }

    async fn record(&self, event: UsageEvent) -> Option<i64> {
        match self.store.record_usage(event).await {
            Ok(id) => Some(id),
            Err(err) => {
                tracing::error!(error = %err, "could not record a usage event");
                None
            }
        }
    }

    async fn start_call(
        &self,
        agent: &str,
        request: ChatRequest,
        streamed: bool,
    ) -> Result<Call<'_>, Error> {
        let (agent, routes) = self.routes(agent).await?;
        let first = &routes[0].config;
        let deadline = first
            .deadline_ms
            .map(Duration::from_millis)
            .unwrap_or(self.resilience.retry.deadline);
        let max_attempts = first
            .max_attempts
            .unwrap_or(self.resilience.retry.max_attempts)
            .max(1);
        Ok(Call {
            service: self,
            agent,
            routes,
            request,
            deadline: Instant::now() + deadline,
            max_attempts,
            attempts: 0,
            streamed,
            route_index: 0,
            tries_on_route: 0,
            last_error: None,
        })
    }

    /// Sends `request` for the agent: its first enabled config, with
    /// retries, then its fallback, then the next enabled configs by
    /// priority. The request's model is replaced by each route's. Every
    /// attempt is recorded as a usage event.
    pub async fn chat(&self, agent: &str, request: ChatRequest) -> Result<AgentOutcome, Error> {
        let mut call = self.start_call(agent, request, false).await?;
        loop {
            let (route, ready) = call.next_attempt().await?;
            let mut outcome = match self.host.chat(&ready.target, &ready.request).await {
                Ok(outcome) => outcome,
                Err(err) => {
                    call.failed(ready, err).await?;
                    continue;
                }
            };
            let attempt = call.settle(ready, Some(&outcome.response.usage), None);
            outcome.cost_usd = attempt.cost(&outcome.response.usage, outcome.cost_usd);
            let event = attempt.event(
                Some(&outcome.response.usage),
                outcome.cost_usd,
                None,
                UsageOutcome::Ok,
            );
            let usage_event = self.record(event).await;
            return Ok(AgentOutcome {
                agent: call.agent.name.clone(),
                config_id: route.config.id,
                provider: route.provider,
                model: route.model,
                fallback: route.fallback,
                attempts: call.attempts,
                outcome,
                usage_event,
            });
        }
    }

    /// Streams `request` for the agent, with the same routes, retries and
    /// fallbacks as [`ConfigService::chat`] up to the first chunk; once a
    /// chunk reached the caller a failure ends the stream with its error.
    /// The usage event of the serving attempt is written when the stream
    /// ends, fails or is dropped.
    pub async fn stream(&self, agent: &str, request: ChatRequest) -> Result<AgentStream, Error> {
        let mut call = self.start_call(agent, request, true).await?;
        loop {
            let (route, ready) = call.next_attempt().await?;
            let (stream, buffered) = match Self::first_chunk(&self.host, &ready).await {
                Ok(started) => started,
                Err(err) => {
                    call.failed(ready, err).await?;
                    continue;
                }
            };
            let Ready {
                attempt,
                reservation,
                mut permit,
                ..
            } = ready;
            // The vendor is answering: a probe closes its circuit now
            // rather than holding every other call off for the length of
            // the stream. The stream's end still settles the permit.
            permit.answered();
            return Ok(AgentStream {
                service: self.clone(),
                stream,
                buffered,
                attempt,
                reservation,
                permit: Some(permit),
                recorded: false,
                usage_event: None,
                text: String::new(),
                fallback: route.fallback,
                attempts: call.attempts,
            });
        }
    }

    /// Opens a stream and reads up to its first chunk with content; what
    /// came before it (the start) is kept for the caller.
    async fn first_chunk(
        host: &crate::Host,
        ready: &Ready,
    ) -> Result<(ChatStream, VecDeque<Chunk>), Error> {
        let mut stream = host.stream(&ready.target, &ready.request).await?;
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

impl Call<'_> {
    /// The next attempt to make, on the current route or the next one
    /// that can take it; the call's error once no route is left.
    async fn next_attempt(&mut self) -> Result<(Route, Ready), Error> {
        loop {
            let Some(route) = self.routes.get(self.route_index).cloned() else {
                let last = self.last_error.take();
                return Err(self.exhausted(last));
            };
            if self.tries_on_route >= self.max_attempts {
                self.next_route();
                continue;
            }
            match self.prepare(&route).await {
                Ok(ready) => {
                    self.tries_on_route += 1;
                    return Ok((route, ready));
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
            self.routes.len()
        } else {
            self.route_index + 1
        };
    }

    /// Accounts for a failed attempt (rate limit, breaker, usage row) and
    /// decides: `Ok` to go on (after waiting for a retry), or the call's
    /// error.
    async fn failed(&mut self, ready: Ready, err: Error) -> Result<(), Error> {
        let attempt = self.settle(ready, None, Some(&err));
        self.service.record(attempt.failed(&err)).await;
        match self.after_failure(err, self.tries_on_route, false).await {
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
    async fn prepare(&mut self, route: &Route) -> Result<Ready, Skip> {
        let service = self.service;
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Skip::NextRoute(Error::Timeout {
                provider: route.provider.clone(),
                after: Duration::ZERO,
            }));
        }
        // A fallback to the config's own provider (another model) keeps
        // its key and base URL; another provider is reached with its
        // environment variables and settings.
        let mut target = if route.provider == route.config.provider {
            service.target(&route.config).map_err(Skip::Fail)?
        } else {
            Target::new(&route.provider)
        };
        let attempt_timeout = service
            .resilience
            .attempt_timeout
            .unwrap_or_else(|| service.host.default_timeout());
        target.timeout = Some(attempt_timeout.min(remaining));
        let base_url = service.host.base_url_of(&target).map_err(Skip::Fail)?;
        // Held from here until the attempt's outcome is known; every early
        // return below settles or drops it.
        let permit = match service.breakers.admit(&route.provider, &base_url) {
            Ok(permit) => permit,
            Err(wait) => {
                return Err(Skip::NextRoute(Error::CircuitOpen {
                    provider: route.provider.clone(),
                    base_url,
                    retry_after: wait,
                }));
            }
        };
        let request = shape(route, &self.request);
        let input_estimate = estimate_input(&request);
        let limits = service
            .host
            .catalogue()
            .get(&route.provider, &route.model)
            .map(|m| m.rate_limits)
            .unwrap_or_default();
        let reservation =
            if limits.requests_per_minute.is_some() || limits.tokens_per_minute.is_some() {
                let key_id = target
                    .api_key
                    .as_ref()
                    .map(|k| hex::encode(&sha2::Sha256::digest(k.expose_secret().as_bytes())[..8]))
                    .unwrap_or_default();
                let key = BucketKey {
                    provider: route.provider.clone(),
                    model: route.model.clone(),
                    key_id,
                };
                let tokens = input_estimate + u64::from(request.max_tokens.unwrap_or(0));
                match service
                    .limiter
                    .acquire(&key, limits, tokens, self.deadline)
                    .await
                {
                    Ok(reservation) => Some(reservation),
                    Err(wait) => {
                        // Nothing was sent: a probe is released for the
                        // next call rather than reopening the circuit.
                        permit.neutral();
                        return Err(Skip::NextRoute(client_rate_limited(&route.provider, wait)));
                    }
                }
            } else {
                None
            };
        // The wait for the limiter counts against the deadline.
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        target.timeout = Some(attempt_timeout.min(remaining).max(Duration::from_millis(1)));
        self.attempts += 1;
        let row = &route.config;
        let attempt = Attempt {
            agent_id: row.agent_id,
            agent_name: self.agent.name.clone(),
            config_id: row.id,
            provider: route.provider.clone(),
            model: route.model.clone(),
            custom_prices: (route.primary_pair && row.custom_pricing)
                .then_some((row.cost_per_1k_input_tokens, row.cost_per_1k_output_tokens)),
            started: Instant::now(),
            number: self.attempts,
            fallback: route.fallback,
            streamed: self.streamed,
            input_estimate,
        };
        Ok(Ready {
            target,
            request,
            attempt,
            reservation,
            permit,
        })
    }

    /// Settles the rate limit and the breaker after an attempt; what is
    /// left is its accounting.
    fn settle(&self, ready: Ready, usage: Option<&Usage>, error: Option<&Error>) -> Attempt {
        settle_limit(
            self.service,
            ready.reservation.as_ref(),
            &ready.attempt,
            usage,
        );
        settle_breaker(ready.permit, error);
        ready.attempt
    }

    /// Decides what follows a failure, waiting before a retry.
    async fn after_failure(&self, err: Error, try_number: u32, streamed: bool) -> AfterFailure {
        match next_step(&err, streamed) {
            Next::Stop => AfterFailure::Fail(err),
            Next::Fallback => AfterFailure::NextRoute(err),
            Next::Retry if try_number >= self.max_attempts => AfterFailure::NextRoute(err),
            Next::Retry => {
                let wait = self.service.resilience.retry.delay(try_number, &err);
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
            provider: self.routes[0].provider.clone(),
            after: Duration::ZERO,
        })
    }
}

/// Charges the rate limit with the tokens an attempt used.
fn settle_limit(
    service: &ConfigService,
    reservation: Option<&Reservation>,
    attempt: &Attempt,
    usage: Option<&Usage>,
) {
    if let Some(reservation) = reservation {
        let used = usage
            .map(|u| u64::from(u.input_tokens) + u64::from(u.output_tokens))
            .unwrap_or(attempt.input_estimate);
        service.limiter.settle(reservation, used);
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

/// An agent's streamed answer. Read it like a [`ChatStream`]; the usage
/// event is written when it ends (before `next` returns `None` or the
/// error), or in the background if it is dropped unfinished (recorded as a
/// `cancelled` error with the usage seen so far). A stream cut after its
/// first chunk is not retried; its row holds an estimate of what was
/// received.
pub struct AgentStream {
    service: ConfigService,
    stream: ChatStream,
    buffered: VecDeque<Chunk>,
    attempt: Attempt,
    reservation: Option<Reservation>,
    /// Settled when the stream ends; `None` after. Dropped with the
    /// stream, it records nothing (the vendor had answered its first
    /// chunk, which already closed a probed circuit).
    permit: Option<Permit>,
    recorded: bool,
    usage_event: Option<i64>,
    /// Text received, for an estimate when no usage arrives.
    text: String,
    fallback: bool,
    attempts: u32,
}

impl AgentStream {
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
                self.finish(Some(&err)).await;
                Some(Err(err))
            }
            None => {
                self.finish(None).await;
                None
            }
        }
    }

    fn note(&mut self, chunk: &Chunk) {
        if let Chunk::Text(text) | Chunk::Reasoning(text) = chunk {
            self.text.push_str(text);
        }
    }

    /// The reported usage, else an estimate of what was sent and received.
    fn usage(&self) -> Usage {
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

    fn event(&self, outcome: UsageOutcome) -> UsageEvent {
        let usage = self.usage();
        let cost = if usage.estimated {
            None
        } else {
            self.attempt.cost(&usage, self.stream.cost_usd())
        };
        self.attempt.event(
            Some(&usage),
            cost,
            self.stream.time_to_first_token(),
            outcome,
        )
    }

    async fn finish(&mut self, error: Option<&Error>) {
        self.recorded = true;
        let outcome = match error {
            Some(err) => UsageOutcome::Error(err.kind().to_owned()),
            None => UsageOutcome::Ok,
        };
        let usage = self.usage();
        settle_limit(
            &self.service,
            self.reservation.as_ref(),
            &self.attempt,
            Some(&usage),
        );
        if let Some(permit) = self.permit.take() {
            settle_breaker(permit, error);
        }
        let event = self.event(outcome);
        self.usage_event = self.service.record(event).await;
    }

    /// The underlying stream (provider, usage, time to first token).
    pub fn inner(&self) -> &ChatStream {
        &self.stream
    }

    /// The config whose route serves the stream.
    pub fn config_id(&self) -> i64 {
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
        self.fallback
    }

    /// Attempts made before the stream started, this one included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Exact cost of the reported usage, at the config's prices when it
    /// has its own.
    pub fn cost_usd(&self) -> Option<Decimal> {
        self.stream
            .usage()
            .as_ref()
            .and_then(|u| self.attempt.cost(u, self.stream.cost_usd()))
    }

    /// The usage row, once the stream has ended.
    pub fn usage_event(&self) -> Option<i64> {
        self.usage_event
    }
}

impl Drop for AgentStream {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        let event = self.event(UsageOutcome::Error("cancelled".to_owned()));
        let store = self.service.store.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(err) = store.record_usage(event).await {
                        tracing::error!(error = %err, "could not record a usage event");
                    }
                });
            }
            Err(_) => tracing::error!("stream dropped outside a tokio runtime: usage not recorded"),
        }
    }
}
