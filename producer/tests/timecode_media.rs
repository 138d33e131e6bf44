//! The time code of frames read from a live 1080p bus survives what the
//! design promises: JPEG at quality 50 (turbojpeg, exactly libjpeg's q50),
//! H.264 at 1 Mbit/s (libx264 through the ffmpeg CLI) and scaling to
//! 640x480.

mod common;

use std::time::Duration;

use common::{ffmpeg, have_ffmpeg, path_str, Scene};
use framebus::timecode;

/// Box-filter a gray 1920x1080 picture down to 640x480 and decode.
fn decode_scaled(gray: &[u8], w: usize, h: usize) -> Option<timecode::TimeCode> {
    let (dw, dh) = (640usize, 480usize);
    timecode::decode_with(dw as u32, dh as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let (x0, x1) = (x * w / dw, ((x + 1) * w / dw).max(x * w / dw + 1));
        let (y0, y1) = (y * h / dh, ((y + 1) * h / dh).max(y * h / dh + 1));
        let mut sum = 0usize;
        for yy in y0..y1 {
            for xx in x0..x1 {
                sum += gray[yy * w + xx] as usize;
            }
        }
        (sum / ((x1 - x0) * (y1 - y0))) as u8
    })
}

#[test]
fn jpeg_q50_then_scaled() {
    let s = Scene::new("jpeg");
    let _p = s.spawn(&["--format", "gray8", "--fps", "10"]);
    let mut r = s.reader();
    for _ in 0..3 {
        let f = r.next(Some(Duration::from_secs(20))).expect("a frame");
        let want = timecode::decode(f.spec(), &f).expect("raw frame decodes");
        let image = turbojpeg::Image {
            pixels: &f[..],
            width: 1920,
            pitch: 1920,
            height: 1080,
            format: turbojpeg::PixelFormat::GRAY,
        };
        let jpg = turbojpeg::compress(image, 50, turbojpeg::Subsamp::Gray).unwrap();
        let back = turbojpeg::decompress(&jpg, turbojpeg::PixelFormat::GRAY).unwrap();
        let full = timecode::decode_with(1920, 1080, |x, y| {
            back.pixels[y as usize * back.pitch + x as usize]
        });
        assert_eq!(full, Some(want), "after JPEG q50");
        assert_eq!(
            decode_scaled(&back.pixels, 1920, 1080),
            Some(want),
            "after JPEG q50 + 640x480"
        );
    }
}

#[test]
fn h264_1mbit_then_scaled() {
    if !have_ffmpeg() {
        eprintln!("ffmpeg CLI missing: skipped");
        return;
    }
    let s = Scene::new("h264");
    let _p = s.spawn(&["--fps", "30"]);
    let mut r = s.reader();
    let mut raw = Vec::new();
    let mut want = Vec::new();
    for _ in 0..60 {
        let f = r.next(Some(Duration::from_secs(20))).expect("a frame");
        want.push(timecode::decode(f.spec(), &f).expect("raw frame decodes"));
        raw.extend_from_slice(&f);
    }
    let (yuv, mp4, out) = (
        s.dir.join("in.nv12"),
        s.dir.join("1m.mp4"),
        s.dir.join("out.gray"),
    );
    std::fs::write(&yuv, &raw).unwrap();
    drop(raw);
    ffmpeg(&[
        "-f",
        "rawvideo",
        "-pix_fmt",
        "nv12",
        "-s",
        "1920x1080",
        "-r",
        "30",
        "-i",
        path_str(&yuv),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-b:v",
        "1M",
        "-maxrate",
        "1M",
        "-bufsize",
        "1M",
        "-pix_fmt",
        "yuv420p",
        path_str(&mp4),
    ]);
    ffmpeg(&[
        "-i",
        path_str(&mp4),
        "-vf",
        "scale=640:480",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "gray",
        path_str(&out),
    ]);
    let gray = std::fs::read(&out).unwrap();
    let n = gray.len() / (640 * 480);
    assert_eq!(n, 60, "every frame came back");
    let mut ok = 0;
    for (i, w) in want.iter().enumerate() {
        let px = &gray[i * 640 * 480..(i + 1) * 640 * 480];
        if timecode::decode_with(640, 480, |x, y| px[(y * 640 + x) as usize]) == Some(*w) {
            ok += 1;
        }
    }
    assert_eq!(ok, 60, "time codes intact after H.264 1 Mbit/s + 640x480");
}
