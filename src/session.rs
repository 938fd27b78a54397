//! A session: logical lines in, through parse and bind, out to the monitor,
//! with replies and events printed as they come. Script mode, `-c` and the
//! REPL all drive this; they differ only in what a failure does.

use std::io::BufRead;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bind::{self, Action, Request, Shell};
use crate::error::Error;
use crate::help;
use crate::line::{self, Assembler, ParseError};
use crate::output::Printer;
use crate::qmp::{ClientError, Monitor};

/// Whether to go on after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `.exit`, or QEMU went away after our `quit`.
    Exit,
}

/// How lines are read and run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    pub bind: bind::Options,
    /// `--timeout`: the longest wait for any one reply.
    pub timeout: Option<Duration>,
    /// How long to wait for QEMU to close the socket after `quit`.
    pub quit_grace: Duration,
}

/// A connected session.
pub struct Session {
    monitor: Box<dyn Monitor>,
    pub printer: Printer,
    settings: Settings,
    /// `quit` was sent: QEMU closing the connection is now success.
    quitting: bool,
}

impl Session {
    pub fn new(monitor: Box<dyn Monitor>, printer: Printer, settings: Settings) -> Session {
        Session {
            monitor,
            printer,
            settings,
            quitting: false,
        }
    }

    /// The monitor's greeting, if it sent one.
    pub fn greeting(&self) -> Option<&Value> {
        self.monitor.greeting()
    }

    /// Runs one logical line. `Err(Error::CommandFailed)` means QEMU
    /// answered with an error, already printed; whether that stops the
    /// session is the caller's choice.
    pub fn run_line(&mut self, text: &str, line_no: Option<usize>) -> Result<Flow, Error> {
        let action = translate(text, line_no, self.settings.bind)?;
        let flow = self.act(action);
        self.printer.check()?;
        flow
    }

    fn act(&mut self, action: Action) -> Result<Flow, Error> {
        match action {
            Action::Nothing => Ok(Flow::Continue),
            Action::Send(request) => self.send(request),
            Action::Shell(shell) => self.shell(shell),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.settings.timeout.map(|t| Instant::now() + t)
    }

    fn send(&mut self, request: Request) -> Result<Flow, Error> {
        let command = request.command().to_string();
        if command == "quit" {
            self.quitting = true;
        }
        let deadline = self.deadline();
        match self
            .monitor
            .execute(request.message, deadline, &mut self.printer)
        {
            Ok(Ok(value)) => {
                self.printer.reply(&value, request.text_reply);
                if self.quitting {
                    self.await_close();
                    return Ok(Flow::Exit);
                }
                Ok(Flow::Continue)
            }
            Ok(Err(error)) => {
                self.printer.qmp_error(&error);
                Err(Error::CommandFailed)
            }
            Err(ClientError::Timeout) => Err(Error::Timeout(format!(
                "no reply to {command} within {} s",
                self.settings.timeout.unwrap_or_default().as_secs_f64()
            ))),
            Err(e) => self.connection_lost(e),
        }
    }

    /// After `quit`: wait (briefly) for QEMU to close the socket, so that
    /// when qmpsh exits, QEMU is gone too.
    fn await_close(&mut self) {
        let deadline = Some(Instant::now() + self.settings.quit_grace);
        let _ = self
            .monitor
            .wait_event(deadline, &mut self.printer, &mut |_| false);
    }

    fn connection_lost(&mut self, error: ClientError) -> Result<Flow, Error> {
        match error {
            ClientError::Closed if self.quitting => Ok(Flow::Exit),
            other => Err(Error::Connection(other.to_string())),
        }
    }

    fn shell(&mut self, shell: Shell) -> Result<Flow, Error> {
        match shell {
            Shell::Exit => return Ok(Flow::Exit),
            Shell::Help(topic) => {
                let text = help::text(topic.as_deref()).map_err(Error::Usage)?;
                self.printer.text(&text);
            }
            Shell::Events(on) => self.printer.style.events = on,
            Shell::Pretty(on) => self.printer.style.pretty = on,
            Shell::Sleep(duration) => {
                // Events that arrive meanwhile are printed as they come.
                let deadline = Some(Instant::now() + duration);
                if let Err(e) = self
                    .monitor
                    .wait_event(deadline, &mut self.printer, &mut |_| false)
                {
                    return self.connection_lost(e);
                }
            }
            Shell::Wait {
                event,
                timeout,
                fields,
            } => {
                let deadline = timeout
                    .or(self.settings.timeout)
                    .map(|t| Instant::now() + t);
                let mut wanted = |message: &Value| {
                    message.get("event").and_then(Value::as_str) == Some(event.as_str())
                        && fields
                            .iter()
                            .all(|(k, v)| message.get("data").and_then(|d| d.get(k)) == Some(v))
                };
                match self
                    .monitor
                    .wait_event(deadline, &mut self.printer, &mut wanted)
                {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        let waited = timeout.or(self.settings.timeout).unwrap_or_default();
                        return Err(Error::Timeout(format!(
                            "no {event} event within {} s",
                            waited.as_secs_f64()
                        )));
                    }
                    Err(e) => return self.connection_lost(e),
                }
            }
        }
        Ok(Flow::Continue)
    }
}

/// Parses and binds one logical line into what it asks for.
pub fn translate(
    text: &str,
    line_no: Option<usize>,
    options: bind::Options,
) -> Result<Action, Error> {
    let located = |e: ParseError| {
        let (lines_after, column) = line::position(text, e.offset);
        Error::Parse {
            line: line_no.map(|n| n + lines_after),
            column: Some(column),
            message: e.message,
        }
    };
    let parsed = line::parse_line(text).map_err(located)?;
    bind::bind(&parsed, text, options).map_err(located)
}

/// Where lines come from: `-c` arguments or a stream such as stdin.
pub enum Input {
    Commands(Vec<String>),
    Stream(Box<dyn BufRead>),
}

/// Feeds every logical line of `input` to `each`, with its first physical
/// line's number, until `each` says to stop or fails.
pub fn for_each_line(
    input: Input,
    mut each: impl FnMut(&str, usize) -> Result<Flow, Error>,
) -> Result<(), Error> {
    let mut assembler = Assembler::new();
    let mut feed = |physical: &str| -> Result<Flow, Error> {
        match assembler.push(physical) {
            Some((text, start)) => each(&text, start),
            None => Ok(Flow::Continue),
        }
    };
    match input {
        Input::Commands(commands) => {
            for command in &commands {
                for physical in command.split('\n') {
                    if feed(physical)? == Flow::Exit {
                        return Ok(());
                    }
                }
            }
        }
        Input::Stream(mut reader) => {
            let mut raw = Vec::new();
            let mut number = 0;
            loop {
                raw.clear();
                number += 1;
                let n = reader
                    .read_until(b'\n', &mut raw)
                    .map_err(|e| Error::Io(format!("cannot read input: {e}")))?;
                if n == 0 {
                    break;
                }
                let physical = std::str::from_utf8(&raw).map_err(|e| Error::Parse {
                    line: Some(number),
                    column: None,
                    message: format!("not valid UTF-8 (byte {})", e.valid_up_to() + 1),
                })?;
                if feed(physical.strip_suffix('\n').unwrap_or(physical))? == Flow::Exit {
                    return Ok(());
                }
            }
        }
    }
    match assembler.finish() {
        Some((text, start)) => each(&text, start).map(|_| ()),
        None => Ok(()),
    }
}
