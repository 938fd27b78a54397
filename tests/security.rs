//! The `-l` traffic log keeps secrets out and is private: each way a secret
//! travels (QMP arguments, HMP text, a reply, the guest agent) is sent to a
//! real QEMU (or a scripted agent) through a wiretap that records the bytes
//! on the wire, so each test shows the secret reached QEMU unchanged while
//! the log holds only `"***"`; `-v`'s echo masks them alike. The log is a
//! regular file of the user's, never a symlink, a FIFO or a device, and a
//! log that cannot be written stops qmpsh before it sends anything more.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;

use common::{Qemu, Run, finish, qmpsh_command, query_with};
use serde_json::{Value, json};

const SECRET: &str = "hunter2";

/// A unix socket in front of QEMU's that records what the client sends.
struct Wiretap {
    socket: PathBuf,
    sent: Arc<Mutex<Vec<u8>>>,
    _dir: tempfile::TempDir,
}

impl Wiretap {
    /// Serves one client, relaying it to `upstream`.
    fn start(upstream: &Path) -> Wiretap {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tap.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&sent);
        let upstream = upstream.to_path_buf();
        thread::spawn(move || {
            let (client, _) = listener.accept().unwrap();
            let qemu = UnixStream::connect(&upstream).unwrap();
            let (mut from_client, mut to_qemu) = (client.try_clone().unwrap(), qemu.try_clone().unwrap());
            let forward = thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(n @ 1..) = from_client.read(&mut buffer) {
                    record.lock().unwrap().extend_from_slice(&buffer[..n]);
                    if to_qemu.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
                let _ = to_qemu.shutdown(Shutdown::Write);
            });
            let (mut from_qemu, mut to_client) = (qemu, client);
            let _ = std::io::copy(&mut from_qemu, &mut to_client);
            let _ = to_client.shutdown(Shutdown::Write);
            let _ = forward.join();
        });
        Wiretap { socket, sent, _dir: dir }
    }

    /// Everything the client sent so far, as text.
    fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }
}

/// What one qmpsh run with `-l` left: its outcome, the log, and the wire.
struct Logged {
    run: Run,
    log: String,
    wire: String,
}

/// Runs `lines` (each a `-c`) on `qemu` through a wiretap, logging to a
/// fresh file.
fn run_logged(qemu: &Qemu, lines: &[&str]) -> Logged {
    let tap = Wiretap::start(&qemu.socket);
    let log = qemu.dir.path().join("traffic.jsonl");
    let _ = fs::remove_file(&log);
    let mut args = vec![tap.socket.to_str().unwrap(), "-l", log.to_str().unwrap()];
    for line in lines {
        args.extend(["-c", line]);
    }
    let run = finish(qmpsh_command(&args), "");
    Logged { run, log: fs::read_to_string(&log).unwrap(), wire: tap.sent() }
}

