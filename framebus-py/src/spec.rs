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
    /// Format name: "yuyv", "uyvy", "nv12", "i420", "rgb24", "bgr24",
    /// "gray8", "mjpeg", "h264"; audio: "s16le", "opus", "aac".
    #[getter]
    fn format(&self) -> &'static str {
        self.inner.format.name()
    }

    /// True on an audio bus (`sample_rate`, `channels`, `chunk_samples`).
    #[getter]
    fn is_audio(&self) -> bool {
        self.inner.format.is_audio()
    }

    /// Audio: samples per second (0 on a video bus).
    #[getter]
    fn sample_rate(&self) -> u32 {
        self.inner.sample_rate()
    }

    /// Audio: channels (0 on a video bus).
    #[getter]
    fn channels(&self) -> u32 {
        self.inner.channels()
    }

    /// Audio: samples per chunk, one chunk per frame (0 on a video bus).
    #[getter]
    fn chunk_samples(&self) -> u32 {
        self.inner.chunk_samples()
    }

    /// Width in pixels (audio: channels).
    #[getter]
    fn width(&self) -> u32 {
        self.inner.width
    }

    /// Height in pixels (audio: samples per chunk).
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
        if self.inner.format.is_audio() {
            return format!(
                "Spec(format={:?}, sample_rate={}, channels={}, chunk_samples={})",
                self.inner.format.name(),
                self.inner.sample_rate(),
                self.inner.channels(),
                self.inner.chunk_samples()
            );
        }
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
/// watchdog_fires, wake_calls, keyframe_requests, keyframes_forced,
/// oversize, encoder_step, encoder_steps, encoder_fps, encoder_bitrate,
/// codec_profile_level, last_frame_age_ms and readers (a list of dicts with entry, pid,
/// frames, skipped, held, waiting, keyframe_requests, last_seq). The fields
/// are the core's `BusInfo` (one definition, through serde).
#[pyfunction]
#[pyo3(signature = (shm_dir = None))]
pub fn list_buses(
    py: Python<'_>,
    shm_dir: Option<std::path::PathBuf>,
) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let buses = py
        .detach(|| framebus::list_in(shm_dir.as_deref()))
        .map_err(|e| crate::errors::FramebusError::new_err(format!("listing buses: {e}")))?;
    // One definition of the fields: the core's `BusInfo`, through its
    // serde form (what `framebus ls --json` prints), read by Python's json.
    let json = py.import("json")?;
    let mut out = Vec::with_capacity(buses.len());
    for b in buses {
        let text = serde_json::to_string(&b)
            .map_err(|e| crate::errors::FramebusError::new_err(format!("listing buses: {e}")))?;
        out.push(json.call_method1("loads", (text,))?.cast_into::<PyDict>()?);
    }
    Ok(out)
}
