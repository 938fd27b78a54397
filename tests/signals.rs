//! Signals and pipes against the real binary and a real QEMU: Ctrl-C ends a
//! waiting script at once, a closed stdout ends qmpsh quietly, SIGHUP
//! makes `launch` clean up like SIGTERM, and a signal that ends the shell
//! at its prompt leaves the terminal as it found it. (Ctrl-C in the REPL
//! and SIGTERM in `launch` are tested in repl.rs and vm.rs.)

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
    // Each script, and what the line it prints right before its wait holds.
    let scripts = [
        ("query-status\n.sleep 60\n", "\"running\":true"),
        ("query-status\n.wait RESET\n", "\"running\":true"),
        ("query-status\nstop\n.wait RESET\n", "ok"),
    ];
    for (line, before_the_wait) in scripts {
        let (mut child, stdin) = script(&[socket], line);
        let lines = common::Lines::of(child.stdout.take().unwrap());
        lines.until("the reply before the wait", Duration::from_secs(10), |l| l.contains(before_the_wait));
        await_waiting(&child);
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

/// Waits until qmpsh's main thread, which runs the script, has been asleep
/// in the kernel for 50 ms on end (five looks, 10 ms apart). Called once
/// the reply before a wait is out and the whole script has been read, that
/// sleep is the wait itself: a signal sent sooner could land before it and
/// prove nothing about it.
fn await_waiting(child: &Child) {
    let stat = format!("/proc/{0}/task/{0}/stat", child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut asleep = 0;
    while asleep < 5 {
        assert!(Instant::now() < deadline, "qmpsh never settled into its wait");
        let text = std::fs::read_to_string(&stat).unwrap_or_default();
        let state = text.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        asleep = if state == Some('S') { asleep + 1 } else { 0 };
        std::thread::sleep(Duration::from_millis(10));
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
    let state = common::state_folder();
    if !common::qemu_available() {
        return;
    }
    let mut command = qmpsh_command(&["launch", "--", "-machine", "none"]);
    command.env("QMPSH_STATE_DIR", state.path());
    let mut child = Guarded(command.spawn().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"query-status\n.sleep 30\n").unwrap();
    // Its shell has answered: QEMU runs, and qmpsh knows its pid.
    let lines = common::Lines::of(child.stdout.take().unwrap());
    lines.until("the launched VM's status", Duration::from_secs(20), |l| l.contains("\"running\":true"));
    signal(&child, Signal::HUP);
    let status = wait_with_deadline(&mut child, Duration::from_secs(10)).expect("qmpsh ends on SIGHUP");
    drop(stdin);
    assert_eq!(status.code(), Some(129), "{status:?}");
    assert!(common::state_entries(state.path()).is_empty(), "the VM folder is left");
    assert!(common::qemus_in(state.path()).is_empty(), "QEMU survived");
}

/// The qmpsh process a terminal's shell (`shell`, a pid) runs, once it runs.
fn qmpsh_under(shell: i32) -> i32 {
    let children = format!("/proc/{shell}/task/{shell}/children");
    let qmpsh = std::path::Path::new(env!("CARGO_BIN_EXE_qmpsh"));
    let mut found = None;
    let started = common::eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        found = text
            .split_whitespace()
            .filter_map(|pid| pid.parse::<i32>().ok())
            .find(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == qmpsh));
        found.is_some()
    });
    assert!(started, "qmpsh never ran in the terminal");
    found.unwrap()
}

#[test]
fn a_signal_at_the_prompt_leaves_the_terminal_as_it_found_it() {
    // The line editor holds the terminal raw (no echo) with bracketed
    // paste on while it waits at the prompt; SIGTERM, SIGHUP or SIGQUIT
    // must not leave it so for the shell that comes next.
    let Some(qemu) = Qemu::start(&[]) else { return };
    for (signal, code) in [(Signal::TERM, 143), (Signal::HUP, 129), (Signal::QUIT, 131)] {
        let dir = tempfile::tempdir().unwrap();
        let (before, after) = (dir.path().join("before"), dir.path().join("after"));
        let command = format!(
            "stty -g > {before}; env XDG_STATE_HOME={home} {qmpsh} {socket}; echo qmpsh-exit=$?; \
             stty -g > {after}.part; mv {after}.part {after}; cat",
            before = before.display(),
            after = after.display(),
            home = dir.path().display(),
            qmpsh = env!("CARGO_BIN_EXE_qmpsh"),
            socket = qemu.socket.display(),
        );
        let Some(tmux) = common::tmux::Tmux::start(&command) else { return };
        tmux.wait_for("the prompt", |s| s.contains(&format!("{}>", qemu.socket.display())));
        let qmpsh = qmpsh_under(tmux.pane_pid());
        kill_process(Pid::from_raw(qmpsh).unwrap(), signal).unwrap();
        tmux.wait_for("the exit status", |s| s.contains(&format!("qmpsh-exit={code}")));
        assert!(common::eventually(Duration::from_secs(10), || after.exists()), "{signal:?}: stty never ran");
        let (before, after) = (std::fs::read_to_string(&before).unwrap(), std::fs::read_to_string(&after).unwrap());
        assert_eq!(before, after, "{signal:?}: the terminal's settings (stty -g) changed");
        // With echo back on, a paste shows as typed; with bracketed paste
        // left on, it would come wrapped in ESC [200~ ... ESC [201~.
        tmux.paste("pasted-back");
        let screen = tmux.wait_for("the paste echoed", |s| s.contains("pasted-back"));
        assert!(!screen.contains("200~"), "{signal:?}: bracketed paste is still on:\n{screen}");
    }
}