/// The secret is on the wire, and nowhere in the log's bytes, where `***`
/// stands in its place.
fn assert_masked(logged: &Logged, secret: &str, on_the_wire: &str) {
    assert!(logged.wire.contains(on_the_wire), "sent unchanged: {on_the_wire} in {}", logged.wire);
    assert!(!logged.log.contains(secret), "{secret} leaked into the log:\n{}", logged.log);
    assert!(logged.log.contains(r#""***""#) || logged.log.contains("***"), "masked:\n{}", logged.log);
    for line in logged.log.lines() {
        let record: Value = serde_json::from_str(line).expect("each log line is still JSON");
        assert!(record["message"].is_object(), "{line}");
    }
}

/// QEMU with a VNC server that wants a password, so `set_password` and
/// `change-vnc-password` succeed.
fn qemu_with_vnc() -> Option<Qemu> {
    Qemu::start_with(|dir| vec!["-vnc".into(), format!("unix:{}/vnc.sock,password=on", dir.display())])
}

/// A secret object's data, as QEMU holds it, asked by a client of our own.
fn secret_data(qemu: &Qemu, id: &str) -> Value {
    let reply = query_with(
        &qemu.socket,
        json!({"execute": "qom-get", "arguments": {"path": format!("/objects/{id}"), "property": "data"}}),
    );
    reply["return"].clone()
}

#[test]
fn the_log_file_is_created_0600_whatever_the_umask_and_an_open_one_is_tightened() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let log = qemu.dir.path().join("new.jsonl");
    // Under umask 0 a plain create would give 0666.
    let mut command = Command::new("sh");
    command.args(["-c", r#"umask 0; exec "$0" "$@""#, env!("CARGO_BIN_EXE_qmpsh")]);
    command.args([&qemu.socket_arg(), "-l", log.to_str().unwrap(), "-c", "query-status"]);
    command.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    command.stderr(std::process::Stdio::piped());
    let run = finish(command, "");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);

    // One that exists open to others is made private, and still appended to.
    let before = fs::read_to_string(&log).unwrap().lines().count();
    fs::set_permissions(&log, fs::Permissions::from_mode(0o644)).unwrap();
    let run = finish(qmpsh_command(&[&qemu.socket_arg(), "-l", log.to_str().unwrap(), "-c", "query-status"]), "");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(fs::read_to_string(&log).unwrap().lines().count() > before);
}

#[test]
fn a_log_path_that_is_a_symlink_is_refused_and_its_target_left_alone() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let target = qemu.dir.path().join("someone-elses.conf");
    fs::write(&target, "keep me\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    let link = qemu.dir.path().join("planted.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let run = finish(qmpsh_command(&[&qemu.socket_arg(), "-l", link.to_str().unwrap(), "-c", "query-status"]), "");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is a symlink"), "{}", run.stderr);
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep me\n");
    assert_eq!(fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o644);
}

#[test]
fn a_log_file_of_another_user_is_refused() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let theirs = qemu.dir.path().join("theirs.jsonl");
    fs::write(&theirs, "").unwrap();
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o666)).unwrap();
    // Only root can give a file away; that is also who this guards.
    if !common::root_available() {
        return;
    }
    std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
    let run = finish(qmpsh_command(&[&qemu.socket_arg(), "-l", theirs.to_str().unwrap(), "-c", "query-status"]), "");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("belongs to uid 65534"), "{}", run.stderr);
    assert_eq!(fs::read_to_string(&theirs).unwrap(), "", "nothing written");
}

