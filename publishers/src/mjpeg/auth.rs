//! Optional authentication: HTTP Basic (`--auth user:pass`) and/or a bearer
//! token (`--token`). Secrets are compared in constant time. `/healthz`
//! stays open for health checkers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::http::AppState;

/// Accepted credentials.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// `user:pass` for Basic.
    pub basic: Option<String>,
    /// Bearer token.
    pub token: Option<String>,
}

impl Auth {
    /// Whether anything is required.
    pub fn enabled(&self) -> bool {
        self.basic.is_some() || self.token.is_some()
    }

    /// Whether the `Authorization` header value passes.
    pub fn check(&self, header: Option<&str>) -> bool {
        let Some(h) = header else { return false };
        let (scheme, value) = h.split_once(' ').unwrap_or((h, ""));
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            if let (Some(want), Ok(got)) = (
                &self.basic,
                base64::engine::general_purpose::STANDARD.decode(value),
            ) {
                return bool::from(got.as_slice().ct_eq(want.as_bytes()));
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if let Some(want) = &self.token {
                return bool::from(value.as_bytes().ct_eq(want.as_bytes()));
            }
        }
        false
    }
}

/// axum middleware enforcing [`Auth`].
pub async fn require(State(app): State<Arc<AppState>>, req: Request<Body>, next: Next) -> Response {
    if !app.auth.enabled() || req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if app.auth.check(header) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        let a = Auth {
            basic: Some("u:p".into()),
            token: Some("t0k".into()),
        };
        assert!(a.check(Some("Basic dTpw")));
        assert!(!a.check(Some("Basic dTpx")));
        assert!(a.check(Some("Bearer t0k")));
        assert!(!a.check(Some("Bearer t0")));
        assert!(!a.check(None));
    }
}
