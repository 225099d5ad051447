//! The `system` and `messages` fields of a Messages request: their block
//! types, Anthropic's rules on roles and tool pairing, and the text input
//! tokens are counted from.
//!
//! Error messages follow Anthropic's validator: a dotted path to the
//! offending value, then what was wrong with it.

use serde_json::{Map, Value};

use super::request::{Invalid, describe_list, describe_object, describe_string, field};
use crate::tokens;

/// What the simulated answer needs from the conversation.
#[derive(Debug, Default)]
pub(crate) struct Conversation {
    /// The text blocks of the last user message that has any, concatenated.
    pub(crate) last_user_text: String,
    /// When the last message is a user message with `tool_result` blocks,
    /// their text, one result per line.
    pub(crate) tool_results: Option<String>,
    /// Tokens in the system prompt and every message (see the module
    /// documentation of `anthropic` for what counts).
    pub(crate) input_tokens: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Assistant,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug)]
enum Block {
    Text(String),
    ToolUse {
        id: String,
    },
    ToolResult {
        tool_use_id: String,
        text: String,
    },
    /// Images, documents, thinking and the rest: nothing the answer uses.
    Other,
}

#[derive(Debug)]
struct Turn {
    role: Role,
    blocks: Vec<Block>,
}

/// Block types Anthropic accepts in messages.
const BLOCK_TYPES: &[&str] = &[
    "text",
    "image",
    "document",
    "search_result",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "server_tool_use",
    "web_search_tool_result",
];

const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Checks `system` (a string or a list of text blocks) and counts its tokens.
pub(crate) fn parse_system(system: Option<&Value>) -> Result<usize, Invalid> {
    match system {
        None => Ok(0),
        Some(Value::String(text)) => Ok(tokens::count(text)),
        Some(Value::Array(blocks)) => {
            let mut count = 0;
            for (k, block) in blocks.iter().enumerate() {
                let path = format!("system.{k}");
                let block = describe_object(block, &path)?;
                if field(block, "type").and_then(Value::as_str) != Some("text") {
                    return Err(format!("{path}.type: Input should be 'text'"));
                }
                count += tokens::count(text_field(block, &format!("{path}.text"))?);
            }
            Ok(count)
        }
        Some(_) => Err("system: Input should be a valid list".to_owned()),
    }
}

