//! Binding: a parsed [`Line`] checked against the command table (and the
//! live schema, when loaded) and turned into what to do: a QMP message to
//! send, a dot command to run here, or nothing. Values get their JSON
//! types here, not in the grammar.

pub mod dot;
mod human;
mod property;
mod translate;

pub use property::{PropertyTypes, owner as properties_owner};
pub use translate::{Offline, bind_located, parse_located, translate};

use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::language::arguments::{Leaf, Node, Tree};
use crate::language::hmp::{self, HmpCommands};
use crate::language::line::expected as error;
use crate::language::line::{Invocation, Line, ParseError, Value};
use crate::language::schema::{self, Schema};
use crate::language::version::Version;

/// What a line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Blank or comment.
    Nothing,
    /// Send this QMP message (without `id`).
    Send(Request),
    /// Run a dot command (`.wait`, `.help`...) here.
    Dot(DotCommand),
}

/// A QMP message and how to show its reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub message: Map<String, Json>,
    /// The reply's `return` is HMP text, to print as text.
    pub text_reply: bool,
    /// A human `info` command: on a terminal its reply may show as a table
    /// (`ui::tables`).
    pub table: bool,
}

impl Request {
    fn qmp(command: &str, arguments: Map<String, Json>) -> Request {
        let mut message = Map::new();
        message.insert("execute".into(), Json::String(command.into()));
        if !arguments.is_empty() {
            message.insert("arguments".into(), Json::Object(arguments));
        }
        Request { message, text_reply: false, table: false }
    }

    /// `command_line` run by HMP, on CPU `cpu` when given.
    pub fn hmp(command_line: &str, cpu: Option<i64>) -> Request {
        let mut arguments = Map::new();
        arguments.insert("command-line".into(), Json::String(command_line.into()));
        if let Some(cpu) = cpu {
            arguments.insert("cpu-index".into(), Json::from(cpu));
        }
        Request { text_reply: true, ..Request::qmp("human-monitor-command", arguments) }
    }

    /// The HMP command line it runs (`hmp ...`, an HMP-only table command,
    /// or `human-monitor-command` itself), whose reply is text that may be
    /// HMP's report of a failure.
    pub fn hmp_line(&self) -> Option<&str> {
        if self.command() != "human-monitor-command" {
            return None;
        }
        self.message.get("arguments")?.get("command-line")?.as_str()
    }

    /// The QMP command name (`execute` or `exec-oob`).
    pub fn command(&self) -> &str {
        self.message.get("execute").or_else(|| self.message.get("exec-oob")).and_then(Json::as_str).unwrap_or_default()
    }

    /// Whether it asks QEMU to quit, in QMP (`quit`) or HMP (`quit`, `q`),
    /// so that QEMU closing the connection afterwards is success.
    pub fn quits(&self) -> bool {
        match self.command() {
            "quit" => true,
            "human-monitor-command" => {
                matches!(self.hmp_line().and_then(|l| l.split_whitespace().next()), Some("quit" | "q"))
            }
            _ => false,
        }
    }
}

/// Work QEMU does in the background, as `.wait` and `.watch` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Background {
    /// The job with this id (`job-id`; a block job's is also its `device`).
    Job(String),
    /// The outgoing migration.
    Migration,
    /// A detached `dump-guest-memory`.
    Dump,
}

/// The dot commands, which qmpsh handles itself (`.help`, `.wait`...).
#[derive(Debug, Clone, PartialEq)]
pub enum DotCommand {
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
    /// Block until the work ends (a mirror: until it is ready).
    WaitWork {
        work: Background,
        timeout: Option<Duration>,
    },
    /// Follow the work, or with none named the one thing QEMU is doing,
    /// with a progress line on a terminal.
    Watch {
        work: Option<Background>,
        timeout: Option<Duration>,
    },
    /// Print a command's arguments from the live schema.
    Schema(String),
    /// The CPU that HMP commands address from now on.
    Cpu(i64),
    /// Power button, wait up to `timeout`, then `quit` (or, with `kill`,
    /// SIGKILL at once), then SIGKILL.
    Shutdown {
        timeout: Duration,
        kill: bool,
    },
    /// Run this program with these arguments in the guest, through the
    /// agent the session is connected to.
    Exec(Vec<String>),
    /// Print a guest file's bytes (the agent shell).
    Cat(String),
}

