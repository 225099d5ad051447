//! Properties of the stream decoder over generated event streams: how the
//! host splits the body into reads never changes what comes out, no event
//! makes it panic, and a stream cut before `message_stop` fails.

use super::tests::{describe, state};
use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::json;

/// One content block of a generated answer.
#[derive(Debug, Clone)]
enum BlockPlan {
    Text(Vec<String>),
    Thinking {
        deltas: Vec<String>,
        signature: String,
    },
    Redacted(String),
    Tool {
        id: String,
        name: String,
        pieces: Vec<String>,
    },
    /// A server tool: its deltas must not surface as client tool calls.
    ServerTool(Vec<String>),
}

/// A valid Messages API stream, before it is written out as events.
#[derive(Debug, Clone)]
struct StreamPlan {
    input: u32,
    cache_read: u32,
    cache_write_5m: u32,
    cache_write_1h: u32,
    output: u32,
    blocks: Vec<BlockPlan>,
    /// A `ping` after the block at each index where this is true.
    pings: Vec<bool>,
    stop_reason: Option<&'static str>,
}

fn block_plan() -> impl Strategy<Value = BlockPlan> {
    let text = || any::<String>();
    prop_oneof![
        vec(text(), 0..4).prop_map(BlockPlan::Text),
        (vec(text(), 0..4), text())
            .prop_map(|(deltas, signature)| BlockPlan::Thinking { deltas, signature }),
        text().prop_map(BlockPlan::Redacted),
        ("toolu_[a-z0-9]{1,8}", "[a-z_]{1,10}", vec(text(), 0..4))
            .prop_map(|(id, name, pieces)| BlockPlan::Tool { id, name, pieces }),
        vec(text(), 0..3).prop_map(BlockPlan::ServerTool),
    ]
}

fn stream_plan() -> impl Strategy<Value = StreamPlan> {
    (
        (
            any::<u32>(),
            0..5_000u32,
            0..5_000u32,
            0..5_000u32,
            any::<u32>(),
        ),
        vec(block_plan(), 0..6),
        vec(any::<bool>(), 0..6),
        proptest::option::of(prop_oneof![
            Just("end_turn"),
            Just("max_tokens"),
            Just("stop_sequence"),
            Just("tool_use"),
            Just("refusal"),
            Just("pause_turn"),
        ]),
    )
        .prop_map(
            |((input, cache_read, cache_write_5m, cache_write_1h, output), blocks, pings, stop)| {
                StreamPlan {
                    input,
                    cache_read,
                    cache_write_5m,
                    cache_write_1h,
                    output,
                    blocks,
                    pings,
                    stop_reason: stop,
                }
            },
        )
}

fn event(name: &str, data: Value) -> SseEvent {
    SseEvent {
        event: Some(name.into()),
        data: data.to_string(),
        id: None,
    }
}

fn opening(usage: Value) -> SseEvent {
    event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_prop", "type": "message", "role": "assistant", "content": [],
            "model": "claude-sonnet-4-5", "usage": usage,
        }}),
    )
}

/// The plan written out as the events Anthropic sends, `message_stop` last.
/// Usage is always reported, as Anthropic does: an estimate would need the
/// host's tokenizer, which a native test build does not have.
fn events(plan: &StreamPlan) -> Vec<SseEvent> {
    let mut out = vec![opening(json!({
        "input_tokens": plan.input,
        "cache_read_input_tokens": plan.cache_read,
        "cache_creation_input_tokens": plan.cache_write_5m + plan.cache_write_1h,
        "cache_creation": {
            "ephemeral_5m_input_tokens": plan.cache_write_5m,
            "ephemeral_1h_input_tokens": plan.cache_write_1h,
        },
        "output_tokens": 1,
    }))];
    for (index, block) in plan.blocks.iter().enumerate() {
        let start = |block: Value| {
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": index, "content_block": block}),
            )
        };
        let delta = |delta: Value| {
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            )
        };
        match block {
            BlockPlan::Text(deltas) => {
                out.push(start(json!({"type": "text", "text": ""})));
                for text in deltas {
                    out.push(delta(json!({"type": "text_delta", "text": text})));
                }
            }
            BlockPlan::Thinking { deltas, signature } => {
                out.push(start(
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                ));
                for text in deltas {
                    out.push(delta(json!({"type": "thinking_delta", "thinking": text})));
                }
                out.push(delta(
                    json!({"type": "signature_delta", "signature": signature}),
                ));
            }
            BlockPlan::Redacted(data) => {
                out.push(start(json!({"type": "redacted_thinking", "data": data})));
            }
            BlockPlan::Tool { id, name, pieces } => {
                out.push(start(
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                ));
                for piece in pieces {
                    out.push(delta(
                        json!({"type": "input_json_delta", "partial_json": piece}),
                    ));
                }
            }
            BlockPlan::ServerTool(pieces) => {
                out.push(start(
                    json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
                ));
                for piece in pieces {
                    out.push(delta(
                        json!({"type": "input_json_delta", "partial_json": piece}),
                    ));
                }
            }
        }
        out.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        if plan.pings.get(index).copied().unwrap_or(false) {
            out.push(event("ping", json!({"type": "ping"})));
        }
    }
    out.push(event(
        "message_delta",
        json!({"type": "message_delta",
            "delta": {"stop_reason": plan.stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": plan.output}}),
    ));
    out.push(event("message_stop", json!({"type": "message_stop"})));
    out
}

/// What a caller sees of a stream: its chunks up to the first failure,
/// and that failure.
#[derive(Debug, PartialEq)]
struct Outcome {
    chunks: Vec<String>,
    failure: Option<ProviderError>,
}

/// Feeds `events` in reads of the given sizes (0 is an empty read; the
/// sizes, and a read of one event after them, repeat until every event is
/// fed), then finishes.
fn decode_in_reads(events: &[SseEvent], sizes: &[usize]) -> Outcome {
    let mut decoder = state();
    let mut chunks = Vec::new();
    let mut rest = events;
    let mut sizes = sizes.iter().copied().chain([1]).cycle();
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(rest.len()).min(rest.len());
        let (read, later) = rest.split_at(size);
        rest = later;
        match decoder.feed(StreamInput::Events(read.to_vec())) {
            Ok(decoded) => chunks.extend(decoded.iter().map(describe)),
            Err(error) => {
                return Outcome {
                    chunks,
                    failure: Some(error),
                };
            }
        }
    }
    match decoder.finish() {
        Ok(last) => {
            chunks.extend(last.iter().map(describe));
            Outcome {
                chunks,
                failure: None,
            }
        }
        Err(error) => Outcome {
            chunks,
            failure: Some(error),
        },
    }
}

/// Read sizes for splitting a stream: mostly small, with empty reads.
fn read_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(0..5usize, 1..12)
}

