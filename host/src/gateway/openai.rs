//! OpenAI Chat Completions: `POST /v1/chat/completions` bodies parsed into
//! host requests, answers and stream chunks rendered as
//! `chat.completion` and `chat.completion.chunk` objects, errors as
//! `{"error": {...}}`, and the `GET /v1/models` list.

use super::{
    ApiError, ErrorClass, Object, array, boolean, child, count, field, invalid, name, number_in,
    optional, parse_object, required, string, strings, vendor_params, wrong_type,
};
use crate::types::{
    Base64Image, ChatRequest, ChatResponse, Chunk, ContentPart, FinishReason, ImageSource,
    JsonSchemaFormat, Message, ReasoningConfig, ReasoningEffort, ResponseFormat, Role, Thinking,
    ToolCall, ToolCallDelta, ToolChoice, ToolDefinition, ToolResult, Usage,
};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Request fields read into the [`ChatRequest`] or the [`ParsedChat`].
const FIELDS: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "user",
    "reasoning_effort",
    "stream",
    "stream_options",
    "n",
    "vendor_params",
];

/// OpenAI request fields the contract has no field for, passed to the
/// vendor unchanged in `vendor_params`.
const PASSED_THROUGH: &[&str] = &[
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "parallel_tool_calls",
    "service_tier",
    "store",
    "metadata",
    "prediction",
    "modalities",
    "audio",
    "web_search_options",
    "verbosity",
    "safety_identifier",
    "prompt_cache_key",
];

/// Most stop sequences OpenAI accepts.
const MAX_STOP: usize = 4;

/// Parameters of a tool that declares none: an object without members.
const EMPTY_PARAMETERS: &str = r#"{"type":"object","properties":{}}"#;

/// A parsed Chat Completions request.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedChat {
    /// The model as the client named it (`claude/claude-sonnet-4-5`,
    /// `agent:NAME`), for the server to resolve; `request.model` holds
    /// the same text.
    pub model: String,
    pub request: ChatRequest,
    pub stream: bool,
    /// `stream_options.include_usage`: the stream ends with a usage chunk.
    pub include_usage: bool,
}

/// Parses a Chat Completions request body.
///
/// Fields the contract has no field for but OpenAI documents (`seed`,
/// `logprobs`, …) go to `vendor_params`, with the members of a client's
/// own `vendor_params` object merged over them; any other unknown field
/// is refused, as OpenAI refuses it.
pub fn parse_chat(body: &[u8]) -> Result<ParsedChat, ApiError> {
    let body = parse_object(body)?;
    refuse_unknown_fields(&body)?;
    let model = name(required(&body, "", "model")?, "model")?.to_owned();
    let messages = messages(required(&body, "", "messages")?)?;
    if let Some(n) = optional(&body, "", "n", |v, p| count(v, p, 0))?
        && n != 1
    {
        return Err(invalid("only `n` = 1 is supported", "n"));
    }

    let mut request = ChatRequest::new(model.clone(), messages);
    request.temperature = optional(&body, "", "temperature", |v, p| number_in(v, p, 0.0, 2.0))?;
    request.top_p = optional(&body, "", "top_p", |v, p| number_in(v, p, 0.0, 1.0))?;
    // `max_completion_tokens` replaces the deprecated `max_tokens`.
    request.max_tokens = optional(&body, "", "max_completion_tokens", |v, p| count(v, p, 1))?
        .or(optional(&body, "", "max_tokens", |v, p| count(v, p, 1))?);
    request.stop = optional(&body, "", "stop", stop)?.unwrap_or_default();
    request.tools = optional(&body, "", "tools", tools)?.unwrap_or_default();
    request.tool_choice = optional(&body, "", "tool_choice", tool_choice)?;
    request.response_format = optional(&body, "", "response_format", response_format)?;
    request.reasoning =
        optional(&body, "", "reasoning_effort", reasoning_effort)?.map(|effort| ReasoningConfig {
            budget_tokens: None,
            effort: Some(effort),
        });
    request.user = optional(&body, "", "user", string)?.map(str::to_owned);
    request.vendor_params = vendor_params(passed_through(&body), &body)?;

    let stream = optional(&body, "", "stream", boolean)?.unwrap_or(false);
    let include_usage = optional(&body, "", "stream_options", include_usage)?.unwrap_or(false);
    Ok(ParsedChat {
        model,
        request,
        stream,
        include_usage,
    })
}

