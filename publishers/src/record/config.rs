//! `framebus-recorder`'s command line: the server's flags (the default)
//! and the `record` client subcommand (`framebus record` runs it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};

use crate::common::auth::Credentials;
use framebus::contract::encoder as enc;

/// Records encoded buses to fragmented MP4, with pre-roll from memory.
#[derive(Debug, Parser)]
#[command(
    name = "framebus-recorder",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// The server's flags (when no subcommand is given).
    #[command(flatten)]
    pub serve: Args,
    /// A client command instead of the server.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Client commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record through a running recorder's API and save the MP4.
    Record(RecordArgs),
}

/// `framebus-recorder record STREAM ...` (also `framebus record`).
#[derive(Debug, Clone, ClapArgs)]
pub struct RecordArgs {
    /// `cam0/high` (camera/profile) or an encoded bus name (`cam0.h264.high`).
    #[arg(value_parser = parse_stream)]
    pub stream: Stream,
    /// How long to record after the request (`30s`, `2m`, seconds).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Seconds before the request to include, from the recorder's memory.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub preroll: Duration,
    /// The MP4 to write (index at the front).
    #[arg(short, long)]
    pub output: PathBuf,
    /// The recorder's address.
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    pub api: String,
    /// `user:password` for a recorder that requires it (else
    /// `$FRAMEBUS_RECORDER_AUTH`).
    #[arg(long)]
    pub auth: Option<Credentials>,
}

/// The server's flags.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// Address of the HTTP API and page.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Where recordings go (default: `$STATE_DIRECTORY/recordings`, else
    /// `$XDG_STATE_HOME/framebus/recordings`, else
    /// `~/.local/state/framebus/recordings`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Shared-memory directory of the buses (default: `$FRAMEBUS_SHM_DIR`
    /// or /dev/shm).
    #[arg(long)]
    pub shm_dir: Option<PathBuf>,
    /// Keep `--preroll-max` of this stream in memory, so a recording can
    /// start before its request (keeps the stream's encoder running).
    /// Repeatable.
    #[arg(long, value_parser = parse_stream)]
    pub buffer: Vec<Stream>,
    /// Record this stream all the time, in segments. Repeatable.
    #[arg(long, value_parser = parse_stream)]
    pub continuous: Vec<Stream>,
    /// The longest pre-roll a request may ask for (and what `--buffer`
    /// keeps).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub preroll_max: Duration,
    /// Media per fragment: written and flushed to disk as one piece, so a
    /// crash loses at most this much (plus one frame).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub fragment: Duration,
    /// Length of a continuous recording's segments (cut at the first
    /// keyframe after it).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub segment: Duration,
    /// The longest recording (a request without a duration stops here).
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    pub max_duration: Duration,
    /// Delete continuous segments older than this.
    #[arg(long, value_parser = parse_duration)]
    pub retain_age: Option<Duration>,
    /// Delete the oldest continuous segments while they take more than
    /// this (`10G`, `500M`, bytes).
    #[arg(long, value_parser = parse_bytes)]
    pub retain_bytes: Option<u64>,
    /// Refuse to start a recording (507) while the file system of the
    /// directory has less free space than this (`64M`, `0` to never
    /// refuse); a recording that fills the disk still fails cleanly.
    #[arg(long, value_parser = parse_bytes, default_value = "64M")]
    pub min_free: u64,
    /// Recordings at once (on-demand ones; continuous ones are not
    /// counted).
    #[arg(long, default_value_t = 16)]
    pub max_recordings: usize,
    /// Require HTTP Basic `user:password` (prefer `--auth-file` or
    /// `$FRAMEBUS_RECORDER_AUTH`: `ps` shows arguments).
    #[arg(long)]
    pub auth: Option<Credentials>,
    /// A file whose first line is `user:password`.
    #[arg(long)]
    pub auth_file: Option<PathBuf>,
    /// Allow this origin's pages to call the API (CORS), e.g. the MJPEG
    /// page's `http://127.0.0.1:8080`. Repeatable; `*` for any.
    #[arg(long)]
    pub cors_origin: Vec<String>,
}

