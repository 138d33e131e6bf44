//! Capture of one camera into one bus ([`run`]): create the bus, then the
//! source loop (`source_loop`) keeps a source feeding it, reopening it
//! with exponential backoff when it is lost and on the watchdog, until a
//! stop signal. (Not to be confused with the process supervisor of
//! `--config`, [`crate::service`], which restarts publisher *processes*;
//! it runs one [`run`] per camera on a thread.)
//!
//! The bus outlives every source: while the source is away readers simply
//! see no new frames (and `framebus stat` shows the source state), never an
//! error, and the source resumes into the same bus with the same format.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use framebus::layout::source_state;
use framebus::{Counter, Fps, FrameSpec, PixelFormat, Writer, WriterOptions};

use crate::audio::{self, AudioKind};
use crate::backoff::Backoff;
use crate::cli::{Cli, SourceKind};
use crate::devlock::{self, LockError};
use crate::error::Fatal;
use crate::ffmpeg_src::FfmpegSource;
use crate::signals;
use crate::source::{Pulled, Source, SourceError};
use crate::testsrc::TestSrc;
use crate::v4l2_src::{self, V4l2Source};

/// Longest a single wait in the loop lasts (bounds the stop latency).
const TICK: Duration = Duration::from_millis(100);
/// How long an `ffmpeg:` input may take to report its stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

type Opener = Box<dyn FnMut(&FrameSpec) -> Result<Box<dyn Source>, SourceError>>;

/// An error of the first open, before the bus exists.
fn startup_error(e: SourceError) -> Fatal {
    match e {
        SourceError::NotFound { .. } | SourceError::Lost { .. } => Fatal::NoDevice(e.to_string()),
        SourceError::Missing { .. } => Fatal::MissingDependency(e.to_string()),
        SourceError::Unsupported { .. } => Fatal::Config(e.to_string()),
        SourceError::Busy { what, pid: 0 } => Fatal::Busy(what),
        SourceError::Busy { what, pid } => Fatal::Owned { what, pid },
    }
}

/// The test pattern's size unless told (and the size asked of a V4L2
/// device unless told).
pub const TESTSRC_SIZE: (u32, u32) = (1920, 1080);
/// The test pattern's rate unless told.
pub const TESTSRC_FPS: u32 = 60;

/// Round a size down to what the format's chroma subsampling allows.
pub fn align(format: PixelFormat, w: u32, h: u32) -> (u32, u32) {
    match format {
        PixelFormat::Nv12 | PixelFormat::I420 => (w & !1, h & !1),
        PixelFormat::Yuyv | PixelFormat::Uyvy => (w & !1, h),
        _ => (w, h),
    }
}

