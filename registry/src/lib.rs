//! Model catalogue and exact cost calculation for llmhost.
//!
//! The catalogue maps provider ids to their models (context window, output
//! limit, prices, capabilities). The host fills it from every loaded
//! plugin's manifest. Money is never binary floating point: prices are
//! integer micro-dollars per million tokens and costs are [`Decimal`]s,
//! exact to the last digit.

mod overrides;

use rust_decimal::Decimal;
use std::collections::BTreeMap;

pub use overrides::{ModelOverride, ModelOverrides, OverrideError, parse_usd_per_mtok};
pub use rust_decimal;

/// Rate limits the operator knows for a model (they depend on the
/// account's tier, so plugins do not declare them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

/// Prices in micro-dollars (1e-6 USD) per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pricing {
    pub input: u64,
    pub output: u64,
    /// Price of input tokens read from the prompt cache; the input price
    /// when the vendor has no such discount.
    pub cache_read: Option<u64>,
    /// Price of input tokens written to the prompt cache; the input price
    /// when the vendor charges nothing extra.
    pub cache_write: Option<u64>,
}

impl Pricing {
    /// A price per million tokens in dollars, as a decimal.
    pub fn per_million_usd(micros: u64) -> Decimal {
        Decimal::from(micros) / Decimal::from(1_000_000u64)
    }
}

/// Token counts of one request, as billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    /// All input tokens, cached ones included.
    pub input: u64,
    pub output: u64,
    /// Of `input`, tokens read from the prompt cache.
    pub cache_read: u64,
    /// Of `input`, tokens written to the prompt cache.
    pub cache_write: u64,
}

/// The exact cost in dollars of `usage` at `pricing`.
pub fn cost(pricing: &Pricing, usage: &TokenUsage) -> Decimal {
    let cached = usage.cache_read.saturating_add(usage.cache_write);
    let uncached = usage.input.saturating_sub(cached);
    // Token counts fit in u64 and prices in u64, so each product fits in
    // u128 and the sum in Decimal's 96-bit mantissa for any real bill.
    let micro_token_dollars: u128 = u128::from(uncached) * u128::from(pricing.input)
        + u128::from(usage.cache_read) * u128::from(pricing.cache_read.unwrap_or(pricing.input))
        + u128::from(usage.cache_write) * u128::from(pricing.cache_write.unwrap_or(pricing.input))
        + u128::from(usage.output) * u128::from(pricing.output);
    // micro-dollars per million tokens: divide by 1e6 (micro) and 1e6 (per
    // million) = 1e12, as a decimal scale.
    let mantissa = i128::try_from(micro_token_dollars).unwrap_or(i128::MAX);
    Decimal::try_from_i128_with_scale(mantissa, 12)
        .unwrap_or(Decimal::MAX)
        .normalize()
}

/// One model of one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    pub provider: String,
    pub id: String,
    pub display_name: String,
    pub context_window: u32,
    pub max_output_tokens: u32,
    pub pricing: Pricing,
    /// Capability names (`streaming`, `tools`, `vision`, …).
    pub capabilities: Vec<String>,
    /// tiktoken encoding for local counts.
    pub tokenizer: String,
    /// Whether the tokenizer is the vendor's own (exact counts).
    pub tokenizer_exact: bool,
    /// Operator-configured rate limits.
    pub rate_limits: RateLimits,
}

/// All known models, by provider and model id.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    models: BTreeMap<String, BTreeMap<String, ModelEntry>>,
}

impl Catalogue {
    /// An empty catalogue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a model.
    pub fn insert(&mut self, entry: ModelEntry) {
        self.models
            .entry(entry.provider.clone())
            .or_default()
            .insert(entry.id.clone(), entry);
    }

    /// Removes every model of a provider (before reloading its plugin).
    pub fn remove_provider(&mut self, provider: &str) {
        self.models.remove(provider);
    }

    /// The model `model` of `provider`.
    pub fn get(&self, provider: &str, model: &str) -> Option<&ModelEntry> {
        self.models.get(provider)?.get(model)
    }

