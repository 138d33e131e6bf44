//! `framebussrc` and `framebussink` in real GStreamer pipelines:
//!
//! - `gst-inspect-1.0` finds both through `GST_PLUGIN_PATH`;
//! - `framebussrc ! x264enc ! mp4mux ! filesink` keeps 300 frames (ffprobe
//!   counts them), their time codes are the bus's frames in order, and the
//!   file's timestamps are the capture times;
//! - `videotestsrc num-buffers=300 ! framebussink` feeds a Rust and a Python
//!   reader 300 frames each, in the right format;
//! - a `framebussrc` pipeline outlives a producer killed with SIGKILL and
//!   resumes with the next one, in its new format; a downstream that holds
//!   buffers gets copies past the bus's limit and never slows the producer;
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
use framebus_test_support::recorder::{ffprobe_video, frame_timecodes};
use framebus_test_support::{
    bins, eventually, run_to_end, unique_name, ChildGuard, Feeder, TempDir,
};
use gst::prelude::*;

const LIMIT: Duration = Duration::from_secs(60);

/// The directory holding `libgstframebus.so` (next to the binaries).
fn plugin_dir() -> PathBuf {
    let dir = bins::dir();
    assert!(
        dir.join("libgstframebus.so").is_file(),
        "{}/libgstframebus.so missing: cargo build --release -p gst-plugin-framebus",
        dir.display()
    );
    dir
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
fn a_file_from_the_bus_keeps_every_frame_its_time_code_and_capture_time() {
    let bus = unique_name("gst-file");
    let _feed = Feeder::start(&bus, 640, 360, 30);
    let dir = TempDir::new("gst-file");
    let file = dir.path().join("out.mp4");
    let o = launch(&format!(
        "framebussrc bus={bus} num-buffers=300 ! x264enc speed-preset=ultrafast tune=zerolatency bitrate=4000 key-int-max=30 \
         ! h264parse ! mp4mux ! filesink location={}",
        file.display()
    ));
    assert!(o.status.success(), "{}", text(&o));
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
    // The bus's frames, in order: consecutive counters (a 30 fps reader of
    // a 30 fps bus loses none).
    for w in codes.windows(2) {
        assert_eq!(
            w[1].counter,
            w[0].counter + 1,
            "frames out of order or lost: {w:?}"
        );
    }
    // Timestamps are capture times: the file's clock advances as the time
    // codes' capture clock does (to the millisecond mp4mux keeps).
    let o = run_to_end(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "frame=pts_time",
                "-of",
                "csv=p=0",
            ])
            .arg(&file),
        LIMIT,
    );
    let pts: Vec<f64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    assert_eq!(pts.len(), 300, "{}", text(&o));
    for (i, (p, c)) in pts.iter().zip(&codes).enumerate() {
        let file_s = p - pts[0];
        let capture_s = (c.realtime_us - codes[0].realtime_us) as f64 / 1e6;
        assert!(
            (file_s - capture_s).abs() < 0.002,
            "frame {i}: at {file_s:.4} s in the file, captured {capture_s:.4} s after the first"
        );
    }
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
        f = r.next(timeout=30.0)
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
            let opts = ReaderOptions {
                wait: Some(LIMIT),
                ..Default::default()
            };
            let mut r = Reader::attach(&bus, opts).expect("attach");
            let mut seen = Seen::default();
            loop {
                match r.next(Some(LIMIT)) {
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
    // The sink holds its first frame until both readers are attached;
    // 60 fps, paced by the clock (sync), so neither falls behind.
    let o = launch(&format!(
        "videotestsrc num-buffers=300 pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=60/1 \
         ! framebussink bus={bus} wait-for-readers={readers}"
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
    assert!(feed.published() > after.published.saturating_sub(5));
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

    // A format a bus cannot carry.
    let rgba = unique_name("gst-rgba");
    let t = fails(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,format=RGBA,width=64,height=64 ! framebussink bus={rgba}"
    ));
    assert!(t.contains("RGBA") || t.contains("not-negotiated"), "{t}");

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
