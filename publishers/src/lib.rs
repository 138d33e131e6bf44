//! framebus publishers: separate processes that attach to buses, encode once
//! per profile and serve many viewers.
//!
//! * [`common`]: shared pieces (bus following, scaling, on-demand lifecycle, stats).
//! * [`mjpeg`]: `framebus-mjpeg`, MJPEG over HTTP (axum).
//! * [`rtsp`]: `framebus-rtsp`, H.264 over RTSP (x264 through ffmpeg-next).

pub mod common;
pub mod mjpeg;
pub mod rtsp;
