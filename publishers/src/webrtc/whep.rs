//! WHEP over HTTP, and the registry of sessions.
//!
//! - `POST /{bus}/{profile}/whep` with an SDP offer (`application/sdp`):
//!   `201 Created`, the answer, `Location: /{bus}/{profile}/whep/{id}`, and
//!   a `Link: <URL>; rel="ice-server"` per `--webrtc-ice-server`.
//! - `DELETE` the `Location`: `200`, the session ends.
//! - `PATCH` (trickle ICE) is not needed by an ICE-lite server that sends
//!   every candidate in its answer: `405`, as the WHEP draft says.
//!
//! Sound: when the offer has an audio media line the browser receives on
//! and the camera has a live Opus bus (`{bus}.opus`), the answer accepts
//! it with Opus (`opus/48000/2`, RFC 7587) and the session sends the
//! camera's Opus packets ([`super::audio`]); otherwise the Rtc is built
//! without Opus, the audio line is refused, and the session is
//! video-only as before.
//!
//! Errors are JSON `{"error", "status"}` like the rest of the HTTP API: 400
//! for an offer that does not parse or cannot receive video, 404 for a
//! stream that does not exist, 406 when the browser accepts no H.264 of
//! the stream's profile, 413 for a body over [`MAX_OFFER_BYTES`], 415 for
//! another content type or a raw bus, 503 with `Retry-After` when a stream
//! or the server is full or the encoder does not answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;
use str0m::bwe::Bitrate;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Mid, Pt};
use str0m::rtp::Extension;
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};
use tokio::sync::mpsc;

use super::audio::AudioFeeds;
use super::config::WebRtcArgs;
use super::session::{
    audio_mid, pick_pt, video_mid, AudioOut, Ladder, Rung, Session, SessionInfo, PROBE_HEADROOM,
};
use super::udp::{MediaPort, INBOX_DEPTH};
use crate::feed::{FeedError, FeedInfo, Feeds};
use framebus::contract::encoder as enc;

/// Largest SDP offer accepted (browsers send 3–10 KiB).
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
/// An adaptive session's initial bandwidth estimate (its probing target is
/// [`PROBE_HEADROOM`] times the profile's bit rate) is this many times the
/// bit rate of the profile asked for: it starts there, and moves down only
/// when the network says so.
const ESTIMATE_HEADROOM: f64 = 1.5;
/// RTP header extension ids we offer in the answer's map (the browser's
/// ids win where it offered them).
const EXT_PLAYOUT_DELAY: u8 = 6;
const EXT_ABS_CAPTURE_TIME: u8 = 7;

/// A failed WHEP request.
#[derive(Debug, thiserror::Error)]
pub enum WhepError {
    /// Not `application/sdp`.
    #[error("the offer must be application/sdp (got {0:?})")]
    ContentType(String),
    /// Over [`MAX_OFFER_BYTES`].
    #[error("the offer is {0} bytes; at most {MAX_OFFER_BYTES} are accepted")]
    TooLarge(usize),
    /// Unparsable or unusable offer.
    #[error("bad offer: {0}")]
    BadOffer(String),
    /// No H.264 of the stream's profile in the offer.
    #[error("the offer accepts no H.264 {0} with packetization-mode=1; a WebRTC profile should be baseline or main (h264 = \"main\" in [[encoder]])")]
    NoCodec(&'static str),
    /// Feed problems.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// Too many sessions.
    #[error("the server has its maximum of {0} WebRTC sessions; retry later")]
    ServerFull(usize),
    /// No such session.
    #[error("no WebRTC session {0:?}")]
    NoSession(String),
    /// PATCH.
    #[error("trickle ICE is not supported: every candidate is in the answer")]
    NoTrickle,
}

impl WhepError {
    fn status(&self) -> StatusCode {
        match self {
            WhepError::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WhepError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WhepError::BadOffer(_) => StatusCode::BAD_REQUEST,
            WhepError::NoCodec(_) => StatusCode::NOT_ACCEPTABLE,
            WhepError::Feed(FeedError::NoBus { .. }) | WhepError::NoSession(_) => {
                StatusCode::NOT_FOUND
            }
            WhepError::Feed(FeedError::NotEncoded(..)) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WhepError::Feed(FeedError::Full(..) | FeedError::Timeout(..))
            | WhepError::ServerFull(_) => StatusCode::SERVICE_UNAVAILABLE,
            WhepError::NoTrickle => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

impl IntoResponse for WhepError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.to_string(), "status": status.as_u16() });
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            resp.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("POST, DELETE, OPTIONS"),
            );
        }
        resp
    }
}

