use super::*;
use serde_json::json;

fn event(name: &str, data: Value) -> SseEvent {
    SseEvent {
        event: Some(name.into()),
        data: data.to_string(),
        id: None,
    }
}

pub(super) fn state() -> StreamState {
    let headers = Headers::from_pairs([
        ("request-id", "req_9"),
        ("anthropic-ratelimit-requests-limit", "50"),
    ]);
    StreamState::new("claude-requested", Vec::new(), &headers)
}

/// Chunks in a compact, comparable form.
pub(super) fn describe(chunk: &Chunk) -> String {
    match chunk {
        Chunk::Start(start) => format!("start {} {}", start.id, start.model),
        Chunk::Text(t) => format!("text {t}"),
        Chunk::Reasoning(t) => format!("reasoning {t}"),
        Chunk::ReasoningSignature(s) => format!("signature {s}"),
        Chunk::RedactedReasoning(data) => format!("redacted {data}"),
        Chunk::ToolCall(d) => format!(
            "tool {} {} {} {}",
            d.index,
            d.id.as_deref().unwrap_or("-"),
            d.name.as_deref().unwrap_or("-"),
            d.arguments
        ),
        Chunk::Usage(u) => format!(
            "usage in={} out={} read={} write={} hour={} est={}",
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            u.cache_write_hour_tokens,
            u.estimated
        ),
        Chunk::Finish(reason) => format!(
            "finish {}",
            match reason {
                FinishReason::Stop => "stop".to_owned(),
                FinishReason::Length => "length".to_owned(),
                FinishReason::ToolCalls => "tool-calls".to_owned(),
                FinishReason::ContentFilter => "content-filter".to_owned(),
                FinishReason::Refusal => "refusal".to_owned(),
                FinishReason::Other(other) => format!("other {other}"),
            }
        ),
    }
}

fn run(state: &mut StreamState, events: &[SseEvent]) -> Vec<String> {
    let mut out = Vec::new();
    for event in events {
        let chunks = state
            .handle(event)
            .unwrap_or_else(|err| panic!("{event:?} handled: {err:?}"));
        out.extend(chunks.iter().map(describe));
    }
    out
}

fn message_start(usage: Value) -> SseEvent {
    event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_01", "type": "message", "role": "assistant", "content": [],
            "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null,
            "usage": usage,
        }}),
    )
}

fn block_start(index: u64, block: Value) -> SseEvent {
    event(
        "content_block_start",
        json!({"type": "content_block_start", "index": index, "content_block": block}),
    )
}

fn delta(index: u64, delta: Value) -> SseEvent {
    event(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": index, "delta": delta}),
    )
}

fn block_stop(index: u64) -> SseEvent {
    event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    )
}

fn message_delta(stop_reason: &str, usage: Value) -> SseEvent {
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": usage}),
    )
}

fn message_stop() -> SseEvent {
    event("message_stop", json!({"type": "message_stop"}))
}

#[test]
fn text_answer_with_cache_usage() {
    let mut state = state();
    let chunks = run(
        &mut state,
        &[
            message_start(json!({
                "input_tokens": 25, "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 10, "output_tokens": 1,
            })),
            block_start(0, json!({"type": "text", "text": ""})),
            event("ping", json!({"type": "ping"})),
            delta(0, json!({"type": "text_delta", "text": "Hello"})),
            delta(0, json!({"type": "text_delta", "text": "!"})),
            block_stop(0),
            message_delta("end_turn", json!({"output_tokens": 15})),
            message_stop(),
        ],
    );
    assert_eq!(
        chunks,
        [
            "start msg_01 claude-sonnet-4-5-20250929",
            "text Hello",
            "text !",
            "finish stop",
            "usage in=135 out=15 read=100 write=10 hour=0 est=false",
        ]
    );
    assert_eq!(state.finish(), Ok(Vec::new()), "message_stop ended it");
    assert!(
        state
            .handle(&delta(0, json!({"type": "text_delta", "text": "late"})))
            .expect("ignored")
            .is_empty(),
        "nothing after message_stop"
    );
}

#[test]
fn start_carries_request_id_and_rate_limits() {
    let mut state = state();
    let chunks = state
        .handle(&message_start(
            json!({"input_tokens": 1, "output_tokens": 1}),
        ))
        .expect("handled");
    let [Chunk::Start(start)] = chunks.as_slice() else {
        panic!("expected one start chunk, got {chunks:?}");
    };
    assert_eq!(start.request_id.as_deref(), Some("req_9"));
    assert_eq!(
        start.rate_limits.as_ref().and_then(|l| l.requests_limit),
        Some(50)
    );
}

