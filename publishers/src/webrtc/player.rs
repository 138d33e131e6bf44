//! The player page: `GET /{bus}/{profile}/` plays `{bus}/{profile}` over
//! WHEP with plain browser APIs, and falls back to the bus's MJPEG stream
//! when WebRTC cannot connect (no UDP path, no H.264 decoder). It sets
//! `window.framebusPlayer` (`mode`: `connecting`, `webrtc`, `mjpeg`; `pc`,
//! `video`, `img`) for tests and for people.

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

/// The page for `bus`/`profile`; `mjpeg_profile` names the fallback
/// stream, `host` the address the browser used (for the RTSP URL).
pub fn page(w: &WebRtc, bus: &str, profile: &str, mjpeg_profile: &str, host: &str) -> String {
    let host_only = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let cfg = serde_json::json!({
        "bus": bus,
        "profile": profile,
        "whep": format!("/{bus}/{profile}/whep"),
        "mjpeg": format!("/{bus}/{mjpeg_profile}.mjpg"),
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
}

/// `GET /{bus}/{profile}/`.
pub async fn handler(
    State(w): State<Arc<WebRtc>>,
    Path((bus, profile)): Path<(String, String)>,
    headers: HeaderMap,
    mjpeg_profile: String,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    Html(page(&w, &bus, &profile, &mjpeg_profile, host)).into_response()
}
