//! `framebus-mjpeg` against real clients: curl, ffmpeg/ffprobe, GStreamer,
//! headless Chromium. Each test feeds its own bus (unique name) from a
//! `framebus::Writer` thread and runs its own server on an OS-chosen port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use framebus::{Fps, FrameMeta, FrameSpec, PixelFormat, Writer, WriterOptions};
use framebus_test_support::{
    listening, run_to_end, unique_name as unique, ChildGuard, Feeder, TempDir,
};

/// A fresh directory (`TempDir` kept: each test removes it itself).
fn temp_dir(tag: &str) -> PathBuf {
    TempDir::new(tag).into_path()
}

/// A running `framebus-mjpeg`.
struct Server {
    proc: ChildGuard,
    base: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        Server::launch(args, &[], false)
    }

    /// Start with extra environment variables; `discover` leaves out
    /// `--no-discover`.
    fn launch(args: &[&str], env: &[(&str, &str)], discover: bool) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_framebus-mjpeg"));
        cmd.args(["--listen", "127.0.0.1:0"]);
        if !discover {
            cmd.arg("--no-discover");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit());
        let (proc, l) = listening::spawn(&mut cmd, 1);
        Server {
            proc,
            base: l[0].base().to_string(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Wait up to `secs` for the server to exit by itself.
    fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        self.proc.exits_within(Duration::from_secs(secs))
    }
}

