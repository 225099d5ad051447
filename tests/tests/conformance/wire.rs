//! The vendors, the test bench and each vendor's wire format for
//! scripted replies, shared by the conformance scenarios.

use crate::common::builder;
use llmhost::types::{ChatRequest, Chunk, Message, Usage};
use llmhost::{ChatStream, Error, Host, Target};
use llmhost_simulator::{Reply, Simulator, Vendor, sse_data, sse_event};
use serde_json::{Value, json};
use std::time::Duration;

/// How a vendor frames answers and errors on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI chat completions (OpenAI, DeepSeek).
    OpenAi,
    /// OpenAI-compatible, but errors are `{"code": "...", "error": "..."}`.
    XAi,
    /// Anthropic Messages.
    Anthropic,
}

#[derive(Debug, Clone, Copy)]
pub struct Provider {
    pub id: &'static str,
    pub vendor: Vendor,
    pub model: &'static str,
    pub wire: Wire,
}

pub const PROVIDERS: &[Provider] = &[
    Provider {
        id: "openai",
        vendor: Vendor::OpenAi,
        model: "gpt-4o-mini",
        wire: Wire::OpenAi,
    },
    Provider {
        id: "deepseek",
        vendor: Vendor::DeepSeek,
        model: "deepseek-chat",
        wire: Wire::OpenAi,
    },
    Provider {
        id: "grok",
        vendor: Vendor::XAi,
        model: "grok-3",
        wire: Wire::XAi,
    },
    Provider {
        id: "claude",
        vendor: Vendor::Anthropic,
        model: "claude-sonnet-4-5",
        wire: Wire::Anthropic,
    },
];

pub struct Bench {
    pub host: Host,
    pub sim: Simulator,
}

impl Bench {
    pub async fn new() -> Self {
        Self {
            host: builder().build().await.expect("host"),
            sim: Simulator::start().await.expect("simulator"),
        }
    }

    pub fn target(&self, p: &Provider) -> Target {
        let mut target = Target::new(p.id)
            .base_url(self.sim.base_url(p.vendor))
            .api_key("conformance-key")
            .timeout(Duration::from_secs(20));
        target.use_env = false;
        target
    }

    pub async fn chat(
        &self,
        p: &Provider,
        request: &ChatRequest,
    ) -> Result<llmhost::ChatOutcome, Error> {
        self.host.chat_once(&self.target(p), request).await
    }

    /// Runs a stream to its end: the chunks, then the error if it failed.
    pub async fn stream(
        &self,
        p: &Provider,
        request: &ChatRequest,
    ) -> (Vec<Chunk>, Option<Error>, Option<Usage>) {
        let mut stream: ChatStream = match self.host.stream_once(&self.target(p), request).await {
            Ok(stream) => stream,
            Err(err) => return (Vec::new(), Some(err), None),
        };
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => chunks.push(chunk),
                Err(err) => return (chunks, Some(err), stream.usage()),
            }
        }
        (chunks, None, stream.usage())
    }

    pub fn last_body(&self) -> Value {
        self.sim
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.method == "POST")
            .and_then(|r| r.json())
            .expect("a JSON request reached the simulator")
    }
}

pub fn request(p: &Provider) -> ChatRequest {
    ChatRequest::new(
        p.model,
        vec![Message::system("Be brief."), Message::user("Hello there")],
    )
}

