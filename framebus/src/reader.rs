//! The consumer side: attach to a bus, take frames as zero-copy views.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{AttachError, ReadError};
use crate::fork::Generation;
use crate::format::FrameSpec;
use crate::layout::{self, state, HeaderError, HEADER_SIZE};
use crate::name::{default_shm_dir, segment_path, validate_name};
use crate::segment::Segment;
use crate::writer::FrameFlags;
use crate::{protocol, sys};

/// How often a blocked reader checks that the producer is still alive (an
/// `F_OFD_GETLK`) while no frames come. A clean shutdown is seen at once;
/// a SIGKILLed producer within this time.
pub const LIVENESS_INTERVAL: Duration = Duration::from_millis(100);
/// How often a reader whose producer is gone looks for a new one.
pub const REATTACH_INTERVAL: Duration = Duration::from_millis(20);

/// How to attach.
#[derive(Clone, Debug, Default)]
pub struct ReaderOptions {
    /// Wait this long for the bus (and a live producer) to appear; `None`
    /// fails at once when it is absent.
    pub wait: Option<Duration>,
    /// Directory holding the segment (default: `FRAMEBUS_SHM_DIR` or
    /// `/dev/shm`).
    pub shm_dir: Option<PathBuf>,
}

/// One mapping of one producer instance, and this reader's entry in it.
/// Frames keep it alive, so a frame stays valid after its producer is gone
/// or the reader re-attached elsewhere.
pub(crate) struct Attachment {
    name: String,
    pub(crate) seg: Segment,
    entry: u32,
    /// Frames held per slot by this reader (the mask bit is set while > 0).
    counts: Mutex<[u16; layout::MAX_SLOTS as usize]>,
}

