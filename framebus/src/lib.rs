//! # framebus
//!
//! One camera, many consumers, one copy. A single producer process writes
//! video frames into a **bus**: a lock-free ring of frame slots in shared
//! memory (`/dev/shm/framebus.<name>`). Any number of readers in other
//! processes map the same memory and read frames in place, without copying
//! and without ever slowing the producer down.
//!
//! ```no_run
//! use framebus::{Fps, FrameMeta, FrameSpec, PixelFormat, Reader, ReaderOptions, Writer, WriterOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = FrameSpec::new(PixelFormat::Gray8, 640, 480, Fps::new(30))?;
//! let mut writer = Writer::create("demo", spec, WriterOptions::default())?;
//! let mut loan = writer.loan()?;          // a free slot, in shared memory
//! loan.fill(128);                         // fill it in place
//! loan.publish(FrameMeta::now());
//!
//! let mut reader = Reader::attach("demo", ReaderOptions::default())?;
//! let frame = reader.latest()?.expect("one frame");
//! assert!(frame.iter().all(|&b| b == 128)); // a view of the slot, no copy
//! # Ok(()) }
//! ```
//!
//! The contract (each property has a test that can fail):
//!
//! 1. One producer, many readers, latest-frame semantics; the producer never
//!    waits; a slow reader skips frames ([`Frame::skipped`]) and never sees a
//!    torn one.
//! 2. Zero-copy reads: a [`Frame`] is a view of the slot; while it lives the
//!    producer writes other slots.
//! 3. Zero-copy writes: [`Writer::loan`] gives the slot to fill in place.
//! 4. Wake-ups without polling: [`Reader::next`] sleeps on a futex in the
//!    mapping; the writer makes a system call only when someone sleeps.
//! 5. Crash safety: liveness by OFD locks (SIGKILL-proof, PID-namespace
//!    proof); dead readers' holds are reclaimed; readers re-attach to a
//!    restarted producer.
//! 6. Untrusted memory: the header is copied and validated before any
//!    offset is used ([`layout`]).
//! 7. Self-describing header and per-frame metadata.
//! 8. Named ([`validate_name`]), listed ([`list`]), protected (0600).
//!
//! The protocol is described in `protocol.rs`, the bytes in `layout.rs` and
//! `docs/shm-layout.md`.

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg_attr(loom, allow(dead_code))]
mod protocol;
mod sync;

#[cfg(not(loom))]
pub mod contract;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod fork;
#[cfg(not(loom))]
pub mod format;
#[cfg(not(loom))]
pub mod h264;
#[cfg(not(loom))]
pub mod layout;
#[cfg(not(loom))]
mod list;
#[cfg(not(loom))]
mod name;
#[cfg(not(loom))]
mod reader;
#[cfg(not(loom))]
mod segment;
#[cfg(not(loom))]
mod sys;
#[cfg(not(loom))]
pub mod timecode;
#[cfg(not(loom))]
mod writer;

#[cfg(not(loom))]
pub use crate::{
    error::{AttachError, CreateError, PublishError, ReadError},
    format::{Fps, FrameSpec, PixelFormat, Plane, SpecError},
    list::{dbfs, list, list_in, remove, stat, BusInfo, ReaderInfo, StatError},
    name::{default_shm_dir, segment_path, validate_name, NameError, SEGMENT_PREFIX, SHM_DIR_ENV},
    reader::{Frame, Reader, ReaderOptions, LIVENESS_INTERVAL},
    sys::{group_id, monotonic_ns, realtime_ns},
    writer::{CodecConfig, Counter, FrameFlags, FrameMeta, Loan, SlotView, Writer, WriterOptions},
};
