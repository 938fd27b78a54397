//! The live schema against a real QEMU: arguments typed as QEMU declares
//! them, and mistakes refused (exit 2) before anything is sent.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{Qemu, qmpsh};

/// Runs `line` with `-v`, so stderr shows what was sent.
fn run(qemu: &Qemu, line: &str) -> common::Run {
    qmpsh(&["-v", &qemu.socket_arg(), "-c", line], "")
}

fn sent_command(run: &common::Run, command: &str) -> bool {
    run.stderr.contains(&format!("\"execute\":\"{command}\""))
}

#[test]
fn a_number_for_a_str_argument_stays_a_string() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let result = run(&qemu, "object-del id=123");
    assert!(result.stderr.contains(r#"{"execute":"object-del","arguments":{"id":"123"}"#), "{}", result.stderr);
    // QEMU took the string and looked for the object: a runtime error, not a type error.
    assert_eq!(result.code, 1);
    assert!(
        result.stderr.contains("error: line 1: GenericError") && result.stderr.contains("123"),
        "{}",
        result.stderr
    );
}

#[test]
fn mistakes_are_refused_before_sending_with_exit_2() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let cases = [
        ("qom-get path=/machine propery=type", "qom-get", "did you mean `property`?"),
        ("qom-get path=/machine", "qom-get", "argument `property`"),
        ("object-add qom-type=memry-backend-ram id=m0", "object-add", "expected `memory-backend-ram` for `qom-type`"),
        ("blockdev-add driver=null-co node-name=n0 size=abc", "blockdev-add", "an integer for `size`, not `abc`"),
        ("blockdev-add driver=null-co node-name=n0 read-only=maybe", "blockdev-add", "true or false"),
    ];
    for (line, command, message) in cases {
        let result = run(&qemu, line);
        assert_eq!(result.code, 2, "{line}: {}", result.stderr);
        assert!(result.stderr.contains(message), "{line}: {}", result.stderr);
        assert!(result.stderr.contains("line 1, column "), "{line}: {}", result.stderr);
        assert!(!sent_command(&result, command), "{line} was sent: {}", result.stderr);
    }
}

#[test]
fn an_unknown_command_is_sent_as_qmp_shell_sends_it_and_gets_a_hint() {
    // With arguments or without, the same: QEMU says it has no such
    // command, and qmpsh adds what was probably meant.
    let Some(qemu) = Qemu::start(&[]) else { return };
    for line in ["query-stauts", "query-stauts x=1"] {
        let result = run(&qemu, line);
        assert_eq!(result.code, 1, "{line}: {}", result.stderr);
        assert!(sent_command(&result, "query-stauts"), "{line}: {}", result.stderr);
        assert!(result.stderr.contains("error: line 1: CommandNotFound: "), "{line}: {}", result.stderr);
        assert!(result.stderr.contains("(did you mean query-status?)"), "{line}: {}", result.stderr);
    }
}

#[test]
fn schema_types_reach_qemu_working() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let script = "\
object_add memory-backend-ram,id=m1,size=4M,prealloc=off
object-add qom-type=memory-backend-ram id=m2 size=0x200000 share=true
qom-get /objects/m1 size
qom-get path=/objects/m2 property=share
blockdev-add driver=null-co node-name=n0 size=1M read-zeroes=on
";
    let result = qmpsh(&[&qemu.socket_arg()], script);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_eq!(result.stdout, "ok\nok\n4194304\ntrue\nok\n");
}

#[test]
fn dot_schema_describes_a_command() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let result = qmpsh(&[&qemu.socket_arg(), "-c", ".schema qom-get", "-c", ".schema eject"], "");
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(result.stdout.starts_with("qom-get\n  path: string\n  property: string\n"), "{}", result.stdout);
    assert!(result.stdout.contains("  force: bool (optional)\n"), "{}", result.stdout);
    let unknown = qmpsh(&[&qemu.socket_arg(), "-c", ".schema qom-gte"], "");
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("did you mean qom-get?"), "{}", unknown.stderr);
}
