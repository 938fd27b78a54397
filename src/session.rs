//! A session: logical lines in, through parse and bind, out to the monitor,
//! with replies and events printed as they come. Script mode, `-c` and the
//! REPL all drive this; they differ only in what a failure does.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::bind::{self, Action, Context, DotCommand, PropertyTypes, Request};
use crate::bounds;
use crate::error::Error;
use crate::help;
use crate::hmp::{self, HmpCommands};
use crate::line::{self, Assembler, Line, ParseError};
use crate::output::Printer;
use crate::properties::{Owner, Properties};
use crate::qmp::{ClientError, Kind, Monitor, Observer, QmpError, Waker};
use crate::schema::{self, Schema};
use crate::target::Target;
use crate::version::{self, Recorded, Version};
use crate::visible;
use crate::vm::{Process, stop};

/// Whether to go on after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `.exit`, or QEMU went away after our `quit`.
    Exit,
}

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

/// A command sent and not yet answered (`--pipeline`), with what is needed
/// to show its reply.
struct InFlight {
    ticket: u64,
    line_no: Option<usize>,
    command: String,
    hmp_line: Option<String>,
    text_reply: bool,
}

/// Something qmpsh asks the peer for once, when a line first needs it:
/// not fetched yet, fetched, or not offered (qemu-ga has no
/// `query-qmp-schema` and no HMP).
enum Fetched<T> {
    NotYet,
    /// Shared with the REPL's completion.
    Loaded(Arc<T>),
    Unavailable,
}

impl<T> Fetched<T> {
    fn get(&self) -> Option<&T> {
        match self {
            Fetched::Loaded(value) => Some(value.as_ref()),
            _ => None,
        }
    }

    fn shared(&self) -> Option<Arc<T>> {
        match self {
            Fetched::Loaded(value) => Some(Arc::clone(value)),
            _ => None,
        }
    }

