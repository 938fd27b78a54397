//! libvirt's event loop, qmpsh's own: the file descriptors and timers
//! libvirt asks to have watched (its connections' sockets, keepalive,
//! the dispatch of queued events), watched by one thread.
//!
//! libvirt's default loop (on GLib) is woken several times for each call
//! a client makes: the calling thread takes the connection's socket out
//! of the loop while it talks on it and puts it back after, and each
//! change replaces a GLib source by a new one, whose old one is let go by
//! yet another (measured: its thread was 10% of a 50-target fleet's
//! CPU). This loop is woken only when it must watch something it is not
//! watching, or wake sooner than it planned; taking something out of the
//! watch costs no wake-up (it is not dispatched when it fires).
//!
//! Nor does it spin on a socket whose callback does nothing. libvirt's
//! client lets one of its threads talk on a connection at a time, and
//! puts the socket back in the loop as one hands over to the next, which
//! may have taken it out first: the loop then watches a socket, often
//! for writing, whose callback leaves it to that thread, and it stays
//! ready (measured: some 300 turns of the loop in a 50-target run, 55
//! with the rule that follows). A watch that fires on two turns in a row for the
//! same events, unchanged by libvirt between them, is left out until
//! libvirt changes it or [`IDLE_WAIT`] passes.
//!
//! libvirt's rules for an event loop, kept here: callbacks run on the
//! loop's thread, without its lock (a callback may add, change or remove
//! watches and timers); a watch or timer removed is not dispatched again,
//! and its free function runs later on the loop's thread, never inside
//! the removal; a timer of 0 ms fires on every turn of the loop, one of
//! -1 never; timers due together fire in the order they were added.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec, eventfd, poll};
use virt::sys;

/// Registers this loop with libvirt and starts its thread. Once per
/// process, before the first connection is opened.
pub fn start() -> Result<(), String> {
    let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
        .map_err(|e| format!("cannot start libvirt's event loop: {e}"))?;
    if WAKE.set(wake).is_err() {
        return Ok(());
    }
    thread::Builder::new()
        .name("libvirt-events".into())
        .spawn(run)
        .map_err(|e| format!("cannot start libvirt's event thread: {e}"))?;
    // SAFETY: the six functions have the signatures libvirt asks for and
    // keep its rules (see the module's comment).
    unsafe {
        sys::virEventRegisterImpl(
            Some(add_handle),
            Some(update_handle),
            Some(remove_handle),
            Some(add_timeout),
            Some(update_timeout),
            Some(remove_timeout),
        );
    }
    Ok(())
}

/// What libvirt hands a callback, and frees when done: kept as given.
struct Opaque {
    data: *mut c_void,
    free: sys::virFreeCallback,
}

// SAFETY: libvirt hands these to whichever thread runs its event loop;
// they are used only there (callbacks and free functions).
unsafe impl Send for Opaque {}

impl Opaque {
    /// libvirt's free function for it, run on the loop's thread.
    fn release(self) {
        if let Some(free) = self.free {
            // SAFETY: libvirt asked for `free` to be called with `data`
            // once the watch or timer is removed; it is called once.
            unsafe { free(self.data) }
        }
    }
}

type HandleCallback = unsafe extern "C" fn(c_int, c_int, c_int, *mut c_void);
type TimeoutCallback = unsafe extern "C" fn(c_int, *mut c_void);

/// A file descriptor libvirt asked to watch.
struct Watch {
    id: c_int,
    fd: RawFd,
    /// libvirt's `VIR_EVENT_HANDLE_*` bits; 0: not watched for now.
    events: c_int,
    callback: HandleCallback,
    opaque: Opaque,
    removed: bool,
    /// The events it fired for on the loop's last turn (0: none).
    fired: c_int,
    /// Left out of the poll until then: it fired again for nothing.
    left_out: Option<Instant>,
}

