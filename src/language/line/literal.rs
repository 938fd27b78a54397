//! Python literals as values: qmp-shell reads a value that starts with `[`
//! or `{` and is not JSON as a Python literal (`['a', True]`, `{'k': None}`,
//! with `true`/`false`/`null` allowed too), so qmpsh does the same and
//! turns it into the JSON that qmp-shell's `json.dumps` would send.
//!
//! What `ast.literal_eval` accepts and JSON can carry: dicts, lists, tuples
//! (sent as arrays), strings with Python's escapes and `u`/`r` prefixes,
//! adjacent strings joined, integers (with `_`, `0x`, `0o`, `0b`), finite
//! floats, `True`/`False`/`None`, signs on numbers. Sets, bytes, complex
//! numbers and integers past 64 bits are refused with a reason rather than
//! sent wrong.

use std::iter::Peekable;
use std::str::CharIndices;

use serde_json::{Map, Number, Value};

/// Why a literal did not parse: where (a byte offset into the text given)
/// and what was expected there.
#[derive(Debug, Clone, PartialEq)]
pub struct LiteralError {
    pub offset: usize,
    pub expected: String,
}

/// Parses one literal at the start of `text` (a `[` or `{`); returns it and
/// how many bytes it took.
pub fn parse(text: &str) -> std::result::Result<(Value, usize), LiteralError> {
    let mut parser = Parser { text, at: 0, depth: 0 };
    let value = parser.value()?;
    Ok((value, parser.at))
}

/// Nesting deeper than this is refused, so hostile input cannot overflow
/// the stack (serde_json stops at the same depth).
const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    text: &'a str,
    at: usize,
    depth: usize,
}

type Result<T> = std::result::Result<T, LiteralError>;

impl<'a> Parser<'a> {
    fn fail<T>(&self, at: usize, expected: impl Into<String>) -> Result<T> {
        Err(LiteralError { offset: at, expected: expected.into() })
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// Skips white space (newlines too: a literal may span lines) and `#`
    /// comments, as Python does inside brackets.
    fn skip_space(&mut self) {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.at += rest.len() - trimmed.len();
            if !trimmed.starts_with('#') {
                return;
            }
            self.at += trimmed.find('\n').unwrap_or(trimmed.len());
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Value> {
        self.skip_space();
        let start = self.at;
        match self.peek() {
            Some('[') => self.sequence('[', ']'),
            Some('(') => self.sequence('(', ')'),
            Some('{') => self.dict(),
            Some('\'' | '"') => self.strings(),
            Some(c) if c.is_ascii_digit() || c == '.' || c == '+' || c == '-' => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => {
                let word = self.word();
                match word {
                    "True" | "true" => Ok(Value::Bool(true)),
                    "False" | "false" => Ok(Value::Bool(false)),
                    "None" | "null" => Ok(Value::Null),
                    _ if self.peek().is_some_and(|c| c == '\'' || c == '"') => {
                        self.at = start;
                        self.strings()
                    }
                    _ => self.fail(start, format!("a literal, not the name `{word}`")),
                }
            }
            _ => self.fail(start, "a value"),
        }
    }

    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail(self.at, format!("at most {MAX_DEPTH} levels of nesting"));
        }
        Ok(())
    }

    /// `[a, b]` or `(a, b)`; a tuple is sent as an array, `(a)` is just `a`.
    fn sequence(&mut self, open: char, close: char) -> Result<Value> {
        self.enter()?;
        self.at += open.len_utf8();
        let mut items = Vec::new();
        let mut trailing_comma = false;
        while !self.eat(close) {
            if !items.is_empty() && !trailing_comma {
                self.skip_space();
                return self.fail(self.at, format!("`,` or `{close}`"));
            }
            items.push(self.value()?);
            trailing_comma = self.eat(',');
        }
        self.depth -= 1;
        if open == '(' && items.len() == 1 && !trailing_comma {
            return Ok(items.remove(0));
        }
        Ok(Value::Array(items))
    }

