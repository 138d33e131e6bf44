//! A camera's microphone on the bus `<bus>.audio` (docs/audio.md): PCM
//! chunks of [`CHUNK_MS`] with the capture time of their first sample on
//! the same clocks as the video frames.
//!
//! The audio bus is fed by the same source loop as the picture
//! (`capture::source_loop`): a lost device is reopened with backoff, a
//! silent one by the watchdog, and the bus outlives both. Two sources:
//!
//! * [`AlsaSource`], `alsa:<device>` (`alsa:default`, `alsa:hw:1,0`,
//!   `alsa:plughw:1,0`), through the `alsa` crate. Xruns are counted in the
//!   bus's `source_dropped` and the chunk they broke is dropped.
//! * `ffmpeg:<url-or-file>`: the audio track of an IP camera or a file
//!   (`ffmpeg_audio.rs`).
//! * [`ToneSource`], `tone`: the audio test pattern. A 1 kHz beep of
//!   [`BEEP_MS`] starts at every whole second of CLOCK_REALTIME, the clock the
//!   test pattern's time code shows, so picture and sound can be lined up.

use std::time::Duration;

use alsa::pcm::{Access, Format, HwParams, State, PCM};
use alsa::{Direction, ValueOr};
use framebus::{Counter, FrameFlags, FrameMeta, FrameSpec, PixelFormat, Writer};

use crate::source::{note_publish_error, Native, Pulled, Source, SourceError};

/// Length of one chunk on the bus (and of one Opus packet downstream).
pub const CHUNK_MS: u32 = 20;
/// Length of the test tone's beep at each whole second.
pub const BEEP_MS: u64 = 100;
/// Frequency of the test tone's beep.
pub const BEEP_HZ: f64 = 1000.0;
/// Chunks the ALSA buffer holds (160 ms: room for a busy machine).
const BUFFER_CHUNKS: i64 = 8;

/// Parsed `--audio`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioKind {
    /// The beep at every whole second.
    Tone,
    /// An ALSA capture device.
    Alsa(String),
    /// The audio track of an FFmpeg input (an IP camera, a file).
    Ffmpeg(String),
}

impl AudioKind {
    /// Parse an `--audio` value.
    pub fn parse(s: &str) -> Option<AudioKind> {
        match s {
            "tone" => Some(AudioKind::Tone),
            _ => {
                if let Some(url) = s.strip_prefix("ffmpeg:") {
                    return (!url.is_empty()).then(|| AudioKind::Ffmpeg(url.to_string()));
                }
                s.strip_prefix("alsa:")
                    .filter(|d| !d.is_empty())
                    .map(|d| AudioKind::Alsa(d.to_string()))
            }
        }
    }
}

/// The spec of an audio bus: 16-bit PCM in [`CHUNK_MS`] chunks.
pub fn spec(rate: u32, channels: u32) -> Result<FrameSpec, String> {
    if !rate.is_multiple_of(1000 / CHUNK_MS) {
        return Err(format!(
            "audio rate {rate} Hz does not divide into {CHUNK_MS} ms chunks (use 8000, 16000, 32000, 44100 or 48000)"
        ));
    }
    FrameSpec::audio(PixelFormat::S16le, rate, channels, rate * CHUNK_MS / 1000)
        .map_err(|e| e.to_string())
}

fn native(spec: &FrameSpec) -> Native {
    Native {
        width: spec.width,
        height: spec.height,
        fps: Some(spec.fps),
    }
}

/// Peak and RMS of interleaved samples on the 16-bit scale.
pub fn level(samples: &[i16]) -> (u32, u32) {
    if samples.is_empty() {
        return (0, 0);
    }
    let mut peak = 0u32;
    let mut sum = 0f64;
    for &s in samples {
        peak = peak.max(u32::from(s.unsigned_abs()));
        sum += f64::from(s) * f64::from(s);
    }
    (peak, (sum / samples.len() as f64).sqrt().round() as u32)
}

