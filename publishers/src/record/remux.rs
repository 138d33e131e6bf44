//! Reading back the fragmented MP4 files the recorder writes, and turning
//! them into progressive ("faststart") MP4 on the fly.
//!
//! # Scanning
//!
//! A recording is an init segment (`ftyp` + `moov` with `mvex`, as
//! [`crate::fmp4::init_segment`] writes it) followed by fragments
//! (`moof` + `mdat`, [`crate::fmp4::fragment`]), appended and synced one
//! at a time. [`scan`] walks the top-level boxes by their headers alone:
//! it reads the `moov` and each `moof` whole (a few hundred bytes per
//! fragment) and seeks past every `mdat` payload, so a file of gigabytes
//! costs a few reads per fragment. For each sample it records:
//!
//! * its file offset: the `trun`'s `data_offset` counts from the `moof`'s
//!   first byte (`tfhd` default-base-is-moof; an explicit
//!   `base_data_offset` is honoured too), and each sample follows the
//!   previous one of its run;
//! * size, duration and flags from the `trun` entry, else the `tfhd`
//!   defaults, else the `trex` defaults (ISO/IEC 14496-12 §8.8.7, §8.8.8);
//! * key: the flags' `sample_is_non_sync_sample` bit (`0x0001_0000`) is
//!   clear (see the sample flags in [`crate::fmp4`]'s docs);
//! * decode time: the `tfdt`'s base plus the durations before it in the
//!   fragment (without a `tfdt`: where the previous fragment ended).
//!
//! Every sample must lie inside the payload of the `mdat` that follows its
//! `moof`; one that does not is an error ([`RemuxError::OutsideMdat`]).
//!
//! After a kill -9 or a power cut the file may end inside a box. The scan
//! stops at the first fragment that is not complete: a box header cut
//! short, a `moof` or `mdat` whose size runs past the end of the file, a
//! `moof` with no `mdat` after it, or a zero-filled tail (a box type of
//! four zero bytes, which a file system can leave after a power cut).
//! That is not an error: [`Scan::valid_len`] is where the last complete
//! fragment ends and [`Scan::truncated`] counts the bytes after it, so
//! the recorder can cut the file there or report a crashed recording.
//! Complete boxes of other types between fragments (`free`, `styp`,
//! `sidx`...) are skipped; after the last fragment they count as
//! truncated. A missing or broken init segment is an error.
//!
//! # Progressive MP4
//!
//! [`Progressive`] describes a self-contained MP4 with its index first,
//! made of samples of one or more scanned files that share a track:
//!
//! ```text
//! ftyp  major isom, compatible isom iso2 avc1 mp41
//! moov  mvhd (duration) · trak  tkhd (duration)
//!                               mdia  mdhd (duration) · hdlr vide
//!                                     minf  vmhd · dinf · stbl:
//!         stsd  avc1 + avcC (crate::fmp4::movie_av, as in the init segment)
//!         stts  run-length durations
//!         stss  the key samples (1-based)
//!         stsz  every sample's size
//!         stsc  samples per chunk, run-length
//!         stco  each chunk's offset in this file (co64 past 4 GiB)
//! mdat  the samples, in order (64-bit size past 4 GiB)
//! ```
//!
//! A file with an Opus track (the camera's sound, [`crate::fmp4`]'s
//! track 2) is scanned for both: [`Scan::audio`] has the packets, their
//! decode times from their own `traf`'s `tfdt` (48 kHz). The progressive
//! MP4 then has a second `trak` (`Opus` + `dOps`, `smhd`, `hdlr soun`,
//! `stts`/`stsz`/`stsc`/`stco` of its own, no `stss`: every packet is a
//! sync sample) and, when the sound begins after the first frame, an edit
//! list (`edts`/`elst`: an empty edit of that length, then the media).
//! Of each part, the packets within the video's time span are taken, at
//! the same distance from its first frame as in the source
//! ([`Progressive::new_av`]).
//!
//! A chunk is a run of samples of one track contiguous in one source
//! file: the samples of one fragment (or of the selected part of it); the
//! chunks of both tracks follow each other in the order of the source. Only the header (ftyp,
//! moov, mdat box header) is held in memory; the `mdat` payload is a list
//! of source byte ranges, one per chunk, copied unchanged (the fragments
//! already hold 4-byte NAL lengths, as `avcC` says). Any byte range of the
//! result maps to pieces of the header and of the sources
//! ([`Progressive::pieces`]), which is what an HTTP Range request needs.
//!
//! The offsets in `stco` depend on the `moov`'s size, which depends on
//! whether `stco` (4 bytes an entry) or `co64` (8) is needed: the `moov`
//! is encoded once with zero offsets to measure it, switched to `co64` if
//! the last chunk would start past `u32::MAX`, and encoded again with the
//! offsets filled in (same fields, same size).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use mp4_atom::{
    Atom, Co64, Codec, Decode, DecodeMaybe, Edts, Elst, ElstEntry, Encode, FourCC, Ftyp, Header,
    Mdat, Moof, Moov, Stbl, Stco, Stsc, StscEntry, Stss, Stsz, StszSamples, Stts, SttsEntry, Traf,
    Trex,
};

use crate::fmp4::{movie_av, AudioMovie, AudioTrack, Fmp4Error, VideoTrack, OPUS_TIMESCALE};

/// `sample_is_non_sync_sample` in the sample flags (ISO/IEC 14496-12
/// §8.8.3.1): set on every sample that is not a sync sample.
const NON_SYNC_SAMPLE: u32 = 0x0001_0000;

/// The most a `moov` or `moof` may take: both are read whole, and ours
/// are a few kilobytes. A larger size field is damage, not an index.
const MAX_INDEX_BOX: u64 = 64 << 20;

/// A box type of four zero bytes: the zero-filled tail a power cut can
/// leave, never a box.
const ZERO_KIND: FourCC = FourCC::new(b"\0\0\0\0");

/// Read and write buffer of [`Progressive::write_range`].
const COPY_BUFFER: usize = 64 << 10;

/// One sample of a scanned file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleRef {
    /// Its first byte in the file.
    pub offset: u64,
    /// Its size in bytes (NAL units with 4-byte lengths).
    pub size: u32,
    /// Duration in timescale ticks.
    pub duration: u32,
    /// Decode (and composition) time in timescale ticks.
    pub decode_time: u64,
    /// A sync sample (IDR).
    pub key: bool,
}

/// One complete fragment (`moof` + `mdat`) of a scanned file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentInfo {
    /// The `mfhd` sequence number.
    pub sequence: u32,
    /// Where its `moof` starts in the file.
    pub offset: u64,
    /// Bytes of `moof` and `mdat` together.
    pub len: u64,
    /// Index in [`Scan::samples`] of its first sample.
    pub first_sample: usize,
    /// How many samples it holds.
    pub samples: usize,
}

/// What [`scan`] found in a fragmented MP4 file.
#[derive(Clone, Debug)]
pub struct Scan {
    /// The file scanned (named in errors, read by [`Progressive`]).
    pub path: PathBuf,
    /// The init segment's track.
    pub track: VideoTrack,
    /// Every sample of the complete fragments, in order.
    pub samples: Vec<SampleRef>,
    /// The complete fragments, in order.
    pub fragments: Vec<FragmentInfo>,
    /// The file's length when it was scanned.
    pub file_len: u64,
    /// Where the last complete fragment (or the init segment) ends: a
    /// truncated file's damaged tail starts here.
    pub valid_len: u64,
    /// Bytes after `valid_len` (an incomplete last fragment); 0 for a
    /// file that ends cleanly.
    pub truncated: u64,
    /// The Opus track, when the file has one.
    pub audio: Option<AudioScan>,
}

/// The Opus track of a scanned file.
#[derive(Clone, Debug)]
pub struct AudioScan {
    /// The init segment's audio track.
    pub track: AudioTrack,
    /// Every Opus packet of the complete fragments, in order; decode
    /// times in 48 kHz ticks from the fragments' `tfdt`.
    pub samples: Vec<SampleRef>,
}

impl Scan {
    /// The sum of the samples' durations, in timescale ticks.
    pub fn duration(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.duration)).sum()
    }

    /// [`Scan::duration`] in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.duration() as f64 / f64::from(self.track.timescale)
    }

    /// How many samples (frames) the complete fragments hold.
    pub fn frames(&self) -> usize {
        self.samples.len()
    }
}

