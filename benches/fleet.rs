//! One command on a fleet of libvirt domains: `qmpsh -C URI1 -C URI2
//! 'libvirt:PATTERN' -c query-status` against a serial loop of `virsh
//! qemu-monitor-command`, and against the same command on one domain.
//! Prints the numbers, side by side, medians of alternating runs.
//!
//! 25 paused transient domains, reached through two URIs of the same
//! libvirtd (`qemu:///system` and `qemu+tcp://127.0.0.1/system`): 50
//! (host, domain) targets.
//!
//! - the fleet: one qmpsh process on all 50, against 50 `virsh -c URI
//!   qemu-monitor-command DOMAIN` calls in a row, 25 per URI (the target:
//!   20x faster);
//! - the fleet against `qmpsh -C qemu:///system libvirt:DOMAIN -c
//!   query-status` on one of them (the target: within 3x);
//! - and, for scale, libvirt's floor: a bare client doing the same calls
//!   in a process of its own (this benchmark run again), with nothing of
//!   qmpsh's (no event loop, no output), which shows what part of the
//!   time is libvirt's and the machine's.
//!
//! Needs a libvirtd listening on TCP (`.ci/libvirtd start`) and the libvirt
//! feature: `cargo bench --features libvirt --bench fleet`
//! (`QMPSH_BENCH_ROUNDS=N`, default 7).

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// They report what they measured on the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::Domain;

const QMPSH: &str = env!("CARGO_BIN_EXE_qmpsh");
const COMMAND: &str = r#"{"execute":"query-status"}"#;
const URIS: [&str; 2] = ["qemu:///system", "qemu+tcp://127.0.0.1/system"];
const DOMAINS: usize = 25;
/// Set to a domain prefix, the benchmark runs as libvirt's floor on the
/// domains that begin with it.
const FLOOR: &str = "QMPSH_BENCH_FLOOR";
/// Threads that create (and destroy) the domains: libvirtd does the work.
const THREADS: usize = 3;

/// Paused transient domains (no OS: QMP is all we talk to), all destroyed
/// on drop, also those created before a panic.
struct Fleet {
    prefix: String,
    names: Vec<String>,
}

impl Fleet {
    fn create(count: usize) -> Fleet {
        let prefix = format!("qmpsh-fleet-bench-{}", std::process::id());
        let names: Vec<String> = (1..=count).map(|n| format!("{prefix}-{n}")).collect();
        // The guard exists before the first domain does.
        let fleet = Fleet { prefix, names };
        std::thread::scope(|s| {
            let workers: Vec<_> = fleet
                .names
                .chunks(count.div_ceil(THREADS))
                .map(|chunk| s.spawn(move || chunk.iter().for_each(|name| create_domain(name))))
                .collect();
            for worker in workers {
                worker.join().expect("a domain is created");
            }
        });
        fleet
    }

    fn pattern(&self) -> String {
        format!("libvirt:{}-*", self.prefix)
    }
}

fn create_domain(name: &str) {
    // <acpi/>: without it libvirt 9.0 passes -no-acpi, which QEMU 10 refuses.
    let xml = format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>\
         <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>"
    );
    let file = std::env::temp_dir().join(format!("{name}.xml"));
    std::fs::write(&file, xml).expect("the domain XML is written");
    let created = Command::new("virsh")
        .args(["-c", URIS[0], "create", "--paused"])
        .arg(&file)
        .stdout(Stdio::null())
        .status()
        .expect("virsh runs (apt-get install libvirt-clients)");
    let _ = std::fs::remove_file(&file);
    assert!(created.success(), "virsh could not create {name}: is libvirtd running? (.ci/libvirtd start)");
}

impl Drop for Fleet {
    fn drop(&mut self) {
        std::thread::scope(|s| {
            for chunk in self.names.chunks(self.names.len().div_ceil(THREADS).max(1)) {
                s.spawn(move || {
                    for name in chunk {
                        let _ = Command::new("virsh")
                            .args(["-c", URIS[0], "destroy", name])
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status();
                    }
                });
            }
        });
    }
}

/// The median, and the fastest and slowest runs.
fn spread(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[0], samples[samples.len() - 1])
}

/// One `virsh qemu-monitor-command` per (URI, domain), one after another.
fn virsh_loop(fleet: &Fleet) -> Duration {
    let start = Instant::now();
    for uri in URIS {
        for name in &fleet.names {
            let ok = Command::new("virsh")
                .args(["-c", uri, "qemu-monitor-command", name, COMMAND])
                .stdout(Stdio::null())
                .status()
                .expect("virsh runs");
            assert!(ok.success(), "virsh qemu-monitor-command {name} at {uri} failed");
        }
    }
    start.elapsed()
}

fn fleet_command(fleet: &Fleet) -> Command {
    let mut command = Command::new(QMPSH);
    for uri in URIS {
        command.args(["-C", uri]);
    }
    command.args([&fleet.pattern(), "-c", "query-status"]);
    command
}

