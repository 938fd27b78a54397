//! Joins physical lines into logical ones: a line ending in `\` continues
//! on the next, and so does one with an unclosed `{` or `[` (multi-line
//! JSON), or a `transaction(` block until its `)`.

/// Collects physical lines until they form one logical line.
#[derive(Debug, Default)]
pub struct Assembler {
    pending: String,
    /// 1-based number of the physical line the pending text started on.
    start: usize,
    /// Physical lines seen so far.
    seen: usize,
}

impl Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one physical line (without its newline). Returns the logical
    /// line and the number of its first physical line once it is complete.
    pub fn push(&mut self, physical: &str) -> Option<(String, usize)> {
        self.seen += 1;
        let physical = physical.strip_suffix('\r').unwrap_or(physical);
        if self.pending.is_empty() {
            self.start = self.seen;
        }
        if let Some(head) = physical.strip_suffix('\\') {
            self.pending.push_str(head);
            return None;
        }
        self.pending.push_str(physical);
        if needs_more(&self.pending) {
            self.pending.push('\n');
            return None;
        }
        Some(self.take())
    }

    /// Whether a logical line has started and waits for more: `None` if
    /// not, `Some(true)` inside a transaction block, `Some(false)` otherwise.
    pub fn pending_block(&self) -> Option<bool> {
        (!self.pending.is_empty()).then(|| self.pending.trim_start().starts_with("transaction("))
    }

    /// At the end of input: whatever is pending, complete or not, so the
    /// parser can say what is missing.
    pub fn finish(&mut self) -> Option<(String, usize)> {
        if self.pending.trim().is_empty() {
            self.pending.clear();
            return None;
        }
        let text = self.pending.trim_end_matches('\n').to_string();
        self.pending.clear();
        Some((text, self.start))
    }

    fn take(&mut self) -> (String, usize) {
        (std::mem::take(&mut self.pending), self.start)
    }
}

/// Whether `text` has an open `{`/`[` outside strings, or an open
/// transaction block. Comments never continue.
fn needs_more(text: &str) -> bool {
    let trimmed = text.trim_start();
    if trimmed.starts_with('#') {
        return false;
    }
    if trimmed.starts_with("transaction(") {
        return !closes_transaction(text);
    }
    let mut depth = 0i64;
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '{' | '[' if !in_string => depth += 1,
            '}' | ']' if !in_string => depth -= 1,
            _ => {}
        }
    }
    depth > 0
}

/// A one-line block ends with `)`; a multi-line block with a line that is
/// only `)`.
fn closes_transaction(text: &str) -> bool {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    match lines.last() {
        None => first.trim_end().ends_with(')'),
        Some(last) => last.trim() == ")",
    }
}
