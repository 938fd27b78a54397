//! The command line, as clap sees it, and the plain values the rest of
//! qmpsh takes from it: clap's types stop here and in `app`, which decides
//! what depends on the terminal.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use clap_complete::engine::ArgValueCompleter;

use crate::error::EXIT_CODES_HELP;
use crate::language::units::{STOP_TIMEOUT, parse_seconds, parse_size};
use crate::qemu::guest::Request;
use crate::shell::attach::Config;
use crate::target::TARGET_HELP;
use crate::ui::output::Style;
use crate::ui::render::Palette;
use crate::ui::terminal::Facts;
use crate::vm::{Accel, Net, StartOptions, Until, VmCommand};

mod complete;

/// The QEMU monitor shell
///
/// Type HMP-style commands at a VM's QMP socket; see replies and events as
/// they happen; run the same lines as a script from stdin or -c, on one VM
/// or many. Start, stop and kill VMs.
#[derive(Debug, Parser)]
#[command(name = "qmpsh", version, after_help = after_help(), args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The QMP monitor: a socket path, unix:PATH, tcp:HOST:PORT, HOST:PORT,
    /// libvirt:DOMAIN, or the name of a VM started by `qmpsh vm start`.
    /// Several (or libvirt:PATTERN, a shell glob over running domains):
    /// the script or -c runs on each at once, its lines prefixed
    #[arg(value_name = "TARGET", add = ArgValueCompleter::new(complete::targets))]
    pub targets: Vec<String>,

    /// Every running VM started by `qmpsh vm start`, as targets
    #[arg(long)]
    pub all: bool,

    /// With several targets: run on up to N at once
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub parallel: u32,

    /// With several targets: a table, one row per target and one column
    /// per command, of each reply in short (a status, a version, ok)
    #[arg(long, conflicts_with = "json")]
    pub table: bool,

    /// A shell on the guest agent (qemu-ga) instead of QMP: a VM started by
    /// `qmpsh vm start` (its ga.in), or the agent channel's socket path
    #[arg(long, value_name = "NAME|SOCKET", conflicts_with_all = ["targets", "all"],
          add = ArgValueCompleter::new(complete::targets))]
    pub agent: Option<String>,

    /// Print the QMP JSON each line becomes, without connecting
    #[arg(long)]
    pub dry_run: bool,

    /// The libvirt URI for libvirt:DOMAIN targets (qemu:///system,
    /// qemu+ssh://host/system, ...); default $LIBVIRT_DEFAULT_URI, else
    /// libvirt's own, as virsh picks it. Repeat it for several hosts: each
    /// domain is then named HOST/DOMAIN
    #[arg(long, short = 'C', value_name = "URI")]
    pub connect: Vec<String>,

    /// With --dry-run: type arguments by this schema, saved from your QEMU
    /// with `qmpsh SOCK -c query-qmp-schema > FILE` (default: the recorded
    /// QEMU's, see --qemu)
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,

    #[arg(long, value_name = "VERSION", help = qemu_help())]
    pub qemu: Option<String>,

    #[command(flatten)]
    pub session: SessionArgs,
}

/// `--qemu`'s help, which lists the recorded QEMUs.
fn qemu_help() -> String {
    format!(
        "With --dry-run: translate for this QEMU version (recorded: {}; default: the newest): its schema, its HMP \
         commands, and the table commands and arguments it has. With --schema FILE, any version may be named; \
         without --qemu, versions are then not checked",
        crate::language::version::releases()
    )
}

// How the shell reads lines and shows what comes back (a plain comment, as
// on StartArgs).
#[derive(Debug, Clone, Args)]
pub struct SessionArgs {
    /// Run this line, then exit (repeatable; runs in order)
    #[arg(short = 'c', long = "command", value_name = "CMD")]
    pub commands: Vec<String>,

    /// Every line is an HMP command
    #[arg(short = 'H', long)]
    pub hmp: bool,

    /// Pretty-print JSON replies (the default on a terminal)
    #[arg(short = 'p', long)]
    pub pretty: bool,

    /// Echo each QMP message sent, on stderr, secrets masked as "***"
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Append all traffic to FILE as JSON Lines, with timestamps, secrets
    /// masked as "***"; FILE must be a regular file of yours (created 0600)
    #[arg(short = 'l', long = "log", value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Show secrets (passwords, secret objects' data, cookies) as they are
    /// in -v's echo and the -l log, instead of "***"
    #[arg(long)]
    pub show_secrets: bool,

