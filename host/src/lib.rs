//! llmhost: serves large-language-model requests through provider plugins
//! compiled to WebAssembly components.
//!
//! Each vendor's wire protocol lives in a plugin (a component exporting the
//! `llm-provider` world of `wit/`); everything else lives here, once: which
//! hosts a plugin may reach, keys and base URLs, time and memory limits,
//! cost accounting. Embedders use [`Host`]; no wasmtime type appears in its
//! API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), llmhost::Error> {
//! use llmhost::{Host, Target, types::ChatRequest};
//!
//! let host = Host::builder().build().await?;
//! let request = ChatRequest::simple("gpt-4o-mini", "Say hello");
//! let outcome = host.chat(&Target::new("openai"), &request).await?;
//! println!("{} (cost: {:?})", outcome.response.content, outcome.cost_usd);
//! # Ok(())
//! # }
//! ```

pub mod cli;
mod error;
pub mod gateway;
mod host;
pub mod resilience;
pub mod router;
mod runtime;
pub mod secrets;
pub mod service;
pub mod settings;
pub mod shared;
pub mod store;
pub mod types;
pub mod views;

pub use error::{Error, ErrorKind, provider_error_kind};
pub use host::grants;
pub use host::{
    Access, Asks, CacheEntry, CacheReport, ChatOutcome, ChatStream, Grant, HealthOutcome, Host,
    HostBuilder, InstallRecord, Installed, PluginSummary, StreamCollector, Target,
};
pub use llmhost_registry as registry;
pub use router::{Plan, Route, Routed, RoutedStream, Router};
pub use runtime::{CONTRACT_PACKAGE, CONTRACT_VERSIONS, CompileSource, Limits, PluginOrigin};
pub use service::{
    AgentBudget, AgentOutcome, AgentStream, BudgetPeriod, BudgetUsage, Budgets, ConfigFields,
    ConfigPatch, ConfigPrices, ConfigService, ConfigUpdate, Experiment, ExperimentReport,
    LlmConfig, NewConfig, NewExperiment, NewVirtualKey, Spend, Sticky, Variant, VirtualKey,
    VirtualKeyStatus, VirtualKeys,
};
pub use settings::Settings;
pub use store::Store;

/// The host's tokenizer: the tiktoken tables plugins reach through the
/// `tokenizer` import, for embedders who want a count without a plugin.
pub mod tokenizer {
    /// Encodings the host has tables for.
    pub const ENCODINGS: &[&str] = &["o200k_base", "cl100k_base", "p50k_base", "r50k_base"];

    /// Tokens in `text` under `encoding`, with special-token markers
    /// counted as ordinary text (as plugins see it); `None` for an encoding
    /// the host does not have. Tables load on first use of each encoding.
    pub fn count(encoding: &str, text: &str) -> Option<usize> {
        let bpe = crate::runtime::tokenizer::encoding(encoding)?;
        Some(bpe.encode_ordinary(text).len())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_listed_encoding_counts_and_others_are_refused() {
            for encoding in ENCODINGS {
                assert!(count(encoding, "Hello, world!").is_some(), "{encoding}");
            }
            assert_eq!(count("o200k_base", "Hello!"), Some(2));
            // Special-token markers are text, not one token.
            assert!(count("cl100k_base", "<|endoftext|>").unwrap() > 1);
            assert_eq!(count("gpt2", "Hello"), None);
        }
    }
}

/// The built-in provider components, compiled by the build script.
mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_providers.rs"));
}

/// Ids of the providers compiled into this binary.
pub fn builtin_provider_ids() -> impl Iterator<Item = &'static str> {
    builtin::BUILTIN_PROVIDERS.iter().map(|(id, _)| *id)
}

/// The component bytes of a built-in provider, e.g. to write it into a
/// plugin directory or inspect it with WebAssembly tools.
pub fn builtin_component(id: &str) -> Option<&'static [u8]> {
    builtin::BUILTIN_PROVIDERS
        .iter()
        .find(|(builtin, _)| *builtin == id)
        .map(|(_, bytes)| *bytes)
}
