//! Script mode: lines from `-c` or a stream, run in order; a failure stops
//! the script unless `--keep-going`, which reports each and sums them up
//! in the exit status. `--dry-run` runs its translation through the same
//! loop ([`Runner`]).

use std::collections::VecDeque;
use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::thread;

use crate::error::Error;
use crate::language::line::{self, Logical, Source};
use crate::shell::session::{Flow, Session};

/// Where lines come from: `-c`, or stdin when it is not a terminal.
pub fn input(commands: &[String]) -> Source {
    if !commands.is_empty() {
        Source::Commands(commands.to_vec())
    } else {
        Source::Stream(BufReader::with_capacity(64 * 1024, Box::new(io::stdin())))
    }
}

/// What a script's lines run on: a connected session, or `--dry-run`'s
/// translation. [`run`] is the loop both share.
pub trait Runner {
    /// `-H`: HMP text lines continue only after a `\`.
    fn hmp(&self) -> bool;

    /// Runs one logical line, whose first physical line is `line_no`.
    fn run_line(&mut self, text: &str, line_no: usize) -> Result<Flow, Error>;

    /// Says what went wrong with a line that the script goes past.
    fn report(&mut self, problem: &str);

    /// Feeds a stream's logical lines to `each`. By default it reads as it
    /// goes; a session reads in a thread, printing events while none is
    /// ready.
    fn read_stream(
        &mut self,
        reader: BufReader<Box<dyn Read + Send>>,
        each: &mut dyn FnMut(&mut Self, Logical) -> Result<Flow, Error>,
    ) -> Result<(), Error> {
        let hmp = self.hmp();
        line::for_each_line(Source::Stream(reader), hmp, |line| each(self, line))
    }

    /// After the last line: what is still owed (a session's replies in
    /// flight), which counts as the last line's.
    fn drain(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// The end of the script, whose lines ran to `result`: what output
    /// is buffered goes out, and a failure to write it is the script's.
    fn end(&mut self, result: Result<(), Error>) -> Result<(), Error>;
}

/// Script mode: every line of `input` in order, stopping at the first
/// failure, or with `keep_going` reporting it and going on, the exit status
/// then saying what was gone past.
pub fn run<R: Runner>(runner: &mut R, input: Source, keep_going: bool) -> Result<(), Error> {
    let mut outcome = KeepGoing::default();
    let mut each = |runner: &mut R, line: Logical| {
        let result = line.and_then(|(text, line_no)| runner.run_line(text, line_no));
        outcome.absorb(result, keep_going, |message| runner.report(message))
    };
    let hmp = runner.hmp();
    let mut result = match input {
        Source::Stream(reader) => runner.read_stream(reader, &mut each),
        commands => line::for_each_line(commands, hmp, |line| each(runner, line)),
    };
    // `--pipeline`: what is still in flight has run; show its replies.
    let drained = runner.drain();
    if result.is_ok() {
        let drained = drained.map(|()| Flow::Continue);
        result = outcome.absorb(drained, keep_going, |message| runner.report(message)).map(|_| ());
    }
    runner.end(result)?;
    outcome.finish()
}

impl Runner for Session {
    fn hmp(&self) -> bool {
        Session::hmp(self)
    }

    fn run_line(&mut self, text: &str, line_no: usize) -> Result<Flow, Error> {
        Session::run_line(self, text, Some(line_no))
    }

    fn report(&mut self, problem: &str) {
        self.printer.problem(problem);
    }

    fn read_stream(
        &mut self,
        reader: BufReader<Box<dyn Read + Send>>,
        each: &mut dyn FnMut(&mut Self, Logical) -> Result<Flow, Error>,
    ) -> Result<(), Error> {
        stream_script(self, reader, each)
    }

    fn drain(&mut self) -> Result<(), Error> {
        Session::drain(self)
    }

    fn end(&mut self, result: Result<(), Error>) -> Result<(), Error> {
        self.printer.flush();
        result?;
        self.printer.check()?;
        self.printer.check_log()
    }
}

/// What `--keep-going` went past: a script goes on after a failed command
/// or a line that does not parse, and its exit status says so at the end
/// (2 if a line did not parse, else 1 if a command failed).
#[derive(Default)]
struct KeepGoing {
    unparsed: bool,
    failed: bool,
}

impl KeepGoing {
    /// Takes one line's result: with `keep_going`, a failure is reported
    /// (through `report`, unless already printed) and the script goes on.
    fn absorb(
        &mut self,
        result: Result<Flow, Error>,
        keep_going: bool,
        mut report: impl FnMut(&str),
    ) -> Result<Flow, Error> {
        match result {
            Err(Error::CommandFailed) if keep_going => self.failed = true,
            Err(error @ Error::Parse { .. }) if keep_going => {
                report(&error.said().unwrap_or_default());
                self.unparsed = true;
            }
            other => return other,
        }
        Ok(Flow::Continue)
    }

