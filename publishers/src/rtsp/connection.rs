//! One RTSP control connection: request parsing (rtsp-types), the method
//! state machine, and delivery of its session's media.
//!
//! A reader task turns bytes into messages and hands them to the
//! connection task over a channel; a malformed request gets `400` and the
//! reader resynchronises after the bad message's blank line, so the
//! connection lives on. The connection task owns the socket's write half
//! and interleaves responses with TCP media. A connection carries at most
//! one session, of one or two tracks: the video (`trackID=0`) and, for a
//! camera with a microphone, its Opus sound (`trackID=1`, docs/audio.md),
//! each with its own transport; PLAY starts both. The session ends with
//! TEARDOWN, with the connection, or when no request or RTCP arrives for
//! the session timeout.
//!
//! When the server shuts down (SIGTERM/SIGINT), a playing session gets an
//! RTCP sender report and BYE (on its interleaved RTCP channel, or from the
//! UDP sender task to the client's RTCP port), then the server closes its
//! side of the connection (FIN): clients see the stream end, not a reset.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtsp_types::headers::{self, RtpLowerTransport, RtpProfile, Transport, Transports};
use rtsp_types::{Method, Request, Response, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::auth::{Auth, ConnAuth};
use super::config::Config;
use super::metrics::add;
use super::sdp;
use super::session::{interleave, udp_sender, RtpState, UdpDest, UdpPair, SR_INTERVAL};
use super::stream::{random_u64, AccessUnit, ClientSlot, Stream, StreamError, Streams};
use super::wire::{Framer, Incoming};
use crate::common::shutdown::stopped;

/// A TCP client that does not take an access unit within this long is
/// disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Socket send buffer for control connections (TCP media goes there too).
const SEND_BUFFER: usize = 256 * 1024;
/// At shutdown, how long the BYE and the close may take per connection (a
/// client that takes nothing does not hold up the server's exit).
const GOODBYE_TIMEOUT: Duration = Duration::from_millis(200);

const PUBLIC: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

enum Transport_ {
    Tcp {
        rtp_channel: u8,
    },
    Udp {
        pair: Arc<UdpPair>,
        rtp_dest: SocketAddr,
        rtcp_dest: SocketAddr,
    },
}

/// The video track's index in [`Session::tracks`] (`trackID=0`).
const VIDEO: usize = 0;
/// The audio track's index (`trackID=1`).
const AUDIO: usize = 1;

/// One track of a session: its claim on the stream, its transport and its
/// delivery while playing.
struct Track {
    slot: ClientSlot,
    transport: Transport_,
    /// TCP: the subscription and per-client state while playing.
    tcp_play: Option<(broadcast::Receiver<Arc<AccessUnit>>, RtpState)>,
    /// UDP: the sender task while playing.
    udp_task: Option<JoinHandle<()>>,
}

impl Track {
    fn playing(&self) -> bool {
        self.tcp_play.is_some() || self.udp_task.is_some()
    }

    fn pause(&mut self) {
        self.tcp_play = None;
        if let Some(t) = self.udp_task.take() {
            t.abort();
        }
    }

    /// The parts the TCP loop polls, while playing over TCP.
    fn tcp(&mut self) -> Option<TcpPlay<'_>> {
        let Transport_::Tcp { rtp_channel } = self.transport else {
            return None;
        };
        let stream = Arc::clone(self.slot.stream());
        let (rx, state) = self.tcp_play.as_mut()?;
        Some(TcpPlay {
            rx,
            state,
            channel: rtp_channel,
            stream,
        })
    }
}

impl Drop for Track {
    fn drop(&mut self) {
        if let Some(t) = self.udp_task.take() {
            t.abort();
        }
    }
}

/// A track playing over TCP, as the connection loop polls it.
struct TcpPlay<'a> {
    rx: &'a mut broadcast::Receiver<Arc<AccessUnit>>,
    state: &'a mut RtpState,
    channel: u8,
    stream: Arc<Stream>,
}

