//! qmpsh through libvirt, against libvirt's own tools, on one paused
//! domain: prints the numbers, side by side, medians of alternating runs.
//!
//! - a 200-line script through `qmpsh libvirt:DOMAIN` against 200
//!   `virsh qemu-monitor-command` calls (the target: 10x faster);
//! - one command on an open connection: qmpsh's cost per extra script line
//!   against `virDomainQemuMonitorCommand` called in a loop through the
//!   `virt` crate (the target: within 2x).
//!
//! Needs a libvirtd (`.ci/libvirtd start`) and the libvirt feature:
//! `cargo bench --features libvirt --bench libvirt`. `QMPSH_BENCH_URI`
//! picks the libvirt (default qemu:///system).

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// They report what they measured on the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const QMPSH: &str = env!("CARGO_BIN_EXE_qmpsh");
const COMMAND: &str = r#"{"execute":"query-status"}"#;
const SCRIPT_LINES: usize = 200;
const ROUNDS: usize = 5;

/// A paused transient domain (no OS: QMP is all we talk to), destroyed on drop.
struct Domain {
    uri: String,
    name: String,
}

impl Domain {
    fn create(uri: &str) -> Domain {
        let name = format!("qmpsh-bench-{}", std::process::id());
        let xml = format!(
            "<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type></os>\
             <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>"
        );
        let file = std::env::temp_dir().join(format!("{name}.xml"));
        std::fs::write(&file, xml).expect("the domain XML is written");
        let created = Command::new("virsh")
            .args(["-c", uri, "create", "--paused"])
            .arg(&file)
            .stdout(Stdio::null())
            .status()
            .expect("virsh runs (apt-get install libvirt-clients)");
        let _ = std::fs::remove_file(&file);
        assert!(created.success(), "virsh could not create the domain: is libvirtd running? (.ci/libvirtd start)");
        Domain { uri: uri.to_string(), name }
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = Command::new("virsh").args(["-c", &self.uri, "destroy", &self.name]).stdout(Stdio::null()).status();
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn virsh_calls(domain: &Domain, calls: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..calls {
        let ok = Command::new("virsh")
            .args(["-c", &domain.uri, "qemu-monitor-command", &domain.name, COMMAND])
            .stdout(Stdio::null())
            .status()
            .expect("virsh runs");
        assert!(ok.success(), "virsh qemu-monitor-command failed");
    }
    start.elapsed()
}

fn qmpsh_script(domain: &Domain, lines: usize) -> Duration {
    let script = "query-status\n".repeat(lines);
    let start = Instant::now();
    let mut child = Command::new(QMPSH)
        .args(["-C", &domain.uri, &format!("libvirt:{}", domain.name)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("qmpsh runs");
    child.stdin.take().expect("stdin is piped").write_all(script.as_bytes()).expect("the script is written");
    assert!(child.wait().expect("qmpsh ends").success(), "qmpsh failed");
    start.elapsed()
}

/// libvirt's own cost: one open connection, `calls` monitor commands.
fn api_calls(domain: &Domain, calls: usize) -> Duration {
    virt::error::clear_error_callback();
    let connect = virt::connect::Connect::open(Some(&domain.uri)).expect("libvirt opens");
    let dom = connect.lookup_domain_by_name(&domain.name).expect("the domain is there");
    let start = Instant::now();
    for _ in 0..calls {
        dom.qemu_monitor_command(COMMAND, 0).expect("the command runs");
    }
    start.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let uri = std::env::var("QMPSH_BENCH_URI").unwrap_or_else(|_| "qemu:///system".into());
    let domain = Domain::create(&uri);
    let long = SCRIPT_LINES * 10;
    let (mut virsh, mut script, mut one, mut many, mut api) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        virsh.push(virsh_calls(&domain, SCRIPT_LINES));
        script.push(qmpsh_script(&domain, SCRIPT_LINES));
        one.push(qmpsh_script(&domain, 1));
        many.push(qmpsh_script(&domain, long + 1));
        api.push(api_calls(&domain, long));
    }
    let (virsh, script) = (median(virsh), median(script));
    let per_line = median(many).saturating_sub(median(one)) / long as u32;
    let per_api_call = median(api) / long as u32;
    println!("libvirt at {uri}, {ROUNDS} rounds, medians");
    println!("{SCRIPT_LINES} x virsh qemu-monitor-command   {:>12}", ms(virsh));
    println!("qmpsh, a {SCRIPT_LINES}-line script          {:>12}", ms(script));
    println!(
        "  ratio (virsh / qmpsh)              {:>11.1}x   target >= 10x",
        virsh.as_secs_f64() / script.as_secs_f64()
    );
    println!("qmpsh, one more command              {:>12}", ms(per_line));
    println!("virDomainQemuMonitorCommand (virt)   {:>12}", ms(per_api_call));
    println!(
        "  ratio (qmpsh / API)                {:>11.2}x   target <= 2x",
        per_line.as_secs_f64() / per_api_call.as_secs_f64()
    );
}