pub fn text_of(chunks: &[Chunk]) -> String {
    chunks
        .iter()
        .filter_map(|c| match c {
            Chunk::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

// ---- the vendors' wire formats, for scripted replies ----

pub fn openai_chunk(model: &str, delta: Value, finish: Option<&str>, usage: Value) -> String {
    sse_data(&json!({
        "id": "chatcmpl-conf", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": usage
    }))
}

pub fn openai_usage(input: u32, output: u32) -> Value {
    json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output})
}

/// A complete text stream with usage 11 in / 7 out, in each vendor's way
/// of reporting usage.
pub fn usage_stream(p: &Provider, pieces: &[&str]) -> Vec<String> {
    let m = p.model;
    match (p.id, p.wire) {
        (_, Wire::Anthropic) => {
            let mut events = vec![
                sse_event(
                    "message_start",
                    &json!({"type": "message_start", "message": {
                    "id": "msg_conf", "type": "message", "role": "assistant", "model": m, "content": [],
                    "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 11, "output_tokens": 1}}}),
                ),
                sse_event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
                sse_event("ping", &json!({"type": "ping"})),
            ];
            for piece in pieces {
                events.push(sse_event("content_block_delta", &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})));
            }
            events.push(sse_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            // Cumulative output counts: the last one is the total.
            events.push(sse_event("message_delta", &json!({"type": "message_delta", "delta": {"stop_reason": null, "stop_sequence": null}, "usage": {"output_tokens": 3}})));
            events.push(sse_event("message_delta", &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 7}})));
            events.push(sse_event("message_stop", &json!({"type": "message_stop"})));
            events
        }
        ("deepseek", _) => {
            // Placeholder zero usage on every chunk before the real one.
            let zero = openai_usage(0, 0);
            let mut events = vec![
                ": keep-alive\n\n".to_string(),
                openai_chunk(
                    m,
                    json!({"role": "assistant", "content": ""}),
                    None,
                    zero.clone(),
                ),
            ];
            for piece in pieces {
                events.push(openai_chunk(
                    m,
                    json!({"content": piece}),
                    None,
                    zero.clone(),
                ));
            }
            events.push(openai_chunk(m, json!({"content": ""}), Some("stop"), zero));
            events.push(sse_data(&json!({"id": "chatcmpl-conf", "object": "chat.completion.chunk", "created": 1, "model": m, "choices": [], "usage": openai_usage(11, 7)})));
            events.push("data: [DONE]\n\n".into());
            events
        }
        ("grok", _) => {
            // Usage in the second-to-last chunk, then an empty final chunk.
            let mut events = vec![openai_chunk(
                m,
                json!({"role": "assistant", "content": ""}),
                None,
                Value::Null,
            )];
            for piece in pieces {
                events.push(openai_chunk(
                    m,
                    json!({"content": piece}),
                    None,
                    Value::Null,
                ));
            }
            events.push(openai_chunk(
                m,
                json!({}),
                Some("stop"),
                openai_usage(11, 7),
            ));
            events.push(sse_data(&json!({"id": "chatcmpl-conf", "object": "chat.completion.chunk", "created": 1, "model": m, "choices": []})));
            events.push("data: [DONE]\n\n".into());
            events
        }
        _ => {
            // OpenAI: a usage chunk with empty choices before [DONE].
            let mut events = vec![openai_chunk(
                m,
                json!({"role": "assistant", "content": ""}),
                None,
                Value::Null,
            )];
            for piece in pieces {
                events.push(openai_chunk(
                    m,
                    json!({"content": piece}),
                    None,
                    Value::Null,
                ));
            }
            events.push(openai_chunk(m, json!({}), Some("stop"), Value::Null));
            events.push(sse_data(&json!({"id": "chatcmpl-conf", "object": "chat.completion.chunk", "created": 1, "model": m, "choices": [], "usage": openai_usage(11, 7)})));
            events.push("data: [DONE]\n\n".into());
            events
        }
    }
}

/// The terminator of a stream in the vendor's format.
pub fn is_terminator(p: &Provider, event: &str) -> bool {
    match p.wire {
        Wire::Anthropic => event.starts_with("event: message_stop"),
        _ => event.starts_with("data: [DONE]"),
    }
}

pub fn error_reply(p: &Provider, status: u16, code: &str, message: &str) -> Reply {
    match p.wire {
        Wire::OpenAi => Reply::openai_error(status, code, Some(code), message),
        Wire::XAi => Reply::xai_error(status, code, message),
        Wire::Anthropic => Reply::anthropic_error(status, code, message),
    }
}

/// An error event inside a 200 stream.
pub fn stream_error_event(p: &Provider) -> (String, &'static str) {
    match p.wire {
        Wire::Anthropic => (
            sse_event(
                "error",
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ),
            "overloaded",
        ),
        _ => (
            sse_data(
                &json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}),
            ),
            "server_error",
        ),
    }
}