    fn wanted(&self, needed: bool) -> bool {
        needed && matches!(self, Fetched::NotYet)
    }
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
        Watch {
            printer: &mut $session.printer,
            own: $own,
            recent: &mut $session.recent,
            changes: $session.changes.as_deref(),
        }
    };
}

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
        // line is sent, unless it goes on past failures.
        if !self.settings.keep_going
            && let Some(failure) = self.deferred.take()
        {
            return Err(failure);
        }
        let parsed = parse(text, line_no, self.settings.hmp)?;
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
        let action = bind_line(&parsed, text, line_no, &context)?;
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

    /// `--pipeline`: sends `request` without waiting, and reads the oldest
    /// reply once the window is full.
    fn send_ahead(&mut self, request: Request, line_no: Option<usize>) -> Result<Flow, Error> {
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
    fn complete_oldest(&mut self) -> Result<(), Error> {
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
    fn settle(&mut self) -> Result<(), Error> {
        self.complete_all()?;
        match self.deferred.take() {
            Some(failure) if !self.settings.keep_going => Err(failure),
            kept => {
                self.deferred = kept;
                Ok(())
            }
        }
    }

    /// Reads every reply still in flight (`--pipeline`), in order.
    pub fn drain(&mut self) -> Result<(), Error> {
        self.complete_all()?;
        self.deferred.take().map_or(Ok(()), Err)
    }

    fn complete_all(&mut self) -> Result<(), Error> {
        while !self.in_flight.is_empty() {
            self.complete_oldest()?;
        }
        Ok(())
    }

    /// Fetches the schema once, when a line first needs it.
    fn load_schema(&mut self) -> Result<(), Error> {
        if matches!(self.schema, Fetched::NotYet) {
            self.schema = match self.ask("query-qmp-schema")? {
                Some(value) => {
                    Schema::from_return(value).map_or(Fetched::Unavailable, |schema| Fetched::Loaded(Arc::new(schema)))
                }
                None => Fetched::Unavailable,
            };
        }
        Ok(())
    }

    /// Fetches HMP's command list once, from its `help`.
    fn load_hmp_commands(&mut self) -> Result<(), Error> {
        if matches!(self.hmp_commands, Fetched::NotYet) {
            let help = Request::hmp("help", None).message;
            self.hmp_commands = match self.ask_message("human-monitor-command", help)? {
                Some(Value::String(text)) => Fetched::Loaded(Arc::new(HmpCommands::parse(&text))),
                _ => Fetched::Unavailable,
            };
        }
        Ok(())
    }

    /// Asks the QEMU's version once, when a line first needs it and the
    /// greeting did not say (libvirt).
    fn load_version(&mut self) -> Result<(), Error> {
        if matches!(self.qemu, Fetched::NotYet) {
            let reply = self.ask("query-version")?;
            self.qemu = match reply.as_ref().and_then(|r| r.get("qemu")).and_then(Version::from_json) {
                Some(version) => Fetched::Loaded(Arc::new(version)),
                None => Fetched::Unavailable,
            };
        }
        Ok(())
    }

    /// Asks QEMU the types of `owner`'s properties once per connection:
    /// `None` when it cannot say (an unknown device type or path).
    /// A device type's come from the record when this QEMU is the very
    /// build recorded: asking is not free of risk (a QEMU 7.2 without its
    /// GL module package aborts when asked about `virtio-vga-gl`, which the
    /// record therefore lacks, and which is then read as text).
    fn load_properties(&mut self, owner: &Owner) -> Result<(), Error> {
        if self.properties.contains_key(owner) {
            return Ok(());
        }
        let recorded = self.greeting().and_then(version::recorded_build);
        let properties = match (owner, recorded) {
            (Owner::Device(name), Some(build)) => build.device(name).cloned(),
            _ => {
                let (command, question) = owner.question();
                let answer = self.ask_message(command, question)?;
                answer.as_ref().and_then(Properties::from_list)
            }
        };
        // A path QEMU did not know may be made next: asked again then.
        if properties.is_some() || matches!(owner, Owner::Device(_)) {
            self.properties.insert(owner.clone(), properties);
        }
        Ok(())
    }

    /// After a command that may change what objects there are, or their
    /// types, what qmpsh learnt of paths is old.
    fn forget_paths(&mut self, command: &str) {
        const CHANGE_OBJECTS: &[&str] =
            &["device_add", "device_del", "object-add", "object-del", "human-monitor-command"];
        if CHANGE_OBJECTS.contains(&command) {
            self.properties.retain(|owner, _| !matches!(owner, Owner::Object(_)));
        }
    }

    /// The QEMU's version for the REPL's completion, asked now if need be.
    pub fn qemu_version(&mut self) -> Result<Option<Version>, Error> {
        self.load_version()?;
        Ok(self.qemu.get().copied())
    }

    /// HMP's command list for the REPL's completion, fetched now if need be.
    pub fn shared_hmp_commands(&mut self) -> Result<Option<Arc<HmpCommands>>, Error> {
        self.load_hmp_commands()?;
        Ok(self.hmp_commands.shared())
    }

    /// The schema for the REPL's completion, fetched now if need be.
    pub fn shared_schema(&mut self) -> Result<Option<Arc<Schema>>, Error> {
        self.load_schema()?;
        Ok(self.schema.shared())
    }

    /// Asks QEMU something for qmpsh itself: the reply is logged but not
    /// printed. `None` when QEMU answers with an error.
    pub fn ask(&mut self, command: &str) -> Result<Option<Value>, Error> {
        self.ask_message(command, crate::qmp::command(command))
    }

    fn ask_message(&mut self, command: &str, request: Map<String, Value>) -> Result<Option<Value>, Error> {
        let deadline = self.deadline();
        let reply = self.monitor.execute(request, deadline, &mut watch!(self, true));
        match reply {
            Ok(reply) => Ok(reply.ok()),
            Err(ClientError::Timeout) => Err(self.timed_out(command)),
            Err(e) => self.connection_lost(e).map(|_| None),
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

    /// The last event named `name` since the last command was sent.
    fn seen_event(&self, name: &str) -> Option<&Value> {
        self.recent.iter().rev().find(|event| event.get("event").and_then(Value::as_str) == Some(name))
    }

    /// Takes the first remembered event that `wanted` accepts, with those
    /// before it.
    fn take_event(&mut self, wanted: &mut dyn FnMut(&Value) -> bool) -> Option<Value> {
        let at = self.recent.iter().position(wanted)?;
        self.recent.drain(..=at).next_back()
    }

    /// From now on, counts in `counter` every command sent and every event
    /// seen (the REPL's completion cache).
    pub fn count_changes(&mut self, counter: Arc<AtomicU64>) {
        self.changes = Some(counter);
    }

    /// Asks QEMU something for completion: the reply, or `None` when QEMU
    /// answers with an error or not within `limit` (a late reply is passed
    /// over when it comes).
    pub fn look(&mut self, message: Map<String, Value>, limit: Duration) -> Result<Option<Value>, Error> {
        let deadline = Some(Instant::now() + limit);
        let reply = self.monitor.execute(message, deadline, &mut watch!(self, true));
        match reply {
            Ok(reply) => Ok(reply.ok()),
            Err(ClientError::Timeout) => Ok(None),
            Err(e) => self.connection_lost(e).map(|_| None),
        }
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
        let text_reply = request.text_reply;
        let ticket = self.monitor.post(request.message, &mut watch!(self))?;
        Ok(InFlight { ticket, line_no, command, hmp_line, text_reply })
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
                self.printer.reply(&value, pending.text_reply);
                if self.quitting {
                    self.await_close();
                    return Ok(Flow::Exit);
                }
                Ok(Flow::Continue)
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

    /// A hint for a command QEMU does not know. Only this error path pays
    /// for fetching the schema.
    fn did_you_mean(&mut self, command: &str) -> String {
        if self.load_schema().is_err() {
            return String::new();
        }
        let table = crate::table::table().iter().flat_map(|e| e.names());
        let known: Vec<&str> = match self.schema() {
            Some(schema) => schema.command_names().chain(table).collect(),
            None => table.collect(),
        };
        schema::suggest(command, known.into_iter()).map(|near| format!(" (did you mean {near}?)")).unwrap_or_default()
    }

    /// A hint for an `info` topic HMP does not know, from the table's and
    /// HMP's own topics (`help info`, asked once). Only this error path
    /// pays for asking.
    fn info_topic_hint(&mut self, topic: &str) -> String {
        if matches!(self.info_topics, Fetched::NotYet) && self.in_flight.is_empty() {
            let help = Request::hmp("help info", None).message;
            self.info_topics = match self.ask_message("human-monitor-command", help) {
                Ok(Some(Value::String(text))) => Fetched::Loaded(Arc::new(hmp::info_topics(&text))),
                _ => Fetched::Unavailable,
            };
        }
        let table = crate::table::table().iter().filter_map(|e| e.name.strip_prefix("info "));
        let hmp = self.info_topics.get().into_iter().flatten().map(String::as_str);
        schema::suggest(topic, table.chain(hmp))
            .map(|near| format!(" (did you mean `info {near}`?)"))
            .unwrap_or_default()
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
            ClientError::Interrupted => Err(Error::Interrupted),
            ClientError::OutputClosed => Err(Error::BrokenPipe),
            // Only a write times out here (a wait for a reply says which).
            ClientError::Timeout => Err(Error::Timeout(format!(
                "QEMU took no more of the command within {} s: it has stopped reading its monitor",
                self.settings.timeout.unwrap_or_default().as_secs_f64()
            ))),
            other => Err(Error::Connection(other.to_string())),
        }
    }

    /// `.shutdown`: the stop sequence on the connected VM.
    fn shutdown(&mut self, timeout: Duration, kill: bool) -> Result<Flow, Error> {
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

    /// `.schema CMD`: a command's arguments, from the live schema.
    fn describe(&self, command: &str) -> Result<String, Error> {
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
    fn wait_for(&mut self, event: &str, timeout: Option<Duration>, fields: &Map<String, Value>) -> Result<Flow, Error> {
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

    fn run_dot(&mut self, command: DotCommand) -> Result<Flow, Error> {
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
        }
        Ok(Flow::Continue)
    }
}

/// A parse or bind error, placed for a person: line and column.
fn locate(text: &str, line_no: Option<usize>, error: ParseError) -> Error {
    let (lines_after, column) = line::position(text, error.offset);
    Error::Parse { line: line_no.map(|n| n + lines_after), column: Some(column), message: error.message }
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

/// Parses a line. With `-H`, a line that is not a comment, a `.` command
/// or raw JSON is HMP text as typed: the grammar never sees it.
fn parse(text: &str, line_no: Option<usize>, hmp: bool) -> Result<Line, Error> {
    let refuse = |message: String| Err(Error::Parse { line: line_no, column: None, message });
    if text.len() > bounds::MAX_LINE {
        return refuse(format!("the line is over {} MiB; qmpsh takes no longer lines", bounds::MAX_LINE >> 20));
    }
    if bounds::too_many_values(text.as_bytes()) {
        return refuse(bounds::values_refused("the line holds", bounds::MAX_VALUES));
    }
    let trimmed = text.trim();
    if hmp && !trimmed.is_empty() && !trimmed.starts_with(['.', '{', '#']) {
        return Ok(Line::Hmp(trimmed.to_string()));
    }
    line::parse_line(text).map_err(|e| locate(text, line_no, e))
}

fn bind_line(parsed: &Line, text: &str, line_no: Option<usize>, context: &Context) -> Result<Action, Error> {
    bind::bind(parsed, text, context).map_err(|e| locate(text, line_no, e))
}

/// The topic of `info TOPIC`, for an HMP failure `message` saying HMP has
/// no such command.
fn unknown_info_topic(message: &str) -> impl Fn(&str) -> Option<&str> + '_ {
    move |line: &str| {
        let topic = line.strip_prefix("info ")?.split_whitespace().next()?;
        message.starts_with("unknown command: 'info ").then_some(topic)
    }
}

/// What `--dry-run` binds by in place of a connected QEMU.
#[derive(Debug, Clone, Copy)]
pub struct Offline<'s> {
    /// The recorded QEMU (`--qemu`, else the newest): its HMP commands,
    /// and its schema unless `schema` is given.
    pub recorded: &'static Recorded,
    /// `--schema FILE`.
    pub schema: Option<&'s Schema>,
    /// The version whose table commands and arguments are checked: the
    /// recorded one's, or none for `--schema FILE` without `--qemu`.
    pub qemu: Option<Version>,
}

impl<'s> Offline<'s> {
    /// The newest recorded QEMU.
    pub fn newest() -> Offline<'static> {
        let recorded = version::newest();
        Offline { recorded, schema: None, qemu: Some(recorded.version) }
    }

    fn schema(&self) -> &'s Schema {
        self.schema.unwrap_or_else(|| self.recorded.schema())
    }
}

/// Parses and binds one logical line without a connection (`--dry-run`),
/// giving binding the schema when the line needs it, as a session does
/// (and only then reading it: a recorded one is 200 KB of JSON).
pub fn translate(
    text: &str,
    line_no: Option<usize>,
    hmp: bool,
    cpu: Option<i64>,
    offline: &Offline,
) -> Result<Action, Error> {
    let parsed = parse(text, line_no, hmp)?;
    let context = Context {
        hmp,
        cpu,
        schema: bind::needs_schema(&parsed).then(|| offline.schema()),
        hmp_commands: bind::needs_hmp_commands(&parsed).then(|| offline.recorded.hmp_commands()),
        qemu: offline.qemu.filter(|_| bind::needs_version(&parsed)),
        properties: match bind::properties_owner(&parsed) {
            Some(Owner::Device(name)) => {
                offline.recorded.device(&name).map_or(PropertyTypes::Offline, PropertyTypes::Known)
            }
            Some(Owner::Object(_)) => PropertyTypes::Offline,
            None => PropertyTypes::Unknown,
        },
    };
    bind_line(&parsed, text, line_no, &context)
}

/// Where a script's lines come from: `-c` arguments or a stream such as
/// stdin.
pub enum Source {
    Commands(Vec<String>),
    Stream(BufReader<Box<dyn Read + Send>>),
}

/// The next physical line of `reader` (number `number`), without its
/// newline; `None` at the end.
/// A line longer than [`bounds::MAX_LINE`] is refused as unreadable (its
/// rest is read past, in pieces), not kept growing.
pub fn read_physical(reader: &mut dyn BufRead, number: usize) -> Result<Option<String>, Error> {
    let failed = |e: io::Error| Error::Io(format!("cannot read input: {e}"));
    let mut raw = Vec::new();
    let n = (&mut *reader).take(bounds::MAX_LINE as u64 + 1).read_until(b'\n', &mut raw).map_err(failed)?;
    if n == 0 {
        return Ok(None);
    }
    if raw.last() == Some(&b'\n') {
        raw.pop();
    } else if raw.len() > bounds::MAX_LINE {
        drop(raw);
        skip_line(reader).map_err(failed)?;
        let message = format!("the line is over {} MiB; qmpsh takes no longer lines", bounds::MAX_LINE >> 20);
        return Err(Error::Parse { line: Some(number), column: None, message });
    }
    String::from_utf8(raw).map(Some).map_err(|e| Error::Parse {
        line: Some(number),
        column: None,
        message: format!("not valid UTF-8 (byte {})", e.utf8_error().valid_up_to() + 1),
    })
}

/// Reads past the rest of a line, a buffer at a time.
fn skip_line(reader: &mut dyn BufRead) -> io::Result<()> {
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(());
            }
            None => {
                let all = buffer.len();
                reader.consume(all);
            }
        }
    }
}

