//! The QMP client over a unix or TCP socket.
//!
//! A reader thread owns the read half: it frames the byte stream into
//! messages and sends them down a channel. The caller's thread writes
//! commands and receives from the channel with a deadline, so timeouts are
//! a `recv_timeout` and nothing blocks on a half-read message.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::io::{Errno, read, write};
use rustix::net::sockopt::socket_peercred;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType, connect, socket_with};
use rustix::pipe::{PipeFlags, pipe_with};
use serde_json::{Map, Value};

use super::inbox::{Feed, Inbox, Incoming, Wake};
use super::{ClientError, Framer, Kind, Monitor, Observer, Reply, Waker};
use crate::target::Target;

/// How to open a session.
#[derive(Debug, Clone, Copy)]
pub struct Connect {
    /// How long to wait for the connection, the greeting and negotiation.
    pub greeting_timeout: Duration,
    /// Read the greeting and send `qmp_capabilities`; off for qemu-ga,
    /// which sends no greeting.
    pub negotiate: bool,
}

/// A connected QMP monitor.
pub struct SocketMonitor {
    writer: Stream,
    inbox: Inbox,
    /// Give every command an id (the guest agent's channel may hold
    /// replies meant for an earlier client); on QMP only `exec-oob` needs one.
    tag_all: bool,
    greeting: Option<Value>,
    /// A command was written in part (a write timed out): QEMU would read
    /// whatever comes next as its rest, so nothing more is sent.
    torn: bool,
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn open(target: &Target, timeout: Duration) -> Result<Stream, ClientError> {
        let fail = |why: String| ClientError::Io(format!("cannot connect to {target}: {why}"));
        match target {
            Target::Unix(path) => connect_unix(path, timeout).map(Stream::Unix).map_err(|e| {
                fail(match e.kind() {
                    io::ErrorKind::TimedOut => format!(
                        "its queue stayed full for {} s: QEMU serves one client per QMP socket, and other \
                         clients are waiting for it",
                        timeout.as_secs_f64()
                    ),
                    io::ErrorKind::NotFound => "no such socket file (is QEMU running with \
                        -qmp unix:PATH,server=on,wait=off?)"
                        .to_string(),
                    io::ErrorKind::ConnectionRefused => {
                        "connection refused: nothing listens on this socket (QEMU may have exited)".to_string()
                    }
                    _ => e.to_string(),
                })
            }),
            Target::Tcp { host, port } => {
                let addrs = (host.as_str(), *port).to_socket_addrs().map_err(|e| fail(e.to_string()))?;
                let mut last = fail(format!("{host} has no address"));
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(stream) => {
                            // Commands are small and latency matters more than packing.
                            let _ = stream.set_nodelay(true);
                            return Ok(Stream::Tcp(stream));
                        }
                        Err(e) => last = fail(e.to_string()),
                    }
                }
                Err(last)
            }
            Target::Libvirt { .. } => Err(fail("a libvirt domain has no QMP socket of its own".into())),
        }
    }

    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
        }
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.set_read_timeout(timeout),
        }
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(timeout),
            Stream::Tcp(s) => s.set_write_timeout(timeout),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Connects to a unix socket, giving up after `timeout`: when QEMU's one
/// client holds the monitor and its listen queue is full, a plain connect
/// would block for ever.
fn connect_unix(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let address = SocketAddrUnix::new(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the socket path is too long for a unix socket"))?;
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let socket = socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?;
    let deadline = Instant::now() + timeout;
    loop {
        match connect(&socket, &address) {
            Ok(()) => break,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(Errno::AGAIN) => return Err(io::ErrorKind::TimedOut.into()),
            Err(e) => return Err(e.into()),
        }
    }
    // Connected: reads block from here on, with their own timeouts.
    let status = fcntl_getfl(&socket)?;
    fcntl_setfl(&socket, status - OFlags::NONBLOCK)?;
    Ok(UnixStream::from(socket))
}

/// Whether an I/O error means the peer went away.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// The socket's side of the inbox: reads the stream on the caller's
/// thread, only while the caller waits, and frames it into messages. A
/// wake-up is a byte on a pipe, polled beside the socket. No thread stands
/// between QEMU's reply and the caller, and a flood of events waits in the
/// socket (QEMU's back-pressure) instead of in memory.
struct SocketFeed {
    stream: Stream,
    framer: Framer,
    /// The read end of the wake-up pipe (non-blocking).
    wake: OwnedFd,
    /// Why reading ended, once it has.
    ended: bool,
    /// The socket's read timeout as last set.
    timeout: Option<Duration>,
    /// How much to read at a time: small for a one-shot command, doubled
    /// up to [`CHUNK`] while reads fill it.
    chunk: usize,
}

/// The most read at a time.
const CHUNK: usize = 64 * 1024;
/// The first read's size: a greeting or a typical reply fits.
const FIRST_CHUNK: usize = 4 * 1024;

impl Feed for SocketFeed {
    fn next_within(&mut self, wait: Duration, wakeable: bool) -> Option<Incoming> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(message) = self.framer.next_message() {
                return Some(match message {
                    Ok(value) => Incoming::Message(value),
                    Err(garbage) => self.end(ClientError::Protocol(garbage)),
                });
            }
            if self.ended {
                return Some(Incoming::End(ClientError::Closed));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                // Only what has already come: a read only when one would
                // not block.
                match poll_two(self.stream.as_fd(), self.wake.as_fd(), Duration::ZERO) {
                    Ok((true, _)) => match self.read_within(None) {
                        Ok(_) => continue,
                        Err(end) => return Some(self.end(end)),
                    },
                    _ => return None,
                }
            }
            if !wakeable {
                // A plain read with a timeout: one system call per reply.
                match self.read_within(Some(left)) {
                    Ok(true) => continue,
                    Ok(false) => return None,
                    Err(end) => return Some(self.end(end)),
                }
            }
            let (readable, woken) = match poll_two(self.stream.as_fd(), self.wake.as_fd(), left) {
                Ok(ready) => ready,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return None,
                Err(e) => return Some(self.end(ClientError::Io(format!("waiting for QEMU failed: {e}")))),
            };
            if woken {
                drain_pipe(&self.wake);
                return Some(Incoming::Wake);
            }
            if !readable {
                return None;
            }
            if let Err(end) = self.read_within(None) {
                return Some(self.end(end));
            }
        }
    }
}

