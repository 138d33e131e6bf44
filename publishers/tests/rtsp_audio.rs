//! A camera's microphone over RTSP (docs/audio.md): the Opus bus as the
//! second track (RFC 7587), decoded by ffmpeg and GStreamer, in sync with
//! the picture. The real producer makes both: the test pattern with its
//! time code, and `--audio tone`, a beep at every whole second of the same
//! wall clock.

mod rtsp_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use framebus_test_support::recorder::frame_timecodes;
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
    let out = run(
        Command::new("ffprobe")
            .args(["-v", "error", "-rtsp_transport", transport])
            .args(["-show_entries", "stream=codec_type,codec_name"])
            .args(["-of", "csv=p=0", url]),
        Duration::from_secs(60),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(','))
        .map(|(a, b)| (b.trim().to_string(), a.trim().to_string()))
        .collect()
}

/// Seconds of `path` where each beep starts (silencedetect's ends of
/// silence, on the file's own timestamps), for the beeps that end again
/// (the end of the file also ends a silence).
fn beep_onsets(path: &Path) -> Vec<f64> {
    let out = run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-copyts", "-i"])
            .arg(path)
            .args(["-map", "0:a:0", "-af", "silencedetect=n=-30dB:d=0.2"])
            .args(["-f", "null", "-"]),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stderr);
    let mut onsets = Vec::new();
    let mut open: Option<f64> = None;
    for l in text.lines() {
        if let Some(v) = l.split("silence_end: ").nth(1) {
            open = v.split_whitespace().next().and_then(|v| v.parse().ok());
        } else if l.contains("silence_start: ") {
            onsets.extend(open.take());
        }
    }
    onsets
}

/// The pts (seconds) of every video frame of `path`, in order.
fn video_pts(path: &Path) -> Vec<f64> {
    let out = run(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(["-show_entries", "frame=pts_time", "-of", "csv=p=0"])
            .arg(path),
        Duration::from_secs(60),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// The dominant frequency of a loud stretch of the first beep, from the
/// decoded samples (zero crossings).
fn beep_hz(path: &Path, onset: f64) -> f64 {
    let out = run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-copyts", "-ss"])
            .arg(format!("{:.3}", onset + 0.02))
            .arg("-i")
            .arg(path)
            .args(["-map", "0:a:0", "-t", "0.06", "-ac", "1", "-ar", "48000"])
            .args(["-f", "s16le", "-"]),
        Duration::from_secs(60),
    );
    let pcm: Vec<i16> = out
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    framebus_test_support::pulse::frequency(&pcm, 48000)
}

/// Picture against sound in a recording of the stream: each beep starts
/// at a whole second of the wall clock, each frame shows its capture time;
/// how far apart they land on the file's timeline, in milliseconds.
fn av_offsets(path: &Path) -> Vec<f64> {
    let pts = video_pts(path);
    let codes = frame_timecodes(path);
    assert_eq!(pts.len(), codes.len(), "frames counted twice differ");
    // Wall clock minus timeline, per frame; the median.
    let mut v: Vec<f64> = pts
        .iter()
        .zip(&codes)
        .filter_map(|(p, c)| c.map(|c| c.realtime_us as f64 / 1e6 - p))
        .collect();
    assert!(v.len() > 30, "{} frames with a time code", v.len());
    v.sort_by(f64::total_cmp);
    let video = v[v.len() / 2];
    beep_onsets(path)
        .into_iter()
        .map(|onset| {
            let wall = onset + video;
            (wall.round() - wall) * 1000.0
        })
        .collect()
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
        let out = run(
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
        );
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
