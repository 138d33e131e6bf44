//! The producer's own test helpers: a [`Scene`] (a private shm directory
//! and a unique bus, the producer command on them) and the ffmpeg CLI. The
//! generic ones (names, the child guard, bounded waits) are in
//! `framebus-test-support`.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use framebus::{BusInfo, Reader, ReaderOptions};
pub use framebus_test_support::ChildGuard;
use framebus_test_support::{unique_name, TempDir};

pub const BIN: &str = env!("CARGO_BIN_EXE_framebus-producer");

/// A private shm directory (removed on drop) and a unique bus name for one
/// test.
pub struct Scene {
    pub dir: PathBuf,
    pub bus: String,
    _tmp: TempDir,
}

impl Scene {
    pub fn new(tag: &str) -> Scene {
        let bus = unique_name(tag);
        let tmp = TempDir::new(&format!("prodtest-{tag}"));
        Scene {
            dir: tmp.path().to_path_buf(),
            bus,
            _tmp: tmp,
        }
    }

    /// The producer command with this scene's bus and directory.
    pub fn producer(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.env("FRAMEBUS_SHM_DIR", &self.dir)
            .env("RUST_LOG", "info")
            .arg("--bus")
            .arg(&self.bus)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    pub fn spawn(&self, args: &[&str]) -> ChildGuard {
        ChildGuard::spawn(&mut self.producer(args))
    }

    /// Attach a reader, waiting up to 30 s for the bus to appear.
    pub fn reader(&self) -> Reader {
        Reader::attach(
            &self.bus,
            ReaderOptions {
                wait: Some(Duration::from_secs(30)),
                shm_dir: Some(self.dir.clone()),
            },
        )
        .expect("attach to the producer's bus")
    }

    pub fn stat(&self) -> Option<BusInfo> {
        framebus::stat(&self.bus, Some(&self.dir)).ok()
    }

    pub fn segment(&self) -> PathBuf {
        framebus::segment_path(&self.dir, &self.bus)
    }

    /// Poll `stat` until `pred` holds (at most `limit`).
    pub fn wait_stat(&self, limit: Duration, pred: impl Fn(&BusInfo) -> bool) -> BusInfo {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.stat() {
                if pred(&s) {
                    return s;
                }
                if Instant::now() > end {
                    panic!("condition not reached within {limit:?}; last stat: {s:#?}");
                }
            } else if Instant::now() > end {
                panic!("bus {} never appeared", self.bus);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Watchdog: wait for `p` to exit (at most `limit`, then kill and panic);
/// its status and piped stderr.
pub fn wait_stderr(mut p: ChildGuard, limit: Duration) -> (ExitStatus, String) {
    let st = p.wait_exit(limit);
    let mut err = String::new();
    p.take_stderr().read_to_string(&mut err).ok();
    (st, err)
}

/// Run the producer to completion (bounded) and return (code, stderr).
pub fn run_to_exit(scene: &Scene, args: &[&str]) -> (i32, String) {
    let (st, err) = wait_stderr(scene.spawn(args), Duration::from_secs(60));
    (st.code().unwrap_or(-1), err)
}

/// Whether the ffmpeg CLI is available.
pub fn have_ffmpeg() -> bool {
    Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run the ffmpeg CLI quietly; panic on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
