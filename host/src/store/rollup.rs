//! The usage rollup: one row per (hour, virtual key, agent, provider,
//! model) with the sums of its usage rows, kept in the transaction that
//! inserts them, so that budget checks and usage reports read a few rows
//! per hour of their window instead of every raw event, and raw events
//! can be deleted after `[usage] retain_days` while the sums stay.
//!
//! Costs are decimals stored as text, summed exactly in Rust: each
//! bucket's row is locked by the upsert that adds the counters (a
//! PostgreSQL row lock; SQLite writes one at a time anyway), then its cost
//! is read and written back within that lock, so replicas writing at once
//! lose nothing.

use super::records::{UsageEvent, UsageOutcome, UsageSummary, decimal};
use super::sql::{Conn, Row, SqlResult, params};
use super::{Store, db_error};
use crate::error::Error;
use llmhost_registry::rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// A rollup row's key. 0 stands for "no virtual key" / "no agent".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Bucket {
    pub hour: String,
    pub virtual_key_id: i64,
    pub agent_id: i64,
    pub provider: String,
    pub model: String,
}

/// What rows add to a bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Sums {
    pub agent_name: Option<String>,
    pub virtual_key_name: Option<String>,
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: Decimal,
    pub unpriced: i64,
    pub estimated: i64,
}

/// The hour of a store timestamp (`2025-01-31T12:34:56.789Z` →
/// `2025-01-31T12:00:00.000Z`).
pub(super) fn hour_of(timestamp: &str) -> String {
    match timestamp.get(..13) {
        Some(prefix) => format!("{prefix}:00:00.000Z"),
        None => timestamp.to_owned(),
    }
}

/// The hour after the one `hour` (as [`hour_of`] gives) starts.
fn next_hour(hour: &str) -> Option<String> {
    let start = super::calendar::parse_utc_timestamp(hour)?;
    let time = timestamp_to_time(&start)?;
    Some(super::calendar::utc_timestamp(
        time + Duration::from_secs(3600),
    ))
}

