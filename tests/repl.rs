//! The REPL in a real terminal (tmux), against a real QEMU with a second
//! QMP monitor that triggers events while qmpsh waits at its prompt.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::Qemu;
use common::tmux::Tmux;

/// Waits for the shell to end, and checks it said `said` and exited `code`.
fn ended(tmux: &Tmux, code: i32, said: &str) -> String {
    let screen = tmux.wait_for("the exit status", |s| s.contains("qmpsh-exit="));
    assert!(screen.contains(said), "{screen}");
    assert!(screen.contains(&format!("qmpsh-exit={code}")), "{screen}");
    screen
}

/// qmpsh's REPL on `qemu` in a terminal of its own, at its first prompt
/// (the socket's path); the screen shows `qmpsh-exit=N` once it ends.
fn repl_on(qemu: &Qemu) -> Option<(Tmux, String)> {
    repl_with(qemu, "")
}

/// The same, with qmpsh's `options` before the socket.
fn repl_with(qemu: &Qemu, options: &str) -> Option<(Tmux, String)> {
    let command = format!(
        "env XDG_STATE_HOME={} {} {options} {}; echo qmpsh-exit=$?; sleep 60",
        qemu.dir.path().display(),
        env!("CARGO_BIN_EXE_qmpsh"),
        qemu.socket.display()
    );
    let tmux = Tmux::start(&command)?;
    let prompt = format!("{}>", qemu.socket.display());
    tmux.wait_for("the prompt", |s| s.contains(&prompt));
    Some((tmux, prompt))
}

#[test]
fn a_session_in_a_real_terminal() {
    let Some((qemu, second)) = Qemu::with_second_monitor(&["-name", "term-vm"]) else { return };
    let state = qemu.dir.path().join("state");
    let command = format!(
        "env XDG_STATE_HOME={} {} {}; echo qmpsh-exit=$?; sleep 60",
        state.display(),
        env!("CARGO_BIN_EXE_qmpsh"),
        qemu.socket.display()
    );
    let Some(tmux) = Tmux::start(&command) else { return };
    tmux.wait_for("the prompt", |s| s.contains("term-vm>"));

    // A command and its reply.
    tmux.type_text("info status");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the reply", |s| s.contains("\"status\": \"running\""));

    // An event while idle, with half a line typed: it prints above the line,
    // which stays as it was. The event comes once the line shows, so it
    // cannot have come before the typing.
    let typed = "term-vm> qom-get path=/machine prop";
    tmux.type_text("qom-get path=/machine prop");
    let before = tmux.wait_for("the half line typed", |s| last_line(s) == typed);
    assert!(!before.contains(" STOP"), "{before}");
    common::query(&second, "stop");
    // The event prints first, then the line is drawn again below it, once.
    let screen = tmux.wait_for("the STOP event above the line typed", |s| s.contains(" STOP") && last_line(s) == typed);
    let lines: Vec<&str> = screen.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    assert!(lines[lines.len() - 2].ends_with(" STOP"), "the event is not right above the line: {screen}");
    assert_eq!(
        screen.matches("qom-get path=/machine prop").count(),
        1,
        "the half line is left above the event: {screen}"
    );

    // Tab completes the argument name from the live schema.
    tmux.keys(&["Tab"]);
    tmux.wait_for("property= completed", |s| s.contains("qom-get path=/machine property="));
    tmux.type_text("type");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the qom-get reply", |s| s.contains("\"none-machine\""));

    // A command only HMP has completes from HMP's own `help`, hints its
    // arguments, and runs without `hmp`.
    tmux.type_text("mouse_mo");
    tmux.keys(&["Tab"]);
    tmux.wait_for("mouse_move completed", |s| s.contains("> mouse_move"));
    tmux.type_text(" ");
    tmux.wait_for("its usage hinted", |s| s.contains("> mouse_move dx dy [dz]"));
    tmux.keys(&["C-u"]);
    tmux.type_text("help info");
    tmux.keys(&["Enter"]);
    tmux.wait_for("HMP's help", |s| s.contains("info status  -- show the current VM status"));

    // JSON over two lines.
    tmux.type_text("{\"execute\":");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the continuation prompt", |s| s.contains("\n...>"));
    tmux.type_text("\"query-name\"}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the query-name reply", |s| s.contains("\"name\": \"term-vm\""));

    // A secret is run but never saved; Ctrl-D leaves with status 0.
    tmux.type_text("set_password vnc hunter2");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the set_password reply", |s| s.contains("error: GenericError"));
    tmux.keys(&["C-d"]);
    tmux.wait_for("the exit status", |s| s.contains("qmpsh-exit=0"));

    let history = state.join("qmpsh/history");
    let mode = std::fs::metadata(&history).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(saved.contains("info status") && saved.contains("query-name"), "{saved}");
    assert!(!saved.contains("hunter2") && !saved.contains("set_password"), "{saved}");
}

