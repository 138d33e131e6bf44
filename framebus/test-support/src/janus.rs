//! [`Janus`]: Debian's Janus WebRTC server (`/usr/bin/janus`, `apt-get
//! install janus`, 1.1.x) on loopback, with only its Streaming plugin and
//! its HTTP transport, and one `rtp` mountpoint ([`MOUNTPOINT`]) receiving
//! H.264 (payload type 96, `profile-level-id=42e01f;packetization-mode=1`)
//! on UDP ports the test chooses: a real SFU that a test feeds with RTP and
//! a browser watches (`browser::janus_play`, `publishers/tests/browser/
//! janus.mjs`).
//!
//! Each server lives in its own [`TempDir`]: its configuration (written
//! here; `/etc/janus` and its demo mountpoints are never read) and its log
//! (`janus.log`: stdout and stderr, debug level 4, timestamps). The HTTP
//! API listens on 127.0.0.1 at a port of its own
//! ([`crate::port::free_port`]), the mountpoint binds its RTP and RTCP
//! ports on 127.0.0.1. Janus runs in the foreground as a [`ChildGuard`]:
//! dropping the server kills it.
//!
//! ICE: Janus (full ICE, half trickle) gathers host candidates on the
//! interfaces that are up except loopback (libnice skips it); its
//! `ice_enforce_list` cannot add `lo`. The browser on the same host reaches
//! those addresses, so nothing is configured; on a host with only `lo` (a
//! network-less container) Janus has no candidate and WebRTC cannot
//! connect.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::json_request;
use crate::port::free_port;
use crate::{ChildGuard, TempDir};

/// Bound on each step of one request to Janus's HTTP API.
const HTTP_BOUND: Duration = Duration::from_secs(2);

/// Debian's Janus.
pub const JANUS: &str = "/usr/bin/janus";

/// Where Debian installs its plugins, transports, event handlers and
/// loggers (one folder each).
pub const LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu/janus";

/// The id of the one mountpoint.
pub const MOUNTPOINT: u64 = 1;

/// Its RTP payload type.
pub const PAYLOAD_TYPE: u8 = 96;

/// Its `videofmtp`: constrained baseline 3.1, packetization mode 1.
pub const FMTP: &str = "profile-level-id=42e01f;packetization-mode=1";

/// Watchdog on Janus answering its API with the mountpoint configured.
const READY_WATCHDOG: Duration = Duration::from_secs(20);

/// Attempts at a free HTTP port (another process may take the one we
/// picked before Janus binds it).
const ATTEMPTS: u32 = 5;

/// A running Janus; killed on drop.
pub struct Janus {
    api_port: u16,
    ws_port: u16,
    video_port: u16,
    video_rtcp_port: u16,
    janus: ChildGuard,
    dir: TempDir,
}

impl Janus {
    /// Starts Janus with mountpoint [`MOUNTPOINT`] receiving H.264 RTP on
    /// 127.0.0.1:`video_port` (RTCP on `video_rtcp_port`), and waits
    /// (watchdog: 20 s per attempt) until its API answers `GET /janus/info`
    /// and lists the mountpoint. Panics with the log when it does not.
    pub fn start(video_port: u16, video_rtcp_port: u16) -> Janus {
        assert!(
            Path::new(JANUS).exists(),
            "{JANUS} not found: `apt-get install janus` (`make deps`)"
        );
        let dir = TempDir::new("janus");
        let p = dir.path();
        for attempt in 1..=ATTEMPTS {
            let (api_port, ws_port) = (free_port(), free_port());
            write(
                p,
                "janus.jcfg",
                &janus_jcfg(
                    p,
                    "libjanus_streaming.so",
                    &["libjanus_http.so", "libjanus_websockets.so"],
                    "framebus-test",
                ),
            );
            write(p, "janus.transport.http.jcfg", &http_jcfg(api_port));
            write(
                p,
                "janus.transport.websockets.jcfg",
                &websockets_jcfg(ws_port),
            );
            write(
                p,
                "janus.plugin.streaming.jcfg",
                &streaming_jcfg(video_port, video_rtcp_port),
            );
            let log = std::fs::File::create(p.join("janus.log")).expect("janus.log");
            let log2 = log.try_clone().expect("janus.log");
            let mut cmd = Command::new(JANUS);
            cmd.arg("-F")
                .arg(p)
                .arg("-C")
                .arg(p.join("janus.jcfg"))
                .current_dir(p)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log2));
            let mut janus = ChildGuard::spawn(&mut cmd);
            let end = Instant::now() + READY_WATCHDOG;
            let ready = loop {
                if let Some(ids) = mountpoints(api_port) {
                    assert!(
                        ids.contains(&MOUNTPOINT),
                        "Janus lists mountpoints {ids:?}, not {MOUNTPOINT}; log: {}",
                        read_log(p)
                    );
                    break true;
                }
                if janus.try_exit().is_some() {
                    break false;
                }
                if Instant::now() > end {
                    janus.kill();
                    panic!(
                        "watchdog: Janus did not answer http://127.0.0.1:{api_port}/janus/info \
                         with mountpoint {MOUNTPOINT} within {READY_WATCHDOG:?}; log: {}",
                        read_log(p)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if ready {
                return Janus {
                    api_port,
                    ws_port,
                    video_port,
                    video_rtcp_port,
                    janus,
                    dir,
                };
            }
            let log = read_log(p);
            assert!(
                attempt < ATTEMPTS && log.contains("Couldn't start webserver"),
                "Janus exited (attempt {attempt}): {log}"
            );
        }
        unreachable!("the last attempt panics")
    }

    /// The Janus API, `http://127.0.0.1:PORT/janus` (janus.js's `server`).
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/janus", self.api_port)
    }

