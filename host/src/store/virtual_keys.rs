//! Virtual keys, agent budgets and the spend queries budgets are checked
//! against.
//!
//! A virtual key is stored only as a keyed hash (`key_hash`, made with the
//! hash key of encryption key `hash_key_id`) and a hint of its first
//! characters; the store never sees the key itself. Spend is summed from
//! `usage_events` over the `(virtual_key_id, created_at)` and
//! `(agent_id, created_at)` indexes, exactly, as decimals.

use super::calendar::{BudgetPeriod, utc_timestamp};
use super::records::{AGENT_COLUMNS, agent_from, decimal, saturating_i64};
use super::sql::{OptionalExt, Row, SqlError, SqlResult, params};
use super::{Agent, Store, db_error};
use crate::error::Error;
use llmhost_registry::rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// A `virtual_keys` row, without its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualKeyRow {
    pub id: i64,
    pub name: String,
    /// The id of the encryption key whose hash key hashed it.
    pub hash_key_id: String,
    /// The key's first 8 characters and `…`.
    pub key_hint: String,
    /// The agent the key is scoped to, by name.
    pub agent_name: Option<String>,
    /// Model ids the key may use (`openai/gpt-4o-mini`); `None`: any.
    pub models: Option<Vec<String>>,
    pub budget_usd: Option<Decimal>,
    pub budget_period: Option<BudgetPeriod>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub created_at: String,
    /// How long the response cache keeps the key's answers; `None`: the
    /// key does not cache.
    pub cache_ttl_secs: Option<u32>,
    /// Whether the key's cached answers serve other keys too.
    pub cache_shared: bool,
}

/// A virtual key to insert. `Debug` leaves out the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct NewVirtualKeyRow {
    pub name: String,
    /// Hex of the keyed hash of the key.
    pub key_hash: String,
    pub hash_key_id: String,
    pub key_hint: String,
    pub agent_name: Option<String>,
    pub models: Option<Vec<String>>,
    /// Amount and period, both or neither.
    pub budget: Option<(Decimal, BudgetPeriod)>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub expires_at: Option<String>,
    pub cache_ttl_secs: Option<u32>,
    pub cache_shared: bool,
}

impl fmt::Debug for NewVirtualKeyRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewVirtualKeyRow")
            .field("name", &self.name)
            .field("hash_key_id", &self.hash_key_id)
            .field("key_hint", &self.key_hint)
            .field("agent_name", &self.agent_name)
            .field("models", &self.models)
            .field("budget", &self.budget)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("expires_at", &self.expires_at)
            .field("cache_ttl_secs", &self.cache_ttl_secs)
            .field("cache_shared", &self.cache_shared)
            .finish_non_exhaustive()
    }
}

/// An agent's budget: at most `usd` and/or `tokens` (input plus output)
/// per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentBudget {
    pub usd: Option<Decimal>,
    pub tokens: Option<u64>,
    pub period: BudgetPeriod,
}

/// What was spent: sums over usage rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spend {
    /// Sum of the known costs, exact.
    pub cost_usd: Decimal,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Requests sent to providers: one per usage row, so a retried call
    /// counts each attempt.
    pub requests: u64,
    /// Successful requests whose cost is unknown (model without a price),
    /// so `cost_usd` is short of the truth by their cost.
    pub unpriced: u64,
}

impl Spend {
    /// Input plus output tokens.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

const VIRTUAL_KEY_COLUMNS: &str = "id, name, hash_key_id, key_hint, agent_name, models_json, \
     budget_usd, budget_period, rpm, tpm, expires_at, revoked_at, created_at, cache_ttl_secs, \
     cache_shared";

fn conversion_error(column: &str, message: String) -> SqlError {
    SqlError::conversion(column, message)
}

pub(super) fn period_from(text: Option<String>, column: &str) -> SqlResult<Option<BudgetPeriod>> {
    text.map(|t| {
        BudgetPeriod::from_str(&t).map_err(|err| conversion_error(column, err.to_string()))
    })
    .transpose()
}

fn virtual_key_from(row: &Row) -> SqlResult<VirtualKeyRow> {
    let models: Option<String> = row.get(5)?;
    let budget: Option<String> = row.get(6)?;
    Ok(VirtualKeyRow {
        id: row.get(0)?,
        name: row.get(1)?,
        hash_key_id: row.get(2)?,
        key_hint: row.get(3)?,
        agent_name: row.get(4)?,
        models: models
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|err| conversion_error("models_json", err.to_string()))
            })
            .transpose()?,
        budget_usd: budget.map(|b| decimal(&b, "budget_usd")).transpose()?,
        budget_period: period_from(row.get(7)?, "budget_period")?,
        rpm: row.get(8)?,
        tpm: row.get(9)?,
        expires_at: row.get(10)?,
        revoked_at: row.get(11)?,
        created_at: row.get(12)?,
        cache_ttl_secs: row.get(13)?,
        cache_shared: row.get(14)?,
    })
}

