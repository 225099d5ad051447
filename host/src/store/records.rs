//! Rows and the queries that read and write them.

use super::calendar::BudgetPeriod;
use super::config::ConfigFields;
use super::sql::{Conn, Dialect, OptionalExt, Row, SqlError, SqlResult, Value as SqlValue, params};
use super::virtual_keys::period_from;
use super::{Store, db_error};
use crate::error::{Error, ErrorKind};
use crate::router::Strategy;
use llmhost_registry::rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

/// An agent: a named consumer of LLMs with its own configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Most USD to spend per `budget_period` (as a decimal string in JSON).
    #[schema(value_type = Option<String>)]
    pub budget_usd: Option<Decimal>,
    /// Most input plus output tokens per `budget_period`.
    pub budget_tokens: Option<u64>,
    /// Set exactly when `budget_usd` or `budget_tokens` is.
    pub budget_period: Option<BudgetPeriod>,
    /// How a call picks among the agent's configs of one priority.
    pub balance: Strategy,
    /// Seconds the response cache serves the agent's answers; `None`: the
    /// agent's calls are not cached (unless their virtual key's are).
    pub cache_ttl_secs: Option<u32>,
    /// Whether requests that sample (temperature above 0, or unset) are
    /// cached too; off, only requests at temperature 0 are.
    pub cache_sampled: bool,
}

/// The response cache settings of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentCache {
    /// Seconds answers are served: 1 to 2592000 (30 days).
    pub ttl_secs: u32,
    /// Whether sampled requests are cached too.
    pub sampled: bool,
}

/// An `agent_llm_configs` row as stored. The key is ciphertext.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRow {
    pub id: i64,
    pub agent_id: i64,
    pub fields: ConfigFields,
    /// `llmhost:v2:<key id>:<base64>` (or `v1`, written before keys were
    /// bound to their base URL); see [`crate::secrets`].
    pub api_key_encrypted: Option<String>,
    /// A masked hint of the key (`…wxyz`), stored in the clear.
    pub api_key_hint: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// What a config write stores; ids and times are the store's.
#[derive(Debug, Clone, PartialEq)]
pub struct NewConfigRow {
    pub fields: ConfigFields,
    pub api_key_encrypted: Option<String>,
    pub api_key_hint: Option<String>,
}

