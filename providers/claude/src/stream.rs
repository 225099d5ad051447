//! Reading a streamed Messages API answer: named SSE events
//! (`message_start`, `content_block_*`, `message_delta`, `message_stop`,
//! `ping`, `error`) turned into the contract's chunks.
//!
//! The host frames the server-sent events; [`StreamState`] is the
//! protocol, fed them one read at a time through [`StreamDecode`].

use crate::error::map_error_object;
use crate::limits::rate_limits;
use crate::response::{TokenTally, estimate_usage, parse_stop_reason};
use llmhost_provider_sdk::StreamDecode;
use llmhost_provider_sdk::http::Headers;
use llmhost_provider_sdk::types::{
    Chunk, FinishReason, Message, ProviderError, RateLimits, SseEvent, StreamInput, StreamStart,
    ToolCallDelta,
};
use serde_json::Value;
use std::collections::HashMap;

/// What a content block of the answer carries.
#[derive(Debug, Clone, Copy)]
enum Block {
    Text,
    Thinking,
    /// A client tool call; `index` is its ordinal among the answer's tool
    /// calls, the contract's `tool-call-delta.index`.
    Tool {
        index: u32,
        has_arguments: bool,
    },
    /// Blocks without deltas the contract carries: redacted thinking
    /// (complete at its start), server tools, block types newer than this
    /// plugin.
    Ignored,
}

/// The stream's protocol state.
pub struct StreamState {
    /// The requested model, for a `message_start` that names none.
    model: String,
    /// The request's messages, only read to estimate usage the vendor did
    /// not report.
    messages: Vec<Message>,
    rate_limits: Option<RateLimits>,
    request_id: Option<String>,
    started: bool,
    blocks: HashMap<u64, Block>,
    tool_calls: u32,
    tally: TokenTally,
    saw_usage: bool,
    finished: bool,
    done: bool,
    /// Everything generated so far, for a usage estimate.
    output: String,
    /// The failure that ended the stream, repeated to later calls.
    failed: Option<ProviderError>,
}

impl StreamState {
    /// State for an answer to a request for `model` with `messages`, whose
    /// response carried `headers`.
    pub fn new(model: &str, messages: Vec<Message>, headers: &Headers) -> Self {
        Self {
            model: model.to_owned(),
            messages,
            rate_limits: rate_limits(headers),
            request_id: headers.get("request-id").map(str::to_owned),
            started: false,
            blocks: HashMap::new(),
            tool_calls: 0,
            tally: TokenTally::default(),
            saw_usage: false,
            finished: false,
            done: false,
            output: String::new(),
            failed: None,
        }
    }

    /// Handles one event and returns the chunks it yields.
    pub fn handle(&mut self, event: &SseEvent) -> Result<Vec<Chunk>, ProviderError> {
        let mut chunks = Vec::new();
        if self.done {
            return Ok(chunks);
        }
        let mut parsed = None;
        let kind = match event.event.as_deref().filter(|name| !name.is_empty()) {
            Some(name) => name.to_owned(),
            None => {
                let value = parse_data(event)?;
                let kind = value
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let kind = kind.to_owned();
                parsed = Some(value);
                kind
            }
        };
        const KNOWN: &[&str] = &[
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
            "error",
        ];
        // `ping` and event types newer than this plugin are skipped unread.
        if !KNOWN.contains(&kind.as_str()) {
            return Ok(chunks);
        }
        let value = match parsed {
            Some(value) => value,
            None => parse_data(event)?,
        };
        match kind.as_str() {
            "message_start" => self.message_start(&value, &mut chunks),
            "content_block_start" => self.block_start(&value, &mut chunks)?,
            "content_block_delta" => self.block_delta(&value, &mut chunks)?,
            "content_block_stop" => self.block_stop(&value, &mut chunks)?,
            "message_delta" => self.message_delta(&value, &mut chunks),
            "message_stop" => self.message_stop(&mut chunks)?,
            _ => return Err(map_error_object(value.get("error").unwrap_or(&value))),
        }
        Ok(chunks)
    }

