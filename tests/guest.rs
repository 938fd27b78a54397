//! The reason qmpsh exists: a clean shutdown of a real guest. A tiny Linux
//! (Debian's kernel, a busybox initramfs, built at test time and cached)
//! boots under TCG; `vm stop` presses its power button and it powers off,
//! while a guest that ignores the button is ended right after the timeout.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::guest::{self, APPEND, READY};
use common::{Run, finish, qemu_available, qmpsh_command};

/// A private state folder for one test.
struct Vms {
    state: tempfile::TempDir,
}

impl Vms {
    fn qmpsh(&self, args: &[&str]) -> Run {
        let mut command = qmpsh_command(args);
        command.env("QMPSH_STATE_DIR", self.state.path());
        finish(command, "")
    }

    /// Boots the guest with `initrd` as VM `name` and waits for READY.
    fn boot(&self, name: &str, initrd: &std::path::Path) -> bool {
        let Some(guest) = guest::guest() else { return false };
        let kernel = guest.kernel.to_str().unwrap();
        let initrd = initrd.to_str().unwrap();
        let started = self.qmpsh(&[
            "vm",
            "start",
            name,
            "--memory",
            "128",
            "--accel",
            "tcg",
            "--kernel",
            kernel,
            "--initrd",
            initrd,
            "--append",
            APPEND,
            "--",
            "-no-reboot",
        ]);
        assert_eq!(started.code, 0, "{started:?}");
        // A press before the guest has opened its power button is lost.
        let serial = self.state.path().join(name).join("serial.log");
        let deadline = Instant::now() + Duration::from_secs(120);
        while !fs::read_to_string(&serial).unwrap_or_default().contains(READY) {
            assert!(Instant::now() < deadline, "no {READY} on the serial console: {:?}", fs::read_to_string(&serial));
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    fn qemu_runs(&self, name: &str) -> bool {
        let status = self.qmpsh(&["vm", "status", name, "--json"]);
        let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        status["state"] != "dead"
    }
}

fn vms() -> Option<Vms> {
    qemu_available().then(|| Vms { state: tempfile::tempdir().unwrap() })
}

#[test]
fn a_listening_guest_powers_off_when_the_button_is_pressed() {
    let Some(vms) = vms() else { return };
    let Some(guest) = guest::guest() else { return };
    if !vms.boot("listener", &guest.listening) {
        return;
    }
    let status = vms.qmpsh(&["vm", "status", "listener"]);
    assert!(status.stdout.contains("state   running"), "{}", status.stdout);

    let stopped = vms.qmpsh(&["vm", "stop", "listener", "--timeout", "30"]);
    assert_eq!(stopped.code, 0, "{stopped:?}");
    // The guest did it: the power button, then its own shutdown.
    let lines: Vec<&str> = stopped.stdout.lines().collect();
    assert!(lines[0].ends_with(" POWERDOWN"), "{}", stopped.stdout);
    assert!(lines[1].ends_with(r#" SHUTDOWN {"guest":true,"reason":"guest-shutdown"}"#), "{}", stopped.stdout);
    assert_eq!(lines.last(), Some(&"listener: stopped"));
    assert!(!vms.qemu_runs("listener"));
}

#[test]
fn a_guest_that_ignores_the_button_is_ended_after_the_timeout() {
    let Some(vms) = vms() else { return };
    let Some(guest) = guest::guest() else { return };
    if !vms.boot("deaf", &guest.ignoring) || !vms.boot("deafer", &guest.ignoring) {
        return;
    }
    let started = Instant::now();
    let quit = vms.qmpsh(&["vm", "stop", "deaf", "--timeout", "2"]);
    let waited = started.elapsed();
    assert_eq!(quit.code, 4, "a forced stop is a timeout: {quit:?}");
    assert!(quit.stdout.ends_with("deaf: quit after timeout\n"), "{}", quit.stdout);
    assert!(!quit.stdout.contains(r#""guest":true"#), "the guest did not shut down itself");
    assert!(waited >= Duration::from_secs(2), "stopped before the timeout: {waited:?}");
    assert!(!vms.qemu_runs("deaf"));

    let killed = vms.qmpsh(&["vm", "stop", "deafer", "--timeout", "1", "--kill"]);
    assert_eq!(killed.code, 4, "{killed:?}");
    assert!(killed.stdout.ends_with("deafer: killed\n"), "{}", killed.stdout);
    assert!(!vms.qemu_runs("deafer"));
}
