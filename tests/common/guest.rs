//! A tiny Linux guest for the tests that boot a real QEMU (always TCG): the
//! Debian kernel plus a busybox initramfs whose `/init` either powers off on
//! the ACPI power button or ignores it, the latter also with Debian's real
//! QEMU guest agent.
//!
//! It is built on first use from three Debian packages, fetched with
//! `apt-get download` (nothing gets installed): the kernel package that
//! `linux-image-amd64` depends on (for `boot/vmlinuz-*`, `button.ko`,
//! `evdev.ko` and the virtio modules), `busybox-static` (for `bin/busybox`)
//! and `qemu-guest-agent` (for `usr/sbin/qemu-ga`, which runs with the host's
//! copies of the shared libraries `ldd` lists for it: the host is the same
//! Debian). The result is cached under
//! `<CARGO_MANIFEST_DIR>/target/qmpsh-guest/<key>/`, the key naming the
//! package versions and a hash of the `/init` scripts, so a new kernel or an
//! edited script builds a new entry. A build happens in a scratch directory
//! under an exclusive lock on `target/qmpsh-guest/.lock` (so concurrent test
//! processes build it once) and is renamed into place only when complete.
//!
//! Needs: `apt-cache`/`apt-get` with package lists (when they are missing and
//! we are root, `apt-get update` is run once), `dpkg-deb`, GNU `tar`, `ldd`,
//! and `gzip` (without it the initramfs stays uncompressed; `xz`/`zstd` only if
//! the modules ship compressed), qemu-ga's libraries on the host (installed
//! when missing and we are root), plus access to the Debian mirror.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{in_ci, missing};

/// The kernel command line to boot with.
pub const APPEND: &str = "console=ttyS0 quiet panic=-1";

/// The marker the guest prints on the serial console once the power button
/// device is open.
/// `qmpsh vm start NAME` of this guest booting `initrd` under TCG, and
/// `more` start options: what the tests and the exec bench run.
pub fn vm_start_args(name: &str, initrd: &Path, more: &[&str]) -> Vec<String> {
    let kernel = guest().expect("the guest was built").kernel.display().to_string();
    let mut args: Vec<String> = ["vm", "start", name, "--memory", "128", "--accel", "tcg", "--kernel", &kernel]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--initrd".into(), initrd.display().to_string(), "--append".into(), APPEND.into()]);
    args.extend(more.iter().map(|s| s.to_string()));
    args.extend(["--".into(), "-no-reboot".into()]);
    args
}

pub const READY: &str = "QMPSH-GUEST-READY";

/// The built guest: the paths of its files in the cache.
#[derive(Debug)]
pub struct Guest {
    /// A bootable bzImage (`boot/vmlinuz-*` from the Debian kernel package).
    pub kernel: PathBuf,
    /// An initramfs whose `/init` powers off on the first ACPI power button
    /// event (it opens the button before printing [`READY`]).
    pub listening: PathBuf,
    /// An initramfs whose `/init` prints [`READY`] too, then ignores the
    /// button forever.
    pub ignoring: PathBuf,
    /// Like `ignoring`, but runs Debian's `qemu-ga` on the virtio-serial port
    /// named [`AGENT_PORT`] (`-device virtio-serial -device
    /// virtserialport,chardev=...,name=org.qemu.guest_agent.0`) and prints
    /// [`READY`] once the agent holds the port open. With a virtio-serial
    /// device it waits up to 10 s for the port to show up; without one, or
    /// without the port, it says "no agent" on the console and goes on. `lo` is
    /// up (127.0.0.1), the hostname is [`HOSTNAME`], and `guest-shutdown`
    /// powers the guest off at once (its `/sbin/shutdown` runs `poweroff -f`).
    pub agent: PathBuf,
}

/// The name of the virtio-serial port the `agent` guest's qemu-ga serves.
pub const AGENT_PORT: &str = "org.qemu.guest_agent.0";

/// The `agent` guest's hostname.
pub const HOSTNAME: &str = "qmpsh-guest";

