//! The writable fields of an LLM config, listed once.
//!
//! [`ConfigFields`] is what a config is (the store's columns, the
//! service's input and view, the admin API's JSON); [`ConfigPatch`] is a
//! change to it (absent: unchanged, `null`: cleared). Both, the column
//! list, the INSERT/UPDATE parameters, the by-name row reader and the
//! patch application come from the one `config_fields!` invocation below.
//!
//! Adding a field is one line there and a migration adding its column:
//!
//! ```text
//!     nullable {
//! +       /// Seed for sampling, for vendors that take one.
//! +       seed: u64 => "seed",
//! ```
//!
//! ```text
//! +const CONFIG_SEED_UP: &str = "ALTER TABLE agent_llm_configs ADD COLUMN seed INTEGER;";
//! ```
//!
//! after which the field is stored, read, shown, patched, cleared
//! (`--clear seed`) and accepted by the API; the service's `check` is where
//! a range would go. A value type needs a [`Column`] impl (the plain SQL
//! types have one).

use super::sql::{Row, SqlError, SqlResult, Value as SqlValue};
use crate::error::Error;
use llmhost_registry::parse_usd_per_mtok;
use llmhost_registry::{Prices, Pricing};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// How a field's value is written to and read from its column.
pub trait Column: Sized {
    /// The SQL value written.
    fn to_sql(&self) -> SqlValue;
    /// The value of column `name` of `row`.
    fn read(row: &Row, name: &str) -> SqlResult<Self>;
}

macro_rules! plain_columns {
    ($($ty:ty),+) => {$(
        impl Column for $ty {
            fn to_sql(&self) -> SqlValue {
                self.clone().into()
            }
            fn read(row: &Row, name: &str) -> SqlResult<Self> {
                row.get(name)
            }
        }
    )+};
}

plain_columns!(
    String,
    i64,
    u32,
    bool,
    Option<String>,
    Option<f64>,
    Option<u32>
);

impl Column for Option<u64> {
    fn to_sql(&self) -> SqlValue {
        self.map(|n| i64::try_from(n).unwrap_or(i64::MAX)).into()
    }
    fn read(row: &Row, name: &str) -> SqlResult<Self> {
        row.get(name)
    }
}

fn conversion_error(name: &str, message: String) -> SqlError {
    SqlError::conversion(name, message)
}

/// A JSON object, as text.
impl Column for Map<String, Value> {
    fn to_sql(&self) -> SqlValue {
        SqlValue::Text(Value::Object(self.clone()).to_string())
    }
    fn read(row: &Row, name: &str) -> SqlResult<Self> {
        let text: String = row.get(name)?;
        match serde_json::from_str(&text) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(conversion_error(name, "not a JSON object".into())),
        }
    }
}

/// The JSON of [`ConfigPrices`] (decimal strings), or NULL.
impl Column for Option<ConfigPrices> {
    fn to_sql(&self) -> SqlValue {
        match self {
            Some(prices) => SqlValue::Text(serde_json::to_string(prices).unwrap_or_default()),
            None => SqlValue::Null,
        }
    }
    fn read(row: &Row, name: &str) -> SqlResult<Self> {
        let text: Option<String> = row.get(name)?;
        text.map(|text| {
            serde_json::from_str(&text).map_err(|err| conversion_error(name, err.to_string()))
        })
        .transpose()
    }
}

/// `Some(None)` for `null`, `Some(Some(v))` for a value; with
/// `#[serde(default)]`, `None` for an absent field.
pub fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

