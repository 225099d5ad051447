//! xAI's Grok chat models: context windows, list prices (USD per million
//! tokens: input, cached input, output) and capabilities, from xAI's
//! "Models and Pricing" page and its reasoning guide.
//!
//! xAI publishes no output limit apart from the context window:
//! `max_completion_tokens` defaults to "as many as needed up to the
//! context", so the context window is the output limit given here.
//! grok-4 and the grok-4-fast models charge twice these prices (input,
//! cached input and output) for prompts above 128K tokens, grok-4.5,
//! grok-4.3 and grok-4.20 for prompts of 200K tokens and more: the table
//! holds the base prices, and each of those models carries the doubled
//! ones as a price tier ([`LongContext`]).
//!
//! grok-4.5, grok-4.3 and grok-4.20 added from sources read on 2026-11-25:
//! xAI's docs (docs.x.ai/developers/grok-4-5, docs.x.ai/developers/models/
//! grok-4.20-0309), cross-checked against APIYI's Grok price list (checked
//! against xAI's by APIYI on 2026-07-13), the Zoo-Code grok-4.5 issue citing
//! xAI's pricing page and genai_otel_instrument v1.2.2 (grok-4.3, per
//! docs.x.ai/developers/models).

use llmhost_provider_sdk::pricing::{self, prices, tier};
use llmhost_provider_sdk::types::{Capabilities, ModelInfo, Pricing};
use llmhost_provider_sdk::usd;

/// Where a model's doubled long-context prices start.
#[derive(Clone, Copy)]
enum LongContext {
    /// One price at every prompt length.
    None,
    /// Above 128K (128,000) prompt tokens: grok-4 and grok-4-fast.
    Above128K,
    /// At 200K (200,000) prompt tokens and more, so above 199,999:
    /// grok-4.5, grok-4.3 and grok-4.20.
    From200K,
}

impl LongContext {
    /// The contract's threshold: the tier applies above it.
    fn above_input_tokens(self) -> Option<u32> {
        match self {
            Self::None => None,
            Self::Above128K => Some(128_000),
            Self::From200K => Some(199_999),
        }
    }
}

struct Entry {
    id: &'static str,
    name: &'static str,
    context: u32,
    input: u64,
    cached_input: u64,
    output: u64,
    /// Thinks before answering (reasoning tokens in the usage).
    reasoning: bool,
    /// Accepts images.
    vision: bool,
    long_context: LongContext,
}

const MODELS: &[Entry] = &[
    Entry {
        id: "grok-4.5",
        name: "Grok 4.5",
        context: 500_000,
        input: usd(2, 0),
        cached_input: usd(0, 500_000),
        output: usd(6, 0),
        reasoning: true,
        vision: true,
        long_context: LongContext::From200K,
    },
    Entry {
        id: "grok-4.3",
        name: "Grok 4.3",
        context: 1_000_000,
        input: usd(1, 250_000),
        cached_input: usd(0, 200_000),
        output: usd(2, 500_000),
        reasoning: true,
        vision: true,
        long_context: LongContext::From200K,
    },
    Entry {
        id: "grok-4.20-0309-reasoning",
        name: "Grok 4.20 (reasoning)",
        context: 1_000_000,
        input: usd(1, 250_000),
        cached_input: usd(0, 200_000),
        output: usd(2, 500_000),
        reasoning: true,
        vision: true,
        long_context: LongContext::From200K,
    },
    Entry {
        id: "grok-4",
        name: "Grok 4",
        context: 256_000,
        input: usd(3, 0),
        cached_input: usd(0, 750_000),
        output: usd(15, 0),
        reasoning: true,
        vision: true,
        long_context: LongContext::Above128K,
    },
    Entry {
        id: "grok-4-fast-reasoning",
        name: "Grok 4 Fast (reasoning)",
        context: 2_000_000,
        input: usd(0, 200_000),
        cached_input: usd(0, 50_000),
        output: usd(0, 500_000),
        reasoning: true,
        vision: true,
        long_context: LongContext::Above128K,
    },
    Entry {
        id: "grok-4-fast-non-reasoning",
        name: "Grok 4 Fast (non-reasoning)",
        context: 2_000_000,
        input: usd(0, 200_000),
        cached_input: usd(0, 50_000),
        output: usd(0, 500_000),
        reasoning: false,
        vision: true,
        long_context: LongContext::Above128K,
    },
    Entry {
        id: "grok-code-fast-1",
        name: "Grok Code Fast 1",
        context: 256_000,
        input: usd(0, 200_000),
        cached_input: usd(0, 20_000),
        output: usd(1, 500_000),
        reasoning: true,
        vision: false,
        long_context: LongContext::None,
    },
    Entry {
        id: "grok-3",
        name: "Grok 3",
        context: 131_072,
        input: usd(3, 0),
        cached_input: usd(0, 750_000),
        output: usd(15, 0),
        reasoning: false,
        vision: false,
        long_context: LongContext::None,
    },
    Entry {
        id: "grok-3-mini",
        name: "Grok 3 Mini",
        context: 131_072,
        input: usd(0, 300_000),
        cached_input: usd(0, 75_000),
        output: usd(0, 500_000),
        reasoning: true,
        vision: false,
        long_context: LongContext::None,
    },
];