    fn start(&mut self, id: &str, model: &str, chunks: &mut Vec<Chunk>) {
        if self.started {
            return;
        }
        self.started = true;
        chunks.push(Chunk::Start(StreamStart {
            id: id.to_owned(),
            model: if model.is_empty() {
                self.model.clone()
            } else {
                model.to_owned()
            },
            rate_limits: self.rate_limits,
            request_id: self.request_id.clone(),
        }));
    }

    fn message_start(&mut self, value: &Value, chunks: &mut Vec<Chunk>) {
        let message = value.get("message").unwrap_or(&Value::Null);
        if let Some(usage) = message.get("usage").filter(|u| u.is_object()) {
            self.tally.update(usage);
            self.saw_usage = true;
        }
        self.start(text(message, "id"), text(message, "model"), chunks);
    }

    fn block_start(&mut self, value: &Value, chunks: &mut Vec<Chunk>) -> Result<(), ProviderError> {
        self.start("", "", chunks);
        let index = block_index(value)?;
        let content = value.get("content_block").unwrap_or(&Value::Null);
        let block = match text(content, "type") {
            "text" => {
                self.push_text(text(content, "text"), chunks);
                Block::Text
            }
            "thinking" => {
                self.push_reasoning(text(content, "thinking"), chunks);
                push_signature(text(content, "signature"), chunks);
                Block::Thinking
            }
            "tool_use" => {
                let index = self.tool_calls;
                self.tool_calls += 1;
                chunks.push(Chunk::ToolCall(ToolCallDelta {
                    index,
                    id: Some(text(content, "id").to_owned()),
                    name: Some(text(content, "name").to_owned()),
                    arguments: String::new(),
                }));
                Block::Tool {
                    index,
                    has_arguments: false,
                }
            }
            "redacted_thinking" => {
                chunks.push(Chunk::RedactedReasoning(text(content, "data").to_owned()));
                Block::Ignored
            }
            _ => Block::Ignored,
        };
        self.blocks.insert(index, block);
        Ok(())
    }

    fn block_delta(&mut self, value: &Value, chunks: &mut Vec<Chunk>) -> Result<(), ProviderError> {
        let index = block_index(value)?;
        let Some(block) = self.blocks.get(&index).copied() else {
            return Err(ProviderError::Protocol(format!(
                "Claude sent a delta for content block {index}, which was not started"
            )));
        };
        let delta = value.get("delta").unwrap_or(&Value::Null);
        match (text(delta, "type"), block) {
            ("text_delta", Block::Text) => self.push_text(text(delta, "text"), chunks),
            ("thinking_delta", Block::Thinking) => {
                self.push_reasoning(text(delta, "thinking"), chunks);
            }
            ("signature_delta", Block::Thinking) => {
                push_signature(text(delta, "signature"), chunks)
            }
            ("input_json_delta", Block::Tool { index: tool, .. }) => {
                let partial = text(delta, "partial_json");
                if !partial.is_empty() {
                    self.blocks.insert(
                        index,
                        Block::Tool {
                            index: tool,
                            has_arguments: true,
                        },
                    );
                    self.output.push_str(partial);
                    chunks.push(Chunk::ToolCall(ToolCallDelta {
                        index: tool,
                        id: None,
                        name: None,
                        arguments: partial.to_owned(),
                    }));
                }
            }
            // Citations, deltas of ignored blocks, and delta types newer
            // than this plugin.
            _ => {}
        }
        Ok(())
    }

    fn block_stop(&mut self, value: &Value, chunks: &mut Vec<Chunk>) -> Result<(), ProviderError> {
        let index = block_index(value)?;
        // A tool called without arguments streams no JSON at all; its
        // arguments are the empty object, as in a non-streamed answer.
        if let Some(Block::Tool {
            index,
            has_arguments: false,
        }) = self.blocks.remove(&index)
        {
            chunks.push(Chunk::ToolCall(ToolCallDelta {
                index,
                id: None,
                name: None,
                arguments: "{}".into(),
            }));
        }
        Ok(())
    }

