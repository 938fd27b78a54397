//! Secrets kept out of the `-l` traffic log and the `-v` echo.
//!
//! The log is a copy of the traffic for the user to read later, and `-v`'s
//! stderr is kept by CI jobs, so a secret in either outlives the command
//! that carried it. [`LogMask`] hands the log a copy of each message with
//! every secret replaced by `"***"` ([`masked`] does it for `-v`, which
//! shows only what is sent); what is sent to QEMU is never touched. Where secrets sit is data, taken from QEMU's
//! QAPI schema and HMP command table: [`ARGUMENT_RULES`] (command
//! arguments), [`SECRET_KEYS`] (keys that are secret wherever they appear),
//! [`REPLY_RULES`] (replies that carry one) and [`HMP_RULES`] (HMP text
//! sent through `human-monitor-command`). A message with nothing to mask is
//! logged as it is, never copied.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::language::arguments::opts_items;
use crate::qmp::{Ledger, Settled};

/// What a secret becomes in the log.
pub const MASK: &str = "***";

/// A condition on a command's arguments: each `key` holds one of its values.
type When = &'static [(&'static str, &'static [&'static str])];

/// Arguments of `commands` that carry a secret in clear, when `when` holds.
struct ArgumentRule {
    commands: &'static [&'static str],
    when: When,
    /// Paths from `arguments` to each secret.
    paths: &'static [&'static [&'static str]],
}

/// QOM properties whose value is a secret: `data` of a `secret` object
/// (crypto/secret.c), which `qom-get` returns in clear and `qom-set` sets.
const SECRET_PROPERTIES: &[&str] = &["data"];

/// A `change`-style command aimed at the VNC password.
const VNC_PASSWORD: &[&str] = &["password", "passwd"];

const ARGUMENT_RULES: &[ArgumentRule] = &[
    // ui.json: SetPasswordOptions.password, change-vnc-password's password.
    ArgumentRule { commands: &["set_password", "change-vnc-password"], when: &[], paths: &[&["password"]] },
    // qga/qapi-schema.json: guest-set-user-password's password (base64 of
    // the password, or of its crypt(3) hash: either way not for a log).
    ArgumentRule { commands: &["guest-set-user-password"], when: &[], paths: &[&["password"]] },
    // qom.json: ObjectOptions' `secret` branch (SecretProperties.data); QEMU
    // before 6.0 nested the properties under `props`.
    ArgumentRule {
        commands: &["object-add"],
        when: &[("qom-type", &["secret"])],
        paths: &[&["data"], &["props", "data"]],
    },
    // qom.json: qom-set of a secret property sets the secret.
    ArgumentRule { commands: &["qom-set"], when: &[("property", SECRET_PROPERTIES)], paths: &[&["value"]] },
    // misc-target.json: sev-inject-launch-secret's secret.
    ArgumentRule { commands: &["sev-inject-launch-secret"], when: &[], paths: &[&["secret"]] },
    // QEMU before 6.0: `change` with device vnc and target password.
    ArgumentRule { commands: &["change"], when: &[("device", &["vnc"]), ("target", VNC_PASSWORD)], paths: &[&["arg"]] },
    // QEMU before 2.10: block_passwd's password.
    ArgumentRule { commands: &["block_passwd"], when: &[], paths: &[&["password"]] },
    // `change device=vnc filename=password format=X` in key=value form (the
    // table's `change` names blockdev-change-medium's arguments): X is
    // still meant as a password. (`change vnc password X` goes to HMP.)
    ArgumentRule {
        commands: &["blockdev-change-medium"],
        when: &[("device", &["vnc"]), ("filename", VNC_PASSWORD)],
        paths: &[&["format"]],
    },
];

/// Keys whose string value is a secret wherever they appear in arguments:
/// block-core.json's BlockdevOptionsCurlHttp.cookie (the http and https
/// drivers, at any depth of blockdev-add, blockdev-reopen, blockdev-create
/// and in `json:` filenames). Every other secret-looking key in the schema
/// (`password-secret`, `key-secret`, `cookie-secret`, `passwordid`, ...)
/// names a `secret` object and is not itself secret.
const SECRET_KEYS: &[&str] = &["cookie"];

