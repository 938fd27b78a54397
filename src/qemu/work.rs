//! Long work QEMU does in the background, watched to its end: a job (a
//! block job such as a mirror or a backup, or any other) or the migration.
//! QEMU is asked for its state (`query-jobs`, `query-migrate`) at most
//! [`POLLS_PER_SECOND`] times a second, and at once when an event says the
//! state changed; between questions the monitor waits for events, so the
//! watch costs nothing while nothing happens. The script's `.wait job=ID`
//! and `.wait migration` come here.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::qmp::{ClientError, Kind, Monitor, Observer, command};

/// The most questions a second a watch asks QEMU.
pub const POLLS_PER_SECOND: u32 = 4;

/// What is watched, as the line named it.
pub use crate::language::bind::Background as Work;

impl Work {
    /// `job ID`, `migration` or `dump`, for what is said about it.
    pub fn name(&self) -> String {
        match self {
            Work::Job(id) => format!("job {id}"),
            Work::Migration => "migration".into(),
            Work::Dump => "dump".into(),
        }
    }

    /// How `.watch` names it: `ID`, `migration` or `dump`.
    pub fn word(&self) -> &str {
        match self {
            Work::Job(id) => id,
            Work::Migration => "migration",
            Work::Dump => "dump",
        }
    }
}

/// How the work ended, or where it waits for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Completed,
    /// A mirror (or an active commit) in step with its source: it goes on
    /// until the user completes or cancels it.
    Ready,
    /// With QEMU's own error.
    Failed(String),
    Cancelled,
}

/// One state of the work: its status as QEMU names it, and how far it got
/// (bytes done and in all), when QEMU says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub status: String,
    pub done: Option<u64>,
    pub total: Option<u64>,
}

/// What one [`Watcher::step`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A new status (or the first one seen).
    Changed(State),
    /// The same status, as QEMU gave it again (its progress may differ).
    Progress(State),
    /// Nothing asked this time: ask again.
    Same,
    Ended(Ending),
    /// The deadline passed first.
    TimedOut,
}

/// Why a watch could not go on.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchError {
    Client(ClientError),
    /// QEMU has no such work, or refused the question: what it said.
    Unknown(String),
}

impl From<ClientError> for WatchError {
    fn from(error: ClientError) -> WatchError {
        WatchError::Client(error)
    }
}

/// Watches one piece of work, a step at a time.
#[derive(Debug)]
pub struct Watcher {
    work: Work,
    /// The status last reported.
    reported: Option<String>,
    /// The status last known, from QEMU's answers or its events.
    status: Option<String>,
    /// The job reached `ready` since the command before the watch.
    became_ready: bool,
    /// When QEMU may next be asked.
    next_poll: Instant,
    /// What the block job events said of a job's end, which outlives the
    /// job when QEMU dismisses it by itself: `Some(error)` from
    /// `BLOCK_JOB_COMPLETED`.
    completed: Option<Option<String>>,
    cancelled: bool,
}

