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
    pub(crate) finish_reason: &'static str,
    pub(crate) usage: Usage,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: usize,
    pub(crate) completion_tokens: usize,
    pub(crate) total_tokens: usize,
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
        finish_reason,
        usage: Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
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

fn greeting(user_text: &str) -> String {
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
    tool_calls: Option<[ToolCall<'a>; 1]>,
    refusal: Option<()>,
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
pub(crate) fn completion(envelope: &Envelope<'_>, outcome: &Outcome) -> String {
    let message = match &outcome.answer {
        Answer::Text(text) => AssistantMessage {
            role: "assistant",
            content: Some(text),
            tool_calls: None,
            refusal: None,
        },
        Answer::ToolCall {
            id,
            name,
            arguments,
        } => AssistantMessage {
            role: "assistant",
            content: None,
            tool_calls: Some([ToolCall {
                id,
                kind: "function",
                function: FunctionCall {
                    name: Some(name),
                    arguments,
                },
            }]),
            refusal: None,
        },
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
    /// Absent without `include_usage`; with it, `null` on every chunk but the
    /// final usage-only one.
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
/// delta, the content in pieces, an empty delta with the finish reason, and
/// with `include_usage` a final usage chunk with no choices.
pub(crate) fn stream_events(
    envelope: &Envelope<'_>,
    outcome: &Outcome,
    include_usage: bool,
) -> Vec<String> {
    let chunk = |delta: Delta<'_>, finish_reason: Option<&str>| {
        event(&Chunk {
            id: envelope.id,
            object: "chat.completion.chunk",
            created: envelope.created,
            model: envelope.model,
            system_fingerprint: envelope.system_fingerprint,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            usage: include_usage.then_some(None),
        })
    };

    let mut events = Vec::new();
    match &outcome.answer {
        Answer::Text(text) => {
            events.push(chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(Some("")),
                    refusal: Some(None),
                    ..Delta::default()
                },
                None,
            ));
            for piece in text.split_inclusive(' ') {
                let delta = Delta {
                    content: Some(Some(piece)),
                    ..Delta::default()
                };
                events.push(chunk(delta, None));
            }
        }
        Answer::ToolCall {
            id,
            name,
            arguments,
        } => {
            events.push(chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(None),
                    tool_calls: Some([ToolCallDelta {
                        index: 0,
                        id: Some(id),
                        kind: Some("function"),
                        function: FunctionCall {
                            name: Some(name),
                            arguments: "",
                        },
                    }]),
                    refusal: Some(None),
                },
                None,
            ));
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
                events.push(chunk(delta, None));
            }
        }
    }
    events.push(chunk(Delta::default(), Some(outcome.finish_reason)));

    if include_usage {
        events.push(event(&Chunk {
            id: envelope.id,
            object: "chat.completion.chunk",
            created: envelope.created,
            model: envelope.model,
            system_fingerprint: envelope.system_fingerprint,
            choices: Vec::new(),
            usage: Some(Some(outcome.usage)),
        }));
    }
    events.push("data: [DONE]\n\n".to_owned());
    events
}

/// Splits `text` into pieces of at most `size` characters.
fn char_chunks(text: &str, size: usize) -> impl Iterator<Item = &str> {
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

fn to_json<T: Serialize>(value: &T) -> String {
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
