//! `framebus.toml`: the cameras to capture, the publisher processes to run
//! and supervise, and how to supervise them (see `docs/service.md` and the
//! commented `examples/framebus.toml`).
//!
//! Every table rejects unknown keys. Values are checked while parsing, so a
//! bad size, rate, format or address is reported at its own line and column;
//! checks across values (a bus named twice, a port already taken) name the
//! line and column of the offending value too.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use framebus::{Fps, PixelFormat};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::cli::{self, LogFormat, SourceKind};

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
    /// `[publishers.mjpeg]`, `[publishers.rtsp]`.
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
    /// Seconds an encoder keeps running after its last viewer.
    #[serde(default = "default_grace")]
    pub grace: Secs,
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
    /// `[[publishers.KIND.profile]]`. MJPEG: added to (or replacing by
    /// name) the built-in `medium`, `low` and `native`. RTSP: when given,
    /// they replace the built-in `high` and `native`.
    #[serde(default, rename = "profile")]
    pub profiles: Vec<ProfileCfg>,
}

/// One output profile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileCfg {
    /// Name in the URL (`/{bus}/{name}.mjpg`, `rtsp://host/{bus}/{name}`).
    pub name: ProfileName,
    /// Output size (default: the bus size).
    #[serde(default)]
    pub size: Option<EvenSize>,
    /// Output rate (default: the bus rate).
    #[serde(default)]
    pub fps: Option<u32>,
    /// JPEG quality 1..=100 (MJPEG only; default 80).
    #[serde(default)]
    pub quality: Option<Spanned<Quality>>,
    /// Bit rate: `"4M"`, `"800k"` or bits per second (RTSP only).
    #[serde(default)]
    pub bitrate: Option<Spanned<Bitrate>>,
    /// Frames between key frames (RTSP only).
    #[serde(default)]
    pub gop: Option<Spanned<u32>>,
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
fn default_reconnect_max() -> Secs {
    Secs(Duration::from_secs(30))
}
fn default_grace() -> Secs {
    Secs(Duration::from_secs(10))
}
fn default_max_viewers() -> u32 {
    32
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

/// Deserialize a string through `parse`, reporting its message at the
/// value's position.
fn from_str_with<'de, D, T>(
    d: D,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let s = String::deserialize(d)?;
    parse(&s).map_err(de::Error::custom)
}

/// A frame source (`testsrc`, `v4l2:…`, `ffmpeg:…`).
#[derive(Clone, Debug)]
pub struct Source(pub String);

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Source, D::Error> {
        from_str_with(d, |s| {
            match SourceKind::parse(s) {
            Some(_) => Ok(Source(s.to_string())),
            None => Err(format!(
                "unknown source {s:?} (expected testsrc, v4l2:/dev/videoN, v4l2:auto or ffmpeg:<url-or-file>)"
            )),
        }
        })
    }
}

/// `"WxH"`, both non-zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u32, pub u32);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        from_str_with(d, |s| cli::parse_size(s).map(|(w, h)| Size(w, h)))
    }
}

/// `"WxH"` for an output profile: even, 16..=8192.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvenSize(pub u32, pub u32);

impl<'de> Deserialize<'de> for EvenSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EvenSize, D::Error> {
        from_str_with(d, |s| {
            let (w, h) = cli::parse_size(s)?;
            if !(16..=8192).contains(&w) || !(16..=8192).contains(&h) || (w | h) & 1 != 0 {
                return Err(format!(
                    "profile size {s:?}: width and height must be even and in 16..=8192"
                ));
            }
            Ok(EvenSize(w, h))
        })
    }
}

/// A raw bus pixel format.
#[derive(Clone, Copy, Debug)]
pub struct Format(pub PixelFormat);

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
        from_str_with(d, |s| cli::parse_format(s).map(Format))
    }
}

/// A profile name: letters, digits, `-`, `_`.
#[derive(Clone, Debug)]
pub struct ProfileName(pub String);

impl<'de> Deserialize<'de> for ProfileName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ProfileName, D::Error> {
        from_str_with(d, |s| {
            let ok = !s.is_empty()
                && s != "snapshot"
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if ok {
                Ok(ProfileName(s.to_string()))
            } else {
                Err(format!(
                    "profile name {s:?}: letters, digits, '-' or '_' only (and not \"snapshot\")"
                ))
            }
        })
    }
}

