//! RTSP helpers for the publishers' integration tests: `framebus-encoder`
//! processes writing the encoded buses, the `framebus-rtsp` server on port
//! 0, ffprobe/ffmpeg runs, and a raw RTSP client for status-code checks. The generic helpers (test buses, child guards,
//! names, bounded waits) come from `framebus-test-support` and are
//! re-exported here for the `use rtsp_support::*` of the RTSP tests.

#![allow(dead_code, unused_imports)]

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub use framebus_test_support::feed::TestBus;
use framebus_test_support::listening;
pub use framebus_test_support::{eventually, run, unique_name, ChildGuard};

/// `framebus-encoder` processes, stopped with SIGTERM when dropped.
pub use framebus_test_support::Encoder;

/// The server binary, listening on a free port (and the encoders it
/// serves, stopped with it).
pub struct RtspServer {
    pub child: ChildGuard,
    pub encoders: Vec<Encoder>,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// `127.0.0.1:PORT` of `--http-listen`, when given.
    pub http: Option<String>,
}

impl RtspServer {
    pub fn start(extra: &[&str]) -> RtspServer {
        RtspServer::start_env(extra, &[])
    }

    /// An encoder of `bus` for each of `profiles`, then the server.
    pub fn serve(bus: &str, profiles: &[&str], extra: &[&str]) -> RtspServer {
        RtspServer::serve_env(bus, profiles, extra, &[])
    }

    /// [`RtspServer::serve`] with extra environment variables for the server.
    pub fn serve_env(
        bus: &str,
        profiles: &[&str],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> RtspServer {
        let encoders = profiles
            .iter()
            .map(|p| Encoder::start(bus, p, &[], None))
            .collect();
        let mut server = RtspServer::start_env(extra, env);
        server.encoders = encoders;
        server
    }

    /// Starts the server with extra environment variables.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> RtspServer {
        let with_http = extra.contains(&"--http-listen");
        let (child, mut lines) = listening::spawn(
            Command::new(env!("CARGO_BIN_EXE_framebus-rtsp"))
                .args(["--listen", "127.0.0.1:0"])
                .args(extra)
                .env("RUST_LOG", "info")
                .env_remove("FRAMEBUS_RTSP_AUTH")
                .envs(env.iter().copied())
                .stderr(Stdio::inherit()),
            if with_http { 2 } else { 1 },
        );
        assert!(
            lines[0].url.starts_with("rtsp://"),
            "first line is not RTSP: {lines:?}"
        );
        let http = with_http.then(|| lines.pop().unwrap().addr);
        RtspServer {
            child,
            encoders: Vec::new(),
            addr: lines.remove(0).addr,
            http,
        }
    }

    pub fn url(&self, bus: &str, profile: &str) -> String {
        format!("rtsp://{}/{bus}/{profile}", self.addr)
    }
}

/// `ffprobe` of the first video stream: (codec, width, height).
pub fn ffprobe(url: &str, transport: &str) -> (String, u32, u32, Output) {
    let out = run(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            transport,
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
            url,
        ]),
        Duration::from_secs(30),
    );
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = s.trim().split(',');
    let codec = it.next().unwrap_or_default().to_string();
    let w = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let h = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (codec, w, h, out)
}

/// Decodes `frames` frames with ffmpeg (killed after 60 s); returns the
/// number decoded (framemd5 lines) and its output.
pub fn ffmpeg_decode(url: &str, transport: &str, frames: u32) -> (u32, Output) {
    let out = ffmpeg_background(url, transport, frames).output(Duration::from_secs(60));
    (framemd5_count(&out), out)
}

/// A minimal RTSP client over a raw socket, for status-code checks (the
/// media tests use real clients).
pub struct RawClient {
    pub sock: std::net::TcpStream,
    cseq: u32,
    pub session: Option<String>,
}

/// A response: status code, header lines, body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

