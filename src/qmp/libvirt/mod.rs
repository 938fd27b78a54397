//! The QMP client through libvirt, for a VM that libvirt runs
//! (`libvirt:DOMAIN`): libvirt owns the QMP socket, so commands go through
//! `virDomainQemuMonitorCommand` and events come from libvirt's QEMU
//! monitor event callback. There is no greeting, no peer qmpsh may signal
//! (libvirt runs this QEMU), and libvirt puts its own
//! ids on the wire; qmpsh puts its own back on each reply, so the rest of
//! qmpsh sees what a socket would give it.
//!
//! A command thread owns the domain and makes the blocking libvirt calls;
//! replies, events and the end of the connection all arrive on one
//! channel, which the client's inbox reads as it reads a socket.

mod event_loop;
mod events;

pub use events::released_within;

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::{Error as VirtError, ErrorNumber};

use super::{ClientError, Incoming, Monitor, Transport, Waker};
use crate::bounds;
use crate::visible;

/// Which libvirt a `--connect` (or its absence) means, for messages: the
/// URI given, else `$LIBVIRT_DEFAULT_URI`, else libvirt's own default, as
/// virsh picks it.
pub fn uri_in_words(uri: Option<&str>) -> String {
    match (uri, std::env::var("LIBVIRT_DEFAULT_URI")) {
        (Some(uri), _) => uri.to_string(),
        (None, Ok(env)) if !env.is_empty() => env,
        _ => format!("libvirt's default URI ({})", default_uri()),
    }
}

/// The URI libvirt picks when given none and `LIBVIRT_DEFAULT_URI` is not
/// set: `uri_default` in the user's (root: the system's) libvirt.conf,
/// else the system instance for root and the session instance otherwise.
fn default_uri() -> String {
    let root = rustix::process::getuid().is_root();
    let config = if root {
        Some(std::path::PathBuf::from("/etc/libvirt/libvirt.conf"))
    } else {
        std::env::var_os("XDG_CONFIG_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".config")))
            .map(|dir| dir.join("libvirt/libvirt.conf"))
    };
    let configured = config.and_then(|path| std::fs::read_to_string(path).ok()).and_then(|text| {
        text.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "uri_default").then(|| value.trim().trim_matches('"').to_string())
        })
    });
    configured.unwrap_or_else(|| if root { "qemu:///system" } else { "qemu:///session" }.to_string())
}

/// How long a caller lets libvirt take to answer a connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Patience {
    /// The shell's `--timeout`, given or not: where a person asks for
    /// longer.
    Asked(Option<Duration>),
    /// The usual wait, which nothing on the command line changes (the `vm`
    /// commands', whose `--timeout` means something else).
    Usual,
}

/// How long libvirt at `uri` may take to answer a connection: the
/// `--timeout` asked if any, else [`CONNECT_TIMEOUT`](super::CONNECT_TIMEOUT),
/// except over ssh, which may be asking the person at the terminal for a
/// password or to trust a host key: then as long as it takes (`None`).
fn answer_within(uri: Option<&str>, patience: Patience) -> Option<Duration> {
    let asked = match patience {
        Patience::Asked(asked) => asked,
        Patience::Usual => None,
    };
    asked.or((!may_prompt(uri)).then_some(super::CONNECT_TIMEOUT))
}

/// Whether connecting to `uri` may ask the person at the terminal
/// something (ssh: a password, a host key).
fn may_prompt(uri: Option<&str>) -> bool {
    let effective = uri.map_or_else(|| uri_in_words(None), str::to_string);
    let scheme = effective.split("://").next().unwrap_or_default();
    scheme.ends_with("+ssh") || scheme.ends_with("+libssh") || scheme.ends_with("+libssh2")
}

/// `work` on each of `uris` (`None`: libvirt's default), every host at
/// once (see [`OnHost`]), a host given up on as `no_answer_as` makes
/// [`no_answer`]'s words.
pub fn on_each_host<T, W>(
    uris: &[Option<String>],
    patience: Patience,
    work: W,
    no_answer_as: impl Fn(String) -> T,
) -> Vec<T>
where
    T: Send + 'static,
    W: Fn(Option<&str>) -> T + Clone + Send + 'static,
{
    // Every host's time runs from now, so waiting on each in turn bounds
    // the whole by the longest.
    let pending: Vec<_> = uris.iter().map(|uri| OnHost::start(uri.as_deref(), patience, work.clone())).collect();
    pending.into_iter().map(|host| host.answer(&no_answer_as)).collect()
}

