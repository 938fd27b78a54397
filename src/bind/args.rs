//! Arguments under construction: `key=value` pairs nested by their dotted
//! keys, each leaf still as written until a type is known. Without a schema
//! they get qmp-shell's types ([`untyped`]); with one, the schema's
//! (`crate::schema`).

use serde_json::{Map, Value as Json};

use super::{Result, error};
use crate::line::Value;

/// A leaf: text still to be typed, or a value whose type is settled.
#[derive(Debug, Clone)]
pub enum Leaf {
    Raw(Value),
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
    /// both as a value and as a parent.
    pub fn insert(&mut self, key: &[String], leaf: Leaf, offset: usize) -> Result<()> {
        let mut tree = self;
        for (depth, part) in key.iter().enumerate() {
            let last = depth + 1 == key.len();
            let path = || key[..=depth].join(".");
            let at = tree.members.iter().position(|(n, _)| n == part);
            match (at, last) {
                (None, true) => {
                    tree.members.push((part.clone(), Node::Leaf { leaf, offset }));
                    return Ok(());
                }
                (None, false) => {
                    tree.members.push((part.clone(), Node::Branch { tree: Tree::default(), offset }));
                    let Some((_, Node::Branch { tree: child, .. })) = tree.members.last_mut() else {
                        unreachable!("just pushed a branch")
                    };
                    tree = child;
                }
                (Some(i), false) => match &mut tree.members[i].1 {
                    Node::Branch { tree: child, .. } => tree = child,
                    Node::Leaf { .. } => return error(offset, both(&path())),
                },
                (Some(i), true) => {
                    return match tree.members[i].1 {
                        Node::Branch { .. } => error(offset, both(&path())),
                        Node::Leaf { .. } => error(offset, format!("`{}` only once", path())),
                    };
                }
            }
        }
        error(offset, "a key")
    }

    /// qmp-shell typing for every raw leaf.
    pub fn into_untyped(self) -> Map<String, Json> {
        self.members.into_iter().map(|(name, node)| (name, node.into_untyped())).collect()
    }
}

fn both(path: &str) -> String {
    format!("`{path}` to be either a value or a parent of keys, not both")
}

/// qmp-shell typing of an untyped value: JSON as is, numbers, booleans and
/// null from bare words, everything else a string.
pub fn untyped(value: &Value) -> Json {
    match value {
        Value::Json(json) => json.clone(),
        Value::Quoted(s) => Json::String(s.clone()),
        Value::Bare(s) => match s.as_str() {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            "null" => Json::Null,
            _ => parse_number(s).unwrap_or_else(|| Json::String(s.clone())),
        },
    }
}

/// A JSON number from an integer (decimal, negative, `0x` hex, up to u64)
/// or a finite float.
pub fn parse_number(s: &str) -> Option<Json> {
    if let Some(n) = parse_int(s) {
        return Some(Json::from(n));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
        return s.parse::<u64>().ok().map(Json::from);
    }
    parse_float(s).map(Json::from)
}

/// An integer: decimal (maybe negative) or `0x` hex.
pub fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            i64::from_str_radix(hex, 16).ok()?
        }
        Some(_) => return None,
        None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok()?,
        None => return None,
    };
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

/// A size with an optional K/M/G/T suffix (powers of 1024, `B` for bytes);
/// a bare number is multiplied by `unit`.
pub fn parse_size(text: &str, unit: u64) -> Option<u64> {
    let (number, multiplier) = match text.char_indices().last()? {
        (at, c) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'B' => 0,
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return None,
            };
            (&text[..at], 1u64 << shift)
        }
        _ => (text, unit),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// `on`/`off` and friends.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    }
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
    fn qmp_shell_typing_of_bare_words() {
        let typed = |s: &str| untyped(&Value::Bare(s.into()));
        assert_eq!(typed("123"), Json::from(123));
        assert_eq!(typed("-5"), Json::from(-5));
        assert_eq!(typed("0x10"), Json::from(16));
        assert_eq!(typed("18446744073709551615"), Json::from(u64::MAX));
        assert_eq!(typed("1.5"), Json::from(1.5));
        assert_eq!(typed("true"), Json::Bool(true));
        assert_eq!(typed("null"), Json::Null);
        assert_eq!(typed("-1.5e3"), Json::from(-1500.0));
        for text in ["0x", "1e", "inf", "nan", "12abc", "-", "on", "+5", "1.", ".5", "1e+"] {
            assert_eq!(typed(text), Json::String(text.into()), "{text}");
        }
        assert_eq!(untyped(&Value::Quoted("123".into())), Json::String("123".into()));
    }

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(parse_size("512", 1 << 20), Some(512 << 20));
        assert_eq!(parse_size("1G", 1 << 20), Some(1 << 30));
        assert_eq!(parse_size("4k", 1), Some(4096));
        assert_eq!(parse_size("M", 1), None);
        assert_eq!(parse_size("-1", 1), None);
        assert_eq!(parse_size("99999999999T", 1), None);
    }
}
