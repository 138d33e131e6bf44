//! HLS / LL-HLS in a real browser: hls.js players in headless Chromium,
//! driven by `publishers/tests/browser/hls.mjs` (one JSON object in, one
//! JSON report out, parsed here into [`HlsReport`]). See that directory's
//! README for the report's fields.
//!
//! Each client is its own browser context (its own connections and HTTP
//! cache, like a separate viewer) with a page the driver serves itself on
//! another origin than the stream (so every request is a CORS request), by
//! default a port of its own on the stream's host. [`hls_play_with`] runs
//! Chromium in a network namespace ([`HlsExtra::netns`], as
//! [`crate::browser::whep_play_with`]) so that a `tc` shaping applies.
//!
//! [`self_test`] checks the harness against [`crate::hls_stream::TestStream`]
//! (ffmpeg's fragments republished as LL-HLS), with no framebus server.
//!
//! Needs `node`, `/usr/bin/chromium` (or `$CHROMIUM`) and the driver's
//! `node_modules` with `hls.js` (`make node-deps`); each missing piece
//! panics saying how to get it. Every run is bounded (`seconds` +
//! [`crate::browser::SLACK`]); [`HlsPlay::until`] ends it once every
//! client got somewhere (frames decoded, a picture size).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::json;

use crate::browser::{drive_script, driver_dir, parse_report, Auth, Summary, TimeCodes};

/// Where the player page comes from (its origin, the `Origin` of every
/// request hls.js makes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PageOrigin {
    /// The driver's own HTTP server on the stream's host, another port:
    /// another origin in the same address space (CORS applies; Chromium's
    /// Local Network Access checks do not refuse it).
    #[default]
    Cross,
    /// The stream's own origin (request interception): no CORS.
    Same,
    /// This origin, e.g. `http://player.test` (request interception). A
    /// non-secure origin that is not loopback is refused by Chromium's
    /// Local Network Access checks when the stream is on loopback or a
    /// private address.
    Other(String),
}

/// What [`hls_play`] plays, and how.
#[derive(Clone, Debug)]
pub struct HlsPlay {
    /// A multivariant or media playlist URL.
    pub url: String,
    /// How long every client plays before the report is read; with
    /// [`HlsPlay::until`], the bound (a watchdog) of an earlier end.
    pub seconds: f64,
    /// Players, each in its own browser context, all in one Chromium.
    pub clients: u32,
    /// hls.js `lowLatencyMode` (parts, blocking reloads).
    pub low_latency: bool,
    /// Credentials, as an `Authorization` header on every request.
    pub auth: Auth,
    /// More request headers (name, value) on every request hls.js makes.
    pub headers: Vec<(String, String)>,
    /// hls.js `startLevel` (index into the levels, lowest bit rate first);
    /// `None`: hls.js picks.
    pub start_level: Option<i32>,
    /// hls.js `capLevelToPlayerSize` (the player is 320 px wide).
    pub cap_level_to_player_size: bool,
    /// Where the page is served from.
    pub page_origin: PageOrigin,
    /// Decode the time code of every presented frame (latency).
    pub timecode: bool,
    /// Sampling period of `hls.latency` and the size/level, ms (>= 50).
    pub sample_ms: u32,
    /// Include the samples and the raw latencies in the report.
    pub raw: bool,
    /// More hls.js configuration (an object merged last), e.g.
    /// `{"maxBufferLength": 4}`.
    pub hls_config: Option<serde_json::Value>,
    /// End as soon as every client got this far (nothing set: play
    /// `seconds`).
    pub until: Until,
}

/// A point every client must reach for [`hls_play`] to end before
/// [`HlsPlay::seconds`] (checked every 250 ms): a wait for a condition,
/// not a fixed window. Every field set must hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Until {
    /// At least this many frames decoded
    /// (`getVideoPlaybackQuality().totalVideoFrames`).
    pub frames_decoded: Option<u64>,
    /// A picture of this height shown (a `resize` to it).
    pub height: Option<u32>,
}

impl HlsPlay {
    /// One low-latency client of `url` for 5 s, page on another origin,
    /// time code on, no credentials.
    pub fn new(url: impl Into<String>) -> HlsPlay {
        HlsPlay {
            url: url.into(),
            seconds: 5.0,
            clients: 1,
            low_latency: true,
            auth: Auth::None,
            headers: Vec::new(),
            start_level: None,
            cap_level_to_player_size: false,
            page_origin: PageOrigin::Cross,
            timecode: true,
            sample_ms: 250,
            raw: false,
            hls_config: None,
            until: Until::default(),
        }
    }

