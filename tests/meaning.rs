//! Every line means what its user meant, checked by its effect on a real
//! QEMU rather than by the JSON alone: the `key=value` form of a table name
//! is the QMP command with QMP units, open values are never guessed, HMP's
//! failures fail, transactions are typed, and `--keep-going` reports every
//! bad line.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{Qemu, qmpsh, query, query_with};
use qmpsh::language::version::Version;
use serde_json::json;

/// A paused PC with a spare user netdev, for device hotplug.
fn pc() -> Option<Qemu> {
    Qemu::start(&["-machine", "pc", "-accel", "tcg", "-S", "-m", "64", "-netdev", "user,id=net1"])
}

/// QEMU with a 64 MiB raw image as block node `disk0`.
fn with_disk() -> Option<Qemu> {
    Qemu::start_with(|dir| {
        let image = dir.join("disk.raw");
        std::fs::File::create(&image).unwrap().set_len(64 << 20).unwrap();
        vec!["-blockdev".into(), format!("driver=file,node-name=disk0,filename={}", image.display())]
    })
}

fn disk0(qemu: &Qemu) -> serde_json::Value {
    let nodes = query_with(&qemu.socket, json!({"execute": "query-named-block-nodes"}));
    nodes["return"].as_array().unwrap().iter().find(|n| n["node-name"] == "disk0").unwrap().clone()
}

#[test]
fn a_table_name_with_key_value_arguments_takes_qmp_units() {
    // `block_resize disk0 128` means MB; in qmp-shell's form `size` is
    // bytes, as QMP says, and must not be multiplied by 1 MiB.
    let Some(qemu) = with_disk() else { return };
    let run = qmpsh(&[&qemu.socket_arg()], "block_resize node-name=disk0 size=134217728\n");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(disk0(&qemu)["image"]["virtual-size"], 134217728);
}

#[test]
fn an_open_device_property_reaches_qemu_as_typed() {
    // `addr=0x0a` is slot 0x0a to QEMU only as the string; sent as the
    // number 10 it would be devfn 10 (slot 1, function 2).
    let Some(qemu) = pc() else { return };
    let run = qmpsh(
        &[&qemu.socket_arg()],
        "device_add driver=e1000 id=nic2 netdev=net1 addr=0x0a\nqom-get path=/machine/peripheral/nic2 property=addr\n",
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), ["ok", &(0x0a << 3).to_string()]);
}

#[test]
fn netdev_add_with_key_value_arguments_is_qmp_and_hmp_errors_fail() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let run = qmpsh(&[&qemu.socket_arg()], "netdev_add type=user id=n5\nhmp info network\n");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("n5: index=0,type=user"), "{}", run.stdout);

    // The same words given to HMP are its parse error: a failure, exit 1,
    // and the script stops there.
    let run = qmpsh(&[&qemu.socket_arg()], "hmp netdev_add type=user id=n6\nstop\n");
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        "error: line 1: HMP: netdev_add: extraneous characters at the end of line; Try \"help netdev_add\" for more \
         information\n"
    );
    assert_eq!(common::query(&qemu.socket, "query-status")["return"]["status"], "running");
}

#[test]
fn every_hmp_failure_form_is_an_error() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let script = "hmp nosuch\ninfo nosuch\nhmp info status\nhmp device_add nosuchdev\nhmp x/2x\n";
    let run = qmpsh(&[&qemu.socket_arg(), "--keep-going"], script);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "VM status: running\n");
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 4, "{}", run.stderr);
    assert_eq!(errors[0], "error: line 1: HMP: unknown command: 'nosuch'");
    assert_eq!(errors[1], "error: line 2: HMP: unknown command: 'info nosuch'");
    assert_eq!(errors[2], "error: line 4: HMP: 'nosuchdev' is not a valid device model name");
    assert!(errors[3].contains("Try \"help x\""), "{}", errors[3]);
}

#[test]
fn a_transaction_is_typed_and_may_close_on_its_last_action_line() {
    let Some(qemu) = with_disk() else { return };
    let script = "transaction(\n  block-dirty-bitmap-add node=disk0 name=b0 granularity=0x10000\n  \
                  block-dirty-bitmap-add node=disk0 name=b1 persistent=off )\nstop\n";
    let run = qmpsh(&[&qemu.socket_arg()], script);
    assert_eq!(run.code, 0, "{run:?}");
    let bitmaps = disk0(&qemu)["dirty-bitmaps"].clone();
    let granularity =
        |name: &str| bitmaps.as_array().unwrap().iter().find(|b| b["name"] == name).unwrap()["granularity"].clone();
    assert_eq!(granularity("b0"), 65536);
    assert!(granularity("b1").is_number());
    // The line after the block ran.
    assert_eq!(common::query(&qemu.socket, "query-status")["return"]["status"], "paused");

    let run = qmpsh(&[&qemu.socket_arg()], "transaction( block-dirty-bitmap-ad node=disk0 name=b2 )\n");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("(did you mean `block-dirty-bitmap-add`?)"), "{}", run.stderr);
}

