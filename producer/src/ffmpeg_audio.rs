//! `--audio ffmpeg:<url-or-file>`: the audio track of an IP camera
//! (RTSP), a stream or a file, through FFmpeg (ffmpeg-next), onto the
//! camera's audio bus (docs/audio.md).
//!
//! As for pictures (`ffmpeg_src.rs`), demuxing and decoding run on a
//! thread of their own and hand samples over a small channel. The decoded
//! audio is converted by swresample to the bus's rate, channels and 16-bit
//! samples, cut into 20 ms chunks and stamped by the same sample-counted
//! clock as ALSA capture ([`SampleClock`]): a chunk's capture time is
//! measured as "now minus the samples still waiting" and steered, so
//! chunks stay exactly 20 ms apart. A file is paced in real time and
//! looped; a live stream is taken as it comes (a burst is absorbed by the
//! clock, a gap longer than its jump limit re-anchors it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ff::format::{sample::Type as SampleType, Sample};
use ff::ChannelLayout;
use ffmpeg_next as ff;
use framebus::{FrameSpec, Writer};

use crate::audio::{publish, SampleClock};
use crate::ffmpeg_src::{classify, is_live, open_input};
use crate::source::{Native, Pulled, Source, SourceError};

enum Msg {
    Samples(Vec<i16>),
    End(SourceError),
}

/// The audio track of an FFmpeg input.
pub struct FfmpegAudio {
    spec: FrameSpec,
    rx: Receiver<Msg>,
    /// Interleaved samples not yet published.
    buf: Vec<i16>,
    clock: SampleClock,
    stop: Arc<AtomicBool>,
}

impl FfmpegAudio {
    /// Open `url`'s best audio stream for the bus of `spec`.
    pub fn open(url: &str, spec: &FrameSpec) -> Result<FfmpegAudio, SourceError> {
        ff::init().map_err(|e| SourceError::Missing {
            what: url.to_string(),
            why: format!("FFmpeg did not initialise: {e}"),
        })?;
        let (tx, rx) = mpsc::sync_channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (owned, stop, spec) = (url.to_string(), stop.clone(), *spec);
            std::thread::Builder::new()
                .name("ffmpeg-audio".into())
                .spawn(move || decode_loop(&owned, &spec, &tx, &stop))
                .map_err(|e| SourceError::Lost {
                    what: url.to_string(),
                    why: format!("cannot start the decoder thread: {e}"),
                })?;
        }
        // The first samples (or why there are none) within 10 s.
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Msg::Samples(s)) => Ok(FfmpegAudio {
                spec: *spec,
                rx,
                buf: s,
                clock: SampleClock::default(),
                stop,
            }),
            Ok(Msg::End(e)) => Err(e),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                Err(SourceError::Lost {
                    what: url.to_string(),
                    why: "no audio within 10 s".into(),
                })
            }
        }
    }
}

impl Drop for FfmpegAudio {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Source for FfmpegAudio {
    fn native(&self) -> Native {
        Native {
            width: self.spec.width,
            height: self.spec.height,
            fps: Some(self.spec.fps),
        }
    }

