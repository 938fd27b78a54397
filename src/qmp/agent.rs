//! The QEMU guest agent (qemu-ga) over its channel: QMP-shaped, but with no
//! greeting, a channel that may still hold a reply meant for an earlier
//! client, and commands that by design never answer (`guest-shutdown`,
//! `guest-suspend-*`). [`connect`] sets the [`Monitor`] up for those
//! differences, so the shell, `vm status` and `vm stop` use it like QMP.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::socket::Socket;
use super::{ClientError, Kind, Monitor, Observer, Quiet, command};
use crate::target::Target;

/// Commands that never reply, whatever `guest-info` says.
const NO_REPLY: &[&str] = &["guest-shutdown", "guest-suspend-disk", "guest-suspend-ram", "guest-suspend-hybrid"];

/// Connects to the agent channel at `target` and resynchronises with
/// `guest-sync-delimited`; `label` names it in errors. Fails when no
/// agent answers within `timeout`. What the agent can do is then learnt
/// from `guest-info`, for completion and the commands that never reply.
pub fn connect(target: &Target, label: &str, timeout: Duration) -> Result<Monitor, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut agent = connect_plain(target, label, timeout)?;
    learn_commands(&mut agent, deadline);
    Ok(agent)
}

/// [`connect`] without `guest-info`: for work that sends only commands
/// that reply (`vm exec`, `vm cp`), one round trip to the guest fewer.
pub fn connect_plain(target: &Target, label: &str, timeout: Duration) -> Result<Monitor, ClientError> {
    let mut agent = Monitor::new(Box::new(Socket::agent(target, timeout)?));
    agent.give_every_command_an_id();
    let deadline = Instant::now() + timeout;
    let mut greeted = Greeted(false);
    sync(&mut agent, deadline, &mut greeted).map_err(|e| match e {
        _ if greeted.0 => {
            ClientError::Io(format!("{label} is a QMP monitor, not a guest agent's channel: `qmpsh {label}` opens it"))
        }
        ClientError::Timeout | ClientError::Closed | ClientError::Protocol(_) => ClientError::Io(format!(
            "no guest agent answers on {label} within {} s: is qemu-ga running in the guest? \
             (the channel takes one client: is another holding it?)",
            timeout.as_secs_f64()
        )),
        other => other,
    })?;
    Ok(agent)
}

/// Readies a monitor on an agent whose channel someone else keeps in step
/// (libvirt's agent API), as [`connect_plain`] does a socket's: it answers
/// `guest-ping` before `deadline`. `label` names it in errors.
#[cfg(feature = "libvirt")]
pub fn ready(mut agent: Monitor, label: &str, deadline: Instant) -> Result<Monitor, ClientError> {
    agent.give_every_command_an_id();
    match agent.execute(command("guest-ping"), Some(deadline), &mut Quiet) {
        Ok(Ok(_)) => {}
        Ok(Err(refused)) => {
            let why = crate::visible::line(&refused.desc);
            return Err(ClientError::Io(format!("no guest agent answers in {label}: {why}")));
        }
        Err(e) => return Err(e),
    }
    Ok(agent)
}

/// `guest-sync-delimited` until the agent echoes our token: replies
/// left on the channel by an earlier client are read past.
fn sync(agent: &mut Monitor, deadline: Instant, observer: &mut dyn Observer) -> Result<(), ClientError> {
    let base = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64 % (1 << 40));
    for attempt in 0..8u64 {
        let token = base + attempt;
        let mut arguments = Map::new();
        arguments.insert("id".into(), Value::from(token));
        let mut message = command("guest-sync-delimited");
        message.insert("arguments".into(), Value::Object(arguments));
        match agent.execute(message, Some(deadline), observer) {
            Ok(Ok(echo)) if echo == token => return Ok(()),
            // A stale reply, or the agent's complaint about the reset
            // byte (an error without an id): ask again.
            Ok(_) | Err(ClientError::Protocol(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ClientError::Protocol("the guest agent never echoed guest-sync-delimited's token".into()))
}

/// Reads `guest-info`: which commands are enabled, and which never reply.
fn learn_commands(agent: &mut Monitor, deadline: Instant) {
    let mut names = Vec::new();
    let mut replyless: HashSet<String> = NO_REPLY.iter().map(|c| c.to_string()).collect();
    if let Ok(Ok(info)) = agent.execute(command("guest-info"), Some(deadline), &mut Quiet) {
        for entry in info.get("supported_commands").and_then(Value::as_array).into_iter().flatten() {
            let Some(name) = entry.get("name").and_then(Value::as_str) else { continue };
            if entry.get("enabled").and_then(Value::as_bool) != Some(false) {
                names.push(name.to_string());
            }
            if entry.get("success-response").and_then(Value::as_bool) == Some(false) {
                replyless.insert(name.to_string());
            }
        }
    }
    names.sort();
    agent.learn_commands(names, replyless);
}

/// Asks the guest to power off. It sends no reply when it obeys; an
/// error within a second means it refused (disabled, or no shutdown
/// program in the guest), and says why.
pub fn shutdown_guest(agent: &mut Monitor) -> Result<(), String> {
    let ticket = agent.post_refusable(command("guest-shutdown")).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(1);
    match agent.await_refusal(ticket, deadline) {
        Ok(Err(refused)) => Err(refused.to_string()),
        Err(ClientError::Timeout | ClientError::Closed) | Ok(Ok(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether the agent answers `guest-ping` before `deadline`.
pub fn ping(agent: &mut Monitor, deadline: Instant) -> bool {
    matches!(agent.execute(command("guest-ping"), Some(deadline), &mut Quiet), Ok(Ok(_)))
}

/// Notices a QMP greeting where an agent was expected.
struct Greeted(bool);

impl Observer for Greeted {
    fn sent(&mut self, _: &Value) {}
    fn received(&mut self, message: &Value, _: Kind) {
        self.0 |= message.get("QMP").is_some();
    }
}
