//! `framebus-recorder`: recordings of encoded buses, with pre-roll from
//! memory, written as fragmented MP4 that survives a crash
//! (docs/recording.md).
//!
//! Flow: `POST /api/v1/recordings` ([`server`]) creates the recording's
//! file and record in the [`store`] (a full or unwritable disk answers
//! 507 here), and hands a job to the bus's [`tap`], a thread with its own
//! reader of the bus (waking the encoder), which starts the job from its
//! pre-roll buffer and passes fragments to the recording's [`writer`]
//! thread. Continuous recording is a tap that always
//! runs and always has a segment. [`remux`] reads the files back (start-up
//! recovery, the progressive MP4 for download, `/get`).
//!
//! Files: [`config`] (flags), [`recording`] (the record and its states),
//! [`store`] (directory, index, retention), [`tap`] (pre-roll and jobs),
//! [`writer`] (disk), [`remux`] (reading back), [`server`] (HTTP API and
//! page), [`client`] (`framebus record`), [`metrics`].

pub mod client;
pub mod config;
pub mod metrics;
pub mod recording;
pub mod remux;
pub mod server;
pub mod store;
pub mod tap;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use config::Stream;
pub use config::{Args, Cli};
use recording::{rfc3339, Entry, Kind, Recording, State};
use store::{Store, StoreError};
use tap::{JobSpec, SegmentMaker, Tap};
use writer::WriteCounters;

use crate::feed::FeedError;

/// Why a recording cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A request the recorder refuses (400).
    #[error("{0}")]
    Invalid(String),
    /// No such encoded bus (404).
    #[error(transparent)]
    NoStream(FeedError),
    /// Too many recordings (503).
    #[error("{0} recordings are running, the most --max-recordings allows")]
    Full(usize),
    /// The directory cannot take it (507).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A start request.
#[derive(Clone, Debug)]
pub struct StartRequest {
    /// The stream.
    pub stream: Stream,
    /// How long after the request (None: until stopped).
    pub duration: Option<Duration>,
    /// How much before it.
    pub preroll: Duration,
    /// Save a snapshot beside it.
    pub snapshot: bool,
}

/// The recorder's state.
pub struct Recorder {
    /// Its flags.
    pub args: Args,
    /// The recordings.
    pub store: Arc<Store>,
    taps: Mutex<HashMap<String, Arc<Tap>>>,
    /// Counters of every writer.
    pub write_counters: Arc<WriteCounters>,
    /// Recordings that could not start, by reason (as
    /// [`WriteCounters::REASONS`]).
    pub start_errors: [std::sync::atomic::AtomicU64; 4],
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("dir", &self.store.dir())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Opens the directory; starts the buffered and continuous taps.
    pub fn start(args: Args) -> Result<Arc<Recorder>, StartError> {
        let dir = args.recordings_dir().map_err(StartError::Invalid)?;
        let store = Arc::new(Store::open(dir)?);
        let r = Arc::new(Recorder {
            store,
            taps: Mutex::new(HashMap::new()),
            write_counters: Arc::default(),
            start_errors: Default::default(),
            args,
        });
        let mut always: Vec<&Stream> = r.args.buffer.iter().chain(&r.args.continuous).collect();
        always.sort();
        always.dedup();
        for s in always {
            r.tap_for(s, true);
        }
        Ok(r)
    }

    /// Every tap.
    pub fn taps(&self) -> Vec<Arc<Tap>> {
        self.taps.lock().values().cloned().collect()
    }

    /// The tap of `stream`, made (and for an always-on one started) if
    /// needed. A stream whose bus does not exist yet gets a tap that waits
    /// for it (its thread retries).
    fn tap_for(self: &Arc<Recorder>, s: &Stream, always: bool) -> Arc<Tap> {
        if let Some(t) = self.taps.lock().get(&s.bus) {
            return Arc::clone(t);
        }
        let continuous = self.args.continuous.contains(s).then(|| {
            let me = Arc::downgrade(self);
            let stream = s.clone();
            let make: Arc<SegmentMaker> =
                Arc::new(move |au: &crate::feed::Au| me.upgrade()?.new_segment(&stream, au));
            (self.args.segment, make)
        });
        let buffered = self.args.buffer.contains(s);
        let tap = Tap::new(
            s.bus.clone(),
            self.args.shm_dir.clone(),
            self.args.preroll_max,
            self.args.fragment,
            buffered,
            continuous,
            Arc::clone(&self.write_counters),
        );
        let tap = Arc::clone(self.taps.lock().entry(s.bus.clone()).or_insert(tap));
        if always {
            tap.ensure_running();
        }
        tap
    }

