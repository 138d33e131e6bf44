//! `Reader`: attach to a bus and take frames, blocking with the GIL
//! released and Ctrl-C honoured.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use framebus::{AttachError, ReadError, Reader, ReaderOptions};

use crate::errors::{self, FramebusError, Released, Timeout};
use crate::frame::PyFrame;
use crate::spec::PySpec;

/// Longest stretch a blocking call sleeps without the GIL before it looks
/// for pending signals (so Ctrl-C lands within this time).
pub(crate) const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// A reader of one bus.
///
/// `Reader(name, *, wait=False, timeout=None, shm_dir=None)`:
///
/// - `wait`: `False` raises `BusNotFound`/`ProducerGone` at once when the
///   bus has no live producer; `True` waits for one indefinitely; a number
///   waits that many seconds, then raises `Timeout`.
/// - `timeout`: default timeout in seconds of `next()` and of iteration
///   (`None` blocks until a frame comes).
/// - `shm_dir`: directory of the segments (default `FRAMEBUS_SHM_DIR` or
///   `/dev/shm`).
///
/// `for frame in reader:` yields each new frame (the newest one when
/// several came; see `Frame.skipped`). Blocking happens without the GIL and
/// Ctrl-C interrupts it. When the producer goes away, `next()` and
/// iteration raise `ProducerGone` once; the following call waits for a new
/// producer of the same name and continues with its frames.
#[pyclass(module = "framebus._framebus", name = "Reader", frozen, subclass)]
pub struct PyReader {
    name: String,
    timeout: Option<f64>,
    inner: Mutex<Option<Reader>>,
}

fn seconds(what: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a non-negative number of seconds, got {s}"
        ))
    })
}

impl PyReader {
    fn lock(&self) -> PyResult<MutexGuard<'_, Option<Reader>>> {
        match self.inner.try_lock() {
            Ok(g) if g.is_some() => Ok(g),
            Ok(_) => Err(Released::new_err(format!(
                "bus {:?}: the reader is closed",
                self.name
            ))),
            Err(std::sync::TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => Err(FramebusError::new_err(format!(
                "bus {:?}: the reader is in use by another thread (a Reader is not shared between threads)",
                self.name
            ))),
        }
    }

    /// Wait for the next frame in chunks of at most [`SIGNAL_CHECK`]
    /// without the GIL, checking for signals between chunks.
    fn next_frame(&self, py: Python<'_>, timeout: Option<f64>, encoded: bool) -> PyResult<PyFrame> {
        let deadline = match timeout {
            Some(t) => Some(Instant::now() + seconds("timeout", t)?),
            None => None,
        };
        loop {
            let chunk = deadline.map_or(SIGNAL_CHECK, |d| {
                d.saturating_duration_since(Instant::now())
                    .min(SIGNAL_CHECK)
            });
            let got = {
                let mut guard = self.lock()?;
                let reader = guard.as_mut().expect("checked by lock()");
                py.detach(|| {
                    if encoded {
                        reader.next_encoded(Some(chunk))
                    } else {
                        reader.next(Some(chunk))
                    }
                })
            };
            match got {
                Ok(frame) => return Ok(PyFrame::new(&self.name, frame)),
                Err(ReadError::Timeout { .. }) => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Timeout::new_err(format!(
                            "bus {:?}: no new frame within {:.3} s",
                            self.name,
                            timeout.unwrap_or_default()
                        )));
                    }
                }
                Err(e) => return Err(errors::read(e)),
            }
        }
    }
}

