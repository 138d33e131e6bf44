//! `/`: the index page. Plain server-rendered HTML and CSS; one live `<img>`
//! per (bus, profile) and a few lines of vanilla JavaScript that refresh the
//! numbers from `/api/v1/streams` every two seconds (the page works without
//! it, numbers are then as of page load).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use framebus::contract::streams::{StreamState, StreamStatus};

use super::api::all_status;
use super::config::RecorderUrl;
use super::state::AppState;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn card(s: &StreamStatus) -> String {
    let id = esc(&format!("{}/{}", s.bus, s.profile));
    let url = esc(&s.url);
    let snap = esc(&format!("/{}/snapshot.jpg?profile={}", s.bus, s.profile));
    format!(
        r#"<figure class="card" data-id="{id}">
  <a href="{url}"><img src="{url}" alt="{id}" width="{w}" height="{h}" loading="lazy"></a>
  <figcaption>
    <b>{profile}</b> <span class="dim">{w}&times;{h} @ {fps} fps, q{q}</span>
    <span class="stat" data-k="live">{out} fps out &middot; {viewers}/{max} viewers &middot; {state}</span>
    <span class="links"><a href="{url}">stream</a> <a href="{snap}">snapshot</a></span>
  </figcaption>
</figure>"#,
        profile = esc(&s.profile),
        w = s.width,
        h = s.height,
        fps = s.fps,
        q = s.quality,
        out = s.output_fps,
        viewers = s.viewers,
        max = s.max_viewers,
        state = match s.state {
            StreamState::Idle => "idle",
            StreamState::Running => "running",
        },
    )
}

/// What the page links to besides MJPEG: the (camera, profile) pairs
/// with an encoded bus, which outputs play them, and the recorder.
#[derive(Debug, Default)]
pub struct Players {
    /// Encoded (camera, profile) pairs.
    pub encoded: Vec<(String, String)>,
    /// WebRTC player pages exist.
    pub webrtc: bool,
    /// HLS is served.
    pub hls: bool,
    /// framebus-recorder's page (`--recorder-url`).
    pub recorder: Option<Arc<RecorderUrl>>,
}

/// The header's link to the recorder's page, if there is one. A recorder
/// listening on every address gets `data-samehost`: the page's script puts
/// in the host the browser loaded the page from.
fn recorder_link(players: &Players) -> String {
    let Some(r) = &players.recorder else {
        return String::new();
    };
    let (href, same_host) = r.link();
    format!(
        r#"<a class="recorder" href="{}"{}>recordings</a> "#,
        esc(&href),
        if same_host { " data-samehost" } else { "" }
    )
}

