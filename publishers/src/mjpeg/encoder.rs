//! The encoder of one (bus, profile) stream: a blocking thread that follows
//! the bus, picks frames for the profile's rate by capture time, scales them
//! to I420 and JPEG-encodes them with libjpeg-turbo's planar-YUV path (no
//! RGB round trip). An I420 bus at the profile's size is encoded straight
//! from shared memory; an MJPEG bus at the profile's size is passed through
//! without re-encoding, and at other sizes it is decoded to planar YUV
//! (libjpeg-turbo, in the JPEG's own subsampling), scaled and re-encoded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ffmpeg_next::format::Pixel;
use framebus::{Frame, PixelFormat};
use turbojpeg::{Compressor, Decompressor, Subsamp, YuvImage, YuvPlanesImage};

use super::config::Profile;
use super::media::make_part;
use crate::common::demand::Worker;
use crate::common::follow::{follow, BusHealth, FollowOptions};
use crate::common::rate::RateLimiter;
use crate::common::scale::{OutFormat, ScaleError, Scaler, SrcPicture, SrcPlane};
use crate::common::stats::StreamStats;

/// One encoded frame, shared by every viewer of the stream.
#[derive(Debug, Clone)]
pub struct Jpeg {
    /// The JPEG file (a slice of `part`).
    pub data: Bytes,
    /// The whole multipart part: head, JPEG, CRLF.
    pub part: Bytes,
    /// Output sequence number of this stream (1, 2, ...; gaps seen by a
    /// viewer are frames it skipped).
    pub seq: u64,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Capture time (CLOCK_REALTIME, ns) of the bus frame.
    pub realtime_ns: u64,
    /// Bus frame passed through without re-encoding.
    pub passthrough: bool,
}