    /// `{key: value, ...}`; `{a, b}` would be a set, which JSON cannot hold.
    fn dict(&mut self) -> Result<Value> {
        self.enter()?;
        self.at += 1;
        let mut map = Map::new();
        let mut trailing_comma = true;
        while !self.eat('}') {
            if !trailing_comma {
                self.skip_space();
                return self.fail(self.at, "`,` or `}`");
            }
            self.skip_space();
            let key_at = self.at;
            let key = self.value()?;
            if !self.eat(':') {
                self.skip_space();
                return self.fail(self.at, "`:` after a dict key (a Python set cannot be sent as JSON)");
            }
            let key = match key {
                Value::String(s) => s,
                Value::Number(n) if !n.is_f64() => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "null".to_string(),
                _ => return self.fail(key_at, "a string, integer, boolean or None as a dict key"),
            };
            let value = self.value()?;
            map.insert(key, value);
            trailing_comma = self.eat(',');
        }
        self.depth -= 1;
        Ok(Value::Object(map))
    }

    /// One string, or several written next to each other (joined).
    fn strings(&mut self) -> Result<Value> {
        let mut joined = String::new();
        loop {
            self.skip_space();
            let start = self.at;
            let prefix_len = self.rest().find(['\'', '"']).filter(|&n| n <= 2).unwrap_or(usize::MAX);
            if prefix_len == usize::MAX {
                if joined.is_empty() && start == self.at {
                    return self.fail(start, "a string");
                }
                self.at = start;
                return Ok(Value::String(joined));
            }
            let prefix = &self.rest()[..prefix_len];
            let raw = match prefix.to_ascii_lowercase().as_str() {
                "" | "u" => false,
                "r" => true,
                "b" | "br" | "rb" => return self.fail(start, "a text string (bytes cannot be sent as JSON)"),
                _ if prefix.chars().all(char::is_alphabetic) => {
                    return self.fail(start, format!("a plain string, not a `{prefix}` string"));
                }
                // Not a string prefix: the end of the strings.
                _ => {
                    self.at = start;
                    return Ok(Value::String(joined));
                }
            };
            self.at += prefix_len;
            joined.push_str(&self.string_body(raw)?);
        }
    }

