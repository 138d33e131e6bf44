//! One reader per encoded bus in `framebus-mjpeg`, shared by every output
//! of that process that plays it (each WebRTC session, the HLS muxer):
//! access units in order, each copied out of the ring once into an
//! `Arc<[u8]>` that every consumer reads (str0m takes the access unit whole
//! and packetizes per session; the HLS muxer writes it into a part).
//!
//! Lifecycle: [`OnDemand`], as for RTSP streams. The first consumer (or a
//! WHEP `POST` waiting for the stream's parameters) starts the reader
//! thread; it stops [`FEED_GRACE`] after the last one leaves, and the
//! encoder then idles (it encodes while its bus has readers). WebRTC
//! sessions join as viewers (counted against `--webrtc-max-viewers`); the
//! HLS muxer joins uncounted ([`Feed::join_uncounted`]): its viewers are
//! limited by HLS itself.
//!
//! Fan-out is a bounded `tokio::sync::broadcast`: the thread never waits
//! for a session. A session that falls behind by more than the channel
//! holds gets `Lagged` and skips to the next keyframe. The thread also
//! keeps the current GOP so that a joiner starts at once from the newest
//! keyframe when it is recent ([`Feed::start`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use framebus::{PixelFormat, ReadError, Reader, ReaderOptions};
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

use crate::common::demand::{JoinError, JoinKind, OnDemand, Ticket, Worker};
use crate::h264::{nal, nal_type, split_annex_b};

/// Access units the fan-out channel holds (about half a second at 30 fps).
const FANOUT_DEPTH: usize = 16;
/// The reader keeps reading this long after its last session.
pub const FEED_GRACE: Duration = Duration::from_secs(2);
/// How long a WHEP `POST` waits for the stream's parameters.
pub const INFO_WAIT: Duration = Duration::from_secs(8);
/// The GOP cache holds at most this many access units.
pub const GOP_CACHE_MAX: usize = 600;
/// The 90 kHz RTP video clock.
pub const CLOCK_RATE: u64 = 90_000;

/// One access unit of an encoded bus.
#[derive(Debug)]
pub struct Au {
    /// Annex B bytes, copied once from the ring.
    pub data: Arc<[u8]>,
    /// An IDR (SPS and PPS in band).
    pub key: bool,
    /// Presentation time in 90 kHz ticks (the bus's `pts`).
    pub pts90: u64,
    /// Capture time of the raw frame it was encoded from
    /// (CLOCK_MONOTONIC ns).
    pub mono_ns: u64,
    /// The same instant on CLOCK_REALTIME (ns since the epoch), for
    /// `abs-capture-time`.
    pub realtime_ns: u64,
}

/// What a session needs to know about an encoded bus before it answers.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedInfo {
    /// Encoded width.
    pub width: u32,
    /// Encoded height.
    pub height: u32,
    /// Nominal frame rate.
    pub fps: f64,
    /// H.264 `profile_idc` from the SPS (66 baseline, 77 main, 100 high).
    pub profile_idc: u8,
    /// `constraint_set` flags byte from the SPS.
    pub constraints: u8,
    /// The encoder's stream bit rate (0: unknown).
    pub bitrate: u64,
}

impl FeedInfo {
    /// The H.264 profile's name, as in the `[[encoder]]` config.
    pub fn profile_name(&self) -> &'static str {
        match self.profile_idc {
            66 => "baseline",
            77 => "main",
            100 => "high",
            _ => "other",
        }
    }
}

/// Why a feed cannot be played.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FeedError {
    /// The encoded bus is absent.
    #[error("no encoded bus {bus:?}: {why} (is a framebus-encoder for it running?)")]
    NoBus {
        /// The encoded bus name.
        bus: String,
        /// Why it cannot be read.
        why: String,
    },
    /// The bus carries raw frames.
    #[error("bus {0:?} carries {1}, not H.264: WebRTC and HLS play encoded buses")]
    NotEncoded(String, String),
    /// The feed has its maximum of sessions.
    #[error("{0} has its maximum of {1} WebRTC viewers")]
    Full(String, usize),
    /// No SPS arrived in time.
    #[error("{0} had no codec parameters within {1:?}")]
    Timeout(String, Duration),
}

