//! `framebussrc` against GStreamer's usual ways of getting another
//! process's frames into a pipeline, in one run (docs/benchmarks.md
//! "GStreamer elements"):
//!
//! * `framebussrc`: `framebussrc bus=B ! fakesink`, the bus's slots as
//!   buffers (zero copy);
//! * `shmsrc`: a relay process `framebussrc bus=B ! shmsink` (what a camera
//!   pipeline writing `shmsink` does: one copy into its shared memory) and
//!   `shmsrc ! video/x-raw,… ! fakesink` here, the caps restated by hand;
//! * `appsrc + copy`: a thread here reads the bus and pushes a copy of each
//!   frame into `appsrc ! fakesink` (what an application bridging its own
//!   frames into GStreamer does).
//!
//! The frames come from `framebus-producer` (test pattern with the time
//! code, 1080p60 NV12 by default) in its own process. At the `fakesink` each
//! buffer's time code is read: **hand-off latency** = CLOCK_REALTIME now −
//! the capture time in the picture. **CPU per frame** = CPU time of this
//! process (and of the relay, for `shmsrc`) over the frames received.
//! **Bytes copied per frame** = what each way copies: `framebussrc` counts
//! its copies (`copies` × frame size), `shmsink` and the application copy
//! every frame once.
//!
//! Run with: `cargo run --release -p framebus-benches --bin gst_handoff
//! [-- --seconds 10 --size 1920x1080 --fps 60]` after `make build` (it
//! needs `framebus-producer` and `libgstframebus.so` in target/release).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use framebus::{timecode, Fps, FrameSpec, PixelFormat, Reader, ReaderOptions};
use framebus_benches::percentile;
use gst::prelude::*;

struct Opts {
    seconds: f64,
    width: u32,
    height: u32,
    fps: u32,
}

