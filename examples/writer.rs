//! Run with: `cargo run --release -p framebus-examples --example writer -- [BUS]`
//!
//! Creates bus `BUS` (default `demo`), 640x480 NV12 at 60 fps, and publishes
//! a moving gradient, filling each slot in place (no copy).

use std::time::{Duration, Instant};

use framebus::{Fps, FrameMeta, FrameSpec, PixelFormat, Writer, WriterOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "demo".into());
    let spec = FrameSpec::new(PixelFormat::Nv12, 640, 480, Fps::new(60))?;
    let opts = WriterOptions {
        source: "examples/writer.rs".into(),
        ..Default::default()
    };
    let mut writer = Writer::create(&name, spec, opts)?;
    println!(
        "publishing on bus {name:?}: {} {}x{} @ {} fps",
        spec.format, spec.width, spec.height, spec.fps
    );
    let start = Instant::now();
    for n in 0u64.. {
        // Absolute deadlines: no drift however long a frame took.
        let deadline = start + Duration::from_secs_f64(n as f64 / spec.fps.as_f64());
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        let mut loan = match writer.loan() {
            Ok(loan) => loan,
            Err(e) => {
                eprintln!("{e}");
                continue;
            }
        };
        let mut planes = loan.planes_mut();
        let shift = (n * 4) as usize;
        for (y, row) in planes[0].chunks_exact_mut(640).enumerate() {
            for (x, px) in row.iter_mut().enumerate() {
                *px = ((x + y + shift) % 220 + 16) as u8;
            }
        }
        planes[1].fill(128);
        loan.publish(FrameMeta::now());
    }
    Ok(())
}
