//! `qmpsh vm cp SRC DST` and the agent shell's `.cat`: a file into or out
//! of a guest through its agent (`guest-file-open`, `-read`, `-write`,
//! `-close`), in chunks of [`CHUNK`] bytes, base64 on the wire, so memory
//! stays bounded whatever the file's size. The guest's handle is closed
//! however the copy ends.
//!
//! The guest is a peer: what it sends is data, written as bytes, never
//! followed. On the host a file is never written through a symlink: the
//! destination is written to a new file beside it and renamed over it.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustix::fs::{Mode, OFlags};
use serde_json::{Value, json};

use super::guest::AgentAt;
use super::state::check_name;
use crate::error::Error;
use crate::interrupt::{self, Pending};
use crate::qmp::{self, ClientError, Monitor, Observer, Quiet};
use crate::ui::meter::Meter;
use crate::visible;

/// Bytes per `guest-file-read` or `-write`: 1 MiB, some 1.4 MB of base64
/// in one message, far below what QMP and qemu-ga take (a read's count is
/// capped at 48 MiB), and few enough round trips.
pub const CHUNK: usize = 1 << 20;

/// How long one agent call may take (a slow guest under TCG encodes a
/// chunk in well under a second).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long closing the guest's handle after a failure may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the agent has to answer at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One side of `vm cp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Host(PathBuf),
    /// `NAME:PATH`: PATH in the managed VM NAME (with `--connect`, the
    /// libvirt domain NAME).
    Guest {
        vm: String,
        path: String,
    },
}

impl Side {
    /// `NAME:PATH` when NAME is a VM's name; anything else is a host path
    /// (`./web:x` names a host file whose name has a colon).
    pub fn parse(text: &OsStr) -> Side {
        if let Some((vm, path)) = text.to_str().and_then(|t| t.split_once(':'))
            && check_name(vm).is_ok()
        {
            return Side::Guest { vm: vm.into(), path: path.into() };
        }
        Side::Host(PathBuf::from(text))
    }
}

/// `vm cp SRC DST`: one side in a guest, the other on the host. Says
/// nothing when it works; a progress line on stderr when `terminal` and
/// the file is large.
pub fn run(source: &OsStr, destination: &OsStr, uri: Option<&str>, terminal: bool) -> Result<(), Error> {
    // Ctrl-C ends the wait for the agent, not qmpsh: the guest's handle is
    // then closed, and a half-written host file removed, before it exits.
    let _ = interrupt::install();
    match (Side::parse(source), Side::parse(destination)) {
        (Side::Guest { vm, path }, Side::Host(to)) => pull(&vm, uri, &path, &to, terminal),
        (Side::Host(from), Side::Guest { vm, path }) => push(&from, &vm, uri, &path, terminal),
        (Side::Guest { .. }, Side::Guest { .. }) => {
            Err(Error::Usage("vm cp: both sides are in a guest; one must be on the host".into()))
        }
        (Side::Host(_), Side::Host(_)) => {
            Err(Error::Usage("vm cp: one side must be NAME:PATH, a path in the managed VM NAME".into()))
        }
    }
}

/// The agent of `vm`: a managed VM, or with `uri` a libvirt domain there.
fn connect(vm: &str, uri: Option<&str>) -> Result<Monitor, Error> {
    AgentAt::find(vm, uri)?.open(CONNECT_TIMEOUT)
}

/// One agent call: its return value, or the agent's error (made visible).
fn call(agent: &mut Monitor, name: &str, arguments: Value, observer: &mut dyn Observer) -> Result<Value, Failure> {
    let mut message = qmp::command(name);
    message.insert("arguments".into(), arguments);
    match agent.execute(message, Some(Instant::now() + CALL_TIMEOUT), observer) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(refused)) => Err(Failure::Refused(visible::line(&refused.desc))),
        Err(ClientError::Timeout) => Err(Failure::Lost(Error::Timeout(format!(
            "the guest agent gave no reply to {name} within {} s",
            CALL_TIMEOUT.as_secs()
        )))),
        Err(e) => Err(Failure::Lost(e.into())),
    }
}

