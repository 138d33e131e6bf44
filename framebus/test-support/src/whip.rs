//! [`WhipServer`]: a real WHIP server (RFC 9725) on loopback for a WHIP
//! client under test: Meetecho's simple-whip-server (Debian's
//! `simple-whip-server`, a small Node.js/Express app) in front of Debian's
//! Janus 1.1.x ([`crate::janus::JANUS`]) with only its VideoRoom plugin and
//! its WebSocket transport, one room ([`ROOM`]: H.264 video, Opus audio)
//! and one WHIP endpoint ([`ENDPOINT_ID`]) whose publisher Janus forwards
//! (`rtp_forward`) as plain RTP to two UDP ports on 127.0.0.1, where
//! [`WhipServer::decode_video`] and [`WhipServer::decode_audio`] decode it
//! with GStreamer (`gst-launch-1.0`): what a client published really
//! arrived, was decrypted and decodes. No browser.
//!
//! The server's sources come from the `.deb` (`apt-get download
//! simple-whip-server`, unpacked with `dpkg-deb -x` once into
//! `target/simple-whip-server/`): `apt-get install simple-whip-server`
//! fails next to the machine's Node.js (Debian's `node-*` libraries pull in
//! `libnode108`, which conflicts with it), so its npm dependencies (express,
//! body-parser, cors, colors, debug, async, websocket; pinned in
//! `publishers/tests/browser/package.json`, `make node-deps`) are found
//! through `NODE_PATH`, and its `config.js` (in the package a link to
//! `/etc`) is written here.
//!
//! Each server lives in its own [`TempDir`]: Janus's configuration and log
//! (`janus.log`), the WHIP server's sources, `config.js` and log
//! (`whip.log`: its `DEBUG=whip:*,janus:*` lines). Janus's WebSocket API and
//! the WHIP HTTP API listen on ports of their own
//! ([`crate::port::free_port`]; the WHIP server binds every interface, as
//! shipped), the forwarded RTP goes to ports from
//! [`crate::port::free_udp_port`]. Both run as [`ChildGuard`]s: dropping the
//! server kills them.
//!
//! What a WHIP client must do for this server (simple-whip-server of
//! 2023-02-01, Janus 1.1.2):
//! - `POST` the offer to [`WhipServer::endpoint_url`] with exactly
//!   `Content-Type: application/sdp` (a parameter such as `; charset=...`
//!   gets 406) and, when the server has a token, `Authorization: Bearer
//!   TOKEN` (else 403). The answer comes back as 201 with `Content-Type:
//!   application/sdp`, an `ETag` and a *relative* `Location`
//!   (`/whip/resource/ID`), to resolve against the endpoint URL.
//! - Put its ICE candidates in the offer (wait for gathering to complete):
//!   the server answers `PATCH` with 204 and advertises `Accept-Patch:
//!   application/trickle-ice-sdpfrag`, but drops the candidates (its Janus
//!   glue checks `details.candidate` while it passes `candidates`); only an
//!   ICE restart through `PATCH` reaches Janus. Janus's answer carries all
//!   its candidates and `a=end-of-candidates` (no trickle from the server).
//! - Offer `a=setup:actpass` (Janus answers `a=setup:active`: the client is
//!   the DTLS server), BUNDLE with `rtcp-mux`, `sendonly` (or `sendrecv`;
//!   the answer is `recvonly`).
//! - Offer H.264 (`packetization-mode=1`; any `profile-level-id`, which the
//!   answer echoes, since the room sets no `h264_profile`) and Opus; any
//!   payload types (forwarded unchanged). The room has `videocodec =
//!   "h264"`, `audiocodec = "opus"`: other codecs are refused.
//! - Honour PLI/FIR: Janus asks for a keyframe every [`FIR_FREQ_S`] s.
//! - `DELETE` the `Location` on stop (200): until then, or until Janus sees
//!   the PeerConnection die, another `POST` to the endpoint gets 403
//!   (`Endpoint ID already in use`).
//!
//! ICE: Janus (full ICE) offers host candidates on the interfaces that are
//! up except loopback (libnice skips `lo`, see [`crate::janus`]): here the
//! eth0 address. A client on the same host reaches it; on a host with only
//! `lo` nothing connects.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::json_request;
use crate::janus::{janus_jcfg, websockets_jcfg, JANUS};
use crate::port::{free_port, free_udp_port};
use crate::{ChildGuard, TempDir};

/// The Debian package the WHIP server comes from.
pub const PACKAGE: &str = "simple-whip-server";

/// The VideoRoom room the endpoint publishes into.
pub const ROOM: u64 = 1234;

