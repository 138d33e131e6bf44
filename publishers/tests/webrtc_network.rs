//! WebRTC (WHEP) over real network conditions: headless Chromium in its own
//! network namespace, behind a veth pair whose server side is shaped with
//! `tc` (tbf: netem is not in every kernel), and through a TURN relay
//! (coturn).
//!
//! - a capped viewer moves to the camera's lower profile, and back up once
//!   the cap is lifted (adaptive quality, TWCC bandwidth estimation);
//! - a lossy viewer (a token bucket too small for keyframe bursts) asks
//!   for retransmissions (NACK) and keeps decoding;
//! - a viewer allowed only relay candidates plays through coturn, with the
//!   TURN server the WHEP answer's `Link` header announces;
//! - a media port on the wildcard address offers a candidate on every
//!   interface, and a browser on another network plays through it.
//!
//! Needs root (network namespaces, qdiscs): without it every test fails
//! saying so (CI runs as root). Every namespace, veth pair, qdisc, process
//! and bus is unique to its test and removed by a guard, even when the
//! test fails. Waits are watchdogs (bounded), never timing assertions.
//! `FRAMEBUS_WNET_TRACE=1` prints the session's metrics at every poll.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use framebus_test_support::browser::{self, PlayReport, Viewer, WhepExtra, WhepPlay};
use framebus_test_support::feed::{FeedOptions, TestBus};
use framebus_test_support::netns::Netns;
use framebus_test_support::{listening, port, ChildGuard, Encoder, TempDir};

/// The camera's two WebRTC profiles (adaptive tests): the upper one needs
/// more than the capped link carries, the lower one fits in it.
const HI: &str = "hi=640x360@30,bitrate=1500k,h264=main";
const LO: &str = "lo=320x180@30,bitrate=250k,h264=baseline";

// ---------------------------------------------------------------------------
// Network namespaces and shaping.

// ---------------------------------------------------------------------------
// The server, its metrics, and a browser playing in the background.

/// A running `framebus-mjpeg` (WHEP) and the encoders it serves.
struct Server {
    proc: ChildGuard,
    /// `IP:PORT` of its HTTP listener.
    addr: String,
    /// Media port addresses (its `udp://` listening lines).
    udp: Vec<String>,
}

