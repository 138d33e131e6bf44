//! [`TestStream`]: a live LL-HLS stream of the time-coded test pattern,
//! served over HTTP with CORS — the stand-in origin of the HLS harness's
//! self-test ([`crate::hls::self_test`]) and of the nginx cache tests, so
//! that both are checked against real peers (ffmpeg, hls.js, nginx)
//! without `framebus-mjpeg`.
//!
//! A thread paints the moving pattern of [`crate::feed::paint_pattern`]
//! with the time code (docs/timecode.md: capture time on the wall clock,
//! frame counter) into NV12 frames at 30 fps and pipes them to ffmpeg,
//! which encodes every [`Rendition`] with libx264 (a keyframe every 6
//! frames) into 200 ms fMP4 fragments (`-f hls -hls_time 0.2`). This module
//! republishes them as LL-HLS:
//!
//! - each ffmpeg fragment is a part, `p{N}.m4s` (`INDEPENDENT=YES`);
//! - parts `5K..5K+4` make segment `K` (1 s), `s{K}.m4s`: their bytes
//!   concatenated (moof/mdat pairs in a row are a valid fMP4 segment);
//! - the media playlist lists the last [`WINDOW`] segments, `EXT-X-PART`
//!   for the last three and for the segment in progress, an
//!   `EXT-X-PRELOAD-HINT` for the next part, and answers blocking reloads
//!   (`_HLS_msn`, `_HLS_part`: held until that part exists, at most
//!   [`HOLD`]; a request beyond the last segment plus two is a 400);
//! - a hinted part (or the segment in progress) is held until it exists.
//!
//! URLs follow the framebus HLS contract: `/{cam}/index.m3u8`
//! (multivariant: its variant URIs carry `?s=TOKEN`, a new token per
//! request, as the server's per-viewer token), `/{cam}/{rendition}/index.m3u8`,
//! `.../init.mp4`, `.../p{N}.m4s`, `.../s{K}.m4s`. Every response has
//! `Access-Control-Allow-Origin: *`; `OPTIONS` answers preflights
//! (`Authorization` allowed). Cache-Control: `no-cache` on the
//! multivariant playlist, `max-age=1` on a plain media playlist,
//! `max-age=60` on a blocking reload's answer and on media; `no-store` on
//! errors and on a reload answered after the hold ran out. Every request
//! is logged ([`TestStream::requests`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use framebus::timecode::{self, TimeCode};
use framebus::{Fps, FrameMeta, FrameSpec, PixelFormat};

use crate::feed::paint_pattern;
use crate::{unique_name, ChildGuard, TempDir};

/// Parts per segment (200 ms parts, 1 s segments).
pub const PARTS_PER_SEGMENT: u64 = 5;
/// Segments in a media playlist.
pub const WINDOW: u64 = 6;
/// Longest a request is held for a part that does not exist yet.
pub const HOLD: Duration = Duration::from_secs(3);
/// Frames per second of the pattern.
const FPS: u32 = 30;
/// ffmpeg's playlists are re-read this often.
const POLL: Duration = Duration::from_millis(20);

/// One encoding of the picture: a variant of the multivariant playlist.
#[derive(Clone, Debug)]
pub struct Rendition {
    /// Path segment and `NAME`, e.g. `high`.
    pub name: String,
    /// Picture width (even).
    pub width: u32,
    /// Picture height (even).
    pub height: u32,
    /// libx264 target bit rate, kbit/s.
    pub kbps: u32,
}

impl Rendition {
    /// A rendition `name` of `width`x`height` at `kbps`.
    pub fn new(name: &str, width: u32, height: u32, kbps: u32) -> Rendition {
        Rendition {
            name: name.to_string(),
            width,
            height,
            kbps,
        }
    }
}

/// What [`TestStream::start`] serves.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// The camera's path segment (default: a [`unique_name`]).
    pub cam: String,
    /// The renditions, the first one at the pattern's own size (default:
    /// `high` 640x360 at 800 kbit/s and `low` 320x180 at 200 kbit/s).
    pub renditions: Vec<Rendition>,
    /// Refuse (401) a `GET` without exactly this `Authorization` value.
    pub authorization: Option<String>,
    /// Address to listen on (port 0); default 127.0.0.1.
    pub ip: IpAddr,
}

