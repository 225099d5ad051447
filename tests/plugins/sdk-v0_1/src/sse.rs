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
