//! Splits the byte stream from a monitor into JSON messages.
//!
//! QMP is a stream of JSON objects, not of lines: a monitor with
//! `pretty=on` spreads one message over many lines, and LF or CRLF may sit
//! between them. The framer finds where each top-level object ends by
//! tracking strings and bracket depth over bytes it has not looked at yet,
//! so a 20 MB reply arriving in many reads is scanned once, then decoded
//! once, in place.

use crate::bounds::{self, MAX_MESSAGE, MAX_VALUES};

/// Accumulates bytes and yields complete messages.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes before this index are fully consumed and can be dropped.
    start: usize,
    /// Bytes before this index have been scanned.
    scanned: usize,
    /// Bytes before this index hold data; the rest is room to read into.
    end: usize,
    /// Reading past bytes until a 0xFF marker ([`Framer::after_marker`]).
    skipping: bool,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Values in the message being scanned, counted as
    /// [`bounds::values_at_most`] does.
    values: usize,
    /// The largest message taken ([`MAX_MESSAGE`]).
    limit: usize,
    /// The most values a message may hold ([`MAX_VALUES`]).
    max_values: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            end: 0,
            skipping: false,
            depth: 0,
            in_string: false,
            escaped: false,
            values: 0,
            limit: MAX_MESSAGE,
            max_values: MAX_VALUES,
        }
    }
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A framer that reads past everything until a 0xFF marker (the guest
    /// agent's, before its reply to `guest-sync-delimited`).
    pub fn after_marker() -> Self {
        Framer { skipping: true, ..Self::default() }
    }

    /// Room to read into: drops consumed bytes and returns a spare slice of
    /// at least `want` bytes. Call [`Framer::filled`] with how many were read.
    /// The buffer only grows, so its bytes are zeroed once, not per read.
    pub fn spare(&mut self, want: usize) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        if self.buf.len() < self.end + want {
            self.buf.resize(self.end + want, 0);
        }
        let end = self.end;
        self.buf.get_mut(end..).unwrap_or_default()
    }

    /// Keeps `n` bytes of the slice [`Framer::spare`] returned.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next complete message, if the bytes so far hold one.
    pub fn next_message(&mut self) -> Option<Result<serde_json::Value, String>> {
        while self.scanned < self.end {
            let byte = self.buf.get(self.scanned).copied().unwrap_or(0);
            self.scanned += 1;
            if self.skipping {
                self.skipping = byte != 0xFF;
                self.start = self.scanned;
                continue;
            }
            if self.depth == 0 {
                match byte {
                    // 0xFF (never in UTF-8 text) is the guest agent's
                    // reset marker, sent before a guest-sync-delimited reply.
                    b' ' | b'\t' | b'\r' | b'\n' | 0xFF => self.start = self.scanned,
                    b'{' => (self.depth, self.values) = (1, 1),
                    _ => return Some(Err(self.garbage(self.scanned - 1))),
                }
                continue;
            }
            if self.in_string {
                match byte {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b',' | b'{' | b'[' => {
                    self.values += 1;
                    if self.values > self.max_values {
                        return Some(Err(bounds::values_refused("QEMU sent a message of", self.max_values)));
                    }
                    if byte != b',' {
                        self.depth += 1;
                    }
                }
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let frame = self.buf.get(self.start..self.scanned).unwrap_or_default();
                        self.start = self.scanned;
                        return Some(
                            serde_json::from_slice(frame).map_err(|e| format!("QEMU sent invalid JSON ({e})")),
                        );
                    }
                }
                _ => {}
            }
        }
        if self.end - self.start > self.limit {
            return Some(Err(format!(
                "QEMU sent a message over {} MiB without ending it; qmpsh takes no more",
                self.limit >> 20
            )));
        }
        None
    }

    fn garbage(&self, at: usize) -> String {
        let end = self.end.min(at + 40);
        let shown = String::from_utf8_lossy(self.buf.get(at..end).unwrap_or_default());
        format!("QEMU sent something that is not a JSON object: {:?}", shown.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(framer: &mut Framer, bytes: &[u8]) {
        let room = framer.spare(bytes.len());
        room[..bytes.len()].copy_from_slice(bytes);
        framer.filled(bytes.len());
    }

    fn drain(framer: &mut Framer) -> Vec<serde_json::Value> {
        std::iter::from_fn(|| framer.next_message()).map(|m| m.unwrap()).collect()
    }

    #[test]
    fn a_message_that_never_ends_is_refused_past_the_limit() {
        let mut framer = Framer { limit: 1 << 20, ..Framer::new() };
        feed(&mut framer, b"{\"return\": \"");
        let chunk = vec![b'a'; 64 * 1024];
        let mut refused = None;
        for _ in 0..20 {
            feed(&mut framer, &chunk);
            if let Some(outcome) = framer.next_message() {
                refused = Some(outcome);
                break;
            }
        }
        let why = refused.expect("refused before 1.25 MiB").unwrap_err();
        assert!(why.contains("over 1 MiB"), "{why}");
        // Under the limit, a long message is fine.
        let mut framer = Framer { limit: 1 << 20, ..Framer::new() };
        let long = format!("{{\"return\": \"{}\"}}", "a".repeat(900_000));
        feed(&mut framer, long.as_bytes());
        assert!(framer.next_message().is_some_and(|m| m.is_ok()));
    }

    #[test]
    fn a_message_of_too_many_values_is_refused_before_it_is_read() {
        let mut framer = Framer { max_values: 1000, ..Framer::new() };
        let many = format!("{{\"return\": [{}0]}}", "0,".repeat(999));
        feed(&mut framer, many.as_bytes());
        let why = framer.next_message().unwrap().unwrap_err();
        assert!(why.contains("over 1000 JSON values"), "{why}");
        // At the limit, a message is fine.
        let mut framer = Framer { max_values: 1000, ..Framer::new() };
        let fits = format!("{{\"return\": [{}0]}}", "0,".repeat(997));
        feed(&mut framer, fits.as_bytes());
        assert_eq!(framer.next_message().unwrap().unwrap()["return"].as_array().map(Vec::len), Some(998));
    }

    #[test]
    fn messages_split_anywhere_come_out_whole() {
        let stream = b"{\"a\": \"}{\\\"\"}\r\n{\n  \"b\": [1, {\"c\": 2}]\n}\n";
        for split in 0..stream.len() {
            let mut framer = Framer::new();
            feed(&mut framer, &stream[..split]);
            let mut got = drain(&mut framer);
            feed(&mut framer, &stream[split..]);
            got.extend(drain(&mut framer));
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(got[0]["a"], "}{\"");
            assert_eq!(got[1]["b"][1]["c"], 2);
        }
    }

    #[test]
    fn garbage_between_messages_is_reported() {
        let mut framer = Framer::new();
        feed(&mut framer, b"{}\nhello\n");
        assert!(framer.next_message().unwrap().is_ok());
        let err = framer.next_message().unwrap().unwrap_err();
        assert!(err.contains("\"hello\""), "{err}");
    }

    #[test]
    fn the_agents_reset_marker_is_skipped() {
        let mut framer = Framer::new();
        feed(&mut framer, b"\xff{\"return\": 7}\n");
        assert_eq!(framer.next_message(), Some(Ok(serde_json::json!({"return": 7}))));
    }

    #[test]
    fn after_a_marker_only_what_follows_it_counts() {
        let mut framer = Framer::after_marker();
        feed(&mut framer, b"\"ping\"}}\r\ngarbage\xff{\"return\": 5}\n");
        assert_eq!(framer.next_message(), Some(Ok(serde_json::json!({"return": 5}))));
    }

    #[test]
    fn a_torn_message_yields_nothing_yet() {
        let mut framer = Framer::new();
        feed(&mut framer, b"{\"return\": {\"a\"");
        assert!(framer.next_message().is_none());
        feed(&mut framer, b": 1}}");
        assert_eq!(framer.next_message().unwrap().unwrap()["return"]["a"], 1);
    }
}
