//! `GET /api/v1/console`: one document with everything the console page
//! shows, gathered on each request from what already exists: the bus
//! headers in the shm directory (capture and encoder state, readers), the
//! supervisors' status files (`framebus::contract::status`: the publishers
//! and encoders a `framebus-producer --config` runs, with restarts and the
//! last reason) and this server's own streams, WebRTC sessions and HLS
//! muxers. `framebus status --json` reads the same sources; this is its
//! per-camera view for a page, with each camera's microphone
//! ([`Audio`]). [`levels`] is the small answer the page's level meters
//! poll between two documents. The format is in `docs/console.md`.

use std::path::Path;

use framebus::contract::status::{self, PublisherStatus};
use framebus::contract::{audio, encoder, streams::StreamStatus};
use framebus::BusInfo;
use serde::Serialize;

use crate::mjpeg::api::{all_status, health_problems};
use crate::mjpeg::audio::Microphone;
use crate::mjpeg::state::AppState;

/// The document's format version.
pub const VERSION: u32 = 1;

/// The whole document.
#[derive(Debug, Serialize)]
pub struct Console {
    /// [`VERSION`].
    pub version: u32,
    /// When it was gathered, Unix milliseconds.
    pub updated_unix_ms: u64,
    /// `healthy` or `degraded`.
    pub health: &'static str,
    /// What makes it degraded, one sentence each.
    pub problems: Vec<String>,
    /// Every camera and every other raw bus (an annotated bus a Python
    /// program writes), configured ones first.
    pub cameras: Vec<Camera>,
    /// The supervised publishers (not the encoders: those are under their
    /// camera), from the live supervisors' status files.
    pub publishers: Vec<PublisherStatus>,
    /// The supervising producer, when there is one.
    pub supervisor: Option<Supervisor>,
    /// What this server offers the page.
    pub outputs: Outputs,
}

/// The `framebus-producer --config` whose status file was read.
#[derive(Debug, Serialize)]
pub struct Supervisor {
    /// Its pid.
    pub pid: u32,
    /// The config file it runs.
    pub config: String,
}

/// What the server offers besides MJPEG.
#[derive(Debug, Serialize)]
pub struct Outputs {
    /// WHEP is served.
    pub webrtc: bool,
    /// LL-HLS is served.
    pub hls: bool,
    /// Where hls.js is served, if it is.
    pub hls_js: Option<String>,
    /// The recorder's API is reachable through this server
    /// (`/api/v1/recordings`).
    pub recorder: bool,
    /// The RTSP server's URL (`rtsp://127.0.0.1:8554/`); a host of
    /// `0.0.0.0` means "the host the page was loaded from".
    pub rtsp: Option<String>,
    /// Requests need credentials.
    pub auth: bool,
}

/// One raw bus.
#[derive(Debug, Serialize)]
pub struct Camera {
    /// Bus name.
    pub bus: String,
    /// A `[[camera]]` of the supervisor (else a bus some other program
    /// writes).
    pub configured: bool,
    /// Its source (`testsrc`, `v4l2:/dev/video0`, the writer's own text).
    pub source: String,
    /// The bus: `live`, `producer gone`, `no bus`, or the camera's error.
    pub state: String,
    /// The source: `running`, `reconnecting`, … (the bus header's word).
    pub source_state: String,
    /// Pixel format.
    pub format: String,
    /// Size.
    pub width: u32,
    /// Size.
    pub height: u32,
    /// Nominal rate.
    pub fps: f64,
    /// Measured capture rate.
    pub capture_fps: f64,
    /// Frames published.
    pub frames: u64,
    /// Frames lost: every slot held by readers, plus those the source
    /// dropped.
    pub dropped: u64,
    /// Source reconnections.
    pub restarts: u64,
    /// Age of the newest frame, ms.
    pub last_frame_age_ms: Option<u64>,
    /// Processes reading the raw bus (encoders, MJPEG, Python).
    pub readers: usize,
    /// MJPEG profiles of this bus.
    pub mjpeg: Vec<MjpegStream>,
    /// Its encoders (encoded buses `{bus}.h264.{profile}`).
    pub encoders: Vec<Encoder>,
    /// Viewers per protocol.
    pub viewers: Viewers,
    /// Its microphone (`{bus}.audio` and its Opus encode), `null` for a
    /// camera without one.
    pub audio: Option<Audio>,
}

