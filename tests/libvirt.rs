// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![cfg(feature = "libvirt")]
//! `libvirt:DOMAIN` and `vm ... --connect URI` against a real libvirtd
//! (`.ci/libvirtd start`): the way in to the VMs that libvirt runs, which
//! must behave like any other target (commands, events, ids, exit codes),
//! locally (`qemu:///system`) and over the network (`qemu+tcp://`).
//!
//! Each test creates its own transient TCG domain running the test guest
//! (tests/common/guest.rs) and destroys it when done. Only `vm stop` needs
//! the guest booted; every other test talks to QEMU while the guest boots.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::guest::{self, AGENT_PORT, APPEND, READY};
use common::{Run, finish, qmpsh, qmpsh_command, wait_with_deadline};
use serde_json::Value;

/// The local system libvirt, through its unix socket.
const SYSTEM: &str = "qemu:///system";
/// The same libvirtd over TCP on loopback, as a remote host is reached.
const TCP: &str = "qemu+tcp://127.0.0.1/system";
/// A port where no libvirtd listens.
const UNREACHABLE: &str = "qemu+tcp://127.0.0.1:1/system";

fn virsh(uri: &str, args: &[&str]) -> Output {
    Command::new("virsh")
        .args(["-q", "-c", uri])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run virsh: {e}"))
}

/// Whether libvirt answers at `uri`; when not, [`common::missing`] decides.
fn libvirt_available(uri: &str) -> bool {
    let found = Command::new("virsh").args(["-c", uri, "version"]).stdin(Stdio::null()).output();
    let why = match found {
        Ok(out) if out.status.success() => return true,
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        Err(e) => format!("cannot run virsh: {e}"),
    };
    common::missing(&format!("libvirt at {uri} ({why})"), "run .ci/libvirtd start");
    false
}

