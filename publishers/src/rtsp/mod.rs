//! H.264 over RTSP.
