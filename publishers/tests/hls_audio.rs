//! The camera's sound in LL-HLS (docs/hls.md#sound): the real producer
//! with `--audio tone` (a 1 kHz beep at every whole second of the wall
//! clock, the clock the test pattern's time code shows), an H.264
//! encoder, the Opus encoder and `framebus-mjpeg`; ffprobe and ffmpeg
//! play the playlists as clients.
//!
//! - `the_parts_carry_the_sound_in_sync`: the multivariant `CODECS` says
//!   `opus`; ffprobe on the multivariant and the media playlist sees h264
//!   and opus; ffmpeg records 6 s of the media playlist (`-c copy`), the
//!   beep is 1 kHz and lands on the picture's whole second within ±40 ms
//!   (printed);
//! - `hls_js_plays_the_muxed_sound`: hls.js (npm) in headless Chromium,
//!   low-latency mode, plays the multivariant playlist (`CODECS`
//!   `avc1.…,opus`): Media Source takes the muxed parts (no buffer or
//!   codec error, nothing fatal) and frames are decoded (the driver,
//!   `publishers/tests/browser/hls.mjs`, reports no audio figures);
//! - `a_camera_without_sound_stays_video_only`: no `opus` anywhere.
//!
//! Each test has its own buses, processes and server; guards stop them.
//! Every tool run has a watchdog.

mod http_support;

use std::process::Command;
use std::time::Duration;

use framebus_test_support::av::{av_offsets, beep_hz, beep_onsets, stream_codecs, ToneCamera};
use framebus_test_support::hls::{hls_play, HlsPlay, Until};
use framebus_test_support::{eventually, run_to_end, TempDir};
use http_support::{m3u8, Server};

const PROFILE: &str = "low=320x240@30,bitrate=600k,gop=30";
/// How far a beep may land from the picture's whole second.
const MAX_OFFSET_MS: f64 = 40.0;

/// The streams ffprobe sees at `url`, once each (ffprobe lists an HLS
/// playlist's streams under its program and again on their own).
fn streams(url: &str) -> Vec<(String, String)> {
    let mut v = stream_codecs(url, &[]);
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
    v
}

/// The multivariant playlist's one variant's `CODECS`, once the encoder
/// wrote its SPS (30 s watchdog).
fn codecs(server: &Server, bus: &str) -> String {
    let mut got = String::new();
    let ok = eventually(Duration::from_secs(30), || {
        let r = server.request("GET", &format!("/{bus}/index.m3u8"), &[], b"");
        let vs = m3u8::multivariant(&r.text());
        got = vs
            .first()
            .and_then(|v| v.attrs.get("CODECS").cloned())
            .unwrap_or_default();
        !got.is_empty()
    });
    assert!(ok, "no CODECS for {bus}");
    got
}

#[test]
fn the_parts_carry_the_sound_in_sync() {
    let cam = ToneCamera::start("hls-av", "320x240", PROFILE, true);
    let server = Server::start(&["--bus", &cam.bus]);
    let c = codecs(&server, &cam.bus);
    assert!(c.starts_with("avc1.") && c.ends_with(",opus"), "{c}");

    let media = server.url(&format!("/{}/low/index.m3u8", cam.bus));
    let multi = server.url(&format!("/{}/index.m3u8", cam.bus));
    let want = [
        ("video".to_string(), "h264".to_string()),
        ("audio".to_string(), "opus".to_string()),
    ];
    for url in [&multi, &media] {
        assert_eq!(streams(url), want, "{url}");
    }

    let dir = TempDir::new("hls-av");
    let file = dir.path().join("hls.mkv");
    let out = run_to_end(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i", &media])
            .args(["-t", "6", "-c", "copy"])
            .arg(&file),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let onsets = beep_onsets(&file);
    assert!(onsets.len() >= 4, "beeps at {onsets:?}");
    let hz: Vec<f64> = onsets.iter().map(|&o| beep_hz(&file, o)).collect();
    eprintln!("HLS: beeps at {onsets:.3?} s of {hz:.0?} Hz");
    assert!(
        hz.iter().all(|h| (h - 1000.0).abs() < 30.0),
        "the beeps are {hz:.0?} Hz"
    );
    let offsets = av_offsets(&file);
    eprintln!("HLS: A/V offsets (ms, sound after picture > 0): {offsets:.1?}");
    assert!(offsets.len() >= 4, "{offsets:?}");
    for o in &offsets {
        assert!(
            o.abs() <= MAX_OFFSET_MS,
            "A/V offset {o:.1} ms ({offsets:.1?})"
        );
    }
}

#[test]
fn hls_js_plays_the_muxed_sound() {
    let cam = ToneCamera::start("hls-js-av", "320x240", PROFILE, true);
    let server = Server::start(&["--bus", &cam.bus]);
    assert!(codecs(&server, &cam.bus).ends_with(",opus"));
    let mut opts = HlsPlay::new(server.url(&format!("/{}/index.m3u8", cam.bus)));
    opts.seconds = 20.0;
    opts.until = Until {
        frames_decoded: Some(90),
        ..Until::default()
    };
    let r = hls_play(&opts);
    let c = &r.clients[0];
    eprintln!(
        "hls.js {}: levels {:?}, {} frames decoded, {:?} audio bytes decoded, errors {:?}",
        r.hls_js.as_deref().unwrap_or("?"),
        c.levels
            .iter()
            .map(|l| l.codecs.clone())
            .collect::<Vec<_>>(),
        c.frames_decoded,
        c.audio_decoded_bytes,
        c.errors
            .iter()
            .map(|e| e.details.as_str())
            .collect::<Vec<_>>()
    );
    assert!(c.playing, "never played: {c:#?}");
    assert!(c.fatal_error.is_none(), "fatal error: {c:#?}");
    assert!(c.frames_decoded >= 90, "{c:#?}");
    // Chromium's audio decoder took the sound (muted or not): at 64 kbit/s
    // the 3 s it plays are about 24 kB of Opus; 4 kB is half a second.
    // None means the audio track never reached the decoder.
    let audio = c.audio_decoded_bytes.unwrap_or(0);
    assert!(audio > 4_000, "{audio} bytes of Opus decoded: {c:#?}");
    // The driver reports a level's video codec only (`videoCodec`); the
    // multivariant's CODECS, checked above, has the `opus` hls.js read.
    // A part Media Source refused would be a buffer error here.
    let media_errors: Vec<_> = c
        .errors
        .iter()
        .filter(|e| e.details.contains("buffer") && !e.details.contains("Stalled"))
        .collect();
    assert!(media_errors.is_empty(), "{media_errors:#?}");
}

#[test]
fn a_camera_without_sound_stays_video_only() {
    let cam = ToneCamera::start("hls-mute", "320x240", PROFILE, false);
    let server = Server::start(&["--bus", &cam.bus]);
    let c = codecs(&server, &cam.bus);
    assert!(c.starts_with("avc1.") && !c.contains("opus"), "{c}");
    let media = server.url(&format!("/{}/low/index.m3u8", cam.bus));
    assert_eq!(streams(&media), [("video".to_string(), "h264".to_string())]);
}
