//! Helpers shared by the benchmark harnesses: percentiles, and the bare
//! futex wake-up between two processes that every hand-off is compared to.

use std::fs::{File, OpenOptions};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// The `p`-th percentile (nearest rank) of `samples`.
pub fn percentile(samples: &[u64], p: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// One shared page in /dev/shm holding a futex word and a timestamp.
pub struct SharedPage {
    _file: File,
    path: String,
    ptr: *mut u8,
    owner: bool,
}

impl SharedPage {
    /// Create a fresh page (the publishing side).
    pub fn create() -> SharedPage {
        let path = format!("/dev/shm/framebus-bench-floor-{}", std::process::id());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(4096).unwrap();
        SharedPage::map(file, path, true)
    }

    /// Open the page made by [`create`](Self::create) (the waiting side).
    pub fn open(path: &str) -> SharedPage {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        SharedPage::map(file, path.to_string(), false)
    }

    fn map(file: File, path: String, owner: bool) -> SharedPage {
        use std::os::fd::AsRawFd;
        // SAFETY: mapping 4096 bytes of a 4096-byte file, shared; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap failed");
        SharedPage {
            _file: file,
            path,
            ptr: ptr.cast(),
            owner,
        }
    }

    /// Path of the page.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The futex word (offset 0) and the timestamp (offset 8).
    pub fn words(&self) -> (&AtomicU32, &AtomicU64) {
        // SAFETY: the page is mapped, page-aligned and lives as long as self;
        // both words are only accessed atomically.
        unsafe {
            (
                &*self.ptr.cast::<AtomicU32>(),
                &*self.ptr.add(8).cast::<AtomicU64>(),
            )
        }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `map`.
        unsafe { libc::munmap(self.ptr.cast(), 4096) };
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Sleep while `*word == expected` (process-shared futex).
pub fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid aligned u32 in a shared mapping.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wake every sleeper on `word`.
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: as above.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}
