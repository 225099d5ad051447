//! `llmhost virtual-keys …` and the budget reports of `usage`: the
//! gateway's keys and budgets from the command line.

use super::admin::usd;
use super::output::{Fail, print_json};
use crate::service::{BudgetUsage, Budgets, NewVirtualKey, VirtualKey, VirtualKeys};
use crate::store::{BudgetPeriod, Store};
use crate::{Error, Settings};
use clap::{Args, Subcommand, ValueEnum};
use llmhost_registry::rust_decimal::Decimal;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

#[derive(Debug, Subcommand)]
pub enum VirtualKeysCommand {
    /// Create a key and print it. It is shown this once: llmhost keeps
    /// only a keyed hash of it and its first 8 characters.
    Create(CreateArgs),
    /// List the keys with their hints, limits and status (active, revoked,
    /// expired); never the keys themselves.
    List,
    /// Revoke a key for good. A running gateway refuses it within a
    /// second. Revoking a revoked key changes nothing.
    Revoke {
        /// The key's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Letters, digits, `-`, `_` and `.`, at most 64; unique among keys.
    name: String,
    /// Scope the key to this agent (it must exist).
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
    /// Comma-separated model ids the key may use, as provider/model
    /// (openai/gpt-4o-mini,anthropic/claude-haiku-4-5) [default: every
    /// model]. (`--models` is the global flag naming a models file.)
    #[arg(long, value_name = "LIST")]
    allow_models: Option<String>,
    /// Most USD the key may spend per budget period, more than 0 (a
    /// decimal, e.g. 25 or 0.50). Requests are refused once the spend of
    /// the period reaches it.
    #[arg(long, value_name = "USD", allow_negative_numbers = true)]
    budget_usd: Option<String>,
    /// The window the budget applies to, in UTC [default: month].
    #[arg(long, value_enum, value_name = "PERIOD", requires = "budget_usd")]
    budget_period: Option<PeriodArg>,
    /// Requests per minute the key may make, more than 0.
    #[arg(long, value_name = "N")]
    rpm: Option<u32>,
    /// Tokens per minute the key may use, more than 0.
    #[arg(long, value_name = "N")]
    tpm: Option<u32>,
    /// How long the key works: a whole number and d, h, m or s (30d, 12h,
    /// 90m, 3600s) [default: until revoked].
    #[arg(long, value_name = "DURATION")]
    expires_in: Option<String>,
    /// Serve the key's identical requests from the response cache for
    /// this long: a whole number and d, h, m or s (10m, 1h), at most 30d
    /// [default: no cache, unless the key's agent caches]. Only requests
    /// at temperature 0 are cached, unless the agent caches sampled ones.
    #[arg(long, value_name = "DURATION")]
    cache_ttl: Option<String>,
    /// Let the key's cached answers serve other keys' identical requests
    /// (and theirs serve it); otherwise they serve this key alone.
    #[arg(long)]
    cache_shared: bool,
}

/// A budget period as a flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeriodArg {
    /// The calendar day.
    Day,
    /// The ISO week, from Monday 00:00.
    Week,
    /// The calendar month.
    Month,
    /// All time: the budget never renews.
    Total,
}

impl From<PeriodArg> for BudgetPeriod {
    fn from(arg: PeriodArg) -> Self {
        match arg {
            PeriodArg::Day => Self::Day,
            PeriodArg::Week => Self::Week,
            PeriodArg::Month => Self::Month,
            PeriodArg::Total => Self::Total,
        }
    }
}

/// `30d`, `12h`, `90m`, `3600s` as a duration.
fn duration(text: &str) -> Result<Duration, Error> {
    duration_of(text, "expires_in")
}

