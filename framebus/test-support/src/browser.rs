//! A real browser for the WebRTC tests: headless Chromium driven by
//! `publishers/tests/browser/whep.mjs` (playwright-core), which plays a
//! WHEP endpoint or a player page and prints one JSON report, parsed here.
//! [`recorder_page`] drives framebus-recorder's page (`recpage.mjs`).
//! See that directory's README for the report's fields and the Chromium
//! flags. [`whep_play_with`] adds network options ([`WhepExtra`]):
//! Chromium in a network namespace, TURN servers and relay-only ICE, stats
//! sampled over time, an early stop. [`video_play`] plays an MP4 file (a
//! recording) in a plain `<video>` element (`video.mjs`). With
//! [`WhepPlay::audio`] the viewers also receive audio and report it.
//! [`janus_play`] watches a mountpoint of a Janus server with janus.js
//! (`janus.mjs`, same report).
//!
//! Needs `node`, `/usr/bin/chromium` (or `$CHROMIUM`) and the driver's
//! `node_modules` (`make node-deps`); each missing piece panics saying how
//! to get it. Every run is bounded (`seconds` + [`SLACK`]) and gets its own
//! `$TMPDIR`, removed afterwards, so even a killed run leaves no browser
//! profile behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use crate::{run_to_end, TempDir};

/// Time allowed beyond the measurement: starting Chromium, ICE, tear-down.
/// The driver's own bound is 60 s; this one catches a wedged node.
pub const SLACK: Duration = Duration::from_secs(90);

/// Credentials sent with the WHEP `POST` and `DELETE`.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    /// None.
    #[default]
    None,
    /// `Authorization: Bearer TOKEN`.
    Bearer(String),
    /// `Authorization: Basic`, from `user:pass`.
    Basic(String),
}

/// What [`whep_play`] plays.
#[derive(Clone, Debug)]
pub struct WhepPlay {
    /// The endpoint, `http://127.0.0.1:PORT/BUS/PROFILE/whep`.
    pub url: String,
    /// How long every viewer plays before the stats are read.
    pub seconds: f64,
    /// Peer connections, all in one page.
    pub viewers: u32,
    /// Credentials.
    pub auth: Auth,
    /// Decode the time code of viewer 0's frames (latency).
    pub timecode: bool,
    /// Also offer receive-only audio (`--audio`): [`Viewer::audio`],
    /// [`Viewer::answer_audio`], [`Viewer::track_kinds`].
    pub audio: bool,
}

impl WhepPlay {
    /// One viewer of `url` for 5 s, no credentials, no time code.
    pub fn new(url: impl Into<String>) -> WhepPlay {
        WhepPlay {
            url: url.into(),
            seconds: 5.0,
            viewers: 1,
            auth: Auth::None,
            timecode: false,
            audio: false,
        }
    }
}

/// Network and sampling options of [`whep_play_with`] (none by default:
/// [`whep_play`]).
#[derive(Clone, Debug, Default)]
pub struct WhepExtra {
    /// Run Chromium inside this network namespace (`ip netns exec NS`,
    /// through a wrapper script given to the driver as `$CHROMIUM`; needs
    /// root). The driver (node) stays in the caller's namespace.
    pub netns: Option<String>,
    /// Sample each viewer's inbound stats every this many ms
    /// (`--sample-ms`, at least 50): [`Viewer::samples`].
    pub sample_ms: Option<u32>,
    /// End the measurement as soon as this file exists (`--stop-file`),
    /// before `seconds` (which stays the bound).
    pub stop_file: Option<PathBuf>,
    /// STUN/TURN server URLs for the peer connections (`--ice-server`).
    pub ice_servers: Vec<String>,
    /// User name for them (`--ice-username`).
    pub ice_username: Option<String>,
    /// Credential for them (`--ice-credential`).
    pub ice_credential: Option<String>,
    /// Relay candidates only (`iceTransportPolicy: 'relay'`).
    pub relay_only: bool,
}

/// One sample of a viewer's inbound video (`--sample-ms`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Sample {
    /// ms since the viewer's `POST`.
    pub t_ms: u64,
    /// The page's wall clock (`Date.now()`, ms since the Unix epoch): the
    /// test's own clock on the same machine.
    pub wall_ms: u64,
    /// `frameWidth`.
    pub frame_width: Option<u32>,
    /// `frameHeight`.
    pub frame_height: Option<u32>,
    /// `framesDecoded`.
    pub frames_decoded: Option<u64>,
    /// `framesPerSecond`.
    pub frames_per_second: Option<f64>,
    /// `freezeCount`.
    pub freeze_count: Option<u64>,
    /// `packetsLost`.
    pub packets_lost: Option<i64>,
    /// `packetsReceived`.
    pub packets_received: Option<u64>,
    /// `nackCount`.
    pub nack_count: Option<u64>,
    /// `pliCount`.
    pub pli_count: Option<u64>,
    /// `connectionState`.
    pub connection_state: Option<String>,
}

