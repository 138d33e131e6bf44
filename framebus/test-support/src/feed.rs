//! Test buses fed by a thread: a moving NV12 pattern (a bright bar sliding
//! 8 pixels per frame over a vertical gradient, chroma cycling) with the
//! time code (`framebus::timecode`: capture time and frame counter) in the
//! top rows, published at a steady rate until the [`Feeder`] is dropped.
//!
//! Options: per-frame noise over the picture ([`FeedOptions::noisy`]: hard
//! to compress, so a high bit rate really produces many bytes), a camera
//! that loses captures ([`FeedOptions::dropping`]: every n-th frame is
//! never published, so the bus shows a gap in capture times as a V4L2
//! camera that drops frames does), a private shm directory
//! ([`FeedOptions::shm_dir`]).

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use framebus::timecode::{self, TimeCode};
use framebus::{Fps, FrameMeta, FrameSpec, PixelFormat, Writer, WriterOptions};

use crate::names::unique_name;

/// What a [`Feeder`] publishes.
#[derive(Clone, Debug)]
pub struct FeedOptions {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frames per second (also the bus's nominal rate).
    pub fps: u32,
    /// Random luma under the time code, new every frame.
    pub noisy: bool,
    /// Skip publishing every n-th capture.
    pub drop_every: Option<u64>,
    /// Create the bus here instead of the default shm directory.
    pub shm_dir: Option<PathBuf>,
}

impl FeedOptions {
    /// A clean NV12 `width`x`height` bus at `fps`.
    pub fn new(width: u32, height: u32, fps: u32) -> FeedOptions {
        FeedOptions {
            width,
            height,
            fps,
            noisy: false,
            drop_every: None,
            shm_dir: None,
        }
    }

    /// With per-frame noise.
    pub fn noisy(mut self) -> FeedOptions {
        self.noisy = true;
        self
    }

    /// Losing every `n`-th capture.
    pub fn dropping(mut self, n: u64) -> FeedOptions {
        self.drop_every = Some(n);
        self
    }

    /// In `dir` (`FRAMEBUS_SHM_DIR` of the readers).
    pub fn shm_dir(mut self, dir: &Path) -> FeedOptions {
        self.shm_dir = Some(dir.to_path_buf());
        self
    }
}

/// Frame `n` of the moving pattern into the planes of an NV12 `w`x`h`
/// frame (the time code is painted over it separately): a bright bar
/// sliding 8 pixels per frame over a vertical gradient, chroma cycling.
pub fn paint_pattern(y: &mut [u8], uv: &mut [u8], w: usize, h: usize, n: u64) {
    let x0 = (n as usize * 8) % w;
    for (row, line) in y.chunks_mut(w).take(h).enumerate() {
        for (x, px) in line.iter_mut().enumerate() {
            let bar = ((x + w - x0) % w) < w / 8;
            *px = if bar {
                235
            } else {
                (16 + (row * 200 / h)) as u8
            };
        }
    }
    uv.fill(128 + (n % 32) as u8);
}

/// A bus and the thread publishing into it; dropping it stops the thread
/// and removes the bus.
pub struct Feeder {
    /// The bus name.
    pub name: String,
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Feeder {
    /// Feed `bus` (created now; panics if it cannot be) with `opts`.
    pub fn with(bus: &str, opts: FeedOptions) -> Feeder {
        let FeedOptions {
            width,
            height,
            fps,
            noisy,
            drop_every,
            shm_dir,
        } = opts;
        let spec = FrameSpec::new(PixelFormat::Nv12, width, height, Fps::new(fps))
            .unwrap_or_else(|e| panic!("test bus {bus}: {e}"));
        let wopts = WriterOptions {
            shm_dir,
            ..WriterOptions::default()
        };
        let mut writer =
            Writer::create(bus, spec, wopts).unwrap_or_else(|e| panic!("create bus {bus}: {e}"));
        writer.set_source_state(framebus::layout::source_state::RUNNING);
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, published) = (Arc::clone(&stop), Arc::clone(&published));
            std::thread::spawn(move || {
                let (wu, hu) = (width as usize, height as usize);
                let start = Instant::now();
                let mut n: u64 = 0;
                let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
                while !stop.load(Ordering::Relaxed) {
                    let meta = FrameMeta::now();
                    let publish = drop_every.is_none_or(|d| !(n + 1).is_multiple_of(d));
                    let mut sent = false;
                    if let Ok(mut loan) = writer.loan() {
                        {
                            let mut planes = loan.planes_mut();
                            let [y, uv] = &mut planes[..] else {
                                unreachable!("NV12 has two planes")
                            };
                            paint_pattern(y, uv, wu, hu, n);
                            if noisy {
                                for px in planes[0].iter_mut() {
                                    rng ^= rng << 13;
                                    rng ^= rng >> 7;
                                    rng ^= rng << 17;
                                    *px = (rng >> 56) as u8;
                                }
                            }
                        }
                        let tc = TimeCode {
                            realtime_us: meta.realtime_ns / 1000,
                            counter: n as u32,
                        };
                        // Every test size is above timecode::MIN_WIDTH/HEIGHT.
                        let _ = timecode::paint(&spec, &mut loan, tc);
                        if publish {
                            loan.publish(meta);
                            sent = true;
                        }
                    }
                    if sent {
                        writer.count(framebus::Counter::Captured, 1);
                        published.fetch_add(1, Ordering::SeqCst);
                    }
                    n += 1;
                    let due = start + Duration::from_nanos(n * 1_000_000_000 / u64::from(fps));
                    if let Some(d) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
            })
        };
        Feeder {
            name: bus.to_string(),
            stop,
            published,
            thread: Some(thread),
        }
    }

