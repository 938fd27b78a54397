//! qmpsh, the QEMU monitor shell, as a library the binary and the tests use.
//!
//! The rooms, each importing only from the ones before it (a test,
//! `tests/layers.rs`, holds them to it):
//!
//! - the ground every room stands on, importing nothing above it: `error`
//!   (the one error type and the exit codes), `bounds`, `private`,
//!   `visible`, `interrupt`, `target`;
//! - `language`: a line of text to the QMP message it means, with no
//!   connection (`line` → `bind`, against the `table` and the `schema`);
//! - `qmp`: the client, one `Monitor` over a socket, a guest agent or
//!   libvirt;
//! - `qemu`: a running QEMU's process and the sequence that stops it;
//! - `ui`: what the user sees, through one writer (`output`, `render`);
//! - `vm`: the VMs qmpsh starts, stops and kills;
//! - `shell`: a `session` runs lines on a monitor, fed by `script` or the
//!   `repl`; `attach` connects and runs one, `launch` on a throwaway VM;
//! - `cli` and `app`: the command line, decided once and dispatched.
//!
//! No `unsafe` anywhere but in the libvirt event callbacks
//! (`qmp::libvirt::events`, behind the `libvirt` feature): system calls go
//! through rustix and signal-hook, which wrap them safely.

#![deny(unsafe_code)]

pub mod app;
pub mod bounds;
pub mod cli;
pub mod error;
pub mod interrupt;
pub mod language;
pub mod private;
pub mod qemu;
pub mod qmp;
pub mod shell;
pub mod target;
pub mod ui;
pub mod visible;
pub mod vm;
