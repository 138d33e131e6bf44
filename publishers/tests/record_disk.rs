//! `framebus-recorder` when its directory fails it (docs/recording.md):
//! a disk that fills up, a file system remounted read-only, a directory
//! removed under it that cannot be made again. The recorder runs in a private mount namespace
//! of its own (`unshare --mount`, root) with a 2 MiB tmpfs as its
//! directory, so the disk that fills is that tmpfs and nothing else on
//! the machine sees it; the test reaches the files through the API, and
//! the namespace through `nsenter`.
//!
//! What must hold (issue 16): a clear error in the API (the recording
//! "failed" with the OS error; new recordings refused with 507 naming the
//! path and the error) and the metrics; the recording in progress keeps
//! what it has and plays; the earlier recordings are untouched; the rest
//! of the service goes on serving (`/healthz` answers, naming the problem
//! when it is not 200).
//!
//! Own buses, encoder, recorder on port 0 and directories; guards stop
//! everything (the namespace and its tmpfs go with the recorder). Every
//! wait is a watchdog.

use std::time::Duration;

use framebus_test_support::recorder::{
    assert_plays, decode_errors, in_mount_namespace_of, in_private_tmpfs, mp4_boxes,
    only_truncation_errors, require_root, str_of, u64_of, Recorder, Source,
};
use framebus_test_support::{FeedOptions, TempDir};
use serde_json::json;

