//! The dot commands a session runs itself (`.wait`, `.sleep`, `.shutdown`,
//! `.schema`, ...), and the events it remembers for `.wait`.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::{Flow, Session};
use crate::error::Error;
use crate::language::bind::DotCommand;
use crate::language::help;
use crate::language::schema;
use crate::qemu::work::{Ending, State, Step, WatchError, Watcher, Work, only_work};
use crate::qemu::{guest, process::Process, stop};
use crate::qmp::ClientError;
use crate::qmp::{Kind, Observer};
use crate::ui::meter::StatusLine;
use crate::ui::output::Printer;
use crate::ui::terminal::Facts;
use crate::vm::copy;

impl Session {
    /// Runs a dot command, which qmpsh itself carries out.
    pub(super) fn run_dot(&mut self, command: DotCommand) -> Result<Flow, Error> {
        // A dot command may wait (.sleep, .wait): what came before shows first.
        self.printer.flush();
        match command {
            DotCommand::Exit => return Ok(Flow::Exit),
            DotCommand::Help(topic) => {
                let text = help::text(topic.as_deref()).map_err(Error::Usage)?;
                self.printer.text(&text);
            }
            DotCommand::Events(on) => self.printer.style.events = on,
            DotCommand::Pretty(on) => self.printer.style.pretty = on,
            DotCommand::Cpu(index) => self.cpu = Some(index),
            DotCommand::Shutdown { timeout, kill } => return self.shutdown(timeout, kill),
            DotCommand::Schema(command) => {
                let text = self.describe(&command)?;
                self.printer.text(&text);
            }
            DotCommand::Sleep(duration) => {
                // Events that arrive meanwhile are printed as they come.
                let deadline = Some(Instant::now() + duration);
                if let Err(e) = self.monitor.wait_event(deadline, &mut watch!(self), &mut |_| false) {
                    return self.connection_lost(e);
                }
            }
            DotCommand::Wait { event, timeout, fields } => return self.wait_for(&event, timeout, &fields),
            DotCommand::WaitWork { work, timeout } => return self.wait_work(work, timeout),
            DotCommand::Watch { work, timeout } => return self.watch_work(work, timeout),
            DotCommand::Exec(argv) => return self.exec(argv),
            DotCommand::Cat(path) => self.cat(&path)?,
        }
        Ok(Flow::Continue)
    }

    /// `.shutdown`: the stop sequence on the connected VM.
    pub(super) fn shutdown(&mut self, timeout: Duration, kill: bool) -> Result<Flow, Error> {
        let process = self.monitor.peer_pid().and_then(Process::peer);
        self.quitting = true;
        let sequence = stop::Stop { agent: self.settings.agent.as_ref(), process: process.as_ref(), timeout, kill };
        // Interrupted or failed, it did not end QEMU: QEMU leaving later is
        // news again, not the quit we asked for.
        let ending =
            stop::shutdown(&mut self.monitor, &mut self.printer, &sequence).inspect_err(|_| self.quitting = false)?;
        self.printer.text(&format!("{ending}\n"));
        ending.as_result(timeout).map(|()| Flow::Exit)
    }

    /// `.exec CMD ARG...`: the program runs in the guest through the agent
    /// this session is on; its output shows when it ends. An exit other
    /// than 0 is said, and fails the line as a QMP error would.
    pub(super) fn exec(&mut self, argv: Vec<String>) -> Result<Flow, Error> {
        let names = self.monitor.command_names();
        if !names.is_empty() && !names.iter().any(|name| name == "guest-exec") {
            return Err(Error::Usage(
                ".exec runs in the agent shell (qmpsh --agent NAME), on an agent that offers guest-exec".into(),
            ));
        }
        let program = crate::visible::line(argv.first().map_or("", String::as_str));
        let request = guest::Request { argv, timeout: self.settings.timeout, ..guest::Request::default() };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let ended = guest::exec(&mut self.monitor, &request, &mut self.printer, &mut out, &mut err)?;
        self.printer.program_output(&out, &err);
        if let Some(cut) = guest::truncation(&ended) {
            self.printer.problem(&format!("qmpsh: {cut}"));
        }
        match ended.code {
            0 => Ok(Flow::Continue),
            code => {
                self.printer.problem(&format!("qmpsh: {program} exited with {code}"));
                Err(Error::CommandFailed)
            }
        }
    }

