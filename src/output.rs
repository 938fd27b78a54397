//! Where everything qmpsh shows goes: replies and events on stdout, errors
//! and `-v` echoes on stderr, `--json` lines, and the `-l` traffic log.
//! [`Printer`] is the [`Observer`] the QMP client reports to, so events are
//! printed the moment they are read.

use std::fs::{File, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::process::getuid;
use rustyline::ExternalPrinter;
use serde::Serialize;
use serde_json::Value;

use crate::clock;
use crate::error::Error;
use crate::qmp::{Kind, Observer, QmpError};
use crate::render::{self, Palette};
use crate::secrets::LogMask;

/// How output looks; fixed at start, `pretty` and `events` changeable by
/// `.pretty` and `.events`.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub stdout: Palette,
    pub stderr: Palette,
    pub pretty: bool,
    /// `--json`: every received message as one compact JSON line.
    pub json: bool,
    /// `-v`: echo each message sent, on stderr.
    pub verbose: bool,
    pub events: bool,
}

/// Appends all traffic as JSON Lines: `{"time", "direction", "message"}`,
/// with secrets masked (see [`crate::secrets`]).
struct TrafficLog {
    file: BufWriter<File>,
    mask: LogMask,
}

/// The permissions of the log: it holds the whole conversation with QEMU.
const LOG_MODE: u32 = 0o600;

impl TrafficLog {
    /// Opens `path` for appending, private to the user: a new file is
    /// created 0600 (the mode is given to open(2), so the file is never
    /// readable by others, whatever the umask). A symlink is refused
    /// (O_NOFOLLOW): in a shared folder such as /tmp, where
    /// fs.protected_symlinks may be off, a link planted by someone else
    /// would have qmpsh, often run as root, append to and chmod the file it
    /// points to. Folders on the way may still be symlinks.
    fn open(path: &Path) -> Result<TrafficLog, Error> {
        let cannot = |why: String| Error::Io(format!("cannot open log file {}: {why}", path.display()));
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file = match rustix::fs::open(path, flags, Mode::from_raw_mode(LOG_MODE)) {
            Ok(fd) => File::from(fd),
            Err(Errno::LOOP) => return Err(cannot("it is a symlink; name the file itself".into())),
            Err(e) => return Err(cannot(io::Error::from(e).to_string())),
        };
        make_private(&file).map_err(cannot)?;
        Ok(TrafficLog { file: BufWriter::new(file), mask: LogMask::default() })
    }

    /// Writes one record that borrows `message` (a large reply is not
    /// copied to be logged); a message that holds a secret is logged as a
    /// masked copy.
    fn write(&mut self, direction: &str, message: &Value) -> io::Result<()> {
        let message = match direction {
            "sent" => self.mask.sent(message),
            _ => self.mask.received(message),
        };
        let (s, us) = clock::now();
        let record = Record { time: clock::utc_rfc3339(s, us), direction, message: message.as_ref() };
        serde_json::to_writer(&mut self.file, &record)?;
        self.file.write_all(b"\n")?;
        self.file.flush()
    }
}

/// One line of the traffic log.
#[derive(Serialize)]
struct Record<'a> {
    time: String,
    direction: &'a str,
    message: &'a Value,
}

/// Makes sure an existing log file is the user's alone. A regular file
/// that belongs to someone else is refused: its owner could read what is
/// appended (root would otherwise log into a file another user planted).
/// One of ours that others can reach is tightened to 0600 through the open
/// handle (fchmod: the file tightened is the file written, even if its path
/// changes meanwhile). Pipes and devices (`-l /dev/null`, a FIFO) are left
/// as they are.
fn make_private(file: &File) -> Result<(), String> {
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Ok(());
    }
    let me = getuid().as_raw();
    if meta.uid() != me {
        return Err(format!("it belongs to uid {}, not to you (uid {me})", meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(LOG_MODE)).map_err(|e| format!("cannot make it private: {e}"))?;
    }
    Ok(())
}

