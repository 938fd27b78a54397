//! The REPL's history file, in a real terminal (tmux) against a real QEMU.
//! It holds what was typed, so it gets the `-l` log's rules: never through
//! a symlink, never into another user's file, in a folder of the user's
//! own that others cannot reach; and lines that carry a secret are never
//! saved, however the secret is spelt. History is best effort: when it is
//! refused the shell works all the same, and says why in one line.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::Qemu;
use common::tmux::Tmux;

/// Runs the REPL on `qemu` with `$XDG_STATE_HOME` at `state`, types each
/// of `lines` (each waited for: the prompt shows again), leaves with
/// Ctrl-D, and returns the whole terminal. The shell must end with 0.
fn session(qemu: &Qemu, state: &Path, lines: &[&str]) -> String {
    let command = format!(
        "env XDG_STATE_HOME={} {} {}; echo qmpsh-exit=$?; sleep 60",
        state.display(),
        env!("CARGO_BIN_EXE_qmpsh"),
        qemu.socket.display()
    );
    let Some(tmux) = Tmux::start(&command) else { return String::new() };
    let prompt = format!("{}>", qemu.socket.display());
    let prompts = |screen: &str| screen.lines().filter(|l| l.starts_with(&prompt)).count();
    tmux.wait_for("the prompt", |s| prompts(s) == 1);
    for (n, line) in lines.iter().enumerate() {
        tmux.type_text(line);
        tmux.keys(&["Enter"]);
        tmux.wait_for(&format!("the prompt after {line}"), |s| prompts(s) == n + 2);
    }
    tmux.keys(&["C-d"]);
    let screen = tmux.wait_for("the exit status", |s| s.contains("qmpsh-exit="));
    assert!(screen.contains("qmpsh-exit=0"), "the shell works without history: {screen}");
    tmux.everything()
}

/// The one line that says why there is no history.
fn refusal(screen: &str) -> &str {
    let said: Vec<&str> = screen.lines().filter(|l| l.starts_with("qmpsh: history not kept")).collect();
    assert_eq!(said.len(), 1, "one line says why: {screen}");
    said[0]
}

/// Someone else's file, as a test that runs as root can make one: `mode`,
/// and `owner` when given.
fn planted(path: &Path, text: &str, mode: u32, owner: Option<u32>) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    if let Some(owner) = owner {
        std::os::unix::fs::chown(path, Some(owner), None).unwrap();
    }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o777
}

#[test]
fn a_history_file_that_is_a_symlink_is_not_followed() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let state = qemu.dir.path().join("state");
    fs::create_dir_all(state.join("qmpsh")).unwrap();
    fs::set_permissions(state.join("qmpsh"), fs::Permissions::from_mode(0o700)).unwrap();
    // Where root keeps its configuration, say.
    let target = qemu.dir.path().join("passwd");
    planted(&target, "root:x:0:0\n", 0o644, None);
    std::os::unix::fs::symlink(&target, state.join("qmpsh/history")).unwrap();

    let screen = session(&qemu, &state, &["query-status"]);
    assert_eq!(fs::read_to_string(&target).unwrap(), "root:x:0:0\n", "neither rewritten nor appended to");
    assert_eq!(mode(&target), 0o644, "nor made 0600");
    assert!(refusal(&screen).contains("is a symlink"), "{screen}");
}

#[test]
fn a_history_file_of_another_user_gets_nothing() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    if !common::root_available() {
        return;
    }
    let state = qemu.dir.path().join("state");
    fs::create_dir_all(state.join("qmpsh")).unwrap();
    fs::set_permissions(state.join("qmpsh"), fs::Permissions::from_mode(0o700)).unwrap();
    let theirs = state.join("qmpsh/history");
    planted(&theirs, "#V2\ntheir line\n", 0o666, Some(65534));

    let screen = session(&qemu, &state, &["query-status"]);
    assert_eq!(fs::read_to_string(&theirs).unwrap(), "#V2\ntheir line\n", "nothing of root's appended");
    assert_eq!(mode(&theirs), 0o666);
    assert!(refusal(&screen).contains("belongs to uid 65534"), "{screen}");
}

#[test]
fn a_history_folder_must_be_the_users_own_and_not_a_symlink() {
    let Some(qemu) = Qemu::start(&[]) else { return };

    // A symlink to a folder elsewhere: nothing is written there.
    let state = qemu.dir.path().join("linked");
    let elsewhere = qemu.dir.path().join("elsewhere");
    fs::create_dir_all(&state).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, state.join("qmpsh")).unwrap();
    let screen = session(&qemu, &state, &["query-status"]);
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0, "nothing created in the folder it points to");
    assert!(refusal(&screen).contains("is a symlink"), "{screen}");

    // Ours but open to others: made private, and history is kept.
    let state = qemu.dir.path().join("open");
    fs::create_dir_all(state.join("qmpsh")).unwrap();
    fs::set_permissions(state.join("qmpsh"), fs::Permissions::from_mode(0o777)).unwrap();
    let screen = session(&qemu, &state, &["query-status"]);
    assert!(!screen.contains("history not kept"), "{screen}");
    assert_eq!(mode(&state.join("qmpsh")), 0o700);
    assert_eq!(mode(&state.join("qmpsh/history")), 0o600);
    assert!(fs::read_to_string(state.join("qmpsh/history")).unwrap().contains("query-status"));

    // Another user's: refused, even with the file inside ours (root only).
    if !common::root_available() {
        return;
    }
    let state = qemu.dir.path().join("theirs");
    fs::create_dir_all(state.join("qmpsh")).unwrap();
    fs::set_permissions(state.join("qmpsh"), fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(state.join("qmpsh"), Some(65534), None).unwrap();
    let screen = session(&qemu, &state, &["query-status"]);
    assert!(refusal(&screen).contains("belongs to uid 65534"), "{screen}");
    assert_eq!(fs::read_dir(state.join("qmpsh")).unwrap().count(), 0, "no file made in their folder");
}

#[test]
fn a_secret_spelt_with_escapes_is_still_not_saved() {
    // QEMU decodes JSON escapes, and qmpsh the escapes of double-quoted
    // values and Python literals: `s\u0065cret` is `secret` to QEMU.
    let Some(qemu) = Qemu::start(&[]) else { return };
    let state = qemu.dir.path().join("state");
    let lines = [
        r#"{"execute": "object-add", "arguments": {"qom-type": "s\u0065cret", "id": "s0", "data": "hunter2"}}"#,
        r#"object-add qom-type="s\u0065cret" id=s1 data=hunter3"#,
        r#"qom-set path=/objects/s1 property="d\u0061ta" value=hunter4"#,
        r"blockdev-add driver=raw node-name=r0 file={'driver': 'https', 'url': 'https://127.0.0.1:1/x', 'coo\x6bie': 'hunter5'}",
        "query-status",
    ];
    session(&qemu, &state, &lines);
    let data = |id: &str| {
        common::query_with(
            &qemu.socket,
            serde_json::json!({"execute": "qom-get",
        "arguments": {"path": format!("/objects/{id}"), "property": "data"}}),
        )
    };
    assert_eq!(data("s0")["return"], "hunter2", "QEMU read the escape as the word it hides");
    assert_eq!(data("s1")["return"], "hunter4");
    let saved = fs::read_to_string(state.join("qmpsh/history")).unwrap();
    assert!(saved.contains("query-status"), "{saved}");
    assert!(!saved.contains("hunter"), "a secret was saved:\n{saved}");
}
