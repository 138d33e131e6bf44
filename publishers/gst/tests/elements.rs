//! `framebussrc` and `framebussink` in real GStreamer pipelines:
//!
//! - `gst-inspect-1.0` finds both through `GST_PLUGIN_PATH`;
//! - `framebussrc ! x264enc ! mp4mux ! filesink` keeps 300 frames (ffprobe
//!   counts them) and their time codes are the bus's frames in order; each
//!   buffer's PTS and `timestamp/x-unix` meta are its capture times;
//! - `videotestsrc num-buffers=300 ! framebussink` feeds a Rust and a Python
//!   reader 300 frames each, in the right format;
//! - a `framebussrc` pipeline outlives a producer killed with SIGKILL and
//!   resumes with the next one, in its new format; a downstream that holds
//!   buffers gets copies past the bus's limit and never slows the producer;
//! - an encoded bus into a file starts at a keyframe, no encode; an H.264
//!   pipeline into `framebussink` makes an encoded bus with its codec
//!   configuration, and a reader's keyframe request reaches `x264enc`;
//! - bad input (missing bus, bad name, a foreign file, a format the bus
//!   cannot carry, a bus already owned) is a clear element error.
//!
//! Each test has its own bus names and children (killed on drop).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use framebus::{Reader, ReaderOptions};
use framebus_test_support::recorder::{ffprobe_video, first_frame, frame_timecodes};
use framebus_test_support::{
    bins, eventually, run_to_end, unique_name, ChildGuard, Encoder, Feeder, TempDir,
};
use gst::prelude::*;

const LIMIT: Duration = Duration::from_secs(60);

/// A directory holding only `libgstframebus.so` as built with this test
/// binary (`target/<profile>/deps/`; GStreamer would try to load every
/// other library there, and the copy in `target/<profile>/` is only
/// refreshed by a `--lib` build), for `GST_PLUGIN_PATH`.
fn plugin_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let built = bins::dir().join("deps/libgstframebus.so");
        assert!(
            built.is_file(),
            "{} missing: cargo build --release -p gst-plugin-framebus",
            built.display()
        );
        let dir = bins::dir().join("gst-test-plugin");
        std::fs::create_dir_all(&dir).expect("create the plugin directory");
        let tmp = dir.join(format!(".libgstframebus.so.{}", std::process::id()));
        std::fs::copy(&built, &tmp).expect("copy the plugin");
        std::fs::rename(&tmp, dir.join("libgstframebus.so")).expect("install the plugin");
        dir
    })
    .clone()
}

/// A reader of `bus`, waiting for it to appear (watchdog [`LIMIT`]).
fn attach(bus: &str) -> Reader {
    let opts = ReaderOptions {
        wait: Some(LIMIT),
        ..Default::default()
    };
    Reader::attach(bus, opts).expect("attach")
}

/// A GStreamer tool with the plugin on its path.
fn gst_tool(tool: &str) -> Command {
    let mut c = Command::new(tool);
    c.env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_DEBUG_NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

/// `gst-launch-1.0 -e PIPELINE` to its end (watchdog [`LIMIT`]).
fn launch(pipeline: &str) -> Output {
    let mut c = gst_tool("gst-launch-1.0");
    c.arg("-e").args(pipeline.split_whitespace());
    run_to_end(&mut c, LIMIT)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The elements, registered in this process (for pipelines built here).
fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        gst::init().expect("gst::init");
        gstframebus::plugin_register_static().expect("register the plugin");
    });
}

