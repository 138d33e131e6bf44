//! One WebRTC viewer: a str0m `Rtc` (sans-IO) driven by its own task.
//!
//! The task waits on four things: datagrams from the media port, access
//! units from the feed it plays (and, during a profile switch, from the
//! feed it switches to), str0m's next timeout, and a close request (WHEP
//! `DELETE`, shutdown). After each it drains str0m's output: datagrams go
//! out at once ([`MediaPort::send`]), events update the session.
//!
//! Latency by construction: each access unit is written to str0m as soon
//! as the feed has it, with `playout-delay` 0/0 (the browser renders at
//! once; with sound 80/400 ms, so that it can lip-sync) and
//! `abs-capture-time` from the bus's capture time. A viewer that cannot
//! keep up never lags: when its send queue holds more than
//! [`MAX_QUEUE_AGE`] of media, or the feed's channel overran it, it skips to
//! the next keyframe (and asks for one).
//!
//! Adaptive quality: with bandwidth estimation on (TWCC), the session moves
//! between the camera's WebRTC profiles at keyframes ([`Ladder`]).
//!
//! Sound: when the browser offered audio and the camera has an Opus bus,
//! the session also writes each Opus packet of the camera's shared
//! [`AudioFeed`] on its audio media ([`AudioOut`]), from the moment it is
//! connected, independently of the video (which may wait for a keyframe
//! or switch profiles).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use str0m::bwe::{Bitrate, BweKind};
use str0m::format::Codec;
use str0m::media::{Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::AbsCaptureTime;
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::{broadcast, mpsc, Notify};

use super::audio::{AudioFeed, AudioTicket, OpusPacket};
use super::udp::{Datagram, MediaPort};
use crate::feed::{Au, Feed, FeedInfo, FeedSlot};
use str0m::media::{Frequency, MediaTime};

/// A viewer whose oldest unsent packet is older than this skips to the
/// next keyframe.
pub const MAX_QUEUE_AGE: Duration = Duration::from_millis(250);
/// The `playout-delay` minimum of the video of a session with sound: about
/// what the sound's path adds in a browser (a 20 ms packet, NetEQ's
/// jitter buffer, the audio device), so that the picture starts nearly in
/// sync. libwebrtc's own sync only moves by about 15 ms every few seconds
/// (it waits for a filtered offset above 30 ms), and takes a minute from
/// 0 (docs/audio.md, "A/V sync").
pub const LIP_SYNC_MIN_DELAY: MediaTime = MediaTime::from_hundredths(8);
/// The `playout-delay` maximum of the video of a session with sound: how
/// far the browser may hold the picture back to lip-sync it (libwebrtc
/// delays the earlier track of a stream to meet the later one). 0 (video
/// alone) renders every frame at once.
pub const LIP_SYNC_MAX_DELAY: MediaTime = MediaTime::from_hundredths(40);
/// A session that is not connected this long after its answer ends.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// The estimate must exceed what the current rung needs (its measured bit
/// rate) by this factor to stay on it (keyframes are bursts).
const DOWN_HEADROOM: f64 = 1.15;
/// The estimate must exceed the next rung's need (measured while its feed
/// runs, else its nominal bit rate) by this factor ...
const UP_HEADROOM: f64 = 1.2;
/// ... for this long before the session moves up.
const UP_HOLD: Duration = Duration::from_secs(4);
/// The estimate must stay under the current rung's need this long before
/// the session moves down (one low sample is not congestion).
const DOWN_HOLD: Duration = Duration::from_millis(1000);
/// The bandwidth estimator probes up to the top rung's bit rate times
/// this (its desired bit rate). It must exceed [`UP_HEADROOM`]: an
/// estimate that only reaches the desired rate hovers around it, and would
/// seldom stay above the up threshold for [`UP_HOLD`].
pub const PROBE_HEADROOM: f64 = 2.0;
/// A switch waits this long for the new profile's keyframe, then gives up
/// (the session stays where it is and may try again).
const SWITCH_TIMEOUT: Duration = Duration::from_secs(3);
/// After a switch, no other switch for this long.
const SWITCH_COOLDOWN: Duration = Duration::from_secs(3);

/// One encoded profile of the camera a session may play.
#[derive(Debug, Clone)]
pub struct Rung {
    /// The profile's name (`{bus}.h264.{profile}`).
    pub profile: String,
    /// Its feed.
    pub feed: Arc<Feed>,
    /// Its parameters.
    pub info: FeedInfo,
}

impl Rung {
    /// The bit rate the rung needs now: what its feed measured while it
    /// runs, else [`Rung::bitrate`].
    pub fn need(&self) -> f64 {
        match self.feed.counters.rate_bps.load(Ordering::Relaxed) {
            0 => self.bitrate(),
            r => r as f64,
        }
    }

    /// The rung's nominal bit rate (the encoder's, or a guess from the
    /// picture size when the bus does not say).
    pub fn bitrate(&self) -> f64 {
        if self.info.bitrate > 0 {
            self.info.bitrate as f64
        } else {
            f64::from(self.info.width) * f64::from(self.info.height) * self.info.fps.max(1.0) * 0.07
        }
    }
}

/// The profiles a session moves between, best first; index 0 is the one
/// it asked for.
#[derive(Debug, Clone)]
pub struct Ladder {
    /// Rungs, highest bit rate first.
    pub rungs: Vec<Rung>,
}

/// Why the session ended, and what it saw: for `/metrics`, the status API
/// and the log.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Current profile.
    pub profile: Mutex<String>,
    /// ICE connected and DTLS done.
    pub connected: AtomicBool,
    /// Round-trip time (µs), from RTCP.
    pub rtt_us: AtomicU64,
    /// NACKs received.
    pub nacks: AtomicU64,
    /// PLIs received.
    pub plis: AtomicU64,
    /// FIRs received.
    pub firs: AtomicU64,
    /// Bytes sent (media, RTP level).
    pub bytes: AtomicU64,
    /// Access units written.
    pub frames: AtomicU64,
    /// Opus packets written (0 for a video-only session).
    pub audio_packets: AtomicU64,
    /// Opus packets the session fell too far behind to write.
    pub audio_lagged: AtomicU64,
    /// Times the viewer skipped to a keyframe (lagging, queue too old).
    pub skips: AtomicU64,
    /// Profile switches.
    pub switches: AtomicU64,
    /// The bandwidth estimate (bit/s; 0: none).
    pub estimate_bps: AtomicU64,
    /// The sending bit rate over the last stats interval (bit/s).
    pub bitrate_bps: AtomicU64,
}

