//! A mapped bus segment: the file, its two mappings and the validated header.
//!
//! The control region (header, slot table, reader table) is mapped
//! read-write by everyone; the data region is mapped read-only by readers,
//! so a reader cannot scribble on frames, and read-write by the writer.

use std::fs::File;
use std::os::fd::AsFd;
use std::ptr::addr_of;
use std::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::{Mmap, MmapMut, MmapOptions};

use crate::layout::{Header, ReaderEntry, SlotDesc, Validated};
use crate::sys;

pub(crate) enum Data {
    ReadOnly(Mmap),
    ReadWrite(MmapMut),
}

pub(crate) struct Segment {
    pub file: File,
    ctrl: MmapMut,
    data: Data,
    pub info: Validated,
    /// Device and inode of the file, to tell a replaced segment.
    pub ino: (u64, u64),
}

impl Segment {
    /// Map a segment whose header has been validated against the file.
    ///
    /// # Safety
    ///
    /// `info` must be the result of validating this file's header against
    /// its current size (so every offset below lies inside the file).
    pub(crate) unsafe fn map(
        file: File,
        info: Validated,
        writable_data: bool,
        populate: bool,
    ) -> std::io::Result<Segment> {
        use std::os::unix::fs::MetadataExt;
        let g = info.geometry;
        let meta = file.metadata()?;
        let mut ctrl_opts = MmapOptions::new();
        ctrl_opts.len(g.data_offset as usize);
        if populate {
            ctrl_opts.populate();
        }
        // SAFETY: the file is a shm segment shared with other processes.
        // Every location in the control region that another process writes
        // after publication is accessed only through atomics (see layout.rs);
        // the mapping is not resized while mapped (segments never change
        // size; a hostile truncation is outside the threat model, see
        // docs/security.md).
        let ctrl = unsafe { ctrl_opts.map_mut(&file)? };
        let mut data_opts = MmapOptions::new();
        data_opts
            .offset(g.data_offset)
            .len((g.total_size - g.data_offset) as usize);
        if populate {
            data_opts.populate();
        }
        let data = if writable_data {
            // SAFETY: as above; the slot protocol (protocol.rs) keeps the
            // writer out of every slot a reader holds.
            Data::ReadWrite(unsafe { data_opts.map_mut(&file)? })
        } else {
            // SAFETY: as above; readers only read slots they hold.
            Data::ReadOnly(unsafe { data_opts.map(&file)? })
        };
        Ok(Segment {
            file,
            ctrl,
            data,
            info,
            ino: (meta.dev(), meta.ino()),
        })
    }

    fn header_ptr(&self) -> *const Header {
        self.ctrl.as_ptr().cast::<Header>()
    }

    /// A live word of the header.
    #[inline]
    pub(crate) fn word32(&self, f: impl FnOnce(*const Header) -> *const AtomicU32) -> &AtomicU32 {
        // SAFETY: the pointer is a projection to an atomic field inside the
        // control mapping (page aligned, at least HEADER_SIZE long), which
        // lives as long as `self`; atomics may be shared across processes.
        unsafe { &*f(self.header_ptr()) }
    }

    /// A live 64-bit word of the header.
    #[inline]
    pub(crate) fn word64(&self, f: impl FnOnce(*const Header) -> *const AtomicU64) -> &AtomicU64 {
        // SAFETY: as in `word32`.
        unsafe { &*f(self.header_ptr()) }
    }

    #[inline]
    pub(crate) fn latest(&self) -> &AtomicU64 {
        // SAFETY: projection only, no read through a non-atomic place.
        self.word64(|h| unsafe { addr_of!((*h).latest) })
    }

    #[inline]
    pub(crate) fn state(&self) -> &AtomicU32 {
        // SAFETY: projection only.
        self.word32(|h| unsafe { addr_of!((*h).state) })
    }