/// A camera's microphone: its PCM bus `{bus}.audio` and its Opus encode
/// `{bus}.opus` (`docs/audio.md`, [`crate::mjpeg::audio`]).
#[derive(Debug, Serialize)]
pub struct Audio {
    /// The PCM bus (`cam0.audio`).
    pub bus: String,
    /// The PCM bus: `live`, `producer gone`, `no bus`.
    pub state: String,
    /// The capture: `running`, `reconnecting`, … (the bus header's word).
    pub source_state: String,
    /// The microphone captures (bus live, source running).
    pub capturing: bool,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u32,
    /// Peak of the last 20 ms chunk, dBFS; silence, and a microphone that
    /// is not capturing, are [`crate::mjpeg::audio::SILENCE_DBFS`].
    pub peak_dbfs: f64,
    /// RMS of the last chunk, dBFS, with the same floor.
    pub rms_dbfs: f64,
    /// Chunks lost because the device overran.
    pub xruns: u64,
    /// Capture reopens (microphone unplugged, watchdog).
    pub restarts: u64,
    /// Age of the newest chunk, ms.
    pub last_chunk_age_ms: Option<u64>,
    /// Processes reading the PCM bus (the Opus encoder, Python).
    pub readers: usize,
    /// The Opus encode every output reads.
    pub opus: AudioEncoder,
}

/// A camera's Opus encode (`framebus-encoder --bus cam0.audio --opus`).
#[derive(Debug, Serialize)]
pub struct AudioEncoder {
    /// The Opus bus (`cam0.opus`).
    pub bus: String,
    /// The Opus bus: `live`, `producer gone`, `no bus`.
    pub state: String,
    /// Packets are flowing (the newest is under 2 s old).
    pub encoding: bool,
    /// Packets published.
    pub packets: u64,
    /// Age of the newest packet, ms.
    pub last_packet_age_ms: Option<u64>,
    /// Processes reading the Opus bus (RTSP, WebRTC, the recorder).
    pub readers: usize,
    /// The supervised encoder process: `running`, `backoff`, …
    pub process: Option<String>,
    /// Its restarts.
    pub restarts: u32,
    /// Why it was last restarted.
    pub last_reason: Option<String>,
}

/// The answer of `GET /api/v1/console/levels`.
#[derive(Debug, Serialize)]
pub struct Levels {
    /// When they were read, Unix milliseconds.
    pub updated_unix_ms: u64,
    /// One per camera asked for that has a microphone.
    pub levels: Vec<Level>,
}

/// One microphone's level now.
#[derive(Debug, Serialize)]
pub struct Level {
    /// The camera bus.
    pub bus: String,
    /// As [`Audio::peak_dbfs`].
    pub peak_dbfs: f64,
    /// As [`Audio::rms_dbfs`].
    pub rms_dbfs: f64,
    /// As [`Audio::capturing`].
    pub capturing: bool,
}

/// One MJPEG profile of a bus.
#[derive(Debug, Serialize)]
pub struct MjpegStream {
    /// Profile name.
    pub profile: String,
    /// Stream URL.
    pub url: String,
    /// Its JPEG encoder runs.
    pub running: bool,
    /// Viewers.
    pub viewers: usize,
    /// JPEGs per second out.
    pub output_fps: f64,
    /// Output size.
    pub width: u32,
    /// Output size.
    pub height: u32,
    /// Seconds the encoder has run.
    pub uptime_s: Option<f64>,
}

