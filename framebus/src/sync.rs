//! The atomics the lock-free protocol uses, swapped for `loom`'s under
//! `--cfg loom` so the same protocol code is model-checked (crossbeam's
//! `primitive` module does the same).
//!
//! Only [`crate::protocol`] and the shared-memory structs it operates on go
//! through this facade. Under `--cfg loom` the mmap-backed parts of the crate
//! are compiled out: loom's atomics are not `repr(transparent)` and cannot
//! live in a shared mapping.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Back off inside a retry loop (loom: let another thread run).
#[inline]
pub(crate) fn spin_or_yield() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}