/// One logical line for [`assemble`]'s caller: its text and the number of
/// its first physical line, or why it could not be read (not UTF-8).
pub type Logical<'a> = Result<(&'a str, usize), Error>;

/// Joins the physical lines `next` supplies into logical lines and hands
/// each to `each` with its first physical line's number, until `next` runs
/// out or `each` says to stop. A physical line that cannot be read is
/// handed over as its error, with the logical line it broke; `each` decides
/// whether to go on. `state` is lent to both in turn.
pub fn assemble<S: ?Sized>(
    state: &mut S,
    hmp: bool,
    mut next: impl FnMut(&mut S) -> Result<Option<String>, Error>,
    mut each: impl FnMut(&mut S, Logical) -> Result<Flow, Error>,
) -> Result<(), Error> {
    let mut assembler = if hmp { Assembler::for_hmp() } else { Assembler::new() };
    loop {
        let logical = match next(state) {
            Ok(Some(physical)) => match assembler.push(&physical) {
                Some((text, start)) => each(state, Ok((&text, start)))?,
                None => Flow::Continue,
            },
            Ok(None) => break,
            Err(unreadable @ Error::Parse { .. }) => {
                assembler.skip_unreadable();
                each(state, Err(unreadable))?
            }
            Err(other) => return Err(other),
        };
        if logical == Flow::Exit {
            return Ok(());
        }
    }
    finish(&mut assembler, state, &mut each).map(|_| ())
}

