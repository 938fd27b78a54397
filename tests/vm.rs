//! Managed VMs with cheap `-machine none` QEMUs: start, status, list, stop,
//! kill, delete, launch, the state folder's safety, and that nothing is
//! left behind. The power-button tests with a real guest are in guest.rs.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Run, finish, qemu_available, qmpsh_command};
use rustix::process::{Pid, Signal, kill_process};

/// A private state folder and qmpsh commands that use it.
struct Vms {
    state: tempfile::TempDir,
}

impl Vms {
    fn new() -> Option<Vms> {
        qemu_available().then(|| Vms { state: common::state_folder() })
    }

    fn dir(&self) -> &Path {
        self.state.path()
    }

    fn qmpsh(&self, args: &[&str], stdin: &str) -> Run {
        let mut command = qmpsh_command(args);
        command.env("QMPSH_STATE_DIR", self.dir());
        finish(command, stdin)
    }

    /// `vm start NAME` of a `-machine none` VM, which must succeed.
    fn start(&self, name: &str) -> Run {
        let run = self.qmpsh(&["vm", "start", name, "--accel", "tcg", "--", "-machine", "none"], "");
        assert_eq!(run.code, 0, "{run:?}");
        run
    }

    /// Live QEMUs whose command line mentions this state folder.
    fn live_qemus(&self) -> Vec<i32> {
        common::qemus_in(self.dir())
    }
}

/// Every QEMU a test started here dies with the test, whatever it asserted.
impl Drop for Vms {
    fn drop(&mut self) {
        common::kill_qemus_in(self.dir());
    }
}

#[test]
fn start_status_list_stop_and_delete() {
    let Some(vms) = Vms::new() else { return };
    let started = vms.start("web-1");
    assert!(started.stdout.starts_with("started web-1: pid "), "{}", started.stdout);
    let folder = vms.dir().join("web-1");
    assert_eq!(fs::metadata(&folder).unwrap().mode() & 0o777, 0o700);
    for file in ["qmp.sock", "qemu.pid", "serial.log"] {
        assert!(folder.join(file).exists(), "{file} missing");
    }

    let status = vms.qmpsh(&["vm", "status", "web-1", "--json"], "");
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["state"], "running");
    assert!(status["pid"].as_i64().is_some_and(|p| p > 0));
    assert!(status["uptime"].as_u64().is_some());

    // The shell reaches it by name; pausing shows in the status.
    let paused = vms.qmpsh(&["web-1", "-c", "stop"], "");
    assert_eq!(paused.code, 0, "{paused:?}");
    let listed = vms.qmpsh(&["vm", "list"], "");
    let row = listed.stdout.lines().find(|l| l.starts_with("web-1")).unwrap();
    assert!(row.contains(" paused "), "{}", listed.stdout);

    // -machine none has no power button: the stop ends in `quit`, and a
    // stop that had to force its way is a timeout (exit 4).
    let stopped = vms.qmpsh(&["vm", "stop", "web-1", "--timeout", "0.5"], "");
    assert_eq!(stopped.code, 4, "{stopped:?}");
    assert!(stopped.stdout.starts_with("the VM is paused: cont"), "{}", stopped.stdout);
    assert!(stopped.stdout.contains("no power-off within 0.5 s: quit"), "{}", stopped.stdout);
    assert_eq!(stopped.stderr, "", "the outcome is said once, on stdout");
    assert!(stopped.stdout.contains("POWERDOWN"), "{}", stopped.stdout);
    assert!(stopped.stdout.ends_with("web-1: quit after timeout\n"), "{}", stopped.stdout);
    assert!(vms.live_qemus().is_empty());
    assert!(!folder.join("qmp.sock").exists() && !folder.join("qemu.pid").exists());
    let ended = vms.qmpsh(&["vm", "status", "web-1", "--json"], "");
    assert!(ended.stdout.contains(r#""state":"shut down""#), "QEMU quit: {}", ended.stdout);

    let deleted = vms.qmpsh(&["vm", "delete", "web-1"], "");
    assert_eq!(deleted.code, 0);
    assert!(!folder.exists());
}

#[test]
fn kill_skips_the_power_button_and_delete_kills_a_running_vm() {
    let Some(vms) = Vms::new() else { return };
    vms.start("a");
    vms.start("b");
    let killed = vms.qmpsh(&["vm", "kill", "a"], "");
    assert_eq!((killed.code, killed.stdout.as_str()), (0, "a: killed\n"));
    assert!(!killed.stdout.contains("POWERDOWN"));
    assert_eq!(vms.live_qemus().len(), 1);
    let deleted = vms.qmpsh(&["vm", "delete", "b"], "");
    assert_eq!(deleted.code, 0, "{deleted:?}");
    assert!(vms.live_qemus().is_empty());
    assert!(!vms.dir().join("b").exists());
}

#[test]
fn starting_refuses_clearly() {
    let Some(vms) = Vms::new() else { return };
    vms.start("dup");
    let again = vms.qmpsh(&["vm", "start", "dup", "--", "-machine", "none"], "");
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("VM dup is already running (pid "), "{}", again.stderr);

    let bad = vms.qmpsh(&["vm", "start", "no/slash"], "");
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("bad VM name"), "{}", bad.stderr);

    // A VM operation that fails is exit 1, and leaves no dead VM behind.
    let missing = vms.qmpsh(&["vm", "start", "m", "--qemu", "/nonexistent/qemu"], "");
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("apt-get install qemu-system-x86"), "{}", missing.stderr);
    assert!(!vms.dir().join("m").exists());

    let broken = vms.qmpsh(&["vm", "start", "broken", "--", "-no-such-option"], "");
    assert_eq!(broken.code, 1);
    assert!(broken.stderr.contains("QEMU exited during start"), "{}", broken.stderr);
    assert!(broken.stderr.contains("-no-such-option: invalid option"), "{}", broken.stderr);
    let kept = vms.dir().join("broken.failed.log");
    assert!(broken.stderr.contains(&format!("QEMU's whole log: {}", kept.display())), "{}", broken.stderr);
    assert!(fs::read_to_string(&kept).unwrap().contains("-no-such-option"));
    // Listed with its log until deleted, which takes the log.
    let listed = vms.qmpsh(&["vm", "list"], "");
    let row = listed.stdout.lines().find(|l| l.starts_with("broken ")).unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["broken", "-", "failed", "-", kept.to_str().unwrap()]);
    let deleted = vms.qmpsh(&["vm", "delete", "broken"], "");
    assert_eq!(deleted.code, 0, "{deleted:?}");
    assert_eq!(deleted.stdout, "broken: deleted the log of its failed start\n");
    assert!(!kept.exists());
    let listed = vms.qmpsh(&["vm", "list"], "");
    assert!(!listed.stdout.contains("broken") && !listed.stdout.contains("dead"), "{}", listed.stdout);
    // A start that works after one that failed leaves no log behind.
    let broken = vms.qmpsh(&["vm", "start", "later", "--", "-no-such-option"], "");
    assert_eq!(broken.code, 1, "{broken:?}");
    assert!(vms.dir().join("later.failed.log").exists());
    vms.start("later");
    assert!(!vms.dir().join("later.failed.log").exists());
    let killed = vms.qmpsh(&["vm", "delete", "later"], "");
    assert_eq!(killed.code, 0, "{killed:?}");

    let long_state = vms.dir().join("x".repeat(100));
    let mut command = qmpsh_command(&["vm", "start", "long"]);
    command.env("QMPSH_STATE_DIR", &long_state);
    let long = finish(command, "");
    assert_eq!(long.code, 2);
    assert!(long.stderr.contains("over the 107-byte unix limit"), "{}", long.stderr);
    assert_eq!(vms.live_qemus().len(), 1, "only dup runs");
}