/// The guest, built once and cached under
/// `<CARGO_MANIFEST_DIR>/target/qmpsh-guest/` (keyed by kernel version).
///
/// When it cannot be built, [`super::missing`] decides: the test fails with
/// what is missing and how to get it (in CI with the long story), or skips
/// out loud with `QMPSH_ALLOW_SKIP=1`, and then this is `None`.
pub fn guest() -> Option<&'static Guest> {
    static GUEST: OnceLock<Result<Guest, String>> = OnceLock::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("qmpsh-guest");
    match GUEST.get_or_init(|| obtain(&root)) {
        Ok(guest) => Some(guest),
        Err(why) => {
            let how = if in_ci() { HOW_TO } else { HOW_TO_SHORT };
            missing(&format!("the test guest ({why})"), how);
            None
        }
    }
}

const HOW_TO: &str = "\
The guest is built from Debian packages with apt-get download (nothing is installed). \
It needs a Debian/amd64 system with: package lists (`sudo apt-get update`; run \
automatically when missing and running as root), the `dpkg` (dpkg-deb), `tar` (GNU) and \
`gzip` packages, `xz-utils`/`zstd` only if the kernel modules ship compressed, the shared \
libraries qemu-ga needs (qemu-guest-agent's dependencies: libglib2.0-0, libnuma1, libudev1, \
liburing2; installed automatically when missing and running as root), and access to the Debian \
mirror for linux-image-amd64's kernel package, busybox-static and qemu-guest-agent.";

const HOW_TO_SHORT: &str = "needs Debian with apt package lists (`sudo apt-get update`), dpkg-deb, tar, gzip, \
                            qemu-ga's libraries and the mirror";

/// Bump to rebuild every cached guest after a change in how it is built.
const FORMAT: &str = "qmpsh-guest-2";

/// Loads the modules, finds the "Power Button" input device(s) and opens each
/// on a file descriptor from 3 up, kept open, before READY is printed (a press
/// before the open would be lost). The shell function `on_open`, defined by
/// the variant, runs right after each open with `$fd` set.
const INIT_HEAD: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in evdev button; do
    [ -f /lib/$m.ko ] && insmod /lib/$m.ko
done
fd=3
tries=0
while [ $fd -eq 3 ]; do
    for name in /sys/class/input/event*/device/name; do
        [ -r "$name" ] && [ "$(cat "$name")" = "Power Button" ] || continue
        ev=${name%/device/name}
        ev=/dev/input/${ev##*/}
        [ -c "$ev" ] || continue
        eval "exec $fd<$ev"
        on_open
        fd=$((fd + 1))
    done
    [ $fd -gt 3 ] && break
    tries=$((tries + 1))
    if [ $tries -gt 100 ]; then
        echo "qmpsh-guest: no Power Button input device"
        poweroff -f
    fi
    sleep 0.1
done
"#;

const INIT_LISTENING: &str = r#"# listening: the first event on the button powers the guest off
on_open() {
    eval "(dd bs=24 count=1 of=/dev/null <&$fd 2>/dev/null; poweroff -f) &"
}
"#;

const INIT_IGNORING: &str = r#"# ignoring: the button stays open but nobody ever reads it
on_open() {
    :
}
"#;

/// The `agent` variant's part after the head (its `on_open` is
/// [`INIT_IGNORING`]'s): `@MODULES@` becomes [`AGENT_MODULES`]' names.
const INIT_AGENT: &str = r#"# agent: qemu-ga on the virtio port org.qemu.guest_agent.0
for m in @MODULES@; do
    [ -f /lib/$m.ko ] && insmod /lib/$m.ko
done
ifconfig lo 127.0.0.1 netmask 255.0.0.0 up
hostname qmpsh-guest
find_port() {
    for name in /sys/class/virtio-ports/*/name; do
        [ -r "$name" ] && [ "$(cat "$name")" = org.qemu.guest_agent.0 ] || continue
        port=${name%/name}
        port=/dev/${port##*/}
        [ -c "$port" ] && return 0
    done
    return 1
}
# The host announces the ports shortly after the device is bound; with no
# virtio console device there is nothing to wait for.
set -- /sys/bus/virtio/drivers/virtio_console/virtio*
tries=0
[ -e "$1" ] || tries=100
until find_port; do
    tries=$((tries + 1))
    [ $tries -gt 100 ] && break
    sleep 0.1
