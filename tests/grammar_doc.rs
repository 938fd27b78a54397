//! grammar/GRAMMAR.md cannot drift: every example in its `examples` block
//! goes through `qmpsh --dry-run` and must print what the page says.

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
    let examples = examples();
    assert!(
        examples.len() >= 40,
        "only {} examples found",
        examples.len()
    );
    let mut wrong = Vec::new();
    for (input, expected) in &examples {
        let run = qmpsh(&["--dry-run"], input);
        let shown = match expected.strip_prefix("error: ") {
            Some(_) => format!(
                "error: {}",
                run.stderr.trim_end().trim_start_matches("qmpsh: ")
            ),
            None if run.stdout.is_empty() => "(nothing)".to_string(),
            None => run.stdout.trim_end().to_string(),
        };
        let code = if expected.starts_with("error: ") {
            2
        } else {
            0
        };
        if shown != *expected || run.code != code {
            wrong.push(format!(
                "{input}  documented: {expected}\n  printed:    {shown} (exit {})",
                run.code
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} examples differ:\n{}",
        wrong.len(),
        examples.len(),
        wrong.join("\n")
    );
}
