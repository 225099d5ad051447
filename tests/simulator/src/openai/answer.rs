//! The simulator's own answers to chat requests, serialized as OpenAI's
//! `chat.completion` object or as a `chat.completion.chunk` event stream.

use serde::Serialize;

use super::request::{ChatRequest, Message};
use crate::{ids, tokens};

/// How much of the user's text the default answer echoes back.
const ECHO_CHARS: usize = 80;
/// Tool-call arguments are streamed in fragments of this many characters,
/// roughly the size of the token-sized fragments OpenAI sends.
const ARGUMENT_FRAGMENT_CHARS: usize = 6;

/// What the assistant says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Text(String),
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
}

/// A finished answer and its accounting.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) answer: Answer,
    /// Thinking shown beside the answer (`reasoning_content`), for the
    /// vendors whose models expose it; the composer never sets it.
    pub(crate) reasoning: Option<String>,
    pub(crate) finish_reason: &'static str,
    pub(crate) usage: Usage,
}

/// Token accounting. OpenAI sends the three totals; the optional fields are
/// the extras DeepSeek and xAI add, left out when `None`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: usize,
    pub(crate) completion_tokens: usize,
    pub(crate) total_tokens: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) completion_tokens_details: Option<CompletionTokensDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prompt_cache_hit_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prompt_cache_miss_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) num_sources_used: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct PromptTokensDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) audio_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) image_tokens: Option<usize>,
    pub(crate) cached_tokens: usize,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct CompletionTokensDetails {
    pub(crate) reasoning_tokens: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) audio_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) accepted_prediction_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rejected_prediction_tokens: Option<usize>,
}

/// What sets one OpenAI-compatible vendor's responses apart from another's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    /// OpenAI sends `refusal: null` in messages and in the first delta.
    pub(crate) refusal: bool,
    /// What the chunks before the usage chunk carry under `include_usage`.
    pub(crate) placeholder: Placeholder,
    /// xAI follows its usage chunk with one more, empty chunk, so the usage
    /// ends up second to last.
    pub(crate) trailing_empty_chunk: bool,
}

/// The `usage` of stream chunks that come before the real usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placeholder {
    /// `"usage": null` (OpenAI, DeepSeek).
    Null,
    /// `"usage": {"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}`,
    /// as DeepSeek was reported to send.
    Zero,
    /// No `usage` key at all (xAI).
    Absent,
}

impl Dialect {
    pub(crate) const OPENAI: Dialect = Dialect {
        refusal: true,
        placeholder: Placeholder::Null,
        trailing_empty_chunk: false,
    };
}

/// The thinking that reasoning models show (`reasoning_content`) before
/// the default answer: one fixed sentence per kind of answer, so tests can
/// match it exactly.
pub(crate) fn reasoning_for(answer: &Answer) -> &'static str {
    match answer {
        Answer::ToolCall { .. } => reasoning_text(true, false),
        Answer::Text(text) => reasoning_text(false, text.starts_with("Tool said: ")),
    }
}

/// The thinking before an answer that calls a tool, quotes a tool's
/// output, or else greets the user.
pub(crate) fn reasoning_text(calls_tool: bool, after_tool: bool) -> &'static str {
    match (calls_tool, after_tool) {
        (true, _) => "The user wants something looked up; I should call the tool.",
        (false, true) => "The tool answered; I should pass its output on.",
        (false, false) => "The user greeted me; I should answer briefly.",
    }
}

/// Decides the default answer to `request`:
/// - after a `tool` message, the tool's output is quoted back;
/// - with tools on offer, one is called with `{"query": <last user text>}`;
/// - otherwise a greeting echoes the last user message.
///
/// The answer is then cut to `max_tokens`, if that is smaller.
pub(crate) fn compose(request: &ChatRequest) -> Outcome {
    let last = request.messages.last();
    let user_text = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map_or("", |m| m.text.as_str());

    let mut answer = match (last, &request.tool) {
        (Some(last), _) if last.role == "tool" => Answer::Text(format!("Tool said: {}", last.text)),
        (_, Some(tool)) => Answer::ToolCall {
            id: ids::call_id(),
            name: tool.clone(),
            arguments: serde_json::json!({ "query": user_text }).to_string(),
        },
        _ => Answer::Text(greeting(user_text)),
    };

    let mut finish_reason = match answer {
        Answer::Text(_) => "stop",
        Answer::ToolCall { .. } => "tool_calls",
    };
    let generated = match &mut answer {
        Answer::Text(text) => text,
        Answer::ToolCall { arguments, .. } => arguments,
    };
    if let Some(cut) = request
        .max_tokens
        .and_then(|max| tokens::truncate(generated, max))
    {
        *generated = cut;
        finish_reason = "length";
    }

    let prompt_tokens = prompt_tokens(&request.messages);
    let completion_tokens = tokens::count(generated);
    Outcome {
        answer,
        reasoning: None,
        finish_reason,
        usage: Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            ..Usage::default()
        },
    }
}

