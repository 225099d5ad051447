//! `llmhost serve`: the HTTP gateway. OpenAI's Chat Completions and
//! Anthropic's Messages protocols in front of every loaded provider, each
//! request routed by the one [`Router`] (retries, breakers, rate limits,
//! usage in batches).
//!
//! `model` names a route: `PROVIDER/MODEL` (`claude/claude-sonnet-4-5`) or
//! `agent:NAME` (the agent's configs with their fallbacks). Either
//! protocol reaches every provider.

use super::budget::{Ledger, Limit, Reservation, Scope, Worst};
use super::errors::ApiError;
use super::limits::{KeyLimiter, Taken};
use super::metrics::Metrics;
use super::{anthropic, openai};
use crate::error::Error;
use crate::host::{Host, Target};
use crate::router::{CallTags, Plan, Route, Router};
use crate::service::{ConfigService, VirtualKey, VirtualKeys};
use crate::types::{ChatRequest, TokenInput};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use llmhost_registry::rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
/// Environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "LLMHOST_MASTER_KEY";
/// Frames a stream may run ahead of a slow client.
const STREAM_BUFFER: usize = 32;
/// Silence after which an Anthropic stream gets a `ping`.
const PING_EVERY: Duration = Duration::from_secs(10);

/// How the gateway runs.
#[derive(Clone)]
pub struct GatewayOptions {
    pub listen: SocketAddr,
    /// Accepted as `Authorization: Bearer …` or `x-api-key`; with virtual
    /// keys, the only keys. Neither configured: loopback only, no auth.
    pub master_key: Option<SecretString>,
    /// How long in-flight requests and streams may run after a shutdown
    /// signal.
    pub shutdown_grace: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// What `GET /metrics` reports; give the host
    /// `metrics.sink(…)` as its usage sink for the attempt figures.
    pub metrics: Arc<Metrics>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a valid address"),
            master_key: None,
            shutdown_grace: Duration::from_secs(30),
            max_body_bytes: 32 << 20,
            metrics: Metrics::new(),
        }
    }
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("listen", &self.listen)
            .field("master_key", &self.master_key.as_ref().map(|_| "…"))
            .field("shutdown_grace", &self.shutdown_grace)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
enum Caller {
    /// The master key.
    Master,
    /// No key is configured: a loopback-only gateway without auth.
    Open,
    /// A virtual key, with its limits.
    Virtual(Box<VirtualKey>),
}

impl Caller {
    /// Refuses a route the key is not allowed: 403.
    fn may_use(&self, route: &str) -> Result<(), ApiError> {
        let Caller::Virtual(key) = self else {
            return Ok(());
        };
        if let Some(agent) = &key.agent
            && route.strip_prefix("agent:") != Some(agent.as_str())
        {
            return Err(ApiError::permission(format!(
                "this key may only call agent:{agent}, not `{route}`"
            ))
            .param("model"));
        }
        if !key.allows_model(route) {
            return Err(ApiError::permission(format!(
                "this key may not call `{route}` (allowed: {})",
                key.models.as_deref().unwrap_or_default().join(", ")
            ))
            .param("model"));
        }
        Ok(())
    }

    fn tag(&self, tags: &mut CallTags) {
        if let Caller::Virtual(key) = self {
            tags.virtual_key = Some((key.id, key.name.clone()));
        }
    }
}

struct Shared {
    service: ConfigService,
    router: Router,
    /// blake3 of the master key: compared in constant time, and the key
    /// itself is not kept.
    master: Option<blake3::Hash>,
    /// Virtual keys, when the gateway has an encryption key to check them.
    virtual_keys: Option<VirtualKeys>,
    /// Whether no key was configured at start: then no auth (loopback
    /// only) until a virtual key appears.
    open: bool,
    /// Set once a virtual key exists in an `open` gateway's store.
    keys_appeared: std::sync::atomic::AtomicBool,
    /// When the store was last asked whether keys appeared.
    keys_checked: std::sync::Mutex<Option<Instant>>,
    /// Set when the grace period is over: requests and streams still
    /// running stop, recording their usage.
    cut: tokio::sync::watch::Sender<bool>,
    /// Held by every request and stream task: the count says how many are
    /// still running.
    live: Arc<()>,
    budgets: Arc<Ledger>,
    key_limits: Arc<KeyLimiter>,
    metrics: Arc<Metrics>,
    max_body_bytes: usize,
}