/// The longest a watch that fires for nothing is left out: the thread
/// its callback leaves the work to is done sooner (a call takes about a
/// millisecond), and libvirt then changes the watch, which puts it back.
const IDLE_WAIT: Duration = Duration::from_millis(5);

/// A timer libvirt asked for.
struct Timer {
    id: c_int,
    /// Every how long it fires; `None`: off.
    every: Option<Duration>,
    /// When it fires next, if on.
    due: Option<Instant>,
    callback: TimeoutCallback,
    opaque: Opaque,
    removed: bool,
}

/// A watch as polled: its id, file descriptor and events.
type Polled = (c_int, RawFd, c_int);

/// What the loop's thread is asleep on, if it is.
struct Asleep {
    /// Each watch it polls.
    polled: Vec<Polled>,
    /// When it wakes by itself (`None`: not before something happens).
    until: Option<Instant>,
}

struct State {
    watches: Vec<Watch>,
    timers: Vec<Timer>,
    last_id: c_int,
    asleep: Option<Asleep>,
}

static STATE: Mutex<State> = Mutex::new(State { watches: Vec::new(), timers: Vec::new(), last_id: 0, asleep: None });

/// Written to wake the loop's thread.
static WAKE: OnceLock<OwnedFd> = OnceLock::new();

fn state() -> MutexGuard<'static, State> {
    // Nothing here panics while holding the lock; if something did, the
    // lists are still whole.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    fn next_id(&mut self) -> c_int {
        self.last_id = self.last_id.checked_add(1).unwrap_or(1);
        self.last_id
    }

    /// Wakes the loop's thread if it sleeps past `when`.
    fn wake_by(&self, when: Instant) {
        if self.asleep.as_ref().is_some_and(|asleep| asleep.until.is_none_or(|until| when < until)) {
            wake();
        }
    }

    /// Watches the watch `id` for `events` from now on: libvirt changed
    /// it, so it is polled again at once if it was left out.
    fn update(&mut self, id: c_int, events: c_int) {
        let Some(watch) = self.watches.iter_mut().find(|w| w.id == id && !w.removed) else { return };
        watch.events = events;
        watch.fired = 0;
        watch.left_out = None;
        let fd = watch.fd;
        self.wake_for(fd, events);
    }

    /// Wakes the loop's thread if it sleeps without polling `fd` for
    /// every one of `events`.
    fn wake_for(&self, fd: RawFd, events: c_int) {
        if events != 0
            && self.asleep.as_ref().is_some_and(|asleep| {
                !asleep.polled.iter().any(|&(_, polled, watched)| polled == fd && events & !watched == 0)
            })
        {
            wake();
        }
    }

    /// Wakes the loop's thread if it sleeps, so that it lets go of what
    /// was removed.
    fn wake_if_asleep(&self) {
        if self.asleep.is_some() {
            wake();
        }
    }
}

fn wake() {
    if let Some(wake) = WAKE.get() {
        let _ = rustix::io::write(wake, &1u64.to_ne_bytes());
    }
}

fn timer_due(every: Option<Duration>) -> Option<Instant> {
    every.map(|every| Instant::now() + every)
}

/// libvirt's timeout in ms: -1 (any negative) off, else every that long.
fn every(timeout: c_int) -> Option<Duration> {
    u64::try_from(timeout).ok().map(Duration::from_millis)
}

unsafe extern "C" fn add_handle(
    fd: c_int,
    events: c_int,
    callback: sys::virEventHandleCallback,
    data: *mut c_void,
    free: sys::virFreeCallback,
) -> c_int {
    let Some(callback) = callback.filter(|_| fd >= 0) else { return -1 };
    let mut state = state();
    let id = state.next_id();
    let opaque = Opaque { data, free };
    state.watches.push(Watch { id, fd, events, callback, opaque, removed: false, fired: 0, left_out: None });
    state.wake_for(fd, events);
    id
}

