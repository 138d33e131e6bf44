//! `v4l2:` sources end to end: the producer binary runs under the fake
//! camera (`fakecam/`, an LD_PRELOAD library answering the V4L2 ioctls), so
//! the real `v4l` crate code is exercised: YUYV and MJPEG cameras into the
//! bus, the device lock (exit 5 naming the pid), unplug and replug
//! (reconnection, same bus), a hung camera (watchdog), `--list-devices`.

mod common;
#[path = "../fakecam/harness.rs"]
mod harness;

use std::process::Command;
use std::time::Duration;

use common::{wait_stderr, ChildGuard, Scene};
use framebus::PixelFormat;
use harness::{FakeCams, MJPEG_CAM, YUYV_CAM};

fn cams() -> FakeCams {
    harness::library();
    FakeCams::new()
}

fn spawn(s: &Scene, cams: &FakeCams, bus: &str, args: &[&str]) -> ChildGuard {
    let mut c = Command::new(common::BIN);
    c.env("FRAMEBUS_SHM_DIR", &s.dir)
        .envs(cams.env())
        .args(["--bus", bus])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    ChildGuard::spawn(&mut c)
}

#[test]
fn yuyv_camera_feeds_the_bus() {
    let cams = cams();
    let s = Scene::new("cam");
    let src = format!("v4l2:{YUYV_CAM}");
    let _p = spawn(
        &s,
        &cams,
        &s.bus,
        &["--source", &src, "--size", "640x480", "--fps", "30"],
    );
    let mut r = s.reader();
    assert_eq!(r.spec().format, PixelFormat::Nv12);
    assert_eq!((r.spec().width, r.spec().height), (640, 480));
    let mut last = 0;
    for _ in 0..10 {
        let f = r.next(Some(Duration::from_secs(10))).expect("a frame");
        assert!(f.seq() > last);
        last = f.seq();
        assert!(f.mono_ns() > 0);
    }
    let st = s.wait_stat(Duration::from_secs(10), |st| st.captured >= 10);
    assert_eq!(st.source_state, "running");
    assert_eq!(st.source, src);
}

#[test]
fn yuyv_bus_from_yuyv_camera_and_mjpeg_camera_decoded() {
    let cams = cams();
    for (dev, format) in [
        (YUYV_CAM, "yuyv"),
        (MJPEG_CAM, "nv12"),
        (MJPEG_CAM, "rgb24"),
    ] {
        let s = Scene::new("fmt");
        let src = format!("v4l2:{dev}");
        let _p = spawn(
            &s,
            &cams,
            &s.bus,
            &[
                "--source", &src, "--size", "640x480", "--fps", "30", "--format", format,
            ],
        );
        let mut r = s.reader();
        assert_eq!(r.spec().format.name(), format);
        for _ in 0..5 {
            let f = r.next(Some(Duration::from_secs(10))).expect("a frame");
            assert_eq!(f.len(), f.spec().frame_size());
            // Not an empty picture: the fake camera's frames have content.
            let first = f[0];
            assert!(
                f.iter().any(|&b| b != first),
                "{dev} -> {format}: flat frame"
            );
        }
    }
}

#[test]
fn second_producer_on_the_same_device_exits_5_naming_the_pid() {
    let cams = cams();
    let s = Scene::new("lock");
    let src = format!("v4l2:{YUYV_CAM}");
    let first = spawn(&s, &cams, &s.bus, &["--source", &src, "--size", "640x480"]);
    let _r = s.reader();
    let other_bus = format!("{}-b", s.bus);
    let second = spawn(
        &s,
        &cams,
        &other_bus,
        &["--source", &src, "--size", "640x480"],
    );
    let (st, err) = wait_stderr(second, Duration::from_secs(30));
    assert_eq!(st.code(), Some(5), "{err}");
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
}

