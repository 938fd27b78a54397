//! Soak: many connections, a long script and a long event stream against
//! one real QEMU, measuring what would grow if something leaked: QEMU's
//! open files, and qmpsh's resident memory. The numbers print on stderr
//! (`cargo test --test soak -- --nocapture`).

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// They report what they measured on the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::Qemu;
use common::tmux::Tmux;

/// How far qmpsh's resident memory may grow from the sample taken once it
/// is warm to the highest one after. A leak of 64 bytes per script line
/// (18,000 lines after that sample), or of 128 bytes per event, less than
/// the event's own JSON (9,000 events after it), crosses it.
const RSS_GROWTH_LIMIT_KIB: i64 = 1024;

/// `query-status` as this QEMU answers it, compact, while it runs and
/// while it is paused: asked by a client of the test's own, so the test
/// holds on any QEMU version (7.2 adds `"singlestep":false`).
fn statuses(qemu: &Qemu) -> (String, String) {
    let status = || common::query(&qemu.socket, "query-status")["return"].to_string();
    let running = status();
    common::query(&qemu.socket, "stop");
    let paused = status();
    common::query(&qemu.socket, "cont");
    assert!(running.contains(r#""status":"running""#) && paused.contains(r#""status":"paused""#));
    (running, paused)
}

/// The open files of process `pid`: fd number → what it points to.
fn open_files(pid: u32) -> BTreeMap<String, String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("cannot list /proc/{pid}/fd: {e}"))
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = fs::read_link(entry.path()).map(|t| t.display().to_string()).unwrap_or_default();
            Some((entry.file_name().to_string_lossy().into_owned(), target))
        })
        .collect()
}

/// QEMU's open files once it has finished closing what a client left: the
/// same set read twenty times in a row, 20 ms apart (QEMU notices a hang-up
/// in its main loop, a moment after the client has gone).
fn settled_open_files(pid: u32) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = open_files(pid);
    let mut same = 0;
    while same < 20 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        let now = open_files(pid);
        if now == last {
            same += 1;
        } else {
            same = 0;
            last = now;
        }
    }
    last
}

/// The resident memory of process `pid`, in KiB (VmRSS).
fn rss_kib(pid: u32) -> i64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/PID/status");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS: N kB")
}

#[test]
fn a_thousand_connections_leave_qemu_no_open_files() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let pid = qemu.child.id();
    let socket = qemu.socket_arg();
    let once = || common::qmpsh(&[&socket, "-c", "query-status"], "");
    let (running, _) = statuses(&qemu);

    // A first connection, so that whatever QEMU opens once (and keeps) on
    // its first client is counted before, not taken for a leak.
    let warm_up = once();
    assert_eq!((warm_up.code, warm_up.stdout, warm_up.stderr), (0, format!("{running}\n"), String::new()));
    let before = settled_open_files(pid);

    let started = Instant::now();
    for n in 1..=1000 {
        let run = once();
        assert_eq!(run.code, 0, "connection {n}: {run:?}");
        assert_eq!(run.stdout, format!("{running}\n"), "connection {n}: {run:?}");
        assert_eq!(run.stderr, "", "connection {n}");
    }
    let elapsed = started.elapsed();
    let after = settled_open_files(pid);

    eprintln!(
        "soak: 1000 x `qmpsh -c query-status` in {:.1} s; QEMU's open files {} before, {} after",
        elapsed.as_secs_f64(),
        before.len(),
        after.len()
    );
    assert_eq!(after.len(), before.len(), "QEMU's open files grew\nbefore: {before:#?}\nafter: {after:#?}");
    // QEMU still serves a client.
    assert_eq!(common::query(&qemu.socket, "query-status")["return"]["status"], "running");
}

/// One cycle of the long script: table commands, QMP commands with and
/// without key=value arguments (the latter need the schema), raw JSON,
/// HMP, and stop/cont for events between the replies.
const CYCLE: &[&str] = &[
    "query-status",
    "query-name",
    "info status",
    "qom-list path=/machine",
    "stop",
    "query-status",
    "cont",
    "qom-get path=/machine property=type",
    r#"{"execute": "query-name"}"#,
    "hmp info status",
];

/// What one cycle prints, line by line: the exact line, or `EVENT NAME`
/// and `QOM-LIST` for lines that [`check_line`] checks by their shape;
/// `running` and `paused` are [`statuses`].
fn cycle_output(running: &str, paused: &str) -> Vec<String> {
    [
        running,
        r#"{"name":"soak"}"#,
        running,
        "QOM-LIST",
        "EVENT STOP",
        "ok",
        paused,
        "EVENT RESUME",
        "ok",
        r#""none-machine""#,
        r#"{"name":"soak"}"#,
        "VM status: running",
    ]
    .map(str::to_string)
    .to_vec()
}