impl Watcher {
    /// A watch of `work`; `earlier` are the events that came since the
    /// command that started it (a short job may be over already).
    pub fn new<'a>(work: Work, earlier: impl IntoIterator<Item = &'a Value>) -> Watcher {
        let now = Instant::now();
        let mut watcher = Watcher {
            work,
            reported: None,
            status: None,
            became_ready: false,
            next_poll: now,
            completed: None,
            cancelled: false,
        };
        for event in earlier {
            watcher.note(event);
        }
        watcher
    }

    /// Asks QEMU when it is time, else waits (printing events through
    /// `observer` as they come) until it is, an event about the work comes,
    /// or `deadline` passes.
    pub fn step(
        &mut self,
        monitor: &mut Monitor,
        deadline: Option<Instant>,
        observer: &mut dyn Observer,
    ) -> Result<Step, WatchError> {
        let now = Instant::now();
        let work = self.work.clone();
        // Events about the work may come while QEMU is asked as well as
        // while waiting: each is noted whenever it is read.
        let mut noting = Noting { inner: observer, work: &work, seen: Vec::new() };
        if now < self.next_poll {
            let until = deadline.map_or(self.next_poll, |d| d.min(self.next_poll));
            let mut about = |event: &Value| is_about(&work, event);
            // The event that ends the wait was handed to `noting` too.
            let news = monitor.wait_event(Some(until), &mut noting, &mut about)?;
            for event in &noting.seen {
                self.note(event);
            }
            if news.is_some() {
                self.next_poll = Instant::now();
            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Step::TimedOut);
            }
            return Ok(Step::Same);
        }
        self.next_poll = now + Duration::from_secs(1) / POLLS_PER_SECOND;
        let question = match &work {
            Work::Job(_) => "query-jobs",
            Work::Migration => "query-migrate",
            Work::Dump => "query-dump",
        };
        let reply = ask(monitor, question, deadline, &mut noting);
        let seen = std::mem::take(&mut noting.seen);
        for event in &seen {
            self.note(event);
        }
        let (state, ending) = match &work {
            Work::Job(id) => self.job_state(id, &reply?)?,
            Work::Migration => migration_state(&reply?)?,
            Work::Dump => dump_state(&reply?)?,
        };
        if let Some(ending) = ending {
            return Ok(Step::Ended(ending));
        }
        match state {
            _ if deadline.is_some_and(|d| Instant::now() >= d) => Ok(Step::TimedOut),
            Some(state) if self.reported.as_ref() != Some(&state.status) => {
                self.reported = Some(state.status.clone());
                Ok(Step::Changed(state))
            }
            Some(state) => Ok(Step::Progress(state)),
            None => Ok(Step::Same),
        }
    }

    /// Keeps what an event says of the work's end.
    fn note(&mut self, event: &Value) {
        let Work::Job(id) = &self.work else { return };
        let data = event.get("data");
        let text = |key: &str| data.and_then(|d| d.get(key)).and_then(Value::as_str);
        if text("device") != Some(id.as_str()) && text("id") != Some(id.as_str()) {
            return;
        }
        match event.get("event").and_then(Value::as_str) {
            Some("BLOCK_JOB_COMPLETED") => self.completed = Some(text("error").map(str::to_string)),
            Some("BLOCK_JOB_CANCELLED") => self.cancelled = true,
            Some("BLOCK_JOB_READY") => self.became_ready = true,
            Some("JOB_STATUS_CHANGE") => {
                self.became_ready |= text("status") == Some("ready");
                self.status = text("status").map(str::to_string).or(self.status.take());
            }
            _ => {}
        }
    }

    /// The job's state in `query-jobs`' answer `jobs`, and its ending once
    /// it has one.
    fn job_state(&mut self, id: &str, jobs: &Value) -> Result<(Option<State>, Option<Ending>), WatchError> {
        let all = jobs.as_array().map(Vec::as_slice).unwrap_or_default();
        let Some(job) = all.iter().find(|job| job.get("id").and_then(Value::as_str) == Some(id)) else {
            return self.gone(id, all).map(|ending| (None, Some(ending)));
        };
        let status = job.get("status").and_then(Value::as_str).unwrap_or("unknown").to_string();
        let number = |key: &str| job.get(key).and_then(Value::as_u64);
        let state = State { status: status.clone(), done: number("current-progress"), total: number("total-progress") };
        let error = job.get("error").and_then(Value::as_str).map(str::to_string);
        // A mirror found ready when the watch began, with no word of it
        // getting there since the last command, was ready before: the user
        // has completed or cancelled it since, and it is about to end.
        let was_ready_before = !self.became_ready && self.status.as_deref().is_none_or(|s| s == "ready");
        self.status = Some(status.clone());
        let ending = match status.as_str() {
            "ready" if was_ready_before => None,
            "ready" => Some(Ending::Ready),
            "concluded" | "null" if self.cancelled => Some(Ending::Cancelled),
            "concluded" | "null" => Some(error.map_or(Ending::Completed, Ending::Failed)),
            _ => None,
        };
        Ok((Some(state), ending))
    }

    /// The job is no longer listed: QEMU dismissed it when it ended. How
    /// it ended is what its events said, when they said it.
    fn gone(&self, id: &str, listed: &[Value]) -> Result<Ending, WatchError> {
        if self.cancelled {
            return Ok(Ending::Cancelled);
        }
        match (&self.completed, self.status.as_deref()) {
            (Some(Some(error)), _) => Ok(Ending::Failed(error.clone())),
            (Some(None), _) => Ok(Ending::Completed),
            (None, Some("aborting")) => {
                Ok(Ending::Failed("QEMU aborted it, and dismissed it before its error could be read".into()))
            }
            (None, Some(_)) => Ok(Ending::Completed),
            (None, None) => {
                let ids: Vec<&str> = listed.iter().filter_map(|job| job.get("id").and_then(Value::as_str)).collect();
                let known = if ids.is_empty() { "none".to_string() } else { ids.join(", ") };
                Err(WatchError::Unknown(format!("QEMU has no job {id} (query-jobs lists {known})")))
            }
        }
    }
}

