//! The admin API over HTTP, against `llmhost serve` in front of the vendor
//! simulator: every route's success, its validation failures (422 naming
//! the field), 401 without credentials, 404 for unknown names and ids,
//! 409 on conflicts; admin tokens and console sessions with their CSRF
//! rule; the OpenAPI document, checked by an OpenAPI validator and against
//! the routes these tests exercise; and no secret ever in a response.

mod common;

use common::gateway::{Gateway, MASTER_KEY, Setup, sdk_python};
use llmhost_simulator::Simulator;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An HTTP client of one gateway's admin API that keeps every response
/// body it saw (to look for secrets in) and every route it called.
struct Api {
    url: String,
    http: reqwest::Client,
    seen: Mutex<Vec<String>>,
}

/// One answer.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|err| panic!("{err}: {} {}", self.status, self.text))
    }

    /// The body, after checking the status.
    #[track_caller]
    fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        if self.text.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// A failure's kind and field, after checking the status.
    #[track_caller]
    fn failure(&self, status: u16, kind: &str) -> Value {
        let body = self.expect(status);
        assert_eq!(body["error"]["kind"], kind, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        body["error"].clone()
    }
}

impl Api {
    fn new(gateway: &Gateway) -> Self {
        Self {
            url: gateway.url(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
            seen: Mutex::new(Vec::new()),
        }
    }

    /// Sends `method path` (the route `_route` with its values filled in:
    /// named for the reader), with `token` as the bearer credential and
    /// `body` as JSON.
    async fn send(
        &self,
        method: &str,
        _route: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("an answer");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        self.seen.lock().unwrap().push(text.clone());
        Answer {
            status,
            headers,
            text,
        }
    }

    /// As the master key.
    async fn call(&self, method: &str, route: &str, path: &str, body: Option<&Value>) -> Answer {
        self.send(method, route, path, Some(MASTER_KEY), &[], body)
            .await
    }

    async fn get(&self, route: &str, path: &str) -> Answer {
        self.call("GET", route, path, None).await
    }

    /// Fails the test if `secret` is in any response seen.
    #[track_caller]
    fn assert_never_shown(&self, secret: &str, after: usize) {
        for (i, text) in self.seen.lock().unwrap().iter().enumerate().skip(after) {
            assert!(
                !text.contains(secret),
                "response {i} shows a secret it must not: {text}"
            );
        }
    }

    fn responses(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn start(sim: &Simulator) -> (Gateway, Api) {
    let gateway = Setup::new(sim).start().await;
    let api = Api::new(&gateway);
    (gateway, api)
}

/// A chat through the gateway's OpenAI route; returns its request id.
async fn chat(api: &Api, model: &str) -> String {
    let answer = api
        .send(
            "POST",
            "/v1/chat/completions",
            "/v1/chat/completions",
            Some(MASTER_KEY),
            &[],
            Some(
                &json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]}),
            ),
        )
        .await;
    answer.expect(200);
    answer.headers["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_budgets_and_their_failures() {
    let sim = Simulator::start().await.expect("simulator");
    let (_gateway, api) = start(&sim).await;

    let empty = api
        .get("/admin/v1/agents", "/admin/v1/agents")
        .await
        .expect(200);
    assert_eq!(empty["agents"], json!([]));

    let body = json!({"name": "support", "description": "front desk"});
    let created = api
        .call("POST", "/admin/v1/agents", "/admin/v1/agents", Some(&body))
        .await
        .expect(201);
    assert_eq!(created["name"], "support");
    assert_eq!(created["configs"], 0);
    assert_eq!(created["balance"], "priority");
    let weighted = api
        .call(
            "POST",
            "/admin/v1/agents",
            "/admin/v1/agents",
            Some(&json!({"name": "shared", "balance": "weighted"})),
        )
        .await
        .expect(201);
    assert_eq!(weighted["balance"], "weighted");
    api.call(
        "DELETE",
        "/admin/v1/agents/{name}",
        "/admin/v1/agents/shared",
        None,
    )
    .await
    .expect(204);
    assert!(created["updated_at"].is_string());

    api.call("POST", "/admin/v1/agents", "/admin/v1/agents", Some(&body))
        .await
        .failure(409, "conflict");
    let err = api
        .call(
            "POST",
            "/admin/v1/agents",
            "/admin/v1/agents",
            Some(&json!({"name": "no spaces please"})),
        )
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "name");
    let err = api
        .call(
            "POST",
            "/admin/v1/agents",
            "/admin/v1/agents",
            Some(&json!({"description": "no name"})),
        )
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "name");
    let err = api
        .call(
            "POST",
            "/admin/v1/agents",
            "/admin/v1/agents",
            Some(&json!({"name": 7})),
        )
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "name");
    let malformed = api
        .send(
            "POST",
            "/admin/v1/agents",
            "/admin/v1/agents",
            Some(MASTER_KEY),
            &[("content-type", "application/json")],
            None,
        )
        .await;
    malformed.failure(400, "invalid_request");

    let one = api
        .get("/admin/v1/agents/{name}", "/admin/v1/agents/support")
        .await
        .expect(200);
    assert_eq!(one["description"], "front desk");
    api.get("/admin/v1/agents/{name}", "/admin/v1/agents/nobody")
        .await
        .failure(404, "not_found");

    let budget = json!({"usd": "12.50", "tokens": 100000, "period": "day"});
    let with_budget = api
        .call(
            "PUT",
            "/admin/v1/agents/{name}/budget",
            "/admin/v1/agents/support/budget",
            Some(&budget),
        )
        .await
        .expect(200);
    assert_eq!(with_budget["budget_usd"], "12.5");
    assert_eq!(with_budget["budget_tokens"], 100000);
    assert_eq!(with_budget["budget_period"], "day");
    let err = api
        .call(
            "PUT",
            "/admin/v1/agents/{name}/budget",
            "/admin/v1/agents/support/budget",
            Some(&json!({"usd": "-1", "period": "day"})),
        )
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "budget_usd");
    let err = api
        .call(
            "PUT",
            "/admin/v1/agents/{name}/budget",
            "/admin/v1/agents/support/budget",
            Some(&json!({"usd": "1", "period": "fortnight"})),
        )
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "period");
    api.call(
        "PUT",
        "/admin/v1/agents/{name}/budget",
        "/admin/v1/agents/nobody/budget",
        Some(&budget),
    )
    .await
    .failure(404, "not_found");
    let cleared = api
        .call(
            "DELETE",
            "/admin/v1/agents/{name}/budget",
            "/admin/v1/agents/support/budget",
            None,
        )
        .await
        .expect(200);
    assert_eq!(cleared["budget_usd"], Value::Null);
    api.call(
        "DELETE",
        "/admin/v1/agents/{name}/budget",
        "/admin/v1/agents/nobody/budget",
        None,
    )
    .await
    .failure(404, "not_found");

    let cached = api
        .call(
            "PUT",
            "/admin/v1/agents/{name}/cache",
            "/admin/v1/agents/support/cache",
            Some(&json!({"ttl_secs": 600, "sampled": true})),
        )
        .await
        .expect(200);
    assert_eq!(
        (&cached["cache_ttl_secs"], &cached["cache_sampled"]),
        (&json!(600), &json!(true))
    );
    api.call(
        "PUT",
        "/admin/v1/agents/{name}/cache",
        "/admin/v1/agents/support/cache",
        Some(&json!({"ttl_secs": 0})),
    )
    .await
    .failure(422, "validation");
    let uncached = api
        .call(
            "DELETE",
            "/admin/v1/agents/{name}/cache",
            "/admin/v1/agents/support/cache",
            None,
        )
        .await
        .expect(200);
    assert_eq!(uncached["cache_ttl_secs"], Value::Null);

    let list = api
        .get("/admin/v1/agents", "/admin/v1/agents")
        .await
        .expect(200);
    assert_eq!(list["agents"].as_array().map(Vec::len), Some(1));
    api.call(
        "DELETE",
        "/admin/v1/agents/{name}",
        "/admin/v1/agents/support",
        None,
    )
    .await
    .expect(204);
    api.call(
        "DELETE",
        "/admin/v1/agents/{name}",
        "/admin/v1/agents/support",
        None,
    )
    .await
    .failure(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_keys_and_admin_tokens_are_shown_once_and_stop_when_revoked() {
    let sim = Simulator::start().await.expect("simulator");
    let (_gateway, api) = start(&sim).await;

    let input = json!({
        "name": "team-a",
        "allowed_models": ["openai/gpt-4o-mini"],
        "budget_usd": "5",
        "budget_period": "month",
        "rpm": 100,
        "cache_ttl_secs": 300,
        "cache_shared": true,
    });
    let created = api
        .call(
            "POST",
            "/admin/v1/virtual-keys",
            "/admin/v1/virtual-keys",
            Some(&input),
        )
        .await
        .expect(201);
    let key = created["key"].as_str().expect("the key").to_owned();
    let after_creation = api.responses();
    assert_eq!(created["virtual_key"]["name"], "team-a");
    assert_eq!(created["virtual_key"]["status"], "active");
    assert_eq!(created["virtual_key"]["spend"]["spent_usd"], "0");
    assert_eq!(created["virtual_key"]["spend"]["remaining_usd"], "5");
    assert_eq!(created["virtual_key"]["cache_ttl_secs"], 300);
    assert_eq!(created["virtual_key"]["cache_shared"], true);

    // The key works at the gateway, and its spend shows.
    let answer = api
        .send(
            "POST",
            "/v1/chat/completions",
            "/v1/chat/completions",
            Some(&key),
            &[],
            Some(&json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    answer.expect(200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let one = api
            .get(
                "/admin/v1/virtual-keys/{name}",
                "/admin/v1/virtual-keys/team-a",
            )
            .await
            .expect(200);
        if one["spend"]["requests"] == 1 {
            assert_ne!(one["spend"]["spent_usd"], "0", "{one}");
            break;
        }
        assert!(Instant::now() < deadline, "no spend recorded: {one}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    api.call(
        "POST",
        "/admin/v1/virtual-keys",
        "/admin/v1/virtual-keys",
        Some(&input),
    )
    .await
    .failure(409, "conflict");
    for (body, field) in [
        (json!({"name": "b", "budget_usd": "-3"}), "budget_usd"),
        (json!({"name": "b", "budget_usd": "abc"}), "budget_usd"),
        (json!({"name": "b", "rpm": 0}), "rpm"),
        (json!({"name": "b", "cache_ttl_secs": 0}), "cache_ttl"),
        (
            json!({"name": "b", "cache_ttl_secs": 2_592_001}),
            "cache_ttl",
        ),
        (json!({"name": "b", "agent": "nobody"}), "agent"),
        (json!({"name": "b", "budget_period": "day"}), "budget_usd"),
        (json!({"name": "b c"}), "name"),
        (json!({"name": "b", "colour": "red"}), "colour"),
    ] {
        let err = api
            .call(
                "POST",
                "/admin/v1/virtual-keys",
                "/admin/v1/virtual-keys",
                Some(&body),
            )
            .await;
        let status = err.status;
        let err = err.expect(status);
        assert!(
            status == 422 || status == 404,
            "{body} gave {status}: {err}"
        );
        if status == 422 {
            assert_eq!(err["error"]["field"], field, "{body}: {err}");
        }
    }

    let list = api
        .get("/admin/v1/virtual-keys", "/admin/v1/virtual-keys")
        .await
        .expect(200);
    assert_eq!(list["virtual_keys"][0]["name"], "team-a");
    api.get(
        "/admin/v1/virtual-keys/{name}",
        "/admin/v1/virtual-keys/nobody",
    )
    .await
    .failure(404, "not_found");
    let revoked = api
        .call(
            "DELETE",
            "/admin/v1/virtual-keys/{name}",
            "/admin/v1/virtual-keys/team-a",
            None,
        )
        .await
        .expect(200);
    assert_eq!(revoked["status"], "revoked");
    api.call(
        "DELETE",
        "/admin/v1/virtual-keys/{name}",
        "/admin/v1/virtual-keys/nobody",
        None,
    )
    .await
    .failure(404, "not_found");
    // Refused within the lookup cache's half second.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = api
            .send(
                "POST",
                "/v1/chat/completions",
                "/v1/chat/completions",
                Some(&key),
                &[],
                Some(&json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})),
            )
            .await;
        if answer.status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "revoked key still works");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.assert_never_shown(&key, after_creation);

    // Admin tokens: made by the master key, usable at once, refused
    // where only the master key may act, and dead when revoked.
    let made = api
        .call(
            "POST",
            "/admin/v1/tokens",
            "/admin/v1/tokens",
            Some(&json!({"name": "ops"})),
        )
        .await
        .expect(201);
    let token = made["token"].as_str().expect("token").to_owned();
    let after_token = api.responses();
    assert!(token.starts_with("llmhost-admin-"), "{token}");
    api.call(
        "POST",
        "/admin/v1/tokens",
        "/admin/v1/tokens",
        Some(&json!({"name": "ops"})),
    )
    .await
    .failure(409, "conflict");
    let err = api
        .call(
            "POST",
            "/admin/v1/tokens",
            "/admin/v1/tokens",
            Some(&json!({"name": ""})),
        )
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "name");
    let listed = api
        .get("/admin/v1/tokens", "/admin/v1/tokens")
        .await
        .expect(200);
    assert_eq!(listed["tokens"][0]["name"], "ops");
    let as_ops = api
        .send(
            "GET",
            "/admin/v1/agents",
            "/admin/v1/agents",
            Some(&token),
            &[],
            None,
        )
        .await;
    as_ops.expect(200);
    api.send(
        "POST",
        "/admin/v1/tokens",
        "/admin/v1/tokens",
        Some(&token),
        &[],
        Some(&json!({"name": "escalated"})),
    )
    .await
    .failure(403, "forbidden");
    api.call(
        "DELETE",
        "/admin/v1/tokens/{name}",
        "/admin/v1/tokens/nobody",
        None,
    )
    .await
    .failure(404, "not_found");
    let gone = api
        .call(
            "DELETE",
            "/admin/v1/tokens/{name}",
            "/admin/v1/tokens/ops",
            None,
        )
        .await
        .expect(200);
    assert!(gone["revoked_at"].is_string());
    api.send(
        "GET",
        "/admin/v1/agents",
        "/admin/v1/agents",
        Some(&token),
        &[],
        None,
    )
    .await
    .failure(401, "unauthorized");
    api.assert_never_shown(&token, after_token);

    let status = api
        .get("/admin/v1/encryption", "/admin/v1/encryption")
        .await
        .expect(200);
    assert!(status["active_key"].is_string(), "{status}");
    assert_eq!(status["rotation_complete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sessions_need_their_csrf_token_and_end_with_their_token() {
    let sim = Simulator::start().await.expect("simulator");
    let (gateway, api) = start(&sim).await;
    let made = api
        .call(
            "POST",
            "/admin/v1/tokens",
            "/admin/v1/tokens",
            Some(&json!({"name": "web"})),
        )
        .await
        .expect(201);
    let token = made["token"].as_str().expect("token").to_owned();

    let refused = api
        .send(
            "POST",
            "/ui/api/session",
            "/ui/api/session",
            None,
            &[],
            Some(&json!({"token": "llmhost-admin-wrong"})),
        )
        .await;
    refused.failure(401, "unauthorized");
    assert!(refused.headers.get("set-cookie").is_none());

    let signed_in = api
        .send(
            "POST",
            "/ui/api/session",
            "/ui/api/session",
            None,
            &[],
            Some(&json!({"token": token})),
        )
        .await;
    let session = signed_in.expect(200);
    assert_eq!(session["admin"], "web");
    let csrf = session["csrf_token"].as_str().expect("csrf").to_owned();
    let set_cookie = signed_in.headers["set-cookie"].to_str().expect("cookie");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(!set_cookie.contains(&token), "{set_cookie}");
    let cookie = set_cookie.split(';').next().expect("pair").to_owned();

    let reloaded = api
        .send(
            "GET",
            "/ui/api/session",
            "/ui/api/session",
            None,
            &[("cookie", &cookie)],
            None,
        )
        .await
        .expect(200);
    assert_eq!(reloaded["csrf_token"], csrf.as_str());
    api.send(
        "GET",
        "/admin/v1/agents",
        "/admin/v1/agents",
        None,
        &[("cookie", &cookie)],
        None,
    )
    .await
    .expect(200);
    let body = json!({"name": "from-browser"});
    api.send(
        "POST",
        "/admin/v1/agents",
        "/admin/v1/agents",
        None,
        &[("cookie", &cookie)],
        Some(&body),
    )
    .await
    .failure(403, "forbidden");
    api.send(
        "POST",
        "/admin/v1/agents",
        "/admin/v1/agents",
        None,
        &[("cookie", &cookie), ("x-csrf-token", "not-the-token")],
        Some(&body),
    )
    .await
    .failure(403, "forbidden");
    api.send(
        "POST",
        "/admin/v1/agents",
        "/admin/v1/agents",
        None,
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        Some(&body),
    )
    .await
    .expect(201);
    // A made-up session is nobody's.
    api.send(
        "GET",
        "/admin/v1/agents",
        "/admin/v1/agents",
        None,
        &[("cookie", "llmhost_session=forged")],
        None,
    )
    .await
    .failure(401, "unauthorized");

    // Revoking the token ends the session.
    api.call(
        "DELETE",
        "/admin/v1/tokens/{name}",
        "/admin/v1/tokens/web",
        None,
    )
    .await
    .expect(200);
    api.send(
        "GET",
        "/admin/v1/agents",
        "/admin/v1/agents",
        None,
        &[("cookie", &cookie)],
        None,
    )
    .await
    .failure(401, "unauthorized");

    // The CLI makes, lists and revokes tokens in the same store.
    let made = gateway
        .cli(&["admin-tokens", "create", "from-cli", "--json"])
        .await;
    let cli_token = made["token"].as_str().expect("token").to_owned();
    api.send(
        "GET",
        "/admin/v1/agents",
        "/admin/v1/agents",
        Some(&cli_token),
        &[],
        None,
    )
    .await
    .expect(200);
    let listed = gateway.cli(&["admin-tokens", "list", "--json"]).await;
    let names: Vec<&str> = listed["admin_tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["from-cli", "web"]);
    assert!(!listed.to_string().contains(&cli_token));
    gateway
        .cli(&["admin-tokens", "revoke", "from-cli", "--json"])
        .await;
    api.send(
        "GET",
        "/admin/v1/agents",
        "/admin/v1/agents",
        Some(&cli_token),
        &[],
        None,
    )
    .await
    .failure(401, "unauthorized");

    // Signing out ends a master-key session.
    let master = api
        .send(
            "POST",
            "/ui/api/session",
            "/ui/api/session",
            None,
            &[],
            Some(&json!({"token": MASTER_KEY})),
        )
        .await;
    master.expect(200);
    let cookie = master.headers["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    api.send(
        "DELETE",
        "/ui/api/session",
        "/ui/api/session",
        None,
        &[("cookie", &cookie)],
        None,
    )
    .await
    .expect(204);
    api.send(
        "GET",
        "/ui/api/session",
        "/ui/api/session",
        None,
        &[("cookie", &cookie)],
        None,
    )
    .await
    .failure(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reports_plugins_health_and_the_playground() {
    let sim = Simulator::start().await.expect("simulator");
    let (gateway, api) = start(&sim).await;
    let first = chat(&api, "openai/gpt-4o-mini").await;
    let second = chat(&api, "claude/claude-sonnet-4-5").await;
    gateway.usage_of(&first, 1).await;
    gateway.usage_of(&second, 1).await;

    let totals = api
        .get(
            "/admin/v1/usage",
            "/admin/v1/usage?group_by=provider&since=1h",
        )
        .await
        .expect(200);
    let rows = totals["rows"].as_array().expect("rows");
    let groups: Vec<&str> = rows.iter().filter_map(|r| r["group"].as_str()).collect();
    assert_eq!(groups, ["claude", "openai"], "{totals}");
    for row in rows {
        assert_eq!(row["requests"], 1, "{row}");
        assert_eq!(row["errors"], 0, "{row}");
        assert!(row["p99_ms"].is_u64(), "{row}");
    }
    let by_model = api
        .get("/admin/v1/usage", "/admin/v1/usage?group_by=model")
        .await
        .expect(200);
    assert_eq!(
        by_model["rows"][1]["group"], "openai/gpt-4o-mini",
        "{by_model}"
    );
    // The sum of the rows' costs equals the report's, exactly.
    let stored: Vec<String> = gateway
        .usage_rows()
        .iter()
        .filter_map(|r| r.cost_usd.clone())
        .collect();
    assert_eq!(stored.len(), 2);
    let err = api
        .get("/admin/v1/usage", "/admin/v1/usage?since=yesterday")
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "since");
    let err = api
        .get("/admin/v1/usage", "/admin/v1/usage?group_by=colour")
        .await;
    assert_eq!(err.status, 400, "{}", err.text);

    let series = api
        .get(
            "/admin/v1/usage/series",
            "/admin/v1/usage/series?bucket=hour&group_by=provider&since=24h",
        )
        .await
        .expect(200);
    assert_eq!(series["bucket"], "hour");
    let openai = series["series"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["group"] == "openai"))
        .expect("openai series");
    assert_eq!(openai["points"][0]["requests"], 1, "{series}");
    assert_eq!(openai["points"][0]["error_rate"], 0.0);
    assert!(
        openai["points"][0]["start"]
            .as_str()
            .is_some_and(|s| s.ends_with(":00:00Z")),
        "{series}"
    );
    let daily = api
        .get(
            "/admin/v1/usage/series",
            "/admin/v1/usage/series?bucket=day&group_by=agent",
        )
        .await
        .expect(200);
    assert_eq!(daily["series"][0]["group"], "(none)", "{daily}");
    api.get(
        "/admin/v1/usage/series",
        "/admin/v1/usage/series?until=2000-01-01T00:00:00Z",
    )
    .await
    .failure(422, "validation");

    let one = api
        .get(
            "/admin/v1/usage/requests/{request_id}",
            &format!("/admin/v1/usage/requests/{first}"),
        )
        .await
        .expect(200);
    assert_eq!(one["events"][0]["provider"], "openai");
    assert_eq!(one["events"][0]["status"], "ok");
    assert!(one["events"][0]["input_tokens"].as_u64() > Some(0));
    api.get(
        "/admin/v1/usage/requests/{request_id}",
        "/admin/v1/usage/requests/no-such-request",
    )
    .await
    .failure(404, "not_found");

    let csv = api.get("/admin/v1/usage.csv", "/admin/v1/usage.csv").await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/csv")),
    );
    let lines: Vec<&str> = csv.text.lines().collect();
    assert!(
        lines[0].starts_with("id,created_at,request_id,route,"),
        "{}",
        csv.text
    );
    assert_eq!(lines.len(), 3, "{}", csv.text);
    assert!(lines.iter().any(|l| l.contains(&first)), "{}", csv.text);
    api.get("/admin/v1/usage.csv", "/admin/v1/usage.csv?since=soon")
        .await
        .failure(422, "validation");

    let plugins = api
        .get("/admin/v1/plugins", "/admin/v1/plugins")
        .await
        .expect(200);
    let ids: Vec<&str> = plugins["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, ["claude", "deepseek", "grok", "openai"]);
    let openai = api
        .get("/admin/v1/plugins/{id}", "/admin/v1/plugins/openai")
        .await
        .expect(200);
    assert_eq!(openai["installed"], true);
    assert!(
        openai["hosts"].as_array().is_some_and(|h| !h.is_empty()),
        "{openai}"
    );
    assert!(
        openai["catalogue"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
    );
    api.get("/admin/v1/plugins/{id}", "/admin/v1/plugins/nobody")
        .await
        .failure(404, "not_found");

    let models = api
        .get("/admin/v1/models", "/admin/v1/models?provider=deepseek")
        .await
        .expect(200);
    let models = models["models"].as_array().expect("models");
    assert!(models.iter().all(|m| m["provider"] == "deepseek"));
    assert!(models.iter().any(|m| m["model"] == "deepseek-chat"));
    assert!(models.iter().all(|m| m["overridden"] == false));
    api.get("/admin/v1/models", "/admin/v1/models?provider=nobody")
        .await
        .failure(404, "not_found");

    let health = api
        .get("/admin/v1/providers/health", "/admin/v1/providers/health")
        .await
        .expect(200);
    let providers = health["providers"].as_array().expect("providers");
    assert_eq!(providers.len(), 4, "{health}");
    for provider in providers {
        assert_eq!(provider["healthy"], true, "{provider}");
    }
    let openai = providers
        .iter()
        .find(|p| p["provider"] == "openai")
        .expect("openai");
    assert_eq!(
        openai["circuits"]
            .as_object()
            .map(|c| c.values().all(|s| s == "closed")),
        Some(true),
        "{openai}"
    );

    // The playground streams, and its usage is found by its request id.
    let streamed = api
        .call(
            "POST",
            "/admin/v1/playground/chat",
            "/admin/v1/playground/chat",
            Some(&json!({
                "model": "grok/grok-3",
                "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "stream this back to me please"}],
            })),
        )
        .await;
    assert_eq!(streamed.status, 200, "{}", streamed.text);
    let chunks: Vec<Value> = streamed
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("chunk"))
        .collect();
    let pieces = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert!(pieces > 1, "{}", streamed.text);
    let id = streamed.headers["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    gateway.usage_of(&id, 1).await;
    let usage = api
        .get(
            "/admin/v1/usage/requests/{request_id}",
            &format!("/admin/v1/usage/requests/{id}"),
        )
        .await
        .expect(200);
    assert_eq!(usage["events"][0]["streamed"], true);
    assert!(usage["events"][0]["ttft_ms"].is_u64(), "{usage}");
    api.call(
        "POST",
        "/admin/v1/playground/chat",
        "/admin/v1/playground/chat",
        Some(&json!({"model": "nobody/none", "messages": [{"role": "user", "content": "x"}]})),
    )
    .await
    .expect(404);
}

/// A vendor key as an operator would paste it; it must never come back.
const SECRET_KEY: &str = "sk-test-NEVER-SHOWN-0123456789abcdWXYZ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_are_checked_updated_with_compare_and_set_and_never_show_their_key() {
    let sim = Simulator::start().await.expect("simulator");
    let (_gateway, api) = start(&sim).await;
    let agent = api
        .call(
            "POST",
            "/admin/v1/agents",
            "/admin/v1/agents",
            Some(&json!({"name": "writer"})),
        )
        .await
        .expect(201);
    let route = "/admin/v1/agents/{name}/configs";
    let path = "/admin/v1/agents/writer/configs";

    // Refusals name their field.
    for (body, field) in [
        (
            json!({"provider": "openai", "model": "gpt-4o-mini", "temperature": 5}),
            "temperature",
        ),
        (
            json!({"provider": "openai", "model": "gpt-4o-mini", "temperature": "warm"}),
            "temperature",
        ),
        (
            json!({"provider": "openai", "model": "gpt-4o-mini", "top_p": 1.5}),
            "top_p",
        ),
        (
            json!({"provider": "openai", "model": "gpt-4o-mini", "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"provider": "openai", "model": "no-such-model"}),
            "model",
        ),
        (
            json!({"provider": "nobody", "model": "gpt-4o-mini"}),
            "provider",
        ),
        (json!({"provider": "openai"}), "model"),
        (
            json!({"provider": "openai", "model": "gpt-4o-mini", "temprature": 0.5}),
            "temprature",
        ),
        (
            json!({"provider": "openai", "model": "gpt-4o-mini",
                "prices": {"input": "-1", "output": "2"}}),
            "prices.input",
        ),
        (
            json!({"provider": "openai", "model": "gpt-4o-mini", "base_url": "ftp://x"}),
            "base_url",
        ),
        (
            json!({"provider": "openai", "model": "gpt-4o-mini", "api_key": "has space"}),
            "api_key",
        ),
    ] {
        let err = api
            .call("POST", route, path, Some(&body))
            .await
            .failure(422, "validation");
        assert_eq!(err["field"], field, "{body}: {err}");
    }
    api.call(
        "POST",
        route,
        "/admin/v1/agents/nobody/configs",
        Some(&json!({"provider": "openai", "model": "gpt-4o-mini"})),
    )
    .await
    .failure(404, "not_found");

    let first = api
        .call(
            "POST",
            route,
            path,
            Some(&json!({
                "provider": "openai",
                "model": "gpt-4o-mini",
                "temperature": 0.3,
                "api_key": SECRET_KEY,
                "prices": {"input": "2.5", "output": "10"},
            })),
        )
        .await
        .expect(201);
    assert_eq!(first["has_api_key"], true);
    assert_eq!(first["api_key_hint"], "…WXYZ");
    assert_eq!(first["agent"], "writer");
    assert_eq!(first["prices"]["input"], "2.5");
    assert!(first.get("api_key").is_none(), "{first}");
    let id = first["id"].as_i64().expect("id");
    let second = api
        .call(
            "POST",
            route,
            path,
            Some(&json!({"provider": "claude", "model": "claude-sonnet-4-5", "priority": 1})),
        )
        .await
        .expect(201);
    let second_id = second["id"].as_i64().expect("id");

    let one = "/admin/v1/configs/{id}";
    let at = format!("/admin/v1/configs/{id}");
    let read = api.get(one, &at).await.expect(200);
    assert_eq!(read["temperature"], 0.3);
    api.get(one, "/admin/v1/configs/999999")
        .await
        .failure(404, "not_found");
    api.get(one, "/admin/v1/configs/abc")
        .await
        .failure(404, "not_found");

    // Compare-and-set: the stamp read is required and must be current.
    let stamp = read["updated_at"].as_str().expect("stamp").to_owned();
    let err = api
        .call("PATCH", one, &at, Some(&json!({"temperature": 0.9})))
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "updated_at");
    let changed = api
        .call(
            "PATCH",
            one,
            &at,
            Some(&json!({"updated_at": stamp, "temperature": null, "max_tokens": 256})),
        )
        .await
        .expect(200);
    assert_eq!(changed["temperature"], Value::Null);
    assert_eq!(changed["max_tokens"], 256);
    assert_ne!(changed["updated_at"], stamp.as_str());
    api.call(
        "PATCH",
        one,
        &at,
        Some(&json!({"updated_at": stamp, "temperature": 1.0})),
    )
    .await
    .failure(409, "conflict");
    let fresh = changed["updated_at"].as_str().expect("stamp").to_owned();
    let err = api
        .call(
            "PATCH",
            one,
            &at,
            Some(&json!({"updated_at": fresh, "temperature": 9})),
        )
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "temperature");
    // The stored key is bound to where it goes: moving it needs the key.
    let err = api
        .call(
            "PATCH",
            one,
            &at,
            Some(&json!({"updated_at": fresh, "base_url": "http://127.0.0.1:9/v1"})),
        )
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "base_url");
    api.call(
        "PATCH",
        one,
        "/admin/v1/configs/999999",
        Some(&json!({"updated_at": fresh, "temperature": 1.0})),
    )
    .await
    .failure(404, "not_found");

    let listed = api.get(route, path).await.expect(200);
    let ids: Vec<i64> = listed["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .filter_map(|c| c["id"].as_i64())
        .collect();
    assert_eq!(ids, [id, second_id]);
    let order = "/admin/v1/agents/{name}/configs/order";
    let reordered = api
        .call(
            "PUT",
            order,
            "/admin/v1/agents/writer/configs/order",
            Some(&json!({"ids": [second_id, id]})),
        )
        .await
        .expect(200);
    assert_eq!(reordered["configs"][0]["id"], second_id);
    assert_eq!(reordered["configs"][0]["priority"], 0);
    assert_eq!(reordered["configs"][1]["priority"], 1);
    let err = api
        .call(
            "PUT",
            order,
            "/admin/v1/agents/writer/configs/order",
            Some(&json!({"ids": [id]})),
        )
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "ids");

    // The health check runs with the stored key, against the simulator.
    let checked = api
        .call(
            "POST",
            "/admin/v1/configs/{id}/validate",
            &format!("/admin/v1/configs/{id}/validate"),
            None,
        )
        .await
        .expect(200);
    assert_eq!(checked["healthy"], true, "{checked}");
    api.call(
        "POST",
        "/admin/v1/configs/{id}/validate",
        "/admin/v1/configs/999999/validate",
        None,
    )
    .await
    .failure(404, "not_found");

    let key_route = "/admin/v1/configs/{id}/api-key";
    let key_path = format!("/admin/v1/configs/{second_id}/api-key");
    let keyed = api
        .call(
            "PUT",
            key_route,
            &key_path,
            Some(&json!({"api_key": format!("{SECRET_KEY}-2")})),
        )
        .await
        .expect(200);
    assert_eq!(keyed["has_api_key"], true);
    let err = api
        .call("PUT", key_route, &key_path, Some(&json!({"api_key": ""})))
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "api_key");
    let cleared = api
        .call("DELETE", key_route, &key_path, None)
        .await
        .expect(200);
    assert_eq!(cleared["has_api_key"], false);
    assert_eq!(cleared["api_key_hint"], Value::Null);
    api.call(
        "DELETE",
        key_route,
        "/admin/v1/configs/999999/api-key",
        None,
    )
    .await
    .failure(404, "not_found");

    // Agents: compare-and-set too.
    let agent_route = "/admin/v1/agents/{name}";
    let stamp = agent["updated_at"].as_str().expect("stamp").to_owned();
    let renamed = api
        .call(
            "PATCH",
            agent_route,
            "/admin/v1/agents/writer",
            Some(&json!({"updated_at": stamp, "description": "drafts"})),
        )
        .await
        .expect(200);
    assert_eq!(renamed["description"], "drafts");
    assert_eq!(renamed["configs"], 2);
    assert_eq!(renamed["balance"], "priority", "unchanged");
    let balanced = api
        .call(
            "PATCH",
            agent_route,
            "/admin/v1/agents/writer",
            Some(&json!({"updated_at": renamed["updated_at"], "balance": "lowest_latency"})),
        )
        .await
        .expect(200);
    assert_eq!(
        (&balanced["balance"], &balanced["description"]),
        (&json!("lowest_latency"), &json!("drafts"))
    );
    let err = api
        .call(
            "PATCH",
            agent_route,
            "/admin/v1/agents/writer",
            Some(&json!({"updated_at": balanced["updated_at"], "balance": "random"})),
        )
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "balance", "{err}");
    api.call(
        "PATCH",
        agent_route,
        "/admin/v1/agents/writer",
        Some(&json!({"updated_at": stamp, "description": "stale"})),
    )
    .await
    .failure(409, "conflict");
    let err = api
        .call(
            "PATCH",
            agent_route,
            "/admin/v1/agents/writer",
            Some(&json!({"description": "no stamp"})),
        )
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "updated_at");
    api.call(
        "PATCH",
        agent_route,
        "/admin/v1/agents/nobody",
        Some(&json!({"updated_at": stamp})),
    )
    .await
    .failure(404, "not_found");

    api.call("DELETE", one, &at, None).await.expect(204);
    api.call("DELETE", one, &at, None)
        .await
        .failure(404, "not_found");

    api.assert_never_shown(SECRET_KEY, 0);
}

