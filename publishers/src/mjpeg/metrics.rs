//! The `framebus_mjpeg_*{bus,profile}` series of `/metrics`, written on each
//! scrape from the current stream statistics (streams come and go with
//! buses, so nothing is kept registered). `/metrics` itself, and the
//! `framebus_bus_*{bus}` series of the served buses (the same names and
//! meanings as `framebus status --prometheus`), are the shared
//! [`crate::common::http`]'s. Every metric is in `docs/metrics.md`.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

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
