//! One encoded bus as the recorder reads it: the pre-roll in memory and
//! the recordings being written.
//!
//! A tap is one thread with its own [`Reader`] of the bus (being a reader
//! wakes the encoder): it blocks for the next access unit, copies it once
//! out of the ring, puts it in the pre-roll buffer and gives it to every
//! active job. One wake-up per frame, no hand-off between threads (the
//! recorder's CPU is mostly wake-ups: docs/benchmarks.md). The writers'
//! threads do the disk.
//!
//! **Pre-roll**: the buffer holds whole GOPs, from the last keyframe at or
//! before `newest − preroll_max` to the newest frame. A buffered stream
//! (`--buffer`) keeps its tap, and so its encoder, running; any other tap
//! runs while it has recordings and keeps the same window meanwhile. A
//! recording asked for at `t` with pre-roll `p` starts at the last keyframe
//! captured at or before `t − p`; when the buffer does not reach back that
//! far, at its oldest keyframe; when it is empty (the encoder was idle),
//! at the next keyframe, asked for at once.
//!
//! **Jobs** cut fragments of whole frames of about `--fragment`; a frame's
//! duration is the next frame's pts minus its own (90 kHz), so a fragment
//! is closed when the frame after it arrives. A clip ends at the first
//! frame captured at or after its stop time (`requested + duration`, or a
//! `DELETE`); a continuous segment ends at the first keyframe after
//! `--segment`, where the next one begins. New parameter sets (an encoder
//! restarted with other settings) end a clip and start a new segment.
//!
//! **Sound**: when the camera of the bus (`cam0` of `cam0.h264.high`) has
//! a live Opus bus `cam0.opus` (docs/audio.md), the tap reads it too, on
//! the same thread and without waiting: after every wake-up for video it
//! takes the Opus packets that arrived (50 a second; the bus's ring holds
//! a second of them, and the tap wakes at least every [`TICK`]). No extra
//! wake-up. The packets go into a pre-roll ring of their own, back to the
//! oldest video frame of the buffer, and to every job. A job whose first
//! keyframe finds the Opus bus live writes an Opus track beside the video
//! ([`fmp4::init_segment_av`]); a camera without one records video only.
//!
//! Alignment is by capture time: a job's audio starts with the first
//! packet captured at or after its first keyframe, at the decode time
//! `(packet capture − keyframe capture)` on the 48 kHz clock, and
//! continues by the packets' pts (counted in samples, so a lost packet
//! leaves its gap). Should that timeline stray more than
//! [`fmp4::MAX_AUDIO_DRIFT`] from the capture clock (a sound card's crystal against the system's, a
//! restarted audio encoder, a video hole the file closed up), the next
//! packet is placed by its capture time again: a short gap, or a packet
//! dropped when the sound ran ahead. Each fragment carries the packets
//! captured before the capture time of the frame that closes it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use framebus::{PixelFormat, ReadError, Reader, ReaderOptions};
use parking_lot::Mutex;

use super::recording::Entry;
use super::writer::{Piece, WriteCounters, Writer};
use crate::feed::{to_90k, Au, CLOCK_RATE};
use crate::fmp4::{
    self, AudioRun, AudioSample, AudioTimeline, AudioTrack, Sample, VideoTrack, OPUS_TIMESCALE,
};

/// Opus packets a job holds before its first keyframe or between
/// fragments (60 s at 20 ms): a bound, never reached while frames flow.
const MAX_PENDING_AUDIO: usize = 3000;

/// How often a tap looks for its camera's Opus bus while it has none.
const AUDIO_RETRY_NS: u64 = 2_000_000_000;

/// One Opus packet of the camera's `.opus` bus, copied once out of the
/// ring.
#[derive(Debug)]
pub struct AudioPacket {
    /// The packet.
    pub data: Arc<[u8]>,
    /// Presentation time in 48 kHz ticks (the bus's pts).
    pub pts48: u64,
    /// Its duration in 48 kHz ticks (the bus's chunk).
    pub duration: u32,
    /// Capture time of its first sample (CLOCK_MONOTONIC ns).
    pub mono_ns: u64,
}

