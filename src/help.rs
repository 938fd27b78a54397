//! `.help`: the command table and the shell commands, as text.

use crate::table::{self, Entry};

/// Shell commands: usage and one line of help.
pub const SHELL_COMMANDS: &[(&str, &str)] = &[
    (".help [CMD]", "list commands, or show one"),
    (".exit", "leave qmpsh (Ctrl-D too)"),
    (".events on|off", "show or hide asynchronous events"),
    (".pretty on|off", "pretty-print JSON replies"),
    (".sleep SECS", "pause, printing events that arrive"),
    (
        ".wait EVENT [timeout=SECS] [KEY=VALUE...]",
        "block until a matching event arrives",
    ),
];

/// The whole list, or one entry's help. An unknown topic is an error.
pub fn text(topic: Option<&str>) -> Result<String, String> {
    match topic {
        None => Ok(overview()),
        Some(topic) => {
            let name = topic.trim_start_matches('.');
            if let Some(entry) = table::lookup(name) {
                return Ok(entry_help(entry));
            }
            SHELL_COMMANDS
                .iter()
                .find(|(usage, _)| usage[1..].split(' ').next() == Some(name))
                .map(|(usage, help)| format!("{usage}\n    {help}\n"))
                .ok_or_else(|| format!("no help for `{topic}`: .help lists the commands"))
        }
    }
}

fn overview() -> String {
    let mut text =
        String::from("Commands (any other NAME key=value... is sent as a QMP command):\n");
    for entry in table::table() {
        let mut usage = entry.usage();
        if !entry.aliases.is_empty() {
            usage.push_str(&format!(" (also {})", entry.aliases.join(", ")));
        }
        text.push_str(&format!("  {usage:<36} {}\n", entry.help));
    }
    text.push_str("  hmp TEXT                             send TEXT to the human monitor\n");
    text.push_str("  {\"execute\": ...}                     send a raw QMP message\n");
    text.push_str("Shell commands:\n");
    for (usage, help) in SHELL_COMMANDS {
        text.push_str(&format!("  {usage:<36} {help}\n"));
    }
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
    for arg in &entry.args {
        let optional = if arg.optional { ", optional" } else { "" };
        text.push_str(&format!(
            "    {}: {}{optional}\n",
            arg.name,
            arg.kind.describe()
        ));
    }
    text
}
