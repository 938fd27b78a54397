//! The command table (grammar/commands.json) checked as data, then against
//! QEMU, which is the authority: the real one under test and every one
//! recorded under grammar/qemu-*/. Every QMP command it names is in
//! `query-commands`, every argument fills an argument that command has in
//! `query-qmp-schema` with a value of the type it wants, exactly in the
//! versions the table says have it (`since`, `until`), every HMP-only
//! command is in HMP's `help`, and every example's translation has a shape
//! QEMU accepts.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::{HashMap, HashSet};

use common::{Qemu, qmpsh, query, query_with};
use qmpsh::language::table::{ArgSpec, ArgType, Entry, table};
use qmpsh::language::version::{self, Span, Version};
use serde_json::{Value, json};

/// The version of the QEMU under test.
fn version_of(qemu: &Qemu) -> Version {
    Version::from_json(&query(&qemu.socket, "query-version")["return"]["qemu"]).unwrap()
}

#[test]
fn names_are_unique_and_examples_use_their_own_entry() {
    let mut seen = HashSet::new();
    for entry in table() {
        for name in entry.names() {
            assert!(seen.insert(name.to_string()), "{name} appears twice in the table");
        }
        let word = entry.example.split([' ', '/']).next().unwrap();
        let typed = if entry.name.starts_with("info ") { entry.example } else { word };
        assert!(entry.names().any(|n| n == typed), "{}: example {:?} uses another command", entry.name, entry.example);
        assert!(!entry.help.is_empty(), "{} has no help", entry.name);
        let flags_are_switches_or_options = entry.args.iter().all(|a| a.flag.is_none() || a.optional);
        assert!(flags_are_switches_or_options, "{}: a flag argument must be optional", entry.name);
        let opts = entry.args.iter().filter(|a| a.kind == ArgType::Opts).count();
        assert!(opts <= 1, "{}: at most one QemuOpts argument", entry.name);
    }
}

#[test]
fn every_example_translates_without_a_connection() {
    for entry in table() {
        // For the newest recorded QEMU that has it.
        let qemu = version::recorded().iter().rev().find(|q| entry.span.contains(q.version)).unwrap();
        let version = format!("{}.{}", qemu.version.major, qemu.version.minor);
        let run = qmpsh(&["--dry-run", "--qemu", &version], &format!("{}\n", entry.example));
        // A QOM property's type only a QEMU knows: --dry-run says so.
        if entry.args.iter().any(|a| a.kind == ArgType::Property) {
            assert_eq!(run.code, 2, "{}: {run:?}", entry.example);
            assert!(run.stderr.contains("without a QEMU"), "{}: {}", entry.example, run.stderr);
            continue;
        }
        assert_eq!(run.code, 0, "{}: {}", entry.example, run.stderr);
        let message: serde_json::Value = serde_json::from_str(run.stdout.trim_end()).unwrap();
        let expected = entry.qmp.unwrap_or("human-monitor-command");
        assert_eq!(message["execute"], expected, "{}", entry.example);
    }
}

#[test]
fn every_qmp_command_in_the_table_exists_in_qemu() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let version = version_of(&qemu);
    let reply = query(&qemu.socket, "query-commands");
    let known: HashSet<&str> = reply["return"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    let mut missing: Vec<&str> = table()
        .iter()
        .filter(|e| e.span.contains(version))
        .filter_map(|e| e.qmp)
        .filter(|c| !known.contains(c))
        .collect();
    if !known.contains("human-monitor-command") {
        missing.push("human-monitor-command");
    }
    assert!(missing.is_empty(), "QEMU lacks: {missing:?}");
}

/// QEMU's own description of its QMP commands and their arguments, as
/// `query-qmp-schema` gives it: entities by (often numeric) name.
struct Schema(HashMap<String, Value>);

impl Schema {
    fn of(qemu: &Qemu) -> Schema {
        Schema::from_list(&query(&qemu.socket, "query-qmp-schema")["return"])
    }

    /// A QEMU recorded under grammar/qemu-MAJOR.MINOR/, read from its file.
    fn recorded(version: Version) -> Schema {
        let file =
            format!("{}/grammar/qemu-{}.{}/qmp-schema.json", env!("CARGO_MANIFEST_DIR"), version.major, version.minor);
        Schema::from_list(&serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap())
    }