/// What binding knows besides the line: options and session state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'s> {
    /// `-H`: every command line is HMP text.
    pub hmp: bool,
    /// `.cpu N`: the `cpu-index` for HMP commands.
    pub cpu: Option<i64>,
    /// The live schema, once fetched.
    pub schema: Option<&'s Schema>,
    /// HMP's command list, when the line needs it (`needs_hmp_commands`).
    pub hmp_commands: Option<&'s HmpCommands>,
    /// The version of the QEMU the line goes to, when known: a table
    /// command or argument that version lacks is refused.
    pub qemu: Option<Version>,
    /// The types of the properties the line sets (`properties_owner`).
    pub properties: PropertyTypes<'s>,
}

type Result<T> = std::result::Result<T, ParseError>;

/// Whether binding `line` wants the schema: a QMP command with arguments
/// to type, a table command given `key=value` arguments (which may make it
/// the QMP command of that name) or QemuOpts values, a transaction, or
/// `.schema`. Everything else binds without it, so a script that needs no
/// schema never fetches one. Binding is given the schema exactly when this
/// says so, connected or not, so `--dry-run` prints what a connected run
/// sends.
pub fn needs_schema(line: &Line) -> bool {
    match line {
        Line::Dot(inv) => inv.name == "schema",
        Line::Transaction(_) => true,
        Line::Command(inv) if inv.name == "info" => false,
        Line::Command(inv) => match crate::language::table::lookup(command_word(&inv.name)) {
            Some(entry) => {
                let passes_through = |key: &Vec<String>| !entry.args.iter().any(|spec| spec.name == key.join("."));
                named_only(inv)
                    || (entry.has_opts() && !inv.args.is_empty())
                    || inv.args.iter().filter_map(|a| a.key.as_ref()).any(passes_through)
            }
            // Alone, a name HMP has is HMP's only if QMP lacks it.
            None => !inv.args.is_empty() || hmp::recorded_has(command_word(&inv.name)),
        },
        _ => false,
    }
}

/// Whether binding `line` wants the QEMU's version: a table command that
/// some version lacks, or one of whose arguments some version lacks, in
/// its human form, as HMP text, or (with `key=value` arguments) as the QMP
/// command it becomes. Binding is given the version exactly then, as it is
/// the schema.
pub fn needs_version(line: &Line) -> bool {
    match line {
        Line::Command(inv) => {
            let word = command_word(&inv.name);
            let topic = inv.args.first().and_then(|a| a.value.text());
            crate::language::table::is_versioned(word, topic)
                || (named_only(inv) && crate::language::table::has_versioned_arguments(word))
        }
        Line::Hmp(command_line) => {
            let mut words = command_line.split_whitespace();
            let word = words.next().map(command_word).unwrap_or_default();
            crate::language::table::is_versioned(word, words.next())
        }
        _ => false,
    }
}

/// Whether binding `line` wants HMP's command list: a name that is not a
/// table command, given a positional argument (which only HMP's form can
/// have), or alone when HMP may have it (`help`, `gdbserver`). Anything
/// else binds without it, and `query-status` asks QEMU for nothing more.
pub fn needs_hmp_commands(line: &Line) -> bool {
    match line {
        Line::Command(inv) => {
            // The cheap tests first: most lines stop at them.
            let word = command_word(&inv.name);
            let hmp_form = inv.args.iter().any(|a| a.key.is_none()) || (inv.args.is_empty() && hmp::recorded_has(word));
            hmp_form && word != "info" && crate::language::table::lookup(word).is_none()
        }
        _ => false,
    }
}

