//! `qmpsh launch`: a throwaway VM in a private folder, the shell on it, and
//! the VM killed and its folder removed when the shell ends, on Ctrl-C in
//! a script, on SIGTERM or SIGHUP. If qmpsh itself is killed outright, the
//! kernel kills QEMU with it (PR_SET_PDEATHSIG); only the folder remains.

use std::fs;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::thread;

use super::start::{self, StartOptions};
use super::state::VmDir;
use crate::app;
use crate::cli::ShellOptions;
use crate::error::Error;
use crate::interrupt;
use crate::target::Target;
use crate::terminal;

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
    if let Some(pid) = cleanup.qemu_pid {
        // SAFETY: our own unreaped child, so the pid cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    let _ = fs::remove_dir_all(&cleanup.vm.dir);
    if let Some(saved) = &cleanup.terminal {
        saved.restore();
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and the threads it
/// starts later) and handles them in a thread of their own.
fn watch_signals(interactive: bool) {
    // SAFETY: plain signal-set manipulation on a zeroed sigset_t.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let _ = thread::Builder::new().name("qmpsh-signals".into()).spawn(move || {
        loop {
            let mut signal = 0;
            // SAFETY: waits for one of the blocked signals.
            if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                return;
            }
            if signal == libc::SIGINT && interactive {
                interrupt::raise();
                continue;
            }
            clean_up(Some(128 + signal));
        }
    });
}

/// Starts the VM, runs the shell on it, and cleans up however it ends.
pub fn launch(options: StartOptions, shell: ShellOptions) -> Result<(), Error> {
    let name = format!("launch-{}", std::process::id());
    let vm = VmDir::new(&name)?;
    let interactive = shell.commands.is_empty() && std::io::stdin().is_terminal();
    let terminal = interactive.then(terminal::Saved::now).flatten();
    *CLEANUP.lock().map_err(|_| Error::Io("cleanup state poisoned".into()))? =
        Some(Cleanup { vm: vm.clone(), qemu_pid: None, terminal });
    watch_signals(interactive);
    let started = match start::start(&vm, &options, true) {
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
    let result = app::shell(&Target::Unix(started.socket), &shell);
    clean_up(None);
    result
}
