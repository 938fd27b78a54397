//! A session: logical lines in, through parse and bind, out to the monitor,
//! with replies and events printed as they come. Script mode, `-c` and the
//! REPL all drive this; they differ only in what a failure does.
//!
//! Here: running a line, sending it and showing its reply, and the
//! observer that prints, remembers and counts the traffic. Beside it:
//! `pipeline` (`--pipeline`), `fetch` (what the session asks QEMU for
//! itself), `dot` (the dot commands, `.wait` and the stop sequence).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::Error;
use crate::language::bind::{self, Action, Context, PropertyTypes, Request};
use crate::language::hmp::{self, HmpCommands};
use crate::language::properties::{Owner, Properties};
use crate::language::schema::Schema;
use crate::language::version::Version;
use crate::qmp::{ClientError, Kind, Monitor, Observer, QmpError, Waker};
use crate::target::Target;
use crate::ui::output::Printer;
use crate::visible;

pub use crate::language::line::Flow;

use fetch::Fetched;
use pipeline::InFlight;

/// How lines are read and run.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `-H`: every command line is HMP.
    pub hmp: bool,
    /// `--timeout`: the longest wait for any one reply.
    pub timeout: Option<Duration>,
    /// How long to wait for QEMU to close the socket after `quit`.
    pub quit_grace: Duration,
    /// The VM's guest agent channel, when qmpsh knows it: `.shutdown`
    /// tries `guest-shutdown` first.
    pub agent: Option<Target>,
    /// `--pipeline=N`: keep up to N commands in flight.
    pub pipeline: Option<usize>,
    /// `--keep-going`: with `--pipeline`, a failure read ahead of a line
    /// does not stop that line from running.
    pub keep_going: bool,
}

/// A connected session.
pub struct Session {
    monitor: Monitor,
    pub printer: Printer,
    settings: Settings,
    /// `.cpu N`.
    cpu: Option<i64>,
    schema: Fetched<Schema>,
    /// HMP's command list (its `help`).
    hmp_commands: Fetched<HmpCommands>,
    /// The QEMU's version: from the greeting, else (libvirt sends none)
    /// asked when a line first needs it.
    qemu: Fetched<Version>,
    /// The property types asked of QEMU, by their owner (`None`: it
    /// could not say).
    properties: HashMap<Owner, Option<Properties>>,
    /// HMP's `info` topics, for a hint after an unknown one.
    info_topics: Fetched<Vec<String>>,
    /// `quit` was sent: QEMU closing the connection is now success.
    quitting: bool,
    /// `--pipeline`: commands sent whose replies are still to come, oldest
    /// first (QEMU answers in order).
    in_flight: VecDeque<InFlight>,
    /// `--pipeline`: the first failure among replies read ahead of the
    /// line that reports it.
    deferred: Option<Error>,
    /// Counts the commands sent and the events seen, for the REPL's
    /// completion: what it learnt of the VM's state is old after one.
    changes: Option<Arc<AtomicU64>>,
    /// Events received since the last command was sent, for `.wait` to
    /// find one that came before it started (STOP arrives during `stop`),
    /// and for the shell to see that QEMU said why it went.
    recent: VecDeque<Value>,
}

/// How many events `.wait` can look back on.
const RECENT_EVENTS: usize = 1024;

/// The observer for a session's traffic: the printer (or, for qmpsh's own
/// questions, its log), with every event remembered and counted.
macro_rules! watch {
    ($session:ident) => {
        watch!($session, false)
    };
    ($session:ident, $own:expr) => {
        $crate::shell::session::Watch {
            printer: &mut $session.printer,
            own: $own,
            recent: &mut $session.recent,
            changes: $session.changes.as_deref(),
        }
    };
}

mod dot;
mod fetch;
mod pipeline;
#[cfg(test)]
pub(crate) mod tests;