#[test]
fn a_symlinked_state_folder_is_refused() {
    let Some(vms) = Vms::new() else { return };
    let real = vms.dir().join("real");
    fs::create_dir(&real).unwrap();
    let link = vms.dir().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut command = qmpsh_command(&["vm", "list"]);
    command.env("QMPSH_STATE_DIR", &link);
    let run = finish(command, "");
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("symlink"), "{}", run.stderr);

    // A new one is made private.
    let fresh = vms.dir().join("fresh/state");
    let mut command = qmpsh_command(&["vm", "list"]);
    command.env("QMPSH_STATE_DIR", &fresh);
    assert_eq!(finish(command, "").code, 0);
    assert_eq!(fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn a_state_folder_of_another_user_is_refused() {
    // Only root can make one (CI runs as root, so there it always runs).
    let Some(vms) = Vms::new() else { return };
    if !common::root_available() {
        return;
    }
    let foreign = vms.dir().join("foreign");
    fs::create_dir(&foreign).unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    let mut command = qmpsh_command(&["vm", "list"]);
    command.env("QMPSH_STATE_DIR", &foreign);
    let run = finish(command, "");
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("belongs to uid 65534"), "{}", run.stderr);
}

#[test]
fn twenty_start_stop_cycles_leave_nothing_behind() {
    let Some(vms) = Vms::new() else { return };
    for cycle in 0..20 {
        vms.start("cycle");
        let stopped = vms.qmpsh(&["vm", "stop", "cycle", "--timeout", "0.1"], "");
        assert!(stopped.stdout.ends_with("cycle: quit after timeout\n"), "cycle {cycle}: {stopped:?}");
    }
    assert!(vms.live_qemus().is_empty(), "QEMU left running");
    let folder = vms.dir().join("cycle");
    assert!(!folder.join("qmp.sock").exists() && !folder.join("qemu.pid").exists());
}

#[test]
fn a_name_that_is_also_a_file_here_is_ambiguous() {
    let Some(vms) = Vms::new() else { return };
    vms.start("twin");
    let cwd = tempfile::tempdir().unwrap();
    fs::write(cwd.path().join("twin"), "").unwrap();
    let mut command = qmpsh_command(&["twin", "-c", "stop"]);
    command.env("QMPSH_STATE_DIR", vms.dir()).current_dir(cwd.path());
    let run = finish(command, "");
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("ambiguous") && run.stderr.contains("./twin"), "{}", run.stderr);
}

#[test]
fn launch_leaves_no_qemu_and_no_folder() {
    let Some(vms) = Vms::new() else { return };
    let run = vms.qmpsh(&["launch", "-c", "info status", "--", "-machine", "none"], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\"running\":true"), "{}", run.stdout);
    assert!(vms.live_qemus().is_empty());
    assert!(common::state_entries(vms.dir()).is_empty(), "the VM folder is gone");
}

#[test]
fn launch_cleans_up_on_sigterm() {
    let Some(vms) = Vms::new() else { return };
    let (mut child, stdin) = launch_sleeping(&vms);
    signal(&child, Signal::TERM);
    let status = common::wait_with_deadline(&mut child, Duration::from_secs(10)).expect("qmpsh ends on SIGTERM");
    drop(stdin);
    assert_eq!(status.code(), Some(143));
    assert!(vms.live_qemus().is_empty(), "QEMU survived");
    assert!(common::state_entries(vms.dir()).is_empty(), "the VM folder is left");
}

#[test]
fn dot_shutdown_forces_a_vm_that_ignores_the_button() {
    let Some(vms) = Vms::new() else { return };
    vms.start("s1");
    let quit = vms.qmpsh(&["s1"], ".shutdown timeout=0.3\n");
    assert_eq!(quit.code, 4, "{quit:?}");
    assert!(quit.stdout.ends_with("quit after timeout\n"), "{}", quit.stdout);
    assert_eq!(quit.stdout.matches("quit after timeout").count() + quit.stderr.matches("after timeout").count(), 1);
    vms.start("s2");
    // `kill` kills at once, as asked: no button, no wait, exit 0.
    let killed = vms.qmpsh(&["s2"], ".shutdown timeout=30 kill\n");
    assert_eq!(killed.code, 0, "{killed:?}");
    assert!(killed.stdout.ends_with("killed\n"), "{}", killed.stdout);
    assert!(!killed.stdout.contains("POWERDOWN"), "{}", killed.stdout);
    assert!(vms.live_qemus().is_empty());
    // Waiting for an event that never comes is a timeout: exit 4.
    vms.start("s3");
    let waited = vms.qmpsh(&["s3"], ".wait RESET timeout=0.2\n");
    assert_eq!(waited.code, 4, "{waited:?}");
    assert!(waited.stderr.contains("no RESET event within 0.2 s"), "{}", waited.stderr);
}

