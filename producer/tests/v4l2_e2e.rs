//! The real `framebus-producer` binary with `--source v4l2:<fake camera>`
//! under `LD_PRELOAD` (see `fakecam/`), read through a `framebus::Reader`:
//! frames flow, an unplug keeps the bus and restarts the source, a hang fires
//! the watchdog, and frames resume after both.

mod common;
#[path = "../fakecam/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use common::{ChildGuard, Scene};
use framebus::{PixelFormat, ReadError, Reader};
use harness::{FakeCams, MJPEG_CAM, YUYV_CAM};

/// Spawns the producer on a fake camera with fast backoff and watchdog,
/// logging to a file in the scenario directory (never a pipe nobody reads).
fn spawn(scene: &Scene, cams: &FakeCams, args: &[&str]) -> ChildGuard {
    let log = std::fs::File::create(cams.dir.join("producer.log")).expect("producer log");
    ChildGuard::spawn(
        scene
            .producer(args)
            .envs(cams.env())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log),
    )
}

fn producer_log(cams: &FakeCams) -> String {
    std::fs::read_to_string(cams.dir.join("producer.log")).unwrap_or_default()
}

/// Reads frames until `n` arrived (each within 10 s), checking they are the
/// fake camera's YUYV frames copied unchanged; returns the last bus sequence.
fn read_frames(reader: &mut Reader, n: usize, cams: &FakeCams) -> u64 {
    let mut last = None;
    let mut got = 0;
    let end = Instant::now() + Duration::from_secs(60);
    while got < n {
        assert!(
            Instant::now() < end,
            "frames stopped; producer log:\n{}",
            producer_log(cams)
        );
        match reader.next(Some(Duration::from_secs(10))) {
            Ok(f) => {
                assert_eq!(&f[..8], b"FAKECAM1", "bus frame is the camera's frame");
                if let Some(prev) = last {
                    assert!(f.seq() > prev);
                }
                last = Some(f.seq());
                got += 1;
            }
            // A producer restart is allowed to show once; the reader re-attaches.
            Err(ReadError::ProducerGone { .. }) => {}
            Err(e) => panic!(
                "reading the bus: {e}; producer log:\n{}",
                producer_log(cams)
            ),
        }
    }
    last.expect("at least one frame")
}

#[test]
fn producer_on_fake_camera_survives_unplug_and_hang() {
    let cams = FakeCams::new();
    let scene = Scene::new("v4l2");
    let source = format!("v4l2:{YUYV_CAM}");
    let _p = spawn(
        &scene,
        &cams,
        &[
            "--source",
            &source,
            "--size",
            "640x480",
            "--fps",
            "30",
            "--format",
            "yuyv",
            "--watchdog",
            "1",
            "--backoff-initial",
            "0.2",
            "--backoff-max",
            "0.5",
        ],
    );
    let mut reader = scene.reader();
    assert_eq!(reader.spec().format, PixelFormat::Yuyv);
    assert_eq!((reader.spec().width, reader.spec().height), (640, 480));
    read_frames(&mut reader, 20, &cams);
    let before = scene.wait_stat(Duration::from_secs(10), |s| s.captured >= 20);
    assert_eq!(before.source, source);

    // Unplug: the bus stays (same producer, readers see no frames, not an
    // error), the source restarts once the camera is back.
    cams.set(YUYV_CAM, "unplug");
    std::thread::sleep(Duration::from_millis(1500));
    let st = scene
        .stat()
        .expect("bus still there while the camera is unplugged");
    assert!(st.producer_alive, "{st:#?}");
    cams.set(YUYV_CAM, "ok 1");
    read_frames(&mut reader, 10, &cams);
    let st = scene.wait_stat(Duration::from_secs(20), |s| s.restarts > before.restarts);
    assert_eq!(
        st.watchdog_fires, before.watchdog_fires,
        "an unplug is not a watchdog fire"
    );

    // Hang: no frames while the device still looks open -> watchdog fires,
    // the source is reopened, and frames resume once the camera recovers.
    cams.set(YUYV_CAM, "hang 1");
    let hung = scene.wait_stat(Duration::from_secs(20), |s| {
        s.watchdog_fires > st.watchdog_fires
    });
    assert!(hung.producer_alive);
    cams.set(YUYV_CAM, "ok 1");
    read_frames(&mut reader, 10, &cams);
    eprintln!("producer log:\n{}", producer_log(&cams));
    drop(_p);
    let _ = std::fs::remove_dir_all(&cams.dir); // kept on failure, for the log
}

#[test]
fn list_devices_shows_the_fake_cameras() {
    let cams = FakeCams::new();
    let scene = Scene::new("v4l2-list");
    let mut p = spawn(&scene, &cams, &["--list-devices"]);
    let status = p.wait_exit(Duration::from_secs(60));
    let out = producer_log(&cams);
    assert!(status.success(), "{status}: {out}");
    for needle in [
        YUYV_CAM,
        MJPEG_CAM,
        "fakecam YUYV camera",
        "NV12",
        "MJPG",
        "1920x1080 @ 60, 30 fps",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
    let _ = std::fs::remove_dir_all(&cams.dir);
}