unsafe extern "C" fn update_handle(id: c_int, events: c_int) {
    state().update(id, events);
}

unsafe extern "C" fn remove_handle(id: c_int) -> c_int {
    let mut state = state();
    let Some(watch) = state.watches.iter_mut().find(|w| w.id == id && !w.removed) else { return -1 };
    watch.removed = true;
    state.wake_if_asleep();
    0
}

unsafe extern "C" fn add_timeout(
    timeout: c_int,
    callback: sys::virEventTimeoutCallback,
    data: *mut c_void,
    free: sys::virFreeCallback,
) -> c_int {
    let Some(callback) = callback else { return -1 };
    let mut state = state();
    let id = state.next_id();
    let every = every(timeout);
    let due = timer_due(every);
    state.timers.push(Timer { id, every, due, callback, opaque: Opaque { data, free }, removed: false });
    if let Some(due) = due {
        state.wake_by(due);
    }
    id
}

unsafe extern "C" fn update_timeout(id: c_int, timeout: c_int) {
    let mut state = state();
    let Some(timer) = state.timers.iter_mut().find(|t| t.id == id && !t.removed) else { return };
    timer.every = every(timeout);
    timer.due = timer_due(timer.every);
    if let Some(due) = timer.due {
        state.wake_by(due);
    }
}

unsafe extern "C" fn remove_timeout(id: c_int) -> c_int {
    let mut state = state();
    let Some(timer) = state.timers.iter_mut().find(|t| t.id == id && !t.removed) else { return -1 };
    timer.removed = true;
    state.wake_if_asleep();
    0
}

/// The loop's thread.
fn run() {
    let Some(wake) = WAKE.get() else { return };
    loop {
        let (watched, until) = prepare();
        let timeout = until.map(|until| {
            let left = until.saturating_duration_since(Instant::now());
            Timespec::try_from(left).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 })
        });
        // SAFETY: each fd is one libvirt asked to watch, and keeps open
        // until the watch's free function has run: after this turn, since
        // `prepare` runs them before it lists what to poll.
        let borrowed: Vec<BorrowedFd<'_>> =
            watched.iter().map(|&(_, fd, _)| unsafe { BorrowedFd::borrow_raw(fd) }).collect();
        let mut fds: Vec<PollFd<'_>> = std::iter::once(PollFd::new(wake, PollFlags::IN))
            .chain(borrowed.iter().zip(&watched).map(|(fd, &(_, _, events))| PollFd::new(fd, poll_flags(events))))
            .collect();
        let polled = match poll(&mut fds, timeout.as_ref()) {
            Ok(_) => true,
            Err(rustix::io::Errno::INTR) => false,
            // Not to spin on it (too many watches, no memory): a pause.
            Err(_) => {
                thread::sleep(Duration::from_millis(10));
                false
            }
        };
        let woken = polled && fds.first().is_some_and(|fd| !fd.revents().is_empty());
        let ready: Vec<c_int> = fds.iter().skip(1).map(|fd| if polled { from_poll(fd.revents()) } else { 0 }).collect();
        drop(fds);
        if woken {
            let mut count = [0u8; 8];
            let _ = rustix::io::read(wake.as_fd(), &mut count);
        }
        state().asleep = None;
        dispatch_timers();
        dispatch_watches(&watched, &ready);
    }
}

