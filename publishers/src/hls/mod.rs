//! HLS and Low-Latency HLS output on the HTTP port the browser already
//! uses: CMAF (fragmented MP4) parts and segments from the encoded bus,
//! nothing encoded here.
//!
//! Flow: a player asks for `/{bus}/index.m3u8` (every H.264 profile of the
//! camera, for adaptive bit rate) or `/{bus}/{profile}/index.m3u8`; the
//! first playlist request starts a [`muxer::Muxer`] on the shared
//! [`crate::feed::Feed`] of `{bus}.h264.{profile}` (which wakes the
//! encoder) and answers as soon as the first part exists. The muxer cuts
//! parts of about 200 ms and segments at keyframes, keeps them in memory,
//! and stops after `--hls-idle` without requests. Plain HLS clients read
//! the same playlist and segments. URLs are immutable and carry cache
//! lifetimes a CDN can honour ([`server`]); see `docs/hls.md` and
//! `docs/decisions/0004-hls-with-mp4-atom.md`.
//!
//! Files: [`config`] (flags), [`crate::fmp4`] (boxes, with `mp4-atom`;
//! shared with the recorder),
//! [`playlist`] (the playlist text), [`muxer`] (parts and segments),
//! [`server`] (registry, sessions, handlers), [`metrics`].

pub mod config;
pub mod metrics;
pub mod muxer;
pub mod playlist;
pub mod server;

pub use config::HlsArgs;
pub use server::Hls;
