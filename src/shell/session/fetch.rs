//! What a session asks QEMU for itself, once and only when a line needs
//! it: the schema, HMP's commands and `info` topics, the version, property
//! types; the questions the REPL's completion asks; and did-you-mean hints
//! after an unknown command or topic, which only that error path pays for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::Session;
use crate::error::Error;
use crate::language::bind::Request;
use crate::language::hmp::{self, HmpCommands};
use crate::language::properties::{Owner, Properties};
use crate::language::schema::{self, Schema};
use crate::language::version::{self, Version};
use crate::qmp::ClientError;

/// Something qmpsh asks the peer for once, when a line first needs it:
/// not fetched yet, fetched, or not offered (qemu-ga has no
/// `query-qmp-schema` and no HMP).
pub(super) enum Fetched<T> {
    NotYet,
    /// Shared with the REPL's completion.
    Loaded(Arc<T>),
    Unavailable,
}

impl<T> Fetched<T> {
    pub(super) fn get(&self) -> Option<&T> {
        match self {
            Fetched::Loaded(value) => Some(value.as_ref()),
            _ => None,
        }
    }

    pub(super) fn shared(&self) -> Option<Arc<T>> {
        match self {
            Fetched::Loaded(value) => Some(Arc::clone(value)),
            _ => None,
        }
    }

    pub(super) fn wanted(&self, needed: bool) -> bool {
        needed && matches!(self, Fetched::NotYet)
    }
}

impl Session {
    /// Fetches the schema once, when a line first needs it.
    pub(super) fn load_schema(&mut self) -> Result<(), Error> {
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
    pub(super) fn load_hmp_commands(&mut self) -> Result<(), Error> {
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
    pub(super) fn load_version(&mut self) -> Result<(), Error> {
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
    pub(super) fn load_properties(&mut self, owner: &Owner) -> Result<(), Error> {
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
    pub(super) fn forget_paths(&mut self, command: &str) {
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

    pub(super) fn ask_message(&mut self, command: &str, request: Map<String, Value>) -> Result<Option<Value>, Error> {
        let deadline = self.deadline();
        let reply = self.monitor.execute(request, deadline, &mut watch!(self, true));
        match reply {
            Ok(reply) => Ok(reply.ok()),
            Err(ClientError::Timeout) => Err(self.timed_out(command)),
            Err(e) => self.connection_lost(e).map(|_| None),
        }
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

    /// A hint for a command QEMU does not know. Only this error path pays
    /// for fetching the schema.
    pub(super) fn did_you_mean(&mut self, command: &str) -> String {
        if self.load_schema().is_err() {
            return String::new();
        }
        let table = crate::language::table::table().iter().flat_map(|e| e.names());
        let known: Vec<&str> = match self.schema() {
            Some(schema) => schema.command_names().chain(table).collect(),
            None => table.collect(),
        };
        schema::suggest(command, known.into_iter()).map(|near| format!(" (did you mean {near}?)")).unwrap_or_default()
    }

    /// A hint for an `info` topic HMP does not know, from the table's and
    /// HMP's own topics (`help info`, asked once). Only this error path
    /// pays for asking.
    pub(super) fn info_topic_hint(&mut self, topic: &str) -> String {
        if matches!(self.info_topics, Fetched::NotYet) && self.in_flight.is_empty() {
            let help = Request::hmp("help info", None).message;
            self.info_topics = match self.ask_message("human-monitor-command", help) {
                Ok(Some(Value::String(text))) => Fetched::Loaded(Arc::new(hmp::info_topics(&text))),
                _ => Fetched::Unavailable,
            };
        }
        let table = crate::language::table::table().iter().filter_map(|e| e.name.strip_prefix("info "));
        let hmp = self.info_topics.get().into_iter().flatten().map(String::as_str);
        schema::suggest(topic, table.chain(hmp))
            .map(|near| format!(" (did you mean `info {near}`?)"))
            .unwrap_or_default()
    }
}