/// The gateway over a [`ConfigService`] (its store, keys and router).
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    options: GatewayOptions,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("options", &self.options)
            .finish()
    }
}

/// The protocol a route speaks, for the shape of its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    OpenAi,
    Anthropic,
}

impl Gateway {
    /// A gateway serving through `service`'s router, accepting the master
    /// key and `virtual_keys`. Refuses a non-loopback address when no key
    /// is configured (no master key, no virtual key stored).
    pub async fn new(
        service: ConfigService,
        virtual_keys: Option<VirtualKeys>,
        options: GatewayOptions,
    ) -> Result<Self, Error> {
        let have_virtual = match &virtual_keys {
            Some(keys) => !keys.list().await?.is_empty(),
            None => !service.store().virtual_keys().await?.is_empty(),
        };
        if have_virtual && virtual_keys.is_none() {
            return Err(Error::Encryption {
                kind: "encryption_key_missing",
                message: "virtual keys are stored but no encryption key is configured to check \
                          them: set LLMHOST_ENCRYPTION_KEY or the key file"
                    .into(),
            });
        }
        let open = options.master_key.is_none() && !have_virtual;
        if open && !options.listen.ip().is_loopback() {
            return Err(Error::InvalidConfig(format!(
                "refusing to serve {} without authentication: set {MASTER_KEY_ENV} (or create \
                 virtual keys), or listen on a loopback address such as {DEFAULT_LISTEN}",
                options.listen
            )));
        }
        let master = options
            .master_key
            .as_ref()
            .map(|key| blake3::hash(key.expose_secret().as_bytes()));
        let router = service.router().clone();
        let budgets = Ledger::new(service.store().clone());
        Ok(Self {
            shared: Arc::new(Shared {
                service,
                router,
                master,
                virtual_keys,
                open,
                keys_appeared: std::sync::atomic::AtomicBool::new(false),
                keys_checked: std::sync::Mutex::new(None),
                cut: tokio::sync::watch::channel(false).0,
                live: Arc::new(()),
                budgets,
                key_limits: Arc::default(),
                metrics: options.metrics.clone(),
                max_body_bytes: options.max_body_bytes,
            }),
            options,
        })
    }

    /// The routes, for serving or for tests.
    pub fn app(&self) -> axum::Router {
        axum::Router::new()
            .route("/v1/chat/completions", post(openai_chat))
            .route("/v1/messages", post(anthropic_messages))
            .route("/v1/messages/count_tokens", post(anthropic_count_tokens))
            .route("/v1/models", get(models))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .fallback(not_found)
            .with_state(self.shared.clone())
    }

    /// Serves on `listener` until `shutdown` resolves; then stops
    /// accepting, lets in-flight requests and streams finish within the
    /// grace period, and flushes the usage sink.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; finishing in-flight requests");
            let _ = signalled_tx.send(());
        };
        let server = axum::serve(listener, self.app())
            .with_graceful_shutdown(graceful)
            .into_future();
        tokio::pin!(server);
        let grace = self.options.shutdown_grace;
        let cut_off = async move {
            if signalled_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = &mut server => served.map_err(|err| Error::Internal(format!("server: {err}")))?,
            () = cut_off => {
                let running = Arc::strong_count(&self.shared.live) - 1;
                tracing::warn!(
                    grace_secs = grace.as_secs_f64(),
                    running,
                    "grace period over: cutting the requests still running"
                );
                // Each ends with an error its client can see, and its
                // usage is recorded before the flush below.
                let _ = self.shared.cut.send(true);
                let waited = Instant::now();
                while Arc::strong_count(&self.shared.live) > 1
                    && waited.elapsed() < Duration::from_secs(5)
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // The connections write those last words and close.
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut server).await;
            }
        }
        self.shared.router.flush_usage().await?;
        tracing::info!("usage flushed; stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

// ----- requests -----

/// What every handler starts from: the request id and the caller.
#[derive(Clone)]
struct Context {
    request_id: String,
    started: Instant,
    protocol: Protocol,
    shared: Arc<Shared>,
}

impl Context {
    fn new(protocol: Protocol, shared: &Arc<Shared>) -> Self {
        Self {
            request_id: crate::host::new_request_id(),
            started: Instant::now(),
            protocol,
            shared: shared.clone(),
        }
    }

    fn tags(&self, route: &str) -> CallTags {
        CallTags {
            request_id: Some(self.request_id.clone()),
            route: Some(route.to_owned()),
            ..CallTags::default()
        }
    }

    /// `response` with the request id headers.
    fn finish(&self, mut response: Response, route: Option<&str>) -> Response {
        if let Ok(value) = HeaderValue::from_str(&self.request_id) {
            let headers = response.headers_mut();
            headers.insert(HeaderName::from_static("x-request-id"), value.clone());
            headers.insert(HeaderName::from_static("request-id"), value);
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let status = response.status().as_u16();
        tracing::info!(
            target: "llmhost::access",
            request_id = %self.request_id,
            status,
            route = route.unwrap_or("-"),
            latency_ms = elapsed * 1000.0,
            "request"
        );
        let protocol = match self.protocol {
            Protocol::OpenAi => "openai",
            Protocol::Anthropic => "anthropic",
        };
        let label = route.filter(|route| self.shared.known_route(route));
        self.shared
            .metrics
            .request(protocol, label, status, elapsed);
        response
    }

    /// An error in the protocol's own shape, with its headers.
    fn error(&self, err: &ApiError, route: Option<&str>) -> Response {
        let (status, body) = match self.protocol {
            Protocol::OpenAi => (openai::status(err), openai::error_body(err)),
            Protocol::Anthropic => (
                err.status,
                anthropic::error_body(err, Some(&self.request_id)),
            ),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(body)).into_response();
        for (name, value) in err.headers() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(name), value);
            }
        }
        tracing::debug!(request_id = %self.request_id, error = %err.message, "request failed");
        self.finish(response, route)
    }
}

