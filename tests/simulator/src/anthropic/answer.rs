//! The simulator's own answers to Messages requests, serialized as
//! Anthropic's `message` object or as its named-event stream.

use serde::Serialize;
use serde_json::{Map, Value};

use super::request::MessagesRequest;
use crate::openai::answer::{char_chunks, greeting, reasoning_text, to_json};
use crate::{ids, tokens};

/// Tool input JSON is streamed in fragments of this many characters.
const INPUT_FRAGMENT_CHARS: usize = 6;

/// What the assistant says after any thinking.
#[derive(Debug)]
pub(crate) enum Body {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

/// A finished answer and its accounting.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The thinking text and its signature, with extended thinking on.
    pub(crate) thinking: Option<(String, String)>,
    pub(crate) body: Body,
    pub(crate) stop_reason: &'static str,
    pub(crate) stop_sequence: Option<String>,
    pub(crate) input_tokens: usize,
    /// Thinking plus text, or plus the tool input as JSON.
    pub(crate) output_tokens: usize,
}

/// Decides the default answer to `request`:
/// - after `tool_result` blocks, their text is quoted back;
/// - with tools on offer, one is called with `{"query": <last user text>}`;
/// - otherwise a greeting echoes the last user text.
///
/// Text is then cut at the first stop sequence it contains, and to what is
/// left of `max_tokens` after the thinking. Tool input is never cut.
pub(crate) fn compose(request: &MessagesRequest) -> Outcome {
    let conversation = &request.conversation;
    let mut body = match (&conversation.tool_results, &request.tool) {
        (Some(results), _) => Body::Text(format!("Tool said: {results}")),
        (None, Some(tool)) => Body::ToolUse {
            id: ids::tool_use_id(),
            name: tool.clone(),
            input: serde_json::json!({ "query": conversation.last_user_text }),
        },
        (None, None) => Body::Text(greeting(&conversation.last_user_text)),
    };
    let thinking = request.thinking.then(|| {
        let calls_tool = matches!(body, Body::ToolUse { .. });
        let text = reasoning_text(calls_tool, conversation.tool_results.is_some());
        (text.to_owned(), ids::signature())
    });
    let thinking_tokens = thinking.as_ref().map_or(0, |(text, _)| tokens::count(text));

    let mut stop_reason = match body {
        Body::Text(_) => "end_turn",
        Body::ToolUse { .. } => "tool_use",
    };
    let mut stop_sequence = None;
    let body_tokens = match &mut body {
        Body::ToolUse { input, .. } => tokens::count(&input.to_string()),
        Body::Text(text) => {
            let first_stop = request
                .stop_sequences
                .iter()
                .filter(|s| !s.is_empty())
                .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
                .min_by_key(|(at, _)| *at);
            if let Some((at, sequence)) = first_stop {
                text.truncate(at);
                stop_reason = "stop_sequence";
                stop_sequence = Some(sequence.clone());
            }
            let room = request
                .max_tokens
                .map(|max| max.saturating_sub(thinking_tokens));
            if let Some(cut) = room.and_then(|room| tokens::truncate(text, room)) {
                *text = cut;
                stop_reason = "max_tokens";
                stop_sequence = None;
            }
            tokens::count(text)
        }
    };
    Outcome {
        thinking,
        body,
        stop_reason,
        stop_sequence,
        input_tokens: request.input_tokens,
        output_tokens: thinking_tokens + body_tokens,
    }
}

#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Block<'a>>,
    stop_reason: Option<&'a str>,
    stop_sequence: Option<&'a str>,
    usage: Usage,
}

#[derive(Serialize)]
struct Usage {
    input_tokens: usize,
    cache_creation_input_tokens: usize,
    cache_read_input_tokens: usize,
    output_tokens: usize,
}

/// A content block, whole (in messages) or as it opens a stream block.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Thinking {
        thinking: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<&'a str>,
    },
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
}

/// A content block delta; each variant is sent as `<name>_delta`.
#[derive(Serialize)]
#[serde(tag = "type")]
enum Delta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

#[derive(Serialize)]
struct StopDelta<'a> {
    stop_reason: &'a str,
    stop_sequence: Option<&'a str>,
}

