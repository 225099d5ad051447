//! The host's server-sent events framer: the one place a streamed vendor
//! body is cut into events before a contract 0.2 plugin's decoder sees it.
//!
//! It follows the WHATWG event-stream rules: a blank line ends an event;
//! `\n`, `\r\n` and `\r` all end lines, also when the two bytes of a CRLF
//! arrive in different reads; lines starting with `:` are comments
//! (keep-alives); several `data:` lines join with `\n`; one space after a
//! field's colon is dropped; a UTF-8 byte order mark at the very start of the
//! stream is skipped; `id:` sets the last event id, carried by every later
//! event until another `id:` changes it. Lines are decoded only once they
//! are complete, so a UTF-8 sequence split across reads is never broken;
//! invalid UTF-8 becomes U+FFFD.
//!
//! Memory is bounded: the bytes held for the event being framed (its
//! retained lines, decoded, plus the incomplete line) may not exceed the cap
//! given to [`SseFramer::new`]. Past it [`SseFramer::feed`] fails with
//! [`SseError::TooLarge`], whatever the pieces the bytes arrived in. Each
//! byte fed is scanned once, so a long event fed in small pieces costs time
//! linear in its length.

use std::collections::VecDeque;

/// The UTF-8 byte order mark, skipped once at the start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One event as the framer dispatched it (the WIT `sse-event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, if the event named itself (an empty name counts
    /// as none, as the default `message` type).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id set so far in the stream, if any is set.
    pub id: Option<String>,
}

/// Why a stream cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SseError {
    /// One event, or one line, needs more than the framer may buffer.
    #[error("a server-sent event holds more than {limit} bytes")]
    TooLarge {
        /// The cap given to [`SseFramer::new`].
        limit: usize,
    },
}

/// Frames a byte stream into server-sent events, read by read.
///
/// Feed each read with [`feed`](Self::feed), then drain the events it
/// completed with [`next_event`](Self::next_event). Once `feed` has failed,
/// the framer stays failed: later calls return the same error (events
/// completed before the failure can still be drained).
#[derive(Debug)]
pub(crate) struct SseFramer {
    /// Bytes fed and not yet consumed, from `line_start` on.
    buf: Vec<u8>,
    /// Start of the incomplete line in `buf`.
    line_start: usize,
    /// Where the search for the next line end resumes: bytes before it are
    /// known to hold none.
    scan: usize,
    /// The last line ended in a `\r` that was the last byte fed so far; a
    /// `\n` starting the next read belongs to it.
    skip_lf: bool,
    /// Whether the start of the stream was checked for a byte order mark.
    bom_checked: bool,
    builder: EventBuilder,
    ready: VecDeque<SseEvent>,
    failure: Option<SseError>,
    max_buffered_bytes: usize,
}

/// The fields of the event being framed.
#[derive(Debug, Default)]
struct EventBuilder {
    event_type: String,
    /// The `data:` values so far, each followed by `\n` (the last one is
    /// dropped at dispatch).
    data: String,
    has_data: bool,
    /// The last event id buffer; it outlives events.
    last_id: String,
    /// Bytes counted against the cap for this event: its retained lines,
    /// decoded.
    held: usize,
}

