//! The nom grammar of one logical line (grammar/GRAMMAR.md writes it out).
//!
//! Rules are small methods, bottom up: strings and values, arguments,
//! invocations, then the line forms tried in order. Once a rule has seen
//! enough to know the line is its own (an opening quote, a `{`, a `key=`),
//! it `cut`s, so an error points at the column where the text went wrong
//! instead of at the start of the line.
//!
//! `parse_partial` reads a line only as far as it is typed, for the REPL's
//! completion and hints, with the same rules: it never fails, and it knows
//! the word under the cursor even while its quote or JSON value is open.

use std::borrow::Cow;
use std::ops::Range;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till, take_till1, take_until, take_while, take_while1};
use nom::character::complete::{char, multispace0, multispace1, satisfy, space0, space1};
use nom::combinator::{all_consuming, cut, eof, map, opt, peek, recognize, rest, value};
use nom::error::{ErrorKind, ParseError as NomParseError};
use nom::multi::{many0, many1};
use nom::sequence::{pair, preceded, terminated};
use nom::{Err as NomErr, IResult, Parser};

use super::partial::{self, Cursor, CursorValue, Form, Partial};
use super::{Arg, Invocation, Line, ParseError, Value, literal};
use crate::bounds;

/// Parses one logical line (continuations already joined).
pub fn parse_line(text: &str) -> Result<Line, ParseError> {
    let grammar = Grammar { full: text, in_transaction: false };
    match all_consuming(|i| grammar.line(i)).parse(text) {
        Ok((_, line)) => Ok(line),
        Err(NomErr::Error(fail) | NomErr::Failure(fail)) => {
            let offset = grammar.offset(fail.at);
            let message = match fail.at.chars().next().filter(|c| c.is_whitespace() && !c.is_ascii()) {
                // It looks like a space, and the message says why it is not one.
                Some(c) => format!(
                    "expected {}, not {} (U+{:04X}): only ASCII spaces and tabs separate words",
                    fail.expected,
                    space_name(c),
                    u32::from(c)
                ),
                None => format!("expected {}", fail.expected),
            };
            Err(ParseError { offset, message })
        }
        // Only streaming parsers ask for more input; these are all complete.
        Err(NomErr::Incomplete(_)) => Err(ParseError { offset: text.len(), message: "expected more input".into() }),
    }
}

/// Parses a line typed up to `cursor` as far as it goes, for completion
/// and hints: the words before the cursor as [`parse_line`] reads them,
/// each with its span, and the word under the cursor, finished or not (an
/// open quote or JSON value). It never fails: a word the grammar refuses
/// is taken as it is, up to the next whitespace, and any whitespace
/// separates words here (the full parse says which does not). With `hmp`
/// (`-H`) a line that is not JSON or a `.` command is HMP text.
pub fn parse_partial(text: &str, cursor: usize, hmp: bool) -> Partial {
    let typed = text.get(..cursor).unwrap_or(text);
    if typed.len() > bounds::MAX_LINE || bounds::too_many_values(typed.as_bytes()) {
        let cursor = Cursor::word(typed.len(), "", None);
        return Partial { form: Form::Refused, head: None, invocation: None, cursor };
    }
    Grammar { full: typed, in_transaction: false }.partial(typed, hmp)
}

/// The first `\uXXXX` escape in a JSON string literal that is half of a
/// surrogate pair without its other half, and where it starts: serde_json
/// says only "unexpected end of hex escape".
fn lone_surrogate(literal: &str) -> Option<(usize, &str)> {
    let escape_at = |at: usize| {
        let hex = literal.get(at + 2..at + 6)?;
        let unit = u16::from_str_radix(hex, 16).ok().filter(|_| literal.get(at..at + 2) == Some("\\u"))?;
        Some((unit, literal.get(at..at + 6)?))
    };
    let mut escaped = false;
    let mut chars = literal.char_indices();
    while let Some((at, c)) = chars.next() {
        if escaped {
            escaped = false;
            continue;
        }
        if c != '\\' {
            continue;
        }
        let Some((unit, escape)) = escape_at(at) else {
            escaped = true;
            continue;
        };
        match unit {
            0xD800..=0xDBFF if escape_at(at + 6).is_some_and(|(low, _)| (0xDC00..=0xDFFF).contains(&low)) => {
                chars.nth(10); // the rest of both escapes
            }
            0xD800..=0xDFFF => return Some((at, escape)),
            _ => {
                chars.nth(4);
            }
        }
    }
    None
}

/// What a person calls a space that is not ASCII.
fn space_name(c: char) -> &'static str {
    match c {
        '\u{a0}' => "a no-break space",
        '\u{202f}' => "a narrow no-break space",
        '\u{2007}' => "a figure space",
        '\u{3000}' => "an ideographic space",
        '\u{2028}' | '\u{2029}' => "a Unicode line or paragraph separator",
        _ => "a Unicode space",
    }
}

