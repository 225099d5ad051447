//! The stream decoder fed as the host feeds it: events framed from the
//! vendor's body, grouped as reads happened to deliver them.

use super::*;
use crate::types::{ContentPart, FinishReason, Role};
use proptest::prelude::*;

static DIALECT: Dialect = Dialect {
    max_tokens_field: "max_tokens",
    reasoning_field: Some("reasoning_content"),
    reasoning_effort: false,
    ..Dialect::openai("test")
};

fn request() -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        messages: vec![Message {
            role: Role::User,
            content: vec![ContentPart::Text("hi".into())],
            name: None,
            cache_breakpoint: false,
        }],
        temperature: None,
        max_tokens: None,
        top_p: None,
        stop: Vec::new(),
        tools: Vec::new(),
        tool_choice: None,
        response_format: None,
        reasoning: None,
        user: None,
        vendor_params: None,
    }
}

fn decoder() -> StreamDecoder {
    StreamDecoder::new(&DIALECT, &request(), &Headers::default())
}

fn event(data: &str) -> SseEvent {
    SseEvent {
        event: None,
        data: data.to_owned(),
        id: None,
    }
}

fn events(data: &[&str]) -> Vec<SseEvent> {
    data.iter().map(|d| event(d)).collect()
}

/// Every chunk of `events` fed in groups of `sizes` (cycled; the rest in
/// one last group), then `finish`.
fn decode_grouped(events: &[SseEvent], sizes: &[usize]) -> Result<Vec<Chunk>, ProviderError> {
    let mut decoder = decoder();
    let mut chunks = Vec::new();
    let mut rest = events;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (group, tail) = rest.split_at((*size).min(rest.len()));
        chunks.extend(decoder.feed(StreamInput::Events(group.to_vec()))?);
        rest = tail;
    }
    chunks.extend(decoder.finish()?);
    Ok(chunks)
}

fn decode(events: &[SseEvent]) -> Result<Vec<Chunk>, ProviderError> {
    decode_grouped(events, &[1])
}

const OPENAI_STREAM: &[&str] = &[
    r#"{"id":"c1","model":"m-1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
    r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"}}],"usage":null}"#,
    r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}],"usage":null}"#,
    r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
    "[DONE]",
];

#[test]
fn usage_chunk_with_empty_choices_is_kept() {
    let chunks = decode(&events(OPENAI_STREAM)).expect("decodes");
    assert!(
        matches!(&chunks[..], [
            Chunk::Start(start),
            Chunk::Text(a),
            Chunk::Text(b),
            Chunk::Finish(FinishReason::Stop),
            Chunk::Usage(usage),
        ] if start.id == "c1" && start.model == "m-1" && a == "Hel" && b == "lo"
            && usage.input_tokens == 9 && usage.output_tokens == 2 && !usage.estimated),
        "{chunks:?}"
    );
}

#[test]
fn the_start_chunk_carries_the_response_headers() {
    let headers = Headers::from_pairs([
        ("x-request-id", "req_1"),
        ("x-ratelimit-remaining-tokens", "900"),
    ]);
    let mut decoder = StreamDecoder::new(&DIALECT, &request(), &headers);
    let chunks = decoder
        .feed(StreamInput::Events(events(&OPENAI_STREAM[..1])))
        .expect("decodes");
    let [Chunk::Start(start)] = &chunks[..] else {
        panic!("expected the start chunk: {chunks:?}");
    };
    assert_eq!(start.request_id.as_deref(), Some("req_1"));
    assert_eq!(
        start.rate_limits.and_then(|l| l.tokens_remaining),
        Some(900)
    );
}

#[test]
fn a_stream_cut_before_done_fails_at_finish() {
    let mut decoder = decoder();
    let cut = events(&OPENAI_STREAM[..3]);
    assert_eq!(
        decoder.feed(StreamInput::Events(cut)).map(|c| c.len()),
        Ok(4)
    );
    assert!(!decoder.is_done());
    assert!(matches!(
        decoder.finish(),
        Err(ProviderError::Protocol(message)) if message.contains("before [DONE]")
    ));
}

