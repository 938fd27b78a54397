//! Values as QEMU itself reads them from text: what HMP, QemuOpts and the
//! keyval parser do with `bootindex=010` or `size=1.5M`, so that a human
//! line means what it means to HMP. Numbers are C's `strtoll`/`strtoull`
//! with base 0 (`0x` hex, a leading `0` octal), sizes QEMU's
//! `qemu_strtosz`, booleans `qapi_bool_parse`; a property's kind comes from
//! the type QEMU reports for it (`device-list-properties`, `qom-list`).

use serde_json::Value as Json;

/// A path inside a QemuOpts value, where a comma is written twice.
pub fn opts_path(path: &std::path::Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// How a property's value is read from text, by the type QEMU names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `str`, `string`, enums, `link<...>`, and anything not below: the
    /// text as it is.
    Text,
    /// `int`, `int8` ... `int64`.
    Int,
    /// `uint8` ... `uint64`.
    Uint,
    /// `size`: bytes, with suffixes.
    Size,
    Bool,
    /// `number`: a float.
    Number,
}

impl Kind {
    /// The kind of a QOM property type such as `uint32` or `OnOffAuto`.
    /// `name` is the property's: a PCI device's `addr` is a slot number
    /// that QEMU reads from a string (`addr=0x3` is slot 3; as an integer
    /// it would be a raw devfn), though QEMU 7.2 reports it as `int32` (a
    /// memory device's `addr` is a plain `uint64`).
    pub fn of_property(name: &str, ty: &str) -> Kind {
        match ty {
            // QEMU 7.2 calls a PCI slot `int32`; 10.0 `str`.
            "int32" if name == "addr" => Kind::Text,
            "bool" => Kind::Bool,
            "int" | "int8" | "int16" | "int32" | "int64" => Kind::Int,
            "uint4" | "uint8" | "uint16" | "uint32" | "uint64" => Kind::Uint,
            "size" => Kind::Size,
            "number" => Kind::Number,
            _ => Kind::Text,
        }
    }

    /// The JSON QEMU makes of `text` for a property of this kind, or what
    /// it wanted instead.
    pub fn read(self, text: &str) -> Result<Json, &'static str> {
        match self {
            Kind::Text => Ok(Json::String(text.to_string())),
            Kind::Int => strtoi64(text).map(Json::from).ok_or("an integer (0x for hex, a leading 0 for octal)"),
            Kind::Uint => {
                strtou64(text).map(Json::from).ok_or("an unsigned integer (0x for hex, a leading 0 for octal)")
            }
            Kind::Size => strtosz(text, 1).map(Json::from).ok_or("a size such as 4096, 4k or 1.5M"),
            Kind::Bool => bool_word(text).map(Json::Bool).ok_or("on, off, yes, no, true, false, y or n"),
            Kind::Number => strtod(text).map(Json::from).ok_or("a number"),
        }
    }
}