fn refuse_unknown_fields(body: &Object) -> Result<(), ApiError> {
    let unknown = body
        .keys()
        .find(|key| !FIELDS.contains(&key.as_str()) && !PASSED_THROUGH.contains(&key.as_str()));
    match unknown.map(String::as_str) {
        None => Ok(()),
        Some(key @ ("functions" | "function_call")) => Err(invalid(
            format!("`{key}` is not supported: use `tools` and `tool_choice`"),
            key,
        )),
        Some(key) => Err(invalid(
            format!("Unrecognized request argument supplied: {key}"),
            key,
        )),
    }
}

fn passed_through(body: &Object) -> Object {
    PASSED_THROUGH
        .iter()
        .filter_map(|&key| field(body, key).map(|value| (key.to_owned(), value.clone())))
        .collect()
}

fn include_usage(value: &Value, path: &str) -> Result<bool, ApiError> {
    let options = super::object(value, path)?;
    Ok(optional(options, path, "include_usage", boolean)?.unwrap_or(false))
}

fn messages(value: &Value) -> Result<Vec<Message>, ApiError> {
    let list = array(value, "messages")?;
    if list.is_empty() {
        return Err(invalid("`messages` must not be empty", "messages"));
    }
    list.iter()
        .enumerate()
        .map(|(i, item)| message(item, &format!("messages[{i}]")))
        .collect()
}

/// A message's parts, and whether a part asked for a cache breakpoint.
#[derive(Default)]
struct Parts {
    parts: Vec<ContentPart>,
    cached: bool,
}

/// Which content parts a role may send.
#[derive(Clone, Copy, PartialEq)]
enum Allowed {
    Text,
    User,
    Assistant,
}

fn message(value: &Value, path: &str) -> Result<Message, ApiError> {
    let object = super::object(value, path)?;
    let role_path = child(path, "role");
    let (role, content) = match string(required(object, path, "role")?, &role_path)? {
        "system" | "developer" => (
            Role::System,
            content(
                required(object, path, "content")?,
                &child(path, "content"),
                Allowed::Text,
            )?,
        ),
        "user" => (
            Role::User,
            content(
                required(object, path, "content")?,
                &child(path, "content"),
                Allowed::User,
            )?,
        ),
        "assistant" => (Role::Assistant, assistant(object, path)?),
        "tool" => (Role::Tool, tool_result(object, path)?),
        "function" => {
            return Err(invalid(
                "role `function` is not supported: send tool results with role `tool`",
                role_path,
            ));
        }
        other => {
            return Err(invalid(
                format!(
                    "`{role_path}` must be one of `system`, `developer`, `user`, `assistant` \
                     or `tool`, not `{other}`"
                ),
                role_path,
            ));
        }
    };
    Ok(Message {
        role,
        content: content.parts,
        name: optional(object, path, "name", string)?.map(str::to_owned),
        cache_breakpoint: content.cached,
    })
}

/// Content that is a string or an array of parts.
fn content(value: &Value, path: &str, allowed: Allowed) -> Result<Parts, ApiError> {
    match value {
        Value::String(text) => Ok(Parts {
            parts: vec![ContentPart::Text(text.clone())],
            cached: false,
        }),
        Value::Array(items) => {
            let mut parts = Parts::default();
            for (i, item) in items.iter().enumerate() {
                let path = format!("{path}[{i}]");
                let part = super::object(item, &path)?;
                // A `cache_control` marker, as some clients send for
                // Claude models, ends a cached prefix here.
                parts.cached |= field(part, "cache_control").is_some();
                if let Some(part) = content_part(part, &path, allowed)? {
                    parts.parts.push(part);
                }
            }
            Ok(parts)
        }
        other => Err(wrong_type(
            path,
            "a string or an array of content parts",
            other,
        )),
    }
}

