//! `framebus-mjpeg` against real clients: curl, ffmpeg/ffprobe, GStreamer,
//! headless Chromium. Each test feeds its own bus (unique name) from a
//! `framebus::Writer` thread and runs its own server on an OS-chosen port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use framebus::timecode::{self, TimeCode};
use framebus::{Fps, FrameMeta, FrameSpec, PixelFormat, Writer, WriterOptions};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!(
        "mjt{}-{tag}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(tag));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Publishes a moving NV12 pattern with the time code at `fps` until dropped.
struct Feeder {
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Feeder {
    fn start(bus: &str, w: u32, h: u32, fps: u32) -> Feeder {
        let spec = FrameSpec::new(PixelFormat::Nv12, w, h, Fps::new(fps)).unwrap();
        let mut writer = Writer::create(bus, spec, WriterOptions::default()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let published = Arc::new(AtomicU64::new(0));
        let p2 = published.clone();
        let thread = std::thread::spawn(move || {
            let interval = Duration::from_secs_f64(1.0 / fps as f64);
            let t0 = Instant::now();
            let mut n: u32 = 0;
            let spec = *writer.spec();
            while !s2.load(Ordering::SeqCst) {
                let due = t0 + interval * n;
                if let Some(d) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
                let meta = FrameMeta::now();
                if let Ok(mut loan) = writer.loan() {
                    {
                        let mut planes = loan.planes_mut();
                        let p = spec.planes();
                        // Luma: diagonal-ish stripes moving 8 px per frame.
                        for (y, row) in planes[0].chunks_mut(p[0].stride as usize).enumerate() {
                            row.fill(((y as u32 + n * 8) % 200 + 30) as u8);
                        }
                        planes[1].fill(128);
                    }
                    let tc = TimeCode {
                        realtime_us: meta.realtime_ns / 1000,
                        counter: n,
                    };
                    let _ = timecode::paint(&spec, &mut loan, tc);
                    loan.publish(meta);
                    p2.fetch_add(1, Ordering::SeqCst);
                }
                n += 1;
            }
        });
        Feeder {
            stop,
            published,
            thread: Some(thread),
        }
    }

    /// Run `f` and return the bus's actual frame rate meanwhile.
    fn measure<T>(&self, f: impl FnOnce() -> T) -> (T, f64) {
        let (n0, t0) = (self.published.load(Ordering::SeqCst), Instant::now());
        let r = f();
        let n = self.published.load(Ordering::SeqCst) - n0;
        (r, n as f64 / t0.elapsed().as_secs_f64())
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Kills and reaps a child process when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `framebus-mjpeg`.
struct Server {
    _proc: Proc,
    base: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_framebus-mjpeg"))
            .args(["--listen", "127.0.0.1:0", "--no-discover"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn framebus-mjpeg");
        let stdout = child.stdout.take().unwrap();
        let proc = Proc(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server printed its address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Server { _proc: proc, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }
}

/// Run `cmd` to completion, killing it after `secs`.
fn run(cmd: &mut Command, secs: u64) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY-free: kill by the pid we spawned; the waiter thread reaps it.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let out = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
            panic!(
                "{cmd:?} timed out after {secs} s; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// `curl` a URL: (status, headers, body).
fn curl(url: &str, extra: &[&str]) -> (u16, String, Vec<u8>) {
    let dir = temp_dir("curl");
    let (hf, bf) = (dir.join("h"), dir.join("b"));
    let out = run(
        Command::new("curl")
            .args(["-s", "--max-time", "20", "-D"])
            .arg(&hf)
            .arg("-o")
            .arg(&bf)
            .args(["-w", "%{http_code}"])
            .args(extra)
            .arg(url),
        30,
    );
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let headers = std::fs::read_to_string(&hf).unwrap_or_default();
    let body = std::fs::read(&bf).unwrap_or_default();
    let _ = std::fs::remove_dir_all(dir);
    (status, headers, body)
}

/// Read a multipart stream with curl for `secs` seconds.
fn curl_stream(url: &str, secs: u32) -> Vec<u8> {
    let out = run(
        Command::new("curl")
            .args(["-s", "-N", "--max-time", &secs.to_string()])
            .arg(url),
        secs as u64 + 20,
    );
    out.stdout
}

#[derive(Debug)]
struct Part {
    seq: u64,
    ts: f64,
    jpeg: Vec<u8>,
}

/// Split a multipart/x-mixed-replace body into parts (last partial one dropped).
fn parts(body: &[u8]) -> Vec<Part> {
    let mut out = Vec::new();
    let mut i = 0;
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from.min(hay.len())..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    while let Some(b) = find(body, b"--framebusframe\r\n", i) {
        let Some(he) = find(body, b"\r\n\r\n", b) else {
            break;
        };
        let head = String::from_utf8_lossy(&body[b..he]).to_string();
        let get = |k: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
        };
        let len: usize = get("Content-Length:")
            .expect("Content-Length per part")
            .parse()
            .unwrap();
        let start = he + 4;
        if start + len > body.len() {
            break;
        }
        out.push(Part {
            seq: get("X-Frame:").unwrap().parse().unwrap(),
            ts: get("X-Timestamp:").unwrap().parse().unwrap(),
            jpeg: body[start..start + len].to_vec(),
        });
        i = start + len;
    }
    out
}

/// Width and height from a JPEG's SOF marker.
fn jpeg_size(j: &[u8]) -> Option<(u32, u32)> {
    if j.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    while i + 9 < j.len() {
        if j[i] != 0xFF {
            return None;
        }
        let m = j[i + 1];
        let len = u16::from_be_bytes([j[i + 2], j[i + 3]]) as usize;
        if (0xC0..=0xC3).contains(&m) {
            let h = u16::from_be_bytes([j[i + 5], j[i + 6]]) as u32;
            let w = u16::from_be_bytes([j[i + 7], j[i + 8]]) as u32;
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}

/// The stream's output rate by capture time: frames the encoder produced
/// (from the part sequence numbers, so frames this viewer skipped count)
/// over the capture-time span.
fn capture_fps(p: &[Part]) -> f64 {
    let span = p.last().unwrap().ts - p.first().unwrap().ts;
    (p.last().unwrap().seq - p.first().unwrap().seq) as f64 / span
}

/// Assert `fps` matches the profile rate: at most 10 % above it (the rate
/// limiter must never exceed it), and at least 80 % of the profile rate or
/// of the bus's actual rate if that was lower. The lower bound is wider than
/// 10 % because on a loaded 2-core machine (load average 10+ while other
/// crates build) the encoder thread itself gets starved and skips bus
/// frames: measured 25.9 fps there versus 30.0 on an idle machine.
fn assert_fps(fps: f64, profile: f64, bus_actual: f64, what: &str) {
    let want = profile.min(bus_actual);
    assert!(
        fps <= profile * 1.1 && fps >= want * 0.8,
        "{what}: {fps:.2} fps, expected {profile} (bus ran at {bus_actual:.2})"
    );
}

fn streams_json(s: &Server) -> serde_json::Value {
    let (st, _, body) = curl(&s.url("/api/v1/streams"), &[]);
    assert_eq!(st, 200);
    serde_json::from_slice(&body).unwrap()
}

fn stream_entry(s: &Server, bus: &str, profile: &str) -> serde_json::Value {
    let j = streams_json(s);
    j["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["bus"] == bus && e["profile"] == profile)
        .cloned()
        .unwrap_or_else(|| panic!("{bus}/{profile} not listed in {j}"))
}

/// Open a viewer over a raw socket that sends the request and never reads.
fn stalled_viewer(s: &Server, path: &str) -> TcpStream {
    let mut t = TcpStream::connect(s.addr()).unwrap();
    // Tiny receive buffer so the server side fills up quickly.
    write!(t, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    t
}

#[test]
fn curl_and_ffmpeg_read_medium_and_low() {
    let bus = unique("med");
    let f = Feeder::start(&bus, 1280, 720, 30);
    let s = Server::start(&["--bus", &bus]);

    // curl: every part has Content-Length, is a JPEG of the profile size,
    // and frames follow the profile rate by capture time.
    let (body, bus_fps) = f.measure(|| curl_stream(&s.url(&format!("/{bus}/medium.mjpg")), 4));
    let p = parts(&body);
    assert!(p.len() >= 30, "only {} parts in 4 s", p.len());
    for part in &p {
        assert_eq!(jpeg_size(&part.jpeg), Some((1280, 720)));
    }
    assert_fps(capture_fps(&p), 30.0, bus_fps, "medium");

    let (body, bus_fps) = f.measure(|| curl_stream(&s.url(&format!("/{bus}/low.mjpg")), 4));
    let p = parts(&body);
    assert!(p.len() >= 15, "only {} parts in 4 s", p.len());
    assert!(p.iter().all(|x| jpeg_size(&x.jpeg) == Some((640, 480))));
    assert_fps(capture_fps(&p), 15.0, bus_fps, "low");

    // ffmpeg decodes the stream; showinfo reports the frame size.
    let out = run(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-i"])
            .arg(s.url(&format!("/{bus}/medium.mjpg")))
            .args(["-frames:v", "20", "-vf", "showinfo", "-f", "null", "-"]),
        60,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed: {err}");
    assert!(err.matches("s:1280x720").count() >= 20, "{err}");

    // ffprobe sees an MJPEG stream of the profile size.
    let out = run(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args(["stream=codec_name,width,height", "-of", "csv=p=0"])
            .arg(s.url(&format!("/{bus}/low.mjpg"))),
        60,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "mjpeg,640,480");
}

#[test]
fn snapshot_and_errors() {
    let bus = unique("snap");
    let _f = Feeder::start(&bus, 640, 360, 30);
    let s = Server::start(&["--bus", &bus, "--profile", "tiny=320x180@5:q60"]);

    let (st, h, body) = curl(&s.url(&format!("/{bus}/snapshot.jpg")), &[]);
    assert_eq!(st, 200, "{h}");
    assert!(h.to_ascii_lowercase().contains("content-type: image/jpeg"));
    assert_eq!(jpeg_size(&body), Some((640, 360)));
    let dir = temp_dir("snapfile");
    let file = dir.join("s.jpg");
    std::fs::write(&file, &body).unwrap();
    let out = run(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,width,height",
            ])
            .args(["-of", "csv=p=0"])
            .arg(&file),
        30,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "mjpeg,640,360");
    let _ = std::fs::remove_dir_all(dir);

    let (st, _, body) = curl(&s.url(&format!("/{bus}/snapshot.jpg?profile=tiny")), &[]);
    assert_eq!(st, 200);
    assert_eq!(jpeg_size(&body), Some((320, 180)));

    // 404s carry JSON.
    for path in [
        "/nosuchbus/medium.mjpg".to_string(),
        format!("/{bus}/nosuchprofile.mjpg"),
        format!("/{bus}/snapshot.jpg?profile=nosuch"),
        format!("/{bus}/other.txt"),
        "/nowhere".to_string(),
    ] {
        let (st, h, body) = curl(&s.url(&path), &[]);
        assert_eq!(st, 404, "{path}");
        assert!(
            h.to_ascii_lowercase().contains("application/json"),
            "{path}: {h}"
        );
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(j["error"].is_string(), "{path}: {j}");
    }
    for path in [
        format!("/{bus}/snapshot.jpg?profile="),
        format!("/{bus}/snapshot.jpg?size=big"),
        format!("/{bus}/medium.mjpg?x=1"),
    ] {
        let (st, _, body) = curl(&s.url(&path), &[]);
        assert_eq!(st, 400, "{path}");
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(j["error"].is_string());
    }

    // Metrics and health.
    let (st, h, body) = curl(&s.url("/metrics"), &[]);
    assert_eq!(st, 200);
    assert!(h.contains("openmetrics-text") || h.contains("text/plain"));
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("framebus_mjpeg_frames_out_total{"), "{text}");
    let (st, _, _) = curl(&s.url("/healthz"), &[]);
    assert_eq!(st, 200);
}

#[test]
fn gstreamer_decodes_stream() {
    let bus = unique("gst");
    let _f = Feeder::start(&bus, 640, 480, 30);
    let s = Server::start(&["--bus", &bus]);
    let out = run(
        Command::new("gst-launch-1.0")
            .arg("-q")
            .arg("souphttpsrc")
            .arg(format!("location={}", s.url(&format!("/{bus}/low.mjpg"))))
            .args([
                "!",
                "multipartdemux",
                "!",
                "jpegdec",
                "!",
                "video/x-raw,width=640,height=480",
            ])
            .args(["!", "fakesink", "num-buffers=20"]),
        90,
    );
    assert!(
        out.status.success(),
        "gst-launch failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn viewer_limit_and_stalled_viewer() {
    let bus = unique("lim");
    let f = Feeder::start(&bus, 640, 480, 30);
    let s = Server::start(&[
        "--bus",
        &bus,
        "--max-viewers",
        "2",
        "--profile",
        "v=320x240@30",
    ]);
    let path = format!("/{bus}/v.mjpg");

    // Viewer 1 stalls (never reads); viewer 2 reads normally.
    let _stalled = stalled_viewer(&s, &path);
    let mut waited = 0;
    while stream_entry(&s, &bus, "v")["viewers"] != 1 && waited < 100 {
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    }
    let url = s.url(&path);
    let n0 = (f.published.load(Ordering::SeqCst), Instant::now());
    let good = std::thread::spawn(move || curl_stream(&url, 5));
    std::thread::sleep(Duration::from_millis(1500));

    // A third viewer is refused with 503 and Retry-After.
    let (st, h, body) = curl(&s.url(&path), &["--max-time", "5"]);
    assert_eq!(st, 503, "{h}");
    assert!(h.to_ascii_lowercase().contains("retry-after:"), "{h}");
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(j["error"].as_str().unwrap().contains("maximum"));
    assert_eq!(stream_entry(&s, &bus, "v")["viewers"], 2);

    // The reading viewer got the full rate despite the stalled one, and
    // skipped (almost) nothing.
    let p = parts(&good.join().unwrap());
    let bus_fps = (f.published.load(Ordering::SeqCst) - n0.0) as f64 / n0.1.elapsed().as_secs_f64();
    assert!(
        p.len() >= 60,
        "reading viewer got {} frames in 5 s",
        p.len()
    );
    assert_fps(capture_fps(&p), 30.0, bus_fps, "reading viewer");
    // Generous: an overloaded machine may starve curl now and then, but a
    // stalled peer must not make it skip systematically.
    let skipped = p.last().unwrap().seq - p.first().unwrap().seq + 1 - p.len() as u64;
    assert!(
        skipped * 4 <= p.len() as u64,
        "skipped {skipped} of {}",
        p.len()
    );
}

#[test]
fn grace_start_stop() {
    let bus = unique("grace");
    let _f = Feeder::start(&bus, 640, 480, 30);
    let s = Server::start(&["--bus", &bus, "--grace", "1"]);
    assert_eq!(stream_entry(&s, &bus, "low")["state"], "idle");

    // Watching starts the encoder; it stops about a grace time after.
    let url = s.url(&format!("/{bus}/low.mjpg"));
    let h = std::thread::spawn(move || curl_stream(&url, 2));
    std::thread::sleep(Duration::from_millis(1000));
    let e = stream_entry(&s, &bus, "low");
    assert_eq!(e["state"], "running", "{e}");
    assert_eq!(e["viewers"], 1, "{e}");
    assert!(!parts(&h.join().unwrap()).is_empty());
    let t0 = Instant::now();
    while stream_entry(&s, &bus, "low")["state"] != "idle" {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "encoder never stopped"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // start is idempotent; stop stops.
    let start = format!("/api/v1/streams/{bus}/low/start");
    let (st, _, body) = curl(&s.url(&start), &["-X", "POST"]);
    assert_eq!(st, 200);
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["already_running"], false, "{j}");
    std::thread::sleep(Duration::from_millis(1500));
    let (st, _, body) = curl(&s.url(&start), &["-X", "POST"]);
    assert_eq!(st, 200);
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["already_running"], true, "{j}");
    assert!(j["uptime_s"].as_f64().unwrap() >= 1.0, "{j}");
    // Pinned: still running past the grace time.
    assert_eq!(stream_entry(&s, &bus, "low")["state"], "running");
    let (st, _, _) = curl(
        &s.url(&format!("/api/v1/streams/{bus}/low/stop")),
        &["-X", "POST"],
    );
    assert_eq!(st, 200);
    assert_eq!(stream_entry(&s, &bus, "low")["state"], "idle");
    let (st, _, _) = curl(&s.url("/api/v1/streams/nobus/low/start"), &["-X", "POST"]);
    assert_eq!(st, 404);
}

#[test]
fn producer_restart_pauses_and_resumes() {
    let bus = unique("restart");
    let f = Feeder::start(&bus, 640, 480, 30);
    let s = Server::start(&["--bus", &bus]);
    let mut t = TcpStream::connect(s.addr()).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(t, "GET /{bus}/low.mjpg HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let count_parts = |t: &mut TcpStream, want: usize| {
        let mut buf = vec![0u8; 1 << 16];
        let mut acc = Vec::new();
        let t0 = Instant::now();
        while parts(&acc).len() < want && t0.elapsed() < Duration::from_secs(20) {
            let n = t.read(&mut buf).unwrap();
            assert!(n > 0, "stream closed");
            acc.extend_from_slice(&buf[..n]);
        }
        parts(&acc).len()
    };
    assert!(count_parts(&mut t, 5) >= 5);
    drop(f);
    let t0 = Instant::now();
    loop {
        let (st, _, body) = curl(&s.url("/healthz"), &[]);
        if st == 503 {
            assert!(String::from_utf8_lossy(&body).contains(&bus));
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "healthz stayed {st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _f2 = Feeder::start(&bus, 640, 480, 30);
    // The same connection carries frames of the new producer.
    assert!(count_parts(&mut t, 5) >= 5);
    let t0 = Instant::now();
    while curl(&s.url("/healthz"), &[]).0 != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "healthz never recovered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn auth_basic_and_bearer() {
    let bus = unique("auth");
    let _f = Feeder::start(&bus, 640, 480, 30);
    let s = Server::start(&["--bus", &bus, "--auth", "me:secret", "--token", "tok123"]);
    let (st, h, _) = curl(&s.url("/api/v1/streams"), &[]);
    assert_eq!(st, 401);
    assert!(h.to_ascii_lowercase().contains("www-authenticate: basic"));
    assert_eq!(curl(&s.url("/api/v1/streams"), &["-u", "me:wrong"]).0, 401);
    assert_eq!(curl(&s.url("/api/v1/streams"), &["-u", "me:secret"]).0, 200);
    let bearer = ["-H", "Authorization: Bearer tok123"];
    assert_eq!(
        curl(&s.url(&format!("/{bus}/snapshot.jpg")), &bearer).0,
        200
    );
    assert_eq!(curl(&s.url("/healthz"), &[]).0, 200);
}

/// Take a screenshot of `url` with headless Chromium.
fn screenshot(url: &str, out: &Path) -> Vec<u8> {
    let profile = temp_dir("chromium");
    let res = run(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1280,900",
                "--timeout=3000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--screenshot={}", out.display()))
            .arg(url),
        90,
    );
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::read(out).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}); chromium: {}",
            String::from_utf8_lossy(&res.stderr)
        )
    })
}

#[test]
fn chromium_index_page_moves() {
    let bus = unique("web");
    let _f = Feeder::start(&bus, 640, 480, 30);
    let s = Server::start(&["--bus", &bus, "--profile", "medium=640x360@30"]);
    let (st, _, body) = curl(&s.url("/"), &[]);
    assert_eq!(st, 200);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains(&format!("/{bus}/medium.mjpg")));
    let dir = temp_dir("shots");
    let a = screenshot(&s.url("/"), &dir.join("a.png"));
    std::thread::sleep(Duration::from_secs(1));
    let b = screenshot(&s.url("/"), &dir.join("b.png"));
    assert!(a.starts_with(b"\x89PNG") && b.starts_with(b"\x89PNG"));
    assert_ne!(a, b, "two screenshots a second apart are identical");
    if std::env::var_os("FRAMEBUS_TEST_KEEP").is_some() {
        eprintln!("screenshots kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn mjpeg_bus_passes_through() {
    let bus = unique("pass");
    // One JPEG made here; the server must serve exactly these bytes.
    let (w, h) = (320u32, 240u32);
    let mut yuv = vec![128u8; (w * h * 3 / 2) as usize];
    for (i, b) in yuv[..(w * h) as usize].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let image = turbojpeg::YuvImage {
        pixels: yuv.as_slice(),
        width: w as usize,
        align: 1,
        height: h as usize,
        subsamp: turbojpeg::Subsamp::Sub2x2,
    };
    let jpeg = turbojpeg::compress_yuv(image, 75).unwrap().to_vec();
    let spec = FrameSpec::new(PixelFormat::Mjpeg, w, h, Fps::new(30)).unwrap();
    let opts = WriterOptions {
        slot_capacity: Some(1 << 20),
        ..WriterOptions::default()
    };
    let mut writer = Writer::create(&bus, spec, opts).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, j2) = (stop.clone(), jpeg.clone());
    let feeder = std::thread::spawn(move || {
        while !s2.load(Ordering::SeqCst) {
            let _ = writer.publish_from(&j2, FrameMeta::now());
            std::thread::sleep(Duration::from_millis(33));
        }
    });
    let s = Server::start(&["--bus", &bus]);
    let p = parts(&curl_stream(&s.url(&format!("/{bus}/native.mjpg")), 2));
    stop.store(true, Ordering::SeqCst);
    feeder.join().unwrap();
    assert!(!p.is_empty());
    assert!(
        p.iter().all(|x| x.jpeg == jpeg),
        "bytes differ from the bus's JPEG"
    );
}
