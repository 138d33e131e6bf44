//! WebRTC (WHEP) of `framebus-mjpeg` in a real browser: headless Chromium
//! (`publishers/tests/browser/whep.mjs`) plays encoded buses written by
//! `framebus-encoder` from a test pattern with the time code.
//!
//! Each test has its own buses (unique names), its own server on port 0
//! (HTTP and UDP), its own encoders; guards stop everything, also when an
//! assertion fails. Pictures are small (320x180, 640x360) so that two
//! cores cope with tests running side by side. Every wait is a watchdog:
//! nothing here asserts how long something took.

mod http_support;

use std::collections::BTreeSet;
use std::time::Duration;

use http_support::*;

/// `framebus-encoder` profiles of the tests.
const BASE: &str = "base=320x180@30,h264=baseline";
const MAIN: &str = "main=640x360@30,h264=main";

/// Watchdog on sessions ending after their viewer left.
const SESSIONS_GONE: Duration = Duration::from_secs(15);

fn stat(bus: &str) -> framebus::BusInfo {
    framebus::stat(bus, None).unwrap_or_else(|e| panic!("stat {bus}: {e}"))
}

/// Live `framebus-encoder` processes whose command line names `bus`.
fn encoder_pids(bus: &str) -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        let is_encoder = args
            .first()
            .is_some_and(|a| a.ends_with(b"framebus-encoder"));
        if is_encoder && args.windows(2).any(|w| w == [b"--bus", bus.as_bytes()]) {
            pids.insert(pid);
        }
    }
    pids
}

#[test]
fn every_webrtc_profile_plays_in_chromium() {
    let bus = unique_name("wrtc-profiles");
    let _feed = Feeder::start(&bus, 640, 360, 30);
    let _enc = [
        Encoder::start(&bus, BASE, &[], None),
        Encoder::start(&bus, MAIN, &[], None),
    ];
    let server = Server::start(&["--bus", &bus]);
    for (profile, size) in [("base", (320, 180)), ("main", (640, 360))] {
        let mut opts = WhepPlay::new(server.whep(&bus, profile));
        opts.seconds = 4.0;
        opts.timecode = true;
        let watch = BusWatch::start(&framebus::contract::encoder::bus_name(&bus, profile));
        let r = browser::whep_play(&opts);
        let src = watch.finish();
        assert_eq!(r.viewers.len(), 1, "{r:#?}");
        let v = &r.viewers[0];
        assert_played(v, src.expect(60.0, 30.0), size, profile);
        let inb = v.stats.inbound.as_ref().expect("inbound");
        assert_no_server_freeze(v, &src, profile);
        assert_eq!(inb.packets_lost, Some(0), "{profile}: {inb:#?}");
        assert!(
            v.location
                .as_deref()
                .is_some_and(|l| l.contains(&format!("/{bus}/{profile}/whep/"))),
            "{profile}: {v:#?}"
        );
        assert_eq!(v.content_type.as_deref(), Some("application/sdp"), "{v:#?}");
        let tc = r.timecode.as_ref().expect("time codes of viewer 0");
        assert!(tc.decoded > 0, "{profile}: no time code read: {tc:#?}");
        assert_eq!(v.delete_status, Some(200), "{profile}: {v:#?}");
        assert!(r.page_errors.is_empty(), "{:?}", r.page_errors);
        server.wait_sessions(0, SESSIONS_GONE, None);
    }
}

