//! [`Monitor`]: the one QMP client, over any [`Transport`]. It gives
//! commands the ids they need, records each in the inbox's ledger, shows
//! the observer what is sent, and waits for replies and events; a greeting
//! it reads and keeps. What the guest agent needs on top (ids on every
//! command, commands that never reply) is set by agent.rs when it connects.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::inbox::Inbox;
use super::{ClientError, Kind, Observer, Quiet, Reply, Transport, Waker, command};

/// Executes QMP commands and yields the events that arrive meanwhile.
pub struct Monitor {
    inbox: Inbox,
    greeting: Option<Value>,
    /// Give every command an id (the guest agent's channel may hold
    /// replies meant for an earlier client); on QMP only `exec-oob` needs one.
    ids_on_all: bool,
    /// Command names the peer listed itself (the agent's `guest-info`).
    commands: Vec<String>,
    replyless: Replyless,
}

/// Commands that by design never reply (the agent's `guest-shutdown`,
/// `guest-suspend-*`), and what was sent of them.
#[derive(Default)]
struct Replyless {
    names: HashSet<String>,
    /// Tickets of posted commands that will get no reply.
    posted: HashSet<u64>,
    /// Whether something was sent that no reply has shown the peer read.
    unconfirmed: bool,
    /// The last command sent, when it is one of these: the connection
    /// closing after it is its doing.
    ending: Option<String>,
}

/// How long closing waits for the peer to read what it was sent last.
const HAND_OVER: Duration = Duration::from_secs(5);

impl Monitor {
    /// A client over `transport`, which has sent nothing yet.
    pub fn new(transport: Box<dyn Transport>) -> Monitor {
        Monitor {
            inbox: Inbox::new(transport),
            greeting: None,
            ids_on_all: false,
            commands: Vec::new(),
            replyless: Replyless::default(),
        }
    }

