//! Values typed by the property they set: a device property of
//! `device_add`, a QOM property of `qom-set`. Their types are QEMU's, asked
//! when a line needs them (`crate::properties`). In HMP's form (QemuOpts,
//! positional words) a value is read as QEMU reads text (`bootindex=010`
//! is 8); in qmp-shell's `key=value` form as qmpsh reads any typed value
//! (`0x10` is 16, `true` in any case), but always by the property's real
//! type (`serial=0012345` stays text).

use serde_json::Value as Json;

use super::{Result, error};
use crate::arguments::{parse_bool, parse_int, parse_number};
use crate::line::{Invocation, Line, Value, refused};
use crate::properties::{Owner, Properties};
use crate::qemu_text::Kind;
use crate::units::parse_size;

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
        let positional = inv.args.iter().filter(|a| a.key.is_none()).filter_map(|a| a.value.text());
        let path = named(inv, "path").or_else(|| positional.into_iter().find(|word| *word != "-j"));
        return path.map(|p| Owner::Object(p.to_string()));
    }
    let (_, type_key, own) = CREATORS.iter().find(|(names, _, _)| names.contains(&inv.name.as_str()))?;
    let positional = inv.args.first().filter(|a| a.key.is_none()).and_then(|a| a.value.text());
    // Or a QemuOpts string in one word: `driver=e1000,id=n1,bootindex=1`.
    let in_one_word = || named_arg(inv, type_key)?.value.text().filter(|text| text.contains(','));
    let mut items = positional.or_else(in_one_word).into_iter().flat_map(|opts| opts.split(','));
    let from_opts = items.next().filter(|item| !item.contains('='));
    // Only a line that sets a property needs their types.
    let key = |item: &str| item.split_once('=').map_or(item, |(key, _)| key).to_string();
    let keys: Vec<String> =
        items.map(key).chain(inv.args.iter().filter_map(|a| Some(a.key.as_ref()?.join(".")))).collect();
    let sets_one = keys.iter().any(|key| !own.contains(&key.as_str()));
    let name = named(inv, type_key).or(from_opts).filter(|name| !name.is_empty() && sets_one)?;
    Some(Owner::Device(name.to_string()))
}

/// The value of `key=`, up to a comma (`driver=e1000,id=n1` is a QemuOpts
/// string in one word).
fn named<'a>(inv: &'a Invocation, key: &str) -> Option<&'a str> {
    named_arg(inv, key)?.value.text().and_then(|text| text.split(',').next())
}

/// The `key=...` argument with this one-part key.
fn named_arg<'a>(inv: &'a Invocation, key: &str) -> Option<&'a crate::line::Arg> {
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
             --dry-run knows only for the recorded QEMUs' device types (quote a key=value for text, or give JSON)"
        ),
    )
}
