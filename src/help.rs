//! `.help`: the command table and the shell commands, as text.

use crate::bind::shell::COMMANDS;
use crate::table::{self, Entry};

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

fn overview() -> String {
    let mut text = String::from("Commands (any other NAME key=value... is sent as a QMP command):\n");
    for entry in table::table() {
        let mut usage = entry.usage();
        if !entry.aliases.is_empty() {
            usage.push_str(&format!(" (also {})", entry.aliases.join(", ")));
        }
        text.push_str(&format!("  {usage:<40} {}\n", entry.help));
    }
    text.push_str(&format!("  {:<40} {}\n", "hmp TEXT", "send TEXT to the human monitor"));
    text.push_str(&format!("  {:<40} {}\n", "{\"execute\": ...}", "send a raw QMP message"));
    text.push_str("Shell commands:\n");
    for command in COMMANDS {
        text.push_str(&format!("  {:<40} {}\n", command.usage(), command.help));
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
    for arg in entry.args {
        let optional = if arg.optional { ", optional" } else { "" };
        text.push_str(&format!("    {}: {}{optional}\n", arg.name, arg.kind.describe()));
    }
    text.push_str(&format!("    example: {}\n", entry.example));
    text
}
