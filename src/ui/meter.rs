//! Lines drawn in place on stderr, only when it is a terminal: a pipe or a
//! log never sees them. [`Meter`], a long copy's progress (`vm cp`): for
//! large copies, redrawn at most ten times a second, and wiped when the
//! copy ends, however it ends (its [`StatusLine`] does), so that an error
//! that follows starts on a clean line. [`StatusLine`] alone: `.watch`'s
//! progress.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::ui::output::stderr;
use crate::ui::render;
use crate::visible;

/// From how many bytes a copy is large enough to show its progress.
pub const LARGE: u64 = 8 << 20;

/// How often the line may be redrawn.
const EVERY: Duration = Duration::from_millis(100);

/// The progress of one copy.
pub struct Meter {
    label: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    /// When the line was last drawn.
    drawn: Option<Instant>,
    line: StatusLine,
}

impl Meter {
    /// A meter for a copy of `total` bytes (`None`: not known) named
    /// `label`; it draws only when `terminal` (stderr is one).
    pub fn new(label: &str, total: Option<u64>, terminal: bool) -> Meter {
        let on = terminal && total.is_none_or(|total| total >= LARGE);
        let line = StatusLine::new(on);
        Meter { label: visible::line(label), total, done: 0, started: Instant::now(), drawn: None, line }
    }

    /// `bytes` more are copied.
    pub fn add(&mut self, bytes: u64) {
        self.done = self.done.saturating_add(bytes);
        // Of a size not known, only once it is large.
        let small = self.total.is_none() && self.done < LARGE;
        if !self.line.is_on() || small || self.drawn.is_some_and(|at| at.elapsed() < EVERY) {
            return;
        }
        self.drawn = Some(Instant::now());
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        let rate = mib(self.done) / self.started.elapsed().as_secs_f64().max(0.001);
        let text = match self.total.filter(|&total| total > 0) {
            Some(total) => format!(
                "{} {:.1}/{:.1} MiB {:>3}% {rate:.1} MiB/s",
                self.label,
                mib(self.done),
                mib(total),
                render::percent(self.done, total)
            ),
            None => format!("{} {:.1} MiB {rate:.1} MiB/s", self.label, mib(self.done)),
        };
        self.line.draw(&text);
    }
}

/// A status line on stderr that is redrawn in place (`.watch`'s progress):
/// drawn only when stderr is a terminal, wiped when dropped, and wiped
/// before anything else prints so that other lines go above it.
pub struct StatusLine {
    on: bool,
    drawn: bool,
}

impl StatusLine {
    pub fn new(terminal: bool) -> StatusLine {
        StatusLine { on: terminal, drawn: false }
    }

    /// Whether it draws at all (stderr is a terminal).
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Draws `text` (made visible) in place of what was there.
    pub fn draw(&mut self, text: &str) {
        if self.on {
            let line = format!("\r{}\x1b[K", visible::line(text));
            let _ = stderr().lock().write_all(line.as_bytes());
            self.drawn = true;
        }
    }

    /// Wipes the line, if one is drawn.
    pub fn wipe(&mut self) {
        if self.drawn {
            let _ = stderr().lock().write_all(b"\r\x1b[K");
            self.drawn = false;
        }
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.wipe();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_copy_or_a_pipe_draws_nothing() {
        assert!(!Meter::new("x", Some(LARGE - 1), true).line.is_on());
        assert!(!Meter::new("x", Some(LARGE * 4), false).line.is_on());
        assert!(Meter::new("x", None, true).line.is_on());
    }
}