/// JPEG quality 1..=100.
#[derive(Clone, Copy, Debug)]
pub struct Quality(pub u8);

impl<'de> Deserialize<'de> for Quality {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Quality, D::Error> {
        let q = i64::deserialize(d)?;
        match u8::try_from(q) {
            Ok(q) if (1..=100).contains(&q) => Ok(Quality(q)),
            _ => Err(de::Error::custom(format!("quality {q} is not in 1..=100"))),
        }
    }
}

/// `user:password`.
#[derive(Clone)]
pub struct Credentials(pub String);

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(..)")
    }
}

impl<'de> Deserialize<'de> for Credentials {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Credentials, D::Error> {
        from_str_with(d, |s| match s.split_once(':') {
            Some((u, _)) if !u.is_empty() => Ok(Credentials(s.to_string())),
            _ => Err("auth must be \"user:password\"".to_string()),
        })
    }
}

/// A bit rate in bits per second, from `"4M"`, `"800k"` or a number.
#[derive(Clone, Copy, Debug)]
pub struct Bitrate(pub u64);

impl<'de> Deserialize<'de> for Bitrate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bitrate, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bitrate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bit rate like \"4M\", \"800k\" or 4000000")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bitrate, E> {
                u64::try_from(v)
                    .ok()
                    .filter(|&b| b > 0)
                    .map(Bitrate)
                    .ok_or_else(|| E::custom(format!("bit rate {v} must be positive")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Bitrate, E> {
                let (num, mult) = match s.as_bytes().last() {
                    Some(b'k' | b'K') => (&s[..s.len() - 1], 1_000),
                    Some(b'm' | b'M') => (&s[..s.len() - 1], 1_000_000),
                    _ => (s, 1),
                };
                num.parse::<u64>()
                    .ok()
                    .map(|n| n * mult)
                    .filter(|&b| b > 0)
                    .map(Bitrate)
                    .ok_or_else(|| E::custom(format!("bad bit rate {s:?} (e.g. \"4M\", \"800k\")")))
            }
        }
        d.deserialize_any(V)
    }
}

impl Bitrate {
    /// As the RTSP publisher's profile syntax writes it.
    pub fn arg(self) -> String {
        if self.0.is_multiple_of(1_000_000) {
            format!("{}M", self.0 / 1_000_000)
        } else if self.0.is_multiple_of(1_000) {
            format!("{}k", self.0 / 1_000)
        } else {
            self.0.to_string()
        }
    }
}

/// A frame rate: `60` or `"30000/1001"`.
#[derive(Clone, Copy, Debug)]
pub struct FpsCfg(pub Fps);