/// How often a tap with nothing to read looks at its jobs' stop times
/// (and retries a bus that is not there).
const TICK: Duration = Duration::from_millis(200);

/// A recording to write, handed to a tap.
#[derive(Debug)]
pub struct JobSpec {
    /// Its entry (record, stop time, failure flag).
    pub entry: Arc<Entry>,
    /// Start at the last keyframe captured at or before this (monotonic
    /// ns).
    pub from_mono: u64,
    /// The request's instant (monotonic ns), for the pre-roll figure.
    pub requested_mono: u64,
    /// A segment of a continuous recording: cut after this.
    pub segment: Option<Duration>,
}

/// Counters of a tap, for `/metrics`.
#[derive(Debug, Default)]
pub struct TapCounters {
    /// Bytes in the pre-roll buffer (picture and sound).
    pub preroll_bytes: AtomicU64,
    /// Media in the pre-roll buffer (ns).
    pub preroll_ns: AtomicU64,
    /// Access units lost to a lag (the tap fell behind the feed).
    pub lost: AtomicU64,
}

/// What a segment job asks of its tap when it ends.
enum Next {
    Stay,
    End(Option<String>),
    /// End here and begin the next segment with this access unit.
    Split,
}

struct Job {
    spec: JobSpec,
    writer: Writer,
    track: Option<VideoTrack>,
    pending: Vec<Arc<Au>>,
    seq: u32,
    decode_time: u64,
    segment_start_mono: u64,
    /// Frames were lost: wait for a keyframe before taking any.
    resync: bool,
    /// The file's Opus track (set at the first keyframe, if the camera's
    /// Opus bus was live then).
    audio_track: Option<AudioTrack>,
    /// Opus packets not written yet, in order.
    audio_pending: VecDeque<Arc<AudioPacket>>,
    /// Where the packets go on the file's audio timeline.
    audio_timeline: AudioTimeline,
}

/// What every job of a tap needs to take a frame.
struct Ctx<'a> {
    size: (u32, u32),
    fragment_ns: u64,
    nominal: u32,
    /// The camera's Opus track while its bus is live.
    audio: Option<&'a AudioTrack>,
}

/// `ticks` of a `from` Hz clock on a `to` Hz clock, rounded down.
fn rescale(ticks: u64, from: u64, to: u64) -> u64 {
    (u128::from(ticks) * u128::from(to) / u128::from(from.max(1))) as u64
}

impl Job {
    fn new(spec: JobSpec, counters: &Arc<WriteCounters>) -> Job {
        let writer = Writer::start(Arc::clone(&spec.entry), Arc::clone(counters));
        Job {
            spec,
            writer,
            track: None,
            pending: Vec::new(),
            seq: 0,
            decode_time: 0,
            segment_start_mono: 0,
            resync: false,
            audio_track: None,
            audio_pending: VecDeque::new(),
            audio_timeline: AudioTimeline::default(),
        }
    }

    /// Takes an Opus packet (written with the fragment its capture time
    /// falls in). A file begun without sound ignores it.
    fn push_audio(&mut self, p: &Arc<AudioPacket>) {
        if self.track.is_some() && self.audio_track.is_none() {
            return;
        }
        if self.audio_pending.len() >= MAX_PENDING_AUDIO {
            self.audio_pending.pop_front();
        }
        self.audio_pending.push_back(Arc::clone(p));
    }

    /// The Opus packets captured before `end_mono`, for the fragment
    /// whose first frame is `v0_mono` at decode time `self.decode_time`
    /// (90 kHz): each with its decode time (48 kHz), placed by
    /// [`AudioTimeline`].
    fn take_audio(&mut self, v0_mono: u64, end_mono: u64) -> Vec<(u64, Arc<AudioPacket>)> {
        if self.audio_track.is_none() {
            return Vec::new();
        }
        self.audio_timeline.take_before(
            &mut self.audio_pending,
            (self.decode_time, CLOCK_RATE as u32),
            v0_mono,
            end_mono,
            |p| (p.pts48, p.mono_ns, p.duration),
        )
    }

