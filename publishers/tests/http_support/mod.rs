//! Helpers of the WebRTC (WHEP) and HLS tests: `framebus-mjpeg` with its media
//! port on a free UDP port, plain HTTP/1.1 over a `TcpStream` (status,
//! headers, body; no client crate), `/metrics` samples, and the Chrome
//! offer fixture.

#![allow(dead_code, unused_imports)]

pub mod m3u8;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use framebus::{Reader, ReaderOptions};

pub use framebus_test_support::browser::{self, Auth, WhepPlay};
pub use framebus_test_support::http::Resp;
use framebus_test_support::listening;
pub use framebus_test_support::{eventually, unique_name, ChildGuard, Encoder, Feeder};

/// A real offer of Chromium (recvonly video: VP8, VP9, H.264 in
/// packetization modes 0 and 1 of baseline, constrained baseline, main
/// and high 4:4:4, AV1, RED, ULPFEC), captured from `whep.mjs`.
pub const CHROME_OFFER: &str = include_str!("../fixtures/chrome_offer.sdp");

/// A running `framebus-mjpeg` with WebRTC, killed on drop.
pub struct Server {
    pub proc: ChildGuard,
    /// `127.0.0.1:PORT` of the HTTP port.
    pub addr: String,
    /// `127.0.0.1:PORT` of the UDP media port.
    pub udp: String,
}

impl Server {
    /// `--listen 127.0.0.1:0 --webrtc-udp 127.0.0.1:0 --no-discover` and
    /// `args`; waits for both listening lines.
    pub fn start(args: &[&str]) -> Server {
        Server::start_media("127.0.0.1:0", 1, args)
    }

    /// [`Server::start`] with the media port on `udp` (`0.0.0.0:0`: one
    /// socket per interface address, for a peer that does not use
    /// loopback, like Janus), waiting for the first `sockets` of them.
    pub fn start_media(udp: &str, sockets: usize, args: &[&str]) -> Server {
        let (proc, l) = listening::spawn(
            Command::new(env!("CARGO_BIN_EXE_framebus-mjpeg"))
                .args([
                    "--listen",
                    "127.0.0.1:0",
                    "--webrtc-udp",
                    udp,
                    "--no-discover",
                ])
                .args(args)
                .env("RUST_LOG", "warn")
                .env_remove("FRAMEBUS_MJPEG_AUTH")
                .env_remove("FRAMEBUS_MJPEG_TOKEN")
                .stderr(Stdio::inherit()),
            1 + sockets,
        );
        assert!(l[0].url.starts_with("http://"), "{l:?}");
        assert!(l[1].url.starts_with("udp://"), "{l:?}");
        Server {
            proc,
            addr: l[0].addr.clone(),
            udp: l[1].addr.clone(),
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The WHEP endpoint of `bus`/`profile`, without adaptation.
    pub fn whep(&self, bus: &str, profile: &str) -> String {
        self.url(&format!("/{bus}/{profile}/whep?adapt=0"))
    }

    /// One request.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(&self.addr, method, path, headers, body)
    }

    /// `POST` `body` as `application/sdp` to `path`.
    pub fn post_sdp(&self, path: &str, body: &[u8]) -> Resp {
        self.request("POST", path, &[("Content-Type", "application/sdp")], body)
    }

    /// `GET /metrics` (with `auth`, an `Authorization` value): its text.
    pub fn metrics(&self, auth: Option<&str>) -> String {
        let h: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = self.request("GET", "/metrics", &h, b"");
        assert_eq!(r.status, 200, "/metrics: {r:?}");
        r.text()
    }

    /// `framebus_webrtc_sessions` now.
    pub fn sessions(&self, auth: Option<&str>) -> Option<f64> {
        sample(&self.metrics(auth), "framebus_webrtc_sessions")
    }

    /// Waits (watchdog `limit`) until `framebus_webrtc_sessions` is `n`.
    pub fn wait_sessions(&self, n: u32, limit: Duration, auth: Option<&str>) {
        let mut last = None;
        let ok = eventually(limit, || {
            last = self.sessions(auth);
            last == Some(f64::from(n))
        });
        assert!(
            ok,
            "framebus_webrtc_sessions did not become {n} within {limit:?} (last {last:?})"
        );
    }

    /// `/healthz` answers 200.
    pub fn healthy(&self) -> bool {
        try_request(&self.addr, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
    }
}

/// One HTTP/1.1 request with `Connection: close`; panics on an I/O error.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// One HTTP/1.1 request with `Connection: close`. The body may be cut
/// short by a server that answers early: writing errors are ignored, the
/// answer is what counts.
pub fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    if raw.is_empty() {
        read?;
    }
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::other(format!(
            "unparsable answer: {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(300)])
        ))
    })
}

fn parse_response(raw: &[u8]) -> Option<Resp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let (line, rest) = head.split_once("\r\n").unwrap_or((&head, ""));
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = raw[end + 4..].to_vec();
    let chunked = rest
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Some(Resp {
        status,
        head: rest.to_string(),
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let Some(size) = size.filter(|&n| n > 0) else {
            break;
        };
        let start = eol + 2;
        let end = (start + size).min(b.len());
        out.extend_from_slice(&b[start..end]);
        b = &b[(end + 2).min(b.len())..];
    }
    out
}

/// The value of the unlabelled sample `name` (`name 3` or `name{} 3`)
/// in an OpenMetrics text page.
pub fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let v = rest
            .strip_prefix("{} ")
            .or_else(|| rest.strip_prefix(' '))?;
        v.trim().parse().ok()
    })
}

