//! framebus-rtsp behaviour: status codes, limits, sharing one encoder,
//! clients that vanish or stall, on-demand lifecycle.

mod rtsp_support;

use std::os::fd::AsRawFd;
use std::time::Duration;

use rtsp_support::*;

const SMALL: &[&str] = &["--profile", "native"];

#[test]
fn options_lists_every_method() {
    let server = RtspServer::start(SMALL);
    let mut c = RawClient::connect(&server.addr);
    let r = c.request("OPTIONS", &format!("rtsp://{}/", server.addr), &[]);
    assert_eq!(r.status, 200);
    let public = r.header("Public").unwrap();
    for m in [
        "OPTIONS",
        "DESCRIBE",
        "SETUP",
        "PLAY",
        "PAUSE",
        "TEARDOWN",
        "GET_PARAMETER",
        "SET_PARAMETER",
    ] {
        assert!(public.contains(m), "{m} missing from {public}");
    }
    assert_eq!(r.header("CSeq"), Some("1"));
}

#[test]
fn unknown_paths_get_404() {
    let bus = TestBus::start("nf", 320, 180);
    let server = RtspServer::start(SMALL);
    let mut c = RawClient::connect(&server.addr);
    for url in [
        server.url("no-such-bus", "native"),
        server.url(&bus.name, "no-such-profile"),
        format!("rtsp://{}/only-one-part", server.addr),
        format!("rtsp://{}/{}/native/x/y", server.addr, bus.name),
    ] {
        let r = c.request("DESCRIBE", &url, &[]);
        assert_eq!(r.status, 404, "{url}: {r:?}");
    }
    // The connection is still usable.
    let r = c.request("DESCRIBE", &server.url(&bus.name, "native"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let sdp = String::from_utf8_lossy(&r.body);
    assert!(sdp.contains("sprop-parameter-sets="), "{sdp}");
    assert!(sdp.contains("packetization-mode=1"), "{sdp}");
}

#[test]
fn malformed_request_gets_400_and_everything_lives_on() {
    let bus = TestBus::start("bad", 320, 180);
    let server = RtspServer::start(SMALL);
    let url = server.url(&bus.name, "native");
    let player = ffmpeg_background(&url, "tcp", 90);
    let mut c = RawClient::connect(&server.addr);
    c.send_raw(b"\x01\x02 this is not RTSP \xff\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 400, "{r:?}");
    // Same connection, a valid request afterwards.
    let r = c.request("OPTIONS", &url, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    // A bad Transport header is a 400 too.
    c.request("DESCRIBE", &url, &[]);
    let r = c.request(
        "SETUP",
        &url,
        &[("Transport", "RTP/AVP;unicast;client_port=x")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    // Another client is undisturbed.
    let out = player.wait_timeout(Duration::from_secs(60));
    assert_eq!(
        framemd5_count(&out),
        90,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And a new one still works.
    let (n, _) = ffmpeg_decode(&url, "tcp", 10);
    assert_eq!(n, 10);
}

#[test]
fn beyond_max_clients_gets_503_and_a_freed_slot_is_reusable() {
    let bus = TestBus::start("max", 320, 180);
    let server = RtspServer::start(&["--profile", "native", "--max-clients", "2"]);
    let url = server.url(&bus.name, "native");
    let mut a = RawClient::connect(&server.addr);
    let mut b = RawClient::connect(&server.addr);
    assert_eq!(a.setup_tcp(&url).status, 200);
    assert_eq!(b.setup_tcp(&url).status, 200);
    let mut c = RawClient::connect(&server.addr);
    let r = c.setup_tcp(&url);
    assert_eq!(r.status, 503, "{r:?}");
    let (n, out) = ffmpeg_decode(&url, "tcp", 5);
    assert_eq!(n, 0, "ffmpeg must be refused: {out:?}");
    // TEARDOWN frees a slot.
    let r = a.request("TEARDOWN", &url, &[]);
    assert_eq!(r.status, 200);
    let (n, out) = ffmpeg_decode(&url, "tcp", 10);
    assert_eq!(n, 10, "{}", String::from_utf8_lossy(&out.stderr));
    // A vanished client (socket closed without TEARDOWN) frees its slot.
    drop(b);
    let ok = eventually(Duration::from_secs(10), || {
        ffmpeg_decode(&url, "tcp", 1).0 == 1
    });
    assert!(ok, "slot of the closed connection was not freed");
}

#[test]
fn ten_clients_share_one_encoder() {
    let bus = TestBus::start("ten", 320, 180);
    let server = RtspServer::start(SMALL);
    let url = server.url(&bus.name, "native");
    let players: Vec<ChildGuard> = (0..10)
        .map(|i| ffmpeg_background(&url, if i % 2 == 0 { "tcp" } else { "udp" }, 60))
        .collect();
    // One encoder means one reader attached to the bus.
    let mut max_readers = 0;
    let mut outs = Vec::new();
    for p in players {
        max_readers = max_readers.max(bus_readers(&bus.name));
        outs.push(p.wait_timeout(Duration::from_secs(90)));
    }
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(
            framemd5_count(out),
            60,
            "client {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(max_readers, 1, "one encoder (bus reader) for all clients");
}

#[test]
fn killed_and_stalled_clients_do_not_disturb_others() {
    let bus = TestBus::start("kill", 320, 180);
    let server = RtspServer::start(SMALL);
    let url = server.url(&bus.name, "native");
    // A client that sets up and plays over TCP but never reads.
    let mut stalled = RawClient::connect(&server.addr);
    shrink_receive_buffer(&stalled.sock);
    assert_eq!(stalled.setup_tcp(&url).status, 200);
    stalled.request("PLAY", &url, &[]);
    let victim = ffmpeg_background(&url, "tcp", 100_000);
    let survivor = ffmpeg_background(&url, "udp", 150);
    std::thread::sleep(Duration::from_secs(2));
    drop(victim); // SIGKILL mid-stream
    let out = survivor.wait_timeout(Duration::from_secs(60));
    assert_eq!(
        framemd5_count(&out),
        150,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(stalled);
}

#[test]
fn encoder_stops_after_grace_and_restarts_on_demand() {
    let bus = TestBus::start("grace", 320, 180);
    let server = RtspServer::start(&["--profile", "native", "--grace", "1"]);
    let url = server.url(&bus.name, "native");
    assert_eq!(bus_readers(&bus.name), 0, "no encoder before a client");
    let (n, _) = ffmpeg_decode(&url, "tcp", 10);
    assert_eq!(n, 10);
    assert!(
        eventually(Duration::from_secs(15), || bus_readers(&bus.name) == 0),
        "encoder still running long after the grace time"
    );
    let (n, _) = ffmpeg_decode(&url, "udp", 10);
    assert_eq!(n, 10, "restarts for a new client");
}

#[test]
fn keepalives_and_pause() {
    let bus = TestBus::start("keep", 320, 180);
    let server = RtspServer::start(SMALL);
    let url = server.url(&bus.name, "native");
    let mut c = RawClient::connect(&server.addr);
    let r = c.setup_tcp(&url);
    assert_eq!(r.status, 200);
    let session = r.header("Session").unwrap().to_string();
    assert!(session.ends_with(";timeout=60"), "{session}");
    assert!(r.header("Transport").unwrap().contains("interleaved=0-1"));
    let r = c.request("PLAY", &url, &[]);
    assert_eq!(r.status, 200);
    assert!(r.header("RTP-Info").unwrap().contains("seq="), "{r:?}");
    for m in ["GET_PARAMETER", "SET_PARAMETER", "PAUSE", "GET_PARAMETER"] {
        assert_eq!(c.request(m, &url, &[]).status, 200, "{m}");
    }
    c.session = Some("WRONG".into());
    assert_eq!(c.request("PLAY", &url, &[]).status, 454);
}

/// Makes a socket's receive window tiny so that a client that does not read
/// stalls the server's sends within a few frames.
fn shrink_receive_buffer(sock: &std::net::TcpStream) {
    let size: libc::c_int = 4096;
    // SAFETY: `sock` is an open socket for the duration of the call; the
    // option value points to a live c_int of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
}