#[test]
fn keep_going_reports_every_bad_line_and_exits_2() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let script = "stop\nqom-get path=\"/machine\ncont\nno-such-command\nqom-get path=/machine property=tpye\n";
    let run = qmpsh(&[&qemu.socket_arg(), "--keep-going"], script);
    assert_eq!(run.code, 2, "{run:?}");
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 3, "{}", run.stderr);
    assert_eq!(errors[0], "error: line 2, column 14: expected a closing \" for this string");
    assert!(errors[1].starts_with("error: line 4: CommandNotFound: "), "{}", errors[1]);
    // A value QEMU refuses is a failed command, not a parse error.
    assert!(errors[2].starts_with("error: line 5: "), "{}", errors[2]);
    // `cont` after the bad line ran.
    assert_eq!(common::query(&qemu.socket, "query-status")["return"]["status"], "running");

    // Only failed commands: exit 1.
    let run = qmpsh(&[&qemu.socket_arg(), "--keep-going"], "no-such-command\nstop\n");
    assert_eq!(run.code, 1, "{run:?}");
}

#[test]
fn verbose_echoes_only_what_the_lines_send() {
    // Typing this line makes qmpsh fetch the schema; -v shows the line's
    // command alone, as qmp-shell's -v does.
    let Some(qemu) = Qemu::start(&[]) else { return };
    let run = qmpsh(&["-v", &qemu.socket_arg(), "-c", "qom-get path=/machine property=type"], "");
    assert_eq!(run.code, 0, "{run:?}");
    let echoed: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("-> ")).collect();
    assert_eq!(echoed.len(), 1, "{}", run.stderr);
    assert!(echoed[0].contains(r#""execute":"qom-get""#), "{}", echoed[0]);
}

#[test]
fn dry_run_takes_a_schema_saved_from_qemu() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let saved = qmpsh(&[&qemu.socket_arg(), "-c", "query-qmp-schema"], "");
    assert_eq!(saved.code, 0);
    let file = qemu.dir.path().join("schema.json");
    std::fs::write(&file, &saved.stdout).unwrap();
    let schema = file.to_str().unwrap();
    let run = qmpsh(&["--dry-run", "--schema", schema, "-c", "device_del id=123", "-c", "balloon value=1M"], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"123\"}}\n{\"execute\":\"balloon\",\"arguments\":{\"value\":1048576}}\n"
    );

    // A file that is not a schema is one clear line, exit 2.
    std::fs::write(&file, "{\"return\": {}}").unwrap();
    let run = qmpsh(&["--dry-run", "--schema", schema, "-c", "stop"], "");
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("is not a saved QMP schema"), "{}", run.stderr);
    let run = qmpsh(&["--schema", schema, &qemu.socket_arg(), "-c", "stop"], "");
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn a_json_value_in_a_positional_form_is_text_unless_j() {
    // As HMP reads it, `[false]` after the property is text, which a
    // boolean refuses; with `-j` it is JSON, a list, which QEMU refuses.
    // `[false]` must never become `true`, and the property keeps its value.
    let Some(qemu) = Qemu::start(&[]) else { return };
    let script = "qom-set /machine dump-guest-core false\nqom-set /machine dump-guest-core [false]\n";
    let run = qmpsh(&[&qemu.socket_arg(), "-v"], script);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("for `dump-guest-core`, not `[false]`"), "{}", run.stderr);
    let run = qmpsh(&[&qemu.socket_arg(), "-v", "-c", "qom-set -j /machine dump-guest-core [false]"], "");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(r#""value":[false]"#), "{}", run.stderr);
    let value = query_with(
        &qemu.socket,
        json!({"execute": "qom-get", "arguments": {"path": "/machine", "property": "dump-guest-core"}}),
    );
    assert_eq!(value["return"], false);
}

#[test]
fn a_listing_that_names_a_device_error_is_not_a_failure() {
    // Only HMP's own failure forms fail; `Error:` later in a listing is data.
    let Some(qemu) = Qemu::start(&["-chardev", "null,id=Error"]) else { return };
    let run = qmpsh(&[&qemu.socket_arg()], "hmp info chardev\n");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("Error: filename=null"), "{}", run.stdout);
}