/// The tiktoken encoding for local estimates. xAI's tokenizer is its own,
/// so every count is an estimate.
pub fn encoding_for(_model: &str) -> &'static str {
    "o200k_base"
}

/// A model's prices: the list prices, and twice each of them for long
/// prompts where the model charges more.
fn pricing_of(m: &Entry) -> Pricing {
    let base = prices(m.input, m.output, Some(m.cached_input), None);
    match m.long_context.above_input_tokens() {
        None => pricing::flat(base),
        Some(above) => Pricing {
            base,
            tiers: vec![tier(above, pricing::scaled(&base, 2, 1))],
            off_peak: Vec::new(),
        },
    }
}

/// Every model as the contract describes it.
pub fn catalogue() -> Vec<ModelInfo> {
    MODELS
        .iter()
        .map(|m| {
            // Function calling, `tool_choice` (`auto`, `required`, `none`, a
            // named function), structured outputs, prompt caching and
            // temperature work on every model; reasoning models reject only
            // presence/frequency penalties and `stop`.
            let mut capabilities = Capabilities::STREAMING
                | Capabilities::TOOLS
                | Capabilities::TOOL_CHOICE_REQUIRED
                | Capabilities::TOOL_CHOICE_NONE
                | Capabilities::JSON_MODE
                | Capabilities::JSON_SCHEMA
                | Capabilities::PROMPT_CACHE
                | Capabilities::TEMPERATURE;
            if m.reasoning {
                capabilities.insert(Capabilities::REASONING);
            }
            if m.vision {
                capabilities.insert(Capabilities::VISION);
            }
            ModelInfo {
                id: m.id.into(),
                display_name: m.name.into(),
                context_window: m.context,
                max_output_tokens: m.context,
                pricing: pricing_of(m),
                capabilities,
                tokenizer: encoding_for(m.id).into(),
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
            .unwrap_or_else(|| panic!("{id} is catalogued"))
    }

    #[test]
    fn lineup_and_prices() {
        let grok_4 = model("grok-4");
        assert_eq!(grok_4.context_window, 256_000);
        assert_eq!(
            (
                grok_4.pricing.base.input,
                grok_4.pricing.base.cache_read,
                grok_4.pricing.base.output
            ),
            (3_000_000, Some(750_000), 15_000_000)
        );
        let mini = model("grok-3-mini");
        assert_eq!(mini.context_window, 131_072);
        assert_eq!(
            (
                mini.pricing.base.input,
                mini.pricing.base.cache_read,
                mini.pricing.base.output
            ),
            (300_000, Some(75_000), 500_000)
        );
        assert_eq!(model("grok-4-fast-reasoning").context_window, 2_000_000);
        assert_eq!(
            model("grok-code-fast-1").pricing.base.cache_read,
            Some(20_000)
        );
        let grok_4_5 = model("grok-4.5");
        assert_eq!(grok_4_5.context_window, 500_000);
        assert_eq!(
            (
                grok_4_5.pricing.base.input,
                grok_4_5.pricing.base.cache_read,
                grok_4_5.pricing.base.output
            ),
            (2_000_000, Some(500_000), 6_000_000)
        );
        for id in ["grok-4.3", "grok-4.20-0309-reasoning"] {
            let m = model(id);
            assert_eq!(m.context_window, 1_000_000, "{id}");
            assert_eq!(
                (
                    m.pricing.base.input,
                    m.pricing.base.cache_read,
                    m.pricing.base.output
                ),
                (1_250_000, Some(200_000), 2_500_000),
                "{id}"
            );
        }
        let grok_3 = model("grok-3");
        assert_eq!(
            (grok_3.pricing.base.input, grok_3.pricing.base.output),
            (3_000_000, 15_000_000)
        );
        assert!(catalogue().iter().all(|m| !m.tokenizer_exact));
    }

    #[test]
    fn long_prompts_cost_twice_where_xai_says_so() {
        // (id, last prompt length at base prices, input, cached, output
        // above it, in micro-dollars).
        for (id, last_base, input, cached, output) in [
            ("grok-4", 128_000, 6_000_000, 1_500_000, 30_000_000),
            (
                "grok-4-fast-reasoning",
                128_000,
                400_000,
                100_000,
                1_000_000,
            ),
            (
                "grok-4-fast-non-reasoning",
                128_000,
                400_000,
                100_000,
                1_000_000,
            ),
            ("grok-4.5", 199_999, 4_000_000, 1_000_000, 12_000_000),
            ("grok-4.3", 199_999, 2_500_000, 400_000, 5_000_000),
            (
                "grok-4.20-0309-reasoning",
                199_999,
                2_500_000,
                400_000,
                5_000_000,
            ),
        ] {
            let pricing = model(id).pricing;
            assert_eq!(pricing::check(&pricing), Ok(()), "{id}");
            assert_eq!(pricing.tiers.len(), 1, "{id}");
            assert_eq!(
                pricing::applicable(&pricing, last_base, 0),
                &pricing.base,
                "{id}"
            );
            let long = pricing::applicable(&pricing, last_base + 1, 0);
            assert_eq!(
                (long.input, long.cache_read, long.output),
                (input, Some(cached), output),
                "{id}"
            );
        }
        for id in ["grok-code-fast-1", "grok-3", "grok-3-mini"] {
            let pricing = model(id).pricing;
            assert!(
                pricing.tiers.is_empty() && pricing.off_peak.is_empty(),
                "{id}"
            );
        }
    }

    #[test]
    fn capabilities_follow_the_model() {
        for id in [
            "grok-4.5",
            "grok-4.3",
            "grok-4.20-0309-reasoning",
            "grok-4",
            "grok-4-fast-reasoning",
            "grok-3-mini",
            "grok-code-fast-1",
        ] {
            assert!(
                model(id).capabilities.contains(Capabilities::REASONING),
                "{id}"
            );
        }
        for id in ["grok-4-fast-non-reasoning", "grok-3"] {
            assert!(
                !model(id).capabilities.contains(Capabilities::REASONING),
                "{id}"
            );
        }
        for id in [
            "grok-4.5",
            "grok-4.3",
            "grok-4.20-0309-reasoning",
            "grok-4",
            "grok-4-fast-reasoning",
            "grok-4-fast-non-reasoning",
        ] {
            assert!(
                model(id).capabilities.contains(Capabilities::VISION),
                "{id}"
            );
        }
        for id in ["grok-code-fast-1", "grok-3", "grok-3-mini"] {
            assert!(
                !model(id).capabilities.contains(Capabilities::VISION),
                "{id}"
            );
        }
        assert!(
            catalogue()
                .iter()
                .all(|m| m.capabilities.contains(Capabilities::TOOLS))
        );
    }
}
