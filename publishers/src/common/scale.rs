//! Scale and convert a bus frame to planar I420 or NV12 at a target size.
//!
//! Uses libswscale (through `ffmpeg-next`) and reads the frame's planes in
//! place in shared memory: the only write is the output picture, either
//! the [`Scaler`]'s own (allocated at first use and reused between frames,
//! [`Scaler::scale`]) or a caller's `AVFrame`, such as an encoder's input
//! frame ([`Scaler::scale_into`], so nothing is copied after scaling). The
//! swscale context is cached and rebuilt only when the input geometry or
//! format changes (a restarted producer may bring a new one).

use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling::{Context, Flags};
use framebus::{Frame, FrameSpec, PixelFormat};

/// Output layout of a [`Scaler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    /// Y plane, then U, then V (each chroma plane `ceil(w/2) x ceil(h/2)`).
    I420,
    /// Y plane, then interleaved UV (`2*ceil(w/2) x ceil(h/2)`).
    Nv12,
}

/// Why a frame could not be scaled.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The bus format has no raw-pixel conversion (MJPEG).
    #[error("cannot scale {0:?} frames (compressed)")]
    Unsupported(PixelFormat),
    /// swscale refused the conversion.
    #[error("swscale cannot convert {from:?} {sw}x{sh} to {to:?} {dw}x{dh}: {source}")]
    Context {
        /// Input format.
        from: PixelFormat,
        /// Input width.
        sw: u32,
        /// Input height.
        sh: u32,
        /// Output format.
        to: OutFormat,
        /// Output width.
        dw: u32,
        /// Output height.
        dh: u32,
        /// ffmpeg's error.
        source: ffmpeg_next::Error,
    },
    /// The destination frame of [`Scaler::scale_into`] does not have the
    /// scaler's size and format.
    #[error("cannot scale into a {got_format:?} {got_w}x{got_h} frame: the scaler makes {want_format:?} {want_w}x{want_h}")]
    Destination {
        /// The scaler's output format.
        want_format: OutFormat,
        /// The scaler's output width.
        want_w: u32,
        /// The scaler's output height.
        want_h: u32,
        /// The frame's format.
        got_format: Pixel,
        /// The frame's width.
        got_w: u32,
        /// The frame's height.
        got_h: u32,
    },
    /// The destination frame's buffers could not be made writable.
    #[error("cannot make the destination frame writable: {0}")]
    Writable(ffmpeg_next::Error),
    /// A plane of the frame is shorter than its geometry says.
    #[error("frame {seq}: plane {plane} has {len} bytes, expected at least {need}")]
    ShortPlane {
        /// Frame sequence number.
        seq: u64,
        /// Plane index.
        plane: usize,
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
}

/// A picture in contiguous planar memory (no row padding).
#[derive(Debug, Clone)]
pub struct Picture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Layout.
    pub format: OutFormat,
    /// The planes, back to back.
    pub data: Vec<u8>,
}

impl Picture {
    fn new(width: u32, height: u32, format: OutFormat) -> Picture {
        let mut p = Picture {
            width,
            height,
            format,
            data: Vec::new(),
        };
        let (_, _, len) = p.layout();
        p.data = vec![0; len];
        p
    }

    /// `(offsets, strides, total length)` of the planes (3 for I420, 2 for NV12).
    pub fn layout(&self) -> ([usize; 3], [usize; 3], usize) {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        match self.format {
            OutFormat::I420 => (
                [0, w * h, w * h + cw * ch],
                [w, cw, cw],
                w * h + 2 * cw * ch,
            ),
            OutFormat::Nv12 => ([0, w * h, 0], [w, 2 * cw, 0], w * h + 2 * cw * ch),
        }
    }