impl ConfigRow {
    /// The row as it would be written again.
    pub fn to_new(&self) -> NewConfigRow {
        NewConfigRow {
            fields: self.fields.clone(),
            api_key_encrypted: self.api_key_encrypted.clone(),
            api_key_hint: self.api_key_hint.clone(),
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageOutcome {
    Ok,
    /// The error kind (`rate_limited`, `timeout`, …).
    Error(ErrorKind),
}

/// How a call was served beyond the provider's answer: from the response
/// cache, by which choice among routes, in which experiment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
pub struct Served {
    /// Served from the response cache: no provider was called.
    pub cache_hit: bool,
    /// For a cache hit, what the stored answer cost when it was made.
    #[schema(value_type = Option<String>)]
    pub saved_usd: Option<Decimal>,
    /// How the route was chosen: `priority`, `weighted`, `least_in_flight`,
    /// `lowest_latency` or `context_window`.
    pub choice: Option<String>,
    /// Why it was (`weight 3 of 4`, `2 in flight, the fewest`).
    pub choice_reason: Option<String>,
    /// The agent's experiment and the variant the call was assigned.
    pub experiment: Option<String>,
    pub variant: Option<String>,
}

/// One provider attempt, to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageEvent {
    /// The agent the call was made for; `None` for a plain target.
    pub agent_id: Option<i64>,
    pub agent_name: Option<String>,
    pub config_id: Option<i64>,
    /// The gateway's virtual key that made the call.
    pub virtual_key_id: Option<i64>,
    pub virtual_key_name: Option<String>,
    /// The request id the caller saw (`x-request-id`).
    pub request_id: Option<String>,
    /// What the caller asked for: `openai/gpt-4o-mini`, `agent:NAME`.
    pub route: Option<String>,
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// Of `cache_write_tokens`, those written with the one-hour lifetime.
    pub cache_write_hour_tokens: u64,
    pub reasoning_tokens: u64,
    /// Whether the counts are estimates rather than the vendor's.
    pub estimated: bool,
    /// `None` when the model's price is unknown.
    pub cost_usd: Option<Decimal>,
    pub latency: Duration,
    /// Time to the first chunk of a stream.
    pub time_to_first_token: Option<Duration>,
    pub outcome: UsageOutcome,
    /// 1 for the first attempt of a call.
    pub attempt: u32,
    /// Whether a fallback (not the call's first choice) served it.
    pub fallback: bool,
    pub streamed: bool,
    pub served: Served,
}

/// A recorded usage event.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UsageRecord {
    pub id: i64,
    pub agent_id: Option<i64>,
    pub agent_name: Option<String>,
    pub config_id: Option<i64>,
    pub virtual_key_id: Option<i64>,
    pub virtual_key_name: Option<String>,
    pub request_id: Option<String>,
    pub route: Option<String>,
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cache_write_hour_tokens: u64,
    pub reasoning_tokens: u64,
    pub estimated: bool,
    /// USD, a decimal string; `null` when the model has no price.
    #[schema(value_type = Option<String>)]
    pub cost_usd: Option<Decimal>,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub status: String,
    pub error_kind: Option<String>,
    pub attempt: u32,
    pub fallback: bool,
    pub streamed: bool,
    pub created_at: String,
    #[serde(flatten)]
    pub served: Served,
}

/// Which usage rows to read; every field left `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    pub agent: Option<String>,
    pub request_id: Option<String>,
    /// Store timestamps: rows created at or after `since`, before `until`.
    pub since: Option<String>,
    pub until: Option<String>,
}

pub(super) fn usage_record_from(row: &Row) -> SqlResult<UsageRecord> {
    let cost: Option<String> = row.get("cost_usd")?;
    Ok(UsageRecord {
        id: row.get("id")?,
        agent_id: row.get("agent_id")?,
        agent_name: row.get("agent_name")?,
        config_id: row.get("config_id")?,
        virtual_key_id: row.get("virtual_key_id")?,
        virtual_key_name: row.get("virtual_key_name")?,
        request_id: row.get("request_id")?,
        route: row.get("route")?,
        provider: row.get("provider")?,
        model: row.get("model")?,
        input_tokens: row.get("input_tokens")?,
        output_tokens: row.get("output_tokens")?,
        cache_read_tokens: row.get("cache_read_tokens")?,
        cache_write_tokens: row.get("cache_write_tokens")?,
        cache_write_hour_tokens: row.get("cache_write_hour_tokens")?,
        reasoning_tokens: row.get("reasoning_tokens")?,
        estimated: row.get("estimated")?,
        cost_usd: cost.map(|c| decimal(&c, "cost_usd")).transpose()?,
        latency_ms: row.get("latency_ms")?,
        ttft_ms: row.get("ttft_ms")?,
        status: row.get("status")?,
        error_kind: row.get("error_kind")?,
        attempt: row.get("attempt")?,
        fallback: row.get("fallback")?,
        streamed: row.get("streamed")?,
        created_at: row.get("created_at")?,
        served: Served {
            cache_hit: row.get("cache_hit")?,
            saved_usd: row
                .get::<_, Option<String>>("saved_usd")?
                .map(|c| decimal(&c, "saved_usd"))
                .transpose()?,
            choice: row.get("choice")?,
            choice_reason: row.get("choice_reason")?,
            experiment: row.get("experiment")?,
            variant: row.get("variant")?,
        },
    })
}

/// Totals for one agent, provider and model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageSummary {
    /// `None` for calls made for no agent.
    pub agent_name: Option<String>,
    pub provider: String,
    pub model: String,
    /// Attempts recorded.
    pub attempts: u64,
    /// Attempts that failed.
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Sum of the known costs, exact.
    pub cost_usd: Decimal,
    /// Attempts whose cost is unknown (model not in the catalogue).
    pub unpriced: u64,
    /// Attempts whose token counts are estimates.
    pub estimated: u64,
}