#[test]
fn ctrl_c_interrupts_a_wait_and_the_shell_leaves_when_qemu_does() {
    // QEMU quitting (another client's `quit`) announces itself with
    // SHUTDOWN: the shell says so and leaves at once, exit 0, with no
    // Enter pressed.
    let Some((qemu, second)) = Qemu::with_second_monitor(&[]) else { return };
    let Some((tmux, _)) = repl_on(&qemu) else { return };
    tmux.type_text(".wait RESET");
    tmux.keys(&["Enter"]);
    tmux.wait_for_signal_keys();
    tmux.keys(&["C-c"]);
    tmux.wait_for("the interruption", |s| s.contains("qmpsh: interrupted"));
    common::query(&second, "quit");
    ended(&tmux, 0, "qmpsh: QEMU shut down (host-qmp-quit)");

    // QEMU dying unannounced is a lost connection: exit 3, also at once.
    let Some((mut qemu, _second)) = Qemu::with_second_monitor(&[]) else { return };
    let Some((tmux, _)) = repl_on(&qemu) else { return };
    tmux.type_text("query-st");
    qemu.child.kill().unwrap();
    ended(&tmux, 3, "qmpsh: QEMU closed the connection");
}

#[test]
fn a_late_reply_to_a_timed_out_command_is_not_taken_for_the_next_one() {
    // Replies are matched by order (qmpsh sends no ids on QMP): the reply
    // owed to the command that timed out is passed over when it comes.
    let mut steps = common::handshake();
    steps.extend([
        // The schema, for completion.
        common::expect("query-qmp-schema"),
        common::send(
            r#"{"return": [{"name": "query-status", "meta-type": "command", "arg-type": "0", "ret-type": "0"},
            {"name": "query-name", "meta-type": "command", "arg-type": "0", "ret-type": "0"},
            {"name": "0", "meta-type": "object", "members": []}]}
"#,
        ),
        // HMP's commands, for completion.
        common::expect_with("human-monitor-command", serde_json::json!({"command-line": "help"})),
        common::send("{\"return\": \"help|? [cmd] -- show the help\\r\\n\"}\n"),
        // The VM's name, for the prompt.
        common::expect("query-name"),
        common::send("{\"return\": {}}\n"),
        common::expect("query-status"),
        common::Step::Pause(Duration::from_millis(1400)),
        common::expect("query-name"),
        common::send("{\"return\": {\"status\": \"late\"}}\n"),
        common::send("{\"return\": {\"name\": \"on-time\"}}\n"),
        common::Step::ExpectHangUp,
    ]);
    let server = common::FakeServer::start(steps);
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "env XDG_STATE_HOME={} {} {} --timeout 1; echo qmpsh-exit=$?; sleep 60",
        dir.path().display(),
        env!("CARGO_BIN_EXE_qmpsh"),
        server.socket_arg()
    );
    let Some(tmux) = Tmux::start(&command) else { return };
    tmux.wait_for("the prompt", |s| s.contains(">"));
    tmux.type_text("query-status");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the timeout", |s| s.contains("no reply to query-status"));
    tmux.type_text("query-name");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the reply", |s| s.contains("on-time"));
    assert!(!screen.contains("late"), "{screen}");
    tmux.keys(&["C-d"]);
    tmux.wait_for("the exit status", |s| s.contains("qmpsh-exit=0"));
    server.finish();
}

#[test]
fn a_forced_shutdown_ends_the_repl_with_4_and_an_interrupted_one_is_forgotten() {
    // `-machine none` has no power button that anything listens to: the
    // stop ends in `quit`, and the shell must not prompt for a dead QEMU.
    let Some((qemu, _second)) = Qemu::with_second_monitor(&[]) else { return };
    let Some((tmux, prompt)) = repl_on(&qemu) else { return };
    tmux.type_text(".shutdown timeout=0.5");
    tmux.keys(&["Enter"]);
    let screen = ended(&tmux, 4, "quit after timeout");
    assert_eq!(screen.matches(&prompt).count(), 1, "a prompt after the forced stop: {screen}");

    // Ctrl-C during a stop: QEMU dying later is a lost connection (3),
    // not the quit qmpsh asked for.
    let Some((mut qemu, _second)) = Qemu::with_second_monitor(&[]) else { return };
    let Some((tmux, _)) = repl_on(&qemu) else { return };
    tmux.type_text(".shutdown timeout=30");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the button pressed", |s| s.contains("POWERDOWN"));
    tmux.keys(&["C-c"]);
    tmux.wait_for("the interruption", |s| s.contains("qmpsh: interrupted"));
    qemu.child.kill().unwrap();
    ended(&tmux, 3, "qmpsh: QEMU closed the connection");
}

