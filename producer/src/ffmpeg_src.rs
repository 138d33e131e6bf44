//! `ffmpeg:<url-or-file>`: IP cameras (RTSP, HTTP MJPEG) and files, through
//! FFmpeg (ffmpeg-next).
//!
//! Demuxing and decoding run on a thread of their own, so a network read
//! that blocks never stalls the run loop (stop, watchdog). Decoded frames
//! cross a channel of two; the run loop converts each one with swscale
//! straight into a loaned slot. Files are paced at their frame rate with
//! absolute deadlines and looped by reopening the path at EOF (so a file
//! that is replaced is picked up and one that is removed counts as lost);
//! live streams are delivered as they come, dropping (and counting) frames
//! when the run loop falls behind.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use ffmpeg_next as ff;
use framebus::{Counter, Fps, FrameMeta, Writer};

use crate::convert::{Scaler, SrcPicture};
use crate::pacing::{Due, Pacer};
use crate::source::{note_publish_error, Native, Pulled, Source, SourceError};

enum Msg {
    Opened(Native),
    Frame(ff::frame::Video),
    End(SourceError),
}

/// An FFmpeg input.
pub struct FfmpegSource {
    native: Native,
    rx: Receiver<Msg>,
    pending: Option<ff::frame::Video>,
    pacer: Option<Pacer>,
    scaler: Scaler,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// Whether `url` is a live network stream rather than a file.
pub(crate) fn is_live(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| !matches!(scheme, "file"))
}

impl FfmpegSource {
    /// Open `url`, waiting up to `open_timeout` for its first stream info.
    /// `pace` overrides the file's own rate (ignored for live streams).
    pub fn open(url: &str, pace: Option<Fps>, open_timeout: Duration) -> Result<Self, SourceError> {
        ff::init().map_err(|e| SourceError::Missing {
            what: url.to_string(),
            why: format!("FFmpeg did not initialise: {e}"),
        })?;
        let live = is_live(url);
        let (tx, rx) = mpsc::sync_channel(2);
        let dropped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (owned, dropped, stop) = (url.to_string(), dropped.clone(), stop.clone());
            std::thread::Builder::new()
                .name("ffmpeg-decode".into())
                .spawn(move || decode_loop(&owned, live, &tx, &dropped, &stop))
                .map_err(|e| SourceError::Lost {
                    what: url.to_string(),
                    why: format!("cannot start the decoder thread: {e}"),
                })?;
        }
        // Wait in short slices so a stop request is honoured within 100 ms
        // even while a camera is slow to answer.
        let deadline = std::time::Instant::now() + open_timeout;
        let native = loop {
            let lost = |why: String| SourceError::Lost {
                what: url.to_string(),
                why,
            };
            if crate::signals::stop_requested() {
                stop.store(true, Ordering::Relaxed);
                return Err(lost("stopping".into()));
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Msg::Opened(n)) => break n,
                Ok(Msg::End(e)) => return Err(e),
                Ok(Msg::Frame(_)) => unreachable!("Opened comes first"),
                Err(RecvTimeoutError::Timeout) if std::time::Instant::now() < deadline => {}
                Err(_) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(lost(format!(
                        "no stream information within {open_timeout:?}"
                    )));
                }
            }
        };
        let pacer = if live {
            None
        } else {
            let fps = pace.or(native.fps).unwrap_or(Fps::new(25));
            Some(Pacer::new(fps))
        };
        Ok(FfmpegSource {
            native,
            rx,
            pending: None,
            pacer,
            scaler: Scaler::default(),
            dropped,
            stop,
        })
    }
}

