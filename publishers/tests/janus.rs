//! Fan-out through Janus (docs/scale-out.md): `framebus-rtsp --forward`
//! sends an encoded bus as RTP to a real Janus 1.1 Streaming-plugin
//! mountpoint (Debian's `janus`, started by the test with a config it
//! writes: `framebus_test_support::janus`), and headless Chromium watches
//! it *through Janus* with Janus's own janus.js (`browser/janus.mjs`).
//!
//! Checked: every viewer decodes the picture at its size; viewer 0 reads
//! the time codes (so the latency through the extra hop is measured, and
//! printed beside the direct WHEP viewer's); and Janus's keyframe
//! requests reach the encoder: the encoder's GOP is 20 s, and the
//! encoded bus counts keyframes forced after the viewers joined.
//!
//! And the other direction, WHIP (`framebus-mjpeg --whip`): framebus
//! publishes picture and sound into a real WHIP server, Meetecho's
//! simple-whip-server in front of a Janus VideoRoom
//! (`framebus_test_support::whip`), whose RTP forward GStreamer decodes.
//!
//! Own buses (unique names), own processes; Janus's HTTP port and the
//! mountpoint's UDP ports are picked free; every wait is a watchdog.

#[path = "http_support/mod.rs"]
mod http_support;
#[path = "rtsp_support/mod.rs"]
mod rtsp_support;

use std::sync::Mutex;
use std::time::Duration;

use framebus_test_support::browser::{self, opus_encoder, producer};
use framebus_test_support::janus::Janus;
use framebus_test_support::port::free_udp_port;
use framebus_test_support::whip::WhipServer;
use http_support::{assert_played, Server, WhepPlay};
use rtsp_support::{Encoder, RtspServer};

/// Baseline (the mountpoint's fmtp), a 20 s GOP at 30 fps: a keyframe
/// after the first is one somebody asked for.
const PROFILE: &str = "low=640x360@30,h264=baseline,gop=600";

/// One test at a time: each runs a Janus, a producer, encoders and
/// framebus beside two Chromiums or a Node.js server and two GStreamer
/// decoders, which on 2 cores starve each other (a CI run failed the WHIP
/// test beside the viewers').
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn chromium_watches_through_janus_and_janus_keyframe_requests_reach_the_encoder() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bus = framebus_test_support::unique_name("janus");
    let _prod = producer(&bus, "640x360", false);
    let _enc = Encoder::start(&bus, PROFILE, &[], None);
    let encoded = framebus::contract::encoder::bus_name(&bus, "low");
    let (rtp, rtcp) = (free_udp_port(), free_udp_port());
    let janus = Janus::start(rtp, rtcp);
    let _fwd = RtspServer::start(&[
        "--forward",
        &format!("{bus}/low=rtp://127.0.0.1:{rtp}?rtcp={rtcp}"),
    ]);
    let forced = || framebus::stat(&encoded, None).map_or(0, |i| i.keyframes_forced);
    let before = forced();

    let r = browser::janus_play(&janus.api_url(), &janus.ws_url(), 8.0, 2);
    assert_eq!(r.viewers.len(), 2, "{r:#?}\nJanus log:\n{}", janus.log());
    for v in &r.viewers {
        assert_eq!(
            v.connection_state,
            "connected",
            "{v:#?}\nJanus log:\n{}",
            janus.log()
        );
        let inb = v.stats.inbound.as_ref().expect("inbound video");
        assert_eq!(inb.codec.as_deref(), Some("video/H264"), "{inb:#?}");
        assert_eq!(
            (inb.frame_width, inb.frame_height),
            (Some(640), Some(360)),
            "{inb:#?}"
        );
        assert!(v.stats.frames_decoded() >= 60, "{v:#?}");
    }
    let tc = r.timecode.as_ref().expect("viewer 0's time codes");
    assert!(tc.decoded >= 30, "time codes through Janus: {tc:#?}");
    let after = forced();
    assert!(
        after > before,
        "no keyframe forced while two viewers joined through Janus (forced {before} -> {after}): \
         Janus's PLIs did not reach the encoder\nJanus log:\n{}",
        janus.log()
    );

    // The same stream straight from framebus (WHEP), for the extra hop.
    let server = Server::start(&["--bus", &bus]);
    let mut opts = WhepPlay::new(server.whep(&bus, "low"));
    opts.seconds = 8.0;
    opts.timecode = true;
    let direct = browser::whep_play(&opts);
    assert_played(&direct.viewers[0], 60, (640, 360), "the direct viewer");
    eprintln!(
        "time code to presentation (ms): through Janus {:?}; direct WHEP {:?}; \
         keyframes forced {before} -> {after}",
        tc.latency_ms,
        direct.timecode.as_ref().and_then(|t| t.latency_ms)
    );
}

/// `--whip`: framebus-mjpeg offers H.264 and Opus to simple-whip-server
/// (with a bearer token), Janus's VideoRoom receives them and forwards them
/// as RTP, where GStreamer decodes 640x360 video and 48 kHz Opus. Janus
/// asks for a keyframe every 2 s (FIR): the 20 s GOP's encoder forces
/// them. framebus stopped: its DELETE ends the publisher in the room.
#[test]
fn whip_publishes_picture_and_sound_into_janus_through_a_whip_server() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bus = framebus_test_support::unique_name("whip");
    let _prod = producer(&bus, "640x360", true);
    let _enc = Encoder::start(&bus, PROFILE, &[], None);
    let _opus = opus_encoder(&bus);
    let encoded = framebus::contract::encoder::bus_name(&bus, "low");
    let whip = WhipServer::start_with_token("framebus-test-token");
    let url = whip.endpoint_url();
    let from = format!("{bus}/low");
    // Janus offers no loopback candidate: the media port on every
    // interface address.
    let server = Server::start_media(
        "0.0.0.0:0",
        1,
        &[
            "--bus",
            &bus,
            "--whip",
            &url,
            "--whip-from",
            &from,
            "--whip-token",
            "framebus-test-token",
        ],
    );
    whip.wait_publishing(true, Duration::from_secs(30));
    let forced = || framebus::stat(&encoded, None).map_or(0, |i| i.keyframes_forced);
    let before = forced();
    let v = whip.decode_video(60, Duration::from_secs(30));
    assert_eq!((v.width, v.height), (640, 360), "{v:?}");
    let a = whip.decode_audio(50, Duration::from_secs(30));
    assert_eq!(a.rate, 48_000, "{a:?}");
    assert!(
        framebus_test_support::eventually(Duration::from_secs(20), || forced() > before),
        "Janus's keyframe requests did not reach the encoder ({before} forced)\n{}",
        whip.log()
    );
    // A clean stop deletes the session: the room has no publisher.
    server.proc.signal(libc::SIGTERM);
    whip.wait_publishing(false, Duration::from_secs(20));
}