fn timestamp_to_time(text: &str) -> Option<SystemTime> {
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`; days from the civil calendar.
    let year: i64 = text.get(0..4)?.parse().ok()?;
    let month: i64 = text.get(5..7)?.parse().ok()?;
    let day: i64 = text.get(8..10)?.parse().ok()?;
    let hour: u64 = text.get(11..13)?.parse().ok()?;
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days).ok()? * 86_400 + hour * 3600;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Adds `event`, stored at `created_at`, to `buckets`; `sign` -1 takes
/// it away.
pub(super) fn add_event(
    buckets: &mut BTreeMap<Bucket, Sums>,
    event: &UsageEvent,
    created_at: &str,
    sign: i64,
) {
    let ok = event.outcome == UsageOutcome::Ok;
    add(
        buckets,
        Bucket {
            hour: hour_of(created_at),
            virtual_key_id: event.virtual_key_id.unwrap_or(0),
            agent_id: event.agent_id.unwrap_or(0),
            provider: event.provider.clone(),
            model: event.model.clone(),
        },
        Sums {
            agent_name: event.agent_name.clone(),
            virtual_key_name: event.virtual_key_name.clone(),
            requests: sign,
            errors: sign * i64::from(!ok),
            input_tokens: sign * super::records::saturating_i64(event.input_tokens),
            output_tokens: sign * super::records::saturating_i64(event.output_tokens),
            cost_usd: event.cost_usd.unwrap_or_default() * Decimal::from(sign),
            unpriced: sign * i64::from(ok && event.cost_usd.is_none()),
            estimated: sign * i64::from(event.estimated),
        },
    );
}

fn add(buckets: &mut BTreeMap<Bucket, Sums>, bucket: Bucket, sums: Sums) {
    let entry = buckets.entry(bucket).or_default();
    if entry.agent_name.is_none() {
        entry.agent_name = sums.agent_name;
    }
    if entry.virtual_key_name.is_none() {
        entry.virtual_key_name = sums.virtual_key_name;
    }
    entry.requests += sums.requests;
    entry.errors += sums.errors;
    entry.input_tokens += sums.input_tokens;
    entry.output_tokens += sums.output_tokens;
    entry.cost_usd += sums.cost_usd;
    entry.unpriced += sums.unpriced;
    entry.estimated += sums.estimated;
}

const UPSERT: &str = "INSERT INTO usage_rollup (hour, virtual_key_id, agent_id, provider, model, \
     agent_name, virtual_key_name, requests, errors, input_tokens, output_tokens, unpriced, \
     estimated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
     ON CONFLICT (hour, virtual_key_id, agent_id, provider, model) DO UPDATE SET \
     requests = usage_rollup.requests + excluded.requests, \
     errors = usage_rollup.errors + excluded.errors, \
     input_tokens = usage_rollup.input_tokens + excluded.input_tokens, \
     output_tokens = usage_rollup.output_tokens + excluded.output_tokens, \
     unpriced = usage_rollup.unpriced + excluded.unpriced, \
     estimated = usage_rollup.estimated + excluded.estimated, \
     agent_name = COALESCE(usage_rollup.agent_name, excluded.agent_name), \
     virtual_key_name = COALESCE(usage_rollup.virtual_key_name, excluded.virtual_key_name) \
     RETURNING cost_usd";

const SET_COST: &str = "UPDATE usage_rollup SET cost_usd = ?6 WHERE hour = ?1 \
     AND virtual_key_id = ?2 AND agent_id = ?3 AND provider = ?4 AND model = ?5";

/// Adds `buckets` to the rollup, in key order (so that two writers lock
/// rows in one order and never deadlock).
pub(super) fn apply(conn: &mut Conn<'_>, buckets: &BTreeMap<Bucket, Sums>) -> SqlResult<()> {
    for (b, s) in buckets {
        let stored: String = conn.query_row(
            UPSERT,
            params![
                b.hour,
                b.virtual_key_id,
                b.agent_id,
                b.provider,
                b.model,
                s.agent_name,
                s.virtual_key_name,
                s.requests,
                s.errors,
                s.input_tokens,
                s.output_tokens,
                s.unpriced,
                s.estimated,
            ],
            |row| row.get(0),
        )?;
        if s.cost_usd.is_zero() {
            continue;
        }
        let cost = (decimal(&stored, "cost_usd")? + s.cost_usd)
            .normalize()
            .to_string();
        conn.execute(
            SET_COST,
            params![
                b.hour,
                b.virtual_key_id,
                b.agent_id,
                b.provider,
                b.model,
                cost
            ],
        )?;
    }
    Ok(())
}

/// The rollup of every usage row stored: what migration 11 starts from.
pub(super) fn backfill(conn: &mut Conn<'_>) -> SqlResult<()> {
    let rows = conn.query(
        "SELECT virtual_key_id, agent_id, agent_name, virtual_key_name, provider, model, \
         status, input_tokens, output_tokens, cost_usd, estimated, created_at FROM usage_events",
        params![],
    )?;
    let mut buckets = BTreeMap::new();
    for row in &rows {
        let ok = row.get::<_, String>("status")? == "ok";
        let cost: Option<String> = row.get("cost_usd")?;
        add(
            &mut buckets,
            Bucket {
                hour: hour_of(&row.get::<_, String>("created_at")?),
                virtual_key_id: row.get::<_, Option<i64>>("virtual_key_id")?.unwrap_or(0),
                agent_id: row.get::<_, Option<i64>>("agent_id")?.unwrap_or(0),
                provider: row.get("provider")?,
                model: row.get("model")?,
            },
            Sums {
                agent_name: row.get("agent_name")?,
                virtual_key_name: row.get("virtual_key_name")?,
                requests: 1,
                errors: i64::from(!ok),
                input_tokens: row.get("input_tokens")?,
                output_tokens: row.get("output_tokens")?,
                cost_usd: cost
                    .as_deref()
                    .map(|c| decimal(c, "cost_usd"))
                    .transpose()?
                    .unwrap_or_default(),
                unpriced: i64::from(ok && cost.is_none()),
                estimated: row.get("estimated")?,
            },
        );
    }
    apply(conn, &buckets)
}

/// The rollup rows of one key or agent (`column` = ?1) from hour ?2 on,
/// through the `(column, hour)` index.
pub(super) fn spend_sql(column: &str) -> String {
    format!(
        "SELECT cost_usd, requests, input_tokens, output_tokens, unpriced \
         FROM usage_rollup WHERE {column} = ?1 AND hour >= ?2"
    )
}

/// The raw rows of one key or agent in `[?2, ?3)`, through the
/// `(column, created_at)` index.
pub(super) fn partial_hour_sql(column: &str) -> String {
    format!(
        "SELECT COALESCE(cost_usd, '0'), 1, input_tokens, output_tokens, \
         CASE WHEN status = 'ok' AND cost_usd IS NULL THEN 1 ELSE 0 END \
         FROM usage_events WHERE {column} = ?1 AND created_at >= ?2 AND created_at < ?3"
    )
}

/// Spend of one key or agent (`column` = id) since `since`: whole hours
/// from the rollup, and the raw rows of a first, partial hour.
pub(super) fn spend(
    conn: &mut Conn<'_>,
    column: &'static str,
    id: i64,
    since: Option<&str>,
) -> SqlResult<super::virtual_keys::Spend> {
    let mut spend = super::virtual_keys::Spend::default();
    let mut add_row = |row: &Row| -> SqlResult<()> {
        let cost: String = row.get(0)?;
        spend.requests += row.get::<_, u64>(1)?;
        spend.input_tokens = spend.input_tokens.saturating_add(row.get(2)?);
        spend.output_tokens = spend.output_tokens.saturating_add(row.get(3)?);
        spend.unpriced += row.get::<_, u64>(4)?;
        spend.cost_usd += decimal(&cost, "cost_usd")?;
        Ok(())
    };
    let hours_from = match since {
        None => String::new(),
        Some(since) => {
            let hour = hour_of(since);
            if hour == since {
                hour
            } else {
                // The rest of the first hour, from the raw rows.
                let next = next_hour(&hour).unwrap_or_else(|| since.to_owned());
                let raw = conn.query(&partial_hour_sql(column), params![id, since, next])?;
                for row in &raw {
                    add_row(row)?;
                }
                next
            }
        }
    };
    let rows = conn.query(&spend_sql(column), params![id, hours_from])?;
    for row in &rows {
        add_row(row)?;
    }
    Ok(spend)
}

impl Store {
    /// Totals per agent, provider and model; only `agent`'s when given.
    /// Read from the rollup (so they include rows retention deleted);
    /// costs are summed exactly, as decimals.
    pub async fn usage_summary(&self, agent: Option<&str>) -> Result<Vec<UsageSummary>, Error> {
        let agent = agent.map(str::to_owned);
        self.read(move |conn| {
            let rows = conn.query(
                "SELECT agent_name, provider, model, requests, errors, input_tokens, \
                 output_tokens, cost_usd, unpriced, estimated FROM usage_rollup \
                 WHERE CAST(?1 AS TEXT) IS NULL OR agent_name = ?1",
                params![agent],
            )?;
            let mut totals: BTreeMap<(Option<String>, String, String), UsageSummary> =
                BTreeMap::new();
            for row in rows {
                let key: (Option<String>, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
                let entry = totals.entry(key.clone()).or_insert_with(|| UsageSummary {
                    agent_name: key.0,
                    provider: key.1,
                    model: key.2,
                    ..UsageSummary::default()
                });
                entry.attempts += row.get::<_, u64>(3)?;
                entry.errors += row.get::<_, u64>(4)?;
                entry.input_tokens += row.get::<_, u64>(5)?;
                entry.output_tokens += row.get::<_, u64>(6)?;
                entry.cost_usd += decimal(&row.get::<_, String>(7)?, "cost_usd")?;
                entry.unpriced += row.get::<_, u64>(8)?;
                entry.estimated += row.get::<_, u64>(9)?;
            }
            Ok(totals
                .into_values()
                .filter(|total| total.attempts > 0)
                .collect())
        })
        .await
    }

    /// Deletes the raw usage rows created before `before`; their sums
    /// stay in the rollup. Returns the rows deleted. `[usage]
    /// retain_days` runs it hourly in `llmhost serve`.
    pub async fn delete_usage_before(&self, before: SystemTime) -> Result<u64, Error> {
        let cutoff = super::calendar::utc_timestamp(before);
        let label = self.label();
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM usage_events WHERE created_at < ?1",
                params![cutoff],
            )
            .map_err(db_error(&label))
        })
        .await
    }

    /// Moves usage row `id` to `created_at`, its rollup sums with it: for
    /// tests of windows and for repairs (a clock that was wrong).
    #[doc(hidden)]
    pub async fn backdate_usage(&self, id: i64, created_at: &str) -> Result<(), Error> {
        let created_at = created_at.to_owned();
        let label = self.label();
        self.write(move |conn| {
            let rows = conn
                .query("SELECT * FROM usage_events WHERE id = ?1", params![id])
                .map_err(db_error(&label))?;
            let Some(row) = rows.first() else {
                return Err(Error::NotFound {
                    what: "usage row",
                    key: id.to_string(),
                });
            };
            let record = super::records::usage_record_from(row).map_err(db_error(&label))?;
            let event = super::records::event_of(&record);
            let mut buckets = BTreeMap::new();
            add_event(&mut buckets, &event, &record.created_at, -1);
            add_event(&mut buckets, &event, &created_at, 1);
            conn.execute(
                "UPDATE usage_events SET created_at = ?2 WHERE id = ?1",
                params![id, created_at],
            )
            .map_err(db_error(&label))?;
            apply(conn, &buckets).map_err(db_error(&label))
        })
        .await
    }
}

/// Deletes raw usage rows older than `retain_days` now and every hour
/// after, for as long as the runtime runs; failures are logged and tried
/// again the next hour.
pub fn spawn_usage_retention(store: Store, retain_days: u32) -> tokio::task::JoinHandle<()> {
    let keep = Duration::from_secs(u64::from(retain_days) * 86_400);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            let before = SystemTime::now()
                .checked_sub(keep)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            match store.delete_usage_before(before).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, retain_days, "old usage rows deleted"),
                Err(err) => tracing::warn!(error = %err, "usage retention failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_and_the_next_one() {
        assert_eq!(
            hour_of("2025-01-31T23:59:59.999Z"),
            "2025-01-31T23:00:00.000Z"
        );
        assert_eq!(
            next_hour("2025-01-31T23:00:00.000Z").as_deref(),
            Some("2025-02-01T00:00:00.000Z")
        );
        assert_eq!(
            next_hour("2024-02-28T23:00:00.000Z").as_deref(),
            Some("2024-02-29T00:00:00.000Z")
        );
        assert_eq!(
            timestamp_to_time("1970-01-01T01:00:00.000Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(3600))
        );
    }
}
