//! `run`: from parsed command-line options to what they ask for. The
//! options become plain values here (see `cli`), the terminal is asked
//! once, and everything shown goes through `output`.

use std::io::{self, Read, Write};
use std::path::Path;

mod manual;

use crate::bounds;
use crate::cli::{Cli, Command, Deferred, LaunchArgs};
use crate::error::Error;
use crate::language::bind::{self, Action, DotCommand, Offline};
use crate::language::line::{Flow, Source};
use crate::language::schema::Schema;
use crate::language::version::{self, Version};
use crate::shell::attach::{self, Config};
use crate::shell::fleet::{self, Fleet, Named};
use crate::shell::launch;
use crate::shell::script;
use crate::target::Target;
use crate::ui::output::{self, Printer, Style};
use crate::ui::render::{self, Palette};
use crate::ui::terminal::Facts;
use crate::visible;
use crate::vm;

/// Runs qmpsh as the command line asks.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Some(Command::Vm(Deferred(args))) => {
            let (command, libvirt) = args.command();
            // The VM helpers' own lines are plain; a stop's steps and the
            // events meanwhile go through a printer, as in the shell.
            let mut progress = Printer::new(Style::plain(), None)?;
            let result = vm::run(command, libvirt.as_deref(), &mut output::stdout(), &mut progress);
            progress.flush();
            result
        }
        Some(Command::Launch(Deferred(LaunchArgs { start, session }))) => {
            launch::launch(start.options(), session.config(Facts::now()))
        }
        Some(Command::Completions { shell }) => {
            // The script asks qmpsh itself at each Tab (`COMPLETE=SHELL
            // qmpsh -- WORDS`, answered in `main`), which completes VM names
            // and domains as they are then. Into memory first: the writers
            // here and in clap_complete do not expect a closed pipe.
            let mut script = Vec::new();
            let registration: &dyn clap_complete::env::EnvCompleter = match shell {
                clap_complete::Shell::Bash => &clap_complete::env::Bash,
                clap_complete::Shell::Zsh => &clap_complete::env::Zsh,
                clap_complete::Shell::Fish => &clap_complete::env::Fish,
                clap_complete::Shell::Elvish => &clap_complete::env::Elvish,
                clap_complete::Shell::PowerShell => &clap_complete::env::Powershell,
                _ => return Err(Error::Usage(format!("no completion for {shell}"))),
            };
            registration
                .write_registration("COMPLETE", "qmpsh", "qmpsh", "qmpsh", &mut script)
                .map_err(Error::output)?;
            output::stdout().write_all(&script).map_err(Error::output)
        }
        Some(Command::Manpage { dir: None }) => {
            let page = manual::main_page().map_err(Error::output)?;
            output::stdout().write_all(&page.roff).map_err(Error::output)
        }
        Some(Command::Manpage { dir: Some(dir) }) => {
            let written = manual::write_all(&dir)
                .map_err(|e| Error::Io(format!("cannot write the man pages into {}: {e}", dir.display())))?;
            writeln!(output::stdout(), "{} pages in {}: {}", written.len(), dir.display(), written.join(" "))
                .map_err(Error::output)
        }
        None if cli.dry_run => {
            if !cli.targets.is_empty() || cli.all {
                return Err(Error::Usage("--dry-run does not connect: drop TARGET".into()));
            }
            let saved = cli.schema.as_deref().map(read_schema).transpose()?;
            let offline = offline(cli.qemu.as_deref(), saved.as_ref())?;
            let config = cli.session.config(Facts::now());
            if config.style.verbose {
                let by = match &cli.schema {
                    Some(file) => format!("the schema in {}", file.display()),
                    None => format!("the recorded {}", offline.recorded.name()),
                };
                let versions = match offline.qemu {
                    Some(version) => format!("table commands and arguments as QEMU {} has them", version.short()),
                    None => "table commands and arguments unchecked for versions (add --qemu VERSION)".into(),
                };
                let hmp = offline.recorded.name();
                let _ =
                    writeln!(output::stderr(), "qmpsh: --dry-run: typing by {by}; HMP's commands of {hmp}; {versions}");
            }
            dry_run(script::input(&config.commands), &config, &offline)
        }
        None if cli.schema.is_some() => {
            Err(Error::Usage("--schema is for --dry-run; connected, qmpsh asks QEMU for its own".into()))
        }
        None if cli.qemu.is_some() => {
            Err(Error::Usage("--qemu VERSION is for --dry-run; connected, qmpsh asks QEMU its version".into()))
        }
        None if cli.agent.is_some() => {
            let agent = cli.agent.unwrap_or_default();
            attach::agent(&attach::agent_target(&agent)?, &agent, &cli.session.config(Facts::now()))
        }
        None => {
            command_after_options(&cli.targets)?;
            let named = Named { words: &cli.targets, all: cli.all, uris: &cli.connect };
            let config = cli.session.config(Facts::now());
            if named.several() || cli.table {
                let fleet = Fleet { named, parallel: cli.parallel as usize, table: cli.table };
                return fleet::run(&fleet, &config);
            }
            let Some(target) = cli.targets.first() else {
                return Err(Error::Usage("no TARGET: name a QMP socket path, HOST:PORT or VM (see --help)".into()));
            };
            let target = match (attach::resolve(target)?, cli.connect.first()) {
                (Target::Libvirt { domain, .. }, uri) => Target::Libvirt { domain, uri: uri.cloned() },
                (_, Some(uri)) => {
                    return Err(Error::Usage(format!(
                        "--connect {uri} is a libvirt URI: name the VM as libvirt:DOMAIN"
                    )));
                }
                (target, None) => target,
            };
            attach::monitor(&target, &config)
        }
    }
}

