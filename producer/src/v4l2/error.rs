//! [`V4l2Error`]: why a V4L2 operation failed, naming the device; the
//! errno values that tell unplugged, busy and missing devices apart.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use framebus::PixelFormat;

/// Linux errno values the caller must tell apart (the `v4l` crate reports
/// plain `io::Error`s).
pub(super) const ENOENT: i32 = 2;
pub(super) const ENXIO: i32 = 6;
pub(super) const EACCES: i32 = 13;
pub(super) const EBUSY: i32 = 16;
pub(super) const ENODEV: i32 = 19;

/// Why a V4L2 operation failed. Every variant names the device.
#[derive(Debug)]
pub enum V4l2Error {
    /// The node does not exist (or the device behind it is gone).
    NotFound {
        /// Device node.
        path: PathBuf,
    },
    /// Another process holds the device.
    Busy {
        /// Device node.
        path: PathBuf,
    },
    /// No permission to open the node.
    PermissionDenied {
        /// Device node.
        path: PathBuf,
    },
    /// The node is not a streaming video capture device (e.g. a UVC metadata node).
    NotCapture {
        /// Device node.
        path: PathBuf,
        /// Card name from `VIDIOC_QUERYCAP`.
        card: String,
    },
    /// The requested format cannot be captured by this module.
    UnsupportedFormat {
        /// Device node.
        path: PathBuf,
        /// Requested format.
        wanted: PixelFormat,
    },
    /// The camera does not offer the requested format.
    FormatNotOffered {
        /// Device node.
        path: PathBuf,
        /// Requested format.
        wanted: PixelFormat,
        /// Fourccs the camera offers.
        offered: Vec<String>,
    },
    /// The camera offers none of YUYV, NV12, MJPEG.
    NoUsableFormat {
        /// Device node.
        path: PathBuf,
        /// Fourccs the camera offers.
        offered: Vec<String>,
    },
    /// The driver replaced the format with one we cannot use.
    FormatRefused {
        /// Device node.
        path: PathBuf,
        /// Fourcc asked for.
        asked: String,
        /// Fourcc granted.
        granted: String,
    },
    /// The device went away (`ENODEV`): unplugged or its driver unbound.
    Unplugged {
        /// Device node.
        path: PathBuf,
    },
    /// No frame arrived within the timeout.
    TimedOut {
        /// Device node.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The driver flagged the frame as corrupt (`V4L2_BUF_FLAG_ERROR`).
    CorruptFrame {
        /// Device node.
        path: PathBuf,
        /// Driver sequence number of the frame.
        sequence: u32,
    },
    /// Any other failure of a V4L2 call.
    Io {
        /// Device node.
        path: PathBuf,
        /// What we were doing (usually the ioctl name).
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl V4l2Error {
    /// The device node the error is about.
    pub fn path(&self) -> &Path {
        match self {
            V4l2Error::NotFound { path }
            | V4l2Error::Busy { path }
            | V4l2Error::PermissionDenied { path }
            | V4l2Error::NotCapture { path, .. }
            | V4l2Error::UnsupportedFormat { path, .. }
            | V4l2Error::FormatNotOffered { path, .. }
            | V4l2Error::NoUsableFormat { path, .. }
            | V4l2Error::FormatRefused { path, .. }
            | V4l2Error::Unplugged { path }
            | V4l2Error::TimedOut { path, .. }
            | V4l2Error::CorruptFrame { path, .. }
            | V4l2Error::Io { path, .. } => path,
        }
    }

    /// True when the device is absent or went away: retry opening later.
    #[allow(dead_code)] // API for callers; the tests use it
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            V4l2Error::NotFound { .. } | V4l2Error::Unplugged { .. }
        )
    }

    pub(super) fn from_io(path: &Path, op: &'static str, source: io::Error) -> V4l2Error {
        let path = path.to_path_buf();
        match source.raw_os_error() {
            Some(ENODEV) => V4l2Error::Unplugged { path },
            _ => V4l2Error::Io { path, op, source },
        }
    }

    pub(super) fn from_open(path: &Path, source: io::Error) -> V4l2Error {
        let path = path.to_path_buf();
        match source.raw_os_error() {
            Some(ENOENT | ENODEV | ENXIO) => V4l2Error::NotFound { path },
            Some(EBUSY) => V4l2Error::Busy { path },
            Some(EACCES) => V4l2Error::PermissionDenied { path },
            _ => V4l2Error::Io {
                path,
                op: "open",
                source,
            },
        }
    }
}

impl fmt::Display for V4l2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path().display();
        match self {
            V4l2Error::NotFound { .. } => write!(f, "{p}: no such video device"),
            V4l2Error::Busy { .. } => {
                write!(f, "{p}: device is busy (another process is using it)")
            }
            V4l2Error::PermissionDenied { .. } => {
                write!(
                    f,
                    "{p}: permission denied (is the user in the 'video' group?)"
                )
            }
            V4l2Error::NotCapture { card, .. } => {
                write!(f, "{p} ({card}): not a streaming video capture device")
            }
            V4l2Error::UnsupportedFormat { wanted, .. } => write!(
                f,
                "{p}: cannot capture {} from a camera (yuyv, nv12 and mjpeg are supported)",
                wanted.name()
            ),
            V4l2Error::FormatNotOffered {
                wanted, offered, ..
            } => write!(
                f,
                "{p}: camera does not offer {} (it offers {})",
                wanted.name(),
                offered.join(", ")
            ),
            V4l2Error::NoUsableFormat { offered, .. } => write!(
                f,
                "{p}: camera offers none of YUYV, NV12, MJPG (it offers {})",
                offered.join(", ")
            ),
            V4l2Error::FormatRefused { asked, granted, .. } => {
                write!(
                    f,
                    "{p}: asked the driver for {asked}, it switched to {granted}"
                )
            }
            V4l2Error::Unplugged { .. } => write!(f, "{p}: device was unplugged (ENODEV)"),
            V4l2Error::TimedOut { waited, .. } => {
                write!(f, "{p}: no frame within {} ms", waited.as_millis())
            }
            V4l2Error::CorruptFrame { sequence, .. } => {
                write!(f, "{p}: driver flagged frame {sequence} as corrupt")
            }
            V4l2Error::Io { op, source, .. } => write!(f, "{p}: {op} failed: {source}"),
        }
    }
}

impl std::error::Error for V4l2Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            V4l2Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
