//! One RTSP stream per encoded bus, shared by all its clients.
//!
//! `framebus-rtsp` encodes nothing: `rtsp://host/{bus}/{profile}` is the
//! encoded bus `{bus}.h264.{profile}` that a `framebus-encoder` writes (and
//! `rtsp://host/{name}` is any H.264 bus by its own name, e.g. one a
//! Python program writes).
//!
//! Lifecycle: [`crate::common::demand::OnDemand`], as in `framebus-mjpeg`.
//! The first DESCRIBE or SETUP starts a reader thread; every client holds
//! a [`ClientSlot`] (counted against `--max-clients`); the thread stops
//! [`READER_GRACE`] after the last slot is dropped. While the thread reads
//! the encoded bus, the encoder encodes (it runs while its bus has readers).
//!
//! Fan-out: the thread takes every access unit in order
//! (`Reader::next_encoded`), packetizes it once (RFC 6184) and sends it on
//! a bounded `tokio::sync::broadcast` channel; it never waits for a client.
//! It also keeps the packets of the current GOP (from its keyframe on),
//! under the same lock as the send, so that a joiner can start from the
//! newest keyframe at once ([`Stream::start`]). A client that falls behind
//! by more than the channel holds gets `Lagged`, skips to the next IDR and
//! asks for one.
//!
//! Timestamps: the RTP timestamp of an access unit is its bus `pts` (in the
//! bus's time base, converted to 90 kHz) plus a random offset; RTCP sender
//! reports map wall-clock time onto the same clock through the newest
//! access unit's (pts, capture time) pair.
//!
//! Sound (docs/audio.md): a camera's Opus bus (`{cam}.opus`) is a stream of
//! its own, read the same way: each packet is one RTP packet (RFC 7587,
//! payload type 97, 48 kHz clock) in an [`AccessUnit`] that is always a
//! "keyframe", so joining, fan-out, lag and sender reports need nothing
//! new. [`Streams::audio_of`] finds it for a video path; a session plays
//! it as its second track.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use framebus::{PixelFormat, ReadError, Reader, ReaderOptions};
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

use super::config::Config;
use super::h264::Packetizer;
use super::metrics::{add, StreamMetrics};
use super::rtp::{RtpHeader, CLOCK_RATE};
use crate::common::demand::{JoinError, JoinKind, OnDemand, Ticket, Worker};
use crate::encoder::encoded_bus_name;
use crate::h264::{nal, nal_type, split_annex_b};

/// Access units the fan-out channel holds (about half a second at 30 fps).
const FANOUT_DEPTH: usize = 16;
/// The reader thread keeps reading this long after its last client (a
/// DESCRIBE followed by SETUP on a new connection finds it running).
pub const READER_GRACE: Duration = Duration::from_secs(2);
/// How long a DESCRIBE waits for the codec parameters (from the bus
/// header, or from the first keyframe of a bus that has none there).
pub const PARAMS_WAIT: Duration = Duration::from_secs(8);
/// How long PLAY waits for a fresh keyframe before it answers without an
/// `rtptime` (the first packet then comes whenever the keyframe does).
pub const KEYFRAME_WAIT: Duration = Duration::from_secs(1);
/// The GOP cache holds at most this many access units (a bus whose
/// keyframes are further apart is served from the next keyframe).
const GOP_CACHE_MAX: usize = 600;

/// The RTP payload type of the Opus track (dynamic).
pub const OPUS_PT: u8 = 97;
/// The RTP clock of Opus (RFC 7587 §4.1: always 48 kHz).
pub const OPUS_CLOCK: u64 = 48_000;

/// One packetized access unit.
#[derive(Debug)]
pub struct AccessUnit {
    /// RTP packets (headers included) with the stream's sequence numbers;
    /// each client rewrites the sequence number to its own.
    pub packets: Vec<Vec<u8>>,
    /// An IDR (with SPS and PPS in band).
    pub key: bool,
    /// RTP timestamp.
    pub rtp_ts: u32,
    /// Capture time of the raw frame it was encoded from (CLOCK_MONOTONIC
    /// ns).
    pub mono_ns: u64,
    /// Bytes of the access unit (Annex B).
    pub bytes: usize,
}

