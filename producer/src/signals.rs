//! SIGINT/SIGTERM set a flag the run loop polls (every wait in the loop is
//! bounded by 100 ms, so a stop takes well under a second).
//!
//! Under `--config` the supervisor must stop its children before capture
//! stops: it calls [`defer_stop`] first, so a signal only sets the
//! "termination received" flag; the supervisor stops the children and then
//! calls [`request_stop`], which the capture loops see.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static TERM: AtomicBool = AtomicBool::new(false);
static DEFER: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Async-signal-safe: atomic loads and stores only.
    TERM.store(true, Ordering::SeqCst);
    if !DEFER.load(Ordering::SeqCst) {
        STOP.store(true, Ordering::SeqCst);
    }
}

/// From now on a signal only sets [`term_received`]; capture stops at
/// [`request_stop`].
pub fn defer_stop() {
    DEFER.store(true, Ordering::SeqCst);
}

/// Whether SIGINT/SIGTERM arrived.
pub fn term_received() -> bool {
    TERM.load(Ordering::SeqCst)
}

/// Stop the capture loops.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Install the handlers.
pub fn install() -> std::io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `sigaction` is zero-initialisable plain data; the handler
        // only performs an atomic store, which is async-signal-safe.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether a stop was requested.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Sleep up to `d`, in slices of at most 50 ms, returning early on a stop.
pub fn sleep(d: std::time::Duration) {
    let end = std::time::Instant::now() + d;
    while !stop_requested() {
        let now = std::time::Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(std::time::Duration::from_millis(50)));
    }
}
