//! `framebus status`: every bus, every publisher and encoder process a
//! `framebus-producer --config` supervises, every stream, and a verdict.
//!
//! Sources: the bus segments (`framebus::list_in`), the supervisors' status
//! files `framebus-status.<pid>.json` in the same directory (written by the
//! producer, format in `docs/service.md`), and `GET /api/v1/streams` of each
//! running MJPEG publisher whose address is in a status file (one plain
//! HTTP/1.0 request, 2 s timeout).
//!
//! Exit codes: 0 healthy; 10 degraded (a problem is listed); 11 nothing
//! running (no bus and no supervisor); 1 the directory cannot be read.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use framebus::contract::status::{self, PublisherState, Status};
use framebus::contract::streams::{self, HlsStream, StreamState, StreamStatus, WebRtcSession};
use framebus::BusInfo;
use serde::Serialize;

/// Timeout of the one HTTP request per MJPEG publisher.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything `--json` prints.
#[derive(Serialize)]
struct Report {
    /// `healthy`, `degraded` or `down` (nothing running).
    health: &'static str,
    /// What makes it degraded, one sentence each.
    problems: Vec<String>,
    /// `framebus ls --json` of every bus.
    buses: Vec<BusInfo>,
    /// Each supervisor's status file, plus `file` and `alive`.
    supervisors: Vec<Supervisor>,
    /// Streams of each MJPEG publisher: `{publisher, url, streams | error}`.
    streams: Vec<PublisherStreams>,
}

/// One supervisor: its status file ([`framebus::contract::status`]).
#[derive(Serialize)]
struct Supervisor {
    #[serde(flatten)]
    status: Status,
    /// The file it was read from.
    file: PathBuf,
    /// Whether the supervisor process exists.
    alive: bool,
}

/// The streams one MJPEG publisher serves, or why they could not be read.
#[derive(Serialize)]
struct PublisherStreams {
    publisher: &'static str,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    streams: Option<Vec<StreamStatus>>,
    /// WebRTC sessions of the same publisher.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    webrtc: Vec<WebRtcSession>,
    /// HLS muxers of the same publisher.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hls: Vec<HlsStream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// How `framebus status` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Tables for a person.
    Text,
    /// One JSON document.
    Json,
    /// Prometheus text exposition (for node_exporter's textfile collector).
    Prometheus,
}

/// Run `framebus status`.
pub fn run(dir: Option<&Path>, output: Output) -> ExitCode {
    let dir = dir.map_or_else(framebus::default_shm_dir, Path::to_path_buf);
    let buses = match framebus::list_in(Some(&dir)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("framebus: cannot list {}: {e}", dir.display());
            return ExitCode::from(1);
        }
    };
    let mut problems = Vec::new();
    for b in &buses {
        if b.state != "live" {
            problems.push(format!("bus {} is {}", b.name, b.state));
        } else if !matches!(b.source_state.as_str(), "running" | "idle") {
            problems.push(format!("bus {}: source is {}", b.name, b.source_state));
        }
    }
    let supervisors = read_supervisors(&dir, &mut problems);
    let mut streams = Vec::new();
    for sup in supervisors.iter().filter(|s| s.alive) {
        for p in &sup.status.publishers {
            if p.kind != "mjpeg" || p.state != PublisherState::Running {
                continue;
            }
            let Some(addr) = p.address.as_deref() else {
                continue;
            };
            let url = format!("http://{addr}{}", streams::PATH);
            let entry = match http_get_json::<streams::Streams>(addr, streams::PATH) {
                Ok(doc) => PublisherStreams {
                    publisher: "mjpeg",
                    url,
                    streams: Some(doc.streams),
                    webrtc: doc.webrtc,
                    hls: doc.hls,
                    error: None,
                },
                Err(e) => {
                    if !(e.starts_with("HTTP 401") && p.auth) {
                        problems.push(format!("mjpeg publisher at {addr}: {e}"));
                    }
                    PublisherStreams {
                        publisher: "mjpeg",
                        url,
                        streams: None,
                        webrtc: Vec::new(),
                        hls: Vec::new(),
                        error: Some(e),
                    }
                }
            };
            streams.push(entry);
        }
    }
    let health = if buses.is_empty() && supervisors.is_empty() {
        "down"
    } else if problems.is_empty() {
        "healthy"
    } else {
        "degraded"
    };
    let report = Report {
        health,
        problems,
        buses,
        supervisors,
        streams,
    };
    let text = match output {
        Output::Json => serde_json::to_string_pretty(&report).expect("serialisable") + "\n",
        Output::Text => render_report(&report),
        Output::Prometheus => prometheus(&report),
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
    ExitCode::from(match health {
        "healthy" => 0,
        "degraded" => 10,
        _ => 11,
    })
}

