//! framebus publishers: separate processes that attach to buses, encode once
//! per profile and serve many viewers.
//!
//! * [`common`]: shared pieces (bus following, scaling, on-demand lifecycle, stats).
//! * [`console`]: the browser console, `framebus-mjpeg`'s `/` (one address
//!   for every camera, its health and actions).
//! * [`mjpeg`]: `framebus-mjpeg`, MJPEG over HTTP (axum).
//! * [`rtsp`]: `framebus-rtsp`, H.264 over RTSP (x264 through ffmpeg-next).
//! * [`h264`]: Annex B access units (shared by the encoder and outputs).
//! * [`hls`]: HLS and Low-Latency HLS in `framebus-mjpeg` (fMP4 from the
//!   encoded bus).
//! * [`fmp4`]: fragmented MP4 (init segments and fragments) for HLS and
//!   the recorder.
//! * [`feed`]: one reader per encoded bus in `framebus-mjpeg`, shared by
//!   WebRTC and HLS.
//! * [`encoder`]: `framebus-encoder`, one H.264 encoder per (bus,
//!   profile) writing an encoded bus that every output can read.

pub mod common;
pub mod console;
pub mod encoder;
pub mod feed;
pub mod fmp4;
pub use framebus::h264;
pub mod hls;
pub mod mjpeg;
pub mod record;
pub mod rtsp;
pub mod webrtc;
