//! `llmhost init`, `agents`, `configs`, `keys` and `usage`: the store and
//! its secrets from the command line.

use super::output::{Fail, print_json};
use super::virtual_keys::{PeriodArg, budget_json, duration_of, show_budget};
use crate::error::ErrorKind;
use crate::router::Strategy;
use crate::secrets::{self, EncryptionKey, KeySource, Keyring};
use crate::service::{
    AgentBudget, Budgets, ConfigFields, ConfigPatch, ConfigPrices, ConfigUpdate, LlmConfig,
    NewConfig,
};
use crate::store::{BudgetPeriod, Store};
use crate::{ConfigService, Error, Host, Settings};
use clap::{Args, Subcommand};
use llmhost_registry::rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::str::FromStr;

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Create an agent.
    Create {
        /// Letters, digits, `-`, `_` and `.`, at most 64.
        name: String,
        /// What the agent is for.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// How a call picks among the agent's configs of the same
        /// priority: `priority` (their order, no balancing), `weighted`
        /// (random by each config's --weight), `least-in-flight` (fewest
        /// calls running now), `lowest-latency` (lowest moving average of
        /// time to first token for streams, of latency otherwise). Configs
        /// whose circuit is open or whose rate limit is spent are passed
        /// over [default: priority].
        #[arg(long, value_name = "STRATEGY")]
        balance: Option<Strategy>,
        /// Serve identical requests from the response cache for this long:
        /// a whole number and d, h, m or s (10m, 1h), at most 30d
        /// [default: no cache].
        #[arg(long, value_name = "DURATION")]
        cache_ttl: Option<String>,
        /// Cache sampled requests too (temperature above 0, or unset):
        /// callers then get one draw again and again.
        #[arg(long, requires = "cache_ttl")]
        cache_sampled: bool,
    },
    /// Change an agent's description or balancing strategy.
    Update {
        /// The agent.
        name: String,
        /// What the agent is for.
        #[arg(long, value_name = "TEXT", conflicts_with = "clear_description")]
        description: Option<String>,
        /// Remove the description.
        #[arg(long)]
        clear_description: bool,
        /// `priority`, `weighted`, `least-in-flight` or `lowest-latency`
        /// (see `agents create --help`).
        #[arg(long, value_name = "STRATEGY")]
        balance: Option<Strategy>,
    },
    /// List the agents.
    List,
    /// Show an agent and its configs.
    Show { name: String },
    /// Delete an agent and its configs (its usage history stays).
    Delete { name: String },
    /// Show or change an agent's budget: most USD and/or tokens (input
    /// plus output) per period, counting every call made for the agent.
    /// Flags not given keep their current value; with none, the budget is
    /// shown. `llmhost usage --agent NAME` shows what is spent.
    Budget {
        /// The agent.
        name: String,
        /// Most USD per period, more than 0 (a decimal, e.g. 25 or 0.50).
        #[arg(long, value_name = "USD", allow_negative_numbers = true)]
        usd: Option<String>,
        /// Most input plus output tokens per period, more than 0.
        #[arg(long, value_name = "N")]
        tokens: Option<u64>,
        /// The window the budget applies to, in UTC [default: the current
        /// period, else month].
        #[arg(long, value_enum, value_name = "PERIOD")]
        period: Option<PeriodArg>,
        /// Remove the budget.
        #[arg(long, conflicts_with_all = ["usd", "tokens", "period"])]
        clear: bool,
    },
    /// Show or change an agent's response cache: identical requests
    /// (same route, messages and parameters, same virtual key) are served
    /// from the stored answer for the TTL, without a provider call and at
    /// no cost. Only requests at temperature 0 are cached unless
    /// `--sampled` is given. With no flags, the setting is shown.
    Cache {
        /// The agent.
        name: String,
        /// How long answers are served: a whole number and d, h, m or s
        /// (10m, 1h), 1s to 30d. Replaces the current setting.
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// Cache sampled requests too (temperature above 0, or unset).
        #[arg(long, requires = "ttl")]
        sampled: bool,
        /// Turn the cache off for the agent.
        #[arg(long, conflicts_with_all = ["ttl", "sampled"])]
        clear: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigsCommand {
    /// Add an LLM config to an agent.
    Add {
        /// The agent.
        #[arg(long, value_name = "NAME")]
        agent: String,
        /// Provider id (see `llmhost plugins`).
        #[arg(long, value_name = "ID")]
        provider: String,
        /// Model id (see `llmhost models`).
        #[arg(long, value_name = "M")]
        model: String,
        #[command(flatten)]
        flags: Box<ConfigFlags>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// List an agent's configs in the order they are tried.
    List {
        #[arg(long, value_name = "NAME")]
        agent: String,
    },
    /// Show one config.
    Show { id: i64 },
    /// Change the fields given; `--clear FIELD` empties one.
    Update {
        id: i64,
        /// New provider id.
        #[arg(long, value_name = "ID")]
        provider: Option<String>,
        /// New model id.
        #[arg(long, value_name = "M")]
        model: Option<String>,
        #[command(flatten)]
        flags: Box<ConfigFlags>,
        /// Enable the config.
        #[arg(long, conflicts_with = "disabled")]
        enabled: bool,
        /// Disable the config.
        #[arg(long)]
        disabled: bool,
        /// Empty a field (repeatable): `api-key`, `prices` (back to the
        /// catalogue's), `fallback` (both fallback fields), `deadline`,
        /// `base-url`, `temperature`, `max-tokens`, `top-p`, `max-attempts`,
        /// or any other field that may be empty.
        #[arg(long, value_name = "FIELD", value_parser = clearable)]
        clear: Vec<String>,
    },
    /// Delete a config.
    Delete { id: i64 },
    /// Run the provider's health check with the config's key and base URL.
    Validate { id: i64 },
}

/// A field `--clear` can empty: `api-key`, the CLI's names `fallback`,
/// `context-fallback` and `deadline`, or any field a patch can clear (`base-url` or `base_url`).
/// Returns it in snake case.
fn clearable(name: &str) -> Result<String, String> {
    let name = name.replace('-', "_");
    if ["api_key", "fallback", "context_fallback", "deadline"].contains(&name.as_str())
        || ConfigPatch::NULLABLE.contains(&name.as_str())
    {
        Ok(name)
    } else {
        let mut names = vec![
            "api-key".to_owned(),
            "fallback".into(),
            "context-fallback".into(),
            "deadline".into(),
        ];
        names.extend(ConfigPatch::NULLABLE.iter().map(|n| n.replace('_', "-")));
        Err(format!("one of {}", names.join(", ")))
    }
}

/// The config fields as flags; each given flag sets its field (see
/// [`ConfigFlags::patch`]).
#[derive(Debug, Args)]
pub struct ConfigFlags {
    /// API key, stored encrypted; `-` reads it from standard input (keeps
    /// it out of `ps` and shell history; recommended). Without one the
    /// provider's environment variable is used. Stored keys are bound to the
    /// config's provider and base URL: changing either needs the key again
    /// (or `--clear api-key`).
    #[arg(long, value_name = "KEY|-", hide_env_values = true)]
    api_key: Option<String>,
    /// Base URL for this config (a proxy, an Azure-style deployment, a
    /// local server).
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Sampling temperature, 0 to 2.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    temperature: Option<f64>,
    /// Most tokens to generate, up to the model's output limit.
    #[arg(long, value_name = "N")]
    max_tokens: Option<u32>,
    /// Nucleus sampling, 0 to 1.
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    top_p: Option<f64>,
    /// Provider to fall back to.
    #[arg(long, value_name = "ID", requires = "fallback_model")]
    fallback_provider: Option<String>,
    /// Model to fall back to.
    #[arg(long, value_name = "M", requires = "fallback_provider")]
    fallback_model: Option<String>,
    /// Lower is tried first [default: 0].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    priority: Option<i64>,
    /// Share of the calls among the agent's configs of the same priority
    /// when the agent balances by `weighted`, at least 1 [default: 1].
    #[arg(long, value_name = "N")]
    weight: Option<u32>,
    /// Provider of a model with a larger context window, for requests
    /// that do not fit this config's model (input plus max_tokens).
    #[arg(long, value_name = "ID", requires = "context_fallback_model")]
    context_fallback_provider: Option<String>,
    /// Model with a larger context window (see --context-fallback-provider).
    #[arg(long, value_name = "M", requires = "context_fallback_provider")]
    context_fallback_model: Option<String>,
    /// Custom price of input tokens, USD per million (e.g. 2.5) [default:
    /// the catalogue's pricing, tiers and off-peak hours included]. Custom
    /// prices need input and output.
    #[arg(long, value_name = "USD_PER_MTOK", allow_negative_numbers = true)]
    price_input: Option<String>,
    /// Custom price of output tokens, USD per million.
    #[arg(long, value_name = "USD_PER_MTOK", allow_negative_numbers = true)]
    price_output: Option<String>,
    /// Custom price of input tokens read from the prompt cache, USD per
    /// million [default: the catalogue model's cache-read-to-input ratio
    /// applied to --price-input, else --price-input].
    #[arg(long, value_name = "USD_PER_MTOK", allow_negative_numbers = true)]
    price_cache_read: Option<String>,
    /// Custom price of input tokens written to the prompt cache, USD per
    /// million [default: as for --price-cache-read].
    #[arg(long, value_name = "USD_PER_MTOK", allow_negative_numbers = true)]
    price_cache_write: Option<String>,
    /// Custom price of one-hour cache writes, USD per million [default: as
    /// for --price-cache-read, else the cache write price].
    #[arg(long, value_name = "USD_PER_MTOK", allow_negative_numbers = true)]
    price_cache_write_hour: Option<String>,
    /// Attempts per route of a call, 1 to 10 [default: the global
    /// setting, 3].
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// Budget of a whole call, fallbacks included, in seconds [default:
    /// the global setting].
    #[arg(long, value_name = "SECONDS")]
    deadline: Option<f64>,
    /// A JSON object of your own data.
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// Set any config field by its name, the value as JSON or a plain
    /// string (repeatable): `--set top_p=0.9`, `--set base_url=http://…`.
    /// Every field has a name here, those without a flag of their own too.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
}

impl ConfigFlags {
    /// The patch the flags make. Price flags change the prices `current`
    /// (the config's custom prices, if any) has; a config without custom
    /// prices needs both `--price-input` and `--price-output`.
    fn patch(&self, current: Option<ConfigPrices>) -> Result<ConfigPatch, Error> {
        /// A flag given wins over `--set` of the same field.
        fn given<T>(flag: Option<T>, set: &mut Option<T>) {
            if flag.is_some() {
                *set = flag;
            }
        }
        let mut patch = self.set_patch()?;
        given(self.base_url.clone().map(Some), &mut patch.base_url);
        given(self.temperature.map(Some), &mut patch.temperature);
        given(self.max_tokens.map(Some), &mut patch.max_tokens);
        given(self.top_p.map(Some), &mut patch.top_p);
        given(
            self.fallback_provider.clone().map(Some),
            &mut patch.fallback_provider,
        );
        given(
            self.fallback_model.clone().map(Some),
            &mut patch.fallback_model,
        );
        given(self.priority, &mut patch.priority);
        given(self.weight, &mut patch.weight);
        given(
            self.context_fallback_provider.clone().map(Some),
            &mut patch.context_fallback_provider,
        );
        given(
            self.context_fallback_model.clone().map(Some),
            &mut patch.context_fallback_model,
        );
        given(self.prices(current)?.map(Some), &mut patch.prices);
        given(self.max_attempts.map(Some), &mut patch.max_attempts);
        given(
            self.deadline.map(deadline_ms).transpose()?.map(Some),
            &mut patch.deadline_ms,
        );
        given(
            self.metadata.as_deref().map(metadata).transpose()?,
            &mut patch.metadata,
        );
        Ok(patch)
    }

    /// The patch of the `--set FIELD=VALUE` flags, read as the admin API
    /// reads a JSON body.
    fn set_patch(&self) -> Result<ConfigPatch, Error> {
        let mut object = serde_json::Map::new();
        for pair in &self.set {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(Error::InvalidConfig(format!(
                    "--set `{pair}`: expected FIELD=VALUE"
                )));
            };
            let name = name.trim().replace('-', "_");
            if !ConfigFields::NAMES.contains(&name.as_str()) {
                return Err(Error::InvalidConfig(format!(
                    "--set: no config field `{name}` (fields: {})",
                    ConfigFields::NAMES.join(", ")
                )));
            }
            let value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
            object.insert(name, value);
        }
        serde_path_to_error::deserialize(serde_json::Value::Object(object))
            .map_err(|err| Error::InvalidConfig(format!("--set {}: {}", err.path(), err.inner())))
    }

    fn prices(&self, current: Option<ConfigPrices>) -> Result<Option<ConfigPrices>, Error> {
        let flags = [
            &self.price_input,
            &self.price_output,
            &self.price_cache_read,
            &self.price_cache_write,
            &self.price_cache_write_hour,
        ];
        if flags.iter().all(|flag| flag.is_none()) {
            return Ok(None);
        }
        let parse = |flag: &Option<String>, field| {
            flag.as_deref()
                .map(|value| ConfigPrices::parse_usd(value, field))
                .transpose()
        };
        let required = |flag: &Option<String>, field, own: Option<u64>| {
            parse(flag, field)?
                .or(own)
                .ok_or_else(|| Error::Validation {
                    field,
                    message: "custom prices need both --price-input and --price-output".into(),
                })
        };
        Ok(Some(ConfigPrices {
            input: required(&self.price_input, "prices.input", current.map(|p| p.input))?,
            output: required(
                &self.price_output,
                "prices.output",
                current.map(|p| p.output),
            )?,
            cache_read: parse(&self.price_cache_read, "prices.cache_read")?
                .or(current.and_then(|p| p.cache_read)),
            cache_write: parse(&self.price_cache_write, "prices.cache_write")?
                .or(current.and_then(|p| p.cache_write)),
            cache_write_hour: parse(&self.price_cache_write_hour, "prices.cache_write_hour")?
                .or(current.and_then(|p| p.cache_write_hour)),
        }))
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-encrypt every stored API key under a new key, in one
    /// transaction. A key file is updated in place; a key from the
    /// environment is printed once, to be put in LLMHOST_ENCRYPTION_KEY.
    Rotate {
        /// The new key, base64 of 32 bytes [default: a random one]. Give
        /// `-` to read it from standard input: a key on the command line is
        /// visible to every user in `ps` and lands in shell history.
        #[arg(long, value_name = "BASE64|-", hide_env_values = true)]
        new_key: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only this agent, and its spend against its budget in the current
    /// window.
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
    /// Only the spend of this virtual key against its budget in the
    /// current window: spent, budget, remaining, requests, tokens.
    #[arg(long, value_name = "NAME", conflicts_with = "agent")]
    virtual_key: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn key_error(err: secrets::KeyError) -> Error {
    Error::Encryption {
        kind: ErrorKind::EncryptionKeyInvalid,
        message: err.to_string(),
    }
}

/// The keyring configured by the environment or the key file.
pub(super) fn keyring(settings: &Settings) -> Result<Option<(Keyring, KeySource)>, Error> {
    secrets::load_keyring(&env, &settings.key_file).map_err(key_error)
}

/// The config service of the settings' database and keys.
pub async fn service(host: Host, settings: &Settings) -> Result<ConfigService, Fail> {
    let store = Store::open(&settings.database).await?;
    let keyring = keyring(settings)?.map(|(keyring, _)| keyring);
    Ok(ConfigService::new(host, store, keyring).with_resilience(settings.resilience))
}

fn source_json(source: &KeySource) -> Value {
    match source {
        KeySource::Env(name) => json!({"kind": "env", "name": name}),
        KeySource::File(path) => json!({"kind": "file", "path": path.display().to_string()}),
    }
}

/// `llmhost init`.
pub async fn init(settings: &Settings, json: bool) -> Result<(), Fail> {
    let store = Store::open(&settings.database).await?;
    let version = store.schema_version().await?;
    let (key_id, source, created) = match keyring(settings)? {
        Some((keyring, source)) => (keyring.active().id().to_owned(), source, false),
        None => {
            let key = secrets::create_key_file(&settings.key_file).map_err(key_error)?;
            (
                key.id().to_owned(),
                KeySource::File(settings.key_file.clone()),
                true,
            )
        }
    };
    if json {
        print_json(&json!({
            "database": store.database().to_string(),
            "schema_version": version,
            "key_id": key_id,
            "key_source": source_json(&source),
            "key_created": created,
        }));
        return Ok(());
    }
    outln!("database: {} (schema version {version})", store.database());
    match (&source, created) {
        (KeySource::File(path), true) => {
            outln!(
                "encryption key {key_id}: created {} (mode 0600)",
                path.display()
            );
            outln!(
                "Back this file up: without it, stored API keys cannot be read. Or set LLMHOST_ENCRYPTION_KEY instead."
            );
        }
        (KeySource::File(path), false) => {
            outln!("encryption key {key_id}: from {}", path.display());
        }
        (KeySource::Env(name), _) => outln!("encryption key {key_id}: from {name}"),
    }
    Ok(())
}

fn agent_json(agent: &crate::store::Agent) -> Value {
    serde_json::to_value(agent).unwrap_or(Value::Null)
}

fn config_json(config: &LlmConfig) -> Value {
    serde_json::to_value(config).unwrap_or(Value::Null)
}

/// `llmhost agents …`.
pub async fn agents(
    service: &ConfigService,
    command: AgentsCommand,
    json: bool,
) -> Result<(), Fail> {
    match command {
        AgentsCommand::Create {
            name,
            description,
            balance,
            cache_ttl,
            cache_sampled,
        } => {
            // Checked before the agent is made, so a bad TTL makes nothing.
            let cache = cache_ttl
                .as_deref()
                .map(|ttl| duration_of(ttl, "cache_ttl"))
                .transpose()?;
            let mut agent = service
                .create_balanced_agent(&name, description.as_deref(), balance.unwrap_or_default())
                .await?;
            if let Some(ttl) = cache {
                agent = service
                    .set_agent_cache(&name, Some((ttl, cache_sampled)))
                    .await?;
            }
            if json {
                print_json(&agent_json(&agent));
            } else {
                outln!("created agent {} (id {})", agent.name, agent.id);
            }
        }
        AgentsCommand::Update {
            name,
            description,
            clear_description,
            balance,
        } => {
            let description = if clear_description {
                Some(None)
            } else {
                description.map(Some)
            };
            let agent = service
                .update_agent(&name, None, description, balance)
                .await?;
            if json {
                print_json(&agent_json(&agent));
            } else {
                outln!("updated agent {} (balance {})", agent.name, agent.balance);
            }
        }
        AgentsCommand::List => {
            let agents = service.agents().await?;
            if json {
                print_json(&json!({"agents": agents.iter().map(agent_json).collect::<Vec<_>>()}));
            } else if agents.is_empty() {
                outln!("no agents (create one with `llmhost agents create NAME`)");
            } else {
                outln!("{:<6} {:<24} {:<24} DESCRIPTION", "ID", "NAME", "CREATED");
                for a in &agents {
                    outln!(
                        "{:<6} {:<24} {:<24} {}",
                        a.id,
                        a.name,
                        a.created_at,
                        a.description.as_deref().unwrap_or("")
                    );
                }
            }
        }
        AgentsCommand::Show { name } => {
            let agent = service.agent(&name).await?;
            let configs = service.configs(&name).await?;
            if json {
                let mut object = agent_json(&agent);
                object["configs"] = configs.iter().map(config_json).collect();
                print_json(&object);
            } else {
                outln!("agent {} (id {})", agent.name, agent.id);
                if let Some(description) = &agent.description {
                    outln!("  {description}");
                }
                outln!(
                    "  created {}, updated {}",
                    agent.created_at,
                    agent.updated_at
                );
                outln!("  balance {}", agent.balance);
                config_table(&configs);
            }
        }
        AgentsCommand::Delete { name } => {
            service.delete_agent(&name).await?;
            if json {
                print_json(&json!({"deleted": name}));
            } else {
                outln!("deleted agent {name} and its configs");
            }
        }
        AgentsCommand::Budget {
            name,
            usd: amount,
            tokens,
            period,
            clear,
        } => {
            let budgets = Budgets::new(service.store().clone());
            let agent = if clear {
                budgets.clear_agent_budget(&name).await?
            } else if amount.is_none() && tokens.is_none() && period.is_none() {
                service.agent(&name).await?
            } else {
                let current = service.agent(&name).await?;
                let budget = AgentBudget {
                    usd: match amount {
                        Some(text) => Some(usd(&text, "budget_usd")?),
                        None => current.budget_usd,
                    },
                    tokens: tokens.or(current.budget_tokens),
                    period: period
                        .map(Into::into)
                        .or(current.budget_period)
                        .unwrap_or(BudgetPeriod::Month),
                };
                budgets.set_agent_budget(&name, budget).await?
            };
            if json {
                print_json(&agent_json(&agent));
            } else {
                outln!("agent {}: {}", agent.name, agent_budget_text(&agent));
            }
        }
        AgentsCommand::Cache {
            name,
            ttl,
            sampled,
            clear,
        } => {
            let agent = if clear {
                service.set_agent_cache(&name, None).await?
            } else if let Some(ttl) = ttl {
                let ttl = duration_of(&ttl, "cache_ttl")?;
                service.set_agent_cache(&name, Some((ttl, sampled))).await?
            } else {
                service.agent(&name).await?
            };
            if json {
                print_json(&agent_json(&agent));
            } else {
                outln!("agent {}: {}", agent.name, agent_cache_text(&agent));
            }
        }
    }
    Ok(())
}

/// `cache 600s, temperature 0 only`, or `no cache`.
fn agent_cache_text(agent: &crate::store::Agent) -> String {
    match agent.cache_ttl_secs {
        Some(ttl) if agent.cache_sampled => format!("cache {ttl}s, sampled requests too"),
        Some(ttl) => format!("cache {ttl}s, temperature 0 only"),
        None => "no cache".to_owned(),
    }
}

/// `budget $10 and 5000 tokens per month`, or `no budget`.
fn agent_budget_text(agent: &crate::store::Agent) -> String {
    let limits: Vec<String> = agent
        .budget_usd
        .map(|usd| format!("${usd}"))
        .into_iter()
        .chain(agent.budget_tokens.map(|t| format!("{t} tokens")))
        .collect();
    match agent.budget_period {
        Some(period) if !limits.is_empty() => {
            format!("budget {} per {period}", limits.join(" and "))
        }
        _ => "no budget".to_owned(),
    }
}

fn config_table(configs: &[LlmConfig]) {
    if configs.is_empty() {
        outln!("  no configs (add one with `llmhost configs add --agent NAME ...`)");
        return;
    }
    outln!(
        "{:<6} {:>4} {:<8} {:<10} {:<28} {:<8} FALLBACK",
        "ID",
        "PRI",
        "ENABLED",
        "PROVIDER",
        "MODEL",
        "KEY"
    );
    for c in configs {
        let key = match (&c.has_api_key, &c.api_key_hint) {
            (true, Some(hint)) => hint.clone(),
            (true, None) => "stored".to_owned(),
            (false, _) => "env".to_owned(),
        };
        let f = &c.fields;
        let fallback = match (&f.fallback_provider, &f.fallback_model) {
            (Some(p), Some(m)) => format!("{p}/{m}"),
            _ => "-".to_owned(),
        };
        outln!(
            "{:<6} {:>4} {:<8} {:<10} {:<28} {:<8} {}",
            c.id,
            f.priority,
            if f.enabled { "yes" } else { "no" },
            f.provider,
            f.model,
            key,
            fallback
        );
    }
}

fn show_config(config: &LlmConfig) {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let f = &config.fields;
    outln!("config {} of agent {}", config.id, config.agent);
    outln!("  provider          {}", f.provider);
    outln!("  model             {}", f.model);
    outln!("  enabled           {}", f.enabled);
    outln!("  priority          {}", f.priority);
    outln!(
        "  api key           {}",
        if config.has_api_key {
            format!(
                "stored, encrypted ({})",
                config.api_key_hint.as_deref().unwrap_or("…")
            )
        } else {
            "none (the provider's environment variable is used)".to_owned()
        }
    );
    outln!("  base url          {}", opt(f.base_url.clone()));
    outln!(
        "  temperature       {}",
        opt(f.temperature.map(|t| t.to_string()))
    );
    outln!(
        "  max tokens        {}",
        opt(f.max_tokens.map(|t| t.to_string()))
    );
    outln!(
        "  top p             {}",
        opt(f.top_p.map(|t| t.to_string()))
    );
    outln!(
        "  fallback          {}",
        match (&f.fallback_provider, &f.fallback_model) {
            (Some(p), Some(m)) => format!("{p}/{m}"),
            _ => "-".to_owned(),
        }
    );
    outln!("  weight            {}", f.weight);
    outln!(
        "  context fallback  {}",
        match (&f.context_fallback_provider, &f.context_fallback_model) {
            (Some(p), Some(m)) => format!("{p}/{m}"),
            _ => "-".to_owned(),
        }
    );
    outln!(
        "  $ per Mtok        {}",
        match &f.prices {
            Some(prices) => {
                let usd =
                    |micros: u64| llmhost_registry::Pricing::per_million_usd(micros).normalize();
                let cache = |name: &str, price: Option<u64>| {
                    price.map_or_else(String::new, |p| format!(", {} {name}", usd(p)))
                };
                format!(
                    "{} in, {} out{}{}{} (custom)",
                    usd(prices.input),
                    usd(prices.output),
                    cache("cache read", prices.cache_read),
                    cache("cache write", prices.cache_write),
                    cache("1h cache write", prices.cache_write_hour)
                )
            }
            None => "the catalogue's (see `llmhost models`)".to_owned(),
        }
    );
    outln!(
        "  max attempts      {}",
        opt(f.max_attempts.map(|n| n.to_string()))
    );
    outln!(
        "  deadline          {}",
        opt(f.deadline_ms.map(|ms| format!("{ms} ms")))
    );
    outln!(
        "  metadata          {}",
        serde_json::Value::Object(f.metadata.clone())
    );
    outln!(
        "  created {}, updated {}",
        config.created_at,
        config.updated_at
    );
}

/// Most bytes read from standard input for one secret: far more than any
/// key, little enough that piping the wrong file in fails fast.
const MAX_SECRET_INPUT: u64 = 64 * 1024;

/// The secret a flag gives: its value, or with `-` what standard input
/// holds, surrounding whitespace trimmed. `-` keeps the secret out of the
/// process list (`ps` shows every process's arguments to every user) and
/// out of shell history. `what` names it in errors ("the API key"); `field`
/// is what validation errors name (`api_key` for `--api-key`). The secret
/// itself is never in an error.
pub(super) fn read_secret(
    value: &str,
    what: &str,
    field: &'static str,
) -> Result<SecretString, Error> {
    if value != "-" {
        return Ok(SecretString::from(value.to_owned()));
    }
    let stdin = std::io::stdin();
    if std::io::IsTerminal::is_terminal(&stdin) {
        // Otherwise the command seems to hang.
        eprintln!("reading {what} from standard input (end with Ctrl-D):");
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    stdin
        .lock()
        .take(MAX_SECRET_INPUT + 1)
        .read_to_string(&mut text)
        .map_err(|err| {
            Error::InvalidConfig(format!("cannot read {what} from standard input: {err}"))
        })?;
    if text.len() as u64 > MAX_SECRET_INPUT {
        return Err(Error::Validation {
            field,
            message: format!(
                "standard input holds more than {MAX_SECRET_INPUT} bytes, too many for {what}"
            ),
        });
    }
    let secret = text.trim();
    if secret.is_empty() {
        let flag = field.replace('_', "-");
        return Err(Error::Validation {
            field,
            message: format!("`--{flag} -` read nothing from standard input; pipe {what} in"),
        });
    }
    Ok(SecretString::from(secret.to_owned()))
}

fn read_api_key(value: &str) -> Result<SecretString, Error> {
    read_secret(value, "the API key", "api_key")
}

pub(super) fn usd(value: &str, field: &'static str) -> Result<Decimal, Error> {
    Decimal::from_str(value.trim()).map_err(|_| Error::Validation {
        field,
        message: format!("`{value}` is not a decimal amount of USD"),
    })
}

/// `--deadline SECONDS` in milliseconds, at least 1.
fn deadline_ms(seconds: f64) -> Result<u64, Error> {
    if seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0 {
        Ok(((seconds * 1000.0).round() as u64).max(1))
    } else {
        Err(Error::Validation {
            field: "deadline",
            message: format!("{seconds} is not between 0 and 86400 seconds"),
        })
    }
}

fn metadata(value: &str) -> Result<serde_json::Map<String, Value>, Error> {
    match serde_json::from_str(value) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::Validation {
            field: "metadata",
            message: "must be a JSON object".into(),
        }),
        Err(err) => Err(Error::Validation {
            field: "metadata",
            message: format!("not JSON: {err}"),
        }),
    }
}

/// `llmhost configs …`.
pub async fn configs(
    service: &ConfigService,
    command: ConfigsCommand,
    json: bool,
) -> Result<(), Fail> {
    let print = |config: &LlmConfig, verb: &str| {
        if json {
            print_json(&config_json(config));
        } else if verb.is_empty() {
            show_config(config);
        } else {
            outln!(
                "{verb} config {} of agent {}: {} {}",
                config.id,
                config.agent,
                config.fields.provider,
                config.fields.model
            );
        }
    };
    match command {
        ConfigsCommand::Add {
            agent,
            provider,
            model,
            flags,
            disabled,
        } => {
            let mut fields = ConfigFields::new(provider, model);
            flags.patch(None)?.apply(&mut fields);
            fields.enabled = !disabled;
            let config = NewConfig {
                fields,
                api_key: flags.api_key.as_deref().map(read_api_key).transpose()?,
            };
            let config = service.create_config(&agent, config).await?;
            print(&config, "added");
        }
        ConfigsCommand::List { agent } => {
            let configs = service.configs(&agent).await?;
            if json {
                print_json(&json!({
                    "agent": agent,
                    "configs": configs.iter().map(config_json).collect::<Vec<_>>(),
                }));
            } else {
                config_table(&configs);
            }
        }
        ConfigsCommand::Show { id } => print(&service.config(id).await?, ""),
        ConfigsCommand::Update {
            id,
            provider,
            model,
            flags,
            enabled,
            disabled,
            clear,
        } => {
            let current = service.config(id).await?;
            let mut patch = flags.patch(current.fields.prices)?;
            patch.provider = provider;
            patch.model = model;
            patch.enabled = (enabled || disabled).then_some(enabled);
            let mut api_key = flags
                .api_key
                .as_deref()
                .map(read_api_key)
                .transpose()?
                .map(Some);
            for field in &clear {
                match field.as_str() {
                    "api_key" if api_key.is_none() => api_key = Some(None),
                    "api_key" => {}
                    "fallback" => {
                        patch.fallback_provider.get_or_insert(None);
                        patch.fallback_model.get_or_insert(None);
                    }
                    "context_fallback" => {
                        patch.context_fallback_provider.get_or_insert(None);
                        patch.context_fallback_model.get_or_insert(None);
                    }
                    "deadline" => {
                        patch.deadline_ms.get_or_insert(None);
                    }
                    name => {
                        patch.clear(name);
                    }
                }
            }
            let update = ConfigUpdate { patch, api_key };
            let config = service
                .update_config(id, Some(&current.updated_at), update)
                .await?;
            print(&config, "updated");
        }
        ConfigsCommand::Delete { id } => {
            service.delete_config(id).await?;
            if json {
                print_json(&json!({"deleted": id}));
            } else {
                outln!("deleted config {id}");
            }
        }
        ConfigsCommand::Validate { id } => {
            let validation = service.validate_config(id).await?;
            let config = &validation.config;
            match validation.health {
                Ok(outcome) => {
                    if json {
                        print_json(&json!({
                            "id": config.id,
                            "valid": true,
                            "provider": config.fields.provider,
                            "model": config.fields.model,
                            "latency_ms": outcome.latency.as_millis() as u64,
                            "detail": outcome.report.detail,
                        }));
                    } else {
                        outln!(
                            "config {}: {} answers and accepts the key ({} ms) - {}",
                            config.id,
                            config.fields.provider,
                            outcome.latency.as_millis(),
                            outcome.report.detail
                        );
                    }
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(())
}

/// `llmhost keys …`.
pub async fn keys(
    host: Host,
    settings: &Settings,
    command: KeysCommand,
    json: bool,
) -> Result<(), Fail> {
    let KeysCommand::Rotate { new_key } = command;
    let Some((keyring, source)) = keyring(settings)? else {
        return Err(Error::Encryption {
            kind: ErrorKind::EncryptionKeyMissing,
            message: "no encryption key is configured, so there is nothing to rotate (run `llmhost init`)".into(),
        }
        .into());
    };
    let new_key = match new_key {
        Some(text) => {
            let text = read_secret(&text, "the new encryption key", "new_key")?;
            EncryptionKey::from_base64(text.expose_secret()).map_err(key_error)?
        }
        None => EncryptionKey::generate(),
    };
    let new_id = new_key.id().to_owned();
    let store = Store::open(&settings.database).await?;
    // Virtual keys cannot be re-hashed (only their hashes are stored), so
    // the encryption keys whose hash keys made usable ones must stay.
    let needed: Vec<(String, u64)> = store
        .live_virtual_keys_by_hash_key(std::time::SystemTime::now())
        .await?
        .into_iter()
        .filter(|(id, _)| keyring.keys().any(|k| k.id() == id))
        .collect();
    let service = ConfigService::new(host, store, Some(keyring.clone()));
    match &source {
        KeySource::File(path) => {
            // The file first holds both keys, so that whatever happens
            // next, every row stays decryptable.
            service.check_new_key(&new_id).await?;
            let mut both = vec![new_key.clone()];
            both.extend(keyring.keys().filter(|k| k.id() != new_id).cloned());
            secrets::write_key_file(path, &both).map_err(key_error)?;
            let rotated = match service.rotate_keys(new_key.clone(), |_| Ok(())).await {
                Ok(count) => count,
                Err(err) => {
                    let old: Vec<EncryptionKey> = keyring.keys().cloned().collect();
                    if let Err(restore) = secrets::write_key_file(path, &old) {
                        eprintln!("warning: {restore}");
                    }
                    return Err(err.into());
                }
            };
            // Every API key is under the new key: retire the old keys but
            // those virtual keys still need.
            let mut kept = vec![new_key.clone()];
            kept.extend(
                keyring
                    .keys()
                    .filter(|k| needed.iter().any(|(id, _)| id == k.id()))
                    .cloned(),
            );
            if let Err(err) = secrets::write_key_file(path, &kept) {
                eprintln!(
                    "warning: rotation done, but the old key could not be removed from the key file: {err}"
                );
            }
            let kept_ids: Vec<&str> = needed.iter().map(|(id, _)| id.as_str()).collect();
            if json {
                print_json(&json!({
                    "rotated": rotated,
                    "key_id": new_id,
                    "key_file": path.display().to_string(),
                    "kept_key_ids": kept_ids,
                }));
            } else {
                outln!(
                    "re-encrypted {rotated} API key(s) under key {new_id}; {} now holds the new key",
                    path.display()
                );
            }
            for (id, count) in &needed {
                eprintln!(
                    "kept key {id} in the key file: {count} virtual key(s) were made under it and stop working without it; revoke and recreate them to retire it"
                );
            }
        }
        KeySource::Env(name) => {
            let name = *name;
            let encoded = new_key.to_base64();
            let needed_ids: Vec<String> = needed.iter().map(|(id, _)| id.clone()).collect();
            // Printed before the commit: if the key cannot be shown,
            // nothing is changed.
            service
                .rotate_keys(new_key, move |rotated| {
                    let text = if json {
                        format!(
                            "{}\n",
                            json!({
                                "rotated": rotated,
                                "key_id": new_id,
                                "new_key": encoded.expose_secret(),
                                "previous_keys_needed": needed_ids,
                            })
                        )
                    } else {
                        format!(
                            "re-encrypted {rotated} API key(s) under key {new_id}\n\
                             new key: {}\n\
                             Put it in {name} now (it replaces the current one); it is not shown again.\n",
                            encoded.expose_secret()
                        )
                    };
                    let mut out = std::io::stdout().lock();
                    out.write_all(text.as_bytes())
                        .and_then(|()| out.flush())
                        .map_err(|err| {
                            Error::Internal(format!(
                                "cannot print the new key ({err}); nothing was changed"
                            ))
                        })
                })
                .await?;
            if json {
                eprintln!(
                    "Put new_key in {name} now (it replaces the current one); it is not shown again."
                );
            }
            for (id, count) in &needed {
                eprintln!(
                    "{count} virtual key(s) were made under key {id}: keep that key in {} or they stop working",
                    secrets::PREVIOUS_KEYS_ENV
                );
            }
        }
    }
    Ok(())
}

/// `llmhost usage`.
pub async fn usage(service: &ConfigService, args: UsageArgs, json: bool) -> Result<(), Fail> {
    if let Some(name) = &args.virtual_key {
        return super::virtual_keys::usage(service.store(), name, json).await;
    }
    let budget = match &args.agent {
        Some(agent) => {
            let agent = service.agent(agent).await?;
            let usage = Budgets::new(service.store().clone())
                .of_agent(&agent, std::time::SystemTime::now())
                .await?;
            Some((agent, usage))
        }
        None => None,
    };
    let rows = service.store().usage_summary(args.agent.as_deref()).await?;
    let total: Decimal = rows.iter().map(|r| r.cost_usd).sum();
    if json {
        let list: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "agent": r.agent_name,
                    "provider": r.provider,
                    "model": r.model,
                    "attempts": r.attempts,
                    "errors": r.errors,
                    "input_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens,
                    "estimated": r.estimated,
                    "cost_usd": r.cost_usd.normalize().to_string(),
                    "unpriced": r.unpriced,
                })
            })
            .collect();
        let mut object = json!({"usage": list, "total_cost_usd": total.normalize().to_string()});
        if let Some((agent, usage)) = &budget {
            object["agent"] = json!(agent.name);
            object["budget"] = budget_json(usage);
        }
        print_json(&object);
        return Ok(());
    }
    if let Some((agent, usage)) = &budget {
        show_budget(&format!("agent {}", agent.name), usage);
    }
    if rows.is_empty() {
        outln!("no usage recorded");
        return Ok(());
    }
    outln!(
        "{:<20} {:<10} {:<28} {:>8} {:>6} {:>10} {:>10} {:>14}",
        "AGENT",
        "PROVIDER",
        "MODEL",
        "CALLS",
        "ERRORS",
        "IN",
        "OUT",
        "COST $"
    );
    for r in &rows {
        let note = if r.unpriced > 0 { " +?" } else { "" };
        outln!(
            "{:<20} {:<10} {:<28} {:>8} {:>6} {:>10} {:>10} {:>14}{note}",
            r.agent_name.as_deref().unwrap_or("-"),
            r.provider,
            r.model,
            r.attempts,
            r.errors,
            r.input_tokens,
            r.output_tokens,
            r.cost_usd.normalize().to_string()
        );
    }
    outln!("total ${}", total.normalize());
    if rows.iter().any(|r| r.unpriced > 0) {
        outln!("(+? : some calls used models without a known price)");
    }
    Ok(())
}