#[test]
fn lines_typed_ahead_in_one_burst_all_run() {
    // As a paste without bracketed paste, `expect` or tmux send-keys types
    // them: the second and third arrive while the first still runs.
    let Some((qemu, second)) = Qemu::with_second_monitor(&[]) else { return };
    let major = common::query(&second, "query-version")["return"]["qemu"]["major"].clone();
    let Some((tmux, prompt)) = repl_on(&qemu) else { return };
    tmux.keys(&["query-name", "Enter", "query-status", "Enter", "info version", "Enter"]);
    let screen = tmux.wait_for("all three replies and a prompt again", |s| {
        s.contains(&format!("\"major\": {major}")) && s.matches(&prompt).count() == 4
    });
    assert!(screen.contains(&format!("{prompt} query-status")), "{screen}");
    assert!(screen.contains("\"status\": \"running\""), "{screen}");
    assert_eq!(screen.matches(&prompt).count(), 4, "{screen}");
}

/// Presses Tab until the screen shows what `done` looks for: the first Tab
/// may come before QEMU has answered, as completion waits only 100 ms.
fn tab_until(tmux: &Tmux, what: &str, done: impl Fn(&str) -> bool) {
    tmux.press_until("Tab", &format!("the completion for {what}"), done);
}

/// What Tab should make of a line.
enum Shows {
    Line(&'static str),
    List(&'static [&'static str]),
}

fn last_line(screen: &str) -> String {
    screen.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim_end().to_string()
}

