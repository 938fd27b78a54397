//! The command line itself: help, usage errors and the TARGET rule, none of
//! which needs QEMU.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{FakeServer, expect, handshake, qmpsh, qmpsh_command, qmpsh_in, send};
use qmpsh::language::version;

#[test]
fn help_lists_the_exit_codes_and_the_target_rule() {
    let run = qmpsh(&["--help"], "");
    assert_eq!(run.code, 0);
    for needle in
        ["Exit codes:", "0  success", "1  a command got a QMP error", "2  usage", "3  connection", "4  timeout"]
    {
        assert!(run.stdout.contains(needle), "--help lacks {needle:?}:\n{}", run.stdout);
    }
    for needle in ["unix:PATH", "tcp:HOST:PORT", "[IPV6]:PORT", "fits two rules", "is an error"] {
        assert!(run.stdout.contains(needle), "--help lacks {needle:?}:\n{}", run.stdout);
    }
}

#[test]
fn no_target_is_a_usage_error() {
    let run = qmpsh(&["-c", "stop"], "");
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr, "qmpsh: no TARGET: name a QMP socket path, HOST:PORT or VM (see --help)\n");
}

#[test]
fn a_file_named_like_host_port_makes_the_target_ambiguous() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vm:4444"), "").unwrap();
    let run = qmpsh_in(Some(dir.path()), &["vm:4444", "-c", "stop"], "");
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("ambiguous") && run.stderr.contains("unix:vm:4444"), "{}", run.stderr);
}