/// Why a recording could not be scanned or remuxed.
#[derive(Debug, thiserror::Error)]
pub enum RemuxError {
    /// Opening, seeking or reading a source file failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file does not start with a usable init segment.
    #[error("{} has no valid init segment: {reason} (at byte {offset})", path.display())]
    NoInitSegment {
        /// The file.
        path: PathBuf,
        /// Where the problem is.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// `mp4-atom` could not decode a box (or its header).
    #[error("{}: cannot decode the {kind} box at byte {offset}: {source}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// Where the box starts.
        offset: u64,
        /// The box type.
        kind: FourCC,
        /// `mp4-atom`'s error.
        source: mp4_atom::Error,
    },
    /// A complete fragment that cannot be used.
    #[error("{}: the fragment at byte {offset}: {reason}", path.display())]
    BadFragment {
        /// The file.
        path: PathBuf,
        /// Where its `moof` (or the stray box) starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A `trun` places a sample outside the payload of the `mdat` after
    /// its `moof`.
    #[error(
        "{}: sample {sample} of the fragment at byte {offset} is at bytes {start}..{end}, \
         outside its mdat's payload (bytes {mdat_start}..{mdat_end})",
        path.display()
    )]
    OutsideMdat {
        /// The file.
        path: PathBuf,
        /// Where the `moof` starts.
        offset: u64,
        /// The sample's index in the fragment.
        sample: usize,
        /// Where the `trun` puts the sample.
        start: u64,
        /// Its end.
        end: u64,
        /// The `mdat` payload's first byte.
        mdat_start: u64,
        /// The `mdat`'s end.
        mdat_end: u64,
    },
    /// Two parts of a progressive MP4 have different tracks.
    #[error("{} cannot follow {}: {reason}", path.display(), first.display())]
    TrackMismatch {
        /// The part whose track differs.
        path: PathBuf,
        /// The first part.
        first: PathBuf,
        /// Which fields differ.
        reason: String,
    },
    /// A part's sample range is not within its scan.
    #[error("{}: samples {start}..{end} asked for, the file has {frames}", path.display())]
    SampleRange {
        /// The file.
        path: PathBuf,
        /// First sample asked for.
        start: usize,
        /// One past the last.
        end: usize,
        /// Samples in the scan.
        frames: usize,
    },
    /// A part does not start at a keyframe, so it could not be decoded.
    #[error("{}: the selection starts at the sample at byte {offset}, which is not a keyframe", path.display())]
    NotKeyframe {
        /// The file.
        path: PathBuf,
        /// The sample's offset in the file.
        offset: u64,
    },
    /// Nothing was selected.
    #[error("no samples to put in the MP4")]
    NoSamples,
    /// More samples than the 32-bit counts of the sample tables hold.
    #[error("{count} samples are more than an MP4 sample table holds")]
    TooManySamples {
        /// Samples selected.
        count: usize,
    },
    /// The track cannot be described in a `moov`.
    #[error("cannot describe the track: {0}")]
    Track(#[from] Fmp4Error),
    /// `mp4-atom` refused to encode a box of the header.
    #[error("cannot encode the progressive MP4's {what}: {source}")]
    Encode {
        /// The box.
        what: &'static str,
        /// `mp4-atom`'s error.
        source: mp4_atom::Error,
    },
    /// A byte range outside the progressive MP4.
    #[error("bytes {start}..{end} asked for, the MP4 has {len}")]
    Range {
        /// First byte asked for.
        start: u64,
        /// One past the last.
        end: u64,
        /// The MP4's length.
        len: u64,
    },
    /// A source file is shorter than when it was scanned.
    #[error(
        "{} ends before byte {end} (its samples at {offset}..{end} are missing: was it cut since it was scanned?)",
        path.display()
    )]
    ShortSource {
        /// The file.
        path: PathBuf,
        /// Start of the range being copied.
        offset: u64,
        /// Its end.
        end: u64,
    },
    /// Writing the MP4 out failed.
    #[error("cannot write the MP4: {source}")]
    Write {
        /// The OS error.
        source: io::Error,
    },
}