#[test]
fn the_player_page_plays_webrtc_and_falls_back_to_mjpeg() {
    let bus = unique_name("wrtc-page");
    let _feed = Feeder::start(&bus, 320, 180, 30);
    let _enc = Encoder::start(&bus, BASE, &[], None);
    // The fallback is the first MJPEG profile: `medium`, made small here.
    let server = Server::start(&["--bus", &bus, "--profile", "medium=320x180@15"]);

    let r = browser::page_play(&server.url(&format!("/{bus}/base/")), 4.0);
    assert_eq!(r.http_status, Some(200), "{r:#?}");
    let p = &r.player;
    assert!(p.has_player, "{r:#?}");
    assert_eq!(p.mode.as_deref(), Some("webrtc"), "{r:#?}");
    assert_eq!(p.connection_state.as_deref(), Some("connected"), "{r:#?}");
    assert!(p.frames_presented.unwrap_or(0) > 0, "{r:#?}");
    assert!(p.stats.frames_decoded() > 0, "{r:#?}");
    let inb = p.stats.inbound.as_ref().expect("inbound video");
    assert_eq!(inb.codec.as_deref(), Some("video/H264"), "{inb:#?}");
    assert_eq!((inb.frame_width, inb.frame_height), (Some(320), Some(180)));
    assert!(r.page_errors.is_empty(), "{:?}", r.page_errors);

    // No encoded bus for this profile (the raw bus is live): the WHEP
    // POST gets 404 and the page shows the raw bus as MJPEG instead.
    let r = browser::page_play(&server.url(&format!("/{bus}/nosuch/")), 3.0);
    assert_eq!(r.http_status, Some(200), "{r:#?}");
    let p = &r.player;
    assert_eq!(p.mode.as_deref(), Some("mjpeg"), "{r:#?}");
    assert_eq!(p.img_loaded, Some(true), "{r:#?}");
    assert_eq!(
        (p.img_width, p.img_height),
        (Some(320), Some(180)),
        "{r:#?}"
    );
    assert_eq!(p.images.loaded, 1, "{r:#?}");
    assert!(
        r.console_errors.iter().any(|e| e.contains("404")),
        "the refused POST should show in the console: {r:#?}"
    );
    server.wait_sessions(0, SESSIONS_GONE, None);
}

#[test]
fn twenty_viewers_share_one_encoder() {
    const VIEWERS: u32 = 20;
    let bus = unique_name("wrtc-twenty");
    let _feed = Feeder::start(&bus, 320, 180, 30);
    let enc = Encoder::start(&bus, BASE, &[], None);
    let server = Server::start(&["--bus", &bus]);
    let url = server.whep(&bus, "base");
    let play = std::thread::spawn(move || {
        let mut opts = WhepPlay::new(url);
        opts.viewers = VIEWERS;
        opts.seconds = 6.0;
        browser::whep_play(&opts)
    });

    // While they play: one reader on the encoded bus (the server's shared
    // feed), one encoder process, every viewer on that feed.
    let feed_label = format!("bus=\"{}\"", enc.out);
    let mut most = 0.0f64;
    let mut readers_seen = BTreeSet::new();
    let mut encoders_seen = BTreeSet::new();
    let mut api: Option<serde_json::Value> = None;
    let all_on = eventually(Duration::from_secs(120), || {
        if play.is_finished() {
            return true;
        }
        let m = server.metrics(None);
        let n = labelled(&m, "framebus_webrtc_feed_sessions", &feed_label).unwrap_or(0.0);
        most = most.max(n);
        if n >= 1.0 {
            let st = stat(&enc.out);
            readers_seen.insert(st.readers.len());
            encoders_seen.extend(encoder_pids(&bus));
            encoders_seen.insert(st.producer_pid);
        }
        if n == f64::from(VIEWERS) && api.is_none() {
            // The same sessions as `framebus status` shows them.
            let doc: serde_json::Value =
                serde_json::from_str(&server.request("GET", "/api/v1/streams", &[], b"").text())
                    .expect("/api/v1/streams is JSON");
            api = Some(doc);
        }
        n == f64::from(VIEWERS)
    });
    let r = play.join().expect("the browser thread");
    assert!(all_on, "the viewers never all played");
    assert_eq!(r.viewers.len(), VIEWERS as usize, "{r:#?}");
    for v in &r.viewers {
        assert_played(v, 30, (320, 180), &format!("viewer {}", v.index));
        assert_eq!(v.delete_status, Some(200), "{v:#?}");
    }
    assert_eq!(
        most,
        f64::from(VIEWERS),
        "feed sessions never reached {VIEWERS}"
    );
    assert_eq!(
        readers_seen,
        BTreeSet::from([1]),
        "readers of {} while the viewers played",
        enc.out
    );
    assert_eq!(
        encoders_seen,
        BTreeSet::from([enc.child.pid()]),
        "encoder processes of {bus} (and the encoded bus's producer)"
    );
    let api = api.expect("/api/v1/streams while every viewer played");
    let sessions = api["webrtc"].as_array().expect("a webrtc list");
    let ours = sessions
        .iter()
        .filter(|s| s["bus"] == bus.as_str() && s["requested"] == "base" && s["profile"] == "base")
        .count();
    assert_eq!(ours, VIEWERS as usize, "{api:#}");
    server.wait_sessions(0, SESSIONS_GONE, None);
}

