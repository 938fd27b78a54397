//! Where everything qmpsh shows goes: replies and events on stdout, errors
//! and `-v` echoes on stderr, `--json` lines, and the `-l` traffic log.
//! [`Printer`] is the [`Observer`] the QMP client reports to, so events are
//! printed the moment they are read, and the [`Progress`] a VM stop tells
//! its steps to. What is not a session's (completions, the man page,
//! `--dry-run`, the VM helpers' lines, the final error) is written to
//! [`stdout`] and [`stderr`]. This module is the one place that holds the
//! standard streams, and every write to them returns `io::Result`: a
//! closed pipe is an error a caller ends on quietly, never a panic (the
//! `print!` macros are denied, see Cargo.toml).

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rustyline::ExternalPrinter;
use serde::Serialize;
use serde_json::Value;

use crate::error::Error;
use crate::private::{self, Access};
use crate::qemu::stop::{Progress, Step};
use crate::qmp::{Kind, Observer, QmpError};
use crate::ui::clock;
use crate::ui::prefixed::Prefixed;
use crate::ui::render::{self, Palette};
use crate::ui::secrets::{self, LogMask};
use crate::ui::tables;
use crate::visible::{Breaks, visible};

/// Standard output, for what is not a session's.
#[allow(clippy::disallowed_methods)] // The one place that holds it.
pub fn stdout() -> io::Stdout {
    io::stdout()
}

/// Standard error, for what is not a session's (`lock` it to keep a line
/// whole).
#[allow(clippy::disallowed_methods)] // The one place that holds it.
pub fn stderr() -> io::Stderr {
    io::stderr()
}

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
    /// `--show-secrets`: `-v` and `-l` show messages as they are, secrets
    /// and all, instead of masked (see [`crate::ui::secrets`]).
    pub show_secrets: bool,
    /// The `info` commands' replies as tables ([`crate::ui::tables`]): on
    /// a terminal, without `-p` or `--json`.
    pub tables: bool,
}

/// Appends all traffic as JSON Lines: `{"time", "direction", "message"}`,
/// with secrets masked (see [`crate::ui::secrets`]) unless `--show-secrets`.
struct TrafficLog {
    path: PathBuf,
    file: BufWriter<File>,
    /// None with `--show-secrets`.
    mask: Option<LogMask>,
}

impl TrafficLog {
    /// Opens `path` for appending, private to the user by the rules of
    /// [`crate::private`]: a symlink, anything but a regular file, or a
    /// file of another user is refused before anything is written.
    fn open(path: &Path, mask: bool) -> Result<TrafficLog, Error> {
        let file = private::open_file(rustix::fs::CWD, path, Access::Append)
            .map_err(|why| Error::Io(format!("cannot open log file {}: {why}", path.display())))?;
        let mask = mask.then(LogMask::default);
        Ok(TrafficLog { path: path.to_path_buf(), file: BufWriter::new(file), mask })
    }

    /// The log's copy of `message`: masked where it holds a secret (a
    /// copy), else `message` itself (a large reply is not copied to be
    /// logged). Every message goes through here once, so that the mask
    /// can tell which reply answers which command.
    fn copy<'a>(&mut self, direction: &str, message: &'a Value) -> Cow<'a, Value> {
        match (&mut self.mask, direction) {
            (None, _) => Cow::Borrowed(message),
            (Some(mask), "sent") => mask.sent(message),
            (Some(mask), _) => mask.received(message),
        }
    }

    /// Writes one record of `message` as it is given.
    fn write(&mut self, direction: &str, message: &Value) -> io::Result<()> {
        let (s, us) = clock::now();
        let record = Record { time: clock::utc_rfc3339(s, us), direction, message };
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

/// Where stdout output ends up.
enum Sink {
    Stdout(io::Stdout),
    /// The REPL's line editor, which prints above the line being typed.
    Terminal(Box<dyn ExternalPrinter + Send>),
    /// One target's share of the standard streams, among several: stderr
    /// goes there too.
    Prefixed(Prefixed),
}

/// A reply or error kept for `--table` instead of shown, with the line
/// of the command it answers.
#[derive(Debug, Clone)]
pub struct Answer {
    pub line: Option<usize>,
    /// The reply, and whether it is HMP's text; or the error's words.
    pub reply: Result<(Value, bool), String>,
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
    /// The traffic log could not be written: said when it happened, and
    /// from then on nothing more is sent (see [`Printer::check_log`]).
    log_failed: bool,
    /// `--table`: replies and errors kept, not shown.
    answers: Option<Vec<Answer>>,
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
            show_secrets: false,
            tables: false,
        }
    }
}

