//! The nom grammar of one logical line (grammar/GRAMMAR.md writes it out).
//!
//! Rules are small methods, bottom up: strings and values, arguments,
//! invocations, then the line forms tried in order. Once a rule has seen
//! enough to know the line is its own (an opening quote, a `{`, a `key=`),
//! it `cut`s, so an error points at the column where the text went wrong
//! instead of at the start of the line.

use std::borrow::Cow;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till, take_till1, take_until, take_while, take_while1};
use nom::character::complete::{char, multispace0, multispace1, satisfy, space0, space1};
use nom::combinator::{all_consuming, cut, eof, map, opt, peek, recognize, rest, value};
use nom::error::{ErrorKind, ParseError as NomParseError};
use nom::multi::{many0, many1};
use nom::sequence::{pair, preceded, terminated};
use nom::{Err as NomErr, IResult, Parser};

use super::{Arg, Invocation, Line, ParseError, Value};

/// Parses one logical line (continuations already joined).
pub fn parse_line(text: &str) -> Result<Line, ParseError> {
    let grammar = Grammar { full: text };
    match all_consuming(|i| grammar.line(i)).parse(text) {
        Ok((_, line)) => Ok(line),
        Err(NomErr::Error(fail) | NomErr::Failure(fail)) => Err(ParseError {
            offset: grammar.offset(fail.at),
            message: format!("expected {}", fail.expected),
        }),
        // Only streaming parsers ask for more input; these are all complete.
        Err(NomErr::Incomplete(_)) => Err(ParseError {
            offset: text.len(),
            message: "expected more input".into(),
        }),
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
        Fail {
            at,
            expected: expected.into(),
        }
    }

    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }

    /// Of two failed alternatives, report the one that got further.
    fn or(self, other: Self) -> Self {
        if other.at.len() <= self.at.len() {
            other
        } else {
            self
        }
    }
}

type Res<'a, T> = IResult<&'a str, T, Fail<'a>>;

/// A committed failure at `at`: the line is certainly wrong here.
fn failure<'a, T>(at: &'a str, expected: impl Into<Cow<'static, str>>) -> Res<'a, T> {
    Err(NomErr::Failure(Fail {
        at,
        expected: expected.into(),
    }))
}

/// Runs `parser`; when it fails without committing, says it expected `what`.
fn expect<'a, O>(
    what: &'static str,
    mut parser: impl Parser<&'a str, Output = O, Error = Fail<'a>>,
) -> impl Parser<&'a str, Output = O, Error = Fail<'a>> {
    move |i: &'a str| match parser.parse(i) {
        Err(NomErr::Error(_)) => Err(NomErr::Error(Fail {
            at: i,
            expected: what.into(),
        })),
        other => other,
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_key_char(c: char) -> bool {
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

/// Holds the whole line so rules can turn the rest they see into offsets.
struct Grammar<'a> {
    full: &'a str,
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
                        Err(e) => failure(i, format!("a valid JSON string ({})", json_message(&e))),
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
            Some(Ok(v)) => Ok((&i[stream.byte_offset()..], v)),
            Some(Err(e)) => {
                // serde_json counts lines from 1 and columns in bytes from 1.
                let line_start: usize = i
                    .split_inclusive('\n')
                    .take(e.line() - 1)
                    .map(str::len)
                    .sum();
                let at = (line_start + e.column().saturating_sub(1)).min(i.len());
                failure(&i[at..], format!("valid JSON ({})", json_message(&e)))
            }
            None => failure(i, "a JSON value"),
        }
    }

    fn json_composite(&self, i: &'a str) -> Res<'a, serde_json::Value> {
        preceded(peek(satisfy(|c| c == '{' || c == '[')), |i| self.json(i)).parse(i)
    }

    /// The value after `key=`; may be empty (`key=` is the empty string).
    fn value(&self, i: &'a str) -> Res<'a, Value> {
        alt((
            map(|i| self.double_quoted(i), Value::Quoted),
            map(|i| self.single_quoted(i), Value::Quoted),
            map(|i| self.json_composite(i), Value::Json),
            map(take_till(char::is_whitespace), |s: &str| {
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
            map(
                preceded(
                    peek(satisfy(|c| c != ';' && c != ')')),
                    take_till1(char::is_whitespace),
                ),
                |s: &str| Value::Bare(s.to_string()),
            ),
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
        let pair_arg = map(
            pair(|i| self.key(i), cut(|i| self.value(i))),
            |(key, value)| Arg {
                key: Some(key),
                value,
                offset,
            },
        );
        let word_arg = map(
            |i| self.word(i),
            |value| Arg {
                key: None,
                value,
                offset,
            },
        );
        // After an argument: a space, the end, or what closes a transaction action.
        let boundary = cut(expect(
            "a space after the argument",
            peek(alt((multispace1, eof, tag(";"), tag(")")))),
        ));
        terminated(alt((pair_arg, word_arg)), boundary).parse(i)
    }

    fn args(&self, i: &'a str) -> Res<'a, Vec<Arg>> {
        many0(preceded(space1, |i| self.arg(i))).parse(i)
    }

    // --- invocations and line forms ---------------------------------------

    fn name(&self, i: &'a str) -> Res<'a, &'a str> {
        recognize(pair(
            satisfy(|c| c.is_ascii_alphabetic() || c == '_'),
            take_while(is_name_char),
        ))
        .parse(i)
    }

    fn invocation(&self, i: &'a str) -> Res<'a, Invocation> {
        let offset = self.offset(i);
        let (i, name) = expect("a command name", |i| self.name(i)).parse(i)?;
        let (i, args) = self.args(i)?;
        Ok((
            i,
            Invocation {
                name: name.to_string(),
                offset,
                args,
            },
        ))
    }

    fn blank(&self, i: &'a str) -> Res<'a, Line> {
        value(Line::Blank, alt((eof, preceded(char('#'), rest)))).parse(i)
    }

    fn raw_json(&self, i: &'a str) -> Res<'a, Line> {
        let (after, v) = preceded(peek(char('{')), cut(|i| self.json(i))).parse(i)?;
        match v {
            serde_json::Value::Object(map) => Ok((after, Line::Json(map))),
            _ => unreachable!("a JSON text starting with '{{' is an object"),
        }
    }

    fn shell(&self, i: &'a str) -> Res<'a, Line> {
        map(
            preceded(char('.'), cut(|i| self.invocation(i))),
            Line::Shell,
        )
        .parse(i)
    }

    fn hmp(&self, i: &'a str) -> Res<'a, Line> {
        let keyword = terminated(tag("hmp"), peek(alt((space1, eof))));
        map(preceded(pair(keyword, space0), rest), |text: &str| {
            Line::Hmp(text.trim_end().to_string())
        })
        .parse(i)
    }

    /// `transaction( action ; action )`, where a newline also separates.
    fn transaction(&self, i: &'a str) -> Res<'a, Line> {
        let separator = || many1((multispace0, alt((tag(";"), tag("\n"))), multispace0));
        let actions = opt(pair(
            |i| self.invocation(i),
            many0(preceded(separator(), |i| self.invocation(i))),
        ));
        let body = terminated(
            preceded(opt(separator()), actions),
            (
                opt(separator()),
                multispace0,
                expect("')' to close the transaction", char(')')),
            ),
        );
        map(
            preceded((tag("transaction("), multispace0), cut(body)),
            |found| {
                let actions = found.map_or_else(Vec::new, |(first, more)| {
                    std::iter::once(first).chain(more).collect()
                });
                Line::Transaction(actions)
            },
        )
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
}
