//! `.wait job=ID` and `.wait migration` against a real QEMU: a throttled
//! mirror watched to `ready` and, after `job-complete`, to its end; a job
//! that fails ending with QEMU's error and exit 1; a timeout (4); and a
//! migration between two local QEMUs watched to `completed`.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Qemu, qemu_img_available, qmpsh, query};

/// A 64 MiB qcow2 at `dir/name`, every byte written (a mirror copies
/// what is allocated), and an empty one of the same size for a target.
fn disks(dir: &Path) {
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "{program} {args:?}: {out:?}");
    };
    run("qemu-img", &["create", "-q", "-f", "qcow2", "src.qcow2", "64M"]);
    run("qemu-io", &["-f", "qcow2", "-c", "write -q -P 0x5a 0 64M", "src.qcow2"]);
    run("qemu-img", &["create", "-q", "-f", "qcow2", "dst.qcow2", "64M"]);
}

/// The lines that add the two disks as `src` and `dst`.
const ADD_DISKS: &str = "blockdev-add driver=qcow2 node-name=src file.driver=file file.filename=src.qcow2\n\
                         blockdev-add driver=qcow2 node-name=dst file.driver=file file.filename=dst.qcow2\n";

fn qemu_with_disks() -> Option<Qemu> {
    if !qemu_img_available() {
        return None;
    }
    let qemu = Qemu::start(&[])?;
    disks(qemu.dir.path());
    Some(qemu)
}

#[test]
fn a_throttled_mirror_is_watched_to_ready_then_to_its_end() {
    let Some(qemu) = qemu_with_disks() else { return };
    // 64 MiB at 16 MiB/s: some 4 s of running before it is ready.
    let script = format!(
        "{ADD_DISKS}blockdev-mirror job-id=m0 device=src target=dst sync=full speed=16777216\n\
         .wait job=m0 timeout=60\n\
         job-complete id=m0\n\
         .wait job=m0 timeout=60\n"
    );
    let run = qmpsh(&[&qemu.socket_arg()], &script);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("job m0: ")).collect();
    assert!(lines.first().is_some_and(|l| l.starts_with("job m0: running")), "{run:?}");
    let ready = lines.iter().position(|l| l.starts_with("job m0: ready: job-complete id=m0 finishes it"));
    let ready = ready.unwrap_or_else(|| panic!("no ready line: {run:?}"));
    // The second wait does not stop at the ready it began with: the job
    // ends once job-complete has switched to the target.
    assert_eq!(lines.last(), Some(&"job m0: completed"), "{run:?}");
    assert!(ready < lines.len() - 1, "{run:?}");
    assert_eq!(query(&qemu.socket, "query-jobs")["return"], serde_json::json!([]));
}

#[test]
fn a_job_that_fails_ends_the_wait_with_qemus_error_and_exit_1() {
    let Some(qemu) = qemu_with_disks() else { return };
    // Every data write to the target fails: blkdebug under its qcow2
    // layer turns each into EIO, and the backup job ends in error.
    let bad = r#"{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "bad",
        "file": {"driver": "blkdebug", "inject-error": [{"event": "write_aio", "errno": 5}],
                 "image": {"driver": "file", "filename": "dst.qcow2"}}}}"#
        .replace('\n', " ");
    let script = format!(
        "blockdev-add driver=qcow2 node-name=src file.driver=file file.filename=src.qcow2\n{bad}\n\
         blockdev-backup job-id=b0 device=src target=bad sync=full\n\
         .wait job=b0 timeout=60\n\
         query-name\n"
    );
    let run = qmpsh(&[&qemu.socket_arg()], &script);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("qmpsh: job b0 failed: Input/output error"), "{run:?}");
    // A script stops at the first failed line, as at a QMP error.
    assert!(!run.stdout.contains("\"name\""), "{run:?}");
}