/// OpenAI's message accounting, simplified: each message's text, plus 3 per
/// message for its framing, plus 3 priming the reply.
pub(crate) fn prompt_tokens(messages: &[Message]) -> usize {
    messages
        .iter()
        .map(|m| tokens::count(&m.text) + 3)
        .sum::<usize>()
        + 3
}

pub(crate) fn greeting(user_text: &str) -> String {
    let user_text = user_text.trim();
    if user_text.is_empty() {
        return "Hello from the llmhost simulator.".to_owned();
    }
    let mut echo: String = user_text.chars().take(ECHO_CHARS).collect();
    if echo.len() < user_text.len() {
        echo.push_str("...");
    }
    format!("Hello from the llmhost simulator. You said: {echo}")
}

/// Fields every response object shares.
pub(crate) struct Envelope<'a> {
    pub(crate) id: &'a str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) system_fingerprint: &'a str,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [CompletionChoice<'a>; 1],
    usage: Usage,
    system_fingerprint: &'a str,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCall<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Option<()>>,
}

#[derive(Serialize)]
struct ToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCall<'a>,
}

#[derive(Serialize)]
struct FunctionCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// The non-streaming `chat.completion` object.
pub(crate) fn completion(envelope: &Envelope<'_>, outcome: &Outcome, dialect: Dialect) -> String {
    let (content, tool_calls) = match &outcome.answer {
        Answer::Text(text) => (Some(text.as_str()), None),
        Answer::ToolCall {
            id,
            name,
            arguments,
        } => (
            None,
            Some([ToolCall {
                id,
                kind: "function",
                function: FunctionCall {
                    name: Some(name),
                    arguments,
                },
            }]),
        ),
    };
    let message = AssistantMessage {
        role: "assistant",
        content,
        reasoning_content: outcome.reasoning.as_deref(),
        tool_calls,
        refusal: dialect.refusal.then_some(None),
    };
    to_json(&Completion {
        id: envelope.id,
        object: "chat.completion",
        created: envelope.created,
        model: envelope.model,
        choices: [CompletionChoice {
            index: 0,
            message,
            logprobs: None,
            finish_reason: outcome.finish_reason,
        }],
        usage: outcome.usage,
        system_fingerprint: envelope.system_fingerprint,
    })
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    /// Absent without `include_usage`; with it, the usage chunk carries the
    /// real one and the others the dialect's placeholder.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

/// `Option<Option<_>>` fields: outer `None` leaves the key out, `Some(None)`
/// sends `null`.
#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Option<()>>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionCall<'a>,
}

