//! HMP as QEMU describes it: the commands its `help` lists, so that a line
//! for a command only HMP has (`memsave 0 16 f`, `help info`) goes to HMP
//! without the `hmp` prefix, and the forms in which its text reports a
//! failure. The list is fetched from the monitor when a line first needs
//! it; a recorded QEMU's (grammar/qemu-*/hmp-help.txt) serves `--dry-run`,
//! and all of them the quick check of whether a line may need the list.

mod listing;

use std::collections::BTreeMap;

/// HMP's commands, by every name they answer to.
#[derive(Debug, Default)]
pub struct HmpCommands {
    by_name: BTreeMap<String, Usage>,
}

/// A command's arguments and help text, as `help` shows them.
#[derive(Debug, Clone)]
pub struct Usage {
    pub arguments: String,
    pub help: String,
}

impl HmpCommands {
    /// Reads what HMP's `help` printed.
    pub fn parse(help: &str) -> HmpCommands {
        let mut by_name = BTreeMap::new();
        for (names, arguments, text) in help.lines().filter_map(listing::listed) {
            let usage = Usage { arguments: arguments.to_string(), help: text.to_string() };
            for name in names {
                by_name.insert(name.to_string(), usage.clone());
            }
        }
        HmpCommands { by_name }
    }

    /// The command `name` (or an alias of it), if HMP has it.
    pub fn usage(&self, name: &str) -> Option<&Usage> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// The topics `info` has, from what HMP's `help info` printed (`info
/// status  -- show the current VM status`, one a line).
pub fn info_topics(help_info: &str) -> Vec<String> {
    help_info
        .lines()
        .filter_map(|line| line.strip_prefix("info "))
        .filter_map(|rest| rest.split_whitespace().next())
        .flat_map(|topic| topic.split('|'))
        .map(String::from)
        .collect()
}

/// Whether any recorded QEMU's HMP has a command `name`: a search in a
/// list compiled into the binary, so asking costs nothing.
pub fn recorded_has(name: &str) -> bool {
    RECORDED_NAMES.binary_search(&name).is_ok()
}

static RECORDED_NAMES: &[&str] = include!(concat!(env!("OUT_DIR"), "/hmp_names.rs"));

/// Whether `text`, HMP's reply to `command_line`, is HMP's report of a
/// failure, in one of the generic forms QEMU's monitor (monitor/hmp.c,
/// hmp_handle_error) writes: a command's `Error: ...` line; `unknown
/// command: 'x'`; a command that is not available; a CPU that does not
/// exist; or any argument parse error, which HMP always follows with `Try
/// "help CMD" for more information`. An `info` listing can start with
/// `Error: ` as data (a chardev named `Error`), so there only a reply of
/// that one line fails. A command other than a listing or a data dump also
/// fails on the forms in which commands word their own errors.
pub fn is_failure(command_line: &str, text: &str) -> bool {
    const FIRST_LINES: &[&str] = &[
        "unknown command: '",
        "invalid CPU index",
        "No CPU available",
        // `change vnc password` with no password: HMP cannot ask for one.
        "terminal does not support password prompting",
    ];
    let first = text.lines().next().unwrap_or_default();
    let unavailable = first.starts_with("Command ") && first.contains(" not available");
    let missing_cpu = first.starts_with("CPU#") && first.trim_end().ends_with(" not available");
    let word = command_line.split_whitespace().next().unwrap_or_default();
    let listing = word == "info";
    let error = first.starts_with("Error: ") && !(listing && text.lines().nth(1).is_some());
    FIRST_LINES.iter().any(|form| first.starts_with(form))
        || unavailable
        || missing_cpu
        || error
        || (!listing && !PRINTS_DATA.contains(&word) && text.lines().any(|line| in_own_words(line.trim_end())))
        || text
            .lines()
            .any(|line| line.starts_with("Try \"help ") && line.trim_end().ends_with("\" for more information"))
}

/// Commands whose reply is data that could read like anything.
const PRINTS_DATA: &[&str] = &["ringbuf_read", "print", "p", "help", "?", "sum", "qemu-io"];

/// The failures that HMP commands report in their own words, without
/// `Error:` (QEMU 7.2: `drive_del nosuch` → "Device 'nosuch' not found",
/// `sendkey foo` → "invalid parameter: foo", `x/4x 0` on a machine without
/// a CPU → "Can not dump without CPU", `trace-event nosuch on` → "unknown
/// event ...", `gdbserver bogus:x` → "'bogus:x' is not a valid char
/// driver", `singlestep bogus` → "unexpected option bogus"). A command
/// that succeeds prints nothing or data, never these.
fn in_own_words(first: &str) -> bool {
    const STARTS: &[&str] =
        &["invalid ", "Invalid ", "Could not ", "could not ", "Cannot ", "Can not ", "unknown ", "unexpected "];
    const CONTAINS: &[&str] = &["' not found", " is not a valid ", ": Cannot access memory", " could not be resolved"];
    STARTS.iter().any(|form| first.starts_with(form))
        || CONTAINS.iter().any(|form| first.contains(form))
        || first.ends_with(" not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_commands_own_words_fail_but_data_does_not() {
        assert!(is_failure("drive_del nosuch", "Device 'nosuch' not found\r\n"));
        assert!(is_failure("sendkey foo", "invalid parameter: foo\r\n"));
        assert!(is_failure("hostfwd_remove tcp::1234", "host forwarding rule for tcp::1234 not found\r\n"));
        assert!(is_failure("x/4x 0", "Can not dump without CPU\r\n"));
        assert!(!is_failure("ringbuf_read rb0 64", "invalid parameter: foo\r\n"), "data read back");
        assert!(!is_failure("info chardev", "Invalid: file\r\n"), "a listing");
        assert!(!is_failure("x/2x 0", "0000000000000000: 0x00000000 0x00000000\r\n"));
        assert!(!is_failure("mouse_move 1 1", ""));
    }

    #[test]
    fn names_aliases_and_arguments_from_help_text() {
        let help = "cont|c  -- resume emulation\n\
                    drive_add [-n] [[<domain>:]<bus>:]<slot>\n\
                    [file=file][,if=type]\n\
                    \t\t\t copy for a device\n\
                    memsave addr size file -- save to disk virtual memory dump\n";
        let commands = HmpCommands::parse(help);
        let names: Vec<&str> = commands.names().collect();
        assert_eq!(names, ["c", "cont", "drive_add", "memsave"]);
        assert_eq!(commands.usage("memsave").map(|u| u.arguments.as_str()), Some("addr size file"));
        assert_eq!(commands.usage("c").map(|u| u.help.as_str()), Some("resume emulation"));
    }

    #[test]
    fn the_compiled_names_are_every_recorded_list_together() {
        let mut parsed: Vec<&str> =
            crate::language::version::recorded().iter().flat_map(|qemu| qemu.hmp_commands().names()).collect();
        parsed.sort_unstable();
        parsed.dedup();
        assert_eq!(parsed, RECORDED_NAMES);
        assert!(recorded_has("memsave") && recorded_has("?") && !recorded_has("query-status"));
        // QEMU 8.1 renamed singlestep: a line for either may be HMP's.
        assert!(recorded_has("singlestep") && recorded_has("one-insn-per-tb"));
    }
}