    /// The planes as slices with their strides: Y, U, V (I420) or Y, UV (NV12).
    pub fn planes(&self) -> Vec<(&[u8], usize)> {
        let (off, stride, len) = self.layout();
        let n = if self.format == OutFormat::I420 { 3 } else { 2 };
        (0..n)
            .map(|i| {
                let end = if i + 1 < n { off[i + 1] } else { len };
                (&self.data[off[i]..end], stride[i])
            })
            .collect()
    }
}

/// One input plane of a [`SrcPicture`].
#[derive(Debug, Clone, Copy)]
pub struct SrcPlane<'a> {
    /// The bytes (at least `stride * rows`).
    pub data: &'a [u8],
    /// Bytes per row.
    pub stride: usize,
    /// Rows.
    pub rows: usize,
}

/// An input picture given as planes in an ffmpeg pixel format.
#[derive(Debug, Clone)]
pub struct SrcPicture<'a> {
    /// Bus format it came from (for error messages).
    pub origin: PixelFormat,
    /// Layout of `planes`.
    pub format: Pixel,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Frame sequence number (for error messages).
    pub seq: u64,
    /// Planes in the order swscale expects for `format`.
    pub planes: Vec<SrcPlane<'a>>,
}

/// `(bytes per row, rows)` that swscale reads from each plane of a
/// `width` x `height` picture in `format`; `None` for formats not used here.
fn min_geometry(format: Pixel, width: u32, height: u32) -> Option<Vec<(usize, usize)>> {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    Some(match format {
        Pixel::YUYV422 | Pixel::UYVY422 => vec![(2 * 2 * cw, h)],
        Pixel::RGB24 | Pixel::BGR24 => vec![(3 * w, h)],
        Pixel::GRAY8 => vec![(w, h)],
        Pixel::NV12 => vec![(w, h), (2 * cw, ch)],
        Pixel::YUV420P => vec![(w, h), (cw, ch), (cw, ch)],
        Pixel::YUV422P => vec![(w, h), (cw, h), (cw, h)],
        Pixel::YUV444P => vec![(w, h), (w, h), (w, h)],
        _ => return None,
    })
}

/// The swscale pixel format of a bus format (`None`: compressed or audio).
pub fn av_pixel(f: PixelFormat) -> Option<Pixel> {
    Some(match f {
        PixelFormat::Yuyv => Pixel::YUYV422,
        PixelFormat::Uyvy => Pixel::UYVY422,
        PixelFormat::Nv12 => Pixel::NV12,
        PixelFormat::I420 => Pixel::YUV420P,
        PixelFormat::Rgb24 => Pixel::RGB24,
        PixelFormat::Bgr24 => Pixel::BGR24,
        PixelFormat::Gray8 => Pixel::GRAY8,
        PixelFormat::Mjpeg
        | PixelFormat::H264
        | PixelFormat::S16le
        | PixelFormat::Opus
        | PixelFormat::Aac => return None,
    })
}

/// The planes of a bus frame as swscale input (read in place).
fn src_picture(frame: &Frame) -> Result<SrcPicture<'_>, ScaleError> {
    let spec: &FrameSpec = frame.spec();
    let av = av_pixel(spec.format).ok_or(ScaleError::Unsupported(spec.format))?;
    let planes = spec
        .planes()
        .iter()
        .enumerate()
        .take(4)
        .map(|(i, p)| SrcPlane {
            data: frame.plane(i).unwrap_or(&[]),
            stride: p.stride as usize,
            rows: p.rows as usize,
        })
        .collect();
    Ok(SrcPicture {
        origin: spec.format,
        format: av,
        width: spec.width,
        height: spec.height,
        seq: frame.seq(),
        planes,
    })
}

/// Scales bus frames to one target size and layout; keep one per stream.
/// Not `Send` (the swscale context is a raw pointer): create it on the
/// worker thread.
pub struct Scaler {
    width: u32,
    height: u32,
    format: OutFormat,
    ctx: Option<((Pixel, u32, u32), Context)>,
    /// The output picture of [`Scaler::scale`], allocated at its first use.
    out: Option<Picture>,
}

