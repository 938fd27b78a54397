//! The differential test against HMP, QEMU's own human monitor. qmpsh
//! promises that a human line (positional arguments, a QemuOpts string)
//! means what HMP does with the same line on the same QEMU (issue 20); this
//! test measures it.
//!
//! Every entry of `hmp_differential/corpus.txt` is a line as a person types
//! it. For each, two fresh QEMUs of one configuration ([`MACHINE`]) start;
//! the line goes through `qmpsh SOCK -c LINE` on one and through HMP
//! (`human-monitor-command`, the line exactly as typed) on the other. Then
//! the entry's probes read the state back from both (QMP queries, HMP
//! listings, QEMU's trace log, files QEMU wrote, whether VNC takes a
//! password), and the two must agree: the same outcome (both succeeded or
//! both failed) and the same probe results, and where the entry asks, the
//! same printed output. Any difference fails the test unless
//! [`DIFFERENCES`] lists the entry with the reason.
//!
//! What the outcome is: for qmpsh its exit code; for HMP, which answers
//! everything with text, whether that text is one of the forms HMP reports a
//! failure in ([`hmp_failed`]). The two QEMUs of an entry run its line one
//! after the other (the first is killed before the second runs it), so a
//! line that binds a host port does not meet its twin; entries run on a few
//! threads at once.
//!
//! `HMP_DIFFERENTIAL_LOG=FILE` writes every entry's outcomes and probe
//! results there, differing or not, for reading the corpus's effect.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// They report what they measured on the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Qemu, qmpsh_command, wait_with_deadline};

const CORPUS: &str = include_str!("hmp_differential/corpus.txt");
const TABLE: &str = include_str!("../grammar/commands.json");

/// The machine both QEMUs of an entry run (with the `-nodefaults -display
/// none -qmp` that [`Qemu::start_args`] adds). Paused, so nothing changes
/// unless a line changes it; the devices are what the corpus's commands act
/// on. The trace events are the probes' only view of what some commands did
/// (the balloon's target, keys sent, a NIC's link), written to `trace.log`.
const MACHINE: &[&str] = &[
    "-machine",
    "pc",
    "-accel",
    "tcg",
    "-S",
    "-m",
    "64",
    "-D",
    "trace.log",
    "-trace",
    "virtio_balloon_to_target",
    "-trace",
    "input_event_key_*",
    "-trace",
    "e1000e_link_status_changed",
    "-trace",
    "qemu_system_powerdown_request",
    "-drive",
    "if=none,id=disk0,file=disk.img,format=raw",
    "-device",
    "virtio-blk-pci,drive=disk0,id=vd0",
    "-drive",
    "if=none,id=d1,driver=null-co",
    "-drive",
    "if=none,id=d2,driver=null-co",
    "-drive",
    "if=none,id=cd0,media=cdrom",
    "-device",
    "ide-cd,drive=cd0,id=cdrom0",
    "-object",
    "iothread,id=io0",
    "-netdev",
    "user,id=net0",
    "-device",
    "e1000e,netdev=net0,id=nic0",
    "-netdev",
    "user,id=net1",
    "-device",
    "virtio-balloon-pci,id=balloon0",
    "-chardev",
    "ringbuf,id=rb0,size=1024",
    "-device",
    "VGA,id=vga0",
    "-vnc",
    "unix:vnc.sock,password=on",
];

/// Sparse files (name, size) in each QEMU's folder, its working directory.
const FILES: &[(&str, u64)] =
    &[("disk.img", 64 << 20), ("cd.iso", 1 << 20), ("a=b.iso", 1 << 20), ("b c.iso", 1 << 20), ("x,y.iso", 1 << 20)];

/// Entries run on this many threads at once, each with its two QEMUs.
const WORKERS: usize = 3;