/// Scans a fragmented MP4 file (see the module docs).
pub fn scan(path: &Path) -> Result<Scan, RemuxError> {
    let mut file = File::open(path).map_err(|source| RemuxError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    scan_reader(&mut file, path)
}

/// [`scan`] of any seekable reader; `path` names it in errors and in
/// [`Scan::path`].
pub fn scan_reader<R: Read + Seek>(reader: &mut R, path: &Path) -> Result<Scan, RemuxError> {
    let file_len = reader
        .seek(SeekFrom::End(0))
        .map_err(|source| RemuxError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let mut s = Scanner {
        r: reader,
        path,
        len: file_len,
    };
    let (init_end, info, audio_info) = s.init_segment()?;
    let mut audio_samples = Vec::new();
    let mut next_audio_time = 0;

    let mut samples = Vec::new();
    let mut fragments = Vec::new();
    let mut pos = init_end;
    // Where the last complete fragment (or the init segment) ends.
    let mut valid_len = init_end;
    let mut next_decode_time = 0;
    loop {
        let b = match s.header_at(pos)? {
            At::Box(b) if b.kind != ZERO_KIND && b.end <= file_len => b,
            // The end, a header cut short, a box running past the end or
            // a zero-filled tail.
            _ => break,
        };
        if b.kind == Mdat::KIND {
            return Err(s.bad_fragment(pos, "an mdat with no moof before it".to_string()));
        }
        if b.kind != Moof::KIND {
            pos = b.end; // free, styp, sidx...: not ours to interpret
            continue;
        }
        let moof = b;
        let mdat = match s.header_at(moof.end)? {
            At::Box(b) if b.kind == Mdat::KIND && b.end <= file_len => b,
            At::Box(b) if b.kind != Mdat::KIND && b.kind != ZERO_KIND => {
                return Err(s.bad_fragment(
                    pos,
                    format!(
                        "the moof is followed by a {} box at byte {}, not an mdat",
                        b.kind, b.start
                    ),
                ));
            }
            _ => break, // the mdat is missing or cut short
        };
        let first_sample = samples.len();
        let audio = audio_info
            .as_ref()
            .map(|a| (a, next_audio_time, &mut audio_samples));
        let (sequence, end_time, audio_end) =
            s.fragment(&moof, &mdat, next_decode_time, &info, &mut samples, audio)?;
        next_decode_time = end_time;
        next_audio_time = audio_end.unwrap_or(next_audio_time);
        fragments.push(FragmentInfo {
            sequence,
            offset: moof.start,
            len: mdat.end - moof.start,
            first_sample,
            samples: samples.len() - first_sample,
        });
        pos = mdat.end;
        valid_len = pos;
    }
    Ok(Scan {
        path: path.to_path_buf(),
        track: info.track,
        samples,
        fragments,
        file_len,
        valid_len,
        truncated: file_len - valid_len,
        audio: audio_info.map(|a| AudioScan {
            track: a.track,
            samples: audio_samples,
        }),
    })
}

/// A box found by its header.
#[derive(Clone, Copy, Debug)]
struct BoxAt {
    kind: FourCC,
    /// First byte of the header.
    start: u64,
    /// First byte of the body.
    body: u64,
    /// One past the last byte (may lie past the end of the file).
    end: u64,
}

/// What lies at a position of the file.
enum At {
    /// The end of the file.
    End,
    /// Fewer bytes than the box header needs.
    Incomplete,
    /// A box header (its body may run past the end of the file).
    Box(BoxAt),
}

/// The track of the init segment and the `trex` defaults for it.
struct TrackInfo {
    track: VideoTrack,
    id: u32,
    trex: Trex,
}

/// The Opus track of the init segment and the `trex` defaults for it.
struct AudioInfo {
    track: AudioTrack,
    id: u32,
    trex: Trex,
}

struct Scanner<'a, R> {
    r: &'a mut R,
    path: &'a Path,
    len: u64,
}

impl<R: Read + Seek> Scanner<'_, R> {
    fn read_err(&self, source: io::Error) -> RemuxError {
        RemuxError::Read {
            path: self.path.to_path_buf(),
            source,
        }
    }

    fn bad_fragment(&self, offset: u64, reason: String) -> RemuxError {
        RemuxError::BadFragment {
            path: self.path.to_path_buf(),
            offset,
            reason,
        }
    }

    fn no_init(&self, offset: u64, reason: impl Into<String>) -> RemuxError {
        RemuxError::NoInitSegment {
            path: self.path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    fn read_exact_at(&mut self, pos: u64, buf: &mut [u8]) -> Result<(), RemuxError> {
        self.r
            .seek(SeekFrom::Start(pos))
            .and_then(|_| self.r.read_exact(buf))
            .map_err(|e| self.read_err(e))
    }

    /// The box header at `pos` (8 bytes, 16 with a 64-bit size), decoded
    /// by `mp4-atom`.
    fn header_at(&mut self, pos: u64) -> Result<At, RemuxError> {
        if pos >= self.len {
            return Ok(At::End);
        }
        let mut buf = [0u8; 16];
        let avail = (self.len - pos).min(16) as usize;
        self.read_exact_at(pos, &mut buf[..avail])?;
        let mut rest = &buf[..avail];
        let header = match Header::decode_maybe(&mut rest) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(At::Incomplete),
            Err(source) => {
                return Err(RemuxError::Decode {
                    path: self.path.to_path_buf(),
                    offset: pos,
                    kind: FourCC::new(&[buf[4], buf[5], buf[6], buf[7]]),
                    source,
                })
            }
        };
        let body = pos + (avail - rest.len()) as u64;
        let end = match header.size {
            Some(size) => body.saturating_add(size as u64),
            None => self.len, // size 0: to the end of the file
        };
        Ok(At::Box(BoxAt {
            kind: header.kind,
            start: pos,
            body,
            end,
        }))
    }

    /// Reads a whole `moov` or `moof` (header included) and decodes it.
    fn decode_box<T: Atom>(&mut self, b: &BoxAt) -> Result<T, RemuxError> {
        let mut bytes = vec![0u8; (b.end - b.start) as usize];
        self.read_exact_at(b.start, &mut bytes)?;
        T::decode(&mut bytes.as_slice()).map_err(|source| RemuxError::Decode {
            path: self.path.to_path_buf(),
            offset: b.start,
            kind: T::KIND,
            source,
        })
    }

    /// `ftyp`, perhaps other boxes, then `moov`: where the init segment
    /// ends and its track.
    fn init_segment(&mut self) -> Result<(u64, TrackInfo, Option<AudioInfo>), RemuxError> {
        match self.header_at(0)? {
            At::Box(b) if b.kind == Ftyp::KIND => {}
            At::Box(b) => {
                return Err(self.no_init(0, format!("it starts with a {} box, not ftyp", b.kind)))
            }
            At::End => return Err(self.no_init(0, "the file is empty")),
            At::Incomplete => return Err(self.no_init(0, "it ends inside the first box header")),
        }
        let mut pos = 0;
        let moov = loop {
            let b = match self.header_at(pos)? {
                At::Box(b) => b,
                At::End | At::Incomplete => {
                    return Err(self.no_init(pos, "the file ends before the moov"))
                }
            };
            if b.end > self.len {
                return Err(self.no_init(
                    pos,
                    format!(
                        "the {} box needs {} bytes, the file ends after {}",
                        b.kind,
                        b.end - b.start,
                        self.len - b.start
                    ),
                ));
            }
            if b.kind == Moov::KIND {
                break b;
            }
            if b.kind == Moof::KIND || b.kind == Mdat::KIND {
                return Err(self.no_init(pos, format!("a {} comes before the moov", b.kind)));
            }
            pos = b.end;
        };
        if moov.end - moov.start > MAX_INDEX_BOX {
            return Err(self.no_init(
                moov.start,
                format!("a moov of {} bytes is implausible", moov.end - moov.start),
            ));
        }
        let decoded: Moov = self.decode_box(&moov)?;
        let (info, audio) =
            track_info(&decoded).map_err(|reason| self.no_init(moov.start, reason))?;
        Ok((moov.end, info, audio))
    }

    /// The samples of one complete fragment, appended to `out` (and its
    /// Opus packets to `audio`'s list, given where the previous fragment's
    /// audio ended); its sequence number and the decode times its last
    /// sample (and last packet, when it has a `traf` for the audio) end at.
    #[allow(clippy::type_complexity)]
    fn fragment(
        &mut self,
        moof_at: &BoxAt,
        mdat: &BoxAt,
        next_decode_time: u64,
        info: &TrackInfo,
        out: &mut Vec<SampleRef>,
        audio: Option<(&AudioInfo, u64, &mut Vec<SampleRef>)>,
    ) -> Result<(u32, u64, Option<u64>), RemuxError> {
        if moof_at.end - moof_at.start > MAX_INDEX_BOX {
            return Err(self.bad_fragment(
                moof_at.start,
                format!(
                    "a moof of {} bytes is implausible",
                    moof_at.end - moof_at.start
                ),
            ));
        }
        let moof: Moof = self.decode_box(moof_at)?;
        let Some(traf) = moof.traf.iter().find(|t| t.tfhd.track_id == info.id) else {
            return Err(self.bad_fragment(moof_at.start, format!("no traf for track {}", info.id)));
        };
        let end = self.traf_samples(traf, moof_at, mdat, next_decode_time, &info.trex, out)?;
        let mut audio_end = None;
        if let Some((a, next, list)) = audio {
            // A fragment without sound has no traf for it.
            if let Some(traf) = moof.traf.iter().find(|t| t.tfhd.track_id == a.id) {
                audio_end = Some(self.traf_samples(traf, moof_at, mdat, next, &a.trex, list)?);
            }
        }
        Ok((moof.mfhd.sequence_number, end, audio_end))
    }

    /// The samples of one `traf`, appended to `out`; the decode time its
    /// last sample ends at.
    fn traf_samples(
        &self,
        traf: &Traf,
        moof_at: &BoxAt,
        mdat: &BoxAt,
        next_decode_time: u64,
        trex: &Trex,
        out: &mut Vec<SampleRef>,
    ) -> Result<u64, RemuxError> {
        let tfhd = &traf.tfhd;
        // default-base-is-moof, or neither flag with one traf: the moof.
        let base = tfhd.base_data_offset.unwrap_or(moof_at.start);
        let mut decode_time = traf
            .tfdt
            .as_ref()
            .map_or(next_decode_time, |t| t.base_media_decode_time);
        let mut data = base;
        let mut index = 0;
        for trun in &traf.trun {
            if let Some(off) = trun.data_offset {
                data = base.saturating_add_signed(i64::from(off));
            }
            for e in trun.samples.iter() {
                let size = e
                    .size
                    .or(tfhd.default_sample_size)
                    .unwrap_or(trex.default_sample_size);
                let duration = e
                    .duration
                    .or(tfhd.default_sample_duration)
                    .unwrap_or(trex.default_sample_duration);
                let flags = e
                    .flags
                    .or(tfhd.default_sample_flags)
                    .unwrap_or(trex.default_sample_flags);
                let end = data.saturating_add(u64::from(size));
                if data < mdat.body || end > mdat.end {
                    return Err(RemuxError::OutsideMdat {
                        path: self.path.to_path_buf(),
                        offset: moof_at.start,
                        sample: index,
                        start: data,
                        end,
                        mdat_start: mdat.body,
                        mdat_end: mdat.end,
                    });
                }
                out.push(SampleRef {
                    offset: data,
                    size,
                    duration,
                    decode_time,
                    key: flags & NON_SYNC_SAMPLE == 0,
                });
                data = end;
                decode_time += u64::from(duration);
                index += 1;
            }
        }
        Ok(decode_time)
    }
}

/// The H.264 track of an init segment's `moov` and its Opus track if it
/// has one (a second `trak` with an `Opus` sample entry), or what is
/// wrong.
fn track_info(moov: &Moov) -> Result<(TrackInfo, Option<AudioInfo>), String> {
    let opus_of = |t: &mp4_atom::Trak| match t.mdia.minf.stbl.stsd.codecs.as_slice() {
        [Codec::Opus(o)] => Some(o.dops.clone()),
        _ => None,
    };
    let two =
        |n: usize| format!("the moov has {n} tracks, not one (H.264) or two (H.264 and Opus)");
    let (trak, audio) = match moov.trak.as_slice() {
        [trak] => (trak, None),
        [a, b] => match (opus_of(a), opus_of(b)) {
            (None, Some(dops)) => (a, Some((b, dops))),
            (Some(dops), None) => (b, Some((a, dops))),
            _ => return Err(two(2)),
        },
        traks => return Err(two(traks.len())),
    };
    let Some(mvex) = &moov.mvex else {
        return Err("the moov has no mvex: not a fragmented MP4".to_string());
    };
    let [Codec::Avc1(avc1)] = trak.mdia.minf.stbl.stsd.codecs.as_slice() else {
        return Err(
            "the sample description is not one avc1 (H.264, parameter sets in avcC)".into(),
        );
    };
    let avcc = &avc1.avcc;
    if avcc.length_size != 4 {
        return Err(format!(
            "the avcC has {}-byte NAL lengths, not 4",
            avcc.length_size
        ));
    }
    let (Some(sps), Some(pps)) = (
        avcc.sequence_parameter_sets.first(),
        avcc.picture_parameter_sets.first(),
    ) else {
        return Err("the avcC lacks an SPS or a PPS".to_string());
    };
    let timescale = trak.mdia.mdhd.timescale;
    if timescale == 0 {
        return Err("the media timescale is 0".to_string());
    }
    let id = trak.tkhd.track_id;
    let trex_of = |id| {
        mvex.trex
            .iter()
            .find(|t: &&Trex| t.track_id == id)
            .cloned()
            .unwrap_or_default()
    };
    let audio = match audio {
        None => None,
        Some((t, dops)) => {
            if t.mdia.mdhd.timescale != OPUS_TIMESCALE {
                return Err(format!(
                    "the Opus track's timescale is {}, not {OPUS_TIMESCALE}",
                    t.mdia.mdhd.timescale
                ));
            }
            Some(AudioInfo {
                track: AudioTrack { dops },
                id: t.tkhd.track_id,
                trex: trex_of(t.tkhd.track_id),
            })
        }
    };
    let video = TrackInfo {
        track: VideoTrack {
            width: avc1.visual.width.into(),
            height: avc1.visual.height.into(),
            sps: sps.clone(),
            pps: pps.clone(),
            timescale,
        },
        id,
        trex: trex_of(id),
    };
    Ok((video, audio))
}

/// How two tracks differ, or None if they are the same.
fn track_difference(a: &VideoTrack, b: &VideoTrack) -> Option<String> {
    let mut diffs = Vec::new();
    if (a.width, a.height) != (b.width, b.height) {
        diffs.push(format!(
            "picture size {}x{} vs {}x{}",
            b.width, b.height, a.width, a.height
        ));
    }
    if a.timescale != b.timescale {
        diffs.push(format!("timescale {} vs {}", b.timescale, a.timescale));
    }
    if a.sps != b.sps {
        diffs.push(format!(
            "SPS ({} vs {})",
            b.codec_string(),
            a.codec_string()
        ));
    }
    if a.pps != b.pps {
        diffs.push("PPS".to_string());
    }
    (!diffs.is_empty()).then(|| format!("different {}", diffs.join(", ")))
}

/// Bytes of source files that make up part of the `mdat` payload of a
/// [`Progressive`]: one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceRange {
    /// Index in [`Progressive::files`].
    pub file: usize,
    /// First byte in that file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Where it lands in the progressive MP4.
    pub at: u64,
}

/// A piece of a byte range of a [`Progressive`] MP4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Bytes of the header (ftyp, moov, mdat box header).
    Header(&'a [u8]),
    /// Bytes to copy from a source file.
    Source {
        /// Index in [`Progressive::files`].
        file: usize,
        /// The file.
        path: &'a Path,
        /// First byte in the file.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
}

/// One part of a [`Progressive`]: a file, its selected video samples,
/// and its Opus packets (those within the video's time span are taken).
#[derive(Clone, Copy, Debug)]
pub struct Part<'a> {
    /// The file.
    pub path: &'a Path,
    /// Video samples of its scan, starting at a keyframe.
    pub video: &'a [SampleRef],
    /// Opus packets of its scan (all of them will do).
    pub audio: &'a [SampleRef],
}

/// A run of samples of one track contiguous in one source file.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    audio: bool,
    file: usize,
    offset: u64,
    len: u64,
    samples: u32,
}

impl Chunk {
    /// Adds sample `s` of `file` to the last chunk if it follows it in the
    /// file, else as a new chunk.
    fn add(chunks: &mut Vec<Chunk>, audio: bool, file: usize, s: &SampleRef) {
        match chunks.last_mut() {
            Some(c) if c.file == file && c.offset + c.len == s.offset => {
                c.len += u64::from(s.size);
                c.samples += 1;
            }
            _ => chunks.push(Chunk {
                audio,
                file,
                offset: s.offset,
                len: u64::from(s.size),
                samples: 1,
            }),
        }
    }
}

/// `ticks` of a `from` Hz clock on a `to` Hz clock, rounded down.
fn rescale(ticks: u64, from: u64, to: u64) -> u64 {
    (u128::from(ticks) * u128::from(to) / u128::from(from.max(1))) as u64
}

