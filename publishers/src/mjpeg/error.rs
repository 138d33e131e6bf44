//! The one error type of the HTTP API: every handler failure becomes a JSON
//! body `{"error": "...", "status": N}` with the right status code, and
//! never leaks internals.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such bus.
    #[error("no bus named {0:?}")]
    UnknownBus(String),
    /// No such profile.
    #[error("no profile named {profile:?} (profiles: {known})")]
    UnknownProfile {
        /// Asked for.
        profile: String,
        /// Comma-separated known names.
        known: String,
    },
    /// No such page.
    #[error("not found: {0}")]
    NotFound(String),
    /// A query or path value is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The stream has its maximum number of viewers.
    #[error("stream {bus}/{profile} already has its maximum of {max} viewers; retry later")]
    Full {
        /// Bus.
        bus: String,
        /// Profile.
        profile: String,
        /// Limit.
        max: usize,
    },
    /// No frame arrived in time (snapshot).
    #[error("no frame from bus {bus:?} within {secs} s ({state})")]
    NoFrame {
        /// Bus.
        bus: String,
        /// Seconds waited.
        secs: u64,
        /// Bus state.
        state: String,
    },
    /// Missing or wrong credentials.
    #[error("authentication required")]
    Unauthorized,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownBus(_) | ApiError::UnknownProfile { .. } | ApiError::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Full { .. } | ApiError::NoFrame { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.to_string(), "status": status.as_u16() });
        let mut resp = (status, Json(body)).into_response();
        let h = resp.headers_mut();
        match self {
            ApiError::Full { .. } | ApiError::NoFrame { .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::Unauthorized => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"framebus\", charset=\"UTF-8\""),
                );
            }
            _ => {}
        }
        resp
    }
}
