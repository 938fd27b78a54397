//! Where managed VMs live: a private state folder with one folder per VM.
//!
//! `$QMPSH_STATE_DIR`, else `$XDG_RUNTIME_DIR/qmpsh`, else `/tmp/qmpsh-$UID`.
//! Sockets there give control of VMs, so every way to a VM by name (TARGET,
//! `--agent`, `vm ...`, `launch`) takes the same checks: the state folder
//! and the VM's folder are real folders (not symlinks) of the user's that
//! no one else can reach, and the sockets in the VM's folder are the
//! user's. A folder that fails is refused, never tightened. Only what qmpsh
//! made counts: the state folder holds the marker [`STATE_MARKER`] (written
//! when qmpsh creates it), each VM's folder [`VM_MARKER`] (written by
//! `vm start`).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::process::getuid;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::private::{NotPrivate, check_folder};

/// The longest unix socket path the kernel takes (sun_path less its NUL).
pub const UNIX_PATH_MAX: usize = 107;

/// The file that marks a state folder as qmpsh's (a VM name cannot start
/// with a dot, so no VM's folder can take its place).
pub const STATE_MARKER: &str = ".qmpsh-state";

/// The file that marks a VM's folder as made by `vm start` or `launch`.
pub const VM_MARKER: &str = "qmpsh-vm";

/// The file in a VM's folder that `vm start`, `stop`, `kill` and `delete`
/// lock, so that only one of them acts on the VM at a time.
const LOCK_FILE: &str = "lock";

/// Files only qmpsh puts in a VM's folder: a folder made by a qmpsh from
/// before [`VM_MARKER`] counts as a VM when it holds one of them.
const OWN_FILES: [&str; 7] = ["qmp.sock", "ctl.sock", "ga.in", "ga.sock", "qemu.pid", "chosen.json", "started"];

/// The sockets of a VM's folder, which must be the user's (`ga.sock`: the
/// agent channel of a VM started by a qmpsh from before `ga.in`).
const SOCKETS: [&str; 3] = ["qmp.sock", "ctl.sock", "ga.sock"];

/// The FIFOs of a VM's folder (the guest agent's channel), which must be
/// the user's too.
const FIFOS: [&str; 2] = ["ga.in", "ga.out"];

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

/// The state folder, for the commands that may write there (`vm start`,
/// `launch`, `vm list`): created 0700 with its marker when missing,
/// checked by [`check_state`] otherwise.
pub fn state_dir() -> Result<PathBuf, Error> {
    let dir = state_path()?;
    // A folder that cannot be written is a failure (exit 1), not a refusal.
    let cannot = |e: io::Error| Error::Io(format!("cannot create the state folder {}: {e}", dir.display()));
    if let Some(parent) = dir.parent().filter(|p| fs::symlink_metadata(p).is_err()) {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(cannot)?;
    }
    // Made here and now, it is qmpsh's; one that exists already, whoever
    // made it a moment ago, goes through the checks.
    if !make_marked(&dir, STATE_MARKER).map_err(cannot)? {
        check_state(&dir, true)?;
    }
    Ok(dir)
}

/// Makes the folder `dir` (0700) with the file `marker` in it, unless
/// something is at `dir` already; true when this call made it. The folder
/// is made aside and moved into place, so that no one sees it without its
/// marker (a second qmpsh would take it for a folder qmpsh did not make).
fn make_marked(dir: &Path, marker: &str) -> io::Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    if fs::symlink_metadata(dir).is_ok() {
        return Ok(false);
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let aside = dir.with_file_name(format!(".{name}.{}.new", std::process::id()));
    fs::DirBuilder::new().mode(0o700).create(&aside)?;
    let moved = mark(&aside.join(marker))
        .and_then(|()| renameat_with(CWD, &aside, CWD, dir, RenameFlags::NOREPLACE).map_err(io::Error::from));
    match moved {
        Ok(()) => Ok(true),
        Err(e) => {
            let _ = fs::remove_dir_all(&aside);
            match e.kind() {
                io::ErrorKind::AlreadyExists => Ok(false),
                // A file system without renameat2's flags (NFS): made in place.
                io::ErrorKind::InvalidInput => match fs::DirBuilder::new().mode(0o700).create(dir) {
                    Ok(()) => mark(&dir.join(marker)).map(|()| true),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(e),
                },
                _ => Err(e),
            }
        }
    }
}

