//! Anthropic's Messages API, as served at `https://api.anthropic.com`.
//!
//! Token counts are deterministic `o200k_base` estimates, since Claude's
//! tokenizer is not public. Input tokens are the sum, with no framing, of
//! the tokens of: the system text, every text and thinking block, each
//! `tool_use` block's name and input (as compact JSON), each `tool_result`'s
//! text, and each tool definition's name, description and input schema (as
//! compact JSON). Images, documents and redacted thinking count nothing.
//! `/v1/messages/count_tokens` reports exactly what `/v1/messages` would.
//! Output tokens are the thinking text plus the answer text, or plus the
//! tool input as compact JSON.

mod answer;
mod content;
mod request;

use std::sync::LazyLock;

use http::{HeaderMap, Method};
use serde::Serialize;

use crate::openai::answer::to_json;
use crate::server::Context;
use crate::{Reply, ids, tokens};
use content::Conversation;
use request::{Endpoint, MessagesRequest};

/// The messages endpoint, below the vendor prefix.
pub(crate) const MESSAGES_PATH: &str = "/v1/messages";
const COUNT_TOKENS_PATH: &str = "/v1/messages/count_tokens";
const MODELS_PATH: &str = "/v1/models";

/// Anthropic refuses Messages requests above 32 MB with a 413.
pub(crate) const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The `anthropic-version` values Anthropic accepts; `2026-10-21` is the
/// one the official Python SDK (2.15) sends.
const VERSIONS: &[&str] = &["2026-10-21", "2023-06-01", "2023-01-01"];

/// A model the simulator accepts, by its alias or its dated snapshot id.
struct Model {
    id: &'static str,
    snapshot: &'static str,
    display_name: &'static str,
    created_at: &'static str,
}

const MODELS: &[Model] = &[
    // Anthropic publishes no dated snapshot for the 5.5 models' aliases
    // that the sources agree on, so the alias stands in for it.
    Model {
        id: "claude-opus-5-5",
        snapshot: "claude-opus-5-5",
        display_name: "Claude Opus 5.5",
        created_at: "2026-09-22T00:00:00Z",
    },
    Model {
        id: "claude-sonnet-5-5",
        snapshot: "claude-sonnet-5-5",
        display_name: "Claude Sonnet 5.5",
        created_at: "2026-09-28T00:00:00Z",
    },
    Model {
        id: "claude-haiku-5-5",
        snapshot: "claude-haiku-5-5",
        display_name: "Claude Haiku 5.5",
        created_at: "2026-10-07T00:00:00Z",
    },
    Model {
        id: "claude-opus-4-5",
        snapshot: "claude-opus-4-5-20251101",
        display_name: "Claude Opus 4.5",
        created_at: "2025-11-24T00:00:00Z",
    },
    Model {
        id: "claude-opus-4-1",
        snapshot: "claude-opus-4-1-20250805",
        display_name: "Claude Opus 4.1",
        created_at: "2025-08-05T00:00:00Z",
    },
    Model {
        id: "claude-sonnet-4-5",
        snapshot: "claude-sonnet-4-5-20250929",
        display_name: "Claude Sonnet 4.5",
        created_at: "2025-09-29T00:00:00Z",
    },
    Model {
        id: "claude-sonnet-4",
        snapshot: "claude-sonnet-4-20250514",
        display_name: "Claude Sonnet 4",
        created_at: "2025-05-22T00:00:00Z",
    },
    Model {
        id: "claude-haiku-4-5",
        snapshot: "claude-haiku-4-5-20251001",
        display_name: "Claude Haiku 4.5",
        created_at: "2025-10-15T00:00:00Z",
    },
    Model {
        id: "claude-3-5-haiku-latest",
        snapshot: "claude-3-5-haiku-20241022",
        display_name: "Claude Haiku 3.5",
        created_at: "2024-10-22T00:00:00Z",
    },
];

/// The Anthropic model ids the simulator accepts and lists, in its
/// `/v1/models` order. Their dated snapshot ids (`claude-sonnet-4-20250514`)
/// are accepted too.
pub fn anthropic_models() -> &'static [&'static str] {
    static IDS: LazyLock<Vec<&'static str>> =
        LazyLock::new(|| MODELS.iter().map(|m| m.id).collect());
    &IDS
}

fn find_model(model: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.id == model || m.snapshot == model)
}

