//! Usage and spend: totals per group, time series with latency
//! percentiles, the attempts of one request, and a CSV export.
//!
//! The reports read the usage rows of their time range through the
//! `created_at` index.

use super::auth::Admin;
use super::{AdminError, AdminResult, ErrorBody};
use crate::gateway::server::Shared;
use crate::service::Budgets;
use crate::store::{UsageFilter, UsagePoint, UsageRecord, parse_utc_timestamp, utc_timestamp};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use llmhost_registry::rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use utoipa::{IntoParams, ToSchema};

/// What rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum GroupBy {
    Agent,
    VirtualKey,
    Provider,
    Model,
}

/// The width of a series' buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Bucket {
    Hour,
    Day,
}

/// A time range: RFC 3339 UTC times, or how long ago (`24h`, `7d`,
/// `30m`). Default: the last 24 hours.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Range {
    /// Start (inclusive): `2026-12-01T00:00:00Z` or `24h` (ago).
    since: Option<String>,
    /// End (exclusive); default now.
    until: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TotalsQuery {
    /// `agent`, `virtual_key`, `provider` or `model`; default `provider`.
    group_by: Option<GroupBy>,
    /// Start (inclusive): `2026-12-01T00:00:00Z` or `24h` (ago).
    since: Option<String>,
    /// End (exclusive); default now.
    until: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SeriesQuery {
    /// `hour` or `day`; default `hour`.
    bucket: Option<Bucket>,
    /// `agent`, `virtual_key`, `provider` or `model`; default `provider`.
    group_by: Option<GroupBy>,
    /// Start (inclusive): `2026-12-01T00:00:00Z` or `24h` (ago).
    since: Option<String>,
    /// End (exclusive); default now.
    until: Option<String>,
}

/// `text` as a store timestamp: an RFC 3339 UTC time or a span ago.
fn time_of(text: &str, field: &str, now: SystemTime) -> AdminResult<String> {
    if let Some(time) = parse_utc_timestamp(text) {
        return Ok(time);
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let seconds = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if seconds > 0 && n <= 36_600 => Ok(utc_timestamp(
            now.checked_sub(Duration::from_secs(n * seconds))
                .unwrap_or(SystemTime::UNIX_EPOCH),
        )),
        _ => Err(AdminError::validation(
            field,
            format!(
                "`{text}` is neither an RFC 3339 UTC time (2026-12-01T00:00:00Z) nor a span \
                 ago (30m, 24h, 7d)"
            ),
        )),
    }
}

impl Range {
    fn resolve(&self) -> AdminResult<(String, String)> {
        resolve(&self.since, &self.until)
    }
}

fn resolve(since: &Option<String>, until: &Option<String>) -> AdminResult<(String, String)> {
    {
        let now = SystemTime::now();
        let since = match since {
            Some(text) => time_of(text, "since", now)?,
            None => utc_timestamp(now - Duration::from_secs(86_400)),
        };
        let until = match until {
            Some(text) => time_of(text, "until", now)?,
            // Rows written in this millisecond are in range.
            None => utc_timestamp(now + Duration::from_millis(1)),
        };
        if since >= until {
            return Err(AdminError::validation("since", "must be before until"));
        }
        Ok((since, until))
    }
}

fn group_of(point: &UsagePoint, by: GroupBy) -> String {
    let named = |name: &Option<String>| name.clone().unwrap_or_else(|| "(none)".to_owned());
    match by {
        GroupBy::Agent => named(&point.agent_name),
        GroupBy::VirtualKey => named(&point.virtual_key_name),
        GroupBy::Provider => point.provider.clone(),
        GroupBy::Model => format!("{}/{}", point.provider, point.model),
    }
}

/// Sums of a set of rows.
#[derive(Debug, Default)]
struct Sums {
    requests: u64,
    errors: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: Decimal,
    unpriced: u64,
    latencies: Vec<u64>,
}

impl Sums {
    fn add(&mut self, point: &UsagePoint) {
        self.requests += 1;
        self.errors += u64::from(!point.ok);
        self.input_tokens += point.input_tokens;
        self.output_tokens += point.output_tokens;
        match point.cost_usd {
            Some(cost) => self.cost_usd += cost,
            None => self.unpriced += u64::from(point.ok),
        }
        self.latencies.push(point.latency_ms);
    }

    /// The nearest-rank percentile `p` of the latencies.
    fn percentile(&mut self, p: f64) -> Option<u64> {
        if self.latencies.is_empty() {
            return None;
        }
        self.latencies.sort_unstable();
        let rank = (p / 100.0 * self.latencies.len() as f64).ceil() as usize;
        Some(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }
}

/// Totals of one group over the range.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TotalsRow {
    group: String,
    requests: u64,
    errors: u64,
    input_tokens: u64,
    output_tokens: u64,
    #[schema(value_type = String)]
    cost_usd: Decimal,
    /// Successful requests to models without a price.
    unpriced: u64,
    p50_ms: Option<u64>,
    p99_ms: Option<u64>,
    /// For agents and virtual keys with a USD budget: the budget and what
    /// was spent in its current window.
    #[schema(value_type = Option<String>)]
    budget_usd: Option<Decimal>,
    #[schema(value_type = Option<String>)]
    budget_spent_usd: Option<Decimal>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Totals {
    since: String,
    until: String,
    rows: Vec<TotalsRow>,
}

/// Totals per agent, virtual key, provider or model over a time range,
/// with spend against budgets.
#[utoipa::path(get, path = "/admin/v1/usage", tag = "usage", params(TotalsQuery),
    responses((status = 200, body = Totals), (status = 422, body = ErrorBody)))]