/// `curl` a URL: (status, headers, body).
fn curl(url: &str, extra: &[&str]) -> (u16, String, Vec<u8>) {
    let dir = temp_dir("curl");
    let (hf, bf) = (dir.join("h"), dir.join("b"));
    let out = run_to_end(
        Command::new("curl")
            .args(["-s", "--max-time", "20", "-D"])
            .arg(&hf)
            .arg("-o")
            .arg(&bf)
            .args(["-w", "%{http_code}"])
            .args(extra)
            .arg(url),
        Duration::from_secs(30),
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
    let out = run_to_end(
        Command::new("curl")
            .args(["-s", "-N", "--max-time", &secs.to_string()])
            .arg(url),
        Duration::from_secs(secs as u64 + 20),
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
    let out = run_to_end(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-i"])
            .arg(s.url(&format!("/{bus}/medium.mjpg")))
            .args(["-frames:v", "20", "-vf", "showinfo", "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed: {err}");
    assert!(err.matches("s:1280x720").count() >= 20, "{err}");

    // ffprobe sees an MJPEG stream of the profile size.
    let out = run_to_end(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args(["stream=codec_name,width,height", "-of", "csv=p=0"])
            .arg(s.url(&format!("/{bus}/low.mjpg"))),
        Duration::from_secs(60),
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
    let out = run_to_end(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,width,height",
            ])
            .args(["-of", "csv=p=0"])
            .arg(&file),
        Duration::from_secs(30),
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
    let out = run_to_end(
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
        Duration::from_secs(90),
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
    let n0 = (f.published(), Instant::now());
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
    let bus_fps = (f.published() - n0.0) as f64 / n0.1.elapsed().as_secs_f64();
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
    let res = run_to_end(
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
        Duration::from_secs(90),
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
    let (st, _, body) = curl(&s.url("/mjpeg"), &[]);
    assert_eq!(st, 200);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains(&format!("/{bus}/medium.mjpg")));
    let dir = temp_dir("shots");
    let a = screenshot(&s.url("/mjpeg"), &dir.join("a.png"));
    std::thread::sleep(Duration::from_secs(1));
    let b = screenshot(&s.url("/mjpeg"), &dir.join("b.png"));
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

/// Read from `t` until EOF (or `secs`); true when the server closed it.
fn reads_to_eof(t: &mut TcpStream, secs: u64) -> bool {
    t.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        match t.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn sigterm_with_viewers_exits_zero() {
    let bus = unique("term");
    let _f = Feeder::start(&bus, 640, 480, 30);
    let mut s = Server::start(&["--bus", &bus]);
    // Two reading viewers on raw sockets and a stalled one.
    let mut readers: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut t = TcpStream::connect(s.addr()).unwrap();
            write!(t, "GET /{bus}/low.mjpg HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            t
        })
        .collect();
    let _stalled = stalled_viewer(&s, &format!("/{bus}/medium.mjpg"));
    let t0 = Instant::now();
    while !(stream_entry(&s, &bus, "low")["viewers"] == 2
        && stream_entry(&s, &bus, "medium")["viewers"] == 1)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "viewers never joined"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Generous watchdog (not a timing assertion): without graceful
    // shutdown of the streams the process never exits by itself.
    let st = s
        .wait_exit(20)
        .expect("framebus-mjpeg still running 20 s after SIGTERM");
    assert!(st.success(), "exit status {st:?}");
    for t in &mut readers {
        assert!(reads_to_eof(t, 10), "viewer's stream not closed");
    }
}

/// The value of the first sample line starting with `series ` in `text`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[test]
fn metrics_cover_capture_and_bytes_sent() {
    let bus = unique("metrics");
    let _f = Feeder::start(&bus, 640, 480, 30);
    let s = Server::start(&["--bus", &bus]);
    let url = s.url(&format!("/{bus}/low.mjpg"));
    let u2 = url.clone();
    let a = std::thread::spawn(move || curl_stream(&u2, 3));
    let b = curl_stream(&url, 3);
    let a = a.join().unwrap();
    assert!(!parts(&a).is_empty() && !parts(&b).is_empty());

    let (st, _, body) = curl(&s.url("/metrics"), &[]);
    assert_eq!(st, 200);
    let text = String::from_utf8(body).unwrap();
    let b_ = format!("{{bus=\"{bus}\"}}");
    let bp = format!("{{bus=\"{bus}\",profile=\"low\"}}");
    // Capture series of the bus, from its header.
    assert!(
        metric(&text, &format!("framebus_bus_published_total{b_}")).unwrap() > 30.0,
        "{text}"
    );
    assert!(
        metric(&text, &format!("framebus_bus_captured_total{b_}")).unwrap() > 30.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("framebus_bus_up{b_}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("framebus_bus_nominal_fps{b_}")),
        Some(30.0),
        "{text}"
    );
    assert!(
        metric(&text, &format!("framebus_bus_fps{b_}")).unwrap() > 0.0,
        "{text}"
    );
    for m in [
        "framebus_bus_dropped_all_held_total",
        "framebus_bus_source_dropped_total",
        "framebus_bus_source_restarts_total",
        "framebus_bus_watchdog_fires_total",
        "framebus_bus_readers",
    ] {
        assert!(
            metric(&text, &format!("{m}{b_}")).is_some(),
            "{m} missing: {text}"
        );
    }
    // Bytes sent count every viewer: at least what the two curls received
    // (body bytes; the server also sent headers and chunk framing), and
    // more than the bytes encoded once.
    let sent = metric(&text, &format!("framebus_mjpeg_bytes_sent_total{bp}")).unwrap();
    let encoded = metric(&text, &format!("framebus_mjpeg_bytes_out_total{bp}")).unwrap();
    let received = (a.len() + b.len()) as f64;
    assert!(sent >= received, "sent {sent} < received {received}");
    assert!(sent > encoded * 1.5, "sent {sent}, encoded {encoded}");
}

#[test]
fn auth_file_and_environment() {
    let bus = unique("authenv");
    let _f = Feeder::start(&bus, 640, 480, 30);
    let dir = temp_dir("authfile");
    let file = dir.join("mjpeg.auth");
    std::fs::write(&file, "me:filesecret\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let path = file.to_str().unwrap();
    let api = "/api/v1/streams";

    let s = Server::start(&["--bus", &bus, "--auth-file", path]);
    assert_eq!(curl(&s.url(api), &[]).0, 401);
    assert_eq!(curl(&s.url(api), &["-u", "me:wrong"]).0, 401);
    assert_eq!(curl(&s.url(api), &["-u", "me:filesecret"]).0, 200);
    drop(s);

    let env = [
        ("FRAMEBUS_MJPEG_AUTH", "me:envsecret"),
        ("FRAMEBUS_MJPEG_TOKEN", "envtoken"),
    ];
    let s = Server::launch(&["--bus", &bus], &env, false);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", s.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("secret"));
    assert_eq!(curl(&s.url(api), &[]).0, 401);
    assert_eq!(curl(&s.url(api), &["-u", "me:envsecret"]).0, 200);
    assert_eq!(
        curl(&s.url(api), &["-H", "Authorization: Bearer envtoken"]).0,
        200
    );
    assert_eq!(
        curl(&s.url(api), &["-H", "Authorization: Bearer nope"]).0,
        401
    );
    assert_eq!(curl(&s.url("/healthz"), &[]).0, 200);
    drop(s);

    // --auth still works and wins over the environment.
    let s = Server::launch(&["--bus", &bus, "--auth", "me:flag"], &env, false);
    assert_eq!(curl(&s.url(api), &["-u", "me:flag"]).0, 200);
    assert_eq!(curl(&s.url(api), &["-u", "me:envsecret"]).0, 401);
    drop(s);

    // A file without ':' is refused at start.
    std::fs::write(&file, "nocolon\n").unwrap();
    let out = run_to_end(
        Command::new(env!("CARGO_BIN_EXE_framebus-mjpeg")).args([
            "--listen",
            "127.0.0.1:0",
            "--no-discover",
            "--auth-file",
            path,
        ]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("USER:PASS"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn discovered_bus_that_disappears_is_forgotten() {
    let bus = unique("gone");
    let shm = temp_dir("shm");
    let shm_s = shm.to_str().unwrap();
    let f = Feeder::start_in(&bus, 320, 240, 30, Some(&shm));
    let s = Server::launch(&["--shm-dir", shm_s, "--grace", "1"], &[], true);
    // Discovered, served, and it has streams now.
    let (st, _, _) = curl(&s.url(&format!("/{bus}/snapshot.jpg")), &[]);
    assert_eq!(st, 200);
    assert_eq!(stream_entry(&s, &bus, "native")["bus"], bus.as_str());
    drop(f); // the producer exits: the segment is removed
    let listed = |s: &Server| {
        streams_json(s)["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["bus"] == bus.as_str())
    };
    let t0 = Instant::now();
    while listed(&s) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "bus still listed long after it went away"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(curl(&s.url(&format!("/{bus}/snapshot.jpg")), &[]).0, 404);
    let (_, _, index) = curl(&s.url("/mjpeg"), &[]);
    assert!(!String::from_utf8_lossy(&index).contains(&bus));
    // It comes back when a producer does.
    let _f2 = Feeder::start_in(&bus, 320, 240, 30, Some(&shm));
    let t0 = Instant::now();
    while !listed(&s) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "bus never listed again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(_f2);
    let _ = std::fs::remove_dir_all(shm);
}

#[test]
fn mjpeg_bus_is_rescaled() {
    let bus = unique("rescale");
    // A 4:2:2 JPEG, as MJPEG cameras send: horizontal luma ramp.
    let (w, h) = (320u32, 240u32);
    let mut yuv = vec![128u8; (w * h * 2) as usize];
    for (i, b) in yuv[..(w * h) as usize].iter_mut().enumerate() {
        *b = (16 + (i as u32 % w) * 200 / w) as u8;
    }
    let image = turbojpeg::YuvImage {
        pixels: yuv.as_slice(),
        width: w as usize,
        align: 1,
        height: h as usize,
        subsamp: turbojpeg::Subsamp::Sub2x1,
    };
    let jpeg = turbojpeg::compress_yuv(image, 90).unwrap().to_vec();
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
    struct StopOnDrop(Arc<AtomicBool>, Option<JoinHandle<()>>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
            if let Some(t) = self.1.take() {
                let _ = t.join();
            }
        }
    }
    let _feeder = StopOnDrop(stop, Some(feeder));
    let s = Server::start(&["--bus", &bus, "--profile", "small=160x120@15"]);
    for (profile, size) in [("low", (640, 480)), ("small", (160, 120))] {
        let p = parts(&curl_stream(&s.url(&format!("/{bus}/{profile}.mjpg")), 2));
        assert!(!p.is_empty(), "{profile}: no parts");
        for part in &p {
            assert_eq!(jpeg_size(&part.jpeg), Some(size), "{profile}");
        }
        // The picture survived: left dark, right bright, like the source.
        let img = turbojpeg::decompress(&p[0].jpeg, turbojpeg::PixelFormat::GRAY).unwrap();
        let row = &img.pixels[(img.height / 2) * img.pitch..][..img.width];
        let (left, right) = (row[img.width / 10] as i32, row[img.width * 9 / 10] as i32);
        assert!(
            left < 60 && right > 170,
            "{profile}: left {left}, right {right}"
        );
    }
    // ffprobe reads the rescaled stream.
    let out = run_to_end(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args(["stream=codec_name,width,height", "-of", "csv=p=0"])
            .arg(s.url(&format!("/{bus}/low.mjpg"))),
        Duration::from_secs(60),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "mjpeg,640,480");
    let e = stream_entry(&s, &bus, "low");
    assert_eq!(e["width"], 640, "{e}");
}

/// A client that sends part of a request head and then nothing is dropped
/// after `--header-timeout`, an oversized head gets 431, and a viewer
/// streaming meanwhile (longer than the timeout) is not disturbed.
#[test]
fn slowloris_dropped_oversized_refused_viewer_unaffected() {
    let bus = unique("slow");
    let _f = Feeder::start(&bus, 320, 240, 30);
    let s = Server::start(&[
        "--bus",
        &bus,
        "--header-timeout",
        "1",
        "--profile",
        "v=160x120@30",
    ]);
    let url = s.url(&format!("/{bus}/v.mjpg"));
    let viewer = std::thread::spawn(move || curl_stream(&url, 6));

    let mut slow = TcpStream::connect(s.addr()).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Bounded wait (not a timing assertion): without a header timeout the
    // connection is kept forever.
    assert!(
        reads_to_eof(&mut slow, 30),
        "an unfinished request head was not dropped"
    );

    let big = format!("X-Big: {}", "a".repeat(20 * 1024));
    let (st, h, _) = curl(&s.url("/healthz"), &["-H", &big]);
    // 431, or (when the close resets the connection before curl read the
    // answer) no response at all.
    assert!(st == 431 || st == 0, "status {st}: {h}");
    let ok = format!("X-Big: {}", "a".repeat(8 * 1024));
    let (st, h, _) = curl(&s.url("/healthz"), &["-H", &ok]);
    assert_eq!(st, 200, "{h}");

    let p = parts(&viewer.join().unwrap());
    assert!(p.len() >= 30, "viewer got {} frames in 6 s", p.len());
}

/// Beyond `--max-connections` new connections are closed at once; once
/// connections close, new ones are served again.
#[test]
fn connection_cap() {
    let s = Server::start(&["--max-connections", "2", "--header-timeout", "60"]);
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(s.addr()).unwrap())
        .collect();
    let mut refused = false;
    for _ in 0..50 {
        let (st, _, _) = curl(&s.url("/healthz"), &["--max-time", "5"]);
        if st == 0 {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        refused,
        "a third connection was served with --max-connections 2"
    );
    drop(idle);
    let mut served = false;
    for _ in 0..50 {
        if curl(&s.url("/healthz"), &["--max-time", "5"]).0 == 200 {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served, "no connection served after the idle ones closed");
}

/// The console's document and page (docs/console.md): a bus served by hand
/// (no supervisor) is a camera with its MJPEG profiles and its state;
/// the page and its files are served from the binary; with no recorder,
/// the recorder's API answers 503 in the recorder's error shape.
#[test]
fn console_document_page_and_no_recorder() {
    let bus = unique("con");
    let shm = temp_dir("conshm");
    let _f = Feeder::start_in(&bus, 320, 240, 30, Some(&shm));
    let shm_s = shm.to_str().unwrap();
    let s = Server::launch(&["--shm-dir", shm_s, "--bus", &bus], &[], true);
    let (st, h, body) = curl(&s.url("/api/v1/console"), &[]);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        h.to_ascii_lowercase().contains("cache-control: no-store"),
        "{h}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["version"], 1);
    let cams = doc["cameras"].as_array().unwrap();
    let cam = cams
        .iter()
        .find(|c| c["bus"] == bus.as_str())
        .expect("bus listed");
    assert_eq!(cam["state"], "live", "{cam}");
    assert_eq!(cam["configured"], false);
    assert_eq!(
        (cam["width"].as_u64(), cam["height"].as_u64()),
        (Some(320), Some(240))
    );
    let profiles: Vec<&str> = cam["mjpeg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["profile"].as_str().unwrap())
        .collect();
    assert!(profiles.contains(&"low"), "{profiles:?}");
    assert_eq!(doc["outputs"]["recorder"], false);
    assert_eq!(doc["outputs"]["auth"], false);
    assert!(doc["supervisor"].is_null(), "{doc}");

    let (st, _, page) = curl(&s.url("/"), &[]);
    assert_eq!(st, 200);
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains("/_/console.js") && page.contains("/_/timecode.js"),
        "{page}"
    );
    for (path, kind) in [
        ("/_/console.js", "text/javascript"),
        ("/_/console.css", "text/css"),
        ("/_/timecode.js", "text/javascript"),
    ] {
        let (st, h, body) = curl(&s.url(path), &[]);
        assert_eq!(st, 200, "{path}");
        assert!(h.contains(kind), "{path}: {h}");
        assert!(body.len() > 1000, "{path}");
    }
    assert_eq!(curl(&s.url("/favicon.ico"), &[]).0, 204);
    let (st, _, body) = curl(&s.url("/api/v1/recordings"), &[]);
    assert_eq!(st, 503);
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["status"], 503);
    assert!(
        err["error"].as_str().unwrap().contains("no recorder"),
        "{err}"
    );
    drop(s);
    let _ = std::fs::remove_dir_all(&shm);
}

/// The recorder's API through the console's address: requests are
/// forwarded with the recorder's own credentials (the caller's are this
/// server's), errors come back as the recorder wrote them, and a stopped
/// recorder is a 502.
#[test]
fn console_forwards_the_recorder_api_with_its_credentials() {
    let dir = temp_dir("conrec");
    let mut rec_cmd = framebus_test_support::recorder::Recorder::command(&dir, None, &[]);
    rec_cmd.env("FRAMEBUS_RECORDER_AUTH", "rec:r3c");
    let rec = framebus_test_support::recorder::Recorder::spawn(&mut rec_cmd, &dir);
    let rec_url = rec.base().to_string();
    let s = Server::launch(
        &["--recorder-url", &rec_url],
        &[
            ("FRAMEBUS_MJPEG_AUTH", "web:w3b"),
            ("FRAMEBUS_RECORDER_AUTH", "rec:r3c"),
        ],
        false,
    );
    // This server's credentials, not the recorder's.
    assert_eq!(curl(&s.url("/api/v1/recordings"), &[]).0, 401);
    assert_eq!(
        curl(&s.url("/api/v1/recordings"), &["-u", "rec:r3c"]).0,
        401
    );
    let (st, _, body) = curl(&s.url("/api/v1/recordings"), &["-u", "web:w3b"]);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(list["recordings"].is_array(), "{list}");
    let (st, _, body) = curl(&s.url("/api/v1/recorder/streams"), &["-u", "web:w3b"]);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    // A POST with a body, answered by the recorder's own validation.
    let (st, _, body) = curl(
        &s.url("/api/v1/recordings"),
        &[
            "-u",
            "web:w3b",
            "-H",
            "Content-Type: application/json",
            "--data",
            "{\"stream\": \"no-such-cam/high\"}",
        ],
    );
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!((400..500).contains(&st), "{st} {err}");
    assert_eq!(err["status"], st, "{err}");
    // A preflight passes the auth layer unchecked: answered here, never
    // forwarded with the recorder's credentials (the recorder itself
    // would answer 405).
    let (st, h, _) = curl(&s.url("/api/v1/recordings"), &["-X", "OPTIONS"]);
    assert_eq!(st, 204, "{h}");
    let doc: serde_json::Value =
        serde_json::from_slice(&curl(&s.url("/api/v1/console"), &["-u", "web:w3b"]).2).unwrap();
    assert_eq!(doc["outputs"]["recorder"], true, "{doc}");
    assert_eq!(doc["outputs"]["auth"], true, "{doc}");
    // Without credentials of its own, a server would hand the recorder's
    // rights to anyone: it refuses.
    let open = Server::launch(
        &["--recorder-url", &rec_url],
        &[("FRAMEBUS_RECORDER_AUTH", "rec:r3c")],
        false,
    );
    let (st, _, body) = curl(&open.url("/api/v1/recordings"), &[]);
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&body));
    drop(open);
    drop(rec);
    let (st, _, body) = curl(&s.url("/api/v1/recordings"), &["-u", "web:w3b"]);
    assert_eq!(st, 502, "{}", String::from_utf8_lossy(&body));
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