/// Why an agent call failed.
enum Failure {
    /// The agent answered with an error: its words, visible.
    Refused(String),
    /// No answer: the connection's error.
    Lost(Error),
}

impl Failure {
    /// The run's error, `what` saying what was being done.
    fn error(self, what: &str) -> Error {
        match self {
            Failure::Refused(why) => Error::Failed(format!("{what}: {why}")),
            Failure::Lost(e) => e,
        }
    }
}

/// Opens `path` in the guest: its handle.
fn open(agent: &mut Monitor, path: &str, mode: &str, observer: &mut dyn Observer) -> Result<i64, Failure> {
    let id = call(agent, "guest-file-open", json!({"path": path, "mode": mode}), observer)?;
    id.as_i64().ok_or_else(|| Failure::Refused(format!("the agent gave no handle: {id}")))
}

/// An open file in the guest, closed when dropped if not before.
struct Handle<'a> {
    agent: &'a mut Monitor,
    id: i64,
    open: bool,
}

impl<'a> Handle<'a> {
    fn open(agent: &'a mut Monitor, path: &str, mode: &str, observer: &mut dyn Observer) -> Result<Self, Failure> {
        let id = open(agent, path, mode, observer)?;
        Ok(Handle { agent, id, open: true })
    }

    fn call(&mut self, name: &str, mut arguments: Value, observer: &mut dyn Observer) -> Result<Value, Failure> {
        if let Some(map) = arguments.as_object_mut() {
            map.insert("handle".into(), self.id.into());
        }
        call(self.agent, name, arguments, observer)
    }

    /// The file's size, when it can seek (a FIFO or a device cannot); the
    /// position is back at the start.
    fn size(&mut self) -> Option<u64> {
        let end = self.call("guest-file-seek", json!({"offset": 0, "whence": "end"}), &mut Quiet).ok()?;
        self.call("guest-file-seek", json!({"offset": 0, "whence": "set"}), &mut Quiet).ok()?;
        end.get("position").and_then(Value::as_u64)
    }

    /// Closes the handle: what the guest could not write may show only now.
    fn close(mut self, observer: &mut dyn Observer) -> Result<(), Failure> {
        self.open = false;
        self.call("guest-file-close", json!({}), observer).map(drop)
    }
}

/// A copy that failed closes the handle too, but waits for that only
/// briefly: an agent that gave no reply in time will hardly answer now.
impl Drop for Handle<'_> {
    fn drop(&mut self) {
        if self.open {
            let mut message = qmp::command("guest-file-close");
            message.insert("arguments".into(), json!({"handle": self.id}));
            let _ = self.agent.execute(message, Some(Instant::now() + CLOSE_TIMEOUT), &mut Quiet);
        }
    }
}

/// Reads the guest file `path` chunk by chunk into `sink` (a file, the
/// shell's stdout) until its end. `meter` is told the file's size first
/// (`None` when it cannot seek), with 0 bytes, then each chunk's bytes.
/// The chunks' traffic goes to `observer`. Returns how many bytes came.
pub fn read(
    agent: &mut Monitor,
    path: &str,
    observer: &mut dyn Observer,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    meter: &mut dyn FnMut(Option<u64>, u64),
) -> Result<u64, Error> {
    let what = format!("cannot read {path} in the guest");
    let mut handle = Handle::open(agent, path, "r", observer).map_err(|f| f.error(&what))?;
    let size = handle.size();
    meter(size, 0);
    let mut total = 0u64;
    let mut bytes = Vec::with_capacity(CHUNK);
    loop {
        let chunk = handle.call("guest-file-read", json!({"count": CHUNK}), observer).map_err(|f| f.error(&what))?;
        let text = chunk.get("buf-b64").and_then(Value::as_str).unwrap_or_default();
        // The guest decides what it sends: never more is decoded than asked.
        if text.len() > CHUNK.div_ceil(3) * 4 {
            return Err(Error::Failed(format!("{what}: the agent sent more than the {CHUNK} bytes asked")));
        }
        bytes.clear();
        STANDARD
            .decode_vec(text, &mut bytes)
            .map_err(|e| Error::Failed(format!("{what}: the agent sent bad base64: {e}")))?;
        sink(&bytes)?;
        total = total.saturating_add(bytes.len() as u64);
        meter(None, bytes.len() as u64);
        let eof = chunk.get("eof").and_then(Value::as_bool).unwrap_or(false);
        if eof || bytes.is_empty() {
            break;
        }
    }
    handle.close(observer).map_err(|f| f.error(&what))?;
    Ok(total)
}

