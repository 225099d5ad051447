//! Reading a streamed chat-completions answer.

use super::{Dialect, map_error_object, parse_finish_reason, parse_usage};
use crate::ChunkSource;
use crate::http::{BodyReader, Headers, Response};
use crate::ratelimit::openai_rate_limits;
use crate::sse::{SseEvent, SseParser};
use crate::types::{ChatRequest, Chunk, ProviderError, StreamStart, ToolCallDelta, Usage};
use serde_json::Value;
use std::collections::VecDeque;

/// A streamed answer being read: the vendor's body fed into a
/// [`StreamDecoder`].
pub struct CompatStream {
    decoder: StreamDecoder,
    body: BodyReader,
}

impl CompatStream {
    pub(super) fn new(
        dialect: &'static Dialect,
        request: &ChatRequest,
        response: Response,
    ) -> Self {
        Self {
            decoder: StreamDecoder::new(dialect, request, response.headers),
            body: response.body,
        }
    }
}

impl ChunkSource for CompatStream {
    fn next_chunk(&mut self) -> Result<Option<Chunk>, ProviderError> {
        loop {
            if let Some(chunk) = self.decoder.next_chunk()? {
                return Ok(Some(chunk));
            }
            if self.decoder.is_done() {
                return Ok(None);
            }
            match self.body.read_chunk()? {
                Some(bytes) => self.decoder.feed(&bytes),
                None => return Err(self.decoder.cut_off_error()),
            }
        }
    }
}

/// The protocol half of a streamed answer, without I/O: SSE bytes in,
/// contract chunks out, so vendor quirks can be tested by feeding bytes.
///
/// Usage is held back until the stream ends and the last real figures are
/// emitted once: vendors send placeholders (DeepSeek), usage before an
/// empty final chunk (xAI), or the usage chunk with empty `choices`
/// (OpenAI). Only a stream that reports no usage at all is estimated,
/// through the host's tokenizer.
pub struct StreamDecoder {
    dialect: &'static Dialect,
    request: ChatRequest,
    headers: Headers,
    parser: SseParser,
    pending: VecDeque<Chunk>,
    started: bool,
    finished: bool,
    done: bool,
    usage: Option<Usage>,
    text: String,
}

impl StreamDecoder {
    /// A decoder for the answer to `request`, whose response carried
    /// `headers` (rate limits and request id go into the start chunk).
    pub fn new(dialect: &'static Dialect, request: &ChatRequest, headers: Headers) -> Self {
        Self {
            dialect,
            request: request.clone(),
            headers,
            parser: SseParser::new(),
            pending: VecDeque::new(),
            started: false,
            finished: false,
            done: false,
            usage: None,
            text: String::new(),
        }
    }

    /// Adds body bytes as they arrive; events may be split anywhere.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.parser.feed(bytes);
    }

    /// The next chunk decoded from the bytes fed so far; `None` when more
    /// bytes are needed or the stream is over (see [`Self::is_done`]).
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, ProviderError> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Ok(Some(chunk));
            }
            if self.done {
                return Ok(None);
            }
            match self.parser.next_event() {
                Some(event) => self.handle(event)?,
                None => return Ok(None),
            }
        }
    }

    /// True once the end marker arrived and every chunk was taken.
    pub fn is_done(&self) -> bool {
        self.done && self.pending.is_empty()
    }

    /// The error for a body that ended before the end marker.
    pub fn cut_off_error(&self) -> ProviderError {
        ProviderError::Protocol(format!(
            "the {} stream ended before [DONE]{}",
            self.dialect.provider,
            if self.parser.has_partial_event() {
                ", inside an event"
            } else {
                ""
            }
        ))
    }

    fn start(&mut self, id: &str, model: &str) {
        if self.started {
            return;
        }
        self.started = true;
        self.pending.push_back(Chunk::Start(StreamStart {
            id: id.to_owned(),
            model: if model.is_empty() {
                self.request.model.clone()
            } else {
                model.to_owned()
            },
            rate_limits: openai_rate_limits(&self.headers),
            request_id: self.headers.get("x-request-id").map(str::to_owned),
        }));
    }

    fn handle(&mut self, event: SseEvent) -> Result<(), ProviderError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.start("", "");
            let usage = match self.usage.take() {
                Some(usage) => usage,
                None => super::response::estimate_usage(self.dialect, &self.request, &self.text)?,
            };
            self.pending.push_back(Chunk::Usage(usage));
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
        self.start(id, model);
        if let Some(usage) = parse_usage(value.get("usage")) {
            self.usage = Some(usage);
        }
        let choices = value.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.get("delta") {
                self.delta(delta);
            }
            if let Some(reason) = parse_finish_reason(choice.get("finish_reason"))
                && !self.finished
            {
                self.finished = true;
                self.pending.push_back(Chunk::Finish(reason));
            }
        }
        Ok(())
    }

    fn delta(&mut self, delta: &Value) {
        if let Some(field) = self.dialect.reasoning_field
            && let Some(reasoning) = delta.get(field).and_then(Value::as_str)
            && !reasoning.is_empty()
        {
            self.pending
                .push_back(Chunk::Reasoning(reasoning.to_owned()));
        }
        let text = super::response::content_text(delta.get("content"));
        if !text.is_empty() {
            self.text.push_str(&text);
            self.pending.push_back(Chunk::Text(text));
        }
        if let Some(refusal) = delta.get("refusal").and_then(Value::as_str)
            && !refusal.is_empty()
        {
            self.text.push_str(refusal);
            self.pending.push_back(Chunk::Text(refusal.to_owned()));
        }
        let calls = delta.get("tool_calls").and_then(Value::as_array);
        for (position, call) in calls.into_iter().flatten().enumerate() {
            let function = call.get("function").unwrap_or(&Value::Null);
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(position as u32);
            self.pending.push_back(Chunk::ToolCall(ToolCallDelta {
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
