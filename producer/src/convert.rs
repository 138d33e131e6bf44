//! Conversion into the bus format, once, straight into the slot.
//!
//! A thin owner of an FFmpeg `SwsContext` (cached across frames; rebuilt by
//! `sws_getCachedContext` when the input changes) whose destination planes
//! point into the loaned slot, so the converted frame is written exactly
//! once, in shared memory.

use ffmpeg_next::ffi;
use framebus::{FrameSpec, PixelFormat};

/// The FFmpeg pixel format of a raw bus format.
pub fn av_format(f: PixelFormat) -> Option<ffi::AVPixelFormat> {
    use ffi::AVPixelFormat as A;
    Some(match f {
        PixelFormat::Yuyv => A::AV_PIX_FMT_YUYV422,
        PixelFormat::Uyvy => A::AV_PIX_FMT_UYVY422,
        PixelFormat::Nv12 => A::AV_PIX_FMT_NV12,
        PixelFormat::I420 => A::AV_PIX_FMT_YUV420P,
        PixelFormat::Rgb24 => A::AV_PIX_FMT_RGB24,
        PixelFormat::Bgr24 => A::AV_PIX_FMT_BGR24,
        PixelFormat::Gray8 => A::AV_PIX_FMT_GRAY8,
        PixelFormat::Mjpeg
        | PixelFormat::H264
        | PixelFormat::S16le
        | PixelFormat::Opus
        | PixelFormat::Aac => return None,
    })
}

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// swscale refused the pair of formats or sizes.
    #[error("swscale cannot convert {src_w}x{src_h} {src_fmt:?} to {dst}")]
    Unsupported {
        /// Input width.
        src_w: u32,
        /// Input height.
        src_h: u32,
        /// Input format.
        src_fmt: ffi::AVPixelFormat,
        /// Output spec.
        dst: String,
    },
    /// The destination slot is too small.
    #[error("destination of {len} bytes is shorter than a {need}-byte frame")]
    Short {
        /// Slot bytes.
        len: usize,
        /// Frame bytes.
        need: usize,
    },
}

/// Input picture: FFmpeg format, size, and up to four planes.
pub struct SrcPicture {
    /// Pixel format.
    pub format: ffi::AVPixelFormat,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Plane pointers (null for absent planes).
    pub data: [*const u8; 4],
    /// Plane strides in bytes.
    pub stride: [i32; 4],
}

/// A cached swscale context.
pub struct Scaler {
    ctx: *mut ffi::SwsContext,
}

impl Default for Scaler {
    fn default() -> Self {
        Scaler {
            ctx: std::ptr::null_mut(),
        }
    }
}

impl Scaler {
    /// Convert `src` into `dst`, a raw frame of `spec`.
    ///
    /// # Safety
    /// Every non-null pointer in `src.data` must point to a plane of
    /// `src.format` at `src.width`x`src.height` with the given stride, valid
    /// for reads for the duration of the call.
    pub unsafe fn convert(
        &mut self,
        src: &SrcPicture,
        spec: &FrameSpec,
        dst: &mut [u8],
    ) -> Result<(), ConvertError> {
        let unsupported = || ConvertError::Unsupported {
            src_w: src.width,
            src_h: src.height,
            src_fmt: src.format,
            dst: format!("{}x{} {}", spec.width, spec.height, spec.format),
        };
        let dst_fmt = av_format(spec.format).ok_or_else(unsupported)?;
        if dst.len() < spec.frame_size() {
            return Err(ConvertError::Short {
                len: dst.len(),
                need: spec.frame_size(),
            });
        }
        // SAFETY: `sws_getCachedContext` accepts null or a context it made;
        // `self.ctx` is only ever one of those. It frees the old context
        // itself when it has to make a new one.
        self.ctx = unsafe {
            ffi::sws_getCachedContext(
                self.ctx,
                src.width as i32,
                src.height as i32,
                src.format,
                spec.width as i32,
                spec.height as i32,
                dst_fmt,
                ffi::SWS_BILINEAR,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null(),
            )
        };
        if self.ctx.is_null() {
            return Err(unsupported());
        }
        let mut dst_data = [std::ptr::null_mut::<u8>(); 4];
        let mut dst_stride = [0i32; 4];
        for (i, p) in spec.planes().iter().enumerate() {
            // In bounds: the plane lies inside `frame_size() <= dst.len()`.
            dst_data[i] = dst[p.offset as usize..].as_mut_ptr();
            dst_stride[i] = p.stride as i32;
        }
        // SAFETY: (1) the context was made for exactly these sizes and
        // formats just above; (2) the source planes are valid per this
        // function's contract; (3) each destination plane pointer and stride
        // describe a plane of `spec` inside `dst`, checked long enough, and
        // `dst` is borrowed mutably for the call.
        let rows = unsafe {
            ffi::sws_scale(
                self.ctx,
                src.data.as_ptr(),
                src.stride.as_ptr(),
                0,
                src.height as i32,
                dst_data.as_ptr(),
                dst_stride.as_ptr(),
            )
        };
        if rows <= 0 {
            return Err(unsupported());
        }
        Ok(())
    }
}

impl Drop for Scaler {
    fn drop(&mut self) {
        if !self.ctx.is_null() {
            // SAFETY: a context made by `sws_getCachedContext`, freed once.
            unsafe { ffi::sws_freeContext(self.ctx) };
        }
    }
}