    /// Feed `bus` with a clean `w`x`h` pattern at `fps`.
    pub fn start(bus: &str, w: u32, h: u32, fps: u32) -> Feeder {
        Feeder::with(bus, FeedOptions::new(w, h, fps))
    }

    /// Like [`Feeder::start`], with the bus in `shm_dir`.
    pub fn start_in(bus: &str, w: u32, h: u32, fps: u32, shm_dir: Option<&Path>) -> Feeder {
        let mut o = FeedOptions::new(w, h, fps);
        o.shm_dir = shm_dir.map(Path::to_path_buf);
        Feeder::with(bus, o)
    }

    /// Frames published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    /// Run `f` and return the bus's actual frame rate meanwhile.
    pub fn measure<T>(&self, f: impl FnOnce() -> T) -> (T, f64) {
        let (n0, t0) = (self.published(), Instant::now());
        let r = f();
        let n = self.published() - n0;
        (r, n as f64 / t0.elapsed().as_secs_f64())
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A [`Feeder`] on a fresh bus named after a tag ([`unique_name`]), at
/// 30 fps unless said otherwise.
pub struct TestBus(Feeder);

impl TestBus {
    /// A clean `width`x`height` bus at 30 fps.
    pub fn start(tag: &str, width: u32, height: u32) -> TestBus {
        TestBus::with(tag, FeedOptions::new(width, height, 30))
    }

    /// A noisy `width`x`height` bus at 30 fps.
    pub fn start_noisy(tag: &str, width: u32, height: u32) -> TestBus {
        TestBus::with(tag, FeedOptions::new(width, height, 30).noisy())
    }

    /// A camera at `fps` losing every `drop_every`-th capture.
    pub fn start_dropping(
        tag: &str,
        width: u32,
        height: u32,
        fps: u32,
        drop_every: u64,
    ) -> TestBus {
        TestBus::with(
            tag,
            FeedOptions::new(width, height, fps).dropping(drop_every),
        )
    }

    /// A bus named after `tag` with `opts`.
    pub fn with(tag: &str, opts: FeedOptions) -> TestBus {
        TestBus(Feeder::with(&unique_name(tag), opts))
    }
}

impl Deref for TestBus {
    type Target = Feeder;

    fn deref(&self) -> &Feeder {
        &self.0
    }
}