    /// Reads the QMP greeting and negotiates capabilities by `deadline`;
    /// `peer` names the other end in errors, which say it was given
    /// `timeout`.
    pub fn negotiate(
        &mut self,
        peer: &dyn fmt::Display,
        deadline: Instant,
        timeout: Duration,
        observer: &mut dyn Observer,
    ) -> Result<(), ClientError> {
        let greeting = match self.inbox.recv_message(Some(deadline), observer) {
            Ok(message) => message,
            Err(ClientError::Timeout) => {
                return Err(ClientError::Io(format!(
                    "no QMP greeting from {peer} within {} s: another client may be holding it (QEMU serves \
                     one client per QMP socket), QEMU may be stopped or slow (--timeout SECS waits longer), or \
                     this is not a QMP socket (-N skips the greeting for qemu-ga)",
                    timeout.as_secs_f64()
                )));
            }
            Err(ClientError::Closed) => {
                return Err(ClientError::Io(format!("QEMU closed the connection to {peer} before its greeting")));
            }
            Err(e) => return Err(e),
        };
        if greeting.get("QMP").is_none() {
            return Err(ClientError::Protocol(format!("expected the QMP greeting from {peer}, got {greeting}")));
        }
        observer.received(&greeting, Kind::Greeting);
        self.greeting = Some(greeting);
        match self.execute(command("qmp_capabilities"), Some(deadline), observer) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ClientError::Protocol(format!("QEMU refused qmp_capabilities: {e}"))),
            Err(ClientError::Timeout) => Err(ClientError::Io(format!(
                "{peer} sent its greeting but did not answer qmp_capabilities within {} s",
                timeout.as_secs_f64()
            ))),
            Err(e) => Err(e),
        }
    }

    /// From now on every command gets an id (the guest agent).
    pub(super) fn give_every_command_an_id(&mut self) {
        self.ids_on_all = true;
    }

    /// What the peer said of its commands: the enabled ones, for
    /// completion, and those that never reply.
    pub(super) fn learn_commands(&mut self, names: Vec<String>, replyless: HashSet<String>) {
        self.commands = names;
        self.replyless.names = replyless;
    }

    /// Sends `command` (a QMP message without `id`; one it carries is kept)
    /// and waits until `deadline` (or forever) for its reply, handing every
    /// other message read meanwhile to `observer`.
    pub fn execute(
        &mut self,
        command: Map<String, Value>,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
    ) -> Result<Reply, ClientError> {
        let ticket = self.post(command, observer)?;
        self.await_reply(ticket, deadline, observer)
    }

    /// Sends `command` without waiting (`--pipeline`) and returns a ticket
    /// for [`Monitor::await_reply`]. Replies must then be awaited in the
    /// order the commands were sent.
    pub fn post(&mut self, command: Map<String, Value>, observer: &mut dyn Observer) -> Result<u64, ClientError> {
        let name = command.get("execute").and_then(Value::as_str);
        self.replyless.ending = name.filter(|name| self.replyless.names.contains(*name)).map(String::from);
        let ticket = self.send(command, observer)?;
        if self.replyless.ending.is_some() {
            self.inbox.forget(ticket);
            self.replyless.posted.insert(ticket);
            self.replyless.unconfirmed = true;
        }
        Ok(ticket)
    }

    /// Sends `command` (with an id only where one is needed) and records it
    /// as owed a reply.
    fn send(&mut self, mut command: Map<String, Value>, observer: &mut dyn Observer) -> Result<u64, ClientError> {
        let id = match command.get("id") {
            Some(id) => Some(id.clone()),
            None if self.ids_on_all || command.contains_key("exec-oob") => {
                let id = self.inbox.fresh_id();
                command.insert("id".into(), id.clone());
                Some(id)
            }
            None => None,
        };
        // A reply read now answers no command about to be sent.
        self.inbox.read_ready(observer);
        let message = Value::Object(command);
        observer.sent(&message);
        self.inbox.send(&message, id)
    }

    /// Waits until `deadline` (or forever) for the reply to the command
    /// posted as `ticket`, handing every other message to `observer`.
    pub fn await_reply(
        &mut self,
        ticket: u64,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
    ) -> Result<Reply, ClientError> {
        // It will not answer: sent, it has done all it can tell us.
        if self.replyless.posted.remove(&ticket) {
            let done = Value::Object(Map::new());
            observer.received(&done, Kind::Reply);
            return Ok(Ok(done));
        }
        let reply = self.inbox.await_reply(ticket, deadline, observer);
        // A reply means the peer read everything sent before it.
        if reply.is_ok() {
            self.replyless.unconfirmed = false;
        }
        reply
    }

    /// Sends `command`, which replies only to refuse (the agent's
    /// `guest-shutdown`): its ticket for [`Monitor::await_refusal`].
    /// Closing then hands over (see the drop), whatever the reply.
    pub(super) fn post_refusable(&mut self, command: Map<String, Value>) -> Result<u64, ClientError> {
        let ticket = self.send(command, &mut Quiet)?;
        self.replyless.unconfirmed = true;
        Ok(ticket)
    }

    /// Waits until `deadline` for a refusal of the command posted as
    /// `ticket` by [`Monitor::post_refusable`].
    pub(super) fn await_refusal(&mut self, ticket: u64, deadline: Instant) -> Result<Reply, ClientError> {
        self.inbox.await_reply(ticket, Some(deadline), &mut Quiet)
    }

    /// Reads messages until `deadline` (or forever), handing each to
    /// `observer`, and stops early at the first event `wanted` accepts,
    /// which it returns.
    pub fn wait_event(
        &mut self,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
        wanted: &mut dyn FnMut(&Value) -> bool,
    ) -> Result<Option<Value>, ClientError> {
        self.inbox.wait_event(deadline, observer, wanted)
    }

    /// Reads messages, handing each to `observer`, until a [`Monitor::waker`]
    /// call (a wake-up sent before this call may end it at once).
    pub fn wait_wake(&mut self, observer: &mut dyn Observer) -> Result<(), ClientError> {
        self.inbox.wait_wake(observer)
    }

    /// Hands `observer` what the peer sent before now and the transport
    /// delivers late (see [`Transport::settle`]), waiting for it until
    /// `deadline` at most: a script's last events, before it ends.
    pub fn settle(&mut self, deadline: Instant, observer: &mut dyn Observer) -> Result<(), ClientError> {
        self.inbox.settle(deadline, observer)
    }

    /// A handle another thread can call to end a [`Monitor::wait_wake`]:
    /// the input thread, when a line has been read.
    pub fn waker(&self) -> Waker {
        self.inbox.transport.waker()
    }

    /// The greeting, when the monitor sent one.
    pub fn greeting(&self) -> Option<&Value> {
        self.greeting.as_ref()
    }

    /// The pid of the process at the other end, when the transport can
    /// tell: `.shutdown` kills it as a last resort.
    pub fn peer_pid(&self) -> Option<i32> {
        self.inbox.transport.peer_pid()
    }

    /// The most bytes one command may take on this channel, when the
    /// transport has a limit below what the peer itself accepts.
    pub fn largest_command(&self) -> Option<usize> {
        self.inbox.transport.largest_command()
    }

    /// Command names the peer says it has, for completion, when it offers
    /// no schema (the guest agent's `guest-info`).
    pub fn command_names(&self) -> Vec<String> {
        self.commands.clone()
    }

    /// The command last sent, when it is one that gets no reply and may end
    /// the peer's side (the agent's `guest-shutdown`): the connection
    /// closing after it is then its doing, not a loss.
    pub fn ended_by(&self) -> Option<&str> {
        self.replyless.ending.as_deref()
    }
}

/// QEMU drops a client that hangs up at once, with whatever it had not yet
/// read from the socket (for the agent's channel, it reads only as fast as
/// the guest takes bytes). A command that gets no reply, such as
/// `guest-shutdown`, could be lost that way: so after one, closing
/// half-closes and waits until the peer has read to the end.
impl Drop for Monitor {
    fn drop(&mut self) {
        if self.replyless.unconfirmed && self.inbox.transport.close_sending() {
            let deadline = Instant::now() + HAND_OVER;
            let _ = self.inbox.wait_event(Some(deadline), &mut Quiet, &mut |_| false);
        }
    }
}