/// One content part; `None` for a part the host has no use for (an
/// assistant's `refusal`).
fn content_part(
    part: &Object,
    path: &str,
    allowed: Allowed,
) -> Result<Option<ContentPart>, ApiError> {
    let type_path = child(path, "type");
    match (string(required(part, path, "type")?, &type_path)?, allowed) {
        ("text", _) => {
            let text = string(required(part, path, "text")?, &child(path, "text"))?;
            Ok(Some(ContentPart::Text(text.to_owned())))
        }
        ("image_url", Allowed::User) => image(required(part, path, "image_url")?, path).map(Some),
        ("refusal", Allowed::Assistant) => Ok(None),
        (kind @ ("input_audio" | "file"), Allowed::User) => Err(invalid(
            format!("content parts of type `{kind}` are not supported"),
            type_path,
        )),
        (kind, _) => Err(invalid(
            format!("content parts of type `{kind}` are not allowed here"),
            type_path,
        )),
    }
}

/// An `image_url` part: `{"url": ...}` (or the URL alone), where a
/// `data:` URL carries the image itself.
fn image(value: &Value, path: &str) -> Result<ContentPart, ApiError> {
    let url_path = format!("{path}.image_url.url");
    let url = match value {
        Value::String(url) => url.as_str(),
        Value::Object(object) => string(
            required(object, &child(path, "image_url"), "url")?,
            &url_path,
        )?,
        other => return Err(wrong_type(&child(path, "image_url"), "an object", other)),
    };
    let Some(rest) = url.strip_prefix("data:") else {
        return Ok(ContentPart::Image(ImageSource::Url(url.to_owned())));
    };
    let (header, data) = rest
        .split_once(',')
        .ok_or_else(|| invalid("the image data URL has no `,` before its data", &url_path))?;
    let media_type = header
        .strip_suffix(";base64")
        .ok_or_else(|| invalid("image data URLs must be base64-encoded", &url_path))?;
    let media_type = media_type.split(';').next().unwrap_or_default();
    if media_type.is_empty() {
        return Err(invalid("the image data URL names no media type", url_path));
    }
    Ok(ContentPart::Image(ImageSource::Base64(Base64Image {
        media_type: media_type.to_owned(),
        data: data.to_owned(),
    })))
}

/// An assistant message: its reasoning, text and tool calls, in that order.
fn assistant(object: &Object, path: &str) -> Result<Parts, ApiError> {
    let mut parts = Parts::default();
    if let Some(text) = optional(object, path, "reasoning_content", string)?
        && !text.is_empty()
    {
        parts.parts.push(ContentPart::Thinking(Thinking {
            text: text.to_owned(),
            signature: None,
        }));
    }
    if let Some(value) = field(object, "content") {
        let content = content(value, &child(path, "content"), Allowed::Assistant)?;
        parts.cached = content.cached;
        parts.parts.extend(content.parts);
    }
    if let Some(value) = field(object, "tool_calls") {
        let calls_path = child(path, "tool_calls");
        for (i, call) in array(value, &calls_path)?.iter().enumerate() {
            let call = tool_call(call, &format!("{calls_path}[{i}]"))?;
            parts.parts.push(ContentPart::ToolUse(call));
        }
    }
    Ok(parts)
}

fn tool_call(value: &Value, path: &str) -> Result<ToolCall, ApiError> {
    let object = super::object(value, path)?;
    function_type(object, path)?;
    let function_path = child(path, "function");
    let function = super::object(required(object, path, "function")?, &function_path)?;
    Ok(ToolCall {
        id: string(required(object, path, "id")?, &child(path, "id"))?.to_owned(),
        name: name(
            required(function, &function_path, "name")?,
            &child(&function_path, "name"),
        )?
        .to_owned(),
        arguments: string(
            required(function, &function_path, "arguments")?,
            &child(&function_path, "arguments"),
        )?
        .to_owned(),
    })
}