/// The value of sample `name` whose labels contain `label` (e.g.
/// `bus="x"`).
pub fn labelled(page: &str, name: &str, label: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (labels, v) = rest.split_once("} ")?;
        labels
            .split(',')
            .any(|p| p == label)
            .then(|| v.trim().parse().ok())?
    })
}

/// Asserts that viewer `v` of a WHEP run played `want` (W, H) cleanly
/// with at least `min_frames` decoded frames.
pub fn assert_played(v: &browser::Viewer, min_frames: u64, want: (u32, u32), what: &str) {
    assert_eq!(v.post_status, Some(201), "{what}: {v:#?}");
    assert_eq!(v.connection_state, "connected", "{what}: {v:#?}");
    let inb = v
        .stats
        .inbound
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no inbound video: {v:#?}"));
    assert_eq!(inb.codec.as_deref(), Some("video/H264"), "{what}: {inb:#?}");
    assert!(
        v.stats.frames_decoded() >= min_frames,
        "{what}: {} frames decoded, want >= {min_frames}: {v:#?}",
        v.stats.frames_decoded()
    );
    assert_eq!(
        (inb.frame_width, inb.frame_height),
        (Some(want.0), Some(want.1)),
        "{what}: {inb:#?}"
    );
}

/// Gaps at least this long between two access units of an encoded bus
/// are stalls of the source (test pattern thread, encoder) starved of CPU:
/// a browser shows any such gap as a freeze (Chromium counts one when two
/// frames are more than max(3 × mean interval, mean + 150 ms) apart).
pub const STALL: Duration = Duration::from_millis(150);

/// A reader of an encoded bus in the test process noting when each access
/// unit arrives, to tell freezes the source caused (a starved test pattern
/// or encoder on a loaded machine) from freezes the server caused.
pub struct BusWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<u64>>>,
}

/// What a [`BusWatch`] saw.
#[derive(Debug)]
pub struct Arrivals {
    /// Access units read.
    pub frames: usize,
    /// Gaps of at least [`STALL`] between two of them, ms.
    pub stalls_ms: Vec<u64>,
    /// Their rate (0 with fewer than two).
    pub fps: f64,
}

impl Arrivals {
    /// `nominal` frames of a source at `nominal_fps`, scaled down to the
    /// rate the source really had: the frames a viewer can be asked for.
    /// On an idle machine the source keeps its rate and this is `nominal`;
    /// on a starved one the test pattern and the encoder fall behind, and
    /// the server cannot send what was never encoded.
    pub fn expect(&self, nominal: f64, nominal_fps: f64) -> u64 {
        let scale = (self.fps / nominal_fps).min(1.0);
        if scale < 1.0 {
            eprintln!(
                "the encoded bus ran at {:.1} fps, not {nominal_fps}: expecting {:.0} frames instead of {nominal:.0}",
                self.fps,
                nominal * scale
            );
        }
        (nominal * scale) as u64
    }
}

impl BusWatch {
    /// Reads `bus` (once it exists) until [`BusWatch::finish`].
    pub fn start(bus: &str) -> BusWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (bus, flag) = (bus.to_string(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let opts = ReaderOptions {
                wait: Some(Duration::from_secs(30)),
                shm_dir: None,
            };
            let mut reader =
                Reader::attach(&bus, opts).unwrap_or_else(|e| panic!("attach {bus}: {e}"));
            let mut at = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if reader.next_encoded(Some(Duration::from_millis(20))).is_ok() {
                    at.push(framebus::monotonic_ns());
                }
            }
            at
        });
        BusWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops reading; what arrived.
    pub fn finish(mut self) -> Arrivals {
        self.stop.store(true, Ordering::Relaxed);
        let at = self
            .thread
            .take()
            .expect("running")
            .join()
            .expect("the bus watch thread");
        let stalls_ms = at
            .windows(2)
            .map(|w| (w[1] - w[0]) / 1_000_000)
            .filter(|&ms| ms >= STALL.as_millis() as u64)
            .collect();
        let fps = match (at.first(), at.last()) {
            (Some(a), Some(b)) if b > a => (at.len() - 1) as f64 * 1e9 / (b - a) as f64,
            _ => 0.0,
        };
        Arrivals {
            frames: at.len(),
            stalls_ms,
            fps,
        }
    }
}

impl Drop for BusWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Asserts that `v` froze no more often than its source stalled (`src`,
/// a [`BusWatch`] of the encoded bus over the same run): the server must
/// add no freeze of its own.
pub fn assert_no_server_freeze(v: &browser::Viewer, src: &Arrivals, what: &str) {
    let inb = v.stats.inbound.as_ref().expect("inbound video");
    let freezes = inb.freeze_count.unwrap_or(u64::MAX);
    assert!(
        freezes <= src.stalls_ms.len() as u64,
        "{what}: {freezes} freeze(s) ({:?} s), but the encoded bus stalled only {} time(s) \
         (gaps {:?} ms over {} access units): the server caused the rest: {inb:#?}",
        inb.total_freezes_duration_s,
        src.stalls_ms.len(),
        src.stalls_ms,
        src.frames
    );
    if freezes > 0 {
        eprintln!(
            "{what}: {freezes} freeze(s), explained by the source's stalls {:?} ms (a loaded machine)",
            src.stalls_ms
        );
    }
}
