//! The browser console: `framebus-mjpeg`'s `/`, one address for people
//! (decision 0006, `docs/console.md`).
//!
//! * `/`: the page (`console.html`, `console.css`, `console.js` and the
//!   time-code reader `timecode.js`, all served from the binary under
//!   `/_/`; no CDN). A mosaic of every camera and every other raw
//!   bus as live MJPEG tiles, a player per camera (WebRTC, LL-HLS, MJPEG,
//!   with fallback in that order), health, latency, actions.
//! * `/api/v1/console`: what the page shows, one JSON document
//!   ([`status`]); `/api/v1/console/levels`: just the microphones' levels,
//!   which the page's meters poll ten times a second (a 20 ms chunk's
//!   level read once a second would mostly miss the sound).
//! * `/api/v1/recordings…`, `/api/v1/recorder/…`: the recorder's API,
//!   forwarded ([`proxy`]).
//!
//! The rest of what the page uses is already on this server: MJPEG and
//! snapshots, WHEP, HLS, stream start/stop, `/metrics`, `/healthz`; the
//! earlier server-rendered index moved to `/mjpeg` (no JavaScript).

pub mod proxy;
pub mod status;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};

use crate::mjpeg::error::ApiError;
use crate::mjpeg::state::AppState;

/// Where the page's files are served, beside hls.js
/// ([`crate::hls::server::HLS_JS_PATH`]): `_` cannot start a bus name, so
/// no bus path collides.
pub const ASSETS: &str = "/_";
/// The console document's path.
pub const API_PATH: &str = "/api/v1/console";
/// The microphones' levels' path.
pub const LEVELS_PATH: &str = "/api/v1/console/levels";
/// At most this many cameras in one levels request.
const LEVELS_MAX: usize = 64;

const PAGE: &str = include_str!("console.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");
/// The time-code reader (docs/timecode.md), also loaded by the browser
/// tests and the WebRTC benchmark: one reader of the code in the browser.
pub const TIMECODE_JS: &str = include_str!("timecode.js");

/// The console's routes, merged into `framebus-mjpeg`'s router (behind
/// its auth layer).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route(&format!("{ASSETS}/console.js"), get(script))
        .route(&format!("{ASSETS}/console.css"), get(style))
        .route(&format!("{ASSETS}/timecode.js"), get(timecode))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route(API_PATH, get(document))
        .route(LEVELS_PATH, get(levels))
        .route("/api/v1/recordings", any(proxy::forward))
        .route("/api/v1/recordings/{*rest}", any(proxy::forward))
        .route("/api/v1/recorder/{*rest}", any(proxy::forward))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Small, and they change with the binary: revalidate each time.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

async fn timecode() -> Response {
    asset(TIMECODE_JS, "text/javascript; charset=utf-8")
}

/// `GET /api/v1/console`.
async fn document(State(state): State<AppState>) -> Response {
    let doc = tokio::task::spawn_blocking(move || {
        let recorder = proxy::available(&state);
        status::gather(&state, recorder)
    })
    .await;
    match doc {
        Ok(d) => {
            let mut r = Json(d).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The query of [`LEVELS_PATH`].
#[derive(Debug, serde::Deserialize)]
struct LevelsQuery {
    /// Camera buses, comma-separated; every served camera without it.
    cams: Option<String>,
}

/// `GET /api/v1/console/levels[?cams=cam0,cam1]`: the level of each
/// camera's microphone now (cameras without one are left out).
async fn levels(
    State(state): State<AppState>,
    Query(q): Query<LevelsQuery>,
) -> Result<Response, ApiError> {
    let named: Option<Vec<String>> = q.cams.as_deref().map(|c| {
        c.split(',')
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    });
    if let Some(names) = &named {
        if names.len() > LEVELS_MAX {
            return Err(ApiError::BadRequest(format!(
                "at most {LEVELS_MAX} cameras in `cams`"
            )));
        }
        if let Some((n, e)) = names
            .iter()
            .find_map(|n| framebus::validate_name(n).err().map(|e| (n, e)))
        {
            return Err(ApiError::BadRequest(format!("cams: {n:?}: {e}")));
        }
    }
    let levels = tokio::task::spawn_blocking(move || {
        let cameras =
            named.unwrap_or_else(|| state.streams.buses().into_iter().map(|b| b.name).collect());
        status::levels(&state, &cameras)
    })
    .await;
    Ok(match levels {
        Ok(l) => {
            let mut r = Json(l).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    })
}
