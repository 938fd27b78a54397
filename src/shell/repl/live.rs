//! What the VM has right now, for completion: QOM paths and properties,
//! device and object types and their properties, and the ids of devices,
//! block nodes, chardevs, netdevs, objects, jobs, snapshots and CPUs.
//!
//! The line editor's thread asks (a [`Fetcher`]); the session's thread,
//! which owns the connection, fetches between lines and while it waits for
//! one (a [`Server`]). A Tab waits at most [`PATIENCE`] for an answer and
//! otherwise offers what it has, so a slow or stopped QEMU never freezes
//! typing. Answers are kept for the connection: those that list what QEMU
//! has (types and their properties) for good, those that list the VM's
//! current state until the next event or command.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::error::Error;
use crate::qmp::{Waker, command};
use crate::shell::session::Session;

/// The longest a Tab waits for QEMU before offering what it has.
pub const PATIENCE: Duration = Duration::from_millis(100);

/// The longest the session waits for one answer (a stopped QEMU gives
/// none); a line typed meanwhile waits that long at most.
const FETCH_LIMIT: Duration = Duration::from_secs(1);

/// A kind of value an argument takes that only the running VM knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A QOM path, completed one level at a time.
    QomPath,
    /// A property of the QOM path given on the same line.
    QomProperty,
    DeviceType,
    ObjectType,
    /// A device's id (`/machine/peripheral`).
    Device,
    BlockNode,
    /// A block backend's name or its device's id.
    BlockDevice,
    Chardev,
    Netdev,
    /// A user-created object's id (`/objects`).
    Object,
    Job,
    MigrationCapability,
    MigrationParameter,
    Snapshot,
    Cpu,
}

/// Which arguments take which kind, for one command: `(command, argument,
/// kind)`, with the QMP name of a table command and HMP's for a command
/// only HMP has. This comes first; [`BY_ARGUMENT`] covers the rest.
const BY_COMMAND: &[(&str, &str, Kind)] = &[
    ("device_add", "driver", Kind::DeviceType),
    ("device_del", "id", Kind::Device),
    ("object-add", "qom-type", Kind::ObjectType),
    ("object-del", "id", Kind::Object),
    ("object_del", "id", Kind::Object),
    ("chardev-remove", "id", Kind::Chardev),
    ("chardev-change", "id", Kind::Chardev),
    ("chardev-send-break", "id", Kind::Chardev),
    ("ringbuf-read", "device", Kind::Chardev),
    ("ringbuf-write", "device", Kind::Chardev),
    ("ringbuf_read", "device", Kind::Chardev),
    ("ringbuf_write", "device", Kind::Chardev),
    ("netdev_del", "id", Kind::Netdev),
    ("set_link", "name", Kind::Netdev),
    ("block-job-cancel", "device", Kind::Job),
    ("block-job-complete", "device", Kind::Job),
    ("block-job-pause", "device", Kind::Job),
    ("block-job-resume", "device", Kind::Job),
    ("block-job-set-speed", "device", Kind::Job),
    ("block-job-dismiss", "id", Kind::Job),
    ("block-job-finalize", "id", Kind::Job),
    ("block_job_cancel", "device", Kind::Job),
    ("block_job_complete", "device", Kind::Job),
    ("block_job_pause", "device", Kind::Job),
    ("block_job_resume", "device", Kind::Job),
    ("job-cancel", "id", Kind::Job),
    ("job-pause", "id", Kind::Job),
    ("job-resume", "id", Kind::Job),
    ("job-complete", "id", Kind::Job),
    ("job-dismiss", "id", Kind::Job),
    ("job-finalize", "id", Kind::Job),
    ("loadvm", "tag", Kind::Snapshot),
    ("delvm", "tag", Kind::Snapshot),
    ("migrate_set_capability", "capability", Kind::MigrationCapability),
    ("migrate_set_parameter", "parameter", Kind::MigrationParameter),
    ("cpu", "index", Kind::Cpu),
];

/// Which arguments take which kind, by the argument's name alone.
const BY_ARGUMENT: &[(&str, Kind)] = &[
    ("path", Kind::QomPath),
    ("property", Kind::QomProperty),
    ("node-name", Kind::BlockNode),
    ("node", Kind::BlockNode),
    ("device", Kind::BlockDevice),
    ("chardev", Kind::Chardev),
    ("netdev", Kind::Netdev),
    ("iothread", Kind::Object),
    ("memdev", Kind::Object),
];

