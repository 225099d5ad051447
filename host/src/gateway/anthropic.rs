//! Anthropic Messages: `POST /v1/messages` and `/v1/messages/count_tokens`
//! bodies parsed into host requests, answers rendered as `message`
//! objects, streams as the named events the Anthropic SDKs accumulate, and
//! errors as `{"type": "error", ...}`.

use super::{
    ApiError, ErrorClass, Object, array, boolean, child, count, field, invalid, json_object, name,
    number_in, optional, parse_object, required, string, strings, vendor_params, wrong_type,
};
use crate::types::{
    Base64Image, ChatRequest, ChatResponse, Chunk, ContentPart, FinishReason, ImageSource, Message,
    ReasoningConfig, Role, Thinking, ToolCall, ToolCallDelta, ToolChoice, ToolDefinition,
    ToolResult, Usage,
};
use serde_json::{Value, json};

/// Fields of a Messages request.
const FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "system",
    "messages",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "stream",
    "service_tier",
    "vendor_params",
];

/// Fields of a count-tokens request.
const COUNT_FIELDS: &[&str] = &[
    "model",
    "system",
    "messages",
    "tools",
    "tool_choice",
    "thinking",
];

/// Stop reasons Anthropic defines, passed through when a vendor reports
/// one the contract has no variant for (`pause_turn`).
const STOP_REASONS: &[&str] = &[
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
];

/// A parsed Messages request.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMessages {
    /// The model as the client named it, for the server to resolve;
    /// `request.model` holds the same text.
    pub model: String,
    pub request: ChatRequest,
    pub stream: bool,
}

/// Parses a Messages request body.
///
/// The system prompt becomes leading system messages, one per text block;
/// a user message's `tool_result` blocks become one tool message each, in
/// order. `top_k`, `service_tier`, adaptive thinking and
/// `disable_parallel_tool_use` have no contract field: they go to
/// `vendor_params` in Anthropic's own shape, with the members of a client's
/// `vendor_params` object merged over them. Unknown fields are refused.
pub fn parse_messages(body: &[u8]) -> Result<ParsedMessages, ApiError> {
    let body = parse_object(body)?;
    refuse_unknown_fields(&body, FIELDS)?;
    let model = name(required(&body, "", "model")?, "model")?.to_owned();
    let max_tokens = count(required(&body, "", "max_tokens")?, "max_tokens", 1)?;
    let messages = conversation(&body)?;

    let mut passed = Object::new();
    let mut request = ChatRequest::new(model.clone(), messages);
    request.max_tokens = Some(max_tokens);
    request.temperature = optional(&body, "", "temperature", |v, p| number_in(v, p, 0.0, 1.0))?;
    request.top_p = optional(&body, "", "top_p", |v, p| number_in(v, p, 0.0, 1.0))?;
    if let Some(top_k) = optional(&body, "", "top_k", |v, p| count(v, p, 0))? {
        passed.insert("top_k".into(), json!(top_k));
    }
    request.stop = optional(&body, "", "stop_sequences", strings)?.unwrap_or_default();
    request.tools = optional(&body, "", "tools", tools)?.unwrap_or_default();
    if let Some(value) = field(&body, "tool_choice") {
        let (choice, native) = tool_choice(value, "tool_choice")?;
        request.tool_choice = Some(choice);
        if let Some(native) = native {
            passed.insert("tool_choice".into(), native);
        }
    }
    if let Some(value) = field(&body, "thinking") {
        match thinking(value, "thinking")? {
            ThinkingMode::Budget(budget) => {
                request.reasoning = Some(ReasoningConfig {
                    budget_tokens: Some(budget),
                    effort: None,
                });
            }
            ThinkingMode::Disabled => {}
            ThinkingMode::Native => {
                passed.insert("thinking".into(), value.clone());
            }
        }
    }
    request.user = optional(&body, "", "metadata", user_id)?.flatten();
    if let Some(tier) = optional(&body, "", "service_tier", string)? {
        passed.insert("service_tier".into(), json!(tier));
    }
    request.vendor_params = vendor_params(passed, &body)?;
    let stream = optional(&body, "", "stream", boolean)?.unwrap_or(false);
    Ok(ParsedMessages {
        model,
        request,
        stream,
    })
}

/// Parses a count-tokens body into the model and the conversation, the
/// system prompt first; tools, tool choice and thinking are accepted and
/// not counted.
pub fn parse_count_tokens(body: &[u8]) -> Result<(String, Vec<Message>), ApiError> {
    let body = parse_object(body)?;
    refuse_unknown_fields(&body, COUNT_FIELDS)?;
    let model = name(required(&body, "", "model")?, "model")?.to_owned();
    Ok((model, conversation(&body)?))
}

