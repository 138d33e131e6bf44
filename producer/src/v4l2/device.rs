//! Enumeration: the capture devices, and the formats, sizes and rates each
//! offers (`VIDIOC_QUERYCAP`, `VIDIOC_ENUM_FMT`, `VIDIOC_ENUM_FRAMESIZES`,
//! `VIDIOC_ENUM_FRAMEINTERVALS`).

use std::fmt;
use std::path::{Path, PathBuf};

use framebus::{Fps, PixelFormat};
use v4l::capability::Flags as CapFlags;
use v4l::format::description::Flags as FormatFlags;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::video::Capture;
use v4l::{Device, FourCC, Fraction};

use super::error::V4l2Error;

/// Environment variable with a `:`-separated list of device nodes to consider
/// instead of scanning `/dev/video*` (used by tests with a fake device).
pub const DEVICES_ENV: &str = "FRAMEBUS_V4L2_DEVICES";

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
pub(super) fn interval_to_fps(t: Fraction) -> Option<Fps> {
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

pub(super) fn fourcc_text(fourcc: FourCC) -> String {
    fourcc
        .repr
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// The bus format for a camera fourcc this module captures.
pub(super) fn capturable(fourcc: FourCC) -> Option<PixelFormat> {
    match &fourcc.repr {
        b"YUYV" => Some(PixelFormat::Yuyv),
        b"NV12" => Some(PixelFormat::Nv12),
        b"MJPG" | b"JPEG" => Some(PixelFormat::Mjpeg),
        _ => None,
    }
}
