//! Line input: where a script's lines come from (`-c` arguments or a
//! stream), read as physical lines with bounds on their length, and joined
//! into logical lines by the [`Assembler`].

use std::io::{self, BufRead, BufReader, Read};

use super::Assembler;
use crate::bounds;
use crate::error::Error;

/// Whether to go on after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `.exit`, or QEMU went away after our `quit`.
    Exit,
}

/// Where a script's lines come from: `-c` arguments or a stream such as
/// stdin.
pub enum Source {
    Commands(Vec<String>),
    Stream(BufReader<Box<dyn Read + Send>>),
}

/// The next physical line of `reader` (number `number`), without its
/// newline; `None` at the end.
/// A line longer than [`bounds::MAX_LINE`] is refused as unreadable (its
/// rest is read past, in pieces), not kept growing.
pub fn read_physical(reader: &mut dyn BufRead, number: usize) -> Result<Option<String>, Error> {
    let failed = |e: io::Error| Error::Io(format!("cannot read input: {e}"));
    let mut raw = Vec::new();
    let n = (&mut *reader).take(bounds::MAX_LINE as u64 + 1).read_until(b'\n', &mut raw).map_err(failed)?;
    if n == 0 {
        return Ok(None);
    }
    if raw.last() == Some(&b'\n') {
        raw.pop();
    } else if raw.len() > bounds::MAX_LINE {
        drop(raw);
        skip_line(reader).map_err(failed)?;
        let message = format!("the line is over {} MiB; qmpsh takes no longer lines", bounds::MAX_LINE >> 20);
        return Err(Error::Parse { line: Some(number), column: None, message });
    }
    String::from_utf8(raw).map(Some).map_err(|e| Error::Parse {
        line: Some(number),
        column: None,
        message: format!("not valid UTF-8 (byte {})", e.utf8_error().valid_up_to() + 1),
    })
}

/// Reads past the rest of a line, a buffer at a time.
fn skip_line(reader: &mut dyn BufRead) -> io::Result<()> {
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(());
            }
            None => {
                let all = buffer.len();
                reader.consume(all);
            }
        }
    }
}

/// One logical line for [`assemble`]'s caller: its text and the number of
/// its first physical line, or why it could not be read (not UTF-8).
pub type Logical<'a> = Result<(&'a str, usize), Error>;

/// Joins the physical lines `next` supplies into logical lines and hands
/// each to `each` with its first physical line's number, until `next` runs
/// out or `each` says to stop. A physical line that cannot be read is
/// handed over as its error, with the logical line it broke; `each` decides
/// whether to go on. `state` is lent to both in turn.
pub fn assemble<S: ?Sized>(
    state: &mut S,
    hmp: bool,
    mut next: impl FnMut(&mut S) -> Result<Option<String>, Error>,
    mut each: impl FnMut(&mut S, Logical) -> Result<Flow, Error>,
) -> Result<(), Error> {
    let mut assembler = if hmp { Assembler::for_hmp() } else { Assembler::new() };
    loop {
        let logical = match next(state) {
            Ok(Some(physical)) => match assembler.push(&physical) {
                Some((text, start)) => each(state, Ok((&text, start)))?,
                None => Flow::Continue,
            },
            Ok(None) => break,
            Err(unreadable @ Error::Parse { .. }) => {
                assembler.skip_unreadable();
                each(state, Err(unreadable))?
            }
            Err(other) => return Err(other),
        };
        if logical == Flow::Exit {
            return Ok(());
        }
    }
    finish(&mut assembler, state, &mut each).map(|_| ())
}

/// The end of one unit of input (the stream, or one `-c`): what is pending
/// is a line, and a `\` that continued into the end is refused, as an
/// open `{` is.
fn finish<S: ?Sized>(
    assembler: &mut Assembler,
    state: &mut S,
    each: &mut impl FnMut(&mut S, Logical) -> Result<Flow, Error>,
) -> Result<Flow, Error> {
    if let Some(start) = assembler.dangling() {
        assembler.finish();
        let message = "expected a line after the `\\` that continues this one, not the end of the input".to_string();
        return each(state, Err(Error::Parse { line: Some(start), column: None, message }));
    }
    match assembler.finish() {
        Some((text, start)) => each(state, Ok((&text, start))),
        None => Ok(Flow::Continue),
    }
}

/// Feeds every logical line of `input` to `each` (see [`assemble`]), until
/// `each` says to stop or fails.
/// With `hmp` (`-H`), HMP text lines continue only after a `\`.
pub fn for_each_line(
    input: Source,
    hmp: bool,
    mut each: impl FnMut(Logical) -> Result<Flow, Error>,
) -> Result<(), Error> {
    let mut each = |_: &mut (), line: Logical| each(line);
    match input {
        Source::Commands(commands) => {
            // Each `-c` is whole: a `\` or an open `{` never reaches into
            // the next one.
            let mut assembler = if hmp { Assembler::for_hmp() } else { Assembler::new() };
            for command in &commands {
                for physical in command.split('\n') {
                    if let Some((text, start)) = assembler.push(physical)
                        && each(&mut (), Ok((&text, start)))? == Flow::Exit
                    {
                        return Ok(());
                    }
                }
                if finish(&mut assembler, &mut (), &mut each)? == Flow::Exit {
                    return Ok(());
                }
            }
            Ok(())
        }
        Source::Stream(mut reader) => {
            let mut number = 0;
            let next = |_: &mut ()| {
                number += 1;
                read_physical(&mut reader, number)
            };
            assemble(&mut (), hmp, next, &mut each)
        }
    }
}
