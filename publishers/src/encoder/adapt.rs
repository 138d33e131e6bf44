//! Load adaptation: when encoding falls behind the frame interval the
//! encoder steps down, first in frame rate, then in bit rate, and steps
//! back up when the load goes (FR-STR-019).
//!
//! # Steps
//!
//! A [`Ladder`] of [`Level`]s; step 0 is the profile as configured. With a
//! configured rate `f` and bit rate `b`:
//!
//! | step | fps | stream bit rate | encoder told |
//! |---:|---|---|---|
//! | 0 | `f` | `b` | `b` |
//! | 1 | `2f/3` | `2b/3` | `b` |
//! | 2 | `f/2` | `b/2` | `b` |
//! | 3 | `f/3` | `b/3` | `b` |
//! | 4 | `f/3` | `b/6` | `b/2` |
//! | 5 | `f/3` | `b/12` | `b/4` |
//!
//! (30 fps at 4 Mbit/s: 30, 20, 15, 10 fps at 4, 2.67, 2, 1.33 Mbit/s,
//! then 667 and 333 kbit/s.) Frame rates below [`MIN_FPS`], bit-rate
//! steps below a [`MIN_BITRATE`] stream and repeats are left out, so a
//! small profile has fewer steps.
//!
//! Frame rate goes first and keeps the bits of every frame: each frame
//! looks as before and costs the encoder as much, there are fewer of
//! them, so the work and the stream's bit rate fall with the rate. The
//! encoder is not told: x264 with `tune=zerolatency` (no VFR input)
//! budgets bits per frame as `bit rate / configured fps` whatever the
//! frames' timestamps, so a stream at a third of the frames carries a
//! third of the bits without a change (measured: told 1333 kbit/s at
//! 10 fps, x264 wrote ~400 kbit/s, its 44 kbit budget per frame; hardware
//! encoders opened at a fixed rate do the same). Bit rate alone comes
//! second: fewer bits per frame mean less entropy coding, a real saving on
//! a picture that is hard to compress (x264's time per frame grows with
//! the bits it writes), at a visible cost in quality. x264's bit rate is
//! reconfigured in place (no new SPS, no IDR); an encoder that cannot
//! change its bit rate while it runs gets the frame-rate steps only.
//! Picture size is not a step: the encoded bus's header states its width
//! and height once, for the life of the bus, and a new size needs a new
//! encoder, a new SPS and an IDR.
//!
//! # Decisions
//!
//! [`Controller::record`] is fed once per encoded frame with a [`Sample`]:
//! when the encode started (CLOCK_MONOTONIC), how long it took (wall
//! time, so time the process waited for a CPU counts), the frame's
//! capture time, and how many raw frames the loop never took before it
//! (`Frame::skipped`). The frame's *load* is encode time over the output
//! interval of the current step. A frame is *over budget* when its load
//! is above [`Thresholds::over`] (0.9) or encoding started more than
//! [`Thresholds::backlog`] (2) intervals after capture.
//!
//! Samples are judged in windows of [`Thresholds::window`] (1 s). A
//! window's *missed* frames are the frames due in it (its length times
//! the output rate) that were not encoded, as far as the raw frames the
//! loop skipped explain them (`skipped x out_fps / raw_fps`, at most the
//! shortfall). This is the measure that catches a starved process: the
//! raw bus is read latest-first, so after waiting for a CPU the loop
//! takes the newest frame (a small backlog) and encodes it within its
//! time slices (often a small load), and the frames it never took are the
//! only trace of the time it lost. A camera that loses frames never
//! published them, so they are not skipped.
//!
//! * a window in which at least half the frames were over budget, or in
//!   which a quarter ([`Thresholds::missed`]) of the due frames were
//!   missed, steps down one step;
//! * a window is *calm* when its mean load is below [`Thresholds::calm`]
//!   (0.5), at most a tenth of its frames were over budget, and the raw
//!   frames it skipped would have made it miss at most one frame in ten
//!   at the rate of the step above; after
//!   [`Thresholds::up_after`] (5 s) of calm windows in a row the
//!   controller steps up one step, and needs as long again for the next.
//!
//! Why this does not oscillate faster than that: stepping up from a calm
//! step multiplies the load by at most 1.5 (the largest ratio of two
//! neighbouring intervals: 30 to 20 fps, or 15 to 10), and 0.5 x 1.5 is
//! below 0.9; and a calm window already showed that the step above would
//! not have missed frames. So the frames after a step up are not over
//! budget by the measures that stepped down, unless the load itself
//! changed.
//!
//! The controller is pure (no clock, no I/O); [`Adapter`] is the encode
//! loop's hook that measures, applies a change to the output rate, the
//! encoder and the encoded bus's header, and logs it.

