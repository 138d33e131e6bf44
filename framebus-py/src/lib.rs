//! Python bindings of framebus: the `framebus._framebus` extension module.
//!
//! Thin wrappers over the `framebus` crate: [`reader::PyReader`] and
//! [`frame::PyFrame`] (zero-copy read-only numpy views of slots),
//! [`writer::PyWriter`] and [`writer::PyLoan`] (writable views of loaned
//! slots), [`spec::list_buses`], and one exception class per error kind
//! ([`errors`]). The Python package `framebus` (python/framebus) re-exports
//! them and adds asyncio iteration.

use pyo3::prelude::*;

mod errors;
mod frame;
mod reader;
mod spec;
mod view;
mod writer;

/// Zero-copy access to framebus shared-memory frame buses.
#[pymodule]
fn _framebus(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<reader::PyReader>()?;
    m.add_class::<reader::PyCodec>()?;
    m.add_class::<frame::PyFrame>()?;
    m.add_class::<frame::FrameHold>()?;
    m.add_class::<writer::PyWriter>()?;
    m.add_class::<writer::PyLoan>()?;
    m.add_class::<writer::LoanBuffer>()?;
    m.add_class::<spec::PySpec>()?;
    m.add_function(wrap_pyfunction!(spec::list_buses, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