#[test]
fn events_after_done_are_ignored() {
    let mut all = events(OPENAI_STREAM);
    all.push(event(
        r#"{"choices":[{"index":0,"delta":{"content":"late"}}]}"#,
    ));
    all.push(event("not json at all"));
    let chunks = decode_grouped(&all, &[all.len()]).expect("decodes");
    assert_eq!(chunks, decode(&events(OPENAI_STREAM)).expect("decodes"));
}

#[test]
fn bytes_are_refused_by_an_event_decoder() {
    assert!(matches!(
        decoder().feed(StreamInput::Bytes(b"data: [DONE]\n\n".to_vec())),
        Err(ProviderError::Protocol(message)) if message.contains("server-sent events")
    ));
}

#[test]
fn an_error_event_fails_the_stream() {
    let error = events(&[r#"{"error":{"message":"busy","type":"overloaded_error"}}"#]);
    assert!(matches!(
        decoder().feed(StreamInput::Events(error)),
        Err(ProviderError::Overloaded(detail)) if detail.message == "busy"
    ));
}

#[test]
fn an_event_that_is_not_json_is_a_protocol_error() {
    assert!(matches!(
        decoder().feed(StreamInput::Events(events(&["{\"id\":"]))),
        Err(ProviderError::Protocol(message)) if message.contains("not JSON")
    ));
}

#[test]
fn keep_alive_and_named_events_without_data_yield_nothing() {
    let mut named = event("");
    named.event = Some("ping".into());
    let chunks = decoder()
        .feed(StreamInput::Events(vec![event(""), named, event("  ")]))
        .expect("decodes");
    assert!(chunks.is_empty());
}

#[test]
fn a_stream_without_usage_is_estimated_by_the_host_tokenizer() {
    let no_usage = events(&[
        r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}"#,
        "[DONE]",
    ]);
    // Natively there is no host tokenizer: the estimate is asked for, and
    // its absence reported as a protocol error rather than a panic.
    assert!(matches!(
        decode(&no_usage),
        Err(ProviderError::Protocol(message)) if message.contains("tokenizer")
    ));
}

#[test]
fn tool_call_fragments_keep_their_index() {
    let stream = events(&[
        r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
        "[DONE]",
    ]);
    let chunks = decode(&stream).expect("decodes");
    assert!(
        matches!(&chunks[..], [
            Chunk::Start(_),
            Chunk::ToolCall(first),
            Chunk::ToolCall(second),
            Chunk::Finish(FinishReason::ToolCalls),
            Chunk::Usage(_),
        ] if first.id.as_deref() == Some("call_1") && first.name.as_deref() == Some("f")
            && second.index == 0 && second.arguments == "{}"),
        "{chunks:?}"
    );
}

/// One piece of a generated valid stream.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Reasoning(String),
    ToolCall { index: u8, arguments: String },
    KeepAlive,
    PlaceholderUsage,
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        ".{0,12}".prop_map(Piece::Text),
        ".{1,12}".prop_map(Piece::Reasoning),
        (0u8..3, ".{0,8}").prop_map(|(index, arguments)| Piece::ToolCall { index, arguments }),
        Just(Piece::KeepAlive),
        Just(Piece::PlaceholderUsage),
    ]
}

