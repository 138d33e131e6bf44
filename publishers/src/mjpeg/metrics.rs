//! `/metrics` in the Prometheus/OpenMetrics text format, written by the
//! `prometheus-client` crate. Each scrape builds a registry from the current
//! stream statistics (streams come and go with buses, so nothing is kept
//! registered between scrapes).
//!
//! Two families: `framebus_mjpeg_*{bus,profile}` per stream, and
//! `framebus_bus_*{bus}` per served bus, read from the bus header (the same
//! names and meanings as `framebus status --prometheus`), so one scrape of
//! the publisher covers capture too.

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
use framebus::BusInfo;

type Labels = Vec<(String, String)>;
type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// Render all stream and bus metrics. Reads bus headers: call it from a
/// blocking context.
pub fn render(streams: &Streams) -> Result<String, std::fmt::Error> {
    let mut root = Registry::default();
    render_buses(root.sub_registry_with_prefix("framebus_bus"), streams);
    let reg = root.sub_registry_with_prefix("framebus_mjpeg");
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
    let frames_in = c(reg, "frames_in", "Bus frames seen by the encoder");
    let frames_out = c(reg, "frames_out", "Frames encoded");
    let bytes_out = c(reg, "bytes_out", "JPEG bytes encoded (once per frame)");
    let bytes_sent = c(
        reg,
        "bytes_sent",
        "Bytes written to viewers' sockets (headers and parts, every viewer)",
    );
    let dropped = c(reg, "frames_dropped_slow", "Frames skipped by slow viewers");
    let errors = c(reg, "encode_errors", "Frames that failed to encode");
    let starts = c(reg, "encoder_starts", "Encoder runs started");
    let running = g(reg, "running", "1 while the encoder runs");
    let viewers = g(reg, "viewers", "Connected viewers");
    let in_fps = g(reg, "input_fps", "Bus frames per second (last 2 s)");
    let out_fps = g(reg, "output_fps", "Encoded frames per second (last 2 s)");
    let enc_ms = g(
        reg,
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
        bytes_sent.get_or_create(&l).inc_by(st.bytes_sent);
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
    encode(&mut out, &root)?;
    Ok(out)
}

/// `framebus_bus_*{bus}` for every served bus whose segment exists.
fn render_buses(reg: &mut Registry, streams: &Streams) {
    let infos: Vec<BusInfo> = streams.buses().into_iter().filter_map(|b| b.info).collect();
    let gauge = |reg: &mut Registry, name: &str, help: &str, v: &dyn Fn(&BusInfo) -> f64| {
        let f = Gauges::default();
        reg.register(name, help, f.clone());
        for i in &infos {
            f.get_or_create(&vec![("bus".into(), i.name.clone())])
                .set(v(i));
        }
    };
    let counter = |reg: &mut Registry, name: &str, help: &str, v: &dyn Fn(&BusInfo) -> u64| {
        let f = Counters::default();
        reg.register(name, help, f.clone());
        for i in &infos {
            f.get_or_create(&vec![("bus".into(), i.name.clone())])
                .inc_by(v(i));
        }
    };
    gauge(
        reg,
        "up",
        "1 while the bus is live and its source running",
        &|i| f64::from(u8::from(i.state == "live" && i.source_state == "running")),
    );
    gauge(
        reg,
        "fps",
        "Frames published per second over the last second (capture rate)",
        &|i| i.measured_fps,
    );
    gauge(reg, "nominal_fps", "The bus's nominal frame rate", &|i| {
        i.fps
    });
    counter(reg, "captured", "Frames the source delivered", &|i| {
        i.captured
    });
    counter(reg, "published", "Frames published on the bus", &|i| {
        i.published
    });
    counter(
        reg,
        "source_dropped",
        "Frames the source lost (driver sequence gaps, missed deadlines)",
        &|i| i.source_dropped,
    );
    counter(
        reg,
        "dropped_all_held",
        "Frames dropped because readers held every slot",
        &|i| i.dropped_all_held,
    );
    counter(
        reg,
        "source_restarts",
        "Source reopens (reconnections)",
        &|i| i.restarts,
    );
    counter(
        reg,
        "watchdog_fires",
        "Source watchdog fires (no frame for the watchdog time)",
        &|i| i.watchdog_fires,
    );
    gauge(reg, "readers", "Readers attached to the bus", &|i| {
        i.readers.len() as f64
    });
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let streams = app.streams.clone();
    match tokio::task::spawn_blocking(move || render(&streams)).await {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            )],
            text,
        )
            .into_response(),
        Ok(Err(_)) | Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics encoding failed\n",
        )
            .into_response(),
    }
}
