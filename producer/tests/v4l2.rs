//! The V4L2 source (`framebus_producer::v4l2`, through the real `v4l` crate) against the
//! fake cameras of `fakecam/fakecam.c`, loaded with `LD_PRELOAD` into a child
//! copy of this test binary (see `fakecam/harness.rs`).

#[path = "../fakecam/harness.rs"]
mod harness;

use std::time::Duration;

use framebus::{Fps, PixelFormat};
use framebus_producer::v4l2::{self, Difference, SizeInfo, V4l2Camera, V4l2Error, Want};
use harness::{MJPEG_CAM, YUYV_CAM};

const WAIT: Duration = Duration::from_secs(2);

fn want(format: Option<PixelFormat>, width: u32, height: u32, fps: u32) -> Want {
    Want {
        format,
        width,
        height,
        fps: Fps::new(fps),
    }
}

/// Reads one frame, failing the test with the error's Display.
fn frame(cam: &mut V4l2Camera) -> (Vec<u8>, u64, u32) {
    let f = cam
        .next_frame(WAIT)
        .unwrap_or_else(|e| panic!("next_frame: {e}"));
    (f.data.to_vec(), f.mono_ns, f.sequence)
}

#[test]
fn enumeration_lists_both_cameras() {
    let Some(_cams) = harness::child_or_spawn("enumeration_lists_both_cameras") else {
        return;
    };
    let devices: Vec<_> = v4l2::list_devices()
        .into_iter()
        .map(|d| d.expect("device readable"))
        .collect();
    assert_eq!(devices.len(), 2, "{devices:#?}");

    let yuyv = &devices[0];
    assert_eq!(yuyv.path.to_str(), Some(YUYV_CAM));
    assert_eq!(yuyv.card, "fakecam YUYV camera");
    let fourccs: Vec<&str> = yuyv.formats.iter().map(|f| f.fourcc.as_str()).collect();
    assert_eq!(fourccs, ["YUYV", "NV12"]);
    for format in &yuyv.formats {
        assert!(!format.compressed);
        let sizes: Vec<(u32, u32, Vec<Fps>)> = format
            .sizes
            .iter()
            .map(|s| match s {
                SizeInfo::Discrete { width, height, fps } => (*width, *height, fps.clone()),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        let rates = vec![Fps::new(60), Fps::new(30)];
        assert_eq!(
            sizes,
            [
                (640, 480, rates.clone()),
                (1280, 720, rates.clone()),
                (1920, 1080, rates)
            ]
        );
    }
    assert_eq!(yuyv.formats[1].pixel_format, Some(PixelFormat::Nv12));

    let mjpeg = &devices[1];
    assert_eq!(mjpeg.path.to_str(), Some(MJPEG_CAM));
    assert_eq!(mjpeg.formats[0].fourcc, "MJPG");
    assert!(mjpeg.formats[0].compressed);
    assert_eq!(mjpeg.formats[0].pixel_format, Some(PixelFormat::Mjpeg));

    let text = mjpeg.to_string();
    println!("{}{text}", yuyv);
    assert!(text.contains("MJPG Motion-JPEG -> mjpeg"), "{text}");
    assert!(text.contains("1280x720 @ 30, 15 fps"), "{text}");
    assert_eq!(
        v4l2::first_capture_device()
            .as_deref()
            .and_then(|p| p.to_str()),
        Some(YUYV_CAM)
    );
}

#[test]
fn negotiation_grants_what_was_asked() {
    let Some(_cams) = harness::child_or_spawn("negotiation_grants_what_was_asked") else {
        return;
    };
    let w = want(Some(PixelFormat::Yuyv), 1280, 720, 60);
    let cam = V4l2Camera::open(YUYV_CAM, w).expect("open");
    let g = cam.granted();
    assert_eq!(
        (g.format, g.width, g.height, g.fps),
        (PixelFormat::Yuyv, 1280, 720, Some(Fps::new(60)))
    );
    assert_eq!((g.stride, g.frame_bytes), (2560, 1280 * 720 * 2));
    assert!(g.differences(&w).is_empty());
    let report = cam.report().to_string();
    println!("{report}");
    assert!(
        report.ends_with("granted yuyv 1280x720 @ 60 fps as asked"),
        "{report}"
    );

    let cam =
        V4l2Camera::open(YUYV_CAM, want(Some(PixelFormat::Nv12), 1920, 1080, 30)).expect("open");
    let g = cam.granted();
    assert_eq!(
        (g.format, g.width, g.height, g.fps),
        (PixelFormat::Nv12, 1920, 1080, Some(Fps::new(30)))
    );
}

#[test]
fn negotiation_says_what_differs() {
    let Some(_cams) = harness::child_or_spawn("negotiation_says_what_differs") else {
        return;
    };
    let w = want(Some(PixelFormat::Yuyv), 1000, 700, 25);
    let cam = V4l2Camera::open(YUYV_CAM, w).expect("open");
    let g = cam.granted();
    assert_eq!((g.width, g.height, g.fps), (1280, 720, Some(Fps::new(30))));
    assert_eq!(g.differences(&w), [Difference::Size, Difference::Fps]);
    let report = cam.report().to_string();
    println!("{report}");
    assert!(report.contains("granted yuyv 1280x720 @ 30 fps; asked yuyv 1000x700 @ 25 fps (size differs, rate differs)"), "{report}");
    drop(cam);

    // No format asked: the MJPEG camera only does 1280x720 in MJPEG, 640x480 in both.
    let cam = V4l2Camera::open(MJPEG_CAM, want(None, 1280, 720, 30)).expect("open");
    assert_eq!(cam.granted().format, PixelFormat::Mjpeg);
    drop(cam);
    let cam = V4l2Camera::open(MJPEG_CAM, want(None, 640, 480, 30)).expect("open");
    assert_eq!(
        cam.granted().format,
        PixelFormat::Yuyv,
        "raw preferred on a tie"
    );
    drop(cam);

    let err = V4l2Camera::open(MJPEG_CAM, want(Some(PixelFormat::Nv12), 640, 480, 30)).unwrap_err();
    assert!(matches!(err, V4l2Error::FormatNotOffered { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{MJPEG_CAM}: camera does not offer nv12 (it offers MJPG, YUYV)")
    );
    let err = V4l2Camera::open(YUYV_CAM, want(Some(PixelFormat::Rgb24), 640, 480, 30)).unwrap_err();
    assert!(
        matches!(err, V4l2Error::UnsupportedFormat { .. }),
        "{err:?}"
    );
    let err = V4l2Camera::open("/dev/video97", want(None, 640, 480, 30)).unwrap_err();
    assert!(
        matches!(err, V4l2Error::NotFound { .. }) && err.is_gone(),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "/dev/video97: no such video device");
}

#[test]
fn frames_arrive_in_order_with_driver_timestamps() {
    let Some(_cams) = harness::child_or_spawn("frames_arrive_in_order_with_driver_timestamps")
    else {
        return;
    };
    for (format, w, h, fps, bytes) in [
        (PixelFormat::Yuyv, 640, 480, 60, 640 * 480 * 2),
        (PixelFormat::Nv12, 1920, 1080, 30, 1920 * 1080 * 3 / 2),
    ] {
        let mut cam = V4l2Camera::open(YUYV_CAM, want(Some(format), w, h, fps)).expect("open");
        let mut last: Option<(u64, u32)> = None;
        for _ in 0..30 {
            let before = framebus::monotonic_ns();
            let f = cam
                .next_frame(WAIT)
                .unwrap_or_else(|e| panic!("next_frame: {e}"));
            assert!(f.driver_timestamp);
            assert_eq!(f.data.len(), bytes);
            assert_eq!(&f.data[..8], b"FAKECAM1");
            assert_eq!(
                u64::from_le_bytes(f.data[8..16].try_into().unwrap()),
                u64::from(f.sequence)
            );
            // Uniform picture after the header: every luma sample the same.
            let luma = f.data[16];
            let step = if format == PixelFormat::Yuyv { 2 } else { 1 };
            assert!(f.data[16..w as usize]
                .iter()
                .step_by(step)
                .all(|&y| y == luma));
            // The driver's timestamp is a recent capture time (10 s of slack for a
            // loaded machine), never in the future.
            assert!(f.mono_ns <= framebus::monotonic_ns() && f.mono_ns + 10_000_000_000 > before);
            if let Some((ts, seq)) = last {
                assert!(f.sequence > seq, "sequence {} after {seq}", f.sequence);
                assert_eq!(f.dropped, f.sequence - seq - 1);
                // Driver timestamps are spaced by the negotiated frame time.
                let per_frame = (f.mono_ns - ts) / u64::from(f.sequence - seq);
                let nominal = 1_000_000_000 / u64::from(fps);
                assert!(
                    per_frame.abs_diff(nominal) < nominal / 20,
                    "{per_frame} ns per frame at {fps} fps"
                );
            }
            last = Some((f.mono_ns, f.sequence));
        }
    }
}

#[test]
fn mjpeg_frames_are_jpegs() {
    let Some(cams) = harness::child_or_spawn("mjpeg_frames_are_jpegs") else {
        return;
    };
    let mut cam =
        V4l2Camera::open(MJPEG_CAM, want(Some(PixelFormat::Mjpeg), 1280, 720, 30)).expect("open");
    assert_eq!(cam.granted().format, PixelFormat::Mjpeg);
    let mut last = None;
    for _ in 0..10 {
        let (data, _, seq) = frame(&mut cam);
        assert_eq!(&data[..2], [0xFF, 0xD8], "SOI");
        assert_eq!(&data[data.len() - 2..], [0xFF, 0xD9], "EOI");
        assert!(data.len() < cam.granted().frame_bytes as usize);
        let tag = format!("FAKECAM1 seq={seq}");
        assert!(
            data.windows(tag.len()).any(|w| w == tag.as_bytes()),
            "frame carries its sequence"
        );
        last = Some(data);
    }
    // A real decoder agrees it is a 1280x720 JPEG.
    let path = cams.dir.join("frame.jpg");
    std::fs::write(&path, last.unwrap()).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run ffprobe");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "mjpeg,1280,720"
    );
}

#[test]
fn unplug_gives_unplugged_and_replug_reopens() {
    let Some(cams) = harness::child_or_spawn("unplug_gives_unplugged_and_replug_reopens") else {
        return;
    };
    let w = want(Some(PixelFormat::Yuyv), 640, 480, 60);
    let mut cam = V4l2Camera::open(YUYV_CAM, w).expect("open");
    frame(&mut cam);
    cams.set(YUYV_CAM, "unplug");
    let err = cam.next_frame(WAIT).unwrap_err();
    assert!(
        matches!(err, V4l2Error::Unplugged { .. }) && err.is_gone(),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("{YUYV_CAM}: device was unplugged (ENODEV)")
    );
    drop(cam); // must not panic inside v4l's Drop (STREAMOFF/REQBUFS fail with ENODEV)

    let err = V4l2Camera::open(YUYV_CAM, w).unwrap_err();
    assert!(matches!(err, V4l2Error::NotFound { .. }), "{err:?}");
    assert!(v4l2::list_devices().iter().all(|d| d
        .as_ref()
        .map_or(true, |d| d.path.to_str() != Some(YUYV_CAM))));

    cams.set(YUYV_CAM, "ok 1");
    let mut cam = V4l2Camera::open(YUYV_CAM, w).expect("reopen after replug");
    for _ in 0..5 {
        frame(&mut cam);
    }
}

#[test]
fn unplug_during_a_wait_ends_the_wait() {
    let Some(cams) = harness::child_or_spawn("unplug_during_a_wait_ends_the_wait") else {
        return;
    };
    let mut cam =
        V4l2Camera::open(YUYV_CAM, want(Some(PixelFormat::Yuyv), 640, 480, 60)).expect("open");
    frame(&mut cam);
    cams.set(YUYV_CAM, "hang");
    let unplugger = {
        let cams = cams.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            cams.set(YUYV_CAM, "unplug");
        })
    };
    // Frames completed before the hang may still be waiting; then the wait
    // must end with Unplugged, well before the 60 s timeout.
    let mut outcome = None;
    for _ in 0..10 {
        match cam.next_frame(Duration::from_secs(60)) {
            Ok(_) => continue,
            Err(e) => {
                outcome = Some(e);
                break;
            }
        }
    }
    unplugger.join().unwrap();
    let err = outcome.expect("an error after the buffered frames");
    assert!(matches!(err, V4l2Error::Unplugged { .. }), "{err:?}");
}

#[test]
fn hang_times_out_and_the_camera_recovers() {
    let Some(cams) = harness::child_or_spawn("hang_times_out_and_the_camera_recovers") else {
        return;
    };
    let mut cam =
        V4l2Camera::open(YUYV_CAM, want(Some(PixelFormat::Yuyv), 640, 480, 60)).expect("open");
    let (_, _, first) = frame(&mut cam);
    cams.set(YUYV_CAM, "hang");
    let short = Duration::from_millis(300);
    let mut timed_out = 0;
    for _ in 0..20 {
        match cam.next_frame(short) {
            Ok(_) => assert_eq!(timed_out, 0, "a frame after a timeout while hung"),
            Err(V4l2Error::TimedOut { waited, .. }) => {
                assert!(waited >= short, "waited {waited:?}");
                timed_out += 1;
                if timed_out == 3 {
                    break;
                }
            }
            Err(e) => panic!("expected TimedOut, got {e}"),
        }
    }
    assert_eq!(timed_out, 3, "hung camera never timed out");
    // After timeouts the same camera delivers again (no double QBUF).
    cams.set(YUYV_CAM, "ok");
    let (_, _, seq) = frame(&mut cam);
    assert!(seq > first);
    frame(&mut cam);
}

/// The fake camera itself, checked with an independent V4L2 client: ffmpeg's
/// `v4l2` input (plain open/ioctl/mmap/poll, like a real camera) captures raw
/// frames carrying the fake's header, and decodes the MJPEG camera's frames.
#[test]
fn ffmpeg_captures_from_the_fake_cameras() {
    if std::env::var_os("FAKECAM_CHILD").is_some() {
        return; // runs in the parent only: ffmpeg is the child here
    }
    let cams = harness::FakeCams::new();
    let ffmpeg = |args: &[&str]| {
        let out = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-v", "error", "-f", "v4l2"])
            .args(args)
            .envs(cams.env())
            .output()
            .expect("run ffmpeg");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "ffmpeg {args:?} failed: {err}");
        out.stdout
    };
    let (w, h, n) = (1280, 720, 30);
    let raw = ffmpeg(&[
        "-input_format",
        "yuyv422",
        "-video_size",
        "1280x720",
        "-framerate",
        "60",
        "-i",
        YUYV_CAM,
        "-frames:v",
        "30",
        "-f",
        "rawvideo",
        "-",
    ]);
    assert_eq!(raw.len(), w * h * 2 * n);
    let mut last = None;
    for frame in raw.chunks(w * h * 2) {
        assert_eq!(&frame[..8], b"FAKECAM1");
        let seq = u64::from_le_bytes(frame[8..16].try_into().unwrap());
        assert!(
            last.is_none_or(|l| seq > l),
            "sequence {seq} after {last:?}"
        );
        last = Some(seq);
    }
    let gray = ffmpeg(&[
        "-input_format",
        "mjpeg",
        "-video_size",
        "640x480",
        "-framerate",
        "30",
        "-i",
        MJPEG_CAM,
        "-frames:v",
        "10",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "gray",
        "-",
    ]);
    assert_eq!(gray.len(), 640 * 480 * 10, "10 decoded MJPEG frames");
    let _ = std::fs::remove_dir_all(&cams.dir);
}
