//! The REPL's history file: where it lives, kept private, read and
//! written, and which lines never go in.
//!
//! It holds what was typed at QEMU, so it has the `-l` log's rules
//! ([`crate::private`]): its folder (`$XDG_STATE_HOME/qmpsh`) must be the
//! user's and not a symlink, and is made 0700; the file, opened inside
//! that folder, must be a regular file of the user's and not a symlink,
//! and is made 0600. qmpsh reads and appends to it through that one handle:
//! rustyline's own file history opens the path anew each time, following
//! a symlink, and chmods and rewrites whatever it finds. The format is
//! still rustyline's (`#V2`, then one entry a line with `\` and line
//! breaks escaped), so a history written before loads.
//!
//! History is best effort: a file or folder refused means no history,
//! never a failed shell.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::private::{self, Access};

/// How many entries the history keeps.
pub const KEPT: usize = 1000;

/// The first line of rustyline's format, which escapes `\` and line breaks.
const V2: &str = "#V2";

/// `$XDG_STATE_HOME/qmpsh/history`, else `~/.local/state/qmpsh/history`.
/// Relative or empty variables are ignored, as the XDG spec says.
pub fn path() -> Option<PathBuf> {
    let absolute = |var: &str| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute());
    let state = absolute("XDG_STATE_HOME").or_else(|| absolute("HOME").map(|home| home.join(".local/state")))?;
    Some(state.join("qmpsh").join("history"))
}

/// An open history file, checked.
pub struct History {
    file: File,
}

/// Opens the history at `path` (see the module doc); the error names the
/// path refused and why.
pub fn open(path: &Path) -> Result<History, String> {
    let (Some(folder), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(format!("{} is not a file's path", path.display()));
    };
    let folder_fd = private::open_folder(folder).map_err(|why| format!("{}: {why}", folder.display()))?;
    let file = private::open_file(&folder_fd, Path::new(name), Access::ReadAppend)
        .map_err(|why| format!("{}: {why}", path.display()))?;
    Ok(History { file })
}

impl History {
    /// The saved entries, oldest first, at most [`KEPT`]. A file that has
    /// grown to twice that, or is in rustyline's first format, is written
    /// anew with them.
    pub fn load(&mut self) -> io::Result<Vec<String>> {
        let _lock = Lock::on(&self.file)?;
        let mut file = &self.file;
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes);
        let v2 = text.lines().next() == Some(V2);
        let mut entries: Vec<String> = text
            .lines()
            .skip(usize::from(v2))
            .filter(|l| !l.is_empty())
            .map(|l| if v2 { unescape(l) } else { l.to_string() })
            .collect();
        let stored = entries.len();
        entries.drain(..stored.saturating_sub(KEPT));
        if (!v2 && !text.is_empty()) || stored >= 2 * KEPT {
            file.set_len(0)?;
            let mut all = format!("{V2}\n");
            for entry in &entries {
                all.push_str(&escape(entry));
                all.push('\n');
            }
            file.write_all(all.as_bytes())?;
        }
        Ok(entries)
    }

    /// Appends one entry, in one write (the file is opened to append, so
    /// two shells at once do not overwrite each other's).
    pub fn append(&mut self, entry: &str) -> io::Result<()> {
        let _lock = Lock::on(&self.file)?;
        let header = if self.file.metadata()?.len() == 0 { format!("{V2}\n") } else { String::new() };
        (&self.file).write_all(format!("{header}{}\n", escape(entry)).as_bytes())
    }
}

/// An exclusive lock on the file while it is read or written, released
/// when dropped.
struct Lock<'a>(&'a File);

impl<'a> Lock<'a> {
    fn on(file: &'a File) -> io::Result<Lock<'a>> {
        rustix::fs::flock(file, FlockOperation::LockExclusive)?;
        Ok(Lock(file))
    }
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0, FlockOperation::Unlock);
    }
}

/// An entry as one line: `\` and line breaks escaped.
fn escape(entry: &str) -> String {
    entry.replace('\\', "\\\\").replace('\n', "\\n")
}

/// An entry from its line; an escape other than `\\` and `\n` is kept.
fn unescape(line: &str) -> String {
    let mut entry = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('n')) => entry.push('\n'),
            ('\\', Some('\\')) => entry.push('\\'),
            _ => {
                entry.push(c);
                continue;
            }
        }
        chars.next();
    }
    entry
}

/// Whether a line may carry a secret: `set_password`, a `secret` object,
/// any argument named like a password. Such lines are never saved; a
/// harmless line that merely mentions the words is left out too. The
/// words are looked for in the line as typed and with its escapes
/// decoded: QEMU reads `"pa\u0073sword"` in JSON as `password`, and qmpsh
/// reads escapes in double-quoted values and Python literals.
pub fn carries_secret(line: &str) -> bool {
    [line.to_ascii_lowercase(), decoded(line).to_ascii_lowercase()].iter().any(|text| {
        ["password", "secret", "passwd", "cookie"].iter().any(|word| text.contains(word)) || sets_data(text)
    })
}

