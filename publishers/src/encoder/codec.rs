//! H.264 encoding of bus frames through ffmpeg-next, with zero-latency
//! settings.
//!
//! **Input, without a copy of ours.** When x264 takes the bus frame as it
//! is (NV12 or I420 at the profile's size), the `AVFrame` handed to the
//! encoder points straight into the slot in shared memory: its `data` and
//! `linesize` are the bus frame's planes, and `buf[0]` is an
//! `av_buffer_create` over the slot with a no-op free (read-only), so
//! libavcodec takes a reference instead of copying (`av_frame_ref` copies
//! a frame that is not reference counted). The frame is sent and the
//! encoder drained (`receive_packet` until `EAGAIN`) in the same
//! [`H264Encoder::encode`] call, and the buffer's reference count checked
//! to be ours alone before the call returns, while the caller still holds
//! the slot: no pointer into the slot outlives the call. Otherwise the
//! shared [`crate::common::scale::Scaler`] reads the slot in place and
//! writes the scaled I420 picture straight into the encoder's own
//! `AVFrame` ([`Scaler::scale_into`]).
//!
//! **Copies that remain:** x264 copies the input picture into its own
//! frame buffers inside `x264_encoder_encode` (its lookahead and
//! reference handling need them; there is no way around it through
//! libavcodec), and each access unit is copied once from the encoder's
//! packet into a slot of the encoded bus ([`AuView::write_to`], called
//! on a `Loan`), with SPS/PPS put in front of IDRs on the way.
//!
//! The encoder is opened with `AV_CODEC_FLAG_GLOBAL_HEADER`, so the SPS and
//! PPS are in `extradata` only; [`H264Encoder::parameter_sets`] returns them
//! for the SDP, and the stream inserts them in-band before every IDR.

use std::fmt;

use ff::{codec, encoder, format::Pixel, frame, picture, Dictionary, Packet};
use ffmpeg_next as ff;
use ffmpeg_next::ffi;
use framebus::{Frame, FrameSpec, PixelFormat};

use crate::common::scale::{av_pixel, OutFormat, ScaleError, Scaler};
use crate::encoder::profile::H264Profile;
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
    /// Every concrete encoder, in the order `auto` tries them.
    pub const ALL: [EncoderKind; 4] = [
        EncoderKind::H264Nvenc,
        EncoderKind::H264Vaapi,
        EncoderKind::H264V4l2m2m,
        EncoderKind::Libx264,
    ];

    /// The ffmpeg encoder name (`libx264` for `auto`).
    pub fn ffmpeg_name(self) -> &'static str {
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
            EncoderKind::Auto => EncoderKind::ALL.to_vec(),
            k => vec![k],
        }
    }

    /// The device a hardware encoder needs, checked before ffmpeg is
    /// asked (whose own error for a missing device is a bare errno).
    fn device_check(self) -> Result<(), Unavailable> {
        let (what, dir, prefix, shown) = match self {
            EncoderKind::H264Vaapi => ("VA-API device", "/dev/dri", "renderD", "/dev/dri/renderD*"),
            EncoderKind::H264V4l2m2m => (
                "V4L2 memory-to-memory device",
                "/dev",
                "video",
                "/dev/video*",
            ),
            EncoderKind::H264Nvenc => ("NVIDIA device", "/dev", "nvidiactl", "/dev/nvidiactl"),
            EncoderKind::Auto | EncoderKind::Libx264 => return Ok(()),
        };
        let found = std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
        });
        if found {
            Ok(())
        } else {
            Err(Unavailable::NoDevice { what, path: shown })
        }
    }
}

/// Why an encoder is not available here.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The linked ffmpeg has no such encoder.
    #[error("encoder not built into this ffmpeg")]
    NotBuilt,
    /// The device it needs does not exist.
    #[error("no {what} (no {path})")]
    NoDevice {
        /// What kind of device.
        what: &'static str,
        /// Where it was looked for.
        path: &'static str,
    },
    /// ffmpeg would not open it.
    #[error("ffmpeg could not open it: {0}")]
    Open(ff::Error),
}

