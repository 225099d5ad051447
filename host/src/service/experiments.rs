//! A/B experiments of agents: variants (a provider, a model, sampling
//! settings) that share an agent's calls by weight, and the report that
//! compares them from the usage rows.
//!
//! **Assignment.** With `sticky: user`, a call carrying an end-user id
//! (`ChatRequest::user`, OpenAI's `user`, Anthropic's `metadata.user_id`)
//! goes where blake3(experiment name, user) puts it: the hash's first 64
//! bits scaled to `[0, total weight)`, then the first variant whose
//! cumulative weight is above that point. The same user always gets the
//! same variant of an experiment, and different experiments split users
//! independently. A call without a user id, and every call of a `request`
//! experiment, draws the point from the operating system's random source
//! instead, so users without an id are spread by weight rather than all
//! sent to one variant.
//!
//! **Routing.** The assigned variant's route goes first in the call's plan
//! (with the key and base URL of the agent's first enabled config of the
//! same provider, else the provider's environment; that config's custom
//! prices if it is of the same model, else the catalogue's), then the agent's
//! configs as usual, as fallbacks; every usage row of the call names the
//! experiment and the variant.
//!
//! **The report** counts each call once, under the variant it was
//! assigned (intention to treat), from its final usage row: the attempt
//! that answered, or the last one that failed. Retries before it are not
//! counted again; a call the agent's configs answered after the variant's
//! route failed counts as the variant's, and in its `fallbacks`. Latency is
//! that final attempt's, over the calls that answered.

use super::{ConfigService, check_name, invalid};
use crate::error::Error;
use crate::host::Target;
use crate::router::{Route, RouteDefaults};
use crate::store::{Agent, ConfigFields, ConfigRow, ExperimentCall};
pub use crate::store::{Experiment, ExperimentStatus, Sticky, Variant};
use llmhost_registry::rust_decimal::Decimal;
use llmhost_registry::rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Most variants an experiment may have.
const MAX_VARIANTS: usize = 16;

/// An experiment to create. In JSON: `{"name", "agent", "sticky",
/// "variants": [{"name", "weight", "provider", "model", "temperature",
/// "max_tokens", "top_p"}, …]}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExperiment {
    /// Unique among all experiments: 1 to 64 letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The agent whose calls it splits; it may have one active experiment.
    pub agent: String,
    pub sticky: Sticky,
    /// Two or more, the first being the control the others are compared
    /// with.
    pub variants: Vec<Variant>,
}

/// A difference of means, variant minus control, with its 95 %
/// confidence interval by Welch's t: `diff ± t(0.975, ν) · sqrt(s₁²/n₁ +
/// s₂²/n₂)`, ν by the Welch–Satterthwaite equation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Difference {
    pub difference: f64,
    pub low: f64,
    pub high: f64,
}

/// A variant against the control; a difference is `null` while either
/// side has fewer than 2 calls to measure it on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Comparison {
    /// Mean cost per call, USD.
    pub mean_cost_usd: Option<Difference>,
    /// Mean latency of the calls that answered, milliseconds.
    pub mean_latency_ms: Option<Difference>,
}

/// One variant's calls.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VariantReport {
    pub name: String,
    pub provider: String,
    pub model: String,
    pub weight: u32,
    /// Calls assigned to the variant, each counted once, that reached a
    /// provider.
    pub requests: u64,
    /// Calls assigned to the variant that the response cache answered:
    /// left out of every other figure.
    pub cache_hits: u64,
    /// Of those, calls that failed (after their retries and fallbacks).
    pub errors: u64,
    /// Of those, calls an agent config answered after the variant's route
    /// failed.
    pub fallbacks: u64,
    /// Nearest-rank percentiles of the calls that answered.
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
    pub mean_latency_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The exact sum of the calls' costs (a failed call costs what its row
    /// records, usually nothing).
    #[schema(value_type = String)]
    pub cost_usd: Decimal,
    /// `cost_usd` over the priced calls: those that answered from a model
    /// with a price, and the failed ones at what their rows record
    /// (usually nothing).
    #[schema(value_type = Option<String>)]
    pub mean_cost_usd: Option<Decimal>,
    /// Calls that answered from a model without a price: left out of the
    /// cost figures.
    pub unpriced: u64,
    /// Against the first variant; `null` for the first itself.
    pub versus_control: Option<Comparison>,
}

/// What an experiment's calls show, variant by variant.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ExperimentReport {
    pub experiment: Experiment,
    pub variants: Vec<VariantReport>,
}

