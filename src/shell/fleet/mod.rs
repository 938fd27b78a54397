//! Several targets at once (`qmpsh web db cache -c 'info status'`,
//! `qmpsh -C URI -C URI2 'libvirt:web-*' < script`): the same script on
//! each, up to `--parallel` at a time, each with its own connection,
//! timeout and failure, so a slow or dead one holds no other back. Every
//! line a target writes carries its name ([`Prefixed`]); at the end a
//! summary on stderr, and the exit status of the worst outcome.

// Without libvirt, nothing is matched by pattern.
#[cfg_attr(not(feature = "libvirt"), allow(dead_code))]
mod glob;
mod libvirt;
mod table;
mod targets;

use std::collections::VecDeque;
use std::io::{self, BufReader, Cursor, Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

pub use targets::Named;
use targets::{Member, Reach};

use crate::bounds;
use crate::error::Error;
use crate::interrupt;
use crate::language::line::{self, Flow, Source};
use crate::qmp::Monitor;
use crate::shell::attach::{self, Config};
use crate::shell::script;
use crate::shell::session::Session;
use crate::ui::output::{self, Answer, Printer};
use crate::ui::prefixed::{Label, Prefixed};
use crate::ui::render;
use crate::ui::tables;
use crate::visible;

/// How the targets are run: `--parallel`, `--table`.
pub struct Fleet<'a> {
    pub named: Named<'a>,
    pub parallel: usize,
    pub table: bool,
}

/// The same lines for every target: `-c`'s, or stdin's, read whole first.
enum Script {
    Commands(Vec<String>),
    Text(std::sync::Arc<[u8]>),
}

impl Script {
    fn read(commands: &[String]) -> Result<Script, Error> {
        if !commands.is_empty() {
            return Ok(Script::Commands(commands.to_vec()));
        }
        let mut text = Vec::new();
        let limit = bounds::MAX_LINE as u64;
        io::stdin().take(limit + 1).read_to_end(&mut text).map_err(|e| Error::Io(format!("cannot read input: {e}")))?;
        if text.len() as u64 > limit {
            return Err(Error::Usage(format!(
                "a script for several targets is read whole before they start; this one is over {} MiB",
                limit >> 20
            )));
        }
        Ok(Script::Text(text.into()))
    }

    fn source(&self) -> Source {
        match self {
            Script::Commands(commands) => Source::Commands(commands.clone()),
            Script::Text(text) => Source::Stream(BufReader::new(Box::new(Cursor::new(text.clone())))),
        }
    }

    /// Each command line's text and number: `--table`'s columns. A dot
    /// command (`.sleep`) has none: only QEMU's replies fill cells.
    fn lines(&self, hmp: bool) -> Result<Vec<(String, usize)>, Error> {
        let mut lines = Vec::new();
        line::for_each_line(self.source(), hmp, |line| {
            let (text, number) = line?;
            let text = text.trim();
            if !text.is_empty() && !text.starts_with(['#', '.']) {
                lines.push((text.to_string(), number));
            }
            Ok(Flow::Continue)
        })?;
        Ok(lines)
    }
}

/// How one target ended.
struct Outcome {
    name: String,
    result: Result<(), Error>,
    answers: Vec<Answer>,
    /// It never connected: Ctrl-C came, or stdout went away, first.
    skipped: bool,
}