/// What in a reply is secret.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ReplySecret {
    /// The whole `return` value.
    Whole,
    /// `value` of each listed property named in [`SECRET_PROPERTIES`].
    PropertyValues,
    /// [`SECRET_KEYS`] anywhere in `return`, `json:` filenames included.
    Keys,
}

/// Commands whose reply carries a secret, when `when` holds.
struct ReplyRule {
    commands: &'static [&'static str],
    when: When,
    secret: ReplySecret,
}

const REPLY_RULES: &[ReplyRule] = &[
    // qom.json: qom-get returns the property's value; for a secret's
    // `data`, the secret (checked against QEMU 7.2).
    ReplyRule { commands: &["qom-get"], when: &[("property", SECRET_PROPERTIES)], secret: ReplySecret::Whole },
    // qom.json (QEMU 10.1): qom-list-get returns every property's value.
    ReplyRule { commands: &["qom-list-get"], when: &[], secret: ReplySecret::PropertyValues },
    // block-core.json: BlockDeviceInfo's filenames are `json:{...}` with the
    // curl driver's `cookie` in them (block/curl.c lists it among the
    // options that make up the filename).
    ReplyRule { commands: &["query-block", "query-named-block-nodes"], when: &[], secret: ReplySecret::Keys },
];

/// One word an HMP rule expects before its secret.
enum Word {
    /// Any word (a protocol, a device, a path).
    Any,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// An optional `-x` flag.
    Flag,
}

/// Where the secret is in the rest of the line, after the leading words.
enum HmpSecret {
    /// All of it: HMP's own tokenizer decides where a value ends (quotes,
    /// escapes, flags), so masking to the end never lets a part through.
    Rest,
    /// A `key=value,...` (or JSON) option string: the values of `keys`
    /// (matched on their last dotted part), when its type is in `of_type`
    /// (empty: any).
    Options { of_type: &'static [&'static str], keys: &'static [&'static str] },
    /// Nothing in the line: the reply is the secret.
    Reply,
}

/// An HMP command (hmp-commands.hx) that carries or returns a secret.
struct HmpRule {
    command: &'static str,
    leading: &'static [Word],
    secret: HmpSecret,
}

const HMP_RULES: &[HmpRule] = &[
    // set_password protocol password [-d display] [action-if-connected]
    HmpRule { command: "set_password", leading: &[Word::Any], secret: HmpSecret::Rest },
    // change vnc [-f] password|passwd PASSWORD
    HmpRule {
        command: "change",
        leading: &[Word::OneOf(&["vnc"]), Word::Flag, Word::OneOf(VNC_PASSWORD)],
        secret: HmpSecret::Rest,
    },
    // object_add secret,id=s0,data=... (or its JSON form)
    HmpRule {
        command: "object_add",
        leading: &[],
        secret: HmpSecret::Options { of_type: &["secret"], keys: SECRET_PROPERTIES },
    },
    // qom-set [-j] path data VALUE
    HmpRule {
        command: "qom-set",
        leading: &[Word::Flag, Word::Any, Word::OneOf(SECRET_PROPERTIES)],
        secret: HmpSecret::Rest,
    },
    // qom-get path data: the reply is the secret.
    HmpRule { command: "qom-get", leading: &[Word::Any, Word::OneOf(SECRET_PROPERTIES)], secret: HmpSecret::Reply },
    // drive_add [-n] addr file.driver=https,file.cookie=...
    HmpRule {
        command: "drive_add",
        leading: &[Word::Flag, Word::Any],
        secret: HmpSecret::Options { of_type: &[], keys: SECRET_KEYS },
    },
    // QEMU before 2.10: block_passwd device password
    HmpRule { command: "block_passwd", leading: &[Word::Any], secret: HmpSecret::Rest },
];

/// How the log's copy of a reply must be masked.
#[derive(Debug, Default, PartialEq)]
struct ReplyMask {
    secret: Option<ReplySecret>,
    /// Secrets the command carried: QEMU may quote them back in an error
    /// ("Parameter 'connected' does not accept value '...'").
    echoes: Vec<String>,
}

/// Masks what goes to the traffic log, and follows the commands sent so
/// that a reply carrying a secret is masked too.
#[derive(Default)]
pub struct LogMask {
    /// Which reply answers which command, as the client itself matches them.
    ledger: Ledger,
    /// How to mask the replies of the commands that need it, by ticket.
    masks: HashMap<u64, ReplyMask>,
}

