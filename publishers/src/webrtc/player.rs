//! The player page: `GET /{bus}/{profile}/` plays `{bus}/{profile}` over
//! WHEP with plain browser APIs, and falls back to the bus's MJPEG stream
//! when WebRTC cannot connect (no UDP path, no H.264 decoder). With
//! `?mode=hls` it plays the camera's LL-HLS instead (natively, or with the
//! hls.js the server serves with `--hls-js`), and `?mode=mjpeg` MJPEG. It
//! sets `window.framebusPlayer` (`mode`: `connecting`, `webrtc`, `hls`,
//! `mjpeg`; `pc`, `hls`, `video`, `img`) for tests and for people.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};

use super::WebRtc;

const PAGE: &str = include_str!("player.html");
/// WebRTC not connected after this long: the page plays MJPEG.
const CONNECT_TIMEOUT_MS: u64 = 6000;

/// Escapes `s` for the inside of an HTML text node or attribute.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What the page offers besides WebRTC.
#[derive(Clone, Debug)]
pub struct PageOptions {
    /// The MJPEG profile of the fallback.
    pub mjpeg_profile: String,
    /// HLS is served (`?mode=hls` plays it).
    pub hls: bool,
    /// hls.js is served too (browsers without native HLS).
    pub hls_js: bool,
}

/// The page for `bus`/`profile`; `host` is the address the browser used
/// (for the RTSP URL).
pub fn page(w: &WebRtc, bus: &str, profile: &str, opts: &PageOptions, host: &str) -> String {
    let host_only = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let hls = format!("/{bus}/{profile}/index.m3u8");
    let cfg = serde_json::json!({
        "bus": bus,
        "profile": profile,
        "whep": format!("/{bus}/{profile}/whep"),
        "mjpeg": format!("/{bus}/{}.mjpg", opts.mjpeg_profile),
        "hls": opts.hls.then(|| hls.clone()),
        "hlsAll": opts.hls.then(|| format!("/{bus}/index.m3u8")),
        "hlsJs": opts.hls_js.then_some(crate::hls::server::HLS_JS_PATH),
        "iceServers": w.ice_servers(),
        "connectTimeoutMs": CONNECT_TIMEOUT_MS,
    });
    // JSON inside <script>: `</` must not close the element.
    let cfg = cfg.to_string().replace("</", "<\\/");
    PAGE.replace("{{CONFIG}}", &cfg)
        .replace("{{BUS}}", &html_escape(bus))
        .replace("{{PROFILE}}", &html_escape(profile))
        .replace(
            "{{RTSP}}",
            &html_escape(&format!("rtsp://{host_only}:8554/{bus}/{profile}")),
        )
        .replace(
            "{{HLS}}",
            &html_escape(&format!("http://{host}/{bus}/index.m3u8")),
        )
}

/// `GET /{bus}/{profile}/`.
pub async fn handler(
    State(w): State<Arc<WebRtc>>,
    Path((bus, profile)): Path<(String, String)>,
    headers: HeaderMap,
    opts: PageOptions,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    Html(page(&w, &bus, &profile, &opts, host)).into_response()
}
