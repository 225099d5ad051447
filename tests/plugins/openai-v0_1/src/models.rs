//! The fixture's models: the two the tests use, with OpenAI's list prices
//! (USD per million tokens) as the 0.1 manifest carried them (one flat
//! price set, no tiers).

use llmhost_provider_sdk::types::{Capabilities, ModelInfo, Pricing};
use llmhost_provider_sdk::usd;

/// The tiktoken encoding of the fixture's models.
pub fn encoding_for(_model: &str) -> &'static str {
    "o200k_base"
}

/// The fixture's catalogue.
pub fn catalogue() -> Vec<ModelInfo> {
    let capabilities = Capabilities::STREAMING
        | Capabilities::TOOLS
        | Capabilities::JSON_MODE
        | Capabilities::TEMPERATURE;
    [
        (
            "gpt-4o-mini",
            "GPT-4o mini",
            usd(0, 150_000),
            usd(0, 600_000),
        ),
        ("gpt-4o", "GPT-4o", usd(2, 500_000), usd(10, 0)),
    ]
    .into_iter()
    .map(|(id, name, input, output)| ModelInfo {
        id: id.into(),
        display_name: name.into(),
        context_window: 128_000,
        max_output_tokens: 16_384,
        pricing: Pricing {
            input,
            output,
            cache_read: None,
            cache_write: None,
        },
        capabilities,
        tokenizer: "o200k_base".into(),
        tokenizer_exact: true,
    })
    .collect()
}
