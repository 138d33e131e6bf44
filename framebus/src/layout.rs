//! The bytes of a bus segment: a versioned format, defined once here (and
//! drawn in `docs/shm-layout.md`, which a test checks against this file).
//!
//! ```text
//! 0                 1024            1024+64*S        data_offset (page aligned)
//! +-----------------+---------------+----------------+----------------------------+
//! | Header          | SlotDesc x S  | ReaderEntry x R| slot 0 | slot 1 | ... S-1  |
//! +-----------------+---------------+----------------+----------------------------+
//!   control region: mapped read-write by readers       data region: read-only for readers
//! ```
//!
//! The [`Header`] is a [`FixedHeader`] of plain integers, written once
//! before the segment is linked under its name, followed by a
//! [`LiveHeader`] of atomics. Readers never form a reference to the fixed
//! part inside the mapping (another process could write it): they copy it
//! once ([`FixedHeader::read`]) and validate the copy against the file size
//! before trusting any offset ([`FixedHeader::validate`]). Everything
//! written after publication is an atomic, reached through `&LiveHeader`,
//! `&SlotDesc` and `&ReaderEntry`.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::format::{Fps, FrameSpec, PixelFormat};

/// `b"FRAMEBUS"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"FRAMEBUS");
/// The layout version this crate reads and writes. Version 2 replaced the
/// shared waiter count with a per-reader waiting flag and added the reader
/// high-water mark and the wake-up counter.
pub const LAYOUT_VERSION: u32 = 2;
/// Size of the header region.
pub const HEADER_SIZE: usize = 1024;
/// Size of the [`FixedHeader`] at the start of the header.
pub const FIXED_SIZE: usize = 256;
/// Fewest slots a bus can have (see [`ring_rule`]).
pub const MIN_SLOTS: u32 = 3;
/// Most slots a bus can have (one bit each in a reader's held mask).
pub const MAX_SLOTS: u32 = 64;
/// Most reader entries a bus can have.
pub const MAX_READERS: u32 = 1024;
/// Alignment of the data region and of every slot: 64 KiB, the largest
/// page size Linux runs with (4 KiB x86, 16 KiB Raspberry Pi 5 and Apple
/// arm64, 64 KiB some arm64 servers), so that a slot can always be mapped
/// (and remapped) on its own, whatever the kernel's page size.
pub const PAGE: usize = 65536;
/// Bytes of the `source` description in the header.
pub const SOURCE_LEN: usize = 96;

/// Types that may live in shared memory.
///
/// # Safety
///
/// Implementors are `#[repr(C)]`, hold no pointers or references (addresses
/// differ between processes), have no padding bytes (every byte belongs to
/// a field, so a value can be viewed as bytes), and are valid for every bit
/// pattern (the memory is written by other processes and must be treated as
/// untrusted).
pub unsafe trait ShmSafe: Sized {}