    fn message_delta(&mut self, value: &Value, chunks: &mut Vec<Chunk>) {
        self.start("", "", chunks);
        if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
            self.tally.update(usage);
            self.saw_usage = true;
        }
        let reason = value
            .get("delta")
            .and_then(|d| d.get("stop_reason"))
            .and_then(Value::as_str);
        if let Some(reason) = reason
            && !self.finished
        {
            self.finished = true;
            chunks.push(Chunk::Finish(parse_stop_reason(reason)));
        }
    }

    fn message_stop(&mut self, chunks: &mut Vec<Chunk>) -> Result<(), ProviderError> {
        self.start("", "", chunks);
        if !self.finished {
            self.finished = true;
            chunks.push(Chunk::Finish(if self.tool_calls > 0 {
                FinishReason::ToolCalls
            } else {
                FinishReason::Stop
            }));
        }
        let usage = if self.saw_usage {
            self.tally.usage()
        } else {
            estimate_usage(&self.messages, &self.output)?
        };
        chunks.push(Chunk::Usage(usage));
        self.done = true;
        Ok(())
    }

    fn push_text(&mut self, delta: &str, chunks: &mut Vec<Chunk>) {
        if !delta.is_empty() {
            self.output.push_str(delta);
            chunks.push(Chunk::Text(delta.to_owned()));
        }
    }

    fn push_reasoning(&mut self, delta: &str, chunks: &mut Vec<Chunk>) {
        if !delta.is_empty() {
            self.output.push_str(delta);
            chunks.push(Chunk::Reasoning(delta.to_owned()));
        }
    }
}

fn push_signature(signature: &str, chunks: &mut Vec<Chunk>) {
    if !signature.is_empty() {
        chunks.push(Chunk::ReasoningSignature(signature.to_owned()));
    }
}

fn parse_data(event: &SseEvent) -> Result<Value, ProviderError> {
    let data = event.data.trim();
    if data.is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_str(data).map_err(|err| {
        ProviderError::Protocol(format!(
            "Claude sent a stream event that is not JSON ({err}): {}",
            data.chars().take(200).collect::<String>()
        ))
    })
}

fn block_index(value: &Value) -> Result<u64, ProviderError> {
    value.get("index").and_then(Value::as_u64).ok_or_else(|| {
        ProviderError::Protocol("Claude sent a content block event without an index".into())
    })
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

impl StreamDecode for StreamState {
    /// Handles one read's events in order. A failure part-way through
    /// still returns the chunks of the events before it, and is returned
    /// by the next call, so what a caller sees does not depend on how the
    /// body was split into reads.
    fn feed(&mut self, input: StreamInput) -> Result<Vec<Chunk>, ProviderError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let StreamInput::Events(events) = input else {
            return Err(self.fail(ProviderError::Protocol(
                "the Claude stream decoder reads server-sent events, and was fed raw bytes".into(),
            )));
        };
        let mut chunks = Vec::new();
        for event in &events {
            match self.handle(event) {
                Ok(more) => chunks.extend(more),
                Err(error) => {
                    let error = self.fail(error);
                    if chunks.is_empty() {
                        return Err(error);
                    }
                    break;
                }
            }
        }
        Ok(chunks)
    }

    fn finish(&mut self) -> Result<Vec<Chunk>, ProviderError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.done {
            return Ok(Vec::new());
        }
        Err(self.fail(ProviderError::Protocol(
            "the Claude stream ended before message_stop".into(),
        )))
    }
}

impl StreamState {
    /// Records the failure that ends the stream and returns it.
    fn fail(&mut self, error: ProviderError) -> ProviderError {
        self.failed = Some(error.clone());
        error
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "stream_props.rs"]
mod props;