/// Tries `kind` as [`H264Encoder::open`] would (its device, then opening
/// it at 320x240, 30 fps, I420), for `framebus-encoder --list`.
pub fn probe(kind: EncoderKind) -> Result<(), Unavailable> {
    ff::init().map_err(Unavailable::Open)?;
    let name = kind.ffmpeg_name();
    encoder::find_by_name(name).ok_or(Unavailable::NotBuilt)?;
    kind.device_check()?;
    let settings = EncodeSettings {
        width: 320,
        height: 240,
        fps: 30,
        bitrate: 500_000,
        gop: 60,
        encoder: kind,
    };
    quietly(|| open_codec(name, settings, CodecOptions::default(), Pixel::YUV420P))
        .map(drop)
        .map_err(Unavailable::Open)
}

/// `f` with libav's own log quiet (a probe's failure is reported by the
/// caller, once).
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    let level = ffmpeg_next::util::log::get_level().ok();
    ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Quiet);
    let r = f();
    if let Some(level) = level {
        ffmpeg_next::util::log::set_level(level);
    }
    r
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

/// Bitstream options beyond [`EncodeSettings`] (`None`: the encoder's own
/// choice).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodecOptions {
    /// H.264 profile. x264 gets its `profile` option plus the features
    /// that make its SPS say so (the `ultrafast` preset alone gives
    /// constrained baseline): CABAC for main, CABAC and 8x8 transforms for
    /// high. Other encoders get `AVCodecContext.profile`.
    pub profile: Option<H264Profile>,
    /// Largest slice NAL unit in bytes (x264 `slice-max-size`; other
    /// encoders ignore it).
    pub slice_bytes: Option<u32>,
}

/// Why the encoder could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// ffmpeg could not be initialised.
    #[error("cannot initialise ffmpeg: {0}")]
    Init(ff::Error),
    /// No candidate encoder opened.
    #[error("no H.264 encoder opened: {}", failures(.tried))]
    Open {
        /// Each encoder tried and why it did not open.
        tried: Vec<(&'static str, Unavailable)>,
    },
    /// The bus format cannot be converted.
    #[error("bus pixel format {0:?} is not supported by the H.264 encoder")]
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
    /// The bus frame does not have the layout the encoder was opened for
    /// (a producer restarted with another format or size).
    #[error("bus frame {seq} is {got}, the encoder was opened for {want}")]
    Geometry {
        /// Frame sequence number.
        seq: u64,
        /// What the encoder was opened for.
        want: String,
        /// What the frame is.
        got: String,
    },
    /// libavcodec could not wrap the slot in a buffer reference.
    #[error("cannot reference the bus frame for the encoder (out of memory)")]
    Wrap,
    /// The encoder kept a reference to the bus frame after it was drained:
    /// the slot would be released while the encoder may still read it.
    #[error("encoder {0} kept a reference to the bus frame after draining")]
    InputHeld(&'static str),
}

/// One encoded access unit, owned (for [`H264Encoder::encode`]).
#[derive(Debug)]
pub struct EncodedAu {
    /// Annex B bytes; SPS and PPS are prepended to IDR access units.
    pub data: Vec<u8>,
    /// True for an IDR access unit.
    pub key: bool,
    /// Presentation time stamp in 90 kHz units (as given to `encode`).
    pub pts: i64,
}

/// One encoded access unit, borrowing the encoder's packet (for
/// [`H264Encoder::encode_each`]).
#[derive(Debug)]
pub struct AuView<'a> {
    /// The packet's NAL units (without start codes).
    nals: Vec<&'a [u8]>,
    /// SPS and PPS to put in front (IDRs without in-band ones).
    prefix: Option<[&'a [u8]; 2]>,
    /// True for an IDR access unit.
    pub key: bool,
    /// Presentation time stamp in 90 kHz units (as given to `encode`).
    pub pts: i64,
}

impl AuView<'_> {
    fn units(&self) -> impl Iterator<Item = &[u8]> {
        self.prefix
            .iter()
            .flatten()
            .copied()
            .chain(self.nals.iter().copied())
    }

    /// Length in Annex B (a 4-byte start code before every NAL unit).
    pub fn len(&self) -> usize {
        self.units().map(|n| 4 + n.len()).sum()
    }

    /// Whether the access unit has no NAL units.
    pub fn is_empty(&self) -> bool {
        self.nals.is_empty()
    }

    /// Writes the access unit in Annex B into `dst[..self.len()]`;
    /// `dst` must be at least that long.
    pub fn write_to(&self, dst: &mut [u8]) {
        let mut at = 0;
        for n in self.units() {
            dst[at..at + 4].copy_from_slice(&[0, 0, 0, 1]);
            dst[at + 4..at + 4 + n.len()].copy_from_slice(n);
            at += 4 + n.len();
        }
    }

    /// The access unit in Annex B, as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len()];
        self.write_to(&mut v);
        v
    }

    /// The access unit as an owned [`EncodedAu`].
    pub fn to_owned_au(&self) -> EncodedAu {
        EncodedAu {
            data: self.to_vec(),
            key: self.key,
            pts: self.pts,
        }
    }
}

