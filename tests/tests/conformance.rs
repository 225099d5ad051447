//! The conformance suite: one table of scenarios, run against every
//! provider component through the host and the vendor simulator, each
//! asserting the exact typed result. A scenario speaks each vendor's own
//! wire format (OpenAI-style chunks and `[DONE]`, xAI's error bodies,
//! Anthropic's named events and `message_stop`).

mod common;
#[path = "conformance/wire.rs"]
mod wire;

use llmhost::types::{
    ChatRequest, Chunk, FinishReason, Message, ReasoningConfig, ToolChoice, ToolDefinition,
};
use llmhost_simulator::{Reply, Vendor};
use serde_json::{Value, json};
use std::time::Duration;
use wire::{
    Bench, PROVIDERS, Provider, Wire, error_reply, is_terminator, request, stream_error_event,
    text_of, usage_stream,
};

#[tokio::test]
async fn chat_answers_with_usage_and_cost() {
    let b = Bench::new().await;
    for p in PROVIDERS {
        let outcome = b
            .chat(p, &request(p))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", p.id));
        let r = &outcome.response;
        assert!(
            r.content.contains("You said: Hello there"),
            "{}: {}",
            p.id,
            r.content
        );
        assert_eq!(r.finish_reason, FinishReason::Stop, "{}", p.id);
        assert!(
            r.usage.input_tokens > 0 && r.usage.output_tokens > 0,
            "{}",
            p.id
        );
        assert!(!r.usage.estimated, "{}: vendor usage is exact", p.id);
        assert!(
            outcome.cost_usd.is_some(),
            "{}: priced from the registry",
            p.id
        );
    }
}

#[tokio::test]
async fn stream_matches_chat() {
    let b = Bench::new().await;
    for p in PROVIDERS {
        let plain = b
            .chat(p, &request(p))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", p.id));
        let (chunks, err, usage) = b.stream(p, &request(p)).await;
        assert!(err.is_none(), "{}: {err:?}", p.id);
        assert!(
            matches!(chunks.first(), Some(Chunk::Start(_))),
            "{}: start first",
            p.id
        );
        let pieces = chunks
            .iter()
            .filter(|c| matches!(c, Chunk::Text(_)))
            .count();
        assert!(pieces > 1, "{}: text arrives in pieces", p.id);
        assert_eq!(text_of(&chunks), plain.response.content, "{}", p.id);
        let usage = usage.unwrap_or_else(|| panic!("{}: usage reported", p.id));
        assert_eq!(
            usage.output_tokens, plain.response.usage.output_tokens,
            "{}",
            p.id
        );
        assert!(
            chunks
                .iter()
                .any(|c| matches!(c, Chunk::Finish(FinishReason::Stop))),
            "{}",
            p.id
        );
    }
}

#[tokio::test]
async fn stream_usage_is_read_the_way_each_vendor_sends_it() {
    let b = Bench::new().await;
    for p in PROVIDERS {
        b.sim
            .enqueue(p.vendor, Reply::sse(usage_stream(p, &["Hel", "lo"])));
        let (chunks, err, usage) = b.stream(p, &request(p)).await;
        assert!(err.is_none(), "{}: {err:?}", p.id);
        assert_eq!(text_of(&chunks), "Hello", "{}", p.id);
        let usage = usage.unwrap_or_else(|| panic!("{}: usage", p.id));
        assert_eq!(
            (usage.input_tokens, usage.output_tokens, usage.estimated),
            (11, 7, false),
            "{}",
            p.id
        );
        let usage_chunks = chunks
            .iter()
            .filter(|c| matches!(c, Chunk::Usage(_)))
            .count();
        assert_eq!(usage_chunks, 1, "{}: usage is reported once", p.id);
    }
}

