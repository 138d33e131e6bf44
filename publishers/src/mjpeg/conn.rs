//! Accepted connections: socket options for streaming, and counting the
//! bytes actually written to each viewer.
//!
//! [`StreamListener`] wraps the `TcpListener` given to `axum::serve`. Every
//! accepted socket gets `TCP_NODELAY` (a part's last segment leaves at once
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

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

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

impl Connected<IncomingStream<'_, StreamListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, StreamListener>) -> ConnInfo {
        ConnInfo {
            peer: *stream.remote_addr(),
            bytes: stream.io().bytes.clone(),
        }
    }
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

/// The server's listener: socket options and byte counting on every
/// accepted connection.
#[derive(Debug)]
pub struct StreamListener {
    inner: TcpListener,
}

impl StreamListener {
    /// Wrap a bound listener.
    pub fn new(inner: TcpListener) -> StreamListener {
        StreamListener { inner }
    }
}

impl Listener for StreamListener {
    type Io = CountedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CountedIo, SocketAddr) {
        // axum's impl for TcpListener logs and retries accept errors.
        let (tcp, peer) = Listener::accept(&mut self.inner).await;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        if let Err(e) = socket2::SockRef::from(&tcp).set_send_buffer_size(SEND_BUFFER) {
            tracing::debug!(error = %e, "cannot set SO_SNDBUF");
        }
        let io = CountedIo {
            inner: tcp,
            bytes: Arc::new(ConnBytes::default()),
        };
        (io, peer)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