/// The id of the one WHIP endpoint (the last segment of
/// [`WhipServer::endpoint_url`]).
pub const ENDPOINT_ID: &str = "framebus";

/// How often (seconds) Janus asks the publisher for a keyframe (the room's
/// `fir_freq`), so that a decoder started at any time gets one.
pub const FIR_FREQ_S: u32 = 2;

/// GStreamer's command line tool (the decoders).
pub const GST_LAUNCH: &str = "gst-launch-1.0";

/// Watchdog on Janus and the WHIP server coming up, per attempt.
const READY_WATCHDOG: Duration = Duration::from_secs(20);

/// Attempts with fresh ports (another process may take one we picked
/// before Janus or the WHIP server binds it).
const ATTEMPTS: u32 = 5;

/// Bound on each step of one HTTP request to the WHIP server.
const HTTP_BOUND: Duration = Duration::from_secs(5);

/// What [`WhipServer::decode_video`] decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoDecoded {
    /// Width of the decoded pictures (`avdec_h264`'s caps).
    pub width: u32,
    /// Their height.
    pub height: u32,
    /// Pictures decoded.
    pub frames: u32,
}

/// What [`WhipServer::decode_audio`] decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioDecoded {
    /// Sample rate of the decoded audio (`opusdec`'s caps).
    pub rate: u32,
    /// Its channels.
    pub channels: u32,
    /// Buffers decoded (one per Opus packet: 20 ms each from most
    /// encoders).
    pub buffers: u32,
}

/// A running WHIP server (simple-whip-server and its Janus); both killed on
/// drop.
pub struct WhipServer {
    http_port: u16,
    ws_port: u16,
    video_port: u16,
    audio_port: u16,
    token: Option<String>,
    // Dropped first: the WHIP server, then Janus, then the directory.
    whip: ChildGuard,
    janus: ChildGuard,
    dir: TempDir,
}

impl WhipServer {
    /// Starts Janus and the WHIP server, creates endpoint [`ENDPOINT_ID`]
    /// without a token (no `Authorization` needed) forwarding to two fresh
    /// UDP ports, and waits (watchdog: 20 s per attempt) until the WHIP API
    /// answers. Panics with the logs when it does not.
    pub fn start() -> WhipServer {
        WhipServer::launch(None)
    }

    /// Like [`WhipServer::start`], with an endpoint that wants
    /// `Authorization: Bearer {token}` on `POST`, `PATCH` and `DELETE`.
    pub fn start_with_token(token: &str) -> WhipServer {
        WhipServer::launch(Some(token.to_string()))
    }