/// Where stdout output ends up.
enum Sink {
    Stdout(io::Stdout),
    /// The REPL's line editor, which prints above the line being typed.
    Terminal(Box<dyn ExternalPrinter + Send>),
}

/// The output side of a session.
pub struct Printer {
    pub style: Style,
    /// What is written but not yet flushed to `sink`.
    out: Vec<u8>,
    sink: Sink,
    log: Option<TrafficLog>,
    /// The first output failure, reported at the next check.
    failure: Option<io::Error>,
}

/// How much of a stray message a note shows.
const STRAY_SHOWN: usize = 200;

/// How much output collects before it is written.
const FLUSH_AT: usize = 64 * 1024;

impl Style {
    /// Plain text with events, for the VM helpers' own output.
    pub fn plain() -> Style {
        Style {
            stdout: Palette::plain(),
            stderr: Palette::plain(),
            pretty: false,
            json: false,
            verbose: false,
            events: true,
        }
    }
}

impl Printer {
    pub fn new(style: Style, log: Option<&Path>) -> Result<Printer, Error> {
        let log = log.map(TrafficLog::open).transpose()?;
        Ok(Printer { style, out: Vec::with_capacity(64 * 1024), sink: Sink::Stdout(io::stdout()), log, failure: None })
    }

    fn record(&mut self, result: io::Result<()>) {
        if let Err(e) = result {
            self.failure.get_or_insert(e);
        }
    }

    /// Reports the first write failure since the last check.
    pub fn check(&mut self) -> Result<(), Error> {
        match self.failure.take() {
            Some(e) => Err(Error::output(e)),
            None => Ok(()),
        }
    }

    /// Flushes stdout: before waiting for input, and before writing to
    /// stderr so the two streams stay in order.
    pub fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let result = match &mut self.sink {
            Sink::Stdout(stdout) => stdout.write_all(&self.out).and_then(|()| stdout.flush()),
            Sink::Terminal(printer) => printer
                .print(String::from_utf8_lossy(&self.out).into_owned())
                .map_err(|e| io::Error::other(e.to_string())),
        };
        self.out.clear();
        self.record(result);
    }

    /// From now on, stdout goes through the line editor's printer, so an
    /// event that arrives while a line is being typed prints above it.
    pub fn print_through(&mut self, printer: Box<dyn ExternalPrinter + Send>) {
        self.flush();
        self.sink = Sink::Terminal(printer);
    }

    /// A successful reply.
    pub fn reply(&mut self, value: &Value, text: bool) {
        // With --json the reply was printed as it was received.
        if !self.style.json {
            let result = render::reply(&mut self.out, value, text, self.style.pretty, &self.style.stdout);
            self.record(result);
        }
        // On a pipe, replies collect until qmpsh waits for input, writes to
        // stderr, or has a buffer full: a 10,000-line script is not 10,000
        // writes. At the prompt each shows at once.
        if matches!(self.sink, Sink::Terminal(_)) || self.out.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// A QMP error reply, on stderr, naming its script line when known.
    pub fn qmp_error(&mut self, error: &QmpError, line: Option<usize>) {
        self.flush();
        let _ = render::error(&mut io::stderr().lock(), error, line, &self.style.stderr);
    }

    /// A local problem with a line (parse error, timeout, ...), on stderr.
    /// At the prompt it goes through the line editor like events: the
    /// editor may be drawing, and a line written past it could be cleared
    /// by its next redraw (QEMU's `SHUTDOWN` and the shell's farewell come
    /// together).
    pub fn problem(&mut self, message: &str) {
        self.flush();
        match &mut self.sink {
            Sink::Terminal(printer) => {
                let mut text = Vec::new();
                let _ = render::error_text(&mut text, message, &self.style.stderr);
                let _ = printer.print(String::from_utf8_lossy(&text).into_owned());
            }
            Sink::Stdout(_) => {
                let _ = render::error_text(&mut io::stderr().lock(), message, &self.style.stderr);
            }
        }
    }

    /// Waits until the line editor has taken everything printed through
    /// it, which it draws before it reads input again: its queue holds one
    /// message, so an empty one is taken only after the last real one.
    pub fn settle_editor(&mut self) {
        self.flush();
        if let Sink::Terminal(printer) = &mut self.sink {
            let _ = printer.print(String::new());
        }
    }

    /// An observer for traffic that is qmpsh's own (the handshake, the
    /// schema, completion's questions): logged with `-l`, but neither
    /// echoed by `-v` nor printed by `--json`; events still show.
    pub fn own_traffic(&mut self) -> OwnTraffic<'_> {
        OwnTraffic(self)
    }

    fn log(&mut self, direction: &str, message: &Value) {
        if let Some(log) = &mut self.log {
            let _ = log.write(direction, message);
        }
    }

    /// A note on stderr for a message that answers no command sent here:
    /// the connection may be shared, or the peer is not QEMU. What it was
    /// shows in short (the whole is in the `-l` log).
    fn stray(&mut self, message: &Value) {
        let mut shown = message.to_string();
        if shown.len() > STRAY_SHOWN {
            let cut = (0..=STRAY_SHOWN).rev().find(|&at| shown.is_char_boundary(at)).unwrap_or(0);
            shown.truncate(cut);
            shown.push_str("...");
        }
        let what = match message.get("id") {
            Some(id) if message.get("return").is_some() || message.get("error").is_some() => {
                format!("a reply with id {id}, which no command sent here carries")
            }
            _ if message.get("return").is_some() || message.get("error").is_some() => {
                "a reply while no command sent here awaited one (a second reply to the last command?)".to_string()
            }
            _ => "a message that is neither a reply nor an event".to_string(),
        };
        self.problem(&format!("qmpsh: passed over {what}: {shown}"));
    }

    /// Free text for stdout, such as `.help`.
    pub fn text(&mut self, text: &str) {
        let result = self.out.write_all(text.as_bytes());
        self.record(result);
        self.flush();
    }
}