impl Session {
    pub fn new(monitor: Monitor, printer: Printer, settings: Settings) -> Session {
        let qemu = match monitor.greeting().and_then(Version::of_greeting) {
            Some(version) => Fetched::Loaded(Arc::new(version)),
            None => Fetched::NotYet,
        };
        Session {
            monitor,
            printer,
            settings,
            cpu: None,
            schema: Fetched::NotYet,
            hmp_commands: Fetched::NotYet,
            qemu,
            info_topics: Fetched::NotYet,
            properties: HashMap::new(),
            quitting: false,
            in_flight: VecDeque::new(),
            deferred: None,
            changes: None,
            recent: VecDeque::new(),
        }
    }

    /// `-H`: every line that is not JSON or a `.` command is HMP text.
    pub fn hmp(&self) -> bool {
        self.settings.hmp
    }

    /// Command names the peer listed itself, when it has no schema.
    pub fn command_names(&self) -> Vec<String> {
        self.monitor.command_names()
    }

    /// The monitor's greeting, if it sent one.
    pub fn greeting(&self) -> Option<&Value> {
        self.monitor.greeting()
    }

    /// `QEMU 7.2.22` from the greeting, when there was one.
    pub fn version(&self) -> Option<String> {
        self.greeting().and_then(Version::of_greeting).map(|version| format!("QEMU {version}"))
    }

    /// The live schema, if it has been fetched.
    pub fn schema(&self) -> Option<&Schema> {
        self.schema.get()
    }

    /// Runs one logical line. `Err(Error::CommandFailed)` means QEMU
    /// answered with an error, already printed; whether that stops the
    /// session is the caller's choice.
    pub fn run_line(&mut self, text: &str, line_no: Option<usize>) -> Result<Flow, Error> {
        // With -l, nothing is sent that cannot be logged.
        self.printer.check_log()?;
        // A failure read ahead (--pipeline) stops the script before this
        // line is sent.
        self.stop_at_failure()?;
        let parsed = bind::parse_located(text, line_no, self.settings.hmp)?;
        // Only a line that needs the schema is bound with it, so a line
        // means the same whatever ran before it (and in `--dry-run`).
        let needs_schema = bind::needs_schema(&parsed);
        let needs_hmp = bind::needs_hmp_commands(&parsed);
        let needs_version = bind::needs_version(&parsed);
        let owner = bind::properties_owner(&parsed);
        let needs_properties = owner.as_ref().is_some_and(|owner| !self.properties.contains_key(owner));
        if self.schema.wanted(needs_schema)
            || self.hmp_commands.wanted(needs_hmp)
            || self.qemu.wanted(needs_version)
            || needs_properties
        {
            self.settle()?; // what qmpsh asks must not take another command's reply
        }
        if let Some(owner) = &owner {
            self.load_properties(owner)?;
        }
        if needs_schema {
            self.load_schema()?;
        }
        if needs_hmp {
            self.load_hmp_commands()?;
        }
        if needs_version {
            self.load_version()?;
        }
        let context = Context {
            hmp: self.settings.hmp,
            cpu: self.cpu,
            schema: self.schema.get().filter(|_| needs_schema),
            hmp_commands: self.hmp_commands.get().filter(|_| needs_hmp),
            qemu: self.qemu.get().copied().filter(|_| needs_version),
            properties: match owner.as_ref().and_then(|owner| self.properties.get(owner)) {
                Some(Some(properties)) => PropertyTypes::Known(properties),
                _ => PropertyTypes::Unknown,
            },
        };
        let action = bind::bind_located(&parsed, text, line_no, &context)?;
        if let Action::Send(request) = &action {
            self.forget_paths(request.command());
        }
        let flow = match action {
            Action::Send(request) if self.settings.pipeline.is_some() && !request.quits() => {
                self.send_ahead(request, line_no)
            }
            // Anything else depends on the replies so far: the window drains.
            other => self.settle().and_then(|()| self.act(other, line_no)),
        };
        self.printer.check()?;
        match self.deferred.take() {
            Some(failure) => Err(failure),
            None => flow,
        }
    }

