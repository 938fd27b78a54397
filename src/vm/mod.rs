//! Managed VMs: `qmpsh vm start|stop|kill|list|status|delete|cp` and
//! `qmpsh launch`. Each VM has a private folder (see `state`) with its QMP
//! socket, pidfile and logs; the QEMU in it is trusted only while its
//! command line names that socket (see `process`).

pub mod copy;
mod exec;
mod guest;
#[cfg(feature = "libvirt")]
mod libvirt;
mod options;
mod report;
mod start;
mod state;

use std::fs;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::error::Error;
use crate::interrupt::{self, Caught};
use crate::qemu::process::Process;
use crate::qemu::stop::{self, Progress, Step};
use crate::qmp::{self, Connect, Quiet, agent};
use crate::target::Target;
use crate::ui::render;
use crate::visible;
pub use exec::COMMAND as EXEC_COMMAND;
pub use options::{Accel, Net, StartOptions, Until, VmCommand};
use report::{Agent, HostName, Interface, OsInfo, Report, Status};
pub use start::{Started, start_qemu};
pub use state::{VmDir, VmLock, agent_channel_in, state_path};

/// Runs one `qmpsh vm ...` command: on qmpsh's own VMs, or on the
/// domains of the libvirt at `libvirt` (`--connect`). What it did is said
/// on `out`; a stop's steps and the events meanwhile go to `progress`. A
/// closed `out` ends the saying quietly, never the act.
pub fn run(
    command: VmCommand,
    libvirt: Option<&str>,
    out: &mut dyn Write,
    progress: &mut dyn Progress,
) -> Result<(), Error> {
    match libvirt {
        Some(uri) => run_libvirt(uri, command, out, progress),
        None => run_own(command, out, progress),
    }
}

#[cfg(feature = "libvirt")]
fn run_libvirt(uri: &str, command: VmCommand, out: &mut dyn Write, progress: &mut dyn Progress) -> Result<(), Error> {
    libvirt::run(uri, command, out, progress)
}

#[cfg(not(feature = "libvirt"))]
fn run_libvirt(_: &str, _: VmCommand, _: &mut dyn Write, _: &mut dyn Progress) -> Result<(), Error> {
    Err(Error::Usage(crate::error::WITHOUT_LIBVIRT.into()))
}

/// `qmpsh vm ...` on the VMs qmpsh started.
fn run_own(command: VmCommand, out: &mut dyn Write, progress: &mut dyn Progress) -> Result<(), Error> {
    match command {
        VmCommand::Start { name, options } => start_managed(&name, &options, out),
        VmCommand::Stop { name, timeout, kill } => stop_managed(&VmDir::existing(&name)?, timeout, kill, out, progress),
        VmCommand::Kill { name } => kill_managed(&VmDir::existing(&name)?, out),
        VmCommand::List { json } => list(json, out),
        VmCommand::ListHosts { json, uris } => list_hosts(json, &uris, out),
        VmCommand::Status { name, json } => status(&VmDir::existing(&name)?, json, out),
        VmCommand::Delete { name } => delete(&name, out),
        VmCommand::Exec { .. } | VmCommand::Wait { .. } | VmCommand::Cp { .. } => guest::run(command, None, out),
    }
}

/// `vm start`: what started, the accelerator and why, the ssh port. Ctrl-C,
/// SIGTERM, SIGHUP and SIGQUIT do not cut it short: QEMU either has
/// started, and is said to run, or is ended.
fn start_managed(name: &str, options: &StartOptions, out: &mut dyn Write) -> Result<(), Error> {
    let caught = Caught::install().map_err(|e| Error::Io(format!("cannot watch for signals: {e}")))?;
    let vm = VmDir::new(name)?;
    let started = start::start_qemu(&vm, options, false, Some(&caught))?;
    let mut said =
        writeln!(out, "started {}: pid {}, socket {}", vm.name, started.child.id(), started.socket.display())
            .and_then(|()| writeln!(out, "accel {} ({})", started.chosen.accel.name, started.chosen.accel.why));
    if let Some(port) = started.chosen.ssh_port {
        said = said.and_then(|()| {
            writeln!(out, "ssh   127.0.0.1:{port} goes to the guest's port 22: ssh -p {port} USER@127.0.0.1")
        });
    }
    drop(started.lock);
    // It started: an earlier failure's log and ending are history.
    let _ = fs::remove_file(vm.failed_log());
    let _ = fs::remove_file(vm.ended_file());
    if let Some(signal) = caught.signal() {
        let message = format!("vm start {name}: {} arrived once the VM had started: it runs", interrupt::name(signal));
        return Err(Error::Signalled { signal, message });
    }
    said.map_err(Error::output)
}