#[test]
fn paths_with_commas_and_relative_state_folders() {
    let Some(vms) = Vms::new() else { return };
    // QEMU reads commas as option separators: they must be doubled.
    let disks = tempfile::tempdir().unwrap();
    let disk = disks.path().join("a,b.img");
    fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let run = vms.qmpsh(&["vm", "start", "comma", "--accel", "tcg", "--disk", disk.to_str().unwrap()], "");
    assert_eq!(run.code, 0, "{run:?}");
    let block = vms.qmpsh(&["comma", "-c", "info block"], "");
    assert!(block.stdout.contains("a,b.img"), "{}", block.stdout);
    let mut command = qmpsh_command(&["vm", "list"]);
    command.env("QMPSH_STATE_DIR", "relative/state");
    let relative = finish(command, "");
    assert_eq!(relative.code, 2);
    assert!(relative.stderr.contains("must be an absolute path"), "{}", relative.stderr);
}

/// `qmpsh launch` running a script that sleeps, once its shell has
/// answered a first command: by then QEMU runs and qmpsh knows its pid, so
/// a signal finds everything in place to clean up. Its stdin stays open
/// until dropped.
fn launch_sleeping(vms: &Vms) -> (common::Guarded, std::process::ChildStdin) {
    let mut command = qmpsh_command(&["launch", "--", "-machine", "none"]);
    command.env("QMPSH_STATE_DIR", vms.dir());
    let mut child = common::Guarded(command.spawn().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"query-status\n.sleep 30\n").unwrap();
    let lines = common::Lines::of(child.stdout.take().unwrap());
    lines.until("the launched VM's status", Duration::from_secs(20), |l| l.contains("\"running\":true"));
    assert_eq!(vms.live_qemus().len(), 1, "the launched VM runs");
    (child, stdin)
}

/// Sends `signal` to the qmpsh child a test started.
fn signal(child: &std::process::Child, signal: Signal) {
    let pid = Pid::from_child(child);
    kill_process(pid, signal).unwrap();
}

#[test]
fn launch_killed_outright_takes_its_qemu_with_it() {
    // SIGKILL leaves qmpsh no chance to clean up: the kernel kills QEMU
    // (PR_SET_PDEATHSIG, set by the step that becomes QEMU).
    let Some(vms) = Vms::new() else { return };
    let (mut child, stdin) = launch_sleeping(&vms);
    signal(&child, Signal::KILL);
    let _ = common::wait_with_deadline(&mut child, Duration::from_secs(10)).expect("qmpsh dies");
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !vms.live_qemus().is_empty() {
        assert!(Instant::now() < deadline, "QEMU outlived the qmpsh that launched it");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_new_disk_a_user_network_and_the_accelerator_are_shown() {
    let Some(vms) = Vms::new() else { return };
    if !common::qemu_img_available() {
        return;
    }
    // A missing disk without --disk-size is refused before QEMU starts,
    // saying how to make one, and leaves no VM behind.
    let disk = vms.dir().join("new.qcow2");
    let disk_arg = disk.display().to_string();
    let refused = vms.qmpsh(&["vm", "start", "n0", "--disk", &disk_arg, "--", "-machine", "pc"], "");
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("does not exist: add --disk-size 4G"), "{}", refused.stderr);
    assert!(!vms.dir().join("n0").exists() && !disk.exists());

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    // Any file is a CD's medium to QEMU; the guest sees it read-only.
    let iso = vms.dir().join("cd.iso");
    fs::write(&iso, vec![0u8; 4 * 2048]).unwrap();
    let iso_arg = iso.display().to_string();
    let args = ["vm", "start", "n1", "--accel", "tcg", "--disk", &disk_arg, "--disk-size", "64M", "--cdrom", &iso_arg];
    let started = vms.qmpsh(&[&args[..], &["--ssh-port", &port, "--", "-machine", "pc", "-S"]].concat(), "");
    assert_eq!(started.code, 0, "{started:?}");
    assert!(started.stdout.contains("accel tcg (asked for with --accel)"), "{}", started.stdout);
    assert!(started.stdout.contains(&format!("ssh -p {port} USER@127.0.0.1")), "{}", started.stdout);

    // The disk is a 64 MiB qcow2 the guest sees; the port forwards to it.
    let blocks = vms.qmpsh(&["n1", "--json", "-c", "query-block"], "");
    let image = &blocks.json_lines()[0]["return"][0]["inserted"]["image"];
    assert_eq!((image["format"].as_str(), image["virtual-size"].as_u64()), (Some("qcow2"), Some(64 << 20)));
    let cdrom = blocks.json_lines()[0]["return"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["inserted"]["file"] == iso_arg.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no block device holds {iso_arg}: {}", blocks.stdout));
    assert_eq!((cdrom["removable"].as_bool(), cdrom["inserted"]["ro"].as_bool()), (Some(true), Some(true)), "{cdrom}");
    assert!(std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok(), "nothing listens on {port}");
    let status = vms.qmpsh(&["vm", "status", "n1", "--json"], "");
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["ssh_port"].as_u64(), port.parse().ok());
    assert_eq!(status["accel"], "tcg");

    // `auto` says why it chose what it did, here and in `vm status`: KVM
    // only where /dev/kvm opens on a machine that is not itself virtual
    // (nested KVM can hang a booting kernel), and QEMU runs what it says.
    let auto = vms.qmpsh(&["vm", "start", "n2", "--", "-machine", "none"], "");
    assert_eq!(auto.code, 0, "{auto:?}");
    let shown = vms.qmpsh(&["vm", "status", "n2"], "");
    let accel = shown.stdout.lines().find_map(|l| l.strip_prefix("accel ")).unwrap_or_default().trim();
    assert!(accel.contains(" (auto: "), "{}", shown.stdout);
    assert!(auto.stdout.contains(&format!("accel {accel}\n")), "{}\n{}", auto.stdout, shown.stdout);
    let virtual_machine = fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
    let kvm_opens = fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    let expected = match (Path::new("/dev/kvm").exists(), kvm_opens, virtual_machine) {
        (false, _, _) => "tcg (auto: this machine has no /dev/kvm)",
        (true, false, _) => "tcg (auto: /dev/kvm does not open read-write",
        (true, true, true) => "tcg (auto: /dev/kvm opens, but this machine is itself a virtual machine",
        (true, true, false) => "kvm (auto: /dev/kvm opens and this machine is not a virtual machine)",
    };
    assert!(accel.starts_with(expected), "expected {expected:?}, got {accel:?}");
    let kvm = vms.qmpsh(&["n2", "--json", "-c", "query-kvm"], "");
    let enabled = kvm.json_lines()[0]["return"]["enabled"].as_bool();
    assert_eq!(enabled, Some(accel.starts_with("kvm ")), "{kvm:?}");
}

#[test]
fn a_vm_that_never_ran_stops_at_once() {
    // Started with -S, the guest never ran: there is nothing to power off,
    // so there is nothing to wait for either.
    let Some(vms) = Vms::new() else { return };
    let started = vms.qmpsh(&["vm", "start", "never", "--accel", "tcg", "--", "-machine", "none", "-S"], "");
    assert_eq!(started.code, 0, "{started:?}");
    let stopped = vms.qmpsh(&["vm", "stop", "never", "--timeout", "30"], "");
    assert_eq!(stopped.code, 0, "{stopped:?}");
    let lines: Vec<&str> = stopped.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"the guest never ran (QEMU was started with -S): quit"), "{}", stopped.stdout);
    assert_eq!(lines.last(), Some(&"never: stopped (never ran)"), "{}", stopped.stdout);
    assert!(vms.live_qemus().is_empty());
}

