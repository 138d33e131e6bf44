//! Encoder profiles: size, rate, bit rate, GOP, H.264 profile, slice size,
//! and the `--profile` syntax
//! `NAME=WxH|native[@FPS][,bitrate=4M][,gop=N][,h264=baseline|main|high][,slice=BYTES]`.
//!
//! `h264` and `slice` are read by `framebus-encoder` only (`framebus-rtsp`'s
//! own encoder keeps x264's choice: constrained baseline, one slice).

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
    /// H.264 profile (`h264=`), default [`H264Profile::Main`].
    pub h264: H264Profile,
    /// Largest slice NAL unit in bytes (`slice=`), default
    /// [`DEFAULT_SLICE_BYTES`].
    pub slice_bytes: u32,
}

/// The H.264 profile an encoder is asked for (the SPS's `profile_idc`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum H264Profile {
    /// Constrained baseline (`profile_idc` 66, constraint_set1): CAVLC, no
    /// B-frames; every decoder, every WebRTC browser.
    Baseline,
    /// Main (77): CABAC, about a tenth fewer bits for the same picture;
    /// WebRTC (`4d…`), RTSP players, HLS and browsers' MSE all decode it.
    #[default]
    Main,
    /// High (100): CABAC and 8x8 transforms; not every WebRTC peer offers
    /// it.
    High,
}

impl H264Profile {
    /// The SPS `profile_idc`.
    pub fn idc(self) -> u8 {
        match self {
            H264Profile::Baseline => 66,
            H264Profile::Main => 77,
            H264Profile::High => 100,
        }
    }

    /// The name in the `--profile` syntax and in x264's `profile` option.
    pub fn name(self) -> &'static str {
        match self {
            H264Profile::Baseline => "baseline",
            H264Profile::Main => "main",
            H264Profile::High => "high",
        }
    }
}

/// Default bound of a slice NAL unit, bytes: a 1080p IDR becomes a few
/// slices, each a third of the 100,000-byte frame buffer of VLC's RTSP
/// client (live555) and a burst of ~23 RTP packets; P frames at profile
/// bit rates stay one slice. See docs/encoder.md.
pub const DEFAULT_SLICE_BYTES: u32 = 32_000;

/// A `--profile` value that does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad profile {spec:?}: {why} (expected NAME=WxH|native[@FPS][,bitrate=4M][,gop=N][,h264=baseline|main|high][,slice=BYTES])")]
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
            bitrate: framebus::contract::encoder::DEFAULT_BITRATE,
            gop: None,
            h264: H264Profile::default(),
            slice_bytes: DEFAULT_SLICE_BYTES,
        };
        for kv in parts {
            match kv.split_once('=') {
                Some(("bitrate", v)) => p.bitrate = parse_bitrate(v).ok_or(err("bad bitrate"))?,
                Some(("gop", v)) => {
                    p.gop = Some(v.parse().ok().filter(|&g| g > 0).ok_or(err("bad gop"))?)
                }
                Some(("h264", v)) => {
                    p.h264 = match v {
                        "baseline" => H264Profile::Baseline,
                        "main" => H264Profile::Main,
                        "high" => H264Profile::High,
                        _ => return Err(err("h264 must be baseline, main or high")),
                    }
                }
                Some(("slice", v)) => {
                    p.slice_bytes = parse_bitrate(v)
                        .and_then(|b| u32::try_from(b).ok())
                        .filter(|b| (500..=1_000_000).contains(b))
                        .ok_or(err("slice must be 500..1000000 bytes (k suffix: 1000)"))?
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
        assert_eq!(
            (n.h264, n.slice_bytes),
            (H264Profile::Main, DEFAULT_SLICE_BYTES)
        );
        let b: Profile = "b=640x360,h264=baseline,slice=16k".parse().unwrap();
        assert_eq!((b.h264, b.slice_bytes), (H264Profile::Baseline, 16_000));
        let h: Profile = "h=native,h264=high,slice=1200".parse().unwrap();
        assert_eq!((h.h264, h.slice_bytes), (H264Profile::High, 1200));
        for bad in [
            "",
            "x=1x",
            "x=10x10",
            "x=640x480@0",
            "a b",
            "x=640x480,foo=1",
            "x=640x480,h264=extended",
            "x=640x480,slice=10",
            "x=640x480,slice=2M",
        ] {
            assert!(bad.parse::<Profile>().is_err(), "{bad}");
        }
    }
}
