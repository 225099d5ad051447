//! Guest-side SDK for llmhost provider plugins (contract
//! `llmhost:provider@0.2.0`).
//!
//! A provider plugin is a WebAssembly component that translates between
//! the contract's types and one vendor's wire protocol. It does no I/O:
//! it prepares HTTP request descriptions, and the host sends them (adding
//! the API key as the plugin's [`types::AuthScheme`] says, so the key never
//! enters the plugin), then hands back the response, or feeds a stream's
//! server-sent events, for the plugin to parse. This crate gives plugin
//! authors the generated bindings of the `llm-provider` world (`wit/` at
//! the repository root), a [`Provider`] trait over plain Rust types, request
//! builders and a header view ([`http`]), the OpenAI-compatible protocol as
//! pure functions ([`openai_compat`]), pricing builders ([`pricing`]), the
//! `vendor-params` merge ([`vendor_params`]), rate-limit headers
//! ([`ratelimit`]) and token counting through the host's tokenizer
//! ([`tokens`]).
//!
//! A plugin implements [`Provider`] and calls [`export_provider!`]:
//!
//! ```
//! use llmhost_provider_sdk::openai_compat::{self, Dialect};
//! use llmhost_provider_sdk::types::*;
//! use llmhost_provider_sdk::{Provider, StreamDecode, export_provider, tokens};
//!
//! static DIALECT: Dialect = Dialect::openai("my-vendor");
//!
//! struct MyVendor;
//!
//! impl Provider for MyVendor {
//!     fn info() -> ProviderInfo {
//!         ProviderInfo {
//!             id: "my-vendor".into(),
//!             name: "My Vendor".into(),
//!             version: "0.1.0".into(),
//!             default_base_url: "https://api.my-vendor.example/v1".into(),
//!             api_key_env: vec!["LLMHOST_MY_VENDOR_API_KEY".into()],
//!             base_url_env: Vec::new(),
//!             hosts: vec!["api.my-vendor.example".into()],
//!             auth: AuthScheme::Bearer,
//!             key_optional: false,
//!             stream_format: StreamFormat::Sse,
//!             models: Vec::new(),
//!         }
//!     }
//!     fn prepare_chat(config: &ProviderConfig, request: &ChatRequest) -> Result<HttpRequest, ProviderError> {
//!         openai_compat::prepare_chat(&DIALECT, config, request)
//!     }
//!     fn parse_chat(request: &ChatRequest, response: HttpResponse) -> Result<ChatStep, ProviderError> {
//!         openai_compat::parse_chat(&DIALECT, request, response)
//!     }
//!     fn prepare_stream(config: &ProviderConfig, request: &ChatRequest) -> Result<HttpRequest, ProviderError> {
//!         openai_compat::prepare_stream(&DIALECT, config, request)
//!     }
//!     fn open_stream(request: &ChatRequest, response: HttpResponse) -> Result<Box<dyn StreamDecode>, ProviderError> {
//!         Ok(Box::new(openai_compat::open_stream(&DIALECT, request, response)?))
//!     }
//!     fn prepare_count_tokens(_config: &ProviderConfig, _model: &str, input: &TokenInput) -> Result<CountStep, ProviderError> {
//!         tokens::count("o200k_base", input, false).map(CountStep::Done)
//!     }
//!     fn prepare_health_check(config: &ProviderConfig) -> Result<HttpRequest, ProviderError> {
//!         openai_compat::prepare_health_check(&DIALECT, config)
//!     }
//!     fn parse_health_check(response: HttpResponse) -> Result<HealthStep, ProviderError> {
//!         openai_compat::parse_health_check(&DIALECT, response)
//!     }
//! }
//!
//! export_provider!(MyVendor);
//! ```
//!
//! Plugins never sleep, retry or keep state between calls: the host creates
//! a fresh instance for every call and owns retry, rate-limit and fallback
//! policy, timeouts and the request's extra headers.

#[doc(hidden)]
pub mod export;
pub mod http;
pub mod openai_compat;
pub mod pricing;
pub mod ratelimit;
pub mod tokens;
pub mod vendor_params;

/// Bindings generated from the `llm-provider` world.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "llm-provider",
        generate_all,
        additional_derives: [PartialEq],
        pub_export_macro: true,
        default_bindings_module: "llmhost_provider_sdk::bindings",
    });
}

/// The contract's data types (`wit/types.wit`).
pub mod types {
    pub use crate::bindings::llmhost::provider::types::*;
}

use types::{
    ChatRequest, ChatStep, Chunk, CountStep, HealthStep, HttpRequest, HttpResponse, ProviderConfig,
    ProviderError, ProviderInfo, StreamInput, TokenInput,
};

/// What a provider plugin implements; [`export_provider!`] turns it into
/// the component's exports.
///
/// Every function is pure: it builds a request description or parses an
/// answer, and never performs I/O. The host sends each prepared request
/// below the configured base URL, adds the key per [`ProviderInfo::auth`],
/// and calls the matching `parse_*` with the answer, whatever its status:
/// mapping a failure onto [`ProviderError`] is the plugin's job.
pub trait Provider {
    /// The plugin's manifest: id, version, defaults, hosts, auth scheme,
    /// stream format, models.
    fn info() -> ProviderInfo;

