//! Ctrl-C as a request, not a kill: once [`install`]ed (by the REPL), SIGINT
//! sets a flag that waits for QEMU check, so Ctrl-C ends a `.wait` or a slow
//! command and returns to the prompt. Scripts keep the default: Ctrl-C ends
//! qmpsh. And the signals that end qmpsh, [`Caught`] instead of obeyed by
//! a step that must finish or undo what it began first (`vm start`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};

/// The signals that end qmpsh: Ctrl-C, SIGHUP, SIGTERM and SIGQUIT.
pub const ENDING: [i32; 4] = [SIGINT, SIGHUP, SIGTERM, SIGQUIT];

/// Set by SIGINT (signal-hook's handler stores to it, nothing more).
fn pending() -> &'static Arc<AtomicBool> {
    static PENDING: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    PENDING.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Turns SIGINT into a flag for the rest of the process; says why when it
/// cannot (Ctrl-C then ends qmpsh, as in a script).
pub fn install() -> std::io::Result<()> {
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(pending())).map(drop)
}

/// Sets the flag as Ctrl-C would (for a thread that receives SIGINT itself).
pub fn raise() {
    pending().store(true, Ordering::SeqCst);
}

/// Whether Ctrl-C was pressed since the last call; clears the flag.
pub fn take() -> bool {
    pending().swap(false, Ordering::SeqCst)
}

/// Forgets a Ctrl-C that nothing was waiting for.
pub fn clear() {
    pending().store(false, Ordering::SeqCst);
}

/// The ending signals, caught: the first one that arrives is kept for the
/// step that installed this to ask about between its parts (`vm start`
/// ends the QEMU it is starting), instead of ending qmpsh where it
/// stands. Installed for the rest of the process.
pub struct Caught(Arc<AtomicUsize>);

impl Caught {
    pub fn install() -> std::io::Result<Caught> {
        let caught = Arc::new(AtomicUsize::new(0));
        for signal in ENDING {
            // signal-hook's handler stores the number, nothing more.
            signal_hook::flag::register_usize(signal, Arc::clone(&caught), signal as usize)?;
        }
        Ok(Caught(caught))
    }

    /// The signal that arrived, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            signal => i32::try_from(signal).ok(),
        }
    }
}

/// A signal's name (`SIGTERM`), for messages.
pub fn name(signal: i32) -> String {
    match signal {
        SIGINT => "Ctrl-C (SIGINT)".into(),
        other => signal_hook::low_level::signal_name(other).map_or_else(|| format!("signal {other}"), String::from),
    }
}
