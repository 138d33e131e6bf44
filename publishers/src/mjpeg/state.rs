//! The state of `framebus-mjpeg`'s router, in its own module so that the
//! handler modules (`api`, `index`, `media`, `auth`) depend on it or on
//! nothing, and `http` (the router) depends on them: no import cycles.
//! Handlers take only the part they need (axum sub-state: `FromRef`).

use std::sync::Arc;

use axum::extract::FromRef;
use framebus::BusInfo;
use prometheus_client::registry::Registry;

use super::api::health_problems;
use super::audio::{self, Microphone};
use super::auth::Auth;
use super::config::RecorderUrl;
use super::metrics::{AudioCollector, MjpegCollector};
use super::streams::Streams;
use crate::common::http::{BusCollector, Observability};
use crate::console::proxy::Recorder;
use crate::hls::metrics::HlsCollector;
use crate::hls::Hls;
use crate::webrtc::metrics::WebRtcCollector;
use crate::webrtc::WebRtc;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The streams (`api`, `index`, `media`).
    pub streams: Arc<Streams>,
    /// Accepted credentials (`auth::require`).
    pub auth: Arc<Auth>,
    /// `/healthz` and `/metrics` ([`crate::common::http`]).
    pub observe: Observability,
    /// WebRTC (WHEP), unless `--no-webrtc`.
    pub webrtc: Option<Arc<WebRtc>>,
    /// HLS, unless `--no-hls`.
    pub hls: Option<Arc<Hls>>,
    /// framebus-recorder's page, which the index links to
    /// (`--recorder-url`).
    pub recorder: Option<Arc<RecorderUrl>>,
    /// Where the console forwards the recorder's API.
    pub recorder_proxy: Arc<Recorder>,
}

impl AppState {
    /// The state for `streams` behind `auth`: `/metrics` reports the
    /// streams, the served buses and their cameras' microphones, `/healthz` the configured buses and
    /// running streams ([`health_problems`]).
    pub fn new(
        streams: Arc<Streams>,
        auth: Auth,
        webrtc: Option<Arc<WebRtc>>,
        hls: Option<Arc<Hls>>,
        recorder: Option<RecorderUrl>,
    ) -> AppState {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(MjpegCollector::new(Arc::clone(&streams))));
        if let Some(w) = &webrtc {
            registry.register_collector(Box::new(WebRtcCollector::new(Arc::clone(w))));
        }
        if let Some(h) = &hls {
            registry.register_collector(Box::new(HlsCollector::new(Arc::clone(h))));
        }
        registry.register_collector(Box::new(AudioCollector::new(Arc::clone(&streams))));
        // The served buses, and beside each camera its microphone's buses
        // (`cam0.audio`, `cam0.opus`), which are not served as pictures.
        let served = Arc::clone(&streams);
        registry.register_collector(Box::new(BusCollector::new(move || {
            let cameras = served.buses();
            let mics = audio::of_cameras(&cameras, served.config().shm_dir.as_deref());
            let audio = mics.iter().flat_map(Microphone::buses).cloned();
            let pictures = cameras.into_iter().filter_map(|b| b.info);
            pictures.chain(audio).collect::<Vec<BusInfo>>()
        })));
        let checked = Arc::clone(&streams);
        AppState {
            streams,
            auth: Arc::new(auth),
            observe: Observability::new(registry, move || health_problems(&checked)),
            webrtc,
            hls,
            recorder_proxy: Arc::new(Recorder::new(
                recorder.as_ref().and_then(RecorderUrl::connect_address),
                std::env::var(framebus::contract::env::RECORDER_AUTH)
                    .ok()
                    .filter(|v| !v.is_empty()),
            )),
            recorder: recorder.map(Arc::new),
        }
    }
}

impl FromRef<AppState> for Arc<Streams> {
    fn from_ref(s: &AppState) -> Arc<Streams> {
        Arc::clone(&s.streams)
    }
}

impl FromRef<AppState> for Arc<Auth> {
    fn from_ref(s: &AppState) -> Arc<Auth> {
        Arc::clone(&s.auth)
    }
}

impl FromRef<AppState> for Observability {
    fn from_ref(s: &AppState) -> Observability {
        s.observe.clone()
    }
}