#[derive(Serialize)]
struct OutputUsage {
    output_tokens: usize,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        message: Message<'a>,
    },
    ContentBlockStart {
        index: usize,
        content_block: Block<'a>,
    },
    Ping,
    ContentBlockDelta {
        index: usize,
        delta: Delta<'a>,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: StopDelta<'a>,
        usage: OutputUsage,
    },
    MessageStop,
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::MessageStart { .. } => "message_start",
            Event::ContentBlockStart { .. } => "content_block_start",
            Event::Ping => "ping",
            Event::ContentBlockDelta { .. } => "content_block_delta",
            Event::ContentBlockStop { .. } => "content_block_stop",
            Event::MessageDelta { .. } => "message_delta",
            Event::MessageStop => "message_stop",
        }
    }

    /// Serialized straight from the struct rather than through
    /// [`crate::sse_event`], so `type` leads as in Anthropic's events.
    fn to_sse(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.name(), to_json(self))
    }
}

fn blocks(outcome: &Outcome) -> Vec<Block<'_>> {
    let mut blocks = Vec::with_capacity(2);
    if let Some((thinking, signature)) = &outcome.thinking {
        blocks.push(Block::Thinking {
            thinking,
            signature: Some(signature),
        });
    }
    blocks.push(match &outcome.body {
        Body::Text(text) => Block::Text { text },
        Body::ToolUse { id, name, input } => Block::ToolUse { id, name, input },
    });
    blocks
}

/// The non-streaming `message` object.
pub(crate) fn message(id: &str, model: &str, outcome: &Outcome) -> String {
    to_json(&Message {
        id,
        kind: "message",
        role: "assistant",
        model,
        content: blocks(outcome),
        stop_reason: Some(outcome.stop_reason),
        stop_sequence: outcome.stop_sequence.as_deref(),
        usage: Usage {
            input_tokens: outcome.input_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
            output_tokens: outcome.output_tokens,
        },
    })
}

/// The named events of a streamed answer, in the order Anthropic sends
/// them: `message_start`, the first block's start, a `ping`, each block's
/// deltas and stop, `message_delta` with the final (cumulative)
/// `output_tokens`, and `message_stop`.
pub(crate) fn stream_events(id: &str, model: &str, outcome: &Outcome) -> Vec<String> {
    let empty_input = Value::Object(Map::new());
    let input_json = match &outcome.body {
        Body::ToolUse { input, .. } => input.to_string(),
        Body::Text(_) => String::new(),
    };
    let mut events = vec![Event::MessageStart {
        message: Message {
            id,
            kind: "message",
            role: "assistant",
            model,
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: Usage {
                input_tokens: outcome.input_tokens,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 0,
                // Anthropic counts the first token before it is streamed.
                output_tokens: 1,
            },
        },
    }];
    let mut index = 0;
    if let Some((thinking, signature)) = &outcome.thinking {
        events.push(Event::ContentBlockStart {
            index,
            content_block: Block::Thinking {
                thinking: "",
                signature: None,
            },
        });
        for piece in thinking.split_inclusive(' ') {
            let delta = Delta::Thinking { thinking: piece };
            events.push(Event::ContentBlockDelta { index, delta });
        }
        let delta = Delta::Signature { signature };
        events.push(Event::ContentBlockDelta { index, delta });
        events.push(Event::ContentBlockStop { index });
        index += 1;
    }
    match &outcome.body {
        Body::Text(text) => {
            events.push(Event::ContentBlockStart {
                index,
                content_block: Block::Text { text: "" },
            });
            for piece in text.split_inclusive(' ') {
                let delta = Delta::Text { text: piece };
                events.push(Event::ContentBlockDelta { index, delta });
            }
        }
        Body::ToolUse { id, name, .. } => {
            events.push(Event::ContentBlockStart {
                index,
                content_block: Block::ToolUse {
                    id,
                    name,
                    input: &empty_input,
                },
            });
            // Anthropic opens with an empty fragment before the real ones.
            let fragments =
                std::iter::once("").chain(char_chunks(&input_json, INPUT_FRAGMENT_CHARS));
            for partial_json in fragments {
                let delta = Delta::InputJson { partial_json };
                events.push(Event::ContentBlockDelta { index, delta });
            }
        }
    }
    events.push(Event::ContentBlockStop { index });
    events.push(Event::MessageDelta {
        delta: StopDelta {
            stop_reason: outcome.stop_reason,
            stop_sequence: outcome.stop_sequence.as_deref(),
        },
        usage: OutputUsage {
            output_tokens: outcome.output_tokens,
        },
    });
    events.push(Event::MessageStop);
    // The ping follows the first block's start, as in Anthropic's streams.
    let ping_at = 2.min(events.len());
    events.insert(ping_at, Event::Ping);
    events.iter().map(Event::to_sse).collect()
}