#[test]
fn a_qemu_that_does_not_answer_is_killed_by_stop() {
    // A stopped (SIGSTOP) or wedged QEMU cannot be asked to power off:
    // `vm stop` kills it after waiting for the monitor (exit 4), and
    // `vm stop --kill` kills it at once (exit 0), neither through QMP.
    let Some(vms) = Vms::new() else { return };
    for (name, args, code) in [("wedged", &["--timeout", "1"][..], 4), ("frozen", &["--kill"][..], 0)] {
        vms.start(name);
        let pid = vms.live_qemus().into_iter().find(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(&format!("/{name}/"))
        });
        let pid = Pid::from_raw(pid.unwrap()).unwrap();
        kill_process(pid, Signal::STOP).unwrap();
        let stopped = vms.qmpsh(&[&["vm", "stop", name][..], args].concat(), "");
        assert_eq!(stopped.code, code, "{stopped:?}");
        assert!(stopped.stdout.contains("SIGKILL to QEMU (pid "), "{}", stopped.stdout);
        assert!(stopped.stdout.ends_with(&format!("{name}: killed\n")), "{}", stopped.stdout);
        assert_eq!(stopped.stdout.contains("does not answer on its monitor"), code == 4, "{}", stopped.stdout);
    }
    assert!(vms.live_qemus().is_empty());
}

/// A VM folder `name` in the state folder `state`, as `vm start` makes one
/// (0700, marked), with listeners on its QMP and agent sockets that note
/// any client: a stand-in for another user's trap.
fn planted_vm(state: &Path, name: &str) -> Vec<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let folder = state.join(name);
    fs::DirBuilder::new().mode(0o700).create(&folder).unwrap();
    fs::write(folder.join("qmpsh-vm"), "").unwrap();
    ["qmp.sock", "ga.sock"]
        .iter()
        .map(|socket| {
            let listener = std::os::unix::net::UnixListener::bind(folder.join(socket)).unwrap();
            listener.set_nonblocking(true).unwrap();
            listener
        })
        .collect()
}

/// A private state folder qmpsh has marked as its own, in `parent`.
fn marked_state(parent: &Path, name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    let state = parent.join(name);
    fs::DirBuilder::new().mode(0o700).create(&state).unwrap();
    fs::write(state.join(".qmpsh-state"), "").unwrap();
    state
}

