//! Starting a managed VM: QEMU from an argument vector (never a shell
//! string), in the background, its socket, pidfile and logs in the VM's
//! folder; ready once its QMP socket greets.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::state::{AccelChoice, Chosen, VmDir, VmLock};
use super::{Accel, StartOptions};
use crate::error::Error;
use crate::interrupt::{self, Caught};
use crate::language::qemu_text::opts_path;
use crate::qemu::process::Process;
use crate::qemu::process::qmp_argument;
use crate::qemu::stop::AGENT_CHARDEV;
use crate::qmp::{self, Connect, Quiet};
use crate::target::Target;

/// How long QEMU gets to open its QMP socket.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The accelerator a VM gets, and why. `auto` is KVM when /dev/kvm opens
/// read-write and the CPU does not say it runs under a hypervisor. Nested
/// KVM (as on many CI machines) opens fine but can hang booting a kernel,
/// so it is only used when asked for with `--accel kvm`.
pub fn choose_accel(accel: Accel) -> AccelChoice {
    let asked = |name| AccelChoice { name, why: "asked for with --accel".into() };
    match accel {
        Accel::Kvm => asked("kvm"),
        Accel::Tcg => asked("tcg"),
        Accel::Auto => {
            let kvm = fs::OpenOptions::new().read(true).write(true).open("/dev/kvm");
            let nested = fs::read_to_string("/proc/cpuinfo")
                .map(|info| {
                    info.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"))
                })
                .unwrap_or(true);
            let (name, why) = match kvm {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => ("tcg", "this machine has no /dev/kvm".into()),
                Err(e) => ("tcg", format!("/dev/kvm does not open read-write ({e}); the kvm group may help")),
                Ok(_) if nested => (
                    "tcg",
                    "/dev/kvm opens, but this machine is itself a virtual machine, where nested KVM often \
                         cannot boot a kernel; --accel kvm tries it"
                        .into(),
                ),
                Ok(_) => ("kvm", "/dev/kvm opens and this machine is not a virtual machine".into()),
            };
            AccelChoice { name, why: format!("auto: {why}") }
        }
    }
}

/// A started VM.
pub struct Started {
    pub child: Child,
    pub socket: PathBuf,
    pub chosen: Chosen,
    /// The VM's folder stays locked while this lives.
    pub lock: VmLock,
}

/// QEMU's arguments for this VM.
fn argv(vm: &VmDir, options: &StartOptions, accel: &str, socket: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |a: &str| args.push(a.into());
    push("-name");
    push(&vm.name);
    push("-nodefaults");
    push("-display");
    push("none");
    push("-qmp");
    push(&qmp_argument(socket));
    push("-qmp");
    push(&qmp_argument(&vm.control_socket()));
    if options.wants_agent() {
        push("-device");
        push("virtio-serial-pci,id=qmpsh-serial");
        push("-chardev");
        push(&format!("pipe,id={AGENT_CHARDEV},path={}", opts_path(&vm.agent_pipes())));
        push("-device");
        push(&format!("virtserialport,bus=qmpsh-serial.0,chardev={AGENT_CHARDEV},name=org.qemu.guest_agent.0"));
    }
    push("-pidfile");
    push(&vm.pidfile().display().to_string());
    // `-serial file:PATH` takes PATH as it stands, commas and all, where
    // a chardev's path= is a QemuOpts value with commas doubled.
    push("-chardev");
    push(&format!("file,id=qmpsh-serial-log,path={}", opts_path(&vm.serial_log())));
    push("-serial");
    push("chardev:qmpsh-serial-log");
    push("-m");
    push(&options.memory.to_string());
    push("-smp");
    push(&options.cpus.to_string());
    push("-accel");
    push(accel);
    if options.net.is_some() || options.ssh_port.is_some() {
        let forward = options.ssh_port.map(|port| format!(",hostfwd=tcp:127.0.0.1:{port}-:22")).unwrap_or_default();
        push("-netdev");
        push(&format!("user,id=qmpsh-net{forward}"));
        push("-device");
        push("virtio-net-pci,netdev=qmpsh-net");
    }
    for disk in &options.disks {
        push("-drive");
        let format = if is_raw(disk) { ",format=raw" } else { "" };
        push(&format!("file={},if=virtio{format}", opts_path(disk)));
    }
    if let Some(iso) = &options.cdrom {
        push("-drive");
        push(&format!("file={},media=cdrom", opts_path(iso)));
    }
    for (flag, value) in [("-kernel", &options.kernel), ("-initrd", &options.initrd)] {
        if let Some(path) = value {
            push(flag);
            push(&path.display().to_string());
        }
    }
    if let Some(append) = &options.append {
        push("-append");
        push(append);
    }
    args.extend(options.extra.iter().cloned());
    args
}

