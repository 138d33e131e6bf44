//! `framebus-recorder` for tests (docs/recording.md), and the real peers
//! that judge what it wrote:
//!
//! - [`Recorder`]: the server on port 0 with its own `--dir`, stopped
//!   (SIGTERM, then SIGKILL) on drop; its HTTP API through `curl`
//!   ([`curl`], [`Resp`]), the recording JSON as `serde_json` values;
//! - [`ffprobe_video`], [`first_frame`], [`decode_errors`]: ffprobe and
//!   ffmpeg on a file;
//! - [`frame_timecodes`], [`first_frame_timecode`]: the time code
//!   ([`framebus::timecode`]: capture time and frame counter) of every
//!   decoded frame of a file, read by ffmpeg as gray pictures of the top
//!   bands;
//! - [`mp4_boxes`]: the top-level boxes of an MP4 file and whether its
//!   tail is cut short (what a `kill -9` may leave);
//! - [`Source`]: a time-coded test pattern, its `framebus-encoder` and an
//!   [`EncodedLog`] of the encoded bus: what a recording test records;
//! - [`EncodedLog`]: every access unit of an encoded bus as a reader of it
//!   saw them (capture time, keyframe flag): what the recorder could have
//!   recorded, to compare with what it did;
//! - [`rfc3339_ns`], [`rfc3339`]: the API's times, parsed and written here
//!   so that a check never reuses the recorder's own formatter;
//! - [`in_private_tmpfs`], [`in_mount_namespace_of`]: a command run in a
//!   private mount namespace with a small tmpfs of its own (disk-full
//!   tests; root).
//!
//! Every wait is a watchdog with a message saying what did not happen.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use framebus::timecode::{self, TimeCode};
use framebus::{Reader, ReaderOptions};
use serde_json::Value;

use crate::feed::{FeedOptions, Feeder};
use crate::http::Resp;
use crate::{
    bins, listening, run, run_to_end, unique_name, ChildGuard, Encoder, Listening, TempDir,
};

/// Bound on one `curl`, `ffprobe` or `ffmpeg` run (a watchdog).
pub const TOOL_LIMIT: Duration = Duration::from_secs(60);

/// The keys of a recording's JSON (docs/recording.md, "Recording JSON").
pub const RECORDING_KEYS: &[&str] = &[
    "id",
    "stream",
    "bus",
    "kind",
    "state",
    "requested_at",
    "requested_preroll_s",
    "requested_duration_s",
    "start",
    "preroll_s",
    "end",
    "duration_s",
    "frames",
    "bytes",
    "width",
    "height",
    "codec",
    "first_frame_realtime_ns",
    "requested_at_realtime_ns",
    "error",
    "snapshot",
    "file",
];

/// A running `framebus-recorder`, stopped with SIGTERM when dropped
/// (SIGKILL to its group if it is still running 10 s later).
pub struct Recorder {
    /// The process.
    pub child: ChildGuard,
    /// Its `listening on` line.
    pub listening: Listening,
    /// Its `--dir`.
    pub dir: PathBuf,
}

