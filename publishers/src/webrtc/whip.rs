//! WHIP publish (`framebus-mjpeg --whip URL`, RFC 9725): the WHEP
//! server's WebRTC stack in the active role. framebus makes the offer
//! (send-only H.264 of one encoded bus, and the camera's Opus when it has a
//! microphone), POSTs it to the WHIP endpoint, takes the answer, connects
//! (full ICE, controlling, from the media port's host candidates) and
//! sends; a media server (Janus through a WHIP front, MediaMTX, LiveKit
//! Ingress, Cloudflare Stream) fans it out. docs/scale-out.md.
//!
//! * **One session per `--whip`**, run like a WHEP viewer's
//!   ([`Session`]): from a keyframe, PLI/FIR from the server become
//!   keyframe requests on the encoded bus, sound and picture in one media
//!   stream with sender reports for lip sync.
//! * **HTTP:** `Content-Type: application/sdp`, `Authorization: Bearer`
//!   with `--whip-token`; the answer must be `201 Created` with a
//!   `Location` (the session's resource, resolved against the endpoint),
//!   which gets a `DELETE` when the session ends or framebus stops. No
//!   trickle: every candidate is in the offer, and the server's are read
//!   from its answer (a `PATCH` is never needed).
//! * **Reconnection:** a refused POST, a session that never connects or
//!   that the server drops is retried with backoff (1 s doubling to 30 s,
//!   from 1 s again after a session that ran 30 s).
//! * **Shutdown:** SIGTERM ends the session and framebus waits (up to
//!   [`GOODBYE`]) for its `DELETE` before it exits, so the server frees
//!   the endpoint at once instead of when ICE times out.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind};
use tokio::sync::mpsc;

use super::session::{pick_pt, AudioOut, Ladder, Rung, Session, SessionInfo};
use super::udp::INBOX_DEPTH;
use super::whep::WebRtc;
use framebus::contract::encoder as enc;

/// Backoff bounds between publish attempts.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Bound on each HTTP exchange with the WHIP endpoint.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long framebus waits at shutdown for its WHIP sessions to end and
/// `DELETE` their resources.
pub const GOODBYE: Duration = Duration::from_secs(3);
/// The msid stream of both tracks (one stream: receivers lip-sync them).
const STREAM_ID: &str = "framebus";

/// The environment variable with the bearer token when `--whip-token` is
/// not given (keeps it out of `ps`).
pub const TOKEN_ENV: &str = "FRAMEBUS_WHIP_TOKEN";

/// One `--whip`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhipTarget {
    /// The endpoint the offer is POSTed to.
    pub url: String,
    /// The camera bus.
    pub bus: String,
    /// The profile (encoded bus `{bus}.h264.{profile}`).
    pub profile: String,
    /// `Authorization: Bearer` token.
    pub token: Option<String>,
}

impl WhipTarget {
    /// `url` publishing `from` (`BUS/PROFILE`).
    pub fn new(url: &str, from: &str, token: Option<String>) -> Result<WhipTarget, String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("--whip {url:?}: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("--whip {url:?}: not an http(s) URL"));
        }
        let (bus, profile) = from
            .split_once('/')
            .filter(|(b, p)| !b.is_empty() && !p.is_empty() && !p.contains('/'))
            .ok_or_else(|| format!("--whip-from {from:?}: expected BUS/PROFILE"))?;
        Ok(WhipTarget {
            url: url.to_string(),
            bus: bus.to_string(),
            profile: profile.to_string(),
            token,
        })
    }
}