impl SocketFeed {
    /// Reads what has come into the framer, waiting up to `wait` (`None`:
    /// the socket is known readable, so no wait). Whether anything came.
    fn read_within(&mut self, wait: Option<Duration>) -> Result<bool, ClientError> {
        if let Some(wait) = wait {
            let timeout = Some(wait.max(Duration::from_millis(1)));
            if timeout != self.timeout {
                self.stream.set_read_timeout(timeout).map_err(|e| ClientError::Io(e.to_string()))?;
                self.timeout = timeout;
            }
        }
        let room = self.framer.spare(self.chunk);
        let read = self.stream.read(room);
        self.framer.filled(*read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => Err(ClientError::Closed),
            Ok(n) => {
                if n >= self.chunk {
                    self.chunk = (self.chunk * 2).min(CHUNK);
                }
                Ok(true)
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) if is_disconnect(&e) => Err(ClientError::Closed),
            Err(e) => Err(ClientError::Io(format!("reading from QEMU failed: {e}"))),
        }
    }

    fn end(&mut self, why: ClientError) -> Incoming {
        self.ended = true;
        Incoming::End(why)
    }
}

/// Waits up to `wait` for `data` or `wake` to be readable (a hang-up or
/// error counts as readable: the read then says what happened).
fn poll_two(data: BorrowedFd<'_>, wake: BorrowedFd<'_>, wait: Duration) -> io::Result<(bool, bool)> {
    let mut fds = [PollFd::new(&data, PollFlags::IN), PollFd::new(&wake, PollFlags::IN)];
    let timeout = Timespec::try_from(wait).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
    poll(&mut fds, Some(&timeout))?;
    let [data, wake] = &fds;
    Ok((!data.revents().is_empty(), !wake.revents().is_empty()))
}

/// Empties the wake-up pipe (non-blocking): one wake-up however many bytes.
fn drain_pipe(fd: &OwnedFd) {
    let mut sink = [0u8; 64];
    while read(fd, &mut sink).is_ok_and(|n| n > 0) {}
}

/// A non-blocking pipe for wake-ups: (read end, write end).
fn wake_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?)
}

impl SocketMonitor {
    /// Connects, reads the greeting and negotiates capabilities.
    pub fn connect(target: &Target, options: Connect, observer: &mut dyn Observer) -> Result<Self, ClientError> {
        let deadline = Instant::now() + options.greeting_timeout;
        let mut monitor = SocketMonitor::open(target, options.greeting_timeout, Framer::new())?;
        if options.negotiate {
            monitor.handshake(target, deadline, options.greeting_timeout, observer)?;
        }
        Ok(monitor)
    }

    /// Connects to a guest agent's channel, which may hold half a command
    /// of an earlier client (we send 0xFF, which resets the agent's parser)
    /// or half a reply (read past until the agent's own 0xFF marker, which
    /// precedes its reply to `guest-sync-delimited`).
    pub fn connect_agent(target: &Target, timeout: Duration) -> Result<Self, ClientError> {
        let mut monitor = SocketMonitor::open(target, timeout, Framer::after_marker())?;
        monitor.tag_all = true;
        monitor.writer.write_all(&[0xFF]).map_err(|e| ClientError::Io(format!("writing to the agent failed: {e}")))?;
        Ok(monitor)
    }

    fn open(target: &Target, timeout: Duration, framer: Framer) -> Result<Self, ClientError> {
        let writer = Stream::open(target, timeout)?;
        let cannot = |e: io::Error| ClientError::Io(format!("cannot use the connection to {target}: {e}"));
        let reader = writer.try_clone().map_err(cannot)?;
        let (wake_read, wake_write) = wake_pipe().map_err(cannot)?;
        let wake: Wake = Arc::new(move || {
            // When the pipe is full a wake-up is pending already.
            let _ = write(&wake_write, &[1]);
        });
        let feed =
            SocketFeed { stream: reader, framer, wake: wake_read, ended: false, timeout: None, chunk: FIRST_CHUNK };
        let inbox = Inbox::with_feed(Box::new(feed), wake);
        Ok(SocketMonitor { writer, inbox, tag_all: false, greeting: None, torn: false })
    }

