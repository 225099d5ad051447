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
#[derive(Clone, Copy)]
enum Allowed {
    Text,
    User,
    Assistant,
}

fn message(value: &Value, path: &str) -> Result<Message, ApiError> {
    let object = super::object(value, path)?;
    let role_path = child(path, "role");
    let required_content = |allowed| {
        content(
            required(object, path, "content")?,
            &child(path, "content"),
            allowed,
        )
    };
    let (role, content) = match string(required(object, path, "role")?, &role_path)? {
        "system" | "developer" => (Role::System, required_content(Allowed::Text)?),
        "user" => (Role::User, required_content(Allowed::User)?),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn parse(body: Value) -> Result<ParsedChat, ApiError> {
        parse_chat(body.to_string().as_bytes())
    }

    fn parsed(body: Value) -> ParsedChat {
        parse(body).expect("the body parses")
    }

    fn hello(extra: Value) -> Value {
        let mut body = json!({
            "model": "claude/claude-sonnet-4-5",
            "messages": [{"role": "user", "content": "Hello"}],
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    }

    fn refusal(body: Value) -> ApiError {
        parse(body).expect_err("the body is refused")
    }

    #[test]
    fn a_minimal_request_keeps_the_model_as_sent_and_sets_nothing_else() {
        let chat = parsed(hello(json!({})));
        assert_eq!(chat.model, "claude/claude-sonnet-4-5");
        assert_eq!(chat.request.model, "claude/claude-sonnet-4-5");
        assert_eq!(chat.request.messages, vec![Message::user("Hello")]);
        assert!(!chat.stream && !chat.include_usage);
        let expected = ChatRequest::new("claude/claude-sonnet-4-5", vec![Message::user("Hello")]);
        assert_eq!(chat.request, expected);
    }

    #[test]
    fn every_request_field_reaches_the_host_request() {
        let chat = parsed(hello(json!({
            "temperature": 0.7,
            "top_p": 0.9,
            "max_tokens": 100,
            "stop": ["END", "STOP"],
            "tools": [{
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "strict": true,
                },
            }],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "weather", "schema": {"type": "object"}, "strict": true},
            },
            "user": "user-42",
            "reasoning_effort": "low",
            "stream": true,
            "stream_options": {"include_usage": true},
            "n": 1,
        })));
        let r = &chat.request;
        assert_eq!(r.temperature, Some(0.7));
        assert_eq!(r.top_p, Some(0.9));
        assert_eq!(r.max_tokens, Some(100));
        assert_eq!(r.stop, vec!["END", "STOP"]);
        assert_eq!(r.tools.len(), 1);
        assert_eq!(r.tools[0].name, "get_weather");
        assert_eq!(r.tools[0].description, "Weather for a city");
        assert_eq!(
            serde_json::from_str::<Value>(&r.tools[0].input_schema).ok(),
            Some(json!({"type": "object", "properties": {"city": {"type": "string"}}}))
        );
        assert_eq!(r.tool_choice, Some(ToolChoice::Named("get_weather".into())));
        assert_eq!(
            r.response_format,
            Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
                name: "weather".into(),
                schema: r#"{"type":"object"}"#.into(),
                strict: true,
            }))
        );
        assert_eq!(r.user.as_deref(), Some("user-42"));
        assert_eq!(
            r.reasoning,
            Some(ReasoningConfig {
                budget_tokens: None,
                effort: Some(ReasoningEffort::Low),
            })
        );
        assert_eq!(r.vendor_params, None);
        assert!(chat.stream && chat.include_usage);
    }

    #[test]
    fn nulls_count_as_not_given() {
        let chat = parsed(hello(json!({
            "temperature": null, "stop": null, "tools": null, "tool_choice": null,
            "n": null, "stream": null, "stream_options": null, "seed": null, "user": null,
        })));
        assert_eq!(chat.request, parsed(hello(json!({}))).request);
    }

    #[test]
    fn max_completion_tokens_wins_over_the_deprecated_max_tokens() {
        let both = parsed(hello(
            json!({"max_tokens": 50, "max_completion_tokens": 80}),
        ));
        assert_eq!(both.request.max_tokens, Some(80));
        let new = parsed(hello(json!({"max_completion_tokens": 30})));
        assert_eq!(new.request.max_tokens, Some(30));
    }

    #[test]
    fn stop_is_a_string_or_up_to_four_strings() {
        assert_eq!(
            parsed(hello(json!({"stop": "\n"}))).request.stop,
            vec!["\n"]
        );
        let err = refusal(hello(json!({"stop": ["a", "b", "c", "d", "e"]})));
        assert_eq!(err.param.as_deref(), Some("stop"));
        let err = refusal(hello(json!({"stop": ["a", 1]})));
        assert_eq!(
            err.message,
            "`stop` must be a string or an array of strings, not an array"
        );
    }

    #[test]
    fn tool_and_format_choices_map_one_to_one() {
        for (choice, expected) in [
            (json!("auto"), ToolChoice::Auto),
            (json!("none"), ToolChoice::None),
            (json!("required"), ToolChoice::Required),
            (
                json!({"type": "function", "function": {"name": "f"}}),
                ToolChoice::Named("f".into()),
            ),
        ] {
            let chat = parsed(hello(json!({"tool_choice": choice})));
            assert_eq!(chat.request.tool_choice, Some(expected));
        }
        for (format, expected) in [
            (json!({"type": "text"}), ResponseFormat::Text),
            (json!({"type": "json_object"}), ResponseFormat::JsonObject),
        ] {
            let chat = parsed(hello(json!({"response_format": format})));
            assert_eq!(chat.request.response_format, Some(expected));
        }
        let bare = parsed(hello(json!({
            "response_format": {"type": "json_schema", "json_schema": {"name": "n"}},
        })));
        assert_eq!(
            bare.request.response_format,
            Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
                name: "n".into(),
                schema: "{}".into(),
                strict: false,
            }))
        );
        for (effort, expected) in [
            ("minimal", ReasoningEffort::Minimal),
            ("medium", ReasoningEffort::Medium),
            ("high", ReasoningEffort::High),
        ] {
            let chat = parsed(hello(json!({"reasoning_effort": effort})));
            assert_eq!(
                chat.request.reasoning.and_then(|r| r.effort),
                Some(expected)
            );
        }
    }

    #[test]
    fn a_tool_without_parameters_takes_an_empty_object() {
        let chat = parsed(hello(
            json!({"tools": [{"type": "function", "function": {"name": "now"}}]}),
        ));
        assert_eq!(
            chat.request.tools,
            vec![ToolDefinition {
                name: "now".into(),
                description: String::new(),
                input_schema: EMPTY_PARAMETERS.into(),
            }]
        );
    }

    #[test]
    fn every_role_and_content_part_becomes_host_content() {
        let chat = parsed(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
                {"role": "user", "name": "ada", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                ]},
                {"role": "assistant", "content": null, "reasoning_content": "The user wants weather.",
                 "refusal": null, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                }]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
                {"role": "tool", "tool_call_id": "call_2", "content": [
                    {"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"},
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "It is 18°C."}, {"type": "refusal", "refusal": "no"},
                ]},
            ],
        }));
        let m = &chat.request.messages;
        assert_eq!(m.len(), 7);
        assert_eq!(m[0], Message::system("Be brief."));
        assert_eq!(m[1], Message::system("Use metric units."));
        assert_eq!(m[2].role, Role::User);
        assert_eq!(m[2].name.as_deref(), Some("ada"));
        assert_eq!(
            m[2].content,
            vec![
                ContentPart::Text("What is this?".into()),
                ContentPart::Image(ImageSource::Url("https://example.com/cat.png".into())),
                ContentPart::Image(ImageSource::Base64(Base64Image {
                    media_type: "image/png".into(),
                    data: "iVBORw0KGgo=".into(),
                })),
            ]
        );
        assert_eq!(m[3].role, Role::Assistant);
        assert_eq!(
            m[3].content,
            vec![
                ContentPart::Thinking(Thinking {
                    text: "The user wants weather.".into(),
                    signature: None,
                }),
                ContentPart::ToolUse(ToolCall {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into(),
                }),
            ]
        );
        let result = |id: &str, content: &str| {
            vec![ContentPart::ToolResult(ToolResult {
                tool_call_id: id.into(),
                content: content.into(),
                is_error: false,
            })]
        };
        assert_eq!(
            (m[4].role, &m[4].content),
            (Role::Tool, &result("call_1", "18°C"))
        );
        assert_eq!(m[5].content, result("call_2", "line 1\nline 2"));
        assert_eq!(m[6], Message::assistant("It is 18°C."));
    }

    #[test]
    fn a_cache_control_marker_on_a_part_sets_a_breakpoint() {
        let chat = parsed(json!({
            "model": "m",
            "messages": [{"role": "system", "content": [
                {"type": "text", "text": "long prompt", "cache_control": {"type": "ephemeral"}},
            ]}, {"role": "user", "content": "hi"}],
        }));
        assert!(chat.request.messages[0].cache_breakpoint);
        assert!(!chat.request.messages[1].cache_breakpoint);
    }

    #[test]
    fn documented_fields_without_a_contract_field_pass_through_as_vendor_params() {
        let chat = parsed(hello(json!({
            "seed": 7,
            "frequency_penalty": 0.5,
            "presence_penalty": -0.5,
            "logit_bias": {"50256": -100},
            "logprobs": true,
            "top_logprobs": 3,
            "parallel_tool_calls": false,
            "service_tier": "flex",
            "store": false,
            "metadata": {"k": "v"},
            "prediction": {"type": "content", "content": "x"},
            "modalities": ["text"],
            "audio": {"voice": "alloy", "format": "mp3"},
            "web_search_options": {},
            "verbosity": "low",
            "safety_identifier": "s",
            "prompt_cache_key": "p",
            "temperature": 1,
        })));
        let params: Value = serde_json::from_str(chat.request.vendor_params.as_deref().unwrap())
            .expect("vendor params are JSON");
        let keys: Vec<&str> = params
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = PASSED_THROUGH.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(params["seed"], json!(7));
        assert_eq!(params["logit_bias"], json!({"50256": -100}));
        assert_eq!(chat.request.temperature, Some(1.0));
    }

    #[test]
    fn a_clients_vendor_params_merge_over_passed_fields() {
        let chat = parsed(hello(
            json!({"seed": 1, "vendor_params": {"seed": 2, "top_k": 5}}),
        ));
        let params: Value = serde_json::from_str(chat.request.vendor_params.as_deref().unwrap())
            .expect("vendor params are JSON");
        assert_eq!(params, json!({"seed": 2, "top_k": 5}));
    }

    #[test]
    fn unknown_fields_are_refused_as_openai_refuses_them() {
        let err = refusal(hello(json!({"temprature": 0.5})));
        assert_eq!(
            err.message,
            "Unrecognized request argument supplied: temprature"
        );
        assert_eq!(err.param.as_deref(), Some("temprature"));
        assert_eq!(err.status, 400);
        let err = refusal(hello(json!({"functions": []})));
        assert_eq!(err.param.as_deref(), Some("functions"));
        assert!(err.message.contains("use `tools`"), "{}", err.message);
    }

    #[test]
    fn malformed_bodies_are_refused_naming_the_field() {
        let user = |content: Value| json!({"model": "m", "messages": [{"role": "user", "content": content}]});
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!({"messages": []}), "model", "`model` is required"),
            (
                json!({"model": "", "messages": []}),
                "model",
                "`model` must not be empty",
            ),
            (
                json!({"model": 5, "messages": []}),
                "model",
                "`model` must be a string, not a number",
            ),
            (json!({"model": "m"}), "messages", "`messages` is required"),
            (
                json!({"model": "m", "messages": []}),
                "messages",
                "`messages` must not be empty",
            ),
            (
                json!({"model": "m", "messages": {}}),
                "messages",
                "`messages` must be an array, not an object",
            ),
            (
                json!({"model": "m", "messages": ["hi"]}),
                "messages[0]",
                "`messages[0]` must be an object, not a string",
            ),
            (
                json!({"model": "m", "messages": [{"content": "x"}]}),
                "messages[0].role",
                "`messages[0].role` is required",
            ),
            (
                json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
                "messages[0].role",
                "`messages[0].role` must be one of `system`, `developer`, `user`, `assistant` or `tool`, not `robot`",
            ),
            (
                json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
                "messages[0].role",
                "role `function` is not supported: send tool results with role `tool`",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user"}]}),
                "messages[0].content",
                "`messages[0].content` is required",
            ),
            (
                user(json!(3)),
                "messages[0].content",
                "`messages[0].content` must be a string or an array of content parts, not a number",
            ),
            (
                user(json!([{"text": "x"}])),
                "messages[0].content[0].type",
                "`messages[0].content[0].type` is required",
            ),
            (
                user(json!([{"type": "text"}])),
                "messages[0].content[0].text",
                "`messages[0].content[0].text` is required",
            ),
            (
                user(json!([{"type": "input_audio", "input_audio": {}}])),
                "messages[0].content[0].type",
                "content parts of type `input_audio` are not supported",
            ),
            (
                user(json!([{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}])),
                "messages[0].content[0].image_url.url",
                "image data URLs must be base64-encoded",
            ),
            (
                user(json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64"}}])),
                "messages[0].content[0].image_url.url",
                "the image data URL has no `,` before its data",
            ),
            (
                user(json!([{"type": "image_url", "image_url": {"url": "data:;base64,AAAA"}}])),
                "messages[0].content[0].image_url.url",
                "the image data URL names no media type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]}),
                "messages[0].content[0].type",
                "content parts of type `image_url` are not allowed here",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].tool_call_id",
                "`messages[0].tool_call_id` is required",
            ),
            (
                json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
                "`messages[0].tool_calls[0].function.arguments` is required",
            ),
            (
                json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "custom": {}}]}]}),
                "messages[0].tool_calls[0].type",
                "tools of type `custom` are not supported: only `function`",
            ),
            (
                hello(json!({"temperature": 2.5})),
                "temperature",
                "`temperature` must be between 0 and 2, not 2.5",
            ),
            (
                hello(json!({"temperature": "hot"})),
                "temperature",
                "`temperature` must be a number, not a string",
            ),
            (
                hello(json!({"top_p": 1.1})),
                "top_p",
                "`top_p` must be between 0 and 1, not 1.1",
            ),
            (
                hello(json!({"max_tokens": 0})),
                "max_tokens",
                "`max_tokens` must be at least 1",
            ),
            (
                hello(json!({"max_tokens": -5})),
                "max_tokens",
                "`max_tokens` must be a non-negative integer, not -5",
            ),
            (
                hello(json!({"max_completion_tokens": 1e12})),
                "max_completion_tokens",
                "`max_completion_tokens` must be a non-negative integer, not 1000000000000.0",
            ),
            (hello(json!({"n": 2})), "n", "only `n` = 1 is supported"),
            (
                hello(json!({"stream": "yes"})),
                "stream",
                "`stream` must be a boolean, not a string",
            ),
            (
                hello(json!({"stream_options": {"include_usage": 1}})),
                "stream_options.include_usage",
                "`stream_options.include_usage` must be a boolean, not a number",
            ),
            (
                hello(json!({"tools": {}})),
                "tools",
                "`tools` must be an array, not an object",
            ),
            (
                hello(json!({"tools": [{"type": "function"}]})),
                "tools[0].function",
                "`tools[0].function` is required",
            ),
            (
                hello(json!({"tools": [{"function": {"name": ""}}]})),
                "tools[0].function.name",
                "`tools[0].function.name` must not be empty",
            ),
            (
                hello(json!({"tools": [{"function": {"name": "f", "parameters": "{}"}}]})),
                "tools[0].function.parameters",
                "`tools[0].function.parameters` must be an object, not a string",
            ),
            (
                hello(json!({"tools": [{"type": "custom", "custom": {"name": "f"}}]})),
                "tools[0].type",
                "tools of type `custom` are not supported: only `function`",
            ),
            (
                hello(json!({"tool_choice": "any"})),
                "tool_choice",
                "`tool_choice` must be `auto`, `none`, `required` or a function, not `any`",
            ),
            (
                hello(json!({"tool_choice": {"type": "function"}})),
                "tool_choice.function",
                "`tool_choice.function` is required",
            ),
            (
                hello(json!({"response_format": {"type": "yaml"}})),
                "response_format.type",
                "`response_format.type` must be `text`, `json_object` or `json_schema`, not `yaml`",
            ),
            (
                hello(json!({"response_format": {"type": "json_schema"}})),
                "response_format.json_schema",
                "`response_format.json_schema` is required",
            ),
            (
                hello(json!({"reasoning_effort": "extreme"})),
                "reasoning_effort",
                "`reasoning_effort` must be `minimal`, `low`, `medium` or `high`, not `extreme`",
            ),
            (
                hello(json!({"user": 7})),
                "user",
                "`user` must be a string, not a number",
            ),
            (
                hello(json!({"vendor_params": "seed=1"})),
                "vendor_params",
                "`vendor_params` must be an object, not a string",
            ),
        ];
        for (body, param, message) in cases {
            let err = refusal(body.clone());
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.class, ErrorClass::InvalidRequest, "{body}");
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
            assert_eq!(err.message, message, "{body}");
        }
    }

    fn response() -> ChatResponse {
        ChatResponse {
            id: "resp_1".into(),
            model: "claude-sonnet-4-5-20250929".into(),
            content: "Hello!".into(),
            reasoning_content: None,
            tool_calls: Vec::new(),
            parts: vec![ContentPart::Text("Hello!".into())],
            finish_reason: FinishReason::Stop,
            usage: Usage {
                input_tokens: 100,
                output_tokens: 20,
                cache_read_tokens: 60,
                cache_write_tokens: 10,
                reasoning_tokens: 5,
                ..Usage::default()
            },
            rate_limits: None,
            request_id: None,
        }
    }

    /// Member names of a JSON object, sorted.
    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .map(Map::keys)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn a_completion_has_the_shape_of_the_sdks_chat_completion() {
        let body = render_completion(&response(), "claude/claude-sonnet-4-5", 1_700_000_000);
        assert_eq!(
            body,
            json!({
                "id": "chatcmpl-resp_1",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "claude/claude-sonnet-4-5",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello!", "refusal": null},
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
                "usage": {
                    "prompt_tokens": 100,
                    "completion_tokens": 20,
                    "total_tokens": 120,
                    "prompt_tokens_details": {"cached_tokens": 60},
                    "completion_tokens_details": {"reasoning_tokens": 5},
                },
                "system_fingerprint": null,
            })
        );
    }

    #[test]
    fn a_completion_with_tool_calls_has_null_content_and_the_calls() {
        let mut r = response();
        r.id = "chatcmpl-abc".into();
        r.content.clear();
        r.reasoning_content = Some("thinking".into());
        r.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        }];
        r.finish_reason = FinishReason::ToolCalls;
        let body = render_completion(&r, "m", 1);
        assert_eq!(body["id"], "chatcmpl-abc");
        let message = &body["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null);
        assert_eq!(message["reasoning_content"], "thinking");
        assert_eq!(
            message["tool_calls"],
            json!([{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
        );
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        r.tool_calls.clear();
        let empty = render_completion(&r, "m", 1);
        assert_eq!(empty["choices"][0]["message"]["content"], "");
    }

    #[test]
    fn finish_reasons_are_those_the_sdk_knows() {
        for (reason, expected) in [
            (FinishReason::Stop, "stop"),
            (FinishReason::Length, "length"),
            (FinishReason::ToolCalls, "tool_calls"),
            (FinishReason::ContentFilter, "content_filter"),
            (FinishReason::Refusal, "content_filter"),
            (FinishReason::Other("pause_turn".into()), "stop"),
        ] {
            let mut r = response();
            r.finish_reason = reason;
            assert_eq!(
                render_completion(&r, "m", 0)["choices"][0]["finish_reason"],
                expected
            );
        }
    }

    fn start() -> Chunk {
        Chunk::Start(crate::types::StreamStart {
            id: "abc".into(),
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

    fn usage_chunk() -> Chunk {
        Chunk::Usage(Usage {
            input_tokens: 12,
            output_tokens: 3,
            cache_read_tokens: 4,
            ..Usage::default()
        })
    }

    /// Everything an encoder sends for `chunks`, ending the stream.
    fn encode(include_usage: bool, chunks: &[Chunk]) -> Vec<String> {
        let mut encoder = ChunkEncoder::new("abc", "gpt-4o", 1_700_000_000, include_usage);
        let mut out: Vec<String> = chunks.iter().flat_map(|c| encoder.push(c)).collect();
        out.extend(encoder.finish());
        assert!(encoder.finish().is_empty(), "finish sends once");
        out
    }

    fn json_chunks(out: &[String]) -> Vec<Value> {
        assert_eq!(out.last().map(String::as_str), Some("[DONE]"));
        out[..out.len() - 1]
            .iter()
            .map(|data| serde_json::from_str(data).expect("each chunk is JSON"))
            .collect()
    }

    /// Merges a delta into an accumulated one the way the OpenAI SDK's
    /// stream helper does: strings concatenate, `index` and `type` are
    /// replaced, lists of objects merge by `index`.
    fn accumulate(acc: &mut Map<String, Value>, delta: &Map<String, Value>) {
        for (key, value) in delta {
            match (acc.get_mut(key), value) {
                (None | Some(Value::Null), _) => {
                    acc.insert(key.clone(), value.clone());
                }
                _ if key == "index" || key == "type" => {
                    acc.insert(key.clone(), value.clone());
                }
                (Some(Value::String(old)), Value::String(new)) => old.push_str(new),
                (Some(Value::Object(old)), Value::Object(new)) => accumulate(old, new),
                (Some(Value::Array(old)), Value::Array(new)) => {
                    for item in new {
                        let index = &item["index"];
                        match old.iter_mut().find(|o| &o["index"] == index) {
                            Some(Value::Object(o)) => {
                                accumulate(o, item.as_object().expect("object"))
                            }
                            _ => old.push(item.clone()),
                        }
                    }
                }
                _ => {
                    acc.insert(key.clone(), value.clone());
                }
            }
        }
    }

    /// The message the SDK's accumulator builds, and the finish reason.
    fn accumulated(chunks: &[Value]) -> (Value, Value) {
        let mut message = Map::new();
        let mut finish = Value::Null;
        for chunk in chunks {
            for choice in chunk["choices"].as_array().into_iter().flatten() {
                accumulate(&mut message, choice["delta"].as_object().expect("delta"));
                if !choice["finish_reason"].is_null() {
                    finish = choice["finish_reason"].clone();
                }
            }
        }
        (Value::Object(message), finish)
    }

    /// Members the SDK's `ChatCompletionChunk` types declare (with
    /// `reasoning_content`, the DeepSeek extension clients read).
    const CHUNK_KEYS: &[&str] = &[
        "choices",
        "created",
        "id",
        "model",
        "object",
        "system_fingerprint",
        "usage",
    ];
    const CHOICE_KEYS: &[&str] = &["delta", "finish_reason", "index", "logprobs"];
    const DELTA_KEYS: &[&str] = &[
        "content",
        "reasoning_content",
        "refusal",
        "role",
        "tool_calls",
    ];

    fn assert_sdk_shape(chunk: &Value) {
        assert!(
            keys(chunk).iter().all(|k| CHUNK_KEYS.contains(k)),
            "{chunk}"
        );
        assert_eq!(chunk["object"], "chat.completion.chunk");
        for choice in chunk["choices"].as_array().expect("choices") {
            assert!(
                keys(choice).iter().all(|k| CHOICE_KEYS.contains(k)),
                "{choice}"
            );
            assert!(
                keys(&choice["delta"])
                    .iter()
                    .all(|k| DELTA_KEYS.contains(k)),
                "{choice}"
            );
        }
    }

    #[test]
    fn a_text_stream_with_usage_ends_with_a_usage_chunk_and_done() {
        let out = encode(
            true,
            &[
                start(),
                Chunk::Text("Hel".into()),
                Chunk::Text("lo".into()),
                Chunk::Finish(FinishReason::Stop),
                usage_chunk(),
            ],
        );
        let chunks = json_chunks(&out);
        assert_eq!(chunks.len(), 5);
        chunks.iter().for_each(assert_sdk_shape);
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": "Hel"}));
        assert_eq!(chunks[3]["choices"][0]["delta"], json!({}));
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
        for chunk in &chunks[..4] {
            assert_eq!(chunk["id"], "chatcmpl-abc");
            assert_eq!(chunk["created"], 1_700_000_000);
            assert_eq!(chunk["model"], "gpt-4o");
            assert!(chunk.get("usage").is_some_and(Value::is_null), "{chunk}");
        }
        assert_eq!(chunks[4]["choices"], json!([]));
        assert_eq!(chunks[4]["usage"]["prompt_tokens"], 12);
        assert_eq!(chunks[4]["usage"]["completion_tokens"], 3);
        assert_eq!(chunks[4]["usage"]["total_tokens"], 15);
        assert_eq!(
            chunks[4]["usage"]["prompt_tokens_details"]["cached_tokens"],
            4
        );
        let (message, finish) = accumulated(&chunks);
        assert_eq!(message, json!({"role": "assistant", "content": "Hello"}));
        assert_eq!(finish, "stop");
    }

    #[test]
    fn without_include_usage_no_chunk_has_a_usage_member() {
        let out = encode(
            false,
            &[
                start(),
                usage_chunk(),
                Chunk::Text("Hi".into()),
                Chunk::Finish(FinishReason::Length),
            ],
        );
        let chunks = json_chunks(&out);
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn usage_reported_before_the_finish_is_sent_at_the_end() {
        let out = encode(
            true,
            &[
                start(),
                Chunk::Text("Hi".into()),
                usage_chunk(),
                Chunk::Finish(FinishReason::Stop),
            ],
        );
        let chunks = json_chunks(&out);
        let last = chunks.last().expect("a usage chunk");
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 12);
        assert_eq!(chunks.iter().filter(|c| !c["usage"].is_null()).count(), 1);
    }

    #[test]
    fn reasoning_streams_as_reasoning_content_before_the_text() {
        let out = encode(
            false,
            &[
                start(),
                Chunk::Reasoning("Let me think".into()),
                Chunk::ReasoningSignature("sig".into()),
                Chunk::RedactedReasoning("opaque".into()),
                Chunk::Text("Answer".into()),
                Chunk::Finish(FinishReason::Stop),
            ],
        );
        let chunks = json_chunks(&out);
        chunks.iter().for_each(assert_sdk_shape);
        assert_eq!(chunks.len(), 4);
        assert_eq!(
            chunks[1]["choices"][0]["delta"],
            json!({"reasoning_content": "Let me think"})
        );
        let (message, _) = accumulated(&chunks);
        assert_eq!(
            message,
            json!({"role": "assistant", "content": "Answer", "reasoning_content": "Let me think"})
        );
    }

    #[test]
    fn parallel_tool_calls_interleaved_by_index_accumulate_into_two_calls() {
        let out = encode(
            true,
            &[
                start(),
                call(0, Some("call_a"), Some("get_weather"), ""),
                call(1, Some("call_b"), Some("get_time"), "{\"tz\""),
                call(0, None, None, "{\"city\":"),
                call(1, None, None, ":\"UTC\"}"),
                call(0, Some("call_a"), Some("get_weather"), "\"Paris\"}"),
                call(0, None, None, ""),
                Chunk::Finish(FinishReason::ToolCalls),
                usage_chunk(),
            ],
        );
        let chunks = json_chunks(&out);
        chunks.iter().for_each(assert_sdk_shape);
        // The empty fragment sends nothing.
        assert_eq!(chunks.len(), 1 + 5 + 1 + 1);
        assert_eq!(
            chunks[1]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "id": "call_a", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}])
        );
        assert_eq!(
            chunks[3]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "function": {"arguments": "{\"city\":"}}])
        );
        let (message, finish) = accumulated(&chunks);
        assert_eq!(finish, "tool_calls");
        assert_eq!(
            message["tool_calls"],
            json!([
                {"index": 0, "id": "call_a", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"index": 1, "id": "call_b", "type": "function",
                 "function": {"name": "get_time", "arguments": "{\"tz\":\"UTC\"}"}},
            ])
        );
    }

    #[test]
    fn a_stream_without_a_finish_gets_one_at_the_end() {
        let text = json_chunks(&encode(false, &[start(), Chunk::Text("Hi".into())]));
        assert_eq!(text.last().unwrap()["choices"][0]["finish_reason"], "stop");
        let tools = json_chunks(&encode(
            false,
            &[start(), call(0, Some("c"), Some("f"), "{}")],
        ));
        assert_eq!(
            tools.last().unwrap()["choices"][0]["finish_reason"],
            "tool_calls"
        );
        // With no usage reported, the usage chunk says zero.
        let counted = json_chunks(&encode(true, &[start()]));
        assert_eq!(counted.last().unwrap()["usage"]["total_tokens"], 0);
    }

    #[test]
    fn the_role_comes_once_even_without_a_start_and_finish_comes_once() {
        let chunks = json_chunks(&encode(
            false,
            &[
                Chunk::Text("a".into()),
                start(),
                Chunk::Text("b".into()),
                Chunk::Finish(FinishReason::Stop),
                Chunk::Finish(FinishReason::Length),
            ],
        ));
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": "a"})
        );
        assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": "b"}));
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn errors_have_openais_shape_type_and_status() {
        let cases = [
            (
                ApiError::invalid_request("bad").param("model"),
                "invalid_request_error",
                400,
            ),
            (ApiError::authentication("who"), "authentication_error", 401),
            (ApiError::permission("no"), "permission_error", 403),
            (ApiError::not_found("none"), "not_found_error", 404),
            (ApiError::too_large("big"), "invalid_request_error", 413),
            (ApiError::budget_exceeded("spent"), "rate_limit_error", 429),
            (
                ApiError::new(429, ErrorClass::RateLimit, "q").code("insufficient_quota"),
                "insufficient_quota",
                429,
            ),
            (ApiError::internal("oops"), "api_error", 500),
            (
                ApiError::new(529, ErrorClass::Overloaded, "busy"),
                "overloaded_error",
                503,
            ),
            (
                ApiError::new(503, ErrorClass::Overloaded, "open"),
                "overloaded_error",
                503,
            ),
            (
                ApiError::new(504, ErrorClass::Timeout, "slow"),
                "timeout_error",
                504,
            ),
        ];
        for (err, kind, code) in cases {
            let body = error_body(&err);
            assert_eq!(keys(&body["error"]), ["code", "message", "param", "type"]);
            assert_eq!(body["error"]["type"], kind, "{}", err.message);
            assert_eq!(body["error"]["message"], err.message.as_str());
            assert_eq!(status(&err), code, "{}", err.message);
        }
        let body = error_body(&ApiError::invalid_request("bad").param("model").code("c"));
        assert_eq!(body["error"]["param"], "model");
        assert_eq!(body["error"]["code"], "c");
        assert_eq!(
            error_body(&ApiError::internal("x"))["error"]["param"],
            Value::Null
        );
    }

    #[test]
    fn a_failure_mid_stream_is_a_data_payload_with_an_error_member() {
        let encoder = ChunkEncoder::new("abc", "m", 0, false);
        let data: Value =
            serde_json::from_str(&encoder.error(&ApiError::internal("upstream broke")))
                .expect("JSON");
        assert_eq!(data, error_body(&ApiError::internal("upstream broke")));
    }

    #[test]
    fn models_list_as_the_sdk_reads_it() {
        let body = render_models(
            &[
                ("openai/gpt-4o".into(), "openai".into()),
                ("agent:helper".into(), "llmhost".into()),
            ],
            5,
        );
        assert_eq!(
            body,
            json!({"object": "list", "data": [
                {"id": "openai/gpt-4o", "object": "model", "created": 5, "owned_by": "openai"},
                {"id": "agent:helper", "object": "model", "created": 5, "owned_by": "llmhost"},
            ]})
        );
    }
}
