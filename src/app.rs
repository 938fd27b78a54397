//! `run`: from parsed command-line options to a finished session.

use std::collections::VecDeque;
use std::io::{self, BufReader, IsTerminal, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::thread;
use std::time::Duration;

use std::path::Path;

use crate::bind::{Action, Shell};
use crate::cli::{Cli, ColorChoice, Command, Deferred, LaunchOptions, ShellOptions};
use crate::error::Error;
use crate::output::{Printer, Style};
use crate::qmp::agent::AgentMonitor;
use crate::qmp::{Connect, Monitor, SocketMonitor};
use crate::render::{self, Palette};
use crate::repl;
use crate::schema::{self, Schema};
use crate::session::{self, Flow, Input, Logical, Session, Settings};
use crate::target::Target;
use crate::vm;

/// How long to wait for the greeting when `--timeout` is not given.
const DEFAULT_GREETING_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs qmpsh as the command line asks.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Some(Command::Vm(Deferred(command))) => vm::run(command),
        Some(Command::Launch(Deferred(LaunchOptions { start, shell }))) => vm::launch(start, shell),
        Some(Command::Completions { shell }) => {
            // Into memory first: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "qmpsh", &mut script);
            io::stdout().write_all(&script).map_err(Error::output)
        }
        Some(Command::Manpage) => {
            let mut page = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut page).map_err(Error::output)?;
            io::stdout().write_all(&page).map_err(Error::output)
        }
        None if cli.dry_run => {
            if cli.target.is_some() {
                return Err(Error::Usage("--dry-run does not connect: drop TARGET".into()));
            }
            let saved = cli.schema.as_deref().map(read_schema).transpose()?;
            dry_run(input(&cli.shell), &cli.shell, saved.as_ref())
        }
        None if cli.schema.is_some() => {
            Err(Error::Usage("--schema is for --dry-run; connected, qmpsh asks QEMU for its own".into()))
        }
        None if cli.agent.is_some() => {
            let agent = cli.agent.unwrap_or_default();
            agent_shell(&agent_target(&agent)?, &agent, &cli.shell)
        }
        None => {
            let Some(target) = cli.target.as_deref() else {
                return Err(Error::Usage("no TARGET: name a QMP socket path, HOST:PORT or VM (see --help)".into()));
            };
            let target = match (Target::parse_with(target, vm::VmDir::find_socket)?, cli.connect) {
                (Target::Libvirt { domain, .. }, uri) => Target::Libvirt { domain, uri },
                (_, Some(uri)) => {
                    return Err(Error::Usage(format!(
                        "--connect {uri} is a libvirt URI: name the VM as libvirt:DOMAIN"
                    )));
                }
                (target, None) => target,
            };
            shell(&target, &cli.shell)
        }
    }
}

/// Where lines come from: `-c`, or stdin when it is not a terminal.
fn input(options: &ShellOptions) -> Input {
    if !options.commands.is_empty() {
        Input::Commands(options.commands.clone())
    } else {
        Input::Stream(BufReader::with_capacity(64 * 1024, Box::new(io::stdin())))
    }
}

/// Connects to `target` and runs the REPL on a terminal, else the script.
pub fn shell(target: &Target, options: &ShellOptions) -> Result<(), Error> {
    let mut printer = printer(options)?;
    let timeout = options.timeout.map(Duration::from_secs_f64);
    let greeting_timeout = timeout.unwrap_or(DEFAULT_GREETING_TIMEOUT);
    let connect = Connect { greeting_timeout, negotiate: !options.no_negotiate };
    let monitor: Box<dyn Monitor> = match target {
        Target::Libvirt { domain, uri } => libvirt_monitor(domain, uri.as_deref())?,
        _ => Box::new(
            SocketMonitor::connect(target, connect, &mut printer).map_err(|e| Error::Connection(e.to_string()))?,
        ),
    };
    // A managed VM's folder holds its agent channel beside the QMP socket.
    let agent = match target {
        Target::Unix(path) if path.file_name().is_some_and(|n| n == "qmp.sock") => {
            path.parent().map(|dir| dir.join("ga.sock")).filter(|ga| ga.exists()).map(Target::Unix)
        }
        _ => None,
    };
    converse(monitor, printer, &target.to_string(), agent, options)
}

