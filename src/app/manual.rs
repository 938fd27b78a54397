//! The man pages, from the same sources as `--help` and `.help`: qmpsh(1)
//! with its TARGET rules and exit codes as the tables they are, a page per
//! subcommand (qmpsh-vm-start(1), ...), and qmpsh-language(7) for the line
//! language and the dot commands.

use std::fs;
use std::io;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::EXIT_CODES_HELP;
use crate::language::help;
use crate::target::TARGET_HELP;

/// One page: its file name (`qmpsh-vm-start.1`) and its roff.
pub struct Page {
    pub file: String,
    pub roff: Vec<u8>,
}

/// qmpsh(1).
pub fn main_page() -> io::Result<Page> {
    let man = clap_mangen::Man::new(command());
    let mut roff = Vec::new();
    man.render_title(&mut roff)?;
    man.render_name_section(&mut roff)?;
    man.render_synopsis_section(&mut roff)?;
    man.render_description_section(&mut roff)?;
    man.render_options_section(&mut roff)?;
    man.render_subcommands_section(&mut roff)?;
    // The after-help text (rules and codes) is laid out by hand: roff
    // would fill it into running text.
    kept_section(&mut roff, "TARGET", body_of(TARGET_HELP));
    kept_section(&mut roff, "EXIT STATUS", body_of(EXIT_CODES_HELP));
    section(
        &mut roff,
        "SEE ALSO",
        "qmpsh-language(7) for the lines qmpsh reads and the dot commands; the README for more.",
    );
    man.render_version_section(&mut roff)?;
    Ok(Page { file: man.get_filename(), roff })
}

/// Every page: qmpsh(1), one per subcommand, qmpsh-language(7).
pub fn all_pages() -> io::Result<Vec<Page>> {
    let mut pages = vec![main_page()?];
    let mut command = command();
    command.build();
    subcommand_pages(&command, &mut pages)?;
    pages.push(language_page());
    Ok(pages)
}

/// Writes every page into `dir`.
pub fn write_all(dir: &Path) -> io::Result<Vec<String>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for page in all_pages()? {
        fs::write(dir.join(&page.file), &page.roff)?;
        written.push(page.file);
    }
    Ok(written)
}

/// The command line as clap knows it, without its `help` subcommand
/// (which would get a page of its own).
fn command() -> clap::Command {
    Cli::command().disable_help_subcommand(true)
}

/// The pages of `parent`'s subcommands and theirs, named as clap names
/// them (`qmpsh-vm-start`), as the SUBCOMMANDS sections refer to them.
fn subcommand_pages(parent: &clap::Command, pages: &mut Vec<Page>) -> io::Result<()> {
    for sub in parent.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone());
        let mut roff = Vec::new();
        man.render(&mut roff)?;
        pages.push(Page { file: man.get_filename(), roff });
        subcommand_pages(sub, pages)?;
    }
    Ok(())
}

/// qmpsh-language(7): the line language and the dot commands, from the
/// table `.help` lists.
fn language_page() -> Page {
    let mut roff = Vec::new();
    let version = env!("CARGO_PKG_VERSION");
    roff.extend(format!(".TH QMPSH-LANGUAGE 7 \"\" \"qmpsh {version}\"\n").as_bytes());
    section(&mut roff, "NAME", "qmpsh-language - the lines qmpsh reads: commands, arguments and dot commands");
    let description = "\
Each line typed at the prompt, given with -c or read from a script is one of:

a human command from the table below, with positional arguments as HMP takes them \
(device_add e1000,id=n1; info status; migrate -d tcp:host:4444);

any other QMP command with qmp-shell style NAME key=value arguments, dotted keys nesting \
(blockdev-add driver=null-co node-name=d0);

raw QMP JSON ({\"execute\": \"query-status\"}), which may span lines while a { or [ is open;

hmp TEXT, sent to the human monitor as it is;

a dot command (.help, .wait, .watch, ...), which qmpsh itself runs;

a comment (# ...) or a blank line, which is passed over.

A line ending in \\ continues on the next. With -H every line that is not JSON or a dot command is HMP text.";
    section(&mut roff, "DESCRIPTION", description);
    roff.extend(b".SH COMMANDS\n");
    for (usage, text) in help::commands() {
        entry(&mut roff, &usage, &text);
    }
    roff.extend(b".SH DOT COMMANDS\n");
    for (usage, text) in help::dot_commands() {
        entry(&mut roff, &usage, &text);
    }
    section(
        &mut roff,
        "SEE ALSO",
        "qmpsh(1); .help NAME at the prompt shows one command's arguments and which QEMUs have it.",
    );
    Page { file: "qmpsh-language.7".into(), roff }
}

/// A section of plain paragraphs (separated by blank lines in `text`).
fn section(roff: &mut Vec<u8>, title: &str, text: &str) {
    roff.extend(format!(".SH \"{title}\"\n").as_bytes());
    for (i, paragraph) in text.split("\n\n").enumerate() {
        if i > 0 {
            roff.extend(b".PP\n");
        }
        roff.extend(literal_words(paragraph).as_bytes());
        roff.push(b'\n');
    }
}

/// A section of tables and rules, kept line for line as written.
fn kept_section(roff: &mut Vec<u8>, title: &str, text: &str) {
    roff.extend(format!(".SH \"{title}\"\n.nf\n{}\n.fi\n", literal(text)).as_bytes());
}

/// One command: its usage in bold, its help below.
fn entry(roff: &mut Vec<u8>, usage: &str, text: &str) {
    roff.extend(format!(".TP\n\\fB{}\\fR\n{}\n", escape(usage), literal_words(text)).as_bytes());
}

/// What follows the first line of a help text (`Exit codes:`), which the
/// section's title says.
fn body_of(text: &str) -> &str {
    text.split_once('\n').map_or(text, |(_, rest)| rest)
}

/// Text kept line for line: each line escaped, and a line that roff would
/// take for a request (a leading `.` or `'`) guarded.
fn literal(text: &str) -> String {
    text.lines().map(|line| format!("\\&{}", escape(line))).collect::<Vec<_>>().join("\n")
}

/// Running text: escaped, on one line (roff fills it).
fn literal_words(text: &str) -> String {
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("\\&{}", escape(&words))
}

/// Backslashes and hyphens as roff wants them, so that `\` shows and
/// `--json` is not a typographic dash.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_are_one_per_subcommand_and_the_language() {
        let files: Vec<String> = all_pages().unwrap().into_iter().map(|p| p.file).collect();
        for file in
            ["qmpsh.1", "qmpsh-vm.1", "qmpsh-vm-start.1", "qmpsh-vm-exec.1", "qmpsh-launch.1", "qmpsh-language.7"]
        {
            assert!(files.contains(&file.to_string()), "{file}: {files:?}");
        }
        assert!(!files.iter().any(|f| f.contains("help")), "{files:?}");
    }

    #[test]
    fn tables_stay_tables_and_the_name_reads_once() {
        let page = String::from_utf8(main_page().unwrap().roff).unwrap();
        assert!(page.contains("qmpsh \\- The QEMU monitor shell"), "{page}");
        let codes = page.split(".SH \"EXIT STATUS\"").nth(1).unwrap();
        assert!(codes.starts_with("\n.nf\n"), "{codes}");
        assert!(!page.contains("Exit codes:"), "the section's title says it");
    }
}
