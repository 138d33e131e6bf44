//! CMAF / fragmented MP4 (ISO/IEC 14496-12, 14496-15, 23000-19) for one
//! H.264 video track and, optionally, one Opus audio track: the init
//! segment (`ftyp` + `moov`) and fragments (`moof` + `mdat`, one per HLS
//! segment or LL-HLS part, or one per recorder fragment). Every box is a
//! typed value of the `mp4-atom` crate written by its `Encode`; nothing
//! here lays out box bytes by hand (docs/decisions/0004).
//!
//! Init segment, for track 1:
//!
//! ```text
//! ftyp  major iso6, compatible iso6 cmfc mp41
//! moov  mvhd (next track 2)
//!       trak  tkhd (enabled, in movie, width x height)
//!             mdia  mdhd (timescale, "und") · hdlr vide
//!                   minf  vmhd · dinf/dref/url (self-contained)
//!                         stbl  stsd: avc1 (width x height) + avcC
//!                               stts, stsc, stsz, stco: empty
//!       mvex  trex (track 1, sample description 1, no defaults)
//! ```
//!
//! With an Opus track ([`init_segment_av`]) the `moov` also has, after
//! the video's:
//!
//! ```text
//!       trak  tkhd (track 2, enabled, in movie, volume 1.0)
//!             mdia  mdhd (48000, "und") · hdlr soun
//!                   minf  smhd · dinf/dref/url
//!                         stbl  stsd: Opus (channels, 16 bit, 48000) + dOps
//!       mvex  trex (track 1) · trex (track 2)
//! ```
//!
//! and `mvhd`'s next track is 3. Opus in ISOBMFF ("Encapsulation of Opus
//! in ISO Base Media File Format", §4.3) runs at 48 kHz whatever the input
//! rate; `dOps` is the `OpusHead` of RFC 7845 §5.1 re-laid (big-endian,
//! version 0) by [`AudioTrack::from_opus_head`]. A video-only init
//! segment is exactly the one below, unchanged.
//!
//! The `avcC` holds the SPS and PPS with 4-byte NAL lengths; for the
//! profiles whose SPS carries `chroma_format_idc` (High and up) it also
//! holds the chroma format and bit depths read from the SPS, as ISO/IEC
//! 14496-15 §5.3.3.1 requires. Parameter sets live only there (`avc1`,
//! not `avc3`), so a stream whose SPS or PPS changes needs a new init
//! segment.
//!
//! Fragment:
//!
//! ```text
//! moof  mfhd  sequence_number
//!       traf  tfhd  track 1, default-base-is-moof (no base data offset)
//!             tfdt  version 1, base_media_decode_time
//!             trun  data_offset, then per sample: duration, size, flags
//! mdat  per sample, per NAL unit: u32 big-endian length, NAL unit
//! ```
//!
//! With audio ([`fragment_av`]) a second `traf` follows the video's:
//! `tfhd` track 2 (default-base-is-moof), its own `tfdt` (48 kHz), a
//! `trun` with data offset and per sample duration and size (no flags:
//! every Opus packet is a sync sample, the `trex` default 0); the `mdat`
//! holds the video samples, then the Opus packets as they are. A fragment
//! with no audio sample has no second `traf`.
//!
//! `data_offset` counts from the first byte of the `moof` (default base
//! is moof) to the first sample: the `moof`'s size plus the 8-byte `mdat`
//! header. It is found by encoding the `moof` once, measuring it, and
//! encoding it again with the offset filled in (same fields, same size).
//! No composition offsets are written: the encoder makes no B-frames, so
//! composition time equals decode time.
//!
//! Samples arrive as the encoder wrote them (Annex B: start codes,
//! perhaps AUD, SPS, PPS, SEI). Start codes become 4-byte lengths; AUD
//! (type 9), SPS (7) and PPS (8) NAL units are dropped (the parameter
//! sets are in `avcC`, and AUDs have no place in MP4, ISO/IEC 14496-15
//! §5.3.2); SEI and slices are kept.
//!
//! Sample flags (ISO/IEC 14496-12 §8.8.3.1), a `u32` from the top bit
//! down: 4 reserved, `is_leading` (2), `sample_depends_on` (2),
//! `sample_is_depended_on` (2), `sample_has_redundancy` (2),
//! `sample_padding_value` (3), `sample_is_non_sync_sample` (1),
//! `sample_degradation_priority` (16). A key sample is
//! `depends_on = 2` (depends on no other) with the non-sync bit clear:
//! `0x0200_0000`; any other is `depends_on = 1` with the non-sync bit
//! set: `0x0101_0000`.
//!
//! Cost: [`fragment`] splits each sample once, encodes a `moof` of about
//! 90 + 12 × samples bytes twice, and copies the NAL units once into one
//! output `Vec` sized up front. The `mdat` is written with `mp4-atom`'s
//! `BufMut::encode_atom` around a plain copy rather than through
//! [`mp4_atom::Mdat`], whose encoder would want its own `Vec` of the
//! payload and writes it a byte at a time.

use mp4_atom::{
    Atom, Audio, Avc1, Avcc, AvccExt, BufMut, Codec, Dinf, Dops, Dref, Edts, Encode, FixedPoint,
    FourCC, Ftyp, Hdlr, Mdat, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mvex, Mvhd, Opus,
    OpusChannelMapping, Smhd, Stbl, Stco, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun,
    TrunEntry, TrunSamples, Url, Visual, Vmhd,
};

use crate::h264::{nal, nal_type, split_annex_b};

/// The video track's id.
const TRACK_ID: u32 = 1;

/// The audio track's id (after the video's).
pub const AUDIO_TRACK_ID: u32 = 2;

/// Ticks per second of an Opus track: 48 kHz, whatever the input rate
/// (Opus in ISOBMFF §4.3).
pub const OPUS_TIMESCALE: u32 = 48_000;

/// `sample_flags` of a sync sample: `sample_depends_on = 2`, sync.
const KEY_SAMPLE_FLAGS: u32 = 0x0200_0000;

/// `sample_flags` of any other sample: `sample_depends_on = 1`,
/// `sample_is_non_sync_sample = 1`.
const DELTA_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// Size of a box header without a 64-bit size (`mdat` here).
const BOX_HEADER: usize = 8;

/// What the init segment describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoTrack {
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// SPS NAL unit without start code (first byte is the NAL header 0x67-ish).
    pub sps: Vec<u8>,
    /// PPS NAL unit without start code.
    pub pps: Vec<u8>,
    /// Ticks per second of decode times and durations (we use 90_000).
    pub timescale: u32,
}

impl VideoTrack {
    /// SPS and PPS from an Annex B access unit (an IDR with in-band
    /// parameter sets); None if either is missing. The first of each is
    /// taken.
    pub fn from_access_unit(
        au: &[u8],
        width: u32,
        height: u32,
        timescale: u32,
    ) -> Option<VideoTrack> {
        let nals = split_annex_b(au);
        let find = |t| nals.iter().find(|n| nal_type(n) == t).map(|n| n.to_vec());
        Some(VideoTrack {
            width,
            height,
            sps: find(nal::SPS)?,
            pps: find(nal::PPS)?,
            timescale,
        })
    }

    /// RFC 6381 codec string, e.g. "avc1.4d401f": `profile_idc`, the
    /// constraint flags and `level_idc` (SPS bytes 1..4) in lower-case
    /// hex. Bytes an SPS shorter than 4 bytes lacks count as zero
    /// ([`init_segment`] refuses such an SPS).
    pub fn codec_string(&self) -> String {
        let b = |i: usize| self.sps.get(i).copied().unwrap_or(0);
        format!("avc1.{:02x}{:02x}{:02x}", b(1), b(2), b(3))
    }
}

