//! The `framebus_webrtc_*` series of `/metrics`: per session
//! (`{bus,profile,session}`: the profile it plays now), per feed
//! (`{bus}`: the encoded bus) and for the endpoint and media port. Written
//! on each scrape from the live state (sessions come and go). Every metric
//! is in `docs/metrics.md`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::feed::Feed;
use super::session::SessionInfo;
use super::WebRtc;
use crate::common::http::family;

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

type SessionDef = (&'static str, &'static str, bool, fn(&SessionInfo) -> u64);
type FeedDef = (&'static str, &'static str, fn(&Feed) -> u64);

impl Collector for WebRtcCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sessions = self.w.sessions();
        let defs: [SessionDef; 10] = [
            (
                "session_rtt_us",
                "Round-trip time to the viewer, µs (RTCP)",
                false,
                |s| s.stats.rtt_us.load(Relaxed),
            ),
            ("session_nacks", "NACKs from the viewer", true, |s| {
                s.stats.nacks.load(Relaxed)
            }),
            ("session_plis", "PLIs from the viewer", true, |s| {
                s.stats.plis.load(Relaxed)
            }),
            ("session_firs", "FIRs from the viewer", true, |s| {
                s.stats.firs.load(Relaxed)
            }),
            ("session_bytes", "RTP bytes sent to the viewer", true, |s| {
                s.stats.bytes.load(Relaxed)
            }),
            (
                "session_frames",
                "Access units written for the viewer",
                true,
                |s| s.stats.frames.load(Relaxed),
            ),
            (
                "session_skips",
                "Times the viewer skipped to a keyframe (too slow)",
                true,
                |s| s.stats.skips.load(Relaxed),
            ),
            ("session_switches", "Profile switches", true, |s| {
                s.stats.switches.load(Relaxed)
            }),
            (
                "session_estimate_bps",
                "Bandwidth estimate (TWCC), bit/s; 0 without",
                false,
                |s| s.stats.estimate_bps.load(Relaxed),
            ),
            (
                "session_bitrate_bps",
                "Bit rate sent over the last second",
                false,
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
        for (name, help, counter, v) in defs {
            let name = format!("framebus_webrtc_{name}");
            if counter {
                family(
                    &mut enc,
                    &name,
                    help,
                    MetricType::Counter,
                    &sessions,
                    labels,
                    |s| ConstCounter::new(v(s)),
                )?;
            } else {
                family(
                    &mut enc,
                    &name,
                    help,
                    MetricType::Gauge,
                    &sessions,
                    labels,
                    |s| ConstGauge::new(v(s) as i64),
                )?;
            }
        }
        let feeds = self.w.feeds.all();
        let fdefs: [FeedDef; 6] = [
            (
                "feed_frames",
                "Access units read from the encoded bus",
                |f| f.counters.frames.load(Relaxed),
            ),
            ("feed_keyframes", "Keyframes read", |f| {
                f.counters.keyframes.load(Relaxed)
            }),
            ("feed_bytes", "Bytes read (once for every viewer)", |f| {
                f.counters.bytes.load(Relaxed)
            }),
            (
                "feed_skipped_on_bus",
                "Access units the bus overwrote before the reader got them",
                |f| f.counters.skipped_on_bus.load(Relaxed),
            ),
            (
                "feed_keyframe_requests",
                "Keyframe requests passed to the encoder",
                |f| f.counters.keyframe_requests.load(Relaxed),
            ),
            ("feed_sessions", "Sessions playing the feed", |f| {
                f.sessions() as u64
            }),
        ];
        let flabels = |f: &Arc<Feed>| [("bus", f.bus().to_string())];
        for (name, help, v) in fdefs {
            let name = format!("framebus_webrtc_{name}");
            if name.ends_with("sessions") {
                family(
                    &mut enc,
                    &name,
                    help,
                    MetricType::Gauge,
                    &feeds,
                    flabels,
                    |f| ConstGauge::new(v(f) as i64),
                )?;
            } else {
                family(
                    &mut enc,
                    &name,
                    help,
                    MetricType::Counter,
                    &feeds,
                    flabels,
                    |f| ConstCounter::new(v(f)),
                )?;
            }
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
        let one = [()];
        for (name, help, v) in totals {
            family(
                &mut enc,
                &format!("framebus_webrtc_{name}"),
                help,
                MetricType::Counter,
                &one,
                |_| Vec::<(String, String)>::new(),
                |_| ConstCounter::new(v),
            )?;
        }
        family(
            &mut enc,
            "framebus_webrtc_sessions",
            "Live WebRTC sessions",
            MetricType::Gauge,
            &one,
            |_| Vec::<(String, String)>::new(),
            |_| ConstGauge::new(sessions.len() as i64),
        )?;
        Ok(())
    }
}
