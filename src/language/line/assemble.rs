//! Joins physical lines into logical ones: a line ending in a `\` of its
//! own (after whitespace, or alone) continues on the next, and so does one
//! with an unclosed `{` or `[` (multi-line JSON), or a `transaction(` block
//! until its `)`. A `\` at the end of a word is part of the word
//! (`data=C:\`, as qmp-shell reads it): it never joins the next line.

use crate::bounds::MAX_LINE;

/// Collects physical lines until they form one logical line.
#[derive(Debug, Default)]
pub struct Assembler {
    pending: String,
    /// 1-based number of the physical line the pending text started on.
    start: usize,
    /// Physical lines seen so far.
    seen: usize,
    /// Physical lines in the pending text.
    lines: usize,
    /// `-H`: a line that is not JSON or a `.` command is HMP text, where
    /// brackets mean nothing, so only `\` continues it.
    hmp: bool,
    /// The brackets and quotes of the pending text so far, and how much of
    /// it they have seen: each byte is scanned once, however many lines a
    /// JSON value spans.
    scan: Scan,
    scanned: usize,
    /// The last line ended in a continuing `\`.
    dangling: bool,
}

impl Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// For `-H`, where every line but JSON and `.` commands is HMP text.
    pub fn for_hmp() -> Self {
        Assembler { hmp: true, ..Self::default() }
    }

    /// Adds one physical line (without its newline). Returns the logical
    /// line and the number of its first physical line once it is complete.
    pub fn push(&mut self, physical: &str) -> Option<(String, usize)> {
        self.seen += 1;
        let physical = physical.strip_suffix('\r').unwrap_or(physical);
        if self.pending.is_empty() {
            self.start = self.seen;
        }
        self.lines += 1;
        // Blanks after the `\` do not hide it.
        self.dangling = false;
        if let Some(head) = physical.trim_end().strip_suffix('\\')
            && (head.is_empty() || head.ends_with(char::is_whitespace))
        {
            self.pending.push_str(head);
            self.dangling = true;
            return self.too_long().then(|| self.take());
        }
        self.pending.push_str(physical);
        let hmp_text = self.hmp && !self.pending.trim_start().starts_with(['{', '.', '#']);
        if !hmp_text && self.needs_more(physical) {
            self.pending.push('\n');
            return self.too_long().then(|| self.take());
        }
        Some(self.take())
    }

    /// Whether a logical line has started and waits for more: `None` if
    /// not, `Some(true)` inside a transaction block, `Some(false)` otherwise.
    pub fn pending_block(&self) -> Option<bool> {
        (!self.pending.is_empty()).then(|| self.pending.trim_start().starts_with("transaction("))
    }

    /// Counts a physical line that could not be read, and drops the
    /// logical line it belonged to.
    pub fn skip_unreadable(&mut self) {
        self.seen += 1;
        self.reset();
    }

    /// Whether the input ended on a `\` that continues the line: what it
    /// joined is no whole line, as an open `{` is none either.
    pub fn dangling(&self) -> Option<usize> {
        self.dangling.then_some(self.start)
    }

    /// At the end of input: whatever is pending, complete or not, so the
    /// parser can say what is missing.
    pub fn finish(&mut self) -> Option<(String, usize)> {
        if self.pending.trim().is_empty() {
            self.reset();
            return None;
        }
        let text = self.pending.trim_end_matches('\n').to_string();
        let start = self.start;
        self.reset();
        Some((text, start))
    }

    fn take(&mut self) -> (String, usize) {
        let taken = (std::mem::take(&mut self.pending), self.start);
        self.reset();
        taken
    }

    /// Whether the pending text has grown past what a line may hold
    /// ([`MAX_LINE`]): it is then handed on as it is, for the parser to
    /// refuse, rather than kept growing.
    fn too_long(&self) -> bool {
        self.pending.len() > MAX_LINE
    }

    fn reset(&mut self) {
        self.pending.clear();
        (self.lines, self.scanned, self.dangling) = (0, 0, false);
        self.scan = Scan::default();
    }

    /// Whether the pending text (whose last physical line is `last`) has an
    /// open JSON `{`/`[`, or an open transaction block. Brackets count only
    /// where the grammar reads JSON: at the start of a line or word, or
    /// right after `=`; not inside quotes, comments or `hmp` text.
    fn needs_more(&mut self, last: &str) -> bool {
        let trimmed = self.pending.trim_start();
        let hmp =
            trimmed.strip_prefix("hmp").is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
        if trimmed.starts_with('#') || hmp {
            return false;
        }
        if trimmed.starts_with("transaction(") {
            return !closes_transaction(last, self.lines == 1);
        }
        let new = self.pending.get(self.scanned..).unwrap_or_default();
        self.scan.feed(new);
        self.scanned = self.pending.len();
        self.scan.depth > 0
    }
}