/// Work on one libvirt host under way, given as long as [`answer_within`]
/// says for the whole of it: a host that stops answering is left behind
/// ([`InTime`]) and holds no other back. Hosts that may ask the person at
/// the terminal take turns, so that their questions do not mix.
struct OnHost<T> {
    uri: Option<String>,
    within: Option<Duration>,
    patience: Patience,
    pending: InTime<T>,
}

impl<T: Send + 'static> OnHost<T> {
    fn start(
        uri: Option<&str>,
        patience: Patience,
        work: impl FnOnce(Option<&str>) -> T + Send + 'static,
    ) -> OnHost<T> {
        static ONE_ASKS: Mutex<()> = Mutex::new(());
        let within = answer_within(uri, patience);
        let uri = uri.map(str::to_string);
        let asked = uri.clone();
        let pending = InTime::start(within, move || {
            let _turn = may_prompt(asked.as_deref()).then(|| ONE_ASKS.lock());
            work(asked.as_deref())
        });
        OnHost { uri, within, patience, pending }
    }

    /// What the work gave, else `no_answer_as` of why the host was given
    /// up on.
    fn answer(self, no_answer_as: impl FnOnce(String) -> T) -> T {
        let OnHost { uri, within, patience, pending } = self;
        pending.answer().unwrap_or_else(|| no_answer_as(no_answer(uri.as_deref(), within, patience)))
    }
}

/// Calls to libvirt under way in a thread of their own, with a deadline:
/// libvirt has none of its own, and a host that takes the connection and
/// never answers holds a call for ever (measured with a listening socket
/// that reads nothing).
struct InTime<T> {
    done: Option<Receiver<T>>,
    deadline: Option<Instant>,
}

impl<T: Send + 'static> InTime<T> {
    /// Starts `work`, to be waited for `within` that time from now (`None`:
    /// however long it takes).
    fn start(within: Option<Duration>, work: impl FnOnce() -> T + Send + 'static) -> InTime<T> {
        let (tx, done) = mpsc::sync_channel(1);
        let spawned = thread::Builder::new().name("libvirt-call".into()).spawn(move || drop(tx.send(work())));
        InTime { done: spawned.ok().map(|_| done), deadline: within.map(|within| Instant::now() + within) }
    }

    /// What the work gave, or `None` when the deadline passed first (the
    /// work is left behind, and what it makes dropped when it ends) or no
    /// thread could run it.
    fn answer(self) -> Option<T> {
        let done = self.done?;
        match self.deadline {
            Some(at) => done.recv_timeout(at.saturating_duration_since(Instant::now())).ok(),
            None => done.recv().ok(),
        }
    }
}

/// Why libvirt at `uri` was given up on after `within`, and how to wait
/// longer where a person can.
fn no_answer(uri: Option<&str>, within: Option<Duration>, patience: Patience) -> String {
    let uri = uri_in_words(uri);
    let Some(within) = within else { return format!("the connection to libvirt at {uri} failed") };
    let longer = if let Patience::Asked(_) = patience { " (--timeout SECS waits longer)" } else { "" };
    format!("libvirt at {uri} did not answer within {} s{longer}", within.as_secs_f64())
}

/// Opens a connection to libvirt at `uri` (see [`uri_in_words`]), with
/// errors a person can act on, if libvirt answers in time (see
/// [`OnHost`]).
pub fn open(uri: Option<&str>, patience: Patience) -> Result<Connect, ClientError> {
    OnHost::start(uri, patience, open_waiting).answer(|why| Err(ClientError::Io(why)))
}

/// [`open`], however long libvirt takes (for a caller that bounds the wait
/// itself).
pub fn open_waiting(uri: Option<&str>) -> Result<Connect, ClientError> {
    events::start_loop().map_err(ClientError::Io)?;
    let connect = Connect::open(uri).map_err(|e| ClientError::Io(cannot_connect(&e, &uri_in_words(uri))))?;
    // Notice a dead remote connection within ~15 s instead of never.
    let _ = connect.set_keep_alive(5, 3);
    Ok(connect)
}