/// One access unit to put in a fragment.
#[derive(Clone, Copy, Debug)]
pub struct Sample<'a> {
    /// Annex B bytes as the encoder wrote them (start codes, maybe AUD/SPS/PPS/SEI).
    pub data: &'a [u8],
    /// Duration in timescale ticks.
    pub duration: u32,
    /// A sync sample (IDR).
    pub key: bool,
}

/// An Opus audio track: what its `dOps` says (from the stream's
/// `OpusHead`). Its timescale is always [`OPUS_TIMESCALE`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioTrack {
    /// The `dOps` box of the `Opus` sample entry.
    pub dops: Dops,
}

impl AudioTrack {
    /// The track of an `OpusHead` (RFC 7845 §5.1: `"OpusHead"`, version,
    /// channel count, pre-skip u16 LE, input sample rate u32 LE, output
    /// gain i16 LE, mapping family, and for a family other than 0 the
    /// stream count, coupled count and one mapping byte per channel).
    /// None for anything else.
    pub fn from_opus_head(head: &[u8]) -> Option<AudioTrack> {
        let rest = head.strip_prefix(b"OpusHead")?;
        let [version, channels, p0, p1, r0, r1, r2, r3, g0, g1, family, table @ ..] = rest else {
            return None;
        };
        // Version 1 (0x01); the high nibble is the major version.
        if version >> 4 != 0 || *channels == 0 {
            return None;
        }
        let channel_mapping = match *family {
            0 if *channels <= 2 => None,
            0 => return None,
            family => {
                let [streams, coupled, map @ ..] = table else {
                    return None;
                };
                let map = map.get(..usize::from(*channels))?;
                Some(OpusChannelMapping {
                    family,
                    stream_count: *streams,
                    coupled_count: *coupled,
                    channel_mapping: map.to_vec(),
                })
            }
        };
        Some(AudioTrack {
            dops: Dops {
                output_channel_count: *channels,
                pre_skip: u16::from_le_bytes([*p0, *p1]),
                input_sample_rate: u32::from_le_bytes([*r0, *r1, *r2, *r3]),
                output_gain: i16::from_le_bytes([*g0, *g1]),
                channel_mapping,
            },
        })
    }

    /// Its channel count.
    pub fn channels(&self) -> u8 {
        self.dops.output_channel_count
    }

    /// RFC 6381 codec string of Opus in MP4: `"opus"`.
    pub fn codec_string(&self) -> &'static str {
        "opus"
    }
}

/// One Opus packet to put in a fragment.
#[derive(Clone, Copy, Debug)]
pub struct AudioSample<'a> {
    /// The packet as the encoder wrote it.
    pub data: &'a [u8],
    /// Duration in 48 kHz ticks.
    pub duration: u32,
}

/// The audio of one fragment: its packets and the decode time (48 kHz)
/// of the first.
#[derive(Clone, Copy, Debug)]
pub struct AudioRun<'a> {
    /// Decode time of the first packet, in 48 kHz ticks.
    pub base_decode_time: u64,
    /// The packets, in order, each starting where the previous ends.
    pub samples: &'a [AudioSample<'a>],
}

/// The audio track of a `moov` with its sample tables (the recorder's
/// progressive MP4) or empty ones (an init segment).
#[derive(Clone, Debug)]
pub(crate) struct AudioMovie<'a> {
    /// The track.
    pub track: &'a AudioTrack,
    /// Its media duration in 48 kHz ticks.
    pub duration: u64,
    /// Its sample tables (`stsd` is replaced by `Opus` + `dOps`).
    pub stbl: Stbl,
    /// An edit list (an empty edit before the first sample), or None.
    pub edts: Option<Edts>,
    /// The track's duration in the movie's timescale (edits included).
    pub movie_duration: u64,
}

/// How far an audio timeline that follows the packets' pts may stray
/// from the capture clock before a packet is placed by its capture time
/// again (48 kHz ticks: 40 ms).
pub const MAX_AUDIO_DRIFT: u64 = 48 * 40;

/// Where Opus packets go on the audio track's timeline (48 kHz) of a
/// file or stream whose video decode times are known: the placement the
/// recorder and the HLS muxer share.
///
/// Each fragment's video begins with a frame captured at `v0_mono`
/// (CLOCK_MONOTONIC ns) at decode time `v0_dt`. A packet's place *by the
/// capture clock* is `v0_dt + (its capture − v0_mono)`; its place *by its
/// pts* is the anchor's decode time plus its pts minus the anchor's pts.
/// The first packet (and the first after [`AudioTimeline::restart`]) is
/// placed by the capture clock and becomes the anchor; a packet captured
/// before the fragment's first frame has no place then (the picture
/// begins after it). Later packets follow their pts (counted in samples:
/// a lost packet leaves its gap), unless that strays more than
/// [`MAX_AUDIO_DRIFT`] from the capture clock (a sound card's crystal
/// against the system's, a restarted audio encoder, a hole in the video):
/// then the packet is placed by the capture clock and anchors anew, or is
/// dropped if that place lies before the end of the last packet (the
/// sound ran ahead). A packet captured before the fragment's first frame
/// but arriving after the previous fragment was written goes by its pts.
/// No packet is placed before the end of the previous one.
#[derive(Clone, Debug, Default)]
pub struct AudioTimeline {
    /// A placed packet's decode time and pts, both 48 kHz.
    anchor: Option<(u64, u64)>,
    /// Where the last placed packet ends (48 kHz).
    end: u64,
}

impl AudioTimeline {
    /// The next packet is placed by its capture time (after a hole in the
    /// video that the timeline closed up, or a discontinuity).
    pub fn restart(&mut self) {
        self.anchor = None;
    }

    /// The decode time (48 kHz) of a packet with pts `pts48` (48 kHz) and
    /// `duration` captured at `mono_ns`, in the fragment whose first frame
    /// was captured at `v0_mono` at decode time `v0_dt` (in `timescale`
    /// ticks); None: leave it out.
    pub fn place(
        &mut self,
        (v0_dt, timescale): (u64, u32),
        v0_mono: u64,
        pts48: u64,
        mono_ns: u64,
        duration: u32,
    ) -> Option<u64> {
        let rescale = |t: u64, from: u64, to: u64| {
            (u128::from(t) * u128::from(to) / u128::from(from.max(1))) as u64
        };
        let by_pts = self
            .anchor
            .and_then(|(dt, pts)| Some(dt + pts48.checked_sub(pts)?));
        let dt = match mono_ns.checked_sub(v0_mono) {
            // Late for its fragment: by its pts, if the timeline has begun.
            None => by_pts?,
            Some(ns) => {
                let opus = u64::from(OPUS_TIMESCALE);
                let by_clock =
                    rescale(v0_dt, u64::from(timescale), opus) + rescale(ns, 1_000_000_000, opus);
                match by_pts {
                    Some(dt) if dt.abs_diff(by_clock) <= MAX_AUDIO_DRIFT => dt,
                    _ if by_clock < self.end => return None,
                    _ => {
                        self.anchor = Some((by_clock, pts48));
                        by_clock
                    }
                }
            }
        };
        if dt < self.end {
            return None;
        }
        self.end = dt + u64::from(duration);
        Some(dt)
    }