/// The work a command starts in QEMU's background, if it starts any: a
/// block job (by its `job-id`, which QEMU takes from `device` when a
/// `drive-*`, `block-stream` or `block-commit` names none), another job,
/// or the migration.
pub fn started_by(message: &Map<String, Value>) -> Option<Work> {
    let arguments = message.get("arguments");
    let text = |key: &str| arguments.and_then(|a| a.get(key)).and_then(Value::as_str).map(str::to_string);
    let detached = arguments.and_then(|a| a.get("detach")).and_then(Value::as_bool) == Some(true);
    match message.get("execute").and_then(Value::as_str)? {
        "migrate" => Some(Work::Migration),
        // Without detach, the command itself lasts as long as the dump.
        "dump-guest-memory" if detached => Some(Work::Dump),
        "drive-mirror" | "drive-backup" | "block-stream" | "block-commit" => {
            text("job-id").or_else(|| text("device")).map(Work::Job)
        }
        "blockdev-mirror" | "blockdev-backup" | "blockdev-create" | "x-blockdev-amend" | "snapshot-save"
        | "snapshot-load" | "snapshot-delete" => text("job-id").map(Work::Job),
        _ => None,
    }
}

/// What there is to watch when none is named: the one job QEMU has that
/// has not ended, else a migration under way.
pub fn only_work(
    monitor: &mut Monitor,
    deadline: Option<Instant>,
    observer: &mut dyn Observer,
) -> Result<Work, WatchError> {
    let jobs = ask(monitor, "query-jobs", deadline, observer)?;
    let running: Vec<&str> = jobs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|job| !matches!(job.get("status").and_then(Value::as_str), Some("concluded" | "null")))
        .filter_map(|job| job.get("id").and_then(Value::as_str))
        .collect();
    match running.as_slice() {
        [id] => return Ok(Work::Job((*id).to_string())),
        [] => {}
        several => {
            let ids = crate::visible::line(&several.join(", "));
            return Err(WatchError::Unknown(format!("QEMU runs several jobs ({ids}): name one, as in .watch ID")));
        }
    }
    let migration = ask(monitor, "query-migrate", deadline, observer)?;
    if !matches!(
        migration.get("status").and_then(Value::as_str),
        Some("completed" | "failed" | "cancelled" | "none") | None
    ) {
        return Ok(Work::Migration);
    }
    let dump = ask(monitor, "query-dump", deadline, observer)?;
    match dump.get("status").and_then(Value::as_str) {
        Some("active") => Ok(Work::Dump),
        _ => Err(WatchError::Unknown(
            "nothing to watch: QEMU runs no job, migration or dump (.watch ID, .watch migration)".into(),
        )),
    }
}

/// The migration's state in `query-migrate`'s answer `info`, and its
/// ending once it has one.
fn migration_state(info: &Value) -> Result<(Option<State>, Option<Ending>), WatchError> {
    let Some(status) = info.get("status").and_then(Value::as_str) else {
        return Err(WatchError::Unknown("no migration has started (query-migrate has no status)".into()));
    };
    let ram = |key: &str| info.get("ram").and_then(|ram| ram.get(key)).and_then(Value::as_u64);
    let state = State { status: status.to_string(), done: ram("transferred"), total: ram("total") };
    let ending = match status {
        "completed" => Some(Ending::Completed),
        "failed" => {
            let why = info.get("error-desc").and_then(Value::as_str).unwrap_or("QEMU gave no reason");
            Some(Ending::Failed(why.to_string()))
        }
        "cancelled" => Some(Ending::Cancelled),
        _ => None,
    };
    Ok((Some(state), ending))
}

/// The dump's state in `query-dump`'s answer `info`, and its ending once
/// it has one (QEMU keeps no error text for a failed dump but in its
/// `DUMP_COMPLETED` event, which prints).
fn dump_state(info: &Value) -> Result<(Option<State>, Option<Ending>), WatchError> {
    let status = info.get("status").and_then(Value::as_str).unwrap_or("none");
    let number = |key: &str| info.get(key).and_then(Value::as_u64);
    let state = State { status: status.to_string(), done: number("completed"), total: number("total") };
    let ending = match status {
        "none" => return Err(WatchError::Unknown("no dump has started (query-dump says none)".into())),
        "completed" => Some(Ending::Completed),
        "failed" => Some(Ending::Failed("QEMU says the dump failed (its DUMP_COMPLETED event says why)".into())),
        _ => None,
    };
    Ok((Some(state), ending))
}