    /// Writes the pending frames, the last one's duration from `next`'s
    /// pts (None: a nominal frame), with the Opus packets captured before
    /// `next` (or the end of the last frame).
    fn flush(&mut self, next: Option<&Au>, nominal: u32) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let next_pts90 = next.map(|a| a.pts90);
        let v0_mono = self.pending[0].mono_ns;
        let end_mono = next.map_or_else(
            || {
                let last = self.pending.last().expect("not empty");
                last.mono_ns + rescale(u64::from(nominal), CLOCK_RATE, 1_000_000_000)
            },
            |a| a.mono_ns,
        );
        let audio = self.take_audio(v0_mono, end_mono);
        let n = self.pending.len();
        let mut samples = Vec::with_capacity(n);
        let mut total: u64 = 0;
        for i in 0..n {
            let au = &self.pending[i];
            let next = self.pending.get(i + 1).map(|a| a.pts90).or(next_pts90);
            let d = next
                .map(|np| np.saturating_sub(au.pts90))
                .filter(|&d| d > 0 && d <= 5 * CLOCK_RATE)
                .map_or(nominal, |d| d as u32);
            total += u64::from(d);
            samples.push(Sample {
                data: &au.data,
                duration: d,
                key: au.key,
            });
        }
        let audio_samples: Vec<AudioSample<'_>> = audio
            .iter()
            .enumerate()
            .map(|(i, (dt, p))| AudioSample {
                data: &p.data,
                // Up to the next packet (a lost one's gap included).
                duration: audio.get(i + 1).map_or(p.duration, |(n, _)| {
                    (n - dt).min(u64::from(u32::MAX)) as u32
                }),
            })
            .collect();
        let run = audio.first().map(|(dt, _)| AudioRun {
            base_decode_time: *dt,
            samples: &audio_samples,
        });
        self.seq += 1;
        let bytes = match fmp4::fragment_av(self.seq, self.decode_time, &samples, run) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "a fragment could not be made; its frames are skipped");
                self.pending.clear();
                return true;
            }
        };
        self.decode_time += total;
        self.pending.clear();
        self.writer.send(Piece::Fragment {
            bytes,
            frames: n as u64,
            seconds: total as f64 / CLOCK_RATE as f64,
        })
    }

    /// Takes one access unit.
    fn push(&mut self, au: &Arc<Au>, ctx: &Ctx<'_>) -> Next {
        let (info, fragment_ns, nominal) = (ctx.size, ctx.fragment_ns, ctx.nominal);
        if self.track.is_none() && self.spec.entry.stop_at().is_some_and(|s| au.mono_ns >= s) {
            return Next::End(Some("stopped before its first keyframe".into()));
        }
        if self.resync {
            if !au.key {
                return Next::Stay;
            }
            self.resync = false;
            // The file closes the hole up: the sound starts again with the
            // picture.
            self.audio_timeline.restart();
        }
        if self.track.is_none() {
            if !au.key {
                return Next::Stay;
            }
            // Without the picture size (the feed has not read the bus
            // header yet) the init segment would say 0x0: the next
            // keyframe then.
            let Some(track) =
                VideoTrack::from_access_unit(&au.data, info.0, info.1, CLOCK_RATE as u32)
                    .filter(|t| t.width > 0 && t.height > 0)
            else {
                return Next::Stay;
            };
            self.audio_track = ctx.audio.cloned();
            if self.audio_track.is_none() {
                self.audio_pending.clear();
            }
            let init = match fmp4::init_segment_av(&track, self.audio_track.as_ref()) {
                Ok(b) => b,
                Err(e) => {
                    return Next::End(Some(format!(
                        "the stream's parameters cannot go into MP4: {e}"
                    )))
                }
            };
            let preroll_s = (self.spec.requested_mono as f64 - au.mono_ns as f64) / 1e9;
            let ok = self.writer.send(Piece::Init {
                bytes: init,
                width: track.width,
                height: track.height,
                codec: match &self.audio_track {
                    Some(a) => format!("{},{}", track.codec_string(), a.codec_string()),
                    None => track.codec_string(),
                },
                first_realtime_ns: au.realtime_ns,
                preroll_s,
            });
            self.track = Some(track);
            self.segment_start_mono = au.mono_ns;
            self.pending.push(Arc::clone(au));
            return if ok {
                Next::Stay
            } else {
                Next::End(Some("the disk cannot keep up".into()))
            };
        }
        if let Some(stop) = self.spec.entry.stop_at() {
            if au.mono_ns >= stop {
                self.flush(Some(au), nominal);
                return Next::End(None);
            }
        }
        if au.key {
            // New parameter sets, not a new idea of the size, end the file.
            let same = VideoTrack::from_access_unit(&au.data, info.0, info.1, CLOCK_RATE as u32)
                .zip(self.track.as_ref())
                .is_none_or(|(t, cur)| t.sps == cur.sps && t.pps == cur.pps);
            if !same {
                self.flush(None, nominal);
                return match self.spec.segment {
                    Some(_) => Next::Split,
                    None => Next::End(Some(
                        "the stream's parameters changed (encoder restarted with other settings)"
                            .into(),
                    )),
                };
            }
            if let Some(len) = self.spec.segment {
                if au.mono_ns.saturating_sub(self.segment_start_mono) >= len.as_nanos() as u64 {
                    self.flush(Some(au), nominal);
                    return Next::Split;
                }
            }
        }
        let first = self.pending.first().map_or(au.mono_ns, |a| a.mono_ns);
        if au.mono_ns.saturating_sub(first) >= fragment_ns && !self.flush(Some(au), nominal) {
            return Next::End(Some(
                "the disk cannot keep up: more than 64 MiB queued".into(),
            ));
        }
        self.pending.push(Arc::clone(au));
        Next::Stay
    }

    /// Ends the job: the rest written, then the finish.
    fn end(mut self, note: Option<String>, nominal: u32) {
        self.flush(None, nominal);
        self.writer.send(Piece::Finish(note));
    }
}