pub(super) async fn totals(
    _: Admin,
    State(shared): State<Arc<Shared>>,
    Query(query): Query<TotalsQuery>,
) -> AdminResult<Json<Totals>> {
    let (since, until) = resolve(&query.since, &query.until)?;
    let by = query.group_by.unwrap_or(GroupBy::Provider);
    let points = shared
        .service
        .store()
        .usage_points(since.clone(), until.clone())
        .await?;
    let mut groups: BTreeMap<String, Sums> = BTreeMap::new();
    for point in &points {
        groups.entry(group_of(point, by)).or_default().add(point);
    }
    let budgets = Budgets::new(shared.service.store().clone());
    let now = SystemTime::now();
    let mut rows = Vec::with_capacity(groups.len());
    for (group, mut sums) in groups {
        let budget = match by {
            GroupBy::Agent => match shared.service.store().agent(&group).await? {
                Some(agent) if agent.budget_usd.is_some() => {
                    let usage = budgets.of_agent(&agent, now).await?;
                    Some((usage.budget_usd, usage.spent.cost_usd))
                }
                _ => None,
            },
            GroupBy::VirtualKey => match &shared.virtual_keys {
                Some(keys) => match keys.get(&group).await {
                    Ok(key) if key.budget_usd.is_some() => {
                        let usage = budgets.of_virtual_key(&key, now).await?;
                        Some((usage.budget_usd, usage.spent.cost_usd))
                    }
                    _ => None,
                },
                None => None,
            },
            GroupBy::Provider | GroupBy::Model => None,
        };
        rows.push(TotalsRow {
            p50_ms: sums.percentile(50.0),
            p99_ms: sums.percentile(99.0),
            group,
            requests: sums.requests,
            errors: sums.errors,
            input_tokens: sums.input_tokens,
            output_tokens: sums.output_tokens,
            cost_usd: sums.cost_usd.normalize(),
            unpriced: sums.unpriced,
            budget_usd: budget.and_then(|b| b.0),
            budget_spent_usd: budget.map(|b| b.1.normalize()),
        });
    }
    Ok(Json(Totals { since, until, rows }))
}

/// One bucket of a series.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Point {
    /// The bucket's UTC start.
    start: String,
    requests: u64,
    errors: u64,
    /// errors ÷ requests.
    error_rate: f64,
    #[schema(value_type = String)]
    cost_usd: Decimal,
    input_tokens: u64,
    output_tokens: u64,
    p50_ms: Option<u64>,
    p99_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Series {
    group: String,
    /// Buckets with at least one request, oldest first.
    points: Vec<Point>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SeriesReport {
    bucket: Bucket,
    since: String,
    until: String,
    series: Vec<Series>,
}

/// The start of the bucket holding store timestamp `at`.
fn bucket_start(at: &str, bucket: Bucket) -> String {
    match bucket {
        Bucket::Hour => format!("{}:00:00Z", at.get(..13).unwrap_or(at)),
        Bucket::Day => format!("{}T00:00:00Z", at.get(..10).unwrap_or(at)),
    }
}

/// Requests, errors, spend, tokens and p50/p99 latency per hour or day,
/// per agent, virtual key, provider or model.
#[utoipa::path(get, path = "/admin/v1/usage/series", tag = "usage", params(SeriesQuery),
    responses((status = 200, body = SeriesReport), (status = 422, body = ErrorBody)))]