/// Publish one chunk with the capture times of its first sample.
pub(crate) fn publish(writer: &mut Writer, samples: &[i16], mono_ns: u64, realtime_ns: u64) {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let meta = FrameMeta {
        mono_ns,
        realtime_ns,
        flags: FrameFlags::KEY,
        pts: 0,
        source_seq: 0,
    };
    match writer.publish_from(&bytes, meta) {
        Ok(_) => {
            let (peak, rms) = level(samples);
            writer.set_audio_level(peak, rms);
            writer.count(Counter::Captured, 1);
        }
        Err(e) => note_publish_error(e),
    }
}

/// Nanoseconds of `samples` samples at `rate`.
fn samples_ns(samples: u64, rate: u32) -> u64 {
    samples * 1_000_000_000 / u64::from(rate)
}

/// The audio test pattern: a beep at each whole second of the wall clock,
/// silence between, paced by CLOCK_MONOTONIC.
pub struct ToneSource {
    spec: FrameSpec,
    start_mono: u64,
    start_real: u64,
    /// Chunks published since the start.
    chunks: u64,
    buf: Vec<i16>,
}

impl ToneSource {
    /// A tone starting now.
    pub fn new(spec: FrameSpec) -> ToneSource {
        ToneSource {
            spec,
            start_mono: framebus::monotonic_ns(),
            start_real: framebus::realtime_ns(),
            chunks: 0,
            buf: Vec::new(),
        }
    }

    /// The samples of chunk `n` (pure: the tests compare it).
    pub fn chunk(&self, n: u64, out: &mut Vec<i16>) {
        let (rate, channels, len) = (
            self.spec.sample_rate(),
            self.spec.channels() as usize,
            u64::from(self.spec.chunk_samples()),
        );
        out.clear();
        for i in 0..len {
            let t = self.start_real + samples_ns(n * len + i, rate);
            let into_second = t % 1_000_000_000;
            let v = if into_second < BEEP_MS * 1_000_000 {
                let phase = into_second as f64 * 1e-9 * BEEP_HZ;
                (16384.0 * (std::f64::consts::TAU * phase).sin()) as i16
            } else {
                0
            };
            out.extend(std::iter::repeat_n(v, channels));
        }
    }
}

impl Source for ToneSource {
    fn native(&self) -> Native {
        native(&self.spec)
    }

    fn pull(&mut self, writer: &mut Writer, timeout: Duration) -> Result<Pulled, SourceError> {
        let (rate, len) = (
            self.spec.sample_rate(),
            u64::from(self.spec.chunk_samples()),
        );
        // Chunk n is complete when its last sample is due.
        let due = self.start_mono + samples_ns((self.chunks + 1) * len, rate);
        let now = framebus::monotonic_ns();
        if now < due {
            let wait = Duration::from_nanos(due - now);
            if wait > timeout {
                std::thread::sleep(timeout);
                return Ok(Pulled::Idle);
            }
            std::thread::sleep(wait);
        } else {
            // Far behind (the machine stalled): skip what is past, as a
            // device would overrun.
            let behind = (now - due) / samples_ns(len, rate);
            if behind > 2 * BUFFER_CHUNKS as u64 {
                self.chunks += behind;
                writer.count(Counter::SourceDropped, behind);
            }
        }
        let mut buf = std::mem::take(&mut self.buf);
        self.chunk(self.chunks, &mut buf);
        let offset = samples_ns(self.chunks * len, rate);
        publish(
            writer,
            &buf,
            self.start_mono + offset,
            self.start_real + offset,
        );
        self.buf = buf;
        self.chunks += 1;
        Ok(Pulled::Frame)
    }
}

