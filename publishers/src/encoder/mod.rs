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
//!   after a gap). Any keyframe published (the first of a session, a
//!   scheduled or a forced one) answers every request counted before it
//!   (the counter is sampled right after publishing it). A request not
//!   answered yet forces an IDR on the next frame encoded, at most one
//!   forced IDR per `min_forced_interval`; only forced IDRs count for that
//!   limit (a scheduled keyframe never delays a forced one).
//! * **Frames and pts on the output grid.** Raw frames are picked, and
//!   their pts given, by [`clock::FrameClock`]: pts lie on the 1/fps grid,
//!   so every reader sees strictly increasing pts at least one frame
//!   interval apart (a whole number of intervals), even when the camera
//!   drops frames or runs faster than the profile.
//! * **Every access unit** carries `pts` (90 kHz, the grid time), the
//!   keyframe flag, the raw frame's sequence number and its capture times
//!   (the raw frame's own, not the grid's), so the time code measures
//!   glass to glass through the encoded bus.
//! * **An access unit larger than a slot** is refused by the core, counted
//!   (`oversize`), and answered with a forced IDR: the readers restart
//!   cleanly at it instead of decoding a truncated frame.
//! * **Slots** hold the largest access unit the rate control allows
//!   ([`framebus::contract::encoder::slot_capacity`]).
//! * **GOP in the ring.** The bus has `min(gop + 4, 64)` slots, so a joiner
//!   starts at once from the newest keyframe in the ring.
//!
//! * **Load adaptation.** When encoding falls behind the frame interval
//!   the output steps down (fps, then bit rate) and back up when the load
//!   goes; the step is in the encoded bus's header ([`adapt`]).
//!
//! The encoder is [`codec::H264Encoder`] (x264, or a hardware encoder
//! that opens). It reads the raw frame in place in shared memory and
//! each access unit is written straight into a loaned slot of the encoded
//! bus (see `codec.rs` for the copies that remain).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use framebus::{
    CodecConfig, Counter, FrameFlags, FrameMeta, FrameSpec, PixelFormat, PublishError, ReadError,
    Reader, ReaderOptions, Writer, WriterOptions,
};

use crate::h264::join_annex_b;
use clock::FrameClock;

pub mod adapt;
pub mod clock;
pub mod codec;
pub mod opus;
pub mod profile;

pub use codec::{
    AuView, CodecOptions, EncodeError, EncodeSettings, EncodedAu, EncoderKind, H264Encoder,
};
pub use profile::{H264Profile, Profile};

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

