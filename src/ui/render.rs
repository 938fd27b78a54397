//! Rendering: pure functions from replies, errors and events to text in an
//! `impl Write`, styled by a [`Palette`]. Whether a stream gets colour is
//! decided once, from the command line and the terminal (`app`), and comes
//! here as its palette: the colour codes are written for a colour in the
//! palette, whatever the environment; a plain palette makes output exact
//! for tests.
//!
//! What a peer sent is data: text (event names, HMP output, errors) shows
//! its control characters as `\x1b` ([`crate::visible`]), and JSON escapes
//! all of them, DEL and C1 (`\u009b`) too, which serde_json leaves raw.

use std::io::{self, Write};

use colored::Color;
use serde::Serialize;
use serde_json::Value;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter, PrettyFormatter, Serializer};

use crate::qmp::QmpError;
use crate::ui::clock;
use crate::visible::{self, Breaks, visible};

/// The colours of one output stream; `Palette::plain()` has none.
#[derive(Debug, Clone, Copy, Default)]
pub struct Palette {
    pub key: Option<Color>,
    pub string: Option<Color>,
    pub number: Option<Color>,
    pub literal: Option<Color>,
    pub event: Option<Color>,
    pub time: Option<Color>,
    pub error: Option<Color>,
    pub ok: Option<Color>,
}

impl Palette {
    pub fn plain() -> Palette {
        Palette::default()
    }

    pub fn colored() -> Palette {
        Palette {
            key: Some(Color::Blue),
            string: Some(Color::Green),
            number: Some(Color::Cyan),
            literal: Some(Color::Magenta),
            event: Some(Color::Yellow),
            time: Some(Color::BrightBlack),
            error: Some(Color::Red),
            ok: Some(Color::Green),
        }
    }

    pub fn is_plain(&self) -> bool {
        self.key.is_none()
    }
}

fn paint(w: &mut impl Write, color: Option<Color>, text: &str) -> io::Result<()> {
    match color {
        Some(color) => w.write_all(styled(&color.to_fg_str(), text).as_bytes()),
        None => w.write_all(text.as_bytes()),
    }
}

/// `text` in `color`, if any (the REPL's highlighting).
pub fn painted(text: &str, color: Option<Color>) -> String {
    match color {
        Some(color) => styled(&color.to_fg_str(), text),
        None => text.to_string(),
    }
}

/// `done` of `total` (above 0) in whole percent.
pub fn percent(done: u64, total: u64) -> u64 {
    done.saturating_mul(100) / total
}

/// `text` in bold.
pub fn bold(text: &str) -> String {
    styled("1", text)
}

/// `text` dimmed.
pub fn dimmed(text: &str) -> String {
    styled("2", text)
}

/// What ends a style.
const RESET: &str = "\x1b[0m";

/// `text` between the SGR code `code` and a reset, as the `colored` crate
/// writes it, a reset inside `text` followed by the style again; written
/// here, not by `colored`, whose own switch is process-wide.
fn styled(code: &str, text: &str) -> String {
    let start = format!("\x1b[{code}m");
    let inner = if text.contains(RESET) { text.replace(RESET, &format!("{RESET}{start}")) } else { text.to_string() };
    format!("{start}{inner}{RESET}")
}

/// Writes `value` as JSON: pretty (two-space indent) or compact, coloured
/// by `palette`. Both go through serde_json; plain output straight.
pub fn json(w: &mut impl Write, value: &Value, pretty: bool, palette: &Palette) -> io::Result<()> {
    match (pretty, palette.is_plain()) {
        (true, true) => json_with(w, value, PrettyFormatter::new()),
        (false, true) => json_with(w, value, CompactFormatter),
        (true, false) => json_styled(w, value, PrettyFormatter::new(), palette),
        (false, false) => json_styled(w, value, CompactFormatter, palette),
    }
}

/// JSON by `formatter`, control characters escaped, coloured by `palette`.
fn json_styled(w: &mut impl Write, value: &Value, formatter: impl Formatter, palette: &Palette) -> io::Result<()> {
    let styled = Styled::new(Escaping(formatter), palette);
    value.serialize(&mut Serializer::with_formatter(w, styled)).map_err(io::Error::from)
}