/// Why a frame was not encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Scaling failed.
    #[error(transparent)]
    Scale(#[from] ScaleError),
    /// libjpeg-turbo failed.
    #[error("JPEG encoding failed: {0}")]
    Jpeg(#[from] turbojpeg::Error),
    /// A JPEG from an MJPEG bus could not be decoded (for rescaling).
    #[error("frame {seq}: cannot decode the bus's JPEG: {source}")]
    Decode {
        /// Bus frame sequence number.
        seq: u64,
        /// libjpeg-turbo's error.
        source: turbojpeg::Error,
    },
    /// A JPEG from an MJPEG bus uses a subsampling that is not rescaled.
    #[error("frame {seq}: JPEG subsampling {subsamp:?} is not supported for rescaling (4:2:0, 4:2:2, 4:4:4 and gray are)")]
    Subsampling {
        /// Bus frame sequence number.
        seq: u64,
        /// The JPEG's subsampling.
        subsamp: Subsamp,
    },
}

/// Turns bus frames into JPEGs for one profile. Lives on the worker thread.
pub struct FrameEncoder {
    profile: Profile,
    jpeg: Compressor,
    scaler: Option<Scaler>,
    /// For MJPEG buses at another size than the profile's.
    decoder: Option<Decompressor>,
    /// Decoded planes (reused).
    yuv: Vec<u8>,
}

impl std::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameEncoder")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl FrameEncoder {
    /// An encoder for `profile`.
    pub fn new(profile: Profile) -> Result<FrameEncoder, EncodeError> {
        let mut jpeg = Compressor::new()?;
        jpeg.set_quality(profile.quality as i32)?;
        jpeg.set_subsamp(Subsamp::Sub2x2)?;
        Ok(FrameEncoder {
            profile,
            jpeg,
            scaler: None,
            decoder: None,
            yuv: Vec::new(),
        })
    }

    /// Encode one bus frame: `(jpeg, width, height, passed_through)`.
    pub fn encode(&mut self, frame: &Frame) -> Result<(Bytes, u32, u32, bool), EncodeError> {
        let spec = frame.spec();
        let (w, h) = self.profile.size_for(spec.width, spec.height);
        let same_size = (w, h) == (spec.width, spec.height);
        if spec.format == PixelFormat::Mjpeg {
            if same_size {
                return Ok((Bytes::copy_from_slice(frame), w, h, true));
            }
            let data = self.rescale_jpeg(frame, w, h)?;
            return Ok((Bytes::from(data), w, h, false));
        }
        let data = if spec.format == PixelFormat::I420 && same_size {
            let p = spec.planes();
            let plane = |i: usize| frame.plane(i).unwrap_or(&[]);
            let image = YuvPlanesImage {
                y_plane: plane(0),
                u_plane: plane(1),
                v_plane: plane(2),
                width: w as usize,
                height: h as usize,
                y_stride: p[0].stride as usize,
                u_stride: p[1].stride as usize,
                v_stride: p[2].stride as usize,
                subsamp: Subsamp::Sub2x2,
            };
            self.jpeg.compress_yuv_planes_to_vec(&image)?
        } else {
            if self.scaler.as_ref().map(|s| s.size()) != Some((w, h)) {
                self.scaler = Some(Scaler::new(w, h, OutFormat::I420));
            }
            let pic = self.scaler.as_mut().expect("set above").scale(frame)?;
            let planes = pic.planes();
            let image = YuvPlanesImage {
                y_plane: planes[0].0,
                u_plane: planes[1].0,
                v_plane: planes[2].0,
                width: w as usize,
                height: h as usize,
                y_stride: planes[0].1,
                u_stride: planes[1].1,
                v_stride: planes[2].1,
                subsamp: Subsamp::Sub2x2,
            };
            self.jpeg.compress_yuv_planes_to_vec(&image)?
        };
        Ok((Bytes::from(data), w, h, false))
    }

    /// Decode the JPEG of an MJPEG bus frame to planar YUV, scale it to
    /// `w` x `h` and encode it.
    fn rescale_jpeg(&mut self, frame: &Frame, w: u32, h: u32) -> Result<Vec<u8>, EncodeError> {
        let seq = frame.seq();
        let decode = |source| EncodeError::Decode { seq, source };
        let dec = match &mut self.decoder {
            Some(d) => d,
            None => self.decoder.insert(Decompressor::new().map_err(decode)?),
        };
        let hdr = dec.read_header(frame).map_err(decode)?;
        let (jw, jh) = (hdr.width, hdr.height);
        // libjpeg-turbo's planar layout with align 1: planes padded to whole
        // MCUs (tj3YUVPlaneWidth/Height), back to back.
        let pad2 = |n: usize| n.div_ceil(2) * 2;
        let (format, planes): (Pixel, Vec<(usize, usize)>) = match hdr.subsamp {
            Subsamp::Sub2x2 => (
                Pixel::YUV420P,
                vec![
                    (pad2(jw), pad2(jh)),
                    (pad2(jw) / 2, pad2(jh) / 2),
                    (pad2(jw) / 2, pad2(jh) / 2),
                ],
            ),
            Subsamp::Sub2x1 => (
                Pixel::YUV422P,
                vec![(pad2(jw), jh), (pad2(jw) / 2, jh), (pad2(jw) / 2, jh)],
            ),
            Subsamp::None => (Pixel::YUV444P, vec![(jw, jh); 3]),
            Subsamp::Gray => (Pixel::GRAY8, vec![(jw, jh)]),
            subsamp => return Err(EncodeError::Subsampling { seq, subsamp }),
        };
        let total: usize = planes.iter().map(|(pw, ph)| pw * ph).sum();
        let want = turbojpeg::yuv_pixels_len(jw, 1, jh, hdr.subsamp).map_err(decode)?;
        if total != want {
            // Our plane arithmetic disagrees with libjpeg-turbo's: refuse
            // rather than hand swscale a wrong geometry.
            return Err(EncodeError::Subsampling {
                seq,
                subsamp: hdr.subsamp,
            });
        }
        self.yuv.resize(total, 0);
        dec.decompress_to_yuv(
            frame,
            YuvImage {
                pixels: self.yuv.as_mut_slice(),
                width: jw,
                align: 1,
                height: jh,
                subsamp: hdr.subsamp,
            },
        )
        .map_err(decode)?;
        let mut rest = self.yuv.as_slice();
        let mut src_planes = Vec::with_capacity(planes.len());
        for (pw, ph) in planes {
            let (p, r) = rest.split_at(pw * ph);
            src_planes.push(SrcPlane {
                data: p,
                stride: pw,
                rows: ph,
            });
            rest = r;
        }
        if self.scaler.as_ref().map(|s| s.size()) != Some((w, h)) {
            self.scaler = Some(Scaler::new(w, h, OutFormat::I420));
        }
        let pic = self
            .scaler
            .as_mut()
            .expect("set above")
            .scale_planes(&SrcPicture {
                origin: PixelFormat::Mjpeg,
                format,
                width: jw as u32,
                height: jh as u32,
                seq,
                planes: src_planes,
            })?;
        let planes = pic.planes();
        let image = YuvPlanesImage {
            y_plane: planes[0].0,
            u_plane: planes[1].0,
            v_plane: planes[2].0,
            width: w as usize,
            height: h as usize,
            y_stride: planes[0].1,
            u_stride: planes[1].1,
            v_stride: planes[2].1,
            subsamp: Subsamp::Sub2x2,
        };
        Ok(self.jpeg.compress_yuv_planes_to_vec(&image)?)
    }
}