/// Why one publish attempt ended.
#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    /// The stream to publish is not there.
    #[error("no stream {0}: {1}")]
    Stream(String, String),
    /// The POST failed or was refused.
    #[error("WHIP endpoint {url}: {why}")]
    Endpoint {
        /// The endpoint.
        url: String,
        /// What happened.
        why: String,
    },
    /// The answer cannot be used.
    #[error("WHIP answer from {url}: {why}")]
    Answer {
        /// The endpoint.
        url: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Publishes `target` for the life of the process: one session at a
/// time, retried with backoff.
pub async fn run(w: Arc<WebRtc>, target: WhipTarget) {
    let http = match reqwest::Client::builder().timeout(HTTP_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(url = %target.url, error = %e, "WHIP: no HTTP client");
            return;
        }
    };
    let mut backoff = BACKOFF_MIN;
    while !w.closing() {
        let started = Instant::now();
        match publish_once(&w, &http, &target).await {
            Ok(reason) => tracing::info!(url = %target.url, %reason, retry_in = ?backoff,
                "WHIP session ended"),
            Err(e) => tracing::warn!(url = %target.url, error = %e, retry_in = ?backoff,
                "WHIP publish failed"),
        }
        if started.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_MIN;
        }
        // The backoff, cut short by shutdown.
        let until = Instant::now() + backoff;
        while !w.closing() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One session: offer, answer, media until it ends, `DELETE`. The
/// reason it ended.
async fn publish_once(
    w: &Arc<WebRtc>,
    http: &reqwest::Client,
    t: &WhipTarget,
) -> Result<String, WhipError> {
    let name = enc::bus_name(&t.bus, &t.profile);
    let path = format!("{}/{}", t.bus, t.profile);
    let feed = {
        let (me, n) = (Arc::clone(w), name.clone());
        tokio::task::spawn_blocking(move || me.feeds.get(&n))
            .await
            .map_err(|e| WhipError::Stream(path.clone(), e.to_string()))?
            .map_err(|e| WhipError::Stream(path.clone(), e.to_string()))?
    };
    let info = feed
        .info()
        .await
        .map_err(|e| WhipError::Stream(path.clone(), e.to_string()))?;
    let sound = {
        let (me, b) = (Arc::clone(w), t.bus.clone());
        tokio::task::spawn_blocking(move || me.audio.for_camera(&b))
            .await
            .ok()
            .flatten()
    };
    let (mut rtc, creds) = WebRtc::build_rtc(None, sound.is_some(), false);
    for c in w.local_candidates() {
        rtc.add_local_candidate(c.clone());
    }
    let mut api = rtc.sdp_api();
    let vmid = api.add_media(
        MediaKind::Video,
        Direction::SendOnly,
        Some(STREAM_ID.into()),
        Some("video".into()),
        None,
    );
    let amid = sound.as_ref().map(|_| {
        api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(STREAM_ID.into()),
            Some("audio".into()),
            None,
        )
    });
    let (offer, pending) = api.apply().expect("media were added");
    let offer = offer.to_sdp_string();
    tracing::debug!(%offer, "WHIP offer");

    let endpoint = |why: String| WhipError::Endpoint {
        url: t.url.clone(),
        why,
    };
    let mut req = http
        .post(&t.url)
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .body(offer);
    if let Some(tok) = &t.token {
        req = req.bearer_auth(tok);
    }
    let resp = req.send().await.map_err(|e| endpoint(e.to_string()))?;
    let status = resp.status();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let base = resp.url().clone();
    let body = resp.text().await.map_err(|e| endpoint(e.to_string()))?;
    if status != reqwest::StatusCode::CREATED {
        let body: String = body.chars().take(200).collect();
        return Err(endpoint(format!("{status} (want 201 Created): {body}")));
    }
    let resource = location
        .and_then(|l| base.join(&l).ok())
        .ok_or_else(|| endpoint("201 without a Location header".into()))?;
    let bad = |why: String| WhipError::Answer {
        url: t.url.clone(),
        why,
    };
    let answer = SdpAnswer::from_sdp_string(&body).map_err(|e| bad(e.to_string()));
    let accepted = answer.and_then(|a| {
        rtc.sdp_api()
            .accept_answer(pending, a)
            .map_err(|e| bad(e.to_string()))
    });
    let negotiated = accepted.and_then(|()| {
        let writer = rtc
            .writer(vmid)
            .ok_or_else(|| bad("the video was not accepted".into()))?;
        let pt = pick_pt(writer.payload_params(), info.profile_idc)
            .ok_or_else(|| bad(format!("no H.264 {} accepted", info.profile_name())))?;
        let audio = amid.and_then(|m| {
            let opus = rtc
                .writer(m)?
                .payload_params()
                .find(|p| p.spec().codec == Codec::Opus)?
                .pt();
            Some((m, opus))
        });
        Ok((pt, audio))
    });
    let (pt, audio) = match negotiated {
        Ok(n) => n,
        Err(e) => {
            delete(http, &resource, t).await;
            return Err(e);
        }
    };
    let audio = AudioOut::new(sound, audio);
    let with_audio = audio.is_some();
    let key = w.next_session_key();
    let (tx, inbox) = mpsc::channel(INBOX_DEPTH);
    let session_info = SessionInfo::new(format!("whip-{key}"), key, &t.bus, &t.profile, false);
    w.port().register(key, creds.ufrag, tx);
    // A server that does not check us (ICE lite) only answers our checks:
    // its candidates' addresses route to this session from the start.
    for addr in remote_candidates(&body) {
        w.port().route_addr(key, addr);
    }
    w.add_session(Arc::clone(&session_info));
    if w.closing() {
        // Shutdown began after the POST: end at once (close_all may have
        // listed the sessions before this one).
        session_info.close.notify_one();
    }
    let session = Session {
        rtc,
        mid: vmid,
        pt,
        info: Arc::clone(&session_info),
        port: Arc::clone(w.port_arc()),
        inbox,
        ladder: Ladder {
            rungs: vec![Rung {
                profile: t.profile.clone(),
                feed,
                info,
            }],
        },
        join_max_age: w.join_max_age(),
        down_since: None,
        audio,
    };
    tracing::info!(url = %t.url, %resource, stream = %path, audio = with_audio,
        "WHIP publishing");
    session.run().await;
    w.port().unregister(key);
    w.remove_session(&session_info.id);
    delete(http, &resource, t).await;
    let connected = session_info.stats.connected.load(Ordering::Relaxed);
    Ok(if connected {
        "the server ended it".into()
    } else {
        "never connected".into()
    })
}