/// Starts QEMU for `vm` and returns once its QMP socket greets, the VM's
/// folder locked from the check that the name is free until then. With
/// `tied`, QEMU dies with this process (for `launch`). With `caught`, an
/// ending signal that arrives meanwhile ends the QEMU being started
/// ([`Error::Signalled`]): no QEMU is left that no pidfile names. A start
/// that fails removes the folder it made.
pub fn start_qemu(vm: &VmDir, options: &StartOptions, tied: bool, caught: Option<&Caught>) -> Result<Started, Error> {
    let socket = vm.checked_socket()?;
    let options = absolute(options)?;
    let (lock, made) = vm.create_locked()?;
    match start_locked(vm, &options, tied, caught, &socket) {
        Ok((child, chosen)) => Ok(Started { child, socket, chosen, lock }),
        Err(e) if made => Err(super::forget(vm, e)),
        Err(e) => Err(e),
    }
}

/// The disk images with absolute paths: a name such as `-ofoo` then is
/// no option to qemu-img, and one such as `nbd:...` or `json:...` no
/// protocol to QEMU.
fn absolute(options: &StartOptions) -> Result<StartOptions, Error> {
    let absolute =
        |path: &Path| std::path::absolute(path).map_err(|e| Error::Usage(format!("bad path {}: {e}", path.display())));
    let mut options = options.clone();
    options.disks = options.disks.iter().map(|disk| absolute(disk)).collect::<Result<_, _>>()?;
    options.cdrom = options.cdrom.as_deref().map(absolute).transpose()?;
    Ok(options)
}

/// The FIFOs `BASE.in` and `BASE.out` of a `pipe` chardev, the user's
/// alone (0600).
fn make_fifos(base: &Path) -> Result<(), Error> {
    for end in ["in", "out"] {
        let path = base.with_extension(end);
        let mode = rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR;
        rustix::fs::mknodat(rustix::fs::CWD, &path, rustix::fs::FileType::Fifo, mode, 0)
            .map_err(|e| Error::Io(format!("cannot make the agent's FIFO {}: {e}", path.display())))?;
    }
    Ok(())
}

/// [`start_qemu`] once the folder is made and locked.
fn start_locked(
    vm: &VmDir,
    options: &StartOptions,
    tied: bool,
    caught: Option<&Caught>,
    socket: &Path,
) -> Result<(Child, Chosen), Error> {
    if let Some(running) = Process::from_pidfile(&vm.pidfile(), socket) {
        return Err(Error::Usage(format!("VM {} is already running (pid {})", vm.name, running.pid)));
    }
    for stale in [vm.socket(), vm.control_socket(), vm.pidfile()].into_iter().chain(vm.agent_files()) {
        let _ = fs::remove_file(stale);
    }
    if options.wants_agent() {
        make_fifos(&vm.agent_pipes())?;
    }
    let signalled = |what: &str| {
        let signal = caught.and_then(Caught::signal)?;
        let message = format!("vm start {}: {} arrived {what}", vm.name, interrupt::name(signal));
        Some(Error::Signalled { signal, message })
    };
    let disks = create_disks(options);
    if let Some(e) = signalled("before QEMU started: it was not started") {
        return Err(e);
    }
    disks?;
    let chosen = Chosen { accel: choose_accel(options.accel), ssh_port: options.ssh_port };
    let log =
        File::create(vm.qemu_log()).map_err(|e| Error::Io(format!("cannot write {}: {e}", vm.qemu_log().display())))?;
    let log_err = log.try_clone().map_err(|e| Error::Io(e.to_string()))?;
    // The trampoline looks the program up again (its argv[0] stays as
    // given); looking first gives a clear error for a missing QEMU.
    if super::exec::find_program(&options.qemu).is_none() {
        return Err(Error::Failed(format!(
            "{} not found: install QEMU (on Debian or Ubuntu: apt-get install qemu-system-x86), or name the binary with --qemu",
            options.qemu.display()
        )));
    }
    let this = std::env::current_exe().map_err(|e| Error::Io(format!("cannot find qmpsh's own binary: {e}")))?;
    let tied_to = tied.then(std::process::id);
    let mut command = Command::new(this);
    command.args(super::exec::arguments(&options.qemu, &argv(vm, options, chosen.accel.name, socket), tied_to));
    command.stdin(Stdio::null()).stdout(log).stderr(log_err);
    // Kept before QEMU starts: a VM whose status would be blank is not
    // started at all.
    let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    vm.keep_chosen(&chosen, started)?;
    let mut child = command.spawn().map_err(|e| Error::Io(format!("cannot start {}: {e}", options.qemu.display())))?;
    let interrupted = || caught.and_then(Caught::signal);
    let outcome = await_monitor(&mut child, socket, &interrupted);
    // Our own child, not yet reaped: its pid is still QEMU's.
    let end = |child: &mut Child| {
        let _ = child.kill();
        let _ = child.wait();
        let _ = fs::remove_file(vm.pidfile());
        let _ = fs::remove_file(socket);
    };
    match outcome {
        Ok(()) => Ok((child, chosen)),
        Err(Awaited::Signalled(signal)) => {
            end(&mut child);
            let message = format!(
                "vm start {}: {} arrived while QEMU started: QEMU (pid {}) was ended",
                vm.name,
                interrupt::name(signal),
                child.id()
            );
            Err(Error::Signalled { signal, message })
        }
        Err(Awaited::Failed(why)) => {
            end(&mut child);
            let tail = last_lines(&vm.qemu_log(), 8);
            let shown = if tail.is_empty() { String::new() } else { format!(":\n{tail}") };
            Err(Error::Failed(format!("VM {} did not start: {why}{shown}", vm.name)))
        }
    }
}