#[tokio::test]
async fn sse_split_at_every_byte_keepalives_and_crlf_are_tolerated() {
    let b = Bench::new().await;
    for p in PROVIDERS {
        let events = usage_stream(p, &["Hel", "lo"]);
        let joined: String = events.concat();
        // Every byte its own write.
        b.sim.enqueue(
            p.vendor,
            Reply::raw(200, joined.bytes().map(|byte| vec![byte]).collect())
                .header("content-type", "text/event-stream"),
        );
        // Keep-alive comments between events.
        let with_comments: Vec<String> = events
            .iter()
            .flat_map(|e| [": keep-alive\n\n".to_string(), e.clone()])
            .collect();
        b.sim.enqueue(p.vendor, Reply::sse(with_comments));
        // CRLF line endings.
        b.sim.enqueue(
            p.vendor,
            Reply::sse(events.iter().map(|e| e.replace('\n', "\r\n"))),
        );
        for variant in ["byte by byte", "keep-alive comments", "CRLF"] {
            let (chunks, err, usage) = b.stream(p, &request(p)).await;
            assert!(err.is_none(), "{} ({variant}): {err:?}", p.id);
            assert_eq!(text_of(&chunks), "Hello", "{} ({variant})", p.id);
            assert_eq!(
                usage.map(|u| (u.input_tokens, u.output_tokens)),
                Some((11, 7)),
                "{} ({variant})",
                p.id
            );
        }
    }
}

#[tokio::test]
async fn a_stream_cut_before_its_terminator_is_a_protocol_error() {
    let b = Bench::new().await;
    for p in PROVIDERS {
        let events: Vec<String> = usage_stream(p, &["Hel", "lo"])
            .into_iter()
            .filter(|e| !is_terminator(p, e))
            .collect();
        b.sim.enqueue(p.vendor, Reply::sse(events));
        let (chunks, err, _) = b.stream(p, &request(p)).await;
        let err = err.unwrap_or_else(|| panic!("{}: a cut stream must fail", p.id));
        assert_eq!(err.kind(), "protocol", "{}: {err}", p.id);
        assert_eq!(
            text_of(&chunks),
            "Hello",
            "{}: what arrived was delivered",
            p.id
        );
    }
}

#[tokio::test]
async fn malformed_json_is_a_protocol_error() {
    let b = Bench::new().await;
    for p in PROVIDERS {
        b.sim.enqueue(
            p.vendor,
            Reply::raw(200, vec![b"{\"id\": \"x\", \"choices\": [".to_vec()])
                .header("content-type", "application/json"),
        );
        let err = b.chat(p, &request(p)).await.expect_err("malformed body");
        assert_eq!(err.kind(), "protocol", "{}: {err}", p.id);

        let mut events = usage_stream(p, &["Hel"]);
        let bad = match p.wire {
            Wire::Anthropic => "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\n\n".to_string(),
            _ => "data: {\"id\": \"chatcmpl-conf\", \"choices\": [{\n\n".to_string(),
        };
        events.insert(2, bad);
        b.sim.enqueue(p.vendor, Reply::sse(events));
        let (_, err, _) = b.stream(p, &request(p)).await;
        assert_eq!(err.map(|e| e.kind().as_str()), Some("protocol"), "{}", p.id);
    }
}

#[tokio::test]
async fn an_error_event_inside_a_200_stream_is_typed() {
    let b = Bench::new().await;
    for p in PROVIDERS {
        let mut events = usage_stream(p, &["Hel", "lo"]);
        let (error, kind) = stream_error_event(p);
        events.truncate(3);
        events.push(error);
        b.sim.enqueue(p.vendor, Reply::sse(events));
        let (_, err, _) = b.stream(p, &request(p)).await;
        let err = err.unwrap_or_else(|| panic!("{}: the error event must fail the stream", p.id));
        assert_eq!(err.kind(), kind, "{}: {err}", p.id);
    }
}

