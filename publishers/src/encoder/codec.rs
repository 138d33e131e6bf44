//! H.264 encoding of bus frames through ffmpeg-next: scale/convert the bus
//! frame to I420 at the profile's size with the shared
//! [`crate::common::scale::Scaler`] (reading shared memory in place) and
//! copy the picture into the encoder's `AVFrame`, or, when x264 takes the
//! bus frame as it is, copy it directly; encode with zero-latency settings.
//!
//! The encoder is opened with `AV_CODEC_FLAG_GLOBAL_HEADER`, so the SPS and
//! PPS are in `extradata` only; [`H264Encoder::parameter_sets`] returns them
//! for the SDP, and the stream inserts them in-band before every IDR.

use std::fmt;

use ff::{codec, encoder, format::Pixel, frame, picture, Dictionary, Packet};
use ffmpeg_next as ff;
use framebus::{Frame, FrameSpec, PixelFormat};

use crate::common::scale::{av_pixel, OutFormat, Picture, ScaleError, Scaler};
use crate::h264::{nal, nal_type, split_annex_b};

/// Which H.264 encoder to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EncoderKind {
    /// The first hardware encoder that opens, else libx264.
    Auto,
    /// x264 (software).
    Libx264,
    /// VA-API (Intel/AMD).
    H264Vaapi,
    /// V4L2 memory-to-memory (Raspberry Pi and other SoCs).
    H264V4l2m2m,
    /// NVIDIA NVENC.
    H264Nvenc,
}

impl EncoderKind {
    fn ffmpeg_name(self) -> &'static str {
        match self {
            EncoderKind::Auto | EncoderKind::Libx264 => "libx264",
            EncoderKind::H264Vaapi => "h264_vaapi",
            EncoderKind::H264V4l2m2m => "h264_v4l2m2m",
            EncoderKind::H264Nvenc => "h264_nvenc",
        }
    }

    /// The encoders to try, in order.
    fn candidates(self) -> Vec<EncoderKind> {
        match self {
            EncoderKind::Auto => vec![
                EncoderKind::H264Nvenc,
                EncoderKind::H264Vaapi,
                EncoderKind::H264V4l2m2m,
                EncoderKind::Libx264,
            ],
            k => vec![k],
        }
    }
}

/// Settings of one encoded stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodeSettings {
    /// Output width.
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// Output frame rate (frames per second).
    pub fps: u32,
    /// Target bit rate, bits per second.
    pub bitrate: u64,
    /// Frames between key frames.
    pub gop: u32,
    /// Which encoder.
    pub encoder: EncoderKind,
}

/// Why the encoder could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// ffmpeg could not be initialised.
    #[error("cannot initialise ffmpeg: {0}")]
    Init(ff::Error),
    /// No candidate encoder opened.
    #[error("no H.264 encoder opened ({tried}): {source}")]
    Open {
        /// Names of the encoders tried.
        tried: String,
        /// The last failure.
        source: ff::Error,
    },
    /// The bus format cannot be converted.
    #[error("bus pixel format {0:?} is not supported by the RTSP publisher")]
    Format(PixelFormat),
    /// The frame could not be scaled or converted.
    #[error(transparent)]
    Scale(#[from] ScaleError),
    /// The encoder failed on a frame.
    #[error("encoding failed: {0}")]
    Encode(ff::Error),
    /// The encoder produced no SPS/PPS.
    #[error("the encoder produced no SPS/PPS in its extradata")]
    NoParameterSets,
}

/// One encoded access unit in Annex B.
pub struct EncodedAu {
    /// Annex B bytes; SPS and PPS are prepended to IDR access units.
    pub data: Vec<u8>,
    /// True for an IDR access unit.
    pub key: bool,
    /// Presentation time stamp in 90 kHz units (as given to `encode`).
    pub pts: i64,
}

/// How bus frames become the encoder's input picture.
enum Input {
    /// The bus format and size are the encoder's: rows are copied as they
    /// are.
    Direct(frame::Video),
    /// Scaled and converted to I420 by the shared scaler, then copied.
    Scaled(Scaler, frame::Video),
}

/// A running H.264 encoder for one bus format and one profile.
pub struct H264Encoder {
    enc: encoder::Video,
    name: &'static str,
    src_spec: FrameSpec,
    input: Input,
    sps: Vec<u8>,
    pps: Vec<u8>,
    packet: Packet,
}

impl fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H264Encoder")
            .field("encoder", &self.name)
            .finish_non_exhaustive()
    }
}