/// C's `strtoull` digits in base 0 after the sign: `0x` hex, a leading `0`
/// octal, else decimal. The whole text must be used.
fn base0(digits: &str) -> Option<u64> {
    let (radix, body) = match digits.as_bytes() {
        [b'0', b'x' | b'X', rest @ ..] if !rest.is_empty() => (16, &digits[2..]),
        [b'0', _, ..] => (8, &digits[1..]),
        _ => (10, digits),
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(body, radix).ok()
}

/// An optional sign, then the rest.
fn signed(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

/// `qemu_strtoi64(text, NULL, 0)`: `010` is 8, `0x10` 16, `-5` -5;
/// `None` for anything else or past the 64-bit range.
pub fn strtoi64(text: &str) -> Option<i64> {
    let (negative, digits) = signed(text);
    let magnitude = base0(digits)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude).or((magnitude == 1 << 63).then_some(i64::MIN))
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// `qemu_strtou64(text, NULL, 0)`: as [`strtoi64`], but up to 2^64-1, and a
/// negative number wraps as C's does (`-1` is 2^64-1).
pub fn strtou64(text: &str) -> Option<u64> {
    let (negative, digits) = signed(text);
    let magnitude = base0(digits)?;
    Some(if negative { magnitude.wrapping_neg() } else { magnitude })
}

/// The power of two a size suffix stands for, as `qemu_strtosz` reads
/// it: B, K, M, G, T, P, E in either case.
pub fn suffix_shift(c: char) -> Option<u32> {
    match c.to_ascii_uppercase() {
        'B' => Some(0),
        'K' => Some(10),
        'M' => Some(20),
        'G' => Some(30),
        'T' => Some(40),
        'P' => Some(50),
        'E' => Some(60),
        _ => None,
    }
}

/// QEMU's `do_strtosz`: a decimal number (a fraction too, with a suffix
/// bigger than bytes), or `0x` hex without a fraction or suffix, then one
/// optional suffix letter in either case (B, K, M, G, T, P, E: powers of
/// 1024). Without a suffix the number counts `unit` (1 for bytes; HMP's
/// `block_resize` counts MiB). A leading `0` is not octal here.
pub fn strtosz(text: &str, unit: u64) -> Option<u64> {
    // strtoull takes a `+`; a `-` QEMU refuses.
    let text = text.strip_prefix('+').unwrap_or(text);
    let (number, multiplier) = match text.char_indices().last()? {
        (at, c) if c.is_ascii_alphabetic() && !text.starts_with("0x") && !text.starts_with("0X") => {
            (&text[..at], 1u64 << suffix_shift(c)?)
        }
        _ => (text, unit),
    };
    if let Some(hex) = number.strip_prefix("0x").or_else(|| number.strip_prefix("0X")) {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        return u64::from_str_radix(hex, 16).ok()?.checked_mul(multiplier);
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let bytes = whole.checked_mul(multiplier)?;
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        return Some(bytes);
    }
    // A fraction of a byte is no size: QEMU wants a bigger unit for one.
    if multiplier == 1 {
        return None;
    }
    // The fraction's share of the multiplier, rounded half up (QEMU works
    // in 64.64 fixed point; 18 digits are plenty for the 2^60 of `E`).
    let digits: String = fraction.chars().take(18).collect();
    let scale = 10u128.pow(u32::try_from(digits.len()).ok()?);
    let part = (digits.parse::<u128>().ok()? * u128::from(multiplier) * 2 + scale) / (scale * 2);
    bytes.checked_add(u64::try_from(part).ok()?)
}

/// `qapi_bool_parse`: exactly `on`, `yes`, `true`, `y` or `off`, `no`,
/// `false`, `n` (case matters: `On` is no boolean to QEMU).
pub fn bool_word(text: &str) -> Option<bool> {
    match text {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

/// A word as HMP's `get_str` reads it: as typed, quotes and all, unless it
/// starts with `"`: then up to the closing `"`, with `\n`, `\r`, `\\`,
/// `\'` and `\"` its only escapes.
pub fn hmp_word(raw: &str) -> Result<String, String> {
    let Some(body) = raw.strip_prefix('"') else { return Ok(raw.to_string()) };
    let mut word = String::new();
    let mut chars = body.chars();
    loop {
        match chars.next() {
            None => return Err("a closing `\"`".into()),
            Some('"') => break,
            Some('\\') => match chars.next() {
                Some('n') => word.push('\n'),
                Some('r') => word.push('\r'),
                Some(c @ ('\\' | '\'' | '"')) => word.push(c),
                other => {
                    let other = other.map(String::from).unwrap_or_default();
                    return Err(format!("an escape HMP knows (\\n \\r \\\\ \\' \\\"), not `\\{other}`"));
                }
            },
            Some(c) => word.push(c),
        }
    }
    if chars.as_str().is_empty() { Ok(word) } else { Err("a space after the closing `\"`".into()) }
}

/// `qemu_strtod_finite`: a finite float, as C reads one (decimal only here).
fn strtod(text: &str) -> Option<f64> {
    let plain = text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    text.parse::<f64>().ok().filter(|f| plain && f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_read_in_base_0() {
        assert_eq!(strtoi64("010"), Some(8));
        assert_eq!(strtoi64("0x10"), Some(16));
        assert_eq!(strtoi64("0X1F"), Some(31));
        assert_eq!(strtoi64("+5"), Some(5));
        assert_eq!(strtoi64("-0x10"), Some(-16));
        assert_eq!(strtoi64("0"), Some(0));
        assert_eq!(strtoi64("-9223372036854775808"), Some(i64::MIN));
        for bad in ["08", "1_000", "0x", "", "-", "12abc", "9223372036854775808", "1.5", " 5", "0b11"] {
            assert_eq!(strtoi64(bad), None, "{bad:?}");
        }
        assert_eq!(strtou64("-1"), Some(u64::MAX));
        assert_eq!(strtou64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(strtou64("0x400"), Some(1024));
    }

    #[test]
    fn sizes_are_read_as_qemu_strtosz() {
        let sz = |text: &str| strtosz(text, 1);
        let mib = |text: &str| strtosz(text, 1 << 20);
        assert_eq!(sz("4096"), Some(4096));
        assert_eq!(sz("4k"), Some(4096));
        assert_eq!(sz("4K"), Some(4096));
        assert_eq!(sz("1.5M"), Some(1_572_864));
        assert_eq!(sz("0.5k"), Some(512));
        assert_eq!(sz("1.25K"), Some(1280));
        assert_eq!(sz("1.k"), Some(1024));
        assert_eq!(sz("0x200"), Some(512));
        assert_eq!(sz("010"), Some(10), "no octal in sizes");
        assert_eq!(sz("1B"), Some(1));
        for bad in ["1.5", "0.5b", "-1", "1KB", "1k5", "1e3", "", "0x", "0x1g", "M", "1.5e3"] {
            assert_eq!(sz(bad), None, "{bad:?}");
        }
        assert_eq!(mib("2"), Some(2 << 20));
        assert_eq!(mib("1.5"), Some(1_572_864));
        assert_eq!(mib("0x80"), Some(128 << 20));
        assert_eq!(mib("1.5G"), Some(1_610_612_736));
        assert_eq!(mib("2097152b"), Some(2_097_152));
        assert_eq!(mib("+5"), Some(5 << 20));
    }

    #[test]
    fn words_are_read_as_hmps_get_str() {
        assert_eq!(hmp_word("'single'"), Ok("'single'".into()));
        assert_eq!(hmp_word(r#""a b""#), Ok("a b".into()));
        assert_eq!(hmp_word(r#""q\"x\n""#), Ok("q\"x\n".into()));
        assert_eq!(hmp_word(r#"a"b""#), Ok(r#"a"b""#.into()));
        assert!(hmp_word(r#""tab\there""#).unwrap_err().contains("not `\\t`"));
        assert!(hmp_word(r#""open"#).is_err());
        assert!(hmp_word(r#""a"b"#).is_err());
    }

    #[test]
    fn booleans_and_kinds_are_qemus() {
        assert_eq!(bool_word("y"), Some(true));
        assert_eq!(bool_word("no"), Some(false));
        assert_eq!(bool_word("On"), None);
        assert_eq!(bool_word("TRUE"), None);
        assert_eq!(Kind::of_property("bootindex", "int32").read("010"), Ok(Json::from(8)));
        assert_eq!(Kind::of_property("serial", "str").read("0012345"), Ok(Json::from("0012345")));
        assert_eq!(Kind::of_property("addr", "int32").read("0x3"), Ok(Json::from("0x3")));
        assert_eq!(Kind::of_property("addr", "uint64").read("0x100000000"), Ok(Json::from(1u64 << 32)));
        assert_eq!(Kind::of_property("max-bytes", "uint64").read("0x400"), Ok(Json::from(1024)));
        assert_eq!(Kind::of_property("discard_granularity", "size").read("4k"), Ok(Json::from(4096)));
        assert_eq!(Kind::of_property("on", "OnOffAuto").read("auto"), Ok(Json::from("auto")));
        assert!(Kind::of_property("multifunction", "bool").read("On").is_err());
    }
}