/// A valid stream: the pieces as events, a finish, the real usage, `[DONE]`.
fn valid_stream() -> impl Strategy<Value = (Vec<Piece>, Vec<SseEvent>)> {
    (
        prop::collection::vec(piece(), 0..24),
        1u32..5000,
        1u32..5000,
    )
        .prop_map(|(pieces, input, output)| {
            let mut events = Vec::new();
            for piece in &pieces {
                let data = match piece {
                    Piece::Text(text) => serde_json::json!({"id": "s", "model": "m-9",
                        "choices": [{"index": 0, "delta": {"content": text}}]})
                    .to_string(),
                    Piece::Reasoning(text) => serde_json::json!({"id": "s",
                        "choices": [{"index": 0, "delta": {"content": null, "reasoning_content": text}}]})
                    .to_string(),
                    Piece::ToolCall { index, arguments } => serde_json::json!({"id": "s",
                        "choices": [{"index": 0, "delta": {"tool_calls": [{"index": index,
                            "function": {"arguments": arguments}}]}}]})
                    .to_string(),
                    Piece::KeepAlive => String::new(),
                    Piece::PlaceholderUsage => serde_json::json!({"id": "s", "choices": [],
                        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
                    .to_string(),
                };
                events.push(event(&data));
            }
            events.push(event(
                &serde_json::json!({"id": "s", "choices": [{"index": 0, "delta": {},
                    "finish_reason": "stop"}]})
                .to_string(),
            ));
            events.push(event(
                &serde_json::json!({"id": "s", "choices": [], "usage": {"prompt_tokens": input,
                    "completion_tokens": output, "total_tokens": input + output}})
                .to_string(),
            ));
            events.push(event("[DONE]"));
            (pieces, events)
        })
}

fn arbitrary_event() -> impl Strategy<Value = SseEvent> {
    let data = prop_oneof![
        any::<String>(),
        Just("[DONE]".to_string()),
        Just(r#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#.to_string()),
        Just(r#"{"error":"boom"}"#.to_string()),
        Just(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":-1}]}}]}"#.to_string()),
        Just(r#"{"usage":{"prompt_tokens":1e30,"completion_tokens":-3}}"#.to_string()),
        "[{}\\[\\]\":,a-z0-9 ]{0,40}",
    ];
    (
        prop::option::of(any::<String>()),
        data,
        prop::option::of(any::<String>()),
    )
        .prop_map(|(event, data, id)| SseEvent { event, data, id })
}

proptest! {
    #[test]
    fn any_grouping_of_a_valid_stream_gives_the_same_chunks(
        (pieces, events) in valid_stream(),
        sizes in prop::collection::vec(1usize..6, 1..8),
    ) {
        let one_by_one = decode_grouped(&events, &[1]).expect("a valid stream decodes");
        let all_at_once = decode_grouped(&events, &[events.len()]).expect("decodes");
        let grouped = decode_grouped(&events, &sizes).expect("decodes");
        prop_assert_eq!(&one_by_one, &all_at_once);
        prop_assert_eq!(&one_by_one, &grouped);

        let text: String = pieces.iter().filter_map(|p| match p {
            Piece::Text(t) => Some(t.as_str()),
            _ => None,
        }).collect();
        let decoded: String = one_by_one.iter().filter_map(|c| match c {
            Chunk::Text(t) => Some(t.as_str()),
            _ => None,
        }).collect();
        prop_assert_eq!(text, decoded);
        prop_assert!(matches!(one_by_one.first(), Some(Chunk::Start(_))), "starts with start");
        let usages = one_by_one.iter().filter(|c| matches!(c, Chunk::Usage(_))).count();
        prop_assert_eq!(usages, 1, "exactly one usage, the real one");
    }

    #[test]
    fn finish_before_done_is_a_protocol_error(
        (_pieces, events) in valid_stream(),
        cut in any::<prop::sample::Index>(),
    ) {
        // Any prefix short of the `[DONE]` event.
        let prefix = &events[..cut.index(events.len())];
        let mut decoder = decoder();
        decoder.feed(StreamInput::Events(prefix.to_vec())).expect("a valid prefix decodes");
        prop_assert!(matches!(decoder.finish(), Err(ProviderError::Protocol(_))));
    }

    #[test]
    fn arbitrary_events_never_panic(
        events in prop::collection::vec(arbitrary_event(), 0..16),
        sizes in prop::collection::vec(1usize..5, 1..4),
    ) {
        let mut decoder = decoder();
        let mut rest = &events[..];
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (group, tail) = rest.split_at((*size).min(rest.len()));
            rest = tail;
            if decoder.feed(StreamInput::Events(group.to_vec())).is_err() {
                break;
            }
        }
        let _ = decoder.finish();
    }
}