    /// The Janus API over WebSocket, `ws://127.0.0.1:PORT` (janus.js's
    /// `server` for many viewers in one page: one socket each, no long
    /// polls holding Chromium's 6 connections per host).
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }

    /// Where the mountpoint receives RTP.
    pub fn video_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.video_port))
    }

    /// Where the mountpoint receives RTCP.
    pub fn video_rtcp_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.video_rtcp_port))
    }

    /// Janus's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// Janus's process id.
    pub fn pid(&self) -> u32 {
        self.janus.pid()
    }

    /// Whether Janus still runs.
    pub fn alive(&mut self) -> bool {
        self.janus.alive()
    }

    /// Its directory (configuration, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The mountpoint as `{"request": "info", "id": MOUNTPOINT}` describes
    /// it (`plugindata.data.info`: `enabled`, `media[]` with `age_ms` of
    /// the last packet received, ...); panics when the API does not answer.
    pub fn mountpoint_info(&self) -> Value {
        let mut resp = streaming_request(
            self.api_port,
            &json!({ "request": "info", "id": MOUNTPOINT }),
        )
        .unwrap_or_else(|| panic!("Janus API did not answer `info`; log: {}", self.log()));
        resp["plugindata"]["data"]["info"].take()
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    let f = dir.join(name);
    std::fs::write(&f, text).unwrap_or_else(|e| panic!("write {}: {e}", f.display()));
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("janus.log")).unwrap_or_default()
}

/// Every `libjanus_*.so` of `LIB_DIR/kind` but those in `keep`,
/// comma-separated: a `disable` list (Janus loads whatever is in the
/// folder otherwise).
pub(crate) fn disable_all_but(kind: &str, keep: &[&str]) -> String {
    let folder = Path::new(LIB_DIR).join(kind);
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("read {}: {e}", folder.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("libjanus_") && n.ends_with(".so") && !keep.contains(&n.as_str()))
        .collect();
    names.sort();
    names.join(",")
}

/// `janus.jcfg`: configs from `dir`, log to stdout, only `plugin` and
/// `transports`, no event handlers nor loggers, a DTLS certificate of its
/// own (generated at start), `server_name` in its answers.
pub(crate) fn janus_jcfg(
    dir: &Path,
    plugin: &str,
    transports: &[&str],
    server_name: &str,
) -> String {
    let plugins = disable_all_but("plugins", &[plugin]);
    let transports = disable_all_but("transports", transports);
    let loggers = disable_all_but("loggers", &[]);
    let events = disable_all_but("events", &[]);
    format!(
        r#"general: {{
	configs_folder = "{dir}"
	plugins_folder = "{LIB_DIR}/plugins"
	transports_folder = "{LIB_DIR}/transports"
	events_folder = "{LIB_DIR}/events"
	loggers_folder = "{LIB_DIR}/loggers"
	debug_level = 4
	debug_timestamps = true
	debug_colors = false
	log_to_stdout = true
	server_name = "{server_name}"
}}
certificates: {{
}}
media: {{
}}
nat: {{
	nice_debug = false
}}
plugins: {{
	disable = "{plugins}"
}}
transports: {{
	disable = "{transports}"
}}
loggers: {{
	disable = "{loggers}"
}}
events: {{
	broadcast = false
	disable = "{events}"
}}
"#,
        dir = dir.display()
    )
}

