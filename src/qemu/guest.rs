//! Running a program in the guest through its agent: `guest-exec` with
//! captured output, then `guest-exec-status` polled until it ends. What
//! the agent can do sets the rules: the output comes whole when the
//! program ends, a program that outlives the wait keeps running (the
//! protocol has no kill), and the agent caps what it captures.
//! `vm exec` and the agent shell's `.exec` both come here.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::error::{Error, signal_exit_code};
use crate::qmp::{Monitor, Observer, command};
use crate::visible;

/// The most of qmpsh's stdin sent as `input-data`: the agent takes it
/// whole, in one message.
pub const MAX_INPUT: usize = 16 << 20;

/// What to run in the guest.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// `K=V` entries: with any, the program's whole environment (qemu-ga
    /// replaces its own rather than adding to it).
    pub env: Vec<String>,
    /// A folder to run in, through the guest's `/bin/sh` (guest-exec has
    /// no such argument).
    pub cwd: Option<String>,
    /// Bytes for the program's stdin.
    pub input: Option<Vec<u8>>,
    /// How long to wait for it to end; none waits as long as it takes.
    pub timeout: Option<Duration>,
}

/// How a program ended in the guest, and whether the agent cut its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The exit code, or 128 + the signal that ended it.
    pub code: i32,
    pub out_truncated: bool,
    pub err_truncated: bool,
}