use std::time::Duration;

use framebus::{Frame, Writer};

use super::clock::FrameClock;
use super::codec::H264Encoder;

/// Frame-rate steps stop above this rate.
pub const MIN_FPS: u32 = 5;
/// Bit-rate steps stop above this stream bit rate.
pub const MIN_BITRATE: u64 = 100_000;

/// What the encoder produces at one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// Output frames per second.
    pub fps: u32,
    /// The stream's target bit rate, bits per second.
    pub bitrate: u64,
    /// The bit rate the encoder is configured with: the stream's rate at
    /// the configured fps (it budgets bits per frame as its bit rate over
    /// its configured fps).
    pub encoder_bitrate: u64,
}

/// The steps from the configured profile (step 0) down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ladder(Vec<Level>);

impl Ladder {
    /// The steps for a profile of `fps` and `bitrate`; with `bitrate_steps`
    /// false (an encoder whose bit rate cannot change while it runs) only
    /// the frame-rate steps.
    pub fn new(fps: u32, bitrate: u64, bitrate_steps: bool) -> Ladder {
        let fps = fps.max(1);
        let mut steps = vec![Level {
            fps,
            bitrate,
            encoder_bitrate: bitrate,
        }];
        // Integer rounding of f * num / den.
        let scaled = |num: u32, den: u32| (fps * num + den / 2) / den;
        for f in [scaled(2, 3), scaled(1, 2), scaled(1, 3)] {
            let last = steps.last().expect("step 0").fps;
            if f >= MIN_FPS && f < last {
                // The same bits per frame, fewer frames.
                steps.push(Level {
                    fps: f,
                    bitrate: bitrate * u64::from(f) / u64::from(fps),
                    encoder_bitrate: bitrate,
                });
            }
        }
        if bitrate_steps {
            let low = *steps.last().expect("step 0");
            for div in [2, 4] {
                if low.bitrate / div >= MIN_BITRATE {
                    steps.push(Level {
                        fps: low.fps,
                        bitrate: low.bitrate / div,
                        encoder_bitrate: bitrate / div,
                    });
                }
            }
        }
        Ladder(steps)
    }

    /// The level of `step` (the last one for a step past the end).
    pub fn level(&self, step: u32) -> Level {
        let i = (step as usize).min(self.0.len() - 1);
        self.0[i]
    }

    /// The highest step.
    pub fn max_step(&self) -> u32 {
        (self.0.len() - 1) as u32
    }
}

/// When to step; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Load (encode time / interval) above which a frame is over budget.
    pub over: f64,
    /// Capture-to-encode delay, in intervals, above which a frame is over
    /// budget.
    pub backlog: f64,
    /// Share of a window's due frames that, missed, make it over budget.
    pub missed: f64,
    /// Mean load below which a window is calm.
    pub calm: f64,
    /// Length of a judging window.
    pub window: Duration,
    /// Calm time before a step up.
    pub up_after: Duration,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            over: 0.9,
            backlog: 2.0,
            missed: 0.25,
            calm: 0.5,
            window: Duration::from_secs(1),
            up_after: Duration::from_secs(5),
        }
    }
}