#[test]
fn a_command_only_hmp_has_runs_without_the_hmp_prefix() {
    let Some(qemu) = pc() else { return };
    let dump = qemu.dir.path().join("mem.bin");
    // memsave is HMP's alone; chardev-add with a positional QemuOpts
    // string is HMP's form of a name QMP has too; `help info` is HMP's
    // help, which QMP lacks.
    let script = format!("memsave 0 4096 \"{}\"\nchardev-add null,id=c0\nhelp info\n", dump.display());
    let run = qmpsh(&[&qemu.socket_arg()], &script);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(std::fs::metadata(&dump).map(|m| m.len()).ok(), Some(4096));
    let chardevs = query_with(&qemu.socket, json!({"execute": "query-chardev"}));
    assert!(chardevs["return"].as_array().unwrap().iter().any(|c| c["label"] == "c0"), "{chardevs}");
    assert!(run.stdout.contains("info status  -- show the current VM status"), "{}", run.stdout);

    // A name neither QMP nor HMP has is refused before anything is sent,
    // with the nearest name, in a script as at the prompt.
    let run = qmpsh(&[&qemu.socket_arg(), "-v"], "inof status\n");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("line 1, column 1: expected a command QMP or HMP has, not `inof` (did you mean `info`?)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("inof\""), "nothing about inof was sent: {}", run.stderr);
}

#[test]
fn hmp_failures_in_a_commands_own_words_are_errors() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let script =
        "drive_del nosuch\nhmp sendkey foo\ntrace-event nosuch on\nx/4x 0\ngdbserver bogus:bogus\nhmp info status\n";
    let run = qmpsh(&[&qemu.socket_arg(), "--keep-going"], script);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "VM status: running\n");
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        errors[..4],
        [
            "error: line 1: HMP: Device 'nosuch' not found",
            "error: line 2: HMP: invalid parameter: foo",
            "error: line 3: HMP: unknown event \"nosuch\"",
            "error: line 4: HMP: Can not dump without CPU",
        ],
        "{}",
        run.stderr
    );
    // QEMU 10.0 words this one as a warning first ("warning: gdbstub:
    // meaningless..."); it is a failure all the same, on one line.
    assert_eq!(errors.len(), 5, "{}", run.stderr);
    assert!(errors[4].starts_with("error: line 5: HMP: "), "{}", errors[4]);
    assert!(errors[4].ends_with("Could not open gdbserver on device 'bogus:bogus'"), "{}", errors[4]);
}

#[test]
fn netdev_add_in_its_human_form_is_qmp_too() {
    // QMP can do it, so QMP does it: a QemuOpts item where QMP wants a
    // list (`hostfwd`) is a list of one, and QEMU's own errors come back.
    let Some(qemu) = Qemu::start(&[]) else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script =
        format!("netdev_add user,id=n7,hostfwd=tcp:127.0.0.1:{port}-:22\nhmp info usernet\nnetdev_add user,id=n7\n");
    let run = qmpsh(&[&qemu.socket_arg(), "-v"], &script);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            r#"{{"execute":"netdev_add","arguments":{{"type":"user","id":"n7","hostfwd":[{{"str":"tcp:127.0.0.1:{port}-:22"}}]}}}}"#
        )),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains(&format!("127.0.0.1 {port}")), "{}", run.stdout);
    assert!(run.stderr.contains("error: line 3: GenericError: Duplicate ID 'n7'"), "{}", run.stderr);
}