#[test]
fn waiting_for_a_job_times_out_with_4_and_an_unknown_job_is_1() {
    let Some(qemu) = qemu_with_disks() else { return };
    let script = format!(
        "{ADD_DISKS}blockdev-mirror job-id=slow device=src target=dst sync=full speed=1048576\n.wait job=slow timeout=1\n"
    );
    let run = qmpsh(&[&qemu.socket_arg()], &script);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("job slow still runs after 1 s"), "{run:?}");
    let unknown = qmpsh(&[&qemu.socket_arg()], ".wait job=nosuch timeout=5\n");
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(unknown.stderr.contains("QEMU has no job nosuch (query-jobs lists slow)"), "{unknown:?}");
}

#[test]
fn a_migration_between_two_local_qemus_is_watched_to_completed() {
    let machine = ["-machine", "pc", "-accel", "tcg", "-m", "128"];
    let Some(destination) = Qemu::start_args(|dir| {
        let incoming = format!("unix:{}", dir.join("incoming.sock").display());
        machine.iter().map(|s| s.to_string()).chain(["-incoming".to_string(), incoming]).collect()
    }) else {
        return;
    };
    let Some(source) = Qemu::start_args(|_| machine.iter().map(|s| s.to_string()).collect()) else { return };
    let incoming = destination.dir.path().join("incoming.sock");
    let script = format!("migrate uri=unix:{}\n.wait migration timeout=120\n", incoming.display());
    let run = qmpsh(&[&source.socket_arg()], &script);
    assert_eq!(run.code, 0, "{run:?}");
    let said: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("migration: ")).collect();
    // Each status it passed through, as QEMU told it (a short migration
    // may go from setup to completed between two questions).
    assert!(said.len() >= 2, "{run:?}");
    assert!(said.first().is_some_and(|l| l.starts_with("migration: setup") || l.starts_with("migration: active")));
    assert_eq!(said.last(), Some(&"migration: completed"), "{run:?}");
    assert_eq!(query(&destination.socket, "query-status")["return"]["status"], "running");
    // `.wait migration` on a QEMU that never migrated says so: exit 1.
    let Some(idle) = Qemu::start(&[]) else { return };
    let none = qmpsh(&[&idle.socket_arg()], ".wait migration timeout=5\n");
    assert_eq!(none.code, 1, "{none:?}");
    assert!(none.stderr.contains("no migration has started"), "{none:?}");
}

