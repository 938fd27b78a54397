//! `--table`: one row per target, one column per command, each reply in
//! short: a status, a version, a value, `ok` for an empty reply, the
//! number of items of a list. "Which hosts run which QEMU" is one screen.

use serde_json::{Map, Value};

use crate::ui::output::Answer;
use crate::visible;

/// The widest a cell is shown; a longer answer ends in `...`.
const WIDEST: usize = 40;

/// A reply in a few words.
pub fn short(value: &Value, text: bool) -> String {
    let said = match value {
        // HMP's text: its first line says what matters.
        Value::String(s) if text => s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("ok").to_string(),
        Value::Null => "ok".into(),
        Value::Object(m) if m.is_empty() => "ok".into(),
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        Value::Array(items) if items.len() == 1 => "1 item".into(),
        Value::Array(items) => format!("{} items", items.len()),
        Value::Object(m) => of_object(m),
    };
    cut(&visible::line(&said))
}

/// An object in short: a version (`query-version`), a status
/// (`query-status`), its one scalar, a few scalars as `k=v`, or how many
/// fields it has.
fn of_object(m: &Map<String, Value>) -> String {
    if let Some(qemu) = m.get("qemu") {
        let part = |key: &str| qemu.get(key).and_then(Value::as_u64);
        if let (Some(major), Some(minor), Some(micro)) = (part("major"), part("minor"), part("micro")) {
            return format!("{major}.{minor}.{micro}");
        }
    }
    if let Some(status) = m.get("status").and_then(Value::as_str) {
        return status.to_string();
    }
    let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    match m.iter().collect::<Vec<_>>().as_slice() {
        [(_, only)] if scalar(only) => text(only),
        fields if fields.len() <= 3 && fields.iter().all(|(_, v)| scalar(v)) => {
            fields.iter().map(|(k, v)| format!("{k}={}", text(v))).collect::<Vec<_>>().join(" ")
        }
        fields => format!("{} fields", fields.len()),
    }
}

/// `text` cut to [`WIDEST`] characters.
fn cut(text: &str) -> String {
    if text.chars().count() <= WIDEST {
        return text.to_string();
    }
    let kept: String = text.chars().take(WIDEST - 3).collect();
    format!("{kept}...")
}

/// The cell of the command on line `line`: its answer, else `-` (the
/// target failed before it).
pub fn cell(answers: &[Answer], line: usize) -> String {
    match answers.iter().rev().find(|a| a.line == Some(line)) {
        Some(Answer { reply: Ok((value, text)), .. }) => short(value, *text),
        Some(Answer { reply: Err(error), .. }) => cut(&format!("error: {}", visible::line(error))),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ui::render::Palette;

    #[test]
    fn replies_in_short() {
        assert_eq!(short(&json!({"status": "running", "running": true, "singlestep": false}), false), "running");
        let version = json!({"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": "Debian"});
        assert_eq!(short(&version, false), "10.0.2");
        assert_eq!(short(&json!({}), false), "ok");
        assert_eq!(short(&json!([1, 2, 3]), false), "3 items");
        assert_eq!(short(&json!([1]), false), "1 item");
        assert_eq!(short(&json!({"name": "web"}), false), "web");
        assert_eq!(short(&json!({"a": 1, "b": "x"}), false), "a=1 b=x");
        assert_eq!(short(&json!({"a": [], "b": 1}), false), "2 fields");
        assert_eq!(short(&json!("\nVM status: paused\n"), true), "VM status: paused");
        assert_eq!(short(&json!("x\u{1b}[2J"), false), "x\\x1b[2J");
        assert!(short(&json!("y".repeat(100)), false).ends_with("..."));
    }

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["web".to_string(), "running".to_string(), "10.0.2".to_string()],
            vec!["db-longer".to_string(), "paused".to_string(), "-".to_string()],
        ];
        let text = crate::ui::tables::plain(&["TARGET", "info status", "query-version"], rows, &Palette::plain());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "TARGET     info status  query-version");
        assert_eq!(lines[1], "web        running      10.0.2");
        assert_eq!(lines[2], "db-longer  paused       -");
    }
}
