//! qmpsh against a real `qemu-system-x86_64 -machine none`: what a user
//! does first, checked end to end.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{Qemu, qmpsh, query};

#[test]
fn a_piped_script_prints_replies_and_events_without_prompt_or_banner() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let script = "# a comment\n\ninfo status\nstop\ncont\npowerdown\n";
    let run = qmpsh(&[&qemu.socket_arg()], script);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{}", run.stdout);
    // As QEMU itself answers (7.2 adds "singlestep"), in its order, on one line.
    assert_eq!(lines[0], query(&qemu.socket, "query-status")["return"].to_string());
    assert!(lines[0].contains(r#""status":"running""#), "{}", lines[0]);
    assert!(lines[1].ends_with(" STOP"), "{}", lines[1]);
    assert_eq!(lines[2], "ok");
    assert!(lines[3].ends_with(" RESUME"), "{}", lines[3]);
    assert_eq!(lines[4], "ok");
    assert!(lines[5].ends_with(" POWERDOWN"), "{}", lines[5]);
    assert_eq!(lines[6], "ok");
    assert!(!run.stdout.contains("qmpsh>") && !run.stdout.contains("connected"));
}

#[test]
fn an_unknown_command_exits_1_with_its_class_and_stops_the_script() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let run = qmpsh(&[&qemu.socket_arg()], "no-such-command\nstop\n");
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("error: line 1: CommandNotFound: "), "{}", run.stderr);
    // `stop` never ran: the VM still runs.
    assert_eq!(query(&qemu.socket, "query-status")["return"]["status"], "running");
}

#[test]
fn json_mode_gives_json_lines_with_stop_and_resume() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let run = qmpsh(&["--json", &qemu.socket_arg(), "-c", "stop", "-c", "cont"], "");
    assert_eq!(run.code, 0, "{run:?}");
    let events: Vec<String> = run.json_lines().iter().filter_map(|m| m["event"].as_str().map(String::from)).collect();
    assert_eq!(events, ["STOP", "RESUME"]);
    assert_eq!(run.json_lines().iter().filter(|m| m.get("return").is_some()).count(), 2);
}

#[test]
fn a_missing_socket_exits_3_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.sock");
    let run = qmpsh(&[path.to_str().unwrap(), "-c", "stop"], "");
    assert_eq!(run.code, 3);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("no such socket file"), "{}", run.stderr);
}

#[test]
fn quit_exits_0_and_qemu_is_gone() {
    let Some(mut qemu) = Qemu::start(&[]) else {
        return;
    };
    let run = qmpsh(&[&qemu.socket_arg(), "-c", "quit"], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(qemu.exits_within(Duration::from_secs(5)), "QEMU still runs after quit");
}

#[test]
fn lines_after_quit_are_not_an_error() {
    let Some(mut qemu) = Qemu::start(&[]) else {
        return;
    };
    let run = qmpsh(&[&qemu.socket_arg()], "q\nstop\n");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(qemu.exits_within(Duration::from_secs(5)));
}

#[test]
fn a_tcp_target_works_in_each_spelling() {
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let qmp = format!("tcp:127.0.0.1:{port},server=on,wait=off");
    let Some(qemu) = Qemu::start(&["-qmp", &qmp]) else {
        return;
    };
    for target in [format!("127.0.0.1:{port}"), format!("tcp:127.0.0.1:{port}"), format!("tcp:localhost:{port}")] {
        let run = qmpsh(&[&target, "-c", "query-status"], "");
        assert_eq!(run.code, 0, "{target}: {run:?}");
        assert!(run.stdout.contains("\"running\":true"), "{target}: {}", run.stdout);
    }
    drop(qemu);
}

#[test]
fn the_log_holds_all_traffic_as_json_lines() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let log = qemu.dir.path().join("traffic.jsonl");
    let log_arg = log.to_str().unwrap();
    let run = qmpsh(&[&qemu.socket_arg(), "-l", log_arg, "-c", "stop", "-c", "cont"], "");
    assert_eq!(run.code, 0, "{run:?}");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each log line is JSON"))
        .collect();
    let summary: Vec<String> = records
        .iter()
        .map(|r| {
            let m = &r["message"];
            let what = m["execute"].as_str().or(m["event"].as_str()).unwrap_or(if m.get("QMP").is_some() {
                "greeting"
            } else {
                "return"
            });
            format!("{} {what}", r["direction"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        summary,
        [
            "received greeting",
            "sent qmp_capabilities",
            "received return",
            "sent stop",
            "event STOP",
            "received return",
            "sent cont",
            "event RESUME",
            "received return",
        ]
    );
    assert!(records.iter().all(|r| r["time"].as_str().is_some_and(|t| t.ends_with('Z'))));
    // A second run appends.
    qmpsh(&[&qemu.socket_arg(), "-l", log_arg, "-c", "stop"], "");
    assert!(std::fs::read_to_string(&log).unwrap().lines().count() > records.len());
}

#[test]
fn verbose_echoes_what_is_sent_on_stderr() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let run = qmpsh(&["-v", &qemu.socket_arg(), "-c", "stop"], "");
    assert_eq!(run.code, 0);
    assert!(run.stderr.contains(r#"-> {"execute":"stop"}"#), "{}", run.stderr);
    assert!(!run.stdout.contains("execute"));
}

#[test]
fn hmp_lines_print_text() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let run = qmpsh(&[&qemu.socket_arg()], "hmp info status\ninfo qom-tree\n");
    assert_eq!(run.code, 0, "{run:?}");
    let mut lines = run.stdout.lines();
    assert_eq!(lines.next(), Some("VM status: running"));
    // `info qom-tree` is not in the table: HMP answers it, as text.
    assert!(lines.next().is_some_and(|l| l.starts_with("/machine (none-machine)")), "{}", run.stdout);
    let all_hmp = qmpsh(&["-H", &qemu.socket_arg(), "-c", "info status"], "");
    assert_eq!(all_hmp.stdout, "VM status: running\n");
}

#[test]
fn a_socket_held_by_another_client_times_out_with_the_reason() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let holder = UnixStream::connect(&qemu.socket).unwrap();
    let mut greeting = String::new();
    BufReader::new(&holder).read_line(&mut greeting).unwrap();
    assert!(greeting.contains("QMP"));
    let run = qmpsh(&[&qemu.socket_arg(), "--timeout", "1", "-c", "stop"], "");
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("another client may be holding it"), "{}", run.stderr);
    drop(holder);
}

#[test]
fn qmp_shell_arguments_reach_qemu_typed() {
    let Some(qemu) = Qemu::start(&["-object", "memory-backend-ram,id=mem0,size=4M"]) else {
        return;
    };
    let run = qmpsh(&[&qemu.socket_arg()], "qom-get path=/objects/mem0 property=size\n");
    assert_eq!((run.code, run.stdout.as_str()), (0, "4194304\n"), "{}", run.stderr);
    let raw = qmpsh(
        &[&qemu.socket_arg()],
        "{ \"execute\": \"qom-get\",\n  \"arguments\": {\"path\": \"/objects/mem0\",\n  \"property\": \"size\"} }\n",
    );
    assert_eq!(raw.stdout, "4194304\n", "{}", raw.stderr);
}

#[test]
fn colour_follows_the_color_option() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let always = qmpsh(&["--color", "always", &qemu.socket_arg(), "-c", "info status", "-c", "stop"], "");
    assert!(always.stdout.contains("\x1b["), "{:?}", always.stdout);
    // Piped output is plain by default, and with never.
    let socket = qemu.socket_arg();
    for args in [vec![], vec!["--color", "never"]] {
        let mut all = args.clone();
        all.extend([socket.as_str(), "-c", "info status"]);
        let plain = qmpsh(&all, "");
        assert!(!plain.stdout.contains('\x1b'), "{args:?}: {:?}", plain.stdout);
    }
}

