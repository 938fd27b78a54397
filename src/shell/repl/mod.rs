//! The interactive shell on a terminal.
//!
//! Two threads: an input thread owns the line editor and reads one line
//! each time it is asked; the main thread runs the session and, while a
//! line is being typed, waits on the monitor so events print the moment
//! they arrive, above the line (through the editor's external printer).
//! The input thread wakes the main thread when a line is done.

mod helper;
mod history;
pub mod live;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread;
use std::time::Duration;

use rustyline::config::Config;
use rustyline::error::ReadlineError;
use rustyline::history::MemHistory;
use rustyline::{CompletionType, Editor, ExternalPrinter};

use crate::error::Error;
use crate::interrupt;
use crate::language::line::Assembler;
use crate::qmp::Waker;
use crate::shell::session::{Flow, Session};
use crate::ui::output;
use crate::ui::terminal::{self, RestoreOnDrop};
use crate::visible;
pub use helper::{EditorHelper, Knowledge, complete, highlight, hint};
use history::History;

/// What the main thread asks of the input thread.
enum EditorTask {
    /// Read a line with this prompt.
    Read(String),
    /// Save this logical line in the history.
    Remember(String),
}

/// What the input thread reports: what was typed.
enum Typed {
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// Ctrl-D.
    Eof,
    Failed(String),
}

/// Runs the REPL until Ctrl-D, `.exit` or `quit`.
pub fn run(session: &mut Session, target: &str) -> Result<(), Error> {
    let mut terminal = RestoreOnDrop(terminal::Saved::now());
    interrupt::install().map_err(|e| Error::Io(format!("cannot take over Ctrl-C: {e}")))?;
    // SIGTERM, SIGHUP or SIGQUIT while the editor has the terminal raw
    // must not leave it that way.
    let saved = terminal.0.clone();
    let _leave_on_signal = interrupt::on_ending(move || {
        if let Some(saved) = &saved {
            terminal::leave(saved);
        }
    })?;
    // Only the guest agent lists its commands itself; it has no HMP.
    let agent = !session.command_names().is_empty();
    // Completion asks the VM what it has now: events and commands make
    // what it learnt old.
    let changes = Arc::new(AtomicU64::new(0));
    session.count_changes(Arc::clone(&changes));
    let (fetcher, server) = live::pair(session.waker(), changes);
    let knowledge = Knowledge {
        schema: session.shared_schema()?,
        commands: session.command_names(),
        hmp: if agent { None } else { session.shared_hmp_commands()? },
        live: (!agent).then_some(fetcher),
        qemu: if agent { None } else { session.qemu_version()? },
        every_line_hmp: session.hmp(),
    };
    // The VM's name is QEMU's text, shown in the banner and every prompt.
    let name = session.ask("query-name")?.and_then(|v| v.get("name")?.as_str().map(visible::line));
    let peer = if agent { "the guest agent" } else { "QEMU" };
    let version = session.version().unwrap_or_else(|| peer.into());
    let named = name.as_deref().map(|n| format!("{n} at ")).unwrap_or_default();
    session
        .printer
        .text(&format!("qmpsh: connected to {named}{target} ({version}); .help lists commands, Ctrl-D leaves\n"));
    // The agent's prompt says it is the agent's: `web (qemu-ga)> ` is not
    // the QMP shell of a VM called `ga`.
    let label = match name {
        _ if agent => format!("{target} (qemu-ga)"),
        Some(name) => name,
        None => target.to_string(),
    };

    // History is best effort: refused, the shell goes on without it, and
    // says why once.
    let history = history::path().and_then(|path| {
        history::open(&path)
            .inspect_err(|why| session.printer.problem(&format!("qmpsh: history not kept: cannot use {why}")))
            .ok()
    });
    let (requests, requests_rx) = mpsc::channel();
    let (inputs_tx, inputs) = mpsc::channel();
    let (printer_tx, printer_rx) = mpsc::channel();
    let helper = EditorHelper { knowledge, palette: session.printer.style.stdout };
    let waker = session.waker();
    let reader = thread::Builder::new()
        .name("qmpsh-input".into())
        .spawn(move || read_lines(helper, history, requests_rx, inputs_tx, printer_tx, waker))
        .map_err(|e| Error::Io(format!("cannot start the input thread: {e}")))?;
    if let Ok(Some(printer)) = printer_rx.recv() {
        session.printer.print_through(printer);
    }

    let mut reading = false;
    let outcome = converse(session, &label, &requests, &inputs, &server, &mut reading);
    if reading {
        // QEMU went while a line was being typed: the input thread is
        // inside readline, with the terminal raw. Once the editor has taken
        // what was printed through it (the farewell), end its read so it
        // draws nothing more, put the terminal back and leave now rather
        // than wait for Enter.
        session.printer.settle_editor();
        if let Ok(tty) = terminal::end_input() {
            let _ = inputs.recv_timeout(Duration::from_secs(1));
            // On the terminal stdin was: stdin is /dev/null now.
            if let Some(saved) = terminal.0.take() {
                saved.restore_to(&tty);
            }
        }
        drop(terminal);
        let _ = writeln!(output::stdout());
    } else {
        // The input thread is idle: let it save history and end.
        drop(requests);
        let _ = reader.join();
    }
    outcome.and_then(|()| session.printer.check_log())
}