/// The next access unit of a TCP track; never, without one.
async fn next_tcp(t: &mut Option<TcpPlay<'_>>) -> Option<Arc<AccessUnit>> {
    match t {
        Some(p) => p.state.next_au(p.rx, &p.stream).await,
        None => std::future::pending().await,
    }
}

struct Session {
    id: String,
    /// [`VIDEO`] and [`AUDIO`].
    tracks: [Option<Track>; 2],
}

impl Session {
    /// The stream the session shows (its video's, or its sound's when only
    /// that was set up).
    fn stream(&self) -> Option<&Arc<Stream>> {
        self.tracks.iter().flatten().next().map(|t| t.slot.stream())
    }
}

/// Serves one connection until it closes, its session expires, or `stop`
/// turns true (the server shuts down: the session is ended with an RTCP
/// BYE and the connection closed).
pub async fn serve(
    socket: TcpStream,
    config: Arc<Config>,
    streams: Arc<Streams>,
    auth: Arc<Auth>,
    stop: watch::Receiver<bool>,
) {
    let peer = socket.peer_addr().ok();
    let local = socket.local_addr().ok();
    let _ = socket.set_nodelay(true);
    // Bound what the kernel queues for a slow client (Linux doubles the
    // value): beyond it the client lags and skips to the next IDR instead
    // of watching video seconds old.
    let _ = socket2::SockRef::from(&socket).set_send_buffer_size(SEND_BUFFER);
    let (mut rd, wr) = socket.into_split();
    let (tx, rx) = mpsc::channel(8);
    let reader = tokio::spawn(async move {
        let mut framer = Framer::default();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(m) = framer.next_item() {
                if tx.send(m).await.is_err() {
                    return;
                }
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => framer.push(&chunk[..n]),
            }
        }
    });
    let mut conn = Conn {
        config,
        streams,
        auth,
        peer,
        local,
        wr,
        session: None,
        auth_state: ConnAuth::default(),
        epoch: Instant::now(),
        activity: Arc::new(AtomicU64::new(0)),
        last_message: Instant::now(),
        stop,
    };
    if let Close::Shutdown = conn.run(rx).await {
        conn.goodbye().await;
    }
    reader.abort();
    tracing::debug!(?peer, "connection closed");
}

struct Conn {
    config: Arc<Config>,
    streams: Arc<Streams>,
    auth: Arc<Auth>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    wr: OwnedWriteHalf,
    session: Option<Session>,
    /// The Digest nonce this connection authenticated with.
    auth_state: ConnAuth,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last sign of life.
    activity: Arc<AtomicU64>,
    /// When the last complete message (request or malformed) arrived.
    last_message: Instant,
    /// Turns true when the server shuts down.
    stop: watch::Receiver<bool>,
}

/// Why the connection ends.
#[derive(Clone, Copy, Debug)]
enum Close {
    /// The socket failed or closed.
    Io,
    /// The client took nothing for [`WRITE_TIMEOUT`].
    Stalled,
    /// The server shuts down.
    Shutdown,
}

