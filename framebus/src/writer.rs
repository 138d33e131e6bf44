//! The producer side: create a bus, loan slots, publish frames.

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::offset_of;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{CreateError, PublishError};
use crate::format::FrameSpec;
use crate::layout::{
    self, state, FixedHeader, Geometry, Header, HeaderError, LiveHeader, HEADER_SIZE, MAGIC,
};
use crate::name::{default_shm_dir, segment_path, validate_name, TEMP_PREFIX};
use crate::protocol::ReaderTable;
use crate::segment::Segment;
use crate::{protocol, sys};

/// Frame flags.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct FrameFlags(pub u32);

impl FrameFlags {
    /// A key frame (always set for raw and MJPEG frames).
    pub const KEY: FrameFlags = FrameFlags(1);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: FrameFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Metadata the producer attaches to each frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// Capture time, CLOCK_MONOTONIC ns.
    pub mono_ns: u64,
    /// Capture time, CLOCK_REALTIME ns.
    pub realtime_ns: u64,
    /// Flags.
    pub flags: FrameFlags,
    /// Encoded frames: presentation time in the bus's time base
    /// ([`Writer::set_codec`]); 0 for raw frames.
    pub pts: u64,
    /// Encoded frames: sequence number of the raw frame this one was made
    /// from (its capture times go in `mono_ns`/`realtime_ns`); 0 if none.
    pub source_seq: u64,
}

impl FrameMeta {
    /// Now, as a key frame.
    pub fn now() -> FrameMeta {
        FrameMeta {
            mono_ns: sys::monotonic_ns(),
            realtime_ns: sys::realtime_ns(),
            flags: FrameFlags::KEY,
            pts: 0,
            source_seq: 0,
        }
    }
}

/// What a decoder needs besides the frames of an encoded bus, kept in the
/// bus header ([`Writer::set_codec`], [`crate::Reader::codec`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodecConfig {
    /// The unit of [`FrameMeta::pts`]: `num / den` seconds (video: 1/90000).
    pub time_base: (u32, u32),
    /// H.264: `profile_idc << 16 | constraint_flags << 8 | level_idc`.
    pub profile_level: u32,
    /// Out-of-band configuration (H.264: SPS and PPS, Annex B), at most
    /// [`layout::CONFIG_MAX`] bytes.
    pub config: Vec<u8>,
}

/// How to create a bus.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Slots in the ring (3..=64, [`layout::ring_rule`]). The writer never
    /// drops a frame while `slots >= readers * max_held + 2`.
    pub slots: u32,
    /// Reader entries (how many readers may attach at once).
    pub max_readers: u32,
    /// Slots one reader may hold at once (1..=slots-2).
    pub max_held: u32,
    /// Bytes a slot holds. Raw formats default to (and cannot go below) one
    /// frame; compressed formats default to 1.5 bytes per pixel.
    pub slot_capacity: Option<usize>,
    /// File mode of the segment. Default 0600, or 0660 with `group`.
    pub mode: Option<u32>,
    /// Group owning the segment (readers in that group may attach).
    pub group: Option<u32>,
    /// Directory holding the segment (default: `FRAMEBUS_SHM_DIR` or
    /// `/dev/shm`).
    pub shm_dir: Option<PathBuf>,
    /// What the frames come from, for `framebus ls` (truncated to 95 bytes).
    pub source: String,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            slots: 8,
            max_readers: 64,
            max_held: 4,
            slot_capacity: None,
            mode: None,
            group: None,
            shm_dir: None,
            source: String::new(),
        }
    }
}

impl WriterOptions {
    /// Bytes of shared memory a bus of `spec` created with these options
    /// takes: what [`Writer::create`] allocates (`posix_fallocate`, so all
    /// of it is claimed at once). `framebus doctor` adds these up to check
    /// `/dev/shm` before anything is created. Errors say which option is
    /// wrong, as `create` would.
    pub fn segment_size(&self, spec: &FrameSpec) -> Result<u64, String> {
        self.geometry(spec).map(|g| g.total_size)
    }