impl Default for StreamOptions {
    fn default() -> StreamOptions {
        StreamOptions {
            cam: unique_name("hls"),
            renditions: vec![
                Rendition::new("high", 640, 360, 800),
                Rendition::new("low", 320, 180, 200),
            ],
            authorization: None,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct Logged {
    /// `GET`, `OPTIONS`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query (without `?`), empty when none.
    pub query: String,
    /// Its `Authorization` header.
    pub authorization: Option<String>,
    /// Its `Origin` header.
    pub origin: Option<String>,
    /// The response status.
    pub status: u16,
    /// How long it was held (blocking reloads, hinted parts).
    pub held: Duration,
    /// Why it failed (the error body), empty on success.
    pub error: String,
}

impl Logged {
    /// The value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }
}

/// Parts of one rendition as ffmpeg's playlist lists them.
#[derive(Default)]
struct Media {
    /// ffmpeg's init segment, once listed.
    init: Option<PathBuf>,
    /// Part number (ffmpeg's segment number) to its duration, seconds.
    parts: BTreeMap<u64, f64>,
}

impl Media {
    fn last(&self) -> Option<u64> {
        self.parts.keys().next_back().copied()
    }

    /// The last complete segment.
    fn last_segment(&self) -> Option<u64> {
        let l = self.last()?;
        ((l + 1) / PARTS_PER_SEGMENT)
            .checked_sub(1)
            .filter(|&k| self.complete(k))
    }

    fn complete(&self, k: u64) -> bool {
        (k * PARTS_PER_SEGMENT..(k + 1) * PARTS_PER_SEGMENT).all(|n| self.parts.contains_key(&n))
    }
}

struct Shared {
    dir: PathBuf,
    cam: String,
    renditions: Vec<Rendition>,
    authorization: Option<String>,
    media: Mutex<Vec<Media>>,
    /// Signalled whenever a part appears.
    changed: Condvar,
    /// `#EXT-X-STREAM-INF` attributes per rendition, from ffmpeg's own
    /// multivariant playlist (CODECS).
    codecs: Mutex<Vec<Option<String>>>,
    log: Mutex<Vec<Logged>>,
    tokens: AtomicU64,
    stop: AtomicBool,
}

/// A live LL-HLS stream (see the module docs); everything stops on drop.
pub struct TestStream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    ffmpeg: Option<ChildGuard>,
    threads: Vec<JoinHandle<()>>,
    _dir: TempDir,
}

impl TestStream {
    /// The default stream: two renditions on 127.0.0.1, no credentials.
    pub fn start() -> TestStream {
        TestStream::with(StreamOptions::default())
    }

    /// Starts ffmpeg and the server, and waits (watchdog: 20 s) until
    /// every rendition has two complete segments.
    pub fn with(opts: StreamOptions) -> TestStream {
        assert!(!opts.renditions.is_empty(), "a stream needs a rendition");
        let dir = TempDir::new("hls-stream");
        for r in &opts.renditions {
            std::fs::create_dir_all(dir.path().join(&r.name))
                .unwrap_or_else(|e| panic!("create {}/{}: {e}", dir.path().display(), r.name));
        }
        let listener =
            TcpListener::bind((opts.ip, 0)).unwrap_or_else(|e| panic!("bind {}:0: {e}", opts.ip));
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            dir: dir.path().to_path_buf(),
            cam: opts.cam.clone(),
            renditions: opts.renditions.clone(),
            authorization: opts.authorization.clone(),
            media: Mutex::new(opts.renditions.iter().map(|_| Media::default()).collect()),
            changed: Condvar::new(),
            codecs: Mutex::new(vec![None; opts.renditions.len()]),
            log: Mutex::new(Vec::new()),
            tokens: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let (ffmpeg, stdin) = spawn_ffmpeg(dir.path(), &opts.renditions);
        let first = &opts.renditions[0];
        let (w, h) = (first.width, first.height);
        let mut threads = vec![
            {
                let s = Arc::clone(&shared);
                std::thread::spawn(move || paint_frames(stdin, w, h, &s.stop))
            },
            {
                let s = Arc::clone(&shared);
                std::thread::spawn(move || watch_ffmpeg(&s))
            },
        ];
        {
            let s = Arc::clone(&shared);
            threads.push(std::thread::spawn(move || serve(listener, &s)));
        }
        // From here on, a panic drops `stream`: ffmpeg is killed before
        // the painter (maybe blocked writing to it) is joined.
        let mut stream = TestStream {
            addr,
            shared,
            ffmpeg: Some(ffmpeg),
            threads,
            _dir: dir,
        };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = {
                let media = stream.shared.media.lock().expect("media lock");
                let codecs = stream.shared.codecs.lock().expect("codecs lock");
                media
                    .iter()
                    .all(|m| m.last_segment() >= Some(1) && m.init.is_some())
                    && codecs.iter().all(Option::is_some)
            };
            if ready {
                break;
            }
            let log = stream.shared.dir.join("ffmpeg.log");
            if let Some(st) = stream.ffmpeg.as_mut().and_then(ChildGuard::try_exit) {
                panic!(
                    "ffmpeg (HLS test stream) exited: {st}; {}: {}",
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < end,
                "watchdog: the HLS test stream had not two segments per rendition after 20 s; {}: {}",
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(POLL);
        }
        stream
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The camera's path segment.
    pub fn cam(&self) -> &str {
        &self.shared.cam
    }

    /// `http://ADDR/{cam}/index.m3u8`.
    pub fn multivariant_url(&self) -> String {
        format!("http://{}/{}/index.m3u8", self.addr, self.shared.cam)
    }

    /// `http://ADDR/{cam}/{rendition}/index.m3u8`.
    pub fn media_url(&self, rendition: &str) -> String {
        format!(
            "http://{}/{}/{rendition}/index.m3u8",
            self.addr, self.shared.cam
        )
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.shared.log.lock().expect("log lock").clone()
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        // The painter ends on EPIPE once ffmpeg is gone; the acceptor on
        // this connection.
        drop(self.ffmpeg.take());
        let _ = TcpStream::connect(self.addr);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// ffmpeg reading raw NV12 on stdin, writing `dir/{rendition}/ffmpeg.m3u8`,
/// `init_*.mp4`, `seg{N}.m4s` and `dir/master.m3u8`; its log in
/// `dir/ffmpeg.log`.
fn spawn_ffmpeg(dir: &Path, renditions: &[Rendition]) -> (ChildGuard, std::process::ChildStdin) {
    let first = &renditions[0];
    let n = renditions.len();
    let mut graph = format!("[0:v]split={n}");
    for i in 0..n {
        let _ = write!(graph, "[s{i}]");
    }
    for (i, r) in renditions.iter().enumerate() {
        let _ = write!(graph, ";[s{i}]scale={}:{}[v{i}]", r.width, r.height);
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-f", "rawvideo", "-pix_fmt", "nv12"])
        .arg("-video_size")
        .arg(format!("{}x{}", first.width, first.height))
        .args(["-framerate", &FPS.to_string(), "-i", "pipe:0"])
        .args(["-filter_complex", &graph]);
    for i in 0..n {
        cmd.args(["-map", &format!("[v{i}]")]);
    }
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
    ])
    .args(["-g", "6", "-keyint_min", "6", "-sc_threshold", "0"]);
    for (i, r) in renditions.iter().enumerate() {
        cmd.arg(format!("-b:v:{i}")).arg(format!("{}k", r.kbps));
    }
    let map: Vec<String> = renditions
        .iter()
        .enumerate()
        .map(|(i, r)| format!("v:{i},name:{}", r.name))
        .collect();
    cmd.args(["-f", "hls", "-hls_time", "0.2", "-hls_list_size", "60"])
        .args([
            "-hls_flags",
            "delete_segments+independent_segments+temp_file",
        ])
        .args([
            "-hls_segment_type",
            "fmp4",
            "-master_pl_name",
            "master.m3u8",
        ])
        .args(["-var_stream_map", &map.join(" ")])
        .arg("-hls_segment_filename")
        .arg(dir.join("%v/seg%d.m4s"))
        .arg(dir.join("%v/ffmpeg.m3u8"));
    let log = std::fs::File::create(dir.join("ffmpeg.log")).expect("create ffmpeg.log");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    let mut ffmpeg = ChildGuard::try_spawn(&mut cmd)
        .unwrap_or_else(|e| panic!("spawn ffmpeg: {e} (`apt-get install ffmpeg`, `make deps`)"));
    let stdin = ffmpeg.child().stdin.take().expect("ffmpeg stdin piped");
    (ffmpeg, stdin)
}

/// Writes frames of the pattern with the time code to ffmpeg at 30 fps
/// until `stop` or a write fails (ffmpeg gone).
fn paint_frames(mut out: impl Write, w: u32, h: u32, stop: &AtomicBool) {
    let spec = FrameSpec::new(PixelFormat::Nv12, w, h, Fps::new(FPS))
        .unwrap_or_else(|e| panic!("{w}x{h} NV12: {e}"));
    let mut frame = vec![0u8; spec.frame_size()];
    let (wu, hu) = (w as usize, h as usize);
    let start = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let meta = FrameMeta::now();
        let (y, uv) = frame.split_at_mut(wu * hu);
        paint_pattern(y, uv, wu, hu, n);
        let tc = TimeCode {
            realtime_us: meta.realtime_ns / 1000,
            counter: n as u32,
        };
        timecode::paint(&spec, &mut frame, tc).expect("the rendition is large enough");
        if out.write_all(&frame).is_err() {
            return;
        }
        n += 1;
        let due = start + Duration::from_nanos(n * 1_000_000_000 / u64::from(FPS));
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
}

/// Follows ffmpeg's playlists: parts and init segments of every
/// rendition, and the CODECS of its multivariant playlist.
fn watch_ffmpeg(s: &Shared) {
    while !s.stop.load(Ordering::Relaxed) {
        if s.codecs
            .lock()
            .expect("codecs lock")
            .iter()
            .any(Option::is_none)
        {
            if let Ok(text) = std::fs::read_to_string(s.dir.join("master.m3u8")) {
                read_codecs(s, &text);
            }
        }
        let mut grew = false;
        for (i, r) in s.renditions.iter().enumerate() {
            let Ok(text) = std::fs::read_to_string(s.dir.join(&r.name).join("ffmpeg.m3u8")) else {
                continue;
            };
            let mut init = None;
            let mut parts = BTreeMap::new();
            let mut dur = None;
            let known = s.media.lock().expect("media lock")[i].last();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
                    init = rest.strip_suffix('"').map(|u| s.dir.join(&r.name).join(u));
                } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
                    dur = rest.trim_end_matches(',').parse::<f64>().ok();
                } else if let Some(num) = line
                    .strip_prefix("seg")
                    .and_then(|l| l.strip_suffix(".m4s"))
                    .and_then(|l| l.parse::<u64>().ok())
                {
                    // A new part counts once its file is there (whatever
                    // the order of ffmpeg's renames), and so do the ones
                    // after it.
                    let fresh = known.is_none_or(|k| num > k);
                    if fresh && !s.dir.join(&r.name).join(line).exists() {
                        break;
                    }
                    if let Some(d) = dur.take() {
                        parts.insert(num, d);
                    }
                }
            }
            let mut media = s.media.lock().expect("media lock");
            let m = &mut media[i];
            if parts.keys().next_back() != m.parts.keys().next_back() || m.init.is_none() {
                grew = true;
            }
            m.parts = parts;
            if init.is_some() {
                m.init = init;
            }
        }
        if grew {
            s.changed.notify_all();
        }
        std::thread::sleep(POLL);
    }
}

/// `CODECS="..."` of each rendition's `#EXT-X-STREAM-INF` in ffmpeg's
/// multivariant playlist (its URI names the rendition's directory).
fn read_codecs(s: &Shared, text: &str) {
    let mut codecs = s.codecs.lock().expect("codecs lock");
    let mut attrs: Option<&str> = None;
    for line in text.lines() {
        if let Some(a) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            attrs = Some(a);
        } else if let (Some(a), Some(dir)) = (attrs, line.split('/').next()) {
            if let Some(i) = s.renditions.iter().position(|r| r.name == dir) {
                codecs[i] = a
                    .split_once("CODECS=\"")
                    .and_then(|(_, c)| c.split_once('"'))
                    .map(|(c, _)| c.to_string());
            }
            attrs = None;
        }
    }
}

/// Accepts connections until `stop`, one thread each.
fn serve(listener: TcpListener, s: &Arc<Shared>) {
    for conn in listener.incoming() {
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let s = Arc::clone(s);
        std::thread::spawn(move || {
            let _ = connection(conn, &s);
        });
    }
}

/// A response: status, headers, body.
struct Reply {
    status: u16,
    content_type: &'static str,
    cache: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn error(status: u16, why: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            cache: "no-store",
            body: why.as_bytes().to_vec(),
        }
    }
}