/// How long a qmpsh run, a QMP exchange or a settling probe may take.
const RUN_LIMIT: Duration = Duration::from_secs(30);
const REPLY_LIMIT: Duration = Duration::from_secs(20);
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// Where qmpsh knowingly does something else than HMP with a line: the
/// corpus line, the QEMU release it differs on (`None`: every one), what
/// qmpsh does ([`SENDS`] it, or [`REFUSES`] it before sending; checked),
/// and why. grammar/GRAMMAR.md lists the same classes for users.
const DIFFERENCES: &[(&str, Option<&str>, bool, &str)] = &[
    // A key given twice: HMP keeps one value silently (the first `id`, the
    // last of anything else); qmpsh refuses rather than guess.
    ("device_add e1000,id=n1,id=n2", None, REFUSES, TWICE),
    ("device_add e1000,id=n1,bootindex=1,bootindex=2", None, REFUSES, TWICE),
    ("device_add e1000,driver=rtl8139,id=n1", None, REFUSES, TWICE),
    ("device_add virtio-blk-pci,id=vb1,drive=d1,drive=d2", None, REFUSES, TWICE),
    ("object_add iothread,id=io1,poll-max-ns=1,poll-max-ns=2", None, REFUSES, TWICE),
    ("object_add iothread,id=io1,id=io2", None, REFUSES, TWICE),
    ("netdev_add user,id=n1,id=n2", None, REFUSES, TWICE),
    // ...except where QEMU takes a list: each is an element, as on QEMU's
    // command line (HMP keeps only the last forward).
    ("netdev_add user,id=n1,hostfwd=tcp::2222-:22,hostfwd=tcp::2223-:23", None, SENDS, LIST),
    ("netdev_add user,id=n1,hostfwd=tcp:127.0.0.1:52202-:22,hostfwd=udp:127.0.0.1:52203-:53", None, SENDS, LIST),
    ("object_add memory-backend-ram,id=m2,size=1M,policy=bind,host-nodes=0", None, SENDS, LIST),
    // An object's `int` may be a size: QEMU's schema shows both as int.
    ("object_add iothread,id=io1,poll-max-ns=1k", None, SENDS, INT_OR_SIZE),
    ("object_add iothread,id=io1,poll-max-ns=010", None, REFUSES, INT_OR_SIZE),
    ("object_add iothread,id=io1,poll-grow=2,poll-shrink=010", None, REFUSES, INT_OR_SIZE),
    ("object_add throttle-group,id=tg0,x-bps-total=1M", None, SENDS, INT_OR_SIZE),
    ("object_add memory-backend-ram,id=m2,size=010", None, REFUSES, INT_OR_SIZE),
    ("object_add memory-backend-ram,id=m2,size=-1", None, SENDS, INT_OR_SIZE),
    // HMP's flags stand at their place in the usage; qmpsh takes them anywhere.
    ("change -f cd0 cd.iso", None, SENDS, FLAGS),
    ("screendump -f png shot.png", None, SENDS, FLAGS),
    // HMP reads a number argument as an expression; qmpsh as a number.
    ("sendkey a 20+30", None, REFUSES, EXPRESSION),
    ("balloon 16*2", None, REFUSES, EXPRESSION),
    // More than HMP takes, with one meaning.
    ("balloon 1G", None, SENDS, MORE),
    ("balloon 1g", None, SENDS, MORE),
    ("balloon 32M", None, SENDS, MORE),
    ("balloon 1.5G", None, SENDS, MORE),
    ("balloon 512k", None, SENDS, MORE),
    ("set_link nic0 yes", None, SENDS, MORE),
    ("set_link nic0 no", None, SENDS, MORE),
    ("set_link nic0 true", None, SENDS, MORE),
    ("set_link nic0 false", None, SENDS, MORE),
    ("device_add virtio-blk-pci drive=d1 id=vb9 serial=0012345", None, SENDS, MORE),
    (
        "block_resize disk0 size=128",
        None,
        SENDS,
        "after positional words, a key=value naming a number argument is that argument, in QMP's units (bytes); \
         HMP refuses the word",
    ),
    (
        "qom-list",
        None,
        REFUSES,
        "HMP's `qom-list` alone prints `/` and nothing else; qmpsh asks for the path (QMP's qom-list needs one)",
    ),
    (
        "qom-set /machine append [abc]",
        None,
        REFUSES,
        "a word that opens JSON (`[`) and is none is refused by qmpsh's grammar, which knows no command; quote it \
         or use -j",
    ),
    (
        "block_resize disk0 0x10M",
        Some("7.2"),
        REFUSES,
        "QEMU 7.2 takes a size suffix on hex (deprecated, gone in 8.0); qmpsh reads sizes as QEMU 8.0 and newer do",
    ),
    (
        "object_add memory-backend-ram,id=m3,size=.5M",
        Some("7.2"),
        SENDS,
        "QEMU 7.2 wants a digit before a size's point; qmpsh reads sizes as QEMU 10.0 does",
    ),
];

/// What qmpsh does with a listed line: sends it, or refuses it.
const SENDS: bool = true;
const REFUSES: bool = false;

const TWICE: &str = "a key given twice is refused: HMP keeps one of the values without a word";
const LIST: &str = "a key QEMU takes a list for may repeat, each an element, as on QEMU's command line";
const INT_OR_SIZE: &str = "QEMU's schema shows a size as `int`: qmpsh reads an object's `int` as a number (base 0), \
     else as a size, where HMP knows which it is";
const FLAGS: &str = "HMP takes a flag only at its place in the usage; qmpsh anywhere";
const EXPRESSION: &str = "HMP reads a number argument as an expression (`20+30`); qmpsh reads a number";
const MORE: &str = "qmpsh takes more than HMP (a size suffix for balloon; yes/no/true/false for on/off; key=value \
     words after device_add's driver), with one meaning";

// --- the corpus ---------------------------------------------------------------

/// One corpus entry: a line and what runs around it.
struct Entry {
    /// Where it is in corpus.txt (1-based).
    row: usize,
    line: String,
    setup: Vec<Probe>,
    probes: Vec<Probe>,
    printed: Printed,
}

/// How the printed output of the line is compared, besides the outcome.
#[derive(Clone, Copy, PartialEq)]
enum Printed {
    /// Not at all: qmpsh prints QMP's JSON where HMP prints its own text.
    Ignored,
    /// As text (help, HMP-only commands).
    Text,
    /// Both read as JSON (`qom-get`, which HMP prints as JSON too).
    Json,
    /// `qom-list`: HMP's `name (type)` rows against qmpsh's JSON array.
    Names,
}

/// A way to read state from a QEMU (or, as a setup step, to change it).
struct Probe {
    /// As written in the corpus.
    text: String,
    /// Read again until it stops changing.
    settle: bool,
    kind: ProbeKind,
}

