//! Which targets a command line with several names: the words as given,
//! `--all` (every running VM qmpsh started), and `libvirt:PATTERN` matched
//! against the domains of each `--connect` host. Each becomes a
//! [`Member`] with a name for its lines; a host that cannot be reached is
//! a member too, which fails, so the others still run.

use std::collections::HashSet;
use std::time::Duration;

use super::glob::is_glob;
use super::libvirt;
use crate::error::Error;
use crate::shell::attach;
use crate::target::Target;
use crate::vm::{self, VmDir};

/// One target of several, and the name its lines carry.
pub struct Member {
    pub name: String,
    pub reach: Reach,
}

/// How a member is reached (without libvirt, only as a TARGET).
#[cfg_attr(not(feature = "libvirt"), allow(dead_code))]
pub enum Reach {
    /// As a single TARGET is.
    Target(Target),
    /// A libvirt domain on a connection its host's members share.
    Domain(libvirt::DomainAt),
    /// Not at all: its libvirt host could not be reached.
    Unreachable(Error),
}

/// What the command line names: TARGET words, `--all`, `--connect` URIs.
pub struct Named<'a> {
    pub words: &'a [String],
    pub all: bool,
    pub uris: &'a [String],
}

impl Named<'_> {
    /// Whether these are several targets, or may be: more than one word,
    /// `--all`, a libvirt pattern, or several libvirt hosts.
    pub fn several(&self) -> bool {
        self.words.len() > 1 || self.all || self.uris.len() > 1 || self.words.iter().any(|w| pattern_of(w).is_some())
    }
}

/// The glob of a `libvirt:PATTERN` word, when it has one.
fn pattern_of(word: &str) -> Option<&str> {
    word.strip_prefix("libvirt:").filter(|pattern| is_glob(pattern))
}

/// Every member the command line names, in its order: a word's matches
/// in the order of the hosts, each host's by name. The same target named
/// twice runs once. A word that matches nothing is a usage error.
pub fn members(named: &Named, asked: Option<Duration>) -> Result<Vec<Member>, Error> {
    let mut members = Vec::new();
    if named.all {
        let running: Vec<VmDir> = VmDir::all()?.into_iter().filter(|vm| vm::running(vm).is_some()).collect();
        if running.is_empty() {
            return Err(Error::Usage("--all: no VM started by `qmpsh vm start` is running (qmpsh vm list)".into()));
        }
        for vm in running {
            members.push(Member { reach: Reach::Target(Target::Unix(vm.socket())), name: vm.name });
        }
    }
    let domains: Vec<&str> = named.words.iter().filter_map(|w| w.strip_prefix("libvirt:")).collect();
    if domains.is_empty() && !named.uris.is_empty() {
        let uri = named.uris.first().map_or("", String::as_str);
        return Err(Error::Usage(format!("--connect {uri} is a libvirt URI: name the VMs as libvirt:DOMAIN")));
    }
    // Said before any host is waited for.
    let targets: Vec<Target> =
        named.words.iter().filter(|w| !w.starts_with("libvirt:")).map(|w| resolve(w)).collect::<Result<_, _>>()?;
    let mut targets = targets.into_iter();
    let hosts = if domains.is_empty() { Vec::new() } else { libvirt::hosts(named.uris, asked)? };
    let mut unreachable_said = HashSet::new();
    for word in named.words {
        match word.strip_prefix("libvirt:") {
            Some(domain) => {
                let found = libvirt::matches(&hosts, domain, is_glob(domain), &mut unreachable_said);
                if found.is_empty() {
                    return Err(Error::Usage(libvirt::none_matched(&hosts, domain, is_glob(domain))));
                }
                members.extend(found);
            }
            None => {
                // Resolved above, in this order.
                if let Some(target) = targets.next() {
                    members.push(Member { name: word.clone(), reach: Reach::Target(target) });
                }
            }
        }
    }
    Ok(once_each(members))
}

/// A TARGET word of several. One that names no VM and no file is a
/// mistake in the command line, as a pattern that matches nothing is; a
/// socket path that is gone is that target's failure, when it is reached.
fn resolve(word: &str) -> Result<Target, Error> {
    attach::resolve(word).map_err(|e| match e {
        Error::Connection(why) => Error::Usage(why),
        other => other,
    })
}

/// `members` without repeats: a target named twice (a VM by name and by
/// `--all`) runs once, under its first name; two targets that share a
/// name keep them apart by a number.
fn once_each(members: Vec<Member>) -> Vec<Member> {
    let mut seen = HashSet::new();
    let mut names = HashSet::new();
    let mut kept = Vec::new();
    for mut member in members {
        let key = match &member.reach {
            Reach::Target(target) => format!("{target:?}"),
            Reach::Domain(domain) => libvirt::key(domain),
            Reach::Unreachable(_) => format!("unreachable {}", member.name),
        };
        if !seen.insert(key) {
            continue;
        }
        let base = member.name.clone();
        let mut n = 1;
        while !names.insert(member.name.clone()) {
            n += 1;
            member.name = format!("{base}#{n}");
        }
        kept.push(member);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_means_more_than_one_word_all_a_pattern_or_hosts() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let one = words(&["web"]);
        let uri = words(&["qemu:///system"]);
        let two_uris = words(&["a", "b"]);
        assert!(!Named { words: &one, all: false, uris: &[] }.several());
        assert!(!Named { words: &words(&["libvirt:web"]), all: false, uris: &uri }.several());
        assert!(Named { words: &words(&["web", "db"]), all: false, uris: &[] }.several());
        assert!(Named { words: &[], all: true, uris: &[] }.several());
        assert!(Named { words: &words(&["libvirt:web-*"]), all: false, uris: &[] }.several());
        assert!(Named { words: &words(&["libvirt:web"]), all: false, uris: &two_uris }.several());
    }
}