/// What a DESCRIBE needs to know about a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamParams {
    /// SPS NAL unit.
    pub sps: Vec<u8>,
    /// PPS NAL unit.
    pub pps: Vec<u8>,
    /// Encoded width.
    pub width: u32,
    /// Encoded height.
    pub height: u32,
    /// Nominal frame rate (an Opus stream: packets per second).
    pub fps: u32,
}

/// Why a stream cannot be served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The URL names no stream (`/{bus}/{profile}` or `/{encoded-bus}`).
    #[error("no stream at {0:?}")]
    BadPath(String),
    /// The encoded bus is absent or has no live encoder.
    #[error("no encoded bus {bus:?} for {path}: {why} (is a framebus-encoder for it running?)")]
    NoBus {
        /// `bus/profile`.
        path: String,
        /// The encoded bus name.
        bus: String,
        /// Why it cannot be read.
        why: String,
    },
    /// The bus carries raw frames, not H.264 (or Opus).
    #[error("bus {0:?} carries {1}, not H.264: RTSP serves encoded buses")]
    NotEncoded(String, String),
    /// The stream has its maximum number of clients.
    #[error("stream {0} has its maximum of {1} clients")]
    Full(String, usize),
    /// No SPS/PPS arrived in time.
    #[error("stream {0} had no codec parameters within {1:?}")]
    Timeout(String, Duration),
}

/// What the reader thread sends and keeps, under one lock so that a
/// joiner's snapshot of the GOP and its subscription meet exactly.
#[derive(Debug)]
struct Fanout {
    tx: broadcast::Sender<Arc<AccessUnit>>,
    /// The current GOP, keyframe first (empty until a keyframe).
    gop: Vec<Arc<AccessUnit>>,
}

/// Where a client starts: the access units to send first, then `rx`.
#[derive(Debug)]
pub struct StartPoint {
    /// Access units to send before those from `rx`: the GOP from the
    /// newest keyframe, or the fresh keyframe waited for.
    pub backlog: Vec<Arc<AccessUnit>>,
    /// Later access units.
    pub rx: broadcast::Receiver<Arc<AccessUnit>>,
}

/// A shared stream.
#[derive(Debug)]
pub struct Stream {
    /// `bus/profile`, or the encoded bus name for single-segment URLs.
    pub path: String,
    bus: String,
    config: Arc<Config>,
    /// Reader thread lifecycle (clients are its viewers).
    demand: Arc<OnDemand<()>>,
    fanout: Mutex<Fanout>,
    params: watch::Sender<Option<Result<StreamParams, StreamError>>>,
    keyframe_wanted: AtomicBool,
    /// The newest access unit's (90 kHz pts, capture time ns), for sender
    /// reports.
    clock: Mutex<Option<(u64, u64)>>,
    /// SSRC of the stream's RTP packets.
    pub ssrc: u32,
    ts_offset: u32,
    /// The RTP clock: 90 kHz, or 48 kHz for an Opus stream.
    clock_rate: u64,
    /// Counters for `/metrics` and `/api/v1/streams`.
    metrics: StreamMetrics,
}

/// A client's claim on a stream; dropping it releases the claim.
#[derive(Debug)]
pub struct ClientSlot {
    stream: Arc<Stream>,
    _ticket: Ticket<()>,
}

impl ClientSlot {
    /// The stream.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }
}

/// A random 64-bit value from std's per-process random hash keys.
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    std::hash::Hasher::write_u128(&mut h, Instant::now().elapsed().as_nanos());
    std::hash::Hasher::finish(&h)
}

