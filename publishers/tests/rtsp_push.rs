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

/// `--forward`: plain RTP to a fixed receiver (what a Janus Streaming
/// mountpoint takes; tests/janus.rs has Janus itself). GStreamer's
/// `udpsrc ! rtph264depay ! avdec_h264` decodes it; the RTCP goes to this
/// test's socket, which gets sender reports from the forward and answers
/// with a PLI (RFC 4585): the encoder forces a keyframe (the encoded bus
/// counts it), though its GOP is 20 s long.
#[test]
fn forward_sends_decodable_rtp_and_a_pli_forces_a_keyframe() {
    use std::net::UdpSocket;

    let bus = TestBus::start("fwd", 320, 180);
    let rtp_port = framebus_test_support::port::free_udp_port();
    let rtcp = UdpSocket::bind("127.0.0.1:0").unwrap();
    rtcp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let rtcp_port = rtcp.local_addr().unwrap().port();
    let caps = "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000";
    let gst = ChildGuard::spawn(
        Command::new("gst-launch-1.0")
            .args([
                "-q",
                "udpsrc",
                &format!("port={rtp_port}"),
                &format!("caps={caps}"),
            ])
            .args(["!", "rtph264depay", "!", "avdec_h264", "!", "fakesink"])
            .args(["num-buffers=30", "sync=false"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // A 20 s GOP at 30 fps: a second keyframe within the test is a
    // forced one.
    let profile = "native,gop=600";
    let encoded = format!("{}.h264.native", bus.name);
    let _server = RtspServer::serve(
        &bus.name,
        &[profile],
        &[
            "--forward",
            &format!(
                "{}/native=rtp://127.0.0.1:{rtp_port}?rtcp={rtcp_port}",
                bus.name
            ),
        ],
    );
    let out = gst.output(Duration::from_secs(60));
    assert!(
        out.status.success(),
        "GStreamer did not decode 30 frames of the forward: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A sender report comes from the forward's RTCP socket; a PLI back.
    let mut buf = [0u8; 1500];
    let mut from = None;
    assert!(
        eventually(Duration::from_secs(20), || {
            if let Ok((n, f)) = rtcp.recv_from(&mut buf) {
                if n >= 8 && buf[1] == 200 {
                    from = Some(f);
                }
            }
            from.is_some()
        }),
        "no sender report from the forward in 20 s"
    );
    let from = from.unwrap();
    let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let forced = || framebus::stat(&encoded, None).map_or(0, |i| i.keyframes_forced);
    let before = forced();
    let mut pli = vec![0x81, 206, 0, 2, 0, 0, 0, 1];
    pli.extend_from_slice(&ssrc.to_be_bytes());
    assert!(
        eventually(Duration::from_secs(20), || {
            rtcp.send_to(&pli, from).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            forced() > before
        }),
        "no keyframe forced in 20 s of PLIs (forced: {before} before, {} now)",
        forced()
    );
}