/// `--agent NAME|SOCKET`: a managed VM's agent channel, or a socket.
fn agent_target(agent: &str) -> Result<Target, Error> {
    let plain_word = !agent.contains('/') && !agent.contains(':');
    if !plain_word {
        return Target::parse(agent);
    }
    match vm::VmDir::find_socket(agent) {
        Some(_) => {
            let channel = vm::VmDir::new(agent)?.agent_socket();
            if !channel.exists() {
                return Err(Error::Usage(format!(
                    "VM {agent} has no guest agent channel: it was started with --no-agent, on a machine \
                     without PCI, or is not running"
                )));
            }
            Ok(Target::Unix(channel))
        }
        None if !std::path::Path::new(agent).exists() => {
            Err(Error::Usage(format!("no VM named {agent} and no socket file {agent} (qmpsh vm list shows the VMs)")))
        }
        None => Target::parse(agent),
    }
}

/// `--agent`: the shell on a guest agent's channel, once it answers.
fn agent_shell(target: &Target, label: &str, options: &ShellOptions) -> Result<(), Error> {
    let printer = printer(options)?;
    let timeout = options.timeout.map(Duration::from_secs_f64).unwrap_or(DEFAULT_GREETING_TIMEOUT);
    let monitor = AgentMonitor::connect(target, label, timeout).map_err(|e| Error::Connection(e.to_string()))?;
    converse(Box::new(monitor), printer, label, None, options)
}

/// Where output goes and how it looks, from the options and the terminal.
fn printer(options: &ShellOptions) -> Result<Printer, Error> {
    let style = Style {
        stdout: palette(options.color, io::stdout().is_terminal()),
        stderr: palette(options.color, io::stderr().is_terminal()),
        pretty: options.pretty || io::stdout().is_terminal(),
        json: options.json,
        verbose: options.verbose,
        events: true,
    };
    if !style.stdout.is_plain() || !style.stderr.is_plain() {
        colored::control::set_override(true);
    }
    Printer::new(style, options.log.as_deref())
}

/// Runs the REPL on a terminal, else the script, on a connected monitor.
fn converse(
    monitor: Box<dyn Monitor>,
    mut printer: Printer,
    label: &str,
    agent: Option<Target>,
    options: &ShellOptions,
) -> Result<(), Error> {
    let interactive = options.commands.is_empty() && io::stdin().is_terminal();
    let timeout = options.timeout.map(Duration::from_secs_f64);
    printer.live = true;
    let quit_grace = timeout.unwrap_or(DEFAULT_GREETING_TIMEOUT);
    // The REPL waits for each reply: a person reads it before typing on.
    let pipeline = options.pipeline.filter(|_| !interactive).map(|n| n as usize);
    let keep_going = options.keep_going;
    let settings = Settings { hmp: options.hmp, timeout, quit_grace, agent, pipeline, keep_going };
    let mut session = Session::new(monitor, printer, settings);
    if interactive { repl::run(&mut session, label) } else { script(&mut session, input(options), options.keep_going) }
}

/// A monitor through libvirt, for `libvirt:DOMAIN`.
#[cfg(feature = "libvirt")]
fn libvirt_monitor(domain: &str, uri: Option<&str>) -> Result<Box<dyn Monitor>, Error> {
    match crate::qmp::libvirt::LibvirtMonitor::connect(uri, domain) {
        Ok(monitor) => Ok(Box::new(monitor)),
        Err(e) => Err(Error::Connection(e.to_string())),
    }
}

#[cfg(not(feature = "libvirt"))]
fn libvirt_monitor(_: &str, _: Option<&str>) -> Result<Box<dyn Monitor>, Error> {
    Err(Error::Usage(crate::error::WITHOUT_LIBVIRT.into()))
}

