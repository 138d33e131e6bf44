//! One Opus encode of a camera's microphone (docs/audio.md): the PCM bus
//! `{cam}.audio` in, the Opus bus `{cam}.opus` out, which RTSP, WebRTC,
//! HLS and the recorder all read instead of encoding for themselves.
//!
//! * One 20 ms packet per 20 ms chunk, through libopus (ffmpeg-next), in
//!   order (`Reader::next_encoded`): every chunk is encoded, none skipped
//!   while the encoder keeps up.
//! * **pts** in 1/rate s counts samples: chunk `seq` of the PCM bus has
//!   pts `(seq - first) * 960`, so a chunk the device lost leaves its gap
//!   in the pts, and the packet's capture times (`mono_ns`,
//!   `realtime_ns`) are those of its chunk: the A/V sync of every output
//!   rests on them.
//! * The bus header carries the `OpusHead` (RFC 7845) libopus produced,
//!   the time base, and every packet is a keyframe (Opus packets decode on
//!   their own).
//! * Always on: it costs well under 1 % of a core, and a new viewer gets
//!   sound from its first packet. A producer that goes away is waited for;
//!   after it comes back the pts go on from where they were.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ff::format::{sample::Type as SampleType, Sample};
use ff::{codec, encoder, frame, ChannelLayout, Dictionary, Packet};
use ffmpeg_next as ff;
use framebus::contract::audio::OPUS_RATES;
use framebus::{
    CodecConfig, FrameFlags, FrameMeta, FrameSpec, PixelFormat, ReadError, Reader, ReaderOptions,
    Writer, WriterOptions,
};

/// Largest Opus packet: the Opus bus's slot.
pub const MAX_PACKET: usize = framebus::contract::audio::OPUS_MAX_PACKET;

/// libopus complexity unless told: 10, libopus's own default. 5 costs
/// about a fifth less CPU, 0 half (docs/audio.md, "CPU"), for a little
/// quality at the same bit rate.
pub const DEFAULT_COMPLEXITY: u8 = 10;

/// What the audio encoder does.
#[derive(Clone, Debug)]
pub struct OpusConfig {
    /// The PCM bus read (`cam0.audio`).
    pub bus: String,
    /// The Opus bus written (`cam0.opus`).
    pub out: String,
    /// Bits per second.
    pub bitrate: u64,
    /// libopus complexity, 0 (cheapest) to 10 (best, libopus's default):
    /// [`DEFAULT_COMPLEXITY`].
    pub complexity: u8,
    /// Shared-memory directory of both buses.
    pub shm_dir: Option<std::path::PathBuf>,
}