/// One encoded frame, as measured by the encode loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When encoding started, CLOCK_MONOTONIC ns.
    pub started_ns: u64,
    /// How long encoding took (wall time), ns.
    pub encode_ns: u64,
    /// The frame's capture time, CLOCK_MONOTONIC ns.
    pub capture_ns: u64,
    /// Raw frames published just before this one that the loop never
    /// took (`Frame::skipped`).
    pub skipped: u64,
}

/// Why the step changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Half a window's frames were over budget, or a quarter of its due
    /// frames were missed.
    Overloaded,
    /// Calm for long enough.
    Recovered,
}

impl Reason {
    /// A word for the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Overloaded => "encoding falls behind the frame interval",
            Reason::Recovered => "load went down",
        }
    }
}

/// A step change and what the window that caused it measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    /// Step before.
    pub from: u32,
    /// Step after.
    pub to: u32,
    /// Why.
    pub reason: Reason,
    /// Mean load of the window (encode time / interval).
    pub load: f64,
    /// Fraction of the window's frames over budget.
    pub over: f64,
    /// Largest capture-to-encode delay in the window, ns.
    pub max_backlog_ns: u64,
    /// Frames due for encoding that the loop missed in the window
    /// (estimated from the raw frames it skipped).
    pub missed: f64,
}

/// Frames seen in the current window.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    start_ns: Option<u64>,
    frames: u32,
    over: u32,
    load_sum: f64,
    max_backlog_ns: u64,
    skipped: u64,
}

/// The step decision; pure (fed the times, no clock of its own).
#[derive(Clone, Debug)]
pub struct Controller {
    ladder: Ladder,
    /// The raw bus's frame rate.
    raw_fps: f64,
    th: Thresholds,
    step: u32,
    window: Window,
    /// Start of the run of calm windows the current one continues.
    calm_since: Option<u64>,
}

impl Controller {
    /// A controller at step 0 of `ladder`, for a raw bus of `raw_fps`.
    pub fn new(ladder: Ladder, raw_fps: f64, th: Thresholds) -> Controller {
        let raw_fps = if raw_fps.is_finite() && raw_fps > 0.0 {
            raw_fps
        } else {
            f64::from(ladder.level(0).fps)
        };
        Controller {
            ladder,
            raw_fps,
            th,
            step: 0,
            window: Window::default(),
            calm_since: None,
        }
    }

    /// The current step.
    pub fn step(&self) -> u32 {
        self.step
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.ladder.level(self.step)
    }

    /// The steps.
    pub fn ladder(&self) -> &Ladder {
        &self.ladder
    }

