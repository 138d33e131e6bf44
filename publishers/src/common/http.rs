//! The HTTP health and metrics stack both publishers serve: `GET /healthz`
//! (`framebus::contract::health::HTTP_PATH`, probed by the supervisor) and
//! `GET /metrics` (a `prometheus_client` registry, OpenMetrics text), on
//! `framebus-mjpeg`'s server and on `framebus-rtsp --http-listen`.
//!
//! [`routes`] is a `Router<S>` for any state `S` that yields an
//! [`Observability`] (axum's `FromRef` sub-state), so each publisher merges
//! it into its own router without this module knowing its state type.
//! [`BusCollector`] writes the per-bus capture series (`framebus_bus_*`,
//! `docs/metrics.md`) for whatever buses the publisher serves.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use framebus::contract::health;
use framebus::BusInfo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The metrics path.
pub const METRICS_PATH: &str = "/metrics";

/// What `/healthz` reports: the reasons the publisher cannot serve (empty:
/// healthy). Called on a blocking thread (it may read bus headers).
pub type HealthFn = dyn Fn() -> Vec<String> + Send + Sync;

/// What [`routes`] needs from the publisher's state.
#[derive(Clone)]
pub struct Observability {
    registry: Arc<Registry>,
    health: Arc<HealthFn>,
}

impl std::fmt::Debug for Observability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observability").finish_non_exhaustive()
    }
}

impl Observability {
    /// `/metrics` encodes `registry` (its collectors run on each scrape);
    /// `/healthz` calls `health`.
    pub fn new(
        registry: Registry,
        health: impl Fn() -> Vec<String> + Send + Sync + 'static,
    ) -> Observability {
        Observability {
            registry: Arc::new(registry),
            health: Arc::new(health),
        }
    }

    /// The metrics text (OpenMetrics).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `GET /healthz` and `GET /metrics` for a router whose state yields an
/// [`Observability`]. Neither path is protected here: the publisher's auth
/// layer lets `/healthz` through and guards the rest.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Observability: FromRef<S>,
{
    Router::new()
        .route(health::HTTP_PATH, get(healthz))
        .route(METRICS_PATH, get(metrics))
}

/// 200 `ok`, or 503 `unhealthy` with one reason a line.
async fn healthz(State(o): State<Observability>) -> Response {
    let problems = tokio::task::spawn_blocking(move || (o.health)())
        .await
        .unwrap_or_else(|e| vec![format!("health check failed: {e}")]);
    if problems.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy\n{}\n", problems.join("\n")),
        )
            .into_response()
    }
}

async fn metrics(State(o): State<Observability>) -> Response {
    // Collectors read bus headers: keep them off the async workers.
    match tokio::task::spawn_blocking(move || o.encode()).await {
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

/// Writes one metric family: a descriptor and one sample per item (nothing
/// when there are no items). Counters get the `_total` suffix.
pub fn family<T, L: EncodeLabelSet, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    items: &[T],
    labels: impl Fn(&T) -> L,
    value: impl Fn(&T) -> M,
) -> Result<(), std::fmt::Error> {
    if items.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for it in items {
        let l = labels(it);
        value(it).encode(m.encode_family(&l)?)?;
    }
    Ok(())
}

/// A series definition: name (after its prefix), help, whether it is a
/// counter (else a gauge), and the value of one item.
pub type Def<T> = (&'static str, &'static str, bool, fn(&T) -> u64);
/// A counter (the third field of a [`Def`]).
pub const COUNTER: bool = true;
/// A gauge.
pub const GAUGE: bool = false;

/// The family `{prefix}{name}`: one series per item, a counter or a gauge
/// of the definition's value.
pub fn series<T, L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    prefix: &str,
    (name, help, counter, value): Def<T>,
    items: &[T],
    labels: impl Fn(&T) -> L,
) -> Result<(), std::fmt::Error> {
    let name = format!("{prefix}{name}");
    if counter {
        family(enc, &name, help, MetricType::Counter, items, labels, |t| {
            ConstCounter::new(value(t))
        })
    } else {
        family(enc, &name, help, MetricType::Gauge, items, labels, |t| {
            ConstGauge::new(value(t) as i64)
        })
    }
}

