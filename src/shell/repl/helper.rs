//! The line editor's helper: Tab completion, greyed hints of the arguments
//! still missing, and highlighting of the typed line. All of it reads the
//! line as the grammar does (`line::parse_partial`: words with their
//! spans, and the word under the cursor, an open quote or JSON value too),
//! names commands by binding's rule (`bind::meaning`), and reads the
//! command table and the live schema; the logic is plain functions of the
//! line, tested without a terminal.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use colored::Color;
use rustyline::completion::Completer;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use super::live::{self, Fetcher, Item, Kind};
use crate::language::bind::{self, Meaning, dot::COMMANDS};
use crate::language::hmp::HmpCommands;
use crate::language::line::{self, Arg, Cursor, CursorValue, Form, Invocation, Partial};
use crate::language::schema::Schema;
use crate::language::table::{self, ArgSpec, ArgType, Entry};
use crate::language::version::{Span, Version};
use crate::ui::render::{self, Palette};
use crate::visible;

/// What completion knows: the table (always), the schema (when QEMU
/// offered one), HMP's commands, and what the VM has right now.
#[derive(Clone, Default)]
pub struct Knowledge {
    pub schema: Option<Arc<Schema>>,
    /// Command names a peer without a schema told us (the guest agent).
    pub commands: Vec<String>,
    /// HMP's commands, which a line may name without `hmp`.
    pub hmp: Option<Arc<HmpCommands>>,
    /// Asks the VM for ids, paths and types (the REPL on QEMU only).
    pub live: Option<Fetcher>,
    /// The QEMU's version, when known: what it lacks is not offered.
    pub qemu: Option<Version>,
    /// `-H`: every line but JSON and `.` commands is HMP text.
    pub every_line_hmp: bool,
}

impl Knowledge {
    /// Words that can start a line: on the guest agent, which lists its
    /// commands itself, not the table's QEMU commands nor `hmp`.
    fn first_words(&self) -> Vec<String> {
        let mut words: Vec<String> = Vec::new();
        if self.commands.is_empty() {
            let table = table::table().iter().filter(|e| self.has(e.span)).flat_map(|e| e.names());
            words.extend(table.map(|n| n.split(' ').next().unwrap_or(n).to_string()));
            words.push("hmp".into());
        }
        words.extend(self.dot_words());
        words.extend(self.qmp_names());
        words.extend(self.hmp_names());
        words
    }

    fn dot_words(&self) -> impl Iterator<Item = String> {
        COMMANDS.iter().map(|c| format!(".{}", c.name))
    }

