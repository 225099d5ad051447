//! `llmhost serve` as the vendors' official Python SDKs (`openai`,
//! `anthropic`) see it: one gateway process per test, in front of the
//! vendor simulator, driven by `tests/sdk_clients/gateway.py` with the
//! SDKs' retries off, so what a test sees is what the gateway did. Both
//! protocols reach all four providers; tool calls, usage on streams, each
//! error status as the SDK's exception class, and the upstream's rate
//! limits as the gateway retries them. Every answer's request id is found
//! again in the usage table.

mod common;

use common::gateway::{
    Gateway, MASTER_KEY, PROVIDERS, Setup, UsageRow, call, sdk_calls, upstream_key,
};
use llmhost_simulator::{RecordedRequest, Reply, Simulator, Vendor};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::HashSet;

/// What the driver says to each model (`gateway.py`).
const USER_TEXT: &str = "Hello gateway";
const TOOL_TEXT: &str = "What is the weather in Paris?";

fn route(provider: &str, model: &str) -> String {
    format!("{provider}/{model}")
}

/// `sdk op model` of a result, to name it in failures.
fn what(result: &Value) -> String {
    let call = &result["call"];
    format!(
        "{} {} {}",
        call["sdk"].as_str().unwrap_or("?"),
        call["op"].as_str().unwrap_or("?"),
        call["model"].as_str().unwrap_or("?")
    )
}

fn tokens(result: &Value, field: &str) -> u64 {
    result[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: no {field}: {result}", what(result)))
}

fn request_id(result: &Value) -> &str {
    let id = result["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no request id header: {result}", what(result)));
    assert!(!id.is_empty(), "{}", what(result));
    id
}

/// The chat requests the simulator got from `vendor`.
fn chats_to(sim: &Simulator, vendor: Vendor) -> Vec<RecordedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| {
            r.vendor == Some(vendor)
                && r.method == "POST"
                && (r.path.ends_with("/chat/completions") || r.path.ends_with("/v1/messages"))
        })
        .collect()
}

/// Asserts the one usage row of a successful call matches what the SDK
/// reported.
async fn assert_one_usage_row(gateway: &Gateway, result: &Value, streamed: bool) -> UsageRow {
    let route = result["call"]["model"].as_str().expect("route");
    let (provider, model) = route.split_once('/').expect("PROVIDER/MODEL");
    let rows = gateway.usage_of(request_id(result), 1).await;
    assert_eq!(rows.len(), 1, "{}: {rows:?}", what(result));
    let row = rows.into_iter().next().expect("one row");
    assert_eq!(
        (
            row.route.as_deref(),
            row.provider.as_str(),
            row.model.as_str(),
            row.status.as_str(),
            row.streamed
        ),
        (Some(route), provider, model, "ok", streamed),
        "{}",
        what(result)
    );
    assert_eq!(
        (row.input_tokens, row.output_tokens),
        (
            tokens(result, "prompt_tokens"),
            tokens(result, "completion_tokens")
        ),
        "{}: the usage row counts what the client was told",
        what(result)
    );
    let cost = row
        .cost_usd
        .as_deref()
        .and_then(|c| Decimal::from_str_exact(c).ok())
        .unwrap_or_else(|| panic!("{}: no cost: {row:?}", what(result)));
    assert!(cost > Decimal::ZERO, "{}: {row:?}", what(result));
    row
}