    /// At the prompt: prints events as they come until `waker` is called.
    /// `Flow::Exit` when QEMU went away after our `quit`.
    pub fn idle(&mut self) -> Result<Flow, Error> {
        // Whoever reads our output sees it all before qmpsh waits for more.
        self.printer.flush();
        // Replies in flight come first: waiting for a wake-up would pass
        // over them.
        if !self.in_flight.is_empty() {
            self.complete_oldest()?;
            return Ok(Flow::Continue);
        }
        match self.monitor.wait_wake(&mut watch!(self)) {
            Ok(()) | Err(ClientError::Interrupted) => Ok(Flow::Continue),
            Err(ClientError::Closed) if self.monitor.ended_by().is_some() => {
                let command = self.monitor.ended_by().unwrap_or_default();
                self.printer.problem(&format!("qmpsh: the guest agent's channel closed after {command}"));
                Ok(Flow::Exit)
            }
            Err(ClientError::Closed) if !self.quitting => match self.seen_event("SHUTDOWN") {
                // QEMU announced its end and went: say so and leave.
                Some(shutdown) => {
                    let reason = shutdown.get("data").and_then(|d| d.get("reason")).and_then(Value::as_str);
                    let said = format!("qmpsh: QEMU shut down ({})", visible::line(reason.unwrap_or("shutdown")));
                    self.printer.problem(&said);
                    Ok(Flow::Exit)
                }
                None => self.connection_lost(ClientError::Closed),
            },
            Err(e) => self.connection_lost(e),
        }
    }

    /// From now on, counts in `counter` every command sent and every event
    /// seen (the REPL's completion cache).
    pub fn count_changes(&mut self, counter: Arc<AtomicU64>) {
        self.changes = Some(counter);
    }

    /// Ends the session, for what its printer kept (`--table`); the
    /// connection closes.
    pub fn into_printer(self) -> Printer {
        self.printer
    }

    /// Ends an [`Session::idle`] from another thread.
    pub fn waker(&self) -> Waker {
        self.monitor.waker()
    }