pub(super) fn decimal(text: &str, column: &str) -> SqlResult<Decimal> {
    Decimal::from_str(text)
        .map_err(|err| SqlError::conversion(column, format!("`{text}` is not a decimal: {err}")))
}

pub(super) const AGENT_COLUMNS: &str = "id, name, description, created_at, updated_at, \
     budget_usd, budget_tokens, budget_period, balance, cache_ttl_secs, cache_sampled";

pub(super) fn agent_from(row: &Row) -> SqlResult<Agent> {
    let budget_usd: Option<String> = row.get(5)?;
    Ok(Agent {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
        budget_usd: budget_usd
            .map(|usd| decimal(&usd, "budget_usd"))
            .transpose()?,
        budget_tokens: row.get(6)?,
        budget_period: period_from(row.get(7)?, "budget_period")?,
        balance: {
            let name: String = row.get(8)?;
            name.parse()
                .map_err(|err: Error| SqlError::conversion("balance", err))?
        },
        cache_ttl_secs: row.get(9)?,
        cache_sampled: row.get(10)?,
    })
}

/// The columns a config is written with beside its fields.
const KEY_COLUMNS: [&str; 2] = ["api_key_encrypted", "api_key_hint"];

/// Every column of a config row.
static CONFIG_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    ["id", "agent_id", "created_at", "updated_at"]
        .iter()
        .chain(&KEY_COLUMNS)
        .chain(ConfigFields::COLUMNS)
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
});

/// `INSERT … VALUES (?1 = agent id, then the key and field columns)`.
static INSERT_CONFIG: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<&str> = KEY_COLUMNS
        .iter()
        .chain(ConfigFields::COLUMNS)
        .copied()
        .collect();
    let placeholders: Vec<String> = (2..columns.len() + 2).map(|n| format!("?{n}")).collect();
    format!(
        "INSERT INTO agent_llm_configs (agent_id, {}) VALUES (?1, {}) RETURNING {}",
        columns.join(", "),
        placeholders.join(", "),
        *CONFIG_COLUMNS
    )
});

/// `UPDATE … WHERE id = ?1 AND updated_at = ?2`, setting the key and field
/// columns from `?3` on.
fn update_config_sql(dialect: Dialect) -> &'static str {
    static SQLITE: LazyLock<String> = LazyLock::new(|| update_config(Dialect::Sqlite));
    static POSTGRES: LazyLock<String> = LazyLock::new(|| update_config(Dialect::Postgres));
    match dialect {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    }
}

fn update_config(dialect: Dialect) -> String {
    let next = dialect.next_updated_at();
    let sets: Vec<String> = KEY_COLUMNS
        .iter()
        .chain(ConfigFields::COLUMNS)
        .enumerate()
        .map(|(i, column)| format!("{column} = ?{}", i + 3))
        .collect();
    format!(
        "UPDATE agent_llm_configs SET {}, updated_at = {next} \
         WHERE id = ?1 AND updated_at = ?2 RETURNING {}",
        sets.join(", "),
        *CONFIG_COLUMNS
    )
}

/// The values of `row`'s key and field columns, in statement order.
fn config_values(row: &NewConfigRow) -> Vec<SqlValue> {
    let mut values = vec![
        row.api_key_encrypted.clone().into(),
        row.api_key_hint.clone().into(),
    ];
    values.extend(row.fields.sql_values());
    values
}

