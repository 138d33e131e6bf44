//! The HLS harness itself (`publishers/tests/browser/hls.mjs` and
//! `framebus_test_support::hls`) against the stand-in LL-HLS origin
//! (`hls_stream::TestStream`: ffmpeg's fragments as parts), with no
//! framebus server: hls.js plays it in Chromium from a page on another
//! origin and the report says so; credentials reach the origin; through the
//! nginx cache of `examples/nginx/framebus-hls.conf`, the viewers' blocking
//! reloads collapse.
//!
//! Nothing here asserts how fast anything is: playing, counts and the
//! request log only.

use framebus_test_support::browser::Auth;
use framebus_test_support::hls::{self, HlsClient, HlsPlay, HlsReport};
use framebus_test_support::hls_stream::{Logged, Rendition, StreamOptions, TestStream};
use framebus_test_support::nginx::{CacheProxy, Kind};

/// A client that played the stream as LL-HLS, without a fatal error;
/// `origin` is what the stream answered (for the message).
fn assert_played_ll(c: &HlsClient, r: &HlsReport, origin: &[Logged]) {
    assert!(c.supported, "MSE/H.264 missing in this Chromium: {c:#?}");
    assert!(
        c.playing && c.fatal_error.is_none(),
        "client {} did not play: {c:#?}\nrequests the origin refused: {:#?}",
        c.index,
        origin
            .iter()
            .filter(|l| l.status >= 400)
            .collect::<Vec<_>>()
    );
    assert!(c.frames_presented >= 10, "{c:#?}");
    assert!(c.time_to_first_frame_ms.is_some(), "{c:#?}");
    let pl = c.playlist.as_ref().expect("a media playlist was loaded");
    assert!(pl.live && pl.can_block_reload, "{pl:#?}");
    assert_eq!(pl.part_target_s, Some(0.2), "{pl:#?}");
    assert!(pl.preload_hint.is_some(), "{pl:#?}");
    // Low-latency mode: parts, and every update after the first by a
    // blocking reload.
    assert!(c.requests.part > 0, "{:?}", c.requests);
    assert!(c.requests.playlist_blocking > 0, "{:?}", c.requests);
    assert!(r.page_errors.is_empty(), "{:?}", r.page_errors);
}

#[test]
fn self_test_plays_ll_hls_and_reads_the_time_code() {
    let (r, log) = hls::self_test(4.0, 2);
    assert_eq!(r.clients.len(), 2);
    assert!(
        r.hls_js.as_deref().is_some_and(|v| v.starts_with("1.")),
        "{r:#?}"
    );
    // Served by the driver on another port: another origin.
    let page = r.page_origin.as_deref().expect("page origin");
    assert!(!r.url.starts_with(page), "{page} vs {}", r.url);
    for c in &r.clients {
        assert_played_ll(c, &r, &log);
        let sizes: Vec<_> = c.levels.iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(sizes, [(Some(320), Some(180)), (Some(640), Some(360))]);
        assert!(
            c.levels
                .iter()
                .all(|l| l.url.as_deref().is_some_and(|u| u.contains("?s="))),
            "{:#?}",
            c.levels
        );
        assert!(c.frames_decoded >= c.frames_presented.min(10), "{c:#?}");
        let seen = c.sizes_seen();
        assert!(
            seen.iter().all(|s| [(320, 180), (640, 360)].contains(s)),
            "{seen:?}"
        );
        let tc = c.timecode.as_ref().expect("time codes");
        assert!(tc.decoded >= 10, "{tc:#?}");
        let lat = tc.latency_ms.expect("latency samples");
        // One clock: a code read back lies in the past, by less than the
        // whole window of the playlist.
        assert!(lat.p50 > 0.0 && lat.max < 10_000.0, "{lat:?}");
        let hl = c.hls_latency_ms.expect("hls.latency samples");
        assert!(hl.n > 0, "{hl:?}");
        assert!(c.target_latency_s.is_some(), "{c:#?}");
    }
}

