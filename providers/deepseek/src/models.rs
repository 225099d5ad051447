//! DeepSeek's chat models: context windows, output limits, list prices and
//! capabilities, from DeepSeek's "Models & Pricing" page (DeepSeek-V3.2
//! behind both names: `deepseek-chat` is its non-thinking mode,
//! `deepseek-reasoner` its thinking mode) and its thinking-mode guide.
//!
//! `deepseek-flash` (DeepSeek-V4.1-Flash) and `deepseek-v4-pro`
//! (DeepSeek-V4-Pro-0813) added from sources read on 2026-11-25: DeepSeek's
//! "Models & Pricing" page (api-docs.deepseek.com/quick_start/pricing, USD
//! and CNY versions), cross-checked against the deepseek-api-pricing-2026
//! wiki (page checked 2026-10-27), the DeepSeek V4 notes of
//! arikusi/deepseek-mcp-server and Codeep v3.3.0. DeepSeek now bills the
//! V4 models at peak (01:00-04:00 and 06:00-10:00 UTC on weekdays) and
//! off-peak (half) rates. The table holds the peak rate as the base price,
//! and each V4 model carries the half rate as off-peak windows covering the
//! rest of the day ([`off_peak_windows`]). The contract's windows are daily,
//! so a weekend request inside the peak hours is charged the peak rate: an
//! upper bound, as the single price was before.

use llmhost_provider_sdk::pricing::{self, prices, utc, window};
use llmhost_provider_sdk::types::{Capabilities, ModelInfo, PriceWindow, Prices, Pricing};
use llmhost_provider_sdk::usd;

/// "128K" on the pricing page; DeepSeek's own context-length errors name
/// 131072 tokens.
const CONTEXT_WINDOW: u32 = 131_072;

/// Both V3.2 modes have one price: input on a cache miss, input on a cache
/// hit, output (reasoning included).
const INPUT: u64 = usd(0, 280_000);
const CACHE_HIT: u64 = usd(0, 28_000);
const OUTPUT: u64 = usd(0, 420_000);

/// "1M" on the pricing page for the V4 models (1,048,576 tokens as other
/// hosts of them state it).
const V4_CONTEXT_WINDOW: u32 = 1_048_576;

/// "Maximum: 384K" for the V4 models, taken as 384,000 to stay below
/// either reading.
const V4_MAX_OUTPUT: u32 = 384_000;

struct Entry {
    id: &'static str,
    name: &'static str,
    context: u32,
    /// The documented maximum of `max_tokens` (reasoning included).
    max_output: u32,
    input: u64,
    cache_hit: u64,
    output: u64,
    capabilities: Capabilities,
    /// Billed at half price outside DeepSeek's peak hours (the V4 models).
    off_peak_half: bool,
}

fn entries() -> [Entry; 4] {
    let common = Capabilities::STREAMING
        | Capabilities::TOOLS
        | Capabilities::TOOL_CHOICE_NONE
        | Capabilities::JSON_MODE
        | Capabilities::PROMPT_CACHE;
    [
        Entry {
            id: "deepseek-chat",
            name: "DeepSeek Chat (V3.2, non-thinking)",
            context: CONTEXT_WINDOW,
            max_output: 8_192,
            input: INPUT,
            cache_hit: CACHE_HIT,
            output: OUTPUT,
            capabilities: common | Capabilities::TOOL_CHOICE_REQUIRED | Capabilities::TEMPERATURE,
            off_peak_half: false,
        },
        // Thinking mode ignores temperature and top-p (accepted, without
        // effect) and rejects a forced `tool_choice` (`required` or a named
        // tool); `auto` and `none` work.
        Entry {
            id: "deepseek-reasoner",
            name: "DeepSeek Reasoner (V3.2, thinking)",
            context: CONTEXT_WINDOW,
            max_output: 65_536,
            input: INPUT,
            cache_hit: CACHE_HIT,
            output: OUTPUT,
            capabilities: common | Capabilities::REASONING,
            off_peak_half: false,
        },
        // The V4 models think by default (non-thinking is opt-in), so they
        // carry the thinking mode's limits. Flash accepts images, but the
        // flag stays off until the image path is checked against DeepSeek.
        Entry {
            id: "deepseek-flash",
            name: "DeepSeek Flash (V4.1)",
            context: V4_CONTEXT_WINDOW,
            max_output: V4_MAX_OUTPUT,
            input: usd(0, 300_000),
            cache_hit: usd(0, 6_000),
            output: usd(1, 200_000),
            capabilities: common | Capabilities::REASONING,
            off_peak_half: true,
        },
        Entry {
            id: "deepseek-v4-pro",
            name: "DeepSeek V4 Pro",
            context: V4_CONTEXT_WINDOW,
            max_output: V4_MAX_OUTPUT,
            input: usd(1, 320_000),
            cache_hit: usd(0, 44_000),
            output: usd(3, 960_000),
            capabilities: common | Capabilities::REASONING,
            off_peak_half: true,
        },
    ]
}

/// The tiktoken encoding for local estimates. DeepSeek's tokenizer is its
/// own (a 128K vocabulary), so every count is an estimate; `o200k_base`
/// is the closer of tiktoken's encodings on Chinese text, where
/// `cl100k_base` overcounts most.
pub fn encoding_for(_model: &str) -> &'static str {
    "o200k_base"
}