fn refuse_unknown_fields(body: &Object, known: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|key| !known.contains(&key.as_str())) {
        // Anthropic's own wording for an unknown field.
        Some(key) => Err(invalid(
            format!("{key}: Extra inputs are not permitted"),
            key,
        )),
        None => Ok(()),
    }
}

/// The system messages, then the conversation.
fn conversation(body: &Object) -> Result<Vec<Message>, ApiError> {
    let mut messages = optional(body, "", "system", system)?.unwrap_or_default();
    let list = array(required(body, "", "messages")?, "messages")?;
    if list.is_empty() {
        return Err(invalid("`messages` must not be empty", "messages"));
    }
    for (i, item) in list.iter().enumerate() {
        push_message(&mut messages, item, &format!("messages[{i}]"))?;
    }
    Ok(messages)
}

/// The system prompt: one system message per text block, so a
/// `cache_control` marker stays on the block that carried it.
fn system(value: &Value, path: &str) -> Result<Vec<Message>, ApiError> {
    match value {
        Value::String(text) => Ok(vec![Message::system(text.as_str())]),
        Value::Array(blocks) => blocks
            .iter()
            .enumerate()
            .map(|(i, block)| {
                let path = format!("{path}[{i}]");
                let block = super::object(block, &path)?;
                let type_path = child(&path, "type");
                match string(required(block, &path, "type")?, &type_path)? {
                    "text" => Ok(Message {
                        cache_breakpoint: field(block, "cache_control").is_some(),
                        ..Message::system(string(
                            required(block, &path, "text")?,
                            &child(&path, "text"),
                        )?)
                    }),
                    other => Err(invalid(
                        format!("system blocks must be of type `text`, not `{other}`"),
                        type_path,
                    )),
                }
            })
            .collect(),
        other => Err(wrong_type(
            path,
            "a string or an array of text blocks",
            other,
        )),
    }
}

