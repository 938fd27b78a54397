//! The QMP client: connect, greet, negotiate, send commands and match
//! each reply to its command, and hand every other message (events, stray
//! replies) to an [`Observer`] the moment it is read.
//!
//! Replies are matched by order: QEMU answers in-band commands in the
//! order it reads them, so qmpsh sends no id of its own on QMP (see
//! ledger.rs). Only a command that carries an id is matched by it: the
//! user's own, an `exec-oob`, and every command to the guest agent.
//!
//! [`Monitor`] (client.rs) is that client, written once. What differs
//! between peers is a [`Transport`]: how a message goes out and how what
//! comes back reaches the client's inbox. There are three: the socket
//! (QMP, and qemu-ga's channel), and with the `libvirt` feature, libvirt's
//! QEMU monitor API for the VMs libvirt runs; the tests add an in-process
//! fake (fake.rs).

pub mod agent;
mod client;
#[cfg(test)]
pub mod fake;
mod framer;
mod inbox;
mod ledger;
#[cfg(feature = "libvirt")]
pub mod libvirt;
mod socket;

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::visible::{Breaks, visible};

pub use client::Monitor;
pub use framer::Framer;
pub use ledger::{Ledger, Settled};
pub use socket::{Connect, connect, pipe_held};

/// How long a new connection may take to answer when `--timeout` does not
/// say: QEMU's greeting, or libvirt's answer to an open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The client's failures, as a run ends on them: a deadline that passed is
/// a timeout, Ctrl-C an interruption, a closed output a quiet end, and
/// anything else about the connection a connection failure.
impl From<ClientError> for Error {
    fn from(error: ClientError) -> Error {
        match error {
            ClientError::Timeout => Error::Timeout("QEMU gave no reply in time".into()),
            ClientError::Interrupted => Error::Interrupted,
            ClientError::OutputClosed => Error::BrokenPipe,
            ClientError::Closed | ClientError::Protocol(_) | ClientError::Io(_) => Error::Connection(error.to_string()),
        }
    }
}

/// What a transport hands the client's inbox: a message, why the
/// connection ended, or a wake-up from another thread of ours.
pub enum Incoming {
    Message(Value),
    End(ClientError),
    Wake,
    /// Everything the peer had sent before [`Transport::settle`] was
    /// asked for has been handed over.
    Settled,
}

/// How messages reach a peer and come back: all that differs between the
/// socket, libvirt and a test's fake. Matching replies, waiting with a
/// deadline, Ctrl-C and the observer are [`Monitor`]'s, written once.
pub trait Transport {
    /// Sends one message, whole (the observer has seen it).
    fn send(&mut self, message: &Value) -> Result<(), ClientError>;

    /// The next item within `wait`; `None` when none came. Unless
    /// `wakeable`, the caller passes over wake-ups, so the transport need
    /// not watch for them (the socket then reads without polling first).
    fn receive(&mut self, wait: Duration, wakeable: bool) -> Option<Incoming>;

    /// A handle another thread can call to make the current or next
    /// [`Transport::receive`] that is `wakeable` return [`Incoming::Wake`].
    fn waker(&self) -> Waker;

    /// The pid of the process at the other end, when the transport can
    /// tell (a local unix socket can).
    fn peer_pid(&self) -> Option<i32> {
        None
    }

    /// The most bytes of JSON one command may take, when the transport
    /// carries less than the peer accepts (see [`Monitor::largest_command`]).
    fn largest_command(&self) -> Option<usize> {
        None
    }

    /// Arranges for [`Incoming::Settled`] to come after every message the
    /// peer had sent by now, when messages may come late by the way they
    /// travel (libvirt delivers events on a thread of its own, after the
    /// reply of the command that caused them): whether it will come. A
    /// socket delivers in order, so it needs none; libvirt needs none
    /// after `query-*` commands alone, which cause no events.
    fn settle(&mut self) -> bool {
        false
    }

    /// Stops sending, so that the peer reads to the end of what was sent
    /// and closes: whether the transport can (see [`Monitor`]'s drop).
    fn close_sending(&mut self) -> bool {
        false
    }
}

/// Ends a wait from another thread.
pub type Waker = Box<dyn Fn() + Send>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_failure_ends_a_run_with_the_exit_code_of_its_kind() {
        let code = |e: ClientError| Error::from(e).exit_code();
        assert_eq!(code(ClientError::Closed), 3);
        assert_eq!(code(ClientError::Protocol("garbage".into())), 3);
        assert_eq!(code(ClientError::Io("refused".into())), 3);
        assert_eq!(code(ClientError::Timeout), 4);
        assert_eq!(code(ClientError::Interrupted), 130);
        assert_eq!(code(ClientError::OutputClosed), 0);
        assert_eq!(Error::from(ClientError::Io("cannot connect".into())).to_string(), "cannot connect");
    }
}