/// Counters of the WHEP endpoint.
#[derive(Debug, Default)]
pub struct WhepCounters {
    /// Offers received.
    pub offers: AtomicU64,
    /// Offers refused (any 4xx/5xx).
    pub refused: AtomicU64,
    /// Sessions started.
    pub sessions: AtomicU64,
}

/// The WebRTC service: media port, feeds, sessions.
#[derive(Debug)]
pub struct WebRtc {
    args: WebRtcArgs,
    shm_dir: Option<PathBuf>,
    port: Arc<MediaPort>,
    candidates: Vec<Candidate>,
    /// The feeds (`/metrics`).
    pub feeds: Arc<Feeds>,
    /// The cameras' Opus buses, one reader each.
    pub audio: AudioFeeds,
    sessions: Mutex<HashMap<String, Arc<SessionInfo>>>,
    /// Offers being answered, `(bus, profile)`: they count against the
    /// limits with the live sessions ([`WebRtc::reserve`]).
    reserved: Mutex<Vec<(String, String)>>,
    next_key: AtomicU64,
    /// Set by [`WebRtc::close_all`]: WHIP publishers stop retrying.
    closing: AtomicBool,
    /// Counters (`/metrics`).
    pub counters: WhepCounters,
}

/// `?adapt=0` keeps a viewer on its profile.
#[derive(Debug, serde::Deserialize)]
pub struct WhepQuery {
    /// `0`/`false`: no switching.
    pub adapt: Option<String>,
}

