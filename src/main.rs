//! The qmpsh binary: parse the command line, run, turn the outcome into an
//! exit code. Everything else lives in the library.

#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use qmpsh::error::finish;
use qmpsh::ui::output;

fn main() -> ExitCode {
    // The internal step that becomes QEMU (`vm start`, `launch`) is not
    // part of the command line people use.
    if std::env::args_os().nth(1).is_some_and(|first| first == qmpsh::vm::EXEC_COMMAND) {
        let rest: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
        let result = qmpsh::vm::exec_qemu(&rest);
        return finish(result, &mut output::stderr());
    }
    // A shell asking for completions at a Tab (`COMPLETE=bash qmpsh -- ...`,
    // see `qmpsh completions`) is answered and ends here.
    clap_complete::CompleteEnv::with_factory(<qmpsh::cli::Cli as clap::CommandFactory>::command).complete();
    let cli = qmpsh::cli::Cli::parse();
    let result = qmpsh::app::run(cli);
    finish(result, &mut output::stderr())
}