/// How bus frames become the encoder's input picture.
enum Input {
    /// The bus format and size are the encoder's: the `AVFrame` points
    /// into the slot (this pixel format).
    Direct(Pixel),
    /// Scaled and converted to I420 by the shared scaler, straight into
    /// the encoder's frame.
    Scaled(Scaler, frame::Video),
}

/// A running H.264 encoder for one bus format and one profile.
pub struct H264Encoder {
    enc: encoder::Video,
    name: &'static str,
    /// Encoders `auto` tried first, which did not open.
    passed: Vec<&'static str>,
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
    /// Opens an encoder for frames of `src` encoded with `settings`,
    /// leaving profile and slicing to the encoder.
    pub fn open(src: FrameSpec, settings: EncodeSettings) -> Result<H264Encoder, EncodeError> {
        H264Encoder::open_with(src, settings, CodecOptions::default())
    }

    /// Opens an encoder for frames of `src` encoded with `settings` and
    /// `opts`.
    pub fn open_with(
        src: FrameSpec,
        settings: EncodeSettings,
        opts: CodecOptions,
    ) -> Result<H264Encoder, EncodeError> {
        ff::init().map_err(EncodeError::Init)?;
        let in_px = av_pixel(src.format).ok_or(EncodeError::Format(src.format))?;
        let mut failed = Vec::new();
        for kind in settings.encoder.candidates() {
            let name = kind.ffmpeg_name();
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
            // outcome is logged once below).
            let probing = settings.encoder == EncoderKind::Auto && name != "libx264";
            let opened = if encoder::find_by_name(name).is_none() {
                Err(Unavailable::NotBuilt)
            } else if let Err(e) = kind.device_check() {
                Err(e)
            } else if probing {
                quietly(|| open_codec(name, settings, opts, enc_px)).map_err(Unavailable::Open)
            } else {
                open_codec(name, settings, opts, enc_px).map_err(Unavailable::Open)
            };
            match opened {
                Ok(enc) => {
                    let (sps, pps) = parameter_sets(&enc).ok_or(EncodeError::NoParameterSets)?;
                    let input = if direct {
                        Input::Direct(in_px)
                    } else {
                        Input::Scaled(
                            Scaler::new(settings.width, settings.height, OutFormat::I420),
                            frame::Video::new(Pixel::YUV420P, settings.width, settings.height),
                        )
                    };
                    if failed.is_empty() {
                        tracing::info!(encoder = name, "opened H.264 encoder");
                    } else {
                        // The one line saying what `auto` tried and why.
                        tracing::info!(
                            encoder = name,
                            "opened H.264 encoder {name} (--encoder auto; {})",
                            failures(&failed)
                        );
                    }
                    return Ok(H264Encoder {
                        enc,
                        name,
                        passed: failed.into_iter().map(|(n, _)| n).collect(),
                        src_spec: src,
                        input,
                        sps,
                        pps,
                        packet: Packet::empty(),
                    });
                }
                Err(e) => failed.push((name, e)),
            }
        }
        Err(EncodeError::Open { tried: failed })
    }