#[test]
fn a_command_after_an_option_is_named_not_taken_for_vms() {
    let (here, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let run = |args: &[&str]| {
        let out = qmpsh_command(args).current_dir(here.path()).env("QMPSH_STATE_DIR", state.path()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stderr) = run(&["--json", "vm", "list"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr,
        "qmpsh: no VM or socket is called vm: for qmpsh's command, name it first and give its options after it \
         (qmpsh vm list OPTIONS)\n"
    );
    // A socket file of that name is what the word then names.
    std::fs::write(here.path().join("vm"), "").unwrap();
    let (code, stderr) = run(&["--timeout", "1", "vm", "-c", "query-status"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("cannot connect to vm"), "{stderr}");
}

#[test]
fn a_bad_option_value_is_a_usage_error() {
    assert_eq!(qmpsh(&["--timeout", "soon", "x.sock"], "").code, 2);
    assert_eq!(qmpsh(&["--color", "sometimes", "x.sock"], "").code, 2);
}

#[test]
fn a_parse_error_exits_2_naming_line_and_column() {
    // Lines before the bad one have run (a script streams); the bad one and
    // everything after it are not sent.
    let run = qmpsh(&["--dry-run"], "stop\ndevice_del id=\"n1\n");
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "{\"execute\":\"stop\"}\n");
    assert_eq!(run.stderr, "error: line 2, column 15: expected a closing \" for this string\n");
}

#[test]
fn dry_run_prints_each_command_as_qmp() {
    // Typed by the recorded QEMU schema, as a connected run is by QEMU's.
    let script = "\
# comments and blank lines print nothing

powerdown
q
info status
device_del id=n1
block-stream job-id=j0 device=disk0 speed=0x100000
qom-set path=/machine property=x value=\"123\"
blockdev-add driver=null-co node-name=n0 read-zeroes=true size=1M
balloon value=33554432
hmp info registers
{\"execute\": \"query-name\"}
.sleep 0.01
transaction( block-dirty-bitmap-add node=d0 name=b0 ; abort )
";
    let run = qmpsh(&["--dry-run"], script);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        r#"{"execute":"system_powerdown"}
{"execute":"quit"}
{"execute":"query-status"}
{"execute":"device_del","arguments":{"id":"n1"}}
{"execute":"block-stream","arguments":{"job-id":"j0","device":"disk0","speed":1048576}}
{"execute":"qom-set","arguments":{"path":"/machine","property":"x","value":"123"}}
{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n0","read-zeroes":true,"size":1048576}}
{"execute":"balloon","arguments":{"value":33554432}}
{"execute":"human-monitor-command","arguments":{"command-line":"info registers"}}
{"execute":"query-name"}
{"execute":"transaction","arguments":{"actions":[{"type":"block-dirty-bitmap-add","data":{"node":"d0","name":"b0"}},{"type":"abort","data":{}}]}}
"#
    );
}

#[test]
fn with_dash_h_every_line_is_hmp_text_as_typed() {
    // HMP syntax the qmp-shell grammar would refuse goes through untouched.
    let run = qmpsh(
        &["-H", "--dry-run", "-c", "boot_set 'c", "-c", "print 1 = 2", "-c", ".cpu 1", "-c", "info registers"],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        r#"{"execute":"human-monitor-command","arguments":{"command-line":"boot_set 'c"}}
{"execute":"human-monitor-command","arguments":{"command-line":"print 1 = 2"}}
{"execute":"human-monitor-command","arguments":{"command-line":"info registers","cpu-index":1}}
"#
    );
}

#[test]
fn key_value_arguments_never_take_the_tables_hmp_units() {
    // `balloon 512` is MB; `size=` and `value=` are bytes, as QMP has them,
    // also when mixed with positional words.
    let run = qmpsh(
        &[
            "--dry-run",
            "-c",
            "block_resize disk0 size=134217728",
            "-c",
            "block_resize disk0 128",
            "-c",
            "balloon value=1M",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        r#"{"execute":"block_resize","arguments":{"device":"disk0","size":134217728}}
{"execute":"block_resize","arguments":{"device":"disk0","size":134217728}}
{"execute":"balloon","arguments":{"value":1048576}}
"#
    );
    // An HMP-only command would read `tag=x` as a word, not as its tag:
    // refused instead. Another `a=b` is a word, as HMP reads it.
    let run = qmpsh(&["--dry-run", "-c", "savevm tag=snap1"], "");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("HMP would take `tag=...` as the word, not as its tag"), "{}", run.stderr);
    let run = qmpsh(&["--dry-run", "-c", "savevm a=b"], "");
    assert_eq!(run.stdout, "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"savevm a=b\"}}\n");
}

#[test]
fn keep_going_goes_past_a_line_that_is_not_utf8() {
    let mut command = common::qmpsh_command(&["--dry-run", "--keep-going"]);
    command.stdin(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"stop\n\xff\ncont\n").unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "{\"execute\":\"stop\"}\n{\"execute\":\"cont\"}\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "error: line 2: not valid UTF-8 (byte 1)\n");
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_itself() {
    // Each shell's script asks qmpsh at each Tab; bash accepts its own.
    let bash = qmpsh(&["completions", "bash"], "");
    assert_eq!(bash.code, 0, "{bash:?}");
    for needle in ["_clap_complete_qmpsh", "COMPLETE=\"bash\"", "complete "] {
        assert!(bash.stdout.contains(needle), "the bash script lacks {needle}: {}", bash.stdout);
    }
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), &bash.stdout).unwrap();
    let checked = std::process::Command::new("bash").arg("-n").arg(script.path()).status().unwrap();
    assert!(checked.success(), "bash -n refused the completion script");
    for shell in ["zsh", "fish"] {
        let run = qmpsh(&["completions", shell], "");
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("qmpsh") && run.stdout.contains("COMPLETE="), "{shell}: {run:?}");
    }
    // What a Tab gets, asked as the scripts ask: the subcommands, the
    // options of `vm start` (which clap learns only when asked), and never
    // the internal step that becomes QEMU.
    let tab = |words: &[&str]| {
        let mut command = qmpsh_command(&[&["--", "qmpsh"][..], words].concat());
        command.env("COMPLETE", "fish");
        let run = common::finish(command, "");
        assert_eq!(run.code, 0, "{run:?}");
        run.stdout.lines().map(|l| l.split('\t').next().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert!(tab(&["la"]).contains(&"launch".to_string()));
    assert!(tab(&["vm", "start", "x", "--me"]).contains(&"--memory".to_string()));
    assert!(tab(&["--pip"]).contains(&"--pipeline".to_string()));
    assert!(!tab(&["_"]).iter().any(|w| w.contains("exec-qemu")));
    let bad = qmpsh(&["completions", "tcsh"], "");
    assert_eq!(bad.code, 2, "{bad:?}");

    let man = qmpsh(&["manpage"], "");
    assert_eq!(man.code, 0, "{man:?}");
    assert!(man.stdout.starts_with(".ie") && man.stdout.contains(".TH qmpsh 1"), "{}", man.stdout);
    assert!(man.stdout.contains("keep\\-going") && man.stdout.contains(".SH \"EXIT STATUS\""), "{}", man.stdout);
}

#[test]
fn dry_run_translates_for_the_recorded_qemu_it_is_told() {
    // Block migration went in QEMU 9.1: the newest recorded QEMU (the
    // default) refuses `migrate -b`, naming itself and what to use; 7.2
    // sends it. `-v` says which QEMU the lines were translated for.
    let line = "migrate -b tcp:127.0.0.1:4444";
    let recorded = version::newest();
    assert!(recorded.version >= version::Version::new(9, 1, 0), "the newest recorded QEMU lacks block migration");
    let (release, full) = (recorded.name(), recorded.version.to_string());
    let newest = qmpsh(&["--dry-run", "-v", "-c", line], "");
    assert_eq!(newest.code, 2, "{newest:?}");
    assert_eq!(newest.stdout, "");
    let mut said = newest.stderr.lines();
    assert_eq!(
        said.next().unwrap(),
        format!(
            "qmpsh: --dry-run: typing by the recorded {release}; HMP's commands of {release}; table commands and \
             arguments as QEMU {full} has them"
        )
    );
    assert_eq!(
        said.next().unwrap(),
        format!(
            "error: line 1, column 9: QEMU {full} has no `migrate -b` (removed in QEMU 9.1): mirror the disks with \
             blockdev-mirror to an NBD export on the destination, then migrate"
        )
    );
    let old = qmpsh(&["--dry-run", "--qemu", "7.2", "-c", line, "-c", "migrate uri=tcp:x:1 inc=on"], "");
    assert_eq!(old.code, 0, "{old:?}");
    assert_eq!(
        old.stdout,
        "{\"execute\":\"migrate\",\"arguments\":{\"blk\":true,\"uri\":\"tcp:127.0.0.1:4444\"}}\n\
         {\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:x:1\",\"inc\":true}}\n"
    );
    // The qmp-shell form is refused as well, at its argument.
    let named = qmpsh(&["--dry-run", "-c", "migrate uri=tcp:x:1 inc=on"], "");
    assert_eq!(named.code, 2);
    let said = format!("error: line 1, column 21: QEMU {full} has no `migrate inc`");
    assert!(named.stderr.starts_with(&said), "{}", named.stderr);

    // A saved schema: any version may be named for it; without --qemu,
    // versions go unchecked, and -v says so.
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("schema.json");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/grammar/qemu-7.2/qmp-schema.json"), &saved).unwrap();
    let saved = saved.to_str().unwrap();
    let unchecked = qmpsh(&["--dry-run", "-v", "--schema", saved, "-c", line], "");
    assert_eq!(unchecked.code, 0, "{unchecked:?}");
    assert!(unchecked.stderr.contains("unchecked for versions (add --qemu VERSION)"), "{}", unchecked.stderr);
    let nine_one = qmpsh(&["--dry-run", "--schema", saved, "--qemu", "9.1", "-c", line], "");
    assert_eq!(nine_one.code, 2);
    assert!(nine_one.stderr.contains("QEMU 9.1.0 has no `migrate -b`"), "{}", nine_one.stderr);
    // A micro version names its release.
    assert_eq!(qmpsh(&["--dry-run", "--qemu", "7.2.0", "-c", line], "").code, 0);

    // Only recorded versions stand alone; --qemu is for --dry-run.
    let unknown = qmpsh(&["--dry-run", "--qemu", "8.0", "-c", "stop"], "");
    assert_eq!((unknown.code, unknown.stdout.as_str()), (2, ""));
    assert_eq!(
        unknown.stderr,
        format!("qmpsh: --qemu: QEMU 8.0 is not recorded (recorded: {}; or give --schema FILE)\n", version::releases())
    );
    // --help lists them all.
    let help = qmpsh(&["--help"], "").stdout;
    assert!(help.contains(&format!("recorded: {}", version::releases())), "{help}");
    assert_eq!(qmpsh(&["--qemu", "7.2", "x.sock", "-c", "stop"], "").code, 2);
}

#[test]
fn messages_name_the_real_problem() {
    let said = |line: &str| {
        let run = qmpsh(&["--dry-run", "-c", line], "");
        assert_eq!((run.code, run.stdout.as_str()), (2, ""), "{line}: {run:?}");
        run.stderr.trim_end().to_string()
    };
    // A space that is not ASCII is named, not taken for part of a word.
    assert_eq!(
        said("qom-get /machine\u{a0}type"),
        "error: line 1, column 17: expected a space after the argument, not a no-break space (U+00A0): only ASCII \
         spaces and tabs separate words"
    );
    // The key, not the command.
    assert_eq!(
        said("my-cmd clé=1"),
        "error: line 1, column 8: expected a key of ASCII letters, digits, `-`, `_` and `.` before `=`, not `clé`"
    );
    assert_eq!(
        said(r#"my-cmd a="x\ud800""#),
        "error: line 1, column 12: expected a valid JSON string (`\\ud800` is half of a UTF-16 surrogate pair, alone)"
    );
    // One argument given by name and by position.
    assert_eq!(
        said("block_resize device=disk0 128"),
        "error: line 1, column 27: expected `device` once, not both as `device=disk0` and as `128`: positional words \
         fill `block_resize device size` in order"
    );
}

#[test]
fn a_backslash_continues_a_line_only_as_a_word_of_its_own() {
    // One that ends a word is the word's: the next line stays a command.
    let script = "ringbuf-write device=rb0 data=path\\\nquery-status\nqom-list \\\n  path=/machine\n";
    let run = qmpsh(&["--dry-run"], script);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "{\"execute\":\"ringbuf-write\",\"arguments\":{\"device\":\"rb0\",\"data\":\"path\\\\\"}}\n\
         {\"execute\":\"query-status\"}\n\
         {\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/machine\"}}\n"
    );
}

#[test]
fn a_backslash_at_the_end_of_input_is_refused_as_an_open_brace_is() {
    // Before, the half line ran as if it were whole.
    let run = qmpsh(&["--dry-run"], "stop\nqom-list \\\n");
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stdout, "{\"execute\":\"stop\"}\n");
    assert_eq!(
        run.stderr,
        "error: line 2: expected a line after the `\\` that continues this one, not the end of the input\n"
    );
    let open = qmpsh(&["--dry-run"], "stop\n{\"execute\": \"cont\"\n");
    assert_eq!((open.code, open.stdout.as_str()), (2, "{\"execute\":\"stop\"}\n"), "{}", open.stderr);
}

#[test]
fn each_dash_c_is_a_whole_line_that_a_backslash_cannot_join_to_the_next() {
    let run = qmpsh(&["--dry-run", "--keep-going", "-c", "qom-list \\", "-c", "stop"], "");
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stdout, "{\"execute\":\"stop\"}\n");
    assert!(run.stderr.contains("expected a line after the `\\`"), "{}", run.stderr);
    // Within one -c, newlines still join as they do in a script.
    let joined = qmpsh(&["--dry-run", "-c", "qom-list \\\n path=/machine"], "");
    assert_eq!(joined.stdout, "{\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/machine\"}}\n", "{joined:?}");
}

#[test]
fn a_schema_file_without_end_is_refused_not_read_into_memory() {
    let run = qmpsh(&["--dry-run", "--schema", "/dev/zero", "-c", "stop"], "");
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        run.stderr,
        "qmpsh: cannot read the schema file /dev/zero: it is over 16 MiB, and a saved QEMU schema is about 200 KB\n"
    );
}

#[test]
fn a_line_of_too_many_values_is_refused_and_the_script_goes_on_with_keep_going() {
    let huge = format!("{{\"execute\": \"x\", \"arguments\": {{\"list\": [{}0]}}}}", "0,".repeat(2_100_000));
    let run = qmpsh(&["--dry-run", "--keep-going"], &format!("{huge}\nstop\n"));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stdout, "{\"execute\":\"stop\"}\n");
    assert_eq!(
        run.stderr,
        "error: line 1: the line holds over 2097152 JSON values; qmpsh takes no more (read, that could take \
         gigabytes)\n"
    );
}