/// Capture times of a device's chunks: counted in samples from an anchor
/// (so chunks are exactly their length apart, as the samples are), with
/// the anchor steered toward the measured times.
///
/// A measurement, `now - (ALSA delay + chunk) / rate` when a chunk is
/// complete, is never early but often late (the thread was scheduled late,
/// a plugin delivered a burst). So the anchor follows the *smallest* error
/// of each window of [`SampleClock::WINDOW`] chunks: fully for the first
/// few windows, then at most [`SampleClock::SLEW_NS`] per window, which
/// follows any real clock drift (tens of ppm) and ignores scheduling.
/// Errors beyond [`SampleClock::JUMP_NS`] (samples lost, a stall) re-anchor.
#[derive(Debug, Default)]
pub struct SampleClock {
    anchor: Option<(u64, u64)>,
    /// Samples counted since the anchor.
    counted: u64,
    window_min: i64,
    window_len: u32,
    windows: u32,
}

impl SampleClock {
    /// Chunks per window.
    pub const WINDOW: u32 = 25;
    /// Windows during which the anchor follows the measurements fully.
    const SETTLE_WINDOWS: u32 = 4;
    /// Largest step of the anchor per window once settled.
    pub const SLEW_NS: i64 = 1_000_000;
    /// An error that re-anchors at once.
    pub const JUMP_NS: i64 = 100_000_000;

    /// Start again at the next chunk (after an xrun or a reopen).
    pub fn reset(&mut self) {
        *self = SampleClock::default();
    }

    /// The capture times of a chunk of `samples` samples whose first one
    /// was measured at `(mono, real)`.
    pub fn stamp(&mut self, mono: u64, real: u64, samples: u64, rate: u32) -> (u64, u64) {
        let (am, ar) = *self.anchor.get_or_insert((mono, real));
        let at = samples_ns(self.counted, rate);
        let err = mono as i64 - (am + at) as i64;
        if err.abs() > Self::JUMP_NS {
            tracing::warn!(error_ms = err / 1_000_000, "audio clock re-anchored");
            self.reset();
            self.anchor = Some((mono, real));
            self.counted = samples;
            return (mono, real);
        }
        let stamped = (am + at, ar + at);
        self.window_min = if self.window_len == 0 {
            err
        } else {
            self.window_min.min(err)
        };
        self.window_len += 1;
        if self.window_len == Self::WINDOW {
            let step = if self.windows < Self::SETTLE_WINDOWS {
                self.window_min
            } else {
                self.window_min.clamp(-Self::SLEW_NS, Self::SLEW_NS)
            };
            self.anchor = Some((
                am.saturating_add_signed(step),
                ar.saturating_add_signed(step),
            ));
            self.windows += 1;
            self.window_len = 0;
        }
        self.counted += samples;
        stamped
    }
}

/// An ALSA capture device.
pub struct AlsaSource {
    pcm: PCM,
    what: String,
    spec: FrameSpec,
    /// Interleaved samples of the chunk being filled.
    buf: Vec<i16>,
    /// Frames (samples per channel) in `buf`.
    filled: usize,
    clock: SampleClock,
}

