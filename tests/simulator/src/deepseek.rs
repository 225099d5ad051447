//! DeepSeek's OpenAI-compatible API, as served at `https://api.deepseek.com`
//! (with or without `/v1`).
//!
//! It differs from OpenAI's where DeepSeek does: `deepseek-reasoner` shows
//! `reasoning_content` beside `content`, usage reports prompt-cache hits and
//! misses, errors always carry `code: "invalid_request_error"`, unknown
//! models are a 400, invalid parameters a 422, and there are no rate-limit
//! headers. Token counts are `o200k_base` estimates: DeepSeek's tokenizer
//! is its own.

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method};
use serde::Serialize;

use crate::openai::answer::{
    self, CompletionTokensDetails, Dialect, Envelope, Outcome, Placeholder, PromptTokensDetails,
    Usage,
};
use crate::openai::request::{ChatRequest, Message};
use crate::server::Context;
use crate::{Reply, ids, tokens};

/// The DeepSeek model ids the simulator accepts, in its `/models` order.
pub fn deepseek_models() -> &'static [&'static str] {
    &[
        "deepseek-chat",
        "deepseek-reasoner",
        "deepseek-flash",
        "deepseek-v4-pro",
    ]
}

/// The model that thinks aloud in `reasoning_content`.
const REASONER: &str = "deepseek-reasoner";

/// The SSE comment DeepSeek sends while a streamed answer is delayed.
const KEEPALIVE: &str = ": keep-alive\n\n";

/// Whether `path` (below the prefix) is DeepSeek's chat endpoint, which it
/// serves both with and without `/v1`.
pub(crate) fn is_chat_path(path: &str) -> bool {
    path == "/chat/completions" || path == "/v1/chat/completions"
}

/// How DeepSeek misbehaves, for replaying what it does under load and what
/// was reported against other gateways. The default is none of it.
///
/// ```
/// use llmhost_simulator::DeepSeekQuirks;
///
/// let quirks = DeepSeekQuirks::new().keepalives(3).zero_usage_placeholders(true);
/// # let _ = quirks;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeepSeekQuirks {
    keepalives: usize,
    blank_lines: usize,
    zero_usage_placeholders: bool,
}

impl DeepSeekQuirks {
    /// No quirks: plain OpenAI-style framing.
    pub fn new() -> DeepSeekQuirks {
        DeepSeekQuirks::default()
    }

    /// Streams start with `count` `: keep-alive` SSE comments, each its own
    /// write, as DeepSeek sends while the model is queued.
    pub fn keepalives(mut self, count: usize) -> DeepSeekQuirks {
        self.keepalives = count;
        self
    }

    /// Non-streaming bodies start with `count` empty lines (`\n`), each its
    /// own write, as DeepSeek sends while the model is thinking.
    pub fn blank_lines(mut self, count: usize) -> DeepSeekQuirks {
        self.blank_lines = count;
        self
    }

    /// Under `include_usage`, the chunks before the usage chunk carry
    /// `{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}` instead of
    /// `null` (reported against other gateways: the real usage is the last
    /// non-zero one).
    pub fn zero_usage_placeholders(mut self, on: bool) -> DeepSeekQuirks {
        self.zero_usage_placeholders = on;
        self
    }
}

/// Answers a request for `path` (below the `/deepseek` prefix) with what
/// DeepSeek would send, scripted replies aside.
pub(crate) fn respond(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    context: &Context,
) -> Reply {
    let path = path
        .strip_prefix("/v1")
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(path);
    let reply = match (method, path) {
        (&Method::POST, "/chat/completions") => chat(headers, body, context),
        (&Method::GET, "/models") => list_models(headers),
        _ => error_reply(404, "invalid_request_error", "Not Found"),
    };
    reply.header("x-ds-trace-id", &ids::hex(32))
}

/// A DeepSeek error reply.
pub(crate) fn error_reply(status: u16, kind: &str, message: &str) -> Reply {
    let body =
        crate::openai::compact_error_body(kind, None, Some("invalid_request_error"), message);
    Reply::json_text(status, body)
}

