//! The playlist writer: multivariant and media playlists as RFC 8216bis
//! (HLS 2nd edition, with its Low-Latency extensions) spells them.
//!
//! No crate models LL-HLS (`EXT-X-PART`, `EXT-X-PRELOAD-HINT`,
//! `EXT-X-SERVER-CONTROL`), so the text is written here from a plain model
//! ([`MediaPlaylist`], [`Variant`]); the muxer fills the model, and the
//! unit tests check the output against the specification's own examples.
//!
//! Numbers: durations are seconds written with at most five decimals and
//! no trailing zeros beyond the first (`2.0`, `0.33334`), as in the
//! specification's examples; `EXT-X-PROGRAM-DATE-TIME` is RFC 3339 UTC
//! with milliseconds.

use std::fmt::Write as _;

/// One partial segment (an `EXT-X-PART` line).
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    /// Its URI, relative to the playlist.
    pub uri: String,
    /// Seconds.
    pub duration: f64,
    /// It starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
}

/// One media segment: complete (an `EXTINF` and its URI) or the open one
/// at the live edge (its parts only).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Segment {
    /// Its URI, relative to the playlist (unused for the open segment).
    pub uri: String,
    /// Seconds (the sum of its parts).
    pub duration: f64,
    /// Wall-clock time of its first frame, ms since the Unix epoch.
    pub program_date_time_ms: Option<i64>,
    /// Its parts, listed when the segment is near the live edge.
    pub parts: Vec<Part>,
    /// It follows a discontinuity (a new encoder, a time jump).
    pub discontinuity: bool,
    /// The init segment's URI, written as `EXT-X-MAP` before this segment
    /// (on the first segment and whenever it changes).
    pub map_uri: Option<String>,
}

/// A media playlist of a live stream with Low-Latency HLS.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct MediaPlaylist {
    /// `EXT-X-TARGETDURATION`, whole seconds (each segment's duration
    /// rounded to the nearest second is at most this).
    pub target_duration: u32,
    /// `EXT-X-PART-INF:PART-TARGET`, seconds (0: no parts).
    pub part_target: f64,
    /// `PART-HOLD-BACK` of `EXT-X-SERVER-CONTROL`, seconds.
    pub part_hold_back: f64,
    /// `CAN-BLOCK-RELOAD=YES`.
    pub can_block_reload: bool,
    /// `EXT-X-MEDIA-SEQUENCE`: the first listed segment's number.
    pub media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities before the first
    /// listed segment.
    pub discontinuity_sequence: u64,
    /// Complete segments, oldest first.
    pub segments: Vec<Segment>,
    /// The segment being written, if it has a part yet.
    pub open: Option<Segment>,
    /// `EXT-X-PRELOAD-HINT:TYPE=PART`: the next part's URI.
    pub preload_hint: Option<String>,
    /// Parts are listed for segments that end within this many seconds of
    /// the live edge (the specification: at least three target durations).
    pub parts_window: f64,
}

/// Seconds with at most five decimals, at least one (`2.0`, `0.33334`).
pub fn seconds(s: f64) -> String {
    let mut out = format!("{:.5}", s.max(0.0));
    while out.ends_with('0') && !out.ends_with(".0") {
        out.pop();
    }
    out
}

/// RFC 3339 UTC with milliseconds, as `EXT-X-PROGRAM-DATE-TIME` wants.
pub fn date_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, s) = (t.hour(), t.minute(), t.second());
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        t.millisecond()
    )
}

impl MediaPlaylist {
    /// The playlist text.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(256 + 160 * self.segments.len());
        o.push_str("#EXTM3U\n");
        let _ = writeln!(o, "#EXT-X-TARGETDURATION:{}", self.target_duration);
        o.push_str("#EXT-X-VERSION:6\n");
        if self.can_block_reload || self.part_target > 0.0 {
            o.push_str("#EXT-X-SERVER-CONTROL:");
            let mut attrs = Vec::new();
            if self.can_block_reload {
                attrs.push("CAN-BLOCK-RELOAD=YES".to_string());
            }
            if self.part_target > 0.0 {
                attrs.push(format!("PART-HOLD-BACK={}", seconds(self.part_hold_back)));
            }
            let _ = writeln!(o, "{}", attrs.join(","));
        }
        if self.part_target > 0.0 {
            let _ = writeln!(
                o,
                "#EXT-X-PART-INF:PART-TARGET={}",
                seconds(self.part_target)
            );
        }
        let _ = writeln!(o, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                o,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        // Parts are listed for segments ending within `parts_window` of the
        // live edge.
        let total: f64 = self.segments.iter().map(|s| s.duration).sum::<f64>()
            + self.open.as_ref().map_or(0.0, |s| s.duration);
        let mut end = 0.0;
        for seg in &self.segments {
            end += seg.duration;
            let with_parts = self.part_target > 0.0 && total - end < self.parts_window;
            segment_head(&mut o, seg);
            if with_parts {
                parts(&mut o, &seg.parts);
            }
            let _ = writeln!(o, "#EXTINF:{},\n{}", seconds(seg.duration), seg.uri);
        }
        if let Some(seg) = &self.open {
            segment_head(&mut o, seg);
            parts(&mut o, &seg.parts);
        }
        if let Some(hint) = &self.preload_hint {
            let _ = writeln!(o, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint}\"");
        }
        o
    }
}

