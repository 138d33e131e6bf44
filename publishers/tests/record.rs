//! `framebus-recorder` (docs/recording.md) against real peers: ffprobe and
//! ffmpeg read and decode what it wrote, the time code burned into every
//! frame says which frames those are, and an [`EncodedLog`] of the encoded
//! bus says which frames the recorder could have written (so a frame the
//! recorder lost is told apart from one the encoder never made).
//!
//! - `clip_with_preroll`: a clip with pre-roll from the RAM buffer: size,
//!   frames, duration (request + pre-roll, ±1 frame), a clean decode, a
//!   keyframe first, the first frame the last keyframe at or before the
//!   request − pre-roll (the pre-roll accuracy is printed), the progressive
//!   layout, HTTP ranges, the fragmented file as written;
//! - `kill9_keeps_fragments`: `kill -9` mid-recording loses at most a
//!   fragment and a frame; restarted, the recorder offers the recording
//!   as "interrupted" and it plays;
//! - `cli_record`: `framebus record` (exec'ing `framebus-recorder
//!   record`) writes a file that plays; exit 3 without the recorder; a
//!   SIGTERM during a recording finishes its file and exits 0; bad
//!   arguments exit 4;
//! - `api_errors`: the statuses and JSON errors of the spec, stop,
//!   idempotent stop, snapshots, list filters, removal;
//! - `continuous_segments`: segments cut at keyframes, back to back,
//!   `/list` and `/get` (MediaMTX's shape), retention by bytes.
//!
//! The disk-full test is `record_disk.rs`, the browser one
//! `record_browser.rs`. Each test has its own buses (unique names),
//! encoder, recorder(s) on port 0 and directories; guards stop everything.
//! Every wait is a watchdog: nothing here asserts how long something took.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use framebus_test_support::http::Resp;
use framebus_test_support::recorder::{
    assert_plays, assert_recording_shape, copy_whole_boxes, curl, decode_errors, f64_of,
    ffprobe_video, frame_timecodes, locate_in_log, mp4_boxes, only_truncation_errors, rfc3339,
    rfc3339_ns, str_of, u64_of, AccessUnit, Recorder, Source,
};
use framebus_test_support::{bins, eventually, run_to_end, unique_name, FeedOptions, TempDir};
use serde_json::{json, Value};

/// The encoded stream every test records: 640x360 at 30 fps, a keyframe
/// every second (cheap on two cores, big enough for the time code).
const PROFILE: &str = "main=640x360@30,h264=main,bitrate=1M,gop=30";
const SIZE: (u32, u32) = (640, 360);
const FRAME_NS: u64 = 1_000_000_000 / 30;
const FRAME_S: f64 = 1.0 / 30.0;
const GOP_NS: u64 = 1_000_000_000;
/// Rounding of times in JSON (RFC 3339 with ms, seconds as floats).
const MS: f64 = 0.001;
/// Media time (the encoder's pts, frame by frame) against capture time
/// (each frame's clock reading): they part by the capture jitter, a few ms
/// on a loaded machine. Where an instant computed from one is compared
/// with one read from the other, this much apart is the same instant.
const JITTER: f64 = 0.010;
/// Watchdog on a recording reaching a state.
const WAIT: Duration = Duration::from_secs(30);

fn source(tag: &str) -> Source {
    Source::start(tag, FeedOptions::new(SIZE.0, SIZE.1, 30), PROFILE)
}

/// Asserts `a` and `b` (seconds) differ by at most `tol`.
fn near(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol,
        "{what}: {a} vs {b} (more than {tol} apart)"
    );
}

/// `{dir}/{bus}/{id}.{ext}`.
fn file_of(dir: &Path, bus: &str, id: &str, ext: &str) -> std::path::PathBuf {
    dir.join(bus).join(format!("{id}.{ext}"))
}

/// Asserts `r` has `status` and a JSON error; the error.
fn refused(r: &Resp, status: u16, what: &str) -> String {
    assert_eq!(r.status, status, "{what}: {r:?}");
    let e = r.error();
    eprintln!("{what}: {status} {e:?}");
    e
}

/// The index of the last keyframe at or before `ns` in `units`.
fn last_key_at_or_before(units: &[AccessUnit], ns: u64) -> Option<usize> {
    units.iter().rposition(|u| u.key && u.realtime_ns <= ns)
}