#[test]
fn a_script_that_pauses_still_prints_events_as_they_come() {
    let Some((qemu, second)) = Qemu::with_second_monitor(&[]) else { return };
    let mut child = common::Guarded(common::qmpsh_command(&[&qemu.socket_arg()]).spawn().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let lines = common::Lines::of(child.stdout.take().unwrap());
    use std::io::Write as _;
    writeln!(stdin, "info status").unwrap();
    let status = lines.until("the status", Duration::from_secs(10), |_| true);
    assert!(status[0].contains("running"), "{status:?}");
    // The script says nothing more for now; another client pauses the VM.
    common::query(&second, "stop");
    let event = lines.until("the STOP event, while stdin is quiet", Duration::from_secs(10), |_| true);
    assert!(event[0].ends_with(" STOP"), "{event:?}");
    drop(stdin);
    assert_eq!(common::wait_with_deadline(&mut child, Duration::from_secs(10)).unwrap().code(), Some(0));
}

#[test]
fn dot_wait_blocks_until_the_event_arrives() {
    let Some((qemu, second)) = Qemu::with_second_monitor(&[]) else { return };
    let mut child = common::Guarded(common::qmpsh_command(&[&qemu.socket_arg()]).spawn().unwrap());
    let stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut &stdin, b"stop\n.wait RESUME timeout=10\ninfo status\n").unwrap();
    drop(stdin);
    let lines = common::Lines::of(child.stdout.take().unwrap());
    // Once `stop` has its reply, qmpsh goes on to the wait: it must still
    // be waiting when another client resumes the VM.
    lines.until("reply to stop", Duration::from_secs(10), |l| l == "ok");
    assert_eq!(query(&second, "query-status")["return"]["status"], "paused");
    assert!(child.try_wait().unwrap().is_none(), "qmpsh did not wait");
    common::query(&second, "cont");
    let rest = lines.until("the status after the wait", Duration::from_secs(10), |l| l.contains("\"status\""));
    assert!(rest.last().unwrap().contains("\"running\":true"), "{rest:?}");
    assert_eq!(common::wait_with_deadline(&mut child, Duration::from_secs(10)).unwrap().code(), Some(0));
}

#[test]
fn dot_wait_sees_an_event_that_came_during_the_last_command_once() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    // STOP arrives before the reply to `stop`: .wait must still see it.
    let run = qmpsh(&[&qemu.socket_arg()], "stop\n.wait STOP timeout=2\n");
    assert_eq!(run.code, 0, "{run:?}");
    // An event is matched once: a second wait for it times out (exit 4).
    let twice = qmpsh(&[&qemu.socket_arg()], "cont\n.wait RESUME timeout=2\n.wait RESUME timeout=0.3\n");
    assert_eq!(twice.code, 4, "{twice:?}");
    assert_eq!(twice.stderr, "qmpsh: no RESUME event within 0.3 s\n");
}

#[test]
fn quit_through_hmp_is_success_too() {
    let Some(mut qemu) = Qemu::start(&[]) else { return };
    let run = qmpsh(&["-H", &qemu.socket_arg(), "-c", "quit", "-c", "info status"], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(qemu.exits_within(Duration::from_secs(5)));
}
