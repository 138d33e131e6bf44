//! H.264 over RTSP: `framebus-rtsp`.
//!
//! libavformat's RTSP muxer can only push to a server, so the server is
//! ours, on tokio: RTSP messages are parsed and written with `rtsp-types`,
//! the SDP with `sdp-types`, and H.264 is packetized into RTP by
//! [`h264::Packetizer`] (RFC 6184 single NAL unit and FU-A).
//!
//! * [`config`]: profiles and server settings.
//! * [`stream`]: one encoder thread per (bus, profile), on demand, shared by
//!   all its clients through a non-blocking broadcast.
//! * [`clock`]: frame selection and presentation times on the output grid.
//! * [`encoder`]: bus frame -> swscale -> x264 (or a hardware encoder).
//! * [`connection`]: the RTSP method state machine of one connection.
//! * [`push`]: `--push` to an external RTSP server (ANNOUNCE/RECORD).
//! * [`session`]: per-client RTP over TCP (interleaved) or UDP, RTCP SR.
//! * [`wire`]: framing of the control connection (requests, `$` data, garbage).
//! * [`sdp`], [`rtp`], [`h264`], [`auth`]: formats.
//!
//! See `docs/rtsp.md`.

pub mod auth;
pub mod clock;
pub mod config;
pub mod connection;
pub mod encoder;
pub mod h264;
pub mod http;
pub mod metrics;
pub mod push;
pub mod rtp;
pub mod sdp;
pub mod session;
pub mod stream;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::{Config, Profile};

/// How often idle streams of vanished buses are dropped from the registry.
pub const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// A bound RTSP server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    config: Arc<Config>,
    streams: Arc<stream::Streams>,
    auth: Arc<auth::Auth>,
}

impl Server {
    /// Binds `config.listen`.
    pub async fn bind(config: Config) -> std::io::Result<Server> {
        let listener = TcpListener::bind(config.listen).await?;
        let auth = Arc::new(auth::Auth::new(config.auth.clone()));
        let config = Arc::new(config);
        Ok(Server {
            listener,
            streams: Arc::new(stream::Streams::new(Arc::clone(&config))),
            config,
            auth,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The stream registry (for status and push).
    pub fn streams(&self) -> &Arc<stream::Streams> {
        &self.streams
    }

    /// Accepts connections forever; every [`PRUNE_INTERVAL`] forgets the
    /// idle streams of buses that are gone.
    pub async fn run(self) {
        let streams = Arc::clone(&self.streams);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_INTERVAL);
            loop {
                tick.tick().await;
                let s = Arc::clone(&streams);
                let _ = tokio::task::spawn_blocking(move || s.prune()).await;
            }
        });
        loop {
            match self.listener.accept().await {
                Ok((sock, peer)) => {
                    tracing::debug!(%peer, "connection");
                    tokio::spawn(connection::serve(
                        sock,
                        Arc::clone(&self.config),
                        Arc::clone(&self.streams),
                        Arc::clone(&self.auth),
                    ));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}