    /// Skip the greeting and negotiation (for qemu-ga sockets)
    #[arg(short = 'N', long = "no-negotiate")]
    pub no_negotiate: bool,

    /// Machine output: every message received, one compact JSON per line
    #[arg(long)]
    pub json: bool,

    /// Colour output: auto honours NO_COLOR, TERM=dumb and whether the stream is a terminal
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    /// Seconds to wait for the greeting, or libvirt's answer (default 5), and, when given, for each reply
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
    Launch(Deferred<LaunchArgs>),
    /// Managed VMs: state lives in $QMPSH_STATE_DIR, else
    /// $XDG_RUNTIME_DIR/qmpsh, else /tmp/qmpsh-$UID
    #[command(subcommand)]
    Vm(Deferred<VmArgs>),
    /// Print a completion script for SHELL: `qmpsh completions bash >
    /// ~/.local/share/bash-completion/completions/qmpsh`. At each Tab it
    /// asks qmpsh, which completes subcommands, flags and their values, the
    /// names of qmpsh's VMs and, after libvirt:, libvirt's domains
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print qmpsh's man page (roff): `qmpsh manpage > ~/.local/share/man/man1/qmpsh.1`;
    /// with --dir, write every page there: qmpsh.1, one per subcommand
    /// (qmpsh-vm-start.1, ...) and qmpsh-language.7
    Manpage {
        /// Write all the pages into this folder (made if need be)
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

// What `launch` takes: how to start the VM, then the shell's options (a
// plain comment, as on StartArgs).
#[derive(Debug, Args)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub start: StartArgs,
    #[command(flatten)]
    pub session: SessionArgs,
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
pub enum VmArgs {
    /// Start QEMU in the background; returns once its QMP socket answers
    Start {
        /// Letters, digits, '-', '_' and '.'
        name: String,
        #[command(flatten)]
        options: StartArgs,
    },
    /// The guest agent's guest-shutdown if it answers, else the power
    /// button (pressed again every 2 s while the guest boots); after the
    /// timeout `quit`, then SIGKILL. With --connect: libvirt's shutdown
    /// (asked again every 2 s), then after the timeout libvirt's destroy
    Stop {
        #[arg(add = ArgValueCompleter::new(complete::vm_names))]
        name: String,
        /// Seconds to wait for the guest to power off
        #[arg(long, value_name = "SECS", default_value_t = STOP_TIMEOUT.as_secs_f64(), value_parser = parse_seconds)]
        timeout: f64,
        /// Kill at once: no agent, no button, no wait (exit 0)
        #[arg(long)]
        kill: bool,
        #[command(flatten)]
        libvirt: LibvirtArg,
    },
    /// SIGKILL the VM's QEMU, without asking the guest (with --connect:
    /// libvirt's destroy)
    Kill {
        #[arg(add = ArgValueCompleter::new(complete::vm_names))]
        name: String,
        #[command(flatten)]
        libvirt: LibvirtArg,
    },
    /// Every managed VM: name, pid, state, uptime, socket (with --connect:
    /// libvirt's domains: name, id, state; with several --connect, qmpsh's
    /// own VMs and each host's domains, by host)
    List {
        /// One JSON object per VM, in a JSON array
        #[arg(long)]
        json: bool,
        /// libvirt's domains at this URI instead of qmpsh's own VMs;
        /// repeat it for several hosts
        #[arg(long, short = 'C', value_name = "URI")]
        connect: Vec<String>,
    },
    /// One VM's name, pid, state, uptime and socket
    Status {
        #[arg(add = ArgValueCompleter::new(complete::vm_names))]
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        libvirt: LibvirtArg,
    },
    /// Kill the VM if it runs, and remove its folder
    Delete {
        #[arg(add = ArgValueCompleter::new(complete::vm_names))]
        name: String,
    },
    /// Copy a file into or out of a VM through its guest agent: one side
    /// is NAME:PATH (PATH in the VM NAME), the other a host path; a folder
    /// as DST takes the file's name
    Cp {
        /// The file to copy: NAME:PATH or a host path
        #[arg(value_name = "SRC")]
        source: OsString,
        /// Where it goes: NAME:PATH or a host path, a file or a folder
        #[arg(value_name = "DST")]
        destination: OsString,
        #[command(flatten)]
        libvirt: LibvirtArg,
    },
    /// Run a program in the guest through its agent; its stdout, stderr
    /// and exit code become qmpsh's, and qmpsh's stdin (not a terminal)
    /// its input. The output comes when it ends
    #[command(trailing_var_arg = true)]
    Exec {
        /// A VM's name, or (with a '/') an agent channel's socket path
        #[arg(value_name = "NAME|SOCKET", add = ArgValueCompleter::new(complete::targets))]
        name: String,
        /// Seconds to wait for it to end (it then keeps running; exit 4)
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        timeout: Option<f64>,
        /// K=V for its environment (repeatable); with any, its whole environment
        #[arg(long, value_name = "K=V", value_parser = parse_env)]
        env: Vec<String>,
        /// Run it in this guest folder (through the guest's /bin/sh)
        #[arg(long, value_name = "DIR")]
        cwd: Option<String>,
        /// Do not read stdin (as ssh -n): for a stdin that never ends
        #[arg(short = 'n', long)]
        no_stdin: bool,
        #[command(flatten)]
        libvirt: LibvirtArg,
        /// The program and its arguments
        #[arg(required = true, allow_hyphen_values = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Wait until the guest agent answers, the --ssh-port forward reaches
    /// sshd's banner, or a QMP event arrives; exit 4 after the timeout
    Wait {
        #[arg(value_name = "NAME|SOCKET", add = ArgValueCompleter::new(complete::targets))]
        name: String,
        #[command(flatten)]
        until: UntilArg,
        /// Seconds to wait
        #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = parse_seconds)]
        timeout: f64,
        #[command(flatten)]
        libvirt: LibvirtArg,
    },
}

/// What `vm wait` waits for: exactly one.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct UntilArg {
    /// The guest agent answers guest-sync
    #[arg(long)]
    agent: bool,
    /// 127.0.0.1:--ssh-port accepts and the guest's sshd sends its banner
    #[arg(long)]
    ssh: bool,
    /// This QMP event arrives on the VM's control socket
    #[arg(long, value_name = "NAME")]
    event: Option<String>,
}

/// `--env`: `K=V` with a non-empty K.
fn parse_env(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(text.to_string()),
        _ => Err(format!("`{text}` is not K=V")),
    }
}

/// `--connect URI`: the VM is a libvirt domain, at this libvirt.
#[derive(Debug, Clone, Args)]
pub struct LibvirtArg {
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

// The options of `vm start` and `launch` (a plain comment: clap would show
// a doc comment as the help of `launch`, whose arguments it learns last).
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Guest memory in MB
    #[arg(long, value_name = "MB", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub memory: u32,
    /// Virtual CPUs
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub cpus: u32,
    /// A disk image (repeatable), attached as virtio
    #[arg(long = "disk", value_name = "IMG")]
    pub disks: Vec<PathBuf>,
    /// Create each --disk that does not exist yet, this big (4G, 512M):
    /// a sparse raw file for a .raw name, else qcow2 with qemu-img
    #[arg(long, value_name = "SIZE", value_parser = parse_disk_size, requires = "disks")]
    pub disk_size: Option<u64>,
    /// A CD-ROM image
    #[arg(long, value_name = "ISO")]
    pub cdrom: Option<PathBuf>,
    /// A kernel to boot directly
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// An initrd for --kernel
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// The kernel command line for --kernel
    #[arg(long, value_name = "TEXT")]
    pub append: Option<String>,
    /// Accelerator: auto picks kvm only when /dev/kvm opens and this is not
    /// itself a virtual machine (nested KVM often cannot boot a kernel)
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
    /// A network card (virtio-net) on QEMU's user network: the guest
    /// reaches out through the host; nothing reaches in but --ssh-port
    #[arg(long, value_enum, value_name = "MODE")]
    pub net: Option<NetArg>,
    /// Forward 127.0.0.1:PORT on the host to the guest's port 22 (implies
    /// --net user); `vm status` shows it
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub ssh_port: Option<u16>,
    /// The QEMU binary
    #[arg(long, value_name = "BIN", default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
    /// No guest agent channel (by default a virtio-serial port
    /// org.qemu.guest_agent.0 on the FIFOs ga.in and ga.out in the VM's
    /// folder)
    #[arg(long)]
    pub no_agent: bool,
    /// More QEMU arguments, after --
    #[arg(last = true, value_name = "QEMU ARGS")]
    pub extra: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

/// `--net`: what network card a VM gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetArg {
    /// QEMU's user network (slirp): no root, no setup on the host.
    User,
}

/// `--disk-size`: a size above zero, such as `4G` or `512M`.
fn parse_disk_size(text: &str) -> Result<u64, String> {
    parse_size(text, 1)
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| format!("`{text}` is not a size: a number with K, M, G or T, such as 4G"))
}