    /// The quoted text at `self.at`, with its escapes applied unless `raw`.
    fn string_body(&mut self, raw: bool) -> Result<String> {
        let start = self.at;
        let rest = self.rest();
        let quote = if rest.starts_with("'''") || rest.starts_with("\"\"\"") { &rest[..3] } else { &rest[..1] };
        let body_start = self.at + quote.len();
        let mut out = String::new();
        // A `\uD83D` waiting for the `\uDE00` that completes it (Python
        // keeps the pair; json.dumps then sends one character).
        let mut high: Option<(u32, usize)> = None;
        let lone = "a character JSON can carry (not a lone surrogate)";
        let mut chars = self.text[body_start..].char_indices().peekable();
        while let Some((n, c)) = chars.next() {
            let here = body_start + n;
            if let Some((_, at)) = high
                && (c != '\\' || chars.peek().map(|&(_, e)| e) != Some('u'))
            {
                return self.fail(at, lone);
            }
            if self.text[here..].starts_with(quote) {
                self.at = here + quote.len();
                return Ok(out);
            }
            match c {
                '\n' if quote.len() == 1 => break,
                '\\' => {
                    let Some((_, escaped)) = chars.next() else { break };
                    if raw {
                        out.push('\\');
                        out.push(escaped);
                        continue;
                    }
                    match escaped {
                        '\n' => {}
                        '\\' | '\'' | '"' => out.push(escaped),
                        'a' => out.push('\u{7}'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'v' => out.push('\u{b}'),
                        '0'..='7' => out.push(self.code_point(octal_rest(escaped, &mut chars), here)?),
                        'x' | 'u' | 'U' => {
                            let width = match escaped {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let Some(code) = hex_digits(width, &mut chars) else {
                                return self.fail(here, format!("{width} hex digits after \\{escaped}"));
                            };
                            match (high.take(), code) {
                                (None, 0xD800..=0xDBFF) => high = Some((code, here)),
                                (Some((first, _)), 0xDC00..=0xDFFF) => {
                                    let joined = 0x10000 + ((first - 0xD800) << 10) + (code - 0xDC00);
                                    out.push(self.code_point(joined, here)?);
                                }
                                (Some((_, at)), _) => return self.fail(at, lone),
                                (None, _) => out.push(self.code_point(code, here)?),
                            }
                        }
                        'N' => return self.fail(here, "an escape other than \\N{...}"),
                        // Python keeps an unknown escape as written.
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    }
                }
                c => out.push(c),
            }
        }
        self.fail(start, format!("a closing {quote} for this string"))
    }

    fn code_point(&self, code: u32, at: usize) -> Result<char> {
        match char::from_u32(code) {
            Some(c) => Ok(c),
            None => self.fail(at, "a character JSON can carry (not a lone surrogate)"),
        }
    }

    /// An integer or float, with an optional sign (`ast.literal_eval`
    /// takes one, not `--5`).
    fn number(&mut self) -> Result<Value> {
        let start = self.at;
        let negative = self.peek() == Some('-');
        if matches!(self.peek(), Some('-' | '+')) {
            self.at += 1;
            self.skip_space();
        }
        let body_start = self.at;
        let rest = self.rest();
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(rest.len());
        // An exponent's sign belongs to the number: `1e-5`.
        let mut len = len;
        let bytes = rest.as_bytes();
        if bytes.get(len).is_some_and(|&b| b == b'-' || b == b'+')
            && len.checked_sub(1).and_then(|before| bytes.get(before)).is_some_and(|&b| b == b'e' || b == b'E')
            && !rest.starts_with("0x")
            && !rest.starts_with("0X")
        {
            len += 1;
            len += rest[len..].find(|c: char| !(c.is_ascii_digit() || c == '_')).unwrap_or(rest.len() - len);
        }
        let token = &rest[..len];
        self.at += len;
        match number_token(token, negative) {
            Some(value) => Ok(value),
            None if token.ends_with(['j', 'J']) => self.fail(body_start, "a real number (complex cannot be sent)"),
            None => self.fail(start, format!("a number JSON can carry, not `{token}`")),
        }
    }
}

/// A Python number token (without its sign) as JSON.
fn number_token(token: &str, negative: bool) -> Option<Value> {
    let lower = token.to_ascii_lowercase();
    let radix = match lower.get(..2) {
        Some("0x") => Some(16),
        Some("0o") => Some(8),
        Some("0b") => Some(2),
        _ => None,
    };
    if let Some(radix) = radix {
        let digits = lower[2..].strip_prefix('_').unwrap_or(&lower[2..]);
        return integer(digits, radix, negative);
    }
    if lower.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        // Python refuses `012` (but allows `0`, `00`).
        if lower.len() > 1 && lower.starts_with('0') && lower.bytes().any(|b| b != b'0' && b != b'_') {
            return None;
        }
        return integer(&lower, 10, negative);
    }
    float(&lower, negative)
}

/// Digits in `radix` with single `_` between them, within 64 bits.
fn integer(digits: &str, radix: u32, negative: bool) -> Option<Value> {
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let magnitude = u64::from_str_radix(&digits.replace('_', ""), radix).ok()?;
    json_integer(magnitude, negative)
}

/// A JSON integer from a sign and a magnitude, when 64 bits hold it
/// (`-2^63` to `2^64 - 1`).
pub fn json_integer(magnitude: u64, negative: bool) -> Option<Value> {
    if !negative {
        Some(Value::from(magnitude))
    } else if magnitude <= i64::MAX as u64 + 1 {
        Some(Value::from(0i64.wrapping_sub_unsigned(magnitude)))
    } else {
        None
    }
}

/// A decimal float: `1.5`, `.5`, `5.`, `1e3`, `1_0.5`; finite only.
fn float(text: &str, negative: bool) -> Option<Value> {
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (text, None),
    };
    let digits_ok = |s: &str| !s.starts_with('_') && !s.ends_with('_') && !s.contains("__");
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mantissa_ok = (!whole.is_empty() || !fraction.is_empty())
        && [whole, fraction].iter().all(|p| p.bytes().all(|b| b.is_ascii_digit() || b == b'_') && digits_ok(p));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit() || b == b'_') && digits_ok(e)
    });
    if !mantissa_ok || !exponent_ok {
        return None;
    }
    let number: f64 = text.replace('_', "").parse().ok()?;
    let number = if negative { -number } else { number };
    Number::from_f64(number).map(Value::Number)
}

