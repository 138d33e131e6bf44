//! Picture against sound in a file a real client wrote (ffmpeg recording
//! RTSP, or the recorder's MP4): the producer's `--audio tone` beeps at
//! every whole second of CLOCK_REALTIME, and the test pattern burns each
//! frame's capture time on the same clock into the picture. So:
//!
//! - [`video_pts`] and [`crate::recorder::frame_timecodes`] give, per
//!   frame, the file's timeline and the wall clock; their difference (the
//!   median) maps the timeline to the wall clock;
//! - [`beep_onsets`] (ffmpeg `silencedetect`, with `-copyts` so the
//!   times are on the file's own timeline) gives where each beep starts;
//! - [`av_offsets`]: how far each onset, mapped to the wall clock, lands
//!   from a whole second, in ms (sound after picture > 0);
//! - [`beep_hz`]: the beep's frequency from the decoded samples;
//! - [`stream_codecs`]: `(codec_type, codec_name)` of every stream;
//! - [`ToneCamera`]: the producer with the tone, its Opus encoder and an
//!   H.264 encoder, stopped cleanly.
//!
//! Every tool run has a watchdog ([`crate::run_to_end`]).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::recorder::frame_timecodes;
use crate::run_to_end;

/// Bound on one ffmpeg or ffprobe run.
const LIMIT: Duration = Duration::from_secs(60);

/// Seconds of `path` where each beep starts (silencedetect's ends of
/// silence, on the file's own timestamps), for the beeps that end again
/// (the end of the file also ends a silence).
pub fn beep_onsets(path: &Path) -> Vec<f64> {
    let out = run_to_end(
        Command::new("ffmpeg")
            .args(["-nostdin", "-copyts", "-i"])
            .arg(path)
            .args(["-map", "0:a:0", "-af", "silencedetect=n=-30dB:d=0.2"])
            .args(["-f", "null", "-"]),
        LIMIT,
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
pub fn video_pts(path: &Path) -> Vec<f64> {
    let out = run_to_end(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(["-show_entries", "frame=pts_time", "-of", "csv=p=0"])
            .arg(path),
        LIMIT,
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// The dominant frequency of a loud stretch of the beep starting at
/// `onset` (seconds of the file's timeline), from the decoded samples
/// (zero crossings): 60 ms from 20 ms after the onset. Decoding starts
/// 300 ms earlier (the input seek), so the Opus decoder has warmed up
/// (it needs 80 ms of pre-roll after a seek, RFC 7845 §4.6) before the
/// stretch measured (the output seek, on the file's timeline with
/// `-copyts`).
pub fn beep_hz(path: &Path, onset: f64) -> f64 {
    let out = run_to_end(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-copyts", "-ss"])
            .arg(format!("{:.3}", (onset - 0.3).max(0.0)))
            .arg("-i")
            .arg(path)
            .arg("-ss")
            .arg(format!("{:.3}", onset + 0.02))
            .args(["-map", "0:a:0", "-t", "0.06", "-ac", "1", "-ar", "48000"])
            .args(["-f", "s16le", "-"]),
        LIMIT,
    );
    let pcm: Vec<i16> = out
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    crate::pulse::frequency(&pcm, 48000)
}

/// Picture against sound in a recording of the stream: each beep starts
/// at a whole second of the wall clock, each frame shows its capture time;
/// how far apart they land on the file's timeline, in milliseconds.
pub fn av_offsets(path: &Path) -> Vec<f64> {
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

/// `(codec_type, codec_name)` of every stream ffprobe sees in `input` (a
/// file or URL), with `extra` arguments before it (`-rtsp_transport tcp`).
pub fn stream_codecs(input: &str, extra: &[&str]) -> Vec<(String, String)> {
    let out = run_to_end(
        Command::new("ffprobe")
            .args(["-v", "error"])
            .args(extra)
            .args(["-show_entries", "stream=codec_type,codec_name"])
            .args(["-of", "csv=p=0", input]),
        LIMIT,
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(','))
        .map(|(a, b)| (b.trim().to_string(), a.trim().to_string()))
        .collect()
}

/// A camera for A/V tests: `framebus-producer` with the time-coded test
/// pattern and, with sound, `--audio tone` and the Opus encoder
/// (`framebus-encoder --bus {bus}.audio --opus`), and one H.264 encoder
/// of `profile`. Stopped with SIGTERM in reverse order when dropped, and
/// any segment a process could not remove is removed, so nothing is left
/// in `/dev/shm`.
pub struct ToneCamera {
    /// The camera's bus.
    pub bus: String,
    /// Its encoded stream as `{bus}/{profile}`.
    pub stream: String,
    encoder: Option<crate::Encoder>,
    opus: Option<crate::ChildGuard>,
    producer: crate::ChildGuard,
}

impl ToneCamera {
    /// Starts it (`size` `WxH` at 30 fps) and waits (30 s watchdogs) until
    /// the video bus, with sound the Opus bus, and the encoded bus are
    /// live.
    pub fn start(tag: &str, size: &str, profile: &str, sound: bool) -> ToneCamera {
        let wait = Duration::from_secs(30);
        let bus = crate::unique_name(tag);
        let mut cmd = Command::new(crate::bins::path("framebus-producer"));
        cmd.args(["--bus", &bus, "--size", size, "--fps", "30"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        if sound {
            cmd.args(["--audio", "tone"]);
        }
        let producer = crate::ChildGuard::spawn(&mut cmd);
        let name = profile.split(['=', ',', '@']).next().unwrap_or(profile);
        let mut cam = ToneCamera {
            stream: format!("{bus}/{name}"),
            bus,
            encoder: None,
            opus: None,
            producer,
        };
        assert!(
            crate::eventually(wait, || framebus::stat(&cam.bus, None).is_ok()),
            "no video bus {}",
            cam.bus
        );
        if sound {
            let pcm = framebus::contract::audio::pcm_bus(&cam.bus);
            assert!(
                crate::eventually(wait, || framebus::stat(&pcm, None).is_ok()),
                "no audio bus {pcm}"
            );
            cam.opus = Some(crate::ChildGuard::spawn(
                Command::new(crate::bins::path("framebus-encoder"))
                    .args(["--bus", &pcm, "--opus"])
                    .env("RUST_LOG", "warn")
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null()),
            ));
            let opus = framebus::contract::audio::opus_bus(&cam.bus);
            assert!(
                crate::eventually(wait, || framebus::stat(&opus, None)
                    .is_ok_and(|s| s.published > 0)),
                "no Opus bus {opus}"
            );
        }
        cam.encoder = Some(crate::Encoder::start(&cam.bus, profile, &[], None));
        cam
    }
}

impl Drop for ToneCamera {
    fn drop(&mut self) {
        drop(self.encoder.take());
        let stop = |c: &mut crate::ChildGuard| {
            if c.alive() {
                c.signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
            }
        };
        if let Some(mut o) = self.opus.take() {
            stop(&mut o);
        }
        stop(&mut self.producer);
        for name in [
            framebus::contract::audio::opus_bus(&self.bus),
            framebus::contract::audio::pcm_bus(&self.bus),
            self.bus.clone(),
        ] {
            if framebus::stat(&name, None).is_ok_and(|s| !s.producer_alive) {
                let _ = framebus::remove(&name, None, true);
            }
        }
    }
}