/// The state folder if it exists, checked but never created or changed:
/// for finding a VM by name.
fn existing_state_dir() -> Result<Option<PathBuf>, Error> {
    let dir = state_path()?;
    match fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        _ => check_state(&dir, false).map(|()| Some(dir)),
    }
}

/// A folder that is not private: one that breaks a rule is refused (2),
/// one the system would not let qmpsh check is a failure (1).
fn not_private(what: &str, dir: &Path, why: NotPrivate) -> Error {
    match why {
        NotPrivate::Rule(why) => Error::Usage(format!("refusing {what} {}: {why}", dir.display())),
        NotPrivate::Io(why) => Error::Io(format!("cannot check the {what} {}: {why}", dir.display())),
    }
}

/// Refuses a state folder that is not private (see [`check_folder`]) or
/// not qmpsh's. One without the marker is qmpsh's when everything in it
/// is (an empty folder, or one that an older qmpsh made): with `adopt`, it
/// gets the marker.
fn check_state(dir: &Path, adopt: bool) -> Result<(), Error> {
    let refuse = |why: String| Error::Usage(format!("refusing state folder {}: {why}", dir.display()));
    check_folder(dir).map_err(|why| not_private("state folder", dir, why))?;
    if is_file(&dir.join(STATE_MARKER)) {
        return Ok(());
    }
    let entries =
        fs::read_dir(dir).map_err(|e| Error::Io(format!("cannot read the state folder {}: {e}", dir.display())))?;
    let stranger = entries.filter_map(Result::ok).find(|entry| !is_own_entry(dir, &entry.file_name()));
    // Another qmpsh may have marked it meanwhile, and made a VM's folder.
    if let Some(entry) = stranger.filter(|_| !is_file(&dir.join(STATE_MARKER))) {
        return Err(refuse(format!(
            "qmpsh did not make it (it has no {STATE_MARKER} file) and {} in it is not qmpsh's; \
             set QMPSH_STATE_DIR to a folder for qmpsh alone",
            entry.file_name().to_string_lossy()
        )));
    }
    if adopt {
        mark(&dir.join(STATE_MARKER))
            .map_err(|e| Error::Io(format!("cannot mark the state folder {} as qmpsh's: {e}", dir.display())))?;
    }
    Ok(())
}

/// How the log a failed start leaves beside the VM folders ends:
/// `NAME.failed.log`.
const FAILED_LOG: &str = ".failed.log";

/// The state folder and the names in it (those that are UTF-8).
fn state_entries() -> Result<(PathBuf, Vec<String>), Error> {
    let state = state_dir()?;
    let entries = fs::read_dir(&state)
        .map_err(|e| Error::Io(format!("cannot read the state folder {}: {e}", state.display())))?;
    let names = entries.filter_map(Result::ok).filter_map(|e| e.file_name().into_string().ok()).collect();
    Ok((state, names))
}

/// Whether `name` in the state folder `dir` is something qmpsh puts
/// there: its marker, a VM's folder, or the log of a VM that did not start.
fn is_own_entry(dir: &Path, name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else { return false };
    if name == STATE_MARKER {
        return true;
    }
    if let Some(vm) = name.strip_suffix(FAILED_LOG) {
        return check_name(vm).is_ok() && is_file(&dir.join(name));
    }
    check_name(name).is_ok() && check_folder(&dir.join(name)).is_ok() && is_vm_folder(&dir.join(name))
}

/// Whether a (private) folder is a VM's: it holds [`VM_MARKER`], or one of
/// the files only qmpsh writes there.
fn is_vm_folder(dir: &Path) -> bool {
    is_file(&dir.join(VM_MARKER)) || OWN_FILES.iter().any(|file| fs::symlink_metadata(dir.join(file)).is_ok())
}