/// An SDP parser message without its internal pointer (`Parse error at
/// PointerOffset(0x7f..)`), on one line.
fn sdp_error(e: &str) -> String {
    let mut out = String::new();
    for part in e.split_whitespace() {
        if part.starts_with("PointerOffset(") {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(part);
    }
    out.replace(" at ", " ").trim().to_string()
}

/// Parses an offer (400 when it does not).
fn parse_offer(text: &str) -> Result<SdpOffer, WhepError> {
    SdpOffer::from_sdp_string(text).map_err(|e| WhepError::BadOffer(sdp_error(&e.to_string())))
}

/// Whether `offer` has a media line of `kind` (`video`, `audio`) the
/// browser receives on (port not 0, `a=recvonly` or `a=sendrecv`).
fn receives(offer: &str, kind: &str) -> bool {
    offer.split("\nm=").skip(1).any(|section| {
        section
            .strip_prefix(kind)
            .and_then(|r| r.strip_prefix(' '))
            .is_some_and(|r| !r.starts_with("0 "))
            && section
                .lines()
                .map(str::trim)
                .any(|l| l == "a=recvonly" || l == "a=sendrecv")
    })
}

/// `answer` with a format on every refused media line: str0m writes a
/// refused line (an audio line of a camera without sound) as `m=audio 0
/// UDP/TLS/RTP/SAVPF` with no format, which the SDP grammar (RFC 4566
/// §5.14: at least one) and Chromium refuse, failing the whole answer.
/// RFC 3264 §6: a refused stream's line keeps the offer's formats; we
/// give the first one of the offer's line at the same index (answers list
/// the offer's media lines in its order).
fn with_rejected_formats(answer: &str, offer: &str) -> String {
    let offered: Vec<&str> = offer
        .split('\n')
        .filter_map(|l| l.trim_end().strip_prefix("m="))
        .collect();
    let mut index = 0;
    let mut out = String::with_capacity(answer.len() + 16);
    for line in answer.split_inclusive('\n') {
        let Some(m) = line.trim_end().strip_prefix("m=") else {
            out.push_str(line);
            continue;
        };
        let fields: Vec<&str> = m.split_whitespace().collect();
        let format = offered
            .get(index)
            .and_then(|o| o.split_whitespace().nth(3))
            .filter(|_| fields.len() == 3 && fields[1] == "0");
        index += 1;
        match format {
            Some(f) => {
                out.push_str(&format!("m={} {f}", fields.join(" ")));
                out.push_str(&line[line.trim_end_matches(['\r', '\n']).len()..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// `answer` with every media line in one media stream: str0m, answering
/// an offer whose receive-only lines carry no `a=msid`, gives each line a
/// random stream id of its own, and libwebrtc lip-syncs an audio and a
/// video track only when they share a stream id (their "sync group").
/// Every other line's stream id becomes the first line's; track ids stay.
fn one_stream(answer: &str) -> String {
    let ids: Vec<&str> = answer
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=msid:"))
        .filter_map(|v| v.split_whitespace().next())
        .collect();
    let Some(first) = ids.first() else {
        return answer.to_string();
    };
    let mut out = answer.to_string();
    for id in ids.iter().skip(1).filter(|id| *id != first && **id != "-") {
        out = out.replace(id, first);
    }
    out
}

/// What [`negotiate`] settled: the answer, the video media and H.264
/// payload type to write, and the audio media and Opus payload type when
/// the answer sends audio.
type Negotiated = (String, Mid, Pt, Option<(Mid, Pt)>);

/// The SDP side of a WHEP answer: accepts `offer` (whose text is `text`)
/// on `rtc`; the answer, the video media to send on and the H.264 payload
/// type for the stream `info`, and the audio media with its Opus payload
/// type when `rtc` was built with Opus and the offer receives audio. A
/// receiving video line that str0m rejected had no codec in common with us
/// (H.264, packetization-mode 1): 406.
fn negotiate(
    rtc: &mut Rtc,
    offer: SdpOffer,
    text: &str,
    info: &FeedInfo,
) -> Result<Negotiated, WhepError> {
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| WhepError::BadOffer(e.to_string()))?;
    let answer = with_rejected_formats(&answer.to_sdp_string(), text);
    tracing::debug!(%answer, "WHEP answer");
    let Some(mid) = video_mid(&answer) else {
        if receives(text, "video") {
            return Err(WhepError::NoCodec(info.profile_name()));
        }
        return Err(WhepError::BadOffer(
            "no video media the server can send on (a recvonly or sendrecv m=video line)".into(),
        ));
    };
    let writer = rtc
        .writer(mid)
        .ok_or_else(|| WhepError::BadOffer("the video media cannot be written".into()))?;
    let pt = pick_pt(writer.payload_params(), info.profile_idc)
        .ok_or(WhepError::NoCodec(info.profile_name()))?;
    let audio = audio_mid(&answer).and_then(|amid| {
        let writer = rtc.writer(amid)?;
        let opus = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)?
            .pt();
        Some((amid, opus))
    });
    let answer = match audio {
        Some(_) => one_stream(&answer),
        None => answer,
    };
    Ok((answer, mid, pt, audio))
}

/// The offer path of a WHEP `POST` without network or buses, for the
/// `whep_offer` fuzz target: parse, accept on a session's `Rtc` (host
/// candidate 127.0.0.1:9), find the video media and the payload type of
/// a main-profile stream. The answer, or the error a client would get.
pub fn answer_for_fuzz(offer: &str) -> Result<String, WhepError> {
    let parsed = parse_offer(offer)?;
    let (mut rtc, _) = WebRtc::build_rtc(None, false, true);
    let host = Candidate::host(SocketAddr::from(([127, 0, 0, 1], 9)), "udp")
        .map_err(|e| WhepError::BadOffer(e.to_string()))?;
    rtc.add_local_candidate(host);
    let info = FeedInfo {
        width: 640,
        height: 360,
        fps: 30.0,
        profile_idc: 77,
        constraints: 0,
        bitrate: 0,
    };
    negotiate(&mut rtc, parsed, offer, &info).map(|(answer, ..)| answer)
}

fn random_id() -> String {
    format!(
        "{:016x}{:016x}",
        crate::rtsp::stream::random_u64(),
        crate::rtsp::stream::random_u64()
    )
}

impl WebRtc {
    /// Binds the media port for an HTTP server configured to listen on
    /// `configured` and bound to `http`, and starts its receivers.
    pub async fn start(
        args: WebRtcArgs,
        configured: SocketAddr,
        http: SocketAddr,
        shm_dir: Option<PathBuf>,
        feeds: Arc<Feeds>,
    ) -> Result<Arc<WebRtc>, String> {
        let mut udp = args.udp_addr(configured);
        if args.webrtc_udp.is_none() {
            udp.set_ip(http.ip());
        }
        let port = MediaPort::bind(udp)
            .await
            .map_err(|e| format!("cannot bind the WebRTC media port {udp}: {e}"))?;
        let mut candidates = Vec::new();
        let locals = port.local_addrs();
        for a in &locals {
            candidates.push(Candidate::host(*a, "udp").map_err(|e| format!("candidate {a}: {e}"))?);
        }
        let media_port = locals.first().map_or(0, |a| a.port());
        for public in args.candidate_addrs(media_port)? {
            let base = locals
                .iter()
                .find(|l| l.is_ipv4() == public.is_ipv4())
                .ok_or_else(|| {
                    format!("--webrtc-candidate {public}: no local address of its family")
                })?;
            candidates.push(
                Candidate::server_reflexive(public, *base, "udp")
                    .map_err(|e| format!("--webrtc-candidate {public}: {e}"))?,
            );
        }
        port.spawn_receivers();
        tracing::info!(addrs = ?locals, "WebRTC media port");
        Ok(Arc::new(WebRtc {
            feeds,
            audio: AudioFeeds::new(shm_dir.clone()),
            args,
            shm_dir,
            port,
            candidates,
            sessions: Mutex::new(HashMap::new()),
            reserved: Mutex::new(Vec::new()),
            next_key: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            counters: WhepCounters::default(),
        }))
    }

    /// The media port's addresses.
    pub fn media_addrs(&self) -> Vec<SocketAddr> {
        self.port.local_addrs()
    }

    /// The media port (its counters).
    pub fn port(&self) -> &MediaPort {
        &self.port
    }

    /// The media port, shared (a WHIP session's).
    pub(crate) fn port_arc(&self) -> &Arc<MediaPort> {
        &self.port
    }

    /// The host (and `--webrtc-candidate`) candidates of every session.
    pub(crate) fn local_candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// A new session's routing key.
    pub(crate) fn next_session_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// The GOP joiner policy of sessions.
    pub(crate) fn join_max_age(&self) -> Duration {
        self.args.join_max_age()
    }

    /// Lists a session (status, `/metrics`, [`WebRtc::close_all`]).
    pub(crate) fn add_session(&self, info: Arc<SessionInfo>) {
        self.sessions.lock().insert(info.id.clone(), info);
    }

    /// Forgets a session.
    pub(crate) fn remove_session(&self, id: &str) {
        self.sessions.lock().remove(id);
    }

    /// True once [`WebRtc::close_all`] ran (shutdown).
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// The ICE servers for players: (urls, username, credential).
    pub fn ice_servers(&self) -> Vec<serde_json::Value> {
        self.args
            .webrtc_ice_servers
            .iter()
            .map(|u| {
                let mut v = serde_json::json!({ "urls": u });
                if u.starts_with("turn") {
                    if let Some(n) = &self.args.webrtc_ice_username {
                        v["username"] = n.clone().into();
                    }
                    if let Some(c) = &self.args.webrtc_ice_credential {
                        v["credential"] = c.clone().into();
                    }
                }
                v
            })
            .collect()
    }

    /// Every live session.
    pub fn sessions(&self) -> Vec<Arc<SessionInfo>> {
        self.sessions.lock().values().cloned().collect()
    }

    /// Every live session as `/api/v1/streams` reports it.
    pub fn session_status(&self) -> Vec<framebus::contract::streams::WebRtcSession> {
        let mut out: Vec<_> = self
            .sessions()
            .iter()
            .map(|s| {
                let st = &s.stats;
                let r = |v: &AtomicU64| v.load(Ordering::Relaxed);
                framebus::contract::streams::WebRtcSession {
                    id: s.id.clone(),
                    bus: s.bus.clone(),
                    requested: s.requested.clone(),
                    profile: st.profile.lock().clone(),
                    connected: st.connected.load(Ordering::Relaxed),
                    adaptive: s.adaptive,
                    uptime_s: (s.started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
                    rtt_ms: r(&st.rtt_us) as f64 / 1000.0,
                    bitrate_bps: r(&st.bitrate_bps),
                    estimate_bps: r(&st.estimate_bps),
                    nacks: r(&st.nacks),
                    plis: r(&st.plis),
                    firs: r(&st.firs),
                    skips: r(&st.skips),
                    switches: r(&st.switches),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.bus, &a.id).cmp(&(&b.bus, &b.id)));
        out
    }

    /// Ends every session (shutdown).
    pub fn close_all(&self) {
        self.closing.store(true, Ordering::Relaxed);
        for s in self.sessions() {
            s.close.notify_one();
        }
    }

    /// A session's `Rtc`: ICE-lite, our H.264 payload types, and Opus
    /// when `opus` (the camera has sound): without it an audio media line
    /// of the offer has no codec in common and is refused.
    pub(crate) fn build_rtc(bwe: Option<Bitrate>, opus: bool, lite: bool) -> (Rtc, IceCreds) {
        let creds = IceCreds::new();
        let mut cfg = RtcConfig::new()
            .set_ice_lite(lite)
            .set_local_ice_credentials(creds.clone())
            .clear_codecs()
            .set_stats_interval(Some(Duration::from_secs(1)))
            // Sender reports map each stream's RTP time to the wall clock;
            // a browser lip-syncs once it has two of each kind. str0m's
            // 5 s for audio would leave the first 10 s unsynced.
            .set_rtcp_report_interval_audio(Duration::from_secs(1));
        let codecs = cfg.codec_config();
        // packetization-mode=1 only (FU-A: access units of any size), one
        // payload type per H.264 profile; level-asymmetry-allowed=1.
        for (pt, rtx, plid) in [
            (108, 109, 0x42e01f),
            (127, 121, 0x42001f),
            (123, 119, 0x4d001f),
            (114, 115, 0x64001f),
        ] {
            codecs.add_h264(pt.into(), Some(rtx.into()), true, plid);
        }
        // opus/48000/2 (RFC 7587), minptime=10, useinbandfec=1; no RED.
        codecs.enable_opus(opus, false);
        let exts = cfg.extension_map();
        exts.set(EXT_PLAYOUT_DELAY, Extension::PlayoutDelay);
        exts.set(EXT_ABS_CAPTURE_TIME, Extension::AbsoluteCaptureTime);
        if let Some(initial) = bwe {
            cfg = cfg.enable_bwe(Some(initial));
        }
        (cfg.build(Instant::now()), creds)
    }

    /// The other profiles of camera `bus` the session may move down to:
    /// live encoded buses `{bus}.h264.*` with a lower bit rate than the
    /// one asked for. Their feeds start only when the session moves.
    fn lower_rungs(&self, bus: &str, first: &Rung) -> Vec<Rung> {
        let Ok(all) = framebus::list_in(self.shm_dir.as_deref()) else {
            return Vec::new();
        };
        let mut rungs: Vec<Rung> = all
            .into_iter()
            .filter(|b| b.producer_alive && b.name != first.feed.bus())
            .filter_map(|b| {
                let (cam, profile) = enc::split(&b.name)?;
                if cam != bus {
                    return None;
                }
                let feed = self.feeds.get(&b.name).ok()?;
                let rung = Rung {
                    profile: profile.to_string(),
                    feed,
                    info: FeedInfo {
                        width: b.width,
                        height: b.height,
                        fps: b.fps,
                        profile_idc: 0,
                        constraints: 0,
                        bitrate: b.encoder_bitrate,
                    },
                };
                (rung.bitrate() < first.bitrate()).then_some(rung)
            })
            .collect();
        rungs.sort_by(|a, b| b.bitrate().total_cmp(&a.bitrate()));
        rungs
    }

    /// Takes a place for an offer of `bus`/`profile` (encoded bus `name`)
    /// within `--webrtc-max-sessions` and `--webrtc-max-viewers`, counting
    /// live sessions and offers being answered: concurrent offers cannot
    /// exceed the limits while each waits for its stream.
    fn reserve(&self, bus: &str, profile: &str, name: &str) -> Result<Reservation<'_>, WhepError> {
        let sessions = self.sessions.lock();
        let mut reserved = self.reserved.lock();
        if sessions.len() + reserved.len() >= self.args.webrtc_max_sessions {
            return Err(WhepError::ServerFull(self.args.webrtc_max_sessions));
        }
        let max = self.args.webrtc_max_viewers;
        let viewing = sessions
            .values()
            .filter(|s| s.bus == bus && s.requested == profile)
            .count()
            + reserved
                .iter()
                .filter(|(b, p)| b == bus && p == profile)
                .count();
        if viewing >= max {
            return Err(FeedError::Full(name.to_string(), max).into());
        }
        reserved.push((bus.to_string(), profile.to_string()));
        Ok(Reservation {
            w: self,
            key: (bus.to_string(), profile.to_string()),
        })
    }

    /// Answers an offer for `bus`/`profile`.
    async fn answer(
        self: &Arc<WebRtc>,
        bus: &str,
        profile: &str,
        adapt: bool,
        offer: &str,
    ) -> Result<(String, String), WhepError> {
        let name = enc::bus_name(bus, profile);
        let reservation = self.reserve(bus, profile, &name)?;
        let feed = {
            let me = Arc::clone(self);
            let n = name.clone();
            tokio::task::spawn_blocking(move || me.feeds.get(&n))
                .await
                .map_err(|e| WhepError::BadOffer(e.to_string()))??
        };
        let text = offer;
        let offer = parse_offer(text)?;
        let info = feed.info().await?;
        let first = Rung {
            profile: profile.to_string(),
            feed,
            info: info.clone(),
        };
        let mut rungs = vec![first];
        if adapt {
            let me = Arc::clone(self);
            let (b, f) = (bus.to_string(), rungs[0].clone());
            if let Ok(lower) = tokio::task::spawn_blocking(move || me.lower_rungs(&b, &f)).await {
                rungs.extend(lower);
            }
        }
        let adaptive = rungs.len() > 1;
        let target = Bitrate::bps((rungs[0].bitrate() * ESTIMATE_HEADROOM) as u64);
        // The camera's sound, when the browser asks for audio.
        let sound = if receives(text, "audio") {
            let me = Arc::clone(self);
            let b = bus.to_string();
            tokio::task::spawn_blocking(move || me.audio.for_camera(&b))
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        let (mut rtc, creds) = WebRtc::build_rtc(adaptive.then_some(target), sound.is_some(), true);
        for c in &self.candidates {
            rtc.add_local_candidate(c.clone());
        }
        let (answer, mid, pt, audio) = negotiate(&mut rtc, offer, text, &info)?;
        let audio = AudioOut::new(sound, audio);
        let with_audio = audio.is_some();
        if adaptive {
            let top = rungs[0].bitrate() * PROBE_HEADROOM;
            rtc.bwe().set_desired_bitrate(Bitrate::bps(top as u64));
        }
        let id = random_id();
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (tx, inbox) = mpsc::channel(INBOX_DEPTH);
        let info = SessionInfo::new(id.clone(), key, bus, profile, adaptive);
        self.port.register(key, creds.ufrag, tx);
        {
            let mut sessions = self.sessions.lock();
            sessions.insert(id.clone(), Arc::clone(&info));
            // Under the same lock: never counted twice, nor missed.
            drop(reservation);
        }
        self.counters.sessions.fetch_add(1, Ordering::Relaxed);
        let session = Session {
            rtc,
            mid,
            pt,
            info: Arc::clone(&info),
            port: Arc::clone(&self.port),
            inbox,
            ladder: Ladder { rungs },
            join_max_age: self.args.join_max_age(),
            down_since: None,
            audio,
        };
        let me = Arc::clone(self);
        tokio::spawn(async move {
            session.run().await;
            me.port.unregister(key);
            me.sessions.lock().remove(&info.id);
        });
        tracing::info!(session = %id, bus, profile, adaptive, audio = with_audio, "WebRTC session");
        Ok((id, answer))
    }
}

/// A place taken by [`WebRtc::reserve`], given back on drop.
struct Reservation<'a> {
    w: &'a WebRtc,
    key: (String, String),
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut reserved = self.w.reserved.lock();
        if let Some(i) = reserved.iter().position(|k| *k == self.key) {
            reserved.swap_remove(i);
        }
    }
}

/// `POST /{bus}/{profile}/whep`.
pub async fn offer(
    State(w): State<Arc<WebRtc>>,
    Path((bus, profile)): Path<(String, String)>,
    Query(q): Query<WhepQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    w.counters.offers.fetch_add(1, Ordering::Relaxed);
    let res = async {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        {
            return Err(WhepError::ContentType(ct.to_string()));
        }
        // Over the router's body limit (MAX_OFFER_BYTES): our JSON 413,
        // not axum's plain-text one.
        let body = body.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                let len = headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(MAX_OFFER_BYTES + 1);
                WhepError::TooLarge(len)
            } else {
                WhepError::BadOffer(e.body_text())
            }
        })?;
        if body.len() > MAX_OFFER_BYTES {
            return Err(WhepError::TooLarge(body.len()));
        }
        let text = std::str::from_utf8(&body)
            .map_err(|_| WhepError::BadOffer("the offer is not UTF-8".into()))?;
        let adapt =
            !w.args.webrtc_no_adapt && !matches!(q.adapt.as_deref(), Some("0" | "false" | "no"));
        w.answer(&bus, &profile, adapt, text).await
    }
    .await;
    match res {
        Ok((id, sdp)) => {
            let mut resp = (StatusCode::CREATED, sdp).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/sdp"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("/{bus}/{profile}/whep/{id}")) {
                h.insert(header::LOCATION, v);
            }
            for s in w.ice_servers() {
                let url = s["urls"].as_str().unwrap_or_default();
                let mut link = format!("<{url}>; rel=\"ice-server\"");
                if let (Some(u), Some(c)) = (s["username"].as_str(), s["credential"].as_str()) {
                    link.push_str(&format!(
                        "; username=\"{u}\"; credential=\"{c}\"; credential-type=\"password\""
                    ));
                }
                if let Ok(v) = HeaderValue::from_str(&link) {
                    h.append(header::LINK, v);
                }
            }
            resp
        }
        Err(e) => {
            w.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(bus, profile, error = %e, "WHEP offer refused");
            e.into_response()
        }
    }
}

/// `DELETE /{bus}/{profile}/whep/{id}`.
pub async fn delete(
    State(w): State<Arc<WebRtc>>,
    Path((_bus, _profile, id)): Path<(String, String, String)>,
) -> Response {
    let s = w.sessions.lock().get(&id).cloned();
    match s {
        Some(s) => {
            s.close.notify_one();
            StatusCode::OK.into_response()
        }
        None => WhepError::NoSession(id).into_response(),
    }
}

/// `PATCH /{bus}/{profile}/whep/{id}`: trickle ICE is not needed.
pub async fn patch() -> Response {
    WhepError::NoTrickle.into_response()
}

/// `OPTIONS /{bus}/{profile}/whep`: what the endpoint takes.
pub async fn options() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Chromium offer (`publishers/tests/fixtures`).
    const CHROME: &str = include_str!("../../tests/fixtures/chrome_offer.sdp");

    #[test]
    fn answers_chromium_and_refuses_what_it_cannot_serve() {
        let answer = answer_for_fuzz(CHROME).expect("an answer");
        assert!(answer.contains("a=sendonly"), "{answer}");
        assert!(matches!(
            answer_for_fuzz("v=0"),
            Err(WhepError::BadOffer(_))
        ));
        let sendonly = CHROME.replace("a=recvonly", "a=sendonly");
        assert!(matches!(
            answer_for_fuzz(&sendonly),
            Err(WhepError::BadOffer(_))
        ));
        // H.264 only without packetization-mode=1: no codec in common.
        let mode0: String = CHROME
            .split_inclusive("\r\n")
            .filter(|l| !l.contains("packetization-mode=1"))
            .collect();
        assert!(matches!(
            answer_for_fuzz(&mode0),
            Err(WhepError::NoCodec(_))
        ));
    }

    /// The Chromium offer with a receive-only Opus audio line after the
    /// video (mid 1, in the bundle), as `whep.mjs --audio` offers.
    fn with_audio() -> String {
        let attr = |name: &str| {
            CHROME
                .split("\r\n")
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in the fixture"))
                .to_string()
        };
        let audio = [
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 0".to_string(),
            "c=IN IP4 0.0.0.0".into(),
            attr("a=ice-ufrag:"),
            attr("a=ice-pwd:"),
            attr("a=fingerprint:"),
            "a=setup:actpass".into(),
            "a=mid:1".into(),
            "a=recvonly".into(),
            "a=rtcp-mux".into(),
            "a=rtpmap:111 opus/48000/2".into(),
            "a=rtcp-fb:111 transport-cc".into(),
            "a=fmtp:111 minptime=10;useinbandfec=1".into(),
            "a=rtpmap:0 PCMU/8000".into(),
            String::new(),
        ]
        .join("\r\n");
        let offer = CHROME.replace("a=group:BUNDLE 0", "a=group:BUNDLE 0 1");
        format!("{offer}{audio}")
    }

    fn answer_with(opus: bool, offer: &str) -> Negotiated {
        let (mut rtc, _) = WebRtc::build_rtc(None, opus, true);
        let host = Candidate::host(SocketAddr::from(([127, 0, 0, 1], 9)), "udp").unwrap();
        rtc.add_local_candidate(host);
        let info = FeedInfo {
            width: 640,
            height: 360,
            fps: 30.0,
            profile_idc: 77,
            constraints: 0,
            bitrate: 0,
        };
        negotiate(&mut rtc, parse_offer(offer).unwrap(), offer, &info).expect("an answer")
    }

    #[test]
    fn sends_opus_when_the_camera_has_sound_and_the_browser_asks() {
        let offer = with_audio();
        assert!(receives(&offer, "audio") && receives(&offer, "video"));
        let (answer, video, _, audio) = answer_with(true, &offer);
        let (amid, pt) = audio.expect("an audio media");
        assert_eq!((video, amid), (Mid::from("0"), Mid::from("1")), "{answer}");
        assert_eq!(pt, Pt::from(111), "{answer}");
        let section = answer.split("\nm=").nth(2).expect("two media lines");
        assert!(section.starts_with("audio 9 "), "{answer}");
        assert!(section.contains("a=rtpmap:111 opus/48000/2"), "{answer}");
        assert!(section.contains("a=sendonly"), "{answer}");
        // Both tracks in one stream, so the browser lip-syncs them.
        let streams: std::collections::BTreeSet<&str> = answer
            .lines()
            .filter_map(|l| l.strip_prefix("a=msid:"))
            .filter_map(|v| v.split_whitespace().next())
            .collect();
        assert_eq!(streams.len(), 1, "{answer}");
        // A video-only offer stays video-only.
        let (answer, _, _, audio) = answer_with(true, CHROME);
        assert!(audio.is_none() && !answer.contains("m=audio"), "{answer}");
    }

    #[test]
    fn refuses_audio_with_a_valid_line_when_the_camera_has_no_sound() {
        let (answer, video, _, audio) = answer_with(false, &with_audio());
        assert_eq!(video, Mid::from("0"));
        assert!(audio.is_none(), "{answer}");
        // Refused, with the offer's first format (RFC 3264 §6).
        assert!(
            answer.contains("m=audio 0 UDP/TLS/RTP/SAVPF 111\r\n"),
            "{answer}"
        );
        assert_eq!(
            with_rejected_formats(
                "v=0\r\nm=audio 0 P\r\nm=video 9 P 96\r\n",
                "m=audio 9 P 8 0\r\nm=video 9 P 96\r\n"
            ),
            "v=0\r\nm=audio 0 P 8\r\nm=video 9 P 96\r\n"
        );
    }

    /// The `whep_offer` fuzz corpus, replayed without the fuzzer (its
    /// sanitizer build is too slow for `make test`): every input gets an
    /// answer or an error, none panics.
    #[test]
    fn the_fuzz_corpus_gets_answers_or_errors() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/whep_offer");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).expect("the whep_offer corpus") {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            let _ = answer_for_fuzz(&String::from_utf8_lossy(&bytes));
            n += 1;
        }
        assert!(n >= 3, "only {n} inputs in {}", dir.display());
    }
}
