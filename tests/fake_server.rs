//! What QEMU will not do on demand, played by a scripted fake server:
//! events wrapped around replies, errors, EOF mid-reply, multi-line JSON,
//! huge replies, silence and garbage.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{FakeServer, Step, event, expect, expect_with, handshake, qmpsh, send};
use serde_json::json;

fn script(mut steps: Vec<Step>) -> FakeServer {
    let mut all = handshake();
    all.append(&mut steps);
    FakeServer::start(all)
}

const OK: &str = "{\"return\": {}, \"id\": {id}}\n";

#[test]
fn events_before_between_and_after_replies_print_in_arrival_order() {
    let server = script(vec![
        send(&event("BEFORE", None)),
        expect("stop"),
        send(&event("DURING", Some(r#"{"n": 1}"#))),
        send(OK),
        send(&event("BETWEEN", None)),
        expect("cont"),
        send(OK),
        send(&event("AFTER", None)),
        expect("query-status"),
        send(r#"{"return": {"status": "running"}, "id": {id}}"#),
        Step::ExpectHangUp,
    ]);
    let run = qmpsh(&[&server.socket_arg(), "-c", "stop", "-c", "cont", "-c", "query-status"], "");
    server.finish();
    assert_eq!(run.code, 0, "{run:?}");
    // Events start with a time of day; replies ("ok", compact JSON) have no space.
    let shown: Vec<&str> = run.stdout.lines().map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest)).collect();
    assert_eq!(
        shown,
        ["BEFORE", "DURING {\"n\":1}", "ok", "BETWEEN", "ok", "AFTER", "{\"status\":\"running\"}"],
        "{}",
        run.stdout
    );
}

/// A schema that knows one command, as query-qmp-schema returns it.
const SCHEMA: &str = r#"{"return": [{"name": "query-status", "meta-type": "command", "arg-type": "0", "ret-type": "1"},
    {"name": "0", "meta-type": "object", "members": []}], "id": {id}}"#;