/// JSON by serde_json's `formatter`, with every control character escaped.
fn json_with(w: &mut impl Write, value: &(impl Serialize + ?Sized), formatter: impl Formatter) -> io::Result<()> {
    value.serialize(&mut Serializer::with_formatter(w, Escaping(formatter))).map_err(io::Error::from)
}

/// A serde_json formatter that also escapes DEL and the C1 controls
/// (`\u007f`, `\u009b`): JSON allows them raw, and serde_json, which
/// escapes C0, writes them so; a terminal may act on them. The output is
/// the same JSON value.
struct Escaping<F>(F);

impl<F: Formatter> Formatter for Escaping<F> {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        // In UTF-8, DEL is 0x7F and C1 is 0xC2 0x80..=0x9F. Most text is
        // ASCII without DEL, which the standard library tells a word at a
        // time; the rest is looked at a byte at a time.
        let bytes = fragment.as_bytes();
        if bytes.is_ascii() && !bytes.contains(&0x7f) {
            return writer.write_all(bytes);
        }
        let mut rest = fragment;
        while let Some(at) = rest.bytes().position(|b| b == 0x7f || b == 0xc2) {
            let Some((plain, tail)) = rest.split_at_checked(at) else { break };
            writer.write_all(plain.as_bytes())?;
            let mut chars = tail.chars();
            match chars.next() {
                Some(c) if visible::is_control(c) => write!(writer, "\\u{:04x}", u32::from(c))?,
                Some(c) => writer.write_all(c.encode_utf8(&mut [0; 4]).as_bytes())?,
                None => {}
            }
            rest = chars.as_str();
        }
        writer.write_all(rest.as_bytes())
    }

    // What a pretty formatter does differently from a compact one.
    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }
    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }
    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

/// One value as compact JSON, control characters escaped: for output that
/// is not written through [`json`] (`vm status --json`).
pub fn json_line(value: &(impl Serialize + ?Sized)) -> String {
    let mut out = Vec::new();
    let _ = json_with(&mut out, value, CompactFormatter);
    String::from_utf8(out).unwrap_or_default()
}

/// A serde_json formatter that colours what `F` writes by a palette: keys,
/// strings, numbers and literals, each token painted whole (quotes too),
/// so the layout is `F`'s. Made for [`Value`], which writes numbers as
/// `i64`, `u64` or `f64`.
struct Styled<'p, F> {
    inner: F,
    palette: &'p Palette,
    /// Between a key's start and its value's.
    in_key: bool,
    /// The string being written, painted at its end.
    string: Vec<u8>,
}

impl<'p, F: Formatter> Styled<'p, F> {
    fn new(inner: F, palette: &'p Palette) -> Self {
        Styled { inner, palette, in_key: false, string: Vec::new() }
    }

    /// Writes what `token` writes, in `color`.
    fn token<W: ?Sized + Write>(
        &mut self,
        mut writer: &mut W,
        color: Option<Color>,
        token: impl FnOnce(&mut F, &mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut text = Vec::new();
        token(&mut self.inner, &mut text)?;
        paint(&mut writer, color, &String::from_utf8_lossy(&text))
    }
}

impl<F: Formatter> Formatter for Styled<'_, F> {
    fn write_null<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.token(writer, self.palette.literal, |f, w| f.write_null(w))
    }
    fn write_bool<W: ?Sized + Write>(&mut self, writer: &mut W, value: bool) -> io::Result<()> {
        self.token(writer, self.palette.literal, |f, w| f.write_bool(w, value))
    }
    fn write_i64<W: ?Sized + Write>(&mut self, writer: &mut W, value: i64) -> io::Result<()> {
        self.token(writer, self.palette.number, |f, w| f.write_i64(w, value))
    }
    fn write_u64<W: ?Sized + Write>(&mut self, writer: &mut W, value: u64) -> io::Result<()> {
        self.token(writer, self.palette.number, |f, w| f.write_u64(w, value))
    }
    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        self.token(writer, self.palette.number, |f, w| f.write_f64(w, value))
    }

    // A string is gathered, escaped by `F`, and painted whole at its end.
    fn begin_string<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.string.clear();
        self.inner.begin_string(&mut self.string)
    }
    fn write_string_fragment<W: ?Sized + Write>(&mut self, _: &mut W, fragment: &str) -> io::Result<()> {
        self.inner.write_string_fragment(&mut self.string, fragment)
    }
    fn write_char_escape<W: ?Sized + Write>(&mut self, _: &mut W, escape: CharEscape) -> io::Result<()> {
        self.inner.write_char_escape(&mut self.string, escape)
    }
    fn end_string<W: ?Sized + Write>(&mut self, mut writer: &mut W) -> io::Result<()> {
        self.inner.end_string(&mut self.string)?;
        let color = if self.in_key { self.palette.key } else { self.palette.string };
        paint(&mut writer, color, &String::from_utf8_lossy(&self.string))
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.in_key = true;
        self.inner.begin_object_key(writer, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.in_key = false;
        self.inner.begin_object_value(writer)
    }
    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.inner.begin_array(writer)
    }
    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.inner.end_array(writer)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.inner.begin_array_value(writer, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.inner.end_array_value(writer)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.inner.begin_object(writer)
    }
    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.inner.end_object(writer)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.inner.end_object_value(writer)
    }
}

