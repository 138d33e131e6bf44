//! framebus-rtsp behaviour: status codes, limits, sharing one encoded
//! bus, clients that vanish or stall, on-demand lifecycle.

mod rtsp_support;

use std::time::Duration;

use rtsp_support::*;

const SMALL: &[&str] = &["native"];

#[test]
fn options_lists_every_method() {
    let server = RtspServer::start(&[]);
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
    // RFC 2326: "200 OK" and a Date header on every response.
    assert!(r.head.starts_with("RTSP/1.0 200 OK\r\n"), "{}", r.head);
    let date = r.header("Date").expect("Date header");
    assert!(date.ends_with(" GMT"), "{date}");
    let r = c.request("DESCRIBE", &format!("rtsp://{}/a/b", server.addr), &[]);
    assert!(
        r.head.starts_with("RTSP/1.0 404 Not Found\r\n"),
        "{}",
        r.head
    );
    assert!(r.header("Date").is_some(), "{}", r.head);
}

#[test]
fn unknown_paths_get_404() {
    let bus = TestBus::start("nf", 320, 180);
    let server = RtspServer::serve(&bus.name, SMALL, &[]);
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
    let server = RtspServer::serve(&bus.name, SMALL, &[]);
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
    let out = player.output(Duration::from_secs(60));
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
    let server = RtspServer::serve(&bus.name, &["native"], &["--max-clients", "2"]);
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
fn ten_clients_share_one_encoder_and_one_bus_reader() {
    let bus = TestBus::start("ten", 320, 180);
    let server = RtspServer::serve(&bus.name, SMALL, &[]);
    let url = server.url(&bus.name, "native");
    let players: Vec<ChildGuard> = (0..10)
        .map(|i| ffmpeg_background(&url, if i % 2 == 0 { "tcp" } else { "udp" }, 60))
        .collect();
    // One encoder reads the raw bus, one stream thread the encoded bus.
    let encoded = server.encoders[0].out.clone();
    let (mut max_raw, mut max_encoded) = (0, 0);
    let mut outs = Vec::new();
    for p in players {
        max_raw = max_raw.max(bus_readers(&bus.name));
        max_encoded = max_encoded.max(bus_readers(&encoded));
        outs.push(p.output(Duration::from_secs(90)));
    }
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(
            framemd5_count(out),
            60,
            "client {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(max_raw, 1, "one encoder for all clients");
    assert_eq!(
        max_encoded, 1,
        "one reader of the encoded bus for all clients"
    );
}

#[test]
fn killed_and_stalled_clients_do_not_disturb_others() {
    let bus = TestBus::start_noisy("kill", 640, 360);
    // An IDR every frame: enough bytes to fill the stalled client's
    // socket buffers within a second or two.
    let server = RtspServer::serve(&bus.name, &["native,bitrate=20M,gop=1"], &[]);
    let url = server.url(&bus.name, "native");
    // A client that sets up and plays over TCP but never reads.
    let mut stalled = RawClient::connect(&server.addr);
    shrink_receive_buffer(&stalled.sock, 4096);
    assert_eq!(stalled.setup_tcp(&url).status, 200);
    stalled.request("PLAY", &url, &[]);
    let victim = ffmpeg_background(&url, "tcp", 100_000);
    let survivor = ffmpeg_background(&url, "udp", 150);
    std::thread::sleep(Duration::from_secs(2));
    drop(victim); // SIGKILL mid-stream
    let out = survivor.output(Duration::from_secs(60));
    assert_eq!(
        framemd5_count(&out),
        150,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(stalled);
}

#[test]
fn encoding_stops_without_clients_and_restarts_on_demand() {
    let bus = TestBus::start("grace", 320, 180);
    let server = RtspServer::serve(&bus.name, &["native"], &[]);
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
    let server = RtspServer::serve(&bus.name, SMALL, &[]);
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
fn shrink_receive_buffer(sock: &std::net::TcpStream, size: usize) {
    socket2::SockRef::from(sock)
        .set_recv_buffer_size(size)
        .expect("SO_RCVBUF");
}

#[test]
fn silent_session_expires() {
    let bus = TestBus::start("expire", 320, 180);
    let server = RtspServer::serve(&bus.name, &["native"], &["--session-timeout", "2"]);
    let url = server.url(&bus.name, "native");
    let mut c = RawClient::connect(&server.addr);
    c.request("DESCRIBE", &url, &[]);
    let r = c.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", "RTP/AVP;unicast;client_port=9-10")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("Session").unwrap().ends_with(";timeout=2"));
    assert!(r.header("Transport").unwrap().contains("server_port="));
    // No keepalive, no RTCP: the server closes the connection.
    c.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    let closed = eventually(Duration::from_secs(20), || {
        match std::io::Read::read(&mut c.sock, &mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    });
    assert!(closed, "session did not expire");
}

#[test]
fn slow_tcp_client_drops_whole_access_units_and_restarts_at_idr() {
    let bus = TestBus::start_noisy("slow", 640, 360);
    // Rare key frames: an IDR the slow client sees after the first one
    // exists only because it fell behind and asked for it.
    let server = RtspServer::serve(&bus.name, &["native,bitrate=20M,gop=600"], &[]);
    let url = server.url(&bus.name, "native");
    let mut slow = RawClient::connect(&server.addr);
    shrink_receive_buffer(&slow.sock, 64 * 1024);
    assert_eq!(slow.setup_tcp(&url).status, 200);
    assert_eq!(slow.request("PLAY", &url, &[]).status, 200);
    let watcher = ffmpeg_background(&url, "tcp", 120);
    // Read about 320 kB/s of a stream of about 2.5 MB/s, for 8 seconds.
    let mut data = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let end = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < end {
        match std::io::Read::read(&mut slow.sock, &mut chunk) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("slow client read: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Walk the interleaved RTP packets.
    let (mut i, mut prev_seq, mut idrs, mut packets) = (0, None::<u16>, 0, 0);
    while i + 4 <= data.len() {
        assert_eq!(data[i], b'$', "interleaved framing at byte {i}");
        let len = usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
        if i + 4 + len > data.len() {
            break;
        }
        let p = &data[i + 4..i + 4 + len];
        if data[i + 1] == 0 {
            packets += 1;
            let seq = u16::from_be_bytes([p[2], p[3]]);
            if let Some(prev) = prev_seq {
                assert_eq!(
                    seq,
                    prev.wrapping_add(1),
                    "per-client sequence is continuous"
                );
            }
            prev_seq = Some(seq);
            let nal = p[12] & 0x1f;
            if nal == 7 {
                idrs += 1; // SPS precedes every IDR
            }
        }
        i += 4 + len;
    }
    assert!(packets > 0, "the slow client received media");
    assert!(
        idrs >= 2,
        "the slow client fell behind and restarted at a new IDR ({idrs} IDRs in {packets} packets)"
    );
    let out = watcher.output(Duration::from_secs(60));
    assert_eq!(
        framemd5_count(&out),
        120,
        "the other client is undisturbed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn clients_sending_keepalives_outlive_a_short_session_timeout() {
    let bus = TestBus::start("alive", 320, 180);
    let server = RtspServer::serve(&bus.name, &["native"], &["--session-timeout", "2"]);
    let url = server.url(&bus.name, "native");
    // 6 s of video with a 2 s timeout: ffmpeg keeps the session alive
    // (GET_PARAMETER every timeout/2, RTCP receiver reports).
    let tcp = ffmpeg_background(&url, "tcp", 180);
    let udp = ffmpeg_background(&url, "udp", 180);
    for (name, p) in [("tcp", tcp), ("udp", udp)] {
        let out = p.output(Duration::from_secs(60));
        assert_eq!(
            framemd5_count(&out),
            180,
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Whether the server closed `sock` (EOF or reset) within `limit`, while
/// the client keeps trickling one byte of an unfinished request head
/// every 200 ms (slowloris) when `trickle` is set.
fn closed_by_server(mut sock: std::net::TcpStream, trickle: bool, limit: Duration) -> bool {
    use std::io::{Read, Write};
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    if trickle {
        sock.write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Slow: ")
            .unwrap();
    }
    let end = std::time::Instant::now() + limit;
    let mut buf = [0u8; 1024];
    while std::time::Instant::now() < end {
        if trickle && sock.write_all(b"a").is_err() {
            return true;
        }
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn idle_and_slowloris_connections_are_closed_after_the_request_timeout() {
    let server = RtspServer::start(&["--request-timeout", "2"]);
    let trickler = std::net::TcpStream::connect(&server.addr).unwrap();
    let idle = std::net::TcpStream::connect(&server.addr).unwrap();
    let t = std::thread::spawn(move || closed_by_server(trickler, true, Duration::from_secs(30)));
    assert!(
        closed_by_server(idle, false, Duration::from_secs(30)),
        "an idle connection without a session was kept"
    );
    assert!(
        t.join().unwrap(),
        "a client trickling an endless request head was kept"
    );
    // A connection that keeps completing requests stays.
    let mut c = RawClient::connect(&server.addr);
    for _ in 0..4 {
        assert_eq!(c.request("OPTIONS", "*", &[]).status, 200);
        std::thread::sleep(Duration::from_millis(1000));
    }
    assert_eq!(c.request("OPTIONS", "*", &[]).status, 200);
}