/// Makes the next segment of a continuous recording (the recorder's
/// store); None when it cannot (the error is logged and counted there).
pub type SegmentMaker = dyn Fn(&Au) -> Option<JobSpec> + Send + Sync;

/// One encoded bus being recorded or buffered.
pub struct Tap {
    bus: String,
    shm_dir: Option<std::path::PathBuf>,
    preroll_max: Duration,
    fragment: Duration,
    buffered: bool,
    continuous: Option<(Duration, Arc<SegmentMaker>)>,
    inbox: Mutex<Vec<JobSpec>>,
    /// Counters for `/metrics`.
    pub counters: TapCounters,
    write_counters: Arc<WriteCounters>,
    jobs: AtomicU64,
    running: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

/// The camera's Opus bus as the tap's thread reads it: polled without
/// waiting after each wake-up for video.
struct AudioIn {
    /// `cam0.opus`, or None for a bus whose name has no camera.
    bus: Option<String>,
    shm_dir: Option<std::path::PathBuf>,
    reader: Option<Reader>,
    /// The Opus track, while the bus is live.
    track: Option<AudioTrack>,
    time_base: (u32, u32),
    duration: u32,
    /// When to look for the bus again (monotonic ns).
    next_try: u64,
}

impl AudioIn {
    fn new(video_bus: &str, shm_dir: Option<std::path::PathBuf>) -> AudioIn {
        AudioIn {
            bus: framebus::contract::encoder::split(video_bus)
                .map(|(cam, _)| framebus::contract::audio::opus_bus(cam)),
            shm_dir,
            reader: None,
            track: None,
            time_base: (1, OPUS_TIMESCALE),
            duration: 960,
            next_try: 0,
        }
    }

