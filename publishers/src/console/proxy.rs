//! The recorder's API through the console's address: `/api/v1/recordings…`
//! and `/api/v1/recorder/…` are forwarded, method, headers, body and all,
//! to `framebus-recorder` (its own process, decision 0005), so the page
//! and its users need one address and one set of credentials.
//!
//! Where the recorder is: `--recorder-url` when given, else the running
//! `recorder` in the supervisor's status file (which also finds a
//! recorder on port 0 and follows it across restarts). The caller's
//! `Authorization` (this server's credentials, already checked) is replaced
//! by the recorder's own (`$FRAMEBUS_RECORDER_AUTH`, which the producer
//! passes to both). Bodies stream both ways: a download is not held in
//! memory, and `Range` passes through for `<video>` seeking.

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hyper_util::rt::TokioIo;

use crate::mjpeg::state::AppState;
use framebus::contract::status::{self, PublisherState};

/// Connecting to the recorder takes longer than this: 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The recorder as the proxy reaches it.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// `--recorder-url`'s `host:port` (a listen-everywhere address as
    /// loopback), when given.
    pub fixed: Option<String>,
    /// `Authorization` value for the recorder (from
    /// `$FRAMEBUS_RECORDER_AUTH`).
    pub authorization: Option<HeaderValue>,
}

impl Recorder {
    /// From `--recorder-url`'s authority and the recorder's credentials
    /// `user:password`.
    pub fn new(fixed: Option<String>, credentials: Option<String>) -> Recorder {
        let authorization = credentials.and_then(|c| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_bytes());
            HeaderValue::from_str(&format!("Basic {b64}")).ok()
        });
        Recorder {
            fixed,
            authorization,
        }
    }

    /// Where to connect now: the fixed address, else a running recorder
    /// of a live supervisor in `shm_dir`.
    pub fn address(&self, shm_dir: &Path) -> Option<String> {
        if let Some(a) = &self.fixed {
            return Some(a.clone());
        }
        status::live_for_me(shm_dir)
            .into_iter()
            .flat_map(|st| st.publishers)
            .find(|p| p.kind == "recorder" && p.state == PublisherState::Running)
            .and_then(|p| p.address)
            .map(|a| loopback_for_any(&a))
    }
}

/// `0.0.0.0:P` → `127.0.0.1:P`, `[::]:P` → `[::1]:P`: a server listening
/// everywhere is reached on loopback.
pub fn loopback_for_any(addr: &str) -> String {
    if let Some(p) = addr.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{p}")
    } else if let Some(p) = addr.strip_prefix("[::]:") {
        format!("[::1]:{p}")
    } else {
        addr.to_string()
    }
}

fn shm_dir(state: &AppState) -> std::path::PathBuf {
    state
        .streams
        .config()
        .shm_dir
        .clone()
        .unwrap_or_else(framebus::default_shm_dir)
}

/// Whether a recorder is reachable through this server now.
pub fn available(state: &AppState) -> bool {
    state.recorder_proxy.address(&shm_dir(state)).is_some()
}

/// The handler for every forwarded path.
pub async fn forward(State(state): State<AppState>, req: Request) -> Response {
    let proxy = state.recorder_proxy.clone();
    let dir = shm_dir(&state);
    let addr = tokio::task::spawn_blocking(move || proxy.address(&dir))
        .await
        .ok()
        .flatten();
    let Some(addr) = addr else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no recorder is running: configure [publishers.recorder] (or pass --recorder-url)"
                .into(),
        );
    };
    match send(&addr, state.recorder_proxy.authorization.clone(), req).await {
        Ok(r) => r,
        Err(why) => {
            tracing::warn!(%addr, %why, "recorder request failed");
            json_error(
                StatusCode::BAD_GATEWAY,
                format!("the recorder at {addr} did not answer: {why}"),
            )
        }
    }
}

/// An error in the recorder's own shape (`{"error", "status"}`).
fn json_error(status: StatusCode, error: String) -> Response {
    let body = serde_json::json!({ "error": error, "status": status.as_u16() });
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn send(
    addr: &str,
    authorization: Option<HeaderValue>,
    req: Request,
) -> Result<Response, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connection timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "recorder connection");
        }
    });
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = path.parse().map_err(|_| "bad path".to_string())?;
    let h = &mut parts.headers;
    h.remove(header::AUTHORIZATION);
    h.remove(header::CONNECTION);
    if let Some(a) = authorization {
        h.insert(header::AUTHORIZATION, a);
    }
    h.insert(
        header::HOST,
        HeaderValue::from_str(addr).map_err(|e| e.to_string())?,
    );
    let res = sender
        .send_request(axum::http::Request::from_parts(parts, body))
        .await
        .map_err(|e| e.to_string())?;
    let (mut parts, body) = res.into_parts();
    parts.headers.remove(header::CONNECTION);
    parts.headers.remove(header::WWW_AUTHENTICATE);
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_everywhere_is_reached_on_loopback() {
        assert_eq!(loopback_for_any("0.0.0.0:8090"), "127.0.0.1:8090");
        assert_eq!(loopback_for_any("[::]:8090"), "[::1]:8090");
        assert_eq!(loopback_for_any("10.0.0.2:8090"), "10.0.0.2:8090");
    }
}