/// Checks that an object's `type`, when given, is `function`.
fn function_type(object: &Object, path: &str) -> Result<(), ApiError> {
    match optional(object, path, "type", string)? {
        None | Some("function") => Ok(()),
        Some(other) => Err(invalid(
            format!("tools of type `{other}` are not supported: only `function`"),
            child(path, "type"),
        )),
    }
}

/// A `tool` message: one tool result, its text parts joined by newlines.
fn tool_result(object: &Object, path: &str) -> Result<Parts, ApiError> {
    let id_path = child(path, "tool_call_id");
    let tool_call_id = string(required(object, path, "tool_call_id")?, &id_path)?.to_owned();
    let content = content(
        required(object, path, "content")?,
        &child(path, "content"),
        Allowed::Text,
    )?;
    let texts: Vec<&str> = content
        .parts
        .iter()
        .filter_map(|part| match part {
            ContentPart::Text(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    Ok(Parts {
        parts: vec![ContentPart::ToolResult(ToolResult {
            tool_call_id,
            content: texts.join("\n"),
            is_error: false,
        })],
        cached: content.cached,
    })
}

fn stop(value: &Value, path: &str) -> Result<Vec<String>, ApiError> {
    let stop = match value {
        Value::String(text) => vec![text.clone()],
        other => strings(other, path)
            .map_err(|_| wrong_type(path, "a string or an array of strings", other))?,
    };
    if stop.len() > MAX_STOP {
        return Err(invalid(
            format!("`{path}` may hold at most {MAX_STOP} sequences"),
            path,
        ));
    }
    Ok(stop)
}

fn tools(value: &Value, path: &str) -> Result<Vec<ToolDefinition>, ApiError> {
    array(value, path)?
        .iter()
        .enumerate()
        .map(|(i, tool)| tool_definition(tool, &format!("{path}[{i}]")))
        .collect()
}

fn tool_definition(value: &Value, path: &str) -> Result<ToolDefinition, ApiError> {
    let tool = super::object(value, path)?;
    function_type(tool, path)?;
    let function = required(tool, path, "function")?;
    let path = &child(path, "function");
    let function = super::object(function, path)?;
    let parameters = optional(function, path, "parameters", super::object)?;
    Ok(ToolDefinition {
        name: name(required(function, path, "name")?, &child(path, "name"))?.to_owned(),
        description: optional(function, path, "description", string)?
            .unwrap_or_default()
            .to_owned(),
        input_schema: parameters.map_or_else(
            || EMPTY_PARAMETERS.to_owned(),
            |schema| Value::Object(schema.clone()).to_string(),
        ),
    })
}

fn tool_choice(value: &Value, path: &str) -> Result<ToolChoice, ApiError> {
    match value {
        Value::String(choice) => match choice.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(invalid(
                format!("`{path}` must be `auto`, `none`, `required` or a function, not `{other}`"),
                path,
            )),
        },
        Value::Object(object) => {
            function_type(object, path)?;
            let function_path = child(path, "function");
            let function = super::object(required(object, path, "function")?, &function_path)?;
            let name = name(
                required(function, &function_path, "name")?,
                &child(&function_path, "name"),
            )?;
            Ok(ToolChoice::Named(name.to_owned()))
        }
        other => Err(wrong_type(path, "a string or an object", other)),
    }
}

fn response_format(value: &Value, path: &str) -> Result<ResponseFormat, ApiError> {
    let object = super::object(value, path)?;
    let type_path = child(path, "type");
    match string(required(object, path, "type")?, &type_path)? {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let schema_path = child(path, "json_schema");
            let format = super::object(required(object, path, "json_schema")?, &schema_path)?;
            let schema = optional(format, &schema_path, "schema", super::object)?;
            Ok(ResponseFormat::JsonSchema(JsonSchemaFormat {
                name: name(
                    required(format, &schema_path, "name")?,
                    &child(&schema_path, "name"),
                )?
                .to_owned(),
                schema: schema.map_or_else(
                    || "{}".to_owned(),
                    |schema| Value::Object(schema.clone()).to_string(),
                ),
                strict: optional(format, &schema_path, "strict", boolean)?.unwrap_or(false),
            }))
        }
        other => Err(invalid(
            format!("`{type_path}` must be `text`, `json_object` or `json_schema`, not `{other}`"),
            type_path,
        )),
    }
}

fn reasoning_effort(value: &Value, path: &str) -> Result<ReasoningEffort, ApiError> {
    match string(value, path)? {
        "minimal" => Ok(ReasoningEffort::Minimal),
        "low" => Ok(ReasoningEffort::Low),
        "medium" => Ok(ReasoningEffort::Medium),
        "high" => Ok(ReasoningEffort::High),
        other => Err(invalid(
            format!("`{path}` must be `minimal`, `low`, `medium` or `high`, not `{other}`"),
            path,
        )),
    }
}

/// The id as OpenAI spells completion ids: `chatcmpl-…`.
fn completion_id(id: &str) -> String {
    if id.starts_with("chatcmpl-") {
        id.to_owned()
    } else {
        format!("chatcmpl-{id}")
    }
}

/// OpenAI's `finish_reason`. A refusal is `content_filter`: the answer was
/// withheld for safety, which is what OpenAI clients read that value as.
fn finish_reason(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other(_) => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter | FinishReason::Refusal => "content_filter",
    }
}

