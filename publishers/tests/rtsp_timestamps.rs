//! RTP timestamps as a real client sees them: ffmpeg decoding to `-f null`
//! complains ("non monotonically increasing dts") when two frames of a
//! 30 fps stream land on the same 1/30 s tick, which happens when the
//! frame-rate reduction picks two captures less than a frame apart (a
//! camera that drops frames, or an encoder that fell behind and skipped
//! some). The stream must stay on its frame grid whatever the source does.

mod rtsp_support;

use std::process::Command;
use std::time::Duration;

use rtsp_support::*;

/// Decodes 60 frames to `-f null` at warning level; returns (frames
/// decoded, ffmpeg's stderr).
fn ffmpeg_null(url: &str, transport: &str) -> (u32, String) {
    let out = run(
        Command::new("ffmpeg").args([
            "-nostdin",
            "-hide_banner",
            "-nostats",
            "-loglevel",
            "warning",
            "-progress",
            "pipe:1",
            "-rtsp_transport",
            transport,
            "-i",
            url,
            "-frames:v",
            "60",
            "-f",
            "null",
            "-",
        ]),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let frames = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse().ok())
        .max()
        .unwrap_or(0);
    (frames, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_clean(url: &str, transport: &str) {
    let (frames, stderr) = ffmpeg_null(url, transport);
    assert_eq!(frames, 60, "{transport}: ffmpeg stderr:\n{stderr}");
    let bad: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("non monotonically increasing dts")
                || l.contains("decode_slice")
                || l.contains("error")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{transport}: ffmpeg complained:\n{}",
        bad.join("\n")
    );
}

/// A 60 fps camera that loses every third capture, served at 30 fps: the
/// captures left are 16.7 ms and 33.3 ms apart.
#[test]
fn dropping_60fps_camera_at_30fps_has_monotonic_timestamps_tcp_and_udp() {
    let bus = TestBus::start_dropping("drop60", 320, 240, 60, 3);
    let server = RtspServer::serve(&bus.name, &["p30=native@30,bitrate=500k"], &[]);
    let url = server.url(&bus.name, "p30");
    assert_clean(&url, "tcp");
    assert_clean(&url, "udp");
}

/// The plain case: a 30 fps bus served at its own rate.
#[test]
fn steady_30fps_bus_has_monotonic_timestamps_tcp_and_udp() {
    let bus = TestBus::start("steady30", 320, 240);
    let server = RtspServer::serve(&bus.name, &["native"], &[]);
    let url = server.url(&bus.name, "native");
    assert_clean(&url, "tcp");
    assert_clean(&url, "udp");
}
