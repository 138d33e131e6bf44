//! numpy views of slot memory: OpenCV-shaped arrays whose data pointer is
//! the slot itself and whose `base` is a Python object keeping the slot (or
//! the loan) alive.

use std::ffi::c_void;

use numpy::npyffi::{self, npy_intp, NPY_ARRAY_WRITEABLE, PY_ARRAY_API};
use numpy::{Element, PyArrayDescrMethods};
use pyo3::prelude::*;

use framebus::{FrameSpec, PixelFormat};

use crate::errors::FormatError;

/// Shape and strides (bytes) of an array, relative to a start offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Byte offset of element `[0, 0, ...]` from the start of the slot.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<isize>,
    /// The element type: `uint8`, or `int16` for PCM audio.
    pub dtype: Dtype,
}

/// Element types of the views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dtype {
    U8,
    I16,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::I16 => 2,
        }
    }
}

/// A 1-D `uint8` view of `len` bytes (compressed frames, loans).
pub(crate) fn bytes_layout(len: usize) -> Layout {
    Layout {
        offset: 0,
        shape: vec![len],
        strides: vec![1],
        dtype: Dtype::U8,
    }
}

/// PCM audio `(samples, channels)` `int16`: a chunk of `len` bytes.
fn pcm(spec: &FrameSpec, len: usize) -> Layout {
    let channels = spec.width as usize;
    Layout {
        offset: 0,
        shape: vec![len / (2 * channels), channels],
        strides: vec![2 * channels as isize, 2],
        dtype: Dtype::I16,
    }
}

impl Layout {
    /// Bytes from the start of the slot to one past the last element.
    pub fn end(&self) -> usize {
        if self.shape.contains(&0) {
            return self.offset;
        }
        let last: usize = self
            .shape
            .iter()
            .zip(&self.strides)
            .map(|(&n, &s)| (n - 1) * s as usize)
            .sum();
        self.offset + last + self.dtype.size()
    }
}

fn packed(offset: usize, rows: usize, cols: usize, stride: usize, channels: usize) -> Layout {
    if channels == 1 {
        Layout {
            offset,
            shape: vec![rows, cols],
            strides: vec![stride as isize, 1],
            dtype: Dtype::U8,
        }
    } else {
        Layout {
            offset,
            shape: vec![rows, cols, channels],
            strides: vec![stride as isize, channels as isize, 1],
            dtype: Dtype::U8,
        }
    }
}

/// The whole frame as OpenCV expects it: RGB/BGR `(h, w, 3)`, GRAY
/// `(h, w)`, YUYV/UYVY `(h, w, 2)`, NV12/I420 `(h*3//2, w)`, MJPEG 1-D of
/// `len` bytes; PCM audio `(samples, channels)` `int16`.
pub(crate) fn frame_layout(name: &str, spec: &FrameSpec, len: usize) -> PyResult<Layout> {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let p = spec.planes();
    Ok(match spec.format {
        PixelFormat::Gray8 => packed(0, h, w, p[0].stride as usize, 1),
        PixelFormat::Rgb24 | PixelFormat::Bgr24 => packed(0, h, w, p[0].stride as usize, 3),
        PixelFormat::Yuyv | PixelFormat::Uyvy => packed(0, h, w, p[0].stride as usize, 2),
        PixelFormat::Nv12 | PixelFormat::I420 => {
            // OpenCV's single-array 4:2:0 view needs every chroma row to
            // follow the luma rows at the luma stride.
            let stride = p[0].stride as usize;
            let contiguous = match spec.format {
                PixelFormat::Nv12 => {
                    p[1].stride as usize == stride && p[1].offset as usize == stride * h
                }
                _ => p.iter().all(|q| q.stride == q.row_bytes),
            };
            if !contiguous {
                return Err(FormatError::new_err(format!(
                    "bus {name:?}: {} frame with padded rows has no single (h*3//2, w) view; use Frame.planes",
                    spec.format
                )));
            }
            packed(0, h * 3 / 2, w, stride, 1)
        }
        PixelFormat::S16le => pcm(spec, len),
        PixelFormat::Mjpeg | PixelFormat::H264 | PixelFormat::Opus | PixelFormat::Aac => {
            bytes_layout(len)
        }
    })
}

/// One view per plane: NV12 `[Y (h, w), UV (h/2, w/2, 2)]`, I420
/// `[Y, U, V]`, packed formats `[frame]`, MJPEG `[bytes]`.
pub(crate) fn plane_layouts(spec: &FrameSpec, len: usize) -> Vec<Layout> {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let p = spec.planes();
    match spec.format {
        PixelFormat::Nv12 => vec![
            packed(p[0].offset as usize, h, w, p[0].stride as usize, 1),
            packed(p[1].offset as usize, h / 2, w / 2, p[1].stride as usize, 2),
        ],
        PixelFormat::I420 => vec![
            packed(p[0].offset as usize, h, w, p[0].stride as usize, 1),
            packed(p[1].offset as usize, h / 2, w / 2, p[1].stride as usize, 1),
            packed(p[2].offset as usize, h / 2, w / 2, p[2].stride as usize, 1),
        ],
        PixelFormat::Gray8 => vec![packed(0, h, w, p[0].stride as usize, 1)],
        PixelFormat::Rgb24 | PixelFormat::Bgr24 => vec![packed(0, h, w, p[0].stride as usize, 3)],
        PixelFormat::Yuyv | PixelFormat::Uyvy => vec![packed(0, h, w, p[0].stride as usize, 2)],
        PixelFormat::S16le => vec![pcm(spec, len)],
        PixelFormat::Mjpeg | PixelFormat::H264 | PixelFormat::Opus | PixelFormat::Aac => {
            vec![bytes_layout(len)]
        }
    }
}

