//! `qmpsh launch`: a throwaway VM in a private folder, the shell on it, and
//! the VM killed and its folder removed when the shell ends, on Ctrl-C in
//! a script, on SIGTERM or SIGHUP. If qmpsh itself is killed outright, the
//! kernel kills QEMU with it (PR_SET_PDEATHSIG); only the folder remains.

use std::fs;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::thread;

use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::attach;
use crate::cli::{SessionOptions, StartOptions};
use crate::error::Error;
use crate::interrupt;
use crate::target::Target;
use crate::terminal;
use crate::vm::{self, VmDir};

/// What the signal watcher must undo: the VM's QEMU and folder, and the
/// terminal's settings.
struct Cleanup {
    vm: VmDir,
    qemu_pid: Option<i32>,
    terminal: Option<terminal::Saved>,
}

static CLEANUP: Mutex<Option<Cleanup>> = Mutex::new(None);

/// Kills QEMU, removes the folder, restores the terminal, then exits with
/// `exit_code` if given; runs once. The lock is held throughout, so when a
/// signal is being handled, the main thread (which sees QEMU go) waits here
/// instead of exiting first with a different status.
fn clean_up(exit_code: Option<i32>) {
    let Ok(mut guard) = CLEANUP.lock() else { return };
    if let Some(cleanup) = guard.take() {
        undo(cleanup);
    }
    if let Some(code) = exit_code {
        std::process::exit(code);
    }
}

fn undo(cleanup: Cleanup) {
    // Our own unreaped child, so the pid cannot have been reused; a QEMU
    // that has exited already is fine, and then there is nothing to kill.
    if let Some(pid) = cleanup.qemu_pid.and_then(Pid::from_raw)
        && kill_process(pid, Signal::KILL).is_ok()
    {
        let _ = waitpid(Some(pid), WaitOptions::empty());
    }
    let _ = fs::remove_dir_all(&cleanup.vm.dir);
    if let Some(saved) = &cleanup.terminal {
        saved.restore();
    }
}

/// Handles SIGINT, SIGTERM and SIGHUP in a thread of their own: each
/// cleans up and exits, but for Ctrl-C in the REPL, which only interrupts.
fn watch_signals(interactive: bool) -> Result<(), Error> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| Error::Io(format!("cannot watch for signals: {e}")))?;
    thread::Builder::new()
        .name("qmpsh-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGINT && interactive {
                    interrupt::raise();
                    continue;
                }
                clean_up(Some(128 + signal));
            }
        })
        .map_err(|e| Error::Io(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

/// Starts the VM, runs the shell on it, and cleans up however it ends.
pub fn launch(options: StartOptions, session: SessionOptions) -> Result<(), Error> {
    let name = format!("launch-{}", std::process::id());
    let vm = VmDir::new(&name)?;
    let interactive = session.commands.is_empty() && std::io::stdin().is_terminal();
    let terminal = interactive.then(terminal::Saved::now).flatten();
    *CLEANUP.lock().map_err(|_| Error::Io("cleanup state poisoned".into()))? =
        Some(Cleanup { vm: vm.clone(), qemu_pid: None, terminal });
    if let Err(e) = watch_signals(interactive) {
        clean_up(None);
        return Err(e);
    }
    let started = match vm::start_qemu(&vm, &options, true, None) {
        Ok(started) => started,
        Err(e) => {
            clean_up(None);
            return Err(e);
        }
    };
    if let Ok(mut cleanup) = CLEANUP.lock()
        && let Some(cleanup) = cleanup.as_mut()
    {
        cleanup.qemu_pid = Some(started.child.id() as i32);
    }
    // Registered: `vm stop` and `vm kill` may act on it like on any VM.
    drop(started.lock);
    if session.verbose {
        let accel = &started.chosen.accel;
        let _ = writeln!(std::io::stderr(), "qmpsh: accel {} ({})", accel.name, accel.why);
    }
    let result = attach::monitor(&Target::Unix(started.socket), &session);
    clean_up(None);
    result
}
