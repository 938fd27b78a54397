//! TARGET: what the user names on the command line, and the rule that turns
//! it into a socket address without guessing.
//!
//! The rule, as `--help` states it:
//! 1. `unix:PATH` is a unix socket; `tcp:HOST:PORT` is TCP.
//! 2. Anything with a `/` is a unix socket path.
//! 3. `HOST:PORT` or `[IPV6]:PORT` with a numeric port is TCP.
//! 4. Any other word is a VM started by `qmpsh vm start` when one has that
//!    name, else a socket file in the current directory.
//!    When a word could be read two ways (a file named like `host:1234`
//!    exists, or a file and a VM share a name), qmpsh refuses and asks for
//!    a prefix or a path.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Where the QMP monitor listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp {
        host: String,
        port: u16,
    },
    /// A domain (name or UUID) that libvirt runs, reached through libvirt
    /// at `uri` (`--connect`), else the default that virsh would use.
    Libvirt {
        domain: String,
        uri: Option<String>,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "{}", path.display()),
            Target::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tcp { host, port } => write!(f, "{host}:{port}"),
            Target::Libvirt { domain, .. } => write!(f, "libvirt:{domain}"),
        }
    }
}

/// The `--help` text of the rule above.
pub const TARGET_HELP: &str = "\
TARGET is read by this rule, first match wins:
  unix:PATH, tcp:HOST:PORT   explicit unix socket or TCP address
  libvirt:DOMAIN             a VM libvirt runs (name or UUID), through
                             libvirt at --connect URI, else
                             $LIBVIRT_DEFAULT_URI, else libvirt's default
  anything containing '/'    a unix socket path (./qmp.sock, /run/vm.qmp)
  HOST:PORT, [IPV6]:PORT     TCP (localhost:4444, [::1]:4444)
  any other word             a VM started by `qmpsh vm start`, else a unix
                             socket file in the current directory
A word that fits two rules (a file named like host:4444 exists, or a file
and a VM share its name) is an error: write unix:NAME, ./NAME or tcp:....";

impl Target {
    /// Reads TARGET by the rule in [`TARGET_HELP`]; `vm_socket` names the
    /// socket of a managed VM, if one has that name, or refuses one that
    /// fails its checks.
    pub fn parse_with(text: &str, vm_socket: impl Fn(&str) -> Result<Option<PathBuf>, Error>) -> Result<Target, Error> {
        let target = Target::parse(text)?;
        let plain_word = !text.contains('/') && !text.contains(':');
        let vm = if plain_word { vm_socket(text)? } else { None };
        match vm {
            Some(_) if Path::new(text).exists() => Err(Error::Usage(format!(
                "TARGET {text} is ambiguous: a VM and a file in this folder share the name; \
                 write ./{text} for the file"
            ))),
            Some(socket) => Ok(Target::Unix(socket)),
            None => Ok(target),
        }
    }

    /// Reads TARGET by the rule in [`TARGET_HELP`], without managed VMs.
    pub fn parse(text: &str) -> Result<Target, Error> {
        if text.is_empty() {
            return Err(Error::Usage("TARGET is empty: name a socket path or HOST:PORT".into()));
        }
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(Error::Usage("unix: needs a socket path after it".into()));
            }
            return Ok(Target::Unix(PathBuf::from(path)));
        }
        if let Some(domain) = text.strip_prefix("libvirt:") {
            if domain.is_empty() {
                return Err(Error::Usage("libvirt: needs a domain name after it".into()));
            }
            return Ok(Target::Libvirt { domain: domain.to_string(), uri: None });
        }
        if let Some(addr) = text.strip_prefix("tcp:") {
            return host_port(addr)
                .ok_or_else(|| Error::Usage(format!("tcp:{addr} is not HOST:PORT (a port from 1 to 65535)")));
        }
        if text.contains('/') {
            return Ok(Target::Unix(PathBuf::from(text)));
        }
        if let Some(tcp) = host_port(text) {
            if Path::new(text).exists() {
                return Err(Error::Usage(format!(
                    "TARGET {text} is ambiguous: a file of that name exists and it reads as HOST:PORT; \
                     write unix:{text} or tcp:{text}"
                )));
            }
            return Ok(tcp);
        }
        Ok(Target::Unix(PathBuf::from(text)))
    }
}

