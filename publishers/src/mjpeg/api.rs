//! JSON API: `/api/v1/streams`, start/stop, and the `/healthz` verdict
//! ([`health_problems`], served by [`crate::common::http`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use framebus::contract::streams::{StreamState, StreamStatus, Streams as StreamsDoc};

use super::error::ApiError;
use super::state::AppState;
use super::streams::{Stream, Streams};
use crate::common::follow::BusState;

/// Status of `s` for `/api/v1/streams` ([`framebus::contract::streams`],
/// which `framebus status` reads); `info` is the bus's header if the
/// segment exists.
pub fn stream_status(s: &Stream, info: Option<&framebus::BusInfo>) -> StreamStatus {
    let bus = info.map(|i| (i.width, i.height, i.fps));
    let bus_state = match (s.health.state(), info) {
        (BusState::Idle, Some(i)) if i.producer_alive => "live".to_string(),
        (BusState::Idle, Some(_)) => "producer gone".to_string(),
        (BusState::Idle, None) => "no such bus".to_string(),
        (st, _) => st.describe(),
    };
    let d = s.demand.status();
    let st = s.stats.snapshot();
    let (bw, bh, bfps) = bus.unwrap_or((0, 0, 0.0));
    let (width, height) = s.profile.size_for(bw, bh);
    StreamStatus {
        bus: s.bus.clone(),
        profile: s.profile.name.clone(),
        state: if d.running {
            StreamState::Running
        } else {
            StreamState::Idle
        },
        bus_state,
        width,
        height,
        fps: s
            .profile
            .fps
            .map_or(bfps, |f| if bfps > 0.0 { f.min(bfps) } else { f }),
        quality: s.profile.quality,
        viewers: d.viewers,
        max_viewers: d.max_viewers,
        input_fps: round2(st.input_fps),
        output_fps: round2(st.output_fps),
        encode_ms_p50: round2(st.encode_ms_p50),
        frames_dropped_slow: st.dropped_slow,
        frames_out: st.frames_out,
        uptime_s: d.uptime.map(|u| round2(u.as_secs_f64())),
        pinned: d.pinned,
        url: format!("/{}/{}.mjpg", s.bus, s.profile.name),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Status of every (bus, profile) of every served bus.
pub fn all_status(streams: &Streams) -> Vec<StreamStatus> {
    let mut out = Vec::new();
    for bus in streams.buses() {
        for p in &streams.config().profiles {
            if let Ok(s) = streams.get(&bus.name, &p.name) {
                out.push(stream_status(&s, bus.info.as_ref()));
            }
        }
    }
    out
}

/// `GET /api/v1/streams`: the MJPEG streams, the WebRTC sessions and the
/// HLS muxers.
pub async fn list(State(state): State<AppState>) -> Json<StreamsDoc> {
    let streams = Arc::clone(&state.streams);
    let list = tokio::task::spawn_blocking(move || all_status(&streams))
        .await
        .unwrap_or_default();
    let webrtc = state
        .webrtc
        .as_ref()
        .map(|w| w.session_status())
        .unwrap_or_default();
    let hls = state.hls.as_ref().map(|h| h.status()).unwrap_or_default();
    Json(StreamsDoc {
        streams: list,
        webrtc,
        hls,
    })
}

/// `POST /api/v1/streams/{bus}/{profile}/{action}` with action `start` or `stop`.
pub async fn control(
    State(streams): State<Arc<Streams>>,
    Path((bus, profile, action)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let s = streams.get(&bus, &profile)?;
    match action.as_str() {
        "start" => {
            let o = s.demand.start();
            Ok(Json(serde_json::json!({
                "bus": bus, "profile": profile, "state": "running",
                "already_running": o.already_running,
                "uptime_s": round2(o.uptime.as_secs_f64()),
            }))
            .into_response())
        }
        "stop" => {
            let was = s.demand.stop();
            Ok(Json(serde_json::json!({
                "bus": bus, "profile": profile, "state": "idle", "was_running": was,
            }))
            .into_response())
        }
        other => Err(ApiError::NotFound(format!(
            "action {other:?} (use start or stop)"
        ))),
    }
}

/// Why `/healthz` answers 503 (empty: 200 `ok`): a configured bus without
/// a live producer; a running stream whose producer is gone. Reads bus
/// headers: call it from a blocking context.
pub fn health_problems(streams: &Streams) -> Vec<String> {
    let mut p = Vec::new();
    for b in &streams.config().buses {
        match framebus::stat(b, streams.config().shm_dir.as_deref()) {
            Ok(i) if i.producer_alive => {}
            Ok(_) => p.push(format!("bus {b}: producer gone")),
            Err(_) => p.push(format!("bus {b}: no such bus (waiting for a producer)")),
        }
    }
    for s in streams.existing() {
        if !s.demand.status().running {
            continue;
        }
        match s.health.state() {
            BusState::Live | BusState::Idle => {}
            st => {
                let line = format!("bus {}: {}", s.bus, st.describe());
                if !p.contains(&line) {
                    p.push(line);
                }
            }
        }
    }
    p
}
