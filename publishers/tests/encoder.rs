//! `framebus-encoder` against a real decoder: a Rust reader takes the
//! encoded bus in order (`Reader::next_encoded`), ffmpeg and ffprobe decode
//! what it took; a keyframe request is answered; encoding stops when the
//! last reader leaves; SIGTERM stops the process cleanly.

use std::process::Command;
use std::time::Duration;

use framebus::{stat, Reader, ReaderOptions};
use framebus_test_support::feed::{FeedOptions, TestBus};
use framebus_test_support::{run, ChildGuard, Encoder, TempDir};

const T: Option<Duration> = Some(Duration::from_secs(20));

/// `f()` until it gives a value; a watchdog, never a timing assertion.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < end,
            "watchdog: no {what} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An encoder (stopped with SIGTERM when dropped: its bus goes with it).
fn encoder(bus: &str, profile: &str) -> Encoder {
    Encoder::spawn(bus, profile, &["--grace", "0.5"], None)
}

#[test]
fn an_encoded_bus_decodes_with_ffmpeg_and_answers_keyframe_requests() {
    let bus = TestBus::start("enc", 320, 240);
    // A GOP of 300 frames: any keyframe after the first is an answer.
    let mut enc = encoder(&bus.name, "low=320x240@30,bitrate=500k,gop=300");
    let out = format!("{}.h264.low", bus.name);
    let mut r = Reader::attach(
        &out,
        ReaderOptions {
            wait: Some(Duration::from_secs(20)),
            ..ReaderOptions::default()
        },
    )
    .unwrap();
    let codec = wait_for("codec configuration", || r.codec().unwrap());
    assert_eq!(codec.time_base, (1, 90_000));
    assert_eq!(codec.config[..4], [0, 0, 0, 1], "Annex B SPS/PPS");
    assert_eq!(codec.profile_level >> 16, 77, "main, the default");
    let mut annexb = codec.config.clone();

    let first = r.next_encoded(T).unwrap();
    assert!(first.is_keyframe(), "a joiner starts at a keyframe");
    annexb.extend_from_slice(&first);
    let mut last_source = first.source_seq();
    let mut last_pts = first.pts();
    drop(first);
    for _ in 0..45 {
        let f = r.next_encoded(T).unwrap();
        assert_eq!(
            f.skipped(),
            0,
            "an in-order reader keeping up loses nothing"
        );
        assert!(
            f.source_seq() > last_source,
            "each access unit names its raw frame"
        );
        let step = f.pts() - last_pts;
        assert!(
            step >= 3000 && step.is_multiple_of(3000),
            "pts on the 1/30 s grid: {last_pts} then {}",
            f.pts()
        );
        (last_source, last_pts) = (f.source_seq(), f.pts());
        annexb.extend_from_slice(&f);
    }
    r.request_keyframe().unwrap();
    let answered = (0..3).any(|_| {
        let f = r.next_encoded(T).unwrap();
        annexb.extend_from_slice(&f);
        f.is_keyframe()
    });
    assert!(answered, "no keyframe within 3 frames of a request");
    assert!(stat(&out, None).unwrap().keyframes_forced >= 1);

    // What the reader took is a valid H.264 stream to FFmpeg.
    let dir = TempDir::new("enc");
    let file = dir.path().join("taken.h264");
    std::fs::write(&file, &annexb).unwrap();
    let decode = run(
        Command::new("ffmpeg")
            .args(["-v", "error", "-f", "h264", "-i"])
            .arg(&file)
            .args(["-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(decode.status.success(), "ffmpeg failed: {:?}", decode);
    assert!(
        decode.stderr.is_empty(),
        "decode errors: {}",
        String::from_utf8_lossy(&decode.stderr)
    );
    let probe = run(
        Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args([
                "-show_entries",
                "stream=width,height,nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(&file),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&probe.stdout);
    let fields: Vec<&str> = text.trim().split(',').collect();
    assert_eq!(fields[..2], ["320", "240"], "ffprobe: {text}");
    assert!(
        fields[2].parse::<u32>().unwrap() >= 46,
        "ffprobe frames: {text}"
    );

    // On demand: with its last reader gone the encoder stops encoding.
    drop(r);
    let stopped = wait_for("stop of encoding without readers", || {
        let a = stat(&out, None).unwrap().published;
        std::thread::sleep(Duration::from_millis(400));
        let b = stat(&out, None).unwrap().published;
        (a == b).then_some(b)
    });
    assert!(stopped >= 49);

    let status = enc
        .child
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "SIGTERM: {status:?}");
}

/// Cold start: a joiner of the empty encoded bus asks for a keyframe
/// until it has one (as an RTSP PLAY or repeated WebRTC PLIs do), so its
/// requests reach the encoder before, while and after it encodes its first
/// frame. The first IDR answers every request counted before it was
/// published: at GOP 300, two seconds of reading hold exactly one keyframe,
/// not a second forced one a rate-limit interval later. The camera (noisy
/// 720p) runs at 60 fps and loses every third capture: pts still step by whole 1/30 s
/// intervals.
#[test]
fn cold_start_sends_one_keyframe() {
    let bus = TestBus::with(
        "enccold",
        FeedOptions::new(1280, 720, 60).noisy().dropping(3),
    );
    let _enc = encoder(&bus.name, "cold=1280x720@30,bitrate=1M,gop=300");
    let out = format!("{}.h264.cold", bus.name);
    let mut r = Reader::attach(
        &out,
        ReaderOptions {
            wait: Some(Duration::from_secs(20)),
            ..ReaderOptions::default()
        },
    )
    .unwrap();
    // Asking every half millisecond until a second reader sees the first
    // access unit: requests land while the encoder waits for its first
    // raw frame and while it encodes it (a noisy 720p IDR takes
    // milliseconds). Each request directly follows a check that found
    // nothing published; only a stall of this thread between the two
    // could put a request after the keyframe (which would rightly force
    // another).
    let mut probe = Reader::attach(&out, ReaderOptions::default()).unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while probe.latest().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < end,
            "watchdog: no access unit within 20 s"
        );
        r.request_keyframe().unwrap();
        std::thread::sleep(Duration::from_micros(500));
    }
    drop(probe);
    let first = r.next_encoded(T).unwrap();
    assert!(first.is_keyframe(), "a joiner starts at a keyframe");
    let mut last_pts = first.pts();
    drop(first);
    let end = std::time::Instant::now() + Duration::from_secs(2);
    let (mut frames, mut keys) = (1u32, 1u32);
    while std::time::Instant::now() < end {
        let f = r.next_encoded(T).unwrap();
        frames += 1;
        keys += u32::from(f.is_keyframe());
        let step = f.pts() - last_pts;
        assert!(
            step >= 3000 && step.is_multiple_of(3000),
            "pts on the 1/30 s grid: {last_pts} then {}",
            f.pts()
        );
        last_pts = f.pts();
    }
    assert_eq!(
        stat(&out, None).unwrap().keyframes_forced,
        1,
        "only the session's first IDR is forced"
    );
    assert!(frames >= 30, "only {frames} access units in 2 s");
    assert_eq!(keys, 1, "keyframes in 2 s at GOP 300 from a cold start");
}

/// `h264=baseline|main|high`: the SPS in the bus's codec configuration
/// says 66 (constrained: constraint_set1), 77 or 100.
#[test]
fn the_bus_codec_names_the_h264_profile_asked_for() {
    let bus = TestBus::start("encprof", 320, 240);
    for (p, idc) in [("baseline", 66u32), ("main", 77), ("high", 100)] {
        let _enc = encoder(&bus.name, &format!("{p}=320x240@30,bitrate=300k,h264={p}"));
        let out = format!("{}.h264.{p}", bus.name);
        let mut r = Reader::attach(
            &out,
            ReaderOptions {
                wait: Some(Duration::from_secs(20)),
                ..ReaderOptions::default()
            },
        )
        .unwrap();
        let codec = wait_for("codec configuration", || r.codec().unwrap());
        assert_eq!(codec.profile_level >> 16, idc, "h264={p}");
        // The SPS itself: start code, NAL header, profile_idc.
        assert_eq!(u32::from(codec.config[5]), idc, "h264={p}");
        if p == "baseline" {
            assert_ne!(codec.profile_level >> 8 & 0x40, 0, "constraint_set1");
        }
        // The stream's first IDR carries the same SPS.
        let f = r.next_encoded(T).unwrap();
        assert!(f.is_keyframe());
        assert_eq!(f[..8], codec.config[..8], "h264={p}");
    }
}

/// `framebus-encoder --list`: one line per encoder in `auto`'s order;
/// libx264 opens; a hardware encoder whose device is missing says which.
#[test]
fn list_probes_every_encoder() {
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_framebus-encoder")).arg("--list"),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        ["h264_nvenc", "h264_vaapi", "h264_v4l2m2m", "libx264"],
        "{text}"
    );
    assert!(lines[3].ends_with(" OK"), "{text}");
    for (line, dev, why) in [
        (lines[0], "/dev/nvidiactl", "no NVIDIA device"),
        (lines[1], "/dev/dri", "no VA-API device"),
        (lines[2], "/dev/video0", "no V4L2 memory-to-memory device"),
    ] {
        assert!(
            line.ends_with(" OK") || line.contains(" unavailable: "),
            "{line}"
        );
        if !std::path::Path::new(dev).exists() {
            assert!(line.contains(why), "{line}");
        }
    }
}

/// `--encoder auto` on a machine without encoder hardware: libx264, one
/// log line naming what was tried and why each failed, and the bus's
/// `source` (`framebus stat`) says so.
#[test]
fn auto_falls_back_to_x264_visibly() {
    let list = run(
        Command::new(env!("CARGO_BIN_EXE_framebus-encoder")).arg("--list"),
        Duration::from_secs(60),
    );
    let hardware = String::from_utf8_lossy(&list.stdout)
        .lines()
        .any(|l| !l.starts_with("libx264") && l.ends_with(" OK"));
    if hardware {
        eprintln!("SKIP: a hardware encoder opens here, auto does not fall back");
        return;
    }
    let bus = TestBus::start("encauto", 320, 240);
    let enc = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_framebus-encoder"))
            .args(["--bus", &bus.name, "--profile", "a=320x240@30,bitrate=300k"])
            .args(["--encoder", "auto"])
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped()),
    );
    let out = format!("{}.h264.a", bus.name);
    let source = wait_for("the encoded bus", || {
        stat(&out, None)
            .ok()
            .filter(|s| !s.source.is_empty())
            .map(|s| s.source)
    });
    assert!(source.contains("by libx264"), "{source}");
    assert!(
        source.contains("(auto: nvenc, vaapi, v4l2m2m did not open)"),
        "{source}"
    );
    // `framebus stat` prints it.
    if let Some(fb) = framebus_test_support::bins::or_skip("framebus") {
        let st = run(
            Command::new(&fb).args(["stat", &out]),
            Duration::from_secs(20),
        );
        assert!(
            String::from_utf8_lossy(&st.stdout).contains("by libx264 (auto:"),
            "{st:?}"
        );
        // And the metric counts it.
        let pr = run(
            Command::new(fb).args(["status", "--prometheus"]),
            Duration::from_secs(20),
        );
        let want = format!("framebus_bus_encoder_fallback{{bus=\"{out}\"}} 1");
        assert!(
            String::from_utf8_lossy(&pr.stdout).contains(&want),
            "{want} in {}",
            String::from_utf8_lossy(&pr.stdout)
        );
    }
    enc.signal(libc::SIGTERM);
    let done = enc.output(Duration::from_secs(10));
    let log = String::from_utf8_lossy(&done.stderr);
    let tried: Vec<&str> = log.lines().filter(|l| l.contains("h264_vaapi")).collect();
    assert_eq!(tried.len(), 1, "one line about the fallback:\n{log}");
    for want in [
        "libx264",
        "h264_nvenc: no NVIDIA device",
        "h264_vaapi: no VA-API device",
        "h264_v4l2m2m: no V4L2 memory-to-memory device",
    ] {
        assert!(tried[0].contains(want), "{want} in {}", tried[0]);
    }
}

/// `framebus encoders` runs `framebus-encoder --list` next to it, and says
/// clearly when that program is missing.
#[test]
fn framebus_encoders_runs_the_list() {
    let Some(fb) = framebus_test_support::bins::or_skip("framebus") else {
        return;
    };
    let out = run(Command::new(&fb).arg("encoders"), Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("libx264") && l.ends_with(" OK")),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");

    // Alone in a directory, with nothing on PATH.
    let dir = TempDir::new("encfb");
    let lone = dir.path().join("framebus");
    std::fs::copy(&fb, &lone).unwrap();
    let out = run(
        Command::new(&lone).arg("encoders").env("PATH", dir.path()),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("framebus-encoder is not installed"), "{err}");
}
