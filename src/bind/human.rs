//! Binding of human commands from the command table: positional words in
//! HMP order, flags, `name=value` for the same arguments, and QemuOpts
//! strings (`e1000,id=n1`) expanded into arguments.

use serde_json::{Map, Value as Json};

use super::{Context, Request, Result, command_word, error};
use crate::arguments::{Leaf, Tree, parse_bool, parse_int, untyped};
use crate::line::{Arg, Invocation, Value, refused};
use crate::table::{self, ArgSpec, ArgType, Entry};
use crate::units::parse_size;
use crate::version::Version;

pub fn bind(entry: &Entry, inv: &Invocation, text: &str, context: &Context) -> Result<Request> {
    if let Some(version) = context.qemu {
        refuse_missing_entry(entry, inv.offset, version)?;
    }
    let Some(command) = &entry.qmp else { return hmp_only(entry, inv, text, context) };
    if asks_for_help(entry, inv) {
        return Ok(Request::hmp(text.trim(), context.cpu));
    }
    let word = command_word(&inv.name);
    if word != inv.name {
        return error(inv.offset + word.len(), format!("no `/` after `{word}`"));
    }
    let end = text.trim_end().len();
    let args = inv.args.get(usize::from(entry.name.starts_with("info "))..).unwrap_or_default();
    let (tree, given) = fill(entry, args, text)?;
    if let Some(version) = context.qemu {
        refuse_missing_arguments(entry, &given, version)?;
    }
    let given: Vec<Option<usize>> = given.iter().map(|arg| arg.map(|a| a.offset)).collect();
    // With the schema, QEMU's own rules decide what is missing (and catch
    // unknown names first); without it, the table's do.
    let arguments = match context.schema {
        Some(schema) if schema.has_command(command) => schema.type_arguments(command, tree, end)?,
        _ => {
            let missing = entry
                .args
                .iter()
                .zip(&given)
                .find(|(spec, given)| given.is_none() && !spec.optional && tree.get(spec.target()).is_none());
            if let Some((spec, _)) = missing {
                let usage = entry.usage();
                return error(end, format!("argument `{}` ({}): usage is `{usage}`", spec.name, spec.kind.describe()));
            }
            tree.into_untyped()
        }
    };
    Ok(Request::qmp(command, arguments))
}

/// Whether a QemuOpts line asks HMP for help rather than for a device,
/// object or netdev: `device_add help` (or `?`) lists the types,
/// `device_add e1000,help` a type's properties (any item named `help` or
/// `?` does, whatever its value). QMP has no such form: it would be
/// `driver=help`. For netdev_add only the type asks.
fn asks_for_help(entry: &Entry, inv: &Invocation) -> bool {
    let Some(spec) = entry.args.iter().find(|a| a.kind == ArgType::Opts) else { return false };
    let Some(opts) = inv.args.first().filter(|a| a.key.is_none()).and_then(|a| a.value.text()) else { return false };
    let help = |item: &str| matches!(item.split_once('=').map_or(item, |(key, _)| key), "help" | "?");
    let items = split_opts(opts);
    match spec.target() {
        "type" => items.first().is_some_and(|first| help(first)),
        _ => items.iter().any(|item| help(item)),
    }
}

/// Refuses a table command QEMU `version` does not have (HMP's
/// `singlestep` after 9.0), at `at`.
fn refuse_missing_entry(entry: &Entry, at: usize, version: Version) -> Result<()> {
    if entry.span.is_limited()
        && let Some(why) = table::missing_in(&format!("`{}`", entry.name), entry.span, entry.instead, version)
    {
        return refused(at, why);
    }
    Ok(())
}

