//! Per-stream counters of `framebus-rtsp` and their Prometheus export.
//!
//! Each [`Stream`](super::stream::Stream) owns a [`StreamMetrics`] (plain
//! atomics, a byte-rate window and a `prometheus-client` histogram of
//! encode times) that the encoder thread and the client tasks update. A
//! scrape runs [`Collector::encode`], which walks the stream registry and
//! writes every series at that moment, so streams that come and go need no
//! registration (the bus series come from the shared
//! [`crate::common::http::BusCollector`]).
//!
//! Every metric is described in `docs/rtsp.md` ("Metrics").

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;

use super::stream::{Stream, Streams};
use crate::common::http::family;
use crate::common::stats::RateMeter;

/// Window of the measured output bit rate.
const BITRATE_WINDOW: Duration = Duration::from_secs(2);
/// Upper bounds of the encode-time histogram buckets, seconds.
const ENCODE_BUCKETS: [f64; 10] = [
    0.002, 0.004, 0.008, 0.012, 0.016, 0.025, 0.033, 0.05, 0.1, 0.25,
];

/// Counters of one (bus, profile) stream since the process started.
#[derive(Debug)]
pub struct StreamMetrics {
    /// Bus frames the encoder read (before frame selection).
    pub frames_in: AtomicU64,
    /// Access units encoded.
    pub frames_encoded: AtomicU64,
    /// Bytes of encoded access units (Annex B, once per frame).
    pub encoded_bytes: AtomicU64,
    /// IDR access units encoded.
    pub idrs: AtomicU64,
    /// IDRs forced for joining or lagging clients.
    pub idrs_forced: AtomicU64,
    /// Frames that failed to convert or encode.
    pub encode_errors: AtomicU64,
    /// Bytes written to clients (RTP headers and payload, plus the
    /// 4-byte interleave framing on TCP; RTCP not included).
    pub sent_bytes: AtomicU64,
    /// RTP packets written to clients.
    pub sent_packets: AtomicU64,
    /// Access units slow clients skipped (lagged, then waited for an IDR).
    pub dropped_slow: AtomicU64,
    /// Clients disconnected because their socket took nothing for the
    /// write timeout.
    pub stalled_disconnects: AtomicU64,
    /// Clients served (SETUPs that took a slot).
    pub clients_total: AtomicU64,
    encode_seconds: Histogram,
    in_rate: RateMeter,
    out_rate: RateMeter,
    bytes_window: Mutex<VecDeque<(Instant, u64)>>,
    last_encoded: Mutex<Option<Instant>>,
}

impl Default for StreamMetrics {
    fn default() -> StreamMetrics {
        StreamMetrics {
            frames_in: AtomicU64::new(0),
            frames_encoded: AtomicU64::new(0),
            encoded_bytes: AtomicU64::new(0),
            idrs: AtomicU64::new(0),
            idrs_forced: AtomicU64::new(0),
            encode_errors: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            sent_packets: AtomicU64::new(0),
            dropped_slow: AtomicU64::new(0),
            stalled_disconnects: AtomicU64::new(0),
            clients_total: AtomicU64::new(0),
            encode_seconds: Histogram::new(ENCODE_BUCKETS),
            in_rate: RateMeter::default(),
            out_rate: RateMeter::default(),
            bytes_window: Mutex::new(VecDeque::new()),
            last_encoded: Mutex::new(None),
        }
    }
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl StreamMetrics {
    /// One bus frame read.
    pub fn frame_in(&self) {
        add(&self.frames_in, 1);
        self.in_rate.record();
    }

    /// One access unit of `bytes` encoded in `took` (convert + encode).
    pub fn frame_encoded(&self, bytes: usize, key: bool, took: Duration) {
        add(&self.frames_encoded, 1);
        add(&self.encoded_bytes, bytes as u64);
        if key {
            add(&self.idrs, 1);
        }
        self.encode_seconds.observe(took.as_secs_f64());
        self.out_rate.record();
        let now = Instant::now();
        *self.last_encoded.lock() = Some(now);
        let mut w = self.bytes_window.lock();
        w.push_back((now, bytes as u64));
        while w
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > BITRATE_WINDOW)
        {
            w.pop_front();
        }
    }

    /// `packets` RTP packets, `bytes` in all, written to one client.
    pub fn sent(&self, packets: usize, bytes: usize) {
        add(&self.sent_packets, packets as u64);
        add(&self.sent_bytes, bytes as u64);
    }

    /// When the last access unit was encoded.
    pub fn last_encoded(&self) -> Option<Instant> {
        *self.last_encoded.lock()
    }

    /// Bus frames per second reaching the encoder (last 2 s).
    pub fn input_fps(&self) -> f64 {
        self.in_rate.per_second()
    }

    /// Access units per second encoded (last 2 s).
    pub fn output_fps(&self) -> f64 {
        self.out_rate.per_second()
    }

