//! The open camera: negotiation applied (`VIDIOC_S_FMT`, `VIDIOC_S_PARM`),
//! mmap streaming, and frames read with a timeout that leaves the camera
//! usable (see the module docs of [`super`]).

use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use v4l::buffer::{Flags as BufferFlags, Type};
use v4l::io::mmap::Stream;
use v4l::io::traits::{CaptureStream, Stream as _};
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC, Fraction};

use super::device::{capturable, describe, fourcc_text, interval_to_fps};
use super::error::{V4l2Error, ENODEV};
use super::negotiate::{capturable_fourcc, fourcc_bytes, score, Granted, Report, Want};

/// Buffers requested from the driver.
const BUFFERS: u32 = 4;

/// One captured frame, borrowed from the driver's buffer until the next call
/// to [`V4l2Camera::next_frame`].
#[derive(Debug)]
pub struct Captured<'a> {
    /// The frame's bytes (`bytesused` of the buffer; one JPEG for MJPEG).
    pub data: &'a [u8],
    /// Capture time, CLOCK_MONOTONIC ns: the driver's timestamp when it is
    /// monotonic, else the time of dequeue.
    pub mono_ns: u64,
    /// True when `mono_ns` is the driver's timestamp.
    #[allow(dead_code)] // diagnostics; the tests check it
    pub driver_timestamp: bool,
    /// The driver's sequence number.
    #[allow(dead_code)] // diagnostics; the tests check it
    pub sequence: u32,
    /// Frames the driver skipped between the previous frame and this one
    /// (gaps in `sequence`).
    pub dropped: u32,
}

/// An open, negotiated, streaming camera.
pub struct V4l2Camera {
    path: PathBuf,
    card: String,
    want: Want,
    granted: Granted,
    /// Dropped by hand in `Drop` so that a failing `VIDIOC_STREAMOFF` does
    /// not reach the `panic!` in `v4l`'s own `Drop`.
    stream: ManuallyDrop<Stream<'static>>,
    /// Kept open for the stream's lifetime (the stream shares its handle).
    _device: Device,
    /// A wait inside `Stream::next` did not finish: one buffer is still queued
    /// under the index `next` would queue again.
    dequeue_pending: bool,
    last_sequence: Option<u32>,
}

impl fmt::Debug for V4l2Camera {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V4l2Camera")
            .field("path", &self.path)
            .field("granted", &self.granted)
            .finish()
    }
}

impl V4l2Camera {
    /// Opens `path`, negotiates `want` (`VIDIOC_S_FMT`, `VIDIOC_S_PARM`) and
    /// maps the buffers. Streaming starts with the first [`next_frame`](Self::next_frame).
    pub fn open(path: impl AsRef<Path>, want: Want) -> Result<V4l2Camera, V4l2Error> {
        let path = path.as_ref();
        if let Some(format) = want.format {
            if capturable_fourcc(format).is_none() {
                return Err(V4l2Error::UnsupportedFormat {
                    path: path.to_path_buf(),
                    wanted: format,
                });
            }
        }
        let info = describe(path)?;
        let offered: Vec<String> = info.formats.iter().map(|f| f.fourcc.clone()).collect();
        let choice = match want.format {
            Some(wanted) => info
                .formats
                .iter()
                .find(|f| f.pixel_format == Some(wanted))
                .ok_or_else(|| V4l2Error::FormatNotOffered {
                    path: path.to_path_buf(),
                    wanted,
                    offered: offered.clone(),
                })?,
            None => info
                .formats
                .iter()
                .filter(|f| f.pixel_format.is_some())
                .min_by_key(|f| score(f, &want))
                .ok_or_else(|| V4l2Error::NoUsableFormat {
                    path: path.to_path_buf(),
                    offered: offered.clone(),
                })?,
        };
        let fourcc = FourCC::new(&fourcc_bytes(&choice.fourcc));

        let device = Device::with_path(path).map_err(|e| V4l2Error::from_open(path, e))?;
        let format = device
            .set_format(&Format::new(want.width, want.height, fourcc))
            .map_err(|e| V4l2Error::from_io(path, "VIDIOC_S_FMT", e))?;
        let pixel_format = capturable(format.fourcc).ok_or_else(|| V4l2Error::FormatRefused {
            path: path.to_path_buf(),
            asked: fourcc_text(fourcc),
            granted: fourcc_text(format.fourcc),
        })?;
        let fps = if want.fps.num == 0 || want.fps.den == 0 {
            None
        } else {
            // Drivers without VIDIOC_S_PARM (or without V4L2_CAP_TIMEPERFRAME)
            // run at their own rate: report that instead of failing.
            device
                .set_params(&Parameters::new(Fraction::new(want.fps.den, want.fps.num)))
                .ok()
                .and_then(|p| interval_to_fps(p.interval))
        };
        let granted = Granted {
            format: pixel_format,
            width: format.width,
            height: format.height,
            stride: format.stride,
            frame_bytes: format.size,
            fps,
        };
        let stream = Stream::with_buffers(&device, Type::VideoCapture, BUFFERS)
            .map_err(|e| V4l2Error::from_io(path, "VIDIOC_REQBUFS/mmap", e))?;
        Ok(V4l2Camera {
            path: path.to_path_buf(),
            card: info.card,
            want,
            granted,
            stream: ManuallyDrop::new(stream),
            _device: device,
            dequeue_pending: false,
            last_sequence: None,
        })
    }

