//! The interactive loop on a terminal.

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use serde_json::Value;

use crate::error::Error;
use crate::line::Assembler;
use crate::session::{Flow, Session};

/// Reads lines from the terminal until Ctrl-D, `.exit` or `quit`.
pub fn run(session: &mut Session, target: &str) -> Result<(), Error> {
    let mut editor = DefaultEditor::new().map_err(|e| Error::Io(format!("cannot open the terminal: {e}")))?;
    let version = session.version().unwrap_or_else(|| "QEMU".into());
    session.printer.text(&format!("qmpsh: connected to {target} ({version}); .help lists commands, Ctrl-D leaves\n"));
    let mut assembler = Assembler::new();
    loop {
        let prompt = if assembler.is_pending() { "...> " } else { "qmpsh> " };
        let physical = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                assembler = Assembler::new();
                continue;
            }
            Err(ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(Error::Io(format!("cannot read the terminal: {e}"))),
        };
        let Some((text, _)) = assembler.push(&physical) else {
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(text.as_str());
        match session.run_line(&text, None) {
            Ok(Flow::Continue) | Err(Error::CommandFailed) => {}
            Ok(Flow::Exit) => return Ok(()),
            Err(e @ (Error::Parse { .. } | Error::Usage(_) | Error::Timeout(_))) => {
                session.printer.problem(&format!("qmpsh: {e}"));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Session {
    /// `QEMU 7.2.22` from the greeting, when there was one.
    pub fn version(&self) -> Option<String> {
        let qemu = self.greeting()?.get("QMP")?.get("version")?.get("qemu")?;
        let part = |k: &str| qemu.get(k).and_then(Value::as_u64).unwrap_or(0);
        Some(format!("QEMU {}.{}.{}", part("major"), part("minor"), part("micro")))
    }
}
