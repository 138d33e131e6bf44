//! What each child is started with: a publisher's command line (from the
//! `[publishers.*]` table and its profiles) and environment (the
//! credentials, never on the command line); an encoder's command line
//! (from its `[[encoder]]` and camera).

use super::model::{EncoderJob, Publisher, RecorderCfg};

/// The command line of `framebus-mjpeg` for this config; `recorder` is
/// the enabled `[publishers.recorder]`, if any (its page gets a link from
/// the index page: [`recorder_url`]).
pub fn mjpeg_args(c: &Publisher, buses: &[String], recorder: Option<&RecorderCfg>) -> Vec<String> {
    let mut a = vec!["--listen".into(), c.listen.get_ref().to_string()];
    for b in buses {
        a.push("--bus".into());
        a.push(b.clone());
    }
    for p in &c.profiles {
        let size = p
            .size
            .map_or_else(|| "native".to_string(), |s| format!("{}x{}", s.0, s.1));
        let fps = p.fps.map_or_else(String::new, |f| format!("@{f}"));
        let q = p.quality.as_ref().map_or(80, |q| q.get_ref().0);
        a.push("--profile".into());
        a.push(format!("{}={size}{fps}:q{q}", p.name.get_ref().0));
    }
    a.push("--grace".into());
    a.push(c.grace().as_secs_f64().to_string());
    a.push("--max-viewers".into());
    a.push(c.max_viewers.to_string());
    a.extend(webrtc_args(c));
    a.extend(hls_args(c));
    // Not when `args` gives its own (clap refuses the flag twice).
    if let Some(url) = recorder.and_then(recorder_url) {
        if !c.args.iter().any(|a| a.starts_with("--recorder-url")) {
            a.push("--recorder-url".into());
            a.push(url);
        }
    }
    // Credentials go through the environment (`mjpeg_env`), not the
    // command line that every user can read in `ps`.
    a.extend(c.args.iter().cloned());
    a
}

/// The URL of the recorder's page from its `listen` address: `0.0.0.0` and
/// `[::]` stay as they are (framebus-mjpeg's page puts in the host the
/// browser reached it at, which is also the recorder's); none for port 0,
/// which the recorder picks only when it starts.
pub fn recorder_url(r: &RecorderCfg) -> Option<String> {
    let l = r.listen();
    (l.port() != 0).then(|| format!("http://{l}/"))
}

/// The `--webrtc-*` flags from `[publishers.mjpeg.webrtc]` (none without
/// the table: `framebus-mjpeg`'s defaults).
fn webrtc_args(c: &Publisher) -> Vec<String> {
    let Some(w) = c.webrtc.as_ref().map(|w| w.get_ref()) else {
        return Vec::new();
    };
    if !w.enabled {
        return vec!["--no-webrtc".into()];
    }
    let mut a = Vec::new();
    let mut flag = |name: &str, value: String| {
        a.push(format!("--{name}"));
        a.push(value);
    };
    if let Some(u) = w.udp {
        flag("webrtc-udp", u.to_string());
    }
    for cand in &w.candidates {
        flag("webrtc-candidate", cand.clone());
    }
    for s in &w.ice_servers {
        flag("webrtc-ice-server", s.clone());
    }
    if let Some(u) = &w.ice_username {
        flag("webrtc-ice-username", u.clone());
    }
    if let Some(p) = &w.ice_credential {
        flag("webrtc-ice-credential", p.clone());
    }
    flag(
        "webrtc-max-viewers",
        w.max_viewers.unwrap_or(c.max_viewers).to_string(),
    );
    if !w.adapt {
        a.push("--webrtc-no-adapt".into());
    }
    a
}

