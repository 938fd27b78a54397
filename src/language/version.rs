//! QEMU versions: the number a QEMU reports (in its greeting and
//! `query-version`), and the QEMUs recorded under grammar/, whose schema
//! and HMP command list serve `--dry-run` without a connection.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde_json::Value as Json;

use crate::language::hmp::HmpCommands;
use crate::language::properties::{self, Properties};
use crate::language::schema::Schema;

/// A QEMU release, `major.minor.micro`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, micro: u32) -> Version {
        Version { major, minor, micro }
    }

    /// `7.2`, `10.0.2`: two or three numbers.
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.split('.').map(|part| {
            let digits = !part.is_empty() && part.len() <= 6 && part.bytes().all(|b| b.is_ascii_digit());
            digits.then(|| part.parse::<u32>().ok()).flatten()
        });
        let major = parts.next()??;
        let minor = parts.next()??;
        let micro = parts.next().unwrap_or(Some(0))?;
        parts.next().is_none().then_some(Version { major, minor, micro })
    }

    /// The `{"major": 7, "minor": 2, "micro": 22}` object of a greeting's
    /// `version.qemu` or `query-version`'s `qemu`.
    pub fn from_json(qemu: &Json) -> Option<Version> {
        let part = |key: &str| qemu.get(key).and_then(Json::as_u64).and_then(|n| u32::try_from(n).ok());
        Some(Version { major: part("major")?, minor: part("minor")?, micro: part("micro")? })
    }

    /// The version a QMP greeting announces.
    pub fn of_greeting(greeting: &Json) -> Option<Version> {
        Version::from_json(greeting.get("QMP")?.get("version")?.get("qemu")?)
    }

    /// `9.1` for a release's first version, else `9.1.2`: how QEMU's
    /// documents name the release that changed something.
    pub fn short(&self) -> String {
        match self.micro {
            0 => format!("{}.{}", self.major, self.minor),
            micro => format!("{}.{}.{micro}", self.major, self.minor),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// Which QEMU versions have something: from `since` on, and before `until`
/// (the release that removed it). Both open when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub since: Option<Version>,
    pub until: Option<Version>,
}

impl Span {
    pub fn contains(&self, version: Version) -> bool {
        self.since.is_none_or(|since| since <= version) && self.until.is_none_or(|until| version < until)
    }

    /// Whether some version lacks it.
    pub fn is_limited(&self) -> bool {
        self.since.is_some() || self.until.is_some()
    }

    /// Which QEMUs have it, for `.help`: `QEMU before 9.1`, `QEMU 8.1 and
    /// newer`; `None` when all do.
    pub fn describe(&self) -> Option<String> {
        match (self.since, self.until) {
            (None, None) => None,
            (Some(since), None) => Some(format!("QEMU {} and newer", since.short())),
            (None, Some(until)) => Some(format!("QEMU before {}", until.short())),
            (Some(since), Some(until)) => Some(format!("QEMU {} and newer, before {}", since.short(), until.short())),
        }
    }

    /// Why `version` lacks it, as a person reads it: `removed in QEMU
    /// 9.1` or `added in QEMU 8.1`; `None` when it has it.
    pub fn missing_in(&self, version: Version) -> Option<String> {
        match (self.since, self.until) {
            (Some(since), _) if version < since => Some(format!("added in QEMU {}", since.short())),
            (_, Some(until)) if version >= until => Some(format!("removed in QEMU {}", until.short())),
            _ => None,
        }
    }
}

/// A QEMU recorded under grammar/qemu-MAJOR.MINOR/ by `grammar/record`.
#[derive(Debug)]
pub struct Recorded {
    pub version: Version,
    /// Its package, as its greeting says (`Debian 1:7.2+dfsg-7+deb12u18+b3`).
    pub package: &'static str,
    schema_text: &'static str,
    hmp_help: &'static str,
    devices_text: &'static str,
    schema: OnceLock<Schema>,
    hmp_commands: OnceLock<HmpCommands>,
    devices: OnceLock<HashMap<&'static str, Properties>>,
}

impl Recorded {
    /// Its QMP schema, read on first use. The tests check that it parses;
    /// were it broken, lines would be bound without types rather than
    /// qmpsh failing.
    pub fn schema(&self) -> &Schema {
        self.schema.get_or_init(|| Schema::from_saved(self.schema_text).unwrap_or_default())
    }

    /// HMP's command list, as its `help` printed it.
    pub fn hmp_commands(&self) -> &HmpCommands {
        self.hmp_commands.get_or_init(|| HmpCommands::parse(self.hmp_help))
    }

    /// The properties of device type `name` (CPUs are not recorded).
    pub fn device(&self, name: &str) -> Option<&Properties> {
        self.devices.get_or_init(|| properties::recorded(self.devices_text)).get(name)
    }

    /// `(major, minor)`: micro versions are fixes, not features.
    fn release(&self) -> (u32, u32) {
        (self.version.major, self.version.minor)
    }

    /// `QEMU 10.0`, as `-v` and errors name it.
    pub fn name(&self) -> String {
        format!("QEMU {}.{}", self.version.major, self.version.minor)
    }
}

/// The recorded QEMUs, oldest first.
pub fn recorded() -> &'static [Recorded] {
    &RECORDED
}