    /// Takes from `pending` (in capture order) every packet captured
    /// before `end_mono` and [`place`](Self::place)s it in the fragment
    /// whose first frame was captured at `v0_mono` at decode time `v0`;
    /// the packets with a place, each with its decode time (48 kHz).
    /// `at` gives a packet's `(pts48, mono_ns, duration)`.
    pub fn take_before<P>(
        &mut self,
        pending: &mut std::collections::VecDeque<P>,
        v0: (u64, u32),
        v0_mono: u64,
        end_mono: u64,
        at: impl Fn(&P) -> (u64, u64, u32),
    ) -> Vec<(u64, P)> {
        let mut taken = Vec::new();
        while pending.front().is_some_and(|p| at(p).1 < end_mono) {
            let p = pending.pop_front().expect("checked above");
            let (pts48, mono_ns, duration) = at(&p);
            if let Some(dt) = self.place(v0, v0_mono, pts48, mono_ns, duration) {
                taken.push((dt, p));
            }
        }
        taken
    }
}

/// Why an init segment or a fragment could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    /// `mp4-atom` refused to encode a box.
    #[error("cannot encode the {what}: {source}")]
    Encode {
        /// The box (and segment) being encoded.
        what: &'static str,
        /// `mp4-atom`'s error.
        source: mp4_atom::Error,
    },
    /// A fragment needs at least one sample.
    #[error("fragment {sequence} has no samples")]
    EmptyFragment {
        /// The fragment's sequence number.
        sequence: u32,
    },
    /// A sample has no NAL unit left once AUD, SPS and PPS are dropped.
    #[error("fragment {sequence}, sample {index}: no SEI or slice NAL unit (only AUD/SPS/PPS or nothing)")]
    EmptySample {
        /// The fragment's sequence number.
        sequence: u32,
        /// The sample's index in the fragment.
        index: usize,
    },
    /// A sample or a whole fragment exceeds the 32-bit sizes of `trun`
    /// and `mdat`.
    #[error("fragment {sequence}: {what} is {size} bytes, more than a 32-bit MP4 size holds")]
    TooLarge {
        /// The fragment's sequence number.
        sequence: u32,
        /// `"sample N"` or `"the mdat"`.
        what: String,
        /// Its size in bytes.
        size: u64,
    },
    /// The picture size does not fit the 16-bit fields of `avc1`.
    #[error(
        "picture size {width}x{height} does not fit an avc1 sample entry (16-bit width and height)"
    )]
    PictureSize {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// An SPS or PPS that cannot go into `avcC`.
    #[error("{which} of {len} bytes: {reason}")]
    ParameterSet {
        /// `"SPS"` or `"PPS"`.
        which: &'static str,
        /// Its length in bytes.
        len: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// `ftyp` + `moov` for one video track (track id 1), with `mvex`/`trex`
/// so it is fragmented; `avc1` sample entry with `avcC` from the SPS/PPS;
/// brands `iso6` (major), `iso6`, `cmfc` (CMAF), `mp41`.
pub fn init_segment(track: &VideoTrack) -> Result<Vec<u8>, Fmp4Error> {
    init_segment_av(track, None)
}

/// [`init_segment`] with an Opus track as track 2 when `audio` is given
/// (see the module docs); without it, the same bytes as
/// [`init_segment`].
pub fn init_segment_av(
    track: &VideoTrack,
    audio: Option<&AudioTrack>,
) -> Result<Vec<u8>, Fmp4Error> {
    let ftyp = Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"cmfc".into(), b"mp41".into()],
    };
    // stts, stsc, stsz empty: the samples are in fragments.
    let empty = || Stbl {
        stco: Some(Stco::default()),
        ..Stbl::default()
    };
    let mut moov = movie_av(
        track,
        0,
        empty(),
        audio.map(|track| AudioMovie {
            track,
            duration: 0,
            stbl: empty(),
            edts: None,
            movie_duration: 0,
        }),
    )?;
    let trex = |track_id| Trex {
        track_id,
        default_sample_description_index: 1,
        ..Trex::default()
    };
    let mut trex_all = vec![trex(TRACK_ID)];
    if audio.is_some() {
        trex_all.push(trex(AUDIO_TRACK_ID));
    }
    moov.mvex = Some(Mvex {
        mehd: None,
        trex: trex_all,
    });

    let mut out = Vec::with_capacity(1024 + track.sps.len() + track.pps.len());
    ftyp.encode(&mut out).map_err(|source| Fmp4Error::Encode {
        what: "init segment's ftyp",
        source,
    })?;
    moov.encode(&mut out).map_err(|source| Fmp4Error::Encode {
        what: "init segment's moov",
        source,
    })?;
    Ok(out)
}

/// The `moov` of one video track (track id 1), without `mvex`: `mvhd`,
/// `trak` with `tkhd`, `mdia` (`mdhd`, `hdlr` vide, `minf` with `vmhd`,
/// a self-contained `dinf` and `stbl`). The movie and the media share the
/// track's timescale; `duration` (in its ticks) goes into `mvhd`, `tkhd`
/// and `mdhd`. `stbl` carries the sample tables; its `stsd` is replaced
/// by the track's `avc1` + `avcC`. Shared by [`init_segment`] (empty
/// tables, duration 0) and the recorder's progressive MP4
/// (`record::remux`).
///
/// With `audio`, an Opus track (track 2) follows the video's: `tkhd`
/// (volume 1.0), perhaps an edit list, `mdia` (`mdhd` 48 kHz, `hdlr`
/// soun, `minf` with `smhd`, `dinf`, `stbl` whose `stsd` becomes `Opus`
/// with `dOps`). The movie's duration is the longer track's.
pub(crate) fn movie_av(
    track: &VideoTrack,
    duration: u64,
    stbl: Stbl,
    audio: Option<AudioMovie<'_>>,
) -> Result<Moov, Fmp4Error> {
    let size_err = || Fmp4Error::PictureSize {
        width: track.width,
        height: track.height,
    };
    let width = u16::try_from(track.width).map_err(|_| size_err())?;
    let height = u16::try_from(track.height).map_err(|_| size_err())?;
    let mut avcc = Avcc::new(&track.sps, &track.pps).map_err(|_| Fmp4Error::ParameterSet {
        which: "SPS",
        len: track.sps.len(),
        reason: "shorter than the 4 bytes of NAL header, profile, constraints and level",
    })?;
    // avcC stores each length in 16 bits (and mp4-atom truncates silently).
    for (which, ps) in [("SPS", &track.sps), ("PPS", &track.pps)] {
        if ps.is_empty() || ps.len() > usize::from(u16::MAX) {
            return Err(Fmp4Error::ParameterSet {
                which,
                len: ps.len(),
                reason: "an avcC parameter set is 1 to 65535 bytes",
            });
        }
    }
    avcc.ext = avcc_ext(&track.sps)?;

    let avc1 = Avc1 {
        visual: Visual {
            data_reference_index: 1,
            width,
            height,
            ..Visual::default()
        },
        avcc,
        ..Avc1::default()
    };
    let movie_duration = audio
        .as_ref()
        .map_or(duration, |a| duration.max(a.movie_duration));
    let next_track_id = if audio.is_some() {
        AUDIO_TRACK_ID + 1
    } else {
        TRACK_ID + 1
    };
    let mut moov = Moov {
        mvhd: Mvhd {
            timescale: track.timescale,
            duration: movie_duration,
            // Mvhd::default() has rate 0 and volume 0; 1.0 is normal play.
            rate: 1u16.into(),
            volume: 1u8.into(),
            next_track_id,
            ..Mvhd::default()
        },
        trak: vec![Trak {
            tkhd: Tkhd {
                track_id: TRACK_ID,
                duration,
                enabled: true,
                in_movie: true,
                width: FixedPoint::new(width, 0),
                height: FixedPoint::new(height, 0),
                ..Tkhd::default()
            },
            mdia: Mdia {
                mdhd: Mdhd {
                    timescale: track.timescale,
                    duration,
                    language: "und".to_string(),
                    ..Mdhd::default()
                },
                hdlr: Hdlr {
                    handler: FourCC::new(b"vide"),
                    name: "VideoHandler".to_string(),
                },
                minf: Minf {
                    vmhd: Some(Vmhd::default()),
                    dinf: Dinf {
                        dref: Dref {
                            // An empty location: the media is in this file.
                            entries: vec![Url::default().into()],
                        },
                    },
                    stbl: Stbl {
                        stsd: Stsd {
                            codecs: vec![Codec::Avc1(avc1)],
                        },
                        ..stbl
                    },
                    ..Minf::default()
                },
            },
            ..Trak::default()
        }],
        ..Moov::default()
    };
    if let Some(a) = audio {
        moov.trak.push(audio_trak(a));
    }
    Ok(moov)
}

