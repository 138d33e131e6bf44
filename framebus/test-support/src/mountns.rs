//! [`PrivateTmpfs`]: a tmpfs of a chosen size that only the test's own
//! commands see, in a mount namespace of its own (`unshare --mount
//! --propagation private`, root), held open by a sleeping process: the
//! shared-memory directory of a container with `--shm-size`, or a full
//! `/dev/shm`, without touching the machine's. Commands enter it with
//! `nsenter --mount`; the namespace and its tmpfs go when the guard drops.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::recorder::require_root;
use crate::{run, ChildGuard};

/// A tmpfs on `dir`, seen only inside its mount namespace.
pub struct PrivateTmpfs {
    holder: ChildGuard,
    dir: PathBuf,
}

impl PrivateTmpfs {
    /// Mounts a tmpfs of `size` (`16m`) on the existing directory `dir`
    /// in a new mount namespace.
    pub fn new(dir: &Path, size: &str) -> PrivateTmpfs {
        require_root("a private mount namespace with a tmpfs");
        let mut holder = ChildGuard::spawn(
            Command::new("unshare")
                .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg(format!(
                    "mount -t tmpfs -o size={size},mode=1777 framebus-test \"$0\" && echo mounted && exec sleep 86400"
                ))
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let line = holder.next_line(Duration::from_secs(20));
        assert_eq!(
            line.as_deref(),
            Some("mounted"),
            "no tmpfs of {size} on {}",
            dir.display()
        );
        PrivateTmpfs {
            holder,
            dir: dir.to_path_buf(),
        }
    }

    /// The directory the tmpfs is mounted on.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `program` run inside the namespace (arguments, environment and
    /// stdio are the caller's to add).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.pid().to_string(), "-m", "--"])
            .arg(program);
        c
    }

    /// The files in the tmpfs: (name, size in bytes), sorted by name.
    pub fn files(&self) -> Vec<(String, u64)> {
        let out = run(
            self.command("find").arg(&self.dir).args([
                "-maxdepth",
                "1",
                "-type",
                "f",
                "-printf",
                "%f %s\\n",
            ]),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "find in the tmpfs: {out:?}");
        let mut v: Vec<(String, u64)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (n, s) = l.rsplit_once(' ')?;
                Some((n.to_string(), s.parse().ok()?))
            })
            .collect();
        v.sort();
        v
    }
}
