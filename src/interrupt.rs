//! Ctrl-C as a request, not a kill: once [`install`]ed (by the REPL), SIGINT
//! sets a flag that waits for QEMU check, so Ctrl-C ends a `.wait` or a slow
//! command and returns to the prompt. Scripts keep the default: Ctrl-C ends
//! qmpsh.

use std::sync::atomic::{AtomicBool, Ordering};

static PENDING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    // Only an atomic store: nothing else is safe in a signal handler.
    PENDING.store(true, Ordering::SeqCst);
}

/// Turns SIGINT into a flag for the rest of the process.
pub fn install() {
    // SAFETY: the handler only stores to an atomic; the sigaction struct is
    // zeroed and then filled in before use.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigint as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}

/// Sets the flag as Ctrl-C would (for a thread that receives SIGINT with
/// `sigwait`).
pub fn raise() {
    PENDING.store(true, Ordering::SeqCst);
}

/// Whether Ctrl-C was pressed since the last call; clears the flag.
pub fn take() -> bool {
    PENDING.swap(false, Ordering::SeqCst)
}

/// Forgets a Ctrl-C that nothing was waiting for.
pub fn clear() {
    PENDING.store(false, Ordering::SeqCst);
}