/// Asserts that the segment of `len` frames from `units[i]` (a keyframe)
/// was cut at the first keyframe at or after `seg_ns` of capture time:
/// the frame after it is a keyframe at least `seg_ns` (less half a frame
/// of capture jitter) after its start, and no keyframe inside it is more
/// than half a frame past `seg_ns`.
fn assert_cut_at_keyframe(units: &[AccessUnit], i: usize, len: usize, seg_ns: u64, what: &str) {
    let t0 = units[i].realtime_ns;
    let keys: Vec<f64> = units[i..]
        .iter()
        .take(len + 60)
        .filter(|u| u.key)
        .map(|u| (u.realtime_ns - t0) as f64 / 1e9)
        .collect();
    let next = units
        .get(i + len)
        .unwrap_or_else(|| panic!("{what}: the bus log ends with the segment"));
    let at = next.realtime_ns - t0;
    assert!(
        next.key && at + FRAME_NS / 2 >= seg_ns,
        "{what}: cut after {len} frames ({:.3} s), before a {}; the bus's keyframes at {keys:?} s",
        at as f64 / 1e9,
        if next.key {
            "keyframe"
        } else {
            "frame that is not a keyframe"
        }
    );
    let late = units[i + 1..i + len]
        .iter()
        .find(|u| u.key && u.realtime_ns - t0 > seg_ns + FRAME_NS / 2);
    assert!(
        late.is_none(),
        "{what}: not cut at the keyframe {:.3} s after its start: it goes on to {:.3} s \
         (keyframes at {keys:?} s)",
        late.map_or(0.0, |u| (u.realtime_ns - t0) as f64 / 1e9),
        at as f64 / 1e9
    );
}

