//! The optional HTTP listener of `framebus-rtsp` (`--http-listen`):
//! `/metrics` (Prometheus, OpenMetrics text), `/api/v1/streams` (JSON
//! status) and `/healthz`.
//!
//! With `--auth` set, `/metrics` and `/api/v1/streams` need the same
//! credentials over HTTP Basic; `/healthz` stays open for supervisors.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use framebus::contract;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;

use super::metrics::RtspCollector;
use super::stream::{Stream, Streams};
use crate::common::auth::Credentials;
use crate::common::http::{self as common_http, BusCollector, Observability};

/// What the handlers share; each takes only its part (axum sub-state).
#[derive(Clone, Debug)]
struct HttpState {
    streams: Arc<Streams>,
    auth: Arc<Option<Credentials>>,
    observe: Observability,
}

impl FromRef<HttpState> for Arc<Streams> {
    fn from_ref(s: &HttpState) -> Arc<Streams> {
        Arc::clone(&s.streams)
    }
}

impl FromRef<HttpState> for Arc<Option<Credentials>> {
    fn from_ref(s: &HttpState) -> Arc<Option<Credentials>> {
        Arc::clone(&s.auth)
    }
}

impl FromRef<HttpState> for Observability {
    fn from_ref(s: &HttpState) -> Observability {
        s.observe.clone()
    }
}

/// Status of one stream, as served by `/api/v1/streams`.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    /// Path of the stream in `rtsp://host:port/{path}`.
    pub path: String,
    /// The encoded bus read.
    pub bus: String,
    /// `idle` or `running` (the bus reader thread).
    pub state: &'static str,
    /// Why the stream cannot run (missing bus, not H.264), if so.
    pub problem: Option<String>,
    /// Encoded width (null until the codec parameters are known).
    pub width: Option<u32>,
    /// Encoded height.
    pub height: Option<u32>,
    /// Clients holding a slot.
    pub clients: usize,
    /// Client limit.
    pub max_clients: usize,
    /// Access units per second from the bus (last 2 s).
    pub input_fps: f64,
    /// H.264 bits per second from the bus (last 2 s).
    pub input_bitrate: f64,
    /// Seconds since the reader thread started (null when idle).
    pub uptime_s: Option<f64>,
    /// Access units read since the process started.
    pub frames_in: u64,
    /// Access units slow clients skipped.
    pub dropped_slow: u64,
    /// Bytes of RTP written to clients.
    pub sent_bytes: u64,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

impl StreamStatus {
    /// The status of `s` now.
    pub fn of(s: &Stream) -> StreamStatus {
        use std::sync::atomic::Ordering::Relaxed;
        let m = s.metrics();
        let params = s.current_params();
        let uptime = s.uptime();
        StreamStatus {
            path: s.path.clone(),
            bus: s.bus().to_string(),
            state: if uptime.is_some() { "running" } else { "idle" },
            problem: s.failure(),
            width: params.as_ref().map(|p| p.width),
            height: params.as_ref().map(|p| p.height),
            clients: s.clients(),
            max_clients: s.max_clients(),
            input_fps: round2(m.input_fps()),
            input_bitrate: m.input_bitrate().round(),
            uptime_s: uptime.map(|u| round2(u.as_secs_f64())),
            frames_in: m.frames_in.load(Relaxed),
            dropped_slow: m.dropped_slow.load(Relaxed),
            sent_bytes: m.sent_bytes.load(Relaxed),
        }
    }
}

async fn list_streams(State(streams): State<Arc<Streams>>) -> Json<serde_json::Value> {
    let mut all = streams.all();
    all.sort_by(|a, b| a.path.cmp(&b.path));
    let list: Vec<StreamStatus> = all.iter().map(|s| StreamStatus::of(s)).collect();
    Json(serde_json::json!({ "streams": list }))
}

/// A stream with clients that got no access unit for this long is unhealthy.
pub const STALL_LIMIT: Duration = Duration::from_secs(5);

/// Why `/healthz` answers 503: a stream that has clients cannot serve
/// them, because its encoder failed or it encoded nothing for
/// [`STALL_LIMIT`] (producer gone or stuck). Requests for buses that do
/// not exist do not make the server unhealthy (they get 404).
pub fn health_problems(streams: &Streams) -> Vec<String> {
    let mut problems = Vec::new();
    for s in streams.all() {
        if s.clients() == 0 {
            continue;
        }
        if let Some(p) = s.failure() {
            problems.push(format!("{}: {p}", s.path));
            continue;
        }
        let since = s
            .metrics()
            .last_in()
            .map(|t| t.elapsed())
            .or_else(|| s.uptime());
        if let Some(d) = since.filter(|d| *d > STALL_LIMIT) {
            problems.push(format!(
                "{}: {} clients, no access unit from the encoded bus for {:.0} s (encoder or producer gone?)",
                s.path,
                s.clients(),
                d.as_secs_f64()
            ));
        }
    }
    problems.sort();
    problems
}

fn basic_ok(value: Option<&HeaderValue>, creds: &Credentials) -> bool {
    let Some(v) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return false;
    };
    creds.matches_basic(b64)
}

/// Everything but `/healthz` needs the credentials, over HTTP Basic.
async fn require_auth(
    State(auth): State<Arc<Option<Credentials>>>,
    req: Request,
    next: Next,
) -> Response {
    match auth.as_ref() {
        Some(c)
            if req.uri().path() != contract::health::HTTP_PATH
                && !basic_ok(req.headers().get(header::AUTHORIZATION), c) =>
        {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"framebus-rtsp\"")],
                "credentials required\n",
            )
                .into_response()
        }
        _ => next.run(req).await,
    }
}

/// The router for `streams`; `shm_dir` is where the bus series come from.
pub fn router(
    streams: Arc<Streams>,
    shm_dir: Option<std::path::PathBuf>,
    auth: Option<Credentials>,
) -> Router {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(RtspCollector::new(Arc::clone(&streams))));
    registry.register_collector(Box::new(BusCollector::new(move || {
        framebus::list_in(shm_dir.as_deref()).unwrap_or_default()
    })));
    let health = {
        let streams = Arc::clone(&streams);
        move || health_problems(&streams)
    };
    let state = HttpState {
        streams,
        auth: Arc::new(auth),
        observe: Observability::new(registry, health),
    };
    Router::new()
        .route(contract::streams::PATH, get(list_streams))
        .merge(common_http::routes())
        .layer(middleware::from_fn_with_state(state.clone(), require_auth))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// requests in progress finish (axum's graceful shutdown; idle keep-alive
/// connections are closed at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