/// One encoder of a camera.
#[derive(Debug, Serialize)]
pub struct Encoder {
    /// Profile name (`high`).
    pub profile: String,
    /// The encoded bus.
    pub bus: String,
    /// The encoded bus: `live`, `producer gone`, `no bus`.
    pub state: String,
    /// Access units are flowing (the newest is under 2 s old).
    pub encoding: bool,
    /// Load step: 0 = as configured; higher = fewer frames or a smaller
    /// picture because the machine is short of CPU.
    pub step: u32,
    /// Encoded rate now.
    pub fps: f64,
    /// Target bit rate now, bit/s.
    pub bitrate: u64,
    /// Size.
    pub width: u32,
    /// Size.
    pub height: u32,
    /// Processes reading the encoded bus (RTSP, this server, the recorder,
    /// Python).
    pub readers: usize,
    /// The supervised `framebus-encoder` process: `running`, `backoff`, …
    pub process: Option<String>,
    /// Its restarts.
    pub restarts: u32,
    /// Why it was last restarted.
    pub last_reason: Option<String>,
}

/// Viewers of a camera per protocol.
#[derive(Debug, Default, Serialize)]
pub struct Viewers {
    /// MJPEG connections (every profile).
    pub mjpeg: usize,
    /// WebRTC sessions.
    pub webrtc: usize,
    /// HLS sessions.
    pub hls: usize,
    /// Encoded buses of the camera the RTSP server is reading (one reader
    /// serves all of a stream's clients: this counts streams, not
    /// clients; `framebus-rtsp --http-listen` has the clients).
    pub rtsp_streams: usize,
}

/// An encoded bus's newest frame older than this: not encoding (idle
/// after its grace time, or stuck).
const ENCODING_AGE_MS: u64 = 2000;

fn bus_state(i: &BusInfo) -> String {
    if i.state == "live" && !i.producer_alive {
        "producer gone".into()
    } else {
        i.state.clone()
    }
}

