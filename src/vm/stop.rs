//! Stopping a VM the way a careful person would: press the ACPI power
//! button, wait for the guest to power off; if it does not in time, ask
//! QEMU to `quit`; if QEMU still lives, SIGKILL. Used by `vm stop` and by
//! the shell's `.shutdown`.

use std::fmt;
use std::time::{Duration, Instant};

use super::process::Process;
use crate::error::Error;
use crate::qmp::{ClientError, Monitor, Observer, command};

/// How long `quit` and SIGKILL each get to take effect.
const FORCE_LIMIT: Duration = Duration::from_secs(5);

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The guest powered off within the timeout.
    Stopped,
    /// It did not; QEMU quit when asked.
    QuitAfterTimeout,
    /// QEMU was killed.
    Killed,
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ending::Stopped => "stopped",
            Ending::QuitAfterTimeout => "quit after timeout",
            Ending::Killed => "killed",
        })
    }
}

impl Ending {
    /// Success when the guest powered off; otherwise a VM stop that timed
    /// out (exit 4), though QEMU is gone.
    pub fn as_result(self, timeout: Duration) -> Result<(), Error> {
        match self {
            Ending::Stopped => Ok(()),
            forced => Err(Error::Timeout(format!(
                "the guest did not power off within {} s ({forced})",
                timeout.as_secs_f64()
            ))),
        }
    }
}

/// Whether QEMU closed the connection before `deadline` (it does as it
/// exits); events read meanwhile go to `observer`.
pub fn closes_by(monitor: &mut dyn Monitor, observer: &mut dyn Observer, deadline: Instant) -> Result<bool, Error> {
    loop {
        match monitor.wait_event(Some(deadline), observer, &mut |_| false) {
            Err(ClientError::Closed) => return Ok(true),
            Ok(_) if Instant::now() >= deadline => return Ok(false),
            Ok(_) => {}
            Err(ClientError::Interrupted) => return Err(Error::Interrupted),
            Err(e) => return Err(Error::Connection(e.to_string())),
        }
    }
}

/// The whole sequence. `process` (when known) is waited for and, last,
/// killed; `kill_at_once` skips `quit` after the timeout.
pub fn shutdown(
    monitor: &mut dyn Monitor,
    observer: &mut dyn Observer,
    process: Option<&Process>,
    timeout: Duration,
    kill_at_once: bool,
) -> Result<Ending, Error> {
    let deadline = Instant::now() + timeout;
    let pressed = monitor.execute(command("system_powerdown"), Some(deadline), observer);
    let gone = match pressed {
        Err(ClientError::Closed) => true,
        Err(ClientError::Interrupted) => return Err(Error::Interrupted),
        Err(ClientError::Timeout) => false,
        Err(e) => return Err(Error::Connection(e.to_string())),
        // A refused press (no ACPI) still waits out the timeout: the
        // guest may be powering off by itself.
        Ok(_) => closes_by(monitor, observer, deadline)?,
    };
    let exited = |p: Option<&Process>| p.is_none_or(|p| p.wait_exit(FORCE_LIMIT));
    if gone && exited(process) {
        return Ok(Ending::Stopped);
    }
    if !kill_at_once {
        let force = Instant::now() + FORCE_LIMIT;
        let quit = match monitor.execute(command("quit"), Some(force), observer) {
            Ok(_) => closes_by(monitor, observer, force)?,
            Err(ClientError::Closed) => true,
            Err(_) => false,
        };
        if quit && exited(process) {
            return Ok(Ending::QuitAfterTimeout);
        }
    }
    match process {
        Some(process) => {
            process.kill();
            if process.wait_exit(FORCE_LIMIT) {
                Ok(Ending::Killed)
            } else {
                Err(Error::Failed(format!("QEMU (pid {}) survived SIGKILL", process.pid)))
            }
        }
        None => Err(Error::Failed("QEMU did not stop, and its pid is unknown, so it cannot be killed".into())),
    }
}
