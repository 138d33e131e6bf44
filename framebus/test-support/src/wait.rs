//! Bounded polling.

use std::time::{Duration, Instant};

/// Poll `cond` every 100 ms for up to `limit`; whether it became true.
/// Callers assert on the result with a message saying what never
/// happened (a watchdog, not a timing assertion).
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