/// The key a client presented: `Authorization: Bearer K` or `x-api-key: K`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, key) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() {
            return Some(key.trim());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

impl Shared {
    /// Whether an `open` gateway's store has gained a virtual key; asked
    /// at most once a second, and true for good once it has.
    async fn keys_appeared(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.keys_appeared.load(Ordering::Relaxed) {
            return true;
        }
        {
            let mut checked = self.keys_checked.lock().unwrap_or_else(|e| e.into_inner());
            if checked.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return false;
            }
            *checked = Some(Instant::now());
        }
        // A store that cannot say is taken to hold keys: closed, not open.
        let appeared = self
            .service
            .store()
            .virtual_keys()
            .await
            .map_or(true, |keys| !keys.is_empty());
        if appeared {
            tracing::warn!("a virtual key was created: the gateway now requires keys");
            self.keys_appeared.store(true, Ordering::Relaxed);
        }
        appeared
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if self.open && !self.keys_appeared().await {
            // Open, but a valid virtual key still brings its limits.
            if let (Some(key), Some(keys)) = (presented_key(headers), &self.virtual_keys)
                && let Ok(Some(key)) = keys.authenticate(key).await
            {
                return Ok(Caller::Virtual(Box::new(key)));
            }
            return Ok(Caller::Open);
        }
        let Some(key) = presented_key(headers) else {
            return Err(ApiError::authentication(
                "missing API key: send `Authorization: Bearer KEY` or `x-api-key: KEY`",
            ));
        };
        // blake3's `Hash` compares in constant time.
        if self
            .master
            .is_some_and(|master| blake3::hash(key.as_bytes()) == master)
        {
            return Ok(Caller::Master);
        }
        if let Some(keys) = &self.virtual_keys {
            match keys.authenticate(key).await {
                Ok(Some(key)) => return Ok(Caller::Virtual(Box::new(key))),
                Ok(None) => {}
                Err(err) => return Err(ApiError::from(&err)),
            }
        }
        // Unknown, revoked and expired keys alike.
        Err(ApiError::authentication("invalid API key"))
    }

    /// The plan of `caller`'s call to `route`, if the caller may make it,
    /// with the call's worst case reserved in every budget it falls under.
    async fn admit(
        &self,
        caller: &Caller,
        route: &str,
        mut tags: CallTags,
        request: Option<&ChatRequest>,
    ) -> Result<(Plan, Option<Admission>), ApiError> {
        caller.may_use(route)?;
        caller.tag(&mut tags);
        let (plan, agent) = self.plan(route, tags).await?;
        let mut admission = Admission::default();
        if let (Caller::Virtual(key), Some(request)) = (caller, request)
            && (key.rpm.is_some() || key.tpm.is_some())
        {
            let tokens =
                crate::router::estimate_input(request) + u64::from(request.max_tokens.unwrap_or(0));
            match self.key_limits.take(key.id, key.rpm, key.tpm, tokens) {
                Ok(taken) => admission.taken = Some((self.key_limits.clone(), taken)),
                Err(wait) => {
                    return Err(ApiError::new(
                        429,
                        super::errors::ErrorClass::RateLimit,
                        format!(
                            "this key's rate limit ({}) is reached; try again in {:.1}s",
                            [
                                key.rpm.map(|n| format!("{n} requests a minute")),
                                key.tpm.map(|n| format!("{n} tokens a minute")),
                            ]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(", "),
                            wait.as_secs_f64()
                        ),
                    )
                    .code("rate_limit_exceeded")
                    .retry_after(wait));
                }
            }
        }
        let mut limits = Vec::new();
        if let Caller::Virtual(key) = caller
            && let (Some(usd), Some(period)) = (key.budget_usd, key.budget_period)
        {
            limits.push(Limit {
                scope: Scope::VirtualKey(key.id),
                period,
                usd: Some(usd),
                tokens: None,
            });
        }
        if let Some(agent) = &agent
            && let Some(period) = agent.budget_period
            && (agent.budget_usd.is_some() || agent.budget_tokens.is_some())
        {
            limits.push(Limit {
                scope: Scope::Agent(agent.id),
                period,
                usd: agent.budget_usd,
                tokens: agent.budget_tokens,
            });
        }
        let Some(request) = request.filter(|_| !limits.is_empty()) else {
            return Ok((plan, Some(admission)));
        };
        let worst = self.worst_case(&plan, request, limits.iter().any(|l| l.usd.is_some()))?;
        match self
            .budgets
            .reserve(&limits, worst, SystemTime::now())
            .await
        {
            Ok(Ok(reservation)) => {
                admission.reservation = Some(reservation);
                Ok((plan, Some(admission)))
            }
            Ok(Err(exceeded)) => Err(ApiError::budget_exceeded(exceeded.message)),
            Err(err) => Err(ApiError::from(&err)),
        }
    }

    /// The most `request` can cost along any of the plan's routes: its
    /// prompt counted with each model's tokenizer, and its `max_tokens`
    /// (else the route's, else the model's output limit) all used.
    fn worst_case(
        &self,
        plan: &Plan,
        request: &ChatRequest,
        priced: bool,
    ) -> Result<Worst, ApiError> {
        let host = self.host();
        let mut worst = Worst::default();
        for route in &plan.routes {
            let provider = &route.target.provider;
            let entry = host.catalogue().get(provider, &route.model);
            let encoding = entry.map_or("o200k_base", |e| e.tokenizer.as_str());
            let prompt: u64 = request
                .messages
                .iter()
                .map(|m| {
                    let text = m.text_content();
                    crate::tokenizer::count(encoding, &text).unwrap_or(text.len().div_ceil(4))
                        as u64
                        + 4
                })
                .sum();
            let output = request
                .max_tokens
                .or(route.defaults.max_tokens)
                .or(entry.map(|e| e.max_output_tokens).filter(|n| *n > 0))
                .unwrap_or(4096);
            let usage = crate::types::Usage::new(u32::try_from(prompt).unwrap_or(u32::MAX), output);
            let usd = match route.prices {
                Some((input, out)) => Some(
                    (Decimal::from(usage.input_tokens) * input
                        + Decimal::from(usage.output_tokens) * out)
                        / Decimal::from(1000u32),
                ),
                None => host.cost(provider, &route.model, &usage),
            };
            let usd = match usd {
                Some(usd) => usd,
                None if priced => {
                    return Err(ApiError::permission(format!(
                        "`{provider}/{}` has no known price, so a USD budget cannot be enforced \
                         on it (add its price to the model overrides file)",
                        route.model
                    ))
                    .param("model"));
                }
                None => Decimal::ZERO,
            };
            worst.usd = worst.usd.max(usd);
            worst.tokens = worst.tokens.max(prompt + u64::from(output));
        }
        Ok(worst)
    }

    /// The plan of a call to `model` (`PROVIDER/MODEL` or `agent:NAME`),
    /// and the agent's record for an agent route.
    async fn plan(
        &self,
        model: &str,
        tags: CallTags,
    ) -> Result<(Plan, Option<crate::store::Agent>), ApiError> {
        if let Some(agent) = model.strip_prefix("agent:") {
            return match self.service.plan(agent, tags).await {
                Ok((agent, plan)) => Ok((plan, Some(agent))),
                Err(Error::NotFound { what: "agent", .. }) => Err(ApiError::not_found(format!(
                    "no agent `{agent}` (see GET /v1/models)"
                ))
                .param("model")
                .code("model_not_found")),
                Err(err) => Err(ApiError::from(&err)),
            };
        }
        let (provider, model_id) = self.split_model(model)?;
        Ok((
            Plan::single(Route::new(Target::new(provider), model_id)).tags(tags),
            None,
        ))
    }

    /// `PROVIDER/MODEL` split at the first `/`, the provider checked.
    fn split_model<'m>(&self, model: &'m str) -> Result<(&'m str, &'m str), ApiError> {
        let Some((provider, model_id)) = model
            .split_once('/')
            .filter(|(p, m)| !p.is_empty() && !m.is_empty())
        else {
            return Err(ApiError::not_found(format!(
                "model `{model}` is not a route: use PROVIDER/MODEL (e.g. openai/gpt-4o-mini) \
                 or agent:NAME (see GET /v1/models)"
            ))
            .param("model")
            .code("model_not_found"));
        };
        if self.service.host().provider_info(provider).is_none() {
            return Err(ApiError::not_found(format!(
                "no provider `{provider}` is loaded (see GET /v1/models)"
            ))
            .param("model")
            .code("model_not_found"));
        }
        Ok((provider, model_id))
    }

    fn host(&self) -> &Host {
        self.service.host()
    }

    /// Whether `route` names a loaded provider or an agent: only those
    /// become metric labels.
    fn known_route(&self, route: &str) -> bool {
        route.starts_with("agent:")
            || route
                .split_once('/')
                .is_some_and(|(provider, _)| self.host().provider_info(provider).is_some())
    }
}

