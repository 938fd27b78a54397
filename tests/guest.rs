//! The reason qmpsh exists: a clean shutdown of a real guest. A tiny Linux
//! (Debian's kernel, a busybox initramfs, built at test time and cached)
//! boots under TCG; `vm stop` presses its power button and it powers off,
//! while a guest that ignores the button is ended right after the timeout.
//! A third guest ignores the button but runs Debian's real qemu-ga.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// They report what they measured on the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::guest::{self, AGENT_PORT, APPEND, HOSTNAME, READY};
use common::{Qemu, Run, finish, qemu_available, qmpsh_command};
use serde_json::{Value, json};

/// A private state folder for one test.
struct Vms {
    state: tempfile::TempDir,
}

/// Every VM a test started dies with the test, whatever it asserted: each
/// QEMU whose command line names the state folder, with or without its
/// qemu.pid (a stop that failed half way may have removed it).
impl Drop for Vms {
    fn drop(&mut self) {
        common::kill_qemus_in(self.state.path());
    }
}

impl Vms {
    fn qmpsh(&self, args: &[&str]) -> Run {
        let mut command = qmpsh_command(args);
        command.env("QMPSH_STATE_DIR", self.state.path());
        finish(command, "")
    }

    /// Starts the guest with `initrd` as VM `name`, without waiting.
    fn start(&self, name: &str, initrd: &std::path::Path) {
        self.start_with(name, initrd, &[]);
    }