#[test]
fn every_way_to_a_vm_by_name_refuses_a_folder_others_control() {
    // Another user who makes `/tmp/qmpsh-0/web/qmp.sock` first (the state
    // folder when XDG_RUNTIME_DIR is unset) must not receive root's
    // commands: TARGET, --agent and every vm command check the state
    // folder, the VM's folder and its sockets as `vm list` does, and
    // change nothing.
    let Some(vms) = Vms::new() else { return };
    fn chown(path: &Path) {
        std::os::unix::fs::lchown(path, Some(65534), Some(65534)).unwrap();
    }
    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }
    fn fifo(path: &Path) {
        let made = std::process::Command::new("mkfifo").arg(path).status().unwrap();
        assert!(made.success(), "mkfifo {}", path.display());
    }
    type Spoil = Box<dyn Fn(&Path, &Path)>;
    let cases: Vec<(&str, bool, &str, Spoil)> = vec![
        ("state folder of another user", true, "belongs to uid 65534", Box::new(|state, _| chown(state))),
        (
            "state folder others can reach",
            false,
            "others can reach it (mode 0755)",
            Box::new(|state, _| chmod(state, 0o755)),
        ),
        ("VM folder of another user", true, "belongs to uid 65534", Box::new(|_, vm| chown(vm))),
        ("VM folder others can reach", false, "others can reach it (mode 0711)", Box::new(|_, vm| chmod(vm, 0o711))),
        (
            "socket of another user",
            true,
            "qmp.sock belongs to uid 65534",
            Box::new(|_, vm| chown(&vm.join("qmp.sock"))),
        ),
        (
            "agent FIFO of another user",
            true,
            "ga.in belongs to uid 65534",
            Box::new(|_, vm| {
                fifo(&vm.join("ga.in"));
                chown(&vm.join("ga.in"));
            }),
        ),
        (
            "agent channel that is no FIFO",
            false,
            "its ga.out is not a FIFO",
            Box::new(|_, vm| {
                fifo(&vm.join("ga.in"));
                fs::write(vm.join("ga.out"), "").unwrap();
            }),
        ),
        (
            "VM folder that is a symlink",
            false,
            "symlink",
            Box::new(|_, vm| {
                let elsewhere = vm.with_file_name("elsewhere");
                fs::rename(vm, &elsewhere).unwrap();
                std::os::unix::fs::symlink(&elsewhere, vm).unwrap();
            }),
        ),
    ];
    for (n, (case, needs_root, said, spoil)) in cases.into_iter().enumerate() {
        if needs_root && !common::root_available() {
            continue;
        }
        let state = marked_state(vms.dir(), &format!("state{n}"));
        let listeners = planted_vm(&state, "web");
        let vm = state.join("web");
        spoil(&state, &vm);
        let mode = |path: &Path| fs::symlink_metadata(path).unwrap().mode();
        let before = (mode(&state), mode(&vm));
        let commands: [&[&str]; 9] = [
            &["web", "--timeout", "1", "-c", "query-status"],
            &["--agent", "web", "--timeout", "1", "-c", "guest-ping"],
            &["vm", "exec", "web", "--", "true"],
            &["vm", "cp", "/etc/hostname", "web:/tmp/hostname"],
            &["vm", "status", "web"],
            &["vm", "stop", "web", "--timeout", "1"],
            &["vm", "kill", "web"],
            &["vm", "delete", "web"],
            &["vm", "start", "web", "--", "-machine", "none"],
        ];
        for args in commands {
            let mut command = qmpsh_command(args);
            command.env("QMPSH_STATE_DIR", &state);
            let run = finish(command, "");
            assert_eq!(run.code, 2, "{case}: {args:?}: {run:?}");
            assert!(run.stderr.contains(said), "{case}: {args:?}: {}", run.stderr);
            assert_eq!(run.stderr.lines().count(), 1, "{case}: {args:?}: {}", run.stderr);
            for listener in &listeners {
                assert!(listener.accept().is_err(), "{case}: {args:?} connected to the planted socket");
            }
            assert_eq!((mode(&state), mode(&vm)), before, "{case}: {args:?} changed a mode");
            assert!(vm.join("qmp.sock").exists(), "{case}: {args:?} removed the socket");
        }
        assert!(vms.live_qemus().is_empty(), "{case}: a QEMU started");
    }
}

#[test]
fn only_folders_qmpsh_made_are_vms() {
    use std::os::unix::fs::DirBuilderExt;
    let Some(vms) = Vms::new() else { return };
    let private = |path: &Path| fs::DirBuilder::new().mode(0o700).recursive(true).create(path).unwrap();
    let run_in = |state: &Path, args: &[&str]| {
        let mut command = qmpsh_command(args);
        command.env("QMPSH_STATE_DIR", state);
        finish(command, "")
    };

    // QMPSH_STATE_DIR=$HOME: a private folder of someone's own files is not
    // a state folder, and nothing in it is a VM to delete or list.
    // Folders of the test's own, beside the VMs' state folder.
    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path().join("home");
    private(&home.join("Documents"));
    fs::write(home.join("Documents/notes.txt"), "mine").unwrap();
    for args in [&["vm", "delete", "Documents"][..], &["vm", "list"], &["vm", "start", "x"]] {
        let run = run_in(&home, args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains("qmpsh did not make it"), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }
    assert!(home.join("Documents/notes.txt").exists(), "a folder qmpsh did not make was deleted");
    assert_eq!(common::state_entries(&home), ["Documents"], "qmpsh wrote into it");

    // In qmpsh's own state folder, a folder someone put there is no VM.
    vms.start("real");
    private(&vms.dir().join("Documents"));
    fs::write(vms.dir().join("Documents/notes.txt"), "mine").unwrap();
    let listed = vms.qmpsh(&["vm", "list", "--json"], "");
    let names: Vec<String> =
        listed.json_lines()[0].as_array().unwrap().iter().map(|vm| vm["name"].as_str().unwrap().into()).collect();
    assert_eq!(names, ["real"], "{}", listed.stdout);
    for args in [&["vm", "delete", "Documents"][..], &["vm", "status", "Documents"], &["vm", "start", "Documents"]] {
        let run = vms.qmpsh(args, "");
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains("is not a VM of qmpsh's"), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }
    assert!(vms.dir().join("Documents/notes.txt").exists());

    // A state folder others can reach is refused, not tightened.
    let open = scratch.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
    let refused = run_in(&open, &["vm", "list"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("others can reach it (mode 0755)"), "{}", refused.stderr);
    assert_eq!(fs::metadata(&open).unwrap().mode() & 0o777, 0o755, "tightened");

    // A state folder an older qmpsh made, without the marker: its VMs
    // (folders with qmpsh's files) still count, and it is taken over.
    let old = scratch.path().join("old");
    private(&old.join("legacy"));
    fs::write(old.join("legacy/chosen.json"), r#"{"accel":"tcg","accel_why":"asked","ssh_port":null}"#).unwrap();
    fs::write(old.join("broken.failed.log"), "QEMU said no\n").unwrap();
    let listed = run_in(&old, &["vm", "list"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(listed.stdout.lines().any(|l| l.starts_with("legacy ") && l.contains(" dead ")), "{}", listed.stdout);
    assert!(old.join(".qmpsh-state").exists(), "not taken over");
    let deleted = run_in(&old, &["vm", "delete", "legacy"]);
    assert_eq!((deleted.code, deleted.stdout.as_str()), (0, "legacy: deleted\n"), "{deleted:?}");
}

#[test]
fn two_starts_of_one_name_at_once_start_one_vm() {
    // Both check that the name is free; without a lock both may find it
    // so, and two QEMUs then share one folder, one of them unmanaged.
    let Some(vms) = Vms::new() else { return };
    for round in 0..5 {
        let runs: Vec<Run> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| vms.qmpsh(&["vm", "start", "twin", "--accel", "tcg", "--", "-machine", "none"], ""))
                })
                .collect();
            starts.into_iter().map(|start| start.join().unwrap()).collect()
        });
        let won: Vec<&Run> = runs.iter().filter(|run| run.code == 0).collect();
        assert_eq!(won.len(), 1, "round {round}: {runs:?}");
        let lost = runs.iter().find(|run| run.code != 0).unwrap();
        assert_eq!(lost.code, 2, "round {round}: {lost:?}");
        assert!(
            lost.stderr.contains("VM twin is busy: another qmpsh is starting")
                || lost.stderr.contains("VM twin is already running"),
            "round {round}: {}",
            lost.stderr
        );
        let live = vms.live_qemus();
        assert_eq!(live.len(), 1, "round {round}: QEMUs {live:?}");
        let pidfile = fs::read_to_string(vms.dir().join("twin/qemu.pid")).unwrap();
        assert_eq!(pidfile.trim().parse::<i32>().ok(), live.first().copied(), "round {round}: the pidfile");
        assert!(won[0].stdout.contains(&format!("pid {},", live[0])), "round {round}: {}", won[0].stdout);
        let killed = vms.qmpsh(&["vm", "kill", "twin"], "");
        assert_eq!(killed.code, 0, "{killed:?}");
    }
}