/// The bytes of a shared-memory value (to write a header with `pwrite`).
pub(crate) fn as_bytes<T: ShmSafe>(v: &T) -> &[u8] {
    // SAFETY: `ShmSafe` types have no padding, so every one of the
    // `size_of::<T>()` bytes behind `v` is initialised; the slice borrows `v`.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// A value copied out of bytes (a `pread` buffer); `None` if too short.
pub(crate) fn read_copy<T: ShmSafe>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the source has at least `size_of::<T>()` bytes (checked), the
    // read is unaligned-safe, and `ShmSafe` types are valid for any bits.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The ring rule, stated once and used by both the writer's options check
/// and the readers' header validation: at least [`MIN_SLOTS`] and at most
/// [`MAX_SLOTS`] slots, and one reader holds at most `slots - 2` of them.
///
/// Why `slots - 2`: the writer never overwrites the newest frame (one slot),
/// so with one reader holding `slots - 2` the writer still has one slot to
/// write into. `slots >= readers * max_held + 2` means it never drops.
/// Returns the offending field, its value and why, for either caller's
/// error type.
pub const fn ring_rule(slots: u32, max_held: u32) -> Result<(), (&'static str, u64, &'static str)> {
    if slots < MIN_SLOTS || slots > MAX_SLOTS {
        return Err(("slot_count", slots as u64, "must be 3..=64"));
    }
    if max_held == 0 || max_held > slots - 2 {
        return Err((
            "max_held",
            max_held as u64,
            "must be 1..=slot_count-2, so one reader can never starve the writer",
        ));
    }
    Ok(())
}

/// Segment states, in [`LiveHeader::state`].
pub mod state {
    /// Being set up (only ever seen on a temporary file).
    pub const INIT: u32 = 0;
    /// A producer is publishing.
    pub const LIVE: u32 = 1;
    /// The producer closed the bus cleanly (or a new producer is replacing
    /// a dead one's segment).
    pub const CLOSED: u32 = 2;
}

/// What the producer's source is doing, in [`LiveHeader::source_state`].
pub mod source_state {
    /// Not reported.
    pub const UNKNOWN: u32 = 0;
    /// Delivering frames.
    pub const RUNNING: u32 = 1;
    /// Waiting to reconnect to a lost device.
    pub const RECONNECTING: u32 = 2;
    /// Opening the device.
    pub const OPENING: u32 = 3;
    /// Stopped by the watchdog, about to reopen.
    pub const STALLED: u32 = 4;
    /// Ready, and publishing nothing by design: an encoder whose encoded
    /// bus has no reader (it encodes on demand).
    pub const IDLE: u32 = 5;

    /// A word for each state.
    pub fn name(s: u32) -> &'static str {
        match s {
            RUNNING => "running",
            RECONNECTING => "reconnecting",
            OPENING => "opening",
            STALLED => "stalled",
            IDLE => "idle",
            _ => "unknown",
        }
    }
}

/// The write-once part of the header (bytes 0..256): plain integers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedHeader {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// [`HEADER_SIZE`], so a reader can tell a header it cannot parse.
    pub header_size: u32,
    /// Bytes of the whole segment.
    pub total_size: u64,
    /// Pid of the producer in its own PID namespace (informational; liveness
    /// is the OFD lock on byte 0).
    pub producer_pid: u32,
    /// Pixel format fourcc.
    pub fourcc: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Nominal frame rate numerator.
    pub fps_num: u32,
    /// Nominal frame rate denominator.
    pub fps_den: u32,
    /// Planes in use (0 for compressed formats).
    pub plane_count: u32,
    /// Slots in the ring.
    pub slot_count: u32,
    /// Plane offsets inside a slot.
    pub plane_offset: [u32; 4],
    /// Plane strides.
    pub plane_stride: [u32; 4],
    /// Bytes of one raw frame (0 for compressed formats).
    pub frame_size: u64,
    /// Bytes a slot can hold.
    pub slot_capacity: u64,
    /// Bytes from one slot to the next in the data region.
    pub slot_stride: u64,
    /// Offset of the [`SlotDesc`] array.
    pub slots_offset: u64,
    /// Offset of the [`ReaderEntry`] array.
    pub readers_offset: u64,
    /// Offset of slot 0's bytes (page aligned).
    pub data_offset: u64,
    /// Entries in the reader table.
    pub reader_capacity: u32,
    /// Slots one reader may hold at once.
    pub max_held: u32,
    /// CLOCK_REALTIME at creation, ns.
    pub created_realtime_ns: u64,
    /// Random id of this producer instance (changes on every create).
    pub instance_id: u64,
    /// What the producer captures from, UTF-8, NUL padded.
    pub source: [u8; SOURCE_LEN],
}

