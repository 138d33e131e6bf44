//! The set of streams: which buses exist (configured with `--bus`, or
//! discovered with `framebus::list`), and one lazily created [`Stream`]
//! (encoder lifecycle + stats) per (bus, profile).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use framebus::BusInfo;
use parking_lot::Mutex;

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

/// All streams.
#[derive(Debug)]
pub struct Streams {
    cfg: StreamsConfig,
    map: Mutex<BTreeMap<(String, String), Arc<Stream>>>,
}

impl Streams {
    /// An empty set.
    pub fn new(cfg: StreamsConfig) -> Streams {
        Streams {
            cfg,
            map: Mutex::new(BTreeMap::new()),
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
            || (self.cfg.discover && self.stat(name).is_some_and(|i| i.producer_alive))
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
                if info.producer_alive && !self.cfg.buses.contains(&info.name) {
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
