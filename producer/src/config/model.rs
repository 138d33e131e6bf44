//! The tables of `framebus.toml` as types (each rejects unknown keys) and
//! their defaults.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use framebus::PixelFormat;
use serde::Deserialize;
use toml::Spanned;

use super::values::{
    Bitrate, ByteSize, Credentials, DurationCfg, EncoderName, EvenSize, Format, FpsCfg,
    H264Profile, Positive, ProfileName, Quality, Secs, Size, Source,
};
use crate::cli::{self, LogFormat};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `text` or `json` logs on stderr (the children's logs are passed
    /// through as they are).
    #[serde(default)]
    pub log_format: Option<LogFormatCfg>,
    /// `[[camera]]`: one capture thread (and bus) each.
    #[serde(default, rename = "camera")]
    pub cameras: Vec<Camera>,
    /// `[[encoder]]`: H.264 encoders, one `framebus-encoder` child per
    /// (camera, encoder), each writing the encoded bus `{bus}.h264.{name}`.
    #[serde(default, rename = "encoder")]
    pub encoders: Vec<EncoderCfg>,
    /// `[publishers.mjpeg]`, `[publishers.rtsp]`, `[publishers.recorder]`.
    #[serde(default)]
    pub publishers: Publishers,
    /// `[supervision]`.
    #[serde(default)]
    pub supervision: Supervision,
}

/// `log_format`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatCfg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatCfg> for LogFormat {
    fn from(f: LogFormatCfg) -> LogFormat {
        match f {
            LogFormatCfg::Text => LogFormat::Text,
            LogFormatCfg::Json => LogFormat::Json,
        }
    }
}

/// `[[camera]]`: the same settings as the producer's flags.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    /// Bus name.
    pub bus: Spanned<String>,
    /// `testsrc`, `v4l2:/dev/videoN`, `v4l2:auto`, `ffmpeg:<url-or-file>`.
    #[serde(default = "default_source")]
    pub source: Source,
    /// `"WxH"`.
    #[serde(default)]
    pub size: Option<Size>,
    /// `60` or `"30000/1001"`.
    #[serde(default)]
    pub fps: Option<FpsCfg>,
    /// Bus pixel format (raw formats only).
    #[serde(default = "default_format")]
    pub format: Format,
    /// Ring slots.
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// Group allowed to read the bus (segment mode 0660).
    #[serde(default)]
    pub group: Option<String>,
    /// Also publish an MJPEG camera's JPEGs on `<bus>.mjpeg`.
    #[serde(default)]
    pub mjpeg_bus: bool,
    /// A microphone on `<bus>.audio`: `alsa:default`, `alsa:hw:1,0`, or
    /// `tone` (docs/audio.md).
    #[serde(default)]
    pub audio: Option<String>,
    /// Audio samples per second.
    #[serde(default = "default_audio_rate")]
    pub audio_rate: u32,
    /// Audio channels.
    #[serde(default = "default_audio_channels")]
    pub audio_channels: u32,
    /// Wait for a missing microphone instead of exit 6.
    #[serde(default)]
    pub audio_wait: bool,
    /// Reopen the source after this long without a frame, seconds.
    #[serde(default = "default_watchdog")]
    pub watchdog: Secs,
    /// First reconnection delay of the source, seconds.
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial: Secs,
    /// Longest reconnection delay of the source, seconds.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: Secs,
}

/// `[publishers]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publishers {
    /// `framebus-mjpeg`.
    #[serde(default)]
    pub mjpeg: Option<Publisher>,
    /// `framebus-rtsp`.
    #[serde(default)]
    pub rtsp: Option<Publisher>,
    /// `framebus-recorder` (its own table: it serves no viewers and has
    /// no profiles, but records encoded buses).
    #[serde(default)]
    pub recorder: Option<Spanned<RecorderCfg>>,
}

