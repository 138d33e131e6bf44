//! HLS over HTTP: the muxer registry, viewer sessions and the handlers.
//!
//! URLs (all `GET`), for camera `{bus}` and profile `{profile}` (the
//! encoded bus `{bus}.h264.{profile}`):
//! - `/{bus}/index.m3u8`: the multivariant playlist over every H.264
//!   profile of the camera. Each variant URI carries a viewer token
//!   (`?s=`), so the multivariant answer is never cached.
//! - `/{bus}/{profile}/index.m3u8`: the media playlist (LL-HLS; plain HLS
//!   clients read the same text and ignore the part tags). With
//!   `_HLS_msn`/`_HLS_part` it is a blocking reload.
//! - `/{bus}/{profile}/{epoch}/init{n}.mp4`, `s{msn}.m4s`, `p{n}.m4s`:
//!   immutable media; the next part (the preload hint) blocks until it
//!   exists.
//!
//! Caching (what a CDN in front honours): media `max-age=31536000,
//! immutable`; a blocking reload `max-age` of six target durations (its
//! answer only ever grows stale, never wrong, and every viewer asks the
//! same URL, so a cache with request collapsing sends one request per part
//! to the origin); a plain playlist `max-age=1`; errors `no-store`.
//!
//! Viewers: a session is the `s` token (or, without one, the client's IP),
//! counted when it asks for a media playlist (not for the multivariant one:
//! behind a cache, every joining viewer's multivariant request reaches us,
//! their media playlist requests mostly do not), alive while it asked in
//! the last [`SESSION_TTL`]. A new session beyond `--hls-max-viewers` for a
//! camera gets 503.
//!
//! Sound: a camera with a live Opus bus (`{bus}.opus`) has it in every
//! profile's parts (muxed, one playlist; [`muxer`]); the multivariant
//! playlist's `CODECS` then says `avc1.…,opus`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use parking_lot::Mutex;

use super::config::HlsArgs;
use super::muxer::{self, Muxer, MuxerConfig, Position, Ready, Waiting, FIRST_PART_WAIT};
use super::playlist::{self, Variant};
use crate::feed::{FeedError, Feeds};
use crate::fmp4::AudioTrack;
use crate::mjpeg::conn::ConnInfo;
use crate::webrtc::audio::{AudioFeed, AudioFeeds};
use framebus::contract::encoder as enc;

/// A session is alive this long after its last playlist request.
pub const SESSION_TTL: Duration = Duration::from_secs(10);
/// The media playlist's content type (RFC 8216).
const M3U8: &str = "application/vnd.apple.mpegurl";
/// Cache lifetime of immutable media, seconds (a year).
const IMMUTABLE_SECS: u64 = 31_536_000;

/// Counters of the HLS endpoint (`/metrics`).
#[derive(Debug, Default)]
pub struct HlsCounters {
    /// Multivariant playlists served.
    pub multivariant: AtomicU64,
    /// Media playlists served without blocking.
    pub playlists: AtomicU64,
    /// Blocking playlist reloads answered.
    pub blocking: AtomicU64,
    /// Parts served.
    pub parts: AtomicU64,
    /// Segments served.
    pub segments: AtomicU64,
    /// Init segments served.
    pub inits: AtomicU64,
    /// Media bytes served.
    pub bytes: AtomicU64,
    /// Requests refused for the viewer limit.
    pub refused: AtomicU64,
    /// Malformed requests (400).
    pub bad_requests: AtomicU64,
    /// Requests waiting now (blocking reloads and hinted parts).
    pub waiting: AtomicU64,
}

#[derive(Debug)]
struct Session {
    seen: Instant,
    profile: String,
}