    fn from_list(entities: &Value) -> Schema {
        let entities = entities.as_array().unwrap();
        Schema(entities.iter().map(|e| (e["name"].as_str().unwrap().to_string(), e.clone())).collect())
    }

    fn entity(&self, name: &str) -> &Value {
        self.0.get(name).unwrap_or_else(|| panic!("the schema names {name} but does not describe it"))
    }

    /// An object type's members, its variants' members included (an
    /// argument may exist only for one value of the tag, as `display` for
    /// `set_password protocol=vnc`).
    fn members(&self, object: &str) -> Vec<&Value> {
        let entity = self.entity(object);
        let mut members: Vec<&Value> = entity["members"].as_array().into_iter().flatten().collect();
        for variant in entity["variants"].as_array().into_iter().flatten() {
            members.extend(self.members(variant["type"].as_str().unwrap()));
        }
        members
    }

    /// The member a dotted argument (`file.filename`) names in the
    /// arguments of `command`.
    fn argument(&self, command: &str, target: &str) -> Option<&Value> {
        let mut object = self.entity(command)["arg-type"].as_str().unwrap().to_string();
        let mut found = None;
        for part in target.split('.') {
            let member = *self.members(&object).iter().find(|m| m["name"] == part)?;
            object = member["type"].as_str().unwrap().to_string();
            found = Some(member);
        }
        found
    }

    /// The JSON types a value of schema type `name` may have: a builtin's
    /// own, `enum`, `array`, `object`, or any of an alternate's.
    fn json_types(&self, name: &str) -> Vec<String> {
        let entity = self.entity(name);
        match entity["meta-type"].as_str().unwrap() {
            "builtin" => vec![entity["json-type"].as_str().unwrap().to_string()],
            "alternate" => entity["members"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|m| self.json_types(m["type"].as_str().unwrap()))
                .collect(),
            other => vec![other.to_string()],
        }
    }
}

/// The JSON types an argument of this kind sends, as the schema names them.
fn sent_as(kind: ArgType) -> &'static [&'static str] {
    match kind {
        // A QemuOpts string's first item fills a name: a string or an enum.
        ArgType::Str | ArgType::Opts => &["string", "enum"],
        ArgType::Int | ArgType::Size | ArgType::SizeMb | ArgType::IntMb => &["int"],
        ArgType::Bool => &["boolean"],
        ArgType::Keys => &["array"],
        ArgType::Property => &["value"],
    }
}

/// Table arguments that fill a QMP argument QEMU has deprecated, and why
/// the table still does: a new one fails the test until it is listed here.
const DEPRECATED_TARGETS: &[(&str, &str, &str)] = &[
    ("eject", "device", "HMP's eject names a block backend, which QMP takes only as the deprecated device"),
    ("blockdev-change-medium", "device", "HMP's change names a block backend, which QMP takes only as device"),
];

/// What is wrong with `spec`, an argument of `entry`, by QEMU's schema.
fn argument_problem(schema: &Schema, entry: &Entry, spec: &ArgSpec) -> Option<String> {
    let command = entry.qmp?;
    let target = spec.target();
    let Some(member) = schema.argument(command, target) else {
        return Some(format!("{}: {} fills {command}'s {target}, which QEMU does not have", entry.name, spec.name));
    };
    let types = schema.json_types(member["type"].as_str().unwrap());
    let accepts = types.iter().any(|t| t == "value" || sent_as(spec.kind).contains(&t.as_str()));
    if !accepts {
        return Some(format!(
            "{}: {} sends {:?}, but {command}'s {target} wants {types:?}",
            entry.name, spec.name, spec.kind
        ));
    }
    // QEMU marks an optional member with a default (`null` if none).
    if spec.optional && member.get("default").is_none() {
        return Some(format!("{}: {} is optional, but {command} needs {target}", entry.name, spec.name));
    }
    let deprecated = member["features"].as_array().is_some_and(|f| f.contains(&json!("deprecated")));
    if deprecated && !DEPRECATED_TARGETS.iter().any(|(c, t, _)| *c == command && *t == target) {
        return Some(format!("{}: {} fills {command}'s {target}, which QEMU has deprecated", entry.name, spec.name));
    }
    None
}

