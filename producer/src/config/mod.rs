//! `framebus.toml`: the cameras to capture, the encoder and publisher
//! processes to run and supervise, and how to supervise them (see `docs/service.md` and the
//! commented `examples/framebus.toml`).
//!
//! Every table rejects unknown keys. Values are checked while parsing, so a
//! bad size, rate, format or address is reported at its own line and column;
//! checks across values (a bus named twice, a port already taken) name the
//! line and column of the offending value too.
//!
//! Files: [`model`] (the tables and their defaults), [`values`] (the
//! checked value types: sizes, rates, durations, bit rates, byte counts…), [`parse`]
//! (reading the file, checks across values, `FILE:LINE:COL` errors),
//! [`publisher_args`] (the command line and environment each publisher
//! and encoder child gets).

pub mod model;
pub mod parse;
pub mod publisher_args;
pub mod values;

pub use model::{
    Camera, Config, EncoderCfg, EncoderJob, EncoderSpec, LogFormatCfg, ProfileCfg, Publisher,
    Publishers, RecorderCfg, Supervision,
};
pub use parse::{load, parse, ConfigError};
pub use publisher_args::{
    encoder_args, mjpeg_args, mjpeg_env, recorder_args, recorder_env, rtsp_args, rtsp_env,
};
pub use values::{
    Bitrate, ByteSize, Credentials, DurationCfg, EncoderName, EvenSize, Format, FpsCfg,
    H264Profile, Positive, ProfileName, Quality, Secs, Size, Source,
};
