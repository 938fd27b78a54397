//! libvirt's event loop and the callbacks that feed the monitor's inbox:
//! QEMU monitor events as they happen, the domain stopping, and the
//! connection closing. virt 0.5 wraps none of these callbacks, so this is
//! the one place in qmpsh that calls libvirt's C API itself.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_longlong, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use serde_json::{Map, Value};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

use crate::bounds;
use crate::qmp::ClientError;
use crate::qmp::Incoming;
use crate::visible;

/// Starts libvirt's event loop ([`event_loop`](super::event_loop)) in a
/// thread of its own, once per process. It must run before a connection
/// is opened for the connection to deliver events.
pub fn start_loop() -> Result<(), String> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            // qmpsh reports libvirt's errors itself, in one line each.
            virt::error::clear_error_callback();
            super::event_loop::start()
        })
        .clone()
}

/// Sends [`Incoming::Settled`] to `tx` from the event loop, once the
/// events it has queued by now are dispatched: a timer added now fires
/// after the timers libvirt added before it, among them the one that
/// dispatches a connection's queued events.
pub fn after_queued(tx: &SyncSender<Incoming>) -> Result<(), virt::error::Error> {
    let tx = tx.clone();
    let mut sent = false;
    let mark = move |timer: c_int, _: *mut c_void| {
        if !std::mem::replace(&mut sent, true) {
            let _ = tx.send(Incoming::Settled);
        }
        let _ = virt::event::EventTimeoutWatch(timer).event_remove_timeout();
    };
    virt::event::event_add_timeout(0, mark, std::ptr::null_mut()).map(drop)
}

/// What a callback needs: where to put what it learns, and the URI to name
/// when the connection is lost.
struct Feed {
    to: To,
    uri: String,
}

/// Where a callback's news goes.
enum To {
    /// One monitor's inbox.
    One(SyncSender<Incoming>),
    /// The inboxes of a shared connection's domains, by name (QEMU events
    /// registered once for all of them, see [`Hub`]).
    ByDomain(Arc<Routes>),
}

impl To {
    /// Every inbox the news goes to, taken out of the lock before
    /// anything is sent (see [`inboxes`]).
    fn every(&self) -> Vec<SyncSender<Incoming>> {
        match self {
            To::One(tx) => vec![tx.clone()],
            To::ByDomain(routes) => all_inboxes(routes),
        }
    }

    /// The inboxes `dom`'s news goes to, taken out of the lock.
    ///
    /// # Safety
    /// `dom` is a live domain (libvirt's, passed to a callback).
    unsafe fn of(&self, dom: sys::virDomainPtr) -> Vec<SyncSender<Incoming>> {
        match self {
            To::One(tx) => vec![tx.clone()],
            // SAFETY: as the caller promises.
            To::ByDomain(routes) => unsafe { inboxes(routes, dom) },
        }
    }
}

/// The inboxes of a shared connection's domains, by domain name, each with
/// the number of its subscription.
type Routes = Mutex<HashMap<String, Vec<(u64, SyncSender<Incoming>)>>>;

/// Every inbox of a shared connection, taken out of the lock.
fn all_inboxes(routes: &Routes) -> Vec<SyncSender<Incoming>> {
    let routes = routes.lock();
    routes.map(|routes| routes.values().flatten().map(|(_, tx)| tx.clone()).collect()).unwrap_or_default()
}

/// A connection that serves several domains (`libvirt:PATTERN`): its QEMU
/// events, lifecycle events and close registered once, for every domain,
/// each domain's news going to the inboxes routed to it. Deregistered when
/// the last holder lets go.
///
/// Registered once because libvirt 9.0's remote driver asks the server for
/// a connection's QEMU events once, for the first domain registered, so
/// registrations for the others never got one (measured: three domains on
/// one connection, `virsh resume` on two, no RESUME); and a connection has
/// one close callback at most.
pub struct Hub {
    /// Taken by `drop`, to be released in a thread of its own.
    registered: Option<Registered>,
    /// The connection, also for those who hold the hub.
    connect: Connect,
    routes: Arc<Routes>,
}