enum ProbeKind {
    /// A QMP command, and the path into its `return` to keep.
    Qmp(Value, Vec<String>),
    /// An HMP line: its reply text.
    Hmp(String),
    /// The lines of `trace.log` for events whose name starts so.
    Trace(String),
    /// A file in QEMU's folder: its size and hash.
    File(String),
    /// Whether the VNC server accepts this password.
    VncPassword(String),
    /// Whether QEMU has exited.
    Exited,
}

fn corpus() -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for (index, row) in CORPUS.lines().enumerate() {
        let at = || format!("corpus.txt:{}", index + 1);
        let trimmed = row.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if !row.starts_with([' ', '\t']) {
            let printed = Printed::Ignored;
            entries.push(Entry { row: index + 1, line: row.to_string(), setup: vec![], probes: vec![], printed });
            continue;
        }
        let entry = entries.last_mut().unwrap_or_else(|| panic!("{}: an indented row before any line", at()));
        let (mark, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
        let rest = rest.trim();
        match mark {
            "<" => entry.setup.push(probe(rest, false).unwrap_or_else(|e| panic!("{}: {e}", at()))),
            "?" | "?~" => entry.probes.push(probe(rest, mark == "?~").unwrap_or_else(|e| panic!("{}: {e}", at()))),
            "=" => {
                entry.printed = match rest {
                    "text" => Printed::Text,
                    "json" => Printed::Json,
                    "names" => Printed::Names,
                    other => panic!("{}: `= {other}`: expected text, json or names", at()),
                }
            }
            other => panic!("{}: a row starting with `{other}`: expected <, ?, ?~ or =", at()),
        }
    }
    entries
}

fn probe(text: &str, settle: bool) -> Result<Probe, String> {
    let (name, rest) = text.split_once(' ').map_or((text, ""), |(n, r)| (n, r.trim()));
    let kind = match name {
        "exited" => ProbeKind::Exited,
        "hmp" => ProbeKind::Hmp(rest.to_string()),
        "trace" => ProbeKind::Trace(rest.to_string()),
        "file" => ProbeKind::File(rest.to_string()),
        "vnc-password" => ProbeKind::VncPassword(rest.to_string()),
        "qom-get" | "qom-list" => {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let arguments = match (name, words.as_slice()) {
                ("qom-get", [path, property]) => json!({"path": path, "property": property}),
                ("qom-list", [path]) => json!({"path": path}),
                _ => return Err(format!("`{text}`: qom-get takes PATH PROP, qom-list PATH")),
            };
            ProbeKind::Qmp(json!({"execute": name, "arguments": arguments}), vec![])
        }
        _ => {
            let mut message = json!({"execute": name});
            let mut rest = rest;
            if rest.starts_with('{') {
                let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
                let arguments = values.next().unwrap().map_err(|e| format!("`{text}`: bad JSON arguments: {e}"))?;
                message["arguments"] = arguments;
                rest = rest[values.byte_offset()..].trim();
            }
            let path = match rest.strip_prefix('.') {
                Some(path) => path.split('.').map(str::to_string).collect(),
                None if rest.is_empty() => vec![],
                None => return Err(format!("`{text}`: expected `.path` after the command, not `{rest}`")),
            };
            ProbeKind::Qmp(message, path)
        }
    };
    Ok(Probe { text: text.to_string(), settle, kind })
}

// --- running an entry -----------------------------------------------------------

/// What one side did with the line.
#[derive(Default)]
struct Outcome {
    succeeded: bool,
    /// How it ended: `exit 0`, `HMP replied`, ...
    how: String,
    /// qmpsh's stdout, or HMP's reply text.
    printed: String,
    /// qmpsh's stderr.
    said: String,
}

/// One side of an entry: the outcome and each setup and probe result.
#[derive(Default)]
struct Side {
    setup: Vec<String>,
    outcome: Outcome,
    probes: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Qmpsh,
    Hmp,
}

/// Starts a QEMU running [`MACHINE`] in a folder holding [`FILES`].
fn start_qemu() -> Qemu {
    Qemu::start_args(|dir| {
        for (name, size) in FILES {
            File::create(dir.join(name)).unwrap().set_len(*size).unwrap();
        }
        MACHINE.iter().map(|a| a.to_string()).collect()
    })
    .expect("QEMU runs (checked before)")
}

/// Both sides of one entry: the qmpsh one to its end, its QEMU killed, then
/// the HMP one (a line binding a host port must not find it taken).
fn run_entry(entry: &Entry, elsewhere: &Path) -> (Side, Side) {
    let mut ours_qemu = start_qemu();
    let mut theirs_qemu = start_qemu();
    let ours = run_side(&mut ours_qemu, entry, Tool::Qmpsh, elsewhere);
    drop(ours_qemu);
    let theirs = run_side(&mut theirs_qemu, entry, Tool::Hmp, elsewhere);
    (ours, theirs)
}

