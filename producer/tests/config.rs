//! `framebus-producer --config`: configuration mistakes are refused before
//! anything starts, with `FILE:LINE:COL: what` and exit 4.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_stderr, ChildGuard, Scene, BIN};

/// Write `text` as the scene's config and run the producer on it.
fn run_config(scene: &Scene, text: &str) -> (i32, String) {
    let path = scene.dir.join("framebus.toml");
    std::fs::write(&path, text).unwrap();
    let child = ChildGuard::spawn(
        Command::new(BIN)
            .env("FRAMEBUS_SHM_DIR", &scene.dir)
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let (st, err) = wait_stderr(child, Duration::from_secs(30));
    (st.code().unwrap_or(-1), err)
}

fn camera(bus: &str) -> String {
    format!("[[camera]]\nbus = \"{bus}\"\nsize = \"320x240\"\nfps = 10\n")
}

#[test]
fn unknown_key_names_line_and_column() {
    let s = Scene::new("cfg-unknown");
    let text = format!("{}sise = \"1x1\"\n", camera(&s.bus));
    let (code, err) = run_config(&s, &text);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("framebus.toml:5:1: unknown field `sise`"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn unknown_key_in_publisher_table() {
    let s = Scene::new("cfg-unknown-pub");
    let text = format!(
        "{}[publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\nmax_viewer = 3\n",
        camera(&s.bus)
    );
    let (code, err) = run_config(&s, &text);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("framebus.toml:7:1: unknown field `max_viewer`"),
        "{err}"
    );
}

#[test]
fn bad_size_names_line_and_column() {
    let s = Scene::new("cfg-size");
    let text = format!("[[camera]]\nbus = \"{}\"\nsize = \"1920by1080\"\n", s.bus);
    let (code, err) = run_config(&s, &text);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("framebus.toml:3:8: "), "{err}");
    assert!(err.contains("1920by1080"), "{err}");
    assert!(err.contains("not WxH"), "{err}");
}

#[test]
fn duplicate_bus_names_both_lines() {
    let s = Scene::new("cfg-dup");
    let text = format!("{}{}", camera(&s.bus), camera(&s.bus));
    let (code, err) = run_config(&s, &text);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!(
            "framebus.toml:6:7: bus \"{}\" is already used by the camera at line 2",
            s.bus
        )),
        "{err}"
    );
}

#[test]
fn port_in_use_names_the_listen_line() {
    let s = Scene::new("cfg-port");
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let text = format!("{}[publishers.rtsp]\nlisten = \"{addr}\"\n", camera(&s.bus));
    let (code, err) = run_config(&s, &text);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!(
            "framebus.toml:6:10: publishers.rtsp.listen: cannot listen on {addr}"
        )),
        "{err}"
    );
    drop(held);
}

#[test]
fn config_conflicts_with_capture_flags() {
    let s = Scene::new("cfg-flags");
    let path = s.dir.join("framebus.toml");
    std::fs::write(&path, camera(&s.bus)).unwrap();
    let out = Command::new(BIN)
        .env("FRAMEBUS_SHM_DIR", &s.dir)
        .args(["--bus", "x", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn missing_file_is_a_config_error() {
    let s = Scene::new("cfg-missing");
    let out = Command::new(BIN)
        .env("FRAMEBUS_SHM_DIR", &s.dir)
        .arg("--config")
        .arg(s.dir.join("nope.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.toml: cannot read"), "{err}");
}

/// A config written for the RTSP publisher that encoded by itself: exit 4
/// at the old table, naming where the profiles went and what to write.
#[test]
fn old_rtsp_profiles_are_refused_with_the_encoder_to_write() {
    let s = Scene::new("cfg-rtsp-prof");
    let text = format!(
        "{}[publishers.rtsp]\nlisten = \"127.0.0.1:0\"\n\
         [[publishers.rtsp.profile]]\nname = \"high\"\nsize = \"1280x720\"\nfps = 30\nbitrate = \"2M\"\n",
        camera(&s.bus)
    );
    let (code, err) = run_config(&s, &text);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(
            "framebus.toml:7:1: [[publishers.rtsp.profile]] moved to top-level [[encoder]] tables"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "    [[encoder]]\n    name = \"high\"\n    size = \"1280x720\"\n    fps = 30\n    bitrate = \"2M\""
        ),
        "{err}"
    );
}

#[test]
fn encoder_naming_an_unknown_camera() {
    let s = Scene::new("cfg-enc-cam");
    let text = format!(
        "{}[[encoder]]\nname = \"low\"\ncameras = [\"nope\"]\n",
        camera(&s.bus)
    );
    let (code, err) = run_config(&s, &text);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("framebus.toml:7:12: encoder \"low\": no camera with bus \"nope\""),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

/// A recorder stream without an encoder behind it: exit 4 before anything
/// starts (no `framebus-recorder` is needed to find that out).
#[test]
fn recorder_stream_without_its_encoder() {
    let s = Scene::new("cfg-rec-stream");
    let text = format!(
        "{}[[encoder]]\nname = \"low\"\n[publishers.recorder]\nlisten = \"127.0.0.1:0\"\nbuffer = [\"{}/high\"]\n",
        camera(&s.bus),
        s.bus
    );
    let (code, err) = run_config(&s, &text);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!(
            "framebus.toml:9:11: publishers.recorder.buffer: \"{0}/high\": camera \"{0}\" has no encoder \"high\" (its encoders: low)",
            s.bus
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn recorder_preroll_over_ten_minutes() {
    let s = Scene::new("cfg-rec-preroll");
    let text = format!(
        "{}[publishers.recorder]\nlisten = \"127.0.0.1:0\"\npreroll_max = \"11m\"\n",
        camera(&s.bus)
    );
    let (code, err) = run_config(&s, &text);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("framebus.toml:7:15: publishers.recorder.preroll_max: 660 s is longer than the 600 s allowed"),
        "{err}"
    );
}
