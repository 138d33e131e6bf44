//! Negotiation: what the caller wants ([`Want`]), what the driver granted
//! ([`Granted`]) and how they differ ([`Report`]); choosing the offered
//! format nearest to what is wanted.

use std::fmt;
use std::path::PathBuf;

use framebus::{Fps, PixelFormat};

use super::device::{FormatInfo, SizeInfo};

/// What the caller would like from the camera. The driver grants the nearest
/// it supports; see [`Granted`] and [`V4l2Camera::report`](super::V4l2Camera::report).
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
    pub(super) path: PathBuf,
    pub(super) card: String,
    pub(super) want: Want,
    pub(super) granted: Granted,
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

pub(super) fn capturable_fourcc(format: PixelFormat) -> Option<&'static [u8; 4]> {
    match format {
        PixelFormat::Yuyv => Some(b"YUYV"),
        PixelFormat::Nv12 => Some(b"NV12"),
        PixelFormat::Mjpeg => Some(b"MJPG"),
        _ => None,
    }
}

pub(super) fn fourcc_bytes(text: &str) -> [u8; 4] {
    let mut out = [b' '; 4];
    for (o, b) in out.iter_mut().zip(text.bytes()) {
        *o = b;
    }
    out
}

/// How far a format's best offer is from `want`: size distance, then rate
/// distance (milli-fps), then raw before compressed.
pub(super) fn score(format: &FormatInfo, want: &Want) -> (u64, u64, bool) {
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
