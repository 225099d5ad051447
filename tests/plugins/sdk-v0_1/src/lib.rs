//! The guest SDK as it was for contract 0.1 (`wit/since_v0.1.0`), frozen
//! to build the 0.1 test fixtures (`tests/plugins/openai-v0_1`, the
//! misbehaving and hostile plugins). Its unit tests were left behind with
//! it: the live SDK (`providers/sdk`, contract 0.2) carries them, and the
//! host's 0.1 path is tested end to end through the fixtures. Do not
//! extend it; new plugins use `providers/sdk`.
//!
//! A provider plugin is a WebAssembly component that speaks one vendor's
//! wire protocol. This crate gives plugin authors everything besides the
//! protocol itself: the generated bindings of the `llm-provider` world
//! (`wit/` at the repository root), a [`Provider`] trait with plain Rust
//! types, an HTTP client over `wasi:http` that reads bodies incrementally
//! ([`http`]), an incremental Server-Sent Events parser ([`sse`]), the
//! OpenAI-compatible protocol core shared by several vendors
//! ([`openai_compat`]), and token counting through the host's native
//! tokenizer ([`tokens`]).
//!
//! A plugin implements [`Provider`] and calls [`export_provider!`]:
//!
//! ```ignore
//! use llmhost_provider_sdk::{Provider, export_provider, types::*};
//!
//! struct MyVendor;
//! impl Provider for MyVendor { /* info, chat, stream, count_tokens, health_check */ }
//! export_provider!(MyVendor);
//! ```
//!
//! Plugins never sleep, retry or keep state between calls: the host creates
//! a fresh instance for every request and owns retry, rate-limit and
//! fallback policy.

pub mod http;
pub mod openai_compat;
pub mod ratelimit;
pub mod sse;
pub mod tokens;

/// Bindings generated from the `llm-provider` world.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/since_v0.1.0",
        world: "llm-provider",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "llmhost_provider_sdk::bindings",
    });
}

/// The contract's data types (`wit/types.wit`).
pub mod types {
    pub use crate::bindings::llmhost::provider::types::*;
}

use std::cell::RefCell;
use types::{
    ChatRequest, ChatResponse, Chunk, HealthReport, ProviderConfig, ProviderError, ProviderInfo,
    TokenCount, TokenInput,
};

/// A source of stream chunks, returned by [`Provider::stream`].
pub trait ChunkSource {
    /// The next chunk; `Ok(None)` once the vendor's end marker arrived.
    fn next_chunk(&mut self) -> Result<Option<Chunk>, ProviderError>;
}

/// What a provider plugin implements; [`export_provider!`] turns it into
/// the component's exports.
pub trait Provider {
    /// The plugin's manifest. Must not make network calls.
    fn info() -> ProviderInfo;
    /// One complete answer.
    fn chat(config: ProviderConfig, request: ChatRequest) -> Result<ChatResponse, ProviderError>;
    /// A streamed answer.
    fn stream(
        config: ProviderConfig,
        request: ChatRequest,
    ) -> Result<Box<dyn ChunkSource>, ProviderError>;
    /// Token count for `model`.
    fn count_tokens(
        config: ProviderConfig,
        model: String,
        input: TokenInput,
    ) -> Result<TokenCount, ProviderError>;
    /// Reachability and key check.
    fn health_check(config: ProviderConfig) -> Result<HealthReport, ProviderError>;
}

/// The `chat-stream` resource handed to the host; wraps a [`ChunkSource`].
pub struct StreamResource(RefCell<Box<dyn ChunkSource>>);

impl StreamResource {
    /// Wraps a chunk source.
    pub fn new(source: Box<dyn ChunkSource>) -> Self {
        Self(RefCell::new(source))
    }
}

impl bindings::exports::llmhost::provider::provider::GuestChatStream for StreamResource {
    fn next(&self) -> Result<Option<Chunk>, ProviderError> {
        self.0.borrow_mut().next_chunk()
    }
}

/// Exports a [`Provider`] implementation as the component's `provider`
/// interface. Use once per plugin crate.
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        #[doc(hidden)]
        pub struct LlmhostProviderExport;

        impl $crate::bindings::exports::llmhost::provider::provider::Guest for LlmhostProviderExport {
            type ChatStream = $crate::StreamResource;

            fn info() -> $crate::types::ProviderInfo {
                <$provider as $crate::Provider>::info()
            }

            fn chat(
                config: $crate::types::ProviderConfig,
                request: $crate::types::ChatRequest,
            ) -> Result<$crate::types::ChatResponse, $crate::types::ProviderError> {
                <$provider as $crate::Provider>::chat(config, request)
            }

            fn stream(
                config: $crate::types::ProviderConfig,
                request: $crate::types::ChatRequest,
            ) -> Result<
                $crate::bindings::exports::llmhost::provider::provider::ChatStream,
                $crate::types::ProviderError,
            > {
                <$provider as $crate::Provider>::stream(config, request).map(|source| {
                    $crate::bindings::exports::llmhost::provider::provider::ChatStream::new(
                        $crate::StreamResource::new(source),
                    )
                })
            }

            fn count_tokens(
                config: $crate::types::ProviderConfig,
                model: String,
                input: $crate::types::TokenInput,
            ) -> Result<$crate::types::TokenCount, $crate::types::ProviderError> {
                <$provider as $crate::Provider>::count_tokens(config, model, input)
            }

            fn health_check(
                config: $crate::types::ProviderConfig,
            ) -> Result<$crate::types::HealthReport, $crate::types::ProviderError> {
                <$provider as $crate::Provider>::health_check(config)
            }
        }

        // Native builds (clippy, tests of the crate) type-check the exports
        // but do not emit them: their component-model symbol names are not
        // valid native linker symbols.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export!(LlmhostProviderExport with_types_in $crate::bindings);
    };
}

/// An [`types::ErrorDetail`] with only a message.
pub fn detail(message: impl Into<String>) -> types::ErrorDetail {
    types::ErrorDetail {
        message: message.into(),
        status: None,
        vendor_code: None,
        request_id: None,
        retry_after_ms: None,
    }
}

/// A price of `dollars` and `micros` millionths of a dollar per million
/// tokens, as the contract's exact micro-dollars: `usd(2, 500_000)` is
/// $2.50 per million tokens.
pub const fn usd(dollars: u64, micros: u64) -> u64 {
    dollars * 1_000_000 + micros
}

/// An answer as content parts, for vendors whose answers are reasoning
/// (unsigned), then text, then tool calls.
pub fn answer_parts(
    reasoning: Option<&str>,
    content: &str,
    tool_calls: &[types::ToolCall],
) -> Vec<types::ContentPart> {
    let mut parts = Vec::with_capacity(2 + tool_calls.len());
    if let Some(text) = reasoning.filter(|r| !r.is_empty()) {
        parts.push(types::ContentPart::Thinking(types::Thinking {
            text: text.to_owned(),
            signature: None,
        }));
    }
    if !content.is_empty() {
        parts.push(types::ContentPart::Text(content.to_owned()));
    }
    parts.extend(tool_calls.iter().cloned().map(types::ContentPart::ToolUse));
    parts
}

/// The text of a message: its text parts joined, other parts skipped.
pub fn message_text(message: &types::Message) -> String {
    let mut out = String::new();
    for part in &message.content {
        if let types::ContentPart::Text(text) = part {
            out.push_str(text);
        }
    }
    out
}