/// The index of the variant a call of `experiment` is assigned: by
/// `user` for a `user` experiment when given, else at random by weight.
pub fn assign(experiment: &Experiment, user: Option<&str>) -> Result<usize, Error> {
    let total: u64 = experiment
        .variants
        .iter()
        .map(|v| u64::from(v.weight))
        .sum();
    if total == 0 {
        return Err(Error::Internal(format!(
            "experiment `{}` has no variant with weight",
            experiment.name
        )));
    }
    let bits = match (experiment.sticky, user) {
        (Sticky::User, Some(user)) => user_bits(&experiment.name, user),
        _ => {
            getrandom::u64().map_err(|err| Error::Internal(format!("no random numbers: {err}")))?
        }
    };
    // 64 random bits scaled to [0, total): a point in [0, 1) times the
    // total weight, in integers.
    let point = ((u128::from(bits) * u128::from(total)) >> 64) as u64;
    let mut cumulative = 0;
    for (index, variant) in experiment.variants.iter().enumerate() {
        cumulative += u64::from(variant.weight);
        if point < cumulative {
            return Ok(index);
        }
    }
    Ok(experiment.variants.len() - 1)
}

/// 64 bits of blake3 over the experiment's name and the user id, each
/// length-prefixed so that no two pairs hash alike.
fn user_bits(experiment: &str, user: &str) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(experiment.len() as u64).to_le_bytes());
    hasher.update(experiment.as_bytes());
    hasher.update(&(user.len() as u64).to_le_bytes());
    hasher.update(user.as_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// Mean and sample variance; `None` for no values.
fn moments(values: &[f64]) -> Option<(f64, f64, usize)> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let variance = if n > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    Some((mean, variance, n))
}

/// `variant − control` with Welch's interval; `None` unless both have at
/// least 2 values.
fn welch(control: &[f64], variant: &[f64]) -> Option<Difference> {
    let (mean_c, var_c, n_c) = moments(control)?;
    let (mean_v, var_v, n_v) = moments(variant)?;
    if n_c < 2 || n_v < 2 {
        return None;
    }
    let difference = mean_v - mean_c;
    let (share_c, share_v) = (var_c / n_c as f64, var_v / n_v as f64);
    let se2 = share_c + share_v;
    if se2 == 0.0 {
        // No spread on either side: the difference is exact.
        return Some(Difference {
            difference,
            low: difference,
            high: difference,
        });
    }
    let df =
        se2.powi(2) / (share_c.powi(2) / (n_c - 1) as f64 + share_v.powi(2) / (n_v - 1) as f64);
    let t = StudentsT::new(0.0, 1.0, df).ok()?.inverse_cdf(0.975);
    let margin = t * se2.sqrt();
    Some(Difference {
        difference,
        low: difference - margin,
        high: difference + margin,
    })
}

/// Nearest-rank percentile `p` of sorted `values`.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// One variant's calls gathered for its report.
#[derive(Default)]
struct Sample {
    cache_hits: u64,
    requests: u64,
    errors: u64,
    fallbacks: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: Decimal,
    unpriced: u64,
    /// Costs of the priced calls, and latencies of the answered ones.
    costs: Vec<f64>,
    latencies: Vec<u64>,
}

impl Sample {
    fn add(&mut self, call: &ExperimentCall) {
        // A cached answer took no provider call: it says nothing of the
        // variant's latency or cost, so it is only counted.
        if call.cache_hit {
            self.cache_hits += 1;
            return;
        }
        self.requests += 1;
        self.errors += u64::from(!call.ok);
        self.fallbacks += u64::from(call.ok && call.fallback);
        self.input_tokens += call.input_tokens;
        self.output_tokens += call.output_tokens;
        if call.ok {
            self.latencies.push(call.latency_ms);
        }
        match (call.cost_usd, call.ok) {
            (Some(cost), _) => {
                self.cost_usd += cost;
                self.costs.push(cost.to_f64().unwrap_or(f64::NAN));
            }
            // A failure with no cost recorded was billed nothing.
            (None, false) => self.costs.push(0.0),
            (None, true) => self.unpriced += 1,
        }
    }

    fn latencies_f64(&self) -> Vec<f64> {
        self.latencies.iter().map(|&ms| ms as f64).collect()
    }
}

