//! The recorder's HTTP API and page (docs/recording.md):
//!
//! | request | answer |
//! |---|---|
//! | `POST /api/v1/recordings` `{stream, duration?, preroll?, snapshot?}` | 201 + the recording |
//! | `GET /api/v1/recordings[?stream=&kind=&start=&end=]` | `{"recordings": [...]}`, newest first |
//! | `GET /api/v1/recordings/{id}` | the recording |
//! | `DELETE /api/v1/recordings/{id}[?remove=1]` | stops it (200); `remove=1` deletes a finished one (204) |
//! | `GET /api/v1/recordings/{id}/file.mp4` | MP4 with the index at the front, made on the fly (Range) |
//! | `GET /api/v1/recordings/{id}/fragmented.mp4` | the file as written (Range) |
//! | `GET /api/v1/recordings/{id}/snapshot.jpg` | the snapshot saved with it |
//! | `GET /api/v1/recorder/streams` | every H.264 bus, whether it is buffered or continuous, its pre-roll in memory |
//! | `GET /list?stream=[&start=&end=]` | continuous spans, MediaMTX's shape |
//! | `GET /get?stream=&start=&duration=` | MP4 of a span of continuous segments |
//! | `GET /`, `/healthz`, `/metrics` | the page, health, Prometheus |
//!
//! Every error is one [`RecError`]: a JSON `{"error": "..."}` with its
//! status, never an internal detail beyond the path the operator chose.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRef, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tower_http::services::ServeFile;

use super::config::{parse_duration, parse_stream, Stream};
use super::metrics::RecorderCollector;
use super::recording::{parse_rfc3339, Entry, Kind, Recording, State as RecState};
use super::remux::{self, Progressive};
use super::{Recorder, StartError, StartRequest};
use crate::common::auth::Credentials;
use crate::common::http::{self as obs, Observability};

/// The path of the recordings API.
pub const API: &str = "/api/v1/recordings";

/// The streams the recorder can record, with their pre-roll.
pub const STREAMS: &str = "/api/v1/recorder/streams";

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum RecError {
    /// Malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The recording is in a state that does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// Too many recordings.
    #[error("{0}")]
    Full(String),
    /// The disk cannot take it.
    #[error("{0}")]
    Storage(String),
    /// Reading a recording back failed.
    #[error("{0}")]
    Internal(String),
    /// Missing or wrong credentials.
    #[error("authentication required")]
    Unauthorized,
}

impl IntoResponse for RecError {
    fn into_response(self) -> Response {
        let status = match &self {
            RecError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RecError::NotFound(_) => StatusCode::NOT_FOUND,
            RecError::Conflict(_) => StatusCode::CONFLICT,
            RecError::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
            RecError::Storage(_) => StatusCode::INSUFFICIENT_STORAGE,
            RecError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            RecError::Unauthorized => StatusCode::UNAUTHORIZED,
        };
        let mut r = (
            status,
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({ "error": self.to_string(), "status": status.as_u16() })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"framebus-recorder\""),
            );
        }
        r
    }
}

impl From<StartError> for RecError {
    fn from(e: StartError) -> RecError {
        match e {
            StartError::Invalid(m) => RecError::BadRequest(m),
            StartError::NoStream(e) => RecError::NotFound(e.to_string()),
            StartError::Full(_) => RecError::Full(e.to_string()),
            StartError::Store(e) => RecError::Storage(e.to_string()),
        }
    }
}

/// The router's state.
#[derive(Clone)]
pub struct AppState {
    rec: Arc<Recorder>,
    obs: Observability,
    auth: Option<Arc<Credentials>>,
}

impl FromRef<AppState> for Observability {
    fn from_ref(s: &AppState) -> Observability {
        s.obs.clone()
    }
}

/// Serves until `shutdown` resolves, then stops the active recordings
/// (their files complete) and returns.
pub async fn serve(
    rec: Arc<Recorder>,
    auth: Option<Credentials>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(rec.args.listen).await?;
    let addr: SocketAddr = listener.local_addr()?;
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(RecorderCollector::new(Arc::clone(&rec))));
    let health_rec = Arc::clone(&rec);
    let obs = Observability::new(registry, move || health_rec.problems());
    let state = AppState {
        rec: Arc::clone(&rec),
        obs,
        auth: auth.map(Arc::new),
    };
    tokio::spawn(Arc::clone(&rec).retention_loop());
    let app = router(state, &rec.args.cors_origin);
    crate::common::cli::print_listening(&format!("http://{addr}/"));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    rec.stop_all(Duration::from_secs(5)).await;
    Ok(())
}