impl Attachment {
    fn open(name: &str, path: &Path) -> Result<Attachment, AttachError> {
        let io_err = |op, source| AttachError::Io {
            name: name.to_string(),
            op,
            path: path.to_path_buf(),
            source,
        };
        // Registered with the fork handler as it is opened: a forked child
        // never holds a copy of our reader-entry lock.
        let opened = crate::fork::open_registered(|| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
        });
        let (file, registration) = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(AttachError::NotFound {
                    name: name.to_string(),
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err("open", e)),
        };
        let size = file.metadata().map_err(|e| io_err("stat", e))?.len();
        let mut head = vec![0u8; HEADER_SIZE];
        let got = file.read_at(&mut head, 0).map_err(|e| io_err("read", e))?;
        let corrupt = |why| AttachError::Corrupt {
            name: name.to_string(),
            path: path.to_path_buf(),
            why,
        };
        if got < HEADER_SIZE {
            return Err(corrupt(HeaderError::Truncated {
                size,
                need: HEADER_SIZE as u64,
            }));
        }
        let info = layout::validate_header(&head, size).map_err(corrupt)?;
        let capacity = info.geometry.reader_capacity;
        // SAFETY: `info` was validated against this file's size; segments
        // never change size.
        let seg = unsafe { Segment::map(file, registration, info, false, false) }
            .map_err(|e| io_err("mmap", e))?;
        let producer_alive = sys::is_locked(seg.file.as_fd(), sys::PRODUCER_LOCK_BYTE)
            .map_err(|e| io_err("lock", e))?;
        if seg.live().state.load(Ordering::Acquire) != state::LIVE || !producer_alive {
            return Err(AttachError::ProducerGone {
                name: name.to_string(),
            });
        }
        for i in 0..capacity {
            if sys::try_lock(seg.file.as_fd(), sys::reader_lock_byte(i))
                .map_err(|e| io_err("lock", e))?
            {
                let e = seg.reader(i);
                // We own the entry now; whatever a dead owner left is void.
                protocol::reclaim(&e.held, &e.waiting);
                // Before our first hold: the writer scans this entry from now.
                protocol::register(&seg.live().reader_hwm, i);
                e.frames.store(0, Ordering::Relaxed);
                e.skipped.store(0, Ordering::Relaxed);
                e.last_seq.store(0, Ordering::Relaxed);
                e.attached_ns.store(sys::realtime_ns(), Ordering::Relaxed);
                e.pid.store(std::process::id(), Ordering::Relaxed);
                return Ok(Attachment {
                    name: name.to_string(),
                    seg,
                    entry: i,
                    counts: Mutex::new([0; layout::MAX_SLOTS as usize]),
                });
            }
        }
        Err(AttachError::TooManyReaders {
            name: name.to_string(),
            capacity,
        })
    }

    /// Hold `slot` for frame `seq`. `Ok(false)`: the writer moved on.
    fn hold(&self, slot: u32, seq: u64) -> Result<bool, ReadError> {
        let mut counts = self.counts.lock();
        let bit = 1u64 << slot;
        let held = &self.seg.reader(self.entry).held;
        if counts[slot as usize] > 0 {
            // Already held by another frame of ours, so the writer cannot
            // have touched it: it still holds the frame we hold.
            let ok = self.seg.slot(slot).state.load(Ordering::Acquire) == protocol::published(seq);
            if ok {
                counts[slot as usize] += 1;
            }
            return Ok(ok);
        }
        let distinct = counts.iter().filter(|&&c| c > 0).count() as u32;
        if distinct >= self.seg.info.max_held {
            return Err(ReadError::TooManyHeld {
                name: self.name.clone(),
                held: distinct,
                max: self.seg.info.max_held,
            });
        }
        if protocol::try_hold(held, &self.seg.slot(slot).state, bit, seq) {
            counts[slot as usize] = 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn release(&self, slot: u32) {
        if self.seg.gen.forked() {
            // Inherited across fork: the holds are the parent's.
            return;
        }
        let mut counts = self.counts.lock();
        let c = &mut counts[slot as usize];
        *c -= 1;
        if *c == 0 {
            protocol::release(&self.seg.reader(self.entry).held, 1 << slot);
        }
    }

    fn closed(&self) -> bool {
        self.seg.live().state.load(Ordering::Acquire) != state::LIVE
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if self.seg.gen.forked() {
            // Inherited across fork: the entry is the parent's.
            return;
        }
        let e = self.seg.reader(self.entry);
        protocol::reclaim(&e.held, &e.waiting);
        e.pid.store(0, Ordering::Relaxed);
        // The entry's lock goes with the file descriptor.
    }
}

/// A reader of one bus. Follows the bus across producer restarts.
pub struct Reader {
    name: String,
    path: PathBuf,
    conn: Option<Arc<Attachment>>,
    spec: FrameSpec,
    instance: u64,
    last_seq: u64,
    gone_reported: bool,
    gen: Generation,
    /// A keyframe was asked for since the last gap (encoded buses).
    keyframe_asked: bool,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("name", &self.name)
            .field("connected", &self.conn.is_some())
            .field("last_seq", &self.last_seq)
            .finish()
    }
}