/// Runs the script on every target `fleet` names; fails as the worst of
/// them did (see [`worse`]).
pub fn run(fleet: &Fleet, options: &Config) -> Result<(), Error> {
    if options.interactive {
        return Err(Error::Usage(
            "the shell at a prompt talks to one target, and these words may name several (several TARGETs, a \
             pattern, --all or several hosts): name one, or give the lines with -c or pipe a script in (qmpsh web db \
             -c 'info status')"
                .into(),
        ));
    }
    if options.log.is_some() {
        return Err(Error::Usage("-l logs one target's traffic: with several targets, leave it out".into()));
    }
    // From here on the hosts' connections are let go of on every way out.
    let _let_go = libvirt::LetGo;
    let members = targets::members(&fleet.named, options.timeout)?;
    let script = Script::read(&options.commands)?;
    let columns = if fleet.table { script.lines(options.hmp)? } else { Vec::new() };
    // Ctrl-C ends every target's wait, not only the next one's.
    interrupt::install().map_err(|e| Error::Io(format!("cannot watch for Ctrl-C: {e}")))?;
    interrupt::hold();
    let outcomes = run_all(members, fleet, options, &script);
    if fleet.table {
        let rows: Vec<Vec<String>> = outcomes
            .iter()
            .map(|o| {
                std::iter::once(o.name.clone())
                    .chain(columns.iter().map(|(_, n)| table::cell(&o.answers, *n)))
                    .collect()
            })
            .collect();
        let header: Vec<&str> =
            std::iter::once("TARGET").chain(columns.iter().map(|(text, _)| text.as_str())).collect();
        let text = tables::plain(&header, rows, &options.style.stdout);
        let mut out = output::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(Error::output)?;
    }
    // A closed stdout (`| head -1`) ends the run quietly, as for one
    // target: no row for each target it cut short, unless one failed
    // otherwise.
    let cut_short = outcomes.iter().any(|o| matches!(o.result, Err(Error::BrokenPipe)));
    let failed_otherwise = outcomes.iter().any(|o| o.result.as_ref().is_err_and(|e| !matches!(e, Error::BrokenPipe)));
    if !cut_short || failed_otherwise {
        summary(&outcomes, options);
    }
    match outcomes.into_iter().filter_map(|o| o.result.err()).reduce(worse) {
        None => Ok(()),
        Some(Error::BrokenPipe) => Err(Error::BrokenPipe),
        Some(worst) => Err(Error::Outcomes(worst.exit_code())),
    }
}