/// Gather the document. Reads bus headers and files: call it from a
/// blocking context.
pub fn gather(state: &AppState, recorder: bool) -> Console {
    let shm_dir = state.streams.config().shm_dir.clone();
    let dir = shm_dir.clone().unwrap_or_else(framebus::default_shm_dir);
    let all = framebus::list_in(Some(&dir)).unwrap_or_default();
    let mut problems = health_problems(&state.streams);
    let (supervisor, children) = supervisor(&dir, &mut problems);
    let mjpeg = all_status(&state.streams);
    let webrtc = state
        .webrtc
        .as_ref()
        .map(|w| w.session_status())
        .unwrap_or_default();
    let hls = state.hls.as_ref().map(|h| h.status()).unwrap_or_default();
    let rtsp_pid = children
        .iter()
        .find(|p| p.kind == "rtsp")
        .and_then(|p| p.pid);

    // Configured cameras first (in config order), then the served buses.
    let mut names: Vec<Listed> = supervisor
        .as_ref()
        .map(|s| {
            s.1.iter()
                .map(|c| Listed {
                    bus: c.bus.clone(),
                    configured: true,
                    source: c.source.clone(),
                    error: c.error.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    for b in state.streams.buses() {
        if !names.iter().any(|n| n.bus == b.name) {
            let source = b
                .info
                .as_ref()
                .map(|i| i.source.clone())
                .unwrap_or_default();
            names.push(Listed {
                bus: b.name,
                configured: false,
                source,
                error: None,
            });
        }
    }
    let cameras = names
        .into_iter()
        .map(
            |Listed {
                 bus,
                 configured,
                 source,
                 error,
             }| {
                let info = all.iter().find(|i| i.name == bus);
                let encoders: Vec<Encoder> = all
                    .iter()
                    .filter_map(|i| {
                        let (cam, profile) = encoder::split(&i.name)?;
                        (cam == bus).then(|| encoder_of(i, profile, &children))
                    })
                    .collect();
                let rtsp_streams = rtsp_pid.map_or(0, |pid| {
                    all.iter()
                        .filter(|i| encoder::split(&i.name).is_some_and(|(c, _)| c == bus))
                        .filter(|i| i.readers.iter().any(|r| r.pid == pid))
                        .count()
                });
                let mjpeg: Vec<MjpegStream> = mjpeg
                    .iter()
                    .filter(|s| s.bus == bus)
                    .map(mjpeg_of)
                    .collect();
                let viewers = Viewers {
                    mjpeg: mjpeg.iter().map(|m| m.viewers).sum(),
                    webrtc: webrtc.iter().filter(|s| s.bus == bus).count(),
                    hls: hls.iter().filter(|h| h.bus == bus).map(|h| h.viewers).sum(),
                    rtsp_streams,
                };
                let state = match (&error, info) {
                    (Some(e), _) => format!("failed: {e}"),
                    (None, Some(i)) => bus_state(i),
                    (None, None) => "no bus".into(),
                };
                let audio = audio_of(&bus, &all, &children);
                let i = info.cloned().unwrap_or_else(|| empty_info(&bus));
                Camera {
                    configured,
                    source: if source.is_empty() {
                        i.source.clone()
                    } else {
                        source
                    },
                    state,
                    source_state: i.source_state.clone(),
                    format: i.format.clone(),
                    width: i.width,
                    height: i.height,
                    fps: i.fps,
                    capture_fps: round2(i.measured_fps),
                    frames: i.published,
                    dropped: i.dropped_all_held + i.source_dropped,
                    restarts: i.restarts,
                    last_frame_age_ms: i.last_frame_age_ms,
                    readers: i.readers.len(),
                    mjpeg,
                    encoders,
                    viewers,
                    audio,
                    bus,
                }
            },
        )
        .collect();

    let publishers: Vec<PublisherStatus> = children
        .into_iter()
        .filter(|p| p.kind != "encoder")
        .collect();
    let rtsp = publishers
        .iter()
        .find(|p| p.kind == "rtsp" && p.url.is_some())
        .and_then(|p| p.url.clone());
    problems.dedup();
    Console {
        version: VERSION,
        updated_unix_ms: now_unix_ms(),
        health: if problems.is_empty() {
            "healthy"
        } else {
            "degraded"
        },
        problems,
        cameras,
        publishers,
        supervisor: supervisor.map(|s| s.0),
        outputs: Outputs {
            webrtc: state.webrtc.is_some(),
            hls: state.hls.is_some(),
            hls_js: state
                .hls
                .as_ref()
                .filter(|h| h.has_hls_js())
                .map(|_| crate::hls::server::HLS_JS_PATH.to_string()),
            recorder,
            rtsp,
            auth: state.auth.enabled(),
        },
    }
}

type SupervisorFound = (Supervisor, Vec<status::CameraStatus>);

/// A raw bus the console lists: a configured camera, or a bus found.
struct Listed {
    bus: String,
    configured: bool,
    source: String,
    error: Option<String>,
}

/// The supervisor's cameras and children: the producer that runs this
/// server ([`status::of_parent`]; none when it was started by hand), its
/// problems noted.
fn supervisor(
    dir: &Path,
    problems: &mut Vec<String>,
) -> (Option<SupervisorFound>, Vec<PublisherStatus>) {
    let Some(st) = status::of_parent(dir) else {
        return (None, Vec::new());
    };
    problems.extend(status::problems(&st));
    let found = (
        Supervisor {
            pid: st.producer_pid,
            config: st.config.display().to_string(),
        },
        st.cameras,
    );
    (Some(found), st.publishers)
}

fn encoder_of(i: &BusInfo, profile: &str, children: &[PublisherStatus]) -> Encoder {
    let child = children
        .iter()
        .find(|p| p.kind == "encoder" && p.bus.as_deref() == Some(i.name.as_str()));
    Encoder {
        profile: profile.to_string(),
        bus: i.name.clone(),
        state: bus_state(i),
        encoding: i
            .last_frame_age_ms
            .is_some_and(|a| a < ENCODING_AGE_MS && i.producer_alive),
        step: i.encoder_step,
        fps: round2(if i.encoder_fps > 0.0 {
            i.encoder_fps
        } else {
            i.measured_fps
        }),
        bitrate: i.encoder_bitrate,
        width: i.width,
        height: i.height,
        readers: i.readers.len(),
        process: child.map(|c| c.state.as_str().to_string()),
        restarts: child.map_or(0, |c| c.restarts),
        last_reason: child.and_then(|c| c.last_reason.clone()),
    }
}

/// `bus`'s microphone: its buses when they exist, else an Opus encoder
/// the supervisor runs for it (the microphone is configured, its bus not
/// there yet); `None` without either.
fn audio_of(bus: &str, all: &[BusInfo], children: &[PublisherStatus]) -> Option<Audio> {
    let opus_name = audio::opus_bus(bus);
    let child = children
        .iter()
        .find(|p| p.kind == "encoder" && p.bus.as_deref() == Some(opus_name.as_str()));
    let mic = Microphone::find(bus, all).or_else(|| {
        child.map(|_| Microphone {
            camera: bus.to_string(),
            pcm: None,
            opus: None,
        })
    })?;
    let pcm = mic
        .pcm
        .clone()
        .unwrap_or_else(|| empty_info(&audio::pcm_bus(bus)));
    let opus = mic.opus.clone().unwrap_or_else(|| empty_info(&opus_name));
    Some(Audio {
        state: bus_state(&pcm),
        source_state: pcm.source_state.clone(),
        capturing: mic.capturing(),
        sample_rate: pcm.sample_rate,
        channels: pcm.channels,
        peak_dbfs: mic.peak_dbfs(),
        rms_dbfs: mic.rms_dbfs(),
        xruns: mic.xruns(),
        restarts: pcm.restarts,
        last_chunk_age_ms: pcm.last_frame_age_ms,
        readers: pcm.readers.len(),
        opus: AudioEncoder {
            state: bus_state(&opus),
            encoding: mic.encoding(),
            packets: opus.published,
            last_packet_age_ms: opus.last_frame_age_ms,
            readers: opus.readers.len(),
            process: child.map(|c| c.state.as_str().to_string()),
            restarts: child.map_or(0, |c| c.restarts),
            last_reason: child.and_then(|c| c.last_reason.clone()),
            bus: opus.name,
        },
        bus: pcm.name,
    })
}

/// The levels of the microphones of `cameras` (`GET
/// /api/v1/console/levels`: what the page's meters poll between two
/// documents). Reads two bus headers per camera: call it from a blocking
/// context.
pub fn levels(state: &AppState, cameras: &[String]) -> Levels {
    let dir = state.streams.config().shm_dir.as_deref();
    Levels {
        updated_unix_ms: now_unix_ms(),
        levels: cameras
            .iter()
            .filter_map(|c| {
                let m = Microphone::stat(c, dir)?;
                Some(Level {
                    bus: m.camera.clone(),
                    peak_dbfs: m.peak_dbfs(),
                    rms_dbfs: m.rms_dbfs(),
                    capturing: m.capturing(),
                })
            })
            .collect(),
    }
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn mjpeg_of(s: &StreamStatus) -> MjpegStream {
    MjpegStream {
        profile: s.profile.clone(),
        url: s.url.clone(),
        running: matches!(s.state, framebus::contract::streams::StreamState::Running),
        viewers: s.viewers,
        output_fps: s.output_fps,
        width: s.width,
        height: s.height,
        uptime_s: s.uptime_s,
    }
}

fn empty_info(bus: &str) -> BusInfo {
    BusInfo {
        name: bus.to_string(),
        state: "no bus".into(),
        ..BusInfo::default()
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
