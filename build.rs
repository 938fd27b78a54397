//! Compiles the human command table (grammar/commands.json) into Rust
//! statics, so qmpsh reads it at no cost when it starts: parsing the JSON
//! at run time was a fifth of a one-shot command's instructions. A table
//! entry that is not what `src/table.rs` expects fails the build with the
//! entry's name. It also lists the QEMUs recorded under grammar/qemu-*/
//! (by `grammar/record`), and sorts the HMP command names any of them has
//! into a static list.

// Cargo reads a build script's instructions from its stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

#[path = "src/hmp/listing.rs"]
mod listing;

const TABLE: &str = "grammar/commands.json";
const GRAMMAR: &str = "grammar";

const ENTRY_FIELDS: &[&str] = &["name", "aliases", "qmp", "args", "help", "example", "since", "until", "instead"];
const ARG_FIELDS: &[&str] = &["name", "type", "optional", "flag", "to", "local", "since", "until", "instead"];
const ARG_TYPES: &[(&str, &str)] = &[
    ("str", "Str"),
    ("int", "Int"),
    ("bool", "Bool"),
    ("size", "Size"),
    ("size-mb", "SizeMb"),
    ("int-mb", "IntMb"),
    ("keys", "Keys"),
    ("opts", "Opts"),
    ("property", "Property"),
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
    let qemus = recorded_qemus();
    write(Path::new(&out), "recorded.rs", &recorded_code(&qemus));
    write(Path::new(&out), "hmp_names.rs", &hmp_names(&qemus));
}

/// A QEMU under grammar/qemu-MAJOR.MINOR/.
struct Qemu {
    folder: PathBuf,
    /// `(major, minor, micro)`.
    version: (u32, u32, u32),
    package: String,
}

/// The recorded QEMUs, oldest first.
fn recorded_qemus() -> Vec<Qemu> {
    println!("cargo::rerun-if-changed={GRAMMAR}");
    let folders = fs::read_dir(GRAMMAR).unwrap_or_else(|e| fail(&format!("cannot read {GRAMMAR}: {e}")));
    let mut qemus: Vec<Qemu> = folders
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("qemu-")))
        .map(|folder| {
            let file = folder.join("version");
            let text =
                fs::read_to_string(&file).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", file.display())));
            let (number, package) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
            let parts: Result<Vec<u32>, _> = number.split('.').map(str::parse).collect();
            let Ok([major, minor, micro]) = parts.as_deref() else {
                fail(&format!("{}: `{number}` is not MAJOR.MINOR.MICRO", file.display()))
            };
            if folder.file_name().and_then(|n| n.to_str()) != Some(&format!("qemu-{major}.{minor}")) {
                fail(&format!("{}: QEMU {number} belongs in {GRAMMAR}/qemu-{major}.{minor}/", file.display()));
            }
            Qemu { folder, version: (*major, *minor, *micro), package: package.to_string() }
        })
        .collect();
    if qemus.is_empty() {
        fail(&format!("no recorded QEMU under {GRAMMAR}/qemu-*/ (record one with grammar/record)"));
    }
    qemus.sort_by_key(|q| q.version);
    qemus
}

/// `RECORDED_COUNT` and the `RECORDED` array of src/version.rs.
fn recorded_code(qemus: &[Qemu]) -> String {
    let root = env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| fail("cargo sets no CARGO_MANIFEST_DIR"));
    let mut code = format!("pub(crate) const RECORDED_COUNT: usize = {};\n", qemus.len());
    code.push_str("static RECORDED: [Recorded; RECORDED_COUNT] = [\n");
    for qemu in qemus {
        let file = |name: &str| Path::new(&root).join(&qemu.folder).join(name).display().to_string();
        let (major, minor, micro) = qemu.version;
        let _ = writeln!(
            code,
            "    Recorded {{ version: Version::new({major}, {minor}, {micro}), package: {:?}, \
             schema_text: include_str!({:?}), hmp_help: include_str!({:?}), devices_text: include_str!({:?}), \
             schema: OnceLock::new(), hmp_commands: OnceLock::new(), devices: OnceLock::new() }},",
            qemu.package,
            file("qmp-schema.json"),
            file("hmp-help.txt"),
            file("device-properties.txt"),
        );
    }
    code.push_str("];\n");
    code
}

/// The HMP command names any recorded QEMU has, sorted for a binary
/// search: a line is checked against them before anything is asked of
/// QEMU.
fn hmp_names(qemus: &[Qemu]) -> String {
    let texts: Vec<String> = qemus
        .iter()
        .map(|qemu| {
            let file = qemu.folder.join("hmp-help.txt");
            fs::read_to_string(&file).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", file.display())))
        })
        .collect();
    let mut names: Vec<&str> = texts
        .iter()
        .flat_map(|text| text.lines())
        .filter_map(listing::listed)
        .flat_map(|(names, _, _)| names)
        .collect();
    names.sort_unstable();
    names.dedup();
    format!("&{names:?}\n")
}

fn write(out: &Path, name: &str, code: &str) {
    let path = out.join(name);
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
        "    Entry {{ name: {name:?}, aliases: &[{aliases}], qmp: {}, args: &[{args}], help: {:?}, example: {:?}, \
         span: {}, instead: {} }},",
        option(string(fields, "qmp", &whose)),
        required("help"),
        required("example"),
        span(fields, &whose),
        option(string(fields, "instead", &whose)),
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
    let boolean = |key: &str| match fields.get(key) {
        None => false,
        Some(Value::Bool(value)) => *value,
        Some(other) => fail(&format!("{TABLE}: {whose}: {key} is {other}, not true or false")),
    };
    let (optional, local) = (boolean("optional"), boolean("local"));
    if local && (kind != "bool" || fields.get("flag").is_none()) {
        fail(&format!("{TABLE}: {whose}: only a bool flag can be local"));
    }
    format!(
        "ArgSpec {{ name: {name:?}, kind: ArgType::{variant}, optional: {optional}, flag: {}, to: {}, local: {local}, \
         span: {}, instead: {} }}, ",
        option(string(fields, "flag", &whose)),
        option(string(fields, "to", &whose)),
        span(fields, &whose),
        option(string(fields, "instead", &whose)),
    )
}

/// The QEMU versions that have an entry or argument: `since` (the release
/// that added it) and `until` (the one that removed it), as `"9.1"`.
fn span(fields: &Map<String, Value>, whose: &str) -> String {
    let bound = |key: &str| match string(fields, key, whose) {
        None => "None".to_string(),
        Some(text) => match text.split('.').map(str::parse::<u32>).collect::<Result<Vec<_>, _>>().as_deref() {
            Ok([major, minor]) => format!("Some(Version::new({major}, {minor}, 0))"),
            _ => fail(&format!("{TABLE}: {whose}: {key} is {text:?}, not a release such as \"9.1\"")),
        },
    };
    let (since, until) = (bound("since"), bound("until"));
    if since == "None" && until == "None" && fields.contains_key("instead") {
        fail(&format!("{TABLE}: {whose}: `instead` says what to use where it is missing: give since or until"));
    }
    let release = |key| {
        string(fields, key, whose).map(|text| text.split('.').map(|p| p.parse().unwrap_or(0)).collect::<Vec<u32>>())
    };
    if let (Some(from), Some(to)) = (release("since"), release("until"))
        && from >= to
    {
        fail(&format!("{TABLE}: {whose}: since must come before until"));
    }
    format!("Span {{ since: {since}, until: {until} }}")
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
