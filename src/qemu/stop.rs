//! Stopping a VM the way a careful person would, one step at a time, each
//! said as it happens:
//!
//! 1. if the guest agent answers `guest-ping` within 1 s: `guest-shutdown`;
//! 2. else the ACPI power button, pressed again every 2 s until the guest
//!    begins to power off (a press while it boots is lost), the agent asked
//!    again between presses (it may not be up yet);
//! 3. after the timeout: `quit`, then SIGKILL.
//!
//! `kill` skips it all and kills at once. Used by `vm stop` and by the
//! shell's `.shutdown`, which show the steps it tells their [`Progress`].

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::Process;
use crate::error::Error;
use crate::qmp::{ClientError, Monitor, Observer, agent, command};
use crate::target::Target;
use crate::visible;

/// The id of the agent channel's chardev in a managed VM's QEMU.
pub const AGENT_CHARDEV: &str = "qmpsh-agent";

/// How long `quit` and SIGKILL each get to take effect.
const FORCE_LIMIT: Duration = Duration::from_secs(5);

/// How long the guest agent gets to answer `guest-ping`.
const AGENT_LIMIT: Duration = Duration::from_secs(1);

/// How long an agent gets to answer when asked again between presses.
const AGENT_RETRY: Duration = Duration::from_millis(300);

/// How long a guest gets to power off after its agent said yes, before the
/// power button is tried too.
const AGENT_GRACE: Duration = Duration::from_secs(10);

/// How often the power button is pressed again while the guest has not
/// begun to power off.
pub const PRESS_AGAIN: Duration = Duration::from_secs(2);

/// Who powered the guest off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    GuestAgent,
    Acpi,
    /// libvirt's own shutdown (it picks the agent or ACPI itself).
    Libvirt,
    /// The guest never ran (QEMU started with `-S`): nothing to power off,
    /// so QEMU quit.
    NeverRan,
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The guest powered off within the timeout.
    Stopped(Via),
    /// It did not; QEMU quit when asked.
    QuitAfterTimeout,
    /// QEMU was killed: at once when `asked` (`--kill`), else because
    /// nothing gentler worked in time.
    Killed { asked: bool },
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ending::Stopped(Via::GuestAgent) => "stopped (guest agent)",
            Ending::Stopped(Via::Acpi) => "stopped (ACPI)",
            Ending::Stopped(Via::Libvirt) => "stopped",
            Ending::Stopped(Via::NeverRan) => "stopped (never ran)",
            Ending::QuitAfterTimeout => "quit after timeout",
            Ending::Killed { .. } => "killed",
        })
    }
}

impl Ending {
    /// Success when the guest powered off or a kill was asked for;
    /// otherwise a VM stop that timed out (exit 4), though QEMU is gone.
    pub fn as_result(self, timeout: Duration) -> Result<(), Error> {
        match self {
            Ending::Stopped(_) | Ending::Killed { asked: true } => Ok(()),
            forced => {
                Err(Error::Forced(format!("the guest did not power off within {} s ({forced})", timeout.as_secs_f64())))
            }
        }
    }
}

/// What the sequence works with.
pub struct Stop<'a> {
    /// The guest agent's channel, if the VM has one.
    pub agent: Option<&'a Target>,
    /// QEMU's process, when known: waited for and, last, killed.
    pub process: Option<&'a Process>,
    pub timeout: Duration,
    /// `--kill`: kill at once.
    pub kill: bool,
}

/// What a stop tells as it goes: each step, and the events its monitor
/// reads meanwhile (as [`Observer`]). Whoever shows them implements it.
pub trait Progress: Observer {
    /// A step, as it is taken.
    fn step(&mut self, step: &Step);
    /// Something that went wrong on the way, which the sequence goes past.
    fn problem(&mut self, message: &str);
}

