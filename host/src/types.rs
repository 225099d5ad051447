//! The data that crosses between embedders and providers: conversations,
//! requests, responses, stream chunks, model metadata and the typed error
//! hierarchy.
//!
//! These are the host's own types, not generated ones: each contract
//! version's bindings convert to and from them at the plugin boundary, so
//! plugins of different contract versions serve side by side and a new
//! contract version does not change this API. Types that will grow are
//! `#[non_exhaustive]`: build them with their constructors and set fields.
//! Every type is serde-serialisable, with snake_case names.
//!
//! Conventions, as in the contract: token counts are `u32` per request;
//! money is never a float (prices are integer micro-dollars per million
//! tokens); JSON payloads (tool arguments, schemas) are JSON text.

use serde::{Deserialize, Serialize};

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions for the model. Vendors without a system role
    /// (Anthropic) lift these into their own field.
    System,
    User,
    Assistant,
    /// Results of tool calls, sent back to the model.
    Tool,
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// Base64-encoded bytes with their media type.
    Base64(Base64Image),
    /// A URL the vendor fetches itself.
    Url(String),
}

/// Base64-encoded image bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base64Image {
    pub media_type: String,
    pub data: String,
}

/// A call of a tool, as the model asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ToolCall {
    /// The vendor's id of this call; a tool result refers back to it.
    pub id: String,
    pub name: String,
    /// The arguments as JSON text, as the model produced them (may be
    /// invalid JSON: the model wrote it).
    pub arguments: String,
}

/// The answer to a tool call, sent back to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolResult {
    pub tool_call_id: String,
    pub content: String,
    pub is_error: bool,
}

/// Reasoning text a model produced before its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thinking {
    pub text: String,
    /// An opaque signature some vendors require back in later turns.
    pub signature: Option<String>,
}

/// One piece of a message's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContentPart {
    Text(String),
    Image(ImageSource),
    ToolUse(ToolCall),
    ToolResult(ToolResult),
    Thinking(Thinking),
    /// Thinking the vendor returned encrypted; passed back unchanged.
    RedactedThinking(String),
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentPart>,
    /// Optional participant name (OpenAI `name`).
    pub name: Option<String>,
    /// A prompt-cache breakpoint after this message; ignored where
    /// unsupported.
    pub cache_breakpoint: bool,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    /// JSON Schema of the tool's input, as JSON text.
    pub input_schema: String,
}

/// Whether and which tools the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    Auto,
    Required,
    None,
    Named(String),
}

/// The shape the answer must take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema(JsonSchemaFormat),
}

/// A JSON schema the answer must follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    /// The schema as JSON text.
    pub schema: String,
    pub strict: bool,
}

/// How hard a reasoning model thinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningEffort {
    Minimal,
    Low,
    Medium,
    High,
}

/// Whether and how much a reasoning model may think.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReasoningConfig {
    /// Token budget for thinking (Anthropic `budget_tokens`).
    pub budget_tokens: Option<u32>,
    /// Effort level (OpenAI and xAI `reasoning_effort`).
    pub effort: Option<ReasoningEffort>,
}

/// One chat request. Build it with [`ChatRequest::new`] or
/// [`ChatRequest::simple`], then set fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub top_p: Option<f32>,
    /// Stop sequences; empty for none.
    pub stop: Vec<String>,
    /// Tools the model may call; empty for none.
    pub tools: Vec<ToolDefinition>,
    pub tool_choice: Option<ToolChoice>,
    pub response_format: Option<ResponseFormat>,
    /// `None` leaves thinking at the model's default.
    pub reasoning: Option<ReasoningConfig>,
    /// End-user id for the vendor's abuse monitoring.
    pub user: Option<String>,
    /// Vendor parameters the contract has no field for, as a JSON object's
    /// text; merged into the vendor's request body (contract 0.2 plugins
    /// only: a 0.1 plugin refuses a request that sets it).
    pub vendor_params: Option<String>,
}

