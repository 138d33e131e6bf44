//! The `framebus_webrtc_*` series of `/metrics`: per session
//! (`{bus,profile,session}`: the profile it plays now), per feed
//! (`{bus}`: the encoded bus) and for the endpoint and media port. Written
//! on each scrape from the live state (sessions come and go). Every metric
//! is in `docs/metrics.md`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};

use super::session::SessionInfo;
use super::WebRtc;
use crate::common::http::{series as prefixed_series, Def, COUNTER, GAUGE};
use crate::feed::Feed;

/// Writes the WebRTC series on each scrape.
#[derive(Debug)]
pub struct WebRtcCollector {
    w: Arc<WebRtc>,
}

impl WebRtcCollector {
    /// A collector over `w`.
    pub fn new(w: Arc<WebRtc>) -> WebRtcCollector {
        WebRtcCollector { w }
    }
}

/// The family `framebus_webrtc_{name}`.
fn series<T, L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    def: Def<T>,
    items: &[T],
    labels: impl Fn(&T) -> L,
) -> Result<(), std::fmt::Error> {
    prefixed_series(enc, "framebus_webrtc_", def, items, labels)
}

impl Collector for WebRtcCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sessions = self.w.sessions();
        let defs: [Def<Arc<SessionInfo>>; 10] = [
            (
                "session_rtt_us",
                "Round-trip time to the viewer, µs (RTCP)",
                GAUGE,
                |s| s.stats.rtt_us.load(Relaxed),
            ),
            ("session_nacks", "NACKs from the viewer", COUNTER, |s| {
                s.stats.nacks.load(Relaxed)
            }),
            ("session_plis", "PLIs from the viewer", COUNTER, |s| {
                s.stats.plis.load(Relaxed)
            }),
            ("session_firs", "FIRs from the viewer", COUNTER, |s| {
                s.stats.firs.load(Relaxed)
            }),
            (
                "session_bytes",
                "RTP bytes sent to the viewer",
                COUNTER,
                |s| s.stats.bytes.load(Relaxed),
            ),
            (
                "session_frames",
                "Access units written for the viewer",
                COUNTER,
                |s| s.stats.frames.load(Relaxed),
            ),
            (
                "session_skips",
                "Times the viewer skipped to a keyframe (too slow)",
                COUNTER,
                |s| s.stats.skips.load(Relaxed),
            ),
            ("session_switches", "Profile switches", COUNTER, |s| {
                s.stats.switches.load(Relaxed)
            }),
            (
                "session_estimate_bps",
                "Bandwidth estimate (TWCC), bit/s; 0 without",
                GAUGE,
                |s| s.stats.estimate_bps.load(Relaxed),
            ),
            (
                "session_bitrate_bps",
                "Bit rate sent over the last second",
                GAUGE,
                |s| s.stats.bitrate_bps.load(Relaxed),
            ),
        ];
        let labels = |s: &Arc<SessionInfo>| {
            [
                ("bus", s.bus.clone()),
                ("profile", s.stats.profile.lock().clone()),
                ("session", s.id.clone()),
            ]
        };
        for def in defs {
            series(&mut enc, def, &sessions, labels)?;
        }
        let feeds = self.w.feeds.all();
        let fdefs: [Def<Arc<Feed>>; 6] = [
            (
                "feed_frames",
                "Access units read from the encoded bus",
                COUNTER,
                |f| f.counters.frames.load(Relaxed),
            ),
            ("feed_keyframes", "Keyframes read", COUNTER, |f| {
                f.counters.keyframes.load(Relaxed)
            }),
            (
                "feed_bytes",
                "Bytes read (once for every viewer)",
                COUNTER,
                |f| f.counters.bytes.load(Relaxed),
            ),
            (
                "feed_skipped_on_bus",
                "Access units the bus overwrote before the reader got them",
                COUNTER,
                |f| f.counters.skipped_on_bus.load(Relaxed),
            ),
            (
                "feed_keyframe_requests",
                "Keyframe requests passed to the encoder",
                COUNTER,
                |f| f.counters.keyframe_requests.load(Relaxed),
            ),
            ("feed_sessions", "Sessions playing the feed", GAUGE, |f| {
                f.sessions() as u64
            }),
        ];
        let flabels = |f: &Arc<Feed>| [("bus", f.bus().to_string())];
        for def in fdefs {
            series(&mut enc, def, &feeds, flabels)?;
        }
        let c = &self.w.counters;
        let p = &self.w.port().counters;
        let totals: [(&str, &str, u64); 7] = [
            ("offers", "WHEP offers received", c.offers.load(Relaxed)),
            (
                "offers_refused",
                "WHEP offers refused (4xx/5xx)",
                c.refused.load(Relaxed),
            ),
            (
                "sessions_started",
                "Sessions started",
                c.sessions.load(Relaxed),
            ),
            (
                "udp_received",
                "Datagrams received on the media port",
                p.received.load(Relaxed),
            ),
            (
                "udp_unrouted",
                "Datagrams for no session",
                p.unrouted.load(Relaxed),
            ),
            (
                "udp_inbox_full",
                "Datagrams dropped: their session's inbox was full",
                p.inbox_full.load(Relaxed),
            ),
            (
                "udp_send_dropped",
                "Datagrams the kernel did not take",
                p.send_dropped.load(Relaxed),
            ),
        ];
        // Unlabelled: one item whose value the definition ignores.
        let none = |_: &u64| Vec::<(String, String)>::new();
        for (name, help, v) in totals {
            series(&mut enc, (name, help, COUNTER, |v| *v), &[v], none)?;
        }
        let live = sessions.len() as u64;
        series(
            &mut enc,
            ("sessions", "Live WebRTC sessions", GAUGE, |v| *v),
            &[live],
            none,
        )?;
        Ok(())
    }
}