    /// `.cat PATH`: a guest file's bytes on stdout, chunk by chunk (see
    /// `vm::copy`); its traffic is qmpsh's own, logged with `-l`.
    pub(super) fn cat(&mut self, path: &str) -> Result<(), Error> {
        if !self.monitor.command_names().iter().any(|c| c == "guest-file-read") {
            return Err(Error::Usage(".cat reads a guest's file through its agent: open qmpsh with --agent".into()));
        }
        let printer = std::cell::RefCell::new(&mut self.printer);
        let mut observer = Logged(&printer);
        let mut sink = |bytes: &[u8]| {
            let mut printer = printer.borrow_mut();
            printer.bytes(bytes);
            printer.check()
        };
        let read = copy::read(&mut self.monitor, path, &mut observer, &mut sink, &mut |_, _| {});
        self.printer.flush();
        read.map(drop)
    }

    /// `.schema CMD`: a command's arguments, from the live schema.
    pub(super) fn describe(&self, command: &str) -> Result<String, Error> {
        let Some(schema) = self.schema() else {
            return Err(Error::Usage("this monitor offers no schema (query-qmp-schema)".into()));
        };
        schema.describe_command(command).ok_or_else(|| {
            let hint = schema::suggest(command, schema.command_names()).map(|near| format!(" (did you mean {near}?)"));
            Error::Usage(format!("QEMU has no command {command}{}", hint.unwrap_or_default()))
        })
    }

    /// `.wait EVENT`: until an event of that name with these data fields
    /// comes, or came while the last command ran.
    pub(super) fn wait_for(
        &mut self,
        event: &str,
        timeout: Option<Duration>,
        fields: &Map<String, Value>,
    ) -> Result<Flow, Error> {
        let limit = timeout.or(self.settings.timeout);
        let deadline = limit.map(|t| Instant::now() + t);
        let mut wanted = |message: &Value| {
            message.get("event").and_then(Value::as_str) == Some(event)
                && fields.iter().all(|(k, v)| message.get("data").and_then(|d| d.get(k)) == Some(v))
        };
        if self.take_event(&mut wanted).is_some() {
            return Ok(Flow::Continue);
        }
        match self.monitor.wait_event(deadline, &mut watch!(self), &mut wanted) {
            Ok(Some(_)) => {
                self.recent.clear();
                Ok(Flow::Continue)
            }
            Ok(None) => {
                let waited = limit.unwrap_or_default().as_secs_f64();
                Err(Error::Timeout(format!("no {event} event within {waited} s")))
            }
            Err(e) => self.connection_lost(e),
        }
    }

    /// `.wait job=ID` and `.wait migration`: until the work ends (a mirror:
    /// until it is ready), saying each status it passes through; exit 1
    /// with QEMU's error if it failed or was cancelled, 4 at the timeout.
    pub(super) fn wait_work(&mut self, work: Work, timeout: Option<Duration>) -> Result<Flow, Error> {
        self.follow(work, timeout, None)
    }

    /// `.watch [ID | migration]`: as `.wait`, with a progress line redrawn
    /// at each answer on a terminal; with nothing named, the one job or
    /// migration QEMU has. Ctrl-C stops watching, and asks nothing of QEMU.
    pub(super) fn watch_work(&mut self, work: Option<Work>, timeout: Option<Duration>) -> Result<Flow, Error> {
        let limit = timeout.or(self.settings.timeout);
        let work = match work {
            Some(work) => work,
            None => match only_work(&mut self.monitor, limit.map(|t| Instant::now() + t), &mut watch!(self, true)) {
                Ok(work) => work,
                Err(e) => return self.watch_failed(e),
            },
        };
        let line = StatusLine::new(Facts::now().stderr);
        self.follow(work, timeout, Some(line))
    }