impl Conn {
    fn touch(&self) {
        self.activity
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn expired(&self) -> bool {
        let last = Duration::from_millis(self.activity.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last) > self.config.session_timeout
    }

    /// Serve requests and media until the connection ends; returns why.
    async fn run(&mut self, mut rx: mpsc::Receiver<Incoming>) -> Close {
        self.touch();
        let mut stop = self.stop.clone();
        let mut sr = tokio::time::interval(SR_INTERVAL);
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            let (mut video, mut audio) = match self.session.as_mut() {
                Some(sess) => {
                    let [v, a] = &mut sess.tracks;
                    (
                        v.as_mut().and_then(Track::tcp),
                        a.as_mut().and_then(Track::tcp),
                    )
                }
                None => (None, None),
            };
            let result = if video.is_some() || audio.is_some() {
                tokio::select! {
                    _ = stopped(&mut stop) => Err(Close::Shutdown),
                    m = rx.recv() => self.on_incoming(m).await,
                    au = next_tcp(&mut video) => {
                        let play = video.as_mut().expect("polled only when playing");
                        deliver(&mut self.wr, play, au, &mut buf).await
                    }
                    au = next_tcp(&mut audio) => {
                        let play = audio.as_mut().expect("polled only when playing");
                        deliver(&mut self.wr, play, au, &mut buf).await
                    }
                    _ = sr.tick() => {
                        let mut r = Ok(());
                        for play in [&video, &audio].into_iter().flatten() {
                            if r.is_ok() && play.state.packets > 0 {
                                let report = play.state.sender_report(&play.stream);
                                buf.clear();
                                frame_rtcp(play.channel, &report, &mut buf);
                                r = write_timeout(&mut self.wr, &buf).await;
                            }
                        }
                        match r {
                            Ok(()) => self.check_expiry(),
                            Err(e) => Err(e),
                        }
                    }
                }
            } else {
                tokio::select! {
                    _ = stopped(&mut stop) => Err(Close::Shutdown),
                    m = rx.recv() => self.on_incoming(m).await,
                    _ = sr.tick() => self.check_expiry(),
                }
            };
            if let Err(why) = result {
                return why;
            }
        }
    }

