//! The browser console (`framebus-mjpeg`'s `/`, `publishers/src/console/`)
//! end to end: the whole service as a person runs it
//! (`framebus-producer --config`: two test-pattern cameras, an encoder,
//! MJPEG with WebRTC and LL-HLS, RTSP, the recorder), and headless Chromium
//! using the page (`tests/browser/console.mjs`, one browser for every
//! step):
//!
//! 1. `/` loads and the first status renders (`framebusConsole.ready`);
//! 2. mosaic: a tile per camera and for a bus another program writes (as
//!    a Python program writes an annotated bus), moving (two screenshots of its picture a
//!    second apart differ, two time-code counters read) with the time
//!    code's latency;
//! 3. player: WebRTC, then LL-HLS and MJPEG through the mode buttons, each
//!    with frames and a latency;
//! 4. fallback: WHEP refused → LL-HLS; the playlists refused too → MJPEG;
//! 5. a recording through the form (1 s pre-roll, 2 s) gets done and plays
//!    in the page's `<video>`;
//! 6. the RTSP publisher SIGKILLed: its row leaves `running` (`backoff`,
//!    `starting`: printed, as a late poll may miss them) and comes back
//!    with one more restart and another pid (the status file agrees);
//! 7. behind Basic auth (a second, small service): `/` is 401 without
//!    credentials; with them the page gets ready and its tile moves;
//! 8. no uncaught error in the page, no console error but the 503s step 4
//!    provokes;
//! 9. screenshots `console-mosaic.png` and `console-player.png` (into
//!    `$FRAMEBUS_SCREENSHOTS_DIR` when set, else a temporary directory).
//!
//! A second test runs a small service with one camera beeping into its
//! microphone (`audio = "tone"`) and one without: the camera's audio in
//! `/api/v1/console` (a finite level that reaches the beep's), the
//! `framebus_audio_*` series of `/metrics` for that camera only, and in
//! the page a level meter on its tile only, whose level moves.
//!
//! Each service has its own shm directory (its buses and status file only),
//! unique bus names and ports from the OS; both are stopped on drop. Every
//! wait is a watchdog; times are printed, never asserted.

use std::path::Path;
use std::time::{Duration, Instant};

use framebus_test_support::browser::{drive_script, driver_dir, parse_report};
use framebus_test_support::recorder::curl;
use framebus_test_support::service::Service;
use framebus_test_support::{unique_name, Feeder, TempDir};
use serde_json::Value;

/// The encoder every camera gets (WebRTC, LL-HLS, the recording).
const ENCODER: &str = "low";
/// The second service's credentials.
const CREDENTIALS: &str = "viewer:console-s3cret";
/// The driver's own bound on its run (it stops waiting then).
const DRIVER_SECONDS: f64 = 150.0;
/// Starting the services: encoders and publishers on a loaded machine.
const START_LIMIT: Duration = Duration::from_secs(90);

/// The service under test: two cameras, one encoder for both, every
/// publisher on port 0, a quick restart after a crash.
fn main_config(cam0: &str, cam1: &str, recordings: &Path) -> String {
    format!(
        r#"[[camera]]
bus = "{cam0}"
source = "testsrc"
size = "640x360"
fps = 30

[[camera]]
bus = "{cam1}"
source = "testsrc"
size = "320x240"
fps = 30

[[encoder]]
name = "{ENCODER}"
size = "320x180"
fps = 30
bitrate = "300k"
gop = 30
h264 = "main"
grace = 5

[publishers.mjpeg]
listen = "127.0.0.1:0"
grace = 5

[publishers.mjpeg.webrtc]
udp = "127.0.0.1:0"

[publishers.rtsp]
listen = "127.0.0.1:0"

[publishers.recorder]
listen = "127.0.0.1:0"
dir = "{dir}"
buffer = ["{cam0}/{ENCODER}"]
preroll_max = "10s"

[supervision]
backoff_initial = 1.5
backoff_max = 5
health_interval = 0.5
"#,
        dir = recordings.display()
    )
}

/// The second service: one camera, MJPEG only, behind Basic auth.
fn auth_config(cam: &str) -> String {
    format!(
        r#"[[camera]]
bus = "{cam}"
source = "testsrc"
size = "320x240"
fps = 15

[publishers.mjpeg]
listen = "127.0.0.1:0"
auth = "{CREDENTIALS}"

[publishers.mjpeg.webrtc]
udp = "127.0.0.1:0"

[publishers.mjpeg.hls]
enabled = false
"#
    )
}

