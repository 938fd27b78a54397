//! An in-process fake peer, for unit tests of the client and the session:
//! a script of messages, played at the message level with no socket and
//! no QEMU. Each command the client sends must be the one the script
//! expects next (name, arguments and any id it names); what follows it in
//! the script (replies, events, the peer closing) is then there to read.
//! The peer fails the test when dropped with a step unused.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::{ClientError, Incoming, Monitor, Transport, Waker};

/// One step of the peer's script.
#[derive(Debug)]
pub enum Step {
    /// The client sends this message next. An `id` it carries is matched
    /// only when the step names one.
    Expect(Value),
    /// The peer sends this message.
    Send(Value),
    /// The peer closes the connection.
    Close,
}

/// What the client sends next: `{"execute": name}` with these arguments,
/// if any.
pub fn expect(message: Value) -> Step {
    Step::Expect(message)
}

/// What the peer sends.
pub fn send(message: Value) -> Step {
    Step::Send(message)
}

/// A client over a fake peer playing `steps`, and the peer, which the
/// test keeps: it says what was sent, and checks at drop that every step
/// was played.
pub fn monitor(steps: Vec<Step>) -> (Monitor, Peer) {
    let state = Rc::new(RefCell::new(Script {
        steps: steps.into(),
        incoming: VecDeque::new(),
        sent: Vec::new(),
        woken: Arc::new(AtomicBool::new(false)),
    }));
    state.borrow_mut().release();
    let transport = Fake { script: Rc::clone(&state) };
    (Monitor::new(Box::new(transport)), Peer { script: state })
}

struct Script {
    steps: VecDeque<Step>,
    /// What the peer has sent and the client not yet read.
    incoming: VecDeque<Incoming>,
    /// What the client sent, in order.
    sent: Vec<Value>,
    woken: Arc<AtomicBool>,
}

impl Script {
    /// Sends what the script says up to the next command it expects.
    fn release(&mut self) {
        while let Some(step) = self.steps.pop_front() {
            match step {
                Step::Send(message) => self.incoming.push_back(Incoming::Message(message)),
                Step::Close => self.incoming.push_back(Incoming::End(ClientError::Closed)),
                expected @ Step::Expect(_) => {
                    self.steps.push_front(expected);
                    return;
                }
            }
        }
    }
}

/// The test's side of the fake peer.
pub struct Peer {
    script: Rc<RefCell<Script>>,
}

impl Peer {
    /// The messages the client sent, in order.
    pub fn sent(&self) -> Vec<Value> {
        self.script.borrow().sent.clone()
    }

    /// The commands' names, in order.
    pub fn commands(&self) -> Vec<String> {
        let name = |message: &Value| message.get("execute").and_then(Value::as_str).unwrap_or("?").to_string();
        self.script.borrow().sent.iter().map(name).collect()
    }

    /// Whether every step of the script has been played (what the peer
    /// sent may still be unread).
    pub fn played(&self) -> bool {
        self.script.borrow().steps.is_empty()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if !thread::panicking() {
            let left = &self.script.borrow().steps;
            assert!(left.is_empty(), "the fake peer's script has steps left: {left:?}");
        }
    }
}

struct Fake {
    script: Rc<RefCell<Script>>,
}

impl Transport for Fake {
    fn send(&mut self, message: &Value) -> Result<(), ClientError> {
        let mut script = self.script.borrow_mut();
        script.sent.push(message.clone());
        let Some(Step::Expect(expected)) = script.steps.pop_front() else {
            panic!("the client sent {message} where the fake peer's script expects nothing more");
        };
        let mut got = message.clone();
        if let (Some(fields), None) = (got.as_object_mut(), expected.get("id")) {
            fields.remove("id");
        }
        assert_eq!(got, expected, "the client sent another message than the script expects");
        script.release();
        Ok(())
    }

    fn receive(&mut self, wait: Duration, wakeable: bool) -> Option<Incoming> {
        let woken = Arc::clone(&self.script.borrow().woken);
        if wakeable && woken.swap(false, Ordering::SeqCst) {
            return Some(Incoming::Wake);
        }
        if let Some(item) = self.script.borrow_mut().incoming.pop_front() {
            return Some(item);
        }
        // Silence: the client's wait decides how long it lasts.
        thread::sleep(wait.min(Duration::from_millis(1)));
        None
    }

