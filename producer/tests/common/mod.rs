//! Helpers shared by the producer's integration tests: unique bus names and
//! shm directories, a child-process guard that kills and reaps on drop, and
//! bounded waits.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use framebus::{BusInfo, Reader, ReaderOptions};

pub const BIN: &str = env!("CARGO_BIN_EXE_framebus-producer");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A private shm directory and a unique bus name for one test.
pub struct Scene {
    pub dir: PathBuf,
    pub bus: String,
}

impl Scene {
    pub fn new(tag: &str) -> Scene {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{tag}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("framebus-prodtest-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        Scene {
            dir,
            bus: format!("t-{id}"),
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

    pub fn spawn(&self, args: &[&str]) -> Proc {
        Proc(Some(self.producer(args).spawn().expect("spawn producer")))
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

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A child process killed and reaped on drop (even on panic).
pub struct Proc(pub Option<Child>);

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid (not yet reaped).
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Wait for exit (at most `limit`, then kill and panic); returns the
    /// status and stderr.
    pub fn wait(mut self, limit: Duration) -> (ExitStatus, String) {
        let mut child = self.0.take().unwrap();
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                child.stderr.take().unwrap().read_to_string(&mut err).ok();
                return (st, err);
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("producer did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run the producer to completion (bounded) and return (code, stderr).
pub fn run_to_exit(scene: &Scene, args: &[&str]) -> (i32, String) {
    let p = Proc(Some(scene.producer(args).spawn().unwrap()));
    let (st, err) = p.wait(Duration::from_secs(60));
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