/// Inbound video of one peer connection, from `getStats()`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Inbound {
    /// `framesDecoded`.
    pub frames_decoded: Option<u64>,
    /// `framesReceived`.
    pub frames_received: Option<u64>,
    /// `framesDropped`.
    pub frames_dropped: Option<u64>,
    /// `frameWidth`.
    pub frame_width: Option<u32>,
    /// `frameHeight`.
    pub frame_height: Option<u32>,
    /// `framesPerSecond`.
    pub frames_per_second: Option<f64>,
    /// `freezeCount`.
    pub freeze_count: Option<u64>,
    /// `totalFreezesDuration`, seconds.
    pub total_freezes_duration_s: Option<f64>,
    /// `pauseCount`.
    pub pause_count: Option<u64>,
    /// `packetsLost`.
    pub packets_lost: Option<i64>,
    /// `jitter` (RTP interarrival jitter), ms.
    #[serde(default)]
    pub jitter_ms: Option<f64>,
    /// `packetsReceived`.
    pub packets_received: Option<u64>,
    /// `nackCount`.
    pub nack_count: Option<u64>,
    /// `pliCount`.
    pub pli_count: Option<u64>,
    /// `firCount`.
    pub fir_count: Option<u64>,
    /// Mean jitter buffer delay, ms (`jitterBufferDelay` /
    /// `jitterBufferEmittedCount`).
    pub jitter_buffer_ms: Option<f64>,
    /// `decoderImplementation` (Chromium hides it from pages not capturing:
    /// usually `None`).
    pub decoder_implementation: Option<String>,
    /// The codec's `mimeType`, `video/H264`.
    pub codec: Option<String>,
    /// The codec's `sdpFmtpLine`.
    pub sdp_fmtp_line: Option<String>,
}

/// Inbound audio of one peer connection, from `getStats()` (`--audio`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AudioInbound {
    /// `packetsReceived`.
    pub packets_received: Option<u64>,
    /// `packetsLost`.
    pub packets_lost: Option<i64>,
    /// `totalSamplesReceived`.
    pub total_samples_received: Option<u64>,
    /// `concealedSamples`.
    pub concealed_samples: Option<u64>,
    /// `silentConcealedSamples`.
    pub silent_concealed_samples: Option<u64>,
    /// `concealmentEvents`.
    pub concealment_events: Option<u64>,
    /// `audioLevel` at the end (0..1).
    pub audio_level: Option<f64>,
    /// `totalAudioEnergy`.
    pub total_audio_energy: Option<f64>,
    /// `totalSamplesDuration`, seconds.
    pub total_samples_duration_s: Option<f64>,
    /// Mean jitter buffer delay, ms.
    pub jitter_buffer_ms: Option<f64>,
    /// The codec's `mimeType`, `audio/opus`.
    pub codec: Option<String>,
    /// The codec's `clockRate`.
    pub clock_rate: Option<u32>,
    /// The codec's `channels`.
    pub channels: Option<u32>,
    /// The codec's `sdpFmtpLine`.
    pub sdp_fmtp_line: Option<String>,
    /// The largest `audioLevel` of the samples taken every 100 ms.
    pub audio_level_max: Option<f64>,
    /// How many such samples had a level.
    #[serde(default)]
    pub audio_level_samples: u64,
}

/// A media line of the answer as the driver read it (`--audio`).
#[derive(Clone, Debug, Deserialize)]
pub struct AnswerMedia {
    /// Its port: 0 when refused.
    pub port: u32,
    /// `sendonly`, `sendrecv`, `recvonly`, `inactive`.
    pub direction: Option<String>,
    /// Its `a=rtpmap` encodings, `opus/48000/2`.
    pub codecs: Vec<String>,
}

/// Stats of one peer connection.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PcStats {
    /// `None` before any video RTP arrived.
    pub inbound: Option<Inbound>,
    /// `currentRoundTripTime` of the selected candidate pair, ms.
    pub rtt_ms: Option<f64>,
    /// The selected pair's local candidate, `ADDR:PORT/udp TYPE`.
    pub local_candidate: Option<String>,
    /// The selected pair's remote candidate.
    pub remote_candidate: Option<String>,
}

impl PcStats {
    /// Frames decoded (0 without inbound video).
    pub fn frames_decoded(&self) -> u64 {
        self.inbound
            .as_ref()
            .and_then(|i| i.frames_decoded)
            .unwrap_or(0)
    }
}

/// Nearest-rank percentiles of samples in ms.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Summary {
    /// Samples.
    pub n: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// The samples behind [`TimeCodes`] (`--raw`, not requested by these
/// helpers; kept for completeness).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RawSamples {
    /// Presentation time minus the frame's time code, ms.
    pub latency_ms: Vec<f64>,
    /// Presentation time minus Chromium's `captureTime`, ms.
    pub abs_latency_ms: Vec<f64>,
    /// Presentation time minus `receiveTime`, ms.
    pub network_to_present_ms: Vec<f64>,
}