    fn launch(token: Option<String>) -> WhipServer {
        assert!(
            Path::new(JANUS).exists(),
            "{JANUS} not found: `apt-get install janus` (`make deps`)"
        );
        let modules = crate::browser::driver_dir().join("node_modules");
        for m in [
            "express",
            "body-parser",
            "cors",
            "colors",
            "debug",
            "async",
            "websocket",
        ] {
            assert!(
                modules.join(m).is_dir(),
                "{}/{m} is missing: run `make node-deps`",
                modules.display()
            );
        }
        let sources = server_sources();
        let dir = TempDir::new("whip");
        let p = dir.path();
        let app = p.join("app");
        std::fs::create_dir_all(&app).expect("create app/");
        for f in ["server.js", "whip-janus.js"] {
            std::fs::copy(sources.join(f), app.join(f))
                .unwrap_or_else(|e| panic!("copy {f} from {}: {e}", sources.display()));
        }
        for attempt in 1..=ATTEMPTS {
            let ws_port = free_port();
            let http_port = free_port();
            let video_port = free_udp_port();
            let audio_port = free_udp_port();
            write(
                p,
                "janus.jcfg",
                &janus_jcfg(
                    p,
                    "libjanus_videoroom.so",
                    &["libjanus_websockets.so"],
                    "framebus-whip-test",
                ),
            );
            write(
                p,
                "janus.transport.websockets.jcfg",
                &websockets_jcfg(ws_port),
            );
            write(p, "janus.plugin.videoroom.jcfg", &videoroom_jcfg());
            write(&app, "config.js", &config_js(ws_port, http_port));

            let mut janus = spawn_logged(
                Command::new(JANUS)
                    .arg("-F")
                    .arg(p)
                    .arg("-C")
                    .arg(p.join("janus.jcfg"))
                    .current_dir(p),
                &p.join("janus.log"),
            );
            let end = Instant::now() + READY_WATCHDOG;
            let janus_up = loop {
                if connects(ws_port) {
                    break true;
                }
                if janus.try_exit().is_some() {
                    break false;
                }
                if Instant::now() > end {
                    janus.kill();
                    panic!(
                        "watchdog: Janus did not listen on ws://127.0.0.1:{ws_port} within \
                         {READY_WATCHDOG:?}; log: {}",
                        read(p, "janus.log")
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if !janus_up {
                assert!(attempt < ATTEMPTS, "Janus exited: {}", read(p, "janus.log"));
                continue;
            }

            let mut whip = spawn_logged(
                Command::new("node")
                    .arg("server.js")
                    .current_dir(&app)
                    .env("NODE_PATH", &modules)
                    .env("DEBUG", "whip:*,janus:*,-janus:vdebug")
                    .env("DEBUG_COLORS", "0")
                    .env("FORCE_COLOR", "0")
                    .env("DEBUG_HIDE_DATE", "0"),
                &p.join("whip.log"),
            );
            let up = loop {
                if matches!(
                    json_request(http_port, "GET", "/whip/healthcheck", None, HTTP_BOUND),
                    Some((200, _))
                ) {
                    break true;
                }
                if whip.try_exit().is_some() {
                    break false;
                }
                if Instant::now() > end {
                    whip.kill();
                    janus.kill();
                    panic!(
                        "watchdog: the WHIP server did not answer \
                         http://127.0.0.1:{http_port}/whip/healthcheck within {READY_WATCHDOG:?}; \
                         whip.log: {}\njanus.log: {}",
                        read(p, "whip.log"),
                        read(p, "janus.log")
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if !up {
                let log = read(p, "whip.log");
                assert!(
                    attempt < ATTEMPTS && log.contains("already in use"),
                    "the WHIP server exited (attempt {attempt}): {log}"
                );
                janus.kill();
                continue;
            }
            let server = WhipServer {
                http_port,
                ws_port,
                video_port,
                audio_port,
                token,
                whip,
                janus,
                dir,
            };
            server.create_endpoint();
            return server;
        }
        unreachable!("the last attempt panics")
    }

    /// `POST /whip/create` (the server's own, non-standard API): the
    /// endpoint, its token and where Janus forwards its publisher.
    fn create_endpoint(&self) {
        let mut body = json!({
            "id": ENDPOINT_ID,
            "room": ROOM,
            "label": "framebus WHIP client",
            "recipient": {
                "host": "127.0.0.1",
                "videoPort": self.video_port,
                "audioPort": self.audio_port,
            },
        });
        if let Some(t) = &self.token {
            body["token"] = json!(t);
        }
        let answer = json_request(
            self.http_port,
            "POST",
            "/whip/create",
            Some(&body),
            HTTP_BOUND,
        );
        assert!(
            matches!(answer, Some((200, _))),
            "POST /whip/create answered {answer:?}; logs: {}",
            self.log()
        );
    }

    /// The URL a WHIP client `POST`s its offer to:
    /// `http://127.0.0.1:PORT/whip/endpoint/framebus`. With
    /// [`WhipServer::start_with_token`] it wants `Authorization: Bearer
    /// TOKEN`.
    pub fn endpoint_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/whip/endpoint/{ENDPOINT_ID}",
            self.http_port
        )
    }

    /// The session's resource once published: the endpoint's `Location`
    /// (`/whip/resource/framebus`) resolved against
    /// [`WhipServer::endpoint_url`]; a client `PATCH`es and `DELETE`s it.
    pub fn resource_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/whip/resource/{ENDPOINT_ID}",
            self.http_port
        )
    }

    /// The bearer token the endpoint wants, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether a client publishes on the endpoint now (the server's
    /// `GET /whip/endpoints`: `enabled` from a successful `POST` until the
    /// `DELETE` or until Janus reports the PeerConnection gone). Panics when
    /// the server does not answer.
    pub fn publishing(&self) -> bool {
        let (status, body) =
            json_request(self.http_port, "GET", "/whip/endpoints", None, HTTP_BOUND)
                .unwrap_or_else(|| panic!("GET /whip/endpoints: no answer; logs: {}", self.log()));
        assert_eq!(
            status,
            200,
            "GET /whip/endpoints: {status}; logs: {}",
            self.log()
        );
        let list: Value = serde_json::from_slice(&body).expect("/whip/endpoints is JSON");
        list.as_array()
            .into_iter()
            .flatten()
            .any(|e| e["id"] == ENDPOINT_ID && e["enabled"] == true)
    }

    /// Waits until [`WhipServer::publishing`] is `want`; panics (watchdog:
    /// `limit`) with the logs when it does not become so.
    pub fn wait_publishing(&self, want: bool, limit: Duration) {
        if !crate::eventually(limit, || self.publishing() == want) {
            panic!(
                "watchdog: the WHIP endpoint did not become publishing={want} within {limit:?}; \
                 logs: {}",
                self.log()
            );
        }
    }

    /// Where Janus forwards the publisher's video RTP (bind it only while no
    /// [`WhipServer::decode_video`] runs).
    pub fn video_rtp_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.video_port))
    }

    /// Where Janus forwards the publisher's audio RTP.
    pub fn audio_rtp_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.audio_port))
    }

    /// Decodes the published video as Janus forwards it (`udpsrc !
    /// rtph264depay ! h264parse ! avdec_h264`) until `frames` pictures are
    /// decoded: their size and count. Pictures before the first keyframe
    /// are dropped (Janus asks for one every [`FIR_FREQ_S`] s). Panics
    /// (watchdog: `limit`) with what was decoded, GStreamer's errors and the
    /// logs when fewer arrive in time. One decoder at a time: it binds the
    /// forwarding port.
    pub fn decode_video(&self, frames: u32, limit: Duration) -> VideoDecoded {
        let caps = "application/x-rtp,media=video,clock-rate=90000,encoding-name=H264";
        let pipeline = "rtph264depay ! h264parse ! avdec_h264 name=dec";
        let (count, caps) = self.decode(self.video_port, caps, pipeline, frames, limit, "video");
        VideoDecoded {
            width: caps_field(&caps, "width").unwrap_or(0),
            height: caps_field(&caps, "height").unwrap_or(0),
            frames: count,
        }
    }

    /// Decodes the published audio as Janus forwards it (`udpsrc !
    /// rtpopusdepay ! opusdec`) until `buffers` buffers are decoded: rate,
    /// channels, count. Panics (watchdog: `limit`) like
    /// [`WhipServer::decode_video`].
    pub fn decode_audio(&self, buffers: u32, limit: Duration) -> AudioDecoded {
        let caps = "application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS";
        let pipeline = "rtpopusdepay ! opusdec name=dec";
        let (count, caps) = self.decode(self.audio_port, caps, pipeline, buffers, limit, "audio");
        AudioDecoded {
            rate: caps_field(&caps, "rate").unwrap_or(0),
            channels: caps_field(&caps, "channels").unwrap_or(0),
            buffers: count,
        }
    }

    /// `gst-launch-1.0 -v udpsrc port=PORT caps=CAPS ! PIPELINE ! fakesink
    /// silent=false`: counts the buffers reaching the sink (one
    /// `last-message = chain` line each) up to `want`, and the decoder's
    /// (element `dec`) source caps.
    fn decode(
        &self,
        port: u16,
        caps: &str,
        pipeline: &str,
        want: u32,
        limit: Duration,
        what: &str,
    ) -> (u32, String) {
        let err_path = self.dir.path().join(format!("decode-{what}.err"));
        let err = std::fs::File::create(&err_path).expect("decode .err");
        let mut args = vec![
            "-v".to_string(),
            "udpsrc".into(),
            "address=127.0.0.1".into(),
            format!("port={port}"),
            format!("caps={caps}"),
            "!".into(),
        ];
        args.extend(pipeline.split_whitespace().map(str::to_string));
        args.extend(["!", "fakesink", "silent=false", "sync=false"].map(str::to_string));
        let mut gst = ChildGuard::try_spawn(
            Command::new(GST_LAUNCH)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(err)),
        )
        .unwrap_or_else(|e| {
            panic!("{GST_LAUNCH} not runnable ({e}): `apt-get install gstreamer1.0-tools`")
        });
        let end = Instant::now() + limit;
        let (mut count, mut dec_caps) = (0u32, String::new());
        while count < want {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let Some(line) = gst.next_line(left) else {
                break;
            };
            if line.contains("last-message = chain") {
                count += 1;
            } else if line.contains(":dec.GstPad:src: caps = ") && dec_caps.is_empty() {
                dec_caps = line;
            }
        }
        gst.kill();
        if count < want {
            panic!(
                "watchdog: {count} of {want} {what} buffers decoded from the forwarded RTP \
                 (127.0.0.1:{port}) within {limit:?} (decoder caps: {dec_caps:?}); \
                 {GST_LAUNCH} {}: {}\nlogs: {}",
                args.join(" "),
                std::fs::read_to_string(&err_path).unwrap_or_default(),
                self.log()
            );
        }
        (count, dec_caps)
    }

    /// Janus's WebSocket API, `ws://127.0.0.1:PORT` (subprotocol
    /// `janus-protocol`), which the WHIP server drives.
    pub fn janus_ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }

    /// Both logs so far: the WHIP server's, then Janus's.
    pub fn log(&self) -> String {
        let p = self.dir.path();
        format!(
            "\n--- whip.log ---\n{}\n--- janus.log ---\n{}",
            read(p, "whip.log"),
            read(p, "janus.log")
        )
    }

    /// Whether both processes still run.
    pub fn alive(&mut self) -> bool {
        self.whip.alive() && self.janus.alive()
    }

    /// Its directory (configurations, sources, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The folder holding the package's `server.js` and `whip-janus.js`:
