//! Every contract between framebus processes other than the bus itself,
//! defined once and used by both sides (the bus is `layout.rs` and
//! `protocol.rs`). `docs/architecture.md` lists them.
//!
//! | contract | between | here |
//! |---|---|---|
//! | environment variables | supervisor → publishers, everyone | [`env`] |
//! | exit codes | every binary → supervisor, scripts, systemd | [`exit`] |
//! | the `listening on URL` line | publishers → supervisor, tests | [`listening`] |
//! | health probes | supervisor → publishers | [`health`] |
//! | the supervisor's status file | `framebus-producer --config` → `framebus status` | [`status`] |
//! | `/api/v1/streams` of `framebus-mjpeg` | publisher → `framebus status` | [`streams`] |
//! | encoded bus names and streams, H.264 profiles, encoder names | supervisor → `framebus-encoder`, outputs, the recorder | [`encoder`] |

/// Environment variables.
pub mod env {
    /// Moves the shm directory (tests, containers).
    pub const SHM_DIR: &str = crate::name::SHM_DIR_ENV;
    /// `user:password` for `framebus-mjpeg` (never on the command line).
    pub const MJPEG_AUTH: &str = "FRAMEBUS_MJPEG_AUTH";
    /// Bearer token for `framebus-mjpeg`.
    pub const MJPEG_TOKEN: &str = "FRAMEBUS_MJPEG_TOKEN";
    /// `user:password` for `framebus-rtsp`.
    pub const RTSP_AUTH: &str = "FRAMEBUS_RTSP_AUTH";
    /// `user:password` for `framebus-recorder`.
    pub const RECORDER_AUTH: &str = "FRAMEBUS_RECORDER_AUTH";
    /// A copy of hls.js that `framebus-mjpeg` serves to its player page
    /// (`--hls-js`; `make run` points it at the npm copy).
    pub const HLS_JS: &str = "FRAMEBUS_HLS_JS";
    /// Every credential variable: the supervisor passes each only to the
    /// child it is meant for.
    pub const CREDENTIALS: [&str; 4] = [MJPEG_AUTH, MJPEG_TOKEN, RTSP_AUTH, RECORDER_AUTH];
}

/// Exit codes of every framebus binary.
pub mod exit {
    /// Clean stop (SIGINT/SIGTERM included).
    pub const OK: u8 = 0;
    /// A runtime error (one line on stderr says which).
    pub const FAILURE: u8 = 1;
    /// A dependency is missing (FFmpeg lacks a protocol or codec).
    pub const MISSING_DEPENDENCY: u8 = 3;
    /// Bad arguments or configuration (including a bad credential file).
    pub const USAGE: u8 = 4;
    /// The bus or device is owned by another producer.
    pub const IN_USE: u8 = 5;
    /// No device found.
    pub const NO_DEVICE: u8 = 6;
}

/// The first stdout line of every server binary: `listening on URL`, with
/// the bound address (so port 0 works). A second line may follow for a
/// second listener (`framebus-rtsp --http-listen`).
pub mod listening {
    /// The line's prefix.
    pub const PREFIX: &str = "listening on ";

    /// The line for `url` (without the newline).
    pub fn line(url: &str) -> String {
        format!("{PREFIX}{url}")
    }

    /// The URL of a `listening on` line, if `line` is one.
    pub fn parse(line: &str) -> Option<&str> {
        line.trim()
            .strip_prefix(PREFIX)
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    /// `host:port` of a listening URL (`http://127.0.0.1:8080/` →
    /// `127.0.0.1:8080`).
    pub fn address(url: &str) -> Option<&str> {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let addr = rest.split('/').next()?;
        (!addr.is_empty()).then_some(addr)
    }
}

/// What the supervisor, `framebus-encoder` and the outputs reading an
/// encoded bus agree on: the encoded bus's name, and the names the
/// encoder's `--profile …,h264=` and `--encoder` accept.
pub mod encoder {
    /// The encoded bus `framebus-encoder` writes for raw bus `bus` and
    /// profile `profile`: `{bus}.h264.{profile}` (what `framebus-rtsp`
    /// serves as `rtsp://host/{bus}/{profile}`).
    pub fn bus_name(bus: &str, profile: &str) -> String {
        format!("{bus}.{H264}.{profile}")
    }