/// The column of a spend query's key.
const VIRTUAL_KEY: &str = "virtual_key_id";
const AGENT: &str = "agent_id";

impl Store {
    /// Inserts a virtual key; a taken name is a [`Error::Conflict`].
    pub async fn insert_virtual_key(&self, row: NewVirtualKeyRow) -> Result<VirtualKeyRow, Error> {
        let path = self.label();
        self.write(move |tx| {
            let models = row
                .models
                .as_ref()
                .map(|m| serde_json::Value::from(m.clone()).to_string());
            let inserted = tx.query_row(
                &format!(
                    "INSERT INTO virtual_keys (name, key_hash, hash_key_id, key_hint, agent_name, \
                     models_json, budget_usd, budget_period, rpm, tpm, expires_at, \
                     cache_ttl_secs, cache_shared) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                     RETURNING {VIRTUAL_KEY_COLUMNS}"
                ),
                params![
                    row.name,
                    row.key_hash,
                    row.hash_key_id,
                    row.key_hint,
                    row.agent_name,
                    models,
                    row.budget.map(|(usd, _)| usd.normalize().to_string()),
                    row.budget.map(|(_, period)| period.as_str()),
                    row.rpm,
                    row.tpm,
                    row.expires_at,
                    row.cache_ttl_secs,
                    row.cache_shared,
                ],
                virtual_key_from,
            );
            match inserted {
                Ok(key) => Ok(key),
                Err(err) if err.is_unique() => {
                    let name_taken: bool = tx
                        .query_row(
                            "SELECT EXISTS (SELECT 1 FROM virtual_keys WHERE name = ?1)",
                            params![&row.name],
                            |r| r.get(0),
                        )
                        .map_err(db_error(&path))?;
                    Err(if name_taken {
                        Error::Conflict(format!(
                            "a virtual key named `{}` already exists",
                            row.name
                        ))
                    } else {
                        // Two random 256-bit keys with one hash: never
                        // expected; the caller may simply try again.
                        Error::Internal("the new virtual key's hash is taken; try again".into())
                    })
                }
                Err(err) => Err(db_error(&path)(err)),
            }
        })
        .await
    }