/// An octal escape's value: its first digit and up to two more.
fn octal_rest(first: char, chars: &mut Peekable<CharIndices<'_>>) -> u32 {
    let mut code = first.to_digit(8).unwrap_or(0);
    for _ in 0..2 {
        match chars.peek().and_then(|(_, d)| d.to_digit(8)) {
            Some(d) => {
                code = code * 8 + d;
                chars.next();
            }
            None => break,
        }
    }
    code
}

/// Exactly `width` hex digits (at most 8, so the value fits).
fn hex_digits(width: usize, chars: &mut Peekable<CharIndices<'_>>) -> Option<u32> {
    let mut code = 0u32;
    for _ in 0..width {
        code = code * 16 + chars.next().and_then(|(_, d)| d.to_digit(16))?;
    }
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn literal(text: &str) -> Value {
        let (value, used) = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
        assert_eq!(used, text.len(), "{text:?} left some over");
        value
    }

    fn refused(text: &str) -> String {
        parse(text).map(|v| format!("{v:?}")).expect_err(text).expected
    }

    #[test]
    fn python_spellings_become_json() {
        assert_eq!(literal("['a', True, None, false, null]"), json!(["a", true, null, false, null]));
        assert_eq!(literal("{'driver':'file','n':-5,}"), json!({"driver": "file", "n": -5}));
        assert_eq!(literal("[(1, 2), (3,), (4)]"), json!([[1, 2], [3], 4]));
        assert_eq!(literal("{1: 'one', True: 't', None: 'n'}"), json!({"1": "one", "true": "t", "null": "n"}));
        assert_eq!(literal("['a' 'b', u'c', r'\\d']"), json!(["ab", "c", "\\d"]));
        assert_eq!(
            literal("[0x10, 0o17, 0b11, 1_000, 1.5, .5, 5., 1e3, -2.5e-1, +7]"),
            json!([16, 15, 3, 1000, 1.5, 0.5, 5.0, 1000.0, -0.25, 7])
        );
        assert_eq!(literal("['\\x41\\u00e9\\n\\'', \"it's\", '''x\"y''']"), json!(["Aé\n'", "it's", "x\"y"]));
        assert_eq!(literal("[\n  1,  # one\n  2\n]"), json!([1, 2]));
        assert_eq!(literal("['\\ud83d\\ude00']"), json!(["😀"]));
        assert_eq!(literal("{}"), json!({}));
    }

    #[test]
    fn what_json_cannot_carry_is_refused_with_a_reason() {
        assert!(refused("{1, 2}").contains("set"));
        assert!(refused("[b'x']").contains("bytes"));
        assert!(refused("[1j]").contains("complex"));
        assert!(refused("[99999999999999999999]").contains("number JSON can carry"));
        assert!(refused("[1e999]").contains("number JSON can carry"));
        assert!(refused("[abc]").contains("`abc`"));
        assert!(refused("[012]").contains("`012`"));
        assert!(refused("['\\ud800']").contains("surrogate"));
        assert!(refused("['\\ud800x']").contains("surrogate"));
        assert!(refused("['\\ude00']").contains("surrogate"));
        assert!(refused("['open").contains("closing '"));
        assert!(refused("[1 2]").contains("`,` or `]`"));
        assert!(refused("[--5]").contains("a number"));
        assert!(refused(&"[".repeat(200)).contains("nesting"));
    }
}
