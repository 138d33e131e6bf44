//! `framebus-encoder`: encodes one raw bus with one profile into an encoded
//! bus (`{bus}.h264.{profile}`) that RTSP, WebRTC, HLS, recorders and
//! Python read instead of encoding again (`framebus_publishers::encoder`).
//!
//! Run with: `framebus-encoder --bus cam0 --profile high=1280x720@30,bitrate=2M,gop=60`
//! (`framebus-encoder --list`: which H.264 encoders open here, and why not).
//! A microphone: `framebus-encoder --bus cam0.audio --opus` writes
//! `cam0.opus` (`framebus_publishers::encoder::opus`, docs/audio.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use framebus_publishers::common::cli::{failure, init_logging, parse_args};
use framebus_publishers::common::shutdown::StopSignals;
use framebus_publishers::encoder::{self, EncodeConfig, EncoderKind, Profile};

const PROGRAM: &str = "framebus-encoder";

/// Encode a raw bus into an H.264 encoded bus, on demand.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The raw bus to encode.
    #[arg(long, default_value = "cam0")]
    bus: String,
    /// `NAME=WxH|native[@FPS][,bitrate=4M][,gop=N][,h264=baseline|main|high][,slice=BYTES]`
    /// (GOP: 2 s worth; h264: main; slice: 32000 bytes).
    #[arg(long, default_value = "high=1920x1080@30,bitrate=4M")]
    profile: Profile,
    /// The encoded bus to write (default `{bus}.h264.{profile}`).
    #[arg(long)]
    out: Option<String>,
    /// H.264 encoder.
    #[arg(long, value_enum, default_value = "auto")]
    encoder: EncoderKind,
    /// Seconds encoding goes on after the encoded bus's last reader left.
    #[arg(long, default_value_t = 2.0)]
    grace: f64,
    /// Shortest time between two forced keyframes, milliseconds.
    #[arg(long, default_value_t = 250)]
    min_forced_interval_ms: u64,
    /// Shared-memory directory (default: $FRAMEBUS_SHM_DIR or /dev/shm).
    #[arg(long)]
    shm_dir: Option<PathBuf>,
    /// Try every H.264 encoder (opening it at 320x240) and print one line
    /// each: name, OK or why not; exit 0 if any opened.
    #[arg(long)]
    list: bool,
    /// Keep the profile's rate and bit rate even when encoding falls
    /// behind (no load adaptation).
    #[arg(long)]
    no_adapt: bool,
    /// Encode the PCM bus `--bus` (`cam0.audio`) to Opus, into `--out`
    /// (default `cam0.opus`), instead of H.264.
    #[arg(long)]
    opus: bool,
    /// Opus bit rate, bits per second.
    #[arg(long, default_value_t = 64_000)]
    opus_bitrate: u64,
    /// libopus complexity: 0 (cheapest) to 10 (best).
    #[arg(long, default_value_t = encoder::opus::DEFAULT_COMPLEXITY,
          value_parser = clap::value_parser!(u8).range(0..=10))]
    opus_complexity: u8,
}

/// `--list`: one line per encoder, in the order `--encoder auto` tries
/// them.
fn list() -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut any = false;
    for kind in EncoderKind::ALL {
        let name = kind.ffmpeg_name();
        let line = match encoder::codec::probe(kind) {
            Ok(()) => {
                any = true;
                writeln!(out, "{name:<14} OK")
            }
            Err(why) => writeln!(out, "{name:<14} unavailable: {why}"),
        };
        if line.is_err() {
            // Nobody reads any more (`| head -1`): stop quietly.
            return ExitCode::FAILURE;
        }
    }
    if any {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `--opus`: one Opus encode of a microphone's PCM bus.
fn opus(args: Args) -> ExitCode {
    let out = match args.out {
        Some(o) => o,
        None => match framebus::contract::audio::camera(&args.bus) {
            Some(cam) => framebus::contract::audio::opus_bus(cam),
            None => {
                return failure(
                    PROGRAM,
                    format!(
                        "--opus: {:?} is not a microphone's bus (<camera>.audio); give --out",
                        args.bus
                    ),
                )
            }
        },
    };
    let cfg = encoder::opus::OpusConfig {
        bus: args.bus,
        out,
        bitrate: args.opus_bitrate,
        complexity: args.opus_complexity,
        shm_dir: args.shm_dir,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let worker = std::thread::spawn(move || encoder::opus::run(&cfg, &flag));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failure(PROGRAM, format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async {
        let mut signals = match StopSignals::install() {
            Ok(s) => s,
            Err(e) => return failure(PROGRAM, e),
        };
        let done = tokio::task::spawn_blocking(move || worker.join());
        tokio::pin!(done);
        let result = tokio::select! {
            which = signals.recv() => {
                tracing::info!(signal = %which, "stopping");
                stop.store(true, Ordering::Relaxed);
                done.await
            }
            r = &mut done => r,
        };
        match result {
            Ok(Ok(Ok(()))) => ExitCode::SUCCESS,
            Ok(Ok(Err(e))) => failure(PROGRAM, e),
            _ => failure(PROGRAM, "the Opus encoder thread panicked"),
        }
    })
}

fn main() -> ExitCode {
    init_logging();
    let args: Args = parse_args();
    ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Warning);
    if args.list {
        return list();
    }
    if args.opus {
        return opus(args);
    }
    let cfg = EncodeConfig {
        out: args
            .out
            .unwrap_or_else(|| encoder::encoded_bus_name(&args.bus, &args.profile.name)),
        bus: args.bus,
        profile: args.profile,
        encoder: args.encoder,
        grace: Duration::from_secs_f64(args.grace.max(0.0)),
        min_forced_interval: Duration::from_millis(args.min_forced_interval_ms),
        shm_dir: args.shm_dir,
        adapt: !args.no_adapt,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failure(PROGRAM, format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async {
        let mut signals = match StopSignals::install() {
            Ok(s) => s,
            Err(e) => return failure(PROGRAM, e),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let worker = encoder::spawn(cfg, stop.clone());
        let done = tokio::task::spawn_blocking(move || worker.join());
        tokio::pin!(done);
        tokio::select! {
            which = signals.recv() => {
                tracing::info!(signal = %which, "stopping");
                stop.store(true, Ordering::Relaxed);
                match done.await {
                    Ok(Ok(Ok(()))) => ExitCode::SUCCESS,
                    Ok(Ok(Err(e))) => failure(PROGRAM, e),
                    _ => failure(PROGRAM, "the encoder thread panicked"),
                }
            }
            r = &mut done => match r {
                Ok(Ok(Ok(()))) => ExitCode::SUCCESS,
                Ok(Ok(Err(e))) => failure(PROGRAM, e),
                _ => failure(PROGRAM, "the encoder thread panicked"),
            },
        }
    })
}
