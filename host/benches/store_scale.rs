//! The per-request budget check and the usage write path on PostgreSQL,
//! with a thousand and with a million usage rows of the checked key,
//! side by side in one run. The rows are spread over the last 30 days
//! (one provider and model), so the hourly rollup has at most 720 rows
//! for the key either way; the budget window is those 30 days.
//!
//! - `budget_check`: `Store::spend_of_virtual_key` as the ledger loads a
//!   window's spend: whole hours from the rollup, plus the raw rows of
//!   the window's partial first hour.
//! - `raw_scan`: the same sums read from every raw row of the window
//!   through the `(virtual_key_id, created_at)` index, as the store did
//!   before the rollup: what the check would cost without it.
//! - `record_batch_100`: `Store::record_usage_many` of 100 events (one
//!   multi-row INSERT and the rollup upserts, in one transaction).
//!
//! The server is PostgreSQL 15 from `llmhost-test-services` (installed
//! on first use). Setup fills the database with `generate_series` and
//! the rollup with one grouped INSERT, then checks that the rollup's sums
//! equal the raw rows'.
//!
//! Run: `cargo bench -p llmhost --bench store_scale`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use llmhost::registry::rust_decimal::Decimal;
use llmhost::store::sql::Value;
use llmhost::store::{NewVirtualKeyRow, Store, UsageEvent, UsageOutcome};
use std::time::{Duration, SystemTime};

const WINDOW_DAYS: u64 = 30;

fn stamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let rest = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn event(key: i64) -> UsageEvent {
    UsageEvent {
        agent_id: None,
        agent_name: None,
        config_id: None,
        virtual_key_id: Some(key),
        virtual_key_name: Some("bench".into()),
        request_id: Some("bench".into()),
        route: Some("openai/gpt-4o-mini".into()),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        input_tokens: 100,
        output_tokens: 50,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cache_write_hour_tokens: 0,
        reasoning_tokens: 0,
        estimated: false,
        cost_usd: Some(Decimal::new(45, 6)),
        latency: Duration::from_millis(10),
        time_to_first_token: None,
        outcome: UsageOutcome::Ok,
        attempt: 1,
        fallback: false,
        streamed: false,
        served: Default::default(),
    }
}

/// A migrated database whose key has `rows` usage rows over the window;
/// returns the store, the key and the window's start.
async fn setup(rows: i64) -> (Store, i64, String) {
    let url = llmhost_test_services::postgres().database();
    let store = Store::open_migrated(url.as_str()).await.unwrap();
    let key = store
        .insert_virtual_key(NewVirtualKeyRow {
            name: "bench".into(),
            key_hash: "bench-hash".into(),
            hash_key_id: "k00000000".into(),
            key_hint: "lhk-…".into(),
            agent_name: None,
            models: None,
            budget: None,
            rpm: None,
            tpm: None,
            expires_at: None,
            cache_ttl_secs: None,
            cache_shared: false,
        })
        .await
        .unwrap()
        .id;
    let now = SystemTime::now();
    let start = now - Duration::from_secs(WINDOW_DAYS * 86_400);
    // The window starts inside an hour, as a rolling window would: the
    // check reads that hour's raw rows too.
    let since = stamp(start);
    let step = (WINDOW_DAYS * 86_400) as f64 / rows as f64;
    store
        .execute_sql(
            "INSERT INTO usage_events (virtual_key_id, virtual_key_name, route, provider, \
             model, input_tokens, output_tokens, cost_usd, latency_ms, status, created_at) \
             SELECT ?1, 'bench', 'openai/gpt-4o-mini', 'openai', 'gpt-4o-mini', 100, 50, \
             '0.000045', 10, 'ok', to_char(CAST(CAST(?2 AS TEXT) AS timestamp) \
             + make_interval(secs => i * CAST(?3 AS DOUBLE PRECISION)), 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
             FROM generate_series(0, ?4 - 1) AS i",
            vec![
                key.into(),
                since.clone().into(),
                Value::Real(step),
                rows.into(),
            ],
        )
        .await
        .unwrap();
    store
        .execute_sql(
            "INSERT INTO usage_rollup (hour, virtual_key_id, agent_id, provider, model, \
             virtual_key_name, requests, errors, input_tokens, output_tokens, cost_usd, \
             unpriced, estimated) \
             SELECT substr(created_at, 1, 13) || ':00:00.000Z', virtual_key_id, 0, provider, \
             model, 'bench', count(*), 0, CAST(sum(input_tokens) AS BIGINT), \
             CAST(sum(output_tokens) AS BIGINT), \
             CAST(trim_scale(sum(CAST(cost_usd AS numeric))) AS TEXT), 0, 0 \
             FROM usage_events GROUP BY 1, 2, 4, 5",
            vec![],
        )
        .await
        .unwrap();
    store.execute_sql("ANALYZE", vec![]).await.unwrap();
    let spend = store
        .spend_of_virtual_key(key, Some(since.clone()))
        .await
        .unwrap();
    let raw = raw_scan(&store, key, &since).await;
    assert_eq!(spend.cost_usd, raw, "the rollup agrees with the rows");
    assert_eq!(spend.requests, rows as u64);
    (store, key, since)
}

/// The window's spend summed from every raw row.
async fn raw_scan(store: &Store, key: i64, since: &str) -> Decimal {
    let rows = store
        .query_sql(
            "SELECT cost_usd, input_tokens, output_tokens, status FROM usage_events \
             WHERE virtual_key_id = ?1 AND created_at >= ?2",
            vec![key.into(), since.into()],
        )
        .await
        .unwrap();
    rows.iter()
        .filter_map(|r| r.get::<_, Option<String>>(0).unwrap())
        .map(|c| c.parse::<Decimal>().unwrap())
        .sum()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("postgres_usage");
    group.sample_size(20);
    for rows in [1_000_i64, 1_000_000] {
        let (store, key, since) = rt.block_on(setup(rows));
        group.bench_with_input(BenchmarkId::new("budget_check", rows), &rows, |b, _| {
            b.to_async(&rt).iter(|| async {
                store
                    .spend_of_virtual_key(key, Some(since.clone()))
                    .await
                    .unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("raw_scan", rows), &rows, |b, _| {
            b.to_async(&rt)
                .iter(|| async { raw_scan(&store, key, &since).await })
        });
        let batch: Vec<UsageEvent> = (0..100).map(|_| event(key)).collect();
        group.bench_with_input(BenchmarkId::new("record_batch_100", rows), &rows, |b, _| {
            b.to_async(&rt)
                .iter(|| async { store.record_usage_many(batch.clone()).await.unwrap() })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
