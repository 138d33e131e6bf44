//! The supervisor's status file, read by `framebus status`.
//!
//! `$FRAMEBUS_SHM_DIR/framebus-status.<producer pid>.json` (default
//! `/dev/shm`), mode 0644 (it holds no secret), rewritten at
//! least once a second and on every state change: written to a temporary
//! file in the same directory and renamed over the old one, so a reader
//! sees either the old or the new document, never a partial one. Removed on
//! a clean stop. The format is documented in `docs/service.md`
//! (`version` 1).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// File name prefix in the shm directory.
pub const PREFIX: &str = "framebus-status.";

/// The whole document.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Format version (1).
    pub version: u32,
    /// The supervising `framebus-producer`.
    pub producer_pid: u32,
    /// The config file it runs.
    pub config: PathBuf,
    /// Unix time of this write, milliseconds.
    pub updated_unix_ms: u64,
    /// `running` or `stopping`.
    pub state: &'static str,
    /// One per `[[camera]]`.
    pub cameras: Vec<CameraStatus>,
    /// One per configured publisher.
    pub publishers: Vec<PublisherStatus>,
}

/// One capture thread.
#[derive(Debug, Clone, Serialize)]
pub struct CameraStatus {
    /// Bus name.
    pub bus: String,
    /// Source.
    pub source: String,
    /// `running` or `failed` (see the bus itself for the source state).
    pub state: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One supervised publisher process.
#[derive(Debug, Clone, Serialize)]
pub struct PublisherStatus {
    /// `mjpeg` or `rtsp`.
    pub kind: &'static str,
    /// Program run.
    pub command: PathBuf,
    /// Process id while a process exists.
    pub pid: Option<u32>,
    /// `starting` (no `listening on` line yet), `running`, `backoff`
    /// (waiting to restart), `failed` (gave up after max restarts),
    /// `stopped`.
    pub state: &'static str,
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
    /// Whether the endpoints need credentials (`auth` set).
    pub auth: bool,
}

/// The status file of the supervisor with `pid` in `dir`.
pub fn path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{PREFIX}{pid}.json"))
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