/// The buses a [`BusCollector`] reports (called on each scrape).
pub type BusesFn = dyn Fn() -> Vec<BusInfo> + Send + Sync;

/// `framebus_bus_*{bus}`: the capture series of `framebus status
/// --prometheus`, read from the bus headers at each scrape, so one scrape
/// of a publisher covers capture too.
pub struct BusCollector {
    buses: Box<BusesFn>,
}

impl std::fmt::Debug for BusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusCollector").finish_non_exhaustive()
    }
}

impl BusCollector {
    /// Reports the buses `buses` returns.
    pub fn new(buses: impl Fn() -> Vec<BusInfo> + Send + Sync + 'static) -> BusCollector {
        BusCollector {
            buses: Box::new(buses),
        }
    }
}

/// Name, help and value of a per-bus counter.
type BusCounter = (&'static str, &'static str, fn(&BusInfo) -> u64);
/// Name, help and value of a per-bus gauge.
type BusGauge = (&'static str, &'static str, fn(&BusInfo) -> f64);

impl Collector for BusCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let buses = (self.buses)();
        let labels = |b: &BusInfo| [("bus", b.name.clone())];
        let gauges: [BusGauge; 4] = [
            (
                "up",
                "1 while the bus is live and its source running",
                |b| {
                    f64::from(u8::from(
                        b.state == "live" && b.producer_alive && b.source_state == "running",
                    ))
                },
            ),
            (
                "fps",
                "Frames published per second over the last second (capture rate)",
                |b| b.measured_fps,
            ),
            ("nominal_fps", "The bus's nominal frame rate", |b| b.fps),
            ("readers", "Readers attached to the bus", |b| {
                b.readers.len() as f64
            }),
        ];
        let counters: [BusCounter; 6] = [
            ("captured", "Frames the source delivered", |b| b.captured),
            ("published", "Frames published on the bus", |b| b.published),
            (
                "source_dropped",
                "Frames the source lost (driver sequence gaps, missed deadlines)",
                |b| b.source_dropped,
            ),
            (
                "dropped_all_held",
                "Frames dropped because readers held every slot",
                |b| b.dropped_all_held,
            ),
            ("source_restarts", "Source reopens (reconnections)", |b| {
                b.restarts
            }),
            (
                "watchdog_fires",
                "Source watchdog fires (no frame for the watchdog time)",
                |b| b.watchdog_fires,
            ),
        ];
        for (name, help, v) in gauges {
            family(
                &mut enc,
                &format!("framebus_bus_{name}"),
                help,
                MetricType::Gauge,
                &buses,
                labels,
                |b| ConstGauge::new(v(b)),
            )?;
        }
        for (name, help, v) in counters {
            family(
                &mut enc,
                &format!("framebus_bus_{name}"),
                help,
                MetricType::Counter,
                &buses,
                labels,
                |b| ConstCounter::new(v(b)),
            )?;
        }
        // The encoder's load adaptation, for encoded buses only.
        let encoded: Vec<BusInfo> = buses.into_iter().filter(|b| b.format == "h264").collect();
        family(
            &mut enc,
            "framebus_bus_encoder_step",
            "Encoded buses: the encoder's load-adaptation step (0 = the profile as configured)",
            MetricType::Gauge,
            &encoded,
            labels,
            |b| ConstGauge::new(f64::from(b.encoder_step)),
        )?;
        family(
            &mut enc,
            "framebus_bus_encoder_step_changes",
            "Encoded buses: load-adaptation step changes",
            MetricType::Counter,
            &encoded,
            labels,
            |b| ConstCounter::new(b.encoder_steps),
        )?;
        family(
            &mut enc,
            "framebus_bus_encoder_fallback",
            "Encoded buses: 1 when --encoder auto fell back to libx264 (no hardware encoder opened)",
            MetricType::Gauge,
            &encoded,
            labels,
            |b| {
                ConstGauge::new(f64::from(u8::from(
                    framebus::contract::encoder::fell_back(&b.source),
                )))
            },
        )?;
        Ok(())
    }
}