/// `[publishers.mjpeg]` or `[publishers.rtsp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publisher {
    /// Run it at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Address to listen on; port 0 takes a free port (the real address is
    /// read from the child's `listening on` line into the status file).
    pub listen: Spanned<SocketAddr>,
    /// Seconds an encoder keeps running after its last viewer (MJPEG; for
    /// RTSP a config error: its encoders are `[[encoder]]`, each with its
    /// own `grace`).
    #[serde(default)]
    pub grace: Option<Spanned<Secs>>,
    /// Viewers per stream.
    #[serde(default = "default_max_viewers")]
    pub max_viewers: u32,
    /// `"user:password"` required of clients.
    #[serde(default)]
    pub auth: Option<Credentials>,
    /// Run this program instead of the publisher binary next to
    /// `framebus-producer` (tests, custom publishers). It gets the same
    /// arguments.
    #[serde(default)]
    pub command: Option<PathBuf>,
    /// Extra arguments appended to the generated ones.
    #[serde(default)]
    pub args: Vec<String>,
    /// Probe the child's health endpoint (HTTP `/healthz` for mjpeg, RTSP
    /// `OPTIONS` for rtsp) and restart it when it stops answering.
    #[serde(default = "yes")]
    pub health_check: bool,
    /// `[[publishers.mjpeg.profile]]`: added to (or replacing by name) the
    /// built-in `medium`, `low` and `native`. (`[[publishers.rtsp.profile]]`
    /// is a config error: RTSP profiles moved to `[[encoder]]`.)
    #[serde(default, rename = "profile")]
    pub profiles: Vec<ProfileCfg>,
    /// `[publishers.mjpeg.webrtc]`: WebRTC (WHEP) on the MJPEG server's
    /// port (on by default; a config error under `[publishers.rtsp]`).
    #[serde(default)]
    pub webrtc: Option<Spanned<WebRtcCfg>>,
    /// `[publishers.mjpeg.hls]`: HLS and LL-HLS on the MJPEG server's port
    /// (on by default; a config error under `[publishers.rtsp]`).
    #[serde(default)]
    pub hls: Option<Spanned<HlsCfg>>,
}

/// `[publishers.mjpeg.hls]`: the `--hls-*` flags of `framebus-mjpeg`
/// (docs/hls.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsCfg {
    /// Serve HLS at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// LL-HLS part target, ms.
    #[serde(default)]
    pub part_ms: Option<u32>,
    /// Complete segments listed in a media playlist.
    #[serde(default)]
    pub segments: Option<u32>,
    /// HLS viewers per camera (default: the publisher's `max_viewers`).
    #[serde(default)]
    pub max_viewers: Option<u32>,
    /// Seconds without requests after which a muxer stops.
    #[serde(default)]
    pub idle: Option<Spanned<Secs>>,
}

/// `[publishers.mjpeg.webrtc]`: the `--webrtc-*` flags of
/// `framebus-mjpeg` (docs/webrtc.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcCfg {
    /// Serve WebRTC at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// UDP address of the media port (default: the HTTP listen IP, port
    /// 8189).
    #[serde(default)]
    pub udp: Option<SocketAddr>,
    /// More addresses browsers reach the media port at (1:1 NAT).
    #[serde(default)]
    pub candidates: Vec<String>,
    /// STUN/TURN servers handed to players.
    #[serde(default)]
    pub ice_servers: Vec<String>,
    /// User name for the TURN servers.
    #[serde(default)]
    pub ice_username: Option<String>,
    /// Credential for the TURN servers (players get it: it is not a
    /// secret from viewers).
    #[serde(default)]
    pub ice_credential: Option<String>,
    /// WebRTC viewers per stream (default: the publisher's `max_viewers`).
    #[serde(default)]
    pub max_viewers: Option<u32>,
    /// Move viewers between profiles by their bandwidth.
    #[serde(default = "yes")]
    pub adapt: bool,
}

