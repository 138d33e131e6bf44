//! The camera's sound in recordings (docs/recording.md#sound): the real
//! producer with `--audio tone` (a 1 kHz beep at every whole second of
//! the wall clock, the clock the test pattern's time code shows), an
//! H.264 encoder, the Opus encoder and `framebus-recorder`; ffprobe and
//! ffmpeg judge what it wrote.
//!
//! - `sound_is_recorded_with_its_preroll_in_sync`: a clip with pre-roll;
//!   both the MP4 for download (`file.mp4`, an edit list before the
//!   sound) and the file as written (`fragmented.mp4`, a `traf` per
//!   track) have h264 + opus, decode without a word, the beep is 1 kHz,
//!   there is sound from the first second of the pre-roll, and every
//!   beep lands on the picture's whole second within ±40 ms (the offsets
//!   are printed);
//! - `a_camera_without_sound_records_video_only`: no `.opus` bus, no
//!   audio stream.
//!
//! Each test has its own buses, processes and directories; the
//! [`ToneCamera`] guard stops them with SIGTERM so no bus is left in
//! `/dev/shm`. Every wait is a
//! watchdog.

use std::process::Command;
use std::time::Duration;

use framebus_test_support::av::{av_offsets, beep_hz, beep_onsets, stream_codecs, ToneCamera};
use framebus_test_support::recorder::{assert_plays, f64_of, str_of, Recorder};
use framebus_test_support::{run_to_end, TempDir};
use serde_json::json;

/// The encoded stream: small and cheap on two cores, a keyframe every
/// second.
const PROFILE: &str = "low=320x240@30,bitrate=600k,gop=30";
const SIZE: (u32, u32) = (320, 240);
/// Watchdog on a recording reaching a state.
const WAIT: Duration = Duration::from_secs(30);
/// How far a beep may land from the picture's whole second.
const MAX_OFFSET_MS: f64 = 40.0;

/// ffprobe's `start_time` of the first stream of `kind` (`v`, `a`).
fn start_time(path: &std::path::Path, kind: &str) -> f64 {
    let out = run_to_end(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", &format!("{kind}:0")])
            .args(["-show_entries", "stream=start_time", "-of", "csv=p=0"])
            .arg(path),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .trim_end_matches(',')
        .parse()
        .unwrap_or_else(|_| panic!("{kind} start_time of {}: {text:?}", path.display()))
}

#[test]
fn sound_is_recorded_with_its_preroll_in_sync() {
    let cam = ToneCamera::start("rec-av", "320x240", PROFILE, true);
    let dir = TempDir::new("rec-av");
    let rec = Recorder::start(
        dir.path(),
        &["--buffer", &cam.stream, "--preroll-max", "10s"],
    );
    // Let the buffer fill well past the pre-roll asked for.
    std::thread::sleep(Duration::from_secs(5));
    let r = rec.create(&json!({"stream": cam.stream, "duration": "4s", "preroll": "2s"}));
    let id = str_of(&r, "id").to_string();
    let done = rec.wait_state(&id, "done", WAIT);
    assert!(done["error"].is_null(), "{done:#}");
    let codec = str_of(&done, "codec");
    assert!(
        codec.starts_with("avc1.") && codec.ends_with(",opus"),
        "{done:#}"
    );
    let preroll_s = f64_of(&done, "preroll_s");
    let duration_s = f64_of(&done, "duration_s");
    assert!(preroll_s >= 2.0 - 0.01, "{done:#}");
    eprintln!("recording: {duration_s:.3} s, of which {preroll_s:.3} s pre-roll");

    for name in ["file.mp4", "fragmented.mp4"] {
        let path = dir.path().join(name);
        rec.download_ok(&id, name, &path);
        let streams = stream_codecs(path.to_str().unwrap(), &[]);
        assert_eq!(
            streams,
            [
                ("video".to_string(), "h264".to_string()),
                ("audio".to_string(), "opus".to_string())
            ],
            "{name}"
        );
        // Both tracks decode without a word; the first frame is a keyframe.
        assert_plays(&path, SIZE, name);
        // The sound starts with the picture (the first Opus packet
        // captured at or after the first frame: within 20 ms of it, and
        // the encoders' latencies do not matter: capture times).
        let lead = start_time(&path, "a") - start_time(&path, "v");
        eprintln!(
            "{name}: the sound starts {:.1} ms after the picture",
            lead * 1e3
        );
        assert!(
            (0.0..0.025).contains(&lead),
            "{name}: sound starts {lead} s after the picture"
        );
        // A beep at every whole second of the recording, pre-roll included.
        let onsets = beep_onsets(&path);
        assert!(
            onsets.len() as f64 >= duration_s.floor() - 1.0,
            "{name}: beeps at {onsets:?} in {duration_s} s"
        );
        let hz: Vec<f64> = onsets.iter().map(|&o| beep_hz(&path, o)).collect();
        eprintln!("{name}: beeps at {onsets:.3?} s of {hz:.0?} Hz");
        assert!(
            hz.iter().all(|h| (h - 1000.0).abs() < 30.0),
            "{name}: the beeps are {hz:.0?} Hz"
        );
        let offsets = av_offsets(&path);
        eprintln!("{name}: A/V offsets (ms, sound after picture > 0): {offsets:.1?}");
        assert!(offsets.len() >= onsets.len(), "{name}: {offsets:?}");
        for o in &offsets {
            assert!(
                o.abs() <= MAX_OFFSET_MS,
                "{name}: A/V offset {o:.1} ms ({offsets:.1?})"
            );
        }
    }
}

#[test]
fn a_camera_without_sound_records_video_only() {
    let cam = ToneCamera::start("rec-mute", "320x240", PROFILE, false);
    let dir = TempDir::new("rec-mute");
    let rec = Recorder::start(dir.path(), &["--buffer", &cam.stream]);
    std::thread::sleep(Duration::from_secs(2));
    let r = rec.create(&json!({"stream": cam.stream, "duration": "2s", "preroll": "1s"}));
    let id = str_of(&r, "id").to_string();
    let done = rec.wait_state(&id, "done", WAIT);
    assert!(done["error"].is_null(), "{done:#}");
    let codec = str_of(&done, "codec");
    assert!(!codec.contains("opus"), "{done:#}");
    for name in ["file.mp4", "fragmented.mp4"] {
        let path = dir.path().join(name);
        rec.download_ok(&id, name, &path);
        assert_eq!(
            stream_codecs(path.to_str().unwrap(), &[]),
            [("video".to_string(), "h264".to_string())],
            "{name}"
        );
        assert_plays(&path, SIZE, name);
    }
}
