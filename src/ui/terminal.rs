//! The terminal's settings, saved at start and put back at the end: the
//! line editor switches the terminal to raw mode in its own thread, and
//! qmpsh must never leave it that way, however it exits. And which of the
//! standard streams are terminals, read once at start.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::stdio::stdin;
use rustix::termios::{OptionalActions, Termios, tcgetattr, tcsetattr};

/// Which standard streams are terminals: read once, when the command line
/// is decided (colour, pretty JSON, the REPL or a script).
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl Facts {
    pub fn now() -> Facts {
        use rustix::termios::isatty;
        Facts {
            stdin: isatty(rustix::stdio::stdin()),
            stdout: isatty(rustix::stdio::stdout()),
            stderr: isatty(rustix::stdio::stderr()),
        }
    }
}

/// Settings of standard input, as they were when saved.
#[derive(Clone)]
pub struct Saved(Termios);

impl Saved {
    /// The current settings, when standard input is a terminal.
    pub fn now() -> Option<Saved> {
        tcgetattr(stdin()).ok().map(Saved)
    }

    /// Puts them back (nothing to do if stdin is no longer a terminal).
    pub fn restore(&self) {
        self.restore_to(stdin());
    }

    /// Puts them back on `terminal`, the one stdin was.
    pub fn restore_to(&self, terminal: impl AsFd) {
        let _ = tcsetattr(terminal, OptionalActions::Now, &self.0);
    }
}

/// Leaves the terminal as it was before the line editor took it, from any
/// thread (for a signal that ends qmpsh while the editor reads): the saved
/// settings back, and bracketed paste, which the editor turns on in
/// raw mode, off again. Writes to the file descriptor itself, past
/// stdout's lock, which another thread may hold.
pub fn leave(saved: &Saved) {
    saved.restore();
    if rustix::termios::isatty(rustix::stdio::stdout()) {
        let _ = rustix::io::write(rustix::stdio::stdout(), BRACKETED_PASTE_OFF);
    }
}

/// What turns a terminal's bracketed paste mode off.
const BRACKETED_PASTE_OFF: &[u8] = b"\x1b[?2004l";

/// Ends a read of the line editor's that nothing will answer: its input,
/// stdin, becomes /dev/null, so the read sees end-of-file and the editor
/// stops drawing. For leaving only. Returns the terminal stdin was, to put
/// its settings back on.
pub fn end_input() -> io::Result<OwnedFd> {
    let terminal = rustix::io::dup(stdin())?;
    let null = rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::stdio::dup2_stdin(&null)?;
    Ok(terminal)
}

/// Restores the saved settings when dropped.
pub struct RestoreOnDrop(pub Option<Saved>);

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            saved.restore();
        }
    }
}