/// Noise at 4 Mbit/s: about 0.5 MB a second, so a 2 MiB disk fills in
/// seconds (a clean test pattern compresses far below its bit rate).
const PROFILE: &str = "main=640x360@30,h264=main,bitrate=4M,gop=30";
const SIZE: (u32, u32) = (640, 360);
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn disk_full_and_unwritable_dir() {
    require_root("a private mount namespace with a small tmpfs");
    let src = Source::start(
        "rec-disk",
        FeedOptions::new(SIZE.0, SIZE.1, 30).noisy(),
        PROFILE,
    );
    let tmp = TempDir::new("rec-disk");
    let mnt = tmp.path().join("recordings");
    std::fs::create_dir(&mnt).expect("mount point");
    let mnt_s = mnt.display().to_string();
    // --min-free: the default (64 MiB) is more than the whole disk.
    let cmd = Recorder::command(&mnt, None, &["--fragment", "500ms", "--min-free", "256k"]);
    let mut rec = Recorder::spawn(&mut in_private_tmpfs(&cmd, &mnt, "2m"), &mnt);
    let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", rec.pid()))
        .expect("the recorder's mountinfo");
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(&format!(" {mnt_s} ")) && l.contains(" - tmpfs ")),
        "the recorder does not see its tmpfs on {mnt_s}:\n{mounts}"
    );

    // A clip that fits.
    let c1 = rec.create(&json!({"stream": src.stream, "duration": "1s"}));
    let c1_id = str_of(&c1, "id").to_string();
    let c1 = rec.wait_state(&c1_id, "done", WAIT);
    eprintln!(
        "clip 1: {} frames, {} bytes",
        u64_of(&c1, "frames"),
        u64_of(&c1, "bytes")
    );

    // A recording until the disk is full.
    let c2 = rec.create(&json!({"stream": src.stream}));
    let c2_id = str_of(&c2, "id").to_string();
    let c2 = rec.wait_state(&c2_id, "failed", WAIT);
    let err = str_of(&c2, "error");
    eprintln!(
        "clip 2 failed after {} frames, {} bytes: {err}",
        u64_of(&c2, "frames"),
        u64_of(&c2, "bytes")
    );
    assert!(err.contains("No space left on device"), "{c2:#}");
    assert!(u64_of(&c2, "frames") > 0, "it keeps what it had: {c2:#}");

    // The service goes on.
    assert!(rec.child.alive(), "the recorder died of a full disk");
    // /healthz may report the failure (a 503 naming it); it answers.
    rec.assert_serving_despite(&["No space left"]);
    let list = rec.list("");
    let state_of = |id: &str| {
        list.iter()
            .find(|v| v["id"] == id)
            .map(|v| str_of(v, "state").to_string())
    };
    assert_eq!(state_of(&c1_id).as_deref(), Some("done"), "{list:#?}");
    assert_eq!(state_of(&c2_id).as_deref(), Some("failed"), "{list:#?}");
    let m = rec.get("/metrics");
    assert_eq!(m.status, 200, "{m:?}");
    let failures: Vec<String> = m
        .text()
        .lines()
        .filter(|l| !l.starts_with('#') && (l.contains("fail") || l.contains("error")))
        .filter(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v >= 1.0)
        })
        .map(str::to_string)
        .collect();
    eprintln!("metrics of the failure: {failures:?}");
    assert!(
        !failures.is_empty(),
        "no failure or error counter above 0 in /metrics:\n{}",
        m.text()
    );

    // The earlier clip is intact; the failed one plays what it kept.
    let out = TempDir::new("rec-disk-out");
    let f1 = out.path().join("c1.mp4");
    rec.download_ok(&c1_id, "file.mp4", &f1);
    let p1 = assert_plays(&f1, SIZE, "the clip recorded before the disk filled");
    assert_eq!(p1.frames, u64_of(&c1, "frames"), "{p1:?}");
    let f2 = out.path().join("c2.mp4");
    rec.download_ok(&c2_id, "file.mp4", &f2);
    let p2 = assert_plays(&f2, SIZE, "the recording that filled the disk");
    assert_eq!(p2.frames, u64_of(&c2, "frames"), "{p2:?}");
    let g2 = out.path().join("c2-fragmented.mp4");
    rec.download_ok(&c2_id, "fragmented.mp4", &g2);
    let layout = mp4_boxes(&g2);
    assert!(layout.is_fragmented(), "{:?}", layout.kinds());
    let errors = decode_errors(&g2);
    match layout.truncated {
        None => {
            eprintln!("the recorder cut its file back to whole fragments");
            assert!(errors.is_empty(), "fragmented.mp4: {errors}");
        }
        Some(end) => {
            eprintln!(
                "fragmented.mp4 ends inside a box ({} of {end} bytes; a partial write)",
                layout.len
            );
            if let Err(other) = only_truncation_errors(&errors) {
                panic!("fragmented.mp4: more than a cut-short tail: {other:#?}");
            }
        }
    }

    // New recordings are refused while the disk is full. The failed
    // write may have left a few kB free: fill them.
    let fill = in_mount_namespace_of(
        rec.pid(),
        &["sh", "-c", &format!("cat /dev/zero > '{mnt_s}/.fill'")],
    );
    let said = String::from_utf8_lossy(&fill.stderr);
    assert!(said.contains("No space left"), "filling the tmpfs: {said}");
    let r = rec.post_recording(&json!({"stream": src.stream, "duration": 1}));
    assert_eq!(r.status, 507, "POST on a full disk: {r:?}");
    let e = r.error();
    eprintln!("full disk: 507 {e:?}");
    assert!(
        e.contains(&mnt_s) && e.contains("No space left on device"),
        "the error names the path and the OS error: {e}"
    );

    // A file system remounted read-only, with room again (the filler and
    // the failed recording removed: more than --min-free free).
    let r = rec.delete(&format!("/api/v1/recordings/{c2_id}?remove=1"));
    assert_eq!(r.status, 204, "removing the failed recording: {r:?}");
    for args in [
        &["rm", "-f", &format!("{mnt_s}/.fill")][..],
        &["mount", "-o", "remount,ro", &mnt_s][..],
    ] {
        let o = in_mount_namespace_of(rec.pid(), args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let r = rec.post_recording(&json!({"stream": src.stream, "duration": 1}));
    assert_eq!(r.status, 507, "POST on a read-only file system: {r:?}");
    let e = r.error();
    eprintln!("read-only: 507 {e:?}");
    assert!(
        e.contains(&mnt_s) && e.contains("Read-only file system"),
        "the error names the path and the OS error: {e}"
    );
    rec.assert_serving_despite(&["Read-only file system"]);
    assert_eq!(rec.list("").len(), 1, "the first clip still listed");
    rec.download_ok(&c1_id, "file.mp4", &f1);
    assert_plays(&f1, SIZE, "the first clip, on a read-only directory");
    assert_eq!(
        std::fs::read_dir(&mnt).expect("mount point").count(),
        0,
        "the tmpfs leaked out of the recorder's mount namespace"
    );

    // A directory removed under a running recorder and replaced by a
    // file, so that it cannot be made again: refused, saying why.
    let dir2 = tmp.path().join("recordings2");
    let dir2_s = dir2.display().to_string();
    let rec2 = Recorder::start(&dir2, &["--min-free", "0"]);
    let _ = std::fs::remove_dir_all(&dir2);
    std::fs::write(&dir2, b"not a directory").expect("write a file");
    let r = rec2.post_recording(&json!({"stream": src.stream, "duration": 1}));
    assert_eq!(
        r.status, 507,
        "POST with a directory that cannot be made: {r:?}"
    );
    let e = r.error();
    eprintln!("directory replaced by a file: 507 {e:?}");
    assert!(
        e.contains(&dir2_s) && (e.contains("Not a directory") || e.contains("File exists")),
        "the error names the path and the OS error: {e}"
    );
    rec2.assert_serving_despite(&["Not a directory", "File exists"]);
    assert!(rec2.list("").is_empty());
    assert_eq!(rec.stop().code(), Some(0), "the recorder stops cleanly");
}
