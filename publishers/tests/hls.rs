//! HLS and Low-Latency HLS of `framebus-mjpeg`, checked at the protocol
//! level and with ffmpeg/ffprobe as real clients: playlists as RFC 8216bis
//! writes them, blocking reloads, parts within the part target, segments
//! that start with a keyframe, `EXT-X-PROGRAM-DATE-TIME` against the time
//! code burned into the frames, and clear errors for bad requests.
//!
//! Each test has its own buses (unique names), its own server on port 0
//! and its own encoders; guards stop everything. Every wait is a watchdog:
//! nothing here asserts how long something took.

mod http_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use http_support::m3u8;
use http_support::*;

const BASE: &str = "base=320x180@30,h264=baseline,bitrate=300k";
const MAIN: &str = "main=640x360@30,h264=main,bitrate=1M";

/// `GET path` with a 200 expected; the response.
fn get_ok(server: &Server, path: &str) -> Resp {
    let r = server.request("GET", path, &[], b"");
    assert_eq!(r.status, 200, "GET {path}: {r:?}");
    r
}

/// The media playlist of `bus`/`profile` (plain request).
fn playlist(server: &Server, bus: &str, profile: &str, query: &str) -> (m3u8::Media, Resp) {
    let r = get_ok(server, &format!("/{bus}/{profile}/index.m3u8{query}"));
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apple.mpegurl"),
        "{r:?}"
    );
    (m3u8::media(&r.text()), r)
}