/// Refuses an argument given that QEMU `version` does not have (`migrate
/// -b` after block migration was removed), named as it was typed and at
/// the column where it was: QEMU would refuse it too, or worse, ignore it.
fn refuse_missing_arguments(entry: &Entry, given: &[Option<&Arg>], version: Version) -> Result<()> {
    for (spec, arg) in entry.args.iter().zip(given) {
        let Some(arg) = arg.filter(|_| spec.span.is_limited()) else { continue };
        let typed = match (&arg.key, spec.flag) {
            (Some(key), _) => key.join("."),
            (None, Some(flag)) => flag.to_string(),
            (None, None) => spec.name.to_string(),
        };
        if let Some(why) = table::missing_in(&format!("`{} {typed}`", entry.name), spec.span, spec.instead, version) {
            return refused(arg.offset, why);
        }
    }
    Ok(())
}

/// Refuses, in a QMP command's `key=value` form, an argument the table
/// knows QEMU `version` lacks (`migrate blk=true` after 9.1): the schema
/// would refuse it too, but could not say when it went or what instead.
pub(super) fn refuse_missing_named(inv: &Invocation, version: Version) -> Result<()> {
    let entries = table::table().iter().filter(|entry| entry.qmp == Some(inv.name.as_str()));
    for spec in entries.flat_map(|entry| entry.args).filter(|spec| spec.span.is_limited()) {
        let given = inv.args.iter().find(|arg| arg.key.as_ref().is_some_and(|key| key.join(".") == spec.target()));
        let what = || format!("`{} {}`", inv.name, spec.target());
        if let Some(arg) = given
            && let Some(why) = table::missing_in(&what(), spec.span, spec.instead, version)
        {
            return refused(arg.offset, why);
        }
    }
    Ok(())
}

/// Refuses HMP text (`hmp ...`, `-H`), starting at `at` in its line, for
/// a table command QEMU `version` lacks or with a flag it lacks (`migrate
/// -b`), as the table's own form is refused. HMP takes flags before the
/// other arguments.
pub(super) fn refuse_missing_in_hmp(command_line: &str, at: usize, version: Version) -> Result<()> {
    let mut words = words_at(command_line);
    let Some((_, first)) = words.next() else { return Ok(()) };
    let Some(entry) = table::lookup(command_word(first)) else { return Ok(()) };
    refuse_missing_entry(entry, at, version)?;
    for (offset, word) in words.take_while(|(_, word)| word.starts_with('-')) {
        let Some(spec) = entry.args.iter().find(|spec| spec.flag == Some(word) && spec.span.is_limited()) else {
            continue;
        };
        if let Some(why) = table::missing_in(&format!("`{} {word}`", entry.name), spec.span, spec.instead, version) {
            return refused(at + offset, why);
        }
    }
    Ok(())
}

/// The whitespace-separated words of `text`, each with its byte offset.
fn words_at(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_whitespace().map(move |word| (word.as_ptr() as usize - text.as_ptr() as usize, word))
}

/// A command only HMP has, sent as typed. HMP reads `tag=x` as the word
/// `tag=x`: where the key names one of the command's own arguments, that
/// is refused rather than, say, a snapshot named `tag=x`; any other
/// `a=b` is a word, as HMP reads it.
fn hmp_only(entry: &Entry, inv: &Invocation, text: &str, context: &Context) -> Result<Request> {
    let named =
        |a: &Arg| a.key.as_ref().map(|key| key.join(".")).filter(|key| entry.args.iter().any(|s| s.name == key));
    if let Some((arg, key)) = inv.args.iter().find_map(|a| named(a).map(|key| (a, key))) {
        return error(
            arg.offset,
            format!(
                "HMP's positional form `{}`: `{}` is HMP-only, and HMP would take `{key}=...` as the word, not as \
                 its {key} (`hmp ...` sends text as typed)",
                entry.usage(),
                entry.name
            ),
        );
    }
    Ok(Request::hmp(text.trim(), context.cpu))
}

