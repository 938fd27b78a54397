//! The human command table: data from grammar/commands.json, compiled into
//! the binary by `build.rs`. Translation, `.help`, completion and hints all
//! read this one table; `tests/table.rs` checks it against a real QEMU
//! and against every recorded one.

use crate::language::version::{Span, Version};

/// One human command, such as `powerdown` or `info status`.
#[derive(Debug)]
pub struct Entry {
    /// As a person types it; `info X` entries have two words.
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    /// The QMP command it becomes; absent for HMP-only commands, which are
    /// passed through as text.
    pub qmp: Option<&'static str>,
    /// Arguments in HMP's positional order.
    pub args: &'static [ArgSpec],
    pub help: &'static str,
    /// A line that uses it; tests send it to a real QEMU.
    pub example: &'static str,
    /// The QEMU versions that have it.
    pub span: Span,
    /// What to use where a QEMU lacks it.
    pub instead: Option<&'static str>,
}

/// One argument of a table command.
#[derive(Debug)]
pub struct ArgSpec {
    /// The name accepted in `name=value` form.
    pub name: &'static str,
    pub kind: ArgType,
    pub optional: bool,
    /// A flag such as `-f` that sets this (boolean) argument to true.
    pub flag: Option<&'static str>,
    /// The QMP argument (dotted for nested) when it differs from `name`.
    pub to: Option<&'static str>,
    /// A flag that changes how the line is read and is not sent itself
    /// (`qom-set -j`: the value is JSON).
    pub local: bool,
    /// The QEMU versions whose command has it.
    pub span: Span,
    /// What to use where a QEMU lacks it.
    pub instead: Option<&'static str>,
}

/// How an argument's text becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// Taken as a string, even when it looks like a number.
    Str,
    /// An integer, decimal or `0x` hex.
    Int,
    /// `on`/`off`, `true`/`false`, `yes`/`no`.
    Bool,
    /// Bytes; a bare number is bytes, `K`, `M`, `G`, `T` suffixes multiply.
    Size,
    /// A size as HMP's `block_resize` reads it (`qemu_strtosz_MiB`): a bare
    /// number (a fraction too) is MiB, suffixes B K M G T P E in either
    /// case, `0x` hex; bytes out.
    SizeMb,
    /// MiB as HMP's `balloon` reads them: a number in C's base 0 (`0x40`,
    /// `010` is 8); bytes out. A size suffix (`1G`) is taken too, where HMP
    /// would refuse it.
    IntMb,
    /// A key list such as `ctrl-alt-delete`, sent as QKeyCode values.
    Keys,
    /// A QemuOpts string `driver,prop=value,...`, sent as a flat object
    /// whose first bare item becomes this argument.
    Opts,
    /// A QOM property's value (`qom-set`), read by the type QEMU reports
    /// for the property the line names; in HMP's positional form, the rest
    /// of the line as typed.
    Property,
}

impl ArgType {
    /// How the type is shown in `.help` and hints.
    pub fn describe(self) -> &'static str {
        match self {
            ArgType::Str => "string",
            ArgType::Int => "int",
            ArgType::Bool => "on|off",
            ArgType::Size => "size",
            ArgType::SizeMb => "size in MB",
            ArgType::IntMb => "size in MB",
            ArgType::Keys => "keys like ctrl-alt-delete",
            ArgType::Opts => "driver,prop=value,...",
            ArgType::Property => "the property's type",
        }
    }
}

impl ArgSpec {
    /// The QMP argument this fills.
    pub fn target(&self) -> &str {
        self.to.unwrap_or(self.name)
    }

    /// How a person typed it: its flag (`-b`) or its name.
    pub fn shown(&self) -> &str {
        self.flag.unwrap_or(self.name)
    }
}

/// Why `version` has no `what` (a command or an argument that `span` says
/// which versions have), and what to use instead; `None` when it has it.
pub fn missing_in(what: &str, span: Span, instead: Option<&str>, version: Version) -> Option<String> {
    let why = span.missing_in(version)?;
    let instead = instead.map(|text| format!(": {text}")).unwrap_or_default();
    Some(format!("QEMU {version} has no {what} ({why}){instead}"))
}

impl Entry {
    /// Every name this entry answers to.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }

    /// Whether some QEMU version lacks it or one of its arguments: binding
    /// it then needs to know the version.
    pub fn is_versioned(&self) -> bool {
        self.span.is_limited() || self.args.iter().any(|a| a.span.is_limited())
    }

    /// Whether it takes a QemuOpts string (and so any property by name).
    pub fn has_opts(&self) -> bool {
        self.args.iter().any(|a| a.kind == ArgType::Opts)
    }

    /// A usage line such as `eject [-f] device` or `screendump filename [-f format]`.
    pub fn usage(&self) -> String {
        let mut text = self.name.to_string();
        for arg in self.args {
            let shown = match &arg.flag {
                Some(flag) if arg.kind == ArgType::Bool => flag.to_string(),
                Some(flag) => format!("{flag} {}", arg.name),
                None => arg.name.to_string(),
            };
            if arg.optional || arg.flag.is_some() {
                text.push_str(&format!(" [{shown}]"));
            } else {
                text.push_str(&format!(" {shown}"));
            }
        }
        text
    }
}

/// The table, in the order of grammar/commands.json.
pub fn table() -> &'static [Entry] {
    TABLE
}

static TABLE: &[Entry] = include!(concat!(env!("OUT_DIR"), "/table.rs"));

/// Names some QEMU version lacks something of, sorted for a binary search,
/// so a line that has nothing versioned (most) asks no more than that.
struct Versioned {
    /// Table names and aliases (`info` topics without `info`, apart).
    names: Vec<&'static str>,
    topics: Vec<&'static str>,
    /// QMP commands of entries with a versioned argument.
    qmp: Vec<&'static str>,
}

fn versioned() -> &'static Versioned {
    static VERSIONED: std::sync::OnceLock<Versioned> = std::sync::OnceLock::new();
    VERSIONED.get_or_init(|| {
        let mut versioned = Versioned { names: Vec::new(), topics: Vec::new(), qmp: Vec::new() };
        for entry in table().iter().filter(|e| e.is_versioned()) {
            for name in entry.names() {
                match name.strip_prefix("info ") {
                    Some(topic) => versioned.topics.push(topic),
                    None => versioned.names.push(name),
                }
            }
            if let Some(qmp) = entry.qmp.filter(|_| entry.args.iter().any(|a| a.span.is_limited())) {
                versioned.qmp.push(qmp);
            }
        }
        for list in [&mut versioned.names, &mut versioned.topics, &mut versioned.qmp] {
            list.sort_unstable();
        }
        versioned
    })
}

/// Whether the entry named `name` (a word; `info` with `topic`) is
/// [`Entry::is_versioned`].
pub fn is_versioned(name: &str, topic: Option<&str>) -> bool {
    match topic {
        Some(topic) if name == "info" => versioned().topics.binary_search(&topic).is_ok(),
        _ => versioned().names.binary_search(&name).is_ok(),
    }
}

/// Whether an entry for QMP command `command` has an argument some QEMU
/// version lacks (what its `key=value` form may then lack too).
pub fn has_versioned_arguments(command: &str) -> bool {
    versioned().qmp.binary_search(&command).is_ok()
}

/// The entry a person means by `name` (one word or `info X`), by its name
/// or an alias.
pub fn lookup(name: &str) -> Option<&'static Entry> {
    table().iter().find(|e| e.names().any(|n| n == name))
}