/// The report of `name` once it counts `calls` calls (usage rows are
/// written off the request path).
async fn report_of(api: &Api, name: &str, calls: u64) -> Value {
    let started = Instant::now();
    loop {
        let report = api
            .get(
                "/admin/v1/experiments/{name}/report",
                &format!("/admin/v1/experiments/{name}/report"),
            )
            .await
            .expect(200);
        let counted: u64 = report["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .map(|v| v["requests"].as_u64().expect("requests"))
            .sum();
        if counted >= calls {
            return report;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{report}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiments_are_created_assign_users_across_protocols_stop_and_report() {
    let sim = Simulator::start().await.expect("simulator");
    let (_gateway, api) = start(&sim).await;
    api.call(
        "POST",
        "/admin/v1/agents",
        "/admin/v1/agents",
        Some(&json!({"name": "shop"})),
    )
    .await
    .expect(201);
    api.call(
        "POST",
        "/admin/v1/agents/{name}/configs",
        "/admin/v1/agents/shop/configs",
        Some(&json!({"provider": "openai", "model": "gpt-4o-mini"})),
    )
    .await
    .expect(201);
    let route = "/admin/v1/experiments";
    let body = json!({
        "name": "haiku-trial",
        "agent": "shop",
        "sticky": "user",
        "variants": [
            {"name": "control", "weight": 1, "provider": "openai", "model": "gpt-4o-mini"},
            {"name": "haiku", "weight": 1, "provider": "claude",
             "model": "claude-haiku-4-5", "temperature": 0.2},
        ],
    });
    let created = api
        .call("POST", route, route, Some(&body))
        .await
        .expect(201);
    assert_eq!(created["status"], "active");
    assert_eq!(created["agent"], "shop");
    assert_eq!(created["variants"][1]["temperature"], 0.2);

    // Refusals: a taken name, a second active experiment of the agent, an
    // unknown agent, a weight of 0, one variant, an unknown field.
    api.call("POST", route, route, Some(&body))
        .await
        .failure(409, "conflict");
    let mut other = body.clone();
    other["name"] = json!("second");
    api.call("POST", route, route, Some(&other))
        .await
        .failure(409, "conflict");
    other["agent"] = json!("nobody");
    api.call("POST", route, route, Some(&other))
        .await
        .failure(404, "not_found");
    let mut bad = body.clone();
    bad["name"] = json!("bad");
    bad["variants"][1]["weight"] = json!(0);
    let err = api
        .call("POST", route, route, Some(&bad))
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "variants.weight");
    bad["variants"] = json!([body["variants"][0]]);
    let err = api
        .call("POST", route, route, Some(&bad))
        .await
        .failure(422, "validation");
    assert_eq!(err["field"], "variants");
    bad["variants"] = body["variants"].clone();
    bad["variants"][0]["colour"] = json!("red");
    api.call("POST", route, route, Some(&bad))
        .await
        .failure(422, "validation");

    // One user through the OpenAI route (`user`) and the Anthropic route
    // (`metadata.user_id`): every call lands on the same variant.
    for _ in 0..3 {
        api.send(
            "POST",
            "/v1/chat/completions",
            "/v1/chat/completions",
            Some(MASTER_KEY),
            &[],
            Some(&json!({"model": "agent:shop", "user": "customer-7",
                "messages": [{"role": "user", "content": "hello"}]})),
        )
        .await
        .expect(200);
        api.send(
            "POST",
            "/v1/messages",
            "/v1/messages",
            None,
            &[
                ("x-api-key", MASTER_KEY),
                ("anthropic-version", "2023-06-01"),
            ],
            Some(&json!({"model": "agent:shop", "max_tokens": 64,
                "metadata": {"user_id": "customer-7"},
                "messages": [{"role": "user", "content": "hello"}]})),
        )
        .await
        .expect(200);
    }
    let report = report_of(&api, "haiku-trial", 6).await;
    let requests: Vec<u64> = report["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["requests"].as_u64().unwrap())
        .collect();
    assert!(requests == [6, 0] || requests == [0, 6], "{report}");
    assert_eq!(report["variants"][0]["errors"], 0);

    let one = api
        .get(
            "/admin/v1/experiments/{name}",
            "/admin/v1/experiments/haiku-trial",
        )
        .await
        .expect(200);
    assert_eq!(one["name"], "haiku-trial");
    let list = api.get(route, route).await.expect(200);
    assert_eq!(list["experiments"][0]["name"], "haiku-trial");
    api.get("/admin/v1/experiments/{name}", "/admin/v1/experiments/nope")
        .await
        .failure(404, "not_found");
    api.get(
        "/admin/v1/experiments/{name}/report",
        "/admin/v1/experiments/nope/report",
    )
    .await
    .failure(404, "not_found");

    let stop = "/admin/v1/experiments/{name}/stop";
    let stopped = api
        .call("POST", stop, "/admin/v1/experiments/haiku-trial/stop", None)
        .await
        .expect(200);
    assert_eq!(stopped["status"], "stopped");
    assert!(stopped["stopped_at"].is_string());
    api.call("POST", stop, "/admin/v1/experiments/haiku-trial/stop", None)
        .await
        .failure(409, "conflict");
    api.call("POST", stop, "/admin/v1/experiments/nope/stop", None)
        .await
        .failure(404, "not_found");
    // The report stays; the agent may start another experiment.
    assert_eq!(
        report_of(&api, "haiku-trial", 6).await["variants"],
        report["variants"]
    );
    other["agent"] = json!("shop");
    api.call("POST", route, route, Some(&other))
        .await
        .expect(201);
}

/// The routes of the OpenAPI document, as `(method, path)`.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            routes.insert((method.clone(), path.clone()));
        }
    }
    routes
}

/// `template` with every `{param}` filled in with `value`.
fn filled(template: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').expect("closed") + open;
        out.push_str(value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_refuses_strangers_and_the_document_validates() {
    let sim = Simulator::start().await.expect("simulator");
    let (_gateway, api) = start(&sim).await;
    let doc = api
        .send(
            "GET",
            "/admin/v1/openapi.json",
            "/admin/v1/openapi.json",
            None,
            &[],
            None,
        )
        .await
        .expect(200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let routes = documented(&doc);
    assert!(routes.len() >= 20, "{routes:?}");

    // No credentials, a wrong key, a virtual key's shape: 401 everywhere
    // but the document itself.
    for (method, route) in &routes {
        if route == "/admin/v1/openapi.json" {
            continue;
        }
        let path = filled(route, "x1");
        for token in [
            None,
            Some("sk-wrong"),
            Some("llmhost-admin-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ] {
            let answer = api
                .send(
                    &method.to_uppercase(),
                    route,
                    &path,
                    token,
                    &[],
                    Some(&json!({})),
                )
                .await;
            assert_eq!(
                answer.status, 401,
                "{method} {path} with {token:?}: {}",
                answer.text
            );
            assert_eq!(answer.json()["error"]["kind"], "unauthorized");
        }
    }

    // The document is valid OpenAPI, by an independent validator.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("write");
    let output = std::process::Command::new(sdk_python())
        .arg("-c")
        .arg(
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             validate(json.load(open(sys.argv[1])))\n\
             print('valid')",
        )
        .arg(&file)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the OpenAPI document does not validate: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The document names exactly the routes the tests above cover (listed
/// in `TESTED`), and each of them is routed: a route added without its
/// annotation, or documented without a route, fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_names_exactly_the_tested_routes() {
    let sim = Simulator::start().await.expect("simulator");
    let (_gateway, api) = start(&sim).await;
    let doc = api
        .send(
            "GET",
            "/admin/v1/openapi.json",
            "/admin/v1/openapi.json",
            None,
            &[],
            None,
        )
        .await
        .expect(200);
    let tested: BTreeSet<(String, String)> = TESTED
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented(&doc), tested);
    // And each is really routed: an unrouted path answers the gateway's
    // 404 in OpenAI's shape, not the admin API's 401.
    for (method, route) in &tested {
        if route == "/admin/v1/openapi.json" {
            continue;
        }
        let answer = api
            .send(
                &method.to_uppercase(),
                route,
                &filled(route, "x1"),
                None,
                &[],
                None,
            )
            .await;
        assert_eq!(
            answer.status, 401,
            "{method} {route} is not routed: {}",
            answer.text
        );
    }
}

/// The routes the tests above exercise.
const TESTED: &[(&str, &str)] = &[
    ("get", "/admin/v1/agents"),
    ("post", "/admin/v1/agents"),
    ("get", "/admin/v1/agents/{name}"),
    ("patch", "/admin/v1/agents/{name}"),
    ("delete", "/admin/v1/agents/{name}"),
    ("get", "/admin/v1/agents/{name}/configs"),
    ("post", "/admin/v1/agents/{name}/configs"),
    ("put", "/admin/v1/agents/{name}/configs/order"),
    ("get", "/admin/v1/configs/{id}"),
    ("patch", "/admin/v1/configs/{id}"),
    ("delete", "/admin/v1/configs/{id}"),
    ("post", "/admin/v1/configs/{id}/validate"),
    ("put", "/admin/v1/configs/{id}/api-key"),
    ("delete", "/admin/v1/configs/{id}/api-key"),
    ("put", "/admin/v1/agents/{name}/budget"),
    ("delete", "/admin/v1/agents/{name}/budget"),
    ("put", "/admin/v1/agents/{name}/cache"),
    ("delete", "/admin/v1/agents/{name}/cache"),
    ("get", "/admin/v1/virtual-keys"),
    ("post", "/admin/v1/virtual-keys"),
    ("get", "/admin/v1/virtual-keys/{name}"),
    ("delete", "/admin/v1/virtual-keys/{name}"),
    ("get", "/admin/v1/tokens"),
    ("post", "/admin/v1/tokens"),
    ("delete", "/admin/v1/tokens/{name}"),
    ("get", "/admin/v1/encryption"),
    ("get", "/admin/v1/experiments"),
    ("post", "/admin/v1/experiments"),
    ("get", "/admin/v1/experiments/{name}"),
    ("post", "/admin/v1/experiments/{name}/stop"),
    ("get", "/admin/v1/experiments/{name}/report"),
    ("get", "/admin/v1/usage"),
    ("get", "/admin/v1/usage/series"),
    ("get", "/admin/v1/usage/requests/{request_id}"),
    ("get", "/admin/v1/usage.csv"),
    ("get", "/admin/v1/plugins"),
    ("get", "/admin/v1/plugins/{id}"),
    ("get", "/admin/v1/models"),
    ("get", "/admin/v1/providers/health"),
    ("post", "/admin/v1/playground/chat"),
    ("get", "/admin/v1/openapi.json"),
];