/// The kind of value argument `argument` of `command` takes, if only the
/// running VM knows its values.
pub fn kind_of(command: &str, argument: &str) -> Option<Kind> {
    let specific = BY_COMMAND.iter().find(|(c, a, _)| *c == command && *a == argument).map(|(_, _, k)| *k);
    specific.or_else(|| BY_ARGUMENT.iter().find(|(a, _)| *a == argument).map(|(_, k)| *k))
}

/// One question for QEMU.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Fetch {
    QomList(String),
    /// `qom-list-types` of what implements this, not abstract.
    Types(&'static str),
    DeviceProperties(String),
    ObjectProperties(String),
    /// A query without arguments.
    Query(&'static str),
    /// HMP's `info network`: QMP lists no netdevs.
    Networks,
}

impl Fetch {
    fn message(&self) -> Map<String, Value> {
        let (name, arguments) = match self {
            Fetch::QomList(path) => ("qom-list", vec![("path", Value::from(path.as_str()))]),
            Fetch::Types(implements) => {
                ("qom-list-types", vec![("implements", Value::from(*implements)), ("abstract", Value::Bool(false))])
            }
            Fetch::DeviceProperties(ty) => ("device-list-properties", vec![("typename", Value::from(ty.as_str()))]),
            Fetch::ObjectProperties(ty) => ("qom-list-properties", vec![("typename", Value::from(ty.as_str()))]),
            Fetch::Query(query) => (*query, Vec::new()),
            Fetch::Networks => ("human-monitor-command", vec![("command-line", Value::from("info network"))]),
        };
        let mut message = command(name);
        if !arguments.is_empty() {
            let arguments = arguments.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            message.insert("arguments".into(), Value::Object(arguments));
        }
        message
    }

    /// Whether the answer lists what this QEMU has, which no event changes.
    fn lasts(&self) -> bool {
        matches!(self, Fetch::Types(_) | Fetch::DeviceProperties(_) | Fetch::ObjectProperties(_))
    }
}

/// A value to offer, with what the hint shows of it (its type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    pub detail: String,
}

impl Item {
    fn new(name: impl Into<String>, detail: impl Into<String>) -> Item {
        Item { name: name.into(), detail: detail.into() }
    }
}

/// Answers, shared by both threads.
struct Cache {
    state: Mutex<State>,
    arrived: Condvar,
    /// Counts events and commands: an answer about the VM's state is
    /// current while this has not moved since it was asked.
    changes: Arc<AtomicU64>,
}

#[derive(Default)]
struct State {
    /// Each answer with the count of changes when it was asked.
    answers: HashMap<Fetch, (Value, u64)>,
    /// Asked and not answered yet.
    asked: HashSet<Fetch>,
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current(&self, state: &State, fetch: &Fetch) -> Option<Value> {
        let now = self.changes.load(Ordering::SeqCst);
        let (value, asked_at) = state.answers.get(fetch)?;
        (fetch.lasts() || *asked_at == now).then(|| value.clone())
    }
}

/// The line editor's side: asks, and waits a moment.
#[derive(Clone)]
pub struct Fetcher {
    cache: Arc<Cache>,
    requests: Sender<Fetch>,
    wake: Arc<Mutex<Waker>>,
    /// Whether to ask QEMU and wait (Tab), or only read what is known
    /// (hints, drawn at every key).
    patient: bool,
}

/// The session's side: answers between lines.
pub struct Server {
    cache: Arc<Cache>,
    requests: Receiver<Fetch>,
}

/// A fetcher for the line editor and the server that answers it; `wake`
/// rouses the session's wait for a line, `changes` is the count of events
/// and commands the session keeps.
pub fn pair(wake: Waker, changes: Arc<AtomicU64>) -> (Fetcher, Server) {
    let cache = Arc::new(Cache { state: Mutex::new(State::default()), arrived: Condvar::new(), changes });
    let (requests, requests_rx) = std::sync::mpsc::channel();
    let fetcher = Fetcher { cache: Arc::clone(&cache), requests, wake: Arc::new(Mutex::new(wake)), patient: true };
    (fetcher, Server { cache, requests: requests_rx })
}

