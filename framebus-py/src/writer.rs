//! `Writer` and `Loan`: put frames on a bus from Python, in place.
//!
//! The core's `Loan<'w>` borrows the `Writer` mutably, but a Python loan
//! lives across calls (`with writer.loan() as buf: ...`). So the writer is
//! boxed once and addressed through a raw pointer kept in [`Shared`]; a
//! `Loan<'static>` made from that pointer is sound because:
//!
//! 1. at most one loan exists at a time (`Shared::loaned`), and while it
//!    does every `Writer` method refuses to touch the writer, so the loan's
//!    `&mut Writer` is the only reference in use;
//! 2. the writer is freed only when no loan exists and no numpy buffer of
//!    a loan is alive (`Shared::maybe_free`); every loan and buffer holds
//!    an `Arc<Mutex<Shared>>`, so the box outlives them.
//!
//! Views that outlive a loan. A loan's own array is made read-only when
//! the loan ends, but numpy views derived from it while it was open
//! (`buf[0:10]`, `buf.view()`, `memoryview(buf)`) keep their write flag and
//! their pointer; Python cannot revoke them. So a loan's array does not
//! point into the writer's mapping of the segment: it points into a
//! mapping of that one slot made for this loan alone (`Loan::map_view`,
//! a `SlotView` owned by the array's base object, `LoanBuffer`), and the
//! loan publishes with `Loan::publish_sealed`, which first remaps that
//! mapping private copy-on-write in place. What that guarantees:
//!
//! - a write through a stale view after the publish lands in pages private
//!   to this process: no reader ever sees it, neither in the frame
//!   published nor in any later frame, because the next loan of the same
//!   slot gets a mapping of its own (a stale view never aliases it);
//! - the mapping is unmapped when the last view of it is gone, so no read
//!   or write through a view faults; what a stale view reads is not frozen
//!   (a page it has not written reads through to the slot, which later
//!   loans rewrite).
//!
//! The cost per frame: one populated `mmap` of the slot at loan, one at
//! publish, one `munmap` when the views go (docs/python.md has figures).
//! `publish(array)` copies into the writer's own mapping instead: no view
//! can escape it, so it is not sealed.
//!
//! After `fork()` every handle the child inherits is inert (the core's
//! `fork.rs`: its mappings, slot views included, become private zero
//! pages, its descriptors `/dev/null`); a loan open at the fork raises
//! `ForkedError` when the child publishes it.

use std::ptr::NonNull;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use framebus::{
    Fps, FrameFlags, FrameMeta, FrameSpec, Loan, PixelFormat, SlotView, Writer, WriterOptions,
};
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};

use crate::errors::{self, FormatError, FramebusError, Released};
use crate::spec::PySpec;
use crate::view;

/// The unique owner of a boxed [`Writer`] (from `Box::into_raw`).
struct WriterPtr(NonNull<Writer>);

// SAFETY: `Writer` is `Send`, and this pointer is its only owner; all use
// goes through the `Mutex<Shared>` or the one loan (see the module docs).
unsafe impl Send for WriterPtr {}

struct Shared {
    writer: Option<WriterPtr>,
    /// A `Loan<'static>` borrows the writer.
    loaned: bool,
    /// Numpy buffers of loans alive (each points into the mapping).
    buffers: usize,
    /// `close()` was called (or the Python writer is gone).
    closing: bool,
    /// Per slot, the unsealed view of the slot's last loan, when no view
    /// of it escaped that loan: the next loan of the slot reuses it (no
    /// `mmap` at all in the usual loop). Sealed views are never put here.
    views: Vec<Option<Arc<SlotView>>>,
}

