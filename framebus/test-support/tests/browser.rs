//! The Chromium harness itself (`publishers/tests/browser/whep.mjs`):
//! its loopback self-test plays and decodes the time code, and a refused
//! WHEP `POST` is reported, not a harness failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use framebus_test_support::browser::{self, WhepPlay};

#[test]
fn self_test_decodes_h264_and_the_time_code() {
    let r = browser::self_test(3.0, 2);
    assert_eq!(r.viewers.len(), 2);
    for v in &r.viewers {
        assert_eq!(v.post_status, Some(201), "{v:?}");
        assert_eq!(v.connection_state, "connected", "{v:?}");
        let inb = v.stats.inbound.as_ref().expect("inbound video");
        assert_eq!(inb.codec.as_deref(), Some("video/H264"), "{inb:?}");
        assert_eq!((inb.frame_width, inb.frame_height), (Some(640), Some(480)));
        assert!(v.stats.frames_decoded() >= 10, "{v:?}");
        assert!(v.first_frame_ms.is_some(), "{v:?}");
    }
    let tc = r.timecode.expect("time codes of viewer 0");
    // The first frames come at the encoder's start bitrate (300 kbit/s):
    // a blurred cell there may be refused.
    assert!(tc.decoded >= 10 && tc.refused * 10 <= tc.decoded, "{tc:?}");
    let lat = tc.latency_ms.expect("latency samples");
    // Same page, same clock: a time code read back must be recent, and
    // not from the future by more than a rounding.
    assert!(lat.p50 > -1.0 && lat.max < 5000.0, "{lat:?}");
    assert!(r.page_errors.is_empty(), "{:?}", r.page_errors);
}

/// Answers `/healthz` with 200 and everything else with 503 and
/// `Retry-After: 7`, for `n` requests.
fn refusing_server(n: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for conn in l.incoming().take(n) {
            let Ok(mut conn) = conn else { return };
            let mut rd = BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            let _ = rd.read_line(&mut line);
            let mut length = 0;
            loop {
                let mut h = String::new();
                if rd.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let _ = rd.by_ref().take(length).read_to_end(&mut Vec::new());
            let reply = if line.starts_with("GET /healthz ") {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            } else {
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfull"
            };
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    url
}

#[test]
fn refused_post_is_reported() {
    // /healthz, the POST, a favicon request; the thread then waits in
    // accept() until the test process ends.
    let base = refusing_server(8);
    let mut opts = WhepPlay::new(format!("{base}/cam0/low/whep"));
    opts.seconds = 0.5;
    let r = browser::whep_play(&opts);
    let v = &r.viewers[0];
    assert_eq!(v.post_status, Some(503), "{v:?}");
    assert_eq!(v.retry_after.as_deref(), Some("7"));
    assert_eq!(v.post_error.as_deref(), Some("full"));
    assert!(v.location.is_none() && v.stats.inbound.is_none(), "{v:?}");
    assert_eq!(v.frames_presented, 0);
}