impl Server {
    /// Answers what the line editor asked, each within [`FETCH_LIMIT`];
    /// after a question QEMU leaves unanswered, the rest wait for the next
    /// call rather than each time out in turn.
    pub fn serve(&self, session: &mut Session) -> Result<(), Error> {
        while let Ok(fetch) = self.requests.try_recv() {
            let asked_at = self.cache.changes.load(Ordering::SeqCst);
            let answer = session.look(fetch.message(), FETCH_LIMIT)?;
            let mut state = self.cache.lock();
            state.asked.remove(&fetch);
            let unanswered = answer.is_none();
            if let Some(value) = answer {
                state.answers.insert(fetch, (value, asked_at));
            }
            drop(state);
            self.cache.arrived.notify_all();
            if unanswered {
                break;
            }
        }
        Ok(())
    }
}

impl Fetcher {
    /// The same, reading only what is known: for hints, which are drawn at
    /// every key and must not wait.
    pub fn known_only(&self) -> Fetcher {
        Fetcher { patient: false, ..self.clone() }
    }

    /// The answer to `fetch`: current, or (when `self.patient`) asked for
    /// now and waited for at most [`PATIENCE`]. `None` when it did not come
    /// in time.
    fn answer(&self, fetch: Fetch) -> Option<Value> {
        let deadline = Instant::now() + PATIENCE;
        let mut state = self.cache.lock();
        if let Some(value) = self.cache.current(&state, &fetch) {
            return Some(value);
        }
        if !self.patient {
            return None;
        }
        if state.asked.insert(fetch.clone()) {
            if self.requests.send(fetch.clone()).is_err() {
                return None;
            }
            if let Ok(wake) = self.wake.lock() {
                wake();
            }
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = match self.cache.arrived.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
            if let Some(value) = self.cache.current(&state, &fetch) {
                return Some(value);
            }
        }
    }

    /// What a value of `kind` may be now. `typed` is the text typed so far
    /// (a QOM path completes below its last `/`); `path` is the QOM path
    /// the line names, for its properties.
    pub fn items(&self, kind: Kind, typed: &str, path: Option<&str>) -> Vec<Item> {
        match kind {
            Kind::QomPath => self.qom_children(typed),
            Kind::QomProperty => match path {
                Some(path) => self.qom_list(path).into_iter().map(|(name, ty)| Item::new(name, ty)).collect(),
                None => Vec::new(),
            },
            Kind::DeviceType => self.type_names("device"),
            Kind::ObjectType => self.type_names("user-creatable"),
            Kind::Device => self.children_named("/machine/peripheral"),
            Kind::Object => self.children_named("/objects"),
            Kind::BlockNode => self.listed("query-named-block-nodes", |entry| {
                entry.get("node-name").and_then(Value::as_str).filter(|n| !n.starts_with('#')).map(String::from)
            }),
            // A backend's name, or its device's id when that is a name.
            Kind::BlockDevice => match self.answer(Fetch::Query("query-block")) {
                Some(Value::Array(devices)) => devices
                    .iter()
                    .flat_map(|d| [d.get("device"), d.get("qdev")])
                    .filter_map(|name| name?.as_str().filter(|n| !n.is_empty() && !n.contains('/')))
                    .map(|name| Item::new(name, ""))
                    .collect(),
                _ => Vec::new(),
            },
            Kind::Chardev => self.listed("query-chardev", |entry| entry.get("label")?.as_str().map(String::from)),
            Kind::Job => self.listed("query-jobs", |entry| entry.get("id")?.as_str().map(String::from)),
            Kind::MigrationCapability => {
                self.listed("query-migrate-capabilities", |entry| entry.get("capability")?.as_str().map(String::from))
            }
            Kind::MigrationParameter => match self.answer(Fetch::Query("query-migrate-parameters")) {
                Some(Value::Object(parameters)) => parameters.keys().map(|k| Item::new(k.as_str(), "")).collect(),
                _ => Vec::new(),
            },
            Kind::Snapshot => match self.answer(Fetch::Query("query-block")) {
                Some(Value::Array(devices)) => devices
                    .iter()
                    .filter_map(|d| d.get("inserted")?.get("image")?.get("snapshots")?.as_array())
                    .flatten()
                    .filter_map(|snapshot| snapshot.get("name")?.as_str())
                    .map(|name| Item::new(name, "snapshot"))
                    .collect(),
                _ => Vec::new(),
            },
            Kind::Cpu => {
                self.listed("query-cpus-fast", |entry| entry.get("cpu-index")?.as_u64().map(|i| i.to_string()))
            }
            Kind::Netdev => match self.answer(Fetch::Networks) {
                Some(Value::String(text)) => netdevs(&text).into_iter().map(|n| Item::new(n, "netdev")).collect(),
                _ => Vec::new(),
            },
        }
    }

