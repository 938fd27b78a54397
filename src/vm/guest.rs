//! `vm exec` and `vm wait`: reaching into a running guest, through its
//! agent channel (`ga.in`), its `--ssh-port` forward, or its control
//! socket's events. How a program runs through the agent lives in
//! `qemu::guest`, which the agent shell's `.exec` shares.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::copy;
use super::options::{Until, VmCommand};
use super::state::VmDir;
use crate::error::Error;
use crate::qemu::guest::{self, Request};
use crate::qmp::{self, Connect, Monitor, Quiet, agent};
use crate::target::Target;
use crate::ui::output;
use crate::ui::terminal::Facts;
use crate::visible;

/// How long `vm exec` waits for the agent to answer at all.
const AGENT_ANSWERS: Duration = Duration::from_secs(5);

/// Where a guest's agent is reached.
#[derive(Debug, Clone)]
pub(super) enum AgentAt {
    /// A path: a managed VM's channel (`ga.in`), or one given; `label` names
    /// it in errors.
    Path { path: PathBuf, label: String },
    /// A libvirt domain's agent, through libvirt (`--connect URI`).
    Libvirt { uri: String, domain: String },
}

impl AgentAt {
    /// The agent `name` means: with `uri`, the libvirt domain `name`'s;
    /// else a managed VM's channel, or (with a `/` in it) a socket or pipe
    /// channel's path.
    pub(super) fn find(name: &str, uri: Option<&str>) -> Result<AgentAt, Error> {
        if let Some(uri) = uri {
            if !cfg!(feature = "libvirt") {
                return Err(Error::Usage(crate::error::WITHOUT_LIBVIRT.into()));
            }
            return Ok(AgentAt::Libvirt { uri: uri.into(), domain: name.into() });
        }
        if name.contains('/') {
            return Ok(AgentAt::Path { path: PathBuf::from(name), label: name.to_string() });
        }
        let vm = VmDir::existing(name)?;
        let Some(path) = vm.agent_channel() else {
            return Err(Error::Usage(format!(
                "{name} has no guest agent channel (not running, or started with --no-agent)"
            )));
        };
        Ok(AgentAt::Path { path, label: format!("{name}'s agent") })
    }

    /// A monitor on the agent, once it answers; a socket's gets `timeout`
    /// to (libvirt's says at once whether it is connected).
    pub(super) fn open(&self, timeout: Duration) -> Result<Monitor, Error> {
        match self {
            AgentAt::Path { path, label } => Ok(agent::connect_plain(&Target::Unix(path.clone()), label, timeout)?),
            AgentAt::Libvirt { uri, domain } => through_libvirt(uri, domain, End::Agent),
        }
    }
}

/// Which end of a libvirt domain to reach.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Its guest agent, through libvirt's agent API.
    Agent,
    /// QEMU's monitor, through libvirt's QEMU monitor API.
    Monitor,
}

/// `end` of the running libvirt domain `domain` at `uri`.
#[cfg(feature = "libvirt")]
fn through_libvirt(uri: &str, domain: &str, end: End) -> Result<Monitor, Error> {
    let reached = match end {
        End::Agent => qmp::libvirt::agent(Some(uri), domain, qmp::libvirt::Patience::Usual),
        End::Monitor => qmp::libvirt::connect(Some(uri), domain, qmp::libvirt::Patience::Usual),
    };
    Ok(reached?)
}

#[cfg(not(feature = "libvirt"))]
fn through_libvirt(_: &str, _: &str, _: End) -> Result<Monitor, Error> {
    Err(Error::Usage(crate::error::WITHOUT_LIBVIRT.into()))
}

/// `vm exec`, `vm wait` and `vm cp`: through the guest agent of a managed
/// VM, a socket, or with `uri` a libvirt domain at that libvirt. Other
/// commands are not the agent's.
pub(super) fn run(command: VmCommand, uri: Option<&str>, out: &mut dyn Write) -> Result<(), Error> {
    match command {
        VmCommand::Exec { name, request } => exec(&AgentAt::find(&name, uri)?, request, out),
        VmCommand::Wait { name, until, timeout } => wait(&name, uri, &until, timeout),
        VmCommand::Cp { source, destination } => copy::run(&source, &destination, uri, Facts::now().stderr),
        _ => Err(Error::Usage("only vm exec, wait and cp go through the guest agent".into())),
    }
}

