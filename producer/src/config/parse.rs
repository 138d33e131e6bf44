//! Reading `framebus.toml`: TOML errors and bad values at their line and
//! column, then the checks across values (at least one camera, a bus
//! named twice, encoders and the cameras they name, the RTSP settings
//! that moved to `[[encoder]]`, the recorder's streams and pre-roll,
//! backoff bounds, a listen address used twice or already taken).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use super::model::{Config, ProfileCfg, RecorderCfg};

/// Why a config file cannot be used. Displayed as `FILE:LINE:COL: what`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Bad TOML, an unknown key or a bad value.
    #[error("{}:{line}:{column}: {message}", path.display())]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A problem that has no single position.
    #[error("{}: {message}", path.display())]
    Whole {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// Read and check a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parse and check config text (`path` only names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let at = |offset: usize, message: String| {
        let (line, column) = line_col(text, offset);
        ConfigError::At {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    };
    let config: Config = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => at(span.start, e.message().trim().to_string()),
        None => ConfigError::Whole {
            path: path.to_path_buf(),
            message: e.message().trim().to_string(),
        },
    })?;

    if config.cameras.is_empty() {
        return Err(ConfigError::Whole {
            path: path.to_path_buf(),
            message: "no [[camera]]: at least one camera is needed".into(),
        });
    }
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for cam in &config.cameras {
        let name = cam.bus.get_ref().as_str();
        let start = cam.bus.span().start;
        framebus::validate_name(name).map_err(|e| at(start, e.to_string()))?;
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            let (line, _) = line_col(text, *first);
            return Err(at(
                start,
                format!("bus {name:?} is already used by the camera at line {line}"),
            ));
        }
        seen.push((name, start));
        if cam.reconnect_max.0 < cam.reconnect_initial.0 {
            return Err(at(
                start,
                format!("camera {name:?}: reconnect_max is shorter than reconnect_initial"),
            ));
        }
    }
    let s = &config.supervision;
    if s.backoff_max.0 < s.backoff_initial.0 {
        return Err(ConfigError::Whole {
            path: path.to_path_buf(),
            message: "[supervision] backoff_max is shorter than backoff_initial".into(),
        });
    }

    check_encoders(&config, text, &at)?;
    if let Some(rtsp) = &config.publishers.rtsp {
        if let Some(first) = rtsp.profiles.first() {
            // Point at the table header when there is one.
            let name_at = first.name.span().start;
            let start = text[..name_at]
                .rfind("[[publishers.rtsp.profile]]")
                .unwrap_or(name_at);
            let grace = rtsp.grace.as_ref().map(|g| g.get_ref().0.as_secs_f64());
            return Err(at(start, rtsp_profiles_moved(&rtsp.profiles, grace)));
        }
        if let Some(w) = &rtsp.webrtc {
            return Err(at(
                w.span().start,
                "publishers.rtsp.webrtc: WebRTC is served by the HTTP publisher; \
                 move this table to [publishers.mjpeg.webrtc]"
                    .into(),
            ));
        }
        if let Some(h) = &rtsp.hls {
            return Err(at(
                h.span().start,
                "publishers.rtsp.hls: HLS is served by the HTTP publisher; \
                 move this table to [publishers.mjpeg.hls]"
                    .into(),
            ));
        }
        if let Some(g) = &rtsp.grace {
            return Err(at(
                g.span().start,
                "publishers.rtsp.grace: framebus-rtsp no longer encodes; \
                 set `grace` on each [[encoder]] instead"
                    .into(),
            ));
        }
    }

    check_recorder(&config, text, &at)?;

    // Every enabled publisher's listen address and where it is written
    // (the recorder's default listen: its table).
    let mut wanted: Vec<(&str, SocketAddr, usize)> = Vec::new();
    for (kind, common) in config.publishers() {
        if kind == "mjpeg" {
            for p in &common.profiles {
                let wrong = p
                    .bitrate
                    .as_ref()
                    .map(|b| ("bitrate", b.span().start))
                    .or(p.gop.as_ref().map(|g| ("gop", g.span().start)));
                if let Some((key, start)) = wrong {
                    return Err(at(
                        start,
                        format!("`{key}` does not apply to mjpeg profiles"),
                    ));
                }
            }
        }
        if common.enabled {
            wanted.push((kind, *common.listen.get_ref(), common.listen.span().start));
        }
    }
    if let Some(table) = &config.publishers.recorder {
        let r = table.get_ref();
        if r.enabled {
            let start = r
                .listen
                .as_ref()
                .map_or(table.span().start, |l| l.span().start);
            wanted.push(("recorder", r.listen(), start));
        }
    }
    let mut listens: Vec<(SocketAddr, usize)> = Vec::new();
    for (kind, addr, start) in wanted {
        if addr.port() == 0 {
            continue;
        }
        if let Some((_, first)) = listens.iter().find(|(a, _)| *a == addr) {
            let (line, _) = line_col(text, *first);
            return Err(at(
                start,
                format!("publishers.{kind}.listen: {addr} is also used at line {line}"),
            ));
        }
        listens.push((addr, start));
        // A port another process holds is a configuration error now rather
        // than a crash loop later.
        if let Err(e) = TcpListener::bind(addr) {
            return Err(at(
                start,
                format!("publishers.{kind}.listen: cannot listen on {addr}: {e}"),
            ));
        }
    }
    Ok(config)
}