/// `pts` in `time_base` (num/den seconds) as ticks of a `rate` Hz clock.
fn to_clock(pts: u64, (num, den): (u32, u32), rate: u64) -> u64 {
    if (u64::from(num), u64::from(den)) == (1, rate) || den == 0 {
        return pts;
    }
    (u128::from(pts) * u128::from(num) * u128::from(rate) / u128::from(den)) as u64
}

/// `pts` in `time_base` as 90 kHz ticks.
fn to_90k(pts: u64, time_base: (u32, u32)) -> u64 {
    to_clock(pts, time_base, CLOCK_RATE)
}

/// SPS and PPS among the NAL units of an access unit (or of an Annex B
/// codec configuration).
fn parameter_sets(nals: &[&[u8]]) -> Option<(Vec<u8>, Vec<u8>)> {
    let sps = nals.iter().find(|n| nal_type(n) == nal::SPS)?;
    let pps = nals.iter().find(|n| nal_type(n) == nal::PPS)?;
    Some((sps.to_vec(), pps.to_vec()))
}

impl Stream {
    fn new(path: String, bus: String, config: Arc<Config>, clock_rate: u64) -> Arc<Stream> {
        let (tx, _) = broadcast::channel(FANOUT_DEPTH);
        let (params, _) = watch::channel(None);
        let r = random_u64();
        Arc::new_cyclic(|me: &Weak<Stream>| Stream {
            path,
            bus,
            demand: {
                // Weak: the stream owns its lifecycle, not the reverse.
                let me = me.clone();
                OnDemand::new(READER_GRACE, config.max_clients, move |worker| {
                    if let Some(me) = me.upgrade() {
                        me.start_thread(worker);
                    }
                })
            },
            config,
            fanout: Mutex::new(Fanout {
                tx,
                gop: Vec::new(),
            }),
            params,
            keyframe_wanted: AtomicBool::new(false),
            clock: Mutex::new(None),
            ssrc: r as u32,
            ts_offset: (r >> 32) as u32,
            clock_rate,
            metrics: StreamMetrics::default(),
        })
    }

    /// Clients currently holding a slot.
    pub fn clients(&self) -> usize {
        self.demand.status().viewers
    }

    /// True while the reader thread runs.
    pub fn is_running(&self) -> bool {
        self.demand.status().running
    }

    /// How long the reader thread has been running (`None` when idle).
    pub fn uptime(&self) -> Option<Duration> {
        self.demand.status().uptime
    }

    /// Reader thread starts.
    pub fn starts(&self) -> u64 {
        self.demand.status().starts
    }

    /// The encoded bus read.
    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// The client limit.
    pub fn max_clients(&self) -> usize {
        self.config.max_clients
    }

    /// The stream's counters.
    pub fn metrics(&self) -> &StreamMetrics {
        &self.metrics
    }

    /// The codec parameters, once known.
    pub fn current_params(&self) -> Option<StreamParams> {
        self.params
            .borrow()
            .as_ref()
            .and_then(|p| p.as_ref().ok().cloned())
    }

    /// Why the stream last failed (missing bus, wrong format), while that
    /// is the latest news from the reader thread.
    pub fn failure(&self) -> Option<String> {
        match self.params.borrow().as_ref() {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        }
    }

    /// A run of the lifecycle begins (called by [`OnDemand`] outside its
    /// lock, before anyone waits for the new run's parameters).
    fn start_thread(self: Arc<Stream>, worker: Worker<()>) {
        std::thread::Builder::new()
            .name(format!("rtsp {}", self.path))
            .spawn(move || self.run(&worker))
            .expect("spawn the stream's reader thread");
    }

    /// Starts the reader thread if it is not running, and marks the stream
    /// as just used (the grace time counts from now).
    fn touch(&self) {
        drop(self.demand.join(JoinKind::Snapshot));
    }

    /// Takes a client slot, starting the reader thread if needed.
    pub fn join(self: &Arc<Stream>) -> Result<ClientSlot, StreamError> {
        let ticket = self
            .demand
            .join(JoinKind::Viewer)
            .map_err(|JoinError::Full { max }| StreamError::Full(self.path.clone(), max))?;
        add(&self.metrics.clients_total, 1);
        Ok(ClientSlot {
            stream: Arc::clone(self),
            _ticket: ticket,
        })
    }

