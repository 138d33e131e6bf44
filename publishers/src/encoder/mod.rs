//! `framebus-encoder`: one H.264 encoder per (bus, profile), writing access
//! units into an encoded bus (`{bus}.h264.{profile}`) that every network
//! output and Python can read, instead of each encoding for itself.
//!
//! * **On demand.** The encoded bus exists as long as the process runs
//!   (readers can attach at any time), but the raw bus is read and frames
//!   are encoded only while the encoded bus has readers, and for `grace`
//!   after the last leaves. The first frame after that is an IDR.
//! * **Keyframe requests travel upstream.** Readers add to the bus's
//!   keyframe-request counter (`Reader::request_keyframe`, or by themselves
//!   after a gap); the encoder forces an IDR on the next frame it encodes,
//!   at most one forced IDR per `min_forced_interval` (scheduled keyframes
//!   are never delayed by that limit).
//! * **Every access unit** carries `pts` (90 kHz), the keyframe flag, the
//!   raw frame's sequence number and its capture times, so the time code
//!   measures glass to glass through the encoded bus.
//! * **An access unit larger than a slot** is refused by the core, counted
//!   (`oversize`), and answered with a forced IDR: the readers restart
//!   cleanly at it instead of decoding a truncated frame.
//! * **GOP in the ring.** The bus has `min(gop + 4, 64)` slots, so a joiner
//!   starts at once from the newest keyframe in the ring.
//!
//! * **Load adaptation.** When encoding falls behind the frame interval
//!   the output steps down (fps, then bit rate) and back up when the load
//!   goes; the step is in the encoded bus's header ([`adapt`]).
//!
//! The encoder is [`codec::H264Encoder`] (x264, or a hardware encoder
//! that opens).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use framebus::{
    CodecConfig, Counter, FrameFlags, FrameMeta, FrameSpec, PixelFormat, PublishError, ReadError,
    Reader, ReaderOptions, Writer, WriterOptions,
};

use crate::common::rate::RateLimiter;
use crate::h264::join_annex_b;

pub mod adapt;
pub mod clock;
pub mod codec;
pub mod profile;

pub use codec::{EncodeError, EncodeSettings, EncoderKind, H264Encoder};
pub use profile::Profile;

/// What one encoder process does.
#[derive(Clone, Debug)]
pub struct EncodeConfig {
    /// The raw bus read.
    pub bus: String,
    /// Size, rate, bit rate and GOP of the output.
    pub profile: Profile,
    /// The encoded bus written.
    pub out: String,
    /// Which H.264 encoder.
    pub encoder: EncoderKind,
    /// How long encoding goes on after the last reader left.
    pub grace: Duration,
    /// Shortest time between two forced IDRs.
    pub min_forced_interval: Duration,
    /// Shared-memory directory of both buses.
    pub shm_dir: Option<std::path::PathBuf>,
    /// Step down (fps, then bit rate) when encoding falls behind, and back
    /// up when the load goes ([`adapt`]).
    pub adapt: bool,
}