    /// The driver's JSON input.
    pub fn to_json(&self) -> serde_json::Value {
        let headers: serde_json::Map<String, serde_json::Value> = self
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), json!(v)))
            .collect();
        let mut v = json!({
            "url": self.url,
            "seconds": self.seconds,
            "clients": self.clients,
            "lowLatency": self.low_latency,
            "capLevelToPlayerSize": self.cap_level_to_player_size,
            "headers": headers,
            "timecode": self.timecode,
            "sampleMs": self.sample_ms,
            "raw": self.raw,
            "pageOrigin": match &self.page_origin {
                PageOrigin::Cross => "cross",
                PageOrigin::Same => "same",
                PageOrigin::Other(o) => o.as_str(),
            },
        });
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(t) => v["token"] = json!(t),
            Auth::Basic(up) => v["basic"] = json!(up),
        }
        if let Some(l) = self.start_level {
            v["startLevel"] = json!(l);
        }
        if let Some(c) = &self.hls_config {
            v["hlsConfig"] = c.clone();
        }
        if self.until != Until::default() {
            let mut u = serde_json::Map::new();
            if let Some(n) = self.until.frames_decoded {
                u.insert("framesDecoded".into(), json!(n));
            }
            if let Some(h) = self.until.height {
                u.insert("height".into(), json!(h));
            }
            v["until"] = serde_json::Value::Object(u);
        }
        v
    }
}

/// Options of [`hls_play_with`] (none by default: [`hls_play`]).
#[derive(Clone, Debug, Default)]
pub struct HlsExtra {
    /// Run Chromium inside this network namespace (`ip netns exec NS`,
    /// needs root); the driver (node) and its page server stay in the
    /// caller's. The stream's address must be reachable from the
    /// namespace (the host side of its veth pair); the page server listens
    /// on that same address.
    pub netns: Option<String>,
    /// End the measurement as soon as this file exists, before `seconds`
    /// (which stays the bound).
    pub stop_file: Option<PathBuf>,
}

/// One level (variant) as hls.js parsed it.
#[derive(Clone, Debug, Deserialize)]
pub struct Level {
    /// Index in hls.js's list (sorted by bit rate, lowest first).
    pub index: u32,
    /// `RESOLUTION` width.
    pub width: Option<u32>,
    /// `RESOLUTION` height.
    pub height: Option<u32>,
    /// `BANDWIDTH`.
    pub bitrate: Option<u64>,
    /// `NAME`, if any.
    pub name: Option<String>,
    /// The media playlist URL (absolute, with the variant URI's query).
    pub url: Option<String>,
    /// The video codec (`CODECS`).
    pub codecs: Option<String>,
}

/// hls.js switched level (`LEVEL_SWITCHED`: fragments now come from it).
#[derive(Clone, Debug, Deserialize)]
pub struct LevelSwitch {
    /// ms since the player started.
    pub t_ms: f64,
    /// The new level.
    pub level: i32,
    /// Its width.
    pub width: Option<u32>,
    /// Its height.
    pub height: Option<u32>,
    /// Its `BANDWIDTH`.
    pub bitrate: Option<u64>,
}

/// The video element's size changed (`resize`: the picture shown).
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct SizeChange {
    /// ms since the player started.
    pub t_ms: f64,
    /// `videoWidth`.
    pub width: u32,
    /// `videoHeight`.
    pub height: u32,
}

/// The first media playlist hls.js loaded, as it parsed it.
#[derive(Clone, Debug, Deserialize)]
pub struct PlaylistInfo {
    /// No `EXT-X-ENDLIST`.
    pub live: bool,
    /// `EXT-X-TARGETDURATION`.
    pub target_duration_s: f64,
    /// `PART-TARGET` (LL-HLS).
    pub part_target_s: Option<f64>,
    /// `CAN-BLOCK-RELOAD=YES`.
    pub can_block_reload: bool,
    /// `CAN-SKIP-UNTIL`.
    pub can_skip_until_s: Option<f64>,
    /// `PART-HOLD-BACK`.
    pub part_hold_back_s: Option<f64>,
    /// `HOLD-BACK`.
    pub hold_back_s: Option<f64>,
    /// The `EXT-X-PRELOAD-HINT` URI.
    pub preload_hint: Option<String>,
    /// `EXT-X-PART` tags.
    pub parts: u32,
    /// Segments.
    pub segments: u32,
}