/// The live part of the header (bytes 256..1024): atomics only, each group
/// on its own cache line.
#[repr(C)]
pub struct LiveHeader {
    /// [`state`].
    pub state: AtomicU32,
    /// [`source_state`].
    pub source_state: AtomicU32,
    _pad0: [u8; 56],
    /// The newest frame, `sequence << 8 | slot` (packed and unpacked by
    /// `protocol::pack_latest`/`unpack_latest`); 0 before the first.
    pub latest: AtomicU64,
    _pad1: [u8; 56],
    /// Futex word: the low 32 bits of the newest sequence, bumped on publish
    /// and on close.
    pub wake_seq: AtomicU32,
    /// One more than the highest reader entry ever claimed: the writer scans
    /// entries `0..reader_hwm` only. Never decreases.
    pub reader_hwm: AtomicU32,
    _pad2: [u8; 56],
    /// Frames published.
    pub published: AtomicU64,
    /// Frames the writer could not place because readers held every slot.
    pub dropped_all_held: AtomicU64,
    /// CLOCK_REALTIME of the last publish, ns.
    pub last_publish_ns: AtomicU64,
    /// Publish rate over the last second, in milli-frames per second.
    pub measured_fps_milli: AtomicU64,
    /// Producer: frames delivered by the source.
    pub captured: AtomicU64,
    /// Producer: frames the source lost (driver sequence gaps, late frames).
    pub source_dropped: AtomicU64,
    /// Producer: source reopen count.
    pub restarts: AtomicU64,
    /// Producer: watchdog fires.
    pub watchdog_fires: AtomicU64,
    /// Wake-up system calls the writer made (it makes one only when a
    /// reader's waiting flag is set).
    pub wake_calls: AtomicU64,
    _pad3: [u8; 56],
    /// Encoded buses, upstream: readers add one to ask the encoder for a
    /// keyframe; the encoder compares it with the last value it honoured.
    pub keyframe_requests: AtomicU64,
    /// Encoded buses: keyframes the encoder forced (after requests).
    pub keyframes_forced: AtomicU64,
    /// Encoded buses: access units larger than a slot (dropped, counted).
    pub oversize: AtomicU64,
    /// Encoded buses: the unit of `SlotDesc::pts`, numerator (seconds).
    pub time_base_num: AtomicU32,
    /// Denominator (90000 for video: pts in 1/90000 s).
    pub time_base_den: AtomicU32,
    /// Encoded buses: the encoder's load-adaptation step; 0 is the
    /// profile as configured (and what a segment written before this word
    /// existed holds: the words below were padding, always zero).
    pub encoder_step: AtomicU32,
    /// Encoded buses: the output rate at that step, milli-frames per
    /// second; 0 = not reported (the nominal rate).
    pub encoder_fps_milli: AtomicU32,
    /// Encoded buses: how many times the step changed.
    pub encoder_steps: AtomicU64,
    /// Encoded buses: the target bit rate at that step, bits per second;
    /// 0 = not reported.
    pub encoder_bitrate: AtomicU64,
    /// Audio buses: the largest sample magnitude of the last chunk
    /// (0..=32768 is full scale; these 8 bytes were padding, always zero).
    pub audio_peak: AtomicU32,
    /// Audio buses: the RMS of the last chunk, same scale.
    pub audio_rms: AtomicU32,
    /// Seqlock over the codec configuration below: odd while the writer
    /// rewrites it; a reader copies it and retries if the word changed.
    pub config_seq: AtomicU64,
    /// Bytes of `config` in use.
    pub config_len: AtomicU32,
    /// H.264: `profile_idc << 16 | constraint_flags << 8 | level_idc`.
    pub profile_level: AtomicU32,
    /// Codec configuration (H.264: SPS and PPS in Annex B), read and
    /// written 8 bytes at a time as atomics under `config_seq`.
    pub config: [AtomicU64; CONFIG_WORDS],
    _reserved: [u8; HEADER_SIZE - FIXED_SIZE - 400 - CONFIG_WORDS * 8],
}

/// 8-byte words of codec configuration in the header.
pub const CONFIG_WORDS: usize = 32;
/// Most bytes of codec configuration a bus carries.
pub const CONFIG_MAX: usize = CONFIG_WORDS * 8;

