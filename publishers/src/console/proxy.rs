//! The recorder's API through the console's address: `/api/v1/recordings…`
//! and `/api/v1/recorder/…` are forwarded, method, headers, body and all,
//! to `framebus-recorder` (its own process, decision 0005), so the page
//! and its users need one address and one set of credentials.
//!
//! Where the recorder is: `--recorder-url` when given, else the running
//! `recorder` in the status file of the supervisor that started this
//! server (`status::of_parent`: the file named after the parent's pid,
//! owned by this user; it also finds a recorder on port 0 and follows it
//! across restarts). A server started by hand without `--recorder-url`
//! forwards nothing. The caller's `Authorization` (this server's
//! credentials, already checked) is replaced by the recorder's own
//! (`$FRAMEBUS_RECORDER_AUTH`, which the producer passes to both); a
//! server without credentials of its own does not forward to a recorder
//! that has some (it would hand the recorder's rights to anyone).
//! Preflights (`OPTIONS`, which pass the auth layer unchecked) are answered
//! here, never forwarded. Hop-by-hop headers are dropped both ways. Bodies
//! stream both ways: a download is not held in memory, and `Range` passes
//! through for `<video>` seeking.

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hyper_util::rt::TokioIo;

use crate::mjpeg::state::AppState;
use framebus::contract::status::{self, PublisherState};

/// Connecting to the recorder takes longer than this: 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The recorder's answer (its head; a body then streams as long as it
/// takes) takes longer than this: 504. Its slowest request, creating a
/// recording, answers at once.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers of one connection, never forwarded (RFC 9110 7.6.1), besides
/// those `Connection` names.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

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
            let mut v = HeaderValue::from_str(&format!("Basic {b64}")).ok()?;
            // Kept out of Debug output and HPACK tables.
            v.set_sensitive(true);
            Some(v)
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
        status::of_parent(shm_dir)?
            .publishers
            .into_iter()
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
    if req.method() == Method::OPTIONS {
        // A preflight carries no credentials: answered here (CORS, when
        // configured, answers it before this), never forwarded.
        return (
            StatusCode::NO_CONTENT,
            [(header::ALLOW, "GET, HEAD, POST, DELETE, OPTIONS")],
        )
            .into_response();
    }
    let proxy = state.recorder_proxy.clone();
    if proxy.authorization.is_some() && !state.auth.enabled() {
        return json_error(
            StatusCode::FORBIDDEN,
            "the recorder needs credentials and this server has none: set credentials here \
             ([publishers.mjpeg] auth) to use the recorder through it"
                .into(),
        );
    }
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
        Err((status, why)) => {
            tracing::warn!(%addr, %why, "recorder request failed");
            json_error(
                status,
                "the recorder did not answer (see this server's log)".into(),
            )
        }
    }
}

/// Drops the hop-by-hop headers, and those `Connection` names.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    for n in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        h.remove(n);
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
) -> Result<Response, (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_GATEWAY, e);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| bad("connection timed out".into()))?
        .map_err(|e| bad(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| bad(e.to_string()))?;
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
    parts.uri = path.parse().map_err(|_| bad("bad path".into()))?;
    let h = &mut parts.headers;
    strip_hop_by_hop(h);
    h.remove(header::AUTHORIZATION);
    if let Some(a) = authorization {
        h.insert(header::AUTHORIZATION, a);
    }
    h.insert(
        header::HOST,
        HeaderValue::from_str(addr).map_err(|e| bad(e.to_string()))?,
    );
    let res = tokio::time::timeout(
        ANSWER_TIMEOUT,
        sender.send_request(axum::http::Request::from_parts(parts, body)),
    )
    .await
    .map_err(|_| {
        (
            StatusCode::GATEWAY_TIMEOUT,
            format!("no answer within {ANSWER_TIMEOUT:?}"),
        )
    })?
    .map_err(|e| bad(e.to_string()))?;
    let (mut parts, body) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers);
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

    #[test]
    fn hop_by_hop_headers_stay_on_their_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(
            "proxy-authorization",
            HeaderValue::from_static("Basic eDp5"),
        );
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-99"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["range"]);
    }

    #[test]
    fn the_recorder_credentials_are_sensitive() {
        let r = Recorder::new(None, Some("rec:s3cret".into()));
        let a = r.authorization.as_ref().unwrap();
        assert!(a.is_sensitive());
        assert!(!format!("{r:?}").contains("cmVjOnMzY3JldA"), "{r:?}");
    }
}
