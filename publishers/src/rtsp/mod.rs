//! H.264 over RTSP: `framebus-rtsp`.
//!
//! `framebus-rtsp` encodes nothing: it serves the encoded buses that
//! `framebus-encoder` processes write (`rtsp://host/{bus}/{profile}` is the
//! bus `{bus}.h264.{profile}`), packetizing each access unit once for all
//! clients. RTSP messages are parsed and written with `rtsp-types`, the SDP
//! with `sdp-types`, and H.264 is packetized into RTP by
//! [`h264::Packetizer`] (RFC 6184 single NAL unit and FU-A).
//!
//! * [`config`]: server settings.
//! * [`stream`]: one bus reader thread per encoded bus, on demand, shared
//!   by all its clients through a non-blocking broadcast and a GOP cache.
//! * [`connection`]: the RTSP method state machine of one connection.
//! * [`push`]: `--push` to an external RTSP server (ANNOUNCE/RECORD).
//! * [`session`]: per-client RTP over TCP (interleaved) or paced UDP, RTCP SR.
//! * [`wire`]: framing of the control connection (requests, `$` data, garbage).
//! * [`sdp`], [`rtp`], [`h264`], [`auth`]: formats.
//!
//! See `docs/rtsp.md`.

pub mod auth;
pub mod config;
pub mod connection;
pub mod forward;
pub mod h264;
pub mod http;
pub mod metrics;
pub mod push;
pub mod rtp;
pub mod sdp;
pub mod session;
pub mod stream;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::Config;

/// How often idle streams of vanished buses are dropped from the registry.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(5);

/// At shutdown, connections still open this long after the signal (their
/// BYE and close are each bounded by a shorter timeout) are dropped and
/// [`Server::run_until`] returns anyway.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(500);

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
        let auth = Arc::new(auth::Auth::new(config.auth.clone(), config.nonce_lifetime));
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

    /// Accepts connections until `shutdown` completes; every
    /// [`PRUNE_INTERVAL`] forgets the idle streams of buses that are gone.
    ///
    /// Then it stops accepting (the port is released), ends every playing
    /// session with an RTCP BYE, closes every connection, and returns once
    /// all are closed or after [`SHUTDOWN_DEADLINE`], whichever comes
    /// first (connections still open then are dropped).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            config,
            streams,
            auth,
        } = self;
        let pruner = {
            let streams = Arc::clone(&streams);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PRUNE_INTERVAL);
                loop {
                    tick.tick().await;
                    let s = Arc::clone(&streams);
                    let _ = tokio::task::spawn_blocking(move || s.prune()).await;
                }
            })
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                // Forget finished connections as they end.
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((sock, peer)) => {
                        tracing::debug!(%peer, "connection");
                        conns.spawn(connection::serve(
                            sock,
                            Arc::clone(&config),
                            Arc::clone(&streams),
                            Arc::clone(&auth),
                            stop_rx.clone(),
                        ));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(listener);
        pruner.abort();
        let open = conns.len();
        stop_tx.send_replace(true);
        let all_closed = tokio::time::timeout(SHUTDOWN_DEADLINE, async {
            while conns.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if all_closed {
            tracing::info!(connections = open, "all connections closed");
        } else {
            tracing::warn!(
                still_open = conns.len(),
                "connections still open {SHUTDOWN_DEADLINE:?} after the signal: dropping them"
            );
        }
    }
}
