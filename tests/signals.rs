//! Signals and pipes against the real binary and a real QEMU: Ctrl-C ends a
//! waiting script at once, a closed stdout ends qmpsh quietly, and SIGHUP
//! makes `launch` clean up like SIGTERM. (Ctrl-C in the REPL and SIGTERM in
//! `launch` are tested in repl.rs and vm.rs.)

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Guarded, Qemu, qmpsh_command, wait_with_deadline};
use rustix::process::{Pid, Signal, kill_process};

fn signal(child: &Child, signal: Signal) {
    kill_process(Pid::from_child(child), signal).unwrap();
}

/// Starts qmpsh on `socket` with `script` on its stdin (kept open, as a
/// script still being written would be).
fn script(args: &[&str], script: &str) -> (Guarded, std::process::ChildStdin) {
    let mut child = Guarded(qmpsh_command(args).spawn().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).unwrap();
    (child, stdin)
}

#[test]
fn ctrl_c_ends_a_script_that_waits_at_once() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let socket = qemu.socket.to_str().unwrap();
    for line in ["query-status\n.sleep 60\n", "query-status\n.wait RESET\n", "query-status\nstop\n.wait RESET\n"] {
        let (mut child, stdin) = script(&[socket], line);
        // Its first reply says it is connected; the wait comes next.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        assert!(first.contains("running"), "{first}");
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, Signal::INT);
        let status = wait_with_deadline(&mut child, Duration::from_secs(5)).expect("Ctrl-C ends the wait");
        drop(stdin);
        // Killed by SIGINT, which a shell reports as 130.
        assert!(status.signal() == Some(2) || status.code() == Some(130), "{line:?}: {status:?}");
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_closed_stdout_ends_qmpsh_quietly() {
    // `qmpsh ... | head -1`: the reader goes away after one line.
    let Some(qemu) = Qemu::start(&[]) else { return };
    let mut command = qmpsh_command(&[qemu.socket.to_str().unwrap(), "-p", "-c", "query-qmp-schema"]);
    let mut child = Guarded(command.stdin(Stdio::null()).spawn().unwrap());
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(first, "[\n");
    let status = wait_with_deadline(&mut child, Duration::from_secs(10)).expect("qmpsh ends");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(stderr, "", "no noise about the pipe");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn sighup_makes_launch_clean_up() {
    let state = tempfile::tempdir().unwrap();
    if !common::qemu_available() {
        return;
    }
    let mut command = qmpsh_command(&["launch", "--", "-machine", "none"]);
    command.env("QMPSH_STATE_DIR", state.path());
    let mut child = Guarded(command.spawn().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b".sleep 30\n").unwrap();
    // The VM's folder appears, then its socket: QEMU runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    let socket =
        || std::fs::read_dir(state.path()).ok()?.flatten().map(|e| e.path().join("qmp.sock")).find(|s| s.exists());
    while socket().is_none() {
        assert!(Instant::now() < deadline, "the launched VM never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, Signal::HUP);
    let status = wait_with_deadline(&mut child, Duration::from_secs(10)).expect("qmpsh ends on SIGHUP");
    drop(stdin);
    assert_eq!(status.code(), Some(129), "{status:?}");
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0, "the VM folder is left");
    assert!(common::qemus_in(state.path()).is_empty(), "QEMU survived");
}
