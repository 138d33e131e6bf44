//! The workspace's Python: `.venv/bin/python` with the framebus wheel
//! installed (`make wheel`, which `make test` runs before the Rust tests).

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `.venv/bin/python` if it imports `framebus`; otherwise prints
/// `SKIP part: ...` and gives `None`.
pub fn venv_python() -> Option<PathBuf> {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    let ok = py.exists()
        && Command::new(&py)
            .args(["-c", "import framebus"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP part: no .venv/bin/python with the framebus wheel (make wheel)");
        return None;
    }
    Some(py)
}