/// One step of a stop, told as it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// QEMU does not answer on its monitor (why): kill.
    NoAnswer(String),
    /// The agent's channel is another client's: the button instead.
    AgentHeld,
    AgentAnswers,
    /// The agent refused (its words, made visible).
    AgentRefused(String),
    /// The guest is still up this long after its agent said yes.
    StillUp(Duration),
    Button,
    /// The button is pressed again this often.
    PressAgain(Duration),
    /// The guest never ran (`-S`): quit.
    NeverRan,
    /// A paused VM goes on, so that the guest can power off.
    Cont,
    /// A suspended guest wakes, so that it can power off.
    Wakeup,
    /// No power-off within the timeout: quit.
    Quit(Duration),
    /// SIGKILL to QEMU's pid.
    Kill(i32),
    /// `quit`: QEMU's pid is unknown.
    QuitWithoutPid,
    /// libvirt's shutdown, which asks the guest as libvirt picks.
    LibvirtShutdown,
    /// No power-off within the timeout: libvirt's destroy.
    Destroy(Duration),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::NoAnswer(why) => write!(f, "QEMU does not answer on its monitor ({why})"),
            Step::AgentHeld => f.write_str(
                "another client holds the guest agent's channel (it takes one at a time): the button instead",
            ),
            Step::AgentAnswers => f.write_str("the guest agent answers: guest-shutdown"),
            Step::AgentRefused(why) => write!(f, "the guest agent refused ({why})"),
            Step::StillUp(grace) => write!(f, "the guest is still up {} s later", grace.as_secs()),
            Step::Button => f.write_str("ACPI power button"),
            Step::PressAgain(every) => write!(
                f,
                "pressed again every {} s while the guest does not power off (it may be booting)",
                every.as_secs()
            ),
            Step::NeverRan => f.write_str("the guest never ran (QEMU was started with -S): quit"),
            Step::Cont => f.write_str("the VM is paused: cont, so that the guest can power off"),
            Step::Wakeup => f.write_str("the guest is suspended: system_wakeup, so that it can power off"),
            Step::Quit(timeout) => write!(f, "no power-off within {} s: quit", timeout.as_secs_f64()),
            Step::Kill(pid) => write!(f, "SIGKILL to QEMU (pid {pid})"),
            Step::QuitWithoutPid => f.write_str("quit (QEMU's pid is unknown here, so it cannot be signalled)"),
            Step::LibvirtShutdown => {
                f.write_str("libvirt's shutdown (the guest agent or the ACPI power button, as libvirt picks)")
            }
            Step::Destroy(timeout) => write!(f, "no power-off within {} s: libvirt's destroy", timeout.as_secs_f64()),
        }
    }
}