impl H264Encoder {
    /// Opens an encoder for frames of `src` encoded with `settings`.
    pub fn open(src: FrameSpec, settings: EncodeSettings) -> Result<H264Encoder, EncodeError> {
        ff::init().map_err(EncodeError::Init)?;
        let in_px = av_pixel(src.format).ok_or(EncodeError::Format(src.format))?;
        let mut last_err = ff::Error::EncoderNotFound;
        let mut tried = Vec::new();
        for kind in settings.encoder.candidates() {
            let name = kind.ffmpeg_name();
            tried.push(name);
            // x264 takes NV12 and I420 as they are (it keeps chroma
            // interleaved internally, so NV12 is even its cheapest input):
            // a bus in either format at the profile's size is encoded
            // without swscale.
            let same_size = src.width == settings.width && src.height == settings.height;
            let direct = same_size
                && name == "libx264"
                && matches!(src.format, PixelFormat::I420 | PixelFormat::Nv12);
            let enc_px = if direct { in_px } else { Pixel::YUV420P };
            // Probing hardware encoders in `auto` mode: a missing device is
            // expected, so libav's own error lines for it stay quiet (the
            // outcome is logged below at debug level).
            let probing = settings.encoder == EncoderKind::Auto && name != "libx264";
            let level = probing
                .then(ffmpeg_next::util::log::get_level)
                .and_then(Result::ok);
            if level.is_some() {
                ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Quiet);
            }
            let opened = open_codec(name, settings, enc_px);
            if let Some(level) = level {
                ffmpeg_next::util::log::set_level(level);
            }
            match opened {
                Ok(enc) => {
                    let (sps, pps) = parameter_sets(&enc).ok_or(EncodeError::NoParameterSets)?;
                    let input = if direct {
                        Input::Direct(frame::Video::new(in_px, src.width, src.height))
                    } else {
                        Input::Scaled(
                            Scaler::new(settings.width, settings.height, OutFormat::I420),
                            frame::Video::new(Pixel::YUV420P, settings.width, settings.height),
                        )
                    };
                    tracing::info!(encoder = name, "opened H.264 encoder");
                    return Ok(H264Encoder {
                        enc,
                        name,
                        src_spec: src,
                        input,
                        sps,
                        pps,
                        packet: Packet::empty(),
                    });
                }
                Err(e) => {
                    tracing::debug!(encoder = name, error = %e, "encoder did not open");
                    last_err = e;
                }
            }
        }
        Err(EncodeError::Open {
            tried: tried.join(", "),
            source: last_err,
        })
    }

    /// The ffmpeg name of the encoder in use.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The bus frame layout this encoder was opened for.
    pub fn src_spec(&self) -> &FrameSpec {
        &self.src_spec
    }

    /// SPS and PPS NAL units (without start codes).
    pub fn parameter_sets(&self) -> (&[u8], &[u8]) {
        (&self.sps, &self.pps)
    }

    /// Changes the target bit rate (and the one-second VBV with it) from
    /// the next frame on, without reopening: libavcodec's libx264 wrapper
    /// compares the context's `bit_rate`, `rc_max_rate` and
    /// `rc_buffer_size` with x264's parameters before every frame and
    /// calls `x264_encoder_reconfig` when they differ (no new SPS, no
    /// IDR). Returns false, changing nothing, for the other encoders,
    /// which are not reconfigured in flight.
    pub fn set_bitrate(&mut self, bitrate: u64) -> bool {
        if self.name != "libx264" {
            return false;
        }
        let b = i64::try_from(bitrate).unwrap_or(i64::MAX);
        // SAFETY: `self.enc` owns an opened codec context, so the pointer
        // is valid and unaliased while `&mut self` is held; these are plain
        // integer fields that libavcodec reads only inside
        // `avcodec_send_frame`, which cannot be running concurrently (it
        // takes the same `&mut self`).
        unsafe {
            let ctx = self.enc.as_mut_ptr();
            (*ctx).bit_rate = b;
            (*ctx).rc_max_rate = b;
            (*ctx).rc_buffer_size = i32::try_from(bitrate).unwrap_or(i32::MAX);
        }
        true
    }

    /// Encodes one bus frame (of the source spec) with presentation time
    /// `pts` (90 kHz), forcing an IDR when `force_idr`. Returns the access
    /// units the encoder emitted (zero or one with zero-latency settings).
    pub fn encode(
        &mut self,
        bus_frame: &Frame,
        pts: i64,
        force_idr: bool,
    ) -> Result<Vec<EncodedAu>, EncodeError> {
        let frame = match &mut self.input {
            Input::Direct(f) => {
                copy_into_frame(&self.src_spec, bus_frame, f);
                f
            }
            Input::Scaled(scaler, f) => {
                copy_picture(scaler.scale(bus_frame)?, f);
                f
            }
        };
        frame.set_pts(Some(pts));
        frame.set_kind(if force_idr {
            picture::Type::I
        } else {
            picture::Type::None
        });
        self.enc.send_frame(frame).map_err(EncodeError::Encode)?;
        let mut out = Vec::new();
        loop {
            match self.enc.receive_packet(&mut self.packet) {
                Ok(()) => {
                    let data = self.packet.data().unwrap_or_default();
                    let nals = split_annex_b(data);
                    let key = nals.iter().any(|n| nal_type(n) == nal::IDR);
                    let mut au = Vec::with_capacity(data.len() + 64);
                    if key && !nals.iter().any(|n| nal_type(n) == nal::SPS) {
                        for ps in [&self.sps, &self.pps] {
                            au.extend_from_slice(&[0, 0, 0, 1]);
                            au.extend_from_slice(ps);
                        }
                    }
                    for n in nals {
                        au.extend_from_slice(&[0, 0, 0, 1]);
                        au.extend_from_slice(n);
                    }
                    out.push(EncodedAu {
                        data: au,
                        key,
                        pts: self.packet.pts().unwrap_or(pts),
                    });
                }
                Err(ff::Error::Other {
                    errno: libc::EAGAIN,
                })
                | Err(ff::Error::Eof) => break,
                Err(e) => return Err(EncodeError::Encode(e)),
            }
        }
        Ok(out)
    }
}

