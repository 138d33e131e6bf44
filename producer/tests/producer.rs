//! The producer binary with the test pattern: frames, time code, counters,
//! exit codes, signals, exclusivity.

mod common;

use std::time::Duration;

use common::{run_to_exit, Scene};
use framebus::timecode;
use framebus::{PixelFormat, ReadError};

#[test]
fn testsrc_frames_carry_time_code_and_counters() {
    let s = Scene::new("tc");
    let _p = s.spawn(&["--size", "320x240", "--fps", "30"]);
    let mut r = s.reader();
    assert_eq!(r.spec().format, PixelFormat::Nv12);
    assert_eq!((r.spec().width, r.spec().height), (320, 240));
    let mut last: Option<(u64, u32)> = None;
    for _ in 0..15 {
        let f = r.next(Some(Duration::from_secs(10))).expect("a frame");
        let tc = timecode::decode(f.spec(), &f).expect("time code decodes");
        // The code holds the very capture time the bus metadata carries.
        assert_eq!(tc.realtime_us, f.realtime_ns() / 1000);
        if let Some((seq, counter)) = last {
            // The counter advances with the frames between the two we saw
            // (more if the producer, starved of CPU, skipped deadlines).
            assert!(u64::from(tc.counter - counter) >= f.seq() - seq);
        }
        last = Some((f.seq(), tc.counter));
    }
    let st = s.wait_stat(Duration::from_secs(10), |st| st.captured >= 15);
    assert_eq!(st.source_state, "running");
    assert_eq!(st.source, "testsrc");
    assert_eq!(st.restarts, 0);
}

#[test]
fn every_bus_format() {
    for f in ["nv12", "yuyv", "uyvy", "i420", "rgb24", "bgr24", "gray8"] {
        let s = Scene::new(f);
        let _p = s.spawn(&["--size", "256x144", "--fps", "30", "--format", f]);
        let mut r = s.reader();
        assert_eq!(r.spec().format.name(), f);
        for _ in 0..3 {
            let fr = r.next(Some(Duration::from_secs(10))).expect("a frame");
            assert_eq!(fr.len(), fr.spec().frame_size());
            let tc =
                timecode::decode(fr.spec(), &fr).unwrap_or_else(|| panic!("{f}: no time code"));
            assert_eq!(tc.realtime_us, fr.realtime_ns() / 1000, "{f}");
        }
    }
}

#[test]
fn second_producer_on_the_same_bus_exits_5_naming_the_pid() {
    let s = Scene::new("dup");
    let first = s.spawn(&["--size", "128x96"]);
    let _r = s.reader();
    let (code, err) = run_to_exit(&s, &["--size", "128x96"]);
    assert_eq!(code, 5, "stderr: {err}");
    assert!(
        err.contains(&format!("pid {}", first.pid())),
        "stderr names the owner: {err}"
    );
    // The first one is untouched.
    assert!(s.stat().is_some_and(|st| st.producer_pid == first.pid()));
}

#[test]
fn bad_arguments_exit_4_with_one_line() {
    let s = Scene::new("args");
    for args in [
        &["--size", "12by7"][..],
        &["--format", "mjpeg"],
        &["--format", "h264"],
        &["--source", "camera:7"],
        &["--fps", "0"],
        &["--no-such-flag"],
        &["--size", "10x10"],
        &["--backoff-initial", "5", "--backoff-max", "1"],
    ] {
        let (code, err) = run_to_exit(&s, args);
        assert_eq!(code, 4, "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}: an explanation on stderr");
    }
    // A bad bus name too.
    let out = std::process::Command::new(common::BIN)
        .args(["--bus", "Bad/Name"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn sigterm_and_sigint_stop_cleanly_and_close_the_bus() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let s = Scene::new("sig");
        let p = s.spawn(&["--size", "320x240", "--fps", "5"]);
        let mut r = s.reader();
        r.next(Some(Duration::from_secs(10))).expect("a frame");
        p.signal(sig);
        let (st, err) = common::wait_stderr(p, Duration::from_secs(10));
        assert_eq!(st.code(), Some(0), "signal {sig}: {err}");
        assert!(!s.segment().exists(), "segment unlinked");
        // The reader learns at once.
        match r.next(Some(Duration::from_secs(5))) {
            Err(ReadError::ProducerGone { .. }) => {}
            other => panic!("expected ProducerGone, got {:?}", other.map(|f| f.seq())),
        }
    }
}

#[test]
fn help_exits_0() {
    let out = std::process::Command::new(common::BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--bus",
        "--source",
        "--size",
        "--fps",
        "--format",
        "--slots",
        "--group",
        "--list-devices",
        "--log-format",
        "--watchdog",
    ] {
        assert!(text.contains(flag), "--help mentions {flag}");
    }
}

#[test]
fn json_logs_are_json() {
    let s = Scene::new("json");
    let p = s.spawn(&["--size", "128x96", "--log-format", "json"]);
    let _r = s.reader();
    p.signal(libc::SIGTERM);
    let (st, err) = common::wait_stderr(p, Duration::from_secs(10));
    assert_eq!(st.code(), Some(0));
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in lines {
        assert!(l.starts_with('{') && l.ends_with('}'), "not JSON: {l}");
    }
}

#[test]
fn group_makes_the_segment_group_readable() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getgid(2) has no preconditions.
    let gid = unsafe { libc::getgid() };
    let s = Scene::new("group");
    let _p = s.spawn(&["--size", "128x96", "--group", &gid.to_string()]);
    let _r = s.reader();
    let meta = std::fs::metadata(s.segment()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), gid);
    let (code, err) = run_to_exit(&Scene::new("nogroup"), &["--group", "no-such-group-xyz"]);
    assert_eq!(code, 4, "{err}");
}
