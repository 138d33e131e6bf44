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

use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use framebus::{Fps, PixelFormat};
use v4l::buffer::{Flags as BufferFlags, Type};
use v4l::capability::Flags as CapFlags;
use v4l::format::description::Flags as FormatFlags;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::io::mmap::Stream;
use v4l::io::traits::{CaptureStream, Stream as _};
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC, Fraction};

/// Environment variable with a `:`-separated list of device nodes to consider
/// instead of scanning `/dev/video*` (used by tests with a fake device).
pub const DEVICES_ENV: &str = "FRAMEBUS_V4L2_DEVICES";

/// Buffers requested from the driver.
const BUFFERS: u32 = 4;

/// Linux errno values the caller must tell apart (the `v4l` crate reports
/// plain `io::Error`s).
const ENOENT: i32 = 2;
const ENXIO: i32 = 6;
const EACCES: i32 = 13;
const EBUSY: i32 = 16;
const ENODEV: i32 = 19;

/// What the caller would like from the camera. The driver grants the nearest
/// it supports; see [`Granted`] and [`V4l2Camera::report`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    /// Camera pixel format; `None` picks the offered format that best matches
    /// size and rate (raw preferred over MJPEG on a tie).
    pub format: Option<PixelFormat>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frame rate.
    pub fps: Fps,
}

/// What the driver granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    /// Pixel format of the frames.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row of the first plane (0 for MJPEG).
    pub stride: u32,
    /// Largest frame in bytes (`sizeimage`).
    pub frame_bytes: u32,
    /// Frame rate, when the driver supports setting it.
    pub fps: Option<Fps>,
}

/// One way in which [`Granted`] differs from [`Want`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Difference {
    /// Another pixel format than the one asked for.
    Format,
    /// Another frame size.
    Size,
    /// Another frame rate (or the rate could not be set).
    Fps,
}

impl Granted {
    /// The ways in which this grant differs from `want`.
    pub fn differences(&self, want: &Want) -> Vec<Difference> {
        let mut out = Vec::new();
        if want.format.is_some_and(|f| f != self.format) {
            out.push(Difference::Format);
        }
        if (want.width, want.height) != (self.width, self.height) {
            out.push(Difference::Size);
        }
        let same_fps = self.fps.is_some_and(|g| {
            u64::from(g.num) * u64::from(want.fps.den) == u64::from(want.fps.num) * u64::from(g.den)
        });
        if !same_fps {
            out.push(Difference::Fps);
        }
        out
    }
}

/// A human-readable account of a negotiation: what was asked, what was granted.
#[derive(Clone, Debug)]
pub struct Report {
    path: PathBuf,
    card: String,
    want: Want,
    granted: Granted,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.granted;
        write!(
            f,
            "{} ({}): granted {} {}x{}",
            self.path.display(),
            self.card,
            g.format.name(),
            g.width,
            g.height
        )?;
        match g.fps {
            Some(fps) => write!(f, " @ {fps} fps")?,
            None => write!(f, " @ driver-chosen rate")?,
        }
        let diffs = g.differences(&self.want);
        if diffs.is_empty() {
            return write!(f, " as asked");
        }
        let w = &self.want;
        let asked_format = w.format.map_or("any format", |p| p.name());
        write!(
            f,
            "; asked {asked_format} {}x{} @ {} fps (",
            w.width, w.height, w.fps
        )?;
        for (i, d) in diffs.iter().enumerate() {
            let what = match d {
                Difference::Format => "format differs",
                Difference::Size => "size differs",
                Difference::Fps => "rate differs",
            };
            write!(f, "{}{what}", if i == 0 { "" } else { ", " })?;
        }
        write!(f, ")")
    }
}

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

    fn from_io(path: &Path, op: &'static str, source: io::Error) -> V4l2Error {
        let path = path.to_path_buf();
        match source.raw_os_error() {
            Some(ENODEV) => V4l2Error::Unplugged { path },
            _ => V4l2Error::Io { path, op, source },
        }
    }

    fn from_open(path: &Path, source: io::Error) -> V4l2Error {
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

/// One frame size a camera offers for a format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeInfo {
    /// A fixed size with its frame rates (fastest first, as the driver lists them).
    Discrete {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Frame rates; a stepwise range is given as its two ends.
        fps: Vec<Fps>,
    },
    /// Any size in a range.
    Stepwise {
        /// Smallest width.
        min_width: u32,
        /// Largest width.
        max_width: u32,
        /// Width step.
        step_width: u32,
        /// Smallest height.
        min_height: u32,
        /// Largest height.
        max_height: u32,
        /// Height step.
        step_height: u32,
    },
}

