//! framebus publishers (MJPEG over HTTP, H.264 over RTSP).
