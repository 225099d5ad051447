//! Operator corrections and additions to the catalogue, read from a TOML
//! file, so a new model or a changed price needs no rebuild:
//!
//! ```toml
//! # Correct one price of a known model; other fields stay as the plugin says.
//! [[model]]
//! provider = "openai"
//! id = "gpt-4o"
//! input_usd_per_mtok = "2.50"
//!
//! # Add a model the plugin does not know yet.
//! [[model]]
//! provider = "openai"
//! id = "gpt-5.2"
//! input_usd_per_mtok = "1.75"
//! output_usd_per_mtok = "14"
//! cache_read_usd_per_mtok = "0.175"
//! context_window = 400000
//! max_output_tokens = 128000
//! capabilities = ["streaming", "tools", "reasoning"]
//! requests_per_minute = 500
//!
//! # Prompts above 272K input tokens (cached ones included) cost more.
//! [[model.tier]]
//! above_input_tokens = 272000
//! input_usd_per_mtok = "3.50"
//! output_usd_per_mtok = "21"
//! cache_read_usd_per_mtok = "0.35"
//!
//! # A one-hour cache-write price, and a daily off-peak discount.
//! [[model]]
//! provider = "deepseek"
//! id = "deepseek-chat"
//! cache_write_hour_usd_per_mtok = "0.54"
//!
//! [[model.off_peak]]
//! start = "16:30"
//! end = "00:30"
//! input_usd_per_mtok = "0.135"
//! output_usd_per_mtok = "0.55"
//! ```
//!
//! Prices are decimal strings in dollars per million tokens, exact to the
//! micro-dollar; more precision is refused rather than rounded. A tier or
//! an off-peak window is a whole price set: it needs an input and an output
//! price, and its cache prices fall back to its own input price as the base
//! ones do. Times are `"HH:MM"` in UTC; the start minute is inside the
//! window, the end minute is not, and a window whose start is after its end
//! runs over midnight. A tier wins over a window. Given `tier` or
//! `off_peak` tables replace all of the plugin's; `tier = []` or
//! `off_peak = []` removes them.

use crate::pricing::{validate_tiers, validate_windows};
use crate::{
    Catalogue, ModelEntry, PriceTier, PriceWindow, Prices, Pricing, PricingError, RateLimits,
};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// Which price set of a `[[model]]` entry a field belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSet {
    /// The `[[model]]` table's own price fields.
    Base,
    /// The model's `[[model.tier]]` table at this position, from 0.
    Tier(usize),
    /// The model's `[[model.off_peak]]` table at this position, from 0.
    OffPeak(usize),
}

impl fmt::Display for PriceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Base => f.write_str("base prices"),
            Self::Tier(index) => write!(f, "[[model.tier]] #{}", index + 1),
            Self::OffPeak(index) => write!(f, "[[model.off_peak]] #{}", index + 1),
        }
    }
}

/// Why an overrides file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OverrideError {
    #[error("model overrides are not valid TOML: {0}")]
    Syntax(String),
    #[error(
        "model `{provider}/{id}`, {set}: {field} `{value}` is not a price in dollars per million tokens with at most 6 decimals"
    )]
    BadPrice {
        provider: String,
        id: String,
        set: PriceSet,
        field: &'static str,
        value: String,
    },
    #[error(
        "model `{provider}/{id}`, [[model.off_peak]] #{}: {field} `{value}` is not a UTC time of day written \"HH:MM\" (00:00 to 23:59)",
        window + 1
    )]
    BadTime {
        provider: String,
        id: String,
        /// Position of the `[[model.off_peak]]` table, from 0.
        window: usize,
        field: &'static str,
        value: String,
    },
    #[error("model `{provider}/{id}`, {set}: a whole price set needs {field}")]
    MissingPrice {
        provider: String,
        id: String,
        set: PriceSet,
        field: &'static str,
    },
    #[error("model `{provider}/{id}`: {source}")]
    BadPricing {
        provider: String,
        id: String,
        #[source]
        source: PricingError,
    },
    #[error("model `{provider}/{id}` is new, so it needs {missing}")]
    Incomplete {
        provider: String,
        id: String,
        missing: &'static str,
    },
    #[error("model overrides name `{provider}/{id}` twice")]
    Duplicate { provider: String, id: String },
}

