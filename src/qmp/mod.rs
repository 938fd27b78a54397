//! The QMP client: connect, greet, negotiate, send commands tagged with an
//! `id`, match replies by it, and hand every other message (events, stray
//! replies) to an [`Observer`] the moment it is read.
//!
//! [`Monitor`] is the small interface the rest of qmpsh drives. Two
//! transports implement it: the socket (QMP, and qemu-ga) and, with the
//! `libvirt` feature, libvirt's QEMU monitor API for the VMs libvirt runs.

pub mod agent;
mod framer;
mod inbox;
mod ledger;
#[cfg(feature = "libvirt")]
pub mod libvirt;
mod socket;

use std::fmt;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::visible::{Breaks, visible};

pub use framer::Framer;
pub use ledger::{Ledger, Settled};
pub use socket::{Connect, SocketMonitor};

/// What a received message was, as far as the client is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The greeting that opens a session.
    Greeting,
    /// The reply to the command being executed.
    Reply,
    /// An asynchronous event.
    Event,
    /// A message that answers no command sent here (an id never sent, a
    /// second reply to one command, a reply with nothing awaited): passed
    /// over, and worth a note.
    Stray,
    /// The reply to a command whose wait was given up (it timed out or was
    /// interrupted): passed over.
    Late,
}

/// Sees the traffic as it happens: for logging, `-v`, `--json`, and
/// printing events the moment they arrive.
pub trait Observer {
    fn sent(&mut self, message: &Value);
    fn received(&mut self, message: &Value, kind: Kind);
    /// Nothing has come for a moment and the wait goes on: a good time to
    /// show what is buffered.
    fn waiting(&mut self) {}
    /// Whether the output went away (a closed pipe): a wait that only
    /// shows what comes stops then.
    fn closed(&self) -> bool {
        false
    }
}

/// A QMP message that runs `name` without arguments.
pub fn command(name: &str) -> Map<String, Value> {
    let mut message = Map::new();
    message.insert("execute".into(), Value::String(name.into()));
    message
}

/// An observer that ignores everything.
pub struct Quiet;

impl Observer for Quiet {
    fn sent(&mut self, _: &Value) {}
    fn received(&mut self, _: &Value, _: Kind) {}
}

/// A QMP error reply.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpError {
    pub class: String,
    pub desc: String,
}

impl QmpError {
    /// The error of a reply. One without a class or a description (a peer
    /// that is not QEMU) shows what it sent instead of nothing.
    fn from_reply(error: &Value) -> QmpError {
        let text = |key: &str| error.get(key).and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_string);
        match (text("class"), text("desc")) {
            (Some(class), Some(desc)) => QmpError { class, desc },
            (class, _) => QmpError { class: class.unwrap_or_else(|| "error".into()), desc: error.to_string() },
        }
    }
}

/// `CLASS: desc`, each made visible: both are the peer's text.
impl fmt::Display for QmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = |text| visible(text, Breaks::Escape);
        write!(f, "{}: {}", line(&self.class), line(&self.desc))
    }
}

/// The outcome of a command that got an answer: its `return` value or its
/// error.
pub type Reply = Result<Value, QmpError>;

/// Why the client could not get an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// EOF or a reset connection: QEMU closed the connection (expected
    /// after `quit`).
    Closed,
    /// The deadline passed with no reply.
    Timeout,
    /// The peer broke the protocol: garbage, or an error without an id.
    Protocol(String),
    /// Ctrl-C cut the wait short (in the REPL).
    Interrupted,
    /// The connection could not be made or used.
    Io(String),
    /// The output was closed while messages were being shown
    /// ([`Observer::closed`]).
    OutputClosed,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Closed => f.write_str("QEMU closed the connection"),
            ClientError::Timeout => f.write_str("no reply in time"),
            ClientError::Protocol(msg) => write!(f, "protocol error: {msg}"),
            ClientError::Interrupted => f.write_str("interrupted"),
            ClientError::Io(msg) => f.write_str(msg),
            ClientError::OutputClosed => f.write_str("the output was closed"),
        }
    }
}

/// Executes QMP commands and yields the events that arrive meanwhile.
pub trait Monitor {
    /// Sends `command` (a QMP message without `id`; one it carries is kept)
    /// and waits until `deadline` (or forever) for its reply, handing every
    /// other message read meanwhile to `observer`.
    fn execute(
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
    fn post(&mut self, command: Map<String, Value>, observer: &mut dyn Observer) -> Result<u64, ClientError>;

    /// Waits until `deadline` (or forever) for the reply to the command
    /// posted as `ticket`, handing every other message to `observer`.
    fn await_reply(
        &mut self,
        ticket: u64,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
    ) -> Result<Reply, ClientError>;

    /// Reads messages until `deadline` (or forever), handing each to
    /// `observer`, and stops early at the first event `wanted` accepts,
    /// which it returns.
    fn wait_event(
        &mut self,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
        wanted: &mut dyn FnMut(&Value) -> bool,
    ) -> Result<Option<Value>, ClientError>;

    /// The greeting, when the monitor sent one.
    fn greeting(&self) -> Option<&Value> {
        None
    }

    /// The pid of the process at the other end, when the transport can
    /// tell (a local unix socket can): `.shutdown` kills it as a last resort.
    fn peer_pid(&self) -> Option<i32> {
        None
    }

    /// Reads messages, handing each to `observer`, until a [`Monitor::waker`]
    /// call (a wake-up sent before this call may end it at once).
    fn wait_wake(&mut self, observer: &mut dyn Observer) -> Result<(), ClientError>;

    /// A handle another thread can call to end a [`Monitor::wait_wake`]:
    /// the input thread, when a line has been read.
    fn waker(&self) -> Waker;

    /// Command names the peer says it has, for completion, when it offers
    /// no schema (the guest agent's `guest-info`).
    fn command_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// The command last sent, when it is one that gets no reply and may end
    /// the peer's side (the agent's `guest-shutdown`): the connection
    /// closing after it is then its doing, not a loss.
    fn ended_by(&self) -> Option<&str> {
        None
    }
}

/// Ends a wait from another thread.
pub type Waker = Box<dyn Fn() + Send>;