#[test]
fn an_input_line_without_end_is_refused_past_64_mib_and_the_next_line_still_reads() {
    let endless = "a".repeat(65 << 20);
    let run = qmpsh(&["--dry-run", "--keep-going"], &format!("{endless}\nstop\n"));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stdout, "{\"execute\":\"stop\"}\n");
    assert_eq!(run.stderr, "error: line 1: the line is over 64 MiB; qmpsh takes no longer lines\n");
}

/// The codes in the first column of a table's rows that start with `|
/// digit`, or of the lines under `Exit codes:` in `--help`.
fn codes(lines: impl Iterator<Item = String>) -> Vec<String> {
    let mut codes: Vec<String> = lines
        .flat_map(|first| first.split(',').map(|code| code.trim().to_string()).collect::<Vec<_>>())
        .filter(|code| !code.is_empty())
        .collect();
    codes.sort();
    codes
}

#[test]
fn help_and_the_readme_list_the_same_exit_codes() {
    // The README's table once had 129, 143 and 131 in its first column
    // while --help listed 130 alone there.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme.split("## Exit codes").nth(1).unwrap().split("\n\n").nth(1).unwrap();
    let documented = codes(
        table
            .lines()
            .filter_map(|row| row.strip_prefix("| "))
            .filter(|row| row.starts_with(|c: char| c.is_ascii_digit()))
            .map(|row| row.split(" |").next().unwrap().to_string()),
    );
    let help = qmpsh(&["--help"], "").stdout;
    let section = help.split("Exit codes:\n").nth(1).unwrap();
    let listed = codes(
        section
            .lines()
            .filter(|line| line.trim_start().starts_with(|c: char| c.is_ascii_digit()))
            .map(|line| line.trim_start().split("  ").next().unwrap().to_string()),
    );
    assert_eq!(listed, documented, "--help:\n{section}\nREADME:\n{table}");
    assert_eq!(documented, ["0", "1", "129", "130", "131", "143", "2", "3", "4"]);
}