/// One `[[model]]` entry: every field but `provider` and `id` optional.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModelOverride {
    pub provider: String,
    pub id: String,
    pub display_name: Option<String>,
    pub context_window: Option<u32>,
    pub max_output_tokens: Option<u32>,
    pub input_usd_per_mtok: Option<String>,
    pub output_usd_per_mtok: Option<String>,
    pub cache_read_usd_per_mtok: Option<String>,
    pub cache_write_usd_per_mtok: Option<String>,
    pub cache_write_hour_usd_per_mtok: Option<String>,
    /// Replaces the model's prompt-length tiers when given.
    pub tier: Option<Vec<TierOverride>>,
    /// Replaces the model's off-peak windows when given.
    pub off_peak: Option<Vec<OffPeakOverride>>,
    pub capabilities: Option<Vec<String>>,
    pub tokenizer: Option<String>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

/// One `[[model.tier]]` table: the prices of prompts above a threshold.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TierOverride {
    /// The tier applies to prompts of strictly more input tokens than this.
    pub above_input_tokens: u64,
    /// Required: a tier is a whole price set.
    pub input_usd_per_mtok: Option<String>,
    /// Required: a tier is a whole price set.
    pub output_usd_per_mtok: Option<String>,
    pub cache_read_usd_per_mtok: Option<String>,
    pub cache_write_usd_per_mtok: Option<String>,
    pub cache_write_hour_usd_per_mtok: Option<String>,
}

/// One `[[model.off_peak]]` table: the prices of a daily window.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OffPeakOverride {
    /// `"HH:MM"` UTC, the first minute inside the window.
    pub start: String,
    /// `"HH:MM"` UTC, the first minute after the window.
    pub end: String,
    /// Required: a window is a whole price set.
    pub input_usd_per_mtok: Option<String>,
    /// Required: a window is a whole price set.
    pub output_usd_per_mtok: Option<String>,
    pub cache_read_usd_per_mtok: Option<String>,
    pub cache_write_usd_per_mtok: Option<String>,
    pub cache_write_hour_usd_per_mtok: Option<String>,
}

/// A parsed overrides file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModelOverrides {
    #[serde(default)]
    pub model: Vec<ModelOverride>,
}

/// Parses dollars per million tokens (`"2.50"`) into micro-dollars.
pub fn parse_usd_per_mtok(value: &str) -> Option<u64> {
    let decimal = Decimal::from_str(value.trim()).ok()?;
    if decimal.is_sign_negative() {
        return None;
    }
    let micros = decimal * Decimal::from(1_000_000u64);
    if micros.fract() != Decimal::ZERO {
        return None;
    }
    u64::try_from(micros.trunc()).ok()
}

/// Parses `"HH:MM"` (UTC, `00:00` to `23:59`) into minutes after midnight.
fn parse_utc_time(value: &str) -> Option<u16> {
    let (hours, minutes) = value.trim().split_once(':')?;
    let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hours) || !two_digits(minutes) {
        return None;
    }
    let (hours, minutes): (u16, u16) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours < 24 && minutes < 60).then_some(hours * 60 + minutes)
}

impl ModelOverrides {
    /// Parses the TOML text of an overrides file and checks every price,
    /// time, tier order and window.
    pub fn from_toml(text: &str) -> Result<Self, OverrideError> {
        let parsed: Self =
            toml::from_str(text).map_err(|err| OverrideError::Syntax(err.to_string()))?;
        let mut seen = std::collections::BTreeSet::new();
        for entry in &parsed.model {
            if !seen.insert((entry.provider.clone(), entry.id.clone())) {
                return Err(OverrideError::Duplicate {
                    provider: entry.provider.clone(),
                    id: entry.id.clone(),
                });
            }
            entry.parse()?;
        }
        Ok(parsed)
    }
}

/// The names of the price fields, in the order of [`PriceFields`].
const PRICE_FIELDS: [&str; 5] = [
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "cache_read_usd_per_mtok",
    "cache_write_usd_per_mtok",
    "cache_write_hour_usd_per_mtok",
];

/// The texts of a table's [`PRICE_FIELDS`], in order.
macro_rules! price_texts {
    ($table:expr) => {
        [
            $table.input_usd_per_mtok.as_ref(),
            $table.output_usd_per_mtok.as_ref(),
            $table.cache_read_usd_per_mtok.as_ref(),
            $table.cache_write_usd_per_mtok.as_ref(),
            $table.cache_write_hour_usd_per_mtok.as_ref(),
        ]
    };
}

