//! The shell: a `session` runs lines on a monitor; `script` feeds it `-c`
//! and stdin, `repl` a terminal; `attach` connects to a target and runs
//! one of them; `fleet` runs a script on several targets at once; `launch` does so on a throwaway VM it starts and removes.

pub mod attach;
pub mod fleet;
pub mod launch;
pub mod repl;
pub mod script;
pub mod session;
