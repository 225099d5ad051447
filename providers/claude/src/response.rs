//! Parsing non-streamed Messages API responses, and the usage and stop
//! reason rules the stream shares.

use crate::error::map_error_object;
use crate::limits::rate_limits;
use crate::models::ESTIMATE_ENCODING;
use llmhost_provider_sdk::http::Headers;
use llmhost_provider_sdk::tokens;
use llmhost_provider_sdk::types::{
    ChatResponse, ContentPart, FinishReason, Message, ProviderError, Thinking, TokenInput,
    ToolCall, Usage,
};
use serde_json::Value;

/// Maps a `stop_reason`.
pub fn parse_stop_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        // Generation stopped because the context window filled up: the
        // same outcome as hitting max_tokens for the caller.
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::Refusal,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Token counts as Anthropic reports them: `input_tokens` excludes the
/// tokens read from and written to the prompt cache, the contract's input
/// count includes them. `cache_creation_input_tokens` is the total written;
/// `cache_creation` splits it by lifetime (`ephemeral_5m_input_tokens`,
/// `ephemeral_1h_input_tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenTally {
    pub input: u32,
    pub cache_read: u32,
    /// The reported total of cache writes, when Anthropic sent one.
    pub cache_write: Option<u32>,
    pub cache_write_5m: u32,
    pub cache_write_1h: u32,
    pub output: u32,
}

impl TokenTally {
    /// Takes every count present in a `usage` object. Anthropic's counts
    /// are cumulative, so a later figure replaces an earlier one.
    pub fn update(&mut self, usage: &Value) {
        if let Some(n) = count(usage, "input_tokens") {
            self.input = n;
        }
        if let Some(n) = count(usage, "cache_read_input_tokens") {
            self.cache_read = n;
        }
        if let Some(n) = count(usage, "cache_creation_input_tokens") {
            self.cache_write = Some(n);
        }
        if let Some(by_lifetime) = usage.get("cache_creation") {
            if let Some(n) = count(by_lifetime, "ephemeral_5m_input_tokens") {
                self.cache_write_5m = n;
            }
            if let Some(n) = count(by_lifetime, "ephemeral_1h_input_tokens") {
                self.cache_write_1h = n;
            }
        }
        if let Some(n) = count(usage, "output_tokens") {
            self.output = n;
        }
    }

    /// The contract's usage record. Cache writes are the reported total,
    /// or the sum by lifetime where no total came, and never fewer than
    /// the one-hour writes among them.
    pub fn usage(&self) -> Usage {
        let by_lifetime = self.cache_write_5m.saturating_add(self.cache_write_1h);
        let cache_write = self
            .cache_write
            .unwrap_or(by_lifetime)
            .max(self.cache_write_1h);
        Usage {
            input_tokens: self
                .input
                .saturating_add(self.cache_read)
                .saturating_add(cache_write),
            output_tokens: self.output,
            cache_read_tokens: self.cache_read,
            cache_write_tokens: cache_write,
            cache_write_hour_tokens: self.cache_write_1h,
            reasoning_tokens: 0,
            estimated: false,
        }
    }
}