fn router(state: AppState, cors: &[String]) -> Router {
    let api = Router::new()
        .route("/", get(page))
        .route(API, get(list).post(create))
        .route(&format!("{API}/{{id}}"), get(one).delete(stop))
        .route(&format!("{API}/{{id}}/file.mp4"), get(download))
        .route(&format!("{API}/{{id}}/fragmented.mp4"), get(fragmented))
        .route(&format!("{API}/{{id}}/snapshot.jpg"), get(snapshot))
        .route(STREAMS, get(streams))
        .route("/list", get(spans))
        .route("/get", get(get_span))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require));
    let mut app = api.merge(obs::routes()).with_state(state);
    if !cors.is_empty() {
        use tower_http::cors::{AllowOrigin, Any, CorsLayer};
        let origins = if cors.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(cors.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods(Any)
                .allow_headers(Any),
        );
    }
    app
}

async fn require(
    State(s): State<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(want) = &s.auth else {
        return next.run(req).await;
    };
    if req.method() == axum::http::Method::OPTIONS {
        return next.run(req).await;
    }
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .is_some_and(|(scheme, v)| {
            scheme.eq_ignore_ascii_case("basic") && want.matches_basic(v.trim())
        });
    if ok {
        next.run(req).await
    } else {
        RecError::Unauthorized.into_response()
    }
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// A duration given as a number of seconds or a string (`"5s"`).
fn duration_field(body: &Value, key: &str) -> Result<Option<Duration>, RecError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map(Some)
            .ok_or_else(|| {
                RecError::BadRequest(format!("{key}: {n} is not a number of seconds ≥ 0"))
            }),
        Some(Value::String(s)) => parse_duration(s)
            .map(Some)
            .map_err(|e| RecError::BadRequest(format!("{key}: {e}"))),
        Some(other) => Err(RecError::BadRequest(format!(
            "{key}: give seconds (5) or a duration (\"5s\"), not {other}"
        ))),
    }
}

async fn create(State(s): State<AppState>, body: axum::body::Bytes) -> Result<Response, RecError> {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| RecError::BadRequest(format!("the body is not JSON: {e}")))?;
    if !body.is_object() {
        return Err(RecError::BadRequest(
            "the body must be a JSON object: {\"stream\": \"cam0/high\", \"duration\": \"30s\", \"preroll\": \"5s\"}".into(),
        ));
    }
    let stream = body
        .get("stream")
        .and_then(Value::as_str)
        .ok_or_else(|| RecError::BadRequest("\"stream\" is missing (e.g. \"cam0/high\")".into()))?;
    let stream = parse_stream(stream).map_err(|e| RecError::BadRequest(format!("stream {e}")))?;
    let req = StartRequest {
        stream,
        duration: duration_field(&body, "duration")?,
        preroll: duration_field(&body, "preroll")?.unwrap_or_default(),
        snapshot: body
            .get("snapshot")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    let rec = Arc::clone(&s.rec);
    // Creating the file touches the disk; record() spawns tasks, so it
    // runs in the runtime's context (block_in_place keeps it there).
    let entry = tokio::task::block_in_place(|| rec.record(req))?;
    let r = entry.snapshot();
    let location = format!("{API}/{}", r.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(r)).into_response())
}