/// The hours outside DeepSeek's peaks (01:00-04:00 and 06:00-10:00 UTC),
/// priced at `off_peak`: 10:00 to 01:00 over midnight, and 04:00 to 06:00.
pub fn off_peak_windows(off_peak: Prices) -> Vec<PriceWindow> {
    vec![
        window(utc(10, 0), utc(1, 0), off_peak),
        window(utc(4, 0), utc(6, 0), off_peak),
    ]
}

/// A model's prices: cache misses, cache hits and output; for the V4
/// models half of each off peak. Cache writes are billed as ordinary
/// (cache-miss) input.
fn pricing_of(m: &Entry) -> Pricing {
    let base = prices(m.input, m.output, Some(m.cache_hit), None);
    if !m.off_peak_half {
        return pricing::flat(base);
    }
    Pricing {
        base,
        tiers: Vec::new(),
        off_peak: off_peak_windows(pricing::scaled(&base, 1, 2)),
    }
}

/// Every model as the contract describes it.
pub fn catalogue() -> Vec<ModelInfo> {
    entries()
        .into_iter()
        .map(|m| ModelInfo {
            id: m.id.into(),
            display_name: m.name.into(),
            context_window: m.context,
            max_output_tokens: m.max_output,
            pricing: pricing_of(&m),
            capabilities: m.capabilities,
            tokenizer: encoding_for(m.id).into(),
            tokenizer_exact: false,
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
    fn prices_are_exact_micro_dollars() {
        for m in [model("deepseek-chat"), model("deepseek-reasoner")] {
            assert_eq!(m.pricing.base.input, 280_000, "{}", m.id);
            assert_eq!(m.pricing.base.cache_read, Some(28_000), "{}", m.id);
            assert_eq!(m.pricing.base.output, 420_000, "{}", m.id);
            assert_eq!(m.context_window, 131_072, "{}", m.id);
            assert!(!m.tokenizer_exact, "{}", m.id);
        }
        let flash = model("deepseek-flash");
        assert_eq!(
            (
                flash.pricing.base.input,
                flash.pricing.base.cache_read,
                flash.pricing.base.output
            ),
            (300_000, Some(6_000), 1_200_000)
        );
        let pro = model("deepseek-v4-pro");
        assert_eq!(
            (
                pro.pricing.base.input,
                pro.pricing.base.cache_read,
                pro.pricing.base.output
            ),
            (1_320_000, Some(44_000), 3_960_000)
        );
        for m in [flash, pro] {
            assert_eq!(m.context_window, 1_048_576, "{}", m.id);
            assert_eq!(m.max_output_tokens, 384_000, "{}", m.id);
            assert!(!m.tokenizer_exact, "{}", m.id);
        }
    }

    #[test]
    fn v4_models_cost_half_outside_the_peak_hours() {
        // (id, input, cache hit, output) off peak, in micro-dollars.
        for (id, input, cache_hit, output) in [
            ("deepseek-flash", 150_000, 3_000, 600_000),
            ("deepseek-v4-pro", 660_000, 22_000, 1_980_000),
        ] {
            let pricing = model(id).pricing;
            assert_eq!(pricing::check(&pricing), Ok(()), "{id}");
            assert!(pricing.tiers.is_empty(), "{id}");
            let at = |hour, minute| pricing::applicable(&pricing, 1_000, utc(hour, minute));
            for (hour, minute) in [(1, 0), (2, 30), (3, 59), (6, 0), (9, 59)] {
                assert_eq!(
                    at(hour, minute),
                    &pricing.base,
                    "{id} at {hour}:{minute:02} is peak"
                );
            }
            for (hour, minute) in [
                (0, 0),
                (0, 59),
                (4, 0),
                (5, 59),
                (10, 0),
                (16, 30),
                (23, 59),
            ] {
                let off = at(hour, minute);
                assert_eq!(
                    (off.input, off.cache_read, off.output),
                    (input, Some(cache_hit), output),
                    "{id} at {hour}:{minute:02} is off peak"
                );
            }
        }
        for id in ["deepseek-chat", "deepseek-reasoner"] {
            let pricing = model(id).pricing;
            assert!(
                pricing.off_peak.is_empty() && pricing.tiers.is_empty(),
                "{id}"
            );
        }
    }

    #[test]
    fn thinking_mode_limits_show_in_capabilities() {
        let chat = model("deepseek-chat");
        let reasoner = model("deepseek-reasoner");
        assert_eq!(chat.max_output_tokens, 8_192);
        assert_eq!(reasoner.max_output_tokens, 65_536);
        assert!(chat.capabilities.contains(Capabilities::TEMPERATURE));
        assert!(!chat.capabilities.contains(Capabilities::REASONING));
        assert!(
            reasoner
                .capabilities
                .contains(Capabilities::REASONING | Capabilities::TOOLS)
        );
        assert!(!reasoner.capabilities.contains(Capabilities::TEMPERATURE));
        assert!(
            !reasoner
                .capabilities
                .contains(Capabilities::TOOL_CHOICE_REQUIRED)
        );
        for id in ["deepseek-flash", "deepseek-v4-pro"] {
            let m = model(id);
            assert!(m.capabilities.contains(Capabilities::REASONING), "{id}");
            assert!(!m.capabilities.contains(Capabilities::TEMPERATURE), "{id}");
            assert!(
                !m.capabilities.contains(Capabilities::TOOL_CHOICE_REQUIRED),
                "{id}"
            );
        }
        for m in [chat, reasoner] {
            assert!(!m.capabilities.contains(Capabilities::VISION));
            assert!(!m.capabilities.contains(Capabilities::JSON_SCHEMA));
        }
    }
}
