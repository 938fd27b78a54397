//! Property tests: whatever a person or a file feeds the line parser and
//! binder, the answer is a result or an error at a real position, never a
//! panic.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use proptest::prelude::*;
use qmpsh::bind::{self, Context};
use qmpsh::line::{Assembler, parse_line};
use qmpsh::schema;

/// Text built from the characters the grammar cares about, plus anything.
fn line_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("=".to_string()),
        Just(".".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("\\".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(" ".to_string()),
        Just(";".to_string()),
        Just(")".to_string()),
        Just("\n".to_string()),
        Just("transaction(".to_string()),
        Just("hmp ".to_string()),
        Just("info ".to_string()),
        Just("device_add ".to_string()),
        Just("balloon ".to_string()),
        Just(",".to_string()),
        Just("/".to_string()),
        Just("-f".to_string()),
        // Python literals
        Just("(".to_string()),
        Just(":".to_string()),
        Just("#".to_string()),
        Just("True".to_string()),
        Just("None".to_string()),
        Just("b'".to_string()),
        Just("u'".to_string()),
        Just("\"\"\"".to_string()),
        Just("\\x".to_string()),
        Just("\\u".to_string()),
        Just("0x".to_string()),
        Just("1_0".to_string()),
        Just("e-".to_string()),
        Just("99999999999999999999".to_string()),
        // names whose meaning depends on the form
        Just("block_resize ".to_string()),
        Just("qom-set ".to_string()),
        Just("netdev_add ".to_string()),
        Just("node-name=".to_string()),
        "[a-z0-9_-]{1,8}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(pieces, 0..24).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn parsing_and_binding_never_panic(text in line_text()) {
        match parse_line(&text) {
            Ok(line) => {
                for (hmp, schema) in [(false, None), (true, None), (false, Some(schema::recorded()))] {
                    let context = Context { hmp, cpu: None, schema, hmp_commands: None };
                    if let Err(e) = bind::bind(&line, &text, &context) {
                        prop_assert!(e.offset <= text.len() && text.is_char_boundary(e.offset), "{e:?}");
                    }
                }
            }
            Err(e) => {
                prop_assert!(e.offset <= text.len() && text.is_char_boundary(e.offset), "{e:?}");
                prop_assert!(e.message.starts_with("expected "), "{}", e.message);
            }
        }
    }

    #[test]
    fn assembling_any_lines_never_panics(lines in prop::collection::vec(line_text(), 0..8)) {
        let mut assembler = Assembler::new();
        for line in &lines {
            if let Some((text, _)) = assembler.push(line) {
                let _ = parse_line(&text);
            }
        }
        if let Some((text, _)) = assembler.finish() {
            let _ = parse_line(&text);
        }
    }
}

/// A QemuOpts string's dotted keys are split by binding, not the grammar,
/// and once nested without limit: `device_add e1000,a.a.a...=1` with
/// 10,000 parts (a 20 KB line) overflowed the stack while the arguments
/// were typed and dropped, with or without the schema.
#[test]
fn qemuopts_keys_nest_a_bounded_depth() {
    let text = format!("device_add e1000,{}=1", vec!["a"; 10_000].join("."));
    let line = parse_line(&text).unwrap();
    for schema in [None, Some(schema::recorded())] {
        let context = Context { hmp: false, cpu: None, schema, hmp_commands: None };
        let e = bind::bind(&line, &text, &context).unwrap_err();
        assert_eq!(e.message, "expected a key of at most 32 dotted parts");
    }
}