/// Why a socket or FIFO in a VM's folder is not to be used (not what it
/// should be, or another user's), if one is not.
fn check_sockets(dir: &Path) -> Result<(), String> {
    let me = getuid().as_raw();
    let sockets = SOCKETS.iter().map(|name| (name, "a socket"));
    for (name, kind) in sockets.chain(FIFOS.iter().map(|name| (name, "a FIFO"))) {
        let Ok(meta) = fs::symlink_metadata(dir.join(name)) else { continue };
        let right = if kind == "a socket" { meta.file_type().is_socket() } else { meta.file_type().is_fifo() };
        if !right {
            return Err(format!("its {name} is not {kind}"));
        }
        if meta.uid() != me {
            return Err(format!("its {name} belongs to uid {}, not to you (uid {me})", meta.uid()));
        }
    }
    Ok(())
}

/// The guest agent's channel in the VM folder `dir`, if it has one (see
/// [`VmDir::agent_channel`]).
pub fn agent_channel_in(dir: &Path) -> Option<PathBuf> {
    ["ga.in", "ga.sock"].iter().map(|name| dir.join(name)).find(|path| fs::symlink_metadata(path).is_ok())
}

fn is_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

/// Writes a marker file (empty, 0600) unless it is there.
fn mark(path: &Path) -> io::Result<()> {
    match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && is_file(path) => Ok(()),
        Err(e) => Err(e),
    }
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

/// chosen.json: [`Chosen`] as `vm start` keeps it and `vm status` shows
/// it. Every field may be missing (a VM started by an older qmpsh).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Kept {
    pub accel: Option<String>,
    pub accel_why: Option<String>,
    pub ssh_port: Option<u16>,
}

/// Writes `text` to `path`, or says which file could not be written.
fn write(path: &Path, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
}

/// One VM's folder and the files in it.
#[derive(Debug, Clone)]
pub struct VmDir {
    pub name: String,
    pub dir: PathBuf,
}

/// What a VM's name finds in the state folder.
enum Lookup {
    Missing,
    /// A folder qmpsh did not make.
    Stranger(PathBuf),
    Vm(VmDir),
}

/// A VM's folder, locked (see [`VmDir::lock`]) while this lives.
#[derive(Debug)]
pub struct VmLock {
    _held: File,
}

impl VmDir {
    /// The folder VM `name` is to have, for `vm start` and `launch`,
    /// which make it ([`VmDir::create_locked`]); the state folder is
    /// created or checked.
    pub fn new(name: &str) -> Result<VmDir, Error> {
        check_name(name)?;
        Ok(VmDir { name: name.to_string(), dir: state_dir()?.join(name) })
    }

    /// The existing VM `name`, checked, or a clear error: for `vm stop`,
    /// `status`, `kill` and `delete`. Nothing is created or changed.
    pub fn existing(name: &str) -> Result<VmDir, Error> {
        check_name(name)?;
        match VmDir::lookup(name)? {
            Lookup::Vm(vm) => Ok(vm),
            Lookup::Missing => Err(Error::Usage(format!("no VM named {name} (qmpsh vm list shows them)"))),
            Lookup::Stranger(dir) => Err(Error::Usage(format!(
                "{} is not a VM of qmpsh's (it has no {VM_MARKER} file): qmpsh leaves it alone",
                dir.display()
            ))),
        }
    }

    /// VM `name`, checked, if there is one: for reading TARGET and
    /// `--agent`. A folder qmpsh did not make is no VM; one that fails a
    /// check is an error, never passed over for a file of the same name.
    /// Nothing is created or changed.
    pub fn find(name: &str) -> Result<Option<VmDir>, Error> {
        if check_name(name).is_err() {
            return Ok(None);
        }
        match VmDir::lookup(name)? {
            Lookup::Vm(vm) => Ok(Some(vm)),
            Lookup::Missing | Lookup::Stranger(_) => Ok(None),
        }
    }

    /// The QMP socket of VM `name`, if there is one (see [`VmDir::find`]).
    pub fn find_socket(name: &str) -> Result<Option<PathBuf>, Error> {
        Ok(VmDir::find(name)?.map(|vm| vm.socket()))
    }