/// One format a camera offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatInfo {
    /// The fourcc as text, e.g. `"YUYV"`.
    pub fourcc: String,
    /// The driver's description.
    pub description: String,
    /// Compressed format (MJPEG, H.264…).
    pub compressed: bool,
    /// The bus format, when this module can capture it.
    pub pixel_format: Option<PixelFormat>,
    /// Offered sizes.
    pub sizes: Vec<SizeInfo>,
}

/// A capture device with everything it offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device node.
    pub path: PathBuf,
    /// Card name.
    pub card: String,
    /// Driver name.
    pub driver: String,
    /// Bus info.
    pub bus: String,
    /// Offered formats.
    pub formats: Vec<FormatInfo>,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} (driver {}, {})",
            self.path.display(),
            self.card,
            self.driver,
            self.bus
        )?;
        for format in &self.formats {
            let usable = match format.pixel_format {
                Some(p) => format!("-> {}", p.name()),
                None => "(not supported by framebus)".to_string(),
            };
            writeln!(f, "  {} {} {usable}", format.fourcc, format.description)?;
            for size in &format.sizes {
                match size {
                    SizeInfo::Discrete { width, height, fps } => {
                        let rates: Vec<String> = fps.iter().map(|r| r.to_string()).collect();
                        writeln!(f, "    {width}x{height} @ {} fps", rates.join(", "))?;
                    }
                    SizeInfo::Stepwise {
                        min_width,
                        max_width,
                        step_width,
                        min_height,
                        max_height,
                        step_height,
                    } => {
                        writeln!(
                            f,
                            "    {min_width}x{min_height} .. {max_width}x{max_height} (step {step_width}x{step_height})"
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The device nodes to look at: [`DEVICES_ENV`] if set, else `/dev/video*` in
/// numeric order.
pub fn candidates() -> Vec<PathBuf> {
    if let Some(list) = std::env::var_os(DEVICES_ENV) {
        return std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let index = name.to_str()?.strip_prefix("video")?.parse().ok()?;
            Some((index, entry.path()))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, path)| path).collect()
}

/// Every capture device among [`candidates`], with its formats, sizes and
/// rates. Nodes that are not capture devices are left out; nodes that cannot be
/// opened are listed as errors.
pub fn list_devices() -> Vec<Result<DeviceInfo, V4l2Error>> {
    candidates()
        .into_iter()
        .filter_map(|path| match describe(&path) {
            Err(V4l2Error::NotCapture { .. }) => None,
            other => Some(other),
        })
        .collect()
}

/// The first capture device (for `v4l2:auto`).
pub fn first_capture_device() -> Option<PathBuf> {
    list_devices().into_iter().flatten().map(|d| d.path).next()
}

/// Opens `path` and lists what it offers.
pub fn describe(path: &Path) -> Result<DeviceInfo, V4l2Error> {
    let device = Device::with_path(path).map_err(|e| V4l2Error::from_open(path, e))?;
    let caps = device
        .query_caps()
        .map_err(|e| V4l2Error::from_io(path, "VIDIOC_QUERYCAP", e))?;
    if !caps
        .capabilities
        .contains(CapFlags::VIDEO_CAPTURE | CapFlags::STREAMING)
    {
        return Err(V4l2Error::NotCapture {
            path: path.to_path_buf(),
            card: caps.card,
        });
    }
    let descriptions = device
        .enum_formats()
        .map_err(|e| V4l2Error::from_io(path, "VIDIOC_ENUM_FMT", e))?;
    let mut formats = Vec::new();
    for desc in descriptions {
        let mut sizes = Vec::new();
        // A driver may refuse to enumerate sizes for some format; list it without sizes.
        for size in device.enum_framesizes(desc.fourcc).unwrap_or_default() {
            match size.size {
                FrameSizeEnum::Discrete(d) => {
                    let fps = device
                        .enum_frameintervals(desc.fourcc, d.width, d.height)
                        .unwrap_or_default()
                        .into_iter()
                        .flat_map(|i| match i.interval {
                            FrameIntervalEnum::Discrete(t) => vec![interval_to_fps(t)],
                            FrameIntervalEnum::Stepwise(s) => {
                                vec![interval_to_fps(s.min), interval_to_fps(s.max)]
                            }
                        })
                        .flatten()
                        .collect();
                    sizes.push(SizeInfo::Discrete {
                        width: d.width,
                        height: d.height,
                        fps,
                    });
                }
                FrameSizeEnum::Stepwise(s) => sizes.push(SizeInfo::Stepwise {
                    min_width: s.min_width,
                    max_width: s.max_width,
                    step_width: s.step_width,
                    min_height: s.min_height,
                    max_height: s.max_height,
                    step_height: s.step_height,
                }),
            }
        }
        formats.push(FormatInfo {
            fourcc: fourcc_text(desc.fourcc),
            description: desc.description,
            compressed: desc.flags.contains(FormatFlags::COMPRESSED),
            pixel_format: capturable(desc.fourcc),
            sizes,
        });
    }
    Ok(DeviceInfo {
        path: path.to_path_buf(),
        card: caps.card,
        driver: caps.driver,
        bus: caps.bus,
        formats,
    })
}

/// A frame time (`numerator/denominator` seconds) as a rate.
fn interval_to_fps(t: Fraction) -> Option<Fps> {
    (t.numerator != 0 && t.denominator != 0).then(|| reduce(t.denominator, t.numerator))
}

fn reduce(num: u32, den: u32) -> Fps {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = gcd(num, den).max(1);
    Fps {
        num: num / g,
        den: den / g,
    }
}

fn fourcc_text(fourcc: FourCC) -> String {
    fourcc
        .repr
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// The bus format for a camera fourcc this module captures.
fn capturable(fourcc: FourCC) -> Option<PixelFormat> {
    match &fourcc.repr {
        b"YUYV" => Some(PixelFormat::Yuyv),
        b"NV12" => Some(PixelFormat::Nv12),
        b"MJPG" | b"JPEG" => Some(PixelFormat::Mjpeg),
        _ => None,
    }
}

/// One captured frame, borrowed from the driver's buffer until the next call
/// to [`V4l2Camera::next_frame`].
#[derive(Debug)]
pub struct Captured<'a> {
    /// The frame's bytes (`bytesused` of the buffer; one JPEG for MJPEG).
    pub data: &'a [u8],
    /// Capture time, CLOCK_MONOTONIC ns: the driver's timestamp when it is
    /// monotonic, else the time of dequeue.
    pub mono_ns: u64,
    /// True when `mono_ns` is the driver's timestamp.
    #[allow(dead_code)] // diagnostics; the tests check it
    pub driver_timestamp: bool,
    /// The driver's sequence number.
    #[allow(dead_code)] // diagnostics; the tests check it
    pub sequence: u32,
    /// Frames the driver skipped between the previous frame and this one
    /// (gaps in `sequence`).
    pub dropped: u32,
}

/// An open, negotiated, streaming camera.
pub struct V4l2Camera {
    path: PathBuf,
    card: String,
    want: Want,
    granted: Granted,
    /// Dropped by hand in `Drop` so that a failing `VIDIOC_STREAMOFF` does
    /// not reach the `panic!` in `v4l`'s own `Drop`.
    stream: ManuallyDrop<Stream<'static>>,
    /// Kept open for the stream's lifetime (the stream shares its handle).
    _device: Device,
    /// A wait inside `Stream::next` did not finish: one buffer is still queued
    /// under the index `next` would queue again.
    dequeue_pending: bool,
    last_sequence: Option<u32>,
}

impl fmt::Debug for V4l2Camera {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V4l2Camera")
            .field("path", &self.path)
            .field("granted", &self.granted)
            .finish()
    }
}

impl V4l2Camera {
    /// Opens `path`, negotiates `want` (`VIDIOC_S_FMT`, `VIDIOC_S_PARM`) and
    /// maps the buffers. Streaming starts with the first [`next_frame`](Self::next_frame).
    pub fn open(path: impl AsRef<Path>, want: Want) -> Result<V4l2Camera, V4l2Error> {
        let path = path.as_ref();
        if let Some(format) = want.format {
            if capturable_fourcc(format).is_none() {
                return Err(V4l2Error::UnsupportedFormat {
                    path: path.to_path_buf(),
                    wanted: format,
                });
            }
        }
        let info = describe(path)?;
        let offered: Vec<String> = info.formats.iter().map(|f| f.fourcc.clone()).collect();
        let choice = match want.format {
            Some(wanted) => info
                .formats
                .iter()
                .find(|f| f.pixel_format == Some(wanted))
                .ok_or_else(|| V4l2Error::FormatNotOffered {
                    path: path.to_path_buf(),
                    wanted,
                    offered: offered.clone(),
                })?,
            None => info
                .formats
                .iter()
                .filter(|f| f.pixel_format.is_some())
                .min_by_key(|f| score(f, &want))
                .ok_or_else(|| V4l2Error::NoUsableFormat {
                    path: path.to_path_buf(),
                    offered: offered.clone(),
                })?,
        };
        let fourcc = FourCC::new(&fourcc_bytes(&choice.fourcc));

        let device = Device::with_path(path).map_err(|e| V4l2Error::from_open(path, e))?;
        let format = device
            .set_format(&Format::new(want.width, want.height, fourcc))
            .map_err(|e| V4l2Error::from_io(path, "VIDIOC_S_FMT", e))?;
        let pixel_format = capturable(format.fourcc).ok_or_else(|| V4l2Error::FormatRefused {
            path: path.to_path_buf(),
            asked: fourcc_text(fourcc),
            granted: fourcc_text(format.fourcc),
        })?;
        let fps = if want.fps.num == 0 || want.fps.den == 0 {
            None
        } else {
            // Drivers without VIDIOC_S_PARM (or without V4L2_CAP_TIMEPERFRAME)
            // run at their own rate: report that instead of failing.
            device
                .set_params(&Parameters::new(Fraction::new(want.fps.den, want.fps.num)))
                .ok()
                .and_then(|p| interval_to_fps(p.interval))
        };
        let granted = Granted {
            format: pixel_format,
            width: format.width,
            height: format.height,
            stride: format.stride,
            frame_bytes: format.size,
            fps,
        };
        let stream = Stream::with_buffers(&device, Type::VideoCapture, BUFFERS)
            .map_err(|e| V4l2Error::from_io(path, "VIDIOC_REQBUFS/mmap", e))?;
        Ok(V4l2Camera {
            path: path.to_path_buf(),
            card: info.card,
            want,
            granted,
            stream: ManuallyDrop::new(stream),
            _device: device,
            dequeue_pending: false,
            last_sequence: None,
        })
    }

    /// The device node.
    #[allow(dead_code)] // API for callers
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the driver granted.
    pub fn granted(&self) -> Granted {
        self.granted
    }

    /// What was asked and what was granted, for a log line.
    pub fn report(&self) -> Report {
        Report {
            path: self.path.clone(),
            card: self.card.clone(),
            want: self.want,
            granted: self.granted,
        }
    }

    /// Waits up to `timeout` for the next frame. Streaming starts on the first call.
    ///
    /// [`V4l2Error::TimedOut`] leaves the camera usable (call again);
    /// [`V4l2Error::Unplugged`] means it must be dropped and reopened.
    pub fn next_frame(&mut self, timeout: Duration) -> Result<Captured<'_>, V4l2Error> {
        let start = Instant::now();
        let deadline = start + timeout;
        let (ptr, len, meta) = loop {
            if self.dequeue_pending {
                self.finish_pending_wait(start, deadline)?;
            }
            self.stream.set_timeout(remaining(deadline));
            self.dequeue_pending = true;
            match self.stream.next() {
                Ok((data, meta)) => break (data.as_ptr(), data.len(), *meta),
                Err(e) if retryable(&e) => continue,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(V4l2Error::TimedOut {
                        path: self.path.clone(),
                        waited: start.elapsed(),
                    })
                }
                Err(e) => return Err(V4l2Error::from_io(&self.path, "VIDIOC_DQBUF", e)),
            }
        };
        self.dequeue_pending = false;

        let dropped = self
            .last_sequence
            .map_or(0, |last| meta.sequence.wrapping_sub(last).saturating_sub(1));
        self.last_sequence = Some(meta.sequence);
        if meta.flags.contains(BufferFlags::ERROR) {
            return Err(V4l2Error::CorruptFrame {
                path: self.path.clone(),
                sequence: meta.sequence,
            });
        }
        let used = match meta.bytesused as usize {
            0 => (self.granted.frame_bytes as usize).min(len),
            n => n.min(len),
        };
        let driver_timestamp =
            meta.flags & BufferFlags::TIMESTAMP_MASK == BufferFlags::TIMESTAMP_MONOTONIC;
        let mono_ns = if driver_timestamp {
            (meta.timestamp.sec as u64) * 1_000_000_000 + (meta.timestamp.usec as u64) * 1_000
        } else {
            framebus::monotonic_ns()
        };
        // SAFETY: `ptr..ptr+len` is the mmap'ed buffer `Stream::next` just
        // returned (`used <= len`). The mapping lives as long as
        // `self.stream`, and the driver writes to this buffer again only after
        // it is re-queued, which happens in the next `next_frame` call; the
        // returned borrow of `&mut self` forbids that call while the slice is
        // alive. (The slice is rebuilt from a pointer only because returning
        // the borrow straight from inside the retry loop is not accepted by
        // the borrow checker.)
        let data = unsafe { std::slice::from_raw_parts(ptr, used) };
        Ok(Captured {
            data,
            mono_ns,
            driver_timestamp,
            sequence: meta.sequence,
            dropped,
        })
    }

    /// Completes a wait that `Stream::next` started but did not finish, so the
    /// buffer it left queued is with us again and `next` may queue it.
    fn finish_pending_wait(&mut self, start: Instant, deadline: Instant) -> Result<(), V4l2Error> {
        loop {
            self.stream.set_timeout(remaining(deadline));
            match CaptureStream::dequeue(&mut *self.stream) {
                Ok(_) => {
                    self.dequeue_pending = false;
                    return Ok(());
                }
                Err(e) if retryable(&e) && Instant::now() < deadline => continue,
                Err(e) if retryable(&e) || e.kind() == io::ErrorKind::TimedOut => {
                    return Err(V4l2Error::TimedOut {
                        path: self.path.clone(),
                        waited: start.elapsed(),
                    })
                }
                Err(e) => return Err(V4l2Error::from_io(&self.path, "VIDIOC_DQBUF", e)),
            }
        }
    }
}

impl Drop for V4l2Camera {
    fn drop(&mut self) {
        match self.stream.stop() {
            Err(e) if e.raw_os_error() != Some(ENODEV) => {
                // `v4l`'s Drop would panic on this error. Leak the stream (its
                // mappings and one handle reference) rather than abort.
            }
            // SAFETY: `self.stream` is not used after this point; it is dropped
            // exactly once, here.
            _ => unsafe { ManuallyDrop::drop(&mut self.stream) },
        }
    }
}

/// Time left until `deadline`, rounded up to whole milliseconds (`v4l` passes
/// its timeout to `poll` in ms, truncating) and at least 1 ms, so a wait never
/// ends before the deadline.
fn remaining(deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    // v4l converts the timeout to an i32 of milliseconds and panics above that.
    let ms = left
        .as_nanos()
        .div_ceil(1_000_000)
        .clamp(1, i32::MAX as u128);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Errors after which the same wait can simply be repeated.
fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

fn capturable_fourcc(format: PixelFormat) -> Option<&'static [u8; 4]> {
    match format {
        PixelFormat::Yuyv => Some(b"YUYV"),
        PixelFormat::Nv12 => Some(b"NV12"),
        PixelFormat::Mjpeg => Some(b"MJPG"),
        _ => None,
    }
}

fn fourcc_bytes(text: &str) -> [u8; 4] {
    let mut out = [b' '; 4];
    for (o, b) in out.iter_mut().zip(text.bytes()) {
        *o = b;
    }
    out
}

/// How far a format's best offer is from `want`: size distance, then rate
/// distance (milli-fps), then raw before compressed.
fn score(format: &FormatInfo, want: &Want) -> (u64, u64, bool) {
    let want_fps = want.fps.as_f64();
    let mut best = (u64::MAX, u64::MAX);
    for size in &format.sizes {
        let (dist, rates) = match size {
            SizeInfo::Discrete { width, height, fps } => (
                u64::from(width.abs_diff(want.width)) + u64::from(height.abs_diff(want.height)),
                fps.as_slice(),
            ),
            SizeInfo::Stepwise {
                min_width,
                max_width,
                min_height,
                max_height,
                ..
            } => {
                let w = want.width.clamp(*min_width, *max_width);
                let h = want.height.clamp(*min_height, *max_height);
                (
                    u64::from(w.abs_diff(want.width)) + u64::from(h.abs_diff(want.height)),
                    &[][..],
                )
            }
        };
        let fps_dist = rates
            .iter()
            .map(|r| ((r.as_f64() - want_fps).abs() * 1000.0) as u64)
            .min()
            .unwrap_or(u64::MAX / 2);
        best = best.min((dist, fps_dist));
    }
    (best.0, best.1, format.compressed)
}
