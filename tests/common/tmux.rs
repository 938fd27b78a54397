//! A terminal for the REPL tests: a tmux server of the test's own (so tests
//! do not see each other), typed into and read back.

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// A tmux server whose socket lives in a temporary folder of its own
/// (`-S`; `-L` would leave the socket in /tmp/tmux-UID/): the server is
/// killed and the folder removed when dropped.
pub struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Runs `command` in a 150x40 terminal; `None` when tmux is missing and
    /// [`super::missing`] lets the test skip.
    pub fn start(command: &str) -> Option<Tmux> {
        let found = Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success());
        if !found {
            super::missing("tmux", "apt-get install -y tmux");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let tmux = Tmux { socket: dir.path().join("tmux.sock"), _dir: dir };
        // Scrollback enough for a long event stream to be counted.
        let history = ["start-server", ";", "set-option", "-g", "history-limit", "50000", ";"];
        tmux.run(&[&history[..], &["new-session", "-d", "-x", "150", "-y", "40", command]].concat());
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-S").arg(&self.socket).args(args).output().expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types text; `Enter`, `Tab`, `C-d` and friends are keys.
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Types literal text (no key names).
    pub fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "0", "-l", text]);
    }

    /// The screen and the last 100 lines above it.
    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "0", "-S", "-100"])
    }

    /// The whole scrollback and the screen.
    pub fn everything(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "0", "-S", "-", "-E", "-"])
    }

    /// Waits up to 15 s until the screen satisfies `ready`, failing with
    /// the screen.
    pub fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        self.wait_within(what, Duration::from_secs(15), ready)
    }

    /// [`Tmux::wait_for`] with a limit of its own.
    pub fn wait_within(&self, what: &str, limit: Duration, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; the screen:\n{screen}");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}