impl SseFramer {
    /// A framer that buffers at most `max_buffered_bytes` for one event.
    pub(crate) fn new(max_buffered_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            line_start: 0,
            scan: 0,
            skip_lf: false,
            bom_checked: false,
            builder: EventBuilder::default(),
            ready: VecDeque::new(),
            failure: None,
            max_buffered_bytes,
        }
    }

    /// Adds the bytes of one read and frames every line they complete.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        self.compact();
        self.buf.extend_from_slice(bytes);
        let framed = self.frame();
        if let Err(failure) = framed {
            self.failure = Some(failure);
            // Nothing more will be framed: give the memory back now.
            self.buf = Vec::new();
            self.line_start = 0;
            self.scan = 0;
            self.builder = EventBuilder::default();
        }
        framed
    }

    /// The next event completed by what was fed so far, if any.
    pub(crate) fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    /// Whether the stream stopped inside an event: some of its fields, or
    /// part of a line, were read but no blank line ended it yet. A stream
    /// that ends here was cut.
    pub(crate) fn has_partial_event(&self) -> bool {
        self.builder.has_data
            || !self.builder.event_type.is_empty()
            || self.buf.len() > self.line_start
    }

    /// Drops consumed bytes, moving the incomplete line to the front only
    /// when it is shorter than what is dropped, so each byte moves at most
    /// once on average.
    fn compact(&mut self) {
        if self.line_start == self.buf.len() {
            self.buf.clear();
            self.line_start = 0;
            self.scan = 0;
        } else if self.line_start > self.buf.len() / 2 {
            self.buf.drain(..self.line_start);
            self.scan -= self.line_start;
            self.line_start = 0;
        }
    }

    fn frame(&mut self) -> Result<(), SseError> {
        if !self.bom_checked {
            let start = &self.buf[self.line_start..];
            if start.len() < BOM.len() && BOM.starts_with(start) {
                // Too few bytes yet to tell.
                return Ok(());
            }
            if start.starts_with(BOM) {
                self.line_start += BOM.len();
                self.scan = self.line_start;
            }
            self.bom_checked = true;
        }
        if self.skip_lf && self.line_start < self.buf.len() {
            if self.buf[self.line_start] == b'\n' {
                self.line_start += 1;
                self.scan = self.line_start;
            }
            self.skip_lf = false;
        }
        while let Some(offset) = self.buf[self.scan..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            let end = self.scan + offset;
            let next = match (self.buf[end], self.buf.get(end + 1)) {
                (b'\r', Some(b'\n')) => end + 2,
                (b'\r', None) => {
                    self.skip_lf = true;
                    end + 1
                }
                _ => end + 1,
            };
            let line = &self.buf[self.line_start..end];
            if let Some(event) = self.builder.line(line, self.max_buffered_bytes)? {
                self.ready.push_back(event);
            }
            self.line_start = next;
            self.scan = next;
        }
        self.scan = self.buf.len();
        let incomplete = self.buf.len() - self.line_start;
        if self.builder.held + incomplete > self.max_buffered_bytes {
            return Err(SseError::TooLarge {
                limit: self.max_buffered_bytes,
            });
        }
        Ok(())
    }
}