/// `HOST:PORT` or `[V6]:PORT`, with a non-empty host and a non-zero port.
fn host_port(text: &str) -> Option<Target> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        let (host, port) = text.rsplit_once(':')?;
        if host.contains(':') {
            return None; // a bare IPv6 address needs brackets
        }
        (host, port)
    };
    // Digits only, no leading zero: `+44` or `044` is not how ports are written.
    if host.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.starts_with('0') {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    Some(Target::Tcp { host: host.to_string(), port })
}

/// The names of libvirt hosts (`--connect` URIs; `None`, the default), as
/// several targets' names and `vm list` show them: each the URI's host (`localhost` for
/// a local URI such as `qemu:///system`), or the whole URI where two
/// hosts would share a name.
pub fn host_names(uris: &[Option<String>]) -> Vec<String> {
    let short: Vec<String> = uris.iter().map(|uri| uri.as_deref().map_or("default".into(), host_of)).collect();
    short
        .iter()
        .zip(uris)
        .map(|(label, uri)| {
            let shared = short.iter().filter(|other| *other == label).count() > 1;
            match uri {
                Some(uri) if shared => uri.clone(),
                _ => label.clone(),
            }
        })
        .collect()
}

/// `--connect` URIs as given, each once: the same host named twice is
/// one host.
pub fn each_uri_once(uris: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    uris.iter().filter(|uri| seen.insert(uri.as_str())).cloned().collect()
}

/// The host of a libvirt URI: `qemu+ssh://root@host:22/system` is `host`.
fn host_of(uri: &str) -> String {
    let Some((_, rest)) = uri.split_once("://") else { return uri.to_string() };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() { "localhost".into() } else { host.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_given_twice_is_one_host() {
        let uris = ["qemu:///system", "qemu+tcp://db/system", "qemu:///system"].map(String::from);
        assert_eq!(each_uri_once(&uris), ["qemu:///system", "qemu+tcp://db/system"]);
    }

    fn tcp(host: &str, port: u16) -> Target {
        Target::Tcp { host: host.into(), port }
    }

    #[test]
    fn each_form_of_the_rule() {
        assert_eq!(Target::parse("unix:qmp.sock").unwrap(), Target::Unix("qmp.sock".into()));
        assert_eq!(Target::parse("/run/vm/qmp").unwrap(), Target::Unix("/run/vm/qmp".into()));
        assert_eq!(Target::parse("./a:1").unwrap(), Target::Unix("./a:1".into()));
        assert_eq!(Target::parse("tcp:localhost:4444").unwrap(), tcp("localhost", 4444));
        assert_eq!(Target::parse("127.0.0.1:4444").unwrap(), tcp("127.0.0.1", 4444));
        assert_eq!(Target::parse("[::1]:4444").unwrap(), tcp("::1", 4444));
        assert_eq!(Target::parse("qmp.sock").unwrap(), Target::Unix("qmp.sock".into()));
        assert_eq!(Target::parse("libvirt:web").unwrap(), Target::Libvirt { domain: "web".into(), uri: None });
        assert!(Target::parse("libvirt:").is_err());
    }

    #[test]
    fn malformed_addresses_are_refused_or_read_as_files() {
        assert!(Target::parse("tcp:localhost").is_err());
        assert!(Target::parse("tcp:host:0").is_err());
        assert!(Target::parse("tcp::44").is_err());
        assert!(Target::parse("unix:").is_err());
        assert!(Target::parse("").is_err());
        // A port with a leading plus or zero is not a port: the word is a file name.
        assert_eq!(Target::parse("host:+44").unwrap(), Target::Unix("host:+44".into()));
        assert_eq!(Target::parse("host:044").unwrap(), Target::Unix("host:044".into()));
    }

    #[test]
    fn hosts_are_named_by_their_uris_host() {
        assert_eq!(host_of("qemu:///system"), "localhost");
        assert_eq!(host_of("qemu+tcp://127.0.0.1/system"), "127.0.0.1");
        assert_eq!(host_of("qemu+ssh://root@db.example:2222/system?keyfile=k"), "db.example");
        assert_eq!(host_of("qemu+tcp://[::1]:16509/system"), "::1");
        let uris = |u: &[&str]| u.iter().map(|u| Some(u.to_string())).collect::<Vec<_>>();
        assert_eq!(host_names(&uris(&["qemu:///system", "qemu+tcp://127.0.0.1/system"])), ["localhost", "127.0.0.1"]);
        // Two URIs of one host keep apart by their whole URIs.
        assert_eq!(host_names(&uris(&["qemu:///system", "qemu:///session"])), ["qemu:///system", "qemu:///session"]);
    }
}
