//! Conformance: what every publisher binary must do, one table run against
//! `framebus-mjpeg` and `framebus-rtsp` (a new publisher gets a row in
//! [`PUBLISHERS`] and a `conformance!` line):
//!
//! | check | what |
//! |---|---|
//! | `listening_line` | the first stdout line is `listening on URL` with the bound address (port 0 works) |
//! | `health` | mjpeg: `GET /healthz` 200; rtsp: `OPTIONS *` 200 and `/healthz` on `--http-listen` 200 |
//! | `sigterm_with_a_client_exits_0` | SIGTERM while a real client streams: exit 0 within a watchdog |
//! | `producer_sigkill_pauses_then_resumes` | a `framebus-producer` process SIGKILLed: the publisher keeps running, its health says so (503) and the stream pauses; a new producer on the same bus: frames flow again |
//! | `bad_arguments_exit_4` | `--no-such-flag` and a bad `--listen`: exit `contract::exit::USAGE` (4) with one line on stderr |
//!
//! Each test has its own bus (a unique name in its own shm directory) and
//! servers on port 0. Bounds are watchdogs, not timing assertions.
//! `framebus-producer` comes from this build's target directory (`make
//! test` builds every binary first).

#[path = "rtsp_support/mod.rs"]
mod rtsp_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use framebus::contract::{exit, health, listening as contract};
use framebus_test_support::clients::{self, Counting};
use framebus_test_support::{bins, listening, Listening, TempDir};
use rtsp_support::{eventually, ffmpeg_decode, run, unique_name, ChildGuard, RawClient};

/// How long a publisher may take to exit after SIGTERM (shutdown.rs holds
/// the tight 1 s bound; this one only catches a hang).
const STOP_WATCHDOG: Duration = Duration::from_secs(5);
/// Bound on frames flowing, health changing, a producer starting.
const FLOW: Duration = Duration::from_secs(45);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Mjpeg,
    Rtsp,
}

/// One publisher binary.
struct Publisher {
    kind: Kind,
    bin: &'static str,
    /// Arguments serving one bus at a small rate (`{bus}` is replaced).
    args: &'static [&'static str],
    /// `listening on` lines printed with `args`.
    lines: usize,
    /// URL scheme of the first line.
    scheme: &'static str,
}

const PUBLISHERS: [Publisher; 2] = [
    Publisher {
        kind: Kind::Mjpeg,
        bin: env!("CARGO_BIN_EXE_framebus-mjpeg"),
        args: &[
            "--no-discover",
            "--bus",
            "{bus}",
            "--profile",
            "small=320x240@15:q70",
        ],
        lines: 1,
        scheme: "http",
    },
    Publisher {
        kind: Kind::Rtsp,
        bin: env!("CARGO_BIN_EXE_framebus-rtsp"),
        // The stream is the encoded bus of an encoder that
        // `Server::start` runs beside it.
        args: &["--http-listen", "127.0.0.1:0"],
        lines: 2,
        scheme: "rtsp",
    },
];

/// A running publisher.
struct Server {
    child: ChildGuard,
    /// RTSP: the encoder writing `{bus}.h264.small`.
    _encoder: Option<rtsp_support::Encoder>,
    /// Its `listening on` lines, in order.
    lines: Vec<Listening>,
}

impl Server {
    /// Start `p` on port 0 serving `bus` in `dir`.
    fn start(p: &Publisher, bus: &str, dir: &Path) -> Server {
        let encoder = (p.kind == Kind::Rtsp).then(|| {
            rtsp_support::Encoder::start(bus, "small=native@15,bitrate=300k", &[], Some(dir))
        });
        let args: Vec<String> = p.args.iter().map(|a| a.replace("{bus}", bus)).collect();
        let (child, lines) = listening::spawn(
            Command::new(p.bin)
                .args(["--listen", "127.0.0.1:0"])
                .args(&args)
                .env(framebus::contract::env::SHM_DIR, dir)
                .env("RUST_LOG", "warn")
                .env_remove(framebus::contract::env::RTSP_AUTH)
                .env_remove(framebus::contract::env::MJPEG_AUTH)
                .env_remove(framebus::contract::env::MJPEG_TOKEN)
                .stderr(Stdio::inherit()),
            p.lines,
        );
        Server {
            child,
            _encoder: encoder,
            lines,
        }
    }

    fn addr(&self) -> &str {
        &self.lines[0].addr
    }

    /// `host:port` serving `/healthz`.
    fn http_addr(&self, p: &Publisher) -> &str {
        match p.kind {
            Kind::Mjpeg => &self.lines[0].addr,
            Kind::Rtsp => &self.lines[1].addr,
        }
    }