/// Whether a line for a name outside the table is HMP's: HMP has the
/// command, and the line is in HMP's form (a positional argument) or names
/// no arguments for a command QMP does not have.
fn is_hmp_only(inv: &Invocation, word: &str, context: &Context) -> bool {
    let hmp_has = context.hmp_commands.is_some_and(|commands| commands.usage(word).is_some());
    let positional = inv.args.iter().any(|a| a.key.is_none());
    hmp_has && (positional || (inv.args.is_empty() && !is_qmp_command(word, context)))
}

/// Whether every argument is `key=value` (and there is one): qmp-shell's
/// form, which means the QMP command even where the table has a human one.
fn named_only(inv: &Invocation) -> bool {
    !inv.args.is_empty() && inv.args.iter().all(|a| a.key.is_some())
}

/// Whether QEMU has a QMP command `name`: by the schema binding was given,
/// else (a monitor that offers none) by the recorded one.
fn is_qmp_command(name: &str, context: &Context) -> bool {
    match context.schema {
        Some(schema) => schema.has_command(name),
        None => crate::language::version::newest().schema().has_command(name),
    }
}

/// The command word before an HMP `/format` suffix (`x/4xw` → `x`).
fn command_word(name: &str) -> &str {
    name.split_once('/').map_or(name, |(word, _)| word)
}

/// Binds a parsed line; `text` is the logical line it came from.
pub fn bind(line: &Line, text: &str, context: &Context) -> Result<Action> {
    match line {
        Line::Blank => Ok(Action::Nothing),
        Line::Json(message) => bind_json(message),
        Line::Dot(inv) => dot::bind(inv).map(Action::Dot),
        Line::Hmp(command_line) if command_line.is_empty() => error(text.len(), "an HMP command after `hmp`"),
        Line::Hmp(command_line) => {
            if let Some(version) = context.qemu {
                // The text ends the line: `hmp TEXT`, or all of it with -H.
                let at = text.trim_end().len().saturating_sub(command_line.len());
                human::refuse_missing_in_hmp(command_line, at, version)?;
            }
            Ok(Action::Send(Request::hmp(command_line, context.cpu)))
        }
        Line::Transaction(actions) => bind_transaction(actions, text, context),
        Line::Command(inv) => bind_command(inv, text, context).map(Action::Send),
    }
}

fn bind_json(message: &Map<String, Json>) -> Result<Action> {
    let command = message.get("execute").or_else(|| message.get("exec-oob"));
    match command {
        Some(Json::String(_)) => {
            Ok(Action::Send(Request { message: message.clone(), text_reply: false, table: false }))
        }
        Some(_) => error(0, "a command name (a string) as the value of \"execute\""),
        None => error(0, "a QMP message with \"execute\" or \"exec-oob\""),
    }
}

/// qmp-shell's `transaction(` block: each action's arguments typed by the
/// schema, like a command's.
fn bind_transaction(actions: &[Invocation], text: &str, context: &Context) -> Result<Action> {
    let end = text.trim_end().len();
    let mut list = Vec::with_capacity(actions.len());
    for action in actions {
        let arguments = named_arguments(action)?;
        let entry = match context.schema {
            Some(schema) => schema.type_transaction_action(&action.name, action.offset, arguments, end)?,
            None => {
                let mut entry = Map::new();
                entry.insert("type".into(), Json::String(action.name.clone()));
                entry.insert("data".into(), Json::Object(arguments.into_untyped()));
                Json::Object(entry)
            }
        };
        list.push(entry);
    }
    let mut arguments = Map::new();
    arguments.insert("actions".into(), Json::Array(list));
    Ok(Action::Send(Request::qmp("transaction", arguments)))
}