impl EventBuilder {
    /// Processes one complete line (without its end), returning the event a
    /// blank line completes.
    ///
    /// The cap is checked on the decoded line, which is never shorter than
    /// its bytes: a line under the cap whole was under it while incomplete,
    /// so the outcome does not depend on how the bytes were split.
    fn line(&mut self, line: &[u8], limit: usize) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        let too_large = SseError::TooLarge { limit };
        if line[0] == b':' {
            return if self.held + line.len() > limit {
                Err(too_large)
            } else {
                Ok(None)
            };
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*text, ""),
        };
        let retained = matches!(field, "event" | "data" | "id");
        let held = self.held + if retained { text.len() } else { line.len() };
        if held > limit {
            return Err(too_large);
        }
        match field {
            "event" => value.clone_into(&mut self.event_type),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.last_id),
            _ => {}
        }
        if retained {
            self.held = held;
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        self.held = 0;
        let event_type = std::mem::take(&mut self.event_type);
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        Some(SseEvent {
            event: (!event_type.is_empty()).then_some(event_type),
            data,
            id: (!self.last_id.is_empty()).then(|| self.last_id.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LARGE: usize = 1 << 20;

    /// Every event of `input` fed in the given pieces, and whether the
    /// framer failed.
    fn frame_in_pieces<'a>(
        cap: usize,
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<SseEvent>, Option<SseError>) {
        let mut framer = SseFramer::new(cap);
        let mut events = Vec::new();
        let mut failure = None;
        for piece in pieces {
            let fed = framer.feed(piece);
            while let Some(event) = framer.next_event() {
                events.push(event);
            }
            if let Err(err) = fed {
                failure = Some(err);
                break;
            }
            assert!(
                held_bytes(&framer) <= cap,
                "holds {} of {cap}",
                held_bytes(&framer)
            );
        }
        (events, failure)
    }

    fn frame_whole(cap: usize, input: &[u8]) -> (Vec<SseEvent>, Option<SseError>) {
        frame_in_pieces(cap, [input])
    }

    /// What the cap measures: the event's retained lines and the
    /// incomplete line (not the two bytes that may yet be a BOM).
    fn held_bytes(framer: &SseFramer) -> usize {
        if !framer.bom_checked {
            return 0;
        }
        framer.builder.held + (framer.buf.len() - framer.line_start)
    }

    fn event(kind: Option<&str>, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: kind.map(str::to_owned),
            data: data.to_owned(),
            id: id.map(str::to_owned),
        }
    }

    fn every_split(input: &[u8]) -> impl Iterator<Item = Vec<&[u8]>> {
        (1..input.len()).map(move |piece| input.chunks(piece).collect())
    }

    #[test]
    fn vendor_streams_frame_the_same_at_every_piece_size() {
        let input = "data: {\"a\":1}\n\nevent: ping\ndata: {}\n\ndata: [DONE]\n\n".as_bytes();
        let expected = vec![
            event(None, "{\"a\":1}", None),
            event(Some("ping"), "{}", None),
            event(None, "[DONE]", None),
        ];
        for pieces in every_split(input) {
            assert_eq!(frame_in_pieces(LARGE, pieces), (expected.clone(), None));
        }
    }

    #[test]
    fn crlf_and_cr_end_lines_also_split_across_reads() {
        // A CRLF read as two line ends would end the first event early.
        for input in [
            "data: one\r\ndata: 1\r\n\r\ndata: two\r\n\r\n",
            "data: one\rdata: 1\r\rdata: two\r\r",
        ] {
            for pieces in every_split(input.as_bytes()) {
                assert_eq!(
                    frame_in_pieces(LARGE, pieces).0,
                    vec![event(None, "one\n1", None), event(None, "two", None)],
                    "{input:?}"
                );
            }
        }
    }

    #[test]
    fn comments_and_unknown_fields_are_skipped() {
        let input = b": keep-alive\n\nretry: 100\nfoo\ndata: x\n: inside\n\n";
        assert_eq!(frame_whole(LARGE, input).0, vec![event(None, "x", None)]);
    }

    #[test]
    fn data_lines_join_and_only_one_space_is_dropped() {
        let input = b"data: first\ndata:second\ndata:  third\ndata\n\n";
        assert_eq!(
            frame_whole(LARGE, input).0,
            vec![event(None, "first\nsecond\n third\n", None)]
        );
    }

    #[test]
    fn ids_carry_over_until_reset() {
        let input = b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: x\0y\ndata: d\n\n";
        assert_eq!(
            frame_whole(LARGE, input).0,
            vec![
                event(None, "a", Some("7")),
                event(None, "b", Some("7")),
                event(None, "c", None),
                event(None, "d", None),
            ]
        );
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_resets_its_type() {
        let input = b"event: ping\n\ndata: x\n\nevent:\ndata: y\n\n";
        assert_eq!(
            frame_whole(LARGE, input).0,
            vec![event(None, "x", None), event(None, "y", None)]
        );
    }

    #[test]
    fn a_leading_bom_is_skipped_once_even_when_split() {
        let input = "\u{feff}data: x\n\n\u{feff}data: y\n\n".as_bytes();
        for pieces in every_split(input) {
            // The second BOM is not at the start: it names an unknown field.
            assert_eq!(
                frame_in_pieces(LARGE, pieces).0,
                vec![event(None, "x", None)]
            );
        }
        assert_eq!(frame_whole(LARGE, b"\xEF\xBBdata: x\n\n").0, vec![]);
    }

    #[test]
    fn utf8_split_across_reads_survives_and_invalid_bytes_are_replaced() {
        let input = "data: héllo — ✓\n\n".as_bytes();
        for pieces in every_split(input) {
            assert_eq!(
                frame_in_pieces(LARGE, pieces).0,
                vec![event(None, "héllo — ✓", None)]
            );
        }
        assert_eq!(
            frame_whole(LARGE, b"data: a\xFFb\xE2\x9C\n\n").0,
            vec![event(None, "a\u{fffd}b\u{fffd}", None)]
        );
    }

    #[test]
    fn a_cut_stream_leaves_a_partial_event() {
        let mut framer = SseFramer::new(LARGE);
        assert!(!framer.has_partial_event());
        framer.feed(b"data: {\"partial\":").expect("feed");
        assert_eq!(framer.next_event(), None);
        assert!(framer.has_partial_event());
        framer.feed(b"1}\n").expect("feed");
        assert!(framer.has_partial_event());
        framer.feed(b"\n").expect("feed");
        assert!(framer.next_event().is_some());
        assert!(!framer.has_partial_event());
    }

    #[test]
    fn an_event_over_the_cap_fails_and_the_framer_stays_failed() {
        let limit = 16;
        let mut framer = SseFramer::new(limit);
        framer.feed(b"data: fits\n\n").expect("small event");
        assert_eq!(framer.next_event(), Some(event(None, "fits", None)));
        let too_large = Err(SseError::TooLarge { limit });
        assert_eq!(framer.feed(b"data: 0123456789\ndata: 0"), too_large);
        assert_eq!(framer.feed(b"\n\ndata: x\n\n"), too_large);
        assert_eq!(framer.next_event(), None);
        assert_eq!(
            SseError::TooLarge { limit }.to_string(),
            "a server-sent event holds more than 16 bytes"
        );
    }

    #[test]
    fn a_line_that_never_ends_fails_at_the_cap_and_frees_its_bytes() {
        let mut framer = SseFramer::new(1024);
        let fed = (0..10_000)
            .position(|_| framer.feed(b": no end in sight ").is_err())
            .expect("the cap is reached");
        assert_eq!(fed, 1024 / 18);
        assert_eq!(framer.buf.capacity(), 0);
    }

    #[test]
    fn a_long_event_in_one_byte_pieces_is_framed_in_linear_time() {
        // Quadratic rescanning would take minutes here.
        let data = "x".repeat(1 << 20);
        let input = format!("data: {data}\n\n");
        let mut framer = SseFramer::new(2 << 20);
        for byte in input.as_bytes() {
            framer.feed(std::slice::from_ref(byte)).expect("feed");
        }
        assert_eq!(framer.next_event().map(|e| e.data.len()), Some(data.len()));
    }

    /// One event as a test writes it: its fields and how each line ends.
    #[derive(Debug, Clone)]
    struct Written {
        kind: Option<String>,
        data: Vec<String>,
        id: Option<String>,
        comment: Option<String>,
        unknown: bool,
    }

    fn written_event() -> impl Strategy<Value = Written> {
        (
            proptest::option::of("[^\r\n]{0,8}"),
            proptest::collection::vec("[^\r\n]{0,12}", 0..4),
            proptest::option::of("[^\r\n\0]{0,6}"),
            proptest::option::of("[^\r\n]{0,8}"),
            any::<bool>(),
        )
            .prop_map(|(kind, data, id, comment, unknown)| Written {
                kind,
                data,
                id,
                comment,
                unknown,
            })
    }

    fn field(name: &str, value: &str, spaced: bool) -> String {
        // A value that starts with a space needs the one space the framer
        // drops in front of it.
        if spaced || value.starts_with(' ') {
            format!("{name}: {value}")
        } else {
            format!("{name}:{value}")
        }
    }

    /// The bytes of `events` with line ends picked from `ends`, and the
    /// events a framer must yield from them.
    fn render(events: &[Written], ends: &[u8], bom: bool) -> (Vec<u8>, Vec<SseEvent>) {
        let mut lines: Vec<String> = Vec::new();
        let mut expected = Vec::new();
        let mut last_id = String::new();
        for written in events {
            if let Some(comment) = &written.comment {
                lines.push(format!(":{comment}"));
            }
            if let Some(kind) = &written.kind {
                lines.push(field("event", kind, lines.len().is_multiple_of(2)));
            }
            if written.unknown {
                lines.push("retry: 3000".into());
            }
            for data in &written.data {
                lines.push(field("data", data, data.len().is_multiple_of(2)));
            }
            if let Some(id) = &written.id {
                lines.push(field("id", id, true));
                id.clone_into(&mut last_id);
            }
            lines.push(String::new());
            if !written.data.is_empty() {
                expected.push(SseEvent {
                    event: written.kind.clone().filter(|k| !k.is_empty()),
                    data: written.data.join("\n"),
                    id: (!last_id.is_empty()).then(|| last_id.clone()),
                });
            }
        }
        let mut bytes = if bom { BOM.to_vec() } else { Vec::new() };
        let mut previous_cr = false;
        for (i, line) in lines.iter().enumerate() {
            let mut end: &[u8] = match ends.get(i % ends.len().max(1)).map(|e| e % 3) {
                Some(1) => b"\r\n",
                Some(2) => b"\r",
                _ => b"\n",
            };
            // A `\r` then an empty line ended by `\n` would read as one CRLF.
            if previous_cr && line.is_empty() && end == b"\n" {
                end = b"\r";
            }
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(end);
            previous_cr = end == b"\r";
        }
        (bytes, expected)
    }

    fn split_at<'a>(input: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        at.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for cut in at.into_iter().chain([input.len()]) {
            pieces.push(&input[start..cut]);
            start = cut;
        }
        pieces
    }

    /// Bytes that often form the framer's special cases.
    fn stream_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => any::<u8>(),
            2 => Just(b'\n'),
            2 => Just(b'\r'),
            2 => Just(b':'),
            1 => Just(b' '),
            1 => Just(0xEF),
            1 => Just(0xBB),
            1 => Just(0xBF),
            3 => prop::sample::select(b"dataeventid".to_vec()),
        ]
    }

    proptest! {
        #[test]
        fn valid_streams_frame_the_same_in_any_pieces(
            events in proptest::collection::vec(written_event(), 0..8),
            ends in proptest::collection::vec(any::<u8>(), 1..8),
            bom in any::<bool>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
        ) {
            let (input, expected) = render(&events, &ends, bom);
            prop_assert_eq!(frame_whole(LARGE, &input), (expected.clone(), None));
            prop_assert_eq!(
                frame_in_pieces(LARGE, split_at(&input, &cuts)),
                (expected.clone(), None)
            );
            prop_assert_eq!(frame_in_pieces(LARGE, input.chunks(1)), (expected, None));
        }

        #[test]
        fn arbitrary_bytes_frame_the_same_in_any_pieces_within_the_cap(
            input in proptest::collection::vec(stream_byte(), 0..256),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
            cap in 0usize..96,
        ) {
            // `frame_in_pieces` also checks the cap after every read.
            let whole = frame_whole(cap, &input);
            prop_assert_eq!(&frame_in_pieces(cap, split_at(&input, &cuts)), &whole);
            prop_assert_eq!(&frame_in_pieces(cap, input.chunks(1)), &whole);
            let unbounded = frame_whole(LARGE, &input);
            prop_assert_eq!(unbounded.1, None);
            if whole.1.is_none() {
                prop_assert_eq!(whole.0, unbounded.0);
            }
        }
    }
}
