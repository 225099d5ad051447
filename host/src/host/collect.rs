//! Assembling a complete answer from the chunks of a stream.

use crate::types::{
    ChatResponse, Chunk, ContentPart, FinishReason, StreamStart, Thinking, ToolCall, Usage,
};
use std::collections::BTreeMap;

/// Assembles a complete response from stream chunks, for callers that
/// show a stream as it arrives and also want the whole answer (the
/// `llmhost chat --stream --json` output, a conversation history).
#[derive(Debug, Default)]
pub struct StreamCollector {
    start: Option<StreamStart>,
    text: String,
    reasoning: String,
    signature: Option<String>,
    redacted: Vec<String>,
    tools: BTreeMap<u32, ToolCall>,
    finish: Option<FinishReason>,
}

impl StreamCollector {
    /// Takes one chunk.
    pub fn add(&mut self, chunk: Chunk) {
        match chunk {
            Chunk::Start(start) => self.start = Some(start),
            Chunk::Text(text) => self.text.push_str(&text),
            Chunk::Reasoning(text) => self.reasoning.push_str(&text),
            Chunk::ToolCall(delta) => {
                let call = self.tools.entry(delta.index).or_insert_with(|| ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
                if let Some(id) = delta.id {
                    call.id = id;
                }
                if let Some(name) = delta.name {
                    call.name.push_str(&name);
                }
                call.arguments.push_str(&delta.arguments);
            }
            Chunk::Finish(reason) => self.finish = Some(reason),
            Chunk::ReasoningSignature(signature) => {
                self.signature
                    .get_or_insert_with(String::new)
                    .push_str(&signature);
            }
            Chunk::RedactedReasoning(data) => self.redacted.push(data),
            Chunk::Usage(_) => {}
        }
    }

    /// The response the chunks add up to; `model` names it when the stream
    /// did not.
    pub fn into_response(self, model: &str, usage: Usage) -> ChatResponse {
        let (id, model, rate_limits, request_id) = match self.start {
            Some(start) => (start.id, start.model, start.rate_limits, start.request_id),
            None => (String::new(), model.to_owned(), None, None),
        };
        let mut parts = Vec::new();
        if !self.reasoning.is_empty() {
            parts.push(ContentPart::Thinking(Thinking {
                text: self.reasoning.clone(),
                signature: self.signature,
            }));
        }
        parts.extend(self.redacted.into_iter().map(ContentPart::RedactedThinking));
        if !self.text.is_empty() {
            parts.push(ContentPart::Text(self.text.clone()));
        }
        let tool_calls: Vec<ToolCall> = self.tools.into_values().collect();
        parts.extend(tool_calls.iter().cloned().map(ContentPart::ToolUse));
        ChatResponse {
            id,
            model,
            content: self.text,
            reasoning_content: (!self.reasoning.is_empty()).then_some(self.reasoning),
            tool_calls,
            parts,
            finish_reason: self.finish.unwrap_or(FinishReason::Stop),
            usage,
            rate_limits,
            request_id,
        }
    }
}
