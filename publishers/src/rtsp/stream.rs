//! One encoded stream per (bus, profile), shared by all its clients.
//!
//! Lifecycle: [`crate::common::demand::OnDemand`], as in `framebus-mjpeg`.
//! The first DESCRIBE or SETUP starts an encoder thread; every client holds
//! a [`ClientSlot`] (a viewer ticket, counted against `--max-clients`); the
//! thread stops `grace` after the last slot is dropped (a DESCRIBE alone
//! also keeps it alive for `grace`: it joins and leaves at once). The
//! start/stop decision is taken under `OnDemand`'s one mutex, so a client
//! arriving while the thread decides to stop either keeps it running or
//! starts a new one, never neither. The newest-value hand-off of
//! `OnDemand` is not used: RTP needs every access unit (below).
//!
//! Fan-out: the thread packetizes each access unit once and sends it on a
//! bounded `tokio::sync::broadcast` channel; it never waits for a client. A
//! client that falls behind by more than the channel holds gets `Lagged`,
//! skips to the next IDR and asks for one (rate-limited).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use framebus::{ReadError, Reader, ReaderOptions};
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

use super::config::{Config, Profile};
use super::h264::{split_annex_b, Packetizer};
use super::metrics::{add, StreamMetrics};
use super::rtp::CLOCK_RATE;
use crate::common::demand::{JoinError, JoinKind, OnDemand, Ticket, Worker};
use crate::encoder::clock::FrameClock;
use crate::encoder::{EncodeSettings, H264Encoder};

/// Access units the fan-out channel holds (about half a second at 30 fps).
const FANOUT_DEPTH: usize = 16;
/// Shortest interval between two IDRs forced for joining clients.
const IDR_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// How long a DESCRIBE waits for the encoder's parameter sets.
pub const PARAMS_WAIT: Duration = Duration::from_secs(8);

/// One packetized access unit.
#[derive(Debug)]
pub struct AccessUnit {
    /// RTP packets (headers included) with the stream's sequence numbers;
    /// each client rewrites the sequence number to its own.
    pub packets: Vec<Vec<u8>>,
    /// An IDR (preceded by SPS and PPS).
    pub key: bool,
    /// RTP timestamp.
    pub rtp_ts: u32,
    /// Presentation time (CLOCK_MONOTONIC ns): the capture time placed on
    /// the output frame grid (see `clock`).
    pub mono_ns: u64,
}

/// What a DESCRIBE needs to know about a running stream.
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
    /// Encoded frame rate.
    pub fps: u32,
}

/// Why a stream cannot be served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// No such profile.
    #[error("unknown profile {0:?}")]
    UnknownProfile(String),
    /// The bus is absent or has no live producer.
    #[error("bus {0:?} is not available: {1}")]
    NoBus(String, String),
    /// The encoder failed.
    #[error("encoder for {0} failed: {1}")]
    Encoder(String, String),
    /// The stream has its maximum number of clients.
    #[error("stream {0} has its maximum of {1} clients")]
    Full(String, usize),
    /// The encoder did not produce parameter sets in time.
    #[error("stream {0} did not start within {1:?}")]
    Timeout(String, Duration),
}

