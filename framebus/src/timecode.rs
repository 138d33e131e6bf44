//! The time code carried by test frames (see `docs/timecode.md`).
//!
//! Two bands across the full width at the top of the frame, each
//! `height / 24` rows high:
//!
//! ```text
//! row 0          ┌──────────────── band 1: 64 cells ────────────────┐
//!                │ capture time, µs since the Unix epoch (REALTIME) │
//! row h/24       ├──────────────── band 2: 32 cells ────────────────┤
//!                │ frame counter                                    │
//! row 2*h/24     └──────────────────────────────────────────────────┘
//! ```
//!
//! Cell `i` of a band with `n` cells spans columns `i*w/n .. (i+1)*w/n`
//! (integer division). Bits are most significant first at the left; a cell is
//! white (luma 235) for 1 and black (luma 16) for 0, with neutral chroma. A
//! decoder averages a few luma samples around the middle of each cell and
//! thresholds at 128. Large cells (30x45 pixels at 1080p, 10x20 after
//! scaling to 640x480) survive JPEG quality 50 and H.264 at 1 Mbit/s.
//!
//! This module has no media dependencies: [`paint`] writes the bands into a
//! raw frame of any bus format, [`decode`] reads them back from a raw frame,
//! and [`decode_with`] from any luma sampler (a decoded JPEG, a scaled
//! image...).

use crate::format::{FrameSpec, PixelFormat};

/// The band height is the frame height divided by this.
pub const BAND_DIVISOR: u32 = 24;
/// Cells in band 1 (capture time, µs).
pub const TIME_CELLS: u32 = 64;
/// Cells in band 2 (frame counter).
pub const COUNTER_CELLS: u32 = 32;
/// Luma of a 1 cell.
pub const WHITE: u8 = 235;
/// Luma of a 0 cell.
pub const BLACK: u8 = 16;
/// Decision threshold on a cell's luma.
pub const THRESHOLD: u8 = 128;
/// A cell whose averaged luma lies closer than this to [`THRESHOLD`] makes
/// [`decode_with`] give up (the picture is not a time code, or too damaged).
pub const AMBIGUITY: u8 = 24;
/// Smallest frame that can carry the code: every cell at least one pixel
/// wide, every band at least one row high.
pub const MIN_WIDTH: u32 = TIME_CELLS;
/// See [`MIN_WIDTH`].
pub const MIN_HEIGHT: u32 = BAND_DIVISOR;

/// What one frame's time code says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TimeCode {
    /// Capture time in microseconds since the Unix epoch (CLOCK_REALTIME).
    pub realtime_us: u64,
    /// Frame counter.
    pub counter: u32,
}

/// Why [`paint`] refused a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PaintError {
    /// Too small to hold a band of cells.
    #[error("a {width}x{height} frame is too small for the time code (needs at least {MIN_WIDTH}x{MIN_HEIGHT})")]
    TooSmall {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
    /// Compressed and audio formats cannot be painted in place.
    #[error("cannot paint the time code into {0} frames (compressed or audio)")]
    Compressed(PixelFormat),
    /// The buffer is shorter than one frame of the spec.
    #[error("buffer of {len} bytes is shorter than a {expected}-byte frame")]
    ShortBuffer {
        /// Buffer length.
        len: usize,
        /// Frame size.
        expected: usize,
    },
}

/// Rows of one band in a frame of this height.
pub const fn band_height(height: u32) -> u32 {
    height / BAND_DIVISOR
}

/// Columns `[x0, x1)` of cell `i` of `cells` across `width`.
pub const fn cell_span(width: u32, cells: u32, i: u32) -> (u32, u32) {
    let w = width as u64;
    (
        (i as u64 * w / cells as u64) as u32,
        ((i as u64 + 1) * w / cells as u64) as u32,
    )
}