    /// The segment's layout, after the checks `create` makes.
    fn geometry(&self, spec: &FrameSpec) -> Result<Geometry, String> {
        if let Err((field, value, why)) = layout::ring_rule(self.slots, self.max_held) {
            let field = if field == "slot_count" {
                "slots"
            } else {
                field
            };
            return Err(format!(
                "{field} = {value}: {why} (slots {}, max_held {})",
                self.slots, self.max_held
            ));
        }
        if !(1..=layout::MAX_READERS).contains(&self.max_readers) {
            return Err(format!(
                "max_readers must be 1..=1024, got {}",
                self.max_readers
            ));
        }
        let frame_size = spec.frame_size();
        let capacity = match (self.slot_capacity, spec.format.is_compressed()) {
            (Some(c), _) if c < frame_size.max(1) => {
                return Err(format!(
                    "slot_capacity {c} is smaller than a {frame_size}-byte frame"
                ));
            }
            (Some(c), _) => c,
            (None, false) => frame_size,
            (None, true) => (spec.width as usize * spec.height as usize * 3 / 2).max(64 * 1024),
        };
        Geometry::new(self.slots, self.max_readers, capacity as u64)
            .filter(|g| usize::try_from(g.total_size).is_ok())
            .ok_or_else(|| {
                format!(
                    "{} slots of {capacity} bytes do not fit in memory",
                    self.slots
                )
            })
    }
}

/// The one writer of a bus.
///
/// Dropping it closes the bus: readers learn at once (`ProducerGone`) and the
/// segment is unlinked.
pub struct Writer {
    name: String,
    path: PathBuf,
    seg: Segment,
    seq: u64,
    next_slot: u32,
    latest_slot: Option<u32>,
    window_start_ns: u64,
    window_frames: u64,
    closed: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("seq", &self.seq)
            .finish()
    }
}