pub(super) async fn series(
    _: Admin,
    State(shared): State<Arc<Shared>>,
    Query(query): Query<SeriesQuery>,
) -> AdminResult<Json<SeriesReport>> {
    let (since, until) = resolve(&query.since, &query.until)?;
    let by = query.group_by.unwrap_or(GroupBy::Provider);
    let bucket = query.bucket.unwrap_or(Bucket::Hour);
    let points = shared
        .service
        .store()
        .usage_points(since.clone(), until.clone())
        .await?;
    let mut groups: BTreeMap<String, BTreeMap<String, Sums>> = BTreeMap::new();
    for point in &points {
        groups
            .entry(group_of(point, by))
            .or_default()
            .entry(bucket_start(&point.created_at, bucket))
            .or_default()
            .add(point);
    }
    let series = groups
        .into_iter()
        .map(|(group, buckets)| Series {
            group,
            points: buckets
                .into_iter()
                .map(|(start, mut sums)| Point {
                    p50_ms: sums.percentile(50.0),
                    p99_ms: sums.percentile(99.0),
                    start,
                    requests: sums.requests,
                    errors: sums.errors,
                    error_rate: sums.errors as f64 / sums.requests.max(1) as f64,
                    cost_usd: sums.cost_usd.normalize(),
                    input_tokens: sums.input_tokens,
                    output_tokens: sums.output_tokens,
                })
                .collect(),
        })
        .collect();
    Ok(Json(SeriesReport {
        bucket,
        since,
        until,
        series,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RequestUsage {
    request_id: String,
    /// Every attempt of the request, the one that answered last.
    events: Vec<UsageRecord>,
}

/// The usage rows of one request (its `x-request-id`): tokens, cost,
/// latency and time to first token of each attempt.
#[utoipa::path(get, path = "/admin/v1/usage/requests/{request_id}", tag = "usage",
    params(("request_id" = String, Path, description = "The request's x-request-id")),
    responses((status = 200, body = RequestUsage), (status = 404, body = ErrorBody)))]
pub(super) async fn request(
    _: Admin,
    State(shared): State<Arc<Shared>>,
    Path(request_id): Path<String>,
) -> AdminResult<Json<RequestUsage>> {
    let events = shared
        .service
        .store()
        .usage_records(UsageFilter {
            request_id: Some(request_id.clone()),
            ..UsageFilter::default()
        })
        .await?;
    if events.is_empty() {
        return Err(AdminError::not_found("usage of request", &request_id));
    }
    Ok(Json(RequestUsage { request_id, events }))
}

const CSV_COLUMNS: &[&str] = &[
    "id",
    "created_at",
    "request_id",
    "route",
    "agent",
    "virtual_key",
    "config_id",
    "provider",
    "model",
    "status",
    "error_kind",
    "attempt",
    "fallback",
    "streamed",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_hour_tokens",
    "reasoning_tokens",
    "estimated",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
];

fn csv_row(r: &UsageRecord) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        r.id.to_string(),
        r.created_at.clone(),
        opt(&r.request_id),
        opt(&r.route),
        opt(&r.agent_name),
        opt(&r.virtual_key_name),
        r.config_id.map(|id| id.to_string()).unwrap_or_default(),
        r.provider.clone(),
        r.model.clone(),
        r.status.clone(),
        opt(&r.error_kind),
        r.attempt.to_string(),
        r.fallback.to_string(),
        r.streamed.to_string(),
        r.input_tokens.to_string(),
        r.output_tokens.to_string(),
        r.cache_read_tokens.to_string(),
        r.cache_write_tokens.to_string(),
        r.cache_write_hour_tokens.to_string(),
        r.reasoning_tokens.to_string(),
        r.estimated.to_string(),
        r.cost_usd
            .map(|c| c.normalize().to_string())
            .unwrap_or_default(),
        r.latency_ms.to_string(),
        r.ttft_ms.map(|ms| ms.to_string()).unwrap_or_default(),
    ]
}

/// Every usage row of the range as CSV, with a header row.
#[utoipa::path(get, path = "/admin/v1/usage.csv", tag = "usage", params(Range),
    responses((status = 200, content_type = "text/csv", body = String),
        (status = 422, body = ErrorBody)))]
pub(super) async fn csv(
    _: Admin,
    State(shared): State<Arc<Shared>>,
    Query(range): Query<Range>,
) -> AdminResult<Response> {
    let (since, until) = range.resolve()?;
    let records = shared
        .service
        .store()
        .usage_records(UsageFilter {
            since: Some(since),
            until: Some(until),
            ..UsageFilter::default()
        })
        .await?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    let internal =
        |err: csv::Error| AdminError::from(crate::Error::Internal(format!("writing CSV: {err}")));
    writer.write_record(CSV_COLUMNS).map_err(internal)?;
    for record in &records {
        writer.write_record(csv_row(record)).map_err(internal)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|err| internal(err.into_error().into()))?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"llmhost-usage.csv\""),
    );
    Ok(response)
}