async fn body_bytes(shared: &Shared, request: Request) -> Result<(HeaderMap, Bytes), ApiError> {
    let (parts, body) = request.into_parts();
    let limit = shared.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::too_large(format!(
            "the request body is larger than {} bytes, or could not be read",
            limit
        ))
    })?;
    Ok((parts.headers, bytes))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// `data: …` frames of an SSE stream, with an optional event name.
fn sse_frame(event: Option<&str>, data: &str) -> Bytes {
    let mut frame = String::with_capacity(data.len() + 32);
    if let Some(event) = event {
        frame.push_str("event: ");
        frame.push_str(event);
        frame.push('\n');
    }
    for line in data.split('\n') {
        frame.push_str("data: ");
        frame.push_str(line);
        frame.push('\n');
    }
    frame.push('\n');
    Bytes::from(frame)
}

fn sse_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|frame| (Ok::<_, Infallible>(frame), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// What a stream task does next.
enum Step {
    Item(Option<Result<crate::types::Chunk, Error>>),
    /// The grace period is over.
    Cut,
    /// The client left.
    Gone,
}

/// The stream's next chunk, unless the gateway is cut first. With `pings`,
/// a `ping` event goes out after each stretch of silence, while the same
/// read of the stream goes on (a read is never abandoned half-way).
async fn next_step(
    stream: &mut crate::router::RoutedStream,
    cut: &mut tokio::sync::watch::Receiver<bool>,
    pings: Option<&mpsc::Sender<Bytes>>,
) -> Step {
    let next = stream.next();
    tokio::pin!(next);
    loop {
        tokio::select! {
            item = &mut next => return Step::Item(item),
            () = cut_signal(cut) => return Step::Cut,
            () = tokio::time::sleep(PING_EVERY), if pings.is_some() => {
                let ping = anthropic::ping();
                if let Some(tx) = pings
                    && tx.send(sse_frame(Some(ping.event), &ping.data)).await.is_err()
                {
                    return Step::Gone;
                }
            }
        }
    }
}

/// Resolves once the gateway is cut (or can no longer say).
async fn cut_signal(cut: &mut tokio::sync::watch::Receiver<bool>) {
    let cut = cut.wait_for(|cut| *cut).await.is_ok();
    let _ = cut;
}

/// The error of a request cut when the shutdown grace period ran out.
fn shutting_down() -> ApiError {
    ApiError::new(
        503,
        super::errors::ErrorClass::Overloaded,
        "the gateway is shutting down and its grace period ran out",
    )
    .should_retry(true)
}

/// Runs a handler unless the grace period runs out first; then the
/// request ends with 503 (and its attempt records itself as cancelled).
async fn until_cut<F: Future<Output = Response>>(
    shared: &Arc<Shared>,
    protocol: Protocol,
    handler: impl FnOnce(Context) -> F,
) -> Response {
    let _live = shared.live.clone();
    let mut cut = shared.cut.subscribe();
    let cx = Context::new(protocol, shared);
    tokio::select! {
        response = handler(cx.clone()) => response,
        () = cut_signal(&mut cut) => cx.error(&shutting_down(), None),
    }
}

/// What a request holds until it ends: its budget reservation and what
/// it took from its key's rate limits.
#[derive(Default)]
struct Admission {
    reservation: Option<Reservation>,
    taken: Option<(Arc<KeyLimiter>, Taken)>,
}

/// Charges a call's reservation and rate limit with what its usage row
/// records.
fn settle(admission: Option<Admission>, cost: Option<Decimal>, usage: &crate::types::Usage) {
    let Some(admission) = admission else {
        return;
    };
    let tokens = u64::from(usage.input_tokens) + u64::from(usage.output_tokens);
    if let Some(reservation) = admission.reservation {
        reservation.settle(cost, tokens);
    }
    if let Some((limiter, taken)) = admission.taken {
        limiter.settle(taken, tokens);
    }
}

/// `provider/model` of what served a call.
fn served_label(provider: &str, model: &str) -> String {
    format!("{provider}/{model}")
}

// ----- OpenAI -----

async fn openai_chat(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    until_cut(&shared, Protocol::OpenAi, |cx| {
        openai_chat_inner(&shared, cx, request)
    })
    .await
}

async fn openai_chat_inner(shared: &Arc<Shared>, cx: Context, request: Request) -> Response {
    let (headers, body) = match body_bytes(shared, request).await {
        Ok(read) => read,
        Err(err) => return cx.error(&err, None),
    };
    let caller = match shared.authenticate(&headers).await {
        Ok(caller) => caller,
        Err(err) => return cx.error(&err, None),
    };
    let parsed = match openai::parse_chat(&body) {
        Ok(parsed) => parsed,
        Err(err) => return cx.error(&err, None),
    };
    let route = parsed.model.clone();
    let request = parsed.request;
    let (plan, reservation) = match shared
        .admit(&caller, &route, cx.tags(&route), Some(&request))
        .await
    {
        Ok(admitted) => admitted,
        Err(err) => return cx.error(&err, Some(&route)),
    };
    if !parsed.stream {
        return match shared.router.chat(&plan, &request).await {
            Ok(routed) => {
                settle(
                    reservation,
                    routed.outcome.cost_usd,
                    &routed.outcome.response.usage,
                );
                let label = served_label(&routed.provider, &routed.model);
                let body = openai::render_completion(&routed.outcome.response, &label, unix_now());
                cx.finish(axum::Json(body).into_response(), Some(&route))
            }
            Err(err) => cx.error(&ApiError::from(&err), Some(&route)),
        };
    }
    let mut stream = match shared.router.stream(&plan, &request).await {
        Ok(stream) => stream,
        Err(err) => return cx.error(&ApiError::from(&err), Some(&route)),
    };
    let label = served_label(stream.provider(), stream.model());
    let id = format!("chatcmpl-{}", cx.request_id);
    let mut encoder = openai::ChunkEncoder::new(&id, &label, unix_now(), parsed.include_usage);
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let mut reservation = reservation;
    let live = shared.live.clone();
    let mut cut = shared.cut.subscribe();
    tokio::spawn(async move {
        let _live = live;
        loop {
            let item = match next_step(&mut stream, &mut cut, None).await {
                Step::Item(Some(item)) => item,
                Step::Item(None) => break,
                Step::Gone => return,
                Step::Cut => {
                    let _ = tx
                        .send(sse_frame(None, &encoder.error(&shutting_down())))
                        .await;
                    return;
                }
            };
            let frames = match item {
                Ok(chunk) => encoder.push(&chunk),
                Err(err) => {
                    if let Some(usage) = stream.usage() {
                        settle(reservation.take(), stream.cost_usd(), &usage);
                    }
                    let _ = tx
                        .send(sse_frame(None, &encoder.error(&ApiError::from(&err))))
                        .await;
                    return;
                }
            };
            for data in frames {
                // The client left: dropping the stream records it as
                // cancelled.
                if tx.send(sse_frame(None, &data)).await.is_err() {
                    return;
                }
            }
        }
        if let Some(usage) = stream.usage() {
            settle(reservation.take(), stream.cost_usd(), &usage);
        }
        for data in encoder.finish() {
            if tx.send(sse_frame(None, &data)).await.is_err() {
                return;
            }
        }
    });
    cx.finish(sse_response(rx), Some(&route))
}

// ----- Anthropic -----

async fn anthropic_messages(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    until_cut(&shared, Protocol::Anthropic, |cx| {
        anthropic_messages_inner(&shared, cx, request)
    })
    .await
}

async fn anthropic_messages_inner(shared: &Arc<Shared>, cx: Context, request: Request) -> Response {
    let (headers, body) = match body_bytes(shared, request).await {
        Ok(read) => read,
        Err(err) => return cx.error(&err, None),
    };
    let caller = match shared.authenticate(&headers).await {
        Ok(caller) => caller,
        Err(err) => return cx.error(&err, None),
    };
    let parsed = match anthropic::parse_messages(&body) {
        Ok(parsed) => parsed,
        Err(err) => return cx.error(&err, None),
    };
    let route = parsed.model.clone();
    let request: ChatRequest = parsed.request;
    let (plan, reservation) = match shared
        .admit(&caller, &route, cx.tags(&route), Some(&request))
        .await
    {
        Ok(admitted) => admitted,
        Err(err) => return cx.error(&err, Some(&route)),
    };
    if !parsed.stream {
        return match shared.router.chat(&plan, &request).await {
            Ok(routed) => {
                settle(
                    reservation,
                    routed.outcome.cost_usd,
                    &routed.outcome.response.usage,
                );
                let label = served_label(&routed.provider, &routed.model);
                let body = anthropic::render_message(&routed.outcome.response, &label);
                cx.finish(axum::Json(body).into_response(), Some(&route))
            }
            Err(err) => cx.error(&ApiError::from(&err), Some(&route)),
        };
    }
    let mut stream = match shared.router.stream(&plan, &request).await {
        Ok(stream) => stream,
        Err(err) => return cx.error(&ApiError::from(&err), Some(&route)),
    };
    let label = served_label(stream.provider(), stream.model());
    let id = format!("msg_{}", cx.request_id);
    let mut encoder = anthropic::EventEncoder::new(&id, &label);
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let mut reservation = reservation;
    let live = shared.live.clone();
    let mut cut = shared.cut.subscribe();
    tokio::spawn(async move {
        let send = |event: anthropic::SseEvent| {
            let tx = tx.clone();
            async move { tx.send(sse_frame(Some(event.event), &event.data)).await }
        };
        let _live = live;
        let mut pinged = false;
        loop {
            let item = match next_step(&mut stream, &mut cut, Some(&tx)).await {
                Step::Item(Some(item)) => item,
                Step::Item(None) => break,
                Step::Gone => return,
                Step::Cut => {
                    let _ = send(anthropic::error_event(&shutting_down())).await;
                    return;
                }
            };
            let events = match item {
                Ok(chunk) => encoder.push(&chunk),
                Err(err) => {
                    if let Some(usage) = stream.usage() {
                        settle(reservation.take(), stream.cost_usd(), &usage);
                    }
                    let _ = send(anthropic::error_event(&ApiError::from(&err))).await;
                    return;
                }
            };
            for event in events {
                let first = event.event == "message_start";
                if send(event).await.is_err() {
                    return;
                }
                // As the vendor does: a ping right after the start.
                if first && !pinged {
                    pinged = true;
                    if send(anthropic::ping()).await.is_err() {
                        return;
                    }
                }
            }
        }
        if let Some(usage) = stream.usage() {
            settle(reservation.take(), stream.cost_usd(), &usage);
        }
        for event in encoder.finish() {
            if send(event).await.is_err() {
                return;
            }
        }
    });
    cx.finish(sse_response(rx), Some(&route))
}

async fn anthropic_count_tokens(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    until_cut(&shared, Protocol::Anthropic, |cx| {
        count_tokens_inner(&shared, cx, request)
    })
    .await
}

async fn count_tokens_inner(shared: &Arc<Shared>, cx: Context, request: Request) -> Response {
    let (headers, body) = match body_bytes(shared, request).await {
        Ok(read) => read,
        Err(err) => return cx.error(&err, None),
    };
    let caller = match shared.authenticate(&headers).await {
        Ok(caller) => caller,
        Err(err) => return cx.error(&err, None),
    };
    let (model, messages) = match anthropic::parse_count_tokens(&body) {
        Ok(parsed) => parsed,
        Err(err) => return cx.error(&err, None),
    };
    let plan = match shared.admit(&caller, &model, cx.tags(&model), None).await {
        Ok((plan, _)) => plan,
        Err(err) => return cx.error(&err, Some(&model)),
    };
    // Counted by the first route: the model a call would try first.
    let route = &plan.routes[0];
    let counted = shared
        .host()
        .count_tokens(&route.target, &route.model, &TokenInput::Messages(messages))
        .await;
    match counted {
        Ok(count) => cx.finish(
            axum::Json(json!({"input_tokens": count.tokens})).into_response(),
            Some(&model),
        ),
        Err(err) => cx.error(&ApiError::from(&err), Some(&model)),
    }
}

// ----- models, health -----

async fn models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let anthropic_client = headers.contains_key("anthropic-version");
    let protocol = if anthropic_client {
        Protocol::Anthropic
    } else {
        Protocol::OpenAi
    };
    let cx = Context::new(protocol, &shared);
    let caller = match shared.authenticate(&headers).await {
        Ok(caller) => caller,
        Err(err) => return cx.error(&err, None),
    };
    let host = shared.host();
    let mut ids: Vec<(String, String, String)> = host
        .catalogue()
        .all()
        .filter(|entry| host.provider_info(&entry.provider).is_some())
        .map(|entry| {
            (
                format!("{}/{}", entry.provider, entry.id),
                entry.provider.clone(),
                entry.display_name.clone(),
            )
        })
        .collect();
    match shared.service.agents().await {
        Ok(agents) => ids.extend(agents.into_iter().map(|agent| {
            let id = format!("agent:{}", agent.name);
            (id.clone(), "llmhost".to_owned(), id)
        })),
        Err(err) => return cx.error(&ApiError::from(&err), None),
    }
    // A scoped key sees what it may call.
    ids.retain(|(id, _, _)| caller.may_use(id).is_ok());
    let body = if anthropic_client {
        let data: Vec<Value> = ids
            .iter()
            .map(|(id, _, name)| {
                json!({
                    "type": "model",
                    "id": id,
                    "display_name": name,
                    "created_at": "1970-01-01T00:00:00Z",
                })
            })
            .collect();
        json!({
            "data": data,
            "has_more": false,
            "first_id": ids.first().map(|m| &m.0),
            "last_id": ids.last().map(|m| &m.0),
        })
    } else {
        let pairs: Vec<(String, String)> =
            ids.into_iter().map(|(id, owner, _)| (id, owner)).collect();
        openai::render_models(&pairs, unix_now())
    };
    cx.finish(axum::Json(body).into_response(), None)
}