/// Render the page from stream statuses and the encoded profiles.
pub fn render(list: &[StreamStatus], players_of: &Players) -> String {
    let webrtc: &[(String, String)] = if players_of.webrtc {
        &players_of.encoded
    } else {
        &[]
    };
    let mut body = String::new();
    let mut buses: Vec<&str> = list.iter().map(|s| s.bus.as_str()).collect();
    buses.dedup();
    if buses.is_empty() {
        body.push_str(
            "<p class=\"empty\">No buses yet. Start a producer (<code>framebus-producer</code>) \
             or pass <code>--bus NAME</code>; this page lists live buses when it loads.</p>",
        );
    }
    for bus in buses {
        let streams: Vec<&StreamStatus> = list.iter().filter(|s| s.bus == bus).collect();
        let state = streams
            .first()
            .map(|s| s.bus_state.clone())
            .unwrap_or_default();
        let players: String = webrtc
            .iter()
            .filter(|(cam, _)| cam == bus)
            .map(|(cam, p)| {
                format!(
                    " <a class=\"webrtc\" href=\"/{c}/{p}/\">{p}</a>",
                    c = esc(cam),
                    p = esc(p)
                )
            })
            .collect();
        let mut players = if players.is_empty() {
            String::new()
        } else {
            format!(" <span class=\"links\">WebRTC:{players}</span>")
        };
        if players_of.hls && players_of.encoded.iter().any(|(cam, _)| cam == bus) {
            let pages: String = players_of
                .encoded
                .iter()
                .filter(|(cam, _)| players_of.webrtc && cam == bus)
                .map(|(cam, p)| {
                    format!(
                        " <a class=\"hls\" href=\"/{c}/{p}/?mode=hls\">{p}</a>",
                        c = esc(cam),
                        p = esc(p)
                    )
                })
                .collect();
            players.push_str(&format!(
                " <span class=\"links\">LL-HLS:{pages} <a class=\"m3u8\" href=\"/{c}/index.m3u8\">playlist</a></span>",
                c = esc(bus)
            ));
        }
        body.push_str(&format!(
            "<section><h2>{b} <span class=\"dim\">{st}</span>{players}</h2><div class=\"grid\">",
            b = esc(bus),
            st = esc(&state)
        ));
        for s in streams {
            body.push_str(&card(s));
        }
        body.push_str("</div></section>");
    }
    let recorder = recorder_link(players_of);
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>framebus MJPEG</title>
<style>
:root {{ color-scheme: light dark; --bg:#f6f7f9; --fg:#1d2330; --card:#fff; --dim:#6b7385; --acc:#2f6fed; }}
@media (prefers-color-scheme: dark) {{ :root {{ --bg:#14171d; --fg:#e6e9ef; --card:#1d2129; --dim:#8c94a6; --acc:#6f9bff; }} }}
* {{ box-sizing: border-box; }}
body {{ margin:0; font:14px/1.45 system-ui, sans-serif; background:var(--bg); color:var(--fg); }}
header {{ padding:14px 24px; border-bottom:1px solid #8883; display:flex; gap:16px; align-items:baseline; }}
header h1 {{ margin:0; font-size:18px; }}
header a {{ color:var(--acc); text-decoration:none; }}
main {{ padding:8px 24px 32px; }}
h2 {{ font-size:16px; margin:20px 0 10px; }}
.grid {{ display:grid; grid-template-columns:repeat(auto-fill, minmax(320px, 1fr)); gap:16px; }}
.card {{ margin:0; background:var(--card); border-radius:10px; overflow:hidden; box-shadow:0 1px 3px #0002; }}
.card img {{ display:block; width:100%; height:auto; background:#000; aspect-ratio:16/9; object-fit:contain; }}
figcaption {{ padding:8px 12px; display:flex; flex-wrap:wrap; gap:4px 10px; align-items:baseline; }}
.dim {{ color:var(--dim); font-weight:normal; }}
.stat {{ color:var(--dim); font-variant-numeric:tabular-nums; flex-basis:100%; }}
.links a {{ color:var(--acc); margin-right:10px; text-decoration:none; }}
.empty {{ color:var(--dim); }}
</style></head>
<body>
<header><h1>framebus &middot; MJPEG</h1>
{recorder}<a href="/api/v1/streams">API</a> <a href="/metrics">metrics</a> <a href="/healthz">health</a></header>
<main>{body}</main>
<script>
// The recorder listens on every address: it is on the host this page is.
for (const a of document.querySelectorAll('a[data-samehost]')) {{
  const u = new URL(a.href);
  u.hostname = location.hostname;
  a.href = u;
}}
// Refresh the numbers under each picture; the pictures stream by themselves.
async function tick() {{
  try {{
    const r = await fetch('/api/v1/streams', {{cache: 'no-store'}});
    const j = await r.json();
    for (const s of j.streams) {{
      const el = document.querySelector(`[data-id="${{s.bus}}/${{s.profile}}"] [data-k=live]`);
      if (el) el.textContent = `${{s.output_fps}} fps out · ${{s.viewers}}/${{s.max_viewers}} viewers · ${{s.state}} · encode ${{s.encode_ms_p50}} ms`;
    }}
  }} catch (e) {{}}
}}
setInterval(tick, 2000);
</script>
</body></html>
"#
    )
}

/// The (camera, profile) of every live encoded bus.
fn encoded_profiles(shm_dir: Option<&std::path::Path>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = framebus::list_in(shm_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b.producer_alive)
        .filter_map(|b| {
            let (cam, p) = framebus::contract::encoder::split(&b.name)?;
            Some((cam.to_string(), p.to_string()))
        })
        .collect();
    out.sort();
    out
}

/// `GET /`.
pub async fn index(State(state): State<AppState>) -> Html<String> {
    let streams = Arc::clone(&state.streams);
    let webrtc = state.webrtc.is_some();
    let hls = state.hls.is_some();
    let recorder = state.recorder.clone();
    let (list, players) = tokio::task::spawn_blocking(move || {
        let encoded = if webrtc || hls {
            encoded_profiles(streams.config().shm_dir.as_deref())
        } else {
            Vec::new()
        };
        let players = Players {
            encoded,
            webrtc,
            hls,
            recorder,
        };
        (all_status(&streams), players)
    })
    .await
    .unwrap_or_default();
    Html(render(&list, &players))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_links_to_the_recorder() {
        let mut p = Players::default();
        assert!(!render(&[], &p).contains("recordings</a>"));
        p.recorder = Some(Arc::new("http://rec.example:8090/".parse().unwrap()));
        let page = render(&[], &p);
        assert!(
            page.contains(r#"<a class="recorder" href="http://rec.example:8090/">recordings</a>"#),
            "{page}"
        );
        p.recorder = Some(Arc::new("http://0.0.0.0:8090/".parse().unwrap()));
        let page = render(&[], &p);
        assert!(
            page.contains(
                r#"<a class="recorder" href="http://127.0.0.1:8090/" data-samehost>recordings</a>"#
            ),
            "{page}"
        );
    }
}
