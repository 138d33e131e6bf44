//! `framebus status`: verdict and exit codes from buses and supervisor
//! status files (the files a `framebus-producer --config` writes; the
//! producer's own tests run the real supervisor).

use std::path::{Path, PathBuf};
use std::process::Command;

use framebus::{Fps, FrameMeta, FrameSpec, PixelFormat, Writer, WriterOptions};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_framebus");

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!(
            "framebus-status-{}",
            framebus_test_support::unique_name(tag)
        ));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn status(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .env("FRAMEBUS_SHM_DIR", dir)
        .arg("status")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn writer(dir: &Path, name: &str) -> Writer {
    let spec = FrameSpec::new(PixelFormat::Gray8, 64, 48, Fps::new(30)).unwrap();
    let mut w = Writer::create(
        name,
        spec,
        WriterOptions {
            slots: 8,
            shm_dir: Some(dir.to_path_buf()),
            ..WriterOptions::default()
        },
    )
    .unwrap();
    w.set_source_state(framebus::layout::source_state::RUNNING);
    w.publish_from(&[0u8; 64 * 48], FrameMeta::now()).unwrap();
    w
}

fn supervisor_file(dir: &Path, pid: u32, publisher_state: &str, reason: Option<&str>) {
    let doc = serde_json::json!({
        "version": 1,
        "producer_pid": pid,
        "config": "/etc/framebus/framebus.toml",
        "updated_unix_ms": 0,
        "state": "running",
        "cameras": [],
        "publishers": [{
            "kind": "rtsp", "command": "/bin/false", "pid": null,
            "state": publisher_state, "restarts": 50, "max_restarts": 50,
            "last_reason": reason, "restart_in_s": null, "uptime_s": null,
            "address": null, "url": null, "health_age_s": null, "auth": false
        }]
    });
    std::fs::write(
        dir.join(format!("framebus-status.{pid}.json")),
        serde_json::to_vec(&doc).unwrap(),
    )
    .unwrap();
}

#[test]
fn nothing_running_exits_11() {
    let d = Dir::new("empty");
    let (code, out) = status(&d.0, &["--json"]);
    assert_eq!(code, 11, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["health"], "down");
}

#[test]
fn live_bus_is_healthy_and_listed() {
    let d = Dir::new("live");
    let name = framebus_test_support::unique_name("st");
    let _w = writer(&d.0, &name);
    let (code, out) = status(&d.0, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("health: healthy") && out.contains(&name),
        "{out}"
    );
    let (code, prom) = status(&d.0, &["--prometheus"]);
    assert_eq!(code, 0);
    assert!(
        prom.contains(&format!("framebus_bus_up{{bus=\"{name}\"}} 1")),
        "{prom}"
    );
    assert!(prom.contains("framebus_health 0"), "{prom}");
}

#[test]
fn failed_publisher_is_degraded_with_the_reason() {
    let d = Dir::new("failed");
    let name = framebus_test_support::unique_name("st");
    let _w = writer(&d.0, &name);
    // This test process stands in for a live supervisor.
    supervisor_file(
        &d.0,
        std::process::id(),
        "failed",
        Some("gave up after 50 restarts in a row; last: exited with status 1"),
    );
    let (code, out) = status(&d.0, &["--json"]);
    assert_eq!(code, 10, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["health"], "degraded");
    let problems = v["problems"].to_string();
    assert!(
        problems.contains("publisher rtsp is failed (gave up after 50 restarts in a row"),
        "{problems}"
    );
    assert_eq!(v["supervisors"][0]["alive"], true);
    let (_, text) = status(&d.0, &[]);
    assert!(text.contains("rtsp    failed"), "{text}");
}

/// An encoder child is listed like a publisher, with the bus it writes:
/// in the table, in the problems and as a Prometheus label.
#[test]
fn encoder_children_are_listed_with_their_bus() {
    let d = Dir::new("enc");
    let name = framebus_test_support::unique_name("st");
    let _w = writer(&d.0, &name);
    let pid = std::process::id();
    let encoder = |bus: &str, state: &str, reason: Option<&str>| {
        serde_json::json!({
            "kind": "encoder", "bus": bus, "command": "/usr/bin/framebus-encoder",
            "pid": if state == "running" { Some(4321) } else { None },
            "state": state, "restarts": 2, "max_restarts": 50,
            "last_reason": reason, "restart_in_s": null, "uptime_s": null,
            "address": null, "url": null, "health_age_s": null, "auth": false
        })
    };
    let doc = serde_json::json!({
        "version": 1, "producer_pid": pid, "config": "/etc/framebus/framebus.toml",
        "updated_unix_ms": 0, "state": "running", "cameras": [],
        "publishers": [
            encoder("cam0.h264.high", "running", Some("killed by signal 9")),
            encoder("cam0.h264.low", "backoff", Some("exited with status 1")),
        ]
    });
    std::fs::write(
        d.0.join(format!("framebus-status.{pid}.json")),
        serde_json::to_vec(&doc).unwrap(),
    )
    .unwrap();
    let (code, text) = status(&d.0, &[]);
    assert_eq!(code, 10, "{text}");
    assert!(
        text.contains("encoder cam0.h264.low is backoff (exited with status 1)"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.contains("cam0.h264.high"))
        .unwrap_or_default();
    for want in ["encoder", "running", "4321", "2/50", "killed by signal 9"] {
        assert!(row.contains(want), "{want:?} in {row:?}\n{text}");
    }
    let (_, prom) = status(&d.0, &["--prometheus"]);
    assert!(
        prom.contains(&format!(
            "framebus_publisher_up{{kind=\"encoder\",bus=\"cam0.h264.high\",supervisor=\"{pid}\"}} 1"
        )),
        "{prom}"
    );
    assert!(
        prom.contains(&format!(
            "framebus_publisher_restarts_total{{kind=\"encoder\",bus=\"cam0.h264.low\",supervisor=\"{pid}\"}} 2"
        )),
        "{prom}"
    );
}

#[test]
fn stale_status_file_is_degraded() {
    let d = Dir::new("stale");
    // A pid that cannot exist (above the kernel's pid_max limit).
    supervisor_file(&d.0, 4_194_305, "running", None);
    let (code, out) = status(&d.0, &["--json"]);
    assert_eq!(code, 10, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["problems"]
            .to_string()
            .contains("is gone (stale status file"),
        "{out}"
    );
}

#[test]
fn an_encoded_bus_shows_its_load_adaptation_step() {
    let d = Dir::new("step");
    let raw = framebus_test_support::unique_name("st");
    let _r = writer(&d.0, &raw);
    let name = framebus_test_support::unique_name("st-enc");
    let spec = FrameSpec::new(PixelFormat::H264, 64, 48, Fps::new(30)).unwrap();
    let w = Writer::create(
        &name,
        spec,
        WriterOptions {
            slots: 8,
            shm_dir: Some(d.0.clone()),
            ..WriterOptions::default()
        },
    )
    .unwrap();
    w.set_source_state(framebus::layout::source_state::RUNNING);
    w.set_encoder_step(2, 15_000, 2_000_000);
    let (_, out) = status(&d.0, &[]);
    let row = |bus: &str| {
        out.lines()
            .find(|l| l.starts_with(bus))
            .unwrap_or_else(|| panic!("no row for {bus}: {out}"))
            .to_string()
    };
    assert!(
        out.lines()
            .any(|l| l.starts_with("BUS") && l.ends_with("STEP")),
        "{out}"
    );
    assert!(row(&name).ends_with(" 2"), "{out}");
    assert!(row(&raw).ends_with(" -"), "{out}");
    let (_, prom) = status(&d.0, &["--prometheus"]);
    assert!(
        prom.contains(&format!("framebus_bus_encoder_step{{bus=\"{name}\"}} 2")),
        "{prom}"
    );
    assert!(
        prom.contains(&format!(
            "framebus_bus_encoder_step_changes_total{{bus=\"{name}\"}} 1"
        )),
        "{prom}"
    );
    assert!(
        !prom.contains(&format!("framebus_bus_encoder_step{{bus=\"{raw}\"}}")),
        "raw buses have no step: {prom}"
    );
}
