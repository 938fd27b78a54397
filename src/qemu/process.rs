//! The QEMU process of a managed VM, found by its pidfile and trusted only
//! while its command line still names our socket: a recycled pid is never
//! signalled. A pidfd, once opened, pins the very process we checked.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, kill_process, pidfd_open, pidfd_send_signal};

use crate::error::Error;
use crate::language::qemu_text::opts_path;

/// A live QEMU that is ours.
#[derive(Debug)]
pub struct Process {
    pub pid: i32,
    /// Absent on kernels without pidfd_open (before 5.3).
    pidfd: Option<OwnedFd>,
}

/// Process `pid`'s arguments, `argv[0]` first.
fn arguments(pid: i32) -> Vec<Vec<u8>> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(<[u8]>::to_vec).collect()
}

/// The `-qmp` argument `vm start` gives QEMU for `socket`; process checks
/// look for exactly this.
pub fn qmp_argument(socket: &Path) -> String {
    format!("unix:{},server=on,wait=off", opts_path(socket))
}

/// Whether `argv[0]` names a QEMU binary (`qemu-system-x86_64`, or a
/// `--qemu` wrapper with qemu in its name).
fn runs_qemu(arguments: &[Vec<u8>]) -> bool {
    arguments.first().is_some_and(|program| {
        let name = program.rsplit(|b| *b == b'/').next().unwrap_or(program);
        name.windows(4).any(|w| w == b"qemu")
    })
}

/// Whether process `pid` is a QEMU given exactly the `-qmp` argument that
/// `vm start` writes for `socket`: another program that merely mentions
/// the path (a shell, socat, qmpsh itself) is not ours.
fn is_our_qemu(pid: i32, socket: &Path) -> bool {
    let arguments = arguments(pid);
    let expected = qmp_argument(socket);
    runs_qemu(&arguments) && arguments.iter().any(|a| a.as_slice() == expected.as_bytes())
}

/// A descriptor pinning process `pid`, where the kernel has pidfds.
fn pin(pid: i32) -> Option<OwnedFd> {
    pidfd_open(Pid::from_raw(pid)?, PidfdFlags::empty()).ok()
}

impl Process {
    /// The QEMU whose pid is in `pidfile`, if it is alive and still ours.
    pub fn from_pidfile(pidfile: &Path, socket: &Path) -> Option<Process> {
        let pid: i32 = fs::read_to_string(pidfile).ok()?.trim().parse().ok().filter(|p| *p > 0)?;
        Process::verify(pid, socket)
    }

    /// `pid`, if it is alive and its command line names `socket`. The pidfd
    /// is opened before the check, so the check is about that process.
    pub fn verify(pid: i32, socket: &Path) -> Option<Process> {
        let pidfd = pin(pid);
        let process = Process { pid, pidfd };
        (process.is_alive() && is_our_qemu(pid, socket)).then_some(process)
    }

    /// The process at the other end of our monitor connection, pinned by a
    /// pidfd, if it is a QEMU: a proxy in front of QEMU is never killed.
    pub fn peer(pid: i32) -> Option<Process> {
        let process = Process { pid, pidfd: pin(pid) };
        (process.is_alive() && runs_qemu(&arguments(pid))).then_some(process)
    }

    /// Whether it still runs (a zombie does not).
    pub fn is_alive(&self) -> bool {
        match &self.pidfd {
            Some(fd) => !poll_readable(fd, 0),
            None => fs::read_to_string(format!("/proc/{}/stat", self.pid))
                .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))),
        }
    }

    /// Waits up to `limit` for it to exit; true once it has.
    pub fn wait_exit(&self, limit: Duration) -> bool {
        if let Some(fd) = &self.pidfd {
            return poll_readable(fd, limit.as_millis().min(i32::MAX as u128) as i32);
        }
        let deadline = Instant::now() + limit;
        while self.is_alive() {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// SIGKILL, then a wait of up to `limit` for it to be gone; it
    /// outliving the signal is the error.
    pub fn kill_and_wait(&self, limit: Duration) -> Result<(), Error> {
        self.kill().map_err(|e| Error::Failed(e.to_string()))?;
        if self.wait_exit(limit) {
            Ok(())
        } else {
            Err(Error::Failed(format!("QEMU (pid {}) survived SIGKILL", self.pid)))
        }
    }

    /// SIGKILL, through the pidfd when there is one (without one, the pid
    /// was checked to still be our QEMU just before). A process that has
    /// already exited counts as killed; any other refusal (no permission)
    /// is the error, said in words.
    pub fn kill(&self) -> io::Result<()> {
        let sent = match &self.pidfd {
            Some(fd) => pidfd_send_signal(fd, Signal::KILL),
            None => match Pid::from_raw(self.pid) {
                Some(pid) => kill_process(pid, Signal::KILL),
                None => Err(Errno::SRCH),
            },
        };
        match sent {
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(io::Error::other(format!("cannot kill QEMU (pid {}): {e}", self.pid))),
        }
    }
}

/// Whether `fd` becomes readable within `timeout_ms` (a pidfd does when
/// its process exits).
fn poll_readable(fd: &OwnedFd, timeout_ms: i32) -> bool {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: 0, tv_nsec: 0 });
        let mut entry = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut entry, Some(&timeout)) {
            Ok(ready) => return ready > 0,
            Err(Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}
