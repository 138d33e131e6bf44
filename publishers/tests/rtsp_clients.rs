//! framebus-rtsp against real clients: ffprobe, ffmpeg and GStreamer
//! rtspsrc, over TCP and UDP, on every profile of an encoder set like the
//! example config's (sizes, rates, H.264 profiles), with no decode error.

mod rtsp_support;

use rtsp_support::*;

/// (encoder profile, its size): every size class and every H.264 profile
/// the encoder offers (constrained baseline, main, high).
const PROFILES: &[(&str, (u32, u32))] = &[
    ("small=320x180@30,bitrate=500k,h264=baseline", (320, 180)),
    ("native", (640, 360)),
    ("hd=1280x720@30,bitrate=2M,h264=high", (1280, 720)),
];

/// Lines of a decoder's stderr that say a frame was damaged.
fn decode_errors(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            [
                "error",
                "concealing",
                "corrupt",
                "missing",
                "lost",
                "invalid",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .map(str::to_string)
        .collect()
}

fn gst_decode(url: &str, protocols: &str, frames: u32) {
    let out = gst_play(url, protocols, frames, &[]).unwrap_or_else(|out| {
        panic!(
            "gst-launch {protocols} {url} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // rtspsrc's own error after EOS (the shutdown race `gst_play`
    // describes) is not a decode error.
    let errors: Vec<String> = decode_errors(&out.stderr)
        .into_iter()
        .filter(|l| !l.contains("GstRTSPSrc"))
        .collect();
    assert!(errors.is_empty(), "gst {protocols} {url}: {errors:?}");
}

#[test]
fn every_profile_plays_in_ffprobe_ffmpeg_and_gstreamer_over_tcp_and_udp() {
    let bus = TestBus::start("clients", 640, 360);
    let profiles: Vec<&str> = PROFILES.iter().map(|(p, _)| *p).collect();
    let server = RtspServer::serve(&bus.name, &profiles, &[]);
    for (spec, (w, h)) in PROFILES {
        let name = spec.split(['=', ',']).next().unwrap();
        let url = server.url(&bus.name, name);
        for transport in ["tcp", "udp"] {
            let (codec, pw, ph, out) = ffprobe(&url, transport);
            assert_eq!(
                (codec.as_str(), pw, ph),
                ("h264", *w, *h),
                "ffprobe {transport} {url}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (n, out) = ffmpeg_decode(&url, transport, 60);
            assert_eq!(
                n,
                60,
                "ffmpeg {transport} {url}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success());
            let errors = decode_errors(&out.stderr);
            assert!(errors.is_empty(), "ffmpeg {transport} {url}: {errors:?}");
            gst_decode(&url, transport, 30);
        }
    }
}

#[test]
fn an_h264_bus_is_served_by_its_own_name() {
    // Any encoded bus, e.g. one a Python program writes, plays at
    // rtsp://host/{bus-name}.
    let bus = TestBus::start("byname", 320, 240);
    let server = RtspServer::serve(&bus.name, &["p=native,bitrate=300k"], &[]);
    let url = format!("rtsp://{}/{}", server.addr, server.encoders[0].out);
    let (n, out) = ffmpeg_decode(&url, "tcp", 20);
    assert_eq!(n, 20, "{}", String::from_utf8_lossy(&out.stderr));
    // A raw bus is refused with a reason, not served.
    let mut c = RawClient::connect(&server.addr);
    let r = c.request(
        "DESCRIBE",
        &format!("rtsp://{}/{}", server.addr, bus.name),
        &[],
    );
    assert_eq!(r.status, 415, "{r:?}");
}