/// (status, vendor error code, expected kind) rows every vendor shares.
const ERROR_ROWS: &[(u16, &str, &str)] = &[
    (400, "invalid_request_error", "invalid_request"),
    (401, "authentication_error", "authentication"),
    (402, "insufficient_balance", "quota_exhausted"),
    (403, "permission_error", "authentication"),
    (404, "not_found_error", "model_not_supported"),
    (413, "request_too_large", "token_limit_exceeded"),
    (500, "api_error", "server_error"),
    (502, "bad_gateway", "server_error"),
    (503, "overloaded", "overloaded"),
    (529, "overloaded_error", "overloaded"),
];

#[tokio::test]
async fn vendor_errors_map_to_exact_kinds() {
    let b = Bench::new().await;
    for p in PROVIDERS {
        for (status, code, kind) in ERROR_ROWS {
            let message = if *status == 404 {
                format!("model: {} not found", p.model)
            } else {
                format!("status {status}")
            };
            b.sim.enqueue(
                p.vendor,
                error_reply(p, *status, code, &message).header("retry-after", "1"),
            );
            let err = b.chat(p, &request(p)).await.expect_err("error status");
            assert_eq!(err.kind(), *kind, "{} HTTP {status}: {err}", p.id);
            assert_eq!(
                err.detail().and_then(|d| d.status),
                Some(*status),
                "{} HTTP {status}",
                p.id
            );
            // The same before a stream starts.
            b.sim
                .enqueue(p.vendor, error_reply(p, *status, code, &message));
            let (_, err, _) = b.stream(p, &request(p)).await;
            assert_eq!(
                err.map(|e| e.kind().as_str()),
                Some(*kind),
                "{} stream HTTP {status}",
                p.id
            );
        }
    }
}

#[tokio::test]
async fn rate_limits_carry_retry_after_and_quota_codes_are_permanent() {
    let b = Bench::new().await;
    for p in PROVIDERS {
        let code = if p.wire == Wire::Anthropic {
            "rate_limit_error"
        } else {
            "rate_limit_exceeded"
        };
        b.sim.enqueue(
            p.vendor,
            error_reply(p, 429, code, "Too many requests").header("retry-after", "3"),
        );
        let err = b.chat(p, &request(p)).await.expect_err("429");
        assert_eq!(err.kind(), "rate_limited", "{}: {err}", p.id);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)), "{}", p.id);
    }
    // OpenAI reports an exhausted quota as a 429 with a code.
    let openai = &PROVIDERS[0];
    b.sim.enqueue(
        openai.vendor,
        Reply::openai_error(
            429,
            "insufficient_quota",
            Some("insufficient_quota"),
            "You exceeded your current quota",
        ),
    );
    let err = b.chat(openai, &request(openai)).await.expect_err("quota");
    assert_eq!(err.kind(), "quota_exhausted");
}

#[tokio::test]
async fn reasoning_is_surfaced_separately() {
    let b = Bench::new().await;
    let cases = [
        (
            Provider {
                id: "deepseek",
                vendor: Vendor::DeepSeek,
                model: "deepseek-reasoner",
                wire: Wire::OpenAi,
            },
            None,
        ),
        (
            Provider {
                id: "grok",
                vendor: Vendor::XAi,
                model: "grok-3-mini",
                wire: Wire::XAi,
            },
            None,
        ),
        (
            PROVIDERS[3],
            Some(ReasoningConfig {
                budget_tokens: Some(2048),
                effort: None,
            }),
        ),
    ];
    for (p, reasoning) in cases {
        let mut req = request(&p);
        req.reasoning = reasoning;
        let outcome = b
            .chat(&p, &req)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", p.id));
        let thinking = outcome
            .response
            .reasoning_content
            .clone()
            .unwrap_or_else(|| panic!("{}: reasoning content", p.id));
        assert!(!thinking.is_empty());
        assert!(
            !outcome.response.content.contains(&thinking),
            "{}: reasoning never mixed into content",
            p.id
        );
        let (chunks, err, _) = b.stream(&p, &req).await;
        assert!(err.is_none(), "{}: {err:?}", p.id);
        let streamed: String = chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Reasoning(r) => Some(r.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            streamed, thinking,
            "{}: streamed reasoning equals the plain one",
            p.id
        );
        assert_eq!(text_of(&chunks), outcome.response.content, "{}", p.id);
    }
}

