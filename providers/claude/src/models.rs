//! Anthropic's Claude models: context windows, output limits, list prices
//! (USD per million tokens, from Anthropic's pricing page) and
//! capabilities.
//!
//! Cache prices follow Anthropic's published multipliers: a cache read
//! costs 0.1× the input price (unless an entry states its own), a cache
//! write with the default 5-minute lifetime 1.25× the input price and one
//! with the 1-hour lifetime 2× the input price.
//!
//! Claude Opus 5.5, Sonnet 5.5 and Haiku 5.5 added from sources read on
//! 2026-11-25: Anthropic's models overview and model pages
//! (platform.claude.com/docs/about-claude/models/overview,
//! .../models/opus-5-5/overview, .../models/sonnet-5-5/overview,
//! .../about-claude/models/whats-new-opus-5), cross-checked against the
//! price tables of claudit (v1.8.2, v1.9.2, checked against the live
//! pricing page on 2026-09-23 and 2026-10-24) and PromptFuel (v1.0.21,
//! v1.0.23). Haiku 5.5 is priced by prompt length: $0.10 / $0.50 for
//! prompts up to 100K tokens, $0.50 / $2.50 above, a price tier of its
//! entry (cache prices of the tier follow the same multipliers).

use llmhost_provider_sdk::pricing::tier;
use llmhost_provider_sdk::types::{Capabilities, ModelInfo, Prices, Pricing};
use llmhost_provider_sdk::usd;

/// Encoding used to estimate Claude token counts: Claude's own tokenizer
/// is not public, so counts made with it are flagged as estimates.
pub const ESTIMATE_ENCODING: &str = "o200k_base";

/// Prices that replace an entry's own for prompts above a length.
struct LongContext {
    /// Prompts (input tokens, cached ones included) above this many
    /// tokens are priced by this tier.
    above_input_tokens: u32,
    input: u64,
    output: u64,
}

struct Entry {
    id: &'static str,
    name: &'static str,
    context: u32,
    max_output: u32,
    /// Input price; cache prices derive from it.
    input: u64,
    output: u64,
    /// Extended thinking (`thinking.budget_tokens`) or adaptive thinking.
    reasoning: bool,
    /// Cache read price where Anthropic publishes one other than 0.1×
    /// input.
    cache_read: Option<u64>,
    /// Accepts non-default sampling parameters (`temperature`); from
    /// Claude Sonnet 5 on, setting them returns a 400.
    temperature: bool,
    /// Accepts a forced `tool_choice` (`any` or a named tool); on the 5.5
    /// models forced tool use returns an error.
    forced_tool: bool,
    /// A higher price for long prompts, where Anthropic charges one.
    long_context: Option<LongContext>,
}