impl Recorder {
    /// `framebus-recorder --listen 127.0.0.1:0 --dir DIR [--shm-dir D]
    /// EXTRA...`, with `RUST_LOG=warn`, without credentials from the
    /// environment, stderr inherited.
    pub fn command(dir: &Path, shm_dir: Option<&Path>, extra: &[&str]) -> Command {
        let mut cmd = Command::new(bins::path("framebus-recorder"));
        cmd.args(["--listen", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("FRAMEBUS_RECORDER_AUTH")
            .stderr(Stdio::inherit());
        if let Some(d) = shm_dir {
            cmd.arg("--shm-dir").arg(d);
        }
        cmd
    }

    /// Starts a recorder writing to `dir` (buses in the default shm
    /// directory) and waits for its listening line.
    pub fn start(dir: &Path, extra: &[&str]) -> Recorder {
        Recorder::start_in(dir, None, extra)
    }

    /// [`Recorder::start`] with the buses in `shm_dir`.
    pub fn start_in(dir: &Path, shm_dir: Option<&Path>, extra: &[&str]) -> Recorder {
        Recorder::spawn(&mut Recorder::command(dir, shm_dir, extra), dir)
    }

    /// Runs `cmd` (a [`Recorder::command`], possibly wrapped: see
    /// [`in_private_tmpfs`]) and waits for its listening line; `dir` is
    /// its `--dir`.
    pub fn spawn(cmd: &mut Command, dir: &Path) -> Recorder {
        let (child, mut l) = listening::spawn(cmd, 1);
        let listening = l.remove(0);
        assert!(listening.url.starts_with("http://"), "{listening:?}");
        Recorder {
            child,
            listening,
            dir: dir.to_path_buf(),
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// `http://127.0.0.1:PORT` (no trailing `/`).
    pub fn base(&self) -> &str {
        self.listening.base()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Resp {
        curl("GET", &self.url(path), None, None, &[])
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Resp {
        curl("DELETE", &self.url(path), None, None, &[])
    }

    /// `POST path` with `body` as `application/json` (sent as is: it may
    /// be bad JSON on purpose).
    pub fn post(&self, path: &str, body: &str) -> Resp {
        curl(
            "POST",
            &self.url(path),
            Some(("application/json", body.as_bytes())),
            None,
            &[],
        )
    }

    /// `POST /api/v1/recordings` with `body`.
    pub fn post_recording(&self, body: &Value) -> Resp {
        self.post("/api/v1/recordings", &body.to_string())
    }

    /// `POST /api/v1/recordings` with `body`, expecting `201`; the
    /// recording (see [`assert_recording_shape`] for its keys).
    pub fn create(&self, body: &Value) -> Value {
        let r = self.post_recording(body);
        assert_eq!(r.status, 201, "POST /api/v1/recordings {body}: {r:?}");
        r.json()
    }

    /// `GET /api/v1/recordings/{id}`, expecting `200`.
    pub fn recording(&self, id: &str) -> Value {
        let r = self.get(&format!("/api/v1/recordings/{id}"));
        assert_eq!(r.status, 200, "GET recording {id}: {r:?}");
        r.json()
    }

    /// `GET /api/v1/recordings{query}` (`query` empty or `?...`),
    /// expecting `200` and `{"recordings": [...]}`; the list.
    pub fn list(&self, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/api/v1/recordings{query}"));
        assert_eq!(r.status, 200, "GET /api/v1/recordings{query}: {r:?}");
        let v = r.json();
        v["recordings"]
            .as_array()
            .unwrap_or_else(|| panic!("no \"recordings\" array: {v}"))
            .clone()
    }

    /// Polls recording `id` until its state is `want` (watchdog `limit`);
    /// the recording then. Panics at once if it reached another final
    /// state (`done`, `failed`, `interrupted`).
    pub fn wait_state(&self, id: &str, want: &str, limit: Duration) -> Value {
        let end = Instant::now() + limit;
        loop {
            let v = self.recording(id);
            let state = v["state"].as_str().unwrap_or("");
            if state == want {
                return v;
            }
            let fin = ["done", "failed", "interrupted"];
            assert!(
                !fin.contains(&state),
                "recording {id} ended in state {state:?}, not {want:?}: {v:#}"
            );
            assert!(
                Instant::now() < end,
                "watchdog: recording {id} not {want:?} within {limit:?}: {v:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET /api/v1/recordings/{id}/{name}` (`file.mp4`,
    /// `fragmented.mp4`, `snapshot.jpg`) into `to`; the response (its body
    /// is in `to`, not in [`Resp::body`]).
    pub fn download(&self, id: &str, name: &str, to: &Path) -> Resp {
        curl(
            "GET",
            &self.url(&format!("/api/v1/recordings/{id}/{name}")),
            None,
            Some(to),
            &[],
        )
    }

    /// [`Recorder::download`] expecting `200`.
    pub fn download_ok(&self, id: &str, name: &str, to: &Path) -> Resp {
        let r = self.download(id, name, to);
        assert_eq!(r.status, 200, "GET {id}/{name}: {r:?}");
        r
    }

    /// `/healthz` answers `200`.
    pub fn healthy(&self) -> bool {
        self.health().is_some_and(|r| r.status == 200)
    }

    /// `GET /healthz` (`None`: no answer at all).
    pub fn health(&self) -> Option<Resp> {
        try_curl("GET", &self.url("/healthz"), None, None, &[])
    }

    /// Asserts that the recorder still serves while its directory fails
    /// it: `/healthz` answers, and unless it says `200` it is a `503`
    /// that names the problem (`words`, one of them).
    pub fn assert_serving_despite(&self, words: &[&str]) {
        let r = self
            .health()
            .unwrap_or_else(|| panic!("/healthz does not answer: the recorder stopped serving"));
        let text = r.text();
        assert!(
            r.status == 200 || (r.status == 503 && words.iter().any(|w| text.contains(w))),
            "/healthz: neither healthy nor a 503 naming {words:?}: {r:?}"
        );
        eprintln!("/healthz: {} {}", r.status, text.trim());
    }

    /// Stops the recorder with SIGTERM; its exit status (watchdog 15 s).
    pub fn stop(&mut self) -> ExitStatus {
        self.child
            .signal_and_wait(libc::SIGTERM, Duration::from_secs(15))
    }

    /// `kill -9` of the recorder (its whole process group), reaped.
    pub fn kill9(&mut self) -> ExitStatus {
        self.child.kill()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.child.alive() {
            self.child.signal(libc::SIGTERM);
            if self.child.exits_within(Duration::from_secs(10)).is_none() {
                eprintln!(
                    "framebus-recorder (pid {}) still running 10 s after SIGTERM: killed",
                    self.child.pid()
                );
            }
        }
        // ChildGuard's own drop kills what is left of the group.
    }
}

/// Asserts that `v` is a recording with every key of [`RECORDING_KEYS`].
pub fn assert_recording_shape(v: &Value) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("a recording is a JSON object: {v}"));
    let missing: Vec<&str> = RECORDING_KEYS
        .iter()
        .copied()
        .filter(|k| !obj.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "recording JSON lacks {missing:?} (docs/recording.md): {v:#}"
    );
}

/// `v[key]` as a string; panics naming the key and showing `v`.
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key:?} is not a string in {v:#}"))
}

/// `v[key]` as a number.
pub fn f64_of(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key:?} is not a number in {v:#}"))
}

/// `v[key]` as an unsigned integer.
pub fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key:?} is not an unsigned integer in {v:#}"))
}

/// One request with `curl` (`-s`, 30 s bound): `METHOD url`, with a body
/// (`Content-Type`, bytes), into the file `out` if given, with `extra`
/// arguments (`-r 0-99`). Panics if curl cannot be run or got no response
/// at all.
pub fn curl(
    method: &str,
    url: &str,
    body: Option<(&str, &[u8])>,
    out: Option<&Path>,
    extra: &[&str],
) -> Resp {
    try_curl(method, url, body, out, extra)
        .unwrap_or_else(|| panic!("curl {method} {url}: no response"))
}

/// [`curl`], `None` when there was no response (refused, reset, timeout).
pub fn try_curl(
    method: &str,
    url: &str,
    body: Option<(&str, &[u8])>,
    out: Option<&Path>,
    extra: &[&str],
) -> Option<Resp> {
    let tmp = TempDir::new("curl");
    let (hf, bf) = (tmp.path().join("head"), tmp.path().join("body"));
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "--max-time", "30", "-X", method, "-D"])
        .arg(&hf)
        .arg("-o")
        .arg(out.unwrap_or(&bf))
        .args(["-w", "%{http_code}"])
        .args(extra);
    if let Some((ctype, bytes)) = body {
        let f = tmp.path().join("request");
        std::fs::write(&f, bytes).unwrap_or_else(|e| panic!("write {}: {e}", f.display()));
        cmd.arg("-H")
            .arg(format!("Content-Type: {ctype}"))
            .arg("--data-binary")
            .arg(format!("@{}", f.display()));
    }
    cmd.arg(url);
    let o = run_to_end(&mut cmd, TOOL_LIMIT);
    let status: u16 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if status == 0 {
        return None;
    }
    let head = std::fs::read_to_string(&hf).unwrap_or_default();
    // The last response's header block (curl writes every one it saw).
    let last = head
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    let head = last.split_once("\r\n").map_or("", |(_, h)| h).to_string();
    // Into a file: the body stays there, unless it is an error (then it
    // is the message, for the test's report).
    let body = match out {
        Some(f) if status >= 400 => std::fs::read(f).unwrap_or_default(),
        Some(_) => Vec::new(),
        None => std::fs::read(&bf).unwrap_or_default(),
    };
    Some(Resp { status, head, body })
}

/// What ffprobe says of the first video stream of a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// `codec_name` (`h264`).
    pub codec: String,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames decoded (`-count_frames`: `nb_read_frames`).
    pub frames: u64,
    /// The stream's duration, seconds (the container's when the stream
    /// has none).
    pub duration: f64,
}

/// Runs a tool to its end (watchdog [`TOOL_LIMIT`]); panics if it cannot
/// be started.
fn tool(cmd: &mut Command) -> Output {
    run_to_end(cmd, TOOL_LIMIT)
}

/// ffprobe of `path`'s first video stream (frames counted by decoding);
/// panics with ffprobe's message when it cannot read the file.
pub fn ffprobe_video(path: &Path) -> Probe {
    let o = tool(
        Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args(["-show_entries"])
            .arg("stream=codec_name,width,height,nb_read_frames,duration:format=duration")
            .args(["-of", "json"])
            .arg(path),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "ffprobe {}: {}\n{text}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("ffprobe {} output ({e}): {text}", path.display()));
    let s = &v["streams"][0];
    assert!(s.is_object(), "no video stream in {}: {v}", path.display());
    let num = |x: &Value| -> Option<f64> {
        x.as_f64()
            .or_else(|| x.as_str().and_then(|t| t.parse().ok()))
    };
    Probe {
        codec: s["codec_name"].as_str().unwrap_or("").to_string(),
        width: s["width"].as_u64().unwrap_or(0) as u32,
        height: s["height"].as_u64().unwrap_or(0) as u32,
        frames: num(&s["nb_read_frames"]).unwrap_or(0.0) as u64,
        duration: num(&s["duration"])
            .or_else(|| num(&v["format"]["duration"]))
            .unwrap_or_else(|| panic!("no duration for {}: {v}", path.display())),
    }
}

/// ffprobe's view of the first decoded frame of `path`: (`key_frame`,
/// `pict_type`).
pub fn first_frame(path: &Path) -> (bool, String) {
    let o = tool(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(["-read_intervals", "%+#1", "-show_entries"])
            .args(["frame=key_frame,pict_type", "-of", "json"])
            .arg(path),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "ffprobe -show_frames {}: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("ffprobe {} output ({e}): {text}", path.display()));
    let f = &v["frames"][0];
    assert!(f.is_object(), "no frame in {}: {v}", path.display());
    (
        f["key_frame"].as_u64() == Some(1),
        f["pict_type"].as_str().unwrap_or("").to_string(),
    )
}

/// What `ffmpeg -v error -i PATH -f null -` prints (decoding every frame):
/// empty for a clean file. A non-zero exit adds a line saying so.
pub fn decode_errors(path: &Path) -> String {
    let o = tool(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(path)
            .args(["-f", "null", "-"]),
    );
    let mut e = String::from_utf8_lossy(&o.stderr).into_owned();
    if !o.status.success() {
        e.push_str(&format!("ffmpeg exited with {}\n", o.status));
    }
    e
}

/// The lines of [`decode_errors`] that a file cut short inside its last
/// box produces (ffmpeg 5.1 on an fMP4 whose last `mdat` is partial), and
/// only those; what else there is comes back as `Err`.
pub fn only_truncation_errors(errors: &str) -> Result<(), Vec<String>> {
    const TAIL: &[&str] = &[
        "partial file",
        "Invalid NAL unit size",
        "Error splitting the input into NAL units",
        "missing picture in access unit",
        "Error while decoding stream #0:0: Invalid data found when processing input",
    ];
    let other: Vec<String> = errors
        .lines()
        .filter(|l| !l.trim().is_empty() && !TAIL.iter().any(|t| l.contains(t)))
        .map(str::to_string)
        .collect();
    if other.is_empty() {
        Ok(())
    } else {
        Err(other)
    }
}

/// Asserts that `path` is an H.264 file of `size` that plays: ffprobe
/// reads it, ffmpeg decodes every frame without a word
/// ([`decode_errors`]), and its first frame is a keyframe (an I picture);
/// what ffprobe says of it. `what` names it in messages.
pub fn assert_plays(path: &Path, size: (u32, u32), what: &str) -> Probe {
    let p = ffprobe_video(path);
    assert_eq!(p.codec, "h264", "{what}: {p:?}");
    assert_eq!((p.width, p.height), size, "{what}: {p:?}");
    assert!(p.frames > 0, "{what}: no frame: {p:?}");
    let errors = decode_errors(path);
    assert!(
        errors.is_empty(),
        "{what}: `ffmpeg -v error -i {} -f null -` says:\n{errors}",
        path.display()
    );
    let (key, pict) = first_frame(path);
    assert!(
        key && pict == "I",
        "{what}: the first frame is not a keyframe (key_frame {key}, pict_type {pict:?})"
    );
    p
}

/// Width and height of `path`'s first video stream (no frame counting).
fn video_size(path: &Path) -> (u32, u32) {
    let o = tool(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args(["stream=width,height", "-of", "csv=p=0:s=x"])
            .arg(path),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text.lines().find(|l| l.contains('x')).unwrap_or("");
    let (w, h) = line.trim().split_once('x').unwrap_or(("", ""));
    match (w.parse(), h.parse()) {
        (Ok(w), Ok(h)) => (w, h),
        _ => panic!(
            "no video size for {}: {text}{}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

/// The time code of every decoded frame of `path`, in presentation order
/// (`None` where a frame has no readable code). ffmpeg decodes the file
/// (every frame, no rate conversion: `-fps_mode passthrough`) and hands
/// over gray pictures of the two top bands only.
pub fn frame_timecodes(path: &Path) -> Vec<Option<TimeCode>> {
    timecodes(path, None)
}

/// The time code of the first decoded frame of `path`; panics if it has
/// none.
pub fn first_frame_timecode(path: &Path) -> TimeCode {
    timecodes(path, Some(1))
        .first()
        .copied()
        .flatten()
        .unwrap_or_else(|| panic!("no time code in the first frame of {}", path.display()))
}

fn timecodes(path: &Path, frames: Option<u32>) -> Vec<Option<TimeCode>> {
    let (w, h) = video_size(path);
    // Rows 0 .. 2 * h/24: both bands (framebus::timecode).
    let rows = 2 * timecode::band_height(h);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error", "-i"]).arg(path).args([
        "-map",
        "0:v:0",
        "-fps_mode",
        "passthrough",
    ]);
    if let Some(n) = frames {
        cmd.args(["-frames:v", &n.to_string()]);
    }
    cmd.args(["-vf", &format!("crop={w}:{rows}:0:0")])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"]);
    let o = tool(&mut cmd);
    let picture = (w * rows) as usize;
    assert!(
        picture > 0 && o.stdout.len().is_multiple_of(picture),
        "ffmpeg gave {} bytes, not whole {w}x{rows} pictures, for {}: {}",
        o.stdout.len(),
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
        .chunks(picture)
        .map(|p| timecode::decode_with(w, h, |x, y| p[(y * w + x) as usize]))
        .collect()
}

/// One top-level box of an MP4 file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mp4Box {
    /// Its four-character type (`ftyp`, `moov`, `moof`, `mdat`...).
    pub kind: String,
    /// Its offset in the file.
    pub offset: u64,
    /// Its size as declared (header included).
    pub size: u64,
}

/// The top-level boxes of an MP4 file, and the end offset its last box
/// declares when that is beyond the end of the file (a file cut short:
/// `Some(declared end)`).
pub struct Mp4Layout {
    /// Every box whose header could be read, in file order.
    pub boxes: Vec<Mp4Box>,
    /// The file's length.
    pub len: u64,
    /// `Some(declared end)` when the last box does not fit in the file.
    pub truncated: Option<u64>,
}

impl Mp4Layout {
    /// The box types in order, `free` and `skip` left out.
    pub fn kinds(&self) -> Vec<&str> {
        self.boxes
            .iter()
            .map(|b| b.kind.as_str())
            .filter(|k| !matches!(*k, "free" | "skip"))
            .collect()
    }

    /// Where the whole fragments end: after the last `mdat` that is
    /// complete (a `moof` without its `mdat`, or a cut-short box, is left
    /// out); the whole file when nothing is cut short.
    pub fn whole_len(&self) -> u64 {
        if self.truncated.is_none() {
            return self.len;
        }
        let fits = |b: &&Mp4Box| b.offset + b.size <= self.len;
        self.boxes
            .iter()
            .filter(fits)
            .rfind(|b| b.kind == "mdat")
            .or_else(|| self.boxes.iter().filter(fits).rfind(|b| b.kind == "moov"))
            .map_or(0, |b| b.offset + b.size)
    }

    /// Whether the boxes are `ftyp`, `moov`, then `moof`+`mdat` pairs
    /// (at least one), up to a cut-short tail: a fragmented MP4.
    pub fn is_fragmented(&self) -> bool {
        let k = self.kinds();
        // The last box read is the cut-short one, if any.
        let whole = &k[..k.len() - usize::from(self.truncated.is_some() && !k.is_empty())];
        if whole.len() < 4 || whole[..2] != ["ftyp", "moov"] {
            return false;
        }
        let mut rest = whole[2..].iter();
        loop {
            match (rest.next(), rest.next()) {
                (None, _) => return true,
                (Some(&"moof"), Some(&"mdat")) => {}
                // Its mdat is the cut-short box.
                (Some(&"moof"), None) => return self.truncated.is_some(),
                _ => return false,
            }
        }
    }

    /// The number of `moof` boxes.
    pub fn fragments(&self) -> usize {
        self.boxes.iter().filter(|b| b.kind == "moof").count()
    }
}

/// Walks the top-level boxes of the MP4 file at `path`.
pub fn mp4_boxes(path: &Path) -> Mp4Layout {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let len = data.len() as u64;
    let mut boxes = Vec::new();
    let mut at = 0u64;
    let mut truncated = None;
    while at + 8 <= len {
        let i = at as usize;
        let size32 = u32::from_be_bytes(data[i..i + 4].try_into().expect("4 bytes"));
        let kind = String::from_utf8_lossy(&data[i + 4..i + 8]).into_owned();
        let size = match size32 {
            0 => len - at,
            1 if at + 16 <= len => {
                u64::from_be_bytes(data[i + 8..i + 16].try_into().expect("8 bytes"))
            }
            1 => {
                truncated = Some(at + 16);
                break;
            }
            s => u64::from(s),
        };
        assert!(
            size >= 8,
            "{}: box {kind:?} at {at} declares {size} bytes",
            path.display()
        );
        boxes.push(Mp4Box {
            kind,
            offset: at,
            size,
        });
        if at + size > len {
            truncated = Some(at + size);
            break;
        }
        at += size;
    }
    if truncated.is_none() && at < len {
        // A few bytes, not even a box header.
        truncated = Some(at + 8);
    }
    Mp4Layout {
        boxes,
        len,
        truncated,
    }
}

/// Copies the whole boxes of `from` (without a cut-short tail) to `to`.
pub fn copy_whole_boxes(from: &Path, to: &Path) -> Mp4Layout {
    let layout = mp4_boxes(from);
    let data = std::fs::read(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    std::fs::File::create(to)
        .and_then(|mut f| f.write_all(&data[..layout.whole_len() as usize]))
        .unwrap_or_else(|e| panic!("write {}: {e}", to.display()));
    layout
}

/// One access unit of an encoded bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessUnit {
    /// Its sequence number on the bus.
    pub seq: u64,
    /// Capture time of the raw frame it was made from, CLOCK_REALTIME ns
    /// (the time code's `realtime_us` × 1000 + less than 1000).
    pub realtime_ns: u64,
    /// Presentation time in the bus's time base (90 kHz for H.264): on
    /// the encoder's 1/fps grid, where `realtime_ns` carries the capture
    /// jitter.
    pub pts: u64,
    /// A keyframe (IDR).
    pub key: bool,
    /// Frames this reader lost just before it (0 unless it fell behind).
    pub skipped: u64,
    /// When this reader got it.
    pub read_at: Instant,
}

impl AccessUnit {
    /// The capture time in µs, as the time code carries it.
    pub fn realtime_us(&self) -> u64 {
        self.realtime_ns / 1000
    }
}

/// Every access unit of an encoded bus, as a reader of its own sees them,
/// from [`EncodedLog::start`] until dropped: what a recorder could have
/// recorded. Being a reader, it also keeps an on-demand encoder running.
pub struct EncodedLog {
    /// The encoded bus.
    pub bus: String,
    units: Arc<Mutex<Vec<AccessUnit>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EncodedLog {
    /// Starts reading `bus` (waiting up to 30 s for it to exist).
    pub fn start(bus: &str, shm_dir: Option<&Path>) -> EncodedLog {
        let units = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let opts = ReaderOptions {
            wait: Some(Duration::from_secs(30)),
            shm_dir: shm_dir.map(Path::to_path_buf),
        };
        let mut reader = Reader::attach(bus, opts).unwrap_or_else(|e| panic!("attach {bus}: {e}"));
        let thread = {
            let (units, stop) = (Arc::clone(&units), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(f) = reader.next_encoded(Some(Duration::from_millis(50))) {
                        let u = AccessUnit {
                            seq: f.seq(),
                            realtime_ns: f.realtime_ns(),
                            pts: f.pts(),
                            key: f.is_keyframe(),
                            skipped: f.skipped(),
                            read_at: Instant::now(),
                        };
                        drop(f);
                        units.lock().expect("log lock").push(u);
                    }
                }
            })
        };
        EncodedLog {
            bus: bus.to_string(),
            units,
            stop,
            thread: Some(thread),
        }
    }

    /// The access units so far.
    pub fn units(&self) -> Vec<AccessUnit> {
        self.units.lock().expect("log lock").clone()
    }

    /// Waits (watchdog `limit`) until a unit captured at or after
    /// `realtime_ns` was read; the units then.
    pub fn wait_past(&self, realtime_ns: u64, limit: Duration) -> Vec<AccessUnit> {
        let end = Instant::now() + limit;
        loop {
            let u = self.units();
            if u.last().is_some_and(|l| l.realtime_ns >= realtime_ns) {
                return u;
            }
            assert!(
                Instant::now() < end,
                "watchdog: {} carried no frame captured after {realtime_ns} ns within {limit:?} (last: {:?})",
                self.bus,
                u.last()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The longest wait between two access units so far: how long the
    /// encoder (or this machine) stopped delivering. A player that stalls
    /// when this exceeds its buffer ran dry for want of frames, not
    /// because of what serves them.
    pub fn longest_gap(&self) -> Duration {
        let u = self.units();
        u.windows(2)
            .map(|w| w[1].read_at.duration_since(w[0].read_at))
            .max()
            .unwrap_or_default()
    }

    /// Frames this reader lost by falling behind (it then has gaps).
    pub fn skipped(&self) -> u64 {
        self.units().iter().map(|u| u.skipped).sum()
    }
}

impl Drop for EncodedLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a recording test records: a bus fed with the moving, time-coded
/// test pattern ([`Feeder`]), a `framebus-encoder` writing
/// `{bus}.h264.{profile}`, and an [`EncodedLog`] of that encoded bus
/// (which, as a reader, keeps the on-demand encoder running). Dropped in
/// that order: log, encoder, feed.
pub struct Source {
    /// Every access unit of the encoded bus.
    pub log: EncodedLog,
    /// The encoder.
    pub encoder: Encoder,
    /// The raw bus and its feeding thread.
    pub feed: Feeder,
    /// The stream as the recorder's API names it: `{bus}/{profile}`.
    pub stream: String,
}

impl Source {
    /// A bus named after `tag` ([`unique_name`]) fed with `opts`, encoded
    /// with `profile` (`NAME=WxH@FPS,...` as `framebus-encoder --profile`
    /// takes it) at a steady rate (`--no-adapt`), in the default shm
    /// directory; returns once the encoded bus is live.
    pub fn start(tag: &str, opts: FeedOptions, profile: &str) -> Source {
        let bus = unique_name(tag);
        let feed = Feeder::with(&bus, opts);
        let encoder = Encoder::start(&bus, profile, &["--no-adapt"], None);
        let log = EncodedLog::start(&encoder.out, None);
        let name = profile.split(['=', ',', '@']).next().unwrap_or(profile);
        Source {
            log,
            stream: format!("{bus}/{name}"),
            encoder,
            feed,
        }
    }

    /// The raw bus.
    pub fn raw_bus(&self) -> &str {
        &self.feed.name
    }

    /// The encoded bus (`{bus}.h264.{profile}`).
    pub fn bus(&self) -> &str {
        &self.encoder.out
    }
}

/// Where the frames of a file (their time codes) sit in an [`EncodedLog`]:
/// the index of the first, after checking that the file holds exactly
/// the consecutive units from there (none lost, none repeated, none
/// reordered). Panics with the first difference.
pub fn locate_in_log(units: &[AccessUnit], codes: &[Option<TimeCode>], what: &str) -> usize {
    let codes: Vec<u64> = codes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.unwrap_or_else(|| panic!("{what}: frame {i} has no readable time code"))
                .realtime_us
        })
        .collect();
    let first = *codes.first().unwrap_or_else(|| panic!("{what}: no frame"));
    let i0 = units
        .iter()
        .position(|u| u.realtime_us() == first)
        .unwrap_or_else(|| {
            panic!(
                "{what}: its first frame (captured at {first} µs) is not among the {} access units the bus carried ({:?} .. {:?})",
                units.len(),
                units.first().map(|u| u.realtime_us()),
                units.last().map(|u| u.realtime_us()),
            )
        });
    let want: Vec<u64> = units[i0..]
        .iter()
        .take(codes.len())
        .map(AccessUnit::realtime_us)
        .collect();
    if want != codes {
        let at = want
            .iter()
            .zip(&codes)
            .position(|(a, b)| a != b)
            .unwrap_or(want.len().min(codes.len()));
        let set: BTreeSet<u64> = codes.iter().copied().collect();
        let lost = want.iter().filter(|u| !set.contains(u)).count();
        panic!(
            "{what}: the file's {} frames differ from the bus's access units from the first one on, \
             at frame {at}: bus {:?}, file {:?} ({lost} of the bus's frames missing from the file{})",
            codes.len(),
            want.get(at),
            codes.get(at),
            if want.len() < codes.len() {
                "; the bus log ends first"
            } else {
                ""
            }
        );
    }
    i0
}

/// Nanoseconds since the Unix epoch of an RFC 3339 time
/// (`2026-11-30T06:51:01.582Z`, `...+01:00`, any number of fraction
/// digits); panics on anything else.
pub fn rfc3339_ns(s: &str) -> i128 {
    let bad = || -> ! { panic!("not an RFC 3339 time: {s:?}") };
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        bad();
    }
    let num = |r: std::ops::Range<usize>| -> i64 {
        s.get(r)
            .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| bad())
    };
    let (y, mo, d) = (num(0..4), num(5..7), num(8..10));
    if b[13] != b':' || b[16] != b':' {
        bad();
    }
    let (h, mi, se) = (num(11..13), num(14..16), num(17..19));
    let mut i = 19;
    let mut frac_ns: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            bad();
        }
        let mut scaled = String::from(digits);
        scaled.truncate(9);
        while scaled.len() < 9 {
            scaled.push('0');
        }
        frac_ns = scaled.parse().unwrap_or_else(|_| bad());
    }
    let offset_s: i64 = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && matches!(&tz[..1], "+" | "-") && &tz[3..4] == ":" => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (num(i + 1..i + 3) * 3600 + num(i + 4..i + 6) * 60)
        }
        _ => bad(),
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    i128::from(secs) * 1_000_000_000 + frac_ns
}

/// `ns` since the Unix epoch as RFC 3339 UTC with milliseconds
/// (`2026-11-30T06:51:01.582Z`), rounded down.
pub fn rfc3339(ns: i128) -> String {
    let ms = ns.div_euclid(1_000_000);
    let secs = ms.div_euclid(1000) as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Fails the test (not a skip) unless it runs as root.
pub fn require_root(why: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root ({why}): run it as root, as CI does"
    );
}

/// `cmd` run in a new private mount namespace (`unshare --mount
/// --propagation private`, root) in which a tmpfs of `size` (`2m`) is
/// mounted on `mountpoint` first: the program sees a small disk of its
/// own there, the rest of the machine sees nothing (the existing
/// directory `mountpoint` stays as it was). The namespace, and the tmpfs
/// with it, goes away with the last process in it. Arguments and
/// environment of `cmd` are kept; stdio is the returned command's.
pub fn in_private_tmpfs(cmd: &Command, mountpoint: &Path, size: &str) -> Command {
    require_root("a private mount namespace with a tmpfs");
    let mut w = Command::new("unshare");
    w.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size={size},mode=0755 framebus-test \"$0\" && exec \"$@\""
        ))
        .arg(mountpoint)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    w.stderr(Stdio::inherit());
    w
}