#[tokio::test]
async fn system_messages_follow_each_vendors_rules() {
    let b = Bench::new().await;
    let conversation = vec![
        Message::system("Rule one."),
        Message::user("First question"),
        Message::assistant("First answer"),
        Message::system("Rule two, from the middle."),
        Message::user("Second question"),
        Message::user("and a follow-up"),
    ];
    for p in PROVIDERS {
        let req = ChatRequest::new(p.model, conversation.clone());
        b.chat(p, &req)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", p.id));
        let body = b.last_body();
        let messages = body["messages"].as_array().expect("messages");
        if p.wire == Wire::Anthropic {
            let system = match &body["system"] {
                Value::String(s) => s.clone(),
                Value::Array(blocks) => blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n\n"),
                other => panic!("system field: {other}"),
            };
            assert!(
                system.contains("Rule one.") && system.contains("Rule two, from the middle."),
                "{system}"
            );
            let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
            assert_eq!(
                roles,
                ["user", "assistant", "user"],
                "system lifted out, same roles merged"
            );
            assert!(
                body["max_tokens"].as_u64().is_some_and(|n| n > 0),
                "max_tokens always sent"
            );
        } else {
            let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
            assert_eq!(
                roles,
                ["system", "user", "assistant", "system", "user", "user"],
                "{}: order kept",
                p.id
            );
        }
    }
}

#[tokio::test]
async fn tool_calls_plain_and_streamed() {
    let b = Bench::new().await;
    for p in PROVIDERS {
        let mut req = ChatRequest::simple(p.model, "weather in Paris");
        req.tools = vec![ToolDefinition {
            name: "get_weather".into(),
            description: "Current weather for a place".into(),
            input_schema:
                r#"{"type":"object","properties":{"query":{"type":"string"}},"required":["query"]}"#
                    .into(),
        }];
        req.tool_choice = Some(ToolChoice::Auto);
        let outcome = b
            .chat(p, &req)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", p.id));
        assert_eq!(
            outcome.response.finish_reason,
            FinishReason::ToolCalls,
            "{}",
            p.id
        );
        let call = outcome
            .response
            .tool_calls
            .first()
            .unwrap_or_else(|| panic!("{}: a tool call", p.id))
            .clone();
        assert_eq!(call.name, "get_weather", "{}", p.id);
        let args: Value = serde_json::from_str(&call.arguments)
            .unwrap_or_else(|e| panic!("{}: arguments are JSON: {e}", p.id));
        assert_eq!(args, json!({"query": "weather in Paris"}), "{}", p.id);

        let (chunks, err, _) = b.stream(p, &req).await;
        assert!(err.is_none(), "{}: {err:?}", p.id);
        let mut name = None;
        let mut arguments = String::new();
        let mut fragments = 0;
        for chunk in &chunks {
            if let Chunk::ToolCall(delta) = chunk {
                assert_eq!(delta.index, 0, "{}", p.id);
                name = name.or(delta.name.clone());
                arguments.push_str(&delta.arguments);
                fragments += 1;
            }
        }
        assert!(fragments > 1, "{}: arguments arrive in fragments", p.id);
        assert_eq!(name.as_deref(), Some("get_weather"), "{}", p.id);
        let streamed: Value = serde_json::from_str(&arguments)
            .unwrap_or_else(|e| panic!("{}: {e}: {arguments}", p.id));
        assert_eq!(streamed, args, "{}", p.id);
        assert!(
            chunks
                .iter()
                .any(|c| matches!(c, Chunk::Finish(FinishReason::ToolCalls))),
            "{}",
            p.id
        );
    }
}

