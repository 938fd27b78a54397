//! Arguments under construction: `key=value` pairs nested by their dotted
//! keys, each leaf still as written until a type is known. Without a schema
//! they get qmp-shell's types ([`untyped`]); with one, the schema's
//! (`crate::language::schema`).

use serde_json::{Map, Value as Json};

use crate::language::line::{MAX_KEY_PARTS, ParseError, Value, expected as error, literal};

type Result<T> = std::result::Result<T, ParseError>;

/// A leaf: text still to be typed, or a value whose type is settled.
#[derive(Debug, Clone)]
pub enum Leaf {
    Raw(Value),
    /// An item's value from a QemuOpts string (`device_add e1000,id=n1`),
    /// typed as QEMU types its command line: where a list is wanted, one
    /// item is a list of one.
    Opts(String),
    /// A QemuOpts key given more than once: a list, where QEMU takes one.
    OptsList(Vec<String>),
    Typed(Json),
}

#[derive(Debug, Clone)]
pub enum Node {
    Leaf { leaf: Leaf, offset: usize },
    Branch { tree: Tree, offset: usize },
}

impl Node {
    /// qmp-shell typing for every raw leaf under this node.
    pub fn into_untyped(self) -> Json {
        match self {
            Node::Leaf { leaf: Leaf::Raw(value), .. } => untyped(&value),
            Node::Leaf { leaf: Leaf::Opts(text), .. } => untyped(&Value::Bare(text)),
            Node::Leaf { leaf: Leaf::OptsList(texts), .. } => {
                Json::Array(texts.into_iter().map(|t| untyped(&Value::Bare(t))).collect())
            }
            Node::Leaf { leaf: Leaf::Typed(json), .. } => json,
            Node::Branch { tree, .. } => Json::Object(tree.into_untyped()),
        }
    }

    pub fn offset(&self) -> usize {
        match self {
            Node::Leaf { offset, .. } | Node::Branch { offset, .. } => *offset,
        }
    }
}

/// An object's members in the order they were given.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub members: Vec<(String, Node)>,
}

impl Tree {
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.members.iter().find(|(n, _)| n == name).map(|(_, node)| node)
    }

    /// Inserts `leaf` at the dotted `key`, refusing a key given twice or used
    /// both as a value and as a parent, or nested deeper than the grammar
    /// allows: typing, untyping and dropping a tree recurse on its depth,
    /// and a QemuOpts string's keys (`e1000,a.a.a...=1`) reach here without
    /// passing the grammar's limit.
    pub fn insert(&mut self, key: &[String], leaf: Leaf, offset: usize) -> Result<()> {
        if key.len() > MAX_KEY_PARTS {
            return error(offset, format!("a key of at most {MAX_KEY_PARTS} dotted parts"));
        }
        let mut tree = self;
        for (depth, part) in key.iter().enumerate() {
            let last = depth + 1 == key.len();
            let path = || key.iter().take(depth + 1).cloned().collect::<Vec<_>>().join(".");
            let Some(at) = tree.members.iter().position(|(n, _)| n == part) else {
                if last {
                    tree.members.push((part.clone(), Node::Leaf { leaf, offset }));
                    return Ok(());
                }
                tree.members.push((part.clone(), Node::Branch { tree: Tree::default(), offset }));
                // The branch just pushed.
                let Some((_, Node::Branch { tree: child, .. })) = tree.members.last_mut() else {
                    return error(offset, "a key");
                };
                tree = child;
                continue;
            };
            match (tree.members.get_mut(at).map(|(_, node)| node), last) {
                (Some(Node::Branch { tree: child, .. }), false) => tree = child,
                (Some(Node::Leaf { .. }), true) => return error(offset, format!("`{}` only once", path())),
                _ => return error(offset, both(&path())),
            }
        }
        error(offset, "a key")
    }

    /// Adds a QemuOpts item: a key given again makes its items a list
    /// (`hostfwd=...,hostfwd=...`), which typing keeps where QEMU takes a
    /// list and refuses elsewhere.
    pub fn insert_opts(&mut self, key: &[String], text: String, offset: usize) -> Result<()> {
        let path = key.join(".");
        let existing = self.members.iter_mut().find(|(name, _)| key.len() == 1 && *name == path);
        match existing.map(|(_, node)| node) {
            Some(Node::Leaf { leaf: leaf @ Leaf::Opts(_), .. }) => {
                if let Leaf::Opts(first) = std::mem::replace(leaf, Leaf::OptsList(Vec::new())) {
                    *leaf = Leaf::OptsList(vec![first, text]);
                }
                Ok(())
            }
            Some(Node::Leaf { leaf: Leaf::OptsList(texts), .. }) => {
                texts.push(text);
                Ok(())
            }
            _ => self.insert(key, Leaf::Opts(text), offset),
        }
    }

    /// qmp-shell typing for every raw leaf.
    pub fn into_untyped(self) -> Map<String, Json> {
        self.members.into_iter().map(|(name, node)| (name, node.into_untyped())).collect()
    }
}