/// The names of the domains libvirt runs now.
fn running_domains() -> Vec<String> {
    let out = virsh(SYSTEM, &["list", "--name"]);
    assert!(out.status.success(), "virsh list: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// A name no other test, or other run of this file, uses.
fn unique_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("qmpsh-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn domain_xml(name: &str, initrd: &Path, serial: &Path) -> Option<String> {
    let guest = guest::guest()?;
    // The agent's channel, as libvirt gives a domain one: a virtio-serial
    // port of that name, on a socket libvirt owns and talks to.
    let channel = if initrd == guest.agent {
        format!("<channel type='unix'><target type='virtio' name='{AGENT_PORT}'/></channel>")
    } else {
        String::new()
    };
    let kernel = &guest.kernel;
    Some(format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{}</kernel>
    <initrd>{}</initrd>
    <cmdline>{APPEND}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='{}'/></serial>
    {channel}
  </devices>
</domain>
",
        kernel.display(),
        initrd.display(),
        serial.display()
    ))
}

/// Which `/init` the guest runs.
#[derive(Clone, Copy)]
enum Init {
    /// Powers off on the ACPI power button.
    Listening,
    /// Ignores the button.
    Ignoring,
    /// Ignores the button; runs qemu-ga on the agent channel.
    Agent,
}

/// A transient domain on qemu:///system, destroyed when dropped (a
/// transient domain is gone once destroyed).
struct Domain {
    name: String,
    dir: tempfile::TempDir,
}

impl Domain {
    /// Creates and starts the domain; `None` (skipped) without libvirt or
    /// the guest. Does not wait for the guest to boot.
    fn start(init: Init) -> Option<Domain> {
        if !libvirt_available(SYSTEM) {
            return None;
        }
        let guest = guest::guest()?;
        let initrd = match init {
            Init::Listening => &guest.listening,
            Init::Ignoring => &guest.ignoring,
            Init::Agent => &guest.agent,
        };
        let domain = Domain { name: unique_name(), dir: tempfile::tempdir().unwrap() };
        let xml = domain.dir.path().join("domain.xml");
        fs::write(&xml, domain_xml(&domain.name, initrd, &domain.serial())?).unwrap();
        let created = virsh(SYSTEM, &["create", xml.to_str().unwrap()]);
        assert!(created.status.success(), "virsh create: {}", String::from_utf8_lossy(&created.stderr));
        Some(domain)
    }

    fn serial(&self) -> PathBuf {
        self.dir.path().join("serial.log")
    }

    /// `libvirt:NAME`.
    fn target(&self) -> String {
        format!("libvirt:{}", self.name)
    }

    /// Waits until the guest has opened its power button (a press before
    /// that is lost).
    fn await_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !fs::read_to_string(self.serial()).unwrap_or_default().contains(READY) {
            assert!(Instant::now() < deadline, "no {READY} on {}'s serial console", self.name);
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn runs(&self) -> bool {
        running_domains().contains(&self.name)
    }

    fn destroy(&self) {
        let out = virsh(SYSTEM, &["destroy", &self.name]);
        assert!(out.status.success(), "virsh destroy: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = virsh(SYSTEM, &["destroy", &self.name]);
    }
}

/// A domain that is defined but not running; undefined when dropped.
struct Defined {
    name: String,
    _dir: tempfile::TempDir,
}

impl Defined {
    fn new() -> Option<Defined> {
        if !libvirt_available(SYSTEM) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name();
        let xml = dir.path().join("domain.xml");
        let guest = guest::guest()?;
        fs::write(&xml, domain_xml(&name, &guest.listening, &dir.path().join("serial.log"))?).unwrap();
        let defined = virsh(SYSTEM, &["define", xml.to_str().unwrap()]);
        assert!(defined.status.success(), "virsh define: {}", String::from_utf8_lossy(&defined.stderr));
        Some(Defined { name, _dir: dir })
    }
}

impl Drop for Defined {
    fn drop(&mut self) {
        let _ = virsh(SYSTEM, &["undefine", &self.name]);
    }
}

/// A qmpsh that runs while the test acts on the domain: its stdout lines
/// arrive as they are printed. Killed if dropped before it ends.
struct Live {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Live {
    fn start(args: &[&str], stdin: &str) -> Live {
        let mut child = qmpsh_command(args).spawn().expect("the qmpsh binary runs");
        // Small enough for the pipe; closing it ends the script after its lines.
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Live { child, lines, seen: Vec::new(), stderr: Some(stderr) }
    }

    /// Waits (20 s at most) for a stdout line that `wanted` accepts.
    fn await_line(&mut self, wanted: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let found = wanted(&line);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("no such line within 20 s: {:?}", self.seen),
                Err(RecvTimeoutError::Disconnected) => panic!("qmpsh ended first: {:?}", self.seen),
            }
        }
    }

    /// Waits (60 s at most) for qmpsh to end; all it printed.
    fn finish(&mut self) -> Run {
        let status = wait_with_deadline(&mut self.child, Duration::from_secs(60)).expect("qmpsh ends within 60 s");
        self.seen.extend(self.lines.iter());
        let stderr = self.stderr.take().unwrap().join().unwrap();
        Run { code: status.code().unwrap_or(-1), stdout: self.seen.join("\n") + "\n", stderr }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `line` is an event as qmpsh prints it: `HH:MM:SS.mmm NAME ...`.
fn is_event(line: &str) -> bool {
    let mut words = line.split(' ');
    let time = words.next().unwrap_or("");
    let name = words.next().unwrap_or("");
    time.len() == 12
        && time.bytes().enumerate().all(|(i, b)| {
            if [2, 5].contains(&i) {
                b == b':'
            } else if i == 8 {
                b == b'.'
            } else {
                b.is_ascii_digit()
            }
        })
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
}

/// What a script's stdout holds apart from the events.
fn replies(run: &Run) -> Vec<&str> {
    run.stdout.lines().filter(|l| !is_event(l)).collect()
}

/// The names of the events a script printed, in order.
fn events(run: &Run) -> Vec<&str> {
    run.stdout.lines().filter(|l| is_event(l)).map(|l| l.split(' ').nth(1).unwrap()).collect()
}

/// Asserts a connection error: exit 3, one line on stderr, nothing on
/// stdout.
fn assert_connection_error(run: &Run) {
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[test]
fn a_script_runs_every_kind_of_line_and_prints_events_live() {
    // What a user runs first: the same script as on a socket, with the
    // events that libvirt relays from QEMU.
    let Some(domain) = Domain::start(Init::Listening) else { return };
    let script = "info status\nstop\ncont\nqom-get path=/machine property=type\n\
                  {\"execute\":\"query-name\"}\nhmp info name\n";
    let run = qmpsh(&["-C", SYSTEM, &domain.target()], script);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.is_empty(), "{run:?}");
    let replies = replies(&run);
    assert_eq!(replies.len(), 6, "{run:?}");
    let status: Value = serde_json::from_str(replies[0]).unwrap();
    assert_eq!(status["status"], "running", "{run:?}");
    assert_eq!(replies[1..3], ["ok", "ok"], "{run:?}");
    assert!(replies[3].starts_with("\"pc-i440fx-") && replies[3].ends_with("-machine\""), "{run:?}");
    assert_eq!(replies[4], format!(r#"{{"name":"{}"}}"#, domain.name));
    assert_eq!(replies[5], domain.name);
    assert_eq!(events(&run), ["STOP", "RESUME"], "{run:?}");
}

#[test]
fn a_remote_uri_a_uuid_and_libvirt_default_uri_reach_the_domain() {
    // Remote hosts are reached through qemu+tcp:// (or +ssh, +tls), and a
    // domain is as often named by its UUID; with no --connect, qmpsh picks
    // the URI as virsh does, from $LIBVIRT_DEFAULT_URI.
    if !libvirt_available(TCP) {
        return;
    }
    let Some(domain) = Domain::start(Init::Listening) else { return };
    let uuid = virsh(SYSTEM, &["domuuid", &domain.name]);
    let uuid = String::from_utf8(uuid.stdout).unwrap().trim().to_string();
    assert_eq!(uuid.len(), 36, "{uuid:?}");

    let run = qmpsh(&["--connect", TCP, &format!("libvirt:{uuid}")], "stop\ncont\nquery-name\n");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(replies(&run), ["ok", "ok", &format!(r#"{{"name":"{}"}}"#, domain.name)], "{run:?}");
    assert_eq!(events(&run), ["STOP", "RESUME"], "{run:?}");

    let mut command = qmpsh_command(&[&domain.target(), "-c", "query-name"]);
    command.env("LIBVIRT_DEFAULT_URI", TCP);
    let run = finish(command, "");
    assert_eq!((run.code, run.stdout.as_str()), (0, format!("{{\"name\":\"{}\"}}\n", domain.name).as_str()), "{run:?}");

    // The variable is really what decides: an unreachable one is named.
    let mut command = qmpsh_command(&[&domain.target(), "-c", "query-name"]);
    command.env("LIBVIRT_DEFAULT_URI", UNREACHABLE);
    let run = finish(command, "");
    assert_connection_error(&run);
    assert!(run.stderr.contains(UNREACHABLE), "{run:?}");
}

#[test]
fn json_output_carries_replies_in_order_and_events_as_json() {
    // libvirt puts ids of its own on the wire; a --json consumer reads the
    // replies in the order of its lines, as on a socket, and never sees
    // libvirt's ids, while an id of its own comes back.
    let Some(domain) = Domain::start(Init::Listening) else { return };
    let lines = "stop\ncont\n{\"execute\": \"query-name\", \"id\": \"mine\"}\n";
    let run = qmpsh(&["--json", "-C", SYSTEM, &domain.target()], lines);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains("libvirt-"), "{}", run.stdout);
    let lines = run.json_lines();
    let replies: Vec<&Value> = lines.iter().filter(|l| l.get("return").is_some()).collect();
    assert_eq!(replies.len(), 3, "{}", run.stdout);
    let ids: Vec<&Value> = lines.iter().filter_map(|l| l.get("id")).collect();
    assert_eq!(ids, ["mine"], "{}", run.stdout);
    let events: Vec<&Value> = lines.iter().filter_map(|l| l.get("event")).collect();
    assert_eq!(events, ["STOP", "RESUME"], "{}", run.stdout);
    assert!(lines.iter().filter(|l| l.get("event").is_some()).all(|l| l["timestamp"]["seconds"].is_u64()));
    assert_eq!(lines.last().unwrap()["return"]["name"], domain.name.as_str());
}

#[test]
fn an_event_caused_from_outside_reaches_a_wait() {
    // Events come from libvirt's callback, not as a side effect of our own
    // commands: someone else pausing the VM ends a `.wait`.
    let Some(domain) = Domain::start(Init::Listening) else { return };
    let mut live = Live::start(&["-C", SYSTEM, &domain.target()], "query-name\n.wait STOP timeout=20\n");
    // The reply means qmpsh is connected and subscribed to the events.
    live.await_line(|l| l.contains(r#""name""#));
    let suspended = virsh(SYSTEM, &["suspend", &domain.name]);
    assert!(suspended.status.success(), "{suspended:?}");
    let run = live.finish();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(events(&run), ["STOP"], "{run:?}");
}

#[test]
fn failed_commands_exit_1_with_one_line() {
    // Unlike `virsh qemu-monitor-command`, a failure stops the script and
    // says so in its exit status.
    let Some(domain) = Domain::start(Init::Listening) else { return };
    let run = qmpsh(&["-C", SYSTEM, &domain.target()], "query-name\nnosuch\nquery-name\n");
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.starts_with("error: line 2: CommandNotFound"), "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1, "the script stops at the failure: {run:?}");

    let run = qmpsh(&["-C", SYSTEM, &domain.target(), "-c", "hmp nosuch"], "");
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.contains("nosuch"), "{run:?}");
}

#[test]
fn version_limits_hold_over_libvirt_which_sends_no_greeting() {
    // The version comes from `query-version`, asked only for a line that
    // needs it: a table argument QEMU 9.1 removed is still refused before
    // anything is sent, naming the version.
    let Some(domain) = Domain::start(Init::Listening) else { return };
    let asked = qmpsh(&["-C", SYSTEM, &domain.target(), "-c", "query-version"], "");
    let reply: Value = serde_json::from_str(asked.stdout.trim_end()).unwrap();
    let version = qmpsh::language::version::Version::from_json(&reply["qemu"]).unwrap();
    let run = qmpsh(&["-C", SYSTEM, &domain.target(), "-v", "-c", "migrate -b tcp:127.0.0.1:1"], "");
    if version < qmpsh::language::version::Version::new(9, 1, 0) {
        // Block migration is still there: the line goes to QEMU.
        assert!(run.stderr.contains(r#""execute":"migrate","arguments":{"blk":true"#), "{run:?}");
        return;
    }
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains(&format!("column 9: QEMU {version} has no `migrate -b`")), "{run:?}");
    assert!(!run.stderr.contains(r#""execute":"migrate""#), "nothing was sent: {run:?}");
}

#[test]
fn quit_exits_0_and_the_domain_is_gone() {
    // QEMU going away after our own `quit` is success, as on a socket.
    let Some(domain) = Domain::start(Init::Listening) else { return };
    let run = qmpsh(&["-C", SYSTEM, &domain.target()], "quit\n");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.is_empty(), "{run:?}");
    assert!(!domain.runs());
}

#[test]
fn an_unknown_domain_is_one_line_naming_it() {
    if !libvirt_available(SYSTEM) {
        return;
    }
    let name = format!("nosuch-{}", unique_name());
    let run = qmpsh(&["-C", SYSTEM, &format!("libvirt:{name}"), "-c", "query-name"], "");
    assert_connection_error(&run);
    assert!(run.stderr.contains(&name), "{run:?}");
}

#[test]
fn a_defined_domain_that_is_not_running_says_so() {
    let Some(defined) = Defined::new() else { return };
    let run = qmpsh(&["-C", SYSTEM, &format!("libvirt:{}", defined.name), "-c", "query-name"], "");
    assert_connection_error(&run);
    assert!(run.stderr.contains("not running"), "{run:?}");
}

#[test]
fn an_unreachable_libvirt_is_one_line_naming_the_uri() {
    let run = qmpsh(&["-C", UNREACHABLE, "libvirt:any", "-c", "query-name"], "");
    assert_connection_error(&run);
    assert!(run.stderr.contains("not running or not reachable"), "{run:?}");
    assert!(run.stderr.contains(UNREACHABLE), "{run:?}");
}

/// A "libvirt" that takes connections and never answers: a listening
/// socket nobody reads (the kernel accepts for it). Its URI, and the
/// socket, which must outlive the test's qmpsh.
fn silent_libvirt() -> (String, std::net::TcpListener) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (format!("qemu+tcp://127.0.0.1:{port}/system"), listener)
}

#[test]
fn a_libvirt_that_never_answers_fails_within_the_timeout() {
    // libvirt's own open waits for ever; no libvirtd is needed to show it.
    let (silent, _listener) = silent_libvirt();
    let run = qmpsh(&["--timeout", "1", "-C", &silent, "libvirt:any", "-c", "query-name"], "");
    assert_connection_error(&run);
    assert!(run.stderr.contains(&format!("libvirt at {silent} did not answer within 1 s")), "{run:?}");
}

#[test]
fn a_domain_destroyed_mid_script_ends_it_at_once() {
    // A VM that dies under a long script (here a 30 s sleep) must not leave
    // qmpsh waiting for the rest of it.
    let Some(domain) = Domain::start(Init::Listening) else { return };
    let mut live = Live::start(&["-C", SYSTEM, &domain.target()], "query-name\n.sleep 30\nstop\n");
    live.await_line(|l| l.contains(r#""name""#));
    let destroyed = Instant::now();
    domain.destroy();
    let run = live.finish();
    let took = destroyed.elapsed();
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(took < Duration::from_secs(10), "qmpsh took {took:?} to notice");
}

#[test]
fn vm_list_and_status_show_the_domain() {
    let Some(domain) = Domain::start(Init::Listening) else { return };
    let list = qmpsh(&["vm", "list", "-C", SYSTEM], "");
    assert_eq!(list.code, 0, "{list:?}");
    let row = list.stdout.lines().find(|l| l.split_whitespace().next() == Some(domain.name.as_str()));
    assert!(row.is_some_and(|r| r.ends_with(" running")), "{}", list.stdout);

    let list = qmpsh(&["vm", "list", "-C", SYSTEM, "--json"], "");
    assert_eq!(list.code, 0, "{list:?}");
    let all: Value = serde_json::from_str(&list.stdout).unwrap();
    let entry = all.as_array().unwrap().iter().find(|d| d["name"] == domain.name.as_str());
    assert_eq!(entry.map(|d| &d["state"]), Some(&Value::from("running")), "{}", list.stdout);

    let status = qmpsh(&["vm", "status", "-C", SYSTEM, &domain.name, "--json"], "");
    assert_eq!(status.code, 0, "{status:?}");
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["name"], domain.name.as_str());
    assert_eq!(status["state"], "running");
    assert!(status["id"].as_u64().is_some_and(|id| id > 0), "{status}");
    let uuid = virsh(SYSTEM, &["domuuid", &domain.name]);
    assert_eq!(status["uuid"], String::from_utf8(uuid.stdout).unwrap().trim());
}

#[test]
fn vm_stop_powers_off_a_listening_guest() {
    // The reason for `vm stop`: through libvirt's shutdown, the guest
    // powers itself off.
    let Some(domain) = Domain::start(Init::Listening) else { return };
    domain.await_ready();
    let run = qmpsh(&["vm", "stop", "-C", SYSTEM, &domain.name, "--timeout", "60"], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.ends_with(&format!("\n{}: stopped\n", domain.name)), "{run:?}");
    assert!(!domain.runs());
}

#[test]
fn vm_stop_destroys_a_guest_that_ignores_the_button_after_the_timeout() {
    let Some(domain) = Domain::start(Init::Ignoring) else { return };
    domain.await_ready();
    let started = Instant::now();
    let run = qmpsh(&["vm", "stop", "-C", SYSTEM, &domain.name, "--timeout", "3"], "");
    assert_eq!(run.code, 4, "a forced stop is a timeout: {run:?}");
    assert!(
        run.stdout.ends_with(&format!("no power-off within 3 s: libvirt's destroy\n{}: killed\n", domain.name)),
        "{run:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(3), "ended before the timeout");
    assert!(!domain.runs());
}

#[test]
fn vm_kill_destroys_the_domain() {
    let Some(domain) = Domain::start(Init::Listening) else { return };
    let run = qmpsh(&["vm", "kill", "-C", SYSTEM, &domain.name], "");
    assert_eq!((run.code, run.stdout.as_str()), (0, format!("{}: killed\n", domain.name).as_str()), "{run:?}");
    assert!(!domain.runs());
}

#[test]
fn connect_without_a_libvirt_target_is_a_usage_error() {
    // --connect only means something for libvirt:DOMAIN; silently ignoring
    // it would reach a different VM than the one meant.
    let run = qmpsh(&["--connect", SYSTEM, "/tmp/x.sock", "-c", "query-name"], "");
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.contains("libvirt:DOMAIN"), "{run:?}");
}

/// `vm exec`, `vm cp` and `vm wait --agent` on a libvirt domain, through
/// libvirt's agent API (libvirt owns the agent's channel), as on qmpsh's
/// own VMs: exit codes, output apart and exact, stdin, a file both ways
/// with equal hashes, and the clear refusals.
#[test]
fn vm_exec_cp_and_wait_reach_a_domain_through_libvirts_agent_api() {
    let Some(domain) = Domain::start(Init::Agent) else { return };
    let name = domain.name.as_str();
    let with = |args: &[&str], stdin: &[u8]| {
        let mut command = qmpsh_command(args);
        let mut child = command.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        let stdin = stdin.to_vec();
        let writer = thread::spawn(move || input.write_all(&stdin));
        let output = child.wait_with_output().unwrap();
        let _ = writer.join().unwrap();
        output
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    let wait = with(&["vm", "wait", "--connect", SYSTEM, name, "--agent", "--timeout", "120"], b"");
    assert_eq!(wait.status.code(), Some(0), "{wait:?}");

    let exec = |args: &[&str], stdin: &[u8]| {
        let mut all = vec!["vm", "exec", "-C", SYSTEM, name];
        all.extend_from_slice(args);
        with(&all, stdin)
    };
    let both = exec(&["--", "sh", "-c", "printf 'out\\n'; printf 'err\\n' >&2; exit 3"], b"");
    assert_eq!((both.status.code(), text(&both.stdout), text(&both.stderr)), (Some(3), "out\n".into(), "err\n".into()));
    let missing = exec(&["--", "no-such-program"], b"");
    assert_eq!(missing.status.code(), Some(127), "{missing:?}");
    assert!(text(&missing.stderr).starts_with("qmpsh: the guest cannot run no-such-program: "), "{missing:?}");
    let cat = exec(&["--", "cat"], b"through libvirt\n");
    assert_eq!((cat.status.code(), text(&cat.stdout)), (Some(0), "through libvirt\n".into()), "{cat:?}");
    // libvirt carries less in one agent command than qemu-ga takes: a
    // stdin over that is refused before anything is sent, not left to stall.
    let big = exec(&["--", "wc", "-c"], &vec![b'x'; 300 << 10]);
    assert_eq!(big.status.code(), Some(2), "{big:?}");
    assert!(text(&big.stderr).contains("one agent command may take through libvirt"), "{big:?}");
    let fits = exec(&["--", "wc", "-c"], &vec![b'x'; 100 << 10]);
    assert_eq!(text(&fits.stdout).trim(), (100 << 10).to_string(), "{fits:?}");

    // A file of random bytes into the guest and back out: the guest's
    // hash equals the host's, and what comes back is what went in.
    let dir = tempfile::tempdir().unwrap();
    let sent = dir.path().join("sent");
    let bytes: Vec<u8> = (0..(3 << 20) + 123).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(&sent, &bytes).unwrap();
    let guest_path = format!("{name}:/tmp/sent");
    let push = with(&["vm", "cp", "-C", SYSTEM, sent.to_str().unwrap(), &guest_path], b"");
    assert_eq!(push.status.code(), Some(0), "{push:?}");
    let guest_hash = exec(&["--", "sha256sum", "/tmp/sent"], b"");
    let host_hash = Command::new("sha256sum").arg(&sent).output().unwrap();
    let first_word = |out: &Output| text(&out.stdout).split_whitespace().next().map(String::from);
    assert_eq!(first_word(&guest_hash), first_word(&host_hash), "{guest_hash:?}");
    let pulled = dir.path().join("pulled");
    let pull = with(&["vm", "cp", "--connect", SYSTEM, &guest_path, pulled.to_str().unwrap()], b"");
    assert_eq!(pull.status.code(), Some(0), "{pull:?}");
    assert!(fs::read(&pulled).unwrap() == bytes, "the file came back changed");

    // The refusals: a missing guest file, a domain libvirt does not have,
    // and --ssh (no qmpsh forward on a libvirt domain).
    let absent = with(&["vm", "cp", "-C", SYSTEM, &format!("{name}:/no/such/file"), pulled.to_str().unwrap()], b"");
    assert_eq!(absent.status.code(), Some(1), "{absent:?}");
    assert!(text(&absent.stderr).contains("No such file"), "{absent:?}");
    let unknown = qmpsh(&["vm", "exec", "-C", SYSTEM, "qmpsh-no-such-domain", "--", "true"], "");
    assert_eq!(unknown.code, 3, "{unknown:?}");
    assert!(unknown.stderr.contains("has no domain qmpsh-no-such-domain"), "{unknown:?}");
    let ssh = qmpsh(&["vm", "wait", "-C", SYSTEM, name, "--ssh"], "");
    assert_eq!(ssh.code, 2, "{ssh:?}");
    // --event listens on libvirt's QEMU monitor events: none comes, exit 4.
    let event = qmpsh(&["vm", "wait", "-C", SYSTEM, name, "--event", "STOP", "--timeout", "1"], "");
    assert_eq!(event.code, 4, "{event:?}");
    assert!(event.stderr.contains("no STOP event within 1 s"), "{event:?}");
}

/// Paused transient domains without an OS (QMP is all these tests talk
/// to), named PREFIX-0 to PREFIX-N, on qemu:///system; destroyed when
/// dropped.
struct Fleet {
    prefix: String,
    names: Vec<String>,
}

impl Fleet {
    fn start(count: usize) -> Option<Fleet> {
        if !libvirt_available(SYSTEM) {
            return None;
        }
        let prefix = unique_name().replace("qmpsh-test-", "qmpsh-test-fleet-");
        let names: Vec<String> = (0..count).map(|n| format!("{prefix}-{n}")).collect();
        let fleet = Fleet { prefix, names };
        let dir = tempfile::tempdir().unwrap();
        // Two at a time: this machine has two cores.
        for pair in fleet.names.chunks(2) {
            let created: Vec<JoinHandle<Output>> = pair
                .iter()
                .map(|name| {
                    let xml = dir.path().join(format!("{name}.xml"));
                    fs::write(
                        &xml,
                        format!(
                            "<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>\
                             <os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>\
                             <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>"
                        ),
                    )
                    .unwrap();
                    thread::spawn(move || virsh(SYSTEM, &["create", "--paused", xml.to_str().unwrap()]))
                })
                .collect();
            for out in created.into_iter().map(|c| c.join().unwrap()) {
                assert!(out.status.success(), "virsh create: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        Some(fleet)
    }

    /// `libvirt:PREFIX-` and `tail`.
    fn pattern(&self, tail: &str) -> String {
        format!("libvirt:{}-{tail}", self.prefix)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = virsh(SYSTEM, &["destroy", name]);
        }
    }
}

#[test]
fn a_pattern_reaches_a_dozen_domains_on_two_hosts_beside_qmpshs_own_vms() {
    let Some(fleet) = Fleet::start(12) else { return };
    let state = common::state_folder();
    let _guard = common::Killer(state.path());
    let run_in_state = |args: &[&str]| {
        let mut command = qmpsh_command(args);
        command.env("QMPSH_STATE_DIR", state.path());
        finish(command, "")
    };
    for name in ["own-1", "own-2"] {
        let started =
            run_in_state(&["vm", "start", name, "--accel", "tcg", "--memory", "32", "--", "-machine", "none"]);
        assert_eq!(started.code, 0, "{started:?}");
    }
    // Every domain through both URIs, as two hosts, and qmpsh's own VMs.
    let all = fleet.pattern("*");
    let run = run_in_state(&["--json", "--all", "-C", SYSTEM, "-C", TCP, &all, "-c", "query-name"]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut named: Vec<(String, String)> = run
        .json_lines()
        .iter()
        .map(|l| (l["target"].as_str().unwrap().to_string(), l["return"]["name"].as_str().unwrap().to_string()))
        .collect();
    named.sort();
    let mut expected: Vec<(String, String)> = fleet
        .names
        .iter()
        .flat_map(|n| [(format!("localhost/{n}"), n.clone()), (format!("127.0.0.1/{n}"), n.clone())])
        .chain(["own-1", "own-2"].map(|n| (n.to_string(), n.to_string())))
        .collect();
    expected.sort();
    assert_eq!(named, expected);
    assert_eq!(common::summary(&run).len(), 26, "{}", run.stderr);

    // vm list over both hosts: qmpsh's own VMs and each host's domains.
    let listed = run_in_state(&["vm", "list", "-C", SYSTEM, "-C", TCP]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let rows: Vec<Vec<&str>> = listed.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["HOST", "NAME", "STATE"]);
    for name in &fleet.names {
        for host in ["localhost", "127.0.0.1"] {
            assert!(rows.contains(&vec![host, name.as_str(), "paused"]), "{host} {name}: {}", listed.stdout);
        }
    }
    assert!(rows.contains(&vec!["qmpsh", "own-1", "running"]), "{}", listed.stdout);
    // Each host's domains by name, as `libvirt:PATTERN` takes them.
    for host in ["localhost", "127.0.0.1"] {
        let names: Vec<&str> = rows.iter().filter(|row| row[0] == host).map(|row| row[1]).collect();
        assert!(names.is_sorted(), "{host}: {}", listed.stdout);
    }

    // Globs that match none, some and all, side by side in a table.
    let none = qmpsh(&["-C", SYSTEM, &fleet.pattern("x*"), "-c", "query-name"], "");
    assert_eq!(none.code, 2, "{none:?}");
    assert!(none.stderr.contains("matches no running domain at qemu:///system"), "{none:?}");
    let table = |pattern: &str| {
        let run = qmpsh(&["-C", SYSTEM, pattern, "--table", "-c", "query-name", "-c", "query-status"], "");
        assert_eq!(run.code, 0, "{run:?}");
        run.stdout.lines().skip(1).map(|l| l.split_whitespace().map(String::from).collect()).collect::<Vec<Vec<_>>>()
    };
    let some = table(&fleet.pattern("1?"));
    let tens = [&fleet.names[10], &fleet.names[11]];
    assert_eq!(some, tens.map(|n| vec![n.clone(), n.clone(), "prelaunch".to_string()]));
    let every = table(&all);
    let mut sorted = fleet.names.clone();
    sorted.sort();
    assert_eq!(every.iter().map(|row| row[0].clone()).collect::<Vec<_>>(), sorted);
}

#[test]
fn a_domain_destroyed_mid_run_fails_its_row_and_the_others_finish() {
    let Some(fleet) = Fleet::start(3) else { return };
    let script = "query-name\n.wait RESUME timeout=30\nquery-status\n";
    let mut live = Live::start(&["-C", SYSTEM, &fleet.pattern("*")], script);
    for _ in 0..3 {
        live.await_line(|l| l.contains("\"name\""));
    }
    fleet_destroy(&fleet.names[0]);
    for name in &fleet.names[1..] {
        let resumed = virsh(SYSTEM, &["resume", name]);
        assert!(resumed.status.success(), "virsh resume: {}", String::from_utf8_lossy(&resumed.stderr));
    }
    let run = live.finish();
    assert_eq!(run.code, 3, "{run:?}");
    let rows = common::summary(&run);
    assert_eq!(rows[&fleet.names[0]].0, 3, "{}", run.stderr);
    assert_eq!((rows[&fleet.names[1]].0, rows[&fleet.names[2]].0), (0, 0), "{}", run.stderr);
    let lines = common::by_target(&run);
    for name in &fleet.names[1..] {
        assert!(lines[name].iter().any(|l| l.contains("\"running\"")), "{name}: {run:?}");
    }
}

#[test]
fn a_host_that_never_answers_is_one_failing_row_and_the_other_hosts_run() {
    let Some(fleet) = Fleet::start(2) else { return };
    let (silent, _listener) = silent_libvirt();
    let run = qmpsh(&["--timeout", "2", "-C", SYSTEM, "-C", &silent, &fleet.pattern("*"), "-c", "query-name"], "");
    assert_eq!(run.code, 3, "{run:?}");
    let rows = common::summary(&run);
    assert_eq!(rows.len(), 3, "{}", run.stderr);
    for name in &fleet.names {
        assert_eq!(rows[&format!("localhost/{name}")].0, 0, "{}", run.stderr);
    }
    let (code, said) = &rows["127.0.0.1"];
    assert_eq!(*code, 3, "{}", run.stderr);
    assert!(said.contains("did not answer within 2 s"), "{}", run.stderr);
}

#[test]
fn a_host_given_twice_is_one_and_a_domain_given_by_uuid_goes_by_its_name() {
    let Some(fleet) = Fleet::start(1) else { return };
    let name = &fleet.names[0];
    let uuid = virsh(SYSTEM, &["domuuid", name]);
    let uuid = String::from_utf8(uuid.stdout).unwrap().trim().to_string();
    let run = qmpsh(&["-C", SYSTEM, "-C", SYSTEM, &format!("libvirt:{uuid}"), "-c", "query-name"], "");
    assert_eq!(run.code, 0, "{run:?}");
    let lines = common::by_target(&run);
    assert_eq!(lines.keys().collect::<Vec<_>>(), [name], "{run:?}");
    assert_eq!(common::summary(&run).len(), 1, "{}", run.stderr);
}

#[test]
fn a_word_that_names_nothing_is_said_before_any_host_is_waited_for() {
    let (silent, _listener) = silent_libvirt();
    let asked = Instant::now();
    let run = qmpsh(&["--timeout", "5", "-C", &silent, "libvirt:any-*", "qmpsh-no-such-vm", "-c", "query-name"], "");
    let took = asked.elapsed();
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.starts_with("qmpsh: cannot connect to qmpsh-no-such-vm: no VM of that name"), "{run:?}");
    assert!(took < Duration::from_secs(4), "the silent host was waited for first: {took:?}");
}

#[test]
fn vm_list_asks_every_host_at_once_and_names_those_that_never_answer() {
    let Some(fleet) = Fleet::start(1) else { return };
    let (silent, _listener) = silent_libvirt();
    let (mute, _other) = silent_libvirt();
    let asked = Instant::now();
    let list = qmpsh(&["vm", "list", "-C", &silent, "-C", SYSTEM, "-C", &mute], "");
    let took = asked.elapsed();
    assert_eq!(list.code, 3, "{list:?}");
    // Said as a `vm` command can act on it: it has no --timeout for this.
    for uri in [&silent, &mute] {
        assert!(list.stderr.contains(&format!("libvirt at {uri} did not answer within 5 s\n")), "{list:?}");
    }
    let rows: Vec<Vec<&str>> = list.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert!(rows.contains(&vec!["localhost", fleet.names[0].as_str(), "paused"]), "{}", list.stdout);
    // One host's wait, not one after the other's (5 s each).
    assert!(took < Duration::from_secs(9), "the hosts were asked in turn: {took:?}");
}

/// A TCP way to the local libvirtd that passes everything on until told
/// to stop, and from then on holds what comes: a host that hangs after it
/// answered. Its URI.
struct Stalling {
    uri: String,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Stalling {
    fn start() -> Stalling {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::AtomicBool;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("qemu+tcp://127.0.0.1:{}/system", listener.local_addr().unwrap().port());
        let stalled = std::sync::Arc::new(AtomicBool::new(false));
        let stop = std::sync::Arc::clone(&stalled);
        thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect("127.0.0.1:16509") else { return };
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    let stop = std::sync::Arc::clone(&stop);
                    thread::spawn(move || {
                        let mut buffer = [0; 65536];
                        while let Ok(n @ 1..) = from.read(&mut buffer) {
                            while stop.load(Ordering::SeqCst) {
                                thread::sleep(Duration::from_millis(100));
                            }
                            if to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        });
        Stalling { uri, stalled }
    }

    fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }
}

/// Two domains through `qemu:///system` and through a [`Stalling`] host,
/// each target running `query-name`, a second's pause and `query-name`
/// again, with `options`; the host stalls once every target has its first
/// reply. The run, and how long it took from the stall to its end.
fn stalled_mid_run(fleet: &Fleet, options: &[&str]) -> (Run, Duration) {
    let stalling = Stalling::start();
    let pattern = fleet.pattern("*");
    let mut args = options.to_vec();
    args.extend(["-C", SYSTEM, "-C", &stalling.uri, &pattern]);
    let mut live = Live::start(&args, "query-name\n.sleep 1\nquery-name\n");
    for _ in 0..2 * fleet.names.len() {
        live.await_line(|l| l.contains("\"name\""));
    }
    stalling.stall();
    let started = Instant::now();
    let run = live.finish();
    (run, started.elapsed())
}

/// Every target of the stalled host ended with `code`, saying `said`; the
/// others succeeded.
fn assert_stalled_rows(fleet: &Fleet, run: &Run, code: i32, said: &str) {
    let rows = common::summary(run);
    for name in &fleet.names {
        assert_eq!(rows[&format!("localhost/{name}")].0, 0, "{}", run.stderr);
        let (stalled, told) = &rows[&format!("127.0.0.1/{name}")];
        assert_eq!((*stalled, told.contains(said)), (code, true), "{}", run.stderr);
    }
}

#[test]
fn a_host_that_hangs_mid_run_holds_no_other_back_and_the_run_ends_with_its_timeouts() {
    // Before: the first domain of a host registered the host's events
    // under a lock all hosts shared, and the last one's leaving called
    // libvirt again; a hung host held every target of every host, and the
    // run's end, until libvirt's keepalive gave up on it (~20 s).
    let Some(fleet) = Fleet::start(2) else { return };
    let (run, took) = stalled_mid_run(&fleet, &["--timeout", "2"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert_stalled_rows(&fleet, &run, 4, "no reply to query-name within 2 s");
    // Its own timeouts end the run, not libvirt's keepalive.
    assert!(took < Duration::from_secs(15), "the run ended {took:?} after the host hung: {run:?}");
}

#[test]
fn a_host_that_hangs_without_a_timeout_ends_each_of_its_targets_when_libvirt_gives_up_on_it() {
    // Without --timeout a command waits as long as it takes; libvirt's
    // keepalive (qmpsh asks for 3 missed 5 s pings) ends the wait for one
    // of the host's calls, and that target's loss is every target's there.
    let Some(fleet) = Fleet::start(2) else { return };
    let (run, _) = stalled_mid_run(&fleet, &[]);
    assert_eq!(run.code, 3, "{run:?}");
    assert_stalled_rows(&fleet, &run, 3, "the connection to libvirt");
}

fn fleet_destroy(name: &str) {
    let out = virsh(SYSTEM, &["destroy", name]);
    assert!(out.status.success(), "virsh destroy: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn vm_stop_during_boot_asks_again_until_the_guest_powers_off_and_says_each_step() {
    // libvirt's shutdown while the guest boots is lost (its button is not
    // open yet): asked again every 2 s, as for qmpsh's own VMs, it stops.
    let Some(domain) = Domain::start(Init::Listening) else { return };
    let run = qmpsh(&["vm", "stop", "-C", SYSTEM, &domain.name, "--timeout", "60"], "");
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "libvirt's shutdown (the guest agent or the ACPI power button, as libvirt picks)", "{run:?}");
    assert!(
        lines.contains(&"pressed again every 2 s while the guest does not power off (it may be booting)"),
        "{run:?}"
    );
    assert_eq!(lines.last(), Some(&format!("{}: stopped", domain.name).as_str()), "{run:?}");
    assert!(!domain.runs());
}