fn cannot_connect(error: &VirtError, uri: &str) -> String {
    let message = error.message();
    let said = visible::line(message);
    // polkit's refusals (no agent to ask, or asked and cancelled) are
    // refusals too.
    let denied = message.contains("Permission denied")
        || matches!(
            error.code(),
            virt::error::ErrorNumberEnum::Known(
                ErrorNumber::AuthFailed
                    | ErrorNumber::AccessDenied
                    | ErrorNumber::AuthUnavailable
                    | ErrorNumber::AuthCancelled
            )
        );
    // A socket that cannot be reached is a system error of libvirt's RPC
    // layer; other failures (no system bus for polkit, say) are not.
    let unreachable = matches!(error.code(), virt::error::ErrorNumberEnum::Known(ErrorNumber::SystemError))
        && matches!(error.domain(), virt::error::ErrorDomainEnum::Known(virt::error::ErrorDomain::Rpc));
    if denied {
        format!(
            "permission denied by libvirt at {uri}: run as root, join the `libvirt` group for qemu:///system, \
             or use qemu:///session for your own VMs ({said})"
        )
    } else if unreachable {
        format!("libvirtd is not running or not reachable at {uri} ({said})")
    } else {
        format!("cannot connect to libvirt at {uri}: {said}")
    }
}

/// The domain called `name` (or with that UUID) on `connect`.
pub fn lookup(connect: &Connect, name: &str) -> Result<Domain, ClientError> {
    let uri = connect.uri().unwrap_or_else(|_| "libvirt".into());
    connect
        .lookup_domain_by_name(name)
        .or_else(|_| connect.lookup_domain_by_uuid_string(name))
        .map_err(|_| ClientError::Io(format!("libvirt at {uri} has no domain {name} (virsh -c {uri} list --all)")))
}

/// How many messages may wait unread on the channel. A flood of events
/// beyond this makes libvirt's threads wait instead of memory growing with
/// the backlog; nothing is dropped. The channel's room is taken when it is
/// made, for each target of a fleet: 256 cost ~180 page faults in a
/// 50-target run (measured), 64 is a page or two each.
const BACKLOG: usize = 64;

/// Connects to libvirt at `uri`, if it answers in time (see [`open`]),
/// and to the running domain `name`.
pub fn connect(uri: Option<&str>, name: &str, patience: Patience) -> Result<Monitor, ClientError> {
    let connect = open(uri, patience)?;
    let domain = running(&connect, uri, name)?;
    attach(&connect, domain)
}

/// A connection that serves several domains at once (`libvirt:PATTERN`),
/// with its events registered once for all of them ([`events::Hub`]):
/// cloned for each domain; the registrations end with the last clone.
#[derive(Clone)]
pub struct Shared {
    hub: Arc<events::Hub>,
}

impl Shared {
    /// Shares `connect`: registers its events (calls to libvirt, made
    /// here, by the connection's opener).
    pub fn new(connect: &Connect) -> Result<Shared, ClientError> {
        Ok(Shared { hub: Arc::new(events::Hub::register(connect).map_err(ClientError::Io)?) })
    }

    pub fn connect(&self) -> &Connect {
        self.hub.connect()
    }
}

/// The domain `name` of `connect`, if it runs.
fn running(connect: &Connect, uri: Option<&str>, name: &str) -> Result<Domain, ClientError> {
    let domain = lookup(connect, name)?;
    if !domain.is_active().unwrap_or(false) {
        return Err(not_running(connect, uri, name));
    }
    Ok(domain)
}

/// Why the domain `name` of `connect` cannot be reached: it is not running.
pub fn not_running(connect: &Connect, uri: Option<&str>, name: &str) -> ClientError {
    let uri = connect.uri().unwrap_or_else(|_| uri_in_words(uri));
    ClientError::Io(format!("libvirt domain {name} is not running (start it with virsh -c {uri} start {name})"))
}

/// The running domains of `connect`, with their names, sorted by name.
pub fn running_domains(connect: &Connect) -> Result<Vec<(String, Domain)>, VirtError> {
    let running = connect.list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)?;
    let mut named: Vec<(String, Domain)> =
        running.into_iter().filter_map(|domain| domain.name().ok().map(|name| (name, domain))).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(named)
}

