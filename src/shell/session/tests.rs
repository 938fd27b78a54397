//! The session against an in-process fake peer (`qmp::fake`): each test
//! scripts what QEMU would send, checks what the session sent, and reads
//! what it printed. No QEMU, no socket: milliseconds each. [`session`]
//! serves the script's tests too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustyline::ExternalPrinter;
use serde_json::json;

use super::{Flow, Session, Settings};
use crate::error::Error;
use crate::qmp::fake::{self, Peer, Step, expect, send};
use crate::ui::output::{Printer, Style};

/// What the session printed (stdout, and its problems), as a terminal
/// would show it.
#[derive(Clone, Default)]
pub(crate) struct Screen(Arc<Mutex<String>>);

impl Screen {
    pub(crate) fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

impl ExternalPrinter for Screen {
    fn print(&mut self, message: String) -> rustyline::Result<()> {
        self.0.lock().unwrap().push_str(&message);
        Ok(())
    }
}

/// A session on a fake peer playing `steps`. No wait lasts more than 5 s.
pub(crate) fn session(steps: Vec<Step>, settings: Settings) -> (Session, Peer, Screen) {
    let (monitor, peer) = fake::monitor(steps);
    let mut printer = Printer::new(Style::plain(), None).unwrap();
    let screen = Screen::default();
    printer.print_through(Box::new(screen.clone()));
    let settings = Settings { timeout: Some(Duration::from_secs(5)), ..settings };
    (Session::new(monitor, printer, settings), peer, screen)
}

fn pipelined(window: usize, keep_going: bool) -> Settings {
    Settings { pipeline: Some(window), keep_going, ..Settings::default() }
}

fn failed(desc: &str) -> Step {
    send(json!({"error": {"class": "GenericError", "desc": desc}}))
}

/// Where `needle` shows in `text`, for checking order.
fn at(text: &str, needle: &str) -> usize {
    text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in {text:?}"))
}

#[test]
fn pipelined_commands_go_out_before_their_replies_which_show_in_order() {
    // The peer answers only once all three commands came: a session that
    // waited for each reply would never get one.
    let (mut session, peer, screen) = session(
        vec![
            expect(json!({"execute": "stop"})),
            expect(json!({"execute": "cont"})),
            expect(json!({"execute": "query-status"})),
            send(json!({"return": {"n": 1}})),
            send(json!({"return": {"n": 2}})),
            send(json!({"return": {"n": 3}})),
        ],
        pipelined(3, false),
    );
    for (n, line) in ["stop", "cont", "query-status"].iter().enumerate() {
        assert_eq!(session.run_line(line, Some(n + 1)).unwrap(), Flow::Continue);
    }
    session.drain().unwrap();
    let shown = screen.text();
    assert!(at(&shown, r#"{"n":1}"#) < at(&shown, r#"{"n":2}"#) && at(&shown, r#"{"n":2}"#) < at(&shown, r#"{"n":3}"#));
    assert_eq!(peer.commands(), ["stop", "cont", "query-status"]);
}

#[test]
fn a_failure_read_ahead_is_reported_with_the_line_that_read_it() {
    let (mut session, _peer, screen) = session(
        vec![
            expect(json!({"execute": "stop"})),
            expect(json!({"execute": "cont"})),
            failed("no"),
            send(json!({"return": {}})),
        ],
        pipelined(2, false),
    );
    assert_eq!(session.run_line("stop", Some(1)).unwrap(), Flow::Continue);
    assert!(matches!(session.run_line("cont", Some(2)), Err(Error::CommandFailed)));
    assert!(screen.text().contains("line 1 failed; 1 commands sent after it had already run"), "{}", screen.text());
    session.drain().unwrap();
}

#[test]
fn a_failure_read_ahead_stops_a_line_that_waits_for_the_replies() {
    // `quit` is never pipelined: the replies before it are read first, and
    // the failure among them stops it from being sent.
    let (mut session, peer, _screen) =
        session(vec![expect(json!({"execute": "stop"})), failed("no")], pipelined(2, false));
    session.run_line("stop", Some(1)).unwrap();
    assert!(matches!(session.run_line("quit", Some(2)), Err(Error::CommandFailed)));
    assert_eq!(peer.commands(), ["stop"]);
}

#[test]
fn with_keep_going_the_line_that_waits_for_a_failed_reply_still_runs() {
    let (mut session, peer, _screen) = session(
        vec![
            expect(json!({"execute": "stop"})),
            failed("no"),
            expect(json!({"execute": "quit"})),
            send(json!({"return": {}})),
            Step::Close,
        ],
        pipelined(2, true),
    );
    session.run_line("stop", Some(1)).unwrap();
    // It ran, and the failure before it is reported with it.
    assert!(matches!(session.run_line("quit", Some(2)), Err(Error::CommandFailed)));
    assert_eq!(peer.commands(), ["stop", "quit"]);
}

#[test]
fn wait_finds_an_event_that_came_during_the_last_command() {
    // STOP comes before stop's reply: .wait must not wait for another.
    let (mut session, _peer, _screen) = session(
        vec![expect(json!({"execute": "stop"})), send(json!({"event": "STOP"})), send(json!({"return": {}}))],
        Settings::default(),
    );
    session.run_line("stop", None).unwrap();
    assert_eq!(session.run_line(".wait STOP timeout=0.05", None).unwrap(), Flow::Continue);
}

#[test]
fn wait_reads_an_event_that_arrives_and_matches_its_data() {
    let (mut session, _peer, screen) = session(
        vec![
            expect(json!({"execute": "cont"})),
            send(json!({"return": {}})),
            send(json!({"event": "JOB", "data": {"id": "a"}})),
            send(json!({"event": "JOB", "data": {"id": "b"}})),
        ],
        Settings::default(),
    );
    session.run_line("cont", None).unwrap();
    assert_eq!(session.run_line(".wait JOB id=b", None).unwrap(), Flow::Continue);
    // Both were shown as they came.
    assert!(at(&screen.text(), r#""a""#) < at(&screen.text(), r#""b""#), "{}", screen.text());
    assert!(matches!(session.run_line(".wait JOB id=c timeout=0.05", None), Err(Error::Timeout(_))));
}

/// `.shutdown`'s first question, answered with the VM's `status`.
fn status(status: &str) -> [Step; 2] {
    [expect(json!({"execute": "query-status"})), send(json!({"return": {"status": status, "running": true}}))]
}

#[test]
fn shutdown_presses_the_button_and_ends_the_session_when_qemu_goes() {
    let mut steps = Vec::from(status("running"));
    steps.extend([
        expect(json!({"execute": "system_powerdown"})),
        send(json!({"return": {}})),
        send(json!({"event": "SHUTDOWN", "data": {"guest": true}})),
        Step::Close,
    ]);
    let (mut session, _peer, screen) = session(steps, Settings::default());
    assert_eq!(session.run_line(".shutdown", None).unwrap(), Flow::Exit);
    let shown = screen.text();
    assert!(at(&shown, "ACPI power button") < at(&shown, "stopped (ACPI)"), "{shown}");
}

#[test]
fn shutdown_of_a_paused_vm_continues_it_first() {
    let mut steps = Vec::from(status("paused"));
    steps.extend([
        expect(json!({"execute": "cont"})),
        send(json!({"return": {}})),
        expect(json!({"execute": "system_powerdown"})),
        Step::Close,
    ]);
    let (mut session, _peer, screen) = session(steps, Settings::default());
    assert_eq!(session.run_line(".shutdown", None).unwrap(), Flow::Exit);
    assert!(screen.text().contains("the VM is paused: cont"), "{}", screen.text());
}

#[test]
fn a_shutdown_that_runs_out_of_time_quits_and_says_it_was_forced() {
    let mut steps = Vec::from(status("running"));
    // The button is pressed, and nothing happens.
    steps.extend([expect(json!({"execute": "system_powerdown"})), expect(json!({"execute": "quit"})), Step::Close]);
    let (mut session, _peer, screen) = session(steps, Settings::default());
    assert!(matches!(session.run_line(".shutdown timeout=0.05", None), Err(Error::Forced(_))));
    assert!(screen.text().contains("quit after timeout"), "{}", screen.text());
}

#[test]
fn after_a_failed_shutdown_qemu_closing_is_news_again() {
    let mut steps = Vec::from(status("paused"));
    steps.extend([expect(json!({"execute": "cont"})), Step::Close]);
    let (mut session, _peer, _screen) = session(steps, Settings::default());
    assert!(matches!(session.run_line(".shutdown", None), Err(Error::Connection(_))));
    // Not the quit the session asked for: a lost connection, not an exit.
    assert!(matches!(session.idle(), Err(Error::Connection(_))));
}

#[test]
fn after_quit_qemu_closing_ends_the_session() {
    let (mut session, _peer, _screen) = session(
        vec![expect(json!({"execute": "quit"})), send(json!({"return": {}})), Step::Close],
        Settings::default(),
    );
    assert_eq!(session.run_line("quit", None).unwrap(), Flow::Exit);
}

/// `.exec`'s words become guest-exec's path and arguments as typed
/// (quotes removed, `K=V` one word); the status is polled until the
/// program exits; its output, a peer's text, shows made visible on a
/// terminal; an exit other than 0 fails the line.
#[test]
fn exec_runs_the_program_through_the_agent_and_fails_the_line_on_a_bad_exit() {
    let status = |_exited: bool| expect(json!({"execute": "guest-exec-status", "arguments": {"pid": 7}}));
    let steps = vec![
        expect(json!({"execute": "guest-exec", "arguments": {
            "path": "sh", "arg": ["-c", "echo hi", "A=B"], "capture-output": true}})),
        send(json!({"return": {"pid": 7}})),
        status(false),
        send(json!({"return": {"exited": false}})),
        status(true),
        // "hi\x1b[2J\n" and "oops\n"
        send(json!({"return": {"exited": true, "exitcode": 2, "out-data": "aGkbWzJKCg==", "err-data": "b29wcwo=",
            "out-truncated": true}})),
    ];
    let (mut session, peer, screen) = session(steps, Settings::default());
    assert!(matches!(session.run_line(".exec sh -c 'echo hi' A=B", None), Err(Error::CommandFailed)));
    let shown = screen.text();
    assert!(shown.starts_with("hi\\x1b[2J\n"), "{shown}");
    assert!(at(&shown, "oops") < at(&shown, "qmpsh: sh exited with 2"), "{shown}");
    assert!(shown.contains("cut the program's stdout"), "{shown}");
    assert!(peer.played());
}

#[test]
fn exec_that_the_guest_cannot_start_ends_as_a_shell_says() {
    let steps = vec![
        expect(json!({"execute": "guest-exec", "arguments": {"path": "nope", "arg": [], "capture-output": true}})),
        failed("Failed to execute child process “nope” (No such file or directory)"),
    ];
    let (mut session, _peer, screen) = session(steps, Settings::default());
    assert!(matches!(session.run_line(".exec nope", None), Err(Error::CommandFailed)));
    let shown = screen.text();
    assert!(shown.contains("the guest cannot run nope: Failed to execute"), "{shown}");
    assert!(shown.contains("nope exited with 127"), "{shown}");
}

#[test]
fn cat_is_for_the_guest_agent_and_sends_nothing_to_qemu() {
    let (mut session, peer, _screen) = session(vec![], Settings::default());
    let refused = session.run_line(".cat /etc/hostname", None).unwrap_err().to_string();
    assert!(refused.contains("--agent"), "{refused}");
    assert!(peer.commands().is_empty());
}