/// A JSON value of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec(("[a-z_]{0,8}", inner), 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

const EVENT_NAMES: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
];

const FIELD_TYPES: &[&str] = &[
    "text",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "server_tool_use",
    "text_delta",
    "thinking_delta",
    "signature_delta",
    "input_json_delta",
    "overloaded_error",
    "",
];

/// An event that looks like Anthropic's, with any values in its fields.
fn plausible_event() -> impl Strategy<Value = SseEvent> {
    let name = prop::sample::select(EVENT_NAMES);
    let kind = prop::sample::select(FIELD_TYPES);
    let index = prop_oneof![(0..4u64).prop_map(|n| json!(n)), any_json()];
    (name, kind, index, any_json(), any_json(), any::<bool>()).prop_map(
        |(name, kind, index, value, usage, named)| {
            let data = json!({
                "type": name,
                "index": index,
                "content_block": {"type": kind, "text": value, "thinking": value,
                    "data": value, "id": value, "name": value},
                "delta": {"type": kind, "text": value, "thinking": value,
                    "signature": value, "partial_json": value, "stop_reason": value},
                "message": {"id": value, "model": value, "usage": usage},
                "usage": usage,
                "error": {"type": kind, "message": value},
            });
            SseEvent {
                event: named.then(|| name.to_owned()),
                data: data.to_string(),
                id: None,
            }
        },
    )
}

/// Any event at all: a plausible one, any JSON, or any text.
fn arbitrary_event() -> impl Strategy<Value = SseEvent> {
    let name = proptest::option::of(prop_oneof![
        prop::sample::select(EVENT_NAMES).prop_map(str::to_owned),
        any::<String>(),
    ]);
    prop_oneof![
        plausible_event(),
        (name.clone(), any_json()).prop_map(|(event, data)| SseEvent {
            event,
            data: data.to_string(),
            id: None,
        }),
        (name, any::<String>(), proptest::option::of(any::<String>()))
            .prop_map(|(event, data, id)| SseEvent { event, data, id }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_grouping_of_a_valid_stream_yields_the_same_chunks(
        plan in stream_plan(),
        sizes in read_sizes(),
    ) {
        let events = events(&plan);
        let whole = decode_in_reads(&events, &[events.len()]);
        prop_assert_eq!(&whole.failure, &None);
        prop_assert!(whole.chunks.first().is_some_and(|c| c.starts_with("start msg_prop")));
        let usage = whole.chunks.last().cloned().unwrap_or_default();
        prop_assert!(usage.starts_with("usage "), "{}", usage);
        let write = plan.cache_write_5m + plan.cache_write_1h;
        let expected_usage = format!(
            "usage in={} out={} read={} write={} hour={} est=false",
            plan.input.saturating_add(plan.cache_read).saturating_add(write),
            plan.output,
            plan.cache_read,
            write,
            plan.cache_write_1h,
        );
        prop_assert_eq!(usage, expected_usage);
        prop_assert_eq!(decode_in_reads(&events, &sizes), whole);
    }

    #[test]
    fn arbitrary_events_never_panic_and_fail_the_same_in_any_grouping(
        events in vec(arbitrary_event(), 0..24),
        sizes in read_sizes(),
    ) {
        let whole = decode_in_reads(&events, &[events.len()]);
        prop_assert_eq!(decode_in_reads(&events, &sizes), whole);
    }

    #[test]
    fn finish_before_message_stop_is_a_protocol_error(
        plan in stream_plan(),
        cut in any::<prop::sample::Index>(),
        sizes in read_sizes(),
    ) {
        let mut events = events(&plan);
        events.truncate(cut.index(events.len()));
        let outcome = decode_in_reads(&events, &sizes);
        prop_assert!(
            matches!(&outcome.failure, Some(ProviderError::Protocol(m)) if m.contains("message_stop")),
            "{:?}",
            outcome
        );
    }
}