/// A progressive MP4 made on the fly from scanned fragmented files (see
/// the module docs): its header in memory, its `mdat` payload as source
/// byte ranges.
#[derive(Clone, Debug)]
pub struct Progressive {
    header: Vec<u8>,
    files: Vec<PathBuf>,
    ranges: Vec<SourceRange>,
    total_len: u64,
    duration: u64,
    frames: usize,
}

impl Progressive {
    /// The samples `parts` (each a file and samples of its scan, in
    /// order) as one movie of `track`. Each part must start at a
    /// keyframe; empty parts are skipped. The files are not read here.
    pub fn new(track: &VideoTrack, parts: &[(&Path, &[SampleRef])]) -> Result<Self, RemuxError> {
        let parts: Vec<Part<'_>> = parts
            .iter()
            .map(|(path, video)| Part {
                path,
                video,
                audio: &[],
            })
            .collect();
        Progressive::new_av(track, None, &parts)
    }

    /// [`Progressive::new`] with an Opus track when `audio` is given: of
    /// each part, the packets that lie within its video's time span (from
    /// its first frame's decode time to its last frame's end) are taken,
    /// at the same distance from the part's first frame as in the source.
    /// The audio's durations are the distances between the packets (a
    /// lost packet's gap stays a gap); an empty edit before the first
    /// packet says how long after the first frame the sound begins. No
    /// packet taken: no audio track.
    pub fn new_av(
        track: &VideoTrack,
        audio: Option<&AudioTrack>,
        parts: &[Part<'_>],
    ) -> Result<Self, RemuxError> {
        let ts = u64::from(track.timescale);
        let opus_ts = u64::from(OPUS_TIMESCALE);
        let mut files: Vec<PathBuf> = Vec::new();
        // Every chunk of both tracks, in the order of the output's mdat.
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut sizes = Vec::new();
        let mut stts: Vec<SttsEntry> = Vec::new();
        let mut stss = Vec::new();
        let mut duration = 0u64;
        // The audio: per packet its size and its time on the output's
        // 48 kHz timeline; the last one's duration.
        let mut audio_sizes = Vec::new();
        let mut audio_times: Vec<u64> = Vec::new();
        let mut audio_last = 0u32;
        for part in parts {
            let (Some(first), Some(last)) = (part.video.first(), part.video.last()) else {
                continue;
            };
            if !first.key {
                return Err(RemuxError::NotKeyframe {
                    path: part.path.to_path_buf(),
                    offset: first.offset,
                });
            }
            let file = files.len();
            files.push(part.path.to_path_buf());
            let part_start = duration;
            let mut video_chunks: Vec<Chunk> = Vec::new();
            for s in part.video {
                sizes.push(s.size);
                // 1-based sample numbers; the count is checked below.
                if s.key {
                    stss.push(sizes.len() as u32);
                }
                match stts.last_mut() {
                    Some(e) if e.sample_delta == s.duration => e.sample_count += 1,
                    _ => stts.push(SttsEntry {
                        sample_count: 1,
                        sample_delta: s.duration,
                    }),
                }
                duration += u64::from(s.duration);
                Chunk::add(&mut video_chunks, false, file, s);
            }
            let mut audio_chunks: Vec<Chunk> = Vec::new();
            if audio.is_some() {
                let from = rescale(first.decode_time, ts, opus_ts);
                let to = rescale(last.decode_time + u64::from(last.duration), ts, opus_ts);
                let out = rescale(part_start, ts, opus_ts);
                for a in part.audio {
                    if a.decode_time < from || a.decode_time + u64::from(a.duration) > to {
                        continue;
                    }
                    audio_sizes.push(a.size);
                    audio_times.push(out + (a.decode_time - from));
                    audio_last = a.duration;
                    Chunk::add(&mut audio_chunks, true, file, a);
                }
            }
            // Both tracks' chunks in the order of the source file.
            let mut v = video_chunks.into_iter().peekable();
            let mut a = audio_chunks.into_iter().peekable();
            loop {
                let take_audio = match (v.peek(), a.peek()) {
                    (Some(vc), Some(ac)) => ac.offset < vc.offset,
                    (None, Some(_)) => true,
                    (_, None) => false,
                };
                let next = if take_audio { a.next() } else { v.next() };
                let Some(c) = next else { break };
                chunks.push(c);
            }
        }
        let frames = sizes.len();
        if frames == 0 {
            return Err(RemuxError::NoSamples);
        }
        if u32::try_from(frames.max(audio_sizes.len())).is_err() {
            return Err(RemuxError::TooManySamples {
                count: frames.max(audio_sizes.len()),
            });
        }
        let audio = audio.filter(|_| !audio_sizes.is_empty());

        let mut ranges: Vec<SourceRange> = Vec::with_capacity(chunks.len());
        let mut payload = 0u64;
        for c in &chunks {
            ranges.push(SourceRange {
                file: c.file,
                offset: c.offset,
                len: c.len,
                at: payload, // made absolute below
            });
            payload += c.len;
        }
        let stsc_of = |is_audio: bool| {
            let mut stsc: Vec<StscEntry> = Vec::new();
            for (i, c) in chunks.iter().filter(|c| c.audio == is_audio).enumerate() {
                if stsc.last().map(|e| e.samples_per_chunk) != Some(c.samples) {
                    stsc.push(StscEntry {
                        first_chunk: i as u32 + 1, // chunks <= samples: fits
                        samples_per_chunk: c.samples,
                        sample_description_index: 1,
                    });
                }
            }
            stsc
        };
        let count_of = |is_audio: bool| chunks.iter().filter(|c| c.audio == is_audio).count();

        let encode_err = |what| move |source| RemuxError::Encode { what, source };
        let mut head = Vec::new();
        Ftyp {
            major_brand: b"isom".into(),
            minor_version: 512,
            compatible_brands: vec![
                b"isom".into(),
                b"iso2".into(),
                b"avc1".into(),
                b"mp41".into(),
            ],
        }
        .encode(&mut head)
        .map_err(encode_err("ftyp"))?;
        let mut mdat_header = Vec::new();
        Header {
            kind: Mdat::KIND,
            size: Some(usize::try_from(payload).map_err(|_| RemuxError::Encode {
                what: "mdat header",
                source: mp4_atom::Error::TooLarge(Mdat::KIND),
            })?),
        }
        .encode(&mut mdat_header)
        .map_err(encode_err("mdat header"))?;

        let audio_movie = audio.map(|track| {
            let mut a_stts: Vec<SttsEntry> = Vec::new();
            let mut a_duration = 0u64;
            for (i, t) in audio_times.iter().enumerate() {
                let d = audio_times
                    .get(i + 1)
                    .map_or(u64::from(audio_last), |n| n - t);
                let d = d.min(u64::from(u32::MAX)) as u32;
                a_duration += u64::from(d);
                match a_stts.last_mut() {
                    Some(e) if e.sample_delta == d => e.sample_count += 1,
                    _ => a_stts.push(SttsEntry {
                        sample_count: 1,
                        sample_delta: d,
                    }),
                }
            }
            let lead = audio_times[0];
            let edts = (lead > 0).then(|| Edts {
                elst: Some(Elst {
                    entries: vec![
                        ElstEntry {
                            segment_duration: rescale(lead, opus_ts, ts),
                            media_time: None,
                            media_rate: 1i16.into(),
                        },
                        ElstEntry {
                            segment_duration: rescale(a_duration, opus_ts, ts),
                            media_time: Some(0),
                            media_rate: 1i16.into(),
                        },
                    ],
                }),
            });
            AudioMovie {
                track,
                duration: a_duration,
                stbl: Stbl {
                    stts: Stts { entries: a_stts },
                    stsc: Stsc {
                        entries: stsc_of(true),
                    },
                    stsz: Stsz {
                        samples: StszSamples::Different {
                            sizes: std::mem::take(&mut audio_sizes),
                        },
                    },
                    stco: Some(Stco {
                        entries: vec![0; count_of(true)],
                    }),
                    ..Stbl::default()
                },
                edts,
                movie_duration: rescale(lead + a_duration, opus_ts, ts),
            }
        });
        let mut moov = movie_av(
            track,
            duration,
            Stbl {
                stts: Stts { entries: stts },
                stss: Some(Stss { entries: stss }),
                stsc: Stsc {
                    entries: stsc_of(false),
                },
                stsz: Stsz {
                    samples: StszSamples::Different { sizes },
                },
                stco: Some(Stco {
                    entries: vec![0; count_of(false)],
                }),
                ..Stbl::default()
            },
            audio_movie,
        )?;
        let encoded_len = |moov: &Moov| -> Result<u64, RemuxError> {
            let mut v = Vec::new();
            moov.encode(&mut v).map_err(encode_err("moov"))?;
            Ok(v.len() as u64)
        };
        let fixed = (head.len() + mdat_header.len()) as u64;
        let mut data_start = fixed + encoded_len(&moov)?;
        let last_at = ranges.last().map_or(0, |r| r.at);
        if data_start + last_at > u64::from(u32::MAX) {
            for trak in &mut moov.trak {
                let stbl = &mut trak.mdia.minf.stbl;
                let n = stbl.stco.take().map_or(0, |s| s.entries.len());
                stbl.co64 = Some(Co64 {
                    entries: vec![0; n],
                });
            }
            data_start = fixed + encoded_len(&moov)?;
        }
        for r in &mut ranges {
            r.at += data_start;
        }
        // trak 0 is the video, trak 1 (if any) the audio.
        for (i, trak) in moov.trak.iter_mut().enumerate() {
            let ats: Vec<u64> = ranges
                .iter()
                .zip(&chunks)
                .filter(|(_, c)| c.audio == (i == 1))
                .map(|(r, _)| r.at)
                .collect();
            let stbl = &mut trak.mdia.minf.stbl;
            if let Some(co64) = &mut stbl.co64 {
                co64.entries = ats;
            } else if let Some(stco) = &mut stbl.stco {
                // Every offset fits: checked against the last one above.
                stco.entries = ats.into_iter().map(|at| at as u32).collect();
            }
        }
        moov.encode(&mut head).map_err(encode_err("moov"))?;
        head.extend_from_slice(&mdat_header);
        debug_assert_eq!(
            head.len() as u64,
            data_start,
            "the offsets changed the moov's size"
        );

        Ok(Progressive {
            header: head,
            files,
            ranges,
            total_len: data_start + payload,
            duration,
            frames,
        })
    }

    /// [`Progressive::new`] from scans: each part is a scan and a range of
    /// its samples. All scans must have the same track. When every scan
    /// has the same Opus track, the MP4 has it too
    /// ([`Progressive::new_av`]); otherwise it is video only.
    pub fn from_scans(parts: &[(&Scan, Range<usize>)]) -> Result<Self, RemuxError> {
        let Some((first, _)) = parts.first() else {
            return Err(RemuxError::NoSamples);
        };
        let audio = first.audio.as_ref().map(|a| &a.track).filter(|t| {
            parts
                .iter()
                .all(|(s, _)| s.audio.as_ref().is_some_and(|a| a.track == **t))
        });
        let mut selected = Vec::with_capacity(parts.len());
        for (scan, range) in parts {
            if let Some(reason) = track_difference(&first.track, &scan.track) {
                return Err(RemuxError::TrackMismatch {
                    path: scan.path.clone(),
                    first: first.path.clone(),
                    reason,
                });
            }
            let samples =
                scan.samples
                    .get(range.clone())
                    .ok_or_else(|| RemuxError::SampleRange {
                        path: scan.path.clone(),
                        start: range.start,
                        end: range.end,
                        frames: scan.samples.len(),
                    })?;
            selected.push(Part {
                path: scan.path.as_path(),
                video: samples,
                audio: match (&scan.audio, audio) {
                    (Some(a), Some(_)) => &a.samples,
                    _ => &[],
                },
            });
        }
        Progressive::new_av(&first.track, audio, &selected)
    }

    /// `ftyp`, `moov` and the `mdat` box header: the first bytes of the
    /// file.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// The source files, as [`SourceRange::file`] numbers them.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The source byte ranges whose concatenation, after the header, is
    /// the `mdat` payload.
    pub fn ranges(&self) -> &[SourceRange] {
        &self.ranges
    }

    /// The length of the whole MP4 in bytes.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The movie's duration in timescale ticks.
    pub fn duration(&self) -> u64 {
        self.duration
    }

    /// How many samples (frames) it holds.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The pieces of bytes `range` of the MP4, in order; the range is
    /// clipped to [`Progressive::total_len`].
    pub fn pieces(&self, range: Range<u64>) -> impl Iterator<Item = Piece<'_>> + '_ {
        let end = range.end.min(self.total_len);
        let start = range.start.min(end);
        let header_len = self.header.len() as u64;
        let head = (start < end.min(header_len))
            .then(|| Piece::Header(&self.header[start as usize..end.min(header_len) as usize]));
        // Those that end after `start`, while they begin before `end`;
        // none for an empty range.
        let first = self.ranges.partition_point(|r| r.at + r.len <= start);
        let ranges = if start < end {
            &self.ranges[first..]
        } else {
            &[]
        };
        let body = ranges.iter().take_while(move |r| r.at < end).map(move |r| {
            let from = start.max(r.at);
            let to = end.min(r.at + r.len);
            Piece::Source {
                file: r.file,
                path: &self.files[r.file],
                offset: r.offset + (from - r.at),
                len: to - from,
            }
        });
        head.into_iter().chain(body)
    }

    /// Writes bytes `range` of the MP4 to `out`, reading the sources a
    /// buffer at a time.
    pub fn write_range(&self, range: Range<u64>, out: &mut impl Write) -> Result<(), RemuxError> {
        if range.start > range.end || range.end > self.total_len {
            return Err(RemuxError::Range {
                start: range.start,
                end: range.end,
                len: self.total_len,
            });
        }
        let write_err = |source| RemuxError::Write { source };
        let mut open: Option<(usize, File)> = None;
        let mut buf = vec![0u8; COPY_BUFFER];
        for piece in self.pieces(range) {
            let (file, path, offset, len) = match piece {
                Piece::Header(bytes) => {
                    out.write_all(bytes).map_err(write_err)?;
                    continue;
                }
                Piece::Source {
                    file,
                    path,
                    offset,
                    len,
                } => (file, path, offset, len),
            };
            let read_err = |source| RemuxError::Read {
                path: path.to_path_buf(),
                source,
            };
            if open.as_ref().map(|(i, _)| *i) != Some(file) {
                open = Some((file, File::open(path).map_err(read_err)?));
            }
            let (_, f) = open.as_mut().expect("opened above");
            f.seek(SeekFrom::Start(offset)).map_err(read_err)?;
            let mut left = len;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = match f.read(&mut buf[..want]) {
                    Ok(0) => {
                        return Err(RemuxError::ShortSource {
                            path: path.to_path_buf(),
                            offset,
                            end: offset + len,
                        })
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_err(e)),
                };
                out.write_all(&buf[..n]).map_err(write_err)?;
                left -= n as u64;
            }
        }
        Ok(())
    }