    fn new_segment(&self, s: &Stream, au: &crate::feed::Au) -> Option<JobSpec> {
        let rec = blank(s, Kind::Segment, au.realtime_ns, 0.0, None);
        match self.store.create(rec, self.args.min_free) {
            Ok(entry) => Some(JobSpec {
                entry,
                from_mono: au.mono_ns,
                requested_mono: au.mono_ns,
                segment: Some(self.args.segment),
            }),
            Err(e) => {
                self.count_start_error(&e);
                tracing::error!(stream = %s, error = %e, "cannot start the next continuous segment");
                None
            }
        }
    }

    fn count_start_error(&self, e: &StoreError) {
        let r = store::reason(&e.source);
        let i = WriteCounters::REASONS
            .iter()
            .position(|x| *x == r)
            .unwrap_or(3);
        self.start_errors[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// On-demand recordings running.
    pub fn active_clips(&self) -> usize {
        self.store
            .all()
            .iter()
            .filter(|e| {
                let r = e.rec.lock();
                r.kind == Kind::Clip && r.state.is_active()
            })
            .count()
    }

    /// Starts a recording (the API's and the CLI's `POST`).
    pub fn record(self: &Arc<Recorder>, req: StartRequest) -> Result<Arc<Entry>, StartError> {
        if req.preroll > self.args.preroll_max {
            return Err(StartError::Invalid(format!(
                "preroll {:.3}s is more than the {:.3}s the recorder keeps (--preroll-max)",
                req.preroll.as_secs_f64(),
                self.args.preroll_max.as_secs_f64()
            )));
        }
        if req.duration.is_some_and(|d| d > self.args.max_duration) {
            return Err(StartError::Invalid(format!(
                "duration {:.3}s is more than --max-duration ({:.3}s)",
                req.duration.unwrap_or_default().as_secs_f64(),
                self.args.max_duration.as_secs_f64()
            )));
        }
        if req.duration.is_some_and(|d| d.is_zero()) {
            return Err(StartError::Invalid("duration must be more than 0".into()));
        }
        let n = self.active_clips();
        if n >= self.args.max_recordings {
            return Err(StartError::Full(n));
        }
        // The stream must exist and carry H.264.
        check_stream(&req.stream.bus, self.args.shm_dir.as_deref())?;
        let (now_mono, now_real) = now_pair();
        let rec = blank(
            &req.stream,
            Kind::Clip,
            now_real,
            req.preroll.as_secs_f64(),
            req.duration.map(|d| d.as_secs_f64()),
        );
        let entry = self
            .store
            .create(rec, self.args.min_free)
            .inspect_err(|e| self.count_start_error(e))?;
        let until = req.duration.unwrap_or(self.args.max_duration);
        entry.request_stop(now_mono + until.as_nanos() as u64);
        if req.snapshot {
            if let Some(cam) = req.stream.camera() {
                save_snapshot(&entry, cam, self.args.shm_dir.clone());
            }
        }
        self.tap_for(&req.stream, false).add(JobSpec {
            entry: Arc::clone(&entry),
            from_mono: now_mono.saturating_sub(req.preroll.as_nanos() as u64),
            requested_mono: now_mono,
            segment: None,
        });
        tracing::info!(id = %entry.id(), stream = %req.stream, preroll = ?req.preroll, duration = ?req.duration, "recording");
        Ok(entry)
    }

    /// Stops a recording now (its last frame is the last captured before
    /// this call) and waits for its file to be complete (at most 5 s).
    pub async fn stop(&self, entry: &Arc<Entry>) -> Recording {
        if entry.rec.lock().state.is_active() {
            entry.request_stop(framebus::monotonic_ns());
            entry.finished(Duration::from_secs(5)).await;
        }
        entry.snapshot()
    }

    /// Stops every active recording (the process is stopping), waiting at
    /// most `limit` for their files.
    pub async fn stop_all(&self, limit: Duration) {
        let now = framebus::monotonic_ns();
        let active: Vec<_> = self
            .store
            .all()
            .into_iter()
            .filter(|e| e.rec.lock().state.is_active())
            .collect();
        for e in &active {
            e.request_stop(now);
        }
        for e in &active {
            e.finished(limit).await;
        }
    }

    /// Applies the retention limits every 10 s (continuous segments only).
    pub async fn retention_loop(self: Arc<Recorder>) {
        if self.args.retain_age.is_none() && self.args.retain_bytes.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let me = Arc::clone(&self);
            let _ = tokio::task::spawn_blocking(move || {
                me.store.retain(me.args.retain_age, me.args.retain_bytes)
            })
            .await;
        }
    }
}

/// The same instant on CLOCK_MONOTONIC and CLOCK_REALTIME (ns): the
/// realtime read between two monotonic reads that are at most 20 µs apart
/// (a preemption between the two clocks would otherwise skew the
/// request's time by however long it lasted).
fn now_pair() -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..5 {
        let m0 = framebus::monotonic_ns();
        let r = framebus::realtime_ns();
        let m1 = framebus::monotonic_ns();
        if m1 - m0 < best.0 {
            best = (m1 - m0, m0 + (m1 - m0) / 2, r);
        }
        if best.0 <= 20_000 {
            break;
        }
    }
    (best.1, best.2)
}

