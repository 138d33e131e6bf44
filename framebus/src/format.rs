//! Pixel and sample formats and frame geometry.
//!
//! Formats are identified on the bus by their V4L2 fourcc (audio formats by
//! framebus's own: `S16L`, `OPUS`, `AAC `). Planes are laid out one after
//! another in the slot with the strides given in the spec (tightly packed by
//! default, which is what numpy/OpenCV views expect).
//!
//! An audio bus uses the same header fields with an audio meaning
//! ([`FrameSpec::audio`]): width = channels, height = samples per chunk,
//! fps = chunks per second as `rate / samples per chunk`. Raw PCM (`s16le`)
//! is one plane of `samples` rows of `channels` interleaved samples, so a
//! chunk is a `(samples, channels)` array.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Largest width or height a bus accepts.
pub const MAX_DIMENSION: u32 = 16384;

/// A pixel format on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Packed 4:2:2, Y0 U Y1 V.
    Yuyv,
    /// Packed 4:2:2, U Y0 V Y1.
    Uyvy,
    /// Planar 4:2:0: Y plane, then interleaved UV at half height.
    Nv12,
    /// Planar 4:2:0: Y, U, V planes (U and V at half width and height).
    I420,
    /// Packed R, G, B bytes.
    Rgb24,
    /// Packed B, G, R bytes (OpenCV's default order).
    Bgr24,
    /// 8-bit luma only.
    Gray8,
    /// Motion-JPEG: each frame is one JPEG of variable length.
    Mjpeg,
    /// H.264: each frame is one access unit in Annex B, variable length
    /// (an encoded bus: read it in order with `Reader::next_encoded`).
    H264,
    /// Audio: signed 16-bit little-endian PCM, channels interleaved; each
    /// frame is one chunk of `height` samples ([`FrameSpec::audio`]).
    S16le,
    /// Audio: each frame is one Opus packet (an encoded bus; the header's
    /// codec configuration is the `OpusHead` of RFC 7845).
    Opus,
    /// Audio: each frame is one raw AAC-LC frame (an encoded bus; the codec
    /// configuration is the AudioSpecificConfig).
    Aac,
}

/// One plane of a raw format: where it starts in the slot and its geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plane {
    /// Byte offset of the plane's first row inside the slot.
    pub offset: u32,
    /// Bytes from one row to the next.
    pub stride: u32,
    /// Rows in the plane.
    pub rows: u32,
    /// Bytes of pixel data in one row (`<= stride`).
    pub row_bytes: u32,
}

impl Plane {
    /// Bytes the plane spans in the slot.
    pub const fn len(&self) -> usize {
        self.stride as usize * self.rows as usize
    }

    /// True when the plane has no bytes.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PixelFormat {
    /// Every format, in a stable order.
    pub const ALL: [PixelFormat; 12] = [
        PixelFormat::Yuyv,
        PixelFormat::Uyvy,
        PixelFormat::Nv12,
        PixelFormat::I420,
        PixelFormat::Rgb24,
        PixelFormat::Bgr24,
        PixelFormat::Gray8,
        PixelFormat::Mjpeg,
        PixelFormat::H264,
        PixelFormat::S16le,
        PixelFormat::Opus,
        PixelFormat::Aac,
    ];

    /// The V4L2 fourcc, as stored in the bus header.
    pub const fn fourcc(self) -> u32 {
        let code = match self {
            PixelFormat::Yuyv => b"YUYV",
            PixelFormat::Uyvy => b"UYVY",
            PixelFormat::Nv12 => b"NV12",
            PixelFormat::I420 => b"YU12",
            PixelFormat::Rgb24 => b"RGB3",
            PixelFormat::Bgr24 => b"BGR3",
            PixelFormat::Gray8 => b"GREY",
            PixelFormat::Mjpeg => b"MJPG",
            PixelFormat::H264 => b"H264",
            PixelFormat::S16le => b"S16L",
            PixelFormat::Opus => b"OPUS",
            PixelFormat::Aac => b"AAC ",
        };
        u32::from_le_bytes(*code)
    }

    /// The format with this fourcc, if framebus knows it.
    pub fn from_fourcc(fourcc: u32) -> Option<PixelFormat> {
        PixelFormat::ALL.into_iter().find(|f| f.fourcc() == fourcc)
    }