impl Server {
    /// Starts the server with `--listen LISTEN --webrtc-udp UDP` and `extra`.
    fn start(listen: &str, udp: &str, extra: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_framebus-mjpeg"));
        cmd.args(["--listen", listen, "--webrtc-udp", udp, "--no-discover"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit());
        let (mut proc, l) = listening::spawn(&mut cmd, 1);
        // Then one `udp://ADDR` line per media socket (several for a
        // wildcard address), printed at once after the first.
        let mut udp = Vec::new();
        while let Some(line) = proc.next_line(Duration::from_secs(2)) {
            match listening::Listening::parse(&line) {
                Some(u) if u.url.starts_with("udp://") => udp.push(u.addr),
                _ => break,
            }
        }
        assert!(!udp.is_empty(), "no udp:// listening line (WebRTC off?)");
        Server {
            proc,
            addr: l[0].addr.clone(),
            udp,
        }
    }

    fn whep_url(&self, bus: &str, profile: &str) -> String {
        format!("http://{}/{bus}/{profile}/whep", self.addr)
    }

    /// `/metrics`, parsed.
    fn metrics(&mut self) -> Metrics {
        assert!(self.proc.alive(), "framebus-mjpeg exited");
        let (status, body) = http_get(&self.addr, "/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        Metrics::parse(&body)
    }

    /// The session series of `bus` (the first session), if any.
    fn session(&mut self, bus: &str) -> Option<SessionMetrics> {
        let s = self.metrics().sessions(bus).into_iter().next();
        if std::env::var_os("FRAMEBUS_WNET_TRACE").is_some() {
            eprintln!("  {s:?}");
        }
        s
    }
}

/// A GET over a fresh connection: (status, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

/// The body of a chunked response.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// One sample of the exposition: name (without `_total`), labels, value.
type MetricSample = (String, Vec<(String, String)>, f64);

/// The samples of a Prometheus text exposition.
struct Metrics {
    samples: Vec<MetricSample>,
}

/// One session's `framebus_webrtc_session_*` series.
#[derive(Clone, Debug, Default)]
struct SessionMetrics {
    profile: String,
    switches: u64,
    nacks: u64,
    plis: u64,
    frames: u64,
    skips: u64,
    estimate_bps: u64,
    bitrate_bps: u64,
}

impl Metrics {
    fn parse(body: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in body.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(x) => x,
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.trim_matches('"').to_string()))
                })
                .collect();
            let name = name.strip_suffix("_total").unwrap_or(name).to_string();
            samples.push((name, labels, value));
        }
        Metrics { samples }
    }

    /// A series without labels.
    fn total(&self, name: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && l.is_empty())
            .map(|s| s.2)
    }

    /// The sessions of `bus`, by session id.
    fn sessions(&self, bus: &str) -> Vec<SessionMetrics> {
        let label = |l: &[(String, String)], k: &str| {
            l.iter()
                .find(|(lk, _)| lk == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let mut by_id: Vec<(String, SessionMetrics)> = Vec::new();
        for (name, labels, value) in &self.samples {
            let Some(what) = name.strip_prefix("framebus_webrtc_session_") else {
                continue;
            };
            if label(labels, "bus") != bus {
                continue;
            }
            let id = label(labels, "session");
            let at = match by_id.iter().position(|(i, _)| *i == id) {
                Some(at) => at,
                None => {
                    by_id.push((id, SessionMetrics::default()));
                    by_id.len() - 1
                }
            };
            let m = &mut by_id[at].1;
            m.profile = label(labels, "profile");
            let v = *value as u64;
            match what {
                "switches" => m.switches = v,
                "nacks" => m.nacks = v,
                "plis" => m.plis = v,
                "frames" => m.frames = v,
                "skips" => m.skips = v,
                "estimate_bps" => m.estimate_bps = v,
                "bitrate_bps" => m.bitrate_bps = v,
                _ => {}
            }
        }
        by_id.into_iter().map(|(_, m)| m).collect()
    }
}

/// `whep_play_with` in a thread, ended early through its stop file; the
/// drop stops it and waits for it (so no browser outlives the test).
struct BackgroundPlay {
    stop: PathBuf,
    thread: Option<JoinHandle<PlayReport>>,
    _dir: TempDir,
}

impl BackgroundPlay {
    /// Plays `play` (its `seconds` is the bound) with `extra`, sampling
    /// every 500 ms.
    fn start(play: WhepPlay, mut extra: WhepExtra) -> BackgroundPlay {
        let dir = TempDir::new("whep-stop");
        let stop = dir.path().join("stop");
        extra.stop_file = Some(stop.clone());
        extra.sample_ms.get_or_insert(500);
        let thread = std::thread::spawn(move || browser::whep_play_with(&play, &extra));
        BackgroundPlay {
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Why a play that should still run has ended: its report, or the
    /// driver's panic.
    fn ended(&mut self) -> String {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => format!("{r:#?}"),
            Some(Err(e)) => e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
            None => String::new(),
        }
    }

    /// Ends the measurement and returns the report (a driver failure
    /// panics here with its message).
    fn finish(mut self) -> PlayReport {
        std::fs::write(&self.stop, b"stop").expect("write the stop file");
        let t = self.thread.take().expect("joined once");
        match t.join() {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

impl Drop for BackgroundPlay {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = std::fs::write(&self.stop, b"stop");
            let _ = t.join();
        }
    }
}

/// Polls `cond` until it gives a value, at most `limit`, failing the test
/// with `what` otherwise; also fails at once if the browser stopped.
fn wait_for<T>(
    limit: Duration,
    play: &mut BackgroundPlay,
    what: &str,
    mut cond: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if !play.running() {
            panic!(
                "the browser stopped while waiting for: {what}\n{}",
                play.ended()
            );
        }
        assert!(
            Instant::now() < end,
            "watchdog: {what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Viewer 0, checked to have been answered and connected.
fn viewer(report: &PlayReport) -> &Viewer {
    let v = report.viewers.first().expect("one viewer");
    assert_eq!(v.post_status, Some(201), "WHEP POST: {v:#?}");
    assert!(
        v.answer_error.is_none(),
        "setRemoteDescription: {:?}",
        v.answer_error
    );
    v
}

/// A bus for the camera and its encoders, all stopped on drop.
struct Camera {
    // Encoders first: they stop before their raw bus goes.
    _encoders: Vec<Encoder>,
    bus: TestBus,
}

impl Camera {
    /// A noisy 640x360 camera (every bit rate is really used) and an
    /// encoder per profile.
    fn start(tag: &str, profiles: &[&str]) -> Camera {
        let bus = TestBus::with(tag, FeedOptions::new(640, 360, 30).noisy());
        let encoders = profiles
            .iter()
            .map(|p| Encoder::start(&bus.name, p, &["--no-adapt"], None))
            .collect();
        Camera {
            _encoders: encoders,
            bus,
        }
    }

    fn name(&self) -> &str {
        &self.bus.name
    }
}

/// Frames a sample series decoded from `from_ms` on (by sample time).
fn decoded_since(samples: &[browser::Sample], from_ms: u64) -> u64 {
    let at = |s: &browser::Sample| s.frames_decoded.unwrap_or(0);
    let first = samples.iter().find(|s| s.t_ms >= from_ms).map(at);
    let last = samples.last().map(at);
    match (first, last) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    }
}

// ---------------------------------------------------------------------------
// Tests.

/// Now on the wall clock, ms since the Unix epoch (the browser samples'
/// `wall_ms`).
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Follows a session's metrics: frames played since its last switch.
struct Follow {
    bus: String,
    last: SessionMetrics,
    frames_at_switch: u64,
}

impl Follow {
    fn new(bus: &str) -> Follow {
        Follow {
            bus: bus.to_string(),
            last: SessionMetrics::default(),
            frames_at_switch: 0,
        }
    }

    /// Polls the server once; the session's series, if it exists.
    fn poll(&mut self, server: &mut Server) -> Option<SessionMetrics> {
        let s = server.session(&self.bus)?;
        if s.switches != self.last.switches {
            self.frames_at_switch = s.frames;
        }
        self.last = s.clone();
        Some(s)
    }

    /// Frames written since the last switch (or the start).
    fn frames_on_profile(&self) -> u64 {
        self.last.frames.saturating_sub(self.frames_at_switch)
    }
}

/// The samples from wall time `from` (inclusive) to `to` (exclusive).
fn between(samples: &[browser::Sample], from: u64, to: u64) -> &[browser::Sample] {
    let a = samples.partition_point(|s| s.wall_ms < from);
    let b = samples.partition_point(|s| s.wall_ms < to);
    &samples[a..b.max(a)]
}

#[test]
fn a_capped_viewer_moves_to_a_lower_profile_and_back() {
    let net = Netns::new();
    let cam = Camera::start("wnet-cap", &[HI, LO]);
    let host = net.host_ip.to_string();
    let mut server = Server::start(&format!("{host}:0"), &format!("{host}:0"), &[]);
    let bus = cam.name().to_string();
    let mut play = WhepPlay::new(server.whep_url(&bus, "hi"));
    play.seconds = 300.0;
    let extra = WhepExtra {
        netns: Some(net.name.clone()),
        ..WhepExtra::default()
    };
    let mut player = BackgroundPlay::start(play, extra);
    let mut f = Follow::new(&bus);

    // Phase 1: settled on `hi` (3 s of it since any switch: the start of
    // a session on a loaded machine may already move it around).
    let t0 = Instant::now();
    let settled = wait_for(
        Duration::from_secs(120),
        &mut player,
        "the session settled on hi (90 frames since its last switch)",
        || {
            f.poll(&mut server)
                .filter(|s| s.profile == "hi" && s.estimate_bps > 0)
                .filter(|_| f.frames_on_profile() >= 90)
        },
    );
    eprintln!(
        "settled on hi after {:.1} s: {settled:?}",
        t0.elapsed().as_secs_f64()
    );

    // Phase 2: the link to the browser capped between the two profiles'
    // bit rates (500 kbit/s: lo's 250 fits with its overhead, hi's 1500
    // does not).
    net.shape("500kbit", "16kb", "100ms");
    let (capped, capped_wall) = (Instant::now(), wall_ms());
    let down = wait_for(
        Duration::from_secs(60),
        &mut player,
        "a switch down to lo under the cap",
        || {
            f.poll(&mut server)
                .filter(|s| s.profile == "lo" && s.switches > settled.switches)
        },
    );
    let (down_s, down_wall) = (capped.elapsed().as_secs_f64(), wall_ms());
    eprintln!("switched down {down_s:.1} s after the cap: {down:?}");
    // Some seconds of `lo` through the cap: it fits, the session stays.
    let on_lo = wait_for(
        Duration::from_secs(60),
        &mut player,
        "120 frames of lo under the cap",
        || {
            f.poll(&mut server)
                .filter(|s| s.frames >= down.frames + 120)
        },
    );
    assert!(
        on_lo.profile == "lo" && on_lo.switches == down.switches,
        "the session left lo while the link was capped: {on_lo:?}"
    );

    // Phase 3: the cap lifted; the estimate must climb back over hi.
    net.unshape();
    let (lifted, lifted_wall) = (Instant::now(), wall_ms());
    let up = wait_for(
        Duration::from_secs(60),
        &mut player,
        "a switch back up to hi once the cap is lifted",
        || {
            f.poll(&mut server)
                .filter(|s| s.profile == "hi" && s.switches > on_lo.switches)
        },
    );
    let (up_s, up_wall) = (lifted.elapsed().as_secs_f64(), wall_ms());
    eprintln!("switched up {up_s:.1} s after lifting the cap: {up:?}");
    wait_for(
        Duration::from_secs(60),
        &mut player,
        "150 frames of hi after the switch up",
        || f.poll(&mut server).filter(|s| s.frames >= up.frames + 150),
    );
    let report = player.finish();

    // The browser: hi, then lo while capped, then hi again, decoding all
    // along.
    let v = viewer(&report);
    let samples = v.samples.as_deref().unwrap_or_default();
    let series: Vec<_> = samples
        .iter()
        .map(|s| {
            (
                s.wall_ms.saturating_sub(capped_wall) as i64,
                s.frame_width,
                s.frames_decoded,
                s.freeze_count,
            )
        })
        .collect();
    eprintln!(
        "browser samples (ms after the cap, width, decoded, freezes): {series:?}\n\
         switch down observed {down_s:.1} s after the cap, up {up_s:.1} s after lifting it"
    );
    let size = |s: &browser::Sample| (s.frame_width, s.frame_height);
    let (hi, lo) = ((Some(640), Some(360)), (Some(320), Some(180)));
    let before = between(samples, 0, capped_wall);
    assert_eq!(
        before.last().map(size),
        Some(hi),
        "not on 640x360 before the cap: {series:?}"
    );
    let capped_lo = between(samples, down_wall, lifted_wall);
    assert!(
        capped_lo.last().map(size) == Some(lo),
        "the browser was not on 320x180 at the end of the capped phase: {series:?}"
    );
    assert!(
        decoded_since(capped_lo, 0) >= 60,
        "fewer than 60 frames decoded on lo under the cap: {series:?}"
    );
    let after_up = between(samples, up_wall, u64::MAX);
    assert_eq!(
        after_up.last().map(size),
        Some(hi),
        "the browser did not get back to 640x360: {series:?}"
    );
    assert!(
        decoded_since(after_up, 0) >= 60,
        "fewer than 60 frames decoded after the way back up: {series:?}"
    );
    // The video stalls while the cap bites on hi, until the estimate falls
    // and the session moves down. From then on it keeps playing: at least
    // half the frame rate decoded, at most a freeze every 2 s (the
    // switches; the estimate dipping under lo's rate on a loaded machine,
    // when the pacer holds lo back too).
    let tail = between(samples, down_wall, u64::MAX);
    let (first, last) = (
        tail.first().expect("samples"),
        tail.last().expect("samples"),
    );
    let secs = last.wall_ms.saturating_sub(first.wall_ms) as f64 / 1000.0;
    let decoded = last.frames_decoded.unwrap_or(0) - first.frames_decoded.unwrap_or(0);
    let froze = last.freeze_count.unwrap_or(0) - first.freeze_count.unwrap_or(0);
    eprintln!(
        "from the switch down on: {decoded} frames decoded and {froze} freezes in {secs:.1} s"
    );
    assert!(
        decoded as f64 >= 15.0 * secs,
        "{decoded} frames decoded in {secs:.1} s from the switch down on: {series:?}"
    );
    assert!(
        froze as f64 <= (secs / 2.0).max(5.0),
        "{froze} freezes in {secs:.1} s from the switch down on: {series:?}"
    );
    let inb = v.stats.inbound.as_ref().expect("inbound video stats");
    eprintln!("end: {inb:?}");
    assert_eq!(v.connection_state, "connected", "{v:#?}");
    assert!(
        report.page_errors.is_empty(),
        "page errors: {:?}",
        report.page_errors
    );
    drop(server);
    drop(cam);
    drop(net);
}

#[test]
fn a_lossy_viewer_recovers_with_nack_and_pli() {
    let net = Netns::new();
    // One profile (no adaptation): packets go out as str0m writes them, so
    // a keyframe leaves in a burst larger than the bucket.
    let cam = Camera::start(
        "wnet-loss",
        &["hi=640x360@30,bitrate=1500k,h264=main,gop=30"],
    );
    let host = net.host_ip.to_string();
    let mut server = Server::start(&format!("{host}:0"), &format!("{host}:0"), &[]);
    let bus = cam.name().to_string();
    net.shape("2mbit", "4kb", "20ms");
    let mut play = WhepPlay::new(server.whep_url(&bus, "hi"));
    play.seconds = 180.0;
    let extra = WhepExtra {
        netns: Some(net.name.clone()),
        ..WhepExtra::default()
    };
    let mut player = BackgroundPlay::start(play, extra);

    // Lossy phase: keyframe bursts overflow the bucket; the browser NACKs.
    let lossy = wait_for(
        Duration::from_secs(90),
        &mut player,
        "NACKs from the browser behind the lossy link",
        || {
            server
                .session(&bus)
                .filter(|s| s.nacks > 0 && s.frames >= 150)
        },
    );
    eprintln!("lossy: {lossy:?}");
    // Recovery: the loss gone, the viewer goes on decoding.
    net.unshape();
    let end_frames = lossy.frames + 150;
    let done = wait_for(
        Duration::from_secs(30),
        &mut player,
        "150 more frames after the loss ended",
        || server.session(&bus).filter(|s| s.frames >= end_frames),
    );
    eprintln!("after: {done:?}");
    let report = player.finish();
    let v = viewer(&report);
    let inb = v.stats.inbound.as_ref().expect("inbound video stats");
    eprintln!("browser: {inb:?}");
    let samples = v.samples.as_deref().unwrap_or_default();
    let series: Vec<_> = samples
        .iter()
        .map(|s| (s.t_ms, s.frames_decoded, s.packets_lost, s.nack_count))
        .collect();
    eprintln!("samples (t_ms, decoded, lost, nacks): {series:?}");
    assert!(
        inb.nack_count.unwrap_or(0) > 0,
        "the browser sent no NACK: {inb:?}"
    );
    assert!(
        inb.packets_lost.unwrap_or(0) > 0 || inb.nack_count.unwrap_or(0) > 0,
        "no loss seen: {inb:?}"
    );
    // The last 3 s of samples (after the loss): at least half the frame
    // rate decoded (a stuck decoder would be near 0).
    let last_t = samples.last().map_or(0, |s| s.t_ms);
    let recent = decoded_since(samples, last_t.saturating_sub(3000));
    assert!(
        recent >= 45,
        "only {recent} frames decoded in the last 3 s of samples: {series:?}"
    );
    assert_eq!(v.connection_state, "connected", "{v:#?}");
    assert!(done.nacks > 0, "server counted no NACK: {done:?}");
    drop(server);
    drop(cam);
    drop(net);
}

/// A coturn on 127.0.0.1 with one long-term user; killed on drop.
struct Turn {
    _proc: ChildGuard,
    port: u16,
    _dir: TempDir,
}

impl Turn {
    fn start(user: &str, pass: &str) -> Turn {
        let bin = "/usr/bin/turnserver";
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} not found: `apt-get install coturn` (`make deps`)"
        );
        let dir = TempDir::new("coturn");
        let port = port::free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["-n", "--no-tls", "--no-dtls", "--lt-cred-mech"])
            .args(["--user", &format!("{user}:{pass}")])
            .args(["--realm", "framebus"])
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
            .args(["--listening-port", &port.to_string()])
            // The relay's peer (our media port) is on loopback too.
            .args(["--no-cli", "--allow-loopback-peers"])
            // -v: it says when its UDP listener is open.
            .args(["-v", "--log-file", "stdout", "--simple-log"])
            .arg("--pidfile")
            .arg(dir.path().join("turnserver.pid"))
            .arg("--userdb")
            .arg(dir.path().join("turndb"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut proc = ChildGuard::spawn(&mut cmd);
        // Ready once its UDP listener is open.
        proc.wait_line("UDP listener opened on", Duration::from_secs(30));
        Turn {
            _proc: proc,
            port,
            _dir: dir,
        }
    }
}

#[test]
fn turn_relay_through_coturn() {
    let turn = Turn::start("u", "p");
    let cam = Camera::start("wnet-turn", &[HI]);
    let ice = format!("turn:127.0.0.1:{}?transport=udp", turn.port);
    let server = Server::start(
        "127.0.0.1:0",
        "127.0.0.1:0",
        &[
            "--webrtc-ice-server",
            &ice,
            "--webrtc-ice-username",
            "u",
            "--webrtc-ice-credential",
            "p",
        ],
    );
    let mut play = WhepPlay::new(server.whep_url(cam.name(), "hi"));
    play.seconds = 6.0;
    let extra = WhepExtra {
        ice_servers: vec![ice.clone()],
        ice_username: Some("u".into()),
        ice_credential: Some("p".into()),
        relay_only: true,
        ..WhepExtra::default()
    };
    let report = browser::whep_play_with(&play, &extra);
    let v = viewer(&report);
    eprintln!(
        "link: {:?}; pair {:?} -> {:?}; inbound {:?}",
        v.link, v.stats.local_candidate, v.stats.remote_candidate, v.stats.inbound
    );
    let link = v.link.as_deref().unwrap_or_default();
    assert!(
        link.contains(&format!("<{ice}>; rel=\"ice-server\"")),
        "the answer's Link does not announce {ice}: {link:?}"
    );
    assert!(
        link.contains("username=\"u\"") && link.contains("credential=\"p\""),
        "the Link header lacks the TURN credentials: {link:?}"
    );
    let local = v.stats.local_candidate.as_deref().unwrap_or_default();
    assert!(
        local.ends_with(" relay"),
        "the selected local candidate is not a relay: {local:?} ({v:#?})"
    );
    assert_eq!(v.connection_state, "connected", "{v:#?}");
    assert!(
        v.stats.frames_decoded() >= 30,
        "{} frames decoded through the relay: {v:#?}",
        v.stats.frames_decoded()
    );
    drop(server);
    drop(cam);
    drop(turn);
}

#[test]
fn the_media_port_on_a_wildcard_address_offers_every_interface() {
    let net = Netns::new();
    let cam = Camera::start("wnet-any", &[HI]);
    let mut server = Server::start("0.0.0.0:0", "0.0.0.0:0", &[]);
    let host = net.host_ip.to_string();
    let port = server.addr.rsplit(':').next().unwrap().to_string();
    // One media socket per interface address, the veth's among them.
    let udp_ips: Vec<&str> = server
        .udp
        .iter()
        .map(|a| a.rsplit_once(':').unwrap().0)
        .collect();
    for ip in ["127.0.0.1", host.as_str()] {
        assert!(
            udp_ips.contains(&ip),
            "no media socket on {ip}: {udp_ips:?}"
        );
    }
    let mut play = WhepPlay::new(format!("http://{host}:{port}/{}/hi/whep", cam.name()));
    play.seconds = 6.0;
    let extra = WhepExtra {
        netns: Some(net.name.clone()),
        ..WhepExtra::default()
    };
    let report = browser::whep_play_with(&play, &extra);
    let v = viewer(&report);
    eprintln!(
        "answer candidates: {:?}; pair {:?} -> {:?}",
        v.answer_candidates, v.stats.local_candidate, v.stats.remote_candidate
    );
    let cands = v.answer_candidates.clone().unwrap_or_default();
    for ip in &udp_ips {
        assert!(
            cands
                .iter()
                .any(|c| c.split_whitespace().nth(4) == Some(ip)),
            "the answer has no candidate on {ip}: {cands:?}"
        );
    }
    let remote = v.stats.remote_candidate.as_deref().unwrap_or_default();
    assert!(
        remote.starts_with(&format!("{host}:")),
        "the browser did not reach the server on its veth address {host}: {remote:?}"
    );
    assert_eq!(v.connection_state, "connected", "{v:#?}");
    assert!(
        v.stats.frames_decoded() >= 30,
        "{} frames decoded: {v:#?}",
        v.stats.frames_decoded()
    );
    let m = server.metrics();
    assert!(m.total("framebus_webrtc_sessions_started").unwrap_or(0.0) >= 1.0);
    drop(server);
    drop(cam);
    drop(net);
}
