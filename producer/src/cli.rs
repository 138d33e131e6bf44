//! Command-line flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use framebus::{Fps, PixelFormat};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The framebus producer: owns one camera (or test pattern, or IP camera /
/// file through FFmpeg) and writes its frames into a shared-memory bus.
///
/// Exit codes: 0 clean stop, 1 general error, 3 missing dependency, 4 bad
/// configuration or arguments, 5 device or bus already owned by another
/// producer, 6 no device found.
#[derive(Debug, Parser)]
#[command(name = "framebus-producer", version)]
pub struct Cli {
    /// Bus name (the segment is /dev/shm/framebus.<bus>).
    #[arg(long, default_value = "cam0")]
    pub bus: String,
    /// Frame source: `testsrc`, `v4l2:/dev/videoN`, `v4l2:auto`, or
    /// `ffmpeg:<url-or-file>` (rtsp://, http://, a file looped at its rate).
    #[arg(long, default_value = "testsrc")]
    pub source: String,
    /// Frame size WxH (default: 1920x1080 for testsrc, the source's own size
    /// otherwise).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(u32, u32)>,
    /// Frames per second, an integer or a fraction like 30000/1001 (default:
    /// 60 for testsrc, the source's own rate otherwise).
    #[arg(long, value_parser = parse_fps)]
    pub fps: Option<Fps>,
    /// Bus pixel format: yuyv, uyvy, nv12, i420, rgb24, bgr24, gray8.
    #[arg(long, default_value = "nv12", value_parser = parse_format)]
    pub format: PixelFormat,
    /// Slots in the ring.
    #[arg(long, default_value_t = 8)]
    pub slots: u32,
    /// Group that may read the bus (name or numeric gid); the segment
    /// becomes mode 0660.
    #[arg(long)]
    pub group: Option<String>,
    /// With an MJPEG camera, also publish its compressed frames as they are
    /// on a second bus `<bus>.mjpeg` (publishers can pass them through
    /// without re-encoding). Asks the camera for MJPEG.
    #[arg(long)]
    pub mjpeg_bus: bool,
    /// A microphone on the bus `<bus>.audio` (docs/audio.md): `alsa:default`,
    /// `alsa:hw:1,0`, `alsa:plughw:1,0`, `ffmpeg:<url-or-file>` (the audio
    /// track of an IP camera or a file), or `tone` (a 1 kHz beep at every
    /// whole second of the wall clock, the audio test pattern).
    #[arg(long, value_name = "SOURCE")]
    pub audio: Option<String>,
    /// Audio samples per second.
    #[arg(long, default_value_t = 48000)]
    pub audio_rate: u32,
    /// Audio channels (1 or 2; up to 8).
    #[arg(long, default_value_t = 1)]
    pub audio_channels: u32,
    /// A missing audio device at start is waited for (retried with the
    /// backoff) instead of exit 6.
    #[arg(long)]
    pub audio_wait: bool,
    /// List capture devices with their formats, sizes and rates, and exit.
    #[arg(long)]
    pub list_devices: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// First reconnection delay after the source is lost, seconds.
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    pub backoff_initial: Duration,
    /// Longest reconnection delay (the delay doubles up to this), seconds.
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    pub backoff_max: Duration,
    /// Reopen the source when it delivers no frame for this long, seconds.
    #[arg(long, default_value = "2", value_parser = parse_secs)]
    pub watchdog: Duration,
    /// Run the whole service from a `framebus.toml`: capture every
    /// configured camera and run and supervise the configured publishers
    /// (see docs/service.md). The capture flags above do not apply then.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "bus", "source", "size", "fps", "format", "slots", "group", "mjpeg_bus",
        "list_devices", "backoff_initial", "backoff_max", "watchdog",
        "audio", "audio_rate", "audio_channels", "audio_wait",
    ])]
    pub config: Option<PathBuf>,
    /// With `--config`: print the shared memory every bus of the file
    /// takes and check the shm directory (size, free space, file system,
    /// mount options) against it, then exit: 0 when it fits, 1 when it
    /// does not (`framebus doctor`; docs/containers.md).
    #[arg(long, requires = "config")]
    pub doctor: bool,
    /// `--doctor` as JSON.
    #[arg(long, requires = "doctor")]
    pub json: bool,
}

pub(crate) fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?} is not WxH (for example 1280x720)"))?;
    let w: u32 = w.parse().map_err(|_| format!("bad width in {s:?}"))?;
    let h: u32 = h.parse().map_err(|_| format!("bad height in {s:?}"))?;
    if w == 0 || h == 0 {
        return Err(format!("size {s:?} has a zero dimension"));
    }
    Ok((w, h))
}

pub(crate) fn parse_fps(s: &str) -> Result<Fps, String> {
    let (num, den) = match s.split_once('/') {
        Some((n, d)) => (n, d),
        None => (s, "1"),
    };
    let num: u32 = num.parse().map_err(|_| format!("bad fps {s:?}"))?;
    let den: u32 = den.parse().map_err(|_| format!("bad fps {s:?}"))?;
    if num == 0 || den == 0 {
        return Err(format!("fps {s:?} must be positive"));
    }
    Ok(Fps { num, den })
}

pub(crate) fn parse_format(s: &str) -> Result<PixelFormat, String> {
    let f: PixelFormat = s.parse().map_err(|e| format!("{e}"))?;
    if f.is_compressed() {
        return Err(format!(
            "the bus format must be raw ({} is a compressed format: use --mjpeg-bus for a camera's JPEGs, an encoder for H.264)",
            f.name()
        ));
    }
    if f.is_audio() {
        return Err(format!(
            "{} is an audio format: a microphone goes on <bus>.audio with --audio",
            f.name()
        ));
    }
    Ok(f)
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("bad duration {s:?} (seconds)"))?;
    if !(v.is_finite() && v > 0.0 && v < 1e6) {
        return Err(format!(
            "duration {s:?} must be a positive number of seconds"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Parsed `--source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// The moving test pattern with the time code.
    TestSrc,
    /// A V4L2 device path, or `None` for the first capture device.
    V4l2(Option<String>),
    /// An FFmpeg URL or file.
    Ffmpeg(String),
}

impl SourceKind {
    /// Parse a `--source` value.
    pub fn parse(s: &str) -> Option<SourceKind> {
        if s == "testsrc" {
            Some(SourceKind::TestSrc)
        } else if let Some(dev) = s.strip_prefix("v4l2:") {
            match dev {
                "" => None,
                "auto" => Some(SourceKind::V4l2(None)),
                d => Some(SourceKind::V4l2(Some(d.to_string()))),
            }
        } else if let Some(url) = s.strip_prefix("ffmpeg:") {
            (!url.is_empty()).then(|| SourceKind::Ffmpeg(url.to_string()))
        } else {
            None
        }
    }
}