#[test]
fn a_signal_while_qemu_starts_ends_it() {
    // Ctrl-C, SIGTERM or SIGHUP while QEMU boots: vm start ends the QEMU
    // it was starting (exit 128 + the signal) rather than leave it to run
    // with nothing that manages it.
    let Some(vms) = Vms::new() else { return };
    let tools = tempfile::tempdir().unwrap();
    // QEMU, once the test opens the gate: until then, a QEMU booting.
    let gate = tools.path().join("gate");
    let slow = tools.path().join("slow-qemu");
    let script = format!(
        "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.02; done\nexec qemu-system-x86_64 \"$@\"\n",
        gate.display()
    );
    fs::write(&slow, script).unwrap();
    fs::set_permissions(&slow, fs::Permissions::from_mode(0o755)).unwrap();
    let state = vms.dir().to_str().unwrap();
    for (signal, code) in [(Signal::TERM, 143), (Signal::HUP, 129), (Signal::INT, 130)] {
        let _ = fs::remove_file(&gate);
        let args =
            ["vm", "start", "slow", "--accel", "tcg", "--qemu", slow.to_str().unwrap(), "--", "-machine", "none"];
        let mut command = qmpsh_command(&args);
        command.env("QMPSH_STATE_DIR", vms.dir());
        let mut child = common::Guarded(command.spawn().unwrap());
        let booting = common::eventually(Duration::from_secs(10), || !common::processes_naming(state).is_empty());
        assert!(booting, "{signal:?}: QEMU's start never began");
        kill_process(Pid::from_child(&child), signal).unwrap();
        let status = common::wait_with_deadline(&mut child, Duration::from_secs(10)).expect("vm start ends");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        fs::write(&gate, "").unwrap();
        let gone = common::eventually(Duration::from_secs(10), || common::processes_naming(state).is_empty());
        assert!(gone, "{signal:?}: QEMU runs on after vm start ended: {:?}", common::processes_naming(state));
        assert_eq!(status.code(), Some(code), "{signal:?}: {status:?} {stderr}");
        assert!(stderr.contains("arrived while QEMU started: QEMU (pid "), "{signal:?}: {stderr}");
        assert!(!vms.dir().join("slow").exists(), "{signal:?}: the folder of a VM that never started stays");
    }
}