/// Stalls after playback began.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Stalls {
    /// `waiting` events after the first `playing`.
    pub count: u32,
    /// Their total length (until `playing` again, or the end), ms.
    pub total_ms: u64,
    /// hls.js `BUFFER_STALLED_ERROR`s (also in `errors`).
    pub buffer_stalled_errors: u32,
}

/// An hls.js `ERROR` event.
#[derive(Clone, Debug, Deserialize)]
pub struct HlsError {
    /// ms since the player started.
    pub t_ms: f64,
    /// `networkError`, `mediaError`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// `levelLoadError`, `bufferStalledError`, ...
    pub details: String,
    /// hls.js gave up (the driver does not recover).
    pub fatal: bool,
    /// Its reason or error message.
    pub reason: Option<String>,
    /// The HTTP status (0: no response, e.g. refused by CORS).
    pub response_code: Option<i64>,
    /// The URL concerned.
    pub url: Option<String>,
}

/// Requests hls.js made, by kind (`*_LOADING` events; its internal
/// retries are not counted).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct Requests {
    /// The URL given (multivariant or media playlist).
    pub manifest: u64,
    /// Media playlist loads without delivery directives.
    pub playlist: u64,
    /// Blocking reloads (`_HLS_msn`, maybe `_HLS_part`).
    pub playlist_blocking: u64,
    /// `EXT-X-MAP` init segments.
    pub init: u64,
    /// Whole segments.
    pub segment: u64,
    /// Parts (`EXT-X-PART`).
    pub part: u64,
}

/// The first URLs of each kind, as requested.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RequestUrls {
    /// See [`Requests`].
    pub manifest: Vec<String>,
    /// See [`Requests`].
    pub playlist: Vec<String>,
    /// See [`Requests`].
    pub playlist_blocking: Vec<String>,
    /// See [`Requests`].
    pub init: Vec<String>,
    /// See [`Requests`].
    pub segment: Vec<String>,
    /// See [`Requests`].
    pub part: Vec<String>,
}

/// One sample (with [`HlsPlay::raw`]).
#[derive(Clone, Debug, Deserialize)]
pub struct HlsSample {
    /// ms since the player started.
    pub t_ms: f64,
    /// `hls.currentLevel`.
    pub level: i32,
    /// `videoWidth`.
    pub width: u32,
    /// `videoHeight`.
    pub height: u32,
    /// `currentTime`.
    pub current_time_s: f64,
    /// Buffered media ahead of the playhead.
    pub buffer_ahead_s: f64,
    /// `hls.latency`.
    pub latency_s: Option<f64>,
    /// `hls.targetLatency`.
    pub target_latency_s: Option<f64>,
    /// `hls.liveSyncPosition`.
    pub live_sync_position_s: Option<f64>,
    /// `hls.maxLatency`.
    pub max_latency_s: Option<f64>,
    /// `hls.drift`.
    pub drift: Option<f64>,
    /// `playbackRate` (hls.js speeds up to catch up in low-latency mode).
    pub playback_rate: f64,
}

