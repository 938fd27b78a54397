//! The socket transport: QMP (and qemu-ga's channel) over a unix or TCP
//! socket. There is no thread: the caller's thread writes each command
//! whole and reads the stream only while it waits, framing the bytes into
//! messages; a wake-up from another thread is a byte on a pipe, polled
//! beside the socket.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{FlockOperation, Mode, OFlags, fcntl_getfl, fcntl_setfl, flock};
use rustix::io::{Errno, read, write};
use rustix::net::sockopt::socket_peercred;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType, socket_with};
use rustix::pipe::{PipeFlags, pipe_with};
use serde_json::Value;

use super::{ClientError, Framer, Incoming, Monitor, Observer, Transport, Waker};
use crate::target::Target;

/// How to open a session.
#[derive(Debug, Clone, Copy)]
pub struct Connect {
    /// How long to wait for the connection, the greeting and negotiation.
    pub greeting_timeout: Duration,
    /// Read the greeting and send `qmp_capabilities`; off for qemu-ga,
    /// which sends no greeting.
    pub negotiate: bool,
    /// How long one command may take to be written (`--timeout`; `None`:
    /// as long as it takes): a peer that stops reading would otherwise
    /// block the write for ever. A timed-out write ends the session's use
    /// of the connection.
    pub write_timeout: Option<Duration>,
}

/// Connects to the QMP monitor at `target`, reads the greeting and
/// negotiates capabilities.
pub fn connect(target: &Target, options: Connect, observer: &mut dyn Observer) -> Result<Monitor, ClientError> {
    let deadline = Instant::now() + options.greeting_timeout;
    let socket = Socket::open(target, options.greeting_timeout, Framer::new())?;
    if let Some(timeout) = options.write_timeout {
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        socket.stream.set_write_timeout(timeout).map_err(|e| ClientError::Io(e.to_string()))?;
    }
    let mut monitor = Monitor::new(Box::new(socket));
    if options.negotiate {
        monitor.negotiate(target, deadline, options.greeting_timeout, observer)?;
    }
    Ok(monitor)
}

/// A connected socket.
pub struct Socket {
    stream: Stream,
    framer: Framer,
    /// The wake-up pipe's ends (both non-blocking): read, and write
    /// (shared with the wakers).
    wake: OwnedFd,
    waker: Arc<OwnedFd>,
    /// Why reading ended, once it has.
    ended: bool,
    /// The socket's read timeout as last set.
    timeout: Option<Duration>,
    /// How much to read at a time: small for a one-shot command, doubled
    /// up to [`CHUNK`] while reads fill it.
    chunk: usize,
    /// A command was written in part (a write timed out): QEMU would read
    /// whatever comes next as its rest, so nothing more is sent.
    torn: bool,
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    /// QEMU's `pipe` chardev: a FIFO it reads (`NAME.in`) and one it
    /// writes (`NAME.out`), both held open by QEMU for its life, so the
    /// device behind them never sees its host side leave.
    Pipe {
        read: File,
        write: File,
        /// How long a read waits (FIFOs have no socket timeouts).
        timeout: Option<Duration>,
    },
}

