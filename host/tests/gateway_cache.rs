//! The response cache through `llmhost serve`, in front of the vendor
//! simulator, with a real SQLite file: a repeated request is served
//! without an upstream call and at no cost, changed parameters miss,
//! answers expire, `cache-control` bypasses, virtual keys are kept apart
//! unless they share, streams are replayed chunk for chunk, hits spend
//! no budget, and the store stays within its bound.

mod common;

use common::gateway::{Gateway, MASTER_KEY, Setup};
use llmhost_simulator::{Reply, Simulator, Vendor};
use serde_json::{Value, json};
use std::time::Duration;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// What the gateway answered to one chat request.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The `x-llmhost-cache` header.
    cache: Option<String>,
    request_id: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("{err}: {}", self.body))
    }

    fn content(&self) -> String {
        self.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_else(|| panic!("no content: {}", self.body))
            .to_owned()
    }
}

async fn post(gateway: &Gateway, auth: &str, extra: &[(&str, &str)], body: &Value) -> Answer {
    let mut request = client()
        .post(format!("{}/v1/chat/completions", gateway.url()))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("an answer");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (cache, request_id) = (header("x-llmhost-cache"), header("x-request-id"));
    let status = response.status().as_u16();
    Answer {
        status,
        cache,
        request_id: request_id.expect("a request id"),
        body: response.text().await.expect("body"),
    }
}

fn chat(content: &str, temperature: Option<f64>) -> Value {
    let mut body = json!({
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
    });
    if let Some(t) = temperature {
        body["temperature"] = json!(t);
    }
    body
}

/// Chat requests the simulator has received.
fn upstream(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .count()
}

/// `(cache_hit, cost_usd, saved_usd, input_tokens, output_tokens)` of a
/// request's usage row.
type Served = (bool, Option<String>, Option<String>, u64, u64);