/// The end of one unit of input (the stream, or one `-c`): what is pending
/// is a line, and a `\` that continued into the end is refused, as an
/// open `{` is.
fn finish<S: ?Sized>(
    assembler: &mut Assembler,
    state: &mut S,
    each: &mut impl FnMut(&mut S, Logical) -> Result<Flow, Error>,
) -> Result<Flow, Error> {
    if let Some(start) = assembler.dangling() {
        assembler.finish();
        let message = "expected a line after the `\\` that continues this one, not the end of the input".to_string();
        return each(state, Err(Error::Parse { line: Some(start), column: None, message }));
    }
    match assembler.finish() {
        Some((text, start)) => each(state, Ok((&text, start))),
        None => Ok(Flow::Continue),
    }
}

/// Feeds every logical line of `input` to `each` (see [`assemble`]), until
/// `each` says to stop or fails.
/// With `hmp` (`-H`), HMP text lines continue only after a `\`.
pub fn for_each_line(
    input: Source,
    hmp: bool,
    mut each: impl FnMut(Logical) -> Result<Flow, Error>,
) -> Result<(), Error> {
    let mut each = |_: &mut (), line: Logical| each(line);
    match input {
        Source::Commands(commands) => {
            // Each `-c` is whole: a `\` or an open `{` never reaches into
            // the next one.
            let mut assembler = if hmp { Assembler::for_hmp() } else { Assembler::new() };
            for command in &commands {
                for physical in command.split('\n') {
                    if let Some((text, start)) = assembler.push(physical)
                        && each(&mut (), Ok((&text, start)))? == Flow::Exit
                    {
                        return Ok(());
                    }
                }
                if finish(&mut assembler, &mut (), &mut each)? == Flow::Exit {
                    return Ok(());
                }
            }
            Ok(())
        }
        Source::Stream(mut reader) => {
            let mut number = 0;
            let next = |_: &mut ()| {
                number += 1;
                read_physical(&mut reader, number)
            };
            assemble(&mut (), hmp, next, &mut each)
        }
    }
}
