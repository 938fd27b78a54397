//! What the caller waits for, in the order it came: messages (replies and
//! events), why the connection ended, and wake-ups from the input thread.
//! A transport supplies them through a [`Feed`]: the socket reads its own
//! stream on the caller's thread; libvirt's threads fill a channel. Waiting
//! for a reply, an event or a wake-up, with a deadline and Ctrl-C, is
//! written once, here.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ledger::{Ledger, Settled};
use super::{ClientError, Kind, Observer, QmpError, Reply, Waker};
use crate::interrupt;

/// What arrives on the channel: a message, why the transport stopped, or a
/// wake-up from another thread of ours.
pub enum Incoming {
    Message(Value),
    End(ClientError),
    Wake,
}

/// What a wait for the next message got.
enum Got {
    Message(Value),
    Woken,
}

/// How often a wait without deadline looks at the Ctrl-C flag.
const INTERRUPT_POLL: Duration = Duration::from_millis(100);

/// How long a wait runs before buffered output is shown
/// ([`Observer::waiting`]): a quick reply costs no extra write.
const FIRST_SLICE: Duration = Duration::from_millis(10);

/// How many messages may wait unread in a channel. A flood of events beyond
/// this makes the transport's thread wait instead of memory growing with
/// the backlog; nothing is dropped. (The socket reads only as the caller
/// waits, so its back-pressure is the socket's own.)
#[cfg_attr(not(feature = "libvirt"), allow(dead_code))]
const BACKLOG: usize = 256;

/// Where an inbox's items come from.
pub trait Feed {
    /// The next item within `wait`; `None` when none came. Unless
    /// `wakeable`, the caller passes over wake-ups, so the feed need not
    /// watch for them (the socket then reads without polling first).
    fn next_within(&mut self, wait: Duration, wakeable: bool) -> Option<Incoming>;
}

/// A channel that a transport's own threads fill.
impl Feed for Receiver<Incoming> {
    fn next_within(&mut self, wait: Duration, _wakeable: bool) -> Option<Incoming> {
        match self.recv_timeout(wait) {
            Ok(item) => Some(item),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Incoming::End(ClientError::Closed)),
        }
    }
}

/// Makes the waiting side's next wait end with [`Incoming::Wake`].
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// The receiving end, with how the transport ended once it has, and which
/// reply answers which command sent through it.
pub struct Inbox {
    feed: Box<dyn Feed>,
    ended: Option<ClientError>,
    wake: Wake,
    /// The transport records each command it sends here.
    pub(super) ledger: Ledger,
}

impl Inbox {
    /// An inbox fed by a channel, and the sender a transport's threads
    /// fill it with (libvirt's).
    #[cfg_attr(not(feature = "libvirt"), allow(dead_code))]
    pub fn channel() -> (Inbox, SyncSender<Incoming>) {
        let (tx, incoming) = mpsc::sync_channel(BACKLOG);
        let waker = tx.clone();
        let wake: Wake = Arc::new(move || {
            let _ = waker.send(Incoming::Wake);
        });
        (Inbox::with_feed(Box::new(incoming), wake), tx)
    }

    /// An inbox over `feed`; `wake` makes its current or next wait end.
    pub fn with_feed(feed: Box<dyn Feed>, wake: Wake) -> Inbox {
        Inbox { feed, ended: None, wake, ledger: Ledger::default() }
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
            let period = if first { FIRST_SLICE } else { INTERRUPT_POLL };
            let slice = match deadline {
                None => period,
                Some(deadline) => deadline.saturating_duration_since(Instant::now()).min(period),
            };
            if !first {
                observer.waiting();
            }
            first = false;
            match self.feed.next_within(slice, wakeable) {
                Some(Incoming::Message(message)) => return Ok(Got::Message(message)),
                Some(Incoming::Wake) => return Ok(Got::Woken),
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
    /// every other message to `observer` as it comes.
    pub fn await_reply(
        &mut self,
        ticket: u64,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
    ) -> Result<Reply, ClientError> {
        if !self.ledger.owes(ticket) {
            return Err(ClientError::Protocol(format!("no command awaits reply {ticket}")));
        }
        loop {
            let message = self.recv_message(deadline, observer)?;
            if message.get("event").is_some() {
                observer.received(&message, Kind::Event);
                continue;
            }
            if message.get("return").is_none() && message.get("error").is_none() {
                observer.received(&message, Kind::Stray);
                continue;
            }
            match self.ledger.settle(&message) {
                Settled::Answer(answered) if answered == ticket => {
                    observer.received(&message, Kind::Reply);
                    return Ok(reply_of(message));
                }
                Settled::Unread(answered) if answered == ticket => {
                    observer.received(&message, Kind::Reply);
                    return Err(ClientError::Protocol(format!(
                        "QEMU answered with an error that lacks the command's id, so it could not read \
                         the command: {}",
                        QmpError::from_reply(message.get("error").unwrap_or(&Value::Null))
                    )));
                }
                // A reply to a command given up on (timed out, interrupted),
                // or to none sent here.
                _ => observer.received(&message, Kind::Stray),
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
                observer.received(&message, Kind::Stray);
                continue;
            }
            observer.received(&message, Kind::Event);
            if wanted(&message) {
                return Ok(Some(message));
            }
        }
    }

    /// See [`super::Monitor::wait_wake`].
    pub fn wait_wake(&mut self, observer: &mut dyn Observer) -> Result<(), ClientError> {
        loop {
            match self.recv(None, true, observer)? {
                Got::Woken => return Ok(()),
                Got::Message(message) => {
                    let kind = if message.get("event").is_some() { Kind::Event } else { Kind::Stray };
                    observer.received(&message, kind);
                }
            }
        }
    }

    /// See [`super::Monitor::waker`].
    pub fn waker(&self) -> Waker {
        let wake = Arc::clone(&self.wake);
        Box::new(move || wake())
    }
}

/// The reply, moved out of the message: a large return is not copied.
fn reply_of(mut message: Value) -> Reply {
    if let Some(error) = message.get("error") {
        return Err(QmpError::from_reply(error));
    }
    Ok(message.get_mut("return").map(Value::take).unwrap_or(Value::Null))
}
