//! Ctrl-C as a request, not a kill: once [`install`]ed (by the REPL), SIGINT
//! sets a flag that waits for QEMU check, so Ctrl-C ends a `.wait` or a slow
//! command and returns to the prompt. Scripts keep the default: Ctrl-C ends
//! qmpsh.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

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
