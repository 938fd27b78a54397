//! The line editor's helper: Tab completion, greyed hints of the arguments
//! still missing, and highlighting of the typed line. All of it reads the
//! command table and the live schema; the logic is plain functions of the
//! line, tested without a terminal.

use std::borrow::Cow;
use std::sync::Arc;

use rustyline::completion::Completer;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use super::live::{self, Fetcher, Item, Kind};
use crate::bind::dot::COMMANDS;
use crate::hmp::HmpCommands;
use crate::render::{self, Palette};
use crate::schema::Schema;
use crate::table::{self, ArgSpec, ArgType, Entry};
use crate::version::{Span, Version};
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
        words.extend(COMMANDS.iter().map(|c| format!(".{}", c.name)));
        words.extend(self.qmp_names());
        words.extend(self.hmp.iter().flat_map(|h| h.names().map(String::from)));
        words
    }

    /// The arguments HMP's `help` shows for a command only HMP has.
    fn hmp_usage(&self, name: &str) -> Option<&str> {
        if self.is_qmp(name) || table::lookup(name).is_some() {
            return None;
        }
        let usage = self.hmp.as_ref()?.usage(name)?;
        Some(usage.arguments.as_str())
    }

    fn qmp_names(&self) -> Vec<String> {
        let from_schema = self.schema.iter().flat_map(|s| s.command_names().map(String::from));
        from_schema.chain(self.commands.iter().cloned()).collect()
    }

    /// The table entry a line's leading words name, if any. A table name
    /// that QEMU also knows as a QMP command, with only `key=value`
    /// arguments so far, is that QMP command (as binding reads it), so it
    /// has no entry here.
    fn entry(&self, words: &[&str]) -> Option<&'static Entry> {
        let entry = match words {
            ["info", topic, ..] => table::lookup(&format!("info {topic}")),
            [name, args @ ..] if !args.is_empty() && args.iter().all(|a| a.contains('=')) && self.is_qmp(name) => None,
            [name, ..] => table::lookup(name),
            [] => None,
        };
        entry.filter(|e| self.has(e.span))
    }

    /// Whether the QEMU has what `span` says some versions lack (yes, when
    /// its version is not known).
    fn has(&self, span: Span) -> bool {
        self.qemu.is_none_or(|version| span.contains(version))
    }

    fn is_qmp(&self, name: &str) -> bool {
        self.schema.as_ref().is_some_and(|schema| schema.has_command(name))
    }

    /// Arguments of the command on the line: (name, type, optional). Before
    /// any argument, a table name that is also a QMP command offers both
    /// forms' names.
    fn arguments(&self, words: &[&str]) -> Vec<(String, String, bool)> {
        let qmp = match (&self.schema, words.first()) {
            (Some(schema), Some(command)) => schema.arguments(command),
            _ => Vec::new(),
        };
        match self.entry(words) {
            Some(entry) => {
                let table = entry
                    .args
                    .iter()
                    .filter(|a| self.has(a.span))
                    .map(|a| (a.name.to_string(), a.kind.describe().to_string(), a.optional || a.flag.is_some()));
                let both = words.len() == 1;
                table.chain(qmp.into_iter().filter(|_| both)).collect()
            }
            None => qmp,
        }
    }

    /// The QMP command a line runs (a table command's, or the name typed)
    /// and the QMP argument `key` fills.
    fn qmp_argument<'k>(&self, words: &[&'k str], key: &'k str) -> Option<(&'k str, &'k str)> {
        match self.entry(words) {
            Some(entry) => {
                let target = entry.args.iter().find(|a| a.name == key).map_or(key, |a| a.target());
                Some((entry.qmp.unwrap_or(entry.name), target))
            }
            None => Some((*words.first()?, key)),
        }
    }

    /// What the VM has now for argument `key`, given `typed` so far.
    fn live_values(&self, words: &[&str], key: &str, typed: &str) -> Vec<String> {
        let (Some(live), Some((command, argument))) = (&self.live, self.qmp_argument(words, key)) else {
            return Vec::new();
        };
        let Some(kind) = live::kind_of(command, argument) else { return Vec::new() };
        names(live.items(kind, typed, self.qom_path(words).as_deref()))
    }

    /// The QOM path a line names (`path=` or a table command's path
    /// argument), whose properties `property` takes.
    fn qom_path(&self, words: &[&str]) -> Option<String> {
        if let Some(path) = words.iter().find_map(|w| w.strip_prefix("path=")) {
            return Some(path.to_string());
        }
        let entry = self.entry(words)?;
        let at = entry.args.iter().filter(|a| a.flag.is_none()).position(|a| a.target() == "path")?;
        words.iter().skip(1).filter(|w| !w.contains('=') && !w.starts_with('-')).nth(at).map(|w| w.to_string())
    }

    /// Properties of the device or object type a line names
    /// (`device_add driver=e1000`, `object-add qom-type=iothread`).
    fn type_properties(&self, words: &[&str], live: &Fetcher) -> Vec<Item> {
        let command = words.first().copied().unwrap_or_default();
        let typed = words.iter().skip(1).filter_map(|w| w.split_once('='));
        let named = typed.filter_map(|(key, value)| Some((live::kind_of(command, key)?, value)));
        let found = named.into_iter().find(|(kind, _)| matches!(kind, Kind::DeviceType | Kind::ObjectType));
        found.map(|(kind, ty)| live.properties(kind, ty)).unwrap_or_default()
    }

    /// Candidates from the VM for a positional word, when the argument in
    /// that place takes a value only the VM knows.
    fn positional(&self, words: &[&str], word: &str) -> Option<Vec<String>> {
        let live = self.live.as_ref()?;
        let first = *words.first()?;
        let Some(entry) = self.entry(words) else {
            // A command only HMP has: its usage names the arguments.
            let usage = self.hmp_usage(first)?;
            let arguments: Vec<&str> = usage
                .split_whitespace()
                .map(|t| t.trim_matches(|c| "[]<>".contains(c)))
                .filter(|t| !t.is_empty() && !t.starts_with('-'))
                .collect();
            let kind = live::kind_of(first, arguments.get(words.len() - 1)?)?;
            return Some(names(live.items(kind, word, None)));
        };
        let spec = positional_spec(entry, words)?;
        let kind = live::kind_of(entry.qmp.unwrap_or(entry.name), spec.target())?;
        if spec.kind != ArgType::Opts {
            return Some(names(live.items(kind, word, self.qom_path(words).as_deref())));
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

    /// The hint for the argument being typed: its type, and whether it is
    /// needed.
    fn hint_under_cursor(&self, line: &str) -> Option<String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (last, before) = words.split_last()?;
        let first = *before.first()?;
        if first.starts_with('.') || first.starts_with('{') || first == "hmp" {
            return None;
        }
        let (name, ty, optional) = match last.split_once('=') {
            Some((key, _)) => self.arguments(before).into_iter().find(|(n, _, _)| n == key).or_else(|| {
                let live = self.live.as_ref()?.known_only();
                let property = self.type_properties(before, &live).into_iter().find(|p| p.name == key)?;
                Some((property.name, property.detail, true))
            })?,
            None => {
                let spec = positional_spec(self.entry(before)?, before)?;
                (spec.name.to_string(), spec.kind.describe().to_string(), spec.optional)
            }
        };
        let needed = if optional { "optional" } else { "required" };
        Some(format!("  ({name}: {}, {needed})", shorten(ty, 48)))
    }

    /// Values the argument `key` of the line's command can take.
    fn values(&self, words: &[&str], key: &str) -> Vec<String> {
        if let Some(entry) = self.entry(words) {
            let Some(spec) = entry.args.iter().find(|a| a.name == key) else { return Vec::new() };
            if spec.kind == ArgType::Bool {
                return vec!["on".into(), "off".into()];
            }
            return match (&self.schema, &entry.qmp) {
                (Some(schema), Some(qmp)) => schema.argument_values(qmp, spec.target()),
                _ => Vec::new(),
            };
        }
        match (&self.schema, words.first()) {
            (Some(schema), Some(command)) => schema.argument_values(command, key),
            _ => Vec::new(),
        }
    }
}