/// Whether `line` is what `expected` (from [`cycle_output`]) describes.
fn check_line(expected: &str, line: &str) -> bool {
    if let Some(event) = expected.strip_prefix("EVENT ") {
        // `12:04:31.512 STOP`: a local time, then the event.
        let (time, name) = line.split_once(' ').unwrap_or(("", ""));
        name == event && time.len() == 12 && time.bytes().all(|b| b.is_ascii_digit() || b == b':' || b == b'.')
    } else if expected == "QOM-LIST" {
        line.starts_with('[') && line.contains(r#"{"name":"type","type":"string"}"#)
    } else {
        line == expected
    }
}

#[test]
fn twenty_thousand_commands_run_in_flat_memory() {
    let Some(qemu) = Qemu::start(&["-name", "soak"]) else { return };
    let (running, paused) = statuses(&qemu);
    let mut command = common::qmpsh_command(&[&qemu.socket_arg()]);
    command.env("NO_COLOR", "1");
    let mut child = command.spawn().expect("the qmpsh binary runs");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (lines, output) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.expect("qmpsh's stdout is UTF-8")).is_err() {
                return;
            }
        }
    });
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    // Fed 1,000 lines (100 cycles) at a time: each chunk's replies must all
    // come before the next is sent, so qmpsh reads a pipe that pauses, as
    // from a program that writes as it goes.
    const CHUNK_CYCLES: usize = 100;
    const CHUNKS: usize = 20;
    let chunk: String = CYCLE.iter().map(|l| format!("{l}\n")).collect::<String>().repeat(CHUNK_CYCLES);
    let expected = cycle_output(&running, &paused);
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut replies = 0;
    let mut warm_files = BTreeMap::new();
    for n in 1..=CHUNKS {
        stdin.write_all(chunk.as_bytes()).expect("qmpsh reads its script");
        stdin.flush().unwrap();
        for cycle in 0..CHUNK_CYCLES {
            for want in &expected {
                let line = match output.recv_timeout(Duration::from_secs(60)) {
                    Ok(line) => line,
                    Err(e) => {
                        let _ = child.kill();
                        panic!("chunk {n}, cycle {cycle}: no line ({e}) where {want} was due")
                    }
                };
                assert!(check_line(want, &line), "chunk {n}, cycle {cycle}: expected {want}, got {line:?}");
                if !want.starts_with("EVENT ") {
                    replies += 1;
                }
            }
        }
        // Sampled while qmpsh waits for the next chunk: it has answered
        // every line so far.
        samples.push((n * CHUNK_CYCLES * CYCLE.len(), rss_kib(pid)));
        if n == 2 {
            warm_files = open_files(pid);
        }
    }
    let elapsed = started.elapsed();
    let last_files = open_files(pid);
    drop(stdin);
    let status = common::wait_with_deadline(&mut child, Duration::from_secs(30)).expect("qmpsh exits at end of input");
    let stderr = errors.join().unwrap();
    assert!(output.recv_timeout(Duration::from_secs(5)).is_err(), "output after the last reply");

    let (_, warm) = samples[1];
    let (_, last) = *samples.last().unwrap();
    let peak = samples[1..].iter().map(|&(_, kib)| kib).max().unwrap();
    eprintln!(
        "soak: 20000 script lines ({replies} replies, {} events) in {:.1} s; qmpsh VmRSS {warm} KiB after 2000 lines, \
         {last} KiB after 20000 (peak {peak} KiB); every 1000 lines: {:?}; qmpsh's open files {} after 2000 \
         lines, {} after 20000",
        CHUNKS * CHUNK_CYCLES * 2,
        elapsed.as_secs_f64(),
        samples.iter().map(|&(_, kib)| kib).collect::<Vec<_>>(),
        warm_files.len(),
        last_files.len()
    );
    assert!(status.success(), "qmpsh exited with {status}; stderr: {stderr}");
    assert_eq!(stderr, "");
    assert_eq!(replies, 20_000);
    assert!(
        peak - warm <= RSS_GROWTH_LIMIT_KIB,
        "qmpsh's memory grew from {warm} KiB (2000 lines) to {peak} KiB; samples every 1000 lines: {samples:?}"
    );
    assert_eq!(last_files, warm_files, "qmpsh's open files changed");
}

// --- the REPL in a terminal ----------------------------------------------

