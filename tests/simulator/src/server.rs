//! Accepting connections, recording requests and dispatching them to vendors.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::{DeepSeekQuirks, Reply, Vendor, anthropic, deepseek, openai, xai};

/// Request bodies above this are refused rather than buffered; real chat
/// requests are far smaller, so hitting it means a broken client.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One HTTP request as the simulator received it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The vendor its path addressed, if any.
    pub vendor: Option<Vendor>,
    /// The HTTP method, e.g. `POST`.
    pub method: String,
    /// The full request path without the query, e.g. `/openai/v1/chat/completions`.
    pub path: String,
    /// The query string without its `?`, if the request had one.
    pub query: Option<String>,
    /// Headers in the order received, names lowercased. Values that are not
    /// UTF-8 are converted lossily.
    pub headers: Vec<(String, String)>,
    /// The raw request body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The body parsed as JSON, or `None` if it is not valid JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The first value of header `name` (matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Per-request settings from the simulator, for the vendors' default answers.
pub(crate) struct Context {
    /// When the request arrived, for processing-time headers.
    pub(crate) started: Instant,
    /// Pause before each part of a streamed default answer.
    pub(crate) stream_delay: Duration,
    /// How DeepSeek's default answers misbehave.
    pub(crate) deepseek: DeepSeekQuirks,
}

/// State shared between the [`crate::Simulator`] handle and the server task.
#[derive(Default)]
pub(crate) struct Shared {
    scripted: Mutex<HashMap<Vendor, VecDeque<Reply>>>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Set once nobody can read `requests` any more, so a long-running
    /// server does not keep every body it ever received.
    recording_off: AtomicBool,
    pub(crate) connections: AtomicUsize,
    stream_delay: Mutex<Duration>,
    /// Pause before the head of every chat answer, scripted or not.
    answer_delay: Mutex<Duration>,
    deepseek_quirks: Mutex<DeepSeekQuirks>,
    /// Answer chunked request bodies with 411, as strict servers do.
    reject_chunked: AtomicBool,
}

/// A panic in one test thread must not make the simulator unusable for the
/// rest, so poisoned locks are simply taken over.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn enqueue(&self, vendor: Vendor, reply: Reply) {
        lock(&self.scripted)
            .entry(vendor)
            .or_default()
            .push_back(reply);
    }

    pub(crate) fn pending(&self, vendor: Vendor) -> usize {
        lock(&self.scripted).get(&vendor).map_or(0, VecDeque::len)
    }

    fn take_scripted(&self, vendor: Vendor) -> Option<Reply> {
        lock(&self.scripted).get_mut(&vendor)?.pop_front()
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    pub(crate) fn stop_recording(&self) {
        self.recording_off.store(true, Ordering::SeqCst);
        lock(&self.requests).clear();
    }

    fn record(&self, request: RecordedRequest) {
        if !self.recording_off.load(Ordering::SeqCst) {
            lock(&self.requests).push(request);
        }
    }

    pub(crate) fn set_stream_delay(&self, delay: Duration) {
        *lock(&self.stream_delay) = delay;
    }

    fn stream_delay(&self) -> Duration {
        *lock(&self.stream_delay)
    }

    pub(crate) fn set_answer_delay(&self, delay: Duration) {
        *lock(&self.answer_delay) = delay;
    }

    pub(crate) fn set_deepseek_quirks(&self, quirks: DeepSeekQuirks) {
        *lock(&self.deepseek_quirks) = quirks;
    }

    pub(crate) fn set_reject_chunked(&self, reject: bool) {
        self.reject_chunked.store(reject, Ordering::SeqCst);
    }
}