/// The luma of every column of a band holding `value` in `cells` cells.
fn band_row(width: u32, cells: u32, value: u64, row: &mut Vec<u8>) {
    row.clear();
    row.resize(width as usize, BLACK);
    for i in 0..cells {
        let bit = (value >> (cells - 1 - i)) & 1;
        if bit == 1 {
            let (x0, x1) = cell_span(width, cells, i);
            row[x0 as usize..x1 as usize].fill(WHITE);
        }
    }
}

/// Paint the two bands of `tc` into a raw frame of `spec`, in place.
///
/// Only the band rows are written (luma and, for the band rows, neutral
/// chroma), so the rest of the frame is left as it was. Cost: two rows are
/// built and copied `2 * height / 24` times.
pub fn paint(spec: &FrameSpec, frame: &mut [u8], tc: TimeCode) -> Result<(), PaintError> {
    if spec.format.is_compressed() || spec.format.is_audio() {
        return Err(PaintError::Compressed(spec.format));
    }
    let (w, h) = (spec.width, spec.height);
    if w < MIN_WIDTH || h < MIN_HEIGHT {
        return Err(PaintError::TooSmall {
            width: w,
            height: h,
        });
    }
    if frame.len() < spec.frame_size() {
        return Err(PaintError::ShortBuffer {
            len: frame.len(),
            expected: spec.frame_size(),
        });
    }
    let bh = band_height(h) as usize;
    let mut luma = Vec::with_capacity(w as usize);
    let mut packed = Vec::new();
    let planes = spec.planes();
    for (band, (cells, value)) in [
        (TIME_CELLS, tc.realtime_us),
        (COUNTER_CELLS, u64::from(tc.counter)),
    ]
    .into_iter()
    .enumerate()
    {
        band_row(w, cells, value, &mut luma);
        // The row in the format's own bytes.
        let row: &[u8] = match spec.format {
            PixelFormat::Nv12 | PixelFormat::I420 | PixelFormat::Gray8 => &luma,
            PixelFormat::Yuyv | PixelFormat::Uyvy => {
                let y_first = spec.format == PixelFormat::Yuyv;
                packed.clear();
                for &y in &luma {
                    if y_first {
                        packed.extend_from_slice(&[y, 128]);
                    } else {
                        packed.extend_from_slice(&[128, y]);
                    }
                }
                &packed
            }
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => {
                packed.clear();
                for &y in &luma {
                    let v = if y == WHITE { 255 } else { 0 };
                    packed.extend_from_slice(&[v, v, v]);
                }
                &packed
            }
            PixelFormat::Mjpeg
            | PixelFormat::H264
            | PixelFormat::S16le
            | PixelFormat::Opus
            | PixelFormat::Aac => unreachable!("checked above"),
        };
        let p = planes[0];
        for r in band * bh..(band + 1) * bh {
            let start = p.offset as usize + r * p.stride as usize;
            frame[start..start + row.len()].copy_from_slice(row);
        }
    }
    // Neutral chroma under both bands for the planar formats.
    for p in planes.iter().skip(1) {
        let rows = (2 * bh).div_ceil(2).min(p.rows as usize);
        for r in 0..rows {
            let start = p.offset as usize + r * p.stride as usize;
            frame[start..start + p.row_bytes as usize].fill(128);
        }
    }
    Ok(())
}

/// Decode the time code with `luma(x, y)` giving the luma of a pixel of a
/// `width`x`height` picture. `None` if the picture is too small or any cell
/// is ambiguous (not a time code, or damaged beyond recognition).
pub fn decode_with(width: u32, height: u32, luma: impl Fn(u32, u32) -> u8) -> Option<TimeCode> {
    if width < MIN_WIDTH || height < MIN_HEIGHT {
        return None;
    }
    let bh = band_height(height);
    let read_band = |band: u32, cells: u32| -> Option<u64> {
        let (y0, y1) = (band * bh, (band + 1) * bh);
        let yc = (y0 + y1) / 2;
        let dy = (y1 - y0) / 5;
        let mut value = 0u64;
        for i in 0..cells {
            let (x0, x1) = cell_span(width, cells, i);
            let xc = (x0 + x1) / 2;
            let dx = (x1 - x0) / 5;
            // A 3x3 grid around the middle, well inside the cell.
            let mut sum = 0u32;
            for y in [yc - dy, yc, yc + dy] {
                for x in [xc - dx, xc, xc + dx] {
                    sum += u32::from(luma(x, y));
                }
            }
            let avg = sum / 9;
            if avg.abs_diff(u32::from(THRESHOLD)) < u32::from(AMBIGUITY) {
                return None;
            }
            value = value << 1 | u64::from(avg > u32::from(THRESHOLD));
        }
        Some(value)
    };
    let realtime_us = read_band(0, TIME_CELLS)?;
    let counter = read_band(1, COUNTER_CELLS)? as u32;
    Some(TimeCode {
        realtime_us,
        counter,
    })
}

