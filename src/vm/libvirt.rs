//! `qmpsh vm list|status|stop|kill --connect URI`: the same words for the
//! domains libvirt runs. libvirt owns their QEMU, so every action goes
//! through libvirt (shutdown, destroy); qmpsh never signals that QEMU.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};

use super::VmCommand;
use crate::error::Error;
use crate::qemu::stop::{self, Ending, Progress, Step, Via};
use crate::qmp::libvirt::{self, Patience};
use crate::ui::render;
use crate::visible;

/// Runs one `vm` command on libvirt at `uri`. What it says goes to `out`,
/// where a closed pipe ends the saying quietly, never the act.
pub fn run(uri: &str, command: VmCommand, out: &mut dyn Write, progress: &mut dyn Progress) -> Result<(), Error> {
    if let VmCommand::Exec { .. } | VmCommand::Wait { .. } | VmCommand::Cp { .. } = command {
        return super::guest::run(command, Some(uri), out);
    }
    let connect = libvirt::open(Some(uri), Patience::Usual)?;
    match command {
        VmCommand::List { json } => write_list(&listed(&connect, uri)?, json, out).map_err(Error::output),
        VmCommand::Status { name, json } => {
            let r = report(&domain(&connect, &name)?);
            write_status(&r, json, out).map_err(Error::output)
        }
        VmCommand::Stop { name, timeout, kill: false } => stop(&connect, &name, timeout, out, progress),
        // `--kill` and `vm kill` alike: libvirt's destroy, at once.
        VmCommand::Stop { name, .. } | VmCommand::Kill { name } => {
            let domain = domain(&connect, &name)?;
            if !domain.is_active().unwrap_or(false) {
                return writeln!(out, "{}: not running", visible::line(&name)).map_err(Error::output);
            }
            destroy(&domain, &name)?;
            writeln!(out, "{}: killed", visible::line(&name)).map_err(Error::output)
        }
        VmCommand::Start { .. } | VmCommand::Delete { .. } | VmCommand::ListHosts { .. } => {
            Err(Error::Usage("--connect works with vm list, status, stop, kill, exec, cp and wait".into()))
        }
        VmCommand::Exec { .. } | VmCommand::Wait { .. } | VmCommand::Cp { .. } => {
            super::guest::run(command, Some(uri), out)
        }
    }
}

/// What `vm list` shows of every domain at each of `uris`, asked of every
/// host at once (see [`libvirt::on_each_host`]): the connection, the list
/// and each domain's state under one deadline per host.
pub fn reports(uris: &[String]) -> Vec<Result<Vec<Value>, Error>> {
    let uris: Vec<Option<String>> = uris.iter().cloned().map(Some).collect();
    let reports = |uri: Option<&str>| {
        let uri = uri.unwrap_or_default();
        listed(&libvirt::open_waiting(Some(uri))?, uri)
    };
    libvirt::on_each_host(&uris, Patience::Usual, reports, |why| Err(Error::Connection(why)))
}

fn listed(connect: &Connect, uri: &str) -> Result<Vec<Value>, Error> {
    let domains = connect.list_all_domains(0).map_err(|e| {
        Error::Connection(format!("libvirt at {uri} cannot list domains: {}", visible::line(e.message())))
    })?;
    let mut reports: Vec<Value> = domains.iter().map(report).collect();
    reports.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(reports)
}

fn write_list(reports: &[Value], json: bool, out: &mut dyn Write) -> io::Result<()> {
    if json {
        return writeln!(out, "{}", render::json_line(reports));
    }
    writeln!(out, "{:<20} {:>5} STATE", "NAME", "ID")?;
    for r in reports {
        let id = r["id"].as_u64().map_or("-".to_string(), |id| id.to_string());
        let text = |key: &str| visible::line(r[key].as_str().unwrap_or(""));
        writeln!(out, "{:<20} {id:>5} {}", text("name"), text("state"))?;
    }
    Ok(())
}

