//! Binding of `.NAME` dot commands.

use std::time::Duration;

use serde_json::Map;

use super::{Background, DotCommand, Result};
use crate::language::arguments::{Leaf, Tree, parse_int};
use crate::language::line::expected as error;
use crate::language::line::{Arg, Invocation, Value};

/// One dot command, as `.help` shows it.
pub struct DotUsage {
    pub name: &'static str,
    pub args: &'static str,
    pub help: &'static str,
}

/// Every dot command: `.help` lists these, and an unknown name is
/// compared with them.
pub const COMMANDS: &[DotUsage] = &[
    DotUsage { name: "help", args: "[CMD]", help: "list commands, or show one" },
    DotUsage { name: "exit", args: "", help: "leave qmpsh (Ctrl-D too)" },
    DotUsage { name: "events", args: "on|off", help: "show or hide asynchronous events" },
    DotUsage { name: "pretty", args: "on|off", help: "pretty-print JSON replies" },
    DotUsage { name: "sleep", args: "SECS", help: "pause, printing events that arrive" },
    DotUsage {
        name: "wait",
        args: "EVENT [timeout=SECS] [KEY=VALUE...] | job=ID | migration | dump",
        help: "block until a matching event arrives, or a job, the migration or a dump ends",
    },
    DotUsage {
        name: "watch",
        args: "[ID | migration | dump] [timeout=SECS]",
        help: "follow a job or the migration to its end, with a progress line (Ctrl-C stops watching)",
    },
    DotUsage { name: "schema", args: "CMD", help: "a QMP command's arguments and types, from QEMU" },
    DotUsage { name: "cpu", args: "N", help: "address HMP commands to CPU N" },
    DotUsage {
        name: "shutdown",
        args: "[timeout=SECS] [kill]",
        help: "guest agent or power button, wait (30 s), then quit, then SIGKILL; `kill` kills at once",
    },
    DotUsage {
        name: "exec",
        args: "CMD [ARG...]",
        help: "run a program in the guest (agent shell): its output when it ends, then its exit code",
    },
    DotUsage { name: "cat", args: "PATH", help: "print a guest file's bytes (with --agent)" },
];

impl DotUsage {
    /// `.wait EVENT [timeout=SECS] ...`
    pub fn usage(&self) -> String {
        format!(".{} {}", self.name, self.args).trim_end().to_string()
    }
}

pub fn bind(inv: &Invocation) -> Result<DotCommand> {
    let end = inv.offset + inv.name.len();
    let args = inv.args.as_slice();
    match inv.name.as_str() {
        "help" => {
            let topic: Vec<&str> = args.iter().filter_map(|a| a.value.text()).collect();
            Ok(DotCommand::Help((!topic.is_empty()).then(|| topic.join(" "))))
        }
        "exit" => match args.first() {
            Some(arg) => error(arg.offset, "nothing after .exit"),
            None => Ok(DotCommand::Exit),
        },
        "events" => on_off(args, end, "events").map(DotCommand::Events),
        "pretty" => on_off(args, end, "pretty").map(DotCommand::Pretty),
        "sleep" => match args {
            [arg] if arg.key.is_none() => seconds(arg).map(DotCommand::Sleep),
            [arg, ..] => error(arg.offset, "a number of seconds after .sleep"),
            [] => error(end, "a number of seconds after .sleep"),
        },
        "wait" => wait(args, end),
        "watch" => watch(args),
        "schema" => match args {
            [Arg { key: None, value: Value::Bare(name), .. }] => Ok(DotCommand::Schema(name.clone())),
            [arg, ..] => error(arg.offset, "a command name after .schema"),
            [] => error(end, "a command name after .schema"),
        },
        "cpu" => match args {
            [arg @ Arg { key: None, value: Value::Bare(n), .. }] => match parse_int(n) {
                Some(index) if index >= 0 => Ok(DotCommand::Cpu(index)),
                _ => error(arg.offset, "a CPU index (0, 1, ...)"),
            },
            [arg, ..] => error(arg.offset, "a CPU index after .cpu"),
            [] => error(end, "a CPU index after .cpu"),
        },
        "shutdown" => shutdown(args),
        "exec" => exec(args, end),
        "cat" => match args {
            [Arg { key: None, value, .. }] if value.text().is_some_and(|t| !t.is_empty()) => {
                Ok(DotCommand::Cat(value.text().unwrap_or_default().to_string()))
            }
            [arg, ..] => error(arg.offset, "a guest path after .cat"),
            [] => error(end, "a guest path after .cat"),
        },
        other => {
            let hint = crate::language::schema::suggest(other, COMMANDS.iter().map(|c| c.name))
                .map(|near| format!(" (did you mean .{near}?)"))
                .unwrap_or_default();
            error(inv.offset, format!("a dot command (see .help), not `.{other}`{hint}"))
        }
    }
}

fn on_off(args: &[Arg], end: usize, what: &str) -> Result<bool> {
    match args {
        [arg] if arg.key.is_none() && arg.value.text() == Some("on") => Ok(true),
        [arg] if arg.key.is_none() && arg.value.text() == Some("off") => Ok(false),
        [arg, ..] => error(arg.offset, format!("`on` or `off` after .{what}")),
        [] => error(end, format!("`on` or `off` after .{what}")),
    }
}