    #[inline]
    pub(crate) fn wake_seq(&self) -> &AtomicU32 {
        // SAFETY: projection only.
        self.word32(|h| unsafe { addr_of!((*h).wake_seq) })
    }

    #[inline]
    pub(crate) fn waiters(&self) -> &AtomicU32 {
        // SAFETY: projection only.
        self.word32(|h| unsafe { addr_of!((*h).waiters) })
    }

    /// Slot `i`'s descriptor. Panics if `i` is out of range (callers check
    /// slot numbers read from shared memory first).
    #[inline]
    pub(crate) fn slot(&self, i: u32) -> &SlotDesc {
        assert!(i < self.info.geometry.slot_count);
        let off = self.info.geometry.slots_offset as usize + i as usize * size_of::<SlotDesc>();
        // SAFETY: validated geometry: the slot table lies inside the control
        // mapping; the offset is 64-byte aligned; `SlotDesc` is `ShmSafe`.
        unsafe { &*self.ctrl.as_ptr().add(off).cast::<SlotDesc>() }
    }

    /// Reader entry `i`.
    #[inline]
    pub(crate) fn reader(&self, i: u32) -> &ReaderEntry {
        assert!(i < self.info.geometry.reader_capacity);
        let off =
            self.info.geometry.readers_offset as usize + i as usize * size_of::<ReaderEntry>();
        // SAFETY: as in `slot`.
        unsafe { &*self.ctrl.as_ptr().add(off).cast::<ReaderEntry>() }
    }

    /// All reader entries' held masks.
    pub(crate) fn held_masks(&self) -> impl Iterator<Item = &AtomicU64> {
        (0..self.info.geometry.reader_capacity).map(|i| &self.reader(i).held)
    }

    /// The first `len` bytes of slot `i`.
    ///
    /// # Safety
    ///
    /// The caller holds slot `i` (reader) or has claimed it (writer), and
    /// `len <= slot_capacity`.
    #[inline]
    pub(crate) unsafe fn slot_bytes(&self, i: u32, len: usize) -> &[u8] {
        let g = self.info.geometry;
        debug_assert!(i < g.slot_count && len as u64 <= g.slot_capacity);
        let base = match &self.data {
            Data::ReadOnly(m) => m.as_ptr(),
            Data::ReadWrite(m) => m.as_ptr(),
        };
        // SAFETY: the slot lies inside the data mapping (validated geometry),
        // and the protocol keeps the writer out while the caller holds it.
        unsafe { std::slice::from_raw_parts(base.add(i as usize * g.slot_stride as usize), len) }
    }

    /// Slot `i`'s whole capacity, writable.
    ///
    /// # Safety
    ///
    /// The caller is the writer and has claimed slot `i`; no other reference
    /// into the slot exists.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub(crate) unsafe fn slot_bytes_mut(&self, i: u32) -> &mut [u8] {
        let g = self.info.geometry;
        let Data::ReadWrite(m) = &self.data else {
            unreachable!("slot_bytes_mut on a read-only mapping");
        };
        // SAFETY: in range by validated geometry; exclusive by the claim.
        unsafe {
            std::slice::from_raw_parts_mut(
                m.as_ptr()
                    .add(i as usize * g.slot_stride as usize)
                    .cast_mut(),
                g.slot_capacity as usize,
            )
        }
    }

    /// Base address and length of the data mapping (to tell whether a
    /// pointer lies inside it).
    pub(crate) fn data_range(&self) -> (usize, usize) {
        match &self.data {
            Data::ReadOnly(m) => (m.as_ptr() as usize, m.len()),
            Data::ReadWrite(m) => (m.as_ptr() as usize, m.len()),
        }
    }

    /// Whether the producer's lock is held.
    pub(crate) fn producer_alive(&self) -> bool {
        sys::is_locked(self.file.as_fd(), sys::PRODUCER_LOCK_BYTE).unwrap_or(false)
    }
}

use std::mem::size_of;