/// Whether QEMU's SHUTDOWN event (the guest powers off) came before
/// `deadline`; events read meanwhile go to `observer`. QEMU closing the
/// connection counts as one.
pub fn shutdown_begins_by(
    monitor: &mut Monitor,
    observer: &mut dyn Observer,
    deadline: Instant,
) -> Result<bool, Error> {
    let powering_off = |message: &Value| message.get("event").and_then(Value::as_str) == Some("SHUTDOWN");
    match monitor.wait_event(Some(deadline), observer, &mut |m| powering_off(m)) {
        Err(ClientError::Closed) | Ok(Some(_)) => Ok(true),
        Ok(None) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether QEMU closed the connection before `deadline` (it does as it
/// exits); events read meanwhile go to `observer`.
pub fn closes_by(monitor: &mut Monitor, observer: &mut dyn Observer, deadline: Instant) -> Result<bool, Error> {
    loop {
        match monitor.wait_event(Some(deadline), observer, &mut |_| false) {
            Err(ClientError::Closed) => return Ok(true),
            Ok(_) if Instant::now() >= deadline => return Ok(false),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The whole sequence on `monitor` (QMP), saying each step on `progress`.
pub fn shutdown(monitor: &mut Monitor, progress: &mut dyn Progress, stop: &Stop) -> Result<Ending, Error> {
    if stop.kill {
        return kill(Some(monitor), progress, stop.process, true);
    }
    let deadline = Instant::now() + stop.timeout;
    let exited = |p: Option<&Process>| p.is_none_or(|p| p.wait_exit(FORCE_LIMIT));
    if let Some(ending) = wake_guest(monitor, progress, stop.process)? {
        return Ok(ending);
    }
    // The agent first; if the guest has not gone within AGENT_GRACE of its
    // yes, the button after all, for the time that is left.
    let mut via = None;
    // An agent that is not up yet (the guest boots) is asked again between
    // presses of the button; one that refused is not.
    let mut ask_again = None;
    let agent = stop.agent.filter(|agent| {
        let channel = match agent {
            Target::Unix(channel) => Some(channel.as_path()),
            _ => None,
        };
        let held = agent_held(monitor, channel, progress);
        if held {
            progress.step(&Step::AgentHeld);
        }
        !held
    });
    match agent.map(|agent| (agent, agent_shutdown(agent, progress, AGENT_LIMIT))) {
        Some((_, Agent::Accepted)) => {
            via =
                closes_by(monitor, progress, (Instant::now() + AGENT_GRACE).min(deadline))?.then_some(Via::GuestAgent);
            if via.is_none() && Instant::now() < deadline {
                progress.step(&Step::StillUp(AGENT_GRACE));
            }
        }
        Some((agent, Agent::Absent)) => ask_again = Some(agent),
        Some((_, Agent::Refused)) | None => {}
    }
    if via.is_none() && Instant::now() < deadline {
        via = press_until_off(monitor, progress, deadline, ask_again)?;
    }
    if let Some(via) = via
        && exited(stop.process)
    {
        return Ok(Ending::Stopped(via));
    }
    progress.step(&Step::Quit(stop.timeout));
    let force = Instant::now() + FORCE_LIMIT;
    let quit = match monitor.execute(command("quit"), Some(force), progress) {
        Ok(_) => closes_by(monitor, progress, force)?,
        Err(ClientError::Closed) => true,
        Err(_) => false,
    };
    if quit && exited(stop.process) {
        return Ok(Ending::QuitAfterTimeout);
    }
    kill(Some(monitor), progress, stop.process, false)
}

/// A guest that cannot hear the button is made to: a paused VM goes on
/// (`cont`), a suspended guest wakes (`system_wakeup`). One that never ran
/// (`-S`) has nothing to power off: QEMU quits at once.
fn wake_guest(
    monitor: &mut Monitor,
    progress: &mut dyn Progress,
    process: Option<&Process>,
) -> Result<Option<Ending>, Error> {
    let limit = Some(Instant::now() + FORCE_LIMIT);
    let status = match monitor.execute(command("query-status"), limit, progress) {
        Ok(Ok(status)) => status.get("status").and_then(Value::as_str).map(String::from),
        _ => None,
    };
    let (step, wake) = match status.as_deref() {
        Some("prelaunch") => {
            progress.step(&Step::NeverRan);
            let quit = match monitor.execute(command("quit"), limit, progress) {
                Ok(_) => closes_by(monitor, progress, Instant::now() + FORCE_LIMIT)?,
                Err(ClientError::Closed) => true,
                Err(e) => return Err(e.into()),
            };
            let gone = quit && process.is_none_or(|p| p.wait_exit(FORCE_LIMIT));
            return Ok(gone.then_some(Ending::Stopped(Via::NeverRan)));
        }
        Some("paused") => (Step::Cont, "cont"),
        Some("suspended") => (Step::Wakeup, "system_wakeup"),
        _ => return Ok(None),
    };
    progress.step(&step);
    match monitor.execute(command(wake), limit, progress) {
        Ok(_) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// SIGKILL, said; without a pid (a peer qmpsh cannot see), `quit` through
/// `monitor`. `vm stop` comes here without one when QEMU does not answer
/// on it, or for `--kill`, which needs none.
pub fn kill(
    monitor: Option<&mut Monitor>,
    progress: &mut dyn Progress,
    process: Option<&Process>,
    asked: bool,
) -> Result<Ending, Error> {
    match (process, monitor) {
        (Some(process), _) => {
            progress.step(&Step::Kill(process.pid));
            process.kill_and_wait(FORCE_LIMIT).map(|()| Ending::Killed { asked })
        }
        (None, Some(monitor)) if asked => {
            progress.step(&Step::QuitWithoutPid);
            let force = Instant::now() + FORCE_LIMIT;
            match monitor.execute(command("quit"), Some(force), progress) {
                Ok(_) | Err(ClientError::Closed) => Ok(Ending::Killed { asked }),
                Err(e) => Err(e.into()),
            }
        }
        (None, _) => Err(Error::Failed("QEMU did not stop, and its pid is unknown, so it cannot be killed".into())),
    }
}

/// Whether another client holds a managed VM's agent channel `channel`,
/// which serves one client at a time: a pipe channel's lock is taken (see
/// `qmp::socket`), or QEMU names a free socket `disconnected:...`.
pub fn agent_held(monitor: &mut Monitor, channel: Option<&Path>, observer: &mut dyn Observer) -> bool {
    if let Some(held) = channel.and_then(crate::qmp::pipe_held) {
        return held;
    }
    let deadline = Instant::now() + AGENT_LIMIT;
    let Ok(Ok(chardevs)) = monitor.execute(command("query-chardev"), Some(deadline), observer) else { return false };
    let channel = chardevs.as_array().into_iter().flatten().find(|c| c["label"] == AGENT_CHARDEV);
    channel.and_then(|c| c["filename"].as_str()).is_some_and(|name| !name.starts_with("disconnected:"))
}

/// What the guest agent made of a request to power off.
enum Agent {
    /// None answered within the limit (none runs, or not yet).
    Absent,
    Refused,
    Accepted,
}

/// Asks the guest agent to power the guest off, if one answers within
/// `limit`.
fn agent_shutdown(agent: &Target, progress: &mut dyn Progress, limit: Duration) -> Agent {
    let Ok(mut monitor) = agent::connect(agent, &agent.to_string(), limit) else { return Agent::Absent };
    if !agent::ping(&mut monitor, Instant::now() + limit) {
        return Agent::Absent;
    }
    progress.step(&Step::AgentAnswers);
    match agent::shutdown_guest(&mut monitor) {
        Ok(()) => Agent::Accepted,
        Err(refused) => {
            progress.step(&Step::AgentRefused(visible::line(&refused)));
            Agent::Refused
        }
    }
}

/// The ACPI power button, pressed again every [`PRESS_AGAIN`] until the
/// guest begins to power off (QEMU's SHUTDOWN event), then a wait for QEMU
/// to exit; between presses, `agent` (one that did not answer yet) is
/// asked again. Who powered the guest off, if it went before `deadline`.
fn press_until_off(
    monitor: &mut Monitor,
    progress: &mut dyn Progress,
    deadline: Instant,
    agent: Option<&Target>,
) -> Result<Option<Via>, Error> {
    progress.step(&Step::Button);
    let acpi = |gone: bool| gone.then_some(Via::Acpi);
    let mut presses = 0;
    loop {
        // A refused press (no ACPI) still waits: the guest may power off by itself.
        match monitor.execute(command("system_powerdown"), Some(deadline), progress) {
            Err(ClientError::Closed) => return Ok(Some(Via::Acpi)),
            Err(ClientError::Timeout) => return Ok(None),
            Err(e) => return Err(e.into()),
            Ok(_) => presses += 1,
        }
        let next = (Instant::now() + PRESS_AGAIN).min(deadline);
        if shutdown_begins_by(monitor, progress, next)? {
            return closes_by(monitor, progress, deadline).map(acpi);
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        if agent.is_some_and(|a| matches!(agent_shutdown(a, progress, AGENT_RETRY), Agent::Accepted)) {
            return Ok(closes_by(monitor, progress, deadline)?.then_some(Via::GuestAgent));
        }
        if presses == 1 {
            progress.step(&Step::PressAgain(PRESS_AGAIN));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_as_vm_stop_has_always_said_them() {
        // Scripts and the tests read these lines: the words are the
        // interface, whoever renders them.
        let said = [
            (Step::NoAnswer("refused".into()), "QEMU does not answer on its monitor (refused)"),
            (Step::StillUp(AGENT_GRACE), "the guest is still up 10 s later"),
            (
                Step::PressAgain(PRESS_AGAIN),
                "pressed again every 2 s while the guest does not power off (it may be booting)",
            ),
            (Step::Quit(Duration::from_millis(2500)), "no power-off within 2.5 s: quit"),
            (Step::Kill(42), "SIGKILL to QEMU (pid 42)"),
            (Step::AgentRefused("no".into()), "the guest agent refused (no)"),
            (Step::Button, "ACPI power button"),
        ];
        for (step, text) in said {
            assert_eq!(step.to_string(), text);
        }
    }
}
