//! Decoding a streamed chat-completions answer from the server-sent events
//! the host frames.

use super::{Dialect, map_error_object, parse_finish_reason, parse_usage};
use crate::StreamDecode;
use crate::http::Headers;
use crate::ratelimit::openai_rate_limits;
use crate::types::{
    ChatRequest, Chunk, Message, ProviderError, RateLimits, SseEvent, StreamInput, StreamStart,
    ToolCallDelta, Usage,
};
use serde_json::Value;

/// The decoder of one streamed answer: server-sent events in, contract
/// chunks out. Each event is decoded on its own, so how the host groups
/// events into [`StreamDecode::feed`] calls never changes the chunks.
///
/// Usage is held back until `[DONE]` and the last real figures are emitted
/// once: vendors send placeholders (DeepSeek), usage before an empty final
/// chunk (xAI), or the usage chunk with empty `choices` (OpenAI). Only a
/// stream that reports no usage at all is estimated, through the host's
/// tokenizer. Events after `[DONE]` are ignored.
pub struct StreamDecoder {
    dialect: &'static Dialect,
    /// What an estimate of the usage needs of the request.
    model: String,
    messages: Vec<Message>,
    rate_limits: Option<RateLimits>,
    request_id: Option<String>,
    started: bool,
    finished: bool,
    done: bool,
    usage: Option<Usage>,
    /// The answer's text so far, for an estimate of the output.
    text: String,
}

impl StreamDecoder {
    /// A decoder for the answer to `request`, whose response carried
    /// `headers` (rate limits and request id go into the start chunk).
    pub fn new(dialect: &'static Dialect, request: &ChatRequest, headers: &Headers) -> Self {
        Self {
            dialect,
            model: request.model.clone(),
            messages: request.messages.clone(),
            rate_limits: openai_rate_limits(headers),
            request_id: headers.get("x-request-id").map(str::to_owned),
            started: false,
            finished: false,
            done: false,
            usage: None,
            text: String::new(),
        }
    }

    /// True once `[DONE]` arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Decodes one event, appending the chunks it completes to `out`.
    pub fn decode_event(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<Chunk>,
    ) -> Result<(), ProviderError> {
        if self.done {
            return Ok(());
        }
        let data = event.data.trim();
        if data == "[DONE]" {
            self.start("", "", out);
            let usage = match self.usage.take() {
                Some(usage) => usage,
                None => super::response::estimate_usage(
                    self.dialect,
                    &self.model,
                    &self.messages,
                    &self.text,
                )?,
            };
            out.push(Chunk::Usage(usage));
            self.done = true;
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let value: Value = serde_json::from_str(data).map_err(|err| {
            ProviderError::Protocol(format!(
                "{} sent a stream event that is not JSON ({err}): {}",
                self.dialect.provider,
                data.chars().take(200).collect::<String>()
            ))
        })?;
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            return Err(map_error_object(error));
        }
        let id = value.get("id").and_then(Value::as_str).unwrap_or_default();
        let model = value
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.start(id, model, out);
        if let Some(usage) = parse_usage(value.get("usage")) {
            self.usage = Some(usage);
        }
        let choices = value.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.get("delta") {
                self.delta(delta, out);
            }
            if let Some(reason) = parse_finish_reason(choice.get("finish_reason"))
                && !self.finished
            {
                self.finished = true;
                out.push(Chunk::Finish(reason));
            }
        }
        Ok(())
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<Chunk>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(Chunk::Start(StreamStart {
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

    fn delta(&mut self, delta: &Value, out: &mut Vec<Chunk>) {
        if let Some(field) = self.dialect.reasoning_field
            && let Some(reasoning) = delta.get(field).and_then(Value::as_str)
            && !reasoning.is_empty()
        {
            out.push(Chunk::Reasoning(reasoning.to_owned()));
        }
        let text = super::response::content_text(delta.get("content"));
        if !text.is_empty() {
            self.text.push_str(&text);
            out.push(Chunk::Text(text));
        }
        if let Some(refusal) = delta.get("refusal").and_then(Value::as_str)
            && !refusal.is_empty()
        {
            self.text.push_str(refusal);
            out.push(Chunk::Text(refusal.to_owned()));
        }
        let calls = delta.get("tool_calls").and_then(Value::as_array);
        for (position, call) in calls.into_iter().flatten().enumerate() {
            let function = call.get("function").unwrap_or(&Value::Null);
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
            out.push(Chunk::ToolCall(ToolCallDelta {
                index,
                id: call.get("id").and_then(Value::as_str).map(str::to_owned),
                name: function
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                arguments: function
                    .get("arguments")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }));
        }
    }
}

impl StreamDecode for StreamDecoder {
    fn feed(&mut self, input: StreamInput) -> Result<Vec<Chunk>, ProviderError> {
        let StreamInput::Events(events) = input else {
            return Err(ProviderError::Protocol(format!(
                "the {} stream decoder reads server-sent events, and was fed raw bytes",
                self.dialect.provider
            )));
        };
        let mut out = Vec::new();
        for event in &events {
            self.decode_event(event, &mut out)?;
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<Chunk>, ProviderError> {
        if self.done {
            Ok(Vec::new())
        } else {
            Err(ProviderError::Protocol(format!(
                "the {} stream ended before [DONE]",
                self.dialect.provider
            )))
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
