//! Experiments of agents, their variants, and the usage rows of the calls
//! made in them.

use super::records::decimal;
use super::sql::{Conn, OptionalExt, Row, SqlError, SqlResult, Value, params};
use super::{Store, db_error};
use crate::error::Error;
use llmhost_registry::rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How calls are assigned a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sticky {
    /// By the request's end-user id: every call of one user gets the same
    /// variant. A call without a user id is assigned at random.
    User,
    /// At random for each call.
    Request,
}

impl Sticky {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Sticky::User => "user",
            Sticky::Request => "request",
        }
    }

    fn from_column(text: &str) -> SqlResult<Self> {
        match text {
            "user" => Ok(Sticky::User),
            "request" => Ok(Sticky::Request),
            other => Err(conversion(format!("sticky: `{other}`"))),
        }
    }
}

/// Whether an experiment still assigns calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    Active,
    Stopped,
}

/// One arm of an experiment: where its share of the calls goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Unique within the experiment: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Its share of the calls: `weight / sum of the weights`; more than 0.
    pub weight: u32,
    pub provider: String,
    pub model: String,
    /// Sampling settings the call takes where the request sets none, as a
    /// config's.
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub top_p: Option<f64>,
}

/// An experiment as stored, its variants in order (the first is the
/// control the others are compared with).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Experiment {
    pub id: i64,
    pub agent_id: i64,
    /// The agent's name.
    pub agent: String,
    pub name: String,
    pub sticky: Sticky,
    pub status: ExperimentStatus,
    pub created_at: String,
    pub stopped_at: Option<String>,
    pub variants: Vec<Variant>,
}

/// What a call of an experiment left: its final usage row (the attempt
/// that answered, or the last one that failed).
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentCall {
    pub variant: String,
    pub ok: bool,
    /// A route other than the variant's own (an agent config) answered.
    pub fallback: bool,
    pub latency_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<Decimal>,
    /// The response cache served it: no provider was called.
    pub cache_hit: bool,
}

fn conversion(message: String) -> SqlError {
    SqlError::Conversion(message)
}

const EXPERIMENT_COLUMNS: &str = "e.id, e.agent_id, a.name, e.name, e.sticky, e.status, \
     e.created_at, e.stopped_at";

fn experiment_from(row: &Row) -> SqlResult<Experiment> {
    let sticky: String = row.get(4)?;
    let status: String = row.get(5)?;
    Ok(Experiment {
        id: row.get(0)?,
        agent_id: row.get(1)?,
        agent: row.get(2)?,
        name: row.get(3)?,
        sticky: Sticky::from_column(&sticky)?,
        status: match status.as_str() {
            "active" => ExperimentStatus::Active,
            "stopped" => ExperimentStatus::Stopped,
            other => return Err(conversion(format!("status: `{other}`"))),
        },
        created_at: row.get(6)?,
        stopped_at: row.get(7)?,
        variants: Vec::new(),
    })
}

/// The experiments matching `condition` (over `e`, the experiments, and
/// `a`, their agents), by name, with their variants.
fn load(conn: &mut Conn<'_>, condition: &str, params: &[Value]) -> SqlResult<Vec<Experiment>> {
    let mut experiments: Vec<Experiment> = conn.query_map(
        &format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments e JOIN agents a ON a.id = e.agent_id \
             WHERE {condition} ORDER BY e.name"
        ),
        params,
        experiment_from,
    )?;
    if experiments.is_empty() {
        return Ok(experiments);
    }
    let rows = conn.query(
        &format!(
            "SELECT v.experiment_id, v.name, v.weight, v.provider, v.model, v.temperature, \
             v.max_tokens, v.top_p FROM experiment_variants v \
             JOIN experiments e ON e.id = v.experiment_id JOIN agents a ON a.id = e.agent_id \
             WHERE {condition} ORDER BY v.experiment_id, v.position"
        ),
        params,
    )?;
    let mut variants: BTreeMap<i64, Vec<Variant>> = BTreeMap::new();
    for row in rows {
        variants.entry(row.get(0)?).or_default().push(Variant {
            name: row.get(1)?,
            weight: row.get(2)?,
            provider: row.get(3)?,
            model: row.get(4)?,
            temperature: row.get(5)?,
            max_tokens: row.get(6)?,
            top_p: row.get(7)?,
        });
    }
    for experiment in &mut experiments {
        experiment.variants = variants.remove(&experiment.id).unwrap_or_default();
    }
    Ok(experiments)
}