/// The Opus track's `trak` (see [`movie_av`]).
fn audio_trak(a: AudioMovie<'_>) -> Trak {
    let opus = Opus {
        audio: Audio {
            data_reference_index: 1,
            channel_count: u16::from(a.track.channels()),
            sample_size: 16,
            sample_rate: FixedPoint::new(OPUS_TIMESCALE as u16, 0),
        },
        dops: a.track.dops.clone(),
        btrt: None,
    };
    Trak {
        tkhd: Tkhd {
            track_id: AUDIO_TRACK_ID,
            duration: a.movie_duration,
            enabled: true,
            in_movie: true,
            volume: 1u8.into(),
            ..Tkhd::default()
        },
        edts: a.edts,
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: OPUS_TIMESCALE,
                duration: a.duration,
                language: "und".to_string(),
                ..Mdhd::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(b"soun"),
                name: "SoundHandler".to_string(),
            },
            minf: Minf {
                smhd: Some(Smhd::default()),
                dinf: Dinf {
                    dref: Dref {
                        entries: vec![Url::default().into()],
                    },
                },
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![Codec::Opus(opus)],
                    },
                    ..a.stbl
                },
                ..Minf::default()
            },
        },
        ..Trak::default()
    }
}

/// One fragment (a CMAF chunk / LL-HLS part): `moof` (`mfhd` with
/// `sequence`, `traf` with `tfhd` default-base-is-moof, `tfdt` version 1
/// with `base_decode_time`, `trun` with data offset and per-sample size,
/// duration and flags) followed by `mdat`. Start codes become 4-byte
/// lengths; AUD, SPS and PPS NAL units are dropped (see the module docs).
pub fn fragment(
    sequence: u32,
    base_decode_time: u64,
    samples: &[Sample<'_>],
) -> Result<Vec<u8>, Fmp4Error> {
    fragment_av(sequence, base_decode_time, samples, None)
}

/// [`fragment`] with the Opus packets of `audio` in a second `traf`
/// (track 2) and after the video in the `mdat` (see the module docs).
/// Without audio, or with no packet, the same bytes as [`fragment`].
pub fn fragment_av(
    sequence: u32,
    base_decode_time: u64,
    samples: &[Sample<'_>],
    audio: Option<AudioRun<'_>>,
) -> Result<Vec<u8>, Fmp4Error> {
    if samples.is_empty() {
        return Err(Fmp4Error::EmptyFragment { sequence });
    }
    let too_large = |what: String, size: usize| Fmp4Error::TooLarge {
        sequence,
        what,
        size: size as u64,
    };

    // The kept NAL units of all samples, in order; a sample's size is the
    // sum of its NAL units' lengths plus 4 bytes each.
    let mut nals: Vec<&[u8]> = Vec::with_capacity(samples.len() * 2);
    let mut entries = Vec::with_capacity(samples.len());
    let mut payload = 0usize;
    for (index, s) in samples.iter().enumerate() {
        let first = nals.len();
        nals.extend(
            split_annex_b(s.data)
                .into_iter()
                .filter(|n| !matches!(nal_type(n), nal::AUD | nal::SPS | nal::PPS)),
        );
        let size: usize = nals[first..].iter().map(|n| 4 + n.len()).sum();
        if size == 0 {
            return Err(Fmp4Error::EmptySample { sequence, index });
        }
        let size32 = u32::try_from(size).map_err(|_| too_large(format!("sample {index}"), size))?;
        payload += size;
        entries.push(TrunEntry {
            duration: Some(s.duration),
            size: Some(size32),
            flags: Some(if s.key {
                KEY_SAMPLE_FLAGS
            } else {
                DELTA_SAMPLE_FLAGS
            }),
            cts: None,
        });
    }
    let video_payload = payload;
    let audio = audio.filter(|a| !a.samples.is_empty());
    let mut audio_entries = Vec::new();
    for (index, s) in audio.iter().flat_map(|a| a.samples.iter()).enumerate() {
        let size32 = u32::try_from(s.data.len())
            .map_err(|_| too_large(format!("audio sample {index}"), s.data.len()))?;
        payload += s.data.len();
        audio_entries.push(TrunEntry {
            duration: Some(s.duration),
            size: Some(size32),
            flags: None,
            cts: None,
        });
    }
    if u32::try_from(BOX_HEADER + payload).is_err() {
        return Err(too_large("the mdat".to_string(), BOX_HEADER + payload));
    }

    let mut moof = Moof {
        mfhd: Mfhd {
            sequence_number: sequence,
        },
        traf: vec![Traf {
            tfhd: Tfhd {
                track_id: TRACK_ID,
                default_base_is_moof: true,
                ..Tfhd::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time: base_decode_time,
            }),
            trun: vec![Trun {
                // Placeholder of the same size; set below once the moof's
                // size is known.
                data_offset: Some(0),
                samples: TrunSamples::Explicit(entries),
            }],
            ..Traf::default()
        }],
    };
    if let Some(a) = &audio {
        moof.traf.push(Traf {
            tfhd: Tfhd {
                track_id: AUDIO_TRACK_ID,
                default_base_is_moof: true,
                ..Tfhd::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time: a.base_decode_time,
            }),
            trun: vec![Trun {
                data_offset: Some(0),
                samples: TrunSamples::Explicit(audio_entries),
            }],
            ..Traf::default()
        });
    }
    let encode_moof = |moof: &Moof, out: &mut Vec<u8>| {
        moof.encode(out).map_err(|source| Fmp4Error::Encode {
            what: "fragment's moof",
            source,
        })
    };

    let mut out = Vec::with_capacity(128 + 16 * samples.len() + BOX_HEADER + payload);
    encode_moof(&moof, &mut out)?;
    let moof_len = out.len();
    out.clear();
    // Small (about 90 + 12 per sample) and the mdat fits 32 bits, so this
    // cannot overflow an i32 in practice; refuse rather than wrap.
    let offset = i32::try_from(moof_len + BOX_HEADER)
        .map_err(|_| too_large("the moof".to_string(), moof_len))?;
    moof.traf[0].trun[0].data_offset = Some(offset);
    if let Some(traf) = moof.traf.get_mut(1) {
        // The Opus packets follow the video in the mdat.
        let audio_offset = i32::try_from(moof_len + BOX_HEADER + video_payload)
            .map_err(|_| too_large("the mdat".to_string(), video_payload))?;
        traf.trun[0].data_offset = Some(audio_offset);
    }
    encode_moof(&moof, &mut out)?;
    debug_assert_eq!(
        out.len(),
        moof_len,
        "the data offset changed the moof's size"
    );

    out.encode_atom(Mdat::KIND, |out| {
        for n in &nals {
            // Each length fits: n.len() <= a sample's size, checked above.
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n);
        }
        for s in audio.iter().flat_map(|a| a.samples.iter()) {
            out.extend_from_slice(s.data);
        }
        Ok(())
    })
    .map_err(|source| Fmp4Error::Encode {
        what: "fragment's mdat",
        source,
    })?;
    Ok(out)
}

