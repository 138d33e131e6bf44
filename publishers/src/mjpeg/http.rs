//! The HTTP server: routes, CORS, auth, graceful shutdown (the state is
//! [`super::state`]; `/healthz` and `/metrics` are [`crate::common::http`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method};
use axum::routing::{delete, get, post};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::auth::{self, Auth};
use crate::common::auth::{load_credentials, CredentialError};
use framebus::contract::{env, exit};

use super::config::Args;
use super::conn::{serve_connections, ConnLimits};
use super::error::ApiError;
use super::state::AppState;
use super::streams::{Streams, StreamsConfig};
use super::{api, index, media};
use crate::common::http as common_http;
use crate::feed::Feeds;
use crate::hls::{self, Hls};
use crate::webrtc::{player, whep, WebRtc};
use framebus::contract::streams::PATH as STREAMS_PATH;

/// Starting the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// A `--bus` name is invalid.
    #[error("--bus {name:?}: {source}")]
    BusName {
        /// The name.
        name: String,
        /// Why.
        source: framebus::NameError,
    },
    /// The Basic credentials cannot be loaded (`--auth-file`, the
    /// variable).
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// A `--cors-origin` is not a valid header value.
    #[error("--cors-origin {0:?} is not a valid origin")]
    CorsOrigin(String),
    /// Serving failed.
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    /// The WebRTC media port or a `--webrtc-*` flag.
    #[error("{0}")]
    WebRtc(String),
    /// An `--hls-*` flag (the hls.js file).
    #[error("{0}")]
    Hls(String),
}

impl ServeError {
    /// The process exit code: [`exit::USAGE`] for a bad argument or
    /// credential file, [`exit::FAILURE`] for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::BusName { .. }
            | ServeError::Credentials(_)
            | ServeError::CorsOrigin(_)
            | ServeError::Hls(_) => exit::USAGE,
            ServeError::Bind { .. } | ServeError::Serve(_) | ServeError::WebRtc(_) => exit::FAILURE,
        }
    }
}

/// Build the router for `state`.
pub fn router(state: AppState, cors: Option<CorsLayer>) -> Router {
    let mut r = Router::new();
    if let Some(w) = &state.webrtc {
        // WHEP and the player page (crate::webrtc); their own state.
        let fallback_profile = state
            .streams
            .config()
            .profiles
            .first()
            .map_or_else(|| "native".to_string(), |p| p.name.clone());
        let page = player::PageOptions {
            mjpeg_profile: fallback_profile,
            hls: state.hls.is_some(),
            hls_js: state.hls.as_ref().is_some_and(|h| h.has_hls_js()),
        };
        let webrtc = Router::new()
            .route(
                "/{bus}/{profile}/whep",
                post(whep::offer).options(whep::options),
            )
            .route(
                "/{bus}/{profile}/whep/{id}",
                delete(whep::delete).patch(whep::patch),
            )
            .route(
                "/{bus}/{profile}/",
                get(move |st, path, headers| player::handler(st, path, headers, page.clone())),
            )
            .layer(DefaultBodyLimit::max(whep::MAX_OFFER_BYTES))
            .with_state(Arc::clone(w));
        r = r.merge(webrtc);
    }
    if let Some(h) = &state.hls {
        // HLS (crate::hls); its own state. Without --cors-origin, players
        // on any origin may read it (as for any public media URL); the
        // router-wide layer covers it otherwise.
        let mut hls_routes = Router::new()
            .route("/{bus}/index.m3u8", get(hls::server::multivariant))
            .route(
                "/{bus}/{profile}/index.m3u8",
                get(hls::server::media_playlist),
            )
            .route(
                "/{bus}/{profile}/{epoch}/{file}",
                get(hls::server::media_file_handler),
            )
            .route(hls::server::HLS_JS_PATH, get(hls::server::hls_js))
            .with_state(Arc::clone(h));
        if cors.is_none() {
            hls_routes = hls_routes.layer(
                CorsLayer::new()
                    .allow_origin(AllowOrigin::any())
                    .allow_methods([Method::GET, Method::HEAD])
                    .allow_headers([axum::http::header::AUTHORIZATION])
                    .max_age(Duration::from_secs(600)),
            );
        }
        r = r.merge(hls_routes);
    }
    let mut r = r
        .merge(crate::console::routes())
        .route("/mjpeg", get(index::index))
        .merge(common_http::routes())
        .route(STREAMS_PATH, get(api::list))
        .route(
            &format!("{STREAMS_PATH}/{{bus}}/{{profile}}/{{action}}"),
            post(api::control),
        )
        .route("/{bus}/{file}", get(media::media))
        .fallback(|uri: axum::http::Uri| async move { ApiError::NotFound(uri.path().to_string()) })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .with_state(state);
    if let Some(c) = cors {
        r = r.layer(c);
    }
    r
}

fn cors_layer(origins: &[String]) -> Result<Option<CorsLayer>, ServeError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|o| HeaderValue::from_str(o).map_err(|_| ServeError::CorsOrigin(o.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([axum::http::header::AUTHORIZATION]),
    ))
}

