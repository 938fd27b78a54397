//! Files that are the user's alone: the `-l` traffic log and the REPL
//! history, which hold what QEMU was told, and the folders of the VMs,
//! whose sockets give control of them. One set of rules guards both,
//! because qmpsh often runs as root in folders others can write to (/tmp,
//! a CI workspace), where a name may have been planted:
//!
//! - a symlink is refused (O_NOFOLLOW): root would write to, and chmod,
//!   the file it points to;
//! - anything but a regular file is refused, before it is opened where the
//!   name already shows it: a FIFO hands the traffic to whoever reads it
//!   (and with no reader, open(2) would wait forever), a device may act
//!   on being opened;
//! - a file that belongs to another user is refused: its owner could read
//!   what is written;
//! - a new file is created 0600 whatever the umask (the mode is given to
//!   open(2)), and one of ours that others can reach is tightened to 0600
//!   through the open handle, so the file tightened is the file written.
//!
//! A folder of such files ([`open_folder`], the history's) is created 0700,
//! must be the user's and not a symlink, and is tightened to 0700; files
//! in it are opened relative to it, so the folder checked is the folder
//! used.
//!
//! The VMs' state folders take the same checks ([`check_folder`]) but are
//! refused, never tightened.
//!
//! A refusal ([`NotPrivate`]) tells a broken rule from a failed system
//! call, and says why in a sentence for the caller to put in its own words
//! ("cannot open log file ...: it is a symlink").

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use rustix::process::getuid;

/// Why a file or folder was not taken as private.
#[derive(Debug, PartialEq, Eq)]
pub enum NotPrivate {
    /// It breaks a rule above: a symlink, not a regular file (or not a
    /// folder), another user's, or reachable by others.
    Rule(String),
    /// The system would not say what it is, or would not do what was
    /// asked (create, open, tighten).
    Io(String),
}

impl std::fmt::Display for NotPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotPrivate::Rule(why) | NotPrivate::Io(why) => f.write_str(why),
        }
    }
}

impl NotPrivate {
    fn io(error: impl Into<io::Error>) -> NotPrivate {
        NotPrivate::Io(error.into().to_string())
    }
}

/// The permissions of a private file.
pub const FILE_MODE: u32 = 0o600;

/// The permissions of a private folder.
pub const FOLDER_MODE: u32 = 0o700;

/// How a private file is opened.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Written at its end only (the traffic log).
    Append,
    /// Read, and written at its end (the history).
    ReadAppend,
}

/// Opens (creating it if need be) the private file `path`, relative to the
/// folder `at` (`rustix::fs::CWD` for a path as given), by the rules above.
pub fn open_file(at: impl AsFd, path: &Path, access: Access) -> Result<File, NotPrivate> {
    // Where the name shows what it is, it is not opened at all.
    match rustix::fs::statat(&at, path, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => refuse_kind(&stat)?,
        Err(Errno::NOENT) => {}
        Err(e) => return Err(NotPrivate::io(e)),
    }
    let access = match access {
        Access::Append => OFlags::WRONLY,
        Access::ReadAppend => OFlags::RDWR,
    };
    // O_NONBLOCK: a FIFO put in place since the check must not hold
    // open(2) until someone reads it (with nobody, it fails with ENXIO).
    let flags = access | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(&at, path, flags, Mode::from_raw_mode(FILE_MODE)) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(NotPrivate::Rule(SYMLINK.into())),
        Err(Errno::NXIO) => return Err(not_regular("a FIFO")),
        Err(e) => return Err(NotPrivate::io(e)),
    };
    let stat = rustix::fs::fstat(&fd).map_err(NotPrivate::io)?;
    refuse_kind(&stat)?;
    make_private(&fd, &stat, FILE_MODE)?;
    // Writes to a regular file never block anyway; cleared all the same,
    // so the handle behaves as any other.
    rustix::fs::fcntl_getfl(&fd)
        .and_then(|flags| rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK))
        .map_err(NotPrivate::io)?;
    Ok(File::from(fd))
}

/// Opens the private folder `path`, creating it (and the folders above
/// it, 0700) if missing: a symlink, anything but a folder, or a folder of
/// another user is refused; one of ours that others can reach is
/// tightened to 0700.
pub fn open_folder(path: &Path) -> Result<OwnedFd, NotPrivate> {
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new().recursive(true).mode(FOLDER_MODE).create(parent).map_err(NotPrivate::io)?;
    }
    match rustix::fs::mkdir(path, Mode::from_raw_mode(FOLDER_MODE)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(NotPrivate::Io(format!("cannot create it: {}", io::Error::from(e)))),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        // A symlink gives ELOOP, or with O_DIRECTORY ENOTDIR: say which.
        Err(Errno::LOOP | Errno::NOTDIR) => {
            let stat = rustix::fs::lstat(path).map_err(NotPrivate::io)?;
            let symlink = FileType::from_raw_mode(stat.st_mode) == FileType::Symlink;
            return Err(NotPrivate::Rule(if symlink { SYMLINK } else { "it is not a folder" }.into()));
        }
        Err(e) => return Err(NotPrivate::io(e)),
    };
    let stat = rustix::fs::fstat(&fd).map_err(NotPrivate::io)?;
    make_private(&fd, &stat, FOLDER_MODE)?;
    Ok(fd)
}