/// Any non-empty bearer key is accepted, as for OpenAI.
fn check_auth(headers: &HeaderMap) -> Result<(), Reply> {
    let value = headers
        .get(AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let key = match value.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
        _ => "",
    };
    if !key.is_empty() {
        return Ok(());
    }
    // DeepSeek shows only the last four characters of the key it got.
    let shown = value.trim();
    let tail: String = {
        let chars: Vec<char> = shown.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    };
    Err(error_reply(
        401,
        "authentication_error",
        &format!("Authentication Fails, Your api key: ****{tail} is invalid"),
    ))
}

fn chat(headers: &HeaderMap, body: &[u8], context: &Context) -> Reply {
    if let Err(reply) = check_auth(headers) {
        return reply;
    }
    let request = match ChatRequest::parse(body) {
        Ok(request) => request,
        // DeepSeek separates a body it cannot read (400) from one with
        // invalid parameters (422).
        Err(err) if err.malformed => {
            return error_reply(400, "invalid_request_error", &err.message);
        }
        Err(err) => return error_reply(422, "invalid_request_error", &err.message),
    };
    if !deepseek_models().contains(&request.model.as_str()) {
        return error_reply(400, "invalid_request_error", "Model Not Exist");
    }
    // The reasoner ignores sampling parameters; only the chat model checks them.
    if request.model != REASONER
        && let Some(t) = request.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return error_reply(
            422,
            "invalid_request_error",
            &format!("Invalid temperature value: {t}, the temperature must be in [0, 2]"),
        );
    }

    let answered = Answered::new(&request);
    if request.stream {
        Reply::sse(answered.events(request.include_usage, &context.deepseek))
            .delay_each(context.stream_delay)
    } else if context.deepseek.blank_lines > 0 {
        // The blank lines stand for time passing, so they get the pause too.
        answered
            .body(&context.deepseek)
            .delay_each(context.stream_delay)
    } else {
        answered.body(&context.deepseek)
    }
}

/// A composed answer with the identifiers of one response.
struct Answered {
    id: String,
    fingerprint: String,
    created: u64,
    model: String,
    outcome: Outcome,
}

impl Answered {
    fn new(request: &ChatRequest) -> Answered {
        let mut outcome = answer::compose(request);
        let content_tokens = outcome.usage.completion_tokens;
        let reasoning_tokens = if request.model == REASONER {
            let reasoning = answer::reasoning_for(&outcome.answer);
            outcome.reasoning = Some(reasoning.to_owned());
            Some(tokens::count(reasoning))
        } else {
            None
        };
        outcome.usage = usage(
            outcome.usage.prompt_tokens,
            content_tokens,
            reasoning_tokens,
        );
        Answered {
            id: ids::uuid(),
            fingerprint: format!("{}_prod0820_fp8_kvcache", ids::fingerprint(&request.model)),
            created: ids::unix_now(),
            model: request.model.clone(),
            outcome,
        }
    }

    fn envelope(&self) -> Envelope<'_> {
        Envelope {
            id: &self.id,
            created: self.created,
            model: &self.model,
            system_fingerprint: &self.fingerprint,
        }
    }

    fn events(&self, include_usage: bool, quirks: &DeepSeekQuirks) -> Vec<String> {
        let dialect = Dialect {
            refusal: false,
            placeholder: if quirks.zero_usage_placeholders {
                Placeholder::Zero
            } else {
                Placeholder::Null
            },
            trailing_empty_chunk: false,
        };
        let mut events = vec![KEEPALIVE.to_owned(); quirks.keepalives];
        events.extend(answer::stream_events(
            &self.envelope(),
            &self.outcome,
            include_usage,
            dialect,
        ));
        events
    }

    fn body(&self, quirks: &DeepSeekQuirks) -> Reply {
        let dialect = Dialect {
            refusal: false,
            placeholder: Placeholder::Null,
            trailing_empty_chunk: false,
        };
        let json = answer::completion(&self.envelope(), &self.outcome, dialect);
        if quirks.blank_lines == 0 {
            return Reply::json_text(200, json);
        }
        let mut parts = vec![b"\n".to_vec(); quirks.blank_lines];
        parts.push(json.into_bytes());
        Reply::raw(200, parts).header("content-type", "application/json")
    }
}

