//! Which reply answers which command, on a socket.
//!
//! QEMU answers in-band commands strictly in the order it reads them (the
//! QMP specification asks for an `id` only on out-of-band commands), so a
//! reply without an id answers the oldest command still owed one. qmpsh
//! sends no id of its own on QMP: QEMU 7.2 reads its monitor one byte per
//! main-loop turn, and the id's bytes made every command about 20% slower
//! (BENCHMARKS.md). A command that carries an id (the user's own, an
//! `exec-oob`, every command to the guest agent) is matched by it instead.

use std::collections::VecDeque;

use serde_json::Value;

/// The commands sent and not yet answered, oldest first.
#[derive(Default)]
pub struct Ledger {
    owed: VecDeque<Owed>,
    next_ticket: u64,
}

struct Owed {
    ticket: u64,
    /// The id the command carried, if any.
    id: Option<Value>,
}

/// What a reply answers.
#[derive(Debug, PartialEq)]
pub enum Settled {
    /// The reply to the command with this ticket.
    Answer(u64),
    /// An error without the id that the oldest command (this ticket)
    /// carried: QEMU could not read that command.
    Unread(u64),
    /// No command sent here: a reply meant for someone else.
    Stray,
}

impl Ledger {
    /// Notes a command sent with `id` (or none); returns its ticket.
    pub fn record(&mut self, id: Option<Value>) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.owed.push_back(Owed { ticket, id });
        ticket
    }

    /// A number for a command's id that no earlier command here used.
    pub fn fresh_id(&self) -> Value {
        Value::from(self.next_ticket + 1)
    }

    /// Whether the command with `ticket` still waits for its reply.
    pub fn owes(&self, ticket: u64) -> bool {
        self.owed.iter().any(|owed| owed.ticket == ticket)
    }

    /// The commands still owed a reply.
    pub fn owed(&self) -> impl Iterator<Item = u64> + '_ {
        self.owed.iter().map(|owed| owed.ticket)
    }

    /// Stops waiting for a reply to `ticket` (a command that never sends one).
    pub fn forget(&mut self, ticket: u64) {
        self.owed.retain(|owed| owed.ticket != ticket);
    }

    /// Which command `reply` (a message with `return` or `error`) answers,
    /// no longer owed from here on.
    pub fn settle(&mut self, reply: &Value) -> Settled {
        match reply.get("id") {
            Some(id) => match self.owed.iter().position(|owed| owed.id.as_ref() == Some(id)) {
                Some(at) => self.owed.remove(at).map_or(Settled::Stray, |owed| Settled::Answer(owed.ticket)),
                None => Settled::Stray,
            },
            None => match self.owed.pop_front() {
                None => Settled::Stray,
                Some(Owed { ticket, id: None }) => Settled::Answer(ticket),
                // A peer that returns without echoing the id still answered.
                Some(Owed { ticket, id: Some(_) }) if reply.get("error").is_none() => Settled::Answer(ticket),
                Some(Owed { ticket, id: Some(_) }) => Settled::Unread(ticket),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_without_ids_answer_in_order() {
        let mut ledger = Ledger::default();
        let first = ledger.record(None);
        let second = ledger.record(None);
        assert_eq!(ledger.settle(&json!({"return": {}})), Settled::Answer(first));
        assert_eq!(ledger.settle(&json!({"error": {}})), Settled::Answer(second));
        assert_eq!(ledger.settle(&json!({"return": {}})), Settled::Stray);
    }

    #[test]
    fn a_reply_with_an_id_answers_the_command_that_carried_it() {
        let mut ledger = Ledger::default();
        let plain = ledger.record(None);
        let oob = ledger.record(Some(json!("x")));
        assert_eq!(ledger.settle(&json!({"return": {}, "id": "x"})), Settled::Answer(oob));
        assert_eq!(ledger.settle(&json!({"return": {}, "id": "y"})), Settled::Stray);
        assert_eq!(ledger.settle(&json!({"return": {}})), Settled::Answer(plain));
    }

    #[test]
    fn an_error_missing_the_commands_id_means_qemu_could_not_read_it() {
        let mut ledger = Ledger::default();
        let tagged = ledger.record(Some(json!(7)));
        assert_eq!(ledger.settle(&json!({"error": {"desc": "JSON parse error"}})), Settled::Unread(tagged));
        let tagged = ledger.record(Some(json!(8)));
        assert_eq!(ledger.settle(&json!({"return": {}})), Settled::Answer(tagged));
    }

    #[test]
    fn a_forgotten_command_is_not_owed_a_reply() {
        let mut ledger = Ledger::default();
        let silent = ledger.record(None);
        let next = ledger.record(None);
        ledger.forget(silent);
        assert!(!ledger.owes(silent));
        assert_eq!(ledger.settle(&json!({"return": {}})), Settled::Answer(next));
    }
}
