//! Hostile WHEP clients against `framebus-mjpeg` while a real viewer
//! (headless Chromium) plays: malformed and unusable offers, wrong content
//! types and sizes, unknown streams and sessions, and a flood of valid
//! offers that never connect. Every refusal must be a clear 4xx/5xx JSON
//! `{error, status}`, the server must stay up, the flood must stay within
//! `--webrtc-max-sessions` (503 with `Retry-After` beyond), the sessions
//! that never connect must end by themselves, and the viewer must keep
//! decoding without a freeze the server caused.
//!
//! HTTP is plain HTTP/1.1 over a `TcpStream` (`http_support`). Every
//! wait is a watchdog.

mod http_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use framebus::contract::encoder as enc;
use http_support::*;

const BASE: &str = "base=320x180@30,h264=baseline";
/// `--webrtc-max-sessions` of the server under attack.
const MAX_SESSIONS: usize = 8;
/// Valid offers in the flood, and the connections sending them at once.
const FLOOD: usize = 300;
const FLOOD_THREADS: usize = 10;
/// How long the real viewer plays.
const PLAY_SECONDS: f64 = 14.0;
/// Sessions that never connect end after `session::CONNECT_TIMEOUT`
/// (20 s); the watchdog on them.
const NEVER_CONNECTED_GONE: Duration = Duration::from_secs(40);

/// `offer` with its session-level and media-level lines edited: `keep`
/// filters lines, `map` rewrites them.
fn edit(offer: &str, keep: impl Fn(&str) -> bool, map: impl Fn(&str) -> String) -> String {
    offer
        .split("\r\n")
        .filter(|l| !l.is_empty() && keep(l))
        .map(|l| map(l) + "\r\n")
        .collect()
}

/// The payload types of H.264 (and their RTX) in the Chrome offer.
fn is_h264_line(l: &str, h264_pts: &[String]) -> bool {
    let Some(rest) = l
        .strip_prefix("a=rtpmap:")
        .or_else(|| l.strip_prefix("a=fmtp:"))
        .or_else(|| l.strip_prefix("a=rtcp-fb:"))
    else {
        return false;
    };
    let pt = rest.split([' ', ':']).next().unwrap_or("");
    h264_pts.iter().any(|p| p == pt)
}

/// The offer accepting only VP8 (and its RTX).
fn vp8_only() -> String {
    let keep_pts = ["96", "97"];
    let keep = |l: &str| {
        let rest = l
            .strip_prefix("a=rtpmap:")
            .or_else(|| l.strip_prefix("a=fmtp:"))
            .or_else(|| l.strip_prefix("a=rtcp-fb:"));
        match rest {
            Some(r) => keep_pts.contains(&r.split(' ').next().unwrap_or("")),
            None => true,
        }
    };
    edit(CHROME_OFFER, keep, |l| {
        if l.starts_with("m=video ") {
            let f: Vec<&str> = l.split(' ').collect();
            format!("{} {} {} 96 97", f[0], f[1], f[2])
        } else {
            l.to_string()
        }
    })
}

/// The Chrome offer's video section turned into audio (Opus), no video.
fn audio_only() -> String {
    let mut s = String::new();
    for l in CHROME_OFFER.split("\r\n").filter(|l| !l.is_empty()) {
        if l.starts_with("m=video ") {
            let f: Vec<&str> = l.split(' ').collect();
            s.push_str(&format!("m=audio {} {} 111\r\n", f[1], f[2]));
        } else if l.starts_with("a=rtpmap:")
            || l.starts_with("a=fmtp:")
            || l.starts_with("a=rtcp-fb:")
            || l.starts_with("a=extmap:")
        {
            continue;
        } else {
            s.push_str(l);
            s.push_str("\r\n");
            if l == "a=rtcp-mux" {
                s.push_str(
                    "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n",
                );
            }
        }
    }
    s
}

/// `n` receive-only H.264 video m-lines, each complete (ICE, DTLS).
fn many_m_lines(n: usize) -> String {
    let attr = |name: &str| {
        CHROME_OFFER
            .split("\r\n")
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in the fixture"))
            .to_string()
    };
    let media = [
        attr("a=ice-ufrag:"),
        attr("a=ice-pwd:"),
        attr("a=fingerprint:"),
        attr("a=setup:"),
    ]
    .join("\r\n");
    let mids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let mut s = format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\n",
        mids.join(" ")
    );
    for i in 0..n {
        s.push_str(&format!(
            "m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\n{media}\r\na=mid:{i}\r\n\
             a=recvonly\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\n\
             a=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n"
        ));
    }
    s
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect()
}