/// The profiles whose SPS carries `chroma_format_idc` and bit depths
/// (H.264 §7.3.2.1.1), which ISO/IEC 14496-15 also wants in `avcC`.
const CHROMA_PROFILES: [u8; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// The `avcC` extension (chroma format, bit depths) for a High-or-above
/// SPS; `None` for Baseline, Main and Extended.
///
/// SPS syntax up to there: `profile_idc` u(8), constraint flags u(8),
/// `level_idc` u(8), `seq_parameter_set_id` ue(v), `chroma_format_idc`
/// ue(v), if 3 `separate_colour_plane_flag` u(1),
/// `bit_depth_luma_minus8` ue(v), `bit_depth_chroma_minus8` ue(v).
fn avcc_ext(sps: &[u8]) -> Result<Option<AvccExt>, Fmp4Error> {
    let profile_idc = sps.get(1).copied().unwrap_or(0);
    if !CHROMA_PROFILES.contains(&profile_idc) {
        return Ok(None);
    }
    let bad = |reason| Fmp4Error::ParameterSet {
        which: "SPS",
        len: sps.len(),
        reason,
    };
    let mut r = RbspBits::new(sps.get(1..).unwrap_or_default());
    r.skip(24)
        .ok_or_else(|| bad("ends inside profile and level"))?;
    r.ue()
        .ok_or_else(|| bad("ends inside seq_parameter_set_id"))?;
    let chroma_format = r.ue().ok_or_else(|| bad("ends inside chroma_format_idc"))?;
    if chroma_format == 3 {
        r.skip(1)
            .ok_or_else(|| bad("ends before separate_colour_plane_flag"))?;
    }
    let luma = r
        .ue()
        .ok_or_else(|| bad("ends inside bit_depth_luma_minus8"))?;
    let chroma = r
        .ue()
        .ok_or_else(|| bad("ends inside bit_depth_chroma_minus8"))?;
    // chroma_format_idc is 0..=3, bit depths 8..=14 (minus8 0..=6).
    if chroma_format > 3 || luma > 6 || chroma > 6 {
        return Err(bad("chroma_format_idc or a bit depth is out of range"));
    }
    Ok(Some(AvccExt {
        chroma_format: chroma_format as u8,
        bit_depth_luma: luma as u8 + 8,
        bit_depth_chroma: chroma as u8 + 8,
        sequence_parameter_sets_ext: Vec::new(),
    }))
}

/// Bits of a NAL unit's payload, most significant first, with emulation
/// prevention bytes (a `0x03` after two zero bytes) skipped: the RBSP.
struct RbspBits<'a> {
    bytes: &'a [u8],
    /// Next byte of `bytes` to load.
    next: usize,
    /// Zero bytes just loaded in a row (to spot `00 00 03`).
    zeros: u8,
    /// The loaded byte and how many of its bits are left.
    cur: u8,
    left: u8,
}