/// Every encoded (H.264) bus with what the recorder does with it.
async fn streams(State(s): State<AppState>) -> Result<Json<Value>, RecError> {
    let shm = s.rec.args.shm_dir.clone();
    let buses = tokio::task::spawn_blocking(move || framebus::list_in(shm.as_deref()))
        .await
        .map_err(|e| RecError::Internal(e.to_string()))?
        .map_err(|e| RecError::Internal(format!("cannot list the buses: {e}")))?;
    let taps = s.rec.taps();
    let items: Vec<Value> = buses
        .iter()
        .filter(|b| b.format == framebus::PixelFormat::H264.to_string())
        .map(|b| {
            let stream = Stream { bus: b.name.clone() };
            let tap = taps.iter().find(|t| t.bus() == b.name);
            json!({
                "stream": stream.name(),
                "bus": b.name,
                "width": b.width,
                "height": b.height,
                "fps": b.fps,
                "live": b.producer_alive,
                "buffered": s.rec.args.buffer.contains(&stream),
                "continuous": s.rec.args.continuous.contains(&stream),
                "preroll_s": tap.map_or(0.0, |t| t.counters.preroll_ns.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9),
                "recording": tap.map_or(0, |t| t.active_jobs()),
            })
        })
        .collect();
    Ok(Json(json!({
        "streams": items,
        "preroll_max_s": s.rec.args.preroll_max.as_secs_f64(),
        "max_duration_s": s.rec.args.max_duration.as_secs_f64(),
        "dir": s.rec.store.dir(),
        "disk_free_bytes": super::metrics::disk_free(s.rec.store.dir()),
    })))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    stream: Option<String>,
    kind: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

fn time_param(v: &Option<String>, name: &str) -> Result<Option<u64>, RecError> {
    v.as_deref()
        .map(|s| parse_rfc3339(s).map_err(|e| RecError::BadRequest(format!("{name}: {e}"))))
        .transpose()
}

/// Capture interval of a recording, ns since the epoch.
fn span_of(r: &Recording) -> (u64, u64) {
    let start = r
        .first_frame_realtime_ns
        .unwrap_or(r.requested_at_realtime_ns);
    (start, start + (r.duration_s * 1e9) as u64)
}

async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, RecError> {
    let stream = q
        .stream
        .as_deref()
        .map(|v| parse_stream(v).map_err(|e| RecError::BadRequest(format!("stream {e}"))))
        .transpose()?;
    let kind = match q.kind.as_deref() {
        None => None,
        Some("clip") => Some(Kind::Clip),
        Some("segment") => Some(Kind::Segment),
        Some(k) => return Err(RecError::BadRequest(format!("kind {k:?}: clip or segment"))),
    };
    let (from, to) = (time_param(&q.start, "start")?, time_param(&q.end, "end")?);
    let out: Vec<Recording> = s
        .rec
        .store
        .all()
        .iter()
        .map(|e| e.snapshot())
        .filter(|r| stream.as_ref().is_none_or(|st| st.bus == r.bus))
        .filter(|r| kind.is_none_or(|k| k == r.kind))
        .filter(|r| {
            let (a, b) = span_of(r);
            from.is_none_or(|f| b >= f) && to.is_none_or(|t| a <= t)
        })
        .collect();
    Ok(Json(json!({ "recordings": out })))
}

fn entry(s: &AppState, id: &str) -> Result<Arc<Entry>, RecError> {
    s.rec
        .store
        .get(id)
        .ok_or_else(|| RecError::NotFound(format!("no recording {id:?}")))
}

async fn one(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Recording>, RecError> {
    Ok(Json(entry(&s, &id)?.snapshot()))
}

#[derive(Debug, Deserialize)]
struct StopQuery {
    remove: Option<String>,
}

async fn stop(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StopQuery>,
) -> Result<Response, RecError> {
    let e = entry(&s, &id)?;
    let remove = q.remove.as_deref().is_some_and(|v| v == "1" || v == "true");
    if remove {
        if e.rec.lock().state.is_active() {
            return Err(RecError::Conflict(format!(
                "recording {id:?} is still running: stop it first (DELETE without remove=1)"
            )));
        }
        let store = Arc::clone(&s.rec.store);
        let id2 = id.clone();
        tokio::task::spawn_blocking(move || store.remove(&id2))
            .await
            .map_err(|e| RecError::Internal(e.to_string()))?
            .map_err(|e| RecError::Storage(e.to_string()))?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(s.rec.stop(&e).await).into_response())
}

async fn fragmented(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, RecError> {
    let e = entry(&s, &id)?;
    serve_file(e.path.clone(), req).await
}

async fn snapshot(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, RecError> {
    let e = entry(&s, &id)?;
    if !e.rec.lock().snapshot {
        return Err(RecError::NotFound(format!(
            "recording {id:?} has no snapshot"
        )));
    }
    serve_file(e.path.with_extension("jpg"), req).await
}

async fn serve_file(path: PathBuf, req: Request) -> Result<Response, RecError> {
    // The type comes from the extension (.mp4, .jpg).
    let res = ServeFile::new(&path)
        .try_call(req)
        .await
        .map_err(|e| RecError::Internal(format!("{}: {e}", path.display())))?;
    Ok(res.map(Body::new))
}

async fn download(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, RecError> {
    let e = entry(&s, &id)?;
    let path = e.path.clone();
    let prog = tokio::task::spawn_blocking(move || -> Result<Progressive, RecError> {
        let scan = remux::scan(&path).map_err(|e| RecError::Internal(e.to_string()))?;
        if scan.samples.is_empty() {
            return Err(RecError::Conflict("the recording has no frames yet".into()));
        }
        Progressive::from_scans(&[(&scan, 0..scan.samples.len())])
            .map_err(|e| RecError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| RecError::Internal(e.to_string()))??;
    Ok(progressive_response(prog, &format!("{id}.mp4"), &headers))
}

/// Sends what is written to a response body (blocking: the copying
/// thread waits while the client is slow).
struct ChannelWriter(tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A [`Progressive`] as a response: the whole file, or the byte range
/// asked for (one range; several get the whole file, which RFC 9110
/// allows).
fn progressive_response(prog: Progressive, filename: &str, headers: &HeaderMap) -> Response {
    let total = prog.total_len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| http_range_header::parse_range_header(v).ok())
        .map(|r| r.validate(total));
    let (status, start, end) = match range {
        Some(Ok(ranges)) if ranges.len() == 1 => (
            StatusCode::PARTIAL_CONTENT,
            *ranges[0].start(),
            *ranges[0].end() + 1,
        ),
        Some(Err(_)) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{total}"))],
            )
                .into_response();
        }
        _ => (StatusCode::OK, 0, total),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    std::thread::spawn(move || {
        let mut out = ChannelWriter(tx.clone());
        if let Err(e) = prog.write_range(start..end, &mut out) {
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{total}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

#[derive(Debug, Deserialize)]
struct SpanQuery {
    stream: Option<String>,
    start: Option<String>,
    end: Option<String>,
    duration: Option<String>,
}

/// Finished (or running) continuous segments of `stream`, oldest first.
fn segments(s: &AppState, stream: &Stream) -> Vec<Recording> {
    let mut v: Vec<Recording> = s
        .rec
        .store
        .all()
        .iter()
        .map(|e| e.snapshot())
        .filter(|r| r.kind == Kind::Segment && r.bus == stream.bus && r.frames > 0)
        .collect();
    v.sort_by_key(|r| span_of(r).0);
    v
}

fn stream_param(q: &Option<String>) -> Result<Stream, RecError> {
    let v = q
        .as_deref()
        .ok_or_else(|| RecError::BadRequest("stream is missing (e.g. stream=cam0/high)".into()))?;
    parse_stream(v).map_err(|e| RecError::BadRequest(format!("stream {e}")))
}

/// Two segments closer than this are one span.
const SPAN_GAP_NS: u64 = 1_000_000_000;

async fn spans(
    State(s): State<AppState>,
    Query(q): Query<SpanQuery>,
) -> Result<Json<Value>, RecError> {
    let stream = stream_param(&q.stream)?;
    let (from, to) = (time_param(&q.start, "start")?, time_param(&q.end, "end")?);
    let mut out: Vec<(u64, u64)> = Vec::new();
    for r in segments(&s, &stream) {
        let (a, b) = span_of(&r);
        match out.last_mut() {
            Some(last) if a <= last.1 + SPAN_GAP_NS => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    let name = stream.name();
    let items: Vec<Value> = out
        .into_iter()
        .filter(|&(a, b)| from.is_none_or(|f| b >= f) && to.is_none_or(|t| a <= t))
        .map(|(a, b)| {
            let a = from.map_or(a, |f| a.max(f));
            let b = to.map_or(b, |t| b.min(t));
            let start = super::recording::rfc3339(a);
            let dur = (b - a) as f64 / 1e9;
            json!({
                "start": start,
                "duration": dur,
                "url": format!("/get?stream={name}&start={start}&duration={dur:.3}"),
            })
        })
        .collect();
    Ok(Json(Value::Array(items)))
}

async fn get_span(
    State(s): State<AppState>,
    Query(q): Query<SpanQuery>,
    headers: HeaderMap,
) -> Result<Response, RecError> {
    let stream = stream_param(&q.stream)?;
    let start = time_param(&q.start, "start")?
        .ok_or_else(|| RecError::BadRequest("start is missing (RFC 3339)".into()))?;
    let dur = q
        .duration
        .as_deref()
        .ok_or_else(|| RecError::BadRequest("duration is missing (seconds)".into()))
        .and_then(|d| {
            parse_duration(d).map_err(|e| RecError::BadRequest(format!("duration: {e}")))
        })?;
    let end = start + dur.as_nanos() as u64;
    let segs: Vec<Recording> = segments(&s, &stream)
        .into_iter()
        .filter(|r| {
            let (a, b) = span_of(r);
            b > start && a < end
        })
        .collect();
    if segs.is_empty() {
        return Err(RecError::NotFound(format!(
            "no continuous recording of {stream} between {} and {}",
            super::recording::rfc3339(start),
            super::recording::rfc3339(end)
        )));
    }
    let dir = s.rec.store.dir().to_path_buf();
    let prog = tokio::task::spawn_blocking(move || span(&dir, &segs, start, end))
        .await
        .map_err(|e| RecError::Internal(e.to_string()))?
        .map_err(|e| RecError::Internal(e.to_string()))?;
    let name = format!("{}_{}.mp4", stream.bus, super::recording::id_stamp(start));
    Ok(progressive_response(prog, &name, &headers))
}

/// The progressive MP4 of continuous segments `segs` (oldest first)
/// between `start` and `end` (ns since the epoch): from the last keyframe
/// at or before `start` (or the first one after it) to the last frame
/// captured before `end`.
fn span(
    dir: &std::path::Path,
    segs: &[Recording],
    start: u64,
    end: u64,
) -> Result<Progressive, RecError> {
    let mut scans = Vec::new();
    for r in segs {
        let scan =
            remux::scan(&dir.join(&r.file)).map_err(|e| RecError::Internal(e.to_string()))?;
        let first = r
            .first_frame_realtime_ns
            .unwrap_or(r.requested_at_realtime_ns);
        scans.push((scan, first));
    }
    let mut parts: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    for (i, (scan, first)) in scans.iter().enumerate() {
        let Some(s0) = scan.samples.first() else {
            continue;
        };
        // A sample's capture time: the segment's first frame plus its
        // decode time since the first sample (the bus's clock).
        let at = |k: usize| {
            first
                + (scan.samples[k].decode_time - s0.decode_time) * 1_000_000_000
                    / u64::from(scan.track.timescale.max(1))
        };
        let n = scan.samples.len();
        let from = if parts.is_empty() {
            let mut k = (0..n).rfind(|&k| scan.samples[k].key && at(k) <= start);
            if k.is_none() {
                k = (0..n).find(|&k| scan.samples[k].key && at(k) < end);
            }
            match k {
                Some(k) => k,
                None => continue,
            }
        } else {
            0
        };
        let to = (from..n).find(|&k| at(k) >= end).unwrap_or(n);
        if to > from {
            parts.push((i, from..to));
        }
        if to < n {
            break;
        }
    }
    if parts.is_empty() {
        return Err(RecError::NotFound("no keyframe in that span".into()));
    }
    let refs: Vec<(&remux::Scan, std::ops::Range<usize>)> = parts
        .iter()
        .map(|(i, r)| (&scans[*i].0, r.clone()))
        .collect();
    Progressive::from_scans(&refs).map_err(|e| RecError::Internal(e.to_string()))
}

impl Recorder {
    /// What `/healthz` reports (empty: healthy): the directory must be
    /// writable; a recording that failed in the last minute is reported
    /// too.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let probe = self.store.dir().join(".healthz");
        if let Err(e) = std::fs::write(&probe, b"ok") {
            p.push(format!(
                "cannot write to {}: {e}",
                self.store.dir().display()
            ));
        }
        let _ = std::fs::remove_file(&probe);
        let recent = framebus::realtime_ns().saturating_sub(60_000_000_000);
        for e in self.store.all() {
            let r = e.rec.lock();
            if r.state == RecState::Failed && r.requested_at_realtime_ns >= recent {
                p.push(format!(
                    "recording {} failed: {}",
                    r.id,
                    r.error.as_deref().unwrap_or("")
                ));
            }
        }
        p
    }
}
