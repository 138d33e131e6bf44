//! The checked value types of `framebus.toml`: each parses (and checks)
//! itself while the file is read, so a bad value is reported at its own
//! line and column.

use std::fmt;
use std::time::Duration;

use framebus::{Fps, PixelFormat};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::cli::{self, SourceKind};

/// Deserialize a string through `parse`, reporting its message at the
/// value's position.
fn from_str_with<'de, D, T>(
    d: D,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let s = String::deserialize(d)?;
    parse(&s).map_err(de::Error::custom)
}

/// A frame source (`testsrc`, `v4l2:…`, `ffmpeg:…`).
#[derive(Clone, Debug)]
pub struct Source(pub String);

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Source, D::Error> {
        from_str_with(d, |s| {
            match SourceKind::parse(s) {
            Some(_) => Ok(Source(s.to_string())),
            None => Err(format!(
                "unknown source {s:?} (expected testsrc, v4l2:/dev/videoN, v4l2:auto or ffmpeg:<url-or-file>)"
            )),
        }
        })
    }
}

/// `"WxH"`, both non-zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u32, pub u32);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        from_str_with(d, |s| cli::parse_size(s).map(|(w, h)| Size(w, h)))
    }
}

/// `"WxH"` for an output profile: even, 16..=8192.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvenSize(pub u32, pub u32);

impl<'de> Deserialize<'de> for EvenSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EvenSize, D::Error> {
        from_str_with(d, |s| {
            let (w, h) = cli::parse_size(s)?;
            if !(16..=8192).contains(&w) || !(16..=8192).contains(&h) || (w | h) & 1 != 0 {
                return Err(format!(
                    "profile size {s:?}: width and height must be even and in 16..=8192"
                ));
            }
            Ok(EvenSize(w, h))
        })
    }
}

/// A raw bus pixel format.
#[derive(Clone, Copy, Debug)]
pub struct Format(pub PixelFormat);

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
        from_str_with(d, |s| cli::parse_format(s).map(Format))
    }
}

/// A profile name: letters, digits, `-`, `_`.
#[derive(Clone, Debug)]
pub struct ProfileName(pub String);

impl<'de> Deserialize<'de> for ProfileName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ProfileName, D::Error> {
        from_str_with(d, |s| {
            let ok = !s.is_empty()
                && s != "snapshot"
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if ok {
                Ok(ProfileName(s.to_string()))
            } else {
                Err(format!(
                    "profile name {s:?}: letters, digits, '-' or '_' only (and not \"snapshot\")"
                ))
            }
        })
    }
}

/// A positive integer (frames per second, frames between key frames).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Positive(pub u32);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Positive, D::Error> {
        let v = i64::deserialize(d)?;
        match u32::try_from(v) {
            Ok(v) if v > 0 => Ok(Positive(v)),
            _ => Err(de::Error::custom(format!("{v} is not a positive integer"))),
        }
    }
}

/// One of `names`, or an error listing them.
fn one_of(what: &str, s: &str, names: &[&str]) -> Result<String, String> {
    if names.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "unknown {what} {s:?} (expected {})",
            names.join(", ")
        ))
    }
}

/// An H.264 profile: `baseline`, `main`, `high`
/// (`framebus::contract::encoder::H264_PROFILES`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct H264Profile(pub String);

impl<'de> Deserialize<'de> for H264Profile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<H264Profile, D::Error> {
        from_str_with(d, |s| {
            one_of(
                "H.264 profile",
                s,
                &framebus::contract::encoder::H264_PROFILES,
            )
            .map(H264Profile)
        })
    }
}

/// A `framebus-encoder --encoder` value
/// (`framebus::contract::encoder::ENCODERS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderName(pub String);

impl<'de> Deserialize<'de> for EncoderName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EncoderName, D::Error> {
        from_str_with(d, |s| {
            one_of("encoder", s, &framebus::contract::encoder::ENCODERS).map(EncoderName)
        })
    }
}

/// JPEG quality 1..=100.
#[derive(Clone, Copy, Debug)]
pub struct Quality(pub u8);

impl<'de> Deserialize<'de> for Quality {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Quality, D::Error> {
        let q = i64::deserialize(d)?;
        match u8::try_from(q) {
            Ok(q) if (1..=100).contains(&q) => Ok(Quality(q)),
            _ => Err(de::Error::custom(format!("quality {q} is not in 1..=100"))),
        }
    }
}

/// `user:password`.
#[derive(Clone)]
pub struct Credentials(pub String);

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(..)")
    }
}

impl<'de> Deserialize<'de> for Credentials {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Credentials, D::Error> {
        from_str_with(d, |s| match s.split_once(':') {
            Some((u, _)) if !u.is_empty() => Ok(Credentials(s.to_string())),
            _ => Err("auth must be \"user:password\"".to_string()),
        })
    }
}

/// A bit rate in bits per second, from `"4M"`, `"800k"` or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bitrate(pub u64);

