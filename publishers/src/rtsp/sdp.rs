//! The SDP answer to DESCRIBE (RFC 8866, H.264 parameters from RFC 6184
//! §8.1), built with `sdp-types`.

use base64::Engine as _;
use sdp_types::{Attribute, Connection, Media, Origin, Session, Time};

use super::stream::StreamParams;

/// The SDP for one H.264 stream; the media control URL is `trackID=0`
/// relative to the content base.
pub fn describe(params: &StreamParams, session_id: u64, server_ip: &str, path: &str) -> Vec<u8> {
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
                attr("control", Some("trackID=0".to_string())),
            ],
        }],
    };
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
        let sdp = String::from_utf8(describe(&p, 42, "127.0.0.1", "cam0/high")).unwrap();
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
