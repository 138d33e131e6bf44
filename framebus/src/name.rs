//! Bus names and where their segments live.
//!
//! A bus name matches `[a-z0-9][a-z0-9._-]{0,62}`. The segment of bus `cam0`
//! is the file `framebus.cam0` in the shm directory (`/dev/shm` unless
//! `FRAMEBUS_SHM_DIR` or an option says otherwise).

use std::path::{Path, PathBuf};

/// File-name prefix of every bus segment.
pub const SEGMENT_PREFIX: &str = "framebus.";
/// File-name prefix of segments still being set up by a producer.
pub(crate) const TEMP_PREFIX: &str = ".framebus-tmp.";
/// Longest bus name.
pub const MAX_NAME_LEN: usize = 63;
/// Environment variable that moves the shm directory (tests, containers).
pub const SHM_DIR_ENV: &str = "FRAMEBUS_SHM_DIR";

/// Why a bus name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The empty string.
    #[error("a bus name cannot be empty (names match [a-z0-9][a-z0-9._-]{{0,62}})")]
    Empty,
    /// More than [`MAX_NAME_LEN`] bytes.
    #[error("bus name {name:?} is {len} bytes long; the limit is 63")]
    TooLong {
        /// The name.
        name: String,
        /// Its length.
        len: usize,
    },
    /// A character outside the allowed set, or a bad first character.
    #[error("bus name {name:?} has {found:?} at position {pos}; names match [a-z0-9][a-z0-9._-]{{0,62}}")]
    BadChar {
        /// The name.
        name: String,
        /// The offending character.
        found: char,
        /// Its character position.
        pos: usize,
    },
}

/// Check a bus name against `[a-z0-9][a-z0-9._-]{0,62}`.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            name: name.to_string(),
            len: name.len(),
        });
    }
    for (pos, c) in name.chars().enumerate() {
        let ok = c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || (pos > 0 && matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(NameError::BadChar {
                name: name.to_string(),
                found: c,
                pos,
            });
        }
    }
    Ok(())
}

/// The shm directory: `FRAMEBUS_SHM_DIR` if set, else `/dev/shm`.
pub fn default_shm_dir() -> PathBuf {
    std::env::var_os(SHM_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/shm"))
}

/// The segment path of bus `name` in `dir`.
pub fn segment_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for n in ["cam0", "0", "cam0.annotated", "a-b_c.d", &"a".repeat(63)] {
            validate_name(n).unwrap();
        }
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert!(matches!(
            validate_name(&"a".repeat(64)),
            Err(NameError::TooLong { len: 64, .. })
        ));
        for n in [
            "Cam0", ".hidden", "-x", "_x", "a/b", "../etc", "a b", "cam\0", "é", "a:b",
        ] {
            assert!(
                matches!(validate_name(n), Err(NameError::BadChar { .. })),
                "{n:?} accepted"
            );
        }
        let msg = validate_name("a/b").unwrap_err().to_string();
        assert!(msg.contains("'/'") && msg.contains("position 1"), "{msg}");
    }
}