macro_rules! config_fields {
    (
        required { $($(#[doc = $rdoc:literal])* $req:ident: $rty:ty => $rcol:literal,)+ }
        defaulted { $($(#[doc = $ddoc:literal])* $def:ident: $dty:ty = $default:expr => $dcol:literal,)+ }
        nullable { $($(#[doc = $ndoc:literal])* $opt:ident: $oty:ty => $ocol:literal,)+ }
    ) => {
        /// The writable fields of an LLM config. In JSON, `provider` and
        /// `model` are required; the others default (`enabled`: true,
        /// `priority`: 0, `metadata`: `{}`, the rest `null`).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(from = "ConfigFieldsInput")]
        pub struct ConfigFields {
            $($(#[doc = $rdoc])* pub $req: $rty,)+
            $($(#[doc = $ddoc])* pub $def: $dty,)+
            $($(#[doc = $ndoc])* pub $opt: Option<$oty>,)+
        }

        /// [`ConfigFields`] as given: the defaulted fields may be absent.
        #[derive(Deserialize)]
        struct ConfigFieldsInput {
            $($req: $rty,)+
            $(#[serde(default)] $def: Option<$dty>,)+
            $(#[serde(default)] $opt: Option<$oty>,)+
        }

        impl From<ConfigFieldsInput> for ConfigFields {
            fn from(input: ConfigFieldsInput) -> Self {
                Self {
                    $($req: input.$req,)+
                    $($def: input.$def.unwrap_or_else(|| $default),)+
                    $($opt: input.$opt,)+
                }
            }
        }

        impl ConfigFields {
            /// A config of these required fields, the others at their
            /// defaults.
            pub fn new($($req: impl Into<$rty>),+) -> Self {
                Self {
                    $($req: $req.into(),)+
                    $($def: $default,)+
                    $($opt: None,)+
                }
            }

            /// The fields' names, as JSON and `--set` spell them.
            pub const NAMES: &'static [&'static str] =
                &[$(stringify!($req),)+ $(stringify!($def),)+ $(stringify!($opt),)+];

            /// The columns of the fields, in [`ConfigFields::sql_values`]
            /// order.
            pub const COLUMNS: &'static [&'static str] = &[$($rcol,)+ $($dcol,)+ $($ocol,)+];

            /// The fields' values, in [`ConfigFields::COLUMNS`] order.
            pub fn sql_values(&self) -> Vec<SqlValue> {
                vec![
                    $(Column::to_sql(&self.$req),)+
                    $(Column::to_sql(&self.$def),)+
                    $(Column::to_sql(&self.$opt),)+
                ]
            }

            /// The fields of a row, by column name.
            pub fn from_row(row: &Row) -> SqlResult<Self> {
                Ok(Self {
                    $($req: Column::read(row, $rcol)?,)+
                    $($def: Column::read(row, $dcol)?,)+
                    $($opt: Column::read(row, $ocol)?,)+
                })
            }
        }

        /// A change to [`ConfigFields`]: `None` (in JSON, an absent field)
        /// leaves a field as it is; for the fields that may be empty,
        /// `Some(None)` (in JSON, `null`) clears it.
        #[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
        pub struct ConfigPatch {
            $($(#[doc = $rdoc])* #[serde(default)] pub $req: Option<$rty>,)+
            $($(#[doc = $ddoc])* #[serde(default)] pub $def: Option<$dty>,)+
            $(
                $(#[doc = $ndoc])*
                #[serde(default, deserialize_with = "nullable")]
                pub $opt: Option<Option<$oty>>,
            )+
        }

        impl ConfigPatch {
            /// The fields that may be cleared, by name.
            pub const NULLABLE: &'static [&'static str] = &[$(stringify!($opt),)+];

            /// Writes the fields the patch sets into `fields`.
            pub fn apply(&self, fields: &mut ConfigFields) {
                $(if let Some(value) = &self.$req { fields.$req = value.clone(); })+
                $(if let Some(value) = &self.$def { fields.$def = value.clone(); })+
                $(if let Some(value) = &self.$opt { fields.$opt = value.clone(); })+
            }

            /// Marks the nullable field `name` to be cleared, unless the
            /// patch sets a value for it; false when no nullable field has
            /// that name.
            pub fn clear(&mut self, name: &str) -> bool {
                match name {
                    $(stringify!($opt) => {
                        self.$opt.get_or_insert(None);
                    })+
                    _ => return false,
                }
                true
            }

            /// Whether the patch changes nothing.
            pub fn is_empty(&self) -> bool {
                $(self.$req.is_none() &&)+ $(self.$def.is_none() &&)+ $(self.$opt.is_none() &&)+ true
            }
        }
    };
}

config_fields! {
    required {
        /// Provider id (a loaded plugin).
        provider: String => "provider",
        /// Model id (in the catalogue).
        model: String => "model_name",
    }
    defaulted {
        /// Lower is tried first.
        priority: i64 = 0 => "priority",
        enabled: bool = true => "enabled",
        /// Share of the calls among the agent's configs of the same
        /// priority when the agent balances by `weighted` (at least 1).
        weight: u32 = 1 => "weight",
        /// A JSON object of the caller's own data.
        metadata: Map<String, Value> = Map::new() => "metadata_json",
    }
    nullable {
        /// Sampling temperature, 0 to 2.
        temperature: f64 => "temperature",
        /// Most tokens to generate, up to the model's output limit.
        max_tokens: u32 => "max_tokens",
        /// Nucleus sampling, 0 to 1.
        top_p: f64 => "top_p",
        /// Where to send the calls instead of the provider's default.
        base_url: String => "base_url",
        /// With `fallback_model`: where to go when this config fails.
        fallback_provider: String => "fallback_provider",
        fallback_model: String => "fallback_model",
        /// With `context_fallback_model`: where a request goes that does
        /// not fit this config's model's context window (a model with a
        /// larger one).
        context_fallback_provider: String => "context_fallback_provider",
        context_fallback_model: String => "context_fallback_model",
        /// The operator's prices; `None`: the catalogue's (tiers, off-peak
        /// and all).
        prices: ConfigPrices => "prices_json",
        /// Attempts per route of a call, 1 to 10; `None`: the global
        /// setting.
        max_attempts: u32 => "max_attempts",
        /// Budget of a whole call in milliseconds; `None`: the global
        /// setting.
        deadline_ms: u64 => "deadline_ms",
    }
}

/// An operator's prices for a config, in the catalogue's unit:
/// micro-dollars per million tokens ([`Prices`]). In JSON, USD per million
/// tokens as decimal strings: `{"input": "2.5", "output": "10",
/// "cache_read": "1.25", "cache_write": null, "cache_write_hour": null}`.
///
/// A cache price left out is derived, see [`ConfigPrices::billing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConfigPrices {
    pub input: u64,
    pub output: u64,
    pub cache_read: Option<u64>,
    pub cache_write: Option<u64>,
    pub cache_write_hour: Option<u64>,
}

/// `price * part / whole`, rounded to the nearest micro-dollar.
fn scaled(price: u64, part: u64, whole: u64) -> u64 {
    let exact = u128::from(price) * u128::from(part);
    let rounded = (exact + u128::from(whole) / 2) / u128::from(whole);
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

impl ConfigPrices {
    /// Input and output prices, no cache price of their own.
    pub const fn new(input: u64, output: u64) -> Self {
        Self {
            input,
            output,
            cache_read: None,
            cache_write: None,
            cache_write_hour: None,
        }
    }

    /// Parses USD per million tokens (`"2.5"`); `field` names the price in
    /// the error (`prices.input`).
    pub fn parse_usd(value: &str, field: &'static str) -> Result<u64, Error> {
        parse_usd_per_mtok(value).ok_or_else(|| Error::Validation {
            field,
            message: format!(
                "`{value}` is not a non-negative amount of USD per million tokens (at most 6 decimals)"
            ),
        })
    }

    /// The prices billed: these, with each cache price left out taken
    /// from the catalogue's model in proportion (its cache-to-input ratio
    /// applied to this input price: a vendor's 10% cache read stays 10%),
    /// else the input price (as the registry does for a vendor that
    /// charges none of its own).
    pub fn billing(&self, catalogue: Option<&Pricing>) -> Prices {
        let base = catalogue
            .map(|pricing| pricing.base)
            .filter(|b| b.input > 0);
        let derived = |own: Option<u64>, theirs: fn(&Prices) -> Option<u64>| {
            own.or_else(|| {
                base.and_then(|b| theirs(&b).map(|price| scaled(self.input, price, b.input)))
            })
        };
        Prices {
            input: self.input,
            output: self.output,
            cache_read: derived(self.cache_read, |b| b.cache_read),
            cache_write: derived(self.cache_write, |b| b.cache_write),
            cache_write_hour: derived(self.cache_write_hour, |b| b.cache_write_hour),
        }
    }
}

/// Micro-dollars as a USD decimal string: `2500000` is `"2.5"`.
fn usd_text(micros: u64) -> String {
    Pricing::per_million_usd(micros).normalize().to_string()
}

/// USD per million tokens, as decimal strings; a cache price left out
/// follows the catalogue's ratio to the input price.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ConfigPrices)]
struct PricesJson {
    input: String,
    output: String,
    #[serde(default)]
    cache_read: Option<String>,
    #[serde(default)]
    cache_write: Option<String>,
    #[serde(default)]
    cache_write_hour: Option<String>,
}

impl utoipa::PartialSchema for ConfigPrices {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <PricesJson as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for ConfigPrices {
    fn name() -> std::borrow::Cow<'static, str> {
        "ConfigPrices".into()
    }
}

impl Serialize for ConfigPrices {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PricesJson {
            input: usd_text(self.input),
            output: usd_text(self.output),
            cache_read: self.cache_read.map(usd_text),
            cache_write: self.cache_write.map(usd_text),
            cache_write_hour: self.cache_write_hour.map(usd_text),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ConfigPrices {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = PricesJson::deserialize(deserializer)?;
        let parse = |value: &str, field| {
            ConfigPrices::parse_usd(value, field).map_err(serde::de::Error::custom)
        };
        let optional =
            |value: &Option<String>, field| value.as_deref().map(|v| parse(v, field)).transpose();
        Ok(Self {
            input: parse(&json.input, "prices.input")?,
            output: parse(&json.output, "prices.output")?,
            cache_read: optional(&json.cache_read, "prices.cache_read")?,
            cache_write: optional(&json.cache_write, "prices.cache_write")?,
            cache_write_hour: optional(&json.cache_write_hour, "prices.cache_write_hour")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_take_their_defaults_and_require_provider_and_model() {
        let fields: ConfigFields =
            serde_json::from_value(json!({"provider": "openai", "model": "gpt-4o-mini"})).unwrap();
        assert_eq!(fields, ConfigFields::new("openai", "gpt-4o-mini"));
        assert!(fields.enabled);
        assert_eq!(fields.priority, 0);
        assert_eq!(
            serde_json::to_value(&fields).unwrap()["metadata"],
            json!({})
        );
        let missing = serde_json::from_value::<ConfigFields>(json!({"provider": "openai"}));
        assert!(missing.unwrap_err().to_string().contains("model"));
    }

    #[test]
    fn a_patch_leaves_absent_fields_and_clears_null_ones() {
        let mut fields = ConfigFields::new("openai", "gpt-4o-mini");
        fields.temperature = Some(0.5);
        fields.max_tokens = Some(100);
        let patch: ConfigPatch =
            serde_json::from_value(json!({"temperature": null, "priority": 3, "top_p": 0.9}))
                .unwrap();
        patch.apply(&mut fields);
        assert_eq!(fields.temperature, None);
        assert_eq!(fields.max_tokens, Some(100));
        assert_eq!(fields.top_p, Some(0.9));
        assert_eq!(fields.priority, 3);
        assert!(ConfigPatch::default().is_empty());
        let mut clear = ConfigPatch::default();
        assert!(clear.clear("max_tokens"));
        assert!(!clear.clear("provider"));
        clear.apply(&mut fields);
        assert_eq!(fields.max_tokens, None);
    }

    #[test]
    fn prices_are_usd_per_million_in_json_and_micro_dollars_inside() {
        let prices: ConfigPrices = serde_json::from_value(
            json!({"input": "2.5", "output": "10", "cache_read": "1.25", "cache_write": null}),
        )
        .unwrap();
        assert_eq!(
            prices,
            ConfigPrices {
                cache_read: Some(1_250_000),
                ..ConfigPrices::new(2_500_000, 10_000_000)
            }
        );
        assert_eq!(
            serde_json::to_value(prices).unwrap(),
            json!({"input": "2.5", "output": "10", "cache_read": "1.25",
                   "cache_write": null, "cache_write_hour": null})
        );
        for (bad, field) in [
            (json!({"input": "-1", "output": "1"}), "prices.input"),
            (json!({"input": "1", "output": "ten"}), "prices.output"),
            (
                json!({"input": "1", "output": "1", "cache_read": "-0.5"}),
                "prices.cache_read",
            ),
        ] {
            let err = serde_json::from_value::<ConfigPrices>(bad).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn left_out_cache_prices_follow_the_catalogue_ratio_else_the_input_price() {
        // The vendor: $3 in, cache reads at $0.30 (10%), writes at $3.75.
        let vendor = Pricing::flat(Prices {
            cache_read: Some(300_000),
            cache_write: Some(3_750_000),
            ..Prices::new(3_000_000, 15_000_000)
        });
        let custom = ConfigPrices::new(2_000_000, 8_000_000);
        let billed = custom.billing(Some(&vendor));
        assert_eq!(billed.cache_read, Some(200_000));
        assert_eq!(billed.cache_write, Some(2_500_000));
        assert_eq!(billed.effective_cache_write_hour(), 2_500_000);
        let own = ConfigPrices {
            cache_read: Some(100_000),
            ..custom
        };
        assert_eq!(own.billing(Some(&vendor)).cache_read, Some(100_000));
        let unknown = custom.billing(None);
        assert_eq!(unknown.effective_cache_read(), 2_000_000);
    }
}