/// `vm kill`: SIGKILL, checked.
fn kill_managed(vm: &VmDir, out: &mut dyn Write) -> Result<(), Error> {
    let _lock = vm.lock()?;
    let said = match running(vm) {
        Some(process) => {
            process.kill_and_wait(Duration::from_secs(5))?;
            keep_ended(vm, KILLED);
            tidy(vm);
            writeln!(out, "{}: killed", vm.name)
        }
        None => writeln!(out, "{}: not running", vm.name),
    };
    said.map_err(Error::output)
}

/// `vm list`: a table, or JSON.
fn list(json: bool, out: &mut dyn Write) -> Result<(), Error> {
    write_list(&own_reports()?, json, out).map_err(Error::output)
}

/// What `vm list` shows of qmpsh's own VMs: each VM, then each start that
/// failed, with its log, until `vm delete NAME`.
fn own_reports() -> Result<Vec<Report>, Error> {
    let mut reports: Vec<Report> = VmDir::all()?.iter().map(report).collect();
    reports.extend(VmDir::failed_starts()?.into_iter().map(|(name, log)| Report {
        name,
        pid: None,
        state: FAILED_TO_START.into(),
        uptime: None,
        socket: log.display().to_string(),
        chosen: Default::default(),
    }));
    Ok(reports)
}

fn write_list(reports: &[Report], json: bool, out: &mut dyn Write) -> io::Result<()> {
    if json {
        return writeln!(out, "{}", render::json_line(reports));
    }
    writeln!(out, "{:<20} {:>8} {:<10} {:>9}  SOCKET", "NAME", "PID", "STATE", "UPTIME")?;
    for r in reports {
        write_row(r, out)?;
    }
    Ok(())
}

/// A failed start's state in `vm list`, whose socket column names its log.
const FAILED_TO_START: &str = "failed";

/// The host column's name for the VMs qmpsh started.
const OWN_HOST: &str = "qmpsh";

/// `vm list -C URI -C URI2...`: qmpsh's own VMs (host `qmpsh`) and each
/// host's domains, by host. A host that cannot be reached is said on
/// stderr, the others listed; it then fails as a connection does (3).
fn list_hosts(json: bool, uris: &[String], out: &mut dyn Write) -> Result<(), Error> {
    let uris = &crate::target::each_uri_once(uris);
    let with_host = |mut row: serde_json::Value, host: &str| {
        if let Some(fields) = row.as_object_mut() {
            fields.insert("host".into(), host.into());
        }
        row
    };
    let own = own_reports()?.into_iter().map(|r| serde_json::to_value(r).unwrap_or_default());
    let mut rows: Vec<serde_json::Value> = own.map(|row| with_host(row, OWN_HOST)).collect();
    let names = crate::target::host_names(&uris.iter().cloned().map(Some).collect::<Vec<_>>());
    let mut failed = None;
    for (reports, host) in domain_reports(uris).into_iter().zip(names) {
        match reports {
            Ok(domains) => rows.extend(domains.into_iter().map(|row| with_host(row, &host))),
            Err(e) => {
                let _ = writeln!(crate::ui::output::stderr(), "{}", e.said().unwrap_or_default());
                failed = Some(e);
            }
        }
    }
    let said = if json { writeln!(out, "{}", render::json_line(&rows)) } else { write_hosts(&rows, out) };
    said.map_err(Error::output)?;
    // Said already, above the list.
    failed.map_or(Ok(()), |e| Err(Error::Outcomes(e.exit_code())))
}

fn write_hosts(rows: &[serde_json::Value], out: &mut dyn Write) -> io::Result<()> {
    let text = |r: &serde_json::Value, key: &str| visible::line(r[key].as_str().unwrap_or("-"));
    let width = rows.iter().map(|r| text(r, "host").chars().count()).max().unwrap_or(0).max("HOST".len());
    writeln!(out, "{:<width$}  {:<20} STATE", "HOST", "NAME")?;
    for r in rows {
        writeln!(out, "{:<width$}  {:<20} {}", text(r, "host"), text(r, "name"), text(r, "state"))?;
    }
    Ok(())
}

