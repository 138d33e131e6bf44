//! The `framebus_mjpeg_*{bus,profile}` series of `/metrics`, written on each
//! scrape from the current stream statistics (streams come and go with
//! buses, so nothing is kept registered). `/metrics` itself, and the
//! `framebus_bus_*{bus}` series of the served buses (the same names and
//! meanings as `framebus status --prometheus`), are the shared
//! [`crate::common::http`]'s. [`AudioCollector`] writes the
//! `framebus_audio_*{bus}` series of the served cameras' microphones
//! ([`super::audio`]). Every metric is in `docs/metrics.md`.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::audio::{self, Microphone};
use super::streams::{Stream, Streams};
use crate::common::demand::DemandStatus;
use crate::common::http::family;
use crate::common::stats::StatsSnapshot;

/// One stream at the moment of the scrape.
struct Sample {
    labels: [(&'static str, String); 2],
    stats: StatsSnapshot,
    demand: DemandStatus,
}

/// Name, help and value of a per-stream counter.
type CounterDef = (&'static str, &'static str, fn(&Sample) -> u64);
/// Name, help and value of a per-stream gauge.
type GaugeDef = (&'static str, &'static str, fn(&Sample) -> f64);

/// Writes the per-stream series of every existing stream on each scrape.
#[derive(Debug)]
pub struct MjpegCollector {
    streams: Arc<Streams>,
}

impl MjpegCollector {
    /// A collector over `streams`.
    pub fn new(streams: Arc<Streams>) -> MjpegCollector {
        MjpegCollector { streams }
    }
}

fn sample(s: &Stream) -> Sample {
    Sample {
        labels: [("bus", s.bus.clone()), ("profile", s.profile.name.clone())],
        stats: s.stats.snapshot(),
        demand: s.demand.status(),
    }
}

impl Collector for MjpegCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let samples: Vec<Sample> = self.streams.existing().iter().map(|s| sample(s)).collect();
        let counters: [CounterDef; 7] = [
            ("frames_in", "Bus frames seen by the encoder", |s| {
                s.stats.frames_in
            }),
            ("frames_out", "Frames encoded", |s| s.stats.frames_out),
            ("bytes_out", "JPEG bytes encoded (once per frame)", |s| {
                s.stats.bytes_out
            }),
            (
                "bytes_sent",
                "Bytes written to viewers' sockets (headers and parts, every viewer)",
                |s| s.stats.bytes_sent,
            ),
            (
                "frames_dropped_slow",
                "Frames skipped by slow viewers",
                |s| s.stats.dropped_slow,
            ),
            ("encode_errors", "Frames that failed to encode", |s| {
                s.stats.encode_errors
            }),
            ("encoder_starts", "Encoder runs started", |s| {
                s.demand.starts
            }),
        ];
        let gauges: [GaugeDef; 5] = [
            ("running", "1 while the encoder runs", |s| {
                f64::from(u8::from(s.demand.running))
            }),
            ("viewers", "Connected viewers", |s| s.demand.viewers as f64),
            ("input_fps", "Bus frames per second (last 2 s)", |s| {
                s.stats.input_fps
            }),
            ("output_fps", "Encoded frames per second (last 2 s)", |s| {
                s.stats.output_fps
            }),
            (
                "encode_ms_p50",
                "Median encode time, ms (last 120 frames)",
                |s| s.stats.encode_ms_p50,
            ),
        ];
        let labels = |s: &Sample| s.labels.clone();
        for (name, help, v) in counters {
            family(
                &mut enc,
                &format!("framebus_mjpeg_{name}"),
                help,
                MetricType::Counter,
                &samples,
                labels,
                |s| ConstCounter::new(v(s)),
            )?;
        }
        for (name, help, v) in gauges {
            family(
                &mut enc,
                &format!("framebus_mjpeg_{name}"),
                help,
                MetricType::Gauge,
                &samples,
                labels,
                |s| ConstGauge::new(v(s)),
            )?;
        }
        Ok(())
    }
}

/// `framebus_audio_*{bus}`: per microphone of a served camera, the level,
/// xruns and format of its PCM bus (`bus="cam0.audio"`) and the state of
/// its Opus encode (`bus="cam0.opus"`), read from the bus headers on each
/// scrape. A camera without a microphone has none of these series.
#[derive(Debug)]
pub struct AudioCollector {
    streams: Arc<Streams>,
}

impl AudioCollector {
    /// A collector over the cameras of `streams`.
    pub fn new(streams: Arc<Streams>) -> AudioCollector {
        AudioCollector { streams }
    }
}

/// Name, help and value of a per-microphone gauge.
type AudioGauge = (&'static str, &'static str, fn(&Microphone) -> f64);

impl Collector for AudioCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mics = audio::served(&self.streams);
        let pcm: Vec<&Microphone> = mics.iter().filter(|m| m.pcm.is_some()).collect();
        let opus: Vec<&Microphone> = mics.iter().filter(|m| m.opus.is_some()).collect();
        let name =
            |b: &Option<framebus::BusInfo>| b.as_ref().map_or_else(String::new, |i| i.name.clone());
        let pcm_label = |m: &&Microphone| [("bus", name(&m.pcm))];
        let opus_label = |m: &&Microphone| [("bus", name(&m.opus))];
        let gauges: [AudioGauge; 5] = [
            (
                "up",
                "1 while the microphone captures (PCM bus live, source running)",
                |m| f64::from(u8::from(m.capturing())),
            ),
            (
                "peak_dbfs",
                "Peak of the last 20 ms chunk, dBFS (silence and a stopped microphone: -120)",
                Microphone::peak_dbfs,
            ),
            (
                "rms_dbfs",
                "RMS of the last 20 ms chunk, dBFS (silence and a stopped microphone: -120)",
                Microphone::rms_dbfs,
            ),
            ("sample_rate", "Samples per second", |m| {
                m.pcm.as_ref().map_or(0.0, |i| f64::from(i.sample_rate))
            }),
            ("channels", "Channels", |m| {
                m.pcm.as_ref().map_or(0.0, |i| f64::from(i.channels))
            }),
        ];
        for (n, help, v) in gauges {
            family(
                &mut enc,
                &format!("framebus_audio_{n}"),
                help,
                MetricType::Gauge,
                &pcm,
                pcm_label,
                |m| ConstGauge::new(v(m)),
            )?;
        }
        family(
            &mut enc,
            "framebus_audio_xruns",
            "Chunks lost because the device overran (the PCM bus's source_dropped)",
            MetricType::Counter,
            &pcm,
            pcm_label,
            |m| ConstCounter::new(m.xruns()),
        )?;
        family(
            &mut enc,
            "framebus_audio_encoder_up",
            "1 while the Opus encode flows (bus live, newest packet under 2 s old)",
            MetricType::Gauge,
            &opus,
            opus_label,
            |m| ConstGauge::new(f64::from(u8::from(m.encoding()))),
        )?;
        let aged: Vec<(&Microphone, u64)> = opus
            .iter()
            .filter_map(|m| Some((*m, m.opus.as_ref()?.last_frame_age_ms?)))
            .collect();
        family(
            &mut enc,
            "framebus_audio_encoder_last_packet_age_seconds",
            "Age of the Opus bus's newest packet, seconds",
            MetricType::Gauge,
            &aged,
            |(m, _)| opus_label(m),
            |(_, ms)| ConstGauge::new(*ms as f64 / 1000.0),
        )?;
        Ok(())
    }
}