// `RECORDED_COUNT` and `RECORDED`, written by build.rs from grammar/qemu-*/.
include!(concat!(env!("OUT_DIR"), "/recorded.rs"));

/// The newest recorded QEMU: what `--dry-run` types by unless told.
pub fn newest() -> &'static Recorded {
    // A constant index: build.rs refuses to build with no recorded QEMU.
    &RECORDED[RECORDED_COUNT - 1]
}

/// The recorded QEMU of the release `text` names (`7.2`, `10.0`; a micro
/// version such as `7.2.0` names its release too), or what to name
/// instead.
pub fn find(text: &str) -> Result<&'static Recorded, String> {
    let Some(wanted) = Version::parse(text) else {
        return Err(format!("`{text}` is not a QEMU version such as 10.0 (recorded: {})", releases()));
    };
    RECORDED
        .iter()
        .find(|r| r.release() == (wanted.major, wanted.minor))
        .ok_or_else(|| format!("QEMU {text} is not recorded (recorded: {}; or give --schema FILE)", releases()))
}

/// The recorded releases, as `--help` and errors list them: `7.2, 10.0`.
pub fn releases() -> String {
    RECORDED.iter().map(|r| format!("{}.{}", r.version.major, r.version.minor)).collect::<Vec<_>>().join(", ")
}

/// The recorded QEMU that is the very build a greeting announces (its
/// version and package), if one is.
pub fn recorded_build(greeting: &Json) -> Option<&'static Recorded> {
    let version = Version::of_greeting(greeting)?;
    let package = greeting.get("QMP")?.get("version")?.get("package")?.as_str()?;
    RECORDED.iter().find(|r| r.version == version && r.package == package.trim())
}

/// The newest recorded QEMU of `version`'s release or an older one (the
/// oldest when all are newer): the best guess at its HMP commands without
/// asking.
pub fn nearest(version: Version) -> &'static Recorded {
    RECORDED.iter().rev().find(|r| r.release() <= (version.major, version.minor)).unwrap_or(&RECORDED[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order_as_releases() {
        assert_eq!(Version::parse("7.2"), Some(Version::new(7, 2, 0)));
        assert_eq!(Version::parse("10.0.2"), Some(Version::new(10, 0, 2)));
        for bad in ["", "7", "7.", ".2", "7.2.1.0", "7.x", "+7.2", "7.2 ", "99999999.0"] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
        assert!(Version::new(9, 1, 0) > Version::new(9, 0, 5));
        assert!(Version::new(10, 0, 0) > Version::new(9, 2, 3));
        assert_eq!(Version::new(9, 1, 0).short(), "9.1");
        assert_eq!(Version::new(7, 2, 22).to_string(), "7.2.22");
    }

    #[test]
    fn a_span_says_why_a_version_lacks_something() {
        let removed = Span { since: None, until: Some(Version::new(9, 1, 0)) };
        assert!(removed.contains(Version::new(9, 0, 2)));
        assert_eq!(removed.missing_in(Version::new(9, 1, 0)).as_deref(), Some("removed in QEMU 9.1"));
        let added = Span { since: Some(Version::new(8, 1, 0)), until: None };
        assert_eq!(added.missing_in(Version::new(7, 2, 22)).as_deref(), Some("added in QEMU 8.1"));
        assert!(added.contains(Version::new(10, 0, 0)) && !Span::default().is_limited());
        assert_eq!(removed.describe().as_deref(), Some("QEMU before 9.1"));
        assert_eq!(added.describe().as_deref(), Some("QEMU 8.1 and newer"));
        assert_eq!(Span::default().describe(), None);
    }

    #[test]
    fn recorded_qemus_are_found_by_release() {
        assert!(recorded().windows(2).all(|w| w[0].version < w[1].version), "oldest first");
        let newest = newest();
        assert_eq!(find(&newest.version.short()).map(|r| r.version), Ok(newest.version));
        assert_eq!(find(&newest.version.to_string()).map(|r| r.version), Ok(newest.version));
        let micro_zero = format!("{}.{}.0", newest.version.major, newest.version.minor);
        assert_eq!(find(&micro_zero).map(|r| r.version), Ok(newest.version));
        let release = Version { micro: 0, ..newest.version };
        assert_eq!(nearest(release).version, newest.version, "a release's .0 is that release");
        assert!(find("1.0").unwrap_err().contains("not recorded"));
        assert!(find("ten").unwrap_err().contains("not a QEMU version"));
        assert_eq!(nearest(Version::new(99, 0, 0)).version, newest.version);
        assert_eq!(nearest(Version::new(0, 1, 0)).version, recorded()[0].version);
        for qemu in recorded() {
            assert!(qemu.schema().has_command("query-qmp-schema"), "{}", qemu.name());
            assert!(qemu.hmp_commands().usage("info").is_some(), "{}", qemu.name());
            let e1000 = qemu.device("e1000").map(|p| p.kind("bootindex"));
            assert_eq!(e1000, Some(crate::language::qemu_text::Kind::Int), "{}", qemu.name());
        }
    }
}