/// One qmpsh on every target; its output checked once, before the rounds.
fn check_fleet(fleet: &Fleet) {
    let out = fleet_command(fleet).stderr(Stdio::null()).output().expect("qmpsh runs");
    assert!(out.status.success(), "qmpsh on the fleet failed: {}", out.status);
    let stdout = String::from_utf8(out.stdout).expect("qmpsh prints UTF-8");
    let targets = URIS.len() * fleet.names.len();
    assert_eq!(stdout.lines().count(), targets, "one line per target:\n{stdout}");
    assert!(stdout.lines().all(|line| line.contains(" | ")), "each line is prefixed with its target:\n{stdout}");
}

fn qmpsh_fleet(fleet: &Fleet) -> Duration {
    let start = Instant::now();
    let ok = fleet_command(fleet).stdout(Stdio::null()).stderr(Stdio::null()).status().expect("qmpsh runs");
    let took = start.elapsed();
    assert!(ok.success(), "qmpsh on the fleet failed: {ok}");
    took
}

fn qmpsh_one(fleet: &Fleet) -> Duration {
    let start = Instant::now();
    let ok = Command::new(QMPSH)
        .args(["-C", URIS[0], &format!("libvirt:{}", fleet.names[0]), "-c", "query-status"])
        .stdout(Stdio::null())
        .status()
        .expect("qmpsh runs");
    let took = start.elapsed();
    assert!(ok.success(), "qmpsh on one domain failed: {ok}");
    took
}

/// libvirt's floor, in this process: both URIs opened side by side, the
/// running domains that begin with `prefix` listed, and one
/// `query-status` for each (URI, domain) from 16 threads, as qmpsh runs
/// them; nothing printed.
fn floor_client(prefix: &str) {
    let reached: Vec<Vec<Domain>> = std::thread::scope(|s| {
        let opening: Vec<_> = URIS
            .iter()
            .map(|uri| {
                s.spawn(move || {
                    let connect = Connect::open(Some(uri)).expect("libvirt answers");
                    let running = connect.list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE).expect("a list");
                    running.into_iter().filter(|d| d.name().is_ok_and(|n| n.starts_with(prefix))).collect()
                })
            })
            .collect();
        opening.into_iter().map(|o| o.join().expect("a connection")).collect()
    });
    let queue = Mutex::new(reached.into_iter().flatten().collect::<Vec<_>>());
    assert_eq!(queue.lock().unwrap().len(), URIS.len() * DOMAINS, "every target, once");
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                loop {
                    // The lock is let go before the call.
                    let Some(domain) = queue.lock().unwrap().pop() else { break };
                    domain.qemu_monitor_command(COMMAND, 0).expect("a reply");
                }
            });
        }
    });
}

fn floor(fleet: &Fleet) -> Duration {
    let start = Instant::now();
    let ok = Command::new(std::env::current_exe().expect("the benchmark's path"))
        .env(FLOOR, &fleet.prefix)
        .status()
        .expect("the benchmark runs again");
    let took = start.elapsed();
    assert!(ok.success(), "the bare client failed: {ok}");
    took
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// A median, then the range of the runs.
fn row((median, min, max): (Duration, Duration, Duration)) -> String {
    format!("{:>10}   ({:.1}-{:.1})", ms(median), min.as_secs_f64() * 1e3, max.as_secs_f64() * 1e3)
}

fn main() {
    if let Ok(prefix) = std::env::var(FLOOR) {
        return floor_client(&prefix);
    }
    let rounds: usize = std::env::var("QMPSH_BENCH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(7);
    let created = Instant::now();
    let fleet = Fleet::create(DOMAINS);
    let targets = URIS.len() * fleet.names.len();
    eprintln!("{DOMAINS} domains created in {}", ms(created.elapsed()));
    check_fleet(&fleet);
    let (mut virsh, mut many, mut one, mut bare) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        virsh.push(virsh_loop(&fleet));
        many.push(qmpsh_fleet(&fleet));
        one.push(qmpsh_one(&fleet));
        bare.push(floor(&fleet));
    }
    let (virsh, many, one, bare) = (spread(virsh), spread(many), spread(one), spread(bare));
    println!("{DOMAINS} domains x {} URIs = {targets} targets, {rounds} rounds, medians (min-max)", URIS.len());
    println!("{targets} x virsh qemu-monitor-command     {}", row(virsh));
    println!("qmpsh on the fleet ({targets} targets)      {}", row(many));
    println!("qmpsh on one domain                  {}", row(one));
    println!("libvirt's floor (a bare client)      {}", row(bare));
    let (virsh, many, one, bare) = (virsh.0, many.0, one.0, bare.0);
    println!("  ratio (virsh loop / fleet)         {:>9.1}x   target >= 20x", virsh.as_secs_f64() / many.as_secs_f64());
    println!("  ratio (fleet / one domain)         {:>9.2}x   target <= 3x", many.as_secs_f64() / one.as_secs_f64());
    println!(
        "  ratio (virsh loop / floor)         {:>9.1}x   the most any client could reach here",
        virsh.as_secs_f64() / bare.as_secs_f64()
    );
    println!(
        "  ratio (fleet / floor)              {:>9.2}x   what qmpsh adds",
        many.as_secs_f64() / bare.as_secs_f64()
    );
}