    /// Takes one frame's measurement; returns the step change it decided,
    /// if any (the new step is already current).
    pub fn record(&mut self, s: Sample) -> Option<Change> {
        let fps = f64::from(self.level().fps);
        let interval = 1e9 / fps;
        let load = s.encode_ns as f64 / interval;
        let backlog_ns = s.started_ns.saturating_sub(s.capture_ns);
        let w = &mut self.window;
        let start = *w.start_ns.get_or_insert(s.started_ns);
        w.frames += 1;
        w.load_sum += load;
        w.max_backlog_ns = w.max_backlog_ns.max(backlog_ns);
        w.skipped += s.skipped;
        if load > self.th.over || backlog_ns as f64 > self.th.backlog * interval {
            w.over += 1;
        }
        let end = s.started_ns.saturating_add(s.encode_ns);
        if end.saturating_sub(start) < self.th.window.as_nanos() as u64 {
            return None;
        }
        // The window is complete: judge it and start the next.
        let w = std::mem::take(&mut self.window);
        let frames = f64::from(w.frames);
        let mean = w.load_sum / frames;
        let over = f64::from(w.over) / frames;
        // Frames due in the window that were not encoded, as far as the
        // raw frames skipped explain them: the share of the skipped frames
        // the output rate wanted, at most the shortfall against the
        // window's length (a source slower than its nominal rate makes a
        // shortfall but skips nothing).
        let due = end.saturating_sub(start) as f64 / 1e9 * fps;
        let rate_share = (fps / self.raw_fps).min(1.0);
        let missed = (w.skipped as f64 * rate_share).min((due - frames).max(0.0));
        let change = |to, reason| Change {
            from: self.step,
            to,
            reason,
            load: mean,
            over,
            max_backlog_ns: w.max_backlog_ns,
            missed,
        };
        if over >= 0.5 || missed >= self.th.missed * due {
            self.calm_since = None;
            if self.step < self.ladder.max_step() {
                let c = change(self.step + 1, Reason::Overloaded);
                self.step += 1;
                return Some(c);
            }
            return None;
        }
        // Calm also asks that the step above would not have missed frames
        // either: a loop that still skips raw frames (all of them not due
        // at this rate) would miss due ones one step up.
        let up_fps = self.ladder.level(self.step.saturating_sub(1)).fps;
        let missed_up = w.skipped as f64 * (f64::from(up_fps) / self.raw_fps).min(1.0);
        if mean < self.th.calm && over <= 0.1 && missed_up <= 0.1 * frames {
            let since = *self.calm_since.get_or_insert(start);
            if self.step > 0 && end.saturating_sub(since) >= self.th.up_after.as_nanos() as u64 {
                self.calm_since = None;
                let c = change(self.step - 1, Reason::Recovered);
                self.step -= 1;
                return Some(c);
            }
        } else {
            self.calm_since = None;
        }
        None
    }
}

/// The encode loop's hook: measures each encode, and applies and reports
/// the controller's step changes.
#[derive(Debug)]
pub struct Adapter {
    controller: Controller,
    enabled: bool,
    out: String,
}

impl Adapter {
    /// Starts at step 0 (`fps`, `bitrate` as configured): the encoder's bit
    /// rate is set back to the configured one (a previous run may have
    /// lowered it) and the bus header says step 0. With `enabled` false
    /// the step stays 0.
    pub fn start(
        fps: u32,
        bitrate: u64,
        raw_fps: f64,
        enabled: bool,
        enc: &mut H264Encoder,
        out: &Writer,
        out_name: &str,
    ) -> Adapter {
        let bitrate_steps = enc.set_bitrate(bitrate);
        let controller = Controller::new(
            Ladder::new(fps, bitrate, bitrate_steps),
            raw_fps,
            Thresholds::default(),
        );
        let a = Adapter {
            controller,
            enabled,
            out: out_name.to_string(),
        };
        let before = a.report(out);
        if before != 0 {
            tracing::info!(
                out = %a.out,
                from = before,
                to = 0,
                to_fps = fps,
                to_kbit = bitrate / 1000,
                "load adaptation: step {before} -> 0: encoding restarts as configured"
            );
        }
        a
    }

    /// After encoding `frame`, started at `started_ns` (CLOCK_MONOTONIC):
    /// measure, and on a step change set the output rate, the encoder's
    /// bit rate and the bus header, and log it.
    pub fn after_encode(
        &mut self,
        frame: &Frame,
        started_ns: u64,
        clock: &mut FrameClock,
        enc: &mut H264Encoder,
        out: &Writer,
    ) {
        if !self.enabled {
            return;
        }
        let now = framebus::monotonic_ns();
        let sample = Sample {
            started_ns,
            encode_ns: now.saturating_sub(started_ns),
            capture_ns: frame.mono_ns(),
            skipped: frame.skipped(),
        };
        let Some(c) = self.controller.record(sample) else {
            return;
        };
        let (from, to) = (self.controller.ladder().level(c.from), self.level());
        // The grid continues from the last presented time: pts stay on it.
        clock.set_fps(to.fps);
        if to.encoder_bitrate != from.encoder_bitrate {
            enc.set_bitrate(to.encoder_bitrate);
        }
        self.report(out);
        tracing::info!(
            out = %self.out,
            from = c.from,
            to = c.to,
            from_fps = from.fps,
            to_fps = to.fps,
            from_kbit = from.bitrate / 1000,
            to_kbit = to.bitrate / 1000,
            load_pct = (c.load * 100.0).round() as u32,
            over_budget_pct = (c.over * 100.0).round() as u32,
            max_backlog_ms = c.max_backlog_ns / 1_000_000,
            missed_frames = c.missed.round() as u64,
            "load adaptation: step {} -> {}: {}",
            c.from,
            c.to,
            c.reason.as_str()
        );
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.controller.level()
    }