fn run_side(qemu: &mut Qemu, entry: &Entry, tool: Tool, elsewhere: &Path) -> Side {
    let setup = entry.setup.iter().map(|p| read_probe(qemu, p)).collect();
    let outcome = match tool {
        Tool::Qmpsh => run_qmpsh(qemu, &entry.line, elsewhere),
        Tool::Hmp => run_hmp(qemu, &entry.line),
    };
    let probes = entry.probes.iter().map(|p| read_probe(qemu, p)).collect();
    let dir = qemu.dir.path().display().to_string();
    let mut side = Side { setup, outcome, probes };
    for text in side.setup.iter_mut().chain(side.probes.iter_mut()) {
        *text = text.replace(&dir, "$DIR");
    }
    side.outcome.printed = side.outcome.printed.replace(&dir, "$DIR");
    side.outcome.said = side.outcome.said.replace(&dir, "$DIR");
    side
}

/// `qmpsh SOCK -c LINE`, run from a folder other than QEMU's (as a user
/// runs it), killed past [`RUN_LIMIT`].
fn run_qmpsh(qemu: &Qemu, line: &str, elsewhere: &Path) -> Outcome {
    let mut command = qmpsh_command(&[&qemu.socket_arg(), "-c", line]);
    command.current_dir(elsewhere).stdin(Stdio::null());
    let mut child = command.spawn().expect("the qmpsh binary runs");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_with_deadline(&mut child, RUN_LIMIT);
    let (printed, said) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status.and_then(|s| s.code()) {
        Some(code) => Outcome { succeeded: code == 0, how: format!("exit {code}"), printed, said },
        None => Outcome {
            how: format!("killed after {} s (or by a signal)", RUN_LIMIT.as_secs()),
            printed,
            said,
            ..Outcome::default()
        },
    }
}

