//! Handles inherited across `fork()` are inert in the child.
//!
//! A forked child gets copies of the parent's `Writer`s and `Reader`s: the
//! same shared mappings and the same open file descriptions, so the same
//! OFD locks. Left alone, a child that drops an inherited writer would close
//! and unlink the parent's live bus, a child using an inherited reader would
//! share one reader entry (one held mask) with the parent under separate
//! hold counts, and a child outliving the parent would keep the parent's
//! liveness lock alive.
//!
//! So a `pthread_atfork` child handler, registered when the first segment
//! is mapped, severs every inherited segment in the child before any other
//! code runs there:
//!
//! 1. both mappings (control and data) are replaced in place by private
//!    anonymous zero pages (`mmap(MAP_FIXED)`): nothing the child does
//!    through an inherited handle, a frame or a numpy view reaches the
//!    shared memory, and inherited views read zeros, never a torn frame;
//! 2. the segment's descriptor is replaced by one of `/dev/null`
//!    (`dup3`), so the child holds no reference to the open file
//!    description and none of its locks;
//! 3. the process's fork generation is bumped, so every inherited handle
//!    knows it is inherited ([`Generation::forked`]) and answers with a
//!    `Forked` error instead of acting, and its drop touches nothing shared.
//!
//! The child handler only makes system calls (`mmap`, `open`, `dup3`,
//! `close`), which is what POSIX allows after `fork()` in a multi-threaded
//! process. The registry is guarded by a spin lock that the prepare handler
//! takes and both after-fork handlers release, so the child never sees it
//! half-updated.

use std::cell::UnsafeCell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;

/// One mapped segment, as the child handler needs it.
#[derive(Clone, Copy)]
struct Region {
    id: u64,
    ranges: [(usize, usize); 2],
    fd: RawFd,
}

struct Registry {
    locked: AtomicBool,
    regions: UnsafeCell<Vec<Region>>,
}

// SAFETY: `regions` is only touched while `locked` is held (see `with`), or
// in the child after fork where only the forking thread exists and the
// prepare handler took the lock for it.
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry {
    locked: AtomicBool::new(false),
    regions: UnsafeCell::new(Vec::new()),
};
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// `/dev/null`, opened once when the handlers are installed (opening it in
/// the child could fail: no descriptors left, no /dev in a sandbox).
static DEVNULL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static INSTALL: Once = Once::new();

impl Registry {
    fn lock(&self) {
        // Acquire pairs with the Release in `unlock`: the previous holder's
        // changes to `regions` are visible to us.
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
            std::thread::yield_now();
        }
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    fn with<R>(&self, f: impl FnOnce(&mut Vec<Region>) -> R) -> R {
        self.lock();
        // SAFETY: the lock is held, so this is the only access.
        let r = f(unsafe { &mut *self.regions.get() });
        self.unlock();
        r
    }
}

extern "C" fn before_fork() {
    REGISTRY.lock();
}

extern "C" fn after_fork_parent() {
    REGISTRY.unlock();
}

extern "C" fn after_fork_child() {
    // SAFETY: `before_fork` took the lock in the thread that forked, which
    // is the only thread of the child: nobody else touches the registry.
    let regions = unsafe { &*REGISTRY.regions.get() };
    let devnull = DEVNULL.load(Ordering::Relaxed);
    for r in regions {
        for &(addr, len) in &r.ranges {
            if len == 0 {
                continue;
            }
            // SAFETY: (1) the range is a mapping this process made and still
            // owns (it is unregistered before it is unmapped); (2) MAP_FIXED
            // replaces exactly those pages with private zero pages of the
            // same size, so every pointer into them stays valid.
            let p = unsafe {
                libc::mmap(
                    addr as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                // Never leave the child a shared mapping of the bus: without
                // pages, a use faults instead of reaching the parent's bus.
                // SAFETY: as above; munmap of our own range.
                unsafe { libc::munmap(addr as *mut libc::c_void, len) };
            }
        }
        if devnull >= 0 && r.fd >= 0 {
            // SAFETY: both descriptors are open; `r.fd` is replaced by a
            // descriptor of /dev/null, dropping the child's reference to the
            // segment's open file description (and so to its locks) while the
            // number stays valid for the handle's eventual close.
            unsafe { libc::dup3(devnull, r.fd, libc::O_CLOEXEC) };
        }
    }
    GENERATION.fetch_add(1, Ordering::Relaxed);
    REGISTRY.unlock();
}

/// The fork generation a handle was made in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Generation(u64);

impl Generation {
    /// The current process's generation.
    pub(crate) fn now() -> Generation {
        Generation(GENERATION.load(Ordering::Relaxed))
    }

    /// Whether the handle made in this generation was inherited across a
    /// fork (and is severed from its bus here).
    #[inline]
    pub(crate) fn forked(self) -> bool {
        GENERATION.load(Ordering::Relaxed) != self.0
    }
}

/// A mapped segment's registration; unregisters on drop (before unmapping).
pub(crate) struct Registration(u64);

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: open(2) with a static NUL-terminated path; the descriptor
        // is kept for the life of the process.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        DEVNULL.store(fd, Ordering::Relaxed);
        // SAFETY: the three handlers are `extern "C" fn()` that live for the
        // whole program; pthread_atfork only stores them.
        let r = unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_parent),
                Some(after_fork_child),
            )
        };
        assert_eq!(r, 0, "pthread_atfork failed");
    });
}

/// Run `make` (which opens a descriptor or maps memory) and register
/// what it made in one step that no `fork()` can split: the registry lock
/// is what the prepare handler waits for, so a child never inherits a
/// descriptor (and its OFD locks) or a mapping its handler would not sever.
fn register_with<T>(
    make: impl FnOnce() -> std::io::Result<(T, [(usize, usize); 2], RawFd)>,
) -> std::io::Result<(T, Registration)> {
    install();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    REGISTRY.lock();
    let made = make();
    if let Ok((_, ranges, fd)) = &made {
        // SAFETY: the lock is held, so this is the only access.
        unsafe { &mut *REGISTRY.regions.get() }.push(Region {
            id,
            ranges: *ranges,
            fd: *fd,
        });
    }
    REGISTRY.unlock();
    made.map(|(v, _, _)| (v, Registration(id)))
}

/// Open a segment file and register its descriptor (its mappings follow
/// with [`Registration::set_ranges`]).
pub(crate) fn open_registered(
    open: impl FnOnce() -> std::io::Result<std::fs::File>,
) -> std::io::Result<(std::fs::File, Registration)> {
    use std::os::fd::AsRawFd;
    register_with(|| {
        open().map(|f| {
            let fd = f.as_raw_fd();
            (f, [(0, 0); 2], fd)
        })
    })
}

/// Map something and register the mapping; `map` returns the value and
/// the range it mapped.
pub(crate) fn map_registered<T>(
    map: impl FnOnce() -> std::io::Result<(T, (usize, usize))>,
) -> std::io::Result<(T, Registration)> {
    register_with(|| map().map(|(v, range)| (v, [range, (0, 0)], -1)))
}

impl Registration {
    /// Add the mappings made since the descriptor was registered.
    pub(crate) fn set_ranges(&self, ranges: [(usize, usize); 2]) {
        REGISTRY.with(|v| {
            if let Some(r) = v.iter_mut().find(|r| r.id == self.0) {
                r.ranges = ranges;
            }
        });
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        REGISTRY.with(|v| v.retain(|r| r.id != self.0));
    }
}