impl Drop for FfmpegSource {
    fn drop(&mut self) {
        // The thread also ends when its next send finds the channel closed.
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(crate) fn classify(url: &str, e: ff::Error) -> SourceError {
    let what = url.to_string();
    let why = e.to_string();
    match e {
        ff::Error::ProtocolNotFound
        | ff::Error::DecoderNotFound
        | ff::Error::DemuxerNotFound
        | ff::Error::OptionNotFound => SourceError::Missing { what, why },
        ff::Error::Other { errno } if errno == libc::ENOENT => SourceError::NotFound { what, why },
        _ => SourceError::Lost { what, why },
    }
}

fn rational_fps(r: ff::Rational) -> Option<Fps> {
    (r.numerator() > 0 && r.denominator() > 0).then(|| Fps {
        num: r.numerator() as u32,
        den: r.denominator() as u32,
    })
}

/// Open `url` for demuxing, the same way for pictures and sound: bounded
/// network reads (a dead camera surfaces as an error instead of a read
/// that blocks forever), RTSP over TCP.
pub(crate) fn open_input(url: &str) -> Result<ff::format::context::Input, ff::Error> {
    let mut opts = ff::Dictionary::new();
    opts.set("rw_timeout", "5000000");
    if url.starts_with("rtsp") {
        opts.set("rtsp_transport", "tcp");
        opts.set("timeout", "5000000");
    }
    ff::format::input_with_dictionary(&url, opts)
}

/// Demux and decode until the receiver goes away or the input ends.
fn decode_loop(
    url: &str,
    live: bool,
    tx: &SyncSender<Msg>,
    dropped: &AtomicU64,
    stop: &AtomicBool,
) {
    let mut first = true;
    let end = |e: SourceError| {
        let _ = tx.send(Msg::End(e));
    };
    // Returns false when the receiver is gone.
    let send = |f: ff::frame::Video| -> bool {
        if live {
            match tx.try_send(Msg::Frame(f)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        } else {
            tx.send(Msg::Frame(f)).is_ok()
        }
    };
    loop {
        let mut input = match open_input(url) {
            Ok(i) => i,
            Err(e) => return end(classify(url, e)),
        };
        let Some(stream) = input.streams().best(ff::media::Type::Video) else {
            return end(SourceError::Unsupported {
                what: url.to_string(),
                why: "no video stream".into(),
            });
        };
        let index = stream.index();
        let fps = rational_fps(stream.avg_frame_rate()).or(rational_fps(stream.rate()));
        let decoder = ff::codec::context::Context::from_parameters(stream.parameters())
            .and_then(|c| c.decoder().video());
        let mut decoder = match decoder {
            Ok(d) => d,
            Err(e) => {
                return end(SourceError::Missing {
                    what: url.to_string(),
                    why: format!("no decoder for the video stream: {e}"),
                })
            }
        };
        if first {
            first = false;
            let native = Native {
                width: decoder.width(),
                height: decoder.height(),
                fps,
            };
            if tx.send(Msg::Opened(native)).is_err() {
                return;
            }
        }
        let mut frame = ff::frame::Video::empty();
        let mut packet = ff::Packet::empty();
        let result = loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match packet.read(&mut input) {
                Ok(()) => {}
                Err(ff::Error::Eof) => break Ok(()),
                Err(ff::Error::InvalidData) => continue,
                Err(e) => break Err(e),
            }
            if packet.stream() != index {
                continue;
            }
            if let Err(e) = decoder.send_packet(&packet) {
                tracing::debug!(error = %e, "decoder refused a packet");
                continue;
            }
            while decoder.receive_frame(&mut frame).is_ok() {
                if !send(std::mem::replace(&mut frame, ff::frame::Video::empty())) {
                    return;
                }
            }
        };
        let _ = decoder.send_eof();
        while decoder.receive_frame(&mut frame).is_ok() {
            if !send(std::mem::replace(&mut frame, ff::frame::Video::empty())) {
                return;
            }
        }
        match result {
            Err(e) => return end(classify(url, e)),
            Ok(()) if live => {
                return end(SourceError::Lost {
                    what: url.to_string(),
                    why: "end of stream".into(),
                })
            }
            // A file: loop by opening it again.
            Ok(()) => tracing::debug!(url, "end of file, looping"),
        }
    }
}

impl Source for FfmpegSource {
    fn native(&self) -> Native {
        self.native
    }

    fn pull(&mut self, writer: &mut Writer, timeout: Duration) -> Result<Pulled, SourceError> {
        let lost = self.dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            writer.count(Counter::SourceDropped, lost);
        }
        let frame = match self.pending.take() {
            Some(f) => f,
            None => match self.rx.recv_timeout(timeout) {
                Ok(Msg::Frame(f)) => f,
                Ok(Msg::End(e)) => return Err(e),
                Ok(Msg::Opened(_)) | Err(RecvTimeoutError::Timeout) => return Ok(Pulled::Idle),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(SourceError::Lost {
                        what: "ffmpeg".into(),
                        why: "decoder thread ended".into(),
                    })
                }
            },
        };
        if let Some(p) = &mut self.pacer {
            match p.wait(timeout) {
                Due::NotYet => {
                    self.pending = Some(frame);
                    return Ok(Pulled::Idle);
                }
                Due::Now { skipped } if skipped > 0 => {
                    writer.count(Counter::SourceDropped, skipped);
                }
                Due::Now { .. } => {}
            }
        }
        let meta = FrameMeta::now();
        writer.count(Counter::Captured, 1);
        let spec = *writer.spec();
        let mut loan = match writer.loan() {
            Ok(l) => l,
            Err(e) => {
                note_publish_error(e);
                return Ok(Pulled::Frame);
            }
        };
        // SAFETY: reading the plane pointers and strides of a decoded frame
        // we own; FFmpeg keeps them valid while the frame lives.
        let src = unsafe {
            let av = &*frame.as_ptr();
            SrcPicture {
                format: frame.format().into(),
                width: frame.width(),
                height: frame.height(),
                data: [
                    av.data[0].cast_const(),
                    av.data[1].cast_const(),
                    av.data[2].cast_const(),
                    av.data[3].cast_const(),
                ],
                stride: [
                    av.linesize[0],
                    av.linesize[1],
                    av.linesize[2],
                    av.linesize[3],
                ],
            }
        };
        // SAFETY: `src` describes `frame`'s planes, alive for this call.
        match unsafe { self.scaler.convert(&src, &spec, &mut loan) } {
            Ok(()) => {
                loan.publish(meta);
                Ok(Pulled::Frame)
            }
            Err(e) => Err(SourceError::Unsupported {
                what: "ffmpeg".into(),
                why: e.to_string(),
            }),
        }
    }
}
