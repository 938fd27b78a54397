//! Text from a peer is data: control characters in what QEMU, the guest
//! agent or libvirt send reach the terminal as visible escapes (`\x1b`),
//! never raw, so a peer cannot retitle or clear the terminal, or forge a
//! line of qmpsh's own with a carriage return. QEMU does not misbehave on
//! demand: a scripted fake QMP server and a fake guest agent do.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread;

use common::{FakeServer, Run, event, expect, expect_with, finish, handshake, qmpsh, qmpsh_command, send};
use serde_json::{Value, json};

/// What a terminal would act on: C0 but line breaks and tabs, DEL, C1.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars().filter(|&c| (c.is_control() && c != '\n' && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)).collect()
}

/// Neither stream holds a control character a terminal acts on, and no
/// line is forged.
fn assert_nothing_raw(run: &Run) {
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(raw_controls(text).is_empty(), "raw {:?} on {stream}: {text:?}", raw_controls(text));
        assert!(!text.lines().any(|l| l.starts_with("qmpsh: forged")), "a forged line on {stream}: {text:?}");
    }
}

/// The title-setting sequence and a carriage return that would start a
/// line of qmpsh's own, in JSON.
const HOSTILE: &str = r"\u001b]0;owned\u0007\rqmpsh: forged";
/// The same, as qmpsh shows it.
const SHOWN: &str = r"\x1b]0;owned\x07\x0dqmpsh: forged";