impl<'de> Deserialize<'de> for FpsCfg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FpsCfg, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FpsCfg;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a frame rate like 30 or \"30000/1001\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FpsCfg, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<FpsCfg, E> {
                cli::parse_fps(s).map(FpsCfg).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A positive number of seconds (integer or float).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Secs(pub Duration);

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secs, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secs, E> {
                if v.is_finite() && (0.0..1e6).contains(&v) {
                    Ok(Secs(Duration::from_secs_f64(v)))
                } else {
                    Err(E::custom(format!(
                        "{v} is not a number of seconds in 0..1000000"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a config file cannot be used. Displayed as `FILE:LINE:COL: what`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Bad TOML, an unknown key or a bad value.
    #[error("{}:{line}:{column}: {message}", path.display())]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A problem that has no single position.
    #[error("{}: {message}", path.display())]
    Whole {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// Read and check a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parse and check config text (`path` only names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let at = |offset: usize, message: String| {
        let (line, column) = line_col(text, offset);
        ConfigError::At {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    };
    let config: Config = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => at(span.start, e.message().trim().to_string()),
        None => ConfigError::Whole {
            path: path.to_path_buf(),
            message: e.message().trim().to_string(),
        },
    })?;

    if config.cameras.is_empty() {
        return Err(ConfigError::Whole {
            path: path.to_path_buf(),
            message: "no [[camera]]: at least one camera is needed".into(),
        });
    }
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for cam in &config.cameras {
        let name = cam.bus.get_ref().as_str();
        let start = cam.bus.span().start;
        framebus::validate_name(name).map_err(|e| at(start, e.to_string()))?;
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            let (line, _) = line_col(text, *first);
            return Err(at(
                start,
                format!("bus {name:?} is already used by the camera at line {line}"),
            ));
        }
        seen.push((name, start));
        if cam.reconnect_max.0 < cam.reconnect_initial.0 {
            return Err(at(
                start,
                format!("camera {name:?}: reconnect_max is shorter than reconnect_initial"),
            ));
        }
    }
    let s = &config.supervision;
    if s.backoff_max.0 < s.backoff_initial.0 {
        return Err(ConfigError::Whole {
            path: path.to_path_buf(),
            message: "[supervision] backoff_max is shorter than backoff_initial".into(),
        });
    }

    let mut listens: Vec<(SocketAddr, usize)> = Vec::new();
    for (kind, common) in config.publishers() {
        for p in &common.profiles {
            let wrong = match kind {
                "mjpeg" => p
                    .bitrate
                    .as_ref()
                    .map(|b| ("bitrate", b.span().start))
                    .or(p.gop.as_ref().map(|g| ("gop", g.span().start))),
                _ => p.quality.as_ref().map(|q| ("quality", q.span().start)),
            };
            if let Some((key, start)) = wrong {
                return Err(at(
                    start,
                    format!("`{key}` does not apply to {kind} profiles"),
                ));
            }
        }
        if !common.enabled {
            continue;
        }
        let addr = *common.listen.get_ref();
        let start = common.listen.span().start;
        if addr.port() == 0 {
            continue;
        }
        if let Some((_, first)) = listens.iter().find(|(a, _)| *a == addr) {
            let (line, _) = line_col(text, *first);
            return Err(at(
                start,
                format!("publishers.{kind}.listen: {addr} is also used at line {line}"),
            ));
        }
        listens.push((addr, start));
        // A port another process holds is a configuration error now rather
        // than a crash loop later.
        if let Err(e) = TcpListener::bind(addr) {
            return Err(at(
                start,
                format!("publishers.{kind}.listen: cannot listen on {addr}: {e}"),
            ));
        }
    }
    Ok(config)
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
            list_devices: false,
            log_format,
            backoff_initial: self.reconnect_initial.0,
            backoff_max: self.reconnect_max.0,
            watchdog: self.watchdog.0,
            config: None,
        }
    }
}

/// The command line of `framebus-mjpeg` for this config.
pub fn mjpeg_args(c: &Publisher, buses: &[String]) -> Vec<String> {
    let mut a = vec!["--listen".into(), c.listen.get_ref().to_string()];
    for b in buses {
        a.push("--bus".into());
        a.push(b.clone());
    }
    for p in &c.profiles {
        let size = p
            .size
            .map_or_else(|| "native".to_string(), |s| format!("{}x{}", s.0, s.1));
        let fps = p.fps.map_or_else(String::new, |f| format!("@{f}"));
        let q = p.quality.as_ref().map_or(80, |q| q.get_ref().0);
        a.push("--profile".into());
        a.push(format!("{}={size}{fps}:q{q}", p.name.0));
    }
    a.push("--grace".into());
    a.push(c.grace.0.as_secs_f64().to_string());
    a.push("--max-viewers".into());
    a.push(c.max_viewers.to_string());
    // Credentials go through the environment (`mjpeg_env`), not the
    // command line that every user can read in `ps`.
    a.extend(c.args.iter().cloned());
    a
}

/// Environment of `framebus-mjpeg` for this config: the credentials, which
/// only the same user (or root) can read in `/proc/PID/environ`.
pub fn mjpeg_env(c: &Publisher) -> Vec<(&'static str, String)> {
    c.auth
        .iter()
        .map(|auth| ("FRAMEBUS_MJPEG_AUTH", auth.0.clone()))
        .collect()
}

