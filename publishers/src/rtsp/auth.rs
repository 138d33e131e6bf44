//! Optional RTSP authentication: Digest (RFC 2617 with MD5, as RTSP
//! clients speak it: ffmpeg, GStreamer and live555 answer the RFC 2069
//! form without `qop`, which is accepted too). Only Digest is offered, and
//! only what is offered is accepted: Basic would put the password on the
//! wire in clear.
//!
//! * **Nonces are fresh and expire.** A nonce is `{issued}{salt}{mac}`:
//!   the issue time (seconds since the process's epoch, 8 hex digits), 8
//!   random hex digits (every challenge has its own nonce), and the first
//!   16 hex digits of `MD5(secret:issued:salt)` with a random per-process
//!   secret, so the server recognises its own nonces without storing them.
//!   A nonce older than `--nonce-lifetime` is refused on a new connection
//!   with `stale=TRUE` (clients retry with the new nonce without asking
//!   the user); a connection that authenticated with a nonce keeps using
//!   it for its session's lifetime (keep-alives of long sessions).
//! * **The digest is bound to the request.** The `uri` parameter must name
//!   the request's own path, so an `Authorization` header captured for
//!   one stream is worth nothing for another.
//!
//! The credentials, their loading and the constant-time comparison are
//! [`crate::common::auth`]'s.

use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use rtsp_types::{headers, Request};

use super::stream::random_u64;
use crate::common::auth::{self, Credentials};

/// The server's credentials and its nonce secret.
#[derive(Debug)]
pub struct Auth {
    creds: Option<Credentials>,
    realm: String,
    secret: String,
    epoch: Instant,
    lifetime: Duration,
}

/// What a connection remembers between its requests.
#[derive(Debug, Default)]
pub struct ConnAuth {
    /// The nonce this connection authenticated with (accepted on it after
    /// it expires).
    nonce: Option<String>,
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `key="value"` or `key=value` parameters of a Digest header.
fn digest_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (val, after) = if let Some(q) = v.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match v.find(',') {
                Some(end) => (&v[..end], &v[end..]),
                None => (v, ""),
            }
        };
        out.push((k, val.to_string()));
        rest = after.trim_start_matches([',', ' ']);
    }
    out
}

/// The path of a request URI or of a digest `uri` parameter (absolute
/// `rtsp://host/path` or just `/path`), without trailing slashes.
fn uri_path(uri: &str) -> &str {
    let path = match uri.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => uri,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    path.trim_end_matches('/')
}

impl Auth {
    /// Authentication with `creds`, or none; nonces are accepted on new
    /// connections for `lifetime` after they were issued.
    pub fn new(creds: Option<Credentials>, lifetime: Duration) -> Auth {
        Auth {
            creds,
            realm: "framebus".to_string(),
            secret: format!("{:016x}{:016x}", random_u64(), random_u64()),
            epoch: Instant::now(),
            lifetime,
        }
    }

    fn mac(&self, issued_and_salt: &str) -> String {
        md5_hex(&format!("{}:{issued_and_salt}", self.secret))[..16].to_string()
    }

    /// A nonce issued now.
    fn nonce(&self) -> String {
        let head = format!(
            "{:08x}{:08x}",
            self.epoch.elapsed().as_secs() as u32,
            random_u64() as u32
        );
        let mac = self.mac(&head);
        format!("{head}{mac}")
    }

    /// `Some(age)` if `nonce` is one of ours.
    fn nonce_age(&self, nonce: &str) -> Option<Duration> {
        if nonce.len() != 32 || !nonce.is_ascii() {
            return None;
        }
        let (head, mac) = nonce.split_at(16);
        let issued = &head[..8];
        if !auth::eq(self.mac(head).as_bytes(), mac.as_bytes()) {
            return None;
        }
        let issued = u64::from(u32::from_str_radix(issued, 16).ok()?);
        Some(
            self.epoch
                .elapsed()
                .saturating_sub(Duration::from_secs(issued)),
        )
    }

    fn challenge(&self, stale: bool) -> String {
        format!(
            "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5{}",
            self.realm,
            self.nonce(),
            if stale { ", stale=TRUE" } else { "" }
        )
    }

    /// `Ok` when the request may proceed; otherwise the `WWW-Authenticate`
    /// challenge to send with 401.
    pub fn check(&self, req: &Request<Vec<u8>>, conn: &mut ConnAuth) -> Result<(), String> {
        let Some(c) = &self.creds else { return Ok(()) };
        let Some(d) = req
            .header(&headers::AUTHORIZATION)
            .and_then(|h| h.as_str().trim().strip_prefix("Digest "))
        else {
            return Err(self.challenge(false));
        };
        let p = digest_params(d);
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let Some(nonce) = get("nonce") else {
            return Err(self.challenge(false));
        };
        let Some(age) = self.nonce_age(nonce) else {
            return Err(self.challenge(false));
        };
        if !self.digest_matches(c, req, &get) {
            return Err(self.challenge(false));
        }
        // Right credentials. A stale nonce still passes on the connection
        // that authenticated with it while it was fresh.
        let known = conn.nonce.as_deref() == Some(nonce);
        if age > self.lifetime && !known {
            return Err(self.challenge(true));
        }
        conn.nonce = Some(nonce.to_string());
        Ok(())
    }

