//! `v4l2:/dev/videoN`: the adapter from [`crate::v4l2::V4l2Camera`] to the
//! run loop's [`Source`].
//!
//! Raw frames (YUYV, NV12) of the bus's own format and size are copied from
//! the driver's mmap buffer into the slot once; anything else goes through
//! swscale straight into the slot. MJPEG frames are decoded once by
//! turbojpeg (to RGB, in a reused buffer) and converted into the slot.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use ffmpeg_next::ffi::AVPixelFormat;
use framebus::{Counter, Fps, FrameFlags, FrameMeta, FrameSpec, PixelFormat, Writer};

use crate::convert::{av_format, Scaler, SrcPicture};
use crate::source::{note_publish_error, Native, Pulled, Source, SourceError};
use crate::v4l2::{Granted, V4l2Camera, V4l2Error, Want};

/// The second bus `<bus>.mjpeg` that receives an MJPEG camera's compressed
/// frames as they are (shared by every reopen of the camera).
pub type Passthrough = Rc<RefCell<Writer>>;

/// An open camera feeding the bus.
pub struct V4l2Source {
    cam: V4l2Camera,
    passthrough: Option<Passthrough>,
    granted: Granted,
    scaler: Scaler,
    jpeg: Option<turbojpeg::Decompressor>,
    rgb: Vec<u8>,
}

/// The camera as a [`SourceError`].
pub fn source_error(e: V4l2Error) -> SourceError {
    let what = e.path().display().to_string();
    let why = e.to_string();
    tracing::debug!(device = %what, gone = e.is_gone(), error = %why, "camera error");
    match e {
        V4l2Error::NotFound { .. } | V4l2Error::NotCapture { .. } => {
            SourceError::NotFound { what, why }
        }
        V4l2Error::Busy { .. } => SourceError::Busy { what, pid: 0 },
        V4l2Error::UnsupportedFormat { .. }
        | V4l2Error::FormatNotOffered { .. }
        | V4l2Error::NoUsableFormat { .. }
        | V4l2Error::FormatRefused { .. } => SourceError::Unsupported { what, why },
        _ => SourceError::Lost { what, why },
    }
}

impl V4l2Source {
    /// Open `path` asking for `size`/`fps`, in `prefer` when the camera
    /// offers it (the bus format: no conversion; or MJPEG for a
    /// pass-through bus), else in what the camera prefers.
    pub fn open(
        path: &Path,
        prefer: PixelFormat,
        size: (u32, u32),
        fps: Fps,
    ) -> Result<V4l2Source, SourceError> {
        let want = |format| Want {
            format,
            width: size.0,
            height: size.1,
            fps,
        };
        let direct = matches!(
            prefer,
            PixelFormat::Yuyv | PixelFormat::Nv12 | PixelFormat::Mjpeg
        );
        let cam = match direct.then(|| V4l2Camera::open(path, want(Some(prefer)))) {
            Some(Ok(c)) => c,
            Some(Err(V4l2Error::FormatNotOffered { .. })) | None => {
                V4l2Camera::open(path, want(None)).map_err(source_error)?
            }
            Some(Err(e)) => return Err(source_error(e)),
        };
        tracing::info!(device = %cam.path().display(), report = %cam.report(), "camera negotiated");
        let granted = cam.granted();
        let jpeg = if granted.format == PixelFormat::Mjpeg {
            Some(
                turbojpeg::Decompressor::new().map_err(|e| SourceError::Missing {
                    what: path.display().to_string(),
                    why: format!("turbojpeg: {e}"),
                })?,
            )
        } else {
            None
        };
        Ok(V4l2Source {
            cam,
            passthrough: None,
            granted,
            scaler: Scaler::default(),
            jpeg,
            rgb: Vec::new(),
        })
    }

    /// Whether the camera delivers MJPEG.
    pub fn is_mjpeg(&self) -> bool {
        self.jpeg.is_some()
    }

    /// Also publish the camera's compressed frames on `bus` (MJPEG cameras).
    pub fn with_passthrough(mut self, bus: Option<Passthrough>) -> Self {
        self.passthrough = bus;
        self
    }