/// Run until stopped. `Ok` is a clean stop (exit 0).
pub fn run(cli: Cli) -> Result<(), Fatal> {
    let kind = SourceKind::parse(&cli.source).ok_or_else(|| {
        Fatal::Config(format!(
            "unknown source {:?} (expected testsrc, v4l2:/dev/videoN, v4l2:auto or ffmpeg:<url-or-file>)",
            cli.source
        ))
    })?;
    framebus::validate_name(&cli.bus).map_err(|e| Fatal::Config(e.to_string()))?;
    if cli.backoff_max < cli.backoff_initial {
        return Err(Fatal::Config(format!(
            "--backoff-max ({:?}) is shorter than --backoff-initial ({:?})",
            cli.backoff_max, cli.backoff_initial
        )));
    }
    let group = match &cli.group {
        Some(g) => {
            Some(framebus::group_id(g).map_err(|e| Fatal::Config(format!("group {g:?}: {e}")))?)
        }
        None => None,
    };
    let spec_of = |w: u32, h: u32, fps: Fps| {
        let (w, h) = align(cli.format, w, h);
        FrameSpec::new(cli.format, w, h, fps).map_err(|e| Fatal::Config(e.to_string()))
    };

    let mut device_lock = None;
    // Decide the bus spec (opening the source first when the flags leave
    // its size or rate open) and how to (re)open the source.
    let (spec, first, mut opener): (FrameSpec, Option<Box<dyn Source>>, Opener) = match kind {
        SourceKind::TestSrc => {
            let (w, h) = cli.size.unwrap_or(TESTSRC_SIZE);
            let spec = spec_of(w, h, cli.fps.unwrap_or(Fps::new(TESTSRC_FPS)))?;
            let first = TestSrc::new(spec).map_err(startup_error)?;
            let opener: Opener =
                Box::new(|spec: &FrameSpec| Ok(Box::new(TestSrc::new(*spec)?) as Box<dyn Source>));
            (spec, Some(Box::new(first)), opener)
        }
        SourceKind::Ffmpeg(url) => {
            let pace = cli.fps;
            let open = {
                let url = url.clone();
                move |_: &FrameSpec| {
                    Ok(Box::new(FfmpegSource::open(&url, pace, OPEN_TIMEOUT)?) as Box<dyn Source>)
                }
            };
            match (cli.size, cli.fps) {
                // Fully specified: the bus exists even if the camera is not
                // reachable yet.
                (Some((w, h)), Some(fps)) => (spec_of(w, h, fps)?, None, Box::new(open)),
                _ => {
                    let src =
                        FfmpegSource::open(&url, pace, OPEN_TIMEOUT).map_err(startup_error)?;
                    let n = src.native();
                    let (w, h) = cli.size.unwrap_or((n.width, n.height));
                    let fps = cli.fps.or(n.fps).unwrap_or(Fps::new(25));
                    (spec_of(w, h, fps)?, Some(Box::new(src)), Box::new(open))
                }
            }
        }
        SourceKind::V4l2(dev) => {
            let path = v4l2_src::resolve(dev.as_deref()).ok_or_else(|| {
                Fatal::NoDevice("no V4L2 capture device found (see --list-devices)".into())
            })?;
            // Exclusive: a second producer on this device exits 5.
            let lock = devlock::lock(&lock_dir(), &path).map_err(|e| match e {
                LockError::Held { device, pid, .. } => Fatal::Owned {
                    what: format!("device {device}"),
                    pid,
                },
                e => Fatal::Other(e.to_string()),
            })?;
            tracing::info!(device = %path.display(), lock = %lock.path.display(), "device locked");
            device_lock = Some(lock);
            let want_size = cli.size.unwrap_or(TESTSRC_SIZE);
            let want_fps = cli.fps.unwrap_or(Fps::new(30));
            let prefer = if cli.mjpeg_bus {
                PixelFormat::Mjpeg
            } else {
                cli.format
            };
            let src =
                V4l2Source::open(&path, prefer, want_size, want_fps).map_err(startup_error)?;
            let n = src.native();
            let (w, h) = cli.size.unwrap_or((n.width, n.height));
            let fps = cli.fps.or(n.fps).unwrap_or(want_fps);
            let passthrough = match (cli.mjpeg_bus, src.is_mjpeg()) {
                (true, true) => {
                    let name = format!("{}.mjpeg", cli.bus);
                    let spec = FrameSpec::new(PixelFormat::Mjpeg, n.width, n.height, fps)
                        .map_err(|e| Fatal::Config(e.to_string()))?;
                    let opts = WriterOptions {
                        slots: cli.slots,
                        group,
                        source: cli.source.clone(),
                        ..WriterOptions::default()
                    };
                    let w = Writer::create(&name, spec, opts)?;
                    tracing::info!(bus = %name, "MJPEG pass-through bus created");
                    Some(Rc::new(RefCell::new(w)))
                }
                (true, false) => {
                    tracing::warn!(
                        "--mjpeg-bus: the camera does not deliver MJPEG; no pass-through bus"
                    );
                    None
                }
                _ => None,
            };
            let src = src.with_passthrough(passthrough.clone());
            let opener: Opener = Box::new(move |spec: &FrameSpec| {
                let s = V4l2Source::open(&path, prefer, (spec.width, spec.height), spec.fps)?
                    .with_passthrough(passthrough.clone());
                Ok(Box::new(s) as Box<dyn Source>)
            });
            (spec_of(w, h, fps)?, Some(Box::new(src)), opener)
        }
    };

    let audio = start_audio(&cli, group)?;
    let opts = WriterOptions {
        slots: cli.slots,
        group,
        source: cli.source.clone(),
        ..WriterOptions::default()
    };
    let mut writer = Writer::create(&cli.bus, spec, opts)?;
    tracing::info!(
        bus = %cli.bus,
        path = %writer.path().display(),
        source = %cli.source,
        format = %spec.format,
        size = %format!("{}x{}", spec.width, spec.height),
        fps = %spec.fps,
        "bus created"
    );
    source_loop(
        &mut writer,
        first,
        &mut opener,
        Backoff::new(cli.backoff_initial, cli.backoff_max),
        cli.watchdog,
    );
    drop(writer);
    drop(device_lock);
    tracing::info!(bus = %cli.bus, "stopping: bus closed");
    if let Some(audio) = audio {
        // The audio loop sees the same stop request.
        let _ = audio.join();
    }
    Ok(())
}