    /// The device node.
    #[allow(dead_code)] // API for callers
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the driver granted.
    pub fn granted(&self) -> Granted {
        self.granted
    }

    /// What was asked and what was granted, for a log line.
    pub fn report(&self) -> Report {
        Report {
            path: self.path.clone(),
            card: self.card.clone(),
            want: self.want,
            granted: self.granted,
        }
    }

    /// Waits up to `timeout` for the next frame. Streaming starts on the first call.
    ///
    /// [`V4l2Error::TimedOut`] leaves the camera usable (call again);
    /// [`V4l2Error::Unplugged`] means it must be dropped and reopened.
    pub fn next_frame(&mut self, timeout: Duration) -> Result<Captured<'_>, V4l2Error> {
        let start = Instant::now();
        let deadline = start + timeout;
        let (ptr, len, meta) = loop {
            if self.dequeue_pending {
                self.finish_pending_wait(start, deadline)?;
            }
            self.stream.set_timeout(remaining(deadline));
            self.dequeue_pending = true;
            match self.stream.next() {
                Ok((data, meta)) => break (data.as_ptr(), data.len(), *meta),
                Err(e) if retryable(&e) => continue,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(V4l2Error::TimedOut {
                        path: self.path.clone(),
                        waited: start.elapsed(),
                    })
                }
                Err(e) => return Err(V4l2Error::from_io(&self.path, "VIDIOC_DQBUF", e)),
            }
        };
        self.dequeue_pending = false;

        let dropped = self
            .last_sequence
            .map_or(0, |last| meta.sequence.wrapping_sub(last).saturating_sub(1));
        self.last_sequence = Some(meta.sequence);
        if meta.flags.contains(BufferFlags::ERROR) {
            return Err(V4l2Error::CorruptFrame {
                path: self.path.clone(),
                sequence: meta.sequence,
            });
        }
        let used = match meta.bytesused as usize {
            0 => (self.granted.frame_bytes as usize).min(len),
            n => n.min(len),
        };
        let driver_timestamp =
            meta.flags & BufferFlags::TIMESTAMP_MASK == BufferFlags::TIMESTAMP_MONOTONIC;
        let mono_ns = if driver_timestamp {
            (meta.timestamp.sec as u64) * 1_000_000_000 + (meta.timestamp.usec as u64) * 1_000
        } else {
            framebus::monotonic_ns()
        };
        // SAFETY: `ptr..ptr+len` is the mmap'ed buffer `Stream::next` just
        // returned (`used <= len`). The mapping lives as long as
        // `self.stream`, and the driver writes to this buffer again only after
        // it is re-queued, which happens in the next `next_frame` call; the
        // returned borrow of `&mut self` forbids that call while the slice is
        // alive. (The slice is rebuilt from a pointer only because returning
        // the borrow straight from inside the retry loop is not accepted by
        // the borrow checker.)
        let data = unsafe { std::slice::from_raw_parts(ptr, used) };
        Ok(Captured {
            data,
            mono_ns,
            driver_timestamp,
            sequence: meta.sequence,
            dropped,
        })
    }

    /// Completes a wait that `Stream::next` started but did not finish, so the
    /// buffer it left queued is with us again and `next` may queue it.
    fn finish_pending_wait(&mut self, start: Instant, deadline: Instant) -> Result<(), V4l2Error> {
        loop {
            self.stream.set_timeout(remaining(deadline));
            match CaptureStream::dequeue(&mut *self.stream) {
                Ok(_) => {
                    self.dequeue_pending = false;
                    return Ok(());
                }
                Err(e) if retryable(&e) && Instant::now() < deadline => continue,
                Err(e) if retryable(&e) || e.kind() == io::ErrorKind::TimedOut => {
                    return Err(V4l2Error::TimedOut {
                        path: self.path.clone(),
                        waited: start.elapsed(),
                    })
                }
                Err(e) => return Err(V4l2Error::from_io(&self.path, "VIDIOC_DQBUF", e)),
            }
        }
    }
}

impl Drop for V4l2Camera {
    fn drop(&mut self) {
        match self.stream.stop() {
            Err(e) if e.raw_os_error() != Some(ENODEV) => {
                // `v4l`'s Drop would panic on this error. Leak the stream (its
                // mappings and one handle reference) rather than abort.
            }
            // SAFETY: `self.stream` is not used after this point; it is dropped
            // exactly once, here.
            _ => unsafe { ManuallyDrop::drop(&mut self.stream) },
        }
    }
}

/// Time left until `deadline`, rounded up to whole milliseconds (`v4l` passes
/// its timeout to `poll` in ms, truncating) and at least 1 ms, so a wait never
/// ends before the deadline.
fn remaining(deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    // v4l converts the timeout to an i32 of milliseconds and panics above that.
    let ms = left
        .as_nanos()
        .div_ceil(1_000_000)
        .clamp(1, i32::MAX as u128);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Errors after which the same wait can simply be repeated.
fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}