#[test]
fn clip_with_preroll() {
    let src = source("rec-clip");
    let dir = TempDir::new("rec-clip");
    let rec = Recorder::start(
        dir.path(),
        &["--buffer", &src.stream, "--preroll-max", "10s"],
    );
    // Let the buffer fill: 2 s of pre-roll rounded down to a keyframe
    // reaches at most 3 s back.
    std::thread::sleep(Duration::from_secs(5));
    let r = rec.create(&json!({"stream": src.stream, "duration": "3s", "preroll": "2s"}));
    let id = str_of(&r, "id").to_string();
    assert_eq!(str_of(&r, "kind"), "clip", "{r:#}");
    assert_eq!(str_of(&r, "stream"), src.stream, "{r:#}");
    assert_eq!(str_of(&r, "bus"), src.bus(), "{r:#}");
    assert!(
        id.starts_with(&format!("{}_", src.bus())),
        "ids are {{bus}}_{{UTC time of the first frame}}: {id}"
    );
    assert_eq!(f64_of(&r, "requested_preroll_s"), 2.0, "{r:#}");
    assert_eq!(f64_of(&r, "requested_duration_s"), 3.0, "{r:#}");

    let done = rec.wait_state(&id, "done", WAIT);
    assert!(done["error"].is_null(), "{done:#}");
    let first_ns = u64_of(&done, "first_frame_realtime_ns");
    let req_ns = u64_of(&done, "requested_at_realtime_ns");
    let preroll_s = f64_of(&done, "preroll_s");
    let duration_s = f64_of(&done, "duration_s");
    let frames = u64_of(&done, "frames");
    // The RFC 3339 fields and the numbers say the same.
    near(
        (rfc3339_ns(str_of(&done, "start")) - i128::from(first_ns)) as f64 / 1e9,
        0.0,
        MS,
        "start vs first_frame_realtime_ns",
    );
    near(
        (rfc3339_ns(str_of(&done, "requested_at")) - i128::from(req_ns)) as f64 / 1e9,
        0.0,
        MS,
        "requested_at vs requested_at_realtime_ns",
    );
    near(
        preroll_s,
        (req_ns as f64 - first_ns as f64) / 1e9,
        MS,
        "preroll_s vs requested_at - first frame",
    );
    let end_ns = rfc3339_ns(str_of(&done, "end"));
    near(
        (end_ns - i128::from(first_ns)) as f64 / 1e9,
        duration_s,
        MS,
        "end - start vs duration_s",
    );
    // The clip ends `duration` after the request: never before, and not
    // long after (which frames exactly: against the bus log below).
    let end_after_req = (end_ns - i128::from(req_ns)) as f64 / 1e9;
    assert!(
        (3.0 - JITTER..3.5).contains(&end_after_req),
        "end - requested_at: {end_after_req} s for the requested 3 s"
    );
    assert_eq!(
        (u64_of(&done, "width"), u64_of(&done, "height")),
        (640, 360),
        "{done:#}"
    );
    assert!(str_of(&done, "codec").starts_with("avc1."), "{done:#}");

    // On disk: {dir}/{bus}/{id}.mp4 and its metadata.
    let on_disk = file_of(dir.path(), src.bus(), &id, "mp4");
    assert!(on_disk.is_file(), "{} missing", on_disk.display());
    let meta_path = file_of(dir.path(), src.bus(), &id, "json");
    let meta: Value = serde_json::from_slice(
        &std::fs::read(&meta_path).unwrap_or_else(|e| panic!("{}: {e}", meta_path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", meta_path.display()));
    assert_eq!(meta["id"], done["id"], "{meta:#}");
    assert_eq!(meta["state"], "done", "{meta:#}");
    assert_eq!(meta["frames"], done["frames"], "{meta:#}");

    // The progressive MP4: index first, plays, the right frames.
    let out = TempDir::new("rec-clip-out");
    let clip = out.path().join("clip.mp4");
    let resp = rec.download_ok(&id, "file.mp4", &clip);
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("video/mp4")),
        "{resp:?}"
    );
    assert_eq!(
        resp.header("content-disposition"),
        Some(format!("attachment; filename=\"{id}.mp4\"").as_str()),
        "{resp:?}"
    );
    let layout = mp4_boxes(&clip);
    assert_eq!(
        layout.kinds(),
        ["ftyp", "moov", "mdat"],
        "file.mp4: ftyp, moov with the sample table, one mdat"
    );
    assert!(layout.truncated.is_none());
    let p = assert_plays(&clip, SIZE, "file.mp4");
    assert_eq!(p.frames, frames, "ffprobe's frames vs the API's: {p:?}");
    near(
        p.duration,
        3.0 + preroll_s,
        FRAME_S + MS,
        "ffprobe duration vs the requested 3 s + the API's preroll_s",
    );
    near(
        p.duration,
        duration_s,
        FRAME_S + MS,
        "ffprobe vs duration_s",
    );

    // Which frames: the time codes against what the bus carried.
    let codes = frame_timecodes(&clip);
    assert_eq!(codes.len() as u64, frames, "decoded frames");
    let tc0 = codes[0].expect("a time code in the first frame");
    assert_eq!(
        tc0.realtime_us,
        first_ns / 1000,
        "the first frame's time code vs first_frame_realtime_ns"
    );
    let units = src.log.wait_past(end_ns as u64, WAIT);
    let i0 = locate_in_log(&units, &codes, "file.mp4");
    assert!(units[i0].key, "the first frame is a keyframe on the bus");
    let start_ns = req_ns - 2_000_000_000;
    let want = last_key_at_or_before(&units, start_ns);
    let gop_ns = units[i0 + 1..]
        .iter()
        .find(|u| u.key)
        .map_or(GOP_NS, |u| u.realtime_ns - units[i0].realtime_ns);
    eprintln!(
        "pre-roll accuracy: first frame {:.1} ms before the requested start (GOP {:.0} ms)",
        (start_ns as f64 - first_ns as f64) / 1e6,
        gop_ns as f64 / 1e6
    );
    assert!(
        first_ns <= start_ns && start_ns - first_ns < gop_ns + FRAME_NS,
        "the first frame ({first_ns}) is not within one GOP ({gop_ns} ns) at or before the \
         requested start ({start_ns})"
    );
    assert_eq!(
        Some(i0),
        want,
        "the recording starts at the last keyframe at or before request - pre-roll \
         (the bus's keyframes: {:?})",
        units
            .iter()
            .filter(|u| u.key)
            .map(|u| u.realtime_ns)
            .collect::<Vec<_>>()
    );
    // It ends with the last frame captured before request + 3 s: the
    // bus's next frame (left out) was captured at or after it. (On a
    // loaded machine the frames around the stop may be more than one
    // frame interval apart: the bus log says which they were.)
    let stop_ns = req_ns + 3_000_000_000;
    let jitter_ns = (JITTER * 1e9) as u64;
    let last = &units[i0 + frames as usize - 1];
    let next = units
        .get(i0 + frames as usize)
        .expect("the bus log goes past the clip's end");
    assert!(
        last.realtime_ns < stop_ns + jitter_ns && next.realtime_ns + jitter_ns >= stop_ns,
        "the clip's last frame ({}) and the bus's next ({}) vs the stop at {stop_ns}",
        last.realtime_ns,
        next.realtime_ns
    );

    // HTTP ranges (a <video> seeks with them).
    let bytes = std::fs::read(&clip).expect("read clip");
    let url = rec.url(&format!("/api/v1/recordings/{id}/file.mp4"));
    for (a, b) in [
        (0usize, 99usize),
        (1000, 1999),
        (bytes.len() - 10, bytes.len() - 1),
    ] {
        let r = curl("GET", &url, None, None, &["-r", &format!("{a}-{b}")]);
        assert_eq!(r.status, 206, "bytes={a}-{b}: {r:?}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {a}-{b}/{}", bytes.len()).as_str()),
            "{r:?}"
        );
        assert!(
            r.body == bytes[a..=b],
            "bytes={a}-{b}: other bytes than the whole file's"
        );
    }

    // The fragmented file, as written.
    let frag = out.path().join("fragmented.mp4");
    rec.download_ok(&id, "fragmented.mp4", &frag);
    assert!(
        std::fs::read(&frag).unwrap() == std::fs::read(&on_disk).unwrap(),
        "fragmented.mp4 is the file on disk"
    );
    let fl = mp4_boxes(&frag);
    assert!(
        fl.truncated.is_none() && fl.is_fragmented() && fl.fragments() >= 2,
        "fragmented.mp4: ftyp, moov, then moof+mdat pairs (about 1 s each): {:?}",
        fl.kinds()
    );
    let pf = assert_plays(&frag, SIZE, "fragmented.mp4");
    assert_eq!(pf.frames, frames, "fragmented.mp4: {pf:?}");
    assert_eq!(
        src.log.skipped(),
        0,
        "the test's own bus reader fell behind"
    );
}

