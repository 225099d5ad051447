//! `llmhost serve` over plain HTTP: a shutdown that lets streams in flight
//! finish and stores their usage, the model list, health, routes it does
//! not have, virtual keys revoked while it runs, and the addresses it
//! refuses to serve without a key.

mod common;

use common::gateway::{Gateway, MASTER_KEY, PROVIDERS, Setup};
use futures::StreamExt;
use llmhost_simulator::Simulator;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Under 80 characters, so the simulator echoes all of it, and long
/// enough that its answer streams in some twenty pieces.
const LONG_TEXT: &str = "Keep streaming while the gateway shuts down, every word of it";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

fn json_body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(bytes)))
}

/// `(status, body)` of `GET path` with `headers`.
async fn get(gateway: &Gateway, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = client().get(format!("{}{path}", gateway.url()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, json_body(&response.bytes().await.expect("body")))
}

/// `(status, request id header, body)` of `POST path` with a JSON body.
async fn post(
    gateway: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, Option<String>, Value) {
    let mut request = client()
        .post(format!("{}{path}", gateway.url()))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        id,
        json_body(&response.bytes().await.expect("body")),
    )
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// One server-sent event: its name, if any, and its data.
#[derive(Debug)]
struct Event {
    name: Option<String>,
    data: String,
}

fn events(text: &str) -> Vec<Event> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push(value);
                }
            }
            Event {
                name,
                data: data.join("\n"),
            }
        })
        .collect()
}

/// A stream being read on a task of its own: its request id, and at the
/// end the body and when its last bytes arrived.
struct Reading {
    request_id: String,
    task: tokio::task::JoinHandle<(String, Instant)>,
}