/// Appends one Anthropic message: a user message's tool results become
/// tool messages, the blocks between them user messages, in order.
fn push_message(out: &mut Vec<Message>, value: &Value, path: &str) -> Result<(), ApiError> {
    let object = super::object(value, path)?;
    let role_path = child(path, "role");
    let role = match string(required(object, path, "role")?, &role_path)? {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => {
            return Err(invalid(
                format!("`{role_path}` must be `user` or `assistant`, not `{other}`"),
                role_path,
            ));
        }
    };
    let content_path = child(path, "content");
    let blocks = match required(object, path, "content")? {
        Value::String(text) => {
            out.push(Message::text(role, text.as_str()));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        other => {
            return Err(wrong_type(
                &content_path,
                "a string or an array of blocks",
                other,
            ));
        }
    };
    let mut run = Message {
        content: Vec::new(),
        ..Message::text(role, "")
    };
    for (i, item) in blocks.iter().enumerate() {
        let (part, cached) = block(item, &format!("{content_path}[{i}]"), role)?;
        if let ContentPart::ToolResult(_) = part {
            if !run.content.is_empty() {
                out.push(run.clone());
                run.content.clear();
                run.cache_breakpoint = false;
            }
            out.push(Message {
                role: Role::Tool,
                content: vec![part],
                name: None,
                cache_breakpoint: cached,
            });
        } else {
            run.content.push(part);
            run.cache_breakpoint |= cached;
        }
    }
    // An empty block list still makes a message, as the client sent one.
    if !run.content.is_empty() || blocks.is_empty() {
        out.push(run);
    }
    Ok(())
}

/// One content block, and whether it carries a `cache_control` marker.
fn block(value: &Value, path: &str, role: Role) -> Result<(ContentPart, bool), ApiError> {
    let object = super::object(value, path)?;
    let cached = field(object, "cache_control").is_some();
    let type_path = child(path, "type");
    let kind = string(required(object, path, "type")?, &type_path)?;
    let text_of = |key: &str| -> Result<String, ApiError> {
        Ok(string(required(object, path, key)?, &child(path, key))?.to_owned())
    };
    let part = match (kind, role) {
        ("text", _) => ContentPart::Text(text_of("text")?),
        ("image", Role::User) => image(object, path)?,
        ("tool_result", Role::User) => tool_result(object, path)?,
        ("tool_use", Role::Assistant) => ContentPart::ToolUse(ToolCall {
            id: text_of("id")?,
            name: name(required(object, path, "name")?, &child(path, "name"))?.to_owned(),
            arguments: field(object, "input").map_or_else(|| "{}".to_owned(), Value::to_string),
        }),
        ("thinking", Role::Assistant) => ContentPart::Thinking(Thinking {
            text: text_of("thinking")?,
            signature: optional(object, path, "signature", string)?
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        }),
        ("redacted_thinking", Role::Assistant) => ContentPart::RedactedThinking(text_of("data")?),
        (kind @ ("image" | "tool_result"), Role::Assistant) => {
            return Err(invalid(
                format!("`{kind}` blocks belong in user messages"),
                type_path,
            ));
        }
        (kind @ ("tool_use" | "thinking" | "redacted_thinking"), _) => {
            return Err(invalid(
                format!("`{kind}` blocks belong in assistant messages"),
                type_path,
            ));
        }
        (kind, _) => {
            return Err(invalid(
                format!("content blocks of type `{kind}` are not supported"),
                type_path,
            ));
        }
    };
    Ok((part, cached))
}

fn image(object: &Object, path: &str) -> Result<ContentPart, ApiError> {
    let source_path = child(path, "source");
    let source = super::object(required(object, path, "source")?, &source_path)?;
    let text_of = |key: &str| -> Result<String, ApiError> {
        Ok(string(
            required(source, &source_path, key)?,
            &child(&source_path, key),
        )?
        .to_owned())
    };
    let type_path = child(&source_path, "type");
    let image = match string(required(source, &source_path, "type")?, &type_path)? {
        "base64" => ImageSource::Base64(Base64Image {
            media_type: text_of("media_type")?,
            data: text_of("data")?,
        }),
        "url" => ImageSource::Url(text_of("url")?),
        other => {
            return Err(invalid(
                format!("image sources of type `{other}` are not supported"),
                type_path,
            ));
        }
    };
    Ok(ContentPart::Image(image))
}

/// A `tool_result` block; its text blocks are joined by newlines.
fn tool_result(object: &Object, path: &str) -> Result<ContentPart, ApiError> {
    let id_path = child(path, "tool_use_id");
    let tool_call_id = string(required(object, path, "tool_use_id")?, &id_path)?.to_owned();
    let content_path = child(path, "content");
    let content = match field(object, "content") {
        None => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, item) in blocks.iter().enumerate() {
                let path = format!("{content_path}[{i}]");
                let item = super::object(item, &path)?;
                let type_path = child(&path, "type");
                match string(required(item, &path, "type")?, &type_path)? {
                    "text" => texts.push(string(
                        required(item, &path, "text")?,
                        &child(&path, "text"),
                    )?),
                    other => {
                        return Err(invalid(
                            format!("tool results may hold text only, not `{other}` blocks"),
                            type_path,
                        ));
                    }
                }
            }
            texts.join("\n")
        }
        Some(other) => {
            return Err(wrong_type(
                &content_path,
                "a string or an array of text blocks",
                other,
            ));
        }
    };
    Ok(ContentPart::ToolResult(ToolResult {
        tool_call_id,
        content,
        is_error: optional(object, path, "is_error", boolean)?.unwrap_or(false),
    }))
}

fn tools(value: &Value, path: &str) -> Result<Vec<ToolDefinition>, ApiError> {
    array(value, path)?
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let path = format!("{path}[{i}]");
            let tool = super::object(tool, &path)?;
            match optional(tool, &path, "type", string)? {
                None | Some("custom") => {}
                Some(other) => {
                    return Err(invalid(
                        format!("server tools such as `{other}` are not supported"),
                        child(&path, "type"),
                    ));
                }
            }
            let schema_path = child(&path, "input_schema");
            let schema = super::object(required(tool, &path, "input_schema")?, &schema_path)?;
            Ok(ToolDefinition {
                name: name(required(tool, &path, "name")?, &child(&path, "name"))?.to_owned(),
                description: optional(tool, &path, "description", string)?
                    .unwrap_or_default()
                    .to_owned(),
                input_schema: Value::Object(schema.clone()).to_string(),
            })
        })
        .collect()
}