fn drain(mut stream: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The line through HMP, exactly as typed.
fn run_hmp(qemu: &Qemu, line: &str) -> Outcome {
    let message = json!({"execute": "human-monitor-command", "arguments": {"command-line": line}});
    match exchange(&qemu.socket, &message) {
        Reply::Return(Value::String(text)) => {
            Outcome { succeeded: !hmp_failed(&text), how: "HMP replied".into(), printed: text, ..Outcome::default() }
        }
        Reply::Return(other) => Outcome { how: format!("HMP returned {other}, not text"), ..Outcome::default() },
        Reply::Error(error) => Outcome { how: format!("QMP error {error}"), ..Outcome::default() },
        // `quit`: QEMU may close the connection before it replies.
        Reply::Closed => Outcome { succeeded: true, how: "QEMU closed the connection".into(), ..Outcome::default() },
        Reply::Failed(why) => Outcome { how: why, ..Outcome::default() },
    }
}

/// Whether an HMP reply is one of the forms HMP reports a failure in: an
/// `Error: ` line (`hmp_handle_error`), an argument error (always followed
/// by `Try "help CMD" for more information`), an unknown command, or the
/// words a command uses for its own failures (QEMU's `monitor_printf`s
/// before it returns early). A help listing or data is not a failure.
fn hmp_failed(text: &str) -> bool {
    const OWN_WORDS: &[&str] = &[
        "unknown command: '",
        "Invalid parameter ",
        "invalid parameter: ",
        "Parameter '",
        "Property '",
        "Device '",
        "Could not ",
        "could not ",
        "Can not ",
        "Cannot ",
        "unexpected option ",
        "Missing ",
        "Expected ",
    ];
    let first = text.lines().next().unwrap_or_default();
    let missing_cpu = first.starts_with("CPU#") && first.trim_end().ends_with(" not available");
    let no_prompt = first.starts_with("terminal does not support password prompting");
    let tried_help = |line: &str| line.starts_with("Try \"help ") && line.trim_end().ends_with(" for more information");
    text.lines().any(|line| line.starts_with("Error: ") || tried_help(line))
        || OWN_WORDS.iter().any(|form| first.starts_with(form))
        || missing_cpu
        || no_prompt
}

// --- probes -------------------------------------------------------------------

fn read_probe(qemu: &mut Qemu, probe: &Probe) -> String {
    if !probe.settle {
        return read_once(qemu, &probe.kind);
    }
    // Settled: the same result for 1.5 s (the corpus holds keys for up to
    // a second), read every quarter second.
    let deadline = Instant::now() + SETTLE_LIMIT;
    let mut last = read_once(qemu, &probe.kind);
    let mut same = 0;
    while same < 6 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(250));
        let now = read_once(qemu, &probe.kind);
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

fn read_once(qemu: &mut Qemu, kind: &ProbeKind) -> String {
    let dir = qemu.dir.path().to_path_buf();
    match kind {
        ProbeKind::Qmp(message, path) => match exchange(&qemu.socket, message) {
            Reply::Return(value) => json!({"return": generic_node_names(select(&value, path))}).to_string(),
            other => other.to_string(),
        },
        ProbeKind::Hmp(line) => {
            match exchange(
                &qemu.socket,
                &json!({"execute": "human-monitor-command", "arguments": {"command-line": line}}),
            ) {
                Reply::Return(Value::String(text)) => text.replace("\r\n", "\n"),
                other => other.to_string(),
            }
        }
        ProbeKind::Trace(event) => {
            let log = std::fs::read_to_string(dir.join("trace.log")).unwrap_or_default();
            let lines: Vec<String> = log
                .lines()
                .filter(|line| line.starts_with(event.as_str()))
                .map(|line| line.split_whitespace().map(pointer_free).collect::<Vec<_>>().join(" "))
                .collect();
            if lines.is_empty() { "(nothing traced)".into() } else { lines.join("\n") }
        }
        ProbeKind::File(name) => match std::fs::read(dir.join(name)) {
            Ok(bytes) => format!("{} bytes, FNV-1a {:016x}", bytes.len(), fnv1a(&bytes)),
            Err(e) => format!("no file ({})", e.kind()),
        },
        ProbeKind::VncPassword(password) => vnc_accepts(&dir.join("vnc.sock"), password),
        ProbeKind::Exited => {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(status) = qemu.child.try_wait().unwrap() {
                    return format!("exited ({status})");
                }
                if Instant::now() > deadline {
                    return "still running".into();
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The part of `value` at `path`: object keys, array indices, and
/// `KEY=VALUE` for the array item whose KEY is that string.
fn select(value: &Value, path: &[String]) -> Value {
    let mut value = value;
    for step in path {
        let next = match value {
            Value::Array(items) => match step.split_once('=') {
                Some((key, wanted)) => items.iter().find(|item| item[key] == wanted),
                None => step.parse::<usize>().ok().and_then(|i| items.get(i)),
            },
            Value::Object(members) => members.get(step),
            _ => None,
        };
        match next {
            Some(next) => value = next,
            None => return json!(format!("(no .{})", path.join("."))),
        }
    }
    value.clone()
}

/// QEMU names the block nodes it creates itself `#block` and a counter
/// whose value differs between any two QEMUs (`#block112`, `#block206`).
fn generic_node_names(value: Value) -> Value {
    match value {
        Value::String(s) if s.strip_prefix("#block").is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) => {
            Value::String("#blockN".into())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(generic_node_names).collect()),
        Value::Object(members) => Value::Object(members.into_iter().map(|(k, v)| (k, generic_node_names(v))).collect()),
        other => other,
    }
}

/// A traced pointer (`0x55d0c8a3e948`) differs between any two QEMUs.
fn pointer_free(word: &str) -> &str {
    let hex = word.strip_prefix("0x").unwrap_or_default();
    if hex.len() >= 8 && hex.chars().all(|c| c.is_ascii_hexdigit()) { "0xPOINTER" } else { word }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

// --- a minimal QMP client -------------------------------------------------------

/// What one QMP exchange came to.
enum Reply {
    Return(Value),
    Error(Value),
    /// QEMU closed the connection before replying.
    Closed,
    /// No connection, no reply in time, or not QMP.
    Failed(String),
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Return(value) => write!(f, "{}", json!({"return": value})),
            Reply::Error(error) => write!(f, "{}", json!({"error": error})),
            Reply::Closed => write!(f, "(QEMU closed the connection)"),
            Reply::Failed(why) => write!(f, "({why})"),
        }
    }
}

/// Connects, negotiates and runs `message`, every read bounded by
/// [`REPLY_LIMIT`]; events are passed over.
fn exchange(socket: &Path, message: &Value) -> Reply {
    let stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(e) => return Reply::Failed(format!("cannot connect: {}", e.kind())),
    };
    stream.set_read_timeout(Some(REPLY_LIMIT)).unwrap();
    stream.set_write_timeout(Some(REPLY_LIMIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => return Reply::Closed,
        Ok(_) => {}
        Err(e) => return Reply::Failed(format!("no greeting: {}", e.kind())),
    }
    let mut reply = Reply::Closed;
    for message in [&json!({"execute": "qmp_capabilities"}), message] {
        // One write: QEMU runs a command once its JSON closes.
        if writer.write_all(format!("{message}\n").as_bytes()).is_err() {
            return Reply::Closed;
        }
        reply = read_reply(&mut reader);
        if !matches!(reply, Reply::Return(_)) {
            return reply;
        }
    }
    reply
}

fn read_reply(reader: &mut impl BufRead) -> Reply {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Reply::Closed,
            Ok(_) => {}
            Err(e) => return Reply::Failed(format!("no reply: {}", e.kind())),
        }
        let Ok(mut message) = serde_json::from_str::<Value>(&line) else {
            return Reply::Failed(format!("not JSON: {line:?}"));
        };
        if let Some(value) = message.get_mut("return") {
            return Reply::Return(value.take());
        }
        if let Some(error) = message.get_mut("error") {
            return Reply::Error(error.take());
        }
    }
}

// --- VNC password authentication ---------------------------------------------

/// Whether the VNC server on `socket` accepts `password`: RFB 3.8's VNC
/// authentication, the only way to read back what `set_password` set.
fn vnc_accepts(socket: &Path, password: &str) -> String {
    match vnc_authenticate(socket, password) {
        Ok(true) => "accepted".into(),
        Ok(false) => "refused".into(),
        Err(e) => format!("(VNC: {e})"),
    }
}

fn vnc_authenticate(socket: &Path, password: &str) -> std::io::Result<bool> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(REPLY_LIMIT))?;
    stream.set_write_timeout(Some(REPLY_LIMIT))?;
    let mut version = [0; 12];
    stream.read_exact(&mut version)?;
    stream.write_all(b"RFB 003.008\n")?;
    let mut count = [0; 1];
    stream.read_exact(&mut count)?;
    let mut types = vec![0; usize::from(count[0])];
    stream.read_exact(&mut types)?;
    if !types.contains(&2) {
        return Err(std::io::Error::other(format!("no VNC authentication offered: {types:?}")));
    }
    stream.write_all(&[2])?;
    let mut challenge = [0; 16];
    stream.read_exact(&mut challenge)?;
    // VNC's DES key: the password's first 8 bytes, each bit-reversed.
    let mut key = [0; 8];
    for (k, b) in key.iter_mut().zip(password.bytes()) {
        *k = b.reverse_bits();
    }
    let mut response = Vec::new();
    for block in challenge.chunks(8) {
        response.extend(des::encrypt(key, block.try_into().unwrap()));
    }
    stream.write_all(&response)?;
    let mut result = [0; 4];
    stream.read_exact(&mut result)?;
    Ok(u32::from_be_bytes(result) == 0)
}

