//! `framebus status`: every bus, every publisher process a
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

use framebus::BusInfo;
use serde::Serialize;
use serde_json::Value;

/// File name prefix of the supervisors' status files.
const STATUS_PREFIX: &str = "framebus-status.";
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
    supervisors: Vec<Value>,
    /// Streams of each MJPEG publisher: `{publisher, url, streams | error}`.
    streams: Vec<Value>,
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
        } else if b.source_state != "running" {
            problems.push(format!("bus {}: source is {}", b.name, b.source_state));
        }
    }
    let supervisors = read_supervisors(&dir, &mut problems);
    let mut streams = Vec::new();
    for sup in supervisors.iter().filter(|s| s["alive"] == true) {
        for p in sup["publishers"].as_array().into_iter().flatten() {
            if p["kind"] != "mjpeg" || p["state"] != "running" {
                continue;
            }
            let Some(addr) = p["address"].as_str() else {
                continue;
            };
            let url = format!("http://{addr}/api/v1/streams");
            let entry = match http_get_json(addr, "/api/v1/streams") {
                Ok(v) => {
                    serde_json::json!({"publisher": "mjpeg", "url": url, "streams": v["streams"]})
                }
                Err(e) => {
                    if !(e.starts_with("HTTP 401") && p["auth"] == true) {
                        problems.push(format!("mjpeg publisher at {addr}: {e}"));
                    }
                    serde_json::json!({"publisher": "mjpeg", "url": url, "error": e})
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

/// Every supervisor status file in `dir`, with `file` and `alive` added;
/// problems noted.
fn read_supervisors(dir: &Path, problems: &mut Vec<String>) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(STATUS_PREFIX) && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let mut v: Value = match std::fs::read(&f)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("cannot read {}: {e}", f.display()));
                continue;
            }
        };
        let pid = v["producer_pid"].as_u64().unwrap_or(0);
        // /proc/<pid> exists while the process (or its zombie) does.
        let alive = pid != 0 && Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            problems.push(format!(
                "supervisor pid {pid} is gone (stale status file {})",
                f.display()
            ));
        } else {
            for c in v["cameras"].as_array().into_iter().flatten() {
                if c["state"] != "running" {
                    problems.push(format!(
                        "camera {}: {}",
                        c["bus"].as_str().unwrap_or("?"),
                        c["error"].as_str().unwrap_or("failed")
                    ));
                }
            }
            for p in v["publishers"].as_array().into_iter().flatten() {
                if p["state"] != "running" {
                    let reason = p["last_reason"]
                        .as_str()
                        .map_or_else(String::new, |r| format!(" ({r})"));
                    problems.push(format!(
                        "publisher {} is {}{reason}",
                        p["kind"].as_str().unwrap_or("?"),
                        p["state"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
        if let Value::Object(m) = &mut v {
            m.insert("file".into(), Value::from(f.display().to_string()));
            m.insert("alive".into(), Value::from(alive));
        }
        out.push(v);
    }
    out
}

/// `GET path` from `addr` over HTTP/1.0; the body as JSON on a 200.
fn http_get_json(addr: &str, path: &str) -> Result<Value, String> {
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
        "{:<20} {:<7} {:<12} {:<6} {:>11} {:>7} {:>7} {:>8} {:>7} {:>8} {:>8}",
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
        "RESTARTS"
    );
    for b in &r.buses {
        if let Some(p) = &b.problem {
            p!("{:<20} {:<7} {p}", b.name, b.state);
            continue;
        }
        p!(
            "{:<20} {:<7} {:<12} {:<6} {:>11} {:>7.2} {:>7.2} {:>8} {:>7} {:>8} {:>8}",
            b.name,
            b.state,
            b.source_state,
            b.format,
            format!("{}x{}", b.width, b.height),
            b.fps,
            b.measured_fps,
            b.producer_pid,
            b.readers.len(),
            b.dropped_all_held + b.source_dropped,
            b.restarts,
        );
    }
    for s in &r.supervisors {
        p!();
        p!(
            "supervisor pid {} ({}), config {}",
            s["producer_pid"],
            if s["alive"] == true { "alive" } else { "gone" },
            s["config"].as_str().unwrap_or("?")
        );
        p!(
            "{:<6} {:<9} {:>8} {:>9} {:<24} LAST REASON",
            "KIND",
            "STATE",
            "PID",
            "RESTARTS",
            "URL"
        );
        for p in s["publishers"].as_array().into_iter().flatten() {
            let pid = p["pid"]
                .as_u64()
                .map_or_else(|| "-".to_string(), |p| p.to_string());
            let mut reason = p["last_reason"].as_str().unwrap_or("-").to_string();
            if let Some(t) = p["restart_in_s"].as_f64() {
                reason = format!("{reason}; restart in {t:.1} s");
            }
            p!(
                "{:<6} {:<9} {:>8} {:>9} {:<24} {reason}",
                p["kind"].as_str().unwrap_or("?"),
                p["state"].as_str().unwrap_or("?"),
                pid,
                format!("{}/{}", p["restarts"], p["max_restarts"]),
                p["url"].as_str().unwrap_or("-"),
            );
        }
    }
    for st in &r.streams {
        p!();
        p!("streams of {}", st["url"].as_str().unwrap_or("?"));
        if let Some(e) = st["error"].as_str() {
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
        for s in st["streams"].as_array().into_iter().flatten() {
            p!(
                "{:<28} {:<8} {:>11} {:>8} {:>8.1} {:>8.1} {:>10.2}",
                format!(
                    "{}/{}",
                    s["bus"].as_str().unwrap_or("?"),
                    s["profile"].as_str().unwrap_or("?")
                ),
                s["state"].as_str().unwrap_or("?"),
                format!("{}x{}", s["width"], s["height"]),
                s["viewers"].as_u64().unwrap_or(0),
                s["input_fps"].as_f64().unwrap_or(0.0),
                s["output_fps"].as_f64().unwrap_or(0.0),
                s["encode_ms_p50"].as_f64().unwrap_or(0.0),
            );
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
        "1 while the bus is live and its source running.",
        r.buses
            .iter()
            .map(|b| {
                (
                    bus(b),
                    f64::from(u8::from(b.state == "live" && b.source_state == "running")),
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
    family(
        &mut o,
        "framebus_bus_readers",
        "gauge",
        "Readers attached to the bus.",
        per_bus(&|b| b.readers.len() as f64),
    );
    let pubs: Vec<(String, &Value)> = r
        .supervisors
        .iter()
        .flat_map(|s| {
            let pid = s["producer_pid"].as_u64().unwrap_or(0);
            s["publishers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |p| {
                    (
                        format!(
                            "kind=\"{}\",supervisor=\"{pid}\"",
                            label(p["kind"].as_str().unwrap_or("?"))
                        ),
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
            .map(|(l, p)| (l.clone(), f64::from(u8::from(p["state"] == "running"))))
            .collect(),
    );
    family(
        &mut o,
        "framebus_publisher_restarts_total",
        "counter",
        "Restarts of the publisher process by the supervisor.",
        pubs.iter()
            .map(|(l, p)| (l.clone(), p["restarts"].as_f64().unwrap_or(0.0)))
            .collect(),
    );
    family(
        &mut o,
        "framebus_publisher_failed",
        "gauge",
        "1 when the supervisor gave up on the publisher (max_restarts).",
        pubs.iter()
            .map(|(l, p)| (l.clone(), f64::from(u8::from(p["state"] == "failed"))))
            .collect(),
    );
    o
}
