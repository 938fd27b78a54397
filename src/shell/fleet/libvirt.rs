//! `libvirt:PATTERN` over one or more `--connect` hosts: one connection
//! per host, opened side by side, which serves all of its domains; the
//! running domains a pattern matches, each named `DOMAIN`, or
//! `HOST/DOMAIN` when there are several hosts.

#[cfg(feature = "libvirt")]
pub use with::*;
#[cfg(not(feature = "libvirt"))]
pub use without::*;

#[cfg(feature = "libvirt")]
mod with {
    use std::collections::HashSet;
    use std::time::Duration;

    use virt::domain::Domain;

    use crate::error::Error;
    use crate::qmp::libvirt::{Patience, Shared};
    use crate::qmp::{self, Monitor};
    use crate::shell::fleet::glob;
    use crate::shell::fleet::targets::{Member, Reach};
    use crate::target::{each_uri_once, host_names};

    /// A domain, on its host's shared connection.
    pub struct DomainAt {
        shared: Shared,
        domain: Domain,
        /// Its host's URI and its name, which tell it from every other.
        key: String,
        /// Listed as running a moment ago (a pattern's match): not asked
        /// again.
        listed_running: bool,
    }

    /// A `--connect` host: reached, with its running domains by name, or
    /// why not.
    pub struct Host {
        label: String,
        uri: Option<String>,
        reached: Reached,
    }

    /// A host's shared connection and its running domains by name, or
    /// why not.
    type Reached = Result<(Shared, Vec<(String, Domain)>), String>;

    /// Connects to every host at once (see
    /// [`on_each_host`](qmp::libvirt::on_each_host)), each reached, listed
    /// and subscribed to under one deadline: a host that stops answering at
    /// any of the three is left behind.
    pub fn hosts(uris: &[String], asked: Option<Duration>) -> Result<Vec<Host>, Error> {
        let uris: Vec<Option<String>> =
            if uris.is_empty() { vec![None] } else { each_uri_once(uris).into_iter().map(Some).collect() };
        let labels = host_names(&uris);
        let reached = qmp::libvirt::on_each_host(&uris, Patience::Asked(asked), reach, Err);
        Ok(labels
            .into_iter()
            .zip(uris)
            .zip(reached)
            .map(|((label, uri), reached)| Host { label, uri, reached })
            .collect())
    }

    /// A shared connection to `uri` and its running domains, sorted by
    /// name.
    fn reach(uri: Option<&str>) -> Reached {
        let connect = qmp::libvirt::open_waiting(uri).map_err(|e| e.to_string())?;
        let named = qmp::libvirt::running_domains(&connect).map_err(|e| {
            let uri = qmp::libvirt::uri_in_words(uri);
            format!("libvirt at {uri} cannot list its domains: {}", crate::visible::line(e.message()))
        })?;
        let shared = Shared::new(&connect).map_err(|e| e.to_string())?;
        Ok((shared, named))
    }

    /// The members `domain` names on `hosts`: with `glob`, every running
    /// domain it matches; else the domain of that name or UUID, running or
    /// not (a row then says it is not running). A host that could not be
    /// reached is one failing member, once (`said` remembers).
    pub fn matches(hosts: &[Host], domain: &str, glob: bool, said: &mut HashSet<String>) -> Vec<Member> {
        let several = hosts.len() > 1;
        let mut members = Vec::new();
        for host in hosts {
            let name = |domain: &str| if several { format!("{}/{domain}", host.label) } else { domain.to_string() };
            let (shared, running) = match &host.reached {
                Ok(reached) => reached,
                Err(why) => {
                    if said.insert(host.label.clone()) {
                        let reach = Reach::Unreachable(Error::Connection(why.clone()));
                        members.push(Member { name: host.label.clone(), reach });
                    }
                    continue;
                }
            };
            let uri = shared.connect().uri().unwrap_or_default();
            let mut add = |shown: &str, found: &Domain, listed_running: bool| {
                let key = format!("{uri}/{}", found.uuid_string().unwrap_or_default());
                let at = DomainAt { shared: shared.clone(), domain: found.clone(), key, listed_running };
                members.push(Member { name: name(shown), reach: Reach::Domain(at) });
            };
            if glob {
                for (shown, found) in running.iter().filter(|(n, _)| glob::glob(domain, n)) {
                    add(shown, found, true);
                }
            } else if let Ok(found) = qmp::libvirt::lookup(shared.connect(), domain) {
                // Named by its name also when given by UUID.
                let shown = found.name().unwrap_or_else(|_| domain.to_string());
                add(&shown, &found, false);
            }
        }
        members
    }

    /// Why `domain` named nothing on `hosts`.
    pub fn none_matched(hosts: &[Host], domain: &str, glob: bool) -> String {
        let uris: Vec<String> = hosts.iter().map(|h| qmp::libvirt::uri_in_words(h.uri.as_deref())).collect();
        let at = uris.join(", ");
        if glob {
            format!("libvirt:{domain} matches no running domain at {at}")
        } else {
            format!("libvirt:{domain}: no domain of that name or UUID at {at}")
        }
    }

    /// What tells this domain from every other.
    pub fn key(domain: &DomainAt) -> String {
        domain.key.clone()
    }

    /// When dropped, gives the hosts' connections, let go of by then, a
    /// moment to end their registrations (see
    /// [`qmp::libvirt::released_within`]).
    pub struct LetGo;

    impl Drop for LetGo {
        fn drop(&mut self) {
            qmp::libvirt::released_within(LET_GO);
        }
    }

    /// How long the end of a run waits for that: about a millisecond a
    /// host when it answers.
    const LET_GO: Duration = Duration::from_millis(500);

    /// A monitor on the domain, through its host's connection.
    pub fn attach(at: DomainAt) -> Result<Monitor, Error> {
        if !at.listed_running && !at.domain.is_active().unwrap_or(false) {
            let name = crate::visible::line(&at.domain.name().unwrap_or_default());
            return Err(qmp::libvirt::not_running(at.shared.connect(), None, &name).into());
        }
        Ok(qmp::libvirt::attach_shared(&at.shared, at.domain)?)
    }
}

#[cfg(not(feature = "libvirt"))]
mod without {
    use std::collections::HashSet;
    use std::time::Duration;

    use crate::error::{Error, WITHOUT_LIBVIRT};
    use crate::qmp::Monitor;
    use crate::shell::fleet::targets::Member;

    /// No domain can be named without libvirt.
    pub enum DomainAt {}

    /// Never any host: a `libvirt:` word is refused.
    pub enum Host {}

    pub fn hosts(_: &[String], _: Option<Duration>) -> Result<Vec<Host>, Error> {
        Err(Error::Usage(WITHOUT_LIBVIRT.into()))
    }

    pub fn matches(_: &[Host], _: &str, _: bool, _: &mut HashSet<String>) -> Vec<Member> {
        Vec::new()
    }

    pub fn none_matched(_: &[Host], _: &str, _: bool) -> String {
        WITHOUT_LIBVIRT.into()
    }

    pub fn key(domain: &DomainAt) -> String {
        match *domain {}
    }

    /// Nothing to let go of.
    pub struct LetGo;

    pub fn attach(domain: DomainAt) -> Result<Monitor, Error> {
        match domain {}
    }
}