/// DES encryption of one block, as VNC authentication needs it (FIPS 46-3).
mod des {
    const IP: [u8; 64] = [
        58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, 62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40,
        32, 24, 16, 8, 57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3, 61, 53, 45, 37, 29, 21, 13, 5, 63,
        55, 47, 39, 31, 23, 15, 7,
    ];
    const FP: [u8; 64] = [
        40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31, 38, 6, 46, 14, 54, 22, 62, 30, 37, 5, 45, 13, 53,
        21, 61, 29, 36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27, 34, 2, 42, 10, 50, 18, 58, 26, 33, 1,
        41, 9, 49, 17, 57, 25,
    ];
    const E: [u8; 48] = [
        32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17, 16, 17, 18, 19, 20, 21, 20,
        21, 22, 23, 24, 25, 24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1,
    ];
    const P: [u8; 32] = [
        16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, 2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11,
        4, 25,
    ];
    const PC1: [u8; 56] = [
        57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36, 63,
        55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, 14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
    ];
    const PC2: [u8; 48] = [
        14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2, 41, 52, 31, 37, 47, 55,
        30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
    ];
    const SHIFTS: [u32; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];
    const S: [[u8; 64]; 8] = [
        [
            14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7, 0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
            4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0, 15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13,
        ],
        [
            15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10, 3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
            0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15, 13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9,
        ],
        [
            10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8, 13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
            13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7, 1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12,
        ],
        [
            7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15, 13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
            10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4, 3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14,
        ],
        [
            2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9, 14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
            4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14, 11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3,
        ],
        [
            12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11, 10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
            9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6, 4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13,
        ],
        [
            4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1, 13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
            1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2, 6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12,
        ],
        [
            13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7, 1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
            7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8, 2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11,
        ],
    ];

    /// Bit `table[i]` of the `width`-bit `input` (1 = the most significant)
    /// becomes bit i of the result.
    fn permute(input: u64, width: u32, table: &[u8]) -> u64 {
        table.iter().fold(0, |out, &from| (out << 1) | ((input >> (width - u32::from(from))) & 1))
    }

    fn feistel(half: u64, subkey: u64) -> u64 {
        let mixed = permute(half, 32, &E) ^ subkey;
        let substituted = S.iter().enumerate().fold(0, |out, (n, sbox)| {
            let six = (mixed >> (42 - 6 * n)) & 0x3f;
            let index = ((six & 0x20) | ((six & 1) << 4) | ((six >> 1) & 0xf)) as usize;
            (out << 4) | u64::from(sbox[index])
        });
        permute(substituted, 32, &P)
    }

    pub fn encrypt(key: [u8; 8], block: [u8; 8]) -> [u8; 8] {
        let key = permute(u64::from_be_bytes(key), 64, &PC1);
        let (mut c, mut d) = (key >> 28, key & 0x0fff_ffff);
        let bits = permute(u64::from_be_bytes(block), 64, &IP);
        let (mut left, mut right) = (bits >> 32, bits & 0xffff_ffff);
        for shift in SHIFTS {
            c = ((c << shift) | (c >> (28 - shift))) & 0x0fff_ffff;
            d = ((d << shift) | (d >> (28 - shift))) & 0x0fff_ffff;
            let subkey = permute((c << 28) | d, 56, &PC2);
            (left, right) = (right, left ^ feistel(right, subkey));
        }
        permute((right << 32) | left, 64, &FP).to_be_bytes()
    }
}

#[test]
fn des_encrypts_the_textbook_block() {
    let cipher = des::encrypt(0x1334_5779_9bbc_dff1_u64.to_be_bytes(), 0x0123_4567_89ab_cdef_u64.to_be_bytes());
    assert_eq!(u64::from_be_bytes(cipher), 0x85e8_1354_0f0a_b405);
}

// --- comparing ----------------------------------------------------------------

/// Text as compared: CRLF as LF, no trailing blanks on a line or blank
/// lines at the end.
fn plain(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n").trim_end().to_string()
}

