//! WebRTC output: WHEP (the IETF WebRTC-HTTP egress protocol) on the HTTP
//! port the browser already uses, media on one UDP port.
//!
//! Flow: a player `POST`s an SDP offer to `/{bus}/{profile}/whep`; the
//! answer comes back with `201 Created` and a `Location` (`DELETE` it to
//! end). The server is ICE-lite with host candidates (plus any
//! `--webrtc-candidate` address, for a 1:1 NAT); TURN servers given with
//! `--webrtc-ice-server` are handed to players in `Link` headers and the
//! player page, for networks that block UDP between them and us.
//!
//! Nothing is encoded here: every viewer of `{bus}/{profile}` reads the
//! encoded bus `{bus}.h264.{profile}` through one shared [`crate::feed::Feed`]
//! (one copy of each access unit out of the ring); str0m packetizes and
//! encrypts per session. A camera with an Opus bus (`{bus}.opus`) also
//! gets its sound to every session whose offer receives audio, through one
//! shared reader of that bus ([`audio`]). See `docs/webrtc.md` and
//! `docs/decisions/0003-webrtc-with-str0m.md`.
//!
//! Files: [`config`] (flags), [`audio`] (the Opus feeds), [`udp`]
//! (the media port), [`session`] (one viewer), [`whep`] (HTTP handlers,
//! the registry of sessions), [`player`] (the page), [`whip`] (publishing
//! to a WHIP server: the same session in the active role).

pub mod audio;
pub mod config;
pub mod metrics;
pub mod player;
pub mod session;
pub mod udp;
pub mod whep;
pub mod whip;

pub use config::WebRtcArgs;
pub use whep::WebRtc;