/// `DELETE` of the session's resource (best effort: the server may be
/// gone).
async fn delete(http: &reqwest::Client, resource: &reqwest::Url, t: &WhipTarget) {
    let mut req = http.delete(resource.clone());
    if let Some(tok) = &t.token {
        req = req.bearer_auth(tok);
    }
    match req.send().await {
        Ok(r) => tracing::debug!(%resource, status = %r.status(), "WHIP DELETE"),
        Err(e) => tracing::debug!(%resource, error = %e, "WHIP DELETE failed"),
    }
}

/// The UDP addresses of the `a=candidate` lines of an SDP.
pub fn remote_candidates(sdp: &str) -> Vec<SocketAddr> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .filter_map(|c| {
            // foundation component transport priority address port typ ...
            let f: Vec<&str> = c.split_whitespace().collect();
            if f.len() < 6 || !f[2].eq_ignore_ascii_case("udp") {
                return None;
            }
            Some(SocketAddr::new(f[4].parse().ok()?, f[5].parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t =
            WhipTarget::new("http://127.0.0.1:7080/whip/endpoint/x", "cam0/high", None).unwrap();
        assert_eq!((t.bus.as_str(), t.profile.as_str()), ("cam0", "high"));
        assert!(WhipTarget::new("rtsp://h/x", "cam0/high", None).is_err());
        assert!(WhipTarget::new("http://h/x", "cam0", None).is_err());
        assert!(WhipTarget::new("not a url", "cam0/high", None).is_err());
    }

    #[test]
    fn candidates_of_an_answer() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
                   a=candidate:1 1 udp 2015363327 192.0.2.2 40000 typ host\r\n\
                   a=candidate:2 1 TCP 1015021823 192.0.2.2 9 typ host tcptype active\r\n\
                   a=candidate:3 1 udp 2015363327 fd00::2 40002 typ host\r\n";
        assert_eq!(
            remote_candidates(sdp),
            vec![
                "192.0.2.2:40000".parse().unwrap(),
                "[fd00::2]:40002".parse().unwrap()
            ]
        );
    }
}