/// The checks of `[[encoder]]` across values: names unique, encoded bus
/// names valid and not a camera's, `cameras` naming configured cameras.
fn check_encoders(
    config: &Config,
    text: &str,
    at: &impl Fn(usize, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let buses: Vec<&str> = config
        .cameras
        .iter()
        .map(|c| c.bus.get_ref().as_str())
        .collect();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for enc in &config.encoders {
        let name = enc.name.get_ref().0.as_str();
        let start = enc.name.span().start;
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            let (line, _) = line_col(text, *first);
            return Err(at(
                start,
                format!("encoder {name:?} is already defined at line {line}"),
            ));
        }
        seen.push((name, start));
        if let Some(cams) = &enc.cameras {
            if cams.get_ref().is_empty() {
                return Err(at(
                    cams.span().start,
                    format!("encoder {name:?}: `cameras` is empty (leave it out for every camera)"),
                ));
            }
            for c in cams.get_ref() {
                if !buses.contains(&c.get_ref().as_str()) {
                    return Err(at(
                        c.span().start,
                        format!(
                            "encoder {name:?}: no camera with bus {:?} (cameras: {})",
                            c.get_ref(),
                            buses.join(", ")
                        ),
                    ));
                }
            }
        }
        for bus in buses.iter().filter(|b| enc.covers(b)) {
            let out = framebus::contract::encoder::bus_name(bus, name);
            framebus::validate_name(&out)
                .map_err(|e| at(start, format!("encoder {name:?}: encoded bus {e}")))?;
            if buses.contains(&out.as_str()) {
                return Err(at(
                    start,
                    format!("encoder {name:?}: its encoded bus {out:?} is also a camera's bus"),
                ));
            }
        }
    }
    Ok(())
}