    /// The codec part of an encoded bus's name.
    pub const H264: &str = "h264";

    /// `(bus, profile)` of an encoded bus name made by [`bus_name`].
    pub fn split(name: &str) -> Option<(&str, &str)> {
        let (bus, profile) = name.rsplit_once('.')?;
        let bus = bus.strip_suffix(H264)?.strip_suffix('.')?;
        (!bus.is_empty() && !profile.is_empty()).then_some((bus, profile))
    }

    /// `(bus, profile)` of a stream as the recorder's config, flags and
    /// API name one: `cam0/high`, or the encoded bus name itself
    /// (`cam0.h264.high`).
    pub fn stream(s: &str) -> Option<(&str, &str)> {
        match s.split_once('/') {
            Some((bus, profile)) => {
                (!bus.is_empty() && !profile.is_empty() && !profile.contains('/'))
                    .then_some((bus, profile))
            }
            None => split(s),
        }
    }

    /// In an encoded bus's `source` description, what follows the encoder's
    /// name when `--encoder auto` fell back (no hardware encoder opened):
    /// `h264 high of cam0 by libx264 (auto: nvenc, vaapi, v4l2m2m did not
    /// open)`. Metrics count a bus whose source contains it.
    pub const AUTO_FALLBACK: &str = " (auto: ";

    /// True when `source` (an encoded bus's) says `auto` fell back.
    pub fn fell_back(source: &str) -> bool {
        source.contains(AUTO_FALLBACK)
    }

    /// Bits per second of an encoder that is not told.
    pub const DEFAULT_BITRATE: u64 = 4_000_000;

    /// Frames between keyframes of an encoder that is not told: two
    /// seconds' worth at `fps`.
    pub fn default_gop(fps: u32) -> u32 {
        fps.saturating_mul(2).max(1)
    }

    /// Bytes per slot of an encoded bus: room for the largest access unit
    /// the rate control lets through (a one-second VBV: up to `bitrate / 8`
    /// bytes in one frame, a noisy keyframe gets close) but no more than a
    /// raw frame (x264's worst case, I_PCM, is about that), and at least
    /// half a raw frame or 256 KiB; at most 8 MiB. An access unit that
    /// still does not fit is counted and answered with an IDR, never
    /// truncated.
    pub fn slot_capacity(width: u32, height: u32, bitrate: u64) -> usize {
        let pixels = width as usize * height as usize;
        let raw = pixels * 3 / 2;
        let vbv = usize::try_from(bitrate / 8).unwrap_or(usize::MAX).min(raw);
        vbv.max(pixels / 2).clamp(256 * 1024, 8 << 20)
    }

    /// Slots of an encoded bus: a GOP and four more (a joiner starts at the
    /// last keyframe), within the ring's bounds.
    pub fn slots(gop: u32) -> u32 {
        gop.saturating_add(4).clamp(8, crate::layout::MAX_SLOTS)
    }

    /// H.264 profiles a profile's `h264=` may name.
    pub const H264_PROFILES: [&str; 3] = ["baseline", "main", "high"];

    /// Values of `framebus-encoder --encoder`.
    pub const ENCODERS: [&str; 5] = ["auto", "libx264", "h264-vaapi", "h264v4l2m2m", "h264-nvenc"];

    #[cfg(test)]
    mod tests {
        #[test]
        fn names_round_trip() {
            assert_eq!(super::bus_name("cam0", "high"), "cam0.h264.high");
            assert_eq!(super::split("cam0.h264.high"), Some(("cam0", "high")));
            assert_eq!(super::split("a.b.h264.low"), Some(("a.b", "low")));
            assert_eq!(super::split("cam0.high"), None);
            assert_eq!(super::split(".h264.x"), None);
            assert_eq!(super::stream("cam0/high"), Some(("cam0", "high")));
            assert_eq!(super::stream("cam0.h264.high"), Some(("cam0", "high")));
            for bad in ["cam0", "/high", "cam0/", "cam0/a/b", "cam0.high"] {
                assert_eq!(super::stream(bad), None, "{bad}");
            }
        }