/// The time codes (`docs/timecode.md`) of the frames viewer 0 presented.
#[derive(Clone, Debug, Deserialize)]
pub struct TimeCodes {
    /// Frames presented (`requestVideoFrameCallback` calls).
    pub frames: u64,
    /// Frames whose time code was read.
    pub decoded: u64,
    /// Frames without a readable (or plausible) time code.
    pub refused: u64,
    /// Counter values never seen between two decoded frames.
    pub counter_gaps: u64,
    /// Jumps of the counter by more than one.
    pub gap_events: u64,
    /// The same counter twice in a row.
    pub repeats: u64,
    /// Frames the compositor skipped (`presentedFrames` jumps): part of
    /// `counter_gaps` that the network and decoder did deliver.
    pub presented_skipped: u64,
    /// `presentationTime` (frame handed to the compositor) on the wall
    /// clock minus the capture time in the code.
    pub latency_ms: Option<Summary>,
    /// Presentation minus `captureTime` (RTP abs-capture-time, which the
    /// viewer offers), when the sender sends it.
    pub abs_latency_ms: Option<Summary>,
    /// Presentation minus `receiveTime` (last packet of the frame).
    pub network_to_present_ms: Option<Summary>,
    /// The samples, with `--raw`.
    pub raw: Option<RawSamples>,
}

/// One WHEP viewer.
#[derive(Clone, Debug, Deserialize)]
pub struct Viewer {
    /// 0-based.
    pub index: u32,
    /// Status of the `POST` (201 expected); `None` when it failed outright.
    pub post_status: Option<u16>,
    /// Non-2xx body (first 1000 characters), or the fetch error.
    pub post_error: Option<String>,
    /// `Retry-After` of a non-2xx answer.
    pub retry_after: Option<String>,
    /// `Content-Type` of the answer.
    pub content_type: Option<String>,
    /// The session URL (`Location`, made absolute).
    pub location: Option<String>,
    /// `POST` to answer received, ms.
    pub answer_ms: Option<f64>,
    /// `setRemoteDescription` refused the answer.
    pub answer_error: Option<String>,
    /// `video.play()` failed.
    pub play_error: Option<String>,
    /// `RTCPeerConnection.connectionState` at the end.
    pub connection_state: String,
    /// `iceConnectionState` at the end.
    pub ice_state: String,
    /// `POST` to the first frame handed to the compositor, ms.
    pub first_frame_ms: Option<f64>,
    /// Frames presented (`requestVideoFrameCallback` calls).
    pub frames_presented: u64,
    /// Status of the `DELETE` of `location`.
    pub delete_status: Option<u16>,
    /// The `DELETE` failed outright.
    pub delete_error: Option<String>,
    /// The answer's `Link` headers, comma-joined.
    #[serde(default)]
    pub link: Option<String>,
    /// The candidates of the answer (`candidate:...`, WHEP only).
    #[serde(default)]
    pub answer_candidates: Option<Vec<String>>,
    /// With [`WhepPlay::audio`]: the kind of every track the peer
    /// connection received (`ontrack`).
    #[serde(default)]
    pub track_kinds: Option<Vec<String>>,
    /// With [`WhepPlay::audio`]: the answer's audio line (`None`: it had
    /// none).
    #[serde(default)]
    pub answer_audio: Option<AnswerMedia>,
    /// With [`WhepPlay::audio`]: the inbound audio (`None`: no audio RTP).
    #[serde(default)]
    pub audio: Option<AudioInbound>,
    /// The audio element's `play()` failed.
    #[serde(default)]
    pub audio_play_error: Option<String>,
    /// Stats over time ([`WhepExtra::sample_ms`]).
    #[serde(default)]
    pub samples: Option<Vec<Sample>>,
    /// [`janus_play`] only: what janus.js saw of the session.
    #[serde(default)]
    pub janus: Option<JanusViewer>,
    /// Its stats.
    #[serde(flatten)]
    pub stats: PcStats,
}

/// What janus.js saw of a [`janus_play`] viewer's session.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct JanusViewer {
    /// The Streaming plugin's `result.status` events, in order
    /// (`preparing`, `starting`, `started`, ...).
    pub statuses: Vec<String>,
    /// janus.js's `webrtcState(true)`: Janus says the PeerConnection is up
    /// (ICE and DTLS done).
    pub webrtc_up: bool,
    /// `mediaState` events, `video:MID:on`.
    pub media: Vec<String>,
    /// janus.js's `iceState` events, in order.
    pub ice_states: Vec<String>,
    /// `webrtcState(false)`'s reason: Janus hung up.
    pub hangup: Option<String>,
    /// `slowLink` events.
    pub slow_links: u64,
    /// The candidates of Janus's offer (`candidate:...`).
    pub offer_candidates: Vec<String>,
}

