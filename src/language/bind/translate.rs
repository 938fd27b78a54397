//! A whole line from text to action, with errors placed for a person:
//! parse (HMP text as typed with `-H`), then bind. A session does this with
//! what it fetched from QEMU; [`translate`] does it with none (`--dry-run`,
//! and the fuzz target), from a recorded QEMU or a saved schema.

use crate::bounds;
use crate::error::Error;
use crate::language::line::{self, Line, ParseError};
use crate::language::properties::Owner;
use crate::language::schema::Schema;
use crate::language::version::{self, Recorded, Version};

use super::{Action, Context, PropertyTypes};

/// Parses a line, with an error placed for a person (line and column).
/// With `-H`, a line that is not a comment, a `.` command
/// or raw JSON is HMP text as typed: the grammar never sees it.
pub fn parse_located(text: &str, line_no: Option<usize>, hmp: bool) -> Result<Line, Error> {
    let refuse = |message: String| Err(Error::Parse { line: line_no, column: None, message });
    if text.len() > bounds::MAX_LINE {
        return refuse(format!("the line is over {} MiB; qmpsh takes no longer lines", bounds::MAX_LINE >> 20));
    }
    if bounds::too_many_values(text.as_bytes()) {
        return refuse(bounds::values_refused("the line holds", bounds::MAX_VALUES));
    }
    let trimmed = text.trim();
    if hmp && !trimmed.is_empty() && !trimmed.starts_with(['.', '{', '#']) {
        return Ok(Line::Hmp(trimmed.to_string()));
    }
    line::parse_line(text).map_err(|e| locate(text, line_no, e))
}

/// Binds a parsed line, with an error placed as [`parse_located`] places it.
pub fn bind_located(parsed: &Line, text: &str, line_no: Option<usize>, context: &Context) -> Result<Action, Error> {
    super::bind(parsed, text, context).map_err(|e| locate(text, line_no, e))
}

/// A parse or bind error, placed for a person: line and column.
fn locate(text: &str, line_no: Option<usize>, error: ParseError) -> Error {
    let (lines_after, column) = line::position(text, error.offset);
    Error::Parse { line: line_no.map(|n| n + lines_after), column: Some(column), message: error.message }
}

/// What `--dry-run` binds by in place of a connected QEMU.
#[derive(Debug, Clone, Copy)]
pub struct Offline<'s> {
    /// The recorded QEMU (`--qemu`, else the newest): its HMP commands,
    /// and its schema unless `schema` is given.
    pub recorded: &'static Recorded,
    /// `--schema FILE`.
    pub schema: Option<&'s Schema>,
    /// The version whose table commands and arguments are checked: the
    /// recorded one's, or none for `--schema FILE` without `--qemu`.
    pub qemu: Option<Version>,
}

impl<'s> Offline<'s> {
    /// The newest recorded QEMU.
    pub fn newest() -> Offline<'static> {
        let recorded = version::newest();
        Offline { recorded, schema: None, qemu: Some(recorded.version) }
    }

    fn schema(&self) -> &'s Schema {
        self.schema.unwrap_or_else(|| self.recorded.schema())
    }
}

/// Parses and binds one logical line without a connection (`--dry-run`),
/// giving binding the schema when the line needs it, as a session does
/// (and only then reading it: a recorded one is 200 KB of JSON).
pub fn translate(
    text: &str,
    line_no: Option<usize>,
    hmp: bool,
    cpu: Option<i64>,
    offline: &Offline,
) -> Result<Action, Error> {
    let parsed = parse_located(text, line_no, hmp)?;
    let context = Context {
        hmp,
        cpu,
        schema: super::needs_schema(&parsed).then(|| offline.schema()),
        hmp_commands: super::needs_hmp_commands(&parsed).then(|| offline.recorded.hmp_commands()),
        qemu: offline.qemu.filter(|_| super::needs_version(&parsed)),
        properties: match super::properties_owner(&parsed) {
            Some(Owner::Device(name)) => {
                offline.recorded.device(&name).map_or(PropertyTypes::Offline, PropertyTypes::Known)
            }
            Some(Owner::Object(_)) => PropertyTypes::Offline,
            None => PropertyTypes::Unknown,
        },
    };
    bind_located(&parsed, text, line_no, &context)
}