    /// Every provider offering a model with this id.
    pub fn find_model<'a>(&'a self, model: &'a str) -> impl Iterator<Item = &'a ModelEntry> + 'a {
        self.models
            .values()
            .filter_map(move |models| models.get(model))
    }

    /// The models of one provider, sorted by id.
    pub fn provider_models(&self, provider: &str) -> impl Iterator<Item = &ModelEntry> {
        self.models
            .get(provider)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// Every model, sorted by provider and id.
    pub fn all(&self) -> impl Iterator<Item = &ModelEntry> {
        self.models.values().flat_map(|m| m.values())
    }

    /// The cost of `usage` on a known model, `None` for unknown models.
    pub fn cost(&self, provider: &str, model: &str, usage: &TokenUsage) -> Option<Decimal> {
        self.get(provider, model)
            .map(|entry| cost(&entry.pricing, usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    #[test]
    fn cost_is_exact() {
        // $2.50 / $10.00 per million tokens.
        let pricing = Pricing {
            input: 2_500_000,
            output: 10_000_000,
            cache_read: Some(1_250_000),
            cache_write: None,
        };
        let usage = TokenUsage {
            input: 1234,
            output: 567,
            cache_read: 0,
            cache_write: 0,
        };
        // 1234 * 2.5e-6 + 567 * 10e-6 = 0.003085 + 0.00567
        assert_eq!(cost(&pricing, &usage), dec("0.008755"));
        let cached = TokenUsage {
            input: 1000,
            output: 0,
            cache_read: 400,
            cache_write: 0,
        };
        // 600 * 2.5e-6 + 400 * 1.25e-6 = 0.0015 + 0.0005
        assert_eq!(cost(&pricing, &cached), dec("0.002"));
    }

    #[test]
    fn tiny_prices_keep_every_digit() {
        // $0.005 per million tokens, one token.
        let pricing = Pricing {
            input: 5_000,
            output: 0,
            cache_read: None,
            cache_write: None,
        };
        let usage = TokenUsage {
            input: 1,
            ..TokenUsage::default()
        };
        assert_eq!(cost(&pricing, &usage), dec("0.000000005"));
    }

    #[test]
    fn huge_usage_does_not_overflow() {
        let pricing = Pricing {
            input: u64::MAX,
            output: u64::MAX,
            cache_read: None,
            cache_write: None,
        };
        let usage = TokenUsage {
            input: u64::from(u32::MAX),
            output: u64::from(u32::MAX),
            cache_read: 0,
            cache_write: 0,
        };
        assert!(cost(&pricing, &usage) > Decimal::ZERO);
    }

    #[test]
    fn lookups() {
        let mut catalogue = Catalogue::new();
        let entry = |provider: &str, id: &str| ModelEntry {
            provider: provider.into(),
            id: id.into(),
            display_name: id.into(),
            context_window: 1000,
            max_output_tokens: 100,
            pricing: Pricing {
                input: 1_000_000,
                output: 2_000_000,
                cache_read: None,
                cache_write: None,
            },
            capabilities: vec![],
            tokenizer: "o200k_base".into(),
            tokenizer_exact: true,
            rate_limits: RateLimits::default(),
        };
        catalogue.insert(entry("openai", "gpt-4o"));
        catalogue.insert(entry("proxy", "gpt-4o"));
        catalogue.insert(entry("openai", "gpt-4.1"));
        assert!(catalogue.get("openai", "gpt-4o").is_some());
        assert_eq!(catalogue.find_model("gpt-4o").count(), 2);
        assert_eq!(catalogue.provider_models("openai").count(), 2);
        let usage = TokenUsage {
            input: 1_000_000,
            output: 1_000_000,
            cache_read: 0,
            cache_write: 0,
        };
        assert_eq!(catalogue.cost("openai", "gpt-4o", &usage), Some(dec("3")));
        assert_eq!(catalogue.cost("openai", "unknown", &usage), None);

        let overrides = ModelOverrides::from_toml(
            r#"
            [[model]]
            provider = "openai"
            id = "gpt-4o"
            output_usd_per_mtok = "4"
            requests_per_minute = 500

            [[model]]
            provider = "openai"
            id = "gpt-next"
            input_usd_per_mtok = "0.5"
            output_usd_per_mtok = "1.5"
            context_window = 1000000
            "#,
        )
        .expect("valid overrides");
        catalogue.apply(&overrides).expect("applies");
        assert_eq!(
            catalogue.cost("openai", "gpt-4o", &usage),
            Some(dec("5")),
            "1 + 4"
        );
        let corrected = catalogue.get("openai", "gpt-4o").expect("still there");
        assert_eq!(corrected.context_window, 1000, "untouched fields stay");
        assert_eq!(corrected.rate_limits.requests_per_minute, Some(500));
        assert_eq!(catalogue.cost("openai", "gpt-next", &usage), Some(dec("2")));
        assert_eq!(
            catalogue
                .get("openai", "gpt-next")
                .map(|m| m.context_window),
            Some(1_000_000)
        );

        let incomplete = ModelOverrides::from_toml(
            "[[model]]\nprovider = \"x\"\nid = \"y\"\ninput_usd_per_mtok = \"1\"",
        )
        .expect("parses");
        assert!(matches!(
            catalogue.apply(&incomplete),
            Err(OverrideError::Incomplete {
                missing: "output_usd_per_mtok",
                ..
            })
        ));
    }
}
