//! The contract's data types (`wit/types.wit`), with conveniences for
//! building requests in Rust.

pub use crate::runtime::bindings::llmhost::provider::types::*;

impl Message {
    /// A message with one text part.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: vec![ContentPart::Text(text.into())],
            name: None,
            cache_breakpoint: false,
        }
    }

    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        Self::text(Role::System, text)
    }

    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::text(Role::User, text)
    }

    /// An assistant message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::text(Role::Assistant, text)
    }

    /// The text parts of the message joined.
    pub fn text_content(&self) -> String {
        self.content
            .iter()
            .filter_map(|part| match part {
                ContentPart::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

impl ChatRequest {
    /// A request with the given model and messages and nothing else set.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            messages,
            temperature: None,
            max_tokens: None,
            top_p: None,
            stop: Vec::new(),
            tools: Vec::new(),
            tool_choice: None,
            response_format: None,
            reasoning: None,
            user: None,
        }
    }

    /// One user message to `model`.
    pub fn simple(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self::new(model, vec![Message::user(prompt)])
    }
}

impl Usage {
    /// Zero counts flagged as an estimate, for a stream whose plugin
    /// reported no usage.
    pub fn unreported() -> Self {
        Self {
            input_tokens: 0,
            output_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            estimated: true,
        }
    }

    /// The counts as the registry bills them.
    pub fn billed(&self) -> llmhost_registry::TokenUsage {
        llmhost_registry::TokenUsage {
            input: u64::from(self.input_tokens),
            output: u64::from(self.output_tokens),
            cache_read: u64::from(self.cache_read_tokens),
            cache_write: u64::from(self.cache_write_tokens),
        }
    }
}

impl FinishReason {
    /// The snake_case name (`stop`, `length`, `tool_calls`, …).
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Refusal => "refusal",
            FinishReason::Other(other) => other,
        }
    }
}

/// Names of the capability flags that are set.
pub fn capability_names(capabilities: Capabilities) -> Vec<String> {
    const NAMES: &[(Capabilities, &str)] = &[
        (Capabilities::STREAMING, "streaming"),
        (Capabilities::TOOLS, "tools"),
        (Capabilities::TOOL_CHOICE_REQUIRED, "tool_choice_required"),
        (Capabilities::TOOL_CHOICE_NONE, "tool_choice_none"),
        (Capabilities::VISION, "vision"),
        (Capabilities::JSON_MODE, "json_mode"),
        (Capabilities::JSON_SCHEMA, "json_schema"),
        (Capabilities::REASONING, "reasoning"),
        (Capabilities::PROMPT_CACHE, "prompt_cache"),
        (Capabilities::TEMPERATURE, "temperature"),
    ];
    NAMES
        .iter()
        .filter(|(flag, _)| capabilities.contains(*flag))
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

fn tool_call_bytes(call: &ToolCall) -> usize {
    call.id.len() + call.name.len() + call.arguments.len()
}

impl ContentPart {
    /// Bytes of answer text the part carries (what the response size
    /// limit counts; an image counts as its source text).
    pub fn answer_bytes(&self) -> usize {
        match self {
            ContentPart::Text(text) | ContentPart::RedactedThinking(text) => text.len(),
            ContentPart::Thinking(thinking) => {
                thinking.text.len() + thinking.signature.as_ref().map_or(0, String::len)
            }
            ContentPart::ToolUse(call) => tool_call_bytes(call),
            ContentPart::ToolResult(_) | ContentPart::Image(_) => 0,
        }
    }
}

impl ChatResponse {
    /// Bytes of answer the response carries, counted once per field.
    pub fn answer_bytes(&self) -> usize {
        self.content.len()
            + self.reasoning_content.as_ref().map_or(0, String::len)
            + self.tool_calls.iter().map(tool_call_bytes).sum::<usize>()
            + self
                .parts
                .iter()
                .map(ContentPart::answer_bytes)
                .sum::<usize>()
    }
}

impl Chunk {
    /// Bytes of answer the chunk adds (what the response size limit
    /// counts for a stream).
    pub fn answer_bytes(&self) -> usize {
        match self {
            Chunk::Text(text)
            | Chunk::Reasoning(text)
            | Chunk::ReasoningSignature(text)
            | Chunk::RedactedReasoning(text) => text.len(),
            Chunk::ToolCall(delta) => {
                delta.arguments.len()
                    + delta.id.as_ref().map_or(0, String::len)
                    + delta.name.as_ref().map_or(0, String::len)
            }
            Chunk::Start(start) => start.id.len() + start.model.len(),
            Chunk::Usage(_) | Chunk::Finish(_) => 0,
        }
    }
}
