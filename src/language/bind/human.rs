//! Binding of human commands from the command table: positional words in
//! HMP order, flags, `name=value` for the same arguments, and QemuOpts
//! strings (`e1000,id=n1`) expanded into arguments.

use serde_json::{Map, Value as Json};

use super::{Context, Request, Result, command_word, error, property};
use crate::language::arguments::{Leaf, Node, Tree, opts_items, parse_bool, parse_int, untyped};
use crate::language::line::{Arg, Invocation, Value, refused};
use crate::language::qemu_text;
use crate::language::table::{self, ArgSpec, ArgType, Entry};
use crate::language::units::parse_size;
use crate::language::version::Version;

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
    // A `key=value` that is no argument of the QMP command is a word, as
    // HMP reads it (`screendump a=b.ppm`).
    let takes = |key: &str| context.schema.is_none_or(|schema| schema.takes_argument(command, key));
    let (mut tree, given) = fill(entry, args, text, &takes)?;
    if let Some(version) = context.qemu {
        refuse_missing_arguments(entry, &given, version)?;
    }
    set_property_values(entry, &given, text, &mut tree, context)?;
    type_set_properties(entry, &mut tree, context)?;
    let given: Vec<Option<usize>> = given.iter().map(|g| g.map(|g| g.arg.offset)).collect();
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
    let table = entry.name.starts_with("info ");
    Ok(Request { table, ..Request::qmp(command, arguments) })
}

/// The value of a `property`-typed argument (`qom-set`'s), read by the
/// type of the property the line names: JSON with a local `-j` flag; in
/// HMP's positional form the rest of the line as typed, read as QEMU reads
/// text; in `key=value` form by qmpsh's typing of the property's type.
fn set_property_values(
    entry: &Entry,
    given: &[Option<Given>],
    text: &str,
    tree: &mut Tree,
    context: &Context,
) -> Result<()> {
    let json = entry.args.iter().zip(given).any(|(spec, given)| spec.local && given.is_some());
    let end = text.trim_end().len();
    for (spec, given) in entry.args.iter().zip(given) {
        let (ArgType::Property, Some(given)) = (spec.kind, given) else { continue };
        let property = match tree.get("property") {
            Some(Node::Leaf { leaf: Leaf::Typed(Json::String(name)), .. }) => name.clone(),
            _ => String::new(),
        };
        let (arg, rest) = (given.arg, text.get(given.arg.offset..end).unwrap_or_default());
        let as_json =
            |text: &str| serde_json::from_str(text).or_else(|e| error(arg.offset, format!("JSON after -j ({e})")));
        let value = match (given.positional, json) {
            (true, true) => as_json(rest)?,
            (true, false) => context.properties.read_hmp(&property, rest, arg.offset)?,
            (false, true) => match &arg.value {
                Value::Json(value) => value.clone(),
                other => as_json(other.text().unwrap_or_default())?,
            },
            (false, false) => match context.properties.read_named(&property, &arg.value, arg.offset)? {
                Some(value) => value,
                None => untyped(&arg.value),
            },
        };
        tree.insert(&dotted(spec.target()), Leaf::Typed(value), arg.offset)?;
    }
    Ok(())
}

/// `device_add`'s QemuOpts items that set device properties, read as QEMU
/// reads them for each property's type (a device's properties are in no
/// schema).
fn type_set_properties(entry: &Entry, tree: &mut Tree, context: &Context) -> Result<()> {
    for (name, node) in &mut tree.members {
        let Node::Leaf { leaf, offset } = node else { continue };
        if !property::sets_property(entry.name, name) {
            continue;
        }
        match leaf {
            Leaf::Opts(text) => *leaf = Leaf::Typed(context.properties.read_hmp(name, text, *offset)?),
            Leaf::OptsList(_) => {
                return error(*offset, format!("`{name}` only once (a device property takes one value)"));
            }
            // `device_add virtio-blk-pci serial=0012345`: a key=value word.
            Leaf::Raw(value) => {
                if let Some(typed) = context.properties.read_named(name, value, *offset)? {
                    *leaf = Leaf::Typed(typed);
                }
            }
            Leaf::Typed(_) => {}
        }
    }
    Ok(())
}

