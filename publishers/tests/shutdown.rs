//! Both publishers stop cleanly on SIGTERM and on SIGINT with clients
//! connected: exit status 0 within a 1 s watchdog, and the clients' streams
//! end properly (RTSP: an RTCP BYE, then the server closes the connection;
//! HTTP: the chunked MJPEG response is terminated, so curl exits 0).
//!
//! The 1 s bound is a watchdog (the process is killed and the test fails
//! if it is still running), not a measurement.

mod rtsp_support;

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use framebus_test_support::{clients, listening};
use rtsp_support::{ChildGuard, RawClient, RtspServer, TestBus};

/// How long a publisher may take to exit after SIGTERM/SIGINT.
const STOP_WATCHDOG: Duration = Duration::from_secs(1);

/// Send `sig` to `child`, then wait at most `limit` for it to exit; `None`
/// when it is still running then (the guard kills it).
fn signal_and_wait(child: &mut ChildGuard, sig: i32, limit: Duration) -> Option<ExitStatus> {
    child.signal(sig);
    child.exits_within(limit)
}

fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// A tag for bus and file names (bus names are lower case).
fn tag(what: &str, sig: i32) -> String {
    format!("{what}-{}", name(sig).to_lowercase())
}

/// An RTSP client on a raw socket that has played `url` over TCP and
/// received its first RTP packet.
fn playing_tcp_client(addr: &str, url: &str) -> RawClient {
    let mut c = RawClient::connect(addr);
    let r = c.setup_tcp(url);
    assert_eq!(r.status, 200, "SETUP: {r:?}");
    let r = c.request("PLAY", url, &[("Range", "npt=0.000-")]);
    assert_eq!(r.status, 200, "PLAY: {r:?}");
    // The first interleaved RTP packet (channel 0) shows media flows.
    loop {
        let (channel, _) = read_frame(&mut c.sock)
            .expect("an interleaved frame after PLAY")
            .unwrap_or_else(|| panic!("connection closed before any RTP"));
        if channel == 0 {
            return c;
        }
    }
}

/// One `$`-framed packet: `Ok(None)` at a clean end of the connection.
fn read_frame(sock: &mut TcpStream) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut hdr = [0u8; 4];
    match sock.read(&mut hdr[..1])? {
        0 => return Ok(None),
        _ => assert_eq!(hdr[0], b'$', "expected only interleaved data after PLAY"),
    }
    sock.read_exact(&mut hdr[1..])?;
    let mut p = vec![0u8; usize::from(u16::from_be_bytes([hdr[2], hdr[3]]))];
    sock.read_exact(&mut p)?;
    Ok(Some((hdr[1], p)))
}

/// Whether an RTCP compound packet holds a BYE (packet type 203).
fn has_bye(mut compound: &[u8]) -> bool {
    while compound.len() >= 4 {
        if compound[1] == 203 {
            return true;
        }
        let words = usize::from(u16::from_be_bytes([compound[2], compound[3]]));
        compound = compound.get((words + 1) * 4..).unwrap_or_default();
    }
    false
}

/// Read the rest of a playing client's connection: (saw an RTCP BYE on the
/// RTCP channel, the server closed the connection). Bounded by the socket
/// read timeout.
fn drain_to_close(c: &mut RawClient) -> (bool, bool) {
    c.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bye = false;
    loop {
        match read_frame(&mut c.sock) {
            Ok(Some((1, p))) => bye |= has_bye(&p),
            Ok(Some(_)) => {}
            Ok(None) => return (bye, true),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return (bye, true),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return (bye, false)
            }
            // A reset is a close, but not a proper one.
            Err(_) => return (bye, false),
        }
    }
}

fn rtsp_stops_on(sig: i32, with_ffmpeg: bool) {
    let bus = TestBus::start(&tag("stop", sig), 320, 240);
    let mut server = RtspServer::serve(&bus.name, &["native"], &[]);
    let url = server.url(&bus.name, "native");
    let mut tcp = playing_tcp_client(&server.addr, &url);
    let ffmpeg = with_ffmpeg.then(|| {
        let g = clients::ffmpeg_rtsp(&url, "udp");
        g.grows(
            0,
            1,
            Duration::from_secs(30),
            "ffmpeg (UDP) decodes a frame",
        );
        g
    });

    let st = signal_and_wait(&mut server.child, sig, STOP_WATCHDOG);
    let st = st.unwrap_or_else(|| {
        panic!(
            "framebus-rtsp still running {STOP_WATCHDOG:?} after {}",
            name(sig)
        )
    });
    assert_eq!(st.code(), Some(0), "exit after {}: {st:?}", name(sig));

    let (bye, closed) = drain_to_close(&mut tcp);
    assert!(bye, "no RTCP BYE for the TCP client's session");
    assert!(
        closed,
        "the server did not close the TCP client's connection"
    );
    if let Some(mut g) = ffmpeg {
        // The BYE ends ffmpeg's input: it stops by itself, status 0.
        let st = g
            .child
            .exits_within(Duration::from_secs(10))
            .expect("ffmpeg (UDP) still running 10 s after the server stopped");
        assert!(st.success(), "ffmpeg: {st:?}");
    }
}

#[test]
fn rtsp_sigterm_with_clients_exits_zero() {
    rtsp_stops_on(libc::SIGTERM, true);
}

#[test]
fn rtsp_sigint_with_clients_exits_zero() {
    rtsp_stops_on(libc::SIGINT, false);
}

/// `framebus-mjpeg` on a free port: the process and its base URL.
fn mjpeg_server(bus: &str) -> (ChildGuard, String) {
    let (child, l) = listening::spawn(
        Command::new(env!("CARGO_BIN_EXE_framebus-mjpeg"))
            .args(["--listen", "127.0.0.1:0", "--no-discover", "--bus", bus])
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit()),
        1,
    );
    (child, l[0].base().to_string())
}

fn mjpeg_stops_on(sig: i32) {
    let bus = TestBus::start(&tag("mjpeg-stop", sig), 320, 240);
    let (mut server, base) = mjpeg_server(&bus.name);
    // curl streams until the server ends the response; `-o` into a file
    // so the test can see bytes arrive.
    let dir = std::env::temp_dir().join(format!(
        "framebus-{}-{}",
        tag("stop", sig),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let body = dir.join("body");
    let mut curl = ChildGuard::spawn(
        Command::new("curl")
            .args(["-s", "-N", "-o"])
            .arg(&body)
            .arg(format!("{base}/{}/low.mjpg", bus.name))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let t0 = Instant::now();
    while std::fs::metadata(&body).map_or(0, |m| m.len()) < 4096 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "curl received no MJPEG"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let st = signal_and_wait(&mut server, sig, STOP_WATCHDOG);
    let st = st.unwrap_or_else(|| {
        panic!(
            "framebus-mjpeg still running {STOP_WATCHDOG:?} after {}",
            name(sig)
        )
    });
    assert_eq!(st.code(), Some(0), "exit after {}: {st:?}", name(sig));
    // A properly terminated chunked response: curl exits 0 (18 or 56 when
    // the connection is cut in the middle).
    let st = curl
        .exits_within(Duration::from_secs(10))
        .expect("curl still streaming 10 s after the server stopped");
    assert_eq!(st.code(), Some(0), "curl: {st:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mjpeg_sigterm_with_viewer_exits_zero() {
    mjpeg_stops_on(libc::SIGTERM);
}

#[test]
fn mjpeg_sigint_with_viewer_exits_zero() {
    mjpeg_stops_on(libc::SIGINT);
}