impl Stream {
    fn open(target: &Target, timeout: Duration) -> Result<Stream, ClientError> {
        let fail = |why: String| ClientError::Io(format!("cannot connect to {target}: {why}"));
        match target {
            Target::Unix(path) if is_fifo(path) => open_pipes(path, timeout).map_err(|e| {
                fail(match e.kind() {
                    io::ErrorKind::TimedOut => format!(
                        "another client held it for {} s: the channel serves one client at a time",
                        timeout.as_secs_f64()
                    ),
                    _ if e.raw_os_error() == Some(Errno::NXIO.raw_os_error()) => {
                        "nothing reads it: the QEMU that had it open is not running".to_string()
                    }
                    _ => e.to_string(),
                })
            }),
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

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            // Closing the write side would not be seen: QEMU holds it too.
            Stream::Pipe { .. } => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    fn set_read_timeout(&mut self, wait: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(wait),
            Stream::Tcp(s) => s.set_read_timeout(wait),
            Stream::Pipe { timeout, .. } => {
                *timeout = wait;
                Ok(())
            }
        }
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(timeout),
            Stream::Tcp(s) => s.set_write_timeout(timeout),
            Stream::Pipe { .. } => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a pipe channel has no write timeout (it is for the guest agent, not QMP)",
            )),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
            Stream::Pipe { read, .. } => read.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
            Stream::Pipe { read, timeout, .. } => {
                // The FIFO does not block: wait for it to be readable first.
                let mut fds = [PollFd::new(&*read, PollFlags::IN)];
                let wait = timeout.and_then(|t| Timespec::try_from(t).ok());
                if poll(&mut fds, wait.as_ref())? == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                read.read(buf)
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
            Stream::Pipe { write, .. } => write.write(buf),
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
        match rustix::net::connect(&socket, &address) {
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

/// Whether `path` is a FIFO (not following a symlink).
fn is_fifo(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// The FIFO QEMU writes, beside the one it reads: `NAME.out` for `NAME.in`.
fn out_fifo(path: &Path) -> PathBuf {
    path.with_extension("out")
}

/// Opens QEMU's pipe chardev at `path` (`NAME.in`, beside `NAME.out`) for
/// one client: an exclusive lock on it, waited for up to `timeout`, is
/// what a socket's one connection is. Neither FIFO is followed through a
/// symlink, and an end that nobody reads (QEMU gone) fails at once
/// instead of blocking.
fn open_pipes(path: &Path, timeout: Duration) -> io::Result<Stream> {
    let out = out_fifo(path);
    if !is_fifo(&out) {
        return Err(io::Error::other(format!("{} is not the FIFO beside it", out.display())));
    }
    let flags = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let write = rustix::fs::open(path, OFlags::WRONLY | flags, Mode::empty())?;
    let deadline = Instant::now() + timeout;
    loop {
        match flock(&write, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(Errno::WOULDBLOCK) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(Errno::WOULDBLOCK) => return Err(io::ErrorKind::TimedOut.into()),
            Err(e) => return Err(e.into()),
        }
    }
    let read = rustix::fs::open(&out, OFlags::RDONLY | flags, Mode::empty())?;
    // Writes block, as a socket's do; reads wait in `poll` (see `Read`).
    let status = fcntl_getfl(&write)?;
    fcntl_setfl(&write, status - OFlags::NONBLOCK)?;
    Ok(Stream::Pipe { read: File::from(read), write: File::from(write), timeout: None })
}

/// Whether another client holds the pipe channel at `path` (see
/// [`open_pipes`]); `None` when `path` is not one, or cannot be asked.
pub fn pipe_held(path: &Path) -> Option<bool> {
    if !is_fifo(path) {
        return None;
    }
    let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let probe = rustix::fs::open(path, flags, Mode::empty()).ok()?;
    match flock(&probe, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Some(false),
        Err(Errno::WOULDBLOCK) => Some(true),
        Err(_) => None,
    }
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

/// The most read at a time.
const CHUNK: usize = 64 * 1024;
/// The first read's size: a greeting or a typical reply fits.
const FIRST_CHUNK: usize = 4 * 1024;

/// The socket reads on the caller's thread, only while the caller waits.
/// No thread stands between QEMU's reply and the caller, and a flood of
/// events waits in the socket (QEMU's back-pressure) instead of in memory.
impl Transport for Socket {
    fn send(&mut self, message: &Value) -> Result<(), ClientError> {
        if self.torn {
            return Err(ClientError::Io(
                "the connection cannot be used: a command was left written in part".to_string(),
            ));
        }
        let mut bytes = serde_json::to_vec(message).map_err(|e| ClientError::Io(e.to_string()))?;
        bytes.push(b'\n');
        self.stream.write_all(&bytes).map_err(|e| {
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

    fn receive(&mut self, wait: Duration, wakeable: bool) -> Option<Incoming> {
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

    fn waker(&self) -> Waker {
        let pipe = Arc::clone(&self.waker);
        // When the pipe is full a wake-up is pending already.
        Box::new(move || {
            let _ = write(&*pipe, &[1]);
        })
    }

    fn peer_pid(&self) -> Option<i32> {
        let Stream::Unix(stream) = &self.stream else { return None };
        let pid = socket_peercred(stream).ok()?.pid.as_raw_nonzero().get();
        (pid > 0).then_some(pid)
    }

    fn close_sending(&mut self) -> bool {
        self.stream.shutdown_write().is_ok()
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

impl Socket {
    /// Connects to `target` within `timeout`; `framer` reads what comes.
    fn open(target: &Target, timeout: Duration, framer: Framer) -> Result<Socket, ClientError> {
        let stream = Stream::open(target, timeout)?;
        let cannot = |e: io::Error| ClientError::Io(format!("cannot use the connection to {target}: {e}"));
        let (wake, waker) = wake_pipe().map_err(cannot)?;
        Ok(Socket {
            stream,
            framer,
            wake,
            waker: Arc::new(waker),
            ended: false,
            timeout: None,
            chunk: FIRST_CHUNK,
            torn: false,
        })
    }

    /// Connects to a guest agent's channel, which may hold half a command
    /// of an earlier client (we send 0xFF, which resets the agent's parser)
    /// or half a reply (read past until the agent's own 0xFF marker, which
    /// precedes its reply to `guest-sync-delimited`).
    pub(super) fn agent(target: &Target, timeout: Duration) -> Result<Socket, ClientError> {
        let mut socket = Socket::open(target, timeout, Framer::after_marker())?;
        socket.stream.write_all(&[0xFF]).map_err(|e| ClientError::Io(format!("writing to the agent failed: {e}")))?;
        Ok(socket)
    }

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
