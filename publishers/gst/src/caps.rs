//! Bus formats and GStreamer caps: the one table both elements use.
//!
//! | bus | caps |
//! |---|---|
//! | `yuyv`, `uyvy`, `nv12`, `i420`, `rgb24`, `bgr24`, `gray8` | `video/x-raw, format=YUY2 / UYVY / NV12 / I420 / RGB / BGR / GRAY8` |
//! | `mjpeg` | `image/jpeg` |
//! | `h264` | `video/x-h264, stream-format=byte-stream, alignment=au` |
//!
//! Raw frames keep the bus's plane layout: a buffer of `framebussrc`
//! carries a `GstVideoMeta` with the bus's offsets and strides, and
//! `framebussink` creates its bus with the strides GStreamer uses for the
//! caps, so a default-layout buffer is copied plane by plane in one go.

use framebus::{Fps, FrameSpec, PixelFormat};
use gst_video::VideoFormat;

/// `timestamp/x-unix`: the reference of the `GstReferenceTimestampMeta`
/// that carries a frame's wall-clock (CLOCK_REALTIME) capture time; the
/// source writes it, the sink reads it.
pub static UNIX: std::sync::LazyLock<gst::Caps> =
    std::sync::LazyLock::new(|| gst::Caps::new_empty_simple("timestamp/x-unix"));

/// A buffer's wall-clock capture time from its `timestamp/x-unix` meta, ns.
pub fn unix_capture_ns(buffer: &gst::BufferRef) -> Option<u64> {
    buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .find(|m| m.reference().can_intersect(&UNIX))
        .map(|m| m.timestamp().nseconds())
}

/// The one always-present pad (`src` or `sink`) of either element.
pub fn pad_template(name: &str, direction: gst::PadDirection) -> gst::PadTemplate {
    gst::PadTemplate::new(name, direction, gst::PadPresence::Always, &template())
        .expect("a valid template")
}

/// Raw bus formats and their GStreamer names.
const RAW: [(PixelFormat, VideoFormat); 7] = [
    (PixelFormat::Yuyv, VideoFormat::Yuy2),
    (PixelFormat::Uyvy, VideoFormat::Uyvy),
    (PixelFormat::Nv12, VideoFormat::Nv12),
    (PixelFormat::I420, VideoFormat::I420),
    (PixelFormat::Rgb24, VideoFormat::Rgb),
    (PixelFormat::Bgr24, VideoFormat::Bgr),
    (PixelFormat::Gray8, VideoFormat::Gray8),
];

/// The frame rate a bus gets when the caps say `0/1` (variable): only the
/// nominal rate in the header, which readers show.
const VARIABLE_FPS: Fps = Fps::new(30);

fn video_format(f: PixelFormat) -> Option<VideoFormat> {
    RAW.iter().find(|r| r.0 == f).map(|r| r.1)
}

fn pixel_format(f: VideoFormat) -> Option<PixelFormat> {
    RAW.iter().find(|r| r.1 == f).map(|r| r.0)
}