impl Hub {
    /// Registers the callbacks on `connect`, for every domain. Each is a
    /// call to libvirt, made by whoever opened the connection, so no other
    /// connection waits on it.
    pub fn register(connect: &Connect) -> Result<Hub, String> {
        let uri = connect.uri().unwrap_or_else(|_| "libvirt".into());
        let routes = Arc::new(Routes::default());
        let feed = || {
            let feed = Feed { to: To::ByDomain(Arc::clone(&routes)), uri: uri.clone() };
            Box::into_raw(Box::new(feed)).cast::<c_void>()
        };
        // SAFETY: the connection is live (borrowed from its wrapper, which
        // the hub keeps); a null domain means every domain.
        let registered = unsafe { Registered::new(connect, std::ptr::null_mut(), feed)? };
        Ok(Hub { registered: Some(registered), connect: connect.clone(), routes })
    }

    pub fn connect(&self) -> &Connect {
        &self.connect
    }

    /// The subscription of `domain`'s inbox `tx` to the hub's news.
    pub fn route(hub: &Arc<Hub>, domain: &Domain, tx: &SyncSender<Incoming>) -> Result<Subscription, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = domain.name().map_err(|e| format!("cannot name the domain: {}", visible::line(e.message())))?;
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        hub.routes
            .lock()
            .map_err(|_| "the event routes are poisoned".to_string())?
            .entry(name.clone())
            .or_default()
            .push((id, tx.clone()));
        Ok(Subscription::Routed { hub: Arc::clone(hub), name, id })
    }

    /// Tells every domain routed here that the connection is lost: found
    /// by one target's call, it is every target's. libvirt 9.0 does not
    /// always say so itself: when its keepalive gives up on a host that
    /// hangs, one waiting call fails and the others wait on (measured),
    /// until the socket itself dies.
    /// The connection is asked first (without a call to libvirtd): a
    /// failure of one domain's alone is that domain's.
    pub fn lost(&self, why: &ClientError) {
        if self.connect.is_alive().unwrap_or(false) {
            return;
        }
        for tx in all_inboxes(&self.routes) {
            let _ = tx.send(Incoming::End(why.clone()));
        }
    }

    /// Ends the route `id` of the domain `name`.
    fn unroute(&self, name: &str, id: u64) {
        if let Ok(mut routes) = self.routes.lock()
            && let Some(inboxes) = routes.get_mut(name)
        {
            inboxes.retain(|(route, _)| *route != id);
            if inboxes.is_empty() {
                routes.remove(name);
            }
        }
    }
}

impl Drop for Hub {
    /// Ends the registrations in a thread of their own, which also lets
    /// go of the connection: each is a call to libvirt, and a host that
    /// stopped answering would hold whoever let go last until libvirt's
    /// keepalive gives up on it (measured: a run whose every target had
    /// ended took 16 s more). Each registration holds the connection
    /// open, so one left unfinished (qmpsh exits first, or no thread could
    /// start) keeps it open until qmpsh exits; libvirtd then drops both
    /// ([`released_within`] gives them a moment first).
    fn drop(&mut self) {
        if let Some(registered) = self.registered.take() {
            let releasing = Releasing::start();
            let _ = thread::Builder::new().name("libvirt-release".into()).spawn(move || {
                drop(registered);
                drop(releasing);
            });
        }
    }
}

/// How many hubs are being let go of in threads of their own.
static RELEASING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// One hub's release under way, counted until dropped (also when its
/// thread never started).
struct Releasing;

impl Releasing {
    fn start() -> Releasing {
        if let Ok(mut count) = RELEASING.0.lock() {
            *count += 1;
        }
        Releasing
    }
}