    /// Lower-case name used on the command line and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Uyvy => "uyvy",
            PixelFormat::Nv12 => "nv12",
            PixelFormat::I420 => "i420",
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Bgr24 => "bgr24",
            PixelFormat::Gray8 => "gray8",
            PixelFormat::Mjpeg => "mjpeg",
            PixelFormat::H264 => "h264",
            PixelFormat::S16le => "s16le",
            PixelFormat::Opus => "opus",
            PixelFormat::Aac => "aac",
        }
    }

    /// True for formats whose frames have a variable length.
    pub const fn is_compressed(self) -> bool {
        matches!(
            self,
            PixelFormat::Mjpeg | PixelFormat::H264 | PixelFormat::Opus | PixelFormat::Aac
        )
    }

    /// True for the audio formats (an audio bus, [`FrameSpec::audio`]).
    pub const fn is_audio(self) -> bool {
        matches!(
            self,
            PixelFormat::S16le | PixelFormat::Opus | PixelFormat::Aac
        )
    }

    /// True for the formats read in order with `Reader::next_encoded`
    /// (H.264, Opus, AAC): each frame depends on the stream before it.
    pub const fn is_encoded(self) -> bool {
        matches!(
            self,
            PixelFormat::H264 | PixelFormat::Opus | PixelFormat::Aac
        )
    }

    /// `(bytes per pixel in each plane's row, horizontal subsampling,
    /// vertical subsampling)` for each plane.
    const fn plane_shapes(self) -> &'static [(u32, u32, u32)] {
        match self {
            PixelFormat::Yuyv | PixelFormat::Uyvy => &[(2, 1, 1)],
            // The UV plane of NV12 has half the rows and full-width rows of
            // interleaved U,V pairs.
            PixelFormat::Nv12 => &[(1, 1, 1), (2, 2, 2)],
            PixelFormat::I420 => &[(1, 1, 1), (1, 2, 2), (1, 2, 2)],
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => &[(3, 1, 1)],
            PixelFormat::Gray8 => &[(1, 1, 1)],
            // One row per sample of `width` channels of 2 bytes.
            PixelFormat::S16le => &[(2, 1, 1)],
            PixelFormat::Mjpeg | PixelFormat::H264 | PixelFormat::Opus | PixelFormat::Aac => &[],
        }
    }

    /// Required alignment of width and height (chroma subsampling).
    const fn alignment(self) -> (u32, u32) {
        match self {
            PixelFormat::Yuyv | PixelFormat::Uyvy => (2, 1),
            PixelFormat::Nv12 | PixelFormat::I420 => (2, 2),
            _ => (1, 1),
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that framebus does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?} (expected one of yuyv, uyvy, nv12, i420, rgb24, bgr24, gray8, mjpeg, h264, s16le, opus, aac)")]
pub struct UnknownFormat(pub String);

impl FromStr for PixelFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "yuy2" => "yuyv",
            "yu12" | "yuv420p" => "i420",
            "rgb" | "rgb3" => "rgb24",
            "bgr" | "bgr3" => "bgr24",
            "grey" | "gray" | "y8" => "gray8",
            "mjpg" | "jpeg" => "mjpeg",
            "avc" | "h.264" => "h264",
            "pcm" | "s16" | "s16_le" => "s16le",
            "mp4a" | "aac-lc" => "aac",
            other => other,
        };
        PixelFormat::ALL
            .into_iter()
            .find(|f| f.name() == alias)
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// A frame rate as a fraction (`30000/1001` is NTSC's 29.97).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fps {
    /// Frames …
    pub num: u32,
    /// … per this many seconds.
    pub den: u32,
}

impl Fps {
    /// `num` frames per second.
    pub const fn new(num: u32) -> Fps {
        Fps { num, den: 1 }
    }

    /// The rate as a float.
    pub fn as_f64(self) -> f64 {
        if self.den == 0 {
            0.0
        } else {
            f64::from(self.num) / f64::from(self.den)
        }
    }
}

impl fmt::Display for Fps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{:.3}", self.as_f64())
        }
    }
}

