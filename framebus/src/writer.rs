//! The producer side: create a bus, loan slots, publish frames.

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::offset_of;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::error::{CreateError, PublishError};
use crate::format::FrameSpec;
use crate::layout::{self, state, Geometry, Header, HeaderError, HEADER_SIZE, MAGIC, SOURCE_LEN};
use crate::name::{default_shm_dir, segment_path, validate_name, TEMP_PREFIX};
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
}

impl FrameMeta {
    /// Now, as a key frame.
    pub fn now() -> FrameMeta {
        FrameMeta {
            mono_ns: sys::monotonic_ns(),
            realtime_ns: sys::realtime_ns(),
            flags: FrameFlags::KEY,
        }
    }
}

/// How to create a bus.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Slots in the ring (2..=64). A reader holding frames never blocks the
    /// writer as long as it holds fewer than `slots - 1`.
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
        if !(2..=layout::MAX_SLOTS).contains(&opts.slots) {
            return Err(bad(format!("slots must be 2..=64, got {}", opts.slots)));
        }
        if !(1..=layout::MAX_READERS).contains(&opts.max_readers) {
            return Err(bad(format!(
                "max_readers must be 1..=1024, got {}",
                opts.max_readers
            )));
        }
        if opts.max_held == 0 || opts.max_held + 2 > opts.slots {
            return Err(bad(format!(
                "max_held must be 1..=slots-2 so one reader can never starve the writer (slots {}, max_held {})",
                opts.slots, opts.max_held
            )));
        }
        let frame_size = spec.frame_size();
        let capacity = match (opts.slot_capacity, spec.format.is_compressed()) {
            (Some(c), _) if c < frame_size.max(1) => {
                return Err(bad(format!(
                    "slot_capacity {c} is smaller than a {frame_size}-byte frame"
                )));
            }
            (Some(c), _) => c,
            (None, false) => frame_size,
            (None, true) => (spec.width as usize * spec.height as usize * 3 / 2).max(64 * 1024),
        };
        let geometry = Geometry::new(opts.slots, opts.max_readers, capacity as u64)
            .filter(|g| usize::try_from(g.total_size).is_ok())
            .ok_or_else(|| {
                bad(format!(
                    "{} slots of {capacity} bytes do not fit in memory",
                    opts.slots
                ))
            })?;
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
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
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
        let seg = unsafe { Segment::map(file, info, true, true) }
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
        let header = header_bytes(spec, opts, g, instance_id);
        file.write_all_at(&header, 0)
            .map_err(|e| io_err(name, "write header", tmp, e))?;
        // Check our own header with the readers' validator: what we publish
        // is exactly what they accept.
        let info =
            layout::validate_header(&header, g.total_size).map_err(|e| CreateError::Options {
                name: name.to_string(),
                why: format!("internal layout error: {e}"),
            })?;

        for _ in 0..8 {
            match std::fs::hard_link(tmp, path) {
                Ok(()) => return Ok(info),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => replace_if_stale(name, path)?,
                Err(e) => return Err(io_err(name, "link", path, e)),
            }
        }
        Err(io_err(
            name,
            "link",
            path,
            io::Error::other("the name kept being re-created by someone else"),
        ))
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

    /// Loan a free slot to fill in place. Never waits for readers: if they
    /// hold every usable slot the frame is dropped, counted, and
    /// [`PublishError::AllSlotsHeld`] returned.
    pub fn loan(&mut self) -> Result<Loan<'_>, PublishError> {
        if self.closed {
            return Err(PublishError::Closed {
                name: self.name.clone(),
            });
        }
        let n = self.seg.info.geometry.slot_count;
        for attempt in 0..2 {
            for k in 0..n {
                let i = (self.next_slot + k) % n;
                // Never overwrite the newest frame: `latest()` always finds
                // it, and a reader racing for it rarely has to retry.
                if Some(i) == self.latest_slot {
                    continue;
                }
                if protocol::claim(&self.seg.slot(i).state, self.seg.held_masks(), 1 << i).is_some()
                {
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
            .word64(|h| unsafe_field!(h, dropped_all_held))
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
        protocol::publish(&d.state, seq);
        // SYNC POINT with the Acquire load of `latest` in `Reader::take`.
        self.seg
            .latest()
            .store(seq << 8 | u64::from(slot), Ordering::Release);
        self.latest_slot = Some(slot);
        // Wake-up handshake (see `Reader::wait`): store the futex word, then
        // load the waiter count; the reader increments the count, then loads
        // the word. SeqCst on all four: at least one side sees the other, so
        // either we wake it or it sees the new frame without sleeping.
        self.seg.wake_seq().store(seq as u32, Ordering::SeqCst);
        if self.seg.waiters().load(Ordering::SeqCst) != 0 {
            sys::futex_wake_all(self.seg.wake_seq());
        }
        self.after_publish(meta);
        seq
    }

    fn after_publish(&mut self, meta: FrameMeta) {
        let published = self.seg.word64(|h| unsafe_field!(h, published));
        published.fetch_add(1, Ordering::Relaxed);
        self.seg
            .word64(|h| unsafe_field!(h, last_publish_ns))
            .store(meta.realtime_ns, Ordering::Relaxed);
        self.window_frames += 1;
        let now = if meta.mono_ns != 0 {
            meta.mono_ns
        } else {
            sys::monotonic_ns()
        };
        let elapsed = now.saturating_sub(self.window_start_ns);
        if elapsed >= 1_000_000_000 {
            let milli = self.window_frames * 1_000_000_000_000 / elapsed;
            self.seg
                .word64(|h| unsafe_field!(h, measured_fps_milli))
                .store(milli, Ordering::Relaxed);
            self.window_start_ns = now;
            self.window_frames = 0;
            // Once a second, free the entries of readers that died.
            self.reclaim_dead_readers();
        }
    }

    /// Clear the entries of readers whose process is gone. Returns how many.
    pub fn reclaim_dead_readers(&self) -> usize {
        let mut freed = 0;
        for i in 0..self.seg.info.geometry.reader_capacity {
            let e = self.seg.reader(i);
            if e.held.load(Ordering::Relaxed) == 0 && e.pid.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let byte = sys::reader_lock_byte(i);
            // Taking the entry's lock proves no live reader owns it, and keeps
            // a new reader from claiming it while we clear it.
            if let Ok(true) = sys::try_lock(self.seg.file.as_fd(), byte) {
                protocol::reclaim(&e.held);
                e.pid.store(0, Ordering::Relaxed);
                let _ = sys::unlock(self.seg.file.as_fd(), byte);
                freed += 1;
            }
        }
        freed
    }

    /// Report what the source is doing (see [`layout::source_state`]).
    pub fn set_source_state(&self, s: u32) {
        self.seg
            .word32(|h| unsafe_field!(h, source_state))
            .store(s, Ordering::Relaxed);
    }

    /// Add to the producer counters shown by `framebus stat`.
    pub fn count(&self, counter: Counter, n: u64) {
        let word = match counter {
            Counter::Captured => self.seg.word64(|h| unsafe_field!(h, captured)),
            Counter::SourceDropped => self.seg.word64(|h| unsafe_field!(h, source_dropped)),
            Counter::Restarts => self.seg.word64(|h| unsafe_field!(h, restarts)),
            Counter::WatchdogFires => self.seg.word64(|h| unsafe_field!(h, watchdog_fires)),
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
        // Readers learn at once: the state says closed and every sleeper is
        // woken (they check the state after waking).
        self.seg.state().store(state::CLOSED, Ordering::Release);
        self.seg.wake_seq().fetch_add(1, Ordering::SeqCst);
        sys::futex_wake_all(self.seg.wake_seq());
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
pub enum Counter {
    /// Frames the source delivered.
    Captured,
    /// Frames the source lost.
    SourceDropped,
    /// Source reopens.
    Restarts,
    /// Watchdog fires.
    WatchdogFires,
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
        let cap = self.writer.slot_capacity();
        if len > cap {
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

/// The header of a new segment, as bytes.
fn header_bytes(spec: &FrameSpec, opts: &WriterOptions, g: Geometry, instance_id: u64) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_SIZE];
    let mut put = |off: usize, bytes: &[u8]| b[off..off + bytes.len()].copy_from_slice(bytes);
    put(offset_of!(Header, magic), &MAGIC.to_le_bytes());
    put(
        offset_of!(Header, version),
        &layout::LAYOUT_VERSION.to_le_bytes(),
    );
    put(
        offset_of!(Header, header_size),
        &(HEADER_SIZE as u32).to_le_bytes(),
    );
    put(offset_of!(Header, total_size), &g.total_size.to_le_bytes());
    put(
        offset_of!(Header, producer_pid),
        &std::process::id().to_le_bytes(),
    );
    put(
        offset_of!(Header, fourcc),
        &spec.format.fourcc().to_le_bytes(),
    );
    put(offset_of!(Header, width), &spec.width.to_le_bytes());
    put(offset_of!(Header, height), &spec.height.to_le_bytes());
    put(offset_of!(Header, fps_num), &spec.fps.num.to_le_bytes());
    put(offset_of!(Header, fps_den), &spec.fps.den.to_le_bytes());
    put(
        offset_of!(Header, plane_count),
        &(spec.planes().len() as u32).to_le_bytes(),
    );
    put(offset_of!(Header, slot_count), &g.slot_count.to_le_bytes());
    for (i, p) in spec.planes().iter().enumerate() {
        put(
            offset_of!(Header, plane_offset) + 4 * i,
            &p.offset.to_le_bytes(),
        );
        put(
            offset_of!(Header, plane_stride) + 4 * i,
            &p.stride.to_le_bytes(),
        );
    }
    put(
        offset_of!(Header, frame_size),
        &(spec.frame_size() as u64).to_le_bytes(),
    );
    put(
        offset_of!(Header, slot_capacity),
        &g.slot_capacity.to_le_bytes(),
    );
    put(
        offset_of!(Header, slot_stride),
        &g.slot_stride.to_le_bytes(),
    );
    put(
        offset_of!(Header, slots_offset),
        &g.slots_offset.to_le_bytes(),
    );
    put(
        offset_of!(Header, readers_offset),
        &g.readers_offset.to_le_bytes(),
    );
    put(
        offset_of!(Header, data_offset),
        &g.data_offset.to_le_bytes(),
    );
    put(
        offset_of!(Header, reader_capacity),
        &g.reader_capacity.to_le_bytes(),
    );
    put(offset_of!(Header, max_held), &opts.max_held.to_le_bytes());
    put(
        offset_of!(Header, created_realtime_ns),
        &sys::realtime_ns().to_le_bytes(),
    );
    put(offset_of!(Header, instance_id), &instance_id.to_le_bytes());
    let src = opts.source.as_bytes();
    let mut n = src.len().min(SOURCE_LEN - 1);
    while !opts.source.is_char_boundary(n) {
        n -= 1;
    }
    put(offset_of!(Header, source), &src[..n]);
    put(offset_of!(Header, state), &state::LIVE.to_le_bytes());
    b
}

/// The name is taken: fail if its producer lives or the file is not ours;
/// unlink it if it is a dead producer's segment.
fn replace_if_stale(name: &str, path: &Path) -> Result<(), CreateError> {
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        // Vanished in between: just try to link again.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(name, "open existing", path, e)),
    };
    let mut head = vec![0u8; HEADER_SIZE];
    let size = file
        .metadata()
        .map_err(|e| io_err(name, "stat", path, e))?
        .len();
    let got = file
        .read_at(&mut head, 0)
        .map_err(|e| io_err(name, "read", path, e))?;
    let fields = layout::HeaderFields::parse(&head[..got.min(size as usize)]);
    let foreign = |why| CreateError::Foreign {
        name: name.to_string(),
        path: path.to_path_buf(),
        why,
    };
    let fields = fields.map_err(foreign)?;
    if fields.magic != MAGIC {
        return Err(foreign(HeaderError::BadMagic {
            found: fields.magic,
            expected: MAGIC,
        }));
    }
    let live = !sys::try_lock(file.as_fd(), sys::PRODUCER_LOCK_BYTE)
        .map_err(|e| io_err(name, "lock", path, e))?;
    if live {
        return Err(CreateError::Exists {
            name: name.to_string(),
            pid: fields.producer_pid,
        });
    }
    // A dead producer's segment (of any layout version): replace it. We hold
    // its producer lock, so a second producer racing us sees it as live.
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(name, "unlink stale", path, e)),
    }
}

/// Remove temporary files of `name` left by producers that died during
/// create (nobody holds their lock).
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
        if let Ok(f) = File::open(entry.path()) {
            if let Ok(false) = sys::is_locked(f.as_fd(), sys::PRODUCER_LOCK_BYTE) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