#[test]
fn credentials_and_the_viewer_token_reach_the_origin() {
    let stream = TestStream::with(StreamOptions {
        authorization: Some("Bearer hls-secret".into()),
        renditions: vec![Rendition::new("low", 320, 180, 200)],
        ..StreamOptions::default()
    });
    let mut opts = HlsPlay::new(stream.multivariant_url());
    opts.seconds = 3.0;
    opts.auth = Auth::Bearer("hls-secret".into());
    let r = hls::hls_play(&opts);
    let log = stream.requests();
    assert_played_ll(&r.clients[0], &r, &log);
    let page = r.page_origin.clone().expect("page origin");

    let gets: Vec<_> = log.iter().filter(|l| l.method == "GET").collect();
    assert!(gets.len() > 5, "{log:#?}");
    for l in &gets {
        assert_eq!(
            l.authorization.as_deref(),
            Some("Bearer hls-secret"),
            "{l:?}"
        );
        assert_eq!(l.origin.as_deref(), Some(page.as_str()), "{l:?}");
        assert_eq!(l.status, 200, "{l:?}");
    }
    // The variant URI's token stays on every media playlist request,
    // blocking reloads included (hls.js appends the directives).
    let playlists: Vec<_> = gets
        .iter()
        .filter(|l| l.path.ends_with("/low/index.m3u8"))
        .collect();
    assert!(
        playlists.iter().any(|l| l.param("_HLS_msn").is_some()),
        "{playlists:#?}"
    );
    let token = playlists[0]
        .param("s")
        .expect("s= on the first playlist request");
    assert!(
        playlists.iter().all(|l| l.param("s") == Some(token)),
        "{playlists:#?}"
    );
    // `Authorization` is not a CORS-safelisted header: preflights, which
    // carry no credentials.
    assert!(
        log.iter()
            .any(|l| l.method == "OPTIONS" && l.authorization.is_none()),
        "no preflight: {log:#?}"
    );

    // Without them: a fatal manifest error with the origin's 401, in the
    // report, not a harness failure.
    opts.auth = Auth::None;
    opts.seconds = 1.0;
    let r = hls::hls_play(&opts);
    let c = &r.clients[0];
    assert!(!c.playing, "{c:#?}");
    let e = c.fatal_error.as_ref().expect("a fatal error");
    assert_eq!(
        (e.details.as_str(), e.response_code),
        ("manifestLoadError", Some(401)),
        "{e:?}"
    );
}

#[test]
fn ll_hls_viewers_share_the_nginx_cache() {
    let stream = TestStream::start();
    let proxy = CacheProxy::start(stream.addr());
    let mut opts = HlsPlay::new(proxy.rebase(&stream.multivariant_url()));
    opts.seconds = 5.0;
    opts.clients = 3;
    // The small rendition (the player is 320 px wide): three decoders
    // side by side on a small machine.
    opts.start_level = Some(0);
    opts.cap_level_to_player_size = true;
    let r = hls::hls_play(&opts);
    let log = stream.requests();
    for c in &r.clients {
        assert_played_ll(c, &r, &log);
    }
    let made: u64 = r.clients.iter().map(|c| c.requests.playlist_blocking).sum();
    let s = proxy.stats();
    let blocking = s.kind(Kind::BlockingPlaylist);
    // hls.js counts a request when it starts it, nginx when it ends: the
    // ones open when the players stopped are in the first count only.
    assert!(blocking.requests() + 3 * 2 >= made, "{made} made, {s:#?}");
    // Several viewers asked for each update; the origin answered fewer
    // (it logs a request when it answers: one held when the players
    // stopped may be missing, whence no equality with nginx's count).
    assert!(blocking.from_cache() > 0, "{s:#?}");
    let origin = log.iter().filter(|l| l.param("_HLS_msn").is_some()).count() as u64;
    assert!(
        origin < made,
        "{origin} of {made} reached the origin: {s:#?}"
    );
    assert!(s.kind(Kind::Media).hit > 0, "{s:#?}");
    eprintln!(
        "through nginx: {made} blocking reloads made, {} logged, {origin} to the origin; hit ratio {:?} (blocking {:?}, media {:?})",
        blocking.requests(),
        s.hit_ratio(),
        blocking.hit_ratio(),
        s.kind(Kind::Media).hit_ratio()
    );
}
