//! Binding: a parsed [`Line`] checked against the command table and turned
//! into what to do: a QMP message to send, a shell command to run here, or
//! nothing. Values get their JSON types here, not in the grammar.

use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::line::{Arg, Invocation, Line, ParseError, Value};
use crate::table::{self, ArgSpec, ArgType, Entry};

/// What a line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Blank or comment.
    Nothing,
    /// Send this QMP message (without `id`).
    Send(Request),
    /// Run a shell command here.
    Shell(Shell),
}

/// A QMP message and how to show its reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub message: Map<String, Json>,
    /// The reply's `return` is HMP text, to print as text.
    pub text_reply: bool,
}

impl Request {
    fn qmp(command: &str, arguments: Map<String, Json>) -> Request {
        let mut message = Map::new();
        message.insert("execute".into(), Json::String(command.into()));
        if !arguments.is_empty() {
            message.insert("arguments".into(), Json::Object(arguments));
        }
        Request {
            message,
            text_reply: false,
        }
    }

    fn hmp(command_line: &str) -> Request {
        let mut arguments = Map::new();
        arguments.insert("command-line".into(), Json::String(command_line.into()));
        Request {
            text_reply: true,
            ..Request::qmp("human-monitor-command", arguments)
        }
    }

    /// The QMP command name (`execute` or `exec-oob`).
    pub fn command(&self) -> &str {
        self.message
            .get("execute")
            .or_else(|| self.message.get("exec-oob"))
            .and_then(Json::as_str)
            .unwrap_or_default()
    }
}

/// Commands qmpsh handles itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Shell {
    Help(Option<String>),
    Exit,
    Events(bool),
    Pretty(bool),
    Sleep(Duration),
    /// Block until an event named `event` whose data has these fields.
    Wait {
        event: String,
        timeout: Option<Duration>,
        fields: Map<String, Json>,
    },
}

/// How a line is read besides its text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `-H`: every command line is HMP text.
    pub hmp: bool,
}

type Result<T> = std::result::Result<T, ParseError>;

fn error<T>(offset: usize, message: impl Into<String>) -> Result<T> {
    Err(ParseError {
        offset,
        message: message.into(),
    })
}

/// Binds a parsed line; `text` is the logical line it came from.
pub fn bind(line: &Line, text: &str, options: Options) -> Result<Action> {
    match line {
        Line::Blank => Ok(Action::Nothing),
        Line::Json(message) => bind_json(message),
        Line::Shell(inv) => bind_shell(inv).map(Action::Shell),
        Line::Hmp(command_line) if command_line.is_empty() => {
            error(text.len(), "an HMP command after `hmp`")
        }
        Line::Hmp(command_line) => Ok(Action::Send(Request::hmp(command_line))),
        Line::Command(_) if options.hmp => Ok(Action::Send(Request::hmp(text.trim()))),
        Line::Transaction(actions) => bind_transaction(actions),
        Line::Command(inv) => bind_command(inv, text).map(Action::Send),
    }
}

fn bind_json(message: &Map<String, Json>) -> Result<Action> {
    let command = message.get("execute").or_else(|| message.get("exec-oob"));
    match command {
        Some(Json::String(_)) => Ok(Action::Send(Request {
            message: message.clone(),
            text_reply: false,
        })),
        Some(_) => error(0, "a command name (a string) as the value of \"execute\""),
        None => error(0, "a QMP message with \"execute\" or \"exec-oob\""),
    }
}

fn bind_transaction(actions: &[Invocation]) -> Result<Action> {
    let mut list = Vec::with_capacity(actions.len());
    for action in actions {
        let mut entry = Map::new();
        entry.insert("type".into(), Json::String(action.name.clone()));
        entry.insert("data".into(), Json::Object(qmp_arguments(action)?));
        list.push(Json::Object(entry));
    }
    let mut arguments = Map::new();
    arguments.insert("actions".into(), Json::Array(list));
    Ok(Action::Send(Request::qmp("transaction", arguments)))
}

fn bind_command(inv: &Invocation, text: &str) -> Result<Request> {
    if inv.name == "info" {
        return bind_info(inv, text);
    }
    match table::lookup(&inv.name) {
        Some(entry) => bind_entry(entry, inv, &inv.args, text),
        None => Ok(Request::qmp(&inv.name, qmp_arguments(inv)?)),
    }
}

/// `info X`: a table entry when there is one, else HMP's own `info X`.
fn bind_info(inv: &Invocation, text: &str) -> Result<Request> {
    let Some(first) = inv.args.first() else {
        return error(
            text.len(),
            "what to show after `info`, such as `info status`",
        );
    };
    let topic = match (&first.key, &first.value) {
        (None, Value::Bare(topic)) => topic,
        _ => return error(first.offset, "an info topic such as `status`"),
    };
    match table::lookup(&format!("info {topic}")) {
        Some(entry) => bind_entry(entry, inv, &inv.args[1..], text),
        None => Ok(Request::hmp(text.trim())),
    }
}