    /// Write `data` (one camera frame) into `dst`, a frame of `spec`.
    fn convert(&mut self, data: &[u8], spec: &FrameSpec, dst: &mut [u8]) -> Result<(), String> {
        let g = self.granted;
        if let Some(dec) = &mut self.jpeg {
            let head = dec.read_header(data).map_err(|e| e.to_string())?;
            let (w, h) = (head.width, head.height);
            self.rgb.resize(w * h * 3, 0);
            let image = turbojpeg::Image {
                pixels: &mut self.rgb[..],
                width: w,
                pitch: w * 3,
                height: h,
                format: turbojpeg::PixelFormat::RGB,
            };
            dec.decompress(data, image).map_err(|e| e.to_string())?;
            let src = SrcPicture {
                format: AVPixelFormat::AV_PIX_FMT_RGB24,
                width: w as u32,
                height: h as u32,
                data: [
                    self.rgb.as_ptr(),
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                ],
                stride: [(w * 3) as i32, 0, 0, 0],
            };
            // SAFETY: `src` describes `self.rgb`, which holds a w x h RGB
            // image and is not touched during the call.
            return unsafe { self.scaler.convert(&src, spec, dst) }.map_err(|e| e.to_string());
        }
        let stride = g.stride as usize;
        let rows = g.height as usize;
        let need = match g.format {
            PixelFormat::Nv12 => stride * rows * 3 / 2,
            _ => stride * rows,
        };
        if data.len() < need {
            return Err(format!(
                "short frame: {} bytes, a {}x{} {} frame needs {need}",
                data.len(),
                g.width,
                g.height,
                g.format
            ));
        }
        let same = g.format == spec.format
            && (g.width, g.height) == (spec.width, spec.height)
            && spec.planes()[0].stride as usize == stride;
        if same {
            // The one unavoidable copy out of the driver's buffer.
            dst[..spec.frame_size()].copy_from_slice(&data[..spec.frame_size()]);
            return Ok(());
        }
        let format = av_format(g.format).ok_or("no swscale format for the camera")?;
        let mut src = SrcPicture {
            format,
            width: g.width,
            height: g.height,
            data: [
                data.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
            ],
            stride: [stride as i32, 0, 0, 0],
        };
        if g.format == PixelFormat::Nv12 {
            src.data[1] = data[stride * rows..].as_ptr();
            src.stride[1] = stride as i32;
        }
        // SAFETY: `data` holds a whole frame of the granted format, size and
        // stride (length checked above); the planes point into it.
        unsafe { self.scaler.convert(&src, spec, dst) }.map_err(|e| e.to_string())
    }
}

impl Source for V4l2Source {
    fn native(&self) -> Native {
        Native {
            width: self.granted.width,
            height: self.granted.height,
            fps: self.granted.fps,
        }
    }

    fn pull(&mut self, writer: &mut Writer, timeout: Duration) -> Result<Pulled, SourceError> {
        let spec = *writer.spec();
        // The camera's buffer is borrowed until the next `next_frame`, so the
        // conversion happens inside this match.
        let frame = match self.cam.next_frame(timeout) {
            Ok(c) => c,
            Err(V4l2Error::TimedOut { .. }) => return Ok(Pulled::Idle),
            Err(V4l2Error::CorruptFrame { .. }) => {
                writer.count(Counter::SourceDropped, 1);
                return Ok(Pulled::Idle);
            }
            Err(e) => return Err(source_error(e)),
        };
        tracing::trace!(
            sequence = frame.sequence,
            driver_timestamp = frame.driver_timestamp,
            "camera frame"
        );
        if frame.dropped > 0 {
            writer.count(Counter::SourceDropped, u64::from(frame.dropped));
        }
        writer.count(Counter::Captured, 1);
        // The driver's monotonic timestamp, mapped to the realtime clock.
        let (now_mono, now_real) = (framebus::monotonic_ns(), framebus::realtime_ns());
        let meta = FrameMeta {
            mono_ns: frame.mono_ns,
            realtime_ns: now_real.saturating_sub(now_mono.saturating_sub(frame.mono_ns)),
            flags: FrameFlags::KEY,
            ..FrameMeta::default()
        };
        // Copy the borrowed pointer range out of `frame` so `self` can be
        // borrowed mutably for the conversion.
        let (ptr, len) = (frame.data.as_ptr(), frame.data.len());
        // SAFETY: the camera's mmap buffer stays mapped and un-requeued until
        // the next `next_frame` call, which cannot happen before this
        // function returns; `convert` does not touch `self.cam`.
        let data = unsafe { std::slice::from_raw_parts(ptr, len) };
        if let (Some(bus), true) = (&self.passthrough, self.jpeg.is_some()) {
            let mut bus = bus.borrow_mut();
            bus.count(Counter::Captured, 1);
            if let Err(e) = bus.publish_from(data, meta) {
                note_publish_error(e);
            }
        }
        let mut loan = match writer.loan() {
            Ok(l) => l,
            Err(e) => {
                note_publish_error(e);
                return Ok(Pulled::Frame);
            }
        };
        match self.convert(data, &spec, &mut loan) {
            Ok(()) => {
                loan.publish(meta);
                Ok(Pulled::Frame)
            }
            Err(why) => {
                drop(loan);
                writer.count(Counter::SourceDropped, 1);
                tracing::debug!(%why, "camera frame not converted");
                Ok(Pulled::Idle)
            }
        }
    }
}

/// Resolve `v4l2:auto` / `v4l2:<path>`.
pub fn resolve(dev: Option<&str>) -> Option<PathBuf> {
    match dev {
        Some(p) => Some(PathBuf::from(p)),
        None => crate::v4l2::first_capture_device(),
    }
}