/// Whether qmpsh printed this line for an event (`12:34:56.789 NAME
/// {...}`): HMP's reply never holds events, so they are left out of the
/// comparison (they still show in the report).
fn is_event(line: &str) -> bool {
    let (time, rest) = line.split_at_checked(12).unwrap_or_default();
    let digits = time
        .bytes()
        .enumerate()
        .all(|(k, b)| if [2, 5, 8].contains(&k) { b == b':' || b == b'.' } else { b.is_ascii_digit() });
    let name = rest.strip_prefix(' ').unwrap_or_default().split(' ').next().unwrap_or_default();
    digits && !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The printed output as `printed` compares it.
fn printed_as(printed: Printed, text: &str, tool: Tool) -> String {
    let kept: String;
    let text = if tool == Tool::Qmpsh {
        kept = text.lines().filter(|line| !is_event(line)).map(|line| format!("{line}\n")).collect();
        &kept
    } else {
        text
    };
    match printed {
        Printed::Ignored | Printed::Text => plain(text),
        Printed::Json => serde_json::from_str::<Value>(text.trim()).map_or_else(|_| plain(text), |v| v.to_string()),
        Printed::Names if tool == Tool::Qmpsh => match serde_json::from_str::<Value>(text.trim()) {
            Ok(Value::Array(items)) => items
                .iter()
                .map(|p| format!("{} ({})", p["name"].as_str().unwrap_or("?"), p["type"].as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => plain(text),
        },
        Printed::Names => plain(text),
    }
}

/// Why an entry differs, or `None` when qmpsh and HMP agree.
fn differences(entry: &Entry, ours: &Side, theirs: &Side) -> Vec<String> {
    let mut found = Vec::new();
    if ours.outcome.succeeded != theirs.outcome.succeeded {
        found.push("outcome".to_string());
    }
    let both_succeeded = ours.outcome.succeeded && theirs.outcome.succeeded;
    if entry.printed != Printed::Ignored
        && both_succeeded
        && printed_as(entry.printed, &ours.outcome.printed, Tool::Qmpsh)
            != printed_as(entry.printed, &theirs.outcome.printed, Tool::Hmp)
    {
        found.push("printed output".to_string());
    }
    for (k, probe) in entry.setup.iter().enumerate() {
        if ours.setup[k] != theirs.setup[k] {
            found.push(format!("setup `{}`", probe.text));
        }
    }
    for (k, probe) in entry.probes.iter().enumerate() {
        if ours.probes[k] != theirs.probes[k] {
            found.push(format!("probe `{}`", probe.text));
        }
    }
    found
}

/// At most `limit` characters of `text`, on one line.
fn clip(text: &str, limit: usize) -> String {
    let flat = text.trim_end().replace('\r', "").replace('\n', "\u{23ce}");
    match flat.char_indices().nth(limit) {
        Some((at, _)) => format!("{}... ({} more characters)", &flat[..at], flat[at..].chars().count()),
        None => flat,
    }
}

fn describe_outcome(tool: Tool, outcome: &Outcome) -> String {
    let verdict = if outcome.succeeded { "succeeded" } else { "failed" };
    match tool {
        Tool::Qmpsh => {
            let mut text = format!("qmpsh {verdict} ({})", outcome.how);
            if !outcome.printed.trim().is_empty() {
                let _ = write!(text, "; stdout: {}", clip(&outcome.printed, 300));
            }
            if !outcome.said.trim().is_empty() {
                let _ = write!(text, "; stderr: {}", clip(&outcome.said, 300));
            }
            text
        }
        Tool::Hmp => format!("HMP   {verdict} ({}): {:?}", outcome.how, clip(&outcome.printed, 300)),
    }
}

/// An entry's report: the line, both outcomes, and each setup and probe
/// with both results (`!=` marks those that differ).
fn describe(entry: &Entry, ours: &Side, theirs: &Side, found: &[String]) -> String {
    let mut text = format!("corpus.txt:{}: {}", entry.row, entry.line);
    if !found.is_empty() {
        let _ = write!(text, "\n  differs in: {}", found.join(", "));
    }
    let _ = write!(
        text,
        "\n  {}\n  {}",
        describe_outcome(Tool::Qmpsh, &ours.outcome),
        describe_outcome(Tool::Hmp, &theirs.outcome)
    );
    if entry.printed != Printed::Ignored {
        let (a, b) = (
            printed_as(entry.printed, &ours.outcome.printed, Tool::Qmpsh),
            printed_as(entry.printed, &theirs.outcome.printed, Tool::Hmp),
        );
        if a != b {
            let row =
                a.lines().zip(b.lines()).position(|(x, y)| x != y).unwrap_or(a.lines().count().min(b.lines().count()));
            let _ = write!(
                text,
                "\n  printed output differs from row {}: qmpsh {:?}, HMP {:?}",
                row + 1,
                a.lines().nth(row).unwrap_or("(end)"),
                b.lines().nth(row).unwrap_or("(end)")
            );
        }
    }
    let steps = entry.setup.iter().zip(ours.setup.iter().zip(&theirs.setup)).map(|(p, r)| ("<", p, r));
    let probes = entry.probes.iter().zip(ours.probes.iter().zip(&theirs.probes)).map(|(p, r)| ("?", p, r));
    for (mark, probe, (a, b)) in steps.chain(probes) {
        let same = if a == b { "==" } else { "!=" };
        let _ = write!(
            text,
            "\n  {mark} {}  [{same}]\n      qmpsh side: {}\n      HMP side:   {}",
            probe.text,
            clip(a, 400),
            clip(b, 400)
        );
    }
    text
}

// --- the test -----------------------------------------------------------------

#[test]
fn every_human_line_does_what_hmp_does_on_the_same_qemu() {
    let entries = corpus();
    if !common::qemu_available() {
        return;
    }
    let (version, mut problems) = check_coverage(&entries);
    problems.extend(check_table(&entries));

    let started = Instant::now();
    let elsewhere = tempfile::tempdir().unwrap();
    let results: Mutex<Vec<Option<(Side, Side)>>> = Mutex::new((0..entries.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(entry) = entries.get(k) else { break };
                    let sides = run_entry(entry, elsewhere.path());
                    results.lock().unwrap()[k] = Some(sides);
                }
            });
        }
    });
    let results = results.into_inner().unwrap();

    let mut log = String::new();
    let mut differing = 0;
    for (entry, sides) in entries.iter().zip(&results) {
        let (ours, theirs) = sides.as_ref().expect("every entry ran");
        let found = differences(entry, ours, theirs);
        let _ = write!(log, "{}\n\n", describe(entry, ours, theirs, &found));
        let listed = DIFFERENCES.iter().find(|(line, only, _, _)| {
            *line == entry.line && only.is_none_or(|release| version.starts_with(&format!("{release}.")))
        });
        match (found.is_empty(), listed) {
            (true, None) => {}
            (true, Some(_)) => problems.push(format!(
                "corpus.txt:{}: {}\n  DIFFERENCES lists it, but qmpsh now does what HMP does: drop it from the table",
                entry.row, entry.line
            )),
            // What qmpsh does with a listed line is pinned too: refused
            // before sending is exit 2, anything else went to QEMU.
            (false, Some((_, _, sends, _))) if (ours.outcome.how != "exit 2") != *sends => problems.push(format!(
                "corpus.txt:{}: {}\n  DIFFERENCES says qmpsh {} it, but qmpsh ended with {}",
                entry.row,
                entry.line,
                if *sends { "sends" } else { "refuses" },
                ours.outcome.how
            )),
            (false, Some(_)) => {}
            (false, None) => {
                differing += 1;
                problems.push(describe(entry, ours, theirs, &found));
            }
        }
    }
    if let Some(path) = std::env::var_os("HMP_DIFFERENTIAL_LOG") {
        std::fs::write(&path, &log).unwrap();
    }
    eprintln!("{} entries against HMP of QEMU {version} in {:.1} s", entries.len(), started.elapsed().as_secs_f64());
    assert!(
        problems.is_empty(),
        "{} problem(s); {differing} of {} corpus entries do something else in qmpsh than in HMP of QEMU {version}:\n\n{}\n",
        problems.len(),
        entries.len(),
        problems.join("\n\n")
    );
}