/// `vm cp NAME:PATH DST`.
fn pull(vm: &str, uri: Option<&str>, path: &str, to: &Path, terminal: bool) -> Result<(), Error> {
    let to = host_destination(to, path)?;
    let mut agent = connect(vm, uri)?;
    let mut file = NewFile::create(&to)?;
    let mut meter = None;
    read(&mut agent, path, &mut Quiet, &mut |bytes| file.write(bytes), &mut |size, bytes| match &mut meter {
        None => meter = Some(Meter::new(&format!("{vm}:{path}"), size, terminal)),
        Some(meter) => meter.add(bytes),
    })
    .map_err(|e| in_vm(e, vm))?;
    drop(meter);
    file.finish()
}

/// An agent's error names the path, not the VM: said here.
fn in_vm(error: Error, vm: &str) -> Error {
    match error {
        Error::Failed(why) => Error::Failed(format!("vm cp: {vm}: {why}")),
        other => other,
    }
}

/// Where `vm cp` writes on the host: `to`, or in the folder `to` the
/// guest file's own name. Refused: a symlink (it would be written
/// through), anything but a regular file.
fn host_destination(to: &Path, guest_path: &str) -> Result<PathBuf, Error> {
    let folder = to.as_os_str().as_encoded_bytes().ends_with(b"/") || to.is_dir();
    let to = if folder {
        let name = guest_path.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
        if name.is_empty() || name == "." || name == ".." {
            return Err(Error::Usage(format!("vm cp: {guest_path} names no file to copy into a folder")));
        }
        to.join(name)
    } else {
        to.to_path_buf()
    };
    let refuse = |why: &str| Err(Error::Io(format!("vm cp: {}: {why}", to.display())));
    match fs::symlink_metadata(&to) {
        Ok(meta) if meta.file_type().is_symlink() => {
            refuse("it is a symlink, and qmpsh does not write through one (remove it first)")
        }
        Ok(meta) if meta.is_dir() => refuse("it is a folder"),
        Ok(meta) if meta.file_type().is_fifo() || !meta.is_file() => refuse("it is not a regular file"),
        _ => Ok(to),
    }
}

/// A file written beside its destination and renamed over it when
/// complete: the destination, whatever is put there meanwhile, is never
/// opened, and an unfinished copy leaves it as it was.
struct NewFile {
    file: File,
    temporary: PathBuf,
    destination: PathBuf,
    done: bool,
    /// Removes it when SIGTERM, SIGHUP or SIGQUIT end qmpsh meanwhile.
    _on_ending: Option<Pending>,
}

