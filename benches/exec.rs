//! `qmpsh vm exec NAME -- true` on a guest that is up: what a CI script
//! pays per command. The guest is the tests' (Debian's kernel, busybox,
//! Debian's real qemu-ga) under TCG. Beside it:
//!
//! - the floor, a minimal client in this file on the same channel (its
//!   FIFOs opened afresh, sync, guest-exec, guest-exec-status polled with
//!   no pause), so the ratio is what qmpsh adds to the agent's own time;
//! - when a libvirtd answers at `QMPSH_BENCH_URI` (default
//!   qemu:///system), the same guest as a libvirt domain with an agent
//!   channel, and on it the issue's baseline: `virsh qemu-agent-command`
//!   in a shell polling loop (guest-exec, then guest-exec-status until it
//!   has exited, no pause), against `qmpsh vm exec -C URI` (with the
//!   `libvirt` feature: `cargo bench --features libvirt --bench exec`).
//!
//! `cargo bench --bench exec` (`QMPSH_BENCH_ROUNDS=N`, default 31).

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// They report what they measured on the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::guest;
use serde_json::{Value, json};

const QMPSH: &str = env!("CARGO_BIN_EXE_qmpsh");

/// Every QEMU started in the state folder dies with the bench.
struct Vms(tempfile::TempDir);

impl Drop for Vms {
    fn drop(&mut self) {
        common::kill_qemus_in(self.0.path());
    }
}

fn qmpsh(state: &Path, args: &[&str]) -> std::process::Output {
    let output = Command::new(QMPSH).args(args).env("QMPSH_STATE_DIR", state).stdin(Stdio::null()).output().unwrap();
    assert!(output.status.success(), "qmpsh {args:?}: {output:?}");
    output
}

/// The floor: the channel opened afresh (`ga.in`, QEMU's pipe chardev,
/// and `ga.out` beside it), sync, `guest-exec true`, status until exited.
fn floor(channel: &Path) {
    let mut writer = std::fs::OpenOptions::new().write(true).open(channel).unwrap();
    let mut reader = BufReader::new(std::fs::File::open(channel.with_extension("out")).unwrap());
    let mut ask = |message: Value| -> Value {
        writeln!(writer, "{message}").unwrap();
        loop {
            let mut line = Vec::new();
            reader.read_until(b'\n', &mut line).unwrap();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_start_matches('\u{fffd}').trim();
            if let Ok(reply) = serde_json::from_str::<Value>(text)
                && reply.get("return").is_some()
            {
                return reply["return"].clone();
            }
        }
    };
    let token = u64::from(std::process::id()) * 1000 + u64::from(Instant::now().elapsed().subsec_nanos() % 1000);
    sync(&mut ask, token);
    let pid =
        ask(json!({"execute": "guest-exec", "arguments": {"path": "true", "capture-output": true}}))["pid"].clone();
    while ask(json!({"execute": "guest-exec-status", "arguments": {"pid": pid}}))["exited"] != json!(true) {}
}

fn sync(ask: &mut impl FnMut(Value) -> Value, token: u64) {
    while ask(json!({"execute": "guest-sync", "arguments": {"id": token}})) != json!(token) {}
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = times.len();
    format!(
        "median {:.1} ms, min {:.1}, p90 {:.1}, max {:.1} (n={n})",
        ms(times[n / 2]),
        ms(times[0]),
        ms(times[n * 9 / 10]),
        ms(times[n - 1])
    )
}

fn main() {
    let Some(guest) = guest::guest() else {
        eprintln!("SKIPPED: the test guest could not be built");
        return;
    };
    let rounds: usize = std::env::var("QMPSH_BENCH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(31);
    let vms = Vms(common::state_folder());
    let state = vms.0.path();
    let start = guest::vm_start_args("bx", &guest.agent, &[]);
    qmpsh(state, &start.iter().map(String::as_str).collect::<Vec<_>>());
    let booted = Instant::now();
    qmpsh(state, &["vm", "wait", "bx", "--agent", "--timeout", "120"]);
    println!("vm wait --agent: {:.1} s after vm start", booted.elapsed().as_secs_f64());
    let socket = state.join("bx").join("ga.in");
    for _ in 0..3 {
        qmpsh(state, &["vm", "exec", "bx", "--", "true"]);
        floor(&socket);
    }
    let (mut ours, mut floors) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let at = Instant::now();
        qmpsh(state, &["vm", "exec", "bx", "--", "true"]);
        ours.push(at.elapsed());
        let at = Instant::now();
        floor(&socket);
        floors.push(at.elapsed());
    }
    println!("qmpsh vm exec bx -- true: {}", summary(&mut ours));
    println!("floor (one socket, no pause): {}", summary(&mut floors));
    println!("ratio of medians: {:.2}x", ours[rounds / 2].as_secs_f64() / floors[rounds / 2].as_secs_f64());
    libvirt_rows(guest, rounds, ours[rounds / 2]);
}