/// Every command of the table (name or alias) that this QEMU's HMP also has
/// must start some corpus line: returns the QEMU's version and what is
/// missing.
fn check_coverage(entries: &[Entry]) -> (String, Vec<String>) {
    let qemu = Qemu::start(&[]).expect("QEMU runs (checked before)");
    let hmp = |line: &str| match exchange(
        &qemu.socket,
        &json!({"execute": "human-monitor-command", "arguments": {"command-line": line}}),
    ) {
        Reply::Return(Value::String(text)) => text,
        other => panic!("HMP `{line}` on a plain QEMU: {other}"),
    };
    let version = match exchange(&qemu.socket, &json!({"execute": "query-version"})) {
        Reply::Return(v) => format!("{}.{}.{}", v["qemu"]["major"], v["qemu"]["minor"], v["qemu"]["micro"]),
        other => panic!("query-version: {other}"),
    };
    let names: BTreeSet<String> = hmp("help")
        .lines()
        .filter(|row| !row.starts_with(char::is_whitespace))
        .filter_map(|row| row.split_whitespace().next())
        .flat_map(|names| names.split('|').map(str::to_string).collect::<Vec<_>>())
        .collect();
    let topics: BTreeSet<String> = hmp("help info")
        .lines()
        .filter_map(|row| row.strip_prefix("info ")?.split_whitespace().next().map(str::to_string))
        .collect();

    let table: Value = serde_json::from_str(TABLE).unwrap();
    let mut problems = Vec::new();
    for command in table.as_array().unwrap() {
        let aliases = command["aliases"].as_array().into_iter().flatten().filter_map(Value::as_str);
        for name in std::iter::once(command["name"].as_str().unwrap()).chain(aliases) {
            let words: Vec<&str> = name.split(' ').collect();
            let in_hmp = match words.as_slice() {
                ["info", topic] => topics.contains(*topic),
                [word] => names.contains(*word),
                _ => false,
            };
            let covered = entries.iter().any(|e| {
                let line: Vec<&str> = e.line.split_whitespace().collect();
                let first = line.first().map(|w| w.split('/').next().unwrap_or_default());
                first == Some(words[0]) && words.get(1).is_none_or(|w| line.get(1) == Some(w))
            });
            if in_hmp && !covered {
                problems.push(format!("the corpus has no line for `{name}`, a table command HMP has too"));
            }
        }
    }
    (version, problems)
}

/// Every listed difference must name a corpus line and give a reason.
fn check_table(entries: &[Entry]) -> Vec<String> {
    DIFFERENCES
        .iter()
        .filter_map(|(line, _, _, reason)| {
            if !entries.iter().any(|e| e.line == *line) {
                Some(format!("DIFFERENCES lists `{line}`, which is not in the corpus"))
            } else if reason.trim().is_empty() {
                Some(format!("DIFFERENCES lists `{line}` without a reason"))
            } else {
                None
            }
        })
        .collect()
}