fn io_err(name: &str, op: &'static str, path: &Path, source: io::Error) -> CreateError {
    CreateError::Io {
        name: name.to_string(),
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl Writer {
    /// Create bus `name` for frames of `spec`.
    ///
    /// Fails with [`CreateError::Exists`] if a live producer owns the name. A
    /// segment left by a dead producer is replaced; readers still attached
    /// to it re-attach to the new one by themselves.
    pub fn create(name: &str, spec: FrameSpec, opts: WriterOptions) -> Result<Writer, CreateError> {
        validate_name(name)?;
        let bad = |why: String| CreateError::Options {
            name: name.to_string(),
            why,
        };
        let geometry = opts.geometry(&spec).map_err(bad)?;
        let dir = opts.shm_dir.clone().unwrap_or_else(default_shm_dir);
        let path = segment_path(&dir, name);
        let mode = opts
            .mode
            .unwrap_or(if opts.group.is_some() { 0o660 } else { 0o600 });

        let instance_id = sys::random_u64();
        let tmp = dir.join(format!(
            "{TEMP_PREFIX}{name}.{}.{instance_id:016x}",
            std::process::id()
        ));
        // Registered with the fork handler as it is opened: a child forked
        // at any later moment holds no copy of our liveness lock.
        let (file, registration) = crate::fork::open_registered(|| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_CLOEXEC)
                .open(&tmp)
        })
        .map_err(|e| io_err(name, "create", &tmp, e))?;
        // From here on, any failure removes the temporary file.
        let result = Self::init_and_link(
            name,
            &spec,
            &opts,
            geometry,
            mode,
            instance_id,
            &file,
            &tmp,
            &path,
            &dir,
        );
        let _ = std::fs::remove_file(&tmp);
        let info = result?;
        sweep_stale_temps(&dir, name);
        // SAFETY: `info` was validated against this file's size just now and
        // the file never changes size.
        let seg = unsafe { Segment::map(file, registration, info, true, true) }
            .map_err(|e| io_err(name, "mmap", &path, e))?;
        let now = sys::monotonic_ns();
        Ok(Writer {
            name: name.to_string(),
            path,
            seg,
            seq: 0,
            next_slot: 0,
            latest_slot: None,
            window_start_ns: now,
            window_frames: 0,
            closed: false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn init_and_link(
        name: &str,
        spec: &FrameSpec,
        opts: &WriterOptions,
        g: Geometry,
        mode: u32,
        instance_id: u64,
        file: &File,
        tmp: &Path,
        path: &Path,
        dir: &Path,
    ) -> Result<layout::Validated, CreateError> {
        // The umask may have cleared bits of `mode`; set it exactly.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_err(name, "chmod", tmp, e))?;
        if let Some(gid) = opts.group {
            std::os::unix::fs::fchown(file, None, Some(gid))
                .map_err(|e| io_err(name, "chown", tmp, e))?;
        }
        // Our liveness lock goes on the inode before anyone can see it.
        if !sys::try_lock(file.as_fd(), sys::PRODUCER_LOCK_BYTE)
            .map_err(|e| io_err(name, "lock", tmp, e))?
        {
            return Err(io_err(
                name,
                "lock",
                tmp,
                io::Error::other("fresh segment already locked"),
            ));
        }
        sys::allocate(file.as_fd(), g.total_size).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                CreateError::NoSpace {
                    name: name.to_string(),
                    dir: dir.to_path_buf(),
                    bytes: g.total_size,
                }
            } else {
                io_err(name, "allocate", tmp, e)
            }
        })?;
        let header = Header {
            fixed: FixedHeader::new(spec, g, opts.max_held, instance_id, &opts.source),
            live: LiveHeader::new(state::LIVE),
        };
        let header = layout::as_bytes(&header);
        file.write_all_at(header, 0)
            .map_err(|e| io_err(name, "write header", tmp, e))?;
        // Check our own header with the readers' validator: what we publish
        // is exactly what they accept.
        let info =
            layout::validate_header(header, g.total_size).map_err(|e| CreateError::Options {
                name: name.to_string(),
                why: format!("internal layout error: {e}"),
            })?;

        // Each round links our segment under the name or learns why not.
        // A dead producer's segment we replace stays open (and locked by us)
        // until our own link has landed or lost, so no second creator can
        // take it for stale in between (see `replace_if_stale`).
        let deadline = Instant::now() + LINK_PATIENCE;
        let mut _replaced: Option<File> = None;
        loop {
            match std::fs::hard_link(tmp, path) {
                Ok(()) => return Ok(info),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if let Some(stale) = replace_if_stale(name, path)? {
                        _replaced = Some(stale);
                    }
                }
                Err(e) => return Err(io_err(name, "link", path, e)),
            }
            if Instant::now() > deadline {
                return Err(io_err(
                    name,
                    "link",
                    path,
                    io::Error::other("the name kept being re-created by someone else"),
                ));
            }
        }
    }

    /// Bus name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Segment path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frame spec.
    pub fn spec(&self) -> &FrameSpec {
        &self.seg.info.spec
    }

    /// Bytes a slot holds.
    pub fn slot_capacity(&self) -> usize {
        self.seg.info.geometry.slot_capacity as usize
    }

    /// Sequence number of the last published frame (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Whether this writer was inherited across `fork()` (it is inert in
    /// the child: see [`PublishError::Forked`]).
    pub fn is_forked(&self) -> bool {
        self.seg.gen.forked()
    }

    fn usable(&self) -> Result<(), PublishError> {
        if self.seg.gen.forked() {
            return Err(PublishError::Forked {
                name: self.name.clone(),
            });
        }
        if self.closed {
            return Err(PublishError::Closed {
                name: self.name.clone(),
            });
        }
        Ok(())
    }

    /// Loan a free slot to fill in place. Never waits for readers: if they
    /// hold every usable slot the frame is dropped, counted, and
    /// [`PublishError::AllSlotsHeld`] returned.
    pub fn loan(&mut self) -> Result<Loan<'_>, PublishError> {
        self.usable()?;
        let n = self.seg.info.geometry.slot_count;
        for attempt in 0..2 {
            for k in 0..n {
                let i = (self.next_slot + k) % n;
                // Never overwrite the newest frame: `latest()` always finds
                // it, and a reader racing for it rarely has to retry.
                if Some(i) == self.latest_slot {
                    continue;
                }
                if protocol::claim(&self.seg.slot(i).state, &self.seg, 1 << i).is_some() {
                    self.next_slot = (i + 1) % n;
                    let len = if self.spec().format.is_compressed() {
                        0
                    } else {
                        self.spec().frame_size()
                    };
                    return Ok(Loan {
                        writer: self,
                        slot: i,
                        len,
                        published: false,
                    });
                }
            }
            if attempt == 0 {
                self.reclaim_dead_readers();
            }
        }
        self.seg
            .live()
            .dropped_all_held
            .fetch_add(1, Ordering::Relaxed);
        Err(PublishError::AllSlotsHeld {
            name: self.name.clone(),
            slots: n,
        })
    }

    /// Copy `bytes` into a slot and publish it. Returns the frame's sequence.
    pub fn publish_from(&mut self, bytes: &[u8], meta: FrameMeta) -> Result<u64, PublishError> {
        let spec = *self.spec();
        if !spec.format.is_compressed() && bytes.len() != spec.frame_size() {
            return Err(PublishError::WrongSize {
                name: self.name.clone(),
                format: spec.format,
                expected: spec.frame_size(),
                len: bytes.len(),
            });
        }
        if bytes.len() > self.slot_capacity() {
            self.seg.live().oversize.fetch_add(1, Ordering::Relaxed);
            return Err(PublishError::TooLarge {
                name: self.name.clone(),
                len: bytes.len(),
                capacity: self.slot_capacity(),
            });
        }
        let mut loan = self.loan()?;
        loan.set_len(bytes.len())?;
        loan.copy_from_slice(bytes);
        Ok(loan.publish(meta))
    }

    fn publish_slot(&mut self, slot: u32, len: usize, meta: FrameMeta) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        let d = self.seg.slot(slot);
        // Relaxed: made visible by the Release store in `protocol::publish`.
        d.len.store(len as u64, Ordering::Relaxed);
        d.mono_ns.store(meta.mono_ns, Ordering::Relaxed);
        d.realtime_ns.store(meta.realtime_ns, Ordering::Relaxed);
        d.flags.store(meta.flags.0, Ordering::Relaxed);
        d.pts.store(meta.pts, Ordering::Relaxed);
        d.source_seq.store(meta.source_seq, Ordering::Relaxed);
        protocol::publish(&d.state, seq);
        let live = self.seg.live();
        // SYNC POINT with the Acquire load of `latest` in `Reader::take`.
        live.latest
            .store(protocol::pack_latest(seq, slot), Ordering::Release);
        self.latest_slot = Some(slot);
        // Wake-up handshake (protocol.rs, "Wake-ups"): a system call only
        // when some reader's waiting flag is set.
        if protocol::needs_wake(&live.wake_seq, &self.seg, seq) {
            sys::futex_wake_all(&live.wake_seq);
            live.wake_calls.fetch_add(1, Ordering::Relaxed);
        }
        self.after_publish();
        seq
    }

    fn after_publish(&mut self) {
        let live = self.seg.live();
        live.published.fetch_add(1, Ordering::Relaxed);
        // The writer's own clock (as the rate window below): `framebus stat`
        // turns it into the age of the last frame.
        live.last_publish_ns
            .store(sys::realtime_ns(), Ordering::Relaxed);
        self.window_frames += 1;
        // The writer's own clock, never the caller's timestamps: a capture
        // time in the future (or from another clock) must not freeze the
        // rate window or the dead-reader sweep.
        let now = sys::monotonic_ns();
        let elapsed = now.saturating_sub(self.window_start_ns);
        if elapsed >= 1_000_000_000 {
            let milli = self.window_frames * 1_000_000_000_000 / elapsed;
            self.seg
                .live()
                .measured_fps_milli
                .store(milli, Ordering::Relaxed);
            self.window_start_ns = now;
            self.window_frames = 0;
            // Once a second, free the entries of readers that died.
            self.reclaim_dead_readers();
        }
    }

    /// Clear the entries of readers whose process is gone. Returns how many.
    pub fn reclaim_dead_readers(&self) -> usize {
        if self.seg.gen.forked() {
            return 0;
        }
        let mut freed = 0;
        for i in 0..self.seg.scan_len() {
            let e = self.seg.reader(i);
            if e.held.load(Ordering::Relaxed) == 0
                && e.pid.load(Ordering::Relaxed) == 0
                && e.waiting.load(Ordering::Relaxed) == 0
            {
                continue;
            }
            let byte = sys::reader_lock_byte(i);
            // Taking the entry's lock proves no live reader owns it, and keeps
            // a new reader from claiming it while we clear it.
            if let Ok(true) = sys::try_lock(self.seg.file.as_fd(), byte) {
                protocol::reclaim(&e.held, &e.waiting);
                e.pid.store(0, Ordering::Relaxed);
                let _ = sys::unlock(self.seg.file.as_fd(), byte);
                freed += 1;
            }
        }
        freed
    }

    /// Set the codec configuration readers of an encoded bus decode with
    /// (seqlock-protected in the header: a reader never sees half of it).
    /// Call before the first frame and again whenever it changes (before
    /// the keyframe that uses it).
    pub fn set_codec(&mut self, codec: &CodecConfig) -> Result<(), PublishError> {
        self.usable()?;
        if codec.config.len() > layout::CONFIG_MAX {
            return Err(PublishError::TooLarge {
                name: self.name.clone(),
                len: codec.config.len(),
                capacity: layout::CONFIG_MAX,
            });
        }
        let live = self.seg.live();
        live.time_base_num
            .store(codec.time_base.0, Ordering::Relaxed);
        live.time_base_den
            .store(codec.time_base.1, Ordering::Relaxed);
        protocol::seqlock_write(&live.config_seq, || {
            live.config_len
                .store(codec.config.len() as u32, Ordering::Relaxed);
            live.profile_level
                .store(codec.profile_level, Ordering::Relaxed);
            for (word, chunk) in live.config.iter().zip(codec.config.chunks(8)) {
                let mut b = [0u8; 8];
                b[..chunk.len()].copy_from_slice(chunk);
                word.store(u64::from_le_bytes(b), Ordering::Relaxed);
            }
        });
        Ok(())
    }

    /// Empty the ring: every slot no reader holds is emptied, and no frame
    /// is the newest until the next publish. Frames readers hold stay
    /// valid. For an encoder that stops while nobody reads: a reader that
    /// joins later waits for the fresh keyframe instead of starting from a
    /// stale GOP left in the ring.
    pub fn discard(&mut self) -> Result<(), PublishError> {
        self.usable()?;
        let live = self.seg.live();
        // No frame is the newest any more: readers see "nothing yet".
        // Release pairs with the Acquire loads of `latest` in the readers.
        live.latest.store(0, Ordering::Release);
        self.latest_slot = None;
        for i in 0..self.seg.info.geometry.slot_count {
            if protocol::claim(&self.seg.slot(i).state, &self.seg, 1 << i).is_some() {
                protocol::abandon(&self.seg.slot(i).state);
            }
        }
        Ok(())
    }

    /// Readers attached now. A reader that died counts until its entry is
    /// reclaimed: once a second while the writer publishes, or by
    /// [`reclaim_dead_readers`](Writer::reclaim_dead_readers), which a
    /// writer that publishes nothing (an idle encoder) calls itself.
    pub fn readers(&self) -> u32 {
        if self.seg.gen.forked() {
            return 0;
        }
        (0..self.seg.scan_len())
            .filter(|&i| self.seg.reader(i).pid.load(Ordering::Relaxed) != 0)
            .count() as u32
    }

    /// How many keyframes readers have asked for so far (a counter: an
    /// encoder forces one when it grew since the value it last honoured).
    pub fn keyframe_requests(&self) -> u64 {
        self.seg.live().keyframe_requests.load(Ordering::Relaxed)
    }

    /// Report what the source is doing (see [`layout::source_state`]).
    pub fn set_source_state(&self, s: u32) {
        if self.seg.gen.forked() {
            return;
        }
        self.seg.live().source_state.store(s, Ordering::Relaxed);
    }

    /// Report an encoder's load-adaptation step (0: the profile as
    /// configured), the output rate (milli-fps) and target bit rate (bit/s)
    /// at that step, shown by `framebus stat`. A call with another step
    /// than the last adds one to the bus's step-change count. Returns the
    /// step reported before.
    ///
    /// The words are status for people and dashboards, not a protocol:
    /// each is stored on its own (Relaxed; nothing else is published
    /// through them and there is one writer), so a reader racing a change
    /// can see the new step with the old rate for an instant.
    pub fn set_encoder_step(&self, step: u32, fps_milli: u32, bitrate: u64) -> u32 {
        if self.seg.gen.forked() {
            return step;
        }
        let live = self.seg.live();
        live.encoder_fps_milli.store(fps_milli, Ordering::Relaxed);
        live.encoder_bitrate.store(bitrate, Ordering::Relaxed);
        // Only this writer stores the step, so the swap's old value is the
        // one it reported last.
        let before = live.encoder_step.swap(step, Ordering::Relaxed);
        if before != step {
            live.encoder_steps.fetch_add(1, Ordering::Relaxed);
        }
        before
    }

    /// Audio buses: the level of the chunk just published, peak and RMS on
    /// the 16-bit scale (32768 = full scale), for meters (`framebus stat`,
    /// the console). Status, not protocol: Relaxed, like the counters.
    pub fn set_audio_level(&self, peak: u32, rms: u32) {
        if self.seg.gen.forked() {
            return;
        }
        let live = self.seg.live();
        live.audio_peak.store(peak, Ordering::Relaxed);
        live.audio_rms.store(rms, Ordering::Relaxed);
    }

    /// Add to the producer counters shown by `framebus stat`.
    pub fn count(&self, counter: Counter, n: u64) {
        if self.seg.gen.forked() {
            return;
        }
        let live = self.seg.live();
        let word = match counter {
            Counter::Captured => &live.captured,
            Counter::SourceDropped => &live.source_dropped,
            Counter::Restarts => &live.restarts,
            Counter::WatchdogFires => &live.watchdog_fires,
            Counter::KeyframesForced => &live.keyframes_forced,
            Counter::Oversize => &live.oversize,
        };
        word.fetch_add(n, Ordering::Relaxed);
    }

    /// Close the bus now (what dropping the writer does).
    pub fn close(self) {}

    /// Close the bus but keep the mapping, for callers that may still hold
    /// views into it (bindings whose arrays outlive the writer object):
    /// readers learn at once, the name is unlinked and free for a new
    /// producer, and further loans fail with [`PublishError::Closed`].
    /// Idempotent; dropping the writer afterwards only unmaps.
    pub fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if self.seg.gen.forked() {
            // An inherited copy in a forked child: the bus is the parent's.
            return;
        }
        // Readers learn at once: the state says closed and every sleeper is
        // woken (they check the state after waking).
        let live = self.seg.live();
        live.state.store(state::CLOSED, Ordering::Release);
        live.wake_seq.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake_all(&live.wake_seq);
        // Unlink only if the name still points at our segment.
        if let Ok(meta) = std::fs::metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.seg.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Producer counters kept in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Counter {
    /// Frames the source delivered.
    Captured,
    /// Frames the source lost.
    SourceDropped,
    /// Source reopens.
    Restarts,
    /// Watchdog fires.
    WatchdogFires,
    /// Encoders: keyframes forced after readers asked.
    KeyframesForced,
    /// Encoders: access units too large for a slot (also counted by
    /// `Loan::set_len` and `publish_from` when they refuse one).
    Oversize,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A slot loaned for writing. Fill it through `DerefMut`, then
/// [`publish`](Loan::publish). Dropped unpublished, the slot is emptied.
pub struct Loan<'w> {
    writer: &'w mut Writer,
    slot: u32,
    len: usize,
    published: bool,
}