    /// Properties of device or object type `ty`, with their types.
    pub fn properties(&self, kind: Kind, ty: &str) -> Vec<Item> {
        let fetch = match kind {
            Kind::DeviceType => Fetch::DeviceProperties(ty.to_string()),
            Kind::ObjectType => Fetch::ObjectProperties(ty.to_string()),
            _ => return Vec::new(),
        };
        let Some(Value::Array(properties)) = self.answer(fetch) else { return Vec::new() };
        let property = |p: &Value| {
            let name = p.get("name")?.as_str()?;
            Some(Item::new(name, p.get("type").and_then(Value::as_str).unwrap_or_default()))
        };
        properties.iter().filter_map(property).collect()
    }

    fn qom_list(&self, path: &str) -> Vec<(String, String)> {
        let Some(Value::Array(entries)) = self.answer(Fetch::QomList(path.to_string())) else { return Vec::new() };
        let entry = |e: &Value| {
            let name = e.get("name")?.as_str()?;
            Some((name.to_string(), e.get("type").and_then(Value::as_str).unwrap_or_default().to_string()))
        };
        entries.iter().filter_map(entry).collect()
    }

    /// The objects below the path being typed: `/machine/per` lists
    /// `/machine`'s children, each as a whole path.
    fn qom_children(&self, typed: &str) -> Vec<Item> {
        let parent = match typed.rfind('/') {
            Some(0) | None => "/",
            Some(at) => &typed[..at],
        };
        let base = parent.trim_end_matches('/');
        // Only children: a link may be unset (`/machine/memory-backend`),
        // and a set one names an object that is a child elsewhere.
        let children = self.qom_list(parent).into_iter().filter(|(_, ty)| ty.starts_with("child<"));
        children.map(|(name, ty)| Item::new(format!("{base}/{name}"), ty)).collect()
    }

    fn children_named(&self, path: &str) -> Vec<Item> {
        let children = self.qom_list(path).into_iter().filter(|(_, ty)| ty.starts_with("child<"));
        children.map(|(name, ty)| Item::new(name, ty)).collect()
    }

    fn type_names(&self, implements: &'static str) -> Vec<Item> {
        let Some(Value::Array(types)) = self.answer(Fetch::Types(implements)) else { return Vec::new() };
        types.iter().filter_map(|t| t.get("name")?.as_str()).map(|name| Item::new(name, implements)).collect()
    }

    /// Names that `pick` finds in the entries of a query's list.
    fn listed(&self, query: &'static str, pick: impl Fn(&Value) -> Option<String>) -> Vec<Item> {
        let Some(Value::Array(entries)) = self.answer(Fetch::Query(query)) else { return Vec::new() };
        entries.iter().filter_map(pick).map(|name| Item::new(name, "")).collect()
    }
}

/// The netdevs in HMP's `info network` (NICs are listed too, as
/// `type=nic`, and are not netdevs).
fn netdevs(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches('\\').trim_start();
            let (name, rest) = line.split_once(": ")?;
            (rest.contains("type=") && !rest.contains("type=nic") && !name.contains(' ')).then(|| name.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_map_to_kinds_by_command_then_by_name() {
        assert_eq!(kind_of("device_del", "id"), Some(Kind::Device));
        assert_eq!(kind_of("block-job-cancel", "device"), Some(Kind::Job));
        assert_eq!(kind_of("block_resize", "device"), Some(Kind::BlockDevice));
        assert_eq!(kind_of("qom-get", "path"), Some(Kind::QomPath));
        assert_eq!(kind_of("qom-get", "id"), None);
    }

    #[test]
    fn netdevs_from_info_network() {
        let text = "nic0: index=0,type=nic,model=e1000,macaddr=52:54:00:12:34:56\r\n \\ net0: index=0,type=user,\
                    net=10.0.2.0,restrict=off\r\nn5: index=0,type=user,net=10.0.2.0,restrict=off\r\n";
        assert_eq!(netdevs(text), ["net0", "n5"]);
    }
}
