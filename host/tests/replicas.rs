//! Three `llmhost serve` replicas on one database and one Redis, in front
//! of the vendor simulator, with concurrent clients spread across them:
//! budgets and rate limits hold across the replicas (not per replica), a
//! revocation through one is refused by all at once, a replica killed
//! mid-stream loses no one else's request and no stored usage row, and a
//! Redis outage fails closed with clear errors, then recovers by itself.
//!
//! The database is a parameter of [`Cluster::start`]: every scenario runs
//! on one SQLite file shared by the three processes (WAL mode and a busy
//! timeout make that work) and on one PostgreSQL database.
//!
//! The tests start several processes each, so they run one at a time.

mod common;

use common::gateway::{Gateway, MASTER_KEY, Setup};
use futures::StreamExt;
use llmhost::registry::rust_decimal::Decimal;
use llmhost::registry::rust_decimal::prelude::ToPrimitive;
use llmhost_simulator::Simulator;
use llmhost_test_services::Service;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const REPLICAS: usize = 3;

/// One test at a time: each runs three gateways on a two-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The replicas, their Redis and their database.
struct Cluster {
    sim: Simulator,
    redis: Service,
    database: String,
    _dir: tempfile::TempDir,
    replicas: Vec<Gateway>,
    client: reqwest::Client,
    /// `llmhost.toml` of every gateway, if any.
    settings: Option<String>,
}

/// One usage row, as the admin API's CSV export gives it.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    request_id: String,
    virtual_key: String,
    status: String,
    cost_usd: Option<Decimal>,
}

impl Cluster {
    /// `modes[i]` is replica i's `on_unavailable`; `database` is a SQLite
    /// file (default: a new one) or a database URL.
    async fn start(database: Option<String>, modes: &[&str]) -> Self {
        Self::start_with(database, modes, None).await
    }

    /// [`Cluster::start`] with `settings` as every gateway's `llmhost.toml`.
    async fn start_with(database: Option<String>, modes: &[&str], settings: Option<&str>) -> Self {
        Self::start_on(llmhost_test_services::redis(), database, modes, settings).await
    }

    /// [`Cluster::start_with`] on `redis`; a TLS one's CA file is given to
    /// every gateway (`LLMHOST_REDIS_CA_FILE`).
    async fn start_on(
        redis: Service,
        database: Option<String>,
        modes: &[&str],
        settings: Option<&str>,
    ) -> Self {
        let sim = Simulator::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let database =
            database.unwrap_or_else(|| dir.path().join("shared.db").display().to_string());
        let mut cluster = Self {
            sim,
            redis,
            database,
            _dir: dir,
            replicas: Vec::new(),
            client: reqwest::Client::new(),
            settings: settings.map(str::to_owned),
        };
        // Migrated once, before the replicas start (which, on PostgreSQL,
        // refuse to migrate it themselves).
        cluster.setup("closed").cli(&["migrate", "--json"]).await;
        let starts = modes.iter().map(|mode| cluster.setup(mode).start());
        cluster.replicas = futures::future::join_all(starts).await;
        cluster
    }

    /// A gateway's set-up on the shared database and Redis.
    fn setup(&self, on_unavailable: &str) -> Setup {
        let setup = Setup::new(&self.sim)
            .database(&self.database)
            .env("LLMHOST_REDIS_URL", self.redis.url())
            .env("LLMHOST_SHARED_ON_UNAVAILABLE", on_unavailable);
        let setup = match self.redis.ca_file() {
            Some(ca) => setup.env("LLMHOST_REDIS_CA_FILE", &ca.display().to_string()),
            None => setup,
        };
        match &self.settings {
            Some(toml) => setup.settings(toml),
            None => setup,
        }
    }

    /// Creates a virtual key with `flags`; its id and secret.
    async fn key(&self, name: &str, flags: &[&str]) -> (i64, String) {
        let mut args = vec!["virtual-keys", "create", name, "--json"];
        args.extend(flags);
        let created = self.setup("closed").cli(&args).await;
        (
            created["id"].as_i64().unwrap(),
            created["key"].as_str().unwrap().to_owned(),
        )
    }

    fn url(&self, replica: usize) -> String {
        self.replicas[replica].url()
    }