/// The report of [`whep_play`], [`self_test`] and [`janus_play`].
#[derive(Clone, Debug, Deserialize)]
pub struct PlayReport {
    /// `whep`, `self_test` or `janus`.
    pub mode: String,
    /// Chromium's version.
    pub browser: Option<String>,
    /// Console messages of level error (`text (url)`).
    pub console_errors: Vec<String>,
    /// Uncaught exceptions in the page.
    pub page_errors: Vec<String>,
    /// Every viewer.
    pub viewers: Vec<Viewer>,
    /// Viewer 0's time codes, when asked.
    pub timecode: Option<TimeCodes>,
    /// Self-test: canvas frames painted.
    pub frames_painted: Option<u64>,
    /// The whole run, ms.
    pub elapsed_ms: u64,
}

/// Pictures (`<img>`) of a page.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Images {
    /// `<img>` elements.
    pub total: u32,
    /// Those with a picture (`naturalWidth > 0`).
    pub loaded: u32,
}

/// What the page's `window.framebusPlayer` showed.
#[derive(Clone, Debug, Deserialize)]
pub struct Player {
    /// Whether the page set `window.framebusPlayer`.
    pub has_player: bool,
    /// Its `mode`: `webrtc`, `mjpeg`, `connecting`, `failed`.
    pub mode: Option<String>,
    /// The page's `<img>` elements.
    pub images: Images,
    /// `connectionState` of its `pc`.
    pub connection_state: Option<String>,
    /// Page start to the first frame of its `video`, ms.
    pub first_frame_ms: Option<f64>,
    /// Frames its `video` presented.
    pub frames_presented: Option<u64>,
    /// Time codes of its `video`'s frames.
    pub timecode: Option<TimeCodes>,
    /// Its `img` shows a picture.
    pub img_loaded: Option<bool>,
    /// Its `img`'s natural width.
    pub img_width: Option<u32>,
    /// Its `img`'s natural height.
    pub img_height: Option<u32>,
    /// Stats of its `pc`.
    #[serde(flatten)]
    pub stats: PcStats,
}

/// The report of [`page_play`].
#[derive(Clone, Debug, Deserialize)]
pub struct PageReport {
    /// Chromium's version.
    pub browser: Option<String>,
    /// Console messages of level error (`text (url)`).
    pub console_errors: Vec<String>,
    /// Uncaught exceptions in the page.
    pub page_errors: Vec<String>,
    /// Status of the page itself.
    pub http_status: Option<u16>,
    /// Its `<title>`.
    pub title: Option<String>,
    /// The player's state at the end.
    pub player: Player,
    /// The whole run, ms.
    pub elapsed_ms: u64,
}

/// `publishers/tests/browser/`, from this crate's manifest directory
/// (`framebus/test-support`).
pub fn driver_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../publishers/tests/browser")
}

/// Plays `opts.url` with WHEP in Chromium.
pub fn whep_play(opts: &WhepPlay) -> PlayReport {
    whep_play_with(opts, &WhepExtra::default())
}

/// [`whep_play`] with network and sampling options.
pub fn whep_play_with(opts: &WhepPlay, extra: &WhepExtra) -> PlayReport {
    let mut args = vec![
        "--url".to_string(),
        opts.url.clone(),
        "--viewers".to_string(),
        opts.viewers.to_string(),
    ];
    match &opts.auth {
        Auth::None => {}
        Auth::Bearer(t) => args.extend(["--token".to_string(), t.clone()]),
        Auth::Basic(up) => args.extend(["--basic".to_string(), up.clone()]),
    }
    if opts.timecode {
        args.push("--timecode".to_string());
    }
    if opts.audio {
        args.push("--audio".to_string());
    }
    if let Some(ms) = extra.sample_ms {
        args.extend(["--sample-ms".to_string(), ms.to_string()]);
    }
    if let Some(f) = &extra.stop_file {
        args.extend(["--stop-file".to_string(), f.display().to_string()]);
    }
    for s in &extra.ice_servers {
        args.extend(["--ice-server".to_string(), s.clone()]);
    }
    if let Some(u) = &extra.ice_username {
        args.extend(["--ice-username".to_string(), u.clone()]);
    }
    if let Some(c) = &extra.ice_credential {
        args.extend(["--ice-credential".to_string(), c.clone()]);
    }
    if extra.relay_only {
        args.push("--relay-only".to_string());
    }
    parse(&drive_in(&args, opts.seconds, extra.netns.as_deref()))
}

/// Opens `url` (a player page) for `seconds`, following the time code of
/// its video.
pub fn page_play(url: &str, seconds: f64) -> PageReport {
    let args = [
        "--page".to_string(),
        url.to_string(),
        "--timecode".to_string(),
    ];
    parse(&drive(&args, seconds))
}

/// The driver's loopback self-test: `viewers` peer connections receive a
/// time-coded canvas from another one in the same page, as H.264.
pub fn self_test(seconds: f64, viewers: u32) -> PlayReport {
    let args = [
        "--self-test".to_string(),
        "--viewers".to_string(),
        viewers.to_string(),
    ];
    parse(&drive(&args, seconds))
}