/// DeepSeek's usage: reasoning counts as completion, and every prompt token
/// is a cache miss since the simulator caches nothing.
fn usage(prompt: usize, content: usize, reasoning: Option<usize>) -> Usage {
    let completion = content + reasoning.unwrap_or(0);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: 0,
            ..PromptTokensDetails::default()
        }),
        completion_tokens_details: reasoning.map(|reasoning_tokens| CompletionTokensDetails {
            reasoning_tokens,
            ..CompletionTokensDetails::default()
        }),
        prompt_cache_hit_tokens: Some(0),
        prompt_cache_miss_tokens: Some(prompt),
        num_sources_used: None,
    }
}

/// The request the recipes answer: one user message, usage requested.
fn single_turn(model: &str, user_text: &str, stream: bool) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        messages: vec![Message {
            role: "user".to_owned(),
            text: user_text.to_owned(),
        }],
        stream,
        include_usage: stream,
        max_tokens: None,
        tool: None,
        temperature: None,
    }
}

/// The SSE events DeepSeek would stream for a conversation of one user
/// message `user_text` with `stream_options.include_usage`, with `quirks`
/// applied: for scripting one answer with [`crate::Reply::sse`]. Each
/// keep-alive is its own item, and `data: [DONE]` the last.
///
/// ```
/// use llmhost_simulator::{DeepSeekQuirks, Reply, deepseek_stream_events};
///
/// let quirks = DeepSeekQuirks::new().keepalives(2).zero_usage_placeholders(true);
/// let reply = Reply::sse(deepseek_stream_events("deepseek-reasoner", "hi", &quirks));
/// # let _ = reply;
/// ```
pub fn deepseek_stream_events(
    model: &str,
    user_text: &str,
    quirks: &DeepSeekQuirks,
) -> Vec<String> {
    Answered::new(&single_turn(model, user_text, true)).events(true, quirks)
}

/// The non-streaming reply DeepSeek would send for a conversation of one
/// user message `user_text`, with `quirks` applied (blank lines before the
/// JSON, each its own write).
pub fn deepseek_completion(model: &str, user_text: &str, quirks: &DeepSeekQuirks) -> Reply {
    Answered::new(&single_turn(model, user_text, false)).body(quirks)
}

#[derive(Serialize)]
struct ModelObject {
    id: &'static str,
    object: &'static str,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelObject>,
}

fn list_models(headers: &HeaderMap) -> Reply {
    if let Err(reply) = check_auth(headers) {
        return reply;
    }
    let list = ModelList {
        object: "list",
        data: deepseek_models()
            .iter()
            .map(|id| ModelObject {
                id,
                object: "model",
                owned_by: "deepseek",
            })
            .collect(),
    };
    Reply::json_text(200, answer::to_json(&list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::answer::Answer;

    #[test]
    fn reasoner_usage_counts_reasoning_as_completion() {
        let answered = Answered::new(&single_turn(REASONER, "hi", false));
        let usage = answered.outcome.usage;
        let reasoning = tokens::count("The user greeted me; I should answer briefly.");
        assert_eq!(
            usage.completion_tokens_details.map(|d| d.reasoning_tokens),
            Some(reasoning)
        );
        assert_eq!(
            usage.completion_tokens,
            reasoning + tokens::count("Hello from the llmhost simulator. You said: hi")
        );
        assert_eq!(usage.prompt_cache_miss_tokens, Some(usage.prompt_tokens));
        assert!(matches!(answered.outcome.answer, Answer::Text(_)));
    }
}