impl LiveHeader {
    /// A live header in state `state`, every other word zero.
    pub(crate) fn new(state: u32) -> LiveHeader {
        LiveHeader {
            state: AtomicU32::new(state),
            source_state: AtomicU32::new(0),
            _pad0: [0; 56],
            latest: AtomicU64::new(0),
            _pad1: [0; 56],
            wake_seq: AtomicU32::new(0),
            reader_hwm: AtomicU32::new(0),
            _pad2: [0; 56],
            published: AtomicU64::new(0),
            dropped_all_held: AtomicU64::new(0),
            last_publish_ns: AtomicU64::new(0),
            measured_fps_milli: AtomicU64::new(0),
            captured: AtomicU64::new(0),
            source_dropped: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            watchdog_fires: AtomicU64::new(0),
            wake_calls: AtomicU64::new(0),
            _pad3: [0; 56],
            keyframe_requests: AtomicU64::new(0),
            keyframes_forced: AtomicU64::new(0),
            oversize: AtomicU64::new(0),
            time_base_num: AtomicU32::new(0),
            time_base_den: AtomicU32::new(0),
            encoder_step: AtomicU32::new(0),
            encoder_fps_milli: AtomicU32::new(0),
            encoder_steps: AtomicU64::new(0),
            encoder_bitrate: AtomicU64::new(0),
            audio_peak: AtomicU32::new(0),
            audio_rms: AtomicU32::new(0),
            config_seq: AtomicU64::new(0),
            config_len: AtomicU32::new(0),
            profile_level: AtomicU32::new(0),
            config: std::array::from_fn(|_| AtomicU64::new(0)),
            _reserved: [0; HEADER_SIZE - FIXED_SIZE - 400 - CONFIG_WORDS * 8],
        }
    }
}

/// The segment header: the fixed part, then the live words.
#[repr(C)]
pub struct Header {
    /// Written once, before the segment is linked under its name.
    pub fixed: FixedHeader,
    /// Written while the bus lives.
    pub live: LiveHeader,
}

/// One slot's descriptor.
#[repr(C)]
pub struct SlotDesc {
    /// The state word `seq << 1 | W` (see [`crate::protocol`]).
    pub state: AtomicU64,
    /// Payload bytes.
    pub len: AtomicU64,
    /// CLOCK_MONOTONIC capture time, ns.
    pub mono_ns: AtomicU64,
    /// CLOCK_REALTIME capture time, ns.
    pub realtime_ns: AtomicU64,
    /// [`crate::FrameFlags`] bits.
    pub flags: AtomicU32,
    _pad: [u8; 4],
    /// Encoded frames: presentation time in the bus's time base.
    pub pts: AtomicU64,
    /// Encoded frames: the sequence number of the raw frame it was made
    /// from (0 if none).
    pub source_seq: AtomicU64,
    _pad2: [u8; 8],
}

/// One reader's entry, owned by whoever holds its OFD lock.
#[repr(C)]
pub struct ReaderEntry {
    /// Bit `i` set while slot `i` is held.
    pub held: AtomicU64,
    /// Owner's pid in its own namespace (informational).
    pub pid: AtomicU32,
    /// 1 while the owner sleeps (or is about to) on the futex word; cleared
    /// by the owner after waking and by whoever reclaims a dead owner's
    /// entry, so a reader killed while blocked costs nothing for long.
    pub waiting: AtomicU32,
    /// Frames taken.
    pub frames: AtomicU64,
    /// Frames skipped (published but never taken).
    pub skipped: AtomicU64,
    /// Newest sequence taken.
    pub last_seq: AtomicU64,
    /// CLOCK_REALTIME when attached, ns.
    pub attached_ns: AtomicU64,
    /// Keyframes this reader asked for (encoded buses).
    pub keyframe_requests: AtomicU64,
    _pad1: [u8; 8],
}

// SAFETY: (all five) `#[repr(C)]`, integers, atomics over integers and byte
// arrays only, laid out without padding (the assertions below pin every
// offset and size); every bit pattern is a valid value.
unsafe impl ShmSafe for FixedHeader {}
// SAFETY: as above.
unsafe impl ShmSafe for LiveHeader {}
// SAFETY: as above.
unsafe impl ShmSafe for Header {}
// SAFETY: as above.
unsafe impl ShmSafe for SlotDesc {}
// SAFETY: as above.
unsafe impl ShmSafe for ReaderEntry {}