/// Token counts of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// All prompt tokens, cached ones included.
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// Input tokens served from the vendor's prompt cache.
    pub cache_read_tokens: u32,
    /// Input tokens written to the vendor's prompt cache.
    pub cache_write_tokens: u32,
    /// Of `cache_write_tokens`, those written with the long (one-hour)
    /// time to live.
    pub cache_write_hour_tokens: u32,
    /// Output tokens spent on reasoning (included in `output_tokens`).
    pub reasoning_tokens: u32,
    /// True when the counts are a local estimate, not the vendor's.
    pub estimated: bool,
}

/// Why an answer ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// The max-tokens limit was reached.
    Length,
    ToolCalls,
    ContentFilter,
    Refusal,
    /// A value the contract does not know, as the vendor sent it.
    Other(String),
}

/// What the vendor's rate-limit headers said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RateLimits {
    pub requests_limit: Option<u64>,
    pub requests_remaining: Option<u64>,
    pub requests_reset_ms: Option<u64>,
    pub tokens_limit: Option<u64>,
    pub tokens_remaining: Option<u64>,
    pub tokens_reset_ms: Option<u64>,
}

/// One complete answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatResponse {
    /// The vendor's response id.
    pub id: String,
    /// The model that answered, as the vendor names it.
    pub model: String,
    pub content: String,
    pub reasoning_content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    /// The whole answer as content parts in the vendor's order: append it
    /// as the assistant's message to continue the conversation.
    pub parts: Vec<ContentPart>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub rate_limits: Option<RateLimits>,
    pub request_id: Option<String>,
}

/// A fragment of a streamed tool call; fragments with one `index` belong
/// to one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

/// The first chunk of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStart {
    pub id: String,
    pub model: String,
    pub rate_limits: Option<RateLimits>,
    pub request_id: Option<String>,
}

/// One event of a streamed answer: `start` first, then deltas, then
/// `finish` and `usage` in either order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Chunk {
    Start(StreamStart),
    Text(String),
    Reasoning(String),
    /// Signature of the thinking streamed so far (Anthropic).
    ReasoningSignature(String),
    /// A block of thinking the vendor returned encrypted.
    RedactedReasoning(String),
    ToolCall(ToolCallDelta),
    Usage(Usage),
    Finish(FinishReason),
}

/// What a model can do, as flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Capabilities(u16);

impl Capabilities {
    pub const STREAMING: Self = Self(1 << 0);
    pub const TOOLS: Self = Self(1 << 1);
    /// `ToolChoice::Required` is honoured.
    pub const TOOL_CHOICE_REQUIRED: Self = Self(1 << 2);
    /// `ToolChoice::None` is honoured.
    pub const TOOL_CHOICE_NONE: Self = Self(1 << 3);
    pub const VISION: Self = Self(1 << 4);
    pub const JSON_MODE: Self = Self(1 << 5);
    pub const JSON_SCHEMA: Self = Self(1 << 6);
    pub const REASONING: Self = Self(1 << 7);
    pub const PROMPT_CACHE: Self = Self(1 << 8);
    pub const TEMPERATURE: Self = Self(1 << 9);

    /// No capability.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw bits, in the contract's flag order.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Flags from raw bits; bits the host does not know are dropped.
    pub const fn from_bits_truncate(bits: u16) -> Self {
        Self(bits & ((1 << 10) - 1))
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Capabilities {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// Prices in micro-dollars (1e-6 USD) per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Prices {
    pub input: u64,
    pub output: u64,
    pub cache_read: Option<u64>,
    /// Writes with the vendor's default (short) cache time to live.
    pub cache_write: Option<u64>,
    /// Writes with the long (one-hour) time to live.
    pub cache_write_hour: Option<u64>,
}

/// Prices for prompts above a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTier {
    /// Applies when the input tokens (cached included) are above this.
    pub above_input_tokens: u32,
    pub prices: Prices,
}

/// Prices inside a daily window, in minutes after midnight UTC; a window
/// whose start is after its end runs over midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceWindow {
    pub start_minute: u16,
    pub end_minute: u16,
    pub prices: Prices,
}