#[test]
fn kill9_keeps_fragments() {
    let src = source("rec-kill9");
    let dir = TempDir::new("rec-kill9");
    let mut rec = Recorder::start(dir.path(), &["--fragment", "1s"]);
    let r = rec.create(&json!({"stream": src.stream}));
    assert!(r["requested_duration_s"].is_null(), "{r:#}");
    let id = str_of(&r, "id").to_string();
    rec.wait_state(&id, "recording", WAIT);
    std::thread::sleep(Duration::from_secs(3));
    // Kill mid-fragment: half a fragment after one landed on disk. (At
    // the instant a fragment is handed to the disk the one before may
    // still be on its way: the bound is about the fragment being
    // collected, and this keeps the test off that edge.)
    let path = file_of(dir.path(), src.bus(), &id, "mp4");
    let size = || std::fs::metadata(&path).map_or(0, |m| m.len());
    let before = size();
    assert!(
        eventually(Duration::from_secs(10), || size() != before),
        "no fragment reached {} within 10 s (--fragment 1s): {:#}",
        path.display(),
        rec.recording(&id)
    );
    std::thread::sleep(Duration::from_millis(500));
    // What the bus had carried when the recorder died.
    let carried = src.log.units();
    rec.kill9();
    let last_carried = *carried.last().expect("the bus carried frames");

    let layout = mp4_boxes(&path);
    assert!(
        layout.is_fragmented(),
        "{}: not ftyp, moov, moof+mdat...: {:?}",
        path.display(),
        layout.kinds()
    );
    let errors = decode_errors(&path);
    match layout.truncated {
        None => assert!(
            errors.is_empty(),
            "the file ends with whole fragments, yet ffmpeg says:\n{errors}"
        ),
        Some(end) => {
            eprintln!(
                "kill -9 cut the file inside its last box ({} of {end} bytes); ffmpeg says:\n{errors}",
                layout.len
            );
            if let Err(other) = only_truncation_errors(&errors) {
                panic!("ffmpeg reports more than a cut-short tail: {other:#?}");
            }
        }
    }
    // What the whole fragments hold.
    let out = TempDir::new("rec-kill9-out");
    let whole = out.path().join("whole.mp4");
    copy_whole_boxes(&path, &whole);
    let p = assert_plays(&whole, SIZE, "the whole fragments of the killed recording");
    let codes = frame_timecodes(&whole);
    let units = src.log.units();
    let i0 = locate_in_log(&units, &codes, "the killed recording");
    let last_kept = units[i0 + codes.len() - 1];
    let lost_ns = last_carried
        .realtime_ns
        .saturating_sub(last_kept.realtime_ns);
    eprintln!(
        "kill -9 after {:.2} s of recording: the file keeps {:.2} s ({} frames); lost {:.0} ms \
         (bound: --fragment 1 s + one frame)",
        (last_carried.realtime_ns + FRAME_NS - units[i0].realtime_ns) as f64 / 1e9,
        p.duration,
        p.frames,
        lost_ns as f64 / 1e6
    );
    // The bound is one fragment and the frame in hand; one more frame:
    // the recorder reads the bus beside this test's reader and may be a
    // frame behind it at the instant of the kill.
    assert!(
        lost_ns <= GOP_NS + 2 * FRAME_NS,
        "kill -9 lost {lost_ns} ns of frames: more than --fragment (1 s) and a frame"
    );

    // Restarted on the same directory: the recording is "interrupted",
    // with what its file holds, and downloads as a playable MP4.
    let rec2 = Recorder::start(dir.path(), &[]);
    let g = rec2.recording(&id);
    assert_eq!(str_of(&g, "state"), "interrupted", "{g:#}");
    assert_eq!(
        u64_of(&g, "frames"),
        p.frames,
        "frames of the whole fragments: {g:#}"
    );
    near(
        f64_of(&g, "duration_s"),
        p.duration,
        FRAME_S + MS,
        "duration_s",
    );
    assert!(
        rec2.list("")
            .iter()
            .any(|v| v["id"] == g["id"] && v["state"] == "interrupted"),
        "the list shows it"
    );
    let dl = out.path().join("file.mp4");
    rec2.download_ok(&id, "file.mp4", &dl);
    let pd = assert_plays(&dl, SIZE, "file.mp4 of the interrupted recording");
    assert_eq!(pd.frames, p.frames, "{pd:?}");
    let codes_dl = frame_timecodes(&dl);
    assert_eq!(codes_dl, codes, "file.mp4 holds the same frames");
}