/// The guest as a transient libvirt domain with an agent channel,
/// destroyed when dropped.
struct Domain {
    uri: String,
    name: String,
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = Command::new("virsh").args(["-q", "-c", &self.uri, "destroy", &self.name]).output();
    }
}

/// What a script without qmpsh runs: `virsh qemu-agent-command` for
/// guest-exec, then for guest-exec-status until the program has exited;
/// the exit code is the program's.
const VIRSH_LOOP: &str = r#"d="$1"; u="$2"
pid=$(virsh -q -c "$u" qemu-agent-command "$d" '{"execute":"guest-exec","arguments":{"path":"true","capture-output":true}}' | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
[ -n "$pid" ] || exit 1
while :; do
  st=$(virsh -q -c "$u" qemu-agent-command "$d" "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}")
  case "$st" in *'"exited":true'*) break ;; esac
done
code=$(printf '%s' "$st" | sed -n 's/.*"exitcode":\([0-9]*\).*/\1/p')
exit "${code:-1}""#;

/// The virsh loop against `qmpsh vm exec -C` on a libvirt domain, when a
/// libvirtd answers; `own` is qmpsh's median on its own VM, for the table.
fn libvirt_rows(guest: &guest::Guest, rounds: usize, own: Duration) {
    let uri = std::env::var("QMPSH_BENCH_URI").unwrap_or_else(|_| "qemu:///system".into());
    let up = Command::new("virsh").args(["-c", &uri, "version"]).stdin(Stdio::null()).output();
    if !up.is_ok_and(|out| out.status.success()) {
        println!("no libvirtd answers at {uri} (.ci/libvirtd start): no virsh rows");
        return;
    }
    let domain = Domain { uri: uri.clone(), name: format!("qmpsh-bench-ga-{}", std::process::id()) };
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("domain.xml");
    std::fs::write(
        &xml,
        format!(
            "<domain type='qemu'><name>{}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{}</kernel><initrd>{}</initrd>\
             <cmdline>{}</cmdline></os><features><acpi/></features>\
             <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>\
             <channel type='unix'><target type='virtio' name='{}'/></channel></devices></domain>",
            domain.name,
            guest.kernel.display(),
            guest.agent.display(),
            guest::APPEND,
            guest::AGENT_PORT
        ),
    )
    .unwrap();
    let created = Command::new("virsh").args(["-q", "-c", &uri, "create"]).arg(&xml).output().unwrap();
    assert!(created.status.success(), "virsh create: {created:?}");
    let ping = || {
        let out = Command::new("virsh")
            .args(["-q", "-c", &uri, "qemu-agent-command", &domain.name, r#"{"execute":"guest-ping"}"#])
            .output()
            .unwrap();
        out.status.success()
    };
    let booted = Instant::now();
    while !ping() {
        assert!(booted.elapsed() < Duration::from_secs(120), "the domain's agent never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    let script = dir.path().join("virsh-loop.sh");
    std::fs::write(&script, VIRSH_LOOP).unwrap();
    let virsh_loop = || {
        let out = Command::new("sh").arg(&script).args([&domain.name, &uri]).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "the virsh loop: {out:?}");
    };
    let via_libvirt = || {
        let args = ["vm", "exec", "-C", &uri, &domain.name, "--", "true"];
        let out = Command::new(QMPSH).args(args).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "qmpsh {args:?}: {out:?}");
    };
    let with_feature = cfg!(feature = "libvirt");
    for _ in 0..3 {
        virsh_loop();
        if with_feature {
            via_libvirt();
        }
    }
    let (mut loops, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let at = Instant::now();
        virsh_loop();
        loops.push(at.elapsed());
        if with_feature {
            let at = Instant::now();
            via_libvirt();
            ours.push(at.elapsed());
        }
    }
    println!("virsh qemu-agent-command loop on {}: {}", domain.name, summary(&mut loops));
    let virsh = loops[rounds / 2].as_secs_f64();
    println!("  its median over qmpsh vm exec on qmpsh's own VM: {:.2}x", virsh / own.as_secs_f64());
    if with_feature {
        println!("qmpsh vm exec -C {uri} {} -- true: {}", domain.name, summary(&mut ours));
        println!("  the virsh loop's median over qmpsh's: {:.2}x", virsh / ours[rounds / 2].as_secs_f64());
    } else {
        println!(
            "(built without the libvirt feature: no qmpsh vm exec -C row; cargo bench --features libvirt --bench exec)"
        );
    }
}
