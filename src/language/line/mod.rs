//! The line language: what one typed or scripted line says, before anyone
//! knows which commands exist. `input` reads a script's physical lines,
//! `assemble` joins continued ones, `grammar` parses one logical line into
//! a [`Line`], or a line as far as it is typed into a [`Partial`] (for
//! completion and hints).
//!
//! The grammar records the shape of a line and where each part sits, never
//! what it means: typing values and checking commands is binding's job
//! (`crate::language::bind`).

mod assemble;
mod grammar;
pub mod input;
pub mod literal;
mod partial;

pub use assemble::Assembler;
pub(crate) use grammar::{MAX_KEY_PARTS, is_key_char};
pub use grammar::{parse_line, parse_partial};
pub use input::{Flow, Logical, Source, assemble, for_each_line, read_physical};
pub use partial::{Cursor, CursorValue, Form, Partial};

use serde_json::Map;

/// One logical line of input.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Blank, or a `#` comment.
    Blank,
    /// A raw QMP message, written as a JSON object.
    Json(Map<String, serde_json::Value>),
    /// `.NAME ARGS`: handled by qmpsh itself.
    Dot(Invocation),
    /// `hmp REST`: the rest of the line, sent as HMP text.
    Hmp(String),
    /// `transaction( ... )`: the actions inside the block.
    Transaction(Vec<Invocation>),
    /// `NAME ARGS`: a table command or a QMP command.
    Command(Invocation),
}

/// A name followed by arguments, as in `device_del id=n1` or `.wait STOP`.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub name: String,
    /// Byte offset of the name in the logical line.
    pub offset: usize,
    pub args: Vec<Arg>,
}

/// One argument: `key=value`, or a positional word.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    /// The dotted key split at its dots; `None` for a positional word.
    pub key: Option<Vec<String>>,
    pub value: Value,
    /// Byte offset of the argument in the logical line.
    pub offset: usize,
    /// Byte offset just past it: `text[offset..end]` is the argument as
    /// typed (HMP takes `console=ttyS0` as one value).
    pub end: usize,
}

/// An argument's value as written. Its JSON type is decided when binding,
/// where the command table or the live schema may know better than the text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A `"double"` or `'single'` quoted string, quotes removed.
    Quoted(String),
    /// An unquoted word: a number, `true`, `false`, `null` or a string.
    Bare(String),
    /// A JSON object or array.
    Json(serde_json::Value),
}

impl Value {
    /// The text of a string-like value; `None` for JSON.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Quoted(s) | Value::Bare(s) => Some(s),
            Value::Json(_) => None,
        }
    }
}

/// Why a line did not parse, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// Byte offset into the logical line.
    pub offset: usize,
    pub message: String,
}

/// A failure at `offset`: what was expected there. Binding and the schema
/// report their errors this way too.
pub fn expected<T>(offset: usize, what: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { offset, message: format!("expected {}", what.into()) })
}

/// A line that parses but that binding refuses at `offset`, for the reason
/// `why` gives (a table argument the QEMU's version lacks).
pub fn refused<T>(offset: usize, why: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { offset, message: why.into() })
}

/// Where a byte offset of a logical line sits for a person: how many
/// physical lines after the first (multi-line JSON), and the 1-based column
/// in characters on that line.
pub fn position(line: &str, offset: usize) -> (usize, usize) {
    let prefix = line.get(..offset).unwrap_or(line);
    let line_start = prefix.rfind('\n').map_or(0, |i| i + 1);
    let lines_after = prefix.matches('\n').count();
    (lines_after, prefix[line_start..].chars().count() + 1)
}
