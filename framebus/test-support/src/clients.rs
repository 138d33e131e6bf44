//! Real clients in the background, counting what they receive: curl on an
//! MJPEG stream (multipart boundaries) and ffmpeg on an RTSP stream
//! (decoded frames, one `framemd5` line each). Both run for at most 300 s
//! and are killed with their guard.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::child::ChildGuard;
use crate::wait::eventually;

/// The boundary `framebus-mjpeg` puts before each part.
pub const MJPEG_BOUNDARY: &[u8] = b"--framebusframe";

/// A client process and the number of frames it got so far.
pub struct Counting {
    /// The client (killed on drop).
    pub child: ChildGuard,
    frames: Arc<AtomicU64>,
}

impl Counting {
    /// Frames received so far.
    pub fn count(&self) -> u64 {
        self.frames.load(Ordering::SeqCst)
    }

    /// The counter itself (shared with the reading thread).
    pub fn counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.frames)
    }

    /// Watchdog: wait at most `limit` until `n` more frames than `from`
    /// arrived; panics saying `what` otherwise.
    pub fn grows(&self, from: u64, n: u64, limit: Duration, what: &str) {
        assert!(
            eventually(limit, || self.count() >= from + n),
            "{what}: stuck at {} frames (from {from}) for {limit:?}",
            self.count()
        );
    }
}

/// `curl -s -N` on an MJPEG URL, counting part boundaries.
pub fn curl_mjpeg(url: &str) -> Counting {
    let mut child = ChildGuard::spawn(
        Command::new("curl")
            .args(["-s", "-N", "--max-time", "300", url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut out = child.take_stdout();
    let frames = Arc::new(AtomicU64::new(0));
    let f2 = Arc::clone(&frames);
    std::thread::spawn(move || {
        let needle = MJPEG_BOUNDARY;
        let mut carry: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match out.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            carry.extend_from_slice(&buf[..n]);
            let hits = carry.windows(needle.len()).filter(|w| *w == needle).count();
            f2.fetch_add(hits as u64, Ordering::SeqCst);
            // Keep a tail shorter than the needle: a boundary split across
            // reads is counted once, when it completes.
            let keep = carry.len().min(needle.len() - 1);
            carry.drain(..carry.len() - keep);
        }
    });
    Counting { child, frames }
}

/// ffmpeg decoding an RTSP URL over `transport` (`tcp`, `udp`), counting
/// decoded frames.
pub fn ffmpeg_rtsp(url: &str, transport: &str) -> Counting {
    let mut child = ChildGuard::spawn(
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error"])
            .args(["-rtsp_transport", transport, "-i", url])
            .args(["-t", "300", "-f", "framemd5", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let out = child.take_stdout();
    let frames = Arc::new(AtomicU64::new(0));
    let f2 = Arc::clone(&frames);
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if !line.starts_with('#') && !line.trim().is_empty() {
                f2.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    Counting { child, frames }
}
