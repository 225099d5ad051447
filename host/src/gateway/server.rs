//! `llmhost serve`: the HTTP gateway. OpenAI's Chat Completions and
//! Anthropic's Messages protocols in front of every loaded provider, each
//! request routed by the one [`Router`] (retries, breakers, rate limits,
//! usage in batches).
//!
//! `model` names a route: `PROVIDER/MODEL` (`claude/claude-sonnet-4-5`) or
//! `agent:NAME` (the agent's configs with their fallbacks). Either
//! protocol reaches every provider.

use super::chat::{anthropic_messages, openai_chat, until_cut};
use super::errors::ApiError;
use super::limits::KeyLimiter;
use super::metrics::Metrics;
use super::{anthropic, openai};
use crate::error::{Error, ErrorKind};
use crate::router::{CallTags, Router};
use crate::service::{AdminTokens, ConfigService, VirtualKey, VirtualKeys};
use crate::types::TokenInput;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
/// Environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "LLMHOST_MASTER_KEY";

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
    /// State shared with other replicas (`[shared] redis_url`): the
    /// virtual keys' rate limits are kept there.
    pub shared: Option<Arc<crate::shared::Redis>>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a valid address"),
            master_key: None,
            shutdown_grace: Duration::from_secs(30),
            max_body_bytes: 32 << 20,
            metrics: Metrics::new(),
            shared: None,
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
            .field("shared", &self.shared)
            .finish()
    }
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub(super) enum Caller {
    /// The master key.
    Master,
    /// No key is configured: a loopback-only gateway without auth.
    Open,
    /// A virtual key, with its limits.
    Virtual(Box<VirtualKey>),
}

impl Caller {
    /// Refuses a route the key is not allowed: 403.
    pub(super) fn may_use(&self, route: &str) -> Result<(), ApiError> {
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

    pub(super) fn tag(&self, tags: &mut CallTags) {
        if let Caller::Virtual(key) = self {
            tags.virtual_key = Some((key.id, key.name.clone()));
        }
    }
}

pub(super) struct Shared {
    pub(super) service: ConfigService,
    pub(super) router: Router,
    /// blake3 of the master key: compared in constant time, and the key
    /// itself is not kept.
    pub(super) master: Option<blake3::Hash>,
    /// Virtual keys, when the gateway has an encryption key to check them.
    pub(super) virtual_keys: Option<VirtualKeys>,
    /// Whether no key was configured at start: then no auth (loopback
    /// only) until a virtual key appears.
    pub(super) open: bool,
    /// Set once a virtual key exists in an `open` gateway's store.
    pub(super) keys_appeared: std::sync::atomic::AtomicBool,
    /// When the store was last asked whether keys appeared.
    pub(super) keys_checked: std::sync::Mutex<Option<Instant>>,
    /// Set when the grace period is over: requests and streams still
    /// running stop, recording their usage.
    pub(super) cut: tokio::sync::watch::Sender<bool>,
    /// Held by every request and stream task: the count says how many are
    /// still running.
    pub(super) live: Arc<()>,
    pub(super) key_limits: Arc<KeyLimiter>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) max_body_bytes: usize,
    /// Admin tokens of the admin API and the console.
    pub(super) admin_tokens: AdminTokens,
    /// The console's signed-in sessions.
    pub(super) sessions: super::admin::Sessions,
    /// State shared with other replicas, when configured.
    pub(super) shared: Option<Arc<crate::shared::Redis>>,
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
pub(super) enum Protocol {
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
                kind: ErrorKind::EncryptionKeyMissing,
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
        if let Some(redis) = &options.shared {
            options.metrics.watch_shared(redis.clone());
        }
        Ok(Self {
            shared: Arc::new(Shared {
                router,
                master,
                virtual_keys,
                open,
                keys_appeared: std::sync::atomic::AtomicBool::new(false),
                keys_checked: std::sync::Mutex::new(None),
                cut: tokio::sync::watch::channel(false).0,
                live: Arc::new(()),
                key_limits: Arc::new(KeyLimiter::new(options.shared.clone())),
                metrics: options.metrics.clone(),
                max_body_bytes: options.max_body_bytes,
                admin_tokens: AdminTokens::new(service.store().clone()),
                sessions: super::admin::Sessions::new(options.shared.clone()),
                shared: options.shared.clone(),
                service,
            }),
            options,
        })
    }

    /// The routes, for serving or for tests.
    pub fn app(&self) -> axum::Router {
        let (admin, _) = super::admin::routes();
        axum::Router::new()
            .merge(admin)
            .route(
                "/ui/api/session",
                get(super::admin::auth::current)
                    .post(super::admin::auth::sign_in)
                    .delete(super::admin::auth::sign_out),
            )
            .route("/v1/chat/completions", post(openai_chat))
            .route("/v1/messages", post(anthropic_messages))
            .route("/v1/messages/count_tokens", post(anthropic_count_tokens))
            .route("/v1/models", get(models))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .merge(super::console::routes())
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
pub(super) struct Context {
    pub(super) request_id: String,
    pub(super) started: Instant,
    pub(super) protocol: Protocol,
    pub(super) shared: Arc<Shared>,
    /// The request's `cache-control` header, for the response cache.
    pub(super) cache_control: Option<String>,
}

impl Context {
    pub(super) fn new(protocol: Protocol, shared: &Arc<Shared>) -> Self {
        Self {
            request_id: crate::host::new_request_id(),
            started: Instant::now(),
            protocol,
            shared: shared.clone(),
            cache_control: None,
        }
    }

    pub(super) fn tags(&self, route: &str) -> CallTags {
        CallTags {
            request_id: Some(self.request_id.clone()),
            route: Some(route.to_owned()),
            ..CallTags::default()
        }
    }

    /// `response` with the request id headers.
    pub(super) fn finish(&self, mut response: Response, route: Option<&str>) -> Response {
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
    pub(super) fn error(&self, err: &ApiError, route: Option<&str>) -> Response {
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
pub(super) fn presented_key(headers: &HeaderMap) -> Option<&str> {
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

pub(super) async fn body_bytes(
    shared: &Shared,
    request: Request,
) -> Result<(HeaderMap, Bytes), ApiError> {
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

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
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

/// Ready when plugins are loaded and the database answers, and Redis
/// when it is configured and the replica fails closed.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let plugins = shared.host().plugins().len();
    let database = shared.service.store().schema_version().await;
    let redis = match &shared.shared {
        Some(redis) => Some(redis.ping().await),
        None => None,
    };
    // Without Redis a replica that fails closed refuses what has a budget
    // or a limit; one that fails open serves on.
    let shared_down = matches!(redis, Some(Err(_)))
        && shared
            .shared
            .as_ref()
            .is_some_and(|r| r.on_unavailable() == crate::shared::OnUnavailable::Closed);
    let ready = plugins > 0 && database.is_ok() && !shared_down;
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
    let mut body = body;
    if let Some(redis) = redis {
        body["shared"] = json!(match redis {
            Ok(()) => "ok".to_owned(),
            Err(err) => err.to_string(),
        });
    }
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
