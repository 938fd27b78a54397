//! A running QEMU, managed or not: its process, found and killed only
//! when it is certainly ours (process.rs), and the stop sequence that
//! powers its guest off (stop.rs). `vm stop` and the shell's `.shutdown`
//! both come here, so neither reaches into the other; so do `vm exec`
//! and `.exec`, which run a program in the guest (guest.rs). Long work
//! QEMU does in the background (jobs, the migration) is watched to its
//! end in work.rs.

pub mod guest;
pub mod process;
pub mod stop;
pub mod work;
