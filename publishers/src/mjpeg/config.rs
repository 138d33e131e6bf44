//! Command line and stream profiles of `framebus-mjpeg`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;

use crate::common::auth::Credentials;

/// Default JPEG quality.
pub const DEFAULT_QUALITY: u8 = 80;

/// A stream profile: output size, frame rate and JPEG quality.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Name used in URLs (`/{bus}/{name}.mjpg`).
    pub name: String,
    /// Output size; `None` keeps the bus size.
    pub size: Option<(u32, u32)>,
    /// Output frame rate; `None` keeps the bus rate.
    pub fps: Option<f64>,
    /// JPEG quality 1..=100.
    pub quality: u8,
}

impl Profile {
    /// The built-in profiles: `medium` 1280x720@30, `low` 640x480@15, `native`.
    pub fn defaults() -> Vec<Profile> {
        vec![
            Profile {
                name: "medium".into(),
                size: Some((1280, 720)),
                fps: Some(30.0),
                quality: DEFAULT_QUALITY,
            },
            Profile {
                name: "low".into(),
                size: Some((640, 480)),
                fps: Some(15.0),
                quality: DEFAULT_QUALITY,
            },
            Profile {
                name: "native".into(),
                size: None,
                fps: None,
                quality: DEFAULT_QUALITY,
            },
        ]
    }

    /// Output size for a bus of `bus_w` x `bus_h`.
    pub fn size_for(&self, bus_w: u32, bus_h: u32) -> (u32, u32) {
        self.size.unwrap_or((bus_w, bus_h))
    }
}

/// A `--profile` value that does not parse.
#[derive(Debug, Clone, thiserror::Error)]
#[error("bad profile {text:?}: {why} (expected NAME=WxH@FPS:qQUALITY, e.g. small=320x240@10:q70, or NAME=native)")]
pub struct ProfileParseError {
    text: String,
    why: &'static str,
}

impl FromStr for Profile {
    type Err = ProfileParseError;

    fn from_str(text: &str) -> Result<Profile, ProfileParseError> {
        let err = |why| ProfileParseError {
            text: text.to_string(),
            why,
        };
        let (name, rest) = text.split_once('=').ok_or_else(|| err("missing '='"))?;
        if name.is_empty()
            || name == "snapshot"
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                "name must be letters, digits, '-' or '_' (and not \"snapshot\")",
            ));
        }
        let (rest, quality) = match rest.split_once(":q") {
            Some((r, q)) => {
                let q: u8 = q.parse().map_err(|_| err("quality is not a number"))?;
                if !(1..=100).contains(&q) {
                    return Err(err("quality must be 1..=100"));
                }
                (r, q)
            }
            None => (rest, DEFAULT_QUALITY),
        };
        let (size, fps) = match rest.split_once('@') {
            Some((s, f)) => {
                let f: f64 = f.parse().map_err(|_| err("fps is not a number"))?;
                if !(f > 0.0 && f <= 1000.0) {
                    return Err(err("fps must be in (0, 1000]"));
                }
                (s, Some(f))
            }
            None => (rest, None),
        };
        let size = if size == "native" || size.is_empty() {
            None
        } else {
            let (w, h) = size.split_once('x').ok_or_else(|| err("size is not WxH"))?;
            let w: u32 = w.parse().map_err(|_| err("width is not a number"))?;
            let h: u32 = h.parse().map_err(|_| err("height is not a number"))?;
            if !(2..=8192).contains(&w) || !(2..=8192).contains(&h) || (w | h) & 1 != 0 {
                return Err(err("width and height must be even and in 2..=8192"));
            }
            Some((w, h))
        };
        Ok(Profile {
            name: name.to_string(),
            size,
            fps,
            quality,
        })
    }
}

/// `--recorder-url`: where framebus-recorder's page is, for the index
/// page's header to link to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderUrl(axum::http::Uri);

/// A `--recorder-url` value that is not an absolute http(s) URL.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "bad --recorder-url {text:?}: {why} (expected an http(s) URL such as http://127.0.0.1:8090/)"
)]
pub struct RecorderUrlError {
    text: String,
    why: &'static str,
}