    /// Writes the current step to the bus header; the step it said before.
    fn report(&self, out: &Writer) -> u32 {
        let l = self.level();
        out.set_encoder_step(self.controller.step(), l.fps * 1000, l.bitrate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ladder_fps(l: &Ladder) -> Vec<(u32, u64)> {
        (0..=l.max_step())
            .map(|s| (l.level(s).fps, l.level(s).bitrate))
            .collect()
    }

    #[test]
    fn ladders() {
        assert_eq!(
            ladder_fps(&Ladder::new(30, 4_000_000, true)),
            [
                (30, 4_000_000),
                (20, 2_666_666),
                (15, 2_000_000),
                (10, 1_333_333),
                (10, 666_666),
                (10, 333_333)
            ]
        );
        // An encoder that cannot change its bit rate: fps steps only.
        assert_eq!(
            ladder_fps(&Ladder::new(60, 4_000_000, false)),
            [
                (60, 4_000_000),
                (40, 2_666_666),
                (30, 2_000_000),
                (20, 1_333_333)
            ]
        );
        // The encoder keeps its bit rate through the fps steps.
        let l = Ladder::new(30, 4_000_000, true);
        let told: Vec<u64> = (0..=l.max_step())
            .map(|s| l.level(s).encoder_bitrate)
            .collect();
        assert_eq!(
            told,
            [4_000_000, 4_000_000, 4_000_000, 4_000_000, 2_000_000, 1_000_000]
        );
        // 15 fps at 300 kbit/s: 10, 8 (7.5 rounded), 5 fps; never below
        // 100 kbit/s.
        assert_eq!(
            ladder_fps(&Ladder::new(15, 300_000, true)),
            [(15, 300_000), (10, 200_000), (8, 160_000), (5, 100_000)]
        );
        // Nothing below the floors: a 5 fps 100 kbit/s profile has one step.
        let tiny = Ladder::new(5, 100_000, true);
        assert_eq!(tiny.max_step(), 0);
        assert_eq!(tiny.level(7), tiny.level(0));
    }

    /// Feeds frames at `fps` (of the controller's current level, re-read
    /// every frame) for `secs`, each taking `encode(t)` ms and starting
    /// `backlog` ms after capture; returns the changes with their times.
    struct Sim {
        c: Controller,
        t: u64,
        changes: Vec<(u64, Change)>,
    }

    impl Sim {
        fn new(fps: u32) -> Sim {
            Sim {
                c: Controller::new(
                    Ladder::new(fps, 4_000_000, true),
                    f64::from(fps),
                    Thresholds::default(),
                ),
                t: 1_000 * MS,
                changes: Vec::new(),
            }
        }

        fn run(&mut self, secs: f64, encode_ms: f64, backlog_ms: u64) {
            self.run_cycle(secs, encode_ms, backlog_ms, 0);
        }

        /// As `run`, but the loop comes back for a frame only every
        /// `cycle_ms` (it waits for a CPU): it then takes the newest raw
        /// frame (30 fps) and skips the others.
        fn run_cycle(&mut self, secs: f64, encode_ms: f64, backlog_ms: u64, cycle_ms: u64) {
            let end = self.t + (secs * 1e9) as u64;
            while self.t < end {
                let interval = 1_000_000_000 / u64::from(self.c.level().fps);
                let encode_ns = (encode_ms * 1e6) as u64;
                let s = Sample {
                    started_ns: self.t,
                    encode_ns,
                    capture_ns: self.t - backlog_ms * MS,
                    skipped: (cycle_ms * 30 / 1000).saturating_sub(1),
                };
                if let Some(ch) = self.c.record(s) {
                    self.changes.push((self.t, ch));
                }
                // The next frame starts at the next interval, or when this
                // one is done if it overran.
                self.t += interval.max(encode_ns).max(cycle_ms * MS);
            }
        }
    }

    #[test]
    fn steady_under_budget_never_changes() {
        let mut s = Sim::new(30);
        s.run(60.0, 25.0, 2); // 75 % of 33 ms
        assert!(s.changes.is_empty(), "{:?}", s.changes);
        assert_eq!(s.c.step(), 0);
    }

    #[test]
    fn overload_steps_down_once_a_second_until_it_fits() {
        let mut s = Sim::new(30);
        // 46 ms per frame: over budget at 30 fps (33 ms) and at 20 fps
        // (above 0.9 x 50 ms = 45 ms).
        s.run(10.0, 46.0, 0);
        let steps: Vec<u32> = s.changes.iter().map(|(_, c)| c.to).collect();
        assert_eq!(steps, [1, 2], "{:?}", s.changes);
        assert!(s
            .changes
            .iter()
            .all(|(_, c)| c.reason == Reason::Overloaded));
        // A second between changes, the first after a second (the time
        // of a change is the start of the frame that completed the
        // window: up to one frame, 46 ms, earlier).
        assert!(s.changes[0].0 + 46 * MS >= 2_000 * MS);
        assert!(s.changes[1].0 - s.changes[0].0 + 46 * MS >= 1_000 * MS);
        // 15 fps: 46 / 66.7 = 69 %: neither over nor calm, so it stays.
        assert_eq!(s.c.level().fps, 15);
        s.run(30.0, 46.0, 0);
        assert_eq!(s.changes.len(), 2);
    }

    #[test]
    fn a_short_spike_does_not_step_down() {
        let mut s = Sim::new(30);
        s.run(5.0, 10.0, 0);
        s.run(0.3, 60.0, 0); // 300 ms of overload: part of one window
        s.run(5.0, 10.0, 0);
        assert!(s.changes.is_empty(), "{:?}", s.changes);
    }

    #[test]
    fn backlog_alone_steps_down() {
        let mut s = Sim::new(30);
        // Cheap encodes, but every frame starts 80 ms after its capture
        // (> 2 intervals of 33 ms): the loop is behind.
        s.run(1.5, 5.0, 80);
        assert_eq!(s.c.step(), 1);
        assert_eq!(s.changes[0].1.max_backlog_ns, 80 * MS);
    }

    #[test]
    fn a_loop_that_misses_frames_steps_down_until_it_takes_every_due_one() {
        let mut s = Sim::new(30);
        // Encodes take 4 ms once the loop runs, but it runs only every
        // 100 ms: it skips 2 of every 3 raw frames. At 30, 20 and 15 fps
        // frames it was due to encode are among them; at 10 fps none are.
        s.run_cycle(10.0, 4.0, 5, 100);
        assert_eq!(s.c.level().fps, 10, "{:?}", s.changes);
        assert_eq!(s.changes.len(), 3, "{:?}", s.changes);
        assert!(s.changes[0].1.missed >= 10.0, "{:?}", s.changes[0]);
        // A loop keeping up (no skips) with the same cheap encodes is calm.
        s.run(20.0, 4.0, 5);
        assert_eq!(s.c.step(), 0);
    }

    #[test]
    fn bursts_after_long_waits_count_the_frames_missed() {
        // Every 400 ms the loop gets the CPU and encodes three frames back
        // to back, the first after skipping 9 raw frames: two frames in
        // three look fine one by one, but a window misses three quarters
        // of its due frames.
        let mut c = Controller::new(
            Ladder::new(30, 4_000_000, true),
            30.0,
            Thresholds::default(),
        );
        let mut changes = Vec::new();
        let mut t = 1_000 * MS;
        while t < 3_000 * MS {
            for (i, skipped) in [9u64, 0, 0].into_iter().enumerate() {
                let at = t + i as u64 * 34 * MS;
                let s = Sample {
                    started_ns: at,
                    encode_ns: 5 * MS,
                    capture_ns: at - 2 * MS,
                    skipped,
                };
                changes.extend(c.record(s));
            }
            t += 400 * MS;
        }
        assert!(!changes.is_empty(), "never stepped down");
        assert!(changes[0].over < 0.5, "{:?}", changes[0]);
        assert!(changes[0].missed >= 15.0, "{:?}", changes[0]);
    }

    #[test]
    fn a_source_slower_than_its_nominal_rate_is_not_overload() {
        // The raw bus says 30 fps, the camera delivers 20 and never
        // publishes the rest: the loop takes every frame, skips none.
        let mut c = Controller::new(
            Ladder::new(30, 4_000_000, true),
            30.0,
            Thresholds::default(),
        );
        for i in 0..600u64 {
            let at = 1_000 * MS + i * 50 * MS;
            let s = Sample {
                started_ns: at,
                encode_ns: 5 * MS,
                capture_ns: at - 2 * MS,
                skipped: 0,
            };
            assert_eq!(c.record(s), None);
        }
    }

    #[test]
    fn overload_bottoms_out_at_the_last_step() {
        let mut s = Sim::new(30);
        s.run(30.0, 500.0, 0);
        assert_eq!(s.c.step(), s.c.ladder().max_step());
        assert_eq!(
            s.c.level(),
            Level {
                fps: 10,
                bitrate: 333_333,
                encoder_bitrate: 1_000_000
            }
        );
    }

    #[test]
    fn recovers_one_step_per_calm_period_and_never_faster() {
        let mut s = Sim::new(30);
        s.run(20.0, 500.0, 0);
        let bottom = s.c.step();
        let n = s.changes.len();
        // Load gone: 5 ms a frame.
        s.run(60.0, 5.0, 0);
        assert_eq!(s.c.step(), 0, "back to the profile as configured");
        let ups: Vec<&(u64, Change)> = s.changes[n..].iter().collect();
        assert_eq!(ups.len() as u32, bottom);
        assert!(ups.iter().all(|(_, c)| c.reason == Reason::Recovered));
        for w in ups.windows(2) {
            assert_eq!(w[1].1.to + 1, w[0].1.to, "one step at a time");
            // 5 s apart, less the 5 ms of the frame that completed it.
            assert!(w[1].0 - w[0].0 + 5 * MS >= 5_000 * MS, "{ups:?}");
        }
    }

    #[test]
    fn a_busy_window_restarts_the_calm_period() {
        let mut s = Sim::new(30);
        s.run(1.05, 50.0, 0);
        let k = s.c.step();
        assert!(k >= 1, "{:?}", s.changes);
        // 3.5 s calm, then 2.5 s at 35 ms (52 % of 66.7 ms, 70 % of 50 ms:
        // neither calm nor over), then 3.5 s calm: never 5 s calm in a row.
        s.run(3.5, 5.0, 0);
        s.run(2.5, 35.0, 0);
        s.run(3.5, 5.0, 0);
        assert_eq!(s.c.step(), k, "{:?}", s.changes);
        s.run(3.0, 5.0, 0);
        assert_eq!(s.c.step(), k - 1, "{:?}", s.changes);
    }

    #[test]
    fn no_oscillation_at_the_edge() {
        // A load that is just calm one step down and just under the
        // over-budget line one step up: it steps down once, climbs back,
        // and stays.
        for encode_ms in [20.0, 29.0, 31.0, 40.0, 44.0] {
            let mut s = Sim::new(30);
            s.run(120.0, encode_ms, 0);
            assert!(
                s.changes.len() <= 2,
                "{encode_ms} ms: {} changes: {:?}",
                s.changes.len(),
                s.changes
            );
        }
    }
}
