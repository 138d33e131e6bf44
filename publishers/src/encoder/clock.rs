//! Frame selection and presentation times on the output frame grid.
//!
//! A stream at `fps` presents frames at `origin + k / fps` for increasing
//! integers `k` (the grid; `origin` is the first frame's capture time).
//! Each captured frame (CLOCK_MONOTONIC ns) falls into the cell
//! `k = floor((t - origin) * fps + 1/4)`, i.e. a frame up to a quarter of
//! an interval early still counts for its grid point. The first frame of
//! each new cell is kept and presented at the cell's grid time; later
//! frames of a cell already used are dropped.
//!
//! Why not the capture time itself: a frame-rate reduction by capture time
//! alone can keep two captures less than an interval apart (a 60 fps
//! camera that dropped a frame gives captures at 50 ms and 66.7 ms, both
//! "due" on a 33.3 ms schedule; an encoder that fell behind and skipped
//! frames does the same). Clients place frames on a 1/fps time base and
//! then see two frames on one tick: ffmpeg logs "non monotonically
//! increasing dts", players show one of them for 16 ms. On the grid, two
//! presented frames are always at least one interval apart, and a
//! presentation time differs from its capture time by at most 3/4 of an
//! interval (the RTCP sender reports map the same clock, so their error
//! is bounded the same way).
//!
//! The capture clock is monotonic, so it never goes backwards; should a
//! source hand out times that do (more than a second back), the grid is
//! moved so that presentation times keep increasing.

/// Maps capture times to grid times, dropping frames of used cells.
#[derive(Clone, Debug)]
pub struct FrameClock {
    fps: u32,
    /// Grid origin (ns) and index of the last cell used.
    state: Option<(u64, u64)>,
    /// Added to capture times after a backwards jump.
    offset: u64,
}

const NS: u128 = 1_000_000_000;
/// A capture time this far before the last presented one is a clock jump.
const JUMP_BACK_NS: u64 = 1_000_000_000;

impl FrameClock {
    /// A clock for `fps` frames per second (0 is taken as 1).
    pub fn new(fps: u32) -> FrameClock {
        FrameClock {
            fps: fps.max(1),
            state: None,
            offset: 0,
        }
    }

    /// The output rate.
    pub fn fps(&self) -> u32 {
        self.fps
    }

    fn grid(&self, origin: u64, k: u64) -> u64 {
        origin + (u128::from(k) * NS / u128::from(self.fps)) as u64
    }

    /// Changes the output rate; the new grid starts at the last presented
    /// time, so presentation times keep increasing.
    pub fn set_fps(&mut self, fps: u32) {
        let fps = fps.max(1);
        if fps == self.fps {
            return;
        }
        if let Some((origin, k)) = self.state {
            self.state = Some((self.grid(origin, k), 0));
        }
        self.fps = fps;
    }

    /// The presentation time (ns, on the capture clock) for a frame
    /// captured at `capture_ns`, or `None` if the frame is to be dropped.
    pub fn place(&mut self, capture_ns: u64) -> Option<u64> {
        let t = capture_ns.saturating_add(self.offset);
        let Some((origin, last)) = self.state else {
            self.state = Some((t, 0));
            return Some(t);
        };
        let last_time = self.grid(origin, last);
        if t.saturating_add(JUMP_BACK_NS) < last_time {
            // The source's clock went back: continue the grid from here.
            let next = self.grid(origin, last + 1);
            self.offset = self.offset.wrapping_add(next - t);
            self.state = Some((origin, last + 1));
            return Some(next);
        }
        let since = u128::from(t.checked_sub(origin)?);
        let k = ((since * u128::from(self.fps) + NS / 4) / NS) as u64;
        if k <= last {
            return None;
        }
        self.state = Some((origin, k));
        Some(self.grid(origin, k))
    }
}

#[cfg(test)]
mod tests {
    use super::FrameClock;

    const MS: u64 = 1_000_000;