/// A command's successful reply: `ok` for an empty object, HMP text as
/// text, anything else as JSON.
pub fn reply(w: &mut impl Write, value: &Value, text: bool, pretty: bool, palette: &Palette) -> io::Result<()> {
    match value {
        Value::Object(map) if map.is_empty() => {
            paint(w, palette.ok, "ok")?;
            w.write_all(b"\n")
        }
        Value::String(s) if text => hmp_text(w, s),
        _ => {
            json(w, value, pretty, palette)?;
            w.write_all(b"\n")
        }
    }
}

/// HMP output with QEMU's CRLF line ends made plain and its other control
/// characters visible, ending in a newline; empty output prints nothing.
fn hmp_text(w: &mut impl Write, text: &str) -> io::Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    let text = visible(text, Breaks::Keep);
    w.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// `error: CLASS: desc` (made visible by `QmpError`'s `Display`).
pub fn error(w: &mut impl Write, error: &QmpError, line: Option<usize>, palette: &Palette) -> io::Result<()> {
    let text = match line {
        Some(line) => format!("error: line {line}: {error}"),
        None => format!("error: {error}"),
    };
    paint(w, palette.error, &text)?;
    w.write_all(b"\n")
}

/// A local problem, coloured like an error. The peer's words in it were
/// made visible where they were put in; what escaped that is made visible
/// here, line breaks aside.
pub fn error_text(w: &mut impl Write, message: &str, palette: &Palette) -> io::Result<()> {
    paint(w, palette.error, &visible(message, Breaks::Keep))?;
    w.write_all(b"\n")
}

