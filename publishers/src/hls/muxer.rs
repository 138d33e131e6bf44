//! One muxer per encoded bus: access units from the shared
//! [`Feed`](crate::feed::Feed) become CMAF parts (~200 ms, one `moof` +
//! `mdat` each) and segments (one GOP: a segment is its parts back to
//! back), kept in memory for the playlist window and a window after it.
//!
//! # Cutting
//! An access unit's duration is only known when the next one arrives (its
//! `pts` minus this one's), so the newest access unit waits as `pending`
//! and the part it belongs to closes one frame later than it could; in
//! exchange every sample has its true duration and the timeline has no
//! holes. A part closes when its duration reaches the part target (a whole
//! number of frames, [`part_target_ticks`]) or when a keyframe arrives; a
//! keyframe also closes the segment and opens the next, so every segment
//! and every first part of a segment starts with an IDR.
//!
//! # Timeline
//! Decode times are the bus's presentation times in 90 kHz ticks: the
//! encoder's grid on CLOCK_MONOTONIC, the same capture clock for every
//! profile of a camera, so variants line up for players that switch.
//! `EXT-X-PROGRAM-DATE-TIME` is each segment's first frame's capture time
//! on CLOCK_REALTIME (the same instant the time code shows).
//!
//! # Names that a cache can keep forever
//! Every URI carries the muxer's epoch (its start time in ms, base 36):
//! `{epoch}/init{n}.mp4`, `{epoch}/s{msn}.m4s`, `{epoch}/p{n}.m4s`. Part
//! numbers count parts across segments, so the preload hint (`p{n+1}`) is
//! right whether or not the next part starts a new segment. Media sequence
//! numbers start at the epoch's tenth of a second, so a restarted muxer's
//! blocking-reload URLs (`?_HLS_msn=N`) do not collide with answers a
//! cache kept from the previous one.
//!
//! # Sound
//! When the camera has a live Opus bus (`cam0.opus`, docs/audio.md) as
//! the muxer starts, the muxer joins its [`AudioFeed`] (the reader the
//! WHEP endpoint's sessions share, in a registry of HLS's own) and every
//! part carries the Opus packets captured during its frames in a second
//! `traf` (track 2): audio and video muxed in the same parts, one
//! playlist ([`fmp4::init_segment_av`], [`fmp4::fragment_av`]). Decode
//! times (48 kHz) come from [`AudioTimeline`]: by capture time against
//! the part's first frame, then by the packets' RTP time; a discontinuity
//! places the next packet by capture time again. Whether a stream has
//! sound is fixed for the muxer's life (its init segment says so); a
//! sound that stops leaves the parts without packets.
//!
//! # Waiting
//! [`Muxer::changed`] is a `watch` bumped on every part; blocking playlist
//! reloads and preload-hinted parts wait on it with a deadline.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

use super::playlist::{self, MediaPlaylist};
use crate::feed::{Au, Feed, FeedError, FeedInfo, FeedSlot, CLOCK_RATE};
use crate::fmp4::{self, AudioRun, AudioSample, AudioTimeline, AudioTrack, Sample, VideoTrack};
use crate::webrtc::audio::{AudioFeed, AudioTicket, OpusPacket};

/// Opus packets held for the part being filled (10 s of 20 ms packets):
/// a bound, never reached while frames flow.
const MAX_PENDING_AUDIO: usize = 500;
/// An Opus packet's duration when the next one is not known (20 ms).
const PACKET_TICKS: u32 = 960;

/// Complete segments kept beyond the playlist window, besides as many as
/// the window holds: RFC 8216bis 6.2.2 keeps a removed segment available
/// for its duration plus the playlist's (one window and one segment), and
/// a cache may hand out a blocking-reload answer up to six target
/// durations old (`server.rs`), whose oldest segment is then six segments
/// further back.
const EXTRA_SEGMENTS: usize = 7;
/// The first playlist waits this long for the first part.
pub const FIRST_PART_WAIT: Duration = Duration::from_secs(10);

/// What a muxer was started with.
#[derive(Clone, Debug)]
pub struct MuxerConfig {
    /// Part target.
    pub part_target: Duration,
    /// Complete segments listed.
    pub segments: usize,
}

/// `PART-HOLD-BACK` in part targets (RFC 8216bis: at least three): how
/// far behind the live edge a player starts, and how much media a new
/// stream holds before its first plain playlist is served (`server.rs`).
pub const PART_HOLD_BACK_PARTS: f64 = 3.0;