    /// The encoders `auto` tried before the one in use, which did not
    /// open (empty unless [`EncoderKind::Auto`] fell back).
    pub fn passed_over(&self) -> &[&'static str] {
        &self.passed
    }

    /// The encoder in use and, after an `auto` fallback, what did not
    /// open: `libx264 (auto: nvenc, vaapi, v4l2m2m did not open)`.
    pub fn description(&self) -> String {
        if self.passed.is_empty() {
            return self.name.to_string();
        }
        let short: Vec<&str> = self
            .passed
            .iter()
            .map(|n| n.strip_prefix("h264_").unwrap_or(n))
            .collect();
        format!(
            "{}{}{} did not open)",
            self.name,
            framebus::contract::encoder::AUTO_FALLBACK,
            short.join(", ")
        )
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
    /// units the encoder emitted (zero or one with zero-latency settings),
    /// copied out of the encoder's packet; [`encode_each`](Self::encode_each)
    /// saves that copy.
    pub fn encode(
        &mut self,
        bus_frame: &Frame,
        pts: i64,
        force_idr: bool,
    ) -> Result<Vec<EncodedAu>, EncodeError> {
        let mut out = Vec::new();
        self.encode_each(bus_frame, pts, force_idr, |au| {
            out.push(au.to_owned_au());
            Ok::<(), EncodeError>(())
        })?;
        Ok(out)
    }

    /// Encodes one bus frame (of the source spec) with presentation time
    /// `pts` (90 kHz), forcing an IDR when `force_idr`, and hands each
    /// access unit the encoder emits (zero or one with zero-latency
    /// settings) to `emit` while it borrows the encoder's packet. No
    /// reference to `bus_frame` is left when this returns.
    pub fn encode_each<E: From<EncodeError>>(
        &mut self,
        bus_frame: &Frame,
        pts: i64,
        force_idr: bool,
        mut emit: impl FnMut(AuView<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let kind = if force_idr {
            picture::Type::I
        } else {
            picture::Type::None
        };
        match &mut self.input {
            Input::Direct(px) => {
                let mut f = wrap_slot(&self.src_spec, bus_frame, *px)?;
                f.set_pts(Some(pts));
                f.set_kind(kind);
                self.enc.send_frame(&f).map_err(EncodeError::Encode)?;
                // Drained before `f` goes: libx264 has copied the picture
                // into its own buffers inside x264_encoder_encode, and
                // libavcodec has dropped its reference to `f` once the
                // encode callback returned.
                let drained = drain(
                    &mut self.enc,
                    &mut self.packet,
                    [&self.sps, &self.pps],
                    pts,
                    &mut emit,
                );
                // SAFETY: `wrap_slot` set `buf[0]` to a valid buffer
                // reference owned by `f`.
                let refs = unsafe { ffi::av_buffer_get_ref_count((*f.as_ptr()).buf[0]) };
                if refs != 1 {
                    // Never expected with libx264. Releasing the slot now
                    // would let the encoder read memory being rewritten
                    // (or unmapped): stop instead.
                    tracing::error!(encoder = self.name, refs, "encoder kept the bus frame");
                    return Err(EncodeError::InputHeld(self.name).into());
                }
                drop(f);
                drained
            }
            Input::Scaled(scaler, f) => {
                scaler
                    .scale_into(bus_frame, f)
                    .map_err(EncodeError::Scale)?;
                f.set_pts(Some(pts));
                f.set_kind(kind);
                self.enc.send_frame(f).map_err(EncodeError::Encode)?;
                drain(
                    &mut self.enc,
                    &mut self.packet,
                    [&self.sps, &self.pps],
                    pts,
                    &mut emit,
                )
            }
        }
    }
}

/// `name: why; name: why`.
fn failures(tried: &[(&'static str, Unavailable)]) -> String {
    let parts: Vec<String> = tried.iter().map(|(n, why)| format!("{n}: {why}")).collect();
    parts.join("; ")
}

/// Receives packets until the encoder wants input, handing each to `emit`.
fn drain<E: From<EncodeError>>(
    enc: &mut encoder::Video,
    packet: &mut Packet,
    ps: [&[u8]; 2],
    pts: i64,
    emit: &mut impl FnMut(AuView<'_>) -> Result<(), E>,
) -> Result<(), E> {
    loop {
        match enc.receive_packet(packet) {
            Ok(()) => {
                let data = packet.data().unwrap_or_default();
                let nals = split_annex_b(data);
                let key = nals.iter().any(|n| nal_type(n) == nal::IDR);
                let prefix = (key && !nals.iter().any(|n| nal_type(n) == nal::SPS)).then_some(ps);
                emit(AuView {
                    nals,
                    prefix,
                    key,
                    pts: packet.pts().unwrap_or(pts),
                })?;
            }
            Err(ff::Error::Other {
                errno: libc::EAGAIN,
            })
            | Err(ff::Error::Eof) => return Ok(()),
            Err(e) => return Err(EncodeError::Encode(e).into()),
        }
    }
}

/// The no-op free of the buffer over a slot: the slot belongs to the bus,
/// and the caller of `encode` releases it after the buffer is gone.
unsafe extern "C" fn keep_slot(_opaque: *mut libc::c_void, _data: *mut u8) {}

/// An `AVFrame` of format `px` whose planes are `bus_frame`'s, in place in
/// shared memory, with `buf[0]` a read-only reference over the frame's
/// bytes that frees nothing. The frame must have `spec`'s layout (format,
/// size, planes).
fn wrap_slot(spec: &FrameSpec, bus_frame: &Frame, px: Pixel) -> Result<frame::Video, EncodeError> {
    let got = bus_frame.spec();
    // The layout only: a producer restarted at another rate is fine.
    let same_layout = (got.format, got.width, got.height) == (spec.format, spec.width, spec.height)
        && got.planes() == spec.planes();
    if !same_layout {
        let show = |s: &FrameSpec| format!("{} {}x{}", s.format, s.width, s.height);
        return Err(EncodeError::Geometry {
            seq: bus_frame.seq(),
            want: show(spec),
            got: show(got),
        });
    }
    let mut f = frame::Video::empty();
    let bytes: &[u8] = bus_frame;
    let mut planes = [(std::ptr::null::<u8>(), 0 as libc::c_int); 4];
    for (i, p) in spec.planes().iter().enumerate().take(4) {
        // `plane` checks that the plane lies inside the frame's bytes.
        let data = bus_frame.plane(i).ok_or_else(|| EncodeError::Geometry {
            seq: bus_frame.seq(),
            want: format!("plane {i} of {} bytes", p.len()),
            got: format!("{} bytes in all", bytes.len()),
        })?;
        planes[i] = (data.as_ptr(), p.stride as libc::c_int);
    }
    // SAFETY: (1) `f` is a freshly allocated, empty frame that we own;
    // (2) the plane pointers and strides are the bus frame's, checked to be
    // inside its bytes and of the layout (format, size, strides, rows) the
    // encoder was opened for (`spec`'s, compared above), so x264 reads only
    // inside the slot; (3) the buffer over the slot is read-only and its
    // free does nothing, so libavcodec neither writes nor frees the shared
    // memory; (4) the slot stays held and mapped until `encode` returns,
    // and `encode` checks that no reference but `f`'s is left before it
    // drops `f`.
    unsafe {
        let p = f.as_mut_ptr();
        (*p).format = ffi::AVPixelFormat::from(px) as libc::c_int;
        (*p).width = spec.width as libc::c_int;
        (*p).height = spec.height as libc::c_int;
        for (i, (ptr, stride)) in planes.iter().enumerate() {
            (*p).data[i] = ptr.cast_mut();
            (*p).linesize[i] = *stride;
        }
        let buf = ffi::av_buffer_create(
            bytes.as_ptr().cast_mut(),
            bytes.len(),
            Some(keep_slot),
            std::ptr::null_mut(),
            ffi::AV_BUFFER_FLAG_READONLY,
        );
        if buf.is_null() {
            return Err(EncodeError::Wrap);
        }
        (*p).buf[0] = buf;
    }
    Ok(f)
}

fn open_codec(
    name: &str,
    s: EncodeSettings,
    o: CodecOptions,
    px: Pixel,
) -> Result<encoder::Video, ff::Error> {
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
        let kbit = s.bitrate / 1000;
        let mut params = format!("vbv-maxrate={kbit}:vbv-bufsize={kbit}");
        if let Some(p) = o.profile {
            opts.set("profile", p.name());
            // x264 signals the profile its features need: ultrafast turns
            // CABAC and 8x8 transforms off, which is baseline.
            params.push_str(match p {
                H264Profile::Baseline => "",
                H264Profile::Main => ":cabac=1",
                H264Profile::High => ":cabac=1:8x8dct=1",
            });
        }
        if let Some(b) = o.slice_bytes {
            params.push_str(&format!(":slice-max-size={b}"));
        }
        opts.set("x264-params", &params);
    } else {
        opts.set("forced_idr", "1");
        if let Some(p) = o.profile {
            let av = match p {
                H264Profile::Baseline => ffi::FF_PROFILE_H264_CONSTRAINED_BASELINE,
                H264Profile::Main => ffi::FF_PROFILE_H264_MAIN,
                H264Profile::High => ffi::FF_PROFILE_H264_HIGH,
            };
            // SAFETY: `enc` is a valid context not opened yet; `profile`
            // is a plain int field read at open.
            unsafe { (*enc.as_mut_ptr()).profile = av };
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use framebus::{Fps, FrameMeta, Reader, ReaderOptions, Writer, WriterOptions};
    use framebus_test_support::{unique_name, TempDir};

    use super::*;

    /// A bus of `w`x`h` NV12 with one frame (a gradient) published, and a
    /// reader holding that frame.
    fn one_frame(dir: &TempDir, w: u32, h: u32) -> (Writer, Reader, Frame) {
        let name = unique_name("codec");
        let spec = FrameSpec::new(PixelFormat::Nv12, w, h, Fps::new(30)).unwrap();
        let mut wr = Writer::create(
            &name,
            spec,
            WriterOptions {
                shm_dir: Some(dir.path().to_path_buf()),
                ..WriterOptions::default()
            },
        )
        .unwrap();
        let mut r = Reader::attach(
            &name,
            ReaderOptions {
                shm_dir: Some(dir.path().to_path_buf()),
                ..ReaderOptions::default()
            },
        )
        .unwrap();
        let mut loan = wr.loan().unwrap();
        for (i, b) in loan.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        loan.publish(FrameMeta::now());
        let f = r.next(Some(Duration::from_secs(5))).unwrap();
        (wr, r, f)
    }

    fn settings(w: u32, h: u32) -> EncodeSettings {
        EncodeSettings {
            width: w,
            height: h,
            fps: 30,
            bitrate: 500_000,
            gop: 60,
            encoder: EncoderKind::Libx264,
        }
    }

    #[test]
    fn the_encoder_frame_points_into_the_slot() {
        let dir = TempDir::new("codec");
        let (_w, _r, f) = one_frame(&dir, 320, 240);
        let av = wrap_slot(f.spec(), &f, Pixel::NV12).unwrap();
        for i in 0..2 {
            let p = av.data(i).as_ptr();
            assert!(f.is_in_mapping(p), "plane {i} is not in the bus mapping");
            assert_eq!(p, f.plane(i).unwrap().as_ptr(), "plane {i}");
        }
        // SAFETY: `wrap_slot` set buf[0].
        let refs = unsafe { ffi::av_buffer_get_ref_count((*av.as_ptr()).buf[0]) };
        assert_eq!(refs, 1);

        let mut enc = H264Encoder::open(*f.spec(), settings(320, 240)).unwrap();
        assert!(matches!(enc.input, Input::Direct(Pixel::NV12)));
        let aus = enc.encode(&f, 0, true).unwrap();
        assert_eq!(aus.len(), 1);
        assert!(aus[0].key);
        // SPS, PPS in front of the IDR, Annex B.
        let nals = split_annex_b(&aus[0].data);
        assert_eq!(nal_type(nals[0]), nal::SPS);
        assert_eq!(nal_type(nals[1]), nal::PPS);
    }

    #[test]
    fn a_scaled_frame_encodes_without_a_picture_copy() {
        let dir = TempDir::new("codec");
        let (_w, _r, f) = one_frame(&dir, 640, 480);
        let mut enc = H264Encoder::open(*f.spec(), settings(320, 240)).unwrap();
        assert!(matches!(enc.input, Input::Scaled(..)));
        let mut n = 0;
        for pts in 0..3 {
            enc.encode_each(&f, pts * 3000, pts == 0, |au| {
                assert_eq!(au.key, pts == 0);
                assert!(au.len() > 4);
                n += 1;
                Ok::<(), EncodeError>(())
            })
            .unwrap();
        }
        assert_eq!(n, 3);
        let Input::Scaled(scaler, _) = &enc.input else {
            unreachable!()
        };
        assert!(
            scaler.picture().is_none(),
            "the scaler made no picture of its own"
        );
    }

    #[test]
    fn the_sps_names_the_profile_asked_for() {
        let dir = TempDir::new("codec");
        let (_w, _r, f) = one_frame(&dir, 320, 240);
        for (p, idc) in [
            (H264Profile::Baseline, 66),
            (H264Profile::Main, 77),
            (H264Profile::High, 100),
        ] {
            let opts = CodecOptions {
                profile: Some(p),
                slice_bytes: None,
            };
            let mut enc = H264Encoder::open_with(*f.spec(), settings(320, 240), opts).unwrap();
            let sps = enc.parameter_sets().0.to_vec();
            assert_eq!(sps[1], idc, "{p:?}: SPS {sps:02x?}");
            if p == H264Profile::Baseline {
                // constraint_set1: constrained baseline (42e0.. / 42c0..).
                assert_ne!(sps[2] & 0x40, 0, "constrained baseline: {sps:02x?}");
            }
            // The stream says the same as the extradata.
            let aus = enc.encode(&f, 0, true).unwrap();
            let nals = split_annex_b(&aus[0].data);
            assert_eq!(nals[0][1], idc);
        }
    }

    #[test]
    fn slices_stay_under_the_bound() {
        let dir = TempDir::new("codec");
        let (_w, _r, f) = one_frame(&dir, 640, 480);
        // Noise: an IDR of far more than the bound.
        let (_w2, _r2, noisy) = {
            let name = unique_name("codecn");
            let spec = FrameSpec::new(PixelFormat::Nv12, 640, 480, Fps::new(30)).unwrap();
            let wopts = WriterOptions {
                shm_dir: Some(dir.path().to_path_buf()),
                ..WriterOptions::default()
            };
            let mut wr = Writer::create(&name, spec, wopts).unwrap();
            let ropts = ReaderOptions {
                shm_dir: Some(dir.path().to_path_buf()),
                ..ReaderOptions::default()
            };
            let mut r = Reader::attach(&name, ropts).unwrap();
            let mut loan = wr.loan().unwrap();
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            for b in loan.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = (x >> 56) as u8;
            }
            loan.publish(FrameMeta::now());
            let nf = r.next(Some(Duration::from_secs(5))).unwrap();
            (wr, r, nf)
        };
        drop(f);
        let bound = 4_000;
        let opts = CodecOptions {
            profile: Some(H264Profile::Main),
            slice_bytes: Some(bound),
        };
        let mut s = settings(640, 480);
        s.bitrate = 20_000_000;
        let mut enc = H264Encoder::open_with(*noisy.spec(), s, opts).unwrap();
        let aus = enc.encode(&noisy, 0, true).unwrap();
        let nals = split_annex_b(&aus[0].data);
        let idr: Vec<usize> = nals
            .iter()
            .filter(|n| nal_type(n) == nal::IDR)
            .map(|n| n.len())
            .collect();
        assert!(idr.len() > 4, "IDR slices: {idr:?}");
        assert!(
            idr.iter().all(|&l| l <= bound as usize),
            "IDR slices: {idr:?}"
        );
    }
}
