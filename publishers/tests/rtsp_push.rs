//! `--push`: publishing to an external RTSP receiver (ffmpeg in listen
//! mode as the real peer), and reconnecting when the receiver comes back.

mod rtsp_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use framebus_test_support::port::free_port;
use rtsp_support::*;

fn receiver(port: u16, frames: u32) -> ChildGuard {
    ChildGuard::spawn(
        Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-rtsp_flags",
                "listen",
                "-timeout",
                "60",
                "-i",
                &format!("rtsp://127.0.0.1:{port}/live"),
                "-frames:v",
                &frames.to_string(),
                "-f",
                "framemd5",
                "-",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
}

#[test]
fn push_reaches_a_listening_receiver_and_reconnects() {
    let bus = TestBus::start("push", 320, 180);
    let port = free_port();
    let first = receiver(port, 30);
    let from = format!("{}/native", bus.name);
    let url = format!("rtsp://127.0.0.1:{port}/live");
    let _server = RtspServer::serve(
        &bus.name,
        &["native"],
        &["--push", &url, "--push-from", &from],
    );
    let out = first.output(Duration::from_secs(60));
    assert_eq!(
        framemd5_count(&out),
        30,
        "first receiver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The receiver went away; a new one on the same port gets the stream
    // again after the pusher's backoff.
    let second = receiver(port, 30);
    let out = second.output(Duration::from_secs(90));
    assert_eq!(
        framemd5_count(&out),
        30,
        "second receiver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