/// The SSE events of a streamed answer, `data: [DONE]` included: a role
/// delta, any reasoning in pieces, the content in pieces, an empty delta
/// with the finish reason, and with `include_usage` a usage chunk with no
/// choices (followed, in xAI's dialect, by one more empty chunk).
pub(crate) fn stream_events(
    envelope: &Envelope<'_>,
    outcome: &Outcome,
    include_usage: bool,
    dialect: Dialect,
) -> Vec<String> {
    let placeholder = match (include_usage, dialect.placeholder) {
        (false, _) | (true, Placeholder::Absent) => None,
        (true, Placeholder::Null) => Some(None),
        (true, Placeholder::Zero) => Some(Some(Usage::default())),
    };
    let chunk = |choices: Vec<ChunkChoice<'_>>, usage: Option<Option<Usage>>| {
        event(&Chunk {
            id: envelope.id,
            object: "chat.completion.chunk",
            created: envelope.created,
            model: envelope.model,
            system_fingerprint: envelope.system_fingerprint,
            choices,
            usage,
        })
    };
    let choice = |delta: Delta<'_>, finish_reason: Option<&str>| {
        chunk(
            vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            placeholder,
        )
    };
    let reasoning = outcome.reasoning.as_deref();
    // Once reasoning is shown, DeepSeek names both fields in every delta,
    // nulling the one not in use.
    let other_null = reasoning.is_some().then_some(None);
    let tool_header = |id, name| {
        Some([ToolCallDelta {
            index: 0,
            id: Some(id),
            kind: Some("function"),
            function: FunctionCall {
                name: Some(name),
                arguments: "",
            },
        }])
    };

    let mut events = Vec::new();
    let mut first = Delta {
        role: Some("assistant"),
        content: Some(Some("")),
        reasoning_content: reasoning.map(|_| Some("")),
        refusal: dialect.refusal.then_some(None),
        ..Delta::default()
    };
    if reasoning.is_some() || matches!(outcome.answer, Answer::ToolCall { .. }) {
        first.content = Some(None);
    }
    if let (None, Answer::ToolCall { id, name, .. }) = (reasoning, &outcome.answer) {
        first.tool_calls = tool_header(id, name);
    }
    events.push(choice(first, None));
    for piece in reasoning.iter().flat_map(|r| r.split_inclusive(' ')) {
        let delta = Delta {
            content: Some(None),
            reasoning_content: Some(Some(piece)),
            ..Delta::default()
        };
        events.push(choice(delta, None));
    }

    match &outcome.answer {
        Answer::Text(text) => {
            for piece in text.split_inclusive(' ') {
                let delta = Delta {
                    content: Some(Some(piece)),
                    reasoning_content: other_null,
                    ..Delta::default()
                };
                events.push(choice(delta, None));
            }
        }
        Answer::ToolCall {
            id,
            name,
            arguments,
        } => {
            if reasoning.is_some() {
                let delta = Delta {
                    content: Some(None),
                    reasoning_content: other_null,
                    tool_calls: tool_header(id, name),
                    ..Delta::default()
                };
                events.push(choice(delta, None));
            }
            for fragment in char_chunks(arguments, ARGUMENT_FRAGMENT_CHARS) {
                let delta = Delta {
                    tool_calls: Some([ToolCallDelta {
                        index: 0,
                        id: None,
                        kind: None,
                        function: FunctionCall {
                            name: None,
                            arguments: fragment,
                        },
                    }]),
                    ..Delta::default()
                };
                events.push(choice(delta, None));
            }
        }
    }
    events.push(choice(Delta::default(), Some(outcome.finish_reason)));

    if include_usage {
        events.push(chunk(Vec::new(), Some(Some(outcome.usage))));
        if dialect.trailing_empty_chunk {
            events.push(chunk(Vec::new(), None));
        }
    }
    events.push("data: [DONE]\n\n".to_owned());
    events
}

/// Splits `text` into pieces of at most `size` characters.
pub(crate) fn char_chunks(text: &str, size: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.char_indices().nth(size).map_or(rest.len(), |(i, _)| i);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

fn event<T: Serialize>(value: &T) -> String {
    format!("data: {}\n\n", to_json(value))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // These structs hold only strings and numbers, which always serialize.
    serde_json::to_string(value).unwrap_or_else(|err| {
        tracing::error!(%err, "cannot serialize simulator response");
        "{}".to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_echoes_at_most_80_chars() {
        assert_eq!(greeting(""), "Hello from the llmhost simulator.");
        assert_eq!(
            greeting("hi"),
            "Hello from the llmhost simulator. You said: hi"
        );
        let long = "é".repeat(100);
        let echoed = greeting(&long);
        assert!(echoed.ends_with(&format!("{}...", "é".repeat(80))));
    }

    #[test]
    fn char_chunks_cover_the_text() {
        let pieces: Vec<&str> = char_chunks("{\"query\":\"héllo\"}", 6).collect();
        assert_eq!(pieces.concat(), "{\"query\":\"héllo\"}");
        assert!(pieces.iter().all(|p| p.chars().count() <= 6));
        assert_eq!(char_chunks("", 6).count(), 0);
    }
}