    fn act(&mut self, action: Action, line_no: Option<usize>) -> Result<Flow, Error> {
        match action {
            Action::Nothing => Ok(Flow::Continue),
            Action::Send(request) => self.send(request, line_no),
            Action::Dot(command) => self.run_dot(command),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.settings.timeout.map(|t| Instant::now() + t)
    }

    fn timed_out(&self, command: &str) -> Error {
        let waited = self.settings.timeout.unwrap_or_default().as_secs_f64();
        Error::Timeout(format!("no reply to {command} within {waited} s"))
    }

    fn send(&mut self, request: Request, line_no: Option<usize>) -> Result<Flow, Error> {
        if request.quits() {
            self.quitting = true;
        }
        self.recent.clear();
        match self.post(request, line_no) {
            Ok(pending) => self.finish(pending),
            Err(e) => self.connection_lost(e),
        }
    }

    fn post(&mut self, request: Request, line_no: Option<usize>) -> Result<InFlight, ClientError> {
        let command = request.command().to_string();
        let hmp_line = request.hmp_line().map(str::to_string);
        let (text_reply, table) = (request.text_reply, request.table);
        // Only the prompt watches the work a command starts.
        let starts = self.printer.at_prompt().then(|| crate::qemu::work::started_by(&request.message)).flatten();
        let ticket = self.monitor.post(request.message, &mut watch!(self))?;
        Ok(InFlight { ticket, line_no, command, hmp_line, text_reply, table, starts })
    }

    /// Waits for `pending`'s reply and shows it.
    fn finish(&mut self, pending: InFlight) -> Result<Flow, Error> {
        let deadline = self.deadline();
        match self.monitor.await_reply(pending.ticket, deadline, &mut watch!(self)) {
            Ok(Ok(Value::String(text)))
                if pending.hmp_line.as_deref().is_some_and(|line| hmp::is_failure(line, &text)) =>
            {
                // HMP reports failure as text; a script must still see a failure.
                let message = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
                let mut message = message.strip_prefix("Error: ").unwrap_or(&message).to_string();
                if let Some(topic) = pending.hmp_line.as_deref().and_then(unknown_info_topic(&message)) {
                    message.push_str(&self.info_topic_hint(topic));
                }
                self.printer.qmp_error(&QmpError { class: "HMP".into(), desc: message }, pending.line_no);
                Err(Error::CommandFailed)
            }
            Ok(Ok(value)) => {
                let shown = self.printer.keep(pending.line_no, Ok((&value, pending.text_reply)))
                    || (pending.table && self.printer.table(&pending.command, &value));
                if !shown {
                    self.printer.reply(&value, pending.text_reply);
                }
                if self.quitting {
                    self.await_close();
                    return Ok(Flow::Exit);
                }
                // At the prompt, work a command starts is watched at once
                // (Ctrl-C stops watching it, as with .watch).
                match pending.starts {
                    Some(work) if self.printer.at_prompt() && self.in_flight.is_empty() => {
                        self.watch_work(Some(work), None)
                    }
                    _ => Ok(Flow::Continue),
                }
            }
            Ok(Err(mut error)) => {
                // The hint asks QEMU for its schema: not while replies are in flight.
                if error.class == "CommandNotFound" && self.in_flight.is_empty() {
                    error.desc.push_str(&self.did_you_mean(&pending.command));
                }
                self.printer.qmp_error(&error, pending.line_no);
                Err(Error::CommandFailed)
            }
            Err(ClientError::Timeout) => Err(self.timed_out(&pending.command)),
            Err(e) => self.connection_lost(e),
        }
    }

    /// After `quit`: wait (briefly) for QEMU to close the socket, so that
    /// when qmpsh exits, QEMU is gone too.
    fn await_close(&mut self) {
        let deadline = Some(Instant::now() + self.settings.quit_grace);
        let _ = self.monitor.wait_event(deadline, &mut watch!(self), &mut |_| false);
    }

    fn connection_lost(&mut self, error: ClientError) -> Result<Flow, Error> {
        match error {
            ClientError::Closed if self.quitting => Ok(Flow::Exit),
            // Only a write times out here (a wait for a reply says which).
            ClientError::Timeout => Err(Error::Timeout(format!(
                "QEMU took no more of the command within {} s: it has stopped reading its monitor",
                self.settings.timeout.unwrap_or_default().as_secs_f64()
            ))),
            other => Err(other.into()),
        }
    }
}

struct Watch<'a> {
    printer: &'a mut Printer,
    /// qmpsh's own question: its traffic is logged, not shown.
    own: bool,
    recent: &'a mut VecDeque<Value>,
    changes: Option<&'a AtomicU64>,
}

impl Watch<'_> {
    fn count_change(&self) {
        if let Some(changes) = self.changes {
            changes.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Observer for Watch<'_> {
    fn sent(&mut self, message: &Value) {
        if self.own {
            self.printer.own_traffic().sent(message);
        } else {
            self.count_change();
            self.printer.sent(message);
        }
    }

    fn received(&mut self, message: &Value, kind: Kind) {
        if kind == Kind::Event {
            self.count_change();
            if self.recent.len() == RECENT_EVENTS {
                self.recent.pop_front();
            }
            self.recent.push_back(message.clone());
        }
        if self.own { self.printer.own_traffic().received(message, kind) } else { self.printer.received(message, kind) }
    }

    fn waiting(&mut self) {
        self.printer.waiting();
    }

    fn closed(&self) -> bool {
        self.printer.output_closed()
    }
}

/// The topic of `info TOPIC`, for an HMP failure `message` saying HMP has
/// no such command.
fn unknown_info_topic(message: &str) -> impl Fn(&str) -> Option<&str> + '_ {
    move |line: &str| {
        let topic = line.strip_prefix("info ")?.split_whitespace().next()?;
        message.starts_with("unknown command: 'info ").then_some(topic)
    }
}