#[test]
fn whep_requires_credentials_when_configured() {
    let bus = unique_name("wrtc-auth");
    let _feed = Feeder::start(&bus, 320, 180, 30);
    let _enc = Encoder::start(&bus, BASE, &[], None);
    let path = format!("/{bus}/base/whep");
    let offer = CHROME_OFFER.as_bytes();

    for (flag, good, auth, bad) in [
        (
            "--token",
            "s3cret-token",
            "Bearer s3cret-token",
            "Bearer wrong",
        ),
        (
            "--auth",
            "viewer:pa55",
            "Basic dmlld2VyOnBhNTU=",
            "Basic dmlld2VyOng=",
        ),
    ] {
        let server = Server::start(&["--bus", &bus, flag, good]);
        // Without credentials, or wrong ones: 401, no session.
        let r = server.post_sdp(&path, offer);
        assert_eq!(r.status, 401, "{flag}: {r:?}");
        r.error_json();
        let r = server.request(
            "POST",
            &path,
            &[("Content-Type", "application/sdp"), ("Authorization", bad)],
            offer,
        );
        assert_eq!(r.status, 401, "{flag}: {r:?}");
        let r = server.request("DELETE", &format!("{path}/0123456789abcdef"), &[], b"");
        assert_eq!(r.status, 401, "{flag}: {r:?}");
        let r = server.request("GET", &format!("/{bus}/base/"), &[], b"");
        assert_eq!(r.status, 401, "{flag}: the player page: {r:?}");
        assert_eq!(server.sessions(Some(auth)), Some(0.0));

        // With them: plays, and the DELETE (with them too) ends it.
        let mut opts = WhepPlay::new(server.whep(&bus, "base"));
        opts.seconds = 3.0;
        opts.auth = if flag == "--token" {
            Auth::Bearer(good.to_string())
        } else {
            Auth::Basic(good.to_string())
        };
        let r = browser::whep_play(&opts);
        let v = &r.viewers[0];
        assert_played(v, 30, (320, 180), flag);
        assert_eq!(v.delete_status, Some(200), "{flag}: {v:#?}");
        server.wait_sessions(0, SESSIONS_GONE, Some(auth));
    }
}

#[test]
fn a_keyframe_request_reaches_the_encoder() {
    let bus = unique_name("wrtc-keyframe");
    let _feed = Feeder::start(&bus, 320, 180, 30);
    // A 10 s GOP: a joiner that did not get a keyframe forced for it would
    // see none within its run.
    let enc = Encoder::start(&bus, &format!("{BASE},gop=300"), &[], None);
    // The joiner never starts from the cached GOP: it must ask the encoder.
    let server = Server::start(&["--bus", &bus, "--webrtc-join-max-age-ms", "0"]);
    let url = server.whep(&bus, "base");
    let first = std::thread::spawn(move || {
        let mut opts = WhepPlay::new(url);
        opts.seconds = 12.0;
        browser::whep_play(&opts)
    });
    let feed_label = format!("bus=\"{}\"", enc.out);
    let playing = eventually(Duration::from_secs(60), || {
        first.is_finished()
            || labelled(
                &server.metrics(None),
                "framebus_webrtc_feed_frames_total",
                &feed_label,
            )
            .is_some_and(|n| n > 30.0)
                && labelled(
                    &server.metrics(None),
                    "framebus_webrtc_feed_sessions",
                    &feed_label,
                ) == Some(1.0)
    });
    assert!(
        playing && !first.is_finished(),
        "the first viewer never played"
    );
    std::thread::sleep(Duration::from_secs(1));
    let before = stat(&enc.out);

    let mut opts = WhepPlay::new(server.whep(&bus, "base"));
    opts.seconds = 4.0;
    let joiner = browser::whep_play(&opts);
    let after = stat(&enc.out);
    let first = first.join().expect("the first viewer's thread");

    assert_played(&first.viewers[0], 60, (320, 180), "first viewer");
    assert_played(&joiner.viewers[0], 30, (320, 180), "joiner");
    assert!(
        after.keyframe_requests > before.keyframe_requests,
        "no keyframe request reached {}: {} then {}",
        enc.out,
        before.keyframe_requests,
        after.keyframe_requests
    );
    assert!(
        after.keyframes_forced > before.keyframes_forced,
        "the encoder forced no keyframe: {} then {}",
        before.keyframes_forced,
        after.keyframes_forced
    );
    let m = server.metrics(None);
    assert!(
        labelled(
            &m,
            "framebus_webrtc_feed_keyframe_requests_total",
            &feed_label
        )
        .or_else(|| labelled(&m, "framebus_webrtc_feed_keyframe_requests", &feed_label))
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    server.wait_sessions(0, SESSIONS_GONE, None);
}