    /// Attaches the Opus bus if it is live (a producer, the Opus format,
    /// an `OpusHead`); tried every [`AUDIO_RETRY_NS`].
    fn attach(&mut self, now: u64) {
        let Some(bus) = &self.bus else {
            return;
        };
        if self.reader.is_some() || now < self.next_try {
            return;
        }
        self.next_try = now + AUDIO_RETRY_NS;
        let live = framebus::stat(bus, self.shm_dir.as_deref())
            .is_ok_and(|i| i.producer_alive && i.format == PixelFormat::Opus.name());
        if !live {
            return;
        }
        let opts = ReaderOptions {
            wait: None,
            shm_dir: self.shm_dir.clone(),
        };
        let Ok(mut reader) = Reader::attach(bus, opts) else {
            return;
        };
        let spec = *reader.spec();
        let codec = match reader.codec() {
            Ok(Some(c)) => c,
            _ => return,
        };
        let Some(track) = AudioTrack::from_opus_head(&codec.config) else {
            tracing::warn!(bus = %bus, "the Opus bus has no valid OpusHead: recording without sound");
            return;
        };
        self.time_base = if codec.time_base.0 > 0 && codec.time_base.1 > 0 {
            codec.time_base
        } else {
            (1, spec.sample_rate().max(1))
        };
        self.duration = rescale(
            u64::from(spec.chunk_samples()),
            u64::from(spec.sample_rate().max(1)),
            u64::from(OPUS_TIMESCALE),
        )
        .clamp(1, u64::from(OPUS_TIMESCALE)) as u32;
        tracing::info!(bus = %bus, channels = track.channels(), "recorder: reading the camera's sound");
        self.track = Some(track);
        self.reader = Some(reader);
    }