impl Store {
    /// Creates an active experiment of agent `agent_id`. A taken name, or
    /// an agent with an active experiment already, is an
    /// [`Error::Conflict`]; the variants are stored as given (the service
    /// checks them).
    pub async fn create_experiment(
        &self,
        agent_id: i64,
        name: &str,
        sticky: Sticky,
        variants: Vec<Variant>,
    ) -> Result<Experiment, Error> {
        let name = name.to_owned();
        let path = self.label();
        self.write(move |tx| {
            let taken: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM experiments WHERE name = ?1)",
                    params![&name],
                    |r| r.get(0),
                )
                .map_err(db_error(&path))?;
            if taken {
                return Err(Error::Conflict(format!(
                    "an experiment named `{name}` already exists"
                )));
            }
            let active: Option<String> = tx
                .query_row(
                    "SELECT name FROM experiments WHERE agent_id = ?1 AND status = 'active'",
                    params![agent_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_error(&path))?;
            if let Some(active) = active {
                return Err(Error::Conflict(format!(
                    "the agent already has an active experiment, `{active}`: stop it first"
                )));
            }
            let id: i64 = tx
                .query_row(
                    "INSERT INTO experiments (agent_id, name, sticky) VALUES (?1, ?2, ?3) \
                     RETURNING id",
                    params![agent_id, name, sticky.as_str()],
                    |r| r.get(0),
                )
                .map_err(|err| {
                    // Another replica created one between the checks and
                    // this insert (PostgreSQL at READ COMMITTED).
                    if err.is_unique() {
                        Error::Conflict(format!(
                            "an experiment named `{name}`, or another active one of the agent, \
                             was created meanwhile"
                        ))
                    } else {
                        db_error(&path)(err)
                    }
                })?;
            for (position, variant) in variants.iter().enumerate() {
                tx.execute(
                    "INSERT INTO experiment_variants (experiment_id, position, name, weight, \
                     provider, model, temperature, max_tokens, top_p) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        id,
                        position as i64,
                        variant.name,
                        variant.weight,
                        variant.provider,
                        variant.model,
                        variant.temperature,
                        variant.max_tokens,
                        variant.top_p,
                    ],
                )
                .map_err(|err| {
                    if err.is_unique() {
                        Error::Validation {
                            field: "variants.name",
                            message: format!("`{}` is given twice", variant.name),
                        }
                    } else {
                        db_error(&path)(err)
                    }
                })?;
            }
            load(tx, "e.id = ?1", params![id])
                .map_err(db_error(&path))?
                .pop()
                .ok_or_else(|| Error::Internal(format!("experiment {id} vanished")))
        })
        .await
    }

    /// Every experiment, by name.
    pub async fn experiments(&self) -> Result<Vec<Experiment>, Error> {
        self.read(|conn| load(conn, "1 = 1", params![])).await
    }

    /// The experiment named `name`.
    pub async fn experiment(&self, name: &str) -> Result<Option<Experiment>, Error> {
        let name = name.to_owned();
        self.read(move |conn| Ok(load(conn, "e.name = ?1", params![name])?.pop()))
            .await
    }

    /// The active experiment of agent `agent_id`, if it has one.
    pub async fn active_experiment(&self, agent_id: i64) -> Result<Option<Experiment>, Error> {
        self.read(move |conn| {
            Ok(load(
                conn,
                "e.agent_id = ?1 AND e.status = 'active'",
                params![agent_id],
            )?
            .pop())
        })
        .await
    }

    /// Stops experiment `name`: its agent's calls are no longer assigned
    /// to it. [`Error::NotFound`] if there is none, [`Error::Conflict`] if
    /// it was stopped already.
    pub async fn stop_experiment(&self, name: &str) -> Result<Experiment, Error> {
        let name = name.to_owned();
        let path = self.label();
        self.write(move |tx| {
            let Some(current) = load(tx, "e.name = ?1", params![&name])
                .map_err(db_error(&path))?
                .pop()
            else {
                return Err(Error::NotFound {
                    what: "experiment",
                    key: name,
                });
            };
            if current.status == ExperimentStatus::Stopped {
                return Err(Error::Conflict(format!(
                    "experiment `{name}` was stopped at {}",
                    current.stopped_at.unwrap_or_default()
                )));
            }
            let now = tx.dialect().now();
            tx.execute(
                &format!(
                    "UPDATE experiments SET status = 'stopped', stopped_at = {now} WHERE id = ?1"
                ),
                params![current.id],
            )
            .map_err(db_error(&path))?;
            load(tx, "e.id = ?1", params![current.id])
                .map_err(db_error(&path))?
                .pop()
                .ok_or_else(|| Error::Internal(format!("experiment `{name}` vanished")))
        })
        .await
    }

    /// The calls made in experiment `name` since `since` (a store
    /// timestamp): for each request id, its last usage row, oldest call
    /// first.
    pub async fn experiment_calls(
        &self,
        name: &str,
        since: &str,
    ) -> Result<Vec<ExperimentCall>, Error> {
        let name = name.to_owned();
        let since = since.to_owned();
        self.read(move |conn| {
            conn.query_map(
                "SELECT variant, status, fallback, latency_ms, input_tokens, output_tokens, \
                 cost_usd, cache_hit FROM usage_events WHERE id IN ( \
                     SELECT max(id) FROM usage_events \
                     WHERE experiment = ?1 AND created_at >= ?2 \
                     GROUP BY coalesce(request_id, CAST(id AS TEXT))) \
                 ORDER BY id",
                params![name, since],
                |row| {
                    let status: String = row.get(1)?;
                    let cost: Option<String> = row.get(6)?;
                    Ok(ExperimentCall {
                        variant: row.get::<_, Option<String>>(0)?.unwrap_or_default(),
                        ok: status == "ok",
                        fallback: row.get(2)?,
                        latency_ms: row.get(3)?,
                        input_tokens: row.get(4)?,
                        output_tokens: row.get(5)?,
                        cost_usd: cost.map(|c| decimal(&c, "cost_usd")).transpose()?,
                        cache_hit: row.get(7)?,
                    })
                },
            )
        })
        .await
    }
}
