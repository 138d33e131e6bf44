//! Server configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::auth::Credentials;

/// Everything the server needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind.
    pub listen: SocketAddr,
    /// A joiner starts from the newest keyframe in the GOP when it was
    /// captured at most this long ago; otherwise the encoder is asked for
    /// a fresh keyframe and the joiner starts there (see
    /// [`super::stream::Stream::start`]).
    pub join_max_age: Duration,
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
    /// Optional credentials (RTSP Digest).
    pub auth: Option<Credentials>,
    /// Digest nonces are accepted on a new connection for this long after
    /// they were issued (a connection that authenticated with one keeps
    /// using it).
    pub nonce_lifetime: Duration,
    /// Shared-memory directory override.
    pub shm_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8554)),
            join_max_age: Duration::from_millis(500),
            max_clients: 32,
            session_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            mtu: 1400,
            auth: None,
            nonce_lifetime: Duration::from_secs(60),
            shm_dir: None,
        }
    }
}