/// What the registry knows about a session.
#[derive(Debug)]
pub struct SessionInfo {
    /// Session id (the last part of its WHEP resource URL).
    pub id: String,
    /// Numeric id (routing).
    pub key: u64,
    /// The camera bus (`cam0`).
    pub bus: String,
    /// The profile asked for.
    pub requested: String,
    /// Adapts between profiles.
    pub adaptive: bool,
    /// Remote address (HTTP peer).
    pub peer: Option<SocketAddr>,
    /// Start time.
    pub started: Instant,
    /// Counters.
    pub stats: SessionStats,
    /// Ends the session.
    pub close: Notify,
}

impl SessionInfo {
    /// A session starting now: `id` and routing `key`, sending `profile`
    /// of camera `bus` (the profile it now sends, too).
    pub fn new(id: String, key: u64, bus: &str, profile: &str, adaptive: bool) -> Arc<Self> {
        let info = SessionInfo {
            id,
            key,
            bus: bus.to_string(),
            requested: profile.to_string(),
            adaptive,
            peer: None,
            started: Instant::now(),
            stats: SessionStats::default(),
            close: Notify::new(),
        };
        *info.stats.profile.lock() = profile.to_string();
        Arc::new(info)
    }
}

/// Everything the session task owns.
pub struct Session {
    /// The peer connection.
    pub rtc: Rtc,
    /// The video media line (sendonly on our side).
    pub mid: Mid,
    /// The H.264 payload type to write.
    pub pt: Pt,
    /// Shared state.
    pub info: Arc<SessionInfo>,
    /// The media port.
    pub port: Arc<MediaPort>,
    /// Datagrams for this session.
    pub inbox: mpsc::Receiver<Datagram>,
    /// Profiles; `rungs[current]` is playing.
    pub ladder: Ladder,
    /// The GOP joiner policy (`--webrtc-join-max-age-ms`).
    pub join_max_age: Duration,
    /// Since when the estimate has been too low for the current rung.
    pub down_since: Option<Instant>,
    /// The camera's sound, when negotiated.
    pub audio: Option<AudioOut>,
}