/// A quote being read: its delimiter (`"`, `'`, or a Python triple quote),
/// and whether a backslash escapes in it: always inside JSON or a Python
/// literal, and in a top-level "string", but not in a top-level 'string',
/// which is taken literally.
#[derive(Debug, Clone, Copy)]
struct Quote {
    delimiter: &'static str,
    escapes: bool,
}

/// Where a scan of brackets and quotes stands.
#[derive(Debug, Default)]
struct Scan {
    depth: usize,
    quote: Option<Quote>,
    escaped: bool,
    /// Characters of a delimiter already seen (a triple quote's last two).
    skip: usize,
    previous: Option<char>,
}

impl Scan {
    /// Reads on through `text`, the next part of the logical line.
    fn feed(&mut self, text: &str) {
        for (at, c) in text.char_indices() {
            let rest = text.get(at..).unwrap_or_default();
            let value_starts = self.previous.is_none_or(|p| p.is_whitespace() || p == '=');
            self.previous = Some(c);
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            match self.quote {
                Some(_) if self.escaped => self.escaped = false,
                Some(Quote { escapes: true, .. }) if c == '\\' => self.escaped = true,
                Some(Quote { delimiter, .. }) if rest.starts_with(delimiter) => {
                    self.quote = None;
                    self.skip = delimiter.len() - 1;
                }
                Some(_) => {}
                None if self.depth > 0 => match c {
                    '"' | '\'' => {
                        let triple = rest.as_bytes().get(..3).is_some_and(|three| three.iter().all(|&b| b == c as u8));
                        let delimiter = match (c, triple) {
                            ('"', true) => "\"\"\"",
                            ('"', false) => "\"",
                            (_, true) => "\'\'\'",
                            (_, false) => "\'",
                        };
                        self.skip = delimiter.len() - 1;
                        self.quote = Some(Quote { delimiter, escapes: true });
                    }
                    '{' | '[' => self.depth += 1,
                    '}' | ']' => self.depth -= 1,
                    _ => {}
                },
                None => match c {
                    '"' if value_starts => self.quote = Some(Quote { delimiter: "\"", escapes: true }),
                    '\'' if value_starts => self.quote = Some(Quote { delimiter: "\'", escapes: false }),
                    '{' | '[' if value_starts => self.depth = 1,
                    _ => {}
                },
            }
        }
    }
}

/// Whether a JSON or Python-literal value at the start of `value` is
/// still open at its end (brackets and quotes read as when joining lines).
pub(super) fn still_open(value: &str) -> bool {
    let mut scan = Scan::default();
    scan.feed(value);
    scan.depth > 0
}