/// What [`recorder_page`] does on framebus-recorder's page.
#[derive(Clone, Debug)]
pub struct RecPage {
    /// The page, `http://127.0.0.1:PORT/`.
    pub url: String,
    /// The stream to record (`cam/profile`), a row of the page.
    pub stream: String,
    /// Seconds typed into the row's duration field.
    pub duration: f64,
    /// Seconds typed into its pre-roll field.
    pub preroll: f64,
    /// Tick its snapshot box.
    pub snapshot: bool,
    /// `user:pass`, given when the page answers 401 (as a person answers
    /// the browser's Basic prompt).
    pub basic: Option<String>,
    /// A bound on the whole run (the driver stops waiting then).
    pub seconds: f64,
}

/// A recording as the page's list showed it.
#[derive(Clone, Debug, Deserialize)]
pub struct RecRow {
    /// Its id (`data-id`).
    pub id: String,
    /// Its state cell, every change seen (100 ms polls).
    pub states: Vec<String>,
    /// The last of them.
    pub state: Option<String>,
    /// The cells' text by column (`id`, `stream`, `state`, `start`,
    /// `duration`, `frames`, `size`, `preroll`, `note`).
    pub cells: std::collections::BTreeMap<String, String>,
    /// Classes of its actions (`stop`, `play`, `download`, `snapshot`,
    /// `delete`).
    pub actions: Vec<String>,
    /// The Download link.
    pub download: Option<RecDownload>,
}

/// The Download link of a recording.
#[derive(Clone, Debug, Deserialize)]
pub struct RecDownload {
    /// Its absolute `href`.
    pub href: String,
    /// Its `download` attribute (the file name).
    pub name: Option<String>,
}

/// What the page's `<video>` did after Play.
#[derive(Clone, Debug, Deserialize)]
pub struct RecVideo {
    /// Its source.
    pub src: String,
    /// `loadedmetadata` happened (`readyState` ≥ 1).
    pub loadedmetadata: bool,
    /// Play to metadata, ms.
    pub metadata_ms: Option<f64>,
    /// `duration` (None: unknown or infinite).
    pub duration_s: Option<f64>,
    /// `videoWidth`.
    pub width: Option<u32>,
    /// `videoHeight`.
    pub height: Option<u32>,
    /// `currentTime` at metadata.
    pub time_at_metadata_s: Option<f64>,
    /// `currentTime` at the end.
    pub current_time_s: Option<f64>,
    /// `currentTime` moved on after metadata.
    pub advanced: bool,
    /// `ended`.
    pub ended: bool,
    /// `paused` at the end.
    pub paused: Option<bool>,
    /// `MediaError`, if it failed.
    pub error: Option<RecVideoError>,
    /// How long it was watched, ms.
    pub waited_ms: u64,
}

/// A `<video>`'s `MediaError`.
#[derive(Clone, Debug, Deserialize)]
pub struct RecVideoError {
    /// `code` (4: not supported / format error).
    pub code: u16,
    /// `message`.
    pub message: Option<String>,
}

/// The report of [`recorder_page`].
#[derive(Clone, Debug, Deserialize)]
pub struct RecPageReport {
    /// Chromium's version.
    pub browser: Option<String>,
    /// Console messages of level error (`text (url)`).
    pub console_errors: Vec<String>,
    /// Uncaught exceptions in the page.
    pub page_errors: Vec<String>,
    /// Status of the page.
    pub http_status: Option<u16>,
    /// Its `<title>`.
    pub title: Option<String>,
    /// Its `<h1>`.
    pub heading: Option<String>,
    /// The stream's row: stream, size, live, pre-roll in memory, mode,
    /// recordings running.
    pub stream_row: Option<Vec<String>>,
    /// What the page's message line said when Record failed.
    pub record_error: Option<String>,
    /// The new recording in the list.
    pub recording: Option<RecRow>,
    /// Its playback, when it had a Play button.
    pub video: Option<RecVideo>,
    /// The message line at the end.
    pub message: Option<String>,
    /// Its classes (`msg err`, `msg ok`).
    pub message_class: Option<String>,
    /// The whole run, ms.
    pub elapsed_ms: u64,
}

/// Records `opts.stream` through framebus-recorder's page and plays the
/// recording there (`recpage.mjs`).
pub fn recorder_page(opts: &RecPage) -> RecPageReport {
    let mut args = vec![
        "--url".to_string(),
        opts.url.clone(),
        "--stream".to_string(),
        opts.stream.clone(),
        "--duration".to_string(),
        opts.duration.to_string(),
        "--preroll".to_string(),
        opts.preroll.to_string(),
        "--seconds".to_string(),
        opts.seconds.to_string(),
    ];
    if opts.snapshot {
        args.push("--snapshot".to_string());
    }
    if let Some(b) = &opts.basic {
        args.extend(["--basic".to_string(), b.clone()]);
    }
    let out = drive_script("recpage.mjs", &args, opts.seconds, None);
    parse_report("recpage.mjs", &out)
}

