//! Anthropic's Claude models: context windows, output limits, list prices
//! (USD per million tokens, from Anthropic's pricing page) and
//! capabilities.
//!
//! Cache prices follow Anthropic's published multipliers: a cache read
//! costs 0.1× the input price, a cache write with the default 5-minute
//! lifetime 1.25× the input price.

use llmhost_provider_sdk::types::{Capabilities, ModelInfo, Pricing};
use llmhost_provider_sdk::usd;

/// Encoding used to estimate Claude token counts: Claude's own tokenizer
/// is not public, so counts made with it are flagged as estimates.
pub const ESTIMATE_ENCODING: &str = "o200k_base";

struct Entry {
    id: &'static str,
    name: &'static str,
    context: u32,
    max_output: u32,
    /// Input price; cache prices derive from it.
    input: u64,
    output: u64,
    /// Extended thinking (`thinking.budget_tokens`).
    reasoning: bool,
}

const MODELS: &[Entry] = &[
    Entry {
        id: "claude-opus-4-5",
        name: "Claude Opus 4.5",
        context: 200_000,
        max_output: 64_000,
        input: usd(5, 0),
        output: usd(25, 0),
        reasoning: true,
    },
    Entry {
        id: "claude-opus-4-1",
        name: "Claude Opus 4.1",
        context: 200_000,
        max_output: 32_000,
        input: usd(15, 0),
        output: usd(75, 0),
        reasoning: true,
    },
    Entry {
        id: "claude-sonnet-4-5",
        name: "Claude Sonnet 4.5",
        context: 200_000,
        max_output: 64_000,
        input: usd(3, 0),
        output: usd(15, 0),
        reasoning: true,
    },
    Entry {
        id: "claude-sonnet-4",
        name: "Claude Sonnet 4",
        context: 200_000,
        max_output: 64_000,
        input: usd(3, 0),
        output: usd(15, 0),
        reasoning: true,
    },
    Entry {
        id: "claude-haiku-4-5",
        name: "Claude Haiku 4.5",
        context: 200_000,
        max_output: 64_000,
        input: usd(1, 0),
        output: usd(5, 0),
        reasoning: true,
    },
    Entry {
        id: "claude-3-5-haiku-latest",
        name: "Claude Haiku 3.5",
        context: 200_000,
        max_output: 8_192,
        input: usd(0, 800_000),
        output: usd(4, 0),
        reasoning: false,
    },
];

/// The catalogue entry for `model`: its exact id, or a dated snapshot of
/// it (`claude-sonnet-4-5-20250929`, `claude-3-5-haiku-20241022`).
fn find(model: &str) -> Option<&'static Entry> {
    if let Some(entry) = MODELS.iter().find(|m| m.id == model) {
        return Some(entry);
    }
    let (base, date) = model.rsplit_once('-')?;
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    MODELS
        .iter()
        .find(|m| m.id == base || m.id.strip_suffix("-latest") == Some(base))
}

/// The most output tokens `model` may produce, if the catalogue knows it.
pub fn max_output_tokens(model: &str) -> Option<u32> {
    find(model).map(|m| m.max_output)
}

/// Every model as the contract describes it.
pub fn catalogue() -> Vec<ModelInfo> {
    MODELS
        .iter()
        .map(|m| {
            let mut capabilities = Capabilities::STREAMING
                | Capabilities::TOOLS
                | Capabilities::TOOL_CHOICE_REQUIRED
                | Capabilities::TOOL_CHOICE_NONE
                | Capabilities::VISION
                | Capabilities::PROMPT_CACHE
                | Capabilities::TEMPERATURE;
            if m.reasoning {
                capabilities.insert(Capabilities::REASONING);
            }
            ModelInfo {
                id: m.id.into(),
                display_name: m.name.into(),
                context_window: m.context,
                max_output_tokens: m.max_output,
                pricing: Pricing {
                    input: m.input,
                    output: m.output,
                    cache_read: Some(m.input / 10),
                    cache_write: Some(m.input * 5 / 4),
                },
                capabilities,
                tokenizer: ESTIMATE_ENCODING.into(),
                tokenizer_exact: false,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: &str) -> ModelInfo {
        catalogue()
            .into_iter()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("{id} in the catalogue"))
    }

    #[test]
    fn prices_are_exact_micro_dollars() {
        let opus = model("claude-opus-4-5").pricing;
        assert_eq!((opus.input, opus.output), (5_000_000, 25_000_000));
        assert_eq!(opus.cache_read, Some(500_000));
        assert_eq!(opus.cache_write, Some(6_250_000));
        let haiku = model("claude-3-5-haiku-latest").pricing;
        assert_eq!((haiku.input, haiku.output), (800_000, 4_000_000));
        assert_eq!(haiku.cache_read, Some(80_000));
        assert_eq!(haiku.cache_write, Some(1_000_000));
        let sonnet = model("claude-sonnet-4").pricing;
        assert_eq!(sonnet.cache_write, Some(3_750_000));
        assert_eq!(sonnet.cache_read, Some(300_000));
    }

    #[test]
    fn capabilities_and_tokenizer() {
        for m in catalogue() {
            assert_eq!(m.context_window, 200_000);
            assert_eq!(m.tokenizer, "o200k_base");
            assert!(!m.tokenizer_exact);
            assert!(!m.capabilities.contains(Capabilities::JSON_MODE));
            assert!(!m.capabilities.contains(Capabilities::JSON_SCHEMA));
            assert!(m.capabilities.contains(Capabilities::PROMPT_CACHE));
        }
        assert!(
            !model("claude-3-5-haiku-latest")
                .capabilities
                .contains(Capabilities::REASONING)
        );
        assert!(
            model("claude-opus-4-1")
                .capabilities
                .contains(Capabilities::REASONING)
        );
    }

    #[test]
    fn dated_snapshots_resolve_to_their_model() {
        assert_eq!(max_output_tokens("claude-opus-4-1"), Some(32_000));
        assert_eq!(
            max_output_tokens("claude-sonnet-4-5-20250929"),
            Some(64_000)
        );
        assert_eq!(max_output_tokens("claude-sonnet-4-20250514"), Some(64_000));
        assert_eq!(max_output_tokens("claude-3-5-haiku-20241022"), Some(8_192));
        assert_eq!(max_output_tokens("claude-sonnet-4-9"), None);
        assert_eq!(max_output_tokens("claude-future"), None);
    }
}
