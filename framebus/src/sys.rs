//! The few Linux system calls the bus needs that no well-kept crate wraps the
//! way we need them: OFD byte-range locks (liveness that survives SIGKILL and
//! works across PID namespaces), a process-shared futex (wake-ups), and
//! `posix_fallocate` (a full /dev/shm fails at create, not with SIGBUS later).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Byte offset of the producer's lock in the segment file.
pub(crate) const PRODUCER_LOCK_BYTE: u64 = 0;

/// Byte offset of the lock a process takes while it replaces or removes a
/// dead producer's segment (past every reader's byte; a live producer never
/// takes it). A segment whose producer lock is held while this one is free
/// belongs to a live producer.
pub(crate) const REPLACER_LOCK_BYTE: u64 = 1 << 40;

/// Byte offset of reader entry `i`'s lock.
pub(crate) const fn reader_lock_byte(i: u32) -> u64 {
    1 + i as u64
}

fn flock_for(byte: u64, ty: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    // OFD locks require l_pid == 0.
    fl.l_pid = 0;
    fl
}

/// Try to take an exclusive OFD lock on one byte. `Ok(false)` if another
/// open file description holds a conflicting lock.
///
/// OFD locks belong to the open file description, not the process: the kernel
/// drops them when the last descriptor referring to it is closed, which
/// happens when the owning process dies in any way (SIGKILL included, zombie
/// or not), and they conflict between processes in different PID namespaces.
pub(crate) fn try_lock(fd: BorrowedFd<'_>, byte: u64) -> io::Result<bool> {
    let fl = flock_for(byte, libc::F_WRLCK);
    // SAFETY: `fd` is a valid descriptor for the duration of the call and
    // `fl` is a valid, initialised `flock` the kernel only reads.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// Release an OFD lock taken with [`try_lock`].
pub(crate) fn unlock(fd: BorrowedFd<'_>, byte: u64) -> io::Result<()> {
    let fl = flock_for(byte, libc::F_UNLCK);
    // SAFETY: as in `try_lock`.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether another open file description holds a lock on `byte`.
pub(crate) fn is_locked(fd: BorrowedFd<'_>, byte: u64) -> io::Result<bool> {
    let mut fl = flock_for(byte, libc::F_WRLCK);
    // SAFETY: `fd` is valid; the kernel writes the conflicting lock (or
    // F_UNLCK) into `fl`, which we own.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Allocate every byte of the file now, so a full tmpfs is `ENOSPC` here and
/// never a SIGBUS on first touch.
pub(crate) fn allocate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    // SAFETY: plain system call on a valid descriptor.
    let r = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len as libc::off_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// How a futex wait ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Woken, or the word had already changed.
    Woken,
    /// The timeout passed.
    TimedOut,
}

/// Sleep while `*word == expected`, at most `timeout`.
///
/// The word lives in a `MAP_SHARED` mapping, so this is a process-shared
/// futex (no `FUTEX_PRIVATE_FLAG`).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wait {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call;
    // FUTEX_WAIT only reads it. `ts_ptr` is null or points to a live timespec.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        )
    };
    if r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
        Wait::TimedOut
    } else {
        // 0, EAGAIN (word changed) and EINTR all mean "look again".
        Wait::Woken
    }
}

/// Wake every process sleeping on `word`.
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not touch it.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// CLOCK_MONOTONIC in ns.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME in ns.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the clocks used always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A random 64-bit id (for producer instances), from the kernel.
pub(crate) fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is a valid 8-byte out-buffer.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == 8 {
        u64::from_le_bytes(buf)
    } else {
        realtime_ns() ^ u64::from(std::process::id()) << 32
    }
}

/// Look up a group id by name.
pub fn group_id(name: &str) -> io::Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "group name contains NUL"))?;
    // SAFETY: `cname` is a valid C string; the returned pointer is only read
    // before any other getgr* call on this thread.
    let gr = unsafe { libc::getgrnam(cname.as_ptr()) };
    if gr.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no group named {name:?}"),
        ));
    }
    // SAFETY: non-null pointer to a `group` struct owned by libc.
    Ok(unsafe { (*gr).gr_gid })
}
