//! What each publisher child is started with: its command line (from the
//! `[publishers.*]` table and its profiles) and its environment (the
//! credentials, never on the command line).

use super::model::Publisher;

/// The command line of `framebus-mjpeg` for this config.
pub fn mjpeg_args(c: &Publisher, buses: &[String]) -> Vec<String> {
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
        a.push(format!("{}={size}{fps}:q{q}", p.name.0));
    }
    a.push("--grace".into());
    a.push(c.grace.0.as_secs_f64().to_string());
    a.push("--max-viewers".into());
    a.push(c.max_viewers.to_string());
    // Credentials go through the environment (`mjpeg_env`), not the
    // command line that every user can read in `ps`.
    a.extend(c.args.iter().cloned());
    a
}

/// Environment of `framebus-mjpeg` for this config: the credentials, which
/// only the same user (or root) can read in `/proc/PID/environ`.
pub fn mjpeg_env(c: &Publisher) -> Vec<(&'static str, String)> {
    c.auth
        .iter()
        .map(|auth| (framebus::contract::env::MJPEG_AUTH, auth.0.clone()))
        .collect()
}

/// The command line of `framebus-rtsp` for this config.
pub fn rtsp_args(c: &Publisher) -> Vec<String> {
    let mut a = vec!["--listen".into(), c.listen.get_ref().to_string()];
    for p in &c.profiles {
        let size = p
            .size
            .map_or_else(|| "native".to_string(), |s| format!("{}x{}", s.0, s.1));
        let mut spec = format!("{}={size}", p.name.0);
        if let Some(f) = p.fps {
            spec.push_str(&format!("@{f}"));
        }
        if let Some(b) = &p.bitrate {
            spec.push_str(&format!(",bitrate={}", b.get_ref().arg()));
        }
        if let Some(g) = &p.gop {
            spec.push_str(&format!(",gop={}", g.get_ref()));
        }
        a.push("--profile".into());
        a.push(spec);
    }
    a.push("--grace".into());
    a.push(c.grace.0.as_secs_f64().to_string());
    a.push("--max-clients".into());
    a.push(c.max_viewers.to_string());
    // Credentials go through the environment (`rtsp_env`).
    a.extend(c.args.iter().cloned());
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
    fn args_for_publishers() {
        let c = parse(
            Path::new("t"),
            &format!(
                "{CAM}[publishers.rtsp]\nlisten = \"127.0.0.1:0\"\n[[publishers.rtsp.profile]]\nname = \"high\"\nsize = \"1920x1080\"\nfps = 30\nbitrate = \"4M\"\n\
                 [publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\n[[publishers.mjpeg.profile]]\nname = \"low\"\nsize = \"640x480\"\nfps = 15\n"
            ),
        )
        .unwrap();
        let r = rtsp_args(c.publishers.rtsp.as_ref().unwrap());
        assert!(
            r.contains(&"high=1920x1080@30,bitrate=4M".to_string()),
            "{r:?}"
        );
        let m = mjpeg_args(c.publishers.mjpeg.as_ref().unwrap(), &["c0".into()]);
        assert!(m.contains(&"low=640x480@15:q80".to_string()), "{m:?}");
    }

    #[test]
    fn credentials_go_through_the_environment() {
        let c = parse(
            Path::new("t"),
            &format!("{CAM}[publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\nauth = \"ann:s3cret\"\n"),
        )
        .unwrap();
        let m = c.publishers.mjpeg.as_ref().unwrap();
        let args = mjpeg_args(m, &["c0".into()]);
        assert!(
            !args.iter().any(|a| a.contains("s3cret")),
            "password on the command line: {args:?}"
        );
        assert_eq!(
            mjpeg_env(m),
            vec![("FRAMEBUS_MJPEG_AUTH", "ann:s3cret".to_string())]
        );
    }
}