/// A token count of a usage object, saturated to the contract's `u32`.
fn count(usage: &Value, key: &str) -> Option<u32> {
    usage
        .get(key)
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// A local, flagged estimate for an answer that came without usage.
pub fn estimate_usage(messages: &[Message], output: &str) -> Result<Usage, ProviderError> {
    let input = tokens::count(
        ESTIMATE_ENCODING,
        &TokenInput::Messages(messages.to_vec()),
        false,
    )?;
    let output = tokens::count(
        ESTIMATE_ENCODING,
        &TokenInput::Text(output.to_owned()),
        false,
    )?;
    Ok(Usage {
        input_tokens: input.tokens,
        output_tokens: output.tokens,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cache_write_hour_tokens: 0,
        reasoning_tokens: 0,
        estimated: true,
    })
}

/// Parses a successful response body. `messages` are the request's, only
/// read to estimate usage if the vendor reported none.
pub fn parse_response(
    model: &str,
    messages: &[Message],
    headers: &Headers,
    body: &[u8],
) -> Result<ChatResponse, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        ProviderError::Protocol(format!("Claude sent a response that is not JSON: {err}"))
    })?;
    if value.get("type").and_then(Value::as_str) == Some("error") {
        return Err(map_error_object(value.get("error").unwrap_or(&Value::Null)));
    }
    let blocks = value
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ProviderError::Protocol("Claude sent a response without a content list".into())
        })?;
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    let mut parts = Vec::with_capacity(blocks.len());
    for block in blocks {
        let text = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or_default();
        match text("type") {
            "text" => {
                content.push_str(text("text"));
                parts.push(ContentPart::Text(text("text").to_owned()));
            }
            "thinking" => {
                reasoning.push_str(text("thinking"));
                parts.push(ContentPart::Thinking(Thinking {
                    text: text("thinking").to_owned(),
                    signature: block
                        .get("signature")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                }));
            }
            "redacted_thinking" => {
                parts.push(ContentPart::RedactedThinking(text("data").to_owned()));
            }
            "tool_use" => {
                let call = ToolCall {
                    id: text("id").to_owned(),
                    name: text("name").to_owned(),
                    arguments: match block.get("input") {
                        None | Some(Value::Null) => "{}".to_owned(),
                        Some(input) => input.to_string(),
                    },
                };
                parts.push(ContentPart::ToolUse(call.clone()));
                tool_calls.push(call);
            }
            // Server tools and block types newer than this plugin have no
            // place in the contract's response.
            _ => {}
        }
    }
    let finish_reason = match value.get("stop_reason").and_then(Value::as_str) {
        Some(reason) => parse_stop_reason(reason),
        None if tool_calls.is_empty() => FinishReason::Stop,
        None => FinishReason::ToolCalls,
    };
    let usage = match value.get("usage").filter(|u| u.is_object()) {
        Some(reported) => {
            let mut tally = TokenTally::default();
            tally.update(reported);
            tally.usage()
        }
        None => estimate_usage(messages, &content)?,
    };
    Ok(ChatResponse {
        id: text_field(&value, "id").to_owned(),
        model: match text_field(&value, "model") {
            "" => model.to_owned(),
            answered => answered.to_owned(),
        },
        content,
        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
        tool_calls,
        parts,
        finish_reason,
        usage,
        rate_limits: rate_limits(headers),
        request_id: headers.get("request-id").map(str::to_owned),
    })
}

