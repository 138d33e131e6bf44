//! A mapped bus segment: the file, its two mappings and the validated header.
//!
//! The control region (header, slot table, reader table) is mapped
//! read-write by everyone; the data region is mapped read-only by readers,
//! so a reader cannot scribble on frames, and read-write by the writer.

use std::fs::File;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::{Mmap, MmapMut, MmapOptions};

use crate::fork::{self, Generation, Registration};
use crate::layout::{Header, LiveHeader, ReaderEntry, ShmSafe, SlotDesc, Validated};
use crate::protocol::ReaderTable;
use crate::sys;

pub(crate) enum Data {
    ReadOnly(Mmap),
    ReadWrite(MmapMut),
}

pub(crate) struct Segment {
    /// Dropped first: unregistered from the fork handler before unmapping.
    _registration: Registration,
    /// The fork generation the segment was mapped in (see `fork.rs`).
    pub gen: Generation,
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
        registration: Registration,
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
        let data_range = match &data {
            Data::ReadOnly(m) => (m.as_ptr() as usize, m.len()),
            Data::ReadWrite(m) => (m.as_ptr() as usize, m.len()),
        };
        // The descriptor was registered when it was opened
        // (`fork::open_registered`); now the mappings too.
        registration.set_ranges([(ctrl.as_ptr() as usize, ctrl.len()), data_range]);
        Ok(Segment {
            _registration: registration,
            gen: Generation::now(),
            file,
            ctrl,
            data,
            info,
            ino: (meta.dev(), meta.ino()),
        })
    }

    /// A `ShmSafe` value at byte `off` of the control region.
    ///
    /// # Safety
    ///
    /// `off` is aligned for `T` and `off + size_of::<T>()` lies inside the
    /// control mapping, and every field of `T` that another process may
    /// write after publication is an atomic (so a shared reference is
    /// sound while others write).
    #[inline]
    unsafe fn ctrl_at<T: ShmSafe>(&self, off: usize) -> &T {
        debug_assert!(off + size_of::<T>() <= self.ctrl.len());
        debug_assert_eq!(off % std::mem::align_of::<T>(), 0);
        // SAFETY: in bounds and aligned (the caller's contract); the mapping
        // lives as long as `self`; `ShmSafe` values are valid for any bits.
        unsafe { &*self.ctrl.as_ptr().add(off).cast::<T>() }
    }

    /// The header's live words. (The fixed part is never referenced in
    /// the mapping: it was copied and validated into `info`.)
    #[inline]
    pub(crate) fn live(&self) -> &LiveHeader {
        // SAFETY: the control mapping is page aligned and longer than the
        // header; `LiveHeader` is all atomics and byte padding.
        unsafe { self.ctrl_at(offset_of!(Header, live)) }
    }

    /// Slot `i`'s descriptor. Panics if `i` is out of range (callers check
    /// slot numbers read from shared memory first).
    #[inline]
    pub(crate) fn slot(&self, i: u32) -> &SlotDesc {
        assert!(i < self.info.geometry.slot_count);
        let off = self.info.geometry.slots_offset as usize + i as usize * size_of::<SlotDesc>();
        // SAFETY: validated geometry: the slot table lies inside the control
        // mapping at a 64-byte aligned offset; `SlotDesc` is all atomics.
        unsafe { self.ctrl_at(off) }
    }

    /// Reader entry `i`.
    #[inline]
    pub(crate) fn reader(&self, i: u32) -> &ReaderEntry {
        assert!(i < self.info.geometry.reader_capacity);
        let off =
            self.info.geometry.readers_offset as usize + i as usize * size_of::<ReaderEntry>();
        // SAFETY: as in `slot`.
        unsafe { self.ctrl_at(off) }
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

    /// A fresh, populated, shared mapping of slot `i` alone (see
    /// [`crate::SlotView`]), registered with the fork handler.
    pub(crate) fn map_slot_view(&self, i: u32) -> io::Result<crate::SlotView> {
        let g = self.info.geometry;
        assert!(i < g.slot_count);
        let offset = g.data_offset + u64::from(i) * g.slot_stride;
        let len = g.slot_stride as usize;
        let (ptr, registration) = fork::map_registered(|| {
            // SAFETY: a new mapping (no MAP_FIXED) of one page-aligned slot
            // of our own segment file, which is `total_size` bytes long
            // (validated geometry), so the whole range is backed.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    self.file.as_raw_fd(),
                    offset as libc::off_t,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let ptr = std::ptr::NonNull::new(p.cast::<u8>()).expect("mmap never returns null");
            Ok((ptr, (p as usize, len)))
        })?;
        Ok(crate::SlotView {
            ptr,
            len,
            slot: i,
            instance: self.info.instance_id,
            registration: Some(registration),
        })
    }

    /// Seal slot view `view` of slot `i`: its pages are replaced in place
    /// by a private copy-on-write mapping of the same file range.
    pub(crate) fn seal_view(&self, view: &crate::SlotView) -> io::Result<()> {
        let g = self.info.geometry;
        let offset = g.data_offset + u64::from(view.slot) * g.slot_stride;
        // SAFETY: (1) the range is the view's own mapping, alive until the
        // view drops; (2) MAP_FIXED replaces exactly those pages with a
        // private mapping of the same file range, so every pointer into the
        // view stays valid.
        let r = unsafe {
            libc::mmap(
                view.ptr.as_ptr().cast(),
                view.len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                self.file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if r == libc::MAP_FAILED {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Whether the producer's lock is held.
    pub(crate) fn producer_alive(&self) -> bool {
        sys::is_locked(self.file.as_fd(), sys::PRODUCER_LOCK_BYTE).unwrap_or(false)
    }
}

impl ReaderTable for Segment {
    #[inline]
    fn hwm(&self) -> &AtomicU32 {
        &self.live().reader_hwm
    }
    #[inline]
    fn held(&self, i: u32) -> &AtomicU64 {
        &self.reader(i).held
    }
    #[inline]
    fn waiting(&self, i: u32) -> &AtomicU32 {
        &self.reader(i).waiting
    }
    #[inline]
    fn capacity(&self) -> u32 {
        self.info.geometry.reader_capacity
    }
}