impl Args {
    /// The recordings directory: `--dir` or the default.
    pub fn recordings_dir(&self) -> Result<PathBuf, String> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(s) = env("STATE_DIRECTORY") {
            // systemd may give several, separated by colons: the first.
            let first = s
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            return Ok(PathBuf::from(first).join("recordings"));
        }
        if let Some(x) = env("XDG_STATE_HOME") {
            return Ok(PathBuf::from(x).join("framebus/recordings"));
        }
        if let Some(h) = env("HOME") {
            return Ok(PathBuf::from(h).join(".local/state/framebus/recordings"));
        }
        Err("no --dir, and none of $STATE_DIRECTORY, $XDG_STATE_HOME, $HOME is set".into())
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.fragment < Duration::from_millis(100) || self.fragment > Duration::from_secs(10) {
            return Err(format!(
                "--fragment {:?}: give 100ms to 10s (it bounds what a crash loses)",
                self.fragment
            ));
        }
        if self.preroll_max > Duration::from_secs(600) {
            return Err(format!(
                "--preroll-max {:?}: at most 10 minutes (it is kept in memory)",
                self.preroll_max
            ));
        }
        if self.segment < Duration::from_secs(1) {
            return Err(format!("--segment {:?}: at least 1s", self.segment));
        }
        if self.max_duration.is_zero() {
            return Err("--max-duration must be more than 0".into());
        }
        Ok(())
    }
}

/// An encoded stream: a camera's profile.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stream {
    /// The encoded bus (`cam0.h264.high`).
    pub bus: String,
}

impl Stream {
    /// `cam0/high`, or the bus name for buses not named by the encoder
    /// convention.
    pub fn name(&self) -> String {
        match enc::split(&self.bus) {
            Some((cam, profile)) => format!("{cam}/{profile}"),
            None => self.bus.clone(),
        }
    }

    /// The camera's raw bus (`cam0`), when the name follows the
    /// convention.
    pub fn camera(&self) -> Option<&str> {
        enc::split(&self.bus).map(|(cam, _)| cam)
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// `cam0/high` or `cam0.h264.high` (`contract::encoder::stream`, the
/// same reading the producer's config makes).
pub fn parse_stream(s: &str) -> Result<Stream, String> {
    let (cam, profile) = enc::stream(s).ok_or_else(|| {
        format!("{s:?}: give CAMERA/PROFILE (cam0/high) or an encoded bus name (cam0.h264.high)")
    })?;
    let bus = enc::bus_name(cam, profile);
    framebus::validate_name(&bus).map_err(|e| format!("{s:?}: {e}"))?;
    Ok(Stream { bus })
}

/// `30s`, `1.5s`, `500ms`, `2m`, `1h`, `7d`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{s:?}: not a duration (seconds must be 0 or more)"));
    }
    // humantime takes "1.5s" only as "1s 500ms": fractional seconds first.
    if let Some(secs) = t
        .strip_suffix('s')
        .and_then(|n| n.trim().parse::<f64>().ok())
    {
        return Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?}: not a duration"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{s:?}: not a duration ({e}); e.g. 30s, 2m, 1h"))
}

/// `10G`, `500M`, `64k`, `1GiB` or bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| format!("{s:?}: not a size ({e}); e.g. 10G, 500M"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").unwrap_err().contains("e.g. 30s"));
        assert_eq!(parse_bytes("10G").unwrap(), 10 << 30);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn streams() {
        assert_eq!(parse_stream("cam0/high").unwrap().bus, "cam0.h264.high");
        assert_eq!(parse_stream("cam0.h264.high").unwrap().name(), "cam0/high");
        assert_eq!(
            parse_stream("cam0.h264.high").unwrap().camera(),
            Some("cam0")
        );
        assert!(parse_stream("cam0/").is_err());
        assert!(parse_stream("Cam0/high").is_err());
        assert!(parse_stream("a/b/c").is_err());
    }
}