/// The prices one table sets, in micro-dollars; `None` where it sets none.
#[derive(Debug, Clone, Copy, Default)]
struct PriceFields {
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    cache_write_hour: Option<u64>,
}

impl PriceFields {
    /// Parses the texts of [`PRICE_FIELDS`] of the table `set` of `entry`.
    fn parse(
        texts: [Option<&String>; 5],
        entry: &ModelOverride,
        set: PriceSet,
    ) -> Result<Self, OverrideError> {
        let mut micros = [None; 5];
        for ((slot, text), field) in micros.iter_mut().zip(texts).zip(PRICE_FIELDS) {
            *slot = text
                .map(|value| {
                    parse_usd_per_mtok(value).ok_or_else(|| OverrideError::BadPrice {
                        provider: entry.provider.clone(),
                        id: entry.id.clone(),
                        set,
                        field,
                        value: value.clone(),
                    })
                })
                .transpose()?;
        }
        let [input, output, cache_read, cache_write, cache_write_hour] = micros;
        Ok(Self {
            input,
            output,
            cache_read,
            cache_write,
            cache_write_hour,
        })
    }

    /// A whole price set: input and output are required.
    fn whole(self, entry: &ModelOverride, set: PriceSet) -> Result<Prices, OverrideError> {
        let missing = |field| OverrideError::MissingPrice {
            provider: entry.provider.clone(),
            id: entry.id.clone(),
            set,
            field,
        };
        Ok(Prices {
            input: self.input.ok_or_else(|| missing("input_usd_per_mtok"))?,
            output: self.output.ok_or_else(|| missing("output_usd_per_mtok"))?,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
            cache_write_hour: self.cache_write_hour,
        })
    }

    /// Replaces the prices this table sets, keeping the others.
    fn correct(self, prices: &mut Prices) {
        if let Some(p) = self.input {
            prices.input = p;
        }
        if let Some(p) = self.output {
            prices.output = p;
        }
        if self.cache_read.is_some() {
            prices.cache_read = self.cache_read;
        }
        if self.cache_write.is_some() {
            prices.cache_write = self.cache_write;
        }
        if self.cache_write_hour.is_some() {
            prices.cache_write_hour = self.cache_write_hour;
        }
    }
}

/// Everything a `[[model]]` entry says about prices, parsed and checked.
struct PricingOverride {
    base: PriceFields,
    tiers: Option<Vec<PriceTier>>,
    off_peak: Option<Vec<PriceWindow>>,
}

impl ModelOverride {
    fn parse(&self) -> Result<PricingOverride, OverrideError> {
        let base = PriceFields::parse(price_texts!(self), self, PriceSet::Base)?;
        let tiers = self
            .tier
            .as_deref()
            .map(|tiers| self.parse_tiers(tiers))
            .transpose()?;
        let off_peak = self
            .off_peak
            .as_deref()
            .map(|windows| self.parse_windows(windows))
            .transpose()?;
        Ok(PricingOverride {
            base,
            tiers,
            off_peak,
        })
    }

    fn parse_tiers(&self, tiers: &[TierOverride]) -> Result<Vec<PriceTier>, OverrideError> {
        let tiers = tiers
            .iter()
            .enumerate()
            .map(|(index, tier)| {
                let set = PriceSet::Tier(index);
                Ok(PriceTier {
                    above_input_tokens: tier.above_input_tokens,
                    prices: PriceFields::parse(price_texts!(tier), self, set)?.whole(self, set)?,
                })
            })
            .collect::<Result<Vec<_>, OverrideError>>()?;
        validate_tiers(&tiers).map_err(|source| self.bad_pricing(source))?;
        Ok(tiers)
    }

    fn parse_windows(
        &self,
        windows: &[OffPeakOverride],
    ) -> Result<Vec<PriceWindow>, OverrideError> {
        let windows = windows
            .iter()
            .enumerate()
            .map(|(index, window)| {
                let set = PriceSet::OffPeak(index);
                let time = |field, value: &String| {
                    parse_utc_time(value).ok_or_else(|| OverrideError::BadTime {
                        provider: self.provider.clone(),
                        id: self.id.clone(),
                        window: index,
                        field,
                        value: value.clone(),
                    })
                };
                Ok(PriceWindow {
                    start_minute: time("start", &window.start)?,
                    end_minute: time("end", &window.end)?,
                    prices: PriceFields::parse(price_texts!(window), self, set)?
                        .whole(self, set)?,
                })
            })
            .collect::<Result<Vec<_>, OverrideError>>()?;
        validate_windows(&windows).map_err(|source| self.bad_pricing(source))?;
        Ok(windows)
    }