impl std::fmt::Debug for Scaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaler")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Scaler {
    /// A scaler to `width` x `height` in `format`.
    pub fn new(width: u32, height: u32, format: OutFormat) -> Scaler {
        Scaler {
            width,
            height,
            format,
            ctx: None,
            out: None,
        }
    }

    /// Target size.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The scaler's own picture, the last one [`Scaler::scale`] made
    /// (`None` before the first, and always with [`Scaler::scale_into`]).
    pub fn picture(&self) -> Option<&Picture> {
        self.out.as_ref()
    }

    /// Convert `frame` (read in place) into the scaler's picture.
    pub fn scale(&mut self, frame: &Frame) -> Result<&Picture, ScaleError> {
        let src = src_picture(frame)?;
        self.scale_planes(&src)
    }

    /// Convert `frame` (read in place) straight into `dst`, an `AVFrame`
    /// of the scaler's size and format (an encoder's input frame). `dst`'s
    /// buffers are made writable first: if an encoder still holds a
    /// reference to them, `dst` gets new ones instead of overwriting
    /// what the encoder holds.
    pub fn scale_into(
        &mut self,
        frame: &Frame,
        dst: &mut ffmpeg_next::frame::Video,
    ) -> Result<(), ScaleError> {
        let want = self.av_format();
        if dst.format() != want || dst.width() != self.width || dst.height() != self.height {
            return Err(ScaleError::Destination {
                want_format: self.format,
                want_w: self.width,
                want_h: self.height,
                got_format: dst.format(),
                got_w: dst.width(),
                got_h: dst.height(),
            });
        }
        // SAFETY: `dst` is a valid, allocated frame (ffmpeg-next owns it).
        let r = unsafe { ffmpeg_next::ffi::av_frame_make_writable(dst.as_mut_ptr()) };
        if r < 0 {
            return Err(ScaleError::Writable(ffmpeg_next::Error::from(r)));
        }
        let geometry = min_geometry(want, self.width, self.height).expect("I420/NV12 known");
        let mut dst_ptr = [std::ptr::null_mut::<u8>(); 4];
        let mut dst_stride = [0 as libc::c_int; 4];
        for (i, &(row_bytes, rows)) in geometry.iter().enumerate() {
            let stride = dst.stride(i);
            let plane = dst.data_mut(i);
            // ffmpeg-next sizes the slice `stride * plane rows`; a frame
            // whose rows are shorter than what swscale writes is refused.
            if stride < row_bytes || plane.len() < stride * rows {
                return Err(ScaleError::Destination {
                    want_format: self.format,
                    want_w: self.width,
                    want_h: self.height,
                    got_format: want,
                    got_w: self.width,
                    got_h: self.height,
                });
            }
            dst_ptr[i] = plane.as_mut_ptr();
            dst_stride[i] = stride as libc::c_int;
        }
        // SAFETY: each destination plane of the output format is a
        // writable buffer of `dst` (made writable above, so no one else
        // references it) holding at least the rows and row bytes swscale
        // writes for this size and format (checked above); `dst` is
        // borrowed mutably for the whole call.
        unsafe { self.scale_to(&src_picture(frame)?, &dst_ptr, &dst_stride) }
    }

    fn av_format(&self) -> Pixel {
        match self.format {
            OutFormat::I420 => Pixel::YUV420P,
            OutFormat::Nv12 => Pixel::NV12,
        }
    }

    /// Convert a picture given as planes (e.g. a decoded JPEG) into the
    /// scaler's picture.
    pub fn scale_planes(&mut self, src: &SrcPicture<'_>) -> Result<&Picture, ScaleError> {
        let (width, height, format) = (self.width, self.height, self.format);
        let out = self
            .out
            .get_or_insert_with(|| Picture::new(width, height, format));
        let (off, stride, _) = out.layout();
        let base = out.data.as_mut_ptr();
        let nplanes = if format == OutFormat::I420 { 3 } else { 2 };
        let mut dst_ptr = [std::ptr::null_mut::<u8>(); 4];
        let mut dst_stride = [0 as libc::c_int; 4];
        for i in 0..nplanes {
            // SAFETY: `off[i]` is inside `out.data`, which `layout()`
            // sized to hold every plane (Picture::new).
            dst_ptr[i] = unsafe { base.add(off[i]) };
            dst_stride[i] = stride[i] as libc::c_int;
        }
        // SAFETY: the destination planes are inside the scaler's own
        // picture, sized by `layout()` for this width, height and format,
        // and nothing else references it during the call.
        unsafe { self.scale_to(src, &dst_ptr, &dst_stride) }?;
        Ok(self.out.as_ref().expect("allocated above"))
    }

    /// Runs swscale from `src` into the planes at `dst_ptr`/`dst_stride`.
    ///
    /// # Safety
    ///
    /// For each plane of the scaler's output format, `dst_ptr[i]` must
    /// point to writable memory of at least `dst_stride[i]` bytes per row
    /// for that plane's rows at the scaler's size, with row bytes fitting
    /// in the stride, that nothing else reads or writes during the call.
    unsafe fn scale_to(
        &mut self,
        src: &SrcPicture<'_>,
        dst_ptr: &[*mut u8; 4],
        dst_stride: &[libc::c_int; 4],
    ) -> Result<(), ScaleError> {
        let key = (src.format, src.width, src.height);
        if self.ctx.as_ref().map(|c| c.0) != Some(key) {
            let ctx = Context::get(
                src.format,
                src.width,
                src.height,
                self.av_format(),
                self.width,
                self.height,
                Flags::BILINEAR,
            )
            .map_err(|source| ScaleError::Context {
                from: src.origin,
                sw: src.width,
                sh: src.height,
                to: self.format,
                dw: self.width,
                dh: self.height,
                source,
            })?;
            self.ctx = Some((key, ctx));
        }

        let geometry = min_geometry(src.format, src.width, src.height)
            .ok_or(ScaleError::Unsupported(src.origin))?;
        if src.planes.len() < geometry.len() {
            return Err(ScaleError::ShortPlane {
                seq: src.seq,
                plane: src.planes.len(),
                len: 0,
                need: geometry[src.planes.len()].0 * geometry[src.planes.len()].1,
            });
        }
        let mut src_ptr = [std::ptr::null::<u8>(); 4];
        let mut src_stride = [0 as libc::c_int; 4];
        for (i, (p, &(min_stride, min_rows))) in src.planes.iter().zip(&geometry).enumerate() {
            // Never less than what swscale reads for this format and size.
            let need = if p.stride < min_stride || p.rows < min_rows {
                usize::MAX
            } else {
                p.stride * p.rows
            };
            if p.data.len() < need {
                return Err(ScaleError::ShortPlane {
                    seq: src.seq,
                    plane: i,
                    len: p.data.len(),
                    need,
                });
            }
            src_ptr[i] = p.data.as_ptr();
            src_stride[i] = p.stride as libc::c_int;
        }
        let ctx = &mut self.ctx.as_mut().expect("context set above").1;
        // SAFETY: (1) the context was made for exactly this input format and
        // size (`key`) and this output; (2) every plane swscale reads for
        // that format and size (`min_geometry`) is present, with at least
        // the rows and row bytes swscale reads, within the slice (checked
        // above), and the borrowed planes (a `Frame` keeps its slot alive
        // and unwritten) outlive this call; (3) the destination planes
        // are as the caller promised (this function's contract).
        unsafe {
            ffmpeg_next::ffi::sws_scale(
                ctx.as_mut_ptr(),
                src_ptr.as_ptr(),
                src_stride.as_ptr(),
                0,
                src.height as libc::c_int,
                dst_ptr.as_ptr(),
                dst_stride.as_ptr(),
            );
        }
        Ok(())
    }
}
