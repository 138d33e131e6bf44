//! Server configuration and the profile syntax of `--profile`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::auth::Credentials;
pub use crate::encoder::profile::{default_profiles, Profile};
use crate::encoder::EncoderKind;

/// Everything the server needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Profiles served for every bus.
    pub profiles: Vec<Profile>,
    /// Encoder choice.
    pub encoder: EncoderKind,
    /// Encoder keeps running this long after its last client.
    pub grace: Duration,
    /// Clients per stream before 503.
    pub max_clients: usize,
    /// Session timeout announced in `Session:` and enforced.
    pub session_timeout: Duration,
    /// A connection without a session must complete a message within
    /// this time (since it opened or since its last message): idle
    /// connections and clients trickling an endless request head
    /// (slowloris) are closed. With a session, `session_timeout` applies.
    pub request_timeout: Duration,
    /// RTP packet size limit (header included).
    pub mtu: usize,
    /// Optional credentials.
    pub auth: Option<Credentials>,
    /// Shared-memory directory override.
    pub shm_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8554)),
            profiles: default_profiles(),
            encoder: EncoderKind::Auto,
            grace: Duration::from_secs(10),
            max_clients: 32,
            session_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            mtu: 1400,
            auth: None,
            shm_dir: None,
        }
    }
}
