//! Encoder profiles: size, rate, bit rate, GOP, and the `--profile` syntax
//! `NAME=WxH|native[@FPS][,bitrate=4M][,gop=N]`.

use std::str::FromStr;

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

#[cfg(test)]
mod tests {
    use super::*;

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
