//! The `framebus_hls_*` series of `/metrics`: per muxer (`{bus,profile}`),
//! per camera's viewers, and for the endpoint. Written on each scrape from
//! the live state. Every metric is in `docs/metrics.md`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};

use super::muxer::Muxer;
use super::Hls;
use crate::common::http::{series as prefixed_series, Def, COUNTER, GAUGE};
use framebus::contract::encoder as enc;

/// Writes the HLS series on each scrape.
#[derive(Debug)]
pub struct HlsCollector {
    h: Arc<Hls>,
}

impl HlsCollector {
    /// A collector over `h`.
    pub fn new(h: Arc<Hls>) -> HlsCollector {
        HlsCollector { h }
    }
}

fn series<T, L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    def: Def<T>,
    items: &[T],
    labels: impl Fn(&T) -> L,
) -> Result<(), std::fmt::Error> {
    prefixed_series(enc, "framebus_hls_", def, items, labels)
}

impl Collector for HlsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let muxers = self.h.muxers();
        let mdefs: [Def<Arc<Muxer>>; 4] = [
            ("muxer_parts", "Parts written by the muxer", COUNTER, |m| {
                m.counters.parts.load(Relaxed)
            }),
            (
                "muxer_segments",
                "Segments completed by the muxer",
                COUNTER,
                |m| m.counters.segments.load(Relaxed),
            ),
            ("muxer_bytes", "Bytes of media written", COUNTER, |m| {
                m.counters.bytes.load(Relaxed)
            }),
            (
                "muxer_lags",
                "Times the muxer fell behind its feed and restarted at a keyframe",
                COUNTER,
                |m| m.counters.lags.load(Relaxed),
            ),
        ];
        let labels = |m: &Arc<Muxer>| {
            let (bus, profile) = enc::split(&m.bus).unwrap_or((m.bus.as_str(), ""));
            [("bus", bus.to_string()), ("profile", profile.to_string())]
        };
        for def in mdefs {
            series(&mut enc, def, &muxers, labels)?;
        }
        let mut viewers: Vec<((String, String), usize)> = self
            .h
            .viewers()
            .into_iter()
            .filter(|((_, p), _)| !p.is_empty())
            .collect();
        viewers.sort();
        series(
            &mut enc,
            (
                "viewers",
                "HLS viewer sessions per profile (a cache in front counts as one)",
                GAUGE,
                |v: &((String, String), usize)| v.1 as u64,
            ),
            &viewers,
            |v| [("bus", v.0 .0.clone()), ("profile", v.0 .1.clone())],
        )?;
        let c = &self.h.counters;
        let one = [c];
        let edefs: [Def<&super::server::HlsCounters>; 10] = [
            (
                "multivariant_playlists",
                "Multivariant playlists served",
                COUNTER,
                |c| c.multivariant.load(Relaxed),
            ),
            (
                "playlists",
                "Media playlists served without blocking",
                COUNTER,
                |c| c.playlists.load(Relaxed),
            ),
            (
                "blocking_playlists",
                "Blocking playlist reloads answered",
                COUNTER,
                |c| c.blocking.load(Relaxed),
            ),
            ("parts_served", "Parts served", COUNTER, |c| {
                c.parts.load(Relaxed)
            }),
            ("segments_served", "Segments served", COUNTER, |c| {
                c.segments.load(Relaxed)
            }),
            ("inits_served", "Init segments served", COUNTER, |c| {
                c.inits.load(Relaxed)
            }),
            ("bytes_served", "Media bytes served", COUNTER, |c| {
                c.bytes.load(Relaxed)
            }),
            (
                "refused",
                "Requests refused for the viewer limit (503)",
                COUNTER,
                |c| c.refused.load(Relaxed),
            ),
            ("bad_requests", "Malformed requests (400)", COUNTER, |c| {
                c.bad_requests.load(Relaxed)
            }),
            (
                "waiting",
                "Requests waiting now (blocking reloads, hinted parts)",
                GAUGE,
                |c| c.waiting.load(Relaxed),
            ),
        ];
        for def in edefs {
            series(&mut enc, def, &one, |_| [("endpoint", "hls")])?;
        }
        Ok(())
    }
}
