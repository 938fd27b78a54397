//! `qmpsh vm exec NAME -- true` on a guest that is up: what a CI script
//! pays per command. The guest is the tests' (Debian's kernel, busybox,
//! Debian's real qemu-ga) under TCG; the floor is a minimal client in this
//! file on the same channel (sync, guest-exec, guest-exec-status polled
//! with no pause), so the ratio is what qmpsh adds to the agent's own
//! time: a process start, connecting, `guest-info`, and the back-off.
//!
//! `cargo bench --bench exec` (`QMPSH_BENCH_ROUNDS=N`, default 31). The
//! issue's other baseline, `virsh qemu-agent-command` in a polling loop,
//! needs a libvirt domain with an agent channel and is not here yet.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// They report what they measured on the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
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

/// The floor: one connection, sync, `guest-exec true`, status until exited.
fn floor(socket: &Path) {
    let stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
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
    let socket = state.join("bx").join("ga.sock");
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
}