impl RawClient {
    pub fn connect(addr: &str) -> RawClient {
        let sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        RawClient {
            sock,
            cseq: 0,
            session: None,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.sock.write_all(bytes).unwrap();
    }

    /// Reads one response (skipping interleaved `$` frames).
    pub fn read_response(&mut self) -> RawResponse {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            self.sock.read_exact(&mut byte).expect("response");
            if head.is_empty() && byte[0] == b'$' {
                let mut hdr = [0u8; 3];
                self.sock.read_exact(&mut hdr).unwrap();
                let mut skip = vec![0u8; usize::from(u16::from_be_bytes([hdr[1], hdr[2]]))];
                self.sock.read_exact(&mut skip).unwrap();
                continue;
            }
            head.push(byte[0]);
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
            assert!(head.len() < 65536, "response head too long");
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        let mut resp = RawResponse {
            status,
            head,
            body: Vec::new(),
        };
        if let Some(n) = resp.header("Content-Length").and_then(|v| v.parse().ok()) {
            resp.body = vec![0u8; n];
            self.sock.read_exact(&mut resp.body).unwrap();
        }
        resp
    }

    pub fn request(&mut self, method: &str, url: &str, extra: &[(&str, &str)]) -> RawResponse {
        self.cseq += 1;
        let mut req = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        if let Some(s) = &self.session {
            req.push_str(&format!("Session: {s}\r\n"));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send_raw(req.as_bytes());
        let resp = self.read_response();
        if let Some(s) = resp.header("Session") {
            self.session = Some(s.split(';').next().unwrap().to_string());
        }
        resp
    }

    /// DESCRIBE + SETUP (TCP interleaved); returns the SETUP response.
    pub fn setup_tcp(&mut self, url: &str) -> RawResponse {
        let d = self.request("DESCRIBE", url, &[("Accept", "application/sdp")]);
        if d.status != 200 {
            return d;
        }
        self.request(
            "SETUP",
            &format!("{url}/trackID=0"),
            &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
        )
    }
}

/// Decodes `frames` frames of `url` with GStreamer (`rtspsrc latency=0 !
/// rtph264depay ! avdec_h264 ! fakesink num-buffers=N`) over `protocols`,
/// with `extra` rtspsrc properties; returns gst-launch's output.
///
/// Success is reaching EOS after the frames (gst-launch prints "Got EOS
/// from element"): rtspsrc can fail the PAUSE it sends while the pipeline
/// shuts down after EOS (its CLOSE command flushes the connection under
/// the PAUSE being sent: "Could not send message"), a client-side race
/// seen under load that says nothing about the stream.
pub fn gst_play(url: &str, protocols: &str, frames: u32, extra: &[&str]) -> Result<Output, Output> {
    let location = format!("location={url}");
    let protocols = format!("protocols={protocols}");
    let buffers = format!("num-buffers={frames}");
    let mut args = vec!["rtspsrc", &location, &protocols, "latency=0"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "!",
        "rtph264depay",
        "!",
        "avdec_h264",
        "!",
        "fakesink",
        &buffers,
    ]);
    let out = run(
        Command::new("gst-launch-1.0").args(&args),
        Duration::from_secs(60),
    );
    let eos = String::from_utf8_lossy(&out.stdout).contains("Got EOS from element");
    if out.status.success() || eos {
        Ok(out)
    } else {
        Err(out)
    }
}

/// Readers attached to a bus (a running encoder reads its raw bus; a
/// running RTSP stream reads its encoded bus).
pub fn bus_readers(bus: &str) -> usize {
    framebus::stat(bus, None).map_or(0, |s| s.readers.len())
}

/// An ffmpeg decoding in the background (killed and reaped on drop).
pub fn ffmpeg_background(url: &str, transport: &str, frames: u32) -> ChildGuard {
    ChildGuard::spawn(
        Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-rtsp_transport",
                transport,
                "-i",
                url,
                "-frames:v",
                &frames.to_string(),
                "-f",
                "framemd5",
                "-",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
}

/// Frames counted in an ffmpeg framemd5 output.
pub fn framemd5_count(out: &Output) -> u32 {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count() as u32
}