    fn hmp_names(&self) -> impl Iterator<Item = String> + '_ {
        self.hmp.iter().flat_map(|h| h.names().map(String::from))
    }

    /// What binding is told of the QEMU: names resolve as they will bind.
    fn context(&self) -> bind::Context<'_> {
        bind::Context {
            schema: self.schema.as_deref(),
            hmp_commands: self.hmp.as_deref(),
            qemu: self.qemu,
            ..bind::Context::default()
        }
    }

    /// What the line's command stands for, as binding reads it; a table
    /// command the QEMU lacks is not offered, so it stands for QMP's.
    fn meaning(&self, inv: &Invocation) -> Meaning {
        match bind::meaning(inv, &self.context()) {
            Meaning::Table(entry) if !self.has(entry.span) => Meaning::Qmp,
            meaning => meaning,
        }
    }

    /// The arguments HMP's `help` shows for a command only HMP has.
    fn hmp_usage(&self, inv: &Invocation) -> Option<&str> {
        if !matches!(self.meaning(inv), Meaning::Hmp) {
            return None;
        }
        let usage = self.hmp.as_ref()?.usage(&inv.name)?;
        Some(usage.arguments.as_str())
    }

    fn qmp_names(&self) -> Vec<String> {
        let from_schema = self.schema.iter().flat_map(|s| s.command_names().map(String::from));
        from_schema.chain(self.commands.iter().cloned()).collect()
    }

    /// The table entry the line's command is, if any (see [`Self::meaning`]).
    fn entry(&self, inv: &Invocation) -> Option<&'static Entry> {
        match self.meaning(inv) {
            Meaning::Table(entry) => Some(entry),
            Meaning::Qmp | Meaning::Hmp => None,
        }
    }

    /// Whether the QEMU has what `span` says some versions lack (yes, when
    /// its version is not known).
    fn has(&self, span: Span) -> bool {
        self.qemu.is_none_or(|version| span.contains(version))
    }

    /// Arguments of the command on the line: (name, type, optional). Before
    /// any argument, a table name that is also a QMP command offers both
    /// forms' names.
    fn arguments(&self, inv: &Invocation) -> Vec<(String, String, bool)> {
        let qmp = self.schema.as_ref().map(|schema| schema.arguments(&inv.name)).unwrap_or_default();
        match self.entry(inv) {
            Some(entry) => {
                let table = entry
                    .args
                    .iter()
                    .filter(|a| self.has(a.span))
                    .map(|a| (a.name.to_string(), a.kind.describe().to_string(), a.optional || a.flag.is_some()));
                let both = inv.args.is_empty();
                table.chain(qmp.into_iter().filter(|_| both)).collect()
            }
            None => qmp,
        }
    }

    /// The QMP command a line runs (a table command's, or the name typed)
    /// and the QMP argument `key` fills.
    fn qmp_argument<'k>(&self, inv: &'k Invocation, key: &'k str) -> (&'k str, &'k str) {
        match self.entry(inv) {
            Some(entry) => {
                let target = entry.args.iter().find(|a| a.name == key).map_or(key, |a| a.target());
                (entry.qmp.unwrap_or(entry.name), target)
            }
            None => (&inv.name, key),
        }
    }

    /// What the VM has now for argument `key`, given `typed` so far.
    fn live_values(&self, inv: &Invocation, key: &str, typed: &str) -> Vec<String> {
        let Some(live) = &self.live else { return Vec::new() };
        let (command, argument) = self.qmp_argument(inv, key);
        let Some(kind) = live::kind_of(command, argument) else { return Vec::new() };
        names(live.items(kind, typed, self.qom_path(inv).as_deref()))
    }

    /// The QOM path a line names (`path=` or a table command's path
    /// argument), whose properties `property` takes.
    fn qom_path(&self, inv: &Invocation) -> Option<String> {
        if let Some(path) = named(inv).find_map(|(key, value)| (key == "path").then_some(value)) {
            return Some(path.to_string());
        }
        let entry = self.entry(inv)?;
        let at = entry.args.iter().filter(|a| a.flag.is_none()).position(|a| a.target() == "path")?;
        positional_words(inv).nth(at).and_then(|a| a.value.text()).map(str::to_string)
    }

    /// Properties of the device or object type a line names
    /// (`device_add driver=e1000`, `object-add qom-type=iothread`).
    fn type_properties(&self, inv: &Invocation, live: &Fetcher) -> Vec<Item> {
        let named = named(inv).filter_map(|(key, value)| Some((live::kind_of(&inv.name, &key)?, value)));
        let mut found = named.filter(|(kind, _)| matches!(kind, Kind::DeviceType | Kind::ObjectType));
        found.next().map(|(kind, ty)| live.properties(kind, ty)).unwrap_or_default()
    }

    /// Candidates from the VM for a positional word, when the argument in
    /// that place takes a value only the VM knows.
    fn positional(&self, inv: &Invocation, word: &str) -> Option<Vec<String>> {
        let live = self.live.as_ref()?;
        let Some(entry) = self.entry(inv) else {
            // A command only HMP has: its usage names the arguments.
            let usage = self.hmp_usage(inv)?;
            let arguments: Vec<&str> = usage
                .split_whitespace()
                .map(|t| t.trim_matches(|c| "[]<>".contains(c)))
                .filter(|t| !t.is_empty() && !t.starts_with('-'))
                .collect();
            let kind = live::kind_of(&inv.name, arguments.get(inv.args.len())?)?;
            return Some(names(live.items(kind, word, None)));
        };
        let spec = positional_left(entry, inv).next()?;
        let kind = live::kind_of(entry.qmp.unwrap_or(entry.name), spec.target())?;
        if spec.kind != ArgType::Opts {
            return Some(names(live.items(kind, word, self.qom_path(inv).as_deref())));
        }
        // `device_add e1000,` continues with the type's properties.
        Some(match word.rfind(',') {
            None => names(live.items(kind, word, None)),
            Some(at) => {
                let ty = word.split(',').next().unwrap_or_default();
                let (head, item) = word.split_at(at + 1);
                if item.contains('=') {
                    return Some(Vec::new());
                }
                live.properties(kind, ty).into_iter().map(|p| format!("{head}{}=", p.name)).collect()
            }
        })
    }

    /// The hint for the argument being typed: its name, its type, and
    /// whether it is needed.
    fn hint_under_cursor(&self, inv: &Invocation, cursor: &Cursor, hmp_text: bool) -> Option<String> {
        let (name, ty, optional) = match &cursor.key {
            Some(key) if !hmp_text => self.arguments(inv).into_iter().find(|(n, _, _)| n == key).or_else(|| {
                let live = self.live.as_ref()?.known_only();
                let property = self.type_properties(inv, &live).into_iter().find(|p| &p.name == key)?;
                Some((property.name, property.detail, true))
            })?,
            _ => {
                let spec = positional_left(self.entry(inv)?, inv).next()?;
                (spec.name.to_string(), spec.kind.describe().to_string(), spec.optional)
            }
        };
        let needed = if optional { "optional" } else { "required" };
        Some(format!("  ({name}: {}, {needed})", shorten(ty, 48)))
    }

    /// The arguments still missing after the line's last word, with their
    /// types; in HMP text, positional ones only.
    fn missing(&self, inv: &Invocation, hmp_text: bool) -> Vec<String> {
        if let Some(entry) = self.entry(inv) {
            let shown = |a: &ArgSpec| {
                let shown = format!("{}:{}", a.name, a.kind.describe());
                if a.optional { format!("[{shown}]") } else { shown }
            };
            return positional_left(entry, inv).map(shown).collect();
        }
        if let Some(usage) = self.hmp_usage(inv).filter(|_| inv.args.is_empty()) {
            return vec![usage.to_string()];
        }
        if hmp_text {
            return Vec::new();
        }
        let given: Vec<String> = named(inv).map(|(key, _)| key).collect();
        let mut arguments = self.arguments(inv);
        arguments.retain(|(name, _, _)| !given.contains(name));
        arguments.sort_by_key(|(_, _, optional)| *optional);
        let shown = |(name, ty, optional)| if optional { format!("[{name}={ty}]") } else { format!("{name}={ty}") };
        arguments.into_iter().map(shown).collect()
    }

    /// Values the argument `key` of the line's command can take.
    fn values(&self, inv: &Invocation, key: &str) -> Vec<String> {
        if let Some(entry) = self.entry(inv) {
            let Some(spec) = entry.args.iter().find(|a| a.name == key) else { return Vec::new() };
            if spec.kind == ArgType::Bool {
                return vec!["on".into(), "off".into()];
            }
            return match (&self.schema, &entry.qmp) {
                (Some(schema), Some(qmp)) => schema.argument_values(qmp, spec.target()),
                _ => Vec::new(),
            };
        }
        self.schema.as_ref().map(|schema| schema.argument_values(&inv.name, key)).unwrap_or_default()
    }

    /// Candidates for the word under the cursor of a command line: a
    /// value after `key=`, else argument names and positional values.
    fn command_words(&self, inv: &Invocation, cursor: &Cursor, typed: &str) -> Vec<String> {
        if let Some(key) = &cursor.key {
            let mut values = self.values(inv, key);
            values.extend(self.live_values(inv, key, typed));
            return values;
        }
        let given: Vec<String> = named(inv).map(|(key, _)| key).collect();
        let from_type = self.live.iter().flat_map(|live| self.type_properties(inv, live)).map(|p| p.name);
        let mut names: Vec<String> = self
            .arguments(inv)
            .into_iter()
            .map(|(name, _, _)| name)
            .chain(from_type)
            .filter(|name| !given.contains(name))
            .map(|name| format!("{name}="))
            .collect();
        names.dedup();
        // A positional value or an argument's name: `qom-list pa` is
        // `path=`, `qom-list /ma` a path. A quoted word is a value.
        if matches!(cursor.value, CursorValue::Quoted { .. }) {
            names.clear();
        }
        names.extend(self.positional(inv, typed).unwrap_or_default());
        names
    }
}