    /// The packets that arrived since the last call, without waiting.
    fn poll(&mut self, out: &mut Vec<Arc<AudioPacket>>) {
        self.attach(framebus::monotonic_ns());
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        loop {
            match reader.next_encoded(Some(Duration::ZERO)) {
                Ok(f) => {
                    let (num, den) = self.time_base;
                    out.push(Arc::new(AudioPacket {
                        data: Arc::from(&f[..]),
                        pts48: (u128::from(f.pts()) * u128::from(num) * u128::from(OPUS_TIMESCALE)
                            / u128::from(den)) as u64,
                        duration: self.duration,
                        mono_ns: f.mono_ns(),
                    }));
                }
                Err(ReadError::Timeout { .. }) => return,
                Err(e) => {
                    // The audio encoder is gone: later recordings are
                    // video only until it is back.
                    tracing::info!(bus = ?self.bus, error = %e, "the camera's sound stopped");
                    self.reader = None;
                    self.track = None;
                    return;
                }
            }
        }
    }
}

/// What the tap's thread knows of its bus while attached.
struct Attached {
    reader: Reader,
    size: (u32, u32),
    nominal: u32,
    time_base: (u32, u32),
    first: bool,
}

impl Tap {
    /// A tap on encoded bus `bus` (not started).
    pub fn new(
        bus: String,
        shm_dir: Option<std::path::PathBuf>,
        preroll_max: Duration,
        fragment: Duration,
        buffered: bool,
        continuous: Option<(Duration, Arc<SegmentMaker>)>,
        write_counters: Arc<WriteCounters>,
    ) -> Arc<Tap> {
        Arc::new(Tap {
            bus,
            shm_dir,
            preroll_max,
            fragment,
            buffered,
            continuous,
            inbox: Mutex::new(Vec::new()),
            counters: TapCounters::default(),
            write_counters,
            jobs: AtomicU64::new(0),
            running: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The encoded bus.
    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// Recordings being written.
    pub fn active_jobs(&self) -> u64 {
        self.jobs.load(Ordering::Relaxed)
    }

    /// Whether the tap keeps its stream buffered.
    pub fn is_buffered(&self) -> bool {
        self.buffered || self.continuous.is_some()
    }

    /// Adds a recording (taken at the next frame, or within [`TICK`]);
    /// starts the tap's thread if it is not running.
    pub fn add(self: &Arc<Tap>, job: JobSpec) {
        self.inbox.lock().push(job);
        self.ensure_running();
    }

    /// Starts the thread unless it runs.
    pub fn ensure_running(self: &Arc<Tap>) {
        if !self.running.swap(true, Ordering::AcqRel) {
            let me = Arc::clone(self);
            std::thread::Builder::new()
                .name(format!("tap {}", self.bus).chars().take(15).collect())
                .spawn(move || me.run())
                .expect("spawn a recorder tap thread");
        }
    }

    /// Attaches the bus; None (logged once per absence) if it is not
    /// there or not H.264.
    fn attach(&self, logged: &mut bool) -> Option<Attached> {
        let opts = ReaderOptions {
            wait: None,
            shm_dir: self.shm_dir.clone(),
        };
        let mut reader = match Reader::attach(&self.bus, opts) {
            Ok(r) => r,
            Err(e) => {
                if !std::mem::replace(logged, true) {
                    tracing::info!(bus = %self.bus, error = %e, "waiting for the stream to record");
                }
                return None;
            }
        };
        let spec = *reader.spec();
        if spec.format != PixelFormat::H264 {
            if !std::mem::replace(logged, true) {
                tracing::warn!(bus = %self.bus, format = %spec.format, "not an H.264 bus: nothing to record");
            }
            return None;
        }
        *logged = false;
        let time_base = match reader.codec() {
            Ok(Some(c)) if c.time_base.0 > 0 && c.time_base.1 > 0 => c.time_base,
            _ => (1, CLOCK_RATE as u32),
        };
        let fps = spec.fps.as_f64();
        tracing::info!(bus = %self.bus, "recorder: reading the encoded bus");
        Some(Attached {
            reader,
            size: (spec.width, spec.height),
            nominal: if fps > 0.0 {
                (CLOCK_RATE as f64 / fps).round() as u32
            } else {
                3000
            },
            time_base,
            first: true,
        })
    }

    fn run(self: Arc<Tap>) {
        let mut bus: Option<Attached> = None;
        let mut logged = false;
        let mut want_key = false;
        let mut buf: VecDeque<Arc<Au>> = VecDeque::new();
        let mut bytes: u64 = 0;
        let mut jobs: Vec<Job> = Vec::new();
        let fragment_ns = self.fragment.as_nanos() as u64;
        let max_ns = self.preroll_max.as_nanos() as u64;
        let mut next_segment_try = 0u64;
        let mut audio = AudioIn::new(&self.bus, self.shm_dir.clone());
        let mut abuf = AudioRing::default();
        let mut arrived: Vec<Arc<AudioPacket>> = Vec::new();
        loop {
            let (size, nominal) = bus.as_ref().map_or(((0, 0), 3000), |b| (b.size, b.nominal));
            let ctx = Ctx {
                size,
                fragment_ns,
                nominal,
                audio: audio.track.as_ref(),
            };
            // New jobs: replay the buffer from their start.
            let new: Vec<JobSpec> = std::mem::take(&mut *self.inbox.lock());
            for spec in new {
                let start = buf
                    .iter()
                    .rposition(|a| a.key && a.mono_ns <= spec.from_mono)
                    .or_else(|| buf.iter().position(|a| a.key));
                let mut job = Job::new(spec, &self.write_counters);
                for p in &abuf.packets {
                    job.push_audio(p);
                }
                let mut ended = None;
                match start {
                    Some(i) => {
                        for au in buf.iter().skip(i) {
                            match job.push(au, &ctx) {
                                Next::Stay => {}
                                Next::End(note) => ended = Some(note),
                                Next::Split => ended = Some(None),
                            }
                            if ended.is_some() {
                                break;
                            }
                        }
                    }
                    None => want_key = true,
                }
                match ended {
                    Some(note) => job.end(note, nominal),
                    None => jobs.push(job),
                }
            }
            self.jobs.store(jobs.len() as u64, Ordering::Relaxed);
            if jobs.is_empty() && !self.is_buffered() {
                // Nothing to do: stop (a job added meanwhile restarts us).
                self.running.store(false, Ordering::Release);
                if self.inbox.lock().is_empty() || self.running.swap(true, Ordering::AcqRel) {
                    break;
                }
                continue;
            }
            if bus.is_none() {
                bus = self.attach(&mut logged);
                if bus.is_none() {
                    std::thread::sleep(TICK);
                    end_stopped(&mut jobs, nominal);
                    continue;
                }
            }
            let b = bus.as_mut().expect("attached above");
            if std::mem::take(&mut want_key) {
                if let Err(e) = b.reader.request_keyframe() {
                    tracing::debug!(bus = %self.bus, error = %e, "keyframe request");
                }
            }
            let frame = match b.reader.next_encoded(Some(TICK)) {
                Ok(f) => f,
                Err(ReadError::Timeout { .. }) => {
                    let oldest = buf.front().map(|a| a.mono_ns);
                    poll_audio(&mut audio, &mut arrived, &mut abuf, &mut jobs, oldest);
                    end_stopped(&mut jobs, nominal);
                    continue;
                }
                Err(e) => {
                    // The encoder is gone (or the segment went bad): write
                    // what is pending; each recording goes on at the next
                    // keyframe of the bus when it is back.
                    tracing::warn!(bus = %self.bus, error = %e, "the encoded bus stopped; waiting for it");
                    bus = None;
                    buf.clear();
                    bytes = 0;
                    for j in &mut jobs {
                        j.flush(None, nominal);
                        j.resync = true;
                    }
                    end_stopped(&mut jobs, nominal);
                    std::thread::sleep(TICK);
                    continue;
                }
            };
            let skipped = if std::mem::take(&mut b.first) {
                0
            } else {
                frame.skipped()
            };
            let au = Arc::new(Au {
                data: Arc::from(&frame[..]),
                key: frame.is_keyframe(),
                pts90: to_90k(frame.pts(), b.time_base),
                mono_ns: frame.mono_ns(),
                realtime_ns: frame.realtime_ns(),
            });
            drop(frame);
            if skipped > 0 {
                // The ring overwrote frames before we read them: a hole.
                // Every recording restarts at the next keyframe (what is
                // pending is written first).
                self.counters.lost.fetch_add(skipped, Ordering::Relaxed);
                tracing::warn!(bus = %self.bus, lost = skipped, "the recorder fell behind; skipping to a keyframe");
                buf.clear();
                bytes = 0;
                for j in &mut jobs {
                    j.flush(None, nominal);
                    j.resync = true;
                }
                want_key = !au.key;
            }
            let now = au.mono_ns;
            // The pre-roll window: whole GOPs back to newest − max.
            bytes += au.data.len() as u64;
            buf.push_back(Arc::clone(&au));
            let horizon = au.mono_ns.saturating_sub(max_ns);
            while let Some(k) = buf.iter().skip(1).position(|a| a.key).map(|k| k + 1) {
                if buf[k].mono_ns > horizon {
                    break;
                }
                for a in buf.drain(..k) {
                    bytes -= a.data.len() as u64;
                }
            }
            if buf.len() > 1 && !buf[0].key && au.key {
                // No keyframe at the front (a start or a hole): drop to it.
                while buf.len() > 1 && !buf[0].key {
                    bytes -= buf.pop_front().map_or(0, |a| a.data.len() as u64);
                }
            }

            self.counters.preroll_ns.store(
                buf.back().map_or(0, |b| b.mono_ns) - buf.front().map_or(0, |f| f.mono_ns),
                Ordering::Relaxed,
            );
            let oldest = buf.front().map(|a| a.mono_ns);
            poll_audio(&mut audio, &mut arrived, &mut abuf, &mut jobs, oldest);
            // Picture and sound.
            self.counters
                .preroll_bytes
                .store(bytes + abuf.bytes, Ordering::Relaxed);
            let ctx = Ctx {
                size,
                fragment_ns,
                nominal,
                audio: audio.track.as_ref(),
            };
            // Every job takes it.
            let mut i = 0;
            while i < jobs.len() {
                let next = if jobs[i].spec.entry.has_failed() {
                    Next::End(None)
                } else {
                    jobs[i].push(&au, &ctx)
                };
                match next {
                    Next::Stay => i += 1,
                    Next::End(note) => {
                        jobs.swap_remove(i).end(note, nominal);
                    }
                    Next::Split => {
                        // The next segment starts below with this keyframe.
                        jobs.swap_remove(i).end(None, nominal);
                    }
                }
            }
            // A continuous recording always has a segment.
            if let Some((len, make)) = &self.continuous {
                let has = jobs.iter().any(|j| j.spec.segment.is_some());
                if !has && au.key && now >= next_segment_try {
                    match make(&au) {
                        Some(mut spec) => {
                            spec.segment = Some(*len);
                            let mut j = Job::new(spec, &self.write_counters);
                            j.push(&au, &ctx);
                            jobs.push(j);
                        }
                        // Retried at a keyframe 5 s later (disk full...).
                        None => next_segment_try = now + 5_000_000_000,
                    }
                }
            }
            self.jobs.store(jobs.len() as u64, Ordering::Relaxed);
        }
        self.counters.preroll_bytes.store(0, Ordering::Relaxed);
        self.counters.preroll_ns.store(0, Ordering::Relaxed);
        tracing::info!(bus = %self.bus, "recorder: stopped reading (no recording)");
    }
}

/// Takes the Opus packets that arrived (without waiting) into the
/// pre-roll ring and every job; the ring reaches back to `oldest_video`,
/// the oldest frame of the video buffer (a second without one).
fn poll_audio(
    audio: &mut AudioIn,
    arrived: &mut Vec<Arc<AudioPacket>>,
    abuf: &mut AudioRing,
    jobs: &mut [Job],
    oldest_video: Option<u64>,
) {
    audio.poll(arrived);
    for p in arrived.drain(..) {
        for j in jobs.iter_mut() {
            j.push_audio(&p);
        }
        abuf.bytes += p.data.len() as u64;
        abuf.packets.push_back(p);
    }
    let newest = abuf.packets.back().map_or(0, |p| p.mono_ns);
    let horizon = oldest_video.unwrap_or_else(|| newest.saturating_sub(1_000_000_000));
    while abuf.packets.front().is_some_and(|p| p.mono_ns < horizon) {
        let p = abuf.packets.pop_front().expect("checked above");
        abuf.bytes -= p.data.len() as u64;
    }
}

/// The Opus packets of the pre-roll and their bytes.
#[derive(Default)]
struct AudioRing {
    packets: VecDeque<Arc<AudioPacket>>,
    bytes: u64,
}

/// Ends the jobs whose stop time passed half a second ago without a frame
/// (the stream stalled), and those whose file failed.
fn end_stopped(jobs: &mut Vec<Job>, nominal: u32) {
    let now = framebus::monotonic_ns();
    let mut i = 0;
    while i < jobs.len() {
        if jobs[i]
            .spec
            .entry
            .stop_at()
            .is_some_and(|s| now >= s + 500_000_000)
            || jobs[i].spec.entry.has_failed()
        {
            let j = jobs.swap_remove(i);
            let note = j
                .track
                .is_none()
                .then(|| "no frame arrived before the stop".to_string());
            j.end(note, nominal);
        } else {
            i += 1;
        }
    }
}