/// The checks of `[publishers.recorder]` across values: `preroll_max` at
/// most [`RecorderCfg::PREROLL_LIMIT`], and every `buffer` and
/// `continuous` stream a configured camera with an encoder of that name
/// (an `[[encoder]]` covering it, or the default one), listed once.
fn check_recorder(
    config: &Config,
    text: &str,
    at: &impl Fn(usize, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let Some(r) = config.recorder() else {
        return Ok(());
    };
    if let Some(p) = &r.preroll_max {
        let d = p.get_ref().0;
        if d > RecorderCfg::PREROLL_LIMIT {
            return Err(at(
                p.span().start,
                format!(
                    "publishers.recorder.preroll_max: {} s is longer than the {} s allowed \
                     (the pre-roll of every buffered stream is held in memory)",
                    d.as_secs_f64(),
                    RecorderCfg::PREROLL_LIMIT.as_secs()
                ),
            ));
        }
    }
    let buses: Vec<&str> = config
        .cameras
        .iter()
        .map(|c| c.bus.get_ref().as_str())
        .collect();
    let jobs = config.encoder_jobs();
    for (key, list) in [("buffer", &r.buffer), ("continuous", &r.continuous)] {
        let mut seen: Vec<((&str, &str), usize)> = Vec::new();
        for item in list {
            let name = item.get_ref().as_str();
            let start = item.span().start;
            let what = |m: String| at(start, format!("publishers.recorder.{key}: {name:?}: {m}"));
            let Some((bus, profile)) = framebus::contract::encoder::stream(name) else {
                return Err(what(
                    "not a stream (write \"camera/encoder\", e.g. \"cam0/high\")".into(),
                ));
            };
            if !buses.contains(&bus) {
                return Err(what(format!(
                    "no camera with bus {bus:?} (cameras: {})",
                    buses.join(", ")
                )));
            }
            let profiles: Vec<&str> = jobs
                .iter()
                .filter(|j| j.raw_bus == bus)
                .map(|j| j.spec.name.as_str())
                .collect();
            if !profiles.contains(&profile) {
                let have = if profiles.is_empty() {
                    "no [[encoder]] covers it".to_string()
                } else {
                    format!("its encoders: {}", profiles.join(", "))
                };
                return Err(what(format!(
                    "camera {bus:?} has no encoder {profile:?} ({have})"
                )));
            }
            if let Some((_, first)) = seen.iter().find(|(s, _)| *s == (bus, profile)) {
                let (line, _) = line_col(text, *first);
                return Err(what(format!("already listed at line {line}")));
            }
            seen.push(((bus, profile), start));
        }
    }
    Ok(())
}

/// The error for an old `[[publishers.rtsp.profile]]`: where the profiles
/// went, and the `[[encoder]]` tables to write instead.
fn rtsp_profiles_moved(profiles: &[ProfileCfg], grace: Option<f64>) -> String {
    let mut m = String::from(
        "[[publishers.rtsp.profile]] moved to top-level [[encoder]] tables: framebus-rtsp \
         no longer encodes, it serves the encoded buses the encoders write. Write instead:",
    );
    for p in profiles {
        m.push_str(&format!(
            "\n    [[encoder]]\n    name = \"{}\"",
            p.name.get_ref().0
        ));
        if let Some(s) = p.size {
            m.push_str(&format!("\n    size = \"{}x{}\"", s.0, s.1));
        }
        if let Some(f) = p.fps {
            m.push_str(&format!("\n    fps = {f}"));
        }
        if let Some(b) = &p.bitrate {
            m.push_str(&format!("\n    bitrate = \"{}\"", b.get_ref().arg()));
        }
        if let Some(g) = &p.gop {
            m.push_str(&format!("\n    gop = {}", g.get_ref()));
        }
        if let Some(g) = grace {
            m.push_str(&format!("\n    grace = {g}"));
        }
    }
    if grace.is_some() {
        m.push_str("\n  and remove `grace` from [publishers.rtsp]");
    }
    m
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Size;

    fn err(text: &str) -> String {
        parse(Path::new("t.toml"), text).unwrap_err().to_string()
    }

    const CAM: &str = "[[camera]]\nbus = \"c0\"\n";

    #[test]
    fn example_parses() {
        let text = include_str!("../../../examples/framebus.toml");
        // The example's ports may be taken on this machine: only parse.
        let c: Config = toml::from_str(text).expect("example parses");
        // Two cameras: the console's mosaic shows both.
        assert_eq!(c.cameras.len(), 2);
        assert_eq!(c.cameras[0].size, Some(Size(1920, 1080)));
        assert_eq!(c.cameras[1].size, Some(Size(1280, 720)));
        assert_eq!(c.supervision.backoff_initial.0, Duration::from_secs(10));
        assert_eq!(c.supervision.backoff_max.0, Duration::from_secs(300));
        assert_eq!(c.supervision.max_restarts, 50);
        let specs: Vec<String> = c
            .encoder_jobs()
            .iter()
            .map(crate::config::encoder_args)
            .map(|a| format!("{} -> {}", a[3], a[5]))
            .collect();
        assert_eq!(
            specs,
            [
                "high=native@30,bitrate=4M,gop=60 -> cam0.h264.high",
                "high=native@30,bitrate=4M,gop=60 -> cam1.h264.high",
                "low=640x360@30,bitrate=800k,gop=60 -> cam0.h264.low",
                "low=640x360@30,bitrate=800k,gop=60 -> cam1.h264.low"
            ]
        );
        assert!(c.publishers.rtsp.as_ref().unwrap().profiles.is_empty());
        // The recorder buffers cam0's `high`, an encoder the example has.
        check_recorder(&c, text, &|o, m| ConfigError::At {
            path: "example".into(),
            line: line_col(text, o).0,
            column: line_col(text, o).1,
            message: m,
        })
        .expect("the example's recorder streams");
        assert_eq!(
            crate::config::recorder_args(c.recorder().expect("[publishers.recorder]")).join(" "),
            "--listen 127.0.0.1:8090 --buffer cam0/high --preroll-max 30s --fragment 1s \
             --segment 60s --max-duration 3600s --max-recordings 16"
        );
    }

    #[test]
    fn recorder_defaults_and_values() {
        let c = parse(
            Path::new("t"),
            &format!("{CAM}[[encoder]]\nname = \"hd\"\n[publishers.recorder]\n"),
        );
        // The default port may be taken here: only the defaults matter.
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                assert!(e.to_string().contains("127.0.0.1:8090"), "{e}");
                toml::from_str(&format!("{CAM}[publishers.recorder]\n")).unwrap()
            }
        };
        let r = c.recorder().unwrap();
        assert!(r.enabled && r.health_check);
        assert_eq!(r.listen().to_string(), "127.0.0.1:8090");
        assert_eq!(r.preroll_max().0, Duration::from_secs(30));
        assert_eq!(r.fragment.0, Duration::from_secs(1));
        assert_eq!(r.segment.0, Duration::from_secs(60));
        assert_eq!(r.max_duration.0, Duration::from_secs(3600));
        assert_eq!(r.max_recordings.0, 16);
        assert!(r.dir.is_none() && r.retain_age.is_none() && r.retain_bytes.is_none());
        assert!(r.buffer.is_empty() && r.continuous.is_empty());

        let r = |body: &str| {
            toml::from_str::<Config>(&format!("{CAM}[publishers.recorder]\n{body}"))
                .map_err(|e| e.message().to_string())
                .map(|c| c.publishers.recorder.unwrap().into_inner())
        };
        let d = |v: &str| r(&format!("segment = {v}\n")).map(|r| r.segment.0);
        assert_eq!(d("90"), Ok(Duration::from_secs(90)));
        assert_eq!(d("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(d("\"500ms\""), Ok(Duration::from_millis(500)));
        assert_eq!(d("\"1.5s\""), Ok(Duration::from_millis(1500)));
        assert_eq!(d("\"2m\""), Ok(Duration::from_secs(120)));
        assert_eq!(d("\"1h\""), Ok(Duration::from_secs(3600)));
        assert_eq!(d("\"30d\""), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(d("\"45\""), Ok(Duration::from_secs(45)));
        for bad in [
            "0", "-1", "\"0s\"", "\"-5s\"", "\"5 s\"", "\"5w\"", "\"s\"", "\"\"", "nan",
        ] {
            assert!(d(bad).is_err(), "segment = {bad}");
        }
        assert_eq!(d("0").unwrap_err(), "duration 0 must be positive");
        assert!(d("\"5w\"").unwrap_err().starts_with("bad duration \"5w\""));
        let b = |v: &str| r(&format!("retain_bytes = {v}\n")).map(|r| r.retain_bytes.unwrap().0);
        assert_eq!(b("1000"), Ok(1000));
        assert_eq!(b("\"1000\""), Ok(1000));
        assert_eq!(b("\"64k\""), Ok(64 << 10));
        assert_eq!(b("\"500M\""), Ok(500 << 20));
        assert_eq!(b("\"10G\""), Ok(10 << 30));
        assert_eq!(b("\"1.5G\""), Ok(3 << 29));
        assert_eq!(b("\"2T\""), Ok(2 << 40));
        for bad in [
            "0", "-1", "\"0G\"", "\"G\"", "\"10 G\"", "\"10GB\"", "\"-1G\"", "\"1e3\"",
        ] {
            assert!(b(bad).is_err(), "retain_bytes = {bad}");
        }
        assert!(r("max_recordings = 0\n").is_err());
        assert!(r("grace = 5\n")
            .unwrap_err()
            .contains("unknown field `grace`"));
    }

    #[test]
    fn recorder_mistakes_name_line_and_column() {
        // c0 has encoders hd and sd; c1 only sd.
        let base = format!(
            "{CAM}[[camera]]\nbus = \"c1\"\n\
             [[encoder]]\nname = \"hd\"\ncameras = [\"c0\"]\n[[encoder]]\nname = \"sd\"\n\
             [publishers.recorder]\nlisten = \"127.0.0.1:0\"\n"
        );
        let ok = |body: &str| parse(Path::new("t"), &format!("{base}{body}")).map(|_| ());
        ok("buffer = [\"c0/hd\", \"c0.h264.sd\"]\ncontinuous = [\"c1/sd\"]\npreroll_max = \"10m\"\n")
            .expect("valid streams");
        let e = |body: &str| err(&format!("{base}{body}"));
        let m = e("buffer = [\"c0/hd\", \"c1/hd\"]\n");
        assert!(
            m.starts_with("t.toml:12:20: publishers.recorder.buffer: \"c1/hd\": camera \"c1\" has no encoder \"hd\" (its encoders: sd)"),
            "{m}"
        );
        let m = e("continuous = [\"c9/sd\"]\n");
        assert!(
            m.starts_with("t.toml:12:15: publishers.recorder.continuous: \"c9/sd\": no camera with bus \"c9\" (cameras: c0, c1)"),
            "{m}"
        );
        let m = e("buffer = [\"c0\"]\n");
        assert!(
            m.starts_with("t.toml:12:11: publishers.recorder.buffer: \"c0\": not a stream (write \"camera/encoder\""),
            "{m}"
        );
        let m = e("buffer = [\"c0/hd\", \"c0.h264.hd\"]\n");
        assert!(
            m.starts_with("t.toml:12:20: publishers.recorder.buffer: \"c0.h264.hd\": already listed at line 12"),
            "{m}"
        );
        let m = e("preroll_max = 601\n");
        assert!(
            m.starts_with("t.toml:12:15: publishers.recorder.preroll_max: 601 s is longer than the 600 s allowed"),
            "{m}"
        );
        let m = e("fragment = \"0s\"\n");
        assert!(
            m.starts_with("t.toml:12:12: duration \"0s\" must be positive"),
            "{m}"
        );
        let m = e("max_recordings = 0\n");
        assert!(
            m.starts_with("t.toml:12:18: 0 is not a positive integer"),
            "{m}"
        );

        // No [[encoder]] and no RTSP: nothing is encoded.
        let m = err(&format!(
            "{CAM}[publishers.recorder]\nlisten = \"127.0.0.1:0\"\nbuffer = [\"c0/high\"]\n"
        ));
        assert!(
            m.contains("camera \"c0\" has no encoder \"high\" (no [[encoder]] covers it)"),
            "{m}"
        );
        // With RTSP and no [[encoder]], the default encoder `high` counts.
        parse(
            Path::new("t"),
            &format!(
                "{CAM}[publishers.rtsp]\nlisten = \"127.0.0.1:0\"\n\
                 [publishers.recorder]\nlisten = \"127.0.0.1:0\"\nbuffer = [\"c0/high\"]\n"
            ),
        )
        .expect("the default encoder is recordable");
    }

    #[test]
    fn recorder_listen_conflicts() {
        // The default listen address is reported at the table.
        let m = err(&format!(
            "{CAM}[publishers.mjpeg]\nlisten = \"127.0.0.1:8090\"\n[publishers.recorder]\n"
        ));
        // (Unless another process holds port 8090 here.)
        if !m.contains("cannot listen on") {
            assert!(
                m.starts_with(
                    "t.toml:5:1: publishers.recorder.listen: 127.0.0.1:8090 is also used at line 4"
                ),
                "{m}"
            );
        }
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let m = err(&format!(
            "{CAM}[publishers.recorder]\nlisten = \"{addr}\"\n"
        ));
        assert!(
            m.starts_with(&format!(
                "t.toml:4:10: publishers.recorder.listen: cannot listen on {addr}"
            )),
            "{m}"
        );
        // Disabled: not checked.
        parse(
            Path::new("t"),
            &format!("{CAM}[publishers.recorder]\nlisten = \"{addr}\"\nenabled = false\n"),
        )
        .expect("a disabled recorder's port is not bound");
        drop(held);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = err(&format!("{CAM}sise = \"1x1\"\n"));
        assert!(e.starts_with("t.toml:3:1: unknown field `sise`"), "{e}");
        let e = err(&format!("{CAM}size = \"12by7\"\n"));
        assert!(e.starts_with("t.toml:3:8: "), "{e}");
        assert!(e.contains("12by7"), "{e}");
        let e = err(&format!("{CAM}{CAM}"));
        assert!(
            e.starts_with("t.toml:4:7: bus \"c0\" is already used by the camera at line 2"),
            "{e}"
        );
        let e = err("");
        assert!(e.contains("no [[camera]]"), "{e}");
    }

    #[test]
    fn old_rtsp_profiles_show_the_encoder_to_write() {
        let e = err(&format!(
            "{CAM}[publishers.rtsp]\nlisten = \"127.0.0.1:0\"\ngrace = 5\n\
             [[publishers.rtsp.profile]]\nname = \"high\"\nsize = \"1920x1080\"\nfps = 30\nbitrate = \"4M\"\ngop = 60\n"
        ));
        assert!(
            e.starts_with("t.toml:6:1: [[publishers.rtsp.profile]] moved to top-level [[encoder]]"),
            "{e}"
        );
        assert!(
            e.contains(
                "[[encoder]]\n    name = \"high\"\n    size = \"1920x1080\"\n    fps = 30\n    bitrate = \"4M\"\n    gop = 60\n    grace = 5"
            ),
            "{e}"
        );
        let e = err(&format!(
            "{CAM}[publishers.rtsp]\nlisten = \"127.0.0.1:0\"\ngrace = 5\n"
        ));
        assert!(
            e.starts_with("t.toml:5:9: publishers.rtsp.grace: framebus-rtsp no longer encodes"),
            "{e}"
        );
    }

    #[test]
    fn encoder_defaults_and_default_encoder() {
        let c = parse(
            Path::new("t"),
            &format!("{CAM}[[encoder]]\nname = \"sd\"\n"),
        )
        .unwrap();
        let jobs = c.encoder_jobs();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].out_bus, "c0.h264.sd");
        let s = &jobs[0].spec;
        assert_eq!((s.size, s.fps, s.bitrate, s.gop), (None, None, None, None));
        assert_eq!((s.h264.as_deref(), s.encoder.as_deref()), (None, None));
        assert_eq!(s.grace, Duration::from_secs(10));
        assert!(!c.uses_default_encoder());

        // RTSP without [[encoder]]: the default `high` for every camera.
        let c = parse(
            Path::new("t"),
            &format!(
                "{CAM}[[camera]]\nbus = \"c1\"\n[publishers.rtsp]\nlisten = \"127.0.0.1:0\"\n"
            ),
        )
        .unwrap();
        assert!(c.uses_default_encoder());
        let jobs = c.encoder_jobs();
        let outs: Vec<&str> = jobs.iter().map(|j| j.out_bus.as_str()).collect();
        assert_eq!(outs, ["c0.h264.high", "c1.h264.high"]);
        assert_eq!(jobs[0].spec, crate::config::EncoderSpec::default_high());

        // Neither RTSP nor [[encoder]]: no encoder; RTSP disabled: none.
        let c = parse(Path::new("t"), CAM).unwrap();
        assert!(c.encoder_jobs().is_empty());
        let c = parse(
            Path::new("t"),
            &format!("{CAM}[publishers.rtsp]\nlisten = \"127.0.0.1:0\"\nenabled = false\n"),
        )
        .unwrap();
        assert!(c.encoder_jobs().is_empty());
    }

    #[test]
    fn encoder_mistakes_name_line_and_column() {
        let enc = |body: &str| err(&format!("{CAM}[[encoder]]\nname = \"hd\"\n{body}"));
        let e = enc("h264 = \"extended\"\n");
        assert!(
            e.starts_with("t.toml:5:8: unknown H.264 profile \"extended\""),
            "{e}"
        );
        let e = enc("encoder = \"x265\"\n");
        assert!(
            e.starts_with("t.toml:5:11: unknown encoder \"x265\""),
            "{e}"
        );
        let e = enc("cameras = [\"c0\", \"c9\"]\n");
        assert!(
            e.starts_with("t.toml:5:18: encoder \"hd\": no camera with bus \"c9\" (cameras: c0)"),
            "{e}"
        );
        let e = enc("cameras = []\n");
        assert!(
            e.starts_with("t.toml:5:11: encoder \"hd\": `cameras` is empty"),
            "{e}"
        );
        let e = enc("fps = 0\n");
        assert!(
            e.starts_with("t.toml:5:7: 0 is not a positive integer"),
            "{e}"
        );
        let e = enc("bitrat = \"4M\"\n");
        assert!(e.starts_with("t.toml:5:1: unknown field `bitrat`"), "{e}");
        let e = enc("[[encoder]]\nname = \"hd\"\n");
        assert!(
            e.starts_with("t.toml:6:8: encoder \"hd\" is already defined at line 4"),
            "{e}"
        );
        let e = err(&format!("{CAM}[[encoder]]\nname = \"HD\"\n"));
        assert!(
            e.starts_with("t.toml:4:8: encoder \"HD\": encoded bus "),
            "{e}"
        );
    }
}
