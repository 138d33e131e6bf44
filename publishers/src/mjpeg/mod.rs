//! MJPEG over HTTP: the `framebus-mjpeg` server.
//!
//! One encoder thread per (bus, profile), started by the first viewer or
//! snapshot and stopped a grace time after the last one leaves
//! ([`crate::common::demand`]); it follows the bus across producer restarts,
//! picks frames by capture time, scales to I420 with swscale and encodes
//! with libjpeg-turbo's YUV path ([`encoder`]). Viewers get the newest JPEG
//! from a watch channel, so slow viewers skip frames and never queue
//! ([`media`]). HTTP by axum ([`http`]); see `docs/mjpeg.md`.
//!
//! Files: [`config`] (CLI, profiles), [`streams`] (buses and streams),
//! [`encoder`], [`media`] (`.mjpg`, snapshot), [`conn`] (accept loop and limits, socket options,
//! bytes sent), [`api`] (JSON, start/stop, the health verdict), [`index`]
//! (`/`), [`metrics`] (Prometheus series), [`audio`] (the cameras'
//! microphones, for the console and `/metrics`), [`auth`], [`error`], [`state`]
//! (the router's state; `/healthz` and `/metrics` are
//! [`crate::common::http`]'s).

pub mod api;
pub mod audio;
pub mod auth;
pub mod config;
pub mod conn;
pub mod encoder;
pub mod error;
pub mod http;
pub mod index;
pub mod media;
pub mod metrics;
pub mod state;
pub mod streams;

pub use config::{Args, Profile};
pub use http::{serve, ServeError};