#[test]
fn events_errors_and_hmp_text_from_qemu_show_control_characters_escaped() {
    let mut steps = handshake();
    steps.extend([
        expect("stop"),
        send(&event(r"STOP\u001b[2J", Some(&format!(r#"{{"note": "{HOSTILE}\u009b\u007f"}}"#)))),
        send(r#"{"return": {}}"#),
        expect_with("human-monitor-command", json!({"command-line": "info status"})),
        send(r#"{"return": "VM status: \u001b[31mpaused\r\nline two\rqmpsh: forged\r\n"}"#),
        expect("query-name"),
        send(r#"{"return": {"name": "vm\u009b2J\u007f"}}"#),
        expect("query-status"),
        send(&format!(r#"{{"error": {{"class": "GenericError\u001b[8m", "desc": "{HOSTILE}"}}}}"#)),
    ]);
    let server = FakeServer::start(steps);
    let run = qmpsh(
        &[&server.socket_arg(), "-c", "stop", "-c", "hmp info status", "-c", "query-name", "-c", "query-status"],
        "",
    );
    server.finish();
    assert_eq!(run.code, 1, "the last command failed: {run:?}");
    assert_nothing_raw(&run);
    // Each shown, escaped where it was: the event's name and data, HMP's
    // lines (its CRLFs still line breaks), JSON, the error's class and desc.
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].ends_with(r#" STOP\x1b[2J {"note":"\u001b]0;owned\u0007\rqmpsh: forged\u009b\u007f"}"#),
        "{lines:?}"
    );
    assert_eq!(lines[1], "ok");
    assert_eq!(lines[2..4], [r"VM status: \x1b[31mpaused", r"line two\x0dqmpsh: forged"]);
    assert_eq!(lines[4], r#"{"name":"vm\u009b2J\u007f"}"#);
    assert_eq!(run.stderr, format!("error: line 4: GenericError\\x1b[8m: {SHOWN}\n"));
}

/// A guest agent on `socket` that answers every client as a hostile guest
/// would: its host name, OS and address carry control characters, and it
/// refuses `guest-shutdown` with one in its error. It serves until the
/// test ends.
fn hostile_agent(socket: &Path) {
    let listener = UnixListener::bind(socket).unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut writer = stream.try_clone().unwrap();
            for line in BufReader::new(stream).split(b'\n') {
                let Ok(line) = line else { break };
                // qmpsh resets the agent's parser with a 0xFF first.
                let text: String = String::from_utf8_lossy(&line).chars().filter(|c| *c != '\u{FFFD}').collect();
                let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
                let id = message.get("id").cloned().unwrap_or(Value::Null);
                let hostile: Value = serde_json::from_str(&format!(r#""{HOSTILE}""#)).unwrap();
                let reply = match message["execute"].as_str() {
                    Some("guest-sync-delimited") => {
                        let _ = writer.write_all(&[0xFF]);
                        json!({"return": message["arguments"]["id"]})
                    }
                    Some("guest-info") => json!({"return": {"version": "10.0", "supported_commands": []}}),
                    Some("guest-ping") => json!({"return": {}}),
                    Some("guest-get-host-name") => json!({"return": {"host-name": hostile}}),
                    Some("guest-get-osinfo") => json!({"return": {"pretty-name": "Evil\u{1b}[2J OS\u{9b}6n"}}),
                    Some("guest-network-get-interfaces") => json!({"return": [
                        {"name": "eth0", "ip-addresses": [{"ip-address": "10.0.0.2\r\nqmpsh: forged"}]}]}),
                    Some("guest-shutdown") => json!({"error": {"class": "GenericError\u{7f}", "desc": hostile}}),
                    _ => json!({"error": {"class": "CommandNotFound", "desc": "no"}}),
                };
                let mut reply = reply;
                reply["id"] = id;
                if writeln!(writer, "{reply}").is_err() {
                    break;
                }
            }
        }
    });
}

#[test]
fn what_a_guest_agent_says_in_vm_status_and_vm_stop_shows_control_characters_escaped() {
    if !common::qemu_available() {
        return;
    }
    let state = common::state_folder();
    let in_state = |args: &[&str]| {
        let mut command = qmpsh_command(args);
        command.env("QMPSH_STATE_DIR", state.path());
        finish(command, "")
    };
    struct KillOnDrop<'a>(&'a Path);
    impl Drop for KillOnDrop<'_> {
        fn drop(&mut self) {
            common::kill_qemus_in(self.0);
        }
    }
    let _vms = KillOnDrop(state.path());
    let started = in_state(&["vm", "start", "evil", "--accel", "tcg", "--", "-machine", "none"]);
    assert_eq!(started.code, 0, "{started:?}");
    // -machine none has no bus for the agent's channel: the fake takes its
    // socket's place.
    hostile_agent(&state.path().join("evil/ga.sock"));

    let status = in_state(&["vm", "status", "evil"]);
    assert_eq!(status.code, 0, "{status:?}");
    assert_nothing_raw(&status);
    let lines: Vec<&str> = status.stdout.lines().collect();
    assert!(lines.contains(&format!("host    {SHOWN}").as_str()), "{lines:?}");
    assert!(lines.contains(&r"os      Evil\x1b[2J OS\x9b6n"), "{lines:?}");
    assert!(lines.contains(&r"ip      10.0.0.2\x0d\x0aqmpsh: forged"), "{lines:?}");
    let json = in_state(&["vm", "status", "evil", "--json"]);
    assert_nothing_raw(&json);
    assert_eq!(json.json_lines()[0]["agent"]["os"], "Evil\u{1b}[2J OS\u{9b}6n", "the same text, as JSON");

    let stopped = in_state(&["vm", "stop", "evil", "--timeout", "1"]);
    assert_nothing_raw(&stopped);
    assert!(stopped.stdout.contains(&format!("the guest agent refused (GenericError\\x7f: {SHOWN})\n")), "{stopped:?}");
    assert!(stopped.stdout.ends_with("evil: quit after timeout\n"), "{stopped:?}");
}

#[test]
fn the_vm_name_in_the_repl_banner_and_prompt_shows_control_characters_escaped() {
    // QEMU takes any -name; the REPL shows it in its banner and prompt.
    let Some(qemu) = common::Qemu::start(&["-name", "vm\u{1b}]2;owned\u{7}\u{1b}[2J"]) else { return };
    let Some(tmux) = common::tmux::Tmux::repl(qemu.dir.path(), &qemu.socket) else { return };
    let prompt = r"vm\x1b]2;owned\x07\x1b[2J>";
    let screen = tmux.wait_for("the prompt", |s| s.contains(prompt));
    assert!(screen.contains(r"qmpsh: connected to vm\x1b]2;owned\x07\x1b[2J at "), "{screen}");
    assert_ne!(tmux.pane_title(), "owned", "the terminal was retitled");
    tmux.keys(&["C-d"]);
    tmux.wait_for("the exit status", |s| s.contains("qmpsh-exit=0"));
}
