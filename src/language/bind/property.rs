//! Values typed by the property they set: a device property of
//! `device_add`, a QOM property of `qom-set`. Their types are QEMU's, asked
//! when a line needs them (`crate::language::properties`). In HMP's form (QemuOpts,
//! positional words) a value is read as QEMU reads text (`bootindex=010`
//! is 8); in qmp-shell's `key=value` form as qmpsh reads any typed value
//! (`0x10` is 16, `true` in any case), but always by the property's real
//! type (`serial=0012345` stays text).

use serde_json::Value as Json;

use super::{Result, error};
use crate::language::arguments::{parse_bool, parse_int, parse_number};
use crate::language::line::{Invocation, Line, Value, refused};
use crate::language::properties::{Owner, Properties};
use crate::language::qemu_text::Kind;
use crate::language::units::parse_size;

/// What a line's property values are typed by.
#[derive(Debug, Clone, Copy, Default)]
pub enum PropertyTypes<'s> {
    /// The line sets no property, or QEMU could not list them (an unknown
    /// device type): values go as text, as HMP sends them, and QEMU judges.
    #[default]
    Unknown,
    Known(&'s Properties),
    /// `--dry-run` without a record of them: a bare value is refused rather
    /// than guessed (a quoted one is text, JSON is JSON, whatever the type).
    Offline,
}

/// Commands that create something whose properties their other arguments
/// set: (command names, the argument naming the type, the arguments that
/// are the command's own).
const CREATORS: &[(&[&str], &str, &[&str])] = &[(&["device_add"], "driver", &["driver", "id", "bus"])];

/// Whose properties type `line`'s values: the device type of `device_add`
/// (its QemuOpts string's first item, or `driver=`), when the line sets a
/// property; the object at the path of `qom-set` (its first positional
/// word after `-j`, or `path=`).
pub fn owner(line: &Line) -> Option<Owner> {
    let Line::Command(inv) = line else { return None };
    if inv.name == "qom-set" {
        // With -j the value is JSON, whatever the type.
        let positional: Vec<&str> =
            inv.args.iter().filter(|a| a.key.is_none()).filter_map(|a| a.value.text()).collect();
        if positional.first() == Some(&"-j") {
            return None;
        }
        let path = named(inv, "path").or_else(|| positional.first().copied());
        return path.map(|p| Owner::Object(p.to_string()));
    }
    let (_, type_key, own) = CREATORS.iter().find(|(names, _, _)| names.contains(&inv.name.as_str()))?;
    let positional = inv.args.first().filter(|a| a.key.is_none()).and_then(|a| a.value.text());
    // Or a QemuOpts string in one `key=value` word: `id=n1,driver=e1000`.
    let in_one_word = || match inv.args.as_slice() {
        [arg] => Some(format!("{}={}", arg.key.as_ref()?.join("."), arg.value.text().filter(|t| t.contains(','))?)),
        _ => None,
    };
    let opts = positional.map(str::to_string).or_else(in_one_word);
    let items = opts.as_deref().map(super::human::split_opts).unwrap_or_default();
    let key = |item: &str| item.split_once('=').map_or(item, |(key, _)| key).to_string();
    let named_keys = inv.args.iter().filter_map(|a| Some(a.key.as_ref()?.join(".")));
    let keys: Vec<String> = items.iter().skip(1).map(|item| key(item)).chain(named_keys).collect();
    // Only a line that sets a property needs their types (help forms do not).
    let asks_help = keys.iter().chain(items.first()).any(|key| matches!(key.as_str(), "help" | "?"));
    let sets_one = keys.iter().any(|key| !own.contains(&key.as_str())) && !asks_help;
    // The type: the first item when it has no `=`, else `driver=` anywhere.
    let prefix = format!("{type_key}=");
    let from_items = items
        .first()
        .filter(|first| !first.contains('='))
        .cloned()
        .or_else(|| items.iter().find_map(|item| item.strip_prefix(&prefix).map(str::to_string)));
    let name = from_items.or_else(|| named(inv, type_key).map(str::to_string)).filter(|name| !name.is_empty());
    name.filter(|_| sets_one).map(Owner::Device)
}

