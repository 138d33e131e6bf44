//! V4L2 capture on top of the `v4l` crate: device enumeration, format / size /
//! frame-rate negotiation and mmap streaming.
//!
//! `v4l` (feature `v4l2`, no libv4l) opens the node `O_RDWR | O_NONBLOCK`,
//! issues every ioctl through `syscall(SYS_ioctl, ..)`, maps the buffers with
//! `mmap` and waits with `poll` before each `VIDIOC_DQBUF`.
//!
//! Frames are read through [`v4l::io::mmap::Stream`]. Its `next()` re-queues
//! the buffer it handed out last and then waits for the next one; when that
//! wait times out the buffer stays queued, and calling `next()` again would
//! queue it a second time (`EINVAL` from the driver). [`V4l2Camera`] therefore
//! remembers an unfinished wait and first completes it with a plain dequeue
//! (the frame it yields is dropped), so a timed-out camera can be waited on
//! again instead of being torn down.
//!
//! Unplugging shows as `ENODEV` on any call ([`V4l2Error::Unplugged`]); a
//! camera that stops delivering frames shows as [`V4l2Error::TimedOut`] after
//! the caller's timeout, never as a blocked thread.
//!
//! Files: [`device`] (enumeration: what a camera offers), [`negotiate`]
//! (what was asked, what was granted, choosing a format), [`capture`] (the
//! open, streaming camera), [`error`].

pub mod capture;
pub mod device;
pub mod error;
pub mod negotiate;

pub use capture::{Captured, V4l2Camera};
pub use device::{
    candidates, describe, first_capture_device, list_devices, DeviceInfo, FormatInfo, SizeInfo,
    DEVICES_ENV,
};
pub use error::V4l2Error;
pub use negotiate::{Difference, Granted, Report, Want};
