//! `/metrics` in the Prometheus/OpenMetrics text format, written by the
//! `prometheus-client` crate. Each scrape builds a registry from the current
//! stream statistics (streams come and go with buses, so nothing is kept
//! registered between scrapes).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::http::AppState;
use super::streams::Streams;

type Labels = Vec<(String, String)>;
type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// Render all stream metrics.
pub fn render(streams: &Streams) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("framebus_mjpeg");
    let c = |reg: &mut Registry, name: &str, help: &str| {
        let f = Counters::default();
        reg.register(name, help, f.clone());
        f
    };
    let g = |reg: &mut Registry, name: &str, help: &str| {
        let f = Gauges::default();
        reg.register(name, help, f.clone());
        f
    };
    let frames_in = c(&mut reg, "frames_in", "Bus frames seen by the encoder");
    let frames_out = c(&mut reg, "frames_out", "Frames encoded");
    let bytes_out = c(&mut reg, "bytes_out", "JPEG bytes encoded");
    let dropped = c(
        &mut reg,
        "frames_dropped_slow",
        "Frames skipped by slow viewers",
    );
    let errors = c(&mut reg, "encode_errors", "Frames that failed to encode");
    let starts = c(&mut reg, "encoder_starts", "Encoder runs started");
    let running = g(&mut reg, "running", "1 while the encoder runs");
    let viewers = g(&mut reg, "viewers", "Connected viewers");
    let in_fps = g(&mut reg, "input_fps", "Bus frames per second (last 2 s)");
    let out_fps = g(
        &mut reg,
        "output_fps",
        "Encoded frames per second (last 2 s)",
    );
    let enc_ms = g(
        &mut reg,
        "encode_ms_p50",
        "Median encode time, ms (last 120 frames)",
    );
    for s in streams.existing() {
        let l: Labels = vec![
            ("bus".into(), s.bus.clone()),
            ("profile".into(), s.profile.name.clone()),
        ];
        let st = s.stats.snapshot();
        let d = s.demand.status();
        frames_in.get_or_create(&l).inc_by(st.frames_in);
        frames_out.get_or_create(&l).inc_by(st.frames_out);
        bytes_out.get_or_create(&l).inc_by(st.bytes_out);
        dropped.get_or_create(&l).inc_by(st.dropped_slow);
        errors.get_or_create(&l).inc_by(st.encode_errors);
        starts.get_or_create(&l).inc_by(d.starts);
        running
            .get_or_create(&l)
            .set(if d.running { 1.0 } else { 0.0 });
        viewers.get_or_create(&l).set(d.viewers as f64);
        in_fps.get_or_create(&l).set(st.input_fps);
        out_fps.get_or_create(&l).set(st.output_fps);
        enc_ms.get_or_create(&l).set(st.encode_ms_p50);
    }
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    match render(&app.streams) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            )],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics encoding failed\n",
        )
            .into_response(),
    }
}