/// Each host's domains, in the order of `uris` (see [`libvirt::reports`]).
#[cfg(feature = "libvirt")]
fn domain_reports(uris: &[String]) -> Vec<Result<Vec<serde_json::Value>, Error>> {
    libvirt::reports(uris)
}

#[cfg(not(feature = "libvirt"))]
fn domain_reports(uris: &[String]) -> Vec<Result<Vec<serde_json::Value>, Error>> {
    uris.iter().map(|_| Err(Error::Usage(crate::error::WITHOUT_LIBVIRT.into()))).collect()
}

/// `vm status`: one VM, with what its guest agent tells.
fn status(vm: &VmDir, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let report = report(vm);
    let agent = if report.pid.is_none() { None } else { agent_report(vm) };
    write_status(&Status { report, agent }, json, out).map_err(Error::output)
}

fn write_status(status: &Status, json: bool, out: &mut dyn Write) -> io::Result<()> {
    if json {
        return writeln!(out, "{}", render::json_line(status));
    }
    let (r, chosen) = (&status.report, &status.report.chosen);
    let why = chosen.accel_why.as_deref().map_or_else(|| "-".into(), visible::line);
    let accel = chosen.accel.as_deref().map(|accel| format!("{} ({why})", visible::line(accel)));
    let ssh = chosen.ssh_port.map(|port| format!("127.0.0.1:{port} (the guest's port 22)"));
    let rows = [
        ("name", Some(visible::line(&r.name))),
        ("pid", r.pid.map(|pid| pid.to_string())),
        ("state", Some(visible::line(&r.state))),
        ("uptime", r.uptime.map(format_uptime)),
        ("socket", Some(visible::line(&r.socket))),
        ("accel", accel),
        ("ssh", ssh),
    ];
    for (label, value) in rows {
        writeln!(out, "{label:<7} {}", value.as_deref().unwrap_or("-"))?;
    }
    write_agent(status.agent.as_ref(), out)
}

/// `vm delete`: kills the VM if need be, then removes its folder.
fn delete(name: &str, out: &mut dyn Write) -> Result<(), Error> {
    let vm = match VmDir::existing(name) {
        Ok(vm) => vm,
        // A VM that never started is only its log.
        Err(e) => {
            let log = VmDir::new(name)?.failed_log();
            if fs::remove_file(&log).is_err() {
                return Err(e);
            }
            return writeln!(out, "{name}: deleted the log of its failed start").map_err(Error::output);
        }
    };
    let lock = vm.lock()?;
    if let Some(process) = running(&vm) {
        process.kill_and_wait(Duration::from_secs(5)).map_err(|e| Error::Failed(format!("{e}; its folder stays")))?;
    }
    fs::remove_dir_all(&vm.dir).map_err(|e| Error::Io(format!("cannot remove {}: {e}", vm.dir.display())))?;
    let _ = fs::remove_file(vm.failed_log());
    drop(lock);
    writeln!(out, "{}: deleted", vm.name).map_err(Error::output)
}

/// Its QEMU, if it runs.
pub fn running(vm: &VmDir) -> Option<Process> {
    Process::from_pidfile(&vm.pidfile(), &vm.socket())
}

/// `qmpsh __exec-qemu [--tied-to PID] -- PROGRAM ARGS...` (the arguments
/// after the command's name): this process becomes QEMU (see `exec`);
/// returns only when it cannot. Internal, so not in clap's command line,
/// its help or its completions.
pub fn exec_qemu(arguments: &[std::ffi::OsString]) -> Result<(), Error> {
    let (tied_to, command) = match arguments {
        [flag, pid, dashes, command @ ..] if flag == "--tied-to" && dashes == "--" => {
            let pid = pid.to_str().and_then(|p| p.parse().ok());
            (Some(pid.ok_or_else(|| Error::Usage("__exec-qemu --tied-to needs a pid".into()))?), command)
        }
        [dashes, command @ ..] if dashes == "--" => (None, command),
        _ => return Err(Error::Usage("usage: __exec-qemu [--tied-to PID] -- PROGRAM ARGS...".into())),
    };
    let Some((program, args)) = command.split_first() else {
        return Err(Error::Usage("__exec-qemu needs a program to run".into()));
    };
    Err(exec::become_qemu(tied_to, std::path::Path::new(program), args))
}