/// Runs `ffprobe` on `file` for its first video frame's key flag and
/// every frame's count.
fn probe_frames(file: &Path) -> (bool, usize) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["frame=key_frame", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("run ffprobe (installed by `make test`)");
    assert!(
        out.status.success(),
        "ffprobe {file:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // A frame with side data prints `1,` and a blank line.
    let keys: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .filter(|l| !l.is_empty())
        .collect();
    (keys.first() == Some(&"1"), keys.len())
}

/// The first frame's presentation time in `file`, seconds.
fn first_pts(file: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args([
            "packet=pts_time",
            "-read_intervals",
            "%+#1",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no packet time in {file:?}: {text}"))
}

/// The time code of the first frame of `file` (`width`x`height`).
fn first_timecode(file: &Path, width: u32, height: u32) -> framebus::timecode::TimeCode {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let y = out.stdout;
    assert_eq!(y.len(), (width * height) as usize, "one gray frame");
    framebus::timecode::decode_with(width, height, |x, row| y[(row * width + x) as usize])
        .expect("a time code in the first frame")
}

/// Milliseconds since the Unix epoch of an RFC 3339 UTC time with
/// milliseconds (`2026-11-30T06:51:01.582Z`), through `date` so that the
/// check does not reuse the server's formatter.
fn pdt_ms(pdt: &str) -> i64 {
    let out = Command::new("date")
        .args(["-u", "-d", pdt, "+%s%3N"])
        .output()
        .expect("run date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("date could not read {pdt:?}"))
}

#[test]
fn playlists_parts_and_segments_follow_the_specification() {
    let bus = unique_name("hls-spec");
    let _feed = Feeder::start(&bus, 640, 360, 30);
    let _enc = [
        Encoder::start(&bus, BASE, &[], None),
        Encoder::start(&bus, MAIN, &[], None),
    ];
    let server = Server::start(&["--bus", &bus]);

    // Multivariant: both profiles, highest first, with what ABR needs.
    // CODECS comes from the SPS an encoder writes into its bus header
    // with its first access unit: on a loaded machine the second encoder
    // may not have written it yet when the first request comes (a
    // fresh-clone run): ask until both variants carry it.
    let mut r = get_ok(&server, &format!("/{bus}/index.m3u8"));
    assert!(
        eventually(Duration::from_secs(30), || {
            r = get_ok(&server, &format!("/{bus}/index.m3u8"));
            let vs = m3u8::multivariant(&r.text());
            vs.len() == 2 && vs.iter().all(|v| v.attrs.contains_key("CODECS"))
        }),
        "two variants with CODECS: {}",
        r.text()
    );
    assert!(
        r.header("cache-control")
            .is_some_and(|c| c.contains("no-store")),
        "{r:?}"
    );
    let vs = m3u8::multivariant(&r.text());
    assert_eq!(vs.len(), 2, "{}", r.text());
    assert!(vs[0].uri.starts_with("main/index.m3u8?s="), "{vs:?}");
    assert!(vs[1].uri.starts_with("base/index.m3u8?s="), "{vs:?}");
    assert_eq!(vs[0].attrs["RESOLUTION"], "640x360");
    assert_eq!(vs[1].attrs["RESOLUTION"], "320x180");
    assert_eq!(
        vs[1].attrs["CODECS"], "avc1.42c00d",
        "constrained baseline 1.3"
    );
    assert!(vs[0].attrs["CODECS"].starts_with("avc1.4d"), "main: {vs:?}");
    let bw = |v: &m3u8::Variant| v.attrs["BANDWIDTH"].parse::<u64>().unwrap();
    assert!(bw(&vs[0]) > bw(&vs[1]), "{vs:?}");

    // The first media playlist answers once media exists.
    let (p, r) = playlist(&server, &bus, "main", "");
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=1"),
        "{r:?}"
    );
    assert_eq!(
        p.server_control.get("CAN-BLOCK-RELOAD").map(String::as_str),
        Some("YES")
    );
    let part_target = p.part_target.expect("PART-TARGET");
    assert!((part_target - 0.2).abs() < 1e-9, "{part_target}");
    let hold: f64 = p.server_control["PART-HOLD-BACK"].parse().unwrap();
    assert!(hold >= 2.0 * part_target, "PART-HOLD-BACK {hold}");
    assert!(p.preload_hint.is_some(), "{p:?}");

    // Blocking reloads: ask for the part after the newest, then the one
    // after that, ten times; each answer contains the part asked for.
    let mut last = p.last_part().expect("a part");
    for _ in 0..10 {
        let (msn, idx) = (last.0, last.1 + 1);
        let (q, r) = playlist(
            &server,
            &bus,
            "main",
            &format!("?_HLS_msn={msn}&_HLS_part={idx}"),
        );
        let got = q.last_part().expect("parts");
        assert!(
            got >= (msn, idx) || got.0 > msn,
            "asked for {msn}.{idx}, the answer ends at {got:?}:\n{}",
            r.text()
        );
        let cc = r.header("cache-control").unwrap_or_default();
        assert!(
            cc.starts_with("public, max-age=") && cc != "public, max-age=1",
            "{cc}"
        );
        last = got;
    }
    // A request more than two segments ahead is refused at once (ten
    // ahead: segments may complete meanwhile).
    let far = last.0 + 10;
    let r = server.request(
        "GET",
        &format!("/{bus}/main/index.m3u8?_HLS_msn={far}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 400, "{r:?}");
    r.error_json();

    // Wait for three complete segments, then check the media.
    let mut p = p;
    assert!(
        eventually(Duration::from_secs(30), || {
            p = playlist(&server, &bus, "main", "").0;
            p.complete().count() >= 3
        }),
        "three segments: {p:?}"
    );
    let dir = tempdir(&bus);
    let map = p.map().expect("EXT-X-MAP").to_string();
    let init = get_ok(&server, &format!("/{bus}/main/{map}"));
    assert!(
        init.header("cache-control")
            .is_some_and(|c| c.contains("immutable")),
        "{init:?}"
    );
    for part in p.parts() {
        assert!(
            part.duration <= part_target + 1e-9,
            "part over the target: {part:?}"
        );
    }
    let mut prev = None;
    for seg in p.complete() {
        assert!(
            seg.parts.first().is_none_or(|x| x.independent),
            "a segment's first part is independent: {seg:?}"
        );
        let uri = seg.uri.as_ref().unwrap();
        let body = get_ok(&server, &format!("/{bus}/main/{uri}")).body;
        let file = dir.join(format!("seg{}.mp4", seg.msn));
        std::fs::write(&file, [init.body.as_slice(), &body].concat()).unwrap();
        let (key, frames) = probe_frames(&file);
        assert!(key, "segment {} starts with a keyframe", seg.msn);
        // EXTINF is the time to the next segment's first frame (a frame
        // the encoder skipped under load lengthens the one before it).
        let first = first_pts(&file);
        if let Some((prev_msn, prev_first, prev_dur)) = prev.replace((seg.msn, first, seg.duration))
        {
            assert!(
                (first - prev_first - prev_dur).abs() < 1e-4,
                "segment {prev_msn}: EXTINF {prev_dur}, but the next starts {} s later",
                first - prev_first
            );
        }
        assert!(
            frames as f64 <= seg.duration * 30.0 + 0.5,
            "{frames} frames in {}",
            seg.duration
        );
        // Its parts, back to back, are the segment.
        if !seg.parts.is_empty() {
            let joined: Vec<u8> = seg
                .parts
                .iter()
                .flat_map(|x| get_ok(&server, &format!("/{bus}/main/{}", x.uri)).body)
                .collect();
            assert_eq!(joined, body, "segment {} = its parts", seg.msn);
        }
        // EXT-X-PROGRAM-DATE-TIME is the first frame's capture time.
        let tc = first_timecode(&file, 640, 360);
        let pdt = pdt_ms(seg.pdt.as_deref().expect("PROGRAM-DATE-TIME"));
        let diff = pdt - (tc.realtime_us / 1000) as i64;
        eprintln!("segment {}: PDT - time code = {diff} ms", seg.msn);
        assert!(
            diff.abs() <= 1,
            "segment {}: PDT {pdt} vs time code {tc:?}",
            seg.msn
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("framebus-{tag}"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn ffmpeg_plays_the_plain_playlist_and_ffprobe_reads_every_variant() {
    let bus = unique_name("hls-ffmpeg");
    let _feed = Feeder::start(&bus, 640, 360, 30);
    let _enc = [
        Encoder::start(&bus, BASE, &[], None),
        Encoder::start(&bus, MAIN, &[], None),
    ];
    let server = Server::start(&["--bus", &bus]);
    // Cold start: the first request starts the muxer (and wakes the
    // encoder); ffmpeg needs a complete segment, which it gets.
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(server.url(&format!("/{bus}/main/index.m3u8")))
        .args(["-t", "10", "-f", "framemd5", "-"])
        .output()
        .expect("run ffmpeg");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffmpeg: {stderr}"
    );
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    assert!(frames >= 290, "10 s at 30 fps decoded, got {frames} frames");

    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "csv=p=0"])
        .arg(server.url(&format!("/{bus}/index.m3u8")))
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in ["h264,640,360", "h264,320,180"] {
        assert!(text.lines().any(|l| l.trim() == want), "{want} in {text}");
    }
}

#[test]
fn bad_requests_get_clear_errors_and_viewers_are_unaffected() {
    let bus = unique_name("hls-bad");
    let _feed = Feeder::start(&bus, 320, 180, 30);
    let _enc = Encoder::start(&bus, BASE, &[], None);
    let server = Server::start(&["--bus", &bus]);
    let (p, _) = playlist(&server, &bus, "base", "");
    let epoch = p.map().unwrap().split('/').next().unwrap().to_string();
    let cases: Vec<(String, u16)> = vec![
        (format!("/{bus}/nope/index.m3u8"), 404),
        ("/no-such-camera/index.m3u8".into(), 404),
        (format!("/{bus}/base/index.m3u8?_HLS_msn=abc"), 400),
        (format!("/{bus}/base/index.m3u8?_HLS_msn=-1"), 400),
        (format!("/{bus}/base/index.m3u8?_HLS_part=1"), 400),
        (
            format!("/{bus}/base/index.m3u8?_HLS_msn=99999999999999999999999"),
            400,
        ),
        (
            format!("/{bus}/base/index.m3u8?_HLS_msn=18446744073709551615&_HLS_part=0"),
            400,
        ),
        (
            format!("/{bus}/base/index.m3u8?_HLS_msn=1&_HLS_part=99999999999"),
            400,
        ),
        (format!("/{bus}/base/{epoch}/p99999999999999.m4s"), 404),
        (format!("/{bus}/base/{epoch}/s1.m4s"), 404),
        (format!("/{bus}/base/{epoch}/init7.mp4"), 404),
        (format!("/{bus}/base/{epoch}/..%2f..%2fetc%2fpasswd"), 404),
        (format!("/{bus}/base/{epoch}/p1.m4s.exe"), 404),
        (format!("/{bus}/base/oldepoch/p1.m4s"), 404),
        (format!("/{bus}/..%2f..%2f/index.m3u8"), 404),
        (format!("/{bus}/base/{}/p1.m4s", "x".repeat(5000)), 404),
    ];
    for (path, want) in &cases {
        let r = server.request("GET", path, &[], b"");
        assert_eq!(r.status, *want, "GET {path}: {r:?}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}: {r:?}");
        r.error_json();
    }
    // A raw bus is not HLS material.
    let raw = framebus::contract::encoder::bus_name(&format!("{bus}r"), "raw");
    let _rawfeed = Feeder::start(&raw, 320, 180, 30);
    let r = server.request("GET", &format!("/{bus}r/raw/index.m3u8"), &[], b"");
    assert_eq!(r.status, 415, "{r:?}");
    r.error_json();
    // The stream still plays, and the server is healthy.
    let (msn, idx) = p.last_part().expect("a part");
    let (q, _) = playlist(
        &server,
        &bus,
        "base",
        &format!("?_HLS_msn={msn}&_HLS_part={}", idx + 1),
    );
    assert!(
        q.last_part() > p.last_part(),
        "the playlist moves on: {q:?}"
    );
    assert!(server.healthy());
    let m = server.metrics(None);
    assert!(
        labelled(&m, "framebus_hls_bad_requests_total", "endpoint=\"hls\"").unwrap_or(0.0) >= 5.0,
        "{m}"
    );
}

#[test]
fn viewer_limit_auth_cors_and_idle_stop() {
    let bus = unique_name("hls-limits");
    let _feed = Feeder::start(&bus, 320, 180, 30);
    let _enc = Encoder::start(&bus, BASE, &[], None);
    let server = Server::start(&[
        "--bus",
        &bus,
        "--hls-max-viewers",
        "2",
        "--hls-idle",
        "2",
        "--token",
        "s3cret",
    ]);
    let auth = [("Authorization", "Bearer s3cret")];
    let path = |s: &str| format!("/{bus}/base/index.m3u8?s={s}");
    let r = server.request("GET", &path("a"), &[], b"");
    assert_eq!(r.status, 401, "{r:?}");
    // A CORS preflight needs no credentials.
    let r = server.request(
        "OPTIONS",
        &path("a"),
        &[
            ("Origin", "http://player.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
        b"",
    );
    assert!(r.status == 200 || r.status == 204, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{r:?}");
    for s in ["a", "b"] {
        let r = server.request(
            "GET",
            &path(s),
            &[auth[0], ("Origin", "http://player.example")],
            b"",
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{r:?}");
        // With credentials, no shared cache may keep it.
        assert_eq!(
            r.header("cache-control"),
            Some("private, max-age=1"),
            "{r:?}"
        );
    }
    let r = server.request("GET", &path("c"), &auth, b"");
    assert_eq!(r.status, 503, "a third viewer: {r:?}");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    r.error_json();
    // Known viewers keep playing, and a multivariant playlist is no
    // session (behind a cache every joining viewer's passes through).
    assert_eq!(server.request("GET", &path("a"), &auth, b"").status, 200);
    let r = server.request("GET", &format!("/{bus}/index.m3u8"), &auth, b"");
    assert_eq!(r.status, 200, "{r:?}");

    // The muxer shows in the API and metrics, then stops when idle, and
    // the encoder loses its reader.
    let api = server.request("GET", "/api/v1/streams", &auth, b"");
    let doc: serde_json::Value = serde_json::from_slice(&api.body).unwrap();
    assert_eq!(doc["hls"][0]["bus"], bus.as_str(), "{doc}");
    assert_eq!(doc["hls"][0]["viewers"], 2, "{doc}");
    let m = server.metrics(Some(auth[0].1));
    assert!(
        labelled(&m, "framebus_hls_muxer_parts_total", "profile=\"base\"").unwrap_or(0.0) > 0.0,
        "{m}"
    );
    assert!(
        labelled(&m, "framebus_hls_refused_total", "endpoint=\"hls\"") >= Some(1.0),
        "{m}"
    );
    let enc_bus = framebus::contract::encoder::bus_name(&bus, "base");
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(30), || {
            let api = server.request("GET", "/api/v1/streams", &auth, b"");
            let doc: serde_json::Value = serde_json::from_slice(&api.body).unwrap();
            doc["hls"].as_array().is_some_and(|a| a.is_empty())
                && framebus::stat(&enc_bus, None).is_ok_and(|i| i.readers.is_empty())
        }),
        "the muxer stops and the encoded bus loses its reader after --hls-idle"
    );
    eprintln!("idle stop after {:?}", started.elapsed());
}

#[test]
fn the_playlist_goes_on_across_an_encoder_restart() {
    let bus = unique_name("hls-restart");
    let _feed = Feeder::start(&bus, 320, 180, 30);
    let enc = Encoder::start(&bus, BASE, &[], None);
    let server = Server::start(&["--bus", &bus]);
    let (p, _) = playlist(&server, &bus, "base", "");
    let before = p.last_part().expect("a part");
    // The encoder dies and a new one takes its bus over (as the
    // supervisor does).
    drop(enc);
    let _enc = Encoder::start(&bus, BASE, &[], None);
    let mut q = p.clone();
    assert!(
        eventually(Duration::from_secs(30), || {
            q = playlist(&server, &bus, "base", "").0;
            q.complete().any(|s| s.msn > before.0 + 1)
        }),
        "no new segment after the encoder restart: {q:?}"
    );
    // Same muxer (same epoch, media sequence numbers go on), and what it
    // writes after the restart decodes.
    assert_eq!(
        q.map().map(|m| m.split('/').next()),
        p.map().map(|m| m.split('/').next())
    );
    assert!(q.media_sequence >= p.media_sequence, "{q:?}");
    let seg = q.complete().last().unwrap();
    let dir = tempdir(&bus);
    let map = q
        .segments
        .iter()
        .rev()
        .find_map(|s| s.map.clone())
        .expect("EXT-X-MAP");
    let init = get_ok(&server, &format!("/{bus}/base/{map}")).body;
    let body = get_ok(
        &server,
        &format!("/{bus}/base/{}", seg.uri.as_ref().unwrap()),
    )
    .body;
    let file = dir.join("after.mp4");
    std::fs::write(&file, [init, body].concat()).unwrap();
    let (key, frames) = probe_frames(&file);
    assert!(
        key && frames > 0,
        "segment after the restart: key {key}, {frames} frames"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