/// What one client did.
#[derive(Clone, Debug, Deserialize)]
pub struct HlsClient {
    /// 0-based.
    pub index: u32,
    /// `Hls.isSupported()` (MSE with H.264).
    pub supported: bool,
    /// Reached `playing`.
    pub playing: bool,
    /// `video.play()` failed.
    pub play_error: Option<String>,
    /// Start to the first `playing`, ms.
    pub first_playing_ms: Option<f64>,
    /// Start (`loadSource`) to the first frame handed to the compositor
    /// (`requestVideoFrameCallback`'s `presentationTime`), ms.
    pub time_to_first_frame_ms: Option<f64>,
    /// Frames presented (`requestVideoFrameCallback` calls).
    pub frames_presented: u64,
    /// `getVideoPlaybackQuality().totalVideoFrames`.
    pub frames_decoded: u64,
    /// Chromium's `webkitAudioDecodedByteCount`: bytes of (compressed)
    /// sound its decoder took in (`None` where the browser has no such
    /// count).
    #[serde(default)]
    pub audio_decoded_bytes: Option<u64>,
    /// `getVideoPlaybackQuality().droppedVideoFrames`.
    pub dropped_frames: u64,
    /// The levels of the multivariant playlist (one for a media playlist).
    pub levels: Vec<Level>,
    /// Level switches, the first one included.
    pub level_switches: Vec<LevelSwitch>,
    /// Picture size changes, the first one included.
    pub sizes: Vec<SizeChange>,
    /// `hls.currentLevel` at the end.
    pub final_level: Option<i32>,
    /// `videoWidth` at the end.
    pub video_width: u32,
    /// `videoHeight` at the end.
    pub video_height: u32,
    /// The first media playlist as parsed.
    pub playlist: Option<PlaylistInfo>,
    /// Stalls after playback began.
    pub stalls: Stalls,
    /// The first 100 hls.js errors.
    pub errors: Vec<HlsError>,
    /// All hls.js errors.
    pub errors_total: u64,
    /// The first fatal one.
    pub fatal_error: Option<HlsError>,
    /// Requests by kind.
    pub requests: Requests,
    /// The first 4 URLs of each kind.
    pub urls: RequestUrls,
    /// Load times (request to last byte) by kind, ms; a blocking reload's
    /// includes the time the server held it. Keys as in [`Requests`].
    pub load_ms: BTreeMap<String, Option<Summary>>,
    /// `hls.latency` (live edge minus playhead) sampled after `playing`,
    /// in ms.
    pub hls_latency_ms: Option<Summary>,
    /// `hls.targetLatency` at the end.
    pub target_latency_s: Option<f64>,
    /// `hls.liveSyncPosition` at the end.
    pub live_sync_position_s: Option<f64>,
    /// `hls.maxLatency` at the end.
    pub max_latency_s: Option<f64>,
    /// `hls.drift` at the end.
    pub drift: Option<f64>,
    /// `playbackRate` at the end.
    pub playback_rate: Option<f64>,
    /// `currentTime` at the end.
    pub current_time_s: Option<f64>,
    /// Buffer ahead of the playhead at the end.
    pub buffer_ahead_s: Option<f64>,
    /// Time codes of the presented frames (`latency_ms`: presentation on
    /// the wall clock minus capture time, as for WHEP; `abs_latency_ms`
    /// and `network_to_present_ms` are WebRTC-only: `None`).
    pub timecode: Option<TimeCodes>,
    /// Samples, with [`HlsPlay::raw`].
    #[serde(default)]
    pub samples: Option<Vec<HlsSample>>,
}

impl HlsClient {
    /// Distinct picture sizes shown, in order of first appearance.
    pub fn sizes_seen(&self) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = Vec::new();
        for s in &self.sizes {
            if !v.contains(&(s.width, s.height)) {
                v.push((s.width, s.height));
            }
        }
        v
    }
}

/// The report of [`hls_play`].
#[derive(Clone, Debug, Deserialize)]
pub struct HlsReport {
    /// The URL played.
    pub url: String,
    /// The page's origin.
    pub page_origin: Option<String>,
    /// hls.js `lowLatencyMode`.
    pub low_latency: bool,
    /// Chromium's version.
    pub browser: Option<String>,
    /// hls.js's version.
    pub hls_js: Option<String>,
    /// Console messages of level error (`[client N] text (url)`).
    pub console_errors: Vec<String>,
    /// Uncaught exceptions in the pages.
    pub page_errors: Vec<String>,
    /// Every client.
    pub clients: Vec<HlsClient>,
    /// The whole run, ms.
    pub elapsed_ms: u64,
}

/// Plays `opts.url` with hls.js in Chromium.
pub fn hls_play(opts: &HlsPlay) -> HlsReport {
    hls_play_with(opts, &HlsExtra::default())
}

/// [`hls_play`] with Chromium in a network namespace, or an early stop.
pub fn hls_play_with(opts: &HlsPlay, extra: &HlsExtra) -> HlsReport {
    let dir = driver_dir();
    assert!(
        dir.join("node_modules/hls.js/dist/hls.min.js").is_file(),
        "{}/node_modules/hls.js is missing: run `make node-deps`",
        dir.display()
    );
    let mut input = opts.to_json();
    if let Some(f) = &extra.stop_file {
        input["stopFile"] = json!(f.display().to_string());
    }
    let out = drive_script(
        "hls.mjs",
        &[input.to_string()],
        opts.seconds,
        extra.netns.as_deref(),
    );
    parse_report("hls.mjs", &out)
}

/// The harness checked against [`crate::hls_stream::TestStream`] (no
/// framebus server): `clients` low-latency players of its multivariant
/// playlist for `seconds`; the report, and the requests the stream
/// answered (which then stops).
pub fn self_test(seconds: f64, clients: u32) -> (HlsReport, Vec<crate::hls_stream::Logged>) {
    let stream = crate::hls_stream::TestStream::start();
    let mut opts = HlsPlay::new(stream.multivariant_url());
    opts.seconds = seconds;
    opts.clients = clients;
    let r = hls_play(&opts);
    (r, stream.requests())
}