/// The report of `experiment` from its calls.
fn report(experiment: Experiment, calls: &[ExperimentCall]) -> ExperimentReport {
    let mut samples: Vec<Sample> = experiment
        .variants
        .iter()
        .map(|_| Sample::default())
        .collect();
    for call in calls {
        if let Some(index) = experiment
            .variants
            .iter()
            .position(|v| v.name == call.variant)
        {
            samples[index].add(call);
        }
    }
    for sample in &mut samples {
        sample.latencies.sort_unstable();
    }
    let control_costs = samples.first().map(|s| s.costs.clone()).unwrap_or_default();
    let control_latencies = samples
        .first()
        .map(Sample::latencies_f64)
        .unwrap_or_default();
    let variants = experiment
        .variants
        .iter()
        .zip(&samples)
        .enumerate()
        .map(|(index, (variant, sample))| {
            let priced = sample.costs.len();
            let latencies = sample.latencies_f64();
            VariantReport {
                name: variant.name.clone(),
                provider: variant.provider.clone(),
                model: variant.model.clone(),
                weight: variant.weight,
                requests: sample.requests,
                cache_hits: sample.cache_hits,
                errors: sample.errors,
                fallbacks: sample.fallbacks,
                latency_p50_ms: percentile(&sample.latencies, 50.0),
                latency_p99_ms: percentile(&sample.latencies, 99.0),
                mean_latency_ms: moments(&latencies).map(|(mean, ..)| mean),
                input_tokens: sample.input_tokens,
                output_tokens: sample.output_tokens,
                cost_usd: sample.cost_usd,
                mean_cost_usd: (priced > 0).then(|| sample.cost_usd / Decimal::from(priced)),
                unpriced: sample.unpriced,
                versus_control: (index > 0).then(|| Comparison {
                    mean_cost_usd: welch(&control_costs, &sample.costs),
                    mean_latency_ms: welch(&control_latencies, &latencies),
                }),
            }
        })
        .collect();
    ExperimentReport {
        experiment,
        variants,
    }
}

/// A validation failure of one variant: the config check's field under
/// `variants.`, the message naming the variant.
fn of_variant(name: &str, err: Error) -> Error {
    match err {
        Error::Validation { field, message } => Error::Validation {
            field: match field {
                "provider" => "variants.provider",
                "model" => "variants.model",
                "temperature" => "variants.temperature",
                "top_p" => "variants.top_p",
                "max_tokens" => "variants.max_tokens",
                "name" => "variants.name",
                _ => "variants",
            },
            message: format!("variant `{name}`: {message}"),
        },
        other => other,
    }
}

impl ConfigService {
    /// Creates an active experiment for `new.agent`. Each variant is
    /// checked as a config is (a loaded provider, a model of the
    /// catalogue, temperature 0–2, top-p 0–1, max tokens within the
    /// model's output limit) and needs a weight above 0 and a name of its
    /// own. A taken name, or an agent with an active experiment, is
    /// [`Error::Conflict`].
    pub async fn create_experiment(&self, new: NewExperiment) -> Result<Experiment, Error> {
        check_name(&new.name)?;
        if !(2..=MAX_VARIANTS).contains(&new.variants.len()) {
            return Err(invalid(
                "variants",
                format!(
                    "an experiment needs 2 to {MAX_VARIANTS} variants, the first being the control \
                     (given: {})",
                    new.variants.len()
                ),
            ));
        }
        for (i, variant) in new.variants.iter().enumerate() {
            check_name(&variant.name).map_err(|err| of_variant(&variant.name, err))?;
            if new.variants[..i].iter().any(|v| v.name == variant.name) {
                return Err(invalid(
                    "variants.name",
                    format!("`{}` is given twice", variant.name),
                ));
            }
            if variant.weight == 0 {
                return Err(invalid(
                    "variants.weight",
                    format!("variant `{}`: must be more than 0", variant.name),
                ));
            }
            let mut fields = ConfigFields::new(&variant.provider, &variant.model);
            fields.temperature = variant.temperature;
            fields.max_tokens = variant.max_tokens;
            fields.top_p = variant.top_p;
            self.check(&fields)
                .map_err(|err| of_variant(&variant.name, err))?;
        }
        let agent = self.agent(&new.agent).await?;
        self.store
            .create_experiment(agent.id, &new.name, new.sticky, new.variants)
            .await
    }

    /// Every experiment, by name.
    pub async fn experiments(&self) -> Result<Vec<Experiment>, Error> {
        self.store.experiments().await
    }