    /// The request for one complete, non-streamed answer.
    fn prepare_chat(
        config: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<HttpRequest, ProviderError>;

    /// The answer to the request [`Provider::prepare_chat`] (or an earlier
    /// [`ChatStep::Send`]) asked for. `request` is the one `prepare_chat`
    /// was given (the SDK keeps it for the call).
    fn parse_chat(request: &ChatRequest, response: HttpResponse)
    -> Result<ChatStep, ProviderError>;

    /// The request for a streamed answer.
    fn prepare_stream(
        config: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<HttpRequest, ProviderError>;

    /// Opens the decoder of a streamed answer. Called with the response
    /// head (empty body) on a 2xx status, with the whole error body
    /// otherwise (return the mapped error then). `request` is the one
    /// [`Provider::prepare_stream`] was given.
    fn open_stream(
        request: &ChatRequest,
        response: HttpResponse,
    ) -> Result<Box<dyn StreamDecode>, ProviderError>;

    /// Counts tokens for `model`: locally ([`CountStep::Done`]) or by
    /// asking the vendor ([`CountStep::Send`]).
    fn prepare_count_tokens(
        config: &ProviderConfig,
        model: &str,
        input: &TokenInput,
    ) -> Result<CountStep, ProviderError>;

    /// The answer to a count [`Provider::prepare_count_tokens`] asked the
    /// vendor for; `model` and `input` are the ones it was given.
    ///
    /// The default is a `protocol` error, for plugins that count locally
    /// and never send.
    fn parse_count_tokens(
        model: &str,
        input: &TokenInput,
        response: HttpResponse,
    ) -> Result<CountStep, ProviderError> {
        let _ = (model, input, response);
        Err(ProviderError::Protocol(
            "this plugin counts tokens locally and sent no count request".into(),
        ))
    }

    /// The request that checks the vendor is reachable and the key is
    /// accepted.
    fn prepare_health_check(config: &ProviderConfig) -> Result<HttpRequest, ProviderError>;

    /// The answer to the health check.
    fn parse_health_check(response: HttpResponse) -> Result<HealthStep, ProviderError>;
}

/// Decodes one streamed answer: the host feeds it what the body brings,
/// in order, and takes the chunks each input completes.
pub trait StreamDecode {
    /// Decodes one read's worth of input: server-sent events for plugins
    /// whose `stream-format` is `sse`, raw bytes for `bytes`.
    fn feed(&mut self, input: StreamInput) -> Result<Vec<Chunk>, ProviderError>;

    /// The body ended: the last chunks, or a `protocol` error when the
    /// stream was cut before the vendor's end marker.
    fn finish(&mut self) -> Result<Vec<Chunk>, ProviderError>;
}

/// Exports a [`Provider`] implementation as the component's `provider`
/// interface. Use once per plugin crate.
///
/// The generated exports keep what `prepare_*` was given (the request, or
/// the count's model and input) until the matching `parse_*` or
/// `open_stream`; a parse without its prepare is a `protocol` error.
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        #[doc(hidden)]
        pub struct LlmhostProviderExport;

        impl $crate::bindings::exports::llmhost::provider::provider::Guest for LlmhostProviderExport {
            type StreamDecoder = $crate::export::Decoder;

            fn info() -> $crate::types::ProviderInfo {
                <$provider as $crate::Provider>::info()
            }

            fn prepare_chat(
                config: $crate::types::ProviderConfig,
                request: $crate::types::ChatRequest,
            ) -> Result<$crate::types::HttpRequest, $crate::types::ProviderError> {
                $crate::export::prepare_chat::<$provider>(config, request)
            }

            fn parse_chat(
                response: $crate::types::HttpResponse,
            ) -> Result<$crate::types::ChatStep, $crate::types::ProviderError> {
                $crate::export::parse_chat::<$provider>(response)
            }

            fn prepare_stream(
                config: $crate::types::ProviderConfig,
                request: $crate::types::ChatRequest,
            ) -> Result<$crate::types::HttpRequest, $crate::types::ProviderError> {
                $crate::export::prepare_stream::<$provider>(config, request)
            }

            fn open_stream(
                response: $crate::types::HttpResponse,
            ) -> Result<
                $crate::bindings::exports::llmhost::provider::provider::StreamDecoder,
                $crate::types::ProviderError,
            > {
                $crate::export::open_stream::<$provider>(response).map(|decoder| {
                    $crate::bindings::exports::llmhost::provider::provider::StreamDecoder::new(
                        $crate::export::Decoder::new(decoder),
                    )
                })
            }

            fn prepare_count_tokens(
                config: $crate::types::ProviderConfig,
                model: String,
                input: $crate::types::TokenInput,
            ) -> Result<$crate::types::CountStep, $crate::types::ProviderError> {
                $crate::export::prepare_count_tokens::<$provider>(config, model, input)
            }

            fn parse_count_tokens(
                response: $crate::types::HttpResponse,
            ) -> Result<$crate::types::CountStep, $crate::types::ProviderError> {
                $crate::export::parse_count_tokens::<$provider>(response)
            }

            fn prepare_health_check(
                config: $crate::types::ProviderConfig,
            ) -> Result<$crate::types::HttpRequest, $crate::types::ProviderError> {
                $crate::export::prepare_health_check::<$provider>(config)
            }

            fn parse_health_check(
                response: $crate::types::HttpResponse,
            ) -> Result<$crate::types::HealthStep, $crate::types::ProviderError> {
                $crate::export::parse_health_check::<$provider>(response)
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
