//! Absolute-deadline pacing: frame `n` is due at `t0 + n * den / num`
//! seconds on CLOCK_MONOTONIC, so rounding never accumulates (60.0 fps over
//! a minute, not 59.x). A pacer that falls more than one period behind
//! skips the missed deadlines instead of bursting, and says how many.

use std::time::Duration;

use framebus::{monotonic_ns, Fps};

/// How far behind the pacer catches up instead of skipping.
pub const MAX_CATCH_UP: Duration = Duration::from_millis(250);

/// Paces frames at a fixed rate.
#[derive(Debug)]
pub struct Pacer {
    t0: u64,
    num: u128,
    den: u128,
    n: u64,
}

/// What [`Pacer::wait`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// The next frame is due now; `skipped` deadlines were missed before it.
    Now {
        /// Deadlines skipped because we were late.
        skipped: u64,
    },
    /// The deadline is further away than the timeout.
    NotYet,
}

impl Pacer {
    /// A pacer whose first frame is due now.
    pub fn new(fps: Fps) -> Pacer {
        Pacer {
            t0: monotonic_ns(),
            num: u128::from(fps.num.max(1)),
            den: u128::from(fps.den.max(1)),
            n: 0,
        }
    }

    fn deadline(&self, n: u64) -> u64 {
        self.t0 + (u128::from(n) * self.den * 1_000_000_000 / self.num) as u64
    }

    /// Wait for the next deadline, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Due {
        let now = monotonic_ns();
        let mut skipped = 0;
        // Far behind: skip to the latest deadline passed.
        let period = self.deadline(self.n + 1) - self.deadline(self.n);
        let limit = (MAX_CATCH_UP.as_nanos() as u64).max(period);
        if now > self.deadline(self.n) + limit {
            let behind = (u128::from(now - self.t0) * self.num / (self.den * 1_000_000_000)) as u64;
            skipped = behind - self.n;
            self.n = behind;
        }
        let due = self.deadline(self.n);
        if due > now + timeout.as_nanos() as u64 {
            sleep_until(now + timeout.as_nanos() as u64);
            return Due::NotYet;
        }
        sleep_until(due);
        self.n += 1;
        Due::Now { skipped }
    }
}

/// Sleep until `t` (CLOCK_MONOTONIC ns), absolute, so no drift.
fn sleep_until(t: u64) {
    let ts = libc::timespec {
        tv_sec: (t / 1_000_000_000) as libc::time_t,
        tv_nsec: (t % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: `ts` is a valid timespec; the remainder pointer may be
        // null with TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        // EINTR (a signal): check the clock and go on sleeping if needed;
        // the caller's timeout bounds this anyway.
        if rc != libc::EINTR || monotonic_ns() >= t || crate::signals::stop_requested() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_do_not_drift() {
        let p = Pacer {
            t0: 0,
            num: 60,
            den: 1,
            n: 0,
        };
        assert_eq!(p.deadline(3600), 60_000_000_000);
        let ntsc = Pacer {
            t0: 0,
            num: 30000,
            den: 1001,
            n: 0,
        };
        assert_eq!(ntsc.deadline(30000), 1_001_000_000_000);
    }

    #[test]
    fn slightly_late_pacer_catches_up() {
        let mut p = Pacer::new(Fps::new(1000));
        p.t0 -= 20_000_000; // 20 frames late: within MAX_CATCH_UP
        for _ in 0..20 {
            assert_eq!(p.wait(Duration::ZERO), Due::Now { skipped: 0 });
        }
    }

    #[test]
    fn late_pacer_skips() {
        let mut p = Pacer::new(Fps::new(1000));
        p.t0 -= 500_000_000; // 500 frames late
        match p.wait(Duration::from_millis(100)) {
            Due::Now { skipped } => assert!(skipped >= 499, "{skipped}"),
            Due::NotYet => panic!("a late frame is due"),
        }
    }
}
