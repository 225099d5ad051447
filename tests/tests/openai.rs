//! The OpenAI provider component, run through the host against the vendor
//! simulator over real HTTP on loopback.

mod common;

use common::{host, openai_sim};
use llmhost::types::{
    ChatRequest, Chunk, FinishReason, Message, TokenInput, ToolChoice, ToolDefinition,
};
use llmhost_simulator::{Reply, Vendor, sse_data};
use serde_json::json;
use std::time::Duration;

fn request() -> ChatRequest {
    ChatRequest::new(
        "gpt-4o-mini",
        vec![Message::system("Be brief."), Message::user("Hello there")],
    )
}

#[tokio::test]
async fn chat_returns_the_answer_usage_and_exact_cost() {
    let host = host().await;
    let (sim, target) = openai_sim().await;
    let mut req = request();
    req.temperature = Some(0.7);
    req.max_tokens = Some(200);
    let outcome = host.chat(&target, &req).await.expect("chat succeeds");
    let response = &outcome.response;
    assert!(
        response.content.contains("You said: Hello there"),
        "{}",
        response.content
    );
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert!(!response.usage.estimated);
    assert!(response.usage.input_tokens > 0 && response.usage.output_tokens > 0);
    assert!(
        response
            .request_id
            .as_deref()
            .is_some_and(|id| id.starts_with("req_"))
    );
    assert!(
        response.rate_limits.is_some(),
        "x-ratelimit headers are parsed"
    );

    // gpt-4o-mini: $0.15 in / $0.60 out per million tokens.
    let expected = llmhost::registry::rust_decimal::Decimal::from(response.usage.input_tokens)
        * llmhost::registry::rust_decimal::Decimal::new(15, 8)
        + llmhost::registry::rust_decimal::Decimal::from(response.usage.output_tokens)
            * llmhost::registry::rust_decimal::Decimal::new(60, 8);
    assert_eq!(outcome.cost_usd.expect("known model"), expected.normalize());

    // What went over the wire is OpenAI's protocol.
    let sent = sim
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/chat/completions"))
        .expect("request seen");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test"));
    let body = sent.json().expect("JSON body");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "user", "content": "Hello there"})
    );
    assert_eq!(
        body["temperature"],
        json!(0.7),
        "f32 0.7 is sent as the decimal 0.7"
    );
    assert_eq!(body["max_completion_tokens"], json!(200));
    assert!(body.get("stream").is_none());
}

#[tokio::test]
async fn stream_arrives_in_pieces_with_usage_from_the_usage_chunk() {
    let host = host().await;
    let (sim, target) = openai_sim().await;
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        sse_data(&json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": null
        }))
    };
    sim.enqueue(
        Vendor::OpenAi,
        Reply::sse([
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Hel"}), None),
            chunk(json!({"content": "lo, "}), None),
            chunk(json!({"content": "world"}), None),
            chunk(json!({}), Some("stop")),
            sse_data(&json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
            })),
            "data: [DONE]\n\n".to_string(),
        ])
        .delay_each(Duration::from_millis(5)),
    );
    let mut stream = host
        .stream(&target, &request())
        .await
        .expect("stream starts");
    let mut texts = Vec::new();
    let mut first = None;
    while let Some(chunk) = stream.next().await {
        match chunk.expect("chunk") {
            Chunk::Text(text) => texts.push(text),
            Chunk::Start(start) => first = Some(start.id),
            _ => {}
        }
    }
    assert_eq!(
        texts,
        ["Hel", "lo, ", "world"],
        "text arrives piece by piece"
    );
    assert_eq!(first.as_deref(), Some("chatcmpl-1"));
    let usage = stream.usage().expect("usage reported");
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.estimated),
        (11, 7, false)
    );
    assert_eq!(stream.finish_reason(), Some(&FinishReason::Stop));
    assert!(stream.cost_usd().is_some());
    let body = sim
        .requests()
        .last()
        .expect("request")
        .json()
        .expect("json");
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn default_stream_matches_the_plain_answer() {
    let host = host().await;
    let (_sim, target) = openai_sim().await;
    let plain = host.chat(&target, &request()).await.expect("chat");
    let mut stream = host.stream(&target, &request()).await.expect("stream");
    let mut text = String::new();
    let mut pieces = 0;
    while let Some(chunk) = stream.next().await {
        if let Chunk::Text(piece) = chunk.expect("chunk") {
            text.push_str(&piece);
            pieces += 1;
        }
    }
    assert!(pieces > 1);
    assert_eq!(text, plain.response.content);
    assert_eq!(
        stream.usage().expect("usage").output_tokens,
        plain.response.usage.output_tokens
    );
}