/// What is wrong with the table by the schema of QEMU `version`: for what
/// that version has (by the table's `since` and `until`), every argument
/// fills an argument of its command with the type it wants, and every
/// argument the command needs is in reach; what the table says it lacks,
/// its schema lacks too.
fn table_problems(entries: &[Entry], schema: &Schema, version: Version) -> Vec<String> {
    let mut problems = Vec::new();
    let has_command = |command: &str| schema.0.get(command).is_some_and(|e| e["meta-type"] == "command");
    for entry in entries.iter().filter(|e| e.qmp.is_some()) {
        let command = entry.qmp.unwrap();
        if !entry.span.contains(version) {
            if has_command(command) {
                problems.push(format!("{}: the table says QEMU {version} lacks it, but it has {command}", entry.name));
            }
            continue;
        }
        // A local flag (`qom-set -j`) is how the line is read, not sent.
        for spec in entry.args.iter().filter(|spec| !spec.local) {
            if spec.span.contains(version) {
                problems.extend(argument_problem(schema, entry, spec));
            } else if schema.argument(command, spec.target()).is_some() {
                problems.push(format!(
                    "{}: the table says QEMU {version} lacks {}, but {command} has {}",
                    entry.name,
                    spec.name,
                    spec.target()
                ));
            }
        }
        // Whatever QMP cannot do without must be in reach: an argument of
        // the table's, or a QemuOpts item (which can set any property).
        let arg_type = schema.entity(command)["arg-type"].as_str().unwrap();
        for member in schema.entity(arg_type)["members"].as_array().into_iter().flatten() {
            let name = member["name"].as_str().unwrap();
            let reached = entry.has_opts()
                || entry.args.iter().any(|a| a.span.contains(version) && a.target().split('.').next() == Some(name));
            if member.get("default").is_none() && !reached {
                problems.push(format!("{}: {command} needs {name}, which no argument fills", entry.name));
            }
        }
    }
    problems
}

#[test]
fn every_argument_fills_an_argument_of_its_qmp_command_with_the_type_it_wants() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let version = version_of(&qemu);
    let problems = table_problems(table(), &Schema::of(&qemu), version);
    assert!(problems.is_empty(), "the table disagrees with QEMU {version}'s schema:\n{}", problems.join("\n"));
}

#[test]
fn the_table_agrees_with_every_recorded_qemu() {
    // Each recorded QEMU is a real one's schema and help, so the table's
    // versions are checked on every machine, whichever QEMU it runs.
    for qemu in version::recorded() {
        let problems = table_problems(table(), &Schema::recorded(qemu.version), qemu.version);
        assert!(problems.is_empty(), "the table disagrees with {}'s schema:\n{}", qemu.name(), problems.join("\n"));
        for entry in table().iter().filter(|e| e.qmp.is_none()) {
            let word = entry.name.split(' ').next().unwrap();
            let has = qemu.hmp_commands().usage(word).is_some();
            assert_eq!(has, entry.span.contains(qemu.version), "{}: does {} have {word}?", entry.name, qemu.name());
        }
    }
    // Every version limit is seen on both sides by the recorded QEMUs, so
    // the check above proves it rather than passing it by.
    let spans = table().iter().flat_map(|e| std::iter::once(e.span).chain(e.args.iter().map(|a| a.span)));
    for span in spans.filter(Span::is_limited) {
        let versions = version::recorded().iter().map(|q| q.version);
        let (inside, outside): (Vec<_>, Vec<_>) = versions.partition(|v| span.contains(*v));
        assert!(!inside.is_empty() && !outside.is_empty(), "{span:?}: no recorded QEMU on each side");
    }
}

