// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Several targets at once, against real QEMUs (`-machine none`): one
//! script on each, every line prefixed with its target, `--json` with a
//! `"target"` member, `--table`, `--all`, the summary, the exit status of
//! the worst outcome, and Ctrl-C. libvirt's patterns and hosts are in
//! tests/libvirt.rs.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{Qemu, Run, by_target, qmpsh, qmpsh_command, summary, wait_with_deadline};

fn started(count: usize) -> Option<Vec<Qemu>> {
    (0..count).map(|_| Qemu::start(&[])).collect()
}

#[test]
fn one_script_runs_on_every_target_each_line_prefixed_in_its_order() {
    let Some(qemus) = started(3) else { return };
    // Names of different lengths: the prefixes line up all the same.
    let names = [qemus[0].socket_arg(), format!("unix:{}", qemus[1].socket_arg()), qemus[2].socket_arg()];
    let mut args: Vec<&str> = names.iter().map(String::as_str).collect();
    args.push("--color=never");
    let run = qmpsh(&args, "query-status\nstop\nquery-status\ncont\n");
    assert_eq!(run.code, 0, "{run:?}");
    let bar = run.stdout.lines().map(|l| l.find(" | ").unwrap()).collect::<Vec<_>>();
    assert!(bar.iter().all(|&at| at == bar[0]), "prefixes line up: {}", run.stdout);
    let lines = by_target(&run);
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(lines.keys().cloned().collect::<Vec<_>>(), expected);
    for name in &names {
        let mine = &lines[name];
        // Its own order: running, STOP, paused, RESUME (events among replies).
        let status: Vec<&str> = mine.iter().filter(|l| l.contains("\"status\"")).map(String::as_str).collect();
        assert_eq!(status.len(), 2, "{name}: {mine:?}");
        assert!(status[0].contains("\"running\"") && status[1].contains("\"paused\""), "{name}: {mine:?}");
        let at = |what: &str| mine.iter().position(|l| l.contains(what)).unwrap_or_else(|| panic!("{what}: {mine:?}"));
        assert!(at(" STOP") < at("\"paused\"") && at("\"paused\"") < at(" RESUME"), "{name}: {mine:?}");
    }
    let rows = summary(&run);
    assert_eq!(rows.len(), 3, "{}", run.stderr);
    assert!(rows.values().all(|(code, said)| *code == 0 && said == "ok"), "{}", run.stderr);
    assert!(run.stderr.starts_with("qmpsh: 3 targets: 3 succeeded, 0 failed"), "{}", run.stderr);
}

#[test]
fn a_dead_target_fails_its_row_and_the_others_finish() {
    let Some(qemus) = started(2) else { return };
    let gone = tempfile::tempdir().unwrap();
    let dead = gone.path().join("no.sock").display().to_string();
    let (a, b) = (qemus[0].socket_arg(), qemus[1].socket_arg());
    let run = qmpsh(&[&a, &dead, &b, "-c", "query-name", "-c", "query-status"], "");
    assert_eq!(run.code, 3, "a connection failure is the worst outcome: {run:?}");
    let lines = by_target(&run);
    assert_eq!(lines[&a].len(), 2, "{run:?}");
    assert_eq!(lines[&b].len(), 2, "{run:?}");
    assert!(!lines.contains_key(&dead), "{run:?}");
    let rows = summary(&run);
    assert_eq!(rows[&dead].0, 3, "{}", run.stderr);
    assert!(rows[&dead].1.contains("no such socket file"), "{}", run.stderr);
    assert_eq!((rows[&a].0, rows[&b].0), (0, 0), "{}", run.stderr);
    // Its error is said among the lines, with its name, once.
    let said: Vec<&str> = run.stderr.lines().filter(|l| l.contains("no such socket file")).collect();
    assert_eq!(said.len(), 2, "the line and the summary row: {}", run.stderr);
    let (name, rest) = said[0].split_once(" | ").unwrap();
    assert_eq!(name.trim_end(), dead, "{}", run.stderr);
    assert!(rest.starts_with("qmpsh: cannot connect"), "{}", run.stderr);
}