/// Lets go of what was removed, and says what to poll and until when (the
/// loop is then asleep on it).
fn prepare() -> (Vec<Polled>, Option<Instant>) {
    let mut guard = state();
    let state = &mut *guard;
    let released: Vec<Opaque> = state
        .watches
        .extract_if(.., |w| w.removed)
        .map(|w| w.opaque)
        .chain(state.timers.extract_if(.., |t| t.removed).map(|t| t.opaque))
        .collect();
    let now = Instant::now();
    for watch in &mut state.watches {
        watch.left_out = watch.left_out.filter(|&until| until > now);
    }
    let polled: Vec<Polled> = state
        .watches
        .iter()
        .filter(|w| w.events != 0 && w.left_out.is_none())
        .map(|w| (w.id, w.fd, w.events))
        .collect();
    let back = state.watches.iter().filter_map(|w| w.left_out);
    let until = state.timers.iter().filter_map(|t| t.due).chain(back).min();
    // With something to let go, look again at once: a free function may
    // have added or removed more.
    let until = if released.is_empty() { until } else { Some(now) };
    state.asleep = Some(Asleep { polled: polled.clone(), until });
    // Free functions run without the lock: they may call libvirt, which
    // may call back here.
    drop(guard);
    for opaque in released {
        opaque.release();
    }
    (polled, until)
}

/// Fires every timer due, in the order they were added.
fn dispatch_timers() {
    let now = Instant::now();
    let due = |t: &Timer| !t.removed && t.due.is_some_and(|d| d <= now);
    let ids: Vec<c_int> = state().timers.iter().filter(|t| due(t)).map(|t| t.id).collect();
    for id in ids {
        // Looked up again just before it fires: an earlier callback may
        // have removed it, turned it off or set it later.
        let found = state().timers.iter_mut().find(|t| t.id == id && due(t)).map(|t| {
            t.due = t.every.map(|every| now + every);
            (t.callback, t.opaque.data)
        });
        if let Some((callback, data)) = found {
            // SAFETY: libvirt's callback with its own opaque pointer, on
            // the loop's thread, the timer not removed.
            unsafe { callback(id, data) };
        }
    }
}

/// Runs the callback of each watch whose file descriptor is ready for
/// what it is watched for now.
fn dispatch_watches(watched: &[Polled], ready: &[c_int]) {
    let always = sys::VIR_EVENT_HANDLE_ERROR as c_int | sys::VIR_EVENT_HANDLE_HANGUP as c_int;
    for (&(id, fd, _), &ready) in watched.iter().zip(ready) {
        // Looked up again: it may have been changed or removed since.
        let found = {
            let mut state = state();
            let Some(watch) = state.watches.iter_mut().find(|w| w.id == id && !w.removed) else { continue };
            // Taken out since it was polled: not dispatched, as libvirt's
            // own loop would not have polled it.
            let events = if watch.events == 0 { 0 } else { ready & (watch.events | always) };
            if events != 0 && events == watch.fired {
                watch.left_out = Some(Instant::now() + IDLE_WAIT);
            }
            watch.fired = events;
            (events != 0).then_some((watch.callback, watch.opaque.data, events))
        };
        if let Some((callback, data, events)) = found {
            // SAFETY: libvirt's callback with its own opaque pointer, on
            // the loop's thread, the watch not removed.
            unsafe { callback(id, fd, events, data) };
        }
    }
}

fn poll_flags(events: c_int) -> PollFlags {
    let mut flags = PollFlags::empty();
    if events & sys::VIR_EVENT_HANDLE_READABLE as c_int != 0 {
        flags |= PollFlags::IN;
    }
    if events & sys::VIR_EVENT_HANDLE_WRITABLE as c_int != 0 {
        flags |= PollFlags::OUT;
    }
    flags
}

fn from_poll(revents: PollFlags) -> c_int {
    let mut events = 0;
    if revents.contains(PollFlags::IN) {
        events |= sys::VIR_EVENT_HANDLE_READABLE as c_int;
    }
    if revents.contains(PollFlags::OUT) {
        events |= sys::VIR_EVENT_HANDLE_WRITABLE as c_int;
    }
    if revents.intersects(PollFlags::ERR | PollFlags::NVAL) {
        events |= sys::VIR_EVENT_HANDLE_ERROR as c_int;
    }
    if revents.contains(PollFlags::HUP) {
        events |= sys::VIR_EVENT_HANDLE_HANGUP as c_int;
    }
    events
}