#[test]
fn a_table_argument_this_qemu_lacks_is_refused_naming_its_version() {
    // Block migration (`migrate -b`/`-i`, QMP's blk and inc) went in QEMU
    // 9.1, HMP's `singlestep` in 9.0 (renamed `one-insn-per-tb` in 8.1).
    // On a QEMU without one, every form of the line is refused before
    // anything is sent, naming the version and what to use instead; on a
    // QEMU with it, the line goes to QEMU as typed.
    let Some((qemu, second)) = Qemu::with_second_monitor(&[]) else { return };
    let version = Version::from_json(&query(&second, "query-version")["return"]["qemu"]).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let migrate = "mirror the disks with blockdev-mirror to an NBD export on the destination, then migrate";
    let block_migration = version < Version::new(9, 1, 0);
    let cases = [
        (&[][..], format!("migrate -b tcp:127.0.0.1:{port}"), "-b", "`migrate -b` (removed in QEMU 9.1)", migrate),
        (
            &[],
            format!("migrate uri=tcp:127.0.0.1:{port} inc=on"),
            "inc=",
            "`migrate inc` (removed in QEMU 9.1)",
            migrate,
        ),
        (&[], format!("hmp migrate -d -i tcp:127.0.0.1:{port}"), "-i", "`migrate -i` (removed in QEMU 9.1)", migrate),
        (&["-H"], format!("  migrate -b tcp:127.0.0.1:{port}"), "-b", "`migrate -b` (removed in QEMU 9.1)", migrate),
    ];
    for (options, line, typed, what, instead) in cases {
        let run = qmpsh(&[&[qemu.socket_arg().as_str(), "-v", "-c", &line], options].concat(), "");
        if block_migration {
            assert!(run.stderr.contains("\"execute\":"), "sent: {run:?}");
            assert_eq!(run.code, 0, "{run:?}");
            // The next case starts a migration of its own once this one has
            // failed (nothing listens on the port).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while ["setup", "active"]
                .contains(&query(&second, "query-migrate")["return"]["status"].as_str().unwrap_or(""))
            {
                assert!(std::time::Instant::now() < deadline, "the migration to a closed port did not end");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            continue;
        }
        let column = line.find(typed).unwrap() + 1;
        assert_eq!(run.code, 2, "{line}: {run:?}");
        assert_eq!(run.stderr, format!("error: line 1, column {column}: QEMU {version} has no {what}: {instead}\n"));
        // Nothing went to QEMU: no migration has begun.
        assert_eq!(query(&second, "query-migrate")["return"], json!({}), "{line}");
    }
    let renamed = [
        ("singlestep off", version < Version::new(9, 0, 0), "(removed in QEMU 9.0): its name is one-insn-per-tb"),
        ("one-insn-per-tb off", version >= Version::new(8, 1, 0), "(added in QEMU 8.1): its name is singlestep"),
    ];
    for (line, has, why) in renamed {
        for options in [&[][..], &["-H"]] {
            let run = qmpsh(&[&[qemu.socket_arg().as_str(), "-c", line], options].concat(), "");
            if has {
                assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{line}: {run:?}");
            } else {
                let word = line.split(' ').next().unwrap();
                let said = format!("error: line 1, column 1: QEMU {version} has no `{word}` {why}");
                assert_eq!(run.code, 2, "{line}: {run:?}");
                assert!(run.stderr.starts_with(&said), "{line}: {}", run.stderr);
            }
        }
    }
}

#[test]
fn a_positional_value_may_contain_an_equals_sign_as_in_hmp() {
    // HMP reads `console=ttyS0` after the property as the value; so does
    // qmpsh, once the line is in HMP's positional form.
    // The value is the rest of the line, as HMP's qom-set reads it.
    let Some(qemu) = pc() else { return };
    let append = || {
        query_with(&qemu.socket, json!({"execute": "qom-get", "arguments": {"path": "/machine", "property": "append"}}))
    };
    let run = qmpsh(&[&qemu.socket_arg()], "qom-set /machine append console=ttyS0\n");
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{run:?}");
    assert_eq!(append()["return"], "console=ttyS0");
    let run = qmpsh(&[&qemu.socket_arg()], "qom-set /machine append console=ttyS0 root=/dev/vda quiet\n");
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{run:?}");
    assert_eq!(append()["return"], "console=ttyS0 root=/dev/vda quiet");
}

#[test]
fn hints_ignore_case_and_know_hmps_info_topics() {
    let Some(qemu) = Qemu::start(&[]) else { return };
    let run = qmpsh(&[&qemu.socket_arg(), "--keep-going"], "QUERY-STATUS\ninfo stauts\ninfo zzzzzzzz\n");
    assert_eq!(run.code, 1, "{run:?}");
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        errors,
        [
            "error: line 1: CommandNotFound: The command QUERY-STATUS has not been found (did you mean query-status?)",
            "error: line 2: HMP: unknown command: 'info stauts' (did you mean `info status`?)",
            "error: line 3: HMP: unknown command: 'info zzzzzzzz'",
        ]
    );
}

#[test]
fn hmps_help_forms_print_what_hmp_prints() {
    // QMP has no help form: these would be a device of type `help`.
    let Some(qemu) = Qemu::start(&[]) else { return };
    let socket = qemu.socket_arg();
    for (line, shows) in [
        ("device_add help", "Network devices:"),
        ("device_add ?", "Network devices:"),
        ("device_add e1000,help", "e1000 options:"),
        ("object_add help", "List of user creatable objects:"),
        ("object_add iothread,help", "iothread options:"),
        ("netdev_add help", "Available netdev backend types:"),
        ("info", "info status"),
    ] {
        let run = qmpsh(&[&socket, "-v", "-c", line], "");
        assert_eq!((run.code, run.stderr.lines().count()), (0, 1), "{line}: {run:?}");
        assert!(run.stderr.contains(&format!(r#""command-line":"{line}""#)), "{line} goes to HMP: {}", run.stderr);
        assert!(run.stdout.contains(shows), "{line}: {}", run.stdout);
    }
}