impl Loan<'_> {
    /// Set the payload length (compressed formats; raw frames are always one
    /// frame long).
    pub fn set_len(&mut self, len: usize) -> Result<(), PublishError> {
        let spec = *self.writer.spec();
        if !spec.format.is_compressed() && len != spec.frame_size() {
            return Err(PublishError::WrongSize {
                name: self.writer.name.clone(),
                format: spec.format,
                expected: spec.frame_size(),
                len,
            });
        }
        let cap = self.writer.slot_capacity();
        if len > cap {
            self.writer
                .seg
                .live()
                .oversize
                .fetch_add(1, Ordering::Relaxed);
            return Err(PublishError::TooLarge {
                name: self.writer.name.clone(),
                len,
                capacity: cap,
            });
        }
        self.len = len;
        Ok(())
    }

    /// The whole slot, whatever the payload length (to encode into before
    /// the length is known).
    pub fn capacity_mut(&mut self) -> &mut [u8] {
        // SAFETY: the slot is claimed by this loan (protocol::claim) and the
        // loan borrows the writer mutably, so no other reference exists.
        unsafe { self.writer.seg.slot_bytes_mut(self.slot) }
    }

    /// Each plane of a raw frame, writable.
    pub fn planes_mut(&mut self) -> Vec<&mut [u8]> {
        let spec = *self.writer.spec();
        let mut rest = &mut self.capacity_mut()[..spec.frame_size()];
        let mut out = Vec::with_capacity(spec.planes().len());
        for p in spec.planes() {
            let (plane, tail) = rest.split_at_mut(p.len());
            out.push(plane);
            rest = tail;
        }
        out
    }

    /// Slot index (diagnostics and tests).
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Publish the frame. Returns its sequence number.
    pub fn publish(mut self, meta: FrameMeta) -> u64 {
        self.published = true;
        self.writer.publish_slot(self.slot, self.len, meta)
    }

    /// [`publish`](Loan::publish), for bindings whose loans can cross a
    /// `fork()`: in a forked child it drops the frame and says so
    /// ([`PublishError::Forked`]).
    pub fn try_publish(self, meta: FrameMeta) -> Result<u64, PublishError> {
        if self.writer.seg.gen.forked() {
            return Err(PublishError::Forked {
                name: self.writer.name.clone(),
            });
        }
        Ok(self.publish(meta))
    }

    /// A separate mapping of this loan's slot, for bindings whose views of
    /// the slot can outlive the loan (numpy arrays derived from a loan's
    /// array). Fill the slot through it, then publish with
    /// [`publish_sealed`](Loan::publish_sealed).
    pub fn map_view(&self) -> Result<SlotView, PublishError> {
        if self.writer.seg.gen.forked() {
            return Err(PublishError::Forked {
                name: self.writer.name.clone(),
            });
        }
        self.writer
            .seg
            .map_slot_view(self.slot)
            .map_err(|source| PublishError::Map {
                name: self.writer.name.clone(),
                slot: self.slot,
                source,
            })
    }

    /// Seal `view` (see [`SlotView`]) without publishing: for a binding that
    /// abandons a loan whose views may outlive it.
    pub fn seal_view(&self, view: &SlotView) -> Result<(), PublishError> {
        let name = || self.writer.name.clone();
        if self.writer.seg.gen.forked() {
            return Err(PublishError::Forked { name: name() });
        }
        if view.slot != self.slot || view.instance != self.writer.seg.info.instance_id {
            return Err(PublishError::Map {
                name: name(),
                slot: self.slot,
                source: io::Error::other("the view maps another slot or bus"),
            });
        }
        self.writer
            .seg
            .seal_view(view)
            .map_err(|source| PublishError::Map {
                name: name(),
                slot: self.slot,
                source,
            })
    }

    /// Seal `view` (see [`SlotView`]), then publish the frame. After this,
    /// a write through any pointer into `view` lands in pages private to
    /// this process: readers never see it. On error the frame is dropped
    /// unpublished and the slot given back.
    pub fn publish_sealed(mut self, meta: FrameMeta, view: &SlotView) -> Result<u64, PublishError> {
        // Checks the fork generation and that the view maps this slot.
        self.seal_view(view)?;
        self.published = true;
        Ok(self.writer.publish_slot(self.slot, self.len, meta))
    }
}