impl Observer for Printer {
    fn waiting(&mut self) {
        self.flush();
    }

    fn sent(&mut self, message: &Value) {
        self.log("sent", message);
        if self.style.verbose {
            self.flush();
            let mut err = io::stderr().lock();
            let _ = err.write_all(b"-> ");
            let _ = render::json(&mut err, message, false, &self.style.stderr);
            let _ = err.write_all(b"\n");
        }
    }

    fn closed(&self) -> bool {
        self.failure.as_ref().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    }

    fn received(&mut self, message: &Value, kind: Kind) {
        self.log(if kind == Kind::Event { "event" } else { "received" }, message);
        if kind == Kind::Stray {
            self.stray(message);
        }
        if self.style.json {
            let mut result = serde_json::to_writer(&mut self.out, message).map_err(io::Error::from);
            if result.is_ok() {
                result = self.out.write_all(b"\n");
            }
            self.record(result);
            if kind == Kind::Event {
                self.flush();
            }
        } else if kind == Kind::Event && self.style.events {
            let result = render::event(&mut self.out, message, &self.style.stdout);
            self.record(result);
            self.flush();
        }
    }
}

/// See [`Printer::own_traffic`].
pub struct OwnTraffic<'a>(&'a mut Printer);

impl Observer for OwnTraffic<'_> {
    fn waiting(&mut self) {
        self.0.flush();
    }

    fn sent(&mut self, message: &Value) {
        self.0.log("sent", message);
    }

    fn closed(&self) -> bool {
        self.0.closed()
    }

    fn received(&mut self, message: &Value, kind: Kind) {
        match kind {
            Kind::Event => self.0.received(message, kind),
            Kind::Stray => {
                self.0.log("received", message);
                self.0.stray(message);
            }
            _ => self.0.log("received", message),
        }
    }
}
