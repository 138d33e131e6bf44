//! The set of streams: which buses exist (configured with `--bus`, or
//! discovered with `framebus::list`), and one lazily created [`Stream`]
//! (encoder lifecycle + stats) per (bus, profile).
//!
//! A discovered bus whose segment is gone (or whose producer is dead) for
//! longer than the grace time is forgotten by [`Streams::sweep`]: its
//! streams stop and it leaves the index and the API. Buses named with
//! `--bus` are never forgotten (they wait for their producer).
//!
//! [`Streams::shut_down`] tells every viewer's stream to end (graceful
//! shutdown of the server).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use framebus::BusInfo;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::config::Profile;
use super::encoder::{self, Jpeg};
use super::error::ApiError;
use crate::common::demand::OnDemand;
use crate::common::follow::{BusHealth, FollowOptions};
use crate::common::stats::StreamStats;

/// One (bus, profile) stream.
#[derive(Debug)]
pub struct Stream {
    /// Bus name.
    pub bus: String,
    /// Profile.
    pub profile: Profile,
    /// Encoder lifecycle and newest-frame hand-off.
    pub demand: Arc<OnDemand<Jpeg>>,
    /// Counters.
    pub stats: Arc<StreamStats>,
    /// Bus condition as seen by the encoder.
    pub health: Arc<BusHealth>,
}

/// Settings for [`Streams`].
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// Profiles in display order.
    pub profiles: Vec<Profile>,
    /// Buses named on the command line.
    pub buses: Vec<String>,
    /// Also serve buses found by `framebus::list`.
    pub discover: bool,
    /// Shared-memory directory.
    pub shm_dir: Option<PathBuf>,
    /// Grace time after the last viewer.
    pub grace: Duration,
    /// Viewer limit per stream.
    pub max_viewers: usize,
}

/// A bus as shown to clients.
#[derive(Debug, Clone)]
pub struct BusView {
    /// Name.
    pub name: String,
    /// Its header, when the segment exists.
    pub info: Option<BusInfo>,
}

/// Whether a bus holds pictures to JPEG-encode: not an encoded bus
/// (`{bus}.h264.{profile}`, written by the encoders) and not a camera's
/// microphone (`{bus}.audio`, `{bus}.opus`: shown under their camera,
/// [`super::audio`]). Discovery serves only these.
fn pictures(info: &BusInfo) -> bool {
    info.format
        .parse::<framebus::PixelFormat>()
        .is_ok_and(|f| !f.is_encoded() && !f.is_audio())
}

/// All streams.
#[derive(Debug)]
pub struct Streams {
    cfg: StreamsConfig,
    map: Mutex<BTreeMap<(String, String), Arc<Stream>>>,
    /// Discovered buses seen missing, and since when.
    missing: Mutex<HashMap<String, Instant>>,
    /// True once the server shuts down.
    shutdown: watch::Sender<bool>,
}

impl Streams {
    /// An empty set.
    pub fn new(cfg: StreamsConfig) -> Streams {
        Streams {
            cfg,
            map: Mutex::new(BTreeMap::new()),
            missing: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
        }
    }