/// With `--audio`: create `<bus>.audio` and start its source loop on a
/// thread (docs/audio.md). A device missing at start is exit 6 unless
/// `--audio-wait`; after that the loop reconnects like the picture's.
fn start_audio(
    cli: &Cli,
    group: Option<u32>,
) -> Result<Option<std::thread::JoinHandle<()>>, Fatal> {
    let Some(source) = &cli.audio else {
        return Ok(None);
    };
    let kind = AudioKind::parse(source).ok_or_else(|| {
        Fatal::Config(format!(
            "unknown audio source {source:?} (expected alsa:<device>, e.g. alsa:default or alsa:hw:1,0, ffmpeg:<url-or-file>, or tone)"
        ))
    })?;
    let spec = audio::spec(cli.audio_rate, cli.audio_channels).map_err(Fatal::Config)?;
    let name = framebus::contract::audio::pcm_bus(&cli.bus);
    let opts = WriterOptions {
        slots: framebus::contract::audio::SLOTS,
        group,
        source: source.clone(),
        ..WriterOptions::default()
    };
    let mut writer = Writer::create(&name, spec, opts)?;
    tracing::info!(
        bus = %name,
        source = %source,
        rate = spec.sample_rate(),
        channels = spec.channels(),
        chunk_ms = audio::CHUNK_MS,
        "audio bus created"
    );
    let backoff = Backoff::new(cli.backoff_initial, cli.backoff_max);
    let (watchdog, wait) = (cli.watchdog, cli.audio_wait);
    // The device is opened on the audio thread (a source stays on the
    // thread that opened it); the first open's outcome comes back here.
    let (opened, first_open) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("audio".into())
        .spawn(move || {
            let span = tracing::info_span!("audio", bus = %name);
            let _enter = span.enter();
            let mut opener: Opener = Box::new(audio::opener(kind));
            let first = match opener(&spec) {
                Ok(s) => Some(s),
                Err(e) if wait => {
                    tracing::warn!(error = %e, "audio source unavailable; waiting for it (--audio-wait)");
                    None
                }
                Err(e) => {
                    let _ = opened.send(Err(e));
                    return;
                }
            };
            let _ = opened.send(Ok(()));
            source_loop(&mut writer, first, &mut opener, backoff, watchdog);
            drop(writer);
            tracing::info!("stopping: audio bus closed");
        })
        .map_err(|e| Fatal::Other(format!("cannot start the audio thread: {e}")))?;
    match first_open.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = handle.join();
            return Err(startup_error(e));
        }
        Err(_) => return Err(Fatal::Other("the audio thread ended at start".into())),
    }
    Ok(Some(handle))
}

/// The source loop: keep a source feeding `writer` until a stop is
/// requested. A source that fails or stops delivering (`watchdog`) is
/// dropped and reopened after the next `backoff` delay; the bus stays.
fn source_loop(
    writer: &mut Writer,
    mut current: Option<Box<dyn Source>>,
    opener: &mut Opener,
    mut backoff: Backoff,
    watchdog: Duration,
) {
    let spec = *writer.spec();
    // Never shorter than three frame periods (a slow rate is not a stall).
    let watchdog = watchdog.max(Duration::from_secs_f64(3.0 / spec.fps.as_f64().max(1e-3)));
    let mut opened_once = current.is_some();
    while !signals::stop_requested() {
        let mut source = match current.take() {
            Some(s) => s,
            None => {
                writer.set_source_state(source_state::OPENING);
                if opened_once {
                    writer.count(Counter::Restarts, 1);
                }
                opened_once = true;
                match opener(&spec) {
                    Ok(s) => s,
                    Err(e) => {
                        let delay = backoff.step();
                        tracing::warn!(error = %e, retry_in = ?delay, "source unavailable");
                        writer.set_source_state(source_state::RECONNECTING);
                        signals::sleep(delay);
                        continue;
                    }
                }
            }
        };
        writer.set_source_state(source_state::RUNNING);
        tracing::info!("source running");
        let mut last_frame = Instant::now();
        let mut delivered = false;
        let outcome = loop {
            if signals::stop_requested() {
                break None;
            }
            match source.pull(writer, TICK) {
                Ok(Pulled::Frame) => {
                    last_frame = Instant::now();
                    if !delivered {
                        delivered = true;
                        backoff.reset();
                    }
                }
                Ok(Pulled::Idle) => {
                    if last_frame.elapsed() >= watchdog {
                        break Some(Lost::Stalled);
                    }
                }
                Err(e) => break Some(Lost::Error(e)),
            }
        };
        drop(source);
        match outcome {
            None => break,
            Some(Lost::Stalled) => {
                writer.count(Counter::WatchdogFires, 1);
                writer.set_source_state(source_state::STALLED);
                tracing::warn!(after = ?watchdog, "watchdog: no frame, reopening the source");
            }
            Some(Lost::Error(e)) => {
                writer.set_source_state(source_state::RECONNECTING);
                let delay = backoff.step();
                tracing::warn!(error = %e, retry_in = ?delay, "source lost");
                signals::sleep(delay);
            }
        }
    }
}

enum Lost {
    Stalled,
    Error(SourceError),
}

/// Where device lock files go: the bus directory.
pub fn lock_dir() -> PathBuf {
    framebus::default_shm_dir()
}
