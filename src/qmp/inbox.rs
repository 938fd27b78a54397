//! What the client waits for, in the order it came: messages (replies and
//! events), why the connection ended, and wake-ups from the input thread,
//! all from the [`Transport`], which the inbox owns; and the ledger of what
//! was sent through it, so that each reply finds its command. Waiting for
//! a reply, an event or a wake-up, with a deadline and Ctrl-C, is written
//! once, here.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ledger::{Ledger, Settled};
use super::{ClientError, Incoming, Kind, Observer, QmpError, Reply, Transport};
use crate::interrupt;

/// What a wait for the next message got.
enum Got {
    Message(Value),
    Woken,
    Settled,
}

/// How often a wait without deadline looks at the Ctrl-C flag.
const INTERRUPT_POLL: Duration = Duration::from_millis(100);

/// How long a wait runs before buffered output is shown
/// ([`Observer::waiting`]): a quick reply costs no extra write.
const FIRST_SLICE: Duration = Duration::from_millis(10);

/// The transport, with how it ended once it has, and which reply answers
/// which command sent through it.
pub struct Inbox {
    pub(super) transport: Box<dyn Transport>,
    ended: Option<ClientError>,
    ledger: Ledger,
    /// Replies read while another was awaited, by ticket: a peer may answer
    /// commands that carry ids in any order. One per command in flight.
    early: HashMap<u64, Early>,
    /// Commands whose wait was given up (timed out, interrupted): a reply
    /// that comes later is passed over, not kept.
    abandoned: HashSet<u64>,
}

/// A reply that came before its turn.
enum Early {
    Answer(Value),
    /// An error without the command's id ([`Settled::Unread`]).
    Unread(Value),
}

impl Inbox {
    pub fn new(transport: Box<dyn Transport>) -> Inbox {
        Inbox { transport, ended: None, ledger: Ledger::default(), early: HashMap::new(), abandoned: HashSet::new() }
    }

    /// Sends `message`, which carries `id` (or none), and records it as
    /// owed a reply: its ticket.
    pub fn send(&mut self, message: &Value, id: Option<Value>) -> Result<u64, ClientError> {
        self.transport.send(message)?;
        Ok(self.ledger.record(id))
    }

    /// A number for a command's id that no earlier command here used.
    pub fn fresh_id(&self) -> Value {
        self.ledger.fresh_id()
    }

    /// Stops waiting for a reply to `ticket`: its command sends none.
    pub fn forget(&mut self, ticket: u64) {
        self.ledger.forget(ticket);
    }

