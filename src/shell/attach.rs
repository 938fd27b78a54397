//! Attaching to a monitor: connect to a target (a socket, a libvirt
//! domain, a guest agent's channel) and talk to it, in the REPL on a
//! terminal and as a script otherwise. `qmpsh TARGET`, `qmpsh --agent` and
//! `launch` all come here.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::qmp::{self, Connect, Monitor, agent};
use crate::shell::repl;
use crate::shell::script;
use crate::shell::session::{Session, Settings};
use crate::target::Target;
use crate::ui::output::{Printer, Style};
use crate::vm::VmDir;

/// How to talk to a monitor: the shell's options, decided once from the
/// command line and the terminal (`app`).
#[derive(Debug, Clone)]
pub struct Config {
    /// `-c`: these lines, then exit; empty: stdin's.
    pub commands: Vec<String>,
    /// The REPL: no `-c`, and stdin is a terminal.
    pub interactive: bool,
    /// `-H`: every line is HMP.
    pub hmp: bool,
    /// How output looks, its colours decided.
    pub style: Style,
    /// `-l FILE`: the traffic log.
    pub log: Option<PathBuf>,
    /// Greeting and negotiation, unless `-N`.
    pub negotiate: bool,
    /// `--timeout`: the greeting's, and each reply's when given.
    pub timeout: Option<Duration>,
    /// `--pipeline=N`.
    pub pipeline: Option<usize>,
    /// `--keep-going`.
    pub keep_going: bool,
}

/// Connects to `target` and runs the REPL on a terminal, else the script.
pub fn monitor(target: &Target, options: &Config) -> Result<(), Error> {
    let mut printer = printer(options)?;
    let monitor = open(target, options, &mut printer)?;
    converse(monitor, printer, &target.to_string(), agent_beside(target), options)
}

/// TARGET as the command line gives it (see [`crate::target`]). A plain
/// word that is neither a VM nor a file here is refused at once, naming
/// the VMs there are when they are few: a typo in a VM's name reads better
/// as such than as a missing socket file.
pub fn resolve(word: &str) -> Result<Target, Error> {
    let target = Target::parse_with(word, VmDir::find_socket)?;
    let plain_word = !word.contains('/') && !word.contains(':');
    if !plain_word || std::path::Path::new(word).exists() || target != Target::Unix(word.into()) {
        return Ok(target);
    }
    let names: Vec<String> = VmDir::all().unwrap_or_default().into_iter().map(|vm| vm.name).collect();
    let known = match names.len() {
        0 => "there are none (qmpsh vm start NAME starts one)".to_string(),
        1..=8 => format!("there are {}", names.join(", ")),
        n => format!("there are {n}: qmpsh vm list shows them"),
    };
    Err(Error::Connection(format!(
        "cannot connect to {word}: no VM of that name ({known}), and no socket file {word} in this folder"
    )))
}

/// Connects to `target` as `options` say, telling `printer` of the
/// handshake.
pub fn open(target: &Target, options: &Config, printer: &mut Printer) -> Result<Monitor, Error> {
    let timeout = options.timeout;
    let greeting_timeout = timeout.unwrap_or(qmp::CONNECT_TIMEOUT);
    let connect = Connect { greeting_timeout, negotiate: options.negotiate, write_timeout: timeout };
    match target {
        Target::Libvirt { domain, uri } => libvirt_monitor(domain, uri.as_deref(), timeout),
        _ => Ok(qmp::connect(target, connect, &mut printer.own_traffic())?),
    }
}

/// The guest agent's channel beside a managed VM's QMP socket, which
/// `.shutdown` and `.exec` use.
pub fn agent_beside(target: &Target) -> Option<Target> {
    match target {
        Target::Unix(path) if path.file_name().is_some_and(|n| n == "qmp.sock") => {
            path.parent().and_then(crate::vm::agent_channel_in).map(Target::Unix)
        }
        _ => None,
    }
}

/// `--agent NAME|SOCKET`: a managed VM's agent channel, or a socket.
pub fn agent_target(agent: &str) -> Result<Target, Error> {
    let plain_word = !agent.contains('/') && !agent.contains(':');
    if !plain_word {
        return Target::parse(agent);
    }
    match VmDir::find(agent)? {
        Some(vm) => {
            let Some(channel) = vm.agent_channel() else {
                return Err(Error::Usage(format!(
                    "VM {agent} has no guest agent channel: it was started with --no-agent, on a machine \
                     without PCI, or is not running"
                )));
            };
            Ok(Target::Unix(channel))
        }
        None if !std::path::Path::new(agent).exists() => {
            Err(Error::Usage(format!("no VM named {agent} and no socket file {agent} (qmpsh vm list shows the VMs)")))
        }
        None => Target::parse(agent),
    }
}

/// `--agent`: the shell on a guest agent's channel, once it answers.
pub fn agent(target: &Target, label: &str, options: &Config) -> Result<(), Error> {
    let printer = printer(options)?;
    let timeout = options.timeout.unwrap_or(qmp::CONNECT_TIMEOUT);
    let monitor = agent::connect(target, label, timeout)?;
    converse(monitor, printer, label, None, options)
}

/// Where output goes and how it looks.
fn printer(options: &Config) -> Result<Printer, Error> {
    Printer::new(options.style, options.log.as_deref())
}

/// Runs the REPL on a terminal, else the script, on a connected monitor.
fn converse(
    monitor: Monitor,
    printer: Printer,
    label: &str,
    agent: Option<Target>,
    options: &Config,
) -> Result<(), Error> {
    let interactive = options.interactive;
    let settings = settings(options, agent);
    let mut session = Session::new(monitor, printer, settings);
    if interactive {
        repl::run(&mut session, label)
    } else {
        script::run(&mut session, script::input(&options.commands), options.keep_going)
    }
}

/// A session's settings, from the shell's options; `agent` is the VM's
/// guest agent channel, when known.
pub fn settings(options: &Config, agent: Option<Target>) -> Settings {
    let timeout = options.timeout;
    let quit_grace = timeout.unwrap_or(qmp::CONNECT_TIMEOUT);
    // The REPL waits for each reply: a person reads it before typing on.
    let pipeline = options.pipeline.filter(|_| !options.interactive);
    Settings { hmp: options.hmp, timeout, quit_grace, agent, pipeline, keep_going: options.keep_going }
}

/// A monitor through libvirt, for `libvirt:DOMAIN`.
#[cfg(feature = "libvirt")]
fn libvirt_monitor(domain: &str, uri: Option<&str>, asked: Option<Duration>) -> Result<Monitor, Error> {
    Ok(qmp::libvirt::connect(uri, domain, qmp::libvirt::Patience::Asked(asked))?)
}

#[cfg(not(feature = "libvirt"))]
fn libvirt_monitor(_: &str, _: Option<&str>, _: Option<Duration>) -> Result<Monitor, Error> {
    Err(Error::Usage(crate::error::WITHOUT_LIBVIRT.into()))
}
