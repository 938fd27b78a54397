//! Ctrl-C as a request, not a kill: once [`install`]ed (by the REPL), SIGINT
//! sets a flag that waits for QEMU check, so Ctrl-C ends a `.wait` or a slow
//! command and returns to the prompt. Scripts keep the default: Ctrl-C ends
//! qmpsh.
//!
//! And the signals that end qmpsh (SIGTERM, SIGHUP, SIGQUIT, and Ctrl-C
//! where it is not a request): what must not outlive qmpsh (`launch`'s VM,
//! the terminal's raw mode) is registered with [`on_ending`], and a thread
//! of its own undoes it all before qmpsh exits; a step that must finish or
//! undo what it began itself (`vm start`) has them [`Caught`] instead.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::error::{Error, signal_exit_code};

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

/// Set by [`hold`].
static HELD: AtomicBool = AtomicBool::new(false);

/// From now on a Ctrl-C stays pressed: every wait it reaches ends, not
/// only the next (several targets, each waiting on its own).
pub fn hold() {
    HELD.store(true, Ordering::SeqCst);
}

/// Whether Ctrl-C was pressed since the last call; clears the flag, unless
/// it is [`hold`]ing.
pub fn take() -> bool {
    if HELD.load(Ordering::SeqCst) { pressed() } else { pending().swap(false, Ordering::SeqCst) }
}

/// Whether Ctrl-C was pressed (and not yet taken).
pub fn pressed() -> bool {
    pending().load(Ordering::SeqCst)
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

/// What Ctrl-C does once the watcher of ending signals takes it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrlC {
    /// Sets the flag, as in the REPL.
    Interrupts,
    /// Ends qmpsh, undoing first, as in a script.
    Ends,
}

/// What an ending signal undoes, each with its registration's number.
type Undos = Vec<(u64, Box<dyn FnOnce() + Send>)>;

static UNDOS: Mutex<Undos> = Mutex::new(Vec::new());

/// The watcher's handle, once it runs.
static WATCHER: Mutex<Option<Handle>> = Mutex::new(None);

/// [`CtrlC`] as the watcher reads it: 0 until set, 1 interrupts, 2 ends.
static CTRL_C: AtomicU8 = AtomicU8::new(0);

/// An undo registered with [`on_ending`]: run by an ending signal, by
/// [`Pending::run`], or dropped unrun.
pub struct Pending(u64);

/// Registers `undo`, to run before qmpsh exits on SIGTERM, SIGHUP or
/// SIGQUIT (and Ctrl-C, after [`ctrl_c_too`] with [`CtrlC::Ends`]); the
/// newest runs first, and then qmpsh exits with 128 + the signal's number.
pub fn on_ending(undo: impl FnOnce() + Send + 'static) -> Result<Pending, Error> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    watcher()?;
    let id = NEXT.fetch_add(1, Ordering::SeqCst);
    undos()?.push((id, Box::new(undo)));
    Ok(Pending(id))
}

/// Has the watcher take Ctrl-C too, to do as `ctrl_c` says.
pub fn ctrl_c_too(ctrl_c: CtrlC) -> Result<(), Error> {
    CTRL_C.store(if ctrl_c == CtrlC::Interrupts { 1 } else { 2 }, Ordering::SeqCst);
    watcher()?.add_signal(SIGINT).map_err(|e| Error::Io(format!("cannot watch for Ctrl-C: {e}")))
}

impl Pending {
    /// Runs the undo now, unless a signal runs it already: then this waits
    /// for qmpsh to exit.
    pub fn run(self) {
        let Ok(mut undos) = UNDOS.lock() else { return };
        if let Some(at) = undos.iter().position(|(id, _)| *id == self.0) {
            let (_, undo) = undos.remove(at);
            // Under the lock, so that a signal waits until it is done.
            undo();
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Ok(mut undos) = UNDOS.lock() {
            undos.retain(|(id, _)| *id != self.0);
        }
    }
}

fn undos() -> Result<std::sync::MutexGuard<'static, Undos>, Error> {
    UNDOS.lock().map_err(|_| Error::Io("the list of what to undo on a signal is poisoned".into()))
}

/// The handle of the watcher thread, started on the first call.
fn watcher() -> Result<Handle, Error> {
    let mut watcher = WATCHER.lock().map_err(|_| Error::Io("the signal watcher is poisoned".into()))?;
    if let Some(handle) = watcher.as_ref() {
        return Ok(handle.clone());
    }
    let mut signals =
        Signals::new([SIGTERM, SIGHUP, SIGQUIT]).map_err(|e| Error::Io(format!("cannot watch for signals: {e}")))?;
    let handle = signals.handle();
    thread::Builder::new()
        .name("qmpsh-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGINT && CTRL_C.load(Ordering::SeqCst) != 2 {
                    raise();
                    continue;
                }
                end(signal);
            }
        })
        .map_err(|e| Error::Io(format!("cannot start the signal thread: {e}")))?;
    *watcher = Some(handle.clone());
    Ok(handle)
}

/// Undoes everything registered, newest first, and exits. The lock is
/// held to the end, so a [`Pending::run`] on another thread waits here
/// instead of exiting first with another status.
fn end(signal: i32) {
    let mut undos = UNDOS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    while let Some((_, undo)) = undos.pop() {
        undo();
    }
    std::process::exit(signal_exit_code(signal));
}