    /// The next message (or wake-up), or why none will come. A wait is cut
    /// short by Ctrl-C when the REPL has asked for that (`crate::interrupt`).
    fn recv(
        &mut self,
        deadline: Option<Instant>,
        wakeable: bool,
        observer: &mut dyn Observer,
    ) -> Result<Got, ClientError> {
        if let Some(end) = &self.ended {
            return Err(end.clone());
        }
        // Slices of a few fixed lengths (a socket then rarely has its read
        // timeout changed): a short first one, then the Ctrl-C period.
        let mut first = true;
        loop {
            if interrupt::take() {
                return Err(ClientError::Interrupted);
            }
            // Checked before every message, not only when none comes: a
            // flood of events must not hold the wait open past its deadline.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ClientError::Timeout);
            }
            let period = if first { FIRST_SLICE } else { INTERRUPT_POLL };
            let slice = match deadline {
                None => period,
                Some(deadline) => deadline.saturating_duration_since(Instant::now()).min(period),
            };
            if !first {
                observer.waiting();
            }
            first = false;
            match self.transport.receive(slice, wakeable) {
                Some(Incoming::Message(message)) => return Ok(Got::Message(message)),
                Some(Incoming::Wake) => return Ok(Got::Woken),
                Some(Incoming::Settled) => return Ok(Got::Settled),
                Some(Incoming::End(end)) => {
                    self.ended = Some(end.clone());
                    return Err(end);
                }
                None if deadline.is_some_and(|d| Instant::now() >= d) => return Err(ClientError::Timeout),
                None => {}
            }
        }
    }

    /// The next message, passing over wake-ups.
    pub fn recv_message(
        &mut self,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
    ) -> Result<Value, ClientError> {
        loop {
            if let Got::Message(message) = self.recv(deadline, false, observer)? {
                return Ok(message);
            }
        }
    }

    /// Waits for the reply to the command recorded as `ticket`, handing
    /// every other message to `observer` as it comes. A reply to another
    /// command still awaited is kept for its turn; a reply to none is
    /// shown as [`Kind::Stray`]. A wait that ends without the reply gives
    /// the command up: its reply, if it comes, is passed over.
    pub fn await_reply(
        &mut self,
        ticket: u64,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
    ) -> Result<Reply, ClientError> {
        if let Some(early) = self.early.remove(&ticket) {
            return answer(early, observer);
        }
        if !self.ledger.owes(ticket) {
            return Err(ClientError::Protocol(format!("no command awaits reply {ticket}")));
        }
        let reply = self.await_owed(ticket, deadline, observer);
        if reply.is_err() && self.ledger.owes(ticket) {
            self.abandoned.insert(ticket);
        }
        reply
    }

    fn await_owed(
        &mut self,
        ticket: u64,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
    ) -> Result<Reply, ClientError> {
        loop {
            let message = self.recv_message(deadline, observer)?;
            if let Some(early) = self.sort(message, observer) {
                match early {
                    (answered, early) if answered == ticket => return answer(early, observer),
                    (answered, early) => {
                        self.early.insert(answered, early);
                    }
                }
            }
            if observer.closed() {
                return Err(ClientError::OutputClosed);
            }
        }
    }

    /// Hands `message` to `observer` unless it is a reply to a command
    /// still awaited, which it returns with that command's ticket.
    fn sort(&mut self, message: Value, observer: &mut dyn Observer) -> Option<(u64, Early)> {
        if message.get("event").is_some() {
            observer.received(&message, Kind::Event);
            return None;
        }
        if message.get("return").is_none() && message.get("error").is_none() {
            observer.received(&message, Kind::Stray);
            return None;
        }
        let (answered, early) = match self.ledger.settle(&message) {
            Settled::Answer(answered) => (answered, Early::Answer(message)),
            Settled::Unread(answered) => (answered, Early::Unread(message)),
            Settled::Stray => {
                observer.received(&message, Kind::Stray);
                return None;
            }
        };
        if self.abandoned.remove(&answered) {
            let (Early::Answer(message) | Early::Unread(message)) = &early;
            observer.received(message, Kind::Late);
            return None;
        }
        Some((answered, early))
    }

    /// Reads what has already come, without waiting, when no command
    /// awaits a reply: before a command is sent, so a reply nothing asked
    /// for (a second reply to the last command) is reported as such, not
    /// taken for the next command's answer. With commands in flight
    /// (`--pipeline`) it reads nothing: their replies and the events
    /// between them show in the order they came, each in its turn.
    pub fn read_ready(&mut self, observer: &mut dyn Observer) {
        let awaited = self.ledger.owed().any(|ticket| !self.abandoned.contains(&ticket));
        if self.ended.is_some() || awaited {
            return;
        }
        while let Some(item) = self.transport.receive(Duration::ZERO, false) {
            match item {
                Incoming::Message(message) => {
                    if let Some((answered, early)) = self.sort(message, observer) {
                        self.early.insert(answered, early);
                    }
                }
                Incoming::Wake | Incoming::Settled => {}
                Incoming::End(end) => {
                    self.ended = Some(end);
                    return;
                }
            }
        }
    }

    /// See [`super::Monitor::wait_event`].
    pub fn wait_event(
        &mut self,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
        wanted: &mut dyn FnMut(&Value) -> bool,
    ) -> Result<Option<Value>, ClientError> {
        loop {
            let message = match self.recv_message(deadline, observer) {
                Ok(message) => message,
                Err(ClientError::Timeout) => return Ok(None),
                Err(e) => return Err(e),
            };
            if message.get("event").is_none() {
                if let Some((answered, early)) = self.sort(message, observer) {
                    self.early.insert(answered, early);
                }
            } else {
                observer.received(&message, Kind::Event);
                if wanted(&message) {
                    return Ok(Some(message));
                }
            }
            if observer.closed() {
                return Err(ClientError::OutputClosed);
            }
        }
    }

    /// See [`super::Monitor::settle`].
    pub fn settle(&mut self, deadline: Instant, observer: &mut dyn Observer) -> Result<(), ClientError> {
        if self.ended.is_some() || !self.transport.settle() {
            return Ok(());
        }
        loop {
            match self.recv(Some(deadline), false, observer) {
                Ok(Got::Settled) | Err(ClientError::Timeout) => return Ok(()),
                Ok(Got::Woken) => {}
                Ok(Got::Message(message)) => {
                    if let Some((answered, early)) = self.sort(message, observer) {
                        self.early.insert(answered, early);
                    }
                }
                Err(e) => return Err(e),
            }
            if observer.closed() {
                return Err(ClientError::OutputClosed);
            }
        }
    }

    /// See [`super::Monitor::wait_wake`].
    pub fn wait_wake(&mut self, observer: &mut dyn Observer) -> Result<(), ClientError> {
        loop {
            match self.recv(None, true, observer)? {
                Got::Woken => return Ok(()),
                Got::Settled => {}
                Got::Message(message) => {
                    if let Some((answered, early)) = self.sort(message, observer) {
                        self.early.insert(answered, early);
                    }
                    if observer.closed() {
                        return Err(ClientError::OutputClosed);
                    }
                }
            }
        }
    }
}

/// Shows a reply in its turn and returns it.
fn answer(early: Early, observer: &mut dyn Observer) -> Result<Reply, ClientError> {
    match early {
        Early::Answer(message) => {
            observer.received(&message, Kind::Reply);
            Ok(reply_of(message))
        }
        Early::Unread(message) => {
            observer.received(&message, Kind::Reply);
            Err(ClientError::Protocol(format!(
                "QEMU answered with an error that lacks the command's id, so it could not read the command: {}",
                QmpError::from_reply(message.get("error").unwrap_or(&Value::Null))
            )))
        }
    }
}

/// The reply, moved out of the message: a large return is not copied.
fn reply_of(mut message: Value) -> Reply {
    if let Some(error) = message.get("error") {
        return Err(QmpError::from_reply(error));
    }
    Ok(message.get_mut("return").map(Value::take).unwrap_or(Value::Null))
}
