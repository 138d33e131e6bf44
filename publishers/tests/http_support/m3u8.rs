//! A small reader of the playlists the HLS tests get back: just what the
//! tests check (tags and attributes as text), written independently of
//! the server's writer.

#![allow(dead_code)]

use std::collections::HashMap;

/// One `EXT-X-PART`.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
}

/// One segment (complete: `uri` set) with the tags before it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Segment {
    pub msn: u64,
    pub uri: Option<String>,
    pub duration: f64,
    pub pdt: Option<String>,
    pub parts: Vec<Part>,
    pub map: Option<String>,
    pub discontinuity: bool,
}

/// A media playlist.
#[derive(Clone, Debug, Default)]
pub struct Media {
    pub version: Option<u32>,
    pub target_duration: u32,
    pub part_target: Option<f64>,
    pub server_control: HashMap<String, String>,
    pub media_sequence: u64,
    /// Complete segments, then the open one (no `uri`) if it has parts.
    pub segments: Vec<Segment>,
    pub preload_hint: Option<String>,
}

impl Media {
    /// The complete segments.
    pub fn complete(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(|s| s.uri.is_some())
    }

    /// `(msn, index)` of the last part listed.
    pub fn last_part(&self) -> Option<(u64, usize)> {
        self.segments
            .iter()
            .rev()
            .find(|s| !s.parts.is_empty())
            .map(|s| (s.msn, s.parts.len() - 1))
    }

    /// Every listed part.
    pub fn parts(&self) -> impl Iterator<Item = &Part> {
        self.segments.iter().flat_map(|s| s.parts.iter())
    }

    /// The init segment of the first segment.
    pub fn map(&self) -> Option<&str> {
        self.segments.iter().find_map(|s| s.map.as_deref())
    }
}

/// Attribute list `A=B,C="D,E"` as a map (quotes removed).
pub fn attributes(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        let (val, next) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q[end..].trim_start_matches('"'))
        } else {
            let end = v.find(',').unwrap_or(v.len());
            (&v[..end], &v[end..])
        };
        out.insert(k.trim().to_string(), val.to_string());
        rest = next.trim_start_matches(',');
    }
    out
}

/// Parses a media playlist; panics on text that is not one.
pub fn media(text: &str) -> Media {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("#EXTM3U"), "not a playlist:\n{text}");
    let mut m = Media::default();
    let mut cur = Segment::default();
    let mut first = true;
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            m.target_duration = v.parse().expect("TARGETDURATION");
        } else if let Some(v) = line.strip_prefix("#EXT-X-VERSION:") {
            m.version = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
            m.part_target = attributes(v)
                .get("PART-TARGET")
                .and_then(|p| p.parse().ok());
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            m.server_control = attributes(v);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            m.media_sequence = v.parse().expect("MEDIA-SEQUENCE");
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
            cur.map = attributes(v).get("URI").cloned();
        } else if line == "#EXT-X-DISCONTINUITY" {
            cur.discontinuity = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            cur.pdt = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            let a = attributes(v);
            cur.parts.push(Part {
                uri: a["URI"].clone(),
                duration: a["DURATION"].parse().expect("part DURATION"),
                independent: a.get("INDEPENDENT").is_some_and(|v| v == "YES"),
            });
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            cur.duration = v.trim_end_matches(',').parse().expect("EXTINF");
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            m.preload_hint = attributes(v).get("URI").cloned();
        } else if !line.starts_with('#') && !line.is_empty() {
            if first {
                cur.msn = m.media_sequence;
                first = false;
            }
            cur.uri = Some(line.to_string());
            let msn = cur.msn;
            m.segments.push(std::mem::take(&mut cur));
            cur.msn = msn + 1;
        }
    }
    if first {
        cur.msn = m.media_sequence;
    }
    if !cur.parts.is_empty() {
        m.segments.push(cur);
    }
    m
}

/// One `EXT-X-STREAM-INF` variant.
#[derive(Clone, Debug)]
pub struct Variant {
    pub attrs: HashMap<String, String>,
    pub uri: String,
}

/// Parses a multivariant playlist.
pub fn multivariant(text: &str) -> Vec<Variant> {
    let mut out = Vec::new();
    let mut attrs = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            attrs = Some(attributes(v));
        } else if !line.starts_with('#') && !line.is_empty() {
            if let Some(a) = attrs.take() {
                out.push(Variant {
                    attrs: a,
                    uri: line.to_string(),
                });
            }
        }
    }
    out
}