impl<'de> Deserialize<'de> for Bitrate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bitrate, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bitrate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bit rate like \"4M\", \"800k\" or 4000000")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bitrate, E> {
                u64::try_from(v)
                    .ok()
                    .filter(|&b| b > 0)
                    .map(Bitrate)
                    .ok_or_else(|| E::custom(format!("bit rate {v} must be positive")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Bitrate, E> {
                let (num, mult) = match s.as_bytes().last() {
                    Some(b'k' | b'K') => (&s[..s.len() - 1], 1_000),
                    Some(b'm' | b'M') => (&s[..s.len() - 1], 1_000_000),
                    _ => (s, 1),
                };
                num.parse::<u64>()
                    .ok()
                    .map(|n| n * mult)
                    .filter(|&b| b > 0)
                    .map(Bitrate)
                    .ok_or_else(|| E::custom(format!("bad bit rate {s:?} (e.g. \"4M\", \"800k\")")))
            }
        }
        d.deserialize_any(V)
    }
}

impl Bitrate {
    /// As the encoder's profile syntax (and the config) writes it.
    pub fn arg(self) -> String {
        if self.0.is_multiple_of(1_000_000) {
            format!("{}M", self.0 / 1_000_000)
        } else if self.0.is_multiple_of(1_000) {
            format!("{}k", self.0 / 1_000)
        } else {
            self.0.to_string()
        }
    }
}

/// A frame rate: `60` or `"30000/1001"`.
#[derive(Clone, Copy, Debug)]
pub struct FpsCfg(pub Fps);

impl<'de> Deserialize<'de> for FpsCfg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FpsCfg, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FpsCfg;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a frame rate like 30 or \"30000/1001\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FpsCfg, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<FpsCfg, E> {
                cli::parse_fps(s).map(FpsCfg).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A positive number of seconds (integer or float).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Secs(pub Duration);

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secs, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secs, E> {
                if v.is_finite() && (0.0..1e6).contains(&v) {
                    Ok(Secs(Duration::from_secs_f64(v)))
                } else {
                    Err(E::custom(format!(
                        "{v} is not a number of seconds in 0..1000000"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A positive duration: a number of seconds (`30`, `1.5`) or a string
/// with a unit, `"500ms"`, `"30s"`, `"2m"`, `"1h"`, `"7d"` (the syntax of
/// `framebus-recorder`'s duration flags). Unlike [`Secs`] it may be long
/// (a retention age of weeks) and is never zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DurationCfg(pub Duration);

impl DurationCfg {
    /// As a command-line value: seconds with the `s` unit (`30s`,
    /// `0.5s`), which `framebus-recorder` reads back exactly.
    pub fn arg(self) -> String {
        format!("{}s", self.0.as_secs_f64())
    }
}

/// `secs` as a positive duration, or why not.
fn positive_duration(secs: f64, shown: &str) -> Result<DurationCfg, String> {
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(DurationCfg(d)),
        _ => Err(format!("duration {shown} must be positive")),
    }
}

impl<'de> Deserialize<'de> for DurationCfg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DurationCfg, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationCfg;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 30, \"30s\", \"500ms\", \"2m\", \"1h\" or \"7d\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationCfg, E> {
                positive_duration(v as f64, &v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationCfg, E> {
                positive_duration(v, &v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<DurationCfg, E> {
                let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
                    Some(i) => s.split_at(i),
                    None => (s, "s"),
                };
                let scale = match unit {
                    "ms" => 1e-3,
                    "s" => 1.0,
                    "m" => 60.0,
                    "h" => 3600.0,
                    "d" => 86400.0,
                    _ => f64::NAN,
                };
                match num.parse::<f64>() {
                    Ok(n) if scale.is_finite() => {
                        positive_duration(n * scale, &format!("{s:?}")).map_err(E::custom)
                    }
                    _ => Err(E::custom(format!(
                        "bad duration {s:?} (e.g. 30, \"30s\", \"500ms\", \"2m\", \"1h\", \"7d\")"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A positive number of bytes: an integer or a string with a binary
/// unit, `"64k"` (KiB), `"500M"` (MiB), `"10G"` (GiB), `"1T"` (TiB);
/// decimals are allowed with a unit (`"1.5G"`). Passed on as bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like \"10G\", \"500M\", \"64k\" or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .ok()
                    .filter(|&b| b > 0)
                    .map(ByteSize)
                    .ok_or_else(|| E::custom(format!("size {v} must be positive")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                let bad = || {
                    E::custom(format!(
                        "bad size {s:?} (e.g. \"10G\", \"500M\", \"64k\" or bytes)"
                    ))
                };
                let shift = match s.as_bytes().last() {
                    Some(b'k' | b'K') => 10,
                    Some(b'm' | b'M') => 20,
                    Some(b'g' | b'G') => 30,
                    Some(b't' | b'T') => 40,
                    _ => {
                        return s
                            .parse::<u64>()
                            .ok()
                            .filter(|&b| b > 0)
                            .map(ByteSize)
                            .ok_or_else(bad)
                    }
                };
                let num = &s[..s.len() - 1];
                if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                    return Err(bad());
                }
                let bytes = num.parse::<f64>().map_err(|_| bad())? * (1u64 << shift) as f64;
                // `as` saturates; anything near u64::MAX is no real limit.
                Some(bytes.round())
                    .filter(|&b| b >= 1.0 && b < u64::MAX as f64)
                    .map(|b| ByteSize(b as u64))
                    .ok_or_else(bad)
            }
        }
        d.deserialize_any(V)
    }
}