/// Why a frame spec is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// Width or height is zero or above [`MAX_DIMENSION`].
    #[error("size {width}x{height} is out of range (1..={max} each)", max = MAX_DIMENSION)]
    Size {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// Width or height is not a multiple of the format's subsampling.
    #[error("{format} needs a width that is a multiple of {wa} and a height that is a multiple of {ha}, got {width}x{height}")]
    Alignment {
        /// The format.
        format: PixelFormat,
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// Width alignment.
        wa: u32,
        /// Height alignment.
        ha: u32,
    },
    /// A zero frame rate.
    #[error("frame rate {num}/{den} is not positive")]
    Fps {
        /// Numerator.
        num: u32,
        /// Denominator.
        den: u32,
    },
    /// A stride shorter than a row of pixels.
    #[error("plane {plane} stride {stride} is shorter than its row of {row_bytes} bytes")]
    Stride {
        /// Plane index.
        plane: usize,
        /// Given stride.
        stride: u32,
        /// Bytes of pixels in a row.
        row_bytes: u32,
    },
    /// Strides given for the wrong number of planes.
    #[error("{format} has {expected} plane(s), {given} stride(s) were given")]
    PlaneCount {
        /// The format.
        format: PixelFormat,
        /// Planes the format has.
        expected: usize,
        /// Strides given.
        given: usize,
    },
    /// A frame larger than a slot can address.
    #[error("a frame of {bytes} bytes is too large")]
    TooLarge {
        /// Frame size.
        bytes: u64,
    },
    /// Audio parameters out of range.
    #[error("audio of {rate} Hz, {channels} channel(s), {samples} samples per chunk is out of range (rate {min_rate}..={max_rate}, 1..={max_channels} channels, 1..={max_samples} samples)",
        min_rate = MIN_SAMPLE_RATE, max_rate = MAX_SAMPLE_RATE, max_channels = MAX_CHANNELS, max_samples = MAX_DIMENSION)]
    Audio {
        /// Samples per second.
        rate: u32,
        /// Channels.
        channels: u32,
        /// Samples per chunk.
        samples: u32,
    },
}

/// Most channels an audio bus carries.
pub const MAX_CHANNELS: u32 = 8;
/// Lowest sample rate an audio bus accepts.
pub const MIN_SAMPLE_RATE: u32 = 8000;
/// Highest sample rate an audio bus accepts.
pub const MAX_SAMPLE_RATE: u32 = 192_000;

/// What frames on a bus look like: format, size, rate and plane layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameSpec {
    /// Pixel format.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Nominal frame rate.
    pub fps: Fps,
    planes: [Plane; 4],
    plane_count: u32,
}

impl FrameSpec {
    /// A spec with tightly packed planes.
    pub fn new(
        format: PixelFormat,
        width: u32,
        height: u32,
        fps: Fps,
    ) -> Result<FrameSpec, SpecError> {
        let strides: Vec<u32> = format
            .plane_shapes()
            .iter()
            .map(|&(bpp, hs, _)| width.div_ceil(hs) * bpp)
            .collect();
        FrameSpec::with_strides(format, width, height, fps, &strides)
    }

    /// An audio spec: `channels` channels at `rate` samples per second, in
    /// chunks of `samples` samples (a chunk is one frame on the bus). The
    /// header fields carry it as width = channels, height = samples and
    /// fps = `rate / samples` (chunks per second).
    pub fn audio(
        format: PixelFormat,
        rate: u32,
        channels: u32,
        samples: u32,
    ) -> Result<FrameSpec, SpecError> {
        let bad = SpecError::Audio {
            rate,
            channels,
            samples,
        };
        if !format.is_audio() {
            return Err(bad);
        }
        FrameSpec::new(
            format,
            channels,
            samples,
            Fps {
                num: rate,
                den: samples,
            },
        )
        .map_err(|_| bad)
    }

    /// Audio: samples per second (0 for video).
    pub fn sample_rate(&self) -> u32 {
        if self.format.is_audio() {
            self.fps.num
        } else {
            0
        }
    }

    /// Audio: channels (0 for video).
    pub fn channels(&self) -> u32 {
        if self.format.is_audio() {
            self.width
        } else {
            0
        }
    }

    /// Audio: samples per chunk (0 for video).
    pub fn chunk_samples(&self) -> u32 {
        if self.format.is_audio() {
            self.height
        } else {
            0
        }
    }