/// One HTTP/1.1 connection (keep-alive) until the peer closes it, an idle
/// minute passes, or the stream stops.
fn connection(conn: TcpStream, s: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut rd = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line)? == 0 || s.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next())
        else {
            return Ok(());
        };
        let (method, target) = (method.to_string(), target.to_string());
        let mut close = version != Some("HTTP/1.1");
        let (mut authorization, mut origin) = (None, None);
        loop {
            let mut h = String::new();
            if rd.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let Some((name, value)) = h.split_once(':') else {
                continue;
            };
            let value = value.trim().to_string();
            match name.to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value),
                "origin" => origin = Some(value),
                "connection" => close |= value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        let t0 = Instant::now();
        let reply = match method.as_str() {
            "OPTIONS" => None,
            "GET" | "HEAD" => Some(
                if s.authorization.is_some() && authorization != s.authorization {
                    Reply::error(401, "credentials required")
                } else {
                    get(s, &path, &query)
                },
            ),
            _ => Some(Reply::error(405, "GET, HEAD or OPTIONS")),
        };
        let status = reply.as_ref().map_or(204, |r| r.status);
        let error = match &reply {
            Some(r) if r.status >= 400 => String::from_utf8_lossy(&r.body).into_owned(),
            _ => String::new(),
        };
        s.log.lock().expect("log lock").push(Logged {
            method: method.clone(),
            path,
            query,
            authorization,
            origin,
            status,
            held: t0.elapsed(),
            error,
        });
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\nAccess-Control-Allow-Origin: *\r\n",
            reason(status)
        );
        match &reply {
            None => head.push_str(
                "Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n\
                 Access-Control-Allow-Headers: Authorization\r\n\
                 Access-Control-Max-Age: 600\r\nContent-Length: 0\r\n",
            ),
            Some(r) => {
                let _ = write!(
                    head,
                    "Content-Type: {}\r\nCache-Control: {}\r\nContent-Length: {}\r\n",
                    r.content_type,
                    r.cache,
                    r.body.len()
                );
            }
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        if let Some(r) = reply.filter(|_| method != "HEAD") {
            out.write_all(&r.body)?;
        }
        out.flush()?;
        if close {
            return Ok(());
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Error",
    }
}

