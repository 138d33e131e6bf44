//! Exclusive use of a capture device across producers.
//!
//! An OFD write lock (`F_OFD_SETLK`) on a small lock file named after the
//! device's canonical path, in the shm directory (`/dev/shm` or
//! `FRAMEBUS_SHM_DIR`), holding the owner's pid. The kernel drops the lock
//! when the owner dies (even by SIGKILL), so a stale file never blocks a new
//! producer. The file itself is left in place (unlinking lock files races).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A held device lock (released on drop, or when the process dies).
#[derive(Debug)]
pub struct DeviceLock {
    _file: File,
    /// The lock file.
    pub path: PathBuf,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds it.
    #[error("device {device} is locked by pid {pid} ({path})")]
    Held {
        /// The device.
        device: String,
        /// The holder's pid as it wrote it.
        pid: u32,
        /// The lock file.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// The lock file of `device` in `dir`.
pub fn lock_path(dir: &Path, device: &Path) -> PathBuf {
    let canon = std::fs::canonicalize(device).unwrap_or_else(|_| device.to_path_buf());
    let key: String = canon
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    dir.join(format!(".framebus-device{key}.lock"))
}

/// Take the exclusive lock for `device`.
pub fn lock(dir: &Path, device: &Path) -> Result<DeviceLock, LockError> {
    let path = lock_path(dir, device);
    let io_err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err)?;
    // SAFETY: `flock` is plain data, zero is a valid bit pattern.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    // SAFETY: valid fd owned by `file`; `fl` is a valid flock for F_OFD_SETLK.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) {
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            return Err(LockError::Held {
                device: device.display().to_string(),
                pid: s.trim().parse().unwrap_or(0),
                path,
            });
        }
        return Err(io_err(e));
    }
    file.set_len(0).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    writeln!(file, "{}", std::process::id()).map_err(io_err)?;
    Ok(DeviceLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("framebus-devlock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dev = Path::new("/dev/video-does-not-exist-7");
        let first = lock(&dir, dev).unwrap();
        // OFD locks conflict between open file descriptions, even within
        // one process.
        match lock(&dir, dev) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        let again = lock(&dir, dev).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).ok();
    }
}