#[test]
fn thinking_and_tool_calls() {
    let mut state = state();
    let chunks = run(
        &mut state,
        &[
            message_start(json!({"input_tokens": 472, "output_tokens": 2})),
            block_start(
                0,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
            ),
            delta(
                0,
                json!({"type": "thinking_delta", "thinking": "The user wants"}),
            ),
            delta(
                0,
                json!({"type": "thinking_delta", "thinking": " weather."}),
            ),
            delta(
                0,
                json!({"type": "signature_delta", "signature": "EqQBCgIYAhIM"}),
            ),
            block_stop(0),
            block_start(1, json!({"type": "redacted_thinking", "data": "opaque"})),
            block_stop(1),
            block_start(2, json!({"type": "text", "text": ""})),
            delta(2, json!({"type": "text_delta", "text": "Checking."})),
            block_stop(2),
            block_start(
                3,
                json!({"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}),
            ),
            delta(3, json!({"type": "input_json_delta", "partial_json": ""})),
            delta(
                3,
                json!({"type": "input_json_delta", "partial_json": "{\"city\": \"Pa"}),
            ),
            delta(
                3,
                json!({"type": "input_json_delta", "partial_json": "ris\"}"}),
            ),
            block_stop(3),
            block_start(
                4,
                json!({"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}}),
            ),
            block_stop(4),
            message_delta("tool_use", json!({"output_tokens": 89})),
            message_stop(),
        ],
    );
    assert_eq!(
        chunks,
        [
            "start msg_01 claude-sonnet-4-5-20250929",
            "reasoning The user wants",
            "reasoning  weather.",
            "signature EqQBCgIYAhIM",
            "redacted opaque",
            "text Checking.",
            "tool 0 toolu_a weather ",
            "tool 0 - - {\"city\": \"Pa",
            "tool 0 - - ris\"}",
            "tool 1 toolu_b now ",
            "tool 1 - - {}",
            "finish tool-calls",
            "usage in=472 out=89 read=0 write=0 hour=0 est=false",
        ]
    );
}

#[test]
fn usage_is_cumulative_and_replaced() {
    let mut state = state();
    let chunks = run(
        &mut state,
        &[
            message_start(json!({"input_tokens": 10, "output_tokens": 1})),
            message_delta("max_tokens", json!({"output_tokens": 40})),
            event(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": null}, "usage": {
                    "output_tokens": 50, "input_tokens": 12,
                    "cache_read_input_tokens": 3, "cache_creation_input_tokens": null,
                }}),
            ),
            message_stop(),
        ],
    );
    assert_eq!(
        chunks,
        [
            "start msg_01 claude-sonnet-4-5-20250929",
            "finish length",
            "usage in=15 out=50 read=3 write=0 hour=0 est=false",
        ]
    );
}

#[test]
fn server_tools_do_not_take_tool_ordinals() {
    let mut state = state();
    let chunks = run(
        &mut state,
        &[
            message_start(json!({"input_tokens": 1, "output_tokens": 1})),
            block_start(
                0,
                json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
            ),
            delta(
                0,
                json!({"type": "input_json_delta", "partial_json": "{\"query\":\"x\"}"}),
            ),
            block_stop(0),
            block_start(
                1,
                json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}),
            ),
            block_stop(1),
            block_start(
                2,
                json!({"type": "tool_use", "id": "toolu_c", "name": "f", "input": {}}),
            ),
            delta(2, json!({"type": "input_json_delta", "partial_json": "{}"})),
            block_stop(2),
        ],
    );
    assert_eq!(
        chunks,
        [
            "start msg_01 claude-sonnet-4-5-20250929",
            "tool 0 toolu_c f ",
            "tool 0 - - {}",
        ]
    );
}

#[test]
fn unknown_and_unnamed_events() {
    let mut state = state();
    let unnamed = SseEvent {
        event: None,
        data: json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}})
            .to_string(),
        id: None,
    };
    let chunks = run(
        &mut state,
        &[
            event("some_future_event", json!({"type": "some_future_event"})),
            event("ping", json!("not even an object")),
            block_start(0, json!({"type": "text", "text": ""})),
            unnamed,
            delta(
                0,
                json!({"type": "citations_delta", "citation": {"type": "char_location"}}),
            ),
            event(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": null}, "usage": {"output_tokens": 2}}),
            ),
            event("message_stop", json!({})),
        ],
    );
    assert_eq!(
        chunks,
        [
            "start  claude-requested",
            "text hi",
            "finish stop",
            "usage in=0 out=2 read=0 write=0 hour=0 est=false",
        ]
    );
}

#[test]
fn error_event_is_typed() {
    let mut state = state();
    run(
        &mut state,
        &[message_start(
            json!({"input_tokens": 1, "output_tokens": 1}),
        )],
    );
    let error = state.handle(&event(
        "error",
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ));
    let Err(ProviderError::Overloaded(detail)) = error else {
        panic!("expected overloaded, got {error:?}");
    };
    assert_eq!(detail.message, "Overloaded");
    assert_eq!(detail.vendor_code.as_deref(), Some("overloaded_error"));
    let error = state.handle(&event(
        "error",
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}),
    ));
    assert!(matches!(error, Err(ProviderError::RateLimited(_))));
}