done
if find_port; then
    /usr/sbin/qemu-ga -m virtio-serial -p "$port" -t /run -f /run/qemu-ga.pid &
    agent=$!
    tries=0
    until ls -l /proc/$agent/fd 2>/dev/null | grep -q " $port\$"; do
        tries=$((tries + 1))
        if ! kill -0 $agent 2>/dev/null || [ $tries -gt 100 ]; then
            echo "qmpsh-guest: qemu-ga did not open $port"
            break
        fi
        sleep 0.1
    done
else
    echo "qmpsh-guest: no virtio port named org.qemu.guest_agent.0, no agent"
fi
"#;

/// The kernel modules the agent needs, in load order (each after those it
/// depends on), with their folder under `kernel/drivers/`.
const AGENT_MODULES: [(&str, &str); 6] = [
    ("virtio_ring", "virtio"),
    ("virtio", "virtio"),
    ("virtio_pci_legacy_dev", "virtio"),
    ("virtio_pci_modern_dev", "virtio"),
    ("virtio_pci", "virtio"),
    ("virtio_console", "char"),
];

/// qemu-ga's `guest-shutdown` runs `/sbin/shutdown -h -P +0 MESSAGE` (`-H`
/// to halt, `-r` to reboot) and waits for it.
const SHUTDOWN: &str = r#"#!/bin/sh
# qmpsh test guest: what qemu-ga's guest-shutdown runs
case " $* " in
*" -r "*) exec /bin/busybox reboot -f ;;
*" -H "*) exec /bin/busybox halt -f ;;
esac
exec /bin/busybox poweroff -f
"#;

/// For `guest-get-osinfo`.
const OS_RELEASE: &str = r#"PRETTY_NAME="qmpsh test guest"
NAME="qmpsh test guest"
ID=qmpsh-guest
VERSION_ID=1
"#;

const INIT_TAIL: &str = r#"echo QMPSH-GUEST-READY
while :; do sleep 3600; done
"#;

/// `/init`: the head with `on_open` defined first, then `more`, then the tail.
fn init_script(on_open: &str, more: &str) -> String {
    // The functions must be defined before the head's loop calls on_open.
    let (shebang, head) = INIT_HEAD.split_once('\n').unwrap();
    format!("{shebang}\n{on_open}{head}{more}{INIT_TAIL}")
}

fn agent_script() -> String {
    let names: Vec<&str> = AGENT_MODULES.iter().map(|(name, _)| *name).collect();
    init_script(INIT_IGNORING, &INIT_AGENT.replace("@MODULES@", &names.join(" ")))
}

/// The three `/init` scripts, by variant name.
struct Scripts {
    listening: String,
    ignoring: String,
    agent: String,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            listening: init_script(INIT_LISTENING, ""),
            ignoring: init_script(INIT_IGNORING, ""),
            agent: agent_script(),
        }
    }

    /// A hash of everything that shapes a build besides the packages.
    fn hash(&self) -> String {
        format!("{:016x}", fnv1a(&[FORMAT, &self.listening, &self.ignoring, &self.agent, SHUTDOWN, OS_RELEASE]))
    }
}

