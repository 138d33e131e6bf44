//! framebus-rtsp against real clients: ffprobe, ffmpeg (TCP and UDP),
//! GStreamer rtspsrc.

mod rtsp_support;

use std::process::Command;
use std::time::Duration;

use rtsp_support::*;

const SMALL: &[&str] = &[
    "--profile",
    "small=320x180@30,bitrate=500k",
    "--profile",
    "native",
];

#[test]
fn ffprobe_reports_h264_with_profile_size_tcp() {
    let bus = TestBus::start("probe", 640, 360);
    let server = RtspServer::start(SMALL);
    let (codec, w, h, out) = ffprobe(&server.url(&bus.name, "native"), "tcp");
    assert_eq!(
        (codec.as_str(), w, h),
        ("h264", 640, 360),
        "ffprobe stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (codec, w, h, out) = ffprobe(&server.url(&bus.name, "small"), "tcp");
    assert_eq!(
        (codec.as_str(), w, h),
        ("h264", 320, 180),
        "ffprobe stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ffprobe_reports_1080p_for_high() {
    let bus = TestBus::start("high", 640, 360);
    let server = RtspServer::start(&[]);
    let (codec, w, h, out) = ffprobe(&server.url(&bus.name, "high"), "tcp");
    assert_eq!(
        (codec.as_str(), w, h),
        ("h264", 1920, 1080),
        "ffprobe stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ffmpeg_decodes_60_frames_over_tcp() {
    let bus = TestBus::start("tcp", 640, 360);
    let server = RtspServer::start(SMALL);
    let (n, out) = ffmpeg_decode(&server.url(&bus.name, "native"), "tcp", 60);
    assert_eq!(
        n,
        60,
        "ffmpeg stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn ffmpeg_decodes_60_frames_over_udp() {
    let bus = TestBus::start("udp", 640, 360);
    let server = RtspServer::start(SMALL);
    let (n, out) = ffmpeg_decode(&server.url(&bus.name, "native"), "udp", 60);
    assert_eq!(
        n,
        60,
        "ffmpeg stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

fn gst_decode(url: &str, protocols: &str) {
    let out = run(
        Command::new("gst-launch-1.0").args([
            "-q",
            "rtspsrc",
            &format!("location={url}"),
            &format!("protocols={protocols}"),
            "latency=0",
            "!",
            "rtph264depay",
            "!",
            "avdec_h264",
            "!",
            "fakesink",
            "num-buffers=30",
        ]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "gst-launch failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn gstreamer_rtspsrc_decodes_tcp_and_udp() {
    let bus = TestBus::start("gst", 640, 360);
    let server = RtspServer::start(SMALL);
    gst_decode(&server.url(&bus.name, "native"), "tcp");
    gst_decode(&server.url(&bus.name, "small"), "udp");
}