/// Colour for one stream: `auto` means a terminal, no NO_COLOR, no TERM=dumb.
fn palette(choice: ColorChoice, is_terminal: bool) -> Palette {
    let wanted = match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
            is_terminal && !no_color && !dumb
        }
    };
    if wanted { Palette::colored() } else { Palette::plain() }
}

/// Script mode: stop at the first failure, or note it and go on.
fn script(session: &mut Session, input: Input, keep_going: bool) -> Result<(), Error> {
    let mut outcome = KeepGoing::default();
    let mut run = |session: &mut Session, line: Logical| {
        let result = line.and_then(|(text, line_no)| session.run_line(text, Some(line_no)));
        outcome.absorb(result, keep_going, |message| session.printer.problem(message))
    };
    let mut result = match input {
        Input::Stream(reader) => stream_script(session, reader, &mut run),
        commands => session::for_each_line(commands, session.hmp(), |line| run(session, line)),
    };
    // `--pipeline`: what is still in flight has run; show its replies.
    let drained = session.drain();
    if result.is_ok() {
        let drained = drained.map(|()| Flow::Continue);
        result = outcome.absorb(drained, keep_going, |message| session.printer.problem(message)).map(|_| ());
    }
    session.printer.flush();
    result?;
    session.printer.check()?;
    outcome.finish()
}

/// What `--keep-going` went past: a script goes on after a failed command
/// or a line that does not parse, and its exit status says so at the end
/// (2 if a line did not parse, else 1 if a command failed).
#[derive(Default)]
struct KeepGoing {
    unparsed: bool,
    failed: bool,
}

impl KeepGoing {
    /// Takes one line's result: with `keep_going`, a failure is reported
    /// (through `report`, unless already printed) and the script goes on.
    fn absorb(
        &mut self,
        result: Result<Flow, Error>,
        keep_going: bool,
        mut report: impl FnMut(&str),
    ) -> Result<Flow, Error> {
        match result {
            Err(Error::CommandFailed) if keep_going => self.failed = true,
            Err(error @ Error::Parse { .. }) if keep_going => {
                report(&format!("qmpsh: {error}"));
                self.unparsed = true;
            }
            other => return other,
        }
        Ok(Flow::Continue)
    }

    fn finish(self) -> Result<(), Error> {
        if self.unparsed {
            Err(Error::LinesRefused)
        } else if self.failed {
            Err(Error::CommandFailed)
        } else {
            Ok(())
        }
    }
}

/// One physical line read from a stream, or why it could not be read.
type PhysicalLine = Result<Option<String>, Error>;

