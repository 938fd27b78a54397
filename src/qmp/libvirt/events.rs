//! libvirt's event loop and the callbacks that feed the monitor's inbox:
//! QEMU monitor events as they happen, the domain stopping, and the
//! connection closing. virt 0.5 wraps none of these callbacks, so this is
//! the one place in qmpsh that calls libvirt's C API itself.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_longlong, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use serde_json::{Map, Value};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

use crate::bounds;
use crate::qmp::ClientError;
use crate::qmp::Incoming;
use crate::qmp::libvirt::Sharing;
use crate::visible;

/// Starts libvirt's default event loop in a thread of its own, once per
/// process. It must run before a connection is opened for the connection
/// to deliver events.
pub fn start_loop() -> Result<(), String> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            // qmpsh reports libvirt's errors itself, in one line each.
            virt::error::clear_error_callback();
            virt::event::event_register_default_impl()
                .map_err(|e| format!("cannot start libvirt's event loop: {}", visible::line(e.message())))?;
            thread::Builder::new()
                .name("libvirt-events".into())
                .spawn(|| while virt::event::event_run_default_impl().is_ok() {})
                .map(|_| ())
                .map_err(|e| format!("cannot start libvirt's event thread: {e}"))
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
    /// registered once for all of them, see [`subscribe`]).
    ByDomain(Arc<Routes>),
}

impl To {
    fn one(&self) -> Option<&SyncSender<Incoming>> {
        match self {
            To::One(tx) => Some(tx),
            To::ByDomain(_) => None,
        }
    }
}

/// The inboxes of a shared connection's domains, by domain name, each with
/// the number of its subscription.
type Routes = Mutex<HashMap<String, Vec<(u64, SyncSender<Incoming>)>>>;

/// A shared connection's one registration of QEMU events and one of
/// lifecycle events, for every domain, and where each domain's go.
struct Hub {
    connect: Connect,
    callback: c_int,
    lifecycle: c_int,
    routes: Arc<Routes>,
}

/// The hubs of the shared connections, by connection pointer.
fn hubs() -> &'static Mutex<HashMap<usize, Hub>> {
    static HUBS: OnceLock<Mutex<HashMap<usize, Hub>>> = OnceLock::new();
    HUBS.get_or_init(Mutex::default)
}

/// The callbacks registered for one domain; deregistered when dropped.
pub struct Subscription {
    connect: Connect,
    /// The domain's own registration of QEMU events, unless its
    /// connection is shared.
    monitor_events: Option<c_int>,
    /// On a shared connection: the hub's key, the domain's name and the
    /// number of this subscription's route.
    route: Option<(usize, String, u64)>,
    /// The domain's own lifecycle registration, unless its connection is
    /// shared.
    lifecycle: Option<c_int>,
    /// Whether this subscription holds the connection's close callback
    /// (a connection has one at most).
    close: bool,
}

/// Registers the three callbacks, each with its own [`Feed`] that libvirt
/// frees when the callback is deregistered.
///
/// A connection that serves several domains ([`Sharing::Shared`]) differs
/// twice.
/// It has no close callback: libvirt allows one, and warns on stderr of a
/// second. And its QEMU events are registered for every domain, each
/// feed taking its own domain's: libvirt 9.0's remote driver asks the
/// server for a connection's QEMU events once, for the first domain
/// registered, so registrations for the others never got one (measured:
/// three domains on one connection, `virsh resume` on two, no RESUME).
pub fn subscribe(
    connect: &Connect,
    domain: &Domain,
    tx: &SyncSender<Incoming>,
    uri: &str,
    sharing: Sharing,
) -> Result<Subscription, String> {
    let one = || Box::into_raw(Box::new(Feed { to: To::One(tx.clone()), uri: uri.to_string() })).cast::<c_void>();
    if sharing == Sharing::Shared {
        let route = Some(route(connect, domain, tx, uri)?);
        return Ok(Subscription {
            connect: connect.clone(),
            monitor_events: None,
            route,
            lifecycle: None,
            close: false,
        });
    }
    // SAFETY: the connection and domain pointers are valid for the calls
    // (borrowed from live wrappers); `one()` is a leaked Box<Feed> that
    // libvirt hands back to the callback and, when the registration ends,
    // to `free_feed`, which takes it back. On failure libvirt does not keep
    // the pointer, so it is freed here.
    unsafe {
        let conn = connect.as_ptr();
        let (monitor_events, lifecycle) = register_both(conn, domain.as_ptr(), one)?;
        let opaque = one();
        // On failure the lifecycle callback still sees the domain stop.
        let close = sys::virConnectRegisterCloseCallback(conn, Some(on_close), opaque, Some(free_feed)) >= 0;
        if !close {
            free_feed(opaque);
        }
        Ok(Subscription {
            connect: connect.clone(),
            monitor_events: Some(monitor_events),
            route: None,
            lifecycle: Some(lifecycle),
            close,
        })
    }
}

/// Registers QEMU events and lifecycle events for `domain` (null: every
/// domain) on `conn`, each with a Box<Feed> from `feed`; both or neither.
///
/// # Safety
/// As for [`register_monitor_events`].
unsafe fn register_both(
    conn: sys::virConnectPtr,
    domain: sys::virDomainPtr,
    feed: impl Fn() -> *mut c_void,
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
/// with `opaque`, a leaked Box<Feed>, which is freed on failure.
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
            free_feed(opaque);
            return Err(last_error("cannot subscribe to the domain's lifecycle"));
        }
        Ok(id)
    }
}

