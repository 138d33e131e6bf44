//! `--http-listen`: `/metrics`, `/api/v1/streams` and `/healthz`, read
//! with curl while ffmpeg plays a stream.

mod rtsp_support;

use std::process::Command;
use std::time::Duration;

use rtsp_support::*;

/// `curl -s -w '\n%{http_code}'`: (status, body).
fn curl(url: &str, extra: &[&str]) -> (u16, String) {
    let out = run(
        Command::new("curl")
            .args(["-s", "--max-time", "20", "-w", "\n%{http_code}"])
            .args(extra)
            .arg(url),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The value of the sample `name{labels}` in a Prometheus text body.
fn sample(body: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_status_and_health_while_a_client_plays() {
    let bus = TestBus::start("http", 320, 240);
    let server = RtspServer::serve(&bus.name, &["native"], &["--http-listen", "127.0.0.1:0"]);
    let http = server.http.clone().expect("http address");

    let (code, body) = curl(&format!("http://{http}/healthz"), &[]);
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, body) = curl(&format!("http://{http}/metrics"), &[]);
    assert_eq!(code, 200, "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    // Capture series come from the bus list even before any client.
    let bl = format!("bus=\"{}\"", bus.name);
    assert!(
        sample(&body, "framebus_bus_nominal_fps", &bl) == Some(30.0),
        "{body}"
    );

    let (n, out) = ffmpeg_decode(&server.url(&bus.name, "native"), "tcp", 45);
    assert_eq!(n, 45, "{}", String::from_utf8_lossy(&out.stderr));

    let (code, body) = curl(&format!("http://{http}/metrics"), &[]);
    assert_eq!(code, 200);
    let l = format!(
        "path=\"{}/native\",bus=\"{}.h264.native\"",
        bus.name, bus.name
    );
    let v = |name: &str| {
        sample(&body, name, &l).unwrap_or_else(|| panic!("{name}{{{l}}} missing:\n{body}"))
    };
    assert!(v("framebus_rtsp_frames_in_total") >= 45.0, "{body}");
    assert!(v("framebus_rtsp_bytes_in_total") > 0.0);
    assert!(v("framebus_rtsp_sent_bytes_total") > v("framebus_rtsp_bytes_in_total") * 0.5);
    assert!(v("framebus_rtsp_sent_packets_total") >= 45.0);
    assert!(v("framebus_rtsp_keyframes_total") >= 1.0);
    assert_eq!(
        v("framebus_rtsp_joins_from_gop_total") + v("framebus_rtsp_joins_fresh_total"),
        1.0,
        "one PLAY"
    );
    assert_eq!(v("framebus_rtsp_clients_total"), 1.0);
    assert_eq!(v("framebus_rtsp_reader_starts_total"), 1.0);
    assert_eq!(v("framebus_rtsp_max_viewers"), 32.0);
    assert_eq!(
        v("framebus_rtsp_running"),
        1.0,
        "grace time keeps it running"
    );
    assert!(v("framebus_rtsp_input_fps") > 0.0);
    assert!(v("framebus_rtsp_input_bitrate") > 0.0);
    // The encoded bus's own series (from the bus list).
    let el = format!("bus=\"{}.h264.native\"", bus.name);
    assert!(
        sample(&body, "framebus_bus_published_total", &el).is_some_and(|n| n >= 45.0),
        "{body}"
    );

    let (code, body) = curl(&format!("http://{http}/api/v1/streams"), &[]);
    assert_eq!(code, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let path = format!("{}/native", bus.name);
    let s = json["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["path"] == path.as_str()))
        .unwrap_or_else(|| panic!("stream missing: {body}"));
    assert_eq!(s["bus"], format!("{}.h264.native", bus.name));
    assert_eq!(s["state"], "running");
    assert_eq!(s["clients"], 0, "ffmpeg has left");
    assert_eq!(s["max_clients"], 32);
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert!(s["input_fps"].as_f64().is_some_and(|f| f > 0.0), "{body}");
    assert!(
        s["input_bitrate"].as_f64().is_some_and(|f| f > 0.0),
        "{body}"
    );
    assert!(s["uptime_s"].as_f64().is_some(), "{body}");
    assert!(s["frames_in"].as_u64().is_some_and(|n| n >= 45), "{body}");
}

#[test]
fn health_fails_when_clients_get_no_frames_not_for_missing_buses() {
    let bus = TestBus::start("health", 320, 240);
    let server = RtspServer::serve(&bus.name, &["native"], &["--http-listen", "127.0.0.1:0"]);
    let http = server.http.clone().expect("http address");
    let health = || curl(&format!("http://{http}/healthz"), &[]);

    // Probing a bus that does not exist: 404 for the client, the server
    // stays healthy.
    let missing = unique_name("nobus");
    let out = ffprobe(&server.url(&missing, "native"), "tcp").3;
    assert!(!out.status.success());
    assert_eq!(health().0, 200);

    // A playing client, then the producer goes away (the encoder then has
    // nothing to encode): unhealthy, naming the stream.
    let url = server.url(&bus.name, "native");
    let mut c = RawClient::connect(&server.addr);
    assert_eq!(c.setup_tcp(&url).status, 200);
    assert_eq!(c.request("PLAY", &url, &[]).status, 200);
    assert_eq!(health().0, 200);
    drop(bus);
    assert!(
        eventually(Duration::from_secs(30), || health().0 == 503),
        "healthz stayed 200 with a client and no producer"
    );
    let (_, body) = health();
    assert!(body.contains("no access unit"), "{body}");
}

#[test]
fn metrics_need_the_credentials_when_auth_is_set() {
    let server = RtspServer::start(&["--auth", "viewer:s3cret", "--http-listen", "127.0.0.1:0"]);
    let http = server.http.clone().expect("http address");
    assert_eq!(curl(&format!("http://{http}/metrics"), &[]).0, 401);
    assert_eq!(curl(&format!("http://{http}/api/v1/streams"), &[]).0, 401);
    assert_eq!(
        curl(&format!("http://{http}/metrics"), &["-u", "viewer:wrong"]).0,
        401
    );
    assert_eq!(
        curl(&format!("http://{http}/metrics"), &["-u", "viewer:s3cret"]).0,
        200
    );
    assert_eq!(curl(&format!("http://{http}/healthz"), &[]).0, 200);
}