    /// The server shuts down: end a playing session with a sender report
    /// and a BYE, then close our side of the connection. Each step is
    /// bounded by [`GOODBYE_TIMEOUT`].
    async fn goodbye(&mut self) {
        let Conn { session, wr, .. } = self;
        for t in session
            .iter_mut()
            .flat_map(|s| s.tracks.iter_mut().flatten())
        {
            if let (Transport_::Tcp { rtp_channel }, Some((_, state))) = (&t.transport, &t.tcp_play)
            {
                let report = state.goodbye(t.slot.stream());
                let mut buf = Vec::with_capacity(4 + report.len());
                frame_rtcp(*rtp_channel, &report, &mut buf);
                let _ = tokio::time::timeout(GOODBYE_TIMEOUT, wr.write_all(&buf)).await;
            }
            // The UDP sender sees the same stop, sends its BYE and returns.
            if let Some(task) = t.udp_task.take() {
                let _ = tokio::time::timeout(GOODBYE_TIMEOUT, task).await;
            }
        }
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, wr.shutdown()).await;
        tracing::debug!(peer = ?self.peer, "connection closed by the server's shutdown");
    }

    fn check_expiry(&mut self) -> Result<(), Close> {
        if self.session.is_some() && self.expired() {
            tracing::info!(peer = ?self.peer, "session expired");
            return Err(Close::Io);
        }
        if self.session.is_none() && self.last_message.elapsed() > self.config.request_timeout {
            // Idle, or trickling a request head that never ends (slowloris).
            tracing::debug!(peer = ?self.peer, "no complete request within the request timeout");
            return Err(Close::Io);
        }
        Ok(())
    }

    async fn on_incoming(&mut self, m: Option<Incoming>) -> Result<(), Close> {
        match m {
            None => Err(Close::Io),
            Some(Incoming::Data) => {
                self.touch();
                Ok(())
            }
            Some(Incoming::Malformed) => {
                self.last_message = Instant::now();
                tracing::debug!(peer = ?self.peer, "malformed request");
                let resp = response(Version::V1_0, StatusCode::BadRequest).build(Vec::new());
                self.send(&resp).await
            }
            Some(Incoming::Request(req)) => {
                self.touch();
                self.last_message = Instant::now();
                let resp = self.handle(&req).await;
                self.send(&resp).await
            }
        }
    }

    async fn send(&mut self, resp: &Response<Vec<u8>>) -> Result<(), Close> {
        let mut out = Vec::with_capacity(512);
        resp.write(&mut out).map_err(|_| Close::Io)?;
        write_timeout(&mut self.wr, &out).await
    }

    fn reply(&self, req: &Request<Vec<u8>>, status: StatusCode) -> rtsp_types::ResponseBuilder {
        let mut b = response(req.version(), status).header(headers::SERVER, "framebus-rtsp");
        if let Some(cseq) = req.header(&headers::CSEQ) {
            b = b.header(headers::CSEQ, cseq.as_str());
        }
        if let Some(s) = &self.session {
            b = b.header(
                headers::SESSION,
                format!("{};timeout={}", s.id, self.config.session_timeout.as_secs()),
            );
        }
        b
    }

    fn error(&self, req: &Request<Vec<u8>>, status: StatusCode) -> Response<Vec<u8>> {
        self.reply(req, status).build(Vec::new())
    }

    /// The stream path of a request URL `rtsp://host/{path}[/trackID=N]`.
    fn target(req: &Request<Vec<u8>>) -> Option<String> {
        Self::target_track(req).map(|(path, _)| path)
    }

    /// The stream path and the track ([`VIDEO`] unless the URL ends in
    /// `trackID=1`) of a request URL.
    fn target_track(req: &Request<Vec<u8>>) -> Option<(String, usize)> {
        let url = req.request_uri()?;
        let path = url.path().trim_matches('/');
        let (path, track) = match path.rsplit_once('/') {
            Some((stream, track)) if track.starts_with("trackID=") => (
                stream,
                if track == sdp::AUDIO_TRACK {
                    AUDIO
                } else {
                    VIDEO
                },
            ),
            _ => (path, VIDEO),
        };
        (!path.is_empty()).then(|| (path.to_string(), track))
    }

    fn stream_error(&self, req: &Request<Vec<u8>>, e: &StreamError) -> Response<Vec<u8>> {
        // 404s at debug level: a path scanner would flood the log.
        if matches!(e, StreamError::BadPath(_) | StreamError::NoBus { .. }) {
            tracing::debug!(peer = ?self.peer, error = %e, "request refused");
        } else {
            tracing::info!(peer = ?self.peer, error = %e, "request refused");
        }
        let status = match e {
            StreamError::BadPath(_) | StreamError::NoBus { .. } => StatusCode::NotFound,
            StreamError::NotEncoded(..) => StatusCode::UnsupportedMediaType,
            StreamError::Full(..) => StatusCode::ServiceUnavailable,
            StreamError::Timeout(..) => StatusCode::ServiceUnavailable,
        };
        self.error(req, status)
    }

    fn session_matches(&self, req: &Request<Vec<u8>>) -> bool {
        match (&self.session, req.typed_header::<headers::Session>()) {
            (Some(s), Ok(Some(h))) => h.0 == s.id,
            _ => false,
        }
    }

    async fn handle(&mut self, req: &Request<Vec<u8>>) -> Response<Vec<u8>> {
        let method = req.method().clone();
        if !matches!(method, Method::Options) {
            if let Err(challenge) = self.auth.check(req, &mut self.auth_state) {
                return self
                    .reply(req, StatusCode::Unauthorized)
                    .header(headers::WWW_AUTHENTICATE, challenge)
                    .build(Vec::new());
            }
        }
        match method {
            Method::Options => self
                .reply(req, StatusCode::Ok)
                .header(headers::PUBLIC, PUBLIC)
                .build(Vec::new()),
            Method::Describe => self.describe(req).await,
            Method::Setup => self.setup(req).await,
            Method::Play => self.play(req).await,
            Method::Pause => {
                if !self.session_matches(req) {
                    return self.error(req, StatusCode::SessionNotFound);
                }
                if let Some(s) = &mut self.session {
                    s.tracks.iter_mut().flatten().for_each(Track::pause);
                }
                self.error(req, StatusCode::Ok)
            }
            Method::Teardown => {
                let resp = self.error(req, StatusCode::Ok);
                if self.session_matches(req) {
                    self.session = None;
                }
                resp
            }
            Method::GetParameter | Method::SetParameter => {
                if req.header(&headers::SESSION).is_some() && !self.session_matches(req) {
                    return self.error(req, StatusCode::SessionNotFound);
                }
                self.error(req, StatusCode::Ok)
            }
            _ => self
                .reply(req, StatusCode::MethodNotAllowed)
                .header(headers::ALLOW, PUBLIC)
                .build(Vec::new()),
        }
    }

    async fn describe(&mut self, req: &Request<Vec<u8>>) -> Response<Vec<u8>> {
        let Some(path) = Self::target(req) else {
            return self.error(req, StatusCode::NotFound);
        };
        let stream = match self.streams.get(&path) {
            Ok(s) => s,
            Err(e) => return self.stream_error(req, &e),
        };
        if stream.clients() >= self.config.max_clients {
            return self.stream_error(
                req,
                &StreamError::Full(stream.path.clone(), self.config.max_clients),
            );
        }
        let params = match stream.params().await {
            Ok(p) => p,
            Err(e) => return self.stream_error(req, &e),
        };
        let ip = self
            .local
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        let audio = self
            .streams
            .audio_of(&stream.path)
            .map(|(_, info)| info.channels);
        let body = sdp::describe(&params, audio, random_u64() >> 1, &ip, &stream.path);
        let base = match req.request_uri() {
            Some(u) => {
                let s = u.as_str();
                if s.ends_with('/') {
                    s.to_string()
                } else {
                    format!("{s}/")
                }
            }
            None => String::new(),
        };
        self.reply(req, StatusCode::Ok)
            .header(headers::CONTENT_TYPE, "application/sdp")
            .header(headers::CONTENT_BASE, base)
            .build(body)
    }

    async fn setup(&mut self, req: &Request<Vec<u8>>) -> Response<Vec<u8>> {
        let Some((path, track)) = Self::target_track(req) else {
            return self.error(req, StatusCode::NotFound);
        };
        if req.header(&headers::SESSION).is_some() && !self.session_matches(req) {
            return self.error(req, StatusCode::SessionNotFound);
        }
        // rtsp-types 0.1.3 can panic on some malformed `dest_addr` values;
        // a panic here must be a 400, not a lost connection task.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            req.typed_header::<Transports>()
        }));
        let transports = match parsed {
            Ok(Ok(Some(t))) => t,
            _ => return self.error(req, StatusCode::BadRequest),
        };
        // The first transport we support, in the client's order.
        let mut chosen = None;
        for t in transports.iter() {
            let Transport::Rtp(rtp) = t else { continue };
            if rtp.profile != RtpProfile::Avp || rtp.params.multicast {
                continue;
            }
            match rtp.lower_transport {
                Some(RtpLowerTransport::Tcp) => {
                    let ch = rtp.params.interleaved.map_or(0, |(a, _)| a);
                    if ch < 255 {
                        chosen = Some((true, ch, 0));
                        break;
                    }
                }
                None | Some(RtpLowerTransport::Udp) => {
                    if let Some((p, _)) = rtp.params.client_port {
                        chosen = Some((false, 0, p));
                        break;
                    }
                }
                Some(RtpLowerTransport::Other(_)) => {}
            }
        }
        let Some((tcp, channel, client_port)) = chosen else {
            return self.error(req, StatusCode::UnsupportedTransport);
        };
        let stream = match self.streams.get(&path) {
            Ok(s) => s,
            Err(e) => return self.stream_error(req, &e),
        };
        // The session shows one camera: its video, and its sound.
        let same_camera = |sess: &Session| match &sess.tracks[VIDEO] {
            Some(v) => Arc::ptr_eq(v.slot.stream(), &stream),
            None => sess.stream().is_some_and(|a| {
                self.streams
                    .audio_of(&path)
                    .is_some_and(|(s, _)| Arc::ptr_eq(&s, a))
            }),
        };
        if self.session.as_ref().is_some_and(|sess| !same_camera(sess)) {
            return self.error(req, StatusCode::AggregateOperationNotAllowed);
        }
        let stream = if track == AUDIO {
            match self.streams.audio_of(&path) {
                Some((s, _)) => s,
                None => return self.error(req, StatusCode::NotFound),
            }
        } else {
            stream
        };
        let reuse = self
            .session
            .as_ref()
            .is_some_and(|sess| sess.tracks[track].is_some());
        let (transport, header) = if tcp {
            (
                Transport_::Tcp {
                    rtp_channel: channel,
                },
                format!(
                    "RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={:08X}",
                    channel,
                    channel + 1,
                    stream.ssrc
                ),
            )
        } else {
            let (Some(peer), Some(local)) = (self.peer, self.local) else {
                return self.error(req, StatusCode::InternalServerError);
            };
            let pair = match UdpPair::bind(local.ip()).await {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot bind UDP ports");
                    return self.error(req, StatusCode::InternalServerError);
                }
            };
            let sp = pair.port();
            (
                Transport_::Udp {
                    pair,
                    rtp_dest: SocketAddr::new(peer.ip(), client_port),
                    rtcp_dest: SocketAddr::new(peer.ip(), client_port.wrapping_add(1)),
                },
                format!(
                    "RTP/AVP;unicast;client_port={}-{};server_port={}-{};ssrc={:08X}",
                    client_port,
                    client_port.wrapping_add(1),
                    sp,
                    sp + 1,
                    stream.ssrc
                ),
            )
        };
        if reuse {
            // Re-SETUP of our own track keeps its slot.
            if let Some(t) = self.session.as_mut().and_then(|s| s.tracks[track].as_mut()) {
                t.pause();
                t.transport = transport;
            }
        } else {
            let slot = match stream.join() {
                Ok(slot) => slot,
                Err(e) => return self.stream_error(req, &e),
            };
            let t = Track {
                slot,
                transport,
                tcp_play: None,
                udp_task: None,
            };
            let sess = self.session.get_or_insert_with(|| Session {
                id: format!("{:016X}", random_u64()),
                tracks: [None, None],
            });
            sess.tracks[track] = Some(t);
        }
        tracing::info!(peer = ?self.peer, stream = %stream.path, track, tcp, clients = stream.clients(), "setup");
        self.reply(req, StatusCode::Ok)
            .header(headers::TRANSPORT, header)
            .build(Vec::new())
    }

    /// PLAY: the client's start point is chosen before the answer
    /// ([`super::stream::Stream::start`]: the newest keyframe in the GOP
    /// cache, or a fresh one), so `RTP-Info` names the first packet's
    /// sequence number and timestamp exactly.
    async fn play(&mut self, req: &Request<Vec<u8>>) -> Response<Vec<u8>> {
        if !self.session_matches(req) {
            return self.error(req, StatusCode::SessionNotFound);
        }
        let url = req
            .request_uri()
            .map(|u| u.as_str().to_string())
            .unwrap_or_default();
        let activity = Arc::clone(&self.activity);
        let epoch = self.epoch;
        let stop = self.stop.clone();
        let Some(sess) = self.session.as_ref() else {
            return self.error(req, StatusCode::SessionNotFound);
        };
        let streams: Vec<(usize, Arc<Stream>)> = sess
            .tracks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                t.as_ref()
                    .filter(|t| !t.playing())
                    .map(|t| (i, Arc::clone(t.slot.stream())))
            })
            .collect();
        // The video's start point first: the sound's RTP-Info names the
        // instant of the video's first frame, so both tracks start at the
        // same npt (players line them up by it, and by the sender reports).
        let mut rtp_info = Vec::new();
        let mut video_start = None;
        for (track, stream) in streams {
            let first_seq = random_u64() as u16;
            let (state, rx) = RtpState::new(first_seq, stream.start().await);
            let rtptime = if track == VIDEO {
                video_start = state.first_mono();
                state.first_rtp_ts()
            } else {
                video_start
                    .map(|mono| stream.rtp_ts(mono))
                    .or_else(|| state.first_rtp_ts())
            };
            rtp_info.push((track, first_seq, rtptime));
            let Some(t) = self.session.as_mut().and_then(|s| s.tracks[track].as_mut()) else {
                return self.error(req, StatusCode::SessionNotFound);
            };
            match &t.transport {
                Transport_::Tcp { .. } => t.tcp_play = Some((rx, state)),
                Transport_::Udp {
                    pair,
                    rtp_dest,
                    rtcp_dest,
                } => {
                    t.udp_task = Some(tokio::spawn(udp_sender(
                        Arc::clone(&stream),
                        rx,
                        state,
                        UdpDest {
                            pair: Arc::clone(pair),
                            rtp: *rtp_dest,
                            rtcp: *rtcp_dest,
                        },
                        Arc::clone(&activity),
                        epoch,
                        stop.clone(),
                    )));
                }
            }
        }
        let base = url.trim_end_matches('/');
        // PLAY on a track's own URL: `base` names that track already.
        let base = base
            .rsplit_once('/')
            .filter(|(_, last)| last.starts_with("trackID="))
            .map_or(base, |(b, _)| b);
        let mut b = self
            .reply(req, StatusCode::Ok)
            .header(headers::RANGE, "npt=0.000-");
        if !rtp_info.is_empty() {
            // Without a known first timestamp (no keyframe within
            // KEYFRAME_WAIT), `rtptime` is left out rather than guessed.
            let info: Vec<String> = rtp_info
                .iter()
                .map(|(track, seq, rtptime)| {
                    let id = if *track == AUDIO {
                        sdp::AUDIO_TRACK
                    } else {
                        sdp::VIDEO_TRACK
                    };
                    let rtptime = rtptime.map_or_else(String::new, |t| format!(";rtptime={t}"));
                    format!("url={base}/{id};seq={seq}{rtptime}")
                })
                .collect();
            b = b.header(headers::RTP_INFO, info.join(","));
        }
        b.build(Vec::new())
    }
}