impl LogMask {
    /// The log's copy of a message sent. Every message is noted as owed a
    /// reply, even one QEMU cannot read (it answers that with an error), so
    /// the replies after it are matched right.
    pub fn sent<'a>(&mut self, message: &'a Value) -> Cow<'a, Value> {
        let name = command_name(message).unwrap_or_default();
        let arguments = message.get("arguments");
        let mut found = find_in_message(message);
        let reply = ReplyMask { secret: reply_secret(name, arguments), echoes: std::mem::take(&mut found.secrets) };
        let ticket = self.ledger.record(message.get("id").cloned());
        if reply != ReplyMask::default() {
            self.masks.insert(ticket, reply);
        }
        found.apply(message)
    }

    /// The log's copy of a message received: a reply is matched with its
    /// command, and masked as that command requires.
    pub fn received<'a>(&mut self, message: &'a Value) -> Cow<'a, Value> {
        if message.get("return").is_none() && message.get("error").is_none() {
            return Cow::Borrowed(message);
        }
        match self.settle(message) {
            Some(mask) => mask_reply(message, &mask),
            None => Cow::Borrowed(message),
        }
    }

    /// How the command that `message` answers wants its reply masked.
    fn settle(&mut self, message: &Value) -> Option<ReplyMask> {
        match self.ledger.settle(message) {
            Settled::Answer(ticket) | Settled::Unread(ticket) => self.masks.remove(&ticket),
            Settled::Stray => None,
        }
    }
}

/// A copy of a message sent with its secrets masked, as [`LogMask::sent`]
/// makes it, for showing it once (`-v`): nothing is remembered for its
/// reply.
pub fn masked<'a>(message: &'a Value) -> Cow<'a, Value> {
    find_in_message(message).apply(message)
}

/// The secrets in a message's arguments.
fn find_in_message(message: &Value) -> Found {
    let mut found = Found::default();
    if let Some(arguments) = message.get("arguments") {
        let mut path = vec!["arguments".to_string()];
        find_in_arguments(command_name(message).unwrap_or_default(), arguments, &mut path, &mut found);
    }
    found
}

/// The command a message executes (`execute`, or `exec-oob`).
fn command_name(message: &Value) -> Option<&str> {
    message.get("execute").or_else(|| message.get("exec-oob")).and_then(Value::as_str)
}

/// Whether every condition of `when` holds for `arguments`.
fn holds(when: When, arguments: Option<&Value>) -> bool {
    when.iter().all(|(key, values)| {
        arguments.and_then(|a| a.get(*key)).and_then(Value::as_str).is_some_and(|value| values.contains(&value))
    })
}

/// Replacements found in a message, and the secrets they hide.
#[derive(Default)]
struct Found {
    /// JSON pointers and what goes there.
    edits: Vec<(String, Value)>,
    secrets: Vec<String>,
}

impl Found {
    /// Masks the value at `path`, noting it when it is text.
    fn mask(&mut self, path: &[String], value: &Value) {
        if let Some(text) = value.as_str() {
            self.secrets.push(text.to_string());
        }
        self.edits.push((pointer(path), Value::from(MASK)));
    }

    /// `message` with the edits made: borrowed when there are none, so a
    /// large message is copied only when it holds a secret.
    fn apply(self, message: &Value) -> Cow<'_, Value> {
        if self.edits.is_empty() {
            return Cow::Borrowed(message);
        }
        let mut copy = message.clone();
        for (at, value) in self.edits {
            if let Some(slot) = copy.pointer_mut(&at) {
                *slot = value;
            }
        }
        Cow::Owned(copy)
    }
}

/// A JSON pointer (RFC 6901) to `path`.
fn pointer(path: &[String]) -> String {
    path.iter().map(|part| format!("/{}", part.replace('~', "~0").replace('/', "~1"))).collect()
}

/// The secrets in a command's arguments: the rules for `name`, the keys
/// secret everywhere, and HMP text.
fn find_in_arguments(name: &str, arguments: &Value, path: &mut Vec<String>, found: &mut Found) {
    for rule in ARGUMENT_RULES.iter().filter(|r| r.commands.contains(&name) && holds(r.when, Some(arguments))) {
        for at in rule.paths {
            find_at(arguments, at, path, found);
        }
    }
    find_keys(arguments, path, found);
    if name == "human-monitor-command"
        && let Some(line) = arguments.get("command-line").and_then(Value::as_str)
    {
        path.push("command-line".into());
        if let Some(masked) = hmp_line(line, found) {
            found.edits.push((pointer(path), Value::from(masked)));
        }
        path.pop();
    }
}