/// At the prompt, a job-starting command is watched at once: a progress
/// line redrawn in place as the mirror copies, events above it, the ready
/// line at the end; Ctrl-C stops a watch without touching the job, and
/// `.watch` takes it up again.
#[test]
fn at_the_prompt_a_mirror_is_watched_live_and_ctrl_c_only_stops_watching() {
    let Some(qemu) = qemu_with_disks() else { return };
    let Some(tmux) = common::tmux::Tmux::repl(qemu.dir.path(), &qemu.socket) else { return };
    let prompt = format!("{}>", qemu.socket.display());
    tmux.wait_for("the prompt", |s| s.contains(&prompt));
    // Each line once the one before has run (the prompt is back).
    let run = |line: &str| {
        let before = tmux.screen().matches(&prompt).count();
        tmux.type_text(line);
        tmux.keys(&["Enter"]);
        tmux.wait_for(line, |s| s.matches(&prompt).count() > before);
    };
    for line in ADD_DISKS.lines() {
        run(line);
    }
    // 64 MiB at 8 MiB/s: some 8 s of copying, watched as it goes.
    tmux.type_text("blockdev-mirror job-id=m0 device=src target=dst sync=full speed=8388608");
    tmux.keys(&["Enter"]);
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let screen = loop {
        let screen = tmux.screen();
        if screen.contains("job m0: ready: job-complete id=m0") {
            break screen;
        }
        for line in screen.lines().filter(|l| l.starts_with("job m0: running  ")) {
            seen.insert(line.split("  ").nth(1).unwrap_or_default().to_string());
        }
        assert!(std::time::Instant::now() < deadline, "the mirror was not ready within 60 s: {screen}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(seen.len() >= 3, "fewer than three progress updates: {seen:?}\n{screen}");
    // The READY event printed on a line of its own, above the line.
    assert!(screen.lines().any(|l| l.contains(" BLOCK_JOB_READY ") && !l.starts_with("job m0")), "{screen}");
    tmux.wait_for("the prompt again", |s| s.trim_end().ends_with(&prompt));

    // A slow one: Ctrl-C stops watching, the job goes on; .watch resumes.
    run("job-cancel id=m0");
    tmux.wait_for("the mirror to be gone", |s| s.contains(r#"JOB_STATUS_CHANGE {"status":"null","id":"m0"}"#));
    tmux.type_text("blockdev-mirror job-id=m1 device=src target=dst sync=full speed=1048576");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the watch", |s| s.contains("job m1: running"));
    tmux.keys(&["C-c"]);
    tmux.wait_for("the watch to stop", |s| s.contains("qmpsh: stopped watching job m1: it goes on in QEMU"));
    // QEMU was asked nothing: the job still runs, as info jobs shows.
    tmux.type_text("info jobs");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the job still running", |s| s.lines().any(|l| l.starts_with("m1  mirror  running")));
    tmux.type_text(".watch");
    tmux.keys(&["Enter"]);
    let again = tmux.wait_for("the watch again", |s| s.matches("job m1: running").count() >= 2);
    assert!(again.contains(".watch"), "{again}");
    tmux.keys(&["C-c"]);
    tmux.wait_for("the watch to stop again", |s| s.matches("qmpsh: stopped watching job m1").count() >= 2);
}

#[test]
fn a_backup_ends_completed_and_json_shows_its_progress_as_lines() {
    let Some(qemu) = qemu_with_disks() else { return };
    // 64 MiB at 16 MiB/s: its progress moves between QEMU's answers.
    let script = format!(
        "{ADD_DISKS}blockdev-backup job-id=b1 device=src target=dst sync=full speed=16777216\n\
         .wait job=b1 timeout=60\n"
    );
    let run = qmpsh(&[&qemu.socket_arg(), "--json"], &script);
    assert_eq!(run.code, 0, "{run:?}");
    let said: Vec<serde_json::Value> =
        run.json_lines().into_iter().filter(|line| line.get("job").is_some_and(|j| j == "b1")).collect();
    let done: std::collections::BTreeSet<u64> = said.iter().filter_map(|line| line["done"].as_u64()).collect();
    assert!(done.len() >= 3, "fewer than three progress lines: {said:?}");
    assert_eq!(said.last().map(|line| line["outcome"].clone()), Some(serde_json::json!("completed")), "{said:?}");
    // Without --json: one line per status, and the end.
    let Some(again) = qemu_with_disks() else { return };
    let script =
        format!("{ADD_DISKS}blockdev-backup job-id=b2 device=src target=dst sync=full\n.wait job=b2 timeout=60\n");
    let run = qmpsh(&[&again.socket_arg()], &script);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.ends_with("job b2: completed\n"), "{run:?}");
}

#[test]
fn a_detached_dump_is_waited_for_to_completed() {
    let machine = ["-machine", "pc", "-accel", "tcg", "-m", "64", "-S"];
    let Some(qemu) = Qemu::start_args(|_| machine.iter().map(|s| s.to_string()).collect()) else { return };
    let script = "dump-guest-memory paging=false protocol=file:dump.elf detach=true\n.wait dump timeout=120\n";
    let run = qmpsh(&[&qemu.socket_arg()], script);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.lines().any(|l| l == "dump: completed"), "{run:?}");
    assert!(qemu.dir.path().join("dump.elf").metadata().is_ok_and(|m| m.len() > 64 << 20));
    let none = qmpsh(&[&qemu.socket_arg()], ".watch dump timeout=5\n");
    assert_eq!(none.code, 0, "a finished dump is completed still: {none:?}");
}