impl Drop for Releasing {
    fn drop(&mut self) {
        if let Ok(mut count) = RELEASING.0.lock() {
            *count = count.saturating_sub(1);
        }
        RELEASING.1.notify_all();
    }
}

/// Waits, at most `wait`, for every hub let go of by now to end its
/// registrations (and, unless a domain still holds it, close its
/// connection), so that a run that ends leaves libvirtd no callbacks to
/// clean up after it (its cleanup of a client that went with callbacks
/// still registered warned "could not find event callback", and libvirt
/// 9.0's libvirtd once crashed just after); a host that stopped answering
/// is not waited for longer.
pub fn released_within(wait: Duration) {
    let Ok(count) = RELEASING.0.lock() else { return };
    let _ = RELEASING.1.wait_timeout_while(count, wait, |count| *count > 0);
}

/// A connection's QEMU-event, lifecycle and close callbacks, for one
/// domain or (null) every domain, each with its own [`Feed`]; deregistered
/// when dropped, and libvirt then frees each Feed with `free_feed`.
pub struct Registered {
    connect: Connect,
    monitor_events: c_int,
    lifecycle: c_int,
    /// Whether the close callback is ours (a connection has one at most).
    close: bool,
}

impl Registered {
    /// Registers all three on `connect` for `domain`, each with a Box<Feed>
    /// from `feed`. The close callback's Feed is freed here if libvirt
    /// refuses it (it then keeps nothing); the lifecycle callback still
    /// sees the domain stop. A failed event registration's stays leaked
    /// ([`forgo_feed`]).
    ///
    /// # Safety
    /// `connect` is live, and `domain` is live or null.
    unsafe fn new(
        connect: &Connect,
        domain: sys::virDomainPtr,
        feed: impl Fn() -> *mut c_void,
    ) -> Result<Registered, String> {
        // SAFETY: as the caller promises; each feed is a leaked Box<Feed>
        // that libvirt hands back to the callback and, when the
        // registration ends, to `free_feed`.
        unsafe {
            let conn = connect.as_ptr();
            let (monitor_events, lifecycle) = register_both(conn, domain, &feed)?;
            let opaque = feed();
            let close = sys::virConnectRegisterCloseCallback(conn, Some(on_close), opaque, Some(free_feed)) >= 0;
            if !close {
                free_feed(opaque);
            }
            Ok(Registered { connect: connect.clone(), monitor_events, lifecycle, close })
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // SAFETY: the ids came from the registrations on this connection,
        // which `self.connect` keeps alive.
        unsafe {
            let conn = self.connect.as_ptr();
            sys::virConnectDomainQemuMonitorEventDeregister(conn, self.monitor_events);
            sys::virConnectDomainEventDeregisterAny(conn, self.lifecycle);
            if self.close {
                sys::virConnectUnregisterCloseCallback(conn, Some(on_close));
            }
        }
    }
}

/// A domain's news: its own callbacks, deregistered when dropped, or its
/// route on a shared connection's [`Hub`], ended when dropped.
pub enum Subscription {
    Alone {
        /// Held for its drop.
        _callbacks: Registered,
    },
    Routed {
        hub: Arc<Hub>,
        /// The domain's name.
        name: String,
        /// The number of this route among the domain's.
        id: u64,
    },
}

/// Registers the three callbacks for a domain whose connection serves it
/// alone, each with its own [`Feed`] that libvirt frees when the callback
/// is deregistered. (A shared connection's are its [`Hub`]'s.)
pub fn subscribe(
    connect: &Connect,
    domain: &Domain,
    tx: &SyncSender<Incoming>,
    uri: &str,
) -> Result<Subscription, String> {
    let one = || Box::into_raw(Box::new(Feed { to: To::One(tx.clone()), uri: uri.to_string() })).cast::<c_void>();
    // SAFETY: the connection and domain pointers are valid for the calls
    // (borrowed from live wrappers).
    Ok(Subscription::Alone { _callbacks: unsafe { Registered::new(connect, domain.as_ptr(), one)? } })
}

/// Registers QEMU events and lifecycle events for `domain` (null: every
/// domain) on `conn`, each with a Box<Feed> from `feed`; both or neither.
///
/// # Safety
/// As for [`register_monitor_events`].
unsafe fn register_both(
    conn: sys::virConnectPtr,
    domain: sys::virDomainPtr,
    feed: &impl Fn() -> *mut c_void,
) -> Result<(c_int, c_int), String> {
    // SAFETY: as the caller promises.
    unsafe {
        let monitor_events = register_monitor_events(conn, domain, feed())?;
        match register_lifecycle(conn, domain, feed()) {
            Ok(lifecycle) => Ok((monitor_events, lifecycle)),
            Err(why) => {
                sys::virConnectDomainQemuMonitorEventDeregister(conn, monitor_events);
                Err(why)
            }
        }
    }
}

/// Registers `on_lifecycle` for `domain` (null: every domain) on `conn`
/// with `opaque`, a leaked Box<Feed>, which stays leaked on failure
/// ([`forgo_feed`]).
///
/// # Safety
/// As for [`register_monitor_events`].
unsafe fn register_lifecycle(
    conn: sys::virConnectPtr,
    domain: sys::virDomainPtr,
    opaque: *mut c_void,
) -> Result<c_int, String> {
    let callback: unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, c_int, c_int, *mut c_void) = on_lifecycle;
    // SAFETY: as the caller promises; libvirt calls the callback with the
    // lifecycle signature, which the generic type erases.
    unsafe {
        let id = sys::virConnectDomainEventRegisterAny(
            conn,
            domain,
            sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int,
            Some(std::mem::transmute::<
                unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, c_int, c_int, *mut c_void),
                unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void),
            >(callback)),
            opaque,
            Some(free_feed),
        );
        if id < 0 {
            forgo_feed(opaque);
            return Err(last_error("cannot subscribe to the domain's lifecycle"));
        }
        Ok(id)
    }
}

