//! Shell-style globs, for `libvirt:PATTERN`.

/// Whether `text` is a shell glob: it holds `*`, `?` or `[`.
pub fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Whether `name` matches the shell glob `pattern`: `*` any run of
/// characters, `?` any one, `[abc]`, `[a-z]`, `[!a]` one of (or none of) a
/// set, `\` takes the next character as it is. Linear in practice: a
/// mismatch after `*` moves the last `*` on by one, never back further.
pub fn glob(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // The last `*` seen, and where in `name` it was last tried to end.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = name.get(n) {
        let rest = pattern.get(p..).unwrap_or_default();
        if rest.first() == Some(&'*') {
            star = Some((p, n));
            p += 1;
            continue;
        }
        if let Some(width) = one(rest, c) {
            p += width;
            n += 1;
            continue;
        }
        match star {
            Some((at, from)) => {
                p = at + 1;
                n = from + 1;
                star = Some((at, from + 1));
            }
            None => return false,
        }
    }
    pattern.get(p..).unwrap_or_default().iter().all(|&c| c == '*')
}

/// Whether the first item of `pattern` (not `*`) matches `c`: its width in
/// the pattern if so.
fn one(pattern: &[char], c: char) -> Option<usize> {
    match pattern {
        [] => None,
        ['?', ..] => Some(1),
        ['\\', escaped, ..] => (*escaped == c).then_some(2),
        ['[', rest @ ..] => match class(rest, c) {
            Some((hit, width)) => hit.then_some(1 + width),
            // No closing `]`: the `[` is itself.
            None => (c == '[').then_some(1),
        },
        [first, ..] => (*first == c).then_some(1),
    }
}

/// A set after its `[`: whether `c` is in it, and its width up to and with
/// its `]`; `None` when it never closes. A `]` first in the set is in it.
fn class(set: &[char], c: char) -> Option<(bool, usize)> {
    let negated = matches!(set.first(), Some('!' | '^'));
    let start = usize::from(negated);
    let mut i = start;
    let mut hit = false;
    loop {
        let &item = set.get(i)?;
        if item == ']' && i > start {
            return Some((hit != negated, i + 1));
        }
        match (set.get(i + 1), set.get(i + 2)) {
            (Some('-'), Some(&high)) if high != ']' => {
                hit |= (item..=high).contains(&c);
                i += 3;
            }
            _ => {
                hit |= item == c;
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_a_shell_does() {
        let yes = [
            ("web-*", "web-01"),
            ("*", "anything"),
            ("*", ""),
            ("w?b", "web"),
            ("db[0-9]", "db7"),
            ("db[!0-9]", "dbx"),
            ("[]x]", "]"),
            ("a*b*c", "aXbYbZc"),
            ("\\*", "*"),
            ("[ab", "[ab"),
            ("*-test-*", "qmpsh-test-12-3"),
        ];
        for (pattern, name) in yes {
            assert!(glob(pattern, name), "{pattern} should match {name}");
        }
        let no = [
            ("web-*", "db-01"),
            ("w?b", "wb"),
            ("db[0-9]", "dbx"),
            ("db[!0-9]", "db7"),
            ("a*b*c", "aXbYbZ"),
            ("\\*", "x"),
            ("web", "web2"),
        ];
        for (pattern, name) in no {
            assert!(!glob(pattern, name), "{pattern} should not match {name}");
        }
    }

    #[test]
    fn a_hard_pattern_stays_quick() {
        let name = "a".repeat(5000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!glob(&pattern, &name));
    }
}