/// `viewers` peer connections (one page, one Janus session each) watch
/// mountpoint [`crate::janus::MOUNTPOINT`] of the Janus whose API is
/// `api_url` ([`crate::janus::Janus::api_url`]) with Janus's own janus.js
/// for `seconds` (`publishers/tests/browser/janus.mjs`), talking to it over
/// its WebSocket transport at `ws_url` ([`crate::janus::Janus::ws_url`]) (HTTP long polls would hold
/// Chromium's 6 connections per host: 5 viewers at most); viewer 0 reads
/// the time codes of its frames ([`PlayReport::timecode`]: all `refused`
/// for a picture without one). Janus's errors go to
/// [`Viewer::post_error`], what janus.js saw to [`Viewer::janus`].
pub fn janus_play(api_url: &str, ws_url: &str, seconds: f64, viewers: u32) -> PlayReport {
    let args = [
        "--url".to_string(),
        api_url.to_string(),
        "--ws".to_string(),
        ws_url.to_string(),
        "--mountpoint".to_string(),
        crate::janus::MOUNTPOINT.to_string(),
        "--viewers".to_string(),
        viewers.to_string(),
        "--timecode".to_string(),
        "--seconds".to_string(),
        seconds.to_string(),
    ];
    let out = drive_script("janus.mjs", &args, seconds, None);
    parse_report("janus.mjs", &out)
}

/// Runs the driver with `args` and `--seconds`; its stdout (one JSON line).
fn drive(args: &[String], seconds: f64) -> String {
    drive_in(args, seconds, None)
}

/// [`drive`], with Chromium in network namespace `netns`.
fn drive_in(args: &[String], seconds: f64, netns: Option<&str>) -> String {
    let mut args = args.to_vec();
    args.extend(["--seconds".to_string(), seconds.to_string()]);
    drive_script("whep.mjs", &args, seconds, netns)
}

/// Runs `node DRIVER ARGS` (a driver of [`driver_dir`] measuring for
/// `seconds`), with Chromium in network namespace `netns` if given; its
/// stdout (one JSON line). Panics when the driver fails (exit code not 0).
pub fn drive_script(script: &str, args: &[String], seconds: f64, netns: Option<&str>) -> String {
    let dir = driver_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "{}/node_modules is missing: run `make node-deps`",
        dir.display()
    );
    let chromium = std::env::var_os("CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{} not found: `apt-get install chromium` (`make deps`), or set $CHROMIUM",
        chromium.to_string_lossy()
    );
    // The browser profile and Chromium's shared-memory files go to $TMPDIR:
    // this one is removed on drop, whatever happened to the run.
    let tmp = TempDir::new("chromium");
    // In a namespace: a wrapper the driver launches as its browser (the
    // pipes playwright talks over, fds 3 and 4, go through `exec`).
    let chromium = match netns {
        None => chromium,
        Some(ns) => {
            use std::os::unix::fs::PermissionsExt;
            let script = tmp.path().join("chromium-in-netns");
            let body = format!(
                "#!/bin/sh\nexec ip netns exec '{ns}' '{}' \"$@\"\n",
                chromium.to_string_lossy()
            );
            std::fs::write(&script, body)
                .and_then(|()| {
                    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                })
                .unwrap_or_else(|e| panic!("write {}: {e}", script.display()));
            script.into_os_string()
        }
    };
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(script))
        .args(args)
        .env("TMPDIR", tmp.path())
        .env("CHROMIUM", &chromium);
    let limit = Duration::from_secs_f64(seconds) + SLACK;
    let out = run_to_end(&mut cmd, limit);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn parse<T: for<'de> Deserialize<'de>>(stdout: &str) -> T {
    parse_report("whep.mjs", stdout)
}

/// The last line of a driver's stdout, its report.
pub fn parse_report<T: for<'de> Deserialize<'de>>(script: &str, stdout: &str) -> T {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} report: {e}: {line}"))
}

/// The first frame's time code as the page read it.
#[derive(Clone, Debug, Deserialize)]
pub struct PageTimeCode {
    /// Capture time, µs since the Unix epoch (a decimal string: a JS
    /// `BigInt`).
    pub realtime_us: String,
    /// Frame counter.
    pub counter: u32,
}

/// `MediaError` of the `<video>`.
#[derive(Clone, Debug, Deserialize)]
pub struct MediaError {
    /// 1 aborted, 2 network, 3 decode, 4 source not supported.
    pub code: u32,
    /// Chromium's message.
    pub message: Option<String>,
}