fn query_u64(query: &str, name: &str) -> Option<Result<u64, ()>> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.parse().map_err(|_| ()))
}

/// Answers a `GET` of `path`.
fn get(s: &Shared, path: &str, query: &str) -> Reply {
    let Some(rest) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(s.cam.as_str()))
        .and_then(|p| p.strip_prefix('/'))
    else {
        return Reply::error(404, "no such camera");
    };
    if rest == "index.m3u8" {
        return multivariant(s);
    }
    let Some((name, file)) = rest.split_once('/') else {
        return Reply::error(404, "no such file");
    };
    let Some(i) = s.renditions.iter().position(|r| r.name == name) else {
        return Reply::error(404, "no such rendition");
    };
    if file == "index.m3u8" {
        return media_playlist(s, i, query);
    }
    if file == "init.mp4" {
        let init = s.media.lock().expect("media lock")[i].init.clone();
        return match init.map(std::fs::read) {
            Some(Ok(body)) => media(body),
            _ => Reply::error(404, "no init segment yet"),
        };
    }
    let num = |prefix: &str| {
        file.strip_prefix(prefix)
            .and_then(|f| f.strip_suffix(".m4s"))
            .and_then(|n| n.parse::<u64>().ok())
    };
    let parts = if let Some(n) = num("p") {
        n..n + 1
    } else if let Some(k) = num("s") {
        k * PARTS_PER_SEGMENT..(k + 1) * PARTS_PER_SEGMENT
    } else {
        return Reply::error(404, "no such file");
    };
    // Held until the last of them exists, if it is near: the hinted part,
    // or the rest of the segment in progress.
    let last = parts.end - 1;
    let present = wait_for(s, i, |m| {
        let l = m.last()?;
        (l >= last || last > l + PARTS_PER_SEGMENT).then_some(())
    });
    let mut body = Vec::new();
    {
        let media = s.media.lock().expect("media lock");
        if present.is_none() || !parts.clone().all(|n| media[i].parts.contains_key(&n)) {
            return Reply::error(404, "no such part");
        }
    }
    for n in parts {
        match std::fs::read(s.dir.join(name).join(format!("seg{n}.m4s"))) {
            Ok(b) => body.extend_from_slice(&b),
            Err(_) => return Reply::error(404, "part gone"),
        }
    }
    media(body)
}