impl Printer {
    pub fn new(style: Style, log: Option<&Path>) -> Result<Printer, Error> {
        let log = log.map(|path| TrafficLog::open(path, !style.show_secrets)).transpose()?;
        Ok(Printer { log, ..Printer::to(style, Sink::Stdout(stdout())) })
    }

    /// A printer for one target among several: its lines go to `prefixed`,
    /// and with `keep_answers` (`--table`) its replies and errors are kept
    /// for [`Printer::take_answers`] instead of shown.
    pub fn prefixed(style: Style, prefixed: Prefixed, keep_answers: bool) -> Printer {
        Printer { answers: keep_answers.then(Vec::new), ..Printer::to(style, Sink::Prefixed(prefixed)) }
    }

    /// A printer to `sink`, without a log.
    fn to(style: Style, sink: Sink) -> Printer {
        Printer {
            style,
            out: Vec::with_capacity(64 * 1024),
            sink,
            log: None,
            failure: None,
            log_failed: false,
            answers: None,
        }
    }

    /// What `--table` kept.
    pub fn take_answers(&mut self) -> Vec<Answer> {
        self.answers.take().unwrap_or_default()
    }

    /// Keeps `answer` when `--table` asks for it: whether it was kept.
    pub fn keep(&mut self, line: Option<usize>, reply: Result<(&Value, bool), &str>) -> bool {
        let Some(answers) = &mut self.answers else { return false };
        let reply = reply.map(|(value, text)| (value.clone(), text)).map_err(str::to_string);
        answers.push(Answer { line, reply });
        true
    }

    /// Writes what is left of a target's last line (see [`Prefixed`]).
    pub fn finish(&mut self) {
        self.flush();
        if let Sink::Prefixed(prefixed) = &mut self.sink {
            let result = prefixed.finish();
            self.record(result);
        }
    }

