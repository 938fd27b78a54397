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
    /// qmpsh's REPL on the QMP socket `socket` (its history under `state`)
    /// in a terminal of its own; the screen shows `qmpsh-exit=N` once it
    /// ends.
    pub fn repl(state: &std::path::Path, socket: &std::path::Path) -> Option<Tmux> {
        let command = format!(
            "env XDG_STATE_HOME={} {} {}; echo qmpsh-exit=$?; sleep 60",
            state.display(),
            env!("CARGO_BIN_EXE_qmpsh"),
            socket.display()
        );
        Tmux::start(&command)
    }

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

    /// Pastes `text` as a terminal does (`paste-buffer -p`): wrapped in the
    /// bracketed-paste marks if the program asked for them.
    pub fn paste(&self, text: &str) {
        self.run(&["set-buffer", "--", text]);
        self.run(&["paste-buffer", "-p", "-t", "0"]);
    }

    /// The pid of the program the terminal runs (its shell).
    pub fn pane_pid(&self) -> i32 {
        self.run(&["display-message", "-p", "-t", "0", "#{pane_pid}"]).trim().parse().expect("the pane's pid")
    }

    /// The screen and the last 100 lines above it.
    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "0", "-S", "-100"])
    }

    /// The screen with its colours, as the escape sequences that set them.
    pub fn screen_with_colours(&self) -> String {
        self.run(&["capture-pane", "-p", "-e", "-t", "0"])
    }

    /// The whole scrollback and the screen.
    pub fn everything(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "0", "-S", "-", "-E", "-"])
    }

    /// The pane's title, which a program sets with `ESC ] 2 ; TITLE BEL`.
    pub fn pane_title(&self) -> String {
        self.run(&["display-message", "-p", "-t", "0", "#{pane_title}"]).trim_end().to_string()
    }

    /// Waits up to 15 s until the screen satisfies `ready`, failing with
    /// the screen.
    pub fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        self.wait_within(what, Duration::from_secs(15), ready)
    }

    /// [`Tmux::wait_for`] with a limit of its own.
    pub fn wait_within(&self, what: &str, limit: Duration, ready: impl Fn(&str) -> bool) -> String {
        match self.poll(limit, &ready) {
            Ok(screen) => screen,
            Err(screen) => panic!("timed out waiting for {what}; the screen:\n{screen}"),
        }
    }

    /// Presses `key` until the screen satisfies `done` (15 s at most), for
    /// a key the program may take before it can act on it: Tab before
    /// QEMU has answered completion's question, say. Each press gets a
    /// second to show its effect before the next.
    pub fn press_until(&self, key: &str, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.keys(&[key]);
            match self.poll(Duration::from_secs(1), &done) {
                Ok(_) => return,
                Err(screen) => assert!(Instant::now() < deadline, "{key} never gave {what}; the screen:\n{screen}"),
            }
        }
    }

    /// The screen once it satisfies `ready`, or the last screen seen when
    /// `limit` has passed.
    fn poll(&self, limit: Duration, ready: &impl Fn(&str) -> bool) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return Ok(screen);
            }
            if Instant::now() >= deadline {
                return Err(screen);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (15 s at most) until the terminal turns keys like Ctrl-C into
    /// signals again: a line editor reads them as keys while it has the
    /// terminal in raw mode, and the REPL gives it back (ISIG on) once a
    /// line is entered, before running it. Ctrl-C pressed sooner is a key
    /// for the editor, not an interruption of the command.
    pub fn wait_for_signal_keys(&self) {
        use rustix::termios::{LocalModes, tcgetattr};
        let tty = self.run(&["display-message", "-p", "-t", "0", "#{pane_tty}"]);
        let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOCTTY;
        let tty = rustix::fs::open(tty.trim(), flags, rustix::fs::Mode::empty()).expect("the pane's terminal opens");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !tcgetattr(&tty).expect("the pane's terminal settings").local_modes.contains(LocalModes::ISIG) {
            assert!(Instant::now() < deadline, "the terminal stayed raw; the screen:\n{}", self.screen());
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}
