//! A recording of `framebus-recorder` in a real browser: headless Chromium
//! (`publishers/tests/browser/video.mjs`) plays the recording's
//! `file.mp4` in a plain `<video>` element from the recorder's own origin:
//! the duration it reports matches ffprobe's, playback advances, the first
//! frame it shows carries the time code of the recording's first frame,
//! and a seek to the middle lands (HTTP ranges).
//!
//! Own buses, encoder, recorder on port 0 and directories; guards stop
//! everything. Waits are watchdogs, never timing assertions.

use std::time::Duration;

use framebus_test_support::browser;
use framebus_test_support::recorder::{assert_plays, str_of, u64_of, Recorder, Source};
use framebus_test_support::{FeedOptions, TempDir};
use serde_json::json;

const PROFILE: &str = "main=640x360@30,h264=main,bitrate=1M,gop=30";
const SIZE: (u32, u32) = (640, 360);

#[test]
fn browser_plays_recording() {
    let src = Source::start("rec-browser", FeedOptions::new(SIZE.0, SIZE.1, 30), PROFILE);
    let dir = TempDir::new("rec-browser");
    let rec = Recorder::start(dir.path(), &[]);
    let r = rec.create(&json!({"stream": src.stream, "duration": "3s"}));
    let id = str_of(&r, "id").to_string();
    let done = rec.wait_state(&id, "done", Duration::from_secs(30));
    let out = TempDir::new("rec-browser-out");
    let f = out.path().join("clip.mp4");
    rec.download_ok(&id, "file.mp4", &f);
    let p = assert_plays(&f, SIZE, "file.mp4");

    let url = rec.url(&format!("/api/v1/recordings/{id}/file.mp4"));
    let v = browser::video_play(&url, 1.0);
    eprintln!(
        "Chromium {}: duration {:?} (ffprobe {:.3} s), {}x{}, currentTime {:?} after 1 s, \
         {} frames presented, seek to {:?} -> {:?}",
        v.browser.as_deref().unwrap_or("?"),
        v.duration,
        p.duration,
        v.video_width.unwrap_or(0),
        v.video_height.unwrap_or(0),
        v.current_time,
        v.frames_presented,
        v.seek_target,
        v.current_time_after_seek
    );
    assert!(v.error.is_none(), "media error: {v:#?}");
    assert!(v.play_error.is_none(), "play(): {v:#?}");
    assert!(
        v.page_errors.is_empty() && v.console_errors.is_empty(),
        "{v:#?}"
    );
    assert_eq!(
        (v.video_width, v.video_height),
        (Some(SIZE.0), Some(SIZE.1)),
        "{v:#?}"
    );
    let d = v
        .duration_s()
        .unwrap_or_else(|| panic!("no finite duration: {v:#?}"));
    assert!(
        (d - p.duration).abs() <= 0.1,
        "Chromium's duration {d} s vs ffprobe's {} s",
        p.duration
    );
    assert!(
        v.current_time.is_some_and(|t| t > 0.0) && v.frames_presented > 0,
        "playback did not advance: {v:#?}"
    );
    let tc = v
        .first_frame_timecode
        .as_ref()
        .unwrap_or_else(|| panic!("no time code read from the first frame: {v:#?}"));
    assert_eq!(
        tc.realtime_us,
        (u64_of(&done, "first_frame_realtime_ns") / 1000).to_string(),
        "the first frame Chromium shows is the recording's first frame"
    );
    assert_eq!(v.seeked, Some(true), "the seek to the middle: {v:#?}");
    let (target, at) = (
        v.seek_target.expect("a seek target"),
        v.current_time_after_seek.expect("a time after the seek"),
    );
    assert!(
        (at - target).abs() <= 0.1,
        "seeked to {target} s, landed at {at} s (ranges not served?): {v:#?}"
    );
}