/// A one-line block ends with `)`; a multi-line block with a line that is
/// only `)`, or (as qmp-shell allows) an action line whose last word is `)`.
/// `last` is the block's last line so far; `only` whether it is its first.
fn closes_transaction(last: &str, only: bool) -> bool {
    if only {
        return last.trim_end().ends_with(')');
    }
    let last = last.trim();
    last == ")" || last.strip_suffix(')').is_some_and(|head| head.ends_with(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logical(lines: &[&str]) -> Vec<String> {
        let mut assembler = Assembler::new();
        let mut out: Vec<String> = lines.iter().filter_map(|l| assembler.push(l)).map(|(t, _)| t).collect();
        out.extend(assembler.finish().map(|(t, _)| t));
        out
    }

    #[test]
    fn json_continues_until_it_closes() {
        assert_eq!(logical(&["{\"execute\":", "\"x\"}", "stop"]), ["{\"execute\":\n\"x\"}", "stop"]);
        assert_eq!(logical(&["x a={\"b\": [1,", "2]}", "stop"]), ["x a={\"b\": [1,\n2]}", "stop"]);
        assert_eq!(logical(&["x a={\"b\": \"}\"", "}"]), ["x a={\"b\": \"}\"\n}"]);
        // Python literals have triple quotes. A `#` (a comment to Python)
        // is not followed: a `]` after it still closes, so such a line is
        // refused on its own instead of swallowing the script after it.
        assert_eq!(logical(&["x a=[1, # c ]", "stop"]), ["x a=[1, # c ]", "stop"]);
        assert_eq!(
            logical(&["x a=['''it's''', \"\"\"a\"b\"\"\"]", "stop"]),
            ["x a=['''it's''', \"\"\"a\"b\"\"\"]", "stop"]
        );
        // Python literals quote with ' too, and escape inside.
        assert_eq!(logical(&["x a=['[', '\\'']", "stop"]), ["x a=['[', '\\'']", "stop"]);
    }

    #[test]
    fn brackets_that_are_not_json_never_swallow_the_next_line() {
        assert_eq!(logical(&["hmp echo [", "stop"]), ["hmp echo [", "stop"]);
        assert_eq!(logical(&["foo a='{'", "stop"]), ["foo a='{'", "stop"]);
        assert_eq!(logical(&["foo a=\"[\"", "stop"]), ["foo a=\"[\"", "stop"]);
        assert_eq!(logical(&["x/4xw $a[1", "stop"]), ["x/4xw $a[1", "stop"]);
        assert_eq!(logical(&["# {", "stop"]), ["# {", "stop"]);
    }

    #[test]
    fn hmp_text_continues_only_after_a_backslash() {
        let mut assembler = Assembler::for_hmp();
        let lines = ["print {", "info status", "{\"execute\":", "\"stop\"}"];
        let out: Vec<String> = lines.iter().filter_map(|l| assembler.push(l)).map(|(t, _)| t).collect();
        assert_eq!(out, ["print {", "info status", "{\"execute\":\n\"stop\"}"]);
    }

    #[test]
    fn backslash_and_transaction_blocks_continue() {
        assert_eq!(logical(&["device_add e1000 \\", "  id=n1"]), ["device_add e1000   id=n1"]);
        assert_eq!(logical(&["\\", "stop"]), ["stop"]);
        // A backslash that ends a word is the word's: the next line is a
        // command of its own, and the value keeps its backslash.
        assert_eq!(
            logical(&["ringbuf-write device=rb0 data=path\\", "query-status"]),
            ["ringbuf-write device=rb0 data=path\\", "query-status"]
        );
        let mut hmp = Assembler::for_hmp();
        let out: Vec<String> = ["print 1\\", "info status", "print 1 \\", "+ 2"]
            .iter()
            .filter_map(|l| hmp.push(l))
            .map(|(t, _)| t)
            .collect();
        assert_eq!(out, ["print 1\\", "info status", "print 1 + 2"]);
        assert_eq!(logical(&["transaction(", "  a", ")", "stop"]), ["transaction(\n  a\n)", "stop"]);
        assert_eq!(logical(&["transaction( a ; b )", "stop"]), ["transaction( a ; b )", "stop"]);
        // qmp-shell's way: the last action line closes the block.
        assert_eq!(logical(&["transaction(", "  a x=1", "  b )", "stop"]), ["transaction(\n  a x=1\n  b )", "stop"]);
        assert_eq!(logical(&["transaction(", "  a x=b)", ")"]), ["transaction(\n  a x=b)\n)"]);
    }
}