/// The report of [`video_play`] (`publishers/tests/browser/video.mjs`).
#[derive(Clone, Debug, Deserialize)]
pub struct VideoReport {
    /// Chromium's version.
    pub browser: Option<String>,
    /// Console messages of level error (`text (url)`).
    pub console_errors: Vec<String>,
    /// Uncaught exceptions in the page.
    pub page_errors: Vec<String>,
    /// `src` set to `loadedmetadata`, ms (`None`: never).
    pub loadedmetadata_ms: Option<f64>,
    /// `duration` after `loadedmetadata`: seconds, or a string
    /// (`"Infinity"`, `"NaN"`).
    pub duration: Option<serde_json::Value>,
    /// `videoWidth`.
    pub video_width: Option<u32>,
    /// `videoHeight`.
    pub video_height: Option<u32>,
    /// The time code of the first frame (drawn once `loadeddata`).
    pub first_frame_timecode: Option<PageTimeCode>,
    /// `src` set to `playing`, ms.
    pub playing_ms: Option<f64>,
    /// `play()` rejected.
    pub play_error: Option<String>,
    /// `currentTime` after playing for `seconds`.
    pub current_time: Option<f64>,
    /// Frames presented while playing (`requestVideoFrameCallback`).
    pub frames_presented: u64,
    /// The seek to the middle ended with `seeked` (`None`: not tried).
    pub seeked: Option<bool>,
    /// Where it seeked to.
    pub seek_target: Option<f64>,
    /// `currentTime` after the seek.
    pub current_time_after_seek: Option<f64>,
    /// `seekable` ranges at the end.
    pub seekable: Vec<(f64, f64)>,
    /// `readyState` at the end.
    pub ready_state: u32,
    /// `networkState` at the end.
    pub network_state: u32,
    /// `error` at the end.
    pub error: Option<MediaError>,
    /// The element's events, `MS NAME` (first 200).
    pub events: Vec<String>,
    /// The whole run, ms.
    pub elapsed_ms: u64,
}

impl VideoReport {
    /// `duration` in seconds, when finite.
    pub fn duration_s(&self) -> Option<f64> {
        self.duration.as_ref().and_then(serde_json::Value::as_f64)
    }
}

/// A plain `<video>` element in Chromium plays the MP4 at `url` for
/// `seconds`, then seeks to the middle (`video.mjs`; the page is on the
/// file's own origin).
pub fn video_play(url: &str, seconds: f64) -> VideoReport {
    let input = serde_json::json!({ "url": url, "seconds": seconds });
    // The driver's bound: play time plus three 15 s load timeouts.
    let out = drive_script("video.mjs", &[input.to_string()], seconds + 45.0, None);
    parse_report("video.mjs", &out)
}

// A camera with a microphone for the WebRTC sound tests
// (`publishers/tests/webrtc_audio.rs`, `webrtc_av_sync.rs`): the real
// producer's test pattern with `--audio tone` and the Opus encoder of its
// PCM bus.

/// Watchdog on a camera's buses appearing.
const CAMERA_WATCHDOG: Duration = Duration::from_secs(30);

/// A process stopped with SIGTERM on drop (so it removes the buses it
/// created), then SIGKILLed by its guard if it did not exit; `buses` it
/// left behind are removed.
pub struct Stopped {
    /// The process.
    pub child: crate::ChildGuard,
    /// The buses it writes.
    pub buses: Vec<String>,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.child.alive() {
            self.child
                .signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
        }
        for b in &self.buses {
            if framebus::stat(b, None).is_ok_and(|s| !s.producer_alive) {
                let _ = framebus::remove(b, None, true);
            }
        }
    }
}

/// `bus` has a live producer that has published.
pub fn live(bus: &str) -> bool {
    framebus::stat(bus, None).is_ok_and(|s| s.producer_alive && s.published > 0)
}

/// `framebus-producer` on `bus`: the test pattern (with the time code,
/// docs/timecode.md) of `size` (`WxH`) at 30 fps and, when `tone`, the
/// audio test pattern on `{bus}.audio` (a 1 kHz beep of 100 ms at every
/// whole second of CLOCK_REALTIME). Waits (30 s watchdog) until every bus
/// is live.
pub fn producer(bus: &str, size: &str, tone: bool) -> Stopped {
    let mut cmd = Command::new(crate::bins::path("framebus-producer"));
    cmd.args(["--bus", bus, "--size", size, "--fps", "30"])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    let mut buses = vec![bus.to_string()];
    if tone {
        cmd.args(["--audio", "tone"]);
        buses.push(framebus::contract::audio::pcm_bus(bus));
    }
    let p = Stopped {
        child: crate::ChildGuard::spawn(&mut cmd),
        buses,
    };
    assert!(
        crate::eventually(CAMERA_WATCHDOG, || p.buses.iter().all(|b| live(b))),
        "framebus-producer did not publish on {:?}",
        p.buses
    );
    p
}

/// `framebus-encoder --opus` of camera `bus`'s microphone, writing
/// `{bus}.opus`; waits (30 s watchdog) until that bus is live.
pub fn opus_encoder(bus: &str) -> Stopped {
    let out = framebus::contract::audio::opus_bus(bus);
    let e = Stopped {
        child: crate::ChildGuard::spawn(
            Command::new(crate::bins::path("framebus-encoder"))
                .args(["--bus", &framebus::contract::audio::pcm_bus(bus), "--opus"])
                .env("RUST_LOG", "warn")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit()),
        ),
        buses: vec![out.clone()],
    };
    assert!(
        crate::eventually(CAMERA_WATCHDOG, || live(&out)),
        "the Opus bus {out} did not appear"
    );
    e
}

// Lip sync (`whep.mjs --av-sync`): see that directory's README.