/// `.wait EVENT [timeout=SECS] [KEY=VALUE...]`: KEY=VALUE pairs match
/// fields of the event's data, typed as qmp-shell types them.
/// `.wait job=ID`, `.wait migration` and `.wait dump` (lower case;
/// `MIGRATION` is the event), each with `[timeout=SECS]`, wait for the
/// work itself.
fn wait(args: &[Arg], end: usize) -> Result<DotCommand> {
    if let Some(work) = args.first().map(named_work).transpose()?.flatten() {
        let mut timeout = None;
        for arg in args.get(1..).unwrap_or_default() {
            match arg.key.as_deref() {
                Some([key]) if key == "timeout" => timeout = Some(seconds(arg)?),
                _ => return error(arg.offset, "only timeout=SECS after .wait job=ID or .wait migration"),
            }
        }
        return Ok(DotCommand::WaitWork { work, timeout });
    }
    let (event, rest) = match args {
        [Arg { key: None, value: Value::Bare(name), .. }, rest @ ..] => (name.to_ascii_uppercase(), rest),
        [arg, ..] => return error(arg.offset, "an event name after .wait, such as STOP"),
        [] => return error(end, "an event name after .wait, such as STOP"),
    };
    let mut timeout = None;
    let mut fields = Tree::default();
    for arg in rest {
        match arg.key.as_deref() {
            Some([key]) if key == "timeout" => timeout = Some(seconds(arg)?),
            Some(key) => fields.insert(key, Leaf::Raw(arg.value.clone()), arg.offset)?,
            None => return error(arg.offset, "KEY=VALUE to match in the event's data"),
        }
    }
    let fields: Map<_, _> = fields.into_untyped();
    Ok(DotCommand::Wait { event, timeout, fields })
}

/// The work an argument of `.wait` or `.watch` names, if it names one:
/// `job=ID`, `migration` or `dump`.
fn named_work(arg: &Arg) -> Result<Option<Background>> {
    match (arg.key.as_deref(), &arg.value) {
        (None, Value::Bare(word)) if word == "migration" => Ok(Some(Background::Migration)),
        (None, Value::Bare(word)) if word == "dump" => Ok(Some(Background::Dump)),
        (Some([key]), value) if key == "job" => match value.text().filter(|id| !id.is_empty()) {
            Some(id) => Ok(Some(Background::Job(id.to_string()))),
            None => error(arg.offset, "a job id after job="),
        },
        _ => Ok(None),
    }
}

/// `.watch [ID | job=ID | migration | dump] [timeout=SECS]`.
fn watch(args: &[Arg]) -> Result<DotCommand> {
    let (mut work, mut timeout) = (None, None);
    for arg in args {
        if matches!(arg.key.as_deref(), Some([key]) if key == "timeout") {
            timeout = Some(seconds(arg)?);
            continue;
        }
        // Once: a name, or a bare job id.
        let named = if work.is_none() { named_work(arg)? } else { None };
        let bare_id = || arg.value.text().filter(|id| arg.key.is_none() && !id.is_empty() && work.is_none());
        match named.or_else(|| bare_id().map(|id| Background::Job(id.to_string()))) {
            Some(named) => work = Some(named),
            None => {
                return error(arg.offset, "a job id, `migration` or `dump` (once), then timeout=SECS, after .watch");
            }
        }
    }
    Ok(DotCommand::Watch { work, timeout })
}

/// `.shutdown [timeout=SECS] [kill]`.
fn shutdown(args: &[Arg]) -> Result<DotCommand> {
    let mut timeout = crate::language::units::STOP_TIMEOUT;
    let mut kill = false;
    for arg in args {
        match (arg.key.as_deref(), &arg.value) {
            (Some([key]), _) if key == "timeout" => timeout = seconds(arg)?,
            (None, Value::Bare(word)) if word == "kill" => kill = true,
            _ => return error(arg.offset, "timeout=SECS or kill after .shutdown"),
        }
    }
    Ok(DotCommand::Shutdown { timeout, kill })
}

/// `.exec CMD [ARG...]`: each word as typed, quotes removed; `K=V`
/// stays one word, and JSON is passed as its text.
fn exec(args: &[Arg], end: usize) -> Result<DotCommand> {
    if args.is_empty() {
        return error(end, "a program to run after .exec");
    }
    let word = |arg: &Arg| {
        let value = match &arg.value {
            Value::Quoted(text) | Value::Bare(text) => text.clone(),
            Value::Json(json) => json.to_string(),
        };
        match &arg.key {
            Some(key) => format!("{}={value}", key.join(".")),
            None => value,
        }
    };
    Ok(DotCommand::Exec(args.iter().map(word).collect()))
}

/// Seconds as the command line takes them (above zero, below 1e9), so a
/// deadline never overflows.
fn seconds(arg: &Arg) -> Result<Duration> {
    match arg.value.text().map(crate::language::units::parse_seconds) {
        Some(Ok(seconds)) => Ok(Duration::from_secs_f64(seconds)),
        _ => error(arg.offset, "a number of seconds above zero"),
    }
}