#[test]
fn a_schema_file_that_cannot_be_read_is_a_local_failure_exit_1() {
    // A directory opens, and then cannot be read (EISDIR): the README says
    // a local file that cannot be read is exit 1, not a usage error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display().to_string();
    let run = qmpsh(&["--dry-run", "--schema", &path, "-c", "stop"], "");
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr, format!("qmpsh: cannot read the schema file {path}: Is a directory (os error 21)\n"));
    let missing = format!("{path}/none.json");
    let run = qmpsh(&["--dry-run", "--schema", &missing, "-c", "stop"], "");
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    // One that is read but is no schema is what it was given: exit 2.
    let not_schema = dir.path().join("x.json");
    for text in [&b"{\"not\": \"a schema\"}"[..], &b"\xff\xfe"[..]] {
        std::fs::write(&not_schema, text).unwrap();
        let run = qmpsh(&["--dry-run", "--schema", not_schema.to_str().unwrap(), "-c", "stop"], "");
        assert_eq!(run.code, 2, "{run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    }
}

#[test]
fn a_closed_stdout_ends_every_output_of_the_command_line_quietly() {
    // `qmpsh completions bash | true`: what is written to no one is no
    // error, and never a panic (exit 101).
    let runs: [&[&str]; 6] = [
        &["--help"],
        &["vm", "start", "--help"],
        &["--version"],
        &["completions", "bash"],
        &["manpage"],
        &["--dry-run", "-c", "stop"],
    ];
    for args in runs {
        let mut child = qmpsh_command(args).spawn().unwrap();
        drop(child.stdin.take());
        drop(child.stdout.take());
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}

#[test]
fn colour_is_what_the_color_option_decides_whatever_the_environment_says() {
    // The palette decides: no process-wide switch of the colour crate's,
    // which reads NO_COLOR and CLICOLOR itself, stands between.
    let mut steps = handshake();
    steps.extend([
        expect("query-status"),
        send("{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": {id}}\n"),
        expect("stop"),
        send("{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, \"id\": {id}}\n"),
    ]);
    let server = FakeServer::start(steps);
    let socket = server.socket_arg();
    let mut command = qmpsh_command(&["--color", "always", &socket, "-c", "query-status", "-c", "stop"]);
    command.env("NO_COLOR", "1").env("CLICOLOR", "0").env("TERM", "dumb");
    let run = common::finish(command, "");
    server.finish();
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stdout,
        "{\x1b[34m\"status\"\x1b[0m:\x1b[32m\"running\"\x1b[0m,\x1b[34m\"running\"\x1b[0m:\x1b[35mtrue\x1b[0m}\n"
    );
    assert_eq!(run.stderr, "\x1b[31merror: line 2: GenericError: no\x1b[0m\n");
    // Piped, auto is plain; NO_COLOR does not matter then.
    let run = qmpsh(&["--dry-run", "--keep-going", "-c", "nonsense("], "");
    assert!(!run.stderr.contains('\x1b'), "{run:?}");
    let run = qmpsh(&["--dry-run", "--keep-going", "--color", "always", "-c", "nonsense("], "");
    assert!(run.stderr.starts_with("\x1b[31merror: ") && run.stderr.ends_with("\x1b[0m\n"), "{run:?}");
}