fn both(path: &str) -> String {
    format!("`{path}` to be either a value or a parent of keys, not both")
}

/// qmp-shell's typing of a value the schema leaves open (`any`, free-form
/// properties), by its `_parse_value`: JSON and Python literals as they
/// are, Python `int()` numbers, `true`/`false` in any case, and any other
/// word as the string typed. No hex, float or null is guessed, so
/// `addr=0x0a` and `serial=1.50` reach QEMU as written.
pub fn untyped(value: &Value) -> Json {
    match value {
        Value::Json(json) => json.clone(),
        Value::Quoted(s) => Json::String(s.clone()),
        Value::Bare(s) => {
            python_int(s).or_else(|| parse_true_false(s).map(Json::Bool)).unwrap_or_else(|| Json::String(s.clone()))
        }
    }
}

/// A word as Python's `int()` reads it: an optional sign, decimal digits
/// (any script's), single `_` between digits. `None` for anything else, and
/// for a number JSON cannot carry in 64 bits (it is then sent as typed).
pub fn python_int(text: &str) -> Option<Json> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let mut magnitude: u64 = 0;
    let mut last_was_digit = false;
    for c in digits.chars() {
        if c == '_' && last_was_digit {
            last_was_digit = false;
            continue;
        }
        let digit = decimal_digit(c)?;
        magnitude = magnitude.checked_mul(10)?.checked_add(u64::from(digit))?;
        last_was_digit = true;
    }
    if !last_was_digit {
        return None; // empty, or ends in `_`
    }
    literal::json_integer(magnitude, negative)
}

/// Where each run of ten Unicode decimal digits (category Nd) starts, as
/// Python 3.11 knows them: `int()` reads `١٢٣` as 123.
const DIGIT_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6, 0xE50, 0xED0,
    0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620,
    0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0,
    0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60,
    0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

fn decimal_digit(c: char) -> Option<u32> {
    let code = u32::from(c);
    let at = DIGIT_ZEROS.partition_point(|&zero| zero <= code).checked_sub(1)?;
    let value = code - DIGIT_ZEROS.get(at)?;
    (value < 10).then_some(value)
}