/// A monitor on a running `domain` of `connect`, which serves it alone:
/// the connection's loss ends the monitor at once.
pub fn attach(connect: &Connect, domain: Domain) -> Result<Monitor, ClientError> {
    let uri = connect.uri().unwrap_or_else(|_| "libvirt".into());
    let (tx, incoming) = mpsc::sync_channel(BACKLOG);
    let subscription = events::subscribe(connect, &domain, &tx, &uri).map_err(ClientError::Io)?;
    Libvirt::start(domain, Channel::Monitor, tx, incoming, Some(subscription))
}

/// A monitor on a running `domain` of a [`Shared`] connection.
pub fn attach_shared(shared: &Shared, domain: Domain) -> Result<Monitor, ClientError> {
    let (tx, incoming) = mpsc::sync_channel(BACKLOG);
    let subscription = events::Hub::route(&shared.hub, &domain, &tx).map_err(ClientError::Io)?;
    Libvirt::start(domain, Channel::Monitor, tx, incoming, Some(subscription))
}

/// The guest agent of the running domain `name` at `uri`, through
/// libvirt's agent API (libvirt owns the agent's channel): ready as
/// [`agent::connect_plain`](super::agent::connect_plain) leaves a socket's, once it
/// answers `guest-ping`. libvirt keeps the channel in step itself, so
/// there is no `guest-sync` here.
pub fn agent(uri: Option<&str>, name: &str, patience: Patience) -> Result<Monitor, ClientError> {
    let connect = open(uri, patience)?;
    let domain = running(&connect, uri, name)?;
    let (tx, incoming) = mpsc::sync_channel(BACKLOG);
    let monitor = Libvirt::start(domain, Channel::Agent, tx, incoming, None)?;
    let label = format!("libvirt domain {name}");
    super::agent::ready(monitor, &label, Instant::now() + AGENT_CALL)
}

/// The largest agent command sent through libvirt. libvirt 9.0 stalls on
/// an agent command it cannot write to the agent's socket at once (one
/// over the socket's send buffer, 208 KiB by default on Linux: measured,
/// a 240 KB `guest-file-write` never arrived, 218 KB did), so commands stay
/// below that.
const AGENT_COMMAND_MAX: usize = 192 << 10;

/// How long libvirt waits for the agent's answer to one command (its
/// timeout is in whole seconds; qmpsh's own deadlines may end a wait
/// sooner).
const AGENT_CALL: Duration = Duration::from_secs(60);

/// Which of a domain's channels a [`Libvirt`] transport talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    /// QEMU's monitor (`virDomainQemuMonitorCommand`).
    Monitor,
    /// The guest agent (`virDomainQemuAgentCommand`).
    Agent,
}

/// What the command thread is asked to do.
enum Job {
    /// Send a command: the id the user gave it, if any, and its JSON.
    Command(Option<Value>, String),
    /// Send [`Incoming::Settled`] after every event libvirt had for us.
    Settle,
}

/// The transport through libvirt.
struct Libvirt {
    /// Work for the command thread.
    commands: Sender<Job>,
    /// What the command thread and the event callbacks send.
    incoming: Receiver<Incoming>,
    /// For wake-ups: a sender on that channel.
    wake: SyncSender<Incoming>,
    /// Keeps the event callbacks registered while the monitor lives (the
    /// agent has no events).
    _subscription: Option<events::Subscription>,
    /// What [`Transport::largest_command`] says.
    largest_command: Option<usize>,
    /// A command was sent since the last settle that may have caused
    /// events (anything but a `query-*`): `settle` has something to wait
    /// for.
    unsettled: bool,
}

impl Libvirt {
    /// A monitor whose commands go to `channel` of `domain` from a thread
    /// of their own (see [`callers`]), their answers to `tx`.
    fn start(
        domain: Domain,
        channel: Channel,
        tx: SyncSender<Incoming>,
        incoming: Receiver<Incoming>,
        subscription: Option<events::Subscription>,
    ) -> Result<Monitor, ClientError> {
        let (commands, requests) = mpsc::channel();
        let hub = subscription.as_ref().and_then(events::Subscription::hub);
        callers::serve(Calls { domain, channel, requests, replies: tx.clone(), hub })
            .map_err(|e| ClientError::Io(format!("cannot start the libvirt command thread: {e}")))?;
        let largest_command = (channel == Channel::Agent).then_some(AGENT_COMMAND_MAX);
        let transport =
            Libvirt { commands, incoming, wake: tx, _subscription: subscription, largest_command, unsettled: false };
        Ok(Monitor::new(Box::new(transport)))
    }
}