fn segment_head(o: &mut String, seg: &Segment) {
    if seg.discontinuity {
        o.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if let Some(map) = &seg.map_uri {
        let _ = writeln!(o, "#EXT-X-MAP:URI=\"{map}\"");
    }
    if let Some(ms) = seg.program_date_time_ms {
        let _ = writeln!(o, "#EXT-X-PROGRAM-DATE-TIME:{}", date_time(ms));
    }
}

fn parts(o: &mut String, parts: &[Part]) {
    for p in parts {
        let _ = write!(
            o,
            "#EXT-X-PART:DURATION={},URI=\"{}\"",
            seconds(p.duration),
            p.uri
        );
        if p.independent {
            o.push_str(",INDEPENDENT=YES");
        }
        o.push('\n');
    }
}

/// One variant of a multivariant playlist (`EXT-X-STREAM-INF`).
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// The media playlist's URI, relative to the multivariant playlist.
    pub uri: String,
    /// Peak bit rate, bit/s.
    pub bandwidth: u64,
    /// Average bit rate, bit/s, when known.
    pub average_bandwidth: Option<u64>,
    /// RFC 6381 codecs (`avc1.64001f`), when known.
    pub codecs: Option<String>,
    /// Width and height.
    pub resolution: Option<(u32, u32)>,
    /// Frames per second.
    pub frame_rate: Option<f64>,
}

