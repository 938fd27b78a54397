//! How much qmpsh takes from a peer, a file or its input before it refuses:
//! what it keeps is bounded by these, not by what the other side sends.
//!
//! Bytes alone do not bound memory: a JSON value read into memory takes far
//! more than its text (`[0,0,...]` takes some 80 bytes per 2-byte element),
//! so a message, a line and a schema file are also limited in how many
//! values they hold.

/// The largest message taken from a peer, in bytes: QEMU's largest reply
/// (`query-qmp-schema`) is about 200 KB.
pub const MAX_MESSAGE: usize = 256 << 20;

/// The most JSON values (elements, members and containers, counted by
/// their `,`, `[` and `{`) one message, line or file may hold: some
/// 170 MB once read. QEMU 10.0's schema, its largest reply, holds 18,000.
pub const MAX_VALUES: usize = 2 << 20;

/// The longest logical line of input (a script line, `-c`, a line typed
/// or pasted), in bytes.
pub const MAX_LINE: usize = 64 << 20;

/// The largest `--schema` file, in bytes: a saved QEMU 10.0 schema is
/// about 200 KB.
pub const MAX_SCHEMA_FILE: usize = 16 << 20;

/// How many values `text` holds at most: one, and one more for each `,`,
/// `[` and `{` wherever it stands (in a string too, so never fewer than
/// it holds).
pub fn values_at_most(text: &[u8]) -> usize {
    1 + text.iter().filter(|&&b| matches!(b, b',' | b'[' | b'{')).count()
}

/// Whether `text` may hold more values than qmpsh takes.
pub fn too_many_values(text: &[u8]) -> bool {
    values_at_most(text) > MAX_VALUES
}

/// The refusal for a message, line or file of over `limit` values:
/// `what` says which ("QEMU sent a message of", "the line holds").
pub fn values_refused(what: &str, limit: usize) -> String {
    format!("{what} over {limit} JSON values; qmpsh takes no more (read, that could take gigabytes)")
}