impl NewFile {
    fn create(destination: &Path) -> Result<NewFile, Error> {
        let name = destination.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let temporary = destination.with_file_name(format!(".{name}.qmpsh-cp-{}-{nanos}", std::process::id()));
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&temporary, flags, Mode::from_raw_mode(0o666)).map_err(|e| {
            Error::Io(format!("vm cp: cannot create {}: {}", destination.display(), io::Error::from(e)))
        })?;
        let file = File::from(fd);
        // A file replaced keeps its permissions, as with cp.
        if let Ok(old) = fs::metadata(destination) {
            let _ = file.set_permissions(old.permissions());
        }
        let doomed = temporary.clone();
        let on_ending = interrupt::on_ending(move || drop(fs::remove_file(doomed))).ok();
        Ok(NewFile { file, temporary, destination: destination.to_path_buf(), done: false, _on_ending: on_ending })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::Io(format!("vm cp: cannot write {}: {e}", self.destination.display())))
    }

    fn finish(mut self) -> Result<(), Error> {
        let cannot = |e: io::Error| Error::Io(format!("vm cp: cannot write {}: {e}", self.destination.display()));
        self.file.sync_all().map_err(cannot)?;
        fs::rename(&self.temporary, &self.destination).map_err(cannot)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

/// Bytes per `guest-file-write` on a channel that carries at most
/// `largest` bytes a command: [`CHUNK`], or as much as fits in base64 with
/// room for the rest of the message.
fn write_chunk(largest: Option<usize>) -> usize {
    let fits = largest.map_or(CHUNK, |largest| largest.saturating_sub(256) / 4 * 3);
    fits.clamp(3, CHUNK)
}

/// `vm cp SRC NAME:PATH`.
fn push(from: &Path, vm: &str, uri: Option<&str>, path: &str, terminal: bool) -> Result<(), Error> {
    let cannot = |e: io::Error| Error::Io(format!("vm cp: cannot read {}: {e}", from.display()));
    let mut file = File::open(from).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if meta.is_dir() {
        return Err(Error::Io(format!("vm cp: {}: it is a folder; vm cp copies one file", from.display())));
    }
    let name = from.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut agent = connect(vm, uri)?;
    let in_folder = |folder: &str| format!("{}/{name}", folder.trim_end_matches('/'));
    let mut path = if path.ends_with('/') { in_folder(path) } else { path.to_string() };
    let what = |path: &str| format!("vm cp: {vm}: cannot write {path} in the guest");
    let opened = match open(&mut agent, &path, "w", &mut Quiet) {
        Err(Failure::Refused(why)) if why.contains("Is a directory") => {
            // A folder in the guest: the file goes in it, as with cp.
            path = in_folder(&path);
            open(&mut agent, &path, "w", &mut Quiet)
        }
        other => other,
    };
    let id = opened.map_err(|f| f.error(&what(&path)))?;
    let mut handle = Handle { agent: &mut agent, id, open: true };
    let mut meter = Meter::new(&format!("{vm}:{path}"), Some(meta.len()), terminal);
    let mut chunk = vec![0; write_chunk(handle.agent.largest_command())];
    loop {
        let length = fill(&mut file, &mut chunk).map_err(cannot)?;
        let Some(bytes) = chunk.get(..length).filter(|b| !b.is_empty()) else { break };
        let wrote = handle
            .call("guest-file-write", json!({"buf-b64": STANDARD.encode(bytes)}), &mut Quiet)
            .map_err(|f| f.error(&what(&path)))?;
        let count = wrote.get("count").and_then(Value::as_u64).unwrap_or(0);
        if count < length as u64 {
            return Err(Error::Failed(format!(
                "{}: the guest took {count} of {length} bytes: is its disk full?",
                what(&path)
            )));
        }
        meter.add(count);
    }
    // Buffered in the guest, a full disk may show only at the flush.
    handle.call("guest-file-flush", json!({}), &mut Quiet).map_err(|f| f.error(&what(&path)))?;
    handle.close(&mut Quiet).map_err(|f| f.error(&what(&path)))
}

/// Reads into `buffer` until it is full or the file ends: how much.
fn fill(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buffer.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_name_and_a_colon_make_a_guest_side_anything_else_a_host_path() {
        let guest = |vm: &str, path: &str| Side::Guest { vm: vm.into(), path: path.into() };
        assert_eq!(Side::parse(OsStr::new("web:/etc/hosts")), guest("web", "/etc/hosts"));
        assert_eq!(Side::parse(OsStr::new("web:")), guest("web", ""));
        assert_eq!(Side::parse(OsStr::new("./web:x")), Side::Host("./web:x".into()));
        assert_eq!(Side::parse(OsStr::new("/tmp/a")), Side::Host("/tmp/a".into()));
        assert_eq!(Side::parse(OsStr::new(".hidden:x")), Side::Host(".hidden:x".into()));
    }

    #[test]
    fn a_folder_takes_the_guest_files_name_and_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(host_destination(dir.path(), "/etc/hosts").unwrap(), dir.path().join("hosts"));
        assert!(host_destination(dir.path(), "/").is_err());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        let refused = host_destination(&link, "/x").unwrap_err().to_string();
        assert!(refused.contains("symlink"), "{refused}");
    }
}