#[test]
fn gst_inspect_finds_both_elements() {
    let o = run_to_end(gst_tool("gst-inspect-1.0").arg("framebus"), LIMIT);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("framebussrc") && t.contains("framebussink"),
        "{t}"
    );
    for (element, want) in [
        (
            "framebussrc",
            &[
                "bus",
                "producer-gone",
                "attach-timeout",
                "copies",
                "video/x-h264",
                "image/jpeg",
                "NV12",
            ][..],
        ),
        (
            "framebussink",
            &["bus", "slots", "wait-for-readers", "byte-stream"][..],
        ),
    ] {
        let o = run_to_end(gst_tool("gst-inspect-1.0").arg(element), LIMIT);
        let t = text(&o);
        assert!(o.status.success(), "{element}: {t}");
        for w in want {
            assert!(t.contains(w), "{element}: no {w:?} in\n{t}");
        }
    }
}

#[test]
fn a_file_from_the_bus_keeps_every_frame_and_its_time_code() {
    let bus = unique_name("gst-file");
    let _feed = Feeder::start(&bus, 640, 360, 30);
    let dir = TempDir::new("gst-file");
    let file = dir.path().join("out.mp4");
    let run = Running::launch(&format!(
        "framebussrc name=src bus={bus} num-buffers=300 ! x264enc speed-preset=ultrafast tune=zerolatency bitrate=4000 key-int-max=30 \
         ! h264parse ! mp4mux ! filesink location={}",
        file.display()
    ));
    run.play();
    run.until_eos();
    let lost = run.element("src").property::<u64>("lost");
    drop(run);
    let probe = ffprobe_video(&file);
    assert_eq!(
        (probe.codec.as_str(), probe.width, probe.height),
        ("h264", 640, 360),
        "{probe:?}"
    );
    assert_eq!(probe.frames, 300, "{probe:?}");
    let codes: Vec<_> = frame_timecodes(&file)
        .into_iter()
        .map(|c| c.expect("every frame has its time code"))
        .collect();
    assert_eq!(codes.len(), 300);
    // The bus's frames, in order: each frame the bus carried is in the file
    // or counted in `lost` (the source reads in order, so a hiccup shorter
    // than the ring loses nothing; on a loaded machine x264enc may fall
    // further behind).
    let mut gaps = 0;
    for w in codes.windows(2) {
        assert!(w[1].counter > w[0].counter, "out of order: {w:?}");
        gaps += u64::from(w[1].counter - w[0].counter - 1);
    }
    assert_eq!(
        gaps, lost,
        "frames missing from the file but not counted as lost"
    );
    // The timestamps are checked on the buffers themselves
    // (buffers_carry_their_capture_times): x264enc keeps them only to its
    // frame-rate time base.
}

#[test]
fn an_encoded_bus_into_a_file_starts_at_a_keyframe() {
    let bus = unique_name("gst-enc");
    let _feed = Feeder::start(&bus, 640, 360, 30);
    let enc = Encoder::start(&bus, "main=640x360@30,h264=main,bitrate=1500k", &[], None);
    let dir = TempDir::new("gst-enc");
    let file = dir.path().join("enc.mp4");
    // No encode: the encoder's access units as they are.
    let o = launch(&format!(
        "framebussrc bus={} num-buffers=90 ! h264parse ! mp4mux ! filesink location={}",
        enc.out,
        file.display()
    ));
    assert!(o.status.success(), "{}", text(&o));
    let probe = ffprobe_video(&file);
    assert_eq!(
        (probe.codec.as_str(), probe.frames),
        ("h264", 90),
        "{probe:?}"
    );
    let (key, kind) = first_frame(&file);
    assert!(key, "the file starts with a {kind} frame");
    let codes: Vec<_> = frame_timecodes(&file)
        .into_iter()
        .map(|c| c.expect("time code"))
        .collect();
    for w in codes.windows(2) {
        assert!(w[1].counter > w[0].counter, "{w:?}");
    }
}