#[test]
fn a_failed_command_stops_the_script_with_exit_1_and_a_hint() {
    let server = script(vec![
        expect("query-stauts"),
        send(
            r#"{"error": {"class": "CommandNotFound", "desc": "The command query-stauts has not been found"}, "id": {id}}"#,
        ),
        // Only this error path fetches the schema, for the did-you-mean.
        expect("query-qmp-schema"),
        send(SCHEMA),
        Step::ExpectHangUp,
    ]);
    let run = qmpsh(&[&server.socket_arg()], "query-stauts\nstop\n");
    server.finish();
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "error: line 1: CommandNotFound: The command query-stauts has not been found (did you mean query-status?)\n"
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn keep_going_runs_the_rest_and_still_exits_1() {
    let server = script(vec![
        expect("bogus"),
        send(r#"{"error": {"class": "GenericError", "desc": "nope"}, "id": {id}}"#),
        expect("stop"),
        send(OK),
        Step::ExpectHangUp,
    ]);
    let run = qmpsh(&[&server.socket_arg(), "--keep-going"], "bogus\nstop\n");
    server.finish();
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "ok\n");
    assert_eq!(run.stderr, "error: line 1: GenericError: nope\n");
}

#[test]
fn eof_in_the_middle_of_a_reply_is_a_lost_connection() {
    let server = script(vec![expect("query-status"), send(r#"{"return": {"status": "runn"#)]);
    let run = qmpsh(&[&server.socket_arg(), "-c", "query-status"], "");
    server.finish();
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stderr, "qmpsh: QEMU closed the connection\n");
}

#[test]
fn multi_line_pretty_json_with_crlf_is_one_message() {
    let pretty = "{\r\n    \"return\": {\r\n        \"status\": \"paused\",\r\n        \"running\": false\r\n    },\r\n    \"id\": {id}\r\n}\r\n";
    let server = script(vec![expect("query-status"), send(pretty), Step::ExpectHangUp]);
    let run = qmpsh(&[&server.socket_arg(), "-c", "query-status"], "");
    server.finish();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "{\"status\":\"paused\",\"running\":false}\n");
}

#[test]
fn a_20_mb_reply_arrives_whole() {
    let big = "x".repeat(20 << 20);
    let reply = format!("{{\"return\": {{\"blob\": \"{big}\", \"end\": \"marker\"}}, \"id\": {{id}}}}\n");
    let server = script(vec![expect("query-big"), send(&reply), Step::ExpectHangUp]);
    let run = qmpsh(&[&server.socket_arg(), "-c", "query-big"], "");
    server.finish();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let value: serde_json::Value = serde_json::from_str(run.stdout.trim_end()).unwrap();
    assert_eq!(value["blob"].as_str().map(str::len), Some(20 << 20));
    assert_eq!(value["end"], "marker");
}

#[test]
fn a_reply_with_an_unknown_id_is_passed_over_with_a_note() {
    let server = script(vec![
        expect("query-status"),
        send(r#"{"return": {"stale": true}, "id": 999}"#),
        send(r#"{"return": {"fresh": true}, "id": {id}}"#),
        Step::ExpectHangUp,
    ]);
    let run = qmpsh(&[&server.socket_arg(), "-c", "query-status"], "");
    server.finish();
    assert_eq!((run.code, run.stdout.as_str()), (0, "{\"fresh\":true}\n"), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "qmpsh: passed over a reply with id 999, which no command sent here carries: {\"return\":{\"stale\":true},\"id\":999}\n"
    );
}

#[test]
fn a_timeout_after_a_stray_reply_says_the_reply_came() {
    // "No reply" alone would be wrong: one came, for no command of ours.
    let server = script(vec![
        expect("query-status"),
        send(r#"{"return": {"status": "running"}, "id": "someone-else"}"#),
        Step::Pause(Duration::from_secs(2)),
    ]);
    let run = qmpsh(&[&server.socket_arg(), "--timeout", "0.5", "-c", "query-status"], "");
    server.finish();
    assert_eq!(run.code, 4, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    assert!(lines[0].starts_with(r#"qmpsh: passed over a reply with id "someone-else""#), "{}", run.stderr);
    assert!(lines[1].contains("no reply to query-status within 0.5 s"), "{}", run.stderr);
}

#[test]
fn replies_out_of_order_to_the_users_own_ids_each_reach_their_command() {
    // With ids, a peer may answer in any order; the replies still show in
    // the order of the commands, each its own.
    let server = script(vec![
        Step::ExpectMessage(json!({"execute": "first", "id": "a"})),
        Step::ExpectMessage(json!({"execute": "second", "id": "b"})),
        send(r#"{"return": "for second", "id": "b"}"#),
        send(r#"{"return": "for first", "id": "a"}"#),
        Step::ExpectHangUp,
    ]);
    // -c, not a piped script: while a pipe has no line ready, qmpsh reads
    // the replies in flight, and this peer answers only once both came.
    let (first, second) = (r#"{"execute": "first", "id": "a"}"#, r#"{"execute": "second", "id": "b"}"#);
    let run = qmpsh(&[&server.socket_arg(), "--pipeline=2", "-c", first, "-c", second], "");
    server.finish();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "\"for first\"\n\"for second\"\n");
    assert_eq!(run.stderr, "");
}

#[test]
fn a_second_reply_to_one_command_is_not_taken_for_the_next_ones() {
    let server = script(vec![
        expect("query-status"),
        send("{\"return\": {\"n\": 1}}\n{\"return\": {\"n\": 1, \"again\": true}}\n"),
        expect("stop"),
        send(r#"{"return": {"n": 2}}"#),
        Step::ExpectHangUp,
    ]);
    let run = qmpsh(&[&server.socket_arg(), "-c", "query-status", "-c", "stop"], "");
    server.finish();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "{\"n\":1}\n{\"n\":2}\n");
    assert!(
        run.stderr.starts_with("qmpsh: passed over a reply while no command sent here awaited one"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(r#""again":true"#), "{}", run.stderr);
}

#[test]
fn an_error_without_a_description_shows_what_the_peer_sent() {
    let server = script(vec![
        expect("stop"),
        send(r#"{"error": {"class": "GenericError"}}"#),
        expect("cont"),
        send(r#"{"error": {"code": 7}}"#),
        Step::ExpectHangUp,
    ]);
    let run = qmpsh(&[&server.socket_arg(), "--keep-going", "-c", "stop", "-c", "cont"], "");
    server.finish();
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        "error: line 1: GenericError: {\"class\":\"GenericError\"}\nerror: line 2: error: {\"code\":7}\n"
    );
}

#[test]
fn a_timeout_holds_under_a_flood_of_events() {
    let server = script(vec![expect("query-status"), Step::Flood(event("FLOOD", Some(r#"{"n": 1}"#)).repeat(100))]);
    let run = qmpsh(&[&server.socket_arg(), "--timeout", "1", "-c", "query-status"], "");
    server.finish();
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stdout.lines().count() > 100, "the flood was shown while waiting");
    // A wait that ignored its deadline would run into the test's 60 s
    // limit (a failure), not end with this line.
    assert!(run.stderr.contains("no reply to query-status within 1 s"), "{}", run.stderr);
}

#[test]
fn a_closed_output_ends_a_wait_under_a_flood_of_events() {
    // `qmpsh ... | head -1`: once head has gone, qmpsh stops too.
    use std::io::{BufRead, BufReader};
    let server = script(vec![expect("query-status"), Step::Flood(event("FLOOD", None).repeat(100))]);
    let mut child = common::qmpsh_command(&[&server.socket_arg(), "-c", "query-status"]).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.ends_with(" FLOOD\n"), "{first:?}");
    // The reader is dropped: stdout is a closed pipe now.
    let status = common::wait_with_deadline(&mut child, Duration::from_secs(20));
    server.finish();
    let status = status.expect("qmpsh exits once its output is closed");
    assert_eq!(status.code(), Some(0), "a closed pipe ends qmpsh quietly, as it does `head`");
}

#[test]
fn a_timeout_holds_while_the_peer_stops_reading_a_large_command() {
    // 10 MB: more than the socket takes without the peer reading. The peer
    // reads nothing for 30 s: a write without a deadline would wait for it
    // and end in "closed the connection" (exit 3).
    let big = format!("{{\"execute\": \"x\", \"arguments\": {{\"data\": \"{}\"}}}}\n", "a".repeat(10 << 20));
    let server = script(vec![Step::Pause(Duration::from_secs(30))]);
    let run = qmpsh(&[&server.socket_arg(), "--timeout", "1"], &big);
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(run.stderr, "qmpsh: QEMU took no more of the command within 1 s: it has stopped reading its monitor\n");
    // Not finished: the server is still asleep, as a peer that stopped reading.
    drop(server);
}

#[test]
fn a_reply_of_too_many_values_is_refused_before_it_takes_gigabytes() {
    // 3 million zeros: 6 MB of text, gigabytes once read as values.
    let reply = format!("{{\"return\": [{}0]}}\n", "0,".repeat(3_000_000));
    // qmpsh hangs up before the server has written it all.
    let server = script(vec![expect("query-big"), Step::SendCut(reply)]);
    let run = qmpsh(&[&server.socket_arg(), "-c", "query-big"], "");
    server.finish();
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(
        run.stderr,
        "qmpsh: protocol error: QEMU sent a message of over 2097152 JSON values; qmpsh takes no more (read, that \
         could take gigabytes)\n"
    );
}

#[test]
fn an_error_without_the_commands_own_id_is_a_protocol_error_not_a_hang() {
    // QEMU echoes a command's id, so an error without it means QEMU could
    // not read that command at all.
    let server = script(vec![
        Step::ExpectMessage(json!({"execute": "query-status", "id": "mine"})),
        send(r#"{"error": {"class": "GenericError", "desc": "JSON parse error"}}"#),
    ]);
    let run = qmpsh(&[&server.socket_arg(), "-c", r#"{"execute": "query-status", "id": "mine"}"#], "");
    server.finish();
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("protocol error") && run.stderr.contains("JSON parse error"), "{}", run.stderr);
}

#[test]
fn commands_go_without_ids_and_replies_answer_them_in_order() {
    // QEMU reads its monitor a byte at a time, so qmpsh sends no id of its
    // own: QEMU answers in-band commands in order.
    let server = script(vec![
        expect("query-status"),
        send(r#"{"return": {"status": "running"}}"#),
        expect("stop"),
        send(r#"{"error": {"class": "GenericError", "desc": "nope"}}"#),
        Step::ExpectHangUp,
    ]);
    let run = qmpsh(&[&server.socket_arg(), "-v", "--keep-going"], "query-status\nstop\n");
    server.finish();
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "{\"status\":\"running\"}\n");
    assert!(run.stderr.contains(r#"-> {"execute":"query-status"}"#), "{}", run.stderr);
    assert!(run.stderr.contains("error: line 2: GenericError: nope"), "{}", run.stderr);
}

#[test]
fn no_greeting_times_out_naming_the_one_client_rule() {
    let server = FakeServer::start(vec![Step::Pause(Duration::from_secs(3))]);
    // Only the timeout says this: a qmpsh that waited on would see the
    // server hang up after 3 s instead.
    let run = qmpsh(&[&server.socket_arg(), "--timeout", "0.5", "-c", "stop"], "");
    server.finish();
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("no QMP greeting") && run.stderr.contains("one client"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1);
}

#[test]
fn garbage_from_the_socket_is_one_clear_error() {
    let server = FakeServer::start(vec![send("SSH-2.0-OpenSSH_9.2\r\n")]);
    let run = qmpsh(&[&server.socket_arg(), "-c", "stop"], "");
    server.finish();
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("not a JSON object") && run.stderr.contains("SSH-2.0"), "{}", run.stderr);
}

#[test]
fn a_command_timeout_exits_4() {
    let server = script(vec![expect("stop"), Step::Pause(Duration::from_secs(2))]);
    let run = qmpsh(&[&server.socket_arg(), "--timeout", "0.3", "-c", "stop"], "");
    server.finish();
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("no reply to stop within 0.3 s"), "{}", run.stderr);
}

#[test]
fn no_negotiate_sends_commands_without_waiting_for_a_greeting() {
    let server =
        FakeServer::start(vec![expect("guest-ping"), send(r#"{"return": {}, "id": {id}}"#), Step::ExpectHangUp]);
    let run = qmpsh(&[&server.socket_arg(), "-N", "-c", "guest-ping"], "");
    server.finish();
    assert_eq!((run.code, run.stdout.as_str()), (0, "ok\n"), "{}", run.stderr);
}

#[test]
fn json_mode_prints_every_received_message_compact() {
    let server = script(vec![
        expect("stop"),
        send("{\n \"timestamp\": {\"seconds\": 1, \"microseconds\": 2},\n \"event\": \"STOP\"\n}\n"),
        send(OK),
        Step::ExpectHangUp,
    ]);
    let run = qmpsh(&[&server.socket_arg(), "--json", "-c", "stop"], "");
    server.finish();
    let lines = run.json_lines();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert_eq!(lines[0]["event"], "STOP");
    assert_eq!(lines[1]["return"], serde_json::json!({}));
}

#[test]
fn the_schema_is_fetched_once_and_only_for_lines_that_need_it() {
    let schema = r#"{"return": [
        {"name": "x-get", "meta-type": "command", "arg-type": "1", "ret-type": "any"},
        {"name": "qom-get", "meta-type": "command", "arg-type": "1", "ret-type": "any"},
        {"name": "1", "meta-type": "object", "members": [{"name": "path", "type": "str"}, {"name": "property", "type": "str"}]},
        {"name": "str", "meta-type": "builtin", "json-type": "string"}], "id": {id}}"#;
    let server = script(vec![
        // No arguments to type: no schema.
        expect("stop"),
        send(OK),
        expect("query-status"),
        send(r#"{"return": {"status": "paused"}, "id": {id}}"#),
        // The first line with arguments fetches it...
        expect("query-qmp-schema"),
        send(schema),
        expect_with("x-get", json!({"path": "1", "property": "2"})),
        send(r#"{"return": "a", "id": {id}}"#),
        // ...once.
        expect_with("x-get", json!({"path": "/", "property": "x"})),
        send(r#"{"return": "b", "id": {id}}"#),
        Step::ExpectHangUp,
    ]);
    let run = qmpsh(
        &[&server.socket_arg(), "--json"],
        "stop\nquery-status\nx-get path=1 property=2\nx-get path=/ property=x\n",
    );
    server.finish();
    assert_eq!(run.code, 0, "{}", run.stderr);
    // --json shows the commands' replies, not qmpsh's own schema query.
    let returns: Vec<String> = run.json_lines().iter().map(|m| m["return"].to_string()).collect();
    assert_eq!(returns, ["{}", r#"{"status":"paused"}"#, r#""a""#, r#""b""#]);
}

#[test]
fn a_flood_of_events_before_a_reply_is_printed_whole() {
    // 50,000 events at once: qmpsh reads the socket only as fast as it
    // shows what it read (the rest waits in the socket, so memory stays
    // flat) and nothing is dropped.
    let flood: String = (0..50_000).map(|n| event("BLOCK_IO_ERROR", Some(&format!(r#"{{"n": {n}}}"#)))).collect();
    let server = script(vec![expect("stop"), send(&flood), send(OK), Step::ExpectHangUp]);
    let run = qmpsh(&[&server.socket_arg(), "-c", "stop"], "");
    server.finish();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let events: Vec<&str> = run.stdout.lines().filter(|l| l.contains(" BLOCK_IO_ERROR ")).collect();
    assert_eq!(events.len(), 50_000);
    assert!(events[49_999].ends_with(r#"{"n":49999}"#), "{}", events[49_999]);
    assert_eq!(run.stdout.lines().last(), Some("ok"));
}

#[test]
fn a_reply_shows_before_a_long_wait_for_the_next() {
    // Replies to a pipe are written in blocks, but never held back while
    // qmpsh waits: the first reply is readable before the second comes.
    use std::io::{BufRead, BufReader};
    let server = script(vec![
        expect("query-status"),
        send(r#"{"return": {"status": "running"}, "id": {id}}"#),
        expect("stop"),
        Step::Pause(Duration::from_secs(3)),
        send(OK),
        Step::ExpectHangUp,
    ]);
    let mut child = common::qmpsh_command(&[&server.socket_arg(), "-c", "query-status", "-c", "stop"]).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let _ = tx.send(first);
    });
    let first = rx.recv_timeout(Duration::from_secs(2)).expect("the first reply while the second is awaited");
    assert_eq!(first, "{\"status\":\"running\"}\n");
    assert!(common::wait_with_deadline(&mut child, Duration::from_secs(10)).is_some_and(|s| s.success()));
    server.finish();
}

#[test]
fn a_message_that_never_ends_stops_at_256_mib_with_exit_3() {
    // A peer that sends one endless JSON string: qmpsh must not grow until
    // it dies. The server writes until qmpsh hangs up.
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("endless.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        writeln!(writer, "{}", common::GREETING.trim_end()).unwrap();
        reader.read_line(&mut line).unwrap();
        writeln!(writer, r#"{{"return": {{}}}}"#).unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        writer.write_all(br#"{"return": ""#).unwrap();
        let chunk = vec![b'a'; 1 << 20];
        let mut sent = 0usize;
        while writer.write_all(&chunk).is_ok() && sent < 1 << 30 {
            sent += chunk.len();
        }
        sent
    });
    let run = qmpsh(&[&format!("unix:{}", socket.display()), "-c", "query-status"], "");
    let sent = server.join().unwrap();
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("over 256 MiB"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(sent < 1 << 30, "qmpsh read {sent} bytes before it stopped");
}
