//! OpenAI's chat models: context windows, output limits, list prices
//! (USD per million tokens, from OpenAI's pricing page) and capabilities.
//!
//! GPT-6 family added from sources read on 2026-11-25: OpenAI's model pages
//! (developers.openai.com/api/docs/models, .../models/gpt-6.2-sol,
//! .../models/gpt-6-sol), cross-checked against Vercel AI Gateway model
//! cards, LiteLLM's GPT-6 / GPT-6.2 launch notes and the price tables of
//! PromptFuel, codexometer and AI Token Meter. The prices given are the
//! Standard, short-context ones; requests above 272K input tokens cost 2x
//! input and cache, 1.5x output, which each GPT-6 model carries as a price
//! tier ([`LONG_CONTEXT_ABOVE`]).

use llmhost_provider_sdk::pricing::{self, prices, tier};
use llmhost_provider_sdk::types::{Capabilities, ModelInfo, Prices, Pricing};
use llmhost_provider_sdk::usd;

/// Prompts above this many input tokens pay the GPT-6 family's
/// long-context prices.
pub const LONG_CONTEXT_ABOVE: u32 = 272_000;

struct Entry {
    id: &'static str,
    name: &'static str,
    context: u32,
    max_output: u32,
    input: u64,
    output: u64,
    cached_input: Option<u64>,
    /// Reasoning model: no temperature/top-p, has reasoning effort.
    reasoning: bool,
    vision: bool,
    /// Function calling through Chat Completions. The GPT-6 family supports
    /// function calling there only with `reasoning_effort` `none` (which
    /// GPT-6.2 rejects), so it is off for them.
    tools: bool,
    /// Prices prompts above [`LONG_CONTEXT_ABOVE`] higher (the GPT-6
    /// family).
    long_context_tier: bool,
}