/// Counters of one feed.
#[derive(Debug, Default)]
pub struct FeedCounters {
    /// Access units read from the bus.
    pub frames: AtomicU64,
    /// Keyframes read.
    pub keyframes: AtomicU64,
    /// Bytes read.
    pub bytes: AtomicU64,
    /// Access units the bus overwrote before this reader got them.
    pub skipped_on_bus: AtomicU64,
    /// Keyframe requests passed to the encoder.
    pub keyframe_requests: AtomicU64,
    /// Bit rate of the access units over the last [`RATE_WINDOW`] (0:
    /// not reading).
    pub rate_bps: AtomicU64,
}

/// The window of [`FeedCounters::rate_bps`].
pub const RATE_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Fanout {
    tx: broadcast::Sender<Arc<Au>>,
    gop: Vec<Arc<Au>>,
}

/// One encoded bus's reader and fan-out.
#[derive(Debug)]
pub struct Feed {
    bus: String,
    shm_dir: Option<std::path::PathBuf>,
    demand: Arc<OnDemand<()>>,
    fanout: Mutex<Fanout>,
    info: watch::Sender<Option<Result<FeedInfo, FeedError>>>,
    keyframe_wanted: AtomicBool,
    /// Counters for `/metrics`.
    pub counters: FeedCounters,
}

/// A session's claim on a feed (counted against the viewer limit);
/// dropping it releases the claim.
#[derive(Debug)]
pub struct FeedSlot {
    feed: Arc<Feed>,
    _ticket: Ticket<()>,
}

impl FeedSlot {
    /// The feed.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }
}

/// `pts` in `time_base` (num/den seconds) as 90 kHz ticks.
pub fn to_90k(pts: u64, (num, den): (u32, u32)) -> u64 {
    if (u64::from(num), u64::from(den)) == (1, CLOCK_RATE) || den == 0 {
        return pts;
    }
    (u128::from(pts) * u128::from(num) * u128::from(CLOCK_RATE) / u128::from(den)) as u64
}

/// `profile_idc` and the constraint flags from the SPS among `nals`.
fn sps_profile(nals: &[&[u8]]) -> Option<(u8, u8)> {
    let sps = nals.iter().find(|n| nal_type(n) == nal::SPS)?;
    (sps.len() >= 3).then(|| (sps[1], sps[2]))
}

impl Feed {
    fn new(bus: String, shm_dir: Option<std::path::PathBuf>, max_viewers: usize) -> Arc<Feed> {
        let (tx, _) = broadcast::channel(FANOUT_DEPTH);
        let (info, _) = watch::channel(None);
        Arc::new_cyclic(|me: &Weak<Feed>| Feed {
            demand: {
                let me = me.clone();
                OnDemand::new(FEED_GRACE, max_viewers, move |worker| {
                    if let Some(me) = me.upgrade() {
                        std::thread::Builder::new()
                            .name(format!("feed {}", me.bus))
                            .spawn(move || me.run(&worker))
                            .expect("spawn a feed thread");
                    }
                })
            },
            bus,
            shm_dir,
            fanout: Mutex::new(Fanout {
                tx,
                gop: Vec::new(),
            }),
            info,
            keyframe_wanted: AtomicBool::new(false),
            counters: FeedCounters::default(),
        })
    }

    /// The encoded bus.
    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// Sessions holding a slot.
    pub fn sessions(&self) -> usize {
        self.demand.status().viewers
    }

    /// True while the reader thread runs.
    pub fn is_running(&self) -> bool {
        self.demand.status().running
    }

    /// The parameters, once known.
    pub fn current_info(&self) -> Option<FeedInfo> {
        self.info
            .borrow()
            .as_ref()
            .and_then(|r| r.as_ref().ok().cloned())
    }

    /// Takes a session slot, starting the reader if needed.
    pub fn join(self: &Arc<Feed>) -> Result<FeedSlot, FeedError> {
        let ticket = self
            .demand
            .join(JoinKind::Viewer)
            .map_err(|JoinError::Full { max }| FeedError::Full(self.bus.clone(), max))?;
        Ok(FeedSlot {
            feed: Arc::clone(self),
            _ticket: ticket,
        })
    }

    /// Keeps the reader running without counting against the viewer
    /// limit (the HLS muxer: HLS limits its own viewers).
    pub fn join_uncounted(self: &Arc<Feed>) -> FeedSlot {
        FeedSlot {
            feed: Arc::clone(self),
            _ticket: self
                .demand
                .join(JoinKind::Snapshot)
                .expect("uncounted joins are not limited"),
        }
    }