impl AlsaSource {
    /// Open `device` for capture in the format of `spec`.
    pub fn open(device: &str, spec: &FrameSpec) -> Result<AlsaSource, SourceError> {
        let what = format!("alsa:{device}");
        let err = |why: alsa::Error| {
            let why = why.to_string();
            match why.contains("No such file") || why.contains("No such device") {
                true => SourceError::NotFound {
                    what: what.clone(),
                    why,
                },
                false => SourceError::Lost {
                    what: what.clone(),
                    why,
                },
            }
        };
        let pcm = PCM::new(device, Direction::Capture, true).map_err(|e| {
            if e.errno() == libc::EBUSY {
                SourceError::Busy {
                    what: what.clone(),
                    pid: 0,
                }
            } else {
                err(e)
            }
        })?;
        let chunk = spec.chunk_samples();
        {
            let hw = HwParams::any(&pcm).map_err(err)?;
            let unsupported = |why: String| SourceError::Unsupported {
                what: what.clone(),
                why,
            };
            hw.set_access(Access::RWInterleaved).map_err(err)?;
            hw.set_format(Format::s16())
                .map_err(|e| unsupported(format!("no 16-bit samples ({e})")))?;
            hw.set_channels(spec.channels()).map_err(|e| {
                unsupported(format!(
                    "cannot capture {} channel(s) ({e}); try alsa:plughw:… or set audio_channels",
                    spec.channels()
                ))
            })?;
            hw.set_rate(spec.sample_rate(), ValueOr::Nearest)
                .map_err(err)?;
            let got = hw.get_rate().map_err(err)?;
            if got != spec.sample_rate() {
                return Err(unsupported(format!(
                    "the device captures at {got} Hz, not {} Hz; try alsa:plughw:… or set audio_rate = {got}",
                    spec.sample_rate()
                )));
            }
            hw.set_period_size_near(i64::from(chunk), ValueOr::Nearest)
                .map_err(err)?;
            hw.set_buffer_size_near(BUFFER_CHUNKS * i64::from(chunk))
                .map_err(err)?;
            pcm.hw_params(&hw).map_err(err)?;
        }
        pcm.start().map_err(err)?;
        let len = chunk as usize * spec.channels() as usize;
        Ok(AlsaSource {
            pcm,
            what,
            spec: *spec,
            buf: vec![0; len],
            filled: 0,
            clock: SampleClock::default(),
        })
    }

    fn lost(&self, why: impl ToString) -> SourceError {
        SourceError::Lost {
            what: self.what.clone(),
            why: why.to_string(),
        }
    }

    /// After an overrun: count it, drop the broken chunk, start again.
    fn xrun(&mut self, writer: &Writer) -> Result<(), SourceError> {
        writer.count(Counter::SourceDropped, 1);
        tracing::warn!(device = %self.what, "audio overrun (xrun): one chunk dropped");
        self.filled = 0;
        self.clock.reset();
        self.pcm.prepare().map_err(|e| self.lost(e))?;
        self.pcm.start().map_err(|e| self.lost(e))
    }
}

impl Source for AlsaSource {
    fn native(&self) -> Native {
        native(&self.spec)
    }

    fn pull(&mut self, writer: &mut Writer, timeout: Duration) -> Result<Pulled, SourceError> {
        let channels = self.spec.channels() as usize;
        let chunk = self.spec.chunk_samples() as usize;
        let ms = timeout.as_millis().clamp(1, 1000) as u32;
        match self.pcm.wait(Some(ms)) {
            Ok(true) => {}
            Ok(false) => return Ok(Pulled::Idle),
            Err(e) if e.errno() == libc::EPIPE => {
                self.xrun(writer)?;
                return Ok(Pulled::Idle);
            }
            Err(e) => return Err(self.lost(e)),
        }
        let read = match self.pcm.io_i16() {
            Ok(io) => io.readi(&mut self.buf[self.filled * channels..]),
            Err(e) => Err(e),
        };
        match read {
            Ok(n) => self.filled += n,
            Err(e) if e.errno() == libc::EAGAIN => return Ok(Pulled::Idle),
            Err(e) if e.errno() == libc::EPIPE => {
                self.xrun(writer)?;
                return Ok(Pulled::Idle);
            }
            Err(e) => return Err(self.lost(e)),
        }
        if matches!(self.pcm.state(), State::Disconnected) {
            return Err(self.lost("device disconnected"));
        }
        if self.filled < chunk {
            return Ok(Pulled::Idle);
        }
        // The newest sample read was captured `delay` frames ago; the
        // chunk's first one `chunk` frames before it.
        let delay = self.pcm.delay().unwrap_or(0).max(0) as u64;
        let back = samples_ns(delay + chunk as u64, self.spec.sample_rate());
        let (mono, real) = (framebus::monotonic_ns(), framebus::realtime_ns());
        let (mono, real) = self.clock.stamp(
            mono.saturating_sub(back),
            real.saturating_sub(back),
            chunk as u64,
            self.spec.sample_rate(),
        );
        publish(writer, &self.buf, mono, real);
        self.filled = 0;
        Ok(Pulled::Frame)
    }
}