    /// A spec with the given stride for each plane (rows padded, as some
    /// cameras and encoders deliver them).
    pub fn with_strides(
        format: PixelFormat,
        width: u32,
        height: u32,
        fps: Fps,
        strides: &[u32],
    ) -> Result<FrameSpec, SpecError> {
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(SpecError::Size { width, height });
        }
        let (wa, ha) = format.alignment();
        if !width.is_multiple_of(wa) || !height.is_multiple_of(ha) {
            return Err(SpecError::Alignment {
                format,
                width,
                height,
                wa,
                ha,
            });
        }
        if format.is_audio()
            && (!(1..=MAX_CHANNELS).contains(&width)
                || !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&fps.num)
                || fps.den != height)
        {
            return Err(SpecError::Audio {
                rate: fps.num,
                channels: width,
                samples: height,
            });
        }
        if fps.num == 0 || fps.den == 0 {
            return Err(SpecError::Fps {
                num: fps.num,
                den: fps.den,
            });
        }
        let shapes = format.plane_shapes();
        if strides.len() != shapes.len() {
            return Err(SpecError::PlaneCount {
                format,
                expected: shapes.len(),
                given: strides.len(),
            });
        }
        let mut planes = [Plane::default(); 4];
        let mut offset: u64 = 0;
        for (i, (&(bpp, hs, vs), &stride)) in shapes.iter().zip(strides).enumerate() {
            let row_bytes = width.div_ceil(hs) * bpp;
            if stride < row_bytes {
                return Err(SpecError::Stride {
                    plane: i,
                    stride,
                    row_bytes,
                });
            }
            let rows = height.div_ceil(vs);
            let off = u32::try_from(offset).map_err(|_| SpecError::TooLarge { bytes: offset })?;
            planes[i] = Plane {
                offset: off,
                stride,
                rows,
                row_bytes,
            };
            offset += u64::from(stride) * u64::from(rows);
        }
        if offset > u64::from(u32::MAX) {
            return Err(SpecError::TooLarge { bytes: offset });
        }
        Ok(FrameSpec {
            format,
            width,
            height,
            fps,
            planes,
            plane_count: shapes.len() as u32,
        })
    }

    /// The planes of a raw format (empty for compressed formats).
    pub fn planes(&self) -> &[Plane] {
        &self.planes[..self.plane_count as usize]
    }

    /// Bytes of one raw frame (0 for compressed formats, whose frames vary).
    pub fn frame_size(&self) -> usize {
        self.planes().iter().map(Plane::len).sum()
    }

    /// Rebuild a spec from the raw fields of a bus header, checking that they
    /// describe a layout this crate would itself produce for that format.
    pub(crate) fn from_parts(
        format: PixelFormat,
        width: u32,
        height: u32,
        fps: Fps,
        strides: &[u32],
    ) -> Result<FrameSpec, SpecError> {
        FrameSpec::with_strides(format, width, height, fps, strides)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nv12_layout() {
        let s = FrameSpec::new(PixelFormat::Nv12, 1920, 1080, Fps::new(60)).unwrap();
        assert_eq!(s.frame_size(), 1920 * 1080 * 3 / 2);
        assert_eq!(s.planes()[1].offset, 1920 * 1080);
        assert_eq!(s.planes()[1].rows, 540);
        assert_eq!(s.planes()[1].stride, 1920);
    }

    #[test]
    fn i420_layout() {
        let s = FrameSpec::new(PixelFormat::I420, 640, 480, Fps::new(30)).unwrap();
        let p = s.planes();
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].stride, 320);
        assert_eq!(p[2].offset, 640 * 480 + 320 * 240);
        assert_eq!(s.frame_size(), 640 * 480 * 3 / 2);
    }

    #[test]
    fn packed_sizes() {
        for (f, bpp) in [
            (PixelFormat::Yuyv, 2),
            (PixelFormat::Uyvy, 2),
            (PixelFormat::Rgb24, 3),
            (PixelFormat::Bgr24, 3),
            (PixelFormat::Gray8, 1),
        ] {
            let s = FrameSpec::new(f, 64, 48, Fps::new(30)).unwrap();
            assert_eq!(s.frame_size(), 64 * 48 * bpp, "{f}");
        }
        let m = FrameSpec::new(PixelFormat::Mjpeg, 64, 48, Fps::new(30)).unwrap();
        assert_eq!(m.frame_size(), 0);
    }

    #[test]
    fn bad_specs() {
        assert!(matches!(
            FrameSpec::new(PixelFormat::Nv12, 1921, 1080, Fps::new(60)),
            Err(SpecError::Alignment { .. })
        ));
        assert!(matches!(
            FrameSpec::new(PixelFormat::Gray8, 0, 10, Fps::new(1)),
            Err(SpecError::Size { .. })
        ));
        assert!(matches!(
            FrameSpec::new(PixelFormat::Gray8, 10, 10, Fps { num: 0, den: 1 }),
            Err(SpecError::Fps { .. })
        ));
        assert!(matches!(
            FrameSpec::with_strides(PixelFormat::Gray8, 10, 10, Fps::new(1), &[9]),
            Err(SpecError::Stride { .. })
        ));
    }

    #[test]
    fn fourcc_round_trip_and_names() {
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Some(f));
            assert_eq!(f.name().parse::<PixelFormat>().unwrap(), f);
        }
        assert_eq!("YUY2".parse::<PixelFormat>().unwrap(), PixelFormat::Yuyv);
        assert_eq!("AVC".parse::<PixelFormat>().unwrap(), PixelFormat::H264);
        assert!("hevc".parse::<PixelFormat>().is_err());
    }
}