impl<'a> RbspBits<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        RbspBits {
            bytes,
            next: 0,
            zeros: 0,
            cur: 0,
            left: 0,
        }
    }

    fn bit(&mut self) -> Option<u32> {
        if self.left == 0 {
            let mut b = *self.bytes.get(self.next)?;
            self.next += 1;
            if self.zeros >= 2 && b == 3 {
                b = *self.bytes.get(self.next)?;
                self.next += 1;
                self.zeros = 0;
            }
            self.zeros = if b == 0 { self.zeros + 1 } else { 0 };
            self.cur = b;
            self.left = 8;
        }
        self.left -= 1;
        Some(u32::from(self.cur >> self.left) & 1)
    }

    fn skip(&mut self, n: u32) -> Option<()> {
        for _ in 0..n {
            self.bit()?;
        }
        Some(())
    }

    /// Unsigned exp-Golomb: `z` zero bits, a one, `z` bits of `x`;
    /// the value is `2^z - 1 + x`. At most 31 leading zeros.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let mut x: u64 = 0;
        for _ in 0..zeros {
            x = x << 1 | u64::from(self.bit()?);
        }
        u32::try_from((1u64 << zeros) - 1 + x).ok()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;
    use std::process::Command;
    use std::time::Duration;

    use mp4_atom::Decode;

    use super::*;
    use crate::h264::join_annex_b;

    /// x264's SPS for 320x240 High 1.3 (it has an emulation prevention
    /// byte: `00 00 03 00`).
    pub(crate) const HIGH_SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xb2, 0x02, 0x83, 0xf6, 0x02, 0x20, 0x00, 0x00, 0x03, 0x00,
        0x20, 0x00, 0x00, 0x07, 0x81, 0xe2, 0x85, 0x49,
    ];
    pub(crate) const HIGH_PPS: &[u8] = &[0x68, 0xeb, 0xc3, 0xcb, 0x22, 0xc0];

    pub(crate) fn track() -> VideoTrack {
        VideoTrack {
            width: 320,
            height: 240,
            sps: HIGH_SPS.to_vec(),
            pps: HIGH_PPS.to_vec(),
            timescale: 90_000,
        }
    }

    #[test]
    fn init_segment_round_trips_through_mp4_atom() {
        let init = init_segment(&track()).unwrap();
        let mut buf = init.as_slice();
        let ftyp = Ftyp::decode(&mut buf).unwrap();
        let moov = Moov::decode(&mut buf).unwrap();
        assert!(buf.is_empty(), "{} bytes after the moov", buf.len());

        assert_eq!(ftyp.major_brand, FourCC::new(b"iso6"));
        assert!(ftyp.compatible_brands.contains(&FourCC::new(b"cmfc")));

        assert_eq!(moov.mvhd.next_track_id, 2);
        let trex = &moov.mvex.as_ref().expect("mvex").trex;
        assert_eq!(trex.len(), 1);
        assert_eq!(trex[0].track_id, 1);
        assert_eq!(trex[0].default_sample_description_index, 1);

        assert_eq!(moov.trak.len(), 1);
        let trak = &moov.trak[0];
        assert_eq!(trak.tkhd.track_id, 1);
        assert!(trak.tkhd.enabled && trak.tkhd.in_movie);
        assert_eq!(trak.tkhd.width.integer(), 320);
        assert_eq!(trak.tkhd.height.integer(), 240);
        assert_eq!(trak.mdia.mdhd.timescale, 90_000);
        assert_eq!(trak.mdia.mdhd.language, "und");
        assert_eq!(trak.mdia.hdlr.handler, FourCC::new(b"vide"));
        let stbl = &trak.mdia.minf.stbl;
        assert!(stbl.stts.entries.is_empty());
        assert_eq!(stbl.stco.as_ref().map(|s| s.entries.len()), Some(0));

        let [Codec::Avc1(avc1)] = stbl.stsd.codecs.as_slice() else {
            panic!("stsd is not one avc1: {:?}", stbl.stsd.codecs);
        };
        assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));
        assert_eq!(avc1.visual.data_reference_index, 1);
        let avcc = &avc1.avcc;
        assert_eq!(avcc.length_size, 4);
        assert_eq!(
            (
                avcc.avc_profile_indication,
                avcc.profile_compatibility,
                avcc.avc_level_indication
            ),
            (0x64, 0x00, 0x0d)
        );
        assert_eq!(avcc.sequence_parameter_sets, [HIGH_SPS]);
        assert_eq!(avcc.picture_parameter_sets, [HIGH_PPS]);
        let ext = avcc
            .ext
            .as_ref()
            .expect("High profile avcC has the extension");
        assert_eq!(
            (ext.chroma_format, ext.bit_depth_luma, ext.bit_depth_chroma),
            (1, 8, 8)
        );
    }

    /// The `OpusHead` libopus writes for mono at 48 kHz: version 1, one
    /// channel, pre-skip 312, 48000 Hz, gain 0, family 0.
    pub(crate) const OPUS_HEAD: &[u8] = b"OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00";

    pub(crate) fn audio_track() -> AudioTrack {
        AudioTrack::from_opus_head(OPUS_HEAD).unwrap()
    }

    #[test]
    fn opus_head_becomes_dops() {
        assert_eq!(
            audio_track().dops,
            Dops {
                output_channel_count: 1,
                pre_skip: 312,
                input_sample_rate: 48_000,
                output_gain: 0,
                channel_mapping: None,
            }
        );
        // 5.1: family 1, 4 streams of which 2 coupled, and its table.
        let six =
            b"OpusHead\x01\x06\x38\x01\x80\xbb\x00\x00\xff\xff\x01\x04\x02\x00\x04\x01\x02\x03\x05";
        let t = AudioTrack::from_opus_head(six).unwrap();
        assert_eq!(t.channels(), 6);
        assert_eq!(t.dops.output_gain, -1);
        assert_eq!(
            t.dops.channel_mapping,
            Some(OpusChannelMapping {
                family: 1,
                stream_count: 4,
                coupled_count: 2,
                channel_mapping: vec![0, 4, 1, 2, 3, 5],
            })
        );
        let bad: [&[u8]; 6] = [
            b"OpusTags\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00",
            &OPUS_HEAD[..OPUS_HEAD.len() - 1],
            b"OpusHead\x10\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00",
            b"OpusHead\x01\x00\x38\x01\x80\xbb\x00\x00\x00\x00\x00",
            b"OpusHead\x01\x03\x38\x01\x80\xbb\x00\x00\x00\x00\x00",
            &six[..six.len() - 1],
        ];
        for b in bad {
            assert_eq!(AudioTrack::from_opus_head(b), None, "{b:?}");
        }
    }

    #[test]
    fn init_segment_with_opus_round_trips_through_mp4_atom() {
        // Without audio: the video-only bytes.
        assert_eq!(
            init_segment_av(&track(), None).unwrap(),
            init_segment(&track()).unwrap()
        );
        let init = init_segment_av(&track(), Some(&audio_track())).unwrap();
        let mut buf = init.as_slice();
        Ftyp::decode(&mut buf).unwrap();
        let moov = Moov::decode(&mut buf).unwrap();
        assert!(buf.is_empty());
        assert_eq!(moov.mvhd.next_track_id, 3);
        let trex = &moov.mvex.as_ref().expect("mvex").trex;
        assert_eq!(
            trex.iter()
                .map(|t| (t.track_id, t.default_sample_description_index))
                .collect::<Vec<_>>(),
            [(1, 1), (2, 1)]
        );
        let [video, audio] = moov.trak.as_slice() else {
            panic!("{} traks", moov.trak.len());
        };
        assert_eq!(video.tkhd.track_id, 1);
        assert_eq!(audio.tkhd.track_id, 2);
        assert!(audio.tkhd.enabled && audio.tkhd.in_movie);
        assert_eq!(audio.tkhd.volume, 1u8.into());
        assert_eq!(audio.mdia.mdhd.timescale, 48_000);
        assert_eq!(audio.mdia.hdlr.handler, FourCC::new(b"soun"));
        assert!(audio.mdia.minf.smhd.is_some() && audio.mdia.minf.vmhd.is_none());
        assert_eq!(audio.edts, None);
        let [Codec::Opus(opus)] = audio.mdia.minf.stbl.stsd.codecs.as_slice() else {
            panic!("stsd is not one Opus: {:?}", audio.mdia.minf.stbl.stsd);
        };
        assert_eq!(opus.dops, audio_track().dops);
        assert_eq!(opus.audio.channel_count, 1);
        assert_eq!(opus.audio.sample_rate.integer(), 48_000);
        assert_eq!(opus.audio.data_reference_index, 1);
    }

    #[test]
    fn fragment_with_opus_round_trips_through_mp4_atom() {
        let idr = join_annex_b([&[0x65, 0x88, 0x80][..]]);
        let p = join_annex_b([&[0x41, 0x9a][..]]);
        let video = [
            Sample {
                data: &idr,
                duration: 3000,
                key: true,
            },
            Sample {
                data: &p,
                duration: 3000,
                key: false,
            },
        ];
        let packets: [&[u8]; 3] = [&[0xf8, 1, 2], &[0xf8, 3], &[0xf8, 4, 5, 6]];
        let audio: Vec<AudioSample<'_>> = packets
            .iter()
            .zip([960, 960, 1920])
            .map(|(data, duration)| AudioSample { data, duration })
            .collect();
        let plain = fragment(7, 9000, &video).unwrap();
        // No packet: the video-only bytes.
        let run = |samples| AudioRun {
            base_decode_time: 4800,
            samples,
        };
        assert_eq!(fragment_av(7, 9000, &video, Some(run(&[]))).unwrap(), plain);
        let frag = fragment_av(7, 9000, &video, Some(run(&audio))).unwrap();
        let mut buf = frag.as_slice();
        let moof = Moof::decode(&mut buf).unwrap();
        let moof_len = frag.len() - buf.len();
        let mdat = Mdat::decode(&mut buf).unwrap();
        assert!(buf.is_empty());
        let [v, a] = moof.traf.as_slice() else {
            panic!("{} trafs", moof.traf.len());
        };
        assert_eq!(v.tfhd.track_id, 1);
        assert_eq!(v.tfdt.as_ref().unwrap().base_media_decode_time, 9000);
        assert_eq!(v.trun[0].data_offset, Some(moof_len as i32 + 8));
        assert_eq!(a.tfhd.track_id, 2);
        assert!(a.tfhd.default_base_is_moof);
        assert_eq!(a.tfdt.as_ref().unwrap().base_media_decode_time, 4800);
        // The video's 2 samples (7 and 6 bytes), then the packets.
        let video_len = 7 + 6;
        let offset = a.trun[0].data_offset.expect("data offset") as usize;
        assert_eq!(offset, moof_len + 8 + video_len);
        let entries: Vec<TrunEntry> = a.trun[0].samples.iter().collect();
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.size, e.duration, e.flags))
                .collect::<Vec<_>>(),
            [
                (Some(3), Some(960), None),
                (Some(2), Some(960), None),
                (Some(4), Some(1920), None)
            ]
        );
        assert_eq!(&frag[offset..], packets.concat());
        assert_eq!(mdat.data.len(), video_len + 9);
    }

    #[test]
    fn audio_timeline_follows_pts_and_the_capture_clock() {
        const MS: u64 = 1_000_000;
        let v = (90_000, 90_000); // the fragment's first frame at 1 s
        let v0 = 5_000 * MS; // captured at 5 s
        let mut t = AudioTimeline::default();
        // Before the picture: no place.
        assert_eq!(t.place(v, v0, 0, v0 - 5 * MS, 960), None);
        // The first packet, 15 ms after the frame: 1.015 s.
        assert_eq!(t.place(v, v0, 960, v0 + 15 * MS, 960), Some(48_720));
        // Then by its pts, whatever its capture time says (2 ms of jitter).
        assert_eq!(t.place(v, v0, 1920, v0 + 37 * MS, 960), Some(49_680));
        // A lost packet leaves its gap.
        assert_eq!(t.place(v, v0, 3840, v0 + 75 * MS, 960), Some(51_600));
        // A packet captured before the next fragment's frame, arriving
        // late: by its pts.
        let v2 = (v.0 + 9000, 90_000);
        assert_eq!(
            t.place(v2, v0 + 100 * MS, 4800, v0 + 95 * MS, 960),
            Some(52_560)
        );
        // The pts strays 50 ms behind the clock: placed by the clock.
        assert_eq!(
            t.place(v2, v0 + 100 * MS, 5760, v0 + 165 * MS, 960),
            Some(55_920)
        );
        assert_eq!(
            t.place(v2, v0 + 100 * MS, 6720, v0 + 185 * MS, 960),
            Some(56_880)
        );
        // 50 ms ahead of the clock: dropped until the clock catches up.
        assert_eq!(t.place(v2, v0 + 100 * MS, 9_600, v0 + 195 * MS, 960), None);
        // After a restart (a hole closed up): by the clock again, but
        // never before the last packet's end.
        t.restart();
        let v3 = (v.0 + 18_000, 90_000);
        assert_eq!(t.place(v3, v0 + 900 * MS, 99_000, v0 + 890 * MS, 960), None);
        assert_eq!(
            t.place(v3, v0 + 900 * MS, 99_960, v0 + 910 * MS, 960),
            Some(58_080)
        );
    }

    #[test]
    fn main_profile_avcc_has_no_extension() {
        let t = VideoTrack {
            // Main 3.1; the rest is not read.
            sps: vec![0x67, 0x4d, 0x40, 0x1f, 0xec, 0xa0],
            ..track()
        };
        let init = init_segment(&t).unwrap();
        let mut buf = init.as_slice();
        Ftyp::decode(&mut buf).unwrap();
        let moov = Moov::decode(&mut buf).unwrap();
        let Codec::Avc1(avc1) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
            panic!("not avc1");
        };
        assert_eq!(avc1.avcc.ext, None);
    }

    #[test]
    fn init_segment_refuses_bad_input() {
        let short = VideoTrack {
            sps: vec![0x67, 0x64],
            ..track()
        };
        assert!(matches!(
            init_segment(&short),
            Err(Fmp4Error::ParameterSet { which: "SPS", .. })
        ));
        let truncated_high = VideoTrack {
            sps: vec![0x67, 0x64, 0x00, 0x0d],
            ..track()
        };
        let e = init_segment(&truncated_high).unwrap_err();
        assert!(e.to_string().contains("ends inside"), "{e}");
        let wide = VideoTrack {
            width: 70_000,
            ..track()
        };
        assert!(matches!(
            init_segment(&wide),
            Err(Fmp4Error::PictureSize { width: 70_000, .. })
        ));
        let no_pps = VideoTrack {
            pps: Vec::new(),
            ..track()
        };
        assert!(matches!(
            init_segment(&no_pps),
            Err(Fmp4Error::ParameterSet { which: "PPS", .. })
        ));
    }

    #[test]
    fn fragment_round_trips_through_mp4_atom() {
        let aud = [0x09, 0x10];
        let sei = [0x06, 0x05, 0x01, 0xaa, 0x80];
        let idr = [0x65, 0x88, 0x84, 0x00, 0x33];
        let p1 = [0x41, 0x9a, 0x22];
        let p2 = [0x41, 0x9a, 0x44, 0x55];
        let s0 = join_annex_b([&aud[..], HIGH_SPS, HIGH_PPS, &sei, &idr]);
        // 3-byte start codes work as well.
        let s1 = [&[0, 0, 1][..], &aud, &[0, 0, 1], &p1].concat();
        let s2 = join_annex_b([&p2[..]]);
        let samples = [
            Sample {
                data: &s0,
                duration: 3000,
                key: true,
            },
            Sample {
                data: &s1,
                duration: 3001,
                key: false,
            },
            Sample {
                data: &s2,
                duration: 2999,
                key: false,
            },
        ];
        let base = u64::from(u32::MAX) + 7; // needs tfdt version 1
        let frag = fragment(42, base, &samples).unwrap();

        let mut buf = frag.as_slice();
        let moof = Moof::decode(&mut buf).unwrap();
        let moof_len = frag.len() - buf.len();
        let mdat = Mdat::decode(&mut buf).unwrap();
        assert!(buf.is_empty());

        assert_eq!(moof.mfhd.sequence_number, 42);
        let [traf] = moof.traf.as_slice() else {
            panic!("{} trafs", moof.traf.len());
        };
        assert_eq!(traf.tfhd.track_id, 1);
        assert!(traf.tfhd.default_base_is_moof);
        assert_eq!(traf.tfhd.base_data_offset, None);
        assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, base);
        // The version byte follows the box type.
        let tfdt_at = frag.windows(4).position(|w| w == b"tfdt").unwrap();
        assert_eq!(frag[tfdt_at + 4], 1, "tfdt version");
        let [trun] = traf.trun.as_slice() else {
            panic!("{} truns", traf.trun.len());
        };

        let want: [(&[&[u8]], u32, u32); 3] = [
            (&[&sei, &idr], 3000, KEY_SAMPLE_FLAGS),
            (&[&p1], 3001, DELTA_SAMPLE_FLAGS),
            (&[&p2], 2999, DELTA_SAMPLE_FLAGS),
        ];
        let mut expected_mdat = Vec::new();
        let entries: Vec<TrunEntry> = trun.samples.iter().collect();
        assert_eq!(entries.len(), 3);
        for (e, (nals, duration, flags)) in entries.iter().zip(want) {
            let start = expected_mdat.len();
            for n in nals {
                expected_mdat.extend_from_slice(&(n.len() as u32).to_be_bytes());
                expected_mdat.extend_from_slice(n);
            }
            assert_eq!(e.size, Some((expected_mdat.len() - start) as u32));
            assert_eq!(e.duration, Some(duration));
            assert_eq!(e.flags, Some(flags));
            assert_eq!(e.cts, None);
        }
        assert_eq!(mdat.data, expected_mdat);

        // The data offset, from the moof's first byte, is the first
        // sample's first byte: just past the mdat header.
        let offset = trun.data_offset.expect("data offset") as usize;
        assert_eq!(offset, moof_len + 8);
        assert_eq!(&frag[offset..offset + 4], &(sei.len() as u32).to_be_bytes());
        assert_eq!(&frag[offset + 4..offset + 4 + sei.len()], &sei);
    }

    #[test]
    fn one_sample_fragment_keeps_its_flags() {
        let idr = join_annex_b([&[0x65, 0x88, 0x80][..]]);
        let frag = fragment(
            1,
            0,
            &[Sample {
                data: &idr,
                duration: 3000,
                key: true,
            }],
        )
        .unwrap();
        let moof = Moof::decode(&mut frag.as_slice()).unwrap();
        let trun = &moof.traf[0].trun[0];
        assert_eq!(trun.samples.len(), 1);
        let e = trun.samples.get(0).unwrap();
        // mp4-atom writes a lone sample's flags as first_sample_flags.
        assert_eq!(e.flags, Some(KEY_SAMPLE_FLAGS));
        assert_eq!((e.size, e.duration), (Some(7), Some(3000)));
    }

    #[test]
    fn fragment_refuses_empty_input() {
        assert!(matches!(
            fragment(3, 0, &[]),
            Err(Fmp4Error::EmptyFragment { sequence: 3 })
        ));
        let aud_only = join_annex_b([&[0x09, 0x10][..]]);
        let idr = join_annex_b([&[0x65, 0x88][..]]);
        let samples = [
            Sample {
                data: &idr,
                duration: 1,
                key: true,
            },
            Sample {
                data: &aud_only,
                duration: 1,
                key: false,
            },
        ];
        assert!(matches!(
            fragment(4, 0, &samples),
            Err(Fmp4Error::EmptySample {
                sequence: 4,
                index: 1
            })
        ));
    }

    #[test]
    fn codec_string_from_sps() {
        let t = VideoTrack {
            sps: vec![0x67, 0x4d, 0x40, 0x1f, 0xec],
            ..track()
        };
        assert_eq!(t.codec_string(), "avc1.4d401f");
        assert_eq!(track().codec_string(), "avc1.64000d");
    }

    #[test]
    fn track_from_access_unit() {
        let au = join_annex_b([&[0x09, 0x10][..], HIGH_SPS, HIGH_PPS, &[0x65, 0x88]]);
        let t = VideoTrack::from_access_unit(&au, 320, 240, 90_000).unwrap();
        assert_eq!(t, track());
        let no_pps = join_annex_b([HIGH_SPS, &[0x65, 0x88]]);
        assert_eq!(
            VideoTrack::from_access_unit(&no_pps, 320, 240, 90_000),
            None
        );
    }

    #[test]
    fn exp_golomb_reads_through_emulation_prevention() {
        // After 00 00 the 03 is skipped: 0000000 1 (7 leading zeros) comes
        // from the 01, the 7 bits 1111111 from the ff: 2^7 - 1 + 127.
        let mut r = RbspBits::new(&[0x00, 0x00, 0x03, 0x01, 0xff]);
        r.skip(16).unwrap();
        assert_eq!(r.ue(), Some(254));
        let mut r = RbspBits::new(&[0b1010_0110, 0b0100_0000]);
        // 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3.
        assert_eq!(
            (r.ue(), r.ue(), r.ue(), r.ue()),
            (Some(0), Some(1), Some(2), Some(3))
        );
        assert_eq!(RbspBits::new(&[0, 0]).ue(), None);
    }

    /// Runs a tool to the end (a watchdog of 60 s); a missing tool
    /// panics: `make test` installs ffmpeg, so its absence is a failure.
    pub(crate) fn run(tool: &str, args: &[&str]) -> std::process::Output {
        let out = framebus_test_support::run_to_end(
            Command::new(tool).args(args),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}; stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `ffmpeg -f framemd5` of a file: one MD5 per decoded picture.
    pub(crate) fn frame_md5s(file: &Path) -> Vec<String> {
        let out = run(
            "ffmpeg",
            &[
                "-v",
                "error",
                "-i",
                file.to_str().unwrap(),
                "-f",
                "framemd5",
                "-",
            ],
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit(',').next().unwrap().trim().to_string())
            .collect()
    }

    /// Real peers: x264 through the ffmpeg CLI makes 90 frames (AUDs and
    /// in-band SPS/PPS at each IDR), we mux them into init + 15 fragments
    /// of 6 samples, and ffprobe/ffmpeg read the result back: codec, size,
    /// frame count, timestamps, key frames, no decoder complaint, and the
    /// same pictures as decoding the elementary stream itself.
    #[test]
    fn ffmpeg_reads_init_and_fragments() {
        let h264 = run(
            "ffmpeg",
            &[
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=30",
                "-frames:v",
                "90",
                "-c:v",
                "libx264",
                "-g",
                "30",
                "-bf",
                "0",
                "-x264-params",
                "repeat-headers=1",
                "-bsf:v",
                "h264_metadata=aud=insert",
                "-f",
                "h264",
                "-",
            ],
        )
        .stdout;

        // Access units: each starts at an AUD.
        let mut aus: Vec<Vec<&[u8]>> = Vec::new();
        for n in split_annex_b(&h264) {
            if nal_type(n) == nal::AUD || aus.is_empty() {
                aus.push(Vec::new());
            }
            aus.last_mut().unwrap().push(n);
        }
        assert_eq!(aus.len(), 90);
        let aus: Vec<(Vec<u8>, bool)> = aus
            .iter()
            .map(|au| {
                let key = au.iter().any(|n| nal_type(n) == nal::IDR);
                (join_annex_b(au.iter().copied()), key)
            })
            .collect();
        assert!(aus[0].1 && aus[30].1 && aus[60].1 && !aus[1].1);

        let track = VideoTrack::from_access_unit(&aus[0].0, 320, 240, 90_000).unwrap();
        let mut file = init_segment(&track).unwrap();
        let mut decode_time = 0u64;
        for (i, chunk) in aus.chunks(6).enumerate() {
            let samples: Vec<Sample<'_>> = chunk
                .iter()
                .map(|(data, key)| Sample {
                    data,
                    duration: 3000,
                    key: *key,
                })
                .collect();
            file.extend(fragment(i as u32 + 1, decode_time, &samples).unwrap());
            decode_time += 6 * 3000;
        }

        let dir = framebus_test_support::names::TempDir::new("fmp4");
        let mp4 = dir.path().join("stream.mp4");
        let es = dir.path().join("stream.h264");
        std::fs::write(&mp4, &file).unwrap();
        std::fs::write(&es, &h264).unwrap();
        let mp4_arg = mp4.to_str().unwrap();

        let probe = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-count_frames",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=codec_name,width,height,nb_read_frames:packet=pts,duration,flags",
                "-of",
                "json",
                mp4_arg,
            ],
        );
        let json: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
        let stream = &json["streams"][0];
        assert_eq!(stream["codec_name"], "h264", "{json}");
        assert_eq!(stream["width"], 320, "{json}");
        assert_eq!(stream["height"], 240, "{json}");
        assert_eq!(stream["nb_read_frames"], "90", "{json}");
        let packets = json["packets"].as_array().expect("packets");
        assert_eq!(packets.len(), 90);
        for (i, p) in packets.iter().enumerate() {
            assert_eq!(p["pts"], i as u64 * 3000, "packet {i}: {p}");
            assert_eq!(p["duration"], 3000, "packet {i}: {p}");
            let key = p["flags"].as_str().unwrap().starts_with('K');
            assert_eq!(key, i % 30 == 0, "packet {i}: {p}");
        }

        let decode = run("ffmpeg", &["-v", "error", "-i", mp4_arg, "-f", "null", "-"]);
        assert!(
            decode.stderr.is_empty(),
            "ffmpeg complained: {}",
            String::from_utf8_lossy(&decode.stderr)
        );

        let from_mp4 = frame_md5s(&mp4);
        assert_eq!(from_mp4.len(), 90);
        assert_eq!(
            from_mp4,
            frame_md5s(&es),
            "pictures differ from the elementary stream's"
        );
    }
}