#[test]
fn completion_offers_what_the_vm_has_now() {
    // Without qemu-img (and QMPSH_ALLOW_SKIP=1) only snapshot names go untested.
    let found = common::qemu_img_available();
    let args = [
        "-machine pc -accel tcg -S -m 64 -netdev user,id=net0 -device e1000,netdev=net0,id=nic0",
        "-blockdev driver=null-co,node-name=disk0,read-only=on -device virtio-blk-pci,drive=disk0,id=vd0",
        "-drive if=none,id=drv0,driver=null-co,read-only=on -device qemu-xhci,id=xhci -device usb-tablet,id=tab0",
        "-chardev null,id=ch0 -object iothread,id=io0",
    ];
    let Some(qemu) = Qemu::start_with(|dir| {
        let mut args: Vec<String> = args.join(" ").split(' ').map(String::from).collect();
        // A qcow2 disk can hold the snapshot `loadvm` completes.
        let image = dir.join("snap.qcow2");
        let made = found
            && std::process::Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&image)
                .arg("16M")
                .status()
                .is_ok_and(|s| s.success());
        if made {
            args.extend(["-drive".into(), format!("if=none,id=snapdisk,file={}", image.display())]);
        }
        args
    }) else {
        return;
    };
    let Some((tmux, prompt)) = repl_on(&qemu) else { return };
    // Each line typed, and what Tab makes of it: the line completed, or a
    // list that holds these.
    let cases: &[(&str, Shows)] = &[
        ("qom-list path=/machine/per", Shows::List(&["/machine/peripheral-anon"])),
        // Argument names beside positional values.
        ("qom-list pa", Shows::Line("qom-list path=")),
        ("qom-get p", Shows::List(&["path=", "property="])),
        ("qom-get path=/machine/peripheral/nic0 property=ma", Shows::Line("property=mac")),
        ("device_add e1000-8254", Shows::List(&["e1000-82544gc", "e1000-82545em"])),
        ("device_add e1000,netd", Shows::Line("device_add e1000,netdev=")),
        ("device_add driver=usb-tablet por", Shows::Line("device_add driver=usb-tablet port=")),
        ("device_del ", Shows::List(&["nic0", "tab0", "vd0"])),
        ("blockdev-del node-name=di", Shows::Line("blockdev-del node-name=disk0")),
        // Inside a quote begun, the value completes in it, left open.
        ("blockdev-del node-name=\"di", Shows::Line("blockdev-del node-name=\"disk0")),
        ("chardev-remove id=c", Shows::List(&["ch0", "compat_monitor0"])),
        ("netdev_del ne", Shows::Line("netdev_del net0")),
        ("object-del id=i", Shows::Line("object-del id=io0")),
        (".cpu ", Shows::Line(".cpu 0")),
        ("object-add qom-type=iothr", Shows::Line("object-add qom-type=iothread")),
        ("block_resize drv", Shows::Line("block_resize drv0")),
        ("migrate_set_capability xbz", Shows::Line("migrate_set_capability xbzrle")),
        ("migrate_set_parameter max-ban", Shows::Line("migrate_set_parameter max-bandwidth")),
    ];
    for (typed, shows) in cases {
        tmux.type_text(typed);
        tab_until(&tmux, typed, |s| match shows {
            Shows::Line(text) => last_line(s).starts_with(&prompt) && last_line(s).contains(text),
            Shows::List(names) => names.iter().all(|n| s.contains(n)),
        });
        tmux.keys(&["C-u"]);
    }

    // Paths are children: /machine's unset memory-backend link is none.
    tmux.type_text("qom-list path=/machine/");
    tab_until(&tmux, "/machine's children", |s| s.contains("/machine/peripheral-anon"));
    assert!(!tmux.screen().contains("/machine/memory-backend"), "{}", tmux.screen());
    tmux.keys(&["C-u"]);

    if found {
        tmux.type_text("savevm snap1");
        tmux.keys(&["Enter"]);
        tmux.wait_for("the snapshot", |s| last_line(s) == prompt);
        tmux.type_text("loadvm sn");
        tab_until(&tmux, "loadvm", |s| last_line(s).contains("loadvm snap1"));
        tmux.keys(&["C-u"]);
    }

    // The hint names the argument under the cursor: its type, and whether
    // it is needed.
    tmux.type_text("qom-get path=/m");
    tmux.wait_for("the hint for path", |s| last_line(s).contains("(path: string, required)"));
    tmux.keys(&["C-u"]);
    // A quoted value with spaces is one word, and so is JSON not yet closed.
    tmux.type_text("qom-set path=/machine property=type value=\"a b");
    tmux.wait_for("the hint for a quoted value", |s| last_line(s).contains("(value: any, required)"));
    tmux.keys(&["C-u"]);
    tmux.type_text("qom-set path=/machine property=type value={\"a\": \"b c");
    tmux.wait_for("the hint for a JSON value", |s| last_line(s).contains("(value: any, required)"));
    tmux.keys(&["C-u"]);

    // A device deleted is no longer offered.
    tmux.type_text("device_del tab0");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the device's deletion", |s| s.contains("DEVICE_DELETED"));
    tmux.type_text("device_del ");
    tab_until(&tmux, "device_del after the deletion", |s| {
        let after = s.rfind("DEVICE_DELETED").map_or("", |at| &s[at..]);
        let after = after.split_once('\n').map_or("", |(_, rest)| rest);
        after.contains("nic0") && after.contains("vd0") && !after.contains("tab0")
    });
    tmux.keys(&["C-u"]);

    // A stopped QEMU answers nothing: Tab gives up after a moment and the
    // line goes on taking keys.
    let pid = rustix::process::Pid::from_raw(qemu.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    tmux.type_text("qom-list path=/machine/unattached/");
    tmux.keys(&["Tab"]);
    tmux.type_text("xyz");
    let typed = tmux.wait_within("typing while QEMU is stopped", Duration::from_secs(3), |s| {
        last_line(s).contains("/machine/unattached/xyz")
    });
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    assert!(!typed.contains("error"), "{typed}");
    tmux.keys(&["C-u"]);
    tmux.type_text("info status");
    tmux.keys(&["Enter"]);
    tmux.wait_for("a reply once QEMU goes on", |s| s.contains("\"status\": \"prelaunch\""));
}

#[test]
fn a_transaction_block_continues_at_its_own_prompt() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let Some((tmux, prompt)) = repl_on(&qemu) else { return };
    tmux.type_text("transaction(");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the transaction prompt", |s| last_line(s) == "transaction>");
    tmux.type_text("abort");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the second action's prompt", |s| last_line(s) == "transaction>" && s.contains("transaction> abort"));
    tmux.type_text(")");
    tmux.keys(&["Enter"]);
    // The block went as one transaction: QEMU ran its abort action.
    let screen = tmux.wait_for("the transaction's error", |s| s.contains("Transaction aborted"));
    assert!(screen.contains("error: GenericError: Transaction aborted using Abort action"), "{screen}");
    tmux.wait_for("the prompt again", |s| last_line(s) == prompt);
}