/// `true`/`false` in any case, as qmp-shell reads them.
fn parse_true_false(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A JSON number for an argument the schema declares a number: an
/// integer ([`parse_int`]) or a finite float.
pub fn parse_number(s: &str) -> Option<Json> {
    if let Some(n) = python_int(s) {
        return Some(n);
    }
    if let Some(n) = parse_int(s) {
        return Some(Json::from(n));
    }
    parse_float(s).map(Json::from)
}

/// An integer where one is certainly wanted (a schema `int`, a table
/// `int`): Python `int()` syntax, or `0x` hex.
pub fn parse_int(text: &str) -> Option<i64> {
    if let Some(n) = python_int(text).and_then(|n| n.as_i64()) {
        return Some(n);
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let hex = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X"))?;
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let magnitude = i64::from_str_radix(hex, 16).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// A finite float written the way JSON writes numbers (no `inf`, `nan`).
fn parse_float(s: &str) -> Option<f64> {
    // JSON's number syntax: -?digits(.digits)?([eE][+-]?digits)?
    let digits = |t: &str| -> usize { t.bytes().take_while(u8::is_ascii_digit).count() };
    let mut rest = s.strip_prefix('-').unwrap_or(s);
    let whole = digits(rest);
    if whole == 0 {
        return None;
    }
    rest = &rest[whole..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = digits(fraction);
        if n == 0 {
            return None;
        }
        rest = &fraction[n..];
    }
    if let Some(exponent) = rest.strip_prefix(['e', 'E']) {
        let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        let n = digits(exponent);
        if n == 0 {
            return None;
        }
        rest = &exponent[n..];
    }
    if !rest.is_empty() {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A boolean where one is certainly wanted: `on`/`off`, `yes`/`no`, and
/// `true`/`false` in any case.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "on" | "yes" => Some(true),
        "off" | "no" => Some(false),
        _ => parse_true_false(text),
    }
}

/// A QemuOpts string's items (`driver,key=value,...`), split at each comma
/// that is not doubled; a doubled one, a comma inside an item, is left as
/// written (QEMU reads `,,` as `,`).
pub fn opts_items(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at < bytes.len() {
        match (bytes.get(at), bytes.get(at + 1)) {
            (Some(b','), Some(b',')) => at += 2,
            (Some(b','), _) => {
                parts.extend(text.get(start..at));
                start = at + 1;
                at += 1;
            }
            _ => at += 1,
        }
    }
    parts.extend(text.get(start..));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Vec<String> {
        k.split('.').map(String::from).collect()
    }

    fn raw(s: &str) -> Leaf {
        Leaf::Raw(Value::Bare(s.into()))
    }

    #[test]
    fn dotted_keys_nest_in_order() {
        let mut tree = Tree::default();
        tree.insert(&key("file.driver"), raw("file"), 0).unwrap();
        tree.insert(&key("node-name"), raw("n0"), 1).unwrap();
        tree.insert(&key("file.filename"), raw("/tmp/x"), 2).unwrap();
        assert_eq!(
            Json::Object(tree.into_untyped()).to_string(),
            r#"{"file":{"driver":"file","filename":"/tmp/x"},"node-name":"n0"}"#
        );
    }

    #[test]
    fn a_key_twice_or_as_leaf_and_parent_is_refused() {
        let mut tree = Tree::default();
        tree.insert(&key("a"), raw("1"), 0).unwrap();
        assert_eq!(tree.insert(&key("a"), raw("2"), 4).unwrap_err().message, "expected `a` only once");
        assert!(tree.insert(&key("a.b"), raw("2"), 4).unwrap_err().message.contains("not both"));
        tree.insert(&key("c.d"), raw("1"), 0).unwrap();
        assert!(tree.insert(&key("c"), raw("2"), 9).unwrap_err().message.contains("`c` to be either"));
    }

    #[test]
    fn keys_nest_no_deeper_than_the_grammar_allows() {
        let mut tree = Tree::default();
        let deepest = vec!["a".to_string(); MAX_KEY_PARTS];
        tree.insert(&deepest, raw("1"), 0).unwrap();
        let deeper = vec!["b".to_string(); MAX_KEY_PARTS + 1];
        let err = tree.insert(&deeper, raw("1"), 7).unwrap_err();
        assert_eq!((err.offset, err.message.as_str()), (7, "expected a key of at most 32 dotted parts"));
    }

    #[test]
    fn open_values_follow_qmp_shell_exactly() {
        let typed = |s: &str| untyped(&Value::Bare(s.into()));
        assert_eq!(typed("123"), Json::from(123));
        assert_eq!(typed("-5"), Json::from(-5));
        assert_eq!(typed("+5"), Json::from(5));
        assert_eq!(typed("1_000"), Json::from(1000));
        assert_eq!(typed("007"), Json::from(7));
        assert_eq!(typed("١٢٣"), Json::from(123));
        assert_eq!(typed("18446744073709551615"), Json::from(u64::MAX));
        assert_eq!(typed("-9223372036854775808"), Json::from(i64::MIN));
        assert_eq!(typed("true"), Json::Bool(true));
        assert_eq!(typed("TRUE"), Json::Bool(true));
        assert_eq!(typed("False"), Json::Bool(false));
        // Python's int() refuses these, so they stay the text typed: no
        // hex, float or null guessing.
        for text in ["0x10", "0x0a", "1.5", "1.50", "null", "None", "-1.5e3", "1__0", "_1", "1_", "+", "-", "on", "٣x"]
        {
            assert_eq!(typed(text), Json::String(text.into()), "{text}");
        }
        // Beyond 64 bits JSON cannot carry it as an integer: sent as typed.
        assert_eq!(typed("18446744073709551616"), Json::String("18446744073709551616".into()));
        assert_eq!(untyped(&Value::Quoted("123".into())), Json::String("123".into()));
    }

    #[test]
    fn wanted_numbers_also_take_hex_and_floats() {
        assert_eq!(parse_int("0x10"), Some(16));
        assert_eq!(parse_int("-0x10"), Some(-16));
        assert_eq!(parse_int("+5"), Some(5));
        assert_eq!(parse_int("1.5"), None);
        assert_eq!(parse_number("1.5"), Some(Json::from(1.5)));
        assert_eq!(parse_number("-1.5e3"), Some(Json::from(-1500.0)));
        for text in ["0x", "1e", "inf", "nan", "12abc", "1.", ".5", "1e+"] {
            assert_eq!(parse_number(text), None, "{text}");
        }
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("off"), Some(false));
        assert_eq!(parse_bool("On"), None);
    }
}
