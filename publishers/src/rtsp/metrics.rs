//! Per-stream counters of `framebus-rtsp` and their Prometheus export.
//!
//! Each [`Stream`](super::stream::Stream) owns a [`StreamMetrics`] (plain
//! atomics and a byte-rate window) that the bus reader thread and the
//! client tasks update. A
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
use prometheus_client::metrics::MetricType;

use super::stream::{Stream, Streams};
use crate::common::http::family;
use crate::common::stats::RateMeter;

/// Window of the measured output bit rate.
const BITRATE_WINDOW: Duration = Duration::from_secs(2);

/// Counters of one stream since the process started.
#[derive(Debug)]
pub struct StreamMetrics {
    /// Access units read from the encoded bus.
    pub frames_in: AtomicU64,
    /// Bytes of those access units (Annex B, once per access unit).
    pub bytes_in: AtomicU64,
    /// Keyframes among them.
    pub keyframes: AtomicU64,
    /// Access units the stream's bus reader lost (it fell behind the
    /// encoder and restarted at a keyframe).
    pub skipped_on_bus: AtomicU64,
    /// Clients that started from the newest keyframe in the GOP cache.
    pub joins_from_gop: AtomicU64,
    /// Clients that asked the encoder for a fresh keyframe to start at.
    pub joins_fresh: AtomicU64,
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
    in_rate: RateMeter,
    bytes_window: Mutex<VecDeque<(Instant, u64)>>,
    last_in: Mutex<Option<Instant>>,
}

impl Default for StreamMetrics {
    fn default() -> StreamMetrics {
        StreamMetrics {
            frames_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            keyframes: AtomicU64::new(0),
            skipped_on_bus: AtomicU64::new(0),
            joins_from_gop: AtomicU64::new(0),
            joins_fresh: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            sent_packets: AtomicU64::new(0),
            dropped_slow: AtomicU64::new(0),
            stalled_disconnects: AtomicU64::new(0),
            clients_total: AtomicU64::new(0),
            in_rate: RateMeter::default(),
            bytes_window: Mutex::new(VecDeque::new()),
            last_in: Mutex::new(None),
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
    /// One access unit taken from the bus.
    pub fn frame_in(&self) {
        add(&self.frames_in, 1);
        self.in_rate.record();
    }

    /// The access unit just taken had `bytes` bytes.
    pub fn frame_out(&self, bytes: usize, key: bool) {
        add(&self.bytes_in, bytes as u64);
        if key {
            add(&self.keyframes, 1);
        }
        let now = Instant::now();
        *self.last_in.lock() = Some(now);
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

    /// When the last access unit came from the bus.
    pub fn last_in(&self) -> Option<Instant> {
        *self.last_in.lock()
    }

    /// Access units per second from the bus (last 2 s).
    pub fn input_fps(&self) -> f64 {
        self.in_rate.per_second()
    }

    /// H.264 bits per second from the bus (last 2 s).
    pub fn input_bitrate(&self) -> f64 {
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
    [("path", s.path.clone()), ("bus", s.bus().to_string())]
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
            ("frames_in", "Access units read from the encoded bus", |m| {
                &m.frames_in
            }),
            (
                "bytes_in",
                "H.264 bytes read from the encoded bus (once per access unit, not per client)",
                |m| &m.bytes_in,
            ),
            ("keyframes", "Keyframes read from the encoded bus", |m| {
                &m.keyframes
            }),
            (
                "skipped_on_bus",
                "Access units the stream's bus reader lost (fell behind the encoder)",
                |m| &m.skipped_on_bus,
            ),
            (
                "joins_from_gop",
                "Clients that started at once from the newest keyframe in the GOP cache",
                |m| &m.joins_from_gop,
            ),
            (
                "joins_fresh",
                "Clients that asked the encoder for a fresh keyframe to start at",
                |m| &m.joins_fresh,
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
            "framebus_rtsp_reader_starts",
            "Bus reader thread starts (on demand)",
            MetricType::Counter,
            &streams,
            sl,
            |s: &S| ConstCounter::new(s.starts()),
        )?;
        let gauges: [GaugeDef; 5] = [
            ("viewers", "Clients holding a slot now", |s| {
                s.clients() as f64
            }),
            ("max_viewers", "Client limit per stream", |s| {
                s.max_clients() as f64
            }),
            ("running", "1 while the bus reader thread runs", |s| {
                f64::from(u8::from(s.is_running()))
            }),
            (
                "input_fps",
                "Access units per second from the encoded bus (last 2 s)",
                |s| s.metrics().input_fps(),
            ),
            (
                "input_bitrate",
                "H.264 bits per second from the encoded bus (last 2 s)",
                |s| s.metrics().input_bitrate(),
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
        Ok(())
    }
}