/// What a command line's name stands for, by binding's rule; the REPL's
/// completion and hints name commands by it too.
#[derive(Debug, Clone, Copy)]
pub enum Meaning {
    /// A human command from the table.
    Table(&'static crate::language::table::Entry),
    /// A QMP command with qmp-shell arguments.
    Qmp,
    /// HMP text, sent as typed.
    Hmp,
}

/// What `inv` names: `info X` or a human command from the table; a table
/// name that is also a QMP command, given only `key=value` arguments that
/// QMP takes, is that QMP command (the table's HMP units, `balloon 512` in
/// MB, apply to its positional form alone); a name only HMP has, in HMP's
/// form, is HMP's; any other name is QMP's.
pub fn meaning(inv: &Invocation, context: &Context) -> Meaning {
    let word = command_word(&inv.name);
    let entry = match word {
        // HMP's richer forms (`info block -v disk0`): the table's takes no arguments.
        "info" => info_entry(inv).ok().flatten().filter(|entry| inv.args.len() <= 1 || !entry.args.is_empty()),
        // HMP's `change vnc password X` is not a medium: HMP has it whole.
        "change" if inv.args.first().is_some_and(|a| a.key.is_none() && a.value.text() == Some("vnc")) => {
            return Meaning::Hmp;
        }
        _ if named_only(inv) && is_qmp_command(word, context) && !human::reads_as_hmp(inv, word, context) => None,
        _ => crate::language::table::lookup(word),
    };
    match entry {
        Some(entry) => Meaning::Table(entry),
        None if word == "info" || is_hmp_only(inv, word, context) => Meaning::Hmp,
        None => Meaning::Qmp,
    }
}

/// A command line: `info X`, a human command from the table, a QMP
/// command, or HMP text, as [`meaning`] reads its name.
fn bind_command(inv: &Invocation, text: &str, context: &Context) -> Result<Request> {
    let word = command_word(&inv.name);
    if let Some(whole) = opts_in_one_word(inv, text) {
        return bind_command(&whole, text, context);
    }
    if word == "info" {
        info_entry(inv)?;
    }
    match meaning(inv, context) {
        Meaning::Table(entry) => human::bind(entry, inv, text, context),
        Meaning::Hmp => Ok(Request::hmp(text.trim(), context.cpu)),
        Meaning::Qmp if word != inv.name => error(inv.offset + word.len(), "no `/` after a QMP command name"),
        Meaning::Qmp => bind_qmp(inv, text, context),
    }
}

/// A QemuOpts string whose first item names its key (`device_add
/// driver=e1000,id=n1`, `netdev_add type=user,id=n1`): the line as HMP
/// reads it, with the whole word as the string. Written as one `key=value`,
/// it would be a driver named `e1000,id=n1`. Binding reads the line so
/// before anything else, and so does the REPL's completion.
pub fn opts_in_one_word(inv: &Invocation, text: &str) -> Option<Invocation> {
    let entry = crate::language::table::lookup(command_word(&inv.name)).filter(|entry| entry.has_opts())?;
    let [arg] = inv.args.as_slice() else { return None };
    let word = text.get(arg.offset..arg.end)?;
    (arg.key.is_some() && word.contains(',') && entry.qmp.is_some()).then(|| Invocation {
        args: vec![crate::language::line::Arg { key: None, value: Value::Bare(word.to_string()), ..arg.clone() }],
        ..inv.clone()
    })
}

/// `info X`: the table entry when there is one; `None` sends HMP's own.
fn info_entry(inv: &Invocation) -> Result<Option<&'static crate::language::table::Entry>> {
    match inv.args.first() {
        // `info` alone is HMP's list of what it can show.
        None => Ok(None),
        Some(arg) => match (&arg.key, &arg.value) {
            (None, Value::Bare(topic)) => Ok(crate::language::table::lookup(&format!("info {topic}"))),
            _ => error(arg.offset, "an info topic such as `status`"),
        },
    }
}

