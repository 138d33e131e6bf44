//! Cross-process hand-off latency: framebus against its floor and the usual
//! baselines, all in one run (figures in `docs/benchmarks.md`).
//!
//! Run with: `cargo run --release -p framebus-benches --bin handoff [-- --samples 300]`
//!
//! For each frame interval (16.7 ms = 60 fps, 1 ms = 1 kHz) it measures, from
//! a publishing process to a reader process that is blocked waiting:
//!
//! * `futex floor`: the bare futex wake-up of a sleeping process (a word in
//!   a shared mapping, a timestamp beside it). No hand-off can beat this.
//! * `framebus`: `Writer::loan` + `publish` to a reader blocked in
//!   `Reader::next`, until the reader holds the zero-copy view; 4 KiB, 1 MiB
//!   and 8 MiB frames.
//! * `unix socket`: the same frame written to a Unix stream socket and read
//!   whole by the reader (the copy-based way).
//! * `memcpy`: one plain copy of the frame, in process (what a copying
//!   hand-off costs at least, on top of its wake-up).
//!
//! Latency is CLOCK_MONOTONIC at the reader minus CLOCK_MONOTONIC taken by
//! the publisher just before publishing. The reader is a child process (this
//! same binary, `--child`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use framebus::{
    monotonic_ns, Fps, FrameMeta, FrameSpec, PixelFormat, Reader, ReaderOptions, Writer,
    WriterOptions,
};
use framebus_benches::{futex_wait, futex_wake, percentile, SharedPage};

const SIZES: [(usize, &str); 3] = [(4 << 10, "4 KiB"), (1 << 20, "1 MiB"), (8 << 20, "8 MiB")];

struct ChildGuard(Child);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[String]) -> (ChildGuard, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--child")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let out = BufReader::new(child.stdout.take().unwrap());
    (ChildGuard(child), out)
}

fn read_line(out: &mut BufReader<std::process::ChildStdout>) -> String {
    let mut s = String::new();
    out.read_line(&mut s).expect("child output");
    s.trim().to_string()
}

fn samples_from(line: &str) -> Vec<u64> {
    line.split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect()
}

/// Sleep until `deadline` (absolute, so the spacing does not drift).
fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

fn gray_spec(bytes: usize) -> FrameSpec {
    FrameSpec::new(
        PixelFormat::Gray8,
        4096,
        (bytes / 4096) as u32,
        Fps::new(60),
    )
    .unwrap()
}

// ---------------------------------------------------------------- children

fn child(args: &[String]) {
    let n: usize = args[1].parse().unwrap();
    let mut lat = Vec::with_capacity(n);
    match args[0].as_str() {
        "floor" => {
            let page = SharedPage::open(&args[2]);
            let (word, stamp) = page.words();
            println!("ready");
            let mut seen = 0u32;
            while lat.len() < n {
                let now_word = word.load(Ordering::Acquire);
                if now_word == seen {
                    futex_wait(word, seen);
                    continue;
                }
                seen = now_word;
                lat.push(monotonic_ns().saturating_sub(stamp.load(Ordering::Acquire)));
            }
        }
        "framebus" => {
            let mut r = Reader::attach(
                &args[2],
                ReaderOptions {
                    wait: Some(Duration::from_secs(10)),
                    ..Default::default()
                },
            )
            .unwrap();
            println!("ready");
            while lat.len() < n {
                let f = r.next(Some(Duration::from_secs(10))).expect("frame");
                let now = monotonic_ns();
                // Holding the view; touch both ends to prove it is usable.
                std::hint::black_box((f[0], f[f.len() - 1]));
                lat.push(now.saturating_sub(f.mono_ns()));
            }
        }
        "socket" => {
            let size: usize = args[3].parse().unwrap();
            let mut s = UnixStream::connect(&args[2]).unwrap();
            println!("ready");
            let mut buf = vec![0u8; size + 8];
            while lat.len() < n {
                s.read_exact(&mut buf).unwrap();
                let now = monotonic_ns();
                let sent = u64::from_le_bytes(buf[..8].try_into().unwrap());
                lat.push(now.saturating_sub(sent));
            }
        }
        other => panic!("unknown child {other}"),
    }
    let parts: Vec<String> = lat.iter().map(u64::to_string).collect();
    println!("samples {}", parts.join(" "));
}

// ---------------------------------------------------------------- parents

fn run_floor(n: usize, spacing: Duration) -> Vec<u64> {
    let page = SharedPage::create();
    let (word, stamp) = page.words();
    let (mut g, mut out) = spawn(&["floor".into(), n.to_string(), page.path().to_string()]);
    assert_eq!(read_line(&mut out), "ready");
    drive(n, spacing, &mut g, |i| {
        stamp.store(monotonic_ns(), Ordering::Release);
        word.store(i as u32, Ordering::Release);
        futex_wake(word);
    });
    samples_from(&read_line(&mut out))
}