/// Runs `args` in the mount namespace of process `pid` (`nsenter -t PID
/// -m`, root); its output (20 s bound).
pub fn in_mount_namespace_of(pid: u32, args: &[&str]) -> Output {
    require_root("entering a mount namespace");
    run(
        Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "--"])
            .args(args),
        Duration::from_secs(20),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let ns = rfc3339_ns("2026-11-30T06:51:01.582Z");
        assert_eq!(rfc3339(ns), "2026-11-30T06:51:01.582Z");
        assert_eq!(rfc3339_ns("1970-01-01T00:00:00Z"), 0);
        assert_eq!(rfc3339_ns("1970-01-01T01:00:00.5+01:00"), 500_000_000);
        assert_eq!(rfc3339_ns("2000-03-01T00:00:00.000000001Z") % 1000, 1);
        assert_eq!(rfc3339(951_868_800_000_000_000), "2000-03-01T00:00:00.000Z");
    }

    #[test]
    fn truncation_errors_are_told_apart() {
        let tail = "[mov,mp4 @ 0x1] stream 0, offset 0x952e: partial file\n\
                    [h264 @ 0x2] Invalid NAL unit size (34 > 8).\n";
        assert!(only_truncation_errors(tail).is_ok());
        assert!(only_truncation_errors("").is_ok());
        assert!(only_truncation_errors("[h264 @ 0x2] no frame!\n").is_err());
    }
}