fn config_from(row: &Row) -> SqlResult<ConfigRow> {
    Ok(ConfigRow {
        id: row.get("id")?,
        agent_id: row.get("agent_id")?,
        fields: ConfigFields::from_row(row)?,
        api_key_encrypted: row.get("api_key_encrypted")?,
        api_key_hint: row.get("api_key_hint")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

pub(super) fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Why an UPDATE of config `id` matched no row: it changed since it was
/// read ([`Error::Conflict`]), or it does not exist.
fn missing_or_changed(tx: &mut Conn<'_>, id: i64, path: &str) -> Result<Error, Error> {
    let exists: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM agent_llm_configs WHERE id = ?1)",
            params![id],
            |r| r.get(0),
        )
        .map_err(db_error(path))?;
    Ok(if exists {
        Error::Conflict(format!(
            "config {id} was changed by someone else meanwhile; read it again and retry"
        ))
    } else {
        Error::NotFound {
            what: "config",
            key: id.to_string(),
        }
    })
}

/// The columns of a usage row as [`Store::record_usage_many`] writes them.
const USAGE_COLUMNS: &[&str] = &[
    "agent_id",
    "agent_name",
    "config_id",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "estimated",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "status",
    "error_kind",
    "attempt",
    "fallback",
    "streamed",
    "virtual_key_id",
    "virtual_key_name",
    "request_id",
    "route",
    "cache_write_hour_tokens",
    "cache_hit",
    "saved_usd",
    "choice",
    "choice_reason",
    "experiment",
    "variant",
];

/// Usage rows one INSERT writes at most: 15,000 parameters, within both
/// engines' limits (SQLite 32,766, PostgreSQL 65,535).
pub const USAGE_ROWS_PER_INSERT: usize = 500;

/// `INSERT INTO usage_events (…) VALUES (…), … RETURNING id` for `rows`
/// rows.
fn insert_usage_sql(rows: usize) -> String {
    let width = USAGE_COLUMNS.len();
    let tuples: Vec<String> = (0..rows)
        .map(|row| {
            let marks: Vec<String> = (1..=width)
                .map(|c| format!("?{}", row * width + c))
                .collect();
            format!("({})", marks.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO usage_events ({}) VALUES {} RETURNING id, created_at",
        USAGE_COLUMNS.join(", "),
        tuples.join(", ")
    )
}

/// The values of `e`, in [`USAGE_COLUMNS`] order.
fn usage_values(e: &UsageEvent) -> [SqlValue; 30] {
    let (status, error_kind) = match &e.outcome {
        UsageOutcome::Ok => ("ok", None),
        UsageOutcome::Error(kind) => ("error", Some(kind.as_str())),
    };
    [
        e.agent_id.into(),
        e.agent_name.clone().into(),
        e.config_id.into(),
        e.provider.clone().into(),
        e.model.clone().into(),
        e.input_tokens.into(),
        e.output_tokens.into(),
        e.cache_read_tokens.into(),
        e.cache_write_tokens.into(),
        e.reasoning_tokens.into(),
        e.estimated.into(),
        e.cost_usd.map(|c| c.normalize().to_string()).into(),
        millis(e.latency).into(),
        e.time_to_first_token.map(millis).into(),
        status.into(),
        error_kind.into(),
        e.attempt.into(),
        e.fallback.into(),
        e.streamed.into(),
        e.virtual_key_id.into(),
        e.virtual_key_name.clone().into(),
        e.request_id.clone().into(),
        e.route.clone().into(),
        e.cache_write_hour_tokens.into(),
        e.served.cache_hit.into(),
        e.served.saved_usd.map(|c| c.normalize().to_string()).into(),
        e.served.choice.clone().into(),
        e.served.choice_reason.clone().into(),
        e.served.experiment.clone().into(),
        e.served.variant.clone().into(),
    ]
}

/// The event a stored row records, as far as the rollup reads it.
pub(super) fn event_of(record: &UsageRecord) -> UsageEvent {
    UsageEvent {
        agent_id: record.agent_id,
        agent_name: record.agent_name.clone(),
        config_id: record.config_id,
        virtual_key_id: record.virtual_key_id,
        virtual_key_name: record.virtual_key_name.clone(),
        request_id: record.request_id.clone(),
        route: record.route.clone(),
        provider: record.provider.clone(),
        model: record.model.clone(),
        input_tokens: record.input_tokens,
        output_tokens: record.output_tokens,
        cache_read_tokens: record.cache_read_tokens,
        cache_write_tokens: record.cache_write_tokens,
        cache_write_hour_tokens: record.cache_write_hour_tokens,
        reasoning_tokens: record.reasoning_tokens,
        estimated: record.estimated,
        cost_usd: record.cost_usd,
        latency: Duration::from_millis(record.latency_ms),
        time_to_first_token: record.ttft_ms.map(Duration::from_millis),
        outcome: if record.status == "ok" {
            UsageOutcome::Ok
        } else {
            UsageOutcome::Error(ErrorKind::Internal)
        },
        attempt: record.attempt,
        fallback: record.fallback,
        streamed: record.streamed,
        served: record.served.clone(),
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Creates an agent; a taken name is a [`Error::Conflict`].
    pub async fn create_agent(
        &self,
        name: &str,
        description: Option<&str>,
    ) -> Result<Agent, Error> {
        self.create_balanced_agent(name, description, Strategy::Priority)
            .await
    }

    /// [`Store::create_agent`] with its balancing strategy.
    pub async fn create_balanced_agent(
        &self,
        name: &str,
        description: Option<&str>,
        balance: Strategy,
    ) -> Result<Agent, Error> {
        let name = name.to_owned();
        let description = description.map(str::to_owned);
        let path = self.label();
        self.write(move |tx| {
            let inserted = tx.query_row(
                &format!(
                    "INSERT INTO agents (name, description, balance) VALUES (?1, ?2, ?3) RETURNING {AGENT_COLUMNS}"
                ),
                params![name, description, balance.as_str()],
                agent_from,
            );
            match inserted {
                Ok(agent) => Ok(agent),
                Err(err) if err.is_unique() => {
                    Err(Error::Conflict(format!("an agent named `{name}` already exists")))
                }
                Err(err) => Err(db_error(&path)(err)),
            }
        })
        .await
    }

    /// The agent with this name.
    pub async fn agent(&self, name: &str) -> Result<Option<Agent>, Error> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.query_row(
                &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE name = ?1"),
                params![name],
                agent_from,
            )
            .optional()
        })
        .await
    }

    /// The agent with this id.
    pub async fn agent_by_id(&self, id: i64) -> Result<Option<Agent>, Error> {
        self.read(move |conn| {
            conn.query_row(
                &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"),
                params![id],
                agent_from,
            )
            .optional()
        })
        .await
    }

    /// Every agent, by name.
    pub async fn agents(&self) -> Result<Vec<Agent>, Error> {
        self.read(|conn| {
            conn.query_map(
                &format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY name"),
                params![],
                agent_from,
            )
        })
        .await
    }

    /// Sets (or, with `None`, clears) the response cache settings of agent
    /// `name`; `None` when there is no such agent.
    pub async fn set_agent_cache(
        &self,
        name: &str,
        cache: Option<AgentCache>,
    ) -> Result<Option<Agent>, Error> {
        let name = name.to_owned();
        let path = self.label();
        self.write(move |tx| {
            let next = tx.dialect().next_updated_at();
            tx.query_row(
                &format!(
                    "UPDATE agents SET cache_ttl_secs = ?2, cache_sampled = ?3, \
                     updated_at = {next} \
                     WHERE name = ?1 RETURNING {AGENT_COLUMNS}"
                ),
                params![
                    name,
                    cache.map(|c| c.ttl_secs),
                    cache.is_some_and(|c| c.sampled)
                ],
                agent_from,
            )
            .optional()
            .map_err(db_error(&path))
        })
        .await
    }

    /// Deletes an agent and, by cascade, its configs. Returns whether it
    /// existed. Its usage events stay, with the agent id cleared, and so
    /// do its rollup rows, under the negated id.
    pub async fn delete_agent(&self, name: &str) -> Result<bool, Error> {
        let name = name.to_owned();
        let path = self.label();
        self.write(move |tx| {
            // Its rollup rows stay for the reports, under the negated id:
            // an agent created later may get the same id (SQLite reuses
            // the highest), and must not inherit the spend.
            tx.execute(
                "UPDATE usage_rollup SET agent_id = -agent_id \
                 WHERE agent_id = (SELECT id FROM agents WHERE name = ?1)",
                params![name],
            )
            .map_err(db_error(&path))?;
            tx.execute("DELETE FROM agents WHERE name = ?1", params![name])
                .map(|n| n > 0)
                .map_err(db_error(&path))
        })
        .await
    }

    /// Sets the description of agent `name` when `description` is
    /// `Some` (`Some(None)` clears it), and its strategy when `balance` is.
    /// With `expected_updated_at`, only if the agent's `updated_at` is
    /// still that ([`Error::Conflict`] if not).
    pub async fn update_agent(
        &self,
        name: &str,
        expected_updated_at: Option<&str>,
        description: Option<Option<String>>,
        balance: Option<Strategy>,
    ) -> Result<Agent, Error> {
        let name = name.to_owned();
        let expected = expected_updated_at.map(str::to_owned);
        let path = self.label();
        self.write(move |tx| {
            let next = tx.dialect().next_updated_at();
            let updated = tx
                .query_row(
                    &format!(
                        "UPDATE agents SET description = CASE WHEN ?3 = 1 THEN ?4 ELSE description END, \
                         balance = COALESCE(?5, balance), \
                         updated_at = {next} \
                         WHERE name = ?1 AND (CAST(?2 AS TEXT) IS NULL OR updated_at = ?2) \
                         RETURNING {AGENT_COLUMNS}"
                    ),
                    params![
                        name,
                        expected,
                        description.is_some(),
                        description.flatten(),
                        balance.map(Strategy::as_str)
                    ],
                    agent_from,
                )
                .optional()
                .map_err(db_error(&path))?;
            if let Some(agent) = updated {
                return Ok(agent);
            }
            let exists: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM agents WHERE name = ?1)",
                    params![&name],
                    |r| r.get(0),
                )
                .map_err(db_error(&path))?;
            Err(if exists {
                Error::Conflict(format!(
                    "agent `{name}` was changed by someone else meanwhile; read it again and retry"
                ))
            } else {
                Error::NotFound {
                    what: "agent",
                    key: name,
                }
            })
        })
        .await
    }

    /// Inserts a config for `agent_id`.
    pub async fn insert_config(
        &self,
        agent_id: i64,
        row: NewConfigRow,
    ) -> Result<ConfigRow, Error> {
        let path = self.label();
        self.write(move |tx| {
            let values: Vec<SqlValue> = std::iter::once(SqlValue::Integer(agent_id))
                .chain(config_values(&row))
                .collect();
            tx.query_row(&INSERT_CONFIG, &values, config_from)
                .map_err(db_error(&path))
        })
        .await
    }

    /// Replaces the writable fields of config `id`, unless the stored
    /// row's `updated_at` differs from `expected_updated_at` (someone else
    /// changed it since it was read: [`Error::Conflict`]).
    pub async fn update_config(
        &self,
        id: i64,
        expected_updated_at: &str,
        row: NewConfigRow,
    ) -> Result<ConfigRow, Error> {
        let path = self.label();
        let expected = expected_updated_at.to_owned();
        self.write(move |tx| {
            let values: Vec<SqlValue> = [SqlValue::Integer(id), SqlValue::Text(expected)]
                .into_iter()
                .chain(config_values(&row))
                .collect();
            let sql = update_config_sql(tx.dialect());
            let updated = tx
                .query_row(sql, &values, config_from)
                .optional()
                .map_err(db_error(&path))?;
            match updated {
                Some(row) => Ok(row),
                None => Err(missing_or_changed(tx, id, &path)?),
            }
        })
        .await
    }

    /// Sets the priorities of `agent_id`'s configs to 0, 1, … in the order
    /// of `ids`, in one transaction, and returns the configs in their new
    /// order. `ids` must name each of the agent's configs exactly once
    /// (else a validation error of field `ids`).
    pub async fn reorder_configs(
        &self,
        agent_id: i64,
        ids: Vec<i64>,
    ) -> Result<Vec<ConfigRow>, Error> {
        let path = self.label();
        self.write(move |tx| {
            let mut stored: Vec<i64> = tx
                .query_map(
                    "SELECT id FROM agent_llm_configs WHERE agent_id = ?1",
                    params![agent_id],
                    |r| r.get(0),
                )
                .map_err(db_error(&path))?;
            let mut given = ids.clone();
            stored.sort_unstable();
            given.sort_unstable();
            if stored != given {
                return Err(Error::Validation {
                    field: "ids",
                    message: format!(
                        "must list each of the agent's configs once (its configs: {stored:?})"
                    ),
                });
            }
            let next = tx.dialect().next_updated_at();
            for (priority, id) in ids.iter().enumerate() {
                tx.execute(
                    &format!(
                        "UPDATE agent_llm_configs SET priority = ?2, updated_at = {next} \
                         WHERE id = ?1 AND priority IS DISTINCT FROM ?2"
                    ),
                    params![*id, saturating_i64(priority as u64)],
                )
                .map_err(db_error(&path))?;
            }
            tx.query_map(
                &format!(
                    "SELECT {} FROM agent_llm_configs WHERE agent_id = ?1 ORDER BY priority, id",
                    *CONFIG_COLUMNS
                ),
                params![agent_id],
                config_from,
            )
            .map_err(db_error(&path))
        })
        .await
    }

    /// Config `id`.
    pub async fn config(&self, id: i64) -> Result<Option<ConfigRow>, Error> {
        self.read(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {} FROM agent_llm_configs WHERE id = ?1",
                    *CONFIG_COLUMNS
                ),
                params![id],
                config_from,
            )
            .optional()
        })
        .await
    }

    /// Deletes config `id`; returns whether it existed.
    pub async fn delete_config(&self, id: i64) -> Result<bool, Error> {
        let path = self.label();
        self.write(move |tx| {
            tx.execute("DELETE FROM agent_llm_configs WHERE id = ?1", params![id])
                .map(|n| n > 0)
                .map_err(db_error(&path))
        })
        .await
    }

    /// An agent's configs in the order they are tried: priority, then
    /// age. With `enabled_only`, only the enabled ones.
    pub async fn configs(
        &self,
        agent_id: i64,
        enabled_only: bool,
    ) -> Result<Vec<ConfigRow>, Error> {
        self.read(move |conn| {
            conn.query_map(
                &format!(
                    "SELECT {} FROM agent_llm_configs \
                     WHERE agent_id = ?1 AND (enabled = 1 OR ?2 = 0) ORDER BY priority, id",
                    *CONFIG_COLUMNS
                ),
                params![agent_id, enabled_only],
                config_from,
            )
        })
        .await
    }

    /// The config tried first: enabled, lowest priority, oldest.
    pub async fn primary_config(&self, agent_id: i64) -> Result<Option<ConfigRow>, Error> {
        self.read(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {} FROM agent_llm_configs \
                     WHERE agent_id = ?1 AND enabled = 1 ORDER BY priority, id LIMIT 1",
                    *CONFIG_COLUMNS
                ),
                params![agent_id],
                config_from,
            )
            .optional()
        })
        .await
    }

    /// Rewrites every stored API key in one transaction: `rewrite` gets
    /// each config (with its ciphertext) and returns the new ciphertext,
    /// under `new_key_id`, which becomes the database's active key; then
    /// `before_commit` gets the number of rows rewritten. If either fails,
    /// nothing changes. Returns the rows rewritten.
    pub async fn rewrite_api_keys(
        &self,
        rewrite: impl FnMut(&ConfigRow, &str) -> Result<String, Error> + Send + 'static,
        new_key_id: String,
        before_commit: impl FnOnce(usize) -> Result<(), Error> + Send + 'static,
    ) -> Result<usize, Error> {
        let path = self.label();
        let mut rewrite = rewrite;
        self.write(move |tx| {
            if tx.dialect() == Dialect::Postgres {
                // SQLite's write lock already keeps other writers out; on
                // PostgreSQL a config written meanwhile by another replica
                // would keep the old key. Taken before the active-key row
                // below, in the order every writer of configs takes them.
                tx.execute_batch("LOCK TABLE agent_llm_configs IN EXCLUSIVE MODE")
                    .map_err(db_error(&path))?;
            }
            // First, so that the triggers let the rewritten rows in, and
            // every other writer must use the new key from this commit on.
            super::keyring::set_active_key(tx, &new_key_id).map_err(db_error(&path))?;
            let rows: Vec<ConfigRow> = tx
                .query_map(
                    &format!(
                        "SELECT {} FROM agent_llm_configs \
                         WHERE api_key_encrypted IS NOT NULL ORDER BY id",
                        *CONFIG_COLUMNS
                    ),
                    params![],
                    config_from,
                )
                .map_err(db_error(&path))?;
            for row in &rows {
                let Some(old) = row.api_key_encrypted.as_deref() else {
                    continue;
                };
                let new = rewrite(row, old)?;
                tx.execute(
                    "UPDATE agent_llm_configs SET api_key_encrypted = ?2 WHERE id = ?1",
                    params![row.id, new],
                )
                .map_err(db_error(&path))?;
            }
            before_commit(rows.len())?;
            Ok(rows.len())
        })
        .await
    }

    /// Records one attempt.
    pub async fn record_usage(&self, event: UsageEvent) -> Result<i64, Error> {
        self.record_usage_many(vec![event]).await.map(|ids| ids[0])
    }

    /// Records several attempts in one transaction, with one multi-row
    /// INSERT per [`USAGE_ROWS_PER_INSERT`] events, and adds them to the
    /// hourly rollup in that transaction; returns their ids in the order
    /// given.
    pub async fn record_usage_many(&self, events: Vec<UsageEvent>) -> Result<Vec<i64>, Error> {
        let path = self.label();
        self.write(move |tx| {
            let mut ids = Vec::with_capacity(events.len());
            for chunk in events.chunks(USAGE_ROWS_PER_INSERT) {
                let mut values = Vec::with_capacity(chunk.len() * USAGE_COLUMNS.len());
                for e in chunk {
                    values.extend(usage_values(e));
                }
                let mut inserted: Vec<(i64, String)> = tx
                    .query_map(&insert_usage_sql(chunk.len()), &values, |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map_err(db_error(&path))?;
                // Both engines number the rows of one statement in order.
                inserted.sort_unstable();
                let mut buckets = BTreeMap::new();
                for (event, (_, created_at)) in chunk.iter().zip(&inserted) {
                    super::rollup::add_event(&mut buckets, event, created_at, 1);
                }
                super::rollup::apply(tx, &buckets).map_err(db_error(&path))?;
                ids.extend(inserted.into_iter().map(|(id, _)| id));
            }
            Ok(ids)
        })
        .await
    }

    /// Recorded attempts, oldest first; only `agent`'s when given.
    pub async fn usage_events(&self, agent: Option<&str>) -> Result<Vec<UsageRecord>, Error> {
        self.usage_records(UsageFilter {
            agent: agent.map(str::to_owned),
            ..UsageFilter::default()
        })
        .await
    }

    /// Recorded attempts that pass `filter`, oldest first.
    pub async fn usage_records(&self, filter: UsageFilter) -> Result<Vec<UsageRecord>, Error> {
        self.read(move |conn| {
            conn.query_map(
                "SELECT * FROM usage_events \
                 WHERE (CAST(?1 AS TEXT) IS NULL OR agent_name = ?1) \
                 AND (CAST(?2 AS TEXT) IS NULL OR request_id = ?2) \
                 AND (CAST(?3 AS TEXT) IS NULL OR created_at >= ?3) \
                 AND (CAST(?4 AS TEXT) IS NULL OR created_at < ?4) \
                 ORDER BY id",
                params![filter.agent, filter.request_id, filter.since, filter.until],
                usage_record_from,
            )
        })
        .await
    }
}
