//! Live completion of values on qmpsh's own command line (`qmpsh vm stop
//! <Tab>`): the names of the VMs qmpsh started, libvirt's domains after
//! `libvirt:`, and paths for a TARGET; subcommands and flag values come
//! from clap's definition itself. The shell asks the binary at each Tab
//! (clap_complete's dynamic completion, `COMPLETE=bash qmpsh`).

use std::ffi::OsStr;

use clap_complete::engine::{CompletionCandidate, PathCompleter, ValueCompleter};

use crate::vm::{VmDir, state_path};

/// The VMs qmpsh started whose names begin with `current`. A state folder
/// that does not exist yet is not made by a Tab.
pub fn vm_names(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(current) = current.to_str() else { return Vec::new() };
    if !state_path().is_ok_and(|dir| dir.exists()) {
        return Vec::new();
    }
    VmDir::all()
        .unwrap_or_default()
        .into_iter()
        .filter(|vm| vm.name.starts_with(current))
        .map(|vm| CompletionCandidate::new(vm.name).help(Some("a VM qmpsh started".into())))
        .collect()
}

/// A TARGET: after `libvirt:`, the domains of libvirt's default URI;
/// else the VMs qmpsh started and paths.
pub fn targets(current: &OsStr) -> Vec<CompletionCandidate> {
    if let Some(domain) = current.to_str().and_then(|text| text.strip_prefix("libvirt:")) {
        return domains(domain);
    }
    let mut candidates = vm_names(current);
    candidates.extend(PathCompleter::any().complete(current));
    candidates
}

/// How long a Tab waits for libvirt before it offers no domains.
#[cfg(feature = "libvirt")]
const COMPLETION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The running domains of libvirt's default URI whose names begin with
/// `current`, as `libvirt:NAME`.
#[cfg(feature = "libvirt")]
fn domains(current: &str) -> Vec<CompletionCandidate> {
    let Ok(connect) = crate::qmp::libvirt::open(None, crate::qmp::libvirt::Patience::Asked(Some(COMPLETION_WAIT)))
    else {
        return Vec::new();
    };
    let domains = crate::qmp::libvirt::running_domains(&connect).unwrap_or_default();
    domains
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with(current))
        .map(|name| CompletionCandidate::new(format!("libvirt:{name}")).help(Some("a domain libvirt runs".into())))
        .collect()
}

#[cfg(not(feature = "libvirt"))]
fn domains(_: &str) -> Vec<CompletionCandidate> {
    Vec::new()
}