/// Whether a line of `key=value` words for table command `word`, which
/// would otherwise be the QMP command of that name, is HMP's form: a help
/// form (`device_add driver=help`), or words whose keys the QMP command
/// takes none of (`screendump a=b.ppm` names a file; with one key it does
/// take, the line is QMP's, and the schema names any typo).
pub(super) fn reads_as_hmp(inv: &Invocation, word: &str, context: &Context) -> bool {
    let Some(entry) = table::lookup(word) else { return false };
    let Some(schema) = context.schema else { return asks_for_help(entry, inv) };
    let command = entry.qmp.unwrap_or(word);
    asks_for_help(entry, inv)
        || inv.args.iter().filter_map(|a| a.key.as_ref()).all(|key| !schema.takes_argument(command, &key.join(".")))
}

/// Whether a QemuOpts line asks HMP for help rather than for a device,
/// object or netdev: `device_add help` (or `?`) lists the types,
/// `device_add e1000,help` a type's properties (any item named `help` or
/// `?` does, whatever its value). QMP has no such form: it would be
/// `driver=help`. For netdev_add only the type asks.
fn asks_for_help(entry: &Entry, inv: &Invocation) -> bool {
    let Some(spec) = entry.args.iter().find(|a| a.kind == ArgType::Opts) else { return false };
    // `device_add driver=help` is the same QemuOpts string to HMP.
    if let [arg] = inv.args.as_slice()
        && arg.key.as_deref().is_some_and(|key| key == [spec.target()])
    {
        return matches!(arg.value.text(), Some("help" | "?"));
    }
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
fn refuse_missing_arguments(entry: &Entry, given: &[Option<Given>], version: Version) -> Result<()> {
    for (spec, given) in entry.args.iter().zip(given) {
        let Some(arg) = given.map(|g| g.arg).filter(|_| spec.span.is_limited()) else { continue };
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

/// The word that gave one of a table command's arguments, and whether it
/// was read in HMP's positional form: as typed, `=` and all, when it is a
/// `key=value` word taken whole (`set_password vnc pass=word`).
#[derive(Debug, Clone, Copy)]
struct Given<'a> {
    arg: &'a Arg,
    positional: bool,
}

impl Given<'_> {
    /// The word as typed.
    fn raw<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.arg.offset..self.arg.end).unwrap_or_default()
    }
}

/// The arguments typed by the table, each in its place, and the word that
/// gave each of the table's arguments, if one did.
fn fill<'a>(
    entry: &Entry,
    args: &'a [Arg],
    text: &str,
    takes: &dyn Fn(&str) -> bool,
) -> Result<(Tree, Vec<Option<Given<'a>>>)> {
    let end = text.trim_end().len();
    let mut tree = Tree::default();
    let mut filled: Vec<Option<Given>> = vec![None; entry.args.len()];
    let mut positional =
        entry.args.iter().enumerate().filter(|(_, spec)| spec.flag.is_none()).map(|(slot, _)| slot).peekable();
    let mut words = args.iter();
    let mut in_order = false; // a positional word has come: HMP's form
    while let Some(arg) = words.next() {
        let next = positional.peek().and_then(|slot| entry.args.get(*slot));
        let as_word = as_word(entry, arg, next, in_order, takes);
        let Some((slot, given)) = place(entry, arg, &mut words, &mut positional, as_word, end, &mut tree)? else {
            continue;
        };
        in_order |= given.positional;
        let (Some(spec), Some(seen)) = (entry.args.get(slot), filled.get_mut(slot)) else {
            return error(arg.offset, format!("no more arguments: usage is `{}`", entry.usage()));
        };
        if let Some(before) = seen.replace(given) {
            let twice = if before.positional == given.positional {
                format!("`{}` only once", spec.name)
            } else {
                // Positional words fill the usage's places in order, named or not.
                format!(
                    "`{}` once, not both as `{}` and as `{}`: positional words fill `{}` in order",
                    spec.name,
                    before.raw(text),
                    given.raw(text),
                    entry.usage()
                )
            };
            return error(arg.offset, twice);
        }
        if spec.kind == ArgType::Opts {
            expand_opts(spec, given.arg, &mut tree)?;
            continue;
        }
        if spec.local {
            continue; // how the line is read, not sent
        }
        if spec.kind == ArgType::Property {
            // Typed once the property is known; in HMP's form it is the
            // rest of the line, spaces and all.
            if given.positional {
                words.by_ref().for_each(drop);
            }
            continue;
        }
        let at = given.arg.offset;
        let switch = given.arg.key.is_none() && spec.flag.is_some() && spec.flag == given.arg.value.text();
        let value = if switch {
            Json::Bool(true) // a bare switch such as `eject -f`
        } else if given.positional && spec.kind == ArgType::Str {
            // As HMP reads a string: `'single'` keeps its quotes.
            Json::String(qemu_text::hmp_word(given.raw(text)).or_else(|expected| error(at, expected))?)
        } else if given.positional {
            typed(spec, &Value::Bare(given.raw(text).to_string()), false).or_else(|expected| error(at, expected))?
        } else {
            typed(spec, &given.arg.value, true).or_else(|expected| error(at, expected))?
        };
        tree.insert(&dotted(spec.target()), Leaf::Typed(value), at)?;
    }
    Ok((tree, filled))
}