    /// Starts the guest with `initrd` and `more` start options, without waiting.
    fn start_with(&self, name: &str, initrd: &std::path::Path, more: &[&str]) {
        let args = guest::vm_start_args(name, initrd, more);
        let started = self.qmpsh(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(started.code, 0, "{started:?}");
    }

    /// Boots the guest with `initrd` as VM `name` and waits for READY.
    fn boot(&self, name: &str, initrd: &std::path::Path) -> bool {
        if guest::guest().is_none() {
            return false;
        }
        self.start(name, initrd);
        // A press before the guest has opened its power button is lost.
        let serial = self.state.path().join(name).join("serial.log");
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.booted(name) {
            assert!(Instant::now() < deadline, "no {READY} on the serial console: {:?}", fs::read_to_string(&serial));
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Whether the guest has said READY on its serial console.
    fn booted(&self, name: &str) -> bool {
        fs::read_to_string(self.state.path().join(name).join("serial.log")).unwrap_or_default().contains(READY)
    }

    fn qemu_runs(&self, name: &str) -> bool {
        let status = self.qmpsh(&["vm", "status", name, "--json"]);
        let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        // A VM that ended has no pid, whatever its state says of how.
        !status["pid"].is_null()
    }
}

fn vms() -> Option<Vms> {
    qemu_available().then(|| Vms { state: common::state_folder() })
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
    // The guest did it: the power button (no agent answers), then its own
    // shutdown, each step said.
    let lines: Vec<&str> = stopped.stdout.lines().collect();
    assert_eq!(lines[0], "ACPI power button", "{}", stopped.stdout);
    assert!(lines[1].ends_with(" POWERDOWN"), "{}", stopped.stdout);
    assert!(lines[2].ends_with(r#" SHUTDOWN {"guest":true,"reason":"guest-shutdown"}"#), "{}", stopped.stdout);
    assert_eq!(lines.last(), Some(&"listener: stopped (ACPI)"));
    assert!(!vms.qemu_runs("listener"));
}

#[test]
fn a_stop_asked_while_the_guest_boots_still_ends_clean() {
    // The first press comes before the guest listens and is lost; the
    // presses that follow every 2 s are not.
    let Some(vms) = vms() else { return };
    let Some(guest) = guest::guest() else { return };
    vms.start("early", &guest.listening);
    assert!(!vms.booted("early"), "up before the stop was asked: this would test nothing");
    let stopped = vms.qmpsh(&["vm", "stop", "early", "--timeout", "60"]);
    assert_eq!(stopped.code, 0, "{stopped:?}");
    assert!(stopped.stdout.contains("pressed again every 2 s"), "{}", stopped.stdout);
    assert!(stopped.stdout.ends_with("early: stopped (ACPI)\n"), "{}", stopped.stdout);
    assert!(!vms.qemu_runs("early"));
}

#[test]
fn a_guest_deaf_to_the_button_stopped_while_it_boots_stops_through_its_agent_once_up() {
    // The agent is not up at first: the button is pressed (in vain) and
    // the agent asked again between presses until it answers.
    let Some(vms) = vms() else { return };
    let Some(guest) = guest::guest() else { return };
    vms.start("late", &guest.agent);
    assert!(!vms.booted("late"), "up before the stop was asked: this would test nothing");
    let stopped = vms.qmpsh(&["vm", "stop", "late", "--timeout", "60"]);
    assert_eq!(stopped.code, 0, "{stopped:?}");
    assert!(stopped.stdout.contains("the guest agent answers: guest-shutdown"), "{}", stopped.stdout);
    assert!(stopped.stdout.ends_with("late: stopped (guest agent)\n"), "{}", stopped.stdout);
    assert!(!vms.qemu_runs("late"));
}

#[test]
fn a_guest_deaf_to_the_button_stops_through_its_agent() {
    let Some(vms) = vms() else { return };
    let Some(guest) = guest::guest() else { return };
    if !vms.boot("agent", &guest.agent) {
        return;
    }
    // What the agent knows shows in vm status.
    let status = vms.qmpsh(&["vm", "status", "agent", "--json"]);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["agent"]["hostname"], HOSTNAME, "{status}");
    assert!(status["agent"]["addresses"].as_array().unwrap().contains(&json!("127.0.0.1")), "{status}");
    let text = vms.qmpsh(&["vm", "status", "agent"]);
    assert!(text.stdout.contains("ip      127.0.0.1"), "{}", text.stdout);

    // The agent's path, not the button's: said in what it prints.
    let stopped = vms.qmpsh(&["vm", "stop", "agent", "--timeout", "60"]);
    assert_eq!(stopped.code, 0, "{stopped:?}");
    assert!(stopped.stdout.starts_with("the guest agent answers: guest-shutdown\n"), "{}", stopped.stdout);
    assert!(stopped.stdout.ends_with("agent: stopped (guest agent)\n"), "{}", stopped.stdout);
    assert!(!vms.qemu_runs("agent"));
}

#[test]
fn the_agent_shell_runs_guest_commands_and_shutdown_returns_at_once() {
    let Some(vms) = vms() else { return };
    let Some(guest) = guest::guest() else { return };
    if !vms.boot("ga", &guest.agent) {
        return;
    }
    // A client that left half a command on the channel: the next one still
    // gets through (qmpsh resets the agent's parser with 0xFF first).
    let mut half = fs::OpenOptions::new().write(true).open(vms.state.path().join("ga").join("ga.in")).unwrap();
    half.write_all(br#"{"execute": "guest-ping", "arguments": {"#).unwrap();
    drop(half);
    let run = vms.qmpsh(&["--agent", "ga", "-c", "guest-ping", "-c", "guest-get-host-name", "-c", "guest-shutdown"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, format!("ok\n{{\"host-name\":\"{HOSTNAME}\"}}\nok\n"));
    // Powers off in well under a second here; the deadline only keeps a
    // lost command from hanging the test on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    while vms.qemu_runs("ga") {
        assert!(
            Instant::now() < deadline,
            "the guest did not power off after guest-shutdown: {:?}",
            fs::read_to_string(vms.state.path().join("ga").join("serial.log"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // No agent: one clear line, exit 3.
    vms.start("silent", &guest.ignoring);
    let none = vms.qmpsh(&["--agent", "silent", "--timeout", "1", "-c", "guest-ping"]);
    assert_eq!(none.code, 3, "{none:?}");
    assert!(none.stderr.contains("is qemu-ga running in the guest?"), "{}", none.stderr);
    assert_eq!(none.stderr.lines().count(), 1, "{}", none.stderr);
}

#[test]
fn stop_and_status_work_while_a_shell_holds_the_vm() {
    // QEMU serves one client per socket: vm stop and status use their own.
    let Some(vms) = vms() else { return };
    let Some(guest) = guest::guest() else { return };
    if !vms.boot("held", &guest.listening) {
        return;
    }
    let mut shell = qmpsh_command(&["held"]);
    shell.env("QMPSH_STATE_DIR", vms.state.path());
    let mut shell = common::Guarded(shell.spawn().unwrap());
    let holder = shell.stdin.take().unwrap(); // open: the shell waits for lines
    let mut out = shell.stdout.take().unwrap();
    // The shell holds the socket once it answers a line.
    let mut probe = holder;
    probe.write_all(b"query-name\n").unwrap();
    let mut first = [0u8; 1];
    out.read_exact(&mut first).unwrap();
    // Not `busy`: status asks QEMU on the VM's own control socket, while
    // the shell keeps the QMP one (waiting for it would never end).
    let status = vms.qmpsh(&["vm", "status", "held"]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(status.stdout.contains("state   running"), "{}", status.stdout);
    let stopped = vms.qmpsh(&["vm", "stop", "held", "--timeout", "30"]);
    assert_eq!(stopped.code, 0, "{stopped:?}");
    assert!(stopped.stdout.ends_with("held: stopped (ACPI)\n"), "{}", stopped.stdout);
    drop(probe);
    let _ = common::wait_with_deadline(&mut shell, Duration::from_secs(10));
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

    // `--kill` kills at once, as asked: no button, no wait, exit 0.
    let killed = vms.qmpsh(&["vm", "stop", "deafer", "--timeout", "30", "--kill"]);
    assert_eq!(killed.code, 0, "{killed:?}");
    assert!(killed.stdout.ends_with("deafer: killed\n"), "{}", killed.stdout);
    assert!(!killed.stdout.contains("POWERDOWN"), "{}", killed.stdout);
    assert!(!vms.qemu_runs("deafer"));
}

/// A minimal guest agent client of its own: the channel has no greeting and
/// may hold a stale reply, so it starts with `guest-sync-delimited`, whose
/// reply follows a 0xFF byte.
struct Agent {
    reader: Box<dyn Read>,
    writer: Box<dyn Write>,
    pending: Vec<u8>,
}

impl Agent {
    /// On a socket, or on a `vm start` VM's pipe channel: `ga.in` (QEMU
    /// reads it) beside `ga.out` (QEMU writes it).
    fn connect(channel: &Path) -> Agent {
        if fs::symlink_metadata(channel).is_ok_and(|m| m.file_type().is_fifo()) {
            use std::os::unix::fs::OpenOptionsExt;
            let writer = fs::OpenOptions::new().write(true).open(channel).unwrap();
            let out = channel.with_extension("out");
            let reader = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(out).unwrap();
            return Agent { reader: Box::new(reader), writer: Box::new(writer), pending: Vec::new() };
        }
        let stream = UnixStream::connect(channel).unwrap_or_else(|e| panic!("{}: {e}", channel.display()));
        stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let writer = stream.try_clone().unwrap();
        Agent { reader: Box::new(stream), writer: Box::new(writer), pending: Vec::new() }
    }

    fn send(&mut self, message: &Value) {
        self.writer.write_all(format!("{message}\n").as_bytes()).unwrap();
    }

    /// The next JSON line within `limit`, skipping whatever precedes its `{`.
    fn reply(&mut self, limit: Duration) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                if let Some(start) = line.iter().position(|&b| b == b'{') {
                    let text = String::from_utf8_lossy(&line[start..]);
                    return Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}")));
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut buf = [0u8; 4096];
            match self.reader.read(&mut buf) {
                Ok(0) => panic!("the agent channel closed"),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                // A FIFO does not wait: pause as a socket's timeout would.
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                Err(e) if e.kind() == ErrorKind::TimedOut => {}
                Err(e) => panic!("reading the agent channel: {e}"),
            }
        }
    }

    /// Resynchronises: asks again every 2 s until the reply to this sync.
    fn sync(&mut self, id: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            self.pending.clear();
            self.send(&json!({"execute": "guest-sync-delimited", "arguments": {"id": id}}));
            let asked = Instant::now();
            while asked.elapsed() < Duration::from_secs(2) {
                if self.reply(Duration::from_secs(2).saturating_sub(asked.elapsed())).is_some_and(|r| r["return"] == id)
                {
                    return;
                }
            }
        }
        panic!("no reply to guest-sync-delimited within 60 s");
    }

    fn execute(&mut self, command: &str) -> Value {
        self.send(&json!({ "execute": command }));
        let reply = self.reply(Duration::from_secs(30)).unwrap_or_else(|| panic!("no reply to {command}"));
        assert!(reply.get("error").is_none(), "{command}: {reply}");
        reply["return"].clone()
    }
}

#[test]
fn the_guest_agent_answers_and_shuts_the_guest_down() {
    let Some(guest) = guest::guest() else { return };
    let (kernel, initrd) = (guest.kernel.display().to_string(), guest.agent.display().to_string());
    let Some(mut qemu) = Qemu::start_args(|_| {
        let args = [
            "-machine",
            "pc",
            "-accel",
            "tcg",
            "-m",
            "128",
            "-kernel",
            &kernel,
            "-initrd",
            &initrd,
            "-append",
            APPEND,
            "-no-reboot",
            "-serial",
            "file:serial.log",
            "-device",
            "virtio-serial",
            "-chardev",
            "socket,id=ga,path=ga.sock,server=on,wait=off",
            "-device",
            &format!("virtserialport,chardev=ga,name={AGENT_PORT}"),
        ];
        args.iter().map(|s| s.to_string()).collect()
    }) else {
        return;
    };
    let serial = qemu.dir.path().join("serial.log");
    let booted = Instant::now();
    while !fs::read_to_string(&serial).unwrap_or_default().contains(READY) {
        assert!(booted.elapsed() < Duration::from_secs(120), "no {READY}: {:?}", fs::read_to_string(&serial));
        assert!(qemu.child.try_wait().unwrap().is_none(), "QEMU exited: {:?}", fs::read_to_string(&serial));
        std::thread::sleep(Duration::from_millis(10));
    }
    let ready = Instant::now();

    let mut agent = Agent::connect(&qemu.dir.path().join("ga.sock"));
    agent.sync(12345);
    assert_eq!(agent.execute("guest-ping"), json!({}));
    let pinged = ready.elapsed();

    let interfaces = agent.execute("guest-network-get-interfaces");
    let addresses: Vec<&Value> = interfaces
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["ip-addresses"].as_array().into_iter().flatten())
        .map(|a| &a["ip-address"])
        .collect();
    assert!(addresses.contains(&&json!("127.0.0.1")), "{interfaces}");
    assert_eq!(agent.execute("guest-get-host-name")["host-name"], HOSTNAME);
    assert_eq!(agent.execute("guest-get-osinfo")["id"], "qmpsh-guest");

    // guest-shutdown sends no reply: the guest powers off and QEMU exits.
    agent.send(&json!({"execute": "guest-shutdown"}));
    let asked = Instant::now();
    assert!(qemu.exits_within(Duration::from_secs(10)), "{:?}", fs::read_to_string(&serial));
    eprintln!(
        "agent guest: booted to {READY} in {:?}, guest-ping answered {pinged:?} after it, \
         guest-shutdown to QEMU exit {:?}",
        ready - booted,
        asked.elapsed()
    );
}

#[test]
fn the_interactive_agent_shell_holds_the_channel_and_leaves_after_guest_shutdown() {
    let Some(vms) = vms() else { return };
    let Some(guest) = guest::guest() else { return };
    if !vms.boot("gat", &guest.agent) {
        return;
    }
    let command = format!(
        "env QMPSH_STATE_DIR={} {} --agent gat; echo qmpsh-exit=$?; sleep 60",
        vms.state.path().display(),
        env!("CARGO_BIN_EXE_qmpsh")
    );
    let Some(tmux) = common::tmux::Tmux::start(&command) else { return };
    tmux.wait_for("the agent shell", |s| {
        s.contains("connected to gat (the guest agent)") && s.contains("gat (qemu-ga)>")
    });
    tmux.type_text("guest-ping");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the ping's reply", |s| s.contains("\nok"));

    // The channel takes one client: status and a second shell say that it
    // is held, and stop uses the button instead (this guest ignores it).
    let status = vms.qmpsh(&["vm", "status", "gat"]);
    assert!(status.stdout.contains("agent   held by another client"), "{}", status.stdout);
    let second = vms.qmpsh(&["--agent", "gat", "--timeout", "1", "-c", "guest-ping"]);
    assert_eq!(second.code, 3, "{second:?}");
    assert!(second.stderr.contains("another client held it for 1 s"), "{}", second.stderr);
    let stop = vms.qmpsh(&["vm", "stop", "gat", "--timeout", "1"]);
    assert!(stop.stdout.starts_with("another client holds the guest agent's channel"), "{}", stop.stdout);
    assert_eq!(stop.code, 4, "{stop:?}");

    // (The stop quit QEMU, so start again.) guest-shutdown gets no reply
    // by design: the shell says the channel closed after it and leaves, 0.
    drop(tmux);
    if !vms.boot("gat", &guest.agent) {
        return;
    }
    let Some(tmux) = common::tmux::Tmux::start(&command) else { return };
    tmux.wait_for("the agent shell", |s| s.contains("gat (qemu-ga)>"));
    tmux.type_text("guest-shutdown");
    tmux.keys(&["Enter"]);
    tmux.wait_within("the shell to leave", Duration::from_secs(30), |s| {
        s.contains("the guest agent's channel closed after guest-shutdown") && s.contains("qmpsh-exit=0")
    });
}

impl Vms {
    /// `qmpsh ARGS` with `stdin` given as bytes, its output kept as bytes.
    fn qmpsh_bytes(&self, args: &[&str], stdin: &[u8]) -> std::process::Output {
        let mut command = qmpsh_command(args);
        command.env("QMPSH_STATE_DIR", self.state.path());
        let mut child = command.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        let stdin = stdin.to_vec();
        let writer = std::thread::spawn(move || input.write_all(&stdin));
        let output = child.wait_with_output().unwrap();
        let _ = writer.join().unwrap();
        output
    }
}

/// `vm exec` runs programs in the real guest through Debian's qemu-ga, as a
/// CI script would after `vm wait --agent`: exit codes, stdout and stderr
/// apart, 1 MiB of binary both ways, stdin, --env, --cwd, a timeout, and
/// `vm wait --event`. One boot for all of it: TCG boots are slow.
#[test]
fn vm_exec_runs_programs_in_the_guest_through_its_agent() {
    let Some(vms) = vms() else { return };
    let Some(guest) = guest::guest() else { return };
    vms.start("ex", &guest.agent);
    // vm wait --agent returns once qemu-ga answers: at once after that,
    // exec works.
    let waited = Instant::now();
    let wait = vms.qmpsh(&["vm", "wait", "ex", "--agent", "--timeout", "120"]);
    assert_eq!(wait.code, 0, "{wait:?}");
    eprintln!("vm wait --agent returned {:?} after vm start", waited.elapsed());

    let run = |args: &[&str], stdin: &str| {
        let mut all = vec!["vm", "exec", "ex"];
        all.extend_from_slice(args);
        vms.qmpsh_bytes(&all, stdin.as_bytes())
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    // Exit codes: the program's, 127 for no such program, 128+N for signal N.
    assert_eq!(run(&["--", "true"], "").status.code(), Some(0));
    assert_eq!(run(&["--", "false"], "").status.code(), Some(1));
    let missing = run(&["--", "no-such-program", "x"], "");
    assert_eq!(missing.status.code(), Some(127), "{missing:?}");
    assert!(text(&missing.stderr).starts_with("qmpsh: the guest cannot run no-such-program: "), "{missing:?}");
    let killed = run(&["--", "sh", "-c", "kill -9 $$"], "");
    assert_eq!(killed.status.code(), Some(137), "{killed:?}");

    // stdout and stderr kept apart, byte for byte; arguments as given
    // (a leading dash is the program's, after --).
    let both = run(&["--", "sh", "-c", "printf 'out\\n'; printf 'err\\n' >&2; exit 3", "-x"], "");
    assert_eq!((both.status.code(), text(&both.stdout), text(&both.stderr)), (Some(3), "out\n".into(), "err\n".into()));

    // stdin goes in, --env sets the environment, --cwd the folder.
    let cat = run(&["--", "cat"], "hello, guest\n");
    assert_eq!(text(&cat.stdout), "hello, guest\n", "{cat:?}");
    let unread = run(&["-n", "--", "cat"], "not read\n");
    assert_eq!((unread.status.code(), text(&unread.stdout)), (Some(0), String::new()), "{unread:?}");
    let env = run(&["--env", "GREETING=hi there", "--env", "B=2", "--", "sh", "-c", "echo \"$GREETING/$B\""], "");
    assert_eq!(text(&env.stdout), "hi there/2\n", "{env:?}");
    let cwd = run(&["--cwd", "/proc/sys", "--", "pwd"], "");
    assert_eq!(text(&cwd.stdout), "/proc/sys\n", "{cwd:?}");
    let no_dir = run(&["--cwd", "/no/such/dir", "--", "pwd"], "");
    assert_eq!(no_dir.status.code(), Some(126), "{no_dir:?}");

    // 1 MiB of random bytes out, identical: the guest's hash of its file,
    // the host's of what vm exec wrote, and the guest's of it sent back in.
    let made = run(&["--", "sh", "-c", "head -c 1048576 /dev/urandom > /tmp/blob && sha256sum < /tmp/blob"], "");
    let guest_hash = text(&made.stdout).split_whitespace().next().unwrap().to_string();
    let blob = run(&["--", "cat", "/tmp/blob"], "");
    assert_eq!(blob.stdout.len(), 1 << 20);
    assert_eq!(sha256_of(&blob.stdout), guest_hash);
    let mut all = vec!["vm", "exec", "ex", "--", "sha256sum"];
    let back = vms.qmpsh_bytes(&all, &blob.stdout);
    assert_eq!(text(&back.stdout).split_whitespace().next(), Some(guest_hash.as_str()), "{back:?}");

    // The channel's path instead of the name (its FIFO QEMU reads).
    let channel = vms.state.path().join("ex").join("ga.in");
    all = vec!["vm", "exec", channel.to_str().unwrap(), "--", "echo", "by path"];
    assert_eq!(text(&vms.qmpsh_bytes(&all, b"").stdout), "by path\n");

    // A program that outlives --timeout keeps running; the line says so
    // and gives its pid; exit 4.
    let slow = run(&["--timeout", "1", "--", "sleep", "30"], "");
    assert_eq!(slow.status.code(), Some(4), "{slow:?}");
    let said = text(&slow.stderr);
    assert!(said.starts_with("qmpsh: sleep still runs in the guest after 1.0 s (pid "), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");

    // The agent shell's .exec, same rules; a bad exit fails the line (1).
    let line = ".exec sh -c 'echo hi; echo oops >&2; exit 2'";
    let shell = vms.qmpsh(&["--agent", "ex", "-c", line]);
    assert_eq!((shell.code, shell.stdout.as_str()), (1, "hi\n"), "{shell:?}");
    assert!(shell.stderr.starts_with("oops\nqmpsh: sh exited with 2"), "{shell:?}");

    // vm wait --event: STOP arrives when the VM is paused through its
    // other socket (paused and continued until the waiter has seen one).
    let mut command = qmpsh_command(&["vm", "wait", "ex", "--event", "STOP", "--timeout", "60"]);
    command.env("QMPSH_STATE_DIR", vms.state.path());
    let mut waiter = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        assert!(Instant::now() < deadline, "vm wait --event STOP never returned");
        assert_eq!(vms.qmpsh(&["ex", "-c", "stop", "-c", "cont"]).code, 0);
        if let Some(status) = waiter.try_wait().unwrap() {
            break status;
        }
    };
    assert_eq!(status.code(), Some(0));
    assert_eq!(vms.qmpsh(&["vm", "kill", "ex"]).code, 0);
}

/// The `ignoring` guest runs no agent and no sshd: vm wait --agent and
/// --ssh give up after their timeout with one line and exit 4, and vm
/// exec says no agent answers (3).
#[test]
fn vm_wait_for_an_agent_that_never_answers_times_out() {
    let Some(vms) = vms() else { return };
    let Some(guest) = guest::guest() else { return };
    // With an --ssh-port forward that QEMU accepts but nothing in the
    // guest answers: vm wait --ssh wants the banner, not the accept.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    vms.start_with("deaf", &guest.ignoring, &["--ssh-port", &port]);
    let ssh = vms.qmpsh(&["vm", "wait", "deaf", "--ssh", "--timeout", "2"]);
    assert_eq!(ssh.code, 4, "{ssh:?}");
    assert_eq!(ssh.stderr, "qmpsh: deaf: no sshd sent its banner on the --ssh-port forward within 2 s\n");
    let started = Instant::now();
    let wait = vms.qmpsh(&["vm", "wait", "deaf", "--agent", "--timeout", "3"]);
    assert_eq!(wait.code, 4, "{wait:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(wait.stderr, "qmpsh: deaf: no guest agent answered within 3 s\n");
    let exec = vms.qmpsh(&["vm", "exec", "deaf", "--", "true"]);
    assert_eq!(exec.code, 3, "{exec:?}");
    assert!(exec.stderr.contains("is qemu-ga running in the guest?"), "{exec:?}");
    assert_eq!(vms.qmpsh(&["vm", "kill", "deaf"]).code, 0);
}

/// The host's sha256 of `bytes`, by coreutils' sha256sum.
fn sha256_of(bytes: &[u8]) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// A guest command through the test's own agent client: its exit code and
/// stdout (`guest-exec` with captured output, polled until it ends).
fn guest_run(socket: &Path, args: &[&str]) -> (i64, String) {
    let mut agent = Agent::connect(socket);
    agent.sync(777);
    agent.send(&json!({"execute": "guest-exec",
        "arguments": {"path": "/bin/busybox", "arg": args, "capture-output": true}}));
    let pid = agent.reply(Duration::from_secs(30)).unwrap()["return"]["pid"].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        agent.send(&json!({"execute": "guest-exec-status", "arguments": {"pid": pid}}));
        let status = agent.reply(Duration::from_secs(30)).unwrap()["return"].clone();
        if status["exited"] == true {
            let out = Command::new("base64").arg("-d").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
            let mut child = out.unwrap();
            child.stdin.take().unwrap().write_all(status["out-data"].as_str().unwrap_or("").as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            return (status["exitcode"].as_i64().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned());
        }
        assert!(Instant::now() < deadline, "{args:?} did not end in the guest");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first word of `sha256sum FILE`.
fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

#[test]
fn vm_cp_carries_exact_bytes_both_ways_and_refuses_clearly() {
    let Some(vms) = vms() else { return };
    let Some(guest) = guest::guest() else { return };
    if !vms.boot("cp", &guest.agent) {
        return;
    }
    let socket = vms.state.path().join("cp").join("ga.in");
    let host = tempfile::tempdir().unwrap();
    // 5 MiB no compressor could shrink, every byte value in no order, and
    // a tail that fills no whole chunk.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..(5 << 20) + 777)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let big = host.path().join("big");
    fs::write(&big, &data).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();

    // Into the guest: the guest's own sha256sum says the same.
    let started = Instant::now();
    let pushed = vms.qmpsh(&["vm", "cp", &path(&big), "cp:/tmp/big"]);
    let push_time = started.elapsed();
    assert_eq!((pushed.code, pushed.stdout.as_str(), pushed.stderr.as_str()), (0, "", ""), "{pushed:?}");
    let (code, sum) = guest_run(&socket, &["sha256sum", "/tmp/big"]);
    assert_eq!(code, 0);
    assert_eq!(sum.split_whitespace().next(), Some(sha256(&big).as_str()), "the guest's copy differs");

    // Out of it, into a folder: the file's own name, the same bytes.
    let out = host.path().join("out");
    fs::create_dir(&out).unwrap();
    let started = Instant::now();
    let pulled = vms.qmpsh(&["vm", "cp", "cp:/tmp/big", &path(&out)]);
    let pull_time = started.elapsed();
    assert_eq!(pulled.code, 0, "{pulled:?}");
    assert_eq!(sha256(&out.join("big")), sha256(&big));
    assert!(fs::read(out.join("big")).unwrap() == data, "the bytes that came back differ");
    assert_eq!(fs::read_dir(&out).unwrap().count(), 1, "a temporary file was left behind");
    let rate = |time: Duration| 5.0 / time.as_secs_f64();
    println!(
        "vm cp of 5 MiB under TCG: into the guest {push_time:?} ({:.1} MiB/s), out {pull_time:?} ({:.1} MiB/s)",
        rate(push_time),
        rate(pull_time)
    );

    // A guest folder as DST takes the host file's name; .cat prints it.
    let small = host.path().join("small.txt");
    fs::write(&small, "one\ntwo\n").unwrap();
    assert_eq!(vms.qmpsh(&["vm", "cp", &path(&small), "cp:/tmp"]).code, 0);
    let cat = vms.qmpsh(&["--agent", "cp", "-c", ".cat /tmp/small.txt"]);
    assert_eq!((cat.code, cat.stdout.as_str()), (0, "one\ntwo\n"), "{cat:?}");
    // .cat of 5 MiB of binary on a pipe: every byte as it is.
    let mut cat = qmpsh_command(&["--agent", "cp", "-c", ".cat /tmp/big"]);
    let cat = cat.env("QMPSH_STATE_DIR", vms.state.path()).output().unwrap();
    assert!(cat.status.success(), "{:?}", String::from_utf8_lossy(&cat.stderr));
    assert!(cat.stdout == data, ".cat gave {} bytes, not the file's", cat.stdout.len());

    // An empty file, both ways.
    let empty = host.path().join("empty");
    fs::write(&empty, "").unwrap();
    assert_eq!(vms.qmpsh(&["vm", "cp", &path(&empty), "cp:/tmp/empty"]).code, 0);
    fs::write(&empty, "not yet").unwrap();
    assert_eq!(vms.qmpsh(&["vm", "cp", "cp:/tmp/empty", &path(&empty)]).code, 0);
    assert_eq!(fs::read(&empty).unwrap(), b"");

    // Each refusal: one line, exit 1.
    let refused = |args: &[&str], words: &str| {
        let run = vms.qmpsh(args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains(words), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    };
    let missing = path(&host.path().join("missing"));
    refused(&["vm", "cp", "cp:/no/such/file", &missing], "No such file");
    refused(&["vm", "cp", &missing, "cp:/tmp/x"], "No such file");
    refused(&["vm", "cp", "cp:/tmp", &missing], "Is a directory");
    refused(&["vm", "cp", &path(&out), "cp:/tmp/x"], "folder");
    assert!(!host.path().join("missing").exists());

    // A symlink at the destination is refused, and what it points to kept.
    let victim = host.path().join("victim");
    fs::write(&victim, "mine").unwrap();
    let link = host.path().join("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    refused(&["vm", "cp", "cp:/tmp/big", &path(&link)], "symlink");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "mine");

    // A full guest disk: a 1 MiB tmpfs takes part of a 5 MiB file.
    let (code, _) = guest_run(&socket, &["sh", "-c", "mkdir -p /small && mount -t tmpfs -o size=1m tmpfs /small"]);
    assert_eq!(code, 0, "cannot mount a small tmpfs in the guest");
    let full = vms.qmpsh(&["vm", "cp", &path(&big), "cp:/small/big"]);
    assert_eq!(full.code, 1, "{full:?}");
    assert!(full.stderr.contains("disk full") || full.stderr.contains("No space left"), "{}", full.stderr);
    assert_eq!(full.stderr.lines().count(), 1, "{}", full.stderr);
}