/// Checks `messages` against Anthropic's rules and extracts what the answer
/// needs.
pub(crate) fn parse_messages(messages: Option<&Value>) -> Result<Conversation, Invalid> {
    let items = describe_list(
        messages.ok_or_else(|| "messages: Field required".to_owned())?,
        "messages",
    )?;
    if items.is_empty() {
        return Err("messages: at least one message is required".to_owned());
    }
    let mut input_tokens = 0;
    let mut turns = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        turns.push(parse_turn(item, i, &mut input_tokens)?);
    }
    check_order(&turns)?;
    check_tool_pairing(&turns)?;

    let last_user_text = turns
        .iter()
        .rev()
        .filter(|turn| turn.role == Role::User)
        .map(|turn| {
            turn.blocks
                .iter()
                .filter_map(|block| match block {
                    Block::Text(text) => Some(text.as_str()),
                    _ => None,
                })
                .collect::<String>()
        })
        .find(|text| !text.is_empty())
        .unwrap_or_default();
    let tool_results = turns
        .last()
        .filter(|turn| turn.role == Role::User)
        .map(|turn| {
            turn.blocks
                .iter()
                .filter_map(|block| match block {
                    Block::ToolResult { text, .. } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .filter(|results| !results.is_empty())
        .map(|results| results.join("\n"));
    Ok(Conversation {
        last_user_text,
        tool_results,
        input_tokens,
    })
}

fn parse_turn(item: &Value, i: usize, input_tokens: &mut usize) -> Result<Turn, Invalid> {
    let path = format!("messages.{i}");
    let message = describe_object(item, &path)?;
    let role = match field(message, "role") {
        None => return Err(format!("{path}.role: Field required")),
        Some(Value::String(role)) if role == "user" => Role::User,
        Some(Value::String(role)) if role == "assistant" => Role::Assistant,
        // A `system` role lands here too: Anthropic takes the system prompt
        // only as the top-level `system` field.
        Some(_) => {
            return Err(format!(
                "{path}.role: Input should be 'user' or 'assistant'"
            ));
        }
    };
    let blocks = match field(message, "content") {
        None => return Err(format!("{path}.content: Field required")),
        Some(Value::String(text)) if text.is_empty() => Vec::new(),
        Some(Value::String(text)) => {
            *input_tokens += tokens::count(text);
            vec![Block::Text(text.clone())]
        }
        Some(Value::Array(blocks)) => blocks
            .iter()
            .enumerate()
            .map(|(j, block)| {
                parse_block(block, &format!("{path}.content.{j}"), role, input_tokens)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("{path}.content: Input should be a valid list")),
    };
    Ok(Turn { role, blocks })
}

fn parse_block(
    value: &Value,
    path: &str,
    role: Role,
    input_tokens: &mut usize,
) -> Result<Block, Invalid> {
    let block = describe_object(value, path)?;
    let kind = match field(block, "type") {
        Some(Value::String(kind)) if BLOCK_TYPES.contains(&kind.as_str()) => kind.as_str(),
        Some(Value::String(kind)) => {
            let expected: Vec<String> = BLOCK_TYPES.iter().map(|t| format!("'{t}'")).collect();
            return Err(format!(
                "{path}: Input tag '{kind}' found using 'type' does not match any of the \
                 expected tags: {}",
                expected.join(", ")
            ));
        }
        _ => {
            return Err(format!(
                "{path}: Unable to extract tag using discriminator 'type'"
            ));
        }
    };
    let path = format!("{path}.{kind}");
    match kind {
        "text" => {
            let text = text_field(block, &format!("{path}.text"))?;
            if text.is_empty() {
                return Err("messages: text content blocks must be non-empty".to_owned());
            }
            *input_tokens += tokens::count(text);
            Ok(Block::Text(text.to_owned()))
        }
        "image" => {
            check_image(block, &path)?;
            Ok(Block::Other)
        }
        "tool_use" => {
            if role != Role::Assistant {
                return Err(format!(
                    "{path}: tool_use blocks may only appear in assistant messages"
                ));
            }
            let id = text_field(block, &format!("{path}.id"))?;
            let name = text_field(block, &format!("{path}.name"))?;
            let input = match field(block, "input") {
                None => return Err(format!("{path}.input: Field required")),
                Some(input @ Value::Object(_)) => input,
                Some(_) => return Err(format!("{path}.input: Input should be a valid dictionary")),
            };
            *input_tokens += tokens::count(name) + tokens::count(&input.to_string());
            Ok(Block::ToolUse { id: id.to_owned() })
        }
        "tool_result" => {
            if role != Role::User {
                return Err(format!(
                    "{path}: tool_result blocks may only appear in user messages"
                ));
            }
            let tool_use_id = text_field(block, &format!("{path}.tool_use_id"))?;
            if let Some(flag) = field(block, "is_error")
                && !flag.is_boolean()
            {
                return Err(format!("{path}.is_error: Input should be a valid boolean"));
            }
            let text = tool_result_text(field(block, "content"), &path)?;
            *input_tokens += tokens::count(&text);
            Ok(Block::ToolResult {
                tool_use_id: tool_use_id.to_owned(),
                text,
            })
        }
        "thinking" => {
            let thinking = text_field(block, &format!("{path}.thinking"))?;
            text_field(block, &format!("{path}.signature"))?;
            *input_tokens += tokens::count(thinking);
            Ok(Block::Other)
        }
        "redacted_thinking" => {
            text_field(block, &format!("{path}.data"))?;
            Ok(Block::Other)
        }
        _ => Ok(Block::Other),
    }
}

/// The string at `path`'s last segment in `block`.
fn text_field<'a>(block: &'a Map<String, Value>, path: &str) -> Result<&'a str, Invalid> {
    let name = path.rsplit('.').next().unwrap_or(path);
    match field(block, name) {
        None => Err(format!("{path}: Field required")),
        Some(value) => describe_string(value, path),
    }
}

fn check_image(block: &Map<String, Value>, path: &str) -> Result<(), Invalid> {
    let source = match field(block, "source") {
        None => return Err(format!("{path}.source: Field required")),
        Some(source) => describe_object(source, &format!("{path}.source"))?,
    };
    match field(source, "type").and_then(Value::as_str) {
        Some("base64") => {
            let path = format!("{path}.source.base64");
            let media_type = text_field(source, &format!("{path}.media_type"))?;
            if !IMAGE_TYPES.contains(&media_type) {
                return Err(format!(
                    "{path}.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' \
                     or 'image/webp'"
                ));
            }
            text_field(source, &format!("{path}.data"))?;
        }
        Some("url") => {
            text_field(source, &format!("{path}.source.url.url"))?;
        }
        Some("file") => {
            text_field(source, &format!("{path}.source.file.file_id"))?;
        }
        _ => {
            return Err(format!(
                "{path}.source: Input tag found using 'type' does not match any of the expected \
                 tags: 'base64', 'url', 'file'"
            ));
        }
    }
    Ok(())
}

/// A tool result's `content`: absent, a string, or text and image blocks.
fn tool_result_text(content: Option<&Value>, path: &str) -> Result<String, Invalid> {
    match content {
        None => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            for (k, block) in blocks.iter().enumerate() {
                let path = format!("{path}.content.{k}");
                let block = describe_object(block, &path)?;
                match field(block, "type").and_then(Value::as_str) {
                    Some("text") => text.push_str(text_field(block, &format!("{path}.text.text"))?),
                    Some("image") => check_image(block, &format!("{path}.image"))?,
                    Some("document" | "search_result") => {}
                    _ => {
                        return Err(format!(
                            "{path}: Input tag found using 'type' does not match any of the \
                             expected tags: 'text', 'image', 'search_result', 'document'"
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(format!("{path}.content: Input should be a valid list")),
    }
}

/// The first message is the user's, roles alternate, and only a final
/// assistant message (a prefill) may be empty.
fn check_order(turns: &[Turn]) -> Result<(), Invalid> {
    if turns.first().is_some_and(|turn| turn.role != Role::User) {
        return Err("messages: first message must use the \"user\" role".to_owned());
    }
    for pair in turns.windows(2) {
        if pair[0].role == pair[1].role {
            return Err(format!(
                "messages: roles must alternate between \"user\" and \"assistant\", but found \
                 multiple \"{}\" roles in a row",
                pair[1].role.name()
            ));
        }
    }
    let last = turns.len() - 1;
    for (i, turn) in turns.iter().enumerate() {
        let final_assistant = i == last && turn.role == Role::Assistant;
        if turn.blocks.is_empty() && !final_assistant {
            return Err(format!(
                "messages.{i}: all messages must have non-empty content except for the optional \
                 final assistant message"
            ));
        }
        if final_assistant
            && let Some(Block::Text(text)) = turn.blocks.last()
            && text.ends_with(char::is_whitespace)
        {
            return Err(
                "messages: final assistant content cannot end with trailing whitespace".to_owned(),
            );
        }
    }
    Ok(())
}

/// Every `tool_use` is answered by a `tool_result` in the very next
/// message, and every `tool_result` answers a `tool_use` of the message
/// before: the pairing clients most often get wrong when they translate
/// OpenAI-style `tool` messages.
fn check_tool_pairing(turns: &[Turn]) -> Result<(), Invalid> {
    let uses = |turn: &Turn| -> Vec<String> {
        turn.blocks
            .iter()
            .filter_map(|block| match block {
                Block::ToolUse { id } => Some(id.clone()),
                _ => None,
            })
            .collect()
    };
    for (i, turn) in turns.iter().enumerate() {
        let asked = if i == 0 {
            Vec::new()
        } else {
            uses(&turns[i - 1])
        };
        for (j, block) in turn.blocks.iter().enumerate() {
            if let Block::ToolResult { tool_use_id, .. } = block
                && !asked.contains(tool_use_id)
            {
                return Err(format!(
                    "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` \
                     blocks: {tool_use_id}. Each `tool_result` block must have a corresponding \
                     `tool_use` block in the previous message."
                ));
            }
        }
        // A final assistant message may still be waiting for its results.
        let Some(next) = turns.get(i + 1) else {
            continue;
        };
        let missing: Vec<String> = uses(turn)
            .into_iter()
            .filter(|id| {
                !next.blocks.iter().any(|block| {
                    matches!(block, Block::ToolResult { tool_use_id, .. } if tool_use_id == id)
                })
            })
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately \
                 after: {}. Each `tool_use` block must have a corresponding `tool_result` block \
                 in the next message.",
                i + 1,
                missing.join(", ")
            ));
        }
    }
    Ok(())
}