impl FromStr for RecorderUrl {
    type Err = RecorderUrlError;

    fn from_str(text: &str) -> Result<RecorderUrl, RecorderUrlError> {
        let err = |why| RecorderUrlError {
            text: text.to_string(),
            why,
        };
        let uri: axum::http::Uri = text.parse().map_err(|_| err("not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(err("the scheme must be http or https"));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(err("no host"));
        }
        Ok(RecorderUrl(uri))
    }
}

impl RecorderUrl {
    /// `host:port` the console's proxy connects to: a recorder listening
    /// everywhere is reached on loopback. None for an `https` URL or one
    /// with a path (the proxy speaks plain HTTP to the recorder's own
    /// paths: a TLS front or a path prefix is for the browser's link only).
    pub fn connect_address(&self) -> Option<String> {
        let u = &self.0;
        if u.scheme_str() != Some("http") || !matches!(u.path(), "" | "/") {
            return None;
        }
        let host = u.host().unwrap_or_default();
        let port = u.port_u16().unwrap_or(80);
        Some(crate::console::proxy::loopback_for_any(&format!(
            "{host}:{port}"
        )))
    }

    /// The link to write into the page, and whether the browser should
    /// put in the host it loaded the page from: a recorder listening on
    /// every address (`0.0.0.0`, `[::]`) is linked as loopback, which the
    /// page then replaces (a browser on another machine reaches the
    /// recorder at the host it reached this server at). User information
    /// in the URL is dropped.
    pub fn link(&self) -> (String, bool) {
        let u = &self.0;
        let host = u.host().unwrap_or_default();
        let (host, same_host) = match host {
            "0.0.0.0" => ("127.0.0.1", true),
            "[::]" | "[0:0:0:0:0:0:0:0]" => ("[::1]", true),
            h => (h, false),
        };
        let port = u.port_u16().map_or_else(String::new, |p| format!(":{p}"));
        let path = u.path_and_query().map_or("/", |p| p.as_str());
        let scheme = u.scheme_str().unwrap_or("http");
        (format!("{scheme}://{host}{port}{path}"), same_host)
    }
}

/// `framebus-mjpeg`: serve framebus buses as MJPEG over HTTP.
#[derive(Debug, Clone, Parser)]
#[command(name = "framebus-mjpeg", version, about)]
pub struct Args {
    /// Address to listen on (port 0: any free port; the first stdout line
    /// says which: `listening on http://ADDR/`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Bus to serve (repeatable). Live buses are also discovered unless
    /// `--no-discover`.
    #[arg(long = "bus", value_name = "NAME")]
    pub buses: Vec<String>,
    /// Serve only the `--bus` buses.
    #[arg(long)]
    pub no_discover: bool,
    /// Add or replace a profile: NAME=WxH@FPS:qQUALITY (size may be
    /// `native`; `@FPS` and `:qQ` are optional). Defaults: medium=1280x720@30,
    /// low=640x480@15, native=native.
    #[arg(long = "profile", value_name = "SPEC")]
    pub profiles: Vec<Profile>,
    /// Seconds an encoder keeps running after its last viewer leaves.
    #[arg(long, default_value_t = 10.0)]
    pub grace: f64,
    /// Viewers per stream; more get 503 with Retry-After.
    #[arg(long, default_value_t = 32)]
    pub max_viewers: usize,
    /// Require HTTP Basic credentials `USER:PASS` (everything but /healthz).
    /// Visible to every local user in the process list: prefer
    /// `--auth-file` or $FRAMEBUS_MJPEG_AUTH.
    #[arg(long, value_name = "USER:PASS", conflicts_with = "auth_file")]
    pub auth: Option<Credentials>,
    /// Read the Basic credentials `USER:PASS` from the first line of FILE.
    /// Without --auth and --auth-file, $FRAMEBUS_MJPEG_AUTH is used.
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Accept `Authorization: Bearer TOKEN` (alone or besides Basic).
    /// Without it, $FRAMEBUS_MJPEG_TOKEN is used.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Allowed CORS origin (repeatable; `*` for any).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// Shared-memory directory (default: $FRAMEBUS_SHM_DIR or /dev/shm).
    #[arg(long)]
    pub shm_dir: Option<PathBuf>,
    /// Seconds a client has to send a complete request head (request line
    /// and headers), for the first request and between requests on a
    /// kept-alive connection; slower clients are disconnected.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Open connections at most (viewers, API calls and idle ones
    /// together); beyond it new connections are accepted and closed at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// WebRTC (WHEP) on the same port; media on one UDP port.
    #[command(flatten)]
    pub webrtc: crate::webrtc::WebRtcArgs,
    /// HLS and Low-Latency HLS on the same port.
    #[command(flatten)]
    pub hls: crate::hls::HlsArgs,
    /// URL of framebus-recorder's page: the index page's header links to
    /// it ("recordings"). A host of 0.0.0.0 or [::] (a recorder listening
    /// on every address) is replaced in the browser by the host the index
    /// page was loaded from.
    #[arg(long, value_name = "URL")]
    pub recorder_url: Option<RecorderUrl>,
}

impl Args {
    /// Profiles after applying `--profile` over the defaults.
    pub fn profiles(&self) -> Vec<Profile> {
        let mut all = Profile::defaults();
        for p in &self.profiles {
            match all.iter_mut().find(|q| q.name == p.name) {
                Some(q) => *q = p.clone(),
                None => all.push(p.clone()),
            }
        }
        all
    }