/// Starts a stream and reads it until its first event has arrived; the
/// rest is read on a task.
async fn start_stream(
    gateway: &Gateway,
    path: &str,
    key_header: (&str, &str),
    body: Value,
) -> Reading {
    let response = client()
        .post(format!("{}{path}", gateway.url()))
        .header(key_header.0, key_header.1)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200, "{path}");
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("a request id")
        .to_owned();
    let mut body = response.bytes_stream();
    let mut received = Vec::new();
    while !received.windows(2).any(|w| w == b"\n\n") {
        let bytes = body.next().await.expect("a first event").expect("bytes");
        received.extend_from_slice(&bytes);
    }
    let task = tokio::spawn(async move {
        let mut last = Instant::now();
        while let Some(bytes) = body.next().await {
            received.extend_from_slice(&bytes.expect("the stream is not cut"));
            last = Instant::now();
        }
        (String::from_utf8(received).expect("UTF-8"), last)
    });
    Reading { request_id, task }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_streams_in_flight_finish_then_exits_0_with_their_usage_stored() {
    let sim = Simulator::start().await.expect("simulator");
    // Some twenty pieces each, 300 ms apart: about six seconds a stream.
    sim.set_stream_delay(Duration::from_millis(300));
    let mut gateway = Setup::new(&sim)
        .settings("[server]\nshutdown_grace_secs = 120\n")
        .start()
        .await;
    let messages = json!([{"role": "user", "content": LONG_TEXT}]);
    let openai = start_stream(
        &gateway,
        "/v1/chat/completions",
        ("authorization", &bearer(MASTER_KEY)),
        json!({
            "model": "openai/gpt-4o-mini",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": messages,
        }),
    )
    .await;
    let anthropic = start_stream(
        &gateway,
        "/v1/messages",
        ("x-api-key", MASTER_KEY),
        json!({
            "model": "claude/claude-sonnet-4-5",
            "max_tokens": 200,
            "stream": true,
            "messages": messages,
        }),
    )
    .await;

    gateway.terminate();
    let signalled = Instant::now();
    // No new connections from now on, while the streams still run.
    let refused_at = loop {
        let tried = reqwest::Client::new()
            .get(format!("{}/healthz", gateway.url()))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match tried {
            Err(err) if err.is_connect() => break Instant::now(),
            _ => {
                assert!(
                    signalled.elapsed() < Duration::from_secs(10),
                    "still accepting 10 s after SIGTERM: {tried:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let (openai_text, openai_end) = openai.task.await.expect("join");
    let (anthropic_text, anthropic_end) = anthropic.task.await.expect("join");
    assert!(
        refused_at < openai_end && refused_at < anthropic_end,
        "new connections were refused only after the streams ended"
    );
    let status = gateway.wait(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "{}", gateway.log());

    // The whole OpenAI stream: every piece, the usage chunk, `[DONE]`.
    let chunks = events(&openai_text);
    assert_eq!(
        chunks.last().map(|e| e.data.as_str()),
        Some("[DONE]"),
        "{openai_text}"
    );
    let chunks: Vec<Value> = chunks[..chunks.len() - 1]
        .iter()
        .map(|e| json_body(e.data.as_bytes()))
        .collect();
    let (usage_chunk, pieces) = chunks.split_last().expect("chunks");
    assert_eq!(usage_chunk["choices"], json!([]), "{usage_chunk}");
    assert!(pieces.iter().all(|c| c["usage"].is_null()), "{openai_text}");
    let text: String = pieces
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(
        text.ends_with(&format!("You said: {LONG_TEXT}")),
        "{text:?}"
    );
    assert_eq!(
        pieces.last().expect("pieces")["choices"][0]["finish_reason"],
        "stop"
    );

    // The whole Anthropic stream, to `message_stop`.
    let named = events(&anthropic_text);
    let names: Vec<&str> = named.iter().filter_map(|e| e.name.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    let text: String = named
        .iter()
        .filter(|e| e.name.as_deref() == Some("content_block_delta"))
        .filter_map(|e| {
            json_body(e.data.as_bytes())["delta"]["text"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        text.ends_with(&format!("You said: {LONG_TEXT}")),
        "{text:?}"
    );
    let delta = named
        .iter()
        .find(|e| e.name.as_deref() == Some("message_delta"))
        .map(|e| json_body(e.data.as_bytes()))
        .expect("message_delta");

    // Both usage rows were flushed before the exit.
    let rows = gateway.usage_rows();
    let row_of = |id: &str| {
        rows.iter()
            .find(|row| row.request_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no usage row for {id}: {rows:?}"))
    };
    let row = row_of(&openai.request_id);
    assert_eq!(
        (row.status.as_str(), row.streamed, row.route.as_deref()),
        ("ok", true, Some("openai/gpt-4o-mini"))
    );
    assert_eq!(
        (json!(row.input_tokens), json!(row.output_tokens)),
        (
            usage_chunk["usage"]["prompt_tokens"].clone(),
            usage_chunk["usage"]["completion_tokens"].clone()
        ),
        "{row:?}"
    );
    let row = row_of(&anthropic.request_id);
    assert_eq!(
        (row.status.as_str(), row.streamed, row.route.as_deref()),
        ("ok", true, Some("claude/claude-sonnet-4-5"))
    );
    assert_eq!(
        json!(row.output_tokens),
        delta["usage"]["output_tokens"],
        "{row:?}"
    );
    assert!(row.output_tokens > 0 && row.input_tokens > 0, "{row:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn models_health_and_routes_it_does_not_have() {
    let sim = Simulator::start().await.expect("simulator");
    let gateway = Setup::new(&sim).start().await;
    // Created while the gateway runs: listed at once.
    gateway.cli(&["agents", "create", "helper", "--json"]).await;
    let auth = bearer(MASTER_KEY);

    let (status, models) = get(&gateway, "/v1/models", &[("authorization", &auth)]).await;
    assert_eq!(status, 200, "{models}");
    assert_eq!(models["object"], "list");
    let data = models["data"].as_array().expect("data");
    let owner_of = |id: &str| {
        data.iter()
            .find(|m| m["id"] == id)
            .map(|m| {
                assert_eq!(m["object"], "model", "{m}");
                m["owned_by"].clone()
            })
            .unwrap_or_else(|| panic!("{id} not listed: {models}"))
    };
    for (provider, _, model) in PROVIDERS {
        assert_eq!(owner_of(&format!("{provider}/{model}")), *provider);
    }
    assert_eq!(owner_of("agent:helper"), "llmhost");
    assert!(
        data.iter().all(|m| m["id"]
            .as_str()
            .is_some_and(|id| id.contains('/') || id.starts_with("agent:"))),
        "every id is a route: {models}"
    );
    // Anthropic's clients get Anthropic's shape.
    let (status, listed) = get(
        &gateway,
        "/v1/models",
        &[
            ("x-api-key", MASTER_KEY),
            ("anthropic-version", "2023-06-01"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["has_more"], false);
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .inspect(|m| assert_eq!(m["type"], "model", "{m}"))
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"claude/claude-sonnet-4-5") && ids.contains(&"agent:helper"),
        "{ids:?}"
    );
    let (status, refused) = get(&gateway, "/v1/models", &[]).await;
    assert_eq!(status, 401, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("missing API key")),
        "{refused}"
    );

    let (status, health) = get(&gateway, "/healthz", &[]).await;
    assert_eq!((status, health), (200, json!({"status": "ok"})));
    let (status, ready) = get(&gateway, "/readyz", &[]).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(
        (&ready["status"], &ready["plugins"], &ready["database"]),
        (&json!("ready"), &json!(4), &json!("ok")),
        "{ready}"
    );

    // Unknown routes, in each protocol's shape.
    let (status, missing) = get(&gateway, "/v1/nowhere", &[("authorization", &auth)]).await;
    assert_eq!(status, 404, "{missing}");
    assert!(
        missing["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("GET /v1/nowhere")),
        "{missing}"
    );
    assert!(missing["error"]["type"].is_string(), "{missing}");
    let (status, _, missing) = post(
        &gateway,
        "/v1/complete",
        &[
            ("x-api-key", MASTER_KEY),
            ("anthropic-version", "2023-06-01"),
        ],
        &json!({}),
    )
    .await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(
        (&missing["type"], &missing["error"]["type"]),
        (&json!("error"), &json!("not_found_error")),
        "{missing}"
    );
    assert!(missing["request_id"].is_string(), "{missing}");
    // A model that is not a route, an agent that does not exist.
    for model in ["gpt-4o-mini", "agent:nobody", "nowhere/gpt-4o-mini"] {
        let (status, id, refused) = post(
            &gateway,
            "/v1/chat/completions",
            &[("authorization", &auth)],
            &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(status, 404, "{model}: {refused}");
        assert_eq!(
            (&refused["error"]["code"], &refused["error"]["param"]),
            (&json!("model_not_found"), &json!("model")),
            "{model}: {refused}"
        );
        assert!(id.is_some(), "{model}: a request id on errors too");
    }
    assert!(sim.requests().is_empty(), "nothing went upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_virtual_key_revoked_while_the_gateway_runs_is_refused_within_a_second() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim).without_master_key();
    let created = setup.cli(&["virtual-keys", "create", "ci", "--json"]).await;
    let key = created["key"].as_str().expect("key").to_owned();
    let gateway = setup.start().await;
    let auth = bearer(&key);
    let chat = json!({
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "still allowed"}],
    });
    let (status, _, answer) = post(
        &gateway,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &chat,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("still allowed")),
        "{answer}"
    );
    // With a key stored the gateway is not open, even on loopback.
    let (status, _) = get(&gateway, "/v1/models", &[]).await;
    assert_eq!(status, 401);

    let revoked = gateway
        .cli(&["virtual-keys", "revoke", "ci", "--json"])
        .await;
    assert_eq!(revoked["status"], "revoked");
    let since = Instant::now();
    loop {
        let (status, body) = get(&gateway, "/v1/models", &[("authorization", &auth)]).await;
        if status == 401 {
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("invalid API key")),
                "{body}"
            );
            break;
        }
        assert_eq!(status, 200, "{body}");
        // A second of cached view, plus a request's time on a loaded
        // machine.
        assert!(
            since.elapsed() < Duration::from_secs(2),
            "the revoked key still works {:?} later",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _, refused) = post(
        &gateway,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &chat,
    )
    .await;
    assert_eq!(status, 401, "{refused}");
    assert_eq!(
        sim.requests().len(),
        1,
        "only the call before the revocation went upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn it_refuses_to_start_where_it_could_not_check_keys() {
    let sim = Simulator::start().await.expect("simulator");
    let limit = Duration::from_secs(300);
    let open = Setup::new(&sim).without_master_key();
    let output = open
        .run_briefly(&["serve", "--listen", "0.0.0.0:0"], limit)
        .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("refusing to serve 0.0.0.0:0 without authentication")
            && stderr.contains("LLMHOST_MASTER_KEY"),
        "{stderr}"
    );

    // With a master key the same address is served.
    let public = Setup::new(&sim).start_on("0.0.0.0:0").await;
    assert!(public.addr().ip().is_unspecified(), "{}", public.addr());
    let (status, _) = get(&public, "/healthz", &[]).await;
    assert_eq!(status, 200);
    let (status, _) = get(&public, "/v1/models", &[]).await;
    assert_eq!(status, 401, "a key is needed");
    drop(public);

    // Virtual keys stored, but no encryption key to check them with.
    let keyed = Setup::new(&sim).without_master_key();
    keyed.cli(&["virtual-keys", "create", "ci", "--json"]).await;
    let output = keyed
        .without_encryption_key()
        .run_briefly(&["serve", "--listen", "127.0.0.1:0"], limit)
        .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("virtual keys are stored but no encryption key is configured to check them")
            && stderr.contains("LLMHOST_ENCRYPTION_KEY"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_still_running_when_the_grace_period_ends_are_cut_and_recorded() {
    let sim = Simulator::start().await.expect("simulator");
    // A six-second stream against a one-second grace period.
    sim.set_stream_delay(Duration::from_millis(300));
    let mut gateway = Setup::new(&sim)
        .settings("[server]\nshutdown_grace_secs = 1\n")
        .start()
        .await;
    let stream = start_stream(
        &gateway,
        "/v1/chat/completions",
        ("authorization", &bearer(MASTER_KEY)),
        json!({
            "model": "openai/gpt-4o-mini",
            "stream": true,
            "messages": [{"role": "user", "content": LONG_TEXT}],
        }),
    )
    .await;
    // And an answer the vendor takes its time over.
    sim.enqueue(
        llmhost_simulator::Vendor::Anthropic,
        llmhost_simulator::Reply::raw(200, Vec::new()).delay_headers(Duration::from_secs(30)),
    );
    let url = gateway.url();
    let slow = tokio::spawn(async move {
        let response = client()
            .post(format!("{url}/v1/messages"))
            .header("x-api-key", MASTER_KEY)
            .header("anthropic-version", "2023-06-01")
            .body(
                json!({
                    "model": "claude/claude-sonnet-4-5",
                    "max_tokens": 50,
                    "messages": [{"role": "user", "content": "slow"}],
                })
                .to_string(),
            )
            .send()
            .await
            .expect("an answer");
        let status = response.status().as_u16();
        let id = response
            .headers()
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = json_body(&response.bytes().await.expect("body"));
        (status, id, body)
    });
    // The slow request is in flight before the signal.
    let since = Instant::now();
    while !sim
        .requests()
        .iter()
        .any(|r| r.vendor == Some(llmhost_simulator::Vendor::Anthropic))
    {
        assert!(since.elapsed() < Duration::from_secs(20), "never sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    gateway.terminate();
    let started = Instant::now();
    let (text, _) = stream.task.await.expect("join");
    let (status, slow_id, body) = slow.await.expect("join");
    let exit = gateway.wait(Duration::from_secs(60)).await;
    assert_eq!(exit.code(), Some(0), "{}", gateway.log());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut after {:?}",
        started.elapsed()
    );

    // The stream ends with an error event its client can act on, not a
    // silent EOF; the slow request gets 503 in Anthropic's shape.
    let last = events(&text).pop().expect("events");
    let error = json_body(last.data.as_bytes());
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("shutting down")),
        "{text}"
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "overloaded_error", "{body}");

    // Both attempts are in the usage table, as cancelled.
    let rows = gateway.usage_rows();
    let slow_id = slow_id.expect("a request id");
    for id in [stream.request_id.as_str(), slow_id.as_str()] {
        let row = rows
            .iter()
            .find(|row| row.request_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no usage row for {id}: {rows:?}"));
        assert_eq!(
            (row.status.as_str(), row.error_kind.as_deref()),
            ("error", Some("cancelled")),
            "{row:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_gateway_closes_once_a_virtual_key_is_created() {
    let sim = Simulator::start().await.expect("simulator");
    let gateway = Setup::new(&sim).without_master_key().start().await;
    let chat = |model: &str| {
        json!({
            "model": model,
            "messages": [{"role": "user", "content": "open?"}],
        })
    };
    // No key anywhere: loopback callers need none.
    let (status, _, body) = post(
        &gateway,
        "/v1/chat/completions",
        &[],
        &chat("openai/gpt-4o-mini"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let created = gateway
        .cli(&[
            "virtual-keys",
            "create",
            "scoped",
            "--allow-models",
            "openai/gpt-4o-mini",
            "--json",
        ])
        .await;
    let key = bearer(created["key"].as_str().expect("key"));
    // Within a second or so the gateway requires keys, and the new key's
    // scope holds.
    let since = Instant::now();
    loop {
        let (status, _, body) = post(
            &gateway,
            "/v1/chat/completions",
            &[],
            &chat("openai/gpt-4o-mini"),
        )
        .await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            since.elapsed() < Duration::from_secs(3),
            "still open {:?} after a key was created",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, body) = post(
        &gateway,
        "/v1/chat/completions",
        &[("authorization", &key)],
        &chat("claude/claude-sonnet-4-5"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // And it lists only what it may call.
    let (status, listed) = get(&gateway, "/v1/models", &[("authorization", &key)]).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["data"][0]["id"], "openai/gpt-4o-mini");
    let (status, _, body) = post(
        &gateway,
        "/v1/chat/completions",
        &[("authorization", &key)],
        &chat("openai/gpt-4o-mini"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// The value of the sample `name{labels}` in a metrics text, with the
/// labels given in any order.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let rest = rest.strip_suffix('}')?;
            labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|pair| pair == format!("{k}=\"{v}\"")))
                .then(|| value.parse().ok())?
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_attempts_retries_tokens_and_breakers() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim);
    let created = setup
        .cli(&["virtual-keys", "create", "watcher", "--json"])
        .await;
    let virtual_key = bearer(created["key"].as_str().expect("key"));
    let gateway = setup.start().await;
    let master = bearer(MASTER_KEY);
    let chat = json!({
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "count me"}],
    });
    for _ in 0..2 {
        let (status, _, body) = post(
            &gateway,
            "/v1/chat/completions",
            &[("authorization", &master)],
            &chat,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // Three server errors: a call that fails after two retries.
    for _ in 0..3 {
        sim.enqueue(
            llmhost_simulator::Vendor::OpenAi,
            llmhost_simulator::Reply::openai_error(500, "server_error", None, "boom"),
        );
    }
    let (status, _, body) = post(
        &gateway,
        "/v1/chat/completions",
        &[("authorization", &master)],
        &chat,
    )
    .await;
    assert_eq!(status, 502, "{body}");
    let (status, _, _) = post(
        &gateway,
        "/v1/chat/completions",
        &[("authorization", &master)],
        &json!({"model": "openai/gpt-4o-mini", "messages": []}),
    )
    .await;
    assert_eq!(status, 400);

    // Metrics are for the master key.
    let (status, _) = get(&gateway, "/metrics", &[]).await;
    assert_eq!(status, 401);
    let (status, _) = get(&gateway, "/metrics", &[("authorization", &virtual_key)]).await;
    assert_eq!(status, 403);
    let response = client()
        .get(format!("{}/metrics", gateway.url()))
        .header("authorization", &master)
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.expect("text");
    let route = [("route", "openai/gpt-4o-mini")];
    let requests = |status: &str| {
        sample(
            &text,
            "llmhost_gateway_requests_total",
            &[route[0], ("status", status), ("protocol", "openai")],
        )
    };
    assert_eq!(requests("200"), Some(2.0), "{text}");
    assert_eq!(requests("502"), Some(1.0), "{text}");
    assert_eq!(
        requests("400"),
        None,
        "an unparsed request has no route label"
    );
    let model = [("provider", "openai"), ("model", "gpt-4o-mini")];
    let attempts = |outcome: &str| {
        sample(
            &text,
            "llmhost_attempts_total",
            &[model[0], model[1], ("outcome", outcome)],
        )
    };
    assert_eq!(attempts("ok"), Some(2.0), "{text}");
    assert_eq!(attempts("server_error"), Some(3.0), "{text}");
    assert_eq!(sample(&text, "llmhost_retries_total", &model), Some(2.0));
    let tokens = |kind: &str| {
        sample(
            &text,
            "llmhost_tokens_total",
            &[model[0], model[1], ("kind", kind)],
        )
    };
    assert!(tokens("input").is_some_and(|n| n > 0.0), "{text}");
    assert!(tokens("output").is_some_and(|n| n > 0.0), "{text}");
    assert!(sample(&text, "llmhost_cost_usd_total", &model).is_some_and(|c| c > 0.0));
    assert_eq!(
        sample(&text, "llmhost_attempt_duration_seconds_count", &model),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &text,
            "llmhost_circuit_breaker_state",
            &[("provider", "openai"), ("state", "closed")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "llmhost_plugin_instances_in_use", &[]),
        Some(0.0)
    );
    assert!(sample(&text, "llmhost_plugin_instances_max", &[]).is_some_and(|n| n >= 1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keys_rate_limit_refuses_at_once_with_the_wait() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim);
    let created = setup
        .cli(&["virtual-keys", "create", "paced", "--rpm", "2", "--json"])
        .await;
    let key = bearer(created["key"].as_str().expect("key"));
    let gateway = setup.start().await;
    let chat = json!({
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "paced"}],
    });
    for _ in 0..2 {
        let (status, _, body) = post(
            &gateway,
            "/v1/chat/completions",
            &[("authorization", &key)],
            &chat,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let response = client()
        .post(format!("{}/v1/chat/completions", gateway.url()))
        .header("authorization", &key)
        .body(chat.to_string())
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 429);
    // Two a minute: the next one fits in about 30 s.
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((25..=31).contains(&retry_after), "{retry_after}");
    let body = json_body(&response.bytes().await.unwrap());
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    // The master key is not limited, and the refused call never went out.
    let (status, _, _) = post(
        &gateway,
        "/v1/chat/completions",
        &[("authorization", &bearer(MASTER_KEY))],
        &chat,
    )
    .await;
    assert_eq!(status, 200);
    let posts = sim.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn access_logs_are_json_lines_naming_each_request() {
    let sim = Simulator::start().await.expect("simulator");
    let gateway = Setup::new(&sim)
        .serve_args(&["--log-format", "json"])
        .start()
        .await;
    let (status, id, body) = post(
        &gateway,
        "/v1/chat/completions",
        &[("authorization", &bearer(MASTER_KEY))],
        &json!({
            "model": "openai/gpt-4o-mini",
            "messages": [{"role": "user", "content": "log me"}],
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = id.expect("a request id");
    let since = Instant::now();
    let line = loop {
        let log = gateway.log();
        let found = log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|entry| entry["fields"]["request_id"] == id.as_str());
        if let Some(entry) = found {
            break entry;
        }
        assert!(since.elapsed() < Duration::from_secs(10), "{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(line["target"], "llmhost::access", "{line}");
    assert_eq!(line["fields"]["status"], 200, "{line}");
    assert_eq!(line["fields"]["route"], "openai/gpt-4o-mini", "{line}");
    assert!(line["fields"]["latency_ms"].as_f64().is_some(), "{line}");
    // The vendor's key and the client's never reach the log.
    let log = gateway.log();
    assert!(!log.contains(MASTER_KEY));
    for (_, vendor, _) in PROVIDERS {
        assert!(!log.contains(common::gateway::upstream_key(*vendor)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agents_balanced_choices_are_counted_in_the_metrics() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim);
    let agent = setup
        .cli(&[
            "agents",
            "create",
            "pool",
            "--balance",
            "least-in-flight",
            "--json",
        ])
        .await;
    assert_eq!(agent["balance"], "least_in_flight");
    for (model, weight) in [("gpt-4o-mini", "1"), ("gpt-4o", "2")] {
        let config = setup
            .cli(&[
                "configs",
                "add",
                "--agent",
                "pool",
                "--provider",
                "openai",
                "--model",
                model,
                "--weight",
                weight,
                "--json",
            ])
            .await;
        assert_eq!(config["weight"], weight.parse::<u64>().unwrap());
    }
    let gateway = setup.start().await;
    let master = bearer(MASTER_KEY);
    // One call at a time: both routes have none in flight, and a tie
    // keeps the configs' order.
    for _ in 0..3 {
        let (status, _, body) = post(
            &gateway,
            "/v1/chat/completions",
            &[("authorization", &master)],
            &json!({
                "model": "agent:pool",
                "messages": [{"role": "user", "content": "balance me"}],
            }),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, text) = get_text(&gateway, "/metrics", &master).await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(
            &text,
            "llmhost_route_choices_total",
            &[
                ("agent", "pool"),
                ("provider", "openai"),
                ("model", "gpt-4o-mini"),
                ("strategy", "least_in_flight"),
                ("reason", "fewest_in_flight"),
            ]
        ),
        Some(3.0),
        "{text}"
    );
}

async fn get_text(gateway: &Gateway, path: &str, auth: &str) -> (u16, String) {
    let response = client()
        .get(format!("{}{path}", gateway.url()))
        .header("authorization", auth)
        .send()
        .await
        .expect("get");
    let status = response.status().as_u16();
    (status, response.text().await.expect("text"))
}
