//! `framebus-mjpeg`'s WebRTC flags.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The default media port.
pub const DEFAULT_UDP_PORT: u16 = 8189;

/// WebRTC (WHEP) options of the HTTP publisher.
#[derive(Debug, Clone, clap::Args)]
pub struct WebRtcArgs {
    /// Serve no WebRTC (no WHEP endpoint, no UDP port).
    #[arg(long)]
    pub no_webrtc: bool,
    /// UDP address of the media port, shared by every session (default:
    /// the --listen address's IP, port 8189, or a free port when --listen
    /// has port 0). A wildcard (0.0.0.0) binds every interface address.
    #[arg(long, value_name = "ADDR")]
    pub webrtc_udp: Option<SocketAddr>,
    /// Another address browsers reach the media port at, e.g. the public
    /// IP of a 1:1 NAT (repeatable; IP or IP:PORT).
    #[arg(long = "webrtc-candidate", value_name = "ADDR")]
    pub webrtc_candidates: Vec<String>,
    /// A STUN/TURN server for players (repeatable), e.g.
    /// `turn:turn.example.com:3478?transport=udp`; given to them in WHEP
    /// `Link` headers and the player page.
    #[arg(long = "webrtc-ice-server", value_name = "URL")]
    pub webrtc_ice_servers: Vec<String>,
    /// User name for the `turn:` servers.
    #[arg(long, value_name = "USER")]
    pub webrtc_ice_username: Option<String>,
    /// Credential for the `turn:` servers.
    #[arg(long, value_name = "SECRET")]
    pub webrtc_ice_credential: Option<String>,
    /// WebRTC viewers per stream; more get 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub webrtc_max_viewers: usize,
    /// WebRTC sessions in all (a bound on `POST` floods).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub webrtc_max_sessions: usize,
    /// A viewer starts from the cached GOP when its keyframe is at most
    /// this old (else it asks for a fresh keyframe).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub webrtc_join_max_age_ms: u64,
    /// Keep each viewer on the profile it asked for (no bandwidth
    /// estimation, no switching between profiles).
    #[arg(long)]
    pub webrtc_no_adapt: bool,
    /// Publish `--whip-from` to this WHIP endpoint (RFC 9725: LiveKit
    /// Ingress, MediaMTX, Janus through a WHIP front, Cloudflare Stream),
    /// reconnecting with backoff; repeatable (docs/scale-out.md).
    #[arg(long = "whip", value_name = "URL")]
    pub whip: Vec<String>,
    /// The stream `--whip` publishes: `BUS/PROFILE` (its encoded bus, and
    /// the camera's sound when it has a microphone).
    #[arg(long, value_name = "BUS/PROFILE", default_value = "cam0/high")]
    pub whip_from: String,
    /// `Authorization: Bearer` token for the WHIP endpoint (or the
    /// environment variable `FRAMEBUS_WHIP_TOKEN`).
    #[arg(long, value_name = "TOKEN")]
    pub whip_token: Option<String>,
}

impl WebRtcArgs {
    /// The media port's address for an HTTP server configured to listen
    /// on `http`: `--webrtc-udp`, else the same IP on port 8189 (on any
    /// free port when the HTTP port is 0, so that servers started on port 0
    /// side by side do not collide).
    pub fn udp_addr(&self, http: SocketAddr) -> SocketAddr {
        self.webrtc_udp.unwrap_or_else(|| {
            let port = if http.port() == 0 {
                0
            } else {
                DEFAULT_UDP_PORT
            };
            SocketAddr::new(http.ip(), port)
        })
    }

    /// The join policy.
    pub fn join_max_age(&self) -> Duration {
        Duration::from_millis(self.webrtc_join_max_age_ms.min(60_000))
    }

    /// The `--webrtc-candidate` addresses on the media port `port`.
    pub fn candidate_addrs(&self, port: u16) -> Result<Vec<SocketAddr>, String> {
        self.webrtc_candidates
            .iter()
            .map(|c| {
                c.parse::<SocketAddr>()
                    .or_else(|_| c.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, port)))
                    .map_err(|_| format!("--webrtc-candidate {c:?}: not an IP or IP:PORT"))
            })
            .collect()
    }
}
