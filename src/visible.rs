//! Text from a peer made safe for a terminal. QEMU, the guest agent,
//! libvirt and the guest behind them choose the bytes of event names, error
//! descriptions, HMP output, host names...; printed raw, an escape sequence
//! among them could retitle the terminal, hide or rewrite lines, or a
//! carriage return could forge the start of a line (`\rqmpsh: ...`).
//!
//! So every such text goes through [`visible`] before it is printed: each
//! control character (C0, DEL, C1: U+0000–U+001F, U+007F, U+0080–U+009F)
//! becomes `\xNN`, its code point in two hex digits as Python writes it
//! (ESC is `\x1b`, CR `\x0d`). Tab stays. A line break stays only where text
//! is made of lines ([`Breaks::Keep`]: HMP output, messages with a log
//! excerpt), and there a CRLF is a line break too, while a lone CR is still
//! escaped. A backslash is left as it is: such text stays readable, at the
//! price that `\x1b` typed literally by the peer looks the same.
//!
//! This module sits below every layer that prints or builds messages, so
//! the one rule is applied where peer text enters a message.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether line breaks in a text are its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaks {
    /// One line (a name, an error description): a line break is escaped
    /// like any control character.
    Escape,
    /// Lines (HMP output): `\n` and `\r\n` are line breaks.
    Keep,
}

/// Whether `c` is a control character a terminal may act on.
pub fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// `text` with its control characters shown as `\xNN` (see the module
/// doc); borrowed when there are none.
pub fn visible(text: &str, breaks: Breaks) -> Cow<'_, str> {
    let kept = |c: char| c == '\t' || (breaks == Breaks::Keep && c == '\n');
    if !text.chars().any(|c| is_control(c) && !kept(c)) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if breaks == Breaks::Keep && c == '\r' && chars.peek() == Some(&'\n') {
            continue; // the \n that follows is the line break
        }
        if is_control(c) && !kept(c) {
            let _ = write!(shown, "\\x{:02x}", u32::from(c));
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

/// [`visible`] for one line, owned: for text put into a message.
pub fn line(text: &str) -> String {
    visible(text, Breaks::Escape).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_show_as_escapes() {
        let title = "\x1b]0;owned\x07\rqmpsh: forged\n";
        assert_eq!(visible(title, Breaks::Escape), "\\x1b]0;owned\\x07\\x0dqmpsh: forged\\x0a");
        assert_eq!(visible(title, Breaks::Keep), "\\x1b]0;owned\\x07\\x0dqmpsh: forged\n");
        assert_eq!(visible("a\u{9b}31m\u{7f}\0b", Breaks::Escape), "a\\x9b31m\\x7f\\x00b");
    }

    #[test]
    fn plain_text_is_borrowed_with_its_tabs_and_backslashes() {
        for text in ["VM status: running", "a\tb", r"C:\x1b", "ünïcödé ✓"] {
            assert!(matches!(visible(text, Breaks::Escape), Cow::Borrowed(t) if t == text), "{text}");
        }
        assert!(matches!(visible("one\ntwo\n", Breaks::Keep), Cow::Borrowed(_)));
    }

    #[test]
    fn crlf_is_a_line_break_where_breaks_are_kept_but_a_lone_cr_is_not() {
        assert_eq!(visible("one\r\ntwo\r\n", Breaks::Keep), "one\ntwo\n");
        assert_eq!(visible("one\rtwo\r\r\n", Breaks::Keep), "one\\x0dtwo\\x0d\n");
        assert_eq!(visible("one\r\n", Breaks::Escape), "one\\x0d\\x0a");
    }
}