/// A shared encoded stream.
#[derive(Debug)]
pub struct Stream {
    /// `bus/profile`.
    pub path: String,
    bus: String,
    profile: Profile,
    config: Arc<Config>,
    /// Encoder thread lifecycle (clients are its viewers).
    demand: Arc<OnDemand<()>>,
    tx: broadcast::Sender<Arc<AccessUnit>>,
    params: watch::Sender<Option<Result<StreamParams, StreamError>>>,
    idr_requested: AtomicBool,
    /// SSRC of the stream's RTP packets.
    pub ssrc: u32,
    ts_offset: u32,
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

impl Stream {
    fn new(bus: &str, profile: Profile, config: Arc<Config>) -> Arc<Stream> {
        let (tx, _) = broadcast::channel(FANOUT_DEPTH);
        let (params, _) = watch::channel(None);
        let r = random_u64();
        Arc::new_cyclic(|me: &Weak<Stream>| Stream {
            path: format!("{bus}/{}", profile.name),
            bus: bus.to_string(),
            profile,
            demand: {
                // Weak: the stream owns its lifecycle, not the reverse.
                let me = me.clone();
                OnDemand::new(config.grace, config.max_clients, move |worker| {
                    if let Some(me) = me.upgrade() {
                        me.start(worker);
                    }
                })
            },
            config,
            tx,
            params,
            idr_requested: AtomicBool::new(false),
            ssrc: r as u32,
            ts_offset: (r >> 32) as u32,
            metrics: StreamMetrics::default(),
        })
    }

    /// Clients currently holding a slot.
    pub fn clients(&self) -> usize {
        self.demand.status().viewers
    }

    /// True while the encoder thread runs.
    pub fn is_running(&self) -> bool {
        self.demand.status().running
    }

    /// How long the encoder thread has been running (`None` when idle).
    pub fn uptime(&self) -> Option<Duration> {
        self.demand.status().uptime
    }

    /// Encoder thread starts.
    pub fn starts(&self) -> u64 {
        self.demand.status().starts
    }

    /// The bus name.
    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// The profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The profile name.
    pub fn profile_name(&self) -> &str {
        &self.profile.name
    }

    /// The client limit.
    pub fn max_clients(&self) -> usize {
        self.config.max_clients
    }

    /// The profile's bit rate, bits per second.
    pub fn target_bitrate(&self) -> u64 {
        self.profile.bitrate
    }

    /// The stream's counters.
    pub fn metrics(&self) -> &StreamMetrics {
        &self.metrics
    }

    /// The parameters of the running encoder, if it has opened.
    pub fn current_params(&self) -> Option<StreamParams> {
        self.params
            .borrow()
            .as_ref()
            .and_then(|p| p.as_ref().ok().cloned())
    }

    /// Why the stream last failed (missing bus, encoder error), while that
    /// is the latest news from the encoder thread.
    pub fn failure(&self) -> Option<String> {
        match self.params.borrow().as_ref() {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        }
    }

    /// A run of the lifecycle begins (called by [`OnDemand`] outside its
    /// lock, before anyone waits for the new run's parameters).
    fn start(self: Arc<Stream>, worker: Worker<()>) {
        self.params.send_replace(None);
        std::thread::Builder::new()
            .name(format!("enc {}", self.path))
            .spawn(move || self.run(&worker))
            .expect("spawn encoder thread");
    }

    /// Starts the encoder thread if it is not running, and marks the
    /// stream as just used (the grace time counts from now): joins and
    /// leaves at once.
    fn touch(&self) {
        drop(self.demand.join(JoinKind::Snapshot));
    }

    /// Takes a client slot, starting the encoder if needed.
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