/// A separate mapping of one slot (from [`Loan::map_view`]), owned by
/// whoever holds views into it. A binding may reuse an unsealed view for a
/// later loan of the same slot (when it knows no view of it escaped); a
/// sealed one never maps the segment again.
///
/// Sealing ([`Loan::publish_sealed`], [`Loan::seal_view`]) replaces its
/// pages in place with a private copy-on-write mapping of the same file
/// range just before the frame is published: writes through a view kept
/// past the publish land in private pages, so nothing done through it can
/// change what readers see, now or when the slot is loaned again (a sealed
/// view is never used for another loan). What such a view *reads* is not
/// frozen: a page it has not written still reads through to the slot,
/// which later loans rewrite. Dropping it unmaps it. Costs: one `mmap` (populated) per loan, one at publish, one
/// `munmap`.
pub struct SlotView {
    pub(crate) ptr: std::ptr::NonNull<u8>,
    pub(crate) len: usize,
    pub(crate) slot: u32,
    pub(crate) instance: u64,
    /// Taken (unregistered) before the mapping is unmapped.
    pub(crate) registration: Option<crate::fork::Registration>,
}

// SAFETY: the mapping is owned by the view and valid until it is dropped;
// the view hands out raw pointers only, whose use is the holder's contract.
unsafe impl Send for SlotView {}
// SAFETY: as above; `seal` only replaces the pages in place.
unsafe impl Sync for SlotView {}