/// Runs `name` and returns its value; a refusal is QEMU's words.
fn ask(
    monitor: &mut Monitor,
    name: &str,
    deadline: Option<Instant>,
    observer: &mut dyn Observer,
) -> Result<Value, WatchError> {
    match monitor.execute(command(name), deadline, observer) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(refused)) => Err(WatchError::Unknown(format!("{name} failed: {refused}"))),
        Err(e) => Err(e.into()),
    }
}

/// Passes everything on to the session's observer, and keeps the events
/// about the work.
struct Noting<'a> {
    inner: &'a mut dyn Observer,
    work: &'a Work,
    seen: Vec<Value>,
}

impl Observer for Noting<'_> {
    fn sent(&mut self, message: &Value) {
        self.inner.sent(message);
    }

    fn received(&mut self, message: &Value, kind: Kind) {
        if kind == Kind::Event && is_about(self.work, message) {
            self.seen.push(message.clone());
        }
        self.inner.received(message, kind);
    }

    fn waiting(&mut self) {
        self.inner.waiting();
    }

    fn closed(&self) -> bool {
        self.inner.closed()
    }
}

/// Whether `event` is news about `work`: then QEMU is asked at once.
fn is_about(work: &Work, event: &Value) -> bool {
    let name = event.get("event").and_then(Value::as_str).unwrap_or("");
    match work {
        Work::Migration => matches!(name, "MIGRATION" | "MIGRATION_PASS"),
        Work::Dump => name == "DUMP_COMPLETED",
        Work::Job(id) => {
            let data = event.get("data");
            let names = |key: &str| data.and_then(|d| d.get(key)).and_then(Value::as_str) == Some(id.as_str());
            (name == "JOB_STATUS_CHANGE" && names("id")) || (name.starts_with("BLOCK_JOB_") && names("device"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_dismissed_job_ends_as_its_events_said() {
        let id = "m0";
        let failed = json!({"event": "BLOCK_JOB_COMPLETED", "data": {"device": id, "error": "No space left"}});
        let watcher = Watcher::new(Work::Job(id.into()), &[failed]);
        assert_eq!(watcher.gone(id, &[]), Ok(Ending::Failed("No space left".into())));
        let done = json!({"event": "BLOCK_JOB_COMPLETED", "data": {"device": id, "len": 1, "offset": 1}});
        assert_eq!(Watcher::new(Work::Job(id.into()), &[done]).gone(id, &[]), Ok(Ending::Completed));
        let cancelled = json!({"event": "BLOCK_JOB_CANCELLED", "data": {"device": id}});
        assert_eq!(Watcher::new(Work::Job(id.into()), &[cancelled]).gone(id, &[]), Ok(Ending::Cancelled));
        // Another job's events say nothing of this one.
        let other = json!({"event": "BLOCK_JOB_COMPLETED", "data": {"device": "b1"}});
        let unknown = Watcher::new(Work::Job(id.into()), &[other]).gone(id, &[json!({"id": "b1"})]);
        assert_eq!(unknown, Err(WatchError::Unknown("QEMU has no job m0 (query-jobs lists b1)".into())));
    }

    #[test]
    fn only_news_about_the_work_wakes_the_watch() {
        let job = Work::Job("m0".into());
        assert!(is_about(&job, &json!({"event": "JOB_STATUS_CHANGE", "data": {"id": "m0", "status": "ready"}})));
        assert!(is_about(&job, &json!({"event": "BLOCK_JOB_READY", "data": {"device": "m0"}})));
        assert!(!is_about(&job, &json!({"event": "JOB_STATUS_CHANGE", "data": {"id": "b1", "status": "ready"}})));
        assert!(!is_about(&job, &json!({"event": "STOP"})));
        assert!(is_about(&Work::Migration, &json!({"event": "MIGRATION", "data": {"status": "active"}})));
        assert!(!is_about(&Work::Migration, &json!({"event": "JOB_STATUS_CHANGE", "data": {"id": "m0"}})));
    }
}