#[pymethods]
impl PyReader {
    #[new]
    #[pyo3(
        signature = (name, *, wait = None, timeout = None, shm_dir = None),
        text_signature = "(name, *, wait=False, timeout=None, shm_dir=None)"
    )]
    fn new(
        py: Python<'_>,
        name: &str,
        wait: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
        shm_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        if let Some(t) = timeout {
            seconds("timeout", t)?;
        }
        // wait: False/None = no wait, True = forever, a number = seconds.
        let wait: Option<Option<Duration>> = match wait {
            None => None,
            Some(w) if w.is_instance_of::<pyo3::types::PyBool>() => {
                if w.extract::<bool>()? {
                    Some(None)
                } else {
                    None
                }
            }
            Some(w) => Some(Some(seconds("wait", w.extract::<f64>()?)?)),
        };
        let deadline = wait.flatten().map(|w| Instant::now() + w);
        let reader = loop {
            let chunk = wait.map(|_| {
                deadline.map_or(SIGNAL_CHECK, |d| {
                    d.saturating_duration_since(Instant::now())
                        .min(SIGNAL_CHECK)
                })
            });
            let opts = ReaderOptions {
                wait: chunk,
                shm_dir: shm_dir.clone(),
            };
            match py.detach(|| Reader::attach(name, opts)) {
                Ok(r) => break r,
                Err(AttachError::Timeout { .. }) => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Timeout::new_err(format!(
                            "bus {name:?} did not appear within {:.3} s",
                            wait.flatten().unwrap_or_default().as_secs_f64()
                        )));
                    }
                }
                Err(e) => return Err(errors::attach(e)),
            }
        };
        Ok(PyReader {
            name: name.to_string(),
            timeout,
            inner: Mutex::new(Some(reader)),
        })
    }

    /// Bus name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Format and geometry of the current (or last) producer's frames.
    #[getter]
    fn spec(&self) -> PyResult<PySpec> {
        Ok(PySpec {
            inner: *self.lock()?.as_ref().expect("checked by lock()").spec(),
        })
    }

    /// Default timeout in seconds of `next()` and iteration (`None`: none).
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.timeout
    }

    /// Whether the reader is attached to a live producer.
    #[getter]
    fn connected(&self) -> PyResult<bool> {
        Ok(self
            .lock()?
            .as_ref()
            .expect("checked by lock()")
            .is_connected())
    }

    /// Sequence number of the last frame taken (0 before the first).
    #[getter]
    fn last_seq(&self) -> PyResult<u64> {
        Ok(self.lock()?.as_ref().expect("checked by lock()").last_seq())
    }

    /// Wait for a frame newer than the last one taken and return it.
    ///
    /// `timeout` in seconds (default: the reader's `timeout`; `None` waits
    /// forever) raises `Timeout` when it passes. Raises `ProducerGone` once
    /// when the producer goes away; the next call waits for a new producer.
    #[pyo3(signature = (timeout = None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyFrame> {
        self.next_frame(py, timeout.or(self.timeout), false)
    }

    /// Encoded buses: wait for the next frame *in order* (what a decoder
    /// needs). The frame after the last one taken while the ring still has
    /// it; else (the first call, or after falling behind) the newest
    /// keyframe in the ring, with `skipped` saying how many frames were
    /// lost; with no keyframe to restart from, a keyframe is requested from
    /// the encoder and awaited. Raises like `next()`.
    #[pyo3(signature = (timeout = None))]
    fn next_encoded(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyFrame> {
        self.next_frame(py, timeout.or(self.timeout), true)
    }

    /// Ask the encoder of this (encoded) bus for a keyframe (counted per
    /// reader in `framebus stat`; honoured within a frame interval).
    fn request_keyframe(&self) -> PyResult<()> {
        let mut guard = self.lock()?;
        let reader = guard.as_mut().expect("checked by lock()");
        reader.request_keyframe().map_err(errors::read)
    }

    /// The codec configuration of an encoded bus (`None` before the writer
    /// set one, or with no producer).
    fn codec(&self) -> PyResult<Option<PyCodec>> {
        let mut guard = self.lock()?;
        let reader = guard.as_mut().expect("checked by lock()");
        Ok(reader.codec().map_err(errors::read)?.map(|c| PyCodec {
            time_base: c.time_base,
            profile_level: c.profile_level,
            config: c.config,
        }))
    }

    /// The newest frame without waiting, even if taken before; `None` when
    /// there is none yet (or the producer is gone).
    fn latest(&self) -> PyResult<Option<PyFrame>> {
        let mut guard = self.lock()?;
        let reader = guard.as_mut().expect("checked by lock()");
        match reader.latest() {
            Ok(f) => Ok(f.map(|f| PyFrame::new(&self.name, f))),
            Err(e) => Err(errors::read(e)),
        }
    }

    /// The newest frame not taken yet, without waiting; `None` if there is
    /// no new one.
    fn try_next(&self) -> PyResult<Option<PyFrame>> {
        let mut guard = self.lock()?;
        let reader = guard.as_mut().expect("checked by lock()");
        match reader.try_next() {
            Ok(f) => Ok(f.map(|f| PyFrame::new(&self.name, f))),
            Err(e) => Err(errors::read(e)),
        }
    }

    /// Detach from the bus. Frames and arrays already taken stay valid.
    fn close(&self, py: Python<'_>) {
        // Without the GIL: a `next()` in another thread may hold the lock
        // and need the GIL to finish its chunk.
        py.detach(|| {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            g.take();
        });
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        match self.inner.try_lock() {
            Ok(g) => g.is_none(),
            Err(_) => false,
        }
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<PyFrame> {
        self.next_frame(py, self.timeout, false)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        format!("Reader({:?})", self.name)
    }
}

/// The codec configuration of an encoded bus (`Reader.codec()`).
#[pyclass(module = "framebus._framebus", name = "Codec", frozen)]
pub struct PyCodec {
    time_base: (u32, u32),
    profile_level: u32,
    config: Vec<u8>,
}

#[pymethods]
impl PyCodec {
    /// The unit of `Frame.pts`: `(num, den)` seconds (video: `(1, 90000)`).
    #[getter]
    fn time_base(&self) -> (u32, u32) {
        self.time_base
    }

    /// H.264: `profile_idc << 16 | constraint_flags << 8 | level_idc`.
    #[getter]
    fn profile_level(&self) -> u32 {
        self.profile_level
    }

    /// Out-of-band configuration (H.264: SPS and PPS, Annex B).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyBytes> {
        pyo3::types::PyBytes::new(py, &self.config)
    }

    fn __repr__(&self) -> String {
        format!(
            "Codec(time_base={}/{}, profile_level={:#08x}, config={} bytes)",
            self.time_base.0,
            self.time_base.1,
            self.profile_level,
            self.config.len()
        )
    }
}