/// The `--hls-*` flags from `[publishers.mjpeg.hls]` (the viewer limit
/// follows the publisher's `max_viewers` without the table).
fn hls_args(c: &Publisher) -> Vec<String> {
    let w = c.hls.as_ref().map(|w| w.get_ref());
    if w.is_some_and(|w| !w.enabled) {
        return vec!["--no-hls".into()];
    }
    let mut a = Vec::new();
    let mut flag = |name: &str, value: String| {
        a.push(format!("--{name}"));
        a.push(value);
    };
    if let Some(p) = w.and_then(|w| w.part_ms) {
        flag("hls-part-ms", p.to_string());
    }
    if let Some(n) = w.and_then(|w| w.segments) {
        flag("hls-segments", n.to_string());
    }
    if let Some(i) = w.and_then(|w| w.idle.as_ref()) {
        flag("hls-idle", i.get_ref().0.as_secs_f64().to_string());
    }
    flag(
        "hls-max-viewers",
        w.and_then(|w| w.max_viewers)
            .unwrap_or(c.max_viewers)
            .to_string(),
    );
    a
}

/// Environment of `framebus-mjpeg` for this config: the credentials, which
/// only the same user (or root) can read in `/proc/PID/environ`; and the
/// enabled `recorder`'s, which the console needs to forward the
/// recorder's API (`/api/v1/recordings` on the browser's address).
pub fn mjpeg_env(c: &Publisher, recorder: Option<&RecorderCfg>) -> Vec<(&'static str, String)> {
    let own = c
        .auth
        .iter()
        .map(|auth| (framebus::contract::env::MJPEG_AUTH, auth.0.clone()));
    let rec = recorder
        .and_then(|r| r.auth.as_ref())
        .map(|auth| (framebus::contract::env::RECORDER_AUTH, auth.0.clone()));
    own.chain(rec).collect()
}

/// The command line of `framebus-rtsp` for this config. It encodes
/// nothing: it serves the encoded buses the `[[encoder]]` children write,
/// so it gets no profiles and no grace.
pub fn rtsp_args(c: &Publisher) -> Vec<String> {
    let mut a = vec!["--listen".into(), c.listen.get_ref().to_string()];
    a.push("--max-clients".into());
    a.push(c.max_viewers.to_string());
    // Credentials go through the environment (`rtsp_env`).
    a.extend(c.args.iter().cloned());
    a
}

/// The command line of `framebus-recorder` for this config: `--listen A
/// [--dir D] [--buffer S]… [--continuous S]… --preroll-max T --fragment T
/// --segment T --max-duration T [--retain-age T] [--retain-bytes N]
/// --max-recordings N`, then `args`. Durations are seconds with their
/// unit (`30s`), sizes bytes; streams are written `camera/encoder`.
pub fn recorder_args(c: &RecorderCfg) -> Vec<String> {
    let mut a = vec!["--listen".into(), c.listen().to_string()];
    let mut flag = |name: &str, value: String| {
        a.push(format!("--{name}"));
        a.push(value);
    };
    if let Some(d) = &c.dir {
        flag("dir", d.display().to_string());
    }
    let stream = |s: &String| match framebus::contract::encoder::stream(s) {
        Some((bus, profile)) => format!("{bus}/{profile}"),
        None => s.clone(),
    };
    for s in &c.buffer {
        flag("buffer", stream(s.get_ref()));
    }
    for s in &c.continuous {
        flag("continuous", stream(s.get_ref()));
    }
    flag("preroll-max", c.preroll_max().arg());
    flag("fragment", c.fragment.arg());
    flag("segment", c.segment.arg());
    flag("max-duration", c.max_duration.arg());
    if let Some(t) = c.retain_age {
        flag("retain-age", t.arg());
    }
    if let Some(b) = c.retain_bytes {
        flag("retain-bytes", b.0.to_string());
    }
    flag("max-recordings", c.max_recordings.0.to_string());
    // Credentials go through the environment (`recorder_env`).
    a.extend(c.args.iter().cloned());
    a
}

/// Environment of `framebus-recorder` for this config (the credentials).
pub fn recorder_env(c: &RecorderCfg) -> Vec<(&'static str, String)> {
    c.auth
        .iter()
        .map(|auth| (framebus::contract::env::RECORDER_AUTH, auth.0.clone()))
        .collect()
}