/// Tab completion: where the replaced text starts, and the candidates.
pub fn complete(line: &str, pos: usize, knowledge: &Knowledge) -> (usize, Vec<String>) {
    let partial = typed_line(line, pos, knowledge);
    let cursor = &partial.cursor;
    // Inside a JSON value there is nothing to offer.
    let Some(typed) = cursor.text() else { return (pos, Vec::new()) };
    let in_value = |candidates| (cursor.value_start, candidates);
    let (start, candidates): (usize, Vec<String>) = match (partial.form, &partial.invocation) {
        (Form::Command | Form::Dot, None) => (cursor.start, knowledge.first_words()),
        (Form::Hmp, None) => {
            let dots = knowledge.dot_words().filter(|_| partial.head.is_none());
            (cursor.start, knowledge.hmp_names().chain(dots).collect())
        }
        (Form::Command | Form::Hmp, Some(inv)) if inv.name == "info" && inv.args.is_empty() => {
            let topics = table::table().iter().filter(|e| knowledge.has(e.span));
            in_value(topics.filter_map(|e| e.name.strip_prefix("info ")).map(String::from).collect())
        }
        (Form::Dot, Some(inv)) if inv.args.is_empty() && cursor.key.is_none() => {
            in_value(dot_values(inv, typed, knowledge))
        }
        (Form::Command, Some(inv)) => {
            let start = if cursor.key.is_some() { cursor.value_start } else { cursor.start };
            (start, knowledge.command_words(inv, cursor, typed))
        }
        (Form::Hmp, Some(inv)) => in_value(knowledge.positional(inv, typed).unwrap_or_default()),
        _ => (pos, Vec::new()),
    };
    let mut matches: Vec<String> = candidates.into_iter().filter(|c| c.starts_with(typed)).collect();
    matches.sort();
    matches.dedup();
    // A value goes where the typed one was, written as it was begun.
    if partial.invocation.is_some() {
        matches = matches.into_iter().map(|m| written(m, &cursor.value)).collect();
    }
    (start, matches)
}

