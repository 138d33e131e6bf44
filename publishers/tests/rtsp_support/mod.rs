//! Helpers for the RTSP integration tests: a test bus fed by a writer
//! thread, the server binary, and child processes that are always killed
//! and reaped (guards with `Drop`), with timeouts on everything.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use framebus::{Fps, FrameMeta, FrameSpec, PixelFormat, Writer, WriterOptions};

/// A bus name unique to this process and call.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "rtsp-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A bus with a moving NV12 pattern at 30 fps, written by a thread.
pub struct TestBus {
    pub name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestBus {
    pub fn start(tag: &str, width: u32, height: u32) -> TestBus {
        let name = unique_name(tag);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let (name, stop) = (name.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let spec = FrameSpec::new(PixelFormat::Nv12, width, height, Fps::new(30)).unwrap();
                let mut w = Writer::create(&name, spec, WriterOptions::default()).unwrap();
                w.set_source_state(framebus::layout::source_state::RUNNING);
                tx.send(()).unwrap();
                let (wu, hu) = (width as usize, height as usize);
                let start = Instant::now();
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut loan = w.loan().unwrap();
                    {
                        let mut planes = loan.planes_mut();
                        let x0 = (n as usize * 8) % wu;
                        for (row, line) in planes[0].chunks_mut(wu).take(hu).enumerate() {
                            for (x, px) in line.iter_mut().enumerate() {
                                let bar = ((x + wu - x0) % wu) < wu / 8;
                                *px = if bar {
                                    235
                                } else {
                                    (16 + (row * 200 / hu)) as u8
                                };
                            }
                        }
                        planes[1].fill(128 + (n % 32) as u8);
                    }
                    loan.publish(FrameMeta::now());
                    n += 1;
                    let due = start + Duration::from_nanos(n * 1_000_000_000 / 30);
                    if let Some(d) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
            })
        };
        rx.recv_timeout(Duration::from_secs(10))
            .expect("bus created");
        TestBus {
            name,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A child process killed and reaped on drop.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Waits up to `timeout` for exit; kills it after that. Returns the
    /// exit status and captured stdout/stderr (if piped).
    pub fn wait_timeout(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let mut out_pipe = self.0.stdout.take();
        let mut err_pipe = self.0.stderr.take();
        let out_t = std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(p) = out_pipe.as_mut() {
                let _ = p.read_to_end(&mut v);
            }
            v
        });
        let err_t = std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(p) = err_pipe.as_mut() {
                let _ = p.read_to_end(&mut v);
            }
            v
        });
        let status = loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.0.kill();
                break self.0.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: out_t.join().unwrap(),
            stderr: err_t.join().unwrap(),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command with captured output, killed after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    ChildGuard(child).wait_timeout(timeout)
}

/// The server binary, listening on a free port.
pub struct RtspServer {
    pub child: ChildGuard,
    /// `127.0.0.1:PORT`
    pub addr: String,
}

impl RtspServer {
    pub fn start(extra: &[&str]) -> RtspServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_framebus-rtsp"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn framebus-rtsp");
        let stdout = child.stdout.take().unwrap();
        let guard = ChildGuard(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on rtsp://")
            .and_then(|s| s.strip_suffix('/'))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        RtspServer { child: guard, addr }
    }

    pub fn url(&self, bus: &str, profile: &str) -> String {
        format!("rtsp://{}/{bus}/{profile}", self.addr)
    }
}

/// `ffprobe` of the first video stream: (codec, width, height).
pub fn ffprobe(url: &str, transport: &str) -> (String, u32, u32, Output) {
    let out = run(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            transport,
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
            url,
        ]),
        Duration::from_secs(30),
    );
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = s.trim().split(',');
    let codec = it.next().unwrap_or_default().to_string();
    let w = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let h = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (codec, w, h, out)
}

/// Decodes `frames` frames with ffmpeg; returns the number decoded (from
/// `-progress`-free stderr parsing of the final `frame=` count) and output.
pub fn ffmpeg_decode(url: &str, transport: &str, frames: u32) -> (u32, Output) {
    let out = run(
        Command::new("ffmpeg").args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-stats",
            "-rtsp_transport",
            transport,
            "-i",
            url,
            "-frames:v",
            &frames.to_string(),
            "-f",
            "framemd5",
            "-",
        ]),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let decoded = stdout
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count() as u32;
    (decoded, out)
}