/// A table command: positional words in HMP order, flags, or `name=value`.
fn bind_entry(entry: &Entry, inv: &Invocation, args: &[Arg], text: &str) -> Result<Request> {
    let Some(command) = &entry.qmp else {
        return Ok(Request::hmp(text.trim()));
    };
    let mut given: Vec<Option<(&Arg, Json)>> = vec![None; entry.args.len()];
    let mut positional = entry
        .args
        .iter()
        .enumerate()
        .filter(|(_, spec)| spec.flag.is_none());
    for arg in args {
        let slot = match (&arg.key, &arg.value) {
            (Some(key), _) => {
                let name = key.join(".");
                match entry.args.iter().position(|spec| spec.name == name) {
                    Some(slot) => slot,
                    None => return error(arg.offset, unknown_argument(entry, &name)),
                }
            }
            (None, Value::Bare(word)) if word.starts_with('-') && word.len() > 1 => match entry
                .args
                .iter()
                .position(|spec| spec.flag.as_deref() == Some(word))
            {
                Some(slot) => slot,
                None => return error(arg.offset, format!("a flag of `{}`", entry.usage())),
            },
            (None, _) => match positional.next() {
                Some((slot, _)) => slot,
                None => {
                    return error(
                        arg.offset,
                        format!("no more arguments: usage is `{}`", entry.usage()),
                    );
                }
            },
        };
        if given[slot].is_some() {
            return error(arg.offset, format!("`{}` only once", entry.args[slot].name));
        }
        let spec = &entry.args[slot];
        let value = if arg.key.is_none() && spec.flag.is_some() {
            Json::Bool(true)
        } else {
            typed(spec, &arg.value).or_else(|message| error(arg.offset, message))?
        };
        given[slot] = Some((arg, value));
    }

    let mut arguments = entry.fixed.clone();
    for (spec, value) in entry.args.iter().zip(given) {
        match value {
            Some((arg, value)) => {
                insert(&mut arguments, &dotted(spec.target()), value, arg.offset)?
            }
            None if spec.optional || spec.flag.is_some() => {}
            None => {
                let at = inv.offset + text[inv.offset..].trim_end().len();
                return error(
                    at,
                    format!(
                        "argument `{}` ({}): usage is `{}`",
                        spec.name,
                        spec.kind.describe(),
                        entry.usage()
                    ),
                );
            }
        }
    }
    Ok(Request::qmp(command, arguments))
}

fn unknown_argument(entry: &Entry, name: &str) -> String {
    let known: Vec<&str> = entry.args.iter().map(|a| a.name.as_str()).collect();
    if known.is_empty() {
        format!("no arguments: `{}` takes none, not `{name}`", entry.name)
    } else {
        format!("one of {} instead of `{name}`", known.join(", "))
    }
}

fn dotted(key: &str) -> Vec<String> {
    key.split('.').map(str::to_string).collect()
}

/// A typed table argument, or what was expected instead.
fn typed(spec: &ArgSpec, value: &Value) -> std::result::Result<Json, String> {
    let text = match value {
        Value::Json(json) => return Ok(json.clone()),
        Value::Quoted(s) | Value::Bare(s) => s.as_str(),
    };
    let expected = |what: &str| format!("{what} for `{}`, not `{text}`", spec.name);
    match spec.kind {
        ArgType::Str => Ok(Json::String(text.to_string())),
        ArgType::Int => parse_int(text)
            .map(Json::from)
            .ok_or_else(|| expected("an integer")),
        ArgType::Bool => match text {
            "on" | "true" | "yes" => Ok(Json::Bool(true)),
            "off" | "false" | "no" => Ok(Json::Bool(false)),
            _ => Err(expected("on or off")),
        },
        ArgType::Size => parse_size(text, 1)
            .map(Json::from)
            .ok_or_else(|| expected("a size such as 512M")),
        ArgType::SizeMb => parse_size(text, 1 << 20)
            .map(Json::from)
            .ok_or_else(|| expected("a size in MB, or with a suffix such as 1G")),
        ArgType::Keys => Ok(Json::Array(
            text.split('-')
                .map(|key| {
                    let mut k = Map::new();
                    k.insert("type".into(), Json::String("qcode".into()));
                    k.insert("data".into(), Json::String(key.to_string()));
                    Json::Object(k)
                })
                .collect(),
        )),
        ArgType::Opts => Err(expected("a value (opts are bound by their command)")),
    }
}

/// An integer: decimal (maybe negative) or `0x` hex.
fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().ok()?
        }
        None => return None,
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// A size with an optional K/M/G/T suffix (powers of 1024); a bare number is
/// multiplied by `unit`.
fn parse_size(text: &str, unit: u64) -> Option<u64> {
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
    let n: u64 = number.parse().ok()?;
    n.checked_mul(multiplier)
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
            _ => {
                if let Some(n) = parse_int(s) {
                    Json::from(n)
                } else if let Some(n) = s.parse::<u64>().ok().filter(|_| !s.starts_with('+')) {
                    Json::from(n)
                } else if let Some(f) = parse_float(s) {
                    Json::from(f)
                } else {
                    Json::String(s.clone())
                }
            }
        },
    }
}

