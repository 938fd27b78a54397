//! Shared test helpers: run the qmpsh binary with a deadline, start a real
//! QEMU with a QMP socket, and a scripted fake QMP server for what QEMU will
//! not do on demand.
#![allow(dead_code)] // each test binary uses its own share of these

pub mod guest;
pub mod tmux;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What a finished qmpsh run left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Every stdout line, each parsed as JSON (panics on one that is not).
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
            .collect()
    }
}

/// Several targets' output (see tests/fleet.rs): each stdout line split at
/// its prefix, by target.
pub fn by_target(run: &Run) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut lines: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for line in run.stdout.lines() {
        let (name, rest) = line.split_once(" | ").unwrap_or_else(|| panic!("a line without its target: {line:?}"));
        lines.entry(name.trim_end().to_string()).or_default().push(rest.to_string());
    }
    lines
}

/// The summary's rows on stderr: target, exit code, outcome.
pub fn summary(run: &Run) -> std::collections::BTreeMap<String, (i32, String)> {
    let rows = run.stderr.lines().skip_while(|l| !l.starts_with("TARGET")).skip(1);
    rows.map(|row| {
        let mut words = row.split_whitespace();
        let name = words.next().unwrap().to_string();
        let code = words.next().unwrap().parse().unwrap();
        (name, (code, words.collect::<Vec<_>>().join(" ")))
    })
    .collect()
}

/// Runs qmpsh with `args` and `stdin`, killing it if it runs past 60 s so a
/// hang fails the test instead of stalling the suite.
pub fn qmpsh(args: &[&str], stdin: &str) -> Run {
    qmpsh_in(None, args, stdin)
}

/// [`qmpsh`], in the directory `dir`.
pub fn qmpsh_in(dir: Option<&Path>, args: &[&str], stdin: &str) -> Run {
    let mut command = qmpsh_command(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    finish(command, stdin)
}

/// The qmpsh binary with `args`, its streams piped, ready to adjust.
pub fn qmpsh_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qmpsh"));
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.env_remove("NO_COLOR");
    command
}

