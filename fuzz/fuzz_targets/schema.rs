//! The schema typer, with any schema: the input is schema JSON, a NUL
//! byte, then a line (without a NUL, the whole input is the schema and the
//! line is empty). A schema that parses is built as a peer's
//! `query-qmp-schema` reply would be, the line is bound against it, and the
//! REPL's questions (completion, hints, `.schema`) are asked of it.
//!
//! Checked: nothing panics, overflows the stack or loops, whatever the
//! schema says (types that refer to themselves, missing or wrong fields);
//! errors point inside the line, on a character boundary.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qmpsh::language::bind::{self, Action, Context};
use qmpsh::language::line::{Line, ParseError, parse_line};
use qmpsh::language::schema::Schema;
use serde_json::Value;

/// The REPL's questions are asked about this many commands at most, so
/// one input stays fast however many the schema declares.
const COMMANDS_ASKED: usize = 16;

fuzz_target!(|data: &[u8]| on_small_stack(|| check(data)));

/// A stack an eighth of the main thread's 8 MB: recursion that grows with
/// the input then overflows at the few KB libFuzzer tries, where on the
/// main thread it would take inputs eight times longer, which the fuzzer
/// seldom builds.
const STACK: usize = 1 << 20;

fn on_small_stack(work: impl FnOnce() + Send) {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new().stack_size(STACK).spawn_scoped(scope, work);
        // A panic in the worker aborts the process (libFuzzer's hook), so
        // the join only fails if the thread could not start.
        worker.expect("a thread to fuzz on").join().expect("the worker aborts on panic");
    });
}

fn check(data: &[u8]) {
    let (schema_text, line_text) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(schema_text) = std::str::from_utf8(schema_text) else { return };
    // A saved schema file, as `--schema FILE` reads one.
    let _ = Schema::from_saved(schema_text);
    let Ok(value) = serde_json::from_str::<Value>(schema_text) else { return };
    // The reply's `return`, as a connected session builds it.
    let Ok(schema) = Schema::from_return(value) else { return };
    let line = std::str::from_utf8(line_text).unwrap_or_default();
    bind_line(&schema, line);
    ask(&schema, line);
}

fn bind_line(schema: &Schema, text: &str) {
    let Ok(parsed) = parse_line(text) else { return };
    for hmp in [false, true] {
        let context = Context { hmp, schema: Some(schema), ..Context::default() };
        match bind::bind(&parsed, text, &context) {
            Ok(Action::Send(request)) => {
                assert!(serde_json::to_vec(&request.message).is_ok());
            }
            Ok(_) => {}
            Err(error) => check_offset(text, &error),
        }
    }
}

fn check_offset(text: &str, error: &ParseError) {
    assert!(error.offset <= text.len(), "{error:?} past the end of {text:?}");
    assert!(text.is_char_boundary(error.offset), "{error:?} inside a character of {text:?}");
}

/// What the REPL asks of a schema: about the line's command, and about
/// some of the schema's own commands and every event.
fn ask(schema: &Schema, text: &str) {
    if let Ok(Line::Command(invocation) | Line::Dot(invocation)) = parse_line(text) {
        ask_about(schema, &invocation.name);
        for arg in &invocation.args {
            if let Some(key) = &arg.key {
                let _ = schema.argument_values(&invocation.name, &key.join("."));
            }
        }
    }
    let names: Vec<String> = schema.command_names().take(COMMANDS_ASKED).map(String::from).collect();
    for name in &names {
        assert!(schema.has_command(name));
        ask_about(schema, name);
    }
    let _ = schema.event_names().count();
}

fn ask_about(schema: &Schema, command: &str) {
    let described = schema.describe_command(command);
    assert_eq!(described.is_some(), schema.has_command(command));
    for (argument, _, _) in schema.arguments(command) {
        let _ = schema.argument_values(command, &argument);
    }
}