/// `[publishers.recorder]`: the flags of `framebus-recorder`, which
/// records the encoded buses (`[[encoder]]`) to fragmented MP4 files and
/// serves them over HTTP.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecorderCfg {
    /// Run it at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// HTTP address of its API and page (default `127.0.0.1:8090`; port 0
    /// takes a free port, as for the other publishers).
    #[serde(default)]
    pub listen: Option<Spanned<SocketAddr>>,
    /// Where recordings go (default: the recorder's own,
    /// `$STATE_DIRECTORY/recordings` under systemd).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Streams (`"cam0/high"`) whose last `preroll_max` is kept in memory
    /// (which keeps their encoders running), so a recording can start in
    /// the past.
    #[serde(default)]
    pub buffer: Vec<Spanned<String>>,
    /// Streams recorded all the time, in `segment`-long recordings.
    #[serde(default)]
    pub continuous: Vec<Spanned<String>>,
    /// The longest pre-roll a recording may ask for (at most 10 minutes).
    #[serde(default)]
    pub preroll_max: Option<Spanned<DurationCfg>>,
    /// Length of the fMP4 fragments: each is synced to disk as a whole, so
    /// a crash loses at most about this much.
    #[serde(default = "default_fragment")]
    pub fragment: DurationCfg,
    /// Length of one continuous recording.
    #[serde(default = "default_segment")]
    pub segment: DurationCfg,
    /// The longest a recording without a duration runs.
    #[serde(default = "default_max_duration")]
    pub max_duration: DurationCfg,
    /// Remove recordings older than this (default: keep them).
    #[serde(default)]
    pub retain_age: Option<DurationCfg>,
    /// Remove the oldest recordings while all take more than this
    /// (default: no limit).
    #[serde(default)]
    pub retain_bytes: Option<ByteSize>,
    /// Recordings running at once.
    #[serde(default = "default_max_recordings")]
    pub max_recordings: Positive,
    /// `"user:password"` required of clients.
    #[serde(default)]
    pub auth: Option<Credentials>,
    /// Run this program instead of `framebus-recorder` next to
    /// `framebus-producer`, with the same arguments.
    #[serde(default)]
    pub command: Option<PathBuf>,
    /// Extra arguments appended to the generated ones.
    #[serde(default)]
    pub args: Vec<String>,
    /// Probe its HTTP `/healthz` and restart it when it stops answering.
    #[serde(default = "yes")]
    pub health_check: bool,
}

impl RecorderCfg {
    /// The default `listen`.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8090));
    /// The longest `preroll_max` accepted: a pre-roll is held in memory
    /// for every buffered stream.
    pub const PREROLL_LIMIT: Duration = Duration::from_secs(600);

    /// `listen`, or its default.
    pub fn listen(&self) -> SocketAddr {
        self.listen
            .as_ref()
            .map_or(Self::DEFAULT_LISTEN, |l| *l.get_ref())
    }

    /// `preroll_max`, or its default (30 s).
    pub fn preroll_max(&self) -> DurationCfg {
        self.preroll_max
            .as_ref()
            .map_or(DurationCfg(Duration::from_secs(30)), |p| *p.get_ref())
    }
}

impl Publisher {
    /// `grace`, or its default.
    pub fn grace(&self) -> Duration {
        self.grace
            .as_ref()
            .map_or(default_grace().0, |g| g.get_ref().0)
    }
}

/// One output profile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileCfg {
    /// Name in the URL (`/{bus}/{name}.mjpg`).
    pub name: Spanned<ProfileName>,
    /// Output size (default: the bus size).
    #[serde(default)]
    pub size: Option<EvenSize>,
    /// Output rate (default: the bus rate).
    #[serde(default)]
    pub fps: Option<u32>,
    /// JPEG quality 1..=100 (MJPEG only; default 80).
    #[serde(default)]
    pub quality: Option<Spanned<Quality>>,
    /// Bit rate (only in an old `[[publishers.rtsp.profile]]`: shown in
    /// the `[[encoder]]` it moved to).
    #[serde(default)]
    pub bitrate: Option<Spanned<Bitrate>>,
    /// Frames between key frames (likewise).
    #[serde(default)]
    pub gop: Option<Spanned<u32>>,
}

/// `[[encoder]]`: one H.264 encoding, run by a `framebus-encoder` child
/// for each of its cameras; it writes the encoded bus `{bus}.h264.{name}`
/// (served as `rtsp://host/{bus}/{name}` by `framebus-rtsp`) and encodes
/// only while that bus has readers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderCfg {
    /// Profile name: in the encoded bus name and the RTSP URL.
    pub name: Spanned<ProfileName>,
    /// Output size (default: the camera's size).
    #[serde(default)]
    pub size: Option<EvenSize>,
    /// Output rate, at most the camera's (default: the camera's rate).
    #[serde(default)]
    pub fps: Option<Positive>,
    /// Bit rate: `"4M"`, `"800k"` or bits per second (default 4M).
    #[serde(default)]
    pub bitrate: Option<Bitrate>,
    /// Frames between key frames (default: two seconds' worth).
    #[serde(default)]
    pub gop: Option<Positive>,
    /// H.264 profile: `baseline`, `main` or `high` (default: the
    /// encoder's own choice).
    #[serde(default)]
    pub h264: Option<H264Profile>,
    /// `framebus-encoder --encoder`: `auto`, `libx264`, `h264-vaapi`,
    /// `h264v4l2m2m`, `h264-nvenc` (default `auto`).
    #[serde(default)]
    pub encoder: Option<EncoderName>,
    /// Bus names of the cameras to encode (default: every camera).
    #[serde(default)]
    pub cameras: Option<Spanned<Vec<Spanned<String>>>>,
    /// Seconds encoding goes on after the encoded bus's last reader left.
    #[serde(default = "default_grace")]
    pub grace: Secs,
}

