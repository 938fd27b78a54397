//! End to end, whole processes against one real QEMU (`-machine none`):
//! qmpsh beside a minimal client of this file's own (the floor: connect,
//! greeting, negotiation, commands, nothing else) and beside qmp-shell when
//! it is installed, runs alternating, printing medians, ratios taken pair by
//! pair, and peak RSS. An event burst from a scripted server shows memory
//! under a flood.
//!
//!     cargo bench --bench e2e            # QMPSH_BENCH_ROUNDS=N for more rounds
//!
//! Needs `qemu-system-x86_64`; qmp-shell is found as `$QMP_SHELL` or on PATH.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// They report what they measured on the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const QMPSH: &str = env!("CARGO_BIN_EXE_qmpsh");
const SCRIPT: usize = 10_000;
const WINDOW: usize = 32;
const BURST: usize = 50_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("floor") {
        floor(&args[1..]);
        return;
    }
    let rounds: usize = std::env::var("QMPSH_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(7);
    let dir = tempfile::tempdir().expect("a temp dir");
    let qemu = Qemu::start(dir.path());
    let sock = qemu.socket.to_str().expect("a UTF-8 path").to_string();
    let script = dir.path().join("script.txt");
    std::fs::write(&script, "query-status\n".repeat(SCRIPT)).expect("the script is written");
    let me = std::env::current_exe().expect("the bench binary");
    let floor = |args: &[&str]| {
        let mut c = Command::new(&me);
        c.arg("floor").arg(&sock).args(args);
        c
    };
    let qmpsh = |args: &[&str]| {
        let mut c = Command::new(QMPSH);
        c.arg(&sock).args(args);
        c
    };

    println!("qmpsh end to end, QEMU -machine none, {rounds} rounds, medians (ratios pair by pair)\n");
    println!("{:<44} {:>10} {:>10} {:>7} {:>9}", "work", "qmpsh", "floor", "ratio", "qmpsh RSS");
    let one_shot = compare(rounds, "one query-status", || qmpsh(&["-c", "query-status"]), || floor(&["one"]), None);
    compare(
        rounds,
        &format!("{SCRIPT} query-status, piped"),
        || qmpsh(&[]),
        || floor(&["script", &SCRIPT.to_string()]),
        Some(&script),
    );
    // Not qmpsh: what an id on each command costs QEMU, which reads its
    // monitor a byte at a time (why qmpsh sends none; README design notes).
    compare(
        rounds,
        &format!("(the floor with an id on each of {SCRIPT})"),
        || floor(&["script-ids", &SCRIPT.to_string()]),
        || floor(&["script", &SCRIPT.to_string()]),
        None,
    );
    compare(
        rounds,
        &format!("{SCRIPT} query-status, --pipeline={WINDOW}"),
        || qmpsh(&[&format!("--pipeline={WINDOW}")]),
        || floor(&["pipeline", &SCRIPT.to_string(), &WINDOW.to_string()]),
        Some(&script),
    );
    compare(
        rounds,
        "-p query-qmp-schema vs raw dump",
        || qmpsh(&["-p", "-c", "query-qmp-schema"]),
        || floor(&["schema"]),
        None,
    );

    if let Some(program) = qmp_shell() {
        // qmp-shell, qmpsh and the floor in turn: each of qmpsh and the
        // floor starts right after a Python process, with cold caches.
        let mut runs = Vec::new();
        for _ in 0..rounds {
            let theirs = run_with_input(Command::new(&program).arg(&sock), b"query-status\n");
            let ours = run(qmpsh(&["-c", "query-status"]), None);
            let again = run_with_input(Command::new(&program).arg(&sock), b"query-status\n");
            let least = run(floor(&["one"]), None);
            runs.push((theirs, ours, again, least));
        }
        let ratio = median(runs.iter().map(|(t, o, ..)| t.wall.as_secs_f64() / o.wall.as_secs_f64()).collect());
        let floor_ratio = median(runs.iter().map(|(_, _, t, f)| t.wall.as_secs_f64() / f.wall.as_secs_f64()).collect());
        let theirs = median(runs.iter().map(|(t, ..)| t.wall.as_secs_f64()).collect());
        let ours = median(runs.iter().map(|(_, o, ..)| o.wall.as_secs_f64()).collect());
        println!(
            "\none command, each right after a qmp-shell run: qmp-shell {}, qmpsh {}: qmp-shell is {ratio:.1}x \
             slower than qmpsh ({floor_ratio:.1}x than the floor); against qmpsh's one-shot row above: {:.1}x",
            ms(theirs),
            ms(ours),
            theirs / one_shot,
        );
    } else {
        println!("one command: qmp-shell                       not installed (pip install qemu.qmp; QMP_SHELL=...)");
    }

    let burst = event_burst(dir.path());
    println!(
        "\n{BURST} events in one burst before a reply: {} printed of {BURST}, {}, peak RSS {:.1} MiB",
        burst.printed,
        ms(burst.run.wall.as_secs_f64()),
        burst.run.peak_kib as f64 / 1024.0
    );
}