fn usage(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": u64::from(usage.input_tokens) + u64::from(usage.output_tokens),
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    })
}

/// A `chat.completion` object for a complete answer; `model` is the name
/// to show the client, `created` the Unix time in seconds.
pub fn render_completion(response: &ChatResponse, model: &str, created: u64) -> Value {
    let calls: Vec<Value> = response
        .tool_calls
        .iter()
        .map(|call| {
            json!({
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            })
        })
        .collect();
    let content = if response.content.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::from(response.content.as_str())
    };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if let Some(reasoning) = response
        .reasoning_content
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        message["reasoning_content"] = Value::from(reasoning);
    }
    json!({
        "id": completion_id(&response.id),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(&response.finish_reason),
        }],
        "usage": usage(&response.usage),
        "system_fingerprint": null,
    })
}

/// What of one streamed tool call the client has been sent.
#[derive(Default)]
struct SentCall {
    id: bool,
    name: bool,
}

/// Turns a host stream into `chat.completion.chunk` objects, each the JSON
/// text of one SSE `data:` line.
pub struct ChunkEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    role_sent: bool,
    finish_sent: bool,
    done: bool,
    calls: HashMap<u32, SentCall>,
    usage: Option<Usage>,
}

impl ChunkEncoder {
    /// An encoder for one stream; `id` gets the `chatcmpl-` prefix if it
    /// lacks it, and `include_usage` is the request's
    /// `stream_options.include_usage`.
    pub fn new(id: &str, model: &str, created: u64, include_usage: bool) -> Self {
        Self {
            id: completion_id(id),
            model: model.to_owned(),
            created,
            include_usage,
            role_sent: false,
            finish_sent: false,
            done: false,
            calls: HashMap::new(),
            usage: None,
        }
    }

    /// The chunks to send for one host chunk (often none: usage is kept
    /// for the end, and signatures and redacted reasoning have no OpenAI
    /// form).
    pub fn push(&mut self, chunk: &Chunk) -> Vec<String> {
        let delta = match chunk {
            Chunk::Start(_) if self.role_sent => return Vec::new(),
            Chunk::Start(_) => json!({"content": ""}),
            Chunk::Text(text) if !text.is_empty() => json!({"content": text}),
            Chunk::Reasoning(text) if !text.is_empty() => json!({"reasoning_content": text}),
            Chunk::ToolCall(delta) => match self.tool_call(delta) {
                Some(call) => json!({"tool_calls": [call]}),
                None => return Vec::new(),
            },
            Chunk::Usage(usage) => {
                self.usage = Some(*usage);
                return Vec::new();
            }
            Chunk::Finish(reason) => return self.finish_chunk(finish_reason(reason)),
            Chunk::Text(_)
            | Chunk::Reasoning(_)
            | Chunk::ReasoningSignature(_)
            | Chunk::RedactedReasoning(_) => return Vec::new(),
        };
        vec![self.chunk(delta, None)]
    }