/// How `--audio` (re)opens its source.
pub fn opener(kind: AudioKind) -> impl FnMut(&FrameSpec) -> Result<Box<dyn Source>, SourceError> {
    move |spec: &FrameSpec| -> Result<Box<dyn Source>, SourceError> {
        Ok(match &kind {
            AudioKind::Tone => Box::new(ToneSource::new(*spec)),
            AudioKind::Alsa(dev) => Box::new(AlsaSource::open(dev, spec)?),
            AudioKind::Ffmpeg(url) => Box::new(crate::ffmpeg_audio::FfmpegAudio::open(url, spec)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(AudioKind::parse("tone"), Some(AudioKind::Tone));
        assert_eq!(
            AudioKind::parse("alsa:hw:1,0"),
            Some(AudioKind::Alsa("hw:1,0".into()))
        );
        assert_eq!(AudioKind::parse("alsa:"), None);
        assert_eq!(
            AudioKind::parse("ffmpeg:rtsp://cam/1"),
            Some(AudioKind::Ffmpeg("rtsp://cam/1".into()))
        );
        assert_eq!(AudioKind::parse("ffmpeg:"), None);
        assert_eq!(AudioKind::parse("pulse"), None);
    }

    #[test]
    fn spec_is_twenty_ms_chunks() {
        let s = spec(48000, 2).unwrap();
        assert_eq!((s.chunk_samples(), s.frame_size()), (960, 960 * 4));
        assert_eq!(spec(44100, 1).unwrap().chunk_samples(), 882);
        assert!(spec(11025, 1).unwrap_err().contains("20 ms"));
        assert!(spec(48000, 9).is_err());
    }

    #[test]
    fn the_beep_starts_at_the_whole_second() {
        let s = spec(48000, 1).unwrap();
        let mut tone = ToneSource::new(s);
        // Start 10 ms before a whole second.
        tone.start_real = 5_000_000_000 - 10_000_000;
        let mut out = Vec::new();
        tone.chunk(0, &mut out);
        let first_loud = out.iter().position(|&v| v != 0).unwrap();
        // 480 samples of silence, then the beep (its first sample is sin 0).
        assert!((480..=481).contains(&first_loud), "{first_loud}");
        tone.chunk(5, &mut out); // 90..110 ms into the second
        assert!(out[..480].iter().any(|&v| v != 0));
        assert!(out[481..].iter().all(|&v| v == 0));
    }

    #[test]
    fn the_sample_clock_ignores_late_measurements_and_follows_drift() {
        let mut c = SampleClock::default();
        let t0 = 1_000_000_000u64;
        // Measurements late by 0..15 ms at random; the true first sample of
        // chunk n is t0 + 20 ms * n, on a device 50 ppm fast.
        let mut rng = 12345u64;
        let mut last = 0;
        for n in 0..2000u64 {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
            let late = (rng >> 33) % 15_000_000;
            let truth = t0 + n * 20_000_000 - n * 1000;
            let (m, _) = c.stamp(truth + late, truth + late, 960, 48000);
            // After settling (4 windows), chunks are 20 ms apart but for
            // the slew.
            if n > 100 {
                let step = m - last;
                assert!(
                    (19_000_000..=21_000_000).contains(&step),
                    "chunk {n}: {step}"
                );
            }
            last = m;
            if n > 500 {
                let err = m as i64 - truth as i64;
                assert!(err.abs() < 2_000_000, "chunk {n}: {err} ns off");
            }
        }
    }

    #[test]
    fn level_is_peak_and_rms() {
        assert_eq!(level(&[0, 0]), (0, 0));
        assert_eq!(level(&[i16::MIN, 0]), (32768, 23170));
        assert_eq!(level(&[1000, -1000]), (1000, 1000));
    }
}