#[tokio::test]
async fn token_counts_equal_tiktoken() {
    let host = host().await;
    let (_sim, target) = openai_sim().await;
    let texts = [
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "Ünïcödé, emoji 🦀 and <|endoftext|> markers count as text",
        "",
    ];
    for text in texts {
        for (model, bpe) in [
            ("gpt-4o", tiktoken_rs::o200k_base().expect("o200k")),
            ("gpt-4-turbo", tiktoken_rs::cl100k_base().expect("cl100k")),
        ] {
            let count = host
                .count_tokens(&target, model, &TokenInput::Text(text.into()))
                .await
                .expect("count");
            assert_eq!(
                count.tokens as usize,
                bpe.encode_ordinary(text).len(),
                "{model}: {text:?}"
            );
            assert!(!count.estimated);
        }
    }
    let count = host
        .count_tokens(
            &target,
            "gpt-4o",
            &TokenInput::Messages(vec![Message::user("Hello, world!")]),
        )
        .await
        .expect("count");
    // 4 content tokens + 3 for the message + 3 priming the reply.
    assert_eq!(count.tokens, 10);
    assert_eq!(count.encoding, "o200k_base");
}

#[tokio::test]
async fn health_check_lists_models() {
    let host = host().await;
    let (sim, target) = openai_sim().await;
    let health = host.health(&target).await.expect("healthy");
    assert_eq!(
        health.report.models_available,
        Some(llmhost_simulator::openai_models().len() as u32)
    );
    assert!(sim.requests().iter().any(|r| r.path.ends_with("/models")));
}

#[tokio::test]
async fn tool_calls_round_trip() {
    let host = host().await;
    let (sim, target) = openai_sim().await;
    let mut req = ChatRequest::simple("gpt-4o", "weather in Paris");
    req.tools = vec![ToolDefinition {
        name: "get_weather".into(),
        description: "Current weather".into(),
        input_schema: r#"{"type":"object","properties":{"query":{"type":"string"}}}"#.into(),
    }];
    req.tool_choice = Some(ToolChoice::Auto);
    let outcome = host.chat(&target, &req).await.expect("chat");
    assert_eq!(outcome.response.finish_reason, FinishReason::ToolCalls);
    let call = &outcome.response.tool_calls[0];
    assert_eq!(call.name, "get_weather");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&call.arguments).expect("json"),
        json!({"query": "weather in Paris"})
    );
    let body = sim
        .requests()
        .last()
        .expect("request")
        .json()
        .expect("json");
    assert_eq!(body["tools"][0]["function"]["parameters"]["type"], "object");
    assert_eq!(body["tool_choice"], "auto");

    // Streamed: deltas keyed by index, arguments in fragments.
    let mut stream = host.stream(&target, &req).await.expect("stream");
    let mut arguments = String::new();
    let mut name = None;
    while let Some(chunk) = stream.next().await {
        if let Chunk::ToolCall(delta) = chunk.expect("chunk") {
            assert_eq!(delta.index, 0);
            name = name.or(delta.name);
            arguments.push_str(&delta.arguments);
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    assert_eq!(arguments, call.arguments);
    assert_eq!(stream.finish_reason(), Some(&FinishReason::ToolCalls));
}

async fn error_kind(reply: Reply) -> llmhost::Error {
    let host = host().await;
    let (sim, target) = openai_sim().await;
    sim.enqueue(Vendor::OpenAi, reply);
    // One attempt: the mapping of each reply, not the retry policy.
    host.chat_once(&target, &request())
        .await
        .expect_err("must fail")
}

#[tokio::test]
async fn http_errors_map_to_typed_errors() {
    let err = error_kind(Reply::openai_error(
        401,
        "invalid_request_error",
        Some("invalid_api_key"),
        "Incorrect API key provided",
    ))
    .await;
    assert_eq!(err.kind(), "authentication");
    assert_eq!(err.detail().and_then(|d| d.status), Some(401));

    let err = error_kind(Reply::openai_error(
        500,
        "server_error",
        None,
        "The server had an error",
    ))
    .await;
    assert_eq!(err.kind(), "server_error");
    assert_eq!(
        err.detail().map(|d| d.message.as_str()),
        Some("The server had an error")
    );

    let err = error_kind(Reply::openai_error(
        429,
        "insufficient_quota",
        Some("insufficient_quota"),
        "You exceeded your current quota",
    ))
    .await;
    assert_eq!(err.kind(), "quota_exhausted");

    let err = error_kind(Reply::openai_error(
        400,
        "invalid_request_error",
        Some("context_length_exceeded"),
        "too long",
    ))
    .await;
    assert_eq!(err.kind(), "token_limit_exceeded");
}

#[tokio::test]
async fn rate_limit_carries_retry_after_to_the_host() {
    let err = error_kind(
        Reply::openai_error(
            429,
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached",
        )
        .header("retry-after", "7")
        .header("x-request-id", "req_rl"),
    )
    .await;
    assert_eq!(err.kind(), "rate_limited");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(
        err.detail().and_then(|d| d.request_id.as_deref()),
        Some("req_rl")
    );
    assert_eq!(
        err.detail().and_then(|d| d.vendor_code.as_deref()),
        Some("rate_limit_exceeded")
    );
}

#[tokio::test]
async fn unknown_model_is_model_not_supported() {
    let host = host().await;
    let (_sim, target) = openai_sim().await;
    let err = host
        .chat(&target, &ChatRequest::simple("gpt-99-imaginary", "hi"))
        .await
        .expect_err("unknown model");
    assert_eq!(err.kind(), "model_not_supported");
    assert_eq!(err.detail().and_then(|d| d.status), Some(404));
    assert!(err.to_string().contains("gpt-99-imaginary"), "{err}");
}

#[tokio::test]
async fn missing_key_names_the_environment_variable() {
    let host = host().await;
    let (_sim, mut target) = openai_sim().await;
    target.api_key = None;
    let err = host.chat(&target, &request()).await.expect_err("no key");
    assert_eq!(err.kind(), "api_key_missing");
    assert!(err.to_string().contains("OPENAI_API_KEY"), "{err}");
}

#[tokio::test]
async fn stream_cut_before_done_is_an_error() {
    let host = host().await;
    let (sim, target) = openai_sim().await;
    sim.enqueue(
        Vendor::OpenAi,
        Reply::sse([
            sse_data(&json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": null}]})),
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"del".to_string(),
        ]),
    );
    let mut stream = host
        .stream(&target, &request())
        .await
        .expect("stream starts");
    let mut results = Vec::new();
    while let Some(chunk) = stream.next().await {
        results.push(chunk);
    }
    let last = results.pop().expect("something arrived");
    let err = last.expect_err("the cut stream ends in an error");
    assert_eq!(err.kind(), "protocol");
    assert!(err.to_string().contains("[DONE]"), "{err}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Ok(Chunk::Text(t)) if t == "partial"))
    );
    assert!(
        stream.usage().is_none(),
        "no usage is invented for a failed stream"
    );
}

#[tokio::test]
async fn error_event_inside_a_stream_is_typed() {
    let host = host().await;
    let (sim, target) = openai_sim().await;
    sim.enqueue(
        Vendor::OpenAi,
        Reply::sse([
            sse_data(&json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": null}]})),
            sse_data(&json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "code": null}})),
        ]),
    );
    let mut stream = host
        .stream(&target, &request())
        .await
        .expect("stream starts");
    let mut last = None;
    while let Some(chunk) = stream.next().await {
        last = Some(chunk);
    }
    assert_eq!(
        last.expect("chunks").expect_err("error event").kind(),
        "server_error"
    );
}