/// Runs a prepared command to its end (60 s at most) with `stdin`.
pub fn finish(mut command: Command, stdin: &str) -> Run {
    let mut child = command.spawn().expect("the qmpsh binary runs");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_string();
    let writer = thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_with_deadline(&mut child, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("{command:?} did not finish within 60 s"));
    writer.join().unwrap();
    Run { code: status.code().unwrap_or(-1), stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

fn drain(mut stream: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` up to `limit`; kills it and returns `None` past that.
pub fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A child's output, line by line as it is printed, each awaited with a
/// limit: a program that says nothing more fails the test instead of
/// hanging it.
pub struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    pub fn of(stream: impl Read + Send + 'static) -> Lines {
        let (sender, lines) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Lines(lines)
    }

    /// The lines up to the first that `wanted` accepts, within `limit`.
    pub fn until(&self, what: &str, limit: Duration, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            match self.0.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let found = wanted(&line);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(e) => panic!("no {what} ({e}); the lines before: {seen:?}"),
            }
        }
    }
}

/// A process the test started, killed and reaped when dropped, so a test
/// that fails half way leaves it running no longer than the test.
pub struct Guarded(pub Child);

impl std::ops::Deref for Guarded {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guarded {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// --- real QEMU ------------------------------------------------------------

/// A `qemu-system-x86_64 -machine none` with QMP on a unix socket in a
/// private temp dir; killed when dropped.
pub struct Qemu {
    pub child: Child,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
}

const QEMU: &str = "qemu-system-x86_64";

// --- what a test needs ----------------------------------------------------

/// Whether this is CI (`CI` set, not empty, not "false"): CI installs
/// everything the tests need, so there a missing tool is a broken CI.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// Something a test needs (`need`: a tool, a service, root) is not here;
/// `how` says how to get it. The test fails saying both, unless
/// `QMPSH_ALLOW_SKIP=1` asks to skip what cannot run here (never in CI).
/// A skip is written to the terminal itself, past libtest's capture (which
/// takes only `print!` and `eprint!`), so it shows among the results instead
/// of passing for `ok` unseen. Returns only when the test is to skip.
#[allow(clippy::disallowed_methods)] // The terminal itself, as said above.
pub fn missing(need: &str, how: &str) {
    let test = thread::current().name().unwrap_or("a test").to_string();
    if in_ci() {
        panic!("{need} is missing, and CI must run {test}: {how}");
    }
    if std::env::var("QMPSH_ALLOW_SKIP").as_deref() != Ok("1") {
        panic!("{need} is missing: {how}\n(QMPSH_ALLOW_SKIP=1 skips the tests that need it, out loud; CI never skips)");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {need} is missing ({how})");
}

/// Whether QEMU can be run here; when not, [`missing`] decides. With
/// `QMPSH_QEMU_VERSION` set (CI sets it for each QEMU it tests, such as
/// `7.2`), the QEMU found must be that release: a PATH that picks another
/// fails the test rather than testing the wrong QEMU.
pub fn qemu_available() -> bool {
    static VERSION: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let version = VERSION.get_or_init(|| {
        let output = Command::new(QEMU).arg("--version").output().ok().filter(|o| o.status.success())?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        Some(text.split_whitespace().nth(3).unwrap_or_default().to_string())
    });
    let Some(version) = version else {
        missing(QEMU, "apt-get install -y qemu-system-x86");
        return false;
    };
    if let Ok(wanted) = std::env::var("QMPSH_QEMU_VERSION") {
        let same = version == &wanted || version.starts_with(&format!("{wanted}."));
        assert!(same, "QMPSH_QEMU_VERSION={wanted}, but {QEMU} on PATH is QEMU {version}");
    }
    true
}

/// Whether qemu-img (for qcow2 disks) can be run here; when not,
/// [`missing`] decides.
pub fn qemu_img_available() -> bool {
    let found = Command::new("qemu-img").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        missing("qemu-img", "apt-get install -y qemu-utils");
    }
    found
}

/// Whether the tests run as root, who alone can give a file to another
/// user; when not, [`missing`] decides (CI runs as root).
pub fn root_available() -> bool {
    let root = rustix::process::getuid().is_root();
    if !root {
        missing("root", "run the tests as root, as CI does: only root can make a file of another user");
    }
    root
}

impl Qemu {
    /// Starts QEMU with its QMP monitor on `qmp.sock`, plus `extra` args.
    pub fn start(extra: &[&str]) -> Option<Qemu> {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Qemu::start_with(|_| extra)
    }

    /// Like [`Qemu::start`], plus a second QMP monitor at `second.sock`
    /// (QEMU sends events to every monitor).
    pub fn with_second_monitor(extra: &[&str]) -> Option<(Qemu, PathBuf)> {
        let mut qemu = Qemu::start_with(|dir| {
            let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            args.push("-qmp".into());
            args.push(format!("unix:{},server=on,wait=off", dir.join("second.sock").display()));
            args
        })?;
        let second = qemu.dir.path().join("second.sock");
        qemu.await_path(&second);
        Some((qemu, second))
    }

    /// Starts QEMU with extra args computed from its private folder.
    pub fn start_with(extra: impl FnOnce(&Path) -> Vec<String>) -> Option<Qemu> {
        Qemu::start_args(|dir| ["-machine".to_string(), "none".to_string()].into_iter().chain(extra(dir)).collect())
    }

    /// Waits until QEMU listens on the socket `path`, failing if it exits.
    /// The file alone is not enough: QEMU binds it before it listens, and
    /// a client connecting in between is refused.
    pub fn await_path(&mut self, path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !listening(path) {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("QEMU exited early ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "QEMU did not create {}", path.display());
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn socket_arg(&self) -> String {
        self.socket.display().to_string()
    }

    /// Whether QEMU exits within `limit`.
    pub fn exits_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

/// Whether a unix socket bound at `path` listens: `/proc/net/unix` shows
/// it with the accepting flag (`__SO_ACCEPTCON`, 0x10000).
fn listening(path: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let accepting = fields.get(3).and_then(|f| u32::from_str_radix(f, 16).ok()).is_some_and(|f| f & 0x10000 != 0);
        accepting && fields.get(7).is_some_and(|bound| Path::new(bound) == path)
    })
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The live QEMUs (zombies aside) whose command line names `folder`: those
/// started there by `vm start` or `launch`, whoever their parent is now.
pub fn qemus_in(folder: &Path) -> Vec<i32> {
    let needle = folder.as_os_str().as_encoded_bytes();
    live_processes(|cmdline| cmdline.starts_with(b"qemu-system") && mentions(cmdline, needle))
}

/// The live processes but this one (zombies aside) whose command line
/// (`/proc/PID/cmdline`) `matches`.
fn live_processes(matches: impl Fn(&[u8]) -> bool) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
            (matches(&cmdline) && !zombie && pid != std::process::id() as i32).then_some(pid)
        })
        .collect()
}

fn mentions(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A fresh state folder for `QMPSH_STATE_DIR`: private, as qmpsh wants
/// one (it refuses a folder others can reach rather than tighten it, and a
/// temporary folder is 0755 under the usual umask).
pub fn state_folder() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let state = tempfile::tempdir().unwrap();
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    state
}

/// What a state folder holds besides the marker qmpsh writes in it when it
/// makes it or takes it over: the names of VM folders and logs.
pub fn state_entries(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".qmpsh-state")
        .collect();
    names.sort();
    names
}

/// The live processes (zombies aside) whose command line mentions `text`:
/// whatever ran, not only QEMU.
pub fn processes_naming(text: &str) -> Vec<i32> {
    live_processes(|cmdline| mentions(cmdline, text.as_bytes()))
}

/// Waits up to `limit` for `done`, checking every 10 ms; false if it never
/// held.
pub fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Kills the QEMUs of a state folder when the test ends, however it ends.
pub struct Killer<'a>(pub &'a Path);

impl Drop for Killer<'_> {
    fn drop(&mut self) {
        kill_qemus_in(self.0);
    }
}

/// Kills every QEMU [`qemus_in`] `folder` finds: what a VM folder's guard
/// does when dropped, so a failing test leaves no VM running. The pid
/// comes from the process's own command line, never from a pid file that
/// may have outlived its QEMU and name another process now.
pub fn kill_qemus_in(folder: &Path) {
    for pid in qemus_in(folder) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// A minimal QMP client of its own, for checking QEMU's state independently
/// of qmpsh: greets, negotiates, and runs one command.
pub fn query(socket: &Path, command: &str) -> Value {
    query_with(socket, serde_json::json!({ "execute": command }))
}

/// [`query`] with a whole QMP message, arguments and all. The reply is
/// `null` when QEMU closes the connection instead (after `quit`).
pub fn query_with(socket: &Path, message: Value) -> Value {
    let stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line).unwrap(); // greeting
    for (n, message) in [serde_json::json!({"execute": "qmp_capabilities"}), message].into_iter().enumerate() {
        // One write: QEMU runs a command as soon as its JSON closes, and a
        // newline written apart after `quit` would meet a closed socket.
        writer.write_all(format!("{message}\n").as_bytes()).unwrap();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                return Value::Null;
            }
            let reply: Value = serde_json::from_str(&line).unwrap();
            if reply.get("return").is_some() || reply.get("error").is_some() {
                if n == 1 {
                    return reply;
                }
                break;
            }
        }
    }
    panic!("the loop above returns once the second reply comes")
}

// --- the fake server ----------------------------------------------------

/// One step of a fake server's script.
pub enum Step {
    /// Write these bytes; `{id}` becomes the id of the last command read,
    /// and `, "id": {id}` goes when that command had none, as with QEMU.
    Send(String),
    /// Read one message and check it executes this command, with no
    /// arguments and no id (qmpsh matches QEMU's replies by order).
    Expect(&'static str),
    /// Read one message and check it is this one, member for member.
    ExpectMessage(Value),
    /// Write these bytes, which the client may hang up before reading
    /// whole (a message it refuses part way).
    SendCut(String),
    /// Expect the client to hang up without sending anything more.
    ExpectHangUp,
    /// Wait before the next step.
    Pause(Duration),
    /// Write these bytes over and over until the client hangs up.
    Flood(String),
}

pub fn send(text: &str) -> Step {
    Step::Send(text.to_string())
}

pub fn expect(command: &'static str) -> Step {
    Step::Expect(command)
}

/// A command with these arguments (and no id).
pub fn expect_with(command: &str, arguments: Value) -> Step {
    Step::ExpectMessage(serde_json::json!({ "execute": command, "arguments": arguments }))
}

pub const GREETING: &str =
    r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#;

/// The greeting and a successful negotiation.
pub fn handshake() -> Vec<Step> {
    vec![send(GREETING), expect("qmp_capabilities"), send(r#"{"return": {}, "id": {id}}"#)]
}

/// A QMP server that plays a script to the first client and reports what
/// went differently.
pub struct FakeServer {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    done: Option<JoinHandle<Result<(), String>>>,
}

impl FakeServer {
    pub fn start(steps: Vec<Step>) -> FakeServer {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let done = thread::spawn(move || {
            let stream = accept_within(&listener, Duration::from_secs(30))?;
            stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            stream.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
            play(stream, steps)
        });
        FakeServer { dir, socket, done: Some(done) }
    }

    pub fn socket_arg(&self) -> String {
        self.socket.display().to_string()
    }

    /// Asserts the client went through the whole script.
    pub fn finish(mut self) {
        self.check();
    }

    fn check(&mut self) {
        if let Some(done) = self.done.take() {
            let outcome = done.join().expect("the fake server thread did not panic");
            if let Err(e) = outcome {
                panic!("fake server: {e}");
            }
        }
    }
}

/// A test that never called [`FakeServer::finish`] still fails when a
/// step went unused or went differently (unless it is failing already).
impl Drop for FakeServer {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.check();
        }
    }
}

/// The first client within `limit`: a qmpsh that exits before it connects
/// fails the test instead of leaving [`FakeServer::finish`] waiting forever.
fn accept_within(listener: &UnixListener, limit: Duration) -> Result<UnixStream, String> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = Timespec::try_from(limit).map_err(|e| e.to_string())?;
    let ready = poll(&mut [PollFd::new(listener, PollFlags::IN)], Some(&timeout)).map_err(|e| e.to_string())?;
    if ready == 0 {
        return Err(format!("no client connected within {} s", limit.as_secs()));
    }
    listener.accept().map(|(stream, _)| stream).map_err(|e| format!("accept failed: {e}"))
}

fn play(stream: UnixStream, steps: Vec<Step>) -> Result<(), String> {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut id: Option<Value> = None;
    for (n, step) in steps.into_iter().enumerate() {
        match step {
            Step::Send(text) => {
                let text = fill_id(&text, id.as_ref());
                if let Err(e) = writer.write_all(text.as_bytes()) {
                    return Err(format!("step {n}: write failed: {e}"));
                }
            }
            Step::Expect(command) => {
                let mut line = String::new();
                reader.read_line(&mut line).map_err(|e| format!("step {n}: read failed: {e}"))?;
                let message: Value = serde_json::from_str(&line)
                    .map_err(|e| format!("step {n}: expected {command}, got {line:?}: {e}"))?;
                if message != serde_json::json!({ "execute": command }) {
                    return Err(format!("step {n}: expected {{\"execute\":\"{command}\"}}, got {message}"));
                }
                id = None;
            }
            Step::ExpectMessage(want) => {
                let mut line = String::new();
                reader.read_line(&mut line).map_err(|e| format!("step {n}: read failed: {e}"))?;
                let message: Value =
                    serde_json::from_str(&line).map_err(|e| format!("step {n}: expected {want}, got {line:?}: {e}"))?;
                if message != want {
                    return Err(format!("step {n}: expected {want}, got {message}"));
                }
                id = message.get("id").cloned();
            }
            Step::SendCut(text) => {
                let _ = writer.write_all(text.as_bytes());
            }
            Step::ExpectHangUp => {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) => {}
                    Ok(_) => {
                        return Err(format!("step {n}: expected the client to hang up, got {line:?}"));
                    }
                    Err(e) => return Err(format!("step {n}: expected a hang-up, got {e}")),
                }
            }
            Step::Pause(d) => pause_unless_hung_up(&writer, d),
            Step::Flood(text) => while writer.write_all(text.as_bytes()).is_ok() {},
        }
    }
    Ok(())
}

/// Waits `limit`, or less once the client has hung up: a silent peer need
/// not outlast the client that gave up on it (a test that drops its server
/// waits for the script's end).
fn pause_unless_hung_up(stream: &UnixStream, limit: Duration) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(timeout) = Timespec::try_from(left) else { return thread::sleep(left) };
        let mut fds = [PollFd::new(stream, PollFlags::RDHUP)];
        match poll(&mut fds, Some(&timeout)) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return thread::sleep(left),
            // The time is up, or the client hung up.
            Ok(_) => return,
        }
    }
}

/// `text` answering a command with `id`: QEMU echoes an id only when the
/// command carried one, so without one the member `"id": {id}` is cut with
/// the comma before it.
fn fill_id(text: &str, id: Option<&Value>) -> String {
    if let Some(id) = id {
        return text.replace("{id}", &id.to_string());
    }
    let mut text = text.to_string();
    while let Some(at) = text.find("{id}") {
        let member = text[..at].rfind("\"id\"").expect("{id} follows \"id\":");
        let comma = text[..member].rfind(',').expect("the id member follows another");
        text.replace_range(comma..at + "{id}".len(), "");
    }
    text
}

/// An event line with a timestamp, as QEMU sends it.
pub fn event(name: &str, data: Option<&str>) -> String {
    let data = data.map(|d| format!(", \"data\": {d}")).unwrap_or_default();
    format!("{{\"timestamp\": {{\"seconds\": 1795608000, \"microseconds\": 0}}, \"event\": \"{name}\"{data}}}\r\n")
}

// --- a real machine -------------------------------------------------------

impl Qemu {
    /// Starts QEMU with QMP on `qmp.sock` and `args`, computed from its
    /// private folder, in place of [`Qemu::start_with`]'s `-machine none`:
    /// they choose the machine and its devices. QEMU runs in that folder,
    /// so relative file names (in `args` and in later commands) land there.
    pub fn start_args(args: impl FnOnce(&Path) -> Vec<String>) -> Option<Qemu> {
        if !qemu_available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let args = args(dir.path());
        let socket = dir.path().join("qmp.sock");
        let qmp = format!("unix:{},server=on,wait=off", socket.display());
        let child = Command::new(QEMU)
            .args(["-nodefaults", "-display", "none", "-qmp", &qmp])
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("QEMU starts");
        let mut qemu = Qemu { child, socket, dir };
        qemu.await_path(&qemu.socket.clone());
        Some(qemu)
    }
}