    /// Follows `work` to its end, step by step; with `line`, `.watch`'s
    /// progress line (and Ctrl-C only stops the watch).
    fn follow(&mut self, work: Work, timeout: Option<Duration>, mut line: Option<StatusLine>) -> Result<Flow, Error> {
        let limit = timeout.or(self.settings.timeout);
        let deadline = limit.map(|t| Instant::now() + t);
        let mut watcher = Watcher::new(work.clone(), &self.recent);
        let name = crate::visible::line(&work.name());
        let mut rate = Rate::default();
        let mut last_done = None;
        loop {
            let mut above = Above { inner: watch!(self, true), line: line.as_mut() };
            let step = watcher.step(&mut self.monitor, deadline, &mut above);
            let step = match step {
                Ok(step) => step,
                Err(WatchError::Client(ClientError::Interrupted)) if line.is_some() => {
                    drop(line);
                    self.printer.problem(&format!(
                        "qmpsh: stopped watching {name}: it goes on in QEMU (.watch {} follows it again)",
                        crate::visible::line(work.word())
                    ));
                    return Ok(Flow::Continue);
                }
                Err(e) => return self.watch_failed(e),
            };
            match step {
                Step::Same => {}
                Step::Changed(state) => {
                    last_done = state.done;
                    // The status goes above the progress line.
                    if let Some(line) = line.as_mut() {
                        line.wipe();
                    }
                    self.say_state(&work, &state);
                    if let Some(line) = line.as_mut().filter(|line| line.is_on()) {
                        line.draw(&progress_line(&name, &state, rate.per_second(&state)));
                    }
                }
                Step::Progress(state) => {
                    let per_second = rate.per_second(&state);
                    if let Some(line) = line.as_mut().filter(|line| line.is_on()) {
                        line.draw(&progress_line(&name, &state, per_second));
                    } else if self.printer.style.json && state.done != last_done {
                        // With --json, progress is JSON lines too.
                        self.say_state(&work, &state);
                    }
                    last_done = state.done;
                }
                Step::TimedOut => {
                    drop(line);
                    let waited = limit.unwrap_or_default().as_secs_f64();
                    return Err(Error::Timeout(format!("{name} still runs after {waited} s")));
                }
                Step::Ended(ending) => {
                    drop(line);
                    self.recent.clear();
                    return self.say_ending(&work, ending);
                }
            }
        }
    }

    /// Why a watch could not go on: the connection, or QEMU's answer.
    fn watch_failed(&mut self, error: WatchError) -> Result<Flow, Error> {
        match error {
            WatchError::Client(e) => self.connection_lost(e),
            WatchError::Unknown(why) => Err(Error::Failed(crate::visible::line(&why))),
        }
    }

    /// One status a job or the migration reached: a line, or with
    /// `--json` a JSON line.
    fn say_state(&mut self, work: &Work, state: &State) {
        if self.printer.style.json {
            let mut line = work_line(work);
            line.insert("status".into(), Value::from(state.status.as_str()));
            if let Some(done) = state.done {
                line.insert("done".into(), Value::from(done));
            }
            if let Some(total) = state.total {
                line.insert("total".into(), Value::from(total));
            }
            self.printer.text(&format!("{}\n", Value::Object(line)));
            return;
        }
        let progress = match (state.done, state.total) {
            (Some(done), Some(total)) if total > 0 => {
                format!(" ({} of {}, {}%)", mib(done), mib(total), crate::ui::render::percent(done, total))
            }
            _ => String::new(),
        };
        self.printer.text(&format!("{}: {}{progress}\n", work.name(), state.status));
    }

    /// How the work ended: success (0) said on stdout; a failure or a
    /// cancel fails the line (1) with QEMU's reason on stderr.
    fn say_ending(&mut self, work: &Work, ending: Ending) -> Result<Flow, Error> {
        let name = work.name();
        if self.printer.style.json {
            // The outcome as the last of the work's JSON lines (and a
            // failure on stderr too, as ever).
            let outcome = match &ending {
                Ending::Completed => "completed",
                Ending::Ready => "ready",
                Ending::Failed(_) => "failed",
                Ending::Cancelled => "cancelled",
            };
            let mut line = work_line(work);
            line.insert("outcome".into(), Value::from(outcome));
            self.printer.text(&format!("{}\n", Value::Object(line)));
            if matches!(ending, Ending::Completed | Ending::Ready) {
                return Ok(Flow::Continue);
            }
        }
        match ending {
            Ending::Completed => self.printer.text(&format!("{name}: completed\n")),
            Ending::Ready => {
                let id = match work {
                    Work::Job(id) => id.as_str(),
                    Work::Migration | Work::Dump => "",
                };
                self.printer.text(&format!(
                    "{name}: ready: job-complete id={id} finishes it (the target takes over), job-cancel id={id} \
                     leaves the source as it is\n"
                ));
            }
            Ending::Failed(why) => {
                self.printer.problem(&format!("qmpsh: {name} failed: {}", crate::visible::line(&why)));
                return Err(Error::CommandFailed);
            }
            Ending::Cancelled => {
                self.printer.problem(&format!("qmpsh: {name} was cancelled"));
                return Err(Error::CommandFailed);
            }
        }
        Ok(Flow::Continue)
    }