/// Everything either element can carry (their pad templates).
pub fn template() -> gst::Caps {
    let mut caps = gst_video::VideoCapsBuilder::new()
        .format_list(RAW.iter().map(|r| r.1))
        .build();
    {
        let caps = caps.make_mut();
        caps.append(gst_video::VideoCapsBuilder::for_encoding("image/jpeg").build());
        caps.append(
            gst_video::VideoCapsBuilder::for_encoding("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        );
    }
    caps
}

fn fraction(fps: Fps) -> gst::Fraction {
    let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    gst::Fraction::new(clamp(fps.num), clamp(fps.den))
}

/// The caps of a bus's frames.
pub fn of_spec(spec: &FrameSpec) -> gst::Caps {
    let (w, h) = (spec.width as i32, spec.height as i32);
    let encoded = |name: &str| {
        gst_video::VideoCapsBuilder::for_encoding(name)
            .width(w)
            .height(h)
            .framerate(fraction(spec.fps))
    };
    match spec.format {
        PixelFormat::Mjpeg => encoded("image/jpeg").build(),
        PixelFormat::H264 => encoded("video/x-h264")
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build(),
        // framebussrc refuses audio buses at attach; a producer that comes
        // back with one gets caps nothing downstream accepts.
        audio if audio.is_audio() => gst::Caps::new_empty_simple("audio/x-framebus"),
        raw => gst_video::VideoCapsBuilder::new()
            .format(video_format(raw).expect("every raw bus format is in RAW"))
            .width(w)
            .height(h)
            .framerate(fraction(spec.fps))
            .build(),
    }
}

/// A raw bus's plane layout as GStreamer describes it: offsets and strides
/// for a `GstVideoMeta`, and whether that is the layout GStreamer assumes
/// for these caps anyway (then downstream needs no meta).
pub struct RawLayout {
    /// GStreamer's format.
    pub format: VideoFormat,
    /// Plane offsets in the frame.
    pub offsets: Vec<usize>,
    /// Plane strides.
    pub strides: Vec<i32>,
    /// The default layout of these caps.
    pub is_default: bool,
    /// GStreamer's default layout for the format and size: plane offsets,
    /// strides and frame size (what downstream without a meta assumes).
    pub default_offsets: Vec<usize>,
    /// See `default_offsets`.
    pub default_strides: Vec<i32>,
    /// See `default_offsets`.
    pub default_size: usize,
}

/// The layout of a raw bus (`None` for compressed ones).
pub fn raw_layout(spec: &FrameSpec) -> Option<RawLayout> {
    let format = video_format(spec.format)?;
    let offsets: Vec<usize> = spec.planes().iter().map(|p| p.offset as usize).collect();
    let strides: Vec<i32> = spec.planes().iter().map(|p| p.stride as i32).collect();
    let info = gst_video::VideoInfo::builder(format, spec.width, spec.height)
        .build()
        .ok()?;
    let is_default = info.offset() == offsets.as_slice() && info.stride() == strides.as_slice();
    Some(RawLayout {
        format,
        offsets,
        strides,
        is_default,
        default_offsets: info.offset().to_vec(),
        default_strides: info.stride().to_vec(),
        default_size: info.size(),
    })
}

/// What `framebussink` makes of its caps: the bus's spec, and for raw
/// video the `VideoInfo` to map the incoming buffers with.
pub struct SinkFormat {
    /// The bus to create.
    pub spec: FrameSpec,
    /// Raw video: how the buffers are laid out.
    pub info: Option<gst_video::VideoInfo>,
}

/// The bus spec for `caps`, or why it cannot be one.
pub fn to_spec(caps: &gst::CapsRef) -> Result<SinkFormat, String> {
    let s = caps.structure(0).ok_or_else(|| "empty caps".to_string())?;
    let fps = match s.get::<gst::Fraction>("framerate") {
        Ok(f) if f.numer() > 0 && f.denom() > 0 => Fps {
            num: f.numer() as u32,
            den: f.denom() as u32,
        },
        _ => VARIABLE_FPS,
    };
    let size = || -> Result<(u32, u32), String> {
        let w = s.get::<i32>("width").map_err(|e| format!("{caps}: {e}"))?;
        let h = s.get::<i32>("height").map_err(|e| format!("{caps}: {e}"))?;
        Ok((w.max(0) as u32, h.max(0) as u32))
    };
    let spec_err = |e: framebus::SpecError| format!("{caps}: {e}");
    match s.name().as_str() {
        "video/x-raw" => {
            let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| format!("{caps}: {e}"))?;
            let format = pixel_format(info.format()).ok_or_else(|| {
                format!(
                    "format {} is not a bus format (one of: {})",
                    info.format(),
                    RAW.iter()
                        .map(|r| r.1.to_str().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let strides: Vec<u32> = info.stride().iter().map(|&s| s.max(0) as u32).collect();
            // GStreamer's strides, so default-layout buffers copy plane by
            // plane; the bus computes its offsets from them.
            let spec = FrameSpec::with_strides(format, info.width(), info.height(), fps, &strides)
                .or_else(|_| FrameSpec::new(format, info.width(), info.height(), fps))
                .map_err(spec_err)?;
            Ok(SinkFormat {
                spec,
                info: Some(info),
            })
        }
        "image/jpeg" => {
            let (w, h) = size()?;
            Ok(SinkFormat {
                spec: FrameSpec::new(PixelFormat::Mjpeg, w, h, fps).map_err(spec_err)?,
                info: None,
            })
        }
        "video/x-h264" => {
            let (w, h) = size()?;
            Ok(SinkFormat {
                spec: FrameSpec::new(PixelFormat::H264, w, h, fps).map_err(spec_err)?,
                info: None,
            })
        }
        other => Err(format!("{other} is not carried by a bus")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bus_format_round_trips_through_caps() {
        gst::init().unwrap();
        for f in PixelFormat::ALL {
            if f.is_audio() {
                let spec = FrameSpec::audio(f, 48000, 1, 960).unwrap();
                assert!(!of_spec(&spec).can_intersect(&template()), "{f}");
                continue;
            }
            let spec = FrameSpec::new(f, 640, 360, Fps::new(60)).unwrap();
            let caps = of_spec(&spec);
            assert!(caps.is_fixed(), "{caps}");
            assert!(
                caps.can_intersect(&template()),
                "{caps} outside the template"
            );
            let back = to_spec(&caps).unwrap();
            assert_eq!(back.spec.format, f, "{caps}");
            assert_eq!((back.spec.width, back.spec.height), (640, 360));
            assert_eq!(back.spec.fps, Fps::new(60));
            if let Some(l) = raw_layout(&spec) {
                assert!(l.is_default, "{f:?}: 640x360 packed is GStreamer's layout");
            }
        }
    }

    #[test]
    fn odd_widths_keep_their_layout_in_a_meta() {
        gst::init().unwrap();
        // 3 bytes × 642 = 1926: GStreamer rounds RGB rows up to 1928.
        let spec = FrameSpec::new(PixelFormat::Rgb24, 642, 360, Fps::new(30)).unwrap();
        let l = raw_layout(&spec).unwrap();
        assert!(!l.is_default);
        assert_eq!(l.strides, [1926]);
        // The sink takes GStreamer's strides for its bus.
        let caps = gst_video::VideoInfo::builder(VideoFormat::Rgb, 642, 360)
            .build()
            .unwrap()
            .to_caps()
            .unwrap();
        let s = to_spec(&caps).unwrap().spec;
        assert_eq!(s.planes()[0].stride, 1928);
    }

    #[test]
    fn refuses_what_a_bus_cannot_carry() {
        gst::init().unwrap();
        let rgba = gst_video::VideoInfo::builder(VideoFormat::Rgba, 64, 64)
            .build()
            .unwrap()
            .to_caps()
            .unwrap();
        let e = to_spec(&rgba).err().unwrap();
        assert!(e.contains("RGBA") && e.contains("NV12"), "{e}");
        let h265 = gst::Caps::builder("video/x-h265").build();
        assert!(to_spec(&h265).is_err());
        // An odd height cannot be NV12.
        let odd = gst_video::VideoInfo::builder(VideoFormat::Nv12, 64, 63)
            .build()
            .unwrap()
            .to_caps()
            .unwrap();
        assert!(to_spec(&odd).is_err());
    }
}
