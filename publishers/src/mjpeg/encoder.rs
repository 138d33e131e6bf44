//! The encoder of one (bus, profile) stream: a blocking thread that follows
//! the bus, picks frames for the profile's rate by capture time, scales them
//! to I420 and JPEG-encodes them with libjpeg-turbo's planar-YUV path (no
//! RGB round trip). An I420 bus at the profile's size is encoded straight
//! from shared memory; an MJPEG bus at the profile's size is passed through
//! without re-encoding.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framebus::{Frame, PixelFormat};
use turbojpeg::{Compressor, Subsamp, YuvPlanesImage};

use super::config::Profile;
use super::media::make_part;
use crate::common::demand::Worker;
use crate::common::follow::{follow, BusHealth, FollowOptions};
use crate::common::rate::RateLimiter;
use crate::common::scale::{OutFormat, ScaleError, Scaler};
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
    /// An MJPEG bus can only be passed through at its own size.
    #[error("MJPEG bus is {bw}x{bh}; profile wants {w}x{h} (MJPEG buses are served at their own size only)")]
    MjpegResize {
        /// Bus width.
        bw: u32,
        /// Bus height.
        bh: u32,
        /// Profile width.
        w: u32,
        /// Profile height.
        h: u32,
    },
}

/// Turns bus frames into JPEGs for one profile. Lives on the worker thread.
pub struct FrameEncoder {
    profile: Profile,
    jpeg: Compressor,
    scaler: Option<Scaler>,
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
        })
    }

    /// Encode one bus frame: `(jpeg, width, height, passed_through)`.
    pub fn encode(&mut self, frame: &Frame) -> Result<(Bytes, u32, u32, bool), EncodeError> {
        let spec = frame.spec();
        let (w, h) = self.profile.size_for(spec.width, spec.height);
        let same_size = (w, h) == (spec.width, spec.height);
        if spec.format == PixelFormat::Mjpeg {
            if !same_size {
                return Err(EncodeError::MjpegResize {
                    bw: spec.width,
                    bh: spec.height,
                    w,
                    h,
                });
            }
            return Ok((Bytes::copy_from_slice(frame), w, h, true));
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