/// Registers `on_monitor_event` for `domain` (null: every domain) on
/// `conn` with `opaque`, a leaked Box<Feed>, which stays leaked on
/// failure ([`forgo_feed`]).
///
/// # Safety
/// `conn` and `domain` (unless null) are live; `opaque` is a Box<Feed>
/// leaked for libvirt to keep.
unsafe fn register_monitor_events(
    conn: sys::virConnectPtr,
    domain: sys::virDomainPtr,
    opaque: *mut c_void,
) -> Result<c_int, String> {
    // SAFETY: as the caller promises; libvirt keeps `opaque` until the
    // registration ends and frees it with `free_feed`.
    unsafe {
        let id = sys::virConnectDomainQemuMonitorEventRegister(
            conn,
            domain,
            std::ptr::null(),
            Some(on_monitor_event),
            opaque,
            Some(free_feed),
            0,
        );
        if id < 0 {
            forgo_feed(opaque);
            return Err(last_error("cannot subscribe to the QEMU events"));
        }
        Ok(id)
    }
}

impl Subscription {
    /// The hub of a shared connection, without keeping it.
    pub fn hub(&self) -> Option<std::sync::Weak<Hub>> {
        match self {
            Subscription::Alone { .. } => None,
            Subscription::Routed { hub, .. } => Some(Arc::downgrade(hub)),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Subscription::Routed { hub, name, id } = self {
            hub.unroute(name, *id);
        }
    }
}

/// The last libvirt error of this thread, as a sentence.
fn last_error(what: &str) -> String {
    format!("{what}: {}", visible::line(virt::error::Error::last_error().message()))
}

/// A C string libvirt passed us, if any.
///
/// # Safety
/// `text` is null or points to a NUL-terminated string valid for the call.
unsafe fn text<'a>(text: *const c_char) -> Option<&'a str> {
    // SAFETY: as the caller promises.
    (!text.is_null()).then(|| unsafe { CStr::from_ptr(text) }.to_str().ok()).flatten()
}

/// A QEMU monitor event, rebuilt as QEMU sent it.
unsafe extern "C" fn on_monitor_event(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: *const c_char,
    seconds: c_longlong,
    micros: c_uint,
    details: *const c_char,
    opaque: *mut c_void,
) {
    // SAFETY: libvirt passes the opaque pointer we registered (a live
    // Box<Feed>, freed only after deregistration) and NUL-terminated
    // strings valid during the call.
    let (feed, event, details) = unsafe { (&*opaque.cast::<Feed>(), text(event), text(details)) };
    let mut message = Map::new();
    let mut timestamp = Map::new();
    timestamp.insert("seconds".into(), Value::from(seconds));
    timestamp.insert("microseconds".into(), Value::from(micros));
    message.insert("timestamp".into(), Value::Object(timestamp));
    message.insert("event".into(), Value::from(event.unwrap_or_default()));
    let details = details.filter(|d| !bounds::too_many_values(d.as_bytes()));
    if let Some(data) = details.and_then(|d| serde_json::from_str::<Value>(d).ok()) {
        message.insert("data".into(), data);
    }
    let message = Value::Object(message);
    // SAFETY: libvirt passes a live domain.
    for tx in unsafe { feed.to.of(dom) } {
        let _ = tx.send(Incoming::Message(message.clone()));
    }
}

/// The inboxes of `dom` on a shared connection, taken out of the lock
/// before anything is sent: a full inbox waits for its reader, who may be
/// ending its route.
///
/// # Safety
/// `dom` is a live domain (libvirt's, passed to a callback).
unsafe fn inboxes(routes: &Routes, dom: sys::virDomainPtr) -> Vec<SyncSender<Incoming>> {
    // SAFETY: the domain holds its name (no call to libvirtd); null if it
    // has none.
    let name = unsafe { text(sys::virDomainGetName(dom)) };
    match (name, routes.lock()) {
        (Some(name), Ok(routes)) => routes.get(name).into_iter().flatten().map(|(_, tx)| tx.clone()).collect(),
        _ => Vec::new(),
    }
}

/// The domain stopped: QEMU is gone, as a socket's EOF says.
unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: c_int,
    _detail: c_int,
    opaque: *mut c_void,
) {
    // SAFETY: the opaque pointer is our live Box<Feed>, as registered.
    let feed = unsafe { &*opaque.cast::<Feed>() };
    if event != sys::VIR_DOMAIN_EVENT_STOPPED as c_int {
        return;
    }
    // SAFETY: libvirt passes a live domain.
    for tx in unsafe { feed.to.of(dom) } {
        let _ = tx.send(Incoming::End(ClientError::Closed));
    }
}

/// The connection to libvirt closed under us.
unsafe extern "C" fn on_close(_conn: sys::virConnectPtr, _reason: c_int, opaque: *mut c_void) {
    // SAFETY: the opaque pointer is our live Box<Feed>, as registered.
    let feed = unsafe { &*opaque.cast::<Feed>() };
    let lost = format!("the connection to libvirt ({}) was lost", feed.uri);
    for tx in feed.to.every() {
        let _ = tx.send(Incoming::End(ClientError::Io(lost.clone())));
    }
}

/// A [`Feed`] whose event registration failed, left to libvirt: it does
/// not free one then, unless a dispatch of the connection's events was
/// under way, when it frees it afterwards (libvirt 9.0's
/// `virObjectEventStateDeregisterID`). Freeing it here could free it
/// twice; a few bytes stay leaked instead.
fn forgo_feed(_: *mut c_void) {}

/// Takes back a [`Feed`] when libvirt is done with it.
unsafe extern "C" fn free_feed(opaque: *mut c_void) {
    // SAFETY: every opaque pointer we register is a Box<Feed> leaked by
    // `subscribe` or `Hub::register`, and libvirt frees each at most once.
    drop(unsafe { Box::from_raw(opaque.cast::<Feed>()) });
}