    /// Tell every viewer's stream to end (after its current part).
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Becomes `true` when [`Streams::shut_down`] is called.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Forget discovered buses that have been gone (no segment, or no live
    /// producer) for longer than the grace time: stop their streams (which
    /// ends their viewers' responses) and drop them from the index and the
    /// API. Call it periodically (the server does, every second); it reads
    /// bus headers, so not from an async task directly.
    pub fn sweep(&self) {
        let discovered: BTreeSet<String> = self
            .map
            .lock()
            .keys()
            .map(|(b, _)| b.clone())
            .filter(|b| !self.cfg.buses.contains(b))
            .collect();
        let now = Instant::now();
        let mut missing = self.missing.lock();
        missing.retain(|b, _| discovered.contains(b));
        for bus in discovered {
            if self.stat(&bus).is_some_and(|i| i.producer_alive) {
                missing.remove(&bus);
                continue;
            }
            let since = *missing.entry(bus.clone()).or_insert(now);
            if now.duration_since(since) <= self.cfg.grace {
                continue;
            }
            missing.remove(&bus);
            let gone: Vec<Arc<Stream>> = {
                let mut map = self.map.lock();
                let keys: Vec<_> = map.keys().filter(|(b, _)| *b == bus).cloned().collect();
                keys.iter().filter_map(|k| map.remove(k)).collect()
            };
            for s in gone {
                s.demand.stop();
            }
            tracing::info!(bus = %bus, grace = ?self.cfg.grace, "bus gone for longer than the grace time: forgotten");
        }
    }

    /// Configuration.
    pub fn config(&self) -> &StreamsConfig {
        &self.cfg
    }

    /// Profile by name.
    pub fn profile(&self, name: &str) -> Result<&Profile, ApiError> {
        self.cfg
            .profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ApiError::UnknownProfile {
                profile: name.to_string(),
                known: self
                    .cfg
                    .profiles
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn stat(&self, name: &str) -> Option<BusInfo> {
        framebus::stat(name, self.cfg.shm_dir.as_deref()).ok()
    }

    /// Whether `name` is served.
    fn known(&self, name: &str) -> bool {
        if framebus::validate_name(name).is_err() {
            return false;
        }
        self.cfg.buses.iter().any(|b| b == name)
            || self.map.lock().keys().any(|(b, _)| b == name)
            || (self.cfg.discover
                && self
                    .stat(name)
                    .is_some_and(|i| i.producer_alive && pictures(&i)))
    }

    /// Served buses: configured ones first, then discovered live ones.
    pub fn buses(&self) -> Vec<BusView> {
        let mut out: Vec<BusView> = self
            .cfg
            .buses
            .iter()
            .map(|b| BusView {
                name: b.clone(),
                info: self.stat(b),
            })
            .collect();
        let mut extra: Vec<String> = self
            .map
            .lock()
            .keys()
            .map(|(b, _)| b.clone())
            .filter(|b| !self.cfg.buses.contains(b))
            .collect();
        if self.cfg.discover {
            let listed = match &self.cfg.shm_dir {
                Some(d) => framebus::list_in(Some(d)),
                None => framebus::list(),
            };
            for info in listed.unwrap_or_default() {
                if info.producer_alive && pictures(&info) && !self.cfg.buses.contains(&info.name) {
                    extra.push(info.name);
                }
            }
        }
        extra.sort();
        extra.dedup();
        out.extend(extra.into_iter().map(|name| BusView {
            info: self.stat(&name),
            name,
        }));
        out
    }

    /// The stream of (bus, profile); 404 when either is unknown.
    pub fn get(&self, bus: &str, profile: &str) -> Result<Arc<Stream>, ApiError> {
        let profile = self.profile(profile)?.clone();
        if let Some(s) = self
            .map
            .lock()
            .get(&(bus.to_string(), profile.name.clone()))
        {
            return Ok(s.clone());
        }
        if !self.known(bus) {
            return Err(ApiError::UnknownBus(bus.to_string()));
        }
        Ok(self.create(bus, profile))
    }

    /// Every existing stream (those created so far), in (bus, profile) order.
    pub fn existing(&self) -> Vec<Arc<Stream>> {
        self.map.lock().values().cloned().collect()
    }

    fn create(&self, bus: &str, profile: Profile) -> Arc<Stream> {
        let mut map = self.map.lock();
        let key = (bus.to_string(), profile.name.clone());
        if let Some(s) = map.get(&key) {
            return s.clone();
        }
        let stats = Arc::new(StreamStats::default());
        let health = Arc::new(BusHealth::default());
        let opts = FollowOptions {
            shm_dir: self.cfg.shm_dir.clone(),
            ..FollowOptions::default()
        };
        let (b, p, s, h) = (
            bus.to_string(),
            profile.clone(),
            stats.clone(),
            health.clone(),
        );
        let demand = OnDemand::new(self.cfg.grace, self.cfg.max_viewers, move |worker| {
            encoder::spawn(
                worker,
                b.clone(),
                p.clone(),
                s.clone(),
                h.clone(),
                opts.clone(),
            )
        });
        let stream = Arc::new(Stream {
            bus: bus.to_string(),
            profile,
            demand,
            stats,
            health,
        });
        map.insert(key, stream.clone());
        stream
    }
}