    /// The stream URL of `bus`.
    fn stream_url(&self, p: &Publisher, bus: &str) -> String {
        match p.kind {
            Kind::Mjpeg => format!("{}/{bus}/small.mjpg", self.lines[0].base()),
            Kind::Rtsp => format!("{}/{bus}/small", self.lines[0].base()),
        }
    }

    /// A real client streaming `bus`, counting frames.
    fn client(&self, p: &Publisher, bus: &str) -> Counting {
        let url = self.stream_url(p, bus);
        match p.kind {
            Kind::Mjpeg => clients::curl_mjpeg(&url),
            Kind::Rtsp => clients::ffmpeg_rtsp(&url, "tcp"),
        }
    }

    /// Status of `GET /healthz`.
    fn healthz(&self, p: &Publisher) -> u16 {
        http_status(self.http_addr(p), health::HTTP_PATH)
    }
}

/// Status code of `GET path` over a raw socket (`0` when there is none).
fn http_status(addr: &str, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n") && head.len() < 1024 {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A bus fed by a `framebus-producer` process (testsrc, 320x240 at 30 fps).
fn producer(bus: &str, dir: &Path) -> ChildGuard {
    let p = ChildGuard::spawn(
        Command::new(bins::path("framebus-producer"))
            .args(["--bus", bus, "--size", "320x240", "--fps", "30"])
            .env(framebus::contract::env::SHM_DIR, dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    assert!(
        eventually(FLOW, || framebus::stat(bus, Some(dir))
            .is_ok_and(|s| s.producer_pid == p.pid() && s.published > 0)),
        "framebus-producer (pid {}) did not publish on {bus}",
        p.pid()
    );
    p
}

/// A bus fed by a thread in this process (for the checks that do not kill
/// the producer).
fn feeder(tag: &str, dir: &Path) -> framebus_test_support::Feeder {
    framebus_test_support::Feeder::with(
        &unique_name(tag),
        framebus_test_support::FeedOptions::new(320, 240, 30).shm_dir(dir),
    )
}

fn listening_line(p: &Publisher) {
    let dir = TempDir::new("conf-listen");
    let bus = unique_name("conf-listen");
    let mut child = ChildGuard::spawn(
        Command::new(p.bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(p.args.iter().map(|a| a.replace("{bus}", &bus)))
            .env(framebus::contract::env::SHM_DIR, dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    // `listening::read` takes the first stdout line only if it is
    // `listening on URL` (`framebus::contract::listening::parse`).
    let lines = listening::read(&mut child, p.lines);
    let url = &lines[0].url;
    assert!(
        url.starts_with(&format!("{}://", p.scheme)),
        "{}: {url}",
        p.bin
    );
    let addr = contract::address(url).unwrap_or_else(|| panic!("no address in {url}"));
    assert_eq!(addr, lines[0].addr);
    for l in &lines {
        let sa: std::net::SocketAddr = l
            .addr
            .parse()
            .unwrap_or_else(|e| panic!("{}: {l:?} is not an address: {e}", p.bin));
        assert_eq!(sa.ip().to_string(), "127.0.0.1", "{l:?}");
        assert_ne!(
            sa.port(),
            0,
            "{}: the line must carry the bound port",
            p.bin
        );
        TcpStream::connect(sa).unwrap_or_else(|e| panic!("{}: connect {sa}: {e}", p.bin));
    }
}

fn health(p: &Publisher) {
    let dir = TempDir::new("conf-health");
    let feed = feeder("conf-health", dir.path());
    let s = Server::start(p, &feed.name, dir.path());
    if p.kind == Kind::Rtsp {
        let mut c = RawClient::connect(s.addr());
        let r = c.request(health::RTSP_METHOD, "*", &[]);
        assert_eq!(r.status, 200, "{} *: {r:?}", health::RTSP_METHOD);
    }
    assert!(
        eventually(FLOW, || s.healthz(p) == 200),
        "{}: GET {} never answered 200 (last {})",
        p.bin,
        health::HTTP_PATH,
        s.healthz(p)
    );
}

fn sigterm_with_a_client_exits_0(p: &Publisher) {
    let dir = TempDir::new("conf-term");
    let feed = feeder("conf-term", dir.path());
    let mut s = Server::start(p, &feed.name, dir.path());
    let client = s.client(p, &feed.name);
    client.grows(0, 3, FLOW, &format!("{}: client before SIGTERM", p.bin));
    s.child.signal(libc::SIGTERM);
    let st = s
        .child
        .exits_within(STOP_WATCHDOG)
        .unwrap_or_else(|| panic!("{} still running {STOP_WATCHDOG:?} after SIGTERM", p.bin));
    assert_eq!(st.code(), Some(i32::from(exit::OK)), "{}: {st:?}", p.bin);
}

fn producer_sigkill_pauses_then_resumes(p: &Publisher) {
    let dir = TempDir::new("conf-kill");
    let bus = unique_name("conf-kill");
    let mut prod = producer(&bus, dir.path());
    let mut s = Server::start(p, &bus, dir.path());
    let client = s.client(p, &bus);
    client.grows(0, 5, FLOW, &format!("{}: client before the kill", p.bin));
    // RTSP health only judges streams with a client: one that stays
    // connected (ffmpeg may give up on a stalled stream).
    let mut rtsp_client = (p.kind == Kind::Rtsp).then(|| {
        let url = s.stream_url(p, &bus);
        let mut c = RawClient::connect(s.addr());
        assert_eq!(c.setup_tcp(&url).status, 200);
        assert_eq!(c.request("PLAY", &url, &[]).status, 200);
        c
    });
    assert_eq!(s.healthz(p), 200, "{}: healthy before the kill", p.bin);

    prod.kill();
    // Paused: health says so, and no new frames reach the client.
    assert!(
        eventually(FLOW, || s.healthz(p) == 503),
        "{}: /healthz stayed {} with the producer gone",
        p.bin,
        s.healthz(p)
    );
    assert!(s.child.alive(), "{}: died with the producer", p.bin);
    let c0 = client.count();
    std::thread::sleep(Duration::from_secs(2));
    let c1 = client.count();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        client.count(),
        c1,
        "{}: frames still flowing with the producer gone ({c0} -> {c1} -> {})",
        p.bin,
        client.count()
    );

    // A new producer on the same bus: frames flow again.
    let _prod = producer(&bus, dir.path());
    match p.kind {
        Kind::Mjpeg => {
            client.grows(c1, 5, FLOW, "the same MJPEG client after the restart");
        }
        Kind::Rtsp => {
            let (decoded, out) = ffmpeg_decode(&s.stream_url(p, &bus), "tcp", 15);
            assert!(
                decoded >= 15,
                "a new RTSP client after the restart decoded {decoded}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(
        eventually(FLOW, || s.healthz(p) == 200),
        "{}: /healthz did not recover (last {})",
        p.bin,
        s.healthz(p)
    );
    assert!(s.child.alive(), "{}: exited", p.bin);
    drop(rtsp_client.take());
}

fn bad_arguments_exit_4(p: &Publisher) {
    for args in [&["--no-such-flag"][..], &["--listen", "not-an-address"][..]] {
        let out = run(
            Command::new(p.bin).args(args).env("RUST_LOG", "warn"),
            Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            out.status.code(),
            Some(i32::from(exit::USAGE)),
            "{} {args:?}: exit status; stderr:\n{stderr}",
            p.bin
        );
        assert_eq!(lines.len(), 1, "{} {args:?}: stderr:\n{stderr}", p.bin);
    }
}

macro_rules! conformance {
    ($($name:ident => $index:expr),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[test]
                fn listening_line() {
                    super::listening_line(&PUBLISHERS[$index]);
                }

                #[test]
                fn health() {
                    super::health(&PUBLISHERS[$index]);
                }

                #[test]
                fn sigterm_with_a_client_exits_0() {
                    super::sigterm_with_a_client_exits_0(&PUBLISHERS[$index]);
                }

                #[test]
                fn producer_sigkill_pauses_then_resumes() {
                    super::producer_sigkill_pauses_then_resumes(&PUBLISHERS[$index]);
                }

                #[test]
                fn bad_arguments_exit_4() {
                    super::bad_arguments_exit_4(&PUBLISHERS[$index]);
                }
            }
        )*
    };
}

conformance! {
    mjpeg => 0,
    rtsp => 1,
}

/// Binaries in `src/bin/` that serve nobody over the network, so have no
/// listening line or health endpoint: each has its own test file.
const NOT_SERVERS: [&str; 2] = [
    // Writes an encoded bus (tests/encoder.rs: decode, keyframe requests,
    // on-demand stop, SIGTERM -> 0).
    "framebus-encoder",
    // Serves an API, not streams: no viewer to keep through a SIGTERM or a
    // producer's death. tests/record.rs checks its listening line, health,
    // SIGTERM finishing a recording (exit 0), kill -9 and bad arguments.
    "framebus-recorder",
];

#[test]
fn every_publisher_binary_is_in_the_table() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    let mut bins: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            Some(n.strip_suffix(".rs")?.to_string())
        })
        .filter(|b| !NOT_SERVERS.contains(&b.as_str()))
        .collect();
    bins.sort();
    let mut table: Vec<String> = PUBLISHERS
        .iter()
        .map(|p| {
            Path::new(p.bin)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    table.sort();
    assert_eq!(bins, table, "a publisher binary without a conformance row");
}