impl Reader {
    /// Attach to bus `name`.
    pub fn attach(name: &str, opts: ReaderOptions) -> Result<Reader, AttachError> {
        validate_name(name)?;
        let dir = opts.shm_dir.unwrap_or_else(default_shm_dir);
        let path = segment_path(&dir, name);
        let start = Instant::now();
        loop {
            match Attachment::open(name, &path) {
                Ok(att) => {
                    return Ok(Reader {
                        name: name.to_string(),
                        path,
                        spec: att.seg.info.spec,
                        instance: att.seg.info.instance_id,
                        conn: Some(Arc::new(att)),
                        last_seq: 0,
                        gone_reported: false,
                        gen: Generation::now(),
                        keyframe_asked: false,
                    })
                }
                Err(e @ (AttachError::NotFound { .. } | AttachError::ProducerGone { .. })) => {
                    match opts.wait {
                        Some(w) if start.elapsed() < w => {
                            std::thread::sleep(REATTACH_INTERVAL.min(w - start.elapsed()))
                        }
                        Some(w) => {
                            return Err(AttachError::Timeout {
                                name: name.to_string(),
                                waited: w,
                            })
                        }
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Bus name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Frame spec of the current (or last) producer.
    pub fn spec(&self) -> &FrameSpec {
        &self.spec
    }

    /// Whether the reader is attached to a live producer's segment.
    pub fn is_connected(&self) -> bool {
        !self.gen.forked() && self.conn.as_ref().is_some_and(|a| !a.closed())
    }

    /// Whether this reader was inherited across `fork()` (it is inert in
    /// the child: see [`ReadError::Forked`]).
    pub fn is_forked(&self) -> bool {
        self.gen.forked()
    }

    fn check_fork(&self) -> Result<(), ReadError> {
        if self.gen.forked() {
            return Err(ReadError::Forked {
                name: self.name.clone(),
            });
        }
        Ok(())
    }

    /// Slots this reader may hold at once on the current segment (frames
    /// not yet dropped); [`ReadError::TooManyHeld`] beyond. A reader that
    /// hands frames on (a GStreamer source) copies the last one it may
    /// take rather than hold it.
    pub fn max_held(&self) -> Option<u32> {
        self.conn.as_ref().map(|a| a.seg.info.max_held)
    }

    /// Producer pid (in its namespace) of the current segment.
    pub fn producer_pid(&self) -> Option<u32> {
        self.conn.as_ref().map(|a| a.seg.info.producer_pid)
    }

    /// Sequence number of the last frame taken.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The newest frame, even if taken before; `None` before the first.
    pub fn latest(&mut self) -> Result<Option<Frame>, ReadError> {
        self.poll(true)
    }

    /// The newest frame not taken yet, without waiting.
    pub fn try_next(&mut self) -> Result<Option<Frame>, ReadError> {
        self.poll(false)
    }

    /// Wait for a frame newer than the last one taken (the newest, if
    /// several came: see [`Frame::skipped`]). `None` waits forever.
    ///
    /// When the producer goes away this returns
    /// [`ReadError::ProducerGone`] once; later calls wait for a producer to
    /// create the bus again and continue with its frames.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<Frame, ReadError> {
        self.next_inner(timeout, false)
    }

    /// Encoded buses (H.264 and the like): wait for the next frame *in
    /// order*, so that a decoder can continue. While the ring still has the
    /// frame after the last one taken, that is the one returned. A reader
    /// that starts, or that fell so far behind that the ring no longer has
    /// its next frame, gets the newest keyframe in the ring instead (at
    /// once: the ring holds at least a GOP when sized for it) and
    /// [`Frame::skipped`] says how many frames it lost; with no keyframe to
    /// restart from it asks the encoder for one ([`Reader::request_keyframe`])
    /// and waits for it. Producer restarts behave as in [`Reader::next`].
    pub fn next_encoded(&mut self, timeout: Option<Duration>) -> Result<Frame, ReadError> {
        self.next_inner(timeout, true)
    }

    /// Ask the encoder of this (encoded) bus for a keyframe. Requests are
    /// counted per reader in `framebus stat`; the encoder honours them
    /// within a frame interval, rate-limited.
    pub fn request_keyframe(&mut self) -> Result<(), ReadError> {
        self.check_fork()?;
        if let Some(att) = self.connection()? {
            self.ask_keyframe(&att);
        }
        Ok(())
    }

    /// The codec configuration of an encoded bus (`None` before the
    /// writer set one, or with no producer).
    pub fn codec(&mut self) -> Result<Option<crate::CodecConfig>, ReadError> {
        self.check_fork()?;
        let Some(att) = self.connection()? else {
            return Ok(None);
        };
        let live = att.seg.live();
        let read = || {
            let len = (live.config_len.load(Ordering::Relaxed) as usize).min(layout::CONFIG_MAX);
            let mut config = Vec::with_capacity(len);
            for w in &live.config {
                if config.len() >= len {
                    break;
                }
                config.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            config.truncate(len);
            (
                config,
                live.profile_level.load(Ordering::Relaxed),
                (
                    live.time_base_num.load(Ordering::Relaxed),
                    live.time_base_den.load(Ordering::Relaxed),
                ),
            )
        };
        // Retry (yielding) for up to a second: writers update it rarely, so
        // only a writer stuck mid-update (hostile memory) makes this fail.
        let deadline = Instant::now() + Duration::from_secs(1);
        let got = loop {
            if let Some(v) = protocol::seqlock_read(&live.config_seq, 64, read) {
                break Some(v);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::yield_now();
        };
        let Some((config, profile_level, time_base)) = got else {
            return Err(ReadError::Corrupt {
                name: self.name.clone(),
                slot: 0,
                seq: 0,
                why: "the codec configuration kept changing (a writer that never finishes)",
            });
        };
        if time_base.1 == 0 && config.is_empty() {
            return Ok(None);
        }
        Ok(Some(crate::CodecConfig {
            time_base,
            profile_level,
            config,
        }))
    }

    fn next_inner(&mut self, timeout: Option<Duration>, encoded: bool) -> Result<Frame, ReadError> {
        self.check_fork()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let timed_out = |name: &str| ReadError::Timeout {
            name: name.to_string(),
            after: timeout.unwrap_or_default(),
        };
        loop {
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let Some(att) = self.connection()? else {
                if remaining.is_some_and(|r| r.is_zero()) {
                    return Err(timed_out(&self.name));
                }
                std::thread::sleep(
                    remaining.map_or(REATTACH_INTERVAL, |r| r.min(REATTACH_INTERVAL)),
                );
                continue;
            };
            // Sleep below until a frame newer than `seen` is published: an
            // encoded reader waiting for a keyframe has seen the newest frame
            // already and must not spin on it.
            let (taken, seen) = if encoded {
                let (newest, _) =
                    protocol::unpack_latest(att.seg.live().latest.load(Ordering::Acquire));
                let taken = self.take_encoded(&att)?;
                (taken, newest.max(self.last_seq))
            } else {
                let taken = self.take(&att, false)?;
                (taken, self.last_seq)
            };
            if let Some(frame) = taken {
                return Ok(frame);
            }
            if att.closed() {
                self.lost()?;
                continue;
            }
            if remaining.is_some_and(|r| r.is_zero()) {
                return Err(timed_out(&self.name));
            }
            let chunk = remaining.map_or(LIVENESS_INTERVAL, |r| r.min(LIVENESS_INTERVAL));
            if self.wait(&att, chunk, seen) == sys::Wait::TimedOut && !att.seg.producer_alive() {
                self.lost()?;
            }
        }
    }

    /// Sleep until the producer publishes (or closes), at most `chunk`.
    fn wait(&self, att: &Attachment, chunk: Duration, seen: u64) -> sys::Wait {
        let seg = &att.seg;
        let live = seg.live();
        let waiting = &seg.reader(att.entry).waiting;
        // Wake-up handshake (protocol.rs, "Wake-ups"), partner of
        // `protocol::needs_wake` in the writer: flag ourselves, load the
        // futex word, then look for a frame once more before sleeping.
        let word = protocol::prepare_wait(waiting, &live.wake_seq);
        let (newest, _) = protocol::unpack_latest(live.latest.load(Ordering::Acquire));
        let r = if newest > seen || att.closed() {
            sys::Wait::Woken
        } else {
            sys::futex_wait(&live.wake_seq, word, Some(chunk))
        };
        protocol::done_waiting(waiting);
        r
    }

    fn poll(&mut self, allow_same: bool) -> Result<Option<Frame>, ReadError> {
        self.check_fork()?;
        let Some(att) = self.connection()? else {
            return Ok(None);
        };
        if let Some(f) = self.take(&att, allow_same)? {
            return Ok(Some(f));
        }
        if att.closed() {
            self.lost()?;
        }
        Ok(None)
    }

    /// The current attachment, re-attaching if the producer came back.
    fn connection(&mut self) -> Result<Option<Arc<Attachment>>, ReadError> {
        if let Some(a) = &self.conn {
            return Ok(Some(a.clone()));
        }
        match Attachment::open(&self.name, &self.path) {
            Ok(att) => {
                if att.seg.info.instance_id != self.instance {
                    self.last_seq = 0;
                    self.keyframe_asked = false;
                    self.instance = att.seg.info.instance_id;
                }
                self.spec = att.seg.info.spec;
                self.gone_reported = false;
                let att = Arc::new(att);
                self.conn = Some(att.clone());
                Ok(Some(att))
            }
            Err(AttachError::NotFound { .. } | AttachError::ProducerGone { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The producer is gone: drop the attachment; say so once.
    fn lost(&mut self) -> Result<(), ReadError> {
        self.conn = None;
        if self.gone_reported {
            Ok(())
        } else {
            self.gone_reported = true;
            Err(ReadError::ProducerGone {
                name: self.name.clone(),
            })
        }
    }

    /// Hold the newest frame if it is newer than the last taken (or equal,
    /// with `allow_same`).
    fn take(
        &mut self,
        att: &Arc<Attachment>,
        allow_same: bool,
    ) -> Result<Option<Frame>, ReadError> {
        let seg = &att.seg;
        let g = seg.info.geometry;
        // The writer publishes 60-1000 frames a second and a retry only
        // happens when it claimed our frame's slot in between; a handful of
        // retries is plenty, the bound only guards against hostile memory.
        for _ in 0..1000 {
            // SYNC POINT with the Release store of `latest` in the writer.
            let (seq, slot) = protocol::unpack_latest(seg.live().latest.load(Ordering::Acquire));
            if seq == 0 || seq < self.last_seq || (seq == self.last_seq && !allow_same) {
                return Ok(None);
            }
            if slot >= g.slot_count {
                return Err(ReadError::Corrupt {
                    name: self.name.clone(),
                    slot: slot.into(),
                    seq,
                    why: "newest-frame slot index out of range",
                });
            }
            if !att.hold(slot, seq)? {
                continue;
            }
            return self.held_frame(att, slot, seq).map(Some);
        }
        Ok(None)
    }

    /// The frame in `slot`, which this reader now holds for `seq`: read its
    /// descriptor, check it, count it. On error the hold is released.
    fn held_frame(
        &mut self,
        att: &Arc<Attachment>,
        slot: u32,
        seq: u64,
    ) -> Result<Frame, ReadError> {
        let seg = &att.seg;
        let g = seg.info.geometry;
        let d = seg.slot(slot);
        // Relaxed: ordered by the Acquire load of the state in `hold`.
        let len = d.len.load(Ordering::Relaxed);
        let frame = Frame {
            att: att.clone(),
            slot,
            seq,
            len: len as usize,
            mono_ns: d.mono_ns.load(Ordering::Relaxed),
            realtime_ns: d.realtime_ns.load(Ordering::Relaxed),
            flags: FrameFlags(d.flags.load(Ordering::Relaxed)),
            pts: d.pts.load(Ordering::Relaxed),
            source_seq: d.source_seq.load(Ordering::Relaxed),
            skipped: if self.last_seq == 0 || seq <= self.last_seq {
                0
            } else {
                seq - self.last_seq - 1
            },
        };
        let expected = seg.info.spec.frame_size() as u64;
        if len > g.slot_capacity || (expected != 0 && len != expected) {
            return Err(ReadError::Corrupt {
                name: self.name.clone(),
                slot: slot.into(),
                seq,
                why: "payload length does not fit the slot or the format",
            });
        }
        let e = seg.reader(att.entry);
        e.frames.fetch_add(1, Ordering::Relaxed);
        e.skipped.fetch_add(frame.skipped, Ordering::Relaxed);
        e.last_seq.store(seq, Ordering::Relaxed);
        self.last_seq = seq;
        Ok(frame)
    }

    /// Encoded buses: the frame after the last one taken if the ring still
    /// has it; otherwise (first call, or this reader fell behind) the
    /// newest keyframe newer than the last one taken, with
    /// [`Frame::skipped`] saying how many were lost. `None`: nothing to
    /// take yet (no newer frame, or no keyframe to restart from: then a
    /// keyframe has been asked for, once per gap).
    fn take_encoded(&mut self, att: &Arc<Attachment>) -> Result<Option<Frame>, ReadError> {
        let seg = &att.seg;
        // A handful of retries: one happens only when the writer reused a
        // slot between our scan and our hold.
        for _ in 0..16 {
            let (newest, _) = protocol::unpack_latest(seg.live().latest.load(Ordering::Acquire));
            if newest == 0 || newest <= self.last_seq {
                return Ok(None);
            }
            let next = self.last_seq + 1;
            let mut successor = None;
            let mut keyframe: Option<(u64, u32)> = None;
            let mut saw_writing = false;
            for slot in 0..seg.info.geometry.slot_count {
                let d = seg.slot(slot);
                // Acquire: the flags below are those published with this
                // sequence (checked again under the hold).
                let st = d.state.load(Ordering::Acquire);
                if st & protocol::WRITING != 0 {
                    // Being written, or a claim that found the slot held and
                    // is about to restore it (it may hold our successor).
                    saw_writing = true;
                    continue;
                }
                if st == 0 {
                    continue;
                }
                let seq = st >> 1;
                if self.last_seq != 0 && seq == next {
                    successor = Some((seq, slot));
                }
                let key = FrameFlags(d.flags.load(Ordering::Relaxed)).contains(FrameFlags::KEY);
                if key
                    && seq > self.last_seq
                    && seq <= newest
                    && keyframe.is_none_or(|(k, _)| seq > k)
                {
                    keyframe = Some((seq, slot));
                }
            }
            if successor.is_none() && saw_writing && self.last_seq != 0 {
                // A failed claim sets `W` for a moment on exactly the oldest
                // slot, which for a lagging reader is its successor: look
                // again before jumping to a keyframe.
                std::hint::spin_loop();
                continue;
            }
            let Some((seq, slot)) = successor.or(keyframe) else {
                if !self.keyframe_asked {
                    self.keyframe_asked = true;
                    self.ask_keyframe(att);
                }
                return Ok(None);
            };
            if !att.hold(slot, seq)? {
                continue;
            }
            let frame = self.held_frame(att, slot, seq)?;
            if successor.is_none() && !frame.flags.contains(FrameFlags::KEY) {
                // The slot was rewritten between the scan and the hold with
                // the same sequence: impossible unless the memory is
                // hostile.
                return Err(ReadError::Corrupt {
                    name: self.name.clone(),
                    slot: slot.into(),
                    seq,
                    why: "keyframe flag changed under a hold",
                });
            }
            self.keyframe_asked = false;
            return Ok(Some(frame));
        }
        Ok(None)
    }

    fn ask_keyframe(&self, att: &Attachment) {
        let seg = &att.seg;
        seg.reader(att.entry)
            .keyframe_requests
            .fetch_add(1, Ordering::Relaxed);
        seg.live().keyframe_requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// A frame held in place in shared memory. Derefs to its bytes; dropping it
/// releases the slot to the writer.
pub struct Frame {
    att: Arc<Attachment>,
    slot: u32,
    seq: u64,
    len: usize,
    mono_ns: u64,
    realtime_ns: u64,
    flags: FrameFlags,
    pts: u64,
    source_seq: u64,
    skipped: u64,
}

impl Frame {
    /// Encoded frames: presentation time in the bus's time base
    /// ([`Reader::codec`]).
    pub fn pts(&self) -> u64 {
        self.pts
    }

    /// Encoded frames: sequence number of the raw frame it was made from.
    pub fn source_seq(&self) -> u64 {
        self.source_seq
    }

    /// Whether the frame is a keyframe (every raw and MJPEG frame is).
    pub fn is_keyframe(&self) -> bool {
        self.flags.contains(FrameFlags::KEY)
    }

    /// Sequence number (1 for a producer's first frame).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Capture time, CLOCK_MONOTONIC ns.
    pub fn mono_ns(&self) -> u64 {
        self.mono_ns
    }

    /// Capture time, CLOCK_REALTIME ns.
    pub fn realtime_ns(&self) -> u64 {
        self.realtime_ns
    }

    /// Flags.
    pub fn flags(&self) -> FrameFlags {
        self.flags
    }

    /// Frames published between the previous frame this reader took and
    /// this one, which it never saw.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Format and geometry.
    pub fn spec(&self) -> &FrameSpec {
        &self.att.seg.info.spec
    }

    /// Slot index (diagnostics and tests).
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Plane `i` of a raw frame.
    pub fn plane(&self, i: usize) -> Option<&[u8]> {
        let p = self.spec().planes().get(i)?;
        self.get(p.offset as usize..p.offset as usize + p.len())
    }

    /// Whether `ptr` lies inside the bus's shared data mapping (tests and
    /// bindings proving zero-copy).
    pub fn is_in_mapping(&self, ptr: *const u8) -> bool {
        let (base, len) = self.att.seg.data_range();
        (base..base + len).contains(&(ptr as usize))
    }
}

impl std::ops::Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the frame holds its slot until dropped, so the writer does
        // not write it; `len <= slot_capacity` was checked in `take`.
        unsafe { self.att.seg.slot_bytes(self.slot, self.len) }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        self.att.release(self.slot);
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("bus", &self.att.name)
            .field("seq", &self.seq)
            .field("slot", &self.slot)
            .field("len", &self.len)
            .field("skipped", &self.skipped)
            .finish()
    }
}
