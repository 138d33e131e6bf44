//! Optional authentication: HTTP Basic (`--auth user:pass`) and/or a bearer
//! token (`--token`). Secrets are compared in constant time
//! ([`crate::common::auth`], which also loads the credentials). `/healthz`
//! stays open for health checkers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::common::auth::{self as common_auth, Credentials};
use framebus::contract::health;

/// Accepted credentials.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Basic credentials.
    pub basic: Option<Credentials>,
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
            if let Some(want) = &self.basic {
                return want.matches_basic(value);
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if let Some(want) = &self.token {
                return common_auth::eq(value.as_bytes(), want.as_bytes());
            }
        }
        false
    }
}

/// axum middleware enforcing [`Auth`].
pub async fn require(State(auth): State<Arc<Auth>>, req: Request<Body>, next: Next) -> Response {
    // A CORS preflight carries no credentials (Fetch standard); it is
    // answered by the CORS layer or gets 405, and reveals nothing.
    if !auth.enabled()
        || req.uri().path() == health::HTTP_PATH
        || req.method() == axum::http::Method::OPTIONS
    {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth.check(header) {
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
            basic: Some("u:p".parse().unwrap()),
            token: Some("t0k".into()),
        };
        assert!(a.check(Some("Basic dTpw")));
        assert!(!a.check(Some("Basic dTpx")));
        assert!(a.check(Some("Bearer t0k")));
        assert!(!a.check(Some("Bearer t0")));
        assert!(!a.check(None));
    }
}