/// The Prometheus figures: for the master key (they name every route and
/// agent), or anyone on an open loopback gateway.
async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let cx = Context::new(Protocol::OpenAi, &shared);
    match shared.authenticate(&headers).await {
        Ok(Caller::Master | Caller::Open) => {}
        Ok(Caller::Virtual(_)) => {
            return cx.error(
                &ApiError::permission("metrics are for the master key"),
                None,
            );
        }
        Err(err) => return cx.error(&err, None),
    }
    let text = shared.metrics.render(&shared.router);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Ready when plugins are loaded and the database answers.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let plugins = shared.host().plugins().len();
    let database = shared.service.store().schema_version().await;
    let ready = plugins > 0 && database.is_ok();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "plugins": plugins,
        "load_errors": shared.host().load_errors().len(),
        "database": match &database {
            Ok(_) => "ok".to_owned(),
            Err(err) => err.to_string(),
        },
    });
    (status, axum::Json(body)).into_response()
}

async fn not_found(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let protocol = if request.headers().contains_key("anthropic-version") {
        Protocol::Anthropic
    } else {
        Protocol::OpenAi
    };
    let cx = Context::new(protocol, &shared);
    let path = request.uri().path().to_owned();
    cx.error(
        &ApiError::not_found(format!("no route {} {path}", request.method())),
        None,
    )
}