/// Every field's offset, pinned at compile time: the layout cannot drift
/// without this list (and `docs/shm-layout.md`, checked by
/// `tests/layout_doc.rs`) changing with it.
const _: () = {
    assert!(size_of::<FixedHeader>() == FIXED_SIZE);
    assert!(size_of::<LiveHeader>() == HEADER_SIZE - FIXED_SIZE);
    assert!(size_of::<Header>() == HEADER_SIZE);
    assert!(size_of::<SlotDesc>() == 64);
    assert!(size_of::<ReaderEntry>() == 64);
    assert!(offset_of!(Header, fixed) == 0);
    assert!(offset_of!(Header, live) == FIXED_SIZE);

    assert!(offset_of!(FixedHeader, magic) == 0);
    assert!(offset_of!(FixedHeader, version) == 8);
    assert!(offset_of!(FixedHeader, header_size) == 12);
    assert!(offset_of!(FixedHeader, total_size) == 16);
    assert!(offset_of!(FixedHeader, producer_pid) == 24);
    assert!(offset_of!(FixedHeader, fourcc) == 28);
    assert!(offset_of!(FixedHeader, width) == 32);
    assert!(offset_of!(FixedHeader, height) == 36);
    assert!(offset_of!(FixedHeader, fps_num) == 40);
    assert!(offset_of!(FixedHeader, fps_den) == 44);
    assert!(offset_of!(FixedHeader, plane_count) == 48);
    assert!(offset_of!(FixedHeader, slot_count) == 52);
    assert!(offset_of!(FixedHeader, plane_offset) == 56);
    assert!(offset_of!(FixedHeader, plane_stride) == 72);
    assert!(offset_of!(FixedHeader, frame_size) == 88);
    assert!(offset_of!(FixedHeader, slot_capacity) == 96);
    assert!(offset_of!(FixedHeader, slot_stride) == 104);
    assert!(offset_of!(FixedHeader, slots_offset) == 112);
    assert!(offset_of!(FixedHeader, readers_offset) == 120);
    assert!(offset_of!(FixedHeader, data_offset) == 128);
    assert!(offset_of!(FixedHeader, reader_capacity) == 136);
    assert!(offset_of!(FixedHeader, max_held) == 140);
    assert!(offset_of!(FixedHeader, created_realtime_ns) == 144);
    assert!(offset_of!(FixedHeader, instance_id) == 152);
    assert!(offset_of!(FixedHeader, source) == 160);
    assert!(offset_of!(FixedHeader, source) + SOURCE_LEN == FIXED_SIZE);

    assert!(offset_of!(Header, live.state) == 256);
    assert!(offset_of!(Header, live.source_state) == 260);
    assert!(offset_of!(Header, live.latest) == 320);
    assert!(offset_of!(Header, live.wake_seq) == 384);
    assert!(offset_of!(Header, live.reader_hwm) == 388);
    assert!(offset_of!(Header, live.published) == 448);
    assert!(offset_of!(Header, live.dropped_all_held) == 456);
    assert!(offset_of!(Header, live.last_publish_ns) == 464);
    assert!(offset_of!(Header, live.measured_fps_milli) == 472);
    assert!(offset_of!(Header, live.captured) == 480);
    assert!(offset_of!(Header, live.source_dropped) == 488);
    assert!(offset_of!(Header, live.restarts) == 496);
    assert!(offset_of!(Header, live.watchdog_fires) == 504);
    assert!(offset_of!(Header, live.wake_calls) == 512);
    assert!(offset_of!(Header, live.keyframe_requests) == 576);
    assert!(offset_of!(Header, live.keyframes_forced) == 584);
    assert!(offset_of!(Header, live.oversize) == 592);
    assert!(offset_of!(Header, live.time_base_num) == 600);
    assert!(offset_of!(Header, live.time_base_den) == 604);
    assert!(offset_of!(Header, live.encoder_step) == 608);
    assert!(offset_of!(Header, live.encoder_fps_milli) == 612);
    assert!(offset_of!(Header, live.encoder_steps) == 616);
    assert!(offset_of!(Header, live.encoder_bitrate) == 624);
    assert!(offset_of!(Header, live.audio_peak) == 632);
    assert!(offset_of!(Header, live.audio_rms) == 636);
    assert!(offset_of!(Header, live.config_seq) == 640);
    assert!(offset_of!(Header, live.config_len) == 648);
    assert!(offset_of!(Header, live.profile_level) == 652);
    assert!(offset_of!(Header, live.config) == 656);

    assert!(offset_of!(SlotDesc, state) == 0);
    assert!(offset_of!(SlotDesc, len) == 8);
    assert!(offset_of!(SlotDesc, mono_ns) == 16);
    assert!(offset_of!(SlotDesc, realtime_ns) == 24);
    assert!(offset_of!(SlotDesc, flags) == 32);
    assert!(offset_of!(SlotDesc, pts) == 40);
    assert!(offset_of!(SlotDesc, source_seq) == 48);

    assert!(offset_of!(ReaderEntry, held) == 0);
    assert!(offset_of!(ReaderEntry, pid) == 8);
    assert!(offset_of!(ReaderEntry, waiting) == 12);
    assert!(offset_of!(ReaderEntry, frames) == 16);
    assert!(offset_of!(ReaderEntry, skipped) == 24);
    assert!(offset_of!(ReaderEntry, last_seq) == 32);
    assert!(offset_of!(ReaderEntry, attached_ns) == 40);
    assert!(offset_of!(ReaderEntry, keyframe_requests) == 48);
    // The futex word must be 4-byte aligned.
    assert!(offset_of!(Header, live.wake_seq) % 4 == 0);
};