/// One encoder as the supervisor runs it: an `[[encoder]]` (or the default
/// one) with its defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderSpec {
    /// Profile name.
    pub name: String,
    /// Output size, `None` for the camera's.
    pub size: Option<(u32, u32)>,
    /// Output rate, `None` for the camera's.
    pub fps: Option<u32>,
    /// Bits per second, `None` for the encoder's default (4M).
    pub bitrate: Option<Bitrate>,
    /// Frames between key frames, `None` for two seconds' worth.
    pub gop: Option<u32>,
    /// `baseline`, `main`, `high`; `None` for framebus-encoder's default (`main`).
    pub h264: Option<String>,
    /// `--encoder`, `None` for `auto`.
    pub encoder: Option<String>,
    /// Seconds encoding goes on after the last reader left.
    pub grace: Duration,
}

impl EncoderSpec {
    /// The encoder used when `[publishers.rtsp]` is enabled and no
    /// `[[encoder]]` is given: `high`, 1920x1080 at 30 fps, 4 Mbit/s,
    /// GOP 60 (the H.264 profile left to the encoder).
    pub fn default_high() -> EncoderSpec {
        EncoderSpec {
            name: "high".into(),
            size: Some((1920, 1080)),
            fps: Some(30),
            bitrate: Some(Bitrate(4_000_000)),
            gop: Some(60),
            h264: None,
            encoder: None,
            grace: default_grace().0,
        }
    }
}

/// One `framebus-encoder` child: a camera's raw bus and an encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderJob {
    /// The raw bus read (the camera's).
    pub raw_bus: String,
    /// The encoded bus written: `{raw_bus}.h264.{name}`.
    pub out_bus: String,
    /// What to encode.
    pub spec: EncoderSpec,
}

impl EncoderCfg {
    /// With the defaults applied.
    pub fn spec(&self) -> EncoderSpec {
        EncoderSpec {
            name: self.name.get_ref().0.clone(),
            size: self.size.map(|s| (s.0, s.1)),
            fps: self.fps.map(|f| f.0),
            bitrate: self.bitrate,
            gop: self.gop.map(|g| g.0),
            h264: self.h264.as_ref().map(|h| h.0.clone()),
            encoder: self.encoder.as_ref().map(|e| e.0.clone()),
            grace: self.grace.0,
        }
    }

    /// Whether it encodes camera `bus`.
    pub fn covers(&self, bus: &str) -> bool {
        self.cameras
            .as_ref()
            .is_none_or(|c| c.get_ref().iter().any(|b| b.get_ref() == bus))
    }
}

/// `[supervision]`: how publisher processes are restarted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supervision {
    /// First restart delay, seconds.
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial: Secs,
    /// The delay doubles up to this, seconds.
    #[serde(default = "default_backoff_max")]
    pub backoff_max: Secs,
    /// A child running this long is stable: its next restart starts from
    /// `backoff_initial` again.
    #[serde(default = "default_stable_after")]
    pub stable_after: Secs,
    /// Restarts before giving up on a child (state `failed`).
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    /// Seconds between health probes.
    #[serde(default = "default_health_interval")]
    pub health_interval: Secs,
    /// A child that has not answered a health probe (or not printed its
    /// `listening on` line) for this long is hung: killed and restarted.
    #[serde(default = "default_hung_after")]
    pub hung_after: Secs,
    /// On stop, SIGKILL children still alive this long after SIGTERM.
    #[serde(default = "default_stop_grace")]
    pub stop_grace: Secs,
}