/// Start the encoder thread of one run of a stream.
pub fn spawn(
    worker: Worker<Jpeg>,
    bus: String,
    profile: Profile,
    stats: Arc<StreamStats>,
    health: Arc<BusHealth>,
    opts: FollowOptions,
) {
    let name = format!("mjpeg-{bus}-{}", profile.name);
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let _span = tracing::info_span!("encoder", bus = %bus, profile = %profile.name).entered();
        tracing::info!("encoder started");
        let mut enc = match FrameEncoder::new(profile.clone()) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "cannot create JPEG encoder");
                return;
            }
        };
        let mut rate = RateLimiter::new(profile.fps.unwrap_or(0.0));
        let mut seq = 0u64;
        let mut last_warn: Option<Instant> = None;
        follow(
            &bus,
            &opts,
            &health,
            || worker.keep_running(),
            |frame| {
                stats.frame_in();
                if !rate.accept(frame.mono_ns()) {
                    return;
                }
                if !worker.has_consumers() {
                    // Grace time: follow the bus but do not encode, and drop
                    // the last JPEG so a late joiner never starts stale.
                    worker.clear();
                    return;
                }
                let t0 = Instant::now();
                match enc.encode(frame) {
                    Ok((data, width, height, passthrough)) => {
                        seq += 1;
                        let (part, range) = make_part(&data, seq, frame.realtime_ns());
                        stats.frame_out(data.len(), t0.elapsed());
                        worker.publish(Jpeg {
                            data: part.slice(range),
                            part,
                            seq,
                            width,
                            height,
                            realtime_ns: frame.realtime_ns(),
                            passthrough,
                        });
                    }
                    Err(e) => {
                        stats.encode_error();
                        if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                            tracing::warn!(error = %e, "frame not encoded");
                            last_warn = Some(Instant::now());
                        }
                    }
                }
            },
        );
        tracing::info!("encoder stopped");
    });
    if let Err(e) = spawned {
        // The Worker was moved into the closure and dropped with it, which
        // ends the run; the next viewer tries again.
        tracing::error!(error = %e, "cannot spawn encoder thread");
    }
}

/// Why [`snapshot_jpeg`] has no picture.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bus cannot be attached.
    #[error("cannot attach bus {bus:?}: {source}")]
    Attach {
        /// The bus.
        bus: String,
        /// Why.
        source: framebus::AttachError,
    },
    /// No frame arrived.
    #[error("bus {bus:?} had no frame: {source}")]
    Read {
        /// The bus.
        bus: String,
        /// Why.
        source: framebus::ReadError,
    },
    /// It could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// One JPEG of the newest frame of raw bus `bus` at its own size (the
/// recorder's snapshot beside a recording): attaches, takes the newest
/// frame (waiting up to a second for one), encodes it, detaches.
pub fn snapshot_jpeg(
    bus: &str,
    shm_dir: Option<&std::path::Path>,
    quality: u8,
) -> Result<Bytes, SnapshotError> {
    let opts = framebus::ReaderOptions {
        wait: None,
        shm_dir: shm_dir.map(std::path::Path::to_path_buf),
    };
    let mut reader =
        framebus::Reader::attach(bus, opts).map_err(|source| SnapshotError::Attach {
            bus: bus.to_string(),
            source,
        })?;
    let read = |source| SnapshotError::Read {
        bus: bus.to_string(),
        source,
    };
    let frame = match reader.latest().map_err(read)? {
        Some(f) => f,
        None => reader.next(Some(Duration::from_secs(1))).map_err(read)?,
    };
    let mut enc = FrameEncoder::new(Profile {
        name: "snapshot".into(),
        size: None,
        fps: None,
        quality,
    })?;
    Ok(enc.encode(&frame)?.0)
}