/// Where each part of a segment goes, computed from the creation parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub slot_count: u32,
    pub reader_capacity: u32,
    pub slot_capacity: u64,
    pub slots_offset: u64,
    pub readers_offset: u64,
    pub data_offset: u64,
    pub slot_stride: u64,
    pub total_size: u64,
}

const fn round_up(v: u64, to: u64) -> Option<u64> {
    v.div_ceil(to).checked_mul(to)
}

impl Geometry {
    /// The layout of a segment with these parameters (`None` on overflow).
    pub(crate) const fn new(
        slot_count: u32,
        reader_capacity: u32,
        slot_capacity: u64,
    ) -> Option<Geometry> {
        let slots_offset = HEADER_SIZE as u64;
        let readers_offset = slots_offset + slot_count as u64 * size_of::<SlotDesc>() as u64;
        let control_end = readers_offset + reader_capacity as u64 * size_of::<ReaderEntry>() as u64;
        let Some(data_offset) = round_up(control_end, PAGE as u64) else {
            return None;
        };
        let Some(slot_stride) = round_up(slot_capacity, PAGE as u64) else {
            return None;
        };
        let Some(data) = slot_stride.checked_mul(slot_count as u64) else {
            return None;
        };
        let Some(total_size) = data_offset.checked_add(data) else {
            return None;
        };
        Some(Geometry {
            slot_count,
            reader_capacity,
            slot_capacity,
            slots_offset,
            readers_offset,
            data_offset,
            slot_stride,
            total_size,
        })
    }
}

/// Why a segment's header cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The file is shorter than a header.
    #[error("segment is {size} bytes, shorter than the {need}-byte header")]
    Truncated {
        /// File size.
        size: u64,
        /// Bytes needed.
        need: u64,
    },
    /// Not a framebus segment at all.
    #[error("not a framebus segment (magic {found:#018x}, expected {expected:#018x})")]
    BadMagic {
        /// Magic found.
        found: u64,
        /// Magic expected.
        expected: u64,
    },
    /// A framebus segment of another layout version.
    #[error("layout version mismatch: segment={found}, required={required}")]
    Version {
        /// Version in the segment.
        found: u32,
        /// Version this library speaks.
        required: u32,
    },
    /// The header claims a size other than the file's.
    #[error("header says the segment is {claimed} bytes but the file is {actual}")]
    SizeMismatch {
        /// Size in the header.
        claimed: u64,
        /// Size of the file.
        actual: u64,
    },
    /// A field out of range or inconsistent with the others.
    #[error("header field `{field}` = {value} is invalid: {why}")]
    Field {
        /// Field name.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The segment is still being set up (a temporary file).
    #[error("segment is not initialised")]
    NotReady,
}

