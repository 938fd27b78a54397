//! The QMP stream framer, fed any byte stream split at any points.
//!
//! Input: a flags byte (bit 0: the guest agent's `after_marker` framer;
//! bits 1-3: extra room to ask of `spare`), a count n (mod 16), n chunk
//! sizes (0 feeds nothing), then the stream. No sizes: a byte at a time.
//!
//! Checked: nothing panics or loops; the stream framed in pieces gives the
//! same messages (and errors, at the same places) as in one piece; every
//! message is a JSON object; a stream that serde_json reads as whitespace-
//! separated objects comes out as exactly those objects; and the agent's
//! framer gives what the plain one gives on the bytes after the first 0xFF
//! marker, and nothing without one.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qmpsh::qmp::Framer;
use serde_json::Value;

/// One thing the framer yields. An error's text shows the bytes that had
/// arrived, which depends on the split, so only its place is compared.
#[derive(Debug, PartialEq)]
enum Out {
    Message(Value),
    Error,
}

struct Case<'a> {
    agent: bool,
    extra_room: usize,
    chunks: &'a [u8],
    stream: &'a [u8],
}

fn case(data: &[u8]) -> Option<Case<'_>> {
    let (&flags, rest) = data.split_first()?;
    let (&count, rest) = rest.split_first()?;
    let count = usize::from(count % 16).min(rest.len());
    let (chunks, stream) = rest.split_at(count);
    Some(Case { agent: flags & 1 == 1, extra_room: usize::from((flags >> 1) & 7) * 16, chunks, stream })
}

fn framer(agent: bool) -> Framer {
    if agent { Framer::after_marker() } else { Framer::new() }
}

/// Feeds `stream` in chunks of the `sizes` given (cycled; none, or only
/// zeros: one byte at a time), draining messages after each.
fn frame(mut framer: Framer, stream: &[u8], sizes: &[u8], extra_room: usize) -> Vec<Out> {
    let mut out = Vec::new();
    let mut at = 0;
    let sizes = if sizes.iter().all(|&s| s == 0) { &[1][..] } else { sizes };
    let mut sizes = sizes.iter().map(|&s| usize::from(s)).cycle();
    while at < stream.len() {
        let size = sizes.next().unwrap_or(1).min(stream.len() - at);
        let room = framer.spare(size + extra_room);
        assert!(room.len() >= size + extra_room);
        room[..size].copy_from_slice(&stream[at..at + size]);
        framer.filled(size);
        at += size;
        drain(&mut framer, &mut out, stream.len());
    }
    drain(&mut framer, &mut out, stream.len());
    out
}

fn drain(framer: &mut Framer, out: &mut Vec<Out>, limit: usize) {
    while let Some(next) = framer.next_message() {
        out.push(match next {
            Ok(value) => Out::Message(value),
            Err(text) => {
                assert!(!text.is_empty());
                Out::Error
            }
        });
        // Each message or error takes at least one byte of the stream.
        assert!(out.len() <= limit, "more out than bytes in");
    }
}

/// The stream in a single read.
fn frame_once(mut framer: Framer, stream: &[u8]) -> Vec<Out> {
    let mut out = Vec::new();
    let room = framer.spare(stream.len());
    room[..stream.len()].copy_from_slice(stream);
    framer.filled(stream.len());
    drain(&mut framer, &mut out, stream.len());
    out
}

/// serde_json's own reading of a stream of JSON objects, when it is one.
fn reference(stream: &[u8]) -> Option<Vec<Out>> {
    let mut out = Vec::new();
    for value in serde_json::Deserializer::from_slice(stream).into_iter::<Value>() {
        match value {
            Ok(value @ Value::Object(_)) => out.push(Out::Message(value)),
            _ => return None,
        }
    }
    Some(out)
}

fn check(case: &Case) {
    let once = frame_once(framer(case.agent), case.stream);
    let pieces = frame(framer(case.agent), case.stream, case.chunks, case.extra_room);
    assert_eq!(once, pieces, "framing in pieces differs from framing in one");
    for out in &once {
        if let Out::Message(value) = out {
            assert!(value.is_object(), "{value}");
        }
    }
    if case.agent {
        let after = case.stream.iter().position(|&b| b == 0xFF).map(|at| &case.stream[at + 1..]);
        let plain = after.map(|rest| frame_once(Framer::new(), rest)).unwrap_or_default();
        assert_eq!(once, plain, "the agent's framer differs from the plain one after the marker");
    } else if let Some(expected) = reference(case.stream) {
        assert_eq!(once, expected, "the framer differs from serde_json's stream reader");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(case) = case(data) {
        check(&case);
    }
});