    /// The end of the stream: a finish chunk if none was sent (`tool_calls`
    /// after tool calls, else `stop`), the usage chunk when the client
    /// asked for it (zero counts if the stream reported none), then
    /// `[DONE]`. Nothing on a second call.
    pub fn finish(&mut self) -> Vec<String> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        let reason = if self.calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        let mut out = self.finish_chunk(reason);
        if self.include_usage {
            let usage = usage(&self.usage.unwrap_or_default());
            let mut chunk = self.envelope(Vec::new());
            chunk["usage"] = usage;
            out.push(chunk.to_string());
        }
        out.push("[DONE]".to_owned());
        out
    }

    /// The data of an event reporting a failure after the stream started;
    /// the SDKs raise it as an API error.
    pub fn error(&self, err: &ApiError) -> String {
        error_body(err).to_string()
    }

    fn finish_chunk(&mut self, reason: &str) -> Vec<String> {
        if self.finish_sent {
            return Vec::new();
        }
        self.finish_sent = true;
        vec![self.chunk(json!({}), Some(reason))]
    }

    /// The `tool_calls` entry for a fragment: `id`, `type` and the name
    /// only once per call, as the SDKs concatenate repeated strings.
    fn tool_call(&mut self, delta: &ToolCallDelta) -> Option<Value> {
        let first = !self.calls.contains_key(&delta.index);
        let sent = self.calls.entry(delta.index).or_default();
        let mut call = json!({"index": delta.index});
        let mut function = json!({"arguments": delta.arguments});
        if first {
            call["type"] = json!("function");
        }
        let new_id = delta.id.as_ref().filter(|_| !sent.id);
        if let Some(id) = new_id {
            call["id"] = json!(id);
            sent.id = true;
        }
        let new_name = delta.name.as_ref().filter(|_| !sent.name);
        if let Some(name) = new_name {
            function["name"] = json!(name);
            sent.name = true;
        }
        if !first && new_id.is_none() && new_name.is_none() && delta.arguments.is_empty() {
            return None;
        }
        call["function"] = function;
        Some(call)
    }

    fn chunk(&mut self, mut delta: Value, finish_reason: Option<&str>) -> String {
        if !self.role_sent {
            self.role_sent = true;
            delta["role"] = json!("assistant");
        }
        self.envelope(vec![json!({
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        })])
        .to_string()
    }

    fn envelope(&self, choices: Vec<Value>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }
}

/// OpenAI's error `type` for an error.
fn error_type(err: &ApiError) -> &'static str {
    match err.class {
        ErrorClass::InvalidRequest | ErrorClass::RequestTooLarge => "invalid_request_error",
        ErrorClass::Authentication => "authentication_error",
        ErrorClass::Permission => "permission_error",
        ErrorClass::NotFound => "not_found_error",
        // OpenAI itself types a spent quota this way.
        ErrorClass::RateLimit if err.code.as_deref() == Some("insufficient_quota") => {
            "insufficient_quota"
        }
        ErrorClass::RateLimit => "rate_limit_error",
        ErrorClass::Api => "api_error",
        ErrorClass::Overloaded => "overloaded_error",
        ErrorClass::Timeout => "timeout_error",
    }
}

/// The body of an error response: `{"error": {"message", "type", "param",
/// "code"}}`.
pub fn error_body(err: &ApiError) -> Value {
    json!({
        "error": {
            "message": err.message,
            "type": error_type(err),
            "param": err.param,
            "code": err.code,
        }
    })
}

/// The HTTP status to answer with: the error's, except that overload is
/// 503, as OpenAI's clients know no 529.
pub fn status(err: &ApiError) -> u16 {
    match err.status {
        529 => 503,
        status => status,
    }
}

/// The `GET /v1/models` body for `(id, owned_by)` pairs.
pub fn render_models(ids: &[(String, String)], created: u64) -> Value {
    let data: Vec<Value> = ids
        .iter()
        .map(|(id, owned_by)| {
            json!({"id": id, "object": "model", "created": created, "owned_by": owned_by})
        })
        .collect();
    json!({"object": "list", "data": data})
}
