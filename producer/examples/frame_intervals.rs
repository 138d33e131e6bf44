//! Run with: `cargo run --release -p framebus-producer --example frame_intervals -- <bus> <seconds>`
//!
//! Attach to a bus, read every frame for a while and report the achieved
//! frame rate and the frame-interval jitter (p50/p99/max), both of the
//! capture timestamps the producer wrote and of the reader's wake-ups, plus
//! how many time codes decoded and the end-to-end latency they show (the
//! reader's realtime clock minus the capture time in the code: for a bus fed
//! from an RTSP or MJPEG stream of a test-pattern bus, this is the whole
//! chain's latency). Used by `producer/bench/cpu.sh`.

use std::time::{Duration, Instant};

use framebus::{monotonic_ns, realtime_ns, timecode, Reader, ReaderOptions};

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1e6
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let bus = args.get(1).map(String::as_str).unwrap_or("cam0");
    let secs: f64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(10.0);
    let mut r = Reader::attach(
        bus,
        ReaderOptions {
            wait: Some(Duration::from_secs(10)),
            shm_dir: None,
        },
    )?;
    // Start on a fresh frame.
    r.next(Some(Duration::from_secs(5)))?;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let (mut capture, mut arrival) = (Vec::new(), Vec::new());
    let (mut skipped, mut decoded, mut frames) = (0u64, 0u64, 0u64);
    let (mut first_mono, mut last_mono) = (0u64, 0u64);
    let mut prev: Option<(u64, u64)> = None;
    let mut latency = Vec::new();
    while Instant::now() < end {
        let f = r.next(Some(Duration::from_secs(5)))?;
        let now = monotonic_ns();
        frames += 1;
        skipped += f.skipped();
        // Decoding every frame would cost the reader more than the
        // producer; one in 30 shows the time code is there.
        if frames % 30 == 1 {
            if let Some(tc) = timecode::decode(f.spec(), &f) {
                decoded += 1;
                latency.push((realtime_ns() / 1000).saturating_sub(tc.realtime_us) * 1000);
            }
        }
        if first_mono == 0 {
            first_mono = f.mono_ns();
        }
        last_mono = f.mono_ns();
        if let Some((pm, pa)) = prev {
            capture.push(f.mono_ns().saturating_sub(pm));
            arrival.push(now.saturating_sub(pa));
        }
        prev = Some((f.mono_ns(), now));
    }
    capture.sort_unstable();
    latency.sort_unstable();
    arrival.sort_unstable();
    let span = (last_mono - first_mono) as f64 / 1e9;
    let fps = if span > 0.0 {
        (frames - 1 + skipped) as f64 / span
    } else {
        0.0
    };
    println!(
        "frames_read={frames} skipped={skipped} timecodes_decoded={decoded}/{}",
        frames.div_ceil(30)
    );
    println!("achieved_fps={fps:.3} over {span:.1} s (from capture timestamps)");
    println!(
        "capture_interval_ms p50={:.3} p99={:.3} max={:.3}",
        pct(&capture, 0.5),
        pct(&capture, 0.99),
        pct(&capture, 1.0)
    );
    println!(
        "arrival_interval_ms p50={:.3} p99={:.3} max={:.3}",
        pct(&arrival, 0.5),
        pct(&arrival, 0.99),
        pct(&arrival, 1.0)
    );
    println!(
        "latency_ms (reader clock - time code) p50={:.3} p99={:.3} max={:.3}",
        pct(&latency, 0.5),
        pct(&latency, 0.99),
        pct(&latency, 1.0)
    );
    Ok(())
}