    /// Bytes `range` of the MP4 in memory (for small ranges).
    pub fn read_range(&self, range: Range<u64>) -> Result<Vec<u8>, RemuxError> {
        let mut out =
            Vec::with_capacity(range.end.saturating_sub(range.start).min(1 << 20) as usize);
        self.write_range(range, &mut out)?;
        Ok(out)
    }

    /// Writes the whole MP4 to `out`.
    pub fn write_to(&self, out: &mut impl Write) -> Result<(), RemuxError> {
        self.write_range(0..self.total_len, out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::process::Command;

    use framebus_test_support::names::TempDir;
    use mp4_atom::Trun;

    use super::*;
    use crate::fmp4::tests::{frame_md5s, run, track, HIGH_PPS, HIGH_SPS};
    use crate::fmp4::{fragment, init_segment, Sample};
    use crate::h264::{join_annex_b, nal, nal_type, split_annex_b};

    /// Where the synthetic recordings' decode times start (not 0, so the
    /// `tfdt` is seen to be read).
    const BASE: u64 = 5 * 90_000;

    /// A fragmented file as the recorder writes it, and what went in.
    struct Synthetic {
        file: Vec<u8>,
        /// Per sample: its mdat bytes (4-byte lengths, no AUD/SPS/PPS),
        /// duration, key.
        samples: Vec<(Vec<u8>, u32, bool)>,
        /// Per fragment: where its moof starts, the moof's length, the
        /// fragment's length.
        fragments: Vec<(usize, usize, usize)>,
    }

    /// Fragments of `counts` samples; each fragment starts with an IDR
    /// (AUD, SPS, PPS, SEI, slice), the others are P slices after an AUD.
    /// Slice bytes differ per sample and hold no zero byte; every fourth
    /// sample lasts 3003 ticks, the others 3000.
    fn synthetic(t: &VideoTrack, counts: &[usize]) -> Synthetic {
        let mut file = init_segment(t).unwrap();
        let mut samples = Vec::new();
        let mut fragments = Vec::new();
        let mut decode_time = BASE;
        for (f, &count) in counts.iter().enumerate() {
            let mut aus = Vec::new();
            for j in 0..count {
                let i = samples.len() + aus.len();
                let key = j == 0;
                let body: Vec<u8> = (0..5 + i % 11).map(|k| (i * 7 + k) as u8 | 1).collect();
                let slice = [&[if key { 0x65 } else { 0x41 }][..], &body].concat();
                let sei = [0x06, 0x05, 0x01, i as u8 | 1, 0x80];
                let (annex_b, kept): (Vec<u8>, Vec<&[u8]>) = if key {
                    (
                        join_annex_b([&[0x09, 0x10][..], HIGH_SPS, HIGH_PPS, &sei, &slice]),
                        vec![&sei, &slice],
                    )
                } else {
                    (join_annex_b([&[0x09, 0x30][..], &slice]), vec![&slice])
                };
                let mut mdat = Vec::new();
                for n in kept {
                    mdat.extend_from_slice(&(n.len() as u32).to_be_bytes());
                    mdat.extend_from_slice(n);
                }
                let duration = if i % 4 == 3 { 3003 } else { 3000 };
                aus.push((annex_b, mdat, duration, key));
            }
            let input: Vec<Sample<'_>> = aus
                .iter()
                .map(|(data, _, duration, key)| Sample {
                    data,
                    duration: *duration,
                    key: *key,
                })
                .collect();
            let frag = fragment(f as u32 + 1, decode_time, &input).unwrap();
            let mut rest = frag.as_slice();
            Moof::decode(&mut rest).unwrap();
            fragments.push((file.len(), frag.len() - rest.len(), frag.len()));
            file.extend_from_slice(&frag);
            for (_, mdat, duration, key) in aus {
                decode_time += u64::from(duration);
                samples.push((mdat, duration, key));
            }
        }
        Synthetic {
            file,
            samples,
            fragments,
        }
    }

    fn scan_bytes(bytes: &[u8]) -> Result<Scan, RemuxError> {
        scan_reader(&mut Cursor::new(bytes), Path::new("mem.mp4"))
    }

    /// Writes `bytes` to `name` in `dir` and scans it.
    fn scan_file(dir: &TempDir, name: &str, bytes: &[u8]) -> Scan {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        scan(&path).unwrap()
    }

    #[test]
    fn scan_finds_every_sample() {
        let syn = synthetic(&track(), &[5, 4, 6]);
        let dir = TempDir::new("remux");
        let scan = scan_file(&dir, "rec.mp4", &syn.file);

        assert_eq!(scan.track, track());
        assert_eq!(scan.frames(), 15);
        assert_eq!(
            (scan.file_len, scan.valid_len, scan.truncated),
            (syn.file.len() as u64, syn.file.len() as u64, 0)
        );
        let fragments: Vec<_> = scan
            .fragments
            .iter()
            .map(|f| (f.sequence, f.offset, f.len, f.first_sample, f.samples))
            .collect();
        let o = |i: usize| syn.fragments[i].0 as u64;
        let l = |i: usize| syn.fragments[i].2 as u64;
        assert_eq!(
            fragments,
            [
                (1, o(0), l(0), 0, 5),
                (2, o(1), l(1), 5, 4),
                (3, o(2), l(2), 9, 6)
            ]
        );

        let mut decode_time = BASE;
        for (i, (s, (mdat, duration, key))) in scan.samples.iter().zip(&syn.samples).enumerate() {
            let at = s.offset as usize;
            assert_eq!(&syn.file[at..at + s.size as usize], &mdat[..], "sample {i}");
            assert_eq!((s.duration, s.key), (*duration, *key), "sample {i}");
            assert_eq!(s.decode_time, decode_time, "sample {i}");
            decode_time += u64::from(*duration);
        }
        // The first sample of each fragment is the first byte after its
        // mdat header.
        for (f, (moof_at, moof_len, _)) in scan.fragments.iter().zip(&syn.fragments) {
            assert_eq!(
                scan.samples[f.first_sample].offset,
                (moof_at + moof_len + 8) as u64
            );
        }
        assert_eq!(scan.duration(), decode_time - BASE);
        // Samples 3, 7 and 11 last 3003 ticks.
        assert_eq!(scan.duration(), 12 * 3000 + 3 * 3003);
        assert!((scan.duration_secs() - 45_009.0 / 90_000.0).abs() < 1e-9);

        let again = scan_bytes(&syn.file).unwrap();
        assert_eq!(again.samples, scan.samples);
        assert_eq!(again.path, Path::new("mem.mp4"));
    }

    #[test]
    fn init_segment_alone_has_no_samples() {
        let init = init_segment(&track()).unwrap();
        let scan = scan_bytes(&init).unwrap();
        assert_eq!((scan.frames(), scan.duration()), (0, 0));
        assert_eq!((scan.valid_len, scan.truncated), (init.len() as u64, 0));
    }

    #[test]
    fn truncated_files_scan_to_the_last_complete_fragment() {
        let syn = synthetic(&track(), &[5, 4, 6]);
        let (last, moof_len, _) = syn.fragments[2];
        let mdat_at = last + moof_len;
        let len = syn.file.len();
        let cuts = [
            ("at the last moof", last),
            ("inside the moof header", last + 5),
            ("inside the moof", last + 30),
            ("after the moof", mdat_at),
            ("inside the mdat header", mdat_at + 4),
            ("after the mdat header", mdat_at + 8),
            ("inside the mdat", len - 3),
        ];
        for (what, cut) in cuts {
            let scan = scan_bytes(&syn.file[..cut]).unwrap();
            assert_eq!(scan.frames(), 9, "cut {what}");
            assert_eq!(scan.fragments.len(), 2, "cut {what}");
            assert_eq!(scan.valid_len, last as u64, "cut {what}");
            assert_eq!(scan.truncated, (cut - last) as u64, "cut {what}");
            assert_eq!(scan.file_len, cut as u64, "cut {what}");
        }

        // A power cut can leave zeros where the last writes were.
        let zeros = [&syn.file[..], &[0; 100]].concat();
        let scan = scan_bytes(&zeros).unwrap();
        assert_eq!(scan.frames(), 15);
        assert_eq!((scan.valid_len, scan.truncated), (len as u64, 100));
        let zeros = [&syn.file[..last + 40], &[0; 100]].concat();
        let scan = scan_bytes(&zeros).unwrap();
        assert_eq!(scan.frames(), 9);
        assert_eq!((scan.valid_len, scan.truncated), (last as u64, 140));

        // A complete free box between fragments is skipped.
        let mut free = Vec::new();
        mp4_atom::Free {
            zeroed: mp4_atom::Zeroed::new(4),
        }
        .encode(&mut free)
        .unwrap();
        let with_free = [&syn.file[..last], &free, &syn.file[last..]].concat();
        let scan = scan_bytes(&with_free).unwrap();
        assert_eq!((scan.frames(), scan.truncated), (15, 0));
        // After the last fragment, it is not part of a fragment.
        let scan = scan_bytes(&[&syn.file[..], &free].concat()).unwrap();
        assert_eq!((scan.frames(), scan.valid_len), (15, len as u64));
        assert_eq!(scan.truncated, free.len() as u64);
    }

    #[test]
    fn broken_files_are_errors() {
        let syn = synthetic(&track(), &[5, 4, 6]);
        let init_len = init_segment(&track()).unwrap().len();

        let e = scan_bytes(&[]).unwrap_err();
        assert!(
            matches!(e, RemuxError::NoInitSegment { offset: 0, .. }),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "mem.mp4 has no valid init segment: the file is empty (at byte 0)"
        );
        let e = scan_bytes(&syn.file[syn.fragments[0].0..]).unwrap_err();
        assert!(
            e.to_string().contains("starts with a moof box, not ftyp"),
            "{e}"
        );
        let e = scan_bytes(&syn.file[..init_len - 10]).unwrap_err();
        assert!(
            matches!(e, RemuxError::NoInitSegment { .. })
                && e.to_string().contains("moov box needs"),
            "{e}"
        );

        // The second fragment's trun points 1000 bytes further than its
        // mdat holds.
        let (at, moof_len, _) = syn.fragments[1];
        let mut moof = Moof::decode(&mut &syn.file[at..at + moof_len]).unwrap();
        let trun: &mut Trun = &mut moof.traf[0].trun[0];
        trun.data_offset = trun.data_offset.map(|o| o + 1000);
        let mut bad_moof = Vec::new();
        moof.encode(&mut bad_moof).unwrap();
        assert_eq!(bad_moof.len(), moof_len);
        let mut bad = syn.file.clone();
        bad[at..at + moof_len].copy_from_slice(&bad_moof);
        let e = scan_bytes(&bad).unwrap_err();
        assert!(
            matches!(e, RemuxError::OutsideMdat { offset, sample: 0, .. } if offset == at as u64),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "mem.mp4: sample 0 of the fragment at byte {at} is at bytes"
            )),
            "{text}"
        );

        // A complete moof followed by something other than an mdat.
        let mut bad = syn.file.clone();
        let kind_at = at + moof_len + 4;
        bad[kind_at..kind_at + 4].copy_from_slice(b"free");
        let e = scan_bytes(&bad).unwrap_err();
        assert!(
            matches!(e, RemuxError::BadFragment { offset, .. } if offset == at as u64),
            "{e}"
        );
        assert!(e.to_string().contains("followed by a free box"), "{e}");
    }

