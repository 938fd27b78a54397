//! `.help`: the command table and the dot commands, as text.

use crate::language::bind::dot::COMMANDS;
use crate::language::table::{self, Entry};

/// The whole list, or one entry's help. An unknown topic is an error.
pub fn text(topic: Option<&str>) -> Result<String, String> {
    let Some(topic) = topic else { return Ok(overview()) };
    if let Some(entry) = table::lookup(topic) {
        return Ok(entry_help(entry));
    }
    let name = topic.trim_start_matches('.');
    match COMMANDS.iter().find(|c| c.name == name) {
        Some(command) => Ok(format!("{}\n    {}\n", command.usage(), command.help)),
        None => Err(format!(
            "`{topic}` is not a qmpsh command; if it is a QMP command, .schema {topic} shows its arguments"
        )),
    }
}

/// The commands `.help` lists, each as its usage and its help: the
/// table's, then `hmp` and raw JSON (the man page shows the same).
pub fn commands() -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = table::table()
        .iter()
        .map(|entry| {
            let mut usage = entry.usage();
            if !entry.aliases.is_empty() {
                usage.push_str(&format!(" (also {})", entry.aliases.join(", ")));
            }
            (usage, entry.help.to_string())
        })
        .collect();
    rows.push(("hmp TEXT".into(), "send TEXT to the human monitor".into()));
    rows.push(("{\"execute\": ...}".into(), "send a raw QMP message".into()));
    rows
}

/// The dot commands, each as its usage and its help.
pub fn dot_commands() -> Vec<(String, String)> {
    COMMANDS.iter().map(|command| (command.usage(), command.help.to_string())).collect()
}

fn overview() -> String {
    let width = terminal_width();
    let mut text = String::from("Commands (any other NAME key=value... is sent as a QMP command):\n");
    for (usage, help) in commands() {
        text.push_str(&row(&usage, &help, width));
    }
    text.push_str("Dot commands:\n");
    for (usage, help) in dot_commands() {
        text.push_str(&row(&usage, &help, width));
    }
    text
}

/// Where the help column starts.
const HELP_COLUMN: usize = 43;

/// The width of the terminal on stdout, if it is one.
fn terminal_width() -> Option<usize> {
    let size = rustix::termios::tcgetwinsize(rustix::stdio::stdout()).ok()?;
    (size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// One line of the overview: `usage` padded to the help column, then
/// `help` wrapped at word boundaries to `width` (when known), continued
/// lines indented to the column. A usage too long for its column gets a
/// line of its own.
fn row(usage: &str, help: &str, width: Option<usize>) -> String {
    let room = width.map_or(usize::MAX, |w| w.saturating_sub(HELP_COLUMN).max(20));
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in help.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > room {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    let indent = " ".repeat(HELP_COLUMN);
    let mut text = if usage.chars().count() <= HELP_COLUMN - 3 {
        format!("  {usage:<40} ")
    } else {
        format!("  {usage}\n{indent}")
    };
    text.push_str(&lines.join(&format!("\n{indent}")));
    text.push('\n');
    text
}

fn entry_help(entry: &Entry) -> String {
    let mut text = format!("{}\n    {}\n", entry.usage(), entry.help);
    if !entry.aliases.is_empty() {
        text.push_str(&format!("    also: {}\n", entry.aliases.join(", ")));
    }
    match &entry.qmp {
        Some(qmp) => text.push_str(&format!("    sends QMP {qmp}\n")),
        None => text.push_str("    sent to HMP as text\n"),
    }
    if let Some(versions) = entry.span.describe() {
        text.push_str(&format!("    only in {versions}\n"));
    }
    for arg in entry.args {
        let optional = if arg.optional { ", optional" } else { "" };
        let versions = arg.span.describe().map(|v| format!(", only in {v}")).unwrap_or_default();
        text.push_str(&format!("    {}: {}{optional}{versions}\n", arg.name, arg.kind.describe()));
    }
    text.push_str(&format!("    example: {}\n", entry.example));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_wrap_between_words_under_the_help_column() {
        let help = "Add a listening socket or show the status of an existing listen socket for migration";
        let text = row("migrate_incoming uri", help, Some(80));
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line:?}");
        }
        let words: Vec<&str> = text.split_whitespace().skip(2).collect();
        assert_eq!(words.join(" "), help, "no word split: {text}");
        assert!(text.lines().skip(1).all(|l| l.starts_with(&" ".repeat(HELP_COLUMN))), "{text}");
        // Off a terminal, one line each.
        assert_eq!(row("stop", help, None).lines().count(), 1);
        // A usage too long for its column gets its own line.
        let long = row(&"x".repeat(50), "help", Some(80));
        assert_eq!(long, format!("  {}\n{}help\n", "x".repeat(50), " ".repeat(HELP_COLUMN)));
    }

    #[test]
    fn an_entrys_help_says_which_qemus_have_it() {
        let migrate = text(Some("migrate")).unwrap();
        assert!(migrate.contains("    blk: on|off, optional, only in QEMU before 9.1\n"), "{migrate}");
        assert!(migrate.contains("    uri: string\n"), "{migrate}");
        let renamed = text(Some("one-insn-per-tb")).unwrap();
        assert!(renamed.contains("    only in QEMU 8.1 and newer\n"), "{renamed}");
    }
}
