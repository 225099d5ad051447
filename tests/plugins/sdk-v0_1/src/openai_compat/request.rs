//! Building the JSON body of a chat-completions request.

use super::Dialect;
use crate::types::{
    ChatRequest, ContentPart, ImageSource, Message, ProviderError, ReasoningEffort, ResponseFormat,
    Role, ToolChoice,
};
use serde_json::{Map, Value, json};

fn invalid(message: String) -> ProviderError {
    ProviderError::InvalidRequest(crate::detail(message))
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

/// Parses JSON text the caller supplied (tool schemas).
fn json_text(what: &str, text: &str) -> Result<Value, ProviderError> {
    serde_json::from_str(text).map_err(|err| invalid(format!("{what} is not valid JSON: {err}")))
}

/// The request body for `request`; `stream` asks for SSE.
pub fn build_body(
    dialect: &Dialect,
    request: &ChatRequest,
    stream: bool,
) -> Result<Value, ProviderError> {
    if request.model.trim().is_empty() {
        return Err(invalid("no model given".into()));
    }
    if request.messages.is_empty() {
        return Err(invalid("the conversation has no messages".into()));
    }
    let mut body = Map::new();
    body.insert("model".into(), Value::String(request.model.clone()));
    let mut messages = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        encode_message(message, &mut messages)?;
    }
    body.insert("messages".into(), Value::Array(messages));
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), decimal(t));
    }
    if let Some(p) = request.top_p {
        body.insert("top_p".into(), decimal(p));
    }
    if let Some(n) = request.max_tokens {
        body.insert(dialect.max_tokens_field.into(), json!(n));
    }
    if !request.stop.is_empty() {
        body.insert("stop".into(), json!(request.stop));
    }
    if !request.tools.is_empty() {
        let mut tools = Vec::with_capacity(request.tools.len());
        for tool in &request.tools {
            let schema = json_text(
                &format!("the input schema of tool `{}`", tool.name),
                &tool.input_schema,
            )?;
            tools.push(json!({
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": schema,
                }
            }));
        }
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &request.tool_choice {
        let value = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Required => json!("required"),
            ToolChoice::None => json!("none"),
            ToolChoice::Named(name) => json!({"type": "function", "function": {"name": name}}),
        };
        body.insert("tool_choice".into(), value);
    }
    if let Some(format) = &request.response_format {
        let value = match format {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema(schema) => json!({
                "type": "json_schema",
                "json_schema": {
                    "name": schema.name,
                    "schema": json_text("the response JSON schema", &schema.schema)?,
                    "strict": schema.strict,
                }
            }),
        };
        body.insert("response_format".into(), value);
    }
    if let Some(effort) = request.reasoning.as_ref().and_then(|r| r.effort)
        && dialect.reasoning_effort
    {
        let effort = match effort {
            ReasoningEffort::Minimal => "minimal",
            ReasoningEffort::Low => "low",
            ReasoningEffort::Medium => "medium",
            ReasoningEffort::High => "high",
        };
        body.insert("reasoning_effort".into(), json!(effort));
    }
    if let Some(user) = &request.user {
        body.insert("user".into(), json!(user));
    }
    if stream {
        body.insert("stream".into(), json!(true));
        if dialect.stream_usage {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    Ok(Value::Object(body))
}

fn image_url(source: &ImageSource) -> String {
    match source {
        ImageSource::Url(url) => url.clone(),
        ImageSource::Base64(image) => format!("data:{};base64,{}", image.media_type, image.data),
    }
}

/// Appends the wire messages for one abstract message: tool results become
/// separate `tool` messages, tool uses become `tool_calls`.
fn encode_message(message: &Message, out: &mut Vec<Value>) -> Result<(), ProviderError> {
    let role = match message.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut texts = Vec::new();
    let mut parts = Vec::new();
    let mut has_image = false;
    let mut tool_calls = Vec::new();
    for part in &message.content {
        match part {
            ContentPart::Text(text) => {
                texts.push(text.as_str());
                parts.push(json!({"type": "text", "text": text}));
            }
            ContentPart::Image(source) => {
                if message.role != Role::User {
                    return Err(invalid(format!(
                        "images are only accepted in user messages, not {role}"
                    )));
                }
                has_image = true;
                parts.push(json!({"type": "image_url", "image_url": {"url": image_url(source)}}));
            }
            ContentPart::ToolUse(call) => tool_calls.push(json!({
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            })),
            ContentPart::ToolResult(result) => out.push(json!({
                "role": "tool",
                "tool_call_id": result.tool_call_id,
                "content": result.content,
            })),
            // Earlier reasoning is not sent back: the vendors that return it
            // reject or ignore it on input.
            ContentPart::Thinking(_) | ContentPart::RedactedThinking(_) => {}
        }
    }
    if message.role == Role::Tool {
        if !texts.is_empty() || has_image {
            return Err(invalid(
                "a tool message carries tool-result parts only".into(),
            ));
        }
        return Ok(());
    }
    if !tool_calls.is_empty() && message.role != Role::Assistant {
        return Err(invalid(format!(
            "tool calls are only accepted in assistant messages, not {role}"
        )));
    }
    if texts.is_empty() && tool_calls.is_empty() && !has_image {
        // A message made only of tool results was fully emitted above.
        if message
            .content
            .iter()
            .any(|p| matches!(p, ContentPart::ToolResult(_)))
        {
            return Ok(());
        }
    }
    let mut wire = Map::new();
    wire.insert("role".into(), json!(role));
    let content = if has_image {
        Value::Array(parts)
    } else if texts.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(texts.concat())
    };
    wire.insert("content".into(), content);
    if let Some(name) = &message.name {
        wire.insert("name".into(), json!(name));
    }
    if !tool_calls.is_empty() {
        wire.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    out.push(Value::Object(wire));
    Ok(())
}