#[test]
fn cli_record() {
    let src = source("rec-cli");
    let dir = TempDir::new("rec-cli");
    let mut rec = Recorder::start(
        dir.path(),
        &["--buffer", &src.stream, "--preroll-max", "5s"],
    );
    // 1 s of pre-roll rounded down to a keyframe: at most 2 s back.
    std::thread::sleep(Duration::from_secs(3));
    let out = TempDir::new("rec-cli-out");
    let f = out.path().join("clip.mp4");
    let o = run_to_end(
        Command::new(bins::path("framebus"))
            .args([
                "record",
                &src.stream,
                "--duration",
                "2s",
                "--preroll",
                "1s",
                "-o",
            ])
            .arg(&f)
            .args(["--api", rec.base()]),
        Duration::from_secs(60),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        o.status.success(),
        "framebus record: {}\nstdout: {stdout}\nstderr: {stderr}",
        o.status
    );
    eprintln!("framebus record printed: {stdout}{stderr}");
    let p = assert_plays(&f, SIZE, "framebus record's file");
    let listed = rec.list("?kind=clip");
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let v = &listed[0];
    assert_eq!(str_of(v, "state"), "done", "{v:#}");
    assert_eq!(u64_of(v, "frames"), p.frames, "{v:#}");
    let preroll_s = f64_of(v, "preroll_s");
    assert!(
        (1.0 - MS..1.0 + 1.0 + FRAME_S + MS).contains(&preroll_s),
        "1 s of pre-roll rounded down to a keyframe (GOP 1 s): {preroll_s}"
    );
    near(
        p.duration,
        2.0 + preroll_s,
        FRAME_S + MS,
        "duration of the file",
    );

    // Without framebus-recorder next to it or on PATH: exit 3.
    let lone = TempDir::new("rec-cli-lone");
    let exe = lone.path().join("framebus");
    std::fs::copy(bins::path("framebus"), &exe).expect("copy framebus");
    let o = run_to_end(
        Command::new(&exe)
            .args(["record", &src.stream, "--duration", "1s", "-o"])
            .arg(out.path().join("never.mp4"))
            .env("PATH", lone.path()),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{}: {stderr}", o.status);
    assert!(stderr.contains("framebus-recorder"), "{stderr}");

    // SIGTERM while recording: the file is finished, its record says
    // "done", the process exits 0.
    let open = rec.create(&json!({ "stream": src.stream }));
    let id = str_of(&open, "id").to_string();
    rec.wait_state(&id, "recording", WAIT);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rec.stop().code(), Some(0), "SIGTERM during a recording");
    let json_path = file_of(dir.path(), src.bus(), &id, "json");
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("the record")).unwrap();
    assert_eq!(str_of(&on_disk, "state"), "done", "{on_disk:#}");
    assert!(u64_of(&on_disk, "frames") > 0, "{on_disk:#}");
    let whole = assert_plays(
        &file_of(dir.path(), src.bus(), &id, "mp4"),
        SIZE,
        "stopped by SIGTERM",
    );
    assert_eq!(whole.frames, u64_of(&on_disk, "frames"), "{on_disk:#}");

    // Bad arguments: exit 4 (contract::exit::USAGE) with a line saying why.
    for bad in [
        &["--no-such-flag"][..],
        &["--fragment", "50ms"],
        &["--buffer", "Cam0/high"],
    ] {
        let o = run_to_end(
            Command::new(bins::path("framebus-recorder"))
                .args(bad)
                .args(["--listen", "127.0.0.1:0", "--dir"])
                .arg(dir.path()),
            Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(i32::from(framebus::contract::exit::USAGE)),
            "{bad:?}: {stderr}"
        );
        assert!(!stderr.trim().is_empty(), "{bad:?}: no reason given");
    }
}

