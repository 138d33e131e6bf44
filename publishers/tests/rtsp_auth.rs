//! `--auth user:pass`: Digest with real clients (ffprobe, GStreamer),
//! Basic from a raw client, refusals without or with wrong credentials.

mod rtsp_support;

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use rtsp_support::*;

#[test]
fn digest_and_basic_authentication() {
    let bus = TestBus::start("auth", 320, 180);
    let server = RtspServer::start(&["--profile", "native", "--auth", "viewer:s3cret"]);
    let url = server.url(&bus.name, "native");

    let mut c = RawClient::connect(&server.addr);
    assert_eq!(
        c.request("OPTIONS", &url, &[]).status,
        200,
        "OPTIONS is open"
    );
    let r = c.request("DESCRIBE", &url, &[]);
    assert_eq!(r.status, 401);
    assert!(r
        .header("WWW-Authenticate")
        .unwrap()
        .starts_with("Digest realm="));
    let good = base64::engine::general_purpose::STANDARD.encode("viewer:s3cret");
    let bad = base64::engine::general_purpose::STANDARD.encode("viewer:wrong");
    let r = c.request(
        "DESCRIBE",
        &url,
        &[("Authorization", &format!("Basic {bad}"))],
    );
    assert_eq!(r.status, 401);
    let r = c.request(
        "DESCRIBE",
        &url,
        &[("Authorization", &format!("Basic {good}"))],
    );
    assert_eq!(r.status, 200, "{r:?}");

    let (codec, ..) = ffprobe(&url, "tcp");
    assert_eq!(codec, "", "no credentials, no stream");
    let with_creds = url.replacen("rtsp://", "rtsp://viewer:s3cret@", 1);
    let (codec, w, h, out) = ffprobe(&with_creds, "tcp");
    assert_eq!(
        (codec.as_str(), w, h),
        ("h264", 320, 180),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wrong = url.replacen("rtsp://", "rtsp://viewer:nope@", 1);
    assert_eq!(ffprobe(&wrong, "tcp").0, "");

    let out = run(
        Command::new("gst-launch-1.0").args([
            "-q",
            "rtspsrc",
            &format!("location={url}"),
            "user-id=viewer",
            "user-pw=s3cret",
            "protocols=tcp",
            "!",
            "rtph264depay",
            "!",
            "avdec_h264",
            "!",
            "fakesink",
            "num-buffers=10",
        ]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "gst with digest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