/// A multivariant playlist over `variants` (highest first is the
/// convention; players choose by `BANDWIDTH`).
pub fn multivariant(variants: &[Variant]) -> String {
    let mut o = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        let _ = write!(o, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth);
        if let Some(a) = v.average_bandwidth {
            let _ = write!(o, ",AVERAGE-BANDWIDTH={a}");
        }
        if let Some(c) = &v.codecs {
            let _ = write!(o, ",CODECS=\"{c}\"");
        }
        if let Some((w, h)) = v.resolution {
            let _ = write!(o, ",RESOLUTION={w}x{h}");
        }
        if let Some(f) = v.frame_rate {
            let _ = write!(o, ",FRAME-RATE={f:.3}");
        }
        let _ = writeln!(o, "\n{}", v.uri);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(uri: &str, independent: bool) -> Part {
        Part {
            uri: uri.into(),
            duration: 0.33334,
            independent,
        }
    }

    /// RFC 8216bis appendix "Low-Latency Media Playlist" (its rendition
    /// reports and delta-update attribute aside, which we do not write):
    /// the answer to `_HLS_msn=273&_HLS_part=2`.
    #[test]
    fn writes_the_specifications_low_latency_example() {
        let ms = |iso_secs: i64| 1_550_110_416_106 + iso_secs * 1000; // 2019-02-14T02:13:36.106Z
        let mut segments: Vec<Segment> = (266..=271)
            .map(|n| Segment {
                uri: format!("fileSequence{n}.mp4"),
                duration: 4.00008,
                ..Segment::default()
            })
            .collect();
        segments[0].program_date_time_ms = Some(ms(0));
        segments[0].map_uri = Some("init.mp4".into());
        segments.push(Segment {
            uri: "fileSequence272.mp4".into(),
            duration: 4.00008,
            program_date_time_ms: Some(ms(24)),
            parts: "abcdefghijkl"
                .chars()
                .map(|c| part(&format!("filePart272.{c}.mp4"), c == 'a'))
                .collect(),
            ..Segment::default()
        });
        let open = Segment {
            parts: ["a", "b", "c"]
                .iter()
                .map(|c| part(&format!("filePart273.{c}.mp4"), *c == "a"))
                .collect(),
            duration: 3.0 * 0.33334,
            ..Segment::default()
        };
        let p = MediaPlaylist {
            target_duration: 4,
            part_target: 0.33334,
            part_hold_back: 1.0,
            can_block_reload: true,
            media_sequence: 266,
            discontinuity_sequence: 0,
            segments,
            open: Some(open),
            preload_hint: Some("filePart273.d.mp4".into()),
            parts_window: 0.0,
        };
        let want = "#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-VERSION:6
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0
#EXT-X-PART-INF:PART-TARGET=0.33334
#EXT-X-MEDIA-SEQUENCE:266
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2019-02-14T02:13:36.106Z
#EXTINF:4.00008,
fileSequence266.mp4
#EXTINF:4.00008,
fileSequence267.mp4
#EXTINF:4.00008,
fileSequence268.mp4
#EXTINF:4.00008,
fileSequence269.mp4
#EXTINF:4.00008,
fileSequence270.mp4
#EXTINF:4.00008,
fileSequence271.mp4
#EXT-X-PROGRAM-DATE-TIME:2019-02-14T02:14:00.106Z
#EXT-X-PART:DURATION=0.33334,URI=\"filePart272.a.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33334,URI=\"filePart272.b.mp4\"
#EXT-X-PART:DURATION=0.33334,URI=\"filePart272.c.mp4\"
#EXT-X-PART:DURATION=0.33334,URI=\"filePart272.d.mp4\"
#EXT-X-PART:DURATION=0.33334,URI=\"filePart272.e.mp4\"
#EXT-X-PART:DURATION=0.33334,URI=\"filePart272.f.mp4\"
#EXT-X-PART:DURATION=0.33334,URI=\"filePart272.g.mp4\"
#EXT-X-PART:DURATION=0.33334,URI=\"filePart272.h.mp4\"
#EXT-X-PART:DURATION=0.33334,URI=\"filePart272.i.mp4\"
#EXT-X-PART:DURATION=0.33334,URI=\"filePart272.j.mp4\"
#EXT-X-PART:DURATION=0.33334,URI=\"filePart272.k.mp4\"
#EXT-X-PART:DURATION=0.33334,URI=\"filePart272.l.mp4\"
#EXTINF:4.00008,
fileSequence272.mp4
#EXT-X-PART:DURATION=0.33334,URI=\"filePart273.a.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33334,URI=\"filePart273.b.mp4\"
#EXT-X-PART:DURATION=0.33334,URI=\"filePart273.c.mp4\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"filePart273.d.mp4\"
";
        // The example lists the parts of its last complete segment only: a
        // window that covers 272 (ending 1 s before the edge) and not 271
        // (5 s) gives the same text; 271's parts must not be written.
        let mut p = p;
        p.parts_window = 2.0;
        p.segments[5].parts = vec![part("never-listed.mp4", true)];
        assert_eq!(p.render(), want);
    }

    #[test]
    fn marks_discontinuities_and_map_changes() {
        let p = MediaPlaylist {
            target_duration: 2,
            media_sequence: 10,
            discontinuity_sequence: 3,
            segments: vec![
                Segment {
                    uri: "s10.m4s".into(),
                    duration: 2.0,
                    map_uri: Some("init0.mp4".into()),
                    ..Segment::default()
                },
                Segment {
                    uri: "s11.m4s".into(),
                    duration: 1.5,
                    discontinuity: true,
                    map_uri: Some("init1.mp4".into()),
                    program_date_time_ms: Some(0),
                    ..Segment::default()
                },
            ],
            ..MediaPlaylist::default()
        };
        assert_eq!(
            p.render(),
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-VERSION:6\n\
             #EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-DISCONTINUITY-SEQUENCE:3\n\
             #EXT-X-MAP:URI=\"init0.mp4\"\n#EXTINF:2.0,\ns10.m4s\n\
             #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init1.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:00.000Z\n#EXTINF:1.5,\ns11.m4s\n"
        );
    }

    /// RFC 8216bis section 9.4 ("Multivariant Playlist"), with the
    /// attributes we add.
    #[test]
    fn writes_a_multivariant_playlist() {
        let v = |uri: &str, bw: u64| Variant {
            uri: uri.into(),
            bandwidth: bw,
            average_bandwidth: Some(bw * 4 / 5),
            codecs: None,
            resolution: None,
            frame_rate: None,
        };
        assert_eq!(
            multivariant(&[
                v("http://example.com/low.m3u8", 1_280_000),
                v("http://example.com/mid.m3u8", 2_560_000),
            ]),
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1280000,AVERAGE-BANDWIDTH=1024000\n\
             http://example.com/low.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2560000,AVERAGE-BANDWIDTH=2048000\n\
             http://example.com/mid.m3u8\n"
        );
        let full = Variant {
            uri: "high/index.m3u8".into(),
            bandwidth: 4_800_000,
            average_bandwidth: None,
            codecs: Some("avc1.64001f".into()),
            resolution: Some((1920, 1080)),
            frame_rate: Some(30.0),
        };
        assert!(multivariant(&[full]).contains(
            "BANDWIDTH=4800000,CODECS=\"avc1.64001f\",RESOLUTION=1920x1080,FRAME-RATE=30.000\n"
        ));
    }

    #[test]
    fn formats_numbers_as_the_examples_do() {
        assert_eq!(seconds(2.0), "2.0");
        assert_eq!(seconds(0.2), "0.2");
        assert_eq!(seconds(0.333336), "0.33334");
        assert_eq!(seconds(4.00008), "4.00008");
        assert_eq!(date_time(1_550_110_416_106), "2019-02-14T02:13:36.106Z");
    }
}
