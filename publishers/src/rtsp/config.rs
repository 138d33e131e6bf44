//! Server configuration and the profile syntax of `--profile`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::encoder::EncoderKind;

/// One output profile: size, rate and encoder settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Name in the URL (`rtsp://host/{bus}/{name}`).
    pub name: String,
    /// Output size, `None` for the bus's own size.
    pub size: Option<(u32, u32)>,
    /// Output rate, `None` for the bus's nominal rate.
    pub fps: Option<u32>,
    /// Bit rate, bits per second.
    pub bitrate: u64,
    /// Frames between key frames, `None` for two seconds' worth.
    pub gop: Option<u32>,
}

/// A `--profile` value that does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad profile {spec:?}: {why} (expected NAME=WxH|native[@FPS][,bitrate=4M][,gop=N])")]
pub struct ProfileParseError {
    spec: String,
    why: &'static str,
}

fn parse_bitrate(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1_000),
        b'm' | b'M' => (&s[..s.len() - 1], 1_000_000),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult).filter(|&b| b > 0)
}

impl FromStr for Profile {
    type Err = ProfileParseError;

    /// `high=1920x1080@30,bitrate=4M,gop=60` or `native` or `native@15`.
    fn from_str(spec: &str) -> Result<Profile, ProfileParseError> {
        let err = |why| ProfileParseError {
            spec: spec.to_string(),
            why,
        };
        let mut parts = spec.split(',');
        let head = parts.next().unwrap_or_default();
        let (name, geometry) = match head.split_once('=') {
            Some((n, g)) => (n, g),
            None => (head, head),
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err("the name must be letters, digits, '-' or '_'"));
        }
        let (size, fps) = match geometry.split_once('@') {
            Some((s, f)) => (s, Some(f.parse::<u32>().map_err(|_| err("bad fps"))?)),
            None => (geometry, None),
        };
        if fps == Some(0) {
            return Err(err("fps must be positive"));
        }
        let size = if size == "native" || size == name && geometry == head {
            None
        } else {
            let (w, h) = size.split_once('x').ok_or(err("size must be WxH"))?;
            let w: u32 = w.parse().map_err(|_| err("bad width"))?;
            let h: u32 = h.parse().map_err(|_| err("bad height"))?;
            if !(16..=8192).contains(&w) || !(16..=8192).contains(&h) {
                return Err(err("size out of range 16..8192"));
            }
            Some((w, h))
        };
        let mut p = Profile {
            name: name.to_string(),
            size,
            fps,
            bitrate: 4_000_000,
            gop: None,
        };
        for kv in parts {
            match kv.split_once('=') {
                Some(("bitrate", v)) => p.bitrate = parse_bitrate(v).ok_or(err("bad bitrate"))?,
                Some(("gop", v)) => {
                    p.gop = Some(v.parse().ok().filter(|&g| g > 0).ok_or(err("bad gop"))?)
                }
                _ => return Err(err("unknown option")),
            }
        }
        Ok(p)
    }
}

/// The default profiles: `high` 1920x1080@30 4 Mbit/s and `native`.
pub fn default_profiles() -> Vec<Profile> {
    vec![
        "high=1920x1080@30,bitrate=4M".parse().expect("valid"),
        "native=native,bitrate=4M".parse().expect("valid"),
    ]
}

/// Credentials for RTSP Basic and Digest authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl FromStr for Credentials {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Credentials, &'static str> {
        let (user, password) = s.split_once(':').ok_or("expected user:password")?;
        if user.is_empty() {
            return Err("empty user name");
        }
        Ok(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }
}

/// Where the credentials came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// `--auth` on the command line.
    Argument,
    /// `--auth-file PATH`.
    File,
    /// The `FRAMEBUS_RTSP_AUTH` environment variable.
    Environment,
}