impl VmArgs {
    /// The command, and the libvirt URI of `--connect` when given.
    pub fn command(self) -> (VmCommand, Option<String>) {
        match self {
            VmArgs::Start { name, options } => (VmCommand::Start { name, options: options.options() }, None),
            VmArgs::Stop { name, timeout, kill, libvirt } => {
                (VmCommand::Stop { name, timeout: Duration::from_secs_f64(timeout), kill }, libvirt.connect)
            }
            VmArgs::Kill { name, libvirt } => (VmCommand::Kill { name }, libvirt.connect),
            VmArgs::List { json, connect } if connect.len() > 1 => (VmCommand::ListHosts { json, uris: connect }, None),
            VmArgs::List { json, connect } => (VmCommand::List { json }, connect.into_iter().next()),
            VmArgs::Status { name, json, libvirt } => (VmCommand::Status { name, json }, libvirt.connect),
            VmArgs::Delete { name } => (VmCommand::Delete { name }, None),
            VmArgs::Exec { name, timeout, env, cwd, no_stdin, command, libvirt } => {
                let timeout = timeout.map(Duration::from_secs_f64);
                // An empty input stands for "none to read" until vm reads stdin.
                let input = no_stdin.then(Vec::new);
                let request = Request { argv: command, env, cwd, input, timeout };
                (VmCommand::Exec { name, request }, libvirt.connect)
            }
            VmArgs::Wait { name, until, timeout, libvirt } => {
                let until = match until.event {
                    Some(event) => Until::Event(event),
                    None if until.ssh => Until::Ssh,
                    None => Until::Agent,
                };
                (VmCommand::Wait { name, until, timeout: Duration::from_secs_f64(timeout) }, libvirt.connect)
            }
            VmArgs::Cp { source, destination, libvirt } => (VmCommand::Cp { source, destination }, libvirt.connect),
        }
    }
}

