//! What `vm list` and `vm status` tell of a VM, as typed records: the
//! text rows read their fields, and `--json` writes them as they are.

use serde::{Deserialize, Serialize};

use super::state::Kept;

/// One VM, as `vm list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    /// Its QEMU's, while it runs.
    pub pid: Option<i32>,
    /// running, paused, shut down, busy (another client holds the
    /// monitor) or dead.
    pub state: String,
    /// Seconds since it started, while it runs.
    pub uptime: Option<u64>,
    pub socket: String,
    /// What `vm start` chose: accel, accel_why, ssh_port.
    #[serde(flatten)]
    pub chosen: Kept,
}

/// One VM, as `vm status` shows it: what `vm list` shows, and what its
/// guest agent tells (none while it is dead, or when no agent answers).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub report: Report,
    pub agent: Option<Agent>,
}

/// What a guest agent tells of the guest.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Agent {
    /// Another client holds its channel (which takes one at a time):
    /// written `{"held": true}`.
    Held { held: bool },
    Guest {
        hostname: Option<String>,
        /// The OS's pretty name, else its name.
        os: Option<String>,
        addresses: Vec<String>,
    },
}

/// `guest-get-host-name`'s reply.
#[derive(Deserialize)]
pub struct HostName {
    #[serde(rename = "host-name")]
    pub host_name: String,
}

/// `guest-get-osinfo`'s reply, of which qmpsh shows a name.
#[derive(Deserialize)]
pub struct OsInfo {
    #[serde(rename = "pretty-name")]
    pub pretty_name: Option<String>,
    pub name: Option<String>,
}

/// One of `guest-network-get-interfaces`'s interfaces.
#[derive(Deserialize)]
pub struct Interface {
    #[serde(rename = "ip-addresses", default)]
    pub ip_addresses: Vec<IpAddress>,
}

#[derive(Deserialize)]
pub struct IpAddress {
    #[serde(rename = "ip-address")]
    pub ip_address: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--json` is read by scripts: its fields and their order are those
    /// `vm status` always wrote.
    #[test]
    fn the_json_keeps_its_fields_and_their_order() {
        let chosen = Kept { accel: Some("tcg".into()), accel_why: Some("asked".into()), ssh_port: Some(2222) };
        let report = Report {
            name: "web".into(),
            pid: Some(7),
            state: "running".into(),
            uptime: Some(3),
            socket: "/s/web/qmp.sock".into(),
            chosen,
        };
        let fields = r#""name":"web","pid":7,"state":"running","uptime":3,"socket":"/s/web/qmp.sock","accel":"tcg","accel_why":"asked","ssh_port":2222"#;
        assert_eq!(serde_json::to_string(&report).unwrap(), format!("{{{fields}}}"));
        let held = Status { report: report.clone(), agent: Some(Agent::Held { held: true }) };
        assert_eq!(serde_json::to_string(&held).unwrap(), format!(r#"{{{fields},"agent":{{"held":true}}}}"#));
        let guest = Agent::Guest { hostname: Some("h".into()), os: None, addresses: vec!["10.0.0.2".into()] };
        let status = Status { report, agent: Some(guest) };
        let agent = r#""agent":{"hostname":"h","os":null,"addresses":["10.0.0.2"]}"#;
        assert_eq!(serde_json::to_string(&status).unwrap(), format!("{{{fields},{agent}}}"));
    }
}
