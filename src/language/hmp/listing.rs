//! One line of what HMP's `help` prints, read without the rest of qmpsh:
//! build.rs compiles the recorded list's names with this same reading.

/// A command as `help` lists it: `cont|c  -- resume emulation` gives the
/// names `cont` and `c`, no arguments, and the text after `--`. Lines that
/// continue a long entry start with whitespace or `[` and list nothing.
pub fn listed(line: &str) -> Option<(Vec<&str>, &str, &str)> {
    if line.starts_with(|c: char| c.is_whitespace() || c == '[') {
        return None;
    }
    let (usage, help) = line.split_once(" -- ").unwrap_or((line, ""));
    let usage = usage.trim_end();
    let (names, arguments) = usage.split_once(char::is_whitespace).unwrap_or((usage, ""));
    let names: Vec<&str> = names.split('|').filter(|n| !n.is_empty()).collect();
    (!names.is_empty()).then_some((names, arguments.trim(), help.trim()))
}