fn write_status(r: &Value, json: bool, out: &mut dyn Write) -> io::Result<()> {
    if json {
        return writeln!(out, "{}", render::json_line(r));
    }
    for key in ["name", "id", "state", "uuid"] {
        let value = match r.get(key).unwrap_or(&Value::Null) {
            Value::String(s) => visible::line(s),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        writeln!(out, "{key:<7} {value}")?;
    }
    Ok(())
}

fn domain(connect: &Connect, name: &str) -> Result<Domain, Error> {
    Ok(libvirt::lookup(connect, name)?)
}

/// What `vm list` and `vm status` show of one domain.
fn report(domain: &Domain) -> Value {
    let state = match domain.state().map(|(state, _)| state) {
        Ok(virt::enumutil::Enum::Known(state)) => match state {
            DomainState::Running | DomainState::Blocked => "running",
            DomainState::Paused => "paused",
            DomainState::Shutdown => "shutting down",
            DomainState::Shutoff => "shut off",
            DomainState::Crashed => "crashed",
            DomainState::PMSuspended => "suspended",
            DomainState::NoState => "-",
        },
        _ => "unknown",
    };
    json!({
        "name": domain.name().unwrap_or_default(),
        "id": domain.id(),
        "state": state,
        "uuid": domain.uuid_string().ok(),
    })
}

/// libvirt's shutdown (the guest is asked, as libvirt asks it: the ACPI
/// button, or its agent), the wait, then libvirt's destroy; events print as
/// they come, and the ending has the words and exit codes of qmpsh's own
/// VMs.
fn stop(
    connect: &Connect,
    name: &str,
    timeout: Duration,
    out: &mut dyn Write,
    progress: &mut dyn Progress,
) -> Result<(), Error> {
    let domain = domain(connect, name)?;
    let name = visible::line(name);
    if !domain.is_active().unwrap_or(false) {
        return writeln!(out, "{name}: not running").map_err(Error::output);
    }
    let mut monitor = libvirt::attach(connect, domain.clone())?;
    let deadline = Instant::now() + timeout;
    // As for qmpsh's own VMs: asked again every few seconds while the
    // guest does not begin to power off (a press during boot is lost).
    progress.step(&Step::LibvirtShutdown);
    let mut asked = 0;
    let powered_off = loop {
        if let Err(e) = domain.shutdown()
            && asked == 0
        {
            // A guest without ACPI may still power off by itself: wait anyway.
            progress.problem(&format!("qmpsh: libvirt's shutdown of {name} failed: {}", visible::line(e.message())));
        }
        asked += 1;
        let next = (Instant::now() + stop::PRESS_AGAIN).min(deadline);
        if stop::shutdown_begins_by(&mut monitor, progress, next)? {
            break stop::closes_by(&mut monitor, progress, deadline)? || !domain.is_active().unwrap_or(true);
        }
        let running = domain.is_active().unwrap_or(true);
        if !running || Instant::now() >= deadline {
            break !running;
        }
        if asked == 1 {
            progress.step(&Step::PressAgain(stop::PRESS_AGAIN));
        }
    };
    let ending = if powered_off {
        Ending::Stopped(Via::Libvirt)
    } else {
        progress.step(&Step::Destroy(timeout));
        destroy(&domain, &name)?;
        Ending::Killed { asked: false }
    };
    // What happened to the domain decides the exit; a closed stdout does not.
    let said = writeln!(out, "{name}: {ending}");
    ending.as_result(timeout).and(said.map_err(Error::output))
}

/// libvirt's destroy, and a check that it took.
fn destroy(domain: &Domain, name: &str) -> Result<(), Error> {
    let name = visible::line(name);
    domain
        .destroy()
        .map_err(|e| Error::Failed(format!("libvirt could not destroy {name}: {}", visible::line(e.message()))))?;
    if domain.is_active().unwrap_or(false) {
        return Err(Error::Failed(format!("{name} still runs after libvirt's destroy")));
    }
    Ok(())
}
