//! Building Messages API request bodies from the contract's chat requests.
//!
//! Claude differs from the chat-completions shape in ways that matter
//! here: system prompts are a top-level field, roles are `user` and
//! `assistant` only and must alternate, tool results are `user` content
//! blocks, and `max_tokens` is required.

use crate::models;
use llmhost_provider_sdk::types::{
    ChatRequest, ContentPart, ImageSource, Message, ProviderError, ResponseFormat, Role,
    TokenInput, ToolChoice,
};
use llmhost_provider_sdk::{detail, vendor_params};
use serde_json::{Map, Value, json};

/// `max_tokens` for models the catalogue does not know.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;
/// The smallest thinking budget Anthropic accepts.
pub const MIN_THINKING_BUDGET: u32 = 1024;

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidRequest(detail(message))
}

/// An `f32` as the decimal the caller wrote (`0.7`, not `0.699999988`).
fn decimal(value: f32) -> Value {
    value
        .to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// Parses JSON text the caller supplied (schemas, tool arguments).
fn json_text(what: &str, text: &str) -> Result<Value, ProviderError> {
    serde_json::from_str(text).map_err(|err| invalid(format!("{what} is not valid JSON: {err}")))
}

/// The body of `POST /v1/messages` for `request`; `stream` asks for SSE.
/// The request's vendor parameters are merged in last, so they replace
/// members this function wrote (`top_k`, `service_tier` and
/// `thinking: {"type": "adaptive"}` have no contract field), except
/// `stream`.
pub fn build_body(request: &ChatRequest, stream: bool) -> Result<Value, ProviderError> {
    if request.model.trim().is_empty() {
        return Err(invalid("no model given"));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    insert_conversation(&mut body, &request.messages)?;
    let max_tokens = request
        .max_tokens
        .or_else(|| models::max_output_tokens(&request.model))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    body.insert("max_tokens".into(), json!(max_tokens));
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), decimal(t));
    }
    if let Some(p) = request.top_p {
        body.insert("top_p".into(), decimal(p));
    }
    if !request.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(request.stop));
    }
    if !request.tools.is_empty() {
        let mut tools = Vec::with_capacity(request.tools.len());
        for tool in &request.tools {
            let mut wire = Map::new();
            wire.insert("name".into(), json!(tool.name));
            if !tool.description.is_empty() {
                wire.insert("description".into(), json!(tool.description));
            }
            let schema = json_text(
                &format!("the input schema of tool `{}`", tool.name),
                &tool.input_schema,
            )?;
            wire.insert("input_schema".into(), schema);
            tools.push(Value::Object(wire));
        }
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &request.tool_choice {
        let value = match choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Named(name) => json!({"type": "tool", "name": name}),
        };
        if !request.tools.is_empty() {
            body.insert("tool_choice".into(), value);
        } else if matches!(choice, ToolChoice::Required | ToolChoice::Named(_)) {
            return Err(invalid(
                "the tool choice asks for a tool call, but the request defines no tools",
            ));
        }
    }
    match &request.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema(_)) => {
            return Err(invalid(
                "Claude has no JSON response format; ask for JSON in the prompt or use a tool",
            ));
        }
    }
    if let Some(budget) = request.reasoning.as_ref().and_then(|r| r.budget_tokens) {
        if budget < MIN_THINKING_BUDGET {
            return Err(invalid(format!(
                "Claude's thinking budget must be at least {MIN_THINKING_BUDGET} tokens, \
                 {budget} was asked for"
            )));
        }
        body.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    if let Some(user) = &request.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    let mut body = Value::Object(body);
    vendor_params::merge(&mut body, request)?;
    // `stream` decides how the answer is read, so it is the plugin's to
    // set whatever the vendor parameters say.
    if let Some(body) = body.as_object_mut() {
        if stream {
            body.insert("stream".into(), json!(true));
        } else {
            body.remove("stream");
        }
    }
    Ok(body)
}