/// A complete part.
#[derive(Debug)]
pub struct PartData {
    /// `moof` + `mdat`.
    pub bytes: Bytes,
    /// Its segment.
    pub msn: u64,
    /// Index in its segment.
    pub index: u32,
    /// 90 kHz ticks.
    pub ticks: u64,
    /// Starts with an IDR.
    pub independent: bool,
}

#[derive(Debug)]
struct SegmentData {
    msn: u64,
    /// Global numbers of its parts: `first_part..first_part + parts`.
    first_part: u64,
    parts: u64,
    ticks: u64,
    pdt_ms: i64,
    discontinuity: bool,
    map: u32,
    complete: bool,
}

/// What a rendered playlist depends on: next part, next segment, complete
/// segments, first kept part, target duration.
type RenderKey = (u64, u64, usize, u64, u32);

/// Samples of the part being filled.
#[derive(Debug, Default)]
struct PartFill {
    samples: Vec<(Arc<Au>, u32)>,
    ticks: u64,
}

#[derive(Debug)]
struct State {
    epoch: String,
    /// Init segments by number (the current one last).
    maps: VecDeque<(u32, Bytes, VideoTrack)>,
    /// Segments, oldest first; the last may be open (`complete == false`).
    segments: VecDeque<SegmentData>,
    /// Parts of the kept segments, by global number from `first_part`.
    parts: VecDeque<Arc<PartData>>,
    first_part: u64,
    next_part: u64,
    next_msn: u64,
    fill: PartFill,
    pending: Option<Arc<Au>>,
    /// Skip until a keyframe (start, after a lag).
    need_key: bool,
    /// The next segment follows a discontinuity.
    discontinuity_next: bool,
    /// Discontinuities before the first kept segment.
    discontinuity_seq: u64,
    target_duration: u32,
    /// The target duration was set by a complete segment.
    td_fixed: bool,
    ended: Option<String>,
    /// Opus packets not yet in a part, in order.
    audio_pending: VecDeque<Arc<OpusPacket>>,
    /// Where they go on the audio track's timeline.
    audio_timeline: AudioTimeline,
}

/// Counters of one muxer (`/metrics`).
#[derive(Debug, Default)]
pub struct MuxerCounters {
    /// Parts written.
    pub parts: AtomicU64,
    /// Segments completed.
    pub segments: AtomicU64,
    /// Bytes of parts written.
    pub bytes: AtomicU64,
    /// Times the muxer lost access units (it fell behind the feed) and
    /// restarted at a keyframe.
    pub lags: AtomicU64,
}

/// One stream's muxer.
#[derive(Debug)]
pub struct Muxer {
    /// The encoded bus.
    pub bus: String,
    cfg: MuxerConfig,
    info: FeedInfo,
    part_ticks: u64,
    frame_ticks: u64,
    /// The Opus track, when the camera had sound as the muxer started.
    audio: Option<AudioTrack>,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    last_use_ns: AtomicU64,
    /// Requests waiting on it now (it is not idle while there are).
    waiters: AtomicU64,
    /// The last rendered playlist and the state it was rendered from.
    rendered: Mutex<Option<(RenderKey, Bytes)>>,
    /// Counters.
    pub counters: MuxerCounters,
}

/// A playlist position: a part of a segment (`part: None` for the whole
/// segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Media sequence number.
    pub msn: u64,
    /// Part index within the segment.
    pub part: Option<u32>,
}

/// The answer to a wait.
#[derive(Debug, PartialEq)]
pub enum Ready {
    /// Available.
    Yes,
    /// Never will be (too far ahead, gone, or the muxer ended).
    Never(String),
    /// Not yet.
    NotYet,
}

