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

use serde::Deserialize;
use serde_json::Value;

#[path = "src/language/hmp/listing.rs"]
mod listing;

const TABLE: &str = "grammar/commands.json";
const GRAMMAR: &str = "grammar";

fn main() {
    println!("cargo::rerun-if-changed={TABLE}");
    let text = fs::read_to_string(TABLE).unwrap_or_else(|e| fail(&format!("cannot read {TABLE}: {e}")));
    let entries: Vec<Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| fail(&format!("{TABLE} is not a JSON list: {e}")));
    let mut code = String::from("&[\n");
    for entry in entries {
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

/// One command of the table, as grammar/commands.json writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    qmp: Option<String>,
    /// Read one by one ([`Arg`]), so that an error names the argument.
    #[serde(default)]
    args: Vec<Value>,
    help: String,
    example: String,
    since: Option<String>,
    until: Option<String>,
    instead: Option<String>,
}

/// One argument of an entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arg {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    optional: bool,
    flag: Option<String>,
    to: Option<String>,
    #[serde(default)]
    local: bool,
    since: Option<String>,
    until: Option<String>,
    instead: Option<String>,
}

/// src/table.rs's `ArgType`s, by the names the table uses: `size-mb` is
/// `ArgType::SizeMb`.
const ARG_TYPES: &[&str] = &["str", "int", "bool", "size", "size-mb", "int-mb", "keys", "opts", "property"];

/// The `ArgType` variant a table type names, if it names one.
fn variant(kind: &str) -> Option<String> {
    let camel = |part: &str| {
        let mut chars = part.chars();
        chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
    };
    ARG_TYPES.contains(&kind).then(|| kind.split('-').map(camel).collect())
}

/// Reads `value` as a `T`, or fails the build naming `whose`.
fn read<T: for<'de> Deserialize<'de>>(value: Value, whose: &str) -> T {
    T::deserialize(value).unwrap_or_else(|e| fail(&format!("{TABLE}: {whose}: {e}")))
}

fn entry_code(entry: Value) -> String {
    let named = entry.get("name").and_then(Value::as_str).map(|name| format!("entry {name:?}"));
    let whose = named.unwrap_or_else(|| format!("an entry ({entry})"));
    let entry: Entry = read(entry, &whose);
    let aliases = entry.aliases.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ");
    let args: String = entry.args.into_iter().map(|arg| arg_code(arg, &whose)).collect();
    let span = span(&entry.since, &entry.until, &entry.instead, &whose);
    let mut code = String::new();
    let _ = writeln!(
        code,
        "    Entry {{ name: {:?}, aliases: &[{aliases}], qmp: {}, args: &[{args}], help: {:?}, example: {:?}, \
         span: {span}, instead: {} }},",
        entry.name,
        option(&entry.qmp),
        entry.help,
        entry.example,
        option(&entry.instead),
    );
    code
}

fn arg_code(arg: Value, whose: &str) -> String {
    let named = arg.get("name").and_then(Value::as_str).map(|name| format!("{whose}, argument {name:?}"));
    let whose = named.unwrap_or_else(|| format!("{whose}, an argument ({arg})"));
    let arg: Arg = read(arg, &whose);
    let Some(kind) = variant(&arg.kind) else {
        fail(&format!("{TABLE}: {whose}: unknown type {:?} (known: {})", arg.kind, ARG_TYPES.join(", ")))
    };
    if arg.local && (arg.kind != "bool" || arg.flag.is_none()) {
        fail(&format!("{TABLE}: {whose}: only a bool flag can be local"));
    }
    format!(
        "ArgSpec {{ name: {:?}, kind: ArgType::{kind}, optional: {}, flag: {}, to: {}, local: {}, \
         span: {}, instead: {} }}, ",
        arg.name,
        arg.optional,
        option(&arg.flag),
        option(&arg.to),
        arg.local,
        span(&arg.since, &arg.until, &arg.instead, &whose),
        option(&arg.instead),
    )
}

/// The QEMU versions that have an entry or argument: `since` (the release
/// that added it) and `until` (the one that removed it), as `"9.1"`.
fn span(since: &Option<String>, until: &Option<String>, instead: &Option<String>, whose: &str) -> String {
    let release = |key: &str, text: &Option<String>| {
        let text = text.as_deref()?;
        match text.split('.').map(str::parse::<u32>).collect::<Result<Vec<_>, _>>().as_deref() {
            Ok([major, minor]) => Some((*major, *minor)),
            _ => fail(&format!("{TABLE}: {whose}: {key} is {text:?}, not a release such as \"9.1\"")),
        }
    };
    let (from, to) = (release("since", since), release("until", until));
    if from.is_none() && to.is_none() && instead.is_some() {
        fail(&format!("{TABLE}: {whose}: `instead` says what to use where it is missing: give since or until"));
    }
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        fail(&format!("{TABLE}: {whose}: since must come before until"));
    }
    let bound = |release: Option<(u32, u32)>| {
        release.map_or("None".to_string(), |(major, minor)| format!("Some(Version::new({major}, {minor}, 0))"))
    };
    format!("Span {{ since: {}, until: {} }}", bound(from), bound(to))
}

fn option(text: &Option<String>) -> String {
    text.as_deref().map_or("None".into(), |text| format!("Some({text:?})"))
}