    /// Waits for the stream's parameters (starting the reader if needed).
    pub async fn info(self: &Arc<Feed>) -> Result<FeedInfo, FeedError> {
        let _keep = self.demand.join(JoinKind::Snapshot);
        let mut rx = self.info.subscribe();
        let timeout = || FeedError::Timeout(self.bus.clone(), INFO_WAIT);
        let waited = tokio::time::timeout(INFO_WAIT, async {
            loop {
                if let Some(p) = rx.borrow_and_update().clone() {
                    return p;
                }
                if rx.changed().await.is_err() {
                    return Err(timeout());
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| Err(timeout()))
    }

    /// Where a session that starts now begins: the cached GOP when its
    /// keyframe is at most `max_age` old (written at once), else nothing
    /// (the session waits for the next keyframe on `rx`, asked for unless
    /// nothing is cached: a cold start brings its own). Later access units
    /// come from `rx`, subscribed under the same lock as the snapshot: none
    /// missed, none twice.
    pub fn start_now(&self, max_age: Duration) -> (Vec<Arc<Au>>, broadcast::Receiver<Arc<Au>>) {
        let cached = {
            let f = self.fanout.lock();
            let rx = f.tx.subscribe();
            if let Some(key) = f.gop.first() {
                let age = framebus::monotonic_ns().saturating_sub(key.mono_ns);
                if Duration::from_nanos(age) <= max_age {
                    return (f.gop.clone(), rx);
                }
            }
            (!f.gop.is_empty(), rx)
        };
        if cached.0 {
            self.request_keyframe();
        }
        (Vec::new(), cached.1)
    }

    /// Subscribes to access units from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Au>> {
        self.fanout.lock().tx.subscribe()
    }

    /// Asks the encoder for a keyframe soon (PLI/FIR, a lagging session, a
    /// profile switch). The encoder rate-limits forced keyframes, and any
    /// keyframe it publishes answers every request made before it.
    pub fn request_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Relaxed);
    }

    fn fail(&self, e: FeedError) {
        tracing::warn!(bus = %self.bus, error = %e, "encoded-bus feed failed");
        self.info.send_replace(Some(Err(e)));
    }

