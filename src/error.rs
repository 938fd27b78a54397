//! The one error type the binary's pieces return to `main`, and the one place
//! that decides the process exit code.

use std::fmt;
use std::process::ExitCode;

use crate::visible::{Breaks, visible};

/// Everything that ends a qmpsh run early. Each variant maps to one exit code
/// listed in `--help`.
#[derive(Debug)]
pub enum Error {
    /// A QMP command answered with an error in script mode (exit 1). The
    /// error itself was already printed when it arrived.
    CommandFailed,
    /// A VM operation failed, such as QEMU exiting during start (exit 1).
    Failed(String),
    /// Bad command line, environment or input line (exit 2).
    Usage(String),
    /// A line of input did not parse or bind (exit 2). `line` is 1-based
    /// where known; `column` is 1-based, in characters.
    Parse { line: Option<usize>, column: Option<usize>, message: String },
    /// With `--keep-going`, one or more lines did not parse; each was
    /// reported as it came (exit 2).
    LinesRefused,
    /// Could not connect, no greeting in time, or the connection broke
    /// unexpectedly (exit 3).
    Connection(String),
    /// A command or `.wait` ran out of time (exit 4).
    Timeout(String),
    /// A VM stop had to quit or kill QEMU because the guest did not power
    /// off (exit 4). Unlike a timeout it ends the REPL too: QEMU is gone.
    /// The stop sequence has said so on stdout (`quit after timeout`), so
    /// it is not said again.
    Forced(String),
    /// Ctrl-C ended a wait (in the REPL, which goes on; exit 130 elsewhere).
    Interrupted,
    /// Standard output is a closed pipe: stop quietly, as `head` expects.
    BrokenPipe,
    /// An ending signal (SIGINT, SIGHUP, SIGTERM, SIGQUIT) arrived while a
    /// step that must not be cut short ran (`vm start`), which then
    /// finished or undid what it began, as `message` says (exit 128 + the
    /// signal's number).
    Signalled { signal: i32, message: String },
    /// A local I/O failure, such as a log file that cannot be opened
    /// (exit 1).
    Io(String),
    /// The `-l` traffic log could not be written; said when it happened
    /// (exit 1).
    LogFailed,
    /// A program `vm exec` or `.exec` ran in the guest ended with this
    /// code (not 0), or 128 + the signal that ended it: qmpsh's own.
    Exited(u8),
    /// Several targets ran, and the summary said how each ended; exit
    /// with the worst one's code.
    Outcomes(u8),
}

impl Error {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::CommandFailed | Error::Failed(_) | Error::Io(_) | Error::LogFailed => 1,
            Error::Usage(_) | Error::Parse { .. } | Error::LinesRefused => 2,
            Error::Connection(_) => 3,
            Error::Timeout(_) | Error::Forced(_) => 4,
            Error::Interrupted => 130,
            Error::BrokenPipe => 0,
            Error::Exited(code) | Error::Outcomes(code) => *code,
            Error::Signalled { signal, .. } => u8::try_from(signal_exit_code(*signal)).unwrap_or(1),
        }
    }

    /// The line that says this error, unless it was said already (see
    /// [`Error::is_silent`]). The peer's words in a message were made
    /// visible where they were put in; what escaped that is made visible
    /// here.
    ///
    /// A line that did not parse is said as a line that failed in QEMU is
    /// (`error: line 2, column 5: ...`, as `error: line 2: CommandNotFound:
    /// ...`); everything else is qmpsh's own word (`qmpsh: ...`).
    pub fn said(&self) -> Option<String> {
        let speaker = if matches!(self, Error::Parse { .. }) { "error" } else { "qmpsh" };
        (!self.is_silent()).then(|| format!("{speaker}: {}", visible(&self.to_string(), Breaks::Keep)))
    }

    /// Whether `main` should print this error; a failed command, a forced
    /// stop, a failed log and a closed stdout were already reported (or need
    /// no report).
    pub fn is_silent(&self) -> bool {
        matches!(
            self,
            Error::CommandFailed
                | Error::LinesRefused
                | Error::Forced(_)
                | Error::BrokenPipe
                | Error::LogFailed
                | Error::Exited(_)
                | Error::Outcomes(_)
        )
    }

    /// Wraps an output error, recognising a closed pipe.
    pub fn output(err: std::io::Error) -> Error {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            Error::BrokenPipe
        } else {
            Error::Io(format!("cannot write output: {err}"))
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::CommandFailed => f.write_str("a command failed"),
            Error::LinesRefused => f.write_str("some lines did not parse"),
            Error::LogFailed => f.write_str("the traffic log could not be written"),
            Error::Usage(msg)
            | Error::Connection(msg)
            | Error::Timeout(msg)
            | Error::Forced(msg)
            | Error::Io(msg)
            | Error::Failed(msg)
            | Error::Signalled { message: msg, .. } => f.write_str(msg),
            Error::Parse { line, column, message } => {
                match (line, column) {
                    (Some(l), Some(c)) => write!(f, "line {l}, column {c}: ")?,
                    (Some(l), None) => write!(f, "line {l}: ")?,
                    (None, Some(c)) => write!(f, "column {c}: ")?,
                    (None, None) => {}
                }
                f.write_str(message)
            }
            Error::BrokenPipe => f.write_str("broken pipe"),
            Error::Interrupted => f.write_str("interrupted"),
            Error::Exited(code) => write!(f, "the program in the guest exited with {code}"),
            Error::Outcomes(code) => write!(f, "a target failed (exit {code})"),
        }
    }
}

impl std::error::Error for Error {}

/// The exit code of a run an ending signal stopped: 128 + its number, as
/// shells report a process the signal killed.
pub fn signal_exit_code(signal: i32) -> i32 {
    128 + signal
}

/// Turns a run's outcome into the process exit status, printing the error
/// (one line, on `stderr`) unless it was already reported.
pub fn finish(result: Result<(), Error>, stderr: &mut impl std::io::Write) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One write: on a terminal the line editor's thread may still
            // redraw its prompt, and must not land mid-line.
            if let Some(said) = err.said() {
                let _ = stderr.write_all(format!("{said}\n").as_bytes());
            }
            ExitCode::from(err.exit_code())
        }
    }
}

/// Why a `libvirt:` target or `--connect` fails in a build without the
/// `libvirt` feature, and how to get one.
pub const WITHOUT_LIBVIRT: &str = "this qmpsh was built without libvirt support: rebuild it with \
    `cargo install --path . --features libvirt` (needs libvirt-dev and pkg-config)";

/// The exit codes as `--help` lists them.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (after `quit`, QEMU closing the socket is success)
  1  a command got a QMP error (script mode; with --keep-going, at the end),
     a VM operation failed (QEMU exited while starting), or a local file or
     stream could not be read or written
  2  usage or parse error (with --keep-going, at the end, if any line did
     not parse)
  3  connection failure: cannot connect, no greeting in time, connection lost
  4  timeout: a command (with --timeout) or .wait ran out of time, or a VM
     stop had to quit or kill QEMU because the guest did not power off
130, 129, 143, 131
     ended by Ctrl-C, SIGHUP, SIGTERM or SIGQUIT (launch, vm start and the
     shell at its prompt first undo what they began)
`vm exec` exits with its program's own code (128+N for signal N), or 4 when
--timeout passes while it still runs in the guest; `vm wait` 4 on timeout.
With several targets, the worst target's: 130, then 3, 4, 2, 1";