    /// Feeds capture times; returns the presented times.
    fn present(clock: &mut FrameClock, captures: impl IntoIterator<Item = u64>) -> Vec<u64> {
        captures
            .into_iter()
            .filter_map(|t| clock.place(t))
            .collect()
    }

    fn assert_on_grid(times: &[u64], fps: u32) {
        let interval = 1_000_000_000 / u64::from(fps);
        for w in times.windows(2) {
            let d = w[1] - w[0];
            assert!(d + 1 >= interval, "{d} ns between frames: {times:?}");
            // A whole number of intervals (within rounding of 1/fps).
            let r = d % interval;
            assert!(r <= 2 || interval - r <= 2, "off grid by {r}: {times:?}");
        }
    }

    #[test]
    fn same_rate_with_jitter_keeps_every_frame() {
        let mut c = FrameClock::new(30);
        let base = 5_000 * MS;
        let caps = (0..300u64).map(|i| base + i * 1_000_000_000 / 30 + (i % 3) * 3 * MS);
        let out = present(&mut c, caps);
        assert_eq!(out.len(), 300);
        assert_on_grid(&out, 30);
    }

    #[test]
    fn dropping_60fps_camera_at_30fps_stays_on_grid() {
        let mut c = FrameClock::new(30);
        let caps = (0..600u64)
            .filter(|i| (i + 1) % 3 != 0)
            .map(|i| 1_000 * MS + i * 1_000_000_000 / 60);
        let out = present(&mut c, caps);
        assert_on_grid(&out, 30);
        // 400 captures over 10 s: every grid point that has a capture
        // near it is used (two in three).
        assert!((190..=310).contains(&out.len()), "{}", out.len());
    }

    #[test]
    fn halves_60_and_converts_50_and_25() {
        for (src, dst, lo, hi) in [
            (60u32, 30u32, 299usize, 301usize),
            (50, 30, 240, 301),
            (25, 30, 249, 251),
            (30, 15, 149, 151),
        ] {
            let mut c = FrameClock::new(dst);
            let caps =
                (0..src * 10).map(|i| 7 * MS + u64::from(i) * 1_000_000_000 / u64::from(src));
            let out = present(&mut c, caps);
            assert!(
                (lo..=hi).contains(&out.len()),
                "{src}->{dst}: {}",
                out.len()
            );
            assert_on_grid(&out, dst);
        }
    }

    #[test]
    fn presentation_is_close_to_capture() {
        let mut c = FrameClock::new(30);
        let interval = 1_000_000_000 / 30;
        for i in 0..1000u64 {
            // 29.97 fps source: the phase drifts through the whole grid.
            let t = 1_000 * MS + i * 1_001_000_000 / 30;
            if let Some(p) = c.place(t) {
                let err = t.abs_diff(p);
                assert!(err <= interval * 3 / 4 + 1, "capture {t} presented {p}");
            }
        }
    }

    #[test]
    fn backwards_clock_keeps_increasing() {
        let mut c = FrameClock::new(30);
        let a = present(&mut c, (0..30u64).map(|i| 100_000 * MS + i * 33_333_334));
        let b = present(&mut c, (0..30u64).map(|i| 10 * MS + i * 33_333_334));
        assert_eq!((a.len(), b.len()), (30, 30));
        let all: Vec<u64> = a.into_iter().chain(b).collect();
        assert_on_grid(&all, 30);
    }

    #[test]
    fn rate_change_continues_from_last_time() {
        let mut c = FrameClock::new(30);
        let a = present(
            &mut c,
            (0..30u64).map(|i| 1_000 * MS + i * 1_000_000_000 / 30),
        );
        c.set_fps(15);
        let last = *a.last().unwrap();
        let b = present(
            &mut c,
            (30..60u64).map(|i| 1_000 * MS + i * 1_000_000_000 / 30),
        );
        assert!(b[0] > last);
        assert_on_grid(&b, 15);
    }
}
