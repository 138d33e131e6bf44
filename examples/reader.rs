//! Run with: `cargo run --release -p framebus-examples --example reader -- [BUS]`
//!
//! Attaches to bus `BUS` (default `demo`, waiting for it to appear) and
//! prints, once a second, the frame rate and the hand-off latency (capture
//! timestamp to the moment this process holds the frame).

use std::time::{Duration, Instant};

use framebus::{monotonic_ns, ReadError, Reader, ReaderOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "demo".into());
    let mut reader = Reader::attach(
        &name,
        ReaderOptions {
            wait: Some(Duration::from_secs(30)),
            ..Default::default()
        },
    )?;
    let spec = *reader.spec();
    println!(
        "reading bus {name:?}: {} {}x{} @ {} fps",
        spec.format, spec.width, spec.height, spec.fps
    );
    let (mut frames, mut skipped, mut lat) = (0u64, 0u64, Vec::new());
    let mut window = Instant::now();
    loop {
        match reader.next(Some(Duration::from_secs(2))) {
            Ok(frame) => {
                lat.push(monotonic_ns().saturating_sub(frame.mono_ns()));
                frames += 1;
                skipped += frame.skipped();
            }
            Err(ReadError::ProducerGone { .. }) => {
                println!("producer gone; waiting for it to come back")
            }
            Err(ReadError::Timeout { .. }) => println!("no frames"),
            Err(e) => return Err(e.into()),
        }
        if window.elapsed() >= Duration::from_secs(1) && !lat.is_empty() {
            lat.sort_unstable();
            let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
            let fps = frames as f64 / window.elapsed().as_secs_f64();
            println!(
                "{fps:6.2} fps  hand-off p50 {:7.1} µs  p99 {:7.1} µs  skipped {skipped}",
                p(0.5),
                p(0.99)
            );
            (frames, skipped, window) = (0, 0, Instant::now());
            lat.clear();
        }
    }
}