/// The error every rule returns: where it failed and what it expected there.
#[derive(Debug)]
struct Fail<'a> {
    at: &'a str,
    expected: Cow<'static, str>,
}

impl<'a> NomParseError<&'a str> for Fail<'a> {
    fn from_error_kind(at: &'a str, kind: ErrorKind) -> Self {
        let expected = match kind {
            ErrorKind::Eof => "the end of the line",
            ErrorKind::Space | ErrorKind::MultiSpace => "a space",
            _ => "something else here",
        };
        Fail { at, expected: expected.into() }
    }

    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }

    /// Of two failed alternatives, report the one that got further.
    fn or(self, other: Self) -> Self {
        if other.at.len() <= self.at.len() { other } else { self }
    }
}

type Res<'a, T> = IResult<&'a str, T, Fail<'a>>;

/// A committed failure at `at`: the line is certainly wrong here.
fn failure<'a, T>(at: &'a str, expected: impl Into<Cow<'static, str>>) -> Res<'a, T> {
    Err(NomErr::Failure(Fail { at, expected: expected.into() }))
}

/// Runs `parser`; when it fails without committing, says it expected `what`.
fn expect<'a, O>(
    what: &'static str,
    mut parser: impl Parser<&'a str, Output = O, Error = Fail<'a>>,
) -> impl Parser<&'a str, Output = O, Error = Fail<'a>> {
    move |i: &'a str| match parser.parse(i) {
        Err(NomErr::Error(_)) => Err(NomErr::Error(Fail { at: i, expected: what.into() })),
        other => other,
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

pub(crate) fn is_key_char(c: char) -> bool {
    is_name_char(c) || c == '.'
}

/// serde_json's message without its own "at line L column C" suffix.
fn json_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(cut_at) => text[..cut_at].to_string(),
        None => text,
    }
}

/// How deep dotted keys may nest (QEMU's arguments nest a few levels);
/// binding walks them recursively, and hostile input must not overflow the
/// stack. Binding checks it again for keys it builds itself (QemuOpts).
pub(crate) const MAX_KEY_PARTS: usize = 32;

/// The integers written in valid JSON text, with their offsets: serde_json
/// reads one past 64 bits, and `-0`, as a float, which is not what the
/// user wrote.
fn json_integers(json: &str) -> Vec<(usize, &str)> {
    let bytes = json.as_bytes();
    let mut found = Vec::new();
    let mut in_string = false;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'\\' if in_string => at += 1,
            b'"' => in_string = !in_string,
            b'-' | b'0'..=b'9' if !in_string => {
                let len = json[at..].find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)));
                let end = len.map_or(json.len(), |len| at + len);
                let token = &json[at..end];
                if !token.contains(['.', 'e', 'E']) {
                    found.push((at, token));
                }
                at = end;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    found
}

/// Holds the whole line so rules can turn the rest they see into offsets.
struct Grammar<'a> {
    full: &'a str,
    /// Inside `transaction( ... )`, where `;` ends a bare value too.
    in_transaction: bool,
}

impl<'a> Grammar<'a> {
    /// Byte offset of `rest`, which is always a suffix of the line.
    fn offset(&self, rest: &str) -> usize {
        self.full.len() - rest.len()
    }

    // --- values -----------------------------------------------------------