    /// One chat completion at `replica` with `key`: status, headers, body.
    async fn chat(
        &self,
        replica: usize,
        key: &str,
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self
            .client
            .post(format!("{}/v1/chat/completions", self.url(replica)))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, body)
    }

    /// Every usage row, read through `replica`'s admin API.
    async fn rows(&self, replica: usize) -> Vec<Row> {
        let text = self
            .client
            .get(format!("{}/admin/v1/usage.csv", self.url(replica)))
            .bearer_auth(MASTER_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader.headers().unwrap().clone();
        let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let (id, request, key, status, cost) = (
            column("id"),
            column("request_id"),
            column("virtual_key"),
            column("status"),
            column("cost_usd"),
        );
        reader
            .records()
            .map(|record| {
                let record = record.unwrap();
                Row {
                    id: record[id].parse().unwrap(),
                    request_id: record[request].to_owned(),
                    virtual_key: record[key].to_owned(),
                    status: record[status].to_owned(),
                    cost_usd: Some(&record[cost])
                        .filter(|c| !c.is_empty())
                        .map(|c| c.parse().unwrap()),
                }
            })
            .collect()
    }

    /// The rows once `done(rows)` holds (they are written in batches).
    async fn rows_until(
        &self,
        replica: usize,
        what: &str,
        done: impl Fn(&[Row]) -> bool,
    ) -> Vec<Row> {
        let started = Instant::now();
        loop {
            let rows = self.rows(replica).await;
            if done(&rows) {
                return rows;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: not within 30s: {} rows",
                rows.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn redis_conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

fn hello(max_tokens: u32) -> Value {
    json!({
        "model": "openai/gpt-4o-mini",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "hello"}],
    })
}

/// Waits until `gateway` has logged `line` (its stderr is read by a
/// thread, a moment behind).
async fn logged(gateway: &Gateway, line: &str) {
    let started = Instant::now();
    while !gateway.log().contains(line) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not logged: {line}\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn request_id(headers: &reqwest::header::HeaderMap) -> String {
    headers["x-request-id"].to_str().unwrap().to_owned()
}

async fn a_budget_holds_across_three_replicas(database: Option<String>) {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(database, &["closed"; REPLICAS]).await;
    // What one answer costs: a probe with the master key, from its row.
    let (status, headers, _) = cluster.chat(0, MASTER_KEY, &hello(12)).await;
    assert_eq!(status, 200);
    let probe = request_id(&headers);
    let rows = cluster
        .rows_until(0, "the probe's row", |rows| {
            rows.iter().any(|r| r.request_id == probe)
        })
        .await;
    let one = rows
        .iter()
        .find(|r| r.request_id == probe)
        .unwrap()
        .cost_usd
        .unwrap();
    let budget = one * Decimal::from(20);
    let (key_id, secret) = cluster
        .key(
            "budgeted",
            &[
                "--budget-usd",
                &budget.to_string(),
                "--budget-period",
                "month",
            ],
        )
        .await;

    // 200 requests at once, spread over the replicas.
    let body = hello(12);
    let calls = (0..200).map(|i| {
        let (cluster, secret, body) = (&cluster, &secret, &body);
        async move { cluster.chat(i % REPLICAS, secret, body).await }
    });
    let answers = futures::future::join_all(calls).await;
    let ok = answers.iter().filter(|(status, ..)| *status == 200).count();
    for (status, headers, body) in answers.iter().filter(|(status, ..)| *status != 200) {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
        assert_eq!(headers["x-should-retry"], "false");
    }
    eprintln!("{ok} of 200 answered for a budget of 20");
    // Each reserves its worst case (its max_tokens all used), so no more
    // than the budget covers succeed: at most 20 (fewer if the worst case
    // is above the real cost).
    assert!((1..=20).contains(&ok), "{ok} answered for a budget of 20");

    let rows = cluster
        .rows_until(1, "the key's rows", |rows| {
            rows.iter().filter(|r| r.virtual_key == "budgeted").count() >= ok
        })
        .await;
    let keyed: Vec<&Row> = rows
        .iter()
        .filter(|r| r.virtual_key == "budgeted")
        .collect();
    assert_eq!(keyed.len(), ok, "one row per answer: {keyed:?}");
    let spent: Decimal = keyed.iter().filter_map(|r| r.cost_usd).sum();
    assert!(spent <= budget, "spent {spent} of {budget}");
    // The spend the budget report gives is the sum of the rows.
    let report = cluster
        .setup("closed")
        .cli(&["usage", "--virtual-key", "budgeted", "--json"])
        .await;
    let reported: Decimal = report["budget"]["spent_usd"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(reported, spent, "{report}");
    // And so is the spend the replicas share in Redis (each row rounded
    // up to the micro-dollar), with nothing left reserved.
    let window = report["budget"]["window_start"]
        .as_str()
        .unwrap()
        .to_owned();
    let hash = format!("llmhost:budget:vk:{key_id}:{window}");
    let expected: i64 = keyed
        .iter()
        .filter_map(|r| r.cost_usd)
        .map(|c| (c * Decimal::from(1_000_000)).ceil().to_i64().unwrap())
        .sum();
    let mut conn = cluster.redis_conn().await;
    let started = Instant::now();
    loop {
        let (usd, reserved): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(&hash)
            .arg("usd")
            .arg("reserved_usd")
            .query_async(&mut conn)
            .await
            .unwrap();
        if usd == Some(expected) && reserved == Some(0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "Redis holds {usd:?} spent and {reserved:?} reserved, the rows {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_rate_limit_holds_globally_not_per_replica(database: Option<String>) {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(database, &["closed"; REPLICAS]).await;
    let (_, secret) = cluster.key("limited", &["--rpm", "60"]).await;
    let body = hello(5);
    let started = Instant::now();
    let calls = (0..200).map(|i| {
        let (cluster, secret, body) = (&cluster, &secret, &body);
        async move { cluster.chat(i % REPLICAS, secret, body).await }
    });
    let answers = futures::future::join_all(calls).await;
    let elapsed = started.elapsed().as_secs_f64();
    let ok = answers.iter().filter(|(status, ..)| *status == 200).count();
    for (status, headers, body) in answers.iter().filter(|(status, ..)| *status != 200) {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
        assert!(headers.contains_key("retry-after"));
    }
    eprintln!("{ok} of 200 answered in {elapsed:.1}s at 60 a minute");
    // A burst of 60, then one a second while they run (timing: the
    // margin is the run's own length); never 3 × 60.
    assert!(ok >= 60, "{ok}");
    assert!(
        ok as f64 <= 60.0 + elapsed.ceil() + 1.0,
        "{ok} answered in {elapsed:.1}s"
    );
}

async fn a_key_revoked_through_one_replica_is_refused_by_all_within_a_second(
    database: Option<String>,
) {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(database, &["closed"; REPLICAS]).await;
    let (_, secret) = cluster.key("leaving", &[]).await;
    // Every replica has the key in its cache.
    for replica in 0..REPLICAS {
        let (status, _, body) = cluster.chat(replica, &secret, &hello(5)).await;
        assert_eq!(status, 200, "{body}");
    }
    let revoked = cluster
        .client
        .delete(format!("{}/admin/v1/virtual-keys/leaving", cluster.url(1)))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let at = Instant::now();
    // The first call to each after the revocation is refused, though
    // each had the key in its cache a moment ago (a cache that, with
    // shared state, is trusted for ten seconds).
    let mut refused = BTreeMap::new();
    for replica in 0..REPLICAS {
        let (status, _, body) = cluster.chat(replica, &secret, &hello(5)).await;
        assert_eq!(
            status, 401,
            "replica {replica} still accepts the key: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid API key")
        );
        refused.insert(replica, at.elapsed());
    }
    assert!(at.elapsed() < Duration::from_secs(1), "{refused:?}");
    eprintln!("refused by every replica after {refused:?}");
}

async fn a_replica_killed_mid_stream_loses_no_other_request_and_no_stored_row(
    database: Option<String>,
) {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(database, &["closed"; REPLICAS]).await;
    // Rows the doomed replica wrote before the kill.
    let mut before = BTreeSet::new();
    for _ in 0..3 {
        let (status, headers, _) = cluster.chat(2, MASTER_KEY, &hello(5)).await;
        assert_eq!(status, 200);
        before.insert(request_id(&headers));
    }
    let stored = cluster
        .rows_until(0, "the doomed replica's rows", |rows| {
            before
                .iter()
                .all(|id| rows.iter().any(|r| &r.request_id == id))
        })
        .await;
    let stored: BTreeMap<i64, String> = stored.into_iter().map(|r| (r.id, r.request_id)).collect();

    // Streams that take a few seconds, on every replica.
    cluster.sim.set_stream_delay(Duration::from_millis(150));
    let body = json!({
        "model": "openai/gpt-4o-mini",
        "max_tokens": 40,
        "stream": true,
        "messages": [{"role": "user", "content": "tell me a longer story about three replicas ".repeat(3)}],
    });
    let streams = (0..18).map(|i| {
        let url = format!("{}/v1/chat/completions", cluster.url(i % REPLICAS));
        let (client, body) = (cluster.client.clone(), body.clone());
        tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(MASTER_KEY)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await;
            let response = match response {
                Ok(response) => response,
                Err(err) => return (i % REPLICAS, Err(err.to_string()), String::new()),
            };
            let id = response
                .headers()
                .get("x-request-id")
                .map(|v| v.to_str().unwrap().to_owned());
            let mut text = String::new();
            let mut chunks = response.bytes_stream();
            while let Some(chunk) = chunks.next().await {
                match chunk {
                    Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
                    Err(err) => return (i % REPLICAS, Err(err.to_string()), text),
                }
            }
            (i % REPLICAS, Ok(id.unwrap_or_default()), text)
        })
    });
    let streams: Vec<_> = streams.collect();
    // Mid-stream: the first words are out.
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.replicas[2].kill().await;

    let mut completed = Vec::new();
    for stream in streams {
        let (replica, outcome, text) = stream.await.unwrap();
        if replica == 2 {
            continue;
        }
        let id =
            outcome.unwrap_or_else(|err| panic!("a stream on replica {replica} failed: {err}"));
        assert!(
            text.contains("data: [DONE]"),
            "an unfinished stream: {text}"
        );
        completed.push(id);
    }
    assert_eq!(completed.len(), 12);

    // Restarted on the same database: every row stored before the kill
    // is there, and so is one for every request the others completed.
    let restarted = cluster.setup("closed").start().await;
    cluster.replicas[2] = restarted;
    let rows = cluster
        .rows_until(2, "the completed streams' rows", |rows| {
            completed
                .iter()
                .all(|id| rows.iter().any(|r| &r.request_id == id))
        })
        .await;
    for (id, request) in &stored {
        assert!(
            rows.iter().any(|r| r.id == *id && &r.request_id == request),
            "row {id} of {request} is missing after the kill"
        );
    }
    for id in &completed {
        let row = rows.iter().find(|r| &r.request_id == id).unwrap();
        assert_eq!(row.status, "ok", "{row:?}");
    }
    // The restarted replica serves.
    let (status, _, body) = cluster.chat(2, MASTER_KEY, &hello(5)).await;
    assert_eq!(status, 200, "{body}");
}

async fn redis_stopped_mid_run_fails_closed_with_clear_errors_and_recovers(
    database: Option<String>,
) {
    let _serial = SERIAL.lock().await;
    // Replicas 0 and 1 fail closed (the default); replica 2 is set to
    // fail open.
    let mut cluster = Cluster::start(database, &["closed", "closed", "open"]).await;
    let (_, secret) = cluster
        .key(
            "guarded",
            &[
                "--budget-usd",
                "5",
                "--budget-period",
                "day",
                "--rpm",
                "1000",
            ],
        )
        .await;
    let (_, plain) = cluster.key("plain", &[]).await;
    let mut answered = Vec::new();
    for replica in 0..REPLICAS {
        for key in [&secret, &plain] {
            let (status, headers, body) = cluster.chat(replica, key, &hello(5)).await;
            assert_eq!(status, 200, "{body}");
            answered.push(request_id(&headers));
        }
    }

    cluster.redis.stop();
    for replica in 0..2 {
        let (status, headers, body) = cluster.chat(replica, &secret, &hello(5)).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "shared_state_unavailable", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("the shared state (Redis at redis://127.0.0.1:"),
            "{message}"
        );
        assert_eq!(headers["retry-after"], "1");
    }
    // Fail open: served under the replica's own limits.
    let (status, headers, body) = cluster.chat(2, &secret, &hello(5)).await;
    assert_eq!(status, 200, "{body}");
    answered.push(request_id(&headers));
    // Calls under no budget or limit need no shared state.
    let (status, headers, body) = cluster.chat(0, MASTER_KEY, &hello(5)).await;
    assert_eq!(status, 200, "{body}");
    answered.push(request_id(&headers));
    // Nor do virtual keys without them: they are checked against the
    // database, so a revocation made meanwhile still holds at once.
    let (status, headers, body) = cluster.chat(0, &plain, &hello(5)).await;
    assert_eq!(status, 200, "{body}");
    answered.push(request_id(&headers));
    let revoked = cluster
        .setup("closed")
        .run(&["virtual-keys", "revoke", "plain"])
        .await;
    assert!(revoked.status.success());
    for replica in 0..REPLICAS {
        let (status, _, body) = cluster.chat(replica, &plain, &hello(5)).await;
        assert_eq!(status, 401, "replica {replica}: {body}");
    }
    let open_ready = cluster
        .client
        .get(format!("{}/readyz", cluster.url(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        open_ready.status(),
        200,
        "a replica that fails open is ready"
    );
    // Readiness says so, and so do the metrics and the log.
    let ready = cluster
        .client
        .get(format!("{}/readyz", cluster.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let metrics = cluster
        .client
        .get(format!("{}/metrics", cluster.url(0)))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("llmhost_shared_state_up 0"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("llmhost_shared_state_unavailable_total{") && !l.ends_with(" 0")),
        "{metrics}"
    );
    logged(&cluster.replicas[0], "shared state: Redis is unavailable").await;

    cluster.redis.resume();
    // Recovered without a restart (timing: the reconnection is given
    // twenty seconds; it takes well under one).
    for replica in 0..REPLICAS {
        let started = Instant::now();
        loop {
            let (status, headers, body) = cluster.chat(replica, &secret, &hello(5)).await;
            if status == 200 {
                answered.push(request_id(&headers));
                break;
            }
            assert_eq!(status, 503, "{body}");
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "replica {replica} never recovered"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let ready = cluster
        .client
        .get(format!("{}/readyz", cluster.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    logged(&cluster.replicas[0], "shared state: Redis answers again").await;
    // No usage row was lost: one for every answer.
    cluster
        .rows_until(1, "a row for every answer", |rows| {
            answered
                .iter()
                .all(|id| rows.iter().any(|r| &r.request_id == id))
        })
        .await;
}

async fn a_redis_password_is_used_but_never_shown(database: Option<String>) {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(database, &[]).await;
    const PASSWORD: &str = "s3cret-redis-pass";
    let mut conn = cluster.redis_conn().await;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(PASSWORD)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", cluster.redis.port());
    let (_, secret) = cluster
        .key("guarded", &["--budget-usd", "5", "--rpm", "100"])
        .await;
    let mut redis = cluster.redis;
    let gateway = Setup::new(&cluster.sim)
        .database(&cluster.database)
        .env("LLMHOST_REDIS_URL", &url)
        .start()
        .await;
    let client = reqwest::Client::new();
    let chat = || async {
        let response = client
            .post(format!("{}/v1/chat/completions", gateway.url()))
            .bearer_auth(&secret)
            .header("content-type", "application/json")
            .body(hello(5).to_string())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    // It authenticates with the password.
    let (status, body) = chat().await;
    assert_eq!(status, 200, "{body}");
    redis.stop();
    let (status, body) = chat().await;
    assert_eq!(status, 503, "{body}");
    let shown = format!("redis://:***@127.0.0.1:{}", redis.port());
    assert!(body.contains(&shown), "{body}");
    assert!(!body.contains(PASSWORD), "{body}");
    logged(&gateway, "shared state: Redis is unavailable").await;
    assert!(!gateway.log().contains(PASSWORD), "{}", gateway.log());
    // The CLI's revocation signal names it the same way.
    let output = Setup::new(&cluster.sim)
        .database(&cluster.database)
        .env("LLMHOST_REDIS_URL", &url)
        .run(&["virtual-keys", "revoke", "guarded"])
        .await;
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&shown), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

async fn a_circuit_opened_by_one_replica_is_skipped_by_all(database: Option<String>) {
    let _serial = SERIAL.lock().await;
    let settings = "[breaker]\nthreshold = 2\ncooldown_secs = 60\n[retry]\nmax_attempts = 1\n";
    let cluster = Cluster::start_with(database, &["closed"; REPLICAS], Some(settings)).await;
    for _ in 0..2 {
        cluster.sim.enqueue(
            llmhost_simulator::Vendor::OpenAi,
            llmhost_simulator::Reply::openai_error(500, "server_error", None, "boom"),
        );
    }
    // Two failures in a row on replica 0 open its circuit.
    for _ in 0..2 {
        let (status, _, body) = cluster.chat(0, MASTER_KEY, &hello(5)).await;
        assert!(status >= 500, "{body}");
    }
    let (status, _, body) = cluster.chat(0, MASTER_KEY, &hello(5)).await;
    assert_eq!(status, 503, "{body}");
    // The others see it within a second (timing: they read the open
    // circuits four times a second), and then send nothing to the vendor.
    let at = Instant::now();
    for replica in 1..REPLICAS {
        loop {
            let (status, _, body) = cluster.chat(replica, MASTER_KEY, &hello(5)).await;
            if status == 503 {
                let message = body["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains("skipped after repeated failures"),
                    "{message}"
                );
                break;
            }
            assert_eq!(status, 200, "{body}");
            assert!(
                at.elapsed() < Duration::from_secs(1),
                "replica {replica} still calls the vendor"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let sent = cluster.sim.requests().len();
    for replica in 0..REPLICAS {
        let (status, _, body) = cluster.chat(replica, MASTER_KEY, &hello(5)).await;
        assert_eq!(status, 503, "{body}");
    }
    assert_eq!(
        cluster.sim.requests().len(),
        sent,
        "a skipped call reached the vendor"
    );
}

async fn a_console_session_signed_in_on_one_replica_holds_on_all(database: Option<String>) {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(database, &["closed"; REPLICAS]).await;
    let signed_in = cluster
        .client
        .post(format!("{}/ui/api/session", cluster.url(0)))
        .header("content-type", "application/json")
        .body(json!({"token": MASTER_KEY}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = signed_in.json_value().await["csrf_token"].clone();
    let session = |replica: usize| {
        let request = cluster
            .client
            .get(format!("{}/ui/api/session", cluster.url(replica)))
            .header("cookie", &cookie);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json_value().await)
        }
    };
    for replica in 0..REPLICAS {
        let (status, body) = session(replica).await;
        assert_eq!(status, 200, "replica {replica}: {body}");
        assert_eq!(body["admin"], "master");
        assert_eq!(body["csrf_token"], csrf);
    }
    // The admin API takes the session on another replica too.
    let keys = cluster
        .client
        .get(format!("{}/admin/v1/virtual-keys", cluster.url(2)))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(keys.status(), 200);
    // Signed out through one, it has ended on all.
    let out = cluster
        .client
        .delete(format!("{}/ui/api/session", cluster.url(1)))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    for replica in 0..REPLICAS {
        let (status, body) = session(replica).await;
        assert_eq!(status, 401, "replica {replica}: {body}");
    }
}

/// The body of a response as JSON (`Null` when it is not).
trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap_or(Value::Null)
    }
}

async fn an_answer_cached_through_one_replica_serves_the_others(database: Option<String>) {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(database, &["closed"; REPLICAS]).await;
    let (_, secret) = cluster.key("cached", &["--cache-ttl", "10m"]).await;
    let body = json!({
        "model": "openai/gpt-4o-mini",
        "temperature": 0,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "cache me across replicas"}],
    });
    let (status, headers, first) = cluster.chat(0, &secret, &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(headers["x-llmhost-cache"], "miss");
    // Stored off the request path: the other replicas see it soon.
    let sent = cluster.sim.requests().len();
    for replica in 1..REPLICAS {
        let started = Instant::now();
        loop {
            let (status, headers, answer) = cluster.chat(replica, &secret, &body).await;
            assert_eq!(status, 200, "{answer}");
            if headers["x-llmhost-cache"] == "hit" {
                assert_eq!(
                    answer["choices"][0]["message"]["content"],
                    first["choices"][0]["message"]["content"]
                );
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "replica {replica} never hit"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Timing: the first try on each replica normally hits already; a miss
    // on a slow machine adds one call.
    assert!(cluster.sim.requests().len() < sent + REPLICAS);

    // A stream is kept whole and replayed by another replica.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let stream = |replica: usize| {
        let request = cluster
            .client
            .post(format!("{}/v1/chat/completions", cluster.url(replica)))
            .bearer_auth(&secret)
            .header("content-type", "application/json")
            .body(streamed.to_string());
        async move {
            let response = request.send().await.unwrap();
            let cache = response.headers()["x-llmhost-cache"]
                .to_str()
                .unwrap()
                .to_owned();
            (cache, response.text().await.unwrap())
        }
    };
    let (cache, text) = stream(0).await;
    assert_eq!(cache, "miss");
    assert!(text.contains("data: [DONE]"));
    let started = Instant::now();
    loop {
        let (cache, replayed) = stream(2).await;
        if cache == "hit" {
            assert!(replayed.contains("data: [DONE]"), "{replayed}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never replayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replicas on a TLS Redis (`rediss://`, its CA in `LLMHOST_REDIS_CA_FILE`)
/// keep a virtual key's rate limit together; a gateway that does not trust
/// the certificate fails closed and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_tls_redis_share_a_rate_limit_and_an_untrusted_certificate_fails_closed() {
    let _serial = SERIAL.lock().await;
    let redis = llmhost_test_services::redis_tls();
    let cluster = Cluster::start_on(redis, None, &["closed"; 2], None).await;
    assert!(cluster.redis.url().starts_with("rediss://127.0.0.1:"));
    let (_, secret) = cluster.key("limited", &["--rpm", "12"]).await;
    let started = Instant::now();
    let calls = (0..40).map(|i| {
        let (cluster, secret) = (&cluster, &secret);
        async move { cluster.chat(i % 2, secret, &hello(5)).await }
    });
    let answers = futures::future::join_all(calls).await;
    let elapsed = started.elapsed().as_secs_f64();
    let ok = answers.iter().filter(|(status, ..)| *status == 200).count();
    for (status, _, body) in answers.iter().filter(|(status, ..)| *status != 200) {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    }
    // A burst of 12, then one each 5 s while they run (timing: the margin
    // is the run's own length); never 2 × 12.
    assert!(ok >= 12, "{ok}");
    assert!(
        ok as f64 <= 12.0 + (elapsed / 5.0).ceil() + 1.0,
        "{ok} answered in {elapsed:.1}s"
    );

    // Without the CA file the certificate is not trusted: fail closed.
    let gateway = Setup::new(&cluster.sim)
        .database(&cluster.database)
        .env("LLMHOST_REDIS_URL", cluster.redis.url())
        .start()
        .await;
    let response = cluster
        .client
        .post(format!("{}/v1/chat/completions", gateway.url()))
        .bearer_auth(&secret)
        .header("content-type", "application/json")
        .body(hello(5).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "shared_state_unavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("TLS certificate is not trusted (UnknownIssuer)"),
        "{message}"
    );
    logged(&gateway, "shared state: Redis is unavailable").await;

    // `#insecure` is refused before the gateway starts.
    let output = Setup::new(&cluster.sim)
        .database(&cluster.database)
        .env(
            "LLMHOST_REDIS_URL",
            &format!("{}/#insecure", cluster.redis.url()),
        )
        .run_briefly(
            &["serve", "--listen", "127.0.0.1:0"],
            Duration::from_secs(20),
        )
        .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("#insecure"), "{stderr}");
}

/// Each scenario twice: on one SQLite file the three processes share, and
/// on one PostgreSQL database (`llmhost_test_services::postgres()`).
macro_rules! on_both_engines {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(None).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(Some(llmhost_test_services::postgres().database())).await;
            }
        }
    )+};
}

on_both_engines!(
    a_budget_holds_across_three_replicas,
    a_rate_limit_holds_globally_not_per_replica,
    a_key_revoked_through_one_replica_is_refused_by_all_within_a_second,
    a_replica_killed_mid_stream_loses_no_other_request_and_no_stored_row,
    redis_stopped_mid_run_fails_closed_with_clear_errors_and_recovers,
    a_redis_password_is_used_but_never_shown,
    a_circuit_opened_by_one_replica_is_skipped_by_all,
    a_console_session_signed_in_on_one_replica_holds_on_all,
    an_answer_cached_through_one_replica_serves_the_others,
);
