//! Token counting through the host's native tokenizer
//! (`llmhost:provider/tokenizer@0.2.0`).
//!
//! Conversations are counted with OpenAI's published chat framing: each
//! message costs 3 tokens on top of its content (4 with a `name`, whose
//! tokens count too), and the reply is primed with 3 more.
//!
//! The tokenizer is the host's, so it exists only inside a component: in a
//! native build (a plugin's unit tests) every count is a `protocol` error
//! saying so, never a panic.

use crate::types::{ContentPart, Message, ProviderError, TokenCount, TokenInput};

/// Tokens added per message by the chat format.
pub const TOKENS_PER_MESSAGE: u32 = 3;
/// Tokens added by a message's `name` field.
pub const TOKENS_PER_NAME: u32 = 1;
/// Tokens priming the assistant's reply.
pub const REPLY_PRIMING_TOKENS: u32 = 3;

/// The host's tokenizer, inside a component.
#[cfg(target_arch = "wasm32")]
mod host {
    use crate::bindings::llmhost::provider::tokenizer::{self, TokenizerError};
    use crate::types::ProviderError;

    fn error(encoding: &str, err: TokenizerError) -> ProviderError {
        match err {
            TokenizerError::UnknownEncoding => {
                ProviderError::Protocol(format!("the host has no tokenizer named `{encoding}`"))
            }
        }
    }

    pub fn count(encoding: &str, text: &str) -> Result<u32, ProviderError> {
        tokenizer::count(encoding, text).map_err(|e| error(encoding, e))
    }

    pub fn count_many(encoding: &str, texts: &[String]) -> Result<Vec<u32>, ProviderError> {
        tokenizer::count_many(encoding, texts).map_err(|e| error(encoding, e))
    }
}

/// Outside a component there is no host to count with.
#[cfg(not(target_arch = "wasm32"))]
mod host {
    use crate::types::ProviderError;

    fn unavailable() -> ProviderError {
        ProviderError::Protocol(
            "token counts need the host's tokenizer, which exists only inside a component".into(),
        )
    }

    pub fn count(_encoding: &str, _text: &str) -> Result<u32, ProviderError> {
        Err(unavailable())
    }

    pub fn count_many(_encoding: &str, _texts: &[String]) -> Result<Vec<u32>, ProviderError> {
        Err(unavailable())
    }
}

/// Counts `input` with `encoding`. `exact` says whether the encoding is the
/// vendor's real tokenizer; framing of non-text parts (images) always makes
/// the count an estimate.
pub fn count(encoding: &str, input: &TokenInput, exact: bool) -> Result<TokenCount, ProviderError> {
    match input {
        TokenInput::Text(text) => {
            let tokens = host::count(encoding, text)?;
            Ok(TokenCount {
                tokens,
                estimated: !exact,
                encoding: encoding.to_owned(),
            })
        }
        TokenInput::Messages(messages) => {
            let (texts, has_non_text) = message_texts(messages);
            let counts = host::count_many(encoding, &texts)?;
            let content: u32 = counts.iter().sum();
            let names = messages.iter().filter(|m| m.name.is_some()).count() as u32;
            let framing = TOKENS_PER_MESSAGE * messages.len() as u32
                + TOKENS_PER_NAME * names
                + REPLY_PRIMING_TOKENS;
            Ok(TokenCount {
                tokens: content + framing,
                estimated: !exact || has_non_text,
                encoding: encoding.to_owned(),
            })
        }
    }
}

/// The texts whose tokens make up a conversation, and whether it holds
/// parts (images) whose cost the tokenizer cannot tell.
fn message_texts(messages: &[Message]) -> (Vec<String>, bool) {
    let mut texts = Vec::new();
    let mut has_non_text = false;
    for message in messages {
        if let Some(name) = &message.name {
            texts.push(name.clone());
        }
        for part in &message.content {
            match part {
                ContentPart::Text(text) => texts.push(text.clone()),
                ContentPart::ToolUse(call) => {
                    texts.push(call.name.clone());
                    texts.push(call.arguments.clone());
                }
                ContentPart::ToolResult(result) => texts.push(result.content.clone()),
                ContentPart::Thinking(thinking) => texts.push(thinking.text.clone()),
                ContentPart::Image(_) | ContentPart::RedactedThinking(_) => has_non_text = true,
            }
        }
    }
    (texts, has_non_text)
}
