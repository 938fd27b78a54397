//! Amounts typed by people, shared by the command line and the line
//! language: seconds and sizes.

/// How long a stop waits for the guest to power off, unless told
/// (`vm stop --timeout`, `.shutdown timeout=`).
pub const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Seconds above zero (fractions allowed), as `--timeout` and `.sleep`
/// take them.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(s),
        _ => Err(format!("`{text}` is not a number of seconds above zero")),
    }
}

/// A size with an optional K/M/G/T suffix (powers of 1024, `B` for bytes);
/// a bare number is multiplied by `unit`.
pub fn parse_size(text: &str, unit: u64) -> Option<u64> {
    let (number, multiplier) = match text.char_indices().last()? {
        (at, c) if c.is_ascii_alphabetic() => {
            // People's sizes go up to T; QEMU's suffixes beyond it are not taken.
            let shift = crate::language::qemu_text::suffix_shift(c).filter(|shift| *shift <= 40)?;
            (&text[..at], 1u64 << shift)
        }
        _ => (text, unit),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse::<u64>().ok()?.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(parse_size("512", 1 << 20), Some(512 << 20));
        assert_eq!(parse_size("1G", 1 << 20), Some(1 << 30));
        assert_eq!(parse_size("4k", 1), Some(4096));
        assert_eq!(parse_size("M", 1), None);
        assert_eq!(parse_size("-1", 1), None);
        assert_eq!(parse_size("99999999999T", 1), None);
    }

    #[test]
    fn seconds_are_above_zero_and_finite() {
        assert_eq!(parse_seconds("0.5"), Ok(0.5));
        assert!(parse_seconds("0").is_err() && parse_seconds("inf").is_err() && parse_seconds("x").is_err());
    }
}
