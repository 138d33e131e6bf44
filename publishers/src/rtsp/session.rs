//! An RTSP session's media delivery: per-client sequence numbers, TCP
//! interleaved framing, UDP unicast sending with RTCP sender reports.
//!
//! Every client shares the stream's packets; each client rewrites the
//! sequence number (bytes 2..4) to its own counter, so a client that skips
//! access units sees a continuous sequence and the RTP-Info of its PLAY
//! names its first packet exactly.
//!
//! UDP is paced: a keyframe of a few hundred kilobytes sent in one burst
//! overflows a client's default socket buffer (208 KiB on Linux) before
//! it is scheduled to read, and every lost packet costs a whole frame. A
//! token bucket ([`Pacer`]) lets [`PACE_BURST`] bytes through at once and
//! the rest at [`PACE_MIN_RATE`], or faster when an access unit would
//! otherwise take more than three quarters of a frame interval. TCP needs no pacing:
//! its flow control waits for the client.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

use super::metrics::add;
use super::rtp::{append_bye, ntp_from_unix_ns, sender_report};
use super::stream::{AccessUnit, StartPoint, Stream};
use crate::common::shutdown::stopped;

/// Interval between RTCP sender reports.
pub const SR_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes a UDP client may get at once.
pub const PACE_BURST: f64 = 32.0 * 1024.0;
/// The slowest pacing rate, bytes per second (64 Mbit/s).
pub const PACE_MIN_RATE: f64 = 8.0 * 1024.0 * 1024.0;

