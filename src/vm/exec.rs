//! The step between qmpsh and the QEMU it starts: a second qmpsh process
//! (the hidden `__exec-qemu` command) that prepares itself and then
//! becomes QEMU by exec. Setting up a child between fork and exec would
//! need `unsafe` (`pre_exec`); a process of our own does it with safe
//! calls, and exec keeps what it set: its own session (Ctrl-C in the
//! terminal is not for QEMU) and, for `launch`, death with qmpsh.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::process::{Pid, Signal, getppid, set_parent_process_death_signal, setsid};

use crate::error::Error;

/// The hidden command's name.
pub const COMMAND: &str = "__exec-qemu";

/// The arguments that make a qmpsh process become `program args...`;
/// `tied_to` is the pid of the qmpsh that QEMU must not outlive.
pub fn arguments(program: &Path, args: &[OsString], tied_to: Option<u32>) -> Vec<OsString> {
    let mut all = vec![OsString::from(COMMAND)];
    if let Some(parent) = tied_to {
        all.push("--tied-to".into());
        all.push(parent.to_string().into());
    }
    all.push("--".into());
    all.push(program.into());
    all.extend(args.iter().cloned());
    all
}

/// Becomes `program` (with `args`) in a session of its own; with
/// `tied_to`, only while that process (our parent) lives, and killed when
/// it dies. Returns only on failure.
pub fn become_qemu(tied_to: Option<u32>, program: &Path, args: &[OsString]) -> Error {
    if let Err(e) = setsid() {
        return Error::Failed(format!("cannot give QEMU a session of its own: {e}"));
    }
    if let Some(parent) = tied_to {
        if let Err(e) = set_parent_process_death_signal(Some(Signal::KILL)) {
            return Error::Failed(format!("cannot tie QEMU to qmpsh (PR_SET_PDEATHSIG): {e}"));
        }
        // qmpsh may have died before the line above: then nothing would
        // ever kill this QEMU, so do not start it.
        if getppid().map(Pid::as_raw_nonzero).map(|p| p.get()) != i32::try_from(parent).ok() {
            return Error::Failed("qmpsh ended before QEMU started".into());
        }
    }
    let failure = Command::new(program).args(args).exec();
    Error::Failed(format!("cannot run {}: {failure}", program.display()))
}

/// Where `program` is: itself when it names a path, else the first match
/// on `PATH` that is an executable file.
pub fn find_program(program: &Path) -> Option<PathBuf> {
    let executable = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| executable(candidate))
}