/// Whether encoded bus `bus` exists and carries H.264.
fn check_stream(bus: &str, shm_dir: Option<&std::path::Path>) -> Result<(), StartError> {
    let info = framebus::stat(bus, shm_dir).map_err(|e| {
        StartError::NoStream(FeedError::NoBus {
            bus: bus.to_string(),
            why: e.to_string(),
        })
    })?;
    if info.format != framebus::PixelFormat::H264.to_string() {
        return Err(StartError::NoStream(FeedError::NotEncoded(
            bus.to_string(),
            info.format,
        )));
    }
    Ok(())
}

/// A new recording's record before its first frame.
fn blank(
    s: &Stream,
    kind: Kind,
    requested_realtime_ns: u64,
    preroll_s: f64,
    duration_s: Option<f64>,
) -> Recording {
    Recording {
        id: String::new(),
        stream: s.name(),
        bus: s.bus.clone(),
        kind,
        state: State::Waiting,
        requested_at: rfc3339(requested_realtime_ns),
        requested_at_realtime_ns: requested_realtime_ns,
        requested_preroll_s: preroll_s,
        requested_duration_s: duration_s,
        start: None,
        first_frame_realtime_ns: None,
        preroll_s: None,
        end: None,
        duration_s: 0.0,
        frames: 0,
        bytes: 0,
        width: 0,
        height: 0,
        codec: None,
        error: None,
        note: None,
        snapshot: false,
        file: String::new(),
    }
}

/// Saves `{id}.jpg` from the camera's raw bus (its newest frame), on a
/// blocking thread; the record says whether it was saved.
fn save_snapshot(entry: &Arc<Entry>, camera: &str, shm_dir: Option<std::path::PathBuf>) {
    let entry = Arc::clone(entry);
    let camera = camera.to_string();
    tokio::task::spawn_blocking(move || {
        let path = entry.path.with_extension("jpg");
        match crate::mjpeg::encoder::snapshot_jpeg(&camera, shm_dir.as_deref(), 85)
            .map_err(|e| e.to_string())
            .and_then(|jpeg| {
                std::fs::write(&path, jpeg).map_err(|e| format!("{}: {e}", path.display()))
            }) {
            Ok(()) => entry.rec.lock().snapshot = true,
            Err(e) => {
                tracing::warn!(id = %entry.id(), error = %e, "snapshot not saved");
                let mut r = entry.rec.lock();
                r.error
                    .get_or_insert_with(|| format!("snapshot not saved: {e}"));
            }
        }
    });
}
