//! libvirt's event loop and the callbacks that feed the monitor's inbox:
//! QEMU monitor events as they happen, the domain stopping, and the
//! connection closing. virt 0.5 wraps none of these callbacks, so this is
//! the one place in qmpsh that calls libvirt's C API itself.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_longlong, c_uint, c_void};
use std::sync::OnceLock;
use std::sync::mpsc::SyncSender;
use std::thread;

use serde_json::{Map, Value};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

use crate::bounds;
use crate::qmp::ClientError;
use crate::qmp::Incoming;
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
    tx: SyncSender<Incoming>,
    uri: String,
}

/// The callbacks registered for one domain; deregistered when dropped.
pub struct Subscription {
    connect: Connect,
    monitor_events: c_int,
    lifecycle: c_int,
    /// Whether this subscription holds the connection's close callback
    /// (a connection has one at most).
    close: bool,
}

/// Registers the three callbacks, each with its own [`Feed`] that libvirt
/// frees when the callback is deregistered; the connection's close
/// callback only when `close` (a connection that serves several domains
/// has it for none: libvirt allows one, and warns on stderr of a second).
pub fn subscribe(
    connect: &Connect,
    domain: &Domain,
    tx: &SyncSender<Incoming>,
    uri: &str,
    close: bool,
) -> Result<Subscription, String> {
    let feed = || Box::into_raw(Box::new(Feed { tx: tx.clone(), uri: uri.to_string() })).cast::<c_void>();
    // SAFETY: the connection and domain pointers are valid for the calls
    // (borrowed from live wrappers); `feed()` is a leaked Box<Feed> that
    // libvirt hands back to the callback and, when the registration ends,
    // to `free_feed`, which takes it back. On failure libvirt does not keep
    // the pointer, so it is freed here.
    let (monitor_events, lifecycle, close) = unsafe {
        let conn = connect.as_ptr();
        let opaque = feed();
        let monitor_events = sys::virConnectDomainQemuMonitorEventRegister(
            conn,
            domain.as_ptr(),
            std::ptr::null(),
            Some(on_monitor_event),
            opaque,
            Some(free_feed),
            0,
        );
        if monitor_events < 0 {
            free_feed(opaque);
            return Err(last_error("cannot subscribe to the domain's QEMU events"));
        }
        let opaque = feed();
        let lifecycle_callback: unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, c_int, c_int, *mut c_void) =
            on_lifecycle;
        let lifecycle = sys::virConnectDomainEventRegisterAny(
            conn,
            domain.as_ptr(),
            sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int,
            // libvirt calls it with the lifecycle signature, which the
            // generic type erases.
            Some(std::mem::transmute::<
                unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, c_int, c_int, *mut c_void),
                unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void),
            >(lifecycle_callback)),
            opaque,
            Some(free_feed),
        );
        if lifecycle < 0 {
            free_feed(opaque);
            sys::virConnectDomainQemuMonitorEventDeregister(conn, monitor_events);
            return Err(last_error("cannot subscribe to the domain's lifecycle"));
        }
        let mut close = close;
        if close {
            let opaque = feed();
            if sys::virConnectRegisterCloseCallback(conn, Some(on_close), opaque, Some(free_feed)) < 0 {
                // The lifecycle callback still sees the domain stop.
                free_feed(opaque);
                close = false;
            }
        }
        (monitor_events, lifecycle, close)
    };
    Ok(Subscription { connect: connect.clone(), monitor_events, lifecycle, close })
}

impl Drop for Subscription {
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
    _dom: sys::virDomainPtr,
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
    let _ = feed.tx.send(Incoming::Message(Value::Object(message)));
}

/// The domain stopped: QEMU is gone, as a socket's EOF says.
unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    _dom: sys::virDomainPtr,
    event: c_int,
    _detail: c_int,
    opaque: *mut c_void,
) {
    // SAFETY: the opaque pointer is our live Box<Feed>, as registered.
    let feed = unsafe { &*opaque.cast::<Feed>() };
    if event == sys::VIR_DOMAIN_EVENT_STOPPED as c_int {
        let _ = feed.tx.send(Incoming::End(ClientError::Closed));
    }
}

/// The connection to libvirt closed under us.
unsafe extern "C" fn on_close(_conn: sys::virConnectPtr, _reason: c_int, opaque: *mut c_void) {
    // SAFETY: the opaque pointer is our live Box<Feed>, as registered.
    let feed = unsafe { &*opaque.cast::<Feed>() };
    let lost = format!("the connection to libvirt ({}) was lost", feed.uri);
    let _ = feed.tx.send(Incoming::End(ClientError::Io(lost)));
}

/// Takes back a [`Feed`] when libvirt is done with it.
unsafe extern "C" fn free_feed(opaque: *mut c_void) {
    // SAFETY: every opaque pointer we register is a Box<Feed> leaked by
    // `subscribe`, and libvirt frees each exactly once.
    drop(unsafe { Box::from_raw(opaque.cast::<Feed>()) });
}