/// Tab completion: where the replaced word starts, and the candidates.
pub fn complete(line: &str, pos: usize, knowledge: &Knowledge) -> (usize, Vec<String>) {
    let before = &line[..pos];
    // After the last whitespace character, which may be wider than a byte
    // (a no-break space is two).
    let start = before.char_indices().rev().find(|(_, c)| c.is_whitespace()).map_or(0, |(i, c)| i + c.len_utf8());
    let word = &before[start..];
    let words: Vec<&str> = before[..start].split_whitespace().collect();
    let (start, prefix, candidates) = match words.as_slice() {
        [] => (start, word, knowledge.first_words()),
        ["info"] => {
            let topics = table::table().iter().filter(|e| knowledge.has(e.span));
            let topics = topics.filter_map(|e| e.name.strip_prefix("info ")).map(String::from);
            (start, word, topics.collect())
        }
        [".help"] => {
            let mut names: Vec<String> = table::table().iter().map(|e| e.name.to_string()).collect();
            names.extend(COMMANDS.iter().map(|c| format!(".{}", c.name)));
            (start, word, names)
        }
        [".schema"] => (start, word, knowledge.qmp_names()),
        [".events" | ".pretty"] => (start, word, vec!["on".into(), "off".into()]),
        [".cpu"] => {
            let cpus = knowledge.live.as_ref().map(|live| names(live.items(Kind::Cpu, word, None)));
            (start, word, cpus.unwrap_or_default())
        }
        [".wait"] => {
            let events = knowledge.schema.iter().flat_map(|s| s.event_names().map(String::from));
            (start, word, events.collect())
        }
        [first, ..] if first.starts_with('.') || *first == "hmp" || first.starts_with('{') => (start, word, Vec::new()),
        _ => {
            match word.split_once('=') {
                Some((key, value)) => {
                    let mut values = knowledge.values(&words, key);
                    values.extend(knowledge.live_values(&words, key, value));
                    (start + key.len() + 1, value, values)
                }
                None => {
                    let given: Vec<&str> = words.iter().filter_map(|w| w.split_once('=').map(|(k, _)| k)).collect();
                    let mut names: Vec<String> = knowledge
                        .arguments(&words)
                        .into_iter()
                        .map(|(name, _, _)| name)
                        .chain(
                            knowledge
                                .live
                                .iter()
                                .flat_map(|live| knowledge.type_properties(&words, live).into_iter().map(|p| p.name)),
                        )
                        .filter(|name| !given.contains(&name.as_str()))
                        .map(|name| format!("{name}="))
                        .collect();
                    names.dedup();
                    // A positional value or an argument's name: `qom-list pa`
                    // is `path=`, `qom-list /ma` a path.
                    if let Some(values) = knowledge.positional(&words, word) {
                        names.extend(values);
                    }
                    (start, word, names)
                }
            }
        }
    };
    let mut matches: Vec<String> = candidates.into_iter().filter(|c| c.starts_with(prefix)).collect();
    matches.sort();
    matches.dedup();
    (start, matches)
}

