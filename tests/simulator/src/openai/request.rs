//! Parsing and validating chat completion requests, rejecting bad ones with
//! the errors OpenAI sends for them.

use serde_json::{Map, Value};

use crate::Reply;

const PARSE_ERROR: &str = "We could not parse the JSON body of your request. (HINT: This likely \
means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but \
what was sent was not valid JSON. If you have trouble figuring out how to fix this, please \
contact us through our help center at help.openai.com.)";

const ROLES: &[&str] = &[
    "system",
    "assistant",
    "user",
    "function",
    "tool",
    "developer",
];

/// Why a chat request was refused, independent of the vendor's error body,
/// so each OpenAI-compatible vendor can render it in its own shape.
#[derive(Debug, Clone)]
pub(crate) struct RequestError {
    /// The body was not a JSON object at all, as opposed to a JSON object
    /// with bad fields (some vendors answer the two with different statuses).
    pub(crate) malformed: bool,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<&'static str>,
    pub(crate) message: String,
}

impl RequestError {
    /// The 400 OpenAI sends for this error.
    pub(crate) fn into_openai(self) -> Reply {
        super::error_reply(
            400,
            "invalid_request_error",
            self.param.as_deref(),
            self.code,
            &self.message,
        )
    }
}

/// A 400 `invalid_request_error`.
fn bad_request(message: &str, param: Option<&str>, code: Option<&'static str>) -> RequestError {
    RequestError {
        malformed: false,
        param: param.map(str::to_owned),
        code,
        message: message.to_owned(),
    }
}

/// The parts of a chat request that shape the simulated answer.
#[derive(Debug)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    pub(crate) messages: Vec<Message>,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    /// The tighter of `max_tokens` and `max_completion_tokens`.
    pub(crate) max_tokens: Option<usize>,
    /// The function a tool-calling answer calls: `tool_choice`'s if it names
    /// one, else the first tool's; `None` if no tools or `tool_choice` is `none`.
    pub(crate) tool: Option<String>,
    /// Checked to be a number only: vendors disagree on its range, and some
    /// ignore it altogether.
    pub(crate) temperature: Option<f64>,
}

/// One message, reduced to its role and its text.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) role: String,
    /// A string `content`, or the text parts of a list `content` concatenated;
    /// empty for `null` or absent content.
    pub(crate) text: String,
}

impl ChatRequest {
    /// Parses `body`, or says why OpenAI would refuse it. Does not check
    /// whether the model exists.
    pub(crate) fn parse(body: &[u8]) -> Result<ChatRequest, RequestError> {
        let parse_error = || RequestError {
            malformed: true,
            ..bad_request(PARSE_ERROR, None, None)
        };
        let value: Value = serde_json::from_slice(body).map_err(|_| parse_error())?;
        let Value::Object(obj) = value else {
            return Err(parse_error());
        };

        let model = match obj.get("model") {
            None | Some(Value::Null) => {
                return Err(bad_request(
                    "you must provide a model parameter",
                    None,
                    None,
                ));
            }
            Some(Value::String(model)) => model.clone(),
            Some(other) => return Err(invalid_type("model", "a string", other)),
        };

        let messages = parse_messages(obj.get("messages"))?;

        let stream = match obj.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(invalid_type("stream", "a boolean", other)),
        };
        let include_usage = match obj.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(_) if !stream => {
                return Err(bad_request(
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    Some("stream_options"),
                    None,
                ));
            }
            Some(Value::Object(options)) => {
                options.get("include_usage") == Some(&Value::Bool(true))
            }
            Some(other) => return Err(invalid_type("stream_options", "an object", other)),
        };

        let max_tokens = match (
            positive_integer(&obj, "max_tokens")?,
            positive_integer(&obj, "max_completion_tokens")?,
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };

        let tool = choose_tool(&obj)?;

        let temperature = match obj.get("temperature") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(other) => return Err(invalid_type("temperature", "a number", other)),
        };

        Ok(ChatRequest {
            model,
            messages,
            stream,
            include_usage,
            max_tokens,
            tool,
            temperature,
        })
    }
}