        #[test]
        fn slots_hold_a_vbv_worth_up_to_a_raw_frame() {
            use super::slot_capacity;
            // 1080p at 4 Mbit/s: half a raw frame (1 MB) is more than 500 kB.
            assert_eq!(slot_capacity(1920, 1080, 4_000_000), 1920 * 1080 / 2);
            // 640x360 at 20 Mbit/s: a raw frame (345,600 B) bounds 2.5 MB.
            assert_eq!(slot_capacity(640, 360, 20_000_000), 640 * 360 * 3 / 2);
            // Small and slow: the 256 KiB floor.
            assert_eq!(slot_capacity(320, 180, 300_000), 256 * 1024);
            // 4K at 100 Mbit/s: capped at 8 MiB (raw 12 MB, VBV 12.5 MB).
            assert_eq!(slot_capacity(3840, 2160, 100_000_000), 8 << 20);
            assert_eq!((super::slots(60), super::slots(1)), (64, 8));
        }
    }
}

/// What the producer, `framebus-encoder` and the outputs agree on about a
/// camera's sound (docs/audio.md): the names of its audio buses.
pub mod audio {
    /// The PCM bus of camera bus `bus`: `{bus}.audio`.
    pub fn pcm_bus(bus: &str) -> String {
        format!("{bus}.{PCM}")
    }

    /// The Opus bus of camera bus `bus`: `{bus}.opus` (one encode that
    /// RTSP, WebRTC, HLS and the recorder all read).
    pub fn opus_bus(bus: &str) -> String {
        format!("{bus}.{OPUS}")
    }

    /// The suffix of a PCM bus.
    pub const PCM: &str = "audio";
    /// The suffix of an Opus bus.
    pub const OPUS: &str = "opus";

    /// The camera bus of a PCM or Opus bus name.
    pub fn camera(name: &str) -> Option<&str> {
        let (bus, suffix) = name.rsplit_once('.')?;
        (matches!(suffix, PCM | OPUS) && !bus.is_empty()).then_some(bus)
    }

    /// Slots of a PCM bus and of an Opus bus: one second of 20 ms
    /// chunks, so a slow reader catches up in order.
    pub const SLOTS: u32 = 50;

    /// Bytes per slot of an Opus bus: the largest Opus packet (RFC 6716:
    /// 1275 bytes per frame; a 20 ms packet is one frame), with room to
    /// spare.
    pub const OPUS_MAX_PACKET: usize = 4000;

    /// The Opus sample rates (RFC 6716): an audio bus at another rate
    /// cannot be encoded without resampling.
    pub const OPUS_RATES: [u32; 5] = [8000, 12000, 16000, 24000, 48000];

    #[cfg(test)]
    mod tests {
        #[test]
        fn names_round_trip() {
            assert_eq!(super::pcm_bus("cam0"), "cam0.audio");
            assert_eq!(super::opus_bus("cam0"), "cam0.opus");
            assert_eq!(super::camera("cam0.opus"), Some("cam0"));
            assert_eq!(super::camera("a.b.audio"), Some("a.b"));
            assert_eq!(super::camera("cam0.h264.high"), None);
            assert_eq!(super::camera(".opus"), None);
        }
    }
}

/// How the supervisor asks a publisher whether it is alive.
pub mod health {
    /// HTTP publishers answer `GET` on this path (200 healthy, 503 when a
    /// bus has no producer: the server itself still answers).
    pub const HTTP_PATH: &str = "/healthz";
    /// RTSP publishers answer this method on `*`.
    pub const RTSP_METHOD: &str = "OPTIONS";
}

/// The supervisor's status file: `framebus-status.<pid>.json` in the shm
/// directory, mode 0644, rewritten at least once a second and on every
/// state change by temporary file + rename (a reader sees the old or the
/// new document, never a partial one), removed on a clean stop. Written by
/// `framebus-producer --config`, read by `framebus status`; the format is
/// in `docs/service.md`.
pub mod status {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Serialize};

    /// File name prefix in the shm directory.
    pub const PREFIX: &str = "framebus-status.";
    /// The format version written.
    pub const VERSION: u32 = 1;

