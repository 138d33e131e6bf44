//! MJPEG over HTTP.