/// Sends one access unit of a TCP track (interleaved), counting it.
async fn deliver(
    wr: &mut OwnedWriteHalf,
    play: &mut TcpPlay<'_>,
    au: Option<Arc<AccessUnit>>,
    buf: &mut Vec<u8>,
) -> Result<(), Close> {
    let Some(au) = au else {
        return Err(Close::Io);
    };
    buf.clear();
    interleave(play.state, &au, play.channel, buf);
    let r = write_timeout(wr, buf).await;
    match r {
        Ok(()) => play.stream.metrics().sent(au.packets.len(), buf.len()),
        Err(Close::Stalled) => add(&play.stream.metrics().stalled_disconnects, 1),
        Err(Close::Io | Close::Shutdown) => {}
    }
    r
}

/// Frames an RTCP packet on the interleaved channel after `rtp_channel`.
fn frame_rtcp(rtp_channel: u8, report: &[u8], buf: &mut Vec<u8>) {
    buf.push(b'$');
    buf.push(rtp_channel + 1);
    buf.extend_from_slice(&(report.len() as u16).to_be_bytes());
    buf.extend_from_slice(report);
}

/// A response builder with RFC 2326's reason phrase (rtsp-types writes
/// `Ok` for 200) and a `Date` header (RFC 2326 §12.18).
fn response(version: Version, status: StatusCode) -> rtsp_types::ResponseBuilder {
    let reason = match status {
        StatusCode::Ok => "OK".to_string(),
        StatusCode::OnlyAggregateOperationAllowed => "Only Aggregate Operation Allowed".to_string(),
        s => s.to_string(),
    };
    Response::builder(version, status)
        .reason_phrase(reason)
        .header(
            headers::DATE,
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        )
}

async fn write_timeout(wr: &mut OwnedWriteHalf, buf: &[u8]) -> Result<(), Close> {
    match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(buf)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Close::Io),
        Err(_) => Err(Close::Stalled),
    }
}