/// Decode the time code of a raw frame of `spec`. `None` for compressed
/// and audio formats, short buffers, and frames without a readable code.
pub fn decode(spec: &FrameSpec, frame: &[u8]) -> Option<TimeCode> {
    if spec.format.is_compressed() || spec.format.is_audio() || frame.len() < spec.frame_size() {
        return None;
    }
    let p = spec.planes()[0];
    let at = |y: u32| p.offset as usize + y as usize * p.stride as usize;
    let fmt = spec.format;
    decode_with(spec.width, spec.height, |x, y| {
        let row = at(y);
        let x = x as usize;
        match fmt {
            PixelFormat::Nv12 | PixelFormat::I420 | PixelFormat::Gray8 => frame[row + x],
            PixelFormat::Yuyv => frame[row + 2 * x],
            PixelFormat::Uyvy => frame[row + 2 * x + 1],
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => {
                let px = &frame[row + 3 * x..row + 3 * x + 3];
                let (r, g, b) = if fmt == PixelFormat::Rgb24 {
                    (px[0], px[1], px[2])
                } else {
                    (px[2], px[1], px[0])
                };
                rgb_to_luma(r, g, b)
            }
            PixelFormat::Mjpeg
            | PixelFormat::H264
            | PixelFormat::S16le
            | PixelFormat::Opus
            | PixelFormat::Aac => 0,
        }
    })
}

