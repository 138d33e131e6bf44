//! Building blocks shared by the publishers (`framebus-mjpeg`, `framebus-rtsp`).
//!
//! A publisher stream is "one encoder per (bus, profile), shared by all its
//! viewers, running only while someone watches". The pieces:
//!
//! * [`follow`]: read a bus on a blocking thread, following it across
//!   producer restarts, with a [`follow::BusHealth`] the HTTP/RTSP side can
//!   show ("live", "producer gone", "waiting for bus").
//! * [`rate`]: frame-rate reduction that picks frames by capture timestamp.
//! * [`scale`]: convert/scale a bus frame (any raw format) to I420 or NV12 at
//!   a target size with swscale, reading the shared memory in place.
//! * [`demand`]: the on-demand lifecycle. [`demand::OnDemand`] starts a
//!   worker on the first viewer (or snapshot / explicit start), stops it a
//!   grace time after the last leaves, enforces the viewer limit, and hands
//!   the newest output to async tasks through a `tokio::sync::watch`
//!   channel: a slow consumer sees only the newest value, never a queue.
//! * [`stats`]: per-stream counters and rates (input/output fps, encode
//!   time p50, frames dropped for slow viewers).
//! * [`auth`]: `user:password` credentials from `--auth`, `--auth-file` or
//!   the environment, and constant-time comparison (the HTTP and RTSP
//!   schemes stay with their protocols).
//! * [`cli`]: argument errors exit 4, runtime errors 1, and the
//!   `listening on URL` line, by `framebus::contract`.
//! * [`http`]: `/healthz` and `/metrics` (a `prometheus_client` registry)
//!   for both HTTP servers, and the `framebus_bus_*` collector.
//! * [`shutdown`]: SIGTERM and SIGINT, handled the same way by both
//!   binaries (registered before the server listens; the server then ends
//!   its clients' streams and the process exits 0).
//!
//! Typical worker (runs on its own `std::thread`):
//!
//! ```no_run
//! use std::sync::Arc;
//! use framebus_publishers::common::{demand::{OnDemand, Worker}, follow, rate::RateLimiter, stats::StreamStats};
//! fn worker(w: Worker<Vec<u8>>, bus: String, health: Arc<follow::BusHealth>, stats: Arc<StreamStats>) {
//!     let mut rate = RateLimiter::new(15.0);
//!     let opts = follow::FollowOptions::default();
//!     follow::follow(&bus, &opts, &health, || w.keep_running(), |frame| {
//!         stats.frame_in();
//!         if !rate.accept(frame.mono_ns()) { return; }
//!         w.publish(frame.to_vec()); // encode here instead
//!         stats.frame_out(0, std::time::Duration::ZERO);
//!     });
//! }
//! ```

pub mod auth;
pub mod cli;
pub mod demand;
pub mod follow;
pub mod http;
pub mod rate;
pub mod scale;
pub mod shutdown;
pub mod stats;