impl SlotView {
    /// The first byte of the slot.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Bytes mapped (the slot's capacity rounded up to whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a slot has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot this view maps.
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

impl Drop for SlotView {
    fn drop(&mut self) {
        // Unregister first: a fork between the unmap and the unregistering
        // would have the child map zero pages over whatever took the
        // addresses in between.
        drop(self.registration.take());
        // SAFETY: our own mapping, unmapped once; the holder guarantees no
        // pointer into it is used afterwards (it owns every view of it).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl std::fmt::Debug for SlotView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotView")
            .field("slot", &self.slot)
            .field("len", &self.len)
            .finish()
    }
}

impl std::ops::Deref for Loan<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: claimed slot, `len <= capacity` (checked in `set_len`).
        unsafe { self.writer.seg.slot_bytes(self.slot, self.len) }
    }
}

impl std::ops::DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.capacity_mut()[..len]
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        if !self.published {
            protocol::abandon(&self.writer.seg.slot(self.slot).state);
        }
    }
}

/// How long `create` keeps trying to link its segment under a name that
/// others keep taking and freeing.
const LINK_PATIENCE: Duration = Duration::from_secs(5);

/// The name is taken: fail if its producer lives or the file is not ours;
/// unlink it if it is a dead producer's segment.
///
/// `Ok(Some(file))`: the dead segment was unlinked; `file` is it, still
/// open and locked by us. The caller keeps it until its own link attempt is
/// over, so that no other creator can take the lock of the segment it just
/// replaced and unlink the caller's new one by path. `Ok(None)`: the name
/// changed under us (vanished, replaced, or being closed); try again.
///
/// Every unlink of a segment happens under its producer lock (and, for a
/// dead producer's, the replacer lock) after checking that the name still
/// refers to the locked inode, so a name is only ever unlinked by the one
/// process that proved its producer dead, and a loser always names the
/// live winner's pid.
fn replace_if_stale(name: &str, path: &Path) -> Result<Option<File>, CreateError> {
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        // Vanished in between: just try to link again.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(name, "open existing", path, e)),
    };
    let meta = file.metadata().map_err(|e| io_err(name, "stat", path, e))?;
    let mut head = vec![0u8; HEADER_SIZE];
    let got = file
        .read_at(&mut head, 0)
        .map_err(|e| io_err(name, "read", path, e))?;
    let foreign = |why| CreateError::Foreign {
        name: name.to_string(),
        path: path.to_path_buf(),
        why,
    };
    let fixed = FixedHeader::read(&head[..got.min(meta.len() as usize)]).map_err(foreign)?;
    if fixed.magic != MAGIC {
        return Err(foreign(HeaderError::BadMagic {
            found: fixed.magic,
            expected: MAGIC,
        }));
    }
    let same_inode =
        || std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()));
    let state_now = || {
        let mut b = [0u8; 4];
        file.read_exact_at(&mut b, offset_of!(Header, live.state) as u64)
            .map(|()| u32::from_le_bytes(b))
            .unwrap_or(state::LIVE)
    };
    // Replacers (and `framebus rm`) take the replacer byte first; live
    // producers never do. Holding it, we know that whoever holds the
    // producer lock is the live producer (or one closing its bus).
    if !sys::try_lock(file.as_fd(), sys::REPLACER_LOCK_BYTE)
        .map_err(|e| io_err(name, "lock", path, e))?
    {
        // Another process is replacing or removing this segment right now.
        std::thread::sleep(Duration::from_millis(1));
        return Ok(None);
    }
    if !sys::try_lock(file.as_fd(), sys::PRODUCER_LOCK_BYTE)
        .map_err(|e| io_err(name, "lock", path, e))?
    {
        // A live producer, or one closing its bus (it marks it CLOSED and
        // unlinks it): only a name that still names a LIVE segment is a
        // live producer's.
        if !same_inode() || state_now() != state::LIVE {
            std::thread::sleep(Duration::from_millis(1));
            return Ok(None);
        }
        return Err(CreateError::Exists {
            name: name.to_string(),
            pid: fixed.producer_pid,
        });
    }
    // We hold the dead producer's lock. Is the name still this segment?
    if !same_inode() {
        return Ok(None);
    }
    // Readers still attached to it learn it is over, and a creator that
    // opened it before we unlink sees it closing rather than live. (A plain
    // `pwrite`: readers load the word with Acquire, but the segment's
    // producer is dead and nothing else is published with it.)
    let closed = state::CLOSED.to_le_bytes();
    file.write_all_at(&closed, offset_of!(Header, live.state) as u64)
        .map_err(|e| io_err(name, "mark stale segment closed", path, e))?;
    match std::fs::remove_file(path) {
        Ok(()) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(name, "unlink stale", path, e)),
    }
}

/// Remove temporary files of `name` left by producers that died during
/// create (nobody holds their lock). A temporary file younger than
/// [`TEMP_GRACE`] is left alone: its creator may not have locked it yet
/// (it locks it right after `open`), and removing it would make that
/// creator's `link` fail.
fn sweep_stale_temps(dir: &Path, name: &str) {
    let prefix = format!("{TEMP_PREFIX}{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        if !fname.starts_with(&prefix) {
            continue;
        }
        let young = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < TEMP_GRACE);
        if young {
            continue;
        }
        if let Ok(f) = File::open(entry.path()) {
            if let Ok(false) = sys::is_locked(f.as_fd(), sys::PRODUCER_LOCK_BYTE) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// How old an unlocked temporary segment must be before another producer
/// removes it.
const TEMP_GRACE: Duration = Duration::from_secs(10);