/// What a dot command's first argument can be.
fn dot_values(inv: &Invocation, typed: &str, knowledge: &Knowledge) -> Vec<String> {
    match inv.name.as_str() {
        "help" => {
            let mut names: Vec<String> = table::table().iter().map(|e| e.name.to_string()).collect();
            names.extend(knowledge.dot_words());
            names
        }
        "schema" => knowledge.qmp_names(),
        "events" | "pretty" => vec!["on".into(), "off".into()],
        "cpu" => knowledge.live.as_ref().map(|live| names(live.items(Kind::Cpu, typed, None))).unwrap_or_default(),
        "wait" => knowledge.schema.iter().flat_map(|s| s.event_names().map(String::from)).collect(),
        _ => Vec::new(),
    }
}

/// A value as it goes where the cursor's value is: inside the quote the
/// person opened (left open if it was), or quoted when a bare word could
/// not hold it (a space would end it).
fn written(value: String, begun: &CursorValue) -> String {
    let json = |value: &str| serde_json::to_string(value).unwrap_or_else(|_| value.to_string());
    match begun {
        CursorValue::Quoted { quote: '\'', closed, .. } if !value.contains('\'') => {
            format!("'{value}{}", if *closed { "'" } else { "" })
        }
        CursorValue::Quoted { closed, .. } => {
            let quoted = json(&value);
            if *closed { quoted } else { quoted.strip_suffix('"').unwrap_or(&quoted).to_string() }
        }
        _ if value.contains(char::is_whitespace) || value.starts_with(['"', '\'']) => json(&value),
        _ => value,
    }
}

/// The line up to `pos` as the grammar reads it, with a QemuOpts word
/// given as `key=value` read as binding reads it (`bind::opts_in_one_word`).
fn typed_line(line: &str, pos: usize, knowledge: &Knowledge) -> Partial {
    let mut partial = line::parse_partial(line, pos, knowledge.every_line_hmp);
    if let Some(inv) = &partial.invocation
        && partial.form == Form::Command
    {
        partial.invocation = Some(bind::opts_in_one_word(inv, line).unwrap_or_else(|| inv.clone()));
    }
    partial
}