/// A VM that never started is not kept as a dead one: its folder goes,
/// and QEMU's log, if it wrote one, moves beside the VM folders where the
/// error names it.
fn forget(vm: &VmDir, error: Error) -> Error {
    let log = vm.qemu_log();
    let kept = vm.failed_log();
    let moved = log.metadata().is_ok_and(|m| m.len() > 0) && fs::rename(&log, &kept).is_ok();
    let _ = fs::remove_dir_all(&vm.dir);
    let whole = |why: String| format!("{why}\nQEMU's whole log: {}", kept.display());
    match error {
        Error::Failed(why) if moved => Error::Failed(whole(why)),
        Error::Signalled { signal, message } if moved => Error::Signalled { signal, message: whole(message) },
        other => other,
    }
}

/// How a VM's QEMU ended: `killed` by qmpsh, `shut down` (it exited:
/// the guest powered off, or QEMU was asked to quit), or `dead` (it went
/// without a word: killed by someone else, or crashed). qmpsh keeps what
/// it knows in the folder's `ended`; else QEMU tells: it removes its
/// pidfile when it exits, and cannot when it is killed (a folder without
/// the time `vm start` started it is from an older qmpsh: dead).
fn ended(vm: &VmDir) -> &'static str {
    match fs::read_to_string(vm.ended_file()).as_deref().map(str::trim) {
        Ok(KILLED) => KILLED,
        Ok(SHUT_DOWN) => SHUT_DOWN,
        Ok(_) => DEAD,
        Err(_) if fs::symlink_metadata(vm.pidfile()).is_err() && vm.started().is_some() => SHUT_DOWN,
        Err(_) => DEAD,
    }
}

const KILLED: &str = "killed";
const SHUT_DOWN: &str = "shut down";
const DEAD: &str = "dead";

/// Keeps how a VM's QEMU ended, before [`tidy`] takes the pidfile that
/// tells.
fn keep_ended(vm: &VmDir, how: &str) {
    let _ = fs::write(vm.ended_file(), format!("{how}\n"));
}

/// Removes what a dead QEMU leaves behind; the folder and logs stay.
fn tidy(vm: &VmDir) {
    for file in [vm.socket(), vm.control_socket(), vm.pidfile()].into_iter().chain(vm.agent_files()) {
        let _ = fs::remove_file(file);
    }
}

/// `vm stop`: the graceful sequence, reporting which step ended it.
fn stop_managed(
    vm: &VmDir,
    timeout: Duration,
    kill: bool,
    out: &mut dyn Write,
    progress: &mut dyn Progress,
) -> Result<(), Error> {
    let _lock = vm.lock()?;
    let Some(process) = running(vm) else {
        keep_ended(vm, ended(vm));
        tidy(vm);
        return writeln!(out, "{}: not running", vm.name).map_err(Error::output);
    };
    // A kill needs no monitor, and one that does not answer (a stopped or
    // wedged QEMU) cannot be asked: either way it comes to SIGKILL.
    let greeting_timeout = timeout.clamp(Duration::from_secs(1), Duration::from_secs(5));
    let connect = Connect { greeting_timeout, negotiate: true, write_timeout: None };
    let monitor = (!kill).then(|| qmp::connect(&Target::Unix(vm.own_socket()), connect, &mut *progress));
    let ending = match monitor {
        Some(Ok(mut monitor)) => {
            let agent = vm.agent_channel().map(Target::Unix);
            let sequence = stop::Stop { agent: agent.as_ref(), process: Some(&process), timeout, kill };
            stop::shutdown(&mut monitor, progress, &sequence)?
        }
        Some(Err(why)) => {
            progress.step(&Step::NoAnswer(visible::line(&why.to_string())));
            stop::kill(None, progress, Some(&process), false)?
        }
        None => stop::kill(None, progress, Some(&process), true)?,
    };
    keep_ended(vm, if matches!(ending, stop::Ending::Killed { .. }) { KILLED } else { SHUT_DOWN });
    tidy(vm);
    // What happened to the VM decides the exit; a closed stdout does not.
    let said = writeln!(out, "{}: {ending}", vm.name);
    ending.as_result(timeout).and(said.map_err(Error::output))
}

/// What `vm list` and `vm status` show of one VM.
fn report(vm: &VmDir) -> Report {
    let process = running(vm);
    let state = match &process {
        None => ended(vm).to_string(),
        Some(_) => query_state(vm),
    };
    let uptime = process.as_ref().and_then(|_| {
        let started = vm.started()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(now.saturating_sub(started))
    });
    Report {
        name: vm.name.clone(),
        pid: process.as_ref().map(|p| p.pid),
        state,
        uptime,
        socket: vm.socket().display().to_string(),
        chosen: vm.chosen(),
    }
}