/// The tool choice, and the client's own object when it asks for
/// something the contract cannot say (`disable_parallel_tool_use`).
fn tool_choice(value: &Value, path: &str) -> Result<(ToolChoice, Option<Value>), ApiError> {
    let object = super::object(value, path)?;
    let type_path = child(path, "type");
    let choice = match string(required(object, path, "type")?, &type_path)? {
        "auto" => ToolChoice::Auto,
        "any" => ToolChoice::Required,
        "none" => ToolChoice::None,
        "tool" => ToolChoice::Named(
            name(required(object, path, "name")?, &child(path, "name"))?.to_owned(),
        ),
        other => {
            return Err(invalid(
                format!("`{type_path}` must be `auto`, `any`, `tool` or `none`, not `{other}`"),
                type_path,
            ));
        }
    };
    let serial_only = optional(object, path, "disable_parallel_tool_use", boolean)?;
    Ok((choice, serial_only.filter(|&b| b).map(|_| value.clone())))
}

/// What a request's `thinking` asks for.
enum ThinkingMode {
    Budget(u32),
    Disabled,
    /// A mode the contract has no field for (`adaptive`), sent as given.
    Native,
}

fn thinking(value: &Value, path: &str) -> Result<ThinkingMode, ApiError> {
    let object = super::object(value, path)?;
    let type_path = child(path, "type");
    match string(required(object, path, "type")?, &type_path)? {
        "enabled" => Ok(ThinkingMode::Budget(count(
            required(object, path, "budget_tokens")?,
            &child(path, "budget_tokens"),
            1,
        )?)),
        "disabled" => Ok(ThinkingMode::Disabled),
        "adaptive" => Ok(ThinkingMode::Native),
        other => Err(invalid(
            format!("`{type_path}` must be `enabled`, `disabled` or `adaptive`, not `{other}`"),
            type_path,
        )),
    }
}

fn user_id(value: &Value, path: &str) -> Result<Option<String>, ApiError> {
    let metadata = super::object(value, path)?;
    Ok(optional(metadata, path, "user_id", string)?.map(str::to_owned))
}

/// The id as Anthropic spells message ids: `msg_…`.
fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{id}")
    }
}

fn stop_reason(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter | FinishReason::Refusal => "refusal",
        FinishReason::Other(other) if STOP_REASONS.contains(&other.as_str()) => other,
        FinishReason::Other(_) => "end_turn",
    }
}

/// Input tokens as Anthropic counts them: without the cached ones.
fn uncached_input(usage: &Usage) -> u32 {
    usage
        .input_tokens
        .saturating_sub(usage.cache_read_tokens)
        .saturating_sub(usage.cache_write_tokens)
}

fn tool_use_block(call: &ToolCall) -> Value {
    json!({
        "type": "tool_use",
        "id": call.id,
        "name": call.name,
        "input": json_object(&call.arguments).unwrap_or_else(|| json!({})),
    })
}

fn content_blocks(response: &ChatResponse) -> Vec<Value> {
    if response.parts.is_empty() {
        let text = (!response.content.is_empty())
            .then(|| json!({"type": "text", "text": response.content}));
        return text
            .into_iter()
            .chain(response.tool_calls.iter().map(tool_use_block))
            .collect();
    }
    response
        .parts
        .iter()
        .filter_map(|part| match part {
            ContentPart::Text(text) => Some(json!({"type": "text", "text": text})),
            ContentPart::ToolUse(call) => Some(tool_use_block(call)),
            ContentPart::Thinking(thinking) => Some(json!({
                "type": "thinking",
                "thinking": thinking.text,
                "signature": thinking.signature.as_deref().unwrap_or_default(),
            })),
            ContentPart::RedactedThinking(data) => {
                Some(json!({"type": "redacted_thinking", "data": data}))
            }
            ContentPart::Image(_) | ContentPart::ToolResult(_) => None,
        })
        .collect()
}

/// A `message` object for a complete answer; `model` is the name to show
/// the client.
pub fn render_message(response: &ChatResponse, model: &str) -> Value {
    let usage = &response.usage;
    json!({
        "id": message_id(&response.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content_blocks(response),
        "stop_reason": stop_reason(&response.finish_reason),
        "stop_sequence": null,
        "usage": {
            "input_tokens": uncached_input(usage),
            "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
            "cache_read_input_tokens": usage.cache_read_tokens,
        },
    })
}

/// One server-sent event: its name and its JSON data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: &'static str,
    pub data: String,
}

impl SseEvent {
    fn new(event: &'static str, data: Value) -> Self {
        Self {
            event,
            data: data.to_string(),
        }
    }
}

/// The content block being streamed.
enum Open {
    Text,
    /// `signed` once its signature was sent: more reasoning starts a new
    /// block.
    Thinking {
        signed: bool,
    },
    Tool {
        call: u32,
        arguments: String,
    },
}