#[test]
fn unplug_and_replug_resume_into_the_same_bus() {
    let cams = cams();
    let s = Scene::new("unplug");
    let src = format!("v4l2:{YUYV_CAM}");
    let _p = spawn(
        &s,
        &cams,
        &s.bus,
        &[
            "--source",
            &src,
            "--size",
            "640x480",
            "--backoff-initial",
            "0.1",
            "--backoff-max",
            "0.2",
        ],
    );
    let mut r = s.reader();
    r.next(Some(Duration::from_secs(10))).expect("a frame");
    cams.set(YUYV_CAM, "unplug");
    let st = s.wait_stat(Duration::from_secs(30), |st| st.restarts >= 2);
    assert_ne!(st.source_state, "running");
    assert!(s.segment().exists(), "the bus stays");
    cams.set(YUYV_CAM, "ok 1");
    let before = st.captured;
    s.wait_stat(Duration::from_secs(30), |st| {
        st.captured > before + 5 && st.source_state == "running"
    });
    let f = r
        .next(Some(Duration::from_secs(10)))
        .expect("frames resume");
    assert_eq!((f.spec().width, f.spec().height), (640, 480));
}

#[test]
fn hung_camera_fires_the_watchdog() {
    let cams = cams();
    let s = Scene::new("hang");
    let src = format!("v4l2:{YUYV_CAM}");
    let _p = spawn(
        &s,
        &cams,
        &s.bus,
        &["--source", &src, "--size", "640x480", "--watchdog", "0.5"],
    );
    let mut r = s.reader();
    r.next(Some(Duration::from_secs(10))).expect("a frame");
    cams.set(YUYV_CAM, "hang");
    let st = s.wait_stat(Duration::from_secs(30), |st| st.watchdog_fires >= 1);
    assert!(s.segment().exists());
    cams.set(YUYV_CAM, "ok");
    let before = st.captured;
    s.wait_stat(Duration::from_secs(30), |st| st.captured > before + 5);
}

#[test]
fn list_devices_prints_both_cameras() {
    let cams = cams();
    let out = Command::new(common::BIN)
        .envs(cams.env())
        .arg("--list-devices")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(YUYV_CAM) && text.contains(MJPEG_CAM),
        "{text}"
    );
    assert!(text.contains("YUYV") && text.contains("MJPG"), "{text}");
    // No device at all: exit 6.
    let out = Command::new(common::BIN)
        .env("FRAMEBUS_V4L2_DEVICES", "")
        .arg("--list-devices")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    let s = Scene::new("nodev");
    let (code, err) = common::run_to_exit(&s, &["--source", "v4l2:/dev/video-none-93"]);
    assert_eq!(code, 6, "{err}");
}

#[test]
fn mjpeg_camera_passes_its_jpegs_through_a_second_bus() {
    let cams = cams();
    let s = Scene::new("pass");
    let src = format!("v4l2:{MJPEG_CAM}");
    let _p = spawn(
        &s,
        &cams,
        &s.bus,
        &[
            "--source",
            &src,
            "--size",
            "640x480",
            "--fps",
            "30",
            "--mjpeg-bus",
        ],
    );
    let mut raw = s.reader();
    assert_eq!(raw.spec().format, PixelFormat::Nv12);
    let mut jpeg = framebus::Reader::attach(
        &format!("{}.mjpeg", s.bus),
        framebus::ReaderOptions {
            wait: Some(Duration::from_secs(30)),
            shm_dir: Some(s.dir.clone()),
        },
    )
    .expect("the pass-through bus exists");
    assert_eq!(jpeg.spec().format, PixelFormat::Mjpeg);
    for _ in 0..3 {
        let f = jpeg.next(Some(Duration::from_secs(10))).expect("a JPEG");
        assert_eq!(&f[..2], &[0xff, 0xd8], "starts with SOI");
        let head = turbojpeg::read_header(&f).expect("a valid JPEG");
        assert_eq!((head.width, head.height), (640, 480));
        raw.next(Some(Duration::from_secs(10)))
            .expect("raw frames too");
    }
}
