//! A camera's microphone as this server reports it (`docs/audio.md`):
//! its PCM bus `{camera}.audio` (the producer's capture, with the level of
//! the last chunk in the header) and its Opus encode `{camera}.opus`, read
//! from the bus headers. The console document
//! ([`crate::console::status`]), its level poll and `/metrics`
//! ([`super::metrics::AudioCollector`]) all go through [`Microphone`], so
//! they agree on what "running" and "encoding" mean.
//!
//! The headers hold each chunk's peak and RMS as dBFS, −∞ for digital
//! silence; JSON has no −∞ and a graph of one is empty, so both are
//! reported here with [`SILENCE_DBFS`] as their floor, and at that floor
//! while the microphone is not capturing (a stale level of an unplugged
//! microphone would look like sound).

use std::path::Path;

use framebus::contract::audio::{opus_bus, pcm_bus};
use framebus::BusInfo;

use super::streams::{BusView, Streams};

/// The floor of every level reported: digital silence (−∞ dBFS in the
/// header), quieter levels, and a microphone that is not capturing. 16-bit
/// samples reach down to about −90 dBFS (one step in 32768), so −120 is
/// below anything a chunk can measure.
pub const SILENCE_DBFS: f64 = -120.0;

/// The Opus bus's newest packet older than this: not encoding (the same
/// bound as the console's video encoders).
pub const ENCODING_AGE_MS: u64 = 2000;

/// One camera's microphone buses at one moment.
#[derive(Debug, Clone)]
pub struct Microphone {
    /// The camera bus (`cam0`).
    pub camera: String,
    /// `{camera}.audio`, when its segment exists.
    pub pcm: Option<BusInfo>,
    /// `{camera}.opus`, when its segment exists.
    pub opus: Option<BusInfo>,
}

impl Microphone {
    /// `camera`'s microphone from the bus headers in `shm_dir`; `None`
    /// when it has neither bus.
    pub fn stat(camera: &str, shm_dir: Option<&Path>) -> Option<Microphone> {
        let stat = |name: String| framebus::stat(&name, shm_dir).ok();
        Microphone::of(camera, stat(pcm_bus(camera)), stat(opus_bus(camera)))
    }

    /// `camera`'s microphone from a listing of the directory (what
    /// `framebus::list_in` returned); `None` when it has neither bus.
    pub fn find(camera: &str, all: &[BusInfo]) -> Option<Microphone> {
        let find = |name: String| all.iter().find(|i| i.name == name).cloned();
        Microphone::of(camera, find(pcm_bus(camera)), find(opus_bus(camera)))
    }

    fn of(camera: &str, pcm: Option<BusInfo>, opus: Option<BusInfo>) -> Option<Microphone> {
        (pcm.is_some() || opus.is_some()).then(|| Microphone {
            camera: camera.to_string(),
            pcm,
            opus,
        })
    }

    /// The microphone captures: its PCM bus is live, its producer alive
    /// and its source `running`.
    pub fn capturing(&self) -> bool {
        self.pcm
            .as_ref()
            .is_some_and(|i| i.state == "live" && i.producer_alive && i.source_state == "running")
    }

    /// Peak of the last chunk, dBFS, floored at [`SILENCE_DBFS`] (and at
    /// the floor while not [`Microphone::capturing`]).
    pub fn peak_dbfs(&self) -> f64 {
        self.level(|i| i.audio_peak_dbfs)
    }

    /// RMS of the last chunk, dBFS, floored like [`Microphone::peak_dbfs`].
    pub fn rms_dbfs(&self) -> f64 {
        self.level(|i| i.audio_rms_dbfs)
    }

    fn level(&self, of: fn(&BusInfo) -> Option<f64>) -> f64 {
        let db = self
            .pcm
            .as_ref()
            .filter(|_| self.capturing())
            .and_then(of)
            .unwrap_or(SILENCE_DBFS);
        // NaN never comes from the header's integer levels; `max` would
        // turn it into the floor anyway.
        (db.max(SILENCE_DBFS) * 10.0).round() / 10.0
    }

    /// Xruns: chunks the device overran, the PCM bus's `source_dropped`.
    pub fn xruns(&self) -> u64 {
        self.pcm.as_ref().map_or(0, |i| i.source_dropped)
    }

    /// The Opus encode is flowing: its bus is live with a live producer
    /// and its newest packet is under [`ENCODING_AGE_MS`] old.
    pub fn encoding(&self) -> bool {
        self.opus.as_ref().is_some_and(|i| {
            i.state == "live"
                && i.producer_alive
                && i.last_frame_age_ms.is_some_and(|a| a < ENCODING_AGE_MS)
        })
    }

    /// Both buses that exist, PCM first.
    pub fn buses(&self) -> impl Iterator<Item = &BusInfo> {
        self.pcm.iter().chain(self.opus.iter())
    }
}

/// The microphones of the cameras `streams` serves (configured, then
/// discovered), in that order. Reads bus headers: not from an async task.
pub fn served(streams: &Streams) -> Vec<Microphone> {
    of_cameras(&streams.buses(), streams.config().shm_dir.as_deref())
}

/// The microphones of `cameras` (what [`Streams::buses`] returned).
pub fn of_cameras(cameras: &[BusView], shm_dir: Option<&Path>) -> Vec<Microphone> {
    cameras
        .iter()
        .filter_map(|b| Microphone::stat(&b.name, shm_dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm(peak: Option<f64>, source_state: &str) -> BusInfo {
        BusInfo {
            name: "cam0.audio".into(),
            state: "live".into(),
            producer_alive: true,
            source_state: source_state.into(),
            audio_peak_dbfs: peak,
            audio_rms_dbfs: peak.map(|p| p - 3.0),
            ..BusInfo::default()
        }
    }

    #[test]
    fn levels_are_finite_and_floored() {
        let mic = |peak, state| Microphone::of("cam0", Some(pcm(peak, state)), None).unwrap();
        assert_eq!(mic(Some(-6.02), "running").peak_dbfs(), -6.0);
        assert_eq!(mic(Some(-6.02), "running").rms_dbfs(), -9.0);
        assert_eq!(
            mic(Some(f64::NEG_INFINITY), "running").peak_dbfs(),
            SILENCE_DBFS
        );
        assert_eq!(mic(Some(-150.0), "running").rms_dbfs(), SILENCE_DBFS);
        // Not capturing: the last level is stale.
        assert_eq!(mic(Some(-6.0), "reconnecting").peak_dbfs(), SILENCE_DBFS);
        assert!(Microphone::of("cam0", None, None).is_none());
    }

    #[test]
    fn found_by_the_camera_name() {
        let all = [
            pcm(Some(-1.0), "running"),
            BusInfo {
                name: "cam0.h264.low".into(),
                ..BusInfo::default()
            },
        ];
        let m = Microphone::find("cam0", &all).unwrap();
        assert_eq!(m.pcm.as_ref().map(|i| i.name.as_str()), Some("cam0.audio"));
        assert!(m.opus.is_none() && !m.encoding());
        assert!(Microphone::find("cam1", &all).is_none());
    }
}