#[test]
fn api_errors() {
    let src = source("rec-api");
    let dir = TempDir::new("rec-api");
    let rec = Recorder::start(
        dir.path(),
        &["--preroll-max", "10s", "--max-recordings", "1"],
    );
    let stream = src.stream.as_str();
    let post = |body: Value| rec.post_recording(&body);

    refused(
        &rec.post("/api/v1/recordings", "{\"stream\": "),
        400,
        "bad JSON",
    );
    let e = refused(&post(json!({"stream": "Not a stream!"})), 400, "bad stream");
    assert!(e.contains("stream"), "{e}");
    let ghost = unique_name("rec-ghost");
    let e = refused(
        &post(json!({"stream": format!("{ghost}/main")})),
        404,
        "no such encoded bus",
    );
    assert!(e.contains(&ghost), "the error names the bus: {e}");
    let e = refused(
        &post(json!({"stream": stream, "duration": "soon"})),
        400,
        "bad duration",
    );
    assert!(e.contains("duration"), "{e}");
    let e = refused(
        &post(json!({"stream": stream, "duration": -1})),
        400,
        "negative duration",
    );
    assert!(e.contains("duration"), "{e}");
    let e = refused(
        &post(json!({"stream": stream, "preroll": "20s"})),
        400,
        "pre-roll beyond --preroll-max",
    );
    assert!(e.contains("preroll") || e.contains("pre-roll"), "{e}");
    for (method, path) in [
        ("GET", "/api/v1/recordings/nosuch"),
        ("GET", "/api/v1/recordings/nosuch/file.mp4"),
        ("GET", "/api/v1/recordings/nosuch/fragmented.mp4"),
        ("GET", "/api/v1/recordings/nosuch/snapshot.jpg"),
        ("DELETE", "/api/v1/recordings/nosuch"),
    ] {
        refused(
            &curl(method, &rec.url(path), None, None, &[]),
            404,
            &format!("{method} {path}"),
        );
    }
    assert!(
        rec.list("").is_empty(),
        "a refused request made a recording"
    );

    // A: until stopped, with a snapshot.
    let a = rec.create(&json!({"stream": stream, "snapshot": true}));
    let a_id = str_of(&a, "id").to_string();
    assert!(a["requested_duration_s"].is_null(), "{a:#}");
    rec.wait_state(&a_id, "recording", WAIT);
    let r = post(json!({"stream": stream, "duration": 1}));
    assert_eq!(
        r.status,
        503,
        "--max-recordings 1 with A active: {r:?}\nA: {:#}",
        rec.recording(&a_id)
    );
    refused(&r, 503, "--max-recordings 1 reached");
    std::thread::sleep(Duration::from_millis(1500));
    let stop = rec.delete(&format!("/api/v1/recordings/{a_id}"));
    assert_eq!(stop.status, 200, "DELETE stops: {stop:?}");
    let stopped = stop.json();
    assert_eq!(str_of(&stopped, "state"), "done", "{stopped:#}");
    assert!(stopped["end"].is_string(), "{stopped:#}");
    assert!(u64_of(&stopped, "frames") > 0, "{stopped:#}");
    let again = rec.delete(&format!("/api/v1/recordings/{a_id}"));
    assert_eq!(again.status, 200, "a second DELETE: {again:?}");
    assert_eq!(
        again.json(),
        rec.recording(&a_id),
        "a second DELETE changes nothing and answers the recording"
    );
    assert_eq!(str_of(&again.json(), "state"), "done");

    // C: 1 s (a number of seconds), no snapshot; asked for more than a
    // GOP after A ended, so that even its first frame (the keyframe at or
    // before the request) comes after A's end.
    std::thread::sleep(Duration::from_millis(1500));
    let c = rec.create(&json!({"stream": stream, "duration": 1}));
    let c_id = str_of(&c, "id").to_string();
    assert_eq!(f64_of(&c, "requested_duration_s"), 1.0, "{c:#}");
    let c = rec.wait_state(&c_id, "done", WAIT);
    // Every key of the spec, and the file where `file` says (relative to
    // the recordings directory).
    assert_recording_shape(&c);
    assert_recording_shape(&stopped);
    let c_file = file_of(dir.path(), src.bus(), &c_id, "mp4");
    assert!(c_file.is_file(), "{} missing", c_file.display());
    assert!(
        str_of(&c, "file") == format!("{}/{c_id}.mp4", src.bus()),
        "{c:#}"
    );

    // Snapshots: A has one, C none.
    let out = TempDir::new("rec-api-out");
    let jpg = out.path().join("a.jpg");
    let r = rec.download_ok(&a_id, "snapshot.jpg", &jpg);
    assert_eq!(r.header("content-type"), Some("image/jpeg"), "{r:?}");
    let sp = ffprobe_video(&jpg);
    assert_eq!(
        (sp.codec.as_str(), sp.width, sp.height),
        ("mjpeg", SIZE.0, SIZE.1),
        "{sp:?}"
    );
    assert_eq!(rec.recording(&a_id)["snapshot"], true);
    assert_eq!(c["snapshot"], false, "{c:#}");
    refused(
        &rec.get(&format!("/api/v1/recordings/{c_id}/snapshot.jpg")),
        404,
        "no snapshot",
    );

    // The list: newest first, filters.
    let ids = |q: &str| -> Vec<String> {
        rec.list(q)
            .iter()
            .map(|v| str_of(v, "id").to_string())
            .collect()
    };
    let both = vec![c_id.clone(), a_id.clone()];
    assert_eq!(ids(""), both, "newest first");
    assert_eq!(ids(&format!("?stream={stream}")), both);
    assert_eq!(ids("?kind=clip"), both);
    assert!(ids("?kind=segment").is_empty());
    assert!(ids(&format!("?stream={ghost}/main")).is_empty());
    // Time filters, with a time between A's end and C's first frame (as
    // this test writes times: UTC, ms): whether a filter keeps the
    // recordings that overlap it or those that start in it, A is before
    // it and C after.
    let (a_end, c_start) = (
        rfc3339_ns(str_of(&stopped, "end")),
        rfc3339_ns(str_of(&c, "start")),
    );
    assert!(
        c_start > a_end,
        "C starts before A ended: {stopped:#} {c:#}"
    );
    let mid = rfc3339((a_end + c_start) / 2);
    assert_eq!(ids(&format!("?start={mid}")), [c_id.as_str()]);
    assert_eq!(ids(&format!("?end={mid}")), [a_id.as_str()]);

    // Removal: 204, gone from the API and the disk.
    let r = rec.delete(&format!("/api/v1/recordings/{a_id}?remove=1"));
    assert_eq!(r.status, 204, "{r:?}");
    refused(
        &rec.get(&format!("/api/v1/recordings/{a_id}")),
        404,
        "a removed recording",
    );
    let left: Vec<String> = std::fs::read_dir(dir.path().join(src.bus()))
        .expect("the bus directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&a_id))
        .collect();
    assert!(left.is_empty(), "files of the removed recording: {left:?}");
    assert_eq!(ids(""), [c_id.as_str()]);
    assert!(file_of(dir.path(), src.bus(), &c_id, "mp4").is_file());
}

#[test]
fn continuous_segments() {
    let src = source("rec-cont");
    let (da, db) = (TempDir::new("rec-cont-a"), TempDir::new("rec-cont-b"));
    let seg_args = ["--continuous", &src.stream, "--segment", "2s"];
    // B keeps 1 byte: every finished segment is over the budget.
    let b = Recorder::start(
        db.path(),
        &[&seg_args[..], &["--retain-bytes", "1"]].concat(),
    );
    let a = Recorder::start(da.path(), &seg_args);
    let mut b_first = None;
    let ok = eventually(WAIT, || {
        b_first = b_first.take().or_else(|| {
            let l = b.list("?kind=segment");
            l.last().map(|v| str_of(v, "id").to_string())
        });
        b_first.is_some()
    });
    assert!(ok, "B started no segment: {:#?}", b.list(""));
    let b_first = b_first.expect("B's first segment");

    let done = |r: &Recorder| -> Vec<Value> {
        r.list("?kind=segment")
            .into_iter()
            .filter(|v| v["state"] == "done")
            .collect()
    };
    let ok = eventually(WAIT, || done(&a).len() >= 3);
    assert!(ok, "fewer than 3 segments of 2 s done: {:#?}", a.list(""));
    let listed = a.list("?kind=segment");
    let starts: Vec<u64> = listed
        .iter()
        .map(|v| u64_of(v, "first_frame_realtime_ns"))
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] > w[1]),
        "newest first: {starts:?}"
    );
    let mut segs = done(&a);
    segs.reverse();

    // Each: a keyframe first, 2 s cut at the next keyframe, back to back.
    let out = TempDir::new("rec-cont-out");
    let units = src.log.wait_past(
        rfc3339_ns(str_of(segs.last().expect("segments"), "end")) as u64,
        WAIT,
    );
    let mut next_index = None;
    let mut prev_index = 0;
    let mut total_s = 0.0;
    for (n, s) in segs.iter().enumerate() {
        let id = str_of(s, "id");
        assert_eq!(str_of(s, "kind"), "segment", "{s:#}");
        assert_eq!(str_of(s, "stream"), src.stream, "{s:#}");
        let f = out.path().join(format!("seg{n}.mp4"));
        a.download_ok(id, "file.mp4", &f);
        let what = format!("segment {n} ({id})");
        let p = assert_plays(&f, SIZE, &what);
        assert_eq!(p.frames, u64_of(s, "frames"), "{what}: {p:?}");
        total_s += f64_of(s, "duration_s");
        let codes = frame_timecodes(&f);
        let i = locate_in_log(&units, &codes, &what);
        assert!(units[i].key, "{what} starts with a keyframe on the bus");
        assert_cut_at_keyframe(&units, i, codes.len(), 2_000_000_000, &what);
        near(p.duration, f64_of(s, "duration_s"), FRAME_S + MS, &what);
        if let Some(want) = next_index {
            assert_eq!(
                i, want,
                "{what} does not start with the frame after the previous segment's last \
                 (frames lost or repeated between segments)"
            );
            // The previous segment ends at its start (a capture time) plus
            // its media duration (pts on the 1/fps grid); this one starts at
            // its first frame's capture time. They part by how far the two
            // first frames' capture times stray from the grid: exactly that
            // (a loaded machine's jitter is tens of ms), to the ms.
            let prev = &segs[n - 1];
            let (p0, s0) = (&units[prev_index], &units[i]);
            let grid_ns = (s0.pts - p0.pts) as f64 * 1e9 / 90_000.0;
            let strayed = (p0.realtime_ns as f64 + grid_ns - s0.realtime_ns as f64) / 1e9;
            near(
                (rfc3339_ns(str_of(prev, "end")) - rfc3339_ns(str_of(s, "start"))) as f64 / 1e9,
                strayed,
                2.0 * MS,
                &format!("{what}: the previous segment's end vs its start"),
            );
        }
        prev_index = i;
        next_index = Some(i + codes.len());
    }

    // /list: one contiguous span; its URL serves it.
    let r = a.get(&format!("/list?stream={}", src.stream));
    assert_eq!(r.status, 200, "{r:?}");
    let spans = r.json();
    let spans = spans.as_array().unwrap_or_else(|| panic!("/list: {spans}"));
    assert_eq!(spans.len(), 1, "one contiguous span: {spans:#?}");
    let span = &spans[0];
    near(
        (rfc3339_ns(str_of(span, "start")) - rfc3339_ns(str_of(&segs[0], "start"))) as f64 / 1e9,
        0.0,
        MS,
        "the span starts with the first segment",
    );
    assert!(
        f64_of(span, "duration") >= total_s - MS,
        "the span ({span}) covers the done segments ({total_s} s)"
    );
    let span_url = str_of(span, "url");
    assert!(span_url.starts_with("/get?"), "{span}");
    let whole = out.path().join("span.mp4");
    let r = curl("GET", &a.url(span_url), None, Some(&whole), &[]);
    assert_eq!(r.status, 200, "GET {span_url}: {r:?}");
    assert_plays(&whole, SIZE, "the span's /get");

    // /get of 3 s from half a second into the first segment: from the
    // keyframe at or before it, across a segment boundary.
    let t_ns = u64_of(&segs[0], "first_frame_realtime_ns") + 500_000_000;
    let get = format!(
        "/get?stream={}&start={}&duration=3",
        src.stream,
        rfc3339(i128::from(t_ns))
    );
    let g = out.path().join("get.mp4");
    let r = curl("GET", &a.url(&get), None, Some(&g), &[]);
    assert_eq!(r.status, 200, "GET {get}: {r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("video/mp4")),
        "{r:?}"
    );
    assert_eq!(mp4_boxes(&g).kinds(), ["ftyp", "moov", "mdat"], "/get");
    let p = assert_plays(&g, SIZE, "/get");
    let codes = frame_timecodes(&g);
    let i = locate_in_log(&units, &codes, "/get");
    // `rfc3339` rounds down to the ms.
    let t_ms_ns = t_ns / 1_000_000 * 1_000_000;
    assert_eq!(
        Some(i),
        last_key_at_or_before(&units, t_ms_ns),
        "/get starts at the keyframe at or before start"
    );
    let early_s = (t_ms_ns - units[i].realtime_ns) as f64 / 1e9;
    assert!(
        p.duration >= 3.0 - FRAME_S - MS && p.duration <= 3.0 + early_s + FRAME_S + MS,
        "/get: {} s for 3 s from a keyframe {early_s} s earlier",
        p.duration
    );

    // Retention by bytes: B's first segment is deleted, files and all.
    let gone = eventually(WAIT, || {
        b.get(&format!("/api/v1/recordings/{b_first}")).status == 404
    });
    assert!(
        gone,
        "--retain-bytes 1 kept the oldest segment {b_first}: {:#?}",
        b.list("")
    );
    for ext in ["mp4", "json"] {
        let f = file_of(db.path(), src.bus(), &b_first, ext);
        assert!(!f.exists(), "{} left behind", f.display());
    }
    assert!(
        b.list("?kind=segment")
            .iter()
            .all(|v| v["id"] != b_first.as_str()),
        "the list still shows {b_first}"
    );
    assert_eq!(
        src.log.skipped(),
        0,
        "the test's own bus reader fell behind"
    );
}