/// Why the folder `path` is not private, if it is not: a symlink, not a
/// folder, another user's, or reachable by others. Nothing is changed: for
/// the VMs' state folders, which qmpsh refuses rather than tightens (a
/// folder it did not make is not its to change).
pub fn check_folder(path: &Path) -> Result<(), NotPrivate> {
    let stat = rustix::fs::lstat(path).map_err(NotPrivate::io)?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => {}
        FileType::Symlink => return Err(NotPrivate::Rule(SYMLINK.into())),
        _ => return Err(NotPrivate::Rule("it is not a folder".into())),
    }
    owned(&stat)?;
    let mode = stat.st_mode & 0o7777;
    if mode & 0o077 != 0 {
        return Err(NotPrivate::Rule(format!(
            "others can reach it (mode {mode:04o}); qmpsh does not change a folder it did not make: \
             chmod 700 it if it is qmpsh's"
        )));
    }
    Ok(())
}

/// Refuses a file or folder of another user.
fn owned(stat: &Stat) -> Result<(), NotPrivate> {
    let me = getuid().as_raw();
    if stat.st_uid != me {
        return Err(NotPrivate::Rule(format!("it belongs to uid {}, not to you (uid {me})", stat.st_uid)));
    }
    Ok(())
}

/// Refuses a file or folder of another user; tightens one of ours that
/// others can reach to `mode`, through the open handle.
fn make_private(fd: impl AsFd, stat: &Stat, mode: u32) -> Result<(), NotPrivate> {
    owned(stat)?;
    if stat.st_mode & 0o077 != 0 {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))
            .map_err(|e| NotPrivate::Io(format!("cannot make it private: {e}")))?;
    }
    Ok(())
}

const SYMLINK: &str = "it is a symlink";

/// Refuses what is not a regular file, naming what it is.
fn refuse_kind(stat: &Stat) -> Result<(), NotPrivate> {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Ok(()),
        FileType::Symlink => Err(NotPrivate::Rule(SYMLINK.into())),
        FileType::Fifo => Err(not_regular("a FIFO")),
        FileType::CharacterDevice => Err(not_regular("a character device")),
        FileType::BlockDevice => Err(not_regular("a block device")),
        FileType::Directory => Err(not_regular("a folder")),
        FileType::Socket => Err(not_regular("a socket")),
        FileType::Unknown => Err(not_regular("not a file qmpsh knows")),
    }
}

fn not_regular(what: &str) -> NotPrivate {
    NotPrivate::Rule(format!("it is {what}, not a regular file"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_file_is_private_and_an_open_one_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        open_file(rustix::fs::CWD, &path, Access::Append).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        open_file(rustix::fs::CWD, &path, Access::ReadAppend).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_folder_is_made_private_and_files_open_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("state/qmpsh");
        let fd = open_folder(&folder).unwrap();
        assert_eq!(std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777, 0o700);
        open_file(&fd, Path::new("history"), Access::ReadAppend).unwrap();
        assert!(folder.join("history").is_file());
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
        open_folder(&folder).unwrap();
        assert_eq!(std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777, 0o700);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&folder, &link).unwrap();
        assert_eq!(open_folder(&link).unwrap_err().to_string(), SYMLINK);
        assert_eq!(open_folder(&folder.join("history")).unwrap_err().to_string(), "it is not a folder");
    }

    #[test]
    fn symlinks_folders_and_devices_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        assert_eq!(open_file(rustix::fs::CWD, &link, Access::Append).unwrap_err().to_string(), SYMLINK);
        assert!(!dir.path().join("nowhere").exists(), "a dangling link's target is not created");
        let err = open_file(rustix::fs::CWD, dir.path(), Access::Append).unwrap_err();
        assert_eq!(err, NotPrivate::Rule("it is a folder, not a regular file".into()));
        let err = open_file(rustix::fs::CWD, Path::new("/dev/null"), Access::Append).unwrap_err();
        assert_eq!(err, NotPrivate::Rule("it is a character device, not a regular file".into()));
    }
}