impl Transport for Libvirt {
    fn send(&mut self, message: &Value) -> Result<(), ClientError> {
        let mut command = message.as_object().cloned().unwrap_or_default();
        // libvirt gives the command an id of its own in place of the user's.
        let id = command.remove("id");
        let name = command.get("execute").and_then(Value::as_str).unwrap_or_default();
        self.unsettled |= !name.starts_with("query-");
        let text = Value::Object(command).to_string();
        self.commands.send(Job::Command(id, text)).map_err(|_| ClientError::Closed)
    }

    fn settle(&mut self) -> bool {
        std::mem::take(&mut self.unsettled) && self.commands.send(Job::Settle).is_ok()
    }

    fn receive(&mut self, wait: Duration, _wakeable: bool) -> Option<Incoming> {
        match self.incoming.recv_timeout(wait) {
            Ok(item) => Some(item),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Incoming::End(ClientError::Closed)),
        }
    }

    fn largest_command(&self) -> Option<usize> {
        self.largest_command
    }

    fn waker(&self) -> Waker {
        let tx = self.wake.clone();
        Box::new(move || {
            let _ = tx.send(Incoming::Wake);
        })
    }
}

/// The threads that make the blocking libvirt calls, one monitor's at a
/// time each. A thread whose monitor let go waits a while for the next
/// instead of ending: a fleet's targets come and go by the dozen, and a
/// thread started for each cost 5% of the run (measured). A thread held
/// by a call libvirt never answers serves nobody else.
mod callers {
    use std::sync::Mutex;
    use std::sync::mpsc::{self, Receiver, Sender};
    use std::thread;
    use std::time::Duration;

    use super::Calls;

    /// A way to each idle thread.
    static IDLE: Mutex<Vec<Sender<Calls>>> = Mutex::new(Vec::new());

    /// How long an idle thread waits for more work before it ends.
    const IDLE_FOR: Duration = Duration::from_secs(10);

    /// Gives `calls` to an idle thread, else to a new one.
    pub(super) fn serve(mut calls: Calls) -> std::io::Result<()> {
        if let Ok(mut idle) = IDLE.lock() {
            // Sent under the lock, which a thread takes to stop waiting:
            // what it is sent, it takes.
            while let Some(thread) = idle.pop() {
                match thread.send(calls) {
                    Ok(()) => return Ok(()),
                    // It stopped waiting.
                    Err(mpsc::SendError(back)) => calls = back,
                }
            }
        }
        thread::Builder::new().name("libvirt-calls".into()).spawn(move || life(calls)).map(drop)
    }

    /// One thread's life: a monitor's calls, then the next one's, until
    /// none comes for [`IDLE_FOR`].
    fn life(mut calls: Calls) {
        loop {
            super::run_commands(&calls);
            drop(calls);
            let (tx, next) = mpsc::channel();
            match IDLE.lock() {
                Ok(mut idle) => idle.push(tx),
                Err(_) => return,
            }
            calls = match next.recv_timeout(IDLE_FOR) {
                Ok(more) => more,
                Err(_) => match last_look(next) {
                    Some(more) => more,
                    None => return,
                },
            };
        }
    }

    /// What was sent to a thread that is done waiting, before it stops
    /// taking anything (under the lock, so nothing is sent in between).
    fn last_look(next: Receiver<Calls>) -> Option<Calls> {
        let idle = IDLE.lock().ok()?;
        let more = next.try_recv().ok();
        drop(next);
        drop(idle);
        more
    }
}

/// One monitor's calls: `channel` of `domain`, what to do from
/// `requests`, answers to `replies`; with `hub`, the connection is shared.
struct Calls {
    domain: Domain,
    channel: Channel,
    requests: Receiver<Job>,
    replies: SyncSender<Incoming>,
    hub: Option<Weak<events::Hub>>,
}