    /// What the supervisor is doing.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum SupervisorState {
        /// Supervising.
        Running,
        /// Stopping its children.
        Stopping,
    }

    /// A capture thread's state.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum CameraState {
        /// Capturing (see the bus for the source state).
        Running,
        /// Gave up (see `error`).
        Failed,
    }

    /// A supervised child's state (publishers and encoders).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum PublisherState {
        /// Started, not ready yet: a publisher without its `listening on`
        /// line, an encoder whose encoded bus is not live yet.
        Starting,
        /// Ready: a publisher listening (and answering its health probe),
        /// an encoder whose encoded bus is live.
        Running,
        /// Waiting to restart.
        Backoff,
        /// Given up after `max_restarts`.
        Failed,
        /// Stopped with the supervisor.
        Stopped,
    }

    impl PublisherState {
        /// The word used in the file and in `framebus status`.
        pub fn as_str(self) -> &'static str {
            match self {
                PublisherState::Starting => "starting",
                PublisherState::Running => "running",
                PublisherState::Backoff => "backoff",
                PublisherState::Failed => "failed",
                PublisherState::Stopped => "stopped",
            }
        }
    }

    /// The whole document.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Status {
        /// Format version ([`VERSION`]).
        pub version: u32,
        /// The supervising `framebus-producer`.
        pub producer_pid: u32,
        /// The config file it runs.
        pub config: PathBuf,
        /// Unix time of this write, milliseconds.
        pub updated_unix_ms: u64,
        /// What the supervisor is doing.
        pub state: SupervisorState,
        /// One per `[[camera]]`.
        pub cameras: Vec<CameraStatus>,
        /// One per supervised child: each configured publisher, then each
        /// encoder (`kind` `"encoder"`, one per camera and `[[encoder]]`).
        pub publishers: Vec<PublisherStatus>,
    }

    /// One capture thread.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct CameraStatus {
        /// Bus name.
        pub bus: String,
        /// Source.
        pub source: String,
        /// Its state.
        pub state: CameraState,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error: Option<String>,
    }

    /// One supervised child process: a publisher or an encoder.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct PublisherStatus {
        /// `mjpeg`, `rtsp`, `recorder` or `encoder`.
        pub kind: String,
        /// The bus an encoder writes (`cam0.h264.high`); absent for
        /// publishers (and in files written before encoders were
        /// supervised).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub bus: Option<String>,
        /// Program run.
        pub command: PathBuf,
        /// Process id while a process exists.
        pub pid: Option<u32>,
        /// Its state.
        pub state: PublisherState,
        /// Restarts so far.
        pub restarts: u32,
        /// The configured limit.
        pub max_restarts: u32,
        /// Why it was last restarted (or given up on).
        pub last_reason: Option<String>,
        /// Seconds until the next restart, in `backoff`.
        pub restart_in_s: Option<f64>,
        /// Seconds the current process has run.
        pub uptime_s: Option<f64>,
        /// The bound address from its `listening on` line (`127.0.0.1:8080`).
        pub address: Option<String>,
        /// Its URL (`http://127.0.0.1:8080/`, `rtsp://127.0.0.1:8554/`).
        pub url: Option<String>,
        /// Seconds since its last successful health probe.
        pub health_age_s: Option<f64>,
        /// Whether the endpoints need credentials.
        pub auth: bool,
    }

    impl PublisherStatus {
        /// How `framebus status` and the logs name it: the kind, and the
        /// encoded bus of an encoder (`encoder cam0.h264.high`).
        pub fn label(&self) -> String {
            match &self.bus {
                Some(b) => format!("{} {b}", self.kind),
                None => self.kind.clone(),
            }
        }
    }

    /// Why a status file could not be read.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum StatusError {
        /// I/O.
        #[error("cannot read {path}: {source}")]
        Io {
            /// The file.
            path: PathBuf,
            /// The OS error.
            source: std::io::Error,
        },
        /// Not a status document of a version we read.
        #[error("{path} is not a framebus status file: {why}")]
        Format {
            /// The file.
            path: PathBuf,
            /// What is wrong.
            why: String,
        },
    }

    /// The status file of the supervisor with `pid` in `dir`.
    pub fn path(dir: &Path, pid: u32) -> PathBuf {
        dir.join(format!("{PREFIX}{pid}.json"))
    }

    /// Whether `name` is a status file's name.
    pub fn is_status_file(name: &str) -> bool {
        name.starts_with(PREFIX) && name.ends_with(".json")
    }

    /// Write `status` to `path` atomically (temporary file + rename).
    pub fn write(path: &Path, status: &Status) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        drop(f);
        std::fs::rename(&tmp, path)
    }

    /// Read and check a status file.
    pub fn read(path: &Path) -> Result<Status, StatusError> {
        let bytes = std::fs::read(path).map_err(|source| StatusError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let status: Status = serde_json::from_slice(&bytes).map_err(|e| StatusError::Format {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        if status.version != VERSION {
            return Err(StatusError::Format {
                path: path.to_path_buf(),
                why: format!("version {} (this framebus reads {VERSION})", status.version),
            });
        }
        Ok(status)
    }

    /// Every status file in `dir` (sorted by name), read: what
    /// `framebus status` and the browser console show. A file that cannot
    /// be read is returned with its error.
    pub fn read_all(dir: &Path) -> Vec<(PathBuf, Result<Status, StatusError>)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_status_file)
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|f| {
                let st = read(&f);
                (f, st)
            })
            .collect()
    }

    /// The status file of the calling process's parent, when the parent is
    /// a live supervisor that wrote it: what a publisher run by
    /// `framebus-producer --config` reads of its own service. Anyone may
    /// write files into a shared `/dev/shm`, so the file must be the one
    /// named after the parent's pid, owned by this user (the supervisor
    /// runs as the same user as its children), and say that pid.
    pub fn of_parent(dir: &Path) -> Option<Status> {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: getppid and geteuid have no preconditions and cannot fail.
        let (parent, me) = unsafe { (libc::getppid() as u32, libc::geteuid()) };
        let file = path(dir, parent);
        let meta = std::fs::symlink_metadata(&file).ok()?;
        if !meta.is_file() || meta.uid() != me {
            return None;
        }
        let st = read(&file).ok()?;
        (st.producer_pid == parent && alive(&st)).then_some(st)
    }

    /// Whether the supervisor that wrote `status` still exists (a file
    /// left by a killed producer is stale).
    pub fn alive(status: &Status) -> bool {
        let pid = status.producer_pid;
        // /proc/<pid> exists while the process (or its zombie) does.
        pid != 0 && Path::new(&format!("/proc/{pid}")).exists()
    }

    /// What is wrong in a live supervisor's `status`, one sentence each:
    /// failed cameras, children that are not running.
    pub fn problems(status: &Status) -> Vec<String> {
        let mut out = Vec::new();
        for c in &status.cameras {
            if c.state != CameraState::Running {
                out.push(format!(
                    "camera {}: {}",
                    c.bus,
                    c.error.as_deref().unwrap_or("failed")
                ));
            }
        }
        for p in &status.publishers {
            if p.state != PublisherState::Running {
                let reason = p
                    .last_reason
                    .as_deref()
                    .map_or_else(String::new, |r| format!(" ({r})"));
                let what = if p.bus.is_some() { "" } else { "publisher " };
                out.push(format!(
                    "{what}{} is {}{reason}",
                    p.label(),
                    p.state.as_str()
                ));
            }
        }
        out
    }
}