#[test]
fn the_schema_check_tells_a_wrong_argument_or_version() {
    // The checks above, shown the mistakes they are there to catch.
    let Some(qemu) = Qemu::start(&[]) else { return };
    let schema = Schema::of(&qemu);
    let version = version_of(&qemu);
    let spec = |name: &'static str, kind: ArgType, optional: bool, span: Span| ArgSpec {
        name,
        kind,
        optional,
        flag: None,
        to: None,
        local: false,
        span,
        instead: None,
    };
    let balloon = |args: &'static [ArgSpec], span: Span| Entry {
        name: "balloon",
        aliases: &[],
        qmp: Some("balloon"),
        args,
        help: "",
        example: "",
        span,
        instead: None,
    };
    let problem = |name: &'static str, kind: ArgType, optional: bool| {
        argument_problem(&schema, &balloon(&[], Span::default()), &spec(name, kind, optional, Span::default()))
    };
    assert_eq!(problem("value", ArgType::SizeMb, false), None);
    assert!(problem("megabytes", ArgType::SizeMb, false).unwrap().contains("does not have"));
    assert!(problem("value", ArgType::Str, false).unwrap().contains("wants"));
    assert!(problem("value", ArgType::SizeMb, true).unwrap().contains("needs value"));

    // A version limit that leaves out the QEMU under test, on an argument
    // and on a command it has.
    let gone = Span { since: None, until: Some(version) };
    let args: &'static [ArgSpec] = Box::leak(Box::new([spec("value", ArgType::SizeMb, false, gone)]));
    let problems = table_problems(&[balloon(args, Span::default())], &schema, version);
    assert!(
        problems.iter().any(|p| p.contains(&format!("says QEMU {version} lacks value, but balloon has"))),
        "{problems:?}"
    );
    let problems = table_problems(&[balloon(&[], gone)], &schema, version);
    assert_eq!(problems, [format!("balloon: the table says QEMU {version} lacks it, but it has balloon")]);
    let args: &'static [ArgSpec] = Box::leak(Box::new([spec("value", ArgType::SizeMb, false, Span::default())]));
    assert_eq!(table_problems(&[balloon(args, Span::default())], &schema, version), Vec::<String>::new());
}

#[test]
fn every_hmp_only_command_is_one_hmp_has() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let help = |line: &str| {
        let reply =
            query_with(&qemu.socket, json!({"execute": "human-monitor-command", "arguments": {"command-line": line}}));
        reply["return"].as_str().unwrap().to_string()
    };
    // `help` lists `savevm [tag]`, `x /fmt addr`, ...; `help info` lists
    // `info registers [-a|vcpu]`, ...: a command's words come first.
    let (commands, topics) = (help("help"), help("help info"));
    let listed = |name: &str| {
        let listing = if name.starts_with("info ") { &topics } else { &commands };
        listing.lines().any(|line| {
            let mut words = line.split([' ', '|']);
            name.split(' ').all(|word| words.next() == Some(word))
        })
    };
    assert!(listed("info status") && listed("x") && !listed("info nothing") && !listed("nothing"));
    let version = version_of(&qemu);
    let hmp_only: Vec<&Entry> = table().iter().filter(|e| e.qmp.is_none()).collect();
    assert!(!hmp_only.is_empty());
    // HMP has each exactly in the versions the table says.
    let wrong: Vec<&str> =
        hmp_only.iter().filter(|e| listed(e.name) != e.span.contains(version)).map(|e| e.name).collect();
    assert!(wrong.is_empty(), "QEMU {version}'s HMP disagrees on {wrong:?}; its help:\n{commands}\n{topics}");
}

/// What QEMU says when a message has the wrong shape, as opposed to a
/// runtime failure such as a missing device.
fn is_shape_error(stderr: &str) -> bool {
    ["CommandNotFound", "Parameter '", "Invalid parameter", "unknown command"].iter().any(|s| stderr.contains(s))
}

#[test]
fn qemu_accepts_the_shape_of_every_example() {
    let Some(mut qemu) = Qemu::start(&[]) else {
        return;
    };
    let socket = qemu.socket_arg();
    let version = version_of(&qemu);
    let (quit, others): (Vec<_>, Vec<_>) = table().iter().partition(|e| e.qmp == Some("quit"));
    let mut refused = Vec::new();
    for entry in others {
        let run = qmpsh(&[&socket, "-c", entry.example], "");
        if !entry.span.contains(version) {
            // What this QEMU lacks is refused by qmpsh itself, naming it.
            let said = format!("line 1, column 1: QEMU {version} has no `{}`", entry.name);
            assert!(run.code == 2 && run.stderr.contains(&said), "{}: {run:?}", entry.example);
            continue;
        }
        // 0: it worked; 1: QEMU refused at run time (no such device, ...).
        let acceptable = matches!(run.code, 0 | 1) && !is_shape_error(&run.stderr);
        if !acceptable {
            refused.push(format!("{} (exit {}): {}", entry.example, run.code, run.stderr.trim_end()));
        }
    }
    assert!(refused.is_empty(), "QEMU or qmpsh refused the shape of:\n{}", refused.join("\n"));
    for entry in quit {
        assert_eq!(qmpsh(&[&socket, "-c", entry.example], "").code, 0);
    }
    assert!(qemu.exits_within(std::time::Duration::from_secs(5)));
}
