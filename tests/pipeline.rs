//! `--pipeline`: commands sent ahead of their replies, against a real QEMU.
//! What a script relies on stays true: replies print in order with events
//! where QEMU sent them, a failure names its line and says how many
//! commands after it already ran, and lines that need a reply wait for it.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{Qemu, qmpsh, query};

/// The output without event timestamps, so two runs compare.
fn shape(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|line| match line.split_once(' ') {
            Some((time, rest)) if time.len() == 12 && time.as_bytes()[2] == b':' => format!("EVENT {rest}"),
            _ => line.to_string(),
        })
        .collect()
}

#[test]
fn pipelined_output_is_the_same_as_waiting_for_each_reply() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let script = "query-status\nstop\nquery-status\ncont\nquery-status\nhmp info status\n".repeat(20);
    let waited = qmpsh(&[&qemu.socket_arg()], &script);
    let pipelined = qmpsh(&["--pipeline=8", &qemu.socket_arg()], &script);
    assert_eq!((waited.code, pipelined.code), (0, 0), "{waited:?} {pipelined:?}");
    assert_eq!(shape(&pipelined.stdout), shape(&waited.stdout));
    assert_eq!(pipelined.stdout.lines().filter(|l| l.ends_with(" STOP")).count(), 20);
}

#[test]
fn a_failure_names_its_line_and_what_ran_after_it() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let run = qmpsh(
        &["--pipeline", &qemu.socket_arg(), "-c", "stop", "-c", "no-such-command", "-c", "cont", "-c", "query-status"],
        "",
    );
    assert_eq!(run.code, 1, "{run:?}");
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert!(errors[0].starts_with("error: line 2: CommandNotFound: "), "{}", run.stderr);
    assert_eq!(errors[1], "qmpsh: line 2 failed; 2 commands sent after it had already run");
    // They did run, and their replies were shown.
    assert_eq!(query(&qemu.socket, "query-status")["return"]["status"], "running");
    assert!(run.stdout.contains(r#"{"status":"running""#), "{}", run.stdout);
}

#[test]
fn lines_that_need_a_reply_wait_for_the_window_to_drain() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    // `.wait` sees the STOP of the `stop` still in flight; a line that
    // needs the schema fetches it only after the replies before it.
    let script = "stop\n.wait STOP timeout=5\nqom-get path=/machine property=type\ncont\n";
    let run = qmpsh(&["--pipeline=4", &qemu.socket_arg()], script);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\"none-machine\""), "{}", run.stdout);
    // --keep-going goes past a failure, which still exits 1 at the end.
    let run = qmpsh(&["--pipeline=4", "--keep-going", &qemu.socket_arg()], "no-such-command\nstop\ncont\n");
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout.lines().filter(|l| *l == "ok").count(), 2, "{}", run.stdout);
}

#[test]
fn with_keep_going_a_line_that_waits_still_runs_after_a_failure() {
    // The failure is read while `quit` drains the window; `quit` must run.
    let Some(mut qemu) = Qemu::start(&[]) else { return };
    let run = qmpsh(&["--pipeline", "--keep-going", &qemu.socket_arg()], "device_del id=nope\nquit\n");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(qemu.exits_within(std::time::Duration::from_secs(5)), "quit did not run: {run:?}");
}