#[tokio::test]
async fn a_tool_round_trip_sends_the_answer_parts_back() {
    let b = Bench::new().await;
    for p in PROVIDERS {
        let mut req = ChatRequest::simple(p.model, "weather in Paris");
        req.tools = vec![ToolDefinition {
            name: "get_weather".into(),
            description: "Current weather for a place".into(),
            input_schema: r#"{"type":"object","properties":{"query":{"type":"string"}}}"#.into(),
        }];
        if p.wire == Wire::Anthropic {
            req.reasoning = Some(ReasoningConfig {
                budget_tokens: Some(1024),
                effort: None,
            });
            req.max_tokens = Some(4096);
        }
        let first = b
            .chat(p, &req)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", p.id))
            .response;
        let call = first
            .tool_calls
            .first()
            .unwrap_or_else(|| panic!("{}: tool call", p.id))
            .clone();
        req.messages.push(Message {
            role: llmhost::types::Role::Assistant,
            content: first.parts.clone(),
            name: None,
            cache_breakpoint: false,
        });
        req.messages.push(Message {
            role: llmhost::types::Role::Tool,
            content: vec![llmhost::types::ContentPart::ToolResult(
                llmhost::types::ToolResult {
                    tool_call_id: call.id.clone(),
                    content: "18 degrees and sunny".into(),
                    is_error: false,
                },
            )],
            name: None,
            cache_breakpoint: false,
        });
        let second = b
            .chat(p, &req)
            .await
            .unwrap_or_else(|e| panic!("{}: second turn: {e}", p.id))
            .response;
        assert!(
            second.content.contains("18 degrees and sunny"),
            "{}: the model saw the result: {}",
            p.id,
            second.content
        );
        let body = b.last_body().to_string();
        assert!(
            body.contains("18 degrees and sunny"),
            "{}: the tool result was sent",
            p.id
        );
        assert!(body.contains(&call.id), "{}: it refers to the call", p.id);
        if p.wire == Wire::Anthropic {
            let signature = first.parts.iter().find_map(|part| match part {
                llmhost::types::ContentPart::Thinking(t) => t.signature.clone(),
                _ => None,
            });
            let signature = signature.expect("Claude's thinking comes with a signature");
            assert!(
                body.contains(&signature),
                "the signed thinking block went back"
            );
        }
    }
}

#[tokio::test]
async fn token_counts_say_whether_they_are_estimates() {
    let b = Bench::new().await;
    let input =
        llmhost::types::TokenInput::Text("The quick brown fox jumps over the lazy dog.".into());
    for p in PROVIDERS {
        let count = b
            .host
            .count_tokens(&b.target(p), p.model, &input)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", p.id));
        assert!(count.tokens > 0, "{}", p.id);
        match p.id {
            // tiktoken is OpenAI's own tokenizer.
            "openai" => assert!(!count.estimated),
            // Claude counts through the vendor's count_tokens endpoint when a key is set.
            "claude" => {
                assert!(!count.estimated, "claude with a key asks the vendor");
                assert!(
                    b.sim
                        .requests()
                        .iter()
                        .any(|r| r.path.ends_with("/v1/messages/count_tokens"))
                );
            }
            // DeepSeek's and xAI's tokenizers are their own: tiktoken only estimates.
            _ => assert!(count.estimated, "{}", p.id),
        }
    }
    // Without a key, Claude falls back to a flagged local estimate and sends nothing.
    let claude = &PROVIDERS[3];
    let mut target = b.target(claude);
    target.api_key = None;
    let before = b.sim.requests().len();
    let count = b
        .host
        .count_tokens(&target, claude.model, &input)
        .await
        .expect("local estimate");
    assert!(count.estimated);
    assert_eq!(b.sim.requests().len(), before);
}