/// The command line of `framebus-rtsp` for this config.
pub fn rtsp_args(c: &Publisher) -> Vec<String> {
    let mut a = vec!["--listen".into(), c.listen.get_ref().to_string()];
    for p in &c.profiles {
        let size = p
            .size
            .map_or_else(|| "native".to_string(), |s| format!("{}x{}", s.0, s.1));
        let mut spec = format!("{}={size}", p.name.0);
        if let Some(f) = p.fps {
            spec.push_str(&format!("@{f}"));
        }
        if let Some(b) = &p.bitrate {
            spec.push_str(&format!(",bitrate={}", b.get_ref().arg()));
        }
        if let Some(g) = &p.gop {
            spec.push_str(&format!(",gop={}", g.get_ref()));
        }
        a.push("--profile".into());
        a.push(spec);
    }
    a.push("--grace".into());
    a.push(c.grace.0.as_secs_f64().to_string());
    a.push("--max-clients".into());
    a.push(c.max_viewers.to_string());
    // Credentials go through the environment (`rtsp_env`).
    a.extend(c.args.iter().cloned());
    a
}

/// Environment of `framebus-rtsp` for this config (the credentials).
pub fn rtsp_env(c: &Publisher) -> Vec<(&'static str, String)> {
    c.auth
        .iter()
        .map(|auth| ("FRAMEBUS_RTSP_AUTH", auth.0.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("t.toml"), text).unwrap_err().to_string()
    }

    const CAM: &str = "[[camera]]\nbus = \"c0\"\n";

    #[test]
    fn example_parses() {
        let text = include_str!("../../examples/framebus.toml");
        // The example's ports may be taken on this machine: only parse.
        let c: Config = toml::from_str(text).expect("example parses");
        assert_eq!(c.cameras.len(), 1);
        assert_eq!(c.cameras[0].size, Some(Size(1920, 1080)));
        assert_eq!(c.supervision.backoff_initial.0, Duration::from_secs(10));
        assert_eq!(c.supervision.backoff_max.0, Duration::from_secs(300));
        assert_eq!(c.supervision.max_restarts, 50);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = err(&format!("{CAM}sise = \"1x1\"\n"));
        assert!(e.starts_with("t.toml:3:1: unknown field `sise`"), "{e}");
        let e = err(&format!("{CAM}size = \"12by7\"\n"));
        assert!(e.starts_with("t.toml:3:8: "), "{e}");
        assert!(e.contains("12by7"), "{e}");
        let e = err(&format!("{CAM}{CAM}"));
        assert!(
            e.starts_with("t.toml:4:7: bus \"c0\" is already used by the camera at line 2"),
            "{e}"
        );
        let e = err("");
        assert!(e.contains("no [[camera]]"), "{e}");
    }

    #[test]
    fn args_for_publishers() {
        let c = parse(
            Path::new("t"),
            &format!(
                "{CAM}[publishers.rtsp]\nlisten = \"127.0.0.1:0\"\n[[publishers.rtsp.profile]]\nname = \"high\"\nsize = \"1920x1080\"\nfps = 30\nbitrate = \"4M\"\n\
                 [publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\n[[publishers.mjpeg.profile]]\nname = \"low\"\nsize = \"640x480\"\nfps = 15\n"
            ),
        )
        .unwrap();
        let r = rtsp_args(c.publishers.rtsp.as_ref().unwrap());
        assert!(
            r.contains(&"high=1920x1080@30,bitrate=4M".to_string()),
            "{r:?}"
        );
        let m = mjpeg_args(c.publishers.mjpeg.as_ref().unwrap(), &["c0".into()]);
        assert!(m.contains(&"low=640x480@15:q80".to_string()), "{m:?}");
    }

    #[test]
    fn credentials_go_through_the_environment() {
        let c = parse(
            Path::new("t"),
            &format!("{CAM}[publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\nauth = \"ann:s3cret\"\n"),
        )
        .unwrap();
        let m = c.publishers.mjpeg.as_ref().unwrap();
        let args = mjpeg_args(m, &["c0".into()]);
        assert!(
            !args.iter().any(|a| a.contains("s3cret")),
            "password on the command line: {args:?}"
        );
        assert_eq!(
            mjpeg_env(m),
            vec![("FRAMEBUS_MJPEG_AUTH", "ann:s3cret".to_string())]
        );
    }
}