// A generous tier: the headers never suggest throttling unless a test
// scripts a 429.
const REQUESTS_PER_MINUTE: u64 = 4_000;
const INPUT_TOKENS_PER_MINUTE: u64 = 2_000_000;
const OUTPUT_TOKENS_PER_MINUTE: u64 = 400_000;

/// Answers a request for `path` (below the `/anthropic` prefix) with what
/// Anthropic would send, scripted replies aside.
pub(crate) fn respond(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    context: &Context,
) -> Reply {
    let request_id = ids::anthropic_request_id();
    let reply = check_headers(headers).and_then(|()| match (method, path) {
        (&Method::POST, MESSAGES_PATH) => messages(body, context),
        (&Method::POST, COUNT_TOKENS_PATH) => count_tokens(body),
        (&Method::GET, MODELS_PATH) => Ok(list_models()),
        (&Method::GET, _) if path.starts_with("/v1/models/") => {
            retrieve_model(&path["/v1/models/".len()..])
        }
        _ => Err(Failure::new(404, "not_found_error", "Not Found")),
    });
    match reply {
        Ok(reply) => reply,
        Err(failure) => Reply::json_text(
            failure.status,
            error_body(&failure.kind, &failure.message, &request_id),
        ),
    }
    .header("request-id", &request_id)
}

/// An error to send in Anthropic's shape.
struct Failure {
    status: u16,
    kind: String,
    message: String,
}

impl Failure {
    fn new(status: u16, kind: &str, message: &str) -> Failure {
        Failure {
            status,
            kind: kind.to_owned(),
            message: message.to_owned(),
        }
    }

    fn invalid(message: String) -> Failure {
        Failure {
            status: 400,
            kind: "invalid_request_error".to_owned(),
            message,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorDetail<'a>,
    request_id: &'a str,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

fn error_body(kind: &str, message: &str, request_id: &str) -> String {
    to_json(&ErrorBody {
        kind: "error",
        error: ErrorDetail { kind, message },
        request_id,
    })
}

/// An Anthropic error reply with a fresh request id, in the body and the
/// `request-id` header.
pub(crate) fn error_reply(status: u16, error_type: &str, message: &str) -> Reply {
    let request_id = ids::anthropic_request_id();
    Reply::json_text(status, error_body(error_type, message, &request_id))
        .header("request-id", &request_id)
}

/// Any non-empty key is accepted, in `x-api-key` or as
/// `authorization: Bearer` (which the official Python SDK sends for an API
/// key since its 2.x releases); `anthropic-version` must name a real
/// version.
fn check_headers(headers: &HeaderMap) -> Result<(), Failure> {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
    };
    let bearer = text("authorization")
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .map(|key| key.trim().to_owned())
        })
        .unwrap_or_default();
    if text("x-api-key").unwrap_or_default().is_empty() && bearer.is_empty() {
        return Err(Failure::new(
            401,
            "authentication_error",
            "invalid x-api-key",
        ));
    }
    match text("anthropic-version") {
        None => Err(Failure::invalid(
            "anthropic-version: header is required".to_owned(),
        )),
        Some(version) if !VERSIONS.contains(&version.as_str()) => Err(Failure::invalid(format!(
            "anthropic-version: \"{version}\" is not a valid version"
        ))),
        Some(_) => Ok(()),
    }
}

/// Parses a request and checks that its model exists.
fn parse(body: &[u8], endpoint: Endpoint) -> Result<MessagesRequest, Failure> {
    let request = request::parse(body, endpoint).map_err(Failure::invalid)?;
    if find_model(&request.model).is_none() {
        return Err(Failure::new(
            404,
            "not_found_error",
            &format!("model: {}", request.model),
        ));
    }
    Ok(request)
}

fn messages(body: &[u8], context: &Context) -> Result<Reply, Failure> {
    let request = parse(body, Endpoint::Messages)?;
    let outcome = answer::compose(&request);
    let id = ids::message_id();
    let reply = if request.stream {
        Reply::sse(answer::stream_events(&id, &request.model, &outcome))
            .delay_each(context.stream_delay)
    } else {
        Reply::json_text(200, answer::message(&id, &request.model, &outcome))
    };
    Ok(with_rate_limit_headers(
        reply,
        outcome.input_tokens,
        outcome.output_tokens,
    ))
}

#[derive(Serialize)]
struct TokenCount {
    input_tokens: usize,
}