const MODELS: &[Entry] = &[
    Entry {
        id: "claude-opus-5-5",
        name: "Claude Opus 5.5",
        context: 1_000_000,
        max_output: 128_000,
        input: usd(4, 0),
        output: usd(20, 0),
        reasoning: true,
        // 0.05× input.
        cache_read: Some(usd(0, 200_000)),
        temperature: false,
        forced_tool: false,
        long_context: None,
    },
    Entry {
        id: "claude-sonnet-5-5",
        name: "Claude Sonnet 5.5",
        context: 1_000_000,
        max_output: 128_000,
        input: usd(2, 0),
        output: usd(10, 0),
        reasoning: true,
        // Cut from $0.20 to $0.10 (0.05× input) on 2026-10-07.
        cache_read: Some(usd(0, 100_000)),
        temperature: false,
        forced_tool: false,
        long_context: None,
    },
    Entry {
        id: "claude-haiku-5-5",
        name: "Claude Haiku 5.5",
        context: 1_000_000,
        max_output: 128_000,
        input: usd(0, 100_000),
        output: usd(0, 500_000),
        reasoning: true,
        cache_read: None,
        temperature: false,
        forced_tool: false,
        long_context: Some(LongContext {
            above_input_tokens: 100_000,
            input: usd(0, 500_000),
            output: usd(2, 500_000),
        }),
    },
    Entry {
        id: "claude-opus-4-5",
        name: "Claude Opus 4.5",
        context: 200_000,
        max_output: 64_000,
        input: usd(5, 0),
        output: usd(25, 0),
        reasoning: true,
        cache_read: None,
        temperature: true,
        forced_tool: true,
        long_context: None,
    },
    Entry {
        id: "claude-opus-4-1",
        name: "Claude Opus 4.1",
        context: 200_000,
        max_output: 32_000,
        input: usd(15, 0),
        output: usd(75, 0),
        reasoning: true,
        cache_read: None,
        temperature: true,
        forced_tool: true,
        long_context: None,
    },
    Entry {
        id: "claude-sonnet-4-5",
        name: "Claude Sonnet 4.5",
        context: 200_000,
        max_output: 64_000,
        input: usd(3, 0),
        output: usd(15, 0),
        reasoning: true,
        cache_read: None,
        temperature: true,
        forced_tool: true,
        long_context: None,
    },
    Entry {
        id: "claude-sonnet-4",
        name: "Claude Sonnet 4",
        context: 200_000,
        max_output: 64_000,
        input: usd(3, 0),
        output: usd(15, 0),
        reasoning: true,
        cache_read: None,
        temperature: true,
        forced_tool: true,
        long_context: None,
    },
    Entry {
        id: "claude-haiku-4-5",
        name: "Claude Haiku 4.5",
        context: 200_000,
        max_output: 64_000,
        input: usd(1, 0),
        output: usd(5, 0),
        reasoning: true,
        cache_read: None,
        temperature: true,
        forced_tool: true,
        long_context: None,
    },
    Entry {
        id: "claude-3-5-haiku-latest",
        name: "Claude Haiku 3.5",
        context: 200_000,
        max_output: 8_192,
        input: usd(0, 800_000),
        output: usd(4, 0),
        reasoning: false,
        cache_read: None,
        temperature: true,
        forced_tool: true,
        long_context: None,
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

/// Prices for an input and an output price, with the cache prices
/// Anthropic's multipliers give (`cache_read` where an entry states its
/// own).
fn prices(input: u64, output: u64, cache_read: Option<u64>) -> Prices {
    Prices {
        input,
        output,
        cache_read: Some(cache_read.unwrap_or(input / 10)),
        cache_write: Some(input * 5 / 4),
        cache_write_hour: Some(input * 2),
    }
}

/// An entry's prices: its own, and its long-context tier where it has one.
fn pricing(entry: &Entry) -> Pricing {
    Pricing {
        base: prices(entry.input, entry.output, entry.cache_read),
        tiers: entry
            .long_context
            .iter()
            .map(|long| {
                tier(
                    long.above_input_tokens,
                    prices(long.input, long.output, None),
                )
            })
            .collect(),
        off_peak: Vec::new(),
    }
}

/// Every model as the contract describes it.
pub fn catalogue() -> Vec<ModelInfo> {
    MODELS
        .iter()
        .map(|m| {
            let mut capabilities = Capabilities::STREAMING
                | Capabilities::TOOLS
                | Capabilities::TOOL_CHOICE_NONE
                | Capabilities::VISION
                | Capabilities::PROMPT_CACHE;
            if m.forced_tool {
                capabilities.insert(Capabilities::TOOL_CHOICE_REQUIRED);
            }
            if m.temperature {
                capabilities.insert(Capabilities::TEMPERATURE);
            }
            if m.reasoning {
                capabilities.insert(Capabilities::REASONING);
            }
            ModelInfo {
                id: m.id.into(),
                display_name: m.name.into(),
                context_window: m.context,
                max_output_tokens: m.max_output,
                pricing: pricing(m),
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

    /// The base prices of `id`, asserting it has no tier.
    fn flat(id: &str) -> Prices {
        let pricing = model(id).pricing;
        assert!(pricing.tiers.is_empty(), "{id} has no long-context tier");
        assert!(pricing.off_peak.is_empty(), "{id} has no off-peak window");
        pricing.base
    }

    #[test]
    fn prices_are_exact_micro_dollars() {
        let opus = flat("claude-opus-4-5");
        assert_eq!((opus.input, opus.output), (5_000_000, 25_000_000));
        assert_eq!(opus.cache_read, Some(500_000));
        assert_eq!(opus.cache_write, Some(6_250_000));
        assert_eq!(opus.cache_write_hour, Some(10_000_000));
        let haiku = flat("claude-3-5-haiku-latest");
        assert_eq!((haiku.input, haiku.output), (800_000, 4_000_000));
        assert_eq!(haiku.cache_read, Some(80_000));
        assert_eq!(haiku.cache_write, Some(1_000_000));
        assert_eq!(haiku.cache_write_hour, Some(1_600_000));
        let sonnet = flat("claude-sonnet-4");
        assert_eq!(sonnet.cache_write, Some(3_750_000));
        assert_eq!(sonnet.cache_write_hour, Some(6_000_000));
        assert_eq!(sonnet.cache_read, Some(300_000));
        let sonnet_4_5 = flat("claude-sonnet-4-5");
        assert_eq!(
            (sonnet_4_5.input, sonnet_4_5.output),
            (3_000_000, 15_000_000)
        );
        let opus_5_5 = flat("claude-opus-5-5");
        assert_eq!((opus_5_5.input, opus_5_5.output), (4_000_000, 20_000_000));
        assert_eq!(opus_5_5.cache_read, Some(200_000));
        assert_eq!(opus_5_5.cache_write, Some(5_000_000));
        assert_eq!(opus_5_5.cache_write_hour, Some(8_000_000));
        let sonnet_5_5 = flat("claude-sonnet-5-5");
        assert_eq!(
            (sonnet_5_5.input, sonnet_5_5.output),
            (2_000_000, 10_000_000)
        );
        assert_eq!(sonnet_5_5.cache_read, Some(100_000));
        assert_eq!(sonnet_5_5.cache_write, Some(2_500_000));
        assert_eq!(sonnet_5_5.cache_write_hour, Some(4_000_000));
    }

    #[test]
    fn every_model_prices_one_hour_cache_writes_at_twice_input() {
        for m in catalogue() {
            let tiers = m.pricing.tiers.iter().map(|t| &t.prices);
            for prices in std::iter::once(&m.pricing.base).chain(tiers) {
                assert_eq!(prices.cache_write_hour, Some(prices.input * 2), "{}", m.id);
                assert_eq!(prices.cache_write, Some(prices.input * 5 / 4), "{}", m.id);
            }
        }
    }

    #[test]
    fn haiku_5_5_prompts_above_100k_tokens_cost_more() {
        let pricing = model("claude-haiku-5-5").pricing;
        let base = pricing.base;
        assert_eq!((base.input, base.output), (100_000, 500_000));
        assert_eq!(base.cache_read, Some(10_000));
        assert_eq!(base.cache_write, Some(125_000));
        assert_eq!(base.cache_write_hour, Some(200_000));
        let [tier] = pricing.tiers.as_slice() else {
            panic!("one long-context tier, got {:?}", pricing.tiers);
        };
        assert_eq!(tier.above_input_tokens, 100_000);
        let long = &tier.prices;
        assert_eq!((long.input, long.output), (500_000, 2_500_000));
        assert_eq!(long.cache_read, Some(50_000));
        assert_eq!(long.cache_write, Some(625_000));
        assert_eq!(long.cache_write_hour, Some(1_000_000));
        assert!(pricing.off_peak.is_empty());
    }

    #[test]
    fn capabilities_and_tokenizer() {
        let five_five = ["claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"];
        for m in catalogue() {
            if five_five.contains(&m.id.as_str()) {
                assert_eq!(m.context_window, 1_000_000, "{}", m.id);
                assert_eq!(m.max_output_tokens, 128_000, "{}", m.id);
                assert!(!m.capabilities.contains(Capabilities::TEMPERATURE));
                assert!(!m.capabilities.contains(Capabilities::TOOL_CHOICE_REQUIRED));
                assert!(m.capabilities.contains(Capabilities::REASONING));
            } else {
                assert_eq!(m.context_window, 200_000, "{}", m.id);
                assert!(m.capabilities.contains(Capabilities::TEMPERATURE));
            }
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
        assert_eq!(max_output_tokens("claude-opus-5-5"), Some(128_000));
        assert_eq!(max_output_tokens("claude-sonnet-4-9"), None);
        assert_eq!(max_output_tokens("claude-future"), None);
    }
}
