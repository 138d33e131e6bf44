//! Names no other test uses: each test gets its own bus (so tests run in
//! parallel, in one process or many) and its own directories.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A bus name unique to this process and call: `t-{tag}-{pid}-{n}`.
///
/// `tag` should be lower case ASCII letters, digits, `.`, `_` or `-` (bus
/// names are `[a-z0-9][a-z0-9._-]{0,62}`); other characters are replaced
/// by `-`, upper case is lowered, and a long tag is cut so that the name
/// stays valid.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("-{}-{n}", std::process::id());
    let room = 63 - 2 - suffix.len();
    let tag: String = tag
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '_' | '-') => c,
            _ => '-',
        })
        .take(room)
        .collect();
    format!("t-{tag}{suffix}")
}

/// A fresh directory under the system temporary directory, named after
/// [`unique_name`], removed with its contents on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Create `$TMPDIR/framebus-{unique_name(tag)}`.
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("framebus-{}", unique_name(tag)));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keep the directory (no removal on drop): the caller removes it, or
    /// leaves it for a person to look at.
    pub fn into_path(self) -> PathBuf {
        let p = self.path.clone();
        std::mem::forget(self);
        p
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_valid() {
        let a = unique_name("x");
        let b = unique_name("x");
        assert_ne!(a, b);
        for n in [
            a,
            b,
            unique_name("Upper Case/slash"),
            unique_name(&"long".repeat(40)),
        ] {
            assert!(n.len() <= 63, "{n}");
            assert!(framebus::validate_name(&n).is_ok(), "{n}");
        }
    }
}