    fn finish(self) -> Result<(), Error> {
        if self.unparsed {
            Err(Error::LinesRefused)
        } else if self.failed {
            Err(Error::CommandFailed)
        } else {
            Ok(())
        }
    }
}

/// One physical line read from a stream, or why it could not be read.
type PhysicalLine = Result<Option<String>, Error>;

/// A script read from a stream (a pipe that may pause): a thread reads the
/// lines, and while none is ready the session prints events as they come,
/// just as the REPL does at its prompt.
fn stream_script(
    session: &mut Session,
    reader: BufReader<Box<dyn Read + Send>>,
    run: &mut dyn FnMut(&mut Session, Logical) -> Result<Flow, Error>,
) -> Result<(), Error> {
    let (batches, next) = mpsc::sync_channel::<Vec<PhysicalLine>>(2);
    let wake = session.waker();
    // Set while the session waits for a line: only then does a new line
    // need to wake it (a busy script is not woken once per line).
    let idle = Arc::new(AtomicBool::new(false));
    let reader_idle = Arc::clone(&idle);
    read_in_batches(reader, batches, wake, reader_idle)?;
    // While no line is ready, the session prints events as they come.
    let mut ready: VecDeque<PhysicalLine> = VecDeque::new();
    let next_line = |session: &mut Session| loop {
        if let Some(line) = ready.pop_front() {
            return line;
        }
        match next.try_recv() {
            Ok(batch) => ready.extend(batch),
            Err(TryRecvError::Disconnected) => return Ok(None),
            Err(TryRecvError::Empty) => {
                // Say we wait, then look once more: a batch sent before the
                // reader saw the flag is found here, one sent after wakes us.
                idle.store(true, Ordering::SeqCst);
                let flow = match next.try_recv() {
                    Ok(batch) => {
                        ready.extend(batch);
                        Ok(Flow::Continue)
                    }
                    Err(_) => session.idle(),
                };
                idle.store(false, Ordering::SeqCst);
                if flow? == Flow::Exit {
                    return Ok(None);
                }
            }
        }
    };
    let hmp = session.hmp();
    line::assemble(session, hmp, next_line, run)
}

/// Lines go over in batches: the reader never waits while the session is
/// busy, until it holds this many (bounded: `yes | qmpsh` must not fill
/// memory while QEMU answers one command at a time).
const BATCH: usize = 1024;

/// Reads `reader`'s lines in a thread of its own and sends them in
/// batches, waking the session (`wake`) when it waits for one (`idle`).
fn read_in_batches(
    mut reader: BufReader<Box<dyn Read + Send>>,
    batches: mpsc::SyncSender<Vec<PhysicalLine>>,
    wake: crate::qmp::Waker,
    reader_idle: Arc<AtomicBool>,
) -> Result<(), Error> {
    thread::Builder::new()
        .name("qmpsh-stdin".into())
        .spawn(move || {
            let mut batch = Vec::new();
            for number in 1.. {
                let line = line::read_physical(&mut reader, number);
                // A line that is not UTF-8 is that line's failure; reading
                // ends at the end of input or a read error.
                let end = matches!(line, Ok(None) | Err(Error::Io(_)));
                batch.push(line);
                // Before a read that may wait for input (no whole line is
                // buffered), every line read so far goes over, so none sits
                // here while the session waits.
                let may_block = !reader.buffer().contains(&b'\n');
                let sent = if end || may_block || batch.len() >= BATCH {
                    batches.send(std::mem::take(&mut batch)).map_err(|_| ())
                } else {
                    match batches.try_send(std::mem::take(&mut batch)) {
                        Ok(()) => Ok(()),
                        Err(mpsc::TrySendError::Full(kept)) => {
                            batch = kept;
                            continue;
                        }
                        Err(mpsc::TrySendError::Disconnected(_)) => Err(()),
                    }
                };
                if end || sent.is_err() || reader_idle.load(Ordering::SeqCst) {
                    wake();
                }
                if end || sent.is_err() {
                    return;
                }
            }
        })
        .map_err(|e| Error::Io(format!("cannot start the input thread: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qmp::fake::{Step, expect, send};
    use crate::shell::session::Settings;
    use crate::shell::session::tests::session;
    use serde_json::json;

    fn commands(lines: &[&str]) -> Source {
        Source::Commands(lines.iter().map(|line| line.to_string()).collect())
    }

    fn stop_fails() -> Vec<Step> {
        vec![expect(json!({"execute": "stop"})), send(json!({"error": {"class": "GenericError", "desc": "no"}}))]
    }

    #[test]
    fn a_failed_command_stops_the_script() {
        let (mut session, peer, _) = session(stop_fails(), Settings::default());
        assert!(matches!(run(&mut session, commands(&["stop", "cont"]), false), Err(Error::CommandFailed)));
        assert_eq!(peer.commands(), ["stop"]);
    }

    #[test]
    fn keep_going_runs_every_line_and_the_status_says_a_command_failed() {
        let mut steps = stop_fails();
        steps.extend([expect(json!({"execute": "cont"})), send(json!({"return": {}}))]);
        let (mut session, peer, _) = session(steps, Settings::default());
        assert!(matches!(run(&mut session, commands(&["stop", "cont"]), true), Err(Error::CommandFailed)));
        assert_eq!(peer.commands(), ["stop", "cont"]);
    }

    #[test]
    fn keep_going_goes_past_a_line_that_does_not_parse_and_says_so_at_the_end() {
        let mut steps = stop_fails();
        steps.extend([expect(json!({"execute": "cont"})), send(json!({"return": {}}))]);
        let (mut session, peer, screen) = session(steps, Settings::default());
        let result = run(&mut session, commands(&["stop", "=", "cont"]), true);
        // A line refused outranks a command failed.
        assert!(matches!(result, Err(Error::LinesRefused)), "{result:?}");
        assert!(screen.text().contains("line 2, column 1: expected a command name"), "{}", screen.text());
        assert_eq!(peer.commands(), ["stop", "cont"]);
    }

    #[test]
    fn keep_going_counts_a_failure_in_the_replies_still_in_flight_at_the_end() {
        let settings = Settings { pipeline: Some(4), keep_going: true, ..Settings::default() };
        let (mut session, peer, _) = session(stop_fails(), settings);
        assert!(matches!(run(&mut session, commands(&["stop"]), true), Err(Error::CommandFailed)));
        assert!(peer.played());
    }
}
