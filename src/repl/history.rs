//! The REPL's history file: where it lives, kept private (0600), and which
//! lines never go in.

use std::fs::{self, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `$XDG_STATE_HOME/qmpsh/history`, else `~/.local/state/qmpsh/history`.
/// Relative or empty variables are ignored, as the XDG spec says.
pub fn path() -> Option<PathBuf> {
    let absolute = |var: &str| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute());
    let state = absolute("XDG_STATE_HOME").or_else(|| absolute("HOME").map(|home| home.join(".local/state")))?;
    Some(state.join("qmpsh").join("history"))
}

/// Whether a line may carry a secret: `set_password`, a `secret` object,
/// any argument named like a password. Such lines are never saved; a
/// harmless line that merely mentions the words is left out too.
pub fn carries_secret(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    ["password", "secret", "passwd", "cookie"].iter().any(|word| lower.contains(word)) || sets_data(&lower)
}

/// `qom-set` of a `data` property (a secret object's value, whatever the
/// object's path is called), in any spelling: `qom-set PATH data VALUE`,
/// `property=data`, raw JSON, through `hmp`.
fn sets_data(lower: &str) -> bool {
    let words = || lower.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    words().any(|w| w == "qom-set" || w == "qom_set") && words().any(|w| w == "data")
}

/// Creates the folder (0700) and the file (0600) before the editor writes
/// to it, and tightens a file that exists with looser permissions.
pub fn prepare(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    fs::set_permissions(path, Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_file_is_private_and_its_folder_too() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state/qmpsh/history");
        prepare(&file).unwrap();
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(file.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        prepare(&file).unwrap();
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