fn opts() -> Opts {
    let mut o = Opts {
        seconds: 10.0,
        width: 1920,
        height: 1080,
        fps: 60,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for w in args.chunks(2) {
        match (w[0].as_str(), w.get(1)) {
            ("--seconds", Some(v)) => o.seconds = v.parse().expect("--seconds N"),
            ("--fps", Some(v)) => o.fps = v.parse().expect("--fps N"),
            ("--size", Some(v)) => {
                let (w, h) = v.split_once('x').expect("--size WxH");
                (o.width, o.height) = (w.parse().unwrap(), h.parse().unwrap());
            }
            _ => panic!("usage: gst_handoff [--seconds N] [--size WxH] [--fps N]"),
        }
    }
    o
}

/// target/release, next to this binary.
fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A child stopped with `signal` when dropped (SIGTERM for the producer,
/// SIGINT for gst-launch, so both remove their shared memory), killed if
/// it is still there after 5 s.
struct Kill(Child, i32);
impl Drop for Kill {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as libc::pid_t, self.1) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU seconds (user + system) of process `pid` (0: this one, to the
/// microsecond; another from /proc, to the clock tick).
fn cpu_s(pid: u32) -> f64 {
    if pid == 0 {
        // SAFETY: getrusage writes the zeroed struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a rusage.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        return tv(ru.ru_utime) + tv(ru.ru_stime);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are 12 and 13 after the comm.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// What the fakesink saw.
#[derive(Default)]
struct Seen {
    latency_us: Vec<u64>,
    frames: u64,
}

/// Feeds a pipeline's `appsrc name=app` until the pipeline stops.
type Feed = Box<dyn FnOnce(gst::Element, Arc<AtomicBool>) -> std::thread::JoinHandle<()>>;

/// A pipeline ending in `fakesink name=out`, run for `seconds` after a 2 s
/// warm-up; the time code of every buffer read there, and the CPU time of
/// this process (plus `extra_pid`'s) meanwhile.
fn run(
    desc: &str,
    spec: FrameSpec,
    seconds: f64,
    extra_pid: Option<u32>,
    feed: Option<Feed>,
) -> (Seen, f64) {
    let p = gst::parse::launch(desc)
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = p.by_name("out").expect("fakesink name=out");
    sink.set_property("signal-handoffs", true);
    {
        let seen = Arc::clone(&seen);
        sink.connect("handoff", false, move |args| {
            let buf = args[1].get::<gst::Buffer>().expect("buffer");
            let now = now_us();
            if let Ok(map) = buf.map_readable() {
                if let Some(tc) = timecode::decode(&spec, &map) {
                    let mut s = seen.lock().unwrap();
                    s.frames += 1;
                    s.latency_us.push(now.saturating_sub(tc.realtime_us));
                }
            }
            None
        });
    }
    p.set_state(gst::State::Playing).expect("PLAYING");
    let stop = Arc::new(AtomicBool::new(false));
    let feeding = feed.map(|f| {
        f(
            p.by_name("app").expect("appsrc name=app"),
            Arc::clone(&stop),
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    *seen.lock().unwrap() = Seen::default();
    let (cpu0, extra0) = (cpu_s(0), extra_pid.map_or(0.0, cpu_s));
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let cpu = cpu_s(0) - cpu0 + extra_pid.map_or(0.0, |pid| cpu_s(pid) - extra0);
    let out = std::mem::take(&mut *seen.lock().unwrap());
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = feeding {
        let _ = t.join();
    }
    if let Some(bus) = p.bus() {
        while let Some(m) = bus.pop() {
            if let gst::MessageView::Error(e) = m.view() {
                panic!("{desc}: {} ({:?})", e.error(), e.debug());
            }
        }
    }
    p.set_state(gst::State::Null).unwrap();
    (out, cpu)
}

struct Row {
    name: &'static str,
    seen: Seen,
    cpu_s: f64,
    copied_per_frame: f64,
}

fn main() {
    let o = opts();
    gst::init().expect("gst::init");
    gstframebus::plugin_register_static().expect("register framebus elements");
    let dir = bin_dir();
    let bus = format!("bench-gst-{}", std::process::id());
    let spec = FrameSpec::new(PixelFormat::Nv12, o.width, o.height, Fps::new(o.fps)).unwrap();
    let frame = spec.frame_size() as f64;
    let _producer = Kill(
        Command::new(dir.join("framebus-producer"))
            .args(["--bus", &bus, "--source", "testsrc", "--format", "nv12"])
            .args(["--size", &format!("{}x{}", o.width, o.height)])
            .args(["--fps", &o.fps.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("framebus-producer (make build)"),
        libc::SIGTERM,
    );
    let _ = Reader::attach(
        &bus,
        ReaderOptions {
            wait: Some(Duration::from_secs(30)),
            ..Default::default()
        },
    )
    .expect("the producer's bus");
    let caps = format!(
        "video/x-raw,format=NV12,width={},height={},framerate={}/1",
        o.width, o.height, o.fps
    );
    let mut rows = Vec::new();

    // framebussrc
    let desc = format!("framebussrc name=src bus={bus} ! fakesink name=out sync=false");
    let (seen, cpu) = run(&desc, spec, o.seconds, None, None);
    rows.push(Row {
        name: "framebussrc",
        seen,
        cpu_s: cpu,
        copied_per_frame: 0.0,
    });

    // shmsink in a relay process → shmsrc here.
    let socket = std::env::temp_dir().join(format!("{bus}.shm"));
    let relay = Kill(
        Command::new("gst-launch-1.0")
            .env("GST_PLUGIN_PATH", &dir)
            .args(["-q", "framebussrc", &format!("bus={bus}"), "!", "shmsink"])
            .arg(format!("socket-path={}", socket.display()))
            .arg(format!("shm-size={}", spec.frame_size() * 8))
            .args(["wait-for-connection=false", "sync=false"])
            .stdout(Stdio::null())
            .spawn()
            .expect("gst-launch-1.0"),
        libc::SIGINT,
    );
    let start = Instant::now();
    while !socket.exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let desc = format!(
        "shmsrc socket-path={} is-live=true do-timestamp=true ! {caps} ! fakesink name=out sync=false",
        socket.display()
    );
    let (seen, cpu) = run(&desc, spec, o.seconds, Some(relay.0.id()), None);
    rows.push(Row {
        name: "shmsink → shmsrc",
        seen,
        cpu_s: cpu,
        copied_per_frame: frame,
    });
    drop(relay);
    let _ = std::fs::remove_file(&socket);

    // appsrc fed with a copy of each frame by a thread of this process.
    let desc = format!(
        "appsrc name=app is-live=true do-timestamp=true format=time caps={caps} ! fakesink name=out sync=false"
    );
    let feed_bus = bus.clone();
    let feed: Feed = Box::new(move |app, stop| {
        std::thread::spawn(move || {
            let mut r = Reader::attach(&feed_bus, ReaderOptions::default()).expect("attach");
            while !stop.load(Ordering::Relaxed) {
                if let Ok(f) = r.next(Some(Duration::from_millis(100))) {
                    let b = gst::Buffer::from_mut_slice(f.to_vec());
                    drop(f);
                    let _ = app.emit_by_name::<gst::FlowReturn>("push-buffer", &[&b]);
                }
            }
        })
    });
    let (seen, cpu) = run(&desc, spec, o.seconds, None, Some(feed));
    rows.push(Row {
        name: "appsrc + copy",
        seen,
        cpu_s: cpu,
        copied_per_frame: frame,
    });

    print_table(&o, &rows);
}

fn print_table(o: &Opts, rows: &[Row]) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{}x{} NV12 at {} fps, {} s per way, load {}",
        o.width,
        o.height,
        o.fps,
        o.seconds,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!("| way | frames | latency p50 | p99 | CPU per frame | bytes copied per frame | CPU vs framebussrc | p50 vs framebussrc |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let base = &rows[0];
    let per_frame = |r: &Row| r.cpu_s * 1e6 / r.seen.frames.max(1) as f64;
    let p50 = |r: &Row| percentile(&r.seen.latency_us, 50.0) as f64;
    for r in rows {
        println!(
            "| {} | {} | {:.2} ms | {:.2} ms | {:.0} µs | {:.0} | {:.2}× | {:.2}× |",
            r.name,
            r.seen.frames,
            p50(r) / 1000.0,
            percentile(&r.seen.latency_us, 99.0) as f64 / 1000.0,
            per_frame(r),
            r.copied_per_frame,
            per_frame(r) / per_frame(base).max(1e-9),
            p50(r) / p50(base).max(1e-9),
        );
    }
}