/// `janus.transport.http.jcfg`: plain HTTP on 127.0.0.1:`port`, `/janus`,
/// no admin API.
fn http_jcfg(port: u16) -> String {
    format!(
        r#"general: {{
	json = "plain"
	base_path = "/janus"
	http = true
	ip = "127.0.0.1"
	port = {port}
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
cors: {{
}}
"#
    )
}

/// `janus.transport.websockets.jcfg`: plain WebSocket on 127.0.0.1:`port`,
/// no admin.
pub(crate) fn websockets_jcfg(port: u16) -> String {
    format!(
        r#"general: {{
	json = "plain"
	ws = true
	ws_ip = "127.0.0.1"
	ws_port = {port}
	wss = false
}}
admin: {{
	admin_ws = false
	admin_wss = false
}}
"#
    )
}

/// The Streaming plugin's configuration users are given
/// (`examples/janus/janus.plugin.streaming.jcfg`): what the tests run.
const EXAMPLE: &str = include_str!("../../../examples/janus/janus.plugin.streaming.jcfg");

/// `janus.plugin.streaming.jcfg`: the example's mountpoint, its video on
/// `video_port` (RTCP `video_rtcp_port`) and its sound on two free ports.
fn streaming_jcfg(video_port: u16, video_rtcp_port: u16) -> String {
    let (audio, audio_rtcp) = (crate::port::free_udp_port(), crate::port::free_udp_port());
    EXAMPLE
        .replace("videoport = 5004", &format!("videoport = {video_port}"))
        .replace(
            "videortcpport = 5005",
            &format!("videortcpport = {video_rtcp_port}"),
        )
        .replace("audioport = 5006", &format!("audioport = {audio}"))
        .replace(
            "audiortcpport = 5007",
            &format!("audiortcpport = {audio_rtcp}"),
        )
}

/// A Janus API call (`POST`), its JSON answer.
fn api(port: u16, path: &str, body: &Value) -> Option<Value> {
    let (status, body) = json_request(port, "POST", path, Some(body), HTTP_BOUND)?;
    (status == 200).then(|| serde_json::from_slice(&body).ok())?
}

/// A synchronous request to the Streaming plugin through a session of its
/// own (created, attached, destroyed): Janus's whole answer, `None` when
/// the API does not answer (yet).
fn streaming_request(port: u16, request: &Value) -> Option<Value> {
    let tx = |t: &str| format!("framebus-{t}");
    let (status, _) = json_request(port, "GET", "/janus/info", None, HTTP_BOUND)?;
    if status != 200 {
        return None;
    }
    let session = api(
        port,
        "/janus",
        &json!({"janus": "create", "transaction": tx("create")}),
    )?;
    let sid = session["data"]["id"].as_u64()?;
    let handle = api(
        port,
        &format!("/janus/{sid}"),
        &json!({"janus": "attach", "plugin": "janus.plugin.streaming", "transaction": tx("attach")}),
    );
    let answer = handle
        .as_ref()
        .and_then(|h| h["data"]["id"].as_u64())
        .and_then(|hid| {
            api(
                port,
                &format!("/janus/{sid}/{hid}"),
                &json!({"janus": "message", "body": request, "transaction": tx("request")}),
            )
        });
    let _ = api(
        port,
        &format!("/janus/{sid}"),
        &json!({"janus": "destroy", "transaction": tx("destroy")}),
    );
    answer
}

/// The ids of the mountpoints Janus lists; `None` until it answers.
fn mountpoints(port: u16) -> Option<Vec<u64>> {
    let resp = streaming_request(port, &json!({"request": "list"}))?;
    let list = resp["plugindata"]["data"]["list"].as_array()?;
    Some(list.iter().filter_map(|m| m["id"].as_u64()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_name_what_they_must() {
        let s = streaming_jcfg(5004, 5005);
        for want in [
            "id = 1",
            "videoport = 5004",
            "videortcpport = 5005",
            "videopt = 96",
            "videocodec = \"h264\"",
            "audiocodec = \"opus\"",
            FMTP,
        ] {
            assert!(s.contains(want), "{want} missing from {s}");
        }
        assert!(http_jcfg(8088).contains("port = 8088"));
    }
}
