//! grammar/GRAMMAR.md cannot drift: every example in its `examples` block
//! goes through `qmpsh --dry-run` and must print what the page says.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::qmpsh;

/// (example lines, expected output) pairs from the page.
fn examples() -> Vec<(String, String)> {
    let page = include_str!("../grammar/GRAMMAR.md");
    let block = page
        .split("```examples\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("GRAMMAR.md has an examples block");
    let mut found = Vec::new();
    let mut lines = Vec::new();
    for line in block.lines() {
        match line.strip_prefix("=> ") {
            Some(expected) => found.push((lines.join("\n") + "\n", expected.to_string())),
            None if line.is_empty() && lines.is_empty() => {}
            None => {
                lines.push(line);
                continue;
            }
        }
        lines.clear();
    }
    found
}

#[test]
fn every_example_translates_as_documented() {
    // For every recorded QEMU, as the page says: the examples are
    // version-neutral.
    let examples = examples();
    assert!(examples.len() >= 40, "only {} examples found", examples.len());
    let mut wrong = Vec::new();
    let versions =
        qmpsh::language::version::recorded().iter().map(|q| format!("{}.{}", q.version.major, q.version.minor));
    for (version, (input, expected)) in versions.flat_map(|v| examples.iter().map(move |e| (v.clone(), e))) {
        let run = qmpsh(&["--dry-run", "--qemu", &version], input);
        let shown = match expected.strip_prefix("error: ") {
            Some(_) => run.stderr.trim_end().to_string(),
            None if run.stdout.is_empty() => "(nothing)".to_string(),
            None => run.stdout.trim_end().to_string(),
        };
        let code = if expected.starts_with("error: ") { 2 } else { 0 };
        if shown != *expected || run.code != code {
            wrong.push(format!("{input}  documented: {expected}\n  QEMU {version}: {shown} (exit {})", run.code));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} translations differ:\n{}",
        wrong.len(),
        examples.len() * qmpsh::language::version::recorded().len(),
        wrong.join("\n")
    );
}

/// Examples to leave out against a live QEMU: errors, a command QEMU lacks
/// on purpose, a wait for an event or work that will not come, and `quit`.
fn runs_against_qemu(input: &str, expected: &str) -> bool {
    !expected.starts_with("error: ")
        && !expected.contains(r#""execute":"quit""#)
        && !input.starts_with("__org.qemu_x-foo")
        && !input.starts_with(".wait")
        && !input.starts_with(".watch")
}

#[test]
fn every_translating_example_has_a_shape_qemu_accepts() {
    // A paused PC with two CPUs, so `.cpu 1` has a CPU to address.
    let pc = ["-machine", "pc", "-accel", "tcg", "-S", "-smp", "2", "-m", "64"];
    let Some(qemu) = common::Qemu::start(&pc) else { return };
    let mut refused = Vec::new();
    for (input, _) in examples().iter().filter(|(i, e)| runs_against_qemu(i, e)) {
        let run = qmpsh(&[&qemu.socket_arg()], input);
        let shape_error = ["CommandNotFound", "Parameter '", "Invalid parameter", "unknown command"]
            .iter()
            .any(|s| run.stderr.contains(s));
        if !matches!(run.code, 0 | 1) || shape_error {
            refused.push(format!("{input}  (exit {}) {}", run.code, run.stderr.trim_end()));
        }
    }
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
}

#[test]
fn the_readme_examples_translate() {
    let readme = include_str!("../README.md");
    let block =
        readme.split("```qmpsh\n").nth(1).and_then(|b| b.split("\n```").next()).expect("README has a qmpsh block");
    let run = qmpsh(&["--dry-run"], &format!("{block}\n"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let commands = block.lines().filter(|l| !l.starts_with('#') && !l.starts_with('.')).count();
    assert_eq!(run.stdout.lines().count(), commands, "{}", run.stdout);
}