/// Masks the value at `at` inside `value`, if there is one.
fn find_at(value: &Value, at: &[&str], path: &[String], found: &mut Found) {
    let mut target = value;
    for key in at {
        match target.get(*key) {
            Some(inner) => target = inner,
            None => return,
        }
    }
    let full: Vec<String> = path.iter().cloned().chain(at.iter().map(|k| k.to_string())).collect();
    found.mask(&full, target);
}

/// Masks [`SECRET_KEYS`] anywhere in `value`, and inside `json:` filenames.
fn find_keys(value: &Value, path: &mut Vec<String>, found: &mut Found) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                path.push(key.clone());
                if SECRET_KEYS.contains(&key.as_str()) && inner.is_string() {
                    found.mask(path, inner);
                } else {
                    find_keys(inner, path, found);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            for (n, inner) in items.iter().enumerate() {
                path.push(n.to_string());
                find_keys(inner, path, found);
                path.pop();
            }
        }
        Value::String(text) => {
            if let Some(masked) = json_filename(text, found) {
                found.edits.push((pointer(path), Value::from(masked)));
            }
        }
        _ => {}
    }
}

/// A `json:{...}` pseudo-filename (QEMU's block layer) with its secret keys
/// masked, when it has any.
fn json_filename(text: &str, found: &mut Found) -> Option<String> {
    let inner: Value = serde_json::from_str(text.strip_prefix("json:")?).ok()?;
    let mut within = Found::default();
    find_keys(&inner, &mut Vec::new(), &mut within);
    if within.edits.is_empty() {
        return None;
    }
    found.secrets.append(&mut within.secrets);
    Some(format!("json:{}", within.apply(&inner)))
}

/// What the reply to `name` needs masked, if anything.
fn reply_secret(name: &str, arguments: Option<&Value>) -> Option<ReplySecret> {
    let by_rule = REPLY_RULES.iter().find(|r| r.commands.contains(&name) && holds(r.when, arguments)).map(|r| r.secret);
    by_rule.or_else(|| {
        let line = arguments?.get("command-line")?.as_str()?;
        (name == "human-monitor-command" && hmp_returns_secret(line)).then_some(ReplySecret::Whole)
    })
}

/// The log's copy of a reply: its secret masked, and any echo of a secret
/// its command carried.
fn mask_reply<'a>(message: &'a Value, mask: &ReplyMask) -> Cow<'a, Value> {
    let mut found = Found::default();
    let mut echoes: Vec<&str> = mask.echoes.iter().map(String::as_str).filter(|e| !e.is_empty()).collect();
    // The longest first, so no part of a longer secret is left around a
    // shorter one's mask.
    echoes.sort_by_key(|e| std::cmp::Reverse(e.len()));
    find_echoes(message, &echoes, &mut Vec::new(), &mut found);
    let returned = message.get("return");
    match (mask.secret, returned) {
        (Some(ReplySecret::Whole), Some(value)) => found.mask(&["return".into()], value),
        (Some(ReplySecret::PropertyValues), Some(value)) => find_property_values(value, &mut found),
        (Some(ReplySecret::Keys), Some(value)) => find_keys(value, &mut vec!["return".into()], &mut found),
        _ => {}
    }
    found.apply(message)
}