/// What the guest agent tells of the guest (host name, OS, IP addresses),
/// that another client holds its channel, or none when no agent answers
/// within half a second.
fn agent_report(vm: &VmDir) -> Option<Agent> {
    let socket = vm.agent_channel()?;
    // Connecting to a channel someone holds would only time out.
    let connect = Connect { greeting_timeout: Duration::from_millis(1500), negotiate: true, write_timeout: None };
    if let Ok(mut monitor) = qmp::connect(&Target::Unix(vm.own_socket()), connect, &mut Quiet)
        && stop::agent_held(&mut monitor, Some(&socket), &mut Quiet)
    {
        return Some(Agent::Held { held: true });
    }
    // qemu-ga answers in well under 0.1 s; status must not wait long for
    // an agent that is not there.
    let limit = Duration::from_millis(500);
    let label = format!("{}'s agent", vm.name);
    let Ok(mut agent) = agent::connect(&Target::Unix(socket), &label, limit) else {
        return None;
    };
    let mut ask = |name: &str| {
        let deadline = Some(std::time::Instant::now() + limit);
        agent.execute(crate::qmp::command(name), deadline, &mut Quiet).ok().and_then(Result::ok)
    };
    fn read<T: serde::de::DeserializeOwned>(reply: Option<Value>) -> Option<T> {
        serde_json::from_value(reply?).ok()
    }
    let hostname = read::<HostName>(ask("guest-get-host-name")).map(|h| h.host_name);
    let os = read::<OsInfo>(ask("guest-get-osinfo")).and_then(|o| o.pretty_name.or(o.name));
    let interfaces = read::<Vec<Interface>>(ask("guest-network-get-interfaces")).unwrap_or_default();
    let addresses = interfaces.into_iter().flat_map(|i| i.ip_addresses).map(|a| a.ip_address).collect();
    Some(Agent::Guest { hostname, os, addresses })
}

/// The agent's part of `vm status`: the guest's words, made visible.
fn write_agent(agent: Option<&Agent>, out: &mut dyn Write) -> io::Result<()> {
    let (hostname, os, addresses) = match agent {
        None => return writeln!(out, "agent   none"),
        Some(Agent::Held { .. }) => {
            return writeln!(out, "agent   held by another client (the channel takes one at a time)");
        }
        Some(Agent::Guest { hostname, os, addresses }) => (hostname, os, addresses),
    };
    let text = |v: &Option<String>| visible::line(v.as_deref().unwrap_or("-"));
    let addresses: Vec<String> = addresses.iter().map(|a| visible::line(a)).collect();
    writeln!(out, "agent   qemu-ga")?;
    writeln!(out, "host    {}", text(hostname))?;
    writeln!(out, "os      {}", text(os))?;
    writeln!(out, "ip      {}", if addresses.is_empty() { "-".to_string() } else { addresses.join(", ") })
}

/// running / paused / shut down, from `query-status`; `busy` when another
/// client holds the monitor.
fn query_state(vm: &VmDir) -> String {
    let connect = Connect { greeting_timeout: Duration::from_millis(1500), negotiate: true, write_timeout: None };
    let Ok(mut monitor) = qmp::connect(&Target::Unix(vm.own_socket()), connect, &mut Quiet) else {
        return "busy".into();
    };
    let deadline = Some(std::time::Instant::now() + Duration::from_secs(2));
    match monitor.execute(crate::qmp::command("query-status"), deadline, &mut Quiet) {
        Ok(Ok(status)) => match status.get("status").and_then(Value::as_str).unwrap_or("") {
            "running" => "running".into(),
            "shutdown" => "shut down".into(),
            "paused" | "prelaunch" | "suspended" | "debug" | "io-error" | "watchdog" | "guest-panicked" => {
                "paused".into()
            }
            other => visible::line(other),
        },
        _ => "busy".into(),
    }
}

fn write_row(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let pid = r.pid.map_or("-".to_string(), |p| p.to_string());
    let uptime = r.uptime.map_or("-".to_string(), format_uptime);
    let (name, state, socket) = (visible::line(&r.name), visible::line(&r.state), visible::line(&r.socket));
    writeln!(out, "{name:<20} {pid:>8} {state:<10} {uptime:>9}  {socket}")
}

fn format_uptime(seconds: u64) -> String {
    match seconds {
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        s => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}
