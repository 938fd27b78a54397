//! The qmpsh binary: parse the command line, run, turn the outcome into an
//! exit code. Everything else lives in the library.

#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = qmpsh::cli::Cli::parse();
    qmpsh::error::finish(qmpsh::app::run(cli))
}