/// A QMP command with qmp-shell arguments, typed by the schema. A command
/// the schema does not know is sent as qmp-shell would send it, with or
/// without arguments: QEMU's CommandNotFound (and qmpsh's did-you-mean)
/// then says so, the same way for every unknown name.
fn bind_qmp(inv: &Invocation, text: &str, context: &Context) -> Result<Request> {
    if let Some(arg) = inv.args.iter().find(|a| a.key.is_none()) {
        return positional_error(inv, arg.offset, context);
    }
    let mut tree = named_arguments(inv)?;
    if let Some(version) = context.qemu {
        human::refuse_missing_named(inv, version)?;
    }
    type_properties(&inv.name, &mut tree, context)?;
    let arguments = match context.schema {
        Some(schema) if schema.has_command(&inv.name) => {
            schema.type_arguments(&inv.name, tree, text.trim_end().len())?
        }
        _ => tree.into_untyped(),
    };
    Ok(Request::qmp(&inv.name, arguments))
}

/// `key=value` values of properties, typed by the property's type:
/// `device_add`'s device properties, `qom-set`'s `value`.
fn type_properties(command: &str, tree: &mut Tree, context: &Context) -> Result<()> {
    let text_of = |tree: &Tree, name: &str| match tree.get(name) {
        Some(Node::Leaf { leaf: Leaf::Raw(value), .. }) => value.text().map(str::to_string),
        _ => None,
    };
    let property = match command {
        "qom-set" => text_of(tree, "property"),
        _ => None,
    };
    for (name, node) in &mut tree.members {
        let Node::Leaf { leaf: leaf @ Leaf::Raw(_), offset } = node else { continue };
        let Leaf::Raw(value) = &*leaf else { continue };
        let typed = match (command, name.as_str(), &property) {
            (command, name, _) if property::sets_property(command, name) => {
                context.properties.read_named(name, value, *offset)?
            }
            ("qom-set", "value", Some(property)) => context.properties.read_named(property, value, *offset)?,
            _ => None,
        };
        if let Some(json) = typed {
            *leaf = Leaf::Typed(json);
        }
    }
    Ok(())
}

/// A positional argument for a command that takes none: a QMP command in
/// HMP's form, or a name that neither QMP nor HMP has, for which the
/// nearest name anything knows is offered (`inof` → `info`).
fn positional_error<T>(inv: &Invocation, offset: usize, context: &Context) -> Result<T> {
    let name = &inv.name;
    // `clé=1` is a word, not a key: say so rather than blame the command.
    let bad_key = inv.args.iter().find_map(|arg| {
        let (key, _) = arg.value.text().filter(|_| arg.key.is_none())?.split_once('=')?;
        (!key.is_empty() && !key.chars().all(crate::language::line::is_key_char)).then_some((arg.offset, key))
    });
    if let Some((at, key)) = bad_key {
        return error(at, format!("a key of ASCII letters, digits, `-`, `_` and `.` before `=`, not `{key}`"));
    }
    if let Some(commands) = context.hmp_commands
        && !is_qmp_command(name, context)
    {
        let table =
            crate::language::table::table().iter().flat_map(|e| e.names()).map(|n| n.split(' ').next().unwrap_or(n));
        let hint = schema::suggest(name, table.chain(commands.names()))
            .map(|near| format!(" (did you mean `{near}`?)"))
            .unwrap_or_default();
        return error(inv.offset, format!("a command QMP or HMP has, not `{name}`{hint}"));
    }
    error(offset, format!("key=value (`{name}` is not a table command, so every argument is named)"))
}

/// qmp-shell arguments: `key=value` pairs only.
fn named_arguments(inv: &Invocation) -> Result<Tree> {
    let mut tree = Tree::default();
    for arg in &inv.args {
        let Some(key) = &arg.key else {
            return error(
                arg.offset,
                format!("key=value (`{}` is not a table command, so every argument is named)", inv.name),
            );
        };
        tree.insert(key, Leaf::Raw(arg.value.clone()), arg.offset)?;
    }
    Ok(tree)
}