/// Every member, `fleet.parallel` at a time, in the order named; their
/// outcomes in that order.
fn run_all(members: Vec<Member>, fleet: &Fleet, options: &Config, script: &Script) -> Vec<Outcome> {
    let width = members.iter().map(|m| visible::line(&m.name).chars().count()).max().unwrap_or(0);
    let count = members.len();
    let queue: Mutex<VecDeque<(usize, Member)>> = Mutex::new(members.into_iter().enumerate().collect());
    let done: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::with_capacity(count));
    let stdout_gone = AtomicBool::new(false);
    thread::scope(|scope| {
        for _ in 0..fleet.parallel.min(count) {
            scope.spawn(|| {
                while let Some((index, member)) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
                    // Not started: Ctrl-C came, or stdout went away (which
                    // ends the run quietly, as for one target).
                    let skipped = if stdout_gone.load(Ordering::SeqCst) {
                        Some(Error::BrokenPipe)
                    } else {
                        interrupt::pressed().then_some(Error::Interrupted)
                    };
                    let outcome = if let Some(why) = skipped {
                        Outcome { name: member.name, result: Err(why), answers: Vec::new(), skipped: true }
                    } else {
                        let label = label(&member.name, index, width, options);
                        run_one(member, label, fleet.table, options, script)
                    };
                    if matches!(outcome.result, Err(Error::BrokenPipe)) {
                        stdout_gone.store(true, Ordering::SeqCst);
                    }
                    if let Ok(mut done) = done.lock() {
                        done.push((index, outcome));
                    }
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_default();
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, outcome)| outcome).collect()
}

fn label(name: &str, index: usize, width: usize, options: &Config) -> Label {
    let colour = (options.style.stdout.key.is_some(), options.style.stderr.key.is_some());
    Label::new(name, index, width, colour, options.style.json)
}

/// Connects to one member and runs the script on it; its error, if any,
/// is said among its lines, as a single target's would be at the end.
fn run_one(member: Member, label: Label, table: bool, options: &Config, script: &Script) -> Outcome {
    let mut style = options.style;
    if table {
        style.events = false;
        style.tables = false;
    }
    let mut printer = Printer::prefixed(style, Prefixed::new(label), table);
    let (result, mut printer) = match open(member.reach, options, &mut printer) {
        Err(e) => (Err(e), printer),
        Ok((monitor, agent)) => {
            let mut settings = attach::settings(options, agent);
            // A table wants every column, so a failed command does not end the row.
            settings.keep_going |= table;
            let mut session = Session::new(monitor, printer, settings);
            let result = script::run(&mut session, script.source(), options.keep_going || table);
            (result, session.into_printer())
        }
    };
    if let Err(e) = &result
        && let Some(said) = e.said()
    {
        printer.problem(&said);
    }
    printer.finish();
    Outcome { name: member.name, result, answers: printer.take_answers(), skipped: false }
}

/// The member's monitor, and its guest agent's channel when known.
fn open(
    reach: Reach,
    options: &Config,
    printer: &mut Printer,
) -> Result<(Monitor, Option<crate::target::Target>), Error> {
    match reach {
        Reach::Target(target) => Ok((attach::open(&target, options, printer)?, attach::agent_beside(&target))),
        Reach::Domain(domain) => Ok((libvirt::attach(domain)?, None)),
        Reach::Unreachable(why) => Err(why),
    }
}

/// The order of outcomes, worst first, which the exit status follows:
/// Ctrl-C, then a connection that failed (3), a timeout (4), a line that
/// did not parse (2), a command that failed (1).
fn rank(error: &Error) -> u8 {
    match error {
        Error::Interrupted | Error::Signalled { .. } => 6,
        Error::Connection(_) => 5,
        Error::Timeout(_) | Error::Forced(_) => 4,
        Error::Usage(_) | Error::Parse { .. } | Error::LinesRefused => 3,
        Error::BrokenPipe => 0,
        _ => 2,
    }
}

/// The worse of two outcomes (the first of equals).
fn worse(a: Error, b: Error) -> Error {
    if rank(&b) > rank(&a) { b } else { a }
}

/// The summary on stderr: each target's outcome and exit code.
fn summary(outcomes: &[Outcome], options: &Config) {
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    let palette = &options.style.stderr;
    let width = outcomes.iter().map(|o| visible::line(&o.name).chars().count()).max().unwrap_or(0).max("TARGET".len());
    let count = outcomes.len();
    let targets = if count == 1 { "target" } else { "targets" };
    let mut text = format!(
        "qmpsh: {count} {targets}: {} succeeded, {failed} failed\n{:<width$}  EXIT  OUTCOME\n",
        count - failed,
        "TARGET"
    );
    for o in outcomes {
        let (code, said) = match &o.result {
            Ok(()) => (0, render::painted("ok", palette.ok)),
            Err(e) => {
                let said = if o.skipped { format!("not started: {e}") } else { e.to_string() };
                (e.exit_code(), render::painted(&visible::line(&said), palette.error))
            }
        };
        text.push_str(&format!("{:<width$}  {code:>4}  {said}\n", visible::line(&o.name)));
    }
    let _ = output::stderr().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_status_is_the_worst_outcomes() {
        let worst = |errors: Vec<Error>| errors.into_iter().reduce(worse).map(|e| e.exit_code());
        assert_eq!(worst(vec![Error::CommandFailed, Error::Timeout("t".into())]), Some(4));
        assert_eq!(worst(vec![Error::Timeout("t".into()), Error::Connection("c".into())]), Some(3));
        assert_eq!(worst(vec![Error::CommandFailed, Error::LinesRefused]), Some(2));
        assert_eq!(worst(vec![Error::Connection("c".into()), Error::Interrupted]), Some(130));
        assert_eq!(worst(vec![Error::Exited(7), Error::CommandFailed]), Some(7));
        assert_eq!(worst(vec![]), None);
    }
}