#[test]
fn protocol_violations() {
    let mut state = state();
    let malformed = SseEvent {
        event: Some("content_block_delta".into()),
        data: "{\"type\": \"content_block_delta\", \"index\": 0, ".into(),
        id: None,
    };
    assert!(matches!(
        state.handle(&malformed),
        Err(ProviderError::Protocol(_))
    ));
    let unstarted = delta(5, json!({"type": "text_delta", "text": "x"}));
    assert!(matches!(
        state.handle(&unstarted),
        Err(ProviderError::Protocol(message)) if message.contains("block 5")
    ));
    let no_index = event(
        "content_block_start",
        json!({"type": "content_block_start", "content_block": {"type": "text"}}),
    );
    assert!(matches!(
        state.handle(&no_index),
        Err(ProviderError::Protocol(_))
    ));
}

/// A stream recorded from the Messages API, as the host frames it.
fn recorded() -> Vec<SseEvent> {
    vec![
        message_start(json!({
            "input_tokens": 14, "cache_creation_input_tokens": 2048, "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2048},
            "output_tokens": 4,
        })),
        block_start(0, json!({"type": "text", "text": ""})),
        event("ping", json!({"type": "ping"})),
        delta(
            0,
            json!({"type": "text_delta", "text": "Bonjour — ça va ?"}),
        ),
        block_stop(0),
        event(
            "message_delta",
            json!({"type": "message_delta",
                "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
                "usage": {"output_tokens": 9}}),
        ),
        message_stop(),
    ]
}

/// Feeds `events` in reads of `per_read` events and then finishes.
fn decode(events: &[SseEvent], per_read: usize) -> Result<Vec<String>, ProviderError> {
    let mut state = state();
    let mut chunks = Vec::new();
    for read in events.chunks(per_read) {
        let decoded = state.feed(StreamInput::Events(read.to_vec()))?;
        chunks.extend(decoded.iter().map(describe));
    }
    chunks.extend(state.finish()?.iter().map(describe));
    Ok(chunks)
}

#[test]
fn recorded_stream_fed_in_reads_of_any_size() {
    let events = recorded();
    for per_read in 1..=events.len() {
        assert_eq!(
            decode(&events, per_read).expect("decoded"),
            [
                "start msg_01 claude-sonnet-4-5-20250929",
                "text Bonjour — ça va ?",
                "finish stop",
                "usage in=2062 out=9 read=0 write=2048 hour=2048 est=false",
            ],
            "{per_read} events a read"
        );
    }
}

#[test]
fn an_empty_read_yields_nothing() {
    let mut state = state();
    assert!(
        state
            .feed(StreamInput::Events(Vec::new()))
            .expect("decoded")
            .is_empty()
    );
}

#[test]
fn a_stream_cut_before_message_stop_is_a_protocol_error() {
    let events = recorded();
    for cut in 0..events.len() {
        let result = decode(&events[..cut], 1);
        assert!(
            matches!(&result, Err(ProviderError::Protocol(m)) if m.contains("message_stop")),
            "cut after {cut} events: {result:?}"
        );
    }
}

#[test]
fn raw_bytes_are_refused() {
    let mut state = state();
    let result = state.feed(StreamInput::Bytes(b"event: ping\n\n".to_vec()));
    assert!(matches!(result, Err(ProviderError::Protocol(m)) if m.contains("raw bytes")));
}

#[test]
fn a_failure_keeps_the_chunks_before_it_and_ends_the_stream() {
    let mut state = state();
    let chunks = state
        .feed(StreamInput::Events(vec![
            message_start(json!({"input_tokens": 1, "output_tokens": 1})),
            block_start(0, json!({"type": "text", "text": ""})),
            delta(0, json!({"type": "text_delta", "text": "Par"})),
            event(
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ),
            delta(0, json!({"type": "text_delta", "text": "is"})),
        ]))
        .expect("the chunks before the error");
    let chunks: Vec<String> = chunks.iter().map(describe).collect();
    assert_eq!(
        chunks,
        ["start msg_01 claude-sonnet-4-5-20250929", "text Par"]
    );
    let later = state.feed(StreamInput::Events(vec![message_stop()]));
    assert!(
        matches!(later, Err(ProviderError::Overloaded(_))),
        "{later:?}"
    );
    assert!(matches!(state.finish(), Err(ProviderError::Overloaded(_))));
}

#[test]
fn a_failure_first_in_a_read_is_returned_at_once() {
    let mut state = state();
    let result = state.feed(StreamInput::Events(vec![event(
        "error",
        json!({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}),
    )]));
    assert!(
        matches!(result, Err(ProviderError::ServerError(_))),
        "{result:?}"
    );
}