/// `--disk-size`: creates each `--disk` that does not exist yet; without
/// it, a missing disk is an error here rather than QEMU's.
fn create_disks(options: &StartOptions) -> Result<(), Error> {
    for disk in options.disks.iter().filter(|d| !d.exists()) {
        let Some(size) = options.disk_size else {
            return Err(Error::Usage(format!(
                "disk {} does not exist: add --disk-size 4G to create it, or make one with \
                 `qemu-img create -f qcow2 {} 4G` (Debian package qemu-utils)",
                disk.display(),
                disk.display()
            )));
        };
        let made = if is_raw(disk) { sparse_file(disk, size) } else { qemu_img_create(disk, size) };
        made.map_err(|why| Error::Failed(format!("cannot create disk {}: {why}", disk.display())))?;
    }
    Ok(())
}

/// A `.raw` disk is raw: QEMU is told so, as probing a raw image would
/// keep the guest from writing its first sector.
fn is_raw(disk: &Path) -> bool {
    disk.extension().is_some_and(|e| e == "raw")
}

fn qemu_img_create(disk: &Path, size: u64) -> Result<(), String> {
    if super::exec::find_program(Path::new("qemu-img")).is_none() {
        return Err("qemu-img not found (on Debian or Ubuntu: apt-get install qemu-utils)".into());
    }
    let output = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(disk)
        .arg(size.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run qemu-img: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    Err(said.lines().find(|l| !l.trim().is_empty()).unwrap_or("qemu-img failed").trim().to_string())
}

fn sparse_file(disk: &Path, size: u64) -> Result<(), String> {
    let file = fs::OpenOptions::new().write(true).create_new(true).open(disk).map_err(|e| e.to_string())?;
    file.set_len(size).map_err(|e| e.to_string())
}

/// Why QEMU's monitor was not reached.
enum Awaited {
    Failed(String),
    /// An ending signal arrived first.
    Signalled(i32),
}

/// Waits until QEMU answers on its socket, or exits, or takes too long,
/// or `interrupted` says a signal came.
fn await_monitor(child: &mut Child, socket: &Path, interrupted: &dyn Fn() -> Option<i32>) -> Result<(), Awaited> {
    let deadline = Instant::now() + START_LIMIT;
    let target = Target::Unix(socket.to_path_buf());
    loop {
        if let Some(signal) = interrupted() {
            return Err(Awaited::Signalled(signal));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Awaited::Failed(format!("QEMU exited during start ({status})")));
        }
        if socket.exists() {
            let connect = Connect { greeting_timeout: Duration::from_secs(2), negotiate: true, write_timeout: None };
            if qmp::connect(&target, connect, &mut Quiet).is_ok() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(Awaited::Failed(format!("its QMP socket did not answer within {} s", START_LIMIT.as_secs())));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The last `n` lines of a (small) log file.
pub fn last_lines(path: &Path, n: usize) -> String {
    let Ok(mut file) = File::open(path) else { return String::new() };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(16 * 1024)));
    let mut tail = String::new();
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_ok() {
        tail = String::from_utf8_lossy(&bytes).into_owned();
    }
    let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.iter().skip(lines.len().saturating_sub(n)).copied().collect::<Vec<_>>().join("\n")
}
