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
            Chunk::Finish(reason) => {
                self.finish.get_or_insert_with(|| reason.clone());
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::StreamStart;
    use proptest::prelude::*;
    use serde_json::Map;

    fn parse(body: Value) -> Result<ParsedMessages, ApiError> {
        parse_messages(body.to_string().as_bytes())
    }

    fn parsed(body: Value) -> ParsedMessages {
        parse(body).expect("the body parses")
    }

    fn hello(extra: Value) -> Value {
        let mut body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Hello"}],
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    }

    fn conversation_of(messages: Value) -> Vec<Message> {
        parsed(json!({"model": "m", "max_tokens": 1, "messages": messages}))
            .request
            .messages
    }

    fn vendor(parsed: &ParsedMessages) -> Value {
        parsed
            .request
            .vendor_params
            .as_deref()
            .map_or(Value::Null, |text| {
                serde_json::from_str(text).expect("JSON")
            })
    }

    fn result(id: &str, content: &str, is_error: bool) -> Message {
        Message {
            role: Role::Tool,
            content: vec![ContentPart::ToolResult(ToolResult {
                tool_call_id: id.into(),
                content: content.into(),
                is_error,
            })],
            name: None,
            cache_breakpoint: false,
        }
    }

    #[test]
    fn a_minimal_request_keeps_the_model_and_the_max_tokens() {
        let p = parsed(hello(json!({})));
        assert_eq!(p.model, "claude-sonnet-4-5");
        let mut expected = ChatRequest::new("claude-sonnet-4-5", vec![Message::user("Hello")]);
        expected.max_tokens = Some(1024);
        assert_eq!(p.request, expected);
        assert!(!p.stream);
    }

    #[test]
    fn every_request_field_reaches_the_host_request() {
        let p = parsed(hello(json!({
            "system": "Be brief.",
            "temperature": 0.5,
            "top_p": 0.8,
            "stop_sequences": ["\n\nHuman:"],
            "tools": [{
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }, {"type": "custom", "name": "now", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "metadata": {"user_id": "user-42"},
            "stream": true,
        })));
        let r = &p.request;
        assert_eq!(
            r.messages,
            vec![Message::system("Be brief."), Message::user("Hello")]
        );
        assert_eq!(r.temperature, Some(0.5));
        assert_eq!(r.top_p, Some(0.8));
        assert_eq!(r.stop, vec!["\n\nHuman:"]);
        assert_eq!(
            r.tools,
            vec![
                ToolDefinition {
                    name: "get_weather".into(),
                    description: "Weather for a city".into(),
                    input_schema: r#"{"properties":{"city":{"type":"string"}},"type":"object"}"#
                        .into(),
                },
                ToolDefinition {
                    name: "now".into(),
                    description: String::new(),
                    input_schema: r#"{"type":"object"}"#.into(),
                },
            ]
        );
        assert_eq!(r.tool_choice, Some(ToolChoice::Named("get_weather".into())));
        assert_eq!(
            r.reasoning,
            Some(ReasoningConfig {
                budget_tokens: Some(2048),
                effort: None
            })
        );
        assert_eq!(r.user.as_deref(), Some("user-42"));
        assert_eq!(r.vendor_params, None);
        assert!(p.stream);
    }

    #[test]
    fn tool_choices_and_thinking_modes_map_onto_the_contract() {
        for (choice, expected) in [
            (json!({"type": "auto"}), ToolChoice::Auto),
            (json!({"type": "any"}), ToolChoice::Required),
            (json!({"type": "none"}), ToolChoice::None),
            (
                json!({"type": "auto", "disable_parallel_tool_use": false}),
                ToolChoice::Auto,
            ),
        ] {
            let p = parsed(hello(json!({"tool_choice": choice})));
            assert_eq!(p.request.tool_choice, Some(expected));
            assert_eq!(p.request.vendor_params, None);
        }
        let disabled = parsed(hello(json!({"thinking": {"type": "disabled"}})));
        assert_eq!(disabled.request.reasoning, None);
        assert_eq!(disabled.request.vendor_params, None);
    }

    #[test]
    fn fields_without_a_contract_field_go_to_vendor_params_in_anthropics_shape() {
        let p = parsed(hello(json!({
            "top_k": 40,
            "service_tier": "standard_only",
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "thinking": {"type": "adaptive"},
        })));
        assert_eq!(p.request.tool_choice, Some(ToolChoice::Required));
        assert_eq!(p.request.reasoning, None);
        assert_eq!(
            vendor(&p),
            json!({
                "top_k": 40,
                "service_tier": "standard_only",
                "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
                "thinking": {"type": "adaptive"},
            })
        );
        let merged = parsed(hello(
            json!({"top_k": 40, "vendor_params": {"top_k": 5, "x": 1}}),
        ));
        assert_eq!(vendor(&merged), json!({"top_k": 5, "x": 1}));
    }

    #[test]
    fn system_blocks_become_system_messages_keeping_their_cache_markers() {
        let p = parsed(hello(json!({"system": [
            {"type": "text", "text": "You are a helpful assistant."},
            {"type": "text", "text": "Long reference text", "cache_control": {"type": "ephemeral"}},
        ]})));
        let m = &p.request.messages;
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], Message::system("You are a helpful assistant."));
        assert_eq!(
            m[1],
            Message {
                cache_breakpoint: true,
                ..Message::system("Long reference text")
            }
        );
        assert_eq!(m[2], Message::user("Hello"));
    }

    #[test]
    fn every_block_type_becomes_host_content() {
        let m = conversation_of(json!([
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Two images.", "signature": "EqQBCgIYAhIM"},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_01", "name": "zoom", "input": {"level": 2}},
            ]},
        ]));
        assert_eq!(
            m[0].content,
            vec![
                ContentPart::Text("What is in these?".into()),
                ContentPart::Image(ImageSource::Base64(Base64Image {
                    media_type: "image/jpeg".into(),
                    data: "/9j/4AAQ".into(),
                })),
                ContentPart::Image(ImageSource::Url("https://example.com/a.png".into())),
            ]
        );
        assert_eq!(m[1].role, Role::Assistant);
        assert_eq!(
            m[1].content,
            vec![
                ContentPart::Thinking(Thinking {
                    text: "Two images.".into(),
                    signature: Some("EqQBCgIYAhIM".into()),
                }),
                ContentPart::RedactedThinking("EmwKAhgBEgy3va3pzix".into()),
                ContentPart::Text("Let me look.".into()),
                ContentPart::ToolUse(ToolCall {
                    id: "toolu_01".into(),
                    name: "zoom".into(),
                    arguments: r#"{"level":2}"#.into(),
                }),
            ]
        );
    }

    #[test]
    fn tool_results_become_tool_messages_in_order() {
        let m = conversation_of(json!([
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18°C"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "is_error": true,
                 "content": [{"type": "text", "text": "timeout"}, {"type": "text", "text": "retry later"}]},
                {"type": "text", "text": "Now summarise."},
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "Before"},
                {"type": "tool_result", "tool_use_id": "toolu_c", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "After", "cache_control": {"type": "ephemeral"}},
            ]},
        ]));
        assert_eq!(
            m,
            vec![
                result("toolu_a", "18°C", false),
                result("toolu_b", "timeout\nretry later", true),
                Message::user("Now summarise."),
                Message::user("Before"),
                Message {
                    cache_breakpoint: true,
                    ..result("toolu_c", "", false)
                },
                Message {
                    cache_breakpoint: true,
                    ..Message::user("After")
                },
            ]
        );
    }

    #[test]
    fn a_tool_use_without_input_has_empty_arguments_and_empty_content_is_kept() {
        let m = conversation_of(json!([
            {"role": "user", "content": []},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "now"}]},
        ]));
        assert_eq!(m[0].role, Role::User);
        assert!(m[0].content.is_empty());
        assert_eq!(
            m[1].content,
            vec![ContentPart::ToolUse(ToolCall {
                id: "t".into(),
                name: "now".into(),
                arguments: "{}".into(),
            })]
        );
    }

    #[test]
    fn unknown_fields_are_refused_as_anthropic_refuses_them() {
        let err = parse(hello(json!({"frequency_penalty": 1}))).unwrap_err();
        assert_eq!(
            err.message,
            "frequency_penalty: Extra inputs are not permitted"
        );
        assert_eq!(err.param.as_deref(), Some("frequency_penalty"));
        assert_eq!(error_type(&err), "invalid_request_error");
    }

    #[test]
    fn malformed_bodies_are_refused_naming_the_field() {
        let user = |content: Value| json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": content}]});
        let assistant = |content: Value| json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": content}]});
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!({"max_tokens": 1, "messages": []}),
                "model",
                "`model` is required",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
                "max_tokens",
                "`max_tokens` is required",
            ),
            (
                hello(json!({"max_tokens": 0})),
                "max_tokens",
                "`max_tokens` must be at least 1",
            ),
            (
                hello(json!({"max_tokens": "many"})),
                "max_tokens",
                "`max_tokens` must be a non-negative integer, not a string",
            ),
            (
                hello(json!({"messages": []})),
                "messages",
                "`messages` must not be empty",
            ),
            (
                hello(json!({"messages": [{"role": "system", "content": "x"}]})),
                "messages[0].role",
                "`messages[0].role` must be `user` or `assistant`, not `system`",
            ),
            (
                hello(json!({"messages": [{"role": "user"}]})),
                "messages[0].content",
                "`messages[0].content` is required",
            ),
            (
                user(json!(1)),
                "messages[0].content",
                "`messages[0].content` must be a string or an array of blocks, not a number",
            ),
            (
                user(json!([{"type": "text"}])),
                "messages[0].content[0].text",
                "`messages[0].content[0].text` is required",
            ),
            (
                user(json!([{"type": "document", "source": {}}])),
                "messages[0].content[0].type",
                "content blocks of type `document` are not supported",
            ),
            (
                user(json!([{"type": "tool_use", "id": "t", "name": "n", "input": {}}])),
                "messages[0].content[0].type",
                "`tool_use` blocks belong in assistant messages",
            ),
            (
                assistant(json!([{"type": "tool_result", "tool_use_id": "t"}])),
                "messages[0].content[0].type",
                "`tool_result` blocks belong in user messages",
            ),
            (
                user(json!([{"type": "image", "source": {"type": "file", "file_id": "f"}}])),
                "messages[0].content[0].source.type",
                "image sources of type `file` are not supported",
            ),
            (
                user(json!([{"type": "image", "source": {"type": "base64", "data": "x"}}])),
                "messages[0].content[0].source.media_type",
                "`messages[0].content[0].source.media_type` is required",
            ),
            (
                user(json!([{"type": "tool_result", "content": "x"}])),
                "messages[0].content[0].tool_use_id",
                "`messages[0].content[0].tool_use_id` is required",
            ),
            (
                user(
                    json!([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {}}]}]),
                ),
                "messages[0].content[0].content[0].type",
                "tool results may hold text only, not `image` blocks",
            ),
            (
                user(json!([{"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}])),
                "messages[0].content[0].is_error",
                "`messages[0].content[0].is_error` must be a boolean, not a string",
            ),
            (
                hello(json!({"system": 5})),
                "system",
                "`system` must be a string or an array of text blocks, not a number",
            ),
            (
                hello(json!({"system": [{"type": "image"}]})),
                "system[0].type",
                "system blocks must be of type `text`, not `image`",
            ),
            (
                hello(json!({"temperature": 1.5})),
                "temperature",
                "`temperature` must be between 0 and 1, not 1.5",
            ),
            (
                hello(json!({"top_p": -0.1})),
                "top_p",
                "`top_p` must be between 0 and 1, not -0.1",
            ),
            (
                hello(json!({"top_k": -1})),
                "top_k",
                "`top_k` must be a non-negative integer, not -1",
            ),
            (
                hello(json!({"stop_sequences": "END"})),
                "stop_sequences",
                "`stop_sequences` must be an array, not a string",
            ),
            (
                hello(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]})),
                "tools[0].type",
                "server tools such as `web_search_20250305` are not supported",
            ),
            (
                hello(json!({"tools": [{"name": "f"}]})),
                "tools[0].input_schema",
                "`tools[0].input_schema` is required",
            ),
            (
                hello(json!({"tool_choice": "auto"})),
                "tool_choice",
                "`tool_choice` must be an object, not a string",
            ),
            (
                hello(json!({"tool_choice": {"type": "tool"}})),
                "tool_choice.name",
                "`tool_choice.name` is required",
            ),
            (
                hello(json!({"tool_choice": {"type": "required"}})),
                "tool_choice.type",
                "`tool_choice.type` must be `auto`, `any`, `tool` or `none`, not `required`",
            ),
            (
                hello(json!({"thinking": {"type": "enabled"}})),
                "thinking.budget_tokens",
                "`thinking.budget_tokens` is required",
            ),
            (
                hello(json!({"thinking": {"type": "on"}})),
                "thinking.type",
                "`thinking.type` must be `enabled`, `disabled` or `adaptive`, not `on`",
            ),
            (
                hello(json!({"metadata": {"user_id": 5}})),
                "metadata.user_id",
                "`metadata.user_id` must be a string, not a number",
            ),
            (
                hello(json!({"stream": 1})),
                "stream",
                "`stream` must be a boolean, not a number",
            ),
            (
                hello(json!({"vendor_params": []})),
                "vendor_params",
                "`vendor_params` must be an object, not an array",
            ),
        ];
        for (body, param, message) in cases {
            let err = parse(body.clone()).expect_err("refused");
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
            assert_eq!(err.message, message, "{body}");
        }
    }

    #[test]
    fn count_tokens_lifts_the_system_prompt_and_ignores_tools() {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hello"}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "auto"},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
        });
        let (model, messages) = parse_count_tokens(body.to_string().as_bytes()).expect("parses");
        assert_eq!(model, "claude-sonnet-4-5");
        assert_eq!(
            messages,
            vec![Message::system("Be brief."), Message::user("Hello")]
        );
        let err = parse_count_tokens(
            br#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true}"#,
        )
        .expect_err("refused");
        assert_eq!(err.message, "stream: Extra inputs are not permitted");
        let err = parse_count_tokens(br#"{"model": "m"}"#).expect_err("refused");
        assert_eq!(err.param.as_deref(), Some("messages"));
    }

    fn response(parts: Vec<ContentPart>) -> ChatResponse {
        ChatResponse {
            id: "gen-1".into(),
            model: "vendor-model".into(),
            content: String::new(),
            reasoning_content: None,
            tool_calls: Vec::new(),
            parts,
            finish_reason: FinishReason::Stop,
            usage: Usage {
                input_tokens: 100,
                output_tokens: 20,
                cache_read_tokens: 60,
                cache_write_tokens: 10,
                ..Usage::default()
            },
            rate_limits: None,
            request_id: None,
        }
    }

    #[test]
    fn a_message_has_the_shape_of_the_sdks_message() {
        let body = render_message(
            &response(vec![ContentPart::Text("Hi!".into())]),
            "claude-sonnet-4-5",
        );
        assert_eq!(
            body,
            json!({
                "id": "msg_gen-1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": "Hi!"}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": {
                    "input_tokens": 30,
                    "output_tokens": 20,
                    "cache_creation_input_tokens": 10,
                    "cache_read_input_tokens": 60,
                },
            })
        );
    }

    #[test]
    fn content_blocks_follow_the_parts_in_order() {
        let mut r = response(vec![
            ContentPart::Thinking(Thinking {
                text: "hmm".into(),
                signature: Some("sig".into()),
            }),
            ContentPart::RedactedThinking("opaque".into()),
            ContentPart::Text("Calling.".into()),
            ContentPart::ToolUse(ToolCall {
                id: "toolu_1".into(),
                name: "f".into(),
                arguments: r#"{"a":1}"#.into(),
            }),
            ContentPart::ToolUse(ToolCall {
                id: "toolu_2".into(),
                name: "g".into(),
                arguments: "{not json".into(),
            }),
            ContentPart::Thinking(Thinking {
                text: "unsigned".into(),
                signature: None,
            }),
        ]);
        r.id = "msg_01".into();
        r.finish_reason = FinishReason::ToolCalls;
        let body = render_message(&r, "m");
        assert_eq!(body["id"], "msg_01");
        assert_eq!(
            body["content"],
            json!([
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Calling."},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
                {"type": "tool_use", "id": "toolu_2", "name": "g", "input": {}},
                {"type": "thinking", "thinking": "unsigned", "signature": ""},
            ])
        );
        assert_eq!(body["stop_reason"], "tool_use");
    }

    #[test]
    fn without_parts_the_content_and_tool_calls_are_rendered() {
        let mut r = response(Vec::new());
        r.content = "Sure.".into();
        r.tool_calls = vec![ToolCall {
            id: "toolu_1".into(),
            name: "f".into(),
            arguments: String::new(),
        }];
        assert_eq!(
            render_message(&r, "m")["content"],
            json!([
                {"type": "text", "text": "Sure."},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
            ])
        );
        r.content.clear();
        assert_eq!(
            render_message(&r, "m")["content"].as_array().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn stop_reasons_and_usage_are_anthropics() {
        for (reason, expected) in [
            (FinishReason::Stop, "end_turn"),
            (FinishReason::Length, "max_tokens"),
            (FinishReason::ToolCalls, "tool_use"),
            (FinishReason::ContentFilter, "refusal"),
            (FinishReason::Refusal, "refusal"),
            (FinishReason::Other("pause_turn".into()), "pause_turn"),
            (FinishReason::Other("eos".into()), "end_turn"),
        ] {
            let mut r = response(Vec::new());
            r.finish_reason = reason;
            assert_eq!(render_message(&r, "m")["stop_reason"], expected);
        }
        let mut r = response(Vec::new());
        r.usage.input_tokens = 5;
        assert_eq!(render_message(&r, "m")["usage"]["input_tokens"], 0);
    }

    fn start() -> Chunk {
        Chunk::Start(StreamStart {
            id: "msg_01".into(),
            model: "vendor-model".into(),
            rate_limits: None,
            request_id: None,
        })
    }

    fn call(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> Chunk {
        Chunk::ToolCall(ToolCallDelta {
            index,
            id: id.map(str::to_owned),
            name: name.map(str::to_owned),
            arguments: arguments.into(),
        })
    }

    fn usage() -> Chunk {
        Chunk::Usage(Usage {
            input_tokens: 100,
            output_tokens: 20,
            cache_read_tokens: 60,
            cache_write_tokens: 10,
            ..Usage::default()
        })
    }

    fn encode(chunks: &[Chunk]) -> Vec<SseEvent> {
        let mut encoder = EventEncoder::new("01", "claude-sonnet-4-5");
        let mut out: Vec<SseEvent> = chunks.iter().flat_map(|c| encoder.push(c)).collect();
        out.extend(encoder.finish());
        assert!(encoder.finish().is_empty(), "finish sends once");
        out
    }

    fn data(event: &SseEvent) -> Value {
        let value: Value = serde_json::from_str(&event.data).expect("event data is JSON");
        assert_eq!(
            value["type"], event.event,
            "the event name is the data's type"
        );
        value
    }

    /// The message the Anthropic SDK's accumulator builds from the events:
    /// `message_start` gives the snapshot, blocks append, deltas patch the
    /// block at their index, and `message_delta` sets the stop reason and
    /// whichever usage counts it carries.
    fn accumulate(events: &[SseEvent]) -> Value {
        let mut snapshot = Value::Null;
        let mut json_buffers: Vec<String> = Vec::new();
        for event in events {
            let value = data(event);
            match event.event {
                "message_start" => {
                    assert!(snapshot.is_null(), "one message_start");
                    snapshot = value["message"].clone();
                }
                "content_block_start" => {
                    let content = snapshot["content"].as_array_mut().expect("content");
                    assert_eq!(value["index"], content.len(), "blocks start in index order");
                    content.push(value["content_block"].clone());
                    json_buffers.push(String::new());
                }
                "content_block_delta" => {
                    let index = value["index"].as_u64().expect("index") as usize;
                    let block = &mut snapshot["content"][index];
                    let delta = &value["delta"];
                    match (delta["type"].as_str(), block["type"].as_str()) {
                        (Some("text_delta"), Some("text")) => {
                            let text = format!(
                                "{}{}",
                                block["text"].as_str().unwrap(),
                                delta["text"].as_str().unwrap()
                            );
                            block["text"] = json!(text);
                        }
                        (Some("thinking_delta"), Some("thinking")) => {
                            let text = format!(
                                "{}{}",
                                block["thinking"].as_str().unwrap(),
                                delta["thinking"].as_str().unwrap()
                            );
                            block["thinking"] = json!(text);
                        }
                        (Some("signature_delta"), Some("thinking")) => {
                            block["signature"] = delta["signature"].clone();
                        }
                        (Some("input_json_delta"), Some("tool_use")) => {
                            json_buffers[index].push_str(delta["partial_json"].as_str().unwrap());
                            block["input"] =
                                serde_json::from_str(&json_buffers[index]).unwrap_or(Value::Null);
                        }
                        other => panic!("delta {other:?} does not fit its block"),
                    }
                }
                "content_block_stop" => {}
                "message_delta" => {
                    snapshot["stop_reason"] = value["delta"]["stop_reason"].clone();
                    snapshot["stop_sequence"] = value["delta"]["stop_sequence"].clone();
                    for (key, count) in value["usage"].as_object().expect("usage") {
                        snapshot["usage"][key] = count.clone();
                    }
                }
                "message_stop" => {}
                other => panic!("unexpected event {other}"),
            }
        }
        snapshot
    }

    /// Checks the event grammar: `message_start`, blocks that start,
    /// take deltas and stop one at a time, then `message_delta` and
    /// `message_stop`.
    fn assert_well_formed(events: &[SseEvent]) {
        assert_eq!(events.first().map(|e| e.event), Some("message_start"));
        let n = events.len();
        assert!(n >= 3);
        assert_eq!(events[n - 2].event, "message_delta");
        assert_eq!(events[n - 1].event, "message_stop");
        let mut open: Option<u64> = None;
        let mut next = 0;
        for event in &events[1..n - 2] {
            let value = data(event);
            match event.event {
                "content_block_start" => {
                    assert_eq!(open, None, "a block starts only when none is open");
                    assert_eq!(value["index"], next);
                    open = Some(next);
                    next += 1;
                }
                "content_block_delta" | "content_block_stop" => {
                    assert_eq!(value["index"].as_u64(), open, "{}", event.data);
                    if event.event == "content_block_stop" {
                        open = None;
                    }
                }
                other => panic!("unexpected event {other} inside the message"),
            }
        }
        assert_eq!(open, None, "every block is closed before message_delta");
    }

    fn names(events: &[SseEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.event).collect()
    }

    #[test]
    fn a_text_stream_accumulates_into_the_message_with_the_final_usage() {
        let events = encode(&[
            start(),
            Chunk::Text("Hel".into()),
            Chunk::Text("lo".into()),
            Chunk::Finish(FinishReason::Stop),
            usage(),
        ]);
        assert_well_formed(&events);
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            data(&events[0]),
            json!({"type": "message_start", "message": {
                "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }})
        );
        assert_eq!(
            data(&events[1]),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            data(&events[5]),
            json!({"type": "message_delta",
                   "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"output_tokens": 20, "input_tokens": 30,
                             "cache_creation_input_tokens": 10, "cache_read_input_tokens": 60}})
        );
        let mut r = response(vec![ContentPart::Text("Hello".into())]);
        r.id = "msg_01".into();
        assert_eq!(accumulate(&events), render_message(&r, "claude-sonnet-4-5"));
    }

    #[test]
    fn usage_before_or_after_the_finish_lands_in_message_delta() {
        let before = encode(&[
            start(),
            Chunk::Text("x".into()),
            usage(),
            Chunk::Finish(FinishReason::Length),
        ]);
        let after = encode(&[
            start(),
            Chunk::Text("x".into()),
            Chunk::Finish(FinishReason::Length),
            usage(),
        ]);
        assert_eq!(before, after);
        let snapshot = accumulate(&before);
        assert_eq!(snapshot["stop_reason"], "max_tokens");
        assert_eq!(snapshot["usage"]["input_tokens"], 30);
        assert_eq!(snapshot["usage"]["cache_read_input_tokens"], 60);
    }

    #[test]
    fn reasoning_then_text_streams_a_signed_thinking_block_then_a_text_block() {
        let events = encode(&[
            start(),
            Chunk::Reasoning("Let me ".into()),
            Chunk::Reasoning("think.".into()),
            Chunk::ReasoningSignature("EqQBCg".into()),
            Chunk::Reasoning("More.".into()),
            Chunk::ReasoningSignature("Zm9v".into()),
            Chunk::RedactedReasoning("EmwKAh".into()),
            Chunk::Text("Answer.".into()),
            Chunk::Finish(FinishReason::Stop),
            usage(),
        ]);
        assert_well_formed(&events);
        assert_eq!(
            data(&events[1])["content_block"],
            json!({"type": "thinking", "thinking": "", "signature": ""})
        );
        assert_eq!(
            data(&events[4])["delta"],
            json!({"type": "signature_delta", "signature": "EqQBCg"})
        );
        let snapshot = accumulate(&events);
        assert_eq!(
            snapshot["content"],
            json!([
                {"type": "thinking", "thinking": "Let me think.", "signature": "EqQBCg"},
                {"type": "thinking", "thinking": "More.", "signature": "Zm9v"},
                {"type": "redacted_thinking", "data": "EmwKAh"},
                {"type": "text", "text": "Answer."},
            ])
        );
    }

    #[test]
    fn tool_calls_one_after_another_stream_as_they_come() {
        let events = encode(&[
            start(),
            Chunk::Text("Checking.".into()),
            call(0, Some("toolu_a"), Some("get_weather"), ""),
            call(0, None, None, "{\"city\":"),
            call(0, None, None, "\"Paris\"}"),
            call(1, Some("toolu_b"), Some("get_time"), "{}"),
            Chunk::Finish(FinishReason::ToolCalls),
            usage(),
        ]);
        assert_well_formed(&events);
        assert_eq!(
            names(&events)[..9],
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
            ]
        );
        assert_eq!(
            data(&events[4])["content_block"],
            json!({"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}})
        );
        assert_eq!(
            data(&events[5])["delta"],
            json!({"type": "input_json_delta", "partial_json": "{\"city\":"})
        );
        let snapshot = accumulate(&events);
        assert_eq!(snapshot["stop_reason"], "tool_use");
        assert_eq!(
            snapshot["content"],
            json!([
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}},
            ])
        );
    }

    #[test]
    fn parallel_tool_calls_interleaved_by_index_arrive_whole_and_separate() {
        let events = encode(&[
            start(),
            call(0, Some("toolu_a"), Some("get_weather"), ""),
            call(1, Some("toolu_b"), Some("get_time"), "{\"tz\""),
            call(0, None, None, "{\"city\":"),
            call(1, None, None, ":\"UTC\"}"),
            call(0, None, None, "\"Paris\"}"),
            Chunk::Finish(FinishReason::ToolCalls),
            usage(),
        ]);
        assert_well_formed(&events);
        let snapshot = accumulate(&events);
        assert_eq!(
            snapshot["content"],
            json!([
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {"tz": "UTC"}},
            ])
        );
    }

    #[test]
    fn a_held_call_is_sent_when_text_follows_and_a_call_without_id_gets_one() {
        let events = encode(&[
            start(),
            call(0, None, Some("f"), "{\"a\""),
            call(1, None, Some("g"), "{}"),
            call(0, None, None, ":1}"),
            Chunk::Text("done".into()),
        ]);
        assert_well_formed(&events);
        let snapshot = accumulate(&events);
        assert_eq!(
            snapshot["content"],
            json!([
                {"type": "tool_use", "id": "toolu_01_0", "name": "f", "input": {"a": 1}},
                {"type": "tool_use", "id": "toolu_01_1", "name": "g", "input": {}},
                {"type": "text", "text": "done"},
            ])
        );
        // No finish was reported; after tool calls the stop is `tool_use`.
        assert_eq!(snapshot["stop_reason"], "tool_use");
    }

    #[test]
    fn the_first_finish_reported_is_the_stop_reason() {
        let events = encode(&[
            start(),
            Chunk::Finish(FinishReason::Length),
            Chunk::Finish(FinishReason::Stop),
        ]);
        assert_eq!(accumulate(&events)["stop_reason"], "max_tokens");
    }

    #[test]
    fn a_stream_without_start_or_content_is_still_a_whole_message() {
        let events = encode(&[]);
        assert_eq!(
            names(&events),
            ["message_start", "message_delta", "message_stop"]
        );
        let snapshot = accumulate(&events);
        assert_eq!(snapshot["content"], json!([]));
        assert_eq!(snapshot["stop_reason"], "end_turn");
        assert_eq!(snapshot["usage"]["output_tokens"], 0);
        let late_start = encode(&[Chunk::Text("a".into()), start()]);
        assert_well_formed(&late_start);
        assert_eq!(
            late_start
                .iter()
                .filter(|e| e.event == "message_start")
                .count(),
            1
        );
    }

    #[test]
    fn errors_have_anthropics_shape_and_types() {
        let cases = [
            (ApiError::invalid_request("bad"), "invalid_request_error"),
            (ApiError::authentication("who"), "authentication_error"),
            (ApiError::permission("no"), "permission_error"),
            (ApiError::not_found("none"), "not_found_error"),
            (ApiError::too_large("big"), "request_too_large"),
            (ApiError::budget_exceeded("spent"), "rate_limit_error"),
            (ApiError::internal("oops"), "api_error"),
            (ApiError::new(502, ErrorClass::Api, "upstream"), "api_error"),
            (
                ApiError::new(529, ErrorClass::Overloaded, "busy"),
                "overloaded_error",
            ),
            (
                ApiError::new(503, ErrorClass::Overloaded, "open"),
                "overloaded_error",
            ),
            (
                ApiError::new(504, ErrorClass::Timeout, "slow"),
                "timeout_error",
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(
                error_body(&err, Some("req_1")),
                json!({"type": "error", "error": {"type": kind, "message": err.message}, "request_id": "req_1"})
            );
            let event = error_event(&err);
            assert_eq!(event.event, "error");
            assert_eq!(
                data(&event),
                json!({"type": "error", "error": {"type": kind, "message": err.message}})
            );
        }
        assert_eq!(
            error_body(&ApiError::internal("x"), None)["request_id"],
            Value::Null
        );
        assert_eq!(data(&ping()), json!({"type": "ping"}));
    }

    fn chunk() -> impl Strategy<Value = Chunk> {
        prop_oneof![
            Just(start()),
            "[a-z ]{0,4}".prop_map(Chunk::Text),
            "[a-z ]{0,4}".prop_map(Chunk::Reasoning),
            "[a-z]{0,4}".prop_map(Chunk::ReasoningSignature),
            "[a-z]{1,4}".prop_map(Chunk::RedactedReasoning),
            (
                0u32..3,
                any::<bool>(),
                prop_oneof![Just(""), Just("{"), Just("\"a\":1"), Just("}"), Just("{}")]
            )
                .prop_map(|(index, first, arguments)| {
                    let id = first.then(|| format!("toolu_{index}"));
                    call(index, id.as_deref(), first.then_some("f"), arguments)
                }),
            Just(usage()),
            Just(Chunk::Finish(FinishReason::Stop)),
            Just(Chunk::Finish(FinishReason::ToolCalls)),
        ]
    }

    proptest! {
        #[test]
        fn any_chunk_sequence_makes_a_well_formed_stream(chunks in proptest::collection::vec(chunk(), 0..24)) {
            let events = encode(&chunks);
            assert_well_formed(&events);
            let snapshot = accumulate(&events);
            let text: String = chunks.iter().filter_map(|c| match c {
                Chunk::Text(t) => Some(t.as_str()),
                _ => None,
            }).collect();
            let streamed: String = snapshot["content"].as_array().into_iter().flatten()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect();
            prop_assert_eq!(streamed, text);
        }
    }

    #[test]
    fn message_delta_usage_holds_the_fields_the_sdk_copies() {
        let events = encode(&[start(), usage()]);
        let delta = data(&events[events.len() - 2]);
        let mut keys: Vec<&String> = delta["usage"]
            .as_object()
            .map(Map::keys)
            .into_iter()
            .flatten()
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "input_tokens",
                "output_tokens"
            ]
        );
    }
}