/// Masks each echo of a secret inside the text of `value`.
fn find_echoes(value: &Value, echoes: &[&str], path: &mut Vec<String>, found: &mut Found) {
    if echoes.is_empty() {
        return;
    }
    match value {
        Value::String(text) if echoes.iter().any(|e| text.contains(e)) => {
            let masked = echoes.iter().fold(text.clone(), |text, echo| text.replace(echo, MASK));
            found.edits.push((pointer(path), Value::from(masked)));
        }
        Value::Object(map) => {
            for (key, inner) in map {
                path.push(key.clone());
                find_echoes(inner, echoes, path, found);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (n, inner) in items.iter().enumerate() {
                path.push(n.to_string());
                find_echoes(inner, echoes, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

/// qom-list-get's `[{"properties": [{"name", "type", "value"}]}]`: masks
/// the value of each secret property.
fn find_property_values(returned: &Value, found: &mut Found) {
    let objects = returned.as_array().into_iter().flatten().enumerate();
    for (n, object) in objects {
        let properties = object.get("properties").and_then(Value::as_array).into_iter().flatten().enumerate();
        for (m, property) in properties {
            let secret = property.get("name").and_then(Value::as_str).is_some_and(|p| SECRET_PROPERTIES.contains(&p));
            if let (true, Some(value)) = (secret, property.get("value")) {
                let path = ["return".to_string(), n.to_string(), "properties".into(), m.to_string(), "value".into()];
                found.mask(&path, value);
            }
        }
    }
}

// --- HMP text ---------------------------------------------------------------

/// The byte range of the next word of an HMP line from `from`, read as HMP
/// reads one (monitor/hmp.c get_str): a "quoted string" with backslash
/// escapes, else up to the next space.
fn next_word(line: &str, from: usize) -> Option<(usize, usize)> {
    let rest = line.get(from..)?;
    let start = from + rest.find(|c: char| !c.is_ascii_whitespace())?;
    let tail = line.get(start..)?;
    let length = if tail.starts_with('"') {
        quoted_length(tail)
    } else {
        tail.find(|c: char| c.is_ascii_whitespace()).unwrap_or(tail.len())
    };
    Some((start, start + length))
}

/// The length of the quoted string `tail` starts with, closing quote
/// included (all of `tail` when it is never closed).
fn quoted_length(tail: &str) -> usize {
    let mut escaped = false;
    for (at, c) in tail.char_indices().skip(1) {
        match (c, escaped) {
            (_, true) => escaped = false,
            ('\\', false) => escaped = true,
            ('"', false) => return at + c.len_utf8(),
            _ => {}
        }
    }
    tail.len()
}

/// The words of an HMP line, as HMP reads them.
fn hmp_words(line: &str) -> impl Iterator<Item = &str> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let (start, end) = next_word(line, at)?;
        at = end;
        line.get(start..end)
    })
}

/// A word's text, without the quotes around it.
fn unquoted(word: &str) -> &str {
    word.strip_prefix('"').map(|w| w.strip_suffix('"').unwrap_or(w)).unwrap_or(word)
}

/// The HMP rule for `line`, and where the rest after its leading words
/// starts (`None` when nothing follows them).
fn hmp_match(line: &str) -> Option<(&'static HmpRule, Option<usize>)> {
    let (start, end) = next_word(line, 0)?;
    let name = line.get(start..end)?;
    HMP_RULES.iter().filter(|rule| rule.command == name).find_map(|rule| {
        let at = leading_end(line, end, rule.leading)?;
        Some((rule, next_word(line, at).map(|(rest, _)| rest)))
    })
}

/// Where the leading words `words` end, from `at`; `None` if they differ.
fn leading_end(line: &str, mut at: usize, words: &[Word]) -> Option<usize> {
    for word in words {
        let (start, end) = next_word(line, at)?;
        let text = unquoted(line.get(start..end)?);
        match word {
            Word::Flag if text.starts_with('-') => at = end,
            Word::Flag => {}
            Word::Any => at = end,
            Word::OneOf(values) if values.contains(&text) => at = end,
            Word::OneOf(_) => return None,
        }
    }
    Some(at)
}

/// An HMP line with its secret masked, if it carries one.
fn hmp_line(line: &str, found: &mut Found) -> Option<String> {
    let (rule, rest) = hmp_match(line)?;
    let rest = rest?;
    let head = line.get(..rest)?;
    let tail = line.get(rest..)?;
    match rule.secret {
        HmpSecret::Rest => {
            found.secrets.extend(hmp_words(tail).map(|w| unquoted(w).to_string()));
            Some(format!("{head}{MASK}"))
        }
        HmpSecret::Options { of_type, keys } => {
            options(tail, of_type, keys, found).map(|masked| format!("{head}{masked}"))
        }
        HmpSecret::Reply => None,
    }
}

/// Whether the reply to HMP `line` is a secret.
fn hmp_returns_secret(line: &str) -> bool {
    hmp_match(line).is_some_and(|(rule, _)| matches!(rule.secret, HmpSecret::Reply))
}

/// An HMP option string (`type,key=value,...` with `,,` for a comma, or a
/// JSON object) with the values of `keys` masked when its type is one of
/// `of_type` (or `of_type` is empty).
fn options(text: &str, of_type: &[&str], keys: &[&str], found: &mut Found) -> Option<String> {
    if text.starts_with('{') {
        return json_options(text, of_type, keys, found);
    }
    let parts = opts_items(text);
    let implied = parts.first().filter(|p| !p.contains('=')).copied();
    let named = parts.iter().find_map(|p| p.strip_prefix("qom-type="));
    if !of_type.is_empty() && !implied.or(named).is_some_and(|t| of_type.contains(&t)) {
        return None;
    }
    let mut masked = false;
    let parts: Vec<String> = parts
        .iter()
        .map(|part| match part.split_once('=') {
            Some((key, value)) if keys.contains(&last_part(key)) => {
                found.secrets.push(value.replace(",,", ","));
                masked = true;
                format!("{key}={MASK}")
            }
            _ => part.to_string(),
        })
        .collect();
    masked.then(|| parts.join(","))
}

/// The last dotted part of a key: `file.cookie` is a `cookie`.
fn last_part(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// The JSON form of an option string. Text that does not parse is masked
/// whole: QEMU refuses it too, and what it holds cannot be told apart.
fn json_options(text: &str, of_type: &[&str], keys: &[&str], found: &mut Found) -> Option<String> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else { return Some(MASK.into()) };
    let kind = map.get("qom-type").and_then(Value::as_str);
    if !of_type.is_empty() && !kind.is_some_and(|t| of_type.contains(&t)) {
        return None;
    }
    let mut within = Found::default();
    json_option_keys(&map, keys, &mut Vec::new(), &mut within);
    if within.edits.is_empty() {
        return None;
    }
    found.secrets.append(&mut within.secrets);
    let object = Value::Object(map);
    Some(within.apply(&object).to_string())
}

/// Masks the values of `keys` in a JSON option object, at any depth.
fn json_option_keys(map: &Map<String, Value>, keys: &[&str], path: &mut Vec<String>, found: &mut Found) {
    for (key, inner) in map {
        path.push(key.clone());
        if keys.contains(&last_part(key)) {
            found.mask(path, inner);
        } else if let Value::Object(nested) = inner {
            json_option_keys(nested, keys, path, found);
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The log's copy of `message` sent, then of `reply` received.
    fn exchange(message: Value, reply: Value) -> (Value, Value) {
        let mut mask = LogMask::default();
        let sent = mask.sent(&message).into_owned();
        let received = mask.received(&reply).into_owned();
        (sent, received)
    }

    fn logged(message: Value) -> Value {
        LogMask::default().sent(&message).into_owned()
    }

    fn hmp(line: &str) -> String {
        let message = json!({"execute": "human-monitor-command", "arguments": {"command-line": line}});
        logged(message)["arguments"]["command-line"].as_str().unwrap().to_string()
    }

    #[test]
    fn every_argument_rule_masks_its_secret_and_nothing_else() {
        for (message, pointer) in [
            (json!({"execute": "set_password", "arguments": {"protocol": "vnc", "password": "pw"}}), "/password"),
            (json!({"execute": "change-vnc-password", "arguments": {"password": "pw"}}), "/password"),
            (
                json!({"execute": "guest-set-user-password", "arguments": {"username": "u", "password": "cHc=", "crypted": false}}),
                "/password",
            ),
            (json!({"execute": "object-add", "arguments": {"qom-type": "secret", "id": "s", "data": "pw"}}), "/data"),
            (
                json!({"execute": "object-add", "arguments": {"qom-type": "secret", "id": "s", "props": {"data": "pw"}}}),
                "/props/data",
            ),
            (json!({"execute": "qom-set", "arguments": {"path": "s", "property": "data", "value": "pw"}}), "/value"),
            (
                json!({"execute": "sev-inject-launch-secret", "arguments": {"packet-header": "h", "secret": "pw"}}),
                "/secret",
            ),
            (json!({"execute": "change", "arguments": {"device": "vnc", "target": "passwd", "arg": "pw"}}), "/arg"),
            (json!({"execute": "block_passwd", "arguments": {"device": "d", "password": "pw"}}), "/password"),
            (
                json!({"execute": "blockdev-change-medium", "arguments": {"device": "vnc", "filename": "password", "format": "pw"}}),
                "/format",
            ),
        ] {
            let masked = logged(message.clone());
            assert_eq!(masked["arguments"].pointer(pointer), Some(&json!(MASK)), "{message}");
            let mut expected = message.clone();
            *expected["arguments"].pointer_mut(pointer).unwrap() = json!(MASK);
            assert_eq!(masked, expected, "only the secret changes");
        }
    }

    #[test]
    fn conditions_keep_ordinary_arguments() {
        for message in [
            json!({"execute": "object-add", "arguments": {"qom-type": "iothread", "id": "io", "data": "x"}}),
            json!({"execute": "qom-set", "arguments": {"path": "/machine", "property": "smm", "value": "auto"}}),
            json!({"execute": "blockdev-change-medium", "arguments": {"device": "cd0", "filename": "a.iso", "format": "raw"}}),
            json!({"execute": "expire_password", "arguments": {"protocol": "vnc", "time": "now"}}),
            json!({"execute": "blockdev-add", "arguments": {"driver": "luks", "node-name": "n", "key-secret": "s0"}}),
            json!({"execute": "migrate-set-parameters", "arguments": {"tls-creds": "tls0"}}),
        ] {
            let mut mask = LogMask::default();
            assert!(matches!(mask.sent(&message), Cow::Borrowed(_)), "{message}");
        }
    }

    #[test]
    fn a_cookie_is_masked_at_any_depth_and_inside_json_filenames() {
        let message = json!({"execute": "blockdev-add", "arguments": {
            "driver": "qcow2", "node-name": "q",
            "file": {"driver": "https", "url": "https://h/a", "cookie": "c=1", "cookie-secret": "s0"},
            "backing": "json:{\"driver\": \"http\", \"url\": \"http://h/b\", \"cookie\": \"c=2\"}"}});
        let masked = logged(message);
        assert_eq!(masked["arguments"]["file"]["cookie"], MASK);
        assert_eq!(masked["arguments"]["file"]["cookie-secret"], "s0");
        let backing = masked["arguments"]["backing"].as_str().unwrap();
        assert!(backing.starts_with("json:") && backing.contains(MASK) && !backing.contains("c=2"), "{backing}");
    }

    #[test]
    fn hmp_lines_lose_their_secret_part() {
        for (line, expected) in [
            ("set_password vnc hunter2", "set_password vnc ***"),
            ("  set_password  spice \"a b\" -d d0 keep", "  set_password  spice ***"),
            ("change vnc password hunter2", "change vnc password ***"),
            ("change vnc -f passwd hunter2", "change vnc -f passwd ***"),
            ("object_add secret,id=s0,data=hunter2", "object_add secret,id=s0,data=***"),
            ("object_add qom-type=secret,data=a,,b,id=s0", "object_add qom-type=secret,data=***,id=s0"),
            (
                r#"object_add {"qom-type": "secret", "id": "s0", "data": "hunter2"}"#,
                r#"object_add {"qom-type":"secret","id":"s0","data":"***"}"#,
            ),
            ("object_add {broken \"hunter2\"", "object_add ***"),
            ("qom-set /objects/s0 data hunter2", "qom-set /objects/s0 data ***"),
            ("qom-set -j s0 data \"hunter2\"", "qom-set -j s0 data ***"),
            (
                "drive_add 0 if=none,file.driver=https,file.cookie=c=1,,x",
                "drive_add 0 if=none,file.driver=https,file.cookie=***",
            ),
            ("block_passwd ide0-hd0 hunter2", "block_passwd ide0-hd0 ***"),
        ] {
            assert_eq!(hmp(line), expected, "{line}");
        }
        for line in [
            "set_password vnc",
            "change cd0 /tmp/a.iso",
            "object_add iothread,id=io0",
            "qom-set /machine smm auto",
            "info status",
            "",
        ] {
            assert_eq!(hmp(line), line, "untouched");
        }
    }

    #[test]
    fn a_reply_that_is_a_secret_is_masked() {
        let (_, reply) = exchange(
            json!({"execute": "qom-get", "arguments": {"path": "/objects/s0", "property": "data"}}),
            json!({"return": "hunter2"}),
        );
        assert_eq!(reply, json!({"return": MASK}));
        let (_, reply) = exchange(
            json!({"execute": "human-monitor-command", "arguments": {"command-line": "qom-get s0 data"}}),
            json!({"return": "\"hunter2\"\r\n"}),
        );
        assert_eq!(reply, json!({"return": MASK}));
        let (_, reply) = exchange(
            json!({"execute": "qom-list-get", "arguments": {"paths": ["s0"]}}),
            json!({"return": [{"properties": [{"name": "data", "type": "string", "value": "hunter2"},
                                              {"name": "format", "type": "QCryptoSecretFormat", "value": "raw"}]}]}),
        );
        assert_eq!(reply["return"][0]["properties"][0]["value"], MASK);
        assert_eq!(reply["return"][0]["properties"][1]["value"], "raw");
        let (_, reply) = exchange(
            json!({"execute": "query-block"}),
            json!({"return": [{"inserted": {"file": "json:{\"driver\": \"https\", \"cookie\": \"c=1\"}"}}]}),
        );
        assert!(!reply.to_string().contains("c=1"), "{reply}");
    }

    #[test]
    fn an_error_that_quotes_a_secret_is_masked() {
        let (_, reply) = exchange(
            json!({"execute": "set_password", "arguments": {"protocol": "vnc", "password": "hunter2"}}),
            json!({"error": {"class": "GenericError", "desc": "no 'hunter2' here"}}),
        );
        assert_eq!(reply["error"]["desc"], "no '***' here");
        let (_, reply) = exchange(
            json!({"execute": "human-monitor-command", "arguments": {"command-line": "set_password vnc pw bad"}}),
            json!({"return": "Error: invalid parameter value: bad\r\n"}),
        );
        assert_eq!(reply["return"], "Error: invalid parameter value: ***\r\n");
    }

    #[test]
    fn replies_are_matched_with_their_command_by_id_or_in_order() {
        let mut mask = LogMask::default();
        let answer = |mask: &mut LogMask, reply: Value| mask.received(&reply).into_owned();
        let get = json!({"execute": "qom-get", "arguments": {"path": "s0", "property": "data"}});
        let tagged = json!({"execute": "qom-get", "arguments": {"path": "s0", "property": "data"}, "id": 7});
        let plain = json!({"execute": "query-status"});
        let unreadable = json!({"exec": "query-status"});
        let _ = mask.sent(&unreadable);
        assert_eq!(
            answer(&mut mask, json!({"error": {"class": "GenericError", "desc": "no execute"}})),
            json!({"error": {"class": "GenericError", "desc": "no execute"}})
        );
        for message in [&plain, &tagged, &get, &plain] {
            let _ = mask.sent(message);
        }
        // The tagged command's reply comes first (out-of-band), by its id.
        assert_eq!(answer(&mut mask, json!({"return": "x", "id": 7})), json!({"return": MASK, "id": 7}));
        assert_eq!(
            answer(&mut mask, json!({"return": {"status": "running"}})),
            json!({"return": {"status": "running"}})
        );
        // Events and the greeting are not replies.
        assert_eq!(answer(&mut mask, json!({"event": "STOP"})), json!({"event": "STOP"}));
        assert_eq!(answer(&mut mask, json!({"return": "hunter2"})), json!({"return": MASK}));
        assert_eq!(answer(&mut mask, json!({"return": "plain"})), json!({"return": "plain"}));
        // Nothing is owed any more.
        assert!(mask.masks.is_empty());
        assert_eq!(mask.ledger.settle(&json!({"return": {}})), Settled::Stray);
    }

    #[test]
    fn a_message_without_secrets_is_not_copied() {
        let mut mask = LogMask::default();
        let big = json!({"execute": "query-qmp-schema"});
        assert!(matches!(mask.sent(&big), Cow::Borrowed(_)));
        let reply = json!({"return": [{"name": "query-status"}]});
        assert!(matches!(mask.received(&reply), Cow::Borrowed(_)));
    }

    #[test]
    fn words_are_read_as_hmp_reads_them() {
        let line = r#"a "b \" c" d"#;
        let first = next_word(line, 0).unwrap();
        let second = next_word(line, first.1).unwrap();
        assert_eq!(&line[second.0..second.1], r#""b \" c""#);
        assert_eq!(opts_items("a,b=c,,d,e"), ["a", "b=c,,d", "e"]);
    }
}
