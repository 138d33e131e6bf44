//! [`Resp`]: an HTTP response as a test sees it, whoever fetched it (the
//! raw HTTP/1.1 client of the publishers' tests, `curl` in
//! [`crate::recorder`]), and the checks of the servers' JSON errors; and
//! [`json_request`], the small JSON client of the peers' APIs (Janus, the
//! WHIP server).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// One HTTP/1.0 request with a JSON body (if any) to 127.0.0.1:`port`:
/// the status and the body, `None` when nothing answers (`bound` on each
/// step: connect, write, read).
pub fn json_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    bound: Duration,
) -> Option<(u16, Vec<u8>)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, bound).ok()?;
    s.set_read_timeout(Some(bound)).ok()?;
    s.set_write_timeout(Some(bound)).ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let at = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&resp[..at]);
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, resp[at + 4..].to_vec()))
}

/// An HTTP response.
#[derive(Clone)]
pub struct Resp {
    /// The status (0: no response at all).
    pub status: u16,
    /// The header lines of the (last) response, after its status line.
    pub head: String,
    /// The body (dechunked; empty when `curl` wrote it to a file, unless
    /// the status is an error).
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = String::from_utf8_lossy(&self.body);
        let cut: String = body.chars().take(600).collect();
        f.debug_struct("Resp")
            .field("status", &self.status)
            .field("head", &self.head)
            .field("body", &cut)
            .finish()
    }
}

impl Resp {
    /// Header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics otherwise.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The body as the recorder API's error `{"error": "..."}` (served as
    /// `application/json`); the message. Panics otherwise.
    pub fn error(&self) -> String {
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "an error is JSON: {self:?}"
        );
        let v = self.json();
        let e = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"error\" string: {self:?}"));
        assert!(!e.trim().is_empty(), "empty error: {self:?}");
        e.to_string()
    }

    /// The body as the HTTP publisher's error JSON `{error, status}`,
    /// checked against the status line; panics otherwise.
    pub fn error_json(&self) -> Value {
        let v: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not a JSON error ({e}): {self:?}"));
        assert_eq!(
            v["status"].as_u64(),
            Some(u64::from(self.status)),
            "JSON status differs from the status line: {self:?}"
        );
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "no error text: {self:?}"
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{self:?}"
        );
        v
    }
}