const MODELS: &[Entry] = &[
    Entry {
        id: "gpt-6.2-astra",
        name: "GPT-6.2 Astra",
        context: 1_050_000,
        max_output: 128_000,
        input: usd(8, 0),
        output: usd(40, 0),
        // "Cached input 60% cheaper" than GPT-6 Astra's $1 (LiteLLM).
        cached_input: Some(usd(0, 400_000)),
        reasoning: true,
        vision: true,
        tools: false,
        long_context_tier: true,
    },
    Entry {
        id: "gpt-6.2-sol",
        name: "GPT-6.2 Sol",
        context: 1_050_000,
        max_output: 128_000,
        input: usd(2, 0),
        output: usd(10, 0),
        cached_input: Some(usd(0, 100_000)),
        reasoning: true,
        vision: true,
        tools: false,
        long_context_tier: true,
    },
    Entry {
        id: "gpt-6-astra",
        name: "GPT-6 Astra",
        context: 1_050_000,
        max_output: 128_000,
        input: usd(10, 0),
        output: usd(50, 0),
        cached_input: Some(usd(1, 0)),
        reasoning: true,
        vision: true,
        tools: false,
        long_context_tier: true,
    },
    Entry {
        id: "gpt-6-sol",
        name: "GPT-6 Sol",
        context: 1_050_000,
        max_output: 128_000,
        input: usd(2, 0),
        output: usd(10, 0),
        cached_input: Some(usd(0, 200_000)),
        reasoning: true,
        vision: true,
        tools: false,
        long_context_tier: true,
    },
    Entry {
        id: "gpt-6-luna",
        name: "GPT-6 Luna",
        context: 1_050_000,
        max_output: 128_000,
        input: usd(0, 100_000),
        output: usd(0, 500_000),
        cached_input: Some(usd(0, 10_000)),
        reasoning: true,
        vision: true,
        tools: false,
        long_context_tier: true,
    },
    Entry {
        id: "gpt-5.1",
        name: "GPT-5.1",
        context: 400_000,
        max_output: 128_000,
        input: usd(1, 250_000),
        output: usd(10, 0),
        cached_input: Some(usd(0, 125_000)),
        reasoning: true,
        vision: true,
        tools: true,
        long_context_tier: false,
    },
    Entry {
        id: "gpt-5",
        name: "GPT-5",
        context: 400_000,
        max_output: 128_000,
        input: usd(1, 250_000),
        output: usd(10, 0),
        cached_input: Some(usd(0, 125_000)),
        reasoning: true,
        vision: true,
        tools: true,
        long_context_tier: false,
    },
    Entry {
        id: "gpt-5-mini",
        name: "GPT-5 mini",
        context: 400_000,
        max_output: 128_000,
        input: usd(0, 250_000),
        output: usd(2, 0),
        cached_input: Some(usd(0, 25_000)),
        reasoning: true,
        vision: true,
        tools: true,
        long_context_tier: false,
    },
    Entry {
        id: "gpt-5-nano",
        name: "GPT-5 nano",
        context: 400_000,
        max_output: 128_000,
        input: usd(0, 50_000),
        output: usd(0, 400_000),
        cached_input: Some(usd(0, 5_000)),
        reasoning: true,
        vision: true,
        tools: true,
        long_context_tier: false,
    },
    Entry {
        id: "gpt-4.1",
        name: "GPT-4.1",
        context: 1_047_576,
        max_output: 32_768,
        input: usd(2, 0),
        output: usd(8, 0),
        cached_input: Some(usd(0, 500_000)),
        reasoning: false,
        vision: true,
        tools: true,
        long_context_tier: false,
    },
    Entry {
        id: "gpt-4.1-mini",
        name: "GPT-4.1 mini",
        context: 1_047_576,
        max_output: 32_768,
        input: usd(0, 400_000),
        output: usd(1, 600_000),
        cached_input: Some(usd(0, 100_000)),
        reasoning: false,
        vision: true,
        tools: true,
        long_context_tier: false,
    },
    Entry {
        id: "gpt-4.1-nano",
        name: "GPT-4.1 nano",
        context: 1_047_576,
        max_output: 32_768,
        input: usd(0, 100_000),
        output: usd(0, 400_000),
        cached_input: Some(usd(0, 25_000)),
        reasoning: false,
        vision: true,
        tools: true,
        long_context_tier: false,
    },
    Entry {
        id: "gpt-4o",
        name: "GPT-4o",
        context: 128_000,
        max_output: 16_384,
        input: usd(2, 500_000),
        output: usd(10, 0),
        cached_input: Some(usd(1, 250_000)),
        reasoning: false,
        vision: true,
        tools: true,
        long_context_tier: false,
    },
    Entry {
        id: "gpt-4o-mini",
        name: "GPT-4o mini",
        context: 128_000,
        max_output: 16_384,
        input: usd(0, 150_000),
        output: usd(0, 600_000),
        cached_input: Some(usd(0, 75_000)),
        reasoning: false,
        vision: true,
        tools: true,
        long_context_tier: false,
    },
    Entry {
        id: "o3",
        name: "o3",
        context: 200_000,
        max_output: 100_000,
        input: usd(2, 0),
        output: usd(8, 0),
        cached_input: Some(usd(0, 500_000)),
        reasoning: true,
        vision: true,
        tools: true,
        long_context_tier: false,
    },
    Entry {
        id: "o4-mini",
        name: "o4-mini",
        context: 200_000,
        max_output: 100_000,
        input: usd(1, 100_000),
        output: usd(4, 400_000),
        cached_input: Some(usd(0, 275_000)),
        reasoning: true,
        vision: true,
        tools: true,
        long_context_tier: false,
    },
    Entry {
        id: "gpt-4-turbo",
        name: "GPT-4 Turbo",
        context: 128_000,
        max_output: 4_096,
        input: usd(10, 0),
        output: usd(30, 0),
        cached_input: None,
        reasoning: false,
        vision: true,
        tools: true,
        long_context_tier: false,
    },
    Entry {
        id: "gpt-3.5-turbo",
        name: "GPT-3.5 Turbo",
        context: 16_385,
        max_output: 4_096,
        input: usd(0, 500_000),
        output: usd(1, 500_000),
        cached_input: None,
        reasoning: false,
        vision: false,
        tools: true,
        long_context_tier: false,
    },
];

/// The tiktoken encoding OpenAI uses for `model`: `cl100k_base` for the
/// GPT-4 and GPT-3.5 generations, `o200k_base` for GPT-4o and everything
/// after (including models this catalogue does not know yet).
pub fn encoding_for(model: &str) -> &'static str {
    let legacy = (model.starts_with("gpt-4")
        && !model.starts_with("gpt-4o")
        && !model.starts_with("gpt-4.1"))
        || model.starts_with("gpt-3.5");
    if legacy { "cl100k_base" } else { "o200k_base" }
}

/// A model's prices: the list prices, and for the GPT-6 family the
/// long-context tier (2x input and cached input, 1.5x output).
fn pricing_of(m: &Entry) -> Pricing {
    let base = prices(m.input, m.output, m.cached_input, None);
    if !m.long_context_tier {
        return pricing::flat(base);
    }
    let doubled = pricing::scaled(&base, 2, 1);
    let long = Prices {
        output: pricing::scale(base.output, 3, 2),
        ..doubled
    };
    Pricing {
        base,
        tiers: vec![tier(LONG_CONTEXT_ABOVE, long)],
        off_peak: Vec::new(),
    }
}