async fn served(gateway: &Gateway, db: &std::path::Path, request_id: &str) -> Served {
    gateway.usage_of(request_id, 1).await;
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the database");
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row(
        "SELECT cache_hit, cost_usd, saved_usd, input_tokens, output_tokens \
         FROM usage_events WHERE request_id = ?1",
        [request_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .expect("one usage row")
}

async fn key(setup: &Setup, name: &str, args: &[&str]) -> String {
    let mut all = vec!["virtual-keys", "create", name, "--json"];
    all.extend_from_slice(args);
    let created = setup.cli(&all).await;
    bearer(created["key"].as_str().expect("key"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeat_is_served_without_an_upstream_call_at_no_cost_and_changes_miss() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim);
    let auth = key(&setup, "cached", &["--cache-ttl", "10m"]).await;
    let plain = key(&setup, "plain", &[]).await;
    let db = setup.db();
    let gateway = setup.start().await;

    let first = post(&gateway, &auth, &[], &chat("cache me", Some(0.0))).await;
    assert_eq!(
        (first.status, first.cache.as_deref()),
        (200, Some("miss")),
        "{first:?}"
    );
    assert_eq!(upstream(&sim), 1);
    let second = post(&gateway, &auth, &[], &chat("cache me", Some(0.0))).await;
    assert_eq!(
        (second.status, second.cache.as_deref()),
        (200, Some("hit")),
        "{second:?}"
    );
    assert_eq!(upstream(&sim), 1, "a hit makes no upstream call");
    assert_eq!(second.content(), first.content());
    assert_eq!(
        second.json()["usage"],
        first.json()["usage"],
        "the answer as it was"
    );

    // The usage rows: the first cost something, the hit nothing and saved
    // exactly that.
    let (hit, cost, saved, ..) = served(&gateway, &db, &first.request_id).await;
    assert!(!hit && saved.is_none());
    let first_cost = cost.expect("a priced model");
    assert_ne!(first_cost, "0");
    let (hit, cost, saved, input, output) = served(&gateway, &db, &second.request_id).await;
    assert!(hit, "served.cache_hit");
    assert_eq!(cost.as_deref(), Some("0"));
    assert_eq!(saved.as_deref(), Some(first_cost.as_str()), "saved_usd");
    assert_eq!((input, output), (0, 0), "no tokens spent");

    // Every parameter that changes the answer is in the key.
    for (changed, body) in [
        ("max_tokens", {
            let mut b = chat("cache me", Some(0.0));
            b["max_tokens"] = json!(7);
            b
        }),
        ("messages", chat("cache me too", Some(0.0))),
        ("stop", {
            let mut b = chat("cache me", Some(0.0));
            b["stop"] = json!(["x"]);
            b
        }),
        ("model", {
            let mut b = chat("cache me", Some(0.0));
            b["model"] = json!("openai/gpt-4o");
            b
        }),
    ] {
        let before = upstream(&sim);
        let answer = post(&gateway, &auth, &[], &body).await;
        assert_eq!(
            answer.cache.as_deref(),
            Some("miss"),
            "{changed}: {answer:?}"
        );
        assert_eq!(upstream(&sim), before + 1, "{changed}");
    }
    // Not in the key: the end-user id.
    let mut with_user = chat("cache me", Some(0.0));
    with_user["user"] = json!("someone");
    let answer = post(&gateway, &auth, &[], &with_user).await;
    assert_eq!(answer.cache.as_deref(), Some("hit"));

    // Sampled requests (temperature above 0, or unset: the vendors'
    // defaults sample) are not cached unless the agent says so.
    for body in [chat("cache me", Some(0.7)), chat("cache me", None)] {
        let before = upstream(&sim);
        for _ in 0..2 {
            let answer = post(&gateway, &auth, &[], &body).await;
            assert_eq!(answer.cache.as_deref(), Some("bypass"), "{body}");
        }
        assert_eq!(upstream(&sim), before + 2);
    }

    // A key without a TTL has no cache, and no header.
    let answer = post(&gateway, &plain, &[], &chat("cache me", Some(0.0))).await;
    assert_eq!((answer.status, answer.cache), (200, None));
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_control_no_cache_bypasses_and_stores_no_store_does_neither() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim);
    let auth = key(&setup, "cached", &["--cache-ttl", "10m"]).await;
    let db = setup.db();
    let gateway = setup.start().await;
    let body = chat("fresh please", Some(0.0));

    let first = post(&gateway, &auth, &[], &body).await;
    assert_eq!(first.cache.as_deref(), Some("miss"));
    let fresh = post(&gateway, &auth, &[("cache-control", "no-cache")], &body).await;
    assert_eq!(
        (fresh.status, fresh.cache.as_deref()),
        (200, Some("bypass"))
    );
    assert_eq!(
        upstream(&sim),
        2,
        "no-cache goes upstream despite the stored answer"
    );
    let (hit, cost, ..) = served(&gateway, &db, &fresh.request_id).await;
    assert!(
        !hit && cost.is_some_and(|c| c != "0"),
        "a bypass is a paid call"
    );

    // no-cache still stores its fresh answer.
    let other = chat("stored by a no-cache request", Some(0.0));
    let stored = post(&gateway, &auth, &[("cache-control", "no-cache")], &other).await;
    assert_eq!(stored.cache.as_deref(), Some("bypass"));
    let after = post(&gateway, &auth, &[], &other).await;
    assert_eq!(after.cache.as_deref(), Some("hit"));
    assert_eq!(upstream(&sim), 3);

    // no-store neither reads nor stores.
    let unstored = chat("never stored", Some(0.0));
    let answer = post(&gateway, &auth, &[("cache-control", "no-store")], &unstored).await;
    assert_eq!(answer.cache.as_deref(), Some("bypass"));
    let answer = post(&gateway, &auth, &[], &unstored).await;
    assert_eq!(answer.cache.as_deref(), Some("miss"));
    assert_eq!(upstream(&sim), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_expire_after_their_ttl() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim);
    let auth = key(&setup, "brief", &["--cache-ttl", "1s"]).await;
    let gateway = setup.start().await;
    let body = chat("short lived", Some(0.0));
    assert_eq!(
        post(&gateway, &auth, &[], &body).await.cache.as_deref(),
        Some("miss")
    );
    assert_eq!(
        post(&gateway, &auth, &[], &body).await.cache.as_deref(),
        Some("hit")
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        post(&gateway, &auth, &[], &body).await.cache.as_deref(),
        Some("miss"),
        "expired"
    );
    assert_eq!(upstream(&sim), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_s_answers_serve_it_alone_unless_keys_share() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim);
    let alice = key(&setup, "alice", &["--cache-ttl", "10m"]).await;
    let bob = key(&setup, "bob", &["--cache-ttl", "10m"]).await;
    let carol = key(&setup, "carol", &["--cache-ttl", "10m", "--cache-shared"]).await;
    let dave = key(&setup, "dave", &["--cache-ttl", "10m", "--cache-shared"]).await;
    let gateway = setup.start().await;
    let body = chat("whose answer is this", Some(0.0));

    assert_eq!(
        post(&gateway, &alice, &[], &body).await.cache.as_deref(),
        Some("miss")
    );
    assert_eq!(
        post(&gateway, &bob, &[], &body).await.cache.as_deref(),
        Some("miss")
    );
    assert_eq!(upstream(&sim), 2, "bob is not served alice's answer");
    assert_eq!(
        post(&gateway, &alice, &[], &body).await.cache.as_deref(),
        Some("hit")
    );
    assert_eq!(
        post(&gateway, &bob, &[], &body).await.cache.as_deref(),
        Some("hit")
    );

    assert_eq!(
        post(&gateway, &carol, &[], &body).await.cache.as_deref(),
        Some("miss")
    );
    assert_eq!(
        upstream(&sim),
        3,
        "a shared key is not served a private key's answer"
    );
    assert_eq!(
        post(&gateway, &dave, &[], &body).await.cache.as_deref(),
        Some("hit")
    );
    assert_eq!(upstream(&sim), 3, "dave is served carol's shared answer");
}

/// An SSE body's `data:` payloads, parsed, without what is new on every
/// response (its id and creation time).
fn stream_chunks(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .map(|data| {
            let mut value: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            if let Some(object) = value.as_object_mut() {
                object.remove("id");
                object.remove("created");
            }
            value
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_is_replayed_as_its_original_chunks() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim);
    let auth = key(&setup, "streamer", &["--cache-ttl", "10m"]).await;
    let db = setup.db();
    let gateway = setup.start().await;
    let mut body = chat("Stream this answer in several pieces, please", Some(0.0));
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});

    let first = post(&gateway, &auth, &[], &body).await;
    assert_eq!(
        (first.status, first.cache.as_deref()),
        (200, Some("miss")),
        "{first:?}"
    );
    let replay = post(&gateway, &auth, &[], &body).await;
    assert_eq!(
        (replay.status, replay.cache.as_deref()),
        (200, Some("hit")),
        "{replay:?}"
    );
    assert_eq!(upstream(&sim), 1);
    let (original, replayed) = (stream_chunks(&first.body), stream_chunks(&replay.body));
    assert!(original.len() > 4, "several chunks: {original:?}");
    assert_eq!(original.len(), replayed.len());
    for (i, (a, b)) in original.iter().zip(&replayed).enumerate() {
        assert_eq!(a, b, "chunk {i}");
    }
    // A complete request does not take the stream's answer.
    body["stream"] = json!(false);
    body.as_object_mut().unwrap().remove("stream_options");
    assert_eq!(
        post(&gateway, &auth, &[], &body).await.cache.as_deref(),
        Some("miss")
    );

    let (hit, cost, saved, ..) = served(&gateway, &db, &replay.request_id).await;
    let (_, first_cost, ..) = served(&gateway, &db, &first.request_id).await;
    assert!(hit);
    assert_eq!(cost.as_deref(), Some("0"));
    assert_eq!(saved, first_cost);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_caches_sampled_requests_when_its_operator_says_so() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim);
    for (name, args) in [
        ("sampler", vec!["--cache-ttl", "10m", "--cache-sampled"]),
        ("strict", vec!["--cache-ttl", "10m"]),
    ] {
        let mut all = vec!["agents", "create", name, "--json"];
        all.extend(args);
        setup.cli(&all).await;
        setup
            .cli(&[
                "configs",
                "add",
                "--agent",
                name,
                "--provider",
                "openai",
                "--model",
                "gpt-4o-mini",
                "--json",
            ])
            .await;
    }
    let shown = setup.cli(&["agents", "cache", "strict", "--json"]).await;
    assert_eq!(
        (&shown["cache_ttl_secs"], &shown["cache_sampled"]),
        (&json!(600), &json!(false))
    );
    // `chat --agent` goes through the same router and policy (its process
    // has a cache of its own, so one run misses).
    let answered = setup
        .cli(&[
            "chat",
            "--agent",
            "sampler",
            "--temperature",
            "0.9",
            "--json",
            "from the CLI",
        ])
        .await;
    assert_eq!(answered["cache"], "miss", "{answered}");
    let answered = setup
        .cli(&[
            "chat",
            "--agent",
            "strict",
            "--temperature",
            "0.9",
            "--json",
            "from the CLI",
        ])
        .await;
    assert_eq!(answered["cache"], "bypass", "{answered}");
    assert_eq!(upstream(&sim), 2);
    let gateway = setup.start().await;
    let master = bearer(MASTER_KEY);
    let mut body = chat("a creative answer", Some(0.9));
    body["model"] = json!("agent:sampler");
    assert_eq!(
        post(&gateway, &master, &[], &body).await.cache.as_deref(),
        Some("miss")
    );
    let hit = post(&gateway, &master, &[], &body).await;
    assert_eq!(hit.cache.as_deref(), Some("hit"));
    assert_eq!(upstream(&sim), 3);
    body["model"] = json!("agent:strict");
    assert_eq!(
        post(&gateway, &master, &[], &body).await.cache.as_deref(),
        Some("bypass")
    );
    // Turned off, the agent's calls have no cache.
    gateway
        .cli(&["agents", "cache", "sampler", "--clear", "--json"])
        .await;
    let cleared = setup_agent(&gateway, "sampler").await;
    assert_eq!(cleared["cache_ttl_secs"], Value::Null);
}