/// A greyed hint after the cursor: the arguments still missing, with their
/// types, once a command and a space are typed; the argument under the
/// cursor while one is typed.
pub fn hint(line: &str, pos: usize, knowledge: &Knowledge) -> Option<String> {
    if pos != line.len() {
        return None;
    }
    let partial = typed_line(line, pos, knowledge);
    let inv = partial.invocation.as_ref()?;
    let hmp_text = match partial.form {
        Form::Command => false,
        Form::Hmp => true,
        _ => return None,
    };
    if !partial.cursor.is_empty() {
        return knowledge.hint_under_cursor(inv, &partial.cursor, hmp_text);
    }
    let text = knowledge.missing(inv, hmp_text).join(" ");
    (!text.is_empty()).then(|| shorten(text, 72))
}

/// The `key=value` arguments of a line, keys joined at their dots.
fn named(inv: &Invocation) -> impl Iterator<Item = (String, &str)> {
    inv.args.iter().filter_map(|a| Some((a.key.as_ref()?.join("."), a.value.text()?)))
}

/// The positional words of a line that are not flags.
fn positional_words(inv: &Invocation) -> impl Iterator<Item = &Arg> {
    inv.args.iter().filter(|a| a.key.is_none() && !a.value.text().is_some_and(|t| t.starts_with('-')))
}

/// A table command's positional arguments still to come after the line's
/// arguments: not given by name, nor filled by the positional words so far.
fn positional_left<'i>(entry: &'static Entry, inv: &'i Invocation) -> impl Iterator<Item = &'static ArgSpec> + 'i {
    // `info X`'s topic is part of the name.
    let topic = usize::from(entry.name.starts_with("info "));
    let filled = positional_words(inv).count().saturating_sub(topic);
    let given = move |name: &str| named(inv).any(|(key, _)| key == name);
    entry.args.iter().filter(move |a| a.flag.is_none() && !given(a.name)).skip(filled)
}

fn names(items: Vec<Item>) -> Vec<String> {
    items.into_iter().map(|item| item.name).collect()
}

fn shorten(mut text: String, width: usize) -> String {
    if text.chars().count() > width {
        let cut = text.char_indices().nth(width - 1).map_or(text.len(), |(i, _)| i);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The typed line with its command in bold and keys and values in the
/// palette's colours (as in replies), where the grammar reads them; only
/// colour codes are added, so the width does not change.
pub fn highlight(line: &str, palette: &Palette) -> String {
    let partial = line::parse_partial(line, line.len(), false);
    if matches!(partial.form, Form::Json | Form::Comment | Form::Refused) {
        return line.to_string();
    }
    let mut painted: Vec<(Range<usize>, Paint)> = partial.head.iter().map(|head| (head.clone(), Paint::Bold)).collect();
    let pairs = partial.invocation.iter().flat_map(|inv| &inv.args).filter_map(|arg| {
        let key = arg.key.as_ref()?;
        let key_end = arg.offset + key.iter().map(|part| part.len() + 1).sum::<usize>() - 1;
        Some((arg.offset..key_end, key_end + 1..arg.end))
    });
    let cursor = &partial.cursor;
    let last = cursor.key.as_ref().map(|_| (cursor.start..cursor.value_start - 1, cursor.value_start..line.len()));
    for (key, value) in pairs.chain(last) {
        painted.push((key, Paint::Colour(palette.key)));
        painted.push((value, Paint::Colour(palette.string)));
    }
    let mut out = String::with_capacity(line.len() + 32);
    let mut at = 0;
    for (span, paint) in painted {
        let (Some(before), Some(text)) = (line.get(at..span.start), line.get(span.clone())) else { continue };
        out.push_str(before);
        match paint {
            Paint::Bold => out.push_str(&render::bold(text)),
            Paint::Colour(colour) => out.push_str(&render::painted(text, colour)),
        }
        at = span.end;
    }
    out.push_str(line.get(at..).unwrap_or_default());
    out
}

/// How a span of the line is drawn.
#[derive(Clone, Copy)]
enum Paint {
    Bold,
    Colour(Option<Color>),
}

/// The rustyline helper: one struct, reading [`Knowledge`].
pub struct EditorHelper {
    pub knowledge: Knowledge,
    /// The colours of the terminal's output; plain means no colour here
    /// either.
    pub palette: Palette,
}

impl Completer for EditorHelper {
    type Candidate = String;

    /// A candidate with a control character (a name QEMU made up) is
    /// left out: listed, the terminal would act on it; inserted, the line
    /// would not mean what it shows.
    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        let (start, mut candidates) = complete(line, pos, &self.knowledge);
        candidates.retain(|c| !c.chars().any(visible::is_control));
        Ok((start, candidates))
    }
}

impl Hinter for EditorHelper {
    type Hint = String;

    /// Made visible: argument names and types come from QEMU's schema.
    fn hint(&self, line: &str, pos: usize, _: &Context<'_>) -> Option<String> {
        hint(line, pos, &self.knowledge).map(|hint| visible::line(&hint))
    }
}

impl Highlighter for EditorHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.palette.is_plain() { Cow::Borrowed(line) } else { Cow::Owned(highlight(line, &self.palette)) }
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.palette.is_plain() { Cow::Borrowed(hint) } else { Cow::Owned(render::dimmed(hint)) }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        !self.palette.is_plain()
    }
}

