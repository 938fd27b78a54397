//! What the user sees: where output goes (`output`, the one writer of
//! stdout and stderr, and the `-l` traffic log), how it looks (`render`),
//! what the log and `-v` hide (`secrets`), what the terminal is
//! (`terminal`), the clock of event times and the log (`clock`), and a
//! long copy's progress line (`meter`).

pub mod clock;
pub mod meter;
pub mod output;
pub mod prefixed;
pub mod render;
pub mod secrets;
pub mod tables;
pub mod terminal;