#[test]
fn an_h264_pipeline_feeds_an_encoded_bus_and_honours_keyframe_requests() {
    let bus = unique_name("gst-h264");
    let reader = {
        let bus = bus.clone();
        std::thread::spawn(move || {
            let mut r = attach(&bus);
            let (mut frames, mut keys, mut asked_at) = (0u64, vec![], None);
            loop {
                match r.next_encoded(Some(LIMIT)) {
                    Ok(f) => {
                        frames += 1;
                        if f.is_keyframe() {
                            keys.push(frames);
                        }
                        if frames == 30 {
                            r.request_keyframe().unwrap();
                            asked_at = Some(frames);
                        }
                    }
                    Err(framebus::ReadError::ProducerGone { .. }) => break,
                    Err(e) => panic!("{e}"),
                }
                if frames == 1 {
                    let c = r
                        .codec()
                        .unwrap()
                        .expect("codec configuration from the first keyframe");
                    assert_eq!(c.time_base, (1, 90_000));
                    assert!(
                        c.config.starts_with(&[0, 0, 0, 1, 0x67]),
                        "{:02x?}",
                        c.config
                    );
                }
            }
            (frames, keys, asked_at, *r.spec())
        })
    };
    // One keyframe at the start only (key-int-max far beyond the stream):
    // any other comes from the reader's request.
    let o = launch(&format!(
        "videotestsrc num-buffers=150 is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10000 \
         ! video/x-h264,stream-format=byte-stream,alignment=au ! framebussink bus={bus} slots=64 wait-for-readers=1"
    ));
    assert!(o.status.success(), "{}", text(&o));
    let (frames, keys, asked_at, spec) = reader.join().expect("reader");
    // In order from a 64-slot ring (the live source's frames that queued
    // while the first one waited for the reader come in a burst).
    assert_eq!(frames, 150, "keyframes at {keys:?}");
    assert_eq!(
        (spec.format, spec.width, spec.height),
        (framebus::PixelFormat::H264, 320, 240)
    );
    assert_eq!(keys.first(), Some(&1), "{keys:?}");
    assert!(
        keys.iter().any(|&k| k > asked_at.unwrap()),
        "no keyframe after the request at frame {asked_at:?}: {keys:?}"
    );
}

#[test]
fn buffers_are_the_bus_slots_with_their_capture_times() {
    let bus = unique_name("gst-times");
    let _feed = Feeder::start(&bus, 320, 240, 30);
    let spec = framebus::FrameSpec::new(
        framebus::PixelFormat::Nv12,
        320,
        240,
        framebus::Fps::new(30),
    )
    .unwrap();
    let run = Running::launch(&format!(
        "framebussrc name=src bus={bus} num-buffers=60 ! fakesink name=out sync=false"
    ));
    // The bus's mapping in this process, to see where buffers point.
    let segment = framebus::segment_path(&framebus::default_shm_dir(), &bus);
    // (PTS, x-unix meta, the time code's capture time, offset, in the
    // bus's mapping) per buffer.
    type Times = (u64, u64, u64, u64, bool);
    let seen: Arc<Mutex<Vec<Times>>> = Arc::default();
    let out = run.element("out");
    out.set_property("signal-handoffs", true);
    {
        let seen = Arc::clone(&seen);
        out.connect("handoff", false, move |args| {
            let b = args[1].get::<gst::Buffer>().expect("buffer");
            let unix = gstframebus::unix_capture_ns(&b);
            let map = b.map_readable().expect("readable");
            let tc = framebus::timecode::decode(&spec, &map).expect("time code");
            seen.lock().unwrap().push((
                b.pts().expect("pts").nseconds(),
                unix.expect("x-unix meta"),
                tc.realtime_us,
                b.offset(),
                in_mapping(&segment, map.as_ptr()),
            ));
            None
        });
    }
    run.play();
    run.until_eos();
    let src = run.element("src");
    let (lost, copies) = (src.property::<u64>("lost"), src.property::<u64>("copies"));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 60);
    // Zero copy: every buffer's bytes are the slot in the bus's mapping.
    assert_eq!(copies, 0);
    assert!(
        seen.iter().all(|s| s.4),
        "a buffer outside the bus's mapping"
    );
    let mut gaps = 0;
    for w in seen.windows(2) {
        let ((p0, u0, t0, o0, _), (p1, u1, t1, o1, _)) = (w[0], w[1]);
        // The meta is the frame's wall-clock capture time, the one its
        // time code shows.
        assert_eq!((u0 / 1000, u1 / 1000), (t0, t1));
        // In order (offset = the bus's sequence); a gap only for frames
        // counted as lost.
        assert!(o1 > o0);
        gaps += o1 - o0 - 1;
        // PTS advances as the capture times do (monotonic and wall
        // clock agree over a frame to well under a millisecond).
        let (dp, dt) = (p1 as i64 - p0 as i64, (t1 as i64 - t0 as i64) * 1000);
        assert!(
            (dp - dt).abs() < 1_000_000,
            "PTS step {dp} ns, capture step {dt} ns"
        );
    }
    assert_eq!(gaps, lost);
}