/// One event on one line: local time, name, and its data compact.
pub fn event(w: &mut impl Write, event: &Value, palette: &Palette) -> io::Result<()> {
    let (now_s, now_us) = clock::now();
    let stamp = event.get("timestamp");
    let seconds = stamp.and_then(|t| t.get("seconds")).and_then(Value::as_i64).unwrap_or(now_s);
    let micros =
        stamp.and_then(|t| t.get("microseconds")).and_then(Value::as_u64).map_or(now_us, |us| us.min(999_999) as u32);
    paint(w, palette.time, &clock::local_time_of_day(seconds, micros))?;
    w.write_all(b" ")?;
    let name = event.get("event").and_then(Value::as_str).unwrap_or("?");
    paint(w, palette.event, &visible(name, Breaks::Escape))?;
    if let Some(data) = event.get("data") {
        w.write_all(b" ")?;
        json(w, data, false, palette)?;
    }
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn replies_read_as_a_person_expects() {
        let plain = Palette::plain();
        assert_eq!(text(|w| reply(w, &json!({}), false, false, &plain)), "ok\n");
        assert_eq!(text(|w| reply(w, &json!([]), false, false, &plain)), "[]\n");
        assert_eq!(
            text(|w| reply(w, &json!({"status": "running", "running": true}), false, false, &plain)),
            "{\"status\":\"running\",\"running\":true}\n"
        );
        assert_eq!(text(|w| reply(w, &json!("VM status: paused\r\n"), true, false, &plain)), "VM status: paused\n");
        assert_eq!(text(|w| reply(w, &json!(""), true, false, &plain)), "");
    }

    #[test]
    fn json_escapes_every_control_character_and_keeps_its_layout() {
        // A no-break space (U+00A0) shares its first UTF-8 byte with C1: kept.
        let value = json!({"a\u{9b}": ["\u{1b}[2J\u{7f}", "\u{a0}©é\u{80}"], "b": {}});
        let plain = Palette::plain();
        let compact = text(|w| json(w, &value, false, &plain));
        assert_eq!(compact, "{\"a\\u009b\":[\"\\u001b[2J\\u007f\",\"\u{a0}©é\\u0080\"],\"b\":{}}");
        assert_eq!(serde_json::from_str::<Value>(&compact).unwrap(), value, "the same value");
        let pretty = text(|w| json(w, &value, true, &plain));
        let serde = serde_json::to_string_pretty(&value).unwrap();
        assert_eq!(
            pretty,
            serde.replace('\u{9b}', "\\u009b").replace('\u{7f}', "\\u007f").replace('\u{80}', "\\u0080")
        );
        let styled = text(|w| json(w, &value, false, &Palette::colored()));
        assert_eq!(strip_ansi(&styled), compact);
    }

    #[test]
    fn colours_are_written_as_the_palette_says_whatever_the_environment() {
        // The bytes the `colored` crate writes, without its process-wide
        // switch: a reset inside the text is followed by the style again.
        assert_eq!(painted("a", Some(Color::Blue)), "\x1b[34ma\x1b[0m");
        assert_eq!(painted("a", None), "a");
        assert_eq!(bold("a\x1b[0mb"), "\x1b[1ma\x1b[0m\x1b[1mb\x1b[0m");
        assert_eq!(dimmed(""), "\x1b[2m\x1b[0m");
        assert_eq!(text(|w| error_text(w, "no", &Palette::colored())), "\x1b[31mno\x1b[0m\n");
    }

    #[test]
    fn hmp_text_and_event_names_show_control_characters() {
        let plain = Palette::plain();
        let shown = text(|w| reply(w, &json!("a\u{1b}[2J\r\nb\rforged\r\n"), true, false, &plain));
        assert_eq!(shown, "a\\x1b[2J\nb\\x0dforged\n");
        let ev = json!({"event": "STOP\u{1b}]0;t\u{7}", "timestamp": {"seconds": 0, "microseconds": 0}});
        assert!(text(|w| event(w, &ev, &plain)).ends_with(" STOP\\x1b]0;t\\x07\n"));
    }

    #[test]
    fn coloured_pretty_json_has_the_same_layout_as_plain() {
        let value = json!({"a": [1, {"b": null}], "c": {}, "d": "x\"y"});
        let plain = text(|w| json(w, &value, true, &Palette::plain()));
        let styled = text(|w| json(w, &value, true, &Palette::colored()));
        let stripped = strip_ansi(&styled);
        assert_ne!(styled, stripped, "colours were written");
        assert_eq!(stripped, plain);
        let compact = text(|w| json(w, &value, false, &Palette::colored()));
        assert_eq!(strip_ansi(&compact), value.to_string());
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn events_show_time_name_and_compact_data() {
        let ev = json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"},
                        "timestamp": {"seconds": 1_795_608_000, "microseconds": 250_000}});
        let line = text(|w| event(w, &ev, &Palette::plain()));
        let (time, rest) = line.split_once(' ').unwrap();
        assert_eq!(time.len(), "12:00:00.250".len());
        assert!(time.ends_with(":00.250"), "{time}");
        assert_eq!(rest, "SHUTDOWN {\"guest\":true,\"reason\":\"guest-shutdown\"}\n");
        let bare = json!({"event": "STOP", "timestamp": {"seconds": 0, "microseconds": 0}});
        assert!(text(|w| event(w, &bare, &Palette::plain())).ends_with(" STOP\n"));
    }
}
