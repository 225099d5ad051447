//! Parsing and validating Messages and count-tokens requests, refusing bad
//! ones with the messages Anthropic's validator gives.

use serde_json::{Map, Value};

use super::content::{self, Conversation};
use crate::tokens;

/// Why a request is invalid: the message of Anthropic's 400
/// `invalid_request_error`.
pub(crate) type Invalid = String;

/// Which endpoint a body was sent to: count-tokens takes the same body
/// without `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Messages,
    CountTokens,
}

/// Top-level fields Anthropic accepts; any other is an error, which catches
/// OpenAI-only fields (`stream_options`, `max_completion_tokens`, `n`).
/// Count-tokens accepts the same set, so a client may reuse its body builder.
const FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
];

const PARSE_ERROR: &str = "There was an issue with your request body: it is not valid JSON. \
Please check that you are sending a JSON object with the correct content-type header.";

/// The parts of a request that shape the simulated answer.
#[derive(Debug)]
pub(crate) struct MessagesRequest {
    pub(crate) model: String,
    /// Always set for the Messages endpoint.
    pub(crate) max_tokens: Option<usize>,
    pub(crate) stream: bool,
    pub(crate) stop_sequences: Vec<String>,
    /// The tool an answer calls: `tool_choice`'s if it names one, else the
    /// first tool's; `None` without tools or with `tool_choice` `none`.
    pub(crate) tool: Option<String>,
    pub(crate) thinking: bool,
    pub(crate) conversation: Conversation,
    /// Tokens in the system prompt, the messages and the tool definitions.
    pub(crate) input_tokens: usize,
}

/// `obj[name]`, with `null` read as absent, as Anthropic does for optional
/// fields.
pub(crate) fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

pub(crate) fn describe_object<'a>(
    value: &'a Value,
    path: &str,
) -> Result<&'a Map<String, Value>, Invalid> {
    value
        .as_object()
        .ok_or_else(|| format!("{path}: Input should be a valid dictionary"))
}

pub(crate) fn describe_list<'a>(value: &'a Value, path: &str) -> Result<&'a Vec<Value>, Invalid> {
    value
        .as_array()
        .ok_or_else(|| format!("{path}: Input should be a valid list"))
}

pub(crate) fn describe_string<'a>(value: &'a Value, path: &str) -> Result<&'a str, Invalid> {
    value
        .as_str()
        .ok_or_else(|| format!("{path}: Input should be a valid string"))
}

/// A number within `min..=max`, if present.
fn number_in(
    obj: &Map<String, Value>,
    name: &str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, Invalid> {
    let Some(value) = field(obj, name) else {
        return Ok(None);
    };
    let n = value
        .as_f64()
        .ok_or_else(|| format!("{name}: Input should be a valid number"))?;
    if n < min {
        return Err(format!(
            "{name}: Input should be greater than or equal to {min}"
        ));
    }
    if n > max {
        return Err(format!(
            "{name}: Input should be less than or equal to {max}"
        ));
    }
    Ok(Some(n))
}

/// A whole number of at least `min`, if present.
fn integer_at_least(value: &Value, path: &str, min: u64) -> Result<usize, Invalid> {
    if !value.is_i64() && !value.is_u64() {
        return Err(format!("{path}: Input should be a valid integer"));
    }
    match value.as_u64() {
        Some(n) if n >= min => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => Err(format!(
            "{path}: Input should be greater than or equal to {min}"
        )),
    }
}

/// Parses `body` sent to `endpoint`, or says why Anthropic would refuse it.
/// Does not check whether the model exists.
pub(crate) fn parse(body: &[u8], endpoint: Endpoint) -> Result<MessagesRequest, Invalid> {
    let value: Value = serde_json::from_slice(body).map_err(|_| PARSE_ERROR.to_owned())?;
    let Value::Object(obj) = value else {
        return Err(PARSE_ERROR.to_owned());
    };
    if let Some(extra) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("{extra}: Extra inputs are not permitted"));
    }

    let model = match field(&obj, "model") {
        None => return Err("model: Field required".to_owned()),
        Some(model) => describe_string(model, "model")?.to_owned(),
    };
    let max_tokens = match (field(&obj, "max_tokens"), endpoint) {
        (None, Endpoint::Messages) => return Err("max_tokens: Field required".to_owned()),
        (None, Endpoint::CountTokens) => None,
        (Some(value), _) => Some(integer_at_least(value, "max_tokens", 1)?),
    };
    let conversation = content::parse_messages(field(&obj, "messages"))?;
    let system_tokens = content::parse_system(field(&obj, "system"))?;

    let temperature = number_in(&obj, "temperature", 0.0, 1.0)?;
    number_in(&obj, "top_p", 0.0, 1.0)?;
    if let Some(top_k) = field(&obj, "top_k") {
        integer_at_least(top_k, "top_k", 0)?;
    }
    let stream = match field(&obj, "stream") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("stream: Input should be a valid boolean".to_owned()),
    };
    let stop_sequences = match field(&obj, "stop_sequences") {
        None => Vec::new(),
        Some(list) => describe_list(list, "stop_sequences")?
            .iter()
            .enumerate()
            .map(|(k, s)| describe_string(s, &format!("stop_sequences.{k}")).map(str::to_owned))
            .collect::<Result<_, _>>()?,
    };

    let (names, tool_tokens) = parse_tools(field(&obj, "tools"))?;
    let (tool, forced) = choose_tool(field(&obj, "tool_choice"), &names)?;
    let thinking = parse_thinking(field(&obj, "thinking"), max_tokens)?;
    if thinking {
        if temperature.is_some_and(|t| t != 1.0) {
            return Err(
                "`temperature` may only be set to 1 when thinking is enabled. Please \
                 consult our documentation at https://docs.claude.com/en/docs/build-with-claude/\
                 extended-thinking#feature-compatibility"
                    .to_owned(),
            );
        }
        if forced {
            return Err("Thinking may not be enabled when tool_choice forces tool use.".to_owned());
        }
    }

    Ok(MessagesRequest {
        model,
        max_tokens,
        stream,
        stop_sequences,
        tool,
        thinking,
        input_tokens: conversation.input_tokens + system_tokens + tool_tokens,
        conversation,
    })
}

