//! `framebus-recorder`: recordings of encoded buses (docs/recording.md).

pub mod remux;
