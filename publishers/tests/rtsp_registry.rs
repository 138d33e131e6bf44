//! The stream registry stays bounded under path scanning: requests for
//! buses that do not exist leave no stream entry and no thread behind, and
//! the entry of an encoded bus that went away is forgotten once it is idle.

mod rtsp_support;

use std::process::Command;
use std::time::Duration;

use rtsp_support::*;

/// `/api/v1/streams` paths, read with curl.
fn listed_paths(http: &str) -> Vec<String> {
    let out = run(
        Command::new("curl").args([
            "-s",
            "--max-time",
            "20",
            &format!("http://{http}/api/v1/streams"),
        ]),
        Duration::from_secs(30),
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    json["streams"]
        .as_array()
        .expect("streams array")
        .iter()
        .filter_map(|s| s["path"].as_str().map(str::to_string))
        .collect()
}

/// Threads of a process (`Threads:` in /proc/PID/status).
fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn scanning_missing_buses_leaves_nothing_behind() {
    let server = RtspServer::start(&["--http-listen", "127.0.0.1:0"]);
    let http = server.http.clone().expect("http address");
    let pid = server.child.pid();
    let before = threads(pid);
    let prefix = unique_name("scan");
    let mut c = RawClient::connect(&server.addr);
    for i in 0..300 {
        let url = server.url(&format!("{prefix}-{i}"), "native");
        assert_eq!(c.request("DESCRIBE", &url, &[]).status, 404, "{url}");
    }
    let listed = listed_paths(&http);
    assert!(
        !listed.iter().any(|p| p.starts_with(&prefix)),
        "registry kept {} entries for missing buses",
        listed.iter().filter(|p| p.starts_with(&prefix)).count()
    );
    // No reader thread per scanned path (its grace time is 2 s, so any
    // such thread would still be alive here).
    let after = threads(pid);
    assert!(
        after <= before + 4,
        "threads grew from {before} to {after} after 300 requests for missing buses"
    );
}

#[test]
fn a_vanished_bus_is_forgotten_when_idle() {
    let bus = TestBus::start("vanish", 320, 240);
    let name = bus.name.clone();
    let mut server = RtspServer::serve(&name, &["native"], &["--http-listen", "127.0.0.1:0"]);
    let http = server.http.clone().expect("http address");
    let (codec, ..) = ffprobe(&server.url(&name, "native"), "tcp");
    assert_eq!(codec, "h264");
    let path = format!("{name}/native");
    assert!(listed_paths(&http).contains(&path));
    // The encoder stops: its encoded bus goes. The stream is pruned once
    // its reader has stopped (grace 2 s), within the prune interval (5 s).
    drop(server.encoders.remove(0));
    drop(bus);
    let ok = eventually(Duration::from_secs(30), || {
        !listed_paths(&http).contains(&path)
    });
    assert!(ok, "{path} still listed: {:?}", listed_paths(&http));
}