/// A greyed hint after the cursor: the arguments still missing, with their
/// types, once a command and a space are typed.
pub fn hint(line: &str, pos: usize, knowledge: &Knowledge) -> Option<String> {
    if pos != line.len() {
        return None;
    }
    if !line.ends_with(' ') {
        return knowledge.hint_under_cursor(line);
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let first = words.first()?;
    if first.starts_with('.') || first.starts_with('{') || *first == "hmp" {
        return None;
    }
    let given: Vec<&str> = words.iter().filter_map(|w| w.split_once('=').map(|(k, _)| k)).collect();
    let shown: Vec<String> = match knowledge.entry(&words) {
        Some(entry) => positional_left(entry, &words)
            .map(|a| {
                let shown = format!("{}:{}", a.name, a.kind.describe());
                if a.optional { format!("[{shown}]") } else { shown }
            })
            .collect(),
        None => match knowledge.hmp_usage(first).filter(|_| words.len() == 1) {
            Some(usage) => vec![usage.to_string()],
            None => {
                let mut arguments = knowledge.arguments(&words);
                arguments.retain(|(name, _, _)| !given.contains(&name.as_str()));
                arguments.sort_by_key(|(_, _, optional)| *optional);
                arguments
                    .into_iter()
                    .map(
                        |(name, ty, optional)| if optional { format!("[{name}={ty}]") } else { format!("{name}={ty}") },
                    )
                    .collect()
            }
        },
    };
    let text = shown.join(" ");
    (!text.is_empty()).then(|| shorten(text, 72))
}

/// The positional argument a word after `words` fills in a table command.
fn positional_spec(entry: &'static Entry, words: &[&str]) -> Option<&'static ArgSpec> {
    positional_left(entry, words).next()
}

/// A table command's positional arguments still to come after `words`:
/// not given by name, nor filled by the positional words so far.
fn positional_left<'w>(entry: &'static Entry, words: &'w [&'w str]) -> impl Iterator<Item = &'static ArgSpec> + 'w {
    let skip = if entry.name.starts_with("info ") { 2 } else { 1 };
    let positional = words.iter().skip(skip).filter(|w| !w.contains('=') && !w.starts_with('-')).count();
    let given = move |name: &str| words.iter().any(|w| w.split_once('=').is_some_and(|(k, _)| k == name));
    entry.args.iter().filter(move |a| a.flag.is_none() && !given(a.name)).skip(positional)
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
/// palette's colours (as in replies); only colour codes are added, so the
/// width does not change.
pub fn highlight(line: &str, palette: &Palette) -> String {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('{') || trimmed.starts_with('#') {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len() + 32);
    let mut first = true;
    let mut rest = line;
    while !rest.is_empty() {
        let space = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..space]);
        rest = &rest[space..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let token = &rest[..end];
        rest = &rest[end..];
        if token.is_empty() {
            continue;
        }
        if first {
            out.push_str(&render::bold(token));
            first = false;
        } else if let Some((key, value)) = token.split_once('=').filter(|(k, _)| !k.is_empty()) {
            out.push_str(&format!("{}={}", render::painted(key, palette.key), render::painted(value, palette.string)));
        } else {
            out.push_str(token);
        }
    }
    out
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
        assert_eq!(completions(".wa"), (0, vec![".wait".to_string()]));
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
            Some("driver=file|null-co|qcow2 [node-name=str] [read-only=bool]")
        );
        assert_eq!(hint("blockdev-add driver=file ", 25, &k).as_deref(), Some("[node-name=str] [read-only=bool]"));
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
        assert_eq!(complete(".wa", 3, &agent), (0, vec![".wait".to_string()]));
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
        assert_eq!(hint("block_resize node-name=d0 ", 26, &k).as_deref(), Some("size=int [device=str]"));
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