impl Shared {
    /// Once closing: close the bus as soon as no loan borrows the writer
    /// (readers learn at once), and free the writer (unmapping) once no
    /// numpy buffer points into it any more.
    fn maybe_free(&mut self) {
        if self.closing && !self.loaned {
            if let Some(p) = &self.writer {
                // SAFETY: the pointer is live (still in the option) and no
                // loan borrows the writer (`loaned` is false); we hold the
                // mutex every other user goes through.
                unsafe { (*p.0.as_ptr()).shutdown() };
            }
        }
        if self.closing && !self.loaned {
            // Cached slot views go with the writer's bus.
            self.views.iter_mut().for_each(|v| *v = None);
        }
        if self.closing && !self.loaned && self.buffers == 0 {
            if let Some(p) = self.writer.take() {
                // SAFETY: the pointer came from `Box::into_raw` and is freed
                // once (taken out of the option); no loan or buffer refers to
                // the writer any more (checked above).
                drop(unsafe { Box::from_raw(p.0.as_ptr()) });
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Every loan and buffer holds an Arc of this, so none is left.
        self.closing = true;
        self.loaned = false;
        self.buffers = 0;
        self.maybe_free();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn meta(timestamp_ns: Option<u64>, realtime_ns: Option<u64>) -> FrameMeta {
    let mut m = FrameMeta::now();
    if let Some(t) = timestamp_ns {
        m.mono_ns = t;
    }
    if let Some(t) = realtime_ns {
        m.realtime_ns = t;
    }
    m
}

/// The producer of a bus, from Python.
///
/// `Writer(name, *, width, height, format, fps=30, slots=8, max_readers=64,
/// max_held=4, slot_capacity=None, shm_dir=None, source=None)` creates
/// the bus (raises `BusExists` if a live producer owns the name). Fill a
/// slot in place with `with writer.loan() as buf:` (published when the
/// block ends, dropped if it raises) or copy a whole frame with
/// `writer.publish(array)`. `close()` (or leaving a `with writer:` block)
/// closes the bus at once: readers see `ProducerGone` and the name is free
/// for a new producer. The mapping itself stays until the last numpy buffer
/// of a loan is gone (it points into it).
#[pyclass(module = "framebus._framebus", name = "Writer", frozen)]
pub struct PyWriter {
    name: String,
    spec: FrameSpec,
    capacity: usize,
    shared: Arc<Mutex<Shared>>,
}

impl PyWriter {
    /// Run `f` on the writer unless it is closed or loaned out.
    fn with<R>(&self, f: impl FnOnce(&mut Writer) -> R) -> PyResult<R> {
        let g = lock(&self.shared);
        if g.loaned {
            return Err(FramebusError::new_err(format!(
                "bus {:?}: a loan is open; publish or abandon it first",
                self.name
            )));
        }
        match (&g.writer, g.closing) {
            (Some(p), false) => {
                // SAFETY: not loaned, and the lock is held, so this is the
                // only reference to the writer (module docs, point 1).
                let w = unsafe { &mut *p.0.as_ptr() };
                Ok(f(w))
            }
            _ => Err(Released::new_err(format!(
                "bus {:?}: the writer is closed",
                self.name
            ))),
        }
    }
}

#[pymethods]
impl PyWriter {
    #[new]
    #[pyo3(signature = (name, *, width, height, format, fps = 30.0, slots = 8, max_readers = 64, max_held = 4, slot_capacity = None, shm_dir = None, source = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &str,
        width: u32,
        height: u32,
        format: &str,
        fps: f64,
        slots: u32,
        max_readers: u32,
        max_held: u32,
        slot_capacity: Option<usize>,
        shm_dir: Option<std::path::PathBuf>,
        source: Option<String>,
    ) -> PyResult<Self> {
        let pf = PixelFormat::from_str(format)
            .map_err(|_| FormatError::new_err(format!("bus {name:?}: unknown pixel format {format:?} (yuyv, uyvy, nv12, i420, rgb24, bgr24, gray8, mjpeg, h264)")))?;
        if !(fps.is_finite() && fps > 0.0 && fps < 1e6) {
            return Err(PyValueError::new_err(format!(
                "bus {name:?}: fps must be a positive number, got {fps}"
            )));
        }
        let fps = if fps.fract() == 0.0 {
            Fps::new(fps as u32)
        } else {
            Fps {
                num: (fps * 1000.0).round() as u32,
                den: 1000,
            }
        };
        let spec = FrameSpec::new(pf, width, height, fps).map_err(|e| errors::spec(name, e))?;
        let opts = WriterOptions {
            slots,
            max_readers,
            max_held,
            slot_capacity,
            shm_dir,
            source: source.unwrap_or_else(|| "python".to_string()),
            ..WriterOptions::default()
        };
        let writer = Writer::create(name, spec, opts).map_err(errors::create)?;
        writer.set_source_state(framebus::layout::source_state::RUNNING);
        let capacity = writer.slot_capacity();
        let ptr = NonNull::from(Box::leak(Box::new(writer)));
        Ok(PyWriter {
            name: name.to_string(),
            spec,
            capacity,
            shared: Arc::new(Mutex::new(Shared {
                writer: Some(WriterPtr(ptr)),
                loaned: false,
                buffers: 0,
                closing: false,
                views: vec![None; framebus::layout::MAX_SLOTS as usize],
            })),
        })
    }

    /// Bus name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Format and geometry of the frames.
    #[getter]
    fn spec(&self) -> PySpec {
        PySpec { inner: self.spec }
    }

    /// Bytes a slot holds (the largest MJPEG frame).
    #[getter]
    fn slot_capacity(&self) -> usize {
        self.capacity
    }

    /// Sequence number of the last published frame (0 before the first).
    #[getter]
    fn last_seq(&self) -> PyResult<u64> {
        self.with(|w| w.last_seq())
    }

    /// Loan a free slot to fill in place.
    ///
    /// Use as `with writer.loan() as buf:`; `buf` is a writable numpy view
    /// of the slot shaped like `Frame.array` (for MJPEG: the whole slot,
    /// 1-D; call `loan.set_len(n)` before the block ends). The frame is
    /// published when the block ends normally and dropped if it raises.
    /// `timestamp_ns`/`realtime_ns` set the capture times (default: the
    /// time of publishing; `Loan.publish()` can also set them). Raises `AllSlotsHeld` when readers hold every
    /// slot (the frame is dropped; the writer never waits for readers).
    #[pyo3(signature = (*, timestamp_ns = None, realtime_ns = None))]
    fn loan(
        &self,
        py: Python<'_>,
        timestamp_ns: Option<u64>,
        realtime_ns: Option<u64>,
    ) -> PyResult<PyLoan> {
        let mut g = lock(&self.shared);
        let p = match (&g.writer, g.closing, g.loaned) {
            (_, _, true) => {
                return Err(FramebusError::new_err(format!(
                    "bus {:?}: a loan is already open; publish or abandon it first",
                    self.name
                )))
            }
            (Some(p), false, false) => p.0,
            _ => {
                return Err(Released::new_err(format!(
                    "bus {:?}: the writer is closed",
                    self.name
                )))
            }
        };
        // SAFETY: no loan is open and the lock is held, so nothing else
        // uses the writer; setting `loaned` below keeps it that way until
        // this loan ends, and the writer outlives the loan (module docs).
        let w: &'static mut Writer = unsafe { &mut *p.as_ptr() };
        let loan = w.loan().map_err(errors::publish)?;
        let slot = loan.slot() as usize;
        let view = match g.views[slot].take() {
            Some(v) => v,
            // Dropping the loan on error abandons the slot.
            None => Arc::new(loan.map_view().map_err(errors::publish)?),
        };
        g.loaned = true;
        // The buffer (base object of the array) counts itself in
        // `Shared::buffers`; dropping it uncounts it.
        g.buffers += 1;
        drop(g);
        let pyloan = PyLoan {
            bus: self.name.clone(),
            shared: self.shared.clone(),
            state: Mutex::new(LoanState {
                loan: Some(loan),
                view: Some(view.clone()),
                array: None,
                stamps: (timestamp_ns, realtime_ns),
                seq: None,
            }),
        };
        let slot: *mut [u8] = std::ptr::slice_from_raw_parts_mut(view.as_mut_ptr(), self.capacity);
        let buffer = Bound::new(
            py,
            LoanBuffer {
                shared: self.shared.clone(),
                _view: view,
            },
        )?;
        let layout = if self.spec.format.is_compressed() {
            Ok(view::bytes_layout(self.capacity))
        } else {
            view::frame_layout(&self.name, &self.spec, self.spec.frame_size())
        };
        let layout = layout?;
        // SAFETY: the slot view maps the claimed slot (`capacity` bytes and
        // more) for this loan alone, and the buffer owns it as long as this
        // array or any view of it lives. The array is made read-only when
        // the loan ends; views derived from it stay writable, and their
        // writes after the publish land in the sealed (private) pages,
        // which readers never see (module docs: "Views that outlive a
        // loan").
        let array = unsafe { view::array(buffer.into_any(), slot, &layout, true) }?;
        lock(&pyloan.state).array = Some(array.unbind());
        Ok(pyloan)
    }

    /// Copy one frame into a slot and publish it; returns its sequence
    /// number. `data`: a C-contiguous `uint8` numpy array (any shape) or
    /// `bytes` of exactly one frame (MJPEG: one JPEG; an encoded bus: one
    /// access unit, with `keyframe`, `pts` in the bus's time base and the
    /// `source_seq` of the raw frame it came from).
    #[pyo3(signature = (data, *, timestamp_ns = None, realtime_ns = None, keyframe = true, pts = 0, source_seq = 0))]
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        data: &Bound<'_, PyAny>,
        timestamp_ns: Option<u64>,
        realtime_ns: Option<u64>,
        keyframe: bool,
        pts: u64,
        source_seq: u64,
    ) -> PyResult<u64> {
        let mut m = meta(timestamp_ns, realtime_ns);
        m.flags = if keyframe {
            FrameFlags::KEY
        } else {
            FrameFlags(0)
        };
        m.pts = pts;
        m.source_seq = source_seq;
        if let Ok(b) = data.cast::<PyBytes>() {
            return self
                .with(|w| w.publish_from(b.as_bytes(), m))?
                .map_err(errors::publish);
        }
        let arr: PyReadonlyArrayDyn<'_, u8> = data.extract().map_err(|_| {
            FormatError::new_err(format!(
                "bus {:?}: publish() takes a uint8 numpy array or bytes, got {}",
                self.name,
                data.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        if !arr.is_c_contiguous() {
            return Err(FormatError::new_err(format!(
                "bus {:?}: publish() needs a C-contiguous array (use numpy.ascontiguousarray)",
                self.name
            )));
        }
        let bytes = arr
            .as_slice()
            .map_err(|e| FormatError::new_err(format!("bus {:?}: {e}", self.name)))?;
        self.with(|w| w.publish_from(bytes, m))?
            .map_err(errors::publish)
    }

    /// Keyframes readers of this (encoded) bus have asked for so far: an
    /// encoder forces one when this grew since the value it last honoured.
    #[getter]
    fn keyframe_requests(&self) -> PyResult<u64> {
        self.with(|w| w.keyframe_requests())
    }

    /// Set the codec configuration of an encoded bus, which readers get
    /// from `Reader.codec()`: `time_base` `(num, den)` seconds (the unit of
    /// `pts`), H.264 `profile_level`, and `config` (SPS and PPS, Annex B;
    /// at most 256 bytes).
    #[pyo3(signature = (*, time_base, profile_level = 0, config = None))]
    fn set_codec(
        &self,
        time_base: (u32, u32),
        profile_level: u32,
        config: Option<Vec<u8>>,
    ) -> PyResult<()> {
        let codec = framebus::CodecConfig {
            time_base,
            profile_level,
            config: config.unwrap_or_default(),
        };
        self.with(|w| w.set_codec(&codec))?.map_err(errors::publish)
    }

    /// Close the bus: readers see `ProducerGone` and the segment is
    /// removed. Deferred while a loan is open (until it ends).
    fn close(&self) {
        let mut g = lock(&self.shared);
        g.closing = true;
        g.maybe_free();
    }

    /// Whether the bus is closed (`close()` was called and no loan was
    /// open, or the loan has ended since).
    #[getter]
    fn closed(&self) -> bool {
        let g = lock(&self.shared);
        g.closing && !g.loaned
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "Writer({:?}, format={:?}, {}x{})",
            self.name,
            self.spec.format.name(),
            self.spec.width,
            self.spec.height
        )
    }
}

impl Drop for PyWriter {
    fn drop(&mut self) {
        let mut g = lock(&self.shared);
        g.closing = true;
        g.maybe_free();
    }
}

/// Whether a writable handle on the loan's memory may exist besides the
/// loan's own (now read-only) array and one variable holding it.
///
/// numpy sets the base of every view derived from the array (slices,
/// `view()`, `reshape`, `np.asarray`, views of views) to the array's own
/// base, the `LoanBuffer`, so its reference count counts them; a
/// `memoryview` (and anything built on it) holds a reference to the array
/// itself. Conservative: a second variable holding the array also counts
/// as escaped (it is read-only, but telling it apart is not possible), and
/// then the slot is sealed, which is only slower. Not seen: raw addresses
/// taken out of Python's reach (`ctypes`, `__array_interface__`).
fn views_escaped(array: &Bound<'_, PyAny>) -> PyResult<bool> {
    // The loan's state holds one reference; allow one more (`with ... as
    // buf:` or `buf = loan.array`).
    // SAFETY: `array` is a live object (we hold the GIL and a reference);
    // Py_REFCNT only reads its reference count.
    let array_refs = unsafe { pyo3::ffi::Py_REFCNT(array.as_ptr()) };
    // The array's `base` attribute (one) and our `base` handle here (one).
    let base = array.getattr("base")?;
    // SAFETY: as above.
    let buffer_refs = unsafe { pyo3::ffi::Py_REFCNT(base.as_ptr()) };
    Ok(array_refs > 2 || buffer_refs > 2)
}

/// Base object of a loan's numpy buffer: owns the loan's slot view (its
/// memory) and keeps the writer alive.
#[pyclass(module = "framebus._framebus", name = "_LoanBuffer", frozen)]
pub struct LoanBuffer {
    shared: Arc<Mutex<Shared>>,
    _view: Arc<SlotView>,
}

impl Drop for LoanBuffer {
    fn drop(&mut self) {
        let mut g = lock(&self.shared);
        g.buffers -= 1;
        g.maybe_free();
    }
}

struct LoanState {
    loan: Option<Loan<'static>>,
    /// The loan's own mapping of its slot (the array's memory).
    view: Option<Arc<SlotView>>,
    array: Option<Py<PyAny>>,
    /// Capture times given to `Writer.loan()`; `None`: the time of publishing.
    stamps: (Option<u64>, Option<u64>),
    seq: Option<u64>,
}

/// A slot loaned for writing (from `Writer.loan()`).
///
/// `with loan as buf:` gives the writable numpy view (`loan.array`);
/// leaving the block publishes the frame, or abandons it if the block
/// raised. `publish()` and `abandon()` do the same by hand. Afterwards the
/// view is read-only.
#[pyclass(module = "framebus._framebus", name = "Loan", frozen)]
pub struct PyLoan {
    bus: String,
    shared: Arc<Mutex<Shared>>,
    state: Mutex<LoanState>,
}

impl PyLoan {
    /// End the loan: publish it (`Some(seq)`) or drop it unpublished.
    /// `stamps` override the capture times given to `Writer.loan()`.
    fn finish(
        &self,
        py: Python<'_>,
        publish: bool,
        stamps: (Option<u64>, Option<u64>),
    ) -> PyResult<Option<u64>> {
        let mut st = lock(&self.state);
        let Some(loan) = st.loan.take() else {
            return Err(Released::new_err(format!(
                "bus {:?}: the loan already ended",
                self.bus
            )));
        };
        let view = st.view.take().expect("an open loan has its view");
        // Lock the loan's own array first: from here on no writable view
        // can be derived from it. Then look for writable views taken while
        // it was open (the GIL is held: no Python code runs in between).
        let escaped = match &st.array {
            Some(a) => {
                let a = a.bind(py);
                let kw = PyDict::new(py);
                kw.set_item("write", false)?;
                a.call_method("setflags", (), Some(&kw))?;
                views_escaped(a)?
            }
            None => false,
        };
        let outcome = match (publish, escaped) {
            // Seal, then publish: the escaped views write private pages.
            (true, true) => loan
                .publish_sealed(
                    meta(stamps.0.or(st.stamps.0), stamps.1.or(st.stamps.1)),
                    &view,
                )
                .map(Some),
            // Nothing escaped: publish as is and keep the view for the
            // slot's next loan. (Forked children get `Forked` here.)
            (true, false) => loan
                .try_publish(meta(stamps.0.or(st.stamps.0), stamps.1.or(st.stamps.1)))
                .map(Some),
            // An abandoned loan's escaped views are sealed too, so they can
            // never write into a later frame of the slot.
            (false, true) => {
                let sealed = loan.seal_view(&view).map(|()| None);
                drop(loan);
                sealed
            }
            (false, false) => {
                drop(loan);
                Ok(None)
            }
        };
        let reusable = !escaped;
        let seq = outcome.as_ref().ok().copied().flatten();
        st.seq = seq;
        st.array = None;
        drop(st);
        let mut g = lock(&self.shared);
        if reusable && outcome.is_ok() && g.writer.is_some() {
            let slot = view.slot() as usize;
            g.views[slot] = Some(view);
        }
        g.loaned = false;
        g.maybe_free();
        drop(g);
        outcome.map_err(errors::publish)
    }
}

#[pymethods]
impl PyLoan {
    /// The writable numpy view of the slot (see `Writer.loan`).
    #[getter]
    fn array(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        lock(&self.state)
            .array
            .as_ref()
            .map(|a| a.clone_ref(py))
            .ok_or_else(|| Released::new_err(format!("bus {:?}: the loan already ended", self.bus)))
    }

    /// Set the payload length in bytes (MJPEG; raw frames are always one
    /// frame long).
    fn set_len(&self, n: usize) -> PyResult<()> {
        let mut st = lock(&self.state);
        match st.loan.as_mut() {
            Some(l) => l.set_len(n).map_err(errors::publish),
            None => Err(Released::new_err(format!(
                "bus {:?}: the loan already ended",
                self.bus
            ))),
        }
    }

    /// Sequence number the frame was published under (`None` before, or
    /// if abandoned).
    #[getter]
    fn seq(&self) -> Option<u64> {
        lock(&self.state).seq
    }

    /// Publish the frame now; returns its sequence number.
    /// `timestamp_ns`/`realtime_ns` set the capture times (default: those
    /// given to `Writer.loan()`, else now).
    #[pyo3(signature = (*, timestamp_ns = None, realtime_ns = None))]
    fn publish(
        &self,
        py: Python<'_>,
        timestamp_ns: Option<u64>,
        realtime_ns: Option<u64>,
    ) -> PyResult<u64> {
        Ok(self
            .finish(py, true, (timestamp_ns, realtime_ns))?
            .unwrap_or_default())
    }

    /// Drop the frame unpublished and give the slot back.
    fn abandon(&self, py: Python<'_>) -> PyResult<()> {
        self.finish(py, false, (None, None)).map(|_| ())
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.array(py)
    }

    #[pyo3(signature = (exc_type = None, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let ok = exc_type.is_none_or(|t| t.is_none());
        if lock(&self.state).loan.is_some() {
            self.finish(py, ok, (None, None))?;
        }
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let st = lock(&self.state);
        let what = match (&st.loan, st.seq) {
            (Some(_), _) => "open".to_string(),
            (None, Some(s)) => format!("published as {s}"),
            (None, None) => "abandoned".to_string(),
        };
        format!("Loan(bus={:?}, {what})", self.bus)
    }
}

impl Drop for PyLoan {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if st.loan.take().is_some() {
            // Dropped unpublished: the core abandoned the slot.
            let mut g = lock(&self.shared);
            g.loaned = false;
            g.maybe_free();
        }
    }
}