/// `target/simple-whip-server/usr/share/simple-whip-server/src`, unpacked
/// from `apt-get download simple-whip-server` the first time (into a
/// folder of its own, then renamed into place, so parallel tests race
/// harmlessly).
pub fn server_sources() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/simple-whip-server");
    let src = |r: &Path| r.join("usr/share/simple-whip-server/src");
    if src(&root).join("server.js").is_file() {
        return src(&root);
    }
    let tmp = TempDir::new("whip-deb");
    let out = crate::run_to_end(
        Command::new("apt-get")
            .args(["download", PACKAGE])
            .current_dir(tmp.path()),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "`apt-get download {PACKAGE}` failed (`apt-get update` first?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = std::fs::read_dir(tmp.path())
        .expect("read the download folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|f| f.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| panic!("`apt-get download {PACKAGE}` left no .deb"));
    let unpacked = tmp.path().join("root");
    let out = crate::run_to_end(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "dpkg-deb -x {}: {}",
        deb.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::create_dir_all(root.parent().expect("target/")).expect("create target/");
    // Another test may have won the race: then its copy is used.
    let _ = std::fs::rename(&unpacked, &root);
    assert!(
        src(&root).join("server.js").is_file(),
        "{} has no server.js after unpacking {}",
        src(&root).display(),
        deb.display()
    );
    src(&root)
}

fn write(dir: &Path, name: &str, text: &str) {
    let f = dir.join(name);
    std::fs::write(&f, text).unwrap_or_else(|e| panic!("write {}: {e}", f.display()));
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// `cmd` with stdin closed and stdout and stderr into the file `log`.
fn spawn_logged(cmd: &mut Command, log: &Path) -> ChildGuard {
    let f = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let f2 = f.try_clone().expect("clone the log");
    ChildGuard::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(f))
            .stderr(Stdio::from(f2)),
    )
}

/// Whether something accepts TCP on 127.0.0.1:`port`.
fn connects(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// `janus.plugin.videoroom.jcfg`: the one room, H.264 + Opus, one
/// publisher, no bitrate cap, a keyframe request every [`FIR_FREQ_S`] s.
fn videoroom_jcfg() -> String {
    format!(
        r#"general: {{
}}
room-{ROOM}: {{
	description = "framebus WHIP (test)"
	publishers = 1
	bitrate = 0
	fir_freq = {FIR_FREQ_S}
	audiocodec = "opus"
	videocodec = "h264"
	notify_joining = false
}}
"#
    )
}

