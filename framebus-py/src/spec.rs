//! `Spec` (what frames on a bus look like) and `list_buses()`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use framebus::FrameSpec;

/// What frames on a bus look like: pixel format, size, rate and plane layout.
#[pyclass(module = "framebus._framebus", name = "Spec", frozen)]
#[derive(Clone)]
pub struct PySpec {
    pub(crate) inner: FrameSpec,
}

#[pymethods]
impl PySpec {
    /// Pixel format name: "yuyv", "uyvy", "nv12", "i420", "rgb24", "bgr24",
    /// "gray8" or "mjpeg".
    #[getter]
    fn format(&self) -> &'static str {
        self.inner.format.name()
    }

    /// Width in pixels.
    #[getter]
    fn width(&self) -> u32 {
        self.inner.width
    }

    /// Height in pixels.
    #[getter]
    fn height(&self) -> u32 {
        self.inner.height
    }

    /// Nominal frame rate in frames per second.
    #[getter]
    fn fps(&self) -> f64 {
        self.inner.fps.as_f64()
    }

    /// Nominal frame rate as a fraction `(num, den)`.
    #[getter]
    fn fps_fraction(&self) -> (u32, u32) {
        (self.inner.fps.num, self.inner.fps.den)
    }

    /// Bytes from one row to the next, per plane (empty for MJPEG).
    #[getter]
    fn strides(&self) -> Vec<u32> {
        self.inner.planes().iter().map(|p| p.stride).collect()
    }

    /// Byte offset of each plane in the frame (empty for MJPEG).
    #[getter]
    fn plane_offsets(&self) -> Vec<u32> {
        self.inner.planes().iter().map(|p| p.offset).collect()
    }

    /// Bytes of one raw frame (0 for MJPEG, whose frames vary in size).
    #[getter]
    fn frame_size(&self) -> usize {
        self.inner.frame_size()
    }

    fn __repr__(&self) -> String {
        format!(
            "Spec(format={:?}, width={}, height={}, fps={})",
            self.inner.format.name(),
            self.inner.width,
            self.inner.height,
            self.inner.fps
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PySpec>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.inner.format, self.inner.width, self.inner.height).hash(&mut h);
        (self.inner.fps.num, self.inner.fps.den).hash(&mut h);
        h.finish()
    }
}

/// Every bus in the shm directory (`FRAMEBUS_SHM_DIR` or `/dev/shm`, or
/// `shm_dir`), as dicts with the fields of `framebus ls --json`: name, path,
/// state, problem, format, width, height, fps, measured_fps, slots,
/// slot_capacity, producer_pid, producer_alive, source, source_state,
/// published, dropped_all_held, captured, source_dropped, restarts,
/// watchdog_fires, last_frame_age_ms and readers (a list of dicts with
/// entry, pid, frames, skipped, held, last_seq).
#[pyfunction]
#[pyo3(signature = (shm_dir = None))]
pub fn list_buses(
    py: Python<'_>,
    shm_dir: Option<std::path::PathBuf>,
) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let buses = py
        .detach(|| framebus::list_in(shm_dir.as_deref()))
        .map_err(|e| crate::errors::FramebusError::new_err(format!("listing buses: {e}")))?;
    let mut out = Vec::with_capacity(buses.len());
    for b in buses {
        let d = PyDict::new(py);
        d.set_item("name", &b.name)?;
        d.set_item("path", b.path.to_string_lossy())?;
        d.set_item("state", &b.state)?;
        d.set_item("problem", &b.problem)?;
        d.set_item("format", &b.format)?;
        d.set_item("width", b.width)?;
        d.set_item("height", b.height)?;
        d.set_item("fps", b.fps)?;
        d.set_item("measured_fps", b.measured_fps)?;
        d.set_item("slots", b.slots)?;
        d.set_item("slot_capacity", b.slot_capacity)?;
        d.set_item("producer_pid", b.producer_pid)?;
        d.set_item("producer_alive", b.producer_alive)?;
        d.set_item("source", &b.source)?;
        d.set_item("source_state", &b.source_state)?;
        d.set_item("published", b.published)?;
        d.set_item("dropped_all_held", b.dropped_all_held)?;
        d.set_item("captured", b.captured)?;
        d.set_item("source_dropped", b.source_dropped)?;
        d.set_item("restarts", b.restarts)?;
        d.set_item("watchdog_fires", b.watchdog_fires)?;
        d.set_item("last_frame_age_ms", b.last_frame_age_ms)?;
        let mut readers = Vec::with_capacity(b.readers.len());
        for r in &b.readers {
            let rd = PyDict::new(py);
            rd.set_item("entry", r.entry)?;
            rd.set_item("pid", r.pid)?;
            rd.set_item("frames", r.frames)?;
            rd.set_item("skipped", r.skipped)?;
            rd.set_item("held", r.held)?;
            rd.set_item("last_seq", r.last_seq)?;
            readers.push(rd);
        }
        d.set_item("readers", readers)?;
        out.push(d);
    }
    Ok(out)
}