/// A tool call held back while another one streams: a block is never
/// reopened, so calls whose fragments interleave are sent whole, in turn.
struct HeldCall {
    call: u32,
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// Turns a host stream into Messages stream events.
///
/// Tool calls stream as they come while they arrive one after another; a
/// call that starts before the streaming one's arguments are complete JSON
/// is held and sent whole when the run of tool calls ends.
pub struct EventEncoder {
    id: String,
    model: String,
    started: bool,
    done: bool,
    /// Index of the next content block.
    next_block: u32,
    open: Option<Open>,
    held: Vec<HeldCall>,
    /// Tool calls whose block was closed.
    closed_calls: Vec<u32>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl EventEncoder {
    /// An encoder for one stream; `id` gets the `msg_` prefix if it lacks
    /// it.
    pub fn new(id: &str, model: &str) -> Self {
        Self {
            id: message_id(id),
            model: model.to_owned(),
            started: false,
            done: false,
            next_block: 0,
            open: None,
            held: Vec::new(),
            closed_calls: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    /// The events for one host chunk. `message_start` carries zero usage:
    /// the real counts are known only at the end and go in
    /// `message_delta`, from which the SDKs take them.
    pub fn push(&mut self, chunk: &Chunk) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.start(&mut out);
        match chunk {
            Chunk::Start(_) => {}
            Chunk::Text(text) => self.text(text, &mut out),
            Chunk::Reasoning(text) => self.reasoning(text, &mut out),
            Chunk::ReasoningSignature(signature) => self.signature(signature, &mut out),
            Chunk::RedactedReasoning(data) => {
                self.end_blocks(&mut out);
                let index =
                    self.open_block(json!({"type": "redacted_thinking", "data": data}), &mut out);
                out.push(block_stop(index));
            }
            Chunk::ToolCall(delta) => self.tool_call(delta, &mut out),
            Chunk::Usage(usage) => self.usage = Some(*usage),
            Chunk::Finish(reason) => self.finish = Some(reason.clone()),
        }
        out
    }

    /// The end of the stream: the open block closed, held tool calls sent,
    /// then `message_delta` with the stop reason and the usage, and
    /// `message_stop`. Nothing on a second call.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.start(&mut out);
        self.end_blocks(&mut out);
        self.done = true;
        let reason = match &self.finish {
            Some(reason) => stop_reason(reason).to_owned(),
            None if self.closed_calls.is_empty() => "end_turn".to_owned(),
            None => "tool_use".to_owned(),
        };
        let usage = self.usage.unwrap_or_default();
        out.push(SseEvent::new(
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": null},
                "usage": {
                    "output_tokens": usage.output_tokens,
                    "input_tokens": uncached_input(&usage),
                    "cache_creation_input_tokens": usage.cache_write_tokens,
                    "cache_read_input_tokens": usage.cache_read_tokens,
                },
            }),
        ));
        out.push(SseEvent::new(
            "message_stop",
            json!({"type": "message_stop"}),
        ));
        out
    }