/// The HLS service.
#[derive(Debug)]
pub struct Hls {
    args: HlsArgs,
    feeds: Arc<Feeds>,
    shm_dir: Option<std::path::PathBuf>,
    muxers: Mutex<HashMap<String, Arc<Muxer>>>,
    starting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    sessions: Mutex<HashMap<(String, String), Session>>,
    /// The cameras' Opus buses, one reader each shared by their muxers.
    audio: AudioFeeds,
    /// hls.js for the player page (`--hls-js`).
    hls_js: Option<bytes::Bytes>,
    /// Credentials are required: responses are `private`.
    private: bool,
    /// Counters.
    pub counters: HlsCounters,
}

/// What went wrong, as an HTTP answer (JSON body, `no-store`).
#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    /// Unknown stream, or media no longer (or never) there.
    #[error("{0}")]
    NotFound(String),
    /// Malformed request.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The raw bus: nothing to segment.
    #[error("{0}")]
    NotEncoded(String),
    /// Viewer limit, or the stream is not producing.
    #[error("{0}")]
    Unavailable(String),
}

impl IntoResponse for HlsError {
    fn into_response(self) -> Response {
        let status = match &self {
            HlsError::NotFound(_) => StatusCode::NOT_FOUND,
            HlsError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HlsError::NotEncoded(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HlsError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = serde_json::json!({ "error": self.to_string(), "status": status.as_u16() });
        let mut r = (status, axum::Json(body)).into_response();
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        r
    }
}

impl From<FeedError> for HlsError {
    fn from(e: FeedError) -> HlsError {
        match e {
            FeedError::NoBus { .. } => HlsError::NotFound(e.to_string()),
            FeedError::NotEncoded(..) => HlsError::NotEncoded(e.to_string()),
            FeedError::Full(..) | FeedError::Timeout(..) => HlsError::Unavailable(e.to_string()),
        }
    }
}

/// The state of one stream for `/api/v1/streams`.
pub type StreamStatus = framebus::contract::streams::HlsStream;

impl Hls {
    /// The service over `feeds`; fails when the `--hls-js` file cannot be
    /// read.
    pub fn new(
        args: HlsArgs,
        feeds: Arc<Feeds>,
        shm_dir: Option<std::path::PathBuf>,
        private: bool,
    ) -> Result<Arc<Hls>, String> {
        let hls_js = match args.hls_js_path() {
            Some(p) => Some(bytes::Bytes::from(
                std::fs::read(&p).map_err(|e| format!("--hls-js {}: {e}", p.display()))?,
            )),
            None => None,
        };
        Ok(Arc::new(Hls {
            hls_js,
            private,
            args,
            feeds,
            audio: AudioFeeds::new(shm_dir.clone()),
            shm_dir,
            muxers: Mutex::new(HashMap::new()),
            starting: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            counters: HlsCounters::default(),
        }))
    }

    /// Whether hls.js is served ([`HLS_JS_PATH`]).
    pub fn has_hls_js(&self) -> bool {
        self.hls_js.is_some()
    }

    /// Running muxers.
    pub fn muxers(&self) -> Vec<Arc<Muxer>> {
        let mut m = self.muxers.lock();
        m.retain(|_, x| !x.is_ended());
        m.values().cloned().collect()
    }

    /// Live sessions per (camera, profile).
    pub fn viewers(&self) -> HashMap<(String, String), usize> {
        let mut out = HashMap::new();
        let mut s = self.sessions.lock();
        s.retain(|_, v| v.seen.elapsed() < SESSION_TTL);
        for ((cam, _), v) in s.iter() {
            *out.entry((cam.clone(), v.profile.clone())).or_insert(0) += 1;
        }
        out
    }

    /// Every running stream, for `/api/v1/streams`.
    pub fn status(&self) -> Vec<StreamStatus> {
        let viewers = self.viewers();
        let mut v: Vec<StreamStatus> = self
            .muxers()
            .iter()
            .filter_map(|m| {
                let (cam, profile) = enc::split(&m.bus)?;
                let last = m.last_position();
                Some(StreamStatus {
                    bus: cam.to_string(),
                    profile: profile.to_string(),
                    epoch: m.epoch(),
                    viewers: viewers
                        .get(&(cam.to_string(), profile.to_string()))
                        .copied()
                        .unwrap_or(0),
                    msn: last.map(|p| p.msn),
                    parts: m.counters.parts.load(Relaxed),
                    segments: m.counters.segments.load(Relaxed),
                    bytes: m.counters.bytes.load(Relaxed),
                })
            })
            .collect();
        v.sort_by(|a, b| (&a.bus, &a.profile).cmp(&(&b.bus, &b.profile)));
        v
    }

    /// Records a request of session `key` on `cam`/`profile`; refuses a
    /// new session beyond the limit.
    fn admit(&self, cam: &str, profile: &str, key: String) -> Result<(), HlsError> {
        let mut s = self.sessions.lock();
        let now = Instant::now();
        let k = (cam.to_string(), key);
        if let Some(v) = s.get_mut(&k) {
            v.seen = now;
            v.profile = profile.to_string();
            return Ok(());
        }
        s.retain(|_, v| v.seen.elapsed() < SESSION_TTL);
        let n = s.keys().filter(|(c, _)| c == cam).count();
        if n >= self.args.hls_max_viewers {
            self.counters.refused.fetch_add(1, Relaxed);
            return Err(HlsError::Unavailable(format!(
                "{cam} already has its maximum of {} HLS viewers; retry later",
                self.args.hls_max_viewers
            )));
        }
        s.insert(
            k,
            Session {
                seen: now,
                profile: profile.to_string(),
            },
        );
        Ok(())
    }

    /// The running muxer of encoded bus `bus`, if any.
    fn running(&self, bus: &str) -> Option<Arc<Muxer>> {
        let m = self.muxers.lock().get(bus).cloned()?;
        (!m.is_ended()).then_some(m)
    }

    /// The muxer of `bus`, started if needed.
    async fn muxer(self: &Arc<Self>, bus: &str) -> Result<Arc<Muxer>, HlsError> {
        // One that ends between the lookup and `touch` (idle) is replaced.
        for _ in 0..3 {
            let m = self.muxer_once(bus).await?;
            if !m.is_ended() {
                return Ok(m);
            }
        }
        Err(HlsError::Unavailable(format!(
            "the HLS muxer of {bus} keeps stopping"
        )))
    }

    async fn muxer_once(self: &Arc<Self>, bus: &str) -> Result<Arc<Muxer>, HlsError> {
        if let Some(m) = self.running(bus) {
            m.touch();
            return Ok(m);
        }
        // The feed first: an unknown bus fails here and leaves nothing
        // behind (the start locks below exist only for real buses).
        let me = Arc::clone(self);
        let name = bus.to_string();
        let feed = tokio::task::spawn_blocking(move || me.feeds.get(&name))
            .await
            .map_err(|e| HlsError::Unavailable(format!("looking up {bus}: {e}")))??;
        let lock = Arc::clone(self.starting.lock().entry(bus.to_string()).or_default());
        let _g = lock.lock().await;
        if let Some(m) = self.running(bus) {
            m.touch();
            return Ok(m);
        }
        let cfg = MuxerConfig {
            part_target: self.args.part_target(),
            segments: self.args.segments(),
        };
        let me = Arc::clone(self);
        let name = bus.to_string();
        let sound = tokio::task::spawn_blocking(move || me.sound_of(&name))
            .await
            .ok()
            .flatten();
        let m = muxer::start(&feed, cfg, self.args.idle(), sound).await?;
        tracing::info!(bus, epoch = %m.epoch(), sound = m.has_audio(), "HLS muxer started");
        self.muxers.lock().insert(bus.to_string(), Arc::clone(&m));
        Ok(m)
    }

    /// The sound of the camera of encoded bus `bus`: its Opus track (from
    /// the `OpusHead` in the Opus bus's header) and its audio feed, when
    /// `{camera}.opus` is live; None otherwise (video only). Blocking.
    fn sound_of(&self, bus: &str) -> Option<(AudioTrack, Arc<AudioFeed>)> {
        let (cam, _) = enc::split(bus)?;
        let feed = self.audio.for_camera(cam)?;
        let opts = framebus::ReaderOptions {
            wait: None,
            shm_dir: self.shm_dir.clone(),
        };
        let mut reader = framebus::Reader::attach(feed.bus(), opts).ok()?;
        let head = reader.codec().ok()??.config;
        let Some(track) = AudioTrack::from_opus_head(&head) else {
            tracing::warn!(bus = %feed.bus(), "the Opus bus has no valid OpusHead: HLS without sound");
            return None;
        };
        Some((track, feed))
    }

    async fn wait(&self, m: &Muxer, deadline: Duration, check: impl Fn(&Muxer) -> Ready) -> Ready {
        let _waiting = Waiting::new(&self.counters.waiting);
        m.wait(deadline, check).await
    }

    /// `Cache-Control` for a response a shared cache may keep `max_age`
    /// seconds: `private` when credentials are required (RFC 9111 3.5: a
    /// `public` answer to a request with `Authorization` may be served to
    /// anyone by a cache that does not key on it).
    fn cache(&self, max_age: u64, immutable: bool) -> String {
        let scope = if self.private { "private" } else { "public" };
        let imm = if immutable { ", immutable" } else { "" };
        format!("{scope}, max-age={max_age}{imm}")
    }
}

fn valid_name(what: &str, s: &str) -> Result<(), HlsError> {
    framebus::validate_name(s).map_err(|e| HlsError::NotFound(format!("{what} {s:?}: {e}")))
}

fn session_key(s: Option<&str>, peer: Option<SocketAddr>) -> String {
    match s {
        Some(t) if !t.is_empty() && t.len() <= 64 => format!("s:{t}"),
        _ => format!(
            "ip:{}",
            peer.map_or_else(|| "?".into(), |p| p.ip().to_string())
        ),
    }
}

fn token() -> String {
    format!("{:016x}", crate::rtsp::stream::random_u64())
}

fn text(body: impl Into<Body>, cache: &str) -> Response {
    let mut r = (StatusCode::OK, body.into()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(M3U8));
    if let Ok(v) = HeaderValue::from_str(cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    r
}

fn media(parts: Vec<bytes::Bytes>, content_type: &'static str, cache: &str) -> Response {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let body = if parts.len() == 1 {
        Body::from(parts.into_iter().next().unwrap_or_default())
    } else {
        Body::from_stream(futures_util::stream::iter(
            parts.into_iter().map(Ok::<_, std::convert::Infallible>),
        ))
    };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    r
}

/// Where hls.js is served, with `--hls-js`.
pub const HLS_JS_PATH: &str = "/_/hls.min.js";

/// `GET /_/hls.min.js`.
pub async fn hls_js(State(hls): State<Arc<Hls>>) -> Result<Response, HlsError> {
    let b = hls.hls_js.clone().ok_or_else(|| {
        HlsError::NotFound("hls.js is not served (start framebus-mjpeg with --hls-js)".into())
    })?;
    let mut r = (StatusCode::OK, b).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    Ok(r)
}

/// `?s=` on playlists.
#[derive(Debug, serde::Deserialize)]
pub struct SessionQuery {
    /// The viewer token from the multivariant playlist.
    pub s: Option<String>,
}

/// `GET /{bus}/index.m3u8`.
pub async fn multivariant(
    State(hls): State<Arc<Hls>>,
    Path(cam): Path<String>,
    Query(q): Query<SessionQuery>,
) -> Result<Response, HlsError> {
    valid_name("bus", &cam)?;
    let dir = hls.shm_dir.clone();
    let buses = tokio::task::spawn_blocking(move || framebus::list_in(dir.as_deref()))
        .await
        .map_err(|e| HlsError::Unavailable(e.to_string()))?
        .map_err(|e| HlsError::Unavailable(format!("listing buses: {e}")))?;
    let mut variants: Vec<(u64, Variant)> = Vec::new();
    let tok =
        q.s.filter(|t| !t.is_empty() && t.len() <= 64)
            .unwrap_or_else(token);
    let opus = framebus::contract::audio::opus_bus(&cam);
    let sound = buses.iter().any(|b| {
        b.name == opus && b.producer_alive && b.format == framebus::PixelFormat::Opus.name()
    });
    for b in &buses {
        let Some((c, profile)) = enc::split(&b.name) else {
            continue;
        };
        if c != cam || b.format != framebus::PixelFormat::H264.to_string() {
            continue;
        }
        let pl = b.codec_profile_level;
        let audio = if sound { ",opus" } else { "" };
        let codecs = (pl != 0).then(|| format!("avc1.{pl:06x}{audio}"));
        let nominal = if b.encoder_bitrate > 0 {
            b.encoder_bitrate
        } else {
            // No target written: about 0.1 bit per pixel.
            (f64::from(b.width) * f64::from(b.height) * b.fps.max(1.0) * 0.1) as u64
        };
        variants.push((
            nominal,
            Variant {
                uri: format!("{profile}/index.m3u8?s={tok}"),
                // Peak: a keyframe-heavy segment runs above the target.
                bandwidth: nominal * 5 / 4,
                average_bandwidth: Some(nominal),
                codecs,
                resolution: Some((b.width, b.height)),
                frame_rate: (b.fps > 0.0).then_some(b.fps),
            },
        ));
    }
    if variants.is_empty() {
        return Err(HlsError::NotFound(format!(
            "camera {cam:?} has no H.264 profile (no encoded bus {}; is an [[encoder]] configured for it?)",
            enc::bus_name(&cam, "*")
        )));
    }
    variants.sort_by_key(|v| std::cmp::Reverse(v.0));
    hls.counters.multivariant.fetch_add(1, Relaxed);
    let list: Vec<Variant> = variants.into_iter().map(|(_, v)| v).collect();
    Ok(text(playlist::multivariant(&list), "private, no-store"))
}

/// The blocking-reload directives of a playlist request.
#[derive(Debug, PartialEq)]
pub struct Directives {
    /// `_HLS_msn`/`_HLS_part`, if blocking.
    pub want: Option<Position>,
    /// The viewer token.
    pub s: Option<String>,
}

/// Parses the query of a media playlist request: `_HLS_msn` (and
/// `_HLS_part` with it) as decimal integers; `_HLS_skip` is accepted and
/// ignored (no delta updates are offered); other keys are ignored.
pub fn directives(query: Option<&str>) -> Result<Directives, HlsError> {
    let (mut msn, mut part, mut s) = (None, None, None);
    for kv in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let num = |what: &str| {
            if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HlsError::BadRequest(format!(
                    "{what}={v:?} is not a decimal integer"
                )));
            }
            v.parse::<u64>()
                .map_err(|_| HlsError::BadRequest(format!("{what}={v} is out of range")))
        };
        match k {
            "_HLS_msn" => msn = Some(num("_HLS_msn")?),
            "_HLS_part" => {
                let p = num("_HLS_part")?;
                part =
                    Some(u32::try_from(p).map_err(|_| {
                        HlsError::BadRequest(format!("_HLS_part={p} is out of range"))
                    })?);
            }
            "s" => s = Some(v.to_string()),
            _ => {}
        }
    }
    if part.is_some() && msn.is_none() {
        return Err(HlsError::BadRequest(
            "_HLS_part without _HLS_msn".to_string(),
        ));
    }
    Ok(Directives {
        want: msn.map(|msn| Position { msn, part }),
        s,
    })
}

