//! `--pipeline`: commands sent ahead of their replies, up to a window,
//! with the replies read and shown in order, and a failure read ahead of
//! the line that reports it.

use std::time::{Duration, Instant};

use super::{Flow, Session};
use crate::error::Error;
use crate::language::bind::Request;
use crate::qemu::work::Work;
use crate::qmp::ClientError;

/// How long a script's end waits for events delivered late: libvirt's
/// come within milliseconds of their reply; a libvirt that takes longer
/// must not hold the script.
const SETTLE_AT_MOST: Duration = Duration::from_secs(1);

/// A command sent and not yet answered (`--pipeline`), with what is needed
/// to show its reply.
pub(super) struct InFlight {
    pub ticket: u64,
    pub line_no: Option<usize>,
    pub command: String,
    pub hmp_line: Option<String>,
    pub text_reply: bool,
    /// A human `info` command (see [`crate::ui::tables`]).
    pub table: bool,
    /// The work the command starts in QEMU's background, if it starts
    /// any: at the prompt, it is watched once the command answers.
    pub starts: Option<Work>,
}

impl Session {
    /// `--pipeline`: sends `request` without waiting, and reads the oldest
    /// reply once the window is full.
    pub(super) fn send_ahead(&mut self, request: Request, line_no: Option<usize>) -> Result<Flow, Error> {
        self.recent.clear();
        let pending = match self.post(request, line_no) {
            Ok(pending) => pending,
            Err(e) => return self.connection_lost(e),
        };
        self.in_flight.push_back(pending);
        if self.in_flight.len() >= self.settings.pipeline.unwrap_or(1) {
            self.complete_oldest()?;
        }
        Ok(Flow::Continue)
    }

    /// Reads and shows the oldest reply in flight. A failed command is
    /// remembered for the line that reports it, naming its own line and
    /// how many commands sent after it have run all the same.
    pub(super) fn complete_oldest(&mut self) -> Result<(), Error> {
        let Some(pending) = self.in_flight.pop_front() else { return Ok(()) };
        let line_no = pending.line_no;
        match self.finish(pending) {
            Err(Error::CommandFailed) => {
                let after = self.in_flight.len();
                let line = line_no.map_or_else(|| "a command".to_string(), |n| format!("line {n}"));
                let ran =
                    if after > 0 { format!("; {after} commands sent after it had already run") } else { String::new() };
                self.printer.problem(&format!("qmpsh: {line} failed{ran}"));
                self.deferred.get_or_insert(Error::CommandFailed);
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// Reads every reply still in flight before a line that depends on
    /// them; a failure among them stops the script here unless it goes on
    /// past failures (then the line still runs, and the failure is
    /// reported with it).
    pub(super) fn settle(&mut self) -> Result<(), Error> {
        self.complete_all()?;
        self.stop_at_failure()
    }

    /// A failure read ahead stops the script here, unless it goes on past
    /// failures: then the failure is kept, and reported with the line.
    pub(super) fn stop_at_failure(&mut self) -> Result<(), Error> {
        match self.deferred.take() {
            Some(failure) if !self.settings.keep_going => Err(failure),
            kept => {
                self.deferred = kept;
                Ok(())
            }
        }
    }

    /// Reads every reply still in flight (`--pipeline`), in order.
    /// Then the events those commands caused that the transport delivers
    /// late (libvirt's), so that a script's output holds them.
    pub fn drain(&mut self) -> Result<(), Error> {
        self.complete_all()?;
        let settled = self.monitor.settle(Instant::now() + SETTLE_AT_MOST, &mut watch!(self));
        if let Err(ClientError::OutputClosed) = settled {
            return Err(Error::BrokenPipe);
        }
        self.deferred.take().map_or(Ok(()), Err)
    }

    pub(super) fn complete_all(&mut self) -> Result<(), Error> {
        while !self.in_flight.is_empty() {
            self.complete_oldest()?;
        }
        Ok(())
    }
}