/// A QMP client on QEMU's second monitor that sends commands in bulk.
struct Second {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Second {
    fn connect(socket: &Path) -> Second {
        let stream = UnixStream::connect(socket).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut second = Second { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        let mut greeting = String::new();
        second.reader.read_line(&mut greeting).unwrap();
        assert!(greeting.contains("\"QMP\""), "{greeting}");
        second.run(&["qmp_capabilities"]);
        second
    }

    /// Sends `commands` all at once (a thread writes while this one reads,
    /// so neither side's buffer fills) and waits for every reply.
    fn run(&mut self, commands: &[&str]) {
        let text: String = commands.iter().map(|c| format!("{{\"execute\": \"{c}\"}}\n")).collect();
        let mut writer = self.writer.try_clone().unwrap();
        let sending = thread::spawn(move || writer.write_all(text.as_bytes()).unwrap());
        let mut line = String::new();
        let mut replies = 0;
        while replies < commands.len() {
            line.clear();
            let read = self.reader.read_line(&mut line).expect("QEMU's second monitor answers");
            assert!(read > 0, "QEMU closed its second monitor");
            assert!(!line.contains("\"error\""), "{line}");
            if line.contains("\"return\"") {
                replies += 1;
            }
        }
        sending.join().unwrap();
    }
}

/// The event a screen line shows (`12:04:31.512 NAME {DATA}`), by its name.
fn event_name(line: &str) -> Option<&str> {
    let (time, rest) = line.trim_end().split_once(' ')?;
    let is_time = time.len() == 12 && time.as_bytes()[2] == b':' && time.as_bytes()[8] == b'.';
    is_time.then(|| rest.split(' ').next().unwrap_or(rest))
}

/// How many lines show each event, by its name.
fn shown_events(text: &str) -> BTreeMap<String, usize> {
    let mut shown = BTreeMap::new();
    for name in text.lines().filter_map(event_name) {
        *shown.entry(name.to_string()).or_default() += 1;
    }
    shown
}

/// The last event line on the screen, by its name.
fn last_event(screen: &str) -> Option<&str> {
    screen.lines().rev().find_map(event_name)
}

#[test]
fn a_repl_receiving_a_long_event_stream_stays_flat() {
    let Some((qemu, second)) = Qemu::with_second_monitor(&["-name", "soak-repl"]) else { return };
    let dir = qemu.dir.path();
    let pidfile = dir.join("qmpsh.pid");
    let command = format!(
        "sh -c 'echo $$ > {}; exec env XDG_STATE_HOME={} {} {}'; echo qmpsh-exit=$?; sleep 60",
        pidfile.display(),
        dir.join("state").display(),
        env!("CARGO_BIN_EXE_qmpsh"),
        qemu.socket.display()
    );
    let Some(tmux) = Tmux::start(&command) else { return };
    tmux.wait_for("the prompt", |s| s.contains("soak-repl>"));
    let pid: u32 = fs::read_to_string(&pidfile).unwrap().trim().parse().expect("a pid in the pidfile");
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("qmpsh"), "pid {pid} is {}", exe.display());

    // Bursts of stop/cont pairs through the second monitor. Each ends with
    // a marker, a powerdown or a reset in turn: once its event is the last
    // on the screen (the one before was the other marker), the REPL has
    // read and shown every event of the burst.
    let mut monitor = Second::connect(&second);
    let started = Instant::now();
    let mut events = 0;
    let mut samples = Vec::new();
    let mut warm_files = BTreeMap::new();
    let markers = [("system_powerdown", "POWERDOWN"), ("system_reset", "RESET")];
    for (n, pairs) in [500, 500, 1000, 1000, 1000, 1000].into_iter().enumerate() {
        let (command, marker) = markers[n % 2];
        let mut burst: Vec<&str> = [["stop", "cont"]; 1000][..pairs].concat();
        burst.push(command);
        monitor.run(&burst);
        events += 2 * pairs;
        let screen = tmux.wait_within(&format!("{marker} after burst {n}"), Duration::from_secs(60), |s| {
            last_event(s) == Some(marker)
        });
        assert!(screen.contains(" RESUME"), "{screen}");
        samples.push((events, rss_kib(pid)));
        if n == 0 {
            warm_files = open_files(pid);
        }
    }
    let elapsed = started.elapsed();
    let last_files = open_files(pid);

    // The REPL still answers.
    let before = tmux.screen();
    assert!(!before.contains("\"status\": \"running\""), "{before}");
    tmux.type_text("query-status");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the query-status reply", |s| s.contains("\"status\": \"running\""));
    let shown = shown_events(&tmux.everything());
    let (_, warm) = samples[0];
    let (_, last) = *samples.last().unwrap();
    let peak = samples.iter().map(|&(_, kib)| kib).max().unwrap();
    eprintln!(
        "soak: the REPL showed {events} events (+{} markers) in {:.1} s; qmpsh VmRSS {warm} KiB after 1000 events, \
         {last} KiB after {events} (peak {peak} KiB); samples (events, KiB): {samples:?}; qmpsh's open files \
         {} after 1000 events, {} after {events}; event lines in the scrollback: {shown:?}",
        samples.len(),
        elapsed.as_secs_f64(),
        warm_files.len(),
        last_files.len()
    );
    // Every event was shown, each once.
    let each = samples.len() / 2;
    assert_eq!(
        shown,
        BTreeMap::from(
            [("POWERDOWN", each), ("RESET", each), ("RESUME", events / 2), ("STOP", events / 2)]
                .map(|(name, n)| (name.to_string(), n))
        )
    );
    tmux.keys(&["C-d"]);
    tmux.wait_for("the exit status", |s| s.contains("qmpsh-exit=0"));
    assert!(
        peak - warm <= RSS_GROWTH_LIMIT_KIB,
        "qmpsh's memory grew from {warm} KiB (1000 events) to {peak} KiB; samples (events, KiB): {samples:?}"
    );
    assert_eq!(last_files, warm_files, "qmpsh's open files changed");
}