    fn digest_matches<'a>(
        &self,
        c: &Credentials,
        req: &Request<Vec<u8>>,
        get: &impl Fn(&str) -> Option<&'a str>,
    ) -> bool {
        let (Some(user), Some(realm), Some(nonce), Some(uri), Some(response)) = (
            get("username"),
            get("realm"),
            get("nonce"),
            get("uri"),
            get("response"),
        ) else {
            return false;
        };
        if user != c.user || realm != self.realm {
            return false;
        }
        // The digest covers `uri`: it must be this request's.
        let Some(request_uri) = req.request_uri() else {
            return false;
        };
        if uri_path(uri) != uri_path(request_uri.as_str()) {
            return false;
        }
        let method = match req.method() {
            rtsp_types::Method::Extension(m) => m.clone(),
            m => <&str>::from(m).to_string(),
        };
        let ha1 = md5_hex(&format!("{}:{}:{}", c.user, self.realm, c.password));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let expect = match (get("qop"), get("nc"), get("cnonce")) {
            (Some(qop), Some(nc), Some(cnonce)) => {
                md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
            }
            _ => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
        };
        auth::eq(expect.as_bytes(), response.to_ascii_lowercase().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, authorization: Option<String>) -> Request<Vec<u8>> {
        let mut b = Request::builder(rtsp_types::Method::Describe, rtsp_types::Version::V1_0)
            .request_uri(rtsp_types::Url::parse(uri).unwrap())
            .header(headers::CSEQ, "1");
        if let Some(a) = authorization {
            b = b.header(headers::AUTHORIZATION, a);
        }
        b.build(Vec::new())
    }

    fn answer(auth: &Auth, challenge: &str, uri: &str, password: &str) -> String {
        let p = digest_params(challenge.trim_start_matches("Digest "));
        let nonce = &p.iter().find(|(k, _)| k == "nonce").unwrap().1;
        let ha1 = md5_hex(&format!("u:{}:{password}", auth.realm));
        let ha2 = md5_hex(&format!("DESCRIBE:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        format!(
            "Digest username=\"u\", realm=\"{}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\"",
            auth.realm
        )
    }

    #[test]
    fn digest_is_bound_to_nonce_age_uri_and_connection() {
        let creds: Credentials = "u:pw".parse().unwrap();
        let auth = Auth::new(Some(creds), Duration::from_secs(60));
        let a = "rtsp://h/cam0/high";
        let b = "rtsp://h/cam1/high";
        let mut conn = ConnAuth::default();
        let challenge = auth.check(&request(a, None), &mut conn).unwrap_err();
        assert!(!challenge.contains("stale"), "{challenge}");
        let good = answer(&auth, &challenge, a, "pw");
        assert_eq!(
            auth.check(&request(a, Some(good.clone())), &mut conn),
            Ok(())
        );
        // The track URL of the same stream is another path: its own uri.
        let track = format!("{a}/trackID=0");
        let t = answer(&auth, &challenge, &track, "pw");
        assert_eq!(auth.check(&request(&track, Some(t)), &mut conn), Ok(()));
        // Replayed for another stream, on a new connection: refused.
        let mut other = ConnAuth::default();
        assert!(auth.check(&request(b, Some(good)), &mut other).is_err());
        // Wrong password, Basic, a forged nonce: refused.
        let wrong = answer(&auth, &challenge, a, "nope");
        assert!(auth.check(&request(a, Some(wrong)), &mut other).is_err());
        assert!(auth
            .check(&request(a, Some("Basic dTpwdw==".into())), &mut other)
            .is_err());
        let forged = challenge.replace("nonce=\"0", "nonce=\"1");
        let f = answer(&auth, &forged, a, "pw");
        assert!(auth.check(&request(a, Some(f)), &mut other).is_err());
        // Two nonces from different processes' secrets do not mix.
        let elsewhere = Auth::new(Some("u:pw".parse().unwrap()), Duration::from_secs(60));
        let foreign = answer(&elsewhere, &elsewhere.challenge(false), a, "pw");
        assert!(auth.check(&request(a, Some(foreign)), &mut other).is_err());
    }

    #[test]
    fn expired_nonces_are_stale_except_on_their_connection() {
        let auth = Auth::new(Some("u:pw".parse().unwrap()), Duration::ZERO);
        let a = "rtsp://h/cam0/high";
        let mut conn = ConnAuth::default();
        let challenge = auth.challenge(false);
        let good = answer(&auth, &challenge, a, "pw");
        // A nonce issued at second 0 is 0 s old for a second: in the
        // lifetime of zero only while the clock has not moved on; the
        // connection that used it keeps it anyway.
        conn.nonce = Some(
            digest_params(challenge.trim_start_matches("Digest "))
                .into_iter()
                .find(|(k, _)| k == "nonce")
                .unwrap()
                .1,
        );
        assert_eq!(
            auth.check(&request(a, Some(good.clone())), &mut conn),
            Ok(())
        );
        std::thread::sleep(Duration::from_millis(1100));
        let err = auth
            .check(&request(a, Some(good.clone())), &mut ConnAuth::default())
            .unwrap_err();
        assert!(err.contains("stale=TRUE"), "{err}");
        assert_eq!(auth.check(&request(a, Some(good)), &mut conn), Ok(()));
    }

    #[test]
    fn uri_paths_compare_absolute_and_relative() {
        assert_eq!(uri_path("rtsp://h:1/cam0/high/"), "/cam0/high");
        assert_eq!(uri_path("/cam0/high"), "/cam0/high");
        assert_eq!(uri_path("rtsp://h"), "");
    }

    #[test]
    fn digest_params_parse_quoted_and_bare() {
        let p = digest_params(r#"username="u", realm="r, x", nc=00000001, response="abc""#);
        assert_eq!(
            p,
            [
                ("username".into(), "u".into()),
                ("realm".into(), "r, x".into()),
                ("nc".into(), "00000001".into()),
                ("response".into(), "abc".into())
            ]
        );
    }
}