/// Counts one waiter in `n` while alive.
pub struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    /// Counts one more in `n`.
    pub fn new(n: &'a AtomicU64) -> Waiting<'a> {
        n.fetch_add(1, Relaxed);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The part target as a whole number of frames at `fps` (at least one),
/// in 90 kHz ticks, and one frame's ticks.
pub fn part_target_ticks(target: Duration, fps: f64) -> (u64, u64) {
    let fps = if fps.is_finite() && fps > 0.0 {
        fps
    } else {
        30.0
    };
    let frame = (CLOCK_RATE as f64 / fps).round().max(1.0) as u64;
    let frames = (target.as_secs_f64() * fps).round().max(1.0) as u64;
    (frames * frame, frame)
}

fn epoch_now() -> (String, u64) {
    let ms = framebus::realtime_ns() / 1_000_000;
    (radix36(ms), ms / 100)
}

fn radix36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

impl Muxer {
    /// A muxer for `bus` (not yet fed: [`Muxer::run`]).
    pub fn new(bus: String, info: FeedInfo, cfg: MuxerConfig) -> Arc<Muxer> {
        Muxer::new_av(bus, info, cfg, None)
    }

    /// [`Muxer::new`] with an Opus track when `audio` is given.
    pub fn new_av(
        bus: String,
        info: FeedInfo,
        cfg: MuxerConfig,
        audio: Option<AudioTrack>,
    ) -> Arc<Muxer> {
        let (part_ticks, frame_ticks) = part_target_ticks(cfg.part_target, info.fps);
        let (epoch, msn0) = epoch_now();
        let (changed, _) = watch::channel(0);
        Arc::new(Muxer {
            bus,
            cfg,
            info,
            part_ticks,
            frame_ticks,
            audio,
            state: Mutex::new(State {
                epoch,
                maps: VecDeque::new(),
                segments: VecDeque::new(),
                parts: VecDeque::new(),
                first_part: 0,
                next_part: 0,
                next_msn: msn0,
                fill: PartFill::default(),
                pending: None,
                need_key: true,
                discontinuity_next: false,
                discontinuity_seq: 0,
                target_duration: 2,
                td_fixed: false,
                ended: None,
                audio_pending: VecDeque::new(),
                audio_timeline: AudioTimeline::default(),
            }),
            changed,
            last_use_ns: AtomicU64::new(framebus::monotonic_ns()),
            waiters: AtomicU64::new(0),
            rendered: Mutex::new(None),
            counters: MuxerCounters::default(),
        })
    }

    /// The stream's parameters.
    pub fn info(&self) -> &FeedInfo {
        &self.info
    }

    /// The epoch (the first path element of every media URI).
    pub fn epoch(&self) -> String {
        self.state.lock().epoch.clone()
    }

    /// Marks the muxer used now (it stops after an idle time).
    pub fn touch(&self) {
        self.last_use_ns.store(framebus::monotonic_ns(), Relaxed);
    }

    /// Time since the last request.
    pub fn idle_for(&self) -> Duration {
        Duration::from_nanos(
            framebus::monotonic_ns().saturating_sub(self.last_use_ns.load(Relaxed)),
        )
    }

    /// A receiver that changes on every new part.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The target duration (whole seconds).
    pub fn target_duration(&self) -> Duration {
        Duration::from_secs(u64::from(self.state.lock().target_duration))
    }

    /// The part target in seconds (a whole number of frames).
    pub fn part_target_secs(&self) -> f64 {
        self.part_ticks as f64 / CLOCK_RATE as f64
    }

    /// Whether it ended (no message built).
    pub fn is_ended(&self) -> bool {
        self.state.lock().ended.is_some()
    }

    /// Why it ended, if it did.
    pub fn ended(&self) -> Option<String> {
        self.state
            .lock()
            .ended
            .as_ref()
            .map(|why| format!("the HLS muxer of {} stopped ({why}); retry", self.bus))
    }

    /// The newest position: the last part written.
    pub fn last_position(&self) -> Option<Position> {
        let s = self.state.lock();
        let p = s.parts.back()?;
        Some(Position {
            msn: p.msn,
            part: Some(p.index),
        })
    }

    /// Whether a complete segment exists.
    pub fn has_segment(&self) -> bool {
        self.state.lock().segments.iter().any(|g| g.complete)
    }

    /// Seconds of media in the parts kept.
    pub fn media_secs(&self) -> f64 {
        let ticks: u64 = self.state.lock().parts.iter().map(|p| p.ticks).sum();
        ticks as f64 / 90_000.0
    }

    /// Reads access units from `slot`'s feed (and Opus packets from
    /// `audio`'s) until `stop` says so or the feed ends. `rx` and `gop`
    /// come from [`Feed::start_now`].
    pub async fn run(
        self: Arc<Self>,
        slot: FeedSlot,
        gop: Vec<Arc<Au>>,
        mut rx: broadcast::Receiver<Arc<Au>>,
        idle: Duration,
        mut audio: Option<AudioTicket>,
    ) {
        for au in gop {
            self.push(&au);
        }
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                r = next_packet(&mut audio) => match r {
                    Ok(p) => self.push_audio(p),
                    // Lost packets leave their gap on the timeline.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => audio = None,
                },
                r = rx.recv() => match r {
                    Ok(au) => self.push(&au),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(bus = %self.bus, lost = n, "HLS muxer fell behind the feed");
                        self.counters.lags.fetch_add(1, Relaxed);
                        self.lagged();
                        slot.feed().request_keyframe();
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        self.end("the feed closed".into());
                        return;
                    }
                },
                _ = tick.tick() => {
                    if self.idle_for() >= idle && self.waiters.load(Relaxed) == 0 {
                        self.end("idle".into());
                        return;
                    }
                }
            }
        }
    }

    /// Ends the muxer: waiters get [`Ready::Never`].
    pub fn end(&self, why: String) {
        tracing::info!(bus = %self.bus, why = %why, "HLS muxer stopped");
        self.state.lock().ended = Some(why);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Takes an Opus packet (written with the part its capture time falls
    /// in).
    pub fn push_audio(&self, p: Arc<OpusPacket>) {
        if self.audio.is_none() {
            return;
        }
        let mut s = self.state.lock();
        if s.audio_pending.len() >= MAX_PENDING_AUDIO {
            s.audio_pending.pop_front();
        }
        s.audio_pending.push_back(p);
    }

    fn lagged(&self) {
        let mut s = self.state.lock();
        if let Some(p) = s.pending.take() {
            let ticks = self.frame_ticks as u32;
            s.fill.samples.push((p, ticks));
            s.fill.ticks += u64::from(ticks);
        }
        let new = self.close_part(&mut s);
        self.close_segment(&mut s);
        // The access units lost and those skipped until the next keyframe
        // leave a hole in the timeline: say so.
        s.need_key = true;
        s.discontinuity_next = true;
        s.audio_timeline.restart();
        drop(s);
        self.bump(new);
    }

    /// Adds one access unit.
    pub fn push(&self, au: &Arc<Au>) {
        let mut s = self.state.lock();
        let mut new = false;
        if s.need_key {
            if !au.key {
                return;
            }
            s.need_key = false;
        }
        if let Some(p) = s.pending.take() {
            let d = au.pts90.wrapping_sub(p.pts90);
            if au.pts90 <= p.pts90 || d > self.part_ticks + self.frame_ticks {
                // Time going backwards, or a hole longer than a part (a
                // new encoder, a stalled source): end here, mark the next
                // segment as a discontinuity rather than stretch a frame
                // over the hole (parts stay within PART-TARGET).
                s.fill.samples.push((p, self.frame_ticks as u32));
                s.fill.ticks += self.frame_ticks;
                new |= self.close_part(&mut s);
                self.close_segment(&mut s);
                s.discontinuity_next = true;
                s.audio_timeline.restart();
                if !au.key {
                    s.need_key = true;
                    drop(s);
                    self.bump(new);
                    return;
                }
            } else {
                if !s.fill.samples.is_empty()
                    && s.fill.ticks + d > self.part_ticks + self.frame_ticks / 4
                {
                    new |= self.close_part(&mut s);
                }
                s.fill.samples.push((p, d as u32));
                s.fill.ticks += d;
                if s.fill.ticks + self.frame_ticks / 2 >= self.part_ticks {
                    new |= self.close_part(&mut s);
                }
            }
        }
        if au.key {
            new |= self.close_part(&mut s);
            self.close_segment(&mut s);
            if !self.open_segment(&mut s, au) {
                s.need_key = true;
                drop(s);
                self.bump(new);
                return;
            }
        }
        s.pending = Some(Arc::clone(au));
        drop(s);
        self.bump(new);
    }

    fn bump(&self, new: bool) {
        if new {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Opens a segment at keyframe `au`; false if it has no parameter sets.
    fn open_segment(&self, s: &mut State, au: &Au) -> bool {
        let Some(track) = VideoTrack::from_access_unit(
            &au.data,
            self.info.width,
            self.info.height,
            CLOCK_RATE as u32,
        ) else {
            tracing::warn!(bus = %self.bus, "a keyframe without SPS/PPS; waiting for the next one");
            return false;
        };
        let map = match s.maps.back() {
            Some((n, _, t)) if *t == track => *n,
            last => {
                let n = last.map_or(0, |(n, _, _)| n + 1);
                match fmp4::init_segment_av(&track, self.audio.as_ref()) {
                    Ok(b) => s.maps.push_back((n, Bytes::from(b), track)),
                    Err(e) => {
                        tracing::warn!(bus = %self.bus, error = %e, "cannot write the init segment");
                        return false;
                    }
                }
                if n > 0 {
                    s.discontinuity_next = true;
                }
                n
            }
        };
        let msn = s.next_msn;
        s.next_msn += 1;
        let discontinuity = std::mem::take(&mut s.discontinuity_next);
        let first_part = s.next_part;
        s.segments.push_back(SegmentData {
            msn,
            first_part,
            parts: 0,
            ticks: 0,
            pdt_ms: (au.realtime_ns / 1_000_000) as i64,
            discontinuity,
            map,
            complete: false,
        });
        true
    }

    /// Writes the filled samples as a part of the open segment; true if a
    /// part was written.
    fn close_part(&self, s: &mut State) -> bool {
        if s.fill.samples.is_empty() {
            return false;
        }
        let fill = std::mem::take(&mut s.fill);
        let audio = self.take_audio(s, &fill);
        let Some(seg) = s.segments.back_mut().filter(|g| !g.complete) else {
            return false;
        };
        let samples: Vec<Sample<'_>> = fill
            .samples
            .iter()
            .map(|(au, d)| Sample {
                data: &au.data,
                duration: *d,
                key: au.key,
            })
            .collect();
        let base = fill.samples[0].0.pts90;
        let audio_samples: Vec<AudioSample<'_>> = audio
            .iter()
            .enumerate()
            .map(|(i, (dt, p))| AudioSample {
                data: &p.data,
                // Up to the next packet (a lost one's gap included).
                duration: audio.get(i + 1).map_or(PACKET_TICKS, |(n, _)| {
                    (n - dt).min(u64::from(u32::MAX)) as u32
                }),
            })
            .collect();
        let run = audio.first().map(|(dt, _)| AudioRun {
            base_decode_time: *dt,
            samples: &audio_samples,
        });
        let number = s.next_part;
        let bytes = match fmp4::fragment_av((number as u32).wrapping_add(1), base, &samples, run) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::warn!(bus = %self.bus, error = %e, "cannot write a part");
                return false;
            }
        };
        let part = Arc::new(PartData {
            msn: seg.msn,
            index: seg.parts as u32,
            ticks: fill.ticks,
            independent: fill.samples[0].0.key,
            bytes,
        });
        seg.parts += 1;
        seg.ticks += fill.ticks;
        self.counters.parts.fetch_add(1, Relaxed);
        self.counters
            .bytes
            .fetch_add(part.bytes.len() as u64, Relaxed);
        s.parts.push_back(part);
        s.next_part += 1;
        true
    }

    /// The Opus packets captured during the part's frames (before the end
    /// of its last one), each with its decode time (48 kHz).
    fn take_audio(&self, s: &mut State, fill: &PartFill) -> Vec<(u64, Arc<OpusPacket>)> {
        let (Some((first, _)), Some((last, d))) = (fill.samples.first(), fill.samples.last())
        else {
            return Vec::new();
        };
        if self.audio.is_none() {
            return Vec::new();
        }
        let end_mono = last.mono_ns + u64::from(*d) * 1_000_000_000 / CLOCK_RATE;
        s.audio_timeline.take_before(
            &mut s.audio_pending,
            (first.pts90, CLOCK_RATE as u32),
            first.mono_ns,
            end_mono,
            |p| (p.rtp48, p.mono_ns, PACKET_TICKS),
        )
    }

    fn close_segment(&self, s: &mut State) {
        let Some(seg) = s.segments.back_mut().filter(|g| !g.complete) else {
            return;
        };
        if seg.parts == 0 {
            s.segments.pop_back();
            return;
        }
        seg.complete = true;
        // EXT-X-TARGETDURATION is set by the first segment (a whole GOP:
        // the first one starts at a keyframe) and should never change; a
        // later, longer segment (the encoder lowered its frame rate, a GOP
        // in frames got longer in time) raises it, with a warning.
        let secs = (seg.ticks as f64 / CLOCK_RATE as f64).round() as u32;
        if !s.td_fixed {
            s.td_fixed = true;
            s.target_duration = s.target_duration.max(secs.max(1));
        } else if secs > s.target_duration {
            tracing::warn!(
                bus = %self.bus,
                from = s.target_duration,
                to = secs,
                "HLS: a segment is longer than the target duration; raising it (players may re-buffer)"
            );
            s.target_duration = secs;
        }
        self.counters.segments.fetch_add(1, Relaxed);
        // Forget what is past the window and its grace.
        let keep = 2 * self.cfg.segments + EXTRA_SEGMENTS;
        while s.segments.iter().filter(|g| g.complete).count() > keep {
            let Some(old) = s.segments.pop_front() else {
                break;
            };
            if old.discontinuity {
                s.discontinuity_seq += 1;
            }
            let until = old.first_part + old.parts;
            while s.first_part < until && s.parts.pop_front().is_some() {
                s.first_part += 1;
            }
            let oldest_map = s.segments.front().map_or(0, |g| g.map);
            while s.maps.len() > 1 && s.maps.front().is_some_and(|(n, _, _)| *n < oldest_map) {
                s.maps.pop_front();
            }
        }
    }

    /// Whether `want` is in the playlist: a part at or after it exists
    /// (for a part), or the segment is complete (for a whole segment).
    pub fn ready(&self, want: Position) -> Ready {
        let s = self.state.lock();
        if s.ended.is_some() {
            drop(s);
            return Ready::Never(self.ended().unwrap_or_default());
        }
        let newest = s.next_msn.saturating_sub(1);
        if want.msn > newest.saturating_add(2) {
            return Ready::Never(format!(
                "_HLS_msn={} is more than two segments ahead of the playlist's last ({newest})",
                want.msn
            ));
        }
        let ok = match want.part {
            None => s.segments.iter().any(|g| g.complete && g.msn >= want.msn),
            // A part at or after it: when segment M ended with fewer
            // parts, part 0 of M+1 answers (hls.js asks for the part after
            // the last it saw).
            Some(p) => s
                .parts
                .back()
                .is_some_and(|last| (last.msn, last.index) >= (want.msn, p)),
        };
        if ok {
            Ready::Yes
        } else {
            Ready::NotYet
        }
    }

    /// Whether part `n` exists (Yes), is the next one (NotYet: the preload
    /// hint), or neither.
    pub fn part_ready(&self, n: u64) -> Ready {
        let s = self.state.lock();
        if n < s.first_part {
            return Ready::Never(format!("part {n} is no longer kept"));
        }
        if n < s.next_part {
            return Ready::Yes;
        }
        if s.ended.is_some() || n > s.next_part {
            return Ready::Never(format!("part {n} does not exist"));
        }
        Ready::NotYet
    }

    /// Part `n`.
    pub fn part(&self, n: u64) -> Option<Arc<PartData>> {
        let s = self.state.lock();
        let i = n.checked_sub(s.first_part)?;
        s.parts.get(usize::try_from(i).ok()?).cloned()
    }

    /// A complete segment's parts, in order.
    pub fn segment(&self, msn: u64) -> Option<Vec<Bytes>> {
        let s = self.state.lock();
        let g = s.segments.iter().find(|g| g.msn == msn && g.complete)?;
        let from = usize::try_from(g.first_part.checked_sub(s.first_part)?).ok()?;
        Some(
            s.parts
                .iter()
                .skip(from)
                .take(g.parts as usize)
                .map(|p| p.bytes.clone())
                .collect(),
        )
    }

    /// Init segment `n`.
    pub fn init(&self, n: u32) -> Option<Bytes> {
        let s = self.state.lock();
        s.maps
            .iter()
            .find(|(m, _, _)| *m == n)
            .map(|(_, b, _)| b.clone())
    }

    /// The codec string of the current init segment, once known
    /// (`avc1.…,opus` with sound).
    pub fn codec_string(&self) -> Option<String> {
        let video = self
            .state
            .lock()
            .maps
            .back()
            .map(|(_, _, t)| t.codec_string())?;
        Some(match &self.audio {
            Some(a) => format!("{video},{}", a.codec_string()),
            None => video,
        })
    }

    /// Whether its parts carry the camera's sound.
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// The media playlist's text as of now, rendered once per change of
    /// the muxer's state (every viewer's blocking reload for the same part
    /// gets the same text).
    pub fn playlist_text(&self) -> Bytes {
        let key = {
            let s = self.state.lock();
            let complete = s.segments.iter().filter(|g| g.complete).count();
            (
                s.next_part,
                s.next_msn,
                complete,
                s.first_part,
                s.target_duration,
            )
        };
        let mut cached = self.rendered.lock();
        if let Some((k, text)) = cached.as_ref() {
            if *k == key {
                return text.clone();
            }
        }
        let text = Bytes::from(self.playlist().render());
        *cached = Some((key, text.clone()));
        text
    }

    /// The media playlist as of now.
    pub fn playlist(&self) -> MediaPlaylist {
        let s = self.state.lock();
        let e = &s.epoch;
        let secs = |ticks: u64| ticks as f64 / CLOCK_RATE as f64;
        let complete = s.segments.iter().filter(|g| g.complete).count();
        let skip = complete.saturating_sub(self.cfg.segments);
        let mut listed = s.segments.iter().skip(skip).peekable();
        let media_sequence = listed.peek().map_or(s.next_msn, |g| g.msn);
        // Discontinuities of segments no longer listed (forgotten ones are
        // in `discontinuity_seq`).
        let discontinuity_sequence = s.discontinuity_seq
            + s.segments
                .iter()
                .take(skip)
                .filter(|g| g.discontinuity)
                .count() as u64;
        let mut segments = Vec::new();
        let mut open = None;
        let mut last_map = None;
        for g in listed {
            let parts = s
                .parts
                .iter()
                .skip(usize::try_from(g.first_part - s.first_part).unwrap_or(usize::MAX))
                .take(g.parts as usize)
                .enumerate()
                .map(|(i, p)| playlist::Part {
                    uri: format!("{e}/p{}.m4s", g.first_part + i as u64),
                    duration: secs(p.ticks),
                    independent: p.independent,
                })
                .collect();
            let seg = playlist::Segment {
                uri: format!("{e}/s{}.m4s", g.msn),
                duration: secs(g.ticks),
                program_date_time_ms: Some(g.pdt_ms),
                parts,
                discontinuity: g.discontinuity,
                map_uri: (last_map != Some(g.map)).then(|| format!("{e}/init{}.mp4", g.map)),
            };
            last_map = Some(g.map);
            if g.complete {
                segments.push(seg);
            } else if g.parts > 0 {
                open = Some(seg);
            }
        }
        let td = s.target_duration;
        let part_target = secs(self.part_ticks);
        MediaPlaylist {
            target_duration: td,
            part_target,
            part_hold_back: PART_HOLD_BACK_PARTS * part_target,
            can_block_reload: true,
            media_sequence,
            discontinuity_sequence,
            segments,
            open,
            preload_hint: Some(format!("{e}/p{}.m4s", s.next_part)),
            parts_window: 3.0 * f64::from(td),
        }
    }

    /// Waits until `check` is not [`Ready::NotYet`] or `deadline` passes
    /// (then `NotYet`).
    pub async fn wait(&self, deadline: Duration, check: impl Fn(&Muxer) -> Ready) -> Ready {
        // Counted while waiting, also when the client goes away and the
        // request's future is dropped mid-wait (the guard's drop).
        let _waiting = Waiting::new(&self.waiters);
        let r = self.wait_inner(deadline, check).await;
        self.touch();
        r
    }

    async fn wait_inner(&self, deadline: Duration, check: impl Fn(&Muxer) -> Ready) -> Ready {
        let mut rx = self.changed();
        let until = tokio::time::Instant::now() + deadline;
        loop {
            match check(self) {
                Ready::NotYet => {}
                r => return r,
            }
            match tokio::time::timeout_at(until, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return check(self),
            }
        }
    }
}

/// Starts a muxer on `feed`: joins it (uncounted), waits for its
/// parameters, and runs until idle. The muxer is returned at once; its
/// first part follows the first keyframe.
pub async fn start(
    feed: &Arc<Feed>,
    cfg: MuxerConfig,
    idle: Duration,
    audio: Option<(AudioTrack, Arc<AudioFeed>)>,
) -> Result<Arc<Muxer>, FeedError> {
    let slot = feed.join_uncounted();
    let info = feed.info().await?;
    let (track, ticket) = audio.map(|(t, f)| (t, f.join())).unzip();
    let muxer = Muxer::new_av(feed.bus().to_string(), info, cfg, track);
    // Start from the cached GOP when there is one (a running feed): the
    // first parts exist at once.
    let (mut gop, rx) = feed.start_now(Duration::from_secs(30));
    if gop.len() >= crate::feed::GOP_CACHE_MAX {
        // A truncated GOP would leave a hole before `rx`: start at the
        // next keyframe instead, and ask for one.
        gop.clear();
        feed.request_keyframe();
    }
    tokio::spawn(Arc::clone(&muxer).run(slot, gop, rx, idle, ticket));
    Ok(muxer)
}

/// The next Opus packet of `audio`; never, without sound.
async fn next_packet(
    audio: &mut Option<AudioTicket>,
) -> Result<Arc<OpusPacket>, broadcast::error::RecvError> {
    match audio {
        Some(t) => t.rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[
        0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8,
    ];
    const PPS: &[u8] = &[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80];

    fn au(n: u64, pts90: u64, key: bool) -> Arc<Au> {
        let mut data = Vec::new();
        if key {
            data.extend_from_slice(SPS);
            data.extend_from_slice(PPS);
            data.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84, n as u8]);
        } else {
            data.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9a, 0x02, n as u8]);
        }
        Arc::new(Au {
            data: Arc::from(data),
            key,
            pts90,
            mono_ns: pts90 * 100_000 / 9,
            realtime_ns: 1_700_000_000_000_000_000 + pts90 * 100_000 / 9,
        })
    }

    fn muxer() -> Arc<Muxer> {
        let info = FeedInfo {
            width: 320,
            height: 180,
            fps: 30.0,
            profile_idc: 66,
            constraints: 0xc0,
            bitrate: 0,
        };
        let cfg = MuxerConfig {
            part_target: Duration::from_millis(200),
            segments: 7,
        };
        Muxer::new("cam.h264.base".into(), info, cfg)
    }

    /// Pushes frames `from..to` at 30 fps (3000 ticks), a keyframe every
    /// 60, starting at tick `t0`.
    fn feed(m: &Muxer, t0: u64, from: u64, to: u64) {
        for n in from..to {
            m.push(&au(n, t0 + n * 3000, n % 60 == 0));
        }
    }

    #[test]
    fn cuts_parts_of_six_frames_and_segments_at_keyframes() {
        let m = muxer();
        feed(&m, 90_000, 0, 181);
        let p = m.playlist();
        assert_eq!(p.segments.len(), 3, "{}", p.render());
        assert_eq!(p.target_duration, 2);
        for seg in &p.segments {
            assert_eq!(seg.parts.len(), 10);
            assert!((seg.duration - 2.0).abs() < 1e-9);
            assert!(seg.parts[0].independent && !seg.parts[1].independent);
            assert!(!seg.discontinuity);
        }
        assert!(p.parts_window >= 6.0);
        // Parts are whole and numbered across segments.
        assert_eq!(p.segments[1].parts[0].uri, format!("{}/p10.m4s", m.epoch()));
        assert_eq!(
            m.ready(Position {
                msn: p.media_sequence + 2,
                part: None
            }),
            Ready::Yes
        );
        assert_eq!(
            m.ready(Position {
                msn: p.media_sequence + 3,
                part: Some(0)
            }),
            Ready::NotYet
        );
        assert!(matches!(
            m.ready(Position {
                msn: p.media_sequence + 6,
                part: None
            }),
            Ready::Never(_)
        ));
        assert_eq!(m.part_ready(30), Ready::NotYet, "the hinted part");
        assert!(matches!(m.part_ready(31), Ready::Never(_)));
    }

    #[test]
    fn a_hole_or_a_lag_is_a_discontinuity_and_no_part_exceeds_the_target() {
        let m = muxer();
        feed(&m, 90_000, 0, 61);
        // A hole (a restarted encoder starts with a keyframe).
        feed(&m, 90_000 + 90_000, 120, 181);
        let p = m.playlist();
        let d: Vec<bool> = p.segments.iter().map(|s| s.discontinuity).collect();
        assert_eq!(d, [false, false, true], "{}", p.render());
        for part in p.segments.iter().flat_map(|s| &s.parts) {
            assert!(part.duration <= 0.2 + 1e-9, "{part:?}");
        }
        // A lag: what is open ends, the next segment is a discontinuity.
        m.lagged();
        feed(&m, 180_000, 240, 301);
        let p = m.playlist();
        let d: Vec<bool> = p.segments.iter().map(|s| s.discontinuity).collect();
        assert_eq!(d.last(), Some(&true), "{}", p.render());
    }

    #[test]
    fn part_targets_are_whole_frames() {
        let t = Duration::from_millis(200);
        assert_eq!(part_target_ticks(t, 30.0), (18_000, 3000));
        assert_eq!(part_target_ticks(t, 60.0), (18_000, 1500));
        assert_eq!(part_target_ticks(t, 25.0), (18_000, 3600));
        assert_eq!(part_target_ticks(t, 24.0), (18_750, 3750));
        assert_eq!(part_target_ticks(t, 2.0), (45_000, 45_000));
        assert_eq!(radix36(35), "z");
        assert_eq!(radix36(36), "10");
    }
}