    /// Waits for the running encoder's parameters (starting it if needed).
    pub async fn params(self: &Arc<Stream>) -> Result<StreamParams, StreamError> {
        self.touch();
        let mut rx = self.params.subscribe();
        let waited = tokio::time::timeout(PARAMS_WAIT, async {
            loop {
                if let Some(p) = rx.borrow_and_update().clone() {
                    return p;
                }
                if rx.changed().await.is_err() {
                    return Err(StreamError::Timeout(self.path.clone(), PARAMS_WAIT));
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| Err(StreamError::Timeout(self.path.clone(), PARAMS_WAIT)))
    }

    /// Subscribes to access units.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AccessUnit>> {
        self.tx.subscribe()
    }

    /// Asks the encoder for an IDR soon (rate-limited by the encoder).
    pub fn request_idr(&self) {
        self.idr_requested.store(true, Ordering::Relaxed);
    }

    /// The RTP timestamp for a CLOCK_MONOTONIC time.
    pub fn rtp_ts(&self, mono_ns: u64) -> u32 {
        let ticks = (u128::from(mono_ns) * u128::from(CLOCK_RATE) / 1_000_000_000) as u64;
        (ticks as u32).wrapping_add(self.ts_offset)
    }

    fn fail(&self, e: StreamError) {
        tracing::warn!(stream = %self.path, error = %e, "stream failed");
        self.params.send_replace(Some(Err(e)));
    }

    /// The encoder thread: one run of the lifecycle, until `worker` says
    /// nobody needs it (or it returns early: the next client starts a new
    /// run).
    fn run(&self, worker: &Worker<()>) {
        tracing::info!(stream = %self.path, "encoder starting");
        let opts = ReaderOptions {
            wait: None,
            shm_dir: self.config.shm_dir.clone(),
        };
        let mut reader = match Reader::attach(&self.bus, opts) {
            Ok(r) => r,
            Err(e) => {
                self.fail(StreamError::NoBus(self.bus.clone(), e.to_string()));
                // Stay "running" until idle so that a burst of requests
                // for a missing bus does not spawn a thread each; the
                // state is re-checked on the next touch after stopping.
                while worker.keep_running() {
                    std::thread::sleep(Duration::from_millis(100));
                    if framebus::stat(&self.bus, self.config.shm_dir.as_deref()).is_ok() {
                        // The bus appeared: end this run (dropping the
                        // worker); the next touch starts a new one.
                        return;
                    }
                }
                return;
            }
        };
        let mut enc: Option<H264Encoder> = None;
        let mut packetizer = Packetizer::new(self.config.mtu, 96, self.ssrc, random_u64() as u16);
        let mut clock: Option<FrameClock> = None;
        let mut last_idr = Instant::now() - IDR_MIN_INTERVAL;
        while worker.keep_running() {
            let frame = match reader.next(Some(Duration::from_millis(200))) {
                Ok(f) => f,
                Err(ReadError::Timeout { .. }) => continue,
                Err(ReadError::ProducerGone { .. }) => {
                    tracing::warn!(bus = %self.bus, "producer gone; waiting for a new one");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(bus = %self.bus, error = %e, "read failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            self.metrics.frame_in();
            let spec = *frame.spec();
            let fps = self
                .profile
                .fps
                .unwrap_or_else(|| spec.fps.as_f64().round().max(1.0) as u32);
            // Frame selection and presentation time on the output grid
            // (see `clock`): at most one frame per 1/fps, never two
            // presentation times closer than that.
            let clock = clock.get_or_insert_with(|| FrameClock::new(fps));
            clock.set_fps(fps);
            let Some(mono) = clock.place(frame.mono_ns()) else {
                continue;
            };
            if enc.as_ref().is_none_or(|e| *e.src_spec() != spec) {
                let (width, height) = self.profile.size.unwrap_or((spec.width, spec.height));
                let settings = EncodeSettings {
                    width: width & !1,
                    height: height & !1,
                    fps,
                    bitrate: self.profile.bitrate,
                    gop: self.profile.gop.unwrap_or(fps * 2),
                    encoder: self.config.encoder,
                };
                match H264Encoder::open(spec, settings) {
                    Ok(e) => {
                        let (sps, pps) = e.parameter_sets();
                        self.params.send_replace(Some(Ok(StreamParams {
                            sps: sps.to_vec(),
                            pps: pps.to_vec(),
                            width: settings.width,
                            height: settings.height,
                            fps,
                        })));
                        enc = Some(e);
                    }
                    Err(e) => {
                        self.fail(StreamError::Encoder(self.path.clone(), e.to_string()));
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                }
            }
            let Some(e) = enc.as_mut() else { continue };
            // 90 kHz from the grid time: strictly increasing by at least
            // one frame interval.
            let pts = (u128::from(mono) * u128::from(CLOCK_RATE) / 1_000_000_000) as i64;
            let force = self.idr_requested.load(Ordering::Relaxed)
                && last_idr.elapsed() >= IDR_MIN_INTERVAL;
            if force {
                self.idr_requested.store(false, Ordering::Relaxed);
                add(&self.metrics.idrs_forced, 1);
            }
            let t0 = Instant::now();
            let aus = match e.encode(&frame, pts, force) {
                Ok(a) => a,
                Err(err) => {
                    add(&self.metrics.encode_errors, 1);
                    self.fail(StreamError::Encoder(self.path.clone(), err.to_string()));
                    enc = None;
                    continue;
                }
            };
            let took = t0.elapsed();
            drop(frame);
            for au in aus {
                self.metrics.frame_encoded(au.data.len(), au.key, took);
                if au.key {
                    last_idr = Instant::now();
                }
                let rtp_ts = self.rtp_ts(mono);
                let packets = packetizer.packetize(&split_annex_b(&au.data), rtp_ts);
                // An error only means nobody listens right now.
                let _ = self.tx.send(Arc::new(AccessUnit {
                    packets,
                    key: au.key,
                    rtp_ts,
                    mono_ns: mono,
                }));
            }
        }
        tracing::info!(stream = %self.path, "encoder stopped (no clients)");
    }
}

/// All streams of the server, created on first use.
#[derive(Debug)]
pub struct Streams {
    config: Arc<Config>,
    map: Mutex<HashMap<(String, String), Arc<Stream>>>,
}

impl Streams {
    /// An empty registry.
    pub fn new(config: Arc<Config>) -> Streams {
        Streams {
            config,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The stream for `bus/profile`, created (not started) if new.
    ///
    /// A new entry is only created for a bus whose segment exists, so
    /// requests for made-up paths (scanners) leave nothing behind; each
    /// creation also prunes the entries of buses that are gone (see
    /// [`Streams::prune`]). The registry therefore holds at most one entry
    /// per (existing bus, profile) plus the streams still in use.
    pub fn get(&self, bus: &str, profile: &str) -> Result<Arc<Stream>, StreamError> {
        framebus::validate_name(bus)
            .map_err(|e| StreamError::NoBus(bus.to_string(), e.to_string()))?;
        let p = self
            .config
            .profiles
            .iter()
            .find(|p| p.name == profile)
            .ok_or_else(|| StreamError::UnknownProfile(profile.to_string()))?;
        let key = (bus.to_string(), profile.to_string());
        if let Some(s) = self.map.lock().get(&key) {
            return Ok(Arc::clone(s));
        }
        // Outside the lock: stat reads the segment's header.
        framebus::stat(bus, self.config.shm_dir.as_deref())
            .map_err(|e| StreamError::NoBus(bus.to_string(), e.to_string()))?;
        self.prune();
        let mut map = self.map.lock();
        Ok(Arc::clone(map.entry(key).or_insert_with(|| {
            Stream::new(bus, p.clone(), Arc::clone(&self.config))
        })))
    }

    /// Drops the entries of streams that are idle (encoder stopped, no
    /// client) and whose bus no longer exists. Their counters go with
    /// them.
    pub fn prune(&self) {
        let idle: Vec<((String, String), Arc<Stream>)> = self
            .map
            .lock()
            .iter()
            .filter(|(_, s)| s.clients() == 0 && !s.is_running())
            .map(|(k, s)| (k.clone(), Arc::clone(s)))
            .collect();
        let shm_dir = self.config.shm_dir.as_deref();
        let gone: Vec<(String, String)> = idle
            .into_iter()
            .filter(|((bus, _), _)| framebus::stat(bus, shm_dir).is_err())
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
                tracing::debug!(bus = %k.0, profile = %k.1, "forgot the stream of a vanished bus");
            }
        }
    }

    /// Every stream created so far.
    pub fn all(&self) -> Vec<Arc<Stream>> {
        self.map.lock().values().cloned().collect()
    }
}