/// A token bucket for one UDP client.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Pacer {
    /// A full bucket for a stream with frames `interval` apart.
    pub fn new(interval: Duration) -> Pacer {
        Pacer {
            interval,
            rate: PACE_MIN_RATE,
            tokens: PACE_BURST,
            last: Instant::now(),
        }
    }

    /// An access unit of `bytes` begins: the rate is such that it takes
    /// at most three quarters of a frame interval.
    pub fn access_unit(&mut self, bytes: usize) {
        let spread = (self.interval.as_secs_f64() * 0.75).max(0.001);
        self.rate = (bytes as f64 / spread).max(PACE_MIN_RATE);
    }

    /// Takes `len` bytes; returns how long to wait before sending them.
    pub fn take(&mut self, len: usize, now: Instant) -> Option<Duration> {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(PACE_BURST) - len as f64;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

/// Per-client sending state shared by both transports.
#[derive(Debug)]
pub struct RtpState {
    /// Sequence number of the next packet.
    pub seq: u16,
    /// Waiting for an IDR (just started or fell behind).
    pub need_key: bool,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
    /// RTP timestamp and capture time of the last access unit sent.
    pub last: Option<(u32, u64)>,
    /// Access units skipped because the client fell behind.
    pub dropped: u64,
    /// Fell behind and waits for an IDR (skipped access units count as
    /// dropped; the wait for the first IDR after PLAY does not).
    pub lagging: bool,
    /// Access units to send before the subscription's (see
    /// [`Stream::start`]).
    pub backlog: VecDeque<Arc<AccessUnit>>,
}

impl RtpState {
    /// A fresh state starting at `seq` with the access units of `start`'s
    /// backlog; returns the subscription to continue with.
    pub fn new(seq: u16, start: StartPoint) -> (RtpState, broadcast::Receiver<Arc<AccessUnit>>) {
        let state = RtpState {
            seq,
            need_key: true,
            packets: 0,
            octets: 0,
            last: None,
            dropped: 0,
            lagging: false,
            backlog: start.backlog.into(),
        };
        (state, start.rx)
    }

    /// The RTP timestamp of the first packet this client gets, when known
    /// (the backlog starts with a keyframe).
    pub fn first_rtp_ts(&self) -> Option<u32> {
        self.backlog.front().filter(|au| au.key).map(|au| au.rtp_ts)
    }

    /// The capture time (CLOCK_MONOTONIC ns) of the first access unit this
    /// client gets, when known.
    pub fn first_mono(&self) -> Option<u64> {
        self.backlog
            .front()
            .filter(|au| au.key)
            .map(|au| au.mono_ns)
    }

    /// Receives the next access unit this client should send, handling
    /// lag (skip to the next IDR and ask for one).
    pub async fn next_au(
        &mut self,
        rx: &mut broadcast::Receiver<Arc<AccessUnit>>,
        stream: &Stream,
    ) -> Option<Arc<AccessUnit>> {
        if let Some(au) = self.backlog.pop_front() {
            if !self.need_key || au.key {
                self.need_key = false;
                return Some(au);
            }
        }
        loop {
            match rx.recv().await {
                Ok(au) => {
                    if self.need_key && !au.key {
                        if self.lagging {
                            self.dropped += 1;
                            add(&stream.metrics().dropped_slow, 1);
                        }
                        continue;
                    }
                    self.need_key = false;
                    self.lagging = false;
                    return Some(au);
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::info!(
                        stream = %stream.path,
                        skipped = n,
                        "client fell behind; dropping access units until the next IDR"
                    );
                    self.dropped += n;
                    add(&stream.metrics().dropped_slow, n);
                    self.need_key = true;
                    self.lagging = true;
                    self.backlog.clear();
                    stream.request_keyframe();
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Rewrites one packet with this client's sequence number into `out`.
    pub fn stamp(&mut self, packet: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(packet);
        out[start + 2..start + 4].copy_from_slice(&self.seq.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self
            .octets
            .wrapping_add(packet.len().saturating_sub(12) as u32);
    }

    /// The last RTCP of a session that ends (the server stops): a sender
    /// report followed by a BYE.
    pub fn goodbye(&self, stream: &Stream) -> Vec<u8> {
        let mut p = self.sender_report(stream);
        append_bye(&mut p, stream.ssrc);
        p
    }

    /// A sender report for the current state.
    pub fn sender_report(&self, stream: &Stream) -> Vec<u8> {
        // Map "now" onto the RTP clock using the stream's clock mapping,
        // so the NTP/RTP pair in the report is consistent.
        let mono = framebus::monotonic_ns();
        let real = framebus::realtime_ns();
        sender_report(
            stream.ssrc,
            ntp_from_unix_ns(real),
            stream.rtp_ts(mono),
            self.packets,
            self.octets,
            "framebus-rtsp",
        )
    }
}

/// Frames an access unit for TCP interleaving (`$`, channel, length).
pub fn interleave(state: &mut RtpState, au: &AccessUnit, channel: u8, out: &mut Vec<u8>) {
    for p in &au.packets {
        out.push(b'$');
        out.push(channel);
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        state.stamp(p, out);
    }
    state.last = Some((au.rtp_ts, au.mono_ns));
}

/// A pair of UDP sockets on consecutive ports (RTP even, RTCP odd).
#[derive(Debug)]
pub struct UdpPair {
    /// RTP socket.
    pub rtp: Arc<UdpSocket>,
    /// RTCP socket.
    pub rtcp: Arc<UdpSocket>,
}

impl UdpPair {
    /// Binds an even/odd port pair on `ip`.
    pub async fn bind(ip: std::net::IpAddr) -> std::io::Result<UdpPair> {
        let mut last = None;
        for _ in 0..64 {
            let rtp = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
            let port = rtp.local_addr()?.port();
            if port % 2 != 0 || port == u16::MAX {
                continue;
            }
            match UdpSocket::bind(SocketAddr::new(ip, port + 1)).await {
                Ok(rtcp) => {
                    return Ok(UdpPair {
                        rtp: Arc::new(rtp),
                        rtcp: Arc::new(rtcp),
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no even/odd UDP port pair found")))
    }

    /// The RTP port (RTCP is the next one).
    pub fn port(&self) -> u16 {
        self.rtp.local_addr().map(|a| a.port()).unwrap_or(0)
    }
}

/// Where a UDP session's packets go.
#[derive(Debug, Clone)]
pub struct UdpDest {
    /// The server's socket pair.
    pub pair: Arc<UdpPair>,
    /// The client's RTP port.
    pub rtp: SocketAddr,
    /// The client's RTCP port.
    pub rtcp: SocketAddr,
}

/// Sends a stream to one UDP client, paced (see [`Pacer`]), until the task is aborted or `stop`
/// turns true (the server shuts down: then a sender report and a BYE go
/// to the client's RTCP port and the task returns); records the time of
/// every RTCP packet received from the client in `activity` (milliseconds
/// since `epoch`), which keeps its session alive.
pub async fn udp_sender(
    stream: Arc<Stream>,
    mut rx: broadcast::Receiver<Arc<AccessUnit>>,
    mut state: RtpState,
    dest: UdpDest,
    activity: Arc<AtomicU64>,
    epoch: Instant,
    mut stop: watch::Receiver<bool>,
) {
    let UdpDest {
        pair,
        rtp: rtp_dest,
        rtcp: rtcp_dest,
    } = dest;
    let mut sr = tokio::time::interval(SR_INTERVAL);
    let mut buf = Vec::with_capacity(1500);
    let mut rtcp_in = [0u8; 1500];
    let fps = stream.current_params().map_or(30, |p| p.fps.max(1));
    let mut pacer = Pacer::new(Duration::from_secs_f64(1.0 / f64::from(fps)));
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => {
                // Best effort, like all UDP: a lost BYE leaves the client
                // to notice the closed control connection instead.
                let _ = pair.rtcp.try_send_to(&state.goodbye(&stream), rtcp_dest);
                return;
            }
            au = state.next_au(&mut rx, &stream) => {
                let Some(au) = au else { return };
                pacer.access_unit(au.bytes);
                for p in &au.packets {
                    if let Some(wait) = pacer.take(p.len(), Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                    buf.clear();
                    state.stamp(p, &mut buf);
                    // UDP is lossy by nature: an ICMP-refused port loses
                    // this packet only (the session times out later).
                    if pair.rtp.send_to(&buf, rtp_dest).await.is_ok() {
                        stream.metrics().sent(1, buf.len());
                    }
                }
                state.last = Some((au.rtp_ts, au.mono_ns));
            }
            _ = sr.tick() => {
                if state.packets > 0 {
                    let _ = pair.rtcp.try_send_to(&state.sender_report(&stream), rtcp_dest);
                }
            }
            r = pair.rtcp.recv_from(&mut rtcp_in) => {
                if let Ok((_, from)) = r {
                    if from.ip() == rtcp_dest.ip() {
                        activity.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spreads_a_keyframe_over_most_of_an_interval() {
        let interval = Duration::from_millis(33);
        let mut p = Pacer::new(interval);
        let t0 = Instant::now();
        let bytes = 300_000;
        p.access_unit(bytes);
        // 1400-byte packets sent as soon as allowed: the last one's time.
        let mut now = t0;
        let mut waited = Duration::ZERO;
        for _ in 0..bytes / 1400 {
            if let Some(w) = p.take(1400, now) {
                now += w;
                waited += w;
            }
        }
        let took = now - t0;
        // The burst goes at once, the rest at the rate: under half an
        // interval, but not all at once.
        assert!(
            took <= interval * 3 / 4 + Duration::from_millis(1),
            "{took:?}"
        );
        assert!(took >= Duration::from_millis(15), "{took:?}");
        assert_eq!(waited, took);
        // A small access unit after a pause passes without waiting.
        let later = now + Duration::from_millis(30);
        p.access_unit(10_000);
        assert_eq!(p.take(1400, later), None);
    }
}