    /// A file with the Opus track: two fragments of 6 frames (200 ms);
    /// the sound starts 10 ms after the first frame, packets of 20 ms, the
    /// one at 200 ms lost; the last packet runs past the last frame.
    #[test]
    fn scan_and_progressive_carry_the_opus_track() {
        use crate::fmp4::tests::audio_track;
        use crate::fmp4::{fragment_av, init_segment_av, AudioRun, AudioSample};

        let t = track();
        let mut file = init_segment_av(&t, Some(&audio_track())).unwrap();
        let idr = join_annex_b([HIGH_SPS, HIGH_PPS, &[0x65, 0x88, 0x80]]);
        let p = join_annex_b([&[0x41, 0x9a, 0x11][..]]);
        let video: Vec<Sample<'_>> = (0..6)
            .map(|i| Sample {
                data: if i == 0 { &idr } else { &p },
                duration: 3000,
                key: i == 0,
            })
            .collect();
        let starts: Vec<Vec<u64>> = vec![
            (0..10).map(|k| 480 + 960 * k).collect(),
            (0..9).map(|k| 11_040 + 960 * k).collect(),
        ];
        let mut packets = Vec::new();
        for (f, starts) in starts.iter().enumerate() {
            let data: Vec<Vec<u8>> = starts
                .iter()
                .map(|&s| vec![0xf8, (s / 480) as u8, 0x5a])
                .collect();
            let samples: Vec<AudioSample<'_>> = data
                .iter()
                .map(|d| AudioSample {
                    data: d,
                    duration: 960,
                })
                .collect();
            let run = AudioRun {
                base_decode_time: starts[0],
                samples: &samples,
            };
            file.extend(fragment_av(f as u32 + 1, f as u64 * 18_000, &video, Some(run)).unwrap());
            packets.extend(starts.iter().copied().zip(data));
        }
        let dir = TempDir::new("remux-av");
        let scan = scan_file(&dir, "av.mp4", &file);
        assert_eq!(scan.frames(), 12);
        let audio = scan.audio.as_ref().expect("the Opus track");
        assert_eq!(audio.track, audio_track());
        assert_eq!(audio.samples.len(), 19);
        for (s, (start, data)) in audio.samples.iter().zip(&packets) {
            assert_eq!((s.decode_time, s.duration, s.key), (*start, 960, true));
            let at = s.offset as usize;
            assert_eq!(&file[at..at + s.size as usize], data.as_slice());
        }

        let prog = Progressive::from_scans(&[(&scan, 0..12)]).unwrap();
        let mut bytes = Vec::new();
        prog.write_to(&mut bytes).unwrap();
        let (_, moov, _, _) = parse_progressive(&bytes);
        assert_eq!(moov.mvhd.next_track_id, 3);
        let [_, a] = moov.trak.as_slice() else {
            panic!("{} traks", moov.trak.len());
        };
        // The sound begins 480 ticks (10 ms = 900 at 90 kHz) late.
        let elst = &a.edts.as_ref().expect("edts").elst.as_ref().expect("elst");
        assert_eq!(elst.entries.len(), 2);
        assert_eq!(
            (elst.entries[0].segment_duration, elst.entries[0].media_time),
            (900, None)
        );
        assert_eq!(elst.entries[1].media_time, Some(0));
        let stbl = &a.mdia.minf.stbl;
        // The last packet ends after the last frame: left out.
        let StszSamples::Different { sizes } = &stbl.stsz.samples else {
            panic!("{:?}", stbl.stsz);
        };
        assert_eq!(sizes.len(), 18);
        // The lost packet's gap stays: the one before it lasts 40 ms.
        let durations: Vec<(u32, u32)> = stbl
            .stts
            .entries
            .iter()
            .map(|e| (e.sample_count, e.sample_delta))
            .collect();
        assert_eq!(durations, [(9, 960), (1, 1920), (8, 960)]);
        assert_eq!(a.mdia.mdhd.duration, 9 * 960 + 1920 + 8 * 960);
        // Each chunk's offset holds its packets.
        let chunk_offsets = &stbl.stco.as_ref().expect("stco").entries;
        assert_eq!(chunk_offsets.len(), 2);
        let mut next = 0;
        for (chunk, &at) in chunk_offsets.iter().enumerate() {
            let n = if chunk == 0 { 10 } else { 8 };
            let mut at = at as usize;
            for (_, data) in &packets[next..next + n] {
                assert_eq!(&bytes[at..at + data.len()], data.as_slice());
                at += data.len();
            }
            next += n;
        }
        assert_eq!(next, 18);

        // Two parts (as `/get` across segments): of each, the packets
        // within its video's span, at their distance from its first frame.
        let two = Progressive::from_scans(&[(&scan, 0..6), (&scan, 6..12)]).unwrap();
        let mut bytes = Vec::new();
        two.write_to(&mut bytes).unwrap();
        let (_, moov, _, _) = parse_progressive(&bytes);
        let stts: Vec<(u32, u32)> = moov.trak[1]
            .mdia
            .minf
            .stbl
            .stts
            .entries
            .iter()
            .map(|e| (e.sample_count, e.sample_delta))
            .collect();
        // Part 1: 9 packets (the 10th ends after its last frame); part 2
        // starts 200 ms in, its first packet 30 ms after its first frame.
        assert_eq!(stts, [(8, 960), (1, 2880), (8, 960)]);
    }