/// Continuation is the session's business (the same joiner as scripts, so
/// prompts can say what is open): every line is complete for the editor.
impl Validator for EditorHelper {}

impl Helper for EditorHelper {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn knowledge() -> Knowledge {
        let schema = Schema::from_return(json!([
            {"name": "qom-list", "meta-type": "command", "arg-type": "1", "ret-type": "any"},
            {"name": "blockdev-add", "meta-type": "command", "arg-type": "2", "ret-type": "any"},
            {"name": "query-status", "meta-type": "command", "ret-type": "any"},
            {"name": "block_resize", "meta-type": "command", "arg-type": "4", "ret-type": "any"},
            {"name": "4", "meta-type": "object", "members": [
                {"name": "device", "type": "str", "default": null},
                {"name": "node-name", "type": "str", "default": null},
                {"name": "size", "type": "int"}]},
            {"name": "int", "meta-type": "builtin", "json-type": "int"},
            {"name": "qom-set", "meta-type": "command", "arg-type": "5", "ret-type": "any"},
            {"name": "5", "meta-type": "object", "members": [
                {"name": "path", "type": "str"}, {"name": "property", "type": "str"}, {"name": "value", "type": "any"}]},
            {"name": "any", "meta-type": "builtin", "json-type": "value"},
            {"name": "device_add", "meta-type": "command", "arg-type": "6", "ret-type": "any"},
            {"name": "6", "meta-type": "object", "members": [
                {"name": "driver", "type": "str"}, {"name": "id", "type": "str", "default": null}]},
            {"name": "1", "meta-type": "object", "members": [{"name": "path", "type": "str"}]},
            {"name": "2", "meta-type": "object", "members": [
                {"name": "driver", "type": "3"},
                {"name": "node-name", "type": "str", "default": null},
                {"name": "read-only", "type": "bool", "default": null}]},
            {"name": "3", "meta-type": "enum", "values": ["file", "null-co", "qcow2"]},
            {"name": "str", "meta-type": "builtin", "json-type": "string"},
            {"name": "bool", "meta-type": "builtin", "json-type": "boolean"},
            {"name": "STOP", "meta-type": "event", "arg-type": "0"},
            {"name": "SHUTDOWN", "meta-type": "event", "arg-type": "0"}
        ]))
        .unwrap();
        let hmp = HmpCommands::parse(
            "memsave addr size file -- save to disk virtual memory dump\nstop|s  -- stop emulation\n",
        );
        Knowledge { schema: Some(Arc::new(schema)), hmp: Some(Arc::new(hmp)), ..Knowledge::default() }
    }