/// `30d`, `12h`, `90m`, `3600s` as a duration; an error names `field`.
pub(super) fn duration_of(text: &str, field: &'static str) -> Result<Duration, Error> {
    let bad = || Error::Validation {
        field,
        message: format!(
            "`{text}` is not a duration: give a whole number and d, h, m or s (30d, 12h, 90m, 3600s)"
        ),
    };
    let text = text.trim();
    let unit = text.chars().last().ok_or_else(bad)?;
    let seconds_per = match unit {
        'd' => 86_400,
        'h' => 3600,
        'm' => 60,
        's' => 1,
        _ => return Err(bad()),
    };
    let number = &text[..text.len() - 1];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let count: u64 = number.parse().map_err(|_| bad())?;
    count
        .checked_mul(seconds_per)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn budget_text(usd: Option<Decimal>, period: Option<BudgetPeriod>) -> String {
    match (usd, period) {
        (Some(usd), Some(period)) => format!("${usd}/{period}"),
        _ => "-".to_owned(),
    }
}

/// `llmhost virtual-keys …`.
pub async fn run(settings: &Settings, command: VirtualKeysCommand, json: bool) -> Result<(), Fail> {
    let store = Store::open(&settings.database).await?;
    match command {
        VirtualKeysCommand::Create(args) => {
            // Only creating needs the encryption key: listing and revoking
            // work without it, so a key can be revoked even when the key
            // file is lost.
            let keyring = super::admin::keyring(settings)?.map(|(keyring, _)| keyring);
            create(&VirtualKeys::new(store, keyring.as_ref()), args, json).await
        }
        VirtualKeysCommand::List => list(&VirtualKeys::new(store, None), json).await,
        VirtualKeysCommand::Revoke { name } => {
            // Other replicas are told through the shared state, if any.
            let shared = crate::shared::Redis::connect(&settings.shared)?;
            let keys = VirtualKeys::new(store, None).with_shared(shared);
            revoke(&keys, &name, json).await
        }
    }
}

async fn create(keys: &VirtualKeys, args: CreateArgs, json: bool) -> Result<(), Fail> {
    let mut new = NewVirtualKey::new(args.name);
    new.agent = args.agent;
    new.models = args
        .allow_models
        .map(|list| list.split(',').map(str::to_owned).collect());
    new.budget = args
        .budget_usd
        .map(|value| {
            let period = args.budget_period.map_or(BudgetPeriod::Month, Into::into);
            usd(&value, "budget_usd").map(|usd| (usd, period))
        })
        .transpose()?;
    new.rpm = args.rpm;
    new.tpm = args.tpm;
    new.expires_in = args.expires_in.as_deref().map(duration).transpose()?;
    new.cache_ttl = args
        .cache_ttl
        .as_deref()
        .map(|ttl| duration_of(ttl, "cache_ttl"))
        .transpose()?;
    new.cache_shared = args.cache_shared;
    let (view, key) = keys.create(new).await?;
    if json {
        print_json(&json!({
            "id": view.id,
            "name": view.name,
            "key": key.expose_secret(),
            "key_hint": view.key_hint,
            "agent": view.agent,
            "models": view.models,
            "budget_usd": view.budget_usd.map(|usd| usd.to_string()),
            "budget_period": view.budget_period,
            "rpm": view.rpm,
            "tpm": view.tpm,
            "expires_at": view.expires_at,
            "cache_ttl_secs": view.cache_ttl_secs,
            "cache_shared": view.cache_shared,
            "created_at": view.created_at,
        }));
        return Ok(());
    }
    // The key alone on stdout, so `KEY=$(llmhost virtual-keys create x)`
    // captures just the key; the rest is for the person at the terminal.
    eprintln!("created virtual key {} (id {}):", view.name, view.id);
    outln!("{}", key.expose_secret());
    eprintln!(
        "This key is shown only now: store it safely. llmhost keeps only a hash of it and cannot show it again."
    );
    Ok(())
}

async fn list(keys: &VirtualKeys, json: bool) -> Result<(), Fail> {
    let list = keys.list().await?;
    if json {
        let list: Vec<Value> = list
            .iter()
            .map(|key| serde_json::to_value(key).unwrap_or(Value::Null))
            .collect();
        print_json(&json!({ "virtual_keys": list }));
        return Ok(());
    }
    if list.is_empty() {
        outln!("no virtual keys (create one with `llmhost virtual-keys create NAME`)");
        return Ok(());
    }
    outln!(
        "{:<20} {:<10} {:<8} {:<16} {:<24} {:<14} {:>6} {:>8} EXPIRES",
        "NAME",
        "KEY",
        "STATUS",
        "AGENT",
        "MODELS",
        "BUDGET",
        "RPM",
        "TPM"
    );
    for key in &list {
        outln!(
            "{:<20} {:<10} {:<8} {:<16} {:<24} {:<14} {:>6} {:>8} {}",
            key.name,
            key.key_hint,
            key.status.as_str(),
            opt(key.agent.as_deref()),
            key.models
                .as_ref()
                .map_or("any".to_owned(), |m| m.join(",")),
            budget_text(key.budget_usd, key.budget_period),
            opt(key.rpm),
            opt(key.tpm),
            opt(key.expires_at.as_deref())
        );
    }
    Ok(())
}

async fn revoke(keys: &VirtualKeys, name: &str, json: bool) -> Result<(), Fail> {
    let before = keys.get(name).await?;
    let key = keys.revoke(name).await?;
    if json {
        print_json(&serde_json::to_value(&key).unwrap_or(Value::Null));
    } else if before.revoked_at.is_some() {
        outln!(
            "virtual key {name} was already revoked at {}",
            opt(key.revoked_at.as_deref())
        );
    } else {
        outln!("revoked virtual key {name}");
    }
    Ok(())
}

/// The `budget` object of `usage --json`.
pub(super) fn budget_json(usage: &BudgetUsage) -> Value {
    let text = |d: Option<Decimal>| d.map(|d| d.normalize().to_string());
    json!({
        "period": usage.period,
        "window_start": usage.window_start,
        "budget_usd": text(usage.budget_usd),
        "spent_usd": usage.spent.cost_usd.normalize().to_string(),
        "remaining_usd": text(usage.remaining_usd()),
        "budget_tokens": usage.budget_tokens,
        "spent_tokens": usage.spent.tokens(),
        "remaining_tokens": usage.remaining_tokens(),
        "requests": usage.spent.requests,
        "input_tokens": usage.spent.input_tokens,
        "output_tokens": usage.spent.output_tokens,
        "unpriced": usage.spent.unpriced,
        "exhausted": usage.exhausted(),
    })
}

/// The budget report of `usage` for people: `what` is `virtual key ci`
/// or `agent bot`.
pub(super) fn show_budget(what: &str, usage: &BudgetUsage) {
    let spent = &usage.spent;
    let window = match (usage.period, &usage.window_start) {
        (Some(BudgetPeriod::Day), Some(start)) => format!("today (since {start})"),
        (Some(period), Some(start)) => format!("this {period} (since {start})"),
        (Some(_), None) => "in all".to_owned(),
        (None, _) => "in all, no budget".to_owned(),
    };
    let mut parts = vec![match (usage.budget_usd, usage.remaining_usd()) {
        (Some(budget), Some(left)) => format!(
            "${} of ${} spent, ${} left",
            spent.cost_usd.normalize(),
            budget.normalize(),
            left.normalize()
        ),
        _ => format!("${} spent", spent.cost_usd.normalize()),
    }];
    if let (Some(budget), Some(left)) = (usage.budget_tokens, usage.remaining_tokens()) {
        parts.push(format!(
            "{} of {budget} tokens used, {left} left",
            spent.tokens()
        ));
    }
    outln!("{what}, {window}: {}", parts.join("; "));
    outln!(
        "  {} requests, {} input and {} output tokens",
        spent.requests,
        spent.input_tokens,
        spent.output_tokens
    );
    if spent.unpriced > 0 {
        outln!(
            "  {} requests used models without a known price and are not in the cost",
            spent.unpriced
        );
    }
    if usage.exhausted() {
        outln!("  the budget is spent: requests are refused until the period renews");
    }
}

/// `llmhost usage --virtual-key NAME`.
pub(super) async fn usage(store: &Store, name: &str, json: bool) -> Result<(), Fail> {
    let key: VirtualKey = VirtualKeys::new(store.clone(), None).get(name).await?;
    let usage = Budgets::new(store.clone())
        .of_virtual_key(&key, SystemTime::now())
        .await?;
    if json {
        print_json(&json!({
            "virtual_key": key.name,
            "status": key.status,
            "budget": budget_json(&usage),
        }));
    } else {
        show_budget(&format!("virtual key {}", key.name), &usage);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_unit() {
        for (text, seconds) in [
            ("30d", 30 * 86_400),
            ("12h", 43_200),
            ("90m", 5400),
            ("3600s", 3600),
            (" 1s ", 1),
            ("0s", 0),
        ] {
            assert_eq!(
                duration(text).unwrap(),
                Duration::from_secs(seconds),
                "{text}"
            );
        }
        for text in [
            "",
            "d",
            "30",
            "1.5h",
            "-1h",
            "+1h",
            "1w",
            "1 h",
            "h1",
            "99999999999999999999d",
        ] {
            let err = duration(text).unwrap_err();
            assert_eq!(err.kind(), "validation", "{text}");
            assert!(err.to_string().contains("30d, 12h, 90m, 3600s"), "{err}");
        }
    }
}