/// A header copied and checked: everything a reader trusts.
#[derive(Clone, Debug)]
pub struct Validated {
    /// Frame format and geometry.
    pub spec: FrameSpec,
    pub(crate) geometry: Geometry,
    pub(crate) max_held: u32,
    /// Producer pid (informational).
    pub producer_pid: u32,
    /// Producer instance id.
    pub instance_id: u64,
    /// Creation time, CLOCK_REALTIME ns.
    pub created_realtime_ns: u64,
    /// Source description.
    pub source: String,
}

impl FixedHeader {
    /// The fixed header of a new segment.
    pub(crate) fn new(
        spec: &FrameSpec,
        g: Geometry,
        max_held: u32,
        instance_id: u64,
        source: &str,
    ) -> FixedHeader {
        let mut plane_offset = [0u32; 4];
        let mut plane_stride = [0u32; 4];
        for (i, p) in spec.planes().iter().enumerate() {
            plane_offset[i] = p.offset;
            plane_stride[i] = p.stride;
        }
        let mut src = [0u8; SOURCE_LEN];
        let mut n = source.len().min(SOURCE_LEN - 1);
        while !source.is_char_boundary(n) {
            n -= 1;
        }
        src[..n].copy_from_slice(&source.as_bytes()[..n]);
        FixedHeader {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            header_size: HEADER_SIZE as u32,
            total_size: g.total_size,
            producer_pid: std::process::id(),
            fourcc: spec.format.fourcc(),
            width: spec.width,
            height: spec.height,
            fps_num: spec.fps.num,
            fps_den: spec.fps.den,
            plane_count: spec.planes().len() as u32,
            slot_count: g.slot_count,
            plane_offset,
            plane_stride,
            frame_size: spec.frame_size() as u64,
            slot_capacity: g.slot_capacity,
            slot_stride: g.slot_stride,
            slots_offset: g.slots_offset,
            readers_offset: g.readers_offset,
            data_offset: g.data_offset,
            reader_capacity: g.reader_capacity,
            max_held,
            created_realtime_ns: crate::sys::realtime_ns(),
            instance_id,
            source: src,
        }
    }

    /// Copy the fixed header out of the first bytes of a segment (from
    /// `pread` or a copy of the mapping). Never panics; fewer than
    /// [`HEADER_SIZE`] bytes give `Truncated`.
    pub fn read(bytes: &[u8]) -> Result<FixedHeader, HeaderError> {
        if bytes.len() < HEADER_SIZE {
            return Err(HeaderError::Truncated {
                size: bytes.len() as u64,
                need: HEADER_SIZE as u64,
            });
        }
        Ok(read_copy::<FixedHeader>(bytes).expect("length checked above"))
    }

