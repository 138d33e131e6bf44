//! `--forward PATH=rtp://HOST:PORT`: plain RTP over UDP from a shared
//! stream to a fixed receiver, with RTCP beside it, for a media server
//! that takes RTP in and fans it out: a Janus Streaming-plugin `rtp`
//! mountpoint (docs/scale-out.md), a GStreamer `udpsrc`, an SFU's RTP
//! ingress.
//!
//! * **Media:** the same packets an RTSP client over UDP gets (RFC 6184
//!   H.264 with SPS/PPS in band at every IDR, payload type 96; an Opus
//!   bus as RFC 7587, payload type 97), starting at a keyframe, with this
//!   forward's own sequence numbers. A forward that falls behind skips
//!   to the next IDR and asks for one, like any client.
//! * **RTCP** goes from a second socket to the receiver's RTCP port
//!   (`?rtcp=PORT`, default PORT+1): a sender report every second, so the
//!   receiver learns where to send feedback, and a BYE when it stops.
//! * **Keyframe requests travel upstream:** a PLI or FIR (RFC 4585,
//!   RFC 5104) arriving on that socket — Janus sends one when a viewer
//!   joins, or loses a picture — becomes a keyframe request on the encoded
//!   bus, which the encoder answers with an IDR (rate-limited there).
//! * UDP has no connection: a receiver that restarts simply gets the next
//!   packets; its PLI brings the next keyframe at once. A send that fails
//!   (ICMP port unreachable while it is down) is counted, not fatal.
//!
//! The forward holds a client slot on the stream, so the encoder keeps
//! running while it lasts (the whole life of the process).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::session::RtpState;
use super::stream::{random_u64, Streams};

/// Delay before a forward whose stream is missing tries again.
const RETRY: Duration = Duration::from_secs(1);
/// Sender reports: every second (Janus and browsers sync on them).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// One `--forward`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardTarget {
    /// The stream: `bus/profile`, or an encoded or Opus bus name
    /// (`cam0.opus`).
    pub path: String,
    /// Where the RTP packets go.
    pub rtp: SocketAddr,
    /// Where the RTCP packets go, and whose feedback is read.
    pub rtcp: SocketAddr,
}