fn parse_messages(messages: Option<&Value>) -> Result<Vec<Message>, RequestError> {
    let items = match messages {
        None | Some(Value::Null) => {
            return Err(bad_request(
                "Missing required parameter: 'messages'.",
                Some("messages"),
                Some("missing_required_parameter"),
            ));
        }
        Some(Value::Array(items)) => items,
        Some(other) => return Err(invalid_type("messages", "an array of objects", other)),
    };
    if items.is_empty() {
        return Err(empty_array("messages"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let param = format!("messages[{i}]");
            let Value::Object(message) = item else {
                return Err(invalid_type(&param, "an object", item));
            };
            let role = match message.get("role") {
                None | Some(Value::Null) => return Err(missing(&format!("{param}.role"))),
                Some(Value::String(role)) if ROLES.contains(&role.as_str()) => role.clone(),
                Some(Value::String(role)) => {
                    return Err(bad_request(
                        &format!(
                            "Invalid value: '{role}'. Supported values are: 'system', \
                             'assistant', 'user', 'function', 'tool', and 'developer'."
                        ),
                        Some(&format!("{param}.role")),
                        Some("invalid_value"),
                    ));
                }
                Some(other) => {
                    return Err(invalid_type(&format!("{param}.role"), "a string", other));
                }
            };
            let text = match message.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter(|part| part.get("type").and_then(Value::as_str) == Some("text"))
                    .filter_map(|part| part.get("text").and_then(Value::as_str))
                    .collect(),
                Some(other) => {
                    return Err(invalid_type(
                        &format!("{param}.content"),
                        "one of a string or array of objects",
                        other,
                    ));
                }
            };
            Ok(Message { role, text })
        })
        .collect()
}

fn positive_integer(obj: &Map<String, Value>, name: &str) -> Result<Option<usize>, RequestError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => match n.as_u64() {
            Some(v) if v >= 1 => Ok(Some(usize::try_from(v).unwrap_or(usize::MAX))),
            _ => Err(bad_request(
                &format!(
                    "Invalid '{name}': integer below minimum value. Expected a value >= 1, \
                     but got {n} instead."
                ),
                Some(name),
                Some("integer_below_min_value"),
            )),
        },
        Some(other) => Err(invalid_type(name, "an integer", other)),
    }
}

fn choose_tool(obj: &Map<String, Value>) -> Result<Option<String>, RequestError> {
    let tools = match obj.get("tools") {
        None | Some(Value::Null) => None,
        Some(Value::Array(tools)) if tools.is_empty() => return Err(empty_array("tools")),
        Some(Value::Array(tools)) => Some(tools),
        Some(other) => return Err(invalid_type("tools", "an array of objects", other)),
    };
    let mut names = Vec::new();
    for (i, tool) in tools.into_iter().flatten().enumerate() {
        match tool.pointer("/function/name") {
            Some(Value::String(name)) => names.push(name.clone()),
            None | Some(Value::Null) => return Err(missing(&format!("tools[{i}].function.name"))),
            Some(other) => {
                return Err(invalid_type(
                    &format!("tools[{i}].function.name"),
                    "a string",
                    other,
                ));
            }
        }
    }

    let choice = obj.get("tool_choice").filter(|c| !c.is_null());
    if choice.is_some() && names.is_empty() {
        return Err(bad_request(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are \
             specified.",
            Some("tool_choice"),
            None,
        ));
    }
    match choice {
        None => Ok(names.into_iter().next()),
        Some(Value::String(mode)) => match mode.as_str() {
            "none" => Ok(None),
            "auto" | "required" => Ok(names.into_iter().next()),
            _ => Err(bad_request(
                &format!(
                    "Invalid value: '{mode}'. Supported values are: 'none', 'auto', and 'required'."
                ),
                Some("tool_choice"),
                Some("invalid_value"),
            )),
        },
        Some(named) => match named.pointer("/function/name") {
            Some(Value::String(name)) => Ok(Some(name.clone())),
            _ => Err(missing("tool_choice.function.name")),
        },
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid_type(param: &str, expected: &str, got: &Value) -> RequestError {
    bad_request(
        &format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            describe(got)
        ),
        Some(param),
        Some("invalid_type"),
    )
}

fn missing(param: &str) -> RequestError {
    bad_request(
        &format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

fn empty_array(param: &str) -> RequestError {
    bad_request(
        &format!(
            "Invalid '{param}': empty array. Expected an array with minimum length 1, but got an \
             empty array instead."
        ),
        Some(param),
        Some("empty_array"),
    )
}