/// A script read from a stream (a pipe that may pause): a thread reads the
/// lines, and while none is ready the session prints events as they come,
/// just as the REPL does at its prompt.
fn stream_script(
    session: &mut Session,
    mut reader: BufReader<Box<dyn Read + Send>>,
    run: &mut dyn FnMut(&mut Session, Logical) -> Result<Flow, Error>,
) -> Result<(), Error> {
    // Lines go over in batches: the reader never waits while the session
    // is busy, until it holds BATCH lines (bounded: `yes | qmpsh` must not
    // fill memory while QEMU answers one command at a time).
    const BATCH: usize = 1024;
    let (batches, next) = mpsc::sync_channel::<Vec<PhysicalLine>>(2);
    let wake = session.waker();
    // Set while the session waits for a line: only then does a new line
    // need to wake it (a busy script is not woken once per line).
    let idle = Arc::new(AtomicBool::new(false));
    let reader_idle = Arc::clone(&idle);
    thread::Builder::new()
        .name("qmpsh-stdin".into())
        .spawn(move || {
            let mut batch = Vec::new();
            for number in 1.. {
                let line = session::read_physical(&mut reader, number);
                // A line that is not UTF-8 is that line's failure; reading
                // ends at the end of input or a read error.
                let end = matches!(line, Ok(None) | Err(Error::Io(_)));
                batch.push(line);
                // Before a read that may wait for input (no whole line is
                // buffered), every line read so far goes over, so none sits
                // here while the session waits.
                let may_block = !reader.buffer().contains(&b'\n');
                let sent = if end || may_block || batch.len() >= BATCH {
                    batches.send(std::mem::take(&mut batch)).map_err(|_| ())
                } else {
                    match batches.try_send(std::mem::take(&mut batch)) {
                        Ok(()) => Ok(()),
                        Err(mpsc::TrySendError::Full(kept)) => {
                            batch = kept;
                            continue;
                        }
                        Err(mpsc::TrySendError::Disconnected(_)) => Err(()),
                    }
                };
                if end || sent.is_err() || reader_idle.load(Ordering::SeqCst) {
                    wake();
                }
                if end || sent.is_err() {
                    return;
                }
            }
        })
        .map_err(|e| Error::Io(format!("cannot start the input thread: {e}")))?;
    // While no line is ready, the session prints events as they come.
    let mut ready: VecDeque<PhysicalLine> = VecDeque::new();
    let next_line = |session: &mut Session| loop {
        if let Some(line) = ready.pop_front() {
            return line;
        }
        match next.try_recv() {
            Ok(batch) => ready.extend(batch),
            Err(TryRecvError::Disconnected) => return Ok(None),
            Err(TryRecvError::Empty) => {
                // Say we wait, then look once more: a batch sent before the
                // reader saw the flag is found here, one sent after wakes us.
                idle.store(true, Ordering::SeqCst);
                let flow = match next.try_recv() {
                    Ok(batch) => {
                        ready.extend(batch);
                        Ok(Flow::Continue)
                    }
                    Err(_) => session.idle(),
                };
                idle.store(false, Ordering::SeqCst);
                if flow? == Flow::Exit {
                    return Ok(None);
                }
            }
        }
    };
    let hmp = session.hmp();
    session::assemble(session, hmp, next_line, run)
}

/// `--dry-run`: each command's QMP message, one compact JSON per line,
/// exactly as a connected run would send it: a line that needs the schema
/// is bound with `schema` (the recorded one, or `--schema FILE`), others
/// without, as when connected.
fn dry_run(input: Input, options: &ShellOptions, saved: Option<&Schema>) -> Result<(), Error> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut cpu = None;
    let mut outcome = KeepGoing::default();
    let stderr_palette = palette(options.color, io::stderr().is_terminal());
    let mut translate_line = |line: Logical| -> Result<Flow, Error> {
        let (text, line_no) = line?;
        let schema = || saved.unwrap_or_else(|| schema::recorded());
        match session::translate(text, Some(line_no), options.hmp, cpu, schema)? {
            Action::Send(request) => {
                serde_json::to_writer(&mut out, &request.message).map_err(|e| Error::output(e.into()))?;
                out.write_all(b"\n").map_err(Error::output)?;
            }
            Action::Shell(Shell::Cpu(index)) => cpu = Some(index),
            Action::Shell(Shell::Exit) => return Ok(Flow::Exit),
            _ => {}
        }
        Ok(Flow::Continue)
    };
    session::for_each_line(input, options.hmp, |line| {
        let result = translate_line(line);
        outcome.absorb(result, options.keep_going, |message| {
            let _ = render::error_text(&mut io::stderr().lock(), message, &stderr_palette);
        })
    })?;
    out.flush().map_err(Error::output)?;
    outcome.finish()
}

/// `--schema FILE`: a schema saved with `qmpsh SOCK -c query-qmp-schema`.
fn read_schema(path: &Path) -> Result<Schema, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("cannot read the schema file {}: {e}", path.display())))?;
    Schema::from_saved(&text).map_err(|e| {
        Error::Usage(format!(
            "{} is not a saved QMP schema ({e}); save one with `qmpsh SOCK -c query-qmp-schema > FILE`",
            path.display()
        ))
    })
}