/// A command thread's work for one monitor: one blocking libvirt call at
/// a time, each answer into the inbox in order, with the user's id in
/// place of libvirt's own, until the monitor lets go or ends. On a shared
/// connection, its loss, found here, is told to every domain on it.
fn run_commands(calls: &Calls) {
    let Calls { domain, channel, requests, replies: tx, hub } = calls;
    let channel = *channel;
    let agent_timeout = i32::try_from(AGENT_CALL.as_secs()).unwrap_or(i32::MAX);
    for job in requests {
        let (id, command) = match job {
            Job::Command(id, command) => (id, command),
            Job::Settle => {
                // libvirtd relays an event to us before it answers a call
                // made after the event, and our libvirt queues it for the
                // event loop as it reads it: one call, then a mark queued on
                // that loop behind it.
                let _ = domain.is_active();
                if events::after_queued(tx).is_err() {
                    let _ = tx.send(Incoming::Settled);
                }
                continue;
            }
        };
        let answer = match channel {
            Channel::Monitor => domain.qemu_monitor_command(&command, 0),
            Channel::Agent => domain.qemu_agent_command(&command, agent_timeout, 0),
        };
        let item = match answer {
            Ok(reply) if bounds::too_many_values(reply.as_bytes()) => Incoming::End(ClientError::Protocol(
                bounds::values_refused("libvirt returned a reply of", bounds::MAX_VALUES),
            )),
            Ok(reply) => match serde_json::from_str::<Value>(&reply) {
                Ok(Value::Object(mut message)) => {
                    message.remove("id");
                    if let Some(id) = id {
                        message.insert("id".into(), id);
                    }
                    Incoming::Message(Value::Object(message))
                }
                _ => {
                    let shown: String = reply.chars().take(200).collect();
                    let shown = visible::line(&shown);
                    Incoming::End(ClientError::Protocol(format!("libvirt returned a reply that is not JSON: {shown}")))
                }
            },
            Err(error) => failure(domain, &error, id),
        };
        if let Incoming::End(lost @ ClientError::Io(_)) = &item
            && let Some(hub) = hub.as_ref().and_then(Weak::upgrade)
        {
            hub.lost(lost);
        }
        let end = matches!(item, Incoming::End(_));
        if tx.send(item).is_err() || end {
            return;
        }
    }
}

/// What a failed libvirt call means: the domain is gone (as EOF on a
/// socket: success after `quit`), the connection to libvirt is lost, or
/// libvirt refused this one command (an error reply, as QEMU's own would
/// be). The domain's state decides, not the wording of the error.
fn failure(domain: &Domain, error: &VirtError, id: Option<Value>) -> Incoming {
    // After `quit`, libvirt may report the monitor gone a moment before
    // it marks the domain stopped: give it that moment.
    if error.message().contains("monitor") {
        let until = Instant::now() + Duration::from_secs(2);
        while domain.is_active().unwrap_or(false) && Instant::now() < until {
            thread::sleep(Duration::from_millis(20));
        }
    }
    match domain.is_active() {
        Ok(false) => Incoming::End(ClientError::Closed),
        // A transient domain is forgotten the moment its QEMU exits.
        Err(gone) if matches!(gone.code(), virt::error::ErrorNumberEnum::Known(ErrorNumber::NoDomain)) => {
            Incoming::End(ClientError::Closed)
        }
        Err(lost) => {
            let said = visible::line(lost.message());
            Incoming::End(ClientError::Io(format!("the connection to libvirt was lost: {said}")))
        }
        Ok(true) => {
            let mut detail = Map::new();
            detail.insert("class".into(), Value::from("libvirt"));
            detail.insert("desc".into(), Value::from(error.message()));
            let mut reply = Map::new();
            reply.insert("error".into(), Value::Object(detail));
            if let Some(id) = id {
                reply.insert("id".into(), id);
            }
            Incoming::Message(Value::Object(reply))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_waits_as_asked_else_a_few_seconds_else_for_a_person_over_ssh() {
        let tcp = Some("qemu+tcp://db/system");
        let ssh = Some("qemu+ssh://root@db/system");
        let two = Some(Duration::from_secs(2));
        let (none, asked) = (Patience::Asked(None), Patience::Asked(two));
        assert_eq!(answer_within(tcp, none), Some(crate::qmp::CONNECT_TIMEOUT));
        assert_eq!(answer_within(tcp, Patience::Usual), Some(crate::qmp::CONNECT_TIMEOUT));
        assert_eq!(answer_within(tcp, asked), two);
        assert_eq!(answer_within(ssh, none), None);
        assert_eq!(answer_within(ssh, Patience::Usual), None);
        assert_eq!(answer_within(Some("qemu+libssh2://db/system"), none), None);
        assert_eq!(answer_within(ssh, asked), two);
    }
}