/// Registers `on_monitor_event` for `domain` (null: every domain) on
/// `conn` with `opaque`, a leaked Box<Feed>, which is freed on failure.
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
    // registration ends and frees it with `free_feed`, or not at all on
    // failure, when it is freed here.
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
            free_feed(opaque);
            return Err(last_error("cannot subscribe to the QEMU events"));
        }
        Ok(id)
    }
}

/// Routes `domain`'s QEMU events on a shared `connect` to `tx`, through
/// the connection's hub (registered with its first domain).
fn route(
    connect: &Connect,
    domain: &Domain,
    tx: &SyncSender<Incoming>,
    uri: &str,
) -> Result<(usize, String, u64), String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = domain.name().map_err(|e| format!("cannot name the domain: {}", visible::line(e.message())))?;
    // SAFETY: only the pointer's value is taken, as the hub's key.
    let key = unsafe { connect.as_ptr() } as usize;
    let mut hubs = hubs().lock().map_err(|_| "the event hubs are poisoned".to_string())?;
    if let std::collections::hash_map::Entry::Vacant(vacant) = hubs.entry(key) {
        let routes = Arc::new(Routes::default());
        let feed = || {
            let feed = Feed { to: To::ByDomain(Arc::clone(&routes)), uri: uri.to_string() };
            Box::into_raw(Box::new(feed)).cast::<c_void>()
        };
        // SAFETY: the connection is live (borrowed from its wrapper, which
        // the hub keeps); a null domain means every domain.
        let (callback, lifecycle) = unsafe {
            let conn = connect.as_ptr();
            register_both(conn, std::ptr::null_mut(), feed)?
        };
        vacant.insert(Hub { connect: connect.clone(), callback, lifecycle, routes });
    }
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    if let Some(hub) = hubs.get(&key)
        && let Ok(mut routes) = hub.routes.lock()
    {
        routes.entry(name.clone()).or_default().push((id, tx.clone()));
    }
    Ok((key, name, id))
}

/// Ends a [`route`]; the hub's registration ends with its last route.
fn unroute(route: Option<&(usize, String, u64)>) {
    let Some((key, name, id)) = route else { return };
    let Ok(mut hubs) = hubs().lock() else { return };
    let Some(hub) = hubs.get(key) else { return };
    let empty = match hub.routes.lock() {
        Ok(mut routes) => {
            if let Some(inboxes) = routes.get_mut(name) {
                inboxes.retain(|(route, _)| route != id);
                if inboxes.is_empty() {
                    routes.remove(name);
                }
            }
            routes.is_empty()
        }
        Err(_) => false,
    };
    if empty && let Some(hub) = hubs.remove(key) {
        // SAFETY: the id came from the registration on this connection,
        // which the hub kept alive until now.
        unsafe {
            sys::virConnectDomainQemuMonitorEventDeregister(hub.connect.as_ptr(), hub.callback);
            sys::virConnectDomainEventDeregisterAny(hub.connect.as_ptr(), hub.lifecycle);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // SAFETY: the ids came from the registrations on this connection,
        // which `self.connect` keeps alive.
        unsafe {
            let conn = self.connect.as_ptr();
            if let Some(id) = self.monitor_events {
                sys::virConnectDomainQemuMonitorEventDeregister(conn, id);
            }
            if let Some(id) = self.lifecycle {
                sys::virConnectDomainEventDeregisterAny(conn, id);
            }
            if self.close {
                sys::virConnectUnregisterCloseCallback(conn, Some(on_close));
            }
        }
        unroute(self.route.as_ref());
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
    match &feed.to {
        To::One(tx) => {
            let _ = tx.send(Incoming::Message(message));
        }
        To::ByDomain(routes) => {
            // SAFETY: libvirt passes a live domain.
            for tx in unsafe { inboxes(routes, dom) } {
                let _ = tx.send(Incoming::Message(message.clone()));
            }
        }
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
    let inboxes = match &feed.to {
        To::One(tx) => vec![tx.clone()],
        // SAFETY: libvirt passes a live domain.
        To::ByDomain(routes) => unsafe { inboxes(routes, dom) },
    };
    for tx in inboxes {
        let _ = tx.send(Incoming::End(ClientError::Closed));
    }
}

/// The connection to libvirt closed under us.
unsafe extern "C" fn on_close(_conn: sys::virConnectPtr, _reason: c_int, opaque: *mut c_void) {
    // SAFETY: the opaque pointer is our live Box<Feed>, as registered.
    let feed = unsafe { &*opaque.cast::<Feed>() };
    let lost = format!("the connection to libvirt ({}) was lost", feed.uri);
    if let Some(tx) = feed.to.one() {
        let _ = tx.send(Incoming::End(ClientError::Io(lost)));
    }
}

/// Takes back a [`Feed`] when libvirt is done with it.
unsafe extern "C" fn free_feed(opaque: *mut c_void) {
    // SAFETY: every opaque pointer we register is a Box<Feed> leaked by
    // `subscribe`, and libvirt frees each exactly once.
    drop(unsafe { Box::from_raw(opaque.cast::<Feed>()) });
}