/// A finite float written the way JSON writes numbers (no `inf`, `nan`).
fn parse_float(s: &str) -> Option<f64> {
    let looks_numeric = s
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        && s.bytes().any(|b| b.is_ascii_digit());
    s.parse::<f64>()
        .ok()
        .filter(|f| looks_numeric && f.is_finite())
}

/// qmp-shell arguments for a QMP command: `key=value` pairs only.
fn qmp_arguments(inv: &Invocation) -> Result<Map<String, Json>> {
    let mut arguments = Map::new();
    for arg in &inv.args {
        let Some(key) = &arg.key else {
            return error(
                arg.offset,
                format!(
                    "key=value (`{}` is not a table command, so every argument is named)",
                    inv.name
                ),
            );
        };
        insert(&mut arguments, key, untyped(&arg.value), arg.offset)?;
    }
    Ok(arguments)
}

/// Inserts `value` at the dotted `key`, refusing a key given twice or used
/// both as a value and as a parent.
fn insert(map: &mut Map<String, Json>, key: &[String], value: Json, offset: usize) -> Result<()> {
    let (last, parents) = key
        .split_last()
        .expect("the grammar gives keys at least one part");
    let mut node = map;
    for (depth, part) in parents.iter().enumerate() {
        let child = node
            .entry(part.clone())
            .or_insert_with(|| Json::Object(Map::new()));
        node = match child {
            Json::Object(inner) => inner,
            _ => {
                let path = key[..=depth].join(".");
                return error(
                    offset,
                    format!("`{path}` to be either a value or a parent of keys, not both"),
                );
            }
        };
    }
    match node.get(last) {
        Some(Json::Object(_)) if !value.is_object() => error(
            offset,
            format!(
                "`{}` to be either a value or a parent of keys, not both",
                key.join(".")
            ),
        ),
        Some(_) => error(offset, format!("`{}` only once", key.join("."))),
        None => {
            node.insert(last.clone(), value);
            Ok(())
        }
    }
}

/// A shell command's arguments.
fn bind_shell(inv: &Invocation) -> Result<Shell> {
    let words: Vec<&Arg> = inv.args.iter().collect();
    let end = inv.offset + inv.name.len();
    let on_off = |what: &str| -> Result<bool> {
        match words.as_slice() {
            [arg] if arg.key.is_none() && arg.value.text() == Some("on") => Ok(true),
            [arg] if arg.key.is_none() && arg.value.text() == Some("off") => Ok(false),
            [arg, ..] => error(arg.offset, format!("`on` or `off` after .{what}")),
            [] => error(end, format!("`on` or `off` after .{what}")),
        }
    };
    let no_args = |shell: Shell| -> Result<Shell> {
        match words.first() {
            Some(arg) => error(arg.offset, format!("nothing after .{}", inv.name)),
            None => Ok(shell),
        }
    };
    match inv.name.as_str() {
        "help" => match words.as_slice() {
            [] => Ok(Shell::Help(None)),
            args => {
                let topic: Vec<&str> = args.iter().filter_map(|a| a.value.text()).collect();
                Ok(Shell::Help(Some(topic.join(" "))))
            }
        },
        "exit" => no_args(Shell::Exit),
        "events" => on_off("events").map(Shell::Events),
        "pretty" => on_off("pretty").map(Shell::Pretty),
        "sleep" => match words.as_slice() {
            [arg] if arg.key.is_none() => seconds(arg).map(Shell::Sleep),
            [arg, ..] => error(arg.offset, "a number of seconds after .sleep"),
            [] => error(end, "a number of seconds after .sleep"),
        },
        "wait" => bind_wait(inv, end),
        other => error(
            inv.offset,
            format!(
                "a shell command (.help, .exit, .events, .pretty, .sleep, .wait), not `.{other}`"
            ),
        ),
    }
}

fn bind_wait(inv: &Invocation, end: usize) -> Result<Shell> {
    let mut args = inv.args.iter();
    let event = match args.next() {
        Some(Arg {
            key: None,
            value: Value::Bare(name),
            ..
        }) => name.to_ascii_uppercase(),
        Some(arg) => return error(arg.offset, "an event name after .wait, such as STOP"),
        None => return error(end, "an event name after .wait, such as STOP"),
    };
    let mut timeout = None;
    let mut fields = Map::new();
    for arg in args {
        match arg.key.as_deref() {
            Some([key]) if key == "timeout" => timeout = Some(seconds(arg)?),
            Some(key) => insert(&mut fields, key, untyped(&arg.value), arg.offset)?,
            None => return error(arg.offset, "KEY=VALUE to match in the event's data"),
        }
    }
    Ok(Shell::Wait {
        event,
        timeout,
        fields,
    })
}

fn seconds(arg: &Arg) -> Result<Duration> {
    arg.value
        .text()
        .and_then(|t| t.parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map_or_else(|| error(arg.offset, "a number of seconds"), Ok)
}