/// Runs `request` through `agent`, writes the program's stdout to `out`
/// and its stderr to `err` byte for byte, and says how it ended. A program
/// the guest cannot start ends as a shell's would: 127 when there is no
/// such program, 126 when it cannot be run; the agent's words go to
/// `err` as a qmpsh message. `observer` sees the traffic (the shell's
/// `-v` and `-l`).
pub fn exec(
    agent: &mut Monitor,
    request: &Request,
    observer: &mut dyn Observer,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Ended, Error> {
    let Some(program) = request.argv.first() else {
        return Err(Error::Usage("exec needs a program to run".into()));
    };
    let started = Instant::now();
    let deadline = request.timeout.map(|t| started + t);
    let message = exec_message(request);
    if let Some(largest) = agent.largest_command() {
        let size = serde_json::to_string(&message).map_or(0, |text| text.len());
        if size > largest {
            return Err(Error::Usage(format!(
                "the program's arguments and stdin take {} KiB as guest-exec, over the {} KiB one agent command \
                 may take through libvirt: give it less on stdin, or copy its input in with vm cp first",
                size.div_ceil(1024),
                largest >> 10
            )));
        }
    }
    let pid = match agent.execute(message, deadline, observer)? {
        Ok(reply) => reply.get("pid").and_then(Value::as_i64).ok_or_else(|| {
            Error::Connection(format!(
                "the guest agent's guest-exec reply has no pid: {}",
                visible::line(&reply.to_string())
            ))
        })?,
        Err(refused) => {
            let why = visible::line(&refused.desc);
            let code = if why.contains("No such file") || why.contains("not found") { 127 } else { 126 };
            let said = writeln!(err, "qmpsh: the guest cannot run {}: {why}", visible::line(program));
            said.map_err(Error::output)?;
            return Ok(Ended { code, out_truncated: false, err_truncated: false });
        }
    };
    let status = poll(agent, pid, deadline, observer).map_err(|e| match e {
        Error::Timeout(_) => Error::Timeout(format!(
            "{} still runs in the guest after {:.1} s (pid {pid}): the agent cannot stop it",
            visible::line(program),
            started.elapsed().as_secs_f64()
        )),
        other => other,
    })?;
    write_data(&status, "out-data", out)?;
    write_data(&status, "err-data", err)?;
    let flag = |key: &str| status.get(key).and_then(Value::as_bool) == Some(true);
    let code = match (status.get("exitcode").and_then(Value::as_i64), status.get("signal").and_then(Value::as_i64)) {
        (_, Some(signal)) => signal_exit_code(i32::try_from(signal).unwrap_or(127)),
        (Some(code), None) => i32::try_from(code).unwrap_or(1),
        (None, None) => 1,
    };
    Ok(Ended { code, out_truncated: flag("out-truncated"), err_truncated: flag("err-truncated") })
}

/// What the agent cut, said in one line, if it cut anything.
pub fn truncation(ended: &Ended) -> Option<String> {
    let cut = match (ended.out_truncated, ended.err_truncated) {
        (true, true) => "stdout and stderr",
        (true, false) => "stdout",
        (false, true) => "stderr",
        (false, false) => return None,
    };
    Some(format!("the guest agent cut the program's {cut} at its capture limit (16 MiB in qemu-ga): the rest is lost"))
}

/// The `guest-exec` message for `request`.
fn exec_message(request: &Request) -> Map<String, Value> {
    let mut argv: Vec<String> = match &request.cwd {
        // `cd` then `exec`: the exit code and a missing program (127)
        // are the program's, as without --cwd.
        Some(dir) => ["/bin/sh", "-c", r#"cd -- "$1" || exit 126; shift; exec "$@""#, "qmpsh-cwd", dir]
            .iter()
            .map(|s| s.to_string())
            .chain(request.argv.iter().cloned())
            .collect(),
        None => request.argv.clone(),
    };
    let path = if argv.is_empty() { String::new() } else { argv.remove(0) };
    let mut arguments = Map::new();
    arguments.insert("path".into(), Value::from(path));
    arguments.insert("arg".into(), Value::from(argv));
    if !request.env.is_empty() {
        arguments.insert("env".into(), Value::from(request.env.clone()));
    }
    if let Some(input) = &request.input {
        arguments.insert("input-data".into(), Value::from(STANDARD.encode(input)));
    }
    arguments.insert("capture-output".into(), Value::Bool(true));
    let mut message = command("guest-exec");
    message.insert("arguments".into(), Value::Object(arguments));
    message
}

/// `guest-exec-status` until the program has exited: first after 2 ms,
/// then each wait half again as long, at most 100 ms, so a quick program
/// is seen at once and a slow one costs the guest little.
fn poll(
    agent: &mut Monitor,
    pid: i64,
    deadline: Option<Instant>,
    observer: &mut dyn Observer,
) -> Result<Map<String, Value>, Error> {
    let mut pause = Duration::from_millis(2);
    loop {
        let mut arguments = Map::new();
        arguments.insert("pid".into(), Value::from(pid));
        let mut message = command("guest-exec-status");
        message.insert("arguments".into(), Value::Object(arguments));
        let status = match agent.execute(message, deadline, observer)? {
            Ok(Value::Object(status)) => status,
            Ok(other) => {
                let what = visible::line(&other.to_string());
                return Err(Error::Connection(format!("the guest agent's guest-exec-status is no object: {what}")));
            }
            Err(refused) => {
                return Err(Error::Failed(format!("guest-exec-status failed: {}", visible::line(&refused.desc))));
            }
        };
        if status.get("exited").and_then(Value::as_bool) == Some(true) {
            return Ok(status);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(Error::Timeout(String::new()));
        }
        std::thread::sleep(deadline.map_or(pause, |d| pause.min(d - now)));
        pause = (pause * 3 / 2).min(Duration::from_millis(100));
    }
}

/// Decodes one captured stream and writes it as it was.
fn write_data(status: &Map<String, Value>, key: &str, to: &mut dyn Write) -> Result<(), Error> {
    let Some(text) = status.get(key).and_then(Value::as_str) else { return Ok(()) };
    let bytes =
        STANDARD.decode(text).map_err(|e| Error::Connection(format!("the guest agent's {key} is not base64: {e}")))?;
    to.write_all(&bytes).and_then(|()| to.flush()).map_err(Error::output)
}

/// Reads `from` whole, refusing more than [`MAX_INPUT`] bytes.
pub fn read_input(from: &mut dyn io::Read) -> Result<Vec<u8>, Error> {
    let mut input = Vec::new();
    let limit = u64::try_from(MAX_INPUT).unwrap_or(u64::MAX) + 1;
    io::Read::read_to_end(&mut io::Read::take(from, limit), &mut input)
        .map_err(|e| Error::Io(format!("cannot read stdin: {e}")))?;
    if input.len() > MAX_INPUT {
        return Err(Error::Usage(format!(
            "stdin holds over {} MiB: the agent takes a program's input whole, in one message",
            MAX_INPUT >> 20
        )));
    }
    Ok(input)
}