/// Whether `ptr` lies in this process's mapping of the file `path`
/// (/proc/self/maps).
fn in_mapping(path: &std::path::Path, ptr: *const u8) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let p = ptr as usize;
    maps.lines()
        .filter(|l| l.ends_with(&*path.to_string_lossy()))
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .split_once('-')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .any(|(a, b)| {
            let (a, b) = (
                usize::from_str_radix(&a, 16).unwrap_or(0),
                usize::from_str_radix(&b, 16).unwrap_or(0),
            );
            (a..b).contains(&p)
        })
}

#[test]
fn a_force_key_unit_event_reaches_the_encoder() {
    let bus = unique_name("gst-fku");
    let _feed = Feeder::start(&bus, 320, 240, 30);
    let enc = Encoder::start(
        &bus,
        "k=320x240@30,h264=baseline,bitrate=300k",
        &["--no-adapt"],
        None,
    );
    let run = Running::launch(&format!(
        "framebussrc bus={} ! fakesink name=out sync=false",
        enc.out
    ));
    let sunk = Arc::new(Sunk::default());
    count_into(&run.element("out"), &sunk);
    // Access units carry DTS = PTS (no B-frames).
    let dts_ok = Arc::new(AtomicU64::new(0));
    {
        let dts_ok = Arc::clone(&dts_ok);
        run.element("out").connect("handoff", false, move |args| {
            let b = args[1].get::<gst::Buffer>().expect("buffer");
            if b.dts().is_some() && b.dts() == b.pts() {
                dts_ok.fetch_add(1, Ordering::SeqCst);
            }
            None
        });
    }
    run.play();
    assert!(
        eventually(LIMIT, || sunk.buffers.load(Ordering::SeqCst) > 10),
        "{:?}",
        messages(&run.0)
    );
    let asked = || framebus::stat(&enc.out, None).map_or(0, |i| i.keyframe_requests);
    let before = asked();
    // What a decoder or rtph264pay sends upstream when it needs one.
    let ev = gst_video::UpstreamForceKeyUnitEvent::builder()
        .all_headers(true)
        .build();
    assert!(run
        .element("out")
        .static_pad("sink")
        .unwrap()
        .push_event(ev));
    assert!(
        eventually(LIMIT, || asked() > before),
        "the bus counted no keyframe request ({before} before)"
    );
    assert!(
        dts_ok.load(Ordering::SeqCst) > 10,
        "access units without DTS = PTS"
    );
}

/// What a reader saw of a bus until its producer left.
#[derive(Debug, Default, serde::Deserialize)]
struct Seen {
    frames: u64,
    first_seq: u64,
    last_seq: u64,
    skipped: u64,
    format: String,
    width: u32,
    height: u32,
}

const PY_COUNT: &str = r#"
import json, sys, framebus
r = framebus.Reader(sys.argv[1], wait=30.0)
print("attached", flush=True)
seen = {"frames": 0, "first_seq": 0, "last_seq": 0, "skipped": 0, "format": "", "width": 0, "height": 0}
while True:
    try:
        f = r.next_encoded(timeout=30.0)  # in order (every raw frame is a keyframe)
    except framebus.ProducerGone:
        break
    with f:
        seen["frames"] += 1
        seen["first_seq"] = seen["first_seq"] or f.seq
        seen["last_seq"] = f.seq
        seen["skipped"] += f.skipped
        seen["format"], seen["width"], seen["height"] = f.format, f.width, f.height