#[test]
fn set_password_reaches_qemu_but_not_the_log() {
    let Some(qemu) = qemu_with_vnc() else { return };
    let logged = run_logged(&qemu, &[&format!("set_password vnc {SECRET}")]);
    assert_eq!(logged.run.code, 0, "QEMU took the password: {:?}", logged.run);
    assert_masked(&logged, SECRET, &format!(r#""password":"{SECRET}""#));
}

#[test]
fn change_vnc_password_reaches_qemu_but_not_the_log() {
    let Some(qemu) = qemu_with_vnc() else { return };
    let logged = run_logged(&qemu, &[&format!("change-vnc-password password={SECRET}")]);
    assert_eq!(logged.run.code, 0, "QEMU took the password: {:?}", logged.run);
    assert_masked(
        &logged,
        SECRET,
        &format!(r#"{{"execute":"change-vnc-password","arguments":{{"password":"{SECRET}"}}}}"#),
    );
}

#[test]
fn change_vnc_password_in_hmp_spelling_sets_it_and_is_masked() {
    // `change vnc password X` is HMP's own (a medium change it is not): it
    // goes to HMP as typed, and the log masks the password.
    let Some(qemu) = qemu_with_vnc() else { return };
    let logged = run_logged(&qemu, &[&format!("change vnc password {SECRET}")]);
    assert_eq!(logged.run.code, 0, "QEMU took the password: {:?}", logged.run);
    assert_masked(&logged, SECRET, &format!(r#""command-line":"change vnc password {SECRET}""#));
}

#[test]
fn object_add_secret_in_key_value_form_reaches_qemu_but_not_the_log() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let logged = run_logged(&qemu, &[&format!("object-add qom-type=secret id=s1 data={SECRET}")]);
    assert_eq!(logged.run.code, 0, "{:?}", logged.run);
    assert_masked(&logged, SECRET, &format!(r#""data":"{SECRET}""#));
    assert_eq!(secret_data(&qemu, "s1"), SECRET);
}

#[test]
fn object_add_secret_in_raw_json_reaches_qemu_but_not_the_log() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let line = format!(
        r#"{{"execute": "object-add", "arguments": {{"qom-type": "secret", "id": "s2", "data": "{SECRET}"}}}}"#
    );
    let logged = run_logged(&qemu, &[&line]);
    assert_eq!(logged.run.code, 0, "{:?}", logged.run);
    assert_masked(&logged, SECRET, &format!(r#""data":"{SECRET}""#));
    assert_eq!(secret_data(&qemu, "s2"), SECRET);
}

#[test]
fn hmp_object_add_secret_reaches_qemu_but_not_the_log() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    // A doubled comma is a comma in the value.
    let logged = run_logged(&qemu, &[&format!("hmp object_add secret,id=s3,data={SECRET},,x")]);
    assert_eq!(logged.run.code, 0, "{:?}", logged.run);
    assert_masked(&logged, SECRET, &format!("object_add secret,id=s3,data={SECRET},,x"));
    assert!(logged.log.contains("object_add secret,id=s3,data=***"), "{}", logged.log);
    assert_eq!(secret_data(&qemu, "s3"), format!("{SECRET},x"));
}

#[test]
fn hmp_set_password_reaches_qemu_but_not_the_log() {
    let Some(qemu) = qemu_with_vnc() else { return };
    let logged = run_logged(&qemu, &[&format!("hmp set_password vnc {SECRET}")]);
    assert_eq!(logged.run.code, 0, "QEMU took the password: {:?}", logged.run);
    assert_masked(&logged, SECRET, &format!("set_password vnc {SECRET}"));
    assert!(logged.log.contains("set_password vnc ***"), "{}", logged.log);
}

#[test]
fn a_secret_read_back_is_printed_but_masked_in_the_log() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let added = query_with(
        &qemu.socket,
        json!({"execute": "object-add", "arguments": {"qom-type": "secret", "id": "s4", "data": SECRET}}),
    );
    assert_eq!(added, json!({"return": {}}));
    let logged = run_logged(&qemu, &["qom-get path=/objects/s4 property=data", "hmp qom-get s4 data", "query-status"]);
    assert_eq!(logged.run.code, 0, "{:?}", logged.run);
    assert_eq!(logged.run.stdout.matches(SECRET).count(), 2, "both replies printed: {}", logged.run.stdout);
    assert!(!logged.log.contains(SECRET), "{}", logged.log);
    let replies = replies_by_command(&logged.log);
    let read_back: Vec<&Value> =
        replies.iter().filter(|(c, _)| c == "qom-get" || c == "human-monitor-command").map(|(_, r)| r).collect();
    assert_eq!(read_back, [&json!("***"), &json!("***")], "{}", logged.log);
    let status = replies.iter().find(|(c, _)| c == "query-status").map(|(_, r)| r["status"].clone());
    assert_eq!(status, Some(json!("running")), "later replies are logged as they are");
}

/// Each command in a log with the `return` of its reply (the commands ran
/// one at a time, so a reply follows its command).
fn replies_by_command(log: &str) -> Vec<(String, Value)> {
    let mut pairs = Vec::new();
    let mut last = None;
    for record in log.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()) {
        let message = &record["message"];
        if record["direction"] == "sent" {
            last = message["execute"].as_str().map(str::to_string);
        } else if let (Some(command), Some(returned)) = (&last, message.get("return")) {
            pairs.push((command.clone(), returned.clone()));
            last = None;
        }
    }
    pairs
}

/// A guest agent that answers the resync and `guest-info`, accepts any
/// `guest-set-user-password`, and records each line it reads.
fn fake_agent(socket: &Path) -> thread::JoinHandle<Vec<String>> {
    let listener = UnixListener::bind(socket).unwrap();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut lines = Vec::new();
        for line in BufReader::new(stream).split(b'\n') {
            let Ok(line) = line else { break };
            let text: String = String::from_utf8_lossy(&line).chars().filter(|c| *c != '\u{FFFD}').collect();
            let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
            lines.push(text.clone());
            let id = message.get("id").cloned().unwrap_or(Value::Null);
            let reply = match message["execute"].as_str() {
                Some("guest-sync-delimited") => {
                    let _ = writer.write_all(&[0xFF]);
                    json!({"return": message["arguments"]["id"], "id": id})
                }
                Some("guest-info") => json!({"return": {"version": "7.2", "supported_commands": [
                    {"name": "guest-set-user-password", "enabled": true, "success-response": true}]}, "id": id}),
                Some("guest-set-user-password") => json!({"return": {}, "id": id}),
                _ => json!({"error": {"class": "CommandNotFound", "desc": "no"}, "id": id}),
            };
            if writeln!(writer, "{reply}").is_err() {
                break;
            }
        }
        lines
    })
}

#[test]
fn guest_set_user_password_reaches_the_agent_but_not_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ga.sock");
    let agent = fake_agent(&socket);
    let log = dir.path().join("agent.jsonl");
    // base64 of the password, as the command wants it.
    let encoded = "aHVudGVyMg==";
    let line = format!(r#"guest-set-user-password username=root password="{encoded}" crypted=false"#);
    let run =
        finish(qmpsh_command(&["--agent", socket.to_str().unwrap(), "-l", log.to_str().unwrap(), "-c", &line]), "");
    assert_eq!(run.code, 0, "{run:?}");
    let received = agent.join().unwrap();
    let command = received.iter().find(|l| l.contains("guest-set-user-password")).expect("the agent got it");
    let command: Value = serde_json::from_str(command).unwrap();
    assert_eq!(command["arguments"], json!({"username": "root", "password": encoded, "crypted": false}));
    let logged = fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("aHVudGVyMg"), "{logged}");
    let sent: Vec<Value> = logged
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["direction"] == "sent")
        .map(|r| r["message"].clone())
        .collect();
    let masked = sent.iter().find(|m| m["execute"] == "guest-set-user-password").expect("logged");
    assert_eq!(masked["arguments"], json!({"username": "root", "password": "***", "crypted": false}));
    assert_eq!(fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_log_path_that_is_not_a_regular_file_is_refused_without_waiting_for_a_reader() {
    // A FIFO is no log: whoever holds its other end (another user, when
    // qmpsh runs as root in a shared folder) would read the traffic, and
    // with nobody at the other end open(2) would wait forever.
    let Some(qemu) = Qemu::start(&[]) else { return };
    let fifo = qemu.dir.path().join("planted.fifo");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::from(0o666), 0).unwrap();
    let log_arg = fifo.to_str().unwrap();

    // Nobody reads: refused at once, not a hang.
    let mut child = qmpsh_command(&[&qemu.socket_arg(), "-l", log_arg, "-c", "query-status"]).spawn().unwrap();
    let status = common::wait_with_deadline(&mut child, std::time::Duration::from_secs(10));
    let status = status.expect("qmpsh returned instead of waiting in open(2) for a reader");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is a FIFO, not a regular file"), "{stderr}");

    // Someone reads: refused all the same, and they get nothing.
    let reader = rustix::fs::open(&fifo, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK, 0.into()).unwrap();
    let run = finish(qmpsh_command(&[&qemu.socket_arg(), "-l", log_arg, "-c", "query-status"]), "");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is a FIFO, not a regular file"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "nothing was run: {}", run.stdout);
    let mut heard = Vec::new();
    let _ = fs::File::from(reader).read_to_end(&mut heard);
    assert!(heard.is_empty(), "the reader got {}", String::from_utf8_lossy(&heard));

    // A device neither (and it is not opened at all).
    let run = finish(qmpsh_command(&[&qemu.socket_arg(), "-l", "/dev/null", "-c", "query-status"]), "");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is a character device, not a regular file"), "{}", run.stderr);
}

/// qmpsh under `sh`, which ignores SIGXFSZ before it execs it (an ignored
/// signal stays ignored), so a file size limit makes write(2) fail with
/// EFBIG instead of killing qmpsh; `limit` is run first (`ulimit -f 0`).
fn qmpsh_without_sigxfsz(limit: &str, args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command.args(["-c", &format!(r#"trap '' XFSZ; {limit}; exec "$0" "$@""#), env!("CARGO_BIN_EXE_qmpsh")]);
    command.args(args);
    command.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    command.stderr(std::process::Stdio::piped());
    command
}

#[test]
fn a_log_that_cannot_be_written_stops_qmpsh_before_it_sends_a_command() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    // /dev/full fails every write, but it is a device: refused when opened.
    let run = finish(qmpsh_command(&[&qemu.socket_arg(), "-l", "/dev/full", "-c", "stop"]), "");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is a character device, not a regular file"), "{}", run.stderr);

    // A file that cannot grow (RLIMIT_FSIZE 0): the greeting's record fails.
    let log = qemu.dir.path().join("cannot-grow.jsonl");
    let args = [qemu.socket_arg(), "-l".into(), log.display().to_string(), "-c".into(), "stop".into()];
    let run = finish(qmpsh_without_sigxfsz("ulimit -f 0", &args.iter().map(String::as_str).collect::<Vec<_>>()), "");
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    assert!(run.stderr.contains(&format!("cannot write log file {}: File too large", log.display())), "{run:?}");
    assert_eq!(run.stdout, "", "stop was not run");
    assert_eq!(common::query(&qemu.socket, "query-status")["return"]["status"], "running");
}

#[test]
fn a_log_that_fails_midway_ends_the_script_once_the_line_in_progress_is_done() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let log = qemu.dir.path().join("midway.jsonl");
    let mut command = qmpsh_without_sigxfsz("true", &[&qemu.socket_arg(), "-l", log.to_str().unwrap()]);
    let mut child = common::Guarded(command.spawn().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let stdout = common::Lines::of(child.stdout.take().unwrap());
    let limit = std::time::Duration::from_secs(20);
    writeln!(stdin, "query-status").unwrap();
    stdout.until("the first reply", limit, |line| line.contains("running"));
    // From here the log cannot grow (sh exec'd qmpsh: the same pid).
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let none = rustix::process::Rlimit { current: Some(0), maximum: None };
    rustix::process::prlimit(Some(pid), rustix::process::Resource::Fsize, none).unwrap();
    writeln!(stdin, "stop\ncont").unwrap();
    drop(stdin);
    let shown = stdout.until("stop's reply", limit, |line| line == "ok");
    let status = common::wait_with_deadline(&mut child.0, limit).expect("qmpsh ends");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("cannot write log file") && stderr.contains("File too large"), "{stderr}");
    assert!(shown.iter().any(|line| line.ends_with(" STOP")), "stop ran to its end: {shown:?}");
    // cont was not sent: its record could not have been logged.
    assert_eq!(common::query(&qemu.socket, "query-status")["return"]["status"], "paused");
    let logged = fs::read_to_string(&log).unwrap();
    assert!(logged.contains("query-status") && !logged.contains(r#""cont""#), "{logged}");
}

#[test]
fn verbose_masks_secrets_as_the_log_does_and_show_secrets_shows_both_raw() {
    // -v goes to stderr, which CI jobs keep: a secret there outlives the
    // command as it would in the log.
    let Some(qemu) = qemu_with_vnc() else { return };
    let lines = [format!("set_password vnc {SECRET}"), format!("hmp object_add secret,id=s5,data={SECRET}")];
    let mut args = vec!["-v".to_string()];
    for line in &lines {
        args.extend(["-c".to_string(), line.clone()]);
    }
    let tap = Wiretap::start(&qemu.socket);
    let mut masked = vec![tap.socket.display().to_string()];
    masked.extend(args.iter().cloned());
    let run = finish(qmpsh_command(&masked.iter().map(String::as_str).collect::<Vec<_>>()), "");
    assert_eq!(run.code, 0, "QEMU took both: {run:?}");
    assert!(tap.sent().contains(&format!(r#""password":"{SECRET}""#)), "sent unchanged: {}", tap.sent());
    assert!(!run.stderr.contains(SECRET), "{SECRET} leaked into -v:\n{}", run.stderr);
    assert!(run.stderr.contains(r#"-> {"execute":"set_password","arguments":{"protocol":"vnc","password":"***"}}"#));
    assert!(run.stderr.contains("object_add secret,id=s5,data=***"), "{}", run.stderr);
    assert_eq!(secret_data(&qemu, "s5"), SECRET);

    // Asked for, the raw wire: on stderr and in the log.
    let tap = Wiretap::start(&qemu.socket);
    let log = qemu.dir.path().join("raw.jsonl");
    let mut raw =
        vec![tap.socket.display().to_string(), "--show-secrets".into(), "-l".into(), log.display().to_string()];
    raw.extend(args.iter().map(|a| a.replace("s5", "s6")));
    let run = finish(qmpsh_command(&raw.iter().map(String::as_str).collect::<Vec<_>>()), "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains(&format!(r#""password":"{SECRET}""#)), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("data={SECRET}")), "{}", run.stderr);
    let logged = fs::read_to_string(&log).unwrap();
    assert!(logged.contains(&format!(r#""password":"{SECRET}""#)), "{logged}");
    assert!(!logged.contains("***"), "{logged}");
}
