//! The Python exception hierarchy and the mapping from the core's error
//! enums onto it. Every message is the core error's `Display`, which names
//! the bus.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use framebus::{AttachError, CreateError, PublishError, ReadError, SpecError};

create_exception!(
    framebus._framebus,
    FramebusError,
    PyException,
    "Base class of every framebus error."
);
create_exception!(
    framebus._framebus,
    InvalidName,
    FramebusError,
    "A bus name does not match `[a-z0-9][a-z0-9._-]{0,62}`."
);
create_exception!(
    framebus._framebus,
    BusNotFound,
    FramebusError,
    "No bus of that name exists (its producer is not running)."
);
create_exception!(
    framebus._framebus,
    ProducerGone,
    FramebusError,
    "The bus's producer stopped or died. A reader raises this once; its next call waits for a new producer and re-attaches."
);
create_exception!(
    framebus._framebus,
    Timeout,
    FramebusError,
    "No frame (or no bus) within the timeout."
);
create_exception!(
    framebus._framebus,
    FormatError,
    FramebusError,
    "A frame spec, pixel format or payload size is not acceptable."
);
create_exception!(
    framebus._framebus,
    BusExists,
    FramebusError,
    "A live producer already owns the bus."
);
create_exception!(
    framebus._framebus,
    CorruptBus,
    FramebusError,
    "The shared-memory segment is not a valid framebus segment (wrong magic, version, size or offsets)."
);
create_exception!(
    framebus._framebus,
    TooManyReaders,
    FramebusError,
    "Every reader entry of the bus is taken."
);
create_exception!(
    framebus._framebus,
    TooManyHeld,
    FramebusError,
    "This reader already holds as many frames as the bus allows; release one first."
);
create_exception!(
    framebus._framebus,
    AllSlotsHeld,
    FramebusError,
    "Readers hold every slot the writer could use; the frame was dropped."
);
create_exception!(
    framebus._framebus,
    InvalidOptions,
    FramebusError,
    "Writer options out of range (slots, max_readers, max_held, slot_capacity)."
);
create_exception!(
    framebus._framebus,
    ForkedError,
    FramebusError,
    "This Reader or Writer was inherited across fork(); it is inert in the child process. Create a new one there."
);
create_exception!(
    framebus._framebus,
    Released,
    FramebusError,
    "The frame was released, or the reader/writer/loan closed, and cannot be used any more."
);

/// Register every exception class in the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("FramebusError", py.get_type::<FramebusError>())?;
    m.add("InvalidName", py.get_type::<InvalidName>())?;
    m.add("BusNotFound", py.get_type::<BusNotFound>())?;
    m.add("ProducerGone", py.get_type::<ProducerGone>())?;
    m.add("Timeout", py.get_type::<Timeout>())?;
    m.add("FormatError", py.get_type::<FormatError>())?;
    m.add("BusExists", py.get_type::<BusExists>())?;
    m.add("CorruptBus", py.get_type::<CorruptBus>())?;
    m.add("TooManyReaders", py.get_type::<TooManyReaders>())?;
    m.add("TooManyHeld", py.get_type::<TooManyHeld>())?;
    m.add("AllSlotsHeld", py.get_type::<AllSlotsHeld>())?;
    m.add("InvalidOptions", py.get_type::<InvalidOptions>())?;
    m.add("ForkedError", py.get_type::<ForkedError>())?;
    m.add("Released", py.get_type::<Released>())?;
    Ok(())
}

/// `attach` failures.
pub(crate) fn attach(e: AttachError) -> PyErr {
    let msg = e.to_string();
    match e {
        AttachError::Name(_) => InvalidName::new_err(msg),
        AttachError::NotFound { .. } => BusNotFound::new_err(msg),
        AttachError::Timeout { .. } => Timeout::new_err(msg),
        AttachError::ProducerGone { .. } => ProducerGone::new_err(msg),
        AttachError::Corrupt { .. } => CorruptBus::new_err(msg),
        AttachError::TooManyReaders { .. } => TooManyReaders::new_err(msg),
        _ => FramebusError::new_err(msg),
    }
}

/// `next`/`latest` failures.
pub(crate) fn read(e: ReadError) -> PyErr {
    let msg = e.to_string();
    match e {
        ReadError::ProducerGone { .. } => ProducerGone::new_err(msg),
        ReadError::Timeout { .. } => Timeout::new_err(msg),
        ReadError::TooManyHeld { .. } => TooManyHeld::new_err(msg),
        ReadError::Corrupt { .. } => CorruptBus::new_err(msg),
        ReadError::Forked { .. } => ForkedError::new_err(msg),
        ReadError::Attach(a) => attach(a),
        _ => FramebusError::new_err(msg),
    }
}

/// `Writer` creation failures.
pub(crate) fn create(e: CreateError) -> PyErr {
    let msg = e.to_string();
    match e {
        CreateError::Name(_) => InvalidName::new_err(msg),
        CreateError::Spec { .. } => FormatError::new_err(msg),
        CreateError::Options { .. } => InvalidOptions::new_err(msg),
        CreateError::Exists { .. } => BusExists::new_err(msg),
        CreateError::Foreign { .. } => CorruptBus::new_err(msg),
        _ => FramebusError::new_err(msg),
    }
}

/// `loan`/`publish` failures.
pub(crate) fn publish(e: PublishError) -> PyErr {
    let msg = e.to_string();
    match e {
        PublishError::AllSlotsHeld { .. } => AllSlotsHeld::new_err(msg),
        PublishError::TooLarge { .. } | PublishError::WrongSize { .. } => FormatError::new_err(msg),
        PublishError::Forked { .. } => ForkedError::new_err(msg),
        _ => FramebusError::new_err(msg),
    }
}

/// A frame spec that the core refused, for bus `name`.
pub(crate) fn spec(name: &str, e: SpecError) -> PyErr {
    FormatError::new_err(format!("bus {name:?}: {e}"))
}