#[tokio::test(flavor = "multi_thread")]
async fn both_sdks_chat_and_stream_through_all_four_providers() {
    let sim = Simulator::start().await.expect("simulator");
    let gateway = Setup::new(&sim).start().await;
    let mut calls = Vec::new();
    for sdk in ["openai", "anthropic"] {
        for (provider, _, model) in PROVIDERS {
            for op in ["chat", "stream"] {
                calls.push(call(sdk, op, &route(provider, model), MASTER_KEY));
            }
        }
    }
    let results = sdk_calls(&gateway.url(), calls).await;

    let mut ids = HashSet::new();
    for result in &results {
        let name = what(result);
        assert_eq!(result["ok"], true, "{name}: {result}");
        let sdk = result["call"]["sdk"].as_str().expect("sdk");
        let streamed = result["call"]["op"] == "stream";
        assert_eq!(result["model"], result["call"]["model"], "{name}");
        let content = result["content"].as_str().expect("content");
        assert!(
            content.contains(&format!("You said: {USER_TEXT}")),
            "{name}: {content:?}"
        );
        let finish = if sdk == "openai" { "stop" } else { "end_turn" };
        assert_eq!(result["finish_reason"], finish, "{name}");
        assert!(tokens(result, "prompt_tokens") > 0, "{name}");
        assert!(tokens(result, "completion_tokens") > 0, "{name}");
        if streamed && sdk == "openai" {
            // `include_usage`: one extra chunk, the last, with no choices.
            assert_eq!(result["usage_chunks"], 1, "{name}: {result}");
            assert_eq!(result["last_chunk_choices"], 0, "{name}: {result}");
            assert!(tokens(result, "chunks") >= 3, "{name}: {result}");
        }
        if streamed && sdk == "anthropic" {
            let events: Vec<&str> = result["events"]
                .as_array()
                .expect("events")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(events.first(), Some(&"message_start"), "{name}: {events:?}");
            assert_eq!(events.last(), Some(&"message_stop"), "{name}: {events:?}");
            for event in [
                "content_block_start",
                "content_block_delta",
                "message_delta",
            ] {
                assert!(events.contains(&event), "{name}: {events:?}");
            }
        }
        assert!(
            ids.insert(request_id(result).to_owned()),
            "{name}: reused id"
        );
        assert_one_usage_row(&gateway, result, streamed).await;
    }

    // Each vendor got its four calls, with the gateway's key for it and
    // never the client's.
    for (provider, vendor, model) in PROVIDERS {
        let chats = chats_to(&sim, *vendor);
        assert_eq!(chats.len(), 4, "{provider}");
        for chat in &chats {
            let headers = || chat.headers.iter().map(|(_, v)| v.as_str());
            assert!(
                headers().any(|v| v.contains(upstream_key(*vendor))),
                "{provider}: {:?}",
                chat.headers
            );
            assert!(!headers().any(|v| v.contains(MASTER_KEY)), "{provider}");
            assert_eq!(chat.json().expect("JSON")["model"], *model, "{provider}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_calls_cross_both_protocols() {
    let sim = Simulator::start().await.expect("simulator");
    let gateway = Setup::new(&sim).start().await;
    let mut calls = Vec::new();
    for sdk in ["openai", "anthropic"] {
        for (provider, _, model) in PROVIDERS {
            for op in ["tools", "tools-stream"] {
                calls.push(call(sdk, op, &route(provider, model), MASTER_KEY));
            }
        }
    }
    let results = sdk_calls(&gateway.url(), calls).await;

    for result in &results {
        let name = what(result);
        assert_eq!(result["ok"], true, "{name}: {result}");
        let sdk = result["call"]["sdk"].as_str().expect("sdk");
        let finish = if sdk == "openai" {
            "tool_calls"
        } else {
            "tool_use"
        };
        assert_eq!(result["finish_reason"], finish, "{name}: {result}");
        let tools = result["tools"].as_array().expect("tools");
        assert_eq!(tools.len(), 1, "{name}: {result}");
        assert_eq!(tools[0]["name"], "get_weather", "{name}");
        // The simulator calls the tool with the user's text.
        assert_eq!(
            tools[0]["arguments"],
            json!({"query": TOOL_TEXT}),
            "{name}: the arguments arrive whole and parse"
        );
        assert!(
            tools[0]["id"].as_str().is_some_and(|id| !id.is_empty()),
            "{name}: {result}"
        );
        assert!(tokens(result, "completion_tokens") > 0, "{name}");
        let streamed = result["call"]["op"] == "tools-stream";
        assert_one_usage_row(&gateway, result, streamed).await;
    }

    // The definition reached each vendor in its own shape, and so did
    // "call some tool" (OpenAI's `required`, Anthropic's `any`).
    for (provider, vendor, _) in PROVIDERS {
        let chats = chats_to(&sim, *vendor);
        assert_eq!(chats.len(), 4, "{provider}");
        for chat in &chats {
            let body = chat.json().expect("JSON");
            let tool = &body["tools"][0];
            if *vendor == Vendor::Anthropic {
                assert_eq!(tool["name"], "get_weather", "{provider}: {body}");
                assert_eq!(tool["input_schema"]["type"], "object", "{provider}: {body}");
                assert_eq!(body["tool_choice"]["type"], "any", "{provider}: {body}");
            } else {
                assert_eq!(tool["type"], "function", "{provider}: {body}");
                assert_eq!(tool["function"]["name"], "get_weather", "{provider}");
                assert_eq!(
                    tool["function"]["parameters"]["type"], "object",
                    "{provider}: {body}"
                );
                assert_eq!(body["tool_choice"], "required", "{provider}: {body}");
            }
        }
    }
}

/// Asserts `result` is the exception `class` of its SDK, for `status`.
fn assert_raised(result: &Value, class: &str, status: u16) {
    let name = what(result);
    assert_eq!(result["ok"], false, "{name}: {result}");
    assert_eq!(
        (result["error"].as_str(), result["status"].as_u64()),
        (Some(class), Some(u64::from(status))),
        "{name}: {result}"
    );
    assert_eq!(
        result["module"], result["call"]["sdk"],
        "{name}: the SDK's own class"
    );
    request_id(result);
}

/// The error's message as the SDK parsed it from the body.
fn error_message(result: &Value) -> &str {
    let body = &result["body"];
    if result["call"]["sdk"] == "openai" {
        body["message"].as_str()
    } else {
        assert_eq!(body["type"], "error", "{}: {body}", what(result));
        assert_eq!(body["request_id"], result["request_id"], "{}", what(result));
        body["error"]["message"].as_str()
    }
    .unwrap_or_else(|| panic!("{}: no message: {body}", what(result)))
}

/// The error's type: OpenAI's `error.type`, Anthropic's `error.type`.
fn error_type(result: &Value) -> &str {
    let body = &result["body"];
    let kind = if result["call"]["sdk"] == "openai" {
        &body["type"]
    } else {
        &body["error"]["type"]
    };
    kind.as_str()
        .unwrap_or_else(|| panic!("{}: no type: {body}", what(result)))
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_reach_each_sdk_as_its_own_exception_class() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim);
    let created = setup
        .cli(&[
            "virtual-keys",
            "create",
            "scoped",
            "--allow-models",
            "openai/gpt-4o-mini",
            "--json",
        ])
        .await;
    let scoped = created["key"].as_str().expect("key").to_owned();
    let gateway = setup.start().await;
    let claude = route("claude", "claude-sonnet-4-5");
    let mini = route("openai", "gpt-4o-mini");
    let calls = vec![
        call("openai", "bad-request", &mini, MASTER_KEY),
        call("anthropic", "bad-request", &claude, MASTER_KEY),
        call("openai", "chat", &mini, "sk-not-the-master-key"),
        call("anthropic", "chat", &claude, "sk-not-the-master-key"),
        call("openai", "chat", &claude, &scoped),
        call("anthropic", "chat", &claude, &scoped),
        call("openai", "chat", &mini, &scoped),
        call("anthropic", "chat", &mini, &scoped),
    ];
    let results = sdk_calls(&gateway.url(), calls).await;

    for bad in &results[0..2] {
        assert_raised(bad, "BadRequestError", 400);
        assert_eq!(error_type(bad), "invalid_request_error", "{}", what(bad));
        assert!(
            error_message(bad).contains("messages"),
            "{}: {bad}",
            what(bad)
        );
    }
    assert_eq!(results[0]["body"]["param"], "messages", "{}", results[0]);
    for wrong in &results[2..4] {
        assert_raised(wrong, "AuthenticationError", 401);
        assert!(
            error_message(wrong).contains("invalid API key"),
            "{}: {wrong}",
            what(wrong)
        );
    }
    assert_eq!(error_type(&results[3]), "authentication_error");
    for refused in &results[4..6] {
        assert_raised(refused, "PermissionDeniedError", 403);
        let message = error_message(refused);
        assert!(
            message.contains(&claude) && message.contains(&mini),
            "{}: says what was refused and what is allowed: {message}",
            what(refused)
        );
    }
    assert_eq!(error_type(&results[5]), "permission_error");
    // The same key calls the model it is allowed.
    for allowed in &results[6..8] {
        assert_eq!(allowed["ok"], true, "{}: {allowed}", what(allowed));
        let row = assert_one_usage_row(&gateway, allowed, false).await;
        assert_eq!(row.virtual_key_name.as_deref(), Some("scoped"));
    }

    // Only the two allowed calls went upstream, and only they were
    // recorded.
    assert_eq!(chats_to(&sim, Vendor::OpenAi).len(), 2);
    assert!(chats_to(&sim, Vendor::Anthropic).is_empty());
    let allowed: HashSet<&str> = results[6..8].iter().map(request_id).collect();
    let rows = gateway.usage_rows();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .all(|row| allowed.contains(row.request_id.as_deref().unwrap_or_default())),
        "{rows:?}"
    );
}

/// OpenAI's 429 for a request-rate limit, asking for a short wait.
fn openai_429(wait: (&str, &str)) -> Reply {
    Reply::openai_error(
        429,
        "requests",
        Some("rate_limit_exceeded"),
        "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3.",
    )
    .header(wait.0, wait.1)
}

/// Anthropic's 429, asking for a short wait.
fn anthropic_429(wait: (&str, &str)) -> Reply {
    Reply::anthropic_error(
        429,
        "rate_limit_error",
        "Number of requests has exceeded your per-minute rate limit",
    )
    .header(wait.0, wait.1)
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_rate_limits_reach_the_sdks_once_the_gateways_retries_are_spent() {
    let sim = Simulator::start().await.expect("simulator");
    let gateway = Setup::new(&sim).start().await;
    let short = ("retry-after-ms", "50");
    // Three attempts each ([retry] max_attempts), all refused.
    for _ in 0..6 {
        sim.enqueue(Vendor::OpenAi, openai_429(short));
    }
    for _ in 0..3 {
        sim.enqueue(Vendor::Anthropic, anthropic_429(short));
    }
    let mini = route("openai", "gpt-4o-mini");
    let claude = route("claude", "claude-sonnet-4-5");
    let calls = vec![
        call("openai", "chat", &mini, MASTER_KEY),
        call("anthropic", "chat", &mini, MASTER_KEY),
        call("openai", "chat", &claude, MASTER_KEY),
    ];
    let results = sdk_calls(&gateway.url(), calls).await;
    for result in &results {
        let name = what(result);
        assert_raised(result, "RateLimitError", 429);
        assert_eq!(error_type(result), "rate_limit_error", "{name}: {result}");
        assert_eq!(
            result["retry_after"], "1",
            "{name}: the vendor's wait, in whole seconds"
        );
        // The gateway's three attempts, each recorded.
        let rows = gateway.usage_of(request_id(result), 3).await;
        let attempts: Vec<(u64, &str)> = rows
            .iter()
            .map(|row| (row.attempt, row.status.as_str()))
            .collect();
        assert_eq!(
            attempts,
            [(1, "error"), (2, "error"), (3, "error")],
            "{name}: {rows:?}"
        );
    }
    // The vendor's code, passed on: a rate limit, not `insufficient_quota`
    // (which no retry can fix).
    assert_eq!(results[0]["body"]["code"], "rate_limit_exceeded");
    assert_eq!(
        (sim.pending(Vendor::OpenAi), sim.pending(Vendor::Anthropic)),
        (0, 0)
    );
    assert_eq!(chats_to(&sim, Vendor::OpenAi).len(), 6);
    assert_eq!(chats_to(&sim, Vendor::Anthropic).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_is_served_after_one_retry() {
    let sim = Simulator::start().await.expect("simulator");
    let gateway = Setup::new(&sim).start().await;
    let one_second = ("retry-after", "1");
    sim.enqueue(Vendor::OpenAi, openai_429(one_second));
    sim.enqueue(Vendor::Anthropic, anthropic_429(one_second));
    let calls = vec![
        call(
            "openai",
            "chat",
            &route("openai", "gpt-4o-mini"),
            MASTER_KEY,
        ),
        call(
            "anthropic",
            "chat",
            &route("claude", "claude-sonnet-4-5"),
            MASTER_KEY,
        ),
    ];
    let results = sdk_calls(&gateway.url(), calls).await;
    for result in &results {
        let name = what(result);
        assert_eq!(result["ok"], true, "{name}: {result}");
        assert!(
            result["content"]
                .as_str()
                .is_some_and(|c| c.contains(USER_TEXT)),
            "{name}: {result}"
        );
        let seconds = result["seconds"].as_f64().expect("seconds");
        assert!(
            (1.0..60.0).contains(&seconds),
            "{name}: waited the vendor's second, once: {seconds} s"
        );
        let rows = gateway.usage_of(request_id(result), 2).await;
        let attempts: Vec<(u64, &str)> = rows
            .iter()
            .map(|row| (row.attempt, row.status.as_str()))
            .collect();
        assert_eq!(attempts, [(1, "error"), (2, "ok")], "{name}: {rows:?}");
    }
    for vendor in [Vendor::OpenAi, Vendor::Anthropic] {
        assert_eq!(chats_to(&sim, vendor).len(), 2, "{vendor:?}");
        assert_eq!(sim.pending(vendor), 0);
    }
}