    fn handshake(
        &mut self,
        target: &Target,
        deadline: Instant,
        timeout: Duration,
        observer: &mut dyn Observer,
    ) -> Result<(), ClientError> {
        let greeting = match self.inbox.recv_message(Some(deadline), observer) {
            Ok(message) => message,
            Err(ClientError::Timeout) => {
                return Err(ClientError::Io(format!(
                    "no QMP greeting from {target} within {} s: another client may be holding it (QEMU serves \
                     one client per QMP socket), QEMU may be stopped or slow (--timeout SECS waits longer), or \
                     this is not a QMP socket (-N skips the greeting for qemu-ga)",
                    timeout.as_secs_f64()
                )));
            }
            Err(ClientError::Closed) => {
                return Err(ClientError::Io(format!("QEMU closed the connection to {target} before its greeting")));
            }
            Err(e) => return Err(e),
        };
        if greeting.get("QMP").is_none() {
            return Err(ClientError::Protocol(format!("expected the QMP greeting from {target}, got {greeting}")));
        }
        observer.received(&greeting, Kind::Greeting);
        self.greeting = Some(greeting);
        match self.execute(super::command("qmp_capabilities"), Some(deadline), observer) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ClientError::Protocol(format!("QEMU refused qmp_capabilities: {e}"))),
            Err(ClientError::Timeout) => Err(ClientError::Io(format!(
                "{target} sent its greeting but did not answer qmp_capabilities within {} s",
                timeout.as_secs_f64()
            ))),
            Err(e) => Err(e),
        }
    }

    /// Stops sending and waits until the peer has read all we sent and
    /// closed its end, or `deadline`. Unlike a plain close, this cannot
    /// make a peer that drops hung-up clients lose unread commands.
    pub fn hand_over(&mut self, deadline: Instant) {
        if self.writer.shutdown_write().is_ok() {
            let _ = self.inbox.wait_event(Some(deadline), &mut super::Quiet, &mut |_| false);
        }
    }

    /// Stops waiting for a reply to `ticket`: its command sends none.
    pub fn forget(&mut self, ticket: u64) {
        self.inbox.ledger.forget(ticket);
    }

    /// How long one command may take to be written (`--timeout`): a peer
    /// that stops reading would otherwise block the write for ever. A
    /// timed-out write ends the session's use of the connection.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        let timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
        self.writer.set_write_timeout(timeout).map_err(|e| ClientError::Io(e.to_string()))
    }

    fn send(&mut self, message: &Value) -> Result<(), ClientError> {
        if self.torn {
            return Err(ClientError::Io(
                "the connection cannot be used: a command was left written in part".to_string(),
            ));
        }
        let mut bytes = serde_json::to_vec(message).map_err(|e| ClientError::Io(e.to_string()))?;
        bytes.push(b'\n');
        self.writer.write_all(&bytes).map_err(|e| {
            if is_disconnect(&e) {
                ClientError::Closed
            } else if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
                self.torn = true;
                ClientError::Timeout
            } else {
                ClientError::Io(format!("writing to QEMU failed: {e}"))
            }
        })
    }
}

impl Monitor for SocketMonitor {
    /// Sends `command` (with an id only where the ledger needs one) and
    /// returns its ticket, without waiting for the reply.
    fn post(&mut self, mut command: Map<String, Value>, observer: &mut dyn Observer) -> Result<u64, ClientError> {
        let id = match command.get("id") {
            Some(id) => Some(id.clone()),
            None if self.tag_all || command.contains_key("exec-oob") => {
                let id = self.inbox.ledger.fresh_id();
                command.insert("id".into(), id.clone());
                Some(id)
            }
            None => None,
        };
        // A reply read now answers no command about to be sent.
        self.inbox.read_ready(observer);
        let message = Value::Object(command);
        observer.sent(&message);
        self.send(&message)?;
        Ok(self.inbox.ledger.record(id))
    }

    fn await_reply(
        &mut self,
        ticket: u64,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
    ) -> Result<Reply, ClientError> {
        self.inbox.await_reply(ticket, deadline, observer)
    }

    fn wait_event(
        &mut self,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
        wanted: &mut dyn FnMut(&Value) -> bool,
    ) -> Result<Option<Value>, ClientError> {
        self.inbox.wait_event(deadline, observer, wanted)
    }

    fn wait_wake(&mut self, observer: &mut dyn Observer) -> Result<(), ClientError> {
        self.inbox.wait_wake(observer)
    }

    fn greeting(&self) -> Option<&Value> {
        self.greeting.as_ref()
    }

    fn peer_pid(&self) -> Option<i32> {
        let Stream::Unix(stream) = &self.writer else { return None };
        let pid = socket_peercred(stream).ok()?.pid.as_raw_nonzero().get();
        (pid > 0).then_some(pid)
    }

    fn waker(&self) -> Waker {
        self.inbox.waker()
    }
}
