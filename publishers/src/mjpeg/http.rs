//! The HTTP server: routes, shared state, CORS, auth, graceful shutdown.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderValue, Method};
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::auth::{self, Auth};
use super::config::Args;
use super::error::ApiError;
use super::streams::{Streams, StreamsConfig};
use super::{api, index, media, metrics};

/// State shared by all handlers.
#[derive(Debug)]
pub struct AppState {
    /// The streams.
    pub streams: Arc<Streams>,
    /// Accepted credentials.
    pub auth: Auth,
}

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
    /// `--auth` is not `user:pass`.
    #[error("--auth must be USER:PASS")]
    AuthFormat,
    /// A `--cors-origin` is not a valid header value.
    #[error("--cors-origin {0:?} is not a valid origin")]
    CorsOrigin(String),
    /// Serving failed.
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// Build the router for `state`.
pub fn router(state: Arc<AppState>, cors: Option<CorsLayer>) -> Router {
    let mut r = Router::new()
        .route("/", get(index::index))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/streams", get(api::list))
        .route(
            "/api/v1/streams/{bus}/{profile}/{action}",
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

/// Run the server until SIGINT/SIGTERM. Prints `listening on http://ADDR/`
/// as the first line on stdout once bound.
pub async fn serve(args: Args) -> Result<(), ServeError> {
    for b in &args.buses {
        framebus::validate_name(b).map_err(|source| ServeError::BusName {
            name: b.clone(),
            source,
        })?;
    }
    if args.auth.as_ref().is_some_and(|a| !a.contains(':')) {
        return Err(ServeError::AuthFormat);
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
    let state = Arc::new(AppState {
        streams,
        auth: Auth {
            basic: args.auth.clone(),
            token: args.token.clone(),
        },
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: args.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}/");
        let _ = out.flush();
    }
    tracing::info!(%addr, "framebus-mjpeg listening");
    axum::serve(listener, router(state, cors))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(ServeError::Serve)
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
