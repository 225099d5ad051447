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
//! ```
//!
//! Prices are decimal strings in dollars per million tokens, exact to the
//! micro-dollar; more precision is refused rather than rounded.

use crate::{Catalogue, ModelEntry, Pricing, RateLimits};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::str::FromStr;

/// Why an overrides file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OverrideError {
    #[error("model overrides are not valid TOML: {0}")]
    Syntax(String),
    #[error(
        "model `{provider}/{id}`: {field} `{value}` is not a price in dollars per million tokens with at most 6 decimals"
    )]
    BadPrice {
        provider: String,
        id: String,
        field: &'static str,
        value: String,
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
    pub capabilities: Option<Vec<String>>,
    pub tokenizer: Option<String>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
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

impl ModelOverrides {
    /// Parses the TOML text of an overrides file and checks every price.
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
            for (field, value) in entry.prices() {
                if let Some(value) = value {
                    price(entry, field, value)?;
                }
            }
        }
        Ok(parsed)
    }
}

impl ModelOverride {
    fn prices(&self) -> [(&'static str, Option<&String>); 4] {
        [
            ("input_usd_per_mtok", self.input_usd_per_mtok.as_ref()),
            ("output_usd_per_mtok", self.output_usd_per_mtok.as_ref()),
            (
                "cache_read_usd_per_mtok",
                self.cache_read_usd_per_mtok.as_ref(),
            ),
            (
                "cache_write_usd_per_mtok",
                self.cache_write_usd_per_mtok.as_ref(),
            ),
        ]
    }
}

fn price(entry: &ModelOverride, field: &'static str, value: &str) -> Result<u64, OverrideError> {
    parse_usd_per_mtok(value).ok_or_else(|| OverrideError::BadPrice {
        provider: entry.provider.clone(),
        id: entry.id.clone(),
        field,
        value: value.to_owned(),
    })
}

fn optional_price(
    entry: &ModelOverride,
    field: &'static str,
    value: Option<&String>,
) -> Result<Option<u64>, OverrideError> {
    value.map(|v| price(entry, field, v)).transpose()
}

impl Catalogue {
    /// Applies operator overrides: known models get the given fields
    /// replaced, new models are added (they need both prices).
    pub fn apply(&mut self, overrides: &ModelOverrides) -> Result<(), OverrideError> {
        for entry in &overrides.model {
            let input = optional_price(
                entry,
                "input_usd_per_mtok",
                entry.input_usd_per_mtok.as_ref(),
            )?;
            let output = optional_price(
                entry,
                "output_usd_per_mtok",
                entry.output_usd_per_mtok.as_ref(),
            )?;
            let cache_read = optional_price(
                entry,
                "cache_read_usd_per_mtok",
                entry.cache_read_usd_per_mtok.as_ref(),
            )?;
            let cache_write = optional_price(
                entry,
                "cache_write_usd_per_mtok",
                entry.cache_write_usd_per_mtok.as_ref(),
            )?;
            let mut model = match self.get(&entry.provider, &entry.id) {
                Some(existing) => existing.clone(),
                None => {
                    let incomplete = |missing| OverrideError::Incomplete {
                        provider: entry.provider.clone(),
                        id: entry.id.clone(),
                        missing,
                    };
                    ModelEntry {
                        provider: entry.provider.clone(),
                        id: entry.id.clone(),
                        display_name: entry.id.clone(),
                        context_window: 0,
                        max_output_tokens: 0,
                        pricing: Pricing {
                            input: input.ok_or_else(|| incomplete("input_usd_per_mtok"))?,
                            output: output.ok_or_else(|| incomplete("output_usd_per_mtok"))?,
                            cache_read: None,
                            cache_write: None,
                        },
                        capabilities: vec!["streaming".into()],
                        tokenizer: "o200k_base".into(),
                        tokenizer_exact: false,
                        rate_limits: RateLimits::default(),
                    }
                }
            };
            if let Some(name) = &entry.display_name {
                model.display_name = name.clone();
            }
            if let Some(n) = entry.context_window {
                model.context_window = n;
            }
            if let Some(n) = entry.max_output_tokens {
                model.max_output_tokens = n;
            }
            if let Some(p) = input {
                model.pricing.input = p;
            }
            if let Some(p) = output {
                model.pricing.output = p;
            }
            if cache_read.is_some() {
                model.pricing.cache_read = cache_read;
            }
            if cache_write.is_some() {
                model.pricing.cache_write = cache_write;
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
            self.insert(model);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn bad_files_are_refused_with_a_reason() {
        assert!(matches!(
            ModelOverrides::from_toml("[[model]]\nprovider = 1"),
            Err(OverrideError::Syntax(_))
        ));
        assert!(matches!(
            ModelOverrides::from_toml("[[model]]\nprovider = \"a\"\nid = \"b\"\ncolour = \"red\""),
            Err(OverrideError::Syntax(_))
        ));
        assert!(matches!(
            ModelOverrides::from_toml(
                "[[model]]\nprovider = \"a\"\nid = \"b\"\ninput_usd_per_mtok = \"cheap\""
            ),
            Err(OverrideError::BadPrice {
                field: "input_usd_per_mtok",
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
}