#[cfg(test)]
mod tests {
    // SAFETY (each unsafe call below): the loop's own functions, called
    // as libvirt calls them, with callbacks that match their reporters.
    use std::sync::mpsc::{self, Receiver, Sender};

    use rustix::pipe::{PipeFlags, pipe_with};

    use super::*;

    /// The loop is the process's: one test at a time, so that no other
    /// test's watches or timers wake it for this one.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn alone() -> MutexGuard<'static, ()> {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        start().expect("the loop starts");
        turn
    }

    /// What the callbacks below report.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Fired(c_int),
        Freed,
    }

    fn reporter() -> (*mut c_void, Receiver<Seen>) {
        let (tx, rx) = mpsc::channel::<Seen>();
        (Box::into_raw(Box::new(tx)).cast::<c_void>(), rx)
    }

    /// # Safety
    /// `opaque` is a reporter's pointer, not yet freed.
    unsafe fn report(opaque: *mut c_void, seen: Seen) {
        // SAFETY: as the caller promises.
        let _ = unsafe { &*opaque.cast::<Sender<Seen>>() }.send(seen);
    }

    unsafe extern "C" fn reads(watch: c_int, fd: c_int, _events: c_int, opaque: *mut c_void) {
        let mut byte = [0u8; 1];
        // SAFETY: the pipe's read end, open while it is watched.
        let _ = rustix::io::read(unsafe { BorrowedFd::borrow_raw(fd) }, &mut byte);
        // SAFETY: registered with a reporter.
        unsafe { report(opaque, Seen::Fired(watch)) };
    }

    unsafe extern "C" fn leaves_it(watch: c_int, _fd: c_int, _events: c_int, opaque: *mut c_void) {
        // SAFETY: registered with a reporter.
        unsafe { report(opaque, Seen::Fired(watch)) };
    }

    unsafe extern "C" fn ticked(timer: c_int, opaque: *mut c_void) {
        // SAFETY: registered with a reporter.
        unsafe { report(opaque, Seen::Fired(timer)) };
    }

    unsafe extern "C" fn freed(opaque: *mut c_void) {
        // SAFETY: registered with a reporter, freed once, here.
        let tx = unsafe { Box::from_raw(opaque.cast::<Sender<Seen>>()) };
        let _ = tx.send(Seen::Freed);
    }

    const SOON: Duration = Duration::from_secs(2);
    const QUIET: Duration = Duration::from_millis(200);
    const READABLE: c_int = sys::VIR_EVENT_HANDLE_READABLE as c_int;

    /// A pipe watched by the loop; the watch removed, and freed, before
    /// the pipe closes, also when a test fails.
    struct Watched {
        id: c_int,
        seen: Receiver<Seen>,
        write: OwnedFd,
        _read: OwnedFd,
    }

    impl Watched {
        fn new(callback: HandleCallback) -> Watched {
            let (read, write) = pipe_with(PipeFlags::CLOEXEC).expect("a pipe");
            let (opaque, seen) = reporter();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&read);
            let id = unsafe { add_handle(fd, READABLE, Some(callback), opaque, Some(freed)) };
            assert!(id > 0);
            Watched { id, seen, write, _read: read }
        }

        fn write(&self) {
            rustix::io::write(&self.write, b"x").expect("a byte");
        }

        /// Everything reported within `wait` of the last report, up to
        /// `until`; how many times it fired, and whether it was freed.
        fn drain(&self, wait: Duration, until: Instant) -> (usize, bool) {
            let mut fired = 0;
            while Instant::now() < until {
                match self.seen.recv_timeout(wait) {
                    Ok(Seen::Fired(_)) => fired += 1,
                    Ok(Seen::Freed) => return (fired, true),
                    Err(_) => break,
                }
            }
            (fired, false)
        }
    }

    impl Drop for Watched {
        fn drop(&mut self) {
            unsafe { remove_handle(self.id) };
            let _ = self.drain(SOON, Instant::now() + SOON);
        }
    }

    /// A timer, removed when the test ends, also when it fails.
    struct Timed(c_int);

    impl Drop for Timed {
        fn drop(&mut self) {
            unsafe { remove_timeout(self.0) };
        }
    }

    #[test]
    fn a_watch_fires_when_watched_not_while_taken_out_and_again_once_put_back() {
        let _alone = alone();
        let pipe = Watched::new(reads);
        pipe.write();
        assert_eq!(pipe.seen.recv_timeout(SOON), Ok(Seen::Fired(pipe.id)));
        // Taken out, as libvirt does while a thread talks on the socket.
        unsafe { update_handle(pipe.id, 0) };
        pipe.write();
        assert!(pipe.seen.recv_timeout(QUIET).is_err(), "a watch taken out does not fire");
        // Put back: the loop, asleep without it and with nothing else to
        // wake it, must be woken to watch it.
        unsafe { update_handle(pipe.id, READABLE) };
        assert_eq!(pipe.seen.recv_timeout(SOON), Ok(Seen::Fired(pipe.id)));
        assert_eq!(unsafe { remove_handle(pipe.id) }, 0);
        pipe.write();
        assert_eq!(pipe.drain(QUIET, Instant::now() + SOON), (0, true), "removed, it fires no more, and is freed");
        assert_eq!(unsafe { remove_handle(pipe.id) }, -1, "removed once");
    }

    #[test]
    fn a_watch_whose_callback_leaves_it_ready_does_not_spin_the_loop() {
        let _alone = alone();
        let pipe = Watched::new(leaves_it);
        pipe.write();
        let (fired, _) = pipe.drain(SOON, Instant::now() + QUIET);
        // Two turns for nothing, then left out for IDLE_WAIT: some 40-80
        // in 200 ms. Spinning, it was tens of thousands.
        assert!((1..=400).contains(&fired), "fired {fired} times in {QUIET:?}");
        // Changed by libvirt, it is watched again, not left out. Looked at
        // under the same lock: once let go, the loop may poll it twice and
        // leave it out again (it does, on an idle machine).
        let mut state = state();
        state.update(pipe.id, READABLE);
        let left_out = state.watches.iter().find(|w| w.id == pipe.id).map(|w| w.left_out);
        drop(state);
        assert_eq!(left_out, Some(None));
    }

    #[test]
    fn a_timer_fires_every_period_stops_when_off_fires_at_once_at_0_and_is_freed_when_removed() {
        let _alone = alone();
        let (opaque, seen) = reporter();
        let timer = Timed(unsafe { add_timeout(60_000, Some(ticked), opaque, Some(freed)) });
        assert!(timer.0 > 0);
        // A whole minute: not due during the test.
        assert!(seen.recv_timeout(QUIET).is_err(), "not due yet");
        // Sooner than the loop planned to wake, with nothing else to wake
        // it: it is woken.
        unsafe { update_timeout(timer.0, 10) };
        assert_eq!(seen.recv_timeout(SOON), Ok(Seen::Fired(timer.0)));
        assert_eq!(seen.recv_timeout(SOON), Ok(Seen::Fired(timer.0)), "and again a period later");
        unsafe { update_timeout(timer.0, -1) };
        std::thread::sleep(Duration::from_millis(50));
        while seen.try_recv().is_ok() {}
        assert!(seen.recv_timeout(QUIET).is_err(), "off");
        unsafe { update_timeout(timer.0, 0) };
        assert_eq!(seen.recv_timeout(SOON), Ok(Seen::Fired(timer.0)));
        assert_eq!(unsafe { remove_timeout(timer.0) }, 0);
        let until = Instant::now() + SOON;
        let freed = std::iter::from_fn(|| seen.recv_timeout(SOON).ok()).take_while(|_| Instant::now() < until).last();
        assert_eq!(freed, Some(Seen::Freed), "removed, it is freed, after which it cannot fire");
    }
}
