//! The terminal's settings, saved at start and put back at the end: the
//! line editor switches the terminal to raw mode in its own thread, and
//! qmpsh must never leave it that way, however it exits.

use rustix::stdio::stdin;
use rustix::termios::{OptionalActions, Termios, tcgetattr, tcsetattr};

/// Settings of standard input, as they were when saved.
pub struct Saved(Termios);

impl Saved {
    /// The current settings, when standard input is a terminal.
    pub fn now() -> Option<Saved> {
        tcgetattr(stdin()).ok().map(Saved)
    }

    /// Puts them back (nothing to do if stdin is no longer a terminal).
    pub fn restore(&self) {
        let _ = tcsetattr(stdin(), OptionalActions::Now, &self.0);
    }
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