/// `GET /api/v1/streams` of `framebus-mjpeg`: `{"streams": [StreamStatus]}`.
pub mod streams {
    use serde::{Deserialize, Serialize};

    /// The path.
    pub const PATH: &str = "/api/v1/streams";

    /// Whether a stream's encoder runs.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum StreamState {
        /// No encoder (no viewer).
        Idle,
        /// Encoding.
        Running,
    }

    /// The document.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Streams {
        /// Every (bus, profile).
        pub streams: Vec<StreamStatus>,
        /// Live WebRTC sessions (absent from servers without WebRTC).
        #[serde(default)]
        pub webrtc: Vec<WebRtcSession>,
        /// Running HLS muxers (absent from servers without HLS).
        #[serde(default)]
        pub hls: Vec<HlsStream>,
    }

    /// One running HLS muxer (a camera's profile being segmented).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct HlsStream {
        /// Camera bus.
        pub bus: String,
        /// Profile (the encoded bus `{bus}.h264.{profile}`).
        pub profile: String,
        /// The muxer's epoch: the first path element of its media URIs.
        pub epoch: String,
        /// Viewer sessions on this profile (a cache in front counts as
        /// one).
        pub viewers: usize,
        /// Media sequence number of the newest part's segment.
        pub msn: Option<u64>,
        /// Parts written since the muxer started.
        pub parts: u64,
        /// Segments completed.
        pub segments: u64,
        /// Bytes of media written.
        pub bytes: u64,
    }

    /// One WebRTC (WHEP) viewer.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct WebRtcSession {
        /// Session id (the last segment of its WHEP resource).
        pub id: String,
        /// Camera bus.
        pub bus: String,
        /// The profile asked for.
        pub requested: String,
        /// The profile playing now (lower when the viewer's bandwidth is).
        pub profile: String,
        /// ICE and DTLS done.
        pub connected: bool,
        /// Moves between profiles by bandwidth.
        pub adaptive: bool,
        /// Seconds since the offer.
        pub uptime_s: f64,
        /// Round-trip time, ms (0: not measured yet).
        pub rtt_ms: f64,
        /// Bit rate sent over the last second, bit/s.
        pub bitrate_bps: u64,
        /// Bandwidth estimate, bit/s (0: none).
        pub estimate_bps: u64,
        /// NACKs, PLIs and FIRs received.
        pub nacks: u64,
        /// PLIs received.
        pub plis: u64,
        /// FIRs received.
        pub firs: u64,
        /// Times the viewer skipped to a keyframe (too slow).
        pub skips: u64,
        /// Profile switches.
        pub switches: u64,
    }

    /// One (bus, profile) stream.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct StreamStatus {
        /// Bus name.
        pub bus: String,
        /// Profile name.
        pub profile: String,
        /// Whether its encoder runs.
        pub state: StreamState,
        /// Bus condition seen by the encoder: idle, live, waiting for bus,
        /// producer gone.
        pub bus_state: String,
        /// Output width (0 when unknown: native profile of a missing bus).
        pub width: u32,
        /// Output height.
        pub height: u32,
        /// Target fps (bus fps for native).
        pub fps: f64,
        /// JPEG quality.
        pub quality: u8,
        /// Connected viewers.
        pub viewers: usize,
        /// Viewer limit.
        pub max_viewers: usize,
        /// Bus frames per second reaching the encoder.
        pub input_fps: f64,
        /// Frames per second encoded.
        pub output_fps: f64,
        /// Median encode time (scale + JPEG), ms.
        pub encode_ms_p50: f64,
        /// Frames viewers skipped because they were slow.
        pub frames_dropped_slow: u64,
        /// Frames encoded since the process started.
        pub frames_out: u64,
        /// Seconds since the encoder started (running only).
        pub uptime_s: Option<f64>,
        /// Started explicitly (kept running without viewers until stopped).
        pub pinned: bool,
        /// Stream URL path.
        pub url: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_round_trips() {
        let l = listening::line("http://127.0.0.1:8080/");
        assert_eq!(listening::parse(&l), Some("http://127.0.0.1:8080/"));
        assert_eq!(
            listening::parse("  listening on rtsp://[::1]:8554/\n"),
            Some("rtsp://[::1]:8554/")
        );
        assert_eq!(listening::parse("listening on "), None);
        assert_eq!(listening::parse("hello"), None);
        assert_eq!(listening::address("rtsp://[::1]:8554/"), Some("[::1]:8554"));
        assert_eq!(
            listening::address("http://127.0.0.1:8080/"),
            Some("127.0.0.1:8080")
        );
    }

    /// A status file written before encoders were supervised (no `bus`)
    /// still reads; an encoder's `bus` round-trips.
    #[test]
    fn status_without_bus_still_reads() {
        let old = r#"{"version":1,"producer_pid":1,"config":"/c.toml","updated_unix_ms":0,
            "state":"running","cameras":[],"publishers":[{"kind":"mjpeg","command":"/m",
            "pid":null,"state":"backoff","restarts":1,"max_restarts":50,"last_reason":null,
            "restart_in_s":1.0,"uptime_s":null,"address":null,"url":null,
            "health_age_s":null,"auth":false}]}"#;
        let st: status::Status = serde_json::from_str(old).unwrap();
        assert_eq!(st.publishers[0].bus, None);
        assert_eq!(st.publishers[0].label(), "mjpeg");
        let mut enc = st.publishers[0].clone();
        enc.kind = "encoder".into();
        enc.bus = Some(encoder::bus_name("cam0", "high"));
        let json = serde_json::to_string(&enc).unwrap();
        assert!(json.contains(r#""bus":"cam0.h264.high""#), "{json}");
        let back: status::PublisherStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(back.label(), "encoder cam0.h264.high");
    }
}
