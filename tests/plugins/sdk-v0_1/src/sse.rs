//! Incremental Server-Sent Events parser.
//!
//! Follows the WHATWG event-stream rules that matter to vendor APIs: events
//! end at a blank line; `\n`, `\r\n` and `\r` all end lines (also when the
//! two bytes of a CRLF arrive in different reads); lines starting with `:`
//! are comments (keep-alives); several `data:` lines join with `\n`; one
//! space after the colon is dropped. Bytes are buffered until a line is
//! complete, so an event or a UTF-8 sequence split across reads is never
//! broken.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if the event named itself.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field, if present.
    pub id: Option<String>,
}

/// Feeds on bytes as they arrive and yields complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// Start of the unconsumed part of `buf`.
    pos: usize,
    /// The previous line ended in `\r` at the very end of the input seen so
    /// far; a `\n` that starts the next read belongs to it.
    skip_lf: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    comments: u64,
}

impl SseParser {
    /// A parser with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event in what was fed so far, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        while let Some(line_end) = self.next_line_end() {
            let (start, end, next) = line_end;
            let line = String::from_utf8_lossy(&self.buf[start..end]).into_owned();
            self.pos = next;
            if let Some(event) = self.process_line(&line) {
                return Some(event);
            }
        }
        None
    }

    /// Number of comment lines (keep-alives) seen so far.
    pub fn comments_seen(&self) -> u64 {
        self.comments
    }

    /// Bytes buffered that do not yet form a complete event (for error
    /// messages when a stream ends early).
    pub fn has_partial_event(&self) -> bool {
        self.has_data
            || self.buf[self.pos..]
                .iter()
                .any(|b| !b.is_ascii_whitespace())
    }

    /// Finds the next complete line: (start, end, start of the next line).
    fn next_line_end(&mut self) -> Option<(usize, usize, usize)> {
        if self.skip_lf && self.pos < self.buf.len() {
            if self.buf[self.pos] == b'\n' {
                self.pos += 1;
            }
            self.skip_lf = false;
        }
        let rest = &self.buf[self.pos..];
        let offset = rest.iter().position(|&b| b == b'\n' || b == b'\r')?;
        let start = self.pos;
        let end = start + offset;
        if self.buf[end] == b'\r' {
            match self.buf.get(end + 1) {
                Some(b'\n') => return Some((start, end, end + 2)),
                Some(_) => return Some((start, end, end + 1)),
                None => {
                    self.skip_lf = true;
                    return Some((start, end, end + 1));
                }
            }
        }
        Some((start, end, end + 1))
    }

    fn process_line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            self.comments += 1;
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
            id: self.id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in input.chunks(piece.max(1)) {
            parser.feed(chunk);
            while let Some(event) = parser.next_event() {
                events.push(event);
            }
        }
        events
    }

    fn data(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            id: None,
        }
    }

    #[test]
    fn splits_at_every_byte_boundary() {
        let input = "data: {\"a\":1}\n\nevent: ping\ndata: {}\n\ndata: [DONE]\n\n";
        let expected = vec![
            data(None, "{\"a\":1}"),
            data(Some("ping"), "{}"),
            data(None, "[DONE]"),
        ];
        for piece in 1..input.len() {
            assert_eq!(
                parse_in_pieces(input.as_bytes(), piece),
                expected,
                "piece {piece}"
            );
        }
    }

    #[test]
    fn crlf_and_cr_line_endings() {
        let crlf = "data: one\r\n\r\ndata: two\r\n\r\n";
        let cr = "data: one\r\rdata: two\r\r";
        for input in [crlf, cr] {
            for piece in 1..input.len() {
                assert_eq!(
                    parse_in_pieces(input.as_bytes(), piece),
                    vec![data(None, "one"), data(None, "two")],
                    "{input:?} piece {piece}"
                );
            }
        }
    }

    #[test]
    fn comments_are_skipped_and_counted() {
        let mut parser = SseParser::new();
        parser.feed(b": keep-alive\n\n: keep-alive\n\ndata: x\n\n");
        assert_eq!(parser.next_event(), Some(data(None, "x")));
        assert_eq!(parser.next_event(), None);
        assert_eq!(parser.comments_seen(), 2);
    }

    #[test]
    fn multi_line_data_joins_with_newline() {
        let events = parse_in_pieces(b"data: first\ndata:second\ndata\n\n", 3);
        assert_eq!(events, vec![data(None, "first\nsecond\n")]);
    }

    #[test]
    fn utf8_split_across_reads_survives() {
        let input = "data: héllo — ✓\n\n".as_bytes();
        for piece in 1..input.len() {
            assert_eq!(parse_in_pieces(input, piece), vec![data(None, "héllo — ✓")]);
        }
    }

    #[test]
    fn incomplete_event_is_not_dispatched() {
        let mut parser = SseParser::new();
        parser.feed(b"data: {\"partial\":");
        assert_eq!(parser.next_event(), None);
        assert!(parser.has_partial_event());
    }

    #[test]
    fn event_type_resets_after_empty_event() {
        let events = parse_in_pieces(b"event: ping\n\ndata: x\n\n", 1);
        assert_eq!(events, vec![data(None, "x")]);
    }
}