    fn start(&mut self, out: &mut Vec<SseEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(SseEvent::new(
            "message_start",
            json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            }),
        ));
    }

    fn text(&mut self, text: &str, out: &mut Vec<SseEvent>) {
        if text.is_empty() {
            return;
        }
        if !matches!(self.open, Some(Open::Text)) {
            self.end_blocks(out);
            self.open_block(json!({"type": "text", "text": ""}), out);
            self.open = Some(Open::Text);
        }
        self.delta(json!({"type": "text_delta", "text": text}), out);
    }

    fn reasoning(&mut self, text: &str, out: &mut Vec<SseEvent>) {
        if text.is_empty() {
            return;
        }
        if !matches!(self.open, Some(Open::Thinking { signed: false })) {
            self.open_thinking(out);
        }
        self.delta(json!({"type": "thinking_delta", "thinking": text}), out);
    }

    fn signature(&mut self, signature: &str, out: &mut Vec<SseEvent>) {
        if !matches!(self.open, Some(Open::Thinking { signed: false })) {
            self.open_thinking(out);
        }
        self.delta(
            json!({"type": "signature_delta", "signature": signature}),
            out,
        );
        self.open = Some(Open::Thinking { signed: true });
    }

    fn open_thinking(&mut self, out: &mut Vec<SseEvent>) {
        self.end_blocks(out);
        self.open_block(
            json!({"type": "thinking", "thinking": "", "signature": ""}),
            out,
        );
        self.open = Some(Open::Thinking { signed: false });
    }

    fn tool_call(&mut self, delta: &ToolCallDelta, out: &mut Vec<SseEvent>) {
        if self.closed_calls.contains(&delta.index) {
            // Its block is closed and cannot take more arguments.
            return;
        }
        if let Some(Open::Tool { call, arguments }) = &mut self.open
            && *call == delta.index
        {
            arguments.push_str(&delta.arguments);
            self.arguments(&delta.arguments, out);
            return;
        }
        if let Some(held) = self.held.iter_mut().find(|h| h.call == delta.index) {
            held.id = held.id.take().or_else(|| delta.id.clone());
            held.name = held.name.take().or_else(|| delta.name.clone());
            held.arguments.push_str(&delta.arguments);
            return;
        }
        let streaming_unfinished = match &self.open {
            Some(Open::Tool { arguments, .. }) => {
                !self.held.is_empty() || json_object(arguments).is_none()
            }
            _ => false,
        };
        if streaming_unfinished {
            self.held.push(HeldCall {
                call: delta.index,
                id: delta.id.clone(),
                name: delta.name.clone(),
                arguments: delta.arguments.clone(),
            });
            return;
        }
        self.end_blocks(out);
        let block = self.tool_block(delta.index, delta.id.as_deref(), delta.name.as_deref());
        self.open_block(block, out);
        self.open = Some(Open::Tool {
            call: delta.index,
            arguments: delta.arguments.clone(),
        });
        self.arguments(&delta.arguments, out);
    }

    fn tool_block(&self, call: u32, id: Option<&str>, name: Option<&str>) -> Value {
        // A vendor that sends no id still needs one the client can answer.
        let id = id.map_or_else(
            || format!("toolu_{}_{call}", self.id.trim_start_matches("msg_")),
            str::to_owned,
        );
        json!({"type": "tool_use", "id": id, "name": name.unwrap_or_default(), "input": {}})
    }

    fn arguments(&self, arguments: &str, out: &mut Vec<SseEvent>) {
        if !arguments.is_empty() {
            self.delta(
                json!({"type": "input_json_delta", "partial_json": arguments}),
                out,
            );
        }
    }

    /// Closes the open block and sends the held tool calls.
    fn end_blocks(&mut self, out: &mut Vec<SseEvent>) {
        if let Some(open) = self.open.take() {
            if let Open::Tool { call, .. } = open {
                self.closed_calls.push(call);
            }
            out.push(block_stop(self.next_block - 1));
        }
        for held in std::mem::take(&mut self.held) {
            let block = self.tool_block(held.call, held.id.as_deref(), held.name.as_deref());
            let index = self.open_block(block, out);
            self.arguments(&held.arguments, out);
            out.push(block_stop(index));
            self.closed_calls.push(held.call);
        }
    }

    /// Sends `content_block_start` for a new block; its index.
    fn open_block(&mut self, block: Value, out: &mut Vec<SseEvent>) -> u32 {
        let index = self.next_block;
        self.next_block += 1;
        out.push(SseEvent::new(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    fn delta(&self, delta: Value, out: &mut Vec<SseEvent>) {
        out.push(SseEvent::new(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": self.next_block - 1, "delta": delta}),
        ));
    }
}

fn block_stop(index: u32) -> SseEvent {
    SseEvent::new(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    )
}

/// A keep-alive event.
pub fn ping() -> SseEvent {
    SseEvent::new("ping", json!({"type": "ping"}))
}

/// The event reporting a failure after the stream started.
pub fn error_event(err: &ApiError) -> SseEvent {
    SseEvent::new(
        "error",
        json!({"type": "error", "error": {"type": error_type(err), "message": err.message}}),
    )
}

/// Anthropic's error `type` for an error.
fn error_type(err: &ApiError) -> &'static str {
    match err.class {
        ErrorClass::InvalidRequest => "invalid_request_error",
        ErrorClass::Authentication => "authentication_error",
        ErrorClass::Permission => "permission_error",
        ErrorClass::NotFound => "not_found_error",
        ErrorClass::RequestTooLarge => "request_too_large",
        ErrorClass::RateLimit => "rate_limit_error",
        ErrorClass::Api => "api_error",
        ErrorClass::Overloaded => "overloaded_error",
        ErrorClass::Timeout => "timeout_error",
    }
}

/// The body of an error response, answered with `err.status`.
pub fn error_body(err: &ApiError, request_id: Option<&str>) -> Value {
    json!({
        "type": "error",
        "error": {"type": error_type(err), "message": err.message},
        "request_id": request_id,
    })
}
