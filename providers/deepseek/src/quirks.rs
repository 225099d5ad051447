//! Where DeepSeek's API differs from OpenAI's beyond what the core's
//! `Dialect` settings cover, each as one named function.

use llmhost_provider_sdk::openai_compat::{self, Dialect};
use llmhost_provider_sdk::types::{ChatRequest, ContentPart, ErrorDetail, ProviderError, Role};
use serde_json::Value;

/// The request body: the core's, with [`echo_tool_call_reasoning`].
pub fn request_body(
    dialect: &Dialect,
    request: &ChatRequest,
    stream: bool,
) -> Result<Value, ProviderError> {
    let mut body = openai_compat::build_body(dialect, request, stream)?;
    echo_tool_call_reasoning(&mut body, request);
    Ok(body)
}

/// Sends the reasoning of assistant turns that called tools back as their
/// `reasoning_content`.
///
/// In thinking mode DeepSeek continues a tool-calling turn from its own
/// reasoning and answers 400 ("Missing `reasoning_content` field in the
/// assistant message") when it is absent. Reasoning of turns without tool
/// calls is ignored by DeepSeek, so there the core's rule stands: it is
/// not sent.
pub fn echo_tool_call_reasoning(body: &mut Value, request: &ChatRequest) {
    let Some(wire) = body.get_mut("messages").and_then(Value::as_array_mut) else {
        return;
    };
    // Wire messages come in the order of the conversation; each assistant
    // turn with tool calls is found by the id of its first call.
    let mut next = 0;
    for message in &request.messages {
        if message.role != Role::Assistant {
            continue;
        }
        let Some(first_call) = message.content.iter().find_map(|part| match part {
            ContentPart::ToolUse(call) => Some(call.id.as_str()),
            _ => None,
        }) else {
            continue;
        };
        let found = wire[next..].iter().position(|m| {
            m["role"] == "assistant" && m["tool_calls"][0]["id"].as_str() == Some(first_call)
        });
        let Some(offset) = found else {
            continue;
        };
        next += offset + 1;
        let reasoning: String = message
            .content
            .iter()
            .filter_map(|part| match part {
                ContentPart::Thinking(thinking) => Some(thinking.text.as_str()),
                _ => None,
            })
            .collect();
        if !reasoning.is_empty() {
            wire[next - 1]["reasoning_content"] = Value::String(reasoning);
        }
    }
}

/// Refines the core's error mapping with what only DeepSeek's messages
/// tell: its 400s all carry the code `invalid_request_error`, whether the
/// prompt was too long or the model unknown.
pub fn refine_error(error: ProviderError) -> ProviderError {
    openai_compat::refine_error(error, |detail: &ErrorDetail| {
        let message = detail.message.to_ascii_lowercase();
        if message.contains("maximum context length") {
            Some(ProviderError::TokenLimitExceeded)
        } else if message.contains("model not exist") {
            Some(ProviderError::ModelNotSupported)
        } else {
            None
        }
    })
}
