//! What a frame source is to the run loop.
//!
//! A source waits for its next frame and writes it straight into a slot
//! loaned from the bus (capture, decode or convert in place), then
//! publishes it. The run loop owns reconnection and the watchdog; a source
//! only reports what happened.

use std::time::Duration;

use framebus::{Fps, Writer};

/// The geometry a source delivers natively (used to size the bus when the
/// flags leave it open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Native {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frame rate, if the source knows it.
    pub fps: Option<Fps>,
}

/// One step of a source.
#[derive(Debug, PartialEq, Eq)]
pub enum Pulled {
    /// A frame was published.
    Frame,
    /// No frame within the timeout (not an error; the watchdog decides).
    Idle,
}

/// Why a source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source does not exist (no such device or file).
    #[error("{what}: not found ({why})")]
    NotFound {
        /// Source description.
        what: String,
        /// Details.
        why: String,
    },
    /// Another producer holds the device.
    #[error("{what} is locked by pid {pid}")]
    Busy {
        /// Source description.
        what: String,
        /// Holder pid.
        pid: u32,
    },
    /// Something the source needs is not available (codec, protocol).
    #[error("{what}: missing dependency: {why}")]
    Missing {
        /// Source description.
        what: String,
        /// Details.
        why: String,
    },
    /// The source cannot deliver what was asked.
    #[error("{what}: {why}")]
    Unsupported {
        /// Source description.
        what: String,
        /// Details.
        why: String,
    },
    /// The source went away (unplugged, EOF of a live stream, network loss,
    /// file removed): reconnect.
    #[error("{what}: lost ({why})")]
    Lost {
        /// Source description.
        what: String,
        /// Details.
        why: String,
    },
}

/// A frame source.
pub trait Source {
    /// What it delivers natively.
    fn native(&self) -> Native;
    /// Wait at most `timeout` for the next frame; if one comes, write it into
    /// a slot of `writer`, publish it, and count it.
    fn pull(&mut self, writer: &mut Writer, timeout: Duration) -> Result<Pulled, SourceError>;
}

/// Count and log a frame the bus refused (all slots held by readers).
pub fn note_publish_error(e: framebus::PublishError) {
    tracing::debug!(error = %e, "frame not published");
}