    /// Check every field against the others and against `file_size`.
    pub fn validate(&self, file_size: u64) -> Result<Validated, HeaderError> {
        fn field(field: &'static str, value: u64, why: &'static str) -> HeaderError {
            HeaderError::Field { field, value, why }
        }
        if self.magic != MAGIC {
            return Err(HeaderError::BadMagic {
                found: self.magic,
                expected: MAGIC,
            });
        }
        if self.version != LAYOUT_VERSION {
            return Err(HeaderError::Version {
                found: self.version,
                required: LAYOUT_VERSION,
            });
        }
        if self.header_size as usize != HEADER_SIZE {
            return Err(field(
                "header_size",
                self.header_size.into(),
                "must be 1024",
            ));
        }
        if self.total_size != file_size {
            return Err(HeaderError::SizeMismatch {
                claimed: self.total_size,
                actual: file_size,
            });
        }
        if let Err((name, value, why)) = ring_rule(self.slot_count, self.max_held) {
            return Err(field(name, value, why));
        }
        if self.reader_capacity == 0 || self.reader_capacity > MAX_READERS {
            return Err(field(
                "reader_capacity",
                self.reader_capacity.into(),
                "must be 1..=1024",
            ));
        }
        let geometry = Geometry::new(self.slot_count, self.reader_capacity, self.slot_capacity)
            .ok_or(field(
                "slot_capacity",
                self.slot_capacity,
                "segment size overflows",
            ))?;
        if self.slots_offset != geometry.slots_offset {
            return Err(field(
                "slots_offset",
                self.slots_offset,
                "does not follow the header",
            ));
        }
        if self.readers_offset != geometry.readers_offset {
            return Err(field(
                "readers_offset",
                self.readers_offset,
                "does not follow the slot table",
            ));
        }
        if self.data_offset != geometry.data_offset {
            return Err(field(
                "data_offset",
                self.data_offset,
                "does not follow the reader table",
            ));
        }
        if self.slot_stride != geometry.slot_stride {
            return Err(field(
                "slot_stride",
                self.slot_stride,
                "is not the page-rounded slot capacity",
            ));
        }
        if geometry.total_size != file_size {
            return Err(field(
                "slot_capacity",
                self.slot_capacity,
                "slots do not fit the segment",
            ));
        }
        if usize::try_from(file_size).is_err() {
            return Err(field(
                "total_size",
                file_size,
                "larger than the address space",
            ));
        }
        let format = PixelFormat::from_fourcc(self.fourcc).ok_or(field(
            "fourcc",
            self.fourcc.into(),
            "not a pixel format framebus knows",
        ))?;
        let fps = Fps {
            num: self.fps_num,
            den: self.fps_den,
        };
        let planes = self.plane_count as usize;
        if planes > 4 {
            return Err(field("plane_count", planes as u64, "more than 4 planes"));
        }
        let spec = FrameSpec::from_parts(
            format,
            self.width,
            self.height,
            fps,
            &self.plane_stride[..planes],
        )
        .map_err(|_| {
            field(
                "width/height/strides",
                u64::from(self.width),
                "not a valid frame geometry",
            )
        })?;
        for (i, plane) in spec.planes().iter().enumerate() {
            if plane.offset != self.plane_offset[i] {
                return Err(field(
                    "plane_offset",
                    self.plane_offset[i].into(),
                    "planes must be packed in order",
                ));
            }
        }
        if self.frame_size != spec.frame_size() as u64 {
            return Err(field(
                "frame_size",
                self.frame_size,
                "does not match the format and size",
            ));
        }
        if self.slot_capacity < self.frame_size || self.slot_capacity == 0 {
            return Err(field(
                "slot_capacity",
                self.slot_capacity,
                "smaller than a frame",
            ));
        }
        let end = self
            .source
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(SOURCE_LEN);
        Ok(Validated {
            spec,
            geometry,
            max_held: self.max_held,
            producer_pid: self.producer_pid,
            instance_id: self.instance_id,
            created_realtime_ns: self.created_realtime_ns,
            source: String::from_utf8_lossy(&self.source[..end]).into_owned(),
        })
    }
}

/// Parse and validate a header in one step.
pub(crate) fn validate_header(bytes: &[u8], file_size: u64) -> Result<Validated, HeaderError> {
    if (file_size as usize) < HEADER_SIZE {
        return Err(HeaderError::Truncated {
            size: file_size,
            need: HEADER_SIZE as u64,
        });
    }
    FixedHeader::read(bytes)?.validate(file_size)
}

/// Fuzzing entry point: validation of arbitrary header bytes against an
/// arbitrary file size must return, never panic.
#[doc(hidden)]
pub fn fuzz_validate(bytes: &[u8], file_size: u64) -> bool {
    validate_header(bytes, file_size).is_ok()
}
