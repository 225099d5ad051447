//! Chat in either protocol: `POST /v1/chat/completions` and
//! `POST /v1/messages` share one flow (read, authenticate, parse, admit,
//! route), the protocol deciding only the parsing and the rendering;
//! streams are read on a task of their own into SSE frames.

use super::admission::settle;
use super::errors::ApiError;
use super::server::{Caller, Context, Protocol, Shared, body_bytes, unix_now};
use super::{admission::Admission, anthropic, openai};
use crate::error::Error;
use crate::types::ChatRequest;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Frames a stream may run ahead of a slow client.
const STREAM_BUFFER: usize = 32;
/// Silence after which an Anthropic stream gets a `ping`.
const PING_EVERY: Duration = Duration::from_secs(10);

/// `data: …` frames of an SSE stream, with an optional event name.
pub(super) fn sse_frame(event: Option<&str>, data: &str) -> Bytes {
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

pub(super) fn sse_response(rx: mpsc::Receiver<Bytes>) -> Response {
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
pub(super) enum Step {
    Item(Option<Result<crate::types::Chunk, Error>>),
    /// The grace period is over.
    Cut,
    /// The client left.
    Gone,
}

/// The stream's next chunk, unless the gateway is cut first. With `pings`,
/// a `ping` event goes out after each stretch of silence, while the same
/// read of the stream goes on (a read is never abandoned half-way).
pub(super) async fn next_step(
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
pub(super) async fn cut_signal(cut: &mut tokio::sync::watch::Receiver<bool>) {
    let cut = cut.wait_for(|cut| *cut).await.is_ok();
    let _ = cut;
}

/// The error of a request cut when the shutdown grace period ran out.
pub(super) fn shutting_down() -> ApiError {
    ApiError::new(
        503,
        super::errors::ErrorClass::Overloaded,
        "the gateway is shutting down and its grace period ran out",
    )
    .should_retry(true)
}

/// Runs a handler unless the grace period runs out first; then the
/// request ends with 503 (and its attempt records itself as cancelled).
pub(super) async fn until_cut<F: Future<Output = Response>>(
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

/// `provider/model` of what served a call.
pub(super) fn served_label(provider: &str, model: &str) -> String {
    format!("{provider}/{model}")
}

// ----- chat, in either protocol -----

pub(super) async fn openai_chat(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    until_cut(&shared, Protocol::OpenAi, |cx| chat(&shared, cx, request)).await
}

pub(super) async fn anthropic_messages(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Response {
    until_cut(&shared, Protocol::Anthropic, |cx| {
        chat(&shared, cx, request)
    })
    .await
}

/// A chat request parsed from either protocol.
pub(super) struct ParsedCall {
    model: String,
    request: ChatRequest,
    stream: bool,
    include_usage: bool,
}

pub(super) fn parse_call(protocol: Protocol, body: &[u8]) -> Result<ParsedCall, ApiError> {
    Ok(match protocol {
        Protocol::OpenAi => {
            let parsed = openai::parse_chat(body)?;
            ParsedCall {
                model: parsed.model,
                request: parsed.request,
                stream: parsed.stream,
                include_usage: parsed.include_usage,
            }
        }
        Protocol::Anthropic => {
            let parsed = anthropic::parse_messages(body)?;
            ParsedCall {
                model: parsed.model,
                request: parsed.request,
                stream: parsed.stream,
                include_usage: true,
            }
        }
    })
}

/// `POST /v1/chat/completions` and `POST /v1/messages`: one flow, the
/// protocol deciding only the parsing and the rendering.
pub(super) async fn chat(shared: &Arc<Shared>, mut cx: Context, request: Request) -> Response {
    let (headers, body) = match body_bytes(shared, request).await {
        Ok(read) => read,
        Err(err) => return cx.error(&err, None),
    };
    cx.cache_control = headers
        .get(header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let caller = match shared.authenticate(&headers).await {
        Ok(caller) => caller,
        Err(err) => return cx.error(&err, None),
    };
    chat_as(shared, cx, &body, caller).await
}

/// The chat flow for a caller already authenticated (the console's
/// playground is an admin's, as the master key's).
pub(super) async fn chat_as(
    shared: &Arc<Shared>,
    cx: Context,
    body: &[u8],
    caller: Caller,
) -> Response {
    let parsed = match parse_call(cx.protocol, body) {
        Ok(parsed) => parsed,
        Err(err) => return cx.error(&err, None),
    };
    let route = parsed.model;
    let request = parsed.request;
    let (mut plan, admission) = match shared
        .admit(&caller, &route, cx.tags(&route), Some(&request))
        .await
    {
        Ok(admitted) => admitted,
        Err(err) => return cx.error(&err, Some(&route)),
    };
    let (key_ttl, key_shared) = match &caller {
        Caller::Virtual(key) => (key.cache_ttl_secs, key.cache_shared),
        _ => (None, false),
    };
    plan.cache = crate::router::cache::gateway_policy(
        plan.cache,
        key_ttl,
        key_shared,
        cx.cache_control.as_deref(),
    );
    if !parsed.stream {
        return match shared.router.chat(&plan, &request).await {
            Ok(routed) => {
                let (usage, cost) = routed.spent();
                settle(admission, cost, &usage);
                let response = &routed.outcome.response;
                let label = served_label(&routed.provider, &routed.model);
                let body = match cx.protocol {
                    Protocol::OpenAi => openai::render_completion(response, &label, unix_now()),
                    Protocol::Anthropic => anthropic::render_message(response, &label),
                };
                let response = with_cache_status(axum::Json(body).into_response(), routed.cache);
                cx.finish(response, Some(&route))
            }
            Err(err) => cx.error(&ApiError::from(&err), Some(&route)),
        };
    }
    let stream = match shared.router.stream(&plan, &request).await {
        Ok(stream) => stream,
        Err(err) => return cx.error(&ApiError::from(&err), Some(&route)),
    };
    let label = served_label(stream.provider(), stream.model());
    let encoder = match cx.protocol {
        Protocol::OpenAi => Encoder::OpenAi(openai::ChunkEncoder::new(
            &format!("chatcmpl-{}", cx.request_id),
            &label,
            unix_now(),
            parsed.include_usage,
        )),
        Protocol::Anthropic => Encoder::Anthropic {
            events: anthropic::EventEncoder::new(&format!("msg_{}", cx.request_id), &label),
            pinged: false,
        },
    };
    let status = stream.cache_status();
    let rx = spawn_stream(shared, stream, encoder, admission);
    cx.finish(with_cache_status(sse_response(rx), status), Some(&route))
}

/// `response` with `x-llmhost-cache: hit|miss|bypass` when the call had a
/// cache policy.
fn with_cache_status(
    mut response: Response,
    status: Option<crate::router::CacheStatus>,
) -> Response {
    if let Some(status) = status {
        response.headers_mut().insert(
            axum::http::HeaderName::from_static("x-llmhost-cache"),
            axum::http::HeaderValue::from_static(status.as_str()),
        );
    }
    response
}

/// A stream's chunks as one protocol's SSE frames.
pub(super) enum Encoder {
    OpenAi(openai::ChunkEncoder),
    Anthropic {
        events: anthropic::EventEncoder,
        /// Whether the ping that follows `message_start` went out.
        pinged: bool,
    },
}

pub(super) fn event_frame(event: &anthropic::SseEvent) -> Bytes {
    sse_frame(Some(event.event), &event.data)
}

impl Encoder {
    fn push(&mut self, chunk: &crate::types::Chunk) -> Vec<Bytes> {
        match self {
            Encoder::OpenAi(chunks) => chunks
                .push(chunk)
                .iter()
                .map(|data| sse_frame(None, data))
                .collect(),
            Encoder::Anthropic { events, pinged } => {
                let mut frames = Vec::new();
                for event in events.push(chunk) {
                    frames.push(event_frame(&event));
                    // As the vendor does: a ping right after the start.
                    if event.event == "message_start" && !*pinged {
                        *pinged = true;
                        frames.push(event_frame(&anthropic::ping()));
                    }
                }
                frames
            }
        }
    }

    fn finish(&mut self) -> Vec<Bytes> {
        match self {
            Encoder::OpenAi(chunks) => chunks
                .finish()
                .iter()
                .map(|data| sse_frame(None, data))
                .collect(),
            Encoder::Anthropic { events, .. } => events.finish().iter().map(event_frame).collect(),
        }
    }

    fn error(&self, err: &ApiError) -> Bytes {
        match self {
            Encoder::OpenAi(chunks) => sse_frame(None, &chunks.error(err)),
            Encoder::Anthropic { .. } => event_frame(&anthropic::error_event(err)),
        }
    }

    /// Whether silence is filled with `ping` events (Anthropic's streams).
    fn pings(&self) -> bool {
        matches!(self, Encoder::Anthropic { .. })
    }
}

/// Sends the stream's frames until it ends, fails, is cut or the client
/// leaves.
async fn relay(
    stream: &mut crate::router::RoutedStream,
    encoder: &mut Encoder,
    tx: &mpsc::Sender<Bytes>,
    cut: &mut tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let pings = encoder.pings().then_some(tx);
        let item = match next_step(stream, cut, pings).await {
            Step::Item(Some(item)) => item,
            Step::Item(None) => break,
            Step::Gone => return,
            Step::Cut => {
                let _ = tx.send(encoder.error(&shutting_down())).await;
                return;
            }
        };
        let frames = match item {
            Ok(chunk) => encoder.push(&chunk),
            Err(err) => {
                let _ = tx.send(encoder.error(&ApiError::from(&err))).await;
                return;
            }
        };
        for frame in frames {
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    }
    for frame in encoder.finish() {
        if tx.send(frame).await.is_err() {
            return;
        }
    }
}

/// Reads `stream` on a task of its own into SSE frames for the response
/// body. The client leaving drops the stream (its usage row says
/// cancelled); a failure after the start ends the body with an error
/// event; the end of the grace period cuts it the same way.
pub(super) fn spawn_stream(
    shared: &Arc<Shared>,
    mut stream: crate::router::RoutedStream,
    mut encoder: Encoder,
    admission: Option<Admission>,
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let live = shared.live.clone();
    let mut cut = shared.cut.subscribe();
    tokio::spawn(async move {
        let _live = live;
        relay(&mut stream, &mut encoder, &tx, &mut cut).await;
        // However it ended, the budget is charged what the usage row
        // records (an estimate for a stream cut short).
        let (usage, cost) = stream.spent();
        settle(admission, cost, &usage);
    });
    rx
}
