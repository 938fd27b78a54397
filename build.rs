//! Compiles the human command table (grammar/commands.json) into Rust
//! statics, so qmpsh reads it at no cost when it starts: parsing the JSON
//! at run time was a fifth of a one-shot command's instructions. A table
//! entry that is not what `src/table.rs` expects fails the build with the
//! entry's name. It also sorts the recorded QEMU's HMP command names
//! (grammar/hmp-help.txt) into a static list.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde_json::{Map, Value};

#[path = "src/hmp/listing.rs"]
mod listing;

const TABLE: &str = "grammar/commands.json";
const HMP_HELP: &str = "grammar/hmp-help.txt";

const ENTRY_FIELDS: &[&str] = &["name", "aliases", "qmp", "args", "help", "example"];
const ARG_FIELDS: &[&str] = &["name", "type", "optional", "flag", "to"];
const ARG_TYPES: &[(&str, &str)] = &[
    ("str", "Str"),
    ("int", "Int"),
    ("bool", "Bool"),
    ("size", "Size"),
    ("size-mb", "SizeMb"),
    ("keys", "Keys"),
    ("opts", "Opts"),
    ("any", "Any"),
];

fn main() {
    println!("cargo::rerun-if-changed={TABLE}");
    let text = fs::read_to_string(TABLE).unwrap_or_else(|e| fail(&format!("cannot read {TABLE}: {e}")));
    let entries: Vec<Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| fail(&format!("{TABLE} is not a JSON list: {e}")));
    let mut code = String::from("&[\n");
    for entry in &entries {
        code.push_str(&entry_code(entry));
    }
    code.push_str("]\n");
    let out = env::var_os("OUT_DIR").unwrap_or_else(|| fail("cargo sets no OUT_DIR"));
    let path = Path::new(&out).join("table.rs");
    fs::write(&path, code).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
    hmp_names(Path::new(&out));
}

/// The recorded QEMU's HMP command names, sorted for a binary search: a
/// line is checked against them before anything is asked of QEMU.
fn hmp_names(out: &Path) {
    println!("cargo::rerun-if-changed={HMP_HELP}");
    let text = fs::read_to_string(HMP_HELP).unwrap_or_else(|e| fail(&format!("cannot read {HMP_HELP}: {e}")));
    let mut names: Vec<&str> = text.lines().filter_map(listing::listed).flat_map(|(names, _, _)| names).collect();
    names.sort_unstable();
    names.dedup();
    let code = format!("&{names:?}\n");
    let path = out.join("hmp_names.rs");
    fs::write(&path, code).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
}

fn fail(why: &str) -> ! {
    eprintln!("error: {why}");
    std::process::exit(1)
}

fn entry_code(entry: &Value) -> String {
    let Value::Object(fields) = entry else { fail(&format!("{TABLE}: an entry is not an object: {entry}")) };
    let name = string(fields, "name", "an entry").unwrap_or_else(|| fail(&format!("{TABLE}: an entry has no name")));
    let whose = format!("entry {name:?}");
    known_fields(fields, ENTRY_FIELDS, &whose);
    let required =
        |key: &str| string(fields, key, &whose).unwrap_or_else(|| fail(&format!("{TABLE}: {whose} has no {key}")));
    let aliases = list(fields, "aliases", &whose)
        .iter()
        .map(|alias| {
            alias
                .as_str()
                .map(|a| format!("{a:?}"))
                .unwrap_or_else(|| fail(&format!("{TABLE}: {whose}: an alias is not a string")))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let args: String = list(fields, "args", &whose).iter().map(|arg| arg_code(arg, &whose)).collect();
    let mut code = String::new();
    let _ = writeln!(
        code,
        "    Entry {{ name: {name:?}, aliases: &[{aliases}], qmp: {}, args: &[{args}], help: {:?}, example: {:?} }},",
        option(string(fields, "qmp", &whose)),
        required("help"),
        required("example"),
    );
    code
}

fn arg_code(arg: &Value, whose: &str) -> String {
    let Value::Object(fields) = arg else { fail(&format!("{TABLE}: {whose}: an argument is not an object")) };
    let name =
        string(fields, "name", whose).unwrap_or_else(|| fail(&format!("{TABLE}: {whose}: an argument has no name")));
    let whose = format!("{whose}, argument {name:?}");
    known_fields(fields, ARG_FIELDS, &whose);
    let kind = string(fields, "type", &whose).unwrap_or_else(|| fail(&format!("{TABLE}: {whose} has no type")));
    let Some((_, variant)) = ARG_TYPES.iter().find(|(json, _)| *json == kind) else {
        fail(&format!("{TABLE}: {whose}: unknown type {kind:?}"))
    };
    let optional = match fields.get("optional") {
        None => false,
        Some(Value::Bool(optional)) => *optional,
        Some(other) => fail(&format!("{TABLE}: {whose}: optional is {other}, not true or false")),
    };
    format!(
        "ArgSpec {{ name: {name:?}, kind: ArgType::{variant}, optional: {optional}, flag: {}, to: {} }}, ",
        option(string(fields, "flag", &whose)),
        option(string(fields, "to", &whose)),
    )
}

fn known_fields(fields: &Map<String, Value>, known: &[&str], whose: &str) {
    if let Some(unknown) = fields.keys().find(|key| !known.contains(&key.as_str())) {
        fail(&format!("{TABLE}: {whose} has an unknown field {unknown:?} (known: {})", known.join(", ")));
    }
}

fn string<'a>(fields: &'a Map<String, Value>, key: &str, whose: &str) -> Option<&'a str> {
    match fields.get(key)? {
        Value::String(text) => Some(text),
        other => fail(&format!("{TABLE}: {whose}: {key} is {other}, not a string")),
    }
}

fn list<'a>(fields: &'a Map<String, Value>, key: &str, whose: &str) -> &'a [Value] {
    match fields.get(key) {
        None => &[],
        Some(Value::Array(items)) => items,
        Some(other) => fail(&format!("{TABLE}: {whose}: {key} is {other}, not a list")),
    }
}

fn option(text: Option<&str>) -> String {
    text.map_or("None".into(), |text| format!("Some({text:?})"))
}