impl StartArgs {
    /// How the VM starts.
    pub fn options(self) -> StartOptions {
        StartOptions {
            memory: self.memory,
            cpus: self.cpus,
            disks: self.disks,
            disk_size: self.disk_size,
            cdrom: self.cdrom,
            kernel: self.kernel,
            initrd: self.initrd,
            append: self.append,
            accel: match self.accel {
                AccelArg::Auto => Accel::Auto,
                AccelArg::Kvm => Accel::Kvm,
                AccelArg::Tcg => Accel::Tcg,
            },
            net: self.net.map(|NetArg::User| Net::User),
            ssh_port: self.ssh_port,
            qemu: self.qemu,
            no_agent: self.no_agent,
            extra: self.extra,
        }
    }
}

impl SessionArgs {
    /// The shell's options, decided with what `terminal` tells: colour per
    /// stream, pretty JSON on a terminal, the REPL when stdin is one and
    /// no `-c` was given.
    pub fn config(self, terminal: Facts) -> Config {
        let style = Style {
            stdout: palette(self.color, terminal.stdout),
            stderr: palette(self.color, terminal.stderr),
            pretty: self.pretty || terminal.stdout,
            json: self.json,
            verbose: self.verbose,
            events: true,
            show_secrets: self.show_secrets,
            tables: terminal.stdout && !self.pretty && !self.json,
        };
        Config {
            interactive: self.commands.is_empty() && terminal.stdin,
            commands: self.commands,
            hmp: self.hmp,
            style,
            log: self.log,
            negotiate: !self.no_negotiate,
            timeout: self.timeout.map(Duration::from_secs_f64),
            pipeline: self.pipeline.map(|n| n as usize),
            keep_going: self.keep_going,
        }
    }
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
