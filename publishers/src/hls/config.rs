//! `framebus-mjpeg`'s HLS flags.

use std::time::Duration;

/// HLS and Low-Latency HLS options of the HTTP publisher.
#[derive(Debug, Clone, clap::Args)]
pub struct HlsArgs {
    /// Serve no HLS (no playlists, no muxers).
    #[arg(long)]
    pub no_hls: bool,
    /// Target duration of an LL-HLS part, in milliseconds (rounded to
    /// whole frames; 50..=2000).
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub hls_part_ms: u64,
    /// Complete segments a media playlist lists (a segment is one GOP of
    /// the encoder; at least 3).
    #[arg(long, value_name = "N", default_value_t = 7)]
    pub hls_segments: usize,
    /// HLS viewers per camera (sessions seen in the last 10 s); more get
    /// 503 with Retry-After. Behind a cache, the cache counts as one.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub hls_max_viewers: usize,
    /// A muxer stops this many seconds after the last request for its
    /// stream (the encoder then idles, if nothing else reads it).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub hls_idle: f64,
    /// A copy of hls.js (`hls.min.js`) to serve at `/_/hls.min.js`, so
    /// that the player page plays HLS in browsers without native HLS
    /// (default: `$FRAMEBUS_HLS_JS`; without it, the page plays HLS only
    /// where the browser does).
    #[arg(long, value_name = "FILE")]
    pub hls_js: Option<std::path::PathBuf>,
}

impl HlsArgs {
    /// The part target, clamped to its bounds.
    pub fn part_target(&self) -> Duration {
        Duration::from_millis(self.hls_part_ms.clamp(50, 2000))
    }

    /// Complete segments kept in a playlist.
    pub fn segments(&self) -> usize {
        self.hls_segments.clamp(3, 100)
    }

    /// `--hls-js`, else `$FRAMEBUS_HLS_JS` when set and not empty.
    pub fn hls_js_path(&self) -> Option<std::path::PathBuf> {
        self.hls_js.clone().or_else(|| {
            std::env::var_os(framebus::contract::env::HLS_JS)
                .filter(|v| !v.is_empty())
                .map(Into::into)
        })
    }

    /// The idle time after which a muxer stops.
    pub fn idle(&self) -> Duration {
        Duration::from_secs_f64(self.hls_idle.clamp(1.0, 3600.0))
    }
}