/// The main loop: ask for a line, wait for it while printing events and
/// answering completion's questions, run it.
fn converse(
    session: &mut Session,
    label: &str,
    requests: &Sender<EditorTask>,
    inputs: &Receiver<Typed>,
    live: &live::Server,
    reading: &mut bool,
) -> Result<(), Error> {
    let fresh = |session: &Session| if session.hmp() { Assembler::for_hmp() } else { Assembler::new() };
    let mut assembler = fresh(session);
    loop {
        let prompt = match assembler.pending_block() {
            Some(true) => "transaction> ".to_string(),
            Some(false) => "...> ".to_string(),
            None => format!("{label}> "),
        };
        // A Ctrl-C from before this prompt was for an earlier wait; one
        // after the line is entered (the terminal is no longer raw then)
        // must reach the command it runs, so the flag is not cleared later.
        interrupt::clear();
        if requests.send(EditorTask::Read(prompt)).is_err() {
            return Ok(());
        }
        *reading = true;
        let Some(input) = await_typed(session, inputs, live)? else { return Ok(()) };
        *reading = false;
        let physical = match input {
            Typed::Line(line) => line,
            Typed::Interrupted => {
                assembler = fresh(session);
                continue;
            }
            Typed::Eof => return Ok(()),
            Typed::Failed(e) => return Err(Error::Io(format!("cannot read the terminal: {e}"))),
        };
        // A paste can bring several lines at once: each is a line typed.
        for piece in physical.split('\n') {
            let Some((text, _)) = assembler.push(piece) else { continue };
            if run_typed(session, requests, &text)? == Flow::Exit {
                return Ok(());
            }
        }
    }
}

/// Waits for what the input thread reports, printing events and
/// answering completion's questions meanwhile; `None` when QEMU went.
fn await_typed(session: &mut Session, inputs: &Receiver<Typed>, live: &live::Server) -> Result<Option<Typed>, Error> {
    loop {
        match inputs.try_recv() {
            Ok(input) => return Ok(Some(input)),
            // It ends on its own only after Ctrl-D or a failure it
            // reported, so this is the line editor failing.
            Err(TryRecvError::Disconnected) => return Err(Error::Io("the line editor stopped unexpectedly".into())),
            Err(TryRecvError::Empty) => {}
        }
        live.serve(session)?;
        if session.idle()? == Flow::Exit {
            return Ok(None);
        }
    }
}

/// Runs one logical line typed at the prompt: it goes to the history
/// (unless it carries a secret), and its errors are shown, not fatal.
fn run_typed(session: &mut Session, requests: &Sender<EditorTask>, text: &str) -> Result<Flow, Error> {
    if text.trim().is_empty() {
        return Ok(Flow::Continue);
    }
    if !history::carries_secret(text) {
        let _ = requests.send(EditorTask::Remember(text.to_string()));
    }
    match session.run_line(text, None) {
        Ok(flow) => Ok(flow),
        Err(Error::CommandFailed) => Ok(Flow::Continue),
        Err(e @ (Error::Parse { .. } | Error::Usage(_) | Error::Timeout(_) | Error::Interrupted)) => {
            session.printer.problem(&e.said().unwrap_or_default());
            Ok(Flow::Continue)
        }
        Err(e) => Err(e),
    }
}

/// The input thread: owns the editor and the history file.
fn read_lines(
    helper: EditorHelper,
    mut history: Option<History>,
    requests: Receiver<EditorTask>,
    inputs: Sender<Typed>,
    printer: Sender<Option<Box<dyn ExternalPrinter + Send>>>,
    wake: Waker,
) {
    // However this thread ends, even by a panic, the main loop wakes and
    // sees that no more input will come.
    let _wake_on_exit = WakeOnExit(&wake);
    let config = Config::builder()
        .max_history_size(history::KEPT)
        .and_then(|c| c.history_ignore_dups(true))
        .map(|c| c.completion_type(CompletionType::List).auto_add_history(false).build())
        .unwrap_or_default();
    // The entries live in memory; the file is ours to read and write
    // (see history), never rustyline's.
    let entries = MemHistory::with_config(&config);
    let mut editor: Editor<EditorHelper, MemHistory> = match Editor::with_history(config, entries) {
        Ok(editor) => editor,
        Err(e) => {
            let _ = printer.send(None);
            let _ = inputs.send(Typed::Failed(e.to_string()));
            wake();
            return;
        }
    };
    editor.set_helper(Some(helper));
    // Best effort: a history that cannot be read is an empty one.
    for entry in history.as_mut().and_then(|h| h.load().ok()).unwrap_or_default() {
        let _ = editor.add_history_entry(entry);
    }
    let external = editor.create_external_printer().ok().map(|p| Box::new(p) as Box<dyn ExternalPrinter + Send>);
    let _ = printer.send(external);
    while let Ok(request) = requests.recv() {
        match request {
            EditorTask::Remember(text) => {
                if editor.add_history_entry(text.as_str()).unwrap_or(false)
                    && let Some(file) = &mut history
                {
                    let _ = file.append(&text);
                }
            }
            EditorTask::Read(prompt) => {
                let input = match editor.readline(&prompt) {
                    Ok(line) => Typed::Line(line),
                    Err(ReadlineError::Interrupted) => Typed::Interrupted,
                    Err(ReadlineError::Eof) => Typed::Eof,
                    Err(e) => Typed::Failed(e.to_string()),
                };
                if inputs.send(input).is_err() {
                    return;
                }
                wake();
            }
        }
    }
}

/// Calls the waker when dropped.
struct WakeOnExit<'a>(&'a Waker);

impl Drop for WakeOnExit<'_> {
    fn drop(&mut self) {
        (self.0)();
    }
}
