//! `llmhost experiments …`: A/B experiments of agents from the command
//! line.

use super::output::{Fail, print_json};
use crate::service::{Experiment, ExperimentReport, NewExperiment, Sticky, Variant};
use crate::{ConfigService, Error};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum ExperimentsCommand {
    /// Start an experiment: the agent's calls are split across the
    /// variants by weight, each variant's route tried first and the
    /// agent's configs after it as fallbacks. An agent has at most one
    /// active experiment.
    Create(CreateArgs),
    /// List the experiments and their variants.
    List,
    /// Stop an experiment: the agent's calls go to its configs again. The
    /// usage rows and the report stay.
    Stop {
        /// The experiment.
        name: String,
    },
    /// Per variant: calls, errors, p50/p99 latency, tokens, cost per call,
    /// and the 95% confidence interval (Welch's t) of the difference in
    /// mean cost and mean latency against the first (control) variant.
    Report {
        /// The experiment.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Letters, digits, `-`, `_` and `.`, at most 64; unique among
    /// experiments.
    name: String,
    /// The agent whose calls are split.
    #[arg(long, value_name = "NAME")]
    agent: String,
    /// A variant, two or more, the first being the control:
    /// NAME:WEIGHT:PROVIDER/MODEL, then optionally
    /// :temperature=T,max_tokens=N,top_p=P (the defaults of a call that
    /// sets none). E.g. `control:80:openai/gpt-4o-mini`
    /// `cheap:20:deepseek/deepseek-chat:temperature=0.3`. A variant's
    /// provider is reached with the key and base URL of the agent's first
    /// enabled config of that provider, else the provider's environment
    /// variables.
    #[arg(long = "variant", value_name = "SPEC", required = true, value_parser = parse_variant)]
    variants: Vec<Variant>,
    /// `user`: the same end-user (`chat --user`, the gateway's OpenAI
    /// `user` or Anthropic `metadata.user_id`) always gets the same
    /// variant, by a hash of experiment and user; calls without a user are
    /// assigned at random by weight. `request`: every call at random by
    /// weight.
    #[arg(long, value_enum, default_value = "user")]
    sticky: StickyArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StickyArg {
    User,
    Request,
}

/// Parses `NAME:WEIGHT:PROVIDER/MODEL[:key=value,…]`.
fn parse_variant(spec: &str) -> Result<Variant, String> {
    const SHAPE: &str = "expected NAME:WEIGHT:PROVIDER/MODEL[:temperature=T,max_tokens=N,top_p=P]";
    let mut parts = spec.splitn(4, ':');
    let (Some(name), Some(weight), Some(target)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(SHAPE.into());
    };
    let weight = weight
        .parse::<u32>()
        .map_err(|_| format!("weight `{weight}` is not a whole number; {SHAPE}"))?;
    let Some((provider, model)) = target.split_once('/') else {
        return Err(format!("`{target}` is not PROVIDER/MODEL; {SHAPE}"));
    };
    let mut variant = Variant {
        name: name.to_owned(),
        weight,
        provider: provider.to_owned(),
        model: model.to_owned(),
        temperature: None,
        max_tokens: None,
        top_p: None,
    };
    for setting in parts.next().into_iter().flat_map(|s| s.split(',')) {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("`{setting}` is not KEY=VALUE; {SHAPE}"))?;
        let number = || format!("`{key}` needs a number, not `{value}`");
        match key {
            "temperature" => variant.temperature = Some(value.parse().map_err(|_| number())?),
            "top_p" => variant.top_p = Some(value.parse().map_err(|_| number())?),
            "max_tokens" => variant.max_tokens = Some(value.parse().map_err(|_| number())?),
            other => {
                return Err(format!(
                    "unknown setting `{other}`: temperature, max_tokens or top_p"
                ));
            }
        }
    }
    Ok(variant)
}

fn variant_text(v: &Variant) -> String {
    let mut text = format!("{} ({}) {}/{}", v.name, v.weight, v.provider, v.model);
    let settings: Vec<String> = [
        v.temperature.map(|t| format!("temperature={t}")),
        v.max_tokens.map(|n| format!("max_tokens={n}")),
        v.top_p.map(|p| format!("top_p={p}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !settings.is_empty() {
        text.push_str(&format!(" [{}]", settings.join(", ")));
    }
    text
}

fn show_experiment(e: &Experiment) {
    let status = match &e.stopped_at {
        Some(at) => format!("stopped {at}"),
        None => "active".into(),
    };
    outln!(
        "{}  agent {}  sticky {}  {status}  since {}",
        e.name,
        e.agent,
        e.sticky.as_str(),
        e.created_at
    );
    for v in &e.variants {
        outln!("  {}", variant_text(v));
    }
}

fn show_report(report: &ExperimentReport) {
    show_experiment(&report.experiment);
    outln!(
        "{:<16} {:>8} {:>6} {:>9} {:>9} {:>9} {:>10} {:>10} {:>14}",
        "VARIANT",
        "CALLS",
        "ERRORS",
        "FALLBACK",
        "P50 MS",
        "P99 MS",
        "IN",
        "OUT",
        "$ PER CALL"
    );
    let or_dash = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for v in &report.variants {
        outln!(
            "{:<16} {:>8} {:>6} {:>9} {:>9} {:>9} {:>10} {:>10} {:>14}",
            v.name,
            v.requests,
            v.errors,
            v.fallbacks,
            or_dash(v.latency_p50_ms),
            or_dash(v.latency_p99_ms),
            v.input_tokens,
            v.output_tokens,
            v.mean_cost_usd
                .map_or_else(|| "-".to_owned(), |c| c.round_dp(8).normalize().to_string()),
        );
    }
    let Some(control) = report.variants.first() else {
        return;
    };
    for v in report.variants.iter().skip(1) {
        let Some(comparison) = v.versus_control else {
            continue;
        };
        let interval = |d: Option<crate::service::Difference>, digits: usize, unit: &str| {
            d.map_or_else(
                || "too few calls to compare".to_owned(),
                |d| {
                    format!(
                        "{:+.digits$} {unit} (95% CI {:+.digits$} to {:+.digits$})",
                        d.difference, d.low, d.high
                    )
                },
            )
        };
        outln!(
            "{} vs {}: mean cost {}; mean latency {}",
            v.name,
            control.name,
            interval(comparison.mean_cost_usd, 8, "USD"),
            interval(comparison.mean_latency_ms, 1, "ms")
        );
    }
    let hits: u64 = report.variants.iter().map(|v| v.cache_hits).sum();
    if hits > 0 {
        outln!("({hits} calls answered by the response cache are left out of the figures)");
    }
    if report.variants.iter().any(|v| v.unpriced > 0) {
        outln!("(calls of models without a known price are left out of the cost figures)");
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(value).map_err(|err| Error::Internal(format!("cannot serialize: {err}")))
}

/// Runs `llmhost experiments …`.
pub async fn run(
    service: &ConfigService,
    command: ExperimentsCommand,
    json: bool,
) -> Result<(), Fail> {
    match command {
        ExperimentsCommand::Create(args) => {
            let experiment = service
                .create_experiment(NewExperiment {
                    name: args.name,
                    agent: args.agent,
                    sticky: match args.sticky {
                        StickyArg::User => Sticky::User,
                        StickyArg::Request => Sticky::Request,
                    },
                    variants: args.variants,
                })
                .await?;
            if json {
                print_json(&json!({"experiment": to_json(&experiment)?}));
            } else {
                show_experiment(&experiment);
            }
        }
        ExperimentsCommand::List => {
            let experiments = service.experiments().await?;
            if json {
                print_json(&json!({"experiments": to_json(&experiments)?}));
            } else if experiments.is_empty() {
                outln!("no experiments");
            } else {
                experiments.iter().for_each(show_experiment);
            }
        }
        ExperimentsCommand::Stop { name } => {
            let experiment = service.stop_experiment(&name).await?;
            if json {
                print_json(&json!({"experiment": to_json(&experiment)?}));
            } else {
                outln!("stopped experiment {name}");
            }
        }
        ExperimentsCommand::Report { name } => {
            let report = service.experiment_report(&name).await?;
            if json {
                print_json(&to_json(&report)?);
            } else {
                show_report(&report);
            }
        }
    }
    Ok(())
}