fn open_codec(name: &str, s: EncodeSettings, px: Pixel) -> Result<encoder::Video, ff::Error> {
    let codec = encoder::find_by_name(name).ok_or(ff::Error::EncoderNotFound)?;
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()?;
    enc.set_width(s.width);
    enc.set_height(s.height);
    enc.set_format(px);
    enc.set_time_base(ff::Rational::new(1, 90_000));
    enc.set_frame_rate(Some(ff::Rational::new(s.fps as i32, 1)));
    enc.set_bit_rate(s.bitrate as usize);
    enc.set_max_bit_rate(s.bitrate as usize);
    enc.set_gop(s.gop);
    enc.set_max_b_frames(0);
    enc.set_flags(codec::Flags::GLOBAL_HEADER);
    let mut opts = Dictionary::new();
    if name == "libx264" {
        opts.set("preset", "ultrafast");
        opts.set("tune", "zerolatency");
        opts.set("forced-idr", "1");
        // VBV of one second keeps the rate honest without adding latency
        // (x264 zerolatency has no lookahead).
        let kbit = (s.bitrate / 1000).to_string();
        opts.set(
            "x264-params",
            &format!("vbv-maxrate={kbit}:vbv-bufsize={kbit}"),
        );
    } else {
        opts.set("forced_idr", "1");
    }
    enc.open_as_with(codec, opts)
}

/// The SPS and PPS from the encoder's extradata (Annex B, as libx264
/// writes it; avcC is not expected from the encoders used here).
fn parameter_sets(enc: &encoder::Video) -> Option<(Vec<u8>, Vec<u8>)> {
    // SAFETY: `enc` is an opened encoder context; `extradata` is either null
    // or points to `extradata_size` bytes owned by the context, which
    // outlives this borrow, and nothing mutates it while we copy.
    let extradata: &[u8] = unsafe {
        let ctx = enc.as_ptr();
        if (*ctx).extradata.is_null() || (*ctx).extradata_size <= 0 {
            return None;
        }
        std::slice::from_raw_parts((*ctx).extradata, (*ctx).extradata_size as usize)
    };
    let nals = split_annex_b(extradata);
    let sps = nals.iter().find(|n| nal_type(n) == nal::SPS)?.to_vec();
    let pps = nals.iter().find(|n| nal_type(n) == nal::PPS)?.to_vec();
    Some((sps, pps))
}

/// Copies a scaled picture (planes back to back, no row padding) into an
/// `AVFrame` of the same format and size, row by row.
fn copy_picture(pic: &Picture, out: &mut frame::Video) {
    for (i, (plane, stride)) in pic.planes().into_iter().enumerate() {
        let dst_stride = out.stride(i);
        let dst = out.data_mut(i);
        for (r, row) in plane.chunks_exact(stride).enumerate() {
            let Some(d) = dst.get_mut(r * dst_stride..r * dst_stride + stride) else {
                break;
            };
            d.copy_from_slice(row);
        }
    }
}

/// Copies a bus frame into an `AVFrame` of the same format and size,
/// row by row (the strides differ).
fn copy_into_frame(spec: &FrameSpec, data: &[u8], out: &mut frame::Video) {
    for (i, plane) in spec.planes().iter().enumerate() {
        let dst_stride = out.stride(i);
        let dst = out.data_mut(i);
        let row = plane.row_bytes as usize;
        for r in 0..plane.rows as usize {
            let s = plane.offset as usize + r * plane.stride as usize;
            let (Some(src), Some(d)) = (
                data.get(s..s + row),
                dst.get_mut(r * dst_stride..r * dst_stride + row),
            ) else {
                break;
            };
            d.copy_from_slice(src);
        }
    }
}