fn text_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: &Value) -> ChatResponse {
        let headers = Headers::from_pairs([("request-id", "req_1")]);
        parse_response("claude-x", &[], &headers, body.to_string().as_bytes())
            .unwrap_or_else(|err| panic!("parses: {err:?}"))
    }

    #[test]
    fn text_thinking_and_tool_use() {
        let response = parse(&json!({
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "I'll look "},
                {"type": "text", "text": "that up."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}},
                {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 25},
        }));
        assert_eq!(response.id, "msg_01");
        assert_eq!(response.model, "claude-sonnet-4-5-20250929");
        assert_eq!(response.content, "I'll look that up.");
        assert_eq!(response.reasoning_content.as_deref(), Some("Let me think."));
        assert_eq!(response.tool_calls.len(), 2);
        assert_eq!(response.tool_calls[0].id, "toolu_1");
        assert_eq!(response.tool_calls[0].name, "lookup");
        assert_eq!(response.tool_calls[0].arguments, r#"{"q":"x"}"#);
        assert_eq!(response.tool_calls[1].arguments, "{}");
        // The parts keep the vendor's order and the signature, ready to be
        // sent back.
        assert_eq!(response.parts.len(), 6);
        assert!(
            matches!(&response.parts[0], ContentPart::Thinking(t) if t.text == "Let me think." && t.signature.as_deref() == Some("sig"))
        );
        assert!(matches!(&response.parts[1], ContentPart::RedactedThinking(d) if d == "opaque"));
        assert!(matches!(&response.parts[2], ContentPart::Text(t) if t == "I'll look "));
        assert!(matches!(&response.parts[4], ContentPart::ToolUse(c) if c.id == "toolu_1"));
        assert!(matches!(response.finish_reason, FinishReason::ToolCalls));
        assert_eq!(response.request_id.as_deref(), Some("req_1"));
        assert_eq!(response.usage.input_tokens, 10);
        assert_eq!(response.usage.output_tokens, 25);
        assert!(!response.usage.estimated);
        assert!(response.rate_limits.is_none());
    }

    #[test]
    fn cache_tokens_count_as_input() {
        let response = parse(&json!({
            "id": "msg_02",
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "usage": {
                "input_tokens": 12,
                "cache_creation_input_tokens": 1000,
                "cache_read_input_tokens": 3000,
                "output_tokens": 5,
            },
        }));
        assert_eq!(
            response.model, "claude-x",
            "falls back to the requested model"
        );
        assert_eq!(response.reasoning_content, None);
        let usage = response.usage;
        assert_eq!(usage.input_tokens, 4012);
        assert_eq!(usage.cache_read_tokens, 3000);
        assert_eq!(usage.cache_write_tokens, 1000);
        assert_eq!(usage.output_tokens, 5);
    }

    #[test]
    fn cache_writes_by_lifetime() {
        let response = parse(&json!({
            "id": "msg_03",
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "usage": {
                "input_tokens": 20,
                "cache_creation_input_tokens": 1500,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 500,
                    "ephemeral_1h_input_tokens": 1000,
                },
                "cache_read_input_tokens": 0,
                "output_tokens": 7,
            },
        }));
        let usage = response.usage;
        assert_eq!(
            usage.cache_write_tokens, 1500,
            "the total of both lifetimes"
        );
        assert_eq!(usage.cache_write_hour_tokens, 1000);
        assert_eq!(usage.input_tokens, 1520);
    }

    #[test]
    fn cache_write_total_is_read_from_the_breakdown_when_missing() {
        let mut tally = TokenTally::default();
        tally.update(&json!({
            "input_tokens": 3,
            "cache_creation": {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 60},
        }));
        let usage = tally.usage();
        assert_eq!(usage.cache_write_tokens, 100);
        assert_eq!(usage.cache_write_hour_tokens, 60);
        assert_eq!(usage.input_tokens, 103);
        // A total below its own one-hour part is not believed.
        tally.update(&json!({"cache_creation_input_tokens": 10}));
        assert_eq!(tally.usage().cache_write_tokens, 60);
        // Counts beyond the contract's u32 saturate instead of wrapping.
        tally.update(&json!({"input_tokens": u64::MAX, "cache_read_input_tokens": 5}));
        assert_eq!(tally.usage().input_tokens, u32::MAX);
    }

    #[test]
    fn stop_reasons() {
        let cases = [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool-calls"),
            ("refusal", "refusal"),
            ("pause_turn", "other:pause_turn"),
            ("something_new", "other:something_new"),
        ];
        for (reason, expected) in cases {
            let got = match parse_stop_reason(reason) {
                FinishReason::Stop => "stop".to_owned(),
                FinishReason::Length => "length".to_owned(),
                FinishReason::ToolCalls => "tool-calls".to_owned(),
                FinishReason::Refusal => "refusal".to_owned(),
                FinishReason::ContentFilter => "content-filter".to_owned(),
                FinishReason::Other(other) => format!("other:{other}"),
            };
            assert_eq!(got, expected, "{reason}");
        }
    }

    #[test]
    fn malformed_and_error_bodies() {
        let headers = Headers::default();
        assert!(matches!(
            parse_response("m", &[], &headers, b"not json"),
            Err(ProviderError::Protocol(_))
        ));
        assert!(matches!(
            parse_response("m", &[], &headers, br#"{"id":"msg"}"#),
            Err(ProviderError::Protocol(_))
        ));
        let error = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        assert!(matches!(
            parse_response("m", &[], &headers, error.to_string().as_bytes()),
            Err(ProviderError::Overloaded(_))
        ));
    }
}