/// Every model as the contract describes it.
pub fn catalogue() -> Vec<ModelInfo> {
    MODELS
        .iter()
        .map(|m| {
            let mut capabilities = Capabilities::STREAMING | Capabilities::JSON_MODE;
            if m.tools {
                capabilities.insert(
                    Capabilities::TOOLS
                        | Capabilities::TOOL_CHOICE_REQUIRED
                        | Capabilities::TOOL_CHOICE_NONE,
                );
            }
            if m.id != "gpt-3.5-turbo" && m.id != "gpt-4-turbo" {
                capabilities.insert(Capabilities::JSON_SCHEMA);
            }
            if m.cached_input.is_some() {
                capabilities.insert(Capabilities::PROMPT_CACHE);
            }
            if m.vision {
                capabilities.insert(Capabilities::VISION);
            }
            if m.reasoning {
                capabilities.insert(Capabilities::REASONING);
            } else {
                capabilities.insert(Capabilities::TEMPERATURE);
            }
            ModelInfo {
                id: m.id.into(),
                display_name: m.name.into(),
                context_window: m.context,
                max_output_tokens: m.max_output,
                pricing: pricing_of(m),
                capabilities,
                tokenizer: encoding_for(m.id).into(),
                tokenizer_exact: true,
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
            .unwrap_or_else(|| panic!("{id} is catalogued"))
    }

    #[test]
    fn gpt_6_prices_are_exact_micro_dollars() {
        let sol = model("gpt-6.2-sol");
        assert_eq!(
            (
                sol.pricing.base.input,
                sol.pricing.base.cache_read,
                sol.pricing.base.output
            ),
            (2_000_000, Some(100_000), 10_000_000)
        );
        assert_eq!(
            (sol.context_window, sol.max_output_tokens),
            (1_050_000, 128_000)
        );
        let luna = model("gpt-6-luna");
        assert_eq!(
            (
                luna.pricing.base.input,
                luna.pricing.base.cache_read,
                luna.pricing.base.output
            ),
            (100_000, Some(10_000), 500_000)
        );
        let astra = model("gpt-6.2-astra");
        assert_eq!(
            (astra.pricing.base.input, astra.pricing.base.output),
            (8_000_000, 40_000_000)
        );
        assert_eq!(
            model("gpt-6-astra").pricing.base.cache_read,
            Some(1_000_000)
        );
    }

    #[test]
    fn gpt_6_prompts_above_272k_pay_the_long_context_tier() {
        // (id, input, cached input, output) above 272K, in micro-dollars.
        let long = [
            ("gpt-6.2-astra", 16_000_000, 800_000, 60_000_000),
            ("gpt-6.2-sol", 4_000_000, 200_000, 15_000_000),
            ("gpt-6-astra", 20_000_000, 2_000_000, 75_000_000),
            ("gpt-6-sol", 4_000_000, 400_000, 15_000_000),
            ("gpt-6-luna", 200_000, 20_000, 750_000),
        ];
        for (id, input, cache_read, output) in long {
            let pricing = model(id).pricing;
            assert_eq!(pricing::check(&pricing), Ok(()), "{id}");
            assert!(pricing.off_peak.is_empty(), "{id}");
            let [tier] = &pricing.tiers[..] else {
                panic!("{id} has one tier");
            };
            assert_eq!(tier.above_input_tokens, 272_000, "{id}");
            let at_limit = pricing::applicable(&pricing, 272_000, 0);
            assert_eq!(
                at_limit, &pricing.base,
                "{id}: 272K itself is short context"
            );
            let above = pricing::applicable(&pricing, 272_001, 0);
            assert_eq!(
                (above.input, above.cache_read, above.output),
                (input, Some(cache_read), output),
                "{id}"
            );
            assert_eq!((above.cache_write, above.cache_write_hour), (None, None));
        }
        for m in catalogue().iter().filter(|m| !m.id.starts_with("gpt-6")) {
            assert!(m.pricing.tiers.is_empty(), "{}", m.id);
            assert!(m.pricing.off_peak.is_empty(), "{}", m.id);
        }
    }

    #[test]
    fn existing_prices_are_unchanged() {
        let mini = model("gpt-4o-mini");
        assert_eq!(
            (mini.pricing.base.input, mini.pricing.base.output),
            (150_000, 600_000)
        );
        let gpt_4o = model("gpt-4o");
        assert_eq!(
            (gpt_4o.pricing.base.input, gpt_4o.pricing.base.output),
            (2_500_000, 10_000_000)
        );
    }

    #[test]
    fn gpt_6_capabilities_and_tokenizer() {
        for id in [
            "gpt-6.2-astra",
            "gpt-6.2-sol",
            "gpt-6-astra",
            "gpt-6-sol",
            "gpt-6-luna",
        ] {
            let m = model(id);
            assert_eq!(m.tokenizer, "o200k_base", "{id}");
            assert!(m.tokenizer_exact, "{id}");
            assert!(
                m.capabilities
                    .contains(Capabilities::REASONING | Capabilities::VISION)
            );
            assert!(!m.capabilities.contains(Capabilities::TEMPERATURE), "{id}");
            assert!(!m.capabilities.contains(Capabilities::TOOLS), "{id}");
            assert!(m.capabilities.contains(Capabilities::PROMPT_CACHE), "{id}");
        }
        assert!(model("gpt-4.1").capabilities.contains(Capabilities::TOOLS));
    }
}