/// After the shutdown signal, connections still open this long are dropped and
/// the server returns anyway (viewers' streams end at once; this bounds a
/// client stuck in the middle of sending a request).
const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(500);

/// How often discovered buses that went away are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The accepted credentials: Basic from `--auth`, else `--auth-file`, else
/// `$FRAMEBUS_MJPEG_AUTH` ([`load_credentials`]); bearer token from
/// `--token`, else `$FRAMEBUS_MJPEG_TOKEN`.
pub fn credentials(args: &Args) -> Result<Auth, ServeError> {
    let basic = load_credentials(
        args.auth.clone(),
        args.auth_file.as_deref(),
        env::MJPEG_AUTH,
    )?;
    Ok(Auth {
        basic: basic.map(|(c, _)| c),
        token: args
            .token
            .clone()
            .or_else(|| non_empty_env(env::MJPEG_TOKEN)),
    })
}

/// Run the server until `shutdown` completes (the binary passes
/// SIGTERM/SIGINT, [`crate::common::shutdown::StopSignals`]). Prints
/// `listening on http://ADDR/` as the first line on stdout once bound. On
/// shutdown, viewers' streams end (each chunked response is terminated
/// properly), open connections close, and it returns (within
/// [`SHUTDOWN_DEADLINE`] whatever the clients do).
pub async fn serve(
    args: Args,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    for b in &args.buses {
        framebus::validate_name(b).map_err(|source| ServeError::BusName {
            name: b.clone(),
            source,
        })?;
    }
    let auth = credentials(&args)?;
    if !auth.enabled() && !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            "listening beyond loopback without credentials: anyone who reaches this address \
             sees every camera and can start recordings (set --auth or [publishers.mjpeg] auth)"
        );
    }
    let cors = cors_layer(&args.cors_origins)?;
    let streams = Arc::new(Streams::new(StreamsConfig {
        profiles: args.profiles(),
        buses: args.buses.clone(),
        discover: !args.no_discover,
        shm_dir: args.shm_dir.clone(),
        grace: args.grace(),
        max_viewers: args.max_viewers,
    }));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: args.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    // One reader per encoded bus, shared by WebRTC and HLS.
    let feeds = Arc::new(Feeds::new(
        args.shm_dir.clone(),
        args.webrtc.webrtc_max_viewers,
    ));
    let webrtc = if args.webrtc.no_webrtc {
        None
    } else {
        Some(
            WebRtc::start(
                args.webrtc.clone(),
                args.listen,
                addr,
                args.shm_dir.clone(),
                Arc::clone(&feeds),
            )
            .await
            .map_err(ServeError::WebRtc)?,
        )
    };
    let mut whips = Vec::new();
    if let Some(w) = &webrtc {
        let token = args
            .webrtc
            .whip_token
            .clone()
            .or_else(|| std::env::var(crate::webrtc::whip::TOKEN_ENV).ok());
        for url in &args.webrtc.whip {
            let t =
                crate::webrtc::whip::WhipTarget::new(url, &args.webrtc.whip_from, token.clone())
                    .map_err(ServeError::WebRtc)?;
            whips.push(tokio::spawn(crate::webrtc::whip::run(Arc::clone(w), t)));
        }
    }
    let hls = if args.hls.no_hls {
        None
    } else {
        let private = auth.enabled();
        Some(
            Hls::new(args.hls.clone(), feeds, args.shm_dir.clone(), private)
                .map_err(ServeError::Hls)?,
        )
    };
    let state = AppState::new(
        streams,
        auth,
        webrtc.clone(),
        hls,
        args.recorder_url.clone(),
    );
    crate::common::cli::print_listening(&format!("http://{addr}/"));
    if let Some(w) = &webrtc {
        for a in w.media_addrs() {
            crate::common::cli::print_listening(&format!("udp://{a}"));
        }
    }
    tracing::info!(%addr, "framebus-mjpeg listening");

    let sweeper = state.streams.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            let s = sweeper.clone();
            let _ = tokio::task::spawn_blocking(move || s.sweep()).await;
        }
    });

    let streams = state.streams.clone();
    tokio::spawn(async move {
        shutdown.await;
        if let Some(w) = webrtc {
            w.close_all();
        }
        streams.shut_down();
    });
    let down = state.streams.shutdown_signal();
    let limits = ConnLimits {
        header_timeout: args.header_timeout(),
        max_connections: args.max_connections,
    };
    if !serve_connections(
        listener,
        router(state, cors),
        limits,
        down,
        SHUTDOWN_DEADLINE,
    )
    .await
    {
        tracing::warn!(
            "connections still open {SHUTDOWN_DEADLINE:?} after the signal: closing them"
        );
    }
    // Each WHIP session says goodbye (its DELETE), so the media server
    // frees the endpoint now rather than when its ICE times out.
    let goodbye = tokio::time::Instant::now() + crate::webrtc::whip::GOODBYE;
    for h in whips {
        if tokio::time::timeout_at(goodbye, h).await.is_err() {
            tracing::warn!(
                "a WHIP session did not end within {:?} of the signal",
                crate::webrtc::whip::GOODBYE
            );
            break;
        }
    }
    Ok(())
}