/// Why the audio encoder stops.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpusError {
    /// The PCM bus did not appear or could not be read.
    #[error("audio bus {bus:?}: {source}")]
    Input {
        /// Bus name.
        bus: String,
        /// Why.
        source: framebus::AttachError,
    },
    /// The input is not 16-bit PCM at an Opus rate.
    #[error("audio bus {bus:?}: {why}")]
    Format {
        /// Bus name.
        bus: String,
        /// What is wrong.
        why: String,
    },
    /// libopus did not open or failed.
    #[error("opus encoder: {0}")]
    Codec(String),
    /// The Opus bus could not be created.
    #[error(transparent)]
    Create(#[from] framebus::CreateError),
    /// Publishing failed for a reason other than a full ring.
    #[error(transparent)]
    Publish(#[from] framebus::PublishError),
}

/// libopus through libavcodec, 20 ms packets of 16-bit input.
pub struct OpusEncoder {
    enc: encoder::Audio,
    frame: frame::Audio,
    packet: Packet,
    /// Bytes of one input chunk.
    chunk_bytes: usize,
}

impl OpusEncoder {
    /// Open libopus for chunks of `spec` (s16le at an Opus rate, 20 ms).
    pub fn open(spec: &FrameSpec, bitrate: u64, complexity: u8) -> Result<OpusEncoder, String> {
        if spec.format != PixelFormat::S16le {
            return Err(format!("{} is not 16-bit PCM", spec.format));
        }
        if !OPUS_RATES.contains(&spec.sample_rate()) {
            return Err(format!(
                "Opus encodes 8000, 12000, 16000, 24000 or 48000 Hz, the bus has {} Hz (set audio_rate = 48000; ALSA's plughw/default resample)",
                spec.sample_rate()
            ));
        }
        if spec.channels() > 2 {
            return Err(format!(
                "{} channels: the Opus bus carries mono or stereo (set audio_channels)",
                spec.channels()
            ));
        }
        ff::init().map_err(|e| e.to_string())?;
        let codec = encoder::find_by_name("libopus")
            .ok_or("libopus is not built into this FFmpeg (Debian's libavcodec59 has it)")?;
        let mut ctx = codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(|e| e.to_string())?;
        let layout = ChannelLayout::default(spec.channels() as i32);
        ctx.set_rate(spec.sample_rate() as i32);
        ctx.set_channel_layout(layout);
        ctx.set_format(Sample::I16(SampleType::Packed));
        ctx.set_bit_rate(bitrate as usize);
        ctx.set_time_base(ff::Rational::new(1, spec.sample_rate() as i32));
        let mut opts = Dictionary::new();
        opts.set("frame_duration", "20");
        opts.set("application", "lowdelay");
        opts.set("compression_level", &complexity.min(10).to_string());
        let enc = ctx
            .open_as_with(codec, opts)
            .map_err(|e| format!("libopus did not open: {e}"))?;
        let samples = spec.chunk_samples() as usize;
        if enc.frame_size() as usize != samples {
            return Err(format!(
                "libopus wants {} samples per packet, the bus has {samples}",
                enc.frame_size()
            ));
        }
        Ok(OpusEncoder {
            enc,
            frame: frame::Audio::new(Sample::I16(SampleType::Packed), samples, layout),
            packet: Packet::empty(),
            chunk_bytes: spec.frame_size(),
        })
    }

    /// The `OpusHead` libopus wrote (RFC 7845 §5.1), for the bus header.
    pub fn head(&self) -> Vec<u8> {
        // SAFETY: `self.enc` is an opened encoder context; `extradata` is
        // null or `extradata_size` bytes owned by it, unchanged while we
        // copy under `&self`.
        unsafe {
            let ctx = self.enc.as_ptr();
            if (*ctx).extradata.is_null() || (*ctx).extradata_size <= 0 {
                return Vec::new();
            }
            std::slice::from_raw_parts((*ctx).extradata, (*ctx).extradata_size as usize).to_vec()
        }
    }

    /// Encode one chunk (s16le bytes) with `pts`; `emit` gets each packet
    /// that comes out (libopus gives one per chunk) with its pts.
    pub fn encode(
        &mut self,
        chunk: &[u8],
        pts: i64,
        mut emit: impl FnMut(&[u8], i64) -> Result<(), OpusError>,
    ) -> Result<(), OpusError> {
        let n = self.chunk_bytes.min(chunk.len());
        self.frame.data_mut(0)[..n].copy_from_slice(&chunk[..n]);
        self.frame.data_mut(0)[n..self.chunk_bytes].fill(0);
        self.frame.set_pts(Some(pts));
        self.enc
            .send_frame(&self.frame)
            .map_err(|e| OpusError::Codec(e.to_string()))?;
        while self.enc.receive_packet(&mut self.packet).is_ok() {
            if let Some(data) = self.packet.data() {
                emit(data, self.packet.pts().unwrap_or(pts))?;
            }
        }
        Ok(())
    }
}

/// The spec of the Opus bus made from PCM bus `pcm`.
pub fn opus_spec(pcm: &FrameSpec) -> Result<FrameSpec, framebus::SpecError> {
    FrameSpec::audio(
        PixelFormat::Opus,
        pcm.sample_rate(),
        pcm.channels(),
        pcm.chunk_samples(),
    )
}

/// Run until `stop` is set.
pub fn run(cfg: &OpusConfig, stop: &AtomicBool) -> Result<(), OpusError> {
    let input = |source| OpusError::Input {
        bus: cfg.bus.clone(),
        source,
    };
    let format = |why: String| OpusError::Format {
        bus: cfg.bus.clone(),
        why,
    };
    let mut reader = Reader::attach(
        &cfg.bus,
        ReaderOptions {
            wait: Some(Duration::from_secs(3600 * 24 * 365)),
            shm_dir: cfg.shm_dir.clone(),
        },
    )
    .map_err(input)?;
    let pcm = *reader.spec();
    let mut enc = OpusEncoder::open(&pcm, cfg.bitrate, cfg.complexity).map_err(format)?;
    let spec = opus_spec(&pcm).map_err(|e| format(e.to_string()))?;
    let mut writer = Writer::create(
        &cfg.out,
        spec,
        WriterOptions {
            slots: framebus::contract::audio::SLOTS,
            slot_capacity: Some(MAX_PACKET),
            shm_dir: cfg.shm_dir.clone(),
            source: format!("opus {} kbit/s of {}", cfg.bitrate / 1000, cfg.bus),
            ..WriterOptions::default()
        },
    )?;
    writer.set_codec(&CodecConfig {
        time_base: (1, pcm.sample_rate()),
        profile_level: 0,
        config: enc.head(),
    })?;
    writer.set_source_state(framebus::layout::source_state::RUNNING);
    tracing::info!(
        input = %cfg.bus,
        output = %cfg.out,
        rate = pcm.sample_rate(),
        channels = pcm.channels(),
        bitrate = cfg.bitrate,
        "encoding Opus"
    );
    let chunk = i64::from(pcm.chunk_samples());
    // pts = base + (seq - first) * chunk; a new producer continues after
    // the last pts.
    let mut first: Option<u64> = None;
    let mut base: i64 = 0;
    let mut next_pts: i64 = 0;
    // Capture times of the chunks sent and not yet out as packets.
    let mut pending: VecDeque<(i64, FrameMeta)> = VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.next_encoded(Some(Duration::from_millis(100))) {
            Ok(f) => {
                if *f.spec() != pcm {
                    return Err(format(format!(
                        "the producer came back with {:?}, the Opus bus is of {:?}",
                        f.spec(),
                        pcm
                    )));
                }
                writer.set_source_state(framebus::layout::source_state::RUNNING);
                let seq = f.seq();
                let first = *first.get_or_insert(seq);
                let pts = base + (seq - first) as i64 * chunk;
                next_pts = pts + chunk;
                pending.push_back((
                    pts,
                    FrameMeta {
                        mono_ns: f.mono_ns(),
                        realtime_ns: f.realtime_ns(),
                        flags: FrameFlags::KEY,
                        pts: 0,
                        source_seq: seq,
                    },
                ));
                enc.encode(&f, pts, |packet, pts| {
                    let meta = loop {
                        match pending.pop_front() {
                            Some((p, m)) if p >= pts => break Some(m),
                            Some(_) => continue,
                            None => break None,
                        }
                    };
                    let Some(mut meta) = meta else {
                        return Ok(());
                    };
                    meta.pts = pts.max(0) as u64;
                    match writer.publish_from(packet, meta) {
                        Ok(_) | Err(framebus::PublishError::AllSlotsHeld { .. }) => Ok(()),
                        Err(e) => Err(e.into()),
                    }
                })?;
            }
            Err(ReadError::Timeout { .. }) => {}
            Err(ReadError::ProducerGone { .. }) => {
                // The reader re-attaches by itself to the next producer;
                // its chunks continue the pts after the last.
                tracing::warn!(input = %cfg.bus, "audio producer gone; waiting for it");
                writer.set_source_state(framebus::layout::source_state::RECONNECTING);
                first = None;
                base = next_pts;
                pending.clear();
            }
            Err(e) => {
                tracing::warn!(input = %cfg.bus, error = %e, "reading the audio bus");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(())
}
