//! framebus publishers: separate processes that attach to buses, encode once
//! per profile and serve many viewers.
//!
//! * [`mjpeg`]: `framebus-mjpeg`, MJPEG over HTTP (axum).
//! * [`rtsp`]: `framebus-rtsp`, H.264 over RTSP (x264 through ffmpeg-next).

pub mod mjpeg;
pub mod rtsp;