    /// Encoded bits per second (last 2 s).
    pub fn output_bitrate(&self) -> f64 {
        let now = Instant::now();
        let w = self.bytes_window.lock();
        let bytes: u64 = w
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= BITRATE_WINDOW)
            .map(|(_, b)| b)
            .sum();
        bytes as f64 * 8.0 / BITRATE_WINDOW.as_secs_f64()
    }
}

/// Writes the stream series on every scrape (the bus series are
/// [`crate::common::http::BusCollector`]'s).
#[derive(Debug)]
pub struct RtspCollector {
    streams: Arc<Streams>,
}

impl RtspCollector {
    /// A collector over `streams`.
    pub fn new(streams: Arc<Streams>) -> RtspCollector {
        RtspCollector { streams }
    }
}

type Labels = [(&'static str, String); 2];
/// Name, help and field of a per-stream counter.
type CounterDef = (&'static str, &'static str, fn(&StreamMetrics) -> &AtomicU64);
/// Name, help and value of a per-stream gauge.
type GaugeDef = (&'static str, &'static str, fn(&Stream) -> f64);

fn stream_labels(s: &Stream) -> Labels {
    [
        ("bus", s.bus().to_string()),
        ("profile", s.profile_name().to_string()),
    ]
}

impl Collector for RtspCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut streams = self.streams.all();
        streams.sort_by(|a, b| a.path.cmp(&b.path));
        let c = |f: fn(&StreamMetrics) -> &AtomicU64| {
            move |s: &Arc<Stream>| ConstCounter::new(get(f(s.metrics())))
        };
        let sl = |s: &Arc<Stream>| stream_labels(s);
        type S = Arc<Stream>;
        let counters: [CounterDef; 11] = [
            (
                "frames_in",
                "Bus frames read by the encoder (before frame selection)",
                |m| &m.frames_in,
            ),
            ("frames_encoded", "Access units encoded", |m| {
                &m.frames_encoded
            }),
            (
                "encoded_bytes",
                "Bytes of encoded H.264 (once per access unit, not per client)",
                |m| &m.encoded_bytes,
            ),
            ("idrs", "IDR access units encoded", |m| &m.idrs),
            (
                "idrs_forced",
                "IDRs forced for joining or lagging clients",
                |m| &m.idrs_forced,
            ),
            (
                "encode_errors",
                "Frames that failed to convert or encode",
                |m| &m.encode_errors,
            ),
            (
                "sent_bytes",
                "Bytes of RTP written to clients (TCP framing included)",
                |m| &m.sent_bytes,
            ),
            ("sent_packets", "RTP packets written to clients", |m| {
                &m.sent_packets
            }),
            (
                "dropped_slow",
                "Access units skipped by slow clients",
                |m| &m.dropped_slow,
            ),
            (
                "stalled_disconnects",
                "Clients disconnected because their socket took nothing for 10 s",
                |m| &m.stalled_disconnects,
            ),
            ("clients", "Clients that took a slot (SETUP)", |m| {
                &m.clients_total
            }),
        ];
        for (name, help, f) in counters {
            family(
                &mut enc,
                &format!("framebus_rtsp_{name}"),
                help,
                MetricType::Counter,
                &streams,
                sl,
                c(f),
            )?;
        }
        family(
            &mut enc,
            "framebus_rtsp_encoder_starts",
            "Encoder thread starts (on demand)",
            MetricType::Counter,
            &streams,
            sl,
            |s: &S| ConstCounter::new(s.starts()),
        )?;
        let gauges: [GaugeDef; 7] = [
            ("viewers", "Clients holding a slot now", |s| {
                s.clients() as f64
            }),
            ("max_viewers", "Client limit per stream", |s| {
                s.max_clients() as f64
            }),
            ("running", "1 while the encoder thread runs", |s| {
                f64::from(u8::from(s.is_running()))
            }),
            (
                "input_fps",
                "Bus frames per second reaching the encoder (last 2 s)",
                |s| s.metrics().input_fps(),
            ),
            (
                "output_fps",
                "Access units encoded per second (last 2 s)",
                |s| s.metrics().output_fps(),
            ),
            (
                "output_bitrate",
                "Encoded bits per second (last 2 s)",
                |s| s.metrics().output_bitrate(),
            ),
            (
                "target_bitrate",
                "Configured bit rate of the profile, bits per second",
                |s| s.target_bitrate() as f64,
            ),
        ];
        for (name, help, v) in gauges {
            family(
                &mut enc,
                &format!("framebus_rtsp_{name}"),
                help,
                MetricType::Gauge,
                &streams,
                sl,
                |s: &S| ConstGauge::new(v(s)),
            )?;
        }
        family(
            &mut enc,
            "framebus_rtsp_encode_seconds",
            "Convert + encode time per frame, seconds",
            MetricType::Histogram,
            &streams,
            sl,
            |s: &S| s.metrics().encode_seconds.clone(),
        )?;

        Ok(())
    }
}
