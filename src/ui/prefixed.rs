//! One target's output among many (`qmpsh a b c -c ...`): every line it
//! writes goes out whole, with the target's name in front, aligned and
//! coloured per target on a terminal; with `--json`, its name goes into
//! each JSON line as `"target"` instead. Lines of different targets
//! interleave in the order they were finished, never inside a line.

use std::io::{self, Write};

use colored::Color;

use super::output;
use super::render;
use crate::visible;

/// Colours the names of targets cycle through on a terminal.
const COLOURS: [Color; 6] = [Color::Cyan, Color::Green, Color::Yellow, Color::Magenta, Color::Blue, Color::Red];

/// The longest piece of a line kept waiting for its end: a line past this
/// goes out in parts, each prefixed, so a peer cannot grow it without end.
const LONGEST_PART: usize = 64 << 10;

/// How one target's lines are marked.
#[derive(Debug, Clone)]
pub struct Label {
    /// `name | `, padded to the longest name, coloured as asked.
    text_out: String,
    text_err: String,
    /// The name as a JSON string, for `--json` lines on stdout.
    json: Option<String>,
}

impl Label {
    /// The label of target number `index`, called `name`, among targets
    /// whose longest name is `width` characters; `json` marks stdout's
    /// lines by a `"target"` member instead of a prefix.
    pub fn new(name: &str, index: usize, width: usize, colour: (bool, bool), json: bool) -> Label {
        let shown = visible::line(name);
        let padded = format!("{shown:<width$}");
        let paint = |on: bool| {
            let colour = COLOURS.get(index % COLOURS.len()).filter(|_| on).copied();
            format!("{} | ", render::painted(&padded, colour))
        };
        let json = json.then(|| serde_json::Value::from(name).to_string());
        Label { text_out: paint(colour.0), text_err: paint(colour.1), json }
    }
}

/// A target's stdout and stderr, each collected until a line ends.
pub struct Prefixed {
    label: Label,
    out: Vec<u8>,
    err: Vec<u8>,
}

impl Prefixed {
    pub fn new(label: Label) -> Prefixed {
        Prefixed { label, out: Vec::new(), err: Vec::new() }
    }

    /// Takes `bytes` for stdout; writes the lines they end.
    pub fn out(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(bytes);
        let lines = take_lines(&mut self.out, false);
        self.write_out(&lines)
    }

    /// Takes `bytes` for stderr; writes the lines they end.
    pub fn err(&mut self, bytes: &[u8]) {
        self.err.extend_from_slice(bytes);
        let lines = take_lines(&mut self.err, false);
        self.write_err(&lines);
    }

    /// Writes what is left of a last line, ended.
    pub fn finish(&mut self) -> io::Result<()> {
        let err = take_lines(&mut self.err, true);
        self.write_err(&err);
        let out = take_lines(&mut self.out, true);
        self.write_out(&out)
    }

    fn write_out(&self, lines: &[Vec<u8>]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::new();
        for line in lines {
            match &self.label.json {
                Some(name) => json_line(&mut batch, name, line),
                None => {
                    batch.extend_from_slice(self.label.text_out.as_bytes());
                    batch.extend_from_slice(line);
                }
            }
            batch.push(b'\n');
        }
        let mut stdout = output::stdout().lock();
        stdout.write_all(&batch).and_then(|()| stdout.flush())
    }

    fn write_err(&self, lines: &[Vec<u8>]) {
        if lines.is_empty() {
            return;
        }
        let mut batch = Vec::new();
        for line in lines {
            batch.extend_from_slice(self.label.text_err.as_bytes());
            batch.extend_from_slice(line);
            batch.push(b'\n');
        }
        let _ = output::stderr().lock().write_all(&batch);
    }
}

/// The ended lines at the front of `pending`, without their newlines (and,
/// at the `end`, what is left); a part over [`LONGEST_PART`] counts as a
/// line.
fn take_lines(pending: &mut Vec<u8>, end: bool) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut rest: &[u8] = pending;
    loop {
        if let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(at);
            lines.push(line.to_vec());
            rest = after.get(1..).unwrap_or_default();
        } else if rest.len() > LONGEST_PART {
            let (part, after) = rest.split_at(LONGEST_PART);
            lines.push(part.to_vec());
            rest = after;
        } else {
            break;
        }
    }
    if end && !rest.is_empty() {
        lines.push(rest.to_vec());
        rest = &[];
    }
    let taken = pending.len() - rest.len();
    pending.drain(..taken);
    lines
}

/// A `--json` line with `"target": name` first: a JSON object gets the
/// member; anything else is carried as `"text"`.
fn json_line(batch: &mut Vec<u8>, name: &str, line: &[u8]) {
    let trimmed = line.trim_ascii();
    let object = trimmed.starts_with(b"{") && serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok();
    batch.extend_from_slice(b"{\"target\":");
    batch.extend_from_slice(name.as_bytes());
    if object {
        let rest = trimmed.get(1..).unwrap_or_default().trim_ascii_start();
        if !rest.starts_with(b"}") {
            batch.push(b',');
        }
        batch.extend_from_slice(rest);
    } else {
        let text = serde_json::Value::from(String::from_utf8_lossy(line).into_owned()).to_string();
        batch.extend_from_slice(b",\"text\":");
        batch.extend_from_slice(text.as_bytes());
        batch.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_taken_whole_and_a_long_one_in_parts() {
        let mut pending = b"one\ntwo\nthr".to_vec();
        assert_eq!(take_lines(&mut pending, false), [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(pending, b"thr");
        assert_eq!(take_lines(&mut pending, true), [b"thr".to_vec()]);
        assert!(pending.is_empty());
        let mut long = vec![b'x'; LONGEST_PART + 10];
        assert_eq!(take_lines(&mut long, false).len(), 1);
        assert_eq!(long.len(), 10);
    }

    #[test]
    fn json_lines_carry_the_target_first() {
        let line = |text: &str| {
            let mut batch = Vec::new();
            json_line(&mut batch, "\"web\"", text.as_bytes());
            let value: serde_json::Value = serde_json::from_slice(&batch).unwrap();
            (String::from_utf8(batch).unwrap(), value)
        };
        let (text, value) = line(r#"{"return": {"status": "running"}}"#);
        assert!(text.starts_with(r#"{"target":"web","#), "{text}");
        assert_eq!(value["return"]["status"], "running");
        assert_eq!(line("{}").1, serde_json::json!({"target": "web"}));
        assert_eq!(line("plain words").1, serde_json::json!({"target": "web", "text": "plain words"}));
        assert_eq!(line("{not json").1["text"], "{not json");
    }
}