    #[test]
    fn what_the_qemu_lacks_is_not_offered() {
        // QEMU 9.0 dropped HMP's singlestep for one-insn-per-tb (8.1).
        let old = Knowledge { qemu: Some(Version::new(7, 2, 22)), ..knowledge() };
        let new = Knowledge { qemu: Some(Version::new(10, 0, 2)), ..knowledge() };
        let offered = |k: &Knowledge, line: &str| complete(line, line.len(), k).1;
        assert_eq!(offered(&old, "singl"), ["singlestep"]);
        assert!(offered(&new, "singl").is_empty());
        assert_eq!(offered(&new, "one-insn"), ["one-insn-per-tb"]);
        assert!(offered(&old, "one-insn").is_empty());
        // Block migration's arguments went in 9.1.
        assert!(offered(&old, "migrate bl").contains(&"blk=".to_string()), "{:?}", offered(&old, "migrate bl"));
        assert!(offered(&new, "migrate bl").is_empty(), "{:?}", offered(&new, "migrate bl"));
    }

    fn completions(line: &str) -> (usize, Vec<String>) {
        complete(line, line.len(), &knowledge())
    }

    #[test]
    fn command_names_from_the_table_the_schema_and_the_shell() {
        assert_eq!(completions("qom-l"), (0, vec!["qom-list".to_string()]));
        assert_eq!(completions("query-"), (0, vec!["query-status".to_string()]));
        assert_eq!(completions("system_p"), (0, vec!["system_powerdown".to_string()]));
        assert_eq!(completions(".wa"), (0, vec![".wait".to_string(), ".watch".to_string()]));
        assert_eq!(completions("info mig").1, ["migrate", "migrate_capabilities", "migrate_parameters"]);
        assert_eq!(completions(".wait S"), (6, vec!["SHUTDOWN".to_string(), "STOP".to_string()]));
    }

    #[test]
    fn argument_names_and_enum_values_from_the_schema() {
        assert_eq!(completions("qom-list pa"), (9, vec!["path=".to_string()]));
        assert_eq!(completions("blockdev-add dr"), (13, vec!["driver=".to_string()]));
        assert_eq!(completions("blockdev-add driver=q"), (20, vec!["qcow2".to_string()]));
        assert_eq!(completions("blockdev-add driver=file read-only=").1, ["false", "true"]);
        // Arguments already given are not offered again.
        assert_eq!(completions("blockdev-add driver=file ").1, ["node-name=", "read-only="]);
        assert_eq!(completions("set_link n0 up=").1, ["off", "on"]);
    }

    #[test]
    fn wide_whitespace_before_the_word_is_skipped_whole() {
        // A no-break space is two bytes: the word starts after both.
        assert_eq!(completions("qom-list\u{a0}pa"), (10, vec!["path=".to_string()]));
        assert_eq!(completions("qom-list\u{3000}pa").0, 11);
    }

    #[test]
    fn hints_show_missing_arguments_with_types() {
        let k = knowledge();
        // Table commands take positional words; QMP commands take key=value.
        assert_eq!(hint("qom-list ", 9, &k).as_deref(), Some("path:string"));
        assert_eq!(
            hint("blockdev-add ", 13, &k).as_deref(),
            Some("driver=file|null-co|qcow2 [node-name=string] [read-only=bool]")
        );
        assert_eq!(hint("blockdev-add driver=file ", 25, &k).as_deref(), Some("[node-name=string] [read-only=bool]"));
        assert_eq!(hint("balloon ", 8, &k).as_deref(), Some("value:size in MB"));
        assert_eq!(hint("set_link n0 ", 12, &k).as_deref(), Some("up:on|off"));
        assert_eq!(hint("stop ", 5, &k), None);
        assert_eq!(hint("qom-list", 8, &k), None, "no hint before the space");
    }

    #[test]
    fn the_guest_agent_completes_its_own_commands_not_qemus() {
        let agent = Knowledge { commands: vec!["guest-ping".into()], ..Knowledge::default() };
        assert_eq!(complete("guest-p", 7, &agent), (0, vec!["guest-ping".to_string()]));
        assert_eq!(complete("pow", 3, &agent), (0, Vec::new()));
        assert_eq!(complete(".wai", 4, &agent), (0, vec![".wait".to_string()]));
    }

    #[test]
    fn commands_only_hmp_has_complete_and_hint_hmp_usage() {
        let k = knowledge();
        assert_eq!(completions("mems"), (0, vec!["memsave".to_string()]));
        assert_eq!(hint("memsave ", 8, &k).as_deref(), Some("addr size file"));
        assert_eq!(hint("stop ", 5, &k), None, "a table command keeps the table's hint");
    }

