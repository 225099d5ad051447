//! OpenAI's chat models: context windows, output limits, list prices
//! (USD per million tokens, from OpenAI's pricing page) and capabilities.

use llmhost_provider_sdk::types::{Capabilities, ModelInfo, Pricing};
use llmhost_provider_sdk::usd;

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
}

const MODELS: &[Entry] = &[
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

/// Every model as the contract describes it.
pub fn catalogue() -> Vec<ModelInfo> {
    MODELS
        .iter()
        .map(|m| {
            let mut capabilities = Capabilities::STREAMING
                | Capabilities::TOOLS
                | Capabilities::TOOL_CHOICE_REQUIRED
                | Capabilities::TOOL_CHOICE_NONE
                | Capabilities::JSON_MODE;
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
                pricing: Pricing {
                    input: m.input,
                    output: m.output,
                    cache_read: m.cached_input,
                    cache_write: None,
                },
                capabilities,
                tokenizer: encoding_for(m.id).into(),
                tokenizer_exact: true,
            }
        })
        .collect()
}