/// The audio media of a session and the camera's Opus packets.
#[derive(Debug)]
pub struct AudioOut {
    /// The audio media line (sendonly on our side).
    pub mid: Mid,
    /// The Opus payload type to write.
    pub pt: Pt,
    /// The camera's audio feed.
    pub feed: Arc<AudioFeed>,
    /// Its packets, once connected.
    pub ticket: Option<AudioTicket>,
}

impl AudioOut {
    /// The camera's sound, when it has some and the peer took Opus
    /// (`negotiated`: the audio media line and its payload type).
    pub fn new(feed: Option<Arc<AudioFeed>>, negotiated: Option<(Mid, Pt)>) -> Option<AudioOut> {
        let (feed, (mid, pt)) = feed.zip(negotiated)?;
        Some(AudioOut {
            mid,
            pt,
            feed,
            ticket: None,
        })
    }
}

async fn recv_audio(
    a: &mut Option<AudioOut>,
) -> Result<Arc<OpusPacket>, broadcast::error::RecvError> {
    match a.as_mut().and_then(|a| a.ticket.as_mut()) {
        Some(t) => t.rx.recv().await,
        None => std::future::pending().await,
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.info.id)
            .finish_non_exhaustive()
    }
}

/// The feed a session plays (or switches to), and its claim on it.
struct Playing {
    rung: usize,
    rx: broadcast::Receiver<Arc<Au>>,
    _slot: FeedSlot,
    /// Skip access units until a keyframe.
    need_key: bool,
}

