//! `/{bus}/{profile}.mjpg` (multipart/x-mixed-replace) and
//! `/{bus}/snapshot.jpg`.
//!
//! Each viewer is a body stream polled by hyper only when the connection
//! can take more bytes. On each poll it takes the newest JPEG from the
//! stream's watch channel, so a slow viewer skips frames (counted as
//! `frames_dropped_slow`) instead of queueing them, and a stalled one simply
//! stops being polled without holding up the encoder or anyone else. Each
//! multipart part is built once per frame ([`make_part`]) and shared
//! (`Bytes`), never copied per viewer. On shutdown (SIGTERM/SIGINT) every
//! viewer's stream ends after its current part, so the server's graceful
//! shutdown completes at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;

use super::conn::ConnInfo;
use super::encoder::Jpeg;
use super::error::ApiError;
use super::streams::Streams;
use crate::common::demand::{JoinError, JoinKind, Ticket};
use crate::common::stats::StreamStats;

/// Multipart boundary.
pub const BOUNDARY: &str = "framebusframe";
/// How long a snapshot waits for a frame.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);

/// `GET /{bus}/{file}`: `{profile}.mjpg` or `snapshot.jpg`.
pub async fn media(
    State(streams): State<Arc<Streams>>,
    Path((bus, file)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    conn: Option<Extension<ConnectInfo<ConnInfo>>>,
) -> Result<Response, ApiError> {
    if file == "snapshot.jpg" {
        return snapshot(streams, bus, query).await;
    }
    let Some(profile) = file
        .strip_suffix(".mjpg")
        .or_else(|| file.strip_suffix(".mjpeg"))
    else {
        return Err(ApiError::NotFound(format!("/{bus}/{file}")));
    };
    if let Some(k) = query.keys().next() {
        return Err(ApiError::BadRequest(format!(
            "unknown query parameter {k:?}"
        )));
    }
    let stream = streams.get(&bus, profile)?;
    let ticket = stream
        .demand
        .join(JoinKind::Viewer)
        .map_err(|JoinError::Full { max }| ApiError::Full {
            bus: bus.clone(),
            profile: profile.to_string(),
            max,
        })?;
    tracing::debug!(bus = %bus, profile, "viewer joined");
    if let Some(Extension(ConnectInfo(c))) = conn {
        c.bytes.attribute(stream.stats.clone());
    }
    let viewer = Viewer {
        ticket,
        stats: stream.stats.clone(),
        last_seq: None,
        shutdown: streams.shutdown_signal(),
    };
    let body = Body::from_stream(futures_util::stream::unfold(viewer, next_part));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("multipart/x-mixed-replace; boundary=framebusframe"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store, must-revalidate"),
            ),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response())
}

struct Viewer {
    ticket: Ticket<Jpeg>,
    stats: Arc<StreamStats>,
    last_seq: Option<u64>,
    /// Becomes true when the server shuts down.
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// One multipart part (head, JPEG, CRLF) built once per frame by the
/// encoder and shared by every viewer, so a viewer costs one write per
/// frame and no copy. Returns the part and the JPEG's range inside it.
pub fn make_part(jpeg: &[u8], seq: u64, realtime_ns: u64) -> (Bytes, std::ops::Range<usize>) {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame: {}\r\nX-Timestamp: {}.{:06}\r\n\r\n",
        jpeg.len(),
        seq,
        realtime_ns / 1_000_000_000,
        (realtime_ns % 1_000_000_000) / 1000,
    );
    let mut part = Vec::with_capacity(head.len() + jpeg.len() + 2);
    part.extend_from_slice(head.as_bytes());
    part.extend_from_slice(jpeg);
    part.extend_from_slice(b"\r\n");
    (Bytes::from(part), head.len()..head.len() + jpeg.len())
}

/// Next chunk for a viewer: the part of the newest frame, waiting for one
/// newer than the last sent.
async fn next_part(mut v: Viewer) -> Option<(Result<Bytes, Infallible>, Viewer)> {
    if *v.shutdown.borrow() {
        return None;
    }
    let jpeg = loop {
        let newest = v.ticket.rx.borrow_and_update().clone();
        if let Some(j) = newest {
            if v.last_seq.is_none_or(|l| j.seq > l) {
                break j;
            }
        }
        // Err: the run ended (stopped); end this viewer's stream. Also
        // end it when the server shuts down (`wait_for` returns at once if
        // that already happened; Err: the sender is gone, same meaning).
        tokio::select! {
            r = v.ticket.rx.changed() => r.ok()?,
            _ = v.shutdown.wait_for(|down| *down) => return None,
        }
    };
    if let Some(l) = v.last_seq {
        if jpeg.seq > l + 1 {
            v.stats.dropped_slow(jpeg.seq - l - 1);
        }
    }
    v.last_seq = Some(jpeg.seq);
    Some((Ok(jpeg.part.clone()), v))
}

async fn snapshot(
    streams: Arc<Streams>,
    bus: String,
    mut query: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let profile = query.remove("profile").unwrap_or_else(|| "native".into());
    if let Some(k) = query.keys().next() {
        return Err(ApiError::BadRequest(format!(
            "unknown query parameter {k:?}"
        )));
    }
    if profile.is_empty()
        || !profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::BadRequest(format!(
            "bad profile value {profile:?}"
        )));
    }
    let stream = streams.get(&bus, &profile)?;
    let mut ticket =
        stream
            .demand
            .join(JoinKind::Snapshot)
            .map_err(|JoinError::Full { max }| ApiError::Full {
                bus: bus.clone(),
                profile: profile.clone(),
                max,
            })?;
    let wait = async {
        loop {
            if let Some(j) = ticket.rx.borrow_and_update().clone() {
                return Some(j);
            }
            ticket.rx.changed().await.ok()?;
        }
    };
    let jpeg = tokio::time::timeout(SNAPSHOT_WAIT, wait)
        .await
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::NoFrame {
            bus: bus.clone(),
            secs: SNAPSHOT_WAIT.as_secs(),
            state: stream.health.state().describe(),
        })?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store"),
            ),
        ],
        jpeg.data.clone(),
    )
        .into_response())
}