/// The arguments typed by the table, each in its place, and the word that
/// gave each of the table's arguments, if one did.
fn fill<'a>(entry: &Entry, args: &'a [Arg], text: &str) -> Result<(Tree, Vec<Option<&'a Arg>>)> {
    let end = text.trim_end().len();
    let mut tree = Tree::default();
    let mut filled = vec![None; entry.args.len()];
    let mut positional =
        entry.args.iter().enumerate().filter(|(_, spec)| spec.flag.is_none()).map(|(slot, _)| slot).peekable();
    let mut words = args.iter();
    let mut in_order = false; // a positional word has come: HMP's form
    while let Some(arg) = words.next() {
        let Some((slot, given, whole)) = place(entry, arg, &mut words, &mut positional, in_order, end, &mut tree)?
        else {
            continue;
        };
        in_order |= given.key.is_none() || whole;
        let (Some(spec), Some(seen)) = (entry.args.get(slot), filled.get_mut(slot)) else {
            return error(arg.offset, format!("no more arguments: usage is `{}`", entry.usage()));
        };
        if let Some(before) = seen.replace(given) {
            let typed = |a: &Arg| text.get(a.offset..a.end).unwrap_or_default().to_string();
            let twice = match (&before.key, &given.key) {
                // Positional words fill the usage's places in order, named or not.
                (Some(_), None) | (None, Some(_)) => format!(
                    "`{}` once, not both as `{}` and as `{}`: positional words fill `{}` in order",
                    spec.name,
                    typed(before),
                    typed(given),
                    entry.usage()
                ),
                _ => format!("`{}` only once", spec.name),
            };
            return error(arg.offset, twice);
        }
        if spec.kind == ArgType::Opts {
            expand_opts(spec, given, &mut tree)?;
            continue;
        }
        let switch = given.key.is_none() && spec.flag.is_some() && spec.flag == given.value.text();
        let value = if switch {
            Json::Bool(true) // a bare switch such as `eject -f`
        } else if whole {
            let word = Value::Bare(text.get(given.offset..given.end).unwrap_or_default().to_string());
            typed(spec, &word, false).or_else(|expected| error(given.offset, expected))?
        } else {
            typed(spec, &given.value, given.key.is_some()).or_else(|expected| error(given.offset, expected))?
        };
        tree.insert(&dotted(spec.target()), Leaf::Typed(value), given.offset)?;
    }
    Ok((tree, filled))
}

/// Which of the table's arguments `arg` fills, the word that gives its
/// value (a flag such as `-f FORMAT` takes the next one), and whether that
/// is the whole word as typed, `=` and all. `None` when it went into
/// `tree` as it is: a name the table does not have goes to QMP as
/// qmp-shell would send it (`device_add driver=e1000 id=n1`), and the
/// schema, when loaded, types it and catches typos. Once the line is in
/// HMP's positional form (`in_order`), such a `key=value` is a positional
/// word while a place is left, as HMP reads it: `qom-set /machine append
/// console=ttyS0`, `set_password vnc pass=word`.
fn place<'a>(
    entry: &Entry,
    arg: &'a Arg,
    words: &mut impl Iterator<Item = &'a Arg>,
    positional: &mut std::iter::Peekable<impl Iterator<Item = usize>>,
    in_order: bool,
    end: usize,
    tree: &mut Tree,
) -> Result<Option<(usize, &'a Arg, bool)>> {
    match (&arg.key, &arg.value) {
        (Some(key), _) => match entry.args.iter().position(|spec| spec.name == key.join(".")) {
            Some(slot) => Ok(Some((slot, arg, false))),
            None if in_order && positional.peek().is_some() => Ok(positional.next().map(|slot| (slot, arg, true))),
            None => tree.insert(key, Leaf::Raw(arg.value.clone()), arg.offset).map(|()| None),
        },
        (None, Value::Bare(word)) if word.len() > 1 && word.starts_with('-') && parse_int(word).is_none() => {
            let Some(slot) = entry.args.iter().position(|spec| spec.flag == Some(word.as_str())) else {
                return error(arg.offset, format!("a flag of `{}`, not `{word}`", entry.usage()));
            };
            if entry.args.get(slot).is_some_and(|spec| spec.kind == ArgType::Bool) {
                return Ok(Some((slot, arg, false)));
            }
            match words.next() {
                Some(value) => Ok(Some((slot, value, value.key.is_some()))),
                None => error(end, format!("a value after {word}")),
            }
        }
        (None, _) => match positional.next() {
            Some(slot) => Ok(Some((slot, arg, false))),
            None => error(arg.offset, format!("no more arguments: usage is `{}`", entry.usage())),
        },
    }
}