/// The value of `key=`, up to a comma (`driver=e1000,id=n1` is a QemuOpts
/// string in one word).
fn named<'a>(inv: &'a Invocation, key: &str) -> Option<&'a str> {
    named_arg(inv, key)?.value.text().and_then(|text| text.split(',').next())
}

/// The `key=...` argument with this one-part key.
fn named_arg<'a>(inv: &'a Invocation, key: &str) -> Option<&'a crate::language::line::Arg> {
    inv.args.iter().find(|a| a.key.as_deref().is_some_and(|k| k == [key]))
}

/// Whether argument `name` of `command` sets a property of what it
/// creates (not `driver`, `id`, `bus`); `false` for other commands.
pub fn sets_property(command: &str, name: &str) -> bool {
    CREATORS.iter().any(|(names, _, own)| names.contains(&command) && !own.contains(&name))
}

impl PropertyTypes<'_> {
    /// `text` from HMP's form, for property `name`: as QEMU reads it.
    pub fn read_hmp(&self, name: &str, text: &str, offset: usize) -> Result<Json> {
        match self {
            PropertyTypes::Known(properties) => properties
                .kind(name)
                .read(text)
                .or_else(|wanted| error(offset, format!("{wanted} for `{name}`, not `{text}`"))),
            PropertyTypes::Unknown => Ok(Json::String(text.to_string())),
            // Any text may be refused by a type it does not fit.
            PropertyTypes::Offline => offline(name, text, offset),
        }
    }

    /// A `key=value` value for property `name`, by its type; `None` when
    /// the type is unknown (qmp-shell's typing applies).
    pub fn read_named(&self, name: &str, value: &Value, offset: usize) -> Result<Option<Json>> {
        let text = match value {
            Value::Bare(text) => text,
            // Quoted is text, JSON is JSON, whatever the type.
            Value::Quoted(text) => return Ok(Some(Json::String(text.clone()))),
            Value::Json(json) => return Ok(Some(json.clone())),
        };
        match self {
            PropertyTypes::Known(properties) => named_by_kind(properties.kind(name), text)
                .map(Some)
                .or_else(|wanted| error(offset, format!("{wanted} for `{name}`, not `{text}`"))),
            PropertyTypes::Unknown => Ok(None),
            PropertyTypes::Offline => offline(name, text, offset),
        }
    }
}

/// A bare `key=value` value as type `kind`, by the rules qmpsh types any
/// schema value with (Python `int()` or `0x` hex, sizes, `true` in any case).
fn named_by_kind(kind: Kind, text: &str) -> std::result::Result<Json, &'static str> {
    let integer = || parse_int(text).map(Json::from).or_else(|| parse_size(text, 1).map(Json::from));
    let unsigned = || integer().filter(|n| n.as_i64().is_none_or(|n| n >= 0));
    match kind {
        Kind::Text => Ok(Json::String(text.to_string())),
        Kind::Int => integer().ok_or("an integer"),
        Kind::Uint => unsigned().ok_or("an integer from 0"),
        Kind::Size => unsigned().ok_or("a size such as 4096 or 1M"),
        Kind::Bool => parse_bool(text).map(Json::Bool).ok_or("true or false"),
        Kind::Number => parse_number(text).ok_or("a number"),
    }
}

fn offline<T>(name: &str, text: &str, offset: usize) -> Result<T> {
    refused(
        offset,
        format!(
            "cannot type `{name}={text}` without a QEMU: how a value is read depends on the property's type, which \
             --dry-run knows only for the recorded QEMUs' device types (in the key=value form a quoted value is \
             text; qom-set -j takes JSON)"
        ),
    )
}