/// A model's prices: base, by prompt length, off-peak.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Pricing {
    pub base: Prices,
    /// By ascending threshold; the highest one a request is above wins.
    pub tiers: Vec<PriceTier>,
    /// Off-peak windows; a tier, where one applies, wins over them.
    pub off_peak: Vec<PriceWindow>,
}

impl Pricing {
    /// One price set for every request.
    pub fn flat(base: Prices) -> Self {
        Self {
            base,
            tiers: Vec::new(),
            off_peak: Vec::new(),
        }
    }
}

/// One model a provider serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelInfo {
    pub id: String,
    pub display_name: String,
    pub context_window: u32,
    pub max_output_tokens: u32,
    pub pricing: Pricing,
    pub capabilities: Capabilities,
    /// tiktoken encoding used for local counts (`o200k_base`, ...).
    pub tokenizer: String,
    /// Whether `tokenizer` is the vendor's real tokenizer.
    pub tokenizer_exact: bool,
}

/// How the host authenticates a plugin's requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthScheme {
    /// `authorization: Bearer <key>`.
    Bearer,
    /// The key as the whole value of this header.
    Header(String),
    /// The key as this query parameter.
    Query(String),
    /// The vendor takes no key.
    None,
    /// The plugin itself handles the key (request signing, and every
    /// contract 0.1 plugin): it enters the plugin only when granted.
    PluginSigns,
}

impl AuthScheme {
    /// Whether the plugin itself sees the key under this scheme.
    pub fn plugin_sees_key(&self) -> bool {
        matches!(self, AuthScheme::PluginSigns)
    }
}

/// How a streamed body reaches a plugin's decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamFormat {
    /// Server-sent events, framed by the host.
    Sse,
    /// The body's bytes as they arrive.
    Bytes,
}

/// A plugin's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProviderInfo {
    /// Stable id used to address the provider (`openai`).
    pub id: String,
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    pub default_base_url: String,
    /// Environment variables holding the API key, first found wins.
    pub api_key_env: Vec<String>,
    /// Environment variables holding a base URL override.
    pub base_url_env: Vec<String>,
    /// Host names the plugin needs to reach.
    pub hosts: Vec<String>,
    /// How its requests are authenticated.
    pub auth: AuthScheme,
    /// With no key configured, requests go out without one instead of
    /// failing with `api_key_missing`.
    pub key_optional: bool,
    pub stream_format: StreamFormat,
    pub models: Vec<ModelInfo>,
}

impl ProviderInfo {
    /// A manifest with the given id and nothing else: no models, no
    /// hosts, bearer authentication.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: String::new(),
            version: String::new(),
            default_base_url: String::new(),
            api_key_env: Vec::new(),
            base_url_env: Vec::new(),
            hosts: Vec::new(),
            auth: AuthScheme::Bearer,
            key_optional: false,
            stream_format: StreamFormat::Sse,
            models: Vec::new(),
        }
    }
}

/// What to count tokens of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenInput {
    /// Plain text, counted without any framing.
    Text(String),
    /// A conversation, with the vendor's per-message framing tokens.
    Messages(Vec<Message>),
}

/// A token count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenCount {
    pub tokens: u32,
    pub estimated: bool,
    /// The tokenizer used (`o200k_base`, or the vendor's name).
    pub encoding: String,
}

/// What a health check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Number of models the vendor listed, when it lists them.
    pub models_available: Option<u32>,
    pub detail: String,
}

/// Everything the vendor said about a failure that a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorDetail {
    pub message: String,
    /// HTTP status, when the failure came from an HTTP response.
    pub status: Option<u16>,
    /// The vendor's own error code or type (`insufficient_quota`).
    pub vendor_code: Option<String>,
    /// The vendor's request id, for support tickets.
    pub request_id: Option<String>,
    /// How long the vendor asked us to wait before retrying.
    pub retry_after_ms: Option<u64>,
}

