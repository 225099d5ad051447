//! DeepSeek's chat models: context windows, output limits, list prices and
//! capabilities, from DeepSeek's "Models & Pricing" page (DeepSeek-V3.2
//! behind both names: `deepseek-chat` is its non-thinking mode,
//! `deepseek-reasoner` its thinking mode) and its thinking-mode guide.

use llmhost_provider_sdk::types::{Capabilities, ModelInfo, Pricing};
use llmhost_provider_sdk::usd;

/// "128K" on the pricing page; DeepSeek's own context-length errors name
/// 131072 tokens.
const CONTEXT_WINDOW: u32 = 131_072;

/// Both modes have one price: input on a cache miss, input on a cache hit,
/// output (reasoning included).
const INPUT: u64 = usd(0, 280_000);
const CACHE_HIT: u64 = usd(0, 28_000);
const OUTPUT: u64 = usd(0, 420_000);

struct Entry {
    id: &'static str,
    name: &'static str,
    /// The documented maximum of `max_tokens` (reasoning included).
    max_output: u32,
    capabilities: Capabilities,
}

fn entries() -> [Entry; 2] {
    let common = Capabilities::STREAMING
        | Capabilities::TOOLS
        | Capabilities::TOOL_CHOICE_NONE
        | Capabilities::JSON_MODE
        | Capabilities::PROMPT_CACHE;
    [
        Entry {
            id: "deepseek-chat",
            name: "DeepSeek Chat (V3.2, non-thinking)",
            max_output: 8_192,
            capabilities: common | Capabilities::TOOL_CHOICE_REQUIRED | Capabilities::TEMPERATURE,
        },
        // Thinking mode ignores temperature and top-p (accepted, without
        // effect) and rejects a forced `tool_choice` (`required` or a named
        // tool); `auto` and `none` work.
        Entry {
            id: "deepseek-reasoner",
            name: "DeepSeek Reasoner (V3.2, thinking)",
            max_output: 65_536,
            capabilities: common | Capabilities::REASONING,
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

/// Every model as the contract describes it.
pub fn catalogue() -> Vec<ModelInfo> {
    entries()
        .into_iter()
        .map(|m| ModelInfo {
            id: m.id.into(),
            display_name: m.name.into(),
            context_window: CONTEXT_WINDOW,
            max_output_tokens: m.max_output,
            pricing: Pricing {
                input: INPUT,
                output: OUTPUT,
                cache_read: Some(CACHE_HIT),
                // Cache writes are billed as ordinary (cache-miss) input.
                cache_write: None,
            },
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
        for m in catalogue() {
            assert_eq!(m.pricing.input, 280_000, "{}", m.id);
            assert_eq!(m.pricing.cache_read, Some(28_000), "{}", m.id);
            assert_eq!(m.pricing.output, 420_000, "{}", m.id);
            assert_eq!(m.context_window, 131_072, "{}", m.id);
            assert!(!m.tokenizer_exact, "{}", m.id);
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
        for m in [chat, reasoner] {
            assert!(!m.capabilities.contains(Capabilities::VISION));
            assert!(!m.capabilities.contains(Capabilities::JSON_SCHEMA));
        }
    }
}