#[tokio::test]
async fn a_hanging_vendor_times_out() {
    let host = host().await;
    let (sim, target) = openai_sim().await;
    sim.enqueue(
        Vendor::OpenAi,
        Reply::json(200, json!({})).delay_headers(Duration::from_secs(30)),
    );
    let started = std::time::Instant::now();
    let err = host
        .chat_once(&target.timeout(Duration::from_millis(300)), &request())
        .await
        .expect_err("times out");
    assert_eq!(err.kind(), "timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_run_in_parallel_from_spawned_tasks() {
    let host = host().await;
    let (sim, target) = openai_sim().await;
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let host = host.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let request = ChatRequest::simple("gpt-4o-mini", format!("task {i}"));
                if i % 2 == 0 {
                    host.chat(&target, &request)
                        .await
                        .map(|o| o.response.content)
                } else {
                    let mut stream = host.stream(&target, &request).await?;
                    let mut text = String::new();
                    while let Some(chunk) = stream.next().await {
                        if let Chunk::Text(piece) = chunk? {
                            text.push_str(&piece);
                        }
                    }
                    Ok(text)
                }
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let text = task.await.expect("task").expect("request succeeds");
        assert!(text.contains(&format!("You said: task {i}")), "{text}");
    }
    assert_eq!(sim.requests().len(), 24);
}

#[tokio::test]
async fn a_collected_stream_equals_the_plain_answer() {
    let host = host().await;
    let (_sim, target) = openai_sim().await;
    let plain = host.chat(&target, &request()).await.expect("chat");
    let collected = host
        .stream(&target, &request())
        .await
        .expect("stream")
        .collect()
        .await
        .expect("collected");
    assert_eq!(collected.provider, "openai");
    assert_eq!(collected.response.content, plain.response.content);
    assert_eq!(collected.response.parts, plain.response.parts);
    assert_eq!(
        collected.response.finish_reason,
        plain.response.finish_reason
    );
    assert_eq!(collected.response.usage, plain.response.usage);
    assert_eq!(collected.cost_usd, plain.cost_usd);
    assert!(
        collected.response.request_id.is_some(),
        "kept from the stream's start"
    );
}