    fn pull(&mut self, writer: &mut Writer, timeout: Duration) -> Result<Pulled, SourceError> {
        let channels = self.spec.channels() as usize;
        let chunk = self.spec.chunk_samples() as usize * channels;
        if self.buf.len() < chunk {
            match self.rx.recv_timeout(timeout) {
                Ok(Msg::Samples(s)) => self.buf.extend_from_slice(&s),
                Ok(Msg::End(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => return Ok(Pulled::Idle),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(SourceError::Lost {
                        what: "ffmpeg audio".into(),
                        why: "the decoder thread ended".into(),
                    })
                }
            }
        }
        if self.buf.len() < chunk {
            return Ok(Pulled::Idle);
        }
        // The newest sample arrived now; the chunk's first one is
        // everything still buffered before it.
        let rate = self.spec.sample_rate();
        let back = (self.buf.len() / channels) as u64 * 1_000_000_000 / u64::from(rate);
        let (mono, real) = (framebus::monotonic_ns(), framebus::realtime_ns());
        let (mono, real) = self.clock.stamp(
            mono.saturating_sub(back),
            real.saturating_sub(back),
            self.spec.chunk_samples().into(),
            rate,
        );
        publish(writer, &self.buf[..chunk], mono, real);
        self.buf.drain(..chunk);
        Ok(Pulled::Frame)
    }
}

/// Demux, decode and resample until stopped; a file loops.
fn decode_loop(url: &str, spec: &FrameSpec, tx: &SyncSender<Msg>, stop: &AtomicBool) {
    let end = |e: SourceError| {
        let _ = tx.send(Msg::End(e));
    };
    let live = is_live(url);
    let rate = spec.sample_rate();
    let layout = ChannelLayout::default(spec.channels() as i32);
    while !stop.load(Ordering::Relaxed) {
        let mut input = match open_input(url) {
            Ok(i) => i,
            Err(e) => return end(classify(url, e)),
        };
        let Some(stream) = input.streams().best(ff::media::Type::Audio) else {
            return end(SourceError::Unsupported {
                what: url.to_string(),
                why: "no audio stream".into(),
            });
        };
        let index = stream.index();
        let decoder = ff::codec::context::Context::from_parameters(stream.parameters())
            .and_then(|c| c.decoder().audio());
        let mut decoder = match decoder {
            Ok(d) => d,
            Err(e) => {
                return end(SourceError::Missing {
                    what: url.to_string(),
                    why: format!("no decoder for the audio stream: {e}"),
                })
            }
        };
        let mut resampler: Option<ff::software::resampling::Context> = None;
        let mut decoded = ff::frame::Audio::empty();
        let started = Instant::now();
        let mut sent: u64 = 0;
        for (s, packet) in input.packets() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if s.index() != index || decoder.send_packet(&packet).is_err() {
                continue;
            }
            while decoder.receive_frame(&mut decoded).is_ok() {
                // A stream without a channel layout (a WAV file's mono or
                // stereo PCM) gets the default one for its channel count,
                // on the frame too: swresample refuses a frame whose layout
                // differs from the one it was set up with.
                if decoded.channel_layout().is_empty() {
                    decoded.set_channel_layout(ChannelLayout::default(decoded.channels() as i32));
                }
                if resampler.is_none() {
                    let src_layout = decoded.channel_layout();
                    match ff::software::resampling::Context::get(
                        decoded.format(),
                        src_layout,
                        decoded.rate(),
                        Sample::I16(SampleType::Packed),
                        layout,
                        rate,
                    ) {
                        Ok(r) => resampler = Some(r),
                        Err(e) => {
                            return end(SourceError::Unsupported {
                                what: url.to_string(),
                                why: format!("cannot convert its audio: {e}"),
                            })
                        }
                    }
                }
                let Some(r) = resampler.as_mut() else {
                    continue;
                };
                let mut out = ff::frame::Audio::empty();
                if let Err(e) = r.run(&decoded, &mut out) {
                    return end(SourceError::Unsupported {
                        what: url.to_string(),
                        why: format!("cannot convert its audio: {e}"),
                    });
                }
                let n = out.samples() * spec.channels() as usize;
                let samples: Vec<i16> = out.data(0)[..n * 2]
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                sent += out.samples() as u64;
                if !live {
                    // A file plays in real time.
                    let due =
                        started + Duration::from_nanos(sent * 1_000_000_000 / u64::from(rate));
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                if tx.send(Msg::Samples(samples)).is_err() {
                    return;
                }
            }
        }
        if live {
            return end(SourceError::Lost {
                what: url.to_string(),
                why: "end of stream".into(),
            });
        }
        // A file: from the start again.
    }
}