    /// What the state folder holds under `name` (a valid name), checked.
    fn lookup(name: &str) -> Result<Lookup, Error> {
        // Nothing of that name, or no state folder: nothing to check.
        if fs::symlink_metadata(state_path()?.join(name)).is_err() {
            return Ok(Lookup::Missing);
        }
        let Some(state) = existing_state_dir()? else { return Ok(Lookup::Missing) };
        let dir = state.join(name);
        let refuse = |why: String| Error::Usage(format!("refusing VM folder {}: {why}", dir.display()));
        check_folder(&dir).map_err(|why| not_private("VM folder", &dir, why))?;
        if !is_vm_folder(&dir) {
            return Ok(Lookup::Stranger(dir));
        }
        check_sockets(&dir).map_err(refuse)?;
        Ok(Lookup::Vm(VmDir { name: name.to_string(), dir }))
    }

    /// Makes the VM's folder (0700, marked as a VM's) unless it exists,
    /// checks it, and locks it: `vm start` and `launch`, from the check
    /// that the name is free until the VM runs. Says whether this call
    /// made the folder.
    pub fn create_locked(&self) -> Result<(VmLock, bool), Error> {
        let refuse = |why: String| Error::Usage(format!("refusing VM folder {}: {why}", self.dir.display()));
        let cannot = |what: &str, e: io::Error| Error::Io(format!("cannot {what} {}: {e}", self.dir.display()));
        let made = make_marked(&self.dir, VM_MARKER).map_err(|e| cannot("create the VM folder", e))?;
        check_folder(&self.dir).map_err(|why| not_private("VM folder", &self.dir, why))?;
        if !made && !is_vm_folder(&self.dir) {
            return Err(Error::Usage(format!(
                "{} is there and is not a VM of qmpsh's (it has no {VM_MARKER} file): \
                 choose another name, or move it away",
                self.dir.display()
            )));
        }
        let lock = self.lock()?;
        check_sockets(&self.dir).map_err(refuse)?;
        // A VM's folder from before the marker gets one.
        mark(&self.dir.join(VM_MARKER)).map_err(|e| cannot("mark as a VM's folder", e))?;
        Ok((lock, made))
    }

