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
        TestBus::start_with(tag, width, height, false)
    }

    /// Like `start`, with per-frame noise over the picture (hard to
    /// compress: a high bit rate really produces many bytes).
    pub fn start_noisy(tag: &str, width: u32, height: u32) -> TestBus {
        TestBus::start_with(tag, width, height, true)
    }

    fn start_with(tag: &str, width: u32, height: u32, noisy: bool) -> TestBus {
        TestBus::start_paced(tag, width, height, 30, None, noisy)
    }

    /// A camera at `fps` that loses every `drop_every`-th capture (the
    /// frame is never published, so the bus shows a gap in capture times,
    /// as a V4L2 camera that drops frames does).
    pub fn start_dropping(
        tag: &str,
        width: u32,
        height: u32,
        fps: u32,
        drop_every: u64,
    ) -> TestBus {
        TestBus::start_paced(tag, width, height, fps, Some(drop_every), false)
    }

    fn start_paced(
        tag: &str,
        width: u32,
        height: u32,
        fps: u32,
        drop_every: Option<u64>,
        noisy: bool,
    ) -> TestBus {
        let name = unique_name(tag);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let (name, stop) = (name.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let spec = FrameSpec::new(PixelFormat::Nv12, width, height, Fps::new(fps)).unwrap();
                let mut w = Writer::create(&name, spec, WriterOptions::default()).unwrap();
                w.set_source_state(framebus::layout::source_state::RUNNING);
                tx.send(()).unwrap();
                let (wu, hu) = (width as usize, height as usize);
                let start = Instant::now();
                let mut n: u64 = 0;
                let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
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
                        if noisy {
                            for px in planes[0].iter_mut() {
                                rng ^= rng << 13;
                                rng ^= rng >> 7;
                                rng ^= rng << 17;
                                *px = (rng >> 56) as u8;
                            }
                        }
                    }
                    if drop_every.is_none_or(|d| !(n + 1).is_multiple_of(d)) {
                        loan.publish(FrameMeta::now());
                    }
                    n += 1;
                    let due = start + Duration::from_nanos(n * 1_000_000_000 / u64::from(fps));
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
    /// `127.0.0.1:PORT` of `--http-listen`, when given.
    pub http: Option<String>,
}

impl RtspServer {
    pub fn start(extra: &[&str]) -> RtspServer {
        RtspServer::start_env(extra, &[])
    }

    /// Starts the server with extra environment variables.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> RtspServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_framebus-rtsp"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("FRAMEBUS_RTSP_AUTH")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn framebus-rtsp");
        let stdout = child.stdout.take().unwrap();
        let guard = ChildGuard(child);
        let with_http = extra.contains(&"--http-listen");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut rd = BufReader::new(stdout);
            for _ in 0..if with_http { 2 } else { 1 } {
                let mut line = String::new();
                let _ = rd.read_line(&mut line);
                let _ = tx.send(line);
            }
            // Keep the pipe open (and drained) while the server runs.
            let mut sink = Vec::new();
            let _ = rd.read_to_end(&mut sink);
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
        let http = with_http.then(|| {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("server prints its HTTP address");
            line.trim()
                .strip_prefix("http on http://")
                .and_then(|s| s.strip_suffix('/'))
                .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
                .to_string()
        });
        RtspServer {
            child: guard,
            addr,
            http,
        }
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

/// A minimal RTSP client over a raw socket, for status-code checks (the
/// media tests use real clients).
pub struct RawClient {
    pub sock: std::net::TcpStream,
    cseq: u32,
    pub session: Option<String>,
}

/// A response: status code, header lines, body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

impl RawClient {
    pub fn connect(addr: &str) -> RawClient {
        let sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        RawClient {
            sock,
            cseq: 0,
            session: None,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.sock.write_all(bytes).unwrap();
    }

    /// Reads one response (skipping interleaved `$` frames).
    pub fn read_response(&mut self) -> RawResponse {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            self.sock.read_exact(&mut byte).expect("response");
            if head.is_empty() && byte[0] == b'$' {
                let mut hdr = [0u8; 3];
                self.sock.read_exact(&mut hdr).unwrap();
                let mut skip = vec![0u8; usize::from(u16::from_be_bytes([hdr[1], hdr[2]]))];
                self.sock.read_exact(&mut skip).unwrap();
                continue;
            }
            head.push(byte[0]);
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
            assert!(head.len() < 65536, "response head too long");
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        let mut resp = RawResponse {
            status,
            head,
            body: Vec::new(),
        };
        if let Some(n) = resp.header("Content-Length").and_then(|v| v.parse().ok()) {
            resp.body = vec![0u8; n];
            self.sock.read_exact(&mut resp.body).unwrap();
        }
        resp
    }

    pub fn request(&mut self, method: &str, url: &str, extra: &[(&str, &str)]) -> RawResponse {
        self.cseq += 1;
        let mut req = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        if let Some(s) = &self.session {
            req.push_str(&format!("Session: {s}\r\n"));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send_raw(req.as_bytes());
        let resp = self.read_response();
        if let Some(s) = resp.header("Session") {
            self.session = Some(s.split(';').next().unwrap().to_string());
        }
        resp
    }

    /// DESCRIBE + SETUP (TCP interleaved); returns the SETUP response.
    pub fn setup_tcp(&mut self, url: &str) -> RawResponse {
        let d = self.request("DESCRIBE", url, &[("Accept", "application/sdp")]);
        if d.status != 200 {
            return d;
        }
        self.request(
            "SETUP",
            &format!("{url}/trackID=0"),
            &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
        )
    }
}

/// Readers attached to a bus (each running encoder is one).
pub fn bus_readers(bus: &str) -> usize {
    framebus::stat(bus, None).map_or(0, |s| s.readers.len())
}

/// Polls `cond` every 100 ms for up to `limit`; returns its last value.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An ffmpeg decoding in the background (killed and reaped on drop).
pub fn ffmpeg_background(url: &str, transport: &str, frames: u32) -> ChildGuard {
    ChildGuard(
        Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-rtsp_transport",
                transport,
                "-i",
                url,
                "-frames:v",
                &frames.to_string(),
                "-f",
                "framemd5",
                "-",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ffmpeg"),
    )
}

/// Frames counted in an ffmpeg framemd5 output.
pub fn framemd5_count(out: &Output) -> u32 {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count() as u32
}