    fn bad_pricing(&self, source: PricingError) -> OverrideError {
        OverrideError::BadPricing {
            provider: self.provider.clone(),
            id: self.id.clone(),
            source,
        }
    }
}

impl Catalogue {
    /// Applies operator overrides: known models get the given fields
    /// replaced, new models are added (they need both base prices). On an
    /// error the catalogue is left as it was.
    pub fn apply(&mut self, overrides: &ModelOverrides) -> Result<(), OverrideError> {
        let mut updated = Vec::with_capacity(overrides.model.len());
        for entry in &overrides.model {
            let pricing = entry.parse()?;
            let mut model = match self.get(&entry.provider, &entry.id) {
                Some(existing) => existing.clone(),
                None => new_model(entry, &pricing.base)?,
            };
            pricing.base.correct(&mut model.pricing.base);
            if let Some(tiers) = pricing.tiers {
                model.pricing.tiers = tiers;
            }
            if let Some(windows) = pricing.off_peak {
                model.pricing.off_peak = windows;
            }
            if let Some(name) = &entry.display_name {
                model.display_name = name.clone();
            }
            if let Some(n) = entry.context_window {
                model.context_window = n;
            }
            if let Some(n) = entry.max_output_tokens {
                model.max_output_tokens = n;
            }
            if let Some(capabilities) = &entry.capabilities {
                model.capabilities = capabilities.clone();
            }
            if let Some(tokenizer) = &entry.tokenizer {
                model.tokenizer = tokenizer.clone();
            }
            if entry.requests_per_minute.is_some() {
                model.rate_limits.requests_per_minute = entry.requests_per_minute;
            }
            if entry.tokens_per_minute.is_some() {
                model.rate_limits.tokens_per_minute = entry.tokens_per_minute;
            }
            updated.push(model);
        }
        for model in updated {
            self.insert(model);
        }
        Ok(())
    }
}