/// A finished run: wall time and the peak RSS the kernel accounted.
struct Ran {
    wall: Duration,
    peak_kib: i64,
}

fn run(mut command: Command, stdin: Option<&Path>) -> Ran {
    let input = match stdin {
        Some(path) => Stdio::from(File::open(path).expect("the script opens")),
        None => Stdio::null(),
    };
    command.stdin(input).stdout(Stdio::null()).stderr(Stdio::null());
    let start = Instant::now();
    let child = command.spawn().expect("the command starts");
    reap(child, start)
}

fn run_with_input(command: &mut Command, input: &[u8]) -> Ran {
    command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    let start = Instant::now();
    let mut child = command.spawn().expect("the command starts");
    let _ = child.stdin.take().expect("stdin is piped").write_all(input);
    reap(child, start)
}

/// Waits for `child` and reads its peak RSS from the kernel's accounting.
fn reap(child: Child, start: Instant) -> Ran {
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills; the pid is our child's.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: waits for our own child, filling `status` and `usage`.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(waited, pid, "wait4 failed");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "a benchmarked command failed");
    Ran { wall, peak_kib: usage.ru_maxrss }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(seconds: f64) -> String {
    if seconds >= 1.0 { format!("{seconds:.2} s") } else { format!("{:.2} ms", seconds * 1e3) }
}

/// Alternating runs of qmpsh and the floor; prints medians and the median
/// of the pairwise ratios.
/// Prints one row; returns qmpsh's median wall time in seconds.
fn compare(
    rounds: usize,
    label: &str,
    ours: impl Fn() -> Command,
    floor: impl Fn() -> Command,
    stdin: Option<&Path>,
) -> f64 {
    let mut pairs = Vec::new();
    for _ in 0..rounds {
        let a = run(ours(), stdin);
        let b = run(floor(), None);
        pairs.push((a, b));
    }
    let ratio = median(pairs.iter().map(|(a, b)| a.wall.as_secs_f64() / b.wall.as_secs_f64()).collect());
    let a = median(pairs.iter().map(|(a, _)| a.wall.as_secs_f64()).collect());
    let b = median(pairs.iter().map(|(_, b)| b.wall.as_secs_f64()).collect());
    let rss = median(pairs.iter().map(|(a, _)| a.peak_kib as f64).collect()) / 1024.0;
    println!("{label:<44} {:>10} {:>10} {ratio:>6.2}x {rss:>6.1} MiB", ms(a), ms(b));
    a
}

/// qmp-shell, if installed.
fn qmp_shell() -> Option<PathBuf> {
    let program = PathBuf::from(std::env::var_os("QMP_SHELL").unwrap_or_else(|| "qmp-shell".into()));
    Command::new(&program)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then_some(program)
}

// --- QEMU -------------------------------------------------------------------

struct Qemu {
    child: Child,
    socket: PathBuf,
}

impl Qemu {
    fn start(dir: &Path) -> Qemu {
        let socket = dir.join("qmp.sock");
        let child = Command::new("qemu-system-x86_64")
            .args(["-machine", "none", "-nodefaults", "-display", "none", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 starts (apt-get install qemu-system-x86)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "QEMU did not create its socket");
            thread::sleep(Duration::from_millis(10));
        }
        Qemu { child, socket }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- the floor: a minimal QMP client ------------------------------------------

/// `floor SOCK one|script N|script-ids N|pipeline N W|schema`: connects, reads the
/// greeting, negotiates, runs the commands, reads each reply (passing over
/// events), and nothing more.
#[allow(clippy::disallowed_methods)] // A bench's own process, not qmpsh.
fn floor(args: &[String]) {
    let stream = UnixStream::connect(&args[0]).expect("the floor connects");
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone().expect("a second handle"));
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line).expect("the greeting");
    writer.write_all(b"{\"execute\":\"qmp_capabilities\"}\n").expect("negotiation is sent");
    reply(&mut reader, &mut line);
    let count = |i: usize| args.get(i).and_then(|n| n.parse::<usize>().ok()).unwrap_or(1);
    const STATUS: &[u8] = b"{\"execute\":\"query-status\"}\n";
    match args.get(1).map(String::as_str) {
        Some("one") => {
            writer.write_all(STATUS).expect("sent");
            reply(&mut reader, &mut line);
        }
        Some("script") => {
            for _ in 0..count(2) {
                writer.write_all(STATUS).expect("sent");
                reply(&mut reader, &mut line);
            }
        }
        // Each command with an id, as many clients send them.
        Some("script-ids") => {
            for id in 0..count(2) {
                writeln!(writer, "{{\"execute\":\"query-status\",\"id\":{id}}}").expect("sent");
                reply(&mut reader, &mut line);
            }
        }
        Some("pipeline") => {
            let (total, window) = (count(2), count(3));
            let (mut sent, mut done) = (0, 0);
            let mut batch = Vec::new();
            while done < total {
                batch.clear();
                while sent < total && sent - done < window {
                    batch.extend_from_slice(STATUS);
                    sent += 1;
                }
                writer.write_all(&batch).expect("sent");
                reply(&mut reader, &mut line);
                done += 1;
            }
        }
        Some("schema") => {
            writer.write_all(b"{\"execute\":\"query-qmp-schema\"}\n").expect("sent");
            reply(&mut reader, &mut line);
            std::io::stdout().write_all(line.as_bytes()).expect("the dump is written");
        }
        other => panic!("unknown floor mode {other:?}"),
    }
}

/// Reads lines into `line` until one is a reply (not an event).
fn reply(reader: &mut impl BufRead, line: &mut String) {
    loop {
        line.clear();
        assert!(reader.read_line(line).expect("QEMU answers") > 0, "QEMU closed the connection");
        if !line.starts_with("{\"timestamp\"") {
            return;
        }
    }
}

// --- the event burst ------------------------------------------------------------

struct Burst {
    run: Ran,
    printed: usize,
}

/// A scripted server that answers one command only after `BURST` events;
/// qmpsh must print them all, and its memory must stay bounded.
fn event_burst(dir: &Path) -> Burst {
    let socket = dir.join("burst.sock");
    let listener = UnixListener::bind(&socket).expect("the burst socket binds");
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("qmpsh connects");
        let mut reader = BufReader::new(stream.try_clone().expect("a second handle"));
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, stream);
        let greeting = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#;
        writeln!(writer, "{greeting}").and_then(|()| writer.flush()).expect("greeting");
        let mut line = String::new();
        for n in 0..2 {
            line.clear();
            reader.read_line(&mut line).expect("a command");
            // QEMU echoes an id only when the command carried one.
            let id = line.split("\"id\":").nth(1).map(|rest| rest.trim_end().trim_end_matches('}').to_string());
            let id = id.map(|id| format!(", \"id\": {id}")).unwrap_or_default();
            if n == 1 {
                for i in 0..BURST {
                    let _ = writeln!(
                        writer,
                        r#"{{"timestamp": {{"seconds": 1795608000, "microseconds": {}}}, "event": "BLOCK_IO_ERROR", "data": {{"device": "disk0", "node-name": "n0", "operation": "write", "action": "report", "nospace": false, "reason": "Input/output error {i}"}}}}"#,
                        i % 1_000_000
                    );
                }
            }
            writeln!(writer, r#"{{"return": {{}}{id}}}"#).and_then(|()| writer.flush()).expect("a reply");
        }
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
    });
    let out = dir.join("burst.out");
    let mut command = Command::new(QMPSH);
    command.arg(&socket).args(["-c", "query-status"]);
    command.stdin(Stdio::null()).stdout(File::create(&out).expect("the output file")).stderr(Stdio::null());
    let start = Instant::now();
    let child = command.spawn().expect("qmpsh starts");
    let run = reap(child, start);
    let _ = server.join();
    let mut text = String::new();
    File::open(&out).and_then(|mut f| f.read_to_string(&mut text)).expect("the output reads");
    let printed = text.lines().filter(|l| l.contains("BLOCK_IO_ERROR")).count();
    Burst { run, printed }
}
