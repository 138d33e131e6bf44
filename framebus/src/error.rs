//! One error type per operation, each naming the bus and what went wrong in
//! words for a person.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::format::SpecError;
use crate::layout::HeaderError;
use crate::name::NameError;

/// `Writer::create` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The bus name is not valid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The frame spec is not valid.
    #[error("bus {name:?}: {source}")]
    Spec {
        /// Bus name.
        name: String,
        /// What is wrong.
        source: SpecError,
    },
    /// The options are not valid.
    #[error("bus {name:?}: {why}")]
    Options {
        /// Bus name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A live producer already publishes on this bus.
    #[error("bus {name:?} is already owned by a live producer (pid {pid} in its namespace)")]
    Exists {
        /// Bus name.
        name: String,
        /// The other producer's pid as it recorded it.
        pid: u32,
    },
    /// The segment path is taken by a file that is not a framebus segment.
    #[error("bus {name:?}: {path} exists and is not a framebus segment ({why}); remove it with `framebus rm --force {name}`")]
    Foreign {
        /// Bus name.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why it is not ours.
        why: HeaderError,
    },
    /// The shm file system is full.
    #[error("bus {name:?}: no space for a {bytes}-byte segment in {dir} (ENOSPC); free /dev/shm or use fewer/smaller slots")]
    NoSpace {
        /// Bus name.
        name: String,
        /// The shm directory.
        dir: PathBuf,
        /// Bytes requested.
        bytes: u64,
    },
    /// Any other system call failure.
    #[error("bus {name:?}: {op} {path}: {source}")]
    Io {
        /// Bus name.
        name: String,
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// `Reader::attach` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The bus name is not valid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// No segment exists under that name.
    #[error("bus {name:?} not found (no {path}); is its producer running?")]
    NotFound {
        /// Bus name.
        name: String,
        /// The path looked at.
        path: PathBuf,
    },
    /// Waited for the bus to appear and it did not.
    #[error("bus {name:?} did not appear within {waited:?}")]
    Timeout {
        /// Bus name.
        name: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The segment exists but its producer is dead.
    #[error("bus {name:?} exists but its producer is gone")]
    ProducerGone {
        /// Bus name.
        name: String,
    },
    /// The segment's header is not one we can trust.
    #[error("bus {name:?}: {path}: {why}")]
    Corrupt {
        /// Bus name.
        name: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: HeaderError,
    },
    /// Every reader entry is taken by a live reader.
    #[error("bus {name:?} has all {capacity} reader entries in use")]
    TooManyReaders {
        /// Bus name.
        name: String,
        /// Reader entries on the bus.
        capacity: u32,
    },
    /// Any other system call failure.
    #[error("bus {name:?}: {op} {path}: {source}")]
    Io {
        /// Bus name.
        name: String,
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Taking a frame (`next`, `latest`, `try_next`) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The producer stopped or died. Later calls wait for a new producer on
    /// the same name and re-attach by themselves.
    #[error("bus {name:?}: the producer is gone")]
    ProducerGone {
        /// Bus name.
        name: String,
    },
    /// No new frame within the timeout.
    #[error("bus {name:?}: no new frame within {after:?}")]
    Timeout {
        /// Bus name.
        name: String,
        /// The timeout.
        after: Duration,
    },
    /// This reader already holds as many slots as the bus allows.
    #[error("bus {name:?}: this reader already holds {held} slots (the bus allows {max}); drop a frame first")]
    TooManyHeld {
        /// Bus name.
        name: String,
        /// Slots held.
        held: u32,
        /// The bus's limit.
        max: u32,
    },
    /// A slot descriptor is inconsistent (corrupt or foreign memory).
    #[error("bus {name:?}: slot {slot} (frame {seq}) is corrupt: {why}")]
    Corrupt {
        /// Bus name.
        name: String,
        /// Slot index.
        slot: u64,
        /// Sequence number.
        seq: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// This reader was inherited across `fork()`; it is inert in the child
    /// (see `fork.rs`): attach a new one there.
    #[error("bus {name:?}: this Reader was inherited across fork(); it cannot be used in the child process (attach a new Reader there)")]
    Forked {
        /// Bus name.
        name: String,
    },
    /// Re-attaching to a restarted producer failed for a reason other than
    /// its absence.
    #[error(transparent)]
    Attach(#[from] AttachError),
}

/// `Writer::loan` or `publish` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Readers hold every slot the writer could use; this frame is dropped
    /// (and counted). The writer never waits for readers.
    #[error("bus {name:?}: readers hold all {slots} slots; frame dropped")]
    AllSlotsHeld {
        /// Bus name.
        name: String,
        /// Slots on the bus.
        slots: u32,
    },
    /// The payload does not fit a slot.
    #[error("bus {name:?}: payload of {len} bytes exceeds the slot capacity of {capacity}")]
    TooLarge {
        /// Bus name.
        name: String,
        /// Payload length.
        len: usize,
        /// Slot capacity.
        capacity: usize,
    },
    /// The writer was shut down.
    #[error("bus {name:?} is closed")]
    Closed {
        /// Bus name.
        name: String,
    },
    /// This writer was inherited across `fork()`; it is inert in the child
    /// (the bus stays the parent's).
    #[error("bus {name:?}: this Writer was inherited across fork(); it cannot be used in the child process (the bus belongs to the parent)")]
    Forked {
        /// Bus name.
        name: String,
    },
    /// Sealing or unsealing a slot's pages failed (`mmap`).
    #[error("bus {name:?}: remapping slot {slot} failed: {source}")]
    Map {
        /// Bus name.
        name: String,
        /// Slot index.
        slot: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// A raw-format payload of the wrong size.
    #[error("bus {name:?}: a {format} frame is {expected} bytes, got {len}")]
    WrongSize {
        /// Bus name.
        name: String,
        /// Format.
        format: crate::PixelFormat,
        /// Frame size.
        expected: usize,
        /// Given length.
        len: usize,
    },
}
