//! Per-stream statistics: counters, measured rates, encode time p50.
//!
//! Plain atomics and small mutex-guarded windows; cheap enough to update on
//! every frame. Exporters (JSON status, Prometheus) read [`StreamStats::snapshot`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

/// Window over which rates are measured.
const RATE_WINDOW: Duration = Duration::from_secs(2);
/// Encode-time samples kept for the median.
const ENCODE_SAMPLES: usize = 120;

/// Counts events and reports their rate over the last two seconds.
#[derive(Debug, Default)]
pub struct RateMeter {
    times: Mutex<VecDeque<Instant>>,
}

impl RateMeter {
    /// Record one event now.
    pub fn record(&self) {
        let now = Instant::now();
        let mut t = self.times.lock();
        t.push_back(now);
        while t
            .front()
            .is_some_and(|f| now.duration_since(*f) > RATE_WINDOW)
        {
            t.pop_front();
        }
    }

    /// Events per second over the last window (0 when idle).
    pub fn per_second(&self) -> f64 {
        let now = Instant::now();
        let mut t = self.times.lock();
        while t
            .front()
            .is_some_and(|f| now.duration_since(*f) > RATE_WINDOW)
        {
            t.pop_front();
        }
        if t.len() < 2 {
            return 0.0;
        }
        t.len() as f64 / RATE_WINDOW.as_secs_f64()
    }
}

/// Statistics of one (bus, profile) stream. Share it with `Arc`.
#[derive(Debug, Default)]
pub struct StreamStats {
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    dropped_slow: AtomicU64,
    encode_errors: AtomicU64,
    bytes_out: AtomicU64,
    bytes_sent: AtomicU64,
    in_rate: RateMeter,
    out_rate: RateMeter,
    encode_us: Mutex<VecDeque<u32>>,
}

/// A copy of a stream's statistics at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StatsSnapshot {
    /// Bus frames the encoder looked at.
    pub frames_in: u64,
    /// Frames the encoder produced.
    pub frames_out: u64,
    /// Frames viewers skipped because they were not ready (slow viewers).
    pub dropped_slow: u64,
    /// Frames that failed to scale or encode.
    pub encode_errors: u64,
    /// Bytes the encoder produced.
    pub bytes_out: u64,
    /// Bytes written to viewers' sockets (response headers and every part,
    /// once per viewer), as accepted by the kernel.
    pub bytes_sent: u64,
    /// Bus frames per second seen (last 2 s).
    pub input_fps: f64,
    /// Encoded frames per second (last 2 s).
    pub output_fps: f64,
    /// Median scale+encode time of the last 120 frames, milliseconds.
    pub encode_ms_p50: f64,
}

impl StreamStats {
    /// One bus frame seen.
    pub fn frame_in(&self) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        self.in_rate.record();
    }

    /// One frame produced (`bytes` long, `encode` taken to make it).
    pub fn frame_out(&self, bytes: usize, encode: Duration) {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        self.out_rate.record();
        let mut e = self.encode_us.lock();
        if e.len() == ENCODE_SAMPLES {
            e.pop_front();
        }
        e.push_back(encode.as_micros().min(u32::MAX as u128) as u32);
    }

    /// A viewer skipped `n` frames.
    pub fn dropped_slow(&self, n: u64) {
        self.dropped_slow.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` bytes were written to a viewer's socket.
    pub fn sent(&self, n: u64) {
        self.bytes_sent.fetch_add(n, Ordering::Relaxed);
    }

    /// One frame failed to encode.
    pub fn encode_error(&self) {
        self.encode_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Read everything.
    pub fn snapshot(&self) -> StatsSnapshot {
        let p50 = {
            let mut v: Vec<u32> = self.encode_us.lock().iter().copied().collect();
            v.sort_unstable();
            v.get(v.len() / 2).map_or(0.0, |us| *us as f64 / 1000.0)
        };
        StatsSnapshot {
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
            dropped_slow: self.dropped_slow.load(Ordering::Relaxed),
            encode_errors: self.encode_errors.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            input_fps: self.in_rate.per_second(),
            output_fps: self.out_rate.per_second(),
            encode_ms_p50: p50,
        }
    }
}