    fn waker(&self) -> Waker {
        let woken = Arc::clone(&self.script.borrow().woken);
        Box::new(move || woken.store(true, Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qmp::{Kind, Observer, command};
    use serde_json::json;
    use std::time::Instant;

    /// What an observer saw, in order: `> name` sent, `< kind` received.
    #[derive(Default)]
    struct Seen(Vec<String>);

    impl Observer for Seen {
        fn sent(&mut self, message: &Value) {
            self.0.push(format!("> {}", message["execute"].as_str().unwrap_or("?")));
        }
        fn received(&mut self, message: &Value, kind: Kind) {
            let name = message.get("event").and_then(Value::as_str).unwrap_or("");
            self.0.push(format!("< {kind:?} {name}").trim_end().to_string());
        }
    }

    fn soon() -> Option<Instant> {
        Some(Instant::now() + Duration::from_secs(5))
    }

    #[test]
    fn the_client_negotiates_and_keeps_the_greeting() {
        let greeting = json!({"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 0}}}});
        let (mut monitor, peer) = monitor(vec![
            send(greeting.clone()),
            expect(json!({"execute": "qmp_capabilities"})),
            send(json!({"return": {}})),
        ]);
        let mut seen = Seen::default();
        monitor.negotiate(&"fake", Instant::now() + Duration::from_secs(5), Duration::from_secs(5), &mut seen).unwrap();
        assert_eq!(monitor.greeting(), Some(&greeting));
        assert_eq!(seen.0, ["< Greeting", "> qmp_capabilities", "< Reply"]);
        assert_eq!(peer.commands(), ["qmp_capabilities"]);
    }

    #[test]
    fn events_around_a_reply_reach_the_observer_in_order() {
        let (mut monitor, _peer) = monitor(vec![
            expect(json!({"execute": "stop"})),
            send(json!({"event": "STOP"})),
            send(json!({"return": {}})),
            send(json!({"event": "LATER"})),
        ]);
        let mut seen = Seen::default();
        assert_eq!(monitor.execute(command("stop"), soon(), &mut seen), Ok(Ok(json!({}))));
        let later = monitor.wait_event(soon(), &mut seen, &mut |_| true).unwrap();
        assert_eq!(later, Some(json!({"event": "LATER"})));
        assert_eq!(seen.0, ["> stop", "< Event STOP", "< Reply", "< Event LATER"]);
    }

    #[test]
    fn pipelined_replies_answer_their_commands_in_order() {
        let (mut monitor, _peer) = monitor(vec![
            expect(json!({"execute": "a"})),
            expect(json!({"execute": "b"})),
            send(json!({"return": 1})),
            send(json!({"error": {"class": "GenericError", "desc": "no"}})),
        ]);
        let mut seen = Seen::default();
        let a = monitor.post(command("a"), &mut seen).unwrap();
        let b = monitor.post(command("b"), &mut seen).unwrap();
        assert_eq!(monitor.await_reply(a, soon(), &mut seen), Ok(Ok(json!(1))));
        assert!(matches!(monitor.await_reply(b, soon(), &mut seen), Ok(Err(e)) if e.desc == "no"));
    }

    #[test]
    fn an_oob_command_gets_an_id_and_its_reply_is_matched_by_it() {
        let (mut monitor, peer) =
            monitor(vec![expect(json!({"exec-oob": "x"})), send(json!({"return": "x", "id": 1}))]);
        let mut oob = serde_json::Map::new();
        oob.insert("exec-oob".into(), json!("x"));
        assert_eq!(monitor.execute(oob, soon(), &mut Seen::default()), Ok(Ok(json!("x"))));
        assert_eq!(peer.sent(), [json!({"exec-oob": "x", "id": 1})]);
    }

    #[test]
    fn a_wait_for_a_wake_up_ends_when_woken_and_shows_what_came() {
        let (mut monitor, _peer) = monitor(vec![send(json!({"event": "X"}))]);
        let wake = monitor.waker();
        wake();
        let mut seen = Seen::default();
        monitor.wait_wake(&mut seen).unwrap();
        // The wake-up was there first; the event is read by the next wait.
        monitor.wait_event(Some(Instant::now() + Duration::from_millis(20)), &mut seen, &mut |_| false).unwrap();
        assert_eq!(seen.0, ["< Event X"]);
    }

    #[test]
    fn for_the_agent_every_command_has_an_id_and_a_replyless_one_is_done_once_sent() {
        let (mut monitor, peer) = monitor(vec![
            expect(json!({"execute": "guest-ping", "id": 1})),
            send(json!({"return": {}, "id": 1})),
            expect(json!({"execute": "guest-shutdown", "id": 2})),
            Step::Close,
        ]);
        monitor.give_every_command_an_id();
        monitor.learn_commands(vec!["guest-ping".into()], ["guest-shutdown".to_string()].into());
        assert_eq!(monitor.execute(command("guest-ping"), soon(), &mut Seen::default()), Ok(Ok(json!({}))));
        assert_eq!(monitor.ended_by(), None);
        let mut seen = Seen::default();
        assert_eq!(monitor.execute(command("guest-shutdown"), soon(), &mut seen), Ok(Ok(json!({}))));
        assert_eq!(seen.0, ["> guest-shutdown", "< Reply"]);
        // The channel closing next is the shutdown's doing.
        assert_eq!(monitor.ended_by(), Some("guest-shutdown"));
        assert_eq!(monitor.command_names(), ["guest-ping"]);
        assert!(peer.played());
    }

    #[test]
    fn a_closed_peer_ends_every_wait() {
        let (mut monitor, _peer) = monitor(vec![expect(json!({"execute": "quit"})), Step::Close]);
        assert_eq!(monitor.execute(command("quit"), soon(), &mut Seen::default()), Err(ClientError::Closed));
        assert_eq!(monitor.wait_event(soon(), &mut Seen::default(), &mut |_| true), Err(ClientError::Closed));
    }
}
