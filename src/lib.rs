//! qmpsh, the QEMU monitor shell, as a library the binary and the tests use.
//!
//! The pipeline, in the order a line travels:
//! `line` (assemble and parse) → `bind` (against `table`) → `session`
//! (drives a `qmp::Monitor`) → `output`/`render` (replies and events).
//! `script` and `repl` feed a session lines; `attach` connects to a target
//! and runs one of them; `app` dispatches the command line; `vm` starts,
//! stops and kills the VMs qmpsh manages, and `launch` runs a shell on a
//! throwaway one. Modules only import downwards: none imports one that
//! imports it back.
//!
//! No `unsafe` anywhere but in the libvirt event callbacks
//! (`qmp::libvirt::events`, behind the `libvirt` feature): system calls go
//! through rustix and signal-hook, which wrap them safely.

#![deny(unsafe_code)]

pub mod app;
pub mod arguments;
pub mod attach;
pub mod bind;
pub mod bounds;
pub mod cli;
pub mod clock;
pub mod error;
pub mod help;
pub mod hmp;
pub mod interrupt;
pub mod launch;
pub mod line;
pub mod output;
pub mod private;
pub mod properties;
pub mod qemu_text;
pub mod qmp;
pub mod render;
pub mod repl;
pub mod schema;
pub mod script;
pub mod secrets;
pub mod session;
pub mod table;
pub mod target;
pub mod terminal;
pub mod units;
pub mod version;
pub mod visible;
pub mod vm;