/// BT.601 limited-range luma of an RGB pixel (255,255,255 -> 235).
pub fn rgb_to_luma(r: u8, g: u8, b: u8) -> u8 {
    let y = (66 * u32::from(r) + 129 * u32::from(g) + 25 * u32::from(b) + 128) >> 8;
    (y + 16) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Fps;

    const TC: TimeCode = TimeCode {
        realtime_us: 1_763_726_000_123_456,
        counter: 0xdead_beef,
    };

    #[test]
    fn round_trip_every_format() {
        for f in PixelFormat::ALL {
            if f.is_compressed() || f.is_audio() {
                continue;
            }
            for (w, h) in [(1920, 1080), (640, 480), (64, 24), (130, 50)] {
                let spec = FrameSpec::new(f, w, h, Fps::new(30)).unwrap();
                let mut buf = vec![77u8; spec.frame_size()];
                paint(&spec, &mut buf, TC).unwrap();
                assert_eq!(decode(&spec, &buf), Some(TC), "{f} {w}x{h}");
            }
        }
    }

    #[test]
    fn only_the_bands_are_written() {
        let spec = FrameSpec::new(PixelFormat::Nv12, 640, 480, Fps::new(30)).unwrap();
        let mut buf = vec![77u8; spec.frame_size()];
        paint(&spec, &mut buf, TC).unwrap();
        let bh = band_height(480) as usize;
        assert!(buf[2 * bh * 640..640 * 480].iter().all(|&b| b == 77));
        assert!(buf[640 * 480 + bh * 640..].iter().all(|&b| b == 77));
    }

    #[test]
    fn not_a_time_code() {
        let spec = FrameSpec::new(PixelFormat::Gray8, 640, 480, Fps::new(30)).unwrap();
        assert_eq!(decode(&spec, &vec![128u8; spec.frame_size()]), None);
        let tiny = FrameSpec::new(PixelFormat::Gray8, 32, 16, Fps::new(30)).unwrap();
        assert_eq!(decode(&tiny, &vec![235u8; tiny.frame_size()]), None);
        let mut buf = vec![0u8; tiny.frame_size()];
        assert_eq!(
            paint(&tiny, &mut buf, TC),
            Err(PaintError::TooSmall {
                width: 32,
                height: 16
            })
        );
    }

    /// Nearest-neighbour and box-filter scaling of a 1080p code to 640x480.
    #[test]
    fn survives_scaling() {
        let spec = FrameSpec::new(PixelFormat::Gray8, 1920, 1080, Fps::new(30)).unwrap();
        let mut buf = vec![90u8; spec.frame_size()];
        paint(&spec, &mut buf, TC).unwrap();
        let (dw, dh) = (640u32, 480u32);
        let nearest = decode_with(dw, dh, |x, y| {
            let sx = x * 1920 / dw;
            let sy = y * 1080 / dh;
            buf[(sy * 1920 + sx) as usize]
        });
        assert_eq!(nearest, Some(TC));
        // Box filter: average the source area of each destination pixel.
        let boxed = decode_with(dw, dh, |x, y| {
            let (sx0, sx1) = (x * 1920 / dw, (x + 1) * 1920 / dw);
            let (sy0, sy1) = (y * 1080 / dh, ((y + 1) * 1080 / dh).max(y * 1080 / dh + 1));
            let mut sum = 0u32;
            let mut n = 0u32;
            for sy in sy0..sy1 {
                for sx in sx0..sx1 {
                    sum += u32::from(buf[(sy * 1920 + sx) as usize]);
                    n += 1;
                }
            }
            (sum / n) as u8
        });
        assert_eq!(boxed, Some(TC));
    }

    /// A real JPEG at quality 50, scaled to 640x480 by ffmpeg's swscale,
    /// decoded back: the code survives. Skipped (with a message) when the
    /// ffmpeg CLI is not installed.
    #[test]
    fn survives_coarse_jpeg_and_ffmpeg_scaling() {
        use std::process::Command;
        if Command::new("ffmpeg").arg("-version").output().is_err() {
            eprintln!("ffmpeg not installed: skipping the JPEG round trip");
            return;
        }
        let spec = FrameSpec::new(PixelFormat::Gray8, 1920, 1080, Fps::new(30)).unwrap();
        let mut buf: Vec<u8> = (0..spec.frame_size())
            .map(|i| ((i % 1920) * 255 / 1920) as u8)
            .collect();
        paint(&spec, &mut buf, TC).unwrap();
        let dir = std::env::temp_dir().join(format!("framebus-tc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("in.gray");
        let jpg = dir.join("q50.jpg");
        let out = dir.join("out.gray");
        std::fs::write(&raw, &buf).unwrap();
        // ffmpeg's mjpeg encoder at its coarsest quantiser (31) is much
        // harsher than libjpeg quality 50; pin it through -qmin/-qmax. (The
        // producer's tests also check exact quality 50 through turbojpeg.)
        let ok = |args: &[&str]| {
            let st = Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-y"])
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "ffmpeg {args:?} failed");
        };
        let (raw_s, jpg_s, out_s) = (
            raw.to_str().unwrap(),
            jpg.to_str().unwrap(),
            out.to_str().unwrap(),
        );
        ok(&[
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-s",
            "1920x1080",
            "-i",
            raw_s,
            "-pix_fmt",
            "yuvj420p",
            "-q:v",
            "31",
            "-qmin",
            "31",
            "-qmax",
            "31",
            jpg_s,
        ]);
        ok(&[
            "-i",
            jpg_s,
            "-vf",
            "scale=640:480",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            out_s,
        ]);
        let small = std::fs::read(&out).unwrap();
        assert_eq!(small.len(), 640 * 480);
        let got = decode_with(640, 480, |x, y| small[(y * 640 + x) as usize]);
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(got, Some(TC));
    }
}