    /// Waits for the codec parameters (starting the reader if needed).
    pub async fn params(self: &Arc<Stream>) -> Result<StreamParams, StreamError> {
        self.touch();
        let mut rx = self.params.subscribe();
        let timeout = || StreamError::Timeout(self.path.clone(), PARAMS_WAIT);
        let waited = tokio::time::timeout(PARAMS_WAIT, async {
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

    /// Subscribes to access units from now on (for `--push`, which waits
    /// for the next keyframe itself).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AccessUnit>> {
        self.fanout.lock().tx.subscribe()
    }

    /// Where a client that starts playing now begins.
    ///
    /// If the newest keyframe was captured at most `--join-max-age` ago,
    /// the client starts from it at once: the GOP so far is its backlog,
    /// and later access units come from the subscription taken under the
    /// same lock (none missed, none twice). Otherwise (unless nothing is
    /// cached yet: a cold start brings its keyframe anyway) the encoder is
    /// asked for a keyframe and the client starts at the first keyframe that
    /// arrives (usually the next frame; at most [`KEYFRAME_WAIT`], after
    /// which the backlog is empty and the client waits for a keyframe as
    /// it plays). Either way PLAY can name the first packet's timestamp.
    pub async fn start(&self) -> StartPoint {
        let max_age = self.config.join_max_age;
        let (mut rx, cached) = {
            let f = self.fanout.lock();
            let rx = f.tx.subscribe();
            if let Some(key) = f.gop.first() {
                let age = framebus::monotonic_ns().saturating_sub(key.mono_ns);
                if Duration::from_nanos(age) <= max_age {
                    add(&self.metrics.joins_from_gop, 1);
                    return StartPoint {
                        backlog: f.gop.clone(),
                        rx,
                    };
                }
            }
            (rx, !f.gop.is_empty())
        };
        // A stale GOP: ask for a fresh keyframe. Nothing cached yet (a
        // cold start, or the reader has just attached): the first access
        // unit the reader gets is a keyframe anyway (the encoder's first,
        // or the newest in the ring), and asking would only force a
        // second one.
        if cached {
            self.request_keyframe();
        }
        add(&self.metrics.joins_fresh, 1);
        let first_key = tokio::time::timeout(KEYFRAME_WAIT, async {
            loop {
                match rx.recv().await {
                    Ok(au) if au.key => return Some(au),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        StartPoint {
            backlog: first_key.into_iter().collect(),
            rx,
        }
    }

    /// Asks the encoder for a keyframe soon (the reader thread passes it
    /// on; the encoder rate-limits forced keyframes).
    pub fn request_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Relaxed);
    }

    /// True for a camera's Opus stream.
    pub fn is_audio(&self) -> bool {
        self.clock_rate == OPUS_CLOCK
    }

    /// The RTP timestamp of ticks of the stream's clock.
    pub fn rtp_ts_of(&self, ticks: u64) -> u32 {
        (ticks as u32).wrapping_add(self.ts_offset)
    }

    /// The RTP timestamp for a CLOCK_MONOTONIC time, on the clock of the
    /// access units (through the newest one's pts and capture time).
    pub fn rtp_ts(&self, mono_ns: u64) -> u32 {
        let rate = i128::from(self.clock_rate);
        let ticks = match *self.clock.lock() {
            Some((pts, at)) => {
                let d = i128::from(mono_ns) - i128::from(at);
                (i128::from(pts) + d * rate / 1_000_000_000) as u64
            }
            None => (i128::from(mono_ns) * rate / 1_000_000_000) as u64,
        };
        self.rtp_ts_of(ticks)
    }

    fn fail(&self, e: StreamError) {
        tracing::warn!(stream = %self.path, error = %e, "stream failed");
        self.params.send_replace(Some(Err(e)));
    }

    fn no_bus(&self, why: String) -> StreamError {
        StreamError::NoBus {
            path: self.path.clone(),
            bus: self.bus.clone(),
            why,
        }
    }

    /// The reader thread: one run of the lifecycle, until `worker` says
    /// nobody needs it (or it returns early: the next client starts a new
    /// run).
    fn run(&self, worker: &Worker<()>) {
        tracing::info!(stream = %self.path, bus = %self.bus, "reading the encoded bus");
        let opts = ReaderOptions {
            wait: None,
            shm_dir: self.config.shm_dir.clone(),
        };
        let mut reader = match Reader::attach(&self.bus, opts) {
            Ok(r) => r,
            Err(e) => {
                self.fail(self.no_bus(e.to_string()));
                // Stay "running" until idle so that a burst of requests
                // for a missing bus does not spawn a thread each.
                while worker.keep_running() {
                    std::thread::sleep(Duration::from_millis(100));
                    if framebus::stat(&self.bus, self.config.shm_dir.as_deref()).is_ok() {
                        // The bus appeared: the next touch starts a new run.
                        return;
                    }
                }
                return;
            }
        };
        let spec = *reader.spec();
        if spec.format == PixelFormat::Opus {
            return self.run_opus(reader, worker);
        }
        if spec.format != PixelFormat::H264 {
            self.fail(StreamError::NotEncoded(
                self.bus.clone(),
                spec.format.to_string(),
            ));
            while worker.keep_running() {
                std::thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        let fps = spec.fps.as_f64().round().max(1.0) as u32;
        let mut time_base = (1, CLOCK_RATE as u32);
        let mut params = None;
        let publish_params = |sps: Vec<u8>, pps: Vec<u8>, params: &mut Option<StreamParams>| {
            let p = StreamParams {
                sps,
                pps,
                width: spec.width,
                height: spec.height,
                fps,
            };
            if params.as_ref() != Some(&p) {
                *params = Some(p.clone());
                self.params.send_replace(Some(Ok(p)));
            }
        };
        match reader.codec() {
            Ok(Some(c)) => {
                if c.time_base.0 > 0 && c.time_base.1 > 0 {
                    time_base = c.time_base;
                }
                if let Some((sps, pps)) = parameter_sets(&split_annex_b(&c.config)) {
                    publish_params(sps, pps, &mut params);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(bus = %self.bus, error = %e, "reading the codec configuration")
            }
        }
        let mut packetizer = Packetizer::new(self.config.mtu, 96, self.ssrc, random_u64() as u16);
        while worker.keep_running() {
            if self.keyframe_wanted.swap(false, Ordering::Relaxed) {
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
            self.metrics.frame_in();
            if frame.skipped() > 0 {
                add(&self.metrics.skipped_on_bus, frame.skipped());
            }
            let key = frame.is_keyframe();
            let nals = split_annex_b(&frame);
            if key {
                // The SPS in band wins over the header (a bus without
                // codec configuration, or an encoder that changed size).
                if let Some((sps, pps)) = parameter_sets(&nals) {
                    publish_params(sps, pps, &mut params);
                }
            }
            let ticks = to_90k(frame.pts(), time_base);
            let rtp_ts = self.rtp_ts_of(ticks);
            let packets = packetizer.packetize(&nals, rtp_ts);
            let au = Arc::new(AccessUnit {
                packets,
                key,
                rtp_ts,
                mono_ns: frame.mono_ns(),
                bytes: frame.len(),
            });
            *self.clock.lock() = Some((ticks, frame.mono_ns()));
            drop(nals);
            drop(frame);
            self.metrics.frame_out(au.bytes, key);
            let mut f = self.fanout.lock();
            if key {
                f.gop.clear();
            }
            if (key || !f.gop.is_empty()) && f.gop.len() < GOP_CACHE_MAX {
                f.gop.push(Arc::clone(&au));
            }
            // An error only means nobody listens right now.
            let _ = f.tx.send(au);
        }
        self.fanout.lock().gop.clear();
        tracing::info!(stream = %self.path, "reader stopped (no clients)");
    }

    /// The reader loop of an Opus stream: one RTP packet per Opus packet
    /// (RFC 7587 §4.2), its timestamp the packet's pts at 48 kHz.
    fn run_opus(&self, mut reader: Reader, worker: &Worker<()>) {
        let spec = *reader.spec();
        let time_base = match reader.codec() {
            Ok(Some(c)) if c.time_base.0 > 0 && c.time_base.1 > 0 => c.time_base,
            _ => (1, spec.sample_rate()),
        };
        self.params.send_replace(Some(Ok(StreamParams {
            sps: Vec::new(),
            pps: Vec::new(),
            width: spec.channels(),
            height: 0,
            fps: spec.fps.as_f64().round().max(1.0) as u32,
        })));
        let mut seq = random_u64() as u16;
        while worker.keep_running() {
            let frame = match reader.next_encoded(Some(Duration::from_millis(20))) {
                Ok(f) => f,
                Err(ReadError::Timeout { .. }) => continue,
                Err(ReadError::ProducerGone { .. }) => {
                    tracing::warn!(bus = %self.bus, "audio encoder gone; waiting for a new one");
                    self.fanout.lock().gop.clear();
                    continue;
                }
                Err(e) => {
                    tracing::warn!(bus = %self.bus, error = %e, "read failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            self.metrics.frame_in();
            if frame.skipped() > 0 {
                add(&self.metrics.skipped_on_bus, frame.skipped());
            }
            let ticks = to_clock(frame.pts(), time_base, OPUS_CLOCK);
            let rtp_ts = self.rtp_ts_of(ticks);
            let mut packet = Vec::with_capacity(12 + frame.len());
            RtpHeader {
                marker: false,
                payload_type: OPUS_PT,
                seq,
                timestamp: rtp_ts,
                ssrc: self.ssrc,
            }
            .write(&mut packet);
            packet.extend_from_slice(&frame);
            seq = seq.wrapping_add(1);
            let au = Arc::new(AccessUnit {
                packets: vec![packet],
                key: true,
                rtp_ts,
                mono_ns: frame.mono_ns(),
                bytes: frame.len(),
            });
            *self.clock.lock() = Some((ticks, frame.mono_ns()));
            drop(frame);
            self.metrics.frame_out(au.bytes, true);
            let mut f = self.fanout.lock();
            f.gop.clear();
            f.gop.push(Arc::clone(&au));
            let _ = f.tx.send(au);
        }
        self.fanout.lock().gop.clear();
        tracing::info!(stream = %self.path, "reader stopped (no clients)");
    }
}

/// All streams of the server, created on first use.
#[derive(Debug)]
pub struct Streams {
    config: Arc<Config>,
    map: Mutex<HashMap<String, Arc<Stream>>>,
}

/// The encoded bus a URL path names: `/{bus}/{profile}` is
/// `{bus}.h264.{profile}`, `/{name}` is the bus `name` itself.
pub fn bus_of_path(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [bus, profile] => Some(encoded_bus_name(bus, profile)),
        [name] => Some((*name).to_string()),
        _ => None,
    }
}

impl Streams {
    /// An empty registry.
    pub fn new(config: Arc<Config>) -> Streams {
        Streams {
            config,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The stream at `path` (`bus/profile` or an encoded bus name), created
    /// (not started) if new.
    ///
    /// A new entry is only created for an encoded bus whose segment exists,
    /// so requests for made-up paths (scanners) leave nothing behind; each
    /// creation also prunes the entries of buses that are gone (see
    /// [`Streams::prune`]).
    pub fn get(&self, path: &str) -> Result<Arc<Stream>, StreamError> {
        let path = path.trim_matches('/').to_string();
        let bus = bus_of_path(&path).ok_or_else(|| StreamError::BadPath(path.clone()))?;
        let no_bus = |why: String| StreamError::NoBus {
            path: path.clone(),
            bus: bus.clone(),
            why,
        };
        framebus::validate_name(&bus).map_err(|e| no_bus(e.to_string()))?;
        if let Some(s) = self.map.lock().get(&path) {
            return Ok(Arc::clone(s));
        }
        // Outside the lock: stat reads the segment's header.
        let info = framebus::stat(&bus, self.config.shm_dir.as_deref())
            .map_err(|e| no_bus(e.to_string()))?;
        let clock_rate = if info.format == PixelFormat::H264.name() {
            CLOCK_RATE
        } else if info.format == PixelFormat::Opus.name() {
            OPUS_CLOCK
        } else {
            return Err(StreamError::NotEncoded(bus, info.format));
        };
        self.prune();
        let mut map = self.map.lock();
        Ok(Arc::clone(map.entry(path.clone()).or_insert_with(|| {
            Stream::new(path, bus, Arc::clone(&self.config), clock_rate)
        })))
    }

    /// The sound of the camera a video path shows: its Opus bus
    /// (`{cam}.opus`, docs/audio.md) as a stream, when the bus exists;
    /// `None` for a camera without a microphone (video only).
    pub fn audio_of(&self, path: &str) -> Option<(Arc<Stream>, framebus::BusInfo)> {
        let path = path.trim_matches('/');
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let camera = match parts.as_slice() {
            [bus, _profile] => *bus,
            [name] => framebus::contract::encoder::split(name)?.0,
            _ => return None,
        };
        let bus = framebus::contract::audio::opus_bus(camera);
        let info = framebus::stat(&bus, self.config.shm_dir.as_deref()).ok()?;
        if info.format != PixelFormat::Opus.name() || !info.producer_alive {
            return None;
        }
        Some((self.get(&bus).ok()?, info))
    }

    /// Drops the entries of streams that are idle (reader stopped, no
    /// client) and whose bus no longer exists. Their counters go with
    /// them.
    pub fn prune(&self) {
        let idle: Vec<(String, Arc<Stream>)> = self
            .map
            .lock()
            .iter()
            .filter(|(_, s)| s.clients() == 0 && !s.is_running())
            .map(|(k, s)| (k.clone(), Arc::clone(s)))
            .collect();
        let shm_dir = self.config.shm_dir.as_deref();
        let gone: Vec<String> = idle
            .into_iter()
            .filter(|(_, s)| framebus::stat(s.bus(), shm_dir).is_err())
            .map(|(k, _)| k)
            .collect();
        if gone.is_empty() {
            return;
        }
        let mut map = self.map.lock();
        for k in gone {
            // Re-check under the lock: a client may have arrived.
            let still_idle = map
                .get(&k)
                .is_some_and(|s| s.clients() == 0 && !s.is_running());
            if still_idle {
                map.remove(&k);
                tracing::debug!(path = %k, "forgot the stream of a vanished bus");
            }
        }
    }

    /// Every stream created so far.
    pub fn all(&self) -> Vec<Arc<Stream>> {
        self.map.lock().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_encoded_buses() {
        assert_eq!(bus_of_path("cam0/high").as_deref(), Some("cam0.h264.high"));
        assert_eq!(bus_of_path("/py.h264/").as_deref(), Some("py.h264"));
        assert_eq!(bus_of_path("a/b/c"), None);
        assert_eq!(bus_of_path(""), None);
    }

    #[test]
    fn time_bases_convert_to_90k() {
        assert_eq!(to_clock(960, (1, 48_000), OPUS_CLOCK), 960);
        assert_eq!(to_clock(320, (1, 16_000), OPUS_CLOCK), 960);
        assert_eq!(to_90k(12345, (1, 90_000)), 12345);
        assert_eq!(to_90k(1000, (1, 1000)), 90_000);
        assert_eq!(to_90k(2, (1, 30)), 6000);
    }
}