/// Accepts connections forever. Connections run in a `JoinSet` owned by this
/// task, so aborting the task (dropping the simulator) closes them all.
pub(crate) async fn run(listener: TcpListener, shared: Arc<Shared>) {
    let router = Router::new()
        .fallback(handle)
        .with_state(Arc::clone(&shared));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    // Nagle's algorithm would merge small body parts that a
                    // test wants to arrive as separate pieces.
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(%err, "cannot set TCP_NODELAY");
                    }
                    let service = TowerToHyperService::new(router.clone());
                    connections.spawn(async move {
                        let served = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        if let Err(err) = served {
                            tracing::debug!(%peer, %err, "connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    // Per-connection failures (reset before accept) are
                    // harmless; anything else, like running out of file
                    // descriptors, needs a pause before retrying.
                    tracing::warn!(%err, "accept failed");
                    if !matches!(
                        err.kind(),
                        std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionRefused
                    ) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            },
            // Reap finished connections so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let route = Vendor::route(&path);
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await;

    shared.record(RecordedRequest {
        vendor: route.map(|(vendor, _)| vendor),
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body: body.as_ref().map(|b| b.to_vec()).unwrap_or_default(),
    });
    tracing::debug!(method = %parts.method, %path, "simulator request");

    if shared.reject_chunked.load(Ordering::SeqCst) && is_chunked(&parts.headers) {
        return length_required().into_response().await;
    }

    let body = match body {
        Ok(body) if route.is_none_or(|(vendor, _)| body.len() <= max_body(vendor)) => body,
        _ => {
            return too_large(route.map(|(vendor, _)| vendor))
                .into_response()
                .await;
        }
    };

    let reply = match route {
        None => unknown_vendor(&path),
        Some((vendor, rest)) => {
            let chat = vendor.is_chat_path(rest);
            let scripted = if chat {
                shared.take_scripted(vendor)
            } else {
                None
            };
            let delay = *lock(&shared.answer_delay);
            if chat && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            scripted.unwrap_or_else(|| {
                let context = Context {
                    started,
                    stream_delay: shared.stream_delay(),
                    deepseek: lock(&shared.deepseek_quirks).clone(),
                };
                let respond = match vendor {
                    Vendor::OpenAi => openai::respond,
                    Vendor::DeepSeek => deepseek::respond,
                    Vendor::XAi => xai::respond,
                    Vendor::Anthropic => anthropic::respond,
                };
                respond(&parts.method, rest, &parts.headers, &body, &context)
            })
        }
    };
    reply.into_response().await
}

/// Whether a request's body came with chunked framing.
fn is_chunked(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

/// The answer of a strict server to a chunked request body, in the OpenAI
/// error shape whatever the vendor: such a refusal comes from the server or
/// proxy in front of the API, before any vendor code runs.
fn length_required() -> Reply {
    Reply::openai_error(
        411,
        "invalid_request_error",
        Some("length_required"),
        "A request body must be sent with Content-Length; chunked transfer encoding is not accepted.",
    )
}

/// The largest request body `vendor` accepts.
fn max_body(vendor: Vendor) -> usize {
    match vendor {
        // Anthropic documents 32 MB for the Messages API.
        Vendor::Anthropic => anthropic::MAX_BODY_BYTES,
        Vendor::OpenAi | Vendor::DeepSeek | Vendor::XAi => MAX_BODY_BYTES,
    }
}

/// The reply to a body that is too large or could not be read, in the
/// addressed vendor's error shape.
fn too_large(vendor: Option<Vendor>) -> Reply {
    match vendor {
        Some(Vendor::Anthropic) => Reply::anthropic_error(
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        Some(Vendor::DeepSeek) => Reply::deepseek_error(
            413,
            "invalid_request_error",
            "The request body could not be read or is too large.",
        ),
        Some(Vendor::XAi) => Reply::xai_error(
            413,
            "Client specified an invalid argument",
            "The request body could not be read or is too large.",
        ),
        _ => Reply::openai_error(
            413,
            "invalid_request_error",
            None,
            "The request body could not be read or is too large.",
        ),
    }
}

fn unknown_vendor(path: &str) -> Reply {
    let known: Vec<String> = Vendor::ALL
        .iter()
        .map(|v| format!("/{}{}", v.prefix(), v.api_root()))
        .collect();
    Reply::json(
        404,
        serde_json::json!({
            "error": {
                "message": format!(
                    "No simulated vendor serves {path}; base paths are: {}",
                    known.join(", ")
                ),
                "type": "not_found",
            }
        }),
    )
}
