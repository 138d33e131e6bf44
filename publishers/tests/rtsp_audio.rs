//! A camera's microphone over RTSP (docs/audio.md): the Opus bus as the
//! second track (RFC 7587), decoded by ffmpeg and GStreamer, in sync with
//! the picture. The real producer makes both: the test pattern with its
//! time code, and `--audio tone`, a beep at every whole second of the same
//! wall clock.

mod rtsp_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use framebus_test_support::av::{av_offsets, beep_hz, beep_onsets, stream_codecs};
use framebus_test_support::{bins, TempDir};
use rtsp_support::*;

/// The producer with `--audio tone`, an H.264 encoder, the Opus encoder
/// and the server.
struct Camera {
    bus: String,
    server: RtspServer,
    opus: ChildGuard,
    producer: ChildGuard,
}

impl Camera {
    fn start(tag: &str) -> Camera {
        let bus = unique_name(tag);
        let producer = ChildGuard::spawn(
            Command::new(bins::path("framebus-producer"))
                .args(["--bus", &bus, "--size", "320x240", "--fps", "30"])
                .args(["--audio", "tone"])
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        );
        let audio = framebus::contract::audio::pcm_bus(&bus);
        assert!(
            eventually(Duration::from_secs(20), || framebus::stat(&audio, None)
                .is_ok()),
            "no audio bus {audio}"
        );
        let opus = ChildGuard::spawn(
            Command::new(bins::path("framebus-encoder"))
                .args(["--bus", &audio, "--opus"])
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        );
        let opus_bus = framebus::contract::audio::opus_bus(&bus);
        assert!(
            eventually(Duration::from_secs(20), || framebus::stat(&opus_bus, None)
                .is_ok_and(|s| s.published > 0)),
            "no Opus bus {opus_bus}"
        );
        let server = RtspServer::serve(&bus, &["low=320x240@30,bitrate=600k"], &[]);
        Camera {
            bus,
            server,
            opus,
            producer,
        }
    }

    fn url(&self) -> String {
        self.server.url(&self.bus, "low")
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        // SIGTERM: each removes its bus (a SIGKILL would leave them).
        for p in [&mut self.opus, &mut self.producer] {
            p.signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
        }
    }
}

/// `(codec_type, codec_name)` of every stream ffprobe sees at `url`.
fn streams(url: &str, transport: &str) -> Vec<(String, String)> {
    stream_codecs(url, &["-rtsp_transport", transport])
}

#[test]
fn the_microphone_is_a_second_track_that_ffmpeg_and_gstreamer_decode_in_sync() {
    let cam = Camera::start("av");
    let url = cam.url();
    for transport in ["tcp", "udp"] {
        let s = streams(&url, transport);
        assert!(
            s.contains(&("video".into(), "h264".into()))
                && s.contains(&("audio".into(), "opus".into())),
            "{transport}: {s:?}"
        );
    }
    // ffmpeg keeps both tracks as they come; the beep is 1 kHz and lands
    // on the picture's whole seconds.
    let dir = TempDir::new("rtsp-audio");
    for transport in ["tcp", "udp"] {
        let file = dir.path().join(format!("{transport}.mkv"));
        let out = run(
            Command::new("ffmpeg")
                .args(["-nostdin", "-v", "error", "-rtsp_transport", transport])
                .args(["-i", &url, "-t", "6", "-c", "copy"])
                .arg(&file),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "ffmpeg {transport}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let onsets = beep_onsets(&file);
        assert!(onsets.len() >= 4, "{transport}: beeps at {onsets:?}");
        let hz = beep_hz(&file, onsets[0]);
        assert!(
            (hz - 1000.0).abs() < 30.0,
            "{transport}: the beep is {hz:.0} Hz"
        );
        let offsets = av_offsets(&file);
        eprintln!("RTSP {transport}: A/V offsets (ms, sound after picture > 0): {offsets:.1?}");
        for o in &offsets {
            assert!(
                o.abs() < 60.0,
                "{transport}: A/V offset {o:.1} ms ({offsets:?})"
            );
        }
    }
    // GStreamer: rtspsrc's audio pad through rtpopusdepay and opusdec
    // (the pipeline ends when both sinks have had their buffers).
    for protocols in ["tcp", "udp"] {
        let gst = || {
            run(
                Command::new("gst-launch-1.0").args([
                    "rtspsrc",
                    &format!("location={url}"),
                    &format!("protocols={protocols}"),
                    "latency=100",
                    "name=src",
                    "src.",
                    "!",
                    "application/x-rtp,media=video",
                    "!",
                    "rtph264depay",
                    "!",
                    "avdec_h264",
                    "!",
                    "fakesink",
                    "num-buffers=60",
                    "src.",
                    "!",
                    "application/x-rtp,media=audio",
                    "!",
                    "rtpopusdepay",
                    "!",
                    "opusdec",
                    "!",
                    "audioconvert",
                    "!",
                    "fakesink",
                    "num-buffers=100",
                ]),
                Duration::from_secs(60),
            )
        };
        let mut out = gst();
        // gst-launch links rtspsrc's pads to the two branches by caps as
        // they appear; a pad whose caps are not set yet can take the wrong
        // branch, and the other then never links ("Delayed linking
        // failed", seen once in a fresh-clone run over UDP). That is
        // gst-launch's race, not the stream's: once more.
        let said = |o: &std::process::Output| {
            let (a, b) = (&o.stdout, &o.stderr);
            String::from_utf8_lossy(a).contains("Delayed linking failed")
                || String::from_utf8_lossy(b).contains("Delayed linking failed")
        };
        if said(&out) {
            eprintln!("gst {protocols}: gst-launch's delayed linking failed; once more");
            out = gst();
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("Got EOS from element"),
            "gst {protocols}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_camera_without_a_microphone_stays_video_only() {
    let bus = TestBus::start("mute", 320, 240);
    let server = RtspServer::serve(&bus.name, &["low=320x240@30,bitrate=600k"], &[]);
    let url = server.url(&bus.name, "low");
    let s = streams(&url, "tcp");
    assert_eq!(s, vec![("video".to_string(), "h264".to_string())]);
    let mut c = RawClient::connect(&server.addr);
    let r = c.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    let sdp = String::from_utf8_lossy(&r.body);
    assert!(sdp.contains("m=video") && !sdp.contains("m=audio"), "{sdp}");
    // Its audio track's URL names nothing.
    let r = c.request(
        "SETUP",
        &format!("{url}/trackID=1"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3")],
    );
    assert_eq!(r.status, 404, "{r:?}");
}