/// `node console.mjs ARGS --seconds DRIVER_SECONDS` in headless Chromium
/// (the shared driver runner: node modules and Chromium checked, scratch
/// `$TMPDIR`, bounded); its report. Panics when the driver fails.
fn drive(args: &[String]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--seconds".to_string(), DRIVER_SECONDS.to_string()]);
    let out = drive_script("console.mjs", &args, DRIVER_SECONDS, None);
    parse_report("console.mjs", &out)
}

/// The player's state at the end of a wait, in `want` with frames and a
/// latency (what `what` names in messages).
fn assert_plays(p: &Value, want: &str, what: &str) {
    assert_eq!(p["mode"], want, "{what}: {p:#}");
    assert!(
        p["frames"].as_u64().unwrap_or(0) > 0,
        "{what}: no frame: {p:#}"
    );
    assert!(
        p["latency_ms"].is_number() && p["latency_kind"].is_string(),
        "{what}: no latency: {p:#}"
    );
}

/// A PNG file.
fn assert_png(path: &Path) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        b.len() > 1000 && b.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{}: not a PNG ({} bytes)",
        path.display(),
        b.len()
    );
}

#[test]
fn the_console_shows_plays_records_and_follows_the_service() {
    let t0 = Instant::now();
    let (cam0, cam1, cam_auth) = (
        unique_name("console0"),
        unique_name("console1"),
        unique_name("console-auth"),
    );
    let recordings = TempDir::new("console-recordings");
    // hls.js from npm (`make node-deps`), served by framebus-mjpeg to the
    // page's LL-HLS player.
    let hls_js = driver_dir().join("node_modules/hls.js/dist/hls.min.js");
    assert!(
        hls_js.is_file(),
        "{} missing: run `make node-deps`",
        hls_js.display()
    );
    let hls_js = hls_js.display().to_string();
    let mut svc = Service::start(
        "console",
        &main_config(&cam0, &cam1, recordings.path()),
        &[(framebus::contract::env::HLS_JS, &hls_js)],
    );
    let mut auth = Service::start("console-auth", &auth_config(&cam_auth), &[]);
    svc.wait_running(START_LIMIT);
    auth.wait_running(START_LIMIT);
    // A bus no camera of the config writes: another program's (an
    // annotated copy a vision program publishes), in the service's
    // directory, discovered by framebus-mjpeg.
    let annotated = unique_name("console-annotated");
    let _annotated = Feeder::start_in(&annotated, 320, 180, 15, Some(svc.shm_dir()));
    let url = svc.url("mjpeg");
    let auth_addr = auth.address("mjpeg");
    let started = t0.elapsed();

    // 7, outside the browser: without credentials, 401 and the prompt.
    for path in ["/", "/api/v1/console"] {
        let r = curl("GET", &format!("http://{auth_addr}{path}"), None, None, &[]);
        assert_eq!(r.status, 401, "GET {path} without credentials: {r:?}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Basic")),
            "{r:?}"
        );
    }
    let r = curl(
        "GET",
        &format!("http://{auth_addr}/"),
        None,
        None,
        &["-u", CREDENTIALS],
    );
    assert_eq!(r.status, 200, "GET / with credentials: {r:?}");

    let keep = std::env::var_os("FRAMEBUS_SCREENSHOTS_DIR");
    let tmp_shots = TempDir::new("console-shots");
    let shots = keep
        .as_ref()
        .map_or_else(|| tmp_shots.path().to_path_buf(), Into::into);
    let stream = format!("{cam0}/{ENCODER}");
    let args: Vec<String> = [
        "--url",
        &url,
        "--cams",
        &format!("{cam0},{cam1},{annotated}"),
        "--profile",
        ENCODER,
        "--stream",
        &stream,
        "--kill-rtsp",
        "--auth-url",
        &format!("http://{auth_addr}/"),
        "--basic",
        CREDENTIALS,
        "--auth-cam",
        &cam_auth,
        "--screenshots",
        &shots.display().to_string(),
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let r = drive(&args);
    let steps = &r["steps"];
    eprintln!(
        "{:#}\nconsole errors: {:#}\npage errors: {:#}",
        r["steps"], r["console_errors"], r["page_errors"]
    );
    let s = |name: &str| {
        let v = &steps[name];
        assert!(v.is_object(), "step {name} did not run: {r:#}");
        v
    };

    // 1. Loaded and ready.
    let load = s("load");
    assert!(load["error"].is_null(), "load: {load:#}");
    assert_eq!(load["http_status"], 200, "{load:#}");
    assert_eq!(load["title"], "framebus", "{load:#}");
    for cam in [&cam0, &cam1, &annotated] {
        assert!(
            load["cameras"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == cam.as_str())),
            "{cam} not in the console's cameras: {load:#}"
        );
    }

    // 2. Every tile moves and shows the time code's latency.
    let mosaic = s("mosaic");
    assert!(mosaic["error"].is_null(), "mosaic: {mosaic:#}");
    for cam in [&cam0, &cam1, &annotated] {
        let t = &mosaic["tiles"][cam.as_str()];
        assert_eq!(t["figure"], true, "{cam}: no figure.tile: {t:#}");
        assert!(
            t["natural_width"].as_u64().unwrap_or(0) > 0,
            "{cam}: no picture: {t:#}"
        );
        assert_eq!(
            t["screenshots_differ"], true,
            "{cam}: the picture did not move: {t:#}"
        );
        assert!(
            t["codes"].as_u64().unwrap_or(0) >= 2,
            "{cam}: time code did not move: {t:#}"
        );
        assert_eq!(t["latency_kind"], "timecode", "{cam}: {t:#}");
        assert!(t["latency_ms"].is_number(), "{cam}: {t:#}");
    }

    // 3. The player in each mode.
    let player = s("player");
    assert!(player["error"].is_null(), "player: {player:#}");
    assert_eq!(player["opened"], true, "{player:#}");
    for mode in ["webrtc", "hls", "mjpeg"] {
        assert_plays(&player[mode], mode, &format!("player in {mode}"));
        assert_eq!(
            player[mode]["fallbacks"].as_array().map(Vec::len),
            Some(0),
            "{mode}: {player:#}"
        );
    }
    assert!(
        player["hls"]["said"]
            .as_str()
            .is_some_and(|s| s.contains("hls.js")),
        "LL-HLS not through the served hls.js: {player:#}"
    );

    // 4. Fallbacks.
    let fb = s("fallback");
    assert!(fb["error"].is_null(), "fallback: {fb:#}");
    let w = &fb["whep_refused"];
    assert_plays(w, "hls", "WHEP refused");
    assert_eq!(w["fallbacks"].as_array().map(Vec::len), Some(1), "{w:#}");
    assert_eq!(w["fallbacks"][0]["from"], "webrtc", "{w:#}");
    let a = &fb["all_refused"];
    assert_plays(a, "mjpeg", "WHEP and playlists refused");
    assert_eq!(a["fallbacks"].as_array().map(Vec::len), Some(2), "{a:#}");
    assert_eq!(a["fallbacks"][0]["from"], "webrtc", "{a:#}");
    assert_eq!(a["fallbacks"][1]["from"], "hls", "{a:#}");

    // 5. The recording: done, with its pre-roll, and it plays.
    let rec = s("recording");
    assert!(rec["error"].is_null(), "recording: {rec:#}");
    let got = &rec["recording"];
    assert_eq!(got["state"], "done", "{rec:#}");
    assert_eq!(got["stream"], stream.as_str(), "{rec:#}");
    assert!(got["frames"].as_u64().unwrap_or(0) > 0, "{rec:#}");
    assert!(
        got["preroll_s"].as_f64().is_some_and(|p| p > 0.0),
        "{rec:#}"
    );
    let v = &rec["video"];
    assert!(
        v["advanced"] == true || v["ended"] == true,
        "#rec-video did not play: {v:#}"
    );
    assert!(
        v["src"].as_str().is_some_and(|s| s.ends_with(&format!(
            "/api/v1/recordings/{}/file.mp4",
            got["id"].as_str().unwrap_or("?")
        ))),
        "{v:#}"
    );
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(180)),
        "{v:#}"
    );
    // Through the console's address, byte ranges reach the recorder and
    // come back as ranges (what lets the page's <video> seek).
    let file = format!(
        "{}/api/v1/recordings/{}/file.mp4",
        url.trim_end_matches('/'),
        got["id"].as_str().unwrap_or("?")
    );
    let part = curl("GET", &file, None, None, &["-r", "100-199"]);
    assert_eq!(part.status, 206, "Range through the console: {part:?}");
    assert!(
        part.header("content-range")
            .is_some_and(|c| c.starts_with("bytes 100-199/")),
        "{part:?}"
    );

    // 6. The killed publisher: not running for a while, then running with
    // one more restart; the status file says why.
    let k = s("rtsp_kill");
    assert!(k["error"].is_null(), "rtsp_kill: {k:#}");
    let before = k["restarts_before"].as_u64().expect("restarts before");
    assert_eq!(k["state_after"], "running", "{k:#}");
    assert_eq!(k["restarts_after"].as_u64(), Some(before + 1), "{k:#}");
    assert_ne!(k["pid_after"], k["pid_before"], "{k:#}");
    // The row polled every 50 ms shows `backoff` (1.5 s here) or
    // `starting`; a page poll late by more than that on a loaded machine
    // can miss both: then the one more restart above is what tells.
    let states: Vec<&str> = k["states"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !states.iter().any(|s| ["backoff", "starting"].contains(s)) {
        eprintln!(
            "note: the rtsp row went from running to running (restarts {before} -> {}): {states:?}",
            before + 1
        );
    }
    let rtsp = svc.publisher("rtsp").expect("rtsp in the status file");
    assert_eq!(rtsp.restarts as u64, before + 1, "{rtsp:#?}");
    assert_eq!(
        rtsp.last_reason.as_deref(),
        Some("killed by signal 9"),
        "{rtsp:#?}"
    );

    // 7. With credentials, in the browser.
    let au = s("auth");
    assert!(au["error"].is_null(), "auth: {au:#}");
    assert_eq!(au["http_status"], 200, "{au:#}");
    assert_eq!(au["ready"], true, "{au:#}");
    assert_eq!(au["auth"], true, "{au:#}");
    assert!(
        au["tile"]["natural_width"].as_u64().unwrap_or(0) > 0,
        "{au:#}"
    );
    assert!(au["tile"]["codes"].as_u64().unwrap_or(0) >= 2, "{au:#}");

    // 8. No errors in the pages; console errors only the provoked 503s.
    assert_eq!(r["page_errors"], serde_json::json!([]), "{r:#}");
    assert_eq!(r["c_errors"], serde_json::json!([]), "{r:#}");
    assert_eq!(au["c_errors"], serde_json::json!([]), "{au:#}");
    let unexpected: Vec<&str> = r["console_errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|e| !(e.starts_with("[fallback]") && e.contains("503")))
        .collect();
    assert!(unexpected.is_empty(), "console errors: {unexpected:#?}");

    // 9. Screenshots.
    for f in ["console-mosaic.png", "console-player.png"] {
        assert_png(&shots.join(f));
    }

    eprintln!(
        "services running after {:.1} s; ready after {} ms; player: WebRTC {} ms ({} ms {}), LL-HLS {} ms ({} ms), MJPEG {} ms ({} ms); \
         fallback to LL-HLS {} ms, to MJPEG {} ms; recording {} ms (pre-roll {} s); rtsp states {states:?}; driver {} ms; total {:.1} s",
        started.as_secs_f64(),
        load["ready_ms"],
        player["webrtc"]["waited_ms"],
        player["webrtc"]["latency_ms"],
        player["webrtc"]["latency_kind"],
        player["hls"]["waited_ms"],
        player["hls"]["latency_ms"],
        player["mjpeg"]["waited_ms"],
        player["mjpeg"]["latency_ms"],
        w["waited_ms"],
        a["waited_ms"],
        rec["elapsed_ms"],
        got["preroll_s"],
        r["driver_ms"],
        t0.elapsed().as_secs_f64()
    );
    if keep.is_some() {
        eprintln!("screenshots in {}", shots.display());
    }
    assert_eq!(svc.stop(), Some(0), "the service did not stop cleanly");
    assert_eq!(
        auth.stop(),
        Some(0),
        "the auth service did not stop cleanly"
    );
}

/// The microphone test's service: `mic` beeps (the tone: 100 ms of 1 kHz
/// at every whole second), `quiet` has no microphone; a small encoder,
/// MJPEG and WebRTC (the player's sound button).
fn audio_config(mic: &str, quiet: &str) -> String {
    format!(
        r#"[[camera]]
bus = "{mic}"
source = "testsrc"
size = "320x240"
fps = 15
audio = "tone"

[[camera]]
bus = "{quiet}"
source = "testsrc"
size = "320x240"
fps = 15

[[encoder]]
name = "{ENCODER}"
size = "160x90"
fps = 15
bitrate = "100k"

[publishers.mjpeg]
listen = "127.0.0.1:0"

[publishers.mjpeg.webrtc]
udp = "127.0.0.1:0"

[publishers.mjpeg.hls]
enabled = false
"#
    )
}

fn get_json(url: &str) -> Value {
    let r = curl("GET", url, None, None, &[]);
    assert_eq!(r.status, 200, "GET {url}: {r:?}");
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {url}: {e}: {r:?}"))
}

fn get_text(url: &str) -> String {
    let r = curl("GET", url, None, None, &[]);
    assert_eq!(r.status, 200, "GET {url}: {r:?}");
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The value of the sample `series` (name and labels, as written) in
/// OpenMetrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[test]
fn the_console_and_metrics_show_a_cameras_microphone() {
    let t0 = Instant::now();
    let (mic, quiet) = (unique_name("console-mic"), unique_name("console-quiet"));
    let mut svc = Service::start("console-audio", &audio_config(&mic, &quiet), &[]);
    svc.wait_running(START_LIMIT);
    let url = svc.url("mjpeg");
    let base = url.trim_end_matches('/');
    let started = t0.elapsed();

    // The document: the beep's level within a few seconds, every level
    // finite (JSON has no -inf: silence is the floor), and the Opus
    // encoder up.
    let watchdog = Instant::now() + Duration::from_secs(10);
    let mut levels = Vec::new();
    let doc = loop {
        let doc = get_json(&format!("{base}/api/v1/console"));
        let a = doc["cameras"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["bus"] == mic.as_str()))
            .map(|c| c["audio"].clone())
            .unwrap_or(Value::Null);
        if a.is_object() {
            let peak = a["peak_dbfs"].as_f64();
            let rms = a["rms_dbfs"].as_f64();
            assert!(
                peak.is_some_and(f64::is_finite) && rms.is_some_and(f64::is_finite),
                "levels not finite numbers: {a:#}"
            );
            levels.push(peak.unwrap_or_default());
            if peak.is_some_and(|p| p > -20.0) && a["opus"]["encoding"] == true {
                break doc;
            }
        }
        assert!(
            Instant::now() < watchdog,
            "no beep (peak > -20 dBFS) with the Opus encoder up in 10 s; peaks {levels:?}; last audio {a:#}\n{}",
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(40));
    };
    let cams = doc["cameras"].as_array().expect("cameras");
    let names: Vec<&str> = cams.iter().filter_map(|c| c["bus"].as_str()).collect();
    assert_eq!(
        names,
        [mic.as_str(), quiet.as_str()],
        "the microphone's buses are not cameras of their own"
    );
    let a = &cams[0]["audio"];
    assert_eq!(a["bus"], format!("{mic}.audio"), "{a:#}");
    assert_eq!(a["state"], "live", "{a:#}");
    assert_eq!(a["source_state"], "running", "{a:#}");
    assert_eq!(a["capturing"], true, "{a:#}");
    assert_eq!(a["sample_rate"], 48000, "{a:#}");
    assert_eq!(a["channels"], 1, "{a:#}");
    assert!(a["xruns"].is_u64() && a["restarts"].is_u64(), "{a:#}");
    let o = &a["opus"];
    assert_eq!(o["bus"], format!("{mic}.opus"), "{o:#}");
    assert_eq!(o["state"], "live", "{o:#}");
    assert_eq!(o["process"], "running", "{o:#}");
    assert!(o["packets"].as_u64().unwrap_or(0) > 0, "{o:#}");
    assert!(cams[1]["audio"].is_null(), "{quiet}: {:#}", cams[1]);

    // The meters' poll: the camera with a microphone only.
    let l = get_json(&format!("{base}/api/v1/console/levels?cams={mic},{quiet}"));
    let got = l["levels"].as_array().expect("levels");
    assert_eq!(got.len(), 1, "{l:#}");
    assert_eq!(got[0]["bus"], mic.as_str(), "{l:#}");
    assert!(
        got[0]["peak_dbfs"].as_f64().is_some_and(f64::is_finite),
        "{l:#}"
    );
    let bad = curl(
        "GET",
        &format!("{base}/api/v1/console/levels?cams=..x"),
        None,
        None,
        &[],
    );
    assert_eq!(bad.status, 400, "{bad:?}");

    // /metrics: the audio series of that camera, none of the other.
    let m = get_text(&format!("{base}/metrics"));
    let (pcm, opus) = (
        format!("bus=\"{mic}.audio\""),
        format!("bus=\"{mic}.opus\""),
    );
    for (name, labels) in [
        ("framebus_audio_up", &pcm),
        ("framebus_audio_peak_dbfs", &pcm),
        ("framebus_audio_rms_dbfs", &pcm),
        ("framebus_audio_sample_rate", &pcm),
        ("framebus_audio_channels", &pcm),
        ("framebus_audio_xruns_total", &pcm),
        ("framebus_audio_encoder_up", &opus),
        ("framebus_audio_encoder_last_packet_age_seconds", &opus),
        ("framebus_bus_published_total", &opus),
    ] {
        let v = sample(&m, &format!("{name}{{{labels}}}"));
        assert!(
            v.is_some_and(f64::is_finite),
            "{name}{{{labels}}} missing or not finite in /metrics:\n{m}"
        );
    }
    let peak = sample(&m, &format!("framebus_audio_peak_dbfs{{{pcm}}}")).unwrap_or(f64::NAN);
    assert!((-120.0..=0.0).contains(&peak), "peak {peak}");
    assert_eq!(
        sample(&m, &format!("framebus_audio_up{{{pcm}}}")),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, &format!("framebus_audio_encoder_up{{{opus}}}")),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, &format!("framebus_audio_sample_rate{{{pcm}}}")),
        Some(48000.0)
    );
    let strays: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("framebus_audio_") && !l.contains(&pcm) && !l.contains(&opus))
        .collect();
    assert!(
        strays.is_empty(),
        "audio series of another bus: {strays:#?}"
    );
    assert!(
        !m.lines()
            .any(|l| !l.starts_with('#') && l.contains(&format!("{quiet}.audio"))),
        "{quiet} has no microphone:\n{m}"
    );

    // The page: a meter on the microphone's tile only, its level moving.
    let seconds = 30.0;
    let args: Vec<String> = [
        "--url",
        &url,
        "--cams",
        &format!("{mic},{quiet}"),
        "--audio",
        &mic,
        "--only",
        "load,audio,sound",
        "--seconds",
        &seconds.to_string(),
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let r: Value = parse_report(
        "console.mjs",
        &drive_script("console.mjs", &args, seconds, None),
    );
    let load = &r["steps"]["load"];
    assert!(load["error"].is_null(), "load: {r:#}");
    let au = &r["steps"]["audio"];
    assert!(au.is_object() && au["error"].is_null(), "audio step: {r:#}");
    assert_eq!(au["tiles"], serde_json::json!([mic, quiet]), "{au:#}");
    assert_eq!(au["with_meter"], serde_json::json!([mic]), "{au:#}");
    assert!(
        au["distinct_peaks"].as_u64().unwrap_or(0) >= 2,
        "the meter's level did not change in 2 s: {au:#}"
    );
    assert_eq!(au["row"]["mic"], "mic running", "{au:#}");
    assert_eq!(au["row"]["opus"], "Opus: encoding", "{au:#}");
    // The player's sound button: off at first (video only, muted), on
    // starts WebRTC again with an audio track that plays, unmuted.
    let so = &r["steps"]["sound"];
    assert!(so.is_object() && so["error"].is_null(), "sound step: {r:#}");
    assert_eq!(so["button"], "🔈 sound off", "{so:#}");
    assert_eq!(so["before"]["audio_packets"], 0, "{so:#}");
    assert_eq!(so["before"]["muted"], true, "{so:#}");
    assert_eq!(so["after"]["button"], "🔊 sound on", "{so:#}");
    assert_eq!(so["after"]["mode"], "webrtc", "{so:#}");
    assert_eq!(so["after"]["muted"], false, "{so:#}");
    assert!(
        so["after"]["audio_packets"].as_u64().unwrap_or(0) > 25,
        "no sound through the player: {so:#}"
    );
    assert!(
        so["after"]["audio_level"].as_f64().unwrap_or(0.0) > 0.0
            || so["after"]["total_audio_energy"].as_f64().unwrap_or(0.0) > 0.0,
        "the sound is silent: {so:#}"
    );
    assert!(
        so["quiet_button_hidden"] == true,
        "a camera without a microphone has a sound button: {so:#}"
    );
    assert_eq!(r["page_errors"], serde_json::json!([]), "{r:#}");
    assert_eq!(r["console_errors"], serde_json::json!([]), "{r:#}");
    assert_eq!(r["c_errors"], serde_json::json!([]), "{r:#}");

    eprintln!(
        "service running after {:.1} s; peaks in the document {levels:?}; page: peaks {} ({} level polls in 2 s); total {:.1} s",
        started.as_secs_f64(),
        au["peaks"],
        au["level_polls"],
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(svc.stop(), Some(0), "the service did not stop cleanly");
}