/// Runs qmpsh in `vms`'s state folder with its stdout a pipe no one reads
/// (closed before qmpsh writes), as `qmpsh vm ... | true`; returns the exit
/// code and stderr.
fn with_closed_stdout(vms: &Vms, args: &[&str]) -> (i32, String) {
    let mut command = qmpsh_command(args);
    command.env("QMPSH_STATE_DIR", vms.dir()).stdin(std::process::Stdio::null());
    let mut child = common::Guarded(command.spawn().unwrap());
    drop(child.stdout.take());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = common::wait_with_deadline(&mut child, Duration::from_secs(60)).expect("qmpsh ends");
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_closed_stdout_ends_the_vm_helpers_quietly() {
    // `qmpsh vm status web | true`, `vm list | head -1`: what a VM helper
    // did stands, and saying it to no one is no error.
    let Some(vms) = Vms::new() else { return };
    let start = ["vm", "start", "a", "--accel", "tcg", "--", "-machine", "none"];
    assert_eq!(with_closed_stdout(&vms, &start), (0, String::new()), "vm start");
    assert_eq!(vms.live_qemus().len(), 1, "the VM started all the same");
    vms.start("b");
    vms.start("c");
    let quiet: [(&[&str], i32); 8] = [
        (&["vm", "status", "a"], 0),
        (&["vm", "status", "a", "--json"], 0),
        (&["vm", "list"], 0),
        (&["vm", "list", "--json"], 0),
        // -machine none has no power button: a stop that forces is exit 4.
        (&["vm", "stop", "a", "--timeout", "0.1"], 4),
        (&["vm", "stop", "a"], 0),
        (&["vm", "kill", "b"], 0),
        (&["vm", "delete", "c"], 0),
    ];
    for (args, code) in quiet {
        assert_eq!(with_closed_stdout(&vms, args), (code, String::new()), "{args:?}");
    }
    assert!(vms.live_qemus().is_empty(), "a VM survived its stop, kill or delete");
    assert!(!vms.dir().join("c").exists(), "vm delete did not delete");
}

#[test]
fn a_disk_name_is_never_an_option_to_qemu_img() {
    // `--disk=-obacking_file=F,backing_fmt=raw` once reached qemu-img as an
    // option: it made a stray image, named by the size, backed by F.
    let Some(vms) = Vms::new() else { return };
    if !common::qemu_img_available() {
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    fs::write(cwd.path().join("secret.raw"), vec![7u8; 1 << 20]).unwrap();
    let disk = "-obacking_file=secret.raw,backing_fmt=raw";
    let args = ["vm", "start", "inj", "--accel", "tcg", &format!("--disk={disk}"), "--disk-size", "1M"];
    let mut command = qmpsh_command(&[&args[..], &["--", "-machine", "pc", "-S"]].concat());
    command.env("QMPSH_STATE_DIR", vms.dir()).current_dir(cwd.path());
    let run = finish(command, "");
    let mut made: Vec<String> =
        fs::read_dir(cwd.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    made.sort();
    assert_eq!(made, [disk, "secret.raw"], "{run:?}");
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(cwd.path().join(disk))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!((info["format"].as_str(), info.get("backing-filename")), (Some("qcow2"), None), "{info}");
    assert_eq!(run.code, 0, "{run:?}");
    let blocks = vms.qmpsh(&["inj", "--json", "-c", "query-block"], "");
    let file = blocks.json_lines()[0]["return"][0]["inserted"]["file"].as_str().unwrap().to_string();
    assert_eq!(Path::new(&file), cwd.path().join(disk), "{}", blocks.stdout);
}

#[test]
fn a_state_folder_with_a_comma_in_its_path() {
    // QEMU reads a comma in an option as the next option: a path in QEMU's
    // option syntax doubles it, and one QEMU takes as it stands does not.
    let Some(vms) = Vms::new() else { return };
    let state = vms.dir().join("st,ate");
    let mut command = qmpsh_command(&["vm", "start", "c", "--accel", "tcg", "--", "-machine", "none"]);
    command.env("QMPSH_STATE_DIR", &state);
    let run = finish(command, "");
    assert_eq!(run.code, 0, "{run:?}");
    for file in ["qmp.sock", "ctl.sock", "qemu.pid", "serial.log"] {
        assert!(state.join("c").join(file).exists(), "{file} is not in the VM's folder");
    }
    let mut command = qmpsh_command(&["c", "-c", "query-status"]);
    command.env("QMPSH_STATE_DIR", &state);
    let status = finish(command, "");
    assert!(status.stdout.contains("\"running\":true"), "{status:?}");
}

#[test]
fn a_state_folder_that_cannot_be_written_is_a_failure_exit_1() {
    // Not a refusal of the folder (exit 2): it is qmpsh's and private, but
    // the file system says no. Root writes anywhere, so as root qmpsh runs
    // as nobody, who owns the folder.
    use std::os::unix::fs::{PermissionsExt, chown};
    use std::os::unix::process::CommandExt;
    let state = common::state_folder();
    let dir = state.path().join("state");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(".qmpsh-state"), "").unwrap();
    let as_root = rustix::process::getuid().is_root();
    if as_root {
        chown(state.path(), Some(65534), Some(65534)).unwrap();
        chown(&dir, Some(65534), Some(65534)).unwrap();
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).unwrap();
    let mut command = qmpsh_command(&["vm", "start", "x", "--no-agent"]);
    command.env("QMPSH_STATE_DIR", &dir);
    if as_root {
        command.uid(65534).gid(65534);
    }
    let run = finish(command, "");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.starts_with("qmpsh: cannot create the VM folder "), "{}", run.stderr);
    assert!(run.stderr.ends_with("Permission denied (os error 13)\n"), "{}", run.stderr);
}

#[test]
fn a_start_that_cannot_keep_its_choices_is_a_failure_exit_1() {
    // `vm status` shows what `vm start` chose and since when: a start that
    // cannot write them says so, and leaves no QEMU running, rather than
    // a VM whose status is blank.
    let Some(vms) = Vms::new() else { return };
    for file in ["chosen.json", "started"] {
        vms.start("kept");
        assert_eq!(vms.qmpsh(&["vm", "kill", "kept"], "").code, 0);
        let folder = vms.dir().join("kept");
        fs::remove_file(folder.join(file)).unwrap();
        fs::create_dir(folder.join(file)).unwrap();
        let run = vms.qmpsh(&["vm", "start", "kept", "--accel", "tcg", "--", "-machine", "none"], "");
        assert_eq!(run.code, 1, "{file}: {run:?}");
        let said = format!("qmpsh: cannot write {}: ", folder.join(file).display());
        assert!(run.stderr.starts_with(&said), "{file}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{file}: {}", run.stderr);
        assert!(vms.live_qemus().is_empty(), "{file}: QEMU left running");
        fs::remove_dir(folder.join(file)).unwrap();
    }
}

/// A VM folder with a folder in it that only root may empty, for a qmpsh
/// run as nobody: removing the VM's folder fails.
fn undeletable(folder: &Path) {
    let stuck = folder.join("stuck");
    fs::create_dir(&stuck).unwrap();
    fs::write(stuck.join("file"), "").unwrap();
    fs::set_permissions(&stuck, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A state folder of nobody's, for a qmpsh run as nobody.
fn nobodys_state() -> (tempfile::TempDir, std::path::PathBuf) {
    let state = common::state_folder();
    let dir = state.path().join("state");
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(state.path(), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    (state, dir)
}

fn as_nobody(args: &[&str], state: &Path) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut command = qmpsh_command(args);
    command.env("QMPSH_STATE_DIR", state).uid(65534).gid(65534);
    command
}

#[test]
fn a_delete_that_cannot_remove_the_folder_is_a_failure_exit_1() {
    if !qemu_available() || !common::root_available() {
        return;
    }
    let (_state, dir) = nobodys_state();
    let started = finish(as_nobody(&["vm", "start", "gone", "--accel", "tcg", "--", "-machine", "none"], &dir), "");
    assert_eq!(started.code, 0, "{started:?}");
    let folder = dir.join("gone");
    undeletable(&folder);
    let run = finish(as_nobody(&["vm", "delete", "gone"], &dir), "");
    common::kill_qemus_in(&dir);
    assert_eq!(run.code, 1, "{run:?}");
    let said = format!("qmpsh: cannot remove {}: ", folder.display());
    assert!(run.stderr.starts_with(&said), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert_eq!(run.stdout, "", "not said to be deleted");
}

#[test]
fn a_launch_that_cannot_remove_its_folder_says_so() {
    // However the launch ends (its script ends: exit 1; a signal: the
    // signal's exit), a folder left behind is said in one line.
    if !qemu_available() || !common::root_available() {
        return;
    }
    for (ending, code) in [(None, 1), (Some(Signal::TERM), 143)] {
        let (_state, dir) = nobodys_state();
        let mut command = as_nobody(&["launch", "--", "-machine", "none"], &dir);
        let mut child = common::Guarded(command.spawn().unwrap());
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, b"query-status\n").unwrap();
        let lines = common::Lines::of(child.stdout.take().unwrap());
        lines.until("the launched VM's status", Duration::from_secs(20), |l| l.contains("\"running\":true"));
        let folder = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
        undeletable(&folder);
        match ending {
            Some(ending) => signal(&child, ending),
            None => drop(stdin),
        }
        let status = common::wait_with_deadline(&mut child, Duration::from_secs(20)).expect("qmpsh ends");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        common::kill_qemus_in(&dir);
        assert_eq!(status.code(), Some(code), "{ending:?}: {stderr}");
        let said = format!("qmpsh: cannot remove {}: ", folder.display());
        assert!(stderr.starts_with(&said), "{ending:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{ending:?}: {stderr}");
    }
}

#[test]
fn a_mistyped_vm_name_says_no_vm_has_it_and_names_those_that_exist() {
    let Some(vms) = Vms::new() else { return };
    let run = vms.qmpsh(&["wbe", "-c", "stop"], "");
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("no VM of that name (there are none"), "{run:?}");
    vms.start("web");
    vms.start("db");
    let run = vms.qmpsh(&["wbe", "-c", "stop"], "");
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(
        run.stderr.contains("cannot connect to wbe: no VM of that name (there are db, web), and no socket file wbe"),
        "{run:?}"
    );
}

#[test]
fn a_vm_that_ended_says_how_shut_down_killed_or_dead() {
    let Some(vms) = Vms::new() else { return };
    let state = |name: &str| {
        let run = vms.qmpsh(&["vm", "status", name, "--json"], "");
        serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap()["state"].as_str().unwrap().to_string()
    };
    for name in ["quits", "killed", "dies"] {
        vms.start(name);
    }
    // QEMU that exits (here asked to quit; a guest powering off alike).
    let quit = vms.qmpsh(&["quits", "-c", "quit"], "");
    assert_eq!(quit.code, 0, "{quit:?}");
    assert!(common::eventually(Duration::from_secs(10), || state("quits") == "shut down"), "{}", state("quits"));
    // Killed by qmpsh.
    assert_eq!(vms.qmpsh(&["vm", "kill", "killed"], "").code, 0);
    assert_eq!(state("killed"), "killed");
    // Gone without a word: killed by someone else.
    let pid: i32 = fs::read_to_string(vms.dir().join("dies/qemu.pid")).unwrap().trim().parse().unwrap();
    kill_process(Pid::from_raw(pid).unwrap(), Signal::KILL).unwrap();
    assert!(common::eventually(Duration::from_secs(10), || state("dies") == "dead"), "{}", state("dies"));
    // vm stop on it says so and keeps what it found.
    let stopped = vms.qmpsh(&["vm", "stop", "dies"], "");
    assert_eq!(stopped.stdout, "dies: not running\n", "{stopped:?}");
    assert_eq!(state("dies"), "dead");
    // A new start forgets the old ending.
    let listed = vms.qmpsh(&["vm", "list"], "");
    assert!(listed.stdout.lines().any(|l| l.starts_with("quits ") && l.contains(" shut down ")), "{}", listed.stdout);
    vms.start("quits");
    assert_eq!(state("quits"), "running");
}

#[test]
fn bash_completes_vm_names_subcommands_and_flag_values_live() {
    let Some(vms) = Vms::new() else { return };
    vms.start("web-1");
    vms.start("db");
    let script = vms.qmpsh(&["completions", "bash"], "");
    assert_eq!(script.code, 0, "{script:?}");
    let registration = vms.dir().join("qmpsh.bash");
    fs::write(&registration, &script.stdout).unwrap();
    // bash as at a prompt: the words typed so far, then Tab.
    let complete = |words: &str| {
        let bin = Path::new(env!("CARGO_BIN_EXE_qmpsh")).parent().unwrap();
        let shell = format!(
            ". {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_TYPE=9; \
             _clap_complete_qmpsh qmpsh \"${{COMP_WORDS[COMP_CWORD]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            registration.display()
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &shell])
            .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()))
            .env("QMPSH_STATE_DIR", vms.dir())
            .output()
            .unwrap();
        let mut words: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
        words.sort();
        words
    };
    let stop = complete("qmpsh vm stop ''");
    assert!(["db", "web-1", "--timeout"].iter().all(|w| stop.contains(&w.to_string())), "{stop:?}");
    assert_eq!(complete("qmpsh vm stop w"), ["web-1"]);
    assert_eq!(complete("qmpsh vm st"), ["start", "status", "stop"]);
    assert_eq!(complete("qmpsh --color ''"), ["always", "auto", "never"]);
    assert!(complete("qmpsh w").contains(&"web-1".to_string()));
}