    fn run(&self, worker: &Worker<()>) {
        tracing::info!(bus = %self.bus, "feed: reading the encoded bus");
        let opts = ReaderOptions {
            wait: None,
            shm_dir: self.shm_dir.clone(),
        };
        let mut reader = match Reader::attach(&self.bus, opts) {
            Ok(r) => r,
            Err(e) => {
                self.fail(FeedError::NoBus {
                    bus: self.bus.clone(),
                    why: e.to_string(),
                });
                while worker.keep_running() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                return;
            }
        };
        let spec = *reader.spec();
        if spec.format != PixelFormat::H264 {
            self.fail(FeedError::NotEncoded(
                self.bus.clone(),
                spec.format.to_string(),
            ));
            while worker.keep_running() {
                std::thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        let bitrate = framebus::stat(&self.bus, self.shm_dir.as_deref())
            .map(|i| i.encoder_bitrate)
            .unwrap_or(0);
        let mut time_base = (1, CLOCK_RATE as u32);
        let publish = |profile: (u8, u8)| {
            let info = FeedInfo {
                width: spec.width,
                height: spec.height,
                fps: spec.fps.as_f64(),
                profile_idc: profile.0,
                constraints: profile.1,
                bitrate,
            };
            self.info.send_if_modified(|cur| {
                if cur.as_ref().and_then(|r| r.as_ref().ok()) == Some(&info) {
                    return false;
                }
                *cur = Some(Ok(info));
                true
            });
        };
        match reader.codec() {
            Ok(Some(c)) => {
                if c.time_base.0 > 0 && c.time_base.1 > 0 {
                    time_base = c.time_base;
                }
                if let Some(p) = sps_profile(&split_annex_b(&c.config)) {
                    publish(p);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(bus = %self.bus, error = %e, "reading the codec configuration")
            }
        }
        let c = &self.counters;
        let mut window: std::collections::VecDeque<(u64, usize)> = Default::default();
        while worker.keep_running() {
            if self.keyframe_wanted.swap(false, Ordering::Relaxed) {
                c.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = reader.request_keyframe() {
                    tracing::debug!(bus = %self.bus, error = %e, "keyframe request");
                }
            }
            let frame = match reader.next_encoded(Some(Duration::from_millis(20))) {
                Ok(f) => f,
                Err(ReadError::Timeout { .. }) => continue,
                Err(ReadError::ProducerGone { .. }) => {
                    tracing::warn!(bus = %self.bus, "encoder gone; waiting for a new one");
                    self.fanout.lock().gop.clear();
                    continue;
                }
                Err(e) => {
                    tracing::warn!(bus = %self.bus, error = %e, "read failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            c.skipped_on_bus
                .fetch_add(frame.skipped(), Ordering::Relaxed);
            let key = frame.is_keyframe();
            if key {
                if let Some(p) = sps_profile(&split_annex_b(&frame)) {
                    publish(p);
                }
                c.keyframes.fetch_add(1, Ordering::Relaxed);
            }
            c.frames.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
            // What the stream really needs (a still scene needs far less
            // than the encoder's target bit rate).
            let now = frame.mono_ns();
            window.push_back((now, frame.len()));
            while window
                .front()
                .is_some_and(|&(t, _)| now.saturating_sub(t) > RATE_WINDOW.as_nanos() as u64)
            {
                window.pop_front();
            }
            if let (Some(&(t0, _)), true) = (window.front(), window.len() > 1) {
                let span = (now.saturating_sub(t0)) as f64 / 1e9;
                if span > 0.2 {
                    let bytes: usize = window.iter().skip(1).map(|&(_, b)| b).sum();
                    c.rate_bps
                        .store((bytes as f64 * 8.0 / span) as u64, Ordering::Relaxed);
                }
            }
            let au = Arc::new(Au {
                data: Arc::from(&frame[..]),
                key,
                pts90: to_90k(frame.pts(), time_base),
                mono_ns: frame.mono_ns(),
                realtime_ns: frame.realtime_ns(),
            });
            drop(frame);
            let mut f = self.fanout.lock();
            if key {
                f.gop.clear();
            }
            if (key || !f.gop.is_empty()) && f.gop.len() < GOP_CACHE_MAX {
                f.gop.push(Arc::clone(&au));
            }
            let _ = f.tx.send(au);
        }
        self.fanout.lock().gop.clear();
        c.rate_bps.store(0, Ordering::Relaxed);
        tracing::info!(bus = %self.bus, "feed stopped (no consumers)");
    }
}

/// Every feed of the server, created on first use.
#[derive(Debug)]
pub struct Feeds {
    shm_dir: Option<std::path::PathBuf>,
    max_viewers: usize,
    map: Mutex<HashMap<String, Arc<Feed>>>,
}

impl Feeds {
    /// An empty registry.
    pub fn new(shm_dir: Option<std::path::PathBuf>, max_viewers: usize) -> Feeds {
        Feeds {
            shm_dir,
            max_viewers,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The feed of encoded bus `bus`, created if its segment exists and
    /// carries H.264. Creating one forgets idle feeds of vanished buses.
    pub fn get(&self, bus: &str) -> Result<Arc<Feed>, FeedError> {
        let no_bus = |why: String| FeedError::NoBus {
            bus: bus.to_string(),
            why,
        };
        framebus::validate_name(bus).map_err(|e| no_bus(e.to_string()))?;
        if let Some(f) = self.map.lock().get(bus) {
            return Ok(Arc::clone(f));
        }
        let info =
            framebus::stat(bus, self.shm_dir.as_deref()).map_err(|e| no_bus(e.to_string()))?;
        if info.format != PixelFormat::H264.to_string() {
            return Err(FeedError::NotEncoded(bus.to_string(), info.format));
        }
        self.prune();
        let mut map = self.map.lock();
        Ok(Arc::clone(map.entry(bus.to_string()).or_insert_with(
            || Feed::new(bus.to_string(), self.shm_dir.clone(), self.max_viewers),
        )))
    }

    /// Forgets feeds that are idle and whose bus is gone.
    pub fn prune(&self) {
        let shm_dir = self.shm_dir.as_deref();
        self.map.lock().retain(|bus, f| {
            f.sessions() > 0 || f.is_running() || framebus::stat(bus, shm_dir).is_ok()
        });
    }

    /// Every feed created so far.
    pub fn all(&self) -> Vec<Arc<Feed>> {
        self.map.lock().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_profile_from_the_sps() {
        let sps: &[u8] = &[0x67, 77, 0x40, 0x1f];
        let pps: &[u8] = &[0x68, 0xce];
        assert_eq!(sps_profile(&[pps, sps]), Some((77, 0x40)));
        assert_eq!(sps_profile(&[pps]), None);
        assert_eq!(to_90k(3, (1, 30)), 9000);
    }
}