/// The body of `POST /v1/messages/count_tokens`; plain text is counted as
/// one user message.
pub fn count_tokens_body(model: &str, input: &TokenInput) -> Result<Value, ProviderError> {
    if model.trim().is_empty() {
        return Err(invalid("no model given"));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    match input {
        TokenInput::Text(text) => {
            body.insert(
                "messages".into(),
                json!([{"role": "user", "content": [{"type": "text", "text": text}]}]),
            );
        }
        TokenInput::Messages(messages) => insert_conversation(&mut body, messages)?,
    }
    Ok(Value::Object(body))
}

/// Adds `system` (when there is one) and `messages` for a conversation.
fn insert_conversation(
    body: &mut Map<String, Value>,
    messages: &[Message],
) -> Result<(), ProviderError> {
    let mut system = Vec::new();
    let mut wire: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in messages {
        let role = match message.role {
            Role::System => {
                system.push(system_text(message)?);
                continue;
            }
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        let mut blocks = encode_parts(message)?;
        if blocks.is_empty() {
            continue;
        }
        if message.cache_breakpoint {
            mark_cache_breakpoint(&mut blocks);
        }
        match wire.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => wire.push((role, blocks)),
        }
    }
    match wire.first() {
        None => {
            return Err(invalid(
                "the conversation has no user or assistant messages",
            ));
        }
        Some(("assistant", _)) => {
            return Err(invalid(
                "Claude requires the conversation to start with a user message, \
                 but the first non-system message is the assistant's",
            ));
        }
        Some(_) => {}
    }
    if let Some(system) = encode_system(system) {
        body.insert("system".into(), system);
    }
    let messages = wire
        .into_iter()
        .map(|(role, mut blocks)| {
            if role == "user" {
                // Anthropic wants a user message's tool results before any
                // other content; merging a tool message into the user turn
                // around it must not break that.
                blocks.sort_by_key(|b| b["type"] != "tool_result");
            }
            json!({"role": role, "content": blocks})
        })
        .collect();
    body.insert("messages".into(), Value::Array(messages));
    Ok(())
}

/// A system message's text and whether it ends a cached prefix.
struct SystemText {
    text: String,
    cache_breakpoint: bool,
}

fn system_text(message: &Message) -> Result<SystemText, ProviderError> {
    let mut text = String::new();
    for part in &message.content {
        match part {
            ContentPart::Text(t) => text.push_str(t),
            _ => return Err(invalid("Claude's system prompt holds text only")),
        }
    }
    Ok(SystemText {
        text,
        cache_breakpoint: message.cache_breakpoint,
    })
}

/// The `system` field: one string when nothing is cached, else one text
/// block per system message with the cache breakpoints marked.
fn encode_system(system: Vec<SystemText>) -> Option<Value> {
    let system: Vec<SystemText> = system.into_iter().filter(|s| !s.text.is_empty()).collect();
    if system.is_empty() {
        return None;
    }
    if !system.iter().any(|s| s.cache_breakpoint) {
        let texts: Vec<&str> = system.iter().map(|s| s.text.as_str()).collect();
        return Some(Value::String(texts.join("\n\n")));
    }
    let blocks = system
        .into_iter()
        .map(|s| {
            let mut block = json!({"type": "text", "text": s.text});
            if s.cache_breakpoint {
                block["cache_control"] = json!({"type": "ephemeral"});
            }
            block
        })
        .collect();
    Some(Value::Array(blocks))
}

/// Puts `cache_control` on the message's last block that can carry it
/// (thinking blocks cannot).
fn mark_cache_breakpoint(blocks: &mut [Value]) {
    if let Some(block) = blocks
        .iter_mut()
        .rev()
        .find(|b| b["type"] != "thinking" && b["type"] != "redacted_thinking")
    {
        block["cache_control"] = json!({"type": "ephemeral"});
    }
}

/// The content blocks of one user, assistant or tool message.
fn encode_parts(message: &Message) -> Result<Vec<Value>, ProviderError> {
    let mut blocks = Vec::with_capacity(message.content.len());
    for part in &message.content {
        match part {
            ContentPart::Text(text) => {
                // Anthropic rejects empty text blocks.
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
            }
            ContentPart::Image(source) => {
                let source = match source {
                    ImageSource::Base64(image) => json!({
                        "type": "base64",
                        "media_type": image.media_type,
                        "data": image.data,
                    }),
                    ImageSource::Url(url) => json!({"type": "url", "url": url}),
                };
                blocks.push(json!({"type": "image", "source": source}));
            }
            ContentPart::ToolUse(call) => {
                if message.role != Role::Assistant {
                    return Err(invalid(format!(
                        "tool call `{}` appears in a {} message; only assistant messages \
                         carry tool calls",
                        call.id,
                        role_name(message.role)
                    )));
                }
                blocks.push(json!({
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": tool_input(&call.name, &call.arguments)?,
                }));
            }
            ContentPart::ToolResult(result) => {
                if message.role == Role::Assistant {
                    return Err(invalid(format!(
                        "the result of tool call `{}` appears in an assistant message; \
                         tool results belong in tool or user messages",
                        result.tool_call_id
                    )));
                }
                blocks.push(json!({
                    "type": "tool_result",
                    "tool_use_id": result.tool_call_id,
                    "content": result.content,
                    "is_error": result.is_error,
                }));
            }
            ContentPart::Thinking(thinking) => {
                // Claude only accepts thinking back with the signature it
                // was issued with; unsigned thinking is dropped.
                if let Some(signature) = thinking.signature.as_deref().filter(|s| !s.is_empty()) {
                    blocks.push(json!({
                        "type": "thinking",
                        "thinking": thinking.text,
                        "signature": signature,
                    }));
                }
            }
            ContentPart::RedactedThinking(data) => {
                blocks.push(json!({"type": "redacted_thinking", "data": data}));
            }
        }
    }
    Ok(blocks)
}

/// A tool call's arguments as the JSON object Claude's `input` must be; a
/// call without arguments (empty text) is the empty object.
fn tool_input(name: &str, arguments: &str) -> Result<Value, ProviderError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    let input = json_text(&format!("the arguments of tool call `{name}`"), arguments)?;
    if !input.is_object() {
        return Err(invalid(format!(
            "the arguments of tool call `{name}` must be a JSON object"
        )));
    }
    Ok(input)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
