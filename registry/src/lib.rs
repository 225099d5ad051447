//! Model catalogue and exact cost calculation for llmhost.
//!
//! The catalogue maps provider ids to their models (context window, output
//! limit, pricing, capabilities). The host fills it from every loaded
//! plugin's manifest, and the operator corrects it with an overrides file.
//! A model's pricing is what its vendor charges: base prices, tiers for
//! long prompts and daily off-peak windows ([`Pricing`]). Money is never
//! binary floating point: prices are integer micro-dollars per million
//! tokens and costs are [`Decimal`]s, exact to the last digit.

#[cfg(test)]
mod cost_properties;
mod overrides;
mod pricing;

use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::time::SystemTime;

pub use overrides::{
    ModelOverride, ModelOverrides, OffPeakOverride, OverrideError, PriceSet, TierOverride,
    parse_usd_per_mtok,
};
pub use pricing::{
    MINUTES_PER_DAY, PriceTier, PriceWindow, Prices, Pricing, PricingError, TokenUsage, cost,
};
pub use rust_decimal;

/// Rate limits the operator knows for a model (they depend on the
/// account's tier, so plugins do not declare them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

/// One model of one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    pub provider: String,
    pub id: String,
    pub display_name: String,
    pub context_window: u32,
    pub max_output_tokens: u32,
    /// What the vendor charges; [`Pricing::validate`] it first when it
    /// comes from outside (a plugin's manifest).
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

    /// The exact cost of `usage` on a known model for a request made at
    /// `at` (which picks the off-peak window), `None` for unknown models.
    pub fn cost(
        &self,
        provider: &str,
        model: &str,
        usage: &TokenUsage,
        at: SystemTime,
    ) -> Option<Decimal> {
        self.get(provider, model)
            .map(|entry| cost(&entry.pricing, usage, at))
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
    fn lookups() {
        let mut catalogue = Catalogue::new();
        let entry = |provider: &str, id: &str| ModelEntry {
            provider: provider.into(),
            id: id.into(),
            display_name: id.into(),
            context_window: 1000,
            max_output_tokens: 100,
            pricing: Pricing::flat(Prices::new(1_000_000, 2_000_000)),
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
            ..TokenUsage::default()
        };
        let now = SystemTime::now();
        assert_eq!(
            catalogue.cost("openai", "gpt-4o", &usage, now),
            Some(dec("3"))
        );
        assert_eq!(catalogue.cost("openai", "unknown", &usage, now), None);

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
            catalogue.cost("openai", "gpt-4o", &usage, now),
            Some(dec("5")),
            "1 + 4"
        );
        let corrected = catalogue.get("openai", "gpt-4o").expect("still there");
        assert_eq!(corrected.context_window, 1000, "untouched fields stay");
        assert_eq!(corrected.rate_limits.requests_per_minute, Some(500));
        assert_eq!(
            catalogue.cost("openai", "gpt-next", &usage, now),
            Some(dec("2"))
        );
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

    #[test]
    fn a_catalogue_model_is_charged_by_its_tier() {
        let mut catalogue = Catalogue::new();
        catalogue.insert(ModelEntry {
            provider: "grok".into(),
            id: "grok-long".into(),
            display_name: "Grok long".into(),
            context_window: 2_000_000,
            max_output_tokens: 30_000,
            pricing: Pricing {
                tiers: vec![PriceTier {
                    above_input_tokens: 200_000,
                    prices: Prices::new(6_000_000, 30_000_000),
                }],
                ..Pricing::flat(Prices::new(3_000_000, 15_000_000))
            },
            capabilities: vec!["streaming".into()],
            tokenizer: "o200k_base".into(),
            tokenizer_exact: false,
            rate_limits: RateLimits::default(),
        });
        let now = SystemTime::now();
        let cost_of = |input| {
            let usage = TokenUsage {
                input,
                output: 1000,
                ..TokenUsage::default()
            };
            catalogue.cost("grok", "grok-long", &usage, now)
        };
        // 200_000 * 3e-6 + 1000 * 15e-6
        assert_eq!(cost_of(200_000), Some(dec("0.615")));
        // 200_001 * 6e-6 + 1000 * 30e-6
        assert_eq!(cost_of(200_001), Some(dec("1.230006")));
    }
}