/// Why the encoder process stops.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeBusError {
    /// The raw bus did not appear or could not be read.
    #[error("raw bus {bus:?}: {source}")]
    Raw {
        /// Bus name.
        bus: String,
        /// Why.
        source: framebus::AttachError,
    },
    /// The raw bus has a compressed format.
    #[error("raw bus {bus:?} is {format}: the encoder reads raw frames")]
    Compressed {
        /// Bus name.
        bus: String,
        /// Its format.
        format: PixelFormat,
    },
    /// The encoded bus could not be created.
    #[error(transparent)]
    Create(#[from] framebus::CreateError),
    /// The encoded bus's spec is not valid.
    #[error("encoded bus {bus:?}: {source}")]
    Spec {
        /// Bus name.
        bus: String,
        /// Why.
        source: framebus::SpecError,
    },
    /// No encoder opened, or encoding failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Publishing failed for a reason other than a full ring.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// The default name of the encoded bus of `bus` and `profile`.
pub fn encoded_bus_name(bus: &str, profile: &str) -> String {
    format!("{bus}.h264.{profile}")
}

/// The output geometry of `profile` on a raw bus of `src`.
fn settings(profile: &Profile, src: &FrameSpec, kind: EncoderKind) -> EncodeSettings {
    let (width, height) = profile.size.unwrap_or((src.width, src.height));
    let src_fps = src.fps.as_f64().round().max(1.0) as u32;
    let fps = profile.fps.map_or(src_fps, |f| f.min(src_fps)).max(1);
    EncodeSettings {
        width,
        height,
        fps,
        bitrate: profile.bitrate,
        gop: profile.gop.unwrap_or(fps * 2).max(1),
        encoder: kind,
    }
}

/// `profile_idc << 16 | constraint_flags << 8 | level_idc` from an SPS NAL
/// (header byte first).
fn profile_level(sps: &[u8]) -> u32 {
    match sps {
        [_, p, c, l, ..] => u32::from(*p) << 16 | u32::from(*c) << 8 | u32::from(*l),
        _ => 0,
    }
}

/// Run until `stop` is set.
pub fn run(cfg: &EncodeConfig, stop: &AtomicBool) -> Result<(), EncodeBusError> {
    let raw_opts = ReaderOptions {
        wait: Some(Duration::from_secs(3600 * 24 * 365)),
        shm_dir: cfg.shm_dir.clone(),
    };
    // The raw bus's format and size fix the encoded bus's.
    let probe =
        Reader::attach(&cfg.bus, raw_opts.clone()).map_err(|source| EncodeBusError::Raw {
            bus: cfg.bus.clone(),
            source,
        })?;
    let src = *probe.spec();
    drop(probe);
    if src.format.is_compressed() {
        return Err(EncodeBusError::Compressed {
            bus: cfg.bus.clone(),
            format: src.format,
        });
    }
    let set = settings(&cfg.profile, &src, cfg.encoder);
    let spec = FrameSpec::new(
        PixelFormat::H264,
        set.width,
        set.height,
        framebus::Fps::new(set.fps),
    )
    .map_err(|source| EncodeBusError::Spec {
        bus: cfg.out.clone(),
        source,
    })?;
    let pixels = set.width as usize * set.height as usize;
    let opts = WriterOptions {
        slots: (set.gop + 4).clamp(8, framebus::layout::MAX_SLOTS),
        max_held: 2,
        slot_capacity: Some((pixels / 2).clamp(256 * 1024, 8 << 20)),
        shm_dir: cfg.shm_dir.clone(),
        source: format!("h264 {} of {}", cfg.profile.name, cfg.bus),
        ..WriterOptions::default()
    };
    let mut out = Writer::create(&cfg.out, spec, opts)?;
    out.set_source_state(framebus::layout::source_state::OPENING);
    // Opened once: an open encoder fed no frames costs nothing, and the
    // first reader then gets its IDR within a frame interval instead of
    // after the encoder's start-up (probing hardware encoders takes ~0.2 s).
    let mut enc = H264Encoder::open(src, set)?;
    let (sps, pps) = enc.parameter_sets();
    out.set_codec(&CodecConfig {
        time_base: (1, 90_000),
        profile_level: profile_level(sps),
        config: join_annex_b([sps, pps]),
    })?;
    tracing::info!(raw = %cfg.bus, out = %cfg.out, encoder = enc.name(), width = set.width,
        height = set.height, fps = set.fps, bitrate = set.bitrate, gop = set.gop, "encoded bus ready");

    let mut last_reader = None::<Instant>;
    while !stop.load(Ordering::Relaxed) {
        // Idle: no encoding work at all while nobody reads. (Nothing is
        // published, so the writer's own sweep does not run: free the
        // entries of readers that died here.)
        out.reclaim_dead_readers();
        if out.readers() == 0 && last_reader.is_none_or(|t| t.elapsed() > cfg.grace) {
            last_reader = None;
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        last_reader = Some(Instant::now());
        encode_while_read(cfg, &raw_opts, set, &mut enc, &mut out, stop)?;
    }
    Ok(())
}

/// Encode from the raw bus while the encoded bus has readers (and for the
/// grace time after), starting with an IDR.
fn encode_while_read(
    cfg: &EncodeConfig,
    raw_opts: &ReaderOptions,
    set: EncodeSettings,
    enc: &mut H264Encoder,
    out: &mut Writer,
    stop: &AtomicBool,
) -> Result<(), EncodeBusError> {
    let mut raw =
        Reader::attach(&cfg.bus, raw_opts.clone()).map_err(|source| EncodeBusError::Raw {
            bus: cfg.bus.clone(),
            source,
        })?;
    out.set_source_state(framebus::layout::source_state::RUNNING);
    tracing::info!(encoder = enc.name(), out = %cfg.out, "encoding");
    let mut rate = RateLimiter::new(f64::from(set.fps));
    let raw_fps = raw.spec().fps.as_f64();
    let mut adapt =
        adapt::Adapter::start(set.fps, set.bitrate, raw_fps, cfg.adapt, enc, out, &cfg.out);
    let mut honoured = out.keyframe_requests();
    let mut last_forced: Option<Instant> = None;
    let mut force = true; // the first frame a new reader gets is an IDR
    let mut idle_since: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if out.readers() == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() > cfg.grace {
                tracing::info!(out = %cfg.out, "no readers: encoding stops");
                out.set_source_state(framebus::layout::source_state::OPENING);
                // A later joiner must not start from this stale GOP.
                out.discard()?;
                return Ok(());
            }
        } else {
            idle_since = None;
        }
        let frame = match raw.next(Some(Duration::from_millis(100))) {
            Ok(f) => f,
            Err(ReadError::Timeout { .. }) => continue,
            Err(ReadError::ProducerGone { .. }) => {
                tracing::warn!(raw = %cfg.bus, "raw bus producer gone; waiting for it");
                out.set_source_state(framebus::layout::source_state::RECONNECTING);
                force = true;
                continue;
            }
            Err(e) => {
                tracing::warn!(raw = %cfg.bus, error = %e, "reading the raw bus");
                continue;
            }
        };
        out.set_source_state(framebus::layout::source_state::RUNNING);
        if !rate.accept(frame.mono_ns()) {
            continue;
        }
        // Keyframe requests: honoured on this frame, forced IDRs rate
        // limited (a request inside the limit waits for the next frame
        // after it; a scheduled keyframe resets nothing).
        let requests = out.keyframe_requests();
        if requests != honoured
            && last_forced.is_none_or(|t| t.elapsed() >= cfg.min_forced_interval)
        {
            honoured = requests;
            force = true;
        }
        let pts = (frame.mono_ns() as i128 * 9 / 100_000) as i64;
        let started = framebus::monotonic_ns();
        let aus = enc.encode(&frame, pts, force)?;
        adapt.after_encode(&frame, started, &mut rate, enc, out);
        if force {
            last_forced = Some(Instant::now());
            out.count(Counter::KeyframesForced, 1);
            force = false;
        }
        for au in aus {
            let meta = FrameMeta {
                mono_ns: frame.mono_ns(),
                realtime_ns: frame.realtime_ns(),
                flags: if au.key {
                    FrameFlags::KEY
                } else {
                    FrameFlags(0)
                },
                pts: au.pts.max(0) as u64,
                source_seq: frame.seq(),
            };
            match out.publish_from(&au.data, meta) {
                Ok(_) => {}
                Err(PublishError::TooLarge { len, capacity, .. }) => {
                    // Counted by the core; the readers restart at an IDR.
                    tracing::warn!(
                        len,
                        capacity,
                        "access unit larger than a slot: dropped, forcing an IDR"
                    );
                    force = true;
                }
                Err(PublishError::AllSlotsHeld { .. }) => {
                    // Readers hold the whole ring: this AU is lost for them,
                    // so the next one must be an IDR they can restart at.
                    force = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Run the encoder on a thread until `stop` is set; for the binary.
pub fn spawn(
    cfg: EncodeConfig,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(), EncodeBusError>> {
    std::thread::Builder::new()
        .name(format!("encode-{}", cfg.out))
        .spawn(move || run(&cfg, &stop))
        .expect("spawn the encoder thread")
}