/// A `uint8` numpy array over `bytes[layout]` whose base is `base`.
///
/// # Safety
///
/// `bytes` must stay valid (mapped, and not written by anyone else while
/// the array is read, and only written through it when `writable`) for as
/// long as `base` lives; `layout.end() <= bytes.len()` is checked here.
pub(crate) unsafe fn array<'py>(
    base: Bound<'py, PyAny>,
    bytes: *const [u8],
    layout: &Layout,
    writable: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let py = base.py();
    if layout.end() > bytes.len() {
        return Err(FormatError::new_err(format!(
            "a view of {} bytes does not fit the {}-byte payload",
            layout.end(),
            bytes.len()
        )));
    }
    let mut dims: Vec<npy_intp> = layout.shape.iter().map(|&d| d as npy_intp).collect();
    let mut strides: Vec<npy_intp> = layout.strides.iter().map(|&s| s as npy_intp).collect();
    // SAFETY: `offset <= end <= len`, so the pointer stays inside `bytes`.
    let data = unsafe { (bytes as *const u8).add(layout.offset) };
    let flags = if writable { NPY_ARRAY_WRITEABLE } else { 0 };
    // SAFETY: (1) the numpy C API was imported by `PY_ARRAY_API` on first
    // use and we hold the GIL; (2) `dims` and `strides` have `ndim` entries
    // and describe only bytes inside `bytes` (checked above); (3) the
    // descriptor reference is stolen by NewFromDescr, which
    // `into_dtype_ptr` hands over.
    let arr = unsafe {
        PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            npyffi::get_type_object(py, npyffi::NpyTypes::PyArray_Type),
            match layout.dtype {
                Dtype::U8 => u8::get_dtype(py).into_dtype_ptr(),
                Dtype::I16 => i16::get_dtype(py).into_dtype_ptr(),
            },
            dims.len() as i32,
            dims.as_mut_ptr(),
            strides.as_mut_ptr(),
            data as *mut c_void,
            flags,
            std::ptr::null_mut(),
        )
    };
    // SAFETY: NewFromDescr returns a new reference or NULL with an error set.
    let arr = unsafe { Bound::from_owned_ptr_or_err(py, arr) }?;
    // SAFETY: `arr` is a fresh ndarray; SetBaseObject steals the reference
    // to `base`, which is what keeps the memory valid (caller's contract).
    let rc =
        unsafe { PY_ARRAY_API.PyArray_SetBaseObject(py, arr.as_ptr().cast(), base.into_ptr()) };
    if rc != 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(arr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use framebus::Fps;

    fn spec(f: PixelFormat) -> FrameSpec {
        FrameSpec::new(f, 64, 48, Fps::new(30)).unwrap()
    }

    #[test]
    fn opencv_shapes_cover_the_frame_exactly() {
        for (f, shape) in [
            (PixelFormat::Gray8, vec![48, 64]),
            (PixelFormat::Rgb24, vec![48, 64, 3]),
            (PixelFormat::Bgr24, vec![48, 64, 3]),
            (PixelFormat::Yuyv, vec![48, 64, 2]),
            (PixelFormat::Uyvy, vec![48, 64, 2]),
            (PixelFormat::Nv12, vec![72, 64]),
            (PixelFormat::I420, vec![72, 64]),
        ] {
            let s = spec(f);
            let l = frame_layout("t", &s, s.frame_size()).unwrap();
            assert_eq!(l.shape, shape, "{f}");
            assert_eq!(l.end(), s.frame_size(), "{f}");
        }
        let m = frame_layout("t", &spec(PixelFormat::Mjpeg), 1234).unwrap();
        assert_eq!((m.shape.clone(), m.end()), (vec![1234], 1234));
        let a = FrameSpec::audio(PixelFormat::S16le, 48000, 2, 960).unwrap();
        let l = frame_layout("t", &a, a.frame_size()).unwrap();
        assert_eq!((l.shape.clone(), l.dtype), (vec![960, 2], Dtype::I16));
        assert_eq!(l.end(), 960 * 2 * 2);
    }

    #[test]
    fn planes_stay_inside_the_frame() {
        for f in PixelFormat::ALL {
            let s = if f.is_audio() {
                FrameSpec::audio(f, 48000, 2, 960).unwrap()
            } else {
                spec(f)
            };
            let len = if f.is_compressed() {
                100
            } else {
                s.frame_size()
            };
            let planes = plane_layouts(&s, len);
            assert_eq!(planes.last().unwrap().end(), len, "{f}");
        }
        let nv12 = plane_layouts(&spec(PixelFormat::Nv12), 0);
        assert_eq!(nv12[1].shape, vec![24, 32, 2]);
        assert_eq!(nv12[1].offset, 64 * 48);
    }

    #[test]
    fn padded_rows_follow_the_strides() {
        let s = FrameSpec::with_strides(PixelFormat::Bgr24, 64, 48, Fps::new(30), &[256]).unwrap();
        let l = frame_layout("t", &s, s.frame_size()).unwrap();
        assert_eq!(l.strides, vec![256, 3, 1]);
        assert!(l.end() <= s.frame_size());
    }
}
