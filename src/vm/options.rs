//! What `qmpsh vm` is asked to do, and what a VM is started with: plain
//! values, which `cli` makes from the command line once. Nothing here
//! knows how they were typed.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// One `qmpsh vm ...` command.
#[derive(Debug)]
pub enum VmCommand {
    Start {
        name: String,
        options: StartOptions,
    },
    /// The graceful sequence (see `stop`), or with `kill` SIGKILL at once.
    Stop {
        name: String,
        timeout: Duration,
        kill: bool,
    },
    Kill {
        name: String,
    },
    List {
        json: bool,
    },
    /// qmpsh's own VMs and the domains of every libvirt at `uris`, with
    /// the host of each.
    ListHosts {
        json: bool,
        uris: Vec<String>,
    },
    Status {
        name: String,
        json: bool,
    },
    Delete {
        name: String,
    },
    /// A file into or out of a guest (see `copy`).
    Cp {
        source: OsString,
        destination: OsString,
    },
    /// A program run in the guest by its agent; `name` may be the agent
    /// channel's socket path.
    Exec {
        name: String,
        request: crate::qemu::guest::Request,
    },
    /// Until the guest can be reached as `until` says.
    Wait {
        name: String,
        until: Until,
        timeout: Duration,
    },
}

/// What `vm wait` waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Until {
    /// The guest agent answers.
    Agent,
    /// The `--ssh-port` forward reaches an sshd that sends its banner.
    Ssh,
    /// This QMP event arrives on the VM's control socket.
    Event(String),
}

/// How a VM starts (`vm start` and `launch`).
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Guest memory in MB.
    pub memory: u32,
    pub cpus: u32,
    /// Disk images, attached as virtio.
    pub disks: Vec<PathBuf>,
    /// The size of each disk that does not exist yet, in bytes.
    pub disk_size: Option<u64>,
    pub cdrom: Option<PathBuf>,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    /// The kernel command line for `kernel`.
    pub append: Option<String>,
    pub accel: Accel,
    pub net: Option<Net>,
    /// The host port forwarded to the guest's port 22.
    pub ssh_port: Option<u16>,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// `--no-agent`: no guest agent channel.
    pub no_agent: bool,
    /// More QEMU arguments, as given.
    pub extra: Vec<OsString>,
}

impl StartOptions {
    /// Whether the VM gets an agent channel: unless `--no-agent`, or a
    /// machine without PCI (`-machine none`), which has no bus for it.
    pub fn wants_agent(&self) -> bool {
        let mut extra = self.extra.iter().map(|a| a.to_string_lossy());
        let mut no_pci = false;
        while let Some(arg) = extra.next() {
            if arg == "-machine" || arg == "-M" {
                no_pci |=
                    extra.next().is_some_and(|m| m == "none" || m.starts_with("none,") || m.contains("type=none"));
            }
        }
        !self.no_agent && !no_pci
    }
}

/// The accelerator asked for: `Auto` picks kvm only when /dev/kvm opens
/// and this is not itself a virtual machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

/// What network card a VM gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// QEMU's user network (slirp): no root, no setup on the host.
    User,
}
