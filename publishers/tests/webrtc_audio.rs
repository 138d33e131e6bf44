//! WebRTC (WHEP) carries the camera's sound: headless Chromium offers
//! receive-only video and audio (`whep.mjs --audio`) to `framebus-mjpeg`
//! and plays both, the audio being the Opus bus `{cam}.opus` that
//! `framebus-encoder --opus` writes from the producer's `--audio tone` (a
//! 1 kHz beep of 100 ms at every whole second). A camera without an Opus
//! bus answers the same offer video-only.
//!
//! Own buses (unique names), own processes (stopped with SIGTERM so each
//! removes its buses), server on port 0. Every wait is a watchdog.

mod http_support;

use std::collections::BTreeSet;
use std::time::Duration;

use framebus::contract::audio::opus_bus;
use framebus_test_support::browser::{opus_encoder, producer};
use http_support::*;

/// The H.264 profile of the tests (`framebus-encoder --profile`).
const BASE: &str = "base=320x180@30,h264=baseline";
/// Watchdog on sessions ending.
const WATCHDOG: Duration = Duration::from_secs(30);

#[test]
fn webrtc_carries_the_cameras_opus_audio_and_stays_video_only_without_it() {
    // A camera with a microphone: both viewers get its sound.
    let bus = unique_name("wrtc-audio");
    let prod = producer(&bus, "320x180", true);
    let enc = Encoder::start(&bus, BASE, &[], None);
    let opus = opus_encoder(&bus);
    let server = Server::start(&["--bus", &bus]);

    let url = server.whep(&bus, "base");
    let play = std::thread::spawn(move || {
        let mut opts = WhepPlay::new(url);
        opts.viewers = 2;
        opts.seconds = 5.0;
        opts.audio = true;
        browser::whep_play(&opts)
    });
    // While they play: one reader of the Opus bus, shared by both.
    let mut readers = BTreeSet::new();
    eventually(Duration::from_secs(120), || {
        if let Ok(s) = framebus::stat(&opus_bus(&bus), None) {
            if !s.readers.is_empty() {
                readers.insert(s.readers.len());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        play.is_finished()
    });
    let r = play.join().expect("the browser thread");
    assert!(r.page_errors.is_empty(), "{:?}", r.page_errors);
    assert_eq!(r.viewers.len(), 2, "{r:#?}");
    for v in &r.viewers {
        let what = format!("viewer {}", v.index);
        assert_played(v, 30, (320, 180), &what);
        let kinds: BTreeSet<&str> = v.track_kinds.iter().flatten().map(String::as_str).collect();
        assert_eq!(kinds, BTreeSet::from(["audio", "video"]), "{what}: {v:#?}");
        let line = v.answer_audio.as_ref().expect("an audio line");
        assert_ne!(line.port, 0, "{what}: {line:?}");
        assert_eq!(line.direction.as_deref(), Some("sendonly"), "{line:?}");
        assert!(
            line.codecs.iter().any(|c| c == "opus/48000/2"),
            "{what}: {line:?}"
        );
        assert_eq!(v.audio_play_error, None, "{what}");
        let a = v
            .audio
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: no inbound audio: {v:#?}"));
        assert_eq!(a.codec.as_deref(), Some("audio/opus"), "{what}: {a:#?}");
        assert_eq!(a.clock_rate, Some(48_000), "{what}: {a:#?}");
        // 50 packets a second for about 5 s.
        assert!(a.packets_received.unwrap_or(0) > 100, "{what}: {a:#?}");
        let samples = a.total_samples_received.unwrap_or(0);
        assert!(samples > 48_000, "{what}: {a:#?}");
        // Played, not made up: little concealment.
        let concealed = a.concealed_samples.unwrap_or(u64::MAX);
        assert!(concealed * 4 < samples, "{what}: {a:#?}");
        // The beeps were heard.
        assert!(a.total_audio_energy.unwrap_or(0.0) > 0.0, "{what}: {a:#?}");
        assert!(
            a.audio_level_max.unwrap_or(0.0) > 0.05,
            "{what}: no beep in {} level samples: {a:#?}",
            a.audio_level_samples
        );
        assert_eq!(v.delete_status, Some(200), "{what}: {v:#?}");
    }
    assert_eq!(
        readers,
        BTreeSet::from([1]),
        "readers of {} while two viewers played",
        opus_bus(&bus)
    );
    // An offer without audio gets no audio line from the same camera.
    let resp = server.post_sdp(
        &format!("/{bus}/base/whep?adapt=0"),
        CHROME_OFFER.as_bytes(),
    );
    assert_eq!(resp.status, 201, "{resp:?}");
    assert!(!resp.text().contains("m=audio"), "{}", resp.text());
    let location = resp
        .header("location")
        .unwrap_or_else(|| panic!("no Location: {resp:?}"))
        .to_string();
    assert_eq!(server.request("DELETE", &location, &[], b"").status, 200);
    server.wait_sessions(0, WATCHDOG, None);
    drop((server, opus, enc, prod));

    // A camera without a microphone: the same offer plays video only,
    // the audio line refused (port 0), no audio track.
    let bus = unique_name("wrtc-mute");
    let _prod = producer(&bus, "320x180", false);
    let _enc = Encoder::start(&bus, BASE, &[], None);
    let server = Server::start(&["--bus", &bus]);
    let mut opts = WhepPlay::new(server.whep(&bus, "base"));
    opts.seconds = 3.0;
    opts.audio = true;
    let r = browser::whep_play(&opts);
    assert!(r.page_errors.is_empty(), "{:?}", r.page_errors);
    let v = &r.viewers[0];
    assert_played(v, 30, (320, 180), "video-only camera");
    assert_eq!(v.answer_error, None, "{v:#?}");
    assert_eq!(v.track_kinds.as_deref(), Some(&["video".to_string()][..]));
    let line = v.answer_audio.as_ref().expect("the offer's audio line");
    assert_eq!(line.port, 0, "refused: {line:?}");
    assert!(v.audio.is_none(), "{v:#?}");
    assert_eq!(v.delete_status, Some(200), "{v:#?}");
    server.wait_sessions(0, WATCHDOG, None);
}