impl ErrorDetail {
    /// A detail with only a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }
}

/// Where an exchange with the vendor broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportPhase {
    /// Resolving the name or opening the connection (TLS included).
    Connect,
    /// Sending the request or waiting for the response head.
    Request,
    /// Reading the response body.
    Body,
    /// Somewhere the host could not tell.
    Unknown,
}

impl TransportPhase {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportPhase::Connect => "connect",
            TransportPhase::Request => "request",
            TransportPhase::Body => "body",
            TransportPhase::Unknown => "unknown",
        }
    }
}

/// What is known about a timeout or a connection failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TransportDetail {
    pub message: String,
    pub phase: TransportPhase,
    /// How long the exchange had run when it failed.
    pub elapsed_ms: Option<u64>,
}

impl TransportDetail {
    /// A detail with a message and a phase.
    pub fn new(message: impl Into<String>, phase: TransportPhase) -> Self {
        Self {
            message: message.into(),
            phase,
            elapsed_ms: None,
        }
    }
}

impl From<String> for TransportDetail {
    /// A detail with a message, phase unknown.
    fn from(message: String) -> Self {
        Self::new(message, TransportPhase::Unknown)
    }
}

impl From<&str> for TransportDetail {
    fn from(message: &str) -> Self {
        Self::new(message, TransportPhase::Unknown)
    }
}

impl std::fmt::Display for TransportDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if self.phase != TransportPhase::Unknown {
            write!(
                f,
                " (while {})",
                match self.phase {
                    TransportPhase::Connect => "connecting",
                    TransportPhase::Request => "sending the request",
                    TransportPhase::Body => "reading the body",
                    TransportPhase::Unknown => "",
                }
            )?;
        }
        if let Some(ms) = self.elapsed_ms {
            write!(f, " after {:.1}s", ms as f64 / 1000.0)?;
        }
        Ok(())
    }
}

/// The error hierarchy plugins map vendor failures onto; the host's retry,
/// fallback and reporting policy is decided on the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProviderError {
    /// No API key was configured; the payload names where to set one.
    ApiKeyMissing(String),
    /// The key was rejected or lacks permission (401, 403).
    Authentication(ErrorDetail),
    /// Too many requests for now (429).
    RateLimited(ErrorDetail),
    /// Out of credit or over a spend limit.
    QuotaExhausted(ErrorDetail),
    /// The prompt plus output exceeds the model's context window.
    TokenLimitExceeded(ErrorDetail),
    /// The vendor does not know the model.
    ModelNotSupported(ErrorDetail),
    /// The vendor rejected the request as malformed.
    InvalidRequest(ErrorDetail),
    /// The vendor is temporarily over capacity (503, 529).
    Overloaded(ErrorDetail),
    /// Any other vendor failure (5xx and unknown statuses).
    ServerError(ErrorDetail),
    /// A timeout while connecting or waiting for the vendor.
    Timeout(TransportDetail),
    /// A connection-level failure.
    Network(TransportDetail),
    /// The vendor's answer broke the protocol.
    Protocol(String),
}

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
            vendor_params: None,
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
            estimated: true,
            ..Self::default()
        }
    }

    /// Counts the vendor reported.
    pub fn new(input_tokens: u32, output_tokens: u32) -> Self {
        Self {
            input_tokens,
            output_tokens,
            ..Self::default()
        }
    }

    /// The counts as the registry bills them.
    pub fn billed(&self) -> llmhost_registry::TokenUsage {
        llmhost_registry::TokenUsage {
            input: u64::from(self.input_tokens),
            output: u64::from(self.output_tokens),
            cache_read: u64::from(self.cache_read_tokens),
            cache_write: u64::from(self.cache_write_tokens),
            cache_write_hour: u64::from(self.cache_write_hour_tokens),
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
