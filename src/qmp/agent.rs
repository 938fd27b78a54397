//! The QEMU guest agent (qemu-ga) over its channel: QMP-shaped, but with no
//! greeting, a channel that may still hold a reply meant for an earlier
//! client, and commands that by design never answer (`guest-shutdown`,
//! `guest-suspend-*`). [`AgentMonitor`] hides those differences behind
//! [`Monitor`], so the shell, `vm status` and `vm stop` use it like QMP.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::{ClientError, Kind, Monitor, Observer, Quiet, Reply, SocketMonitor, Waker, command};
use crate::target::Target;

/// Commands that never reply, whatever `guest-info` says.
const NO_REPLY: &[&str] = &["guest-shutdown", "guest-suspend-disk", "guest-suspend-ram", "guest-suspend-hybrid"];

/// A guest agent, synchronised and ready for commands.
pub struct AgentMonitor {
    socket: SocketMonitor,
    /// Enabled commands, from `guest-info`.
    commands: Vec<String>,
    /// Commands that send no reply.
    silent: HashSet<String>,
    /// Tickets of posted commands that will get no reply.
    unanswered: HashSet<u64>,
    /// Whether something was sent that no reply has shown the agent read.
    unconfirmed: bool,
    /// The last command sent that gets no reply (`guest-shutdown`): the
    /// channel closing after it is its doing.
    ending: Option<String>,
}

/// How long closing waits for QEMU to read what the agent was sent last.
const HAND_OVER: Duration = Duration::from_secs(5);

impl AgentMonitor {
    /// Connects to the agent channel at `target` and resynchronises with
    /// `guest-sync-delimited`; `label` names it in errors. Fails when no
    /// agent answers within `timeout`.
    pub fn connect(target: &Target, label: &str, timeout: Duration) -> Result<AgentMonitor, ClientError> {
        let socket = SocketMonitor::connect_agent(target, timeout)?;
        let mut agent = AgentMonitor {
            socket,
            commands: Vec::new(),
            silent: HashSet::new(),
            unanswered: HashSet::new(),
            unconfirmed: false,
            ending: None,
        };
        let deadline = Instant::now() + timeout;
        let mut greeted = Greeted(false);
        agent.sync(deadline, &mut greeted).map_err(|e| match e {
            _ if greeted.0 => ClientError::Io(format!(
                "{label} is a QMP monitor, not a guest agent's channel: `qmpsh {label}` opens it"
            )),
            ClientError::Timeout | ClientError::Closed | ClientError::Protocol(_) => ClientError::Io(format!(
                "no guest agent answers on {label} within {} s: is qemu-ga running in the guest? \
                 (the channel takes one client: is another holding it?)",
                timeout.as_secs_f64()
            )),
            other => other,
        })?;
        agent.learn_commands(deadline);
        Ok(agent)
    }

    /// `guest-sync-delimited` until the agent echoes our token: replies
    /// left on the channel by an earlier client are read past.
    fn sync(&mut self, deadline: Instant, observer: &mut dyn Observer) -> Result<(), ClientError> {
        let base = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64 % (1 << 40));
        for attempt in 0..8u64 {
            let token = base + attempt;
            let mut arguments = Map::new();
            arguments.insert("id".into(), Value::from(token));
            let mut message = command("guest-sync-delimited");
            message.insert("arguments".into(), Value::Object(arguments));
            match self.socket.execute(message, Some(deadline), observer) {
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
    fn learn_commands(&mut self, deadline: Instant) {
        self.silent = NO_REPLY.iter().map(|c| c.to_string()).collect();
        let Ok(Ok(info)) = self.socket.execute(command("guest-info"), Some(deadline), &mut Quiet) else { return };
        for entry in info.get("supported_commands").and_then(Value::as_array).into_iter().flatten() {
            let Some(name) = entry.get("name").and_then(Value::as_str) else { continue };
            if entry.get("enabled").and_then(Value::as_bool) != Some(false) {
                self.commands.push(name.to_string());
            }
            if entry.get("success-response").and_then(Value::as_bool) == Some(false) {
                self.silent.insert(name.to_string());
            }
        }
        self.commands.sort();
    }

    /// Asks the guest to power off. It sends no reply when it obeys; an
    /// error within a second means it refused (disabled, or no shutdown
    /// program in the guest), and says why.
    pub fn shutdown_guest(&mut self) -> Result<(), String> {
        let ticket = self.socket.post(command("guest-shutdown"), &mut Quiet).map_err(|e| e.to_string())?;
        self.unconfirmed = true;
        let deadline = Instant::now() + Duration::from_secs(1);
        match self.socket.await_reply(ticket, Some(deadline), &mut Quiet) {
            Ok(Err(refused)) => Err(refused.to_string()),
            Err(ClientError::Timeout | ClientError::Closed) | Ok(Ok(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether the agent answers `guest-ping` before `deadline`.
    pub fn ping(&mut self, deadline: Instant) -> bool {
        matches!(self.socket.execute(command("guest-ping"), Some(deadline), &mut Quiet), Ok(Ok(_)))
    }
}

/// Notices a QMP greeting where an agent was expected.
struct Greeted(bool);

impl Observer for Greeted {
    fn sent(&mut self, _: &Value) {}
    fn received(&mut self, message: &Value, _: Kind) {
        self.0 |= message.get("QMP").is_some();
    }
}

/// QEMU drops a client that hangs up at once, with whatever it had not yet
/// read from the socket (it reads only as fast as the guest takes bytes). A
/// command that gets no reply, such as `guest-shutdown`, could be lost that
/// way: so after one, closing half-closes and waits until QEMU has read to
/// the end.
impl Drop for AgentMonitor {
    fn drop(&mut self) {
        if self.unconfirmed {
            self.socket.hand_over(Instant::now() + HAND_OVER);
        }
    }
}

impl Monitor for AgentMonitor {
    fn post(&mut self, command: Map<String, Value>, observer: &mut dyn Observer) -> Result<u64, ClientError> {
        let name = command.get("execute").and_then(Value::as_str).map(String::from);
        let silent = name.as_ref().filter(|name| self.silent.contains(*name));
        self.ending = silent.cloned();
        let ticket = self.socket.post(command, observer)?;
        if self.ending.is_some() {
            self.socket.forget(ticket);
            self.unanswered.insert(ticket);
            self.unconfirmed = true;
        }
        Ok(ticket)
    }

    fn await_reply(
        &mut self,
        ticket: u64,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
    ) -> Result<Reply, ClientError> {
        // It will not answer: sent, it has done all it can tell us.
        if self.unanswered.remove(&ticket) {
            let done = Value::Object(Map::new());
            observer.received(&done, Kind::Reply);
            return Ok(Ok(done));
        }
        let reply = self.socket.await_reply(ticket, deadline, observer);
        // A reply means the agent read everything sent before it.
        if reply.is_ok() {
            self.unconfirmed = false;
        }
        reply
    }

    fn wait_event(
        &mut self,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
        wanted: &mut dyn FnMut(&Value) -> bool,
    ) -> Result<Option<Value>, ClientError> {
        self.socket.wait_event(deadline, observer, wanted)
    }

    fn wait_wake(&mut self, observer: &mut dyn Observer) -> Result<(), ClientError> {
        self.socket.wait_wake(observer)
    }

    fn waker(&self) -> Waker {
        self.socket.waker()
    }

    fn command_names(&self) -> Vec<String> {
        self.commands.clone()
    }

    fn ended_by(&self) -> Option<&str> {
        self.ending.as_deref()
    }
}