#[test]
fn a_word_that_names_nothing_stops_the_run_before_it_starts() {
    let Some(qemus) = started(1) else { return };
    let socket = qemus[0].socket_arg();
    let run = qmpsh(&[&socket, "qmpsh-no-such-vm", "-c", "query-name"], "");
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stdout, "", "nothing ran: {run:?}");
    assert!(
        run.stderr.starts_with("qmpsh: cannot connect to qmpsh-no-such-vm: no VM of that name")
            && run.stderr.lines().count() == 1,
        "{run:?}"
    );
}

#[test]
fn the_worst_outcome_decides_the_exit_status() {
    let Some(qemus) = started(2) else { return };
    let (a, b) = (qemus[0].socket_arg(), qemus[1].socket_arg());
    let run = qmpsh(&[&a, &b], "nosuch\n");
    assert_eq!(run.code, 1, "{run:?}");
    // A failed command (1) on both, then a timeout (4) on one: 4.
    let script = "nosuch\n.wait NOSUCH_EVENT timeout=1\n";
    let run = qmpsh(&[&a, &b, "--keep-going"], script);
    assert_eq!(run.code, 4, "{run:?}");
    let rows = summary(&run);
    assert_eq!((rows[&a].0, rows[&b].0), (4, 4), "{}", run.stderr);
    // And a connection that failed (3) is worse than a timeout.
    let gone = tempfile::tempdir().unwrap();
    let dead = gone.path().join("no.sock").display().to_string();
    let run = qmpsh(&[&a, &dead, &b, "--keep-going"], script);
    assert_eq!(run.code, 3, "{run:?}");
}

#[test]
fn json_output_names_the_target_in_every_object() {
    let Some(qemus) = started(2) else { return };
    let names = [qemus[0].socket_arg(), qemus[1].socket_arg()];
    let run = qmpsh(&[&names[0], &names[1], "--json"], "query-name\nstop\ncont\n");
    assert_eq!(run.code, 0, "{run:?}");
    let lines = run.json_lines();
    for name in &names {
        let mine: Vec<&serde_json::Value> = lines.iter().filter(|l| l["target"] == name.as_str()).collect();
        let events: Vec<&str> = mine.iter().filter_map(|l| l["event"].as_str()).collect();
        assert_eq!(events, ["STOP", "RESUME"], "{name}: {mine:?}");
        assert_eq!(mine.iter().filter(|l| l.get("return").is_some()).count(), 3, "{name}: {mine:?}");
    }
    assert_eq!(lines.len(), 10, "nothing else on stdout: {}", run.stdout);
}

#[test]
fn table_shows_a_row_per_target_and_a_column_per_command() {
    let Some(qemus) = started(2) else { return };
    let names = [qemus[0].socket_arg(), qemus[1].socket_arg()];
    let version = common::query(&qemus[0].socket, "query-version")["return"]["qemu"].clone();
    let version = format!("{}.{}.{}", version["major"], version["minor"], version["micro"]);
    let run = qmpsh(
        &[
            &names[0],
            &names[1],
            "--table",
            "-c",
            "query-status",
            "-c",
            ".sleep 0.1",
            "-c",
            "query-version",
            "-c",
            "nosuch",
        ],
        "",
    );
    assert_eq!(run.code, 1, "the failed command fails the run: {run:?}");
    let rows: Vec<Vec<&str>> = run.stdout.lines().map(|l| l.split("  ").filter(|c| !c.is_empty()).collect()).collect();
    assert_eq!(
        rows[0].iter().map(|c| c.trim()).collect::<Vec<_>>(),
        ["TARGET", "query-status", "query-version", "nosuch"]
    );
    assert_eq!(rows.len(), 3, "{}", run.stdout);
    for (row, name) in rows[1..].iter().zip(&names) {
        let cells: Vec<&str> = row.iter().map(|c| c.trim()).collect();
        assert_eq!(cells[..3], [name.as_str(), "running", version.as_str()], "{}", run.stdout);
        assert!(cells[3].starts_with("error: CommandNotFound"), "{}", run.stdout);
    }
}