    /// The virtual key named `name`.
    pub async fn virtual_key(&self, name: &str) -> Result<Option<VirtualKeyRow>, Error> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.query_row(
                &format!("SELECT {VIRTUAL_KEY_COLUMNS} FROM virtual_keys WHERE name = ?1"),
                params![name],
                virtual_key_from,
            )
            .optional()
        })
        .await
    }

    /// Every virtual key, by name.
    pub async fn virtual_keys(&self) -> Result<Vec<VirtualKeyRow>, Error> {
        self.read(|conn| {
            conn.query_map(
                &format!("SELECT {VIRTUAL_KEY_COLUMNS} FROM virtual_keys ORDER BY name"),
                params![],
                virtual_key_from,
            )
        })
        .await
    }

    /// The virtual key stored with one of `candidates`, each a hash key id
    /// and the hex hash of the presented key under that hash key. Revoked
    /// and expired keys are returned too: the caller decides.
    pub async fn virtual_key_by_hash(
        &self,
        candidates: Vec<(String, String)>,
    ) -> Result<Option<VirtualKeyRow>, Error> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {VIRTUAL_KEY_COLUMNS} FROM virtual_keys \
                 WHERE key_hash = ?1 AND hash_key_id = ?2"
            );
            for (hash_key_id, key_hash) in &candidates {
                if let Some(row) = conn
                    .query_row(&sql, params![key_hash, hash_key_id], virtual_key_from)
                    .optional()?
                {
                    return Ok(Some(row));
                }
            }
            Ok(None)
        })
        .await
    }

    /// Marks the virtual key named `name` revoked now, unless it already
    /// is (then its revocation time stays). `None` if there is no such key.
    pub async fn revoke_virtual_key(&self, name: &str) -> Result<Option<VirtualKeyRow>, Error> {
        let name = name.to_owned();
        let path = self.label();
        self.write(move |tx| {
            let now = tx.dialect().now();
            tx.execute(
                &format!(
                    "UPDATE virtual_keys SET revoked_at = {now} \
                     WHERE name = ?1 AND revoked_at IS NULL"
                ),
                params![&name],
            )
            .map_err(db_error(&path))?;
            tx.query_row(
                &format!("SELECT {VIRTUAL_KEY_COLUMNS} FROM virtual_keys WHERE name = ?1"),
                params![&name],
                virtual_key_from,
            )
            .optional()
            .map_err(db_error(&path))
        })
        .await
    }

    /// For each encryption key id, how many virtual keys hashed under it
    /// can still be used (neither revoked nor expired at `now`): the keys
    /// a rotation must keep for them to go on working.
    pub async fn live_virtual_keys_by_hash_key(
        &self,
        now: SystemTime,
    ) -> Result<Vec<(String, u64)>, Error> {
        let now = utc_timestamp(now);
        self.read(move |conn| {
            conn.query_map(
                "SELECT hash_key_id, count(*) FROM virtual_keys \
                 WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1) \
                 GROUP BY hash_key_id ORDER BY hash_key_id",
                params![now],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
        })
        .await
    }

    /// Sets (`Some`) or clears (`None`) the budget of the agent named
    /// `name`; `None` if there is no such agent.
    pub async fn set_agent_budget(
        &self,
        name: &str,
        budget: Option<AgentBudget>,
    ) -> Result<Option<Agent>, Error> {
        let name = name.to_owned();
        let path = self.label();
        self.write(move |tx| {
            let next = tx.dialect().next_updated_at();
            tx.query_row(
                &format!(
                    "UPDATE agents SET budget_usd = ?2, budget_tokens = ?3, budget_period = ?4, \
                     updated_at = {next} WHERE name = ?1 RETURNING {AGENT_COLUMNS}"
                ),
                params![
                    name,
                    budget
                        .and_then(|b| b.usd)
                        .map(|usd| usd.normalize().to_string()),
                    budget.and_then(|b| b.tokens).map(saturating_i64),
                    budget.map(|b| b.period.as_str()),
                ],
                agent_from,
            )
            .optional()
            .map_err(db_error(&path))
        })
        .await
    }

    /// What virtual key `id` spent since `since` (a store timestamp, as
    /// [`BudgetPeriod::window_start`] gives), or ever.
    pub async fn spend_of_virtual_key(
        &self,
        id: i64,
        since: Option<String>,
    ) -> Result<Spend, Error> {
        self.spend(VIRTUAL_KEY, id, since).await
    }

    /// What was spent for agent `agent_id` since `since`, or ever.
    pub async fn spend_of_agent(
        &self,
        agent_id: i64,
        since: Option<String>,
    ) -> Result<Spend, Error> {
        self.spend(AGENT, agent_id, since).await
    }

    /// From the hourly rollup (see [`super::rollup`]): a few rows per
    /// hour of the window, however many requests it had.
    async fn spend(
        &self,
        column: &'static str,
        id: i64,
        since: Option<String>,
    ) -> Result<Spend, Error> {
        self.read(move |conn| super::rollup::spend(conn, column, id, since.as_deref()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn event(key: Option<i64>, agent: Option<i64>, cost: Option<&str>) -> crate::store::UsageEvent {
        crate::store::UsageEvent {
            agent_id: agent,
            agent_name: agent.map(|_| "bot".into()),
            config_id: None,
            virtual_key_id: key,
            virtual_key_name: key.map(|_| "k".into()),
            request_id: None,
            route: None,
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            input_tokens: 10,
            output_tokens: 5,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            cache_write_hour_tokens: 0,
            reasoning_tokens: 0,
            estimated: false,
            cost_usd: cost.map(|c| c.parse().unwrap()),
            latency: Duration::from_millis(3),
            time_to_first_token: None,
            outcome: crate::store::UsageOutcome::Ok,
            attempt: 1,
            fallback: false,
            streamed: false,
            served: Default::default(),
        }
    }

    fn new_key(name: &str) -> NewVirtualKeyRow {
        NewVirtualKeyRow {
            name: name.into(),
            key_hash: format!("hash-of-{name}"),
            hash_key_id: "k00000000".into(),
            key_hint: "lhk-abcd…".into(),
            agent_name: None,
            models: None,
            budget: None,
            rpm: None,
            tpm: None,
            expires_at: None,
            cache_ttl_secs: None,
            cache_shared: false,
        }
    }

    use crate::store::testing::{Backend, both, store};

    both!(
        spend_is_summed_exactly_within_the_window,
        agent_budgets_are_set_and_cleared
    );

    async fn spend_is_summed_exactly_within_the_window(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let store = store(backend, dir.path()).await;
        let agent = store.create_agent("bot", None).await.unwrap();
        let key = store.insert_virtual_key(new_key("k")).await.unwrap();
        let other = store.insert_virtual_key(new_key("other")).await.unwrap();
        let ids = store
            .record_usage_many(vec![
                event(Some(key.id), Some(agent.id), Some("0.1")),
                event(Some(key.id), None, Some("0.2")),
                event(Some(key.id), None, None),
                event(Some(other.id), Some(agent.id), Some("5")),
                event(None, Some(agent.id), Some("0.000000000000000001")),
            ])
            .await
            .unwrap();
        // The first row is from last month.
        store
            .backdate_usage(ids[0], "2000-01-31T23:59:59.999Z")
            .await
            .unwrap();

        let ever = store.spend_of_virtual_key(key.id, None).await.unwrap();
        assert_eq!(ever.cost_usd.to_string(), "0.3");
        assert_eq!((ever.requests, ever.unpriced, ever.tokens()), (3, 1, 45));
        let since = store
            .spend_of_virtual_key(key.id, Some("2000-02-01T00:00:00.000Z".into()))
            .await
            .unwrap();
        assert_eq!(since.cost_usd.to_string(), "0.2");
        assert_eq!(
            (since.requests, since.input_tokens, since.output_tokens),
            (2, 20, 10)
        );
        let agent_spend = store.spend_of_agent(agent.id, None).await.unwrap();
        assert_eq!(agent_spend.cost_usd.to_string(), "5.100000000000000001");
        assert_eq!(agent_spend.requests, 3);
        assert_eq!(
            store.spend_of_virtual_key(999, None).await.unwrap(),
            Spend::default()
        );
    }

    #[tokio::test]
    async fn spend_queries_use_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("plan.db")).await.unwrap();
        for (sql, index, range, params) in [
            (
                crate::store::rollup::spend_sql(VIRTUAL_KEY),
                "usage_rollup_by_virtual_key",
                "hour>?",
                2,
            ),
            (
                crate::store::rollup::spend_sql(AGENT),
                "usage_rollup_by_agent",
                "hour>?",
                2,
            ),
            (
                crate::store::rollup::partial_hour_sql(VIRTUAL_KEY),
                "usage_events_by_virtual_key",
                "created_at>?",
                3,
            ),
            (
                crate::store::rollup::partial_hour_sql(AGENT),
                "usage_events_by_agent",
                "created_at>?",
                3,
            ),
        ] {
            let plan: Vec<String> = store
                .read(move |conn| {
                    conn.query_map(
                        &format!("EXPLAIN QUERY PLAN {sql}"),
                        &params![1, "2026-11-01T00:00:00.000Z", "2026-11-01T01:00:00.000Z"]
                            [..params],
                        |row| row.get(3),
                    )
                })
                .await
                .unwrap();
            let plan = plan.join("\n");
            assert!(plan.contains(&format!("USING INDEX {index} (")), "{plan}");
            assert!(
                plan.contains(range),
                "the window is a range of the index: {plan}"
            );
            assert!(!plan.contains("SCAN"), "{plan}");
        }
    }

    async fn agent_budgets_are_set_and_cleared(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let store = store(backend, dir.path()).await;
        let agent = store.create_agent("bot", None).await.unwrap();
        assert_eq!(
            (agent.budget_usd, agent.budget_tokens, agent.budget_period),
            (None, None, None)
        );
        let budget = AgentBudget {
            usd: Some("12.50".parse().unwrap()),
            tokens: Some(1_000_000),
            period: BudgetPeriod::Week,
        };
        let set = store
            .set_agent_budget("bot", Some(budget))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(set.budget_usd.unwrap().to_string(), "12.5");
        assert_eq!(set.budget_tokens, Some(1_000_000));
        assert_eq!(set.budget_period, Some(BudgetPeriod::Week));
        assert!(set.updated_at > agent.updated_at);
        assert_eq!(store.agent("bot").await.unwrap().unwrap(), set);
        let cleared = store.set_agent_budget("bot", None).await.unwrap().unwrap();
        assert_eq!(
            (
                cleared.budget_usd,
                cleared.budget_tokens,
                cleared.budget_period
            ),
            (None, None, None)
        );
        assert_eq!(store.set_agent_budget("nobody", None).await.unwrap(), None);
    }
}