/// A model the catalogue does not know yet, with the file's base prices.
fn new_model(entry: &ModelOverride, base: &PriceFields) -> Result<ModelEntry, OverrideError> {
    let incomplete = |missing| OverrideError::Incomplete {
        provider: entry.provider.clone(),
        id: entry.id.clone(),
        missing,
    };
    let input = base.input.ok_or_else(|| incomplete("input_usd_per_mtok"))?;
    let output = base
        .output
        .ok_or_else(|| incomplete("output_usd_per_mtok"))?;
    Ok(ModelEntry {
        provider: entry.provider.clone(),
        id: entry.id.clone(),
        display_name: entry.id.clone(),
        context_window: 0,
        max_output_tokens: 0,
        pricing: Pricing::flat(Prices::new(input, output)),
        capabilities: vec!["streaming".into()],
        tokenizer: "o200k_base".into(),
        tokenizer_exact: false,
        rate_limits: RateLimits::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenUsage;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// `hh:mm` UTC on some day.
    fn utc(hh: u64, mm: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + hh * 3600 + mm * 60)
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    fn known(provider: &str, id: &str, pricing: Pricing) -> ModelEntry {
        ModelEntry {
            provider: provider.into(),
            id: id.into(),
            display_name: id.into(),
            context_window: 128_000,
            max_output_tokens: 8_000,
            pricing,
            capabilities: vec!["streaming".into()],
            tokenizer: "o200k_base".into(),
            tokenizer_exact: true,
            rate_limits: RateLimits::default(),
        }
    }

    fn usage(input: u64, output: u64) -> TokenUsage {
        TokenUsage {
            input,
            output,
            ..TokenUsage::default()
        }
    }

    /// The overrides of `body`, the text after a `[[model]]` header of
    /// model `a/b`.
    fn model_ab(body: &str) -> Result<ModelOverrides, OverrideError> {
        ModelOverrides::from_toml(&format!("[[model]]\nprovider = \"a\"\nid = \"b\"\n{body}"))
    }

    const DOC_EXAMPLE: &str = r#"
        [[model]]
        provider = "openai"
        id = "gpt-4o"
        input_usd_per_mtok = "2.50"

        [[model]]
        provider = "openai"
        id = "gpt-5.2"
        input_usd_per_mtok = "1.75"
        output_usd_per_mtok = "14"
        cache_read_usd_per_mtok = "0.175"
        context_window = 400000
        max_output_tokens = 128000
        capabilities = ["streaming", "tools", "reasoning"]
        requests_per_minute = 500

        [[model.tier]]
        above_input_tokens = 272000
        input_usd_per_mtok = "3.50"
        output_usd_per_mtok = "21"
        cache_read_usd_per_mtok = "0.35"

        [[model]]
        provider = "deepseek"
        id = "deepseek-chat"
        cache_write_hour_usd_per_mtok = "0.54"

        [[model.off_peak]]
        start = "16:30"
        end = "00:30"
        input_usd_per_mtok = "0.135"
        output_usd_per_mtok = "0.55"
    "#;

    #[test]
    fn prices_parse_exactly() {
        assert_eq!(parse_usd_per_mtok("2.50"), Some(2_500_000));
        assert_eq!(parse_usd_per_mtok("0.028"), Some(28_000));
        assert_eq!(parse_usd_per_mtok("15"), Some(15_000_000));
        assert_eq!(parse_usd_per_mtok("0.000001"), Some(1));
        assert_eq!(
            parse_usd_per_mtok("0.0000001"),
            None,
            "finer than a micro-dollar"
        );
        assert_eq!(parse_usd_per_mtok("-1"), None);
        assert_eq!(parse_usd_per_mtok("two"), None);
    }

    #[test]
    fn times_parse_as_utc_minutes() {
        assert_eq!(parse_utc_time("00:00"), Some(0));
        assert_eq!(parse_utc_time("16:30"), Some(990));
        assert_eq!(parse_utc_time(" 23:59 "), Some(1439));
        for bad in [
            "24:00", "12:60", "9:30", "09:5", "0930", "noon", "-1:00", "+9:30", "",
        ] {
            assert_eq!(parse_utc_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_documented_example_prices_tiers_and_off_peak() {
        let mut catalogue = Catalogue::new();
        catalogue.insert(known(
            "openai",
            "gpt-4o",
            Pricing::flat(Prices::new(5_000_000, 15_000_000)),
        ));
        catalogue.insert(known(
            "deepseek",
            "deepseek-chat",
            Pricing::flat(Prices {
                cache_write: Some(270_000),
                ..Prices::new(270_000, 1_100_000)
            }),
        ));
        let overrides = ModelOverrides::from_toml(DOC_EXAMPLE).expect("valid");
        catalogue.apply(&overrides).expect("applies");
        let noon = utc(12, 0);

        // The tier: 300_000 * 3.5e-6 + 1000 * 21e-6 = 1.05 + 0.021
        let cost = |provider, model, usage, at| catalogue.cost(provider, model, &usage, at);
        assert_eq!(
            cost("openai", "gpt-5.2", usage(300_000, 1000), noon),
            Some(dec("1.071"))
        );
        // At the threshold, the base: 272_000 * 1.75e-6 + 1000 * 14e-6
        assert_eq!(
            cost("openai", "gpt-5.2", usage(272_000, 1000), noon),
            Some(dec("0.49"))
        );
        let model = catalogue.get("openai", "gpt-5.2").expect("added");
        assert_eq!(model.pricing.base.cache_read, Some(175_000));
        assert_eq!(model.context_window, 400_000);
        assert_eq!(model.pricing.validate(), Ok(()));

        // Off-peak: 1000 * 0.135e-6 + 1000 * 0.55e-6; peak: the plugin's.
        let chat = usage(1000, 1000);
        assert_eq!(
            cost("deepseek", "deepseek-chat", chat, utc(17, 0)),
            Some(dec("0.000685"))
        );
        assert_eq!(
            cost("deepseek", "deepseek-chat", chat, utc(0, 30)),
            Some(dec("0.00137"))
        );
        // One-hour writes at $0.54, the plugin's default writes kept:
        // 600 * 0.27e-6 + 300 * 0.27e-6 + 100 * 0.54e-6
        let writes = TokenUsage {
            cache_write: 400,
            cache_write_hour: 100,
            ..usage(1000, 0)
        };
        assert_eq!(
            cost("deepseek", "deepseek-chat", writes, noon),
            Some(dec("0.000297"))
        );
        let gpt_4o = catalogue.get("openai", "gpt-4o").expect("known");
        assert_eq!(gpt_4o.pricing.base, Prices::new(2_500_000, 15_000_000));
    }

    #[test]
    fn tiers_and_windows_replace_the_plugins_only_when_given() {
        let plugin = Pricing {
            tiers: vec![PriceTier {
                above_input_tokens: 100_000,
                prices: Prices::new(2, 2),
            }],
            off_peak: vec![PriceWindow {
                start_minute: 0,
                end_minute: 60,
                prices: Prices::new(0, 0),
            }],
            ..Pricing::flat(Prices::new(1, 1))
        };
        let mut catalogue = Catalogue::new();
        catalogue.insert(known("a", "b", plugin.clone()));
        let pricing =
            |catalogue: &Catalogue| catalogue.get("a", "b").expect("there").pricing.clone();

        let untouched = model_ab("input_usd_per_mtok = \"0.000003\"").expect("valid");
        catalogue.apply(&untouched).expect("applies");
        assert_eq!(pricing(&catalogue).tiers, plugin.tiers);
        assert_eq!(pricing(&catalogue).off_peak, plugin.off_peak);
        assert_eq!(pricing(&catalogue).base, Prices::new(3, 1));

        let replaced = model_ab(
            "[[model.tier]]\nabove_input_tokens = 200000\ninput_usd_per_mtok = \"1\"\noutput_usd_per_mtok = \"2\"",
        )
        .expect("valid");
        catalogue.apply(&replaced).expect("applies");
        assert_eq!(
            pricing(&catalogue).tiers,
            vec![PriceTier {
                above_input_tokens: 200_000,
                prices: Prices::new(1_000_000, 2_000_000),
            }]
        );
        assert_eq!(pricing(&catalogue).off_peak, plugin.off_peak);

        let removed = model_ab("tier = []\noff_peak = []").expect("valid");
        catalogue.apply(&removed).expect("applies");
        assert_eq!(pricing(&catalogue), Pricing::flat(Prices::new(3, 1)));
    }

    #[test]
    fn a_tiers_cache_prices_fall_back_to_its_own_input() {
        let mut catalogue = Catalogue::new();
        let overrides = model_ab(
            r#"
            input_usd_per_mtok = "1"
            output_usd_per_mtok = "2"
            cache_read_usd_per_mtok = "0.1"

            [[model.tier]]
            above_input_tokens = 1000
            input_usd_per_mtok = "4"
            output_usd_per_mtok = "8"
            cache_write_hour_usd_per_mtok = "6"
            "#,
        )
        .expect("valid");
        catalogue.apply(&overrides).expect("applies");
        let long = TokenUsage {
            cache_read: 500,
            cache_write: 300,
            cache_write_hour: 100,
            ..usage(2000, 0)
        };
        // 1200 * 4e-6 + 500 * 4e-6 + 200 * 4e-6 + 100 * 6e-6
        assert_eq!(
            catalogue.cost("a", "b", &long, utc(12, 0)),
            Some(dec("0.0082"))
        );
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        assert!(matches!(
            ModelOverrides::from_toml("[[model]]\nprovider = 1"),
            Err(OverrideError::Syntax(_))
        ));
        assert!(matches!(
            model_ab("colour = \"red\""),
            Err(OverrideError::Syntax(_))
        ));
        let err = model_ab("input_usd_per_mtok = \"cheap\"").expect_err("bad price");
        assert!(matches!(
            err,
            OverrideError::BadPrice {
                set: PriceSet::Base,
                field: "input_usd_per_mtok",
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "model `a/b`, base prices: input_usd_per_mtok `cheap` is not a price in dollars per million tokens with at most 6 decimals"
        );
        assert!(matches!(
            model_ab("cache_write_hour_usd_per_mtok = \"1e-9\""),
            Err(OverrideError::BadPrice {
                field: "cache_write_hour_usd_per_mtok",
                ..
            })
        ));
        assert!(matches!(
            ModelOverrides::from_toml(
                "[[model]]\nprovider = \"a\"\nid = \"b\"\n[[model]]\nprovider = \"a\"\nid = \"b\""
            ),
            Err(OverrideError::Duplicate { .. })
        ));
    }

    #[test]
    fn bad_tiers_are_refused_with_a_reason() {
        const TIER: &str =
            "[[model.tier]]\ninput_usd_per_mtok = \"1\"\noutput_usd_per_mtok = \"2\"\n";
        let err = model_ab("[[model.tier]]\nabove_input_tokens = 10\ninput_usd_per_mtok = \"1\"")
            .expect_err("no output price");
        assert_eq!(
            err,
            OverrideError::MissingPrice {
                provider: "a".into(),
                id: "b".into(),
                set: PriceSet::Tier(0),
                field: "output_usd_per_mtok",
            }
        );
        assert_eq!(
            err.to_string(),
            "model `a/b`, [[model.tier]] #1: a whole price set needs output_usd_per_mtok"
        );
        let bad_price = format!(
            "{TIER}above_input_tokens = 10\n{TIER}above_input_tokens = 20\ncache_read_usd_per_mtok = \"free\""
        );
        assert!(matches!(
            model_ab(&bad_price),
            Err(OverrideError::BadPrice {
                set: PriceSet::Tier(1),
                field: "cache_read_usd_per_mtok",
                ..
            })
        ));
        let descending = format!("{TIER}above_input_tokens = 20\n{TIER}above_input_tokens = 20");
        let err = model_ab(&descending).expect_err("not ascending");
        assert!(matches!(
            err,
            OverrideError::BadPricing {
                source: PricingError::TiersNotAscending { index: 1, .. },
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "model `a/b`: price tier #2 applies above 20 input tokens, not above tier #1's 20: thresholds must rise strictly"
        );
        for bad in [
            TIER.to_string(),
            format!("{TIER}above_input_tokens = -1"),
            format!("{TIER}above_input_tokens = \"272K\""),
            format!("{TIER}above_input_tokens = 1\nprice = \"1\""),
        ] {
            assert!(
                matches!(model_ab(&bad), Err(OverrideError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_windows_are_refused_with_a_reason() {
        let window = |start: &str, end: &str| {
            model_ab(&format!(
                "[[model.off_peak]]\nstart = \"{start}\"\nend = \"{end}\"\ninput_usd_per_mtok = \"1\"\noutput_usd_per_mtok = \"2\""
            ))
        };
        assert!(window("22:00", "00:00").is_ok(), "until midnight");
        let err = window("16:30", "24:00").expect_err("no such time");
        assert_eq!(
            err,
            OverrideError::BadTime {
                provider: "a".into(),
                id: "b".into(),
                window: 0,
                field: "end",
                value: "24:00".into(),
            }
        );
        assert_eq!(
            err.to_string(),
            "model `a/b`, [[model.off_peak]] #1: end `24:00` is not a UTC time of day written \"HH:MM\" (00:00 to 23:59)"
        );
        assert!(matches!(
            window("4pm", "00:30"),
            Err(OverrideError::BadTime { field: "start", .. })
        ));
        assert!(matches!(
            window("08:00", "08:00"),
            Err(OverrideError::BadPricing {
                source: PricingError::EmptyWindow {
                    index: 0,
                    minute: 480
                },
                ..
            })
        ));
        assert!(matches!(
            model_ab(
                "[[model.off_peak]]\nstart = \"01:00\"\nend = \"02:00\"\noutput_usd_per_mtok = \"2\""
            ),
            Err(OverrideError::MissingPrice {
                set: PriceSet::OffPeak(0),
                field: "input_usd_per_mtok",
                ..
            })
        ));
        assert!(matches!(
            model_ab(
                "[[model.off_peak]]\nstart = \"01:00\"\ninput_usd_per_mtok = \"1\"\noutput_usd_per_mtok = \"2\""
            ),
            Err(OverrideError::Syntax(_))
        ));
    }

    #[test]
    fn a_refused_file_leaves_the_catalogue_as_it_was() {
        let mut catalogue = Catalogue::new();
        catalogue.insert(known("a", "b", Pricing::flat(Prices::new(1, 1))));
        let overrides = ModelOverrides::from_toml(
            "[[model]]\nprovider = \"a\"\nid = \"b\"\ninput_usd_per_mtok = \"9\"\n\
             [[model]]\nprovider = \"x\"\nid = \"new\"\ninput_usd_per_mtok = \"1\"",
        )
        .expect("parses");
        assert!(matches!(
            catalogue.apply(&overrides),
            Err(OverrideError::Incomplete {
                missing: "output_usd_per_mtok",
                ..
            })
        ));
        let model = catalogue.get("a", "b").expect("there");
        assert_eq!(model.pricing.base.input, 1);
        assert!(catalogue.get("x", "new").is_none());
    }
}