async fn setup_agent(gateway: &Gateway, name: &str) -> Value {
    gateway.cli(&["agents", "show", name, "--json"]).await
}

/// The value of the sample `name{labels}` in a metrics text.
fn sample(text: &str, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let rest = rest.strip_suffix('}')?;
            let matches = label.is_none_or(|(k, v)| rest == format!("{k}=\"{v}\""));
            matches.then(|| value.parse().ok())?
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_large_answers_stays_within_the_byte_bound() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim).settings("[cache]\nmax_mb = 1\n");
    let auth = key(&setup, "flood", &["--cache-ttl", "10m"]).await;
    let gateway = setup.start().await;
    const ANSWERS: usize = 16;
    const ANSWER_BYTES: usize = 200_000;
    for n in 0..ANSWERS {
        let content = format!("{n:02}").repeat(ANSWER_BYTES / 2);
        sim.enqueue(
            Vendor::OpenAi,
            Reply::json(
                200,
                json!({
                    "id": format!("chatcmpl-{n}"),
                    "object": "chat.completion",
                    "created": 1_790_000_000,
                    "model": "gpt-4o-mini",
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop"
                    }],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 50_000, "total_tokens": 50_005}
                }),
            ),
        );
    }
    for n in 0..ANSWERS {
        let answer = post(
            &gateway,
            &auth,
            &[],
            &chat(&format!("large answer {n}"), Some(0.0)),
        )
        .await;
        assert_eq!(
            (answer.status, answer.cache.as_deref()),
            (200, Some("miss"))
        );
        assert_eq!(answer.content().len(), ANSWER_BYTES);
    }
    // The latest is still there, the first was evicted.
    let latest = chat(&format!("large answer {}", ANSWERS - 1), Some(0.0));
    assert_eq!(
        post(&gateway, &auth, &[], &latest).await.cache.as_deref(),
        Some("hit")
    );
    let response = client()
        .get(format!("{}/metrics", gateway.url()))
        .header("authorization", bearer(MASTER_KEY))
        .send()
        .await
        .expect("metrics");
    let text = response.text().await.expect("text");
    let value = |name: &str, label| {
        sample(&text, name, label).unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    let bytes = value("llmhost_response_cache_bytes", None);
    let max = value("llmhost_response_cache_max_bytes", None);
    let entries = value("llmhost_response_cache_entries", None);
    let evictions = value("llmhost_response_cache_evictions_total", None);
    assert_eq!(max, 1_048_576.0);
    assert!(
        bytes <= max && bytes > 0.0,
        "{bytes} bytes held, bound {max}"
    );
    assert!(
        (1.0..=5.0).contains(&entries),
        "{entries} answers of 200 kB in 1 MiB"
    );
    assert!(evictions >= (ANSWERS - 5) as f64, "{evictions} evictions");
    assert_eq!(
        value(
            "llmhost_response_cache_requests_total",
            Some(("result", "miss"))
        ),
        ANSWERS as f64
    );
    assert_eq!(
        value(
            "llmhost_response_cache_requests_total",
            Some(("result", "hit"))
        ),
        1.0
    );
    let first = chat("large answer 0", Some(0.0));
    sim.enqueue(Vendor::OpenAi, Reply::json(200, json!({
        "id": "chatcmpl-again", "object": "chat.completion", "created": 1_790_000_000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "again"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    })));
    assert_eq!(
        post(&gateway, &auth, &[], &first).await.cache.as_deref(),
        Some("miss"),
        "evicted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hits_spend_nothing_of_the_key_s_budget() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim);
    // A call reserves its worst case (about $0.000032 with 50 output
    // tokens) and costs about $0.00001: $0.000045 fits one paid call's
    // cost and a worst case, not two paid calls' cost and a worst case.
    let auth = key(
        &setup,
        "frugal",
        &["--cache-ttl", "10m", "--budget-usd", "0.000045"],
    )
    .await;
    let gateway = setup.start().await;
    let with_max = |content: &str| {
        let mut body = chat(content, Some(0.0));
        body["max_tokens"] = json!(50);
        body
    };
    let first = post(&gateway, &auth, &[], &with_max("budget me")).await;
    assert_eq!(
        (first.status, first.cache.as_deref()),
        (200, Some("miss")),
        "{first:?}"
    );
    for i in 0..5 {
        let hit = post(&gateway, &auth, &[], &with_max("budget me")).await;
        assert_eq!(
            (hit.status, hit.cache.as_deref()),
            (200, Some("hit")),
            "hit {i}: {hit:?}"
        );
    }
    let second = post(&gateway, &auth, &[], &with_max("budget me again")).await;
    assert_eq!(
        (second.status, second.cache.as_deref()),
        (200, Some("miss")),
        "{second:?}"
    );
    let refused = post(&gateway, &auth, &[], &with_max("budget me a third time")).await;
    assert_eq!(
        refused.status, 429,
        "two paid calls spent the budget: {refused:?}"
    );
    assert_eq!(upstream(&sim), 2);
}