fn dotted(key: &str) -> Vec<String> {
    key.split('.').map(str::to_string).collect()
}

/// A typed table argument, or what was expected instead. A `named`
/// (`key=value`) argument is never in the table's HMP units: a `size-mb`
/// given as `size=N` is bytes, as QMP has it.
fn typed(spec: &ArgSpec, value: &Value, named: bool) -> std::result::Result<Json, String> {
    let text = match value {
        Value::Json(json) => return Ok(json.clone()),
        Value::Quoted(s) | Value::Bare(s) => s.as_str(),
    };
    let expected = |what: &str| format!("{what} for `{}`, not `{text}`", spec.name);
    match spec.kind {
        ArgType::Str => Ok(Json::String(text.to_string())),
        ArgType::Int => parse_int(text).map(Json::from).ok_or_else(|| expected("an integer")),
        ArgType::Bool => parse_bool(text).map(Json::Bool).ok_or_else(|| expected("on or off")),
        ArgType::Size => parse_size(text, 1).map(Json::from).ok_or_else(|| expected("a size such as 512M")),
        ArgType::SizeMb if named => parse_size(text, 1).map(Json::from).ok_or_else(|| expected("a size in bytes")),
        ArgType::SizeMb => {
            parse_size(text, 1 << 20).map(Json::from).ok_or_else(|| expected("a size in MB, or one such as 1G"))
        }
        ArgType::Keys => keys(text).ok_or_else(|| expected("keys joined by '-', such as ctrl-alt-delete")),
        ArgType::Any => Ok(untyped(value)),
        ArgType::Opts => unreachable!("QemuOpts arguments are expanded, not typed"),
    }
}

/// `ctrl-alt-delete` → QKeyCode names; a number (`0x1d`) is a raw keycode.
fn keys(text: &str) -> Option<Json> {
    let mut list = Vec::new();
    for key in text.split('-') {
        let mut k = Map::new();
        match parse_int(key) {
            _ if key.is_empty() => return None,
            Some(code) => {
                k.insert("type".into(), Json::String("number".into()));
                k.insert("data".into(), Json::from(code));
            }
            None => {
                k.insert("type".into(), Json::String("qcode".into()));
                k.insert("data".into(), Json::String(key.to_string()));
            }
        }
        list.push(Json::Object(k));
    }
    Some(Json::Array(list))
}

/// `driver,prop=value,flag` into the arguments: the first bare item fills
/// `spec.to`, a bare item later means `item=on`, `,,` is a literal comma.
fn expand_opts(spec: &ArgSpec, arg: &Arg, tree: &mut Tree) -> Result<()> {
    let Some(text) = arg.value.text() else {
        return error(arg.offset, format!("a QemuOpts string such as `{}`", spec.kind.describe()));
    };
    for (n, item) in split_opts(text).into_iter().enumerate() {
        let (key, value) = match item.split_once('=') {
            Some((key, value)) => (dotted(key), value.to_string()),
            None if n == 0 => (dotted(spec.target()), item),
            None => (dotted(&item), "on".to_string()),
        };
        if key.iter().any(String::is_empty) {
            return error(arg.offset, format!("prop=value items in `{text}`"));
        }
        tree.insert(&key, Leaf::Opts(value), arg.offset)?;
    }
    Ok(())
}

fn split_opts(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut item = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' if chars.peek() == Some(&',') => {
                chars.next();
                item.push(',');
            }
            ',' => items.push(std::mem::take(&mut item)),
            c => item.push(c),
        }
    }
    items.push(item);
    items
}