impl Default for Supervision {
    fn default() -> Supervision {
        Supervision {
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
            stable_after: default_stable_after(),
            max_restarts: default_max_restarts(),
            health_interval: default_health_interval(),
            hung_after: default_hung_after(),
            stop_grace: default_stop_grace(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_source() -> Source {
    Source("testsrc".into())
}
fn default_format() -> Format {
    Format(PixelFormat::Nv12)
}
fn default_slots() -> u32 {
    8
}
fn default_watchdog() -> Secs {
    Secs(Duration::from_secs(2))
}
fn default_reconnect_initial() -> Secs {
    Secs(Duration::from_secs(1))
}
fn default_audio_rate() -> u32 {
    48000
}

fn default_audio_channels() -> u32 {
    1
}

fn default_reconnect_max() -> Secs {
    Secs(Duration::from_secs(30))
}
fn default_grace() -> Secs {
    Secs(Duration::from_secs(10))
}
fn default_max_viewers() -> u32 {
    32
}
fn default_fragment() -> DurationCfg {
    DurationCfg(Duration::from_secs(1))
}
fn default_segment() -> DurationCfg {
    DurationCfg(Duration::from_secs(60))
}
fn default_max_duration() -> DurationCfg {
    DurationCfg(Duration::from_secs(3600))
}
fn default_max_recordings() -> Positive {
    Positive(16)
}
fn default_backoff_initial() -> Secs {
    Secs(Duration::from_secs(10))
}
fn default_backoff_max() -> Secs {
    Secs(Duration::from_secs(300))
}
fn default_stable_after() -> Secs {
    Secs(Duration::from_secs(300))
}
fn default_max_restarts() -> u32 {
    50
}
fn default_health_interval() -> Secs {
    Secs(Duration::from_secs(2))
}
fn default_hung_after() -> Secs {
    Secs(Duration::from_secs(15))
}
fn default_stop_grace() -> Secs {
    Secs(Duration::from_millis(1000))
}

impl Config {
    /// `(kind, settings)` of each configured publisher.
    pub fn publishers(&self) -> Vec<(&'static str, &Publisher)> {
        let mut v = Vec::new();
        if let Some(m) = &self.publishers.mjpeg {
            v.push(("mjpeg", m));
        }
        if let Some(r) = &self.publishers.rtsp {
            v.push(("rtsp", r));
        }
        v
    }

    /// `[publishers.recorder]`, if the file has it (enabled or not).
    pub fn recorder(&self) -> Option<&RecorderCfg> {
        self.publishers.recorder.as_ref().map(|r| r.get_ref())
    }

    /// Whether the default encoder stands in for a missing `[[encoder]]`:
    /// an enabled `[publishers.rtsp]` serves encoded buses, and without an
    /// encoder there would be nothing to play.
    pub fn uses_default_encoder(&self) -> bool {
        self.encoders.is_empty() && self.publishers.rtsp.as_ref().is_some_and(|r| r.enabled)
    }

    /// Every `framebus-encoder` child: for each `[[encoder]]` (or the
    /// default one, see [`Config::uses_default_encoder`]), each camera it
    /// covers, in file order.
    pub fn encoder_jobs(&self) -> Vec<EncoderJob> {
        let specs: Vec<(EncoderSpec, Option<&EncoderCfg>)> = if self.uses_default_encoder() {
            vec![(EncoderSpec::default_high(), None)]
        } else {
            self.encoders.iter().map(|e| (e.spec(), Some(e))).collect()
        };
        let mut jobs = Vec::new();
        for (spec, cfg) in specs {
            for cam in &self.cameras {
                let raw = cam.bus.get_ref();
                if cfg.is_none_or(|c| c.covers(raw)) {
                    jobs.push(EncoderJob {
                        raw_bus: raw.clone(),
                        out_bus: framebus::contract::encoder::bus_name(raw, &spec.name),
                        spec: spec.clone(),
                    });
                }
            }
        }
        jobs
    }

    /// The log format, when the file sets one.
    pub fn log_format(&self) -> Option<LogFormat> {
        self.log_format.map(LogFormat::from)
    }
}

impl Camera {
    /// The producer flags this camera stands for.
    pub fn to_cli(&self, log_format: LogFormat) -> cli::Cli {
        cli::Cli {
            bus: self.bus.get_ref().clone(),
            source: self.source.0.clone(),
            size: self.size.map(|s| (s.0, s.1)),
            fps: self.fps.map(|f| f.0),
            format: self.format.0,
            slots: self.slots,
            group: self.group.clone(),
            mjpeg_bus: self.mjpeg_bus,
            audio: self.audio.clone(),
            audio_rate: self.audio_rate,
            audio_channels: self.audio_channels,
            audio_wait: self.audio_wait,
            list_devices: false,
            log_format,
            backoff_initial: self.reconnect_initial.0,
            backoff_max: self.reconnect_max.0,
            watchdog: self.watchdog.0,
            config: None,
            doctor: false,
            json: false,
        }
    }
}
