//! `framebus-producer` as a library: everything the `framebus-producer`
//! binary runs (`src/main.rs` only parses the command line, sets up logging
//! and signals, and calls in here), for the integration tests and the fuzz
//! targets to use as they are. See `docs/producer.md` and `docs/service.md`.
//!
//! One file per concern:
//!
//! * [`cli`]: the flags; [`config`]: `framebus.toml` (`--config`).
//! * [`capture`]: one camera into one bus: create the bus, and the source
//!   loop that keeps a source feeding it (reopening it with [`backoff`]).
//! * sources: [`source`] (the trait), [`testsrc`], [`v4l2_src`] over
//!   [`v4l2`], [`ffmpeg_src`]; [`convert`] (swscale), [`pacing`];
//!   [`audio`]: the microphone on `<bus>.audio` (ALSA, or the test tone).
//! * [`service`]: `--config`: one [`capture`] per camera, and the process
//!   supervisor that runs the publishers as children and restarts them
//!   (with [`backoff`]; [`process_group`]), with the status file (`framebus::contract::status`).
//! * [`doctor`]: the shared memory a config's buses take, checked against
//!   the shm directory before the service starts (`framebus doctor`).
//! * [`devlock`] (one producer per device), [`signals`], [`error`] (exit
//!   codes).
//!
//! Feature `capture` (default) brings the media libraries (FFmpeg,
//! libjpeg-turbo, V4L2) and the modules that need them; without it only the
//! configuration, flags, status file and process handling are built (what
//! the `config` fuzz target needs, without a sanitizer build of FFmpeg).

pub mod backoff;
pub mod cli;
pub mod config;
pub mod devlock;
pub mod error;
pub mod pacing;
pub mod process_group;
pub mod signals;
pub mod source;
pub mod testsrc;

#[cfg(feature = "capture")]
pub mod audio;
#[cfg(feature = "capture")]
pub mod capture;
#[cfg(feature = "capture")]
pub mod convert;
#[cfg(feature = "capture")]
pub mod doctor;
#[cfg(feature = "capture")]
pub mod ffmpeg_audio;
#[cfg(feature = "capture")]
pub mod ffmpeg_src;
#[cfg(feature = "capture")]
pub mod service;
#[cfg(feature = "capture")]
pub mod v4l2;
#[cfg(feature = "capture")]
pub mod v4l2_src;