/// The default name of the encoded bus of `bus` and `profile`
/// (`framebus::contract::encoder`).
pub fn encoded_bus_name(bus: &str, profile: &str) -> String {
    framebus::contract::encoder::bus_name(bus, profile)
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
        gop: profile
            .gop
            .unwrap_or_else(|| framebus::contract::encoder::default_gop(fps))
            .max(1),
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
    // Opened once, before the bus exists (its description names the
    // encoder): an open encoder fed no frames costs nothing, and the first
    // reader then gets its IDR within a frame interval instead of after
    // the encoder's start-up.
    let mut enc = H264Encoder::open_with(
        src,
        set,
        CodecOptions {
            profile: Some(cfg.profile.h264),
            slice_bytes: Some(cfg.profile.slice_bytes),
        },
    )?;
    let opts = WriterOptions {
        slots: framebus::contract::encoder::slots(set.gop),
        max_held: 2,
        slot_capacity: Some(framebus::contract::encoder::slot_capacity(
            set.width,
            set.height,
            set.bitrate,
        )),
        shm_dir: cfg.shm_dir.clone(),
        // `framebus ls/stat` show it: which encoder, and an `auto`
        // fallback with what did not open.
        source: format!(
            "h264 {} of {} by {}",
            cfg.profile.name,
            cfg.bus,
            enc.description()
        ),
        ..WriterOptions::default()
    };
    let mut out = Writer::create(&cfg.out, spec, opts)?;
    out.set_source_state(framebus::layout::source_state::OPENING);
    let (sps, pps) = enc.parameter_sets();
    out.set_codec(&CodecConfig {
        time_base: (1, 90_000),
        profile_level: profile_level(sps),
        config: join_annex_b([sps, pps]),
    })?;
    // The stream's rate and bit rate are in the header from the start, so
    // that outputs can rank profiles before anyone reads (WebRTC's ladder).
    out.set_encoder_step(0, set.fps * 1000, set.bitrate);
    tracing::info!(raw = %cfg.bus, out = %cfg.out, encoder = enc.name(), width = set.width,
        height = set.height, fps = set.fps, bitrate = set.bitrate, gop = set.gop, "encoded bus ready");
    // Ready; nothing is published until a reader comes (`framebus status`
    // counts an idle bus as healthy, an `opening` one not).
    out.set_source_state(framebus::layout::source_state::IDLE);

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
        out.set_source_state(framebus::layout::source_state::IDLE);
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
    // Frame selection and pts on the 1/fps grid (clock.rs).
    let mut clock = FrameClock::new(set.fps);
    let mut first_ns = None::<u64>;
    // Load adaptation (adapt.rs): steps the grid's rate and x264's bit rate.
    let raw_fps = raw.spec().fps.as_f64();
    let mut adapt =
        adapt::Adapter::start(set.fps, set.bitrate, raw_fps, cfg.adapt, enc, out, &cfg.out);
    let mut honoured = out.keyframe_requests();
    let mut last_forced: Option<Instant> = None;
    // A keyframe at least every GOP's worth of *time*: when load
    // adaptation lowers the rate, a GOP of `gop` frames stretches (at a
    // third of the rate, three times as long), and every segmenter (LL-HLS
    // parts and segments, the recorder) can only cut at keyframes.
    let gop_ticks = i64::from(set.gop) * 90_000 / i64::from(set.fps.max(1));
    let mut last_key_pts: Option<i64> = None;
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
        let Some(grid_ns) = clock.place(frame.mono_ns()) else {
            continue;
        };
        // Keyframe requests not yet answered by a published keyframe:
        // forced on this frame, forced IDRs rate limited (a request inside
        // the limit waits for the next frame after it). Only forced IDRs
        // count for the limit; `honoured` moves whenever any keyframe is
        // published (below).
        if out.keyframe_requests() != honoured
            && last_forced.is_none_or(|t| t.elapsed() >= cfg.min_forced_interval)
        {
            force = true;
        }
        let pts = pts_90k(*first_ns.get_or_insert(grid_ns), grid_ns);
        let forced = std::mem::take(&mut force);
        let scheduled = last_key_pts.is_some_and(|k| pts >= k + gop_ticks);
        let started = framebus::monotonic_ns();
        if forced {
            last_forced = Some(Instant::now());
            out.count(Counter::KeyframesForced, 1);
        }
        enc.encode_each(&frame, pts, forced || scheduled, |au| {
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
            match publish_au(out, &au, meta) {
                // Any keyframe published (scheduled, first or forced)
                // answers every request counted before it: a joiner that
                // asked before it was out starts from it.
                Ok(_) if au.key => {
                    honoured = out.keyframe_requests();
                    last_key_pts = Some(au.pts);
                }
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
                Err(e) => return Err(EncodeBusError::from(e)),
            }
            Ok(())
        })?;
        adapt.after_encode(&frame, started, &mut clock, enc, out);
    }
    Ok(())
}

/// Writes `au` straight into a loaned slot of `out` and publishes it (one
/// copy, from the encoder's packet into shared memory). An access unit
/// larger than a slot is refused (and counted) by the core.
fn publish_au(out: &mut Writer, au: &AuView<'_>, meta: FrameMeta) -> Result<u64, PublishError> {
    let mut loan = out.loan()?;
    loan.set_len(au.len())?;
    au.write_to(&mut loan);
    Ok(loan.publish(meta))
}

/// The 90 kHz pts of grid time `grid_ns`, measured from the session's
/// first grid time `first_ns` and rounded: the grid's offsets
/// (`floor(k * 1e9 / fps)` ns) then give exactly `k * 90000 / fps` ticks
/// whenever that is whole (every fps dividing 90000), so consecutive pts
/// are never less than one interval apart through rounding.
fn pts_90k(first_ns: u64, grid_ns: u64) -> i64 {
    let base = u128::from(first_ns) * 9 / 100_000;
    let since = u128::from(grid_ns.saturating_sub(first_ns));
    (base + (since * 9 + 50_000) / 100_000) as i64
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

#[cfg(test)]
mod tests {
    use super::{clock::FrameClock, pts_90k};

    #[test]
    fn grid_pts_are_whole_intervals() {
        for fps in [15u32, 24, 25, 30, 50, 60] {
            let mut c = FrameClock::new(fps);
            let first = 123_456_789_012u64;
            let mut last = None;
            for i in 0..(fps as u64 * 20) {
                // Capture jitter of up to 3 ms around the nominal times.
                let t = first + i * 1_000_000_000 / u64::from(fps) + (i % 4) * 1_000_000;
                let Some(g) = c.place(t) else { continue };
                let pts = pts_90k(first, g);
                if let Some(prev) = last {
                    assert_eq!(pts - prev, 90_000 / i64::from(fps), "fps {fps} frame {i}");
                }
                last = Some(pts);
            }
        }
    }
}