    /// The last event named `name` since the last command was sent.
    pub(super) fn seen_event(&self, name: &str) -> Option<&Value> {
        self.recent.iter().rev().find(|event| event.get("event").and_then(Value::as_str) == Some(name))
    }

    /// Takes the first remembered event that `wanted` accepts, with those
    /// before it.
    pub(super) fn take_event(&mut self, wanted: &mut dyn FnMut(&Value) -> bool) -> Option<Value> {
        let at = self.recent.iter().position(wanted)?;
        self.recent.drain(..=at).next_back()
    }
}

/// `.cat`'s traffic, to the printer's log as qmpsh's own, while the same
/// printer prints the file.
struct Logged<'a, 'p>(&'a std::cell::RefCell<&'p mut Printer>);

impl Observer for Logged<'_, '_> {
    fn sent(&mut self, message: &Value) {
        self.0.borrow_mut().own_traffic().sent(message);
    }

    fn received(&mut self, message: &Value, kind: Kind) {
        self.0.borrow_mut().own_traffic().received(message, kind);
    }
}

/// Bytes in MiB, one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// Wipes `.watch`'s progress line before an event prints, so that the
/// event goes above it (the next answer draws it again).
struct Above<'a, O: Observer> {
    inner: O,
    line: Option<&'a mut StatusLine>,
}

impl<O: Observer> Observer for Above<'_, O> {
    fn sent(&mut self, message: &Value) {
        self.inner.sent(message);
    }

    fn received(&mut self, message: &Value, kind: Kind) {
        if kind == Kind::Event
            && let Some(line) = self.line.as_mut()
        {
            line.wipe();
        }
        self.inner.received(message, kind);
    }

    fn waiting(&mut self) {
        self.inner.waiting();
    }

    fn closed(&self) -> bool {
        self.inner.closed()
    }
}

/// How fast the work goes: bytes a second since the first answer that
/// gave its progress.
#[derive(Default)]
struct Rate {
    first: Option<(Instant, u64)>,
}

impl Rate {
    fn per_second(&mut self, state: &State) -> Option<f64> {
        let done = state.done?;
        let (at, from) = *self.first.get_or_insert((Instant::now(), done));
        let seconds = at.elapsed().as_secs_f64();
        (seconds >= 0.5).then(|| done.saturating_sub(from) as f64 / seconds)
    }
}

/// `.watch`'s line: status, done of total, rate, time left.
fn progress_line(name: &str, state: &State, per_second: Option<f64>) -> String {
    let mut line = format!("{name}: {}", state.status);
    if let (Some(done), Some(total)) = (state.done, state.total.filter(|&t| t > 0)) {
        line.push_str(&format!("  {} of {}  {:>3}%", mib(done), mib(total), crate::ui::render::percent(done, total)));
        if let Some(rate) = per_second.filter(|&r| r > 0.0) {
            let left = total.saturating_sub(done) as f64 / rate;
            line.push_str(&format!("  {}/s  {left:.0} s left", mib(rate as u64)));
        }
    }
    line
}

/// The start of a JSON line about `work`: which work it is.
fn work_line(work: &Work) -> Map<String, Value> {
    let mut line = Map::new();
    match work {
        Work::Job(id) => line.insert("job".into(), Value::from(id.as_str())),
        Work::Migration => line.insert("migration".into(), Value::Bool(true)),
        Work::Dump => line.insert("dump".into(), Value::Bool(true)),
    };
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_says_done_of_total_rate_and_time_left() {
        let state = State { status: "running".into(), done: Some(32 << 20), total: Some(64 << 20) };
        assert_eq!(
            progress_line("job m0", &state, Some(f64::from(16u32 << 20))),
            "job m0: running  32.0 MiB of 64.0 MiB   50%  16.0 MiB/s  2 s left"
        );
        // No rate yet (under half a second), or nothing to measure.
        assert_eq!(progress_line("job m0", &state, None), "job m0: running  32.0 MiB of 64.0 MiB   50%");
        let unknown = State { status: "setup".into(), done: None, total: None };
        assert_eq!(progress_line("migration", &unknown, None), "migration: setup");
    }
}