    /// Locks the VM's folder for this qmpsh, at once or not at all: a
    /// second `vm start`, `stop`, `kill` or `delete` of the VM is refused
    /// while one runs. The lock goes with the returned value, or with
    /// qmpsh however it ends.
    pub fn lock(&self) -> Result<VmLock, Error> {
        let path = self.dir.join(LOCK_FILE);
        let busy = || {
            Error::Usage(format!(
                "VM {} is busy: another qmpsh is starting, stopping or deleting it; try again when it is done",
                self.name
            ))
        };
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(|e| Error::Io(format!("cannot open the lock file {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(busy()),
            Err(fs::TryLockError::Error(e)) => {
                return Err(Error::Io(format!("cannot lock {}: {e}", path.display())));
            }
        }
        // The folder may have gone between the open and the lock (a delete,
        // a start that failed): a lock on a file no longer there guards
        // nothing.
        let held = file.metadata().map(|m| (m.dev(), m.ino())).ok();
        let there = fs::symlink_metadata(&path).map(|m| (m.dev(), m.ino())).ok();
        if held.is_none() || held != there {
            return Err(busy());
        }
        Ok(VmLock { _held: file })
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

    /// Where QEMU's end of the guest agent's channel (a virtio-serial port
    /// `org.qemu.guest_agent.0`) is: the FIFOs `ga.in` and `ga.out`, a
    /// `pipe` chardev whose host side never closes. (On a socket, qemu-ga
    /// checks its channel only every 100 ms while no client is connected,
    /// and each new client waited for that.)
    pub fn agent_pipes(&self) -> PathBuf {
        self.dir.join("ga")
    }

    /// The guest agent's channel to connect to, if the VM has one: `ga.in`
    /// (see [`VmDir::agent_pipes`]), or the `ga.sock` of a VM started by a
    /// qmpsh from before it.
    pub fn agent_channel(&self) -> Option<PathBuf> {
        agent_channel_in(&self.dir)
    }

    /// Every file of the agent channel, for removal: the FIFOs, and an old
    /// VM's socket.
    pub fn agent_files(&self) -> [PathBuf; 3] {
        ["ga.in", "ga.out", "ga.sock"].map(|name| self.dir.join(name))
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

    /// How its last QEMU ended, when qmpsh knows (see `vm::ended`).
    pub fn ended_file(&self) -> PathBuf {
        self.dir.join("ended")
    }

    /// What `vm start` chose (accelerator and why, forwarded ports), for
    /// `vm status`.
    pub fn chosen_file(&self) -> PathBuf {
        self.dir.join("chosen.json")
    }

    /// Keeps what `vm start` chose, and when it started QEMU; `vm status`
    /// shows them. A VM whose status would be blank is not started.
    pub fn keep_chosen(&self, chosen: &Chosen, started: u64) -> Result<(), Error> {
        let record = Kept {
            accel: Some(chosen.accel.name.to_string()),
            accel_why: Some(chosen.accel.why.clone()),
            ssh_port: chosen.ssh_port,
        };
        let json = serde_json::to_string(&record).map_err(|e| Error::Io(e.to_string()))?;
        write(&self.chosen_file(), &format!("{json}\n"))?;
        write(&self.started_file(), &format!("{started}\n"))
    }

    /// What `vm start` chose, as kept (none of it for a VM started before
    /// there was a record, or whose record does not read).
    pub fn chosen(&self) -> Kept {
        let kept = fs::read_to_string(self.chosen_file()).ok().and_then(|text| serde_json::from_str(&text).ok());
        kept.unwrap_or_default()
    }

    /// When QEMU was started (Unix seconds), if that was kept.
    pub fn started(&self) -> Option<u64> {
        fs::read_to_string(self.started_file()).ok()?.trim().parse().ok()
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

    /// The log a failed start of this VM left beside the folders
    /// (`NAME.failed.log`).
    pub fn failed_log(&self) -> PathBuf {
        self.dir.with_file_name(format!("{}{FAILED_LOG}", self.name))
    }

    /// The names of VMs whose start failed and left a log, with the log,
    /// sorted by name: those without a folder of their own.
    pub fn failed_starts() -> Result<Vec<(String, PathBuf)>, Error> {
        let (state, entries) = state_entries()?;
        let mut failed: Vec<(String, PathBuf)> = entries
            .into_iter()
            .filter_map(|file| Some((file.strip_suffix(FAILED_LOG)?.to_string(), state.join(&file))))
            .filter(|(name, log)| check_name(name).is_ok() && is_file(log) && !state.join(name).exists())
            .collect();
        failed.sort();
        Ok(failed)
    }

    /// Every VM in the state folder, sorted by name: folders qmpsh made
    /// that pass the checks; anything else there is passed over.
    pub fn all() -> Result<Vec<VmDir>, Error> {
        let (state, entries) = state_entries()?;
        let mut vms: Vec<VmDir> = entries
            .into_iter()
            .filter(|name| check_name(name).is_ok())
            .map(|name| VmDir { dir: state.join(&name), name })
            .filter(|vm| check_folder(&vm.dir).is_ok() && is_vm_folder(&vm.dir) && check_sockets(&vm.dir).is_ok())
            .collect();
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(vms)
    }
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
    fn a_folder_is_private_only_when_no_one_else_can_reach_it() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        assert_eq!(check_folder(&dir), Ok(()));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        assert!(check_folder(&dir).unwrap_err().to_string().contains("others can reach it (mode 0750)"));
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o750, "left as it was");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(check_folder(&link).unwrap_err().to_string().contains("symlink"));
    }

    #[test]
    fn only_folders_with_qmpsh_files_are_vms() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(!is_vm_folder(tmp.path()), "an empty folder");
        fs::write(tmp.path().join("notes.txt"), "").unwrap();
        assert!(!is_vm_folder(tmp.path()), "a folder of someone's files");
        fs::write(tmp.path().join("chosen.json"), "{}").unwrap();
        assert!(is_vm_folder(tmp.path()), "one an older qmpsh made");
        let marked = tempfile::tempdir().unwrap();
        mark(&marked.path().join(VM_MARKER)).unwrap();
        assert!(is_vm_folder(marked.path()));
    }
}
