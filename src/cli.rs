//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::error::EXIT_CODES_HELP;
use crate::target::TARGET_HELP;
use crate::vm::StartOptions;

/// qmpsh: the QEMU monitor shell. Type HMP-style commands at a VM's QMP
/// socket; see replies and events as they happen; run the same lines as a
/// script from stdin or -c. Start, stop and kill VMs.
#[derive(Debug, Parser)]
#[command(name = "qmpsh", version, after_help = after_help(), args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The QMP monitor: a socket path, unix:PATH, tcp:HOST:PORT, HOST:PORT,
    /// libvirt:DOMAIN, or the name of a VM started by `qmpsh vm start`
    pub target: Option<String>,

    /// A shell on the guest agent (qemu-ga) instead of QMP: a VM started by
    /// `qmpsh vm start` (its ga.sock), or the agent channel's socket path
    #[arg(long, value_name = "NAME|SOCKET", conflicts_with = "target")]
    pub agent: Option<String>,

    /// Print the QMP JSON each line becomes, without connecting
    #[arg(long)]
    pub dry_run: bool,

    /// The libvirt URI for a libvirt:DOMAIN target (qemu:///system,
    /// qemu+ssh://host/system, ...); default $LIBVIRT_DEFAULT_URI, else
    /// libvirt's own, as virsh picks it
    #[arg(long, short = 'C', value_name = "URI")]
    pub connect: Option<String>,

    /// With --dry-run: type arguments by this schema, saved from your QEMU
    /// with `qmpsh SOCK -c query-qmp-schema > FILE` (default: the recorded
    /// QEMU 7.2 schema)
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,

    #[command(flatten)]
    pub shell: ShellOptions,
}

// How the shell reads lines and shows what comes back (a plain comment, as
// on StartOptions).
#[derive(Debug, Clone, Args)]
pub struct ShellOptions {
    /// Run this line, then exit (repeatable; runs in order)
    #[arg(short = 'c', long = "command", value_name = "CMD")]
    pub commands: Vec<String>,

    /// Every line is an HMP command
    #[arg(short = 'H', long)]
    pub hmp: bool,

    /// Pretty-print JSON replies (the default on a terminal)
    #[arg(short = 'p', long)]
    pub pretty: bool,

    /// Echo each QMP message sent, on stderr
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Append all traffic to FILE as JSON Lines, with timestamps
    #[arg(short = 'l', long = "log", value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Skip the greeting and negotiation (for qemu-ga sockets)
    #[arg(short = 'N', long = "no-negotiate")]
    pub no_negotiate: bool,

    /// Machine output: every message received, one compact JSON per line
    #[arg(long)]
    pub json: bool,

    /// Colour output: auto honours NO_COLOR, TERM=dumb and whether the stream is a terminal
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    /// Seconds to wait for the greeting (default 5) and, when given, for each reply
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub timeout: Option<f64>,

    /// In a script or -c, keep up to N commands in flight (default 32)
    /// instead of waiting for each reply; replies still print in order
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "32",
          value_parser = clap::value_parser!(u32).range(1..=4096), require_equals = true)]
    pub pipeline: Option<u32>,

    /// In a script, go on after a failed command or a line that does not
    /// parse (and exit 2 at the end if a line did not parse, else 1)
    #[arg(long)]
    pub keep_going: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a throwaway VM, open the shell on it, and remove it when the
    /// shell ends (also on Ctrl-C, SIGTERM or SIGHUP)
    Launch(Deferred<LaunchOptions>),
    /// Managed VMs: state lives in $QMPSH_STATE_DIR, else
    /// $XDG_RUNTIME_DIR/qmpsh, else /tmp/qmpsh-$UID
    #[command(subcommand)]
    Vm(Deferred<VmCommand>),
    /// Print a completion script for SHELL: `qmpsh completions bash >
    /// ~/.local/share/bash-completion/completions/qmpsh`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print qmpsh's man page (roff): `qmpsh manpage > ~/.local/share/man/man1/qmpsh.1`
    Manpage,
}

// What `launch` takes: how to start the VM, then the shell's options (a
// plain comment, as on StartOptions).
#[derive(Debug, Args)]
pub struct LaunchOptions {
    #[command(flatten)]
    pub start: StartOptions,
    #[command(flatten)]
    pub shell: ShellOptions,
}

/// A subcommand whose arguments clap learns only when the command line
/// names it: a one-shot `qmpsh SOCK -c ...` does not pay for building the
/// `vm` and `launch` parsers (a fifth of its instructions).
#[derive(Debug)]
pub struct Deferred<T>(pub T);

impl<T: FromArgMatches> FromArgMatches for Deferred<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(matches).map(Deferred)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }
}

impl<T: Subcommand> Subcommand for Deferred<T> {
    fn augment_subcommands(command: clap::Command) -> clap::Command {
        command.defer(T::augment_subcommands)
    }

    fn augment_subcommands_for_update(command: clap::Command) -> clap::Command {
        command.defer(T::augment_subcommands_for_update)
    }

    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

impl<T: Args> Args for Deferred<T> {
    fn augment_args(command: clap::Command) -> clap::Command {
        command.defer(T::augment_args)
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        command.defer(T::augment_args_for_update)
    }
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Start QEMU in the background; returns once its QMP socket answers
    Start {
        /// Letters, digits, '-', '_' and '.'
        name: String,
        #[command(flatten)]
        options: StartOptions,
    },
    /// The guest agent's guest-shutdown if it answers, else the power
    /// button (pressed again every 2 s while the guest boots); after the
    /// timeout `quit`, then SIGKILL. With --connect: libvirt's shutdown,
    /// wait, then destroy
    Stop {
        name: String,
        /// Seconds to wait for the guest to power off
        #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_seconds)]
        timeout: f64,
        /// Kill at once: no agent, no button, no wait (exit 0)
        #[arg(long)]
        kill: bool,
        #[command(flatten)]
        libvirt: LibvirtOption,
    },
    /// SIGKILL the VM's QEMU, without asking the guest (with --connect:
    /// libvirt's destroy)
    Kill {
        name: String,
        #[command(flatten)]
        libvirt: LibvirtOption,
    },
    /// Every managed VM: name, pid, state, uptime, socket (with --connect:
    /// libvirt's domains: name, id, state)
    List {
        /// One JSON object per VM, in a JSON array
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        libvirt: LibvirtOption,
    },
    /// One VM's name, pid, state, uptime and socket
    Status {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        libvirt: LibvirtOption,
    },
    /// Kill the VM if it runs, and remove its folder
    Delete { name: String },
}

/// `--connect URI`: the VM is a libvirt domain, at this libvirt.
#[derive(Debug, Clone, Args)]
pub struct LibvirtOption {
    /// Act on libvirt's domains at this URI (qemu:///system,
    /// qemu+ssh://host/system, ...) instead of qmpsh's own VMs
    #[arg(long, short = 'C', value_name = "URI")]
    pub connect: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

fn after_help() -> String {
    format!("{TARGET_HELP}\n\n{EXIT_CODES_HELP}")
}

pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(s),
        _ => Err(format!("`{text}` is not a number of seconds above zero")),
    }
}
