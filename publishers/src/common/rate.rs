//! Frame-rate reduction by capture timestamp.
//!
//! Frames are picked by their capture time, not by counting (counting drifts
//! when the source skips or jitters). A frame is accepted when its timestamp
//! reaches the next due time minus a quarter interval of tolerance; the due
//! time then advances by one output interval. When the source falls far
//! behind (or its clock jumps, e.g. a restarted producer), the schedule
//! restarts from the frame at hand.

/// Picks frames for a target output rate.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    interval_ns: u64,
    next_due: Option<u64>,
}

impl RateLimiter {
    /// A limiter for `fps` output frames per second; `fps <= 0` (or not
    /// finite) accepts every frame.
    pub fn new(fps: f64) -> RateLimiter {
        let interval_ns = if fps.is_finite() && fps > 0.0 {
            (1e9 / fps) as u64
        } else {
            0
        };
        RateLimiter {
            interval_ns,
            next_due: None,
        }
    }

    /// Output interval in nanoseconds (0: every frame).
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// Whether the frame captured at `ts_ns` (monotonic) should be output.
    pub fn accept(&mut self, ts_ns: u64) -> bool {
        if self.interval_ns == 0 {
            return true;
        }
        let tolerance = self.interval_ns / 4;
        match self.next_due {
            Some(due) if ts_ns + tolerance < due => {
                // Early, unless the clock went backwards by more than one
                // interval (new producer): then restart the schedule.
                if due - ts_ns > 2 * self.interval_ns {
                    self.next_due = Some(ts_ns + self.interval_ns);
                    return true;
                }
                false
            }
            Some(due) if ts_ns < due + self.interval_ns => {
                self.next_due = Some(due + self.interval_ns);
                true
            }
            // First frame, or more than an interval late: restart.
            _ => {
                self.next_due = Some(ts_ns + self.interval_ns);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimiter;

    fn run(src_fps: f64, dst_fps: f64, secs: f64) -> usize {
        let mut r = RateLimiter::new(dst_fps);
        let n = (src_fps * secs) as u64;
        let step = 1e9 / src_fps;
        (0..n)
            .filter(|i| {
                // +-1 ms of jitter
                let jitter = if i % 2 == 0 { 1_000_000 } else { 0 };
                r.accept(1_000_000_000 + (*i as f64 * step) as u64 + jitter)
            })
            .count()
    }

    #[test]
    fn halves_and_keeps() {
        assert_eq!(run(30.0, 15.0, 10.0), 150);
        assert_eq!(run(30.0, 30.0, 10.0), 300);
        assert_eq!(run(60.0, 30.0, 10.0), 300);
        assert_eq!(run(15.0, 30.0, 10.0), 150);
        let n = run(30.0, 25.0, 10.0);
        assert!((245..=255).contains(&n), "{n}");
    }

    #[test]
    fn clock_jump_restarts() {
        let mut r = RateLimiter::new(10.0);
        assert!(r.accept(10_000_000_000));
        assert!(!r.accept(10_010_000_000));
        assert!(r.accept(5_000_000_000));
        assert!(r.accept(5_100_000_000));
    }
}