/// Whether a `key=value` word is a positional word, as HMP reads every
/// word. It is where its key names none of the table's arguments, once the
/// line is in HMP's form or where the QMP command takes no such key
/// (`screendump a=b.ppm`); and, once the line is in HMP's form, where the
/// next place takes text (`set_password vnc password=x` sets that
/// password): only a key named for a number, a size or a flag's value
/// stays the argument it names (`block_resize disk0 size=134217728`).
fn as_word(entry: &Entry, arg: &Arg, next: Option<&ArgSpec>, in_order: bool, takes: &dyn Fn(&str) -> bool) -> bool {
    let Some(key) = arg.key.as_ref().map(|key| key.join(".")) else { return false };
    let names_argument = entry.args.iter().any(|spec| spec.name == key);
    let takes_text = next.is_some_and(|spec| matches!(spec.kind, ArgType::Str | ArgType::Property));
    match names_argument {
        false => in_order || !takes(&key),
        true => in_order && takes_text,
    }
}

/// Which of the table's arguments `arg` fills, and the word that gives its
/// value (a flag such as `-f FORMAT` takes the next one). `None` when it
/// went into `tree` as it is: a name the table does not have goes to QMP
/// as qmp-shell would send it (`device_add driver=e1000 id=n1`), and the
/// schema, when loaded, types it and catches typos. `as_word`: a
/// `key=value` word is a positional word while a place is left ([`as_word`]).
/// A word that starts with `-` and is none of the command's flags is a
/// positional word too while a place is left, as HMP reads it (`qom-set
/// /machine append -quiet`).
fn place<'a>(
    entry: &Entry,
    arg: &'a Arg,
    words: &mut impl Iterator<Item = &'a Arg>,
    positional: &mut std::iter::Peekable<impl Iterator<Item = usize>>,
    as_word: bool,
    end: usize,
    tree: &mut Tree,
) -> Result<Option<(usize, Given<'a>)>> {
    let whole = |slot| (slot, Given { arg, positional: true });
    match (&arg.key, &arg.value) {
        (Some(_), _) if as_word && positional.peek().is_some() => Ok(positional.next().map(whole)),
        (Some(key), _) => match entry.args.iter().position(|spec| spec.name == key.join(".")) {
            Some(slot) => Ok(Some((slot, Given { arg, positional: false }))),
            None => tree.insert(key, Leaf::Raw(arg.value.clone()), arg.offset).map(|()| None),
        },
        (None, Value::Bare(word)) if word.len() > 1 && word.starts_with('-') && parse_int(word).is_none() => {
            let Some(slot) = entry.args.iter().position(|spec| spec.flag == Some(word.as_str())) else {
                return match positional.next() {
                    Some(slot) => Ok(Some(whole(slot))),
                    None => error(arg.offset, format!("a flag of `{}`, not `{word}`", entry.usage())),
                };
            };
            if entry.args.get(slot).is_some_and(|spec| spec.kind == ArgType::Bool) {
                return Ok(Some((slot, Given { arg, positional: true })));
            }
            match words.next() {
                Some(value) => Ok(Some((slot, Given { arg: value, positional: true }))),
                None => error(end, format!("a value after {word}")),
            }
        }
        (None, _) => match positional.next() {
            Some(slot) => Ok(Some(whole(slot))),
            None => error(arg.offset, format!("no more arguments: usage is `{}`", entry.usage())),
        },
    }
}

fn dotted(key: &str) -> Vec<String> {
    key.split('.').map(str::to_string).collect()
}