/// One beep heard by [`whep_av_sync`]'s viewer, all in ms on the wall
/// clock (the page's `performance.timeOrigin + performance.now()`).
#[derive(Clone, Debug, Deserialize)]
pub struct Beep {
    /// The whole second (Unix time) the tone started it at: W_a.
    pub second: i64,
    /// Its onset on the AudioContext's clock, s (from the context's start).
    pub context_s: f64,
    /// P_a − W_a: its onset at the audio output minus the second.
    pub audio_ms: f64,
    /// P_v − W_v: median over the frames captured within 1 s of it of
    /// their `presentationTime` minus their time code.
    pub video_ms: Option<f64>,
    /// The same with `expectedDisplayTime`.
    pub video_display_ms: Option<f64>,
    /// `audio_ms − video_ms`: > 0 when the sound comes after its picture.
    pub offset_ms: f64,
    /// `audio_ms − video_display_ms`.
    pub offset_display_ms: Option<f64>,
    /// Frames behind `video_ms` (fewer than 10: all frames were used).
    pub frames: u64,
    /// `currentTime − getOutputTimestamp().contextTime`, ms: how far the
    /// graph renders ahead of the output (baseLatency + outputLatency).
    pub render_ahead_ms: f64,
}

/// The viewer's AudioContext.
#[derive(Clone, Debug, Deserialize)]
pub struct AvAudio {
    /// `state` at the end (`running`).
    pub state: String,
    /// `sampleRate` (the output device's).
    pub sample_rate: f64,
    /// `baseLatency`, ms.
    pub base_latency_ms: Option<f64>,
    /// `outputLatency`, ms.
    pub output_latency_ms: Option<f64>,
    /// Largest sample the worklet saw (the beep: 0.5).
    pub peak: Option<f64>,
}

/// RTCP sender reports the viewer had received, per kind
/// (`remote-outbound-rtp` `reportsSent`; 0: none).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct SenderReports {
    /// Of the audio stream.
    pub audio: u64,
    /// Of the video stream.
    pub video: u64,
}

/// What the receiver did to the audio, from `getStats()` at the end.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct AvReceiver {
    /// Mean jitter buffer delay of the audio, ms.
    pub jitter_buffer_ms: Option<f64>,
    /// Mean target of NetEQ's jitter buffer, ms.
    pub jitter_buffer_target_ms: Option<f64>,
    /// Audio NetEQ cut to catch up (`removedSamplesForAcceleration`), ms.
    pub accelerated_ms: Option<f64>,
    /// Audio NetEQ stretched (`insertedSamplesForDeceleration`), ms.
    pub decelerated_ms: Option<f64>,
    /// The audio device's mean playout delay (`media-playout`), ms.
    pub device_playout_ms: Option<f64>,
    /// Sender reports received.
    pub sender_reports: Option<SenderReports>,
    /// `getStats()` failed.
    pub error: Option<String>,
}

/// Viewer 0's lip-sync measurement (`--av-sync`).
#[derive(Clone, Debug, Deserialize)]
pub struct AvSync {
    /// Frames presented.
    pub frames: u64,
    /// Frames whose time code was read.
    pub decoded: u64,
    /// Frames without a readable one.
    pub refused: u64,
    /// P_v − W_v over all frames (median, `presentationTime`), ms.
    pub video_ms: Option<f64>,
    /// The same with `expectedDisplayTime`.
    pub video_display_ms: Option<f64>,
    /// `expectedDisplayTime − presentationTime`, ms.
    pub display_after_presented_ms: Option<Summary>,
    /// Beep onsets the worklet found.
    pub onsets: u64,
    /// The AudioContext (`None`: no audio track came).
    pub audio: Option<AvAudio>,
    /// The receiver's audio figures.
    pub receiver: Option<AvReceiver>,
    /// `kind:streamIds` of every track received: libwebrtc lip-syncs an
    /// audio and a video track only when they share a stream (`a=msid`).
    pub streams: Vec<String>,
    /// Setting up the AudioContext or worklet failed.
    pub error: Option<String>,
    /// Every beep, in order.
    pub beeps: Vec<Beep>,
    /// Their `offset_ms`.
    pub offsets_ms: Vec<f64>,
}

/// The report of [`whep_av_sync`].
#[derive(Clone, Debug, Deserialize)]
pub struct AvSyncReport {
    /// The usual report (one viewer, with audio).
    #[serde(flatten)]
    pub play: PlayReport,
    /// The measurement (`None`: the driver made none).
    pub av_sync: Option<AvSync>,
}

/// One viewer plays `url` (WHEP) with sound for `seconds` and measures
/// lip sync (`whep.mjs --av-sync`): the offset of each of the tone's beeps
/// against the pictures captured at the same time.
pub fn whep_av_sync(url: &str, seconds: f64) -> AvSyncReport {
    let args = [
        "--url".to_string(),
        url.to_string(),
        "--av-sync".to_string(),
    ];
    parse(&drive(&args, seconds))
}