async fn recv_opt(p: &mut Option<Playing>) -> Result<Arc<Au>, broadcast::error::RecvError> {
    match p {
        Some(p) => p.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Picks the H.264 payload type for a bus whose SPS says `profile_idc`
/// among the negotiated ones: same profile (constrained baseline also
/// for baseline), packetization-mode 1. `None`: the browser takes no
/// H.264 of that profile.
pub fn pick_pt<'a>(
    params: impl Iterator<Item = &'a str0m::format::PayloadParams>,
    profile_idc: u8,
) -> Option<Pt> {
    let mut best = None;
    for p in params {
        let spec = p.spec();
        if spec.codec != Codec::H264 || spec.format.packetization_mode != Some(1) {
            continue;
        }
        let Some(plid) = spec.format.profile_level_id else {
            continue;
        };
        let offered = (plid >> 16) as u8;
        if offered == profile_idc {
            return Some(p.pt());
        }
        // A decoder of main or high decodes constrained baseline streams.
        if profile_idc == 66 && best.is_none() {
            best = Some(p.pt());
        }
    }
    best
}

impl Session {
    /// Runs the session until the peer goes, a `DELETE`, or shutdown.
    pub async fn run(mut self) {
        let started = Instant::now();
        let mut playing: Option<Playing> = None;
        let mut pending: Option<Playing> = None;
        let mut up_since: Option<Instant> = None;
        let mut last_switch = Instant::now();
        let mut last_bytes = (0u64, Instant::now());
        let reason = loop {
            let deadline = match self.drive(
                &mut playing,
                &mut pending,
                &mut up_since,
                &mut last_switch,
                &mut last_bytes,
            ) {
                Ok(Some(d)) => d,
                Ok(None) => break "peer disconnected".to_string(),
                Err(e) => break format!("error: {e}"),
            };
            // str0m reports an estimate only when it moves by more than
            // 5 %: a steady one must still complete the up hold, or
            // move the session once the switch cooldown is over.
            let est = self.info.stats.estimate_bps.load(Ordering::Relaxed);
            if est > 0 {
                self.adapt(
                    Bitrate::bps(est),
                    &mut playing,
                    &mut pending,
                    &mut up_since,
                    &mut last_switch,
                );
            }
            if playing.is_none() && started.elapsed() > CONNECT_TIMEOUT {
                break "never connected".to_string();
            }
            // A profile whose keyframe never comes (its encoder stuck or
            // gone) must not hold the session's adaptation forever.
            if pending.is_some() && last_switch.elapsed() > SWITCH_TIMEOUT {
                let p = pending.take().expect("pending is set");
                tracing::warn!(
                    session = %self.info.id,
                    to = %self.ladder.rungs[p.rung].profile,
                    "profile switch abandoned: no keyframe within {SWITCH_TIMEOUT:?}"
                );
            }
            let deadline = deadline.min(Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = self.info.close.notified() => break "closed".to_string(),
                d = self.inbox.recv() => {
                    let Some(d) = d else { break "port closed".to_string() };
                    let Ok(contents) = d.data.as_slice().try_into() else { continue };
                    let input = Input::Receive(d.at, Receive {
                        proto: Protocol::Udp,
                        source: d.source,
                        destination: d.destination,
                        contents,
                    });
                    if let Err(e) = self.rtc.handle_input(input) {
                        break format!("input: {e}");
                    }
                }
                au = recv_opt(&mut playing) => {
                    self.on_au(au, &mut playing);
                }
                pkt = recv_audio(&mut self.audio) => {
                    self.on_audio(pkt);
                }
                au = recv_opt(&mut pending) => {
                    if let Ok(au) = au {
                        if au.key {
                            // The switch happens at the new profile's keyframe.
                            let mut p = pending.take().expect("pending is set");
                            p.need_key = false;
                            self.set_profile(&p);
                            playing = Some(p);
                            self.write(&au);
                            last_switch = Instant::now();
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                        break format!("timeout: {e}");
                    }
                }
            }
        };
        self.rtc.disconnect();
        tracing::info!(session = %self.info.id, bus = %self.info.bus, %reason, "WebRTC session ended");
    }

    fn on_audio(&mut self, pkt: Result<Arc<OpusPacket>, broadcast::error::RecvError>) {
        match pkt {
            Ok(p) => self.write_audio(&p),
            // Packets lost to a slow session: the browser conceals them.
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.info.stats.audio_lagged.fetch_add(n, Ordering::Relaxed);
            }
            Err(broadcast::error::RecvError::Closed) => {
                if let Some(a) = self.audio.as_mut() {
                    a.ticket = None;
                }
            }
        }
    }

    /// Writes one Opus packet on the audio media: RTP time from its pts
    /// (48 kHz), wall-clock instant from its capture time (lip sync).
    fn write_audio(&mut self, p: &OpusPacket) {
        let Some((mid, pt)) = self.audio.as_ref().map(|a| (a.mid, a.pt)) else {
            return;
        };
        let now = Instant::now();
        let age = Duration::from_nanos(framebus::monotonic_ns().saturating_sub(p.mono_ns));
        let wallclock = now.checked_sub(age).unwrap_or(now);
        let rtp_time = MediaTime::new(p.rtp48, Frequency::FORTY_EIGHT_KHZ);
        let capture = SystemTime::UNIX_EPOCH + Duration::from_nanos(p.realtime_ns);
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        let res = writer
            .abs_capture_time(AbsCaptureTime {
                capture_time: capture,
                clock_offset: None,
            })
            .write(pt, wallclock, rtp_time, Arc::clone(&p.data));
        match res {
            Ok(()) => {
                self.info
                    .stats
                    .audio_packets
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(session = %self.info.id, error = %e, "write audio"),
        }
    }

    fn set_profile(&self, p: &Playing) {
        *self.info.stats.profile.lock() = self.ladder.rungs[p.rung].profile.clone();
        self.info.stats.switches.fetch_add(1, Ordering::Relaxed);
    }

    fn on_au(
        &mut self,
        au: Result<Arc<Au>, broadcast::error::RecvError>,
        playing: &mut Option<Playing>,
    ) {
        let Some(p) = playing.as_mut() else { return };
        match au {
            Ok(au) => {
                if p.need_key && !au.key {
                    return;
                }
                p.need_key = false;
                if self.queue_too_old() {
                    p.need_key = true;
                    self.info.stats.skips.fetch_add(1, Ordering::Relaxed);
                    p_feed(&self.ladder, p).request_keyframe();
                    return;
                }
                self.write(&au);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                p.need_key = true;
                self.info.stats.skips.fetch_add(1, Ordering::Relaxed);
                p_feed(&self.ladder, p).request_keyframe();
            }
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }

    /// The oldest unsent packet of the video stream is older than
    /// [`MAX_QUEUE_AGE`].
    fn queue_too_old(&mut self) -> bool {
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(self.mid, None) else {
            return false;
        };
        tx.queue_info()
            .and_then(|q| q.first_unsent())
            .is_some_and(|t| t.elapsed() > MAX_QUEUE_AGE)
    }

    fn write(&mut self, au: &Au) {
        let now = Instant::now();
        let age = Duration::from_nanos(framebus::monotonic_ns().saturating_sub(au.mono_ns));
        let wallclock = now.checked_sub(age).unwrap_or(now);
        // RTP time from the capture time: the same clock for every profile
        // of a camera (their encoders' pts start at different moments).
        let rtp_time = MediaTime::new(
            (u128::from(au.mono_ns) * 90_000 / 1_000_000_000) as u64,
            Frequency::NINETY_KHZ,
        );
        let capture = SystemTime::UNIX_EPOCH + Duration::from_nanos(au.realtime_ns);
        // Video alone renders at once (0/0). With sound, the browser may
        // hold the picture back (up to LIP_SYNC_MAX_DELAY) to meet the
        // sound, which its jitter buffer and audio device delay more.
        let (min_delay, max_delay) = match self.audio {
            Some(_) => (LIP_SYNC_MIN_DELAY, LIP_SYNC_MAX_DELAY),
            None => (MediaTime::ZERO, MediaTime::ZERO),
        };
        let Some(writer) = self.rtc.writer(self.mid) else {
            return;
        };
        let res = writer
            .playout_delay(min_delay, max_delay)
            .abs_capture_time(AbsCaptureTime {
                capture_time: capture,
                clock_offset: None,
            })
            .write(self.pt, wallclock, rtp_time, Arc::clone(&au.data));
        match res {
            Ok(()) => {
                self.info.stats.frames.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(session = %self.info.id, error = %e, "write"),
        }
    }

    /// Drains str0m's output; the time of its next timeout, or `None` when
    /// the session is over.
    fn drive(
        &mut self,
        playing: &mut Option<Playing>,
        pending: &mut Option<Playing>,
        up_since: &mut Option<Instant>,
        last_switch: &mut Instant,
        last_bytes: &mut (u64, Instant),
    ) -> Result<Option<Instant>, str0m::RtcError> {
        loop {
            if !self.rtc.is_alive() {
                return Ok(None);
            }
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(Some(t)),
                Output::Transmit(t) => self.port.send(t.source, t.destination, &t.contents),
                Output::Event(e) => match e {
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        return Ok(None)
                    }
                    Event::Connected => {
                        self.info.stats.connected.store(true, Ordering::Relaxed);
                        if playing.is_none() {
                            *playing = self.start_playing(0);
                        }
                        if let Some(a) = self.audio.as_mut() {
                            if a.ticket.is_none() {
                                a.ticket = Some(a.feed.join());
                            }
                        }
                    }
                    Event::KeyframeRequest(_) => {
                        if let Some(p) = playing.as_ref() {
                            p_feed(&self.ladder, p).request_keyframe();
                        }
                    }
                    Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                        self.info
                            .stats
                            .estimate_bps
                            .store(estimate.as_u64(), Ordering::Relaxed);
                        self.adapt(estimate, playing, pending, up_since, last_switch);
                    }
                    Event::PeerStats(s) => {
                        if let Some(rtt) = s.rtt {
                            self.info
                                .stats
                                .rtt_us
                                .store(rtt.as_micros() as u64, Ordering::Relaxed);
                        }
                        let (b0, t0) = *last_bytes;
                        let dt = s.timestamp.saturating_duration_since(t0).as_secs_f64();
                        if dt > 0.0 {
                            let bps = s.bytes_tx.saturating_sub(b0) as f64 * 8.0 / dt;
                            self.info
                                .stats
                                .bitrate_bps
                                .store(bps as u64, Ordering::Relaxed);
                        }
                        *last_bytes = (s.bytes_tx, s.timestamp);
                    }
                    Event::MediaEgressStats(s) => {
                        let st = &self.info.stats;
                        st.nacks.store(s.nacks, Ordering::Relaxed);
                        st.plis.store(s.plis, Ordering::Relaxed);
                        st.firs.store(s.firs, Ordering::Relaxed);
                        st.bytes.store(s.bytes, Ordering::Relaxed);
                    }
                    _ => {}
                },
            }
        }
    }

    /// Joins rung `i`'s feed and writes its recent GOP at once (or waits
    /// for its next keyframe).
    fn start_playing(&mut self, i: usize) -> Option<Playing> {
        let feed = Arc::clone(&self.ladder.rungs[i].feed);
        let slot = match feed.join() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(session = %self.info.id, error = %e, "cannot join the feed");
                return None;
            }
        };
        let (backlog, rx) = feed.start_now(self.join_max_age);
        *self.info.stats.profile.lock() = self.ladder.rungs[i].profile.clone();
        let need_key = backlog.is_empty();
        for au in &backlog {
            self.write(au);
        }
        Some(Playing {
            rung: i,
            rx,
            _slot: slot,
            need_key,
        })
    }

    fn adapt(
        &mut self,
        estimate: Bitrate,
        playing: &mut Option<Playing>,
        pending: &mut Option<Playing>,
        up_since: &mut Option<Instant>,
        last_switch: &mut Instant,
    ) {
        if !self.info.adaptive || self.ladder.rungs.len() < 2 || pending.is_some() {
            return;
        }
        let Some(cur) = playing.as_ref().map(|p| p.rung) else {
            return;
        };
        if last_switch.elapsed() < SWITCH_COOLDOWN {
            return;
        }
        let est = estimate.as_f64();
        let rungs = &self.ladder.rungs;
        let target = if est < rungs[cur].need() * DOWN_HEADROOM && cur + 1 < rungs.len() {
            *up_since = None;
            let since = *self.down_since.get_or_insert_with(Instant::now);
            (since.elapsed() >= DOWN_HOLD).then(|| {
                self.down_since = None;
                cur + 1
            })
        } else if cur > 0 && est > rungs[cur - 1].need() * UP_HEADROOM {
            let since = *up_since.get_or_insert_with(Instant::now);
            (since.elapsed() >= UP_HOLD).then(|| {
                *up_since = None;
                cur - 1
            })
        } else {
            *up_since = None;
            self.down_since = None;
            None
        };
        if est >= rungs[cur].need() * DOWN_HEADROOM {
            self.down_since = None;
        }
        let Some(t) = target else { return };
        let rung = &rungs[t];
        match rung.feed.join() {
            Ok(slot) => {
                tracing::info!(
                    session = %self.info.id,
                    from = %rungs[cur].profile,
                    to = %rung.profile,
                    estimate_kbps = est as u64 / 1000,
                    "WebRTC profile switch (at the next keyframe)"
                );
                let rx = rung.feed.subscribe();
                rung.feed.request_keyframe();
                *pending = Some(Playing {
                    rung: t,
                    rx,
                    _slot: slot,
                    need_key: true,
                });
                *last_switch = Instant::now();
            }
            Err(e) => tracing::debug!(error = %e, "profile switch: cannot join"),
        }
    }
}