fn count_tokens(body: &[u8]) -> Result<Reply, Failure> {
    let request = parse(body, Endpoint::CountTokens)?;
    let count = TokenCount {
        input_tokens: request.input_tokens,
    };
    Ok(Reply::json_text(200, to_json(&count)))
}

/// Anthropic's `anthropic-ratelimit-*` headers. Budgets refill continuously
/// over a minute, so each reset is the moment the consumed share has
/// refilled; `tokens` reports the output budget, the tighter one.
fn with_rate_limit_headers(reply: Reply, input: usize, output: usize) -> Reply {
    let now = ids::unix_now();
    let limits = [
        ("requests", REQUESTS_PER_MINUTE, 1),
        ("tokens", OUTPUT_TOKENS_PER_MINUTE, output),
        ("input-tokens", INPUT_TOKENS_PER_MINUTE, input),
        ("output-tokens", OUTPUT_TOKENS_PER_MINUTE, output),
    ];
    limits
        .into_iter()
        .fold(reply, |reply, (name, limit, used)| {
            let used = u64::try_from(used).unwrap_or(u64::MAX).min(limit);
            let reset = now + (used.saturating_mul(60)).div_ceil(limit);
            reply
                .header(
                    &format!("anthropic-ratelimit-{name}-limit"),
                    &limit.to_string(),
                )
                .header(
                    &format!("anthropic-ratelimit-{name}-remaining"),
                    &(limit - used).to_string(),
                )
                .header(
                    &format!("anthropic-ratelimit-{name}-reset"),
                    &ids::rfc3339(reset),
                )
        })
}

#[derive(Serialize)]
struct ModelObject {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'static str,
    display_name: &'static str,
    created_at: &'static str,
}

#[derive(Serialize)]
struct ModelList {
    data: Vec<ModelObject>,
    has_more: bool,
    first_id: Option<&'static str>,
    last_id: Option<&'static str>,
}

fn model_object(model: &Model) -> ModelObject {
    ModelObject {
        kind: "model",
        id: model.id,
        display_name: model.display_name,
        created_at: model.created_at,
    }
}

fn list_models() -> Reply {
    let list = ModelList {
        data: MODELS.iter().map(model_object).collect(),
        has_more: false,
        first_id: MODELS.first().map(|m| m.id),
        last_id: MODELS.last().map(|m| m.id),
    };
    Reply::json_text(200, to_json(&list))
}

fn retrieve_model(model: &str) -> Result<Reply, Failure> {
    match find_model(model) {
        Some(model) => Ok(Reply::json_text(200, to_json(&model_object(model)))),
        None => Err(Failure::new(
            404,
            "not_found_error",
            &format!("model: {model}"),
        )),
    }
}

/// The named SSE events Anthropic would stream for a conversation of one
/// user message `user_text` (`message_start` through `message_stop`): for
/// scripting with [`crate::Reply::sse`], whole or cut short and followed by
/// an [`anthropic_error_event`].
///
/// ```
/// use llmhost_simulator::{Reply, anthropic_error_event, anthropic_stream_events};
///
/// let mut events = anthropic_stream_events("claude-sonnet-4-5", "hi");
/// events.truncate(5); // message_start .. the first text delta
/// events.push(anthropic_error_event("overloaded_error", "Overloaded"));
/// let reply = Reply::sse(events);
/// # let _ = reply;
/// ```
pub fn anthropic_stream_events(model: &str, user_text: &str) -> Vec<String> {
    let input_tokens = tokens::count(user_text);
    let request = MessagesRequest {
        model: model.to_owned(),
        max_tokens: Some(1024),
        stream: true,
        stop_sequences: Vec::new(),
        tool: None,
        thinking: false,
        conversation: Conversation {
            last_user_text: user_text.to_owned(),
            tool_results: None,
            input_tokens,
        },
        input_tokens,
    };
    let outcome = answer::compose(&request);
    answer::stream_events(&ids::message_id(), model, &outcome)
}

/// The `error` event Anthropic sends inside a stream that already answered
/// 200: `event: error\ndata: {"type":"error","error":{"type":..,"message":..}}`.
pub fn anthropic_error_event(error_type: &str, message: &str) -> String {
    #[derive(Serialize)]
    struct ErrorEvent<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        error: ErrorDetail<'a>,
    }
    let event = ErrorEvent {
        kind: "error",
        error: ErrorDetail {
            kind: error_type,
            message,
        },
    };
    // Serialized by hand so `type` leads, as in Anthropic's events.
    format!("event: error\ndata: {}\n\n", to_json(&event))
}
