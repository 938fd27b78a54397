//! The line language: from a line of text to the QMP message it means,
//! without a connection. `line` reads lines (assemble, parse, or parse as
//! far as typed); `bind` checks a parsed line against the command `table`,
//! the QMP `schema` and HMP's command list (`hmp`) and builds the message;
//! `arguments`, `units`, `qemu_text` and `properties` type its values as
//! qmp-shell or QEMU would; `version` knows what each recorded QEMU has;
//! `help` is `.help`'s text.

pub mod arguments;
pub mod bind;
pub mod help;
pub mod hmp;
pub mod line;
pub mod properties;
pub mod qemu_text;
pub mod schema;
pub mod table;
pub mod units;
pub mod version;