/// A typed table argument, or what was expected instead. A positional
/// word is read as HMP reads it (numbers in C's base 0: `010` is 8); a
/// `named` (`key=value`) argument as qmpsh reads typed values, and never in
/// the table's HMP units (a `size-mb` given as `size=N` is bytes, as QMP
/// has it).
fn typed(spec: &ArgSpec, value: &Value, named: bool) -> std::result::Result<Json, String> {
    let text = match value {
        Value::Json(json) => return Ok(json.clone()),
        Value::Quoted(s) | Value::Bare(s) => s.as_str(),
    };
    let expected = |what: &str| format!("{what} for `{}`, not `{text}`", spec.name);
    const MIB: u64 = 1 << 20;
    match spec.kind {
        ArgType::Str => Ok(Json::String(text.to_string())),
        ArgType::Int if named => parse_int(text).map(Json::from).ok_or_else(|| expected("an integer")),
        // HMP's `i`: 0 to 2^32-1.
        ArgType::Int => qemu_text::strtoi64(text)
            .filter(|n| (0..=i64::from(u32::MAX)).contains(n))
            .map(Json::from)
            .ok_or_else(|| expected("a number from 0 to 0xffffffff (0x for hex, a leading 0 for octal)")),
        ArgType::Bool => parse_bool(text).map(Json::Bool).ok_or_else(|| expected("on or off")),
        ArgType::Size => parse_size(text, 1).map(Json::from).ok_or_else(|| expected("a size such as 512M")),
        ArgType::SizeMb | ArgType::IntMb if named => {
            parse_size(text, 1).map(Json::from).ok_or_else(|| expected("a size in bytes"))
        }
        ArgType::SizeMb => qemu_text::strtosz(text, MIB)
            .filter(|n| i64::try_from(*n).is_ok())
            .map(Json::from)
            .ok_or_else(|| expected("a size in MB, or one such as 1.5G")),
        ArgType::IntMb => qemu_text::strtoi64(text)
            .filter(|n| *n >= 0)
            .and_then(|n| n.checked_mul(1 << 20))
            // With a size suffix (`1G`), which HMP would refuse.
            .or_else(|| {
                let suffixed = text.ends_with(|c: char| c.is_ascii_alphabetic());
                qemu_text::strtosz(text, MIB).filter(|_| suffixed).and_then(|n| i64::try_from(n).ok())
            })
            .map(Json::from)
            .ok_or_else(|| expected("a number of MB (0x for hex, a leading 0 for octal)")),
        ArgType::Keys => keys(text).ok_or_else(|| expected("keys joined by '-', such as ctrl-alt-delete")),
        ArgType::Opts | ArgType::Property => Err(format!("`{}` to be read apart", spec.name)),
    }
}

/// `ctrl-alt-delete` → QKeyCode names, as HMP's sendkey reads them: a key
/// written `0x1d` (lowercase `0x`, hex) is a raw keycode, a lone `<` is
/// `less`.
fn keys(text: &str) -> Option<Json> {
    let mut list = Vec::new();
    for key in text.split('-') {
        let mut k = Map::new();
        match key.strip_prefix("0x") {
            _ if key.is_empty() => return None,
            Some(hex) => {
                let code = i64::from_str_radix(hex, 16).ok().filter(|_| hex.bytes().all(|b| b.is_ascii_hexdigit()))?;
                k.insert("type".into(), Json::String("number".into()));
                k.insert("data".into(), Json::from(code));
            }
            None => {
                k.insert("type".into(), Json::String("qcode".into()));
                k.insert("data".into(), Json::String(if key == "<" { "less" } else { key }.to_string()));
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
    // An empty item after the first is nothing (`e1000,`), as to QEMU.
    for (n, item) in split_opts(text).into_iter().enumerate().filter(|(n, item)| *n == 0 || !item.is_empty()) {
        let (key, value) = match item.split_once('=') {
            Some((key, value)) => (dotted(key), value.to_string()),
            None if n == 0 => (dotted(spec.target()), item),
            None => (dotted(&item), "on".to_string()),
        };
        if key.iter().any(String::is_empty) {
            return error(arg.offset, format!("prop=value items in `{text}`"));
        }
        if key == ["id"] && !well_formed_id(&value) {
            return error(
                arg.offset,
                format!("an id that starts with a letter (then letters, digits, `-`, `.`, `_`), not `{value}`"),
            );
        }
        tree.insert_opts(&key, value, arg.offset)?;
    }
    Ok(())
}

/// QEMU's `id_wellformed`: a letter, then letters, digits, `-`, `.`, `_`.
fn well_formed_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// A QemuOpts string's items, at its commas, each with `,,` read as the
/// comma it stands for.
pub(super) fn split_opts(text: &str) -> Vec<String> {
    opts_items(text).into_iter().map(|item| item.replace(",,", ",")).collect()
}
