//! A line as far as it is typed, for completion and hints: the grammar's
//! own reading of the words before the cursor (each with its span), and the
//! word under the cursor, which may be unfinished (an open quote or JSON
//! value). The grammar builds it ([`super::parse_partial`]); the REPL reads
//! it instead of splitting the line itself.

use std::ops::Range;

use super::Invocation;

/// What a line typed up to the cursor looks like so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    pub form: Form,
    /// The span of the line's first word as the grammar reads it
    /// (`.wait`, `hmp`, `transaction(`, a command's name), if typed.
    pub head: Option<Range<usize>>,
    /// The command and the arguments complete before the cursor's word;
    /// `None` while the cursor is still in the name, or for a form with no
    /// command (blank, raw JSON, a transaction). For `hmp` text every
    /// argument is a positional word.
    pub invocation: Option<Invocation>,
    /// The word under the cursor.
    pub cursor: Cursor,
}

/// Which of the grammar's line forms the line has taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A comment.
    Comment,
    /// A raw QMP message.
    Json,
    /// `.NAME ARGS`.
    Dot,
    /// `hmp TEXT`, or any line but JSON and `.` commands with `-H`.
    Hmp,
    /// `transaction( ... )`.
    Transaction,
    /// `NAME ARGS`, or nothing typed yet.
    Command,
    /// Longer than a line may be, or holding more values than one may
    /// (`crate::bounds`): the session would refuse to parse it, so nothing
    /// in it is read.
    Refused,
}

/// The word the cursor is in (or at the end of).
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    /// Where the word starts; the cursor itself when no word has started
    /// (after a space).
    pub start: usize,
    /// The key, when `key=` is typed before the value.
    pub key: Option<String>,
    /// Where the value starts: after `key=`, else at `start`.
    pub value_start: usize,
    pub value: CursorValue,
}

/// The value under the cursor, as typed so far.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorValue {
    /// An unquoted word as typed; empty when nothing is typed yet.
    Bare(String),
    /// A `"double"` or `'single'` quoted string: the text inside (JSON
    /// escapes read, for double quotes), and whether the quote is closed.
    Quoted { quote: char, text: String, closed: bool },
    /// A JSON (or Python literal) object or array, closed or not.
    Json { closed: bool },
}

impl Cursor {
    /// A bare word `text` starting at `start`, split at its `key=` if any.
    pub(super) fn word(start: usize, text: &str, key: Option<String>) -> Cursor {
        let value_start = key.as_ref().map_or(start, |key| start + key.len() + 1);
        let value = text.get(value_start - start..).unwrap_or_default();
        Cursor { start, key, value_start, value: CursorValue::Bare(value.to_string()) }
    }

    /// The text typed so far for the value: what completion matches
    /// against; `None` inside JSON.
    pub fn text(&self) -> Option<&str> {
        match &self.value {
            CursorValue::Bare(text) | CursorValue::Quoted { text, .. } => Some(text),
            CursorValue::Json { .. } => None,
        }
    }

    /// Whether nothing of the word is typed yet.
    pub fn is_empty(&self) -> bool {
        self.key.is_none() && self.text() == Some("")
    }
}

/// The text inside a double quote whose `body` runs to the end of the
/// line without closing it, escapes read as far as they are complete;
/// `None` when the quote closes after all.
pub(super) fn open_double_quoted(body: &str) -> Option<String> {
    let mut escaped = false;
    for c in body.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return None,
            _ => {}
        }
    }
    let whole = if escaped { body.get(..body.len() - 1)? } else { body };
    Some(serde_json::from_str(&format!("\"{whole}\"")).unwrap_or_else(|_| whole.to_string()))
}
