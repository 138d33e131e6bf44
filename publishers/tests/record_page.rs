//! framebus-recorder's page (`GET /`, `publishers/src/record/page.html`)
//! in headless Chromium (`tests/browser/recpage.mjs`), behind Basic auth
//! answered as a person answers the browser's prompt: the page lists the
//! buffered stream, records 2 s with 1 s of pre-roll through its form,
//! shows the recording until it is done, and plays it in its `<video>`:
//! the duration is the 2 s plus the pre-roll the recording got, and the
//! time moves on. The API agrees with what the page showed.
//!
//! Its own bus (unique name), encoder and recorder (port 0, a temporary
//! directory); guards stop them. Waits are watchdogs.

mod http_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use framebus_test_support::browser::{recorder_page, RecPage};
use framebus_test_support::{listening, TempDir};
use http_support::*;
use serde_json::Value;

/// A keyframe every half second: the pre-roll got is the 1 s asked for
/// rounded down to one, so at most about 0.5 s more.
const PROFILE: &str = "rec=640x360@30,h264=main,bitrate=800k,gop=15";
const CREDENTIALS: &str = "rec:page-s3cret";

/// `framebus-recorder --listen 127.0.0.1:0 --dir DIR --buffer STREAM`
/// with Basic credentials; its address.
fn start_recorder(dir: &Path, stream: &str) -> (ChildGuard, String) {
    let (child, l) = listening::spawn(
        Command::new(env!("CARGO_BIN_EXE_framebus-recorder"))
            .args(["--listen", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .args(["--buffer", stream, "--preroll-max", "10s"])
            .env("FRAMEBUS_RECORDER_AUTH", CREDENTIALS)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit()),
        1,
    );
    (child, l[0].addr.clone())
}

/// `GET path` with the credentials: its JSON (200 expected).
fn get_json(addr: &str, path: &str) -> Value {
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(CREDENTIALS)
    );
    let r = request(addr, "GET", path, &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 200, "GET {path}: {r:?}");
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {r:?}"))
}

#[test]
fn the_page_records_with_preroll_and_plays_the_recording() {
    let bus = unique_name("recpage");
    let _feed = Feeder::start(&bus, 640, 360, 30);
    let _enc = Encoder::start(&bus, PROFILE, &[], None);
    let stream = format!("{bus}/rec");
    let dir = TempDir::new("recpage");
    let (_rec, addr) = start_recorder(dir.path(), &stream);

    // Without credentials the page asks for them (the browser's prompt).
    let r = request(&addr, "GET", "/", &[], b"");
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic")),
        "{r:?}"
    );

    // Enough in memory for 1 s of pre-roll from a keyframe.
    let mut held = 0.0;
    let ok = eventually(Duration::from_secs(20), || {
        let j = get_json(&addr, "/api/v1/recorder/streams");
        held = j["streams"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["stream"] == stream.as_str()))
            .and_then(|s| s["preroll_s"].as_f64())
            .unwrap_or(0.0);
        held >= 2.0
    });
    assert!(ok, "{stream}: only {held} s in memory after 20 s");

    let r = recorder_page(&RecPage {
        url: format!("http://{addr}/"),
        stream: stream.clone(),
        duration: 2.0,
        preroll: 1.0,
        snapshot: true,
        basic: Some(CREDENTIALS.into()),
        seconds: 30.0,
    });
    eprintln!("{r:#?}");
    assert_eq!(r.http_status, Some(200), "{r:#?}");
    assert_eq!(r.title.as_deref(), Some("framebus recordings"));
    assert!(r.page_errors.is_empty(), "{:?}", r.page_errors);
    let row = r.stream_row.as_ref().expect("the stream's row");
    assert_eq!(row[0], stream, "{row:?}");
    assert_eq!(row[1], "640×360 @ 30 fps", "{row:?}");
    assert!(row[4].contains("buffered"), "{row:?}");
    assert_eq!(r.record_error, None, "{r:#?}");

    // The list: waiting/recording, then done, with what a finished clip offers.
    let rec = r.recording.as_ref().expect("a new recording in the list");
    assert_eq!(rec.state.as_deref(), Some("done"), "{rec:#?}");
    for a in ["play", "download", "snapshot", "delete"] {
        assert!(rec.actions.iter().any(|x| x == a), "no {a}: {rec:#?}");
    }
    assert!(!rec.actions.iter().any(|x| x == "stop"), "{rec:#?}");
    let dl = rec.download.as_ref().expect("a Download link");
    assert_eq!(
        dl.href,
        format!("http://{addr}/api/v1/recordings/{}/file.mp4", rec.id)
    );
    assert_eq!(dl.name.as_deref(), Some(format!("{}.mp4", rec.id).as_str()));

    // The API has it as the page showed it.
    let api = get_json(&addr, &format!("/api/v1/recordings/{}", rec.id));
    assert_eq!(api["state"], "done", "{api:#}");
    assert_eq!(api["kind"], "clip", "{api:#}");
    assert_eq!(api["stream"], stream.as_str(), "{api:#}");
    assert_eq!(api["requested_duration_s"], 2.0, "{api:#}");
    assert_eq!(api["requested_preroll_s"], 1.0, "{api:#}");
    assert_eq!(api["snapshot"], true, "{api:#}");
    let got = api["preroll_s"].as_f64().expect("preroll_s");
    assert!(
        (1.0..=2.0).contains(&got),
        "pre-roll got {got} s for 1 s asked, a keyframe every 0.5 s: {api:#}"
    );
    assert_eq!(rec.cells["preroll"], format!("{got:.2} s"), "{rec:#?}");
    assert_eq!(rec.cells["frames"], api["frames"].to_string(), "{rec:#?}");
    let listed = get_json(&addr, "/api/v1/recordings");
    assert!(
        listed["recordings"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x["id"] == rec.id.as_str())),
        "{listed:#}"
    );

    // Play: the page's <video> loads the progressive MP4 and plays it.
    let want = 2.0 + got;
    let v = r.video.as_ref().expect("Play was clicked");
    assert!(
        v.error.is_none() && v.loadedmetadata,
        "the video did not load: {v:#?}; the page said {:?}",
        r.message
    );
    let d = v.duration_s.expect("a finite duration");
    eprintln!(
        "pre-roll got {got:.3} s; <video> duration {d:.3} s (want {want:.3}), metadata after {:?} ms",
        v.metadata_ms
    );
    assert!(
        (d - want).abs() <= 0.1,
        "duration {d} s, want 2 s + {got} s of pre-roll: {v:#?}"
    );
    assert_eq!((v.width, v.height), (Some(640), Some(360)), "{v:#?}");
    assert!(v.advanced, "currentTime did not move: {v:#?}");
    assert!(
        r.console_errors.is_empty(),
        "console errors: {:?}",
        r.console_errors
    );
}