    /// Writes `bytes` to stderr: the target's share of it, among several.
    fn write_stderr(&mut self, bytes: &[u8]) {
        match &mut self.sink {
            Sink::Prefixed(prefixed) => prefixed.err(bytes),
            _ => {
                let _ = stderr().lock().write_all(bytes);
            }
        }
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
            Sink::Prefixed(prefixed) => prefixed.out(&self.out),
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

    /// `command`'s reply as a table, when tables are wanted and it has
    /// one; whether it was shown so (else the caller shows it as JSON).
    pub fn table(&mut self, command: &str, value: &Value) -> bool {
        if !self.style.tables {
            return false;
        }
        let Some(table) = tables::table(command, value, &self.style.stdout) else { return false };
        // The table's peer text was made visible as it was built; what is
        // left raw is its own colour codes.
        let result = self.out.write_all(table.as_bytes());
        self.record(result);
        self.flush();
        true
    }

    /// A QMP error reply, on stderr, naming its script line when known.
    pub fn qmp_error(&mut self, error: &QmpError, line: Option<usize>) {
        if self.keep(line, Err(&format!("{}: {}", error.class, error.desc))) {
            return;
        }
        self.flush();
        let mut text = Vec::new();
        let _ = render::error(&mut text, error, line, &self.style.stderr);
        self.write_stderr(&text);
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
            Sink::Stdout(_) | Sink::Prefixed(_) => {
                let mut text = Vec::new();
                let _ = render::error_text(&mut text, message, &self.style.stderr);
                self.write_stderr(&text);
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

    /// Logs one message. A log that cannot be written is said at once, in
    /// one line, and written no more: a record may be half written, and
    /// the run ends at the next line (see [`Printer::check_log`]).
    fn log(&mut self, direction: &str, message: &Value) {
        let Some(log) = &mut self.log else { return };
        let copy = log.copy(direction, message);
        self.write_log(direction, &copy);
    }

    /// Writes the log's `copy` of a message (see [`TrafficLog::copy`]).
    fn write_log(&mut self, direction: &str, copy: &Value) {
        let Some(log) = &mut self.log else { return };
        if let Err(e) = log.write(direction, copy) {
            let said = format!("qmpsh: cannot write log file {}: {e}; nothing more is sent", log.path.display());
            self.log = None;
            self.log_failed = true;
            self.problem(&said);
        }
    }

    /// Whether stdout goes through the REPL's line editor: the shell is
    /// at a prompt, between lines.
    pub fn at_prompt(&self) -> bool {
        matches!(self.sink, Sink::Terminal(_))
    }

    /// Whether the output went away (a closed pipe).
    pub fn output_closed(&self) -> bool {
        self.failure.as_ref().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
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

    /// Whether the traffic log can still be written: `-l` asks for every
    /// message to be logged, so once it cannot be, nothing more is sent.
    /// Checked before each line, so the line in progress when the log
    /// failed has run to its end (its reply shown), and at the end of a
    /// run, which then fails (exit 1) if it would have succeeded.
    pub fn check_log(&self) -> Result<(), Error> {
        if self.log_failed { Err(Error::LogFailed) } else { Ok(()) }
    }

    /// A guest program's output (`.exec`): its bytes as they are when
    /// stdout is not the line editor's, as `vm exec` writes them; through
    /// the editor, made visible, as any peer's text on a terminal.
    pub fn program_output(&mut self, out: &[u8], err: &[u8]) {
        self.bytes(out);
        self.flush();
        match self.sink {
            Sink::Stdout(_) | Sink::Prefixed(_) => self.write_stderr(err),
            Sink::Terminal(_) if !err.is_empty() => {
                self.problem(String::from_utf8_lossy(err).trim_end_matches('\n'));
            }
            Sink::Terminal(_) => {}
        }
    }

    /// A file's bytes for stdout (`.cat`), as they are; at the prompt,
    /// where they reach the terminal through the line editor, as text
    /// with control characters but line breaks made visible.
    pub fn bytes(&mut self, bytes: &[u8]) {
        let result = match self.sink {
            Sink::Terminal(_) => {
                self.out.extend_from_slice(visible(&String::from_utf8_lossy(bytes), Breaks::Keep).as_bytes());
                Ok(())
            }
            Sink::Stdout(_) | Sink::Prefixed(_) => self.out.write_all(bytes),
        };
        self.record(result);
        if self.out.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Free text for stdout, such as `.help`, `.schema` (whose names are
    /// QEMU's) or the steps of a VM stop; control characters but line
    /// breaks are made visible.
    pub fn text(&mut self, text: &str) {
        let result = self.out.write_all(visible(text, Breaks::Keep).as_bytes());
        self.record(result);
        self.flush();
    }
}

impl Observer for Printer {
    fn waiting(&mut self) {
        self.flush();
    }

    /// Logs `message` and echoes it with `-v`: the same copy, masked
    /// unless `--show-secrets` (stderr is kept by CI jobs as a log is).
    fn sent(&mut self, message: &Value) {
        let shown = match &mut self.log {
            Some(log) => log.copy("sent", message),
            None if self.style.verbose && !self.style.show_secrets => secrets::masked(message),
            None => Cow::Borrowed(message),
        };
        self.write_log("sent", &shown);
        if self.style.verbose {
            let mut echo = b"-> ".to_vec();
            let _ = render::json(&mut echo, &shown, false, &self.style.stderr);
            echo.push(b'\n');
            self.flush();
            self.write_stderr(&echo);
        }
    }

    fn received(&mut self, message: &Value, kind: Kind) {
        self.log(if kind == Kind::Event { "event" } else { "received" }, message);
        if kind == Kind::Stray {
            self.stray(message);
        }
        if self.style.json {
            let mut result = render::json(&mut self.out, message, false, &Palette::plain());
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

/// A VM stop's steps, each on its own line of stdout, made visible, and
/// its problems as problems.
impl Progress for Printer {
    fn step(&mut self, step: &Step) {
        self.text(&format!("{step}\n"));
    }

    fn problem(&mut self, message: &str) {
        Printer::problem(self, message);
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