/// The cached guest, building it first if needed.
fn obtain(root: &Path) -> Result<Guest, String> {
    fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let lock_path = root.join(".lock");
    let lock = File::create(&lock_path).map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;

    let inits = Scripts::new();
    let scripts = inits.hash();

    // Missing package lists (apt-cache knows nothing) or stale ones (the
    // download fails): refresh them once if we may, and try again.
    let mut updated = false;
    loop {
        let attempt = resolve().map_err(|e| (e, true)).and_then(|packages| {
            let dir = root.join(packages.key(&scripts));
            match Guest::at(&dir) {
                Some(guest) => Ok(guest),
                None => build(root, &packages, &dir, &inits),
            }
        });
        match attempt {
            Ok(guest) => return Ok(guest),
            Err((e, true)) if !updated && is_root() => {
                if let Err(u) = apt_get_update() {
                    return reuse(root, &scripts).ok_or(format!("{e}; {u}"));
                }
                updated = true;
            }
            // Without apt (or its lists) an entry built earlier still serves.
            Err((e, _)) => return reuse(root, &scripts).ok_or(e),
        }
    }
}

impl Guest {
    /// The complete cache entry in `dir`, if there is one.
    fn at(dir: &Path) -> Option<Guest> {
        let guest = Guest {
            kernel: dir.join("vmlinuz"),
            listening: dir.join("listening.initrd"),
            ignoring: dir.join("ignoring.initrd"),
            agent: dir.join("agent.initrd"),
        };
        [&guest.kernel, &guest.listening, &guest.ignoring, &guest.agent].iter().all(|p| p.is_file()).then_some(guest)
    }
}

/// Any complete entry built from these scripts (most recent first).
fn reuse(root: &Path, scripts: &str) -> Option<Guest> {
    let mut entries: Vec<_> = fs::read_dir(root)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(scripts))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    entries.sort();
    entries.iter().rev().find_map(|(_, dir)| Guest::at(dir))
}

/// The package versions a build would use.
struct Packages {
    kernel: String,
    kernel_version: String,
    busybox_version: String,
    agent_version: String,
}

impl Packages {
    fn key(&self, scripts: &str) -> String {
        let raw = format!(
            "{}_{}+busybox_{}+qemu-ga_{}+{scripts}",
            self.kernel, self.kernel_version, self.busybox_version, self.agent_version
        );
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || "._+-".contains(c) { c } else { '_' }).collect()
    }
}

/// Asks apt-cache which kernel package `linux-image-amd64` depends on, and the
/// candidate versions.
fn resolve() -> Result<Packages, String> {
    let out = run(Command::new("apt-cache").args([
        "show",
        "--no-all-versions",
        "linux-image-amd64",
        "busybox-static",
        "qemu-guest-agent",
    ]))
    .map_err(|e| format!("cannot look up linux-image-amd64, busybox-static and qemu-guest-agent: {e}"))?;
    let mut kernel = None;
    let mut busybox_version = None;
    let mut agent_version = None;
    for paragraph in out.split("\n\n") {
        let field = |name: &str| paragraph.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim);
        match field("Package") {
            Some("linux-image-amd64") => {
                // "Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)"
                kernel = field("Depends").and_then(|deps| {
                    deps.split(',').map(str::trim).find_map(|dep| {
                        let (name, rest) = dep.split_once(' ')?;
                        let version = rest.trim().strip_prefix("(=")?.strip_suffix(')')?.trim();
                        name.starts_with("linux-image-").then(|| (name.to_string(), version.to_string()))
                    })
                });
            }
            Some("busybox-static") => busybox_version = field("Version").map(str::to_string),
            Some("qemu-guest-agent") => agent_version = field("Version").map(str::to_string),
            _ => {}
        }
    }
    let (kernel, kernel_version) =
        kernel.ok_or("apt-cache show linux-image-amd64: no `linux-image-* (= version)` dependency")?;
    let busybox_version = busybox_version.ok_or("apt-cache show busybox-static: no Version")?;
    let agent_version = agent_version.ok_or("apt-cache show qemu-guest-agent: no Version")?;
    Ok(Packages { kernel, kernel_version, busybox_version, agent_version })
}

fn apt_get_update() -> Result<(), String> {
    run(Command::new("apt-get").args(["-q", "update"])).map(drop).map_err(|e| format!("apt-get update failed: {e}"))
}

fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Removes a scratch directory however the build ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Downloads, extracts and assembles the guest, then renames it to `dir`.
/// Runs under the lock. The error says whether apt-get download failed (which
/// stale package lists may explain).
fn build(root: &Path, packages: &Packages, dir: &Path, scripts: &Scripts) -> Result<Guest, (String, bool)> {
    // Scratch directories of builds that were killed (we hold the lock).
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(".work-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let work = Scratch(root.join(format!(".work-{}-{nanos}", std::process::id())));
    let debs = work.0.join("debs");
    let tree = work.0.join("tree");
    let out = work.0.join("out");
    for d in [&debs, &tree, &out] {
        fs::create_dir_all(d).map_err(|e| (format!("cannot create {}: {e}", d.display()), false))?;
    }

    run(Command::new("apt-get")
        .args(["-q", "download"])
        .arg(format!("{}={}", packages.kernel, packages.kernel_version))
        .arg(format!("busybox-static={}", packages.busybox_version))
        .arg(format!("qemu-guest-agent={}", packages.agent_version))
        .current_dir(&debs))
    .map_err(|e| (format!("apt-get download failed: {e}"), true))?;
    assemble(packages, dir, &work.0, scripts).map_err(|e| (e, false))
}

/// The rest of [`build`], after the download into `work`/debs.
fn assemble(packages: &Packages, dir: &Path, work: &Path, scripts: &Scripts) -> Result<Guest, String> {
    let debs = work.join("debs");
    let tree = work.join("tree");
    let out = work.join("out");
    let deb = |prefix: &str| -> Result<PathBuf, String> {
        fs::read_dir(&debs)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(prefix) && name.ends_with(".deb")
            })
            .ok_or_else(|| format!("apt-get download left no {prefix}*.deb"))
    };
    let kernel_deb = deb(&format!("{}_", packages.kernel))?;
    let busybox_deb = deb("busybox-static_")?;
    let agent_deb = deb("qemu-guest-agent_")?;

    // tar fails when a pattern matches nothing, which is fine for a module
    // that this kernel has built in (listed in modules.builtin).
    let kernel_tar = extract(
        &kernel_deb,
        &tree,
        &[
            "./boot/vmlinuz-*",
            "*/kernel/drivers/acpi/button.ko*",
            "*/kernel/drivers/input/evdev.ko*",
            "*/kernel/drivers/virtio/virtio*.ko*",
            "*/kernel/drivers/char/virtio_console.ko*",
            "*/modules.builtin",
        ],
    )
    .err()
    .map_or(String::new(), |e| format!(" ({e})"));
    extract(&busybox_deb, &tree, &["*bin/busybox"])?;
    extract(&agent_deb, &tree, &["*bin/qemu-ga"])?;

    let mut files = Vec::new();
    walk(&tree, &mut files);
    let find = |pred: &dyn Fn(&str) -> bool| files.iter().find(|p| pred(&p.file_name().unwrap().to_string_lossy()));
    let builtin = find(&|n| n == "modules.builtin").and_then(|p| fs::read_to_string(p).ok()).unwrap_or_default();
    let vmlinuz = find(&|n| n.starts_with("vmlinuz-"))
        .ok_or_else(|| format!("no boot/vmlinuz-* in {}{kernel_tar}", kernel_deb.display()))?;
    let module = |name: &str, dir: &str| -> Result<Option<Vec<u8>>, String> {
        let ko = format!("{name}.ko");
        match find(&|n| n.starts_with(&ko)) {
            Some(path) => module(path).map(Some),
            None if builtin.lines().any(|l| l.ends_with(&format!("/{dir}/{ko}"))) => Ok(None),
            None => Err(format!("{ko} is neither in {} nor built in{kernel_tar}", kernel_deb.display())),
        }
    };
    // `/lib/NAME.ko` for each module in `list` that is not built in.
    let modules = |list: &[(&str, &str)]| -> Result<Vec<InitrdFile>, String> {
        let mut files = Vec::new();
        for &(name, dir) in list {
            if let Some(body) = module(name, dir)? {
                files.push(InitrdFile { path: format!("lib/{name}.ko"), mode: 0o644, body });
            }
        }
        Ok(files)
    };
    let base = modules(&[("button", "acpi"), ("evdev", "input")])?;
    let mut agent = [base.clone(), modules(&AGENT_MODULES)?].concat();
    let qemu_ga = find(&|n| n == "qemu-ga").ok_or_else(|| format!("no usr/sbin/qemu-ga in {}", agent_deb.display()))?;
    agent.extend(agent_files(qemu_ga, &agent_deb)?);
    let busybox = find(&|n| n == "busybox").ok_or_else(|| format!("no bin/busybox in {}", busybox_deb.display()))?;
    let busybox = read(busybox)?;
    let kernel = out.join("vmlinuz");
    fs::copy(vmlinuz, &kernel).map_err(|e| format!("cannot copy {}: {e}", vmlinuz.display()))?;

    let mut sizes = Vec::new();
    for (name, script, files) in [
        ("listening", &scripts.listening, &base),
        ("ignoring", &scripts.ignoring, &base),
        ("agent", &scripts.agent, &agent),
    ] {
        let cpio = initramfs(script, &busybox, files);
        let path = out.join(format!("{name}.initrd"));
        let compressed = write_gzipped(&cpio, &path, work)?;
        sizes.push(format!(
            "{name}.initrd: {} bytes ({}; cpio {} bytes)",
            fs::metadata(&path).map_or(0, |m| m.len()),
            if compressed { "gzip" } else { "uncompressed: no gzip" },
            cpio.len()
        ));
    }
    let info = format!(
        "built by qmpsh tests/common/guest.rs ({FORMAT})\nkernel: {} {} ({})\nbusybox-static {}\n\
         qemu-guest-agent {}\n{}\n",
        packages.kernel,
        packages.kernel_version,
        vmlinuz.file_name().unwrap().to_string_lossy(),
        packages.busybox_version,
        packages.agent_version,
        sizes.join("\n"),
    );
    fs::write(out.join("info.txt"), info).map_err(|e| format!("cannot write info.txt: {e}"))?;

    if dir.exists() && Guest::at(dir).is_none() {
        // Left incomplete by hand: we hold the lock, so nobody is using it.
        let _ = fs::remove_dir_all(dir);
    }
    match fs::rename(&out, dir) {
        Ok(()) => {}
        // Someone got there first (only without the lock, but harmless).
        Err(_) if Guest::at(dir).is_some() => {}
        Err(e) => return Err(format!("cannot rename the guest into {}: {e}", dir.display())),
    }
    Guest::at(dir).ok_or_else(|| format!("{} is incomplete after the build", dir.display()))
}