    /// `"..."` with JSON escapes.
    fn double_quoted(&self, i: &'a str) -> Res<'a, String> {
        let (body, _) = char('"').parse(i)?;
        let mut escaped = false;
        for (n, c) in body.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    let quoted = &i[..n + 2];
                    return match serde_json::from_str::<String>(quoted) {
                        Ok(s) => Ok((&body[n + 1..], s)),
                        Err(e) => match lone_surrogate(quoted) {
                            Some((at, escape)) => failure(
                                &i[at..],
                                format!("a valid JSON string (`{escape}` is half of a UTF-16 surrogate pair, alone)"),
                            ),
                            None => failure(i, format!("a valid JSON string ({})", json_message(&e))),
                        },
                    };
                }
                _ => {}
            }
        }
        failure(i, "a closing \" for this string")
    }

    /// `'...'`, taken literally.
    fn single_quoted(&self, i: &'a str) -> Res<'a, String> {
        let (body, _) = char('\'').parse(i)?;
        match take_until::<_, _, Fail>("'").parse(body) {
            Ok((after, text)) => Ok((&after[1..], text.to_string())),
            Err(_) => failure(i, "a closing ' for this string"),
        }
    }

    /// A JSON object or array, possibly over several physical lines.
    fn json(&self, i: &'a str) -> Res<'a, serde_json::Value> {
        let mut stream = serde_json::Deserializer::from_str(i).into_iter::<serde_json::Value>();
        match stream.next() {
            Some(Ok(v)) => {
                let used = stream.byte_offset();
                let integers = json_integers(&i[..used]);
                let fits = |token: &str| token.parse::<i64>().is_ok() || token.parse::<u64>().is_ok();
                if let Some((at, _)) = integers.iter().find(|(_, token)| !fits(token)) {
                    return failure(&i[*at..], "an integer within 64 bits (JSON numbers are sent exactly)");
                }
                if !integers.iter().any(|(_, token)| *token == "-0") {
                    return Ok((&i[used..], v));
                }
                // `-0` is the integer 0 (serde_json would send -0.0).
                let mut text = i[..used].to_string();
                for (at, _) in integers.iter().filter(|(_, token)| *token == "-0") {
                    text.replace_range(*at..*at + 2, " 0");
                }
                match serde_json::from_str(&text) {
                    Ok(v) => Ok((&i[used..], v)),
                    Err(e) => failure(i, format!("valid JSON ({})", json_message(&e))),
                }
            }
            Some(Err(e)) => {
                // serde_json counts lines from 1 and columns in bytes from 1.
                let line_start: usize = i.split_inclusive('\n').take(e.line() - 1).map(str::len).sum();
                let mut at =
                    if e.is_eof() { i.len() } else { (line_start + e.column().saturating_sub(1)).min(i.len()) };
                // The column counts bytes and may fall inside a character.
                while !i.is_char_boundary(at) {
                    at -= 1;
                }
                failure(&i[at..], format!("valid JSON ({})", json_message(&e)))
            }
            None => failure(i, "a JSON value"),
        }
    }

    /// A value that opens with `{` or `[`: JSON, or else (as qmp-shell
    /// reads it) a Python literal such as `['a', True]`. Of the two
    /// failures, the one that got further is reported.
    fn json_composite(&self, i: &'a str) -> Res<'a, serde_json::Value> {
        let (i, _) = peek(satisfy(|c| c == '{' || c == '[')).parse(i)?;
        let json_failure = match self.json(i) {
            Ok(done) => return Ok(done),
            Err(NomErr::Failure(fail)) => fail,
            Err(other) => return Err(other),
        };
        match literal::parse(i) {
            Ok((value, used)) => Ok((&i[used..], value)),
            Err(e) if e.offset > i.len() - json_failure.at.len() => {
                failure(&i[e.offset..], format!("{} (in a Python literal)", e.expected))
            }
            Err(_) => Err(NomErr::Failure(json_failure)),
        }
    }

    /// The value after `key=`; may be empty (`key=` is the empty string).
    fn value(&self, i: &'a str) -> Res<'a, Value> {
        alt((
            map(|i| self.double_quoted(i), Value::Quoted),
            map(|i| self.single_quoted(i), Value::Quoted),
            map(|i| self.json_composite(i), Value::Json),
            map(take_till(|c: char| c.is_whitespace() || (self.in_transaction && c == ';')), |s: &str| {
                Value::Bare(s.to_string())
            }),
        ))
        .parse(i)
    }

    /// A positional argument: like a value, but never empty.
    fn word(&self, i: &'a str) -> Res<'a, Value> {
        alt((
            map(|i| self.double_quoted(i), Value::Quoted),
            map(|i| self.single_quoted(i), Value::Quoted),
            map(|i| self.json_composite(i), Value::Json),
            map(preceded(peek(satisfy(|c| c != ';' && c != ')')), take_till1(char::is_whitespace)), |s: &str| {
                Value::Bare(s.to_string())
            }),
        ))
        .parse(i)
    }

    // --- arguments --------------------------------------------------------

    /// `a.b.c=` : a dotted key and its `=`. Commits once the `=` is seen.
    fn key(&self, i: &'a str) -> Res<'a, Vec<String>> {
        if i.starts_with('=') {
            return failure(i, "a key before '='");
        }
        let (after, text) = terminated(take_while1(is_key_char), char('=')).parse(i)?;
        let mut parts = Vec::new();
        let mut at = i;
        if text.split('.').count() > MAX_KEY_PARTS {
            return failure(i, format!("a key of at most {MAX_KEY_PARTS} dotted parts"));
        }
        for part in text.split('.') {
            if part.is_empty() {
                return failure(at, "a key name (dotted keys need a name between the dots)");
            }
            parts.push(part.to_string());
            at = &at[(part.len() + 1).min(at.len())..];
        }
        Ok((after, parts))
    }

    fn arg(&self, i: &'a str) -> Res<'a, Arg> {
        let offset = self.offset(i);
        let pair_arg = map(pair(|i| self.key(i), cut(|i| self.value(i))), |(key, value)| (Some(key), value));
        let word_arg = map(|i| self.word(i), |value| (None, value));
        // After an argument: a space, the end, or what closes a transaction action.
        let boundary = cut(expect("a space after the argument", peek(alt((multispace1, eof, tag(";"), tag(")"))))));
        let (rest, (key, value)) = terminated(alt((pair_arg, word_arg)), boundary).parse(i)?;
        Ok((rest, Arg { key, value, offset, end: self.offset(rest) }))
    }

    fn args(&self, i: &'a str) -> Res<'a, Vec<Arg>> {
        many0(preceded(space1, |i| self.arg(i))).parse(i)
    }

    // --- invocations and line forms ---------------------------------------

    /// A command name; a vendor prefix such as `__org.qemu_x-foo` keeps its
    /// dots, and HMP's `x/4xw` its `/format` suffix.
    fn name(&self, i: &'a str) -> Res<'a, &'a str> {
        let format = opt(pair(char('/'), take_while(|c: char| !c.is_whitespace())));
        recognize((satisfy(|c| c.is_ascii_alphabetic() || c == '_'), take_while(is_key_char), format)).parse(i)
    }

    fn invocation(&self, i: &'a str) -> Res<'a, Invocation> {
        let offset = self.offset(i);
        let (i, name) = expect("a command name", |i| self.name(i)).parse(i)?;
        let (i, args) = self.args(i)?;
        Ok((i, Invocation { name: name.to_string(), offset, args }))
    }

    fn blank(&self, i: &'a str) -> Res<'a, Line> {
        value(Line::Blank, alt((eof, preceded(char('#'), rest)))).parse(i)
    }

    fn raw_json(&self, i: &'a str) -> Res<'a, Line> {
        let (after, v) = preceded(peek(char('{')), cut(|i| self.json(i))).parse(i)?;
        match v {
            serde_json::Value::Object(map) => Ok((after, Line::Json(map))),
            // A JSON text starting with '{' is an object.
            _ => failure(i, "a JSON object"),
        }
    }

    fn shell(&self, i: &'a str) -> Res<'a, Line> {
        map(preceded(char('.'), cut(|i| self.invocation(i))), Line::Dot).parse(i)
    }

    fn hmp(&self, i: &'a str) -> Res<'a, Line> {
        let keyword = terminated(tag("hmp"), peek(alt((space1, eof))));
        map(preceded(pair(keyword, space0), rest), |text: &str| Line::Hmp(text.trim_end().to_string())).parse(i)
    }

    /// `transaction( action ; action )`, where a newline also separates.
    fn transaction(&self, i: &'a str) -> Res<'a, Line> {
        let inside = Grammar { full: self.full, in_transaction: true };
        let separator = || many1((space0, alt((tag(";"), tag("\n"))), multispace0));
        let action = |i| inside.invocation(i);
        let actions = opt(pair(action, many0(preceded(separator(), action))));
        let body = terminated(
            preceded(opt(separator()), actions),
            (opt(separator()), multispace0, expect("')' to close the transaction", char(')'))),
        );
        map(preceded((tag("transaction("), multispace0), cut(body)), |found| {
            let actions = found.map_or_else(Vec::new, |(first, more)| std::iter::once(first).chain(more).collect());
            Line::Transaction(actions)
        })
        .parse(i)
    }

    fn command(&self, i: &'a str) -> Res<'a, Line> {
        map(cut(|i| self.invocation(i)), Line::Command).parse(i)
    }

    fn line(&self, i: &'a str) -> Res<'a, Line> {
        let form = alt((
            |i| self.blank(i),
            |i| self.raw_json(i),
            |i| self.shell(i),
            |i| self.hmp(i),
            |i| self.transaction(i),
            |i| self.command(i),
        ));
        let end = expect("the end of the line", eof);
        terminated(preceded(multispace0, form), (multispace0, end)).parse(i)
    }

    // --- a line as far as it is typed (parse_partial) ---------------------

    fn partial(&self, i: &'a str, hmp: bool) -> Partial {
        let i = i.trim_start();
        let at = self.offset(i);
        let end = self.full.len();
        let keyword = terminated(tag::<_, _, Fail>("hmp"), take_while1(char::is_whitespace)).parse(i);
        let (form, head, body) = match (i.chars().next(), keyword) {
            (Some('#'), _) => (Form::Comment, None, None),
            (Some('{'), _) => (Form::Json, None, None),
            (Some('.'), _) => (Form::Dot, None, i.get(1..)),
            (_, _) if hmp => (Form::Hmp, None, Some(i)),
            (_, Ok((text, _))) => (Form::Hmp, Some(at..at + 3), Some(text)),
            _ if i.starts_with("transaction(") => (Form::Transaction, Some(at..at + "transaction(".len()), None),
            _ => (Form::Command, None, Some(i)),
        };
        let Some(body) = body else {
            return Partial { form, head, invocation: None, cursor: Cursor::word(end, "", None) };
        };
        let (invocation, mut cursor, name) = match form {
            Form::Hmp => self.partial_hmp(body),
            _ => self.partial_invocation(body),
        };
        // A dot command's name is typed with its dot.
        let name = name.map(|name| if form == Form::Dot { at..name.end } else { name });
        if invocation.is_none() && form == Form::Dot {
            cursor = Cursor::word(at, i, None);
        }
        Partial { form, head: head.or(name), invocation, cursor }
    }

    /// HMP text: words at whitespace, all of them positional.
    fn partial_hmp(&self, i: &'a str) -> (Option<Invocation>, Cursor, Option<Range<usize>>) {
        let mut words = Vec::new();
        let mut rest = i.trim_start();
        while !rest.is_empty() {
            let (left, word) = take_till::<_, _, Fail>(char::is_whitespace).parse(rest).unwrap_or(("", rest));
            words.push((self.offset(rest), word));
            rest = left.trim_start();
        }
        let ends_open = !i.ends_with(char::is_whitespace);
        let cursor = match words.last() {
            Some(&(at, word)) if ends_open => {
                words.pop();
                Cursor::word(at, word, None)
            }
            _ => Cursor::word(self.full.len(), "", None),
        };
        let name = words.first().map(|&(at, word)| at..at + word.len()).or_else(|| {
            let typed = cursor.text().filter(|text| !text.is_empty())?;
            Some(cursor.start..cursor.start + typed.len())
        });
        let mut words = words.into_iter();
        let invocation = words.next().map(|(offset, name)| {
            let args = words.map(|(offset, word)| Arg {
                key: None,
                value: Value::Bare(word.to_string()),
                offset,
                end: offset + word.len(),
            });
            Invocation { name: name.to_string(), offset, args: args.collect() }
        });
        (invocation, cursor, name)
    }

    /// A name and its arguments, up to the word under the cursor.
    fn partial_invocation(&self, i: &'a str) -> (Option<Invocation>, Cursor, Option<Range<usize>>) {
        let offset = self.offset(i);
        let (mut rest, name) = match self.name(i) {
            Ok((rest, name)) if rest.is_empty() || rest.starts_with(char::is_whitespace) => (rest, name),
            _ => take_till::<_, _, Fail>(char::is_whitespace).parse(i).unwrap_or(("", i)),
        };
        let span = (!name.is_empty()).then_some(offset..offset + name.len());
        if rest.is_empty() {
            return (None, Cursor::word(offset, name, None), span);
        }
        let mut args = Vec::new();
        let cursor = loop {
            let after = rest.trim_start();
            if after.is_empty() {
                break Cursor::word(self.full.len(), "", None);
            }
            match self.arg(after) {
                Ok(("", arg)) => break self.cursor_at(arg),
                Ok((left, arg)) if left.starts_with(char::is_whitespace) => {
                    args.push(arg);
                    rest = left;
                    continue;
                }
                _ => {}
            }
            if let Some(open) = self.open_word(after) {
                break open;
            }
            // A word the grammar refuses, taken as it is.
            let (left, word) = take_till::<_, _, Fail>(char::is_whitespace).parse(after).unwrap_or(("", after));
            let key = self.key(word).ok().map(|(_, parts)| parts.join("."));
            let start = self.offset(after);
            if left.is_empty() {
                break Cursor::word(start, word, key);
            }
            let value = word.get(key.as_ref().map_or(0, |k| k.len() + 1)..).unwrap_or_default();
            let key = key.map(|k| k.split('.').map(str::to_string).collect());
            args.push(Arg { key, value: Value::Bare(value.to_string()), offset: start, end: start + word.len() });
            rest = left;
        };
        (Some(Invocation { name: name.to_string(), offset, args }), cursor, span)
    }

    /// The cursor in an argument the grammar read whole.
    fn cursor_at(&self, arg: Arg) -> Cursor {
        let key = arg.key.map(|parts| parts.join("."));
        let value_start = key.as_ref().map_or(arg.offset, |k| arg.offset + k.len() + 1);
        let quote = self.full.get(value_start..).and_then(|v| v.chars().next()).unwrap_or('"');
        let value = match arg.value {
            Value::Quoted(text) => CursorValue::Quoted { quote, text, closed: true },
            Value::Bare(text) => CursorValue::Bare(text),
            Value::Json(_) => CursorValue::Json { closed: true },
        };
        Cursor { start: arg.offset, key, value_start, value }
    }

    /// A word that runs to the end of what is typed because its quote or
    /// its JSON value is still open.
    fn open_word(&self, i: &'a str) -> Option<Cursor> {
        let (value, key) = match self.key(i) {
            Ok((value, parts)) => (value, Some(parts.join("."))),
            Err(_) => (i, None),
        };
        let typed = match value.chars().next()? {
            '"' => {
                CursorValue::Quoted { quote: '"', text: partial::open_double_quoted(value.get(1..)?)?, closed: false }
            }
            '\'' => {
                let body = value.get(1..)?;
                (!body.contains('\'')).then_some(())?;
                CursorValue::Quoted { quote: '\'', text: body.to_string(), closed: false }
            }
            '{' | '[' if super::assemble::still_open(value) => CursorValue::Json { closed: false },
            _ => return None,
        };
        Some(Cursor { start: self.offset(i), key, value_start: self.offset(value), value: typed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Line {
        parse_line(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
    }

    fn command(text: &str) -> Invocation {
        match parse(text) {
            Line::Command(inv) => inv,
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    /// The error's column (1-based) and message.
    fn fails(text: &str) -> (usize, String) {
        let e = parse_line(text).expect_err(text);
        (super::super::position(text, e.offset).1, e.message)
    }

    fn bare(s: &str) -> Value {
        Value::Bare(s.into())
    }

    #[test]
    fn blank_and_comment_lines_are_blank() {
        for text in ["", "   ", "# note", "  # indented note", "\t"] {
            assert_eq!(parse(text), Line::Blank, "{text:?}");
        }
    }

    #[test]
    fn a_command_keeps_positional_words_and_pairs_in_order() {
        let inv = command("device_add e1000,id=n1 bus=pci.0 'a b' \"c\\td\"");
        assert_eq!(inv.name, "device_add");
        let keys: Vec<Option<String>> = inv.args.iter().map(|a| a.key.as_ref().map(|k| k.join("."))).collect();
        assert_eq!(keys, [None, Some("bus".into()), None, None]);
        let values: Vec<&Value> = inv.args.iter().map(|a| &a.value).collect();
        assert_eq!(
            values,
            [&bare("e1000,id=n1"), &bare("pci.0"), &Value::Quoted("a b".into()), &Value::Quoted("c\td".into())]
        );
        assert_eq!(inv.args.iter().map(|a| a.offset).collect::<Vec<_>>(), [11, 23, 33, 39]);
    }

    #[test]
    fn dotted_keys_split_and_json_values_stay_json() {
        let inv = command(r#"blockdev-add file.driver=file opts={"a": [1, 2]} list=[] empty="#);
        assert_eq!(inv.args[0].key, Some(vec!["file".into(), "driver".into()]));
        assert_eq!(inv.args[1].value, Value::Json(serde_json::json!({"a": [1, 2]})));
        assert_eq!(inv.args[2].value, Value::Json(serde_json::json!([])));
        assert_eq!(inv.args[3].value, bare(""));
    }

    #[test]
    fn raw_json_hmp_and_shell_forms() {
        assert!(matches!(parse(r#" {"execute": "stop"} "#), Line::Json(m) if m["execute"] == "stop"));
        assert_eq!(parse("hmp info  registers "), Line::Hmp("info  registers".into()));
        assert_eq!(parse("hmp"), Line::Hmp(String::new()));
        // A command that merely starts with "hmp" is a command.
        assert_eq!(command("hmpx").name, "hmpx");
        match parse(".wait STOP timeout=5") {
            Line::Dot(inv) => {
                assert_eq!(inv.name, "wait");
                assert_eq!(inv.args.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transactions_on_one_line_or_many() {
        let one = parse("transaction( a x=1 ; b )");
        let many = parse("transaction(\n  a x=1\n\n  b\n)");
        // `;` right after a value ends the action, inside a transaction only.
        let tight = parse("transaction( a x=1; b )");
        for line in [one, many, tight] {
            let Line::Transaction(actions) = line else { panic!() };
            assert_eq!(actions.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
            assert_eq!(actions[0].args[0].value, bare("1"));
            assert!(actions[1].args.is_empty());
        }
        assert_eq!(parse("transaction( )"), Line::Transaction(vec![]));
        assert!(matches!(parse("x a=1;b"), Line::Command(inv) if inv.args[0].value == bare("1;b")));
    }

    #[test]
    fn errors_point_at_the_column_that_went_wrong() {
        assert_eq!(fails("device_del id=\"n1"), (15, "expected a closing \" for this string".into()));
        assert_eq!(fails("x a='b"), (5, "expected a closing ' for this string".into()));
        assert_eq!(fails("x =1"), (3, "expected a key before '='".into()));
        assert_eq!(fails("x a..b=1"), (5, "expected a key name (dotted keys need a name between the dots)".into()));
        assert_eq!(fails("x a=\"b\"c"), (8, "expected a space after the argument".into()));
        assert_eq!(fails("9lives"), (1, "expected a command name".into()));
        assert_eq!(fails(".9"), (2, "expected a command name".into()));
        let (column, message) = fails(r#"x a={"b": }"#);
        assert_eq!(column, 11);
        assert!(message.starts_with("expected valid JSON (expected value"), "{message}");
        let (column, message) = fails("{\"execute\": \"stop\"");
        assert_eq!(column, 19);
        assert!(message.contains("EOF"), "{message}");
        assert_eq!(fails(r#"{"execute": "stop"} trailing"#).1, "expected the end of the line");
        assert_eq!(fails("transaction( a").1, "expected ')' to close the transaction");
    }

    #[test]
    fn nothing_is_left_over_after_a_parse() {
        // all_consuming: every accepted line is read to its end.
        for text in ["stop   ", "x a=1\t", "{\"execute\":\"x\"}\n", "transaction( a )  "] {
            assert!(parse_line(text).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn a_json_error_next_to_a_wide_character_is_placed_on_a_boundary() {
        let text = r#"{"execute":"x","arguments":{"a":"\u12é4"}}"#;
        let e = parse_line(text).unwrap_err();
        assert!(text.is_char_boundary(e.offset), "{e:?}");
    }

    #[test]
    fn python_literals_and_json_values_and_their_limits() {
        let inv = command("x a=['b',True,None] c={'d':1} e=[1, 2]");
        let values: Vec<&Value> = inv.args.iter().map(|a| &a.value).collect();
        assert_eq!(
            values,
            [
                &Value::Json(serde_json::json!(["b", true, null])),
                &Value::Json(serde_json::json!({"d": 1})),
                &Value::Json(serde_json::json!([1, 2]))
            ]
        );
        assert_eq!(fails("x a=[1,99999999999999999999]").0, 8);
        assert!(parse_line("x a=[18446744073709551615,-9223372036854775808,1e30]").is_ok());
        assert_eq!(fails(r#"{"execute":"x","arguments":{"n":-99999999999999999999}}"#).0, 33);
        assert!(fails("x a={'b': c}").1.contains("the name `c` (in a Python literal)"));
        // `-0` is an integer, as written (serde_json alone reads -0.0).
        let inv = command("x a=[-0,-0.0,{\"b\":-0}]");
        assert_eq!(inv.args[0].value, Value::Json(serde_json::json!([0, -0.0, {"b": 0}])));
    }

    #[test]
    fn dotted_keys_nest_a_bounded_depth() {
        assert!(parse_line(&format!("x {}=1", ["a"; 32].join("."))).is_ok());
        assert_eq!(fails(&format!("x {}=1", ["a"; 10_000].join("."))).1, "expected a key of at most 32 dotted parts");
    }

    #[test]
    fn vendor_prefixed_names_keep_their_dots() {
        assert_eq!(command("__org.qemu_x-foo a=1").name, "__org.qemu_x-foo");
    }

    fn partial(text: &str) -> Partial {
        parse_partial(text, text.len(), false)
    }

    /// Each complete argument before the cursor: its span and the text there.
    fn spans<'t>(text: &'t str, found: &Partial) -> Vec<(usize, usize, &'t str)> {
        let args = found.invocation.iter().flat_map(|inv| &inv.args);
        args.map(|a| (a.offset, a.end, &text[a.offset..a.end])).collect()
    }

    #[test]
    fn a_partial_line_has_its_words_spans_and_the_word_under_the_cursor() {
        let text = "device_add e1000,id=n1 bus=pci.0 'a b' pa";
        let found = partial(text);
        assert_eq!((found.form, found.head.clone()), (Form::Command, Some(0..10)));
        assert_eq!(spans(text, &found), [(11, 22, "e1000,id=n1"), (23, 32, "bus=pci.0"), (33, 38, "'a b'")]);
        let args = &found.invocation.as_ref().unwrap().args;
        // As the full parse reads them: a QemuOpts word is no key.
        assert_eq!(args[0].key, None);
        assert_eq!(args[1].key, Some(vec!["bus".to_string()]));
        assert_eq!(
            found.cursor,
            Cursor { start: 39, key: None, value_start: 39, value: CursorValue::Bare("pa".into()) }
        );
        // The cursor need not be at the end: what follows it is not read.
        let early = parse_partial(text, 26, false);
        assert_eq!(early.cursor, Cursor::word(23, "bus", None));
        assert_eq!(spans(text, &early), [(11, 22, "e1000,id=n1")]);
    }

    #[test]
    fn the_cursor_in_a_quoted_value_with_spaces_is_one_word() {
        let text = r#"qom-set path=/machine property=append value="a b\"c"#;
        let found = partial(text);
        assert_eq!(spans(text, &found), [(8, 21, "path=/machine"), (22, 37, "property=append")]);
        let quoted = CursorValue::Quoted { quote: '"', text: "a b\"c".into(), closed: false };
        assert_eq!(found.cursor, Cursor { start: 38, key: Some("value".into()), value_start: 44, value: quoted });
        // Closed, it is the same word, and the text inside it.
        let found = partial("x a='b c'");
        assert_eq!(found.cursor.value, CursorValue::Quoted { quote: '\'', text: "b c".into(), closed: true });
        // A half-typed escape is left out of the text.
        assert_eq!(partial(r#"x "a\"#).cursor.text(), Some("a"));
    }

    #[test]
    fn the_cursor_inside_a_json_value_is_one_word() {
        let text = r#"blockdev-add driver=file file={"driver": "file", "a b": [1, "}"#;
        let found = partial(text);
        assert_eq!(spans(text, &found), [(13, 24, "driver=file")]);
        assert_eq!(found.cursor.key.as_deref(), Some("file"));
        assert_eq!((found.cursor.start, found.cursor.value_start), (25, 30));
        assert_eq!(found.cursor.value, CursorValue::Json { closed: false });
        assert_eq!(found.cursor.text(), None);
        // Once closed, the words after it are words again.
        let text = r#"x a={"b": "c d"} e"#;
        assert_eq!(spans(text, &partial(text)), [(2, 16, r#"a={"b": "c d"}"#)]);
        assert_eq!(partial(text).cursor, Cursor::word(17, "e", None));
        let found = partial("x a=['b', {'c': ");
        assert_eq!(found.cursor.value, CursorValue::Json { closed: false });
    }

    #[test]
    fn after_a_trailing_space_the_cursor_starts_a_new_word() {
        let text = "qom-list path=/m  ";
        let found = partial(text);
        assert_eq!(spans(text, &found), [(9, 16, "path=/m")]);
        assert_eq!(found.cursor, Cursor::word(18, "", None));
        assert!(found.cursor.is_empty());
        // Still in the name: no command yet.
        let found = partial("qom-l");
        assert_eq!((found.invocation, found.head), (None, Some(0..5)));
        assert_eq!(found.cursor, Cursor::word(0, "qom-l", None));
        let found = partial(".wa");
        assert_eq!((found.form, found.invocation, found.cursor), (Form::Dot, None, Cursor::word(0, ".wa", None)));
        assert_eq!(partial("  ").cursor, Cursor::word(2, "", None));
    }

    #[test]
    fn hmp_text_is_words_at_whitespace_all_positional() {
        let text = "hmp device_del a=b n";
        let found = partial(text);
        assert_eq!((found.form, found.head.clone()), (Form::Hmp, Some(0..3)));
        let inv = found.invocation.as_ref().unwrap();
        assert_eq!((inv.name.as_str(), inv.offset), ("device_del", 4));
        assert_eq!(inv.args[0].key, None);
        assert_eq!(spans(text, &found), [(15, 18, "a=b")]);
        assert_eq!(found.cursor, Cursor::word(19, "n", None));
        assert_eq!(partial("hmp ").invocation, None);
        // `hmp` alone is still a name being typed.
        assert_eq!(partial("hmp").form, Form::Command);
        // With -H, a line is HMP text unless it is JSON or a `.` command.
        let found = parse_partial("info st", 7, true);
        assert_eq!((found.form, found.head.clone()), (Form::Hmp, Some(0..4)));
        assert_eq!(found.cursor, Cursor::word(5, "st", None));
        assert_eq!(parse_partial(".wait S", 7, true).form, Form::Dot);
        assert_eq!(parse_partial("{\"exec", 6, true).form, Form::Json);
    }

    #[test]
    fn a_word_the_grammar_refuses_is_taken_as_it_is() {
        let text = "x a=\"b\"c d=1 e";
        let found = partial(text);
        assert_eq!(spans(text, &found), [(2, 8, "a=\"b\"c"), (9, 12, "d=1")]);
        assert_eq!(found.invocation.unwrap().args[0].key, Some(vec!["a".to_string()]));
        assert_eq!(found.cursor, Cursor::word(13, "e", None));
    }

    #[test]
    fn a_line_the_session_would_refuse_is_not_read() {
        let many = format!("x a=[{}]", "1,".repeat(bounds::MAX_VALUES));
        let found = partial(&many);
        assert_eq!((found.form, found.invocation), (Form::Refused, None));
    }

    #[test]
    fn a_finished_line_reads_as_the_full_parse_reads_it() {
        for text in [
            "device_add e1000,id=n1 bus=pci.0 'a b' \"c\\td\"",
            r#"blockdev-add file.driver=file opts={"a": [1, 2]} list=[] empty="#,
            "x a=['b',True,None] c={'d':1}",
        ] {
            let Line::Command(inv) = parse(text) else { panic!("{text}") };
            let typed = format!("{text} ");
            assert_eq!(partial(&typed).invocation, Some(inv), "{text}");
        }
    }

    #[test]
    fn any_prefix_reads_without_panic_and_its_spans_lie_in_it() {
        let lines = [
            r#"qom-set path=/machine property=append value="a \"b\u00e9 c" x='d e' f={"g": ['h', {"i": 1}]} j"#,
            "hmp  info\u{a0}status é=1 ",
            ".wait STOP timeout=5 \"a",
            "transaction( a x=1 ; b )",
            "x a=\"b\"c d=1 é=\u{3000}\"\\",
            "{\"execute\": \"x\"",
            "  # note",
        ];
        for text in lines {
            let cursors = text.char_indices().map(|(at, _)| at).chain([text.len()]);
            for (cursor, hmp) in cursors.flat_map(|at| [(at, false), (at, true)]) {
                let found = parse_partial(text, cursor, hmp);
                let c = &found.cursor;
                assert!(c.start <= c.value_start && c.value_start <= cursor, "{text:?} at {cursor}: {found:?}");
                let args = found.invocation.iter().flat_map(|inv| &inv.args);
                for span in args.map(|a| a.offset..a.end).chain(found.head.clone()) {
                    assert!(span.end <= cursor && text.get(span.clone()).is_some(), "{text:?} at {cursor}: {span:?}");
                }
            }
        }
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(fails("x é=1 b='c").0, 9);
    }
}
