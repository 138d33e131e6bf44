//! The SDP answer to DESCRIBE (RFC 8866, H.264 parameters from RFC 6184
//! §8.1, Opus from RFC 7587 §7), built with `sdp-types`.

use base64::Engine as _;
use sdp_types::{Attribute, Connection, Media, Origin, Session, Time};

use super::stream::{StreamParams, OPUS_PT};

/// The control URL (relative to the content base) of the video track.
pub const VIDEO_TRACK: &str = "trackID=0";
/// The control URL of the audio track.
pub const AUDIO_TRACK: &str = "trackID=1";

/// The SDP for one H.264 stream, and the camera's Opus track when
/// `audio_channels` is given; the media control URLs are [`VIDEO_TRACK`]
/// and [`AUDIO_TRACK`] relative to the content base.
pub fn describe(
    params: &StreamParams,
    audio_channels: Option<u32>,
    session_id: u64,
    server_ip: &str,
    path: &str,
) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let profile_level_id = params
        .sps
        .get(1..4)
        .map(|b| format!("{:02X}{:02X}{:02X}", b[0], b[1], b[2]))
        .unwrap_or_else(|| "42C01F".to_string());
    let fmtp = format!(
        "96 packetization-mode=1;profile-level-id={profile_level_id};sprop-parameter-sets={},{}",
        b64.encode(&params.sps),
        b64.encode(&params.pps)
    );
    let addrtype = if server_ip.contains(':') {
        "IP6"
    } else {
        "IP4"
    };
    let attr = |a: &str, v: Option<String>| Attribute {
        attribute: a.to_string(),
        value: v,
    };
    let session = Session {
        origin: Origin {
            username: Some("-".to_string()),
            sess_id: session_id.to_string(),
            sess_version: 1,
            nettype: "IN".to_string(),
            addrtype: addrtype.to_string(),
            unicast_address: server_ip.to_string(),
        },
        session_name: format!("framebus {path}"),
        session_description: None,
        uri: None,
        emails: vec![],
        phones: vec![],
        connection: Some(Connection {
            nettype: "IN".to_string(),
            addrtype: addrtype.to_string(),
            connection_address: if addrtype == "IP6" { "::" } else { "0.0.0.0" }.to_string(),
        }),
        bandwidths: vec![],
        times: vec![Time {
            start_time: 0,
            stop_time: 0,
            repeats: vec![],
        }],
        time_zones: vec![],
        key: None,
        attributes: vec![
            attr("tool", Some("framebus-rtsp".to_string())),
            attr("range", Some("npt=now-".to_string())),
            attr("control", Some("*".to_string())),
        ],
        medias: vec![Media {
            media: "video".to_string(),
            port: 0,
            num_ports: None,
            proto: "RTP/AVP".to_string(),
            fmt: "96".to_string(),
            media_title: None,
            connections: vec![],
            bandwidths: vec![],
            key: None,
            attributes: vec![
                attr("rtpmap", Some("96 H264/90000".to_string())),
                attr("fmtp", Some(fmtp)),
                attr(
                    "framesize",
                    Some(format!("96 {}-{}", params.width, params.height)),
                ),
                attr("framerate", Some(params.fps.to_string())),
                attr("control", Some(VIDEO_TRACK.to_string())),
            ],
        }],
    };
    let mut session = session;
    if let Some(channels) = audio_channels {
        // RFC 7587 §7: the rtpmap always says 48000/2; whether the sender
        // sends stereo is `sprop-stereo`.
        session.medias.push(Media {
            media: "audio".to_string(),
            port: 0,
            num_ports: None,
            proto: "RTP/AVP".to_string(),
            fmt: OPUS_PT.to_string(),
            media_title: None,
            connections: vec![],
            bandwidths: vec![],
            key: None,
            attributes: vec![
                attr("rtpmap", Some(format!("{OPUS_PT} opus/48000/2"))),
                attr(
                    "fmtp",
                    Some(format!(
                        "{OPUS_PT} sprop-stereo={}",
                        u8::from(channels == 2)
                    )),
                ),
                attr("control", Some(AUDIO_TRACK.to_string())),
            ],
        });
    }
    let mut out = Vec::new();
    session
        .write(&mut out)
        .expect("writing SDP to a Vec cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_has_h264_parameters() {
        let p = StreamParams {
            sps: vec![0x67, 0x42, 0xc0, 0x1f, 0xda],
            pps: vec![0x68, 0xce, 0x3c, 0x80],
            width: 640,
            height: 360,
            fps: 30,
        };
        let sdp = String::from_utf8(describe(&p, None, 42, "127.0.0.1", "cam0/high")).unwrap();
        assert!(!sdp.contains("m=audio"), "{sdp}");
        let av = String::from_utf8(describe(&p, Some(1), 42, "127.0.0.1", "cam0/high")).unwrap();
        assert!(av.contains("m=audio 0 RTP/AVP 97\r\n"), "{av}");
        assert!(av.contains("a=rtpmap:97 opus/48000/2\r\n"), "{av}");
        assert!(av.contains("a=fmtp:97 sprop-stereo=0\r\n"), "{av}");
        assert!(av.contains("a=control:trackID=1\r\n"), "{av}");
        sdp_types::Session::parse(av.as_bytes()).unwrap();
        assert!(sdp.starts_with("v=0\r\n"), "{sdp}");
        assert!(sdp.contains("m=video 0 RTP/AVP 96\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:96 H264/90000\r\n"), "{sdp}");
        assert!(
            sdp.contains("profile-level-id=42C01F;sprop-parameter-sets=Z0LAH9o=,aM48gA=="),
            "{sdp}"
        );
        assert!(sdp.contains("packetization-mode=1"), "{sdp}");
        // sdp-types parses what it wrote.
        sdp_types::Session::parse(sdp.as_bytes()).unwrap();
    }
}
