//! Optional RTSP authentication (RFC 2326 §D, HTTP Basic and Digest per
//! RFC 2617 with MD5, `qop` not required since RTSP clients such as ffmpeg
//! and GStreamer answer the RFC 2069 form). The credentials, their loading
//! and the constant-time comparison are [`crate::common::auth`]'s.

use md5::{Digest as _, Md5};
use rtsp_types::{headers, Request};

use super::stream::random_u64;
use crate::common::auth::{self, Credentials};

/// The server's credentials and its digest nonce.
#[derive(Debug)]
pub struct Auth {
    creds: Option<Credentials>,
    realm: String,
    nonce: String,
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

impl Auth {
    /// Authentication with `creds`, or none.
    pub fn new(creds: Option<Credentials>) -> Auth {
        Auth {
            creds,
            realm: "framebus".to_string(),
            nonce: format!("{:016x}{:016x}", random_u64(), random_u64()),
        }
    }

    /// `Ok` when the request may proceed; otherwise the `WWW-Authenticate`
    /// challenge to send with 401.
    pub fn check(&self, req: &Request<Vec<u8>>) -> Result<(), String> {
        let Some(c) = &self.creds else { return Ok(()) };
        let challenge = format!(
            "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5",
            self.realm, self.nonce
        );
        let Some(h) = req.header(&headers::AUTHORIZATION) else {
            return Err(challenge);
        };
        let h = h.as_str().trim();
        let ok = if let Some(b) = h.strip_prefix("Basic ") {
            c.matches_basic(b)
        } else if let Some(d) = h.strip_prefix("Digest ") {
            self.check_digest(c, req, d)
        } else {
            false
        };
        if ok {
            Ok(())
        } else {
            Err(challenge)
        }
    }

    fn check_digest(&self, c: &Credentials, req: &Request<Vec<u8>>, d: &str) -> bool {
        let p = digest_params(d);
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let (Some(user), Some(realm), Some(nonce), Some(uri), Some(response)) = (
            get("username"),
            get("realm"),
            get("nonce"),
            get("uri"),
            get("response"),
        ) else {
            return false;
        };
        if user != c.user || realm != self.realm || nonce != self.nonce {
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