fn run_framebus(n: usize, spacing: Duration, size: usize, tag: &str) -> Vec<u64> {
    let name = format!("bench-handoff-{}-{tag}", std::process::id());
    let mut w = Writer::create(&name, gray_spec(size), WriterOptions::default()).unwrap();
    let (mut g, mut out) = spawn(&["framebus".into(), n.to_string(), name.clone()]);
    assert_eq!(read_line(&mut out), "ready");
    drive(n, spacing, &mut g, |_| {
        let loan = w.loan().unwrap();
        // The frame's bytes would be captured in place here; the hand-off
        // starts when it is published.
        let meta = FrameMeta {
            mono_ns: monotonic_ns(),
            ..FrameMeta::default()
        };
        loan.publish(meta);
    });
    samples_from(&read_line(&mut out))
}

fn run_socket(n: usize, spacing: Duration, size: usize, tag: &str) -> Vec<u64> {
    let path =
        std::env::temp_dir().join(format!("framebus-bench-{}-{tag}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let (mut g, mut out) = spawn(&[
        "socket".into(),
        n.to_string(),
        path.display().to_string(),
        size.to_string(),
    ]);
    let (mut s, _) = listener.accept().unwrap();
    assert_eq!(read_line(&mut out), "ready");
    let mut frame = vec![7u8; size + 8];
    drive(n, spacing, &mut g, |_| {
        frame[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
        // The child leaves once it has its samples; a write after that fails.
        let _ = s.write_all(&frame);
    });
    let r = samples_from(&read_line(&mut out));
    let _ = std::fs::remove_file(&path);
    r
}

fn run_memcpy(size: usize) -> Vec<u64> {
    let src = vec![1u8; size];
    let mut dst = vec![0u8; size];
    // Many copies, each timed; the buffers stay warm as in a tight pipeline.
    let reps = (256 << 20) / size.max(1);
    let reps = reps.clamp(20, 20_000);
    (0..reps)
        .map(|_| {
            let t = monotonic_ns();
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&dst);
            monotonic_ns() - t
        })
        .collect()
}

/// Call `publish(i)` every `spacing` until the child has its `n` samples
/// (a reader may skip frames under load, so it may need more than `n`).
fn drive(n: usize, spacing: Duration, child: &mut ChildGuard, mut publish: impl FnMut(usize)) {
    // Let the child reach its blocking wait first.
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    for i in 1..=n * 10 {
        sleep_until(start + spacing * i as u32);
        if child.0.try_wait().unwrap().is_some() {
            return;
        }
        publish(i);
    }
    panic!("the child never collected {n} samples");
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1..]);
    }
    let samples: usize = args
        .iter()
        .position(|a| a == "--samples")
        .map(|i| args[i + 1].parse().expect("--samples N"))
        .unwrap_or(300);

    println!("Cross-process hand-off latency, {samples} samples per row (µs, publish → blocked reader holds the frame)\n");
    for (spacing, label, n) in [
        (
            Duration::from_micros(16_667),
            "60 fps (16.7 ms apart)",
            samples,
        ),
        (Duration::from_millis(1), "1 kHz (1 ms apart)", samples * 3),
    ] {
        println!("### {label}\n");
        println!("| hand-off | frame | p50 µs | p99 µs | p50 / floor | p99 / floor |");
        println!("|---|---|---:|---:|---:|---:|");
        let floor = run_floor(n, spacing);
        let (f50, f99) = (percentile(&floor, 50.0), percentile(&floor, 99.0));
        println!(
            "| futex wake-up (floor) | — | {} | {} | 1.00 | 1.00 |",
            us(f50),
            us(f99)
        );
        let mut fb4k = 0;
        for (size, name) in SIZES {
            let tag = format!("{}-{}", spacing.as_micros(), size);
            let lat = run_framebus(n, spacing, size, &tag);
            let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
            if size == 4 << 10 {
                fb4k = p50;
            }
            println!(
                "| **framebus** | {name} | {} | {} | {:.2} | {:.2} |",
                us(p50),
                us(p99),
                p50 as f64 / f50 as f64,
                p99 as f64 / f99 as f64
            );
            if size == 8 << 20 {
                println!(
                    "| framebus 8 MiB / 4 KiB | | | | {:.2} | |",
                    p50 as f64 / fb4k as f64
                );
            }
        }
        for (size, name) in SIZES {
            let tag = format!("{}-{}", spacing.as_micros(), size);
            let lat = run_socket(n, spacing, size, &tag);
            let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
            println!(
                "| unix socket | {name} | {} | {} | {:.2} | {:.2} |",
                us(p50),
                us(p99),
                p50 as f64 / f50 as f64,
                p99 as f64 / f99 as f64
            );
        }
        for (size, name) in SIZES {
            let lat = run_memcpy(size);
            println!(
                "| memcpy (in process, no wake-up) | {name} | {} | {} | | |",
                us(percentile(&lat, 50.0)),
                us(percentile(&lat, 99.0))
            );
        }
        println!();
    }
}