#[test]
fn colour_on_a_terminal_is_off_with_no_color_or_term_dumb() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let qmpsh = env!("CARGO_BIN_EXE_qmpsh");
    let socket = qemu.socket.display();
    for (env, coloured) in [("", true), ("NO_COLOR=1", false), ("TERM=dumb", false)] {
        let command = format!("env {env} {qmpsh} {socket} -c 'info status'; echo qmpsh-exit=$?; sleep 60");
        let Some(tmux) = Tmux::start(&command) else { return };
        tmux.wait_for("the reply", |s| s.contains("qmpsh-exit=0"));
        let screen = tmux.screen_with_colours();
        assert!(screen.contains("\"running\""), "{env}: {screen}");
        assert_eq!(screen.contains("\x1b["), coloured, "{env:?}: {screen:?}");
    }
}

#[test]
fn with_dash_h_tab_and_hints_read_every_line_as_hmp() {
    // `query-status` is QMP's, which HMP text cannot name: nothing to
    // complete, so what is typed next follows what was typed.
    let Some((qemu, _second)) = Qemu::with_second_monitor(&[]) else { return };
    let Some((tmux, prompt)) = repl_with(&qemu, "-H") else { return };
    tmux.type_text("mouse_mo");
    tab_until(&tmux, "an HMP name", |s| last_line(s).contains("> mouse_move"));
    tmux.type_text(" ");
    tmux.wait_for("its usage hinted", |s| last_line(s).contains("> mouse_move dx dy [dz]"));
    tmux.keys(&["C-u"]);
    tmux.type_text("query-st");
    tmux.keys(&["Tab"]);
    tmux.type_text("x");
    tmux.wait_for("no QMP name completed", |s| last_line(s) == format!("{prompt} query-stx"));
    tmux.keys(&["C-u"]);
    tmux.type_text("info status");
    tmux.keys(&["Enter"]);
    tmux.wait_for("HMP's text reply", |s| s.contains("VM status: running"));
}

#[test]
fn info_commands_print_tables_on_a_terminal_and_json_when_piped() {
    // A PC with two CPUs: `info cpus`, `info chardev` and `info pci` have
    // rows to show.
    let Some(qemu) = Qemu::start_args(|_| {
        ["-machine", "pc", "-accel", "tcg", "-S", "-smp", "2", "-m", "64", "-chardev", "null,id=quiet0"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }) else {
        return;
    };
    let Some((tmux, _)) = repl_on(&qemu) else { return };
    let shown = |line: &str, wanted: &str| {
        tmux.type_text(line);
        tmux.keys(&["Enter"]);
        tmux.wait_for(wanted, |s| s.contains(wanted))
    };
    let screen = shown("info cpus", "CPU  HOST THREAD");
    assert!(screen.contains("/machine/unattached/device[0]"), "{screen}");
    let screen = shown("info chardev", "LABEL");
    assert!(screen.lines().any(|l| l.starts_with("quiet0") && l.contains("null")), "{screen}");
    let screen = shown("info pci", "VENDOR:DEVICE");
    assert!(screen.contains("8086:1237"), "{screen}");
    shown("info jobs", "no jobs");
    shown("info migrate", "no migration");
    // Piped, the same lines print QEMU's JSON as before (once the REPL
    // has let go of the one QMP socket).
    drop(tmux);
    let piped = common::qmpsh(&[&qemu.socket.display().to_string()], "info jobs\ninfo chardev\n");
    assert_eq!(piped.code, 0, "{piped:?}");
    let lines: Vec<&str> = piped.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"[]"), "{piped:?}");
    assert!(lines.get(1).is_some_and(|l| l.starts_with("[{") && l.contains("\"label\":\"quiet0\"")), "{piped:?}");
}

#[test]
fn qemu_going_while_a_line_is_half_typed_says_so_on_a_line_of_its_own() {
    // The newcomer saw `r1> info staqmpsh: QEMU shut down (...)`: the
    // farewell must not be glued to what is being typed.
    let Some((qemu, second)) = Qemu::with_second_monitor(&[]) else { return };
    let Some((tmux, prompt)) = repl_on(&qemu) else { return };
    tmux.type_text("info sta");
    tmux.wait_for("the half-typed line", |s| s.contains(&format!("{prompt} info sta")));
    common::query(&second, "quit");
    let screen = ended(&tmux, 0, "qmpsh: QEMU shut down (host-qmp-quit)");
    assert!(screen.lines().any(|l| l.starts_with("qmpsh: QEMU shut down (host-qmp-quit)")), "{screen}");
    assert!(!screen.contains("staqmpsh"), "{screen}");
}