#[test]
fn all_runs_on_every_running_vm_qmpsh_started() {
    if !common::qemu_available() {
        return;
    }
    let state = common::state_folder();
    let vm = |args: &[&str]| {
        let mut command = qmpsh_command(args);
        command.env("QMPSH_STATE_DIR", state.path());
        common::finish(command, "")
    };
    let run = vm(&["--all", "-c", "query-name"]);
    assert_eq!(run.code, 2, "none runs: {run:?}");
    assert!(run.stderr.contains("no VM started by `qmpsh vm start` is running"), "{run:?}");
    let _guard = common::Killer(state.path());
    for name in ["alpha", "b"] {
        let started = vm(&["vm", "start", name, "--accel", "tcg", "--memory", "32", "--", "-machine", "none"]);
        assert_eq!(started.code, 0, "{started:?}");
    }
    // Named twice (by --all and by name): it runs once.
    let run = vm(&["--all", "b", "-c", "query-name"]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut lines: Vec<&str> = run.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["alpha | {\"name\":\"alpha\"}", "b     | {\"name\":\"b\"}"], "{run:?}");
}

#[test]
fn the_prompt_refuses_several_targets() {
    let Some(qemus) = started(2) else { return };
    let command = format!(
        "{} {} {}; echo qmpsh-exit=$?; sleep 60",
        env!("CARGO_BIN_EXE_qmpsh"),
        qemus[0].socket_arg(),
        qemus[1].socket_arg()
    );
    let Some(tmux) = common::tmux::Tmux::start(&command) else { return };
    assert!(
        common::eventually(Duration::from_secs(10), || tmux.screen().contains("qmpsh-exit=2")),
        "{}",
        tmux.screen()
    );
    assert!(tmux.screen().contains("the shell at a prompt talks to one target"), "{}", tmux.screen());
}

#[test]
fn a_log_is_for_one_target() {
    let Some(qemus) = started(2) else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log").display().to_string();
    let run = qmpsh(&[&qemus[0].socket_arg(), &qemus[1].socket_arg(), "-l", &log, "-c", "query-name"], "");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("-l logs one target's traffic"), "{run:?}");
}

#[test]
fn ctrl_c_ends_every_target_and_leaves_each_qemu_well() {
    let Some(qemus) = started(3) else { return };
    let sockets: Vec<String> = qemus.iter().map(Qemu::socket_arg).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qmpsh"))
        .args(&sockets)
        .args(["--parallel=2", "-c", "query-status", "-c", ".wait NOSUCH_EVENT"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Both connected and waiting: their replies came.
    for _ in 0..2 {
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("a reply from each target");
        assert!(line.contains("\"status\""), "{line}");
    }
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(10)).expect("qmpsh ends at Ctrl-C");
    assert_eq!(status.code(), Some(130));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let run = Run { code: 130, stdout: String::new(), stderr };
    let rows = summary(&run);
    assert_eq!(rows.len(), 3, "{}", run.stderr);
    assert_eq!(rows[&sockets[0]], (130, "interrupted".to_string()), "{}", run.stderr);
    assert_eq!(rows[&sockets[1]], (130, "interrupted".to_string()), "{}", run.stderr);
    // The third had yet to start: it never connected.
    assert_eq!(rows[&sockets[2]], (130, "not started: interrupted".to_string()), "{}", run.stderr);
    // Each QEMU still answers a new client: the connections closed cleanly.
    for qemu in &qemus {
        assert_eq!(common::query(&qemu.socket, "query-status")["return"]["status"], "running");
    }
}

#[test]
fn a_closed_stdout_ends_every_target_quietly() {
    // `qmpsh a b c < script | head -1`: as for one target, exit 0 and no
    // error, however many targets had yet to start.
    let Some(qemus) = started(3) else { return };
    let mut args: Vec<String> = qemus.iter().map(Qemu::socket_arg).collect();
    args.push("--parallel=1".into());
    let mut child = Command::new(env!("CARGO_BIN_EXE_qmpsh"))
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), "query-status\n".repeat(2000).as_bytes()).unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("\"status\""), "{first}");
    let status = wait_with_deadline(&mut child, Duration::from_secs(30)).expect("qmpsh ends");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("interrupted"), "{stderr}");
    assert!(!stderr.contains("targets:"), "no summary of targets cut short: {stderr}");
}
