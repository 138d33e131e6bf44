//! `framebus-encoder` processes for tests: one per (bus, profile), writing
//! the encoded bus `{bus}.h264.{profile}` (`framebus::contract::encoder`).
//! Stopped with SIGTERM when dropped, so the encoder removes its bus (a
//! SIGKILL would leave the segment behind in `/dev/shm`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{bins, eventually, ChildGuard};

/// A running `framebus-encoder`.
pub struct Encoder {
    /// The process.
    pub child: ChildGuard,
    /// The encoded bus it writes.
    pub out: String,
    shm_dir: Option<PathBuf>,
}

impl Encoder {
    /// Starts an encoder of `bus` with `profile` (`NAME=...` as
    /// `--profile` takes it) and `extra` arguments, without waiting.
    pub fn spawn(bus: &str, profile: &str, extra: &[&str], shm_dir: Option<&Path>) -> Encoder {
        let name = profile.split(['=', ',', '@']).next().unwrap_or(profile);
        let out = framebus::contract::encoder::bus_name(bus, name);
        let mut cmd = Command::new(bins::path("framebus-encoder"));
        cmd.args(["--bus", bus, "--profile", profile])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit());
        if let Some(d) = shm_dir {
            cmd.env(framebus::contract::env::SHM_DIR, d);
        }
        Encoder {
            child: ChildGuard::spawn(&mut cmd),
            out,
            shm_dir: shm_dir.map(Path::to_path_buf),
        }
    }

    /// [`Encoder::spawn`], then waits (30 s watchdog) until the encoded
    /// bus is live.
    pub fn start(bus: &str, profile: &str, extra: &[&str], shm_dir: Option<&Path>) -> Encoder {
        let e = Encoder::spawn(bus, profile, extra, shm_dir);
        let ok = eventually(Duration::from_secs(30), || {
            framebus::stat(&e.out, shm_dir).is_ok_and(|s| s.producer_alive)
        });
        assert!(ok, "encoded bus {} did not appear", e.out);
        e
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if self.child.alive() {
            self.child
                .signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
        }
        // Killed before it could clean up (a test's own SIGKILL): the
        // segment is stale; remove it.
        if framebus::stat(&self.out, self.shm_dir.as_deref()).is_ok_and(|s| !s.producer_alive) {
            let _ = framebus::remove(&self.out, self.shm_dir.as_deref(), true);
        }
    }
}