/// `GET /{bus}/{profile}/index.m3u8`.
pub async fn media_playlist(
    State(hls): State<Arc<Hls>>,
    Path((cam, profile)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    conn: Option<Extension<ConnectInfo<ConnInfo>>>,
) -> Result<Response, HlsError> {
    valid_name("bus", &cam)?;
    valid_name("profile", &profile)?;
    let d = directives(query.as_deref()).inspect_err(|_| {
        hls.counters.bad_requests.fetch_add(1, Relaxed);
    })?;
    // The stream must exist before a session is counted (no entries for
    // made-up names).
    let m = hls.muxer(&enc::bus_name(&cam, &profile)).await?;
    hls.admit(
        &cam,
        &profile,
        session_key(d.s.as_deref(), conn.map(|c| c.0 .0.peer)),
    )?;
    // The first request waits for media rather than failing: a blocking
    // reload for its first part, a plain request (which may come from a
    // client that ignores parts: ffmpeg, VLC) for a complete segment and
    // at least PART-HOLD-BACK of parts. A player starts that far behind
    // the live edge; a freshly started stream with less (a first segment
    // of a frame or two) had hls.js start with one frame buffered and
    // stall until parts caught up.
    let first = hls
        .wait(&m, FIRST_PART_WAIT, |m| {
            let have = if d.want.is_some() {
                m.last_position().is_some()
            } else {
                m.has_segment()
                    && m.media_secs() >= muxer::PART_HOLD_BACK_PARTS * m.part_target_secs()
            };
            match (m.ended(), have) {
                (Some(why), _) => Ready::Never(why),
                (None, true) => Ready::Yes,
                (None, false) => Ready::NotYet,
            }
        })
        .await;
    match first {
        Ready::Never(why) => return Err(HlsError::Unavailable(why)),
        Ready::NotYet if m.last_position().is_none() => {
            return Err(HlsError::Unavailable(format!(
                "{cam}/{profile} wrote no part within {FIRST_PART_WAIT:?} (is its encoder running?)"
            )))
        }
        _ => {}
    }
    let td = m.target_duration();
    match d.want {
        None => {
            hls.counters.playlists.fetch_add(1, Relaxed);
            Ok(text(m.playlist_text(), &hls.cache(1, false)))
        }
        Some(want) => match hls.wait(&m, 3 * td, |m| m.ready(want)).await {
            Ready::Yes => {
                hls.counters.blocking.fetch_add(1, Relaxed);
                let age = (6 * td).as_secs().max(1);
                Ok(text(m.playlist_text(), &hls.cache(age, false)))
            }
            Ready::Never(why) if m.is_ended() => Err(HlsError::Unavailable(why)),
            Ready::Never(why) => {
                hls.counters.bad_requests.fetch_add(1, Relaxed);
                Err(HlsError::BadRequest(why))
            }
            Ready::NotYet => Err(HlsError::Unavailable(format!(
                "{cam}/{profile}: no part {}.{} within {:?}",
                want.msn,
                want.part.unwrap_or(0),
                3 * td
            ))),
        },
    }
}

/// What a media file name names.
#[derive(Debug, PartialEq, Eq)]
pub enum MediaFile {
    /// `init{n}.mp4`.
    Init(u32),
    /// `s{msn}.m4s`.
    Segment(u64),
    /// `p{n}.m4s`.
    Part(u64),
}

/// Parses a media file name (digits only, no leading `+`, no overflow).
pub fn media_file(name: &str) -> Option<MediaFile> {
    fn digits(s: &str) -> Option<u64> {
        (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    }
    if let Some(n) = name
        .strip_prefix("init")
        .and_then(|r| r.strip_suffix(".mp4"))
    {
        return digits(n)
            .and_then(|n| u32::try_from(n).ok())
            .map(MediaFile::Init);
    }
    let stem = name.strip_suffix(".m4s")?;
    if let Some(n) = stem.strip_prefix('s') {
        return digits(n).map(MediaFile::Segment);
    }
    digits(stem.strip_prefix('p')?).map(MediaFile::Part)
}

/// `GET /{bus}/{profile}/{epoch}/{file}`.
pub async fn media_file_handler(
    State(hls): State<Arc<Hls>>,
    Path((cam, profile, epoch, file)): Path<(String, String, String, String)>,
) -> Result<Response, HlsError> {
    let gone = || {
        HlsError::NotFound(format!("{cam}/{profile}/{epoch}/{file}: no such media (an old epoch, or past the playlist window)"))
    };
    valid_name("bus", &cam)?;
    valid_name("profile", &profile)?;
    let what = media_file(&file).ok_or_else(gone)?;
    let m = hls
        .running(&enc::bus_name(&cam, &profile))
        .filter(|m| m.epoch() == epoch)
        .ok_or_else(gone)?;
    m.touch();
    let c = &hls.counters;
    let r = match what {
        MediaFile::Init(n) => {
            let b = m.init(n).ok_or_else(gone)?;
            c.inits.fetch_add(1, Relaxed);
            c.bytes.fetch_add(b.len() as u64, Relaxed);
            media(vec![b], "video/mp4", &hls.cache(IMMUTABLE_SECS, true))
        }
        MediaFile::Segment(msn) => {
            let parts = m.segment(msn).ok_or_else(gone)?;
            c.segments.fetch_add(1, Relaxed);
            c.bytes
                .fetch_add(parts.iter().map(|p| p.len() as u64).sum(), Relaxed);
            media(parts, "video/iso.segment", &hls.cache(IMMUTABLE_SECS, true))
        }
        MediaFile::Part(n) => {
            let td = m.target_duration();
            match hls.wait(&m, 3 * td, |m| m.part_ready(n)).await {
                Ready::Yes => {}
                Ready::Never(_) | Ready::NotYet => return Err(gone()),
            }
            let p = m.part(n).ok_or_else(gone)?;
            c.parts.fetch_add(1, Relaxed);
            c.bytes.fetch_add(p.bytes.len() as u64, Relaxed);
            media(
                vec![p.bytes.clone()],
                "video/iso.segment",
                &hls.cache(IMMUTABLE_SECS, true),
            )
        }
    };
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocking_directives() {
        let d = directives(Some("_HLS_msn=12&_HLS_part=3&s=ab")).unwrap();
        assert_eq!(
            d.want,
            Some(Position {
                msn: 12,
                part: Some(3)
            })
        );
        assert_eq!(d.s.as_deref(), Some("ab"));
        assert_eq!(directives(None).unwrap().want, None);
        assert_eq!(directives(Some("_HLS_skip=YES")).unwrap().want, None);
        for bad in [
            "_HLS_part=1",
            "_HLS_msn=",
            "_HLS_msn=-1",
            "_HLS_msn=+1",
            "_HLS_msn=1e3",
            "_HLS_msn=99999999999999999999999",
            "_HLS_msn=1&_HLS_part=4294967296",
            "_HLS_msn=0x10",
        ] {
            assert!(
                matches!(directives(Some(bad)), Err(HlsError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_media_names() {
        assert_eq!(media_file("init0.mp4"), Some(MediaFile::Init(0)));
        assert_eq!(media_file("s123.m4s"), Some(MediaFile::Segment(123)));
        assert_eq!(media_file("p7.m4s"), Some(MediaFile::Part(7)));
        for bad in [
            "init.mp4",
            "s.m4s",
            "p-1.m4s",
            "p+1.m4s",
            "../p1.m4s",
            "p1.m4s.exe",
            "x1.m4s",
            "p99999999999999999999999.m4s",
            "init99999999999.mp4",
        ] {
            assert_eq!(media_file(bad), None, "{bad}");
        }
    }
}