/// The command line of `framebus-encoder` for one (camera, encoder):
/// `--bus RAW --profile NAME=WxH|native[@FPS][,bitrate=B][,gop=N][,h264=P]
/// --out BUS [--encoder E] --grace SECS`.
pub fn encoder_args(job: &EncoderJob) -> Vec<String> {
    let s = &job.spec;
    let size = s
        .size
        .map_or_else(|| "native".to_string(), |(w, h)| format!("{w}x{h}"));
    let mut profile = format!("{}={size}", s.name);
    if let Some(f) = s.fps {
        profile.push_str(&format!("@{f}"));
    }
    if let Some(b) = s.bitrate {
        profile.push_str(&format!(",bitrate={}", b.arg()));
    }
    if let Some(g) = s.gop {
        profile.push_str(&format!(",gop={g}"));
    }
    if let Some(h) = &s.h264 {
        profile.push_str(&format!(",h264={h}"));
    }
    let mut a = vec![
        "--bus".to_string(),
        job.raw_bus.clone(),
        "--profile".into(),
        profile,
        "--out".into(),
        job.out_bus.clone(),
    ];
    if let Some(e) = &s.encoder {
        a.push("--encoder".into());
        a.push(e.clone());
    }
    a.push("--grace".into());
    a.push(s.grace.as_secs_f64().to_string());
    a
}