/// `qmpsh --json vm list` names two targets, `vm` and `list`: an option
/// before a command's name makes the words TARGETs. When the first names
/// one of qmpsh's commands and no VM or socket here, the command was
/// meant: said at once, with the order that runs it.
fn command_after_options(targets: &[String]) -> Result<(), Error> {
    let Some(word) = targets.first() else { return Ok(()) };
    if !<Command as clap::Subcommand>::has_subcommand(word) {
        return Ok(());
    }
    // Found, or refused for its own reason (a VM folder that fails its
    // checks): the word is what it names.
    let Err(Error::Connection(_)) = attach::resolve(word) else { return Ok(()) };
    Err(Error::Usage(format!(
        "no VM or socket is called {word}: for qmpsh's command, name it first and give its options after it \
         (qmpsh {} OPTIONS)",
        visible::line(&targets.join(" "))
    )))
}

/// What `--dry-run` translates for: `--qemu VERSION` (a recorded QEMU),
/// else the newest recorded. `--schema FILE` stands in for the schema,
/// and then `--qemu` may name any version (its HMP commands are the
/// nearest recorded QEMU's); with a file and no `--qemu`, the version is
/// unknown.
fn offline<'s>(qemu: Option<&str>, saved: Option<&'s Schema>) -> Result<Offline<'s>, Error> {
    let Some(text) = qemu else {
        let recorded = version::newest();
        return Ok(Offline { recorded, schema: saved, qemu: saved.is_none().then_some(recorded.version) });
    };
    match (version::find(text), Version::parse(text)) {
        (Ok(recorded), _) => Ok(Offline { recorded, schema: saved, qemu: Some(recorded.version) }),
        (Err(_), Some(version)) if saved.is_some() => {
            Ok(Offline { recorded: version::nearest(version), schema: saved, qemu: Some(version) })
        }
        (Err(why), _) => Err(Error::Usage(format!("--qemu: {why}"))),
    }
}

/// `--dry-run`: each command's QMP message, one compact JSON per line,
/// exactly as a connected run would send it: a line that needs the schema
/// is bound with `offline`'s schema, others without, as when connected.
fn dry_run(input: Source, options: &Config, offline: &Offline) -> Result<(), Error> {
    let out = io::BufWriter::new(output::stdout().lock());
    let mut dry = DryRun { out, cpu: None, hmp: options.hmp, offline, stderr: options.style.stderr };
    script::run(&mut dry, input, options.keep_going)
}

/// `--dry-run`'s lines: translated, each message written to `out`.
struct DryRun<'a, 's, W> {
    out: W,
    /// `.cpu N`.
    cpu: Option<i64>,
    hmp: bool,
    offline: &'a Offline<'s>,
    stderr: Palette,
}

impl<W: Write> script::Runner for DryRun<'_, '_, W> {
    fn hmp(&self) -> bool {
        self.hmp
    }

    fn run_line(&mut self, text: &str, line_no: usize) -> Result<Flow, Error> {
        match bind::translate(text, Some(line_no), self.hmp, self.cpu, self.offline)? {
            Action::Send(request) => {
                serde_json::to_writer(&mut self.out, &request.message).map_err(|e| Error::output(e.into()))?;
                self.out.write_all(b"\n").map_err(Error::output)?;
            }
            Action::Dot(DotCommand::Cpu(index)) => self.cpu = Some(index),
            Action::Dot(DotCommand::Exit) => return Ok(Flow::Exit),
            _ => {}
        }
        Ok(Flow::Continue)
    }

    fn report(&mut self, problem: &str) {
        let _ = render::error_text(&mut output::stderr().lock(), problem, &self.stderr);
    }

    fn end(&mut self, result: Result<(), Error>) -> Result<(), Error> {
        result?;
        self.out.flush().map_err(Error::output)
    }
}

/// `--schema FILE`: a schema saved with `qmpsh SOCK -c query-qmp-schema`.
/// It is read up to [`bounds::MAX_SCHEMA_FILE`]: `--schema /dev/zero`
/// is refused, not read until memory runs out. A file that cannot be read
/// is a local failure (exit 1); one that is read but is no schema is a
/// usage error (exit 2).
fn read_schema(path: &Path) -> Result<Schema, Error> {
    let why = |why: String| format!("cannot read the schema file {}: {why}", path.display());
    let unreadable = |e: io::Error| Error::Io(why(e.to_string()));
    let cannot = |reason: String| Error::Usage(why(reason));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(bounds::MAX_SCHEMA_FILE as u64 + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    let text = String::from_utf8(bytes).map_err(|_| cannot("stream did not contain valid UTF-8".into()))?;
    if text.len() > bounds::MAX_SCHEMA_FILE {
        return Err(cannot(format!(
            "it is over {} MiB, and a saved QEMU schema is about 200 KB",
            bounds::MAX_SCHEMA_FILE >> 20
        )));
    }
    if bounds::too_many_values(text.as_bytes()) {
        return Err(cannot(bounds::values_refused("it holds", bounds::MAX_VALUES)));
    }
    Schema::from_saved(&text).map_err(|e| {
        Error::Usage(format!(
            "{} is not a saved QMP schema ({e}); save one with `qmpsh SOCK -c query-qmp-schema > FILE`",
            path.display()
        ))
    })
}
