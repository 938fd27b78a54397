//! The command table (grammar/commands.json) checked as data, then against
//! a real QEMU: every QMP command it names exists, and every example's
//! translation has a shape QEMU accepts.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::HashSet;

use common::{Qemu, qmpsh, query};
use qmpsh::table::{ArgType, table};

#[test]
fn names_are_unique_and_examples_use_their_own_entry() {
    let mut seen = HashSet::new();
    for entry in table() {
        for name in entry.names() {
            assert!(seen.insert(name.to_string()), "{name} appears twice in the table");
        }
        let word = entry.example.split([' ', '/']).next().unwrap();
        let typed = if entry.name.starts_with("info ") { entry.example } else { word };
        assert!(entry.names().any(|n| n == typed), "{}: example {:?} uses another command", entry.name, entry.example);
        assert!(!entry.help.is_empty(), "{} has no help", entry.name);
        let flags_are_switches_or_options = entry.args.iter().all(|a| a.flag.is_none() || a.optional);
        assert!(flags_are_switches_or_options, "{}: a flag argument must be optional", entry.name);
        let opts = entry.args.iter().filter(|a| a.kind == ArgType::Opts).count();
        assert!(opts <= 1, "{}: at most one QemuOpts argument", entry.name);
    }
}

#[test]
fn every_example_translates_without_a_connection() {
    for entry in table() {
        let run = qmpsh(&["--dry-run"], &format!("{}\n", entry.example));
        assert_eq!(run.code, 0, "{}: {}", entry.example, run.stderr);
        let message: serde_json::Value = serde_json::from_str(run.stdout.trim_end()).unwrap();
        let expected = entry.qmp.unwrap_or("human-monitor-command");
        assert_eq!(message["execute"], expected, "{}", entry.example);
    }
}

#[test]
fn every_qmp_command_in_the_table_exists_in_qemu() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let reply = query(&qemu.socket, "query-commands");
    let known: HashSet<&str> = reply["return"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    let mut missing: Vec<&str> = table().iter().filter_map(|e| e.qmp).filter(|c| !known.contains(c)).collect();
    if !known.contains("human-monitor-command") {
        missing.push("human-monitor-command");
    }
    assert!(missing.is_empty(), "QEMU lacks: {missing:?}");
}

/// What QEMU says when a message has the wrong shape, as opposed to a
/// runtime failure such as a missing device.
fn is_shape_error(stderr: &str) -> bool {
    ["CommandNotFound", "Parameter '", "Invalid parameter", "unknown command"].iter().any(|s| stderr.contains(s))
}

#[test]
fn qemu_accepts_the_shape_of_every_example() {
    let Some(mut qemu) = Qemu::start(&[]) else {
        return;
    };
    let socket = qemu.socket_arg();
    let (quit, others): (Vec<_>, Vec<_>) = table().iter().partition(|e| e.qmp == Some("quit"));
    let mut refused = Vec::new();
    for entry in others {
        let run = qmpsh(&[&socket, "-c", entry.example], "");
        // 0: it worked; 1: QEMU refused at run time (no such device, ...).
        let acceptable = matches!(run.code, 0 | 1) && !is_shape_error(&run.stderr);
        if !acceptable {
            refused.push(format!("{} (exit {}): {}", entry.example, run.code, run.stderr.trim_end()));
        }
    }
    assert!(refused.is_empty(), "QEMU or qmpsh refused the shape of:\n{}", refused.join("\n"));
    for entry in quit {
        assert_eq!(qmpsh(&[&socket, "-c", entry.example], "").code, 0);
    }
    assert!(qemu.exits_within(std::time::Duration::from_secs(5)));
}