fn p_feed<'a>(ladder: &'a Ladder, p: &Playing) -> &'a Arc<Feed> {
    &ladder.rungs[p.rung].feed
}

/// The mid of the first video media our answer sends on (`a=sendonly`
/// or `a=sendrecv` in an `m=video` section of `answer`).
pub fn video_mid(answer: &str) -> Option<Mid> {
    sending_mid(answer, "video")
}

/// The mid of the first audio media our answer sends on.
pub fn audio_mid(answer: &str) -> Option<Mid> {
    sending_mid(answer, "audio")
}

/// The mid of the first `m={kind}` section of `answer` that sends (port
/// not 0, `a=sendonly` or `a=sendrecv`).
fn sending_mid(answer: &str, kind: &str) -> Option<Mid> {
    answer.split("\nm=").skip(1).find_map(|section| {
        let rest = section.strip_prefix(kind)?.strip_prefix(' ')?;
        if rest.starts_with("0 ") {
            return None;
        }
        let lines = || section.lines().map(str::trim);
        let sends = lines().any(|l| l == "a=sendonly" || l == "a=sendrecv");
        let mid = lines().find_map(|l| l.strip_prefix("a=mid:"))?;
        sends.then(|| Mid::from(mid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_sending_video_mid() {
        let sdp = "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v1\r\na=sendonly\r\n";
        assert_eq!(video_mid(sdp), Some(Mid::from("v1")));
        assert_eq!(audio_mid(sdp), Some(Mid::from("a")));
        assert_eq!(
            audio_mid("v=0\r\nm=audio 0 X 111\r\na=mid:0\r\na=sendonly\r\n"),
            None
        );
        assert_eq!(
            video_mid("v=0\r\nm=video 9 X 96\r\na=mid:0\r\na=inactive\r\n"),
            None
        );
        assert_eq!(
            video_mid("v=0\r\nm=video 0 X 96\r\na=mid:0\r\na=sendonly\r\n"),
            None
        );
    }
}