    /// Decodes a progressive MP4: ftyp, moov, then the mdat header and
    /// where its payload starts.
    fn parse_progressive(bytes: &[u8]) -> (Ftyp, Moov, Header, usize) {
        let mut rest = bytes;
        let ftyp = Ftyp::decode(&mut rest).unwrap();
        let moov = Moov::decode(&mut rest).unwrap();
        let before = rest.len();
        let mdat = Header::decode(&mut rest).unwrap();
        assert_eq!(mdat.kind, Mdat::KIND);
        assert_eq!(mdat.size, Some(rest.len()), "the mdat runs to the end");
        let payload_at = bytes.len() - before + (before - rest.len());
        (ftyp, moov, mdat, payload_at)
    }

    /// Checks the sample tables of `moov` against `want` (sample bytes,
    /// duration, key) and that the bytes at the chunk offsets of `bytes`
    /// are the samples; returns the samples per chunk.
    fn check_tables(bytes: &[u8], moov: &Moov, want: &[(Vec<u8>, u32, bool)]) -> Vec<u32> {
        assert!(moov.mvex.is_none());
        let duration: u64 = want.iter().map(|w| u64::from(w.1)).sum();
        let trak = &moov.trak[0];
        assert_eq!(moov.mvhd.duration, duration);
        assert_eq!(trak.tkhd.duration, duration);
        assert_eq!(trak.mdia.mdhd.duration, duration);
        assert_eq!(trak.mdia.mdhd.timescale, 90_000);
        let stbl = &trak.mdia.minf.stbl;

        let durations: Vec<u32> = stbl
            .stts
            .entries
            .iter()
            .flat_map(|e| std::iter::repeat_n(e.sample_delta, e.sample_count as usize))
            .collect();
        assert_eq!(durations, want.iter().map(|w| w.1).collect::<Vec<_>>());
        // Run-length: no two neighbouring entries with the same delta.
        assert!(stbl
            .stts
            .entries
            .windows(2)
            .all(|w| w[0].sample_delta != w[1].sample_delta));
        let keys: Vec<u32> = (1..)
            .zip(want)
            .filter(|(_, w)| w.2)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(stbl.stss.as_ref().expect("stss").entries, keys);
        let StszSamples::Different { sizes } = &stbl.stsz.samples else {
            panic!("stsz: {:?}", stbl.stsz);
        };
        assert_eq!(
            sizes,
            &want.iter().map(|w| w.0.len() as u32).collect::<Vec<_>>()
        );

        let offsets: Vec<u64> = match (&stbl.stco, &stbl.co64) {
            (Some(stco), None) => stco.entries.iter().map(|&o| u64::from(o)).collect(),
            other => panic!("want stco alone: {other:?}"),
        };
        // Expand stsc to samples per chunk.
        let entries = &stbl.stsc.entries;
        let mut per_chunk = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.sample_description_index, 1);
            let next = entries
                .get(i + 1)
                .map_or(offsets.len() as u32 + 1, |n| n.first_chunk);
            per_chunk.extend(std::iter::repeat_n(
                e.samples_per_chunk,
                (next - e.first_chunk) as usize,
            ));
        }
        assert_eq!(per_chunk.len(), offsets.len());
        let mut samples = want.iter();
        for (&at, &n) in offsets.iter().zip(&per_chunk) {
            let mut at = at as usize;
            for _ in 0..n {
                let (data, _, _) = samples.next().expect("more samples in chunks than in stsz");
                assert_eq!(&bytes[at..at + data.len()], &data[..]);
                at += data.len();
            }
        }
        assert!(samples.next().is_none(), "samples outside every chunk");
        per_chunk
    }

    #[test]
    fn progressive_parses_back() {
        let syn = synthetic(&track(), &[5, 4, 6]);
        let dir = TempDir::new("remux");
        let scan = scan_file(&dir, "rec.mp4", &syn.file);
        let p = Progressive::from_scans(&[(&scan, 0..15)]).unwrap();
        let mut out = Vec::new();
        p.write_to(&mut out).unwrap();
        assert_eq!(out.len() as u64, p.total_len());
        assert_eq!(&out[..p.header().len()], p.header());
        assert_eq!((p.frames(), p.duration()), (15, scan.duration()));

        let (ftyp, moov, mdat, payload_at) = parse_progressive(&out);
        assert_eq!(ftyp.major_brand, FourCC::new(b"isom"));
        assert_eq!(
            ftyp.compatible_brands,
            [b"isom", b"iso2", b"avc1", b"mp41"].map(FourCC::new)
        );
        assert_eq!(payload_at, p.header().len());
        assert_eq!(mdat.size, Some(out.len() - payload_at));
        let Codec::Avc1(avc1) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
            panic!("not avc1");
        };
        assert_eq!(avc1.avcc.sequence_parameter_sets, [HIGH_SPS]);
        assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));

        // One chunk, and one source range, per fragment.
        assert_eq!(check_tables(&out, &moov, &syn.samples), [5, 4, 6]);
        assert_eq!(p.files(), std::slice::from_ref(&scan.path));
        let ranges: Vec<(u64, u64)> = p.ranges().iter().map(|r| (r.offset, r.len)).collect();
        let want: Vec<(u64, u64)> = scan
            .fragments
            .iter()
            .map(|f| {
                let s = &scan.samples[f.first_sample..f.first_sample + f.samples];
                (s[0].offset, s.iter().map(|s| u64::from(s.size)).sum())
            })
            .collect();
        assert_eq!(ranges, want);
        assert_eq!(p.ranges()[0].at, payload_at as u64);
    }

    #[test]
    fn progressive_of_a_sub_range_and_of_several_files() {
        let syn = synthetic(&track(), &[5, 4, 6]);
        let dir = TempDir::new("remux");
        let scan = scan_file(&dir, "a.mp4", &syn.file);

        // From the keyframe at sample 5 to sample 12: the second fragment
        // and the start of the third.
        let p = Progressive::from_scans(&[(&scan, 5..12)]).unwrap();
        let out = p.read_range(0..p.total_len()).unwrap();
        let (_, moov, _, _) = parse_progressive(&out);
        assert_eq!(check_tables(&out, &moov, &syn.samples[5..12]), [4, 3]);

        let e = Progressive::from_scans(&[(&scan, 6..12)]).unwrap_err();
        let at = scan.samples[6].offset;
        assert!(
            matches!(e, RemuxError::NotKeyframe { offset, .. } if offset == at),
            "{e}"
        );
        assert!(
            e.to_string().ends_with(&format!(
                "a.mp4: the selection starts at the sample at byte {at}, which is not a keyframe"
            )),
            "{e}"
        );
        let e = Progressive::from_scans(&[(&scan, 0..16)]).unwrap_err();
        assert!(
            matches!(
                e,
                RemuxError::SampleRange {
                    end: 16,
                    frames: 15,
                    ..
                }
            ),
            "{e}"
        );
        assert!(matches!(
            Progressive::from_scans(&[(&scan, 3..3)]),
            Err(RemuxError::NoSamples)
        ));

        // Two files, one after the other.
        let syn_b = synthetic(&track(), &[3, 4]);
        let scan_b = scan_file(&dir, "b.mp4", &syn_b.file);
        let p = Progressive::from_scans(&[(&scan, 0..15), (&scan_b, 0..7)]).unwrap();
        let out = p.read_range(0..p.total_len()).unwrap();
        let (_, moov, _, _) = parse_progressive(&out);
        let want = [&syn.samples[..], &syn_b.samples[..]].concat();
        assert_eq!(check_tables(&out, &moov, &want), [5, 4, 6, 3, 4]);
        assert_eq!(p.files(), [scan.path.clone(), scan_b.path.clone()]);
        assert_eq!(
            p.ranges().iter().map(|r| r.file).collect::<Vec<_>>(),
            [0, 0, 0, 1, 1]
        );

        // A file of another track cannot follow.
        let wide = VideoTrack {
            width: 640,
            ..track()
        };
        let scan_c = scan_file(&dir, "c.mp4", &synthetic(&wide, &[2]).file);
        let e = Progressive::from_scans(&[(&scan, 0..15), (&scan_c, 0..2)]).unwrap_err();
        assert!(matches!(e, RemuxError::TrackMismatch { .. }), "{e}");
        assert!(
            e.to_string()
                .ends_with("different picture size 640x240 vs 320x240"),
            "{e}"
        );
    }

    #[test]
    fn byte_ranges_match_the_whole_file() {
        let syn = synthetic(&track(), &[5, 4, 6]);
        let dir = TempDir::new("remux");
        let scan = scan_file(&dir, "rec.mp4", &syn.file);
        let p = Progressive::from_scans(&[(&scan, 0..15)]).unwrap();
        let whole = p.read_range(0..p.total_len()).unwrap();
        let total = p.total_len();
        let head = p.header().len() as u64;
        let r1 = p.ranges()[1];
        let cases = [
            0..10,
            0..head,
            head - 5..head + 5,
            head..head + 1,
            r1.at - 3..r1.at + 3,
            r1.at + 2..r1.at + r1.len + 7,
            10..total - 10,
            total - 3..total,
            head + 4..head + 4,
            0..total,
        ];
        for r in cases {
            let got = p.read_range(r.clone()).unwrap();
            assert_eq!(got, &whole[r.start as usize..r.end as usize], "bytes {r:?}");
            let pieces: u64 = p
                .pieces(r.clone())
                .map(|piece| match piece {
                    Piece::Header(b) => b.len() as u64,
                    Piece::Source { len, .. } => {
                        assert!(len > 0, "empty piece in {r:?}");
                        len
                    }
                })
                .sum();
            assert_eq!(pieces, r.end - r.start, "pieces of {r:?}");
        }
        assert_eq!(
            p.pieces(r1.at + 1..r1.at + 4).collect::<Vec<_>>(),
            [Piece::Source {
                file: 0,
                path: &scan.path,
                offset: r1.offset + 1,
                len: 3,
            }]
        );
        assert!(matches!(
            p.read_range(0..total + 1),
            Err(RemuxError::Range { .. })
        ));

        // A source cut after the scan.
        std::fs::write(&scan.path, &syn.file[..syn.file.len() - 10]).unwrap();
        let e = p.read_range(0..total).unwrap_err();
        assert!(matches!(e, RemuxError::ShortSource { .. }), "{e}");
    }

    /// Past 4 GiB the chunk offsets need co64 and the mdat a 64-bit size.
    /// Nothing is read, so the samples need not exist.
    #[test]
    fn large_files_use_co64_and_a_64_bit_mdat() {
        let gib2 = 1u32 << 31;
        let samples: Vec<SampleRef> = (0..3u64)
            .map(|i| SampleRef {
                offset: i * (u64::from(gib2) + 100),
                size: gib2,
                duration: 3000,
                decode_time: i * 3000,
                key: i == 0,
            })
            .collect();
        let path = Path::new("/nonexistent/big.mp4");
        let p = Progressive::new(&track(), &[(path, &samples)]).unwrap();
        let head = p.header();
        let payload = 3 * u64::from(gib2);
        assert_eq!(p.total_len(), head.len() as u64 + payload);

        let mut rest = head;
        Ftyp::decode(&mut rest).unwrap();
        let moov = Moov::decode(&mut rest).unwrap();
        assert_eq!(rest.len(), 16, "a 64-bit mdat header");
        assert_eq!(&rest[..8], &[0, 0, 0, 1, b'm', b'd', b'a', b't']);
        let mdat = Header::decode(&mut rest).unwrap();
        assert_eq!(mdat.size, Some(payload as usize));

        let stbl = &moov.trak[0].mdia.minf.stbl;
        assert!(stbl.stco.is_none());
        let at = head.len() as u64;
        let g = u64::from(gib2);
        assert_eq!(
            stbl.co64.as_ref().expect("co64").entries,
            [at, at + g, at + 2 * g]
        );
        assert_eq!(stbl.stss.as_ref().unwrap().entries, [1]);
        assert_eq!(
            p.pieces(at + g + 5..at + g + 10).collect::<Vec<_>>(),
            [Piece::Source {
                file: 0,
                path,
                offset: g + 100 + 5,
                len: 5
            }]
        );
    }

    /// Whether ffmpeg and ffprobe can be run.
    fn have_ffmpeg() -> bool {
        ["ffmpeg", "ffprobe"]
            .iter()
            .all(|t| Command::new(t).arg("-version").output().is_ok())
    }

    /// ffprobe's codec, size, decoded frame count and duration of the
    /// video stream.
    fn probe(file: &Path) -> (String, u64, u64, u64, Option<f64>) {
        let out = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-count_frames",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=codec_name,width,height,nb_read_frames,duration",
                "-of",
                "json",
                file.to_str().unwrap(),
            ],
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let s = &json["streams"][0];
        let number = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
        (
            s["codec_name"].as_str().unwrap_or_default().to_string(),
            s["width"].as_u64().unwrap_or(0),
            s["height"].as_u64().unwrap_or(0),
            number(&s["nb_read_frames"]).map_or(0, |n| n as u64),
            number(&s["duration"]),
        )
    }

    /// `ffmpeg -f null`: decodes every frame; any complaint fails.
    fn decodes_cleanly(file: &Path) {
        let out = run(
            "ffmpeg",
            &[
                "-v",
                "error",
                "-i",
                file.to_str().unwrap(),
                "-f",
                "null",
                "-",
            ],
        );
        assert!(
            out.stderr.is_empty(),
            "ffmpeg complained about {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes init + fragments of `per_fragment` access units.
    fn write_fragmented(
        path: &Path,
        t: &VideoTrack,
        aus: &[(Vec<u8>, bool)],
        per_fragment: usize,
        mut decode_time: u64,
    ) {
        let mut file = init_segment(t).unwrap();
        for (i, chunk) in aus.chunks(per_fragment).enumerate() {
            let samples: Vec<Sample<'_>> = chunk
                .iter()
                .map(|(data, key)| Sample {
                    data,
                    duration: 3000,
                    key: *key,
                })
                .collect();
            file.extend(fragment(i as u32 + 1, decode_time, &samples).unwrap());
            decode_time += 3000 * chunk.len() as u64;
        }
        std::fs::write(path, file).unwrap();
    }

    /// Real peers: x264 through the ffmpeg CLI makes 60 frames at 30 fps
    /// (an IDR every 30, AUDs), we write them as fragmented MP4 (one file,
    /// and two files of 30), and ffprobe/ffmpeg read the fragmented file
    /// and the progressive MP4s made from it: codec, size, frame count,
    /// duration, no decoder complaint, the same pictures as the
    /// elementary stream.
    #[test]
    fn ffmpeg_reads_fragmented_and_progressive() {
        if !have_ffmpeg() {
            eprintln!("skipping ffmpeg_reads_fragmented_and_progressive: ffmpeg or ffprobe is not installed");
            return;
        }
        let h264 = run(
            "ffmpeg",
            &[
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=30",
                "-frames:v",
                "60",
                "-c:v",
                "libx264",
                "-x264-params",
                "bframes=0:keyint=30:min-keyint=30:scenecut=0:aud=1:repeat-headers=1",
                "-bsf:v",
                "h264_mp4toannexb",
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
        let aus: Vec<(Vec<u8>, bool)> = aus
            .iter()
            .map(|au| {
                let key = au.iter().any(|n| nal_type(n) == nal::IDR);
                (join_annex_b(au.iter().copied()), key)
            })
            .collect();
        assert_eq!(aus.len(), 60);
        let keys: Vec<usize> = (0..60).filter(|&i| aus[i].1).collect();
        assert_eq!(keys, [0, 30]);
        let t = VideoTrack::from_access_unit(&aus[0].0, 320, 240, 90_000).unwrap();

        let dir = TempDir::new("remux");
        let es = dir.path().join("stream.h264");
        std::fs::write(&es, &h264).unwrap();
        let es_md5s = frame_md5s(&es);
        assert_eq!(es_md5s.len(), 60);

        let whole = dir.path().join("whole.mp4");
        write_fragmented(&whole, &t, &aus, 10, 0);
        let (a, b) = (dir.path().join("a.mp4"), dir.path().join("b.mp4"));
        write_fragmented(&a, &t, &aus[..30], 10, 0);
        write_fragmented(&b, &t, &aus[30..], 10, 30 * 3000);

        // The fragmented file itself.
        let probed = probe(&whole);
        assert_eq!(
            (probed.0.as_str(), probed.1, probed.2, probed.3),
            ("h264", 320, 240, 60),
            "{}",
            whole.display()
        );
        decodes_cleanly(&whole);

        let scan_whole = scan(&whole).unwrap();
        assert_eq!((scan_whole.frames(), scan_whole.truncated), (60, 0));
        assert_eq!(scan_whole.duration(), 180_000);
        assert_eq!(scan_whole.track, t);
        let (scan_a, scan_b) = (scan(&a).unwrap(), scan(&b).unwrap());

        // Name, parts, the pictures expected, seconds.
        let cases = [
            ("whole", vec![(&scan_whole, 0..60)], &es_md5s[..], 2.0),
            (
                "two-files",
                vec![(&scan_a, 0..30), (&scan_b, 0..30)],
                &es_md5s[..],
                2.0,
            ),
            (
                "second-half",
                vec![(&scan_whole, 30..60)],
                &es_md5s[30..],
                1.0,
            ),
        ];
        for (name, parts, md5s, seconds) in cases {
            let p = Progressive::from_scans(&parts).unwrap();
            let path = dir.path().join(format!("progressive-{name}.mp4"));
            let mut file = std::io::BufWriter::new(File::create(&path).unwrap());
            p.write_to(&mut file).unwrap();
            file.flush().unwrap();
            drop(file);

            let (codec, width, height, frames, duration) = probe(&path);
            assert_eq!(
                (codec.as_str(), width, height, frames as usize),
                ("h264", 320, 240, md5s.len()),
                "{name}"
            );
            let duration = duration.expect("a stream duration");
            assert!((duration - seconds).abs() < 1e-3, "{name}: {duration} s");
            decodes_cleanly(&path);
            assert_eq!(
                frame_md5s(&path),
                md5s,
                "{name}: pictures differ from the elementary stream's"
            );
        }
    }
}