/// Environment of `framebus-rtsp` for this config (the credentials).
pub fn rtsp_env(c: &Publisher) -> Vec<(&'static str, String)> {
    c.auth
        .iter()
        .map(|auth| (framebus::contract::env::RTSP_AUTH, auth.0.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse;

    const CAM: &str = "[[camera]]\nbus = \"c0\"\n";

    #[test]
    fn hls_table_becomes_flags() {
        let cfg = |extra: &str| {
            parse(
                Path::new("t"),
                &format!(
                    "{CAM}[publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\nmax_viewers = 9\n{extra}"
                ),
            )
            .expect("config")
        };
        let c = cfg("");
        let a = mjpeg_args(c.publishers.mjpeg.as_ref().unwrap(), &[], None).join(" ");
        assert!(a.contains("--hls-max-viewers 9"), "{a}");
        let c = cfg(
            "[publishers.mjpeg.hls]\npart_ms = 250\nsegments = 5\nidle = 30\nmax_viewers = 40\n",
        );
        let a = mjpeg_args(c.publishers.mjpeg.as_ref().unwrap(), &[], None).join(" ");
        assert!(
            a.contains("--hls-part-ms 250 --hls-segments 5 --hls-idle 30 --hls-max-viewers 40"),
            "{a}"
        );
        let c = cfg("[publishers.mjpeg.hls]\nenabled = false\n");
        let a = mjpeg_args(c.publishers.mjpeg.as_ref().unwrap(), &[], None);
        assert!(a.contains(&"--no-hls".to_string()), "{a:?}");
        let e = parse(
            Path::new("t"),
            &format!(
                "{CAM}[publishers.rtsp]\nlisten = \"127.0.0.1:0\"\n[publishers.rtsp.hls]\nenabled = true\n"
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("[publishers.mjpeg.hls]"), "{e}");
    }

    #[test]
    fn webrtc_table_becomes_flags() {
        let c = parse(
            Path::new("t"),
            &format!(
                "{CAM}[publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\n[publishers.mjpeg.webrtc]\n\
                 udp = \"0.0.0.0:8189\"\ncandidates = [\"203.0.113.7\"]\n\
                 ice_servers = [\"turn:turn.example:3478\"]\nice_username = \"u\"\nice_credential = \"p\"\nadapt = false\n"
            ),
        )
        .unwrap();
        let a = mjpeg_args(c.publishers.mjpeg.as_ref().unwrap(), &[], None).join(" ");
        assert!(
            a.contains("--webrtc-udp 0.0.0.0:8189 --webrtc-candidate 203.0.113.7 --webrtc-ice-server turn:turn.example:3478 --webrtc-ice-username u --webrtc-ice-credential p --webrtc-max-viewers 32 --webrtc-no-adapt"),
            "{a}"
        );
        let c = parse(
            Path::new("t"),
            &format!("{CAM}[publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\n[publishers.mjpeg.webrtc]\nenabled = false\n"),
        )
        .unwrap();
        assert!(mjpeg_args(c.publishers.mjpeg.as_ref().unwrap(), &[], None)
            .contains(&"--no-webrtc".to_string()));
        let e = parse(
            Path::new("t"),
            &format!("{CAM}[publishers.rtsp]\nlisten = \"127.0.0.1:0\"\n[publishers.rtsp.webrtc]\nadapt = false\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("[publishers.mjpeg.webrtc]"), "{e}");
    }

    #[test]
    fn args_for_publishers() {
        let c = parse(
            Path::new("t"),
            &format!(
                "{CAM}[publishers.rtsp]\nlisten = \"127.0.0.1:0\"\nmax_viewers = 7\n\
                 [publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\n[[publishers.mjpeg.profile]]\nname = \"low\"\nsize = \"640x480\"\nfps = 15\n"
            ),
        )
        .unwrap();
        let r = rtsp_args(c.publishers.rtsp.as_ref().unwrap());
        assert_eq!(r, ["--listen", "127.0.0.1:0", "--max-clients", "7"]);
        let m = mjpeg_args(c.publishers.mjpeg.as_ref().unwrap(), &["c0".into()], None);
        assert!(m.contains(&"low=640x480@15:q80".to_string()), "{m:?}");
    }

    #[test]
    fn the_mjpeg_index_links_to_the_recorder() {
        let args = |recorder: &str, extra: &str| {
            let c = parse(
                Path::new("t"),
                &format!(
                    "{CAM}[[encoder]]\nname = \"high\"\n\
                     [publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\n{extra}{recorder}"
                ),
            )
            .unwrap();
            let r = c.recorder().filter(|r| r.enabled);
            mjpeg_args(c.publishers.mjpeg.as_ref().unwrap(), &[], r)
        };
        let url = |a: &[String]| {
            let i = a.iter().position(|a| a == "--recorder-url")?;
            Some(a[i + 1].clone())
        };
        assert_eq!(url(&args("", "")), None);
        assert_eq!(
            url(&args("[publishers.recorder]\n", "")).as_deref(),
            Some("http://127.0.0.1:8090/")
        );
        // Every address: framebus-mjpeg's page puts in the browser's host.
        assert_eq!(
            url(&args(
                "[publishers.recorder]\nlisten = \"0.0.0.0:9000\"\n",
                ""
            ))
            .as_deref(),
            Some("http://0.0.0.0:9000/")
        );
        assert_eq!(
            url(&args("[publishers.recorder]\nlisten = \"[::]:9000\"\n", "")).as_deref(),
            Some("http://[::]:9000/")
        );
        // No link: disabled, a port picked at start, or given in `args`.
        for (rec, extra) in [
            ("[publishers.recorder]\nenabled = false\n", ""),
            ("[publishers.recorder]\nlisten = \"127.0.0.1:0\"\n", ""),
        ] {
            assert_eq!(url(&args(rec, extra)), None, "{rec}");
        }
        let a = args(
            "[publishers.recorder]\n",
            "args = [\"--recorder-url\", \"https://rec.example/\"]\n",
        );
        assert_eq!(url(&a).as_deref(), Some("https://rec.example/"), "{a:?}");
        assert_eq!(a.iter().filter(|a| *a == "--recorder-url").count(), 1);
    }

    #[test]
    fn args_for_encoders() {
        let c = parse(
            Path::new("t"),
            &format!(
                "{CAM}[[camera]]\nbus = \"c1\"\n\
                 [[encoder]]\nname = \"high\"\nsize = \"1920x1080\"\nfps = 30\nbitrate = \"4M\"\ngop = 60\nh264 = \"main\"\n\
                 [[encoder]]\nname = \"low\"\nsize = \"640x360\"\nbitrate = 800000\nencoder = \"libx264\"\ncameras = [\"c1\"]\ngrace = 2.5\n"
            ),
        )
        .unwrap();
        let jobs = c.encoder_jobs();
        let args: Vec<Vec<String>> = jobs.iter().map(encoder_args).collect();
        assert_eq!(
            args,
            [
                vec![
                    "--bus",
                    "c0",
                    "--profile",
                    "high=1920x1080@30,bitrate=4M,gop=60,h264=main",
                    "--out",
                    "c0.h264.high",
                    "--grace",
                    "10"
                ],
                vec![
                    "--bus",
                    "c1",
                    "--profile",
                    "high=1920x1080@30,bitrate=4M,gop=60,h264=main",
                    "--out",
                    "c1.h264.high",
                    "--grace",
                    "10"
                ],
                vec![
                    "--bus",
                    "c1",
                    "--profile",
                    "low=640x360,bitrate=800k",
                    "--out",
                    "c1.h264.low",
                    "--encoder",
                    "libx264",
                    "--grace",
                    "2.5"
                ],
            ]
        );
    }

    #[test]
    fn args_for_the_recorder() {
        let c = parse(
            Path::new("t"),
            &format!(
                "{CAM}[[encoder]]\nname = \"high\"\n[[encoder]]\nname = \"low\"\n\
                 [publishers.recorder]\nlisten = \"127.0.0.1:0\"\ndir = \"/srv/rec\"\n\
                 buffer = [\"c0/high\", \"c0.h264.low\"]\ncontinuous = [\"c0/low\"]\n\
                 preroll_max = 45\nfragment = \"500ms\"\nsegment = \"5m\"\nmax_duration = 7200.5\n\
                 retain_age = \"7d\"\nretain_bytes = \"10G\"\nmax_recordings = 4\n\
                 args = [\"--cors-origin\", \"https://ui.example\"]\n"
            ),
        )
        .unwrap();
        assert_eq!(
            recorder_args(c.recorder().unwrap()),
            [
                "--listen",
                "127.0.0.1:0",
                "--dir",
                "/srv/rec",
                "--buffer",
                "c0/high",
                "--buffer",
                "c0/low",
                "--continuous",
                "c0/low",
                "--preroll-max",
                "45s",
                "--fragment",
                "0.5s",
                "--segment",
                "300s",
                "--max-duration",
                "7200.5s",
                "--retain-age",
                "604800s",
                "--retain-bytes",
                "10737418240",
                "--max-recordings",
                "4",
                "--cors-origin",
                "https://ui.example",
            ]
        );
    }

    #[test]
    fn credentials_go_through_the_environment() {
        let c = parse(
            Path::new("t"),
            &format!("{CAM}[publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\nauth = \"ann:s3cret\"\n"),
        )
        .unwrap();
        let m = c.publishers.mjpeg.as_ref().unwrap();
        let args = mjpeg_args(m, &["c0".into()], None);
        assert!(
            !args.iter().any(|a| a.contains("s3cret")),
            "password on the command line: {args:?}"
        );
        assert_eq!(
            mjpeg_env(m, None),
            vec![("FRAMEBUS_MJPEG_AUTH", "ann:s3cret".to_string())]
        );
        let c = parse(
            Path::new("t"),
            &format!(
                "{CAM}[publishers.recorder]\nlisten = \"127.0.0.1:0\"\nauth = \"ann:s3cret\"\n"
            ),
        )
        .unwrap();
        let r = c.recorder().unwrap();
        let args = recorder_args(r);
        assert!(
            !args.iter().any(|a| a.contains("s3cret")),
            "password on the command line: {args:?}"
        );
        assert_eq!(
            recorder_env(r),
            vec![("FRAMEBUS_RECORDER_AUTH", "ann:s3cret".to_string())]
        );
        assert!(framebus::contract::env::CREDENTIALS.contains(&"FRAMEBUS_RECORDER_AUTH"));
    }
}