    /// Grace time.
    pub fn grace(&self) -> Duration {
        Duration::from_secs_f64(self.grace.clamp(0.0, 86_400.0))
    }

    /// Header read timeout (at least 10 ms, at most a day; NaN: default).
    pub fn header_timeout(&self) -> Duration {
        let s = if self.header_timeout.is_nan() {
            10.0
        } else {
            self.header_timeout
        };
        Duration::from_secs_f64(s.clamp(0.01, 86_400.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_profiles() {
        let p: Profile = "small=320x240@10:q70".parse().unwrap();
        assert_eq!(p.size, Some((320, 240)));
        assert_eq!(p.fps, Some(10.0));
        assert_eq!(p.quality, 70);
        let p: Profile = "full=native".parse().unwrap();
        assert_eq!((p.size, p.fps, p.quality), (None, None, DEFAULT_QUALITY));
        let p: Profile = "n15=native@15".parse().unwrap();
        assert_eq!((p.size, p.fps), (None, Some(15.0)));
        for bad in [
            "x",
            "=1x1",
            "a=3x2",
            "a=10x10@0",
            "a=10x10:q0",
            "a/b=native",
            "snapshot=native",
        ] {
            assert!(bad.parse::<Profile>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_recorder_urls() {
        let link = |s: &str| s.parse::<RecorderUrl>().unwrap().link();
        assert_eq!(
            link("http://127.0.0.1:8090/"),
            ("http://127.0.0.1:8090/".into(), false)
        );
        assert_eq!(
            link("https://rec.example/ui?x=1"),
            ("https://rec.example/ui?x=1".into(), false)
        );
        assert_eq!(
            link("http://0.0.0.0:8090"),
            ("http://127.0.0.1:8090/".into(), true)
        );
        assert_eq!(
            link("http://[::]:8090/"),
            ("http://[::1]:8090/".into(), true)
        );
        assert_eq!(
            link("http://[::1]:8090/"),
            ("http://[::1]:8090/".into(), false)
        );
        for bad in ["", "/rec", "127.0.0.1:8090", "ftp://h/", "http://"] {
            assert!(bad.parse::<RecorderUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_proxy_connects_to_plain_http_recorders_only() {
        let addr = |s: &str| s.parse::<RecorderUrl>().unwrap().connect_address();
        assert_eq!(
            addr("http://0.0.0.0:8090/").as_deref(),
            Some("127.0.0.1:8090")
        );
        assert_eq!(addr("http://rec.lan").as_deref(), Some("rec.lan:80"));
        assert_eq!(addr("https://rec.example/"), None);
        assert_eq!(addr("http://rec.example/recorder/"), None);
    }
}