/// `vm exec`: runs the program, its output to qmpsh's own stdout and
/// stderr; its exit code becomes qmpsh's. qmpsh's stdin goes to it when
/// it is not a terminal, unless `request` already has its input.
fn exec(at: &AgentAt, mut request: Request, out: &mut dyn Write) -> Result<(), Error> {
    let stdin = std::io::stdin();
    // `--no-stdin` came as an input already given.
    if request.input.is_none() && !stdin.is_terminal() {
        request.input = Some(guest::read_input(&mut stdin.lock())?);
    }
    let mut agent = at.open(AGENT_ANSWERS)?;
    let mut err = output::stderr();
    let ended = guest::exec(&mut agent, &request, &mut Quiet, out, &mut err)?;
    if let Some(cut) = guest::truncation(&ended) {
        writeln!(err, "qmpsh: {cut}").map_err(Error::output)?;
    }
    match ended.code {
        0 => Ok(()),
        code => Err(Error::Exited(u8::try_from(code & 0xff).unwrap_or(1))),
    }
}

/// `vm wait`: polls until the guest can be reached as `until` says, or
/// the timeout passes (exit 4, one line). With `uri`, `name` is a libvirt
/// domain there.
fn wait(name: &str, uri: Option<&str>, until: &Until, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let reached = match until {
        Until::Agent => {
            let at = AgentAt::find(name, uri)?;
            if let AgentAt::Libvirt { uri, domain } = &at {
                // A domain that is not there, or not running, never will be.
                drop(through_libvirt(uri, domain, End::Monitor)?);
            }
            retry(deadline, |left| at.open(left).is_ok())
        }
        Until::Ssh if uri.is_some() => {
            return Err(Error::Usage(
                "vm wait --ssh needs a VM qmpsh started with --ssh-port, not a libvirt domain".into(),
            ));
        }
        Until::Ssh => {
            let vm = VmDir::existing(name)?;
            let Some(port) = vm.chosen().ssh_port else {
                return Err(Error::Usage(format!("{name} has no --ssh-port forward")));
            };
            retry(deadline, |left| ssh_banner(port, left))
        }
        Until::Event(event) => {
            let mut monitor = match uri {
                Some(uri) => through_libvirt(uri, name, End::Monitor)?,
                None => {
                    let vm = VmDir::existing(name)?;
                    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
                    let greeting_timeout = left.min(Duration::from_secs(5));
                    let connect = Connect { greeting_timeout, negotiate: true, write_timeout: None };
                    qmp::connect(&Target::Unix(vm.own_socket()), connect, &mut Quiet)?
                }
            };
            return wait_event(&mut monitor, name, event, deadline, timeout);
        }
    };
    if reached {
        return Ok(());
    }
    let what = match until {
        Until::Agent => "no guest agent answered",
        _ => "no sshd sent its banner on the --ssh-port forward",
    };
    Err(Error::Timeout(format!("{name}: {what} within {} s", timeout.as_secs_f64())))
}

/// Tries `reach` (given the time left, at most 2 s a try) every 200 ms
/// until it succeeds or `deadline` passes.
fn retry(deadline: Instant, mut reach: impl FnMut(Duration) -> bool) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let tried = Instant::now();
        if reach(left.min(Duration::from_secs(2))) {
            return true;
        }
        let pause = Duration::from_millis(200).saturating_sub(tried.elapsed());
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Whether 127.0.0.1:`port` accepts and sends an `SSH-` line within
/// `limit`: QEMU's user network accepts even when nothing in the guest
/// listens, so the banner is what tells.
fn ssh_banner(port: u16, limit: Duration) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(stream) = TcpStream::connect_timeout(&address, limit) else { return false };
    if stream.set_read_timeout(Some(limit)).is_err() {
        return false;
    }
    // RFC 4253 lets a server send other lines first; 255 bytes each.
    let mut lines = BufReader::new(std::io::Read::take(stream, 8 * 256));
    let mut line = Vec::new();
    for _ in 0..8 {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line.starts_with(b"SSH-") => return true,
            Ok(_) => {}
        }
    }
    false
}

/// `vm wait --event`: on `monitor`, until the event comes.
fn wait_event(
    monitor: &mut Monitor,
    name: &str,
    event: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), Error> {
    let mut wanted = |message: &Value| message.get("event").and_then(Value::as_str) == Some(event);
    match monitor.wait_event(Some(deadline), &mut Quiet, &mut wanted)? {
        Some(_) => Ok(()),
        None => Err(Error::Timeout(format!(
            "{}: no {} event within {} s",
            visible::line(name),
            visible::line(event),
            timeout.as_secs_f64()
        ))),
    }
}
