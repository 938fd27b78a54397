//! `qmpsh launch`: a throwaway VM in a private folder, the shell on it, and
//! the VM killed and its folder removed when the shell ends, on Ctrl-C in
//! a script, on SIGTERM, SIGHUP or SIGQUIT. If qmpsh itself is killed
//! outright, the kernel kills QEMU with it (PR_SET_PDEATHSIG); only the
//! folder remains.

use std::fs;
use std::io::{self, Write};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};

use crate::error::Error;
use crate::interrupt::{self, CtrlC};
use crate::shell::attach;
use crate::shell::attach::Config;
use crate::target::Target;
use crate::ui::output;
use crate::vm::{self, StartOptions, VmDir};

/// Kills QEMU (`qemu_pid`, 0 before it started) and removes the VM's
/// folder, or says why it could not.
fn undo(vm: &VmDir, qemu_pid: i32) -> Result<(), Error> {
    // Our own unreaped child, so the pid cannot have been reused; a QEMU
    // that has exited already is fine, and then there is nothing to kill.
    if let Some(pid) = Pid::from_raw(qemu_pid)
        && kill_process(pid, Signal::KILL).is_ok()
    {
        let _ = waitpid(Some(pid), WaitOptions::empty());
    }
    match fs::remove_dir_all(&vm.dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::Io(format!("cannot remove {}: {e}", vm.dir.display())))
        }
        _ => Ok(()),
    }
}

/// Starts the VM, runs the shell on it, and cleans up however it ends.
pub fn launch(options: StartOptions, session: Config) -> Result<(), Error> {
    let name = format!("launch-{}", std::process::id());
    let vm = VmDir::new(&name)?;
    let interactive = session.interactive;
    let qemu_pid = Arc::new(AtomicI32::new(0));
    // What the undo could not do: for the end of the launch, or said by
    // the undo itself when a signal runs it, on the signal's thread (the
    // signal's exit follows).
    let undone = Arc::new(Mutex::new(Ok(())));
    let launching = std::thread::current().id();
    let cleanup = {
        let (vm, qemu_pid, undone) = (vm.clone(), Arc::clone(&qemu_pid), Arc::clone(&undone));
        interrupt::on_ending(move || {
            let result = undo(&vm, qemu_pid.load(Ordering::SeqCst));
            if let Err(e) = &result
                && std::thread::current().id() != launching
            {
                let _ = output::stderr().write_all(format!("qmpsh: {e}\n").as_bytes());
            }
            if let Ok(mut slot) = undone.lock() {
                *slot = result;
            }
        })?
    };
    // The folder promised to go: one left behind is a failure.
    let clean_up = move || {
        cleanup.run();
        undone.lock().map_or(Ok(()), |mut slot| std::mem::replace(&mut *slot, Ok(())))
    };
    // Ctrl-C at the prompt only interrupts; in a script it ends qmpsh, and
    // the VM with it.
    interrupt::ctrl_c_too(if interactive { CtrlC::Interrupts } else { CtrlC::Ends })?;
    let started = match vm::start_qemu(&vm, &options, true, None) {
        Ok(started) => started,
        Err(e) => {
            // The start's own error says more than one about its folder
            // (which a start that fails removes itself).
            let _ = clean_up();
            return Err(e);
        }
    };
    qemu_pid.store(started.child.id() as i32, Ordering::SeqCst);
    // Registered: `vm stop` and `vm kill` may act on it like on any VM.
    drop(started.lock);
    if session.style.verbose {
        let accel = &started.chosen.accel;
        let _ = writeln!(output::stderr(), "qmpsh: accel {} ({})", accel.name, accel.why);
    }
    let result = attach::monitor(&Target::Unix(started.socket), &session);
    result.and(clean_up())
}
