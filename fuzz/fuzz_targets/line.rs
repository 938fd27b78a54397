//! The line language, from bytes to a QMP message: any bytes are read as a
//! script is read (physical lines, continuations joined, lines that are not
//! UTF-8 refused), each logical line is parsed and bound without a schema,
//! with `-H`, and with each recorded QEMU's schema, and the whole input,
//! when it is UTF-8, is also parsed as one logical line.
//!
//! Checked: nothing panics; every error points inside its line, on a
//! character boundary; every message to send names a command and can be
//! written as JSON.

#![no_main]

use std::io::{BufReader, Cursor};

use libfuzzer_sys::fuzz_target;
use qmpsh::language::bind::{self, Action, Context, Offline};
use qmpsh::error::Error;
use qmpsh::language::line::{self, Assembler, Flow, ParseError, Source, parse_line};
use qmpsh::language::version;

fuzz_target!(|data: &[u8]| on_small_stack(|| check(data)));

fn check(data: &[u8]) {
    for hmp in [false, true] {
        read_as_script(data, hmp);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check_logical(text);
        assemble_by_hand(text);
    }
}

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

/// The bytes as `qmpsh < FILE` reads them, each logical line translated
/// the way `--dry-run` does (the schema only when the line needs it).
fn read_as_script(data: &[u8], hmp: bool) {
    let reader: Box<dyn std::io::Read + Send> = Box::new(Cursor::new(data.to_vec()));
    let input = Source::Stream(BufReader::new(reader));
    let result = line::for_each_line(input, hmp, |logical| {
        match logical {
            Ok((text, _)) => {
                if !hmp {
                    check_logical(text);
                }
                match bind::translate(text, Some(1), hmp, None, &Offline::newest()) {
                    Ok(action) => check_action(&action),
                    Err(error) => check_located(text, &error),
                }
            }
            Err(error) => assert!(matches!(error, Error::Parse { .. }), "{error:?}"),
        }
        Ok(Flow::Continue)
    });
    assert!(result.is_ok(), "{result:?}");
}

/// The assembler driven directly, `-H` style, over the text's lines.
fn assemble_by_hand(text: &str) {
    let mut assembler = Assembler::for_hmp();
    for physical in text.split('\n') {
        if let Some((logical, _)) = assembler.push(physical) {
            let _ = parse_line(&logical);
        }
        let _ = assembler.pending_block();
    }
    if let Some((logical, _)) = assembler.finish() {
        let _ = parse_line(&logical);
    }
}

/// One logical line: parsed, then bound in each context.
fn check_logical(text: &str) {
    let parsed = match parse_line(text) {
        Ok(parsed) => parsed,
        Err(error) => {
            check_offset(text, &error);
            assert!(error.message.starts_with("expected "), "{error:?}");
            return;
        }
    };
    let _ = bind::needs_schema(&parsed);
    let (newest, oldest) = (version::newest(), &version::recorded()[0]);
    let contexts = [
        Context::default(),
        Context { hmp: true, cpu: Some(1), ..Context::default() },
        Context {
            schema: Some(newest.schema()),
            hmp_commands: Some(newest.hmp_commands()),
            qemu: Some(newest.version),
            ..Context::default()
        },
        Context {
            schema: Some(oldest.schema()),
            hmp_commands: Some(oldest.hmp_commands()),
            qemu: Some(oldest.version),
            ..Context::default()
        },
    ];
    for context in &contexts {
        match bind::bind(&parsed, text, context) {
            Ok(action) => check_action(&action),
            Err(error) => check_offset(text, &error),
        }
    }
}

fn check_offset(text: &str, error: &ParseError) {
    assert!(error.offset <= text.len(), "{error:?} past the end of {text:?}");
    assert!(text.is_char_boundary(error.offset), "{error:?} inside a character of {text:?}");
    let (_, column) = line::position(text, error.offset);
    assert!(column >= 1);
}

/// An error placed for a person has a column from 1 on, where it has one.
fn check_located(text: &str, error: &Error) {
    match error {
        Error::Parse { column, .. } => assert!(column.is_none_or(|c| c >= 1 && c <= text.chars().count() + 1)),
        other => panic!("translating {text:?} failed with {other:?}"),
    }
}

fn check_action(action: &Action) {
    if let Action::Send(request) = action {
        let command = request.message.get("execute").or_else(|| request.message.get("exec-oob"));
        assert!(command.is_some_and(|c| c.is_string()), "{:?}", request.message);
        let _ = request.command();
        let _ = request.quits();
        assert!(serde_json::to_vec(&request.message).is_ok());
    }
}
