//! `Frame`: one frame held in place, and its numpy views.

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::errors::Released;
use crate::spec::PySpec;
use crate::view::{self, Layout};

/// The base object of every array viewing a frame: while it lives, the
/// reader holds the slot and the producer writes other slots.
#[pyclass(module = "framebus._framebus", name = "_FrameHold", frozen)]
pub struct FrameHold {
    /// Never read: owning it is the point.
    _frame: Arc<framebus::Frame>,
}

/// One frame, held in place in shared memory.
///
/// `array` is a read-only numpy view of the slot (no copy). The slot stays
/// held while the frame or any array (or slice of one) taken from it is
/// alive; `release()` (or leaving a `with frame:` block) drops the frame's
/// own hold, after which pixel access raises `Released`.
#[pyclass(module = "framebus._framebus", name = "Frame", frozen)]
pub struct PyFrame {
    bus: String,
    hold: Mutex<Option<Arc<framebus::Frame>>>,
    /// `array`, made on first use.
    array: Mutex<Option<Py<PyAny>>>,
    seq: u64,
    mono_ns: u64,
    realtime_ns: u64,
    skipped: u64,
    key: bool,
    pts: u64,
    source_seq: u64,
    len: usize,
    spec: framebus::FrameSpec,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PyFrame {
    pub(crate) fn new(bus: &str, frame: framebus::Frame) -> PyFrame {
        PyFrame {
            bus: bus.to_string(),
            seq: frame.seq(),
            mono_ns: frame.mono_ns(),
            realtime_ns: frame.realtime_ns(),
            skipped: frame.skipped(),
            key: frame.flags().contains(framebus::FrameFlags::KEY),
            pts: frame.pts(),
            source_seq: frame.source_seq(),
            len: frame.len(),
            spec: *frame.spec(),
            hold: Mutex::new(Some(Arc::new(frame))),
            array: Mutex::new(None),
        }
    }

    fn held(&self) -> PyResult<Arc<framebus::Frame>> {
        lock(&self.hold).clone().ok_or_else(|| {
            Released::new_err(format!(
                "bus {:?}: frame {} was released; take a new one or copy() before releasing",
                self.bus, self.seq
            ))
        })
    }

    fn view<'py>(&self, py: Python<'py>, layout: &Layout) -> PyResult<Bound<'py, PyAny>> {
        let frame = self.held()?;
        let bytes: *const [u8] = &**frame;
        let base = Bound::new(py, FrameHold { _frame: frame })?.into_any();
        // SAFETY: `base` owns an `Arc` of the frame, so the reader holds
        // the slot (the writer never writes it) and the attachment keeps
        // the mapping alive for as long as the array lives; the view is
        // read-only, matching the reader's read-only data mapping.
        unsafe { view::array(base, bytes, layout, false) }
    }
}

#[pymethods]
impl PyFrame {
    /// Read-only zero-copy numpy view of the frame, shaped for OpenCV:
    /// RGB/BGR `(h, w, 3)`, GRAY `(h, w)`, YUYV/UYVY `(h, w, 2)`, NV12/I420
    /// `(h*3//2, w)`, MJPEG 1-D `uint8` of the JPEG's length. Its `base`
    /// keeps the slot held.
    #[getter]
    fn array(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut cache = lock(&self.array);
        if let Some(a) = &*cache {
            self.held()?;
            return Ok(a.clone_ref(py));
        }
        let layout = view::frame_layout(&self.bus, &self.spec, self.len)?;
        let a = self.view(py, &layout)?.unbind();
        *cache = Some(a.clone_ref(py));
        Ok(a)
    }

    /// One read-only view per plane: NV12 `[Y (h, w), UV (h/2, w/2, 2)]`,
    /// I420 `[Y (h, w), U (h/2, w/2), V (h/2, w/2)]`, packed formats and
    /// MJPEG `[array]`.
    #[getter]
    fn planes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let views = view::plane_layouts(&self.spec, self.len)
            .iter()
            .map(|l| self.view(py, l))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, views)
    }

    /// A copy of `array` that owns its memory and does not hold the slot.
    fn copy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let layout = view::frame_layout(&self.bus, &self.spec, self.len)?;
        self.view(py, &layout)?.call_method0("copy")
    }

    /// Drop this frame's hold on the slot. Arrays taken from the frame keep
    /// it held until they are gone; the frame's pixel accessors raise
    /// `Released` from now on. Releasing twice is allowed.
    fn release(&self) {
        lock(&self.array).take();
        lock(&self.hold).take();
    }

    /// Whether `release()` was called.
    #[getter]
    fn released(&self) -> bool {
        lock(&self.hold).is_none()
    }

    /// Sequence number (1 for a producer's first frame).
    #[getter]
    fn seq(&self) -> u64 {
        self.seq
    }

    /// Capture time, CLOCK_MONOTONIC nanoseconds (comparable with
    /// `time.monotonic_ns()`).
    #[getter]
    fn timestamp_ns(&self) -> u64 {
        self.mono_ns
    }

    /// Capture time, CLOCK_REALTIME nanoseconds (comparable with
    /// `time.time_ns()`).
    #[getter]
    fn realtime_ns(&self) -> u64 {
        self.realtime_ns
    }

    /// Frames published between the previous frame this reader took and
    /// this one, which the reader never saw.
    #[getter]
    fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether the frame is a key frame (always true for raw and MJPEG).
    #[getter]
    fn key(&self) -> bool {
        self.key
    }

    /// Same as `key` (the name encoded-bus code expects).
    #[getter]
    fn keyframe(&self) -> bool {
        self.key
    }

    /// Encoded frames: presentation time in the bus's time base
    /// (`Reader.codec().time_base`); 0 for raw frames.
    #[getter]
    fn pts(&self) -> u64 {
        self.pts
    }

    /// Encoded frames: sequence number of the raw frame this one was made
    /// from (its capture times are `timestamp_ns`/`realtime_ns`); 0 if none.
    #[getter]
    fn source_seq(&self) -> u64 {
        self.source_seq
    }

    /// Pixel format name ("nv12", "bgr24", ...).
    #[getter]
    fn format(&self) -> &'static str {
        self.spec.format.name()
    }

    /// Width in pixels.
    #[getter]
    fn width(&self) -> u32 {
        self.spec.width
    }

    /// Height in pixels.
    #[getter]
    fn height(&self) -> u32 {
        self.spec.height
    }

    /// Payload length in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.len
    }

    /// Format and geometry of the frame.
    #[getter]
    fn spec(&self) -> PySpec {
        PySpec { inner: self.spec }
    }

    /// Whether `address` lies inside the bus's shared data mapping (tests
    /// proving that views are zero-copy).
    fn _in_mapping(&self, address: usize) -> PyResult<bool> {
        Ok(self.held()?.is_in_mapping(address as *const u8))
    }

    /// Slot index of the frame in the ring (diagnostics and tests).
    #[getter]
    fn _slot(&self) -> PyResult<u32> {
        Ok(self.held()?.slot())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.release();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "Frame(bus={:?}, seq={}, format={:?}, {}x{}, skipped={}{})",
            self.bus,
            self.seq,
            self.spec.format.name(),
            self.spec.width,
            self.spec.height,
            self.skipped,
            if self.released() { ", released" } else { "" }
        )
    }
}