/// Asserts `r` is the JSON error `status`.
fn refused(what: &str, r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    let v = r.error_json();
    eprintln!("{what}: {status} {}", v["error"]);
}

/// Asserts `r` is some 4xx JSON error.
fn refused_4xx(what: &str, r: &Resp) {
    assert!((400..500).contains(&r.status), "{what}: {r:?}");
    let v = r.error_json();
    eprintln!("{what}: {} {}", r.status, v["error"]);
}

#[test]
fn hostile_whep_clients_do_not_disturb_a_viewer() {
    let bus = unique_name("wrtc-hostile");
    let _feed = Feeder::start(&bus, 320, 180, 30);
    let encoder = Encoder::start(&bus, BASE, &[], None);
    // A raw bus under an encoded bus's name: `/{raw_cam}/p/whep` finds it.
    let raw_cam = unique_name("wrtc-rawcam");
    let _raw = Feeder::start(&enc::bus_name(&raw_cam, "p"), 320, 180, 5);
    let server = Server::start(&[
        "--bus",
        &bus,
        "--webrtc-max-sessions",
        &MAX_SESSIONS.to_string(),
    ]);

    // The viewer, playing while the rest goes on.
    let watch = BusWatch::start(&encoder.out);
    let url = server.whep(&bus, "base");
    let viewer = std::thread::spawn(move || {
        let mut opts = WhepPlay::new(url);
        opts.seconds = PLAY_SECONDS;
        browser::whep_play(&opts)
    });
    let feed_label = format!("bus=\"{}\"", encoder.out);
    let playing = eventually(Duration::from_secs(60), || {
        viewer.is_finished()
            || labelled(
                &server.metrics(None),
                "framebus_webrtc_feed_sessions",
                &feed_label,
            ) == Some(1.0)
    });
    assert!(playing && !viewer.is_finished(), "the viewer never played");

    let path = format!("/{bus}/base/whep");
    let post = |body: &[u8]| server.post_sdp(&path, body);

    // Offers that do not parse.
    refused("garbage", &post(b"hello, this is not SDP at all"), 400);
    refused("empty", &post(b""), 400);
    let h264_at = CHROME_OFFER
        .find("a=rtpmap:102 H264")
        .expect("the fixture offers H.264");
    for cut in [1, 9, 40, 120, 400, h264_at / 2, h264_at] {
        refused_4xx(
            &format!("truncated at {cut}"),
            &post(&CHROME_OFFER.as_bytes()[..cut]),
        );
    }
    refused("binary", &post(&noise(4096, 7)), 400);
    let mut nul = CHROME_OFFER.as_bytes().to_vec();
    nul[200] = 0;
    nul[1000] = 0xff;
    refused_4xx("NUL and 0xff inside", &post(&nul));
    refused(
        "10,000 m-lines",
        &post(many_m_lines(10_000).as_bytes()),
        413,
    );
    let many = many_m_lines(140);
    assert!(many.len() < 64 * 1024, "{}", many.len());
    let r = post(many.as_bytes());
    if r.status == 201 {
        // Acceptable: the first video m-line is played; end it now.
        eprintln!("140 m-lines: 201");
        let loc = r.header("location").expect("Location").to_string();
        assert_eq!(server.request("DELETE", &loc, &[], b"").status, 200);
    } else {
        refused_4xx("140 m-lines", &r);
    }

    // Offers that parse but cannot be served.
    refused("audio only", &post(audio_only().as_bytes()), 400);
    let sendonly = CHROME_OFFER.replace("a=recvonly", "a=sendonly");
    refused("sendonly video", &post(sendonly.as_bytes()), 400);
    let inactive = CHROME_OFFER.replace("a=recvonly", "a=inactive");
    refused("inactive video", &post(inactive.as_bytes()), 400);
    refused("VP8 only", &post(vp8_only().as_bytes()), 406);
    let offer = CHROME_OFFER.as_bytes();
    let h264_pts: Vec<String> = CHROME_OFFER
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter(|r| r.contains(" H264/"))
        .filter_map(|r| r.split(' ').next().map(str::to_string))
        .collect();
    let mode0 = edit(
        CHROME_OFFER,
        |l| !(is_h264_line(l, &h264_pts) && l.contains("packetization-mode=1")),
        str::to_string,
    );
    refused_4xx("H.264 packetization-mode 0 only", &post(mode0.as_bytes()));

    // Streams that do not exist, or are not encoded.
    refused(
        "unknown bus",
        &server.post_sdp(&format!("/{}/base/whep", unique_name("nobus")), offer),
        404,
    );
    refused(
        "unknown profile",
        &server.post_sdp(&format!("/{bus}/nosuch/whep"), offer),
        404,
    );
    refused(
        "invalid bus name",
        &server.post_sdp("/..%2F..%2Fetc/base/whep", offer),
        404,
    );
    refused(
        "raw bus",
        &server.post_sdp(&format!("/{raw_cam}/p/whep"), offer),
        415,
    );

    // Sizes and content types.
    let mut big = CHROME_OFFER.as_bytes().to_vec();
    big.resize(70 * 1024, b'a');
    refused("70 KiB", &post(&big), 413);
    for ct in ["text/plain", "application/json", "application/sdpx"] {
        let r = server.request("POST", &path, &[("Content-Type", ct)], offer);
        refused(&format!("Content-Type {ct}"), &r, 415);
    }
    refused(
        "no Content-Type",
        &server.request("POST", &path, &[], offer),
        415,
    );

    // Sessions that do not exist, trickle ICE.
    refused(
        "DELETE unknown",
        &server.request(
            "DELETE",
            &format!("{path}/00000000000000000000000000000000"),
            &[],
            b"",
        ),
        404,
    );
    let r = server.request(
        "PATCH",
        &format!("{path}/00000000000000000000000000000000"),
        &[("Content-Type", "application/trickle-ice-sdpfrag")],
        b"a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n",
    );
    refused("PATCH", &r, 405);
    assert!(r.header("allow").is_some(), "{r:?}");
    assert!(server.healthy(), "/healthz after the malformed offers");

    // The flood: valid offers from several connections at once. The
    // viewer holds one session; MAX_SESSIONS - 1 more are created (and
    // never connect); every other offer gets 503 with Retry-After.
    server.wait_sessions(1, Duration::from_secs(15), None);
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for _ in 0..FLOOD_THREADS {
            let (next, results, addr, path) = (&next, &results, &server.addr, &path);
            s.spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < FLOOD {
                    let r = request(
                        addr,
                        "POST",
                        path,
                        &[("Content-Type", "application/sdp")],
                        CHROME_OFFER.as_bytes(),
                    );
                    results.lock().unwrap().push(r);
                }
            });
        }
    });
    let results = results.lock().unwrap();
    assert_eq!(results.len(), FLOOD);
    let created: Vec<&Resp> = results.iter().filter(|r| r.status == 201).collect();
    for r in results.iter().filter(|r| r.status != 201) {
        refused("flood", r, 503);
        assert!(r.header("retry-after").is_some(), "{r:?}");
    }
    for r in &created {
        assert!(r.text().starts_with("v=0"), "{r:?}");
        assert!(r.header("location").is_some(), "{r:?}");
    }
    let live = server.sessions(None).expect("framebus_webrtc_sessions");
    assert!(
        created.len() == MAX_SESSIONS - 1 && live <= MAX_SESSIONS as f64,
        "{} offers of the flood were answered and {live} sessions are live; \
         --webrtc-max-sessions {MAX_SESSIONS} with one viewer allows {} more",
        created.len(),
        MAX_SESSIONS - 1
    );
    assert!(server.healthy(), "/healthz after the flood");
    let flood_done = std::time::Instant::now();

    let r = viewer.join().expect("the viewer's thread");
    let src = watch.finish();
    let v = &r.viewers[0];
    // 25 fps over the run, less 20 %; less if the source itself could
    // not keep up (a starved machine).
    let min = src.expect(25.0 * PLAY_SECONDS * 0.8, 25.0);
    assert_played(v, min, (320, 180), "viewer under attack");
    assert_no_server_freeze(v, &src, "viewer under attack");
    let inb = v.stats.inbound.as_ref().expect("inbound");
    assert_eq!(inb.packets_lost, Some(0), "{inb:#?}");
    assert_eq!(v.delete_status, Some(200), "{v:#?}");

    // The flood's sessions never connect: they end by themselves.
    let t = std::time::Instant::now();
    server.wait_sessions(0, NEVER_CONNECTED_GONE, None);
    eprintln!(
        "the flood's sessions were gone {:?} after the viewer left, {:?} after the flood",
        t.elapsed(),
        flood_done.elapsed()
    );
    let m = server.metrics(None);
    let started = sample(&m, "framebus_webrtc_sessions_started_total").unwrap_or(0.0);
    assert!(started >= MAX_SESSIONS as f64, "{m}");
    assert!(server.healthy(), "/healthz at the end");
    let mut server = server;
    assert!(server.proc.alive(), "the server died");
}