/// Checks `tools` and returns their names and the tokens of their
/// definitions (name, description and input schema as JSON).
fn parse_tools(tools: Option<&Value>) -> Result<(Vec<String>, usize), Invalid> {
    let Some(tools) = tools else {
        return Ok((Vec::new(), 0));
    };
    let mut names: Vec<String> = Vec::new();
    let mut count = 0;
    for (k, tool) in describe_list(tools, "tools")?.iter().enumerate() {
        let tool = describe_object(tool, &format!("tools.{k}"))?;
        // Server tools (`web_search_20250305`, ...) carry a `type` and no schema.
        let custom = matches!(
            field(tool, "type").and_then(Value::as_str),
            None | Some("custom")
        );
        let path = if custom {
            format!("tools.{k}.custom")
        } else {
            format!("tools.{k}")
        };
        let name = match field(tool, "name") {
            None => return Err(format!("{path}.name: Field required")),
            Some(name) => describe_string(name, &format!("{path}.name"))?,
        };
        if custom {
            let valid = (1..=128).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return Err(format!(
                    "{path}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
                ));
            }
            let schema = match field(tool, "input_schema") {
                None => return Err(format!("{path}.input_schema: Field required")),
                Some(schema) => schema,
            };
            describe_object(schema, &format!("{path}.input_schema"))?;
            count += tokens::count(&schema.to_string());
            if let Some(description) = field(tool, "description") {
                count += tokens::count(describe_string(
                    description,
                    &format!("{path}.description"),
                )?);
            }
        }
        if names.iter().any(|n| n == name) {
            return Err("tools: Tool names must be unique.".to_owned());
        }
        count += tokens::count(name);
        names.push(name.to_owned());
    }
    Ok((names, count))
}

/// The tool a tool-calling answer uses, and whether `tool_choice` forces
/// one.
fn choose_tool(
    choice: Option<&Value>,
    names: &[String],
) -> Result<(Option<String>, bool), Invalid> {
    let first = names.first().cloned();
    let Some(choice) = choice else {
        return Ok((first, false));
    };
    let choice = describe_object(choice, "tool_choice")?;
    match field(choice, "type").and_then(Value::as_str) {
        Some("auto") => Ok((first, false)),
        Some("none") => Ok((None, false)),
        Some("any") if names.is_empty() => {
            Err("tool_choice: tool_choice.type 'any' requires tools to be provided.".to_owned())
        }
        Some("any") => Ok((first, true)),
        Some("tool") => {
            let name = match field(choice, "name") {
                None => return Err("tool_choice.tool.name: Field required".to_owned()),
                Some(name) => describe_string(name, "tool_choice.tool.name")?,
            };
            if !names.iter().any(|n| n == name) {
                return Err(format!(
                    "tool_choice.tool.name: Tool '{name}' not found in provided tools"
                ));
            }
            Ok((Some(name.to_owned()), true))
        }
        _ => Err(
            "tool_choice: Input tag found using 'type' does not match any of the expected \
             tags: 'auto', 'any', 'tool', 'none'"
                .to_owned(),
        ),
    }
}

/// Whether extended thinking is on, after checking its budget.
fn parse_thinking(thinking: Option<&Value>, max_tokens: Option<usize>) -> Result<bool, Invalid> {
    let Some(thinking) = thinking else {
        return Ok(false);
    };
    let thinking = describe_object(thinking, "thinking")?;
    match field(thinking, "type").and_then(Value::as_str) {
        Some("disabled") => Ok(false),
        Some("enabled") => {
            let budget = match field(thinking, "budget_tokens") {
                None => return Err("thinking.enabled.budget_tokens: Field required".to_owned()),
                Some(budget) => integer_at_least(budget, "thinking.enabled.budget_tokens", 1024)?,
            };
            if max_tokens.is_some_and(|max| max <= budget) {
                return Err(
                    "`max_tokens` must be greater than `thinking.budget_tokens`. Please \
                     consult our documentation at https://docs.claude.com/en/docs/\
                     build-with-claude/extended-thinking#max-tokens-and-context-window-size"
                        .to_owned(),
                );
            }
            Ok(true)
        }
        _ => Err(
            "thinking: Input tag found using 'type' does not match any of the expected \
             tags: 'enabled', 'disabled'"
                .to_owned(),
        ),
    }
}
