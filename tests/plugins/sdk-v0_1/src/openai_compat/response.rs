//! Parsing non-streamed chat-completions responses, leniently: vendors
//! send `null` or omit fields that OpenAI always sends.

use super::Dialect;
use crate::http::Headers;
use crate::ratelimit::openai_rate_limits;
use crate::types::{
    ChatRequest, ChatResponse, FinishReason, ProviderError, TokenInput, ToolCall, Usage,
};
use serde_json::Value;

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn u32_at(value: &Value, path: &[&str]) -> Option<u32> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// Maps a `finish_reason`; `None` for null or empty.
pub fn parse_finish_reason(value: Option<&Value>) -> Option<FinishReason> {
    let reason = value?.as_str()?;
    Some(match reason {
        "" => return None,
        "stop" | "end_turn" | "stop_sequence" => FinishReason::Stop,
        "length" | "max_tokens" => FinishReason::Length,
        "tool_calls" | "function_call" | "tool_use" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        "refusal" => FinishReason::Refusal,
        other => FinishReason::Other(other.to_owned()),
    })
}

/// Reads a `usage` object; `None` when it is null, empty or all zeros (some
/// vendors send placeholders before the real figures).
///
/// Reasoning tokens belong in the output count. OpenAI counts them inside
/// `completion_tokens`; xAI counts them beside it, which shows in its
/// `total_tokens` (prompt + completion + reasoning), and then they are
/// added in.
pub fn parse_usage(usage: Option<&Value>) -> Option<Usage> {
    let usage = usage?;
    let input = u32_at(usage, &["prompt_tokens"]).unwrap_or(0);
    let completion = u32_at(usage, &["completion_tokens"]).unwrap_or(0);
    if input == 0 && completion == 0 {
        return None;
    }
    let cache_read = u32_at(usage, &["prompt_tokens_details", "cached_tokens"])
        .or_else(|| u32_at(usage, &["prompt_cache_hit_tokens"]))
        .unwrap_or(0);
    let reasoning = u32_at(usage, &["completion_tokens_details", "reasoning_tokens"]).unwrap_or(0);
    let total = usage.get("total_tokens").and_then(Value::as_u64);
    let reasoning_beside_completion = reasoning > 0
        && total == Some(u64::from(input) + u64::from(completion) + u64::from(reasoning));
    Some(Usage {
        input_tokens: input,
        output_tokens: if reasoning_beside_completion {
            completion.saturating_add(reasoning)
        } else {
            completion
        },
        cache_read_tokens: cache_read,
        cache_write_tokens: 0,
        reasoning_tokens: reasoning,
        estimated: false,
    })
}

/// Estimates usage the vendor did not report, with the dialect's encoding,
/// and flags it as an estimate.
pub(crate) fn estimate_usage(
    dialect: &Dialect,
    request: &ChatRequest,
    output: &str,
) -> Result<Usage, ProviderError> {
    let encoding = (dialect.estimate_encoding)(&request.model);
    let input = crate::tokens::count(
        encoding,
        &TokenInput::Messages(request.messages.clone()),
        false,
    )?;
    let output = crate::tokens::count(encoding, &TokenInput::Text(output.to_owned()), false)?;
    Ok(Usage {
        input_tokens: input.tokens,
        output_tokens: output.tokens,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        estimated: true,
    })
}

fn parse_tool_calls(value: Option<&Value>) -> Vec<ToolCall> {
    let Some(calls) = value.and_then(Value::as_array) else {
        return Vec::new();
    };
    calls
        .iter()
        .map(|call| {
            let function = call.get("function").unwrap_or(&Value::Null);
            ToolCall {
                id: str_field(call, "id").unwrap_or_default().to_owned(),
                name: str_field(function, "name").unwrap_or_default().to_owned(),
                arguments: match function.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                },
            }
        })
        .collect()
}

/// Text of a `content` field that may be a string, null, or a list of parts.
pub(crate) fn content_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| str_field(p, "text")).collect(),
        _ => String::new(),
    }
}

/// Parses a successful response body.
pub fn parse_response(
    dialect: &Dialect,
    request: &ChatRequest,
    headers: &Headers,
    body: &[u8],
) -> Result<ChatResponse, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        ProviderError::Protocol(format!(
            "{} sent a response that is not JSON: {err}",
            dialect.provider
        ))
    })?;
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return Err(super::map_error_object(error));
    }
    let choice = value
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .ok_or_else(|| {
            ProviderError::Protocol(format!(
                "{} sent a response without choices",
                dialect.provider
            ))
        })?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = content_text(message.get("content"));
    let refusal = str_field(message, "refusal").filter(|r| !r.is_empty());
    let tool_calls = parse_tool_calls(message.get("tool_calls"));
    let mut finish_reason =
        parse_finish_reason(choice.get("finish_reason")).unwrap_or(if tool_calls.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::ToolCalls
        });
    if let Some(refusal) = refusal {
        if content.is_empty() {
            content = refusal.to_owned();
        }
        finish_reason = FinishReason::Refusal;
    }
    let reasoning_content = dialect
        .reasoning_field
        .and_then(|field| str_field(message, field))
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    let usage = match parse_usage(value.get("usage")) {
        Some(usage) => usage,
        None => estimate_usage(dialect, request, &content)?,
    };
    Ok(ChatResponse {
        id: str_field(&value, "id").unwrap_or_default().to_owned(),
        model: str_field(&value, "model")
            .unwrap_or(&request.model)
            .to_owned(),
        parts: crate::answer_parts(reasoning_content.as_deref(), &content, &tool_calls),
        content,
        reasoning_content,
        tool_calls,
        finish_reason,
        usage,
        rate_limits: openai_rate_limits(headers),
        request_id: headers.get("x-request-id").map(str::to_owned),
    })
}