    /// The experiment named `name`.
    pub async fn experiment(&self, name: &str) -> Result<Experiment, Error> {
        self.store
            .experiment(name)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "experiment",
                key: name.to_owned(),
            })
    }

    /// Stops experiment `name`: its agent's calls go to its configs again.
    /// Its usage rows and report stay.
    pub async fn stop_experiment(&self, name: &str) -> Result<Experiment, Error> {
        self.store.stop_experiment(name).await
    }

    /// Each variant's calls, errors, latency, tokens and cost, and how
    /// each compares with the first (see the module's documentation for
    /// how calls are counted). Costs are exact decimal sums; the
    /// comparisons are floating point.
    pub async fn experiment_report(&self, name: &str) -> Result<ExperimentReport, Error> {
        let experiment = self.experiment(name).await?;
        let calls = self
            .store
            .experiment_calls(&experiment.name, &experiment.created_at)
            .await?;
        Ok(report(experiment, &calls))
    }

    /// The route of the variant that `agent`'s active experiment assigns
    /// this call, and the (experiment, variant) tag; `None` without an
    /// active experiment. `configs` are the agent's enabled ones: the
    /// first of the variant's provider lends it its key and base URL, and
    /// its custom prices when it is of the variant's model too (else the
    /// catalogue prices the call).
    pub(super) async fn experiment_route(
        &self,
        agent: &Agent,
        configs: &[ConfigRow],
        user: Option<&str>,
    ) -> Result<Option<(Route, (String, String))>, Error> {
        let Some(experiment) = self.store.active_experiment(agent.id).await? else {
            return Ok(None);
        };
        let variant = &experiment.variants[assign(&experiment, user)?];
        let config = configs
            .iter()
            .find(|row| row.fields.provider == variant.provider);
        let target = match config {
            Some(row) => self.target(row)?,
            None => Target::new(&variant.provider),
        };
        let route = Route {
            target,
            model: variant.model.clone(),
            defaults: RouteDefaults {
                temperature: variant.temperature.map(|t| t as f32),
                max_tokens: variant.max_tokens,
                top_p: variant.top_p.map(|p| p as f32),
            },
            // The lending config's custom prices hold for its own model.
            prices: config
                .filter(|row| row.fields.model == variant.model)
                .and_then(|row| row.fields.prices)
                .map(|prices| {
                    let catalogue = self.host.catalogue().get(&variant.provider, &variant.model);
                    prices.billing(catalogue.map(|model| &model.pricing))
                }),
            config_id: config.map(|row| row.id),
            fallback: false,
            choice: None,
            // A request too long for the variant's model moves on to the
            // agent's configs, which carry their own context fallbacks.
            context_fallback: None,
        };
        let tag = (experiment.name.clone(), variant.name.clone());
        Ok(Some((route, tag)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(sticky: Sticky, weights: &[u32]) -> Experiment {
        Experiment {
            id: 1,
            agent_id: 1,
            agent: "bot".into(),
            name: "exp".into(),
            sticky,
            status: ExperimentStatus::Active,
            created_at: String::new(),
            stopped_at: None,
            variants: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| Variant {
                    name: format!("v{i}"),
                    weight,
                    provider: "openai".into(),
                    model: "gpt-4o-mini".into(),
                    temperature: None,
                    max_tokens: None,
                    top_p: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_user_keeps_their_variant_and_users_spread_by_weight() {
        let exp = experiment(Sticky::User, &[3, 1]);
        let mut counts = [0u32; 2];
        for user in 0..4000 {
            let user = format!("user-{user}");
            let first = assign(&exp, Some(&user)).unwrap();
            assert_eq!(assign(&exp, Some(&user)).unwrap(), first);
            counts[first] += 1;
        }
        // 4000 users at 1/4: mean 1000, σ = √(4000·¾·¼) ≈ 27.4. The hash
        // is deterministic, so this passes or fails for good; were it a
        // random draw, ±5σ would fail with probability about 6·10⁻⁷.
        assert!((863..=1137).contains(&counts[1]), "{counts:?}");
    }

    #[test]
    fn calls_without_a_user_are_drawn_by_weight() {
        let exp = experiment(Sticky::User, &[3, 1]);
        let second = (0..4000)
            .filter(|_| assign(&exp, None).unwrap() == 1)
            .count();
        // Random draws: Binomial(4000, 1/4), σ ≈ 27.4; outside ±5σ with
        // probability about 6·10⁻⁷.
        assert!((863..=1137).contains(&second), "{second}");
    }

    #[test]
    fn welch_intervals_need_two_values_a_side() {
        assert_eq!(welch(&[1.0], &[1.0, 2.0]), None);
        let d = welch(&[1.0, 3.0], &[4.0, 6.0]).unwrap();
        assert_eq!(d.difference, 3.0);
        // s² = 2 on both sides: se = √(2/2 + 2/2) = √2, ν = 4/(½ + ½) = 2,
        // t(0.975, 2) = 4.302653 (tables).
        let margin = (d.high - d.low) / 2.0;
        assert!((margin - 4.302_653 * 2f64.sqrt()).abs() < 1e-5, "{margin}");
    }
}