/// Every supervisor status file in `dir`, with `file` and `alive`;
/// problems noted.
fn read_supervisors(dir: &Path, problems: &mut Vec<String>) -> Vec<Supervisor> {
    let mut out = Vec::new();
    for (file, st) in status::read_all(dir) {
        let st = match st {
            Ok(s) => s,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let alive = status::alive(&st);
        if alive {
            problems.extend(status::problems(&st));
        } else {
            problems.push(format!(
                "supervisor pid {} is gone (stale status file {})",
                st.producer_pid,
                file.display()
            ));
        }
        out.push(Supervisor {
            status: st,
            file,
            alive,
        });
    }
    out
}

/// `GET path` from `addr` over HTTP/1.0; the body as JSON on a 200.
fn http_get_json<T: serde::de::DeserializeOwned>(addr: &str, path: &str) -> Result<T, String> {
    let sa = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("bad address {addr:?}"))?;
    let mut s = TcpStream::connect_timeout(&sa, HTTP_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.take(4 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("truncated HTTP response")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or("no HTTP status line")?;
    if code != 200 {
        return Err(format!("HTTP {code} from {path}"));
    }
    serde_json::from_str(body).map_err(|e| format!("bad JSON from {path}: {e}"))
}

fn render_report(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    macro_rules! p {
        () => {
            let _ = writeln!(o);
        };
        ($($t:tt)*) => {
            let _ = writeln!(o, $($t)*);
        };
    }
    p!("health: {}", r.health);
    for p in &r.problems {
        p!("  - {p}");
    }
    p!();
    p!(
        "{:<20} {:<7} {:<12} {:<6} {:>11} {:>7} {:>7} {:>8} {:>7} {:>8} {:>8} {:>4}",
        "BUS",
        "STATE",
        "SOURCE",
        "FORMAT",
        "SIZE",
        "FPS",
        "LIVE",
        "PRODUCER",
        "READERS",
        "DROPPED",
        "RESTARTS",
        "STEP"
    );
    for b in &r.buses {
        if let Some(p) = &b.problem {
            p!("{:<20} {:<7} {p}", b.name, b.state);
            continue;
        }
        p!(
            "{:<20} {:<7} {:<12} {:<6} {:>11} {:>7.2} {:>7.2} {:>8} {:>7} {:>8} {:>8} {:>4}",
            b.name,
            b.state,
            b.source_state,
            b.format,
            b.size_label(),
            b.fps,
            b.measured_fps,
            b.producer_pid,
            b.readers.len(),
            b.dropped_all_held + b.source_dropped,
            b.restarts,
            // The encoder's load-adaptation step (encoded buses only).
            if b.format == "h264" {
                b.encoder_step.to_string()
            } else {
                "-".into()
            },
        );
    }
    for s in &r.supervisors {
        p!();
        p!(
            "supervisor pid {} ({}), config {}",
            s.status.producer_pid,
            if s.alive { "alive" } else { "gone" },
            s.status.config.display()
        );
        p!(
            "{:<7} {:<9} {:>8} {:>9} {:<32} LAST REASON",
            "KIND",
            "STATE",
            "PID",
            "RESTARTS",
            "URL / ENCODED BUS"
        );
        for p in &s.status.publishers {
            let pid = p.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
            let mut reason = p.last_reason.clone().unwrap_or_else(|| "-".into());
            if let Some(t) = p.restart_in_s {
                reason = format!("{reason}; restart in {t:.1} s");
            }
            p!(
                "{:<7} {:<9} {:>8} {:>9} {:<32} {reason}",
                p.kind,
                p.state.as_str(),
                pid,
                format!("{}/{}", p.restarts, p.max_restarts),
                p.url.as_deref().or(p.bus.as_deref()).unwrap_or("-"),
            );
        }
    }
    for st in &r.streams {
        p!();
        p!("streams of {}", st.url);
        if let Some(e) = &st.error {
            p!("  unavailable: {e}");
            continue;
        }
        p!(
            "{:<28} {:<8} {:>11} {:>8} {:>8} {:>8} {:>10}",
            "STREAM",
            "STATE",
            "SIZE",
            "VIEWERS",
            "IN FPS",
            "OUT FPS",
            "ENCODE MS"
        );
        for s in st.streams.iter().flatten() {
            p!(
                "{:<28} {:<8} {:>11} {:>8} {:>8.1} {:>8.1} {:>10.2}",
                format!("{}/{}", s.bus, s.profile),
                match s.state {
                    StreamState::Idle => "idle",
                    StreamState::Running => "running",
                },
                format!("{}x{}", s.width, s.height),
                s.viewers,
                s.input_fps,
                s.output_fps,
                s.encode_ms_p50,
            );
        }
        if !st.webrtc.is_empty() {
            p!();
            p!(
                "{:<34} {:<8} {:>8} {:>8} {:>10} {:>10} {:>6} {:>5} {:>6}",
                "WEBRTC SESSION",
                "PROFILE",
                "UPTIME",
                "RTT MS",
                "KBIT/S",
                "EST KBIT/S",
                "NACKS",
                "PLIS",
                "SKIPS"
            );
            for w in &st.webrtc {
                p!(
                    "{:<34} {:<8} {:>7.0}s {:>8.1} {:>10} {:>10} {:>6} {:>5} {:>6}{}",
                    format!("{}/{} {}", w.bus, w.requested, &w.id[..w.id.len().min(8)]),
                    w.profile,
                    w.uptime_s,
                    w.rtt_ms,
                    w.bitrate_bps / 1000,
                    w.estimate_bps / 1000,
                    w.nacks,
                    w.plis,
                    w.skips,
                    if w.connected { "" } else { " (connecting)" },
                );
            }
        }
        if !st.hls.is_empty() {
            p!();
            p!(
                "{:<34} {:<10} {:>8} {:>14} {:>8} {:>9} {:>10}",
                "HLS MUXER",
                "EPOCH",
                "VIEWERS",
                "NEWEST MSN",
                "PARTS",
                "SEGMENTS",
                "MB"
            );
            for h in &st.hls {
                p!(
                    "{:<34} {:<10} {:>8} {:>14} {:>8} {:>9} {:>10.1}",
                    format!("{}/{}", h.bus, h.profile),
                    h.epoch,
                    h.viewers,
                    h.msn.map_or_else(|| "-".to_string(), |m| m.to_string()),
                    h.parts,
                    h.segments,
                    h.bytes as f64 / 1e6,
                );
            }
        }
    }
    o
}

/// Escape a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The report as Prometheus text exposition (names in docs/metrics.md).
fn prometheus(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        for (labels, v) in rows {
            if labels.is_empty() {
                let _ = writeln!(o, "{name} {v}");
            } else {
                let _ = writeln!(o, "{name}{{{labels}}} {v}");
            }
        }
    };
    let bus = |b: &BusInfo| format!("bus=\"{}\"", label(&b.name));
    let per_bus = |f: &dyn Fn(&BusInfo) -> f64| -> Vec<(String, f64)> {
        r.buses
            .iter()
            .filter(|b| b.problem.is_none())
            .map(|b| (bus(b), f(b)))
            .collect()
    };
    family(
        &mut o,
        "framebus_health",
        "gauge",
        "Overall verdict of framebus status: 0 healthy, 1 degraded, 2 nothing running.",
        vec![(
            String::new(),
            match r.health {
                "healthy" => 0.0,
                "degraded" => 1.0,
                _ => 2.0,
            },
        )],
    );
    family(
        &mut o,
        "framebus_bus_up",
        "gauge",
        "1 while the bus is live and its source running (or idle: an on-demand encoder without readers).",
        r.buses
            .iter()
            .map(|b| {
                (
                    bus(b),
                    f64::from(u8::from(
                        b.state == "live" && matches!(b.source_state.as_str(), "running" | "idle"),
                    )),
                )
            })
            .collect(),
    );
    family(
        &mut o,
        "framebus_bus_fps",
        "gauge",
        "Frames published per second over the last second (capture rate).",
        per_bus(&|b| b.measured_fps),
    );
    family(
        &mut o,
        "framebus_bus_nominal_fps",
        "gauge",
        "The bus's nominal frame rate.",
        per_bus(&|b| b.fps),
    );
    family(
        &mut o,
        "framebus_bus_captured_total",
        "counter",
        "Frames the source delivered.",
        per_bus(&|b| b.captured as f64),
    );
    family(
        &mut o,
        "framebus_bus_published_total",
        "counter",
        "Frames published on the bus.",
        per_bus(&|b| b.published as f64),
    );
    family(
        &mut o,
        "framebus_bus_source_dropped_total",
        "counter",
        "Frames the source lost (driver sequence gaps, missed deadlines).",
        per_bus(&|b| b.source_dropped as f64),
    );
    family(
        &mut o,
        "framebus_bus_dropped_all_held_total",
        "counter",
        "Frames dropped because readers held every slot.",
        per_bus(&|b| b.dropped_all_held as f64),
    );
    family(
        &mut o,
        "framebus_bus_source_restarts_total",
        "counter",
        "Source reopens (reconnections).",
        per_bus(&|b| b.restarts as f64),
    );
    family(
        &mut o,
        "framebus_bus_watchdog_fires_total",
        "counter",
        "Source watchdog fires (no frame for the watchdog time).",
        per_bus(&|b| b.watchdog_fires as f64),
    );
    let encoded = |f: &dyn Fn(&BusInfo) -> f64| -> Vec<(String, f64)> {
        r.buses
            .iter()
            .filter(|b| b.problem.is_none() && b.format == "h264")
            .map(|b| (bus(b), f(b)))
            .collect()
    };
    family(
        &mut o,
        "framebus_bus_encoder_step",
        "gauge",
        "Encoded buses: the encoder's load-adaptation step (0 = the profile as configured).",
        encoded(&|b| f64::from(b.encoder_step)),
    );
    family(
        &mut o,
        "framebus_bus_encoder_step_changes_total",
        "counter",
        "Encoded buses: load-adaptation step changes.",
        encoded(&|b| b.encoder_steps as f64),
    );
    family(
        &mut o,
        "framebus_bus_encoder_fallback",
        "gauge",
        "Encoded buses: 1 when --encoder auto fell back to libx264 (no hardware encoder opened).",
        encoded(&|b| f64::from(u8::from(framebus::contract::encoder::fell_back(&b.source)))),
    );
    family(
        &mut o,
        "framebus_bus_readers",
        "gauge",
        "Readers attached to the bus.",
        per_bus(&|b| b.readers.len() as f64),
    );
    let pubs: Vec<(String, &status::PublisherStatus)> = r
        .supervisors
        .iter()
        .flat_map(|s| {
            let pid = s.status.producer_pid;
            s.status.publishers.iter().map(move |p| {
                // Encoders are many of one kind: their bus tells them apart.
                let bus = p
                    .bus
                    .as_deref()
                    .map_or_else(String::new, |b| format!(",bus=\"{}\"", label(b)));
                (
                    format!("kind=\"{}\"{bus},supervisor=\"{pid}\"", label(&p.kind)),
                    p,
                )
            })
        })
        .collect();
    family(
        &mut o,
        "framebus_publisher_up",
        "gauge",
        "1 while the supervised publisher process runs and answers.",
        pubs.iter()
            .map(|(l, p)| {
                (
                    l.clone(),
                    f64::from(u8::from(p.state == PublisherState::Running)),
                )
            })
            .collect(),
    );
    family(
        &mut o,
        "framebus_publisher_restarts_total",
        "counter",
        "Restarts of the publisher process by the supervisor.",
        pubs.iter()
            .map(|(l, p)| (l.clone(), f64::from(p.restarts)))
            .collect(),
    );
    family(
        &mut o,
        "framebus_publisher_failed",
        "gauge",
        "1 when the supervisor gave up on the publisher (max_restarts).",
        pubs.iter()
            .map(|(l, p)| {
                (
                    l.clone(),
                    f64::from(u8::from(p.state == PublisherState::Failed)),
                )
            })
            .collect(),
    );
    o
}
