//! Where managed VMs live: a private state folder with one folder per VM.
//!
//! `$QMPSH_STATE_DIR`, else `$XDG_RUNTIME_DIR/qmpsh`, else `/tmp/qmpsh-$UID`.
//! qmpsh creates it 0700 and refuses one that is a symlink or belongs to
//! another user: sockets there give control of VMs.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::process::getuid;

use serde_json::{Value, json};

use crate::error::Error;

/// The longest unix socket path the kernel takes (sun_path less its NUL).
pub const UNIX_PATH_MAX: usize = 107;

/// Where the state folder is, by the rule above; not created or checked.
/// A relative `QMPSH_STATE_DIR` is refused: the same VM must be found from
/// any folder.
pub fn state_path() -> Result<PathBuf, Error> {
    let from_env = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = from_env("QMPSH_STATE_DIR") {
        if !dir.is_absolute() {
            return Err(Error::Usage(format!("QMPSH_STATE_DIR must be an absolute path, not {}", dir.display())));
        }
        return Ok(dir);
    }
    Ok(match from_env("XDG_RUNTIME_DIR").filter(|d| d.is_absolute()) {
        Some(runtime) => runtime.join("qmpsh"),
        None => PathBuf::from(format!("/tmp/qmpsh-{}", getuid().as_raw())),
    })
}

/// The state folder, created and checked.
pub fn state_dir() -> Result<PathBuf, Error> {
    let dir = state_path()?;
    ensure_private(&dir)?;
    Ok(dir)
}

/// Creates `dir` 0700 if missing; refuses a symlink, a non-folder, or a
/// folder owned by another user; tightens a folder of ours that is open to
/// others.
pub fn ensure_private(dir: &Path) -> Result<(), Error> {
    let refuse = |why: String| Error::Usage(format!("refusing state folder {}: {why}", dir.display()));
    if fs::symlink_metadata(dir).is_err() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| refuse(format!("cannot create it: {e}")))?;
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| refuse(e.to_string()))?;
    if meta.file_type().is_symlink() {
        return Err(refuse("it is a symlink".into()));
    }
    if !meta.is_dir() {
        return Err(refuse("it is not a folder".into()));
    }
    let me = getuid().as_raw();
    if meta.uid() != me {
        return Err(refuse(format!("it belongs to uid {}, not to you (uid {me})", meta.uid())));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| refuse(e.to_string()))?;
    }
    Ok(())
}

/// Whether `name` is a usable VM name: letters, digits, `-`, `_`, `.`, not
/// starting with a dot, at most 64 characters.
pub fn check_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "bad VM name {name:?}: use letters, digits, '-', '_' and '.', not starting with '.', at most 64"
        )))
    }
}

/// The id of the agent channel's chardev in a managed VM's QEMU.
pub const AGENT_CHARDEV: &str = "qmpsh-agent";

/// The accelerator a VM runs with, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    pub name: &'static str,
    pub why: String,
}

/// What `vm start` chose for a VM, kept in its folder for `vm status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub accel: AccelChoice,
    /// The host port forwarded to the guest's port 22.
    pub ssh_port: Option<u16>,
}

/// One VM's folder and the files in it.
#[derive(Debug, Clone)]
pub struct VmDir {
    pub name: String,
    pub dir: PathBuf,
}

impl VmDir {
    /// The folder of VM `name` (checked, not created).
    pub fn new(name: &str) -> Result<VmDir, Error> {
        check_name(name)?;
        Ok(VmDir { name: name.to_string(), dir: state_dir()?.join(name) })
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    /// A second QMP socket for qmpsh's own `vm stop`/`vm status`, so they
    /// work while a shell holds the user's one (QEMU serves one client per
    /// socket).
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    /// The guest agent's channel (a virtio-serial port
    /// `org.qemu.guest_agent.0`), unless started with `--no-agent`.
    pub fn agent_socket(&self) -> PathBuf {
        self.dir.join("ga.sock")
    }

    /// The socket qmpsh itself talks to: the control socket, or for a VM
    /// started before there was one, the user's.
    pub fn own_socket(&self) -> PathBuf {
        let control = self.control_socket();
        if control.exists() { control } else { self.socket() }
    }

    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }

    pub fn serial_log(&self) -> PathBuf {
        self.dir.join("serial.log")
    }

    /// QEMU's own stdout and stderr.
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }

    /// When it was started (Unix seconds), written by `vm start`.
    pub fn started_file(&self) -> PathBuf {
        self.dir.join("started")
    }

    /// What `vm start` chose (accelerator and why, forwarded ports), for
    /// `vm status`.
    pub fn chosen_file(&self) -> PathBuf {
        self.dir.join("chosen.json")
    }

    /// Keeps what `vm start` chose; `vm status` shows it.
    pub fn keep_chosen(&self, chosen: &Chosen) {
        let record = json!({"accel": chosen.accel.name, "accel_why": chosen.accel.why, "ssh_port": chosen.ssh_port});
        let _ = fs::write(self.chosen_file(), format!("{record}\n"));
    }

    /// What `vm start` chose, as kept (null fields for a VM started before).
    pub fn chosen(&self) -> Value {
        let kept = fs::read_to_string(self.chosen_file()).ok().and_then(|text| serde_json::from_str(&text).ok());
        kept.unwrap_or_else(|| json!({"accel": null, "accel_why": null, "ssh_port": null}))
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// The socket of an existing VM `name`, looked up without creating or
    /// changing anything (for reading TARGET).
    pub fn find_socket(name: &str) -> Option<PathBuf> {
        check_name(name).ok()?;
        let dir = state_path().ok()?.join(name);
        dir.is_dir().then(|| dir.join("qmp.sock"))
    }

    /// The socket path, refused if the kernel could not bind it.
    pub fn checked_socket(&self) -> Result<PathBuf, Error> {
        let socket = self.socket();
        let length = socket.as_os_str().len();
        if length > UNIX_PATH_MAX {
            return Err(Error::Usage(format!(
                "the QMP socket path {} is {length} bytes, over the {UNIX_PATH_MAX}-byte unix limit: \
                 use a shorter VM name or set QMPSH_STATE_DIR to a shorter folder",
                socket.display()
            )));
        }
        Ok(socket)
    }

    /// Every VM with a folder in the state folder, sorted by name.
    pub fn all() -> Result<Vec<VmDir>, Error> {
        let state = state_dir()?;
        let entries = fs::read_dir(&state)
            .map_err(|e| Error::Io(format!("cannot read the state folder {}: {e}", state.display())))?;
        let mut vms: Vec<VmDir> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| check_name(name).is_ok())
            .map(|name| VmDir { dir: state.join(&name), name })
            .collect();
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(vms)
    }
}

/// A path inside a QemuOpts value, where a comma is written twice.
pub fn opts_path(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// The `-qmp` argument for `socket`; process checks look for exactly this.
pub fn qmp_argument(socket: &Path) -> String {
    format!("unix:{},server=on,wait=off", opts_path(socket))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["vm1", "web-01", "a.b_c", "X"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "ü", "..", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_state_folder_is_private_and_never_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/state");
        ensure_private(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700, "tightened");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(ensure_private(&link).unwrap_err().to_string().contains("symlink"));
    }
}
