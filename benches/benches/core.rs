//! Per-frame costs of the bus in one process, against a plain memcpy of the
//! same frame: what the writer pays to publish (excluding filling the
//! frame) and what a reader pays to take and release a frame, vs frame size.
//!
//! Run with: `cargo bench -p framebus-benches --bench core`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use framebus::{
    Fps, FrameMeta, FrameSpec, PixelFormat, Reader, ReaderOptions, Writer, WriterOptions,
};

const SIZES: [(usize, &str); 3] = [(4 << 10, "4KiB"), (1 << 20, "1MiB"), (8 << 20, "8MiB")];

fn spec(bytes: usize) -> FrameSpec {
    FrameSpec::new(
        PixelFormat::Gray8,
        4096,
        (bytes / 4096) as u32,
        Fps::new(60),
    )
    .unwrap()
}

fn bus(tag: &str, bytes: usize) -> (Writer, Reader) {
    let name = format!("bench-core-{}-{tag}-{bytes}", std::process::id());
    let w = Writer::create(&name, spec(bytes), WriterOptions::default()).unwrap();
    let r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    (w, r)
}

fn per_frame(c: &mut Criterion) {
    let mut g = c.benchmark_group("per-frame");
    for (bytes, label) in SIZES {
        // Baseline: one copy of the frame (what any copying hand-off adds).
        let src = vec![1u8; bytes];
        let mut dst = vec![0u8; bytes];
        g.bench_with_input(BenchmarkId::new("memcpy", label), &bytes, |b, _| {
            b.iter(|| dst.copy_from_slice(std::hint::black_box(&src)))
        });
        // Writer: loan + publish, one reader attached (not waiting).
        let (mut w, _r) = bus("pub", bytes);
        let meta = FrameMeta::now();
        g.bench_with_input(BenchmarkId::new("publish", label), &bytes, |b, _| {
            b.iter(|| w.loan().unwrap().publish(meta))
        });
        drop((w, _r));
        // Reader: take the newest frame (zero-copy view) and release it.
        let (mut w, mut r) = bus("take", bytes);
        g.bench_with_input(BenchmarkId::new("take+release", label), &bytes, |b, _| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    w.loan().unwrap().publish(meta);
                    let t = std::time::Instant::now();
                    let f = r.try_next().unwrap().unwrap();
                    std::hint::black_box(f.as_ptr());
                    drop(f);
                    total += t.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = per_frame
}
criterion_main!(benches);