print(json.dumps(seen), flush=True)
"#;

#[test]
fn videotestsrc_into_framebussink_feeds_rust_and_python_readers() {
    let bus = unique_name("gst-sink");
    let py = framebus_test_support::python::venv_python();
    let readers = if py.is_some() { 2 } else { 1 };
    let rust = {
        let bus = bus.clone();
        std::thread::spawn(move || {
            let mut r = attach(&bus);
            let mut seen = Seen::default();
            loop {
                match r.next_encoded(Some(LIMIT)) {
                    Ok(f) => {
                        seen.frames += 1;
                        if seen.first_seq == 0 {
                            seen.first_seq = f.seq();
                        }
                        seen.last_seq = f.seq();
                        seen.skipped += f.skipped();
                        let s = f.spec();
                        seen.format = format!("{:?}", s.format).to_lowercase();
                        (seen.width, seen.height) = (s.width, s.height);
                        assert_eq!(f.len(), s.frame_size());
                    }
                    Err(framebus::ReadError::ProducerGone { .. }) => return seen,
                    Err(e) => panic!("rust reader: {e}"),
                }
            }
        })
    };
    let python = py.map(|py| {
        ChildGuard::spawn(
            Command::new(py)
                .args(["-c", PY_COUNT, &bus])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
    });
    // The sink holds its first frame until both readers are attached, and
    // that frame is due 0.5 s later (timestamp-offset), so both wait for it
    // by then; 60 fps paced by the clock (sync). The readers take frames in
    // order (next_encoded) from a 64-slot ring: a reader held up for less
    // than a second on a loaded machine loses nothing.
    let o = launch(&format!(
        "videotestsrc num-buffers=300 pattern=ball timestamp-offset=500000000 \
         ! video/x-raw,format=I420,width=320,height=240,framerate=60/1 \
         ! framebussink bus={bus} slots=64 wait-for-readers={readers}"
    ));
    assert!(o.status.success(), "{}", text(&o));
    let rust = rust.join().expect("rust reader");
    let mut all = vec![("rust", rust)];
    if let Some(mut c) = python {
        let line = c.wait_line("{", LIMIT);
        all.push((
            "python",
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")),
        ));
    }
    for (who, seen) in all {
        assert_eq!(
            (seen.frames, seen.first_seq, seen.last_seq, seen.skipped),
            (300, 1, 300, 0),
            "{who}: {seen:?}"
        );
        assert_eq!(
            (seen.format.as_str(), seen.width, seen.height),
            ("i420", 320, 240),
            "{who}: {seen:?}"
        );
    }
}

/// A producer in its own process (the real one, test pattern), so it can
/// be killed with SIGKILL.
fn producer(bus: &str, size: &str) -> ChildGuard {
    let mut c = ChildGuard::spawn(
        Command::new(bins::path("framebus-producer"))
            .args([
                "--bus", bus, "--source", "testsrc", "--size", size, "--fps", "30",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(
        eventually(LIMIT, || framebus::stat(bus, None)
            .is_ok_and(|i| i.published > 0)),
        "producer of {bus} never published"
    );
    let _ = c.alive();
    c
}

/// Removes bus `.0`'s segment when dropped (a producer killed with
/// SIGKILL leaves it behind, as a crash would).
struct RemoveBus(String);

impl Drop for RemoveBus {
    fn drop(&mut self) {
        let _ = framebus::remove(&self.0, None, true);
    }
}

/// Buffers and caps seen by a `fakesink` at the end of a pipeline.
#[derive(Default)]
struct Sunk {
    buffers: AtomicU64,
    sizes: Mutex<Vec<(i32, i32)>>,
}

fn count_into(sink: &gst::Element, sunk: &Arc<Sunk>) {
    sink.set_property("signal-handoffs", true);
    let sunk = Arc::clone(sunk);
    sink.connect("handoff", false, move |args| {
        let pad = args[2].get::<gst::Pad>().expect("handoff pad");
        let size = pad.current_caps().and_then(|c| {
            let s = c.structure(0)?;
            Some((s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?))
        });
        if let Some(size) = size {
            let mut sizes = sunk.sizes.lock().unwrap();
            if sizes.last() != Some(&size) {
                sizes.push(size);
            }
        }
        sunk.buffers.fetch_add(1, Ordering::SeqCst);
        None
    });
}

/// A pipeline built in this process, stopped (NULL) when dropped, also
/// when a test fails half-way.
struct Running(gst::Pipeline);

impl Running {
    fn launch(desc: &str) -> Running {
        init();
        let p = gst::parse::launch(desc)
            .unwrap_or_else(|e| panic!("{desc}: {e}"))
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        Running(p)
    }

    fn play(&self) {
        self.0.set_state(gst::State::Playing).expect("PLAYING");
    }

    /// Waits for the end of the stream (watchdog [`LIMIT`]); panics on an
    /// error.
    fn until_eos(&self) {
        let bus = self.0.bus().expect("pipeline bus");
        let m = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(LIMIT.as_secs()),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("watchdog: no end of stream");
        if let gst::MessageView::Error(e) = m.view() {
            panic!("{} ({:?})", e.error(), e.debug());
        }
    }

    fn element(&self, name: &str) -> gst::Element {
        self.0
            .by_name(name)
            .unwrap_or_else(|| panic!("no element {name}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

/// Errors and warnings posted on a pipeline's bus so far (message and
/// debug text).
fn messages(p: &gst::Pipeline) -> (Vec<String>, Vec<String>) {
    let bus = p.bus().expect("pipeline bus");
    let (mut errors, mut warnings) = (vec![], vec![]);
    while let Some(m) = bus.pop() {
        match m.view() {
            gst::MessageView::Error(e) => errors.push(format!("{} ({:?})", e.error(), e.debug())),
            gst::MessageView::Warning(w) => {
                warnings.push(format!("{} ({:?})", w.error(), w.debug()))
            }
            _ => {}
        }
    }
    (errors, warnings)
}

#[test]
fn the_source_resumes_after_the_producer_is_killed_in_its_new_format() {
    let bus = unique_name("gst-restart");
    // Dropped last: the segment a killed producer leaves goes too.
    let _segment = RemoveBus(bus.clone());
    let mut first = producer(&bus, "320x240");
    let run = Running::launch(&format!(
        "framebussrc name=src bus={bus} ! fakesink name=out sync=false"
    ));
    let p = &run.0;
    let sunk = Arc::new(Sunk::default());
    count_into(&run.element("out"), &sunk);
    run.play();
    let grows = |from: u64| eventually(LIMIT, || sunk.buffers.load(Ordering::SeqCst) > from + 30);
    assert!(grows(0), "no buffers: {:?}", messages(p));
    first.signal(libc::SIGKILL);
    first.wait_exit(LIMIT);
    let _second = producer(&bus, "640x360");
    assert!(
        grows(sunk.buffers.load(Ordering::SeqCst)),
        "no buffers after the restart: {:?}",
        messages(p)
    );
    let (errors, warnings) = messages(p);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        warnings.iter().any(|w| w.contains("producer is gone")),
        "{warnings:?}"
    );
    assert_eq!(*sunk.sizes.lock().unwrap(), [(320, 240), (640, 360)]);
    let src = run.element("src");
    assert_eq!(src.property::<u64>("restarts"), 1);
    assert_eq!(
        src.property::<u64>("copies"),
        0,
        "fakesink holds nothing: zero copy throughout"
    );
}

#[test]
fn a_downstream_that_holds_buffers_gets_copies_and_never_slows_the_producer() {
    let bus = unique_name("gst-slow");
    let feed = Feeder::start(&bus, 320, 240, 60);
    // The queue holds up to 30 buffers and the sink takes 50 ms each: far
    // more than the 4 slots a reader may hold.
    let run = Running::launch(&format!(
        "framebussrc name=src bus={bus} ! queue max-size-buffers=30 max-size-time=0 max-size-bytes=0 \
         ! identity sleep-time=50000 ! fakesink name=out sync=false"
    ));
    let p = &run.0;
    let sunk = Arc::new(Sunk::default());
    count_into(&run.element("out"), &sunk);
    run.play();
    let before = framebus::stat(&bus, None).unwrap();
    assert!(
        eventually(LIMIT, || sunk.buffers.load(Ordering::SeqCst) >= 40),
        "{:?}",
        messages(p)
    );
    let after = framebus::stat(&bus, None).unwrap();
    let src = run.element("src");
    let copies = src.property::<u64>("copies");
    assert!(
        copies > 0,
        "the queue held more than the bus allows, yet nothing was copied"
    );
    // The producer never found its slots all held: it published every frame.
    assert_eq!(after.dropped_all_held, before.dropped_all_held, "{after:?}");
    drop(feed);
    assert!(messages(p).0.is_empty());
}

/// Runs `pipeline`, which must fail; its output.
fn fails(pipeline: &str) -> String {
    let o = launch(pipeline);
    let t = text(&o);
    assert!(!o.status.success(), "{pipeline}: succeeded\n{t}");
    t
}

#[test]
fn bad_input_is_a_clear_element_error() {
    let missing = unique_name("gst-missing");
    let t = fails(&format!("framebussrc bus={missing} ! fakesink"));
    assert!(t.contains(&missing) && t.contains("not found"), "{t}");

    let t = fails("framebussrc bus=../etc ! fakesink");
    assert!(t.contains("../etc"), "{t}");

    // A file under the bus's name that is not a segment.
    let dir = TempDir::new("gst-foreign");
    let foreign = unique_name("gst-foreign");
    std::fs::write(
        framebus::segment_path(dir.path(), &foreign),
        vec![0x5a; 8192],
    )
    .unwrap();
    let t = fails(&format!(
        "framebussrc bus={foreign} shm-dir={} ! fakesink",
        dir.path().display()
    ));
    assert!(
        t.contains(&foreign) && t.to_lowercase().contains("magic"),
        "{t}"
    );

    // A bus whose format downstream refuses (a raw bus into JPEG caps).
    let raw = unique_name("gst-refused");
    let _raw = Feeder::start(&raw, 320, 240, 30);
    let t = fails(&format!("framebussrc bus={raw} ! image/jpeg ! fakesink"));
    assert!(t.contains("downstream refuses the bus's format"), "{t}");

    // A format a bus cannot carry.
    let rgba = unique_name("gst-rgba");
    let t = fails(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,format=RGBA,width=64,height=64 ! framebussink bus={rgba}"
    ));
    assert!(t.contains("RGBA") || t.contains("not-negotiated"), "{t}");

    // Caps the template admits but a bus cannot take (NV12 needs an even
    // height): the sink's own message.
    let odd = unique_name("gst-odd");
    let t = fails(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,format=NV12,width=64,height=63 ! framebussink bus={odd}"
    ));
    assert!(t.contains("63"), "{t}");

    // A bus that already has a live producer.
    let owned = unique_name("gst-owned");
    let _feed = Feeder::start(&owned, 320, 240, 30);
    let t = fails(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,format=NV12,width=320,height=240 ! framebussink bus={owned}"
    ));
    assert!(t.contains("already owned by a live producer"), "{t}");
    // ... and it still does.
    assert!(framebus::stat(&owned, None).is_ok_and(|i| i.producer_alive));
}