/// What the `agent` initramfs has beyond the others' files and modules:
/// qemu-ga at its own path, the host's copies of its libraries at theirs,
/// `/sbin/shutdown` and `/etc/os-release`.
fn agent_files(qemu_ga: &Path, deb: &Path) -> Result<Vec<InitrdFile>, String> {
    let mut files = vec![
        InitrdFile { path: "usr/sbin/qemu-ga".into(), mode: 0o755, body: read(qemu_ga)? },
        InitrdFile { path: "sbin/shutdown".into(), mode: 0o755, body: SHUTDOWN.into() },
        InitrdFile { path: "etc/os-release".into(), mode: 0o644, body: OS_RELEASE.into() },
    ];
    for library in shared_libraries(qemu_ga, deb)? {
        let path = library.to_string_lossy().trim_start_matches('/').to_string();
        files.push(InitrdFile { path, mode: 0o755, body: read(&library)? });
    }
    Ok(files)
}

/// The host's paths of the shared libraries (and the dynamic loader) that
/// `binary`, from the package `deb`, needs. When some are missing, installs
/// the package's dependencies that are not installed if we are root, or says
/// which to install.
fn shared_libraries(binary: &Path, deb: &Path) -> Result<Vec<PathBuf>, String> {
    let mut installed = false;
    loop {
        let (found, missing) = ldd(binary)?;
        if missing.is_empty() {
            return Ok(found);
        }
        let packages = uninstalled_dependencies(deb)?;
        if !installed && !packages.is_empty() && is_root() {
            run(Command::new("apt-get")
                .args(["-q", "-y", "--no-install-recommends", "install"])
                .args(&packages)
                .env("DEBIAN_FRONTEND", "noninteractive"))
            .map_err(|e| format!("qemu-ga needs {}: apt-get install failed: {e}", missing.join(", ")))?;
            installed = true;
            continue;
        }
        let name = deb.file_name().unwrap().to_string_lossy();
        return Err(if packages.is_empty() {
            format!(
                "qemu-ga needs {}, which this host lacks (none of {name}'s dependencies is missing)",
                missing.join(", ")
            )
        } else {
            format!(
                "qemu-ga needs {}, which this host lacks: apt-get install {} (from {name}'s dependencies)",
                missing.join(", "),
                packages.join(" ")
            )
        });
    }
}

