//! The terminal's settings, saved at start and put back at the end: the
//! line editor switches the terminal to raw mode in its own thread, and
//! qmpsh must never leave it that way, however it exits.

/// Settings of standard input, as they were when saved.
pub struct Saved(libc::termios);

impl Saved {
    /// The current settings, when standard input is a terminal.
    pub fn now() -> Option<Saved> {
        // SAFETY: tcgetattr fills the zeroed plain C struct we pass.
        unsafe {
            let mut termios: libc::termios = std::mem::zeroed();
            (libc::tcgetattr(libc::STDIN_FILENO, &mut termios) == 0).then_some(Saved(termios))
        }
    }

    /// Puts them back.
    pub fn restore(&self) {
        // SAFETY: settings read from the same descriptor.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.0);
        }
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
