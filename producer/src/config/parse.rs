//! Reading `framebus.toml`: TOML errors and bad values at their line and
//! column, then the checks across values (at least one camera, a bus
//! named twice, encoders and the cameras they name, the RTSP settings
//! that moved to `[[encoder]]`, backoff bounds, a listen address used
//! twice or already taken).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use super::model::{Config, ProfileCfg};

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

    let mut listens: Vec<(SocketAddr, usize)> = Vec::new();
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
        if !common.enabled {
            continue;
        }
        let addr = *common.listen.get_ref();
        let start = common.listen.span().start;
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
        assert_eq!(c.cameras.len(), 1);
        assert_eq!(c.cameras[0].size, Some(Size(1920, 1080)));
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
                "high=1920x1080@30,bitrate=4M,gop=60 -> cam0.h264.high",
                "low=640x360@30,bitrate=800k,gop=60 -> cam0.h264.low"
            ]
        );
        assert!(c.publishers.rtsp.as_ref().unwrap().profiles.is_empty());
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
