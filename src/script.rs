//! Script mode: lines from `-c` or a stream, run in order; a failure stops
//! the script unless `--keep-going`, which reports each and sums them up
//! in the exit status.

use std::collections::VecDeque;
use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::thread;

use crate::error::Error;
use crate::session::{self, Flow, Logical, Session, Source};

/// Where lines come from: `-c`, or stdin when it is not a terminal.
pub fn input(commands: &[String]) -> Source {
    if !commands.is_empty() {
        Source::Commands(commands.to_vec())
    } else {
        Source::Stream(BufReader::with_capacity(64 * 1024, Box::new(io::stdin())))
    }
}

/// Script mode: stop at the first failure, or note it and go on.
pub fn run(session: &mut Session, input: Source, keep_going: bool) -> Result<(), Error> {
    let mut outcome = KeepGoing::default();
    let mut run = |session: &mut Session, line: Logical| {
        let result = line.and_then(|(text, line_no)| session.run_line(text, Some(line_no)));
        outcome.absorb(result, keep_going, |message| session.printer.problem(message))
    };
    let mut result = match input {
        Source::Stream(reader) => stream_script(session, reader, &mut run),
        commands => session::for_each_line(commands, session.hmp(), |line| run(session, line)),
    };
    // `--pipeline`: what is still in flight has run; show its replies.
    let drained = session.drain();
    if result.is_ok() {
        let drained = drained.map(|()| Flow::Continue);
        result = outcome.absorb(drained, keep_going, |message| session.printer.problem(message)).map(|_| ());
    }
    session.printer.flush();
    result?;
    session.printer.check()?;
    session.printer.check_log()?;
    outcome.finish()
}

/// What `--keep-going` went past: a script goes on after a failed command
/// or a line that does not parse, and its exit status says so at the end
/// (2 if a line did not parse, else 1 if a command failed).
#[derive(Default)]
pub struct KeepGoing {
    unparsed: bool,
    failed: bool,
}

impl KeepGoing {
    /// Takes one line's result: with `keep_going`, a failure is reported
    /// (through `report`, unless already printed) and the script goes on.
    pub fn absorb(
        &mut self,
        result: Result<Flow, Error>,
        keep_going: bool,
        mut report: impl FnMut(&str),
    ) -> Result<Flow, Error> {
        match result {
            Err(Error::CommandFailed) if keep_going => self.failed = true,
            Err(error @ Error::Parse { .. }) if keep_going => {
                report(&format!("qmpsh: {error}"));
                self.unparsed = true;
            }
            other => return other,
        }
        Ok(Flow::Continue)
    }

    pub fn finish(self) -> Result<(), Error> {
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
    session::assemble(session, hmp, next_line, run)
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
                let line = session::read_physical(&mut reader, number);
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