    #[test]
    fn a_table_name_in_qmp_form_completes_and_hints_as_qmp() {
        // `block_resize node-name=...` is the QMP command: its names and
        // types (bytes), not the table's positional ones (MB).
        let k = knowledge();
        assert_eq!(completions("block_resize n").1, ["node-name="]);
        assert_eq!(hint("block_resize ", 13, &k).as_deref(), Some("device:string size:size in MB"));
        assert_eq!(hint("block_resize node-name=d0 ", 26, &k).as_deref(), Some("size=int [device=string]"));
    }

    #[test]
    fn a_quoted_value_with_spaces_is_one_word() {
        // Split at spaces, `d` was a new argument's name: `driver=`.
        assert!(completions("blockdev-add node-name=\"my d").1.is_empty());
        // A value completes inside the quote begun, left as it was.
        assert_eq!(completions("blockdev-add driver=\"q"), (20, vec!["\"qcow2".to_string()]));
        assert_eq!(completions("blockdev-add driver='n'"), (20, vec!["'null-co'".to_string()]));
        let line = r#"qom-set path=/machine property=append value="a b"#;
        assert_eq!(hint(line, line.len(), &knowledge()).as_deref(), Some("  (value: any, required)"));
    }

    #[test]
    fn inside_a_json_value_nothing_is_offered_and_the_hint_names_its_argument() {
        // Split at spaces, `no` was a new argument's name: `node-name=`.
        assert!(completions(r#"blockdev-add driver=file x={"driver": "file", no"#).1.is_empty());
        let line = r#"qom-set path=/machine property=p value={"a": "b c"#;
        assert_eq!(hint(line, line.len(), &knowledge()).as_deref(), Some("  (value: any, required)"));
    }

    #[test]
    fn a_qemuopts_word_fills_its_place() {
        // `e1000,id=n1` is the device, not an argument named `e1000,id`;
        // so is `driver=e1000,id=n1`, as binding reads it.
        assert_eq!(hint("device_add e1000,id=n1 ", 23, &knowledge()), None);
        assert_eq!(hint("device_add driver=e1000,id=n1 ", 30, &knowledge()), None);
    }

    #[test]
    fn hmp_text_completes_hmp_names_and_hints_hmp_usage() {
        let k = knowledge();
        assert_eq!(completions("hmp mems"), (4, vec!["memsave".to_string()]));
        assert_eq!(hint("hmp memsave ", 12, &k).as_deref(), Some("addr size file"));
        // With -H every line but JSON and `.` commands is HMP text: no
        // `key=` names, no QMP commands.
        let every = Knowledge { every_line_hmp: true, ..knowledge() };
        assert_eq!(complete("mems", 4, &every), (0, vec!["memsave".to_string()]));
        assert!(complete("qom-list pa", 11, &every).1.is_empty());
        assert!(complete("query-st", 8, &every).1.is_empty());
        assert_eq!(complete(".wai", 4, &every).1, [".wait"]);
        assert_eq!(hint("memsave ", 8, &every).as_deref(), Some("addr size file"));
    }

    #[test]
    fn highlighting_colours_what_the_grammar_reads() {
        let palette = Palette::colored();
        let (key, string) = (palette.key, palette.string);
        let coloured = highlight(r#"qom-set path=/m value="a b""#, &palette);
        assert!(coloured.contains(&render::painted("\"a b\"", string)), "{coloured:?}");
        assert!(coloured.contains(&render::painted("value", key)), "{coloured:?}");
        // A QemuOpts word is no `key=value`.
        let coloured = highlight("device_add e1000,id=n1", &palette);
        assert!(!coloured.contains(&render::painted("e1000,id", key)), "{coloured:?}");
    }

    #[test]
    fn highlighting_only_adds_colour() {
        let line = "blockdev-add  driver=file x";
        let coloured = highlight(line, &Palette::colored());
        assert!(coloured.contains("\x1b[1m") && coloured.contains("\x1b[34m"), "{coloured:?}");
        let plain: String = coloured
            .split('\x1b')
            .enumerate()
            .map(|(i, part)| if i == 0 { part } else { part.split_once('m').map_or("", |(_, rest)| rest) })
            .collect();
        assert_eq!(plain, line);
    }
}
