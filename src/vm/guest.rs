//! `vm exec` and `vm wait`: reaching into a running guest, through its
//! agent channel (`ga.sock`), its `--ssh-port` forward, or its control
//! socket's events. How a program runs through the agent lives in
//! `qemu::guest`, which the agent shell's `.exec` shares.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::options::Until;
use super::state::VmDir;
use crate::error::Error;
use crate::qemu::guest::{self, Request};
use crate::qmp::{self, Connect, Quiet, agent};
use crate::target::Target;
use crate::ui::output;
use crate::visible;

/// How long `vm exec` waits for the agent to answer at all.
const AGENT_ANSWERS: Duration = Duration::from_secs(5);

/// The agent channel `name` means: a managed VM's `ga.sock`, or (with a
/// `/` in it) a socket path; and the label errors name it by.
fn agent_socket(name: &str) -> Result<(PathBuf, String), Error> {
    if name.contains('/') {
        return Ok((PathBuf::from(name), name.to_string()));
    }
    let vm = VmDir::existing(name)?;
    let socket = vm.agent_socket();
    if !socket.exists() {
        return Err(Error::Usage(format!(
            "{name} has no guest agent channel (not running, or started with --no-agent)"
        )));
    }
    Ok((socket, format!("{name}'s agent")))
}

/// `vm exec`: runs the program, its output to qmpsh's own stdout and
/// stderr; its exit code becomes qmpsh's. qmpsh's stdin goes to it when
/// it is not a terminal, unless `request` already has its input.
pub fn exec(name: &str, mut request: Request, out: &mut dyn Write) -> Result<(), Error> {
    let (socket, label) = agent_socket(name)?;
    let stdin = std::io::stdin();
    // `--no-stdin` came as an input already given.
    if request.input.is_none() && !stdin.is_terminal() {
        request.input = Some(guest::read_input(&mut stdin.lock())?);
    }
    let mut agent = agent::connect(&Target::Unix(socket), &label, AGENT_ANSWERS)?;
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
/// the timeout passes (exit 4, one line).
pub fn wait(name: &str, until: &Until, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let reached = match until {
        Until::Agent => {
            let (socket, label) = agent_socket(name)?;
            retry(deadline, |left| agent::connect(&Target::Unix(socket.clone()), &label, left).is_ok())
        }
        Until::Ssh => {
            let vm = VmDir::existing(name)?;
            let Some(port) = vm.chosen().ssh_port else {
                return Err(Error::Usage(format!("{name} has no --ssh-port forward")));
            };
            retry(deadline, |left| ssh_banner(port, left))
        }
        Until::Event(event) => return wait_event(&VmDir::existing(name)?, event, deadline, timeout),
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

/// `vm wait --event`: on the VM's control socket, until the event comes.
fn wait_event(vm: &VmDir, event: &str, deadline: Instant, timeout: Duration) -> Result<(), Error> {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    let connect = Connect { greeting_timeout: left.min(Duration::from_secs(5)), negotiate: true, write_timeout: None };
    let mut monitor = qmp::connect(&Target::Unix(vm.own_socket()), connect, &mut Quiet)?;
    let mut wanted = |message: &Value| message.get("event").and_then(Value::as_str) == Some(event);
    match monitor.wait_event(Some(deadline), &mut Quiet, &mut wanted)? {
        Some(_) => Ok(()),
        None => Err(Error::Timeout(format!(
            "{}: no {} event within {} s",
            vm.name,
            visible::line(event),
            timeout.as_secs_f64()
        ))),
    }
}