fn media(body: Vec<u8>) -> Reply {
    Reply {
        status: 200,
        content_type: "video/mp4",
        cache: "max-age=60",
        body,
    }
}

/// Waits (at most [`HOLD`]) until `ready` gives a value for rendition `i`.
fn wait_for<T>(s: &Shared, i: usize, ready: impl Fn(&Media) -> Option<T>) -> Option<T> {
    let end = Instant::now() + HOLD;
    let mut media = s.media.lock().expect("media lock");
    loop {
        if let Some(v) = ready(&media[i]) {
            return Some(v);
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || s.stop.load(Ordering::SeqCst) {
            return None;
        }
        media = s.changed.wait_timeout(media, left).expect("media lock").0;
    }
}

fn multivariant(s: &Shared) -> Reply {
    let token = s.tokens.fetch_add(1, Ordering::Relaxed);
    let codecs = s.codecs.lock().expect("codecs lock");
    let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (r, c) in s.renditions.iter().zip(codecs.iter()) {
        let _ = write!(
            text,
            "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION={}x{},FRAME-RATE={FPS}.000,CODECS=\"{}\"\n{}/index.m3u8?s=v{token}\n",
            r.kbps * 1100,
            r.width,
            r.height,
            c.as_deref().unwrap_or("avc1.42c01e"),
            r.name
        );
    }
    Reply {
        status: 200,
        content_type: "application/vnd.apple.mpegurl",
        cache: "no-cache",
        body: text.into_bytes(),
    }
}

/// The LL-HLS media playlist of rendition `i`, after the blocking reload
/// asked by `_HLS_msn` / `_HLS_part` in `query`, if any.
fn media_playlist(s: &Shared, i: usize, query: &str) -> Reply {
    let msn = query_u64(query, "_HLS_msn");
    let part = query_u64(query, "_HLS_part");
    let (Ok(msn), Ok(part)) = (msn.transpose(), part.transpose()) else {
        return Reply::error(400, "bad _HLS_msn or _HLS_part");
    };
    if part.is_some() && msn.is_none() {
        return Reply::error(400, "_HLS_part without _HLS_msn");
    }
    let mut cache = "max-age=1";
    if let Some(msn) = msn {
        // The part asked for, as a part number; the whole segment when
        // `_HLS_part` is absent.
        let want = msn * PARTS_PER_SEGMENT + part.unwrap_or(PARTS_PER_SEGMENT - 1);
        let far = {
            let media = s.media.lock().expect("media lock");
            let last_msn = media[i].last().map_or(0, |l| l / PARTS_PER_SEGMENT);
            msn > last_msn + 2
        };
        if far {
            return Reply::error(400, "_HLS_msn beyond the last segment plus two");
        }
        cache = match wait_for(s, i, |m| m.last().filter(|&l| l >= want)) {
            Some(_) => "max-age=60",
            None => "no-store",
        };
    }
    let media = s.media.lock().expect("media lock");
    let m = &media[i];
    let Some(last) = m.last() else {
        return Reply::error(404, "no parts yet");
    };
    let done = (last + 1) / PARTS_PER_SEGMENT; // segments 0..done are complete
    let first_part = m.parts.keys().next().copied().unwrap_or(0);
    let first = done
        .saturating_sub(WINDOW)
        .max(first_part.div_ceil(PARTS_PER_SEGMENT));
    let dur = |n: u64| m.parts.get(&n).copied().unwrap_or(0.2);
    let mut text = format!(
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6\n\
         #EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
         #EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n"
    );
    let parts_of = |text: &mut String, k: u64, upto: u64| {
        for n in k * PARTS_PER_SEGMENT..upto {
            let _ = writeln!(
                text,
                "#EXT-X-PART:DURATION={:.5},URI=\"p{n}.m4s\",INDEPENDENT=YES",
                dur(n)
            );
        }
    };
    for k in first..done {
        if k + 3 >= done {
            parts_of(&mut text, k, (k + 1) * PARTS_PER_SEGMENT);
        }
        let d: f64 = (k * PARTS_PER_SEGMENT..(k + 1) * PARTS_PER_SEGMENT)
            .map(dur)
            .sum();
        let _ = writeln!(text, "#EXTINF:{d:.5},\ns{k}.m4s");
    }
    parts_of(&mut text, done, last + 1);
    let _ = writeln!(
        text,
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p{}.m4s\"",
        last + 1
    );
    Reply {
        status: 200,
        content_type: "application/vnd.apple.mpegurl",
        cache,
        body: text.into_bytes(),
    }
}