impl ForwardTarget {
    /// Parses `PATH=rtp://HOST:PORT[?rtcp=PORT]`.
    pub fn parse(s: &str) -> Result<ForwardTarget, String> {
        let (path, url) = s
            .split_once('=')
            .ok_or_else(|| format!("--forward {s:?}: expected PATH=rtp://HOST:PORT"))?;
        if super::stream::bus_of_path(path).is_none() {
            return Err(format!(
                "--forward {s:?}: {path:?} is not BUS/PROFILE or a bus name"
            ));
        }
        let rest = url
            .strip_prefix("rtp://")
            .ok_or_else(|| format!("--forward {s:?}: the URL must start with rtp://"))?;
        let (hostport, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let rtp = hostport
            .to_socket_addrs()
            .map_err(|e| format!("--forward {s:?}: {hostport:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("--forward {s:?}: {hostport:?} has no address"))?;
        if rtp.port() == 0 {
            return Err(format!("--forward {s:?}: the RTP port must not be 0"));
        }
        let mut rtcp = SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1));
        for kv in query.into_iter().flat_map(|q| q.split('&')) {
            match kv.split_once('=') {
                Some(("rtcp", p)) => {
                    let port: u16 = p
                        .parse()
                        .ok()
                        .filter(|&p| p != 0)
                        .ok_or_else(|| format!("--forward {s:?}: bad rtcp port {p:?}"))?;
                    rtcp.set_port(port);
                }
                _ => {
                    return Err(format!(
                        "--forward {s:?}: unknown option {kv:?} (rtcp=PORT)"
                    ))
                }
            }
        }
        Ok(ForwardTarget {
            path: path.trim_matches('/').to_string(),
            rtp,
            rtcp,
        })
    }
}

/// Forwards `target` for the life of the process, waiting for its stream
/// when it is missing.
pub async fn run(streams: Arc<Streams>, target: ForwardTarget) {
    let mut logged = false;
    loop {
        match forward_once(&streams, &target).await {
            Ok(()) => return,
            Err(e) => {
                if !logged {
                    tracing::warn!(stream = %target.path, to = %target.rtp, error = %e,
                        "forward waiting for its stream");
                    logged = true;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn forward_once(streams: &Arc<Streams>, target: &ForwardTarget) -> Result<(), String> {
    let stream = streams.get(&target.path).map_err(|e| e.to_string())?;
    let _slot = stream.join().map_err(|e| e.to_string())?;
    if !stream.is_audio() {
        stream.params().await.map_err(|e| e.to_string())?;
    }
    let any = |a: SocketAddr| -> SocketAddr {
        if a.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        }
    };
    let rtp = UdpSocket::bind(any(target.rtp))
        .await
        .map_err(|e| format!("cannot bind an RTP socket: {e}"))?;
    let rtcp = UdpSocket::bind(any(target.rtcp))
        .await
        .map_err(|e| format!("cannot bind an RTCP socket: {e}"))?;
    let start = stream.start().await;
    let (mut state, mut rx) = RtpState::new(random_u64() as u16, start);
    tracing::info!(stream = %target.path, rtp = %target.rtp, rtcp = %target.rtcp,
        "forwarding RTP");
    let mut report = tokio::time::interval(REPORT_EVERY);
    let mut buf = Vec::with_capacity(1500);
    let mut fb = vec![0u8; 1500];
    let (mut send_errors, mut requests) = (0u64, 0u64);
    loop {
        tokio::select! {
            au = state.next_au(&mut rx, &stream) => {
                let Some(au) = au else {
                    // The stream ended (encoder gone): say goodbye, then
                    // wait for it to come back.
                    let _ = rtcp.send_to(&state.goodbye(&stream), target.rtcp).await;
                    return Err("the stream ended".into());
                };
                for p in &au.packets {
                    buf.clear();
                    state.stamp(p, &mut buf);
                    if rtp.send_to(&buf, target.rtp).await.is_err() {
                        send_errors += 1;
                        if send_errors.is_power_of_two() {
                            tracing::info!(stream = %target.path, to = %target.rtp, send_errors,
                                "the receiver refuses packets (not running?)");
                        }
                    }
                }
                state.last = Some((au.rtp_ts, au.mono_ns));
            }
            _ = report.tick() => {
                if state.last.is_some() {
                    let _ = rtcp.send_to(&state.sender_report(&stream), target.rtcp).await;
                }
            }
            got = rtcp.recv_from(&mut fb) => {
                if let Ok((n, _)) = got {
                    if wants_keyframe(&fb[..n]) {
                        requests += 1;
                        if requests.is_power_of_two() {
                            tracing::info!(stream = %target.path, requests,
                                "keyframe requested by the receiver (PLI/FIR)");
                        }
                        stream.request_keyframe();
                    }
                }
            }
        }
    }
}

/// True when an RTCP compound packet holds a PLI (PSFB, FMT 1) or a FIR
/// (PSFB, FMT 4).
pub fn wants_keyframe(mut p: &[u8]) -> bool {
    while p.len() >= 4 {
        if p[0] >> 6 != 2 {
            return false;
        }
        let fmt = p[0] & 0x1f;
        let pt = p[1];
        let len = (usize::from(u16::from_be_bytes([p[2], p[3]])) + 1) * 4;
        if len > p.len() {
            return false;
        }
        if pt == 206 && (fmt == 1 || fmt == 4) {
            return true;
        }
        p = &p[len..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bye(ssrc: u32) -> Vec<u8> {
        let mut v = Vec::new();
        super::super::rtp::append_bye(&mut v, ssrc);
        v
    }

    #[test]
    fn targets_parse() {
        let t = ForwardTarget::parse("cam0/high=rtp://127.0.0.1:5004").unwrap();
        assert_eq!(t.path, "cam0/high");
        assert_eq!(t.rtp, "127.0.0.1:5004".parse().unwrap());
        assert_eq!(t.rtcp, "127.0.0.1:5005".parse().unwrap());
        let t = ForwardTarget::parse("cam0.opus=rtp://[::1]:6000?rtcp=7000").unwrap();
        assert_eq!(t.rtcp, "[::1]:7000".parse().unwrap());
        for bad in [
            "cam0/high",
            "cam0/high=udp://127.0.0.1:5004",
            "cam0/high=rtp://127.0.0.1:0",
            "cam0/high=rtp://127.0.0.1:5004?rtcp=x",
            "cam0/high=rtp://127.0.0.1:5004?ttl=3",
            "a/b/c=rtp://127.0.0.1:5004",
        ] {
            assert!(ForwardTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_pli_or_fir_in_a_compound_asks_for_a_keyframe() {
        // RR (PT 201, no blocks) then a PLI (PT 206, FMT 1).
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        let fir = [
            0x84, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0,
        ];
        let remb = [0x8f, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(wants_keyframe(&[&rr[..], &pli[..]].concat()));
        assert!(wants_keyframe(&fir));
        assert!(!wants_keyframe(&rr));
        assert!(!wants_keyframe(&remb));
        assert!(!wants_keyframe(&bye(5)));
        // Truncated: no.
        assert!(!wants_keyframe(&pli[..6]));
    }
}