/// `line` with every escape a string in it may use decoded, wherever it
/// is (a decoded word outside a string only makes the test stricter):
/// JSON's and Python's `\uXXXX` (a surrogate pair as one character),
/// Python's `\xXX`, `\UXXXXXXXX` and octal `\ooo`, and any other
/// escaped character as itself.
fn decoded(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some((before, escape)) = rest.find('\\').and_then(|at| rest.split_at_checked(at)) {
        out.push_str(before);
        let mut chars = escape.chars();
        chars.next(); // the backslash
        let Some(kind) = chars.next() else { break };
        let after = chars.as_str();
        let hex = |width: usize| after.get(..width).and_then(hex_value);
        let (code, used) = match kind {
            'x' => (hex(2), 2),
            'u' => (hex(4), 4),
            'U' => (hex(8), 8),
            '0'..='7' => {
                let more = after.chars().take_while(|c| c.is_digit(8)).take(2).count();
                let digits: String = std::iter::once(kind).chain(after.chars().take(more)).collect();
                (u32::from_str_radix(&digits, 8).ok(), more)
            }
            _ => (None, 0),
        };
        rest = match code {
            // A high surrogate and its low half, as JSON writes U+10000 up.
            Some(high @ 0xD800..=0xDBFF) if kind == 'u' => {
                let low = after.get(4..6).filter(|u| *u == "\\u").and_then(|_| after.get(6..10));
                let low = low.and_then(hex_value).filter(|l| (0xDC00..=0xDFFF).contains(l));
                match low {
                    Some(low) => {
                        out.extend(char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)));
                        after.get(10..).unwrap_or_default()
                    }
                    None => after.get(4..).unwrap_or_default(),
                }
            }
            Some(code) => {
                out.extend(char::from_u32(code));
                after.get(used..).unwrap_or_default()
            }
            None => {
                out.push(kind);
                after
            }
        };
    }
    out.push_str(rest);
    out
}

/// Hex digits (nothing else, not even a sign) as a number.
fn hex_value(digits: &str) -> Option<u32> {
    digits.chars().all(|c| c.is_ascii_hexdigit()).then(|| u32::from_str_radix(digits, 16).ok()).flatten()
}

/// `qom-set` of a `data` property (a secret object's value, whatever the
/// object's path is called), in any spelling: `qom-set PATH data VALUE`,
/// `property=data`, raw JSON, through `hmp`.
fn sets_data(lower: &str) -> bool {
    let words = || lower.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    words().any(|w| w == "qom-set" || w == "qom_set") && words().any(|w| w == "data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, Permissions};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secret_lines_are_recognised() {
        for line in [
            "set_password vnc hunter2",
            "object-add qom-type=secret id=s0 data=x",
            "object_add secret,id=s0,data=x",
            "change-vnc-password password=x",
            r#"{"execute": "x", "arguments": {"new-Password": "x"}}"#,
            "qom-set /objects/s0 data hunter2",
            "qom-set path=/objects/s0 property=data value=hunter2",
            "hmp qom-set /objects/s0 data hunter2",
            r#"{"execute": "qom-set", "arguments": {"path": "/objects/s0", "property": "data", "value": "x"}}"#,
            "blockdev-add driver=https node-name=h url=https://x/y cookie=session=abc",
        ] {
            assert!(carries_secret(line), "{line}");
        }
        assert!(!carries_secret("qom-list /machine"));
    }

    #[test]
    fn secrets_spelt_with_escapes_are_recognised() {
        for line in [
            r#"{"execute": "change-vnc-pa\u0073sword", "arguments": {"pa\u0073sword": "x"}}"#,
            r#"{"execute": "object-add", "arguments": {"qom-type": "\u0053ECRET", "id": "s0", "data": "x"}}"#,
            r#"object-add qom-type="s\u0065cret" id=s0 data=x"#,
            r#"qom-set path=/objects/s0 property="d\u0061ta" value=x"#,
            r"object-add qom-type=s0 props={'s\x65cret': 1, 'd\141ta': 2}",
            r"blockdev-add driver=raw node-name=r file={'driver': 'https', 'coo\U0000006bie': 'x'}",
            // A character past U+FFFF as JSON writes it, before the word.
            r#"{"execute": "x", "arguments": {"\ud83d\ude00pa\u0073swd": 1}}"#,
        ] {
            assert!(carries_secret(line), "{line}");
        }
        assert_eq!(decoded(r#"a\ud83d\ude00b\u00e9\x41\101\"\\u0041\ud800\u12"#), "a😀béAA\"\\u0041u12");
        assert!(!carries_secret(r#"{"execute": "query-status", "id": "\u0041"}"#));
    }

    #[test]
    fn entries_load_and_append_in_rustylines_format() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state/qmpsh/history");
        let mut history = open(&file).unwrap();
        assert!(history.load().unwrap().is_empty());
        history.append("info status").unwrap();
        history.append("{\"execute\":\n\"a\\\\b\"}").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "#V2\ninfo status\n{\"execute\":\\n\"a\\\\\\\\b\"}\n");
        assert_eq!(open(&file).unwrap().load().unwrap(), ["info status", "{\"execute\":\n\"a\\\\b\"}"]);
        // rustyline's first format has no escapes: read as it is, written anew.
        fs::write(&file, "stop\ncont\n").unwrap();
        assert_eq!(open(&file).unwrap().load().unwrap(), ["stop", "cont"]);
        assert_eq!(fs::read_to_string(&file).unwrap(), "#V2\nstop\ncont\n");
        // Twice what is kept is cut back to what is kept.
        let many: String = (0..2 * KEPT).map(|n| format!("c{n}\n")).collect();
        fs::write(&file, format!("#V2\n{many}")).unwrap();
        let loaded = open(&file).unwrap().load().unwrap();
        assert_eq!((loaded.len(), loaded[0].as_str()), (KEPT, "c1000"));
        assert_eq!(fs::read_to_string(&file).unwrap().lines().count(), KEPT + 1);
    }

    #[test]
    fn the_file_is_private_and_its_folder_too() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state/qmpsh/history");
        open(&file).unwrap();
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(file.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        open(&file).unwrap();
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