/// `ldd BINARY`: the paths it resolves (`linux-vdso` has none) and the
/// names it reports as "not found".
fn ldd(binary: &Path) -> Result<(Vec<PathBuf>, Vec<String>), String> {
    let out = Command::new("ldd")
        .arg(binary)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| format!("cannot run ldd (package libc-bin): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for line in text.lines().map(str::trim) {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
        // "/lib64/ld-linux-x86-64.so.2 (0x...)", "libfoo.so.1 => not found"
        let (name, target) = line.split_once(" => ").unwrap_or((line, line));
        if target.starts_with("not found") {
            missing.push(name.to_string());
        } else if let Some(path) = target.split_whitespace().next().filter(|p| p.starts_with('/')) {
            found.push(PathBuf::from(path));
        }
    }
    if found.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("ldd {}: {}: {} {}", binary.display(), out.status, text.trim(), stderr.trim()));
    }
    Ok((found, missing))
}

/// The packages in `deb`'s Depends (the first of each alternative) that are
/// not installed here.
fn uninstalled_dependencies(deb: &Path) -> Result<Vec<String>, String> {
    let depends = run(Command::new("dpkg-deb").arg("--field").arg(deb).arg("Depends"))?;
    let mut packages = Vec::new();
    for dependency in depends.split(',') {
        let name = dependency.split('|').next().unwrap_or("").split(['(', ':']).next().unwrap_or("").trim();
        let status = Command::new("dpkg-query").args(["-W", "-f", "${db:Status-Status}", name]).output();
        let installed = status.is_ok_and(|out| out.status.success() && out.stdout == b"installed");
        if !name.is_empty() && !installed {
            packages.push(name.to_string());
        }
    }
    Ok(packages)
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x -C DEST --wildcards PATTERNS...`
fn extract(deb: &Path, dest: &Path, patterns: &[&str]) -> Result<(), String> {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run dpkg-deb (package dpkg): {e}"))?;
    let mut stderr = dpkg.stderr.take().unwrap();
    let dpkg_err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .arg("--wildcards")
        .args(patterns)
        .stdin(dpkg.stdout.take().unwrap())
        .output();
    let dpkg_err = dpkg_err.join().unwrap_or_default();
    let dpkg_status = dpkg.wait().map_err(|e| e.to_string())?;
    let tar = tar.map_err(|e| format!("cannot run tar: {e}"))?;
    let name = deb.file_name().unwrap().to_string_lossy();
    if !tar.status.success() {
        return Err(format!(
            "tar -x {patterns:?} from {name}: {}: {}",
            tar.status,
            String::from_utf8_lossy(&tar.stderr).trim()
        ));
    }
    if !dpkg_status.success() {
        return Err(format!("dpkg-deb --fsys-tarfile {name}: {dpkg_status}: {}", dpkg_err.trim()));
    }
    Ok(())
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, files),
            Ok(t) if t.is_file() => files.push(path),
            _ => {}
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A module as busybox insmod can load it: decompressed if Debian ships it
/// compressed (`.ko.xz` from trixie on).
fn module(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.file_name().unwrap().to_string_lossy();
    let (tool, package) = if name.ends_with(".ko") {
        return read(path);
    } else if name.ends_with(".xz") {
        ("xz", "xz-utils")
    } else if name.ends_with(".zst") {
        ("zstd", "zstd")
    } else if name.ends_with(".gz") {
        ("gzip", "gzip")
    } else {
        return Err(format!("unknown module format: {}", path.display()));
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .map_err(|e| format!("{name} needs `{tool}` to decompress (install {package}): {e}"))?;
    if !out.status.success() {
        return Err(format!("{tool} -dc {name}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(out.stdout)
}

/// Writes `data` gzipped to `path` (returns true), or as is when there is no
/// gzip (returns false): the kernel takes either.
fn write_gzipped(data: &[u8], path: &Path, work: &Path) -> Result<bool, String> {
    let raw = work.join("initrd.cpio");
    fs::write(&raw, data).map_err(|e| format!("cannot write {}: {e}", raw.display()))?;
    let dest = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    match Command::new("gzip").args(["-9", "-n", "-c"]).arg(&raw).stdout(dest).output() {
        Ok(out) if out.status.success() => Ok(true),
        Ok(out) => Err(format!("gzip: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::rename(&raw, path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(false)
        }
        Err(e) => Err(format!("cannot run gzip: {e}")),
    }
}

/// A file for an initramfs: its path there (relative), permissions and content.
#[derive(Clone)]
struct InitrdFile {
    path: String,
    mode: u32,
    body: Vec<u8>,
}

/// The initramfs as a cpio "newc" archive: busybox, `/init` and `files`.
fn initramfs(init: &str, busybox: &[u8], files: &[InitrdFile]) -> Vec<u8> {
    let mut cpio = Cpio::default();
    for dir in ["bin", "dev", "lib", "proc", "run", "sys", "tmp"] {
        cpio.dir(dir);
    }
    cpio.entry("dev/console", 0o020600, (5 << 8) | 1, &[]);
    cpio.entry("bin/busybox", 0o100755, 0, busybox);
    cpio.entry("bin/sh", 0o120777, 0, b"busybox");
    for file in files {
        cpio.file(&file.path, 0o100000 | file.mode, &file.body);
    }
    cpio.entry("init", 0o100755, 0, init.as_bytes());
    cpio.finish()
}

#[derive(Default)]
struct Cpio {
    data: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    /// A directory (and its parents), once: the kernel does not create
    /// missing parents when it unpacks.
    fn dir(&mut self, path: &str) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        if self.dirs.insert(path.to_string()) {
            self.entry(path, 0o040755, 0, &[]);
        }
    }

    /// A regular file, after its parent directories.
    fn file(&mut self, path: &str, mode: u32, body: &[u8]) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entry(path, mode, 0, body);
    }

    /// One entry; `rdev` is `major << 8 | minor` for device nodes.
    fn entry(&mut self, name: &str, mode: u32, rdev: u32, body: &[u8]) {
        self.ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: reproducible
            body.len() as u32,
            0, // devmajor
            0, // devminor
            rdev >> 8,
            rdev & 0xff,
            name.len() as u32 + 1,
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for field in fields {
            self.data.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(body);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, 0, &[]);
        self.data
    }
}

/// FNV-1a, 64 bits: stable across Rust versions, unlike `DefaultHasher`.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for part in parts {
        for &byte in part.as_bytes().iter().chain(&[0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Runs `command`, returning its stdout, or an error with its stderr.
fn run(command: &mut Command) -> Result<String, String> {
    command.env("LC_ALL", "C").stdin(Stdio::null());
    let program = command.get_program().to_string_lossy().into_owned();
    let out = command.output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            let package = match program.as_str() {
                "apt-cache" | "apt-get" => "apt",
                "dpkg-deb" | "dpkg-query" => "dpkg",
                other => other,
            };
            format!("`{program}` not found (Debian package {package})")
        } else {
            format!("cannot run {program}: {e}")
        }
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("{program}: {}: {}", out.status, tail.join(" | ")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