/// Credentials that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The file could not be read.
    #[error("cannot read the credentials file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or variable does not hold `user:password`.
    #[error("{origin} does not hold user:password ({why})")]
    Syntax {
        /// The file path or the variable name.
        origin: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// Parses the content of a credentials file: the first line that is not
/// empty and does not start with `#`, as `user:password` (the line end is
/// not part of the password; other spaces are).
pub fn parse_credentials_file(text: &str, origin: &str) -> Result<Credentials, CredentialError> {
    let line = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .ok_or(CredentialError::Syntax {
            origin: origin.to_string(),
            why: "no credentials line",
        })?;
    line.parse().map_err(|why| CredentialError::Syntax {
        origin: origin.to_string(),
        why,
    })
}

/// The credentials to require, from (in this order) `--auth`,
/// `--auth-file` or the `FRAMEBUS_RTSP_AUTH` variable (`env_value`).
pub fn load_credentials(
    arg: Option<Credentials>,
    file: Option<&std::path::Path>,
    env_value: Option<String>,
) -> Result<Option<(Credentials, CredentialSource)>, CredentialError> {
    if let Some(c) = arg {
        return Ok(Some((c, CredentialSource::Argument)));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let c = parse_credentials_file(&text, &path.display().to_string())?;
        return Ok(Some((c, CredentialSource::File)));
    }
    match env_value {
        Some(v) if !v.is_empty() => {
            let c = v.parse().map_err(|why| CredentialError::Syntax {
                origin: framebus::contract::env::RTSP_AUTH.to_string(),
                why,
            })?;
            Ok(Some((c, CredentialSource::Environment)))
        }
        _ => Ok(None),
    }
}

/// Everything the server needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Profiles served for every bus.
    pub profiles: Vec<Profile>,
    /// Encoder choice.
    pub encoder: EncoderKind,
    /// Encoder keeps running this long after its last client.
    pub grace: Duration,
    /// Clients per stream before 503.
    pub max_clients: usize,
    /// Session timeout announced in `Session:` and enforced.
    pub session_timeout: Duration,
    /// A connection without a session must complete a message within
    /// this time (since it opened or since its last message): idle
    /// connections and clients trickling an endless request head
    /// (slowloris) are closed. With a session, `session_timeout` applies.
    pub request_timeout: Duration,
    /// RTP packet size limit (header included).
    pub mtu: usize,
    /// Optional credentials.
    pub auth: Option<Credentials>,
    /// Shared-memory directory override.
    pub shm_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8554)),
            profiles: default_profiles(),
            encoder: EncoderKind::Auto,
            grace: Duration::from_secs(10),
            max_clients: 32,
            session_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            mtu: 1400,
            auth: None,
            shm_dir: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_argument_file_or_environment() {
        let dir = std::env::temp_dir().join(format!("fb-rtsp-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("auth");
        std::fs::write(&f, "# viewer account\n\nviewer:pa ss:word\r\n").unwrap();
        let arg: Credentials = "a:b".parse().unwrap();
        let env = Some("e:f".to_string());
        let (c, src) = load_credentials(Some(arg.clone()), Some(&f), env.clone())
            .unwrap()
            .unwrap();
        assert_eq!((c, src), (arg, CredentialSource::Argument));
        let (c, src) = load_credentials(None, Some(&f), env.clone())
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("viewer", "pa ss:word")
        );
        assert_eq!(src, CredentialSource::File);
        let (c, src) = load_credentials(None, None, env).unwrap().unwrap();
        assert_eq!((c.user.as_str(), src), ("e", CredentialSource::Environment));
        assert!(load_credentials(None, None, None).unwrap().is_none());
        assert!(load_credentials(None, None, Some(String::new()))
            .unwrap()
            .is_none());
        std::fs::write(&f, "# nothing\n").unwrap();
        assert!(matches!(
            load_credentials(None, Some(&f), None),
            Err(CredentialError::Syntax { .. })
        ));
        std::fs::write(&f, "no-colon\n").unwrap();
        let e = load_credentials(None, Some(&f), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("user:password"), "{e}");
        assert!(matches!(
            load_credentials(None, Some(&dir.join("missing")), None),
            Err(CredentialError::Read { .. })
        ));
        assert!(load_credentials(None, None, Some(":x".into())).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn profiles_parse() {
        let p: Profile = "high=1920x1080@30,bitrate=4M,gop=60".parse().unwrap();
        assert_eq!(p.size, Some((1920, 1080)));
        assert_eq!((p.fps, p.bitrate, p.gop), (Some(30), 4_000_000, Some(60)));
        let n: Profile = "native".parse().unwrap();
        assert_eq!((n.name.as_str(), n.size, n.fps), ("native", None, None));
        let n: Profile = "slow=native@5,bitrate=500k".parse().unwrap();
        assert_eq!((n.size, n.fps, n.bitrate), (None, Some(5), 500_000));
        for bad in [
            "",
            "x=1x",
            "x=10x10",
            "x=640x480@0",
            "a b",
            "x=640x480,foo=1",
        ] {
            assert!(bad.parse::<Profile>().is_err(), "{bad}");
        }
    }
}