/// The WHIP server's `config.js`: its Janus, its port, `/whip`, trickle
/// "allowed" (see the module doc), lax ETags, no STUN/TURN `Link`s.
fn config_js(ws_port: u16, http_port: u16) -> String {
    format!(
        r#"module.exports = {{
	janus: {{ address: 'ws://127.0.0.1:{ws_port}' }},
	port: {http_port},
	rest: '/whip',
	allowTrickle: true,
	strictETags: false,
	iceServers: []
}};
"#
    )
}

/// `name=(int)N` from a caps line.
fn caps_field(caps: &str, name: &str) -> Option<u32> {
    let key = format!("{name}=(int)");
    let at = caps.find(&key)? + key.len();
    let digits: String = caps[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_name_what_they_must() {
        let v = videoroom_jcfg();
        for want in [
            "room-1234",
            "videocodec = \"h264\"",
            "audiocodec = \"opus\"",
            "fir_freq = 2",
        ] {
            assert!(v.contains(want), "{want} missing from {v}");
        }
        assert!(websockets_jcfg(8188).contains("ws_port = 8188"));
        let c = config_js(8188, 7080);
        assert!(
            c.contains("ws://127.0.0.1:8188") && c.contains("port: 7080"),
            "{c}"
        );
    }

    #[test]
    fn caps_fields() {
        let line = "/GstPipeline:pipeline0/avdec_h264:dec.GstPad:src: caps = video/x-raw, \
                    format=(string)I420, width=(int)320, height=(int)240, framerate=(fraction)30/1";
        assert_eq!(caps_field(line, "width"), Some(320));
        assert_eq!(caps_field(line, "height"), Some(240));
        assert_eq!(caps_field(line, "rate"), None);
    }
}
