//! `--auth user:pass`: Digest with real clients (ffprobe, GStreamer);
//! from a raw client: Basic refused (only Digest is offered), a captured
//! digest replayed for another stream refused, fresh nonces per challenge;
//! refusals without or with wrong credentials.

mod rtsp_support;

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use rtsp_support::*;

#[test]
fn digest_authentication() {
    let bus = TestBus::start("auth", 320, 180);
    let server = RtspServer::serve(
        &bus.name,
        &["native", "other=160x90@15,bitrate=100k"],
        &["--auth", "viewer:s3cret"],
    );
    let url = server.url(&bus.name, "native");

    let mut c = RawClient::connect(&server.addr);
    assert_eq!(
        c.request("OPTIONS", &url, &[]).status,
        200,
        "OPTIONS is open"
    );
    let r = c.request("DESCRIBE", &url, &[]);
    assert_eq!(r.status, 401);
    let challenge = r.header("WWW-Authenticate").unwrap().to_string();
    assert!(challenge.starts_with("Digest realm="), "{challenge}");
    // Only Digest is offered, and Basic (the password in clear) is not
    // accepted either, even with the right password.
    let good = base64::engine::general_purpose::STANDARD.encode("viewer:s3cret");
    let r = c.request(
        "DESCRIBE",
        &url,
        &[("Authorization", &format!("Basic {good}"))],
    );
    assert_eq!(r.status, 401, "Basic accepted: {r:?}");
    // A fresh nonce per challenge.
    let again = r.header("WWW-Authenticate").unwrap().to_string();
    assert_ne!(nonce_of(&challenge), nonce_of(&again), "static nonce");
    // A digest computed for this stream works here, on this connection...
    let auth = digest("DESCRIBE", &url, &again, "viewer", "s3cret");
    let r = c.request("DESCRIBE", &url, &[("Authorization", &auth)]);
    assert_eq!(r.status, 200, "{r:?}");
    // ...but replayed on a new connection for another stream it is not.
    let other = server.url(&bus.name, "other");
    let mut thief = RawClient::connect(&server.addr);
    let r = thief.request("DESCRIBE", &other, &[("Authorization", &auth)]);
    assert_eq!(r.status, 401, "replayed digest accepted for {other}: {r:?}");

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

    if let Err(out) = gst_play(&url, "tcp", 10, &["user-id=viewer", "user-pw=s3cret"]) {
        panic!(
            "gst with digest: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The `nonce` of a Digest challenge.
fn nonce_of(challenge: &str) -> String {
    challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string()
}

/// An RFC 2069 Digest `Authorization` value, as ffmpeg computes it.
fn digest(method: &str, uri: &str, challenge: &str, user: &str, password: &str) -> String {
    use md5::{Digest as _, Md5};
    let hex = |s: String| -> String {
        Md5::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let nonce = nonce_of(challenge);
    let ha1 = hex(format!("{user}:framebus:{password}"));
    let ha2 = hex(format!("{method}:{uri}"));
    let response = hex(format!("{ha1}:{nonce}:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"framebus\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\""
    )
}

/// ffprobe without credentials gets nothing; with them, the stream.
fn assert_protected(server: &RtspServer, bus: &TestBus, creds: &str) {
    let url = server.url(&bus.name, "native");
    assert_eq!(ffprobe(&url, "tcp").0, "", "no credentials, no stream");
    let with_creds = url.replacen("rtsp://", &format!("rtsp://{creds}@"), 1);
    let (codec, _, _, out) = ffprobe(&with_creds, "tcp");
    assert_eq!(codec, "h264", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn credentials_from_a_file_or_the_environment() {
    let bus = TestBus::start("authsrc", 320, 180);
    let dir = std::env::temp_dir().join(unique_name("authfile"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rtsp.auth");
    std::fs::write(&file, "# framebus-rtsp viewer\nfromfile:f1le-pass\n").unwrap();
    let path = file.to_str().unwrap();

    let server = RtspServer::serve(&bus.name, &["native"], &["--auth-file", path]);
    assert_protected(&server, &bus, "fromfile:f1le-pass");
    drop(server);

    let server = RtspServer::serve_env(
        &bus.name,
        &["native"],
        &[],
        &[("FRAMEBUS_RTSP_AUTH", "fromenv:env-pass")],
    );
    assert_protected(&server, &bus, "fromenv:env-pass");
    drop(server);

    // A file without a credentials line, a missing file, or both --auth
    // and --auth-file: the server refuses to start, saying why.
    std::fs::write(&file, "# nothing here\n").unwrap();
    let bin = env!("CARGO_BIN_EXE_framebus-rtsp");
    for (args, why) in [
        (vec!["--auth-file", path], "user:password"),
        (
            vec!["--auth-file", "/nonexistent/framebus-rtsp.auth"],
            "cannot read the credentials file",
        ),
        (
            vec!["--auth", "a:b", "--auth-file", path],
            "cannot be used with",
        ),
    ] {
        let out = run(
            Command::new(bin)
                .args(["--listen", "127.0.0.1:0"])
                .args(&args),
            Duration::from_secs(20),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
