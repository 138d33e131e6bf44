//! Accepted connections: the accept loop, limits against idle and hostile
//! clients, socket options for streaming, and counting the bytes actually
//! written to each viewer.
//!
//! [`serve_connections`] runs hyper's HTTP/1 server on each accepted socket
//! (instead of `axum::serve`, which gives hyper no timer and therefore no
//! header read timeout). Limits: a client must send a complete request head
//! within [`ConnLimits::header_timeout`] (slowloris clients are
//! disconnected), a head over [`MAX_REQUEST_HEAD`] bytes gets **431**, and
//! beyond [`ConnLimits::max_connections`] open connections new ones are
//! accepted and closed at once. Every accepted socket gets `TCP_NODELAY` (a part's last segment leaves at once
//! instead of waiting for the previous one's ACK) and a send buffer of
//! [`SEND_BUFFER`] bytes, so one `writev` usually hands a whole part to the
//! kernel (fewer syscalls and wake-ups per viewer per frame). The socket is
//! wrapped in a [`CountedIo`] that adds the byte count of every successful
//! write to the connection's [`ConnBytes`]; a handler that serves a stream
//! on the connection (`.mjpg`) points it at that stream's statistics with
//! [`ConnBytes::attribute`], so `bytes_sent` counts bytes the kernel
//! accepted for viewers, not bytes encoded.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::common::stats::StreamStats;

/// `SO_SNDBUF` for every connection: about four 720p parts at quality 80.
/// Large enough that a part goes out in one write, small enough that a
/// slow viewer never has more than a few frames queued in the kernel.
pub const SEND_BUFFER: usize = 512 * 1024;

/// Where the bytes written on one connection are counted.
#[derive(Debug, Default)]
pub struct ConnBytes {
    target: OnceLock<Arc<StreamStats>>,
}

impl ConnBytes {
    /// Count this connection's bytes (from now on) as sent to `stats`'s
    /// viewers. The first stream served on a connection keeps it (a
    /// multipart response never ends, so there is no second one).
    pub fn attribute(&self, stats: Arc<StreamStats>) {
        let _ = self.target.set(stats);
    }

    fn add(&self, n: usize) {
        if let Some(s) = self.target.get() {
            s.sent(n as u64);
        }
    }
}

/// The per-connection value handed to handlers (`ConnectInfo<ConnInfo>`).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Peer address.
    pub peer: SocketAddr,
    /// Byte counter of this connection.
    pub bytes: Arc<ConnBytes>,
}

/// A TCP socket that counts what it writes.
#[derive(Debug)]
pub struct CountedIo {
    inner: TcpStream,
    bytes: Arc<ConnBytes>,
}

impl AsyncRead for CountedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.bytes.add(n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.bytes.add(n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        // Must be forwarded: hyper queues shared `Bytes` parts for `writev`
        // only when the IO is vectored; otherwise it copies every part into
        // its own buffer, once per viewer.
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Largest request head (request line and headers) accepted: a larger one
/// is answered **431** and the connection closed.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time allowed to send a complete request head.
    pub header_timeout: Duration,
    /// Open connections at most; more are accepted and closed at once.
    pub max_connections: usize,
}

/// How long to pause accepting after an accept error that is not about the
/// one connection (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

fn configure(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    if let Err(e) = socket2::SockRef::from(tcp).set_send_buffer_size(SEND_BUFFER) {
        tracing::debug!(error = %e, "cannot set SO_SNDBUF");
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serve `router` on every connection accepted from `listener` until
/// `down` turns true. Then accepting stops, each connection is told to
/// close after its current response (streams end by themselves on the same
/// signal), and this returns once all are closed or after `deadline`,
/// whichever comes first (connections still open are dropped with the
/// runtime). Returns whether every connection closed in time.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    mut down: watch::Receiver<bool>,
    deadline: Duration,
) -> bool {
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_REQUEST_HEAD);
    let mut full_logged = false;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = down.wait_for(|d| *d) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if !full_logged {
                tracing::warn!(max, "--max-connections reached: closing new connections");
                full_logged = true;
            }
            drop(tcp);
            continue;
        };
        full_logged = false;
        configure(&tcp);
        let bytes = Arc::new(ConnBytes::default());
        let info = ConnInfo {
            peer,
            bytes: bytes.clone(),
        };
        let io = TokioIo::new(CountedIo { inner: tcp, bytes });
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(info.clone()));
            tower_service::Service::call(&mut router.clone(), req)
        });
        let conn = builder.serve_connection(io, service);
        let mut down = down.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                    return;
                }
                _ = down.wait_for(|d| *d) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let closed = tokio::time::timeout(deadline, slots.acquire_many(all))
        .await
        .is_ok();
    closed
}
